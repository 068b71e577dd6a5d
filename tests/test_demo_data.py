"""The packaged demo pool: reproducible from its generator, scoreable, and holding the policy
cases its documentation promises."""

import importlib.util
import math
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect_hf import Crowd, parse_model_name, score
from crowdselect_hf.demo_data import DEMO_REWARD, demo_crowd, demo_pool

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = resources.files("crowdselect_hf").joinpath("data/demo_pool.parquet")
DOC = resources.files("crowdselect_hf").joinpath("data/demo_pool.md")


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("make_demo_pool", ROOT / "dataset_scripts" / "make_demo_pool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table():
    with resources.as_file(PACKAGED) as path:
        return pq.read_table(path)


@pytest.fixture(scope="module")
def scored():
    return score(demo_pool(), crowd=demo_crowd())


def _rewards(table: pa.Table, crowd: Crowd) -> np.ndarray:
    cols = []
    for name in crowd.names:
        cols.append([np.nan if v is None else v for v in table.column(name).combine_chunks().field(DEMO_REWARD).to_pylist()])
    return np.array(cols, dtype=float).T


@pytest.mark.unit
def test_regenerating_gives_identical_table(generator, table, tmp_path):
    rebuilt = generator.build_table()
    assert rebuilt.schema.equals(table.schema)
    assert rebuilt.equals(table), "make_demo_pool.py no longer reproduces the packaged demo_pool.parquet; rebuild it"
    # Built and written twice from scratch, the files are byte-identical (same library versions).
    a = generator.write(rebuilt, tmp_path / "a.parquet").read_bytes()
    b = generator.write(generator.build_table(), tmp_path / "b.parquet").read_bytes()
    assert a == b
    assert not generator.build_table(seed=1, n_unique=50).equals(generator.build_table(seed=2, n_unique=50))


@pytest.mark.unit
def test_cli_writes_the_file(generator, tmp_path):
    out = tmp_path / "sub" / "pool.parquet"
    generator.main(["--out", str(out), "--rows", "40", "--seed", "7"])
    written = pq.read_table(out)
    assert written.num_rows == 40 + generator.POLICY_CASES["duplicate_instructions"]
    assert written.equals(generator.build_table(seed=7, n_unique=40))


@pytest.mark.unit
def test_small_and_wide_layout(table):
    with resources.as_file(PACKAGED) as path:
        assert path.stat().st_size <= 600 * 1024
    assert table.column_names[:2] == ["uuid", "instruction"]
    models = table.column_names[2:]
    assert len(models) >= 9
    for name in models:
        t = table.schema.field(name).type
        assert pa.types.is_struct(t)
        assert {t.field(i).name: t.field(i).type for i in range(t.num_fields)} == {"content": pa.string(), DEMO_REWARD: pa.float64()}
    assert 600 <= table.num_rows <= 1500
    assert len(set(table.column("uuid").to_pylist())) == table.num_rows


@pytest.mark.unit
def test_family_and_size_parsing(table):
    crowd = demo_crowd()
    assert crowd.names == table.column_names[2:]
    assert crowd.reward == DEMO_REWARD
    families = crowd.families
    assert 3 <= len(families) <= 4
    assert all(2 <= len(ms) <= 4 for ms in families.values())
    for m in crowd:
        number = re.search(r"-(\d+(?:\.\d+)?)B-", m.name)
        assert number, m.name
        assert m.params_b == float(number.group(1))
        assert m.family == parse_model_name(m.name)[0]
        assert m.family == m.name.replace(f"-{number.group(1)}B", "").lower()
    # Inference from the features alone finds the same crowd.
    inferred = Crowd.infer(demo_pool())
    assert inferred.reward == DEMO_REWARD
    assert {(m.name, m.family, m.params_b) for m in inferred} == {(m.name, m.family, m.params_b) for m in crowd}


@pytest.mark.unit
def test_score_works_and_metrics_vary(table, scored):
    crowd = demo_crowd()
    assert len(scored) == table.num_rows
    R = _rewards(table, crowd)
    diff = np.array(scored["crowd_difficulty"], dtype=float)
    usable = np.isfinite(R).any(axis=1)
    np.testing.assert_allclose(diff[usable], -np.nanmean(R[usable], axis=1), rtol=1e-12)
    assert np.isnan(diff[~usable]).all()
    stab = np.array(scored["crowd_stability"], dtype=float)
    assert (stab > 0).sum() > (stab < 0).sum() > 0.05 * len(stab), "stability should be mostly, not always, positive"
    assert np.nanstd(np.array(scored["crowd_separability"], dtype=float)) > 0
    # Reward-model-like scale and bigger-is-better on average inside every family.
    assert np.nanmin(R) < -5 and np.nanmax(R) > 15
    mean_by_model = dict(zip(crowd.names, np.nanmean(R, axis=0)))
    for members in crowd.families.values():
        assert mean_by_model[members[-1]] > mean_by_model[members[0]]
    best = Counter(scored["crowd_best_model"])
    assert len(best) >= 10, "many members should win some rows"


def _documented_cases() -> dict[str, int]:
    rows = re.findall(r"^\| ([a-z ]+) \| (\d+) \|", DOC.read_text(encoding="utf-8"), flags=re.M)
    return {name.strip().replace(" ", "_"): int(count) for name, count in rows}


@pytest.mark.unit
def test_documented_policy_cases_are_present(generator, table, scored):
    documented = _documented_cases()
    assert documented == generator.POLICY_CASES
    crowd = demo_crowd()
    R = _rewards(table, crowd)
    contents = np.array([table.column(n).combine_chunks().field("content").to_pylist() for n in crowd.names], dtype=object).T

    assert int((contents == "").sum()) == documented["empty_responses"]
    all_missing = np.isnan(R).all(axis=1)
    assert int(all_missing.sum()) == documented["rows_without_reward"]
    assert int(np.isnan(R[~all_missing]).sum()) == documented["missing_rewards"]
    dune = [crowd.names.index(n) for n in crowd.families["dune-it"]]
    tied = np.isfinite(R[:, dune]).all(axis=1) & (R[:, dune] == R[:, dune[:1]]).all(axis=1)
    assert int(tied.sum()) == documented["tied_family_rows"]
    counts = Counter(table.column("instruction").to_pylist())
    assert sorted(counts.values())[-documented["duplicate_instructions"] - 1 :] == [1] + [2] * documented["duplicate_instructions"]

    # And score() applies the matching policies.
    n_families = np.array(scored["crowd_n_families"])
    assert (n_families[tied] == len(crowd.families) - 1).all()
    assert [scored["crowd_best_model"][i] for i in np.flatnonzero(all_missing)] == [None] * documented["rows_without_reward"]
    ids = Counter(scored["crowd_id"])
    assert sum(v == 2 for v in ids.values()) == documented["duplicate_instructions"]
    stab = np.array(scored["crowd_stability"], dtype=float)
    assert all(math.isnan(stab[i]) for i in np.flatnonzero(all_missing))
