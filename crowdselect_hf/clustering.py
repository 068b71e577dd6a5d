"""KMeans for the clustered selection, at the paper's quality and at pool scale.

The paper clusters with ``KMeans(n_clusters=10, random_state=42, n_init=20)``. Twenty full
restarts cost ~18 s on 100K × 384 on two cores, and scale linearly, so for pools above
:data:`AUTO_FULL_ROWS` rows :func:`fit_kmeans` runs the ``n_init`` restarts on a random sample of
:data:`SAMPLE_ROWS` rows, keeps the best, and runs Lloyd once on all rows from its centres
(``"sampled"``, numpy only: :mod:`crowdselect_hf.kmeans`). That lands within a fraction of a
percent of the full ``n_init=20`` inertia (benchmarks/README.md) for a few percent of the time,
and does not import scikit-learn (2 s). ``"minibatch"`` (scikit-learn's ``MiniBatchKMeans``) is
there for pools that do not fit in memory twice.

``"full"`` draws its restarts' starts from one random state exactly as scikit-learn's ``n_init``
loop does (same initialisations, same winner), then runs them in parallel threads, one core each,
with a progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .kmeans import best_of_starts, distances, lloyd, nearest
from .progress import progress_bar

VERSION = 3
"""Of the algorithms below: part of a cached clustering's key; raise it when results change (3: the
clustering carries its central rows)."""
ALGORITHMS = ("auto", "full", "sampled", "minibatch")
AUTO_FULL_ROWS = 20_000
"""``"auto"`` runs the paper's full ``n_init`` KMeans up to this many rows, ``"sampled"`` above."""
SAMPLE_ROWS = 10_000
"""Rows of the sample on which ``"sampled"`` chooses among the ``n_init`` initialisations."""
SMALL_PROBLEM = 2_000_000
"""Matrices with fewer values than this are clustered on one thread."""
MAX_ITER = 300
"""Lloyd iterations at most (scikit-learn's default)."""
_RESTART_WORKERS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class Clustering:
    """A fitted clustering.

    Attributes:
        labels: cluster of every row of the fitted matrix (int64).
        centers: ``[C, d]`` float32 cluster centres.
        inertia: sum of squared distances of the rows to their centre (over all rows).
        algorithm: the algorithm actually run (``"full"``, ``"sampled"`` or ``"minibatch"``).
        estimator: the fitted scikit-learn estimator (``"full"``, ``"minibatch"``), or ``None``
            (``"sampled"``, or read back from a cache).
        central: per cluster, the row of the fitted matrix nearest its centre (:func:`central_rows`),
            ``None`` when not computed.
    """

    labels: np.ndarray
    centers: np.ndarray
    inertia: float
    algorithm: str
    estimator: Any = None
    central: np.ndarray | None = None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The nearest centre of every row of ``X`` (squared Euclidean distance, in chunks).

        Example:
            >>> c = Clustering(np.zeros(2, np.int64), np.array([[0, 0], [5, 5]], np.float32), 0.0, "full")
            >>> c.predict(np.array([[4.0, 6.0], [1.0, 0.0]])).tolist()
            [1, 0]
        """
        return nearest(X, self.centers)


def fit_kmeans(X: np.ndarray, n_clusters: int = 10, seed: int = 42, algorithm: str = "auto", n_init: int = 20,
               sample_size: int = SAMPLE_ROWS, progress: bool = True) -> Clustering:
    """Cluster the rows of ``X``.

    Args:
        X: ``[n, d]`` embeddings (float32 is kept as is; no copy of a float32 C-contiguous input
            beyond what scikit-learn needs).
        n_clusters: number of clusters.
        seed: ``random_state`` of every random step.
        algorithm: ``"full"`` — the same result as ``KMeans(n_clusters, random_state=seed,
            n_init=n_init)`` on all rows (the paper); ``"sampled"`` — the best of ``n_init`` runs
            on ``sample_size`` random rows, then Lloyd on all rows from its centres;
            ``"minibatch"`` — ``MiniBatchKMeans``; ``"auto"`` — ``"full"`` up to
            :data:`AUTO_FULL_ROWS` rows, ``"sampled"`` above.
        n_init: number of k-means++ initialisations.
        sample_size: rows of the sample for ``"sampled"``.
        progress: show progress bars (see :mod:`crowdselect_hf.progress`).

    Returns:
        :class:`Clustering`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(0, .1, (20, 2)), rng.normal(5, .1, (20, 2))]).astype(np.float32)
        >>> c = fit_kmeans(X, n_clusters=2, seed=0)
        >>> c.algorithm, sorted(np.bincount(c.labels).tolist())
        ('full', [20, 20])
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown KMeans algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    X = np.ascontiguousarray(X)
    n = X.shape[0]
    if algorithm == "auto":
        algorithm = "full" if n <= AUTO_FULL_ROWS else "sampled"
    if algorithm == "sampled" and n <= sample_size:
        algorithm = "full"
    if algorithm == "sampled":
        return _sampled(X, n_clusters, seed, n_init, sample_size, progress)
    import sklearn.cluster  # noqa: F401  (loads OpenMP and scipy's BLAS before the thread limits below apply)
    from threadpoolctl import threadpool_limits

    # Small problems run single-threaded: OpenMP threads spin-waiting on a busy machine made an
    # 805-row KMeans 10x slower with two threads than with one.
    with threadpool_limits(limits=1 if X.size < SMALL_PROBLEM else None):
        est = _fit(X, n_clusters, seed, algorithm, n_init, sample_size, progress)
    labels = np.asarray(est.labels_, dtype=np.int64)
    centers = np.asarray(est.cluster_centers_, dtype=np.float32)
    return Clustering(labels=labels, centers=centers, inertia=float(est.inertia_), algorithm=algorithm, estimator=est,
                      central=central_rows(X, labels, centers))


