"""CrowdSelect metrics as ``datasets`` transforms: :class:`CrowdScore` for ``ds.map`` and the
fast path :func:`score`.

Both add the same ``crowd_*`` columns with bit-identical values:

========================  ==============================================================
``crowd_id``              stable content hash of the instruction (16 hex chars)
``crowd_difficulty``      −mean reward (NaN when no reward is usable)
``crowd_separability``    population variance of the rewards
``crowd_stability``       mean within-family Spearman ρ between reward rank and size rank
``crowd_best_model``      member with the highest reward (None when no reward is usable)
``crowd_best_reward``     that reward
``crowd_n_scored``        how many members had a usable reward
``crowd_n_families``      how many families entered the stability mean
``crowd_best_bytes``      UTF-8 bytes of the best response (0: empty, or no best model)
========================  ==============================================================
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from typing import Any, Callable, Mapping, Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.fingerprint import Hasher
from datasets.table import InMemoryTable, MemoryMappedTable

from .columns import attach_columns, read_columns
from .crowd import CONTENT_KEYS, Crowd, CrowdError, Member, _pick, parse_model_name
from .metrics import ALGORITHM_VERSION, CrowdMetrics, PolicyCounts, crowd_metrics

logger = logging.getLogger(__name__)

COLUMNS = (
    "crowd_id",
    "crowd_difficulty",
    "crowd_separability",
    "crowd_stability",
    "crowd_best_model",
    "crowd_best_reward",
    "crowd_n_scored",
    "crowd_n_families",
    "crowd_best_bytes",
)
ARROW_SCHEMA = pa.schema(
    [
        ("crowd_id", pa.string()),
        ("crowd_difficulty", pa.float64()),
        ("crowd_separability", pa.float64()),
        ("crowd_stability", pa.float64()),
        ("crowd_best_model", pa.string()),
        ("crowd_best_reward", pa.float64()),
        ("crowd_n_scored", pa.int64()),
        ("crowd_n_families", pa.int64()),
        ("crowd_best_bytes", pa.int64()),
    ]
)
FEATURES = datasets.Features.from_arrow_schema(ARROW_SCHEMA)
"""The ``datasets.Features`` of the ``crowd_*`` columns."""
_CHUNK_ROWS = 1_000_000


def content_id(text: str) -> str:
    """The stable id of an instruction: the first 64 bits of its BLAKE2b hash, in hex.

    Identical instructions get identical ids (the selection keeps one row per id).

    Example:
        >>> content_id("Write a haiku about rain.")
        '018cbd1db6a4869a'
    """
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _ids(texts: Sequence[Any], column: str) -> list[str]:
    out = []
    for t in texts:
        if not isinstance(t, str):
            raise CrowdError(f"instruction column {column!r} must hold text, found {t!r}")
        out.append(content_id(t))
    return out


def _ids_arrow(column: pa.ChunkedArray | pa.Array, name: str) -> list[str]:
    """``content_id`` of every string, hashed straight from the Arrow buffers (no decoding)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    blake2b = hashlib.blake2b
    out: list[str] = []
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            raise CrowdError(f"instruction column {name!r} must hold text, found {chunk.type}")
        if chunk.null_count:
            row = len(out) + int(np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False))[0])
            raise CrowdError(f"instruction column {name!r} is empty (None) in row {row}; every row needs an instruction")
        _, offsets_buf, data_buf = chunk.buffers()
        dtype = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=dtype)[chunk.offset : chunk.offset + len(chunk) + 1].tolist()
        data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
        out.extend(blake2b(data[a:b], digest_size=8).hexdigest() for a, b in zip(offsets, offsets[1:]))
    return out


