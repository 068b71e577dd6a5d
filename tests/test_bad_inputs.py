"""Hostile and edge-case values: each gets a clear error or a documented, tested policy.

One regression test per case of the adversarial pass (named for it), then a hypothesis test that
throws random bad tables at the whole library path and checks that every call either succeeds
under the documented policy or raises a ``ValueError``/``TypeError`` (``CrowdError``,
``SelectionError`` and ``HubError`` are ``ValueError``s) with a message, and never changes its
input. ``tests/README.md`` tables the cases.
"""

import hashlib
import json
import logging
import math
from fractions import Fraction

import datasets
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import crowdselect_hf as cs
from crowdselect_hf.metrics import crowd_metrics
from crowdselect_hf.model_names import parse_model_name


def _table_hash(ds: datasets.Dataset) -> str:
    """The bytes of every column of ``ds``'s Arrow table (and its indices mapping)."""
    h = hashlib.sha256()
    for table in (ds.data.table, getattr(ds, "_indices", None) and ds._indices.table):
        if table is None:
            continue
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def _wide(rewards: dict[str, list], instructions: list[str], reward: str = "r") -> datasets.Dataset:
    """A wide crowd table: one ``{content, <reward>}`` struct column per member."""
    cols = {"instruction": instructions}
    for name, values in rewards.items():
        cols[name] = [{"content": f"answer of {name} to row {i}", reward: v} for i, v in enumerate(values)]
    return datasets.Dataset.from_dict(cols)


CROWD3 = cs.Crowd([cs.Member("fam-1b", "fam", 1), cs.Member("fam-7b", "fam", 7), cs.Member("fam-70b", "fam", 70)], reward="r")


# -- values: overflow-safe metrics ---------------------------------------------------------------------

def _exact_mean_var(row):
    """Mean and population variance of the finite values of ``row``, exactly (fractions), then
    rounded once to float64 (``inf`` where the true value exceeds float64)."""
    xs = [Fraction(x) for x in row if math.isfinite(x)]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / len(xs)

    def to_float(q):
        try:
            return float(q)
        except OverflowError:
            return math.inf if q > 0 else -math.inf

    return to_float(mean), to_float(var)


EXTREME_ROWS = [
    [1e308, 1e308, 1e308],
    [1e308, -1e308, 0.0],
    [-1.7976931348623157e308, -1.7976931348623157e308, 1.0],
    [1.7e308, 1.7e308, 1.6e308],
    [1e154, -1e154, 0.0],
    [5e-324, 1e-320, 0.0],
    [2.2250738585072014e-308, 5e-324, -5e-324],
    [1e308, np.nan, 1e308],
    [0.1, 0.2, 0.3],
]


def test_rewards_near_float_max_and_subnormal_never_overflow_where_the_value_fits():
    m = crowd_metrics(np.array(EXTREME_ROWS), ["fam"] * 3, [1, 7, 70])
    for row, difficulty, separability in zip(EXTREME_ROWS, m.difficulty, m.separability):
        mean, var = _exact_mean_var(row)
        assert math.isfinite(difficulty), row  # the mean of finite rewards always fits
        assert difficulty == pytest.approx(-mean, rel=1e-15, abs=0), row
        if math.isinf(var):
            assert separability == math.inf, row
        else:
            assert separability == pytest.approx(var, rel=1e-14, abs=1e-320), row
    # the rows whose true variance exceeds float64 are counted, and the summary says so
    overflowing = sum(math.isinf(_exact_mean_var(r)[1]) for r in EXTREME_ROWS)
    assert overflowing == 3
    assert m.counts.rows_separability_overflow == overflowing
    assert f"{overflowing} rows separability overflow" in m.counts.describe()


def test_ordinary_rewards_keep_their_exact_bits():
    """The scaling is by powers of two: ordinary values give the bits of the plain formula."""
    rng = np.random.default_rng(7)
    R = rng.normal(size=(500, 6)) * 10.0 ** rng.integers(-3, 4, size=(500, 1))
    m = crowd_metrics(R, ["a"] * 6, np.arange(1, 7.0))
    plain_mean = np.zeros(500)
    for j in range(6):
        plain_mean += R[:, j]
    plain_mean /= 6
    plain_var = np.zeros(500)
    for j in range(6):
        plain_var += (R[:, j] - plain_mean) ** 2
    plain_var /= 6
    assert np.array_equal(m.difficulty, -plain_mean)
    assert np.array_equal(m.separability, plain_var)


