"""The report's figures, drawn as SVG by :mod:`.svg` and each returned as a ``data:`` URI. No HTML
here, and no plotting library: the figures of a million-row pool are binned with numpy and drawn
in milliseconds.
"""

from __future__ import annotations

import numpy as np

from .data import METRICS, PoolData
from .style import CLUSTER_COLORS, GRID, MUTED, POOL_COLOR, SELECTED_COLOR
from .summaries import metric_pairs
from .svg import Axes, Figure, LegendEntry, text_width

MAX_OVERLAY_POINTS = 4_000
"""At most this many selected rows are drawn over a density (a seeded random subset beyond)."""
WIDTH = 1210
"""Width of the page's figures in pixels (they are scaled to the page's width)."""
POOL_MEDIAN = "#52606D"
POOL_AND_SELECTED = (LegendEntry("pool", POOL_COLOR, opacity=0.55), LegendEntry("selected", SELECTED_COLOR, kind="line"))


def _hist_pair(ax: Axes, values: np.ndarray | None, selected: np.ndarray, *, label: str = "", log: bool = False,
               title: str = "", ylabel: str = "") -> bool:
    """Pool vs selected densities on shared bins (log-spaced with ``log``, over positive values),
    dashed lines at the medians; ``False`` when there is nothing to draw."""
    finite = np.isfinite(values) if values is not None else None
    if finite is not None and log:
        finite &= values > 0
    if finite is None or not finite.any():
        ax.message("column missing" if values is None else "no finite values")
        ax.frame(title=title, xticks=False, yticks=False)
        return False
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if lo == hi:
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    bins = np.geomspace(lo, hi, 31) if log else np.linspace(lo, hi, 31)
    pool_density, _ = np.histogram(values[finite], bins=bins, density=True)
    sel = values[finite & selected]
    sel_density = np.histogram(sel, bins=bins, density=True)[0] if sel.size else None
    top = max(float(pool_density.max()), float(sel_density.max()) if sel_density is not None else 0.0) * 1.08 or 1.0
    ax.limits((lo, hi), (0.0, top), xlog=log)
    ax.stairs(bins, pool_density, fill=POOL_COLOR, opacity=0.55)
    if sel_density is not None:
        ax.stairs(bins, sel_density, fill=SELECTED_COLOR, opacity=0.25)
        ax.stairs(bins, sel_density, stroke=SELECTED_COLOR, width=1.8)
        ax.vline(float(np.median(sel)), SELECTED_COLOR, dash=True)
    ax.vline(float(np.median(values[finite])), POOL_MEDIAN, dash=True)
    ax.frame(title=title, xlabel=label, ylabel=ylabel, yticks=False)
    return True


def metrics_figure(d: PoolData) -> str:
    """One histogram per crowd metric, pool vs selected."""
    fig = Figure(WIDTH, 330)
    axes = fig.panels(3, left=40, gap=44)
    legend_done = False
    for i, (ax, (name, label, _)) in enumerate(zip(axes, METRICS)):
        drawn = _hist_pair(ax, d.metrics[name], d.selected, title=label, ylabel="density" if i == 0 else "")
        if drawn and not legend_done:
            ax.legend(POOL_AND_SELECTED)
            legend_done = True
    return fig.uri()


def score_figure(d: PoolData, label: str) -> str:
    """The ranking score (``crowd_combined``), pool vs selected, with the lowest selected value."""
    fig = Figure(WIDTH, 308)
    (ax,) = fig.panels(1, left=40, top=16)
    _hist_pair(ax, d.score, d.selected, label=label, ylabel="density")
    sel = d.score[d.selected & np.isfinite(d.score)] if d.score is not None else np.empty(0)
    if sel.size:
        low = float(sel.min())
        ax.vline(low, SELECTED_COLOR, opacity=0.6)
        # Left of the line, near the top; right of it and below the legend when the line is at the far left.
        left_edge = float(ax.x.fraction(low)) < 0.25
        ax.text(low, ax.y.lo + (0.7 if left_edge else 0.92) * (ax.y.hi - ax.y.lo), "lowest selected",
                color=SELECTED_COLOR, size=12.5, anchor="start" if left_edge else "end", dx=4 if left_edge else -4)
    ax.legend(POOL_AND_SELECTED)
    return fig.uri()


def best_figure(names: list[str], pool_share: np.ndarray, sel_share: np.ndarray, breaks: list[int]) -> str:
    """Per crowd member, the share of pool and of selected rows where its answer was the best."""
    shown = [n if len(n) <= 34 else n[:31] + "…" for n in names]
    fig = Figure(WIDTH, max(0.34 * len(names) + 1.2, 2.6) * 110)
    (ax,) = fig.panels(1, left=24 + max((text_width(n, 13) for n in shown), default=40), right=24, top=14, bottom=56)
    y = np.arange(len(names))[::-1].astype(np.float64)
    top = max(float(np.nanmax(pool_share)) if len(names) else 0.0, float(np.nanmax(sel_share)) if len(names) else 0.0)
    ax.limits((0.0, (top or 1.0) * 1.12), (-0.6, len(names) - 0.4))
    ax.barh(y + 0.19, pool_share, 0.38, POOL_COLOR)
    ax.barh(y - 0.19, sel_share, 0.38, SELECTED_COLOR)
    for i in breaks:
        ax.hline(y[i] + 0.5, GRID, width=1.2)
    for yy, v in zip(y - 0.19, sel_share):
        if v > 0:
            ax.text(float(v), float(yy), f" {v:.1f}%", color=SELECTED_COLOR, size=11.5)
    ax.frame(xlabel="share of rows where this member's answer had the highest reward (%)",
             ylabels=list(zip(y.tolist(), shown)))
    ax.legend((LegendEntry("pool", POOL_COLOR), LegendEntry("selected", SELECTED_COLOR)), "lower right")
    return fig.uri()


