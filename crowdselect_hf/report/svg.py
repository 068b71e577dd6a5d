"""A small SVG plotting layer for the report's figures: a :class:`Figure` of panels side by side,
each an :class:`Axes` with a linear or log x axis, a linear y axis, round-number ticks, and the few
marks the report draws (step histograms, lines, dots, horizontal bars, a raster image, text and
legends). Pure string building on numpy: nothing is imported that the rest of the package does not
already import, and a figure of a million-row pool takes milliseconds.

Everything is laid out in pixels with fixed margins; text width is estimated from its length (the
browser does the typesetting), so margins are generous. Raster layers (density shading) are
embedded as PNGs written by :func:`png_bytes`. A figure becomes a ``data:image/svg+xml`` URI,
shown with an ``<img>`` so that its ids and styles cannot clash with the page.

Example:
    >>> fig = Figure(400, 200)
    >>> (ax,) = fig.panels(1)
    >>> ax.limits((0.0, 1.0), (0.0, 2.0))
    >>> ax.stairs(np.array([0.0, 0.5, 1.0]), np.array([1.0, 2.0]), fill="#9AA5B1")
    >>> ax.frame(xlabel="value")
    >>> svg = fig.svg()
    >>> svg.startswith("<svg") and "value" in svg and fig.uri().startswith("data:image/svg+xml;base64,")
    True
"""

from __future__ import annotations

import base64
import html
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .style import GRID, INK, MUTED, POOL_COLOR

FONT = "DejaVu Sans, Helvetica Neue, Helvetica, Arial, sans-serif"
TEXT = 14.5
"""Axis labels and legends, in pixels."""
TICK = 13
TITLE = 16.5
DASH = ' stroke-dasharray="5 4"'
CHAR_WIDTH = 0.6
"""Estimated width of one character as a share of the font size (DejaVu Sans is wide)."""


def text_width(text: str, size: float = TEXT) -> float:
    """A generous estimate of ``text``'s width in pixels."""
    return CHAR_WIDTH * size * len(text)


def esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def num(v: float) -> str:
    """A coordinate, to 0.1 pixel; marks drop non-finite points before they get here."""
    if not math.isfinite(v):
        raise ValueError(f"non-finite SVG coordinate {v!r}")
    return f"{v:.1f}".rstrip("0").rstrip(".")


# -- ticks -----------------------------------------------------------------------------------------

