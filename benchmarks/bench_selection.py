"""Benchmarks of the selection: the embedders' speed and cluster agreement, ``crowdselect select``
first / cold / warm, each in a new process, and KMeans on given embeddings.

    python benchmarks/bench_selection.py all --baseline DIR      # everything below, 100K and 1M
    python benchmarks/bench_selection.py pool --rows 100000      # build the scored pool once
    python benchmarks/bench_selection.py quality --rows 100000   # embedders: seconds, ARI, inertia
    python benchmarks/bench_selection.py cli --rows 100000       # crowdselect select: first, cold, warm
    python benchmarks/bench_selection.py cli --rows 1000000 --runs first,cold,warm
    python benchmarks/bench_selection.py phases --rows 100000 [--cold]   # where a re-select's time goes
    python benchmarks/bench_selection.py steps --rows 100000     # TF-IDF, LSA, KMeans one by one
    python benchmarks/bench_selection.py select --rows 100000 --compare   # given 384-d embeddings
    python benchmarks/bench_selection.py minilm [--repeat 2]     # MiniLM texts/s, sorted vs not

``--baseline DIR`` is a copy of the package before issue 14, for the ``today-*`` runs:
``mkdir -p DIR && git archive 117bc91 crowdselect_hf | tar -x -C DIR``.

Every run appends its records, each with the load average of the machine when it was taken, to
``benchmarks/_work/selection-results.json`` (``--results``) and prints them as a table;
``table`` prints that file again. The pool (``pool``): instructions of real-looking text, each an
AlpacaEval, ZeroEval GSM8K or demo instruction with 15% of its words replaced by words drawn from
all three, answered by four models with real answers from those tables and a synthetic reward,
scored with ``score()`` and written as Parquet; ``crowdselect select`` reads it as a user would.
"Today's" embedder (:class:`LegacyTfidf`) is the default before issue 14, kept here as the
reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
SHARED = Path(os.environ.get("CROWDSELECT_SHARED", ROOT.parent / "shared"))
SOURCES = {"alpaca_eval": SHARED / "data" / "alpaca_zoo" / "zoo.parquet",
           "zeroeval_gsm": ROOT / "tests" / "data" / "zeroeval_gsm" / "zoo.parquet",
           "demo": ROOT / "crowdselect_hf" / "data" / "demo_pool.parquet"}
ZOO = SOURCES["alpaca_eval"]
MEMBERS = {"Llama-3.2-1B-Instruct": 1, "Llama-3.2-3B-Instruct": 3, "Llama-3.1-8B-Instruct": 8, "Llama-3.1-70B-Instruct": 70}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def machine() -> dict:
    return {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(), "cpu": cpu_model()}


def cpu_model() -> str:
    """``"Intel(R) Xeon(R) Processor (model 167)"``: hosts of one machine kind differ (by ~3× on
    this project's 2-core kind), so every record names the processor it ran on."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in info.splitlines()[:30] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return f"{fields.get('model name', 'unknown')} (model {fields.get('model', '?')})"


# -- data -------------------------------------------------------------------------------------------

def real_texts() -> dict[str, list[str]]:
    """The instructions of each real table that is present."""
    import pyarrow.parquet as pq

    return {name: pq.read_table(path, columns=["instruction"]).column(0).to_pylist()
            for name, path in SOURCES.items() if path.exists()}


def real_answers(limit: int = 600) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = []
    for path in SOURCES.values():
        if path.exists():
            table = pq.read_table(path)
            for name in table.column_names[2:6]:
                out += [a[:limit] for a in pc.struct_field(table.column(name), [0]).to_pylist() if a]
    return out


def synthetic_texts(n: int, seed: int = 0, replace: float = 0.15) -> list[str]:
    """Real instructions with ``replace`` of their words swapped for words of the whole corpus."""
    base = [t for texts in real_texts().values() for t in texts]
    words = [t.split(" ") for t in base]
    vocab = np.array(sorted({w for ws in words for w in ws if w}))
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, len(base), n):
        ws = list(words[i])
        for j in np.flatnonzero(rng.random(len(ws)) < replace):
            ws[j] = vocab[rng.integers(len(vocab))]
        out.append(" ".join(ws))
    return out


