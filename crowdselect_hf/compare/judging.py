"""The two judges: (a) a reward model, through :class:`~crowdselect_hf.rewards.RewardScorer`, and
(b) a pairwise LLM judge on an OpenAI-compatible endpoint, through
:class:`~crowdselect_hf.generation.CrowdGenerator` (its retries, back-off and bounded concurrency),
each config against the baseline in both orders (:mod:`.verdicts`).

Both write their results per config (``rewards/<config>.parquet``,
``judgments/<config>.parquet``); the pairwise judge after every chunk, so a killed run resumes
with the games not yet judged, and games whose request failed are asked again on the next run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa

from ..generation import CrowdGenerator
from .cache import load_table, save_table
from .config import JudgeConfig
from .evalset import EvalSet
from .verdicts import GAMES, JUDGE_SYSTEM, judge_prompt, parse_verdict, prompt_scores

REWARD_SCHEMA = pa.schema([("prompt_id", pa.string()), ("reward", pa.float64())])
JUDGMENT_SCHEMA = pa.schema([("prompt_id", pa.string()), ("game", pa.int64()), ("reply", pa.string()),
                             ("error", pa.string()), ("verdict", pa.string())])
JUDGE_NAME = "judge"
CHUNK = 64
"""Judge calls between two writes of the cache."""


# -- (a) the reward model -------------------------------------------------------------------------

def reward_scores(evalset: EvalSet, config_name: str, answers: pa.Table, scorer: Any, path: Path, key: str,
                  settings: Mapping[str, Any], progress: Callable[[int], Any] | None = None) -> pa.Table:
    """The reward of every answer of one student (:data:`REWARD_SCHEMA`; ``None`` without an answer,
    or when the scorer skipped the pair)."""
    cached, complete = load_table(path, key, f"rewards of {config_name}")
    if cached is not None and complete:
        return cached
    contents = answers.column("content").to_pylist()
    prompts = evalset.instructions
    todo = [j for j, c in enumerate(contents) if c is not None]
    rewards: list[float | None] = [None] * len(contents)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        for j, r in zip(chunk, scorer.score_pairs([prompts[j] for j in chunk], [contents[j] for j in chunk],
                                                  where=[f"{config_name}, prompt {j}" for j in chunk])):
            rewards[j] = r
        if progress is not None:
            progress(len(chunk))
    table = pa.table({"prompt_id": answers.column("prompt_id"), "reward": pa.array(rewards, pa.float64())},
                     schema=REWARD_SCHEMA)
    save_table(path, table, key, settings, complete=True)
    return table


# -- (b) the pairwise judge -----------------------------------------------------------------------

def judge_generator(judge: JudgeConfig) -> CrowdGenerator:
    """The judge as a one-model :class:`CrowdGenerator`: the system prompt, greedy, bounded concurrency."""
    return CrowdGenerator([{"name": JUDGE_NAME, "model": judge.judge_model}], base_url=judge.judge_base_url,
                          api_key_env=judge.judge_api_key_env, system_prompt=JUDGE_SYSTEM,
                          max_new_tokens=judge.judge_max_tokens, temperature=0.0, max_concurrency=judge.judge_concurrency,
                          max_retries=judge.judge_retries, timeout=judge.judge_timeout)


def pairwise_judgments(evalset: EvalSet, baseline: pa.Table, candidate: pa.Table, generator: CrowdGenerator, path: Path,
                       key: str, settings: Mapping[str, Any], progress: Callable[[int], Any] | None = None) -> pa.Table:
    """Both games of every prompt both students answered (:data:`JUDGMENT_SCHEMA`).

    Games already in the cache under ``key`` with a reply are kept; the others are asked, chunk
    by chunk. A failed request leaves ``reply`` None and its ``error``.
    """
    ids, questions = evalset.table.column("prompt_id").to_pylist(), evalset.instructions
    base, cand = baseline.column("content").to_pylist(), candidate.column("content").to_pylist()
    games = [(j, g) for j in range(len(ids)) if base[j] is not None and cand[j] is not None for g in GAMES]
    cached, complete = load_table(path, key, f"judgments of {path.stem}")
    have: dict[tuple[str, int], tuple[str | None, str | None]] = {}
    if cached is not None:
        have = {(p, g): (r, e) for p, g, r, e in zip(*(cached.column(c).to_pylist() for c in ("prompt_id", "game", "reply", "error")))}
    rows = [have.get((ids[j], g), (None, None)) for j, g in games]
    todo = [i for i, (reply, _) in enumerate(rows) if reply is None]
    if complete and not todo:
        return _judgment_table(ids, games, rows)
    if progress is not None and len(rows) - len(todo):
        progress(len(rows) - len(todo))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        texts = [judge_prompt(questions[games[i][0]], base[games[i][0]], cand[games[i][0]], games[i][1]) for i in chunk]
        for i, reply in zip(chunk, generator({"instruction": texts})[JUDGE_NAME]):
            rows[i] = (reply["content"], reply["error"])
        save_table(path, _judgment_table(ids, games, rows), key, settings, complete=False)
        if progress is not None:
            progress(len(chunk))
    table = _judgment_table(ids, games, rows)
    save_table(path, table, key, settings, complete=True)
    return table


def _judgment_table(ids: list[str], games: list[tuple[int, int]], rows: list[tuple[str | None, str | None]]) -> pa.Table:
    return pa.table({"prompt_id": [ids[j] for j, _ in games], "game": [g for _, g in games],
                     "reply": [r for r, _ in rows], "error": [e for _, e in rows],
                     "verdict": [parse_verdict(r) for r, _ in rows]}, schema=JUDGMENT_SCHEMA)


def failed_calls(table: pa.Table) -> tuple[int, str | None]:
    """How many judge calls failed (no reply), and the first error."""
    errors = [e for r, e in zip(table.column("reply").to_pylist(), table.column("error").to_pylist()) if r is None]
    return len(errors), next((e for e in errors if e), None)


def verdicts_by_prompt(evalset: EvalSet, table: pa.Table) -> tuple[list[str | None], list[str | None]]:
    """The verdicts of game 1 and game 2 per evaluation prompt (``None`` where not judged)."""
    at = {pid: j for j, pid in enumerate(evalset.table.column("prompt_id").to_pylist())}
    out: dict[int, list[str | None]] = {g: [None] * len(at) for g in GAMES}
    for pid, g, v in zip(*(table.column(c).to_pylist() for c in ("prompt_id", "game", "verdict"))):
        out[g][at[pid]] = v
    return out[1], out[2]


def pairwise_scores(evalset: EvalSet, table: pa.Table) -> np.ndarray:
    """Per evaluation prompt, the candidate's share of the win over both games (NaN: incomplete)."""
    return prompt_scores(*verdicts_by_prompt(evalset, table))


def reward_values(table: pa.Table) -> list[float | None]:
    return [None if r is None or not math.isfinite(r) else r for r in table.column("reward").to_pylist()]
