import hashlib
import logging
import math
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest

from crowdselect_hf import COLUMNS, Crowd, CrowdError, CrowdScore, crowd_report, crowd_score, score

from .reference import reference_row

FLOAT_COLUMNS = ("crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_reward")


def _columns(ds):
    return {c: ds[c] for c in COLUMNS}


def _same(a, b):
    """Exact equality, NaN equal to NaN."""
    assert a.keys() == b.keys()
    for c in a:
        x, y = a[c], b[c]
        if c in FLOAT_COLUMNS:
            assert np.array_equal(np.array(x, dtype=float), np.array(y, dtype=float), equal_nan=True), c
        else:
            assert list(x) == list(y), c


@pytest.fixture(scope="module")
def five_paths(zoo_ds, zoo_crowd):
    f = CrowdScore(crowd=zoo_crowd)
    iterable = zoo_ds.to_iterable_dataset(num_shards=4).map(f)
    return {
        "score": _columns(score(zoo_ds, crowd=zoo_crowd)),
        "per-example": _columns(zoo_ds.map(f, load_from_cache_file=False)),
        "batched": _columns(zoo_ds.map(f, batched=True, batch_size=100, load_from_cache_file=False)),
        "num_proc=2": _columns(zoo_ds.map(f, num_proc=2, load_from_cache_file=False)),
        "iterable": {c: [row[c] for row in iterable] for c in COLUMNS},
    }


@pytest.mark.slow
def test_every_path_equals_an_independent_scipy_computation(five_paths, zoo_ds, zoo_crowd):
    names = zoo_crowd.names
    families = [m.family for m in zoo_crowd]
    sizes = [m.params_b for m in zoo_crowd]
    reward = zoo_crowd.reward
    rows = zoo_ds.select_columns(names + ["instruction"]).to_list()  # decoded independently of our code
    expected = []
    for row in rows:
        rewards = [row[n][reward] for n in names]
        expected.append(reference_row(rewards, families, sizes))
    expected = np.array(expected, dtype=float)
    for path, cols in five_paths.items():
        for j, c in enumerate(("crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_reward")):
            np.testing.assert_allclose(np.array(cols[c], dtype=float), expected[:, j], rtol=0, atol=1e-9, err_msg=f"{path} {c}")
        assert cols["crowd_n_scored"] == expected[:, 4].astype(int).tolist(), path
        assert cols["crowd_n_families"] == expected[:, 5].astype(int).tolist(), path
        best_rewards = [row[m][reward] for row, m in zip(rows, cols["crowd_best_model"])]
        assert best_rewards == cols["crowd_best_reward"], path
        assert cols["crowd_best_bytes"] == [len(row[m]["content"].encode("utf-8")) for row, m in
                                            zip(rows, cols["crowd_best_model"])], path
        assert cols["crowd_id"] == [hashlib.blake2b(r["instruction"].encode(), digest_size=8).hexdigest() for r in rows]
    # The table is real and interesting: stability takes both signs, some families tie.
    stab = np.array(five_paths["score"]["crowd_stability"])
    assert (stab > 0.5).any() and (stab < -0.5).any()


@pytest.mark.slow
def test_all_paths_agree_exactly(five_paths):
    reference = five_paths["score"]
    for path, cols in five_paths.items():
        _same(reference, cols)


def test_arrow_formatted_batches_agree(zoo_ds, zoo_crowd, zoo_scored):
    out = zoo_ds.with_format("arrow").map(CrowdScore(crowd=zoo_crowd), batched=True, batch_size=128).with_format(None)
    _same(_columns(zoo_scored), _columns(out))


def test_inferred_crowd_gives_the_same_difficulty_and_separability(zoo_ds, zoo_scored):
    # Names alone put FuseChat 3.1 and 3.2 in different families, so stability may differ,
    # but everything that does not depend on families must not.
    inferred = score(zoo_ds)
    for c in ("crowd_id", "crowd_difficulty", "crowd_separability", "crowd_best_model", "crowd_n_scored"):
        assert inferred[c] == zoo_scored[c]


def test_score_attaches_columns_without_rewriting_the_input(zoo_ds, zoo_crowd):
    out = score(zoo_ds, crowd=zoo_crowd)
    original = zoo_ds.data.table.column("vicuna-7b").chunk(0)
    attached = out.data.table.column("vicuna-7b").chunk(0)
    # Same memory-mapped buffers: nothing was copied or rewritten.
    assert [b.address for b in original.buffers() if b] == [b.address for b in attached.buffers() if b]
    files = [f["filename"] for f in out.cache_files]
    assert zoo_ds.cache_files[0]["filename"] in files
    new = [f for f in files if f not in {c["filename"] for c in zoo_ds.cache_files}]
    assert len(new) == 1 and os.path.getsize(new[0]) < 200_000
    assert out.column_names == zoo_ds.column_names + list(COLUMNS)


