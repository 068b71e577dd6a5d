"""Progress bars for the steps of a selection that can take seconds (TF-IDF, the SVD, embedding
batches, KMeans), shown only once a step has run for :data:`DELAY_S` seconds.

Bars follow ``datasets``' switch: ``datasets.disable_progress_bars()`` (which ``crowdselect -q``
calls) or ``HF_DATASETS_DISABLE_PROGRESS_BARS=1`` turns them off, like datasets' own bars.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

DELAY_S = 2.0
"""A bar appears only after its step has run this long: short steps print nothing."""


def bars_enabled() -> bool:
    """Whether progress bars are on: ``datasets``' switch when datasets is loaded, else its
    environment variable.

    Example:
        >>> isinstance(bars_enabled(), bool)
        True
    """
    ds_tqdm = sys.modules.get("datasets.utils.tqdm")
    if ds_tqdm is not None and hasattr(ds_tqdm, "are_progress_bars_disabled"):
        return not ds_tqdm.are_progress_bars_disabled()
    return os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS", "").upper() not in {"1", "ON", "YES", "TRUE"}


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str, unit: str = "it",
                 enabled: bool = True) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one of ``total`` steps) that shows only when bars
    are on (:func:`bars_enabled`), ``enabled`` is true, and the step lasts over :data:`DELAY_S`.

    Args:
        iterable: what to iterate over; ``None`` for a bar advanced with ``update()``.
        total: number of steps (taken from ``len(iterable)`` when it has one).
        desc: what the step does, e.g. ``"tf-idf"``.
        unit: the unit of a step.
        enabled: the caller's own switch (e.g. an embedder's ``progress=False``).

    Example:
        >>> sum(progress_bar(range(3), desc="adding"))
        3
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, delay=DELAY_S, disable=not (enabled and bars_enabled()))
