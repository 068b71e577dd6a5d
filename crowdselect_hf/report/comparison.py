"""The report's "Downstream comparison" section: what the students trained on each config did
against the baseline's, from the comparison's ``compare.json`` alone
(:class:`~crowdselect_hf.compare.record.ComparisonRecord`).

It shows a forest plot of the win rates with their 95% intervals, the results in plain words
(saying so when a difference is not significant), the students, how the pairwise judge's two
orders agreed, the per-cluster breakdown and a few prompts with every student's answer.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..compare.record import ComparisonRecord, ComparisonRecordError, find_comparison
from ..compare.stats import PairedResult
from .svg import Figure, text_width
from .markup import clip, note
from .markup import section as section_html
from .style import INK, MUTED, SELECTED_COLOR

if TYPE_CHECKING:
    from .context import ReportContext

SECTION_ID = "comparison"
JUDGE_COLORS = {"pairwise": SELECTED_COLOR, "reward": "#4C78A8"}
JUDGE_LABELS = {"pairwise": "pairwise LLM judge", "reward": "reward model"}


def section(ctx: "ReportContext") -> str:
    """The page's section (:data:`.page.SECTIONS`): ``""`` unless the report's config took part
    in a comparison of its curated folder."""
    return "" if ctx.config_dir is None else comparison_section(ctx.config_dir, ctx.plots)


def comparison_section(config_dir: str | Path, plots: bool = True) -> str:
    """The section for the config in ``config_dir`` when its curated folder holds a comparison
    that includes it (``<folder>/_compare/compare.json``); ``""`` otherwise."""
    try:
        record = find_comparison(config_dir)
    except ComparisonRecordError as e:
        return section_html(SECTION_ID, "Downstream comparison", note(f"The folder's compare.json cannot be read: {e}"))
    return "" if record is None else render_comparison(record, Path(config_dir).name, plots)


def render_comparison(record: ComparisonRecord, config: str | None = None, plots: bool = True) -> str:
    """The section's HTML; ``config`` (the report's own config) is highlighted.

    Example:
        >>> from crowdselect_hf.compare.stats import paired_result
        >>> r = paired_result("top-8", "random-8", "pairwise", [1, 1, 0.5, 0.5], n_resamples=50)
        >>> rec = ComparisonRecord(folder="cur", baseline="random-8", configs=("random-8", "top-8"),
        ...     settings={"run": {"student": "m"}}, command="crowdselect compare cur --student m",
        ...     evaluation={"kind": "held-out pool slice", "prompts": 4, "min_eval_prompts": 100, "underpowered": True},
        ...     students=(), results=(r,), position={}, clusters=(), side_by_side=(), judges={}, statistics={})
        >>> page = render_comparison(rec, "top-8", plots=False)
        >>> "Underpowered" in page, "not significant" in page, "<script" in page
        (True, True, False)
    """
    ev = record.evaluation
    parts = [f"<p>A student was fine-tuned from <b>{_e(record.student)}</b> on each of {len(record.configs)} configs with "
             f"the same settings, then all answered the same {ev.get('prompts')} evaluation prompts ({_e(ev.get('kind'))}) "
             f"and were judged against the baseline <b>{_e(record.baseline)}</b>. A win rate counts a tie as half; "
             "intervals are 95% bootstrap intervals over prompts; p is an exact sign test of prompts won against lost, "
             "Holm-adjusted across configs.</p>"]
    if record.underpowered:
        parts.append(note(f"Underpowered: only {ev.get('prompts')} evaluation prompts, fewer than the stated minimum of "
                          f"{ev.get('min_eval_prompts')}. These numbers are not evidence either way."))
    if plots and record.results:
        parts.append(f'<img class="plot" src="{forest_figure(record.results, record.baseline)}" '
                     f'alt="{html.escape("win rate against " + record.baseline + " with 95% intervals")}">')
    parts.append("<ul class='notes'>" + "".join(f"<li>{_e(r.sentence())}</li>" for r in record.results) + "</ul>")
    for judge in record.judges_run():
        parts.append(_results_table(record, judge, config))
    parts.append(_students_table(record, config))
    if record.position:
        parts.append(_position_table(record))
    parts.append(_clusters(record))
    parts.append(_side_by_side(record))
    parts.append(f"<p class='muted'>Re-run: <code>{_e(record.command)}</code> · {_e(len(record.warnings))} warning(s) · "
                 f"compared by crowdselect-hf {_e(record.package_version)}</p>")
    return section_html(SECTION_ID, "Downstream comparison", "".join(parts))


def forest_figure(results: Sequence[PairedResult], baseline: str) -> str:
    """Win rates with their 95% intervals, one row per config and judge; hollow = not significant."""
    rows = list(results)
    names = [f"{r.config} ({JUDGE_LABELS.get(r.judge, r.judge)})" for r in reversed(rows)]
    fig = Figure(990, (0.9 + 0.42 * len(rows)) * 110)
    (ax,) = fig.panels(1, left=24 + max((text_width(n, 13) for n in names), default=40), right=24, top=12, bottom=54)
    ax.limits((-0.03, 1.03), (-0.6, len(rows) - 0.4))  # room for a dot at 0% or 100%
    ax.vline(0.5, MUTED, dash=True)
    for y, r in enumerate(reversed(rows)):
        color = JUDGE_COLORS.get(r.judge, INK)
        lo, hi = r.win_rate_ci
        if math.isfinite(lo) and math.isfinite(hi):
            ax.line([lo, hi], [y, y], color, width=3.4)
        if math.isfinite(r.win_rate):
            ax.dots([r.win_rate], [y], 6.0, fill=color if r.significant else "#FFFFFF", stroke=color, stroke_width=3.0)
    ax.frame(xlabel=f"win rate against {baseline} (ties count half) · filled: significant, hollow: not",
             xformat=lambda x: f"{100 * x:.0f}%", ylabels=list(zip(range(len(rows)), names)))
    return fig.uri()


def _results_table(record: ComparisonRecord, judge: str, config: str | None) -> str:
    reward = judge == "reward"
    head = ["config", "prompts", "win rate (95% CI)", "wins / ties / losses"]
    head += ["mean reward difference (95% CI)"] if reward else []
    head += ["p (Holm)", "verdict"]
    body = []
    for r in (x for x in record.results if x.judge == judge):
        cells = [f"<td>{_e(r.config)}</td>", _num(r.n), _num(f"{_pct(r.win_rate)} [{_pct(r.win_rate_ci[0])}, {_pct(r.win_rate_ci[1])}]"),
                 _num(f"{r.wins} / {r.ties} / {r.losses}")]
        if reward:
            lo, hi = r.mean_difference_ci or (math.nan, math.nan)
            cells.append(_num(f"{_sg(r.mean_difference)} [{_sg(lo)}, {_sg(hi)}]"))
        cells += [_num(f"{r.p_adjusted:.3g}"), f"<td>{'significant' if r.significant else 'not significant'}</td>"]
        body.append(f"<tr class='{'short' if r.config == config else ''}'>{''.join(cells)}</tr>")
    return (f"<h3>{_e(JUDGE_LABELS.get(judge, judge))} against {_e(record.baseline)}</h3>"
            f"<table class='grid' id='comparison-{judge}'><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _students_table(record: ComparisonRecord, config: str | None) -> str:
    rows = []
    for s in record.students:
        ci = s.mean_reward_ci
        reward = "–" if s.mean_reward is None else f"{s.mean_reward:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "")
        role = " (baseline)" if s.config == record.baseline else ""
        rows.append(f"<tr class='{'short' if s.config == config else ''}'><td>{_e(s.config + role)}</td><td>{_e(s.strategy)}</td>"
                    + "".join(_num(v) for v in (s.rows, s.global_step, "–" if s.train_loss is None else f"{s.train_loss:.4g}",
                                                s.answered, reward)) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("student", "strategy", "training rows", "steps", "train loss", "answers",
                                             "mean reward (95% CI)"))
    return f"<h3>Students</h3><table class='grid small'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _position_table(record: ComparisonRecord) -> str:
    rows = "".join(f"<tr><td>{_e(c)}</td>{_num(_pct(p.get('consistent')))}{_num(_pct(p.get('first_wins')))}"
                   f"{_num(p.get('no_verdict'))}</tr>" for c, p in record.position.items())
    return ("<h3>Position bias of the pairwise judge</h3><p>Every prompt was judged twice, the baseline's answer shown first "
            "and then second. <i>Same in both orders</i>: prompts whose two games agreed; <i>first answer wins</i>: share of "
            "decisive games won by the answer shown first (50% = no position bias).</p>"
            "<table class='grid small'><thead><tr><th>config</th><th>same in both orders</th><th>first answer wins</th>"
            f"<th>games without a verdict</th></tr></thead><tbody>{rows}</tbody></table>")


def _clusters(record: ComparisonRecord) -> str:
    if not record.clusters:
        return "<h3>Per cluster</h3>" + note("No per-cluster breakdown: the evaluation prompts carry no clusters (they are "
                                             "not a held-out slice of a clustered selection's pool).")
    judge = record.judges_run()[0]
    rows = [c for c in record.clusters if c.judge == judge]
    configs = list(dict.fromkeys(c.config for c in rows))
    clusters = sorted({c.cluster for c in rows})
    at = {(c.cluster, c.config): c for c in rows}
    body = []
    for k in clusters:
        n = max(at[(k, c)].n for c in configs if (k, c) in at)
        cells = "".join(_num(_pct(at[(k, c)].win_rate) if (k, c) in at else "–") for c in configs)
        body.append(f"<tr><td>{k}</td>{_num(n)}{cells}</tr>")
    head = "".join(f"<th>{_e(c)}</th>" for c in configs)
    return (f"<h3>Per cluster ({_e(JUDGE_LABELS.get(judge, judge))}, clusters of "
            f"{_e(record.evaluation.get('clusters_from'))})</h3><p>Win rate against {_e(record.baseline)} on the evaluation "
            "prompts of each cluster; – where fewer than 5 prompts were compared. Small clusters are noisy: no interval is "
            f"shown, and none of these is tested.</p><table class='grid small'><thead><tr><th>cluster</th><th>prompts</th>"
            f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _side_by_side(record: ComparisonRecord) -> str:
    if not record.side_by_side:
        return ""
    blocks = []
    for s in record.side_by_side:
        cards = []
        for c, answer in s.answers.items():
            meta = [f"<b>{_e(c)}</b>" + (" (baseline)" if c == record.baseline else "")]
            if s.rewards.get(c) is not None:
                meta.append(f"reward {s.rewards[c]:.4g}")
            if c in s.verdicts:
                meta.append("verdicts " + " · ".join(_e(v or "none") for v in s.verdicts[c]) + " (game 1 · 2)")
            cards.append(f"<article class='sample'><div class='meta'>{' · '.join(meta)}</div>"
                         f"<div class='turn assistant'><span class='role'>answer</span>{clip(answer or '', 600, 10)}</div></article>")
        where = "" if s.cluster < 0 else f" · cluster {s.cluster}"
        blocks.append(f"<div style='margin-top:22px'><div class='turn user'><span class='role'>prompt{where}</span>"
                      f"{clip(s.instruction, 400, 6)}</div><div class='samples'>{''.join(cards)}</div></div>")
    return "<h3>Side by side</h3><p>The first evaluation prompts of the seeded draw that every student answered.</p>" + "".join(blocks)


def _e(v) -> str:
    return html.escape("–" if v is None else str(v))


def _num(v) -> str:
    return f"<td class='num'>{_e(v)}</td>"


def _pct(x) -> str:
    return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{100 * x:.1f}%"


def _sg(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.4g}"

