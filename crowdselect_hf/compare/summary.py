"""From the stages' tables to the :class:`~.record.ComparisonRecord`: paired results per judge
(Holm-adjusted per judge), mean rewards, position agreement, the per-cluster breakdown and the
side-by-side answers. No I/O and no models here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ..version import __version__
from .config import CompareSettings
from .evalset import EvalSet
from .judging import pairwise_scores, reward_values, verdicts_by_prompt
from .record import ClusterResult, ComparisonRecord, SideBySide, StudentSummary, command_line
from .stats import INTERVAL, TEST, PairedResult, adjust, bootstrap_ci, difference_scores, paired_result
from .training import LOSS_ON, TrainedStudent
from .verdicts import JUDGE_PROMPT_VERSION, JUDGE_SYSTEM, JUDGE_TEMPLATE, position_stats

MIN_CLUSTER_PROMPTS = 5
"""Clusters with fewer evaluation prompts are listed without a win rate."""


@dataclass
class StageOutputs:
    """What the stages produced, by config."""

    students: dict[str, TrainedStudent]
    answers: dict[str, pa.Table]
    rewards: dict[str, pa.Table] = field(default_factory=dict)
    judgments: dict[str, pa.Table] = field(default_factory=dict)


def build_record(folder: str, settings: CompareSettings, baseline: str, configs: Sequence[str], evalset: EvalSet,
                 strategies: Mapping[str, str | None], out: StageOutputs, warnings: Sequence[str],
                 identities: Mapping[str, str]) -> ComparisonRecord:
    """The record of a finished comparison.

    Args:
        folder: the curated folder (as given).
        settings: every setting.
        baseline, configs: the baseline and all compared configs (baseline included).
        evalset: the prompts.
        strategies: each config's selection strategy.
        out: the stages' tables.
        warnings: what was said loudly.
        identities: ``checkpoint_identity`` of the student and the reward model.
    """
    judge = settings.judge
    candidates = [c for c in configs if c != baseline]
    stats_kw = dict(n_resamples=judge.bootstrap, seed=judge.bootstrap_seed, alpha=judge.alpha)
    results: list[PairedResult] = []
    per_prompt: dict[tuple[str, str], np.ndarray] = {}
    if out.judgments:
        family = []
        for c in candidates:
            per_prompt[("pairwise", c)] = s = pairwise_scores(evalset, out.judgments[c])
            family.append(paired_result(c, baseline, "pairwise", s, **stats_kw))
        results += adjust(family)
    rewards = {c: reward_values(t) for c, t in out.rewards.items()}
    if rewards:
        family = []
        for c in candidates:
            s, d = difference_scores(rewards[c], rewards[baseline])
            per_prompt[("reward", c)] = s
            family.append(paired_result(c, baseline, "reward", s, d, **stats_kw))
        results += adjust(family)
    n_min = settings.evaluation.min_eval_prompts
    evaluation = {**dict(evalset.source), "prompts": len(evalset), "min_eval_prompts": n_min,
                  "underpowered": len(evalset) < n_min}
    return ComparisonRecord(
        folder=folder, baseline=baseline, configs=tuple(configs), settings=settings.to_dict(),
        command=command_line(folder, settings), evaluation=evaluation,
        students=tuple(_student(c, strategies.get(c), out, rewards.get(c), stats_kw) for c in configs),
        results=tuple(results),
        position={c: position_stats(*verdicts_by_prompt(evalset, out.judgments[c])) for c in candidates if c in out.judgments},
        clusters=tuple(cluster_results(evalset, per_prompt)),
        side_by_side=tuple(side_by_side(evalset, configs, out, judge.side_by_side)),
        judges=_judges(settings, identities), warnings=tuple(warnings),
        statistics={"interval": INTERVAL, "level": 0.95, "resamples": judge.bootstrap, "seed": judge.bootstrap_seed,
                    "test": TEST, "alpha": judge.alpha, "unit": "evaluation prompt (paired)"},
        package_version=__version__)


def _student(config: str, strategy: str | None, out: StageOutputs, rewards: list[float | None] | None,
             stats_kw: Mapping[str, Any]) -> StudentSummary:
    t = out.students[config]
    answered = sum(c is not None for c in out.answers[config].column("content").to_pylist())
    mean = ci = None
    if rewards is not None:
        values = [r for r in rewards if r is not None]
        mean = float(np.mean(values)) if values else None
        ci = bootstrap_ci(values, stats_kw["n_resamples"], stats_kw["seed"]) if values else None
    return StudentSummary(config=config, strategy=strategy, rows=t.rows, global_step=t.global_step, train_loss=t.train_loss,
                          runtime_s=t.runtime_s, resumed_from=t.resumed_from, answered=answered, mean_reward=mean,
                          mean_reward_ci=ci)


def cluster_results(evalset: EvalSet, per_prompt: Mapping[tuple[str, str], np.ndarray]) -> list[ClusterResult]:
    """Per cluster of the evaluation prompts, each config's win rate under each judge (``None``
    below :data:`MIN_CLUSTER_PROMPTS` compared prompts). Empty when the prompts have no clusters."""
    clusters = evalset.table.column("cluster").to_numpy(zero_copy_only=False)
    out = []
    for label in sorted(int(c) for c in set(clusters.tolist()) if c >= 0):
        mask = clusters == label
        for (judge, config), scores in per_prompt.items():
            s = scores[mask]
            s = s[np.isfinite(s)]
            out.append(ClusterResult(cluster=label, config=config, judge=judge, n=int(s.size),
                                     win_rate=float(s.mean()) if s.size >= MIN_CLUSTER_PROMPTS else None))
    return out


def side_by_side(evalset: EvalSet, configs: Sequence[str], out: StageOutputs, n: int) -> list[SideBySide]:
    """The first ``n`` evaluation prompts (in the seeded draw's order) that every student answered."""
    answers = {c: out.answers[c].column("content").to_pylist() for c in configs}
    rewards = {c: reward_values(t) for c, t in out.rewards.items()}
    verdicts = {c: verdicts_by_prompt(evalset, t) for c, t in out.judgments.items()}
    ids, texts = evalset.table.column("prompt_id").to_pylist(), evalset.instructions
    clusters = evalset.table.column("cluster").to_pylist()
    shown = []
    for j in range(len(ids)):
        if len(shown) >= n:
            break
        if any(answers[c][j] is None for c in configs):
            continue
        shown.append(SideBySide(prompt_id=ids[j], instruction=texts[j], cluster=int(clusters[j]),
                                answers={c: answers[c][j] for c in configs},
                                rewards={c: rewards[c][j] for c in rewards},
                                verdicts={c: [v[0][j], v[1][j]] for c, v in verdicts.items()}))
    return shown


def _judges(settings: CompareSettings, identities: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    j = settings.judge
    out: dict[str, dict[str, Any]] = {}
    if j.reward_model:
        out["reward"] = {"model": j.reward_model, "identity": identities.get("reward"), "max_length": j.reward_max_length,
                         "score": "candidate − baseline reward per prompt"}
    if j.judge_model:
        out["pairwise"] = {"model": j.judge_model, "base_url": j.judge_base_url, "temperature": 0.0,
                           "max_tokens": j.judge_max_tokens, "prompt_version": JUDGE_PROMPT_VERSION,
                           "system_prompt": JUDGE_SYSTEM, "template": JUDGE_TEMPLATE,
                           "games": "1: baseline's answer as A; 2: baseline's answer as B",
                           "score": "per game A>>B/A>B = 1, A=B = 0.5, B>A/B>>A = 0 for A; per prompt the mean of both games"}
    out["student"] = {"model": settings.run.student, "identity": identities.get("student"), "loss_on": LOSS_ON}
    return out

