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
from sklearn.base import BaseEstimator

from .binding import byte_lengths
from .columns import attach_columns, read_columns
from .clustering import ALGORITHMS, Clustering, fit_kmeans
from .combine import METRICS, SelectionError, check_weights, combine, quota_select, top_k
from .embeddings import ColumnEmbedder, EmbeddingCache, default_cache, get_embedder, l2_normalise
from .provenance import MetricsProvenance, read_provenance
from .record import Clustering as ClusteringRecord
from .record import ClusterCount, SelectionRecord, ranked_by, uses_weights
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
])
"""Columns of :meth:`Selection.pool_table`."""
_MAP_FIT_ROWS = 50_000


def _json_float(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


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
                 pool: pa.Table, record: SelectionRecord, map_xy: np.ndarray | None = None):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.combined = np.asarray(combined, dtype=np.float64)
        self.clusters = np.asarray(clusters, dtype=np.int64)
        self.backfilled = np.asarray(backfilled, dtype=np.int64)
        self.record = record
        self._pool = pool
        self._map = map_xy
        self.ids = pool.column("crowd_id").take(pa.array(self.indices)).to_pylist()
        self._id_set = None
        self._mask = None

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

    # -- reporting ------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The :class:`~crowdselect_hf.record.SelectionRecord` as a JSON-ready dict: cluster
        accounting, back-fill, exclusions and why, neutral fills, and metric means of the selected
        rows vs the eligible pool."""
        return self.record.to_dict()

    def pool_table(self) -> pa.Table:
        """One row per pool row: its metrics, score, cluster, whether it was selected or
        back-filled, and a 2-D PCA map of its embedding (NaN when none was computed).
        Columns: :data:`POOL_SCHEMA`."""
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
        return pa.table([c.cast(POOL_SCHEMA.field(name).type) for name, c in cols.items()], schema=POOL_SCHEMA)

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


def _texts(ds, column: str) -> list[str]:
    col = read_columns(ds, [column]).column(0)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise SelectionError(f"column {column!r} must hold the instruction text, it holds {col.type}; pass text_column=...")
    if col.null_count:
        bad = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise SelectionError(f"column {column!r}: row {bad} has no text")
    return col.to_pylist()


def _lengths(ds, text_column: str) -> np.ndarray:
    """UTF-8 bytes of each row's instruction plus its best answer (``crowd_best_bytes``)."""
    if "crowd_best_bytes" not in ds.column_names:
        raise SelectionError("length strategies read crowd_best_bytes, which this dataset lacks; "
                             "re-run crowdselect_hf.score(ds)")
    cols = read_columns(ds, [text_column, "crowd_best_bytes"])
    best = cols.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
    return byte_lengths(cols.column(0)) + best


def _map_2d(X: np.ndarray, fit_rows: np.ndarray, seed: int) -> np.ndarray:
    """2-D PCA of the embeddings, fitted on (a sample of) the eligible rows, applied in chunks."""
    from sklearn.decomposition import PCA

    if X.shape[1] < 2:
        return np.column_stack([X[:, 0], np.zeros(len(X))]).astype(np.float64)
    rows = np.flatnonzero(fit_rows)
    if rows.size > _MAP_FIT_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, _MAP_FIT_ROWS, replace=False))
    if rows.size < 2:
        return np.full((len(X), 2), np.nan)
    pca = PCA(n_components=2, random_state=seed).fit(X[rows])
    mean = pca.mean_.astype(np.float32)
    comps = pca.components_.T.astype(np.float32)
    out = np.empty((len(X), 2), dtype=np.float64)
    for s in range(0, len(X), 65_536):
        out[s : s + 65_536] = (X[s : s + 65_536] - mean) @ comps
    return out


# -- the estimator -----------------------------------------------------------------------------------

