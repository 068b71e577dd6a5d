"""Pure computation of the CrowdSelect combined score and of the per-cluster quota selection.

Nothing here reads or writes data: every function takes and returns numpy arrays, so it is easy
to test against independent computations and to reuse on any backend (``datasets``, Ray, pandas).

* :func:`quantile_scores` — per metric over the pool: z-score → min-max → uniform quantile
  transform (the same numbers as scikit-learn's
  ``QuantileTransformer(output_distribution="uniform", n_quantiles=min(N, 1000), subsample=None)``
  fitted on the finite values), about the empirical CDF.
* :func:`combine` — ``Σ w_j · q_j`` with the NaN policy of METHOD.md.
* :func:`quota_select` — an equal quota per cluster, back-fill to exactly ``k``, deterministic
  tie-breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .strategies import METRICS

NEUTRAL = 0.5
"""The value a NaN metric contributes on its quantile scale (the middle of ``[0, 1]``)."""
MAX_QUANTILES = 1000


class SelectionError(ValueError):
    """The selection cannot be made as asked (bad ``k``, clusters, weights or columns)."""


def uniform_quantiles(x: np.ndarray, fit_mask: np.ndarray | None = None, n_quantiles: int = MAX_QUANTILES) -> np.ndarray:
    """Map ``x`` to ``[0, 1]`` through the empirical quantiles of its finite values.

    The transform of scikit-learn's ``QuantileTransformer(output_distribution="uniform")`` with
    ``n_quantiles=min(n_finite, n_quantiles)`` and no subsampling, in numpy: ties get the mean of
    the lower and upper interpolation, the minimum maps to 0 and the maximum to 1. NaN stays NaN.
    A constant input maps to :data:`NEUTRAL` (it carries no information).

    Args:
        x: values, one per row; NaN allowed.
        fit_mask: rows whose finite values define the quantiles (default: all rows). The others
            are transformed with the same quantiles.
        n_quantiles: the most quantiles to use.

    Returns:
        float64 array shaped like ``x``.

    Example:
        >>> uniform_quantiles(np.array([3.0, 1.0, np.nan, 2.0, 2.5])).round(3)
        array([1.   , 0.   ,   nan, 0.333, 0.667])
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    finite = np.isfinite(x)
    fit = finite if fit_mask is None else finite & np.asarray(fit_mask, dtype=bool)
    values = x[fit]
    if values.size == 0:
        return out
    lo, hi = values.min(), values.max()
    if lo == hi:
        out[finite] = NEUTRAL
        return out
    n_q = max(1, min(values.size, n_quantiles))
    references = np.linspace(0.0, 1.0, n_q)
    quantiles = np.percentile(values, references * 100)
    xf = x[finite]
    q = 0.5 * (np.interp(xf, quantiles, references) - np.interp(-xf, -quantiles[::-1], -references[::-1]))
    q[xf == quantiles[-1]] = 1.0
    q[xf == quantiles[0]] = 0.0
    out[finite] = q
    return out


def normalise(x: np.ndarray, fit_mask: np.ndarray | None = None) -> np.ndarray:
    """z-score then min-max over the finite values of ``fit_mask`` rows (NaN stays NaN).

    A constant input gives 0 everywhere it is finite.

    Example:
        >>> normalise(np.array([1.0, 2.0, 3.0, np.nan]))
        array([0. , 0.5, 1. , nan])
    """
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    fit = finite if fit_mask is None else finite & np.asarray(fit_mask, dtype=bool)
    out = np.where(finite, x, np.nan)
    if not fit.any():
        return np.full(x.shape, np.nan)
    mean, std = x[fit].mean(), x[fit].std()
    z = (out - mean) / std if std > 0 else np.where(finite, 0.0, np.nan)
    zmin, zmax = z[fit].min(), z[fit].max()
    return (z - zmin) / (zmax - zmin) if zmax > zmin else np.where(finite, 0.0, np.nan)


def quantile_scores(metrics: np.ndarray, fit_mask: np.ndarray | None = None, n_quantiles: int = MAX_QUANTILES) -> np.ndarray:
    """z-score → min-max → uniform quantile transform, column by column.

    Args:
        metrics: ``[n, m]`` raw metric values (NaN allowed).
        fit_mask: rows that define the scale (e.g. the eligible rows); default all.
        n_quantiles: the most quantiles per metric.

    Returns:
        ``[n, m]`` float64 in ``[0, 1]``, NaN where the metric was NaN.

    Example:
        >>> quantile_scores(np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 4.0]]))
        array([[0. , 1. ],
               [0.5, nan],
               [1. , 0. ]])
    """
    metrics = np.asarray(metrics, dtype=np.float64)
    if metrics.ndim != 2:
        raise SelectionError(f"metrics must be a 2-D [rows, metrics] array, got shape {metrics.shape}")
    return np.column_stack(
        [uniform_quantiles(normalise(metrics[:, j], fit_mask), fit_mask, n_quantiles) for j in range(metrics.shape[1])]
    ) if metrics.shape[1] else np.empty(metrics.shape)


