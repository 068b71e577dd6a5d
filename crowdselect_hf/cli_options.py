"""Command-line options generated from config dataclasses, so an option is declared once.

Like TRL's ``TrlParser``: each field of :class:`~crowdselect_hf.pipeline.SelectionConfig`,
:class:`~crowdselect_hf.rewards.RewardConfig` or :class:`~crowdselect_hf.generation.GenerationConfig`
becomes ``--field-name`` with the field's default and its help text (the field's ``help``
metadata, else its line in the class docstring's ``Args:``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any, Callable, Iterable, Mapping


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


def docstring_help(cls: type) -> dict[str, str]:
    """Field → its description in the class docstring's ``Args:`` (``a, b: text`` lines too)."""
    doc = cls.__doc__ or ""
    out: dict[str, str] = {}
    current: list[str] = []
    for line in doc.split("Args:", 1)[-1].splitlines():
        m = re.match(r"^\s{4,8}([a-z_][a-z_0-9, ]*):\s+(.*)$", line)
        if m:
            current = [n.strip() for n in m.group(1).split(",")]
            for n in current:
                out[n] = m.group(2).strip()
        elif line.strip() and current:
            for n in current:
                out[n] += " " + line.strip()
        elif not line.strip():
            current = []
    return out


def _base_type(annotation: Any) -> Any:
    if isinstance(annotation, str):
        annotation = annotation.replace(" ", "")
        for name, t in (("int", int), ("float", float), ("bool", bool), ("str", str)):
            if annotation in (name, f"{name}|None", f"None|{name}", f"Optional[{name}]"):
                return t
        return str
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def add_config_options(parser: argparse.ArgumentParser, cls: type, fields: Iterable[str], *,
                       types: Mapping[str, Callable[[str], Any]] | None = None,
                       choices: Mapping[str, Iterable[str]] | None = None,
                       defaults: Mapping[str, Any] | None = None, required: Iterable[str] = ()) -> None:
    """Add ``--<field>`` options for ``fields`` of the dataclass ``cls``.

    Example:
        >>> from crowdselect_hf.pipeline import SelectionConfig
        >>> p = argparse.ArgumentParser()
        >>> add_config_options(p, SelectionConfig, ["k", "seed"], types={"k": positive_int})
        >>> p.parse_args(["--k", "5"])
        Namespace(k=5, seed=42)
    """
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    described = docstring_help(cls)
    types, choices, defaults, required = dict(types or {}), dict(choices or {}), dict(defaults or {}), set(required)
    for name in fields:
        f = by_name[name]
        help_text = f.metadata.get("help") or described.get(name)
        if not help_text:
            raise ValueError(f"{cls.__name__}.{name} has no help text (field metadata or an Args: line)")
        if name in defaults:
            default = defaults[name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = None
        flag = "--" + name.replace("_", "-")
        kind = _base_type(f.type)
        if kind is bool and name not in types:
            parser.add_argument(flag, action="store_true", default=default, help=help_text)
            continue
        options: dict[str, Any] = {"type": types.get(name, kind if kind in (int, float, str) else str),
                                   "default": default}
        if name in choices:
            options["choices"] = list(choices[name])
            options["metavar"] = name.upper()
            help_text += f"; one of {', '.join(options['choices'])}"
        if name in required or (default is None and f.default is dataclasses.MISSING):
            options["required"] = True
        elif default is not None:
            shown = ",".join(f"{v:g}" for v in default) if isinstance(default, tuple) else default
            help_text += f" (default: {shown})"
        parser.add_argument(flag, help=help_text, **options)


def config_values(args: argparse.Namespace, cls: type, fields: Iterable[str]) -> dict[str, Any]:
    """The parsed values of ``fields`` as keyword arguments for ``cls``."""
    return {name: getattr(args, name) for name in fields}
