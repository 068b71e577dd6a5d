"""What the selection rejected: every row's rank in its cluster and why an unselected row lost.

Rows are ranked as the selector ranks them (:func:`crowdselect_hf.combine.rank_order`: descending
score, ties by ``crowd_id``, NaN last), within their cluster (or the whole pool for a strategy
that does not cluster). Why an unselected row lost:

* the pool table's ``crowd_excluded`` when it has one (no usable reward, empty best answer,
  duplicate instruction), else what the pool itself shows: a NaN difficulty is no usable reward,
  a ``crowd_id`` already seen is a duplicate (and ``crowd_best_bytes`` = 0, where present, an
  empty best answer);
* otherwise ``quota full`` (clustered) or ``below the top k``: it ranks below the lowest selected
  row of its cluster, in a cluster that filled its quota;
* a row that ranks above the lowest selected row, or sits in a cluster that ran short, was not
  selectable although the pool table does not say why: ``not eligible (reason not recorded)``.
  (Without ``crowd_excluded`` and ``crowd_best_bytes``, a row with an empty best answer that ranks
  below the cut shows as quota full; the rejected-rows section says when that can happen.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..combine import rank_order
from ..record import SelectionRecord
from .data import EXCLUSIONS, METRICS, PoolData

N_NEAR = 3
N_LOWEST = 2
REASONS = {
    "no_usable_reward": "no usable reward",
    "empty_best_response": "empty best answer",
    "duplicate_instruction": "duplicate instruction",
    "quota_full": "quota full",
    "below_cut": "below the top k",
    "not_drawn": "not drawn (random strategy)",
    "unrecorded": "not eligible (reason not recorded)",
}
"""Reason code → the words the report shows. The first three are :data:`~.data.EXCLUSIONS`."""
_CODES = tuple(REASONS)


@dataclass(frozen=True)
class RankedRow:
    """One pool row as the rejected-rows table shows it.

    Attributes:
        row: its position in the pool.
        rank: 1-based, within its cluster.
        score: the ranking score (NaN: none).
        metrics: (difficulty, separability, stability).
        best_reward: the best answer's reward.
        reason: a key of :data:`REASONS`.
        instruction: its text, or ``None`` when the report does not know it.
        crowd_id: its id.
    """

    row: int
    rank: int
    score: float
    metrics: tuple[float, float, float]
    best_reward: float
    reason: str
    instruction: str | None
    crowd_id: str | None


@dataclass(frozen=True)
class ClusterRanking:
    """The edge of one cluster's selection: its lowest selected row, the best rows it did not
    select (near-misses) and its lowest-ranked rows."""

    cluster: int
    n_rows: int
    n_selected: int
    lowest_selected: RankedRow | None
    near_misses: tuple[RankedRow, ...]
    lowest: tuple[RankedRow, ...]


@dataclass(frozen=True)
class Ranking:
    """Every row's rank within its cluster and, for unselected rows, the reason code."""

    order: np.ndarray  # pool rows grouped by cluster (ascending), best first inside each
    rank: np.ndarray  # per row, 1-based rank within its cluster
    reason: np.ndarray  # per row, an index into REASONS' keys; -1 for selected rows

    def reason_of(self, row: int) -> str | None:
        code = int(self.reason[row])
        return _CODES[code] if code >= 0 else None


def rank_rows(d: PoolData, record: SelectionRecord) -> Ranking:
    """Rank every row of ``d`` within its cluster and say why each unselected one lost.

    Example:
        >>> import pyarrow as pa
        >>> from crowdselect_hf.record import SelectionRecord
        >>> rec = SelectionRecord(strategy="reward-top", k=1, ranked_by="best reward", weights=None, seed=None,
        ...     clustering=None, clusters=(), n_pool=3, n_eligible=2, n_selected=1, n_backfilled=0, excluded={},
        ...     pool_duplicate_ids=0, neutral_filled={}, metric_means={})
        >>> pool = pa.table({"crowd_selected": [True, False, False], "crowd_combined": [0.9, 0.5, None],
        ...                  "crowd_difficulty": [0.1, 0.2, None]})
        >>> r = rank_rows(PoolData.from_table(pool), rec)
        >>> r.rank.tolist(), [r.reason_of(i) for i in range(3)]
        ([1, 2, 3], [None, 'below_cut', 'no_usable_reward'])
    """
    n = d.n
    score = d.score if d.score is not None else np.full(n, np.nan)
    cluster = d.cluster if d.cluster is not None else np.full(n, -1, dtype=np.int64)
    tiebreak = d.tiebreak if d.tiebreak is not None else np.arange(n)
    best_first = rank_order(score, tiebreak)
    order = best_first[np.argsort(cluster[best_first], kind="stable")]
    sizes = np.bincount(cluster[order] + 1)  # cluster -1 counts at index 0
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, sizes) + 1

    reason = np.full(n, -1, dtype=np.int8)
    unselected = ~d.selected
    excluded = _exclusions(d)
    reason[unselected & (excluded >= 0)] = excluded[unselected & (excluded >= 0)]
    rest = unselected & (excluded < 0)
    if record.ranked_by == "random":
        reason[rest] = _CODES.index("not_drawn")
        return Ranking(order, rank, reason)
    # The lowest selected rank of each cluster; rows ranked below it lost to the quota (or the cut).
    lowest = np.zeros(len(sizes), dtype=np.int64)
    np.maximum.at(lowest, cluster[d.selected] + 1, rank[d.selected])
    below = rank > lowest[cluster + 1]
    clustered = record.clustering is not None
    if clustered and record.clusters:
        short = {c.cluster for c in record.clusters if c.picked_by_quota < c.quota}
        below &= ~np.isin(cluster, list(short))
    lost = _CODES.index("quota_full" if clustered else "below_cut")
    reason[rest & below] = lost
    reason[rest & ~below] = _CODES.index("unrecorded")
    return Ranking(order, rank, reason)


