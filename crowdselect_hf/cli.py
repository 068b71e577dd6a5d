"""The ``crowdselect`` command line.

Every subcommand has ``--help``; errors in what you asked for (a missing file, k larger than the
pool, an unparsable weights string) print one line and exit 1, usage errors exit 2, Ctrl-C exits
130. Set ``CROWDSELECT_DEBUG=1`` to get the full traceback instead of the one-line message.

Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import __version__  # noqa: F401  (used by --version)

logger = logging.getLogger("crowdselect_hf")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DATA_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}


class CLIError(Exception):
    """A problem with what the user asked for: reported in one line, exit code 1."""


# -- argument helpers -----------------------------------------------------------------------------

def parse_weights(text: str) -> tuple[float, float, float]:
    """``"1,1,2"`` → ``(1.0, 1.0, 2.0)`` (difficulty, separability, stability)."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights must be three numbers like 1,1,2 (difficulty,separability,stability), got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"weights must be three numbers (difficulty,separability,stability), got {len(values)} in {text!r}")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET",
                   help="a Hub dataset id, a local Parquet/JSONL/CSV/Arrow file or folder, a save_to_disk folder, or a Hub-shaped folder")
    p.add_argument("--config", help="dataset config (subset) name")
    p.add_argument("--split", default=None, help="split to read (default: train)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")


def _add_crowd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--crowd", metavar="FILE_OR_PRESET",
                   help="a crowd file (JSON/YAML list of {name, family, params_b}) or a preset name; default: inferred from the columns")
    p.add_argument("--reward", help="the reward field to read (default: inferred)")


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("datasets", "ray"), default="datasets",
                   help="datasets (default: this machine) or ray (a Ray cluster; DATASET is Parquet: local paths, "
                        "hf://datasets/..., or a Hub id; --out is a folder every node can write to)")
    p.add_argument("--ray-address", default=None,
                   help="the Ray cluster for --engine ray (default: $RAY_ADDRESS, else a local instance)")


def _crowd(args) -> Any:
    from .crowd import PRESETS, Crowd

    if not getattr(args, "crowd", None):
        return None
    if Path(args.crowd).exists():
        return Crowd.from_file(args.crowd, reward=args.reward)
    if args.crowd.lower() in PRESETS:
        return Crowd.preset(args.crowd, reward=args.reward)
    raise CLIError(f"--crowd {args.crowd!r} is neither a file nor a preset ({', '.join(sorted(PRESETS))})")


