"""KMeans for the clustered selection, at the paper's quality and at pool scale.

The paper clusters with ``KMeans(n_clusters=10, random_state=42, n_init=20)``. Twenty full
restarts cost ~18 s on 100K × 384 on two cores, and scale linearly, so for pools above
:data:`AUTO_FULL_ROWS` rows :func:`fit_kmeans` runs the ``n_init`` restarts on a random sample of
:data:`SAMPLE_ROWS` rows, keeps the best, and runs Lloyd once on all rows from its centres
(``"sampled"``). That lands within a fraction of a
percent of the full ``n_init=20`` inertia (benchmarks/results/selection.md) for a few percent of
the time. ``"minibatch"`` (scikit-learn's ``MiniBatchKMeans``) is there for pools that do not fit
in memory twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALGORITHMS = ("auto", "full", "sampled", "minibatch")
AUTO_FULL_ROWS = 20_000
"""``"auto"`` runs the paper's full ``n_init`` KMeans up to this many rows, ``"sampled"`` above."""
SAMPLE_ROWS = 10_000
"""Rows of the sample on which ``"sampled"`` chooses among the ``n_init`` initialisations."""
SMALL_PROBLEM = 2_000_000
"""Matrices with fewer values than this are clustered on one thread."""


@dataclass(frozen=True)
class Clustering:
    """A fitted clustering.

    Attributes:
        labels: cluster of every row of the fitted matrix (int64).
        centers: ``[C, d]`` float32 cluster centres.
        inertia: sum of squared distances of the rows to their centre (over all rows).
        algorithm: the algorithm actually run (``"full"``, ``"sampled"`` or ``"minibatch"``).
        estimator: the fitted scikit-learn estimator (``predict`` assigns new rows).
    """

    labels: np.ndarray
    centers: np.ndarray
    inertia: float
    algorithm: str
    estimator: object

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The nearest centre of every row of ``X``."""
        return np.asarray(self.estimator.predict(np.asarray(X, dtype=self.centers.dtype)), dtype=np.int64)


def fit_kmeans(X: np.ndarray, n_clusters: int = 10, seed: int = 42, algorithm: str = "auto", n_init: int = 20,
               sample_size: int = SAMPLE_ROWS) -> Clustering:
    """Cluster the rows of ``X``.

    Args:
        X: ``[n, d]`` embeddings (float32 is kept as is; no copy of a float32 C-contiguous input
            beyond what scikit-learn needs).
        n_clusters: number of clusters.
        seed: ``random_state`` of every random step.
        algorithm: ``"full"`` — ``KMeans(n_clusters, random_state=seed, n_init=n_init)`` on all
            rows (the paper); ``"sampled"`` — the best of ``n_init`` runs on ``sample_size``
            random rows, then one Lloyd run on all rows from its centres; ``"minibatch"`` —
            ``MiniBatchKMeans``; ``"auto"`` — ``"full"`` up to :data:`AUTO_FULL_ROWS` rows,
            ``"sampled"`` above.
        n_init: number of k-means++ initialisations.
        sample_size: rows of the sample for ``"sampled"``.

    Returns:
        :class:`Clustering`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(0, .1, (20, 2)), rng.normal(5, .1, (20, 2))]).astype(np.float32)
        >>> c = fit_kmeans(X, n_clusters=2, seed=0)
        >>> c.algorithm, sorted(np.bincount(c.labels).tolist())
        ('full', [20, 20])
    """
    from threadpoolctl import threadpool_limits

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
    # Small problems run single-threaded: OpenMP threads spin-waiting on a busy machine made an
    # 805-row KMeans 10x slower with two threads than with one.
    with threadpool_limits(limits=1 if X.size < SMALL_PROBLEM else None):
        est = _fit(X, n_clusters, seed, algorithm, n_init, sample_size)
    labels = np.asarray(est.labels_, dtype=np.int64)
    return Clustering(labels=labels, centers=np.asarray(est.cluster_centers_, dtype=np.float32),
                      inertia=float(est.inertia_), algorithm=algorithm, estimator=est)


def _fit(X, n_clusters, seed, algorithm, n_init, sample_size):
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    n = X.shape[0]
    if algorithm == "full":
        est = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init).fit(X)
    elif algorithm == "sampled":
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=sample_size, replace=False))
        # The n_init restarts on the sample are small problems: one thread each is fastest.
        with threadpool_limits(limits=1):
            init = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init).fit(X[sample]).cluster_centers_
        est = KMeans(n_clusters=n_clusters, init=init, n_init=1, random_state=seed).fit(X)
    else:
        est = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, batch_size=4096).fit(X)
    return est
