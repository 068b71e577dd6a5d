"""Clustered CrowdSelect selection and its baselines, over a dataset scored with
:func:`~crowdselect_hf.scoring.score` (or ``ds.map(crowd_score)``).

:func:`crowd_select` returns a :class:`Selection`: the ``k`` picked rows (``.indices`` in pool
order, ``.ids``), the per-row score and cluster, the rows that came from back-fill, and its
:class:`~crowdselect_hf.record.SelectionRecord` (``.record``; ``summary()`` is its JSON form).
A ``Selection`` is a picklable predicate, so ``ds.filter(sel)`` keeps the same rows as
``ds.select(sel.indices)`` — also on an ``IterableDataset``, by ``crowd_id``.

Strategies (``strategy=``), each returning exactly ``k`` rows:

===================================  ========================================================
``"crowdselect"``                    combined score, equal quota per KMeans cluster (paper)
``"combined-top"``                   combined score, no clustering
``"random"`` / ``"cluster-random"``  uniform random, globally / an equal quota per cluster
``"reward-top"`` / ``-bottom``       per-instruction max reward (``crowd_best_reward``)
``"length-longest"`` / ``-shortest`` UTF-8 bytes of the instruction plus its best answer
``"<metric>-top"`` / ``-bottom``     one metric (difficulty, separability, stability)
``"<metric>-top-clustered"`` …       the same, an equal quota per cluster
===================================  ========================================================

Eligible rows: a usable reward (finite ``crowd_difficulty``), a non-empty best response
(``crowd_best_bytes > 0``, when the column is there), and the first such row of its ``crowd_id``
(duplicate instructions share an id). Everything else is excluded and counted.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .binding import byte_lengths
from .columns import attach_columns, read_columns
from .clustering import ALGORITHMS, Clustering, fit_kmeans
from .combine import METRICS, SelectionError, check_weights, combine, quota_select, top_k
from .disk_cache import cache_dir_for
from .embeddings import ColumnEmbedder, EmbeddingCache, default_cache, get_embedder, l2_normalise
from .estimator import Params
from .metrics import finite_mean, finite_median
from .provenance import MetricsProvenance, read_provenance
from .record import Clustering as ClusteringRecord
from .record import (
    EXCLUSIONS, ClusterCount, MemberRewards, PoolMetadata, RewardSummary, SelectionRecord, ranked_by, uses_weights,
)
from .strategies import CLUSTERED, STRATEGIES

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("crowd_id", "crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_model",
                    "crowd_best_reward")
POOL_SCHEMA = pa.schema([
    ("crowd_id", pa.string()),
    ("crowd_difficulty", pa.float64()),
    ("crowd_separability", pa.float64()),
    ("crowd_stability", pa.float64()),
    ("crowd_best_reward", pa.float64()),
    ("crowd_best_model", pa.string()),
    ("crowd_combined", pa.float64()),
    ("crowd_cluster", pa.int64()),
    ("crowd_selected", pa.bool_()),
    ("crowd_backfilled", pa.bool_()),
    ("crowd_map_x", pa.float64()),
    ("crowd_map_y", pa.float64()),
    ("crowd_best_bytes", pa.int64()),
    ("crowd_excluded", pa.string()),
    ("crowd_instruction", pa.string()),
])
"""Columns of :meth:`Selection.pool_table`."""
POOL_INSTRUCTION_CHARS = 240
"""The pool table keeps each instruction's first characters only (the report shows short text):
a longer one is stored as its first ``POOL_INSTRUCTION_CHARS - 1`` characters and "…"."""
_MAP_FIT_ROWS = 20_000


def _json_float(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _check_metric_types(schema: pa.Schema) -> None:
    for name in ("crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_reward"):
        kind = schema.field(name).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)):
            raise SelectionError(f"column {name!r} must hold numbers, found {kind}: the crowd_* columns are written by "
                                 "crowdselect_hf.score(ds) (crowdselect score); re-score the table instead of editing them")


class Selection:
    """The outcome of a selection, and a predicate for ``ds.filter``.

    Attributes:
        indices: the ``k`` picked pool rows, int64, ascending (pool order).
        ids: their ``crowd_id``.
        combined: float64 per pool row: the score the strategy ranked by (higher is preferred;
            the CrowdSelect combined score for ``"crowdselect"``); NaN where a row has no usable
            reward or the strategy has no score (random ones).
        clusters: int64 per pool row, ``-1`` when the strategy does not cluster.
        backfilled: the picked indices that came from back-fill, ascending.
        params: JSON-ready settings (strategy, k, n_clusters, weights, embedder, seed, kmeans).

    Call it as ``sel(example)`` (by ``crowd_id``), ``sel(example, idx)`` (by row position, for
    ``with_indices=True``), batched or not.
    """

    def __init__(self, indices: np.ndarray, combined: np.ndarray, clusters: np.ndarray, backfilled: np.ndarray,
                 pool: pa.Table, record: SelectionRecord, map_xy: np.ndarray | None = None,
                 described: pa.Table | None = None, metadata: PoolMetadata | None = None):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.combined = np.asarray(combined, dtype=np.float64)
        self.clusters = np.asarray(clusters, dtype=np.int64)
        self.backfilled = np.asarray(backfilled, dtype=np.int64)
        self.record = record
        self._pool = pool
        self._map = map_xy
        self._described = described  # crowd_best_bytes, crowd_excluded, crowd_instruction of the pool table
        self._metadata = metadata if metadata is not None else PoolMetadata()
        self.ids = pool.column("crowd_id").take(pa.array(self.indices)).to_pylist()
        self._id_set = None
        self._mask = None
        self._pool_ids = None

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that applied to the strategy (:attr:`SelectionRecord.params`)."""
        return self.record.params

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self):
        p = self.params
        return (f"Selection(strategy={p.get('strategy')!r}, k={len(self.indices)}, n_pool={len(self.combined)}, "
                f"backfilled={len(self.backfilled)})")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_id_set"] = None
        state["_mask"] = None
        state["_pool_ids"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # -- predicate ------------------------------------------------------------------------------
    def _ids(self) -> frozenset:
        if self._id_set is None:
            self._id_set = frozenset(self.ids)
        return self._id_set

    def _selected_mask(self) -> np.ndarray:
        if self._mask is None:
            mask = np.zeros(len(self.combined), dtype=bool)
            mask[self.indices] = True
            self._mask = mask
        return self._mask

    def __call__(self, example: Any, idx: Any = None) -> bool | list[bool]:
        if idx is not None:
            mask = self._selected_mask()
            pos = np.asarray(idx, dtype=np.int64)
            if pos.size and (pos.min() < 0 or pos.max() >= mask.size):
                raise SelectionError(
                    f"row index {int(pos.max() if pos.max() >= mask.size else pos.min())} is outside the pool of "
                    f"{mask.size} rows this selection was made from; filter that same dataset"
                )
            if isinstance(example, Mapping) and "crowd_id" in example:
                self._check_positions(pos, example["crowd_id"])
            return mask[pos].tolist() if pos.ndim else bool(mask[pos])
        if not isinstance(example, Mapping) or "crowd_id" not in example:
            raise SelectionError(
                "the selection filters by 'crowd_id', which this example lacks; run crowdselect_hf.score(ds) "
                "(or ds.map(crowd_score)) first, or filter with ds.filter(sel, with_indices=True)"
            )
        if self.record.pool_duplicate_ids:
            raise SelectionError(
                f"the pool has {self.record.pool_duplicate_ids} rows repeating an instruction (same crowd_id), so "
                "filtering by id would keep those duplicates too; use ds.filter(sel, with_indices=True) or "
                "ds.select(sel.indices)"
            )
        ids = self._ids()
        cid = example["crowd_id"]
        if isinstance(cid, str) or cid is None:
            return cid in ids
        return [c in ids for c in cid]

    def _check_positions(self, pos: np.ndarray, crowd_ids: Any) -> None:
        """Every row filtered by position must be the pool's row at that position (same
        ``crowd_id``): a shuffled, sorted or other dataset would otherwise get the wrong rows."""
        if self._pool_ids is None:
            self._pool_ids = np.asarray(self._pool.column("crowd_id").to_numpy(zero_copy_only=False), dtype=object)
        got = np.asarray([crowd_ids] if pos.ndim == 0 else crowd_ids, dtype=object)
        wanted = self._pool_ids[np.atleast_1d(pos)]
        wrong = np.flatnonzero(got != wanted)
        if wrong.size:
            at = int(np.atleast_1d(pos)[wrong[0]])
            raise SelectionError(
                f"row {at} of the filtered dataset is not row {at} of the pool this selection was made from "
                f"(crowd_id {got[wrong[0]]!r}, the pool's is {wanted[wrong[0]]!r}): it was shuffled, sorted or is "
                "another table; filter by id with ds.filter(sel) (no with_indices), or use pool.select(sel.indices)"
            )

    # -- reporting ------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The :class:`~crowdselect_hf.record.SelectionRecord` as a JSON-ready dict: cluster
        accounting, back-fill, exclusions and why, neutral fills, and metric means of the selected
        rows vs the eligible pool."""
        return self.record.to_dict()

    def pool_table(self) -> pa.Table:
        """One row per pool row: its metrics, score, cluster, whether it was selected or
        back-filled, a 2-D PCA map of its embedding (NaN when none was computed), its best
        answer's UTF-8 bytes, why it could not be selected (null: it could; else one of
        :data:`EXCLUSIONS`) and its instruction (cut to :data:`POOL_INSTRUCTION_CHARS`); null
        where the selected table did not hold them. Columns: :data:`POOL_SCHEMA`; the schema
        metadata holds the map axes' explained variance and each member's reward summary
        (:class:`~crowdselect_hf.record.PoolMetadata`, read with ``record.read_pool_metadata``)."""
        n = len(self.combined)
        selected = self._selected_mask().copy()
        back = np.zeros(n, dtype=bool)
        back[self.backfilled] = True
        xy = self._map if self._map is not None else np.full((n, 2), np.nan)
        cols = {name: self._pool.column(name) for name in ("crowd_id", "crowd_difficulty", "crowd_separability",
                                                            "crowd_stability", "crowd_best_reward", "crowd_best_model")}
        cols.update({
            "crowd_combined": pa.array(self.combined, pa.float64()),
            "crowd_cluster": pa.array(self.clusters, pa.int64()),
            "crowd_selected": pa.array(selected),
            "crowd_backfilled": pa.array(back),
            "crowd_map_x": pa.array(xy[:, 0].astype(np.float64)),
            "crowd_map_y": pa.array(xy[:, 1].astype(np.float64)),
        })
        for name in ("crowd_best_bytes", "crowd_excluded", "crowd_instruction"):
            known = self._described is not None and name in self._described.column_names
            cols[name] = self._described.column(name) if known else pa.nulls(n, POOL_SCHEMA.field(name).type)
        schema = POOL_SCHEMA.with_metadata(self._metadata.schema_metadata())
        return pa.table([c.cast(POOL_SCHEMA.field(name).type) for name, c in cols.items()], schema=schema)

    def annotate(self, ds):
        """``ds`` with ``crowd_combined`` and ``crowd_cluster`` attached beside its table (no
        rewrite; a ``select``/``shuffle`` indices mapping is kept). ``ds`` must be the pool this
        selection was made from (same rows, same order).

        Example:
            >>> from datasets import Dataset
            >>> from crowdselect_hf.scoring import score
            >>> ds = score(Dataset.from_list([{"instruction": f"q{i}", "a-1b": {"content": "x", "r": i / 10},
            ...     "a-7b": {"content": "y", "r": 1 - i / 10}} for i in range(6)]))
            >>> crowd_select(ds, k=2, strategy="reward-top").annotate(ds)["crowd_combined"][:3]
            [1.0, 0.9, 0.8]
        """
        import datasets
        from datasets.fingerprint import Hasher
        from datasets.table import InMemoryTable

        n = len(self.combined)
        if len(ds) != n:
            raise SelectionError(f"annotate() needs the pool the selection was made from ({n} rows); this dataset has {len(ds)}")
        if "crowd_id" in ds.column_names:
            ids = read_columns(ds, ["crowd_id"]).column(0)
            if not pc.all(pc.equal(ids, self._pool.column("crowd_id"))).as_py():
                raise SelectionError("annotate(): this dataset's crowd_id column differs from the selection's pool "
                                     "(another dataset or another row order)")
        combined, clusters = self.combined, self.clusters
        if ds._indices is not None:
            pos = ds._indices.column(0).to_numpy()
            combined = np.full(ds.data.num_rows, np.nan)
            clusters = np.full(ds.data.num_rows, -1, dtype=np.int64)
            combined[pos] = self.combined
            clusters[pos] = self.clusters
        extra = InMemoryTable(pa.table({"crowd_combined": pa.array(combined, pa.float64()),
                                        "crowd_cluster": pa.array(clusters, pa.int64())}))
        features = datasets.Features({"crowd_combined": datasets.Value("float64"), "crowd_cluster": datasets.Value("int64")})
        fingerprint = Hasher.hash(["crowdselect_hf.annotate", ds._fingerprint, self.record.to_dict(), self.indices])
        return attach_columns(ds, extra, features, fingerprint)


# -- reading the pool ---------------------------------------------------------------------------------

def _check_dataset(ds) -> None:
    import datasets

    if isinstance(ds, datasets.IterableDataset):
        raise TypeError("crowd_select needs a map-style Dataset (it ranks the whole pool); the resulting Selection "
                        "can then filter an IterableDataset: iterable_ds.filter(sel)")
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"crowd_select expects a datasets.Dataset, got {type(ds).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise SelectionError(
            f"the dataset lacks the columns {missing}: run ds = crowdselect_hf.score(ds) (or ds.map(crowd_score)) "
            "first to add the crowd_* metrics"
        )
    if len(ds) == 0:
        raise SelectionError("the dataset is empty: there is nothing to select")


def _text_column(ds, text_column: str | None, crowd: Any) -> str:
    from .crowd import INSTRUCTION_KEYS

    if text_column is not None:
        if text_column not in ds.column_names:
            raise SelectionError(f"text_column {text_column!r} is not a column; columns are: {ds.column_names}")
        return text_column
    candidates = ((crowd.instruction,) if crowd is not None else ()) + INSTRUCTION_KEYS
    for c in candidates:
        if c in ds.column_names:
            return c
    raise SelectionError(f"no instruction column to embed (looked for {list(candidates)}); pass text_column=...")


def _texts(ds, column: str) -> pa.ChunkedArray:
    """The instruction column as Arrow strings (no Python string is built)."""
    col = read_columns(ds, [column]).column(0)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise SelectionError(f"column {column!r} must hold the instruction text, it holds {col.type}; pass text_column=...")
    if col.null_count:
        bad = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise SelectionError(f"column {column!r}: row {bad} has no text")
    return col


def _lengths(ds, text_column: str) -> np.ndarray:
    """UTF-8 bytes of each row's instruction plus its best answer (``crowd_best_bytes``)."""
    if "crowd_best_bytes" not in ds.column_names:
        raise SelectionError("length strategies read crowd_best_bytes, which this dataset lacks; "
                             "re-run crowdselect_hf.score(ds)")
    cols = read_columns(ds, [text_column, "crowd_best_bytes"])
    best = cols.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
    return byte_lengths(cols.column(0)) + best