def load_input(spec: str, config: str | None = None, split: str | None = None, revision: str | None = None):
    """Open DATASET as a ``datasets.Dataset``: a local file or folder, or a Hub id."""
    import datasets

    split = split or "train"
    path = Path(spec).expanduser()
    if path.is_file():
        builder = DATA_SUFFIXES.get(path.suffix.lower())
        if builder is None:
            raise CLIError(f"{spec}: unsupported file type {path.suffix!r} (use {', '.join(DATA_SUFFIXES)})")
        if builder == "arrow":
            return datasets.Dataset.from_file(str(path))
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        if (path / "state.json").exists() and (path / "dataset_info.json").exists():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
            return ds
        try:
            return datasets.load_dataset(str(path), config, split=split)
        except ValueError as e:
            raise CLIError(f"{spec}: {e}") from None
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1) or path.suffix.lower() in DATA_SUFFIXES:
        raise CLIError(f"{spec}: no such file or folder")
    try:
        return datasets.load_dataset(spec, config, split=split, revision=revision)
    except Exception as e:  # offline, unknown repo, gated…: one line is enough for a user
        raise CLIError(f"could not load {spec!r} from the Hub: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _scored(ds, args):
    """``ds`` with crowd_* columns: computed by ``score`` unless already present."""
    from .scoring import COLUMNS, score

    if all(c in ds.column_names for c in COLUMNS) and not getattr(args, "crowd", None):
        return ds
    return score(ds, crowd=_crowd(args), reward=getattr(args, "reward", None))


def _say(args, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


# -- the Ray engine (crowdselect_hf.ray) -----------------------------------------------------------

def _ray(args):
    """The ``crowdselect_hf.ray`` module, connected to ``--ray-address`` (an ImportError names the extra)."""
    from . import ray as csray

    csray.init(args.ray_address)
    return csray


def _ray_inputs(args) -> str:
    """DATASET as Parquet paths: local or any fsspec URL as given; a Hub id as its Parquet files
    (``hf://datasets/<id>[@revision]/[<config>/]**/<split>-*.parquet``)."""
    spec = args.dataset
    if "://" in spec or Path(spec).expanduser().exists():
        return spec
    if spec.startswith((".", "/", "~")):
        raise CLIError(f"{spec}: no such file or folder")
    repo = f"hf://datasets/{spec}" + (f"@{args.revision}" if args.revision else "")
    return f"{repo}/{args.config + '/' if args.config else ''}**/{args.split or 'train'}-*.parquet"


def _ray_out(out: str) -> str:
    if Path(out).suffix.lower() == ".parquet":
        raise CLIError(f"--out {out}: with --engine ray the output is a folder of Parquet files, not one file")
    return out


def _ray_score(args) -> int:
    from .scoring import CrowdScore

    csray, t = _ray(args), time.perf_counter()
    ds = csray.score_stage(csray.read_parquet(_ray_inputs(args)), CrowdScore(crowd=_crowd(args), reward=args.reward))
    out = csray.write_parquet(ds, _ray_out(args.out))
    _say(args, f"scored on Ray in {time.perf_counter() - t:.1f} s → {out}")
    return EXIT_OK


def _ray_select(args) -> int:
    from .crowd import Crowd

    csray, path = _ray(args), _ray_inputs(args)
    sel = csray.select(path, k=args.k, n_clusters=args.n_clusters, weights=args.weights, embedder=args.embedder,
                       seed=args.seed, strategy=args.strategy)
    rows = csray.selected_rows(path, sel)
    crowd = _crowd(args) or Crowd.infer(rows, reward=args.reward)
    return _finish_selection(args, rows, sel, crowd, {"dataset": args.dataset}, on="on Ray")


def _ray_reward(args) -> int:
    from .rewards import RewardScorer

    csray = _ray(args)
    scorer = RewardScorer(args.model, **_reward_options(args))
    out = csray.write_parquet(csray.reward_stage(csray.read_parquet(_ray_inputs(args)), scorer), _ray_out(args.out))
    _say(args, f"scored with {args.model} on Ray → {out}")
    return EXIT_OK


def _ray_generate(args) -> int:
    from .generation import CrowdGenerator

    csray = _ray(args)
    gen = CrowdGenerator(args.model, **_generation_options(args))
    out = csray.write_parquet(csray.generate_stage(csray.read_parquet(_ray_inputs(args)), gen), _ray_out(args.out))
    _say(args, f"generated answers of {len(args.model)} models on Ray → {out}")
    return EXIT_OK


# -- subcommands --------------------------------------------------------------------------------

def cmd_score(args) -> int:
    if args.engine == "ray":
        return _ray_score(args)
    ds = load_input(args.dataset, args.config, args.split, args.revision)
    t = time.perf_counter()
    scored = _scored(ds, args)
    out = Path(args.out)
    if out.suffix.lower() == ".parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        scored.to_parquet(str(out))
    else:
        scored.save_to_disk(str(out))
    from .scoring import crowd_report

    _say(args, f"scored {len(scored):,} rows in {time.perf_counter() - t:.1f} s → {out}",
         f"policies: {crowd_report(scored, crowd=_crowd(args), reward=args.reward).describe()}")
    return EXIT_OK


def _select(args, ds):
    from .crowd import Crowd
    from .selection import crowd_select

    scored = _scored(ds, args)
    if args.k > len(scored):
        raise CLIError(f"--k {args.k} is larger than the pool ({len(scored):,} rows)")
    sel = crowd_select(scored, k=args.k, n_clusters=args.n_clusters, weights=args.weights, embedder=args.embedder,
                       seed=args.seed, strategy=args.strategy)
    crowd = _crowd(args) or Crowd.infer(ds, reward=args.reward)
    return scored, sel, crowd


def _write_selection(args, picked, sel, crowd, source: dict) -> Path:
    """``picked`` (the selected rows, with their crowd columns) as a TRL-ready config of ``args.out``."""
    from .hub import save_local
    from .sft import to_sft

    curated = to_sft(picked, format=args.format, crowd=crowd)
    return save_local(curated, args.out, args.config_name, selection=sel, overwrite=args.overwrite, crowd=crowd, source=source)


def _maybe_report(args, folder: Path) -> Path | None:
    if args.no_report:
        return None
    try:
        from .report import write_report
    except ImportError as e:  # pragma: no cover - report imports matplotlib lazily
        logger.warning("no report: %s", e)
        return None
    try:
        return write_report(folder, config=args.config_name)
    except ImportError as e:
        logger.warning("no report (%s); pip install 'crowdselect-hf[report]'", e)
        return None


def cmd_select(args) -> int:
    if args.engine == "ray":
        return _ray_select(args)
    ds = load_input(args.dataset, args.config, args.split, args.revision)
    scored, sel, crowd = _select(args, ds)
    source = {"dataset": args.dataset, "config": args.config, "split": args.split or "train", "revision": args.revision}
    return _finish_selection(args, scored.select(sel.indices), sel, crowd, {k: v for k, v in source.items() if v is not None})


def _finish_selection(args, picked, sel, crowd, source: dict, on: str = "") -> int:
    """Format the picked rows for TRL, save them with the selection, report, tell, and push if asked."""
    folder = _write_selection(args, picked, sel, crowd, source)
    report = _maybe_report(args, folder)
    _say(args, f"selected {len(sel.indices):,} of {len(sel.combined):,} rows ({args.strategy}{', ' + on if on else ''}); "
               f"back-filled {len(sel.backfilled)}",
         f"curated set: {folder / args.config_name}", *([f"report: {report}"] if report else []))
    if args.push:
        from .hub import publish_folder

        _say(args, f"pushed: {publish_folder(folder, args.push, args.config_name, private=args.private)}")
    return EXIT_OK


def cmd_push(args) -> int:
    from .hub import publish_folder

    url = publish_folder(args.folder, args.repo_id, args.config_name, private=args.private, revision=args.revision,
                         create_pr=args.create_pr)
    _say(args, f"pushed: {url}")
    return EXIT_OK


def cmd_load(args) -> int:
    from .hub import load_selected

    ds = load_selected(args.name, args.config, split=args.split or "train")
    _say(args, str(ds))
    import json

    for row in ds.select(range(min(args.head, len(ds)))):
        print(json.dumps(_shorten(row, args.width), ensure_ascii=False, default=str))
    return EXIT_OK


def _shorten(value: Any, width: int) -> Any:
    """The value with every string longer than ``width`` cut to it (a preview keeps every key)."""
    if isinstance(value, str):
        return value if len(value) <= width else value[: width - 1] + "…"
    if isinstance(value, dict):
        return {k: _shorten(v, width) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, width) for v in value]
    return value


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.folder, out=args.out, config=args.config_name)
    _say(args, f"report: {path}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo_data import demo_crowd, demo_pool
    from .scoring import crowd_report, score
    from .selection import crowd_select

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    if (out / args.config_name).exists() and not args.overwrite:
        raise CLIError(f"{out / args.config_name} exists; pass --overwrite or choose another --out")
    pool, crowd = demo_pool(), demo_crowd()
    _say(args, f"[1/4] embedded demo pool: {len(pool):,} instructions × {len(crowd)} models in {len(crowd.families)} families")
    scored = score(pool, crowd=crowd)
    _say(args, f"[2/4] scored: {crowd_report(scored, crowd=crowd).describe()}")
    if args.k >= len(scored):
        raise CLIError(f"--k {args.k} must be smaller than the demo pool ({len(scored):,} rows)")
    sel = crowd_select(scored, k=args.k, n_clusters=args.n_clusters, weights=args.weights, embedder="tfidf", seed=args.seed)
    _say(args, f"[3/4] selected {len(sel.indices)} rows from {args.n_clusters} clusters (CrowdSelect, weights {args.weights})")
    args.out = str(out)
    folder = _write_selection(args, scored.select(sel.indices), sel, crowd, {"dataset": "crowdselect-hf embedded demo pool"})
    pool.to_parquet(str(out / "pool.parquet"))
    report = _maybe_report(args, folder)
    _say(
        args,
        f"[4/4] wrote the curated set and its report in {time.perf_counter() - t0:.1f} s",
        "",
        f"  the crowd table it used:   {out / 'pool.parquet'}",
        f"  curated set (Hub-shaped):  {folder}",
        f"  rows for TRL:              {folder / args.config_name}/train-*.parquet",
        *([f"  report:                    {report}"] if report else []),
        "",
        "next:",
        f"  python -c \"import datasets; print(datasets.load_dataset('{folder}', '{args.config_name}', split='train')[0])\"",
        f"  trl sft --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name {folder} --dataset_config {args.config_name} --output_dir sft-out",
        f"  crowdselect push {folder} YOUR-NAME/crowdselect-demo --config-name {args.config_name}",
        "  crowdselect select Magpie-Align/Magpie-100K-Generator-Zoo --crowd magpie-100k-generator-zoo --k 1000 --out curated",
    )
    return EXIT_OK


def cmd_reward(args) -> int:
    from .rewards import reward_dataset

    if args.engine == "ray":
        return _ray_reward(args)
    ds = load_input(args.dataset, args.config, args.split, args.revision)
    out = reward_dataset(ds, args.model, **_reward_options(args))
    _write_table(out, args.out)
    _say(args, f"scored {len(out):,} rows with {args.model} → {args.out}")
    return EXIT_OK


def cmd_generate(args) -> int:
    from .generation import generate_dataset

    if args.engine == "ray":
        return _ray_generate(args)
    ds = load_input(args.dataset, args.config, args.split, args.revision)
    out = generate_dataset(ds, args.model, **_generation_options(args))
    _write_table(out, args.out)
    _say(args, f"generated answers of {len(args.model)} models for {len(out):,} rows → {args.out}")
    return EXIT_OK


def _reward_options(args) -> dict[str, Any]:
    return {"reward_name": args.reward_name, "crowd": _crowd(args), "batch_size": args.batch_size,
            "max_length": args.max_length, "truncation": args.truncation, "trust_remote_code": args.trust_remote_code}


def _generation_options(args) -> dict[str, Any]:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed,
            "base_url": args.base_url}


