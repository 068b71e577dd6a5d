"""What a selection picked and how: one typed, versioned record that every writer and reader shares.

:class:`SelectionRecord` is built once, by the selector, and then read by the card, the report,
``selection.json``, :func:`~crowdselect_hf.load_selected` and ``push``; nothing re-derives its
numbers. It states only what the strategy used: a baseline that neither clusters nor combines
carries no clusters and no weights, and ``ranked_by`` names the score it actually ranked by.

On disk a curated config keeps it beside its rows::

    <config>/_crowdselect/selection.json   SelectionRecord.to_json()
    <config>/_crowdselect/pool.parquet     one row per pool row (Selection.pool_table()), and in
                                           its schema metadata a :class:`PoolMetadata`

A ``selection.json`` written by crowdselect-hf 0.1.0 (``{"params", "summary", ...}``, no
``schema_version``) loads through :meth:`SelectionRecord.from_dict`'s one converter.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .version import __version__

SCHEMA_VERSION = 3
"""Version 1 is the free-form ``selection.json`` of crowdselect-hf 0.1.0."""
SIDECAR_DIR = "_crowdselect"
SELECTION_FILE = "selection.json"
POOL_FILE = "pool.parquet"
MAP_VARIANCE_KEY = b"crowdselect.map_explained_variance"
"""Pool-table schema metadata: JSON ``[pc1, pc2]``, the map axes' explained-variance ratios."""
MEMBER_REWARDS_KEY = b"crowdselect.member_rewards"
"""Pool-table schema metadata: JSON list of :class:`MemberRewards` (one entry per crowd member)."""
EXCLUSIONS = ("no_usable_reward", "empty_best_response", "duplicate_instruction")
"""Why a pool row could not be selected: the pool table's ``crowd_excluded`` values and the keys of
:attr:`SelectionRecord.excluded`."""

RANKED_BY = {
    "crowdselect": "combined score", "combined-top": "combined score",
    "reward-top": "best reward", "reward-bottom": "best reward (lowest first)",
    "length-longest": "length (UTF-8 bytes of instruction + best answer)",
    "length-shortest": "length (UTF-8 bytes, shortest first)",
    "random": "random", "cluster-random": "random",
}
"""The score each strategy ranks by; ``<metric>-top[-clustered]`` rank by that metric's quantile."""


class RecordError(ValueError):
    """A ``selection.json`` that cannot be read as a selection record."""


def ranked_by(strategy: str) -> str:
    """The name of the score ``strategy`` ranks by.

    Example:
        >>> ranked_by("crowdselect"), ranked_by("stability-bottom-clustered")
        ('combined score', 'stability quantile (lowest first)')
    """
    if strategy in RANKED_BY:
        return RANKED_BY[strategy]
    metric, direction = strategy.split("-")[:2]
    return f"{metric} quantile" + (" (lowest first)" if direction == "bottom" else "")


def uses_weights(strategy: str) -> bool:
    return RANKED_BY.get(strategy) == "combined score"


@dataclass(frozen=True)
class ClusterCount:
    """One cluster of a clustered selection.

    Attributes:
        cluster: its label.
        pool_rows: pool rows assigned to it (rows that could not be selected included).
        candidates: rows in it that could be selected.
        quota: its share of ``k``.
        picked_by_quota: rows taken by its own quota (≤ quota; fewer when it ran out).
        backfilled: rows of it taken afterwards by back-fill.
        central_id: ``crowd_id`` of its candidate nearest the cluster's centre in the embedder's
            space: the instruction that stands for it (``None`` in records before schema 3, or for
            an empty cluster).
    """

    cluster: int
    pool_rows: int
    candidates: int
    quota: int
    picked_by_quota: int
    backfilled: int
    central_id: str | None = None

    @property
    def selected(self) -> int:
        return self.picked_by_quota + self.backfilled


@dataclass(frozen=True)
class Clustering:
    """How a clustered selection grouped the pool: embedder and KMeans settings, and the fit."""

    n_clusters: int
    embedder: str
    kmeans: str
    n_init: int
    inertia: float | None = None


