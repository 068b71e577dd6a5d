"""The report's sections for a reviewer's next questions: how the metrics relate, whether good
answers were kept, whether size predicts reward in each family, and what was rejected. Each takes
the page's :class:`~.context.ReportContext` and returns one ``<section>``."""

from __future__ import annotations

import html
import math

from . import figures
from .context import ReportContext
from .data import METRICS, median
from .markup import clip, fmt, note, section, swatch
from .ranking import REASONS, RankedRow
from .summaries import family_curves, rank_correlations, reward_statistic, reward_verdict

_LABELS = {**{name: label for name, label, _ in METRICS}, "crowd_best_reward": "Best reward"}


def relations(r: ReportContext) -> str:
    title = "How the metrics relate"
    correlations = rank_correlations(r.data)
    if not correlations:
        return section("relations", title, note("The pool table has fewer than two crowd metrics."))
    rows = "".join(f"<tr><td>{_LABELS[c.a]} × {_LABELS[c.b]}</td><td class='num'>{_rho(c.pool)}</td>"
                   f"<td class='num'>{_rho(c.selected)}</td></tr>" for c in correlations)
    table = ("<table class='grid small' id='correlation-table'><thead><tr><th>pair</th><th>pool ρ</th><th>selected ρ</th>"
             f"</tr></thead><tbody>{rows}</tbody></table>")
    text = ("Spearman rank correlations (ties share their mean rank; rows where either value is NaN are left out). "
            "Near ±1, two metrics rank the pool alike and weighting both counts one signal twice.")
    figure = r.draw(figures.relations_figure, "pairs of crowd metrics: pool density, selected rows on top", r.data)
    lead = "Each panel: the pool as grey density (darker = more rows), the selected rows as orange dots. " if r.plots else ""
    return section("relations", title, html.escape(lead) + figure + f"<div class='two'><p>{html.escape(text)}</p>{table}</div>")


def _rho(v: float) -> str:
    return f"{v:+.2f}" if math.isfinite(v) else "–"


def answers(r: ReportContext) -> str:
    d, record = r.data, r.record
    title = "Did we keep good answers?"
    means = (record.metric_means or {}).get("best_reward") or {}
    verdict = reward_verdict(record, d)
    parts = []
    if verdict:
        parts.append(f"<p class='verdict' id='reward-verdict'>{html.escape(verdict)}</p>")
    rows = [("mean best reward (record)", means.get("pool"), means.get("selected")),
            ("median best reward", median(d.best_reward) if d.best_reward is not None else None,
             d.selected_median(d.best_reward)),
            ("median best-answer bytes", median(d.best_bytes) if d.best_bytes is not None else None,
             d.selected_median(d.best_bytes))]
    body = "".join(f"<tr><td>{k}</td><td class='num'>{fmt(p)}</td><td class='num'>{fmt(s)}</td></tr>" for k, p, s in rows)
    parts.append(r.draw(figures.answers_figure, "best reward and best-answer length, pool vs selected", d))
    parts.append("<table class='grid small' id='answers-table'><thead><tr><th></th><th>pool</th><th>selected</th></tr>"
                 f"</thead><tbody>{body}</tbody></table>")
    if d.best_bytes is None:
        parts.append(note("The pool table holds no best-answer lengths (crowd_best_bytes), so they are not shown: the "
                          "table this selection was made from lacked them, or the pool table predates them."))
    return section("answers", title, "".join(parts))


def families(r: ReportContext) -> str:
    d = r.data
    title = "Does size predict reward in each family?"
    if d.member_rewards is None:
        return section("families", title, note(
            "The pool table records no per-member rewards (its member reward summary), so reward by member size cannot "
            "be shown: the table this selection was made from did not hold the members' reward fields (only the "
            "crowd_* metrics), or the pool table predates the summary."))
    curves = family_curves(d)
    if not curves:
        return section("families", title, note("No family has two members of known size with usable rewards."))
    stat = reward_statistic(d)
    why = " (the rewards take two values, so the median would hide the differences: the mean is shown)" if stat == "mean" else ""
    text = (f"Per family, each member's {stat} reward{why} against its size: the stability metric asks whether bigger "
            "members of a family score higher. Dashed: over every pool row; solid: over the selected rows. Rows where "
            "a member has no usable reward are left out of its value.")
    rows = "".join(f"<tr><td>{html.escape(c.family)}</td>"
                   f"<td>{html.escape(' · '.join(f'{m} ({s:g}B)' for m, s in zip(c.members, c.sizes)))}</td>"
                   f"<td class='num'>{' → '.join(fmt(v) for v in c.pool)}</td>"
                   f"<td class='num'>{' → '.join(fmt(v) for v in c.selected)}</td></tr>" for c in curves)
    table = (f"<table class='grid small' id='family-table'><thead><tr><th>family</th><th>members, smallest first</th>"
             f"<th>pool {stat}</th><th>selected {stat}</th></tr></thead><tbody>{rows}</tbody></table>")
    return section("families", title, f"<p>{html.escape(text)}</p>"
                   + r.draw(figures.families_figure, f"{stat} reward by member size per family", curves, stat) + table)


