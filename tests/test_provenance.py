"""Metrics know where they came from: selecting with another reward than the one that scored the
table re-scores it (CLI, pipeline) or fails naming the difference (API), and the card never names
a reward the metrics did not use."""

import json
import subprocess
import sys

import datasets
import numpy as np
import pytest

from crowdselect_hf import Crowd, crowd_select, score
from crowdselect_hf.combine import SelectionError
from crowdselect_hf.crowd import CrowdError
from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate, ensure_scored
from crowdselect_hf.provenance import read_provenance
from crowdselect_hf.scoring import COLUMNS

MEMBERS = ("fam-1b", "fam-7b", "fam-70b", "other-3b", "other-8b")


@pytest.fixture(scope="module")
def two_rewards():
    """60 instructions, 5 members, two unrelated reward fields r1 and r2."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(60):
        row = {"instruction": f"question {i} about {['maths', 'poems', 'code', 'travel'][i % 4]}"}
        for m in MEMBERS:
            row[m] = {"content": f"{m} answers {i}", "r1": float(rng.normal()), "r2": float(rng.normal())}
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def _cols(ds):
    return {c: ds[c] for c in COLUMNS}


def test_score_records_the_reward_and_it_survives_parquet(two_rewards, tmp_path):
    s1 = score(two_rewards, reward="r1")
    assert read_provenance(s1).reward == "r1"
    assert sorted(n for n, _, _ in read_provenance(s1).members) == sorted(MEMBERS)
    s1.to_parquet(str(tmp_path / "s1.parquet"))
    back = datasets.load_dataset("parquet", data_files=str(tmp_path / "s1.parquet"), split="train")
    assert read_provenance(back).reward == "r1"
    assert read_provenance(back.select([3, 1]).shuffle(seed=0)).reward == "r1"
    assert read_provenance(two_rewards.map(lambda x: {"crowd_id": "x"})) is None


def test_api_refuses_stale_metrics_naming_the_mismatch(two_rewards):
    s1 = score(two_rewards, reward="r1")
    with pytest.raises(SelectionError, match=r"reward field 'r1' \(asked: 'r2'\).*re-score"):
        crowd_select(s1, k=10, strategy="reward-top", crowd=Crowd.infer(two_rewards, reward="r2"))
    # The same crowd and reward are accepted.
    crowd_select(s1, k=10, strategy="reward-top", crowd=Crowd.infer(two_rewards, reward="r1"))


def test_pipeline_rescores_with_the_asked_reward(two_rewards, tmp_path):
    s1 = score(two_rewards, reward="r1")
    fresh = score(two_rewards, reward="r2")
    assert _cols(ensure_scored(s1, reward="r2")) == _cols(fresh)
    assert ensure_scored(s1) is s1 and ensure_scored(s1, reward="r1") is s1
    config = SelectionConfig(k=10, n_clusters=3, n_init=2)
    done = curate(s1, config, OutputConfig(out=str(tmp_path / "a"), report=False), reward="r2")
    want = crowd_select(fresh, k=10, n_clusters=3, n_init=2)
    assert done.selection.ids == want.ids
    assert done.selection.record.reward == "r2"


def test_metrics_without_answers_fail_naming_the_mismatch(two_rewards):
    metrics_only = score(two_rewards, reward="r1").remove_columns(list(MEMBERS))
    assert ensure_scored(metrics_only, reward="r1") is metrics_only
    with pytest.raises(CrowdError, match=r"reward field 'r1' \(asked: 'r2'\).*cannot be re-scored"):
        ensure_scored(metrics_only, reward="r2")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "crowdselect_hf.cli", "-q", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_cli_score_r1_then_select_r2_equals_a_fresh_r2_selection(two_rewards, tmp_path):
    pool = tmp_path / "pool.parquet"
    two_rewards.to_parquet(str(pool))
    r = _cli("score", pool, "--reward", "r1", "--out", tmp_path / "s1.parquet")
    assert r.returncode == 0, r.stderr
    common = ("--k", 10, "--strategy", "reward-top", "--no-report", "--config-name", "top")
    r = _cli("select", tmp_path / "s1.parquet", "--reward", "r2", "--out", tmp_path / "stale", *common)
    assert r.returncode == 0, r.stderr
    r = _cli("select", pool, "--reward", "r2", "--out", tmp_path / "fresh", *common)
    assert r.returncode == 0, r.stderr
    stale = json.loads((tmp_path / "stale/top/_crowdselect/selection.json").read_text())
    fresh = json.loads((tmp_path / "fresh/top/_crowdselect/selection.json").read_text())
    assert stale["metrics"]["reward"] == fresh["metrics"]["reward"] == "r2"
    rows = lambda d: sorted(datasets.load_dataset(str(tmp_path / d), "top", split="train")["crowd_id"])  # noqa: E731
    assert rows("stale") == rows("fresh")
    card = (tmp_path / "stale/README.md").read_text()
    assert "`r2`" in card and "`r1`" not in card