def _map_2d(X: np.ndarray, fit_rows: np.ndarray, seed: int) -> tuple[np.ndarray, tuple[float, float] | None]:
    """2-D PCA of the embeddings, fitted on (a sample of) the eligible rows, applied in chunks,
    and the two axes' explained-variance ratios (``None`` when there is no 2-D fit).

    scikit-learn's ``PCA(n_components=2)`` (its covariance solver and sign convention: the largest
    loading of each component is positive), computed with numpy so that a re-selection from cached
    embeddings does not import scikit-learn's decomposition module."""
    if X.shape[1] < 2:
        return np.column_stack([X[:, 0], np.zeros(len(X))]).astype(np.float64), None
    rows = np.flatnonzero(fit_rows)
    if rows.size > _MAP_FIT_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, _MAP_FIT_ROWS, replace=False))
    if rows.size < 2:
        return np.full((len(X), 2), np.nan), None
    sample = np.asarray(X[rows], dtype=np.float32)
    centre = sample.mean(axis=0, dtype=np.float64)
    # The scatter matrix without a centred float64 copy: S.T S - n m m.T (a float32 product, as
    # scikit-learn's covariance solver computes it). A small problem: one BLAS thread (on a busy
    # machine, spinning threads made it 2x slower).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        scatter = (sample.T @ sample).astype(np.float64) - len(sample) * np.outer(centre, centre)
        values, vectors = np.linalg.eigh(scatter)
    total = float(np.trace(scatter))
    variance = tuple(float(v) / total for v in values[::-1][:2]) if total > 0 else None
    top = vectors[:, ::-1][:, :2]
    top *= np.sign(top[np.abs(top).argmax(axis=0), [0, 1]])
    comps = top.astype(np.float32)
    offset = centre @ top  # (x - m) W = x W - m W: no centred copy of the rows
    out = np.empty((len(X), 2), dtype=np.float64)
    for s in range(0, len(X), 65_536):
        out[s : s + 65_536] = X[s : s + 65_536] @ comps
    out -= offset
    return out, variance


