"""A one-file HTML report of a selection: what was picked from the pool, and why.

:func:`write_report` reads a config folder as the publish step writes it::

    <root>/<config>/train-*.parquet               the SFT rows (messages or prompt/completion)
    <root>/<config>/_crowdselect/selection.json   the SelectionRecord (crowdselect_hf.record)
    <root>/<config>/_crowdselect/pool.parquet     one row per pool row: crowd_* metrics, ranking
                                                  score, cluster, selected/back-filled flags and
                                                  2-D map coordinates

and writes ``<root>/<config>/report.html``: metric histograms (pool vs selected), the score the
strategy ranked by, a 2-D map of the instruction embeddings coloured by cluster, the per-cluster
quota table, how often each crowd member gave the best answer, and a sample of selected rows.
The selection's numbers come from its record (the same fields the dataset card shows); images
are embedded PNGs (base64 data URIs); the page loads nothing else and runs no script.

Layers: :mod:`.data` reads and shapes (no matplotlib, no HTML), :mod:`.figures` draws PNGs,
:mod:`.page` writes the HTML, :mod:`.style` holds the colours and the style sheet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa

from ..record import SelectionRecord
from .data import SAMPLE_ROWS, PoolData, ReportError, find_config_dir, read_sample_rows, read_saved
from .page import render_page

REPORT_FILE = "report.html"

__all__ = ["REPORT_FILE", "ReportError", "find_config_dir", "read_sample_rows", "render_report", "write_report"]


def write_report(folder_or_config_dir: str | os.PathLike, out: str | os.PathLike | None = None, config: str | None = None,
                 n_samples: int = SAMPLE_ROWS, *, plots: bool = True) -> Path:
    """Write the HTML report of a saved selection.

    Args:
        folder_or_config_dir: a config folder (holding ``_crowdselect/selection.json``), or the
            root of a Hub-shaped folder whose configs are sub-folders.
        out: the HTML file to write; default ``<config dir>/report.html``.
        config: which config of the root to report on; needed when it has several.
        n_samples: how many selected rows to show in full.
        plots: draw the figures (needs matplotlib); ``False`` writes the tables and notes only.

    Returns:
        The path of the written report.

    Raises:
        ReportError: no (or no single) config, or a record or pool table that cannot be read.

    Example:
        >>> write_report("out/magpie-crowdselect", config="crowdselect-1k")  # doctest: +SKIP
        PosixPath('out/magpie-crowdselect/crowdselect-1k/report.html')
    """
    saved = read_saved(find_config_dir(folder_or_config_dir, config), n_samples)
    text = render_report(saved.pool, saved.record, saved.samples, title=saved.config_dir.name, plots=plots)
    out = Path(out) if out is not None else saved.config_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def render_report(pool: pa.Table, record: SelectionRecord, sample_rows: Sequence[Mapping[str, Any]] = (),
                  title: str | None = None, *, plots: bool = True) -> str:
    """The report of ``record`` as one self-contained HTML page.

    Args:
        pool: one row per pool row (:meth:`Selection.pool_table`); needs ``crowd_selected``
            and uses, when present, the metric columns, ``crowd_combined`` (the ranking score),
            ``crowd_cluster``, ``crowd_backfilled``, ``crowd_best_model`` and ``crowd_map_x/y``.
        record: the selection's :class:`~crowdselect_hf.record.SelectionRecord`: parameters,
            per-cluster counts, pool accounting, crowd, reward and source are read from it alone.
        sample_rows: selected rows to show: ``messages`` or ``prompt``/``completion`` (or
            ``instruction``/``response``) plus optional ``crowd_*`` values.
        title: shown in the header; default: the record's config.
        plots: draw the figures (needs matplotlib); ``False`` renders the tables and notes only.

    Example:
        >>> import pyarrow as pa
        >>> from crowdselect_hf.record import SelectionRecord
        >>> record = SelectionRecord(strategy="reward-top", k=1, ranked_by="best reward", weights=None, seed=None,
        ...     clustering=None, clusters=(), n_pool=2, n_eligible=2, n_selected=1, n_backfilled=0, excluded={},
        ...     pool_duplicate_ids=0, neutral_filled={}, metric_means={}, metrics={"reward": "r"})
        >>> pool = pa.table({"crowd_selected": [True, False], "crowd_difficulty": [0.5, -1.0],
        ...                  "crowd_best_model": ["m-7b", "m-1b"]})
        >>> page = render_report(pool, record, [{"instruction": "Say <hi>", "response": "hi"}])
        >>> page.startswith("<!DOCTYPE html>"), "Say &lt;hi&gt;" in page, "<script" in page, "weights" in page
        (True, True, False, False)
    """
    if not isinstance(record, SelectionRecord):
        raise TypeError(f"record must be a crowdselect_hf.record.SelectionRecord, got {type(record).__name__}")
    return render_page(PoolData.from_table(pool), record, sample_rows, title if title is not None else record.config, plots)