class _Plan:
    """A crowd bound to concrete columns, with the per-member arrays the metrics need."""

    __slots__ = ("crowd", "names", "families", "sizes", "priority", "index")

    def __init__(self, crowd: Crowd, extra: Sequence[str] = ()):
        members = list(crowd.members) + [Member(n, *parse_model_name(n)) for n in extra]
        self.crowd = crowd
        self.names = [m.name for m in members]
        self.families = [m.family for m in members]
        self.sizes = np.array([m.params_b for m in members], dtype=np.float64)
        order = sorted(range(len(members)), key=lambda j: self.names[j])
        self.priority = np.empty(len(members), dtype=np.int64)
        self.priority[order] = np.arange(len(members))
        self.index = {n: j for j, n in enumerate(self.names)}

    def metrics(self, R: np.ndarray) -> CrowdMetrics:
        return crowd_metrics(R, self.families, self.sizes, self.priority)


def _to_float(value: Any, column: str, field: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CrowdError(f"reward {field!r} of {column!r} must be a number, found {value!r} ({type(value).__name__})")
    return float(value)


# -- reward matrices ------------------------------------------------------------------------

def _wide_matrix_arrow(table: pa.Table, plan: _Plan) -> np.ndarray:
    reward = plan.crowd.reward
    R = np.empty((table.num_rows, len(plan.names)), dtype=np.float64)
    for j, name in enumerate(plan.names):
        values = pc.struct_field(table.column(name), [reward])
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type)
                or pa.types.is_null(values.type)):
            raise CrowdError(f"reward field {reward!r} of column {name!r} is not numeric (it is {values.type})")
        R[:, j] = pc.cast(values, pa.float64()).to_numpy()
    return R


def _long_matrix_arrow(table: pa.Table, plan: _Plan, row_offset: int = 0) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The reward matrix of a long-layout table, and a function from best member to its answer's bytes.

    Each list entry is read once: its row, member, reward and answer length (Arrow offsets).
    """
    crowd = plan.crowd
    R = np.full((table.num_rows, len(plan.names)), np.nan)
    start = 0
    unknown: set[str] = set()
    kept_rows, kept_cols, kept_lens = [], [], []
    for chunk in table.column(crowd.column).chunks:
        flat = pc.list_flatten(chunk)
        parents = pc.list_parent_indices(chunk).to_numpy() + start
        models = pc.struct_field(flat, [crowd.model_key]).to_pylist()
        values = pc.cast(pc.struct_field(flat, [crowd.reward]), pa.float64()).to_numpy(zero_copy_only=False)
        cols = np.array([plan.index.get(m, -1) if m is not None else -1 for m in models], dtype=np.int64)
        unknown.update(m for m, c in zip(models, cols) if c < 0 and m is not None)
        keep = cols >= 0
        _check_unique_pairs(parents[keep], cols[keep], plan.names, row_offset)
        R[parents[keep], cols[keep]] = values[keep]
        kept_rows.append(parents[keep])
        kept_cols.append(cols[keep])
        kept_lens.append(_byte_lengths(_struct_content(flat, crowd, f"list column {crowd.column!r}"))[keep])
        start += len(chunk)
    if unknown:
        logger.warning("models not in the crowd were ignored: %s", sorted(unknown))
    rows, cols, lens = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (kept_rows, kept_cols, kept_lens))

    def best_bytes(best: np.ndarray) -> np.ndarray:
        out = np.zeros(table.num_rows, dtype=np.int64)
        hit = cols == best[rows]
        out[rows[hit]] = lens[hit]
        return out

    return R, best_bytes


def _answers_arrow(table: pa.Table, plan: _Plan, row_offset: int = 0) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The reward matrix of an Arrow table in either layout, and best member → answer bytes."""
    if plan.crowd.layout == "long":
        return _long_matrix_arrow(table, plan, row_offset)
    return _wide_matrix_arrow(table, plan), lambda best: _wide_best_bytes_arrow(table, plan, best)