def test_score_reuses_its_cache_and_replaces_old_columns(zoo_ds, zoo_crowd):
    first = score(zoo_ds, crowd=zoo_crowd)
    again = score(zoo_ds, crowd=zoo_crowd)
    assert first._fingerprint == again._fingerprint
    _same(_columns(first), _columns(again))
    rescored = score(first, crowd=zoo_crowd)
    assert rescored.column_names.count("crowd_difficulty") == 1
    _same(_columns(first), _columns(rescored))
    assert score(zoo_ds, crowd=Crowd(zoo_crowd.members[:4], reward=zoo_crowd.reward))._fingerprint != first._fingerprint


def test_score_keeps_an_indices_mapping(zoo_ds, zoo_crowd, zoo_scored):
    view = zoo_ds.shuffle(seed=3).select(range(50))
    out = score(view, crowd=zoo_crowd)
    assert out._indices is not None and len(out) == 50
    expected = zoo_scored.shuffle(seed=3).select(range(50))
    _same(_columns(expected), _columns(out))


def test_score_keeps_the_format(zoo_ds, zoo_crowd):
    out = score(zoo_ds.with_format("numpy"), crowd=zoo_crowd)
    assert out.format["type"] == "numpy"
    assert isinstance(out[:3]["crowd_difficulty"], np.ndarray)


def _long_from_wide(zoo_ds, zoo_crowd, n=60, seed=0):
    """UltraFeedback-like layout: members shuffled per row, some missing, some rewards None."""
    rng = np.random.default_rng(seed)
    rows_long, rows_wide = [], []
    for row in zoo_ds.select(range(n)).to_list():
        order = rng.permutation(len(zoo_crowd))
        completions = []
        wide = {"instruction": row["instruction"]}
        for j in order:
            name = zoo_crowd.names[j]
            cell = dict(row[name])
            roll = rng.random()
            if roll < 0.1:
                wide[name] = None
                continue
            if roll < 0.2:
                cell[zoo_crowd.reward] = None
            wide[name] = cell
            completions.append({"model": name, "response": cell["content"], "score": cell[zoo_crowd.reward]})
        rows_long.append({"instruction": row["instruction"], "completions": completions})
        rows_wide.append(wide)
    return datasets.Dataset.from_list(rows_long), datasets.Dataset.from_list(rows_wide)


def test_long_layout_equals_wide(zoo_ds, zoo_crowd):
    long_ds, wide_ds = _long_from_wide(zoo_ds, zoo_crowd)
    long_crowd = Crowd(zoo_crowd.members, reward="score", layout="long", column="completions")
    expected = _columns(score(wide_ds, crowd=zoo_crowd))
    assert min(expected["crowd_n_scored"]) < 15  # the construction really removed rewards
    _same(expected, _columns(score(long_ds, crowd=long_crowd)))
    _same(expected, _columns(long_ds.map(CrowdScore(crowd=long_crowd), batched=True, batch_size=7)))
    _same(expected, _columns(long_ds.map(CrowdScore(crowd=long_crowd))))
    # inferred: members from the data, families from names; difficulty does not depend on them
    inferred = score(long_ds)
    assert inferred["crowd_difficulty"] == pytest.approx(expected["crowd_difficulty"], nan_ok=True)


def test_duplicate_model_in_a_long_row_is_an_error():
    ds = datasets.Dataset.from_list(
        [{"instruction": "x", "completions": [{"model": "a-1b", "content": "r", "s": 1.0}, {"model": "a-1b", "content": "q", "s": 2.0}]}]
    )
    with pytest.raises(CrowdError, match="a row lists model .a-1b. more than once"):
        score(ds)
    with pytest.raises(CrowdError, match="lists model 'a-1b' more than once"):
        ds.map(CrowdScore())


_FINGERPRINT_SCRIPT = """
import sys
from datasets.fingerprint import Hasher
import crowdselect_hf as cs
crowd = cs.Crowd.from_file(sys.argv[1], reward="weighted_alpaca_eval_gpt4_turbo")
f = cs.CrowdScore(crowd=crowd)
f({"instruction": "warm the instance up", **{m: {"content": "", "weighted_alpaca_eval_gpt4_turbo": 0.5} for m in crowd.names}})
print(Hasher.hash(f), Hasher.hash(cs.crowd_score), Hasher.hash(cs.CrowdScore(crowd=crowd, reward="other")))
"""


