"""The report's reviewer sections on the package's own output for the shipped real data (360 GSM8K
questions × 16 models, 0/1 scores): ``pipeline.curate`` selects, saves and reports, and the pool
table it writes is checked against independent computations from the raw Parquet file (numpy,
regex word counts, Python sorting, scipy, scikit-learn's PCA): the per-member reward summaries,
the instructions it keeps, why rows were excluded, the map's explained variance; then the cluster
labels, near-misses and lowest-ranked rows, the hover data, rank correlations, reward by size per
family, the best-reward verdict and the palette; and the page rendered in headless Chromium,
hover included.

Two curated folders: the shipped table as it is (``gsm_curated``), and the same table with a few
high-ranking rows repeated, a few best answers blanked and a few rewards removed
(``gsm_published``), so that every reason a row can lose for shows up. A third, ``legacy``, is
``gsm_published`` with its pool table cut back to the columns of crowdselect-hf 0.1.0 (no
instructions, answer lengths, exclusion reasons or metadata): the report must say what it cannot
show.
"""

import base64
import collections
import hashlib
import json
import math
import os
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect_hf.record import MAP_VARIANCE_KEY, MEMBER_REWARDS_KEY, SIDECAR_DIR, read_pool_metadata, read_record
from crowdselect_hf.report import ReportError, render_report, write_report
from crowdselect_hf.report.data import EXCLUDED_COLUMN, INSTRUCTION_COLUMN, PoolData
from crowdselect_hf.report.hover import TEXT_CHARS
from crowdselect_hf.report.labels import TOKEN_PATTERN
from crowdselect_hf.report.style import CLUSTER_COLORS, POOL_COLOR, SELECTED_COLOR, UNCLUSTERED_COLOR
from crowdselect_hf.report.summaries import average_ranks, spearman

from .conftest import GSM_DIR, GSM_REWARD
from .test_report import PROBE, _chromium, _parse, _png_size, _run_chromium, _screenshot_pixels

K, N_CLUSTERS = 60, 6
REPEATED, BLANKED, UNSCORED = 4, 3, 2
LEGACY_COLUMNS = ("crowd_id", "crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_reward",
                  "crowd_best_model", "crowd_combined", "crowd_cluster", "crowd_selected", "crowd_backfilled",
                  "crowd_map_x", "crowd_map_y")
"""The pool table of crowdselect-hf 0.1.0."""


# -- the raw data, read without the package ---------------------------------------------------------

def _raw():
    """The shipped Parquet file: instructions, each member's rewards (null → NaN) and answers."""
    t = pq.read_table(GSM_DIR / "zoo.parquet")
    members = [c for c in t.column_names if c not in ("uuid", "instruction")]
    rewards = {m: np.array(t.column(m).combine_chunks().field(GSM_REWARD).to_pylist(), dtype=float) for m in members}
    answers = {m: t.column(m).combine_chunks().field("content").to_pylist() for m in members}
    return t.column("instruction").to_pylist(), rewards, answers


def _models():
    return {m["name"]: m for m in json.loads((GSM_DIR / "models.json").read_text("utf-8"))}


# -- the published selections --------------------------------------------------------------------

def _modified_table(gsm_ds, gsm_crowd):
    """The GSM table with the best-ranked rows of a first selection repeated, blanked or unscored."""
    from crowdselect_hf import score
    from crowdselect_hf.selection import crowd_select

    first = crowd_select(score(gsm_ds, crowd=gsm_crowd), k=K, n_clusters=N_CLUSTERS, n_init=2, crowd=gsm_crowd)
    top = first.indices[np.argsort(-first.combined[first.indices], kind="stable")]
    rows = gsm_ds.to_list()
    members = [m.name for m in gsm_crowd.members]
    for i in top[REPEATED: REPEATED + BLANKED]:
        for m in members:
            rows[int(i)][m] = {**rows[int(i)][m], "content": ""}
    for i in top[REPEATED + BLANKED: REPEATED + BLANKED + UNSCORED]:
        for m in members:
            rows[int(i)][m] = {**rows[int(i)][m], GSM_REWARD: None}
    rows += [dict(rows[int(i)]) for i in top[:REPEATED]]
    import datasets

    return datasets.Dataset.from_list(rows, features=gsm_ds.features), rows, members


