"""The ``crowdselect`` subcommands: each turns parsed arguments into a call of the library.

The parser that builds those arguments is :mod:`crowdselect_hf.cli`; errors in what a user asked
for are :class:`CLIError` (one line, exit 1).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("crowdselect_hf")

EXIT_OK = 0
SELECTION_FIELDS = ("k", "strategy", "n_clusters", "weights", "embedder", "seed", "n_init", "no_cache", "cache_max_gb")
REWARD_FIELDS = ("reward_name", "batch_size", "max_batch_tokens", "max_length", "truncation", "trust_remote_code")
GENERATION_FIELDS = ("base_url", "max_new_tokens", "temperature", "seed", "batch_size")



DATA_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}


class CLIError(Exception):
    """A problem with what the user asked for: reported in one line, exit code 1."""


def _crowd(args) -> Any:
    """The ``--crowd`` file or preset, read once per command (``None``: inferred from the columns)."""
    from .crowd import PRESETS, Crowd

    if not getattr(args, "crowd", None):
        return None
    cached = getattr(args, "_crowd_value", None)
    if cached is not None:
        return cached
    if Path(args.crowd).exists():
        crowd = Crowd.from_file(args.crowd, reward=args.reward)
    elif args.crowd.lower() in PRESETS:
        crowd = Crowd.preset(args.crowd, reward=args.reward)
    else:
        raise CLIError(f"--crowd {args.crowd!r} is neither a file nor a preset ({', '.join(sorted(PRESETS))})")
    args._crowd_value = crowd
    return crowd


def load_input(spec: str, config: str | None = None, split: str | None = None, revision: str | None = None):
    """Open DATASET as a ``datasets.Dataset``: a local file or folder, or a Hub id."""
    ds = _open_input(spec, config, split, revision)
    if len(ds) == 0:
        raise CLIError(f"{spec}: the input has no rows; a crowd table needs at least one instruction")
    return ds


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as e:  # not Parquet at all: say so in the user's terms
        raise CLIError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


def _open_input(spec: str, config: str | None, split: str | None, revision: str | None):
    import datasets

    path = Path(spec).expanduser()
    if path.is_file():
        builder = DATA_SUFFIXES.get(path.suffix.lower())
        if builder is None:
            raise CLIError(f"{spec}: unsupported file type {path.suffix!r} (use {', '.join(DATA_SUFFIXES)})")
        for flag, value in (("--split", split if split != "train" else None), ("--config", config), ("--revision", revision)):
            if value is not None:
                raise CLIError(f"{flag} {value}: {spec} is one file, which has one split and no configs; drop {flag} "
                               "or pass the folder or Hub dataset it came from")
        if path.stat().st_size == 0:
            raise CLIError(f"{spec}: the file is empty; a crowd table needs at least one instruction")
        if builder == "arrow":
            return datasets.Dataset.from_file(str(path))
        if builder == "parquet" and _parquet_rows(path) == 0:
            raise CLIError(f"{spec}: the Parquet file has no rows; a crowd table needs at least one instruction")
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        except datasets.exceptions.DatasetGenerationError as e:
            cause = e.__cause__ or e
            raise CLIError(f"{spec}: could not read it as {builder} ({str(cause).splitlines()[0]})") from None
        except ValueError as e:
            if "corresponds to no data" in str(e):  # datasets' words for a file with a header and no rows
                raise CLIError(f"{spec}: the file has no rows; a crowd table needs at least one instruction") from None
            raise
    split = split or "train"
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise CLIError(f"--split {split}: {spec} has the splits {', '.join(ds)}; pass one of them")
                ds = ds[split]
            elif split != "train":
                raise CLIError(f"--split {split}: {spec} is a single saved split; drop --split")
            return ds
        if config is None:
            configs = datasets.get_dataset_config_names(str(path))
            if len(configs) > 1:
                raise CLIError(f"{spec} holds several configs ({', '.join(configs)}); choose the input's config with "
                               "--config")
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


def _ray_map(args, stage: str, fn, what: str) -> int:
    """Read DATASET on Ray, run one ``crowdselect_hf.ray`` stage with ``fn``, write the Parquet folder."""
    csray, t = _ray(args), time.perf_counter()
    out = csray.write_parquet(getattr(csray, stage)(csray.read_parquet(_ray_inputs(args)), fn), _ray_out(args.out))
    _say(args, f"{what} on Ray in {time.perf_counter() - t:.1f} s → {out}")
    return EXIT_OK


def _ray_score(args) -> int:
    from .scoring import CrowdScore

    return _ray_map(args, "score_stage", CrowdScore(crowd=_crowd(args), reward=args.reward), "scored")


def _ray_select(args) -> int:
    from .pipeline import publish_selection

    csray, path = _ray(args), _ray_inputs(args)
    config, output = _selection_config(args), _output_config(args)
    sel = csray.select(path, **config.selector_kwargs())
    done = publish_selection(csray.selected_rows(path, sel), sel, output.named(config), output, crowd=_crowd(args),
                             source={"dataset": args.dataset})
    return _tell(args, done, on="on Ray")


def _ray_reward(args) -> int:
    from .rewards import RewardScorer

    return _ray_map(args, "reward_stage", RewardScorer(args.model, **_reward_options(args)), f"scored with {args.model}")


def _ray_generate(args) -> int:
    from .generation import CrowdGenerator

    n = len(args.model)
    return _ray_map(args, "generate_stage", CrowdGenerator(args.model, **_generation_options(args)),
                    f"generated answers of {n} model{'s' if n != 1 else ''}")


# -- subcommands --------------------------------------------------------------------------------

def cmd_score(args) -> int:
    from .hub import check_table_out
    from .scoring import score_with_counts

    check_table_out(args.out)  # never over a curated folder, nor under a file
    if args.engine == "ray":
        return _ray_score(args)
    ds = load_input(args.dataset, args.config, args.split, args.revision)
    t = time.perf_counter()
    scored, counts = score_with_counts(ds, crowd=_crowd(args), reward=args.reward)
    _write_table(scored, args.out)
    _say(args, f"scored {len(scored):,} rows in {time.perf_counter() - t:.1f} s → {args.out}",
         f"policies: {counts.describe()}")
    return EXIT_OK


def _selection_config(args, **overrides: Any):
    from .pipeline import SelectionConfig

    return SelectionConfig(**{name: getattr(args, name) for name in SELECTION_FIELDS if hasattr(args, name)}, **overrides)


def _output_config(args, **overrides: Any):
    from .pipeline import OutputConfig

    values = {"out": args.out, "config_name": args.config_name, "format": args.format, "overwrite": getattr(args, "overwrite", False),
              "report": not args.no_report, "push": getattr(args, "push", None), "private": getattr(args, "private", None)}
    return OutputConfig(**{**values, **overrides})


def cmd_select(args) -> int:
    from .pipeline import curate

    if args.engine == "ray":
        return _ray_select(args)
    ds = load_input(args.dataset, args.config, args.split, args.revision)
    source = {"dataset": args.dataset, "config": args.config, "split": args.split or "train", "revision": args.revision}
    done = curate(ds, _selection_config(args), _output_config(args), crowd=_crowd(args), reward=args.reward,
                  source={k: v for k, v in source.items() if v is not None})
    return _tell(args, done)


def _tell(args, done, on: str = "") -> int:
    """What a selection wrote, in a few lines."""
    sel = done.selection
    _say(args, f"selected {len(sel.indices):,} of {len(sel.combined):,} rows ({sel.record.strategy}{', ' + on if on else ''}); "
               f"back-filled {len(sel.backfilled)}",
         f"curated set: {done.config_dir}", *([f"report: {done.report}"] if done.report else []),
         *([f"pushed: {done.url}"] if done.url else []))
    return EXIT_OK


def cmd_build(args) -> int:
    from .recipes import build, get_recipe, list_recipes

    if args.list:
        for name in list_recipes():
            print(f"{name}\t{get_recipe(name).description}")
        return EXIT_OK
    if not args.recipe:
        raise CLIError(f"name a recipe (or pass --list); known recipes: {', '.join(list_recipes())}")
    result = build(args.recipe, out=args.out, push=args.push, repo_id=args.repo_id, private=args.private,
                   overwrite=not args.no_overwrite)
    _say(args, f"built {result['recipe']}: {result['rows']:,} rows → {result['folder']}/{result['config']}",
         *([f"pushed: {result['url']}"] if result.get("url") else []))
    return EXIT_OK


def cmd_push(args) -> int:
    from .hub import publish_folder

    url = publish_folder(args.folder, args.repo_id, args.config_name, private=args.private, revision=args.revision,
                         create_pr=args.create_pr)
    _say(args, f"pushed: {url}")
    return EXIT_OK


def cmd_load(args) -> int:
    from .hub import load_selected

    ds = load_selected(args.name, args.config_name, split=args.split or "train")
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
    from .pipeline import curate
    from .scoring import score_with_counts

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    replaced = (out / args.config_name).exists()
    pool, crowd = demo_pool(), demo_crowd()
    _say(args, f"[1/4] embedded demo pool: {len(pool):,} instructions × {len(crowd)} models in {len(crowd.families)} families")
    scored, counts = score_with_counts(pool, crowd=crowd)
    _say(args, f"[2/4] scored: {counts.describe()}")
    config = _selection_config(args, embedder="tfidf")
    done = curate(scored, config, _output_config(args, out=str(out), overwrite=True), crowd=crowd,
                  source={"dataset": "crowdselect-hf embedded demo pool"})
    folder, report = done.folder, done.report
    _say(args, f"[3/4] selected {len(done.selection.indices)} rows from {config.n_clusters} clusters "
               f"(CrowdSelect, weights {config.weights})"
               + (f"; replaced the earlier demo output in {folder / args.config_name}" if replaced else ""))
    pool.to_parquet(str(out / "pool.parquet"))
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

    return _transform(args, _ray_reward, lambda ds: reward_dataset(ds, args.model, **_reward_options(args)),
                      lambda out: f"scored {len(out):,} rows with {args.model} → {args.out}")


def cmd_generate(args) -> int:
    from .generation import generate_dataset

    n = len(args.model)
    return _transform(args, _ray_generate, lambda ds: generate_dataset(ds, args.model, **_generation_options(args)),
                      lambda out: f"generated answers of {n} model{'s' if n != 1 else ''} for {len(out):,} rows → {args.out}")


def _transform(args, on_ray, transform, told) -> int:
    """Load DATASET, transform it (or run the Ray stage instead), write it to --out, and tell."""
    from .folder import check_table_out

    check_table_out(args.out)
    if args.engine == "ray":
        return on_ray(args)
    out = transform(load_input(args.dataset, args.config, args.split, args.revision))
    _write_table(out, args.out)
    _say(args, told(out))
    return EXIT_OK


def _reward_options(args) -> dict[str, Any]:
    return {"crowd": _crowd(args), **{name: getattr(args, name) for name in REWARD_FIELDS}}


def _generation_options(args) -> dict[str, Any]:
    return {name: getattr(args, name) for name in GENERATION_FIELDS}


def _write_table(ds, out: str) -> None:
    path = Path(out)
    if path.suffix.lower() == ".parquet":
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(path))
    else:
        ds.save_to_disk(str(path))


def cmd_compare(args) -> int:
    from .compare.options import settings_from_args
    from .compare.run import compare

    done = compare(args.folder, settings=settings_from_args(args), say=None if args.quiet else print,
                   progress=not args.quiet)
    if done.record is None:
        _say(args, f"stopped after {done.stopped_after}; the results so far are cached in {done.out}: run the same "
                   "command again (without --stop-after) to go on")
    return EXIT_OK
