import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from crowdselect_hf.metrics import PolicyCounts, average_ranks, crowd_metrics

from .reference import reference_row

pytestmark = pytest.mark.unit

FAMILIES = ["a", "a", "a", "b", "b", "c"]
SIZES = [1.0, 7.0, 70.0, 2.0, 9.0, 3.0]


def _matrices(n_rows=st.integers(1, 12)):
    cell = st.one_of(
        st.floats(-5, 5, allow_nan=False, width=32),
        st.sampled_from([0.0, 0.5, 1.0]),  # ties
        st.just(math.nan),
        st.sampled_from([math.inf, -math.inf]),
    )
    return n_rows.flatmap(lambda n: st.lists(st.lists(cell, min_size=6, max_size=6), min_size=n, max_size=n))


def _equal(a, b):
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(_matrices())
def test_matches_independent_scipy_computation(rows):
    R = np.array(rows, dtype=float)
    m = crowd_metrics(R, FAMILIES, SIZES)
    for i, row in enumerate(R):
        diff, sep, stab, best_r, n_scored, n_fam = reference_row(row, FAMILIES, SIZES)
        got = (m.difficulty[i], m.separability[i], m.stability[i], m.best_reward[i])
        for g, want in zip(got, (diff, sep, stab, best_r)):
            assert (math.isnan(g) and math.isnan(want)) or g == pytest.approx(want, abs=1e-9)
        assert m.n_scored[i] == n_scored and m.n_families[i] == n_fam


@settings(max_examples=150, deadline=None)
@given(_matrices(), st.randoms(use_true_random=False))
def test_permuting_members_changes_nothing(rows, rnd):
    R = np.array(rows, dtype=float)
    perm = list(range(6))
    rnd.shuffle(perm)
    names = np.array(["m0", "m1", "m2", "m3", "m4", "m5"])
    prio = rankdata(names, method="ordinal") - 1
    a = crowd_metrics(R, FAMILIES, SIZES, prio)
    b = crowd_metrics(R[:, perm], [FAMILIES[j] for j in perm], [SIZES[j] for j in perm], prio[perm])
    for field in ("difficulty", "separability", "stability", "best_reward"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=0, atol=1e-12)
    best_a = [names[j] if j >= 0 else None for j in a.best]
    best_b = [names[perm][j] if j >= 0 else None for j in b.best]
    assert best_a == best_b
    assert a.counts == b.counts


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.01, 1, allow_nan=False), min_size=6, max_size=6))
def test_stability_is_plus_one_when_rewards_rise_with_size_and_minus_one_when_they_fall(base):
    sizes = np.array(SIZES)
    rising = np.empty(6)
    for fam in set(FAMILIES):
        idx = [j for j, f in enumerate(FAMILIES) if f == fam]
        order = np.argsort(sizes[idx])
        levels = np.cumsum([base[j] for j in idx])  # strictly increasing
        rising[np.array(idx)[order]] = levels
    up = crowd_metrics(rising[None, :], FAMILIES, SIZES)
    down = crowd_metrics(-rising[None, :], FAMILIES, SIZES)
    assert up.stability[0] == pytest.approx(1.0, abs=1e-12)
    assert down.stability[0] == pytest.approx(-1.0, abs=1e-12)
    assert up.n_families[0] == 2  # family "c" has one member: never in the mean


@settings(max_examples=150, deadline=None)
@given(_matrices(st.just(1)), st.integers(0, 5))
def test_a_nan_reward_equals_dropping_that_model(rows, drop):
    R = np.array(rows, dtype=float)
    R_nan = R.copy()
    R_nan[0, drop] = math.nan
    keep = [j for j in range(6) if j != drop]
    a = crowd_metrics(R_nan, FAMILIES, SIZES)
    b = crowd_metrics(R[:, keep], [FAMILIES[j] for j in keep], [SIZES[j] for j in keep])
    for field in ("difficulty", "separability", "stability", "best_reward", "n_scored", "n_families"):
        assert _equal(getattr(a, field), getattr(b, field)), field


def test_ties_use_average_ranks():
    # family a: rewards tie between 7B and 70B; the reference scripts gave the larger model the
    # better rank (rho = 1); average ranks give rankdata([1, 2, 2]) vs [1, 2, 3] → rho = sqrt(3)/2.
    R = np.array([[0.1, 0.5, 0.5]])
    m = crowd_metrics(R, ["a"] * 3, [1, 7, 70])
    r = rankdata([0.1, 0.5, 0.5])
    expected = np.corrcoef(r, [1, 2, 3])[0, 1]
    assert expected == pytest.approx(math.sqrt(3) / 2)
    assert m.stability[0] == pytest.approx(expected, abs=1e-12)


def test_average_ranks_equal_scipy_rankdata_on_valid_entries():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(50, 7)).astype(float)
    V = rng.random((50, 7)) > 0.3
    got = average_ranks(X.T, V.T).T
    for i in range(50):
        np.testing.assert_array_equal(got[i][V[i]], rankdata(X[i][V[i]], method="average"))
        assert (got[i][~V[i]] == 0).all()


def test_policies_for_unusable_rows_and_families():
    R = np.array(
        [
            [math.nan, None, math.inf, -math.inf, math.nan, math.nan],  # nothing usable
            [0.3, 0.3, 0.3, 0.1, math.nan, 0.9],  # family a all tied, b has 1 usable, c single
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        ],
        dtype=float,
    )
    m = crowd_metrics(R, FAMILIES, SIZES)
    assert math.isnan(m.difficulty[0]) and math.isnan(m.separability[0]) and math.isnan(m.stability[0])
    assert m.best[0] == -1 and math.isnan(m.best_reward[0]) and m.n_scored[0] == 0
    assert math.isnan(m.stability[1]) and m.n_families[1] == 0 and m.n_scored[1] == 5
    assert m.best[1] == 5 and m.difficulty[1] == pytest.approx(-np.mean([0.3, 0.3, 0.3, 0.1, 0.9]))
    assert m.stability[2] == pytest.approx(1.0)
    assert m.counts == PolicyCounts(
        rows=3,
        rows_no_usable_reward=1,
        rows_partially_scored=1,
        rewards_unusable=7,
        rows_no_stability=1,
        family_rows_too_few=1,
        family_rows_tied=1,
        members_without_size=0,
        single_member_families=1,
    )


def test_members_without_size_take_no_part_in_stability():
    R = np.array([[0.1, 0.9, 0.5]])
    m = crowd_metrics(R, ["a", "a", "a"], [1, 7, math.nan])
    assert m.stability[0] == pytest.approx(1.0)
    assert m.counts.members_without_size == 1


def test_best_tie_goes_to_lowest_priority():
    R = np.array([[0.9, 0.2, 0.9]])
    assert crowd_metrics(R, ["a", "a", "b"], [1, 2, 3]).best[0] == 0
    assert crowd_metrics(R, ["a", "a", "b"], [1, 2, 3], tie_priority=[2, 1, 0]).best[0] == 2


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="2-D"):
        crowd_metrics(np.zeros(3), ["a"], [1])
    with pytest.raises(ValueError, match="3 member columns but 2 families"):
        crowd_metrics(np.zeros((1, 3)), ["a", "b"], [1, 2])


def test_counts_add_and_describe():
    a = PolicyCounts(rows=2, rewards_unusable=1, single_member_families=1)
    b = PolicyCounts(rows=3, rewards_unusable=2, single_member_families=1)
    total = a + b
    assert (total.rows, total.rewards_unusable, total.single_member_families) == (5, 3, 1)
    assert "3 rewards unusable" in total.describe()
    assert not PolicyCounts(rows=4).any_hit