def _truth(rows, members):
    """Why each row cannot be selected (``None``: it can), from the rows alone: no finite reward; an
    empty best answer (the shipped table has no empty answer, so: every answer blank); a repeat of
    an earlier selectable row's instruction."""
    usable = np.array([any(r[m][GSM_REWARD] is not None and math.isfinite(r[m][GSM_REWARD]) for m in members)
                       for r in rows])
    blank = np.array([all(not r[m]["content"] for m in members) for r in rows])
    truth = np.full(len(rows), None, dtype=object)
    truth[~usable] = "no_usable_reward"
    truth[usable & blank] = "empty_best_response"
    seen = set()
    for i, r in enumerate(rows):
        if truth[i] is None:
            if r["instruction"] in seen:
                truth[i] = "duplicate_instruction"
            seen.add(r["instruction"])
    return truth


def _published(cfg):
    text = (cfg / "report.html").read_text("utf-8")
    return {"cfg": cfg, "pool": pq.read_table(cfg / SIDECAR_DIR / "pool.parquet"), "page": _parse(text), "text": text,
            "report": cfg / "report.html", "record": read_record(cfg)}


@pytest.fixture(scope="module")
def gsm_curated(gsm_ds, gsm_crowd, tmp_path_factory):
    """The shipped table, curated as ``crowdselect select`` does (report included)."""
    from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate

    done = curate(gsm_ds, SelectionConfig(k=K, n_clusters=N_CLUSTERS, n_init=2),
                  OutputConfig(out=str(tmp_path_factory.mktemp("gsm-curated"))), crowd=gsm_crowd)
    return {**_published(done.folder / done.config_name), "sel": done.selection}


@pytest.fixture(scope="module")
def gsm_published(gsm_ds, gsm_crowd, tmp_path_factory):
    """The modified table, curated the same way, and its ``legacy`` copy."""
    from crowdselect_hf import score
    from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate

    ds, rows, members = _modified_table(gsm_ds, gsm_crowd)
    scored = score(ds, crowd=gsm_crowd)
    root = tmp_path_factory.mktemp("gsm-report")
    done = curate(scored, SelectionConfig(k=K, n_clusters=N_CLUSTERS, n_init=2), OutputConfig(out=str(root / "full")),
                  crowd=gsm_crowd)
    cfg = done.folder / done.config_name

    shutil.copytree(root / "full", root / "legacy")
    legacy = root / "legacy" / done.config_name
    pool = pq.read_table(legacy / SIDECAR_DIR / "pool.parquet")
    pq.write_table(pool.select(list(LEGACY_COLUMNS)).replace_schema_metadata(None), legacy / SIDECAR_DIR / "pool.parquet")
    plain = write_report(legacy)
    return {**_published(cfg), "truth": _truth(rows, members), "scored": scored, "members": members,
            "sel": done.selection, "plain_text": plain.read_text("utf-8")}


def _col(pool, name, dtype=float):
    return np.array(pool.column(name).to_pylist(), dtype=dtype)


def _rejected_rows(text):
    """(kind, row, cluster, reason) of each row of the rejected table, read from its attributes."""
    found = re.findall(r"<tr class='([a-z-]+)' data-row='(\d+)' data-cluster='(-?\d+)' data-reason='([a-z_]+)'>", text)
    return [(kind, int(row), int(c), reason) for kind, row, c, reason in found]


def _hover(text):
    found = re.search(r"<script type='application/json' id='map-data'>(.*?)</script>", text, flags=re.S)
    assert found, "no hover data on the page"
    return json.loads(found.group(1))


# -- the pool table the selector writes -----------------------------------------------------------

@pytest.mark.unit
def test_member_reward_summaries_match_numpy_on_the_raw_parquet(gsm_curated):
    pool = gsm_curated["pool"]
    instructions, rewards, _ = _raw()
    models = _models()
    # Pool rows are the file's rows, in order: crowd_id is the 8-byte BLAKE2b of the instruction's UTF-8.
    assert pool.column("crowd_id").to_pylist() == [hashlib.blake2b(s.encode(), digest_size=8).hexdigest()
                                                   for s in instructions]
    selected = _col(pool, "crowd_selected", bool)
    assert selected.sum() == K
    summary = read_pool_metadata(pool.schema.metadata).member_rewards
    assert sorted(m.name for m in summary) == sorted(rewards) == sorted(models)
    for m in summary:
        assert (m.family, m.params_b) == (models[m.name]["family"], float(models[m.name]["params_b"]))
        r = rewards[m.name]
        for got, rows in ((m.pool, np.ones(len(r), bool)), (m.selected, selected)):
            v = r[rows][np.isfinite(r[rows])]
            assert got.count == v.size > 0
            assert got.mean == pytest.approx(float(np.mean(v)), abs=1e-12), m.name
            assert got.median == float(np.median(v)), m.name
        assert m.levels == tuple(np.unique(r[np.isfinite(r)]).tolist())
    # 0/1 scores: some member's selected mean differs from its pool mean (the check can fail).
    assert any(m.pool.mean != m.selected.mean for m in summary)