def _check_unique_pairs(rows: np.ndarray, cols: np.ndarray, names: Sequence[str], row_offset: int) -> None:
    if rows.size == 0:
        return
    key = rows * len(names) + cols
    uniq, counts = np.unique(key, return_counts=True)
    if (counts > 1).any():
        k = int(uniq[np.argmax(counts > 1)])
        raise CrowdError(f"row {row_offset + k // len(names)} lists model {names[k % len(names)]!r} more than once; each model may answer once")


def _wide_matrix_python(columns: Mapping[str, Sequence[Any]], plan: _Plan, n: int) -> np.ndarray:
    reward = plan.crowd.reward
    R = np.empty((n, len(plan.names)), dtype=np.float64)
    for j, name in enumerate(plan.names):
        col = columns[name]
        for i, cell in enumerate(col):
            if cell is None:
                R[i, j] = math.nan
            elif isinstance(cell, Mapping):
                if reward not in cell:
                    raise CrowdError(f"column {name!r} has no reward field {reward!r}; its fields are: {sorted(cell)}")
                R[i, j] = _to_float(cell[reward], name, reward)
            else:
                raise CrowdError(f"column {name!r} must hold structs with the response and its scores, found {type(cell).__name__}")
    return R


def _long_matrix_python(lists: Sequence[Any], plan: _Plan) -> np.ndarray:
    crowd = plan.crowd
    R = np.full((len(lists), len(plan.names)), np.nan)
    for i, entries in enumerate(lists):
        seen = set()
        for e in entries or ():
            j = plan.index.get(e.get(crowd.model_key))
            if j is None:
                continue
            if j in seen:
                raise CrowdError(f"a row lists model {plan.names[j]!r} more than once in {crowd.column!r}; each model may answer once")
            seen.add(j)
            if crowd.reward not in e:
                raise CrowdError(f"entries of {crowd.column!r} have no reward field {crowd.reward!r}; their fields are: {sorted(e)}")
            R[i, j] = _to_float(e[crowd.reward], f"{crowd.column}[{plan.names[j]}]", crowd.reward)
    return R


# -- best-response lengths: read from Arrow offsets (no decoding) or from the decoded cells --------

def _content(cell: Any, key: str) -> Any:
    if not isinstance(cell, Mapping):
        return None
    if key in cell:
        return cell[key]
    found = _pick(cell.keys(), CONTENT_KEYS)
    return cell[found] if found else None


def _nbytes(text: Any) -> int:
    return len(text.encode("utf-8")) if isinstance(text, str) else 0


def _best_bytes_python(columns: Mapping[str, Sequence[Any]], plan: _Plan, best: np.ndarray) -> list[int]:
    crowd = plan.crowd
    out = []
    for i, b in enumerate(best.tolist()):
        if b < 0:
            out.append(0)
        elif crowd.layout == "wide":
            out.append(_nbytes(_content(columns[plan.names[b]][i], crowd.content_key)))
        else:
            entry = next((e for e in columns[crowd.column][i] or () if e.get(crowd.model_key) == plan.names[b]), None)
            out.append(_nbytes(_content(entry, crowd.content_key)))
    return out


