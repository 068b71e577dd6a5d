"""The ``crowdselect`` command line: the parser, generated where it can be from the config
dataclasses, and ``main``. The subcommands themselves live in :mod:`crowdselect_hf.commands`.

Every subcommand has ``--help``; errors in what you asked for (a missing file, k larger than the
pool, an unparsable weights string) print one line and exit 1, usage errors exit 2, Ctrl-C exits
130. Set ``CROWDSELECT_DEBUG=1`` to get the full traceback instead of the one-line message; ``-q``
silences progress bars and everything but errors, ``-v`` adds the library's INFO log lines.
``python -m crowdselect_hf`` is the same command.

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
from typing import Sequence

from .cli_options import add_config_options, parse_weights, positive_int
from .commands import (
    GENERATION_FIELDS, REWARD_FIELDS, SELECTION_FIELDS, CLIError, cmd_build, cmd_demo, cmd_generate, cmd_load, cmd_push,
    cmd_reward, cmd_score, cmd_select, cmd_report,
)
from .version import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

__all__ = ["CLIError", "build_parser", "main"]


# -- argument helpers -----------------------------------------------------------------------------

def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET",
                   help="a Hub dataset id, a local Parquet/JSONL/CSV/Arrow file or folder, a save_to_disk folder, or a Hub-shaped folder")
    p.add_argument("--config", help="the input dataset's config (subset); the curated config is --config-name")
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


def _table_command(sub, common, name: str, func, *, crowd: bool = True, **texts: str) -> argparse.ArgumentParser:
    """A subcommand that reads DATASET and writes a table to --out, on this machine or on Ray."""
    p = sub.add_parser(name, parents=[common], **texts)
    _add_dataset_args(p)
    if crowd:
        _add_crowd_args(p)
    p.add_argument("--out", required=True, help="a .parquet file, or a folder (datasets save_to_disk)")
    _add_engine_args(p)
    p.set_defaults(func=func)
    return p


def _add_selection_args(p: argparse.ArgumentParser, k_default: int | None, fields: Sequence[str] = SELECTION_FIELDS,
                        overwrite: bool = True) -> None:
    from .pipeline import OutputConfig, SelectionConfig
    from .strategies import STRATEGIES

    add_config_options(p, SelectionConfig, fields, types={"k": positive_int, "n_clusters": positive_int,
                                                          "n_init": positive_int, "weights": parse_weights},
                       choices={"strategy": STRATEGIES}, defaults={"k": k_default},
                       required=("k",) if k_default is None else ())
    p.add_argument("--format", choices=("messages", "prompt-completion"), default="messages",
                   help=OutputConfig.__dataclass_fields__["format"].metadata["help"])
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    if overwrite:
        p.add_argument("--overwrite", action="store_true", help=OutputConfig.__dataclass_fields__["overwrite"].metadata["help"])


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags: ``--config`` must never be read as ``--config-name`` (one flag, one meaning)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _add_loudness(p: argparse.ArgumentParser, default) -> None:
    loudness = p.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars, only errors")
    loudness.add_argument("-v", "--verbose", action="store_true", default=default,
                          help="also log what the library does at INFO (the policies applied, caches used)")


def build_parser() -> argparse.ArgumentParser:
    from .generation import GenerationConfig
    from .rewards import TRUNCATION, RewardConfig

    parser = _Parser(
        prog="crowdselect",
        description="CrowdSelect instruction-data selection (arXiv 2503.01836) for Hugging Face datasets.",
        epilog="Start with `crowdselect demo`; every subcommand has --help.",
    )
    _add_loudness(parser, default=False)
    # The subcommands accept -q/-v too; SUPPRESS keeps them from resetting a flag given before the subcommand.
    common = _Parser(add_help=False)
    _add_loudness(common, default=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"crowdselect-hf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", parents=[common], help="run score → select → SFT → report on the embedded pool, offline",
                       description="Run the whole pipeline on the pool shipped inside the package; writes ./crowdselect-demo/ "
                                   "(a second run replaces its own output, and says so).")
    p.add_argument("--out", default="crowdselect-demo", help="output folder (default: ./crowdselect-demo)")
    p.add_argument("--config-name", default="crowdselect-demo", help="the curated config's name (default: crowdselect-demo)")
    _add_selection_args(p, k_default=100, fields=("k", "n_clusters", "weights", "seed", "n_init"), overwrite=False)
    p.set_defaults(func=cmd_demo)

    _table_command(sub, common, "score", cmd_score, help="add the crowd_* columns to a crowd table",
                   description="Compute difficulty, separability, stability and the best answer of every instruction.")

    p = sub.add_parser("select", parents=[common], help="select k rows and write a Hub-shaped folder with a card and report",
                       description="Score (if needed), select with CrowdSelect or a baseline, format for TRL, save, report, optionally push.")
    _add_dataset_args(p)
    _add_crowd_args(p)
    _add_selection_args(p, k_default=None)
    p.add_argument("--out", default="curated", help="the Hub-shaped output folder (default: ./curated)")
    p.add_argument("--config-name", default=None, help="the curated config's name (default: <strategy>-<k>)")
    p.add_argument("--push", metavar="REPO_ID", help="also publish to this Hub dataset repo")
    p.add_argument("--private", action="store_true", default=None, help="create the Hub repo as private (with --push)")
    _add_engine_args(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("push", parents=[common], help="publish a config of a Hub-shaped folder to the Hub",
                       description="Upload one config (data, selection files, merged card) in one commit; honours HF_TOKEN and HF_ENDPOINT.")
    p.add_argument("folder", metavar="FOLDER", help="a curated folder written by `crowdselect select` (or save_local)")
    p.add_argument("repo_id", metavar="REPO_ID", help="the Hub dataset repo, owner/name (created if missing)")
    p.add_argument("--config-name", required=False, default=None, help="the curated config to push (default: the folder's only config)")
    p.add_argument("--private", action="store_true", default=None, help="create the repo as private")
    p.add_argument("--revision", help="the branch to commit to (default: main)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to the branch")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("load", parents=[common], help="load a curated set by recipe name, repo id or folder and show it",
                       description="Load a curated config (a recipe name, a Hub repo id or a folder) and print its first rows.")
    p.add_argument("name", metavar="NAME_OR_REPO_OR_FOLDER", help="a recipe name, a Hub dataset repo id, or a curated folder")
    p.add_argument("--config-name", default=None, help="the curated config to load (default: the only one)")
    p.add_argument("--split", default=None, help="split to read (default: train)")
    p.add_argument("--head", type=int, default=3, help="rows to print (default: 3)")
    p.add_argument("--width", type=positive_int, default=80, help="longest string shown in a row (default: 80)")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("report", parents=[common], help="write report.html for a selection folder",
                       description="Write the one-file HTML report of a curated config from its recorded selection.")
    p.add_argument("folder", metavar="SELECTION_FOLDER", help="a curated folder, or one config folder of it")
    p.add_argument("--config-name", default=None, help="the curated config to report on (default: the only one)")
    p.add_argument("--out", default=None, help="the HTML file (default: <config>/report.html)")
    p.set_defaults(func=cmd_report)

    p = _table_command(sub, common, "reward", cmd_reward, help="score every crowd answer with a reward model",
                       description="Write a reward model's score into every member's answer (wide or long layout).")
    p.add_argument("--model", required=True, help="a sequence-classification reward model: local folder or Hub id")
    add_config_options(p, RewardConfig, REWARD_FIELDS, types={"batch_size": positive_int, "max_length": positive_int},
                       choices={"truncation": TRUNCATION})

    p = _table_command(sub, common, "generate", cmd_generate, crowd=False, help="answer every instruction with several LLMs",
                       description="Turn an instruction-only dataset into a crowd table (one struct column per model).")
    p.add_argument("--model", action="append", required=True, help="a local model folder, a Hub id, or a served model name (repeat)")
    add_config_options(p, GenerationConfig, GENERATION_FIELDS, types={"max_new_tokens": positive_int,
                                                                       "batch_size": positive_int})

    p = sub.add_parser("build", parents=[common], help="rebuild a named curated set from its recipe",
                       description="Score, select and save a recipe's curated config (where load_selected looks by "
                                   "name, unless --out), and optionally publish it.")
    p.add_argument("recipe", nargs="?", metavar="RECIPE", help="a recipe name (see --list) or a recipe file")
    p.add_argument("--list", action="store_true", help="list the known recipes and exit")
    p.add_argument("--out", default=None, help="the Hub-shaped folder to write (default: where load_selected looks)")
    p.add_argument("--push", action="store_true", help="also publish to the recipe's Hub repo (HF_TOKEN)")
    p.add_argument("--repo-id", default=None, help="publish to this repo instead of the recipe's target")
    p.add_argument("--private", action="store_true", default=None, help="create the Hub repo as private")
    p.add_argument("--no-overwrite", action="store_true", help="refuse to replace an existing config")
    p.set_defaults(func=cmd_build)

    from .commands import cmd_compare
    from .compare.options import add_compare_options

    p = sub.add_parser("compare", parents=[common], help="train a student on each config and judge them side by side",
                       description="Fine-tune one student per curated config (TRL), let each answer the same held-out "
                                   "prompts, judge them against a baseline config (reward model and/or pairwise LLM "
                                   "judge, both orders), and write compare.json, the report section and the card block.")
    add_compare_options(p)
    p.set_defaults(func=cmd_compare)
    return parser


def _configure_output(quiet: bool, verbose: bool = False) -> None:
    import datasets

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    if quiet:
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
        logging.getLogger("crowdselect_hf").setLevel(logging.ERROR)
    elif verbose:
        logging.getLogger("crowdselect_hf").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_output(args.quiet, args.verbose)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("crowdselect: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `crowdselect build --list | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
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