def central_rows(X: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Per cluster, the row of ``X`` nearest its centre by exact squared distance
    (:func:`~crowdselect_hf.kmeans.distances`), ``-1`` for a cluster with no rows; ties go to the
    earlier row.

    Example:
        >>> X = np.array([[0, 0], [1, 0], [9, 9], [5, 5]], np.float32)
        >>> central_rows(X, np.array([0, 0, 1, 1]), np.array([[0.9, 0], [6, 6], [3, 3]], np.float32)).tolist()
        [1, 3, -1]
    """
    labels = np.asarray(labels, dtype=np.int64)
    central = np.full(len(centers), -1, dtype=np.int64)
    if not labels.size:
        return central
    dist = distances(X, centers, labels)
    order = np.lexsort((dist, labels))  # by cluster, then distance (stable: earlier row first)
    first = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    central[labels[order][first]] = order[first]
    return central


def _fit(X, n_clusters, seed, algorithm, n_init, sample_size, progress):
    from sklearn.cluster import MiniBatchKMeans

    if algorithm == "full":
        return best_of_inits(X, n_clusters, seed, n_init, progress)
    return MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, batch_size=4096).fit(X)


def _sampled(X, n_clusters, seed, n_init, sample_size, progress) -> Clustering:
    """The best of ``n_init`` k-means++ + Lloyd runs on ``sample_size`` random rows, then Lloyd on
    all rows from its centres (numpy: :mod:`crowdselect_hf.kmeans`)."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(X.shape[0], size=sample_size, replace=False))
    S = np.asarray(X[sample], dtype=np.float32)
    with progress_bar(total=n_init, desc="kmeans restarts", unit="init", enabled=progress) as bar:
        start = best_of_starts(S, n_clusters, seed, n_init, on_restart=lambda: bar.update(1),
                               workers=_RESTART_WORKERS)
    with progress_bar(desc="kmeans refinement", unit="iter", enabled=progress) as bar:
        run = lloyd(X, start.centers, max_iter=MAX_ITER, on_iteration=lambda: bar.update(1))
    return Clustering(labels=run.labels, centers=run.centers, inertia=run.inertia, algorithm="sampled",
                      central=central_rows(X, run.labels, run.centers))


def best_of_inits(X: np.ndarray, n_clusters: int, seed: int, n_init: int, progress: bool = True):
    """``KMeans(n_clusters, random_state=seed, n_init=n_init).fit(X)``, with the restarts in
    parallel: the k-means++ starts are drawn first, in order, from one ``RandomState`` on the
    centred rows, exactly as scikit-learn's ``n_init`` loop draws them; each Lloyd run then gets
    its start through ``init=`` (a callable, so that it is used on the very rows scikit-learn
    centres) on one OpenMP thread, and the winner is chosen in restart order by scikit-learn's
    rule (lower inertia and not the same partition). Same result, with a progress bar."""
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.cluster import KMeans, kmeans_plusplus
    from sklearn.utils.extmath import row_norms

    centred = X - X.mean(axis=0)
    norms = row_norms(centred, squared=True)
    random_state = np.random.RandomState(seed)
    starts = [kmeans_plusplus(centred, n_clusters, x_squared_norms=norms, random_state=random_state)[0]
              for _ in range(n_init)]

    def lloyd(start):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):  # this thread's OpenMP only
            return KMeans(n_clusters=n_clusters, init=_Start(start), n_init=1, random_state=seed).fit(X)

    best = None
    with ThreadPoolExecutor(max_workers=min(_RESTART_WORKERS, n_init)) as pool:
        runs = progress_bar(pool.map(lloyd, starts), total=n_init, desc="kmeans restarts", unit="init", enabled=progress)
        for est in runs:
            if best is None or (est.inertia_ < best.inertia_ and not same_partition(est.labels_, best.labels_)):
                best = est
    return best


class _Start:
    """A KMeans ``init`` that returns a given start (drawn on the same centred rows)."""

    def __init__(self, centers: np.ndarray):
        self.centers = centers

    def __call__(self, X, n_clusters, random_state=None):
        return self.centers.astype(X.dtype, copy=True)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings are the same partition up to renaming the clusters (scikit-learn's
    test: every cluster of ``a`` maps to one cluster of ``b``).

    Example:
        >>> same_partition(np.array([0, 0, 1]), np.array([1, 1, 0])), same_partition(np.array([0, 0, 1]), np.array([0, 1, 1]))
        (True, False)
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    clusters, first = np.unique(a, return_index=True)
    mapped = np.zeros(int(clusters.max(initial=-1)) + 1, dtype=b.dtype)
    mapped[clusters] = b[first]  # each cluster of a -> the b label of its first row
    return bool(np.array_equal(mapped[a], b))
