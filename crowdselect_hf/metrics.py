"""CrowdSelect's per-instruction metrics, vectorised over an ``[n_rows, n_members]`` reward matrix.

Pure numpy, no I/O. Semantics (``../shared/docs/METHOD.md``):

* a reward that is missing, NaN or ±inf is *unusable*: it is left out of every metric of its row;
* **difficulty** = −mean of the usable rewards; **separability** = their population variance;
* **stability** = mean over families of the Spearman ρ between the members' reward ranks and
  their size ranks (average ranks for ties), computed on the members usable in that row; a family
  with < 2 usable members, or whose reward ranks (or size ranks) are all tied, is left out of the
  mean; a row with no family left has stability NaN;
* **best** = the member with the highest usable reward; among equal rewards, the member with the
  lowest ``tie_priority`` (callers pass the rank of the member's name, so the answer does not
  depend on column order);
* a row with no usable reward has NaN metrics, no best member, and ``n_scored == 0``.

Every sum runs column by column in a fixed order, so a row's values are bit-identical whether it
is computed alone or inside a batch of any size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

ALGORITHM_VERSION = "3"  # 2: crowd_best_bytes; 3: rewards near ±1e308 no longer overflow the mean


@dataclass
class PolicyCounts:
    """How often each METHOD.md policy was applied. Summable across batches with ``+``.

    Attributes:
        rows: rows scored.
        rows_no_usable_reward: rows with no usable reward: NaN metrics, never selected.
        rows_partially_scored: rows with some, but not all, rewards usable.
        rewards_unusable: reward cells that were missing, NaN or infinite (left out).
        rows_no_stability: rows with usable rewards but no family usable for stability (NaN).
        family_rows_too_few: (row, family) pairs left out of stability: < 2 usable members.
        family_rows_tied: (row, family) pairs left out of stability: all reward (or size) ranks tied.
        members_without_size: crowd members whose size is unknown (they take no part in stability).
        single_member_families: families with fewer than two sized members (never in stability).
        rows_separability_overflow: rows whose reward variance exceeds float64 (rewards spread
            beyond about ±1.3e154): separability is +inf there (it still ranks highest).
    """

    rows: int = 0
    rows_no_usable_reward: int = 0
    rows_partially_scored: int = 0
    rewards_unusable: int = 0
    rows_no_stability: int = 0
    family_rows_too_few: int = 0
    family_rows_tied: int = 0
    members_without_size: int = 0
    single_member_families: int = 0
    rows_separability_overflow: int = 0

    _CROWD_LEVEL = ("members_without_size", "single_member_families")

    def __add__(self, other: "PolicyCounts") -> "PolicyCounts":
        out = {}
        for name in _COUNT_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            out[name] = max(a, b) if name in self._CROWD_LEVEL else a + b
        return PolicyCounts(**out)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNT_FIELDS}

    @property
    def any_hit(self) -> bool:
        return any(getattr(self, name) for name in _COUNT_FIELDS[1:])

    def describe(self) -> str:
        """One line a person can read, naming only the policies that were applied."""
        parts = [f"{v} {k.replace('_', ' ')}" for k, v in self.as_dict().items() if k != "rows" and v]
        return f"{self.rows} rows scored" + ("; " + ", ".join(parts) if parts else "; no reward needed a policy")


_COUNT_FIELDS = tuple(f.name for f in fields(PolicyCounts))


@dataclass
class CrowdMetrics:
    """Per-row results of :func:`crowd_metrics` (arrays of length n_rows)."""

    difficulty: np.ndarray
    separability: np.ndarray
    stability: np.ndarray
    best: np.ndarray  # member index, -1 when no usable reward
    best_reward: np.ndarray
    n_scored: np.ndarray
    n_families: np.ndarray  # families that entered the stability mean
    counts: PolicyCounts


def crowd_metrics(
    rewards: np.ndarray,
    families: Sequence[str],
    sizes: Sequence[float],
    tie_priority: Sequence[int] | None = None,
) -> CrowdMetrics:
    """Difficulty, separability, stability and the best member for every row.

    Args:
        rewards: ``[n_rows, n_members]`` raw reward scores; NaN marks a missing reward.
        families: the family of each member (column).
        sizes: each member's size (billions of parameters); NaN when unknown.
        tie_priority: for equal best rewards, the member with the lowest value wins; defaults
            to column order.

    Example:
        >>> m = crowd_metrics(np.array([[0.1, 0.5, 0.9]]), ["f", "f", "f"], [1, 7, 70])
        >>> float(m.stability[0]), float(m.difficulty[0]), int(m.best[0])
        (1.0, -0.5, 2)
    """
    R = np.asarray(rewards, dtype=np.float64)
    if R.ndim != 2:
        raise ValueError(f"rewards must be a 2-D [rows, members] matrix, got shape {R.shape}")
    n, M = R.shape
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(families) != M or sizes.shape != (M,):
        raise ValueError(f"rewards have {M} member columns but {len(families)} families and {sizes.size} sizes were given")
    priority = np.arange(M) if tie_priority is None else np.asarray(tie_priority)

    # Member-major layout: every per-member slice below is contiguous.
    RT = np.ascontiguousarray(R.T)
    usable = np.isfinite(RT)
    n_scored = usable.sum(axis=0)
    has_any = n_scored > 0
    denom = np.maximum(n_scored, 1)

    # Sums run on each row scaled by a power of two near its largest |reward|: exact for ordinary
    # values (the same bits as unscaled), and finite rewards up to ±1.8e308 never overflow the mean.
    scale = _row_scale(np.where(usable, np.abs(RT), 0.0).max(axis=0) if M else np.zeros(n))
    Z = np.where(usable, RT / scale, 0.0)
    mean_scaled = np.where(has_any, _member_sum(Z) / denom, np.nan)
    D = np.where(usable, Z - mean_scaled, 0.0)
    with np.errstate(over="ignore"):
        # The variance itself overflows only when it exceeds float64 (a spread beyond ~1.3e154):
        # then it is +inf, counted in PolicyCounts.rows_separability_overflow.
        separability = np.where(has_any, (_member_sum(D * D) / denom * scale) * scale, np.nan)
    mean = mean_scaled * scale
    difficulty = -mean

    masked = np.where(usable, RT, -np.inf)
    top = masked.max(axis=0) if M else np.full(n, -np.inf)
    is_top = usable & (masked == top)
    best = np.where(has_any, np.argmin(np.where(is_top, priority[:, None], np.iinfo(np.int64).max), axis=0), -1)
    best_reward = np.where(has_any, top, np.nan)

    groups: dict[str, list[int]] = {}
    for j, fam in enumerate(families):
        if np.isfinite(sizes[j]):
            groups.setdefault(str(fam), []).append(j)
    eligible = [idx for idx in groups.values() if len(idx) >= 2]
    if eligible:
        rho, enough, untied = _family_spearman(RT, usable, sizes, eligible)
        ok = enough & untied  # [F, n]
        stab_sum = _member_sum(np.where(ok, rho, 0.0))
        n_fam = ok.sum(axis=0)
        too_few = int((has_any & ~enough).sum())
        tied = int((has_any & enough & ~untied).sum())
    else:
        stab_sum, n_fam, too_few, tied = np.zeros(n), np.zeros(n, dtype=np.int64), 0, 0
    with np.errstate(invalid="ignore", divide="ignore"):
        stability = np.where(n_fam > 0, stab_sum / np.maximum(n_fam, 1), np.nan)

    counts = PolicyCounts(
        rows=n,
        rows_no_usable_reward=int((~has_any).sum()),
        rows_partially_scored=int((has_any & (n_scored < M)).sum()),
        rewards_unusable=int(n * M - n_scored.sum()),
        rows_no_stability=int((has_any & (n_fam == 0)).sum()),
        family_rows_too_few=too_few,
        family_rows_tied=tied,
        members_without_size=int((~np.isfinite(sizes)).sum()),
        single_member_families=sum(1 for idx in groups.values() if len(idx) < 2),
        rows_separability_overflow=int(np.isinf(separability).sum()),
    )
    return CrowdMetrics(difficulty, separability, stability, best, best_reward, n_scored, n_fam, counts)


def finite_mean(values: np.ndarray) -> float:
    """The mean of finite ``values`` without overflow (rewards near ±1.8e308 included).

    Example:
        >>> finite_mean(np.array([1e308, 1e308, 1e308]))
        1e+308
    """
    scale = _scale_of(values)
    return float(np.mean(values / scale) * scale)


def finite_median(values: np.ndarray) -> float:
    """The median of finite ``values``; the middle pair is averaged without overflow."""
    scale = _scale_of(values)
    return float(np.median(values / scale) * scale)


def _scale_of(values: np.ndarray) -> float:
    return float(_row_scale(np.array([np.abs(values).max()]))[0]) if values.size else 1.0


def _row_scale(largest: np.ndarray) -> np.ndarray:
    """A power of two per row with ``largest / scale`` in [1, 2) (1 where the row is all zero)."""
    _, exponent = np.frexp(largest)
    return np.where(largest > 0, np.ldexp(1.0, exponent - 1), 1.0)


def _member_sum(X: np.ndarray) -> np.ndarray:
    """Sum over the first (member) axis, adding members in order: the same bits whatever the batch."""
    out = np.zeros(X.shape[1:])
    for j in range(X.shape[0]):
        out += X[j]
    return out


def average_ranks(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the FIRST axis among the valid entries; 0 where invalid.

    Equal to ``scipy.stats.rankdata(values[valid[:, k], k], method="average")`` for every
    trailing index ``k``. One vectorised comparison per pair of members, so the cost is
    m(m-1)/2 array operations, not an ``m × m`` broadcast.
    """
    m = values.shape[0]
    ranks = np.where(valid, 1.0, 0.0)
    for i in range(m):
        for j in range(i + 1, m):
            both = valid[i] & valid[j]
            tie = 0.5 * (both & (values[i] == values[j]))
            ranks[i] += (both & (values[i] > values[j])) + tie
            ranks[j] += (both & (values[j] > values[i])) + tie
    return ranks


