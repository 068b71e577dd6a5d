"""The dataset card and the HTML report tell the same story about the same selection.

For every strategy, a real selection of the shipped demo pool is saved (``selection.json`` +
``pool.parquet``), its card body and its report are rendered from that one record, and the
numbers are parsed back out of both: strategy, k, ranked-by, reward, which parameters are
claimed, and the per-cluster table, field by field. A baseline must claim no clusters, weights
or seed it did not use.
"""

import re

import pytest
from huggingface_hub import DatasetCard

from crowdselect_hf import score
from crowdselect_hf.card import config_entry, merge_card
from crowdselect_hf.demo_data import demo_crowd, demo_pool
from crowdselect_hf.record import SelectionRecord, read_record, write_record
from crowdselect_hf.report import write_report
from crowdselect_hf.selection import crowd_select
from crowdselect_hf.strategies import STRATEGIES

from .test_report import _parse as parse_page

pytestmark = pytest.mark.unit

K, N_CLUSTERS = 30, 4
SOURCE = {"dataset": "crowdselect-demo", "split": "train"}
CLUSTER_FIELDS = ("cluster", "pool_rows", "candidates", "quota", "picked_by_quota", "backfilled")
CARD_CLUSTER_HEADER = "| cluster | pool rows | candidates | quota | selected by quota | back-filled |"
REPORT_CLUSTER_HEADER = ["cluster", "pool rows", "candidates", "quota", "selected by quota", "back-filled"]


@pytest.fixture(scope="module")
def demo():
    crowd = demo_crowd()
    return score(demo_pool(), crowd=crowd), crowd


# -- reading the card back ----------------------------------------------------------------------

def card_section(text: str, name: str) -> str:
    start = text.index(f"### `{name}`")
    end = re.search(r"\n##", text[start + 1:])
    return text[start: start + 1 + end.start()] if end else text[start:]


def card_facts(section: str) -> dict:
    how = re.search(r"^- strategy: `([^`]+)`, k = (\d+), ranked by (.+)$", section, re.M)
    reward = re.search(r"^- reward the metrics were computed from: `([^`]+)`$", section, re.M)
    assert how and reward, section
    facts = {"strategy": how[1], "k": int(how[2]), "ranked_by": how[3], "reward": reward[1],
             "weights": "weights" in section, "weight_values": re.search(r"^- weights \(difficulty, separability, "
                                                                          r"stability\): \(([^)]*)\)$", section, re.M),
             "seed": re.search(r"^- seed: (\d+)$", section, re.M),
             "clustering": re.search(r"^- clustering: (\d+) clusters of `([^`]+)`", section, re.M), "clusters": None}
    lines = section.splitlines()
    if CARD_CLUSTER_HEADER in lines:
        rows = lines[lines.index(CARD_CLUSTER_HEADER) + 2:]
        rows = rows[: next((i for i, line in enumerate(rows) if not line.startswith("|")), len(rows))]
        cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
        facts["clusters"] = [tuple(int(v) for v in r) for r in cells if r[0] != "total"]
        facts["cluster_total"] = next(tuple(int(v) for v in r[1:]) for r in cells if r[0] == "total")
    return facts


# -- reading the report back ----------------------------------------------------------------------

def report_quota_rows(page):
    """(per-cluster rows, total row) of the report's quota table, first six columns; ``(None, None)``
    when it has none."""
    table = page.tables.get("quota-table")
    if table is None:
        return None, None
    header, *rows = table
    assert [h.lower() for h in header[:6]] == REPORT_CLUSTER_HEADER, header

    def numbers(row):
        return tuple(int(v.replace(",", "")) for v in row)

    body = [numbers(r[:6]) for r in rows if r[0].isdigit()]
    return body, next(numbers(r[1:6]) for r in rows if r[0] == "total")


# -- the check ----------------------------------------------------------------------------------

def _published(tmp_path, record: SelectionRecord, pool, plots=True):
    name = record.config
    cfg = tmp_path / name
    write_record(cfg, record, pool)
    assert read_record(cfg) == record
    page = write_report(tmp_path, config=name, plots=plots).read_text(encoding="utf-8")
    card = merge_card(None, name, config_entry(name, rows=record.rows, format="messages", record=record, source=SOURCE),
                      repo_ref="me/sets")
    card = DatasetCard(str(card))  # what a reader of README.md gets back
    return card, page


