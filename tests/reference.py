"""An independent, deliberately plain re-statement of METHOD.md's per-row metrics with scipy.

One row at a time, one ``scipy.stats.spearmanr`` call per family: slow, obviously right, and
sharing no code with ``crowdselect_hf.metrics``.
"""

import math
import warnings

import numpy as np
from scipy.stats import spearmanr


def reference_row(rewards, families, sizes):
    """Return (difficulty, separability, stability, best_reward, n_scored, n_families)."""
    rewards = [float("nan") if r is None else float(r) for r in rewards]
    usable = [i for i, r in enumerate(rewards) if math.isfinite(r)]
    if not usable:
        return (math.nan, math.nan, math.nan, math.nan, 0, 0)
    s = np.array([rewards[i] for i in usable])
    rhos = []
    for fam in sorted(set(families)):
        members = [i for i in usable if families[i] == fam and math.isfinite(sizes[i])]
        if len(members) < 2:
            continue
        x = [rewards[i] for i in members]
        y = [sizes[i] for i in members]
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rhos.append(float(spearmanr(x, y).statistic))
    stability = float(np.mean(rhos)) if rhos else math.nan
    return (-float(np.mean(s)), float(np.var(s)), stability, float(np.max(s)), len(usable), len(rhos))
