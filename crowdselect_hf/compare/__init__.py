"""Close the loop: train a student on each curated config, judge the students side by side.

``crowdselect compare CURATED_FOLDER --student MODEL`` and :func:`compare` (the same options as
keyword arguments) train one student per config with TRL's ``SFTTrainer`` (the same base model,
hyper-parameters and seed for every config), let every student answer the same evaluation
prompts (a held-out slice of the pool by default), judge them against a baseline config with a
reward model and/or a pairwise LLM judge (both orders, ties allowed), and report win rates and
mean differences with seeded bootstrap intervals and a paired sign test, in ``compare.json``,
the report and the dataset card.

Modules: :mod:`.config` (the settings), :mod:`.evalset` (the prompts), :mod:`.training`,
:mod:`.answers`, :mod:`.judging` and :mod:`.verdicts` (the stages), :mod:`.stats` (pure
statistics), :mod:`.summary` and :mod:`.record` (compare.json), :mod:`.card_block` and
:mod:`.publish` (where it is shown), :mod:`.estimate`, :mod:`.cache`, :mod:`.run` (the order of
the stages), :mod:`.options` (the command line).
"""

import importlib
import sys
import types

_LAZY = {
    "compare": "run",
    "Comparison": "run",
    "CompareError": "config",
    "CompareSettings": "config",
    "ComparisonRecord": "record",
    "read_comparison": "record",
    "settings_of": "config",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _CallableModule(types.ModuleType):
    """``crowdselect_hf.compare`` is this package and, on the package face, the function: once the
    package is imported, Python binds the name to the package, so calling it must still compare."""

    def __call__(self, *args, **kwargs):
        return __getattr__("compare")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__all__ = sorted(_LAZY)