@dataclass(frozen=True)
class Combined:
    """The combined score of every row and what the NaN policy did.

    Attributes:
        score: ``Σ w_j · q_j`` per row; NaN for rows without a usable reward.
        quantiles: ``[n, m]`` the per-metric quantile scores after neutral filling.
        usable: rows with a usable reward (finite difficulty).
        neutral_filled: per metric, how many eligible rows (usable ones if no ``eligible`` mask
            was given) took the neutral 0.5.
    """

    score: np.ndarray
    quantiles: np.ndarray
    usable: np.ndarray
    neutral_filled: dict[str, int]


def check_weights(weights: Sequence[float], names: Sequence[str] = METRICS) -> np.ndarray:
    """Validate weights: one finite number per metric, not all zero.

    Example:
        >>> check_weights((1, 1, 2))
        array([1., 1., 2.])
    """
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise SelectionError(f"weights must be {len(names)} numbers for {tuple(names)}, got {weights!r}") from None
    if w.ndim != 1 or w.size != len(names):
        raise SelectionError(
            f"weights must have one number per metric {tuple(names)} ({len(names)} values), got {len(w.ravel())}: {weights!r}"
        )
    if not np.isfinite(w).all():
        raise SelectionError(f"weights must be finite numbers, got {weights!r}")
    if not w.any():
        raise SelectionError(f"weights {weights!r} are all zero: the combined score would rank nothing")
    return w


def combine(metrics: np.ndarray, weights: Sequence[float] = (1, 1, 2), eligible: np.ndarray | None = None,
            names: Sequence[str] = METRICS) -> Combined:
    """The CrowdSelect combined score.

    Policy (METHOD.md): the first column is difficulty; a row whose difficulty is NaN has no usable
    reward, gets a NaN score and is never selected. Any other NaN metric of a usable row
    contributes the neutral :data:`NEUTRAL` of its quantile scale, and is counted. The quantile
    scale of every metric is fitted on the ``eligible`` rows (default: the usable ones) and
    applied to all usable rows.

    Args:
        metrics: ``[n, m]`` raw metrics, columns in the order of ``names``.
        weights: one weight per metric; a negative weight flips a metric.
        eligible: rows that define the scales (e.g. usable and first of their ``crowd_id``).
        names: metric names (for the counts).

    Returns:
        :class:`Combined`.

    Example:
        >>> m = np.array([[-0.9, 0.01, 1.0], [-0.1, 0.20, np.nan], [np.nan, np.nan, np.nan]])
        >>> c = combine(m, (1, 1, 2))
        >>> c.score, c.neutral_filled["stability"]
        (array([ 1.,  3., nan]), 1)
    """
    metrics = np.asarray(metrics, dtype=np.float64)
    if metrics.ndim != 2 or metrics.shape[1] != len(names):
        raise SelectionError(f"metrics must be [rows, {len(names)}] for {tuple(names)}, got shape {metrics.shape}")
    w = check_weights(weights, names)
    usable = np.isfinite(metrics[:, 0])
    fit = usable if eligible is None else usable & np.asarray(eligible, dtype=bool)
    q = quantile_scores(metrics, fit)
    missing = np.isnan(q) & usable[:, None]
    filled = {name: int((missing[:, j] & fit).sum()) for j, name in enumerate(names)}
    q = np.where(missing, NEUTRAL, q)
    q[~usable] = np.nan
    score = q @ w
    score[~usable] = np.nan
    return Combined(score=score, quantiles=q, usable=usable, neutral_filled=filled)


