"""The ``crowdselect compare`` options, generated from the settings dataclasses of :mod:`.config`
(each field's ``help``), and the parsed arguments turned back into :class:`~.config.CompareSettings`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..cli_options import add_config_options, positive_int
from .config import DTYPES, SCHEDULERS, SECTIONS, STOP_AFTER, CompareSettings

def parse_bool(text: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0), for switches that default to on."""
    value = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}.get(
        text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


TYPES = {
    "gradient_checkpointing": parse_bool,
    "configs": lambda text: tuple(c for c in (p.strip() for p in text.split(",")) if c),
    "train_batch_size": positive_int, "grad_accum": positive_int, "max_length": positive_int, "lora_r": positive_int,
    "lora_alpha": positive_int, "eval_size": positive_int, "min_eval_prompts": positive_int,
    "max_new_tokens": positive_int, "answer_batch_size": positive_int, "reward_batch_size": positive_int,
    "reward_max_length": positive_int, "judge_max_tokens": positive_int, "judge_concurrency": positive_int,
    "bootstrap": positive_int,
}
CHOICES = {"scheduler": SCHEDULERS, "dtype": DTYPES, "stop_after": STOP_AFTER}
GROUPS = {"run": "what to compare", "train": "training (the same for every student)", "evaluation": "evaluation prompts",
          "answers": "student answers", "judge": "judges and statistics"}


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    """CURATED_FOLDER and one ``--option`` per settings field, in one argument group per stage.

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_compare_options(p)
        >>> args = p.parse_args(["cur", "--student", "m", "--configs", "a,b", "--lora", "--reward-model", "rm"])
        >>> s = settings_from_args(args)
        >>> s.run.configs, s.train.lora, s.judge.judges, s.train.learning_rate
        (('a', 'b'), True, ('reward',), 1e-05)
    """
    parser.add_argument("folder", metavar="CURATED_FOLDER", help="a curated folder with two or more configs "
                                                                  "(written by `crowdselect select`)")
    for name, kind in SECTIONS.items():
        group = parser.add_argument_group(GROUPS[name])
        fields = [f.name for f in dataclasses.fields(kind)]
        add_config_options(group, kind, fields, types={k: v for k, v in TYPES.items() if k in fields},
                           defaults={"configs": None} if "configs" in fields else None,
                           choices={k: v for k, v in CHOICES.items() if k in fields})


def settings_from_args(args: argparse.Namespace) -> CompareSettings:
    """The parsed options as :class:`CompareSettings`."""
    values: dict[str, Any] = {}
    for name, kind in SECTIONS.items():
        values[name] = kind(**{f.name: getattr(args, f.name) for f in dataclasses.fields(kind)})
    return CompareSettings(**values)
