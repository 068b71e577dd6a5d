"""A one-file HTML report of a selection: what was picked from the pool, and why.

:func:`write_report` reads a config folder as the publish step writes it::

    <root>/<config>/train-*.parquet               the SFT rows (messages or prompt/completion)
    <root>/<config>/_crowdselect/selection.json   the SelectionRecord (crowdselect_hf.record)
    <root>/<config>/_crowdselect/pool.parquet     one row per pool row: crowd_* metrics, ranking
                                                  score, cluster, selected/back-filled flags, 2-D
                                                  map coordinates, best-answer bytes, why it was
                                                  excluded, the instruction (cut short); in its
                                                  schema metadata the map's explained variance and
                                                  each member's reward summary

and writes ``<root>/<config>/report.html``: metric histograms and their rank correlations (pool
vs selected), the score the strategy ranked by, the best answers' reward and length, reward by
member size per family, a 2-D map of the instruction embeddings coloured by cluster (with hover
text), the per-cluster quota table with each cluster's top terms, how often each crowd member gave
the best answer, a sample of selected rows, and the near-misses and lowest-ranked rows with why
they lost. The selection's numbers come from its record (the same fields the dataset card shows);
figures are SVG, embedded as base64 data URIs (density shading inside them as embedded PNGs); the
page loads nothing else, and its only script is the map's hover text. The pool-table columns the report does without (those a pool table of
crowdselect-hf 0.1.0 lacks, or the selector could not fill) are listed in
:data:`.data.OPTIONAL_COLUMNS`; without them, and without the schema metadata, it says what it
cannot show.

Layers: :mod:`.data` reads and shapes (no drawing, no HTML); :mod:`.labels`, :mod:`.ranking`,
:mod:`.summaries` and :mod:`.hover` compute what the sections state; :mod:`.figures` and
:mod:`.mapfigure` draw the figures with :mod:`.svg` (no plotting library); :mod:`.sections` and
:mod:`.review` write one section each from a :class:`.context.ReportContext`; :mod:`.page` assembles them (:data:`.page.SECTIONS`);
:mod:`.markup` and :mod:`.style` hold the shared HTML pieces, the colours and the style sheet.
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
        plots: draw the figures; ``False`` writes the tables and notes only.

    Returns:
        The path of the written report.

    Raises:
        ReportError: no (or no single) config, or a record or pool table that cannot be read.

    Example:
        >>> write_report("out/magpie-crowdselect", config="crowdselect-1k")  # doctest: +SKIP
        PosixPath('out/magpie-crowdselect/crowdselect-1k/report.html')
    """
    saved = read_saved(find_config_dir(folder_or_config_dir, config), n_samples)
    text = render_report(saved.pool, saved.record, saved.samples, title=saved.config_dir.name, plots=plots,
                         instructions=saved.texts, config_dir=saved.config_dir)
    out = Path(out) if out is not None else saved.config_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def render_report(pool: pa.Table, record: SelectionRecord, sample_rows: Sequence[Mapping[str, Any]] = (),
                  title: str | None = None, *, plots: bool = True, instructions: Mapping[str, str] | None = None,
                  config_dir: str | os.PathLike | None = None) -> str:
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
        plots: draw the figures; ``False`` renders the tables and notes only.
        instructions: instructions by ``crowd_id`` (e.g. of the training rows) for a pool table
            without a ``crowd_instruction`` column; they label the clusters and the hover text.
        config_dir: the config folder the tables were read from, for sections that read files
            beside the selection.

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
    return render_page(PoolData.from_table(pool, instructions), record, sample_rows,
                       title if title is not None else record.config, plots,
                       Path(config_dir) if config_dir is not None else None)