def test_rewards_of_1e308_through_score_and_select():
    ds = _wide({"fam-1b": [1e308, 1.0, 2.0, 1e308], "fam-7b": [1e308, 2.0, 3.0, -1e308], "fam-70b": [1e308, 3.0, 1.0, 0.0]},
               ["a", "b", "c", "d"])
    scored = cs.score(ds, crowd=CROWD3)
    assert scored["crowd_difficulty"][0] == -1e308
    assert scored["crowd_separability"][0] == 0.0
    assert scored["crowd_separability"][3] == math.inf
    sel = cs.crowd_select(scored, k=2, n_clusters=1, embeddings=np.eye(4))
    assert len(sel.indices) == 2
    # the pool table's per-member summary stays finite (JSON) where a plain mean or median overflows
    from crowdselect_hf.record import read_pool_metadata

    summaries = read_pool_metadata(sel.pool_table().schema.metadata).member_rewards
    fam_1b = next(m for m in summaries if m.name == "fam-1b")
    assert fam_1b.pool.mean == pytest.approx(float((Fraction(1e308) * 2 + 3) / 4), rel=1e-15)
    assert fam_1b.pool.median == pytest.approx(float((Fraction(1e308) + 2) / 2), rel=1e-15)


# -- values: crowd files and model names -----------------------------------------------------------------

def test_params_b_null_in_a_crowd_file_means_unknown(tmp_path):
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps([{"name": "Qwen2-7B-Instruct", "family": "qwen2", "params_b": None},
                                {"name": "Qwen2-72B-Instruct", "family": "qwen2"}]))
    crowd = cs.Crowd.from_file(path, reward="r")
    sizes = {m.name: m.params_b for m in crowd.members}
    assert math.isnan(sizes["Qwen2-7B-Instruct"])  # the file said unknown: no guess from the name
    assert sizes["Qwen2-72B-Instruct"] == 72.0  # absent: read from the name


@pytest.mark.parametrize("size", [0, -5, float("inf"), True])
def test_params_b_zero_negative_or_infinite_is_an_error(tmp_path, size):
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps([{"name": "m-1b", "family": "m", "params_b": size}]).replace("Infinity", "1e999"))
    with pytest.raises(cs.CrowdError, match="params_b must be a positive number"):
        cs.Crowd.from_file(path, reward="r")


def test_mixture_of_experts_sizes_are_the_published_totals_or_unknown():
    assert parse_model_name("Mixtral-8x7B-Instruct-v0.1") == ("mixtral-instruct-v0.1", 46.7)
    assert parse_model_name("mistralai/Mixtral-8x22B-v0.1")[1] == 141.0
    family, size = parse_model_name("SomeMoE-4x2B-chat")
    assert family == "somemoe-chat" and math.isnan(size)  # not 8B of dense compute


def test_serving_provider_suffix_is_not_a_family():
    assert parse_model_name("Meta-Llama-3.1-405B-Instruct@hyperbolic") == parse_model_name("Meta-Llama-3.1-405B-Instruct")
    assert parse_model_name("gemma-2-27b-it@together") == ("gemma-2-it", 27.0)


def test_members_with_guessed_family_or_size_are_logged_once(gsm_ds, caplog):
    with caplog.at_level(logging.INFO, logger="crowdselect_hf"):
        cs.score(gsm_ds.select(range(20)))
    lines = [r.getMessage() for r in caplog.records if "read from the model names" in r.getMessage()]
    assert len(lines) == 1
    assert "16 member(s)" in lines[0] and "command-r (command-r, size unknown)" in lines[0]
    assert "gemma-2-27b-it@together (gemma-2-it, 27B)" in lines[0]


def test_gsm_families_from_names_match_the_crowd_file_except_where_the_names_cannot_tell(gsm_ds, gsm_crowd):
    """With @provider stripped and MoE totals known, name parsing agrees with the shipped
    models.json on every size it can read (the file's families are its own labels)."""
    for member in gsm_crowd.members:
        family, size = parse_model_name(member.name)
        assert "@" not in family
        if not math.isnan(size):
            assert size == member.params_b, member
    unknown = sorted(m.name for m in gsm_crowd.members if math.isnan(parse_model_name(m.name)[1]))
    assert unknown == ["command-r", "command-r-plus"]


# -- reserved names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["content", "Response", "error", "model", "crowd_difficulty"])
def test_reward_name_that_would_overwrite_answers_is_refused(gsm_ds, name):
    before = _table_hash(gsm_ds)
    with pytest.raises(cs.CrowdError, match="reserved"):
        cs.reward_dataset(gsm_ds, "any/reward-model", reward_name=name)
    assert _table_hash(gsm_ds) == before