def pool_path(rows: int, tag: str = "") -> Path:
    return WORK / f"instructions-{rows}{tag}" / "scored.parquet"


def baseline_pool(rows: int, baseline: str) -> Path:
    """The same pool scored by the baseline's own ``score()`` (its metrics provenance may be of
    another version, which it would refuse), built in a process that imports the baseline."""
    path = pool_path(rows, "-baseline")
    if not path.exists():
        here = str(Path(__file__).parent)
        code = f"import sys; sys.path.insert(1, {here!r}); import bench_selection as b; b.build_pool({rows}, tag='-baseline')"
        subprocess.run([sys.executable, "-c", code], cwd=baseline, env={**os.environ, "PYTHONPATH": baseline}, check=True)
    # Untimed: datasets converts the Parquet once, as it did for the pool before the "cold" run.
    load = f"import datasets; datasets.load_dataset('parquet', data_files={str(path)!r}, split='train')"
    subprocess.run([sys.executable, "-c", load], env=cli_env(), check=True, capture_output=True)
    return path


def build_pool(rows: int, seed: int = 0, tag: str = "") -> Path:
    """The scored crowd table of ``rows`` synthetic instructions (built once)."""
    path = pool_path(rows, tag)
    if path.exists():
        return path
    import datasets
    import pyarrow as pa

    from crowdselect_hf.scoring import score

    datasets.disable_progress_bars()
    rng = np.random.default_rng(seed)
    texts = synthetic_texts(rows, seed)
    answers = pa.array(real_answers())
    difficulty = rng.normal(size=rows)
    columns = {"uuid": pa.array([f"{i:032x}" for i in range(rows)]), "instruction": pa.array(texts)}
    for name, size in MEMBERS.items():
        content = answers.take(pa.array(rng.integers(0, len(answers), rows)))
        reward = pa.array(0.3 * np.log(size) - difficulty + rng.normal(scale=0.7, size=rows))
        columns[name] = pa.StructArray.from_arrays([content, reward], names=["content", "reward"])
    ds = datasets.Dataset(datasets.table.InMemoryTable(pa.table(columns)))
    scored = score(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.parquet")
    scored.to_parquet(str(tmp))
    os.replace(tmp, path)
    return path


def pool_texts(rows: int) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(build_pool(rows), columns=["instruction"]).column(0).to_pylist()


# -- embedders ----------------------------------------------------------------------------------------

class LegacyTfidf:
    """Today's default before issue 14: scikit-learn TfidfVectorizer (uni+bigrams, 100K vocabulary,
    sublinear tf) and TruncatedSVD(256, randomized) on all rows."""

    def __init__(self, seed: int = 42):
        self.seed = seed
        self.name = f"legacy-tfidf-svd256-seed{seed}"

    def embed(self, texts):
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from threadpoolctl import threadpool_limits

        T = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_features=100_000, dtype=np.float32,
                            token_pattern=r"(?u)\b\w+\b").fit_transform(texts)
        with threadpool_limits(limits=1 if T.shape[0] < 20_000 else None):
            X = TruncatedSVD(n_components=256, random_state=self.seed, algorithm="randomized").fit_transform(T)
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class HashingTfidf:
    """A candidate: HashingVectorizer (2**20 buckets) with TF-IDF weighting, then the sampled LSA."""

    def __init__(self, n_components: int = 128, seed: int = 42, fit_rows: int | None = 20_000):
        self.n_components, self.seed, self.fit_rows = n_components, seed, fit_rows
        self.name = f"hashing2^20-tfidf-svd{n_components}-fit{fit_rows}-seed{seed}"

    def embed(self, texts):
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        from crowdselect_hf.tfidf import lsa

        H = HashingVectorizer(n_features=2**20, ngram_range=(1, 2), alternate_sign=False, norm=None,
                              token_pattern=r"(?u)\b\w+\b", dtype=np.float32).transform(texts)
        T = TfidfTransformer(sublinear_tf=True).fit_transform(H).astype(np.float32)
        X = lsa(T.tocsr(), self.n_components, seed=self.seed, fit_rows=self.fit_rows, progress=False)
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def candidates(seed: int) -> dict:
    from crowdselect_hf.embeddings import TfidfEmbedder

    def tfidf(**kw):
        return TfidfEmbedder(seed=seed, progress=False, **kw)

    return {
        "default: tfidf (svd256, fit 20K, 4 iter)": tfidf(),
        "tfidf svd256, fit 10K, 2 iter": tfidf(fit_rows=10_000, n_iter=2),
        "tfidf svd256, fit all, 5 iter": tfidf(fit_rows=None, n_iter=5),
        "tfidf svd128, fit 20K, 4 iter": tfidf(n_components=128),
        "tfidf svd128, fit 10K, 2 iter": tfidf(n_components=128, fit_rows=10_000, n_iter=2),
        "hashing tfidf svd256, fit 20K": HashingTfidf(n_components=256, seed=seed),
    }


