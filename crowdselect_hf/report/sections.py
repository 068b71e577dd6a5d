"""The report's sections about the selection itself: metrics, ranking score, map, quotas, best
answers, samples and the record's summary. Each takes the page's
:class:`~.context.ReportContext` and returns one ``<section>``.

Every number about the selection (parameters, per-cluster counts, pool accounting) is read from
the :class:`~crowdselect_hf.record.SelectionRecord`, the same fields the dataset card renders; the
pool table only supplies per-row values (medians, figures).
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from . import figures, mapfigure
from .context import ReportContext
from .data import METRICS, best_answer_shares, crowd_members, median, sample_texts
from .hover import HOVER_JS, MAX_SELECTED, hover_payload, hover_rows, script_json
from .markup import clip, flatten, fmt, note, section, swatch, value_text, weights_text


def metrics(r: ReportContext) -> str:
    d = r.data
    notes = "".join(f"<li><b>{html.escape(label)}</b>: {html.escape(desc)}</li>" for _, label, desc in METRICS)
    rows = [f"<tr><td>{label}</td><td class='num'>{fmt(median(v))}</td><td class='num'>{fmt(d.selected_median(v))}</td>"
            f"<td class='num'>{int((~np.isfinite(v)).sum())}</td></tr>"
            for name, label, _ in METRICS if (v := d.metrics[name]) is not None]
    table = ("<table class='grid small'><thead><tr><th>metric</th><th>pool median</th><th>selected median</th>"
             "<th>NaN rows</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>") if rows else ""
    return section("metrics", "Crowd metrics: pool vs selected",
                   ("Densities on shared bins; dashed lines mark the medians. " if r.plots else "")
                   + r.draw(figures.metrics_figure, "metric histograms, pool vs selected", d)
                   + f'<div class="two"><ul class="notes">{notes}</ul>{table}</div>')


def score(r: ReportContext) -> str:
    d, record = r.data, r.record
    title = f"Ranking score: {record.ranked_by}"
    if not d.has_score:
        why = ("this strategy draws its rows at random, so there is no score to plot." if record.ranked_by == "random"
               else "the pool table has no finite crowd_combined values.")
        return section("score", title, note(f"No ranking score: {why}"))
    text = "The score this strategy ranked the pool by (higher is preferred"
    text += "; negated for a lowest-first ranking). " if "lowest first" in record.ranked_by else "). "
    label = record.ranked_by
    if record.weights is not None:
        text += (f"Each metric → uniform quantile over the pool, then the weighted sum Σ wⱼ·qⱼ with weights "
                 f"{weights_text(record.weights)}. ")
        label += "  Σ wⱼ·qⱼ"
    return section("score", title, html.escape(text)
                   + r.draw(figures.score_figure, f"{record.ranked_by}, pool vs selected", d, label))


def instruction_map(r: ReportContext) -> str:
    d = r.data
    title = "Instruction map (PCA of the embeddings)"
    if d.map_x is None or d.map_y is None:
        return section("map", title, note("No map: the pool table has no crowd_map_x / crowd_map_y columns."))
    if not d.has_map:
        return section("map", title, note("No map: this selection ran without instruction embeddings "
                                          "(the map coordinates are all missing)."))
    ok = np.isfinite(d.map_x) & np.isfinite(d.map_y)
    missing = int((~ok).sum())
    mode = mapfigure.map_mode(d)
    text = ("Each dot is a pool instruction, coloured by its cluster (legend: the cluster's top terms); selected rows are "
            "drawn larger with a dark outline.")
    if mode == "density":
        text = (f"The {int((ok & ~d.selected).sum()):,} unselected rows are more than {mapfigure.MAX_MAP_POINTS:,}, so they "
                "are drawn as density shading: each cell takes the colour of its most common cluster, and is more "
                "opaque where more rows fall (log scale). Selected rows are dots with a dark outline.")
    if missing:
        text += f" {missing:,} rows without coordinates are not shown."
    if int((ok & d.selected).sum()) > mapfigure.MAX_SELECTED_POINTS:
        text += f" A random {mapfigure.MAX_SELECTED_POINTS:,} of the selected rows are drawn."
    if d.map_variance is None:
        text += " The pool table does not record the axes' explained variance."
    if not r.plots:
        return section("map", title, html.escape(text))
    rows = hover_rows(d, r.rankings)
    image = mapfigure.map_figure(d, r.labels, rows)
    payload = hover_payload(d, rows, image.x, image.y, r.labels)
    text += (f" Point at a dot for its instruction and metrics: {rows.size:,} rows carry hover text (every selected row "
             f"up to {MAX_SELECTED:,}, the near-misses, and a random sample of the others).")
    body = (f"<p>{html.escape(text)}</p><div class='mapbox'>"
            f'<img class="plot" id="map-img" src="{image.uri}" alt="PCA map of the instruction embeddings by cluster">'
            "</div><div id='map-tip' class='tip'></div>"
            f"<script type='application/json' id='map-data'>{script_json(payload)}</script>"
            f"<script>{HOVER_JS}</script>")
    return section("map", title, body)


QUOTA_COLUMNS = ("cluster", "pool rows", "candidates", "quota", "selected by quota", "back-filled", "selected", "median score",
                 "top terms", "central instruction")
"""Columns of the quota table; the first six are the card's cluster table, field for field."""


