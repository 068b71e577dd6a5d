"""The HTML report: built from a Hub-shaped folder made here from the real crowd table, with a
fake-but-plausible clustered selection (TF-IDF → KMeans, PCA map, top-by-score per cluster with
back-fill) and its selection record, and checked by parsing the page and by rendering it in
headless Chromium."""

import base64
import json
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from xml.etree import ElementTree
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect_hf.record import ClusterCount, Clustering, SelectionRecord, write_record
from crowdselect_hf.report import ReportError, find_config_dir, render_report, write_report

SCRIPT_INSTRUCTION = 'Explain <script>alert("pwned")</script> & why "quotes" matter'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_CLUSTERS = 6
QUOTA = 12
SOURCE = {"dataset": "alpaca_zoo (test)", "split": "train"}


# -- a published selection, built independently of the package's selection code ---------------

def _quantile(x):
    """Uniform quantile of each finite value (0.5 for NaN)."""
    out = np.full(x.shape, 0.5)
    ok = np.isfinite(x)
    order = np.argsort(np.argsort(x[ok], kind="stable"), kind="stable")
    out[ok] = (order + 0.5) / ok.sum()
    return out


def _fake_selection(scored):
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    instructions = scored["instruction"]
    X = TfidfVectorizer(max_features=1500, stop_words="english", sublinear_tf=True).fit_transform(instructions)
    Z = normalize(TruncatedSVD(n_components=24, random_state=0).fit_transform(X))
    labels = KMeans(n_clusters=N_CLUSTERS - 1, random_state=0, n_init=3).fit_predict(Z).astype(np.int64)
    xy = PCA(n_components=2, random_state=0).fit_transform(Z)
    diff = np.array(scored["crowd_difficulty"], dtype=float)
    sep = np.array(scored["crowd_separability"], dtype=float)
    stab = np.array(scored["crowd_stability"], dtype=float)
    combined = _quantile(diff) + _quantile(sep) + 2 * _quantile(stab)
    # A small extra cluster (the 4 lowest-scored rows of cluster 0), so that back-fill happens.
    small = np.flatnonzero(labels == 0)[np.argsort(combined[labels == 0])[:4]]
    labels[small] = N_CLUSTERS - 1
    selected = np.zeros(len(labels), bool)
    for c in range(N_CLUSTERS):
        rows = np.flatnonzero(labels == c)
        selected[rows[np.argsort(-combined[rows], kind="stable")[:QUOTA]]] = True
    k = N_CLUSTERS * QUOTA
    short = k - selected.sum()
    rest = np.flatnonzero(~selected)
    backfill = rest[np.argsort(-combined[rest], kind="stable")[:short]]
    backfilled = np.zeros(len(labels), bool)
    backfilled[backfill] = True
    selected |= backfilled
    return labels, xy, combined, selected, backfilled, k


def _record(labels, selected, backfilled, k, zoo_crowd, clustered=True, **overrides):
    """The selection record of the fake selection (every pool row counts as a candidate)."""
    clusters = tuple(ClusterCount(cluster=c, pool_rows=int((labels == c).sum()), candidates=int((labels == c).sum()),
                                  quota=QUOTA, picked_by_quota=int((selected & ~backfilled & (labels == c)).sum()),
                                  backfilled=int((backfilled & (labels == c)).sum())) for c in range(N_CLUSTERS))
    fields = dict(
        strategy="crowdselect" if clustered else "reward-top", k=k,
        ranked_by="combined score" if clustered else "best reward",
        weights=(1.0, 1.0, 2.0) if clustered else None, seed=42 if clustered else None,
        clustering=Clustering(N_CLUSTERS, "tfidf (test)", "lloyd", 3, 12.5) if clustered else None,
        clusters=clusters if clustered else (), n_pool=len(labels), n_eligible=len(labels), n_selected=k,
        n_backfilled=int(backfilled.sum()), excluded={"no_usable_reward": 0, "duplicate_instruction": 0},
        pool_duplicate_ids=0, neutral_filled={"stability": 3},
        metric_means={"difficulty": {"selected": 0.1, "pool": -0.1}}, metrics={"reward": zoo_crowd.reward, "layout": "wide"},
        source=SOURCE, crowd=zoo_crowd.to_dict(),
    )
    return SelectionRecord(**{**fields, **overrides})


