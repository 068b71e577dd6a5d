"""The report's figures: matplotlib on the Agg backend (pyplot's global state untouched), each
returned as a PNG ``data:`` URI. No HTML here.

Plots need matplotlib (``pip install 'crowdselect-hf[report]'``).
"""

from __future__ import annotations

import base64
import io

import numpy as np

from .data import METRICS, PoolData
from .style import CLUSTER_COLORS, GRID, INK, MUTED, POOL_COLOR, SELECTED_COLOR
from .summaries import metric_pairs

MAX_OVERLAY_POINTS = 4_000
"""At most this many selected rows are drawn over a density (a seeded random subset beyond)."""
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


def figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hist_pair(ax, values: np.ndarray | None, selected: np.ndarray, label: str = "", log: bool = False) -> bool:
    """Pool vs selected densities on shared bins (log-spaced with ``log``, over positive values);
    ``False`` when there is nothing to draw."""
    finite = np.isfinite(values) if values is not None else None
    if finite is not None and log:
        finite &= values > 0
    if finite is None or not finite.any():
        ax.text(0.5, 0.5, "column missing" if values is None else "no finite values", ha="center", va="center",
                color=MUTED, transform=ax.transAxes)
        return False
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if lo == hi:
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    bins = np.geomspace(lo, hi, 31) if log else np.linspace(lo, hi, 31)
    if log:
        ax.set_xscale("log")
    # Binned here and drawn as stairs: matplotlib's hist() is slow on a million values.
    pool_density, _ = np.histogram(values[finite], bins=bins, density=True)
    ax.stairs(pool_density, bins, fill=True, color=POOL_COLOR, alpha=0.55, label="pool")
    sel = values[finite & selected]
    if sel.size:
        sel_density, _ = np.histogram(sel, bins=bins, density=True)
        ax.stairs(sel_density, bins, fill=True, color=SELECTED_COLOR, alpha=0.25)
        ax.stairs(sel_density, bins, color=SELECTED_COLOR, linewidth=1.8, label="selected")
        ax.axvline(float(np.median(sel)), color=SELECTED_COLOR, linestyle="--", linewidth=1)
    ax.axvline(float(np.median(values[finite])), color="#52606D", linestyle="--", linewidth=1)
    if label:
        ax.set_xlabel(label)
    if not log:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_yticks([])
    ax.grid(axis="y", visible=False)
    return True


def metrics_figure(d: PoolData) -> str:
    """One histogram per crowd metric, pool vs selected."""
    fig, axes = figure(11, 3.0, ncols=3)
    legend_done = False
    for ax, (name, label, _) in zip(axes, METRICS):
        drawn = _hist_pair(ax, d.metrics[name], d.selected)
        ax.set_title(label, loc="left")
        if drawn and not legend_done:
            ax.legend(loc="upper left")
            legend_done = True
    axes[0].set_ylabel("density")
    return png(fig)


def score_figure(d: PoolData, label: str) -> str:
    """The ranking score (``crowd_combined``), pool vs selected, with the lowest selected value."""
    fig, axes = figure(11, 2.8)
    ax = axes[0]
    _hist_pair(ax, d.score, d.selected, label)
    ax.set_ylabel("density")
    sel = d.score[d.selected & np.isfinite(d.score)]
    if sel.size:
        ax.axvline(float(sel.min()), color=SELECTED_COLOR, linewidth=1, alpha=0.6)
        ax.annotate("lowest selected", (float(sel.min()), ax.get_ylim()[1] * 0.92), color=SELECTED_COLOR,
                    fontsize=9, ha="right", xytext=(-4, 0), textcoords="offset points")
    ax.legend(loc="upper left")
    return png(fig)


def best_figure(names: list[str], pool_share: np.ndarray, sel_share: np.ndarray, breaks: list[int]) -> str:
    """Per crowd member, the share of pool and of selected rows where its answer was the best."""
    fig, axes = figure(11, max(0.34 * len(names) + 1.2, 2.6))
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
    return png(fig)