def quotas(r: ReportContext) -> str:
    d, record = r.data, r.record
    title = "Per-cluster quotas"
    if record.clustering is None:
        return section("quotas", title, note(f"No clusters: this strategy selects over the whole pool, ranked by "
                                             f"{record.ranked_by} (no per-cluster quota)."))
    if not record.clusters:
        return section("quotas", title, note("The selection record holds no per-cluster counts."))
    body = []
    for c in record.clusters:
        med = d.selected_median(d.score, d.cluster == c.cluster) if d.cluster is not None else math.nan
        cells = [c.pool_rows, c.candidates, c.quota, c.picked_by_quota, c.backfilled, c.selected]
        label = r.labels.labels.get(c.cluster)
        terms, central = (label.terms_text, label.central_text) if label is not None else ("", "")
        body.append(f"<tr class='{'short' if c.picked_by_quota < c.quota else ''}'><td>{swatch(c.cluster)}{c.cluster}</td>"
                    + "".join(f"<td class='num'>{v:,}</td>" for v in cells) + f"<td class='num'>{fmt(med)}</td>"
                    f"<td class='terms'>{html.escape(terms)}</td>"
                    f"<td class='terms' title='{html.escape((label.central or '') if label else '', quote=True)}'>"
                    f"{html.escape(central)}</td></tr>")
    totals = [sum(getattr(c, f) for c in record.clusters)
              for f in ("pool_rows", "candidates", "quota", "picked_by_quota", "backfilled", "selected")]
    foot = ("<tr class='total'><td>total</td>" + "".join(f"<td class='num'>{v:,}</td>" for v in totals)
            + "<td></td><td></td><td></td></tr>")
    text = ("<p>As recorded by the selector. Each cluster's quota is its share of k; a cluster with fewer candidates "
            "than its quota gives all it has (highlighted) and the remainder is back-filled from the best unselected "
            "rows of any cluster. <i>pool rows</i> = rows assigned to the cluster, <i>candidates</i> = those that could "
            "be selected (usable reward, non-empty best answer, first of duplicates), <i>selected by quota</i> = taken by "
            f"the cluster's own quota, <i>back-filled</i> = taken by back-fill, <i>median score</i> = median "
            f"{html.escape(record.ranked_by)} of its selected rows, <i>top terms</i> = {label_source(r)}, "
            "<i>central instruction</i> = its candidate nearest the cluster's centre in the embedder's space. "
            f"Elsewhere clusters are named by {'their central instruction' if r.labels.by == 'central' else 'their top terms'}"
            f"{' (the embedder is not TF-IDF, so its clusters need not follow the words)' if r.labels.by == 'central' else ''}.</p>")
    head = "".join(f"<th>{h}</th>" for h in QUOTA_COLUMNS)
    return section("quotas", title, text + f"<table class='grid quotas' id='quota-table'><thead><tr>{head}</tr></thead><tbody>"
                   + "".join(body) + f"</tbody><tfoot>{foot}</tfoot></table>")


def label_source(r: ReportContext) -> str:
    """How the cluster labels were made, in words (HTML-escaped)."""
    if r.labels.source is None:
        return "none (no instruction text is known)"
    where = ("all of its instructions (their beginnings: the pool table keeps each instruction's first characters)"
             if r.labels.source == "pool" else
             "its selected rows' instructions only (the pool table holds no instructions, crowd_instruction)")
    return html.escape(f"the words that occur in a larger share of its instructions than elsewhere, ranked by "
                       f"class-based TF-IDF over {where}")


def best(r: ReportContext) -> str:
    d, record = r.data, r.record
    title = "Who gave the best answer"
    if d.best is None:
        return section("best", title, note("The pool table has no crowd_best_model column."))
    names, pool_share, sel_share, breaks = best_answer_shares(d, crowd_members(record))
    if not names:
        return section("best", title, note("No row has a best answer (no usable reward)."))
    text = ("The selected rows' best answers are the assistant turns of the training set. "
            "Members are grouped by family, smallest first.")
    return section("best", title, html.escape(text) + r.draw(figures.best_figure, "best-answer share per crowd member",
                                                             names, pool_share, sel_share, breaks))


def samples(r: ReportContext) -> str:
    title = "Sample of selected rows"
    if not r.samples:
        return section("samples", title, note("No training rows were found beside the selection (train-*.parquet)."))
    cards = []
    for row in r.samples:
        instruction, response = sample_texts(row)
        meta = []
        if row.get("crowd_best_model") is not None:
            meta.append(f"best: <b>{html.escape(str(row['crowd_best_model']))}</b>")
        for key, label in (("crowd_best_reward", "reward"), ("crowd_combined", "score")):
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                meta.append(f"{label} {fmt(row[key])}")
        c = row.get("crowd_cluster")
        if isinstance(c, int) and c >= 0:
            terms = r.labels.text(c)
            meta.append(f"{swatch(c)}cluster {c}" + (f" <span class='terms'>{html.escape(terms)}</span>" if terms else ""))
        cards.append("<article class='sample'>"
                     f"<div class='meta'>{' · '.join(meta)}</div>"
                     f"<div class='turn user'><span class='role'>instruction</span>{clip(instruction, 320, 6)}</div>"
                     f"<div class='turn assistant'><span class='role'>best response</span>{clip(response, 480, 9)}</div>"
                     "</article>")
    return section("samples", title, f"<p>{len(r.samples)} rows, spread over clusters, highest ranking score first. "
                   "The rows that were not selected are in <a href='#rejected'>Rejected</a>.</p>"
                   + "<div class='samples'>" + "".join(cards) + "</div>")


def summary_items(record) -> dict[str, Any]:
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


def summary(r: ReportContext) -> str:
    parts = []
    for heading, values in (("selection record", summary_items(r.record)), ("source", r.record.source or {})):
        items = list(flatten(values))
        if items:
            body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(value_text(v))}</td></tr>" for k, v in items)
            parts.append(f"<table class='kv'><thead><tr><th colspan='2'>{heading}</th></tr></thead><tbody>{body}</tbody></table>")
    return section("summary", "Selection summary", "<div class='two'>" + "".join(parts) + "</div>")
