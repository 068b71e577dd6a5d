"""What the report reads, as plain Python and numpy: the config folder, the pool's columns and a
sample of the training rows. No drawing and no HTML here.

The selection's numbers (strategy, parameters, per-cluster counts, pool accounting) come only
from its :class:`~crowdselect_hf.record.SelectionRecord`; the pool table adds the per-row values
that the figures draw.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..record import (
    EXCLUSIONS, SELECTION_FILE, SIDECAR_DIR, MemberRewards, RecordError, SelectionRecord, has_record, read_pool,
    read_pool_metadata, read_record,
)

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
    from ..transaction import recover

    root = Path(folder)
    if not root.is_dir():
        raise ReportError(f"{str(folder)!r} is not a folder")
    # An interrupted save is finished or rolled back first, as save_local and load_selected do.
    recover(root.parent if (root / SIDECAR_DIR).is_dir() else root)
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
                          "(the config argument in Python)")
    return root / configs[0]


@dataclass(frozen=True)
class SavedSelection:
    """A saved config as the report reads it; ``texts``: the training rows' instructions by
    ``crowd_id`` (read only when the pool table has no instruction column)."""

    config_dir: Path
    record: SelectionRecord
    pool: pa.Table
    samples: list[dict[str, Any]]
    texts: dict[str, str] = field(default_factory=dict)


def read_saved(config_dir: str | os.PathLike, n_samples: int = SAMPLE_ROWS) -> SavedSelection:
    """The record, the pool table, up to ``n_samples`` training rows of a config folder, and (for a
    pool table without :data:`INSTRUCTION_COLUMN`) the training rows' instructions by ``crowd_id``."""
    config_dir = Path(config_dir)
    try:
        record, pool = read_record(config_dir), read_pool(config_dir)
    except RecordError as e:
        raise ReportError(str(e)) from None
    train = read_train_table(config_dir)
    texts: dict[str, str] = {}
    if train is not None and not known_column(pool, INSTRUCTION_COLUMN) and "crowd_id" in train.column_names:
        for row in train.to_pylist():
            if row.get("crowd_id") is not None:
                texts.setdefault(row["crowd_id"], sample_texts(row)[0])
    return SavedSelection(config_dir, record, pool, read_sample_rows(config_dir, pool, n_samples, train=train), texts)


# -- the pool ----------------------------------------------------------------------------------------

INSTRUCTION_COLUMN = "crowd_instruction"
BEST_BYTES_COLUMN = "crowd_best_bytes"
EXCLUDED_COLUMN = "crowd_excluded"
OPTIONAL_COLUMNS = {
    INSTRUCTION_COLUMN: "the instruction text (cut short): cluster labels, hover text and rejected rows' text for the "
                        "whole pool",
    BEST_BYTES_COLUMN: "UTF-8 bytes of the best answer: the answer-length figure and the 'empty best answer' reason",
    EXCLUDED_COLUMN: f"null for a selectable row, else one of {', '.join(EXCLUSIONS)}: why a row could not be selected",
}
"""Pool-table columns the report uses when they hold values; the selector writes them (null where the
table it selected from lacked them), and pool tables of crowdselect-hf 0.1.0 lack them. The schema
metadata (:class:`~crowdselect_hf.record.PoolMetadata`) adds the map axes' explained variance and
each member's reward summary (the per-family figure). Without them the report says what it cannot show."""


def known_column(t: pa.Table, name: str) -> bool:
    """Whether the pool table has column ``name`` with at least one value (all null: not known)."""
    return name in t.column_names and t.column(name).null_count < t.num_rows