def _family_spearman(RT: np.ndarray, usable: np.ndarray, sizes: np.ndarray, families: list[list[int]]):
    """Spearman ρ between reward ranks and size ranks within each family, usable members only.

    Families are padded to one ``[m, F, n]`` block, so the work is a fixed number of numpy calls
    whatever the crowd. Returns ``(rho, enough, untied)``, each ``[F, n]``: rho is meaningful
    where enough (≥ 2 usable members) and untied (neither rank vector constant).
    """
    F, m = len(families), max(len(f) for f in families)
    idx = np.zeros((m, F), dtype=np.int64)
    real = np.zeros((m, F), dtype=bool)
    for f, members in enumerate(families):
        idx[: len(members), f] = members
        real[: len(members), f] = True
    V = usable[idx] & real[:, :, None]  # [m, F, n]
    X = RT[idx]
    S = np.broadcast_to(sizes[idx][:, :, None], X.shape)
    r = average_ranks(X, V)
    s = average_ranks(S, V)
    c = V.sum(axis=0)
    cc = np.maximum(c, 1)
    dr = np.where(V, r - _member_sum(r) / cc, 0.0)
    ds = np.where(V, s - _member_sum(s) / cc, 0.0)
    cov, r_var, s_var = _member_sum(dr * ds), _member_sum(dr * dr), _member_sum(ds * ds)
    enough = c >= 2
    untied = (r_var > 0) & (s_var > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip(cov / np.sqrt(r_var * s_var), -1.0, 1.0)
    return np.where(enough & untied, rho, np.nan), enough, untied
