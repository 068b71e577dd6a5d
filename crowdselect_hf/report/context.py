"""Everything a section of the report reads, computed once per page: the pool, the record, the
sample rows, the cluster labels and the ranking of every row."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..record import SelectionRecord
from .data import PoolData
from .labels import ClusterLabels, cluster_labels
from .ranking import ClusterRanking, Ranking, cluster_rankings, rank_rows


@dataclass
class ReportContext:
    """What the sections of one page read.

    Attributes:
        data: the pool's columns.
        record: the selection's record.
        samples: the selected rows shown in full.
        plots: whether figures are drawn.
        labels: the clusters' labels.
        ranking: every row's rank in its cluster and why it lost.
        rankings: per cluster, its near-misses and lowest-ranked rows.
        config_dir: the config folder the page reports on (``None`` for a page rendered from
            tables); sections that read files beside the selection look there.
    """

    data: PoolData
    record: SelectionRecord
    samples: Sequence[Mapping[str, Any]]
    plots: bool
    labels: ClusterLabels
    ranking: Ranking
    rankings: list[ClusterRanking]
    config_dir: Path | None = None

    @classmethod
    def build(cls, d: PoolData, record: SelectionRecord, samples: Sequence[Mapping[str, Any]], plots: bool,
              config_dir: Path | None = None) -> "ReportContext":
        ranking = rank_rows(d, record)
        return cls(d, record, samples, plots, cluster_labels(d, record=record), ranking, cluster_rankings(d, ranking),
                   config_dir)

    def draw(self, figure, alt: str, *args, img_id: str | None = None) -> str:
        """``figure(*args)`` as an ``<img>``; nothing when the page has no plots."""
        if not self.plots:
            return ""
        ident = f' id="{img_id}"' if img_id else ""
        return f'<img class="plot"{ident} src="{figure(*args)}" alt="{html.escape(alt)}">'