@pytest.mark.unit
def test_family_rewards_by_size_match_the_raw_parquet(gsm_curated):
    pool, page, text = gsm_curated["pool"], gsm_curated["page"], gsm_curated["text"]
    _, rewards, _ = _raw()
    selected = _col(pool, "crowd_selected", bool)
    families = {}
    for m in _models().values():
        families.setdefault(m["family"], []).append(m)
    expected = {f: sorted(ms, key=lambda m: m["params_b"]) for f, ms in families.items() if len(ms) >= 2}
    rows = page.tables["family-table"][1:]
    assert sorted(r[0] for r in rows) == sorted(expected) and len(rows) >= 4
    assert "the rewards take two values" in text  # 0/1 scores: the mean (accuracy) is shown
    for family, members, pool_means, sel_means in rows:
        ms = expected[family]
        assert members == " · ".join(f"{m['name']} ({m['params_b']:g}B)" for m in ms)
        assert pool_means == " → ".join(_fmt(float(np.mean(rewards[m["name"]]))) for m in ms)
        assert sel_means == " → ".join(_fmt(float(np.mean(rewards[m["name"]][selected]))) for m in ms)


@pytest.mark.unit
def test_instructions_are_the_originals_cut_short(gsm_curated):
    from crowdselect_hf.selection import POOL_INSTRUCTION_CHARS as N

    instructions, _, _ = _raw()
    stored = gsm_curated["pool"].column(INSTRUCTION_COLUMN).to_pylist()
    assert stored == [s if len(s) <= N else s[: N - 1] + "…" for s in instructions]
    assert sum(len(s) > N for s in instructions) >= 5 and max(len(s) for s in stored) == N


@pytest.mark.unit
def test_exclusions_match_the_selectors_eligibility(gsm_published, gsm_curated):
    truth, pool, record = gsm_published["truth"], gsm_published["pool"], gsm_published["record"]
    _, _, answers = _raw()
    assert all(a for member in answers.values() for a in member)  # what _truth assumes: no empty answer shipped
    excluded = np.array(pool.column(EXCLUDED_COLUMN).to_pylist(), dtype=object)
    assert excluded.tolist() == truth.tolist()
    counts = collections.Counter(truth.tolist())
    assert counts == {None: record.n_eligible, "no_usable_reward": UNSCORED, "empty_best_response": BLANKED,
                      "duplicate_instruction": REPEATED}
    assert {k: v for k, v in record.excluded.items() if v} == {k: v for k, v in counts.items() if k is not None}
    assert all(e is None for e in excluded[_col(pool, "crowd_selected", bool)])
    # The shipped table as it is: every row can be selected.
    clean = gsm_curated["pool"].column(EXCLUDED_COLUMN)
    assert clean.null_count == len(clean) == gsm_curated["record"].n_eligible


@pytest.mark.unit
def test_map_variance_is_sklearn_pcas(gsm_ds, gsm_crowd, gsm_curated, tmp_path):
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate

    instructions, _, _ = _raw()
    E = TruncatedSVD(n_components=24, random_state=0).fit_transform(TfidfVectorizer().fit_transform(instructions))
    done = curate(gsm_ds, SelectionConfig(k=K, n_clusters=N_CLUSTERS, n_init=2), OutputConfig(out=str(tmp_path), report=False),
                  crowd=gsm_crowd, embeddings=E)
    pool = pq.read_table(done.folder / done.config_name / SIDECAR_DIR / "pool.parquet")
    fitted = np.array(pool.column(EXCLUDED_COLUMN).is_null())  # the map is fitted on the selectable rows (all here)
    expected = PCA(n_components=2, svd_solver="full").fit(normalize(E)[fitted]).explained_variance_ratio_
    got = read_pool_metadata(pool.schema.metadata).map_variance
    assert np.abs(np.array(got) - expected).max() < 1e-6, (got, expected)
    # And the map itself is that PCA's projection (up to each axis' sign).
    xy = np.column_stack([_col(pool, "crowd_map_x"), _col(pool, "crowd_map_y")])
    ref = PCA(n_components=2, svd_solver="full").fit(normalize(E)[fitted]).transform(normalize(E))
    assert np.abs(np.abs(xy) - np.abs(ref)).max() < 1e-5
    # The default embedder's map, as curated: recorded, and the page no longer says it is not.
    v1, v2 = PoolData.from_table(gsm_curated["pool"]).map_variance
    assert 0 < v2 <= v1 and v1 + v2 <= 1
    assert "explained variance" not in "".join(gsm_curated["page"].text)


