"""The instruction map: the pool's 2-D PCA coordinates coloured by cluster, selected rows on top,
and where given rows land in the image (for the hover text).

Up to :data:`MAX_MAP_POINTS` pool rows are drawn as dots; a larger pool is drawn as density
shading instead: the map is cut into a grid of cells, each coloured by its most common cluster,
more opaque where more rows fall (log scale). Selected rows are dots either way (a seeded subset
of :data:`MAX_SELECTED_POINTS` beyond that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import PoolData
from .figures import WIDTH
from .labels import ClusterLabels
from .style import INK, UNCLUSTERED_COLOR, cluster_color
from .svg import Figure, LegendEntry, rgb, text_width

MAX_MAP_POINTS = 20_000
MAX_SELECTED_POINTS = 20_000
GRID_CELLS = (300, 170)
LEGEND_CHARS = 34
LEGEND_SIZE = 13.0


@dataclass(frozen=True)
class MapImage:
    """The drawn map.

    Attributes:
        uri: the SVG as a ``data:`` URI.
        mode: ``"points"`` or ``"density"`` (how the unselected rows were drawn).
        x, y: for each row asked for, its position in the image as a fraction of the image's width
            and height (from the top left).
        n_selected_drawn: selected rows drawn as dots.
    """

    uri: str
    mode: str
    x: np.ndarray
    y: np.ndarray
    n_selected_drawn: int


def map_mode(d: PoolData) -> str:
    """How the unselected rows are drawn: ``"points"`` up to :data:`MAX_MAP_POINTS`, else ``"density"``."""
    ok = np.isfinite(d.map_x) & np.isfinite(d.map_y)
    return "density" if int((ok & ~d.selected).sum()) > MAX_MAP_POINTS else "points"


def axis_label(d: PoolData, i: int) -> str:
    """``PC 1 (12.3% of variance)``, or ``PC 1`` when the pool table does not record it."""
    if d.map_variance is None:
        return f"PC {i + 1}"
    return f"PC {i + 1} ({d.map_variance[i]:.1%} of variance)"


def map_figure(d: PoolData, labels: ClusterLabels, rows: np.ndarray) -> MapImage:
    """Draw the map; ``rows`` are the pool rows whose image positions are returned."""
    ok = np.isfinite(d.map_x) & np.isfinite(d.map_y)
    cluster = d.cluster if d.cluster is not None else np.full(d.n, -1, dtype=np.int64)
    clusters = d.cluster_labels()
    mode = map_mode(d)
    background = np.flatnonzero(ok & ~d.selected)
    chosen = np.flatnonzero(ok & d.selected)
    if chosen.size > MAX_SELECTED_POINTS:
        chosen = np.sort(np.random.default_rng(0).choice(chosen, MAX_SELECTED_POINTS, replace=False))
    entries = []
    for c in clusters:
        text = labels.text(c)
        if len(text) > LEGEND_CHARS:
            text = text[: LEGEND_CHARS - 1] + "…"
        entries.append(LegendEntry(f"{c}  {text}" if text else f"cluster {c}", cluster_color(c), kind="dot"))
    if chosen.size:
        entries.append(LegendEntry("selected", "#FFFFFF", kind="dot", outline=INK))
    fig = Figure(WIDTH, max(5.2, 0.235 * len(clusters) + 1.2) * 110)
    right = 40 + max((text_width(e.label, LEGEND_SIZE) for e in entries), default=0.0)
    (ax,) = fig.panels(1, left=34, right=right, top=12, bottom=36)
    x0, x1 = _span(d.map_x[ok])
    y0, y1 = _span(d.map_y[ok])
    ax.limits((x0, x1), (y0, y1))
    if mode == "density":
        ax.raster(_density(d.map_x[background], d.map_y[background], cluster[background], (x0, x1, y0, y1)),
                  (x0, x1, y0, y1))
        radius = 1.3
    else:
        radius = float(np.clip(np.sqrt(3000 / max(background.size, 1)) * 0.77, 1.3, 2.9))
        for c in [-1, *clusters]:
            idx = background[cluster[background] == c]
            ax.dots(d.map_x[idx], d.map_y[idx], radius, fill=cluster_color(c), opacity=0.6 if c < 0 else 0.45)
    for c in np.unique(cluster[chosen]):
        idx = chosen[cluster[chosen] == c]
        ax.dots(d.map_x[idx], d.map_y[idx], max(radius * 1.6, 3.6), fill=cluster_color(int(c)), stroke=INK,
                stroke_width=1.3)
    ax.frame(xlabel=axis_label(d, 0), ylabel=axis_label(d, 1), xticks=False, yticks=False)
    ax.legend(entries, "outside right", size=LEGEND_SIZE, spacing=1.5)
    rows = np.asarray(rows, dtype=np.int64)
    return MapImage(fig.uri(), mode, ax.px(d.map_x[rows]) / fig.width, ax.py(d.map_y[rows]) / fig.height,
                    int(chosen.size))


def _span(v: np.ndarray) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    pad = (hi - lo) * 0.03 or 0.5
    return lo - pad, hi + pad


def _density(x: np.ndarray, y: np.ndarray, cluster: np.ndarray, extent: tuple[float, float, float, float]) -> np.ndarray:
    """A uint8 RGBA grid (first row at the bottom): each cell the colour of its most common cluster,
    opacity ∝ log(rows in it)."""
    nx, ny = GRID_CELLS
    x0, x1, y0, y1 = extent
    ix = np.clip(((x - x0) / (x1 - x0) * nx).astype(np.int64), 0, nx - 1)
    iy = np.clip(((y - y0) / (y1 - y0) * ny).astype(np.int64), 0, ny - 1)
    cell = iy * nx + ix
    labels = np.unique(cluster)
    code = np.searchsorted(labels, cluster)
    counts = np.bincount(cell * labels.size + code, minlength=nx * ny * labels.size).reshape(nx * ny, labels.size)
    total = counts.sum(axis=1)
    colours = np.array([rgb(cluster_color(int(c)) if c >= 0 else UNCLUSTERED_COLOR) for c in labels], dtype=np.float64)
    rgba = np.zeros((nx * ny, 4))
    rgba[:, :3] = colours[counts.argmax(axis=1)]
    top = np.log1p(total.max()) if total.size else 1.0
    rgba[:, 3] = np.where(total > 0, 255 * (0.25 + 0.75 * np.log1p(total) / top), 0.0)
    return np.round(rgba).astype(np.uint8).reshape(ny, nx, 4)