def relations_figure(d: PoolData) -> str:
    """Each pair of crowd metrics: the pool as a density (darker = more rows), selected rows on top."""
    pairs = metric_pairs(d)
    labels = {name: label for name, label, _ in METRICS}
    fig = Figure(WIDTH, 374)
    axes = fig.panels(max(len(pairs), 1), left=70, gap=84, top=16, bottom=56)
    rng = np.random.default_rng(0)
    drawn = False
    for ax, (a, b) in zip(axes, pairs):
        x, y = d.metrics[a], d.metrics[b]
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            ax.message("no finite values")
            ax.frame(xticks=False, yticks=False, xlabel=labels[a], ylabel=labels[b])
            continue
        extent = (*_span(x[ok]), *_span(y[ok]))
        ax.limits(extent[:2], extent[2:])
        ax.raster(_greys(_grid_counts(x[ok], y[ok], extent, 60)), extent)
        sel = np.flatnonzero(ok & d.selected)
        if sel.size > MAX_OVERLAY_POINTS:
            sel = rng.choice(sel, MAX_OVERLAY_POINTS, replace=False)
        ax.dots(x[sel], y[sel], 2.6, fill=SELECTED_COLOR, opacity=0.55)
        ax.frame(xlabel=labels[a], ylabel=labels[b], xgrid=False, ygrid=False)
        if not drawn:
            ax.legend((LegendEntry("selected", SELECTED_COLOR, kind="dot"),))
            drawn = True
    return fig.uri()


def _greys(counts: np.ndarray) -> np.ndarray:
    """RGBA of a count grid: darker where more rows fall (log scale), transparent where none."""
    shade = np.log1p(counts)
    top = float(shade.max()) or 1.0
    t = (shade + 0.6) / (top + 0.6)  # as matplotlib's Greys with vmin=-0.6: one row is already a light grey
    grey = np.round(247 - 207 * t).astype(np.uint8)
    rgba = np.empty((*counts.shape, 4), dtype=np.uint8)
    rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = grey
    rgba[..., 3] = np.where(counts > 0, 255, 0)
    return rgba


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
    fig = Figure(WIDTH, 330)
    left, right = fig.panels(2, left=40, gap=44)
    if _hist_pair(left, d.best_reward, d.selected, label="reward of the best answer", title="Best reward",
                  ylabel="density"):
        left.legend(POOL_AND_SELECTED)
    if d.best_bytes is None:
        right.message("the pool table holds no best-answer lengths")
        right.frame(title="Best answer length", xticks=False, yticks=False)
    else:
        _hist_pair(right, d.best_bytes, d.selected, label="UTF-8 bytes of the best answer (log scale)", log=True,
                   title="Best answer length")
    return fig.uri()


def families_figure(curves, statistic: str) -> str:
    """Per family, the reward statistic by member size: pool dashed, selected solid."""
    entries = [LegendEntry(c.family, CLUSTER_COLORS[i % len(CLUSTER_COLORS)], kind="line") for i, c in enumerate(curves)]
    entries += [LegendEntry("pool (dashed)", MUTED, kind="line", dash=True), LegendEntry("selected (solid)", MUTED, kind="line")]
    fig = Figure(WIDTH, 418)
    (ax,) = fig.panels(1, left=76, top=16, right=44 + max(text_width(e.label) for e in entries))
    sizes = np.concatenate([np.asarray(c.sizes, dtype=np.float64) for c in curves]) if curves else np.array([1.0])
    values = np.concatenate([np.asarray(v, dtype=np.float64) for c in curves for v in (c.pool, c.selected)]) \
        if curves else np.array([0.0])
    sizes, values = sizes[np.isfinite(sizes) & (sizes > 0)], values[np.isfinite(values)]
    lo, hi = (float(sizes.min()), float(sizes.max())) if sizes.size else (1.0, 10.0)
    vlo, vhi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = (vhi - vlo) * 0.08 or 0.5
    ax.limits((lo / 1.25, hi * 1.25), (vlo - pad, vhi + pad), xlog=True)
    for i, curve in enumerate(curves):
        color = CLUSTER_COLORS[i % len(CLUSTER_COLORS)]
        ax.line(curve.sizes, curve.pool, color, width=1.2, dash=True, opacity=0.7, marker=3.5)
        ax.line(curve.sizes, curve.selected, color, width=2.0, marker=4.5)
    ax.frame(xlabel="member size (billions of parameters, log scale)", ylabel=f"{statistic} reward")
    ax.legend(entries, "outside right")
    return fig.uri()