@pytest.mark.unit
def test_without_the_answers_the_summary_is_absent_and_the_page_says_so(gsm_curated, gsm_scored):
    from crowdselect_hf.selection import crowd_select

    assert read_pool_metadata(gsm_curated["sel"].pool_table().schema.metadata).member_rewards is not None
    # The metrics and instructions without the answers (as Ray's read_scored gives them).
    scored = gsm_scored
    metrics_only = scored.select_columns(["instruction", *[c for c in scored.column_names if c.startswith("crowd_")]])
    thin = crowd_select(metrics_only, k=K, n_clusters=N_CLUSTERS, n_init=2)
    t = thin.pool_table()
    assert set(t.schema.metadata) == {MAP_VARIANCE_KEY} and MEMBER_REWARDS_KEY not in t.schema.metadata
    assert t.column("crowd_best_bytes").to_pylist() == list(scored["crowd_best_bytes"])
    page = render_report(t, thin.record, plots=False)
    assert "The pool table records no per-member rewards" in page and "id='family-table'" not in page
    # A pool table whose metadata is not what the selector writes is refused, naming the key.
    bad = t.replace_schema_metadata({MEMBER_REWARDS_KEY: b"[{\"name\": 1}]"})
    with pytest.raises(ReportError, match="crowdselect.member_rewards"):
        render_report(bad, thin.record, plots=False)


# -- cluster labels -----------------------------------------------------------------------------

@pytest.mark.unit
def test_cluster_labels_are_words_distinctive_of_their_cluster(gsm_published):
    pool, page = gsm_published["pool"], gsm_published["page"]
    cluster = _col(pool, "crowd_cluster", int)
    texts = [t.lower() for t in pool.column(INSTRUCTION_COLUMN).to_pylist()]
    header, *rows = page.tables["quota-table"]
    terms_at = header.index("top terms")
    labels = {int(r[0]): [t.strip() for t in r[terms_at].split("·") if t.strip()] for r in rows if r[0].isdigit()}
    assert sorted(labels) == list(range(N_CLUSTERS))
    assert sum(len(t) for t in labels.values()) >= 2 * N_CLUSTERS, labels
    for c, terms in labels.items():
        inside, outside = cluster == c, cluster != c
        for term in terms:
            assert re.fullmatch(TOKEN_PATTERN, term), term
            has = np.array([re.search(rf"\b{re.escape(term)}\b", t) is not None for t in texts])
            share_in, share_out = has[inside].mean(), has[outside].mean()
            assert share_in > share_out, (c, term, share_in, share_out)
    # The same labels in the samples, the rejected table and the hover data.
    text = gsm_published["text"]
    hover = _hover(text)
    for c, terms in labels.items():
        assert hover["labels"][str(c)] == " · ".join(terms)
        assert f"cluster {c} <span class='terms'>{' · '.join(terms)}</span>" in text


@pytest.mark.unit
def test_central_instructions_are_the_candidates_nearest_each_centre(gsm_scored):
    """``ClusterCount.central_id``, checked against numpy on given embeddings: the eligible row
    of each cluster nearest the selector's centre."""
    from crowdselect_hf.selection import CrowdSelector

    rng = np.random.default_rng(3)
    X = rng.normal(size=(gsm_scored.num_rows, 8)).astype(np.float32)
    est = CrowdSelector(k=40, n_clusters=4, n_init=2, seed=1).fit(gsm_scored, embeddings=X)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    ids = np.array(gsm_scored["crowd_id"])
    for count in est.selection_.record.clusters:
        members = np.flatnonzero(est.eligible_ & (est.labels_ == count.cluster))
        dist = ((unit[members] - est.cluster_centers_[count.cluster]) ** 2).sum(axis=1)
        assert count.central_id == ids[members[np.argmin(dist)]]


@pytest.mark.unit
def test_quota_table_shows_each_clusters_central_instruction(gsm_published):
    from crowdselect_hf.report.labels import CENTRAL_LABEL_CHARS

    pool, page, record = gsm_published["pool"], gsm_published["page"], gsm_published["record"]
    header, *rows = page.tables["quota-table"]
    at = header.index("central instruction")
    shown = {int(r[0]): r[at] for r in rows if r[0].isdigit()}
    ids = pool.column("crowd_id").to_pylist()
    texts = pool.column(INSTRUCTION_COLUMN).to_pylist()
    for count in record.clusters:
        text = " ".join(texts[ids.index(count.central_id)].split())
        cut = text if len(text) <= CENTRAL_LABEL_CHARS else text[: CENTRAL_LABEL_CHARS - 1].rstrip() + "…"
        assert shown[count.cluster] == cut
    # A TF-IDF selection is named by its terms elsewhere; the central instruction is the fallback only.
    assert "named by their top terms" in gsm_published["text"]


