"""A one-file HTML report of a selection: what was picked from the pool, and why.

:func:`write_report` reads a Hub-shaped folder as the publish step writes it::

    <root>/<config>/train-*.parquet               the SFT rows (messages or prompt/completion)
    <root>/<config>/_crowdselect/pool.parquet     one row per pool row: crowd_* metrics, combined
                                                  score, cluster, selected/back-filled flags and
                                                  2-D map coordinates
    <root>/<config>/_crowdselect/selection.json   {"params", "summary", "crowd", "source"}

and writes ``<root>/<config>/report.html``: metric histograms (pool vs selected), the combined
score, a 2-D map of the instruction embeddings coloured by cluster, the per-cluster quota table,
how often each crowd member gave the best answer, and a sample of selected rows. Images are
embedded PNGs (base64 data URIs); the page loads nothing else and runs no script.

:func:`render_report` does the work from in-memory inputs and returns the HTML text.
Plots need matplotlib (``pip install 'crowdselect-hf[report]'``); they are drawn on the Agg
backend without touching pyplot's global state.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

META_DIR = "_crowdselect"
POOL_FILE = "pool.parquet"
SELECTION_FILE = "selection.json"
REPORT_FILE = "report.html"
METRICS = (
    ("crowd_difficulty", "Difficulty", "−mean reward: high = most models score low"),
    ("crowd_separability", "Separability", "variance of rewards: high = models disagree"),
    ("crowd_stability", "Stability", "bigger-is-better agreement within families (Spearman ρ)"),
)

POOL_COLOR = "#9AA5B1"
SELECTED_COLOR = "#D9480F"
INK = "#1F2933"
MUTED = "#616E7C"
GRID = "#E4E7EB"
UNCLUSTERED_COLOR = "#C3CAD2"
CLUSTER_COLORS = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D", "#FF9DA6", "#2F4B7C",
    "#A0CBE8", "#FFBE7D", "#8CD17D", "#B6992D", "#86BCB6", "#D4A6C8", "#79706E", "#D37295", "#499894", "#BAB0AC",
)
MAX_MAP_POINTS = 20_000
SAMPLE_ROWS = 8


class ReportError(ValueError):
    """The folder or the tables do not hold what the report needs."""


# -- entry points -------------------------------------------------------------------------------

def write_report(folder_or_config_dir: str | os.PathLike, out: str | os.PathLike | None = None, config: str | None = None,
                 n_samples: int = SAMPLE_ROWS) -> Path:
    """Write the HTML report of a published selection.

    Args:
        folder_or_config_dir: a config folder (holding ``_crowdselect/selection.json``), or the
            root of a Hub-shaped folder whose configs are sub-folders.
        out: the HTML file to write; default ``<config dir>/report.html``.
        config: which config of the root to report on; needed when it has several.
        n_samples: how many selected rows to show in full.

    Returns:
        The path of the written report.

    Example:
        >>> write_report("out/magpie-crowdselect", config="crowdselect-1k")  # doctest: +SKIP
        PosixPath('out/magpie-crowdselect/crowdselect-1k/report.html')
    """
    config_dir = find_config_dir(folder_or_config_dir, config)
    meta = config_dir / META_DIR
    pool_path = meta / POOL_FILE
    if not pool_path.is_file():
        raise ReportError(f"{str(config_dir)!r} has {SELECTION_FILE} but no {META_DIR}/{POOL_FILE}: republish the selection")
    try:
        selection = json.loads((meta / SELECTION_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{str(meta / SELECTION_FILE)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(selection, Mapping):
        raise ReportError(f"{str(meta / SELECTION_FILE)!r} must hold a JSON object with params, summary and crowd")
    pool = pq.read_table(pool_path)
    samples = read_sample_rows(config_dir, pool, n_samples)
    text = render_report(
        pool,
        params=selection.get("params") or {},
        summary=selection.get("summary") or {},
        crowd=selection.get("crowd") or {},
        sample_rows=samples,
        title=config_dir.name,
        source=selection.get("source") or {},
    )
    out = Path(out) if out is not None else config_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def find_config_dir(folder: str | os.PathLike, config: str | None = None) -> Path:
    """The config folder of ``folder``: itself if it holds ``_crowdselect/selection.json``, else
    its one sub-folder that does (or the one named ``config``).

    Example:
        >>> find_config_dir("no/such/folder")
        Traceback (most recent call last):
        ...
        crowdselect_hf.report.ReportError: 'no/such/folder' is not a folder
    """
    root = Path(folder)
    if not root.is_dir():
        raise ReportError(f"{str(folder)!r} is not a folder")
    if config is None and (root / META_DIR / SELECTION_FILE).is_file():
        return root
    configs = sorted(p.name for p in root.iterdir() if (p / META_DIR / SELECTION_FILE).is_file())
    if config is not None:
        if config not in configs:
            raise ReportError(f"{str(root)!r} has no config {config!r} with {META_DIR}/{SELECTION_FILE}; configs found: {configs}")
        return root / config
    if not configs:
        raise ReportError(f"{str(root)!r} holds no selection: expected {META_DIR}/{SELECTION_FILE} in it or in a config sub-folder")
    if len(configs) > 1:
        raise ReportError(f"{str(root)!r} holds several configs {configs}; choose one with config=")
    return root / configs[0]


def read_sample_rows(config_dir: str | os.PathLike, pool: pa.Table | None = None, n: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """Up to ``n`` rows of ``train-*.parquet`` as ``{instruction, response, crowd_*...}`` dicts.

    Rows are spread over clusters (round robin, best combined score first) when ``pool``
    carries ``crowd_cluster`` and ``crowd_combined`` for their ``crowd_id``.
    """
    files = sorted(Path(config_dir).glob("train-*.parquet")) or sorted(Path(config_dir).glob("data/train-*.parquet"))
    if not files:
        return []
    tables = [pq.read_table(f) for f in files]
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    rows = table.to_pylist()
    if pool is not None and "crowd_id" in table.column_names and "crowd_id" in pool.column_names:
        extra = [c for c in ("crowd_cluster", "crowd_combined") if c in pool.column_names]
        by_id = {}
        for r in pool.select(["crowd_id", *extra]).to_pylist():
            by_id.setdefault(r["crowd_id"], r)
        for r in rows:
            for c in extra:
                r.setdefault(c, by_id.get(r.get("crowd_id"), {}).get(c))
    return _spread(rows, n)


def render_report(pool: pa.Table, params: Mapping[str, Any], summary: Mapping[str, Any], crowd: Mapping[str, Any],
                  sample_rows: Sequence[Mapping[str, Any]], title: str | None = None,
                  source: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page.

    Args:
        pool: one row per pool row; needs ``crowd_selected`` (bool) and uses, when present,
            the metric columns, ``crowd_combined``, ``crowd_cluster`` (-1 = not clustered),
            ``crowd_backfilled``, ``crowd_best_model`` and ``crowd_map_x``/``crowd_map_y``.
        params: the selection parameters (strategy, k, n_clusters, weights, embedder, seed, ...).
        summary: the selection summary; every scalar is listed, known keys get their own card.
        crowd: ``{"members": [{name, family, params_b}], "reward": ...}``.
        sample_rows: selected rows to show: ``messages`` or ``prompt``/``completion`` (or
            ``instruction``/``response``) plus optional ``crowd_*`` values.
        title: shown in the header (the config name).
        source: where the pool came from (shown when given).

    Example:
        >>> import pyarrow as pa
        >>> pool = pa.table({"crowd_selected": [True, False], "crowd_difficulty": [0.5, -1.0],
        ...                  "crowd_best_model": ["m-7b", "m-1b"]})
        >>> page = render_report(pool, {"strategy": "top", "k": 1}, {}, {"reward": "r"},
        ...                      [{"instruction": "Say <hi>", "response": "hi"}])
        >>> page.startswith("<!DOCTYPE html>"), "Say &lt;hi&gt;" in page, "<script" in page
        (True, True, False)
    """
    if not isinstance(pool, pa.Table):
        raise TypeError(f"pool must be a pyarrow.Table, got {type(pool).__name__}")
    if "crowd_selected" not in pool.column_names:
        raise ReportError(f"the pool table needs a boolean 'crowd_selected' column; it has {pool.column_names}")
    data = _PoolData.from_table(pool)
    params = dict(params or {})
    summary = dict(summary or {})
    crowd = dict(crowd or {})
    mpl = _matplotlib()
    with mpl.rc_context(_RC):
        sections = [
            _section_metrics(data),
            _section_combined(data, params),
            _section_map(data),
            _section_quotas(data, params, summary),
            _section_best(data, crowd),
            _section_samples(sample_rows),
            _section_summary(summary, source or {}),
        ]
    return _page(title, params, summary, crowd, data, sections)