def linear_ticks(lo: float, hi: float, n: int = 6) -> tuple[np.ndarray, int]:
    """Round-number ticks in ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 × 10ⁿ, at most ``n`` + 1 of
    them) and the decimals their labels need.

    Example:
        >>> ticks, decimals = linear_ticks(0.03, 0.91)
        >>> ticks.tolist(), decimals
        ([0.2, 0.4, 0.6, 0.8], 1)
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return np.array([lo]), 2
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = m * mag
        if step >= raw:
            break
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    ticks = np.arange(first, last + 1) * step
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if m == 2.5 else 0)
    return np.round(ticks, decimals + 2), decimals


def log_ticks(lo: float, hi: float) -> np.ndarray:
    """Ticks of a log axis over ``[lo, hi]`` (``lo > 0``): the powers of ten, with 2× and 5× them
    when the range spans fewer than three decades.

    Example:
        >>> log_ticks(0.5, 80).tolist()
        [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    """
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1.0, 2.0, 5.0) if math.log10(hi / lo) < 3 else (1.0,)
    ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in steps]
    return np.array([t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)])


def tick_label(v: float, decimals: int) -> str:
    text = f"{v:,.{decimals}f}"
    return "0" if text.lstrip("-") == f"{0:.{decimals}f}" else text


def log_tick_label(v: float) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:g}"


# -- raster images ---------------------------------------------------------------------------------

def png_bytes(rgba: np.ndarray) -> bytes:
    """An ``[height, width, 4]`` uint8 RGBA array (first row on top) as PNG bytes."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w, _ = rgba.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgba.reshape(h, w * 4)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def rgb(color: str) -> tuple[int, int, int]:
    """``"#RRGGBB"`` as integers."""
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


# -- figure and axes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Box:
    """A plot area in pixels from the figure's top left."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class LegendEntry:
    """One legend row: ``kind`` is ``"patch"``, ``"line"`` or ``"dot"``."""

    label: str
    color: str
    kind: str = "patch"
    dash: bool = False
    outline: str | None = None
    opacity: float = 1.0


class Figure:
    """A ``width`` × ``height`` pixel SVG holding panels side by side.

    Args:
        width, height: the figure's size in pixels.
    """

    def __init__(self, width: float, height: float):
        self.width, self.height = float(width), float(height)
        self.axes: list[Axes] = []

    def panels(self, ncols: int = 1, *, left: float = 58, right: float = 18, top: float = 34, bottom: float = 52,
               gap: float = 56) -> list["Axes"]:
        """``ncols`` axes of equal width in one row, inside the given margins (pixels)."""
        w = (self.width - left - right - gap * (ncols - 1)) / ncols
        h = self.height - top - bottom
        made = [Axes(self, Box(left + i * (w + gap), top, w, h), len(self.axes) + i) for i in range(ncols)]
        self.axes.extend(made)
        return made

    def svg(self) -> str:
        body = "".join(ax.render() for ax in self.axes)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(self.width)}" height="{num(self.height)}" '
                f'viewBox="0 0 {num(self.width)} {num(self.height)}" font-family="{FONT}" font-size="{TEXT}">'
                f'<rect width="100%" height="100%" fill="#fff"/>{body}</svg>')

    def uri(self) -> str:
        """The figure as a base64 ``data:image/svg+xml`` URI."""
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg().encode("utf-8")).decode("ascii")


@dataclass
class _Scale:
    lo: float
    hi: float
    log: bool = False

    def fraction(self, v):
        v = np.asarray(v, dtype=np.float64)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                return (np.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)


class Axes:
    """One panel: marks drawn in data coordinates, clipped to the plot area.

    Call :meth:`limits` first, then the marks, then :meth:`frame` for the ticks and labels.
    """

    def __init__(self, figure: Figure, box: Box, index: int):
        self.figure, self.box, self.index = figure, box, index
        self.x = _Scale(0.0, 1.0)
        self.y = _Scale(0.0, 1.0)
        self.under: list[str] = []
        self.marks: list[str] = []
        self.over: list[str] = []

    # coordinates
    def limits(self, xlim: tuple[float, float], ylim: tuple[float, float], *, xlog: bool = False) -> None:
        """The data ranges shown; a log x axis needs ``xlim[0] > 0``."""
        def widen(lo, hi):
            lo, hi = float(lo), float(hi)
            if hi > lo:
                return lo, hi
            return (lo / 2, hi * 2) if xlog and lo > 0 else (lo - 0.5, hi + 0.5)
        self.x = _Scale(*widen(*xlim), log=xlog)
        self.y = _Scale(*widen(*ylim))

    def px(self, x) -> np.ndarray:
        return self.box.x + self.x.fraction(x) * self.box.w

    def py(self, y) -> np.ndarray:
        return self.box.y + (1.0 - self.y.fraction(y)) * self.box.h

    # marks
    def stairs(self, edges: np.ndarray, values: np.ndarray, *, fill: str | None = None, stroke: str | None = None,
               opacity: float = 1.0, width: float = 1.8) -> None:
        """A step curve over ``edges`` (``len(values) + 1`` of them), filled down to 0 with ``fill``."""
        xs, ys, y0 = self.px(edges), self.py(values), float(self.py(0.0))
        steps = "".join(f"L{num(a)} {num(y)}L{num(b)} {num(y)}" for a, b, y in zip(xs[:-1], xs[1:], ys))
        outline = f"M{num(xs[0])} {num(y0)}{steps}L{num(xs[-1])} {num(y0)}"
        if fill:
            self.marks.append(f'<path d="{outline}Z" fill="{fill}" fill-opacity="{opacity:g}"/>')
        if stroke:
            self.marks.append(f'<path d="{outline}" fill="none" stroke="{stroke}" stroke-width="{width:g}" '
                              f'stroke-linejoin="round"/>')

    def vline(self, x: float, color: str, *, dash: bool = False, width: float = 1.0, opacity: float = 1.0) -> None:
        x = num(float(self.px(x)))
        self.marks.append(f'<line x1="{x}" x2="{x}" y1="{num(self.box.y)}" y2="{num(self.box.y + self.box.h)}" '
                          f'stroke="{color}" stroke-width="{width:g}" stroke-opacity="{opacity:g}"'
                          f'{DASH if dash else ""}/>')

    def hline(self, y: float, color: str, *, width: float = 1.0) -> None:
        y = num(float(self.py(y)))
        self.marks.append(f'<line x1="{num(self.box.x)}" x2="{num(self.box.x + self.box.w)}" y1="{y}" y2="{y}" '
                          f'stroke="{color}" stroke-width="{width:g}"/>')

    def line(self, xs, ys, color: str, *, width: float = 1.5, dash: bool = False, opacity: float = 1.0,
             marker: float = 0.0, marker_fill: str | None = None) -> None:
        """A polyline through the finite points, with round markers of radius ``marker`` pixels."""
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if self.x.log:
            ok &= xs > 0
        px, py = self.px(xs[ok]), self.py(ys[ok])
        if px.size > 1 and width > 0:
            pts = " ".join(f"{num(a)},{num(b)}" for a, b in zip(px, py))
            self.marks.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width:g}" '
                              f'stroke-opacity="{opacity:g}" stroke-linejoin="round" stroke-linecap="round"'
                              f'{DASH if dash else ""}/>')
        if marker > 0 and px.size:
            self.dots(xs[ok], ys[ok], marker, fill=marker_fill or color, stroke=color,
                      stroke_width=2.0 if marker_fill else 0.0, opacity=opacity, pixels=(px, py))

    def dots(self, xs, ys, r: float, *, fill: str, stroke: str | None = None, stroke_width: float = 0.0,
             opacity: float = 1.0, pixels: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Circles of radius ``r`` pixels at the points, one group per call."""
        px, py = pixels if pixels is not None else (self.px(xs), self.py(ys))
        keep = np.isfinite(px) & np.isfinite(py)
        px, py = px[keep], py[keep]
        if not len(px):
            return
        stroke_attr = f' stroke="{stroke}" stroke-width="{stroke_width:g}"' if stroke and stroke_width else ""
        rr = num(r)
        circles = "".join(f'<circle cx="{num(a)}" cy="{num(b)}" r="{rr}"/>' for a, b in zip(px, py))
        self.marks.append(f'<g fill="{fill}" fill-opacity="{opacity:g}"{stroke_attr}>{circles}</g>')

    def barh(self, ys, widths, height: float, color: str) -> None:
        """Horizontal bars from 0, centred on ``ys`` (data units), ``height`` data units thick."""
        x0 = float(self.px(0.0))
        parts = []
        for y, w in zip(np.asarray(ys, dtype=np.float64), np.asarray(widths, dtype=np.float64)):
            if not (math.isfinite(w) and w > 0):
                continue
            top, bottom = float(self.py(y + height / 2)), float(self.py(y - height / 2))
            parts.append(f'<rect x="{num(x0)}" y="{num(top)}" width="{num(float(self.px(w)) - x0)}" '
                         f'height="{num(bottom - top)}"/>')
        self.marks.append(f'<g fill="{color}">{"".join(parts)}</g>')

    def raster(self, rgba: np.ndarray, extent: tuple[float, float, float, float]) -> None:
        """An ``[ny, nx, 4]`` uint8 RGBA grid whose first row is the *bottom* (``y0``), stretched
        over ``extent = (x0, x1, y0, y1)`` with each cell drawn as a flat block."""
        x0, x1, y0, y1 = extent
        left, right = float(self.px(x0)), float(self.px(x1))
        top, bottom = float(self.py(y1)), float(self.py(y0))
        data = base64.b64encode(png_bytes(rgba[::-1])).decode("ascii")
        self.marks.append(f'<image x="{num(left)}" y="{num(top)}" width="{num(right - left)}" height="{num(bottom - top)}" '
                          f'preserveAspectRatio="none" style="image-rendering:pixelated" '
                          f'href="data:image/png;base64,{data}"/>')

    def text(self, x: float, y: float, text: str, *, color: str = INK, size: float = TEXT, anchor: str = "start",
             weight: str = "normal", data: bool = True, dx: float = 0.0, dy: float = 0.0) -> None:
        """Text at a data point (``data=True``) or at axes fractions from the bottom left."""
        if data:
            px, py = float(self.px(x)), float(self.py(y))
        else:
            px, py = self.box.x + x * self.box.w, self.box.y + (1 - y) * self.box.h
        self.over.append(f'<text x="{num(px + dx)}" y="{num(py + dy)}" fill="{color}" font-size="{size:g}" '
                         f'text-anchor="{anchor}" font-weight="{weight}" dominant-baseline="middle">{esc(text)}</text>')

    def message(self, text: str) -> None:
        """A grey note in the middle of an empty panel."""
        self.text(0.5, 0.5, text, color=MUTED, anchor="middle", data=False)

    # furniture
    def frame(self, *, title: str = "", xlabel: str = "", ylabel: str = "", xticks: bool = True, yticks: bool = True,
              xgrid: bool = True, ygrid: bool = True, xformat: Callable[[float], str] | None = None,
              ylabels: Sequence[tuple[float, str]] | None = None) -> None:
        """Spines (left and bottom), ticks, grid lines, the title and the axis labels.

        Args:
            xformat: how x tick values are written (default: as many decimals as the step needs).
            ylabels: ``(y, text)`` category labels instead of numeric y ticks.
        """
        b = self.box
        if xticks:
            if self.x.log:
                ticks, labels = log_ticks(self.x.lo, self.x.hi), None
                labels = [xformat(t) if xformat else log_tick_label(t) for t in ticks]
            else:
                ticks, decimals = linear_ticks(self.x.lo, self.x.hi)
                labels = [xformat(t) if xformat else tick_label(t, decimals) for t in ticks]
            for t, label in zip(ticks, labels):
                x = num(float(self.px(t)))
                if xgrid:
                    self.under.append(f'<line x1="{x}" x2="{x}" y1="{num(b.y)}" y2="{num(b.y + b.h)}" stroke="{GRID}"/>')
                self.over.append(f'<line x1="{x}" x2="{x}" y1="{num(b.y + b.h)}" y2="{num(b.y + b.h + 5)}" stroke="{MUTED}"/>'
                                 f'<text x="{x}" y="{num(b.y + b.h + 19)}" fill="{MUTED}" font-size="{TICK}" '
                                 f'text-anchor="middle">{esc(label)}</text>')
        numeric = ylabels is None
        if numeric:
            ticks, decimals = linear_ticks(self.y.lo, self.y.hi, 5)
            ylabels = [(t, tick_label(t, decimals)) for t in ticks] if yticks else []
        for t, label in ylabels:
            y = num(float(self.py(t)))
            if numeric:
                if ygrid:
                    self.under.append(f'<line x1="{num(b.x)}" x2="{num(b.x + b.w)}" y1="{y}" y2="{y}" stroke="{GRID}"/>')
                self.over.append(f'<line x1="{num(b.x - 5)}" x2="{num(b.x)}" y1="{y}" y2="{y}" stroke="{MUTED}"/>')
            self.over.append(f'<text x="{num(b.x - 8)}" y="{y}" fill="{MUTED}" font-size="{TICK}" text-anchor="end" '
                             f'dominant-baseline="middle">{esc(label)}</text>')
        widest = max((text_width(label, TICK) for _, label in ylabels), default=0.0)
        self.over.append(f'<path d="M{num(b.x)} {num(b.y)}V{num(b.y + b.h)}H{num(b.x + b.w)}" fill="none" '
                         f'stroke="{POOL_COLOR}"/>')
        if title:
            self.over.append(f'<text x="{num(b.x)}" y="{num(b.y - 12)}" fill="{INK}" font-size="{TITLE}" '
                             f'font-weight="bold">{esc(title)}</text>')
        if xlabel:
            self.over.append(f'<text x="{num(b.x + b.w / 2)}" y="{num(b.y + b.h + (40 if xticks else 20))}" fill="{INK}" '
                             f'text-anchor="middle">{esc(xlabel)}</text>')
        if ylabel:
            x = b.x - (widest + 22 if widest else 14)
            y = b.y + b.h / 2
            self.over.append(f'<text x="{num(x)}" y="{num(y)}" fill="{INK}" text-anchor="middle" '
                             f'transform="rotate(-90 {num(x)} {num(y)})">{esc(ylabel)}</text>')

    def legend(self, entries: Sequence[LegendEntry], loc: str = "upper left", *, size: float = TEXT,
               spacing: float = 1.45) -> None:
        """A legend inside the plot area (``"upper left"``, ``"upper right"``, ``"lower right"``) or
        beside it (``"outside right"``, vertically centred)."""
        if not entries:
            return
        row = size * spacing
        width = 30 + max(text_width(e.label, size) for e in entries)
        height = row * len(entries)
        b = self.box
        if loc == "outside right":
            x, y = b.x + b.w + 14, b.y + (b.h - height) / 2
        elif loc == "upper right":
            x, y = b.x + b.w - width - 6, b.y + 6
        elif loc == "lower right":
            x, y = b.x + b.w - width - 6, b.y + b.h - height - 6
        else:
            x, y = b.x + 10, b.y + 6
        parts = []
        for i, e in enumerate(entries):
            cy = y + row * (i + 0.5)
            if e.kind == "line":
                parts.append(f'<line x1="{num(x)}" x2="{num(x + 22)}" y1="{num(cy)}" y2="{num(cy)}" stroke="{e.color}" '
                             f'stroke-width="2"{DASH if e.dash else ""}/>')
            elif e.kind == "dot":
                outline = f' stroke="{e.outline}" stroke-width="1.2"' if e.outline else ""
                parts.append(f'<circle cx="{num(x + 11)}" cy="{num(cy)}" r="5.5" fill="{e.color}"{outline}/>')
            else:
                parts.append(f'<rect x="{num(x + 3)}" y="{num(cy - 6)}" width="16" height="12" rx="2" fill="{e.color}" '
                             f'fill-opacity="{e.opacity:g}"/>')
            parts.append(f'<text x="{num(x + 30)}" y="{num(cy)}" fill="{INK}" font-size="{size:g}" '
                         f'dominant-baseline="middle">{esc(e.label)}</text>')
        self.over.append("".join(parts))

    def render(self) -> str:
        b = self.box
        clip = f"clip{self.index}"
        return (f'<defs><clipPath id="{clip}"><rect x="{num(b.x)}" y="{num(b.y)}" width="{num(b.w)}" '
                f'height="{num(b.h)}"/></clipPath></defs>' + "".join(self.under)
                + f'<g clip-path="url(#{clip})">{"".join(self.marks)}</g>' + "".join(self.over))
