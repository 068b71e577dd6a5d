"""The on-disk cache of embeddings and clusterings (crowdselect_hf.embedding_cache, disk_cache):
hits across processes, invalidation when the texts or the embedder change, recovery from corrupt
entries, the size cap, where entries go, and ``no_cache``."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from crowdselect_hf.disk_cache import FOLDER, DiskCache, cache_dir_for, text_fingerprint
from crowdselect_hf.embeddings import EmbeddingCache, TfidfEmbedder

GSM = Path(__file__).resolve().parent / "data" / "zeroeval_gsm"


class Counting(TfidfEmbedder):
    """The TF-IDF embedder, counting its runs."""

    def __init__(self, **kwargs):
        super().__init__(progress=False, **kwargs)
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        return super().embed(texts)


@pytest.fixture()
def texts(gsm_ds):
    return list(gsm_ds["instruction"])


def entries(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json"))


# -- across processes -----------------------------------------------------------------------------

SELECT = r"""
import json, sys
import datasets
import crowdselect_hf.clustering as clustering
import crowdselect_hf.tfidf as tfidf
from crowdselect_hf import Crowd, score
from crowdselect_hf.selection import crowd_select

calls = {"tfidf": 0, "kmeans": 0}
def counted(module, name, what):
    inner = getattr(module, name)
    def wrapper(*args, **kwargs):
        calls[what] += 1
        return inner(*args, **kwargs)
    setattr(module, name, wrapper)
counted(tfidf, "tfidf_matrix", "tfidf")
counted(clustering, "best_of_inits", "kmeans")
data, cache_dir, k, weights = sys.argv[1], sys.argv[2], int(sys.argv[3]), tuple(map(float, sys.argv[4].split(",")))
ds = datasets.load_dataset("parquet", data_files=data + "/zoo.parquet", split="train", cache_dir=cache_dir)
scored = score(ds, crowd=Crowd.from_file(data + "/models.json", reward="correct"))
sel = crowd_select(scored, k=k, weights=weights, n_clusters=4)
print(json.dumps({"calls": calls, "clusters": sel.clusters.tolist(), "picked": len(sel.indices),
                  "cache_file_dir": str(__import__("pathlib").Path(ds.cache_files[0]["filename"]).parent)}))
