"""TF-IDF and LSA at pool scale: the numbers behind the default ``"tfidf"`` embedder.

:func:`tfidf_matrix` builds the same matrix as scikit-learn's
``TfidfVectorizer(sublinear_tf=True, ngram_range=..., max_features=..., dtype=np.float32,
token_pattern=r"(?u)\\b\\w+\\b")``, but tokenises, forms n-grams and builds the vocabulary with
Arrow's C++ kernels, a chunk of rows at a time (no Python string per token).
:func:`lsa` reduces it with a randomized SVD fitted on a sample of rows and applied to all rows in
chunks, in float32.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .progress import progress_bar

VERSION = 1
"""Of the computation below: part of the embedder's cache identity; raise it when results change."""
CHUNK_ROWS = 65_536
"""Rows tokenised, or projected, at a time."""
WORKERS = 2
"""Threads that tokenise chunks, or multiply row blocks, at once (the kernels release the GIL).
Fixed, not the machine's core count: the blocks set the order of the sums, so the embeddings are
the same on every machine."""
WORD_SEPARATORS = r"[^\p{L}\p{N}_]+"
"""What is not part of a word: Python's ``\\w`` (letters, numbers, underscore) negated, in RE2."""


def tfidf_matrix(texts: pa.ChunkedArray, ngram_range: tuple[int, int] = (1, 2), max_features: int | None = 100_000,
                 progress: bool = True) -> tuple[Any, pa.Array]:
    """Sublinear TF-IDF of word n-grams, rows L2-normalised, as a float32 CSR matrix.

    Tokens are lower-cased runs of letters, digits and underscores; n-grams join consecutive
    tokens of one text with a space; the vocabulary keeps the ``max_features`` n-grams most
    frequent over the corpus, ordered alphabetically (ties at the cut broken as scikit-learn
    does); ``idf = ln((1 + n) / (1 + df)) + 1``; ``tf = 1 + ln(count)``. Lower-casing is Arrow's,
    character by character: a dotted capital I and a word-final sigma come out as ``i`` and
    ``σ``, where Python's ``str.lower`` gives ``i̇`` and ``ς``.

    Words are dictionary-encoded by Arrow, and an n-gram is the pair (its first n-1 words' code,
    its last word's alphabetical rank), encoded again: no n-gram string is built. Because a space
    sorts before every word character, the alphabetical order of n-grams is the order of their
    words' ranks, so the columns come out in scikit-learn's order.

    Args:
        texts: the texts, an Arrow string array (chunked or not) without nulls.
        ngram_range: the smallest and largest n.
        max_features: vocabulary size (``None``: every n-gram).
        progress: show a bar over chunks of rows.

    Returns:
        ``(matrix, vocabulary)``: a ``scipy.sparse.csr_matrix`` ``[len(texts), n_features]`` and
        the n-gram of each column.

    Example:
        >>> M, vocab = tfidf_matrix(pa.chunked_array([["Red apple", "green APPLE"]]))
        >>> vocab.to_pylist(), M.shape
        (['apple', 'green', 'green apple', 'red', 'red apple'], (2, 5))
    """
    import scipy.sparse as sp

    texts = texts if isinstance(texts, pa.ChunkedArray) else pa.chunked_array([texts])
    n = len(texts)
    lo, hi = ngram_range
    starts = list(range(0, n, CHUNK_ROWS))
    # Arrow's kernels release the GIL: WORKERS chunks are tokenised at once.
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        parts = list(progress_bar(pool.map(lambda s: _words(texts.slice(s, CHUNK_ROWS)), starts), total=len(starts),
                                  desc="tf-idf: tokenising", unit="chunk", enabled=progress))
    encoded = pa.chunked_array([words for words, _ in parts], type=pa.dictionary(pa.int32(), pa.large_string()))
    encoded = encoded.unify_dictionaries()
    words = encoded.chunk(0).dictionary if encoded.num_chunks else pa.array([], pa.large_string())
    by_rank = pc.sort_indices(words).to_numpy()
    rank = np.empty(len(words), dtype=np.int32)
    rank[by_rank] = np.arange(len(words))
    rows = [r for _, r in parts]
    # Per n: the code of the n-gram starting at each word (-1: it crosses a text's end), and the
    # words' ranks of each distinct n-gram ([G, n]).
    codes = [rank[c.indices.to_numpy(zero_copy_only=False)] for c in encoded.chunks]
    levels = {1: (codes, np.arange(len(words), dtype=np.int64)[:, None])}
    for size in range(2, hi + 1):
        levels[size] = _next_level(levels[size - 1], codes, rows, size, len(words))
    kept_levels = [levels[size] for size in range(lo, hi + 1)]
    ranks = np.concatenate([np.pad(tuples, ((0, 0), (0, hi - tuples.shape[1])), constant_values=-1)
                            for _, tuples in kept_levels]) if kept_levels else np.zeros((0, hi), np.int64)
    offsets = np.cumsum([0] + [len(t) for _, t in kept_levels])
    term_counts = np.concatenate([np.bincount(np.concatenate([c[c >= 0] for c in level_codes] or [np.zeros(0, np.int32)]),
                                              minlength=len(tuples)) for level_codes, tuples in kept_levels] or [[]])
    alphabetical = np.lexsort(ranks.T[::-1]) if len(ranks) else np.zeros(0, np.int64)
    kept = alphabetical
    if max_features is not None and len(ranks) > max_features:
        # scikit-learn's cut, on the same float32 column sums in the same (alphabetical) order,
        # so that ties fall the same way.
        order = (-term_counts[alphabetical].astype(np.float32)).argsort()[:max_features]
        kept = alphabetical[np.sort(order)]
    column = np.full(len(ranks), -1, dtype=np.int64)
    column[kept] = np.arange(len(kept))
    blocks = []
    for i, s in enumerate(starts):
        r_all, c_all = [], []
        for (level_codes, _), off in zip(kept_levels, offsets):
            c = level_codes[i]
            valid = c >= 0
            cols = column[c[valid] + off]
            keep = cols >= 0
            r_all.append(rows[i][: len(c)][valid][keep])
            c_all.append(cols[keep])
        r_chunk, c_chunk = np.concatenate(r_all), np.concatenate(c_all)
        # COO -> CSR sums the repeated (row, n-gram) pairs: the counts.
        blocks.append(sp.coo_matrix((np.ones(len(r_chunk), np.float32), (r_chunk, c_chunk)),
                                    shape=(min(CHUNK_ROWS, n - s), len(kept))).tocsr())
    counts = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, len(kept)), dtype=np.float32)
    df = np.bincount(counts.indices, minlength=len(kept))
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    data = (1.0 + np.log(counts.data)).astype(np.float32) * idf[counts.indices]
    lengths = np.diff(counts.indptr)
    filled = np.flatnonzero(lengths)
    norms = np.ones(n, dtype=np.float32)
    if len(filled):  # each filled row's entries are one run of data, from its start to the next filled row's
        norms[filled] = np.sqrt(np.add.reduceat(data * data, counts.indptr[filled]))
    counts.data = data * np.repeat(1.0 / norms, lengths)
    return counts, _vocabulary(words.take(pa.array(by_rank)), ranks[kept])


