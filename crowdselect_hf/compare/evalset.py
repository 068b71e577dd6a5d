"""The evaluation prompts every student answers: a held-out, seeded slice of the pool that no
compared config selected (the default), or a user's file or Hub dataset.

The held-out slice is drawn from the pool's unique instructions (by ``crowd_id``) that none of
the compared configs selected, so no student has seen an evaluation prompt in training. Each
prompt keeps its cluster from a clustered selection of the same pool, for the per-cluster
breakdown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ..binding import content_id
from ..columns import read_columns
from ..crowd import CrowdError, find_instruction
from .config import CompareError, EvalConfig

logger = logging.getLogger(__name__)

EVAL_SCHEMA = pa.schema([("prompt_id", pa.string()), ("instruction", pa.string()), ("cluster", pa.int64())])
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


@dataclass(frozen=True)
class EvalSet:
    """The evaluation prompts (:data:`EVAL_SCHEMA`; ``cluster`` -1 when unknown) and where they came from."""

    table: pa.Table
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def instructions(self) -> list[str]:
        return self.table.column("instruction").to_pylist()

    def __len__(self) -> int:
        return self.table.num_rows


def held_out_indices(pool_ids: Sequence[str], instructions: Sequence[str | None], selected: set[str], size: int,
                     seed: int) -> np.ndarray:
    """Pool positions of a seeded draw of ``size`` unique, unselected, non-empty instructions, in pool order.

    Example:
        >>> ids = ["a", "b", "b", "c", "d", "e"]
        >>> held_out_indices(ids, ["x", "y", "y", "", "w", "v"], selected={"a"}, size=2, seed=0).tolist()
        [1, 5]
    """
    seen: set[str] = set()
    candidates = []
    for i, (pid, text) in enumerate(zip(pool_ids, instructions)):
        if pid in selected or pid in seen or not (text or "").strip():
            continue
        seen.add(pid)
        candidates.append(i)
    order = np.random.default_rng(seed).permutation(len(candidates))[:size]
    return np.sort(np.asarray(candidates, dtype=np.int64)[order])


def held_out_slice(pool: Any, pool_tables: Mapping[str, pa.Table], compared: Sequence[str], config: EvalConfig,
                   clusters_from: str | None) -> EvalSet:
    """The default evaluation set.

    Args:
        pool: the crowd table the configs were selected from (a ``datasets.Dataset``).
        pool_tables: each config's pool table (``_crowdselect/pool.parquet``), by config.
        compared: the compared configs: their selected rows are never drawn.
        config: size and seed.
        clusters_from: the config whose ``crowd_cluster`` labels the prompts (``None``: no clusters).

    Raises:
        CompareError: the pool is not the table the configs were selected from.
    """
    column = find_instruction(pool.column_names)
    instructions = read_columns(pool, [column]).column(0).to_pylist()
    ids = [content_id(t) if isinstance(t, str) else "" for t in instructions]
    for name in compared:
        recorded = pool_tables[name].column("crowd_id").to_pylist()
        if recorded != ids:
            raise CompareError(
                f"the pool ({len(ids):,} rows) is not the table config {name!r} was selected from ({len(recorded):,} rows"
                f"{', other instructions' if len(recorded) == len(ids) else ''}); pass --pool with that crowd table")
    selected: set[str] = set()
    for name in compared:
        t = pool_tables[name]
        selected.update(pid for pid, s in zip(t.column("crowd_id").to_pylist(), t.column("crowd_selected").to_pylist()) if s)
    pick = held_out_indices(ids, instructions, selected, config.eval_size, config.eval_seed)
    if len(pick) < config.eval_size:
        logger.warning("the pool has only %d held-out instructions (asked for %d): using all of them", len(pick), config.eval_size)
    clusters = np.full(len(pick), -1, dtype=np.int64)
    if clusters_from is not None:
        clusters = np.asarray(pool_tables[clusters_from].column("crowd_cluster").to_numpy(zero_copy_only=False))[pick]
    table = pa.table({"prompt_id": [ids[i] for i in pick], "instruction": [instructions[i] for i in pick],
                      "cluster": pa.array(clusters, pa.int64())}, schema=EVAL_SCHEMA)
    n_unselected = len({i for i in ids if i and i not in selected})
    source = {"kind": "held-out pool slice", "pool_rows": len(ids), "held_out_candidates": n_unselected,
              "size": config.eval_size, "seed": config.eval_seed, "clusters_from": clusters_from,
              "excluded": f"every instruction selected by {', '.join(compared)}"}
    return EvalSet(table, source)


def open_dataset(spec: str, split: str, what: str, revision: str | None = None):
    """A ``datasets.Dataset`` from a local Parquet/JSONL/JSON/CSV file, a ``save_to_disk`` folder, a
    Hub-shaped folder or a Hub dataset id (at ``revision``); ``what`` names the option in errors."""
    import datasets

    path = Path(spec).expanduser()
    try:
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise CompareError(f"{what} {spec}: unsupported file type {path.suffix!r} (use {', '.join(FILE_BUILDERS)})")
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        if path.is_dir() and (path / "state.json").is_file():
            ds = datasets.load_from_disk(str(path))
            return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        if path.is_dir():
            return datasets.load_dataset(str(path), split=split)
        if spec.startswith((".", "/", "~")) or path.suffix.lower() in FILE_BUILDERS:
            raise CompareError(f"{what} {spec}: no such file or folder")
        return datasets.load_dataset(spec, split=split, revision=revision)
    except CompareError:
        raise
    except Exception as e:  # offline, unknown repo, no such split: one line names it
        raise CompareError(f"{what} {spec}: cannot load it ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def load_eval_file(config: EvalConfig) -> EvalSet:
    """The prompts of ``config.eval_file`` (a local file, or a Hub dataset id), cut to a seeded
    draw of ``eval_size`` when longer. Duplicate and empty prompts are dropped."""
    spec = config.eval_file
    ds = open_dataset(spec, config.eval_split, "--eval-file")
    try:
        column = find_instruction(ds.column_names, config.eval_column)
    except CrowdError as e:
        raise CompareError(f"--eval-file {spec}: {e}; name it with --eval-column") from None
    texts = read_columns(ds, [column]).column(0).to_pylist()
    ids = [content_id(t) if isinstance(t, str) else "" for t in texts]
    pick = held_out_indices(ids, texts, set(), config.eval_size, config.eval_seed)
    table = pa.table({"prompt_id": [ids[i] for i in pick], "instruction": [texts[i] for i in pick],
                      "cluster": pa.array(np.full(len(pick), -1), pa.int64())}, schema=EVAL_SCHEMA)
    source = {"kind": "file", "file": spec, "split": config.eval_split, "column": column,
              "rows": len(texts), "size": config.eval_size, "seed": config.eval_seed}
    return EvalSet(table, source)
