import hashlib
import json
import logging
import math
import os
import subprocess
import sys

import datasets
import numpy as np
import pyarrow.parquet as pq
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
def five_paths(real_table):
    ds, crowd = real_table.ds, real_table.crowd
    f = CrowdScore(crowd=crowd)
    iterable = ds.to_iterable_dataset(num_shards=4).map(f)
    return {
        "score": _columns(score(ds, crowd=crowd)),
        "per-example": _columns(ds.map(f, load_from_cache_file=False)),
        "batched": _columns(ds.map(f, batched=True, batch_size=100, load_from_cache_file=False)),
        "num_proc=2": _columns(ds.map(f, num_proc=2, load_from_cache_file=False)),
        "iterable": {c: [row[c] for row in iterable] for c in COLUMNS},
    }


@pytest.mark.slow
def test_every_path_equals_an_independent_scipy_computation(five_paths, real_table):
    crowd = real_table.crowd
    names = crowd.names
    families = [m.family for m in crowd]
    sizes = [m.params_b for m in crowd]
    reward = crowd.reward
    rows = real_table.ds.select_columns(names + ["instruction"]).to_list()  # decoded independently of our code
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


def test_arrow_formatted_batches_agree(real_table):
    out = real_table.ds.with_format("arrow").map(CrowdScore(crowd=real_table.crowd), batched=True, batch_size=128)
    _same(_columns(real_table.scored), _columns(out.with_format(None)))


def test_inferred_crowd_gives_the_same_difficulty_and_separability(real_table):
    # Names alone may group members differently from models.json (AlpacaEval: FuseChat 3.1 and
    # 3.2; GSM8K: command-r and command-r-plus), so stability may differ, but everything that
    # does not depend on families must not.
    inferred = score(real_table.ds)
    for c in ("crowd_id", "crowd_difficulty", "crowd_separability", "crowd_best_model", "crowd_n_scored"):
        assert inferred[c] == real_table.scored[c]


def test_score_attaches_columns_without_rewriting_the_input(real_table):
    ds, crowd = real_table.ds, real_table.crowd
    out = score(ds, crowd=crowd)
    original = ds.data.table.column(crowd.names[0]).chunk(0)
    attached = out.data.table.column(crowd.names[0]).chunk(0)
    # Same memory-mapped buffers: nothing was copied or rewritten.
    assert [b.address for b in original.buffers() if b] == [b.address for b in attached.buffers() if b]
    files = [f["filename"] for f in out.cache_files]
    assert ds.cache_files[0]["filename"] in files
    new = [f for f in files if f not in {c["filename"] for c in ds.cache_files}]
    assert len(new) == 1 and os.path.getsize(new[0]) < 200_000
    assert out.column_names == ds.column_names + list(COLUMNS)


def test_score_reuses_its_cache_and_replaces_old_columns(real_table):
    ds, crowd = real_table.ds, real_table.crowd
    first = score(ds, crowd=crowd)
    again = score(ds, crowd=crowd)
    assert first._fingerprint == again._fingerprint
    _same(_columns(first), _columns(again))
    rescored = score(first, crowd=crowd)
    assert rescored.column_names.count("crowd_difficulty") == 1
    _same(_columns(first), _columns(rescored))
    assert score(ds, crowd=Crowd(crowd.members[:4], reward=crowd.reward))._fingerprint != first._fingerprint


def test_score_keeps_an_indices_mapping(real_table):
    view = real_table.ds.shuffle(seed=3).select(range(50))
    out = score(view, crowd=real_table.crowd)
    assert out._indices is not None and len(out) == 50
    expected = real_table.scored.shuffle(seed=3).select(range(50))
    _same(_columns(expected), _columns(out))


def test_score_keeps_the_format(gsm_ds, gsm_crowd):
    out = score(gsm_ds.with_format("numpy"), crowd=gsm_crowd)
    assert out.format["type"] == "numpy"
    assert isinstance(out[:3]["crowd_difficulty"], np.ndarray)


def _long_from_wide(ds, crowd, n=60, seed=0):
    """UltraFeedback-like layout: members shuffled per row, some missing, some rewards None."""
    rng = np.random.default_rng(seed)
    rows_long, rows_wide = [], []
    for row in ds.select(range(n)).to_list():
        order = rng.permutation(len(crowd))
        completions = []
        wide = {"instruction": row["instruction"]}
        for j in order:
            name = crowd.names[j]
            cell = dict(row[name])
            roll = rng.random()
            if roll < 0.1:
                wide[name] = None
                continue
            if roll < 0.2:
                cell[crowd.reward] = None
            wide[name] = cell
            completions.append({"model": name, "response": cell["content"], "score": cell[crowd.reward]})
        rows_long.append({"instruction": row["instruction"], "completions": completions})
        rows_wide.append(wide)
    return datasets.Dataset.from_list(rows_long), datasets.Dataset.from_list(rows_wide)


