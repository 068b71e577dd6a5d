import json
import math
import re

import datasets
import pyarrow as pa
import pytest

from crowdselect_hf import Crowd, CrowdError, Member, parse_model_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "name, family, size",
    [
        ("Qwen2.5-7B-Instruct", "qwen2.5-instruct", 7.0),
        ("Qwen2-1.5B-Instruct", "qwen2-instruct", 1.5),
        ("Meta-Llama-3.1-405B-Instruct", "meta-llama-3.1-instruct", 405.0),
        ("meta-llama/Meta-Llama-3-70B-Instruct", "meta-llama-3-instruct", 70.0),
        ("gemma-2-27b-it", "gemma-2-it", 27.0),
        ("Phi-3-mini-128k-instruct", "phi-3-128k-instruct", 3.8),
        ("Phi-3-medium-128k-instruct", "phi-3-128k-instruct", 14.0),
        ("Mixtral-8x7B-Instruct-v0.1", "mixtral-instruct-v0.1", 46.7),
        ("SmolLM2-360M-Instruct", "smollm2-instruct", 0.36),
        ("vicuna-13b-v1.5", "vicuna-v1.5", 13.0),
    ],
)
def test_family_and_size_from_names(name, family, size):
    got_family, got_size = parse_model_name(name)
    assert got_family == family
    assert got_size == pytest.approx(size)


def test_unknown_size_is_nan():
    family, size = parse_model_name("gpt-4o")
    assert family == "gpt-4o" and math.isnan(size)


def test_magpie_preset_matches_method():
    crowd = Crowd.preset("magpie-100k-generator-zoo")
    assert len(crowd) == 19 and crowd.reward == "Skywork-Reward-Llama-3.1-8B"
    assert {f: len(ms) for f, ms in crowd.families.items()} == {
        "gemma-2": 3, "llama-3": 2, "llama-3.1": 3, "phi-3": 3, "qwen2": 3, "qwen2.5": 5,
    }
    assert crowd["Phi-3-mini-128k-instruct"].params_b == 3.8
    assert crowd.families["qwen2.5"][0] == "Qwen2.5-3B-Instruct"
    with pytest.raises(CrowdError, match="unknown crowd preset 'nope'.*magpie-100k-generator-zoo"):
        Crowd.preset("nope")


def test_models_json_loads_as_is(real_table):
    raw = json.loads((real_table.dir / "models.json").read_text())
    crowd = real_table.crowd
    assert crowd.names == [m["name"] for m in raw]
    assert [m.family for m in crowd] == [m["family"] for m in raw]
    assert [m.params_b for m in crowd] == [float(m["params_b"]) for m in raw]
    assert crowd.reward == real_table.reward


def test_yaml_crowd_file_and_mapping_form(tmp_path):
    path = tmp_path / "crowd.yaml"
    path.write_text("reward: score\nmembers:\n  - {name: a-1b, family: a, params_b: 1}\n  - {name: a-7b}\n")
    crowd = Crowd.from_file(path)
    assert crowd.reward == "score"
    assert crowd["a-7b"] == Member("a-7b", "a", 7.0)


@pytest.mark.parametrize(
    "text, suffix, message",
    [
        ('[{"name": "a", ', ".json", r"not valid JSON: .* line 1"),
        ("members: [a, b\n", ".yaml", "not valid YAML"),
        ('{"models": []}', ".json", "must hold a non-empty list"),
        ('[{"family": "x"}]', ".json", r"entry 0: expected a mapping with a 'name'"),
        ('[{"name": "a", "params_b": "big"}]', ".json", "entry 0: member 'a': params_b must be a number"),
        ('[{"name": "a"}, {"name": "A"}]', ".json", "listed twice"),
    ],
)
def test_crowd_file_errors_say_what_and_where(tmp_path, text, suffix, message):
    path = tmp_path / f"crowd{suffix}"
    path.write_text(text)
    with pytest.raises(CrowdError, match=message) as info:
        Crowd.from_file(path)
    assert "crowd" in str(info.value)


def test_missing_crowd_file():
    with pytest.raises(CrowdError, match="cannot read crowd file"):
        Crowd.from_file("/nonexistent/crowd.json")


def test_infer_wide_on_the_zoo(zoo_ds):
    crowd = Crowd.infer(zoo_ds)
    assert len(crowd) == 15 and crowd.layout == "wide"
    assert crowd.reward == "weighted_alpaca_eval_gpt4_turbo" and crowd.instruction == "instruction"
    assert crowd["FuseChat-Llama-3.1-8B-Instruct"].params_b == 8.0


def test_infer_wide_on_gsm(gsm_dir, gsm_ds):
    crowd = Crowd.infer(gsm_ds)
    raw = json.loads((gsm_dir / "models.json").read_text())
    assert crowd.layout == "wide" and crowd.instruction == "instruction"
    assert crowd.names == [m["name"] for m in raw]  # every struct column with a score, in column order
    assert crowd.reward == "correct"  # the one numeric field every member shares
    # Sizes read from names agree with models.json (Mixtral: the published 46.7B total), except
    # Command-R, whose names state none.
    for m in raw:
        expected = math.nan if m["name"].startswith("command-r") else float(m["params_b"])
        assert crowd[m["name"]].params_b == pytest.approx(expected, nan_ok=True), m["name"]
    # A provider suffix ("…@together") names where the weights were served, not another family.
    by_name = {m["name"]: m["family"] for m in raw}
    served = [n for n in crowd.names if "@" in n]
    assert served
    for n in served:
        siblings = [o for o in crowd.names if o != n and by_name[o] == by_name[n]]
        assert siblings and all(crowd[o].family == crowd[n].family for o in siblings), n