def rank_order(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Row positions from best to worst: descending ``score``, ties by ascending ``tiebreak``,
    then by position. NaN scores come last.

    Example:
        >>> rank_order(np.array([0.5, 0.9, 0.5, np.nan]), np.array(["b", "z", "a", "c"]))
        array([1, 2, 0, 3])
    """
    score = np.asarray(score, dtype=np.float64)
    key = np.where(np.isnan(score), np.inf, -score)
    return np.lexsort((np.arange(score.size), np.asarray(tiebreak), key))


@dataclass(frozen=True)
class QuotaResult:
    """What :func:`quota_select` picked.

    Attributes:
        indices: the picked row positions, ascending.
        backfilled: the positions that came from back-fill, ascending.
        quotas: per cluster label (0..C-1), the quota it was given.
        taken: per cluster, how many of its rows were picked by its quota.
        sizes: per cluster, how many candidate rows it had.
    """

    indices: np.ndarray
    backfilled: np.ndarray
    quotas: np.ndarray
    taken: np.ndarray
    sizes: np.ndarray


def quota_select(score: np.ndarray, labels: np.ndarray, k: int, candidates: np.ndarray, tiebreak: np.ndarray,
                 n_clusters: int | None = None) -> QuotaResult:
    """Take the top of each cluster, an equal quota each, then back-fill to exactly ``k``.

    Every cluster gets ``k // C``; the ``k % C`` extra places go to the clusters whose next
    candidate scores best (ties by cluster label), so an even split never needs back-fill. A
    cluster smaller than its quota gives all its candidates; the places left are back-filled from
    the best unpicked candidates of any cluster. Order within a cluster and in back-fill:
    :func:`rank_order` (descending score, ties by ``tiebreak``, then position).

    Args:
        score: per row, higher is better (NaN rows are never candidates).
        labels: per row, a cluster label in ``0..C-1`` (``-1`` allowed for non-candidates).
        k: how many rows to pick; at most the number of candidates.
        candidates: boolean mask of the rows that may be picked.
        tiebreak: per row, a sortable stable id (e.g. ``crowd_id``).
        n_clusters: ``C``; default ``labels.max() + 1``.

    Returns:
        :class:`QuotaResult`.

    Example:
        >>> r = quota_select(np.array([.9, .8, .7, .1, .2]), np.array([0, 0, 0, 1, 1]), 4,
        ...                  np.ones(5, bool), np.arange(5))
        >>> r.indices.tolist(), r.quotas.tolist(), r.backfilled.tolist()
        ([0, 1, 3, 4], [2, 2], [])
        >>> r = quota_select(np.array([.9, .8, .7, .1]), np.array([0, 0, 0, 1]), 4,
        ...                  np.ones(4, bool), np.arange(4))
        >>> r.indices.tolist(), r.backfilled.tolist()
        ([0, 1, 2, 3], [2])
    """
    score = np.asarray(score, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    cand = np.asarray(candidates, dtype=bool) & ~np.isnan(score)
    n_cand = int(cand.sum())
    C = int(labels[cand].max()) + 1 if n_clusters is None else int(n_clusters)
    if k < 1 or k > n_cand:
        raise SelectionError(f"k must be between 1 and the number of candidate rows ({n_cand}), got {k}")
    if cand.any() and (labels[cand].min() < 0 or labels[cand].max() >= C):
        raise SelectionError(f"cluster labels of candidate rows must lie in 0..{C - 1}")
    order = rank_order(np.where(cand, score, np.nan), tiebreak)[:n_cand]
    lab = labels[order]
    # Stable sort by label keeps the score order inside each cluster.
    by_cluster = order[np.argsort(lab, kind="stable")]
    sizes = np.bincount(lab, minlength=C)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    base, extra = divmod(k, C)
    quotas = np.full(C, base, dtype=np.int64)
    if extra:
        # Next candidate of each cluster after its base quota; clusters without one come last.
        nxt_pos = starts + base
        has_next = sizes > base
        nxt_score = np.full(C, -np.inf)
        nxt_score[has_next] = score[by_cluster[nxt_pos[has_next]]]
        lucky = np.lexsort((np.arange(C), -nxt_score))[:extra]
        quotas[lucky] += 1
    taken = np.minimum(quotas, sizes)
    # Rank of each sorted row inside its cluster; picked while below the cluster's quota.
    within = np.arange(n_cand) - np.repeat(starts, sizes)
    picked_sorted = within < np.repeat(taken, sizes)
    picked = by_cluster[picked_sorted]
    short = k - int(taken.sum())
    backfilled = np.empty(0, dtype=np.int64)
    if short > 0:
        chosen = np.zeros(score.size, dtype=bool)
        chosen[picked] = True
        rest = order[~chosen[order]]
        backfilled = np.sort(rest[:short])
        picked = np.concatenate([picked, backfilled])
    return QuotaResult(indices=np.sort(picked).astype(np.int64), backfilled=backfilled.astype(np.int64),
                       quotas=quotas, taken=taken, sizes=sizes)


def top_k(score: np.ndarray, k: int, candidates: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """The ``k`` best candidates by :func:`rank_order`, ascending positions.

    Example:
        >>> top_k(np.array([0.1, 0.7, 0.7, 0.3]), 2, np.ones(4, bool), np.array([3, 2, 1, 0]))
        array([1, 2])
    """
    cand = np.asarray(candidates, dtype=bool) & ~np.isnan(np.asarray(score, dtype=np.float64))
    n_cand = int(cand.sum())
    if k < 1 or k > n_cand:
        raise SelectionError(f"k must be between 1 and the number of candidate rows ({n_cand}), got {k}")
    order = rank_order(np.where(cand, score, np.nan), tiebreak)
    return np.sort(order[:k]).astype(np.int64)
