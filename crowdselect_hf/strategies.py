"""The names of the selection strategies: CrowdSelect itself and the paper's baselines.

Kept apart from :mod:`crowdselect_hf.selection` so that the command line can list them without
importing scikit-learn.
"""

METRICS = ("difficulty", "separability", "stability")

CLUSTERED = frozenset({"crowdselect", "cluster-random"} | {f"{m}-{d}-clustered" for m in METRICS for d in ("top", "bottom")})
"""Strategies that take an equal quota from every KMeans cluster."""

STRATEGIES = tuple(
    ["crowdselect", "combined-top", "random", "cluster-random", "reward-top", "reward-bottom", "length-longest",
     "length-shortest"]
    + [f"{m}-{d}{c}" for m in METRICS for d in ("top", "bottom") for c in ("", "-clustered")]
)
"""Every value ``crowd_select(strategy=...)`` accepts."""