def relations_figure(d: PoolData) -> str:
    """Each pair of crowd metrics: the pool as a density (darker = more rows), selected rows on top."""
    pairs = metric_pairs(d)
    labels = {name: label for name, label, _ in METRICS}
    fig, axes = figure(11, 3.4, ncols=max(len(pairs), 1))
    rng = np.random.default_rng(0)
    for ax, (a, b) in zip(axes, pairs):
        x, y = d.metrics[a], d.metrics[b]
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", color=MUTED, transform=ax.transAxes)
            continue
        xlo, xhi = _span(x[ok])
        ylo, yhi = _span(y[ok])
        counts = _grid_counts(x[ok], y[ok], (xlo, xhi, ylo, yhi), 60)
        shade = np.where(counts > 0, np.log1p(counts), np.nan)
        ax.imshow(shade, origin="lower", extent=(xlo, xhi, ylo, yhi), aspect="auto", cmap="Greys", vmin=-0.6,
                  interpolation="nearest", rasterized=True)
        sel = np.flatnonzero(ok & d.selected)
        if sel.size > MAX_OVERLAY_POINTS:
            sel = rng.choice(sel, MAX_OVERLAY_POINTS, replace=False)
        ax.scatter(x[sel], y[sel], s=9, color=SELECTED_COLOR, alpha=0.55, linewidths=0, label="selected")
        ax.set_xlabel(labels[a])
        ax.set_ylabel(labels[b])
        ax.grid(False)
    if pairs:
        axes[0].legend(loc="upper left", markerscale=1.6)
    return png(fig)


def _grid_counts(x: np.ndarray, y: np.ndarray, extent: tuple[float, float, float, float], bins: int) -> np.ndarray:
    """``[bins, bins]`` counts of the points in each cell (rows: y, from the bottom), by one bincount."""
    x0, x1, y0, y1 = extent
    ix = np.clip(((x - x0) / (x1 - x0) * bins).astype(np.int64), 0, bins - 1)
    iy = np.clip(((y - y0) / (y1 - y0) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(iy * bins + ix, minlength=bins * bins).reshape(bins, bins).astype(np.float64)


def _span(v: np.ndarray) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def answers_figure(d: PoolData) -> str:
    """The best answer's reward and its length in bytes, pool against selected."""
    fig, axes = figure(11, 3.0, ncols=2)
    if _hist_pair(axes[0], d.best_reward, d.selected, "reward of the best answer"):
        axes[0].legend(loc="upper left")
    axes[0].set_title("Best reward", loc="left")
    if d.best_bytes is None:
        axes[1].text(0.5, 0.5, "the pool table holds no best-answer lengths", ha="center", va="center", color=MUTED,
                     transform=axes[1].transAxes)
        axes[1].set_xticks([])
        axes[1].set_yticks([])
    else:
        _hist_pair(axes[1], d.best_bytes, d.selected, "UTF-8 bytes of the best answer (log scale)", log=True)
    axes[1].set_title("Best answer length", loc="left")
    axes[0].set_ylabel("density")
    return png(fig)


def families_figure(curves, statistic: str) -> str:
    """Per family, the reward statistic by member size: pool dashed, selected solid."""
    fig, axes = figure(11, 3.8)
    ax = axes[0]
    for i, curve in enumerate(curves):
        color = CLUSTER_COLORS[i % len(CLUSTER_COLORS)]
        ax.plot(curve.sizes, curve.pool, linestyle="--", marker="o", markersize=4, color=color, alpha=0.7, linewidth=1.2)
        ax.plot(curve.sizes, curve.selected, linestyle="-", marker="o", markersize=5, color=color, linewidth=2.0,
                label=curve.family)
    ax.set_xscale("log")
    ax.set_xlabel("member size (billions of parameters, log scale)")
    ax.set_ylabel(f"{statistic} reward")
    ax.plot([], [], linestyle="--", color=MUTED, label="pool (dashed)")
    ax.plot([], [], linestyle="-", color=MUTED, linewidth=2.0, label="selected (solid)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return png(fig)
