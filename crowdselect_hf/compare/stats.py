"""The statistics of a paired comparison: per-prompt scores → win rate, mean difference, seeded
bootstrap 95% intervals, an exact sign test, Holm's correction across configs. Pure numpy.

Every comparison is *paired*: each evaluation prompt was answered by the baseline's student and
by the candidate's, so the unit of resampling and testing is the prompt.

* a prompt's **score** is the candidate's share of the win on it, in [0, 1] (1 = win, 0.5 = tie,
  0 = loss; a pairwise judge's two orders average, so 0.25 and 0.75 occur);
* the **win rate** is the mean score (ties count half), the **mean difference** the mean of the
  per-prompt differences (reward judge);
* the **test** is the exact two-sided sign test of prompts won (score > 0.5) against prompts lost
  (score < 0.5), ties dropped; p-values are Holm-adjusted over the configs compared against one
  baseline with one judge, and a result is *significant* when the adjusted p < alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

TEST = "exact two-sided sign test on prompts won vs lost (ties dropped), Holm-adjusted across configs"
INTERVAL = "percentile bootstrap over prompts"
_CHUNK = 1 << 22  # resample indices held at once (n_resamples × n)


def bootstrap_ci(values: Sequence[float], n_resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN, NaN when empty).

    The draw is ``numpy.random.default_rng(seed).integers(0, n, size=(n_resamples, n))``, so the
    interval is the same on every run and machine.

    Example:
        >>> bootstrap_ci([1, 0, 1, 1, 0.5, 1, 0, 1], n_resamples=1000, seed=0)
        (0.375, 0.9375)
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, _CHUNK // n)
    for start in range(0, n_resamples, step):
        size = min(step, n_resamples - start)
        means[start:start + size] = x[rng.integers(0, n, size=(size, n))].mean(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: the p-value of ``wins`` against ``losses`` under p = 1/2.

    Example:
        >>> sign_test(9, 1), sign_test(5, 5), sign_test(0, 0)
        (0.021484375, 1.0, 1.0)
    """
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    k = min(int(wins), int(losses))
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error), in the input order.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    p = list(p_values)
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class PairedResult:
    """One config against the baseline under one judge.

    Attributes:
        config, baseline, judge: what was compared, and by whom (``"reward"`` or ``"pairwise"``).
        n: prompts compared (both answers present and, for the pairwise judge, both orders judged).
        win_rate, win_rate_ci: mean per-prompt score (ties half) and its 95% bootstrap interval.
        wins, ties, losses: prompts with score > 0.5, = 0.5, < 0.5.
        mean_difference, mean_difference_ci: reward judge only: mean of candidate − baseline.
        p_value, p_adjusted: sign test, raw and Holm-adjusted; ``significant``: p_adjusted < alpha.
        alpha: the level.
    """

    config: str
    baseline: str
    judge: str
    n: int
    win_rate: float
    win_rate_ci: tuple[float, float]
    wins: int
    ties: int
    losses: int
    p_value: float
    p_adjusted: float
    significant: bool
    alpha: float
    mean_difference: float | None = None
    mean_difference_ci: tuple[float, float] | None = None

    def sentence(self) -> str:
        """The result in plain words, saying so when it is not significant.

        Example:
            >>> r = paired_result("a", "b", "reward", [1, 1, 0.5, 0], n_resamples=100)
            >>> r.sentence()
            'a vs b (reward judge): win rate 62.5% [...], 2 wins / 1 tie / 1 loss; p = 1 (Holm): not significant — no evidence that either trains the better student'
        """
        lo, hi = self.win_rate_ci
        head = (f"{self.config} vs {self.baseline} ({self.judge} judge): win rate {_pct(self.win_rate)} "
                f"[{_pct(lo)}, {_pct(hi)}], {self.wins} win{'s' * (self.wins != 1)} / {self.ties} "
                f"tie{'s' * (self.ties != 1)} / {self.losses} loss{'es' * (self.losses != 1)}")
        if self.mean_difference is not None:
            dlo, dhi = self.mean_difference_ci or (math.nan, math.nan)
            head += f", mean reward difference {self.mean_difference:+.4g} [{dlo:+.4g}, {dhi:+.4g}]"
        head += f"; p = {self.p_adjusted:.3g} (Holm)"
        if self.n == 0:
            return head + ": nothing compared"
        if not self.significant:
            return head + ": not significant — no evidence that either trains the better student"
        better = self.config if self.wins > self.losses else self.baseline
        return head + f": significant at {self.alpha:g} — {better} trains the better student"


def paired_result(config: str, baseline: str, judge: str, scores: Sequence[float],
                  differences: Sequence[float] | None = None, *, n_resamples: int = 2000, seed: int = 0,
                  alpha: float = 0.05) -> PairedResult:
    """Summarise per-prompt scores (candidate's share of the win, in [0, 1]; NaN = not compared).

    The result's ``p_adjusted`` is the raw p until :func:`adjust` corrects a family of results.

    Example:
        >>> r = paired_result("top", "random", "pairwise", [1, 1, 1, 0.5, 0.75, 0, float("nan")], n_resamples=200)
        >>> r.n, r.wins, r.ties, r.losses, round(r.win_rate, 4), r.p_value
        (6, 4, 1, 1, 0.7083, 0.375)
    """
    s = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(s)
    if differences is not None:
        d = np.asarray(differences, dtype=np.float64)
        if d.shape != s.shape:
            raise ValueError(f"scores and differences differ in length ({s.size} vs {d.size})")
        keep &= np.isfinite(d)
    s = s[keep]
    if ((s < 0) | (s > 1)).any():
        raise ValueError("per-prompt scores must lie in [0, 1] (the candidate's share of the win)")
    wins, ties, losses = int((s > 0.5).sum()), int((s == 0.5).sum()), int((s < 0.5).sum())
    p = sign_test(wins, losses)
    mean_diff = diff_ci = None
    if differences is not None:
        d = d[keep]
        mean_diff = float(d.mean()) if d.size else math.nan
        diff_ci = bootstrap_ci(d, n_resamples, seed)
    return PairedResult(config=config, baseline=baseline, judge=judge, n=int(s.size),
                        win_rate=float(s.mean()) if s.size else math.nan, win_rate_ci=bootstrap_ci(s, n_resamples, seed),
                        wins=wins, ties=ties, losses=losses, p_value=p, p_adjusted=p, significant=p < alpha, alpha=alpha,
                        mean_difference=mean_diff, mean_difference_ci=diff_ci)


def adjust(results: Sequence[PairedResult]) -> list[PairedResult]:
    """The results with Holm-adjusted p-values and significance (one judge, one baseline)."""
    adjusted = holm([r.p_value for r in results])
    return [replace(r, p_adjusted=a, significant=a < r.alpha and r.n > 0) for r, a in zip(results, adjusted)]


def difference_scores(candidate: Sequence[float], baseline: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt (score, difference) of two paired value lists: 1 / 0.5 / 0 when the candidate's
    value is higher / equal / lower; NaN where either is missing.

    Example:
        >>> difference_scores([0.5, 0.2, None], [0.1, 0.2, 0.3])[0].tolist()
        [1.0, 0.5, nan]
    """
    c = np.asarray([np.nan if v is None else v for v in candidate], dtype=np.float64)
    b = np.asarray([np.nan if v is None else v for v in baseline], dtype=np.float64)
    d = c - b
    score = np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
    score[~np.isfinite(d)] = np.nan
    return score, d


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.1f}%"
