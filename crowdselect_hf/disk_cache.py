"""Embeddings and clusterings kept on disk, so that a new process re-selecting from the same pool
(another ``k``, other weights, another strategy) skips the embedder and KMeans.

An entry is a ``<key>.json`` file (what it holds and how to check it) and one ``<key>.<name>.npy``
file per array, written to a temporary name and moved into place (atomic on one file system; the
JSON last). The key hashes what the arrays depend on: for embeddings, the embedder's identity and
the fingerprint of the texts (:func:`text_fingerprint`); for a clustering, the embeddings' key, the
rows clustered and the KMeans settings. On reading, the shape, dtype and checksum of every array
and the recorded identity are verified; an entry that fails is logged in one line, removed, and
recomputed by the caller. The folder is kept under a size cap by removing the least recently used
entries.

Where: next to the dataset's cache files (``<dir of ds.cache_files[0]>/crowdselect-cache``) when
that folder is writable, else ``$CROWDSELECT_HOME/cache`` (in-memory datasets).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

logger = logging.getLogger(__name__)

FORMAT = 1
"""Version of the entry layout; entries of another version are recomputed."""
FOLDER = "crowdselect-cache"
DEFAULT_MAX_GB = 10.0
"""Default size cap of one cache folder, in GiB."""
_STALE_TMP_S = 3600


def _hasher():
    import xxhash  # a dependency of datasets

    return xxhash.xxh3_128()


def text_fingerprint(texts: pa.ChunkedArray | pa.Array) -> str:
    """A content hash of a string column: its lengths and its UTF-8 bytes, read from the Arrow
    buffers (no Python string is built), the same however the column is chunked.

    Example:
        >>> a = text_fingerprint(pa.chunked_array([["ab", "c"]]))
        >>> a == text_fingerprint(pa.chunked_array([["ab"], ["c"]], pa.large_string()))
        True
        >>> a == text_fingerprint(pa.array(["a", "bc"]))
        False
    """
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    lengths, data = _hasher(), _hasher()
    n = 0
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            raise TypeError(f"text_fingerprint needs a string column, got {chunk.type}")
        if chunk.null_count:
            raise ValueError("text_fingerprint: the column has nulls")
        if len(chunk) == 0:
            continue
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths.update(np.diff(offsets).astype("<i8").tobytes())
        body = chunk.buffers()[2]
        if body is not None:
            data.update(memoryview(body)[int(offsets[0]) : int(offsets[-1])])
        n += len(chunk)
    return _digest("texts", n, lengths.hexdigest(), data.hexdigest())


def array_fingerprint(X: np.ndarray) -> str:
    """A content hash of an array: dtype, shape and bytes.

    Example:
        >>> array_fingerprint(np.zeros((2, 3), np.float32)) == array_fingerprint(np.zeros((3, 2), np.float32))
        False
    """
    X = np.ascontiguousarray(X)
    h = _hasher()
    h.update(memoryview(X).cast("B"))
    return _digest("array", X.dtype.str, X.shape, h.hexdigest())


def entry_key(*parts: Any) -> str:
    """The key of an entry: a hash of its parts (strings, numbers, tuples; JSON-encoded).

    Example:
        >>> entry_key("a", 1) == entry_key("a", 1) != entry_key("a", 2)
        True
    """
    return _digest(*parts)


def _digest(*parts: Any) -> str:
    h = _hasher()
    h.update(json.dumps(parts, separators=(",", ":"), default=str).encode("utf-8"))
    return h.hexdigest()


def cache_dir_for(ds: Any) -> Path:
    """Where the cache entries of dataset ``ds`` go: beside its first cache file when that folder
    is writable, else ``$CROWDSELECT_HOME/cache``.

    Example:
        >>> from datasets import Dataset
        >>> cache_dir_for(Dataset.from_dict({"a": [1]})).name
        'cache'
    """
    for f in getattr(ds, "cache_files", None) or ():
        parent = Path(f["filename"]).parent
        if os.access(parent, os.W_OK):
            return parent / FOLDER
        break
    from .names import crowdselect_home

    return crowdselect_home() / "cache"


class DiskCache:
    """Entries of arrays in one folder, verified on reading, under a size cap.

    Args:
        directory: the folder (created when first written).
        max_gb: size cap in GiB; least recently used entries are removed beyond it.

    Example:
        >>> import tempfile
        >>> disk = DiskCache(tempfile.mkdtemp())
        >>> disk.save("k1", {"x": np.arange(3.0)}, {"what": "demo"})
        True
        >>> disk.load("k1", {"what": "demo"})[0]["x"].tolist(), disk.load("k1", {"what": "other"})
        ([0.0, 1.0, 2.0], None)
    """

    def __init__(self, directory: str | os.PathLike, max_gb: float = DEFAULT_MAX_GB):
        self.directory = Path(directory)
        self.max_bytes = int(max_gb * 2**30)

    def __repr__(self):
        return f"DiskCache({str(self.directory)!r}, max_gb={self.max_bytes / 2**30:g})"

    def _meta_path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _array_path(self, key: str, name: str) -> Path:
        return self.directory / f"{key}.{name}.npy"

    def load(self, key: str, expect: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The arrays of entry ``key`` (read-only, memory-mapped) and its record, or ``None`` when
        there is none, or when it fails a check (then it is logged and removed).

        Args:
            key: the entry.
            expect: fields its record must hold with these values (identity, fingerprint, ...).
        """
        path = self._meta_path(key)
        if not path.exists():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            problem = _check_meta(meta, key, expect)
            arrays = {}
            for name, spec in (meta.get("arrays") or {}).items() if problem is None else ():
                X = np.load(self._array_path(key, name), mmap_mode="r", allow_pickle=False)
                if list(X.shape) != spec["shape"] or X.dtype.str != spec["dtype"]:
                    problem = f"array {name!r} is {X.dtype.str}{list(X.shape)}, the record says {spec['dtype']}{spec['shape']}"
                    break
                if array_fingerprint(X) != spec["checksum"]:
                    problem = f"array {name!r} does not match its checksum"
                    break
                arrays[name] = X
        except (OSError, ValueError, KeyError, TypeError) as e:
            problem = f"{type(e).__name__}: {e}"
        if problem is not None:
            logger.warning("cache entry %s in %s is unusable (%s); recomputing it", key, self.directory, problem)
            self.remove(key)
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return arrays, meta

    def save(self, key: str, arrays: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> bool:
        """Write entry ``key`` (its arrays, then its record), then enforce the size cap. Returns
        whether it was written: an entry larger than the cap, or a folder that cannot be
        written, is skipped with a log line."""
        size = sum(np.asarray(X).nbytes for X in arrays.values())
        if size > self.max_bytes:
            logger.info("not caching %s (%.2f GiB): over the cache cap of %.2f GiB", key, size / 2**30,
                        self.max_bytes / 2**30)
            return False
        specs = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for name, X in arrays.items():
                X = np.ascontiguousarray(X)
                specs[name] = {"shape": list(X.shape), "dtype": X.dtype.str, "checksum": array_fingerprint(X)}
                _atomic_write(self._array_path(key, name), lambda f, X=X: np.save(f, X, allow_pickle=False))
            meta = {"format": FORMAT, "key": key, **dict(record), "arrays": specs, "written": time.time()}
            text = json.dumps(meta, indent=1, default=str)
            _atomic_write(self._meta_path(key), lambda f: f.write(text.encode("utf-8")))
        except OSError as e:
            logger.warning("cannot write the cache entry %s to %s (%s); continuing without it", key, self.directory, e)
            return False
        self.enforce_cap(keep=key)
        return True

    def remove(self, key: str) -> None:
        for path in [self._meta_path(key), *self.directory.glob(f"{key}.*.npy")]:
            try:
                path.unlink()
            except OSError:
                pass

    def entries(self) -> list[tuple[str, float, int]]:
        """``(key, last use, bytes)`` of every entry, least recently used first."""
        out = []
        for meta in self.directory.glob("*.json"):
            key = meta.stem
            try:
                size = meta.stat().st_size + sum(p.stat().st_size for p in self.directory.glob(f"{key}.*.npy"))
                out.append((key, meta.stat().st_mtime, size))
            except OSError:
                continue
        return sorted(out, key=lambda e: e[1])

    def enforce_cap(self, keep: str | None = None) -> None:
        """Remove least recently used entries (never ``keep``) until the folder fits the cap, and
        temporary files left by interrupted writes."""
        now = time.time()
        for tmp in self.directory.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink()
            except OSError:
                pass
        entries = self.entries()
        total = sum(size for _, _, size in entries)
        for key, _, size in entries:
            if total <= self.max_bytes:
                break
            if key != keep:
                self.remove(key)
                total -= size
                logger.info("removed cache entry %s (%.1f MB) to stay under %.2f GiB", key, size / 1e6,
                            self.max_bytes / 2**30)


def _check_meta(meta: Any, key: str, expect: Mapping[str, Any]) -> str | None:
    if not isinstance(meta, dict):
        return "its record is not a JSON object"
    if meta.get("format") != FORMAT or meta.get("key") != key:
        return f"format {meta.get('format')!r}, key {meta.get('key')!r}"
    for field, value in expect.items():
        if meta.get(field) != value:
            return f"{field} is {meta.get(field)!r}, expected {value!r}"
    return None


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
