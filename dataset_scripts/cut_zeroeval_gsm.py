"""Cut the shipped test subset of the ZeroEval GSM8K crowd table (Apache-2.0).

Reads ``../shared/data/zeroeval_gsm`` (or ``--source``) and writes
``tests/data/zeroeval_gsm/{zoo.parquet,models.json}``: the open-weight members only (the one
API model of undisclosed size is dropped) and a seeded sample of questions that keeps the
table's tie-heavy rows (every member right, every member wrong) in proportion, with at least
``--min-all-wrong`` all-wrong rows so the zero-variance policy always shows. Rows keep the
source order. Re-running with the same source and pyarrow version gives identical bytes.

Example:
    python dataset_scripts/cut_zeroeval_gsm.py --rows 360 --seed 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "zeroeval_gsm"
DEFAULT_OUT = ROOT / "tests" / "data" / "zeroeval_gsm"
# Weights not published: not an open-weight model, so not shipped.
CLOSED = {"claude-3-haiku-20240307"}
KEPT_FIELDS = ("name", "family", "params_b", "size_note", "hf_or_link", "accuracy", "source_path", "source_blob")


def cut(source: Path, out: Path, rows: int, seed: int, min_all_wrong: int) -> pa.Table:
    models = [m for m in json.loads((source / "models.json").read_text()) if m["name"] not in CLOSED]
    names = [m["name"] for m in models]
    table = pq.read_table(source / "zoo.parquet", columns=["uuid", "instruction", *names])
    correct = np.column_stack([table[n].combine_chunks().field("correct").to_numpy(zero_copy_only=False) for n in names])
    mean = np.nanmean(correct, axis=1)
    rng = np.random.default_rng(seed)
    all_wrong = np.flatnonzero(mean == 0.0)
    forced = rng.choice(all_wrong, size=min(min_all_wrong, len(all_wrong)), replace=False)
    rest = np.setdiff1d(np.arange(table.num_rows), forced)
    picked = np.sort(np.concatenate([forced, rng.choice(rest, size=rows - len(forced), replace=False)]))
    subset = table.take(pa.array(picked))
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(subset, out / "zoo.parquet", compression="zstd", compression_level=19, use_dictionary=False)
    kept = [{k: m[k] for k in KEPT_FIELDS if k in m} for m in models]
    (out / "models.json").write_text(json.dumps(kept, indent=1) + "\n")
    return subset


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder holding the full table (zoo.parquet, models.json)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write the subset to")
    parser.add_argument("--rows", type=int, default=360, help="questions to keep")
    parser.add_argument("--seed", type=int, default=0, help="seed of the row sample")
    parser.add_argument("--min-all-wrong", type=int, default=6, help="all-wrong rows always kept")
    args = parser.parse_args(argv)
    subset = cut(args.source, args.out, args.rows, args.seed, args.min_all_wrong)
    size = (args.out / "zoo.parquet").stat().st_size
    print(f"wrote {subset.num_rows} rows x {subset.num_columns - 2} members to {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
