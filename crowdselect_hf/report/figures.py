"""The report's figures: matplotlib on the Agg backend (pyplot's global state untouched), each
returned as a PNG ``data:`` URI. No HTML here.

Plots need matplotlib (``pip install 'crowdselect-hf[report]'``).
"""

from __future__ import annotations

import base64
import io

import numpy as np

from .data import METRICS, PoolData
from .style import GRID, INK, MUTED, POOL_COLOR, SELECTED_COLOR, UNCLUSTERED_COLOR, cluster_color

MAX_MAP_POINTS = 20_000
"""At most this many unselected rows are drawn on the map (a random subset beyond)."""
DPI = 110
RC = {
    "font.family": "DejaVu Sans", "font.size": 10.5, "axes.titlesize": 12, "axes.titleweight": "bold",
    "axes.labelsize": 10.5, "axes.edgecolor": POOL_COLOR, "axes.labelcolor": INK, "axes.titlecolor": INK,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "axes.axisbelow": True,
    "grid.color": GRID, "grid.linewidth": 0.8, "xtick.color": MUTED, "ytick.color": MUTED,
    "legend.frameon": False, "legend.fontsize": 10, "figure.facecolor": "white", "axes.facecolor": "white",
}


def style():
    """A context in which the figures are drawn with the report's style."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the report plots need matplotlib: pip install 'crowdselect-hf[report]'") from None
    return matplotlib.rc_context(RC)


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hist_pair(ax, values: np.ndarray | None, selected: np.ndarray, label: str = "") -> bool:
    """Pool vs selected densities on shared bins; ``False`` when there is nothing to draw."""
    finite = np.isfinite(values) if values is not None else None
    if finite is None or not finite.any():
        ax.text(0.5, 0.5, "column missing" if values is None else "no finite values", ha="center", va="center",
                color=MUTED, transform=ax.transAxes)
        return False
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 31)
    ax.hist(values[finite], bins=bins, density=True, color=POOL_COLOR, alpha=0.55, label="pool")
    sel = values[finite & selected]
    if sel.size:
        ax.hist(sel, bins=bins, density=True, histtype="stepfilled", color=SELECTED_COLOR, alpha=0.25)
        ax.hist(sel, bins=bins, density=True, histtype="step", color=SELECTED_COLOR, linewidth=1.8, label="selected")
        ax.axvline(float(np.median(sel)), color=SELECTED_COLOR, linestyle="--", linewidth=1)
    ax.axvline(float(np.median(values[finite])), color="#52606D", linestyle="--", linewidth=1)
    if label:
        ax.set_xlabel(label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_yticks([])
    ax.grid(axis="y", visible=False)
    return True


def metrics_figure(d: PoolData) -> str:
    """One histogram per crowd metric, pool vs selected."""
    fig, axes = _figure(11, 3.0, ncols=3)
    legend_done = False
    for ax, (name, label, _) in zip(axes, METRICS):
        drawn = _hist_pair(ax, d.metrics[name], d.selected)
        ax.set_title(label, loc="left")
        if drawn and not legend_done:
            ax.legend(loc="upper left")
            legend_done = True
    axes[0].set_ylabel("density")
    return _png(fig)


def score_figure(d: PoolData, label: str) -> str:
    """The ranking score (``crowd_combined``), pool vs selected, with the lowest selected value."""
    fig, axes = _figure(11, 2.8)
    ax = axes[0]
    _hist_pair(ax, d.score, d.selected, label)
    ax.set_ylabel("density")
    sel = d.score[d.selected & np.isfinite(d.score)]
    if sel.size:
        ax.axvline(float(sel.min()), color=SELECTED_COLOR, linewidth=1, alpha=0.6)
        ax.annotate("lowest selected", (float(sel.min()), ax.get_ylim()[1] * 0.92), color=SELECTED_COLOR,
                    fontsize=9, ha="right", xytext=(-4, 0), textcoords="offset points")
    ax.legend(loc="upper left")
    return _png(fig)


def map_figure(d: PoolData) -> str:
    """The 2-D map of the instructions, coloured by cluster; selected rows larger, outlined."""
    ok = np.isfinite(d.map_x) & np.isfinite(d.map_y)
    cluster = d.cluster if d.cluster is not None else np.full(d.n, -1)
    background = np.flatnonzero(ok & ~d.selected)
    if background.size > MAX_MAP_POINTS:
        background = np.sort(np.random.default_rng(0).choice(background, MAX_MAP_POINTS, replace=False))
    chosen = np.flatnonzero(ok & d.selected)
    fig, axes = _figure(11, 5.2)
    ax = axes[0]
    labels = d.cluster_labels()
    size = float(np.clip(3000 / max(background.size, 1), 3, 14))
    groups = [(-1, UNCLUSTERED_COLOR, 0.6)] + [(c, cluster_color(c), 0.45) for c in labels]
    for c, color, alpha in groups:
        idx = background[cluster[background] == c]
        if idx.size or c >= 0:
            ax.scatter(d.map_x[idx], d.map_y[idx], s=size, color=color, alpha=alpha, linewidths=0, rasterized=True)
        if c >= 0 and len(labels) <= 20:
            ax.scatter([], [], s=40, color=color, label=f"cluster {c}")
    if chosen.size:
        ax.scatter(d.map_x[chosen], d.map_y[chosen], s=max(size * 2.6, 22), c=[cluster_color(c) for c in cluster[chosen]],
                   edgecolors=INK, linewidths=0.9, marker="o", zorder=3)
        ax.scatter([], [], s=40, facecolors="white", edgecolors=INK, linewidths=0.9, label="selected")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if labels or chosen.size:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), handletextpad=0.3)
    return _png(fig)


def best_figure(names: list[str], pool_share: np.ndarray, sel_share: np.ndarray, breaks: list[int]) -> str:
    """Per crowd member, the share of pool and of selected rows where its answer was the best."""
    fig, axes = _figure(11, max(0.34 * len(names) + 1.2, 2.6))
    ax = axes[0]
    y = np.arange(len(names))[::-1]
    ax.barh(y + 0.19, pool_share, height=0.38, color=POOL_COLOR, label="pool")
    ax.barh(y - 0.19, sel_share, height=0.38, color=SELECTED_COLOR, label="selected")
    ax.set_yticks(y, [n if len(n) <= 34 else n[:31] + "…" for n in names])
    for i in breaks:
        ax.axhline(y[i] + 0.5, color=GRID, linewidth=1.2)
    ax.set_xlabel("share of rows where this member's answer had the highest reward (%)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower right")
    for yy, v in zip(y - 0.19, sel_share):
        if v > 0:
            ax.text(v, yy, f" {v:.1f}%", va="center", fontsize=8.5, color=SELECTED_COLOR)
    return _png(fig)