def _byte_lengths(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _struct_content(column: pa.ChunkedArray | pa.Array, crowd: Crowd, where: str):
    try:
        return pc.struct_field(column, [crowd.content_key])
    except (KeyError, pa.ArrowInvalid):
        raise CrowdError(f"{where} has no response field {crowd.content_key!r}") from None


def _wide_best_bytes_arrow(table: pa.Table, plan: _Plan, best: np.ndarray) -> np.ndarray:
    out = np.zeros(table.num_rows, dtype=np.int64)
    for j, name in enumerate(plan.names):
        rows = best == j
        if rows.any():
            out[rows] = _byte_lengths(_struct_content(table.column(name), plan.crowd, f"column {name!r}"))[rows]
    return out


def _columns_from_metrics(m: CrowdMetrics, ids: Sequence[str], names: Sequence[str], best_bytes: Sequence[int]) -> dict[str, list]:
    best_names = [names[b] if b >= 0 else None for b in m.best.tolist()]
    return {
        "crowd_id": list(ids),
        "crowd_difficulty": m.difficulty.tolist(),
        "crowd_separability": m.separability.tolist(),
        "crowd_stability": m.stability.tolist(),
        "crowd_best_model": best_names,
        "crowd_best_reward": m.best_reward.tolist(),
        "crowd_n_scored": m.n_scored.astype(np.int64).tolist(),
        "crowd_n_families": m.n_families.astype(np.int64).tolist(),
        "crowd_best_bytes": [int(b) for b in best_bytes],
    }


def _metrics_table(m: CrowdMetrics, ids: Sequence[str], names: Sequence[str], best_bytes: np.ndarray) -> pa.Table:
    best_names = np.array(list(names) + [None], dtype=object)[np.where(m.best >= 0, m.best, len(names))]
    return pa.table(
        [
            pa.array(ids, pa.string()),
            pa.array(m.difficulty),
            pa.array(m.separability),
            pa.array(m.stability),
            pa.array(best_names, pa.string()),
            pa.array(m.best_reward),
            pa.array(m.n_scored.astype(np.int64)),
            pa.array(m.n_families.astype(np.int64)),
            pa.array(best_bytes, pa.int64()),
        ],
        schema=ARROW_SCHEMA,
    )


# -- the map transform --------------------------------------------------------------------------

class CrowdScore:
    """Per-example and batched map transform adding the ``crowd_*`` columns.

    Args:
        crowd: a :class:`~crowdselect_hf.Crowd`; inferred from the data when ``None``.
        reward: the reward field (overrides the crowd's).

    Works with ``ds.map(f)``, ``ds.map(f, batched=True)``, ``num_proc``, ``IterableDataset.map``,
    and Arrow-formatted batches (``ds.with_format("arrow").map(f, batched=True)`` reads only the
    reward fields). Its pickled state is the configuration plus the algorithm version, so the
    ``datasets`` fingerprint is the same in every process and changes with the configuration.

    Policy counts of this process accumulate in :attr:`counts_` (a :class:`PolicyCounts`); with
    ``num_proc`` each worker counts its own rows, so use :func:`crowd_report` for totals.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_list([{"instruction": "Say hi.",
        ...     "m-1b": {"content": "hi", "r": 0.1}, "m-7b": {"content": "Hi!", "r": 0.9}}])
        >>> out = ds.map(CrowdScore())
        >>> out[0]["crowd_best_model"], out[0]["crowd_stability"]
        ('m-7b', 1.0)
    """

    def __init__(self, crowd: Crowd | None = None, reward: str | None = None):
        self.crowd = crowd
        self.reward = reward
        self._reset()

    def _reset(self):
        self._plans: dict[Any, _Plan] = {}
        self.counts_ = PolicyCounts()
        self._warned = False

    def __getstate__(self):
        return {"crowd": self.crowd, "reward": self.reward, "algorithm_version": ALGORITHM_VERSION}

    def __setstate__(self, state):
        self.crowd = state["crowd"]
        self.reward = state["reward"]
        self._reset()

    def __repr__(self):
        return f"CrowdScore(crowd={self.crowd!r}, reward={self.reward!r})"

    # The crowd bound to a given set of columns; long layouts without an explicit crowd add
    # whatever models a batch names.
    def _plan_for(self, key: Any, probe: Any) -> _Plan:
        plan = self._plans.get(key)
        if plan is None:
            if self.crowd is None:
                crowd = Crowd.infer(probe, reward=self.reward)
            else:
                crowd = self.crowd.with_reward(self.reward or self.crowd.reward)
            plan = _Plan(crowd.resolve(probe))
            self._plans[key] = plan
        return plan

    def __call__(self, batch: Any) -> dict[str, Any]:
        if isinstance(batch, pa.Table):
            return self._call_arrow(batch)
        if not isinstance(batch, Mapping):
            raise TypeError(f"CrowdScore expects an example or a batch (a dict), got {type(batch).__name__}")
        probe_crowd = self.crowd
        instruction_key = self._instruction_key(batch, probe_crowd)
        batched = isinstance(batch[instruction_key], (list, tuple))
        if batched:
            n = len(batch[instruction_key])
            if n == 0:
                return {c: [] for c in COLUMNS}
            first = {k: v[0] for k, v in batch.items()}
            columns = batch
        else:
            n = 1
            first = batch
            columns = {k: [v] for k, v in batch.items()}
        plan = self._plan_for(tuple(batch.keys()), first)
        crowd = plan.crowd
        if crowd.layout == "long":
            lists = columns[crowd.column]
            if self.crowd is None:
                extra = sorted({e.get(crowd.model_key) for entries in lists for e in (entries or ())
                                if e.get(crowd.model_key) is not None} - set(plan.names))
                if extra:
                    plan = _Plan(crowd, extra)
            R = _long_matrix_python(lists, plan)
        else:
            R = _wide_matrix_python(columns, plan, n)
        ids = _ids(columns[crowd.instruction], crowd.instruction)
        m = plan.metrics(R)
        self._count(m.counts)
        out = _columns_from_metrics(m, ids, plan.names, _best_bytes_python(columns, plan, m.best))
        return out if batched else {k: v[0] for k, v in out.items()}

    def _call_arrow(self, table: pa.Table) -> dict[str, Any]:
        plan = self._plan_for(("arrow", table.schema), table.schema)
        crowd = plan.crowd
        if table.num_rows == 0:
            return {c: [] for c in COLUMNS}
        R, best_bytes = _answers_arrow(table, plan)
        ids = _ids_arrow(table.column(crowd.instruction), crowd.instruction)
        m = plan.metrics(R)
        self._count(m.counts)
        return _columns_from_metrics(m, ids, plan.names, best_bytes(m.best))

    @staticmethod
    def _instruction_key(batch: Mapping[str, Any], crowd: Crowd | None) -> str:
        from .crowd import INSTRUCTION_KEYS, _pick

        key = _pick(batch.keys(), ((crowd.instruction,) if crowd else ()) + INSTRUCTION_KEYS)
        if key is None:
            raise CrowdError(f"no instruction column found (looked for {list(INSTRUCTION_KEYS)}); columns are: {sorted(batch)}")
        return key

    def _count(self, counts: PolicyCounts) -> None:
        self.counts_ = self.counts_ + counts
        if counts.any_hit and not self._warned:
            self._warned = True
            logger.warning(
                "crowd_score applied a missing-reward policy (%s so far); crowdselect_hf.crowd_report(ds) gives the totals",
                counts.describe(),
            )


crowd_score = CrowdScore()
"""A ready :class:`CrowdScore` that infers the crowd: ``ds.map(crowd_score)``."""


# -- the fast path ------------------------------------------------------------------------------

def _bind(ds: Any, crowd: Crowd | None, reward: str | None) -> _Plan:
    if isinstance(ds, datasets.IterableDataset):
        raise TypeError("score() needs a map-style Dataset; for an IterableDataset use ds.map(crowd_score, batched=True)")
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"score() expects a datasets.Dataset, got {type(ds).__name__}")
    if len(ds) == 0:
        raise CrowdError("the dataset is empty: there is nothing to score")
    if crowd is None:
        crowd = Crowd.infer(ds, reward=reward)
    elif reward is not None:
        crowd = crowd.with_reward(reward)
    crowd = crowd.resolve(ds)
    if crowd.instruction not in ds.column_names:
        raise CrowdError(f"no instruction column {crowd.instruction!r}; columns are: {ds.column_names}")
    return _Plan(crowd)