@pytest.mark.unit
def test_a_non_tfidf_embedders_clusters_are_named_by_their_central_instruction(gsm_published):
    import dataclasses

    from crowdselect_hf.report.labels import cluster_labels

    record = gsm_published["record"]
    d = PoolData.from_table(gsm_published["pool"])
    by_terms = cluster_labels(d, record=record)
    other = dataclasses.replace(record, clustering=dataclasses.replace(record.clustering, embedder="sentence-transformers/all-MiniLM-L6-v2"))
    by_central = cluster_labels(d, record=other)
    assert by_terms.by == "terms" and by_central.by == "central"
    for c, label in by_central.labels.items():
        assert label.central is not None
        assert by_central.text(c) == label.central_text != by_terms.text(c) == label.terms_text
    # Records before schema 3 have no central_id: the terms stay the label.
    old = dataclasses.replace(other, clusters=tuple(dataclasses.replace(c, central_id=None) for c in other.clusters))
    assert cluster_labels(d, record=old).by == "terms"


@pytest.mark.unit
def test_labels_without_pool_text_come_from_the_selected_rows(gsm_published):
    """A pool table without instructions (crowdselect-hf 0.1.0's): labels from the training rows'
    instructions, and the page says so."""
    text = gsm_published["plain_text"]
    page = _parse(text)
    assert ("over its selected rows' instructions only (the pool table holds no instructions, crowd_instruction)"
            in "".join(page.text))
    assert "The pool table records no per-member rewards" in text
    assert "does not record the axes' explained variance" in "".join(page.text)
    header, *rows = page.tables["quota-table"]
    assert any(r[header.index("top terms")] for r in rows if r[0].isdigit())
    hover = _hover(text)
    picked = {i for i, s in zip(hover["crowd_id"], hover["selected"]) if s}
    assert picked and all(bool(t) is (i in picked) for t, i in zip(hover["text"], hover["crowd_id"]))


# -- near-misses and lowest-ranked rows ------------------------------------------------------------

def _cluster_order(pool, c):
    """Pool rows of cluster ``c``, best first: descending score, ties by crowd_id, NaN last (Python sort)."""
    score, cluster = _col(pool, "crowd_combined"), _col(pool, "crowd_cluster", int)
    ids = pool.column("crowd_id").to_pylist()
    rows = [i for i in range(len(score)) if cluster[i] == c]
    return sorted(rows, key=lambda i: (math.isnan(score[i]), -score[i] if not math.isnan(score[i]) else 0, ids[i], i))


@pytest.mark.unit
def test_near_misses_rank_below_the_cut_or_say_why(gsm_published):
    pool, truth, text = gsm_published["pool"], gsm_published["truth"], gsm_published["text"]
    score, selected = _col(pool, "crowd_combined"), _col(pool, "crowd_selected", bool)
    shown = _rejected_rows(text)
    reasons = {reason for _, _, _, reason in shown}
    assert {"quota_full", "duplicate_instruction", "empty_best_response"} <= reasons, reasons
    for c in range(N_CLUSTERS):
        order = _cluster_order(pool, c)
        unselected = [i for i in order if not selected[i]]
        lowest = max(order.index(i) for i in order if selected[i])
        mine = [(kind, row, reason) for kind, row, cc, reason in shown if cc == c]
        assert [row for kind, row, _ in mine if kind == "lowest-selected"] == [order[lowest]]
        assert [row for kind, row, _ in mine if kind == "near-miss"] == unselected[:3]
        assert [row for kind, row, _ in mine if kind == "lowest-ranked"] == unselected[3:][-2:]
        floor = score[order[lowest]]
        for kind, row, reason in mine:
            if kind == "lowest-selected":
                continue
            assert not selected[row]
            if truth[row] is not None:
                assert reason == truth[row], (row, reason, truth[row])
            else:  # eligible: it lost to the quota, so it cannot outrank the lowest selected row
                assert reason == "quota_full" and order.index(row) > lowest and not score[row] > floor, (row, reason)
    # Each rejected row's rank, metrics and text as in the pool.
    body = [r for r in gsm_published["page"].tables["rejected-table"][1:] if len(r) > 1]
    assert len(body) == len(shown)
    for cells, (_, row, c, _) in zip(body, shown):
        assert int(cells[1]) == row and int(cells[2].replace(",", "")) == _cluster_order(pool, c).index(row) + 1
        assert cells[3] == _fmt(score[row]) and cells[4] == _fmt(_col(pool, "crowd_difficulty")[row])
        assert cells[9].startswith(pool.column(INSTRUCTION_COLUMN)[row].as_py().strip()[:40])


