"""KMeans in numpy: greedy k-means++ starts and Lloyd iterations, in float32 and in row chunks.

This is the ``"sampled"`` algorithm of :func:`~crowdselect_hf.clustering.fit_kmeans`, the
default above 20K rows. It is the same algorithm as scikit-learn's ``KMeans(algorithm="lloyd")``
(greedy k-means++ with ``2 + log(k)`` local trials, the same tolerance and strict-convergence
rule, empty clusters moved to the farthest rows, a last assignment to the final centres), but it
does not import scikit-learn, whose import costs about 2 s on the 2-core CI machine (it pulls
``scipy.stats``), and it copies nothing of size ``n x d``: distances are computed chunk by chunk
as ``|c|^2 - 2 x.c``, the products run in BLAS. Its random draws are numpy's ``Generator``, so
its starts are not scikit-learn's: quality, not identity, is what ``tests/test_embeddings.py``
and ``benchmarks/README.md`` check for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 32_768
"""Rows per block of :func:`assign` and :func:`tolerance`."""
STEP_ROWS = 2_048
"""Rows per block of a Lloyd iteration: small enough to stay in cache between the distance
product and the centre sums, which read it twice."""
TOL = 1e-4
"""Relative tolerance: Lloyd stops when the centres move less, in total squared distance, than
``TOL`` times the mean per-feature variance of the rows (scikit-learn's rule)."""


@dataclass(frozen=True)
class Lloyd:
    """The result of one Lloyd run.

    Attributes:
        labels: cluster of every row (int64).
        centers: ``[k, d]`` float32 centres.
        inertia: sum of squared distances of the rows to their centre.
        n_iter: iterations run.
    """

    labels: np.ndarray
    centers: np.ndarray
    inertia: float
    n_iter: int


def tolerance(X: np.ndarray, rel: float = TOL) -> float:
    """``rel`` times the mean of the per-column variances of ``X`` (float64 sums, in chunks)."""
    n = len(X)
    if n == 0:
        return 0.0
    total = np.zeros(X.shape[1])
    squares = np.zeros(X.shape[1])
    for s in range(0, n, CHUNK_ROWS):
        block = X[s : s + CHUNK_ROWS].astype(np.float64)
        total += block.sum(axis=0)
        squares += np.einsum("ij,ij->j", block, block)
    mean = total / n
    return float(rel * np.mean(np.maximum(squares / n - mean * mean, 0.0)))


def nearest(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The nearest centre of every row (squared Euclidean distance, in row blocks).

    Example:
        >>> nearest(np.array([[0, 0], [4, 5]], np.float32), np.array([[0, 1], [4, 4]], np.float32)).tolist()
        [0, 1]
    """
    C = np.ascontiguousarray(centers, dtype=np.float32)
    half_sq = 0.5 * np.einsum("ij,ij->i", C, C)
    labels = np.empty(len(X), dtype=np.int64)
    for s in range(0, len(X), CHUNK_ROWS):
        block = np.asarray(X[s : s + CHUNK_ROWS], dtype=np.float32)
        labels[s : s + len(block)] = np.argmin(half_sq - block @ C.T, axis=1)  # |c|^2 / 2 - x.c: argmin of |x - c|^2
    return labels


def distances(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The exact squared distance (float64; no ``|x|^2 - 2 x.c`` cancellation) of each row to its
    centre ``centers[labels[i]]``, block by block.

    Example:
        >>> X = np.array([[0, 0], [4, 5]], np.float32)
        >>> distances(X, np.array([[0, 1], [4, 4]], np.float32), np.array([0, 1])).tolist()
        [1.0, 1.0]
    """
    C = np.asarray(centers, dtype=np.float32)
    out = np.empty(len(X), dtype=np.float64)
    for s in range(0, len(X), CHUNK_ROWS):
        diff = np.asarray(X[s : s + CHUNK_ROWS], dtype=np.float32) - C[labels[s : s + CHUNK_ROWS]]
        out[s : s + len(diff)] = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    return out


def assign(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest` and :func:`distances`: the nearest centre of every row and the squared
    distance to it.

    Example:
        >>> labels, d2 = assign(np.array([[0, 0], [4, 5]], np.float32), np.array([[0, 1], [4, 4]], np.float32))
        >>> labels.tolist(), d2.tolist()
        ([0, 1], [1.0, 1.0])
    """
    labels = nearest(X, centers)
    return labels, distances(X, centers, labels)


def _step(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over ``X`` in cache-sized blocks: the nearest centre of every row, its score
    ``|c|^2 / 2 - x.c`` (``|x - c|^2 = |x|^2 + 2 score``), and per cluster the float64 sum of its
    rows and their count (a one-hot product per block)."""
    k = len(centers)
    C = np.ascontiguousarray(centers, dtype=np.float32)
    half_sq = 0.5 * np.einsum("ij,ij->i", C, C)
    labels = np.empty(len(X), dtype=np.int64)
    score = np.empty(len(X), dtype=np.float32)
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    for s in range(0, len(X), STEP_ROWS):
        block = X[s : s + STEP_ROWS]
        scores = half_sq - block @ C.T
        best = np.argmin(scores, axis=1)
        labels[s : s + len(block)] = best
        score[s : s + len(block)] = scores[np.arange(len(block)), best]
        onehot = np.zeros((k, len(block)), dtype=np.float32)
        onehot[best, np.arange(len(block))] = 1.0
        sums += onehot @ block
    return labels, score, sums, np.bincount(labels, minlength=k)


def lloyd(X: np.ndarray, centers: np.ndarray, max_iter: int = 300, tol: float | None = None,
          on_iteration=None) -> Lloyd:
    """Lloyd's algorithm from ``centers`` until the labels stop changing, the centres move less
    than ``tol`` (default: :func:`tolerance`), or ``max_iter`` iterations.

    Args:
        X: ``[n, d]`` float32 rows.
        centers: ``[k, d]`` starting centres.
        max_iter: iterations at most.
        tol: absolute tolerance on the total squared shift of the centres.
        on_iteration: called with no arguments after each iteration (a progress bar).

    Returns:
        :class:`Lloyd`; its labels are the assignment to its final centres.

    Example:
        >>> X = np.array([[0, 0], [0, 1], [9, 9], [9, 8]], np.float32)
        >>> r = lloyd(X, X[[0, 1]])
        >>> r.labels.tolist(), r.centers.tolist(), r.inertia
        ([0, 0, 1, 1], [[0.0, 0.5], [9.0, 8.5]], 1.0)
    """
    X = np.asarray(X, dtype=np.float32)
    centers = np.array(centers, dtype=np.float32)
    k = len(centers)
    tol = tolerance(X) if tol is None else tol
    previous = None
    n_iter = 0
    x_sq = None
    for n_iter in range(1, max_iter + 1):
        labels, score, sums, counts = _step(X, centers)
        new = np.empty_like(centers)
        full = counts > 0
        new[full] = (sums[full] / counts[full, None]).astype(np.float32)
        if not full.all():  # empty clusters take the rows farthest from their centre
            if x_sq is None:
                x_sq = np.einsum("ij,ij->i", X, X)
            far = np.argsort(x_sq + 2 * score, kind="stable")[::-1][: int((~full).sum())]
            new[~full] = X[far]
        if on_iteration is not None:
            on_iteration()
        if previous is not None and np.array_equal(labels, previous):
            break  # strict convergence: the centres are the means of these labels already
        shift = float(np.sum((new.astype(np.float64) - centers) ** 2))
        centers = new
        if shift <= tol:
            break
        previous = labels
    labels, dist = assign(X, centers)  # the final centres' labels, and exact distances for the inertia
    return Lloyd(labels=labels, centers=centers, inertia=float(dist.sum()), n_iter=n_iter)


def kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator, n_local_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ starts (Arthur & Vassilvitskii; ``2 + log(k)`` candidates per step, the
    one that lowers the potential most is kept), as ``[k, d]`` float32.

    Example:
        >>> X = np.array([[0, 0], [0, 0.1], [5, 5], [5, 5.1]], np.float32)
        >>> sorted(kmeans_plusplus(X, 2, np.random.default_rng(0))[:, 0].tolist())
        [0.0, 5.0]
    """
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    trials = n_local_trials if n_local_trials is not None else 2 + int(np.log(k))
    x_sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    centers = np.empty((k, X.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centers[0] = X[first]
    closest = _sq_dist(X, x_sq, X[[first]])[0]
    potential = closest.sum()
    for c in range(1, k):
        if potential <= 0:  # fewer distinct rows than clusters: the rest repeat the first row
            centers[c:] = centers[0]
            break
        ids = np.searchsorted(np.cumsum(closest), rng.uniform(size=trials) * potential)
        ids = np.minimum(ids, n - 1)
        candidate = np.minimum(closest, _sq_dist(X, x_sq, X[ids]))
        best = int(np.argmin(candidate.sum(axis=1)))
        closest = candidate[best]
        potential = closest.sum()
        centers[c] = X[ids[best]]
    return centers


def _sq_dist(X: np.ndarray, x_sq: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``[len(Y), len(X)]`` squared distances, clipped at 0 (float64)."""
    y_sq = np.einsum("ij,ij->i", Y, Y, dtype=np.float64)
    d = y_sq[:, None] - 2.0 * (Y @ X.T).astype(np.float64) + x_sq[None, :]
    return np.maximum(d, 0.0)


def best_of_starts(X: np.ndarray, k: int, seed: int, n_init: int, on_restart=None, max_iter: int = 300,
                   workers: int = 2) -> Lloyd:
    """``n_init`` runs of Lloyd, each from its own k-means++ start; the lowest inertia wins (the
    first on a tie).

    Restart ``i`` draws its start from ``SeedSequence(seed).spawn(n_init)[i]``, so the result does
    not depend on ``workers``: the restarts run in that many threads, one BLAS thread each (numpy
    releases the GIL in the products, which are most of the work).
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    X = np.asarray(X, dtype=np.float32)
    tol = tolerance(X)
    seeds = np.random.SeedSequence(seed).spawn(n_init)

    def run(i: int) -> Lloyd:
        return lloyd(X, kmeans_plusplus(X, k, np.random.default_rng(seeds[i])), max_iter=max_iter, tol=tol)

    best = None
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=max(1, min(workers, n_init))) as pool:
        for result in pool.map(run, range(n_init)):
            if best is None or result.inertia < best.inertia:
                best = result
            if on_restart is not None:
                on_restart()
    return best