def _build_folder(root: Path, scored, crowd, selection, config="crowdselect-72", no_map=False, no_clusters=False,
                  **record_overrides):
    labels, xy, combined, selected, backfilled, k = (x.copy() if isinstance(x, np.ndarray) else x for x in selection)
    if no_clusters:
        labels = np.full_like(labels, -1)
        backfilled[:] = False
    if no_map:
        xy = np.full_like(xy, np.nan)
    cfg = root / config
    cols = ["crowd_id", "crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_reward", "crowd_best_model"]
    pool = scored.select_columns(cols).data.table
    pool = pool.append_column("crowd_combined", pa.array(combined))
    pool = pool.append_column("crowd_cluster", pa.array(labels, pa.int64()))
    pool = pool.append_column("crowd_selected", pa.array(selected))
    pool = pool.append_column("crowd_backfilled", pa.array(backfilled))
    pool = pool.append_column("crowd_map_x", pa.array(xy[:, 0]))
    pool = pool.append_column("crowd_map_y", pa.array(xy[:, 1]))
    record = _record(labels, selected, backfilled, k, crowd, clustered=not no_clusters, **record_overrides)
    write_record(cfg, record.saved_as(config, k, SOURCE), pool)

    picked = np.flatnonzero(selected)
    # The row that the report samples first (best combined score of cluster 0) gets a hostile instruction.
    first = picked[labels[picked] == labels[picked].min()]
    hostile = int(first[np.argmax(combined[first])])
    rows = []
    for i in picked:
        row = scored[int(i)]
        instruction = SCRIPT_INSTRUCTION if i == hostile else row["instruction"]
        response = row[row["crowd_best_model"]]["content"]
        rows.append({"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}],
                     **{c: row[c] for c in cols}})
    pq.write_table(pa.Table.from_pylist(rows), cfg / "train-00000-of-00001.parquet")
    return cfg, pool


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.sections, self.scripts, self.links = [], [], [], 0, []
        self.tables: dict[str, list[list[str]]] = {}
        self.chips: dict[str, str] = {}
        self.headings: dict[str, str] = {}
        self.text: list[str] = []
        self._chip = self._h2 = None
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "h2":
            self._h2 = ""
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(a[key])
        if tag == "span" and a.get("class") == "chip":
            self._chip = []
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "span" and self._chip is not None and len(self._chip) == 2:
            self.chips[self._chip[0]] = self._chip[1]
            self._chip = None
        if tag == "h2" and self._h2 is not None:
            self.headings[self.sections[-1]] = self._h2
            self._h2 = None
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._h2 is not None:
            self._h2 += data
        if self._chip is not None:
            self._chip.append(data)
        if self._cell is not None:
            self._cell += data


def _parse(text):
    page = _Page()
    page.feed(text)
    return page