def _fmt(v):
    return "–" if not math.isfinite(v) else f"{v:.3g}"


@pytest.mark.unit
def test_reasons_without_the_exclusion_column_are_what_the_pool_shows(gsm_published):
    """A pool table without crowd_excluded and crowd_best_bytes (crowdselect-hf 0.1.0's): duplicates
    are found from crowd_id, no usable reward from the NaN metrics; an empty best answer ranked above
    the cut is 'not eligible (reason not recorded)', never quota full."""
    truth, text = gsm_published["truth"], gsm_published["plain_text"]
    shown = _rejected_rows(text)
    assert {"duplicate_instruction", "unrecorded"} <= {r for *_, r in shown}
    for kind, row, _, reason in shown:
        if reason == "duplicate_instruction":
            assert truth[row] == "duplicate_instruction"
        if reason == "unrecorded":
            assert truth[row] == "empty_best_response"
        if truth[row] == "empty_best_response" and kind == "near-miss":
            assert reason == "unrecorded"
    assert "The record counts rows with an empty best answer, but the pool table does not say which" in "".join(_parse(text).text)


# -- hover data -----------------------------------------------------------------------------------

@pytest.mark.unit
def test_hover_data_matches_the_rows(gsm_published):
    pool, text = gsm_published["pool"], gsm_published["text"]
    hover = _hover(text)
    rows = np.array(hover["row"])
    assert len(set(rows.tolist())) == rows.size > K
    selected = _col(pool, "crowd_selected", bool)
    assert set(np.flatnonzero(selected)) <= set(rows.tolist()), "every selected row carries hover text"
    ids = pool.column("crowd_id").to_pylist()
    instr = pool.column(INSTRUCTION_COLUMN).to_pylist()
    columns = {"difficulty": "crowd_difficulty", "separability": "crowd_separability", "stability": "crowd_stability",
               "score": "crowd_combined", "best_reward": "crowd_best_reward"}
    for j, i in enumerate(rows):
        assert hover["crowd_id"][j] == ids[i]
        assert hover["cluster"][j] == pool.column("crowd_cluster")[int(i)].as_py()
        assert hover["selected"][j] == int(selected[i])
        flat = " ".join(instr[i].split())
        assert hover["text"][j] == (flat if len(flat) <= TEXT_CHARS else flat[: TEXT_CHARS - 1] + "…")
        for field, col in columns.items():
            v = pool.column(col)[int(i)].as_py()
            if v is None or not math.isfinite(v):
                assert hover[field][j] is None
            else:
                assert hover[field][j] == pytest.approx(v, rel=1e-3, abs=1e-9), (field, i)
    # Image positions: an affine image of the map coordinates (x to the right, y downwards), inside the image.
    mx, my = _col(pool, "crowd_map_x")[rows], _col(pool, "crowd_map_y")[rows]
    px, py = np.array(hover["x"]), np.array(hover["y"])
    assert ((0 < px) & (px < 1) & (0 < py) & (py < 1)).all()
    for target, source in ((px, mx), (py, my)):
        A = np.column_stack([source, np.ones_like(source)])
        coef, *_ = np.linalg.lstsq(A, target, rcond=None)
        assert np.abs(A @ coef - target).max() < 2e-4
    assert np.corrcoef(px, mx)[0, 1] > 0.999 and np.corrcoef(py, my)[0, 1] < -0.999
    # And each selected row's position is the centre of a dot drawn with the selected rows' outline.
    (width, height), drawn = _map_dots(text)
    outlined = np.array([(x, y) for x, y, stroke in drawn if stroke])
    picked = np.array(hover["selected"], dtype=bool)
    assert len(outlined) == selected.sum() == picked.sum()
    for x, y in zip(px[picked] * width, py[picked] * height):
        # hover positions carry 4 decimals (≤ 0.07 px here), the SVG's coordinates 0.1 px
        assert np.hypot(*(outlined - (x, y)).T).min() < 0.25


def _map_dots(text):
    """The map figure's (width, height) and its dots as (cx, cy, outlined)."""
    from xml.etree import ElementTree

    src = re.search(r'id="map-img" src="data:image/svg\+xml;base64,([^"]+)"', text).group(1)
    root = ElementTree.fromstring(base64.b64decode(src))
    dots = [(float(c.get("cx")), float(c.get("cy")), g.get("stroke") is not None)
            for g in root.iter("{http://www.w3.org/2000/svg}g") for c in g.findall("{http://www.w3.org/2000/svg}circle")]
    return (float(root.get("width")), float(root.get("height"))), dots