def _features(fields):
    member = datasets.Features({"content": datasets.Value("string"), **{f: datasets.Value("float64") for f in fields}})
    return datasets.Features({"instruction": datasets.Value("string"), "m-1b": member, "m-7b": member})


def test_reward_choice_with_several_numeric_fields():
    assert Crowd.infer(_features(["ArmoRM", "Skywork-Reward-Llama-3.1-8B"])).reward == "Skywork-Reward-Llama-3.1-8B"
    assert Crowd.infer(_features(["ArmoRM", "other"]), reward="armorm").reward == "ArmoRM"
    with pytest.raises(CrowdError, match=r"several fields could be the reward .*\['ArmoRM', 'other'\]"):
        Crowd.infer(_features(["ArmoRM", "other"]))


def test_preset_names_match_columns_case_insensitively():
    crowd = Crowd(members=(Member("Qwen2.5-7B-Instruct", "qwen2.5", 7), Member("Qwen2.5-3B-Instruct", "qwen2.5", 3)), reward="r")
    member = datasets.Features({"content": datasets.Value("string"), "R": datasets.Value("float32")})
    feats = datasets.Features({"instruction": datasets.Value("string"), "qwen2.5-7b-instruct": member, "QWEN2.5-3B-INSTRUCT": member})
    bound = crowd.resolve(feats)
    assert bound.names == ["qwen2.5-7b-instruct", "QWEN2.5-3B-INSTRUCT"] and bound.reward == "R"
    assert [m.params_b for m in bound] == [7.0, 3.0]


def test_infer_long_layout():
    ds = datasets.Dataset.from_list(
        [
            {"instruction": "x", "completions": [{"model": "b-7b", "response": "r", "overall_score": 3.0},
                                                  {"model": "a-1b", "response": "s", "overall_score": 1.0}]},
            {"instruction": "y", "completions": [{"model": "c-2b", "response": "t", "overall_score": 2.0}]},
        ]
    )
    crowd = Crowd.infer(ds)
    assert crowd.layout == "long" and crowd.column == "completions" and crowd.content_key == "response"
    assert crowd.names == ["a-1b", "b-7b", "c-2b"] and crowd.reward == "overall_score"
    with pytest.raises(CrowdError, match="pass the Dataset itself"):
        Crowd.infer(ds.features)


def test_no_crowd_found_lists_columns():
    feats = datasets.Features({"instruction": datasets.Value("string"), "output": datasets.Value("string")})
    with pytest.raises(CrowdError, match=r"no crowd found.*instruction: string, output: string"):
        Crowd.infer(feats)


def test_resolve_errors_name_member_and_field(real_table):
    ds, crowd = real_table.ds, real_table.crowd
    with pytest.raises(CrowdError, match=r"crowd member\(s\) \['ghost-7b'\] have no column"):
        Crowd(members=(*crowd.members, Member("ghost-7b", "ghost", 7)), reward=crowd.reward).resolve(ds)
    first = re.escape(ds.column_names[[c in crowd.names for c in ds.column_names].index(True)])
    with pytest.raises(CrowdError, match=f"column '{first}' has no reward field 'skywork'; its fields are"):
        crowd.with_reward("skywork").resolve(ds)


def test_crowd_pickles_and_hashes_by_value(real_table):
    import pickle

    crowd = real_table.crowd
    again = pickle.loads(pickle.dumps(crowd))
    assert again == crowd and hash(again) == hash(crowd)
    raw = json.loads((real_table.dir / "models.json").read_text())
    assert [again[m["name"]].family for m in raw] == [m["family"] for m in raw]


def test_schema_input_and_to_dict():
    schema = pa.schema([("instruction", pa.string()), ("x-3b", pa.struct([("content", pa.string()), ("s", pa.int64())]))])
    crowd = Crowd.infer(schema)
    assert crowd.to_dict()["members"] == [{"name": "x-3b", "family": "x", "params_b": 3.0}]


def test_a_member_whose_rewards_are_all_missing_is_still_a_member():
    # Arrow types a field that is None in every row as `null`; the member must not vanish.
    ds = datasets.Dataset.from_list([{"instruction": "x", "a-1b": {"content": "r", "s": None}, "a-7b": {"content": "q", "s": 0.4}}])
    assert ds.features["a-1b"]["s"].dtype == "null"
    crowd = Crowd.infer(ds)
    assert crowd.names == ["a-1b", "a-7b"] and crowd.reward == "s"


def test_a_struct_without_any_numeric_field_is_not_a_reward():
    text = datasets.Value("string")
    member = datasets.Features({"content": text, "error": datasets.Value("null")})
    feats = datasets.Features({"instruction": text, "a-1b": member, "a-7b": member})
    with pytest.raises(CrowdError, match="share no numeric score field"):
        Crowd.infer(feats)