# -- data ---------------------------------------------------------------------------------------

class _PoolData:
    """The pool columns the report reads, as numpy arrays (absent columns are ``None``)."""

    def __init__(self, **cols):
        self.__dict__.update(cols)

    @classmethod
    def from_table(cls, t: pa.Table) -> "_PoolData":
        n = t.num_rows

        def floats(name):
            if name not in t.column_names:
                return None
            return np.array(t.column(name).to_pylist(), dtype=np.float64)

        def bools(name, default=None):
            if name not in t.column_names:
                return default
            return np.array([bool(v) for v in t.column(name).to_pylist()], dtype=bool)

        cluster = None
        if "crowd_cluster" in t.column_names:
            cluster = np.array([-1 if v is None else int(v) for v in t.column("crowd_cluster").to_pylist()], dtype=np.int64)
        best = t.column("crowd_best_model").to_pylist() if "crowd_best_model" in t.column_names else None
        return cls(
            n=n,
            selected=bools("crowd_selected"),
            backfilled=bools("crowd_backfilled", np.zeros(n, dtype=bool)),
            has_backfill_column="crowd_backfilled" in t.column_names,
            metrics={name: floats(name) for name, _, _ in METRICS},
            combined=floats("crowd_combined"),
            cluster=cluster,
            best=best,
            map_x=floats("crowd_map_x"),
            map_y=floats("crowd_map_y"),
        )

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    @property
    def clusters(self) -> list[int]:
        if self.cluster is None:
            return []
        return sorted(int(c) for c in np.unique(self.cluster) if c >= 0)


