"""What the report reads, as plain Python and numpy: the config folder, the pool's columns and a
sample of the training rows. No matplotlib and no HTML here.

The selection's numbers (strategy, parameters, per-cluster counts, pool accounting) come only
from its :class:`~crowdselect_hf.record.SelectionRecord`; the pool table adds the per-row values
that the figures draw.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..record import SELECTION_FILE, SIDECAR_DIR, RecordError, SelectionRecord, has_record, read_pool, read_record

SAMPLE_ROWS = 8
METRICS = (
    ("crowd_difficulty", "Difficulty", "−mean reward: high = most models score low"),
    ("crowd_separability", "Separability", "variance of rewards: high = models disagree"),
    ("crowd_stability", "Stability", "bigger-is-better agreement within families (Spearman ρ)"),
)
"""(pool column, label, what a high value means) of each crowd metric."""


class ReportError(ValueError):
    """The folder or the tables do not hold what the report needs."""


# -- the folder ------------------------------------------------------------------------------------

def find_config_dir(folder: str | os.PathLike, config: str | None = None) -> Path:
    """The config folder of ``folder``: itself if it holds ``_crowdselect/selection.json``, else
    its one sub-folder that does (or the one named ``config``).

    Example:
        >>> find_config_dir("no/such/folder")
        Traceback (most recent call last):
        ...
        crowdselect_hf.report.data.ReportError: 'no/such/folder' is not a folder
    """
    root = Path(folder)
    if not root.is_dir():
        raise ReportError(f"{str(folder)!r} is not a folder")
    if config is None and has_record(root):
        return root
    configs = sorted(p.name for p in root.iterdir() if p.is_dir() and has_record(p))
    if config is not None:
        if config not in configs:
            raise ReportError(f"{str(root)!r} has no config {config!r} with {SIDECAR_DIR}/{SELECTION_FILE}; "
                              f"configs found: {', '.join(configs) or 'none'}")
        return root / config
    if not configs:
        raise ReportError(f"{str(root)!r} holds no selection: expected {SIDECAR_DIR}/{SELECTION_FILE} in it or in a "
                          "config sub-folder")
    if len(configs) > 1:
        raise ReportError(f"{str(root)!r} holds several configs ({', '.join(configs)}); choose one with --config-name "
                          "(config= in Python)")
    return root / configs[0]


@dataclass(frozen=True)
class SavedSelection:
    """A saved config as the report reads it."""

    config_dir: Path
    record: SelectionRecord
    pool: pa.Table
    samples: list[dict[str, Any]]


def read_saved(config_dir: str | os.PathLike, n_samples: int = SAMPLE_ROWS) -> SavedSelection:
    """The record, the pool table and up to ``n_samples`` training rows of a config folder."""
    config_dir = Path(config_dir)
    try:
        record, pool = read_record(config_dir), read_pool(config_dir)
    except RecordError as e:
        raise ReportError(str(e)) from None
    return SavedSelection(config_dir, record, pool, read_sample_rows(config_dir, pool, n_samples))


# -- the pool ----------------------------------------------------------------------------------------

@dataclass
class PoolData:
    """The pool columns the figures read, as numpy arrays (absent columns are ``None``)."""

    n: int
    selected: np.ndarray
    backfilled: np.ndarray
    metrics: dict[str, np.ndarray | None]
    score: np.ndarray | None
    cluster: np.ndarray | None
    best: list[Any] | None
    map_x: np.ndarray | None
    map_y: np.ndarray | None

    @classmethod
    def from_table(cls, t: pa.Table) -> "PoolData":
        if not isinstance(t, pa.Table):
            raise TypeError(f"pool must be a pyarrow.Table, got {type(t).__name__}")
        if "crowd_selected" not in t.column_names:
            raise ReportError(f"the pool table needs a boolean 'crowd_selected' column; it has {t.column_names}")
        names = set(t.column_names)

        def floats(name):
            return np.array(t.column(name).to_pylist(), dtype=np.float64) if name in names else None

        def bools(name):
            return np.array([bool(v) for v in t.column(name).to_pylist()], dtype=bool) if name in names else None

        cluster = None
        if "crowd_cluster" in names:
            cluster = np.array([-1 if v is None else int(v) for v in t.column("crowd_cluster").to_pylist()], dtype=np.int64)
        selected = bools("crowd_selected")
        backfilled = bools("crowd_backfilled")
        return cls(
            n=t.num_rows, selected=selected,
            backfilled=(backfilled if backfilled is not None else np.zeros(t.num_rows, dtype=bool)) & selected,
            metrics={name: floats(name) for name, _, _ in METRICS}, score=floats("crowd_combined"), cluster=cluster,
            best=t.column("crowd_best_model").to_pylist() if "crowd_best_model" in names else None,
            map_x=floats("crowd_map_x"), map_y=floats("crowd_map_y"),
        )

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    @property
    def has_map(self) -> bool:
        return self.map_x is not None and self.map_y is not None and bool((np.isfinite(self.map_x) & np.isfinite(self.map_y)).any())

    @property
    def has_score(self) -> bool:
        return self.score is not None and bool(np.isfinite(self.score).any())

    def cluster_labels(self) -> list[int]:
        return [] if self.cluster is None else sorted(int(c) for c in np.unique(self.cluster) if c >= 0)

    def selected_median(self, values: np.ndarray | None, mask: np.ndarray | None = None) -> float:
        """The median of the finite ``values`` of selected rows (within ``mask``); NaN when none."""
        if values is None:
            return math.nan
        return median(values[self.selected & (True if mask is None else mask)])


def median(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def crowd_members(record: SelectionRecord) -> list[Mapping[str, Any]]:
    """The crowd's members ``{name, family, params_b}``: the saved crowd's, else the metrics'."""
    members = (record.crowd or {}).get("members") or (record.metrics or {}).get("members") or []
    return [m for m in members if isinstance(m, Mapping) and m.get("name")]


