"""Hover text for the map: the instruction and metrics of the rows under the pointer.

The page carries the data inline, as JSON in a ``<script type="application/json">`` element, and
:data:`HOVER_JS` (a few lines of plain JavaScript, no library) shows the nearest row's text in a
tooltip. Only some rows carry hover data, so the page stays small at any pool size: every selected
row up to :data:`MAX_SELECTED`, each cluster's near-misses, and a seeded random sample of up to
:data:`MAX_OTHERS` other rows.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from .data import METRICS, PoolData
from .labels import ClusterLabels
from .ranking import ClusterRanking

MAX_SELECTED = 3_000
MAX_OTHERS = 2_000
TEXT_CHARS = 160
FIELDS = ("row", "crowd_id", "cluster", "selected", "text", "difficulty", "separability", "stability", "score", "best_reward")
"""The columns of the hover data, in order."""


def hover_rows(d: PoolData, rankings: Sequence[ClusterRanking], seed: int = 0) -> np.ndarray:
    """The pool rows that get hover data (ascending): see the module docstring."""
    ok = np.isfinite(d.map_x) & np.isfinite(d.map_y)
    rng = np.random.default_rng(seed)
    chosen = np.flatnonzero(ok & d.selected)
    if chosen.size > MAX_SELECTED:
        chosen = rng.choice(chosen, MAX_SELECTED, replace=False)
    near = np.array([r.row for cr in rankings for r in cr.near_misses], dtype=np.int64)
    near = near[ok[near]] if near.size else near
    others = np.flatnonzero(ok & ~d.selected)
    if others.size > MAX_OTHERS:
        others = rng.choice(others, MAX_OTHERS, replace=False)
    return np.unique(np.concatenate([chosen, near, others]).astype(np.int64))


def hover_payload(d: PoolData, rows: np.ndarray, x: np.ndarray, y: np.ndarray, labels: ClusterLabels) -> dict[str, Any]:
    """The hover data of ``rows`` (image positions ``x``, ``y`` as fractions): columnar, one list
    per field of :data:`FIELDS`, plus ``x``, ``y`` and the cluster labels."""
    rows = np.asarray(rows, dtype=np.int64)
    cluster = d.cluster[rows] if d.cluster is not None else np.full(rows.size, -1)
    texts = [_clip(t) for t in d.texts_at(rows)]
    nan = np.full(d.n, np.nan)
    values = [d.metrics.get(name) if d.metrics.get(name) is not None else nan for name, _, _ in METRICS]
    values += [d.score if d.score is not None else nan, d.best_reward if d.best_reward is not None else nan]
    columns = [rows.tolist(), d.ids_at(rows), cluster.tolist(), d.selected[rows].astype(int).tolist(), texts,
               *([_num(v) for v in col[rows]] for col in values)]
    out = dict(zip(FIELDS, columns))
    out["x"] = [round(float(v), 4) for v in x]
    out["y"] = [round(float(v), 4) for v in y]
    out["labels"] = {str(c): labels.text(c) for c in labels.labels}
    return out


def _num(v: float) -> float | None:
    return float(f"{v:.4g}") if math.isfinite(v) else None


def _clip(text: str | None) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def script_json(payload: Any) -> str:
    """``payload`` as JSON that is safe inside a ``<script>`` element (no ``<``, ``>`` or ``&``)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


HOVER_JS = """(function () {
  var img = document.getElementById('map-img'), tip = document.getElementById('map-tip');
  var d = JSON.parse(document.getElementById('map-data').textContent);
  function fmt(v) { return v === null ? '–' : String(v); }
  img.addEventListener('mousemove', function (e) {
    var r = img.getBoundingClientRect(), best = -1, bd = 100;
    for (var i = 0; i < d.x.length; i++) {
      var dx = d.x[i] * r.width - (e.clientX - r.left), dy = d.y[i] * r.height - (e.clientY - r.top);
      if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = i; }
    }
    if (best < 0) { tip.style.display = 'none'; return; }
    var c = d.cluster[best], label = d.labels[String(c)];
    tip.textContent = (d.text[best] || '(instruction not in the pool table)') + '\\n' +
      (c >= 0 ? 'cluster ' + c + (label ? ' (' + label + ')' : '') + ' · ' : '') +
      (d.selected[best] ? 'selected' : 'not selected') + ' · score ' + fmt(d.score[best]) +
      '\\ndifficulty ' + fmt(d.difficulty[best]) + ' · separability ' + fmt(d.separability[best]) +
      ' · stability ' + fmt(d.stability[best]) + ' · best reward ' + fmt(d.best_reward[best]);
    tip.style.left = (e.pageX + 14) + 'px';
    tip.style.top = (e.pageY + 14) + 'px';
    tip.style.display = 'block';
  });
  img.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
})();"""
"""Shows the nearest hover row within 10 pixels of the pointer; text is set with ``textContent``."""