def _spread(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` rows, round robin over clusters, best combined score first in each."""
    if n <= 0 or not rows:
        return []

    def key(r):
        c = r.get("crowd_combined")
        return -c if isinstance(c, (int, float)) and math.isfinite(c) else math.inf

    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=key):
        groups.setdefault(r.get("crowd_cluster"), []).append(r)
    order = sorted(groups, key=lambda c: (c is None, c if isinstance(c, int) else 0))
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < n and any(depth < len(groups[c]) for c in order):
        for c in order:
            if depth < len(groups[c]) and len(out) < n:
                out.append(groups[c][depth])
        depth += 1
    return out


def _turn_text(value: Any, role: str | None, first: bool) -> str | None:
    """Text of a string, a message, or a list of messages (the first/last of ``role``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return value.get("content") if isinstance(value.get("content"), str) else None
    if isinstance(value, (list, tuple)):
        msgs = [m for m in value if isinstance(m, Mapping) and (role is None or m.get("role") == role)]
        if not msgs:
            return None
        return _turn_text(msgs[0] if first else msgs[-1], None, first)
    return None


def _sample_texts(row: Mapping[str, Any]) -> tuple[str, str]:
    instruction = response = None
    if "messages" in row:
        instruction = _turn_text(row["messages"], "user", True)
        response = _turn_text(row["messages"], "assistant", False)
    if instruction is None and "prompt" in row:
        instruction = _turn_text(row["prompt"], "user", False)
    if response is None and "completion" in row:
        response = _turn_text(row["completion"], "assistant", False)
    instruction = instruction if instruction is not None else row.get("instruction")
    response = response if response is not None else row.get("response")
    return str(instruction or ""), str(response or "")


# -- plots --------------------------------------------------------------------------------------

_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 10.5,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10.5,
    "axes.edgecolor": "#9AA5B1",
    "axes.labelcolor": INK,
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "legend.fontsize": 10,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
}


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the report plots need matplotlib: pip install 'crowdselect-hf[report]'") from None
    return matplotlib


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img class="plot" src="{uri}" alt="{html.escape(alt)}">'


def _hist_pair(ax, values: np.ndarray | None, selected: np.ndarray, label: str) -> bool:
    """Pool vs selected densities on shared bins; ``False`` when there is nothing to draw."""
    if values is None:
        ax.text(0.5, 0.5, "column missing", ha="center", va="center", color=MUTED, transform=ax.transAxes)
        return False
    finite = np.isfinite(values)
    if not finite.any():
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", color=MUTED, transform=ax.transAxes)
        return False
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 31)
    ax.hist(values[finite], bins=bins, density=True, color=POOL_COLOR, alpha=0.55, label="pool")
    sel = values[finite & selected]
    if sel.size:
        ax.hist(sel, bins=bins, density=True, histtype="stepfilled", color=SELECTED_COLOR, alpha=0.25)
        ax.hist(sel, bins=bins, density=True, histtype="step", color=SELECTED_COLOR, linewidth=1.8, label="selected")
        ax.axvline(float(np.median(sel)), color=SELECTED_COLOR, linestyle="--", linewidth=1)
    ax.axvline(float(np.median(values[finite])), color="#52606D", linestyle="--", linewidth=1)
    if label:
        ax.set_xlabel(label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_yticks([])
    ax.grid(axis="y", visible=False)
    return True


def _section_metrics(d: _PoolData) -> str:
    fig, axes = _figure(11, 3.0, ncols=3)
    legend_done = False
    for ax, (name, label, _) in zip(axes, METRICS):
        drawn = _hist_pair(ax, d.metrics[name], d.selected, "")
        ax.set_title(label, loc="left")
        if drawn and not legend_done:
            ax.legend(loc="upper left")
            legend_done = True
    axes[0].set_ylabel("density")
    notes = "".join(f"<li><b>{html.escape(label)}</b>: {html.escape(desc)}</li>" for _, label, desc in METRICS)
    table = _metric_table(d)
    return _section(
        "metrics", "Crowd metrics: pool vs selected",
        "Densities on shared bins; dashed lines mark the medians. " + _img(_png(fig), "metric histograms, pool vs selected")
        + f'<div class="two"><ul class="notes">{notes}</ul>{table}</div>',
    )


def _metric_table(d: _PoolData) -> str:
    rows = []
    for name, label, _ in METRICS:
        v = d.metrics[name]
        if v is None:
            continue
        pool_med = _median(v)
        sel_med = _median(v[d.selected])
        rows.append(f"<tr><td>{label}</td><td class='num'>{_fmt(pool_med)}</td><td class='num'>{_fmt(sel_med)}</td>"
                    f"<td class='num'>{int((~np.isfinite(v)).sum())}</td></tr>")
    if not rows:
        return ""
    return ("<table class='grid small'><thead><tr><th>metric</th><th>pool median</th><th>selected median</th>"
            "<th>NaN rows</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _section_combined(d: _PoolData, params: Mapping[str, Any]) -> str:
    if d.combined is None or not np.isfinite(d.combined).any():
        return _section("combined", "Combined score", _note(
            "No combined score in the pool table (this strategy does not combine the metrics)."))
    fig, axes = _figure(11, 2.8)
    ax = axes[0]
    _hist_pair(ax, d.combined, d.selected, "combined score  Σ wⱼ·qⱼ")
    ax.set_ylabel("density")
    sel = d.combined[d.selected & np.isfinite(d.combined)]
    if sel.size:
        ax.axvline(float(sel.min()), color=SELECTED_COLOR, linewidth=1, alpha=0.6)
        ax.annotate("lowest selected", (float(sel.min()), ax.get_ylim()[1] * 0.92), color=SELECTED_COLOR,
                    fontsize=9, ha="right", xytext=(-4, 0), textcoords="offset points")
    ax.legend(loc="upper left")
    weights = _weights_text(params.get("weights"))
    intro = f"Weights {html.escape(weights)}. " if weights else ""
    return _section("combined", "Combined score", intro + "Each metric → uniform quantile over the pool, then weighted sum. "
                    + _img(_png(fig), "combined score, pool vs selected"))


def _section_map(d: _PoolData) -> str:
    title = "Instruction map (PCA of the embeddings)"
    if d.map_x is None or d.map_y is None:
        return _section("map", title, _note("No map: the pool table has no crowd_map_x / crowd_map_y columns."))
    ok = np.isfinite(d.map_x) & np.isfinite(d.map_y)
    if not ok.any():
        return _section("map", title, _note("No map: this selection ran without instruction embeddings "
                                             "(the map coordinates are all missing)."))
    cluster = d.cluster if d.cluster is not None else np.full(d.n, -1)
    rng = np.random.default_rng(0)
    background = np.flatnonzero(ok & ~d.selected)
    if background.size > MAX_MAP_POINTS:
        background = np.sort(rng.choice(background, MAX_MAP_POINTS, replace=False))
    chosen = np.flatnonzero(ok & d.selected)
    fig, axes = _figure(11, 5.2)
    ax = axes[0]
    clusters = d.clusters
    size = float(np.clip(3000 / max(background.size, 1), 3, 14))
    if (cluster[background] < 0).any():
        idx = background[cluster[background] < 0]
        ax.scatter(d.map_x[idx], d.map_y[idx], s=size, color=UNCLUSTERED_COLOR, alpha=0.6, linewidths=0, rasterized=True)
    for c in clusters:
        idx = background[cluster[background] == c]
        ax.scatter(d.map_x[idx], d.map_y[idx], s=size, color=_cluster_color(c), alpha=0.45, linewidths=0, rasterized=True)
        if len(clusters) <= 20:
            ax.scatter([], [], s=40, color=_cluster_color(c), label=f"cluster {c}")
    if chosen.size:
        colors = [_cluster_color(c) if c >= 0 else UNCLUSTERED_COLOR for c in cluster[chosen]]
        ax.scatter(d.map_x[chosen], d.map_y[chosen], s=max(size * 2.6, 22), c=colors, edgecolors=INK, linewidths=0.9,
                   marker="o", zorder=3)
        ax.scatter([], [], s=40, facecolors="white", edgecolors=INK, linewidths=0.9, label="selected")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if clusters or chosen.size:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), handletextpad=0.3)
    missing = int((~ok).sum())
    extra = f" {missing:,} rows without coordinates are not shown." if missing else ""
    shown = f" A random {MAX_MAP_POINTS:,} of the unselected rows are drawn." if (ok & ~d.selected).sum() > MAX_MAP_POINTS else ""
    text = ("Each dot is a pool instruction, coloured by its cluster; selected rows are drawn larger with a dark outline."
            + extra + shown)
    return _section("map", title, html.escape(text) + _img(_png(fig), "PCA map of the instruction embeddings by cluster"))


def _section_quotas(d: _PoolData, params: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    title = "Per-cluster quotas"
    clusters = d.clusters
    if not clusters:
        return _section("quotas", title, _note(
            "No clusters: this strategy selects over the whole pool (no per-cluster quota)."
            + (f" {int((d.selected & d.backfilled).sum()):,} rows were back-filled." if d.has_backfill_column else "")))
    rows = cluster_table(d.cluster, d.selected, d.backfilled, d.combined, params.get("k"), summary)
    with_cand = any(r["candidates"] is not None for r in rows)

    def cand(value):
        return f"<td class='num'>{'' if value is None else format(value, ',')}</td>" if with_cand else ""

    body = []
    for r in rows:
        swatch = f'<span class="swatch" style="background:{_cluster_color(r["cluster"])}"></span>'
        short = " short" if r["picked"] < (r["quota"] or 0) else ""
        body.append(
            f"<tr class='{short.strip()}'><td>{swatch}{r['cluster']}</td><td class='num'>{r['size']:,}</td>"
            f"{cand(r['candidates'])}<td class='num'>{'' if r['quota'] is None else format(r['quota'], ',')}</td>"
            f"<td class='num'>{r['picked']:,}</td><td class='num'>{r['backfilled']:,}</td>"
            f"<td class='num'>{r['selected']:,}</td><td class='num'>{_fmt(r['median_combined'])}</td></tr>"
        )
    tot = {key: sum(r[key] for r in rows) for key in ("size", "picked", "backfilled", "selected")}
    quotas = [r["quota"] for r in rows]
    tot_quota = "" if any(q is None for q in quotas) else format(sum(quotas), ",")
    unclustered = int((d.cluster < 0).sum())
    unclustered_sel = int((d.selected & (d.cluster < 0)).sum())
    cands = [r["candidates"] for r in rows]
    tot_cand = None if any(c is None for c in cands) else sum(cands)
    foot = (f"<tr class='total'><td>total</td><td class='num'>{tot['size']:,}</td>{cand(tot_cand)}<td class='num'>{tot_quota}</td>"
            f"<td class='num'>{tot['picked']:,}</td><td class='num'>{tot['backfilled']:,}</td>"
            f"<td class='num'>{tot['selected']:,}</td><td></td></tr>")
    if unclustered:
        foot += (f"<tr class='muted'><td>not clustered</td><td class='num'>{unclustered:,}</td>{cand(None)}<td></td><td></td><td></td>"
                 f"<td class='num'>{unclustered_sel:,}</td><td></td></tr>")
    source = ("as recorded in the selection summary" if _summary_clusters(summary) is not None
              else "an equal share of k (the summary recorded no quotas)")
    text = (f"<p>Each cluster's quota is {html.escape(source)}; a cluster with fewer candidates than its quota gives all it has "
            "(highlighted) and the remainder is back-filled from the best unselected rows of any cluster. "
            "<i>size</i> = pool rows in the cluster"
            + (", <i>candidates</i> = those that could be selected (usable reward, first of duplicates)" if with_cand else "")
            + ", <i>picked</i> = taken by the cluster's own quota, <i>back-filled</i> = taken by back-fill.</p>")
    table = ("<table class='grid' id='quota-table'><thead><tr><th>cluster</th><th>size</th>"
             + ("<th>candidates</th>" if with_cand else "") + "<th>quota</th><th>picked</th>"
             "<th>back-filled</th><th>selected</th><th>median combined</th></tr></thead><tbody>"
             + "".join(body) + "</tbody><tfoot>" + foot + "</tfoot></table>")
    return _section("quotas", title, text + table)


def cluster_table(cluster: np.ndarray, selected: np.ndarray, backfilled: np.ndarray, combined: np.ndarray | None = None,
                  k: Any = None, summary: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per cluster label ≥ 0: size (pool rows), candidates, quota, picked (by quota),
    back-filled, selected.

    Quotas (and candidate counts) are read from the summary: ``summary["clusters"]`` (a list of
    ``{cluster, size, quota, ...}`` as :meth:`Selection.summary` writes) or ``summary["quotas"]``
    (a list by cluster label, or a mapping). Without them the quota is the equal share
    ``k // C``, plus one where the cluster's picks show it received one of the ``k % C`` extra
    places, and candidates are unknown (``None``).

    Example:
        >>> rows = cluster_table(np.array([0, 0, 0, 1, -1]), np.array([1, 1, 0, 1, 0], bool),
        ...                      np.array([0, 1, 0, 0, 0], bool), k=3)
        >>> [(r["cluster"], r["size"], r["quota"], r["picked"], r["backfilled"]) for r in rows]
        [(0, 3, 1, 1, 1), (1, 1, 1, 1, 0)]
    """
    cluster = np.asarray(cluster)
    selected = np.asarray(selected, dtype=bool)
    backfilled = np.asarray(backfilled, dtype=bool) & selected
    labels = sorted(int(c) for c in np.unique(cluster) if c >= 0)
    recorded = _summary_clusters(summary or {})
    k = _as_int(k)
    if k is None:
        k = int(selected.sum())
    base, extra = divmod(k, len(labels)) if labels else (0, 0)
    out = []
    for c in labels:
        member = cluster == c
        picked = int((member & selected & ~backfilled).sum())
        if recorded is not None:
            quota = recorded.get(c, {}).get("quota")
        else:
            quota = base + (1 if extra and picked > base else 0)
        candidates = recorded.get(c, {}).get("size") if recorded is not None else None
        med = _median(combined[member & selected]) if combined is not None else math.nan
        out.append({"cluster": c, "size": int(member.sum()), "candidates": candidates, "quota": quota, "picked": picked,
                    "backfilled": int((member & backfilled).sum()), "selected": int((member & selected).sum()),
                    "median_combined": med})
    return out


def _summary_clusters(summary: Mapping[str, Any]) -> dict[int, dict[str, int | None]] | None:
    """Per cluster label, the ``quota`` (and candidate ``size`` when known) the summary records."""
    if not isinstance(summary, Mapping):
        return None
    entries = summary.get("clusters")
    if isinstance(entries, (list, tuple)) and entries and all(isinstance(e, Mapping) for e in entries):
        out = {}
        for i, e in enumerate(entries):
            label = _as_int(e.get("cluster", i))
            if label is not None:
                out[label] = {"quota": _as_int(e.get("quota")), "size": _as_int(e.get("size"))}
        if out:
            return out
    q = summary.get("quotas")
    if isinstance(q, (list, tuple)) and q:
        return {i: {"quota": _as_int(v)} for i, v in enumerate(q)}
    if isinstance(q, Mapping) and q:
        out = {}
        for key, v in q.items():
            label = _as_int(key)
            if label is not None:
                out[label] = {"quota": _as_int(v)}
        return out or None
    return None


def _section_best(d: _PoolData, crowd: Mapping[str, Any]) -> str:
    title = "Who gave the best answer"
    if d.best is None:
        return _section("best", title, _note("The pool table has no crowd_best_model column."))
    members = _member_order(crowd, d.best)
    if not members:
        return _section("best", title, _note("No row has a best answer (no usable reward)."))
    pool_counts = {m: 0 for m in members}
    sel_counts = {m: 0 for m in members}
    for b, s in zip(d.best, d.selected):
        key = b if b is not None else "(no usable reward)"
        pool_counts[key] = pool_counts.get(key, 0) + 1
        if s:
            sel_counts[key] = sel_counts.get(key, 0) + 1
    names = [m for m in pool_counts if pool_counts[m] or m in members]
    n_sel = max(d.n_selected, 1)
    pool_share = np.array([pool_counts[m] / max(d.n, 1) * 100 for m in names])
    sel_share = np.array([sel_counts.get(m, 0) / n_sel * 100 for m in names])
    height = 0.34 * len(names) + 1.2
    fig, axes = _figure(11, max(height, 2.6))
    ax = axes[0]
    y = np.arange(len(names))[::-1]
    ax.barh(y + 0.19, pool_share, height=0.38, color=POOL_COLOR, label="pool")
    ax.barh(y - 0.19, sel_share, height=0.38, color=SELECTED_COLOR, label="selected")
    ax.set_yticks(y, [_member_label(m, crowd) for m in names])
    family = {m.get("name"): m.get("family") for m in crowd.get("members") or [] if isinstance(m, Mapping)}
    for i in range(1, len(names)):
        if family.get(names[i]) != family.get(names[i - 1]):
            ax.axhline(y[i] + 0.5, color=GRID, linewidth=1.2)
    ax.set_xlabel("share of rows where this member's answer had the highest reward (%)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower right")
    for yy, v in zip(y - 0.19, sel_share):
        if v > 0:
            ax.text(v, yy, f" {v:.1f}%", va="center", fontsize=8.5, color=SELECTED_COLOR)
    text = ("The selected rows' best answers are the assistant turns of the training set. "
            "Members are grouped by family, smallest first.")
    return _section("best", title, html.escape(text) + _img(_png(fig), "best-answer share per crowd member"))


def _member_order(crowd: Mapping[str, Any], best: Sequence[Any]) -> list[str]:
    members = crowd.get("members") or []
    listed = []
    for m in members:
        if isinstance(m, Mapping) and m.get("name"):
            listed.append((str(m.get("family") or ""), _size(m.get("params_b")), str(m["name"])))
        elif isinstance(m, str):
            listed.append(("", math.inf, m))
    order = [name for _, _, name in sorted(listed, key=lambda t: (t[0], t[1], t[2]))]
    seen = set(order)
    for b in best:
        if b is not None and b not in seen:
            seen.add(b)
            order.append(b)
    return order


def _member_label(name: str, crowd: Mapping[str, Any]) -> str:
    return name if len(name) <= 34 else name[:31] + "…"


def _section_samples(rows: Sequence[Mapping[str, Any]]) -> str:
    title = "Sample of selected rows"
    if not rows:
        return _section("samples", title, _note("No training rows were found beside the selection (train-*.parquet)."))
    cards = []
    for row in rows:
        instruction, response = _sample_texts(row)
        meta = []
        if row.get("crowd_best_model") is not None:
            meta.append(f"best: <b>{html.escape(str(row['crowd_best_model']))}</b>")
        for key, label in (("crowd_best_reward", "reward"), ("crowd_combined", "combined")):
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                meta.append(f"{label} {_fmt(row[key])}")
        c = row.get("crowd_cluster")
        if isinstance(c, int) and c >= 0:
            meta.append(f'<span class="swatch" style="background:{_cluster_color(c)}"></span>cluster {c}')
        cards.append(
            "<article class='sample'>"
            f"<div class='meta'>{' · '.join(meta)}</div>"
            f"<div class='turn user'><span class='role'>instruction</span>{_clip(instruction, 320, 6)}</div>"
            f"<div class='turn assistant'><span class='role'>best response</span>{_clip(response, 480, 9)}</div>"
            "</article>"
        )
    return _section("samples", title, f"<p>{len(rows)} rows, spread over clusters, best combined score first.</p>"
                    + "<div class='samples'>" + "".join(cards) + "</div>")


_SHOWN_ELSEWHERE = {"clusters", "quotas", "strategy", "k", "n_clusters", "weights", "embedder", "seed"}


def _section_summary(summary: Mapping[str, Any], source: Mapping[str, Any]) -> str:
    rows = [(k, v) for k, v in _flatten(summary) if k.split(".")[0] not in _SHOWN_ELSEWHERE]
    src = [(k, v) for k, v in _flatten(source)]
    if not rows and not src:
        return _section("summary", "Selection summary", _note("The selection recorded no summary."))
    parts = []
    for heading, items in (("summary", rows), ("source", src)):
        if items:
            body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_value_text(v))}</td></tr>" for k, v in items)
            parts.append(f"<table class='kv'><thead><tr><th colspan='2'>{heading}</th></tr></thead><tbody>{body}</tbody></table>")
    return _section("summary", "Selection summary", "<div class='two'>" + "".join(parts) + "</div>")


# -- page ---------------------------------------------------------------------------------------

def _page(title, params, summary, crowd, d: _PoolData, sections: list[str]) -> str:
    from . import __version__

    chips = []
    for key, label in (("strategy", "strategy"), ("k", "k"), ("n_clusters", "clusters"), ("weights", "weights"),
                       ("embedder", "embedder"), ("seed", "seed")):
        value = params.get(key)
        if key == "weights":
            value = _weights_text(value) or None
        chips.append(_chip(label, value))
    chips.append(_chip("reward", crowd.get("reward") or params.get("reward")))
    members = crowd.get("members") or []
    families = {m.get("family") for m in members if isinstance(m, Mapping)}
    chips.append(_chip("crowd", f"{len(members)} models · {len(families)} families" if members else None))
    shown = {"strategy", "k", "n_clusters", "weights", "embedder", "seed", "reward"}
    for key, value in params.items():
        if key not in shown and isinstance(value, (str, int, float, bool)) and value is not None:
            chips.append(_chip(key.replace("_", " "), value))

    n_back = int((d.selected & d.backfilled).sum())
    no_reward = int((~np.isfinite(d.metrics["crowd_difficulty"])).sum()) if d.metrics["crowd_difficulty"] is not None else None
    stats = [
        ("pool rows", f"{d.n:,}"),
        ("selected", f"{d.n_selected:,}"),
        ("share", f"{d.n_selected / d.n:.1%}" if d.n else "–"),
        ("clusters", f"{len(d.clusters)}" if d.clusters else "none"),
        ("back-filled", f"{n_back:,}" if d.has_backfill_column else "–"),
        ("rows without reward", f"{no_reward:,}" if no_reward is not None else "–"),
    ]
    stat_html = "".join(f"<div class='stat'><div class='v'>{html.escape(v)}</div><div class='l'>{html.escape(k)}</div></div>"
                        for k, v in stats)
    heading = "CrowdSelect report" + (f" — {title}" if title else "")
    nav = "".join(f"<a href='#{sid}'>{label}</a>" for sid, label in (
        ("metrics", "Metrics"), ("combined", "Combined"), ("map", "Map"), ("quotas", "Quotas"),
        ("best", "Best answers"), ("samples", "Samples"), ("summary", "Summary")))
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{html.escape(heading)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><div class='wrap'><h1>{html.escape(heading)}</h1>"
        "<p class='sub'>Instruction data chosen with the wisdom of a crowd of LLMs "
        "(CrowdSelect, arXiv 2503.01836)</p>"
        f"<div class='chips'>{''.join(chips)}</div></div></header>\n"
        f"<nav><div class='wrap'>{nav}</div></nav>\n"
        f"<main class='wrap'><div class='stats'>{stat_html}</div>\n" + "\n".join(sections) + "</main>\n"
        f"<footer class='wrap'>crowdselect-hf {html.escape(__version__)} · "
        "self-contained page: no external resources, no scripts</footer>\n</body>\n</html>\n"
    )


def _section(sid: str, title: str, body: str) -> str:
    return f"<section id='{sid}' class='card'><h2>{html.escape(title)}</h2>{body}</section>"


def _note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def _chip(label: str, value: Any) -> str:
    shown = "–" if value is None or value == "" else str(value)
    return f"<span class='chip'><span class='k'>{html.escape(label)}</span>{html.escape(shown)}</span>"


def _clip(text: str, limit: int, max_lines: int) -> str:
    """At most ``limit`` characters and ``max_lines`` non-blank lines, HTML-escaped."""
    text = text.strip()
    if not text:
        return "<span class='muted'>(empty)</span>"
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    clipped = "\n".join(lines[:max_lines])
    if len(clipped) > limit:
        clipped = clipped[:limit].rstrip()
    cut = clipped != "\n".join(lines)
    more = f" …<span class='muted'> [{len(text):,} chars]</span>" if cut else ""
    return html.escape(clipped) + more


def _weights_text(weights: Any) -> str:
    if isinstance(weights, Mapping):
        return " · ".join(f"{k} {_num(v)}" for k, v in weights.items())
    if isinstance(weights, (list, tuple)) and weights:
        names = [label.lower() for _, label, _ in METRICS]
        if len(weights) == len(names):
            return " · ".join(f"{n} {_num(w)}" for n, w in zip(names, weights))
        return "(" + ", ".join(_num(w) for w in weights) + ")"
    return "" if weights is None else str(weights)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _median(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def _as_int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def _size(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.inf
    return f if math.isfinite(f) else math.inf


def _cluster_color(c: int) -> str:
    return CLUSTER_COLORS[c % len(CLUSTER_COLORS)] if c >= 0 else UNCLUSTERED_COLOR


def _flatten(d: Any, prefix: str = ""):
    if not isinstance(d, Mapping):
        return
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return _fmt(v)
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, (Mapping, list, tuple)) for x in v):
            return f"[{len(v)} entries]"
        if len(v) > 12:
            return f"[{len(v)} values] " + ", ".join(_value_text(x) for x in v[:6]) + ", …"
        return ", ".join(_value_text(x) for x in v) or "[]"
    if v is None:
        return "–"
    if isinstance(v, Mapping):
        return "{}"
    return str(v)


_CSS = """
:root { --ink:#1F2933; --muted:#616E7C; --line:#E4E7EB; --bg:#F5F7FA; --accent:#D9480F; --pool:#9AA5B1; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 28px; }
header { background: linear-gradient(120deg, #1F2933 0%, #323F4B 100%); color:#fff; padding: 30px 0 24px; }
header h1 { margin: 0 0 4px; font-size: 28px; font-weight: 700; letter-spacing: -0.01em; }
header .sub { margin: 0 0 18px; color: #CBD2D9; }
.chips { display:flex; flex-wrap:wrap; gap:8px; }
.chip { background: rgba(255,255,255,0.09); border:1px solid rgba(255,255,255,0.18); border-radius: 999px;
  padding: 4px 12px; font-size: 13.5px; white-space: nowrap; }
.chip .k { color:#F9A66C; margin-right:6px; font-weight:600; }
nav { background:#fff; border-bottom:1px solid var(--line); position: sticky; top: 0; }
nav .wrap { display:flex; gap: 22px; padding-top: 10px; padding-bottom: 10px; }
nav a { color: var(--muted); text-decoration:none; font-size: 14px; font-weight: 600; }
nav a:hover { color: var(--accent); }
.stats { display:grid; grid-template-columns: repeat(6, 1fr); gap: 14px; margin: 24px 0 8px; }
.stat { background:#fff; border:1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.stat .v { font-size: 24px; font-weight: 700; }
.stat .l { color: var(--muted); font-size: 13px; }
.card { background:#fff; border:1px solid var(--line); border-radius: 12px; padding: 22px 26px; margin: 18px 0;
  box-shadow: 0 1px 2px rgba(31,41,51,0.04); }
.card h2 { margin: 0 0 10px; font-size: 19px; }
.card p { margin: 6px 0 12px; color: var(--muted); }
img.plot { display:block; width:100%; height:auto; margin: 12px 0 6px; }
.note { background:#FFF8E6; border-left: 4px solid #F0B429; padding: 10px 14px; color:#8D5B00 !important; border-radius: 4px; }
.two { display:grid; grid-template-columns: 1fr 1fr; gap: 26px; align-items:start; }
ul.notes { margin: 4px 0; padding-left: 18px; color: var(--muted); font-size: 14px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
table.grid th, table.grid td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align:left; }
table.grid th { color: var(--muted); font-weight: 600; font-size: 13px; text-transform: uppercase; letter-spacing: .03em; }
table.grid td.num, table.grid th:not(:first-child) { text-align:right; font-variant-numeric: tabular-nums; }
table.grid tr.short td { background: #FFF3EC; }
table.grid tfoot td { font-weight: 700; border-top: 2px solid var(--line); }
table.grid tr.muted td { color: var(--muted); font-weight: 400; }
table.small { font-size: 13.5px; }
table.kv td { padding: 4px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.kv td:first-child { color: var(--muted); white-space: nowrap; }
table.kv th { text-align:left; padding: 4px 10px; font-size: 13px; text-transform: uppercase; color: var(--muted); }
.swatch { display:inline-block; width: 11px; height: 11px; border-radius: 3px; margin-right: 7px; vertical-align: -1px; }
.samples { display:grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.sample { border:1px solid var(--line); border-radius: 10px; padding: 12px 14px; background:#FBFCFD; }
.sample .meta { font-size: 12.5px; color: var(--muted); margin-bottom: 8px; }
.turn { font-size: 14px; white-space: pre-wrap; word-wrap: break-word; overflow-wrap: anywhere; margin: 6px 0; }
.turn .role { display:block; font-size: 11.5px; font-weight: 700; text-transform: uppercase; letter-spacing: .05em;
  color: var(--muted); margin-bottom: 2px; white-space: normal; }
.turn.assistant { border-left: 3px solid var(--accent); padding-left: 10px; }
.turn.user { border-left: 3px solid var(--pool); padding-left: 10px; }
.muted { color: var(--muted); }
footer { color: var(--muted); font-size: 13px; padding: 10px 28px 40px; }
@media (max-width: 900px) { .stats { grid-template-columns: repeat(3, 1fr); } .two, .samples { grid-template-columns: 1fr; } }
"""
