"""The work folder's stage caches: every stage writes its results as Parquet tagged with a key
(the hash of everything that determines them), so a re-run reuses what matches and redoes only
what is missing or stale.

Layout of ``<out>/`` (default ``<curated folder>/_compare/``)::

    eval.parquet                 the evaluation prompts
    students/<config>/           TRL's output_dir (checkpoint-*), plan.json, final/ (the trained student)
    answers/<config>.parquet     the student's answers (written after every chunk: resumes mid-stage)
    rewards/<config>.parquet     the reward judge's scores of those answers
    judgments/<config>.parquet   the pairwise judge's replies, both orders, against the baseline
    compare.json                 the result (:mod:`.record`)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from ..jsonable import json_ready

logger = logging.getLogger(__name__)

KEY = b"crowdselect.compare.key"
SETTINGS = b"crowdselect.compare.settings"
COMPLETE = b"crowdselect.compare.complete"


def stage_key(*parts: Any) -> str:
    """A short, stable hash of JSON-able parts.

    Example:
        >>> stage_key({"lr": 1e-5}, "a") == stage_key({"lr": 1e-5}, "a") != stage_key({"lr": 2e-5}, "a")
        True
    """
    text = json.dumps(json_ready(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


def table_hash(table: pa.Table, columns: tuple[str, ...] | None = None) -> str:
    """A content hash of some columns of a table (their values, not the file's bytes)."""
    h = hashlib.blake2b(digest_size=10)
    for name in columns or tuple(table.column_names):
        h.update(name.encode() + b"\0")
        h.update(json.dumps(table.column(name).to_pylist(), ensure_ascii=False, default=str).encode("utf-8"))
    return h.hexdigest()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (a crash leaves the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(json_ready(dict(data)), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def save_table(path: Path, table: pa.Table, key: str, settings: Mapping[str, Any], complete: bool) -> None:
    """Write a stage's table atomically, tagged with its key, its settings and whether it is complete."""
    meta = dict(table.schema.metadata or {})
    meta.update({KEY: key.encode(), SETTINGS: json.dumps(json_ready(dict(settings)), sort_keys=True).encode(),
                 COMPLETE: b"1" if complete else b"0"})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    os.replace(tmp, path)


def load_table(path: Path, key: str, what: str) -> tuple[pa.Table | None, bool]:
    """``(table, complete)`` of a cached stage when its key matches; ``(None, False)`` otherwise
    (no file, or a stale one: its settings differ, and the log says which)."""
    if not path.is_file():
        return None, False
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        logger.warning("%s: the cache %s cannot be read (%s); recomputing it", what, path, e)
        return None, False
    meta = table.schema.metadata or {}
    if meta.get(KEY, b"").decode() != key:
        logger.warning("%s: the cache %s was made with other settings or inputs; recomputing it", what, path)
        return None, False
    rest = {k: v for k, v in meta.items() if k not in (KEY, SETTINGS, COMPLETE)}
    return table.replace_schema_metadata(rest or None), meta.get(COMPLETE) == b"1"


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``name: old → new`` for every leaf that differs.

    Example:
        >>> settings_diff({"train": {"lr": 1e-5, "seed": 1}}, {"train": {"lr": 2e-5, "seed": 1}})
        ['train.lr: 1e-05 → 2e-05']
    """
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += settings_diff(a, b, f"{prefix}{k}.")
        elif json_ready(a) != json_ready(b):
            out.append(f"{prefix}{k}: {a!r} → {b!r}")
    return out