def _metrics_over_table(table: pa.Table, plan: _Plan) -> tuple[pa.Table, PolicyCounts]:
    """Metrics for every row of an Arrow table, in chunks to bound memory."""
    from datasets.utils.logging import tqdm

    crowd = plan.crowd
    parts = []
    counts = PolicyCounts()
    starts = range(0, table.num_rows, _CHUNK_ROWS)
    for start in tqdm(starts, desc="crowd metrics", unit="chunk", disable=len(starts) < 3):
        part = table.slice(start, _CHUNK_ROWS)
        answers = part.select([crowd.column] if crowd.layout == "long" else plan.names)
        R, best_bytes = _answers_arrow(answers, plan, row_offset=start)
        ids = _ids_arrow(part.column(crowd.instruction), crowd.instruction)
        m = plan.metrics(R)
        counts = counts + m.counts
        parts.append(_metrics_table(m, ids, plan.names, best_bytes(m.best)))
    return pa.concat_tables(parts), counts


def score(ds, crowd: Crowd | None = None, reward: str | None = None):
    """Add the ``crowd_*`` columns, reading only the reward fields, the instructions and the
    response lengths (Arrow offsets; no response is decoded).

    The fast path of ``ds.map(crowd_score)``: same values, bit for bit, but it never decodes a
    response, never rewrites the input table (the new columns are attached beside it, and an
    indices mapping from ``select``/``shuffle`` is kept), and computes everything vectorised.
    When ``ds`` lives in cache files the new columns are cached beside them, keyed by the new
    fingerprint, so calling it again reuses them. Existing ``crowd_*`` columns are replaced.

    Args:
        ds: a ``datasets.Dataset`` in wide or long layout.
        crowd: the crowd; inferred from the features when ``None``.
        reward: the reward field (overrides the crowd's).

    Returns:
        A new ``Dataset`` with the ``crowd_*`` columns. The policy counts are logged once;
        :func:`crowd_report` returns them.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_list([{"instruction": "Say hi.",
        ...     "m-1b": {"content": "hi", "r": 0.1}, "m-7b": {"content": "Hi!", "r": 0.9}}])
        >>> score(ds)[0]["crowd_difficulty"]
        -0.5
    """
    plan = _bind(ds, crowd, reward)
    fingerprint = Hasher.hash(["crowdselect_hf.score", ds._fingerprint, plan.crowd.__getstate__(), ALGORITHM_VERSION])

    cache_path = None
    if ds.cache_files:
        cache_path = os.path.join(os.path.dirname(ds.cache_files[0]["filename"]), f"crowdselect-score-{fingerprint}.arrow")
    if cache_path and os.path.exists(cache_path):
        metrics = MemoryMappedTable.from_file(cache_path)
        logger.info("crowd metrics loaded from cache %s", cache_path)
    else:
        table, counts = _metrics_over_table(ds.data.table, plan)
        (logger.warning if counts.any_hit else logger.info)("crowd metrics: %s", counts.describe())
        if cache_path:
            tmp = f"{cache_path}.{os.getpid()}.tmp"
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, cache_path)
            metrics = MemoryMappedTable.from_file(cache_path)
        else:
            metrics = InMemoryTable(table)

    return attach_columns(ds, metrics, FEATURES, fingerprint)


def crowd_report(ds, crowd: Crowd | None = None, reward: str | None = None) -> PolicyCounts:
    """Count every missing-reward policy the metrics apply to ``ds`` (reads only the rewards).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_list([{"instruction": "Say hi.",
        ...     "m-1b": {"content": "hi", "r": None}, "m-7b": {"content": "Hi!", "r": 0.9}}])
        >>> crowd_report(ds).rewards_unusable
        1
    """
    plan = _bind(ds, crowd, reward)
    cols = [plan.crowd.column] if plan.crowd.layout == "long" else plan.names
    return _metrics_over_table(read_columns(ds, cols + [plan.crowd.instruction]), plan)[1]