def _exclusions(d: PoolData) -> np.ndarray:
    """Per row, the index of its exclusion in :data:`EXCLUSIONS` (= its code), -1 when none is known."""
    if d.excluded is not None:
        return d.excluded.astype(np.int8)
    out = np.full(d.n, -1, dtype=np.int8)
    difficulty = d.metrics.get("crowd_difficulty")
    usable = np.isfinite(difficulty) if difficulty is not None else np.ones(d.n, dtype=bool)
    out[~usable] = EXCLUSIONS.index("no_usable_reward")
    answerable = usable.copy()
    if d.best_bytes is not None:
        answerable &= d.best_bytes > 0
        out[usable & ~answerable] = EXCLUSIONS.index("empty_best_response")
    if d.ids is not None and d.tiebreak is not None:
        rows = np.flatnonzero(answerable)
        _, first = np.unique(d.tiebreak[rows], return_index=True)
        repeat = np.ones(rows.size, dtype=bool)
        repeat[first] = False
        out[rows[repeat]] = EXCLUSIONS.index("duplicate_instruction")
    return out


def cluster_rankings(d: PoolData, ranking: Ranking, n_near: int = N_NEAR, n_lowest: int = N_LOWEST) -> list[ClusterRanking]:
    """Per cluster (``-1``: the whole unclustered pool), its lowest selected row, its best
    ``n_near`` unselected rows and its ``n_lowest`` lowest-ranked unselected rows."""
    cluster = d.cluster if d.cluster is not None else np.full(d.n, -1, dtype=np.int64)
    ordered_cluster = cluster[ranking.order]
    bounds = np.flatnonzero(np.diff(ordered_cluster)) + 1
    edges = []
    for block in np.split(ranking.order, bounds) if d.n else []:
        sel = d.selected[block]
        unsel = block[~sel]
        picked = block[sel]
        edges.append((block, picked[-1:], unsel[:n_near], unsel[max(n_near, unsel.size - n_lowest):]))
    shown = np.concatenate([np.concatenate(e[1:]) for e in edges]).astype(np.int64) if edges else np.empty(0, np.int64)
    rows = dict(zip(shown.tolist(), _rows(d, ranking, shown)))  # one read of the texts for every cluster
    return [ClusterRanking(cluster=int(cluster[block[0]]), n_rows=int(block.size), n_selected=int(d.selected[block].sum()),
                           lowest_selected=rows[int(last[0])] if last.size else None,
                           near_misses=tuple(rows[int(i)] for i in near), lowest=tuple(rows[int(i)] for i in low))
            for block, last, near, low in edges]


def _rows(d: PoolData, ranking: Ranking, rows: np.ndarray) -> list[RankedRow]:
    texts, ids = d.texts_at(rows), d.ids_at(rows)
    nan = np.full(d.n, np.nan)
    metric = [d.metrics.get(name) if d.metrics.get(name) is not None else nan for name, _, _ in METRICS]
    score = d.score if d.score is not None else nan
    best = d.best_reward if d.best_reward is not None else nan
    return [RankedRow(row=int(i), rank=int(ranking.rank[i]), score=float(score[i]),
                      metrics=tuple(float(m[i]) for m in metric), best_reward=float(best[i]),
                      reason=ranking.reason_of(int(i)) or "selected", instruction=t, crowd_id=c)
            for i, t, c in zip(rows, texts, ids)]