def inertia_in(E: np.ndarray, labels: np.ndarray) -> float:
    """KMeans inertia of ``labels`` measured in the space ``E`` (distances to each cluster's mean)."""
    total = 0.0
    for c in np.unique(labels):
        rows = E[labels == c]
        total += float(((rows - rows.mean(axis=0)) ** 2).sum())
    return total


def today(texts: list[str], corpus: str, seed: int, fresh: bool):
    """Today's embeddings and KMeans labels of ``texts`` (kept under _work/today/, as they take
    minutes at 100K; ``fresh`` recomputes them), and the seconds the embedding took."""
    from crowdselect_hf.clustering import fit_kmeans
    from crowdselect_hf.disk_cache import text_fingerprint
    import pyarrow as pa

    path = WORK / "today" / f"{corpus}-seed{seed}.npz"
    fingerprint = text_fingerprint(pa.array(texts))
    if path.exists() and not fresh:
        kept = np.load(path)
        if str(kept["fingerprint"]) == fingerprint:
            return kept["X"], kept["labels"], float(kept["seconds"]), str(kept["measured"])
    t0 = time.perf_counter()
    X = np.asarray(LegacyTfidf(seed).embed(texts), dtype=np.float32)
    seconds = time.perf_counter() - t0
    labels = fit_kmeans(X, 10, seed=seed, progress=False).labels
    measured = json.dumps(machine())
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=X, labels=labels, seconds=seconds, fingerprint=fingerprint, measured=measured)
    return X, labels, seconds, measured


def judged(judge, labels) -> dict:
    """The inertia of ``labels`` in the MiniLM space (``{}`` without one)."""
    return {} if judge is None else {"inertia_minilm_space": round(inertia_in(judge, labels), 2)}


def bench_quality(rows: int, minilm: bool, names: list[str] | None, seeds: int = 5, big_seeds: int = 3,
                  fresh: bool = False) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score

    from crowdselect_hf.clustering import fit_kmeans

    corpora = real_texts()
    if rows:
        corpora[f"synthetic-{rows}"] = pool_texts(rows)
    records = []
    for corpus, texts in corpora.items():
        SEEDS = tuple(range(42, 42 + (seeds if len(texts) <= 20_000 else big_seeds)))

        def clusters(embedder, seed):
            t0 = time.perf_counter()
            X = np.asarray(embedder.embed(texts), dtype=np.float32)
            seconds = time.perf_counter() - t0
            return X, fit_kmeans(X, 10, seed=seed, progress=False).labels, seconds

        legacy = {s: today(texts, corpus, s, fresh) for s in SEEDS}
        shared = legacy[SEEDS[0]][0]  # today's space (seed 42): where every labeling's inertia is measured
        judge = None
        if minilm and len(texts) <= 5_000:
            from crowdselect_hf.embeddings import get_embedder

            judge = get_embedder("minilm", progress=False).embed(texts)
        pairs = [adjusted_rand_score(legacy[a][1], legacy[b][1]) for i, a in enumerate(SEEDS) for b in SEEDS[i + 1:]]
        base = {"bench": "quality", "corpus": corpus, "rows": len(texts), "n_clusters": 10}
        records.append({**base, "embedder": "today: sklearn tfidf + TruncatedSVD256 (all rows)", "seeds": len(SEEDS),
                        "seconds": round(float(np.mean([v[2] for v in legacy.values()])), 2),
                        "seconds_measured_at": json.loads(legacy[SEEDS[0]][3])["load_avg"],
                        "ari_vs_today_mean": round(float(np.mean(pairs)), 4), "ari_vs_today_min": round(float(min(pairs)), 4),
                        "inertia_today_space": round(inertia_in(shared, legacy[SEEDS[0]][1]), 2),
                        **judged(judge, legacy[SEEDS[0]][1]),
                        "note": "ARI: seed-to-seed among today's seeds", **machine()})
        print(json.dumps(records[-1]), flush=True)
        for label in candidates(42):
            if names and not any(n in label for n in names):
                continue
            runs = {s: clusters(candidates(s)[label], s) for s in SEEDS}
            ari = [adjusted_rand_score(runs[s][1], legacy[t][1]) for s in SEEDS for t in SEEDS]
            own = [adjusted_rand_score(runs[a][1], runs[b][1]) for i, a in enumerate(SEEDS) for b in SEEDS[i + 1:]]
            records.append({**base, "embedder": label, "seeds": len(SEEDS),
                            "seconds": round(float(np.mean([v[2] for v in runs.values()])), 2),
                            "ari_vs_today_mean": round(float(np.mean(ari)), 4), "ari_vs_today_min": round(float(min(ari)), 4),
                            "ari_own_seeds_mean": round(float(np.mean(own)), 4),
                            "inertia_today_space": round(inertia_in(shared, runs[SEEDS[0]][1]), 2),
                            **judged(judge, runs[SEEDS[0]][1]), **machine()})
            print(json.dumps(records[-1]), flush=True)
    return records