@dataclass(frozen=True)
class SelectionRecord:
    """What was selected and how.

    Attributes:
        strategy, k: the strategy and how many rows it returned.
        ranked_by: the score the strategy ranked by (the pool table's ``crowd_combined``).
        weights: (difficulty, separability, stability) weights; only for strategies that combine.
        seed: only for strategies that cluster or draw at random.
        clustering: the clustering; ``None`` for strategies that do not cluster.
        clusters: per-cluster accounting, computed once by the selector.
        n_pool, n_eligible, n_selected, n_backfilled: pool accounting.
        excluded: rows that could not be selected, by reason.
        pool_duplicate_ids: rows repeating an earlier row's instruction.
        neutral_filled: per metric, rows whose NaN metric counted as the neutral 0.5.
        metric_means: per metric (and ``best_reward``), ``{"selected": mean, "pool": mean}``.
        metrics: where the ``crowd_*`` metrics came from (reward, members, layout, method), or
            ``None`` when they carry no provenance (computed by ``ds.map``).
        config, rows, source, crowd: filled in when the selection is saved as a config.
        package_version, schema_version: what wrote the record.
    """

    strategy: str
    k: int
    ranked_by: str
    weights: tuple[float, ...] | None
    seed: int | None
    clustering: Clustering | None
    clusters: tuple[ClusterCount, ...]
    n_pool: int
    n_eligible: int
    n_selected: int
    n_backfilled: int
    excluded: Mapping[str, int]
    pool_duplicate_ids: int
    neutral_filled: Mapping[str, int]
    metric_means: Mapping[str, Mapping[str, float | None]]
    metrics: Mapping[str, Any] | None = None
    config: str | None = None
    rows: int | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    crowd: Mapping[str, Any] | None = None
    package_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @property
    def reward(self) -> str | None:
        """The reward field the metrics were computed from (``None`` when unknown)."""
        return (self.metrics or {}).get("reward")

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that applied to this strategy, and only those."""
        out: dict[str, Any] = {"strategy": self.strategy, "k": self.k}
        if self.weights is not None:
            out["weights"] = list(self.weights)
        if self.clustering is not None:
            out.update(n_clusters=self.clustering.n_clusters, embedder=self.clustering.embedder,
                       kmeans=self.clustering.kmeans, n_init=self.clustering.n_init)
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def saved_as(self, config: str, rows: int, source: Mapping[str, Any] | None = None,
                 crowd: Mapping[str, Any] | None = None) -> "SelectionRecord":
        """This record, with the config it was saved as."""
        return replace(self, config=config, rows=int(rows), source=dict(source or {}),
                       crowd=dict(crowd) if crowd is not None else self.crowd)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN and inf become ``None``)."""
        return json.loads(json.dumps(asdict(self), default=str), parse_constant=lambda _: None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SelectionRecord":
        """Read a record; a 0.1.0 ``selection.json`` goes through :func:`_from_v1`.

        Raises:
            RecordError: naming what is missing or which schema version is unknown.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"a selection record is a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", 1)
        if version == 1:
            data = _from_v1(data)
        elif version not in (2, SCHEMA_VERSION):  # 2 lacks only ClusterCount.central_id
            raise RecordError(f"selection record schema version {version!r} is not known to crowdselect-hf "
                              f"{__version__} (it reads 1 to {SCHEMA_VERSION}); upgrade the package")
        try:
            clustering = Clustering(**data["clustering"]) if data.get("clustering") else None
            clusters = tuple(ClusterCount(**c) for c in data.get("clusters") or ())
            weights = tuple(float(w) for w in data["weights"]) if data.get("weights") is not None else None
            rest = {k: v for k, v in data.items() if k not in ("clustering", "clusters", "weights")}
            return cls(clustering=clustering, clusters=clusters, weights=weights, **rest)
        except (KeyError, TypeError) as e:
            raise RecordError(f"not a selection record: {e}") from None


def _from_v1(old: Mapping[str, Any]) -> dict[str, Any]:
    """The one converter from crowdselect-hf 0.1.0's ``{"params", "summary", "crowd", ...}``."""
    params, summary = dict(old.get("params") or {}), dict(old.get("summary") or {})
    if not params.get("strategy"):
        raise RecordError("not a selection record: no schema_version and no params.strategy")
    strategy = params["strategy"]
    clustered = bool(summary.get("clusters"))
    crowd = old.get("crowd") or None
    return {
        "strategy": strategy, "k": int(params.get("k") or summary.get("n_selected") or 0),
        "ranked_by": ranked_by(strategy),
        "weights": params.get("weights") if uses_weights(strategy) else None,
        "seed": params.get("seed") if clustered or strategy.endswith("random") else None,
        "clustering": {"n_clusters": int(params.get("n_clusters") or len(summary["clusters"])),
                       "embedder": str(params.get("embedder")), "kmeans": str(params.get("kmeans")),
                       "n_init": int(params.get("n_init") or 0), "inertia": summary.get("inertia")} if clustered else None,
        # 0.1.0 recorded candidates as "size" and no per-cluster pool rows.
        "clusters": [{"cluster": c["cluster"], "pool_rows": c["size"], "candidates": c["size"], "quota": c["quota"],
                      "picked_by_quota": c["picked_by_quota"], "backfilled": c["backfilled"]}
                     for c in summary.get("clusters") or ()],
        **{k: summary.get(k, 0) for k in ("n_pool", "n_eligible", "n_selected", "n_backfilled", "pool_duplicate_ids")},
        "excluded": summary.get("excluded") or {}, "neutral_filled": summary.get("neutral_filled") or {},
        "metric_means": summary.get("metric_means") or {},
        # 0.1.0 did not record what the metrics were computed from: the crowd's reward is the claim it made.
        "metrics": {"reward": crowd.get("reward"), "recorded_by": "0.1.0 (unverified)"} if crowd else None,
        "config": old.get("config"), "rows": old.get("rows"), "source": old.get("source") or {}, "crowd": crowd,
        "package_version": "0.1.0",
    }


# -- on disk ----------------------------------------------------------------------------------------

def sidecar(config_dir: str | os.PathLike) -> Path:
    return Path(config_dir) / SIDECAR_DIR


def has_record(config_dir: str | os.PathLike) -> bool:
    return (sidecar(config_dir) / SELECTION_FILE).is_file()


def write_record(config_dir: str | os.PathLike, record: SelectionRecord, pool: Any) -> list[Path]:
    """Write ``selection.json`` and ``pool.parquet`` into ``<config_dir>/_crowdselect/``."""
    import pyarrow.parquet as pq

    side = sidecar(config_dir)
    side.mkdir(parents=True, exist_ok=True)
    pq.write_table(pool, side / POOL_FILE)
    (side / SELECTION_FILE).write_text(record.to_json(), encoding="utf-8")
    return [side / POOL_FILE, side / SELECTION_FILE]


def read_record(config_dir: str | os.PathLike) -> SelectionRecord:
    """The record of a saved config.

    Raises:
        RecordError: the file is missing, not JSON, or not a record.
    """
    path = sidecar(config_dir) / SELECTION_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecordError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    return SelectionRecord.from_dict(data)


def read_pool(config_dir: str | os.PathLike):
    """The pool table of a saved config (a ``pyarrow.Table``)."""
    import pyarrow.parquet as pq

    path = sidecar(config_dir) / POOL_FILE
    if not path.is_file():
        raise RecordError(f"{str(config_dir)!r} has {SELECTION_FILE} but no {SIDECAR_DIR}/{POOL_FILE}: republish the selection")
    return pq.read_table(path)


@dataclass(frozen=True)
class RewardSummary:
    """One member's usable (finite) rewards over some rows.

    Attributes:
        count: rows where its reward was usable.
        mean, median: of those rewards; ``None`` when ``count`` is 0.
    """

    count: int
    mean: float | None
    median: float | None


@dataclass(frozen=True)
class MemberRewards:
    """One crowd member's rewards, summarised: a few numbers per member in the pool table's
    metadata instead of one reward per row and member.

    Attributes:
        name, family, params_b: the member (``params_b`` ``None`` when unknown).
        pool: over every pool row.
        selected: over the selected rows.
        levels: its distinct usable rewards when there are at most two (0/1 scores), else ``None``.
    """

    name: str
    family: str
    params_b: float | None
    pool: RewardSummary
    selected: RewardSummary
    levels: tuple[float, ...] | None = None


@dataclass(frozen=True)
class PoolMetadata:
    """What the pool table's schema metadata records besides its columns.

    Attributes:
        map_variance: the explained-variance ratios of the map's two axes (``None``: no map).
        member_rewards: per member, its rewards over the pool and the selected rows (``None``:
            the table selected from no longer held the members' rewards).

    Example:
        >>> m = PoolMetadata(map_variance=(0.25, 0.125))
        >>> read_pool_metadata(m.schema_metadata()) == m
        True
    """

    map_variance: tuple[float, float] | None = None
    member_rewards: tuple[MemberRewards, ...] | None = None

    def schema_metadata(self) -> dict[bytes, bytes]:
        """The keys to set on the pool table's schema (those with a value)."""
        out = {}
        if self.map_variance is not None:
            out[MAP_VARIANCE_KEY] = json.dumps([float(v) for v in self.map_variance], allow_nan=False).encode()
        if self.member_rewards is not None:
            out[MEMBER_REWARDS_KEY] = json.dumps([asdict(m) for m in self.member_rewards], allow_nan=False).encode()
        return out


def read_pool_metadata(metadata: Mapping[bytes, bytes] | None) -> PoolMetadata:
    """The :class:`PoolMetadata` of a pool table's ``schema.metadata`` (absent keys: ``None``).

    Raises:
        RecordError: a key holds something else than :meth:`PoolMetadata.schema_metadata` writes.
    """
    metadata = metadata or {}

    def loaded(key: bytes) -> Any:
        try:
            return json.loads(metadata[key]) if key in metadata else None
        except (TypeError, ValueError):
            raise RecordError(f"the pool table's metadata {key.decode()!r} is not JSON: republish the selection") from None

    variance, members = loaded(MAP_VARIANCE_KEY), loaded(MEMBER_REWARDS_KEY)
    try:
        if variance is not None:
            variance = tuple(float(v) for v in variance)
            if len(variance) != 2 or not all(0 <= v <= 1 for v in variance):
                raise ValueError(variance)
    except (TypeError, ValueError):
        raise RecordError(f"the pool table's metadata {MAP_VARIANCE_KEY.decode()!r} must be two ratios from 0 to 1, "
                          f"got {metadata[MAP_VARIANCE_KEY][:80]!r}") from None
    try:
        if members is not None:
            members = tuple(MemberRewards(**{**m, "pool": RewardSummary(**m["pool"]),
                                             "selected": RewardSummary(**m["selected"]),
                                             "levels": tuple(m["levels"]) if m.get("levels") is not None else None})
                            for m in members)
    except (TypeError, KeyError, AttributeError):
        raise RecordError(f"the pool table's metadata {MEMBER_REWARDS_KEY.decode()!r} is not a list of member reward "
                          "summaries: republish the selection") from None
    return PoolMetadata(variance, members)