# -- what the pool table adds ------------------------------------------------------------------------

def _exclusions(usable: np.ndarray, answerable: np.ndarray, eligible: np.ndarray) -> pa.Array:
    """Per row, why it could not be selected (:data:`EXCLUSIONS`), null when it could."""
    code = np.full(len(usable), -1, dtype=np.int8)
    code[~usable] = 0
    code[usable & ~answerable] = 1
    code[answerable & ~eligible] = 2
    return pa.DictionaryArray.from_arrays(pa.array(code, mask=code < 0), pa.array(EXCLUSIONS)).cast(pa.string())


def cut_instructions(texts: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Each text as the pool table keeps it: up to :data:`POOL_INSTRUCTION_CHARS` characters, a
    longer one cut to its first ``POOL_INSTRUCTION_CHARS - 1`` and "…" (null stays null).

    Example:
        >>> cut_instructions(pa.array(["short", "x" * 300])).to_pylist()[1][-3:], POOL_INSTRUCTION_CHARS
        ('xx…', 240)
    """
    texts = pa.chunked_array([texts]) if isinstance(texts, pa.Array) else texts
    n = POOL_INSTRUCTION_CHARS
    cut = pc.binary_join_element_wise(pc.utf8_slice_codeunits(texts, 0, n - 1), "…", "")
    return pc.if_else(pc.greater(pc.utf8_length(texts), n), cut, texts).cast(pa.string())


def _short_instructions(ds, text_column: str | None, crowd: Any) -> pa.ChunkedArray | None:
    """The instructions as :func:`cut_instructions` keeps them; ``None`` when there is no text column."""
    try:
        col = read_columns(ds, [_text_column(ds, text_column, crowd)]).column(0)
    except SelectionError:
        return None  # e.g. embeddings given for a table without instructions
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return None
    return cut_instructions(col)


def _member_rewards(ds, crowd: Any, provenance: MetricsProvenance | None,
                    selected: np.ndarray) -> tuple[MemberRewards, ...] | None:
    """Each member's usable rewards over the pool and over the ``selected`` rows, read (reward
    fields only) from the table ``ds`` shows; ``None`` when it holds no readable rewards."""
    from .binding import CrowdBinding
    from .crowd import CrowdError

    if crowd is None and provenance is not None:
        crowd = provenance.crowd()  # what the metrics were computed with
    try:
        binding = CrowdBinding.resolve(ds, crowd, provenance.reward if provenance is not None else None)
        # The underlying table, then the rows ds shows: taking rows first would copy the answers.
        table = ds.data.table.select(binding.answer_columns)
        if binding.open:
            flat = pc.list_flatten(table.column(binding.crowd.column))
            binding = binding.with_models(pc.unique(pc.struct_field(flat, [binding.crowd.model_key])).to_pylist())
        R, _ = binding.answers_arrow(table)
    except CrowdError as e:
        logger.info("the pool table gets no per-member reward summary: %s", e)
        return None
    # One member per contiguous row, in the rows ds shows.
    RT = np.ascontiguousarray(R.T if ds._indices is None else R[ds._indices.column(0).to_numpy()].T)

    def summary(v: np.ndarray) -> RewardSummary:  # v: usable rewards only
        return RewardSummary(int(v.size), finite_mean(v) if v.size else None, finite_median(v) if v.size else None)

    out = []
    for j, name in enumerate(binding.names):
        v = RT[j][np.isfinite(RT[j])]
        picked = RT[j][selected]
        levels: tuple[float, ...] | None = ()
        if v.size:
            lo, hi = float(v.min()), float(v.max())
            levels = tuple(sorted({lo, hi})) if ((v == lo) | (v == hi)).all() else None
        size = float(binding.sizes[j])
        out.append(MemberRewards(name, binding.families[j], None if math.isnan(size) else size, summary(v),
                                 summary(picked[np.isfinite(picked)]), levels))
    return tuple(out)


# -- the estimator -----------------------------------------------------------------------------------

class CrowdSelector(Params):
    """CrowdSelect as a scikit-learn style estimator over a scored ``datasets.Dataset``.

    Args:
        k: rows to select.
        n_clusters: KMeans clusters (paper: 10).
        weights: (difficulty, separability, stability) weights of the combined score (paper:
            (1, 1, 2)); a negative weight flips a metric.
        embedder: ``"tfidf"`` (default, offline), ``"minilm"``, ``"column:<name>"``, a model
            folder or Hub id, or an embedder object (see :mod:`crowdselect_hf.embeddings`).
        seed: seeds KMeans, the embedder where it is random, and the random strategies.
        strategy: one of :data:`STRATEGIES`.
        kmeans: ``"auto"``, ``"full"``, ``"sampled"`` or ``"minibatch"``
            (:func:`~crowdselect_hf.clustering.fit_kmeans`).
        n_init: KMeans initialisations (paper: 20).
        text_column: the instruction column to embed; found automatically by default.
        crowd: the :class:`~crowdselect_hf.crowd.Crowd` (length strategies read best responses);
            inferred when ``None``.
        cache: an :class:`~crowdselect_hf.embeddings.EmbeddingCache` of embeddings and
            clusterings; by default the process-wide one, which also keeps them on disk beside
            the dataset's cache files (or under ``$CROWDSELECT_HOME``); ``False`` for none.

    Attributes (after ``fit``):
        selection_: the :class:`Selection`.
        selected_indices_: ``selection_.indices``.
        combined_: per pool row, the strategy's score.
        labels_: per pool row, its cluster (``-1`` without clustering).
        backfilled_: indices that came from back-fill.
        quotas_: per cluster quota (empty without clustering).
        cluster_sizes_: eligible rows per cluster.
        eligible_: boolean mask of the rows that could be selected.
        cluster_centers_, inertia_, kmeans_algorithm_: the clustering (``None`` without).
        embedding_name_: the embedder used (``None`` without clustering).

    Example:
        >>> from datasets import Dataset
        >>> from crowdselect_hf.scoring import score
        >>> rows = [{"instruction": f"{w} question {i}", "m-1b": {"content": "a", "r": (i * 7 % 10) / 10},
        ...          "m-7b": {"content": "b", "r": (i * 3 % 10) / 10}}
        ...         for i, w in enumerate(["cooking", "physics", "poetry", "travel"] * 5)]
        >>> sel = CrowdSelector(k=6, n_clusters=3).fit(score(Dataset.from_list(rows)))
        >>> len(sel.selected_indices_), sorted(set(sel.labels_.tolist()))
        (6, [0, 1, 2])
    """

    def __init__(self, k: int = 1000, n_clusters: int = 10, weights: Sequence[float] = (1, 1, 2), embedder: Any = "tfidf",
                 seed: int = 42, strategy: str = "crowdselect", kmeans: str = "auto", n_init: int = 20,
                 text_column: str | None = None, crowd: Any = None, cache: Any = None):
        self.k = k
        self.n_clusters = n_clusters
        self.weights = weights
        self.embedder = embedder
        self.seed = seed
        self.strategy = strategy
        self.kmeans = kmeans
        self.n_init = n_init
        self.text_column = text_column
        self.crowd = crowd
        self.cache = cache

    def _validate(self) -> np.ndarray:
        if self.strategy not in STRATEGIES:
            raise SelectionError(f"unknown strategy {self.strategy!r}; choose one of {list(STRATEGIES)}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)):
            raise SelectionError(f"k must be a whole number of rows, got {self.k!r}")
        if self.k <= 0:
            raise SelectionError(f"k must be at least 1, got {self.k}")
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 1:
            raise SelectionError(f"n_clusters must be a whole number ≥ 1, got {self.n_clusters!r}")
        if self.kmeans not in ALGORITHMS:
            raise SelectionError(f"unknown kmeans {self.kmeans!r}; choose one of {ALGORITHMS}")
        if not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise SelectionError(f"n_init must be a whole number ≥ 1, got {self.n_init!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**32:
            raise SelectionError(f"seed must be a whole number from 0 to 2**32 - 1 (--seed), got {self.seed!r}")
        return check_weights(self.weights)

    def fit(self, ds, y: Any = None, embeddings: np.ndarray | None = None) -> "CrowdSelector":
        """Select from ``ds``.

        Args:
            ds: a ``datasets.Dataset`` with the ``crowd_*`` columns.
            y: ignored (scikit-learn convention).
            embeddings: optional precomputed ``[len(ds), d]`` instruction embeddings; they
                replace the embedder.

        Returns:
            ``self``, with the fitted attributes set.
        """
        weights = self._validate()
        _check_dataset(ds)
        provenance = self._check_provenance(ds)
        strategy, k, seed = self.strategy, int(self.k), int(self.seed)
        pool = read_columns(ds, REQUIRED_COLUMNS)
        _check_metric_types(pool.schema)
        n = pool.num_rows
        if pool.column("crowd_id").null_count:
            bad = int(np.argmax(pool.column("crowd_id").is_null().to_numpy(zero_copy_only=False)))
            raise SelectionError(f"row {bad} has no crowd_id; re-run crowdselect_hf.score(ds)")
        ids = pool.column("crowd_id").to_numpy(zero_copy_only=False).astype(str)
        M = np.column_stack([pool.column(f"crowd_{m}").to_numpy(zero_copy_only=False).astype(np.float64) for m in METRICS])
        best_reward = pool.column("crowd_best_reward").to_numpy(zero_copy_only=False).astype(np.float64)

        # Ties break by crowd_id: rank the ids once, as integers.
        _, first_any, tiebreak = np.unique(ids, return_index=True, return_inverse=True)
        usable = np.isfinite(M[:, 0])
        # A row whose best answer is empty has nothing to train on: not selectable (counted).
        answerable = usable.copy()
        if "crowd_best_bytes" in ds.column_names:
            answerable &= read_columns(ds, ["crowd_best_bytes"]).column(0).to_numpy(zero_copy_only=False) > 0
        answerable_rows = np.flatnonzero(answerable)
        _, first_answerable = np.unique(tiebreak[answerable_rows], return_index=True)
        eligible = np.zeros(n, dtype=bool)
        eligible[answerable_rows[first_answerable]] = True
        n_eligible = int(eligible.sum())
        if k > n_eligible:
            raise SelectionError(
                f"k = {k} (--k) is more than the {n_eligible} usable rows of the pool ({n} rows: {int((~usable).sum())} "
                f"without a usable reward, {int((usable & ~answerable).sum())} with an empty best response, "
                f"{int(answerable.sum()) - n_eligible} repeating an instruction)"
            )
        clustered = strategy in CLUSTERED
        if clustered and self.n_clusters > n_eligible:
            raise SelectionError(f"n_clusters = {self.n_clusters} (--n-clusters) is more than the {n_eligible} usable rows of the pool")

        comb = combine(M, weights, eligible)
        score = self._strategy_score(strategy, comb, M, best_reward, ds)

        labels = np.full(n, -1, dtype=np.int64)
        central = np.empty(0, dtype=np.int64)
        clustering: Clustering | None = None
        map_xy = map_variance = None
        embedding_name = None
        quotas = sizes = np.empty(0, dtype=np.int64)
        if clustered:
            X, embedding_name, key, where = self._embed(ds, embeddings, n)
            rows = np.flatnonzero(eligible)
            clustering = self._cluster(X, rows, seed, key, where)
            labels[rows] = clustering.labels
            others = np.flatnonzero(~eligible)
            if others.size:
                labels[others] = clustering.predict(X[others])
            rank_score = score if not strategy.endswith("random") else np.random.default_rng(seed).random(n)
            res = quota_select(np.where(eligible, rank_score, np.nan), labels, k, eligible, tiebreak,
                               n_clusters=int(self.n_clusters))
            indices, backfilled, quotas, sizes, taken = res.indices, res.backfilled, res.quotas, res.sizes, res.taken
            map_xy, map_variance = _map_2d(X, eligible, seed)
            fitted = clustering.central  # set by fit_kmeans and kept by the cache
            central = np.where(fitted >= 0, rows[np.maximum(fitted, 0)], -1)  # per cluster, a pool row or -1
        elif strategy == "random":
            rows = np.flatnonzero(eligible)
            indices = np.sort(np.random.default_rng(seed).choice(rows, size=k, replace=False)).astype(np.int64)
            backfilled = np.empty(0, dtype=np.int64)
        else:
            indices = top_k(np.where(eligible, score, np.nan), k, eligible, tiebreak)
            backfilled = np.empty(0, dtype=np.int64)

        record = self._record(strategy, k, seed, weights, embedding_name, clustering, n, usable, answerable, eligible,
                              n - len(first_any), comb.neutral_filled, M, best_reward, indices, backfilled,
                              labels if clustered else None, quotas, sizes, taken if clustered else None, provenance,
                              [str(ids[r]) if r >= 0 else None for r in central.tolist()])
        if any(record.neutral_filled.values()):
            logger.info("neutral 0.5 used for NaN metrics: %s", dict(record.neutral_filled))
        described = {"crowd_excluded": _exclusions(usable, answerable, eligible)}
        if "crowd_best_bytes" in ds.column_names:
            described["crowd_best_bytes"] = read_columns(ds, ["crowd_best_bytes"]).column(0)
        instructions = _short_instructions(ds, self.text_column, self.crowd)
        if instructions is not None:
            described["crowd_instruction"] = instructions
        metadata = PoolMetadata(map_variance, _member_rewards(ds, self.crowd, provenance, indices))
        self.selection_ = Selection(indices, score, labels, backfilled, pool, record, map_xy, pa.table(described), metadata)
        self.selected_indices_ = self.selection_.indices
        self.combined_ = score
        self.labels_ = labels
        self.backfilled_ = backfilled
        self.quotas_ = quotas
        self.cluster_sizes_ = sizes
        self.eligible_ = eligible
        self.cluster_centers_ = clustering.centers if clustering is not None else None
        self.inertia_ = clustering.inertia if clustering is not None else None
        self.kmeans_algorithm_ = clustering.algorithm if clustering is not None else None
        self.embedding_name_ = embedding_name
        return self

    # -- pieces of fit ---------------------------------------------------------------------------
    def _check_provenance(self, ds) -> MetricsProvenance | None:
        """The provenance of ``ds``'s metrics; an error when it differs from ``crowd``."""
        provenance = read_provenance(ds)
        if self.crowd is None or provenance is None or self.crowd.reward is None:
            return provenance
        asked = MetricsProvenance.of(self.crowd)
        differs = provenance.differences(asked)
        if differs:
            raise SelectionError("the crowd_* metrics of this dataset were computed with another " + "; ".join(differs)
                                 + ": re-score it first with crowdselect_hf.score(ds, crowd=...) (the CLI re-scores by itself)")
        return provenance

    def _strategy_score(self, strategy, comb, M, best_reward, ds) -> np.ndarray:
        usable = comb.usable
        if strategy in ("crowdselect", "combined-top"):
            return comb.score
        if strategy.endswith("random"):
            return np.full(len(usable), np.nan)
        if strategy.startswith("reward-"):
            s = best_reward if strategy == "reward-top" else -best_reward
            return np.where(usable, s, np.nan)
        if strategy.startswith("length-"):
            L = _lengths(ds, _text_column(ds, self.text_column, self.crowd)).astype(np.float64)
            return np.where(usable, L if strategy == "length-longest" else -L, np.nan)
        metric, direction = strategy.split("-")[:2]
        q = comb.quantiles[:, METRICS.index(metric)]
        return q if direction == "top" else 1.0 - q

    def _cache(self) -> EmbeddingCache | bool:
        cache = default_cache if self.cache is None else self.cache
        if cache is not False and not isinstance(cache, EmbeddingCache):
            raise SelectionError(f"cache must be an EmbeddingCache, None or False, got {cache!r}")
        return cache

    def _embed(self, ds, embeddings, n) -> tuple[np.ndarray, str, str | None, Any]:
        """The embeddings, the embedder's name, their cache key (``None``: not from the cache) and
        the dataset's cache folder (``None``: no disk cache)."""
        cache = self._cache()
        where = cache_dir_for(ds) if cache is not False and cache.on_disk else None
        if embeddings is not None:
            X = l2_normalise(embeddings, "embeddings")
            if X.shape[0] != n:
                raise SelectionError(f"embeddings have {X.shape[0]} rows for a pool of {n}")
            return X, "precomputed", None, where
        embedder = get_embedder(self.embedder)
        if isinstance(embedder, ColumnEmbedder) or hasattr(embedder, "embed_dataset"):
            return embedder.embed_dataset(ds), embedder.name, None, where
        texts = _texts(ds, _text_column(ds, self.text_column, self.crowd))
        key = None
        if cache is False:
            X = embedder.embed(texts if getattr(embedder, "accepts_arrow", False) else texts.to_pylist())
            X = l2_normalise(X, f"embeddings of {embedder.name}")
        else:
            X, key = cache.embeddings(embedder, texts, where)
        if X.shape[0] != n:
            raise SelectionError(f"embedder {embedder.name!r} returned {X.shape[0]} rows for {n} texts")
        return X, embedder.name, key, where

    def _cluster(self, X: np.ndarray, rows: np.ndarray, seed: int, key: str | None, where: Any) -> Clustering:
        """KMeans of the rows ``rows`` of ``X``, through the cache unless ``cache=False``."""
        cache = self._cache()
        options = {"n_clusters": int(self.n_clusters), "seed": seed, "algorithm": self.kmeans, "n_init": int(self.n_init)}
        if cache is False:
            return fit_kmeans(X if rows.size == len(X) else X[rows], **options)
        return cache.clusters(X, rows, key=key, where=where, **options)

    def _record(self, strategy, k, seed, weights, embedding_name, clustering, n, usable, answerable, eligible,
                pool_duplicates, neutral_filled, M, best_reward, indices, backfilled, labels, quotas, sizes, taken,
                provenance, central_ids) -> SelectionRecord:
        selected = np.zeros(n, dtype=bool)
        selected[indices] = True
        back = np.zeros(n, dtype=bool)
        back[backfilled] = True
        means = {}
        for name, values in [*zip(METRICS, M.T), ("best_reward", best_reward)]:
            sel_vals, pool_vals = values[selected], values[eligible]
            means[name] = {
                "selected": _json_float(np.nanmean(sel_vals)) if np.isfinite(sel_vals).any() else None,
                "pool": _json_float(np.nanmean(pool_vals)) if np.isfinite(pool_vals).any() else None,
            }
        clusters = ()
        if labels is not None:
            clusters = tuple(
                ClusterCount(cluster=c, pool_rows=int((labels == c).sum()), candidates=int(sizes[c]), quota=int(quotas[c]),
                             picked_by_quota=int(taken[c]), backfilled=int((back & (labels == c)).sum()),
                             central_id=central_ids[c] if c < len(central_ids) else None)
                for c in range(len(quotas)))
        return SelectionRecord(
            strategy=strategy, k=k, ranked_by=ranked_by(strategy),
            weights=tuple(float(w) for w in weights) if uses_weights(strategy) else None,
            seed=seed if clustering is not None or strategy.endswith("random") else None,
            clustering=ClusteringRecord(n_clusters=int(self.n_clusters), embedder=embedding_name, kmeans=clustering.algorithm,
                                  n_init=int(self.n_init), inertia=_json_float(clustering.inertia))
            if clustering is not None else None,
            clusters=clusters, n_pool=int(n), n_eligible=int(eligible.sum()), n_selected=int(len(indices)),
            n_backfilled=int(len(backfilled)),
            excluded={"no_usable_reward": int((~usable).sum()), "empty_best_response": int((usable & ~answerable).sum()),
                      "duplicate_instruction": int((answerable & ~eligible).sum())},
            pool_duplicate_ids=int(pool_duplicates), neutral_filled=dict(neutral_filled), metric_means=means,
            metrics=provenance.to_dict() if provenance is not None else None,
        )


