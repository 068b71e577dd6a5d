"""How embeddings are checked, keyed and kept: the contract every embedder's output meets
(float32 rows of unit L2 norm, :func:`l2_normalise`), and :class:`EmbeddingCache`, which keeps
embeddings and their KMeans clusterings in memory and on disk (:mod:`crowdselect_hf.disk_cache`),
so that re-selecting with other weights, ``k`` or strategy, even from a new process, neither
re-embeds nor re-clusters.

An embedding entry is keyed by the embedder's identity (model, revision, parameters, the library
versions that change its output) and the content fingerprint of the texts; a clustering entry by
the embeddings' key, the rows clustered and the KMeans settings.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .clustering import SAMPLE_ROWS, Clustering, fit_kmeans
from .clustering import VERSION as CLUSTERING_VERSION
from .disk_cache import DEFAULT_MAX_GB, DiskCache, array_fingerprint, entry_key, text_fingerprint

logger = logging.getLogger(__name__)

MEMORY_ONLY = "memory:"
"""Prefix of the keys of embeddings that are never written to disk."""


class EmbeddingError(ValueError):
    """An embedder cannot be resolved, or its input or output is unusable."""


def l2_normalise(X: np.ndarray, where: str = "embeddings") -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32. A zero or non-finite row is an error.

    A float32 matrix whose rows already have unit norm is returned as is (no copy: pools of
    millions of rows are large).

    Example:
        >>> l2_normalise(np.array([[3.0, 4.0]]))
        array([[0.6, 0.8]], dtype=float32)
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise EmbeddingError(f"{where} must be a 2-D [rows, dims] matrix, got shape {X.shape}")
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    # Squared norms without an [n, d] temporary; a NaN/inf anywhere in a row makes it non-finite.
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64) if X.size else np.zeros(len(X))
    finite = np.isfinite(sq)
    if not finite.all():
        raise EmbeddingError(f"{where}: row {int(np.argmin(finite))} holds NaN or inf")
    if (sq == 0).any():
        raise EmbeddingError(f"{where}: row {int(np.argmin(sq))} is all zeros and cannot be normalised")
    if np.abs(sq - 1.0).max(initial=0.0) < 1e-5:
        return X
    return X / np.sqrt(sq).astype(np.float32)[:, None]


def check_texts(texts: Sequence[Any]) -> list[str]:
    """``texts`` as a list, every one a string (else an error naming the first that is not)."""
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise EmbeddingError(f"text {i} to embed is {type(t).__name__} ({t!r}), expected a string")
    return out


def arrow_texts(texts: Sequence[str] | Any) -> Any:
    """``texts`` as an Arrow string column without nulls (a list is checked and converted).

    Example:
        >>> arrow_texts(["a", "b"]).type
        DataType(large_string)
    """
    import pyarrow as pa

    if isinstance(texts, pa.Array):
        texts = pa.chunked_array([texts])
    if isinstance(texts, pa.ChunkedArray):
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise EmbeddingError(f"texts to embed must be strings, got an Arrow column of {texts.type}")
        if texts.null_count:
            first = int(np.argmax(texts.is_null().to_numpy(zero_copy_only=False)))
            raise EmbeddingError(f"text {first} to embed is None, expected a string")
        return texts
    return pa.chunked_array([pa.array(check_texts(texts), pa.large_string())])


@functools.lru_cache(maxsize=None)
def library_versions(*packages: str) -> str:
    """``"numpy=2.4.6,scipy=1.17.1"``: the installed versions of ``packages`` (for cache keys)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for p in packages:
        try:
            out.append(f"{p}={version(p)}")
        except PackageNotFoundError:
            out.append(f"{p}=none")
    return ",".join(out)


def texts_key(name: str, texts: Sequence[str] | Any) -> str:
    """The cache key of ``texts`` embedded by the embedder whose identity is ``name``.

    Example:
        >>> texts_key("tfidf", ["a", "b"]) == texts_key("tfidf", ["a", "b"]) != texts_key("tfidf", ["ab"])
        True
    """
    return entry_key("embeddings", name, text_fingerprint(arrow_texts(texts)))