def test_long_layout_equals_wide(real_table):
    crowd = real_table.crowd
    long_ds, wide_ds = _long_from_wide(real_table.ds, crowd)
    long_crowd = Crowd(crowd.members, reward="score", layout="long", column="completions")
    expected = _columns(score(wide_ds, crowd=crowd))
    assert min(expected["crowd_n_scored"]) < len(crowd)  # the construction really removed rewards
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
crowd = cs.Crowd.from_file(sys.argv[1], reward=sys.argv[2])
f = cs.CrowdScore(crowd=crowd)
f({"instruction": "warm the instance up", **{m: {"content": "", crowd.reward: 0.5} for m in crowd.names}})
print(Hasher.hash(f), Hasher.hash(cs.crowd_score), Hasher.hash(cs.CrowdScore(crowd=crowd, reward="other")))
"""


@pytest.mark.slow
def test_fingerprint_is_identical_across_processes_and_follows_the_config(gsm_dir, gsm_crowd):
    runs = [
        subprocess.run([sys.executable, "-c", _FINGERPRINT_SCRIPT, str(gsm_dir / "models.json"), gsm_crowd.reward],
                       capture_output=True, text=True, check=True).stdout.split()
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    configured, ready, other_reward = runs[0]
    assert len({configured, ready, other_reward}) == 3


def test_map_fingerprint_in_process_matches_hasher(gsm_ds, gsm_crowd):
    from datasets.fingerprint import Hasher

    f = CrowdScore(crowd=gsm_crowd)
    before = Hasher.hash(f)
    gsm_ds.select(range(5)).map(f)  # using it must not change its fingerprint
    assert Hasher.hash(f) == before


# -- bad input ----------------------------------------------------------------------------------

def _tiny(rows):
    return datasets.Dataset.from_list(rows)


def test_empty_dataset(gsm_ds):
    with pytest.raises(CrowdError, match="the dataset is empty"):
        score(gsm_ds.select([]))


def test_missing_member_and_reward(gsm_ds, gsm_crowd):
    ghost = ("Qwen2-1.5B-Instruct", "qwen2-instruct", 1.5)  # a Qwen2 size this table does not have
    with pytest.raises(CrowdError, match=r"crowd member\(s\) \['Qwen2-1\.5B-Instruct'\] have no column"):
        score(gsm_ds, crowd=Crowd(members=(*gsm_crowd.members, ghost), reward=gsm_crowd.reward))
    with pytest.raises(CrowdError, match="reward field 'nope' is not a field of every crowd member"):
        score(gsm_ds, reward="nope")
    with pytest.raises(CrowdError, match="column 'Qwen2-7B-Instruct' has no reward field 'nope'"):
        gsm_ds.select(range(2)).map(CrowdScore(crowd=gsm_crowd, reward="nope"))


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


def test_iterable_dataset_is_refused_by_score_with_the_alternative(gsm_ds):
    with pytest.raises(TypeError, match="use ds.map\\(crowd_score, batched=True\\)"):
        score(gsm_ds.to_iterable_dataset())


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


# -- the tie policies on a real 0/1 table (GSM8K: every reward is 0 or 1) ----------------------

def _gsm_matrix(gsm_dir):
    """(names, families, sizes, ``[rows, members]`` 0/1 matrix) read with pyarrow from the shipped
    files, without crowdselect_hf."""
    members = json.loads((gsm_dir / "models.json").read_text())
    names = [m["name"] for m in members]
    table = pq.read_table(gsm_dir / "zoo.parquet", columns=names)
    R = np.column_stack([table[n].combine_chunks().field("correct").to_numpy(zero_copy_only=False) for n in names])
    return names, [m["family"] for m in members], [float(m["params_b"]) for m in members], R.astype(float)


def _expected_policy_counts(R, families):
    """METHOD.md's stability policies, re-counted one (row, family) pair at a time."""
    usable = np.isfinite(R)
    too_few = tied = no_stability = 0
    multi = [[j for j, f in enumerate(families) if f == fam] for fam in dict.fromkeys(families)]
    multi = [js for js in multi if len(js) >= 2]
    for i in range(len(R)):
        if not usable[i].any():
            continue
        untied = 0
        for js in multi:
            vals = [R[i, j] for j in js if usable[i, j]]
            if len(vals) < 2:
                too_few += 1
            elif len(set(vals)) < 2:
                tied += 1
            else:
                untied += 1
        no_stability += untied == 0
    return too_few, tied, no_stability, len(dict.fromkeys(families)) - len(multi)


