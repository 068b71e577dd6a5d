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

import json
import logging
import os
from typing import Any, Mapping, Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.fingerprint import Hasher
from datasets.table import InMemoryTable, MemoryMappedTable

from .binding import CrowdBinding, content_id, probe_example  # noqa: F401  (content_id: re-exported)
from .columns import attach_columns, read_columns
from .crowd import Crowd, CrowdError, find_instruction
from .metrics import ALGORITHM_VERSION, CrowdMetrics, PolicyCounts
from .provenance import MetricsProvenance

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
        self._bindings: dict[Any, CrowdBinding] = {}
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

    # One binding per set of columns (and per Arrow schema); an open long binding grows by the
    # models each batch names.
    def _binding_for(self, key: Any, probe: Any) -> CrowdBinding:
        binding = self._bindings.get(key)
        if binding is None:
            try:
                binding = CrowdBinding.resolve(probe, self.crowd, self.reward)
            except CrowdError:
                # A row in which no member shows (every answer cell None) reads as unanswered with
                # the crowd already bound to these columns; without one, the error stands.
                binding = self._bindings.get(("columns", key[0]))
                if binding is None or any(isinstance(v, (Mapping, list)) and v for v in probe.values()):
                    raise
            self._bindings[key] = self._bindings[("columns", key[0])] = binding
        return binding

    def __call__(self, batch: Any) -> dict[str, Any]:
        if isinstance(batch, pa.Table):
            return self._call_arrow(batch)
        if not isinstance(batch, Mapping):
            raise TypeError(f"CrowdScore expects an example or a batch (a dict), got {type(batch).__name__}")
        batch = _plain_values(batch)
        instruction = find_instruction(batch.keys(), self.crowd.instruction if self.crowd else None)
        batched = isinstance(batch[instruction], (list, tuple))
        if batched:
            n = len(batch[instruction])
            if n == 0:
                return {c: [] for c in COLUMNS}
            columns = batch
        else:
            n = 1
            columns = {k: [v] for k, v in batch.items()}
        probe = probe_example(columns)
        binding = self._binding_for((tuple(batch.keys()), _shape(probe)), probe)
        if binding.open:
            binding = binding.with_models([e.get(binding.crowd.model_key) for entries in columns[binding.crowd.column]
                                           for e in (entries or ())])
        R = binding.rewards_python(columns, n)
        ids = binding.ids_python(columns[binding.instruction])
        m = binding.metrics(R)
        self._count(m.counts)
        out = _columns_from_metrics(m, ids, binding.names, binding.best_bytes_python(columns, m.best))
        return out if batched else {k: v[0] for k, v in out.items()}

    def _call_arrow(self, table: pa.Table) -> dict[str, Any]:
        binding = self._binding_for(("arrow", table.schema), table.schema)
        if table.num_rows == 0:
            return {c: [] for c in COLUMNS}
        if binding.open:
            flat = pc.list_flatten(table.column(binding.crowd.column))
            binding = binding.with_models(pc.unique(pc.struct_field(flat, [binding.crowd.model_key])).to_pylist())
        R, best_bytes = binding.answers_arrow(table)
        ids = binding.ids_arrow(table.column(binding.instruction))
        m = binding.metrics(R)
        self._count(m.counts)
        return _columns_from_metrics(m, ids, binding.names, best_bytes(m.best))

    def output_features(self, features: datasets.Features) -> datasets.Features:
        """``features`` plus the ``crowd_*`` columns: pass them as ``ds.map(crowd_score,
        features=crowd_score.output_features(ds.features))`` when the first rows ``datasets``
        writes may all lack a usable reward (its writer types a column from the first batch it
        writes, and cannot type an all-None ``crowd_best_model``)."""
        return datasets.Features({**{k: v for k, v in features.items() if k not in FEATURES}, **FEATURES})

    def _count(self, counts: PolicyCounts) -> None:
        self.counts_ = self.counts_ + counts
        if counts.any_hit and not self._warned:
            self._warned = True
            logger.info(
                "crowd_score applied a missing-reward policy (%s so far); crowdselect_hf.crowd_report(ds) gives the totals",
                counts.describe(),
            )


def _shape(example: Mapping[str, Any]) -> tuple:
    """What a binding depends on in an example: each column's struct fields (or its type)."""
    def shape(v):
        if isinstance(v, Mapping):
            return tuple(sorted(v))
        if isinstance(v, list) and v and isinstance(v[0], Mapping):
            return ("list",) + tuple(sorted(v[0]))
        return type(v).__name__
    return tuple(shape(v) for v in example.values())


def _plain_values(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """A batch of a numpy-formatted dataset as lists; tensors of other formats are refused."""
    if not any(not isinstance(v, (str, list, dict, type(None))) for v in batch.values()):
        return batch
    out = {}
    for key, value in batch.items():
        kind = type(value).__module__.split(".")[0]
        if kind in ("torch", "tensorflow", "jax", "jaxlib", "polars", "pandas"):
            raise TypeError(f"column {key!r} of this batch is a {type(value).__module__}.{type(value).__name__}: "
                            "crowd_score reads Python or numpy values; map over ds.with_format(None) (or "
                            "ds.with_format('numpy')) and set your format afterwards")
        out[key] = value.tolist() if isinstance(value, np.ndarray) and value.ndim else value
    return out


crowd_score = CrowdScore()
"""A ready :class:`CrowdScore` that infers the crowd: ``ds.map(crowd_score)``."""


# -- the fast path ------------------------------------------------------------------------------

def _bind(ds: Any, crowd: Crowd | None, reward: str | None) -> CrowdBinding:
    if isinstance(ds, datasets.IterableDataset):
        raise TypeError("score() needs a map-style Dataset; for an IterableDataset use ds.map(crowd_score, batched=True)")
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"score() expects a datasets.Dataset, got {type(ds).__name__}")
    if len(ds) == 0:
        raise CrowdError("the dataset is empty: there is nothing to score")
    return CrowdBinding.resolve(ds, crowd, reward)