def _png_size(data: bytes):
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _screenshot_pixels(path) -> np.ndarray:
    """A screenshot's RGB pixels as floats in [0, 1], ``[height, width, 3]``."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


SVG_URI = "data:image/svg+xml;base64,"


def _svg_figure(uri: str):
    """A figure's ``data:`` URI parsed as SVG: its (width, height) in pixels and its raster layers,
    each checked to be an embedded PNG (nothing an SVG could load from elsewhere)."""
    assert uri.startswith(SVG_URI), uri[:60]
    root = ElementTree.fromstring(base64.b64decode(uri[len(SVG_URI):], validate=True))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    rasters = []
    for el in root.iter():
        for name, value in el.attrib.items():
            if name.endswith("href"):
                assert value.startswith("data:image/png;base64,"), value[:60]
                rasters.append(_png_size(base64.b64decode(value.split(",", 1)[1], validate=True)))
            assert "url(" not in value or value.startswith("url(#"), value  # only the figure's own clip paths
    return (float(root.get("width")), float(root.get("height"))), rasters


@pytest.fixture(scope="module")
def fake_selection(zoo_scored):
    return _fake_selection(zoo_scored)


@pytest.fixture(scope="module")
def published(zoo_scored, zoo_crowd, fake_selection, tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    cfg, pool = _build_folder(root, zoo_scored, zoo_crowd, fake_selection)
    report = write_report(root)
    return root, cfg, pool, report


# -- the page ------------------------------------------------------------------------------------

@pytest.mark.unit
def test_report_is_valid_self_contained_html(published):
    root, cfg, pool, report = published
    assert report == cfg / "report.html"
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    page = _parse(text)
    assert page.sections == SECTION_IDS
    assert page.scripts == 2  # the map's hover data (JSON) and its few lines of script; nothing else
    assert [t for t in page.tags if t in ("link", "iframe", "object", "embed")] == []
    external = [u for u in page.links if not u.startswith((SVG_URI, "#"))]
    assert external == [], external
    # metrics, relations, ranking score, answers, map, best answers (no per-member rewards: no family figure)
    assert len(page.imgs) == 6
    for src in page.imgs:
        (width, height), _ = _svg_figure(src)
        assert width > 100 and height > 100 and len(src) > 1000
    # The header shows the parameters that applied, and the reward the metrics came from.
    assert page.chips == {"strategy": "crowdselect", "k": "72", "ranked by": "combined score", "clusters": str(N_CLUSTERS),
                          "embedder": "tfidf (test)", "weights": "difficulty 1 · separability 1 · stability 2", "seed": "42",
                          "reward": "weighted_alpaca_eval_gpt4_turbo", "crowd": "15 models · 7 families"}
    assert "Ranking score: combined score" in text and "Σ wⱼ·qⱼ with weights difficulty 1" in text
    # The record's accounting is listed flattened; per-cluster entries are left to the quota table.
    assert "metric_means.difficulty.selected" in text and "n_backfilled" in text and "clustering.inertia" in text
    assert "picked_by_quota" not in text and "[6 entries]" not in text and "metrics.members" not in text
    assert "alpaca_zoo (test)" in text  # the source


@pytest.mark.unit
def test_instructions_are_escaped(published):
    text = published[3].read_text(encoding="utf-8")
    assert text.count("<script") == 2 and 'alert("pwned")</script>' not in text and "<script>alert" not in text
    assert "Explain &lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; why &quot;quotes&quot; matter" in text
    # In the hover data (inline JSON) the same text has no <, > or & at all.
    assert r'Explain \u003cscript\u003ealert(\"pwned\")\u003c/script\u003e \u0026 why' in text


QUOTA_HEADER = ["cluster", "pool rows", "candidates", "quota", "selected by quota", "back-filled", "selected", "median score",
                "top terms", "central instruction"]
SECTION_IDS = ["metrics", "relations", "score", "answers", "families", "map", "quotas", "best", "samples", "rejected", "summary"]


def _quota_table(text):
    page = _parse(text)
    header, *rows = page.tables["quota-table"]
    assert [h.lower() for h in header] == QUOTA_HEADER
    body = [r for r in rows if r[0].isdigit()]
    return {name: i for i, name in enumerate(QUOTA_HEADER)}, body, next(r for r in rows if r[0] == "total")


@pytest.mark.unit
def test_quota_table_matches_pool(published):
    _, _, pool, report = published
    col, body, total = _quota_table(report.read_text(encoding="utf-8"))
    cluster = np.array(pool.column("crowd_cluster").to_pylist())
    selected = np.array(pool.column("crowd_selected").to_pylist())
    backfilled = np.array(pool.column("crowd_backfilled").to_pylist())
    combined = np.array(pool.column("crowd_combined").to_pylist())
    assert [int(r[0]) for r in body] == list(range(N_CLUSTERS))
    for r in body:
        c = int(r[0])
        size, cand, quota, picked, back, sel = (int(r[i].replace(",", "")) for i in range(1, 7))
        assert size == cand == (cluster == c).sum()
        assert quota == QUOTA
        assert picked == (selected & ~backfilled & (cluster == c)).sum()
        assert back == (backfilled & (cluster == c)).sum()
        assert sel == (selected & (cluster == c)).sum()
        assert r[col["median score"]] == f"{np.median(combined[selected & (cluster == c)]):.3g}"
    assert int(total[col["pool rows"]].replace(",", "")) == len(cluster)
    assert int(total[col["quota"]]) == int(total[col["selected"]]) == selected.sum() == N_CLUSTERS * QUOTA
    assert int(total[col["back-filled"]]) == backfilled.sum() > 0, "the small cluster must force some back-fill"
    assert int(body[N_CLUSTERS - 1][col["selected by quota"]]) == 4, "the small cluster gives all of its 4 rows"


@pytest.mark.unit
def test_quotas_come_from_the_record_only(zoo_scored, zoo_crowd, fake_selection, tmp_path):
    """The report shows the record's per-cluster counts; it never re-derives them from the pool."""
    clusters = tuple(ClusterCount(cluster=c, pool_rows=100 + c, candidates=90 + c, quota=q, picked_by_quota=min(q, 3),
                                  backfilled=1) for c, q in enumerate([5, 1, 3, 7, 2, 4]))
    cfg, _ = _build_folder(tmp_path, zoo_scored, zoo_crowd, fake_selection, clusters=clusters)
    col, body, total = _quota_table(write_report(cfg, plots=False).read_text(encoding="utf-8"))
    assert [tuple(int(v) for v in r[:7]) for r in body] == [
        (c.cluster, c.pool_rows, c.candidates, c.quota, c.picked_by_quota, c.backfilled, c.selected) for c in clusters]
    assert int(total[col["quota"]]) == 22
    # A clustered record without per-cluster counts: a note, not counts made up from the pool table.
    cfg, _ = _build_folder(tmp_path, zoo_scored, zoo_crowd, fake_selection, config="no-counts", clusters=())
    text = write_report(cfg, plots=False).read_text(encoding="utf-8")
    assert "quota-table" not in _parse(text).tables and "The selection record holds no per-cluster counts" in text