def test_zero_variance_and_tied_rows_follow_the_documented_policies(gsm_dir, gsm_ds, gsm_crowd, gsm_scored, caplog):
    names, families, sizes, R = _gsm_matrix(gsm_dir)
    assert set(np.unique(R)) == {0.0, 1.0}
    constant = np.flatnonzero(R.min(axis=1) == R.max(axis=1))  # every member right, or every member wrong
    assert {R[i, 0] for i in constant} == {0.0, 1.0}  # both kinds are in the table: the policies show
    got = {c: np.asarray(gsm_scored[c], dtype=float) for c in FLOAT_COLUMNS}
    # Zero variance: separability exactly 0, difficulty −(the common score), every family tied so
    # no stability (NaN, no family used), and the best answer is the member whose name sorts first.
    assert (got["crowd_separability"][constant] == 0).all()
    assert (got["crowd_separability"][np.setdiff1d(np.arange(len(R)), constant)] > 0).all()
    np.testing.assert_array_equal(got["crowd_difficulty"][constant], -R[constant, 0])
    assert np.isnan(got["crowd_stability"][constant]).all()
    assert (np.asarray(gsm_scored["crowd_n_families"])[constant] == 0).all()
    # Ties for the best answer, on every row: the lowest name among the members with the top score.
    expected_best = [min(n for n, r in zip(names, row) if r == row.max()) for row in R]
    assert gsm_scored["crowd_best_model"] == expected_best
    np.testing.assert_array_equal(got["crowd_best_reward"], R.max(axis=1))
    # Families whose members all scored alike are left out of stability; a row with none left has NaN.
    too_few, tied, no_stability, single = _expected_policy_counts(R, families)
    counts = crowd_report(gsm_ds, crowd=gsm_crowd)
    assert (counts.family_rows_too_few, counts.family_rows_tied, counts.rows_no_stability) == (too_few, tied, no_stability)
    assert counts.single_member_families == single and counts.rows_no_usable_reward == 0
    assert int(np.isnan(got["crowd_stability"]).sum()) == no_stability > len(constant)
    # Expected policies: one INFO line per run, never a WARNING.
    with caplog.at_level(logging.INFO, logger="crowdselect_hf"):
        score(gsm_ds.select(range(100)), crowd=gsm_crowd)
    ours = [r for r in caplog.records if r.name.startswith("crowdselect_hf")]
    assert len(ours) == 1 and ours[0].levelno == logging.INFO and "family rows tied" in ours[0].getMessage()


def test_gaps_on_a_tied_table_are_counted_against_a_recount(gsm_dir, gsm_ds, gsm_crowd):
    names, families, sizes, R = _gsm_matrix(gsm_dir)
    pair = next(fam for fam in dict.fromkeys(families) if families.count(fam) == 2)
    a, b = (n for n, f in zip(names, families) if f == pair)  # a two-member family

    def knock_out(row, idx):
        if idx % 10 == 0:
            row[a] = {**row[a], "correct": None}
        if idx % 50 == 0:
            row[b] = {**row[b], "correct": float("nan")}
        if idx == 3:
            for m in names:
                row[m] = {**row[m], "correct": None}
        return row

    gappy = gsm_ds.select(range(100)).map(knock_out, with_indices=True)
    Rg = R[:100].copy()
    Rg[::10, names.index(a)] = np.nan
    Rg[::50, names.index(b)] = np.nan
    Rg[3] = np.nan
    counts = crowd_report(gappy, crowd=gsm_crowd)
    too_few, tied, no_stability, _ = _expected_policy_counts(Rg, families)
    usable = np.isfinite(Rg)
    assert counts.rows_no_usable_reward == int((~usable.any(axis=1)).sum()) == 1
    assert counts.rewards_unusable == int((~usable).sum())
    assert counts.rows_partially_scored == int((usable.any(axis=1) & ~usable.all(axis=1)).sum())
    assert (counts.family_rows_too_few, counts.family_rows_tied, counts.rows_no_stability) == (too_few, tied, no_stability)
    out = score(gappy, crowd=gsm_crowd)
    expected = np.array([reference_row(list(r), families, sizes) for r in Rg], dtype=float)
    for j, c in enumerate(FLOAT_COLUMNS):
        np.testing.assert_allclose(np.asarray(out[c], dtype=float), expected[:, j], rtol=0, atol=1e-12, err_msg=c)
