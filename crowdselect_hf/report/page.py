"""The report's HTML: one section per view of the selection, and the page around them.

Every number about the selection itself (parameters, per-cluster counts, pool accounting) is
read from the :class:`~crowdselect_hf.record.SelectionRecord`, the same fields the dataset card
renders; the pool table only supplies per-row values (medians, figures). Everything shown is
HTML-escaped; the page has no script and loads nothing.
"""

from __future__ import annotations

import contextlib
import html
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..record import SelectionRecord
from ..version import __version__
from . import figures
from .data import METRICS, PoolData, best_answer_shares, crowd_members, median, sample_texts
from .style import CSS, cluster_color

SECTIONS = (("metrics", "Metrics"), ("score", "Score"), ("map", "Map"), ("quotas", "Quotas"), ("best", "Best answers"),
            ("samples", "Samples"), ("summary", "Summary"))
"""(id, navigation label) of each section, in page order."""


def render_page(d: PoolData, record: SelectionRecord, sample_rows: Sequence[Mapping[str, Any]], title: str | None,
                plots: bool = True) -> str:
    draw = _Draw(plots)
    with figures.style() if plots else contextlib.nullcontext():
        sections = [section_metrics(d, draw), section_score(d, record, draw), section_map(d, draw), section_quotas(d, record),
                    section_best(d, record, draw), section_samples(sample_rows), section_summary(record)]
    heading = "CrowdSelect report" + (f" — {title}" if title else "")
    nav = "".join(f"<a href='#{sid}'>{label}</a>" for sid, label in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{html.escape(heading)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><div class='wrap'><h1>{html.escape(heading)}</h1>"
        "<p class='sub'>Instruction data chosen with the wisdom of a crowd of LLMs "
        "(CrowdSelect, arXiv 2503.01836)</p>"
        f"<div class='chips'>{''.join(_chip(k, v) for k, v in chips(record))}</div></div></header>\n"
        f"<nav><div class='wrap'>{nav}</div></nav>\n"
        f"<main class='wrap'><div class='stats'>{_stats(record)}</div>\n" + "\n".join(sections) + "</main>\n"
        f"<footer class='wrap'>selected by crowdselect-hf {html.escape(record.package_version)}, reported by "
        f"crowdselect-hf {html.escape(__version__)}{'' if plots else ' · figures omitted'} · "
        "self-contained page: no external resources, no scripts</footer>\n</body>\n</html>\n"
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


# -- sections -------------------------------------------------------------------------------------

class _Draw:
    """Draws a figure into an ``<img>``, or nothing when the page is rendered without plots."""

    def __init__(self, plots: bool):
        self.plots = plots

    def __call__(self, figure, alt: str, *args) -> str:
        return f'<img class="plot" src="{figure(*args)}" alt="{html.escape(alt)}">' if self.plots else ""


def section_metrics(d: PoolData, draw: _Draw) -> str:
    notes = "".join(f"<li><b>{html.escape(label)}</b>: {html.escape(desc)}</li>" for _, label, desc in METRICS)
    rows = [f"<tr><td>{label}</td><td class='num'>{fmt(median(v))}</td><td class='num'>{fmt(d.selected_median(v))}</td>"
            f"<td class='num'>{int((~np.isfinite(v)).sum())}</td></tr>"
            for name, label, _ in METRICS if (v := d.metrics[name]) is not None]
    table = ("<table class='grid small'><thead><tr><th>metric</th><th>pool median</th><th>selected median</th>"
             "<th>NaN rows</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>") if rows else ""
    return _section("metrics", "Crowd metrics: pool vs selected",
                    ("Densities on shared bins; dashed lines mark the medians. " if draw.plots else "")
                    + draw(figures.metrics_figure, "metric histograms, pool vs selected", d)
                    + f'<div class="two"><ul class="notes">{notes}</ul>{table}</div>')


def section_score(d: PoolData, record: SelectionRecord, draw: _Draw) -> str:
    title = f"Ranking score: {record.ranked_by}"
    if not d.has_score:
        why = ("this strategy draws its rows at random, so there is no score to plot." if record.ranked_by == "random"
               else "the pool table has no finite crowd_combined values.")
        return _section("score", title, _note(f"No ranking score: {why}"))
    text = "The score this strategy ranked the pool by (higher is preferred"
    text += "; negated for a lowest-first ranking). " if "lowest first" in record.ranked_by else "). "
    label = record.ranked_by
    if record.weights is not None:
        text += (f"Each metric → uniform quantile over the pool, then the weighted sum Σ wⱼ·qⱼ with weights "
                 f"{weights_text(record.weights)}. ")
        label += "  Σ wⱼ·qⱼ"
    return _section("score", title, html.escape(text) + draw(figures.score_figure, f"{record.ranked_by}, pool vs selected", d, label))


def section_map(d: PoolData, draw: _Draw) -> str:
    title = "Instruction map (PCA of the embeddings)"
    if d.map_x is None or d.map_y is None:
        return _section("map", title, _note("No map: the pool table has no crowd_map_x / crowd_map_y columns."))
    if not d.has_map:
        return _section("map", title, _note("No map: this selection ran without instruction embeddings "
                                             "(the map coordinates are all missing)."))
    ok = np.isfinite(d.map_x) & np.isfinite(d.map_y)
    missing = int((~ok).sum())
    text = "Each dot is a pool instruction, coloured by its cluster; selected rows are drawn larger with a dark outline."
    if missing:
        text += f" {missing:,} rows without coordinates are not shown."
    if (ok & ~d.selected).sum() > figures.MAX_MAP_POINTS:
        text += f" A random {figures.MAX_MAP_POINTS:,} of the unselected rows are drawn."
    return _section("map", title, html.escape(text) + draw(figures.map_figure, "PCA map of the instruction embeddings by cluster", d))


QUOTA_COLUMNS = ("cluster", "pool rows", "candidates", "quota", "selected by quota", "back-filled", "selected", "median score")
"""Columns of the quota table; the first six are the card's cluster table, field for field."""


def section_quotas(d: PoolData, record: SelectionRecord) -> str:
    title = "Per-cluster quotas"
    if record.clustering is None:
        return _section("quotas", title, _note(f"No clusters: this strategy selects over the whole pool, ranked by "
                                               f"{record.ranked_by} (no per-cluster quota)."))
    if not record.clusters:
        return _section("quotas", title, _note("The selection record holds no per-cluster counts."))
    body = []
    for c in record.clusters:
        med = d.selected_median(d.score, d.cluster == c.cluster) if d.cluster is not None else math.nan
        swatch = f'<span class="swatch" style="background:{cluster_color(c.cluster)}"></span>'
        cells = [c.pool_rows, c.candidates, c.quota, c.picked_by_quota, c.backfilled, c.selected]
        body.append(f"<tr class='{'short' if c.picked_by_quota < c.quota else ''}'><td>{swatch}{c.cluster}</td>"
                    + "".join(f"<td class='num'>{v:,}</td>" for v in cells) + f"<td class='num'>{fmt(med)}</td></tr>")
    totals = [sum(getattr(c, f) for c in record.clusters)
              for f in ("pool_rows", "candidates", "quota", "picked_by_quota", "backfilled", "selected")]
    foot = "<tr class='total'><td>total</td>" + "".join(f"<td class='num'>{v:,}</td>" for v in totals) + "<td></td></tr>"
    text = ("<p>As recorded by the selector. Each cluster's quota is its share of k; a cluster with fewer candidates "
            "than its quota gives all it has (highlighted) and the remainder is back-filled from the best unselected "
            "rows of any cluster. <i>pool rows</i> = rows assigned to the cluster, <i>candidates</i> = those that could "
            "be selected (usable reward, non-empty best answer, first of duplicates), <i>selected by quota</i> = taken by "
            f"the cluster's own quota, <i>back-filled</i> = taken by back-fill, <i>median score</i> = median "
            f"{html.escape(record.ranked_by)} of its selected rows.</p>")
    head = "".join(f"<th>{h}</th>" for h in QUOTA_COLUMNS)
    return _section("quotas", title, text + f"<table class='grid' id='quota-table'><thead><tr>{head}</tr></thead><tbody>"
                    + "".join(body) + f"</tbody><tfoot>{foot}</tfoot></table>")


def section_best(d: PoolData, record: SelectionRecord, draw: _Draw) -> str:
    title = "Who gave the best answer"
    if d.best is None:
        return _section("best", title, _note("The pool table has no crowd_best_model column."))
    names, pool_share, sel_share, breaks = best_answer_shares(d, crowd_members(record))
    if not names:
        return _section("best", title, _note("No row has a best answer (no usable reward)."))
    text = ("The selected rows' best answers are the assistant turns of the training set. "
            "Members are grouped by family, smallest first.")
    return _section("best", title, html.escape(text) + draw(figures.best_figure, "best-answer share per crowd member",
                                                            names, pool_share, sel_share, breaks))


def section_samples(rows: Sequence[Mapping[str, Any]]) -> str:
    title = "Sample of selected rows"
    if not rows:
        return _section("samples", title, _note("No training rows were found beside the selection (train-*.parquet)."))
    cards = []
    for row in rows:
        instruction, response = sample_texts(row)
        meta = []
        if row.get("crowd_best_model") is not None:
            meta.append(f"best: <b>{html.escape(str(row['crowd_best_model']))}</b>")
        for key, label in (("crowd_best_reward", "reward"), ("crowd_combined", "score")):
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                meta.append(f"{label} {fmt(row[key])}")
        c = row.get("crowd_cluster")
        if isinstance(c, int) and c >= 0:
            meta.append(f'<span class="swatch" style="background:{cluster_color(c)}"></span>cluster {c}')
        cards.append("<article class='sample'>"
                     f"<div class='meta'>{' · '.join(meta)}</div>"
                     f"<div class='turn user'><span class='role'>instruction</span>{_clip(instruction, 320, 6)}</div>"
                     f"<div class='turn assistant'><span class='role'>best response</span>{_clip(response, 480, 9)}</div>"
                     "</article>")
    return _section("samples", title, f"<p>{len(rows)} rows, spread over clusters, highest ranking score first.</p>"
                    + "<div class='samples'>" + "".join(cards) + "</div>")


def summary_items(record: SelectionRecord) -> dict[str, Any]:
    """What the summary section lists: the record's accounting, not what other sections show."""
    out: dict[str, Any] = {k: getattr(record, k) for k in (
        "n_pool", "n_eligible", "n_selected", "n_backfilled", "excluded", "pool_duplicate_ids", "neutral_filled",
        "metric_means")}
    if record.clustering is not None:
        out["clustering"] = {"kmeans": record.clustering.kmeans, "n_init": record.clustering.n_init,
                             "inertia": record.clustering.inertia}
    if record.metrics:
        out["metrics"] = {k: v for k, v in record.metrics.items() if k != "members"}
    out.update(config=record.config, rows=record.rows, package_version=record.package_version,
               schema_version=record.schema_version)
    return out


def section_summary(record: SelectionRecord) -> str:
    parts = []
    for heading, values in (("selection record", summary_items(record)), ("source", record.source or {})):
        items = list(_flatten(values))
        if items:
            body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_value_text(v))}</td></tr>" for k, v in items)
            parts.append(f"<table class='kv'><thead><tr><th colspan='2'>{heading}</th></tr></thead><tbody>{body}</tbody></table>")
    return _section("summary", "Selection summary", "<div class='two'>" + "".join(parts) + "</div>")


# -- small pieces --------------------------------------------------------------------------------

def _section(sid: str, title: str, body: str) -> str:
    return f"<section id='{sid}' class='card'><h2>{html.escape(title)}</h2>{body}</section>"


def _note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def _chip(label: str, value: str) -> str:
    return f"<span class='chip'><span class='k'>{html.escape(label)}</span>{html.escape(value)}</span>"


def _clip(text: str, limit: int, max_lines: int) -> str:
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
        return " · ".join(f"{n} {_num(w)}" for n, w in zip(names, weights))
    return "(" + ", ".join(_num(w) for w in weights) + ")"


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _flatten(d: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in (d.items() if isinstance(d, Mapping) else ()):
        if isinstance(v, Mapping) and v:
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return fmt(v)
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, (Mapping, list, tuple)) for x in v):
            return f"[{len(v)} entries]"
        if len(v) > 12:
            return f"[{len(v)} values] " + ", ".join(_value_text(x) for x in v[:6]) + ", …"
        return ", ".join(_value_text(x) for x in v) or "[]"
    if v is None:
        return "–"
    return "{}" if isinstance(v, Mapping) else str(v)
