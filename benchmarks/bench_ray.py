"""Ray engine benchmark: read Parquet → CrowdScore stage → write Parquet on a local Ray instance,
against the single-process path (load_dataset("parquet") → score() → to_parquet), and the one-node
selection from the scored Parquet against crowd_select on the scored Dataset.

Uses the first ``--rows`` rows of the Magpie-shaped pool that bench_scoring.py builds (19 models,
~1-2 KB responses), written once as Parquet (row groups of 2,000 rows) under benchmarks/_work/.

    python benchmarks/bench_scoring.py --rows 100000 --only score   # builds the pool once
    python benchmarks/bench_ray.py --rows 20000 --num-cpus 2
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work"


def parquet_pool(rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = WORK / f"ray-pool-{rows}.parquet"
    if not out.exists():
        src = WORK / "magpie-shaped-100000" / "pool.arrow"
        with pa.memory_map(str(src)) as f:
            table = pa.ipc.open_stream(f).read_all().slice(0, rows)
        pq.write_table(table, out, row_group_size=2_000)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--k", type=int, default=1_000)
    args = p.parse_args()

    import datasets

    from crowdselect_hf import Crowd, CrowdScore, crowd_select, score
    from crowdselect_hf import ray as csray

    pool = parquet_pool(args.rows)
    crowd = Crowd.preset("magpie-100k-generator-zoo")
    results = []

    t = time.perf_counter()
    ds = datasets.load_dataset("parquet", data_files=str(pool), split="train", cache_dir=str(WORK / "ray-hf-cache"))
    scored = score(ds, crowd=crowd)
    scored.to_parquet(str(WORK / "ray-single.parquet"))
    results.append(("single process: load_dataset + score + to_parquet", time.perf_counter() - t))

    t = time.perf_counter()
    ray = csray.init(None, num_cpus=args.num_cpus)
    results.append(("ray.init (local instance)", time.perf_counter() - t))
    out = WORK / "ray-scored"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    csray.write_parquet(csray.score_stage(csray.read_parquet(str(pool)), CrowdScore(crowd=crowd)), str(out))
    results.append((f"ray ({args.num_cpus} CPUs): read_parquet + score_stage + write_parquet", time.perf_counter() - t))
    ray.shutdown()

    t = time.perf_counter()
    ref = crowd_select(scored, k=args.k)
    results.append((f"crowd_select on the scored Dataset (k={args.k}, tfidf)", time.perf_counter() - t))
    from crowdselect_hf.embeddings import default_cache

    default_cache.clear()
    t = time.perf_counter()
    sel = csray.select(str(out), k=args.k)
    results.append((f"csray.select from scored Parquet (k={args.k}, tfidf)", time.perf_counter() - t))
    assert sel.ids == ref.ids, "the Ray path selected other rows"

    print(f"| step ({args.rows:,} rows × 19 models) | wall (s) | rows/s |\n|---|---|---|")
    for name, s in results:
        print(f"| {name} | {s:.2f} | {'' if name.startswith('ray.init') else f'{args.rows / s:,.0f}'} |")
    print(f"\nsame selected ids: {sel.ids == ref.ids}")


if __name__ == "__main__":
    main()