@pytest.mark.unit
def test_root_with_several_configs_and_errors(zoo_scored, zoo_crowd, fake_selection, tmp_path):
    cfg_a, _ = _build_folder(tmp_path, zoo_scored, zoo_crowd, fake_selection, config="a")
    _build_folder(tmp_path, zoo_scored, zoo_crowd, fake_selection, config="b", no_map=True)
    with pytest.raises(ReportError, match=r"several configs \(a, b\); choose one with --config-name"):
        write_report(tmp_path)
    assert find_config_dir(cfg_a) == cfg_a
    out = write_report(tmp_path, config="b", out=tmp_path / "elsewhere" / "r.html")
    assert out.is_file() and not (tmp_path / "b" / "report.html").exists()
    with pytest.raises(ReportError, match="no config 'c'.*configs found: a, b"):
        write_report(tmp_path, config="c")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="holds no selection"):
        write_report(empty)
    record = _record(*fake_selection[:1], *fake_selection[3:], zoo_crowd)
    with pytest.raises(ReportError, match="crowd_selected"):
        render_report(pa.table({"x": [1]}), record)
    with pytest.raises(TypeError, match="SelectionRecord"):
        render_report(pa.table({"crowd_selected": [True]}), record.to_dict())
    # A record that cannot be read, or a missing pool table: one ReportError that says so.
    (cfg_a / "_crowdselect" / "pool.parquet").unlink()
    with pytest.raises(ReportError, match="no _crowdselect/pool.parquet: republish"):
        write_report(cfg_a)
    (cfg_a / "_crowdselect" / "selection.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match="is not valid JSON"):
        write_report(cfg_a)
    (cfg_a / "_crowdselect" / "selection.json").write_text(json.dumps({"schema_version": 99}), encoding="utf-8")
    with pytest.raises(ReportError, match="schema version 99"):
        write_report(cfg_a)


@pytest.mark.unit
def test_degraded_inputs_render_with_notes(zoo_scored, zoo_crowd, fake_selection, tmp_path):
    cfg, pool = _build_folder(tmp_path, zoo_scored, zoo_crowd, fake_selection, no_map=True, no_clusters=True)
    text = write_report(cfg).read_text(encoding="utf-8")
    page = _parse(text)
    assert len(page.imgs) == 5  # no map, no family figure
    assert "No map: this selection ran without instruction embeddings" in text
    assert "No clusters: this strategy selects over the whole pool" in text
    assert "quota-table" not in page.tables
    assert "alpaca_zoo (test)" in text  # the source is still listed
    # A baseline claims only what it used: no clusters, embedder, weights or seed.
    assert page.chips == {"strategy": "reward-top", "k": "72", "ranked by": "best reward",
                          "reward": "weighted_alpaca_eval_gpt4_turbo", "crowd": "15 models · 7 families"}
    assert "Ranking score: best reward" in text and "weights" not in re.sub(r'src="[^"]*"', "", text)
    # A pool without the optional columns and no samples still renders.
    minimal = pool.select(["crowd_selected", "crowd_difficulty"])
    record = _record(*fake_selection[:1], *fake_selection[3:], zoo_crowd, clustered=False, metrics=None, crowd=None)
    text = render_report(minimal, record)
    assert "No ranking score" in text and "no crowd_best_model column" in text and "No training rows" in text
    assert "no crowd_map_x / crowd_map_y" in text
    assert _parse(text).chips["reward"] == "unknown"  # no provenance: no reward is claimed


@pytest.mark.unit
def test_report_without_plots_has_the_same_tables(published):
    _, cfg, _, report = published
    full, bare = report.read_text(encoding="utf-8"), write_report(cfg, out=cfg / "bare.html", plots=False).read_text("utf-8")
    assert _parse(bare).imgs == [] and "figures omitted" in bare
    assert _parse(bare).tables == _parse(full).tables and _parse(bare).chips == _parse(full).chips


# -- headless Chromium --------------------------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

# Injected first in <head> of a copy of the page: records script errors, console errors and
# resource load errors, then (on load) how many images decoded, into a <pre> that --dump-dom prints.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'load error: ' + t.tagName : 'script error: ' + e.message);
}, true);
var __ce = console.error;
console.error = function () { window.__errors.push('console: ' + Array.prototype.join.call(arguments, ' ')); __ce.apply(console, arguments); };
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var out = document.createElement('pre');
  out.id = 'cs-probe';
  out.textContent = JSON.stringify({images: imgs.length, loaded: ok, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""

BROKEN_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==">
<img src="data:image/png;base64,bm90IGEgcG5n">
<script>console.error('boom'); undefinedFunction();</script>
</body></html>"""


def _chromium():
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run_chromium(binary, tmp_path, url, *extra):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _probe(binary, tmp_path, page_text, name):
    probed = tmp_path / name
    probed.write_text(re.sub(r"<head>", "<head>" + PROBE, page_text, count=1), encoding="utf-8")
    proc = _run_chromium(binary, tmp_path, probed.as_uri(), "--dump-dom", "--virtual-time-budget=10000")
    found = re.search(r'<pre id="cs-probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, f"chromium printed no probe result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


@pytest.mark.slow
def test_report_renders_in_headless_chromium(published, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip(f"no Chromium binary found (looked for {', '.join(CHROMIUM_NAMES)}); install the Debian package 'chromium'")
    _, cfg, _, report = published
    text = report.read_text(encoding="utf-8")

    # The probe can fail: on a broken page it sees the broken image and the errors.
    broken = _probe(binary, tmp_path, BROKEN_PAGE, "broken.html")
    assert broken["images"] == 2 and broken["loaded"] == 1
    assert any(e.startswith("console: boom") for e in broken["errors"])
    assert any("undefinedFunction" in e for e in broken["errors"])
    assert any(e == "load error: IMG" for e in broken["errors"])

    result = _probe(binary, tmp_path, text, "report-probed.html")
    assert result == {"images": 6, "loaded": 6, "errors": []}

    shot = cfg / "report.png"
    proc = _run_chromium(binary, tmp_path, report.as_uri(), f"--screenshot={shot}", "--window-size=1280,4000",
                         "--hide-scrollbars", "--virtual-time-budget=10000")
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 4000)
    pixels = _screenshot_pixels(shot)
    # Not a blank page: the dark header and the plots' colours are there.
    assert pixels[:60, :, :3].mean() < 0.35
    assert pixels[:, :, :3].std() > 0.1
    if os.environ.get("CROWDSELECT_SCREENSHOT_DIR"):  # for a person to look at
        shutil.copy(shot, os.path.join(os.environ["CROWDSELECT_SCREENSHOT_DIR"], "report.png"))