class CrowdSelector(BaseEstimator):
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
        cache: an :class:`~crowdselect_hf.embeddings.EmbeddingCache`; the process-wide in-memory
            one by default, ``False`` for none.

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
            raise SelectionError(f"n_clusters={self.n_clusters} is more than the {n_eligible} usable rows of the pool")

        comb = combine(M, weights, eligible)
        score = self._strategy_score(strategy, comb, M, best_reward, ds)

        labels = np.full(n, -1, dtype=np.int64)
        clustering: Clustering | None = None
        map_xy = None
        embedding_name = None
        quotas = sizes = np.empty(0, dtype=np.int64)
        if clustered:
            X, embedding_name = self._embed(ds, embeddings, n)
            rows = np.flatnonzero(eligible)
            clustering = fit_kmeans(X if rows.size == n else X[rows], n_clusters=int(self.n_clusters), seed=seed, algorithm=self.kmeans,
                                    n_init=int(self.n_init))
            labels[rows] = clustering.labels
            others = np.flatnonzero(~eligible)
            if others.size:
                labels[others] = clustering.predict(X[others])
            rank_score = score if not strategy.endswith("random") else np.random.default_rng(seed).random(n)
            res = quota_select(np.where(eligible, rank_score, np.nan), labels, k, eligible, tiebreak,
                               n_clusters=int(self.n_clusters))
            indices, backfilled, quotas, sizes, taken = res.indices, res.backfilled, res.quotas, res.sizes, res.taken
            map_xy = _map_2d(X, eligible, seed)
        elif strategy == "random":
            rows = np.flatnonzero(eligible)
            indices = np.sort(np.random.default_rng(seed).choice(rows, size=k, replace=False)).astype(np.int64)
            backfilled = np.empty(0, dtype=np.int64)
        else:
            indices = top_k(np.where(eligible, score, np.nan), k, eligible, tiebreak)
            backfilled = np.empty(0, dtype=np.int64)

        record = self._record(strategy, k, seed, weights, embedding_name, clustering, n, usable, answerable, eligible,
                              n - len(first_any), comb.neutral_filled, M, best_reward, indices, backfilled,
                              labels if clustered else None, quotas, sizes, taken if clustered else None, provenance)
        if any(record.neutral_filled.values()):
            logger.info("neutral 0.5 used for NaN metrics: %s", dict(record.neutral_filled))
        self.selection_ = Selection(indices, score, labels, backfilled, pool, record, map_xy)
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

    def _embed(self, ds, embeddings, n) -> tuple[np.ndarray, str]:
        if embeddings is not None:
            X = l2_normalise(embeddings, "embeddings")
            if X.shape[0] != n:
                raise SelectionError(f"embeddings have {X.shape[0]} rows for a pool of {n}")
            return X, "precomputed"
        embedder = get_embedder(self.embedder)
        if isinstance(embedder, ColumnEmbedder) or hasattr(embedder, "embed_dataset"):
            return embedder.embed_dataset(ds), embedder.name
        texts = _texts(ds, _text_column(ds, self.text_column, self.crowd))
        cache = default_cache if self.cache is None else self.cache
        if cache is False:
            X = l2_normalise(embedder.embed(texts), f"embeddings of {embedder.name}")
        elif isinstance(cache, EmbeddingCache):
            X = cache.embed(embedder, texts)
        else:
            raise SelectionError(f"cache must be an EmbeddingCache, None or False, got {cache!r}")
        if X.shape[0] != n:
            raise SelectionError(f"embedder {embedder.name!r} returned {X.shape[0]} rows for {n} texts")
        return X, embedder.name

    def _record(self, strategy, k, seed, weights, embedding_name, clustering, n, usable, answerable, eligible,
                pool_duplicates, neutral_filled, M, best_reward, indices, backfilled, labels, quotas, sizes, taken,
                provenance) -> SelectionRecord:
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
                             picked_by_quota=int(taken[c]), backfilled=int((back & (labels == c)).sum()))
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