@pytest.mark.slow
def test_fingerprint_is_identical_across_processes_and_follows_the_config(zoo_dir):
    runs = [
        subprocess.run([sys.executable, "-c", _FINGERPRINT_SCRIPT, str(zoo_dir / "models.json")],
                       capture_output=True, text=True, check=True).stdout.split()
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    configured, ready, other_reward = runs[0]
    assert len({configured, ready, other_reward}) == 3


def test_map_fingerprint_in_process_matches_hasher(zoo_ds, zoo_crowd):
    from datasets.fingerprint import Hasher

    f = CrowdScore(crowd=zoo_crowd)
    before = Hasher.hash(f)
    zoo_ds.select(range(5)).map(f)  # using it must not change its fingerprint
    assert Hasher.hash(f) == before


# -- bad input ----------------------------------------------------------------------------------

def _tiny(rows):
    return datasets.Dataset.from_list(rows)


def test_empty_dataset(zoo_ds):
    with pytest.raises(CrowdError, match="the dataset is empty"):
        score(zoo_ds.select([]))


def test_missing_member_and_reward(zoo_ds, zoo_crowd):
    with pytest.raises(CrowdError, match=r"crowd member\(s\) \['vicuna-33b'\] have no column"):
        score(zoo_ds, crowd=Crowd(members=(*zoo_crowd.members, ("vicuna-33b", "vicuna", 33)), reward=zoo_crowd.reward))
    with pytest.raises(CrowdError, match="reward field 'nope' is not a field of every crowd member"):
        score(zoo_ds, reward="nope")
    with pytest.raises(CrowdError, match="column 'vicuna-7b' has no reward field 'nope'"):
        zoo_ds.select(range(2)).map(CrowdScore(crowd=zoo_crowd, reward="nope"))


def test_non_numeric_reward():
    rows = [{"instruction": "x", "a-1b": {"content": "r", "s": "high"}, "a-7b": {"content": "q", "s": "low"}}]
    crowd = Crowd(members=(("a-1b", "a", 1), ("a-7b", "a", 7)), reward="s")
    with pytest.raises(CrowdError, match=r"reward 's' of column 'a-1b' must be a number, found str"):
        score(_tiny(rows), crowd=crowd)
    with pytest.raises(CrowdError, match=r"reward 's' of column 'a-1b' must be a number, found str"):
        _tiny(rows).map(CrowdScore(crowd=crowd))


def test_no_recognisable_crowd_and_no_instruction():
    with pytest.raises(CrowdError, match="no crowd found"):
        score(_tiny([{"instruction": "x", "output": "y"}]))
    with pytest.raises(CrowdError, match="no instruction column found"):
        _tiny([{"text": "x", "a-1b": {"content": "r", "s": 1.0}}]).map(crowd_score)


def test_iterable_dataset_is_refused_by_score_with_the_alternative(zoo_ds):
    with pytest.raises(TypeError, match="use ds.map\\(crowd_score, batched=True\\)"):
        score(zoo_ds.to_iterable_dataset())


# -- policies: counted, logged once, available ------------------------------------------------

def _with_gaps(zoo_ds, zoo_crowd):
    def knock_out(row, idx):
        if idx % 10 == 0:
            row["vicuna-7b"] = {**row["vicuna-7b"], zoo_crowd.reward: None}
        if idx % 50 == 0:
            row["vicuna-13b"] = {**row["vicuna-13b"], zoo_crowd.reward: float("nan")}
        if idx == 3:
            for m in zoo_crowd.names:
                row[m] = {**row[m], zoo_crowd.reward: None}
        return row

    return zoo_ds.select(range(100)).map(knock_out, with_indices=True)


def test_policy_counts_are_logged_once_and_available(zoo_ds, zoo_crowd, caplog):
    gappy = _with_gaps(zoo_ds, zoo_crowd)
    with caplog.at_level(logging.INFO, logger="crowdselect_hf"):
        out = score(gappy, crowd=zoo_crowd)
    ours = [r for r in caplog.records if r.name.startswith("crowdselect_hf")]
    # Documented policies are expected, not a problem to act on: one INFO line, no WARNING.
    assert len(ours) == 1 and ours[0].levelno == logging.INFO and "1 rows no usable reward" in ours[0].getMessage()
    counts = crowd_report(gappy, crowd=zoo_crowd)
    assert counts.rows == 100 and counts.rows_no_usable_reward == 1
    # rows 0, 10, …, 90 lose vicuna-7b; rows 0 and 50 also vicuna-13b; row 3 loses all 15
    assert counts.rewards_unusable == 10 + 2 + 15
    assert counts.rows_partially_scored == 10
    # vicuna-v1.1 has < 2 usable members in rows 0, 10, …, 90 (row 3 has no reward at all)
    assert counts.family_rows_too_few == 10
    assert math.isnan(out[3]["crowd_difficulty"]) and out[3]["crowd_best_model"] is None

    caplog.clear()
    f = CrowdScore(crowd=zoo_crowd)
    with caplog.at_level(logging.INFO, logger="crowdselect_hf"):
        mapped = gappy.map(f, load_from_cache_file=False)
    ours = [r for r in caplog.records if r.name.startswith("crowdselect_hf")]
    assert len(ours) == 1 and ours[0].levelno == logging.INFO  # once per transform, not per batch
    assert f.counts_ == counts
    _same(_columns(out), _columns(mapped))