def crowd_select(ds, k: int, n_clusters: int = 10, weights: Sequence[float] = (1, 1, 2), embedder: Any = "tfidf",
                 seed: int = 42, strategy: str = "crowdselect", *, kmeans: str = "auto", n_init: int = 20,
                 embeddings: np.ndarray | None = None, text_column: str | None = None, crowd: Any = None,
                 cache: Any = None) -> Selection:
    """Select ``k`` rows of a scored dataset with CrowdSelect or a baseline.

    Args:
        ds: a ``datasets.Dataset`` with the ``crowd_*`` columns of :func:`~crowdselect_hf.score`.
        k: rows to select (exactly this many come out).
        n_clusters: KMeans clusters for the clustered strategies.
        weights: (difficulty, separability, stability) weights.
        embedder: see :class:`CrowdSelector`.
        seed: random seed.
        strategy: one of :data:`STRATEGIES`.
        kmeans, n_init, text_column, crowd, cache: see :class:`CrowdSelector`.
        embeddings: precomputed ``[len(ds), d]`` embeddings (replace the embedder).

    Returns:
        A :class:`Selection`; ``ds.filter(sel)`` or ``ds.select(sel.indices)`` gives the subset.

    Example:
        >>> from datasets import Dataset
        >>> from crowdselect_hf.scoring import score
        >>> ds = score(Dataset.from_list([{"instruction": f"q{i}", "a-1b": {"content": "x" * i, "r": i / 10},
        ...     "a-7b": {"content": "y", "r": 0.0}} for i in range(8)]))
        >>> sel = crowd_select(ds, k=3, strategy="reward-top")
        >>> sel.indices.tolist(), list(ds.filter(sel)["instruction"])
        ([5, 6, 7], ['q5', 'q6', 'q7'])
    """
    return CrowdSelector(k=k, n_clusters=n_clusters, weights=weights, embedder=embedder, seed=seed, strategy=strategy,
                         kmeans=kmeans, n_init=n_init, text_column=text_column, crowd=crowd,
                         cache=cache).fit(ds, embeddings=embeddings).selection_
