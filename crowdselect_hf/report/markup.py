"""Small HTML pieces the report's sections share: a section card, a note, a number, a clipped text.
Everything they put on the page is HTML-escaped."""

from __future__ import annotations

import html
import math
from typing import Any, Iterator, Mapping, Sequence

from .data import METRICS
from .style import cluster_color


def section(sid: str, title: str, body: str) -> str:
    return f"<section id='{sid}' class='card'><h2>{html.escape(title)}</h2>{body}</section>"


def note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def chip(label: str, value: str) -> str:
    return f"<span class='chip'><span class='k'>{html.escape(label)}</span>{html.escape(value)}</span>"


def swatch(cluster: int) -> str:
    return f'<span class="swatch" style="background:{cluster_color(cluster)}"></span>'


def clip(text: str, limit: int, max_lines: int) -> str:
    """At most ``limit`` characters and ``max_lines`` non-blank lines, HTML-escaped."""
    text = text.strip()
    if not text:
        return "<span class='muted'>(empty)</span>"
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    clipped = "\n".join(lines[:max_lines])
    if len(clipped) > limit:
        clipped = clipped[:limit].rstrip()
    more = f" …<span class='muted'> [{len(text):,} chars]</span>" if clipped != "\n".join(lines) else ""
    return html.escape(clipped) + more


def weights_text(weights: Sequence[float]) -> str:
    """``difficulty 1 · separability 1 · stability 2`` (the metrics' names when there are three)."""
    names = [label.lower() for _, label, _ in METRICS]
    if len(weights) == len(names):
        return " · ".join(f"{n} {num(w)}" for n, w in zip(names, weights))
    return "(" + ", ".join(num(w) for w in weights) + ")"


def num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def flatten(d: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in (d.items() if isinstance(d, Mapping) else ()):
        if isinstance(v, Mapping) and v:
            yield from flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def value_text(v: Any) -> str:
    if isinstance(v, float):
        return fmt(v)
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, (Mapping, list, tuple)) for x in v):
            return f"[{len(v)} entries]"
        if len(v) > 12:
            return f"[{len(v)} values] " + ", ".join(value_text(x) for x in v[:6]) + ", …"
        return ", ".join(value_text(x) for x in v) or "[]"
    if v is None:
        return "–"
    return "{}" if isinstance(v, Mapping) else str(v)