# -- metrics, answers, families, verdict ------------------------------------------------------------

@pytest.mark.unit
def test_rank_correlations_match_scipy(gsm_published):
    from scipy.stats import rankdata, spearmanr

    pool, page = gsm_published["pool"], gsm_published["page"]
    selected = _col(pool, "crowd_selected", bool)
    names = {"Difficulty": "crowd_difficulty", "Separability": "crowd_separability", "Stability": "crowd_stability",
             "Best reward": "crowd_best_reward"}
    rows = page.tables["correlation-table"][1:]
    assert len(rows) == 6
    for pair, pool_rho, sel_rho in rows:
        a, b = (names[p.strip()] for p in pair.split("×"))
        x, y = _col(pool, a), _col(pool, b)
        for mask, shown in ((np.ones(len(x), bool), pool_rho), (selected, sel_rho)):
            ok = mask & np.isfinite(x) & np.isfinite(y)
            expected = spearmanr(x[ok], y[ok]).statistic if ok.sum() >= 3 else math.nan
            assert shown == ("–" if not math.isfinite(expected) else f"{expected:+.2f}"), (pair, shown, expected)
    x = _col(pool, "crowd_difficulty")
    y = _col(pool, "crowd_separability")
    ok = np.isfinite(x) & np.isfinite(y)
    assert ok.sum() == len(x) - UNSCORED  # spearman() leaves the rows without a usable reward out
    assert spearman(x, y) == pytest.approx(spearmanr(x[ok], y[ok]).statistic, abs=1e-12)
    assert np.array_equal(average_ranks(x[ok]), rankdata(x[ok]))


@pytest.mark.unit
def test_verdict_when_the_selection_lowers_the_best_reward(gsm_published, gsm_crowd):
    record, text = gsm_published["record"], gsm_published["text"]
    means = record.metric_means["best_reward"]
    assert (means["selected"] < means["pool"]) is ("id='reward-verdict'" in text)
    # reward-bottom picks the worst-answered rows: its page must say so, with the record's numbers.
    from crowdselect_hf.selection import crowd_select

    sel = crowd_select(gsm_published["scored"], k=K, strategy="reward-bottom", crowd=gsm_crowd)
    m = sel.record.metric_means["best_reward"]
    assert m["selected"] < m["pool"]
    page = render_report(sel.pool_table(), sel.record, plots=False)
    verdict = re.search(r"<p class='verdict' id='reward-verdict'>(.*?)</p>", page).group(1)
    assert verdict.startswith(f"The selection lowers the mean best reward: {m['selected']:.3g} selected against "
                              f"{m['pool']:.3g}")
    difficulty, best = np.array(sel.pool_table().column("crowd_difficulty").to_pylist(), float), \
        np.array(sel.pool_table().column("crowd_best_reward").to_pylist(), float)
    from scipy.stats import spearmanr

    ok = np.isfinite(difficulty) & np.isfinite(best)
    assert f"Spearman ρ = {spearmanr(difficulty[ok], best[ok]).statistic:.2f}" in verdict
    assert "median best-answer bytes" in page


@pytest.mark.unit
def test_answer_lengths_and_map_variance(gsm_published):
    pool = gsm_published["pool"]
    page = gsm_published["page"]
    rows = {r[0]: r[1:] for r in page.tables["answers-table"][1:]}
    best_bytes, selected = _col(pool, "crowd_best_bytes"), _col(pool, "crowd_selected", bool)
    assert rows["median best-answer bytes"] == [_fmt(float(np.median(best_bytes))), _fmt(float(np.median(best_bytes[selected])))]
    # Each best answer's bytes, from the rows: the best member's answer (all blank in the blanked rows).
    scored = gsm_published["scored"]
    expected = [len(r[b]["content"].encode()) if b else 0 for r, b in zip(scored.to_list(), scored["crowd_best_model"])]
    assert best_bytes.astype(int).tolist() == expected and (best_bytes == 0).sum() == BLANKED + UNSCORED
    recorded = pool.replace_schema_metadata({MAP_VARIANCE_KEY: b"[0.123, 0.0456]"})
    assert PoolData.from_table(recorded).map_variance == (0.123, 0.0456)
    from crowdselect_hf.report.mapfigure import axis_label

    assert axis_label(PoolData.from_table(recorded), 0) == "PC 1 (12.3% of variance)"
    with pytest.raises(ReportError, match="two ratios from 0 to 1"):
        PoolData.from_table(pool.replace_schema_metadata({MAP_VARIANCE_KEY: b"[0.5, 1.5]"}))


# -- palette --------------------------------------------------------------------------------------

