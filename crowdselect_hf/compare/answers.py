"""Every student answers the evaluation prompts, through the project's
:class:`~crowdselect_hf.generation.CrowdGenerator`: locally with transformers from the trained
checkpoint, or from an OpenAI-compatible server (e.g. vLLM) that serves each student under its
config name.

Answers are written to ``answers/<config>.parquet`` after every chunk, so a killed run resumes
with the prompts not yet answered; prompts whose request failed (``content`` None) are asked
again on the next run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import pyarrow as pa

from ..generation import CrowdGenerator
from .cache import load_table, save_table
from .config import AnswerConfig
from .evalset import EvalSet

logger = logging.getLogger(__name__)

ANSWER_SCHEMA = pa.schema([("prompt_id", pa.string()), ("content", pa.string()), ("error", pa.string())])
CHUNK = 64
"""Prompts generated between two writes of the cache."""


def generator_for(config_name: str, checkpoint: str, answers: AnswerConfig, seed: int) -> CrowdGenerator:
    """The generator of one student: its ``final/`` checkpoint, or its config name on the server."""
    options: dict[str, Any] = dict(max_new_tokens=answers.max_new_tokens, temperature=answers.temperature, seed=seed,
                                   batch_size=answers.answer_batch_size)
    if answers.student_base_url:
        return CrowdGenerator([{"name": config_name, "model": config_name}], base_url=answers.student_base_url, **options)
    return CrowdGenerator([{"name": config_name, "model": checkpoint}], **options)


def student_answers(evalset: EvalSet, config_name: str, generator: CrowdGenerator, path: Path, key: str,
                    settings: Mapping[str, Any], progress: Callable[[int], Any] | None = None) -> pa.Table:
    """The answers of one student (:data:`ANSWER_SCHEMA`, in the evaluation set's order).

    Answers already in the cache under ``key`` are kept; the rest are generated chunk by chunk.

    Args:
        evalset: the prompts.
        config_name: the student's config (the generator's one model).
        generator: from :func:`generator_for`.
        path: ``answers/<config>.parquet``.
        key, settings: what determines the answers (checkpoint, prompts, generation settings).
        progress: called with the number of prompts answered after each chunk.
    """
    ids, prompts = evalset.table.column("prompt_id").to_pylist(), evalset.instructions
    cached, complete = load_table(path, key, f"answers of {config_name}")
    have: dict[str, tuple[str | None, str | None]] = {}
    if cached is not None:
        have = dict(zip(cached.column("prompt_id").to_pylist(),
                        zip(cached.column("content").to_pylist(), cached.column("error").to_pylist())))
    rows = [have.get(i, (None, None)) for i in ids]
    todo = [j for j, (content, _) in enumerate(rows) if content is None]
    if complete and not todo:
        return _table(ids, rows)
    if progress is not None and len(ids) - len(todo):
        progress(len(ids) - len(todo))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        out = generator({"instruction": [prompts[j] for j in chunk]})[config_name]
        for j, answer in zip(chunk, out):
            rows[j] = (answer["content"], answer["error"])
        save_table(path, _table(ids, rows), key, settings, complete=False)
        if progress is not None:
            progress(len(chunk))
    generator.unload()
    table = _table(ids, rows)
    save_table(path, table, key, settings, complete=True)
    failed = sum(content is None for content, _ in rows)
    if failed:
        logger.warning("%s: %d of %d prompts got no answer (see their error); run again to retry them",
                       config_name, failed, len(rows))
    return table


def _table(ids: list[str], rows: list[tuple[str | None, str | None]]) -> pa.Table:
    return pa.table({"prompt_id": ids, "content": [c for c, _ in rows], "error": [e for _, e in rows]}, schema=ANSWER_SCHEMA)