def best_answer_shares(d: PoolData, members: Sequence[Mapping[str, Any]]) -> tuple[list[str], np.ndarray, np.ndarray, list[int]]:
    """Per model (grouped by family, smallest first): % of pool rows and % of selected rows where
    its answer was the best, and the positions where a new family starts."""
    def size(m):
        try:
            f = float(m.get("params_b"))
        except (TypeError, ValueError):
            return math.inf
        return f if math.isfinite(f) else math.inf

    listed = sorted(members, key=lambda m: (str(m.get("family") or ""), size(m), str(m["name"])))
    order = [str(m["name"]) for m in listed]
    family = {str(m["name"]): m.get("family") for m in listed}
    pool_counts = dict.fromkeys(order, 0)
    sel_counts = dict.fromkeys(order, 0)
    for b, s in zip(d.best or [], d.selected):
        key = b if b is not None else "(no usable reward)"
        pool_counts[key] = pool_counts.get(key, 0) + 1
        sel_counts[key] = sel_counts.get(key, 0) + int(bool(s))
    names = [m for m in pool_counts if pool_counts[m] or m in family]
    pool_share = np.array([pool_counts[m] / max(d.n, 1) * 100 for m in names])
    sel_share = np.array([sel_counts[m] / max(d.n_selected, 1) * 100 for m in names])
    breaks = [i for i in range(1, len(names)) if family.get(names[i]) != family.get(names[i - 1])]
    return names, pool_share, sel_share, breaks


# -- training rows --------------------------------------------------------------------------------

def read_sample_rows(config_dir: str | os.PathLike, pool: pa.Table | None = None, n: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """Up to ``n`` rows of ``train-*.parquet`` as dicts, with the pool's ``crowd_cluster`` and
    ``crowd_combined`` for their ``crowd_id``; spread over clusters (round robin, highest
    ranking score first)."""
    files = sorted(Path(config_dir).glob("train-*.parquet")) or sorted(Path(config_dir).glob("data/train-*.parquet"))
    if not files:
        return []
    tables = [pq.read_table(f) for f in files]
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    rows = table.to_pylist()
    if pool is not None and "crowd_id" in table.column_names and "crowd_id" in pool.column_names:
        extra = [c for c in ("crowd_cluster", "crowd_combined") if c in pool.column_names]
        by_id: dict[Any, dict[str, Any]] = {}
        for r in pool.select(["crowd_id", *extra]).to_pylist():
            by_id.setdefault(r["crowd_id"], r)
        for r in rows:
            for c in extra:
                r.setdefault(c, by_id.get(r.get("crowd_id"), {}).get(c))
    return spread(rows, n)


def spread(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` rows, round robin over clusters, highest ``crowd_combined`` first in each."""
    if n <= 0 or not rows:
        return []

    def key(r):
        c = r.get("crowd_combined")
        return -c if isinstance(c, (int, float)) and math.isfinite(c) else math.inf

    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=key):
        groups.setdefault(r.get("crowd_cluster"), []).append(r)
    order = sorted(groups, key=lambda c: (c is None, c if isinstance(c, int) else 0))
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < n and any(depth < len(groups[c]) for c in order):
        out += [groups[c][depth] for c in order if depth < len(groups[c])][: n - len(out)]
        depth += 1
    return out


def _turn_text(value: Any, role: str | None, first: bool) -> str | None:
    """Text of a string, a message, or a list of messages (the first/last of ``role``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return value.get("content") if isinstance(value.get("content"), str) else None
    if isinstance(value, (list, tuple)):
        msgs = [m for m in value if isinstance(m, Mapping) and (role is None or m.get("role") == role)]
        return _turn_text(msgs[0] if first else msgs[-1], None, first) if msgs else None
    return None


def sample_texts(row: Mapping[str, Any]) -> tuple[str, str]:
    """(instruction, response) of a training row: ``messages``, ``prompt``/``completion`` or
    ``instruction``/``response``."""
    instruction = response = None
    if "messages" in row:
        instruction = _turn_text(row["messages"], "user", True)
        response = _turn_text(row["messages"], "assistant", False)
    if instruction is None and "prompt" in row:
        instruction = _turn_text(row["prompt"], "user", False)
    if response is None and "completion" in row:
        response = _turn_text(row["completion"], "assistant", False)
    instruction = instruction if instruction is not None else row.get("instruction")
    response = response if response is not None else row.get("response")
    return str(instruction or ""), str(response or "")
