"""The report's HTML page: the header, the navigation and the sections, in the order of
:data:`SECTIONS`.

A section is a function of the page's :class:`~.context.ReportContext` that returns one
``<section>``, or ``""`` to leave it out (and out of the navigation); adding one to the report
is one entry in :data:`SECTIONS`. Everything shown is
HTML-escaped; the only script is the map's hover text (inline data and a few lines of plain
JavaScript); the page loads nothing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..record import SelectionRecord
from ..version import __version__
from . import comparison, review, sections
from .context import ReportContext
from .data import PoolData, crowd_members
from .markup import chip, weights_text
from .style import CSS


@dataclass(frozen=True)
class Section:
    """One section of the page: its anchor id, its navigation label and the function that builds it."""

    id: str
    nav: str
    build: Callable[[ReportContext], str]


SECTIONS: tuple[Section, ...] = (
    Section("metrics", "Metrics", sections.metrics),
    Section("relations", "Relations", review.relations),
    Section("score", "Score", sections.score),
    Section("answers", "Answers", review.answers),
    Section("families", "Families", review.families),
    Section("map", "Map", sections.instruction_map),
    Section("quotas", "Quotas", sections.quotas),
    Section("best", "Best answers", sections.best),
    Section("samples", "Samples", sections.samples),
    Section("rejected", "Rejected", review.rejected),
    Section("comparison", "Comparison", comparison.section),
    Section("summary", "Summary", sections.summary),
)
"""The page's sections, in page order."""


def render_page(d: PoolData, record: SelectionRecord, sample_rows: Sequence[Mapping[str, Any]], title: str | None,
                plots: bool = True, config_dir: Path | None = None) -> str:
    ctx = ReportContext.build(d, record, sample_rows, plots, config_dir)
    built = [(s, s.build(ctx)) for s in SECTIONS]
    shown = [(s, b) for s, b in built if b]
    body = [b for _, b in shown]
    heading = "CrowdSelect report" + (f" — {title}" if title else "")
    nav = "".join(f"<a href='#{s.id}'>{s.nav}</a>" for s, _ in shown)
    scripts = "the map's hover text is inline data and a few lines of script" if plots and "id='map-data'" in "".join(body) \
        else "no scripts"
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{html.escape(heading)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><div class='wrap'><h1>{html.escape(heading)}</h1>"
        "<p class='sub'>Instruction data chosen with the wisdom of a crowd of LLMs "
        "(CrowdSelect, arXiv 2503.01836)</p>"
        f"<div class='chips'>{''.join(chip(k, v) for k, v in chips(record))}</div></div></header>\n"
        f"<nav><div class='wrap'>{nav}</div></nav>\n"
        f"<main class='wrap'><div class='stats'>{_stats(record)}</div>\n" + "\n".join(body) + "</main>\n"
        f"<footer class='wrap'>selected by crowdselect-hf {html.escape(record.package_version)}, reported by "
        f"crowdselect-hf {html.escape(__version__)}{'' if plots else ' · figures omitted'} · "
        f"self-contained page: no external resources; {scripts}</footer>\n</body>\n</html>\n"
    )


def chips(record: SelectionRecord) -> list[tuple[str, str]]:
    """(label, value) of the header chips: only the parameters that applied to the strategy."""
    out = [("strategy", record.strategy), ("k", f"{record.k:,}"), ("ranked by", record.ranked_by)]
    if record.clustering is not None:
        out += [("clusters", str(record.clustering.n_clusters)), ("embedder", record.clustering.embedder)]
    if record.weights is not None:
        out.append(("weights", weights_text(record.weights)))
    if record.seed is not None:
        out.append(("seed", str(record.seed)))
    out.append(("reward", record.reward or "unknown"))
    members = crowd_members(record)
    if members:
        out.append(("crowd", f"{len(members)} models · {len({m.get('family') for m in members})} families"))
    return out


def _stats(record: SelectionRecord) -> str:
    no_reward = (record.excluded or {}).get("no_usable_reward")
    stats = [("pool rows", f"{record.n_pool:,}"), ("selected", f"{record.n_selected:,}"),
             ("share", f"{record.n_selected / record.n_pool:.1%}" if record.n_pool else "–"),
             ("clusters", f"{len(record.clusters)}" if record.clusters else "none"),
             ("back-filled", f"{record.n_backfilled:,}"),
             ("rows without reward", f"{no_reward:,}" if no_reward is not None else "–")]
    return "".join(f"<div class='stat'><div class='v'>{html.escape(v)}</div><div class='l'>{html.escape(k)}</div></div>"
                   for k, v in stats)