# -- position-safe filtering -----------------------------------------------------------------------------

def test_filter_with_indices_on_a_shuffled_view_is_refused(gsm_scored):
    sel = cs.crowd_select(gsm_scored, k=30, n_clusters=3)
    assert gsm_scored.filter(sel, with_indices=True)["crowd_id"] == [gsm_scored["crowd_id"][i] for i in sel.indices]
    shuffled = gsm_scored.shuffle(seed=1)
    for batched in (False, True):
        with pytest.raises(cs.SelectionError, match="shuffled, sorted or is another table"):
            shuffled.filter(sel, with_indices=True, batched=batched)
    # by id, the same shuffled view gets exactly the selected rows
    assert sorted(shuffled.filter(sel)["crowd_id"]) == sorted(sel.ids)


# -- metric columns and parameters -----------------------------------------------------------------------

def test_a_metric_column_of_strings_is_a_clear_error(gsm_scored):
    bad = gsm_scored.remove_columns("crowd_difficulty").add_column("crowd_difficulty", ["x"] * len(gsm_scored))
    with pytest.raises(cs.SelectionError, match="'crowd_difficulty' must hold numbers, found string"):
        cs.crowd_select(bad, k=5)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_a_seed_out_of_range_is_a_clear_error(gsm_scored, seed):
    with pytest.raises(cs.SelectionError, match="seed must be a whole number from 0"):
        cs.crowd_select(gsm_scored, k=5, seed=seed)


def test_numpy_formatted_dataset_maps_to_the_same_metrics(gsm_ds, gsm_crowd):
    reference = cs.score(gsm_ds, crowd=gsm_crowd)
    scorer = cs.CrowdScore(crowd=gsm_crowd)
    for batched in (True, False):
        mapped = gsm_ds.with_format("numpy").map(scorer, batched=batched).with_format(None)
        for column in ("crowd_difficulty", "crowd_separability", "crowd_stability", "crowd_best_bytes"):
            assert np.array_equal(np.array(mapped[column], dtype=float), np.array(reference[column], dtype=float),
                                  equal_nan=True), column
        assert mapped["crowd_best_model"] == reference["crowd_best_model"]


def test_torch_formatted_dataset_in_map_is_a_clear_error(gsm_ds, gsm_crowd):
    pytest.importorskip("torch")
    with pytest.raises(cs.CrowdError, match=r"with_format\(None\)"):
        gsm_ds.select(range(4)).with_format("torch").map(cs.CrowdScore(crowd=gsm_crowd), batched=True)


def test_a_missing_model_folder_is_a_clear_error(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        cs.RewardScorer(str(tmp_path / "no-such-model")).load()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        cs.RewardScorer(str(tmp_path)).load()


def test_selecting_a_table_scored_with_a_crowd_file_needs_no_crowd_again(gsm_ds, gsm_crowd, tmp_path):
    """The recorded families and sizes define the crowd: re-inferring them from the names (which
    cannot tell command-r's size) must not contradict the record."""
    from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate

    scored = cs.score(gsm_ds, crowd=gsm_crowd)
    done = curate(scored, SelectionConfig(k=20, n_clusters=2), OutputConfig(out=str(tmp_path), report=False))
    record = json.loads((tmp_path / done.config_name / "_crowdselect" / "selection.json").read_text())
    assert done.rows == 20
    assert "command-r" in json.dumps(record)


# -- random bad tables through the whole path ------------------------------------------------------------

REWARD_VALUES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 0.0]),
)
# Mostly valid columns, so that most examples travel the whole path; every bad kind still shows.
COLUMN_KINDS = st.sampled_from(["float"] * 6 + ["int"] * 2 + ["null", "str", "bool", "missing-member"])
INSTRUCTIONS = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["", "same", "same", " "]))


@st.composite
def bad_tables(draw):
    n = draw(st.integers(1, 8))
    instructions = [draw(INSTRUCTIONS) for _ in range(n)]
    rewards, kinds = {}, {}
    for name in ("fam-1b", "fam-7b", "fam-70b"):
        kind = draw(COLUMN_KINDS)
        kinds[name] = kind
        if kind == "missing-member":
            continue
        if kind == "float":
            values = [draw(REWARD_VALUES) for _ in range(n)]
        elif kind == "int":
            values = [draw(st.one_of(st.none(), st.integers(-2**62, 2**62))) for _ in range(n)]
        elif kind == "str":
            values = [draw(st.one_of(st.none(), st.text(max_size=3))) for _ in range(n)]
        elif kind == "bool":
            values = [draw(st.one_of(st.none(), st.booleans())) for _ in range(n)]
        else:
            values = [None] * n
        rewards[name] = values
    if not rewards:
        rewards["fam-1b"] = [1.0] * n
        kinds["fam-1b"] = "float"
    return _wide(rewards, instructions), rewards, kinds