def _lab(hex_colour):
    """CIE 1976 L*a*b* (D65) of an sRGB colour."""
    rgb = np.array([int(hex_colour[i: i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]]) @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


@pytest.mark.unit
def test_cluster_colours_stay_apart_for_30_clusters():
    assert len(set(CLUSTER_COLORS)) == len(CLUSTER_COLORS) == 30
    lab = np.array([_lab(c) for c in CLUSTER_COLORS])
    dist = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1)) + np.eye(len(lab)) * 1e9
    assert dist.min() > 20, dist.min()
    others = np.array([_lab(c) for c in (UNCLUSTERED_COLOR, POOL_COLOR, SELECTED_COLOR)])
    assert np.sqrt(((lab[:, None] - others[None]) ** 2).sum(-1)).min() > 20


# -- headless Chromium ----------------------------------------------------------------------------

# Appended to the probe: points at the first hover row's dot and reports the tooltip and the sections.
HOVER_PROBE = """<script>
window.addEventListener('load', function () {
  var d = JSON.parse(document.getElementById('map-data').textContent), img = document.getElementById('map-img');
  var i = d.selected.indexOf(1), r = img.getBoundingClientRect();
  img.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + d.x[i] * r.width, clientY: r.top + d.y[i] * r.height,
                                                 bubbles: true}));
  var tip = document.getElementById('map-tip');
  var out = document.createElement('pre');
  out.id = 'cs-hover';
  out.textContent = JSON.stringify({row: d.row[i], shown: tip.style.display, tip: tip.textContent,
    sections: Array.prototype.map.call(document.querySelectorAll('section'), function (s) { return s.id; }),
    empty: Array.prototype.filter.call(document.querySelectorAll('section'), function (s) {
      return s.getBoundingClientRect().height < 60; }).map(function (s) { return s.id; })});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
def test_sections_render_in_headless_chromium(gsm_published, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium binary found; install the Debian package 'chromium'")
    text, pool = gsm_published["text"], gsm_published["pool"]
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1).replace("</body>", HOVER_PROBE + "</body>", 1), "utf-8")
    proc = _run_chromium(binary, tmp_path, probed.as_uri(), "--dump-dom", "--virtual-time-budget=10000",
                         "--window-size=1280,4000")

    def block(ident):
        found = re.search(rf'<pre id="{ident}">(.*?)</pre>', proc.stdout, flags=re.S)
        assert found, f"chromium printed no {ident} (exit {proc.returncode}): {proc.stderr[-2000:]}"
        raw = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        return json.loads(raw)

    page = _parse(text)
    assert block("cs-probe") == {"images": len(page.imgs), "loaded": len(page.imgs), "errors": []}
    assert len(page.imgs) == 7  # metrics, relations, score, answers, families, map, best answers
    hover = block("cs-hover")
    assert hover["sections"] == page.sections and hover["empty"] == []
    row = hover["row"]
    assert hover["shown"] == "block"
    flat = " ".join(pool.column(INSTRUCTION_COLUMN)[row].as_py().split())
    assert hover["tip"].startswith(flat[:60]) and "selected · score" in hover["tip"]

    shot = tmp_path / "report.png"
    proc = _run_chromium(binary, tmp_path, gsm_published["report"].as_uri(), f"--screenshot={shot}",
                         "--window-size=1280,9000", "--hide-scrollbars", "--virtual-time-budget=10000")
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    assert _png_size(shot.read_bytes()) == (1280, 9000)
    pixels = _screenshot_pixels(shot)
    assert pixels[:60, :, :3].mean() < 0.35 and pixels[:, :, :3].std() > 0.1
    if os.environ.get("CROWDSELECT_SCREENSHOT_DIR"):  # for a person to look at
        shutil.copy(shot, os.path.join(os.environ["CROWDSELECT_SCREENSHOT_DIR"], "report-sections.png"))


@pytest.mark.unit
def test_stop_words_and_id_order_agree_with_their_sources(gsm_published):
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from crowdselect_hf.report.data import id_order
    from crowdselect_hf.report.labels import STOP_WORDS

    assert STOP_WORDS >= ENGLISH_STOP_WORDS  # the copy is scikit-learn's list, plus a few
    ids = gsm_published["pool"].column("crowd_id")
    order = id_order(ids)
    as_text = ids.to_pylist()
    assert [as_text[i] for i in np.argsort(order, kind="stable")] == sorted(as_text)
    assert len(set(order.tolist())) == len(set(as_text)) < len(as_text)  # the repeated rows share their id
    other = pa.chunked_array([["b", "a", "b", "ab"]])  # not 16 hex digits: ranked by pyarrow
    assert id_order(other).tolist() == [3, 1, 3, 2]