def assert_card_and_report_agree(card: DatasetCard, page: str, record: SelectionRecord):
    name = record.config
    assert SelectionRecord.from_dict(card.data.crowdselect[name]["record"]) == record
    c = card_facts(card_section(card.text, name))
    r = parse_page(page)

    assert c["strategy"] == r.chips["strategy"] == record.strategy
    assert c["k"] == int(r.chips["k"].replace(",", "")) == record.k
    assert c["ranked_by"] == r.chips["ranked by"] == record.ranked_by
    assert r.headings["score"] == f"Ranking score: {record.ranked_by}"
    assert c["reward"] == r.chips["reward"] == (record.reward or "unknown") == "demo-reward"

    combines = record.weights is not None
    assert c["weights"] is combines and ("weights" in r.chips) is combines
    if combines:
        chip = [float(part.split()[1]) for part in r.chips["weights"].split(" · ")]
        assert [float(w) for w in c["weight_values"][1].split(",")] == chip == list(record.weights)
    page_text = "".join(r.text).lower()
    assert ("weights" in page_text) is combines, "the report names weights only for a strategy that combines"
    assert (c["seed"] is not None) is (record.seed is not None) is ("seed" in r.chips)
    if record.seed is not None:
        assert int(c["seed"][1]) == int(r.chips["seed"]) == record.seed

    report_clusters, report_total = report_quota_rows(r)
    if record.clustering is None:
        section = card_section(card.text, name)
        assert c["clustering"] is None and c["clusters"] is None and "clusters of" not in section
        assert report_clusters is None and "clusters" not in r.chips and "embedder" not in r.chips
        assert record.clusters == ()
        return
    assert int(c["clustering"][1]) == int(r.chips["clusters"]) == record.clustering.n_clusters
    assert c["clustering"][2] == r.chips["embedder"] == record.clustering.embedder
    expected = [tuple(getattr(cc, f) for f in CLUSTER_FIELDS) for cc in record.clusters]
    assert c["clusters"] == report_clusters == expected
    assert c["cluster_total"] == report_total == tuple(sum(row[i] for row in expected) for i in range(1, 6))
    assert report_total[0] == record.n_pool and report_total[2] == record.k
    assert report_total[3] + report_total[4] == record.n_selected


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_card_and_report_agree(strategy, demo, tmp_path):
    ds, crowd = demo
    sel = crowd_select(ds, k=K, n_clusters=N_CLUSTERS, n_init=2, strategy=strategy, crowd=crowd)
    record = sel.record.saved_as(f"{strategy}-{K}", K, SOURCE, crowd.to_dict())
    # The figures add nothing to the numbers compared here (and cost a second per page); the
    # pages with figures are compared below and in test_report.py.
    card, page = _published(tmp_path, record, sel.pool_table(), plots=False)
    assert_card_and_report_agree(card, page, record)


def test_card_and_report_agree_with_backfill(demo, tmp_path):
    ds, crowd = demo
    sel = crowd_select(ds, k=400, n_clusters=12, n_init=2, crowd=crowd)
    record = sel.record.saved_as("crowdselect-400", 400, SOURCE, crowd.to_dict())
    assert record.n_backfilled > 0 and any(c.picked_by_quota < c.quota for c in record.clusters)
    card, page = _published(tmp_path, record, sel.pool_table())
    assert_card_and_report_agree(card, page, record)
    assert f"{record.n_backfilled} rows were back-filled" in card.text


def test_baseline_claims_nothing_it_did_not_use(demo, tmp_path):
    ds, crowd = demo
    sel = crowd_select(ds, k=K, n_clusters=N_CLUSTERS, n_init=2, weights=(1, 1, 2), seed=7, strategy="reward-top", crowd=crowd)
    record = sel.record.saved_as("reward-top-30", K, SOURCE, crowd.to_dict())
    card, page = _published(tmp_path, record, sel.pool_table())
    section = card_section(card.text, "reward-top-30")
    for claim in ("clusters of", "weights", "seed", "embeddings", "| cluster |"):
        assert claim not in section, claim
    overview = next(line for line in card.text.splitlines() if line.startswith("| `reward-top-30` |"))
    assert overview.split("|")[5:8] == [" best reward ", " – ", " – "]  # ranked by, clusters, weights
    assert "quota-table" not in page and "Ranking score: best reward" in page
    assert "No clusters: this strategy selects over the whole pool, ranked by best reward" in page
    entry = card.data.crowdselect["reward-top-30"]["record"]
    assert entry["weights"] is None and entry["seed"] is None and entry["clustering"] is None and entry["clusters"] == []


def test_entries_of_0_1_0_read_through_the_one_converter(demo, tmp_path):
    """A card entry and a selection.json written by 0.1.0 (candidates recorded as "size", no pool
    rows) render the same per-cluster numbers in the card and the report."""
    import json

    ds, crowd = demo
    sel = crowd_select(ds, k=K, n_clusters=N_CLUSTERS, n_init=2, seed=3, crowd=crowd)
    r = sel.record
    params = {"strategy": "crowdselect", "k": K, "n_clusters": N_CLUSTERS, "weights": [1, 1, 2], "embedder": "tfidf",
              "seed": 3, "kmeans": "auto", "n_init": 2}
    summary = {"n_pool": r.n_pool, "n_eligible": r.n_eligible, "n_selected": r.n_selected, "n_backfilled": r.n_backfilled,
               "excluded": dict(r.excluded), "metric_means": json.loads(json.dumps(r.metric_means)),
               "clusters": [{"cluster": c.cluster, "size": c.candidates, "quota": c.quota,
                             "picked_by_quota": c.picked_by_quota, "backfilled": c.backfilled} for c in r.clusters]}
    old_json = {"params": params, "summary": summary, "crowd": crowd.to_dict(), "source": SOURCE, "config": "old-30", "rows": K}
    cfg = tmp_path / "old-30"
    write_record(cfg, r, sel.pool_table())
    (cfg / "_crowdselect" / "selection.json").write_text(json.dumps(old_json), encoding="utf-8")
    page = write_report(cfg, plots=False).read_text(encoding="utf-8")
    old_entry = {"rows": K, "format": "messages", **params, "source": SOURCE, "reward": crowd.reward,
                 "crowd": crowd.to_dict(), "summary": summary, "package_version": "0.1.0"}
    card = DatasetCard(str(merge_card(None, "old-30", old_entry)))
    record = read_record(cfg)
    assert record.package_version == "0.1.0" and record.reward == crowd.reward
    facts = card_facts(card_section(card.text, "old-30"))
    report_clusters, _ = report_quota_rows(parse_page(page))
    assert facts["clusters"] == report_clusters == [(c.cluster, c.candidates, c.candidates, c.quota, c.picked_by_quota,
                                                     c.backfilled) for c in r.clusters]