"""


def run_select(tmp_path, k: int, weights: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", SELECT, str(GSM), str(tmp_path / "hf-cache"), str(k), weights],
                          capture_output=True, text=True, env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_new_process_reuses_embeddings_and_clusters(tmp_path):
    first = run_select(tmp_path, 30, "1,1,2")
    assert first["calls"] == {"tfidf": 1, "kmeans": 1} and first["picked"] == 30
    folder = Path(first["cache_file_dir"]) / FOLDER
    assert len(entries(folder)) == 2  # the embeddings and the clustering, beside datasets' own cache files
    second = run_select(tmp_path, 50, "1,1,1")  # another process, another k and weights
    assert second["calls"] == {"tfidf": 0, "kmeans": 0} and second["picked"] == 50
    assert second["clusters"] == first["clusters"]


# -- invalidation ---------------------------------------------------------------------------------

@pytest.mark.unit
def test_changed_texts_or_embedder_miss(tmp_path, texts, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    emb = Counting(n_components=16)
    X = cache.embed(emb, texts)
    assert EmbeddingCache(tmp_path).embed(emb, texts) is not X and emb.calls == 1  # a fresh cache: from disk
    edited = texts[:5] + [texts[5] + "?"] + texts[6:]
    cache.embed(emb, edited)
    assert emb.calls == 2
    cache.embed(Counting(n_components=17), texts)
    cache.embed(Counting(n_components=16, seed=1), texts)
    cache.embed(Counting(n_components=16), texts[::-1])
    # Another library version is another identity (its output may differ).
    import crowdselect_hf.embeddings as embeddings

    monkeypatch.setattr(embeddings, "library_versions", lambda *p: "numpy=0.0")
    other = Counting(n_components=16)
    EmbeddingCache(tmp_path).embed(other, texts)
    assert other.calls == 1
    assert len(entries(tmp_path)) == 6
    np.testing.assert_array_equal(EmbeddingCache(tmp_path).embed(emb, texts), X)


@pytest.mark.unit
def test_clusterings_are_keyed_by_embeddings_rows_and_settings(tmp_path, texts):
    from crowdselect_hf.clustering import fit_kmeans

    cache = EmbeddingCache(tmp_path)
    X, key = cache.embeddings(Counting(n_components=16), texts)
    rows = np.arange(0, len(texts), 2)
    c = cache.clusters(X, rows, n_clusters=4, seed=0, n_init=3, key=key)
    ref = fit_kmeans(X[rows], n_clusters=4, seed=0, n_init=3, progress=False)
    np.testing.assert_array_equal(c.labels, ref.labels)
    assert c.inertia == pytest.approx(ref.inertia)
    again = EmbeddingCache(tmp_path).clusters(X, rows, n_clusters=4, seed=0, n_init=3, key=key)
    assert again.estimator is None and again.algorithm == c.algorithm  # read back from disk
    np.testing.assert_array_equal(again.labels, c.labels)
    np.testing.assert_array_equal(again.centers, c.centers)
    np.testing.assert_array_equal(again.central, c.central)  # the central rows travel with the clustering
    fresh = EmbeddingCache(tmp_path)
    fresh.clusters(X, rows, n_clusters=5, seed=0, n_init=3, key=key)
    fresh.clusters(X, rows, n_clusters=4, seed=1, n_init=3, key=key)
    fresh.clusters(X, rows[1:], n_clusters=4, seed=0, n_init=3, key=key)
    assert fresh.cluster_misses == 3 and fresh.cluster_hits == 0
    # Without an embeddings key (given vectors), the vectors' content is the key.
    assert fresh.clusters(np.array(X), rows, n_clusters=4, seed=0, n_init=3).labels.tolist() == c.labels.tolist()
    assert fresh.clusters(np.array(X), rows, n_clusters=4, seed=0, n_init=3) is not None and fresh.cluster_hits == 1


@pytest.mark.unit
def test_text_fingerprint():
    a = pa.array(["red apple", "green", "ça"])
    assert text_fingerprint(a) == text_fingerprint(pa.chunked_array([a[:1], a[1:]]))
    assert text_fingerprint(a) == text_fingerprint(a.cast(pa.large_string()))
    long = pa.array(["x", "red apple", "green", "ça", "y"])
    assert text_fingerprint(long.slice(1, 3)) == text_fingerprint(a)  # a slice's offsets
    assert text_fingerprint(pa.array(["red apple", "green", "çb"])) != text_fingerprint(a)
    assert text_fingerprint(pa.array(["ab", "c"])) != text_fingerprint(pa.array(["a", "bc"]))
    with pytest.raises(ValueError, match="nulls"):
        text_fingerprint(pa.array(["a", None]))


# -- corrupt entries ------------------------------------------------------------------------------

def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip(path: Path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "truncated array": lambda folder: truncate(next(folder.glob("*.X.npy"))),
    "flipped byte": lambda folder: flip(next(folder.glob("*.X.npy"))),
    "missing array": lambda folder: next(folder.glob("*.X.npy")).unlink(),
    "garbage record": lambda folder: next(folder.glob("*.json")).write_text("{not json"),
    "record of other texts": lambda folder: [p.write_text(p.read_text().replace('"texts": "', '"texts": "0'))
                                             for p in folder.glob("*.json")],
}


@pytest.mark.unit
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_entry_is_recomputed_with_one_log_line(tmp_path, texts, corruption, caplog):
    X = EmbeddingCache(tmp_path).embed(Counting(n_components=16), texts)
    CORRUPTIONS[corruption](tmp_path)
    emb = Counting(n_components=16)
    with caplog.at_level(logging.WARNING, logger="crowdselect_hf"):
        Y = EmbeddingCache(tmp_path).embed(emb, texts)
    assert emb.calls == 1
    np.testing.assert_array_equal(Y, X)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unusable" in warnings[0].getMessage() and "recomputing" in warnings[0].getMessage()
    caplog.clear()
    again = Counting(n_components=16)
    with caplog.at_level(logging.WARNING, logger="crowdselect_hf"):
        np.testing.assert_array_equal(EmbeddingCache(tmp_path).embed(again, texts), X)
    assert again.calls == 0 and not caplog.records  # rewritten, and good again


@pytest.mark.unit
def test_a_corrupt_clustering_is_recomputed(tmp_path, texts, caplog):
    cache = EmbeddingCache(tmp_path)
    X, key = cache.embeddings(Counting(n_components=16), texts)
    rows = np.arange(len(texts))
    c = cache.clusters(X, rows, n_clusters=4, seed=0, n_init=2, key=key)
    truncate(next(tmp_path.glob("*.labels.npy")))
    fresh = EmbeddingCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="crowdselect_hf"):
        again = fresh.clusters(X, rows, n_clusters=4, seed=0, n_init=2, key=key)
    assert fresh.cluster_misses == 1 and len(caplog.records) == 1
    np.testing.assert_array_equal(again.labels, c.labels)


# -- the size cap, and where entries go -------------------------------------------------------------

@pytest.mark.unit
def test_size_cap_drops_the_least_recently_used(tmp_path):
    mb = 2**20
    disk = DiskCache(tmp_path, max_gb=2.5 * mb / 2**30)  # room for two 1 MiB entries
    for name in ("a", "b"):
        assert disk.save(name, {"x": np.zeros(mb // 8)}, {})
        os.utime(tmp_path / f"{name}.json", (1_000 + ord(name), 1_000 + ord(name)))
    assert disk.load("a", {}) is not None  # "a" is now the most recently used
    assert disk.save("c", {"x": np.ones(mb // 8)}, {})
    assert entries(tmp_path) == ["a", "c"]
    assert not disk.save("huge", {"x": np.zeros(3 * mb // 8)}, {}) and "huge" not in entries(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.unit
def test_where_entries_go(gsm_ds, monkeypatch, tmp_path):
    import datasets

    beside = Path(gsm_ds.cache_files[0]["filename"]).parent
    assert cache_dir_for(gsm_ds) == beside / FOLDER
    monkeypatch.setenv("CROWDSELECT_HOME", str(tmp_path / "home"))
    assert cache_dir_for(datasets.Dataset.from_dict({"instruction": ["a"]})) == tmp_path / "home" / "cache"
    import crowdselect_hf.disk_cache as disk_cache

    monkeypatch.setattr(disk_cache.os, "access", lambda path, mode: False)  # a read-only dataset folder
    assert cache_dir_for(gsm_ds) == tmp_path / "home" / "cache"


@pytest.mark.unit
def test_no_cache_and_the_cap_from_the_selection_config(tmp_path, gsm_crowd):
    import datasets

    from crowdselect_hf import score
    from crowdselect_hf.pipeline import SelectionConfig
    from crowdselect_hf.selection import crowd_select

    assert SelectionConfig(k=5, no_cache=True).selector_kwargs()["cache"] is False
    assert "cache" not in SelectionConfig(k=5).selector_kwargs()
    capped = SelectionConfig(k=5, cache_max_gb=0.5).selector_kwargs()["cache"]
    assert isinstance(capped, EmbeddingCache) and capped.on_disk and capped.max_gb == 0.5
    with pytest.raises(ValueError, match="cache_max_gb"):
        SelectionConfig(k=5, cache_max_gb=-1)
    ds = datasets.load_dataset("parquet", data_files=str(GSM / "zoo.parquet"), split="train", cache_dir=str(tmp_path))
    scored = score(ds, crowd=gsm_crowd)
    crowd_select(scored, **SelectionConfig(k=20, n_clusters=3, n_init=2, no_cache=True).selector_kwargs())
    assert not list(tmp_path.rglob(FOLDER))
    # Earlier tests may hold these embeddings in this process's memory layer: start from disk alone.
    from crowdselect_hf.embedding_cache import default_cache

    default_cache.clear()
    crowd_select(scored, **SelectionConfig(k=20, n_clusters=3, n_init=2).selector_kwargs())
    assert len(entries(cache_dir_for(scored))) == 2


@pytest.mark.unit
def test_an_embedder_without_identity_stays_in_memory(tmp_path, texts):
    class Unnamed(Counting):
        identity = None  # e.g. a model passed as an object: what it computes cannot be named

    cache = EmbeddingCache(tmp_path)
    emb = Unnamed(n_components=8)
    X, key = cache.embeddings(emb, texts)
    cache.clusters(X, np.arange(len(texts)), n_clusters=3, seed=0, n_init=2, key=key)
    assert cache.embed(emb, texts) is X and emb.calls == 1
    assert entries(tmp_path) == []


@pytest.mark.unit
def test_the_cli_has_no_cache_and_the_cap(capsys):
    from crowdselect_hf.cli import build_parser
    from crowdselect_hf.commands import SELECTION_FIELDS
    from crowdselect_hf.pipeline import SelectionConfig

    parser = build_parser()
    args = parser.parse_args(["select", "pool.parquet", "--k", "5", "--no-cache", "--cache-max-gb", "2.5"])
    config = SelectionConfig(**{name: getattr(args, name) for name in SELECTION_FIELDS})
    assert config.no_cache and config.cache_max_gb == 2.5 and config.selector_kwargs()["cache"] is False
    assert not parser.parse_args(["select", "pool.parquet", "--k", "5"]).no_cache
    with pytest.raises(SystemExit):
        parser.parse_args(["select", "--help"])
    shown = capsys.readouterr().out
    assert "--no-cache" in shown and "--cache-max-gb" in shown