def _words(texts: pa.ChunkedArray) -> tuple[pa.DictionaryArray, np.ndarray]:
    """The words of a chunk of texts, dictionary-encoded, and the row of each."""
    split = pc.split_pattern_regex(pc.utf8_lower(texts.combine_chunks().cast(pa.large_string())), WORD_SEPARATORS)
    flat = pc.list_flatten(split)
    rows = pc.list_parent_indices(split).to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.binary_length(flat), 0)
    rows = rows[nonempty.to_numpy(zero_copy_only=False)].astype(np.int32)
    return pc.dictionary_encode(flat.filter(nonempty)), rows


def _next_level(level, word_ranks, rows, size: int, n_words: int):
    """The (size)-grams from the (size-1)-grams: code each (code of the first size-1 words, rank
    of the last word) pair, over all chunks at once."""
    prev_codes, prev_ranks = level
    keys, valids = [], []
    for c, r, row in zip(prev_codes, word_ranks, rows):
        m = max(len(r) - size + 1, 0)
        valid = (c[:m] >= 0) & (row[size - 1 :] == row[:m])
        keys.append(c[:m][valid].astype(np.int64) * n_words + r[size - 1 :][valid])
        valids.append(valid)
    encoded = pc.dictionary_encode(pa.array(np.concatenate(keys) if keys else np.zeros(0, np.int64)))
    distinct = encoded.dictionary.to_numpy()
    ranks = np.concatenate([prev_ranks[distinct // n_words], (distinct % n_words)[:, None]], axis=1)
    flat = encoded.indices.to_numpy(zero_copy_only=False)
    codes, at = [], 0
    for valid in valids:
        c = np.full(len(valid), -1, dtype=np.int32)
        c[valid] = flat[at : at + int(valid.sum())]
        at += int(valid.sum())
        codes.append(c)
    return codes, ranks


def _vocabulary(sorted_words: pa.Array, ranks: np.ndarray) -> pa.Array:
    """The n-gram strings of ``ranks`` rows (word ranks, -1 padded), in that order."""
    space = pa.scalar(" ", pa.large_string())
    width = (ranks >= 0).sum(axis=1)
    pieces = []
    for w in np.unique(width):
        where = np.flatnonzero(width == w)
        joined = pc.binary_join_element_wise(*(sorted_words.take(pa.array(ranks[where, j])) for j in range(w)), space)
        pieces.append((where, joined))
    if not pieces:
        return pa.array([], pa.large_string())
    where = np.concatenate([p[0] for p in pieces])
    values = pa.concat_arrays([p[1] for p in pieces])
    return values.take(pa.array(np.argsort(where)))


def lsa(M: Any, n_components: int, seed: int = 42, fit_rows: int | None = 20_000, n_iter: int = 4,
        oversample: int = 10, progress: bool = True) -> np.ndarray:
    """Latent semantic analysis: ``M`` projected on the top right singular vectors of a random
    sample of its rows (all rows when ``fit_rows`` is ``None`` or larger than ``M``).

    The singular vectors come from a randomized SVD (Halko et al.: ``n_iter`` power iterations,
    each re-orthonormalised by Cholesky QR, ``oversample`` extra columns), in float32, on one BLAS
    thread; the projection of all rows runs in chunks, so memory stays at the sparse matrix plus
    the output.

    Args:
        M: ``[n, F]`` sparse CSR matrix.
        n_components: output dimension (capped by the sample size and its vocabulary).
        seed: seed of the row sample and of the random projection.
        fit_rows: rows of the sample the SVD is fitted on.
        n_iter: power iterations.
        oversample: extra random columns of the range finder.
        progress: show progress bars.

    Returns:
        ``[n, d]`` float32 (``d <= n_components``; 0 columns when the input allows none).

    Example:
        >>> import scipy.sparse as sp
        >>> M = sp.csr_matrix(np.eye(4, 6, dtype=np.float32) + np.eye(4, 6, 1, dtype=np.float32))
        >>> lsa(M, 2, fit_rows=None).shape
        (4, 2)
    """
    from threadpoolctl import threadpool_limits

    n, n_features = M.shape
    rng = np.random.default_rng(seed)
    rows = None if fit_rows is None or n <= fit_rows else np.sort(rng.choice(n, size=fit_rows, replace=False))
    S = M if rows is None else M[rows]
    used = np.flatnonzero(np.bincount(S.indices, minlength=n_features))
    d = min(n_components, S.shape[0] - 1, len(used) - 1)
    if d < 1:
        return np.zeros((n, 0), dtype=np.float32)
    local = np.full(n_features, -1, dtype=np.int32)
    local[used] = np.arange(len(used))
    S = type(S)((S.data, local[S.indices], S.indptr), shape=(S.shape[0], len(used)))
    # Sparse products and BLAS calls release the GIL: row blocks run in WORKERS threads, each on
    # one BLAS thread (spinning BLAS threads on a busy machine made the fit several times slower).
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=WORKERS) as pool:
        V = _right_singular_vectors(_Blocks(S, pool), d, min(d + oversample, min(S.shape)), n_iter, rng, progress)
        W = np.zeros((n_features, d), dtype=np.float32)
        W[used] = V
        out = np.empty((n, d), dtype=np.float32)

        def project(s):
            out[s : s + CHUNK_ROWS] = M[s : s + CHUNK_ROWS] @ W

        starts = range(0, n, CHUNK_ROWS)
        for _ in progress_bar(pool.map(project, starts), total=len(starts), desc="lsa: projecting", unit="chunk",
                              enabled=progress):
            pass
    return out


class _Blocks:
    """A sparse matrix cut into row blocks, its products computed block by block in a thread pool."""

    def __init__(self, S, pool: ThreadPoolExecutor):
        self.shape = S.shape
        self.pool = pool
        cuts = np.linspace(0, S.shape[0], WORKERS + 1).astype(int)
        self.spans = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        self.blocks = [S[a:b] for a, b in self.spans]

    def times(self, Y: np.ndarray) -> np.ndarray:
        """``S @ Y``."""
        return np.vstack(list(self.pool.map(lambda B: B @ Y, self.blocks)))

    def transposed_times(self, Q: np.ndarray) -> np.ndarray:
        """``S.T @ Q``: the sum of each block's share."""
        parts = self.pool.map(lambda i: self.blocks[i].T @ Q[slice(*self.spans[i])], range(len(self.blocks)))
        return np.sum(list(parts), axis=0, dtype=np.float32)

    def orthonormal(self, Y: np.ndarray) -> np.ndarray:
        """An orthonormal basis of the columns of ``Y`` (rows cut as ``S``'s): Cholesky QR, the k x k
        Gram matrix summed over the blocks in float64; Householder when it is singular."""
        spans = [slice(a, b) for a, b in self.spans]
        grams = self.pool.map(lambda sl: Y[sl].T.astype(np.float64) @ Y[sl].astype(np.float64), spans)
        try:
            R = np.linalg.cholesky(np.sum(list(grams), axis=0)).T
        except np.linalg.LinAlgError:
            return np.linalg.qr(Y)[0]
        inverse = np.linalg.inv(R).astype(np.float32)
        return np.vstack(list(self.pool.map(lambda sl: Y[sl] @ inverse, spans)))


def _right_singular_vectors(S: _Blocks, d: int, k: int, n_iter: int, rng, progress: bool) -> np.ndarray:
    """The top ``d`` right singular vectors of sparse ``S`` ``[m, f]``, as ``[f, d]`` float32."""
    Q = S.orthonormal(S.times(rng.standard_normal((S.shape[1], k), dtype=np.float32)))
    for _ in progress_bar(range(n_iter), desc="lsa: fitting", unit="iter", enabled=progress):
        Q = S.orthonormal(S.times(S.transposed_times(Q)))
    Q = S.orthonormal(Q)  # twice: orthonormal to working precision (CholeskyQR2)
    Z = S.transposed_times(Q)  # [f, k] = B.T for B = Q.T S
    # B = U s V.T  =>  V = B.T U / s, with U, s from the small Gram matrix B B.T = Z.T Z.
    w, U = np.linalg.eigh((Z.T @ Z).astype(np.float64))
    top = np.argsort(w)[::-1][:d]
    s = np.sqrt(np.clip(w[top], 0.0, None))
    s[s == 0] = 1.0
    return Z @ (U[:, top] / s).astype(np.float32)
