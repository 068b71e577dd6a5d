"""Read and attach columns of a ``datasets.Dataset`` without decoding or rewriting its table.

A ``Dataset`` is an Arrow table (often memory-mapped from cache files) plus, after ``select``
or ``shuffle``, an indices mapping into it. Reading a few columns selects them first and only
then applies the mapping, so no other column is copied; attaching new columns puts them beside
the table (``concat_tables(axis=1)``) and keeps the mapping, so nothing is rewritten.
"""

from __future__ import annotations

from typing import Sequence

import datasets
import pyarrow as pa
from datasets.table import Table, concat_tables


def read_columns(ds: datasets.Dataset, names: Sequence[str]) -> pa.Table:
    """The named columns of ``ds``, in its row order (indices mapping applied)."""
    table = ds.data.table.select(list(names))
    if ds._indices is not None:
        table = table.take(ds._indices.column(0))
    return table


def attach_columns(ds: datasets.Dataset, new: Table, features: datasets.Features, fingerprint: str) -> datasets.Dataset:
    """``ds`` with the columns of ``new`` beside its table; same-named columns are replaced.

    Args:
        ds: the dataset.
        new: the new columns, one row per row of the *underlying* table ``ds.data`` (not of
            the indices mapping), as a ``datasets.table.Table``.
        features: the features of the new columns.
        fingerprint: the new dataset's fingerprint.

    Returns:
        A new ``Dataset`` sharing ``ds``'s buffers, indices mapping and format.
    """
    base = ds.data
    stale = [c for c in new.column_names if c in base.column_names]
    if stale:
        base = base.drop(stale)
    info = ds.info.copy()
    info.features = datasets.Features({**{k: v for k, v in ds.features.items() if k not in features}, **features})
    out = datasets.Dataset(concat_tables([base, new], axis=1), info=info, split=ds.split,
                           indices_table=ds._indices, fingerprint=fingerprint)
    fmt = ds.format
    if fmt["type"] is not None or fmt["columns"] is not None:
        columns = None if fmt["columns"] is None else list(fmt["columns"]) + [c for c in features if c not in fmt["columns"]]
        out.set_format(fmt["type"], columns=columns, output_all_columns=fmt["output_all_columns"], **fmt["format_kwargs"])
    return out
