"""Reward scoring throughput on the CPU: pairs/s with and without length-sorted micro-batches.

A small-but-not-tiny Llama-style sequence classifier (hidden 256, 4 layers, random weights, built
from a config) scores the real responses of the AlpacaEval crowd table
(``../shared/data/alpaca_zoo``, 805 instructions × 15 models) through ``ds.map(RewardScorer(...),
batched=True)``. The tokenizer is word-level over the table's own vocabulary (words and
punctuation), so sequence lengths follow the real responses (about 0.75× a BPE token count).

Usage:
    python benchmarks/bench_rewards.py --rows 48 --batch-size 16 --repeats 2
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(ROOT.parent / "shared" / "data" / "alpaca_zoo" / "zoo.parquet"))
    parser.add_argument("--rows", type=int, default=48, help="instructions (× 15 responses each)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass")
    parser.add_argument("--map-batch-size", type=int, default=16, help="rows per ds.map batch")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per setting")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import datasets
    import torch

    from crowdselect_hf.rewards import RewardScorer
    from tests.tiny_models import save_reward_model, word_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_parquet(args.zoo).select(range(args.rows))
    members = [c for c in ds.column_names if isinstance(ds.features[c], dict)]
    counts: collections.Counter = collections.Counter()
    for row in ds:
        for text in [row["instruction"]] + [row[m]["content"] or "" for m in members]:
            counts.update(re.findall(r"\w+|[^\w\s]", text))
    tokenizer = word_tokenizer([w for w, _ in counts.most_common(32000)])
    with tempfile.TemporaryDirectory() as tmp:
        path = save_reward_model(Path(tmp) / "bench-rm", tokenizer, seed=0, hidden=256, layers=4, heads=4, intermediate=688)
        n_params = sum(p.numel() for p in __import__("transformers").AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True).parameters())
        results = {}
        for sort in (False, True):
            best = None
            for _ in range(args.repeats):
                scorer = RewardScorer(str(path), batch_size=args.batch_size, max_length=args.max_length, sort_by_length=sort).load()
                start = time.perf_counter()
                ds.map(scorer, batched=True, batch_size=args.map_batch_size, keep_in_memory=True)
                elapsed = time.perf_counter() - start
                if best is None or elapsed < best[0]:
                    best = (elapsed, scorer.stats_)
            results[sort] = best

    pairs = results[True][1].scored
    lines = [
        "| length sorting | pairs | seconds | pairs/s | tokens/s (real) | padding fraction | forward passes | truncated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sort in (False, True):
        t, s = results[sort]
        lines.append(f"| {'on' if sort else 'off'} | {s.scored} | {t:.1f} | {s.scored / t:.1f} | {s.tokens / t:,.0f} | "
                     f"{s.padding_fraction:.3f} | {s.forward_passes} | {s.truncated} |")
    speedup = results[False][0] / results[True][0]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"model: Llama-style sequence classifier, hidden 256, 4 layers, {n_params / 1e6:.1f} M parameters, fp32; "
          f"vocabulary {len(tokenizer)} words")
    print(f"data: first {args.rows} rows × {len(members)} models = {pairs} pairs, "
          f"mean {results[True][1].tokens / pairs:.0f} tokens per pair; batch_size={args.batch_size}, "
          f"map batch {args.map_batch_size} rows, max_length={args.max_length}")
    print("\n".join(lines))
    print(f"speed-up from length sorting: {speedup:.2f}x")


if __name__ == "__main__":
    main()