def _metrics_over_table(table: pa.Table, binding: CrowdBinding) -> tuple[pa.Table, PolicyCounts]:
    """Metrics for every row of an Arrow table, in chunks to bound memory."""
    from datasets.utils.logging import tqdm

    parts = []
    counts = PolicyCounts()
    starts = range(0, table.num_rows, _CHUNK_ROWS)
    for start in tqdm(starts, desc="crowd metrics", unit="chunk", disable=len(starts) < 3):
        part = table.slice(start, _CHUNK_ROWS)
        R, best_bytes = binding.answers_arrow(part.select(binding.answer_columns))
        ids = binding.ids_arrow(part.column(binding.instruction))
        m = binding.metrics(R)
        counts = counts + m.counts
        parts.append(_metrics_table(m, ids, binding.names, best_bytes(m.best)))
    return pa.concat_tables(parts), counts


def _metrics_of(ds, binding: CrowdBinding) -> tuple[pa.Table, PolicyCounts]:
    """Metrics for every row of ``ds``'s table that ``ds`` shows, aligned with that table.

    A view that leaves rows out (``select``) is scored on the rows it shows only, so a bad value
    in a hidden row neither raises nor counts; hidden rows get null metrics, which no view of
    ``ds`` can reach. Views that show every row (``shuffle``) read the table as it is.
    """
    try:
        return _metrics_of_table(ds, binding)
    except CrowdError:
        if ds._indices is None:
            raise
        # Report the error the view's own row order meets first, as ds.map over the view does;
        # only this failing path pays for reading the answers in that order.
        _metrics_over_table(read_columns(ds, binding.answer_columns + [binding.instruction]), binding)
        raise


def _metrics_of_table(ds, binding: CrowdBinding) -> tuple[pa.Table, PolicyCounts]:
    table = ds.data.table
    shown = None if ds._indices is None else np.unique(ds._indices.column(0).to_numpy())
    if shown is None or len(shown) == table.num_rows:
        return _metrics_over_table(table, binding)
    part = table.select(binding.answer_columns + [binding.instruction]).take(pa.array(shown))
    metrics, counts = _metrics_over_table(part, binding)
    where = np.full(table.num_rows, -1, dtype=np.int64)
    where[shown] = np.arange(len(shown))
    return metrics.take(pa.array(where, mask=where < 0)), counts


def metrics_features(crowd: Crowd) -> datasets.Features:
    """:data:`FEATURES` with the provenance of metrics computed with ``crowd`` on ``crowd_id``."""
    features = datasets.Features(FEATURES)
    features["crowd_id"] = datasets.Value("string", id=MetricsProvenance.of(crowd).to_text())
    return features


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
    return score_with_counts(ds, crowd, reward)[0]


_COUNTS_KEY = b"crowdselect_counts"


def score_with_counts(ds, crowd: Crowd | None = None, reward: str | None = None) -> tuple[Any, PolicyCounts]:
    """:func:`score`, and the :class:`PolicyCounts` of that one pass (kept with the cached
    columns, so a cache hit returns them too: no second pass over the rewards).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_list([{"instruction": "Say hi.",
        ...     "m-1b": {"content": "hi", "r": None}, "m-7b": {"content": "Hi!", "r": 0.9}}])
        >>> score_with_counts(ds)[1].rewards_unusable
        1
    """
    binding = _bind(ds, crowd, reward)
    fingerprint = Hasher.hash(["crowdselect_hf.score", ds._fingerprint, binding.crowd.__getstate__(), ALGORITHM_VERSION])

    cache_path = None
    if ds.cache_files:
        cache_path = os.path.join(os.path.dirname(ds.cache_files[0]["filename"]), f"crowdselect-score-{fingerprint}.arrow")
    if cache_path and os.path.exists(cache_path):
        metrics = MemoryMappedTable.from_file(cache_path)
        counts = PolicyCounts(**json.loads((metrics.schema.metadata or {}).get(_COUNTS_KEY, b"{}")))
        logger.info("crowd metrics loaded from cache %s", cache_path)
    else:
        table, counts = _metrics_of(ds, binding)
        logger.info("crowd metrics: %s", counts.describe())
        if cache_path:
            table = table.replace_schema_metadata({_COUNTS_KEY: json.dumps(counts.as_dict()).encode()})
            tmp = f"{cache_path}.{os.getpid()}.tmp"
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, cache_path)
            metrics = MemoryMappedTable.from_file(cache_path)
        else:
            metrics = InMemoryTable(table)
    return attach_columns(ds, metrics, metrics_features(binding.crowd), fingerprint), counts


def crowd_report(ds, crowd: Crowd | None = None, reward: str | None = None) -> PolicyCounts:
    """Count every missing-reward policy the metrics apply to ``ds`` (reads only the rewards).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_list([{"instruction": "Say hi.",
        ...     "m-1b": {"content": "hi", "r": None}, "m-7b": {"content": "Hi!", "r": 0.9}}])
        >>> crowd_report(ds).rewards_unusable
        1
    """
    binding = _bind(ds, crowd, reward)
    return _metrics_over_table(read_columns(ds, binding.answer_columns + [binding.instruction]), binding)[1]