REJECTED_HEADER = ("kind", "row", "rank", "score", "difficulty", "separability", "stability", "best reward", "why", "instruction")


def rejected(r: ReportContext) -> str:
    d, record = r.data, r.record
    title = "Rejected: near-misses and lowest-ranked rows"
    if not r.rankings:
        return section("rejected", title, note("The pool is empty."))
    if record.ranked_by == "random":
        return section("rejected", title, note("This strategy draws its rows at random: no row ranks above another, so "
                                               "there are no near-misses."))
    clustered = record.clustering is not None
    text = (f"Per {'cluster' if clustered else 'pool'}: the lowest selected row, the best rows not selected "
            "(near-misses) and the lowest-ranked rows, with their metrics and why they lost. "
            f"Rank is within the {'cluster' if clustered else 'pool'}, by the ranking score (ties by crowd_id, no score last).")
    shown = {row.reason for cr in r.rankings for row in (*cr.near_misses, *cr.lowest)}
    legend = "".join(f"<li><b>{html.escape(v)}</b>: {html.escape(_REASON_HELP[k])}</li>" for k, v in REASONS.items()
                     if k in _REASON_HELP and k in shown)
    body = []
    for cr in r.rankings:
        label = r.labels.text(cr.cluster)
        name = (f"{swatch(cr.cluster)}cluster {cr.cluster}" if cr.cluster >= 0 else "all rows") + \
            (f" <span class='terms'>{html.escape(label)}</span>" if label else "")
        body.append(f"<tr class='group'><td colspan='{len(REJECTED_HEADER)}'>{name} · {cr.n_selected:,} of "
                    f"{cr.n_rows:,} rows selected</td></tr>")
        for kind, rows in (("lowest selected", (cr.lowest_selected,) if cr.lowest_selected else ()),
                           ("near-miss", cr.near_misses), ("lowest-ranked", cr.lowest)):
            body += [_row(cr.cluster, kind, row) for row in rows]
    head = "".join(f"<th>{h}</th>" for h in REJECTED_HEADER)
    notes = []
    if not d.has_texts:
        notes.append(note("The pool table holds no instructions (crowd_instruction): only selected rows' instructions "
                          "are known."))
    if d.excluded is None and d.best_bytes is None and (record.excluded or {}).get("empty_best_response"):
        notes.append(note("The record counts rows with an empty best answer, but the pool table does not say which: "
                          "such a row shows as 'not eligible (reason not recorded)' when it ranks above the cut, "
                          "and as quota full below it."))
    return section("rejected", title, f"<p>{html.escape(text)}</p><ul class='notes reasons'>{legend}</ul>" + "".join(notes)
                   + f"<table class='grid small rejected' id='rejected-table'><thead><tr>{head}</tr></thead><tbody>"
                   + "".join(body) + "</tbody></table>")


_REASON_HELP = {
    "quota_full": "eligible, but ranked below its cluster's lowest selected row",
    "below_cut": "eligible, but ranked below the lowest selected row",
    "no_usable_reward": "no member had a usable reward",
    "empty_best_response": "the best answer is empty",
    "duplicate_instruction": "repeats an earlier row's instruction",
    "unrecorded": "ranked above the cut but not selectable, for a reason the pool table does not hold",
}


def _row(cluster: int, kind: str, row: RankedRow) -> str:
    why = "selected" if row.reason == "selected" else REASONS[row.reason]
    text = clip(row.instruction, 240, 3) if row.instruction is not None else "<span class='muted'>(not known)</span>"
    cells = [f"{row.rank:,}", fmt(row.score), *(fmt(v) for v in row.metrics), fmt(row.best_reward)]
    return (f"<tr class='{kind.replace(' ', '-')}' data-row='{row.row}' data-cluster='{cluster}' "
            f"data-reason='{html.escape(row.reason)}'><td>{kind}</td><td class='num'>{row.row}</td>"
            + "".join(f"<td class='num'>{c}</td>" for c in cells)
            + f"<td class='why'>{html.escape(why)}</td><td class='instr'>{text}</td></tr>")
