"""Benchmarks of the clustered selection and the embedders.

    python benchmarks/bench_selection.py select --rows 100000 --compare   # given 384-d embeddings
    python benchmarks/bench_selection.py select --rows 1000000 [--compare]
    python benchmarks/bench_selection.py tfidf --rows 100000              # tfidf of 100K instructions
    python benchmarks/bench_selection.py minilm [--repeat 4]              # MiniLM texts/s, sorted vs not

Each prints one JSON line. Run each in its own process: ``peak_rss_gb`` is the process peak
(``ru_maxrss``), data generation included. Synthetic embeddings: 50 Gaussian blobs on the unit
sphere in 384 dimensions (so 10 clusters is a real choice), L2-normalised, float32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ZOO = Path(os.environ.get("CROWDSELECT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "alpaca_zoo" / "zoo.parquet"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthetic_embeddings(n: int, d: int = 384, blobs: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(blobs, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = np.empty((n, d), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        lab = rng.integers(0, blobs, m)
        X[s : s + m] = centers[lab] + rng.normal(0, 0.6 / np.sqrt(d), (m, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def synthetic_pool(n: int, seed: int = 0):
    import datasets
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ids = pa.array(np.char.mod("%016x", np.arange(n, dtype=np.int64)))
    stab = rng.uniform(-1, 1, n)
    stab[rng.random(n) < 0.05] = np.nan
    table = pa.table({
        "crowd_id": ids,
        "crowd_difficulty": -rng.random(n),
        "crowd_separability": rng.random(n) ** 2,
        "crowd_stability": stab,
        "crowd_best_model": pa.array(["m-7b"] * n),
        "crowd_best_reward": rng.random(n),
    })
    return datasets.Dataset(datasets.table.InMemoryTable(table))


def bench_select(rows: int, compare: bool, k: int, kmeans: str) -> dict:
    from crowdselect_hf.selection import CrowdSelector

    X = synthetic_embeddings(rows)
    ds = synthetic_pool(rows)
    t0 = time.perf_counter()
    est = CrowdSelector(k=k, n_clusters=10, seed=42, kmeans=kmeans).fit(ds, embeddings=X)
    elapsed = time.perf_counter() - t0
    out = {"bench": "select", "rows": rows, "dims": X.shape[1], "k": k, "kmeans": est.kmeans_algorithm_,
           "seconds": round(elapsed, 2), "inertia": est.inertia_, "selected": len(est.selected_indices_),
           "backfilled": len(est.backfilled_), "peak_rss_gb": round(peak_rss_gb(), 2)}
    if compare:
        from sklearn.cluster import KMeans

        t0 = time.perf_counter()
        ref = KMeans(n_clusters=10, random_state=42, n_init=20).fit(X)
        out["sklearn_full_seconds"] = round(time.perf_counter() - t0, 2)
        out["sklearn_full_inertia"] = float(ref.inertia_)
        out["inertia_ratio"] = round(est.inertia_ / ref.inertia_, 5)
        out["peak_rss_gb_after_compare"] = round(peak_rss_gb(), 2)
    return out


def zoo_instructions() -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(ZOO, columns=["instruction"]).column(0).to_pylist()


def bench_tfidf(rows: int) -> dict:
    from crowdselect_hf.embeddings import TfidfEmbedder

    base = zoo_instructions()
    rng = np.random.default_rng(0)
    vocab = sorted({w for t in base for w in t.split()})
    # Distinct texts: an AlpacaEval instruction plus a few words drawn from the corpus vocabulary.
    texts = [base[i % len(base)] + " " + " ".join(vocab[j] for j in rng.integers(0, len(vocab), 5)) for i in range(rows)]
    emb = TfidfEmbedder()
    t0 = time.perf_counter()
    X = emb.embed(texts)
    return {"bench": "tfidf", "rows": rows, "dims": X.shape[1], "seconds": round(time.perf_counter() - t0, 2),
            "embedder": emb.name, "peak_rss_gb": round(peak_rss_gb(), 2)}


def bench_minilm(repeat: int, batch_size: int) -> dict:
    import torch

    from crowdselect_hf.embeddings import TransformerEmbedder, minilm_path

    texts = zoo_instructions() * repeat
    out = {"bench": "minilm", "texts": len(texts), "batch_size": batch_size, "torch_threads": torch.get_num_threads()}
    results = {}
    for sort in (True, False):
        emb = TransformerEmbedder(str(minilm_path()), batch_size=batch_size, sort_by_length=sort, progress=False)
        emb.embed(texts[:64])  # load and warm up
        t0 = time.perf_counter()
        results[sort] = emb.embed(texts)
        out["sorted" if sort else "unsorted"] = {"seconds": round(time.perf_counter() - t0, 2),
                                                 "texts_per_s": round(len(texts) / (time.perf_counter() - t0), 1)}
    out["speedup"] = round(out["unsorted"]["seconds"] / out["sorted"]["seconds"], 2)
    out["max_abs_diff"] = float(np.abs(results[True] - results[False]).max())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select")
    s.add_argument("--rows", type=int, default=100_000)
    s.add_argument("--k", type=int, default=1000)
    s.add_argument("--kmeans", default="auto")
    s.add_argument("--compare", action="store_true", help="also run sklearn KMeans(n_init=20) on all rows")
    t = sub.add_parser("tfidf")
    t.add_argument("--rows", type=int, default=100_000)
    m = sub.add_parser("minilm")
    m.add_argument("--repeat", type=int, default=2)
    m.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args(argv)
    if a.cmd == "select":
        res = bench_select(a.rows, a.compare, a.k, a.kmeans)
    elif a.cmd == "tfidf":
        res = bench_tfidf(a.rows)
    else:
        res = bench_minilm(a.repeat, a.batch_size)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    sys.exit(main())