ALLOWED = (ValueError, TypeError)


def _finite_count(values) -> int:
    return sum(1 for v in values if v is not None and not isinstance(v, (bool, str)) and math.isfinite(float(v)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(table=bad_tables(), k=st.sampled_from([1, 1, 2, 2, 3, 3, 4, -1, 0, 100]),
       n_clusters=st.sampled_from([1, 1, 1, 2, 2, 3, 0]),
       weights=st.sampled_from([(1, 1, 2)] * 9 + [(0, 0, 0), (1, -1, 2), (1, float("nan"), 1), (1, 1)]))
def test_random_bad_tables_get_a_policy_or_a_clear_error(tmp_path_factory, table, k, n_clusters, weights):
    ds, rewards, kinds = table
    before = _table_hash(ds)
    crowd = CROWD3.with_reward("r")
    try:
        scored = cs.score(ds, crowd=crowd)
    except ALLOWED as e:
        assert str(e).strip()
        # the only refusals at this step: a member column that is text or booleans, an empty
        # instruction, or a crowd member the table lacks
        assert any(kind in ("str", "bool", "missing-member") for kind in kinds.values()) or "instruction" in str(e), e
        assert _table_hash(ds) == before
        event("score refused: " + str(e)[:60])
        return
    assert _table_hash(ds) == before
    # documented policy: non-finite or missing rewards are left out, a row without any is NaN
    n_scored = scored["crowd_n_scored"]
    for row in range(len(ds)):
        expected = sum(_finite_count([rewards[name][row]]) for name in rewards)
        assert n_scored[row] == expected
        assert math.isnan(scored["crowd_difficulty"][row]) == (expected == 0)
    scored_hash = _table_hash(scored)
    try:
        sel = cs.crowd_select(scored, k=k, n_clusters=n_clusters, weights=weights, embeddings=np.eye(len(ds), 4) + 1e-3)
    except ALLOWED as e:
        assert str(e).strip()
        assert _table_hash(scored) == scored_hash
        event("crowd_select refused: " + str(e)[:60])
        return
    assert len(sel.indices) == k and all(math.isfinite(scored["crowd_difficulty"][i]) for i in sel.indices)
    picked = scored.select(sel.indices)
    try:
        sft = cs.to_sft(picked, crowd=crowd)
    except ALLOWED as e:
        assert str(e).strip()
        event("to_sft refused")
        return
    folder = tmp_path_factory.mktemp("bad-input-save")
    try:
        cs.save_local(sft, folder, "cfg", selection=sel, crowd=crowd)
    except ALLOWED as e:
        assert str(e).strip() and len(sft) == 0
        event("save_local refused: " + str(e)[:60])
        return
    loaded = cs.load_selected(str(folder), "cfg")
    assert loaded["crowd_id"] == sft["crowd_id"]
    assert _table_hash(scored) == scored_hash
    event("saved and loaded")


def test_metrics_of_an_older_method_version_are_recomputed_by_the_pipeline(gsm_ds, gsm_crowd, tmp_path):
    """A table scored by an earlier release (metrics version 2) is re-scored with its recorded
    crowd by ``curate`` (the CLI's path), not refused, and the fresh provenance is current."""
    from dataclasses import replace

    from crowdselect_hf.metrics import ALGORITHM_VERSION
    from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate, ensure_scored
    from crowdselect_hf.provenance import read_provenance

    scored = cs.score(gsm_ds, crowd=gsm_crowd)
    old = replace(read_provenance(scored), method="2")
    features = scored.features.copy()
    features["crowd_id"] = datasets.Value("string", id=old.to_text())
    stale = scored.cast(features)
    assert read_provenance(stale).method == "2"
    with pytest.raises(cs.SelectionError, match="metrics version 2"):
        cs.crowd_select(stale, k=5, crowd=gsm_crowd)
    fresh = ensure_scored(stale)
    assert read_provenance(fresh).method == ALGORITHM_VERSION
    assert read_provenance(fresh).members == read_provenance(scored).members  # the recorded crowd, not names
    done = curate(stale, SelectionConfig(k=10, n_clusters=2), OutputConfig(out=str(tmp_path), report=False))
    assert done.rows == 10
