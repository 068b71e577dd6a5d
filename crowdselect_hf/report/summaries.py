"""Numbers the reviewer sections state: rank correlations of the metrics, reward by member size
per family, and the verdict on the selected rows' best reward. Plain numpy; no plotting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..record import SelectionRecord
from .data import METRICS, PoolData


def average_ranks(x: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their mean rank (as ``scipy.stats.rankdata``).
    ``order``: ``x``'s ascending sort order, when known (then no sort is needed).

    Example:
        >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
        [3.5, 1.0, 3.5, 2.0]
    """
    x = np.asarray(x)
    order = np.argsort(x) if order is None else order
    xs = x[order]
    new = np.concatenate([[True], xs[1:] != xs[:-1]]) if xs.size else np.empty(0, dtype=bool)
    first = np.flatnonzero(new)
    counts = np.diff(np.concatenate([first, [xs.size]]))
    mean_rank = first + (counts + 1) / 2.0
    out = np.empty(x.size, dtype=np.float64)
    out[order] = np.repeat(mean_rank, counts)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ over the rows where both are finite (tie-corrected); NaN for fewer than three
    rows or a constant input."""
    ok = np.isfinite(x) & np.isfinite(y)
    return _rho(average_ranks(x[ok]), average_ranks(y[ok])) if ok.sum() >= 3 else math.nan


def _rho(rx: np.ndarray, ry: np.ndarray) -> float:
    """Pearson's r of two rank vectors."""
    rx = rx - rx.mean()
    ry = ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denom if denom > 0 else math.nan


@dataclass(frozen=True)
class Correlation:
    """Spearman's ρ of two metrics over the pool and over the selected rows."""

    a: str
    b: str
    pool: float
    selected: float


def metric_pairs(d: PoolData) -> list[tuple[str, str]]:
    """The pairs of crowd metrics present in the pool, as (column, column)."""
    present = [name for name, _, _ in METRICS if d.metrics.get(name) is not None]
    return [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]


def rank_correlations(d: PoolData) -> list[Correlation]:
    """Spearman's ρ of each pair of crowd metrics (and of difficulty with the best reward)."""
    columns = {name: d.metrics[name] for name, _, _ in METRICS if d.metrics.get(name) is not None}
    if d.best_reward is not None:
        columns["crowd_best_reward"] = d.best_reward
    names = list(columns)
    # Each column is sorted once; the sort order of any subset of its rows is that order, filtered.
    orders = {name: np.argsort(v) for name, v in columns.items()}
    ranks: dict[tuple[str, bytes], np.ndarray] = {}  # the metrics share their NaN rows: rank once per mask

    def ranked(name: str, ok: np.ndarray, key: bytes) -> np.ndarray:
        if (name, key) not in ranks:
            position = np.cumsum(ok) - 1  # row -> its position among the rows of ``ok``
            sub = orders[name][ok[orders[name]]]
            ranks[(name, key)] = average_ranks(columns[name][ok], position[sub])
        return ranks[(name, key)]

    def rho(a: str, b: str, rows: np.ndarray) -> float:
        ok = rows & np.isfinite(columns[a]) & np.isfinite(columns[b])
        if ok.sum() < 3:
            return math.nan
        key = np.packbits(ok).tobytes()
        return _rho(ranked(a, ok, key), ranked(b, ok, key))

    everything = np.ones(d.n, dtype=bool)
    return [Correlation(a, b, rho(a, b, everything), rho(a, b, d.selected)) for i, a in enumerate(names) for b in names[i + 1:]]


@dataclass(frozen=True)
class FamilyCurve:
    """One family's reward by member size.

    Attributes:
        family: the family.
        members, sizes: its members with a known size and usable rewards, smallest first.
        pool, selected: per member, the statistic of its usable rewards over the pool and over
            the selected rows (NaN where it has none there).
    """

    family: str
    members: tuple[str, ...]
    sizes: tuple[float, ...]
    pool: tuple[float, ...]
    selected: tuple[float, ...]


def reward_statistic(d: PoolData) -> str:
    """``"median"``, or ``"mean"`` when every reward is one of two values (0/1 scores: the median
    of a 0/1 reward is 0 or 1 and hides the differences; the mean is the accuracy). Read from each
    member's recorded levels (:attr:`~crowdselect_hf.record.MemberRewards.levels`)."""
    values: set[float] = set()
    for m in d.member_rewards or ():
        if m.levels is None:
            return "median"
        values.update(m.levels)
    return "mean" if len(values) <= 2 else "median"


def family_curves(d: PoolData) -> list[FamilyCurve]:
    """Per family with at least two members of known size with usable rewards, each member's
    reward statistic (:func:`reward_statistic`), pool against selected, from the pool table's
    member reward summaries."""
    stat = reward_statistic(d)

    def of(summary):
        value = summary.mean if stat == "mean" else summary.median
        return float(value) if summary.count and value is not None else math.nan

    families: dict[str, list[Any]] = {}
    for m in d.member_rewards or ():
        if m.pool.count and m.params_b is not None:  # a member of unknown size has no place on the axis
            families.setdefault(m.family or m.name, []).append(m)
    out = []
    for family, ms in sorted(families.items()):
        if len(ms) < 2:
            continue
        ms = sorted(ms, key=lambda m: (m.params_b, m.name))
        out.append(FamilyCurve(family, tuple(m.name for m in ms), tuple(float(m.params_b) for m in ms),
                               tuple(of(m.pool) for m in ms), tuple(of(m.selected) for m in ms)))
    return out


def reward_verdict(record: SelectionRecord, d: PoolData) -> str | None:
    """One sentence when the selection lowers the mean best reward (the record's means), with
    the pool's rank correlation of difficulty and best reward; ``None`` otherwise."""
    means = (record.metric_means or {}).get("best_reward") or {}
    sel, pool = means.get("selected"), means.get("pool")
    if not isinstance(sel, (int, float)) or not isinstance(pool, (int, float)) or not sel < pool:
        return None
    text = (f"The selection lowers the mean best reward: {sel:.3g} selected against {pool:.3g} over the "
            f"eligible pool ({sel - pool:+.3g}).")
    difficulty = d.metrics.get("crowd_difficulty")
    if difficulty is not None and d.best_reward is not None:
        rho = spearman(difficulty, d.best_reward)
        if math.isfinite(rho) and rho < 0:
            text += (f" Harder instructions have lower best rewards here (Spearman ρ = {rho:.2f} between difficulty "
                     "and best reward), and CrowdSelect favours hard ones; rank by best reward (reward-top) or "
                     "filter on crowd_best_reward if the answers' reward matters more.")
    return text
