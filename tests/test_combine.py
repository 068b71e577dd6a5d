"""The combined score and the quota selection against independent computations."""

import numpy as np
import pytest
from scipy import stats
from sklearn.preprocessing import QuantileTransformer

from crowdselect_hf.combine import (NEUTRAL, SelectionError, check_weights, combine, quantile_scores, quota_select,
                                    rank_order, top_k, uniform_quantiles)

pytestmark = pytest.mark.unit


def sklearn_uniform(values: np.ndarray) -> np.ndarray:
    """z-score (scipy) → min-max → sklearn QuantileTransformer fitted on the finite values."""
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    z = stats.zscore(values[finite])
    mm = (z - z.min()) / (z.max() - z.min())
    qt = QuantileTransformer(output_distribution="uniform", n_quantiles=min(finite.sum(), 1000), subsample=None)
    out[finite] = qt.fit_transform(mm[:, None])[:, 0]
    return out


@pytest.mark.parametrize("n", [7, 500, 3000])
def test_uniform_quantiles_match_sklearn_with_ties_and_nan(n):
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=n), 1)  # many ties
    x[rng.choice(n, size=n // 7, replace=False)] = np.nan
    ours = uniform_quantiles(x)
    finite = np.isfinite(x)
    qt = QuantileTransformer(output_distribution="uniform", n_quantiles=min(finite.sum(), 1000), subsample=None)
    ref = qt.fit_transform(x[finite][:, None])[:, 0]
    np.testing.assert_array_equal(np.isnan(ours), ~finite)
    np.testing.assert_allclose(ours[finite], ref, atol=1e-12)


def _metrics(scored):
    return np.column_stack([np.asarray(scored[c], dtype=float)
                            for c in ("crowd_difficulty", "crowd_separability", "crowd_stability")])


def test_quantile_scores_match_independent_pipeline(real_table):
    # On GSM8K's 0/1 scores every metric is heavily tied (a few distinct values) and stability is
    # NaN wherever all families tied: the quantiles must still match sklearn's, NaN kept.
    M = _metrics(real_table.scored)
    ours = quantile_scores(M)
    for j in range(3):
        np.testing.assert_allclose(ours[:, j], sklearn_uniform(M[:, j]), atol=1e-9)


def test_combine_on_a_real_table_matches_weighted_sum_of_sklearn_quantiles(real_table):
    M = _metrics(real_table.scored)
    w = np.array([1.0, -0.5, 2.0])
    c = combine(M, w)
    q = np.column_stack([sklearn_uniform(M[:, j]) for j in range(3)])
    usable = np.isfinite(M[:, 0])
    q[np.isnan(q) & usable[:, None]] = NEUTRAL  # METHOD.md: a NaN metric of a usable row is neutral
    np.testing.assert_allclose(c.score, q @ w, atol=1e-9)
    nan = (np.isnan(M) & usable[:, None]).sum(axis=0)
    assert c.neutral_filled == {"difficulty": 0, "separability": int(nan[1]), "stability": int(nan[2])}


def test_nan_policy_neutral_fill_and_unusable_rows():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(50, 3))
    M[[3, 4], 2] = np.nan            # stability NaN (all families tied): neutral
    M[[10], :] = np.nan              # no usable reward: never scored
    c = combine(M, (1, 1, 2))
    assert c.neutral_filled == {"difficulty": 0, "separability": 0, "stability": 2}
    assert np.isnan(c.score[10]) and not c.usable[10]
    np.testing.assert_array_equal(c.quantiles[[3, 4], 2], [NEUTRAL, NEUTRAL])
    keep = np.isfinite(M[:, 2])
    ref_stab = sklearn_uniform(np.where(keep, M[:, 2], np.nan))
    expected = sklearn_uniform(M[:, 0]) + sklearn_uniform(M[:, 1]) + 2 * np.where(keep, ref_stab, NEUTRAL)
    expected[10] = np.nan
    np.testing.assert_allclose(c.score, expected, atol=1e-9)


def test_eligible_mask_defines_the_scale():
    x = np.array([[0.0, 0, 0], [1, 1, 1], [2, 2, 2], [100, 100, 100]])
    c = combine(x, (1, 0, 0), eligible=np.array([True, True, True, False]))
    # Quantiles fitted on 0, 1, 2 only; 100 lies above them and maps to 1.
    np.testing.assert_allclose(c.score, [0.0, 0.5, 1.0, 1.0])


def test_constant_metric_is_neutral():
    M = np.column_stack([np.arange(5.0), np.ones(5), np.arange(5.0)])
    np.testing.assert_array_equal(combine(M, (0, 1, 0)).score, np.full(5, NEUTRAL))


@pytest.mark.parametrize("weights, match", [((1, 1), "one number per metric"), ((1, 1, 2, 3), "one number per metric"),
                                            ((0, 0, 0), "all zero"), ((1, np.nan, 1), "finite"), ("abc", "3 numbers")])
def test_bad_weights(weights, match):
    with pytest.raises(SelectionError, match=match):
        check_weights(weights)


def test_rank_order_breaks_ties_by_id_not_position():
    score = np.array([1.0, 2.0, 1.0, 1.0])
    assert rank_order(score, np.array(["c", "z", "a", "b"])).tolist() == [1, 2, 3, 0]


def reference_quota(score, labels, k, C, tie):
    """A direct, loop-based reading of METHOD.md step 3."""
    order = sorted(range(len(score)), key=lambda i: (-score[i], tie[i], i))
    per = {c: [i for i in order if labels[i] == c] for c in range(C)}
    base, extra = divmod(k, C)
    nxt = sorted(range(C), key=lambda c: (-(score[per[c][base]] if len(per[c]) > base else -np.inf), c))
    quotas = {c: base + (1 if c in nxt[:extra] else 0) for c in range(C)}
    picked = [i for c in range(C) for i in per[c][: quotas[c]]]
    rest = [i for i in order if i not in set(picked)]
    back = rest[: k - len(picked)]
    return sorted(picked + back), sorted(back)


@pytest.mark.parametrize("seed", range(12))
def test_quota_select_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n, C = int(rng.integers(20, 120)), int(rng.integers(1, 8))
    labels = rng.integers(0, C, n)
    labels[: C] = np.arange(C)
    score = np.round(rng.random(n), 1)  # ties
    tie = rng.permutation(n)
    k = int(rng.integers(1, n + 1))
    res = quota_select(score, labels, k, np.ones(n, bool), tie, n_clusters=C)
    picked, back = reference_quota(score, labels, k, C, tie)
    assert res.indices.tolist() == picked
    assert res.backfilled.tolist() == back
    assert len(res.indices) == k == len(set(res.indices.tolist()))


def test_quota_select_equal_quotas_without_backfill_and_order_within_cluster():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 25)
    score = rng.random(100)
    res = quota_select(score, labels, 20, np.ones(100, bool), np.arange(100))
    assert res.quotas.tolist() == [5, 5, 5, 5] and res.backfilled.size == 0
    chosen = np.zeros(100, bool)
    chosen[res.indices] = True
    for c in range(4):
        in_c = labels == c
        assert chosen[in_c].sum() == 5
        assert score[chosen & in_c].min() >= score[~chosen & in_c].max()


def test_quota_select_tiny_cluster_backfills_to_exactly_k():
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    labels = np.array([0, 0, 0, 0, 0, 1])
    res = quota_select(score, labels, 4, np.ones(6, bool), np.arange(6))
    assert res.indices.tolist() == [0, 1, 2, 5]
    assert res.backfilled.tolist() == [2] and res.taken.tolist() == [2, 1]


def test_candidates_and_nan_are_never_picked():
    score = np.array([np.nan, 0.9, 0.8, 0.7])
    cand = np.array([True, False, True, True])
    assert top_k(score, 2, cand, np.arange(4)).tolist() == [2, 3]
    with pytest.raises(SelectionError, match="between 1 and the number of candidate rows \\(2\\)"):
        top_k(score, 3, cand, np.arange(4))
    with pytest.raises(SelectionError, match="between 1"):
        quota_select(score, np.zeros(4, int), 0, cand, np.arange(4))