def _write_table(ds, out: str) -> None:
    path = Path(out)
    if path.suffix.lower() == ".parquet":
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(path))
    else:
        ds.save_to_disk(str(path))


# -- parser -------------------------------------------------------------------------------------

def _add_selection_args(p: argparse.ArgumentParser, k_default: int | None) -> None:
    p.add_argument("--k", type=positive_int, default=k_default, required=k_default is None, help="rows to select (exactly)")
    p.add_argument("--n-clusters", type=positive_int, default=10, help="KMeans clusters (default: 10, the paper's)")
    p.add_argument("--weights", type=parse_weights, default=(1.0, 1.0, 2.0),
                   help="difficulty,separability,stability weights (default: 1,1,2, the paper's)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--format", choices=("messages", "prompt-completion"), default="messages", help="TRL dataset format")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--overwrite", action="store_true", help="replace an existing config of that name")


def build_parser() -> argparse.ArgumentParser:
    from .strategies import STRATEGIES

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only errors")
    parser = argparse.ArgumentParser(
        prog="crowdselect", parents=[common],
        description="CrowdSelect instruction-data selection (arXiv 2503.01836) for Hugging Face datasets.",
        epilog="Start with `crowdselect demo`; every subcommand has --help.",
    )
    parser.add_argument("--version", action="version", version=f"crowdselect-hf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", parents=[common], help="run score → select → SFT → report on the embedded pool, offline",
                       description="Run the whole pipeline on the pool shipped inside the package; writes ./crowdselect-demo/.")
    p.add_argument("--out", default="crowdselect-demo", help="output folder (default: ./crowdselect-demo)")
    p.add_argument("--config-name", default="crowdselect-demo")
    _add_selection_args(p, k_default=100)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("score", parents=[common], help="add the crowd_* columns to a crowd table",
                       description="Compute difficulty, separability, stability and the best answer of every instruction.")
    _add_dataset_args(p)
    _add_crowd_args(p)
    p.add_argument("--out", required=True, help="a .parquet file, or a folder (datasets save_to_disk)")
    _add_engine_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("select", parents=[common], help="select k rows and write a Hub-shaped folder with a card and report",
                       description="Score (if needed), select with CrowdSelect or a baseline, format for TRL, save, report, optionally push.")
    _add_dataset_args(p)
    _add_crowd_args(p)
    _add_selection_args(p, k_default=None)
    p.add_argument("--strategy", choices=STRATEGIES, default="crowdselect", metavar="STRATEGY",
                   help=f"default: crowdselect; one of {', '.join(STRATEGIES)}")
    p.add_argument("--embedder", default="tfidf", help="tfidf (default, no weights), minilm, a local model folder or Hub id, or column:NAME")
    p.add_argument("--out", default="curated", help="the Hub-shaped output folder (default: ./curated)")
    p.add_argument("--config-name", default=None, help="config name (default: <strategy>-<k>)")
    p.add_argument("--push", metavar="REPO_ID", help="also publish to this Hub dataset repo")
    p.add_argument("--private", action="store_true", default=None)
    _add_engine_args(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("push", parents=[common], help="publish a config of a Hub-shaped folder to the Hub",
                       description="Upload one config (data, selection files, merged card) in one commit; honours HF_TOKEN and HF_ENDPOINT.")
    p.add_argument("folder", metavar="FOLDER")
    p.add_argument("repo_id", metavar="REPO_ID")
    p.add_argument("--config-name", required=False, default=None, help="the config to push (default: the folder's only config)")
    p.add_argument("--private", action="store_true", default=None)
    p.add_argument("--revision")
    p.add_argument("--create-pr", action="store_true")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("load", parents=[common], help="load a curated set by recipe name, repo id or folder and show it")
    p.add_argument("name", metavar="NAME_OR_REPO_OR_FOLDER")
    p.add_argument("--config")
    p.add_argument("--split", default=None)
    p.add_argument("--head", type=int, default=3, help="rows to print (default: 3)")
    p.add_argument("--width", type=positive_int, default=80, help="longest string shown in a row (default: 80)")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("report", parents=[common], help="write report.html for a selection folder")
    p.add_argument("folder", metavar="SELECTION_FOLDER")
    p.add_argument("--config-name", default=None)
    p.add_argument("--out", default=None, help="the HTML file (default: <config>/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reward", parents=[common], help="score every crowd answer with a reward model",
                       description="Write a reward model's score into every member's answer (wide or long layout).")
    _add_dataset_args(p)
    _add_crowd_args(p)
    p.add_argument("--model", required=True, help="a sequence-classification reward model: local folder or Hub id")
    p.add_argument("--reward-name", default=None, help="the field to write (default: the model's name)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--max-length", type=positive_int, default=4096)
    p.add_argument("--truncation", choices=("right", "left", "skip", "error"), default="right",
                   help="what to do with pairs longer than --max-length (default: cut the end; the count is logged)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--out", required=True, help="a .parquet file, or a folder (datasets save_to_disk)")
    _add_engine_args(p)
    p.set_defaults(func=cmd_reward)

    p = sub.add_parser("generate", parents=[common], help="answer every instruction with several LLMs",
                       description="Turn an instruction-only dataset into a crowd table (one struct column per model).")
    _add_dataset_args(p)
    p.add_argument("--model", action="append", required=True, help="a local model folder, a Hub id, or a served model name (repeat)")
    p.add_argument("--base-url", default=None, help="an OpenAI-compatible server (e.g. vLLM) serving the models")
    p.add_argument("--max-new-tokens", type=positive_int, default=512)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="a .parquet file, or a folder (datasets save_to_disk)")
    _add_engine_args(p)
    p.set_defaults(func=cmd_generate)
    return parser


def _configure_output(quiet: bool) -> None:
    import datasets

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    if quiet:
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
        logging.getLogger("crowdselect_hf").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "config_name", "unset") is None and args.command == "select":
        args.config_name = f"{args.strategy}-{args.k}"
    _configure_output(args.quiet)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("crowdselect: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if os.environ.get("CROWDSELECT_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        expected = isinstance(e, (CLIError, ValueError, KeyError, OSError, ImportError))
        hint = "" if expected else f" ({type(e).__name__}; CROWDSELECT_DEBUG=1 shows the traceback)"
        print(f"crowdselect {args.command}: error: {message}{hint}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
