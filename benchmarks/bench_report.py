"""Benchmark of the HTML report at scale: build time and file size.

    python benchmarks/bench_report.py --rows 100000
    python benchmarks/bench_report.py --rows 1000000 [--columns legacy]
    python benchmarks/bench_report.py --from-table benchmarks/_work/instructions-100000/scored.parquet

Writes a synthetic saved selection to ``benchmarks/_work/report-<rows>-<columns>/`` (a config
folder: ``_crowdselect/selection.json``, ``_crowdselect/pool.parquet`` and ``k`` training rows),
then times ``write_report`` on it end to end (reading the folder included), and once more phase by
phase (read, labels + ranking, each section). Prints one JSON line.

The pool: ``--clusters`` clusters; each cluster's instructions are drawn from its own share of
the real instructions (the shipped GSM8K questions, plus the AlpacaEval ones when present),
with a random number appended so that rows differ; 2-D map coordinates around a centre per
cluster; random metrics (5% NaN stability, 1% no usable reward); the top ``k / clusters`` of each
cluster by a random score are selected. ``--columns selector`` (default) writes the pool table
through ``Selection.pool_table()``, as the selector does (``selection.POOL_SCHEMA``: instructions
cut to ``POOL_INSTRUCTION_CHARS``, best-answer bytes, exclusion reasons, and in the schema metadata
the map's explained variance and the 16 members' reward summaries, computed here from synthetic
rewards); ``--columns legacy`` writes the twelve columns of crowdselect-hf 0.1.0 and no metadata.

``--from-table PATH`` instead runs ``pipeline.curate`` on a real crowd table (score if needed,
select with the defaults, save) and times ``write_report`` on its folder: the package's own output.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_selection import cpu_model  # this folder is first on sys.path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROWDSELECT_SHARED", ROOT.parent / "shared"))
SOURCES = [ROOT / "tests" / "data" / "zeroeval_gsm" / "zoo.parquet", SHARED / "data" / "alpaca_zoo" / "zoo.parquet"]
MEMBERS = [(f"fam{f}-{s}b", f"fam{f}", s) for f in range(4) for s in (1, 7, 13, 70)]
LEGACY_COLUMNS = ["crowd_id", "crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_reward",
                  "crowd_best_model", "crowd_combined", "crowd_cluster", "crowd_selected", "crowd_backfilled",
                  "crowd_map_x", "crowd_map_y"]
"""The pool table of crowdselect-hf 0.1.0."""


def instructions() -> list[str]:
    out = []
    for path in SOURCES:
        if path.is_file():
            out += pq.read_table(path, columns=["instruction"]).column(0).to_pylist()
    return out


def _member_rewards(rewards: dict[str, np.ndarray], selected: np.ndarray):
    from crowdselect_hf.record import MemberRewards, RewardSummary

    def summary(v):
        v = v[np.isfinite(v)]
        return RewardSummary(int(v.size), float(v.mean()), float(np.median(v)))

    return tuple(MemberRewards(name, family, float(size), summary(rewards[name]), summary(rewards[name][selected]), None)
                 for name, family, size in MEMBERS)


def build(folder: Path, n: int, k: int, n_clusters: int, columns: str, seed: int = 0) -> Path:
    from crowdselect_hf.record import ClusterCount, Clustering, PoolMetadata, SelectionRecord, write_record
    from crowdselect_hf.selection import Selection, cut_instructions

    rng = np.random.default_rng(seed)
    texts = np.array(instructions(), dtype=object)
    groups = np.array_split(rng.permutation(texts.size), n_clusters)
    cluster = rng.integers(0, n_clusters, n)
    pick = np.empty(n, dtype=np.int64)
    for c in range(n_clusters):
        rows = np.flatnonzero(cluster == c)
        pick[rows] = groups[c][rng.integers(0, groups[c].size, rows.size)]
    instr = [f"{t} ({i})" for t, i in zip(texts[pick].tolist(), rng.integers(0, 10**6, n).tolist())]
    centres = rng.normal(0, 3, (n_clusters, 2))
    xy = centres[cluster] + rng.normal(0, 1, (n, 2))
    difficulty = rng.normal(-5, 2, n)
    difficulty[rng.random(n) < 0.01] = np.nan
    usable = np.isfinite(difficulty)
    separability = np.where(usable, rng.gamma(2, 1, n), np.nan)
    stability = np.where(usable & (rng.random(n) > 0.05), rng.uniform(-1, 1, n), np.nan)
    combined = np.where(usable, rng.random(n) * 4, np.nan)
    selected = np.zeros(n, dtype=bool)
    quota = k // n_clusters
    for c in range(n_clusters):
        rows = np.flatnonzero((cluster == c) & usable)
        selected[rows[np.argsort(-combined[rows])[:quota]]] = True
    ids = np.char.mod("%016x", rng.integers(0, 2**62, n, dtype=np.int64)).tolist()
    best_model = np.array([m[0] for m in MEMBERS], dtype=object)[rng.integers(0, len(MEMBERS), n)]
    best_model[~usable] = None
    metrics = pa.table({
        "crowd_id": pa.array(ids, pa.string()), "crowd_difficulty": difficulty, "crowd_separability": separability,
        "crowd_stability": stability, "crowd_best_reward": np.where(usable, -difficulty + rng.random(n), np.nan),
        "crowd_best_model": pa.array(best_model.tolist(), pa.string())})
    sizes = np.bincount(cluster, minlength=n_clusters)
    record = SelectionRecord(
        strategy="crowdselect", k=int(selected.sum()), ranked_by="combined score", weights=(1.0, 1.0, 2.0), seed=42,
        clustering=Clustering(n_clusters, "synthetic", "sampled", 20, 1.0),
        clusters=tuple(ClusterCount(c, int(sizes[c]), int(((cluster == c) & usable).sum()), quota, quota, 0)
                       for c in range(n_clusters)),
        n_pool=n, n_eligible=int(usable.sum()), n_selected=int(selected.sum()), n_backfilled=0,
        excluded={"no_usable_reward": int((~usable).sum()), "empty_best_response": 0, "duplicate_instruction": 0},
        pool_duplicate_ids=0, neutral_filled={"stability": int((usable & np.isnan(stability)).sum())},
        metric_means={"best_reward": {"selected": 6.0, "pool": 5.5}},
        metrics={"reward": "synthetic", "members": [{"name": a, "family": b, "params_b": c} for a, b, c in MEMBERS]},
        crowd={"members": [{"name": a, "family": b, "params_b": c} for a, b, c in MEMBERS]})
    picked = np.flatnonzero(selected)
    if columns == "legacy":
        pool = metrics
        for name, values in (("crowd_combined", combined), ("crowd_cluster", cluster.astype(np.int64)),
                             ("crowd_selected", selected), ("crowd_backfilled", np.zeros(n, dtype=bool)),
                             ("crowd_map_x", xy[:, 0]), ("crowd_map_y", xy[:, 1])):
            pool = pool.append_column(name, pa.array(values))
    else:
        rewards = {name: np.where(usable, rng.normal(5 + np.log(size), 2, n), np.nan) for name, _, size in MEMBERS}
        described = pa.table({
            "crowd_best_bytes": pa.array(np.where(usable, rng.integers(50, 3000, n), 0)),
            "crowd_excluded": pa.array(np.where(usable, None, "no_usable_reward").tolist(), pa.string()),
            "crowd_instruction": cut_instructions(pa.array(instr, pa.string()))})
        sel = Selection(picked, combined, cluster.astype(np.int64), np.empty(0, np.int64), metrics, record, xy, described,
                        PoolMetadata((0.12, 0.08), _member_rewards(rewards, picked)))
        pool = sel.pool_table()
    if folder.exists():
        shutil.rmtree(folder)
    cfg = folder / "bench"
    write_record(cfg, record.saved_as("bench", int(selected.sum())), pool)
    rows = [{"messages": [{"role": "user", "content": instr[i]}, {"role": "assistant", "content": "answer " * 80}],
             "crowd_id": ids[i], "crowd_best_model": best_model[i]} for i in picked]
    pq.write_table(pa.Table.from_pylist(rows), cfg / "train-00000-of-00001.parquet")
    return cfg


def phases(cfg: Path) -> dict[str, float]:
    """Seconds per phase of one report build (outside ``write_report``, with the same calls)."""
    from crowdselect_hf.report.context import ReportContext
    from crowdselect_hf.report.data import PoolData, read_saved
    from crowdselect_hf.report.page import SECTIONS

    out = {}
    t = time.perf_counter()
    saved = read_saved(cfg)
    d = PoolData.from_table(saved.pool, saved.texts)
    out["read"] = time.perf_counter() - t
    t = time.perf_counter()
    ctx = ReportContext.build(d, saved.record, saved.samples, True, cfg)
    out["labels+ranking"] = time.perf_counter() - t
    for s in SECTIONS:
        t = time.perf_counter()
        s.build(ctx)
        out[s.id] = time.perf_counter() - t
    return {k: round(v, 3) for k, v in out.items()}


def from_table(path: Path, k: int, n_clusters: int) -> dict:
    """The package's own output on a real crowd table: ``pipeline.curate`` (score if needed, select,
    save; no report), then ``write_report`` timed on its folder. The selection's time is not timed
    here (it is bench_selection's), only reported."""
    import datasets

    from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate
    from crowdselect_hf.report import write_report

    folder = ROOT / "benchmarks" / "_work" / f"report-{path.parent.name}"
    ds = datasets.Dataset.from_parquet(str(path), cache_dir=str(ROOT / "benchmarks" / "_work" / "hf-cache"))
    t = time.perf_counter()
    done = curate(ds, SelectionConfig(k=k, n_clusters=n_clusters), OutputConfig(out=str(folder), report=False, overwrite=True))
    selected = time.perf_counter() - t
    cfg = done.folder / done.config_name
    # The same selection with its pool table cut back to crowdselect-hf 0.1.0's columns (no metadata),
    # reported in the same process and under the same load: what the extra columns cost.
    legacy = folder / "legacy"
    shutil.rmtree(legacy, ignore_errors=True)
    shutil.copytree(cfg, legacy)
    pool_file = "_crowdselect/pool.parquet"
    pq.write_table(pq.read_table(cfg / pool_file).select(LEGACY_COLUMNS).replace_schema_metadata(None), legacy / pool_file)
    write_report(legacy)  # imports and first calls, outside both timings
    times = {}
    for name, where in (("selector", cfg), ("legacy", legacy), ("selector_again", cfg)):
        t = time.perf_counter()
        out = write_report(where)
        times[name] = round(time.perf_counter() - t, 2)
    sel = done.selection
    pickled = len(pickle.dumps(sel))
    sel._described = None
    return {"table": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path), "rows": len(ds), "k": k,
            "clusters": n_clusters, "columns": "selector output", "report_s": times,
            "report_mb": round((cfg / "report.html").stat().st_size / 1e6, 2),
            "legacy_report_mb": round((legacy / "report.html").stat().st_size / 1e6, 2),
            "pool_parquet_mb": round((cfg / pool_file).stat().st_size / 1e6, 2),
            "legacy_pool_parquet_mb": round((legacy / pool_file).stat().st_size / 1e6, 2),
            "selection_pickle_mb": round(pickled / 1e6, 2),
            "selection_pickle_mb_without_new_columns": round(len(pickle.dumps(sel)) / 1e6, 2),
            "pool_columns": pq.read_schema(cfg / pool_file).names, "curate_s": round(selected, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=1_000)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--columns", choices=("selector", "legacy"), default="selector")
    ap.add_argument("--from-table", type=Path, default=None,
                    help="a real crowd table (Parquet): report on the package's own curate() output of it instead")
    ap.add_argument("--no-phases", action="store_true")
    args = ap.parse_args()
    from crowdselect_hf.report import write_report

    if args.from_table is not None:
        result = from_table(args.from_table.resolve(), args.k, args.clusters)
        result.update(peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
                      load=os.getloadavg(), cpu=cpu_model())
        print(json.dumps(result))
        return
    folder = ROOT / "benchmarks" / "_work" / f"report-{args.rows}-{args.columns}"
    t = time.perf_counter()
    cfg = build(folder, args.rows, args.k, args.clusters, args.columns)
    built = time.perf_counter() - t
    t = time.perf_counter()
    out = write_report(cfg)
    wall = time.perf_counter() - t
    result = {"rows": args.rows, "k": args.k, "clusters": args.clusters, "columns": args.columns,
              "report_s": round(wall, 2), "report_mb": round(out.stat().st_size / 1e6, 2),
              "pool_parquet_mb": round((cfg / "_crowdselect" / "pool.parquet").stat().st_size / 1e6, 2),
              "data_build_s": round(built, 1),
              "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
              "load": os.getloadavg(), "cpu": cpu_model()}
    if not args.no_phases:
        result["phases_s"] = phases(cfg)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