def embedder_identity(embedder: Any) -> str | None:
    """What an embedder's vectors depend on: its ``identity`` when it has one (``None``: not
    cacheable on disk), else its ``name`` (a custom embedder must change its name when its output
    changes)."""
    return embedder.identity if hasattr(embedder, "identity") else str(embedder.name)


class EmbeddingCache:
    """Embeddings by (embedder identity, texts), and clusterings by (embeddings, rows clustered,
    KMeans settings): the last ``max_items`` of each in memory and, when ``on_disk``, as verified
    files (:mod:`crowdselect_hf.embedding_cache`) that a new process finds again. Returned arrays
    are read-only.

    Args:
        directory: the folder of the disk entries; ``None`` with ``on_disk``: beside each
            dataset's cache files (the ``where`` the selection passes), else
            ``$CROWDSELECT_HOME/cache``.
        max_items: entries of each kind kept in memory.
        on_disk: keep entries on disk (default: when ``directory`` is given).
        max_gb: size cap of a disk folder in GiB (least recently used entries go first).

    Example:
        >>> class Lengths:
        ...     name = "lengths"
        ...     def embed(self, texts):
        ...         return np.array([[len(t), 1.0] for t in texts])
        >>> cache = EmbeddingCache()
        >>> E = cache.embed(Lengths(), ["a b", "b c d"])
        >>> cache.embed(Lengths(), ["a b", "b c d"]) is E, cache.hits, E.dtype
        (True, 1, dtype('float32'))
    """

    def __init__(self, directory: str | os.PathLike | None = None, max_items: int = 8, *, on_disk: bool | None = None,
                 max_gb: float = DEFAULT_MAX_GB):
        self.directory = Path(directory) if directory is not None else None
        self.max_items = max_items
        self.on_disk = self.directory is not None if on_disk is None else bool(on_disk)
        self.max_gb = max_gb
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._clusterings: OrderedDict[str, Clustering] = OrderedDict()
        self.hits = self.misses = 0
        self.cluster_hits = self.cluster_misses = 0

    def __repr__(self):
        where = self.directory or ("beside each dataset" if self.on_disk else "memory only")
        return f"EmbeddingCache({str(where)!r}, max_items={self.max_items}, max_gb={self.max_gb:g})"

    def disk(self, where: str | os.PathLike | None = None) -> DiskCache | None:
        """The disk folder used for a dataset whose cache folder is ``where`` (``None``: no disk)."""
        if not self.on_disk:
            return None
        if self.directory is not None:
            return DiskCache(self.directory, self.max_gb)
        if where is None:
            from .names import crowdselect_home

            where = crowdselect_home() / "cache"
        return DiskCache(where, self.max_gb)

    def clear(self) -> None:
        """Forget the entries held in memory (files stay)."""
        self._items.clear()
        self._clusterings.clear()

    def embed(self, embedder: Any, texts: Sequence[str] | Any, where: str | os.PathLike | None = None) -> np.ndarray:
        """``embedder.embed(texts)``, or the cached result of the same call."""
        return self.embeddings(embedder, texts, where)[0]

    def embeddings(self, embedder: Any, texts: Sequence[str] | Any,
                   where: str | os.PathLike | None = None) -> tuple[np.ndarray, str]:
        """:meth:`embed` and the entry's key (which :meth:`clusters` takes)."""
        column = arrow_texts(texts)
        fingerprint = text_fingerprint(column)
        identity = embedder_identity(embedder)
        # An embedder without an identity is cached in memory only, and so are its clusterings.
        key = entry_key("embeddings", identity, fingerprint) if identity else MEMORY_ONLY + entry_key(embedder.name, fingerprint)
        disk = self.disk(where) if identity is not None else None
        X = _remember(self._items, key, None, self.max_items)
        if X is None and disk is not None:
            found = disk.load(key, {"kind": "embeddings", "embedder": identity, "texts": fingerprint})
            if found is not None and found[0]["X"].shape[0] == len(column):
                X = _remember(self._items, key, found[0]["X"], self.max_items)
                logger.info("embeddings of %d texts by %s: read from the cache in %s", len(column), embedder.name,
                            disk.directory)
        if X is not None:
            self.hits += 1
            return X, key
        self.misses += 1
        X = embedder.embed(column if getattr(embedder, "accepts_arrow", False) else column.to_pylist())
        X = l2_normalise(X, f"embeddings of {embedder.name}")
        if X.shape[0] != len(column):
            raise EmbeddingError(f"embedder {embedder.name!r} returned {X.shape[0]} rows for {len(column)} texts")
        X.setflags(write=False)
        if disk is not None and disk.save(key, {"X": X}, {"kind": "embeddings", "embedder": identity,
                                                          "texts": fingerprint, "embedder_name": embedder.name}):
            logger.info("embeddings of %d texts by %s: cached in %s", len(column), embedder.name, disk.directory)
        return _remember(self._items, key, X, self.max_items), key

    def clusters(self, X: np.ndarray, rows: np.ndarray, *, n_clusters: int, seed: int, algorithm: str = "auto",
                 n_init: int = 20, key: str | None = None, where: str | os.PathLike | None = None) -> Clustering:
        """``fit_kmeans(X[rows], ...)``, or the cached result of the same call.

        Args:
            X: the embeddings.
            rows: the rows of ``X`` to cluster (the pool's eligible rows).
            n_clusters, seed, algorithm, n_init: as :func:`~crowdselect_hf.clustering.fit_kmeans`.
            key: the embeddings' key from :meth:`embeddings` (default: a hash of ``X``).
            where: the dataset's cache folder (see :meth:`disk`).
        """
        rows = np.asarray(rows, dtype=np.int64)
        source = key or array_fingerprint(X)
        ckey = entry_key("kmeans", source, array_fingerprint(rows), int(n_clusters), int(seed), algorithm, int(n_init),
                         SAMPLE_ROWS, CLUSTERING_VERSION, library_versions("scikit-learn"))
        found = _remember(self._clusterings, ckey, None, self.max_items)
        disk = self.disk(where) if not source.startswith(MEMORY_ONLY) else None
        if found is None and disk is not None:
            entry = disk.load(ckey, {"kind": "kmeans", "embeddings": source})
            arrays, record = entry if entry is not None else ({}, {})
            if entry is not None and arrays["labels"].shape == rows.shape \
                    and arrays.get("central", np.empty(0)).shape == arrays["centers"].shape[:1]:
                found = Clustering(labels=np.asarray(arrays["labels"], dtype=np.int64), centers=np.asarray(arrays["centers"]),
                                   inertia=float(record["inertia"]), algorithm=str(record["algorithm"]),
                                   central=np.asarray(arrays["central"], dtype=np.int64))
                _remember(self._clusterings, ckey, found, self.max_items)
                logger.info("KMeans of %d rows into %d clusters: read from the cache in %s", len(rows), n_clusters,
                            disk.directory)
        if found is not None:
            self.cluster_hits += 1
            return found
        self.cluster_misses += 1
        c = fit_kmeans(X if rows.size == len(X) else X[rows], n_clusters=int(n_clusters), seed=int(seed),
                       algorithm=algorithm, n_init=int(n_init))
        if disk is not None:
            disk.save(ckey, {"labels": c.labels, "centers": c.centers, "central": c.central},
                      {"kind": "kmeans", "embeddings": source, "inertia": c.inertia, "algorithm": c.algorithm})
        return _remember(self._clusterings, ckey, c, self.max_items)


def _remember(items: OrderedDict, key: str, value: Any, max_items: int) -> Any:
    """Store ``value`` under ``key`` (``None``: only look it up), most recent last; returns the entry."""
    if value is None:
        if key in items:
            items.move_to_end(key)
            return items[key]
        return None
    items[key] = value
    items.move_to_end(key)
    while len(items) > max_items:
        items.popitem(last=False)
    return value


default_cache = EmbeddingCache(on_disk=True)
"""The process-wide cache :func:`~crowdselect_hf.selection.crowd_select` uses by default: in
memory, and on disk beside each dataset's cache files."""