# -- crowdselect select in new processes -------------------------------------------------------------

def cli_env() -> dict:
    return {**os.environ, "HF_DATASETS_CACHE": str(WORK / "hf-datasets-cache"), "CROWDSELECT_HOME": str(WORK / "home"),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def timed(cmd: list[str], env: dict, cwd: str | None = None) -> dict:
    """Wall seconds, CPU seconds (user + system: on a busy machine, closer to what a quiet one takes
    than the wall time) and peak RSS of one command (``/usr/bin/time``)."""
    timer = ["/usr/bin/time", "-f", "TIME %e %M %U %S"] if Path("/usr/bin/time").exists() else []
    t0 = time.perf_counter()
    proc = subprocess.run(timer + cmd, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    rss = cpu = None
    for line in proc.stderr.splitlines():
        if line.startswith("TIME "):
            _, _, kb, user, system = line.split()
            rss, cpu = round(int(kb) / 1024**2, 2), round(float(user) + float(system), 2)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": cpu, "peak_rss_gb": rss}


RUNS = {  # name: (extra arguments, what the run is)
    "first": (["--k", "1000"], "first ever: datasets converts the Parquet, embeddings and clusters computed"),
    "cold": (["--k", "1000"], "cold: datasets' cache present, no cached embeddings or clusters"),
    "warm": (["--k", "500", "--weights", "1,1,1"], "warm, new process: other k and weights"),
    "warm-strategy": (["--k", "800", "--strategy", "stability-top-clustered"], "warm, new process: another strategy"),
    "warm-no-report": (["--k", "600", "--weights", "1,0,1", "--no-report"], "warm, new process, without report.html"),
    "cold-no-report": (["--k", "1000", "--no-report"], "cold, without report.html"),
    "today-cold": (["--k", "1000"], "today's code (--baseline), cold"),
    "today-warm": (["--k", "500", "--weights", "1,1,1"], "today's code (--baseline), new process, other k and weights"),
}


def bench_cli(rows: int, runs: list[str], baseline: str | None) -> list[dict]:
    path = build_pool(rows)
    env = cli_env()
    exe = shutil.which("crowdselect")
    records = []
    for run in runs:
        args, what = RUNS[run]
        cache = Path(env["HF_DATASETS_CACHE"])
        if run == "first":
            shutil.rmtree(cache, ignore_errors=True)
        if run in ("cold", "cold-no-report", "today-cold"):
            for folder in cache.rglob("crowdselect-cache"):
                shutil.rmtree(folder)
        out = WORK / f"out-{rows}-{run}"
        shutil.rmtree(out, ignore_errors=True)
        if run.startswith("today"):
            if not baseline:
                raise SystemExit(f"run {run!r} needs --baseline DIR: a checkout of the code before issue 14")
            # Run from the checkout, so that its package shadows this one (the working directory
            # comes first on sys.path).
            baseline = str(Path(baseline).resolve())
            cmd, run_env, cwd = [sys.executable, "-m", "crowdselect_hf.cli"], {**env, "PYTHONPATH": baseline}, baseline
            source = baseline_pool(rows, baseline)
        else:
            cmd, run_env, cwd = ([exe] if exe else [sys.executable, "-m", "crowdselect_hf.cli"]), env, None
            source = path
        res = timed(cmd + ["select", str(source), "--out", str(out)] + args, run_env, cwd)
        records.append({"bench": "cli", "run": run, "rows": rows, "args": " ".join(args), "what": what, **res, **machine()})
        print(json.dumps(records[-1]), flush=True)
    return records


PHASES = r"""
import json, sys, time
t = {}
class phase:
    def __init__(self, name): self.name = name
    def __enter__(self): self.w, self.c = time.perf_counter(), time.process_time()
    def __exit__(self, *exc):
        t[self.name] = [round(time.perf_counter() - self.w, 3), round(time.process_time() - self.c, 3)]
with phase("import datasets"):
    import datasets
with phase("import crowdselect_hf"):
    from crowdselect_hf.commands import load_input
    from crowdselect_hf.pipeline import OutputConfig, _crowd_of, ensure_scored, publish_selection
    from crowdselect_hf.selection import crowd_select
with phase("load_input"):
    ds = load_input(sys.argv[1])
with phase("ensure_scored"):
    scored = ensure_scored(ds); crowd = _crowd_of(scored, None, None)
with phase("crowd_select"):
    sel = crowd_select(scored, k=500, weights=(1, 1, 1), crowd=crowd)
with phase("to_sft + save (no report)"):
    publish_selection(scored.select(sel.indices), sel, "phases", OutputConfig(out=sys.argv[2], report=False), crowd=crowd)
with phase("report"):
    from crowdselect_hf.report import write_report
    write_report(sys.argv[2], config="phases")
t["sklearn imported"] = "sklearn" in sys.modules
t["sklearn.cluster imported"] = "sklearn.cluster" in sys.modules
t["sklearn.decomposition imported"] = "sklearn.decomposition" in sys.modules
t["matplotlib imported"] = "matplotlib" in sys.modules
print(json.dumps(t))
"""


def bench_phases(rows: int, cold: bool = False) -> list[dict]:
    """Where the time of a re-selection in a new process goes (``cold``: with no cached embeddings
    or clusters)."""
    path = build_pool(rows)
    env = cli_env()
    if cold:
        for folder in Path(env["HF_DATASETS_CACHE"]).rglob("crowdselect-cache"):
            shutil.rmtree(folder)
    out = WORK / f"out-{rows}-phases"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", PHASES, str(path), str(out)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    phases = json.loads(proc.stdout.strip().splitlines()[-1])
    record = {"bench": "phases", "rows": rows, "cache": "cold" if cold else "warm", "unit": "[wall s, cpu s]", **phases,
              **machine()}
    print(json.dumps(record), flush=True)
    return [record]


STEPS = r"""
import json, sys, time
import numpy as np, pyarrow.parquet as pq
import datasets, sklearn.base, sklearn.cluster  # imported before, as in the command
from crowdselect_hf.clustering import fit_kmeans
from crowdselect_hf.tfidf import lsa, tfidf_matrix
t = {}
def timed(name, f):
    w, c = time.perf_counter(), time.process_time()
    out = f()
    t[name] = [round(time.perf_counter() - w, 3), round(time.process_time() - c, 3)]
    return out
texts = pq.read_table(sys.argv[1], columns=["instruction"]).column(0)
M, _ = timed("tf-idf matrix", lambda: tfidf_matrix(texts, progress=False))
X = timed("lsa (256, fit 20K, 4 iter)", lambda: lsa(M, 256, progress=False))
X /= np.linalg.norm(X, axis=1, keepdims=True)
timed("kmeans (auto: sampled)", lambda: fit_kmeans(X, 10, 42, progress=False))
print(json.dumps(t))
"""


def bench_steps(rows: int) -> list[dict]:
    """The default embedder's and KMeans' steps, timed one by one in a new process."""
    proc = subprocess.run([sys.executable, "-c", STEPS, str(build_pool(rows))], env=cli_env(), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    record = {"bench": "steps", "rows": rows, "unit": "[wall s, cpu s]", **json.loads(proc.stdout.strip().splitlines()[-1]),
              **machine()}
    print(json.dumps(record), flush=True)
    return [record]


# -- KMeans on given embeddings, MiniLM -------------------------------------------------------------------

def synthetic_embeddings(n: int, d: int = 384, blobs: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(blobs, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        X[s : s + m] = centers[rng.integers(0, blobs, m)] + rng.normal(0, 0.6 / np.sqrt(d), (m, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def synthetic_metrics(n: int, seed: int = 0):
    import datasets
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    stab = rng.uniform(-1, 1, n)
    stab[rng.random(n) < 0.05] = np.nan
    table = pa.table({"crowd_id": pa.array(np.char.mod("%016x", np.arange(n, dtype=np.int64))),
                      "crowd_difficulty": -rng.random(n), "crowd_separability": rng.random(n) ** 2,
                      "crowd_stability": stab, "crowd_best_model": pa.array(["m-7b"] * n),
                      "crowd_best_reward": rng.random(n)})
    return datasets.Dataset(datasets.table.InMemoryTable(table))


def bench_select(rows: int, compare: bool, k: int, kmeans: str) -> list[dict]:
    from crowdselect_hf.selection import CrowdSelector

    X, ds = synthetic_embeddings(rows), synthetic_metrics(rows)
    t0 = time.perf_counter()
    est = CrowdSelector(k=k, n_clusters=10, seed=42, kmeans=kmeans, cache=False).fit(ds, embeddings=X)
    out = {"bench": "select", "rows": rows, "dims": X.shape[1], "k": k, "kmeans": est.kmeans_algorithm_,
           "seconds": round(time.perf_counter() - t0, 2), "inertia": est.inertia_, "peak_rss_gb": round(peak_rss_gb(), 2)}
    if compare:
        from sklearn.cluster import KMeans

        t0 = time.perf_counter()
        ref = KMeans(n_clusters=10, random_state=42, n_init=20).fit(X)
        out.update(sklearn_full_seconds=round(time.perf_counter() - t0, 2), sklearn_full_inertia=float(ref.inertia_),
                   inertia_ratio=round(est.inertia_ / ref.inertia_, 5))
    record = {**out, **machine()}
    print(json.dumps(record), flush=True)
    return [record]


def bench_minilm(repeat: int, batch_size: int) -> list[dict]:
    import torch

    from crowdselect_hf.embeddings import TransformerEmbedder, minilm_path

    texts = real_texts()["alpaca_eval"] * repeat
    out = {"bench": "minilm", "texts": len(texts), "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
           "device": "cuda" if torch.cuda.is_available() else "cpu"}
    for sort in (True, False):
        emb = TransformerEmbedder(str(minilm_path()), batch_size=batch_size, sort_by_length=sort, progress=False)
        emb.embed(texts[:64])  # load and warm up
        t0 = time.perf_counter()
        emb.embed(texts)
        s = time.perf_counter() - t0
        out["sorted" if sort else "unsorted"] = {"seconds": round(s, 2), "texts_per_s": round(len(texts) / s, 1)}
    record = {**out, **machine()}
    print(json.dumps(record), flush=True)
    return [record]


# -- results -------------------------------------------------------------------------------------------

def save(records: list[dict], path: Path) -> None:
    old = json.loads(path.read_text()) if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(old + records, indent=1))


def table(records: list[dict]) -> str:
    lines = []
    for bench in dict.fromkeys(r["bench"] for r in records):
        rows = [r for r in records if r["bench"] == bench]
        keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("bench", "cpus")))
        lines += [f"\n{bench}", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=WORK / "selection-results.json", help="JSON file the records go to")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all", help="quality, cli and phases at 100K, select (given embeddings), cli at 1M")
    a.add_argument("--baseline", help="a checkout of the code before issue 14, for the today-* runs")
    a.add_argument("--big", type=int, default=1_000_000, help="rows of the large cold run (0: skip)")
    a.add_argument("--fresh", action="store_true", help="recompute today's embeddings (else kept in _work/today)")
    s = sub.add_parser("pool")
    s.add_argument("--rows", type=int, default=100_000)
    q = sub.add_parser("quality")
    q.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic corpus (0: real tables only)")
    q.add_argument("--no-minilm", action="store_true", help="skip the MiniLM space (real tables only)")
    q.add_argument("--only", nargs="*", help="candidates whose label contains one of these")
    q.add_argument("--seeds", type=int, default=5, help="seeds per embedder on the real tables")
    q.add_argument("--big-seeds", type=int, default=3, help="seeds per embedder on the synthetic corpus")
    q.add_argument("--fresh", action="store_true", help="recompute today's embeddings (else kept in _work/today)")
    c = sub.add_parser("cli")
    c.add_argument("--rows", type=int, default=100_000)
    c.add_argument("--runs", default="first,cold,warm,warm-strategy,warm-no-report,cold-no-report",
                   help=f"comma-separated, of {', '.join(RUNS)}")
    c.add_argument("--baseline", help="a checkout of the code before issue 14 (for today-cold, today-warm)")
    f = sub.add_parser("phases")
    f.add_argument("--rows", type=int, default=100_000)
    f.add_argument("--cold", action="store_true", help="remove the cached embeddings and clusters first")
    g = sub.add_parser("steps", help="the default embedder's and KMeans' steps one by one")
    g.add_argument("--rows", type=int, default=100_000)
    e = sub.add_parser("select")
    e.add_argument("--rows", type=int, default=100_000)
    e.add_argument("--k", type=int, default=1000)
    e.add_argument("--kmeans", default="auto")
    e.add_argument("--compare", action="store_true", help="also run sklearn KMeans(n_init=20) on all rows")
    m = sub.add_parser("minilm")
    m.add_argument("--repeat", type=int, default=2)
    m.add_argument("--batch-size", type=int, default=64)
    sub.add_parser("table", help="print the results file as tables")
    a = p.parse_args(argv)
    if a.cmd == "table":
        print(table(json.loads(a.results.read_text())))
        return
    if a.cmd == "all":  # each stage's records are saved as soon as it ends
        runs = "first,cold,warm,warm-strategy,warm-no-report,cold-no-report" + (",today-cold,today-warm" if a.baseline else "")
        stages = [lambda: bench_quality(100_000, minilm=True, names=None, seeds=5, big_seeds=5, fresh=a.fresh),
                  lambda: bench_cli(100_000, runs.split(","), a.baseline),
                  lambda: bench_phases(100_000, cold=True) + bench_phases(100_000) + bench_steps(100_000),
                  lambda: bench_select(100_000, True, 1000, "auto")]
        if a.big:
            stages += [lambda: bench_cli(a.big, ["first", "cold", "warm"], None),
                       lambda: bench_select(a.big, False, 1000, "auto")]
        records = []
        for stage in stages:
            done = stage()
            save(done, a.results)
            records += done
        print(table(records))
        return
    elif a.cmd == "pool":
        t0 = time.perf_counter()
        path = build_pool(a.rows)
        records = [{"bench": "pool", "rows": a.rows, "path": str(path.relative_to(ROOT)),
                    "mb": round(path.stat().st_size / 1e6, 1), "seconds": round(time.perf_counter() - t0, 1), **machine()}]
    elif a.cmd == "quality":
        records = bench_quality(a.rows, minilm=not a.no_minilm, names=a.only, seeds=a.seeds, big_seeds=a.big_seeds,
                                fresh=a.fresh)
    elif a.cmd == "cli":
        records = bench_cli(a.rows, a.runs.split(","), a.baseline)
    elif a.cmd == "phases":
        records = bench_phases(a.rows, a.cold)
    elif a.cmd == "steps":
        records = bench_steps(a.rows)
    elif a.cmd == "select":
        records = bench_select(a.rows, a.compare, a.k, a.kmeans)
    else:
        records = bench_minilm(a.repeat, a.batch_size)
    save(records, a.results)
    print(table(records))


if __name__ == "__main__":
    sys.exit(main())
