"""Scoring benchmark: the score() fast path vs ds.map(crowd_score) vs the reference scripts' approach.

Builds a Magpie-shaped pool on disk (Arrow stream file, like datasets' cache files): ``uuid``,
``instruction``, then 19 struct columns named as Magpie-100K-Generator-Zoo's models, each
``{content: ~1-2 KB text, ArmoRM-Llama3-8B-v0.1, Skywork-Reward-Llama-3.1-8B,
Skywork-Reward-Gemma-2-27B}``. Each method then runs in a fresh subprocess and reports wall
time, rows/s, peak RSS and the bytes it wrote next to the pool (datasets' cache).

    python benchmarks/bench_scoring.py --rows 100000            # build (once) + run all
    python benchmarks/bench_scoring.py --rows 100000 --only score
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

WORK = Path(__file__).resolve().parent / "_work"
REWARDS = ("ArmoRM-Llama3-8B-v0.1", "Skywork-Reward-Llama-3.1-8B", "Skywork-Reward-Gemma-2-27B")
METHODS = ("score", "map-batched", "map-per-example", "reference")


def pool_path(rows: int) -> Path:
    return WORK / f"magpie-shaped-{rows}" / "pool.arrow"


def build(rows: int, seed: int = 0, batch: int = 5_000) -> Path:
    from crowdselect_hf import Crowd

    path = pool_path(rows)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    crowd = Crowd.preset("magpie-100k-generator-zoo")
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", dtype=np.uint8)
    member_type = pa.struct([("content", pa.string())] + [(r, pa.float64()) for r in REWARDS])
    schema = pa.schema([("uuid", pa.string()), ("instruction", pa.string())] + [(m.name, member_type) for m in crowd])
    quality = {m.name: np.log(m.params_b) for m in crowd}

    def text_column(n, lo, hi):
        lengths = rng.integers(lo, hi, size=n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        data = alphabet[rng.integers(0, len(alphabet), size=int(offsets[-1]))]
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))

    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            difficulty = rng.normal(size=n)
            arrays = [pa.array([f"{i:032x}" for i in range(start, start + n)]), text_column(n, 40, 400)]
            for m in crowd:
                fields = [text_column(n, 1000, 2000)]
                for r in REWARDS:
                    fields.append(pa.array(quality[m.name] * 0.3 - difficulty + rng.normal(scale=0.7, size=n)))
                arrays.append(pa.StructArray.from_arrays(fields, fields=list(member_type)))
            writer.write_batch(pa.record_batch(arrays, schema=schema))
    os.replace(tmp, path)
    return path


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}


def run_method(method: str, rows: int, reference_rows: int) -> dict:
    import datasets

    from crowdselect_hf import Crowd, CrowdScore, score

    datasets.disable_progress_bars()
    path = pool_path(rows)
    ds = datasets.Dataset.from_file(str(path))
    crowd = Crowd.preset("magpie-100k-generator-zoo")
    before = _files(path.parent)
    t0 = time.perf_counter()
    if method == "score":
        out = score(ds, crowd=crowd)
        n = len(out)
    elif method == "map-batched":
        out = ds.map(CrowdScore(crowd=crowd), batched=True, load_from_cache_file=False)
        n = len(out)
    elif method == "map-per-example":
        out = ds.map(CrowdScore(crowd=crowd), load_from_cache_file=False)
        n = len(out)
    elif method == "reference":
        n = reference_rows
        R = _extract(ds.select(range(n)), crowd)  # pre-extracted scores, not timed
        t0 = time.perf_counter()
        _reference_scripts(R, crowd)
    else:
        raise SystemExit(f"unknown method {method}")
    wall = time.perf_counter() - t0
    after = _files(path.parent)
    written = sum(size for name, size in after.items() if name not in before)
    for name in after:
        if name not in before:
            (path.parent / name).unlink()
    return {
        "method": method,
        "rows": n,
        "wall_s": wall,
        "rows_per_s": n / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "written_mb": written / 1e6,
    }


def _extract(ds, crowd) -> list[list[float]]:
    import pyarrow.compute as pc

    cols = [pc.struct_field(ds.data.table.column(m.name), [crowd.reward]).to_numpy() for m in crowd]
    return np.stack(cols, axis=1).tolist()


def _reference_scripts(R: list[list[float]], crowd) -> list[tuple[float, float, float]]:
    """The public reference scripts' approach: a Python loop over rows, scores read by position,
    one scipy.stats.spearmanr call per family, ranks from a sort."""
    from scipy.stats import spearmanr

    families = crowd.families
    position = {name: j for j, name in enumerate(crowd.names)}
    out = []
    for row in R:
        difficulty = -float(np.mean(row))
        separability = float(np.var(row))
        rhos = []
        for members in families.values():
            if len(members) < 2:
                continue
            scores = [row[position[m]] for m in members]
            reward_rank = np.argsort(np.argsort(scores))
            size_rank = list(range(len(members)))
            rho = spearmanr(reward_rank, size_rank).statistic
            rhos.append(rho)
        out.append((difficulty, separability, float(np.nanmean(rhos))))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--reference-rows", type=int, default=20_000, help="rows for the (slow) reference approach")
    p.add_argument("--only", choices=METHODS, action="append")
    p.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_method(args.child, args.rows, args.reference_rows)))
        return
    t = time.perf_counter()
    path = build(args.rows)
    print(f"pool: {path} ({path.stat().st_size / 1e9:.2f} GB, built/found in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
    results = []
    for method in args.only or METHODS:
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--reference-rows", str(args.reference_rows), "--child", method]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    ref = next((r for r in results if r["method"] == "reference"), None)
    print("| method | rows | wall (s) | rows/s | peak RSS (MB) | written to cache (MB) | × reference rows/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        speedup = f"{r['rows_per_s'] / ref['rows_per_s']:.0f}×" if ref else "—"
        print(f"| {r['method']} | {r['rows']:,} | {r['wall_s']:.2f} | {r['rows_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | {r['written_mb']:.2f} | {speedup} |")


if __name__ == "__main__":
    main()