@dataclass
class PoolData:
    """The pool columns the figures and tables read, as numpy arrays (absent columns are ``None``).

    ``tiebreak`` ranks ``crowd_id`` (the selector's tie-break; row position when there are no ids);
    ``instruction`` and ``ids`` stay Arrow arrays, read only at the rows shown; ``texts`` holds
    instructions by ``crowd_id`` from elsewhere (the training rows) for pools without the column.
    """

    n: int
    selected: np.ndarray
    backfilled: np.ndarray
    metrics: dict[str, np.ndarray | None]
    score: np.ndarray | None
    cluster: np.ndarray | None
    best: pa.ChunkedArray | None
    map_x: np.ndarray | None
    map_y: np.ndarray | None
    ids: pa.ChunkedArray | None = None
    tiebreak: np.ndarray | None = None
    best_reward: np.ndarray | None = None
    best_bytes: np.ndarray | None = None
    excluded: np.ndarray | None = None
    instruction: pa.ChunkedArray | None = None
    member_rewards: tuple[MemberRewards, ...] | None = None
    map_variance: tuple[float, float] | None = None
    texts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_table(cls, t: pa.Table, texts: Mapping[str, str] | None = None) -> "PoolData":
        if not isinstance(t, pa.Table):
            raise TypeError(f"pool must be a pyarrow.Table, got {type(t).__name__}")
        if "crowd_selected" not in t.column_names:
            raise ReportError(f"the pool table needs a boolean 'crowd_selected' column; it has {t.column_names}")
        try:
            metadata = read_pool_metadata(t.schema.metadata)
        except RecordError as e:
            raise ReportError(str(e)) from None
        # The selector writes these null where it did not know them; crowd_excluded it always knows.
        names = set(t.column_names) - {c for c in (INSTRUCTION_COLUMN, BEST_BYTES_COLUMN) if not known_column(t, c)}
        n = t.num_rows

        def floats(name):
            return _floats(t.column(name), name) if name in names else None

        def bools(name):
            return pc.fill_null(t.column(name), False).to_numpy(zero_copy_only=False).astype(bool) if name in names else None

        cluster = None
        if "crowd_cluster" in names:
            cluster = pc.fill_null(t.column("crowd_cluster"), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        selected = bools("crowd_selected")
        backfilled = bools("crowd_backfilled")
        ids = t.column("crowd_id") if "crowd_id" in names else None
        tiebreak = id_order(ids) if ids is not None and n else np.arange(n, dtype=np.int64)
        excluded = None
        if EXCLUDED_COLUMN in names:
            codes = pc.index_in(t.column(EXCLUDED_COLUMN), value_set=pa.array(EXCLUSIONS))
            excluded = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int8)
            bad = pc.and_(pc.is_valid(t.column(EXCLUDED_COLUMN)), pc.is_null(codes))
            if pc.any(bad).as_py():
                raise ReportError(f"pool column {EXCLUDED_COLUMN!r} holds a value other than {list(EXCLUSIONS)} or null")
        return cls(
            n=n, selected=selected,
            backfilled=(backfilled if backfilled is not None else np.zeros(n, dtype=bool)) & selected,
            metrics={name: floats(name) for name, _, _ in METRICS}, score=floats("crowd_combined"), cluster=cluster,
            best=t.column("crowd_best_model") if "crowd_best_model" in names else None,
            map_x=floats("crowd_map_x"), map_y=floats("crowd_map_y"), ids=ids, tiebreak=tiebreak,
            best_reward=floats("crowd_best_reward"), best_bytes=floats(BEST_BYTES_COLUMN), excluded=excluded,
            instruction=t.column(INSTRUCTION_COLUMN) if INSTRUCTION_COLUMN in names else None,
            member_rewards=metadata.member_rewards, map_variance=metadata.map_variance, texts=dict(texts or {}),
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

    @property
    def has_texts(self) -> bool:
        """Whether the instructions of the whole pool are known (not only of the selected rows)."""
        return self.instruction is not None

    def cluster_labels(self) -> list[int]:
        return [] if self.cluster is None else sorted(int(c) for c in np.unique(self.cluster) if c >= 0)

    def selected_median(self, values: np.ndarray | None, mask: np.ndarray | None = None) -> float:
        """The median of the finite ``values`` of selected rows (within ``mask``); NaN when none."""
        if values is None:
            return math.nan
        return median(values[self.selected & (True if mask is None else mask)])

    def ids_at(self, rows: np.ndarray) -> list[str | None]:
        """The ``crowd_id`` of ``rows`` (``None`` without the column)."""
        if self.ids is None:
            return [None] * len(rows)
        return self.ids.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()

    def texts_at(self, rows: np.ndarray) -> list[str | None]:
        """The instruction of ``rows``: the pool's column, else :attr:`texts` by id (``None``: unknown)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.instruction is not None:
            return self.instruction.take(pa.array(rows)).to_pylist()
        return [self.texts.get(i) if i is not None else None for i in self.ids_at(rows)]


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def id_order(ids: pa.ChunkedArray) -> np.ndarray:
    """Per row, an integer that sorts as its ``crowd_id`` does (equal ids, equal integers): the
    selector's tie-break. The ids ``score`` writes (16 lowercase hex digits) are read as numbers
    straight from the Arrow buffer; any other ids are ranked by ``pyarrow.compute.rank``.

    Example:
        >>> id_order(pa.chunked_array([["00000000000000ff", "0000000000000001", "00000000000000ff"]])).tolist()
        [255, 1, 255]
    """
    arr = ids.combine_chunks()
    if pa.types.is_string(arr.type) and arr.null_count == 0 and len(arr):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
        if offsets[-1] - offsets[0] == 16 * len(arr) and (np.diff(offsets) == 16).all():
            raw = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]].reshape(len(arr), 16)
            nibbles = _HEX[raw]
            if (nibbles < 16).all():
                out = np.zeros(len(arr), dtype=np.uint64)
                for j in range(16):
                    out = (out << np.uint64(4)) | nibbles[:, j].astype(np.uint64)
                return out
    filled = pc.fill_null(arr.cast(pa.string()), "")
    return pc.rank(filled, sort_keys="ascending", tiebreaker="dense").to_numpy(zero_copy_only=False).astype(np.int64)


def _floats(col: pa.ChunkedArray, name: str) -> np.ndarray:
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
        raise ReportError(f"pool column {name!r} must hold numbers, it holds {col.type}")
    return pc.fill_null(col.cast(pa.float64()), math.nan).to_numpy(zero_copy_only=False)


def median(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def crowd_members(record: SelectionRecord) -> list[Mapping[str, Any]]:
    """The crowd's members ``{name, family, params_b}``: the saved crowd's, else the metrics'."""
    members = (record.crowd or {}).get("members") or (record.metrics or {}).get("members") or []
    return [m for m in members if isinstance(m, Mapping) and m.get("name")]


def member_size(m: Mapping[str, Any]) -> float:
    """A member's ``params_b`` as a number; ``inf`` when unknown."""
    try:
        f = float(m.get("params_b"))
    except (TypeError, ValueError):
        return math.inf
    return f if math.isfinite(f) and f > 0 else math.inf


def best_answer_shares(d: PoolData, members: Sequence[Mapping[str, Any]]) -> tuple[list[str], np.ndarray, np.ndarray, list[int]]:
    """Per model (grouped by family, smallest first): % of pool rows and % of selected rows where
    its answer was the best, and the positions where a new family starts."""
    listed = sorted(members, key=lambda m: (str(m.get("family") or ""), member_size(m), str(m["name"])))
    order = [str(m["name"]) for m in listed]
    family = {str(m["name"]): m.get("family") for m in listed}
    pool_counts = dict.fromkeys(order, 0)
    sel_counts = dict.fromkeys(order, 0)
    if d.best is not None and d.n:
        encoded = pc.fill_null(d.best.cast(pa.string()), "(no usable reward)").combine_chunks().dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        values = encoded.dictionary.to_pylist()
        pool_n = np.bincount(codes, minlength=len(values))
        sel_n = np.bincount(codes[d.selected], minlength=len(values))
        for name, p, s in zip(values, pool_n, sel_n):
            pool_counts[name] = pool_counts.get(name, 0) + int(p)
            sel_counts[name] = sel_counts.get(name, 0) + int(s)
    names = [m for m in pool_counts if pool_counts[m] or m in family]
    pool_share = np.array([pool_counts[m] / max(d.n, 1) * 100 for m in names])
    sel_share = np.array([sel_counts[m] / max(d.n_selected, 1) * 100 for m in names])
    breaks = [i for i in range(1, len(names)) if family.get(names[i]) != family.get(names[i - 1])]
    return names, pool_share, sel_share, breaks


# -- training rows --------------------------------------------------------------------------------

def read_train_table(config_dir: str | os.PathLike) -> pa.Table | None:
    """The config's ``train-*.parquet`` rows as one table; ``None`` when there are none."""
    files = sorted(Path(config_dir).glob("train-*.parquet")) or sorted(Path(config_dir).glob("data/train-*.parquet"))
    if not files:
        return None
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def read_sample_rows(config_dir: str | os.PathLike, pool: pa.Table | None = None, n: int = SAMPLE_ROWS, *,
                     train: pa.Table | None = None) -> list[dict[str, Any]]:
    """Up to ``n`` rows of ``train-*.parquet`` as dicts, with the pool's ``crowd_cluster`` and
    ``crowd_combined`` for their ``crowd_id``; spread over clusters (round robin, highest
    ranking score first). ``train``: the rows, when already read."""
    table = train if train is not None else read_train_table(config_dir)
    if table is None:
        return []
    rows = table.to_pylist()
    if pool is not None and "crowd_id" in table.column_names and "crowd_id" in pool.column_names:
        extra = [c for c in ("crowd_cluster", "crowd_combined") if c in pool.column_names]
        wanted = pc.is_in(pool.column("crowd_id"), value_set=table.column("crowd_id").combine_chunks())
        by_id: dict[Any, dict[str, Any]] = {}
        for r in pool.filter(wanted).select(["crowd_id", *extra]).to_pylist():
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
