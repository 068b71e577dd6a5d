import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard

from crowdselect_hf import Crowd
from crowdselect_hf.hub import config_names, load_selected, local_set_dir
from crowdselect_hf.recipes import RECIPE_DIR, Recipe, RecipeError, all_recipes, build, get_recipe, list_recipes
from crowdselect_hf.selection import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
BASELINES = {"random", "reward-top", "length-longest", "difficulty-top", "separability-top", "stability-top", "cluster-random"}


@pytest.mark.unit
def test_shipped_recipes_are_the_paper_settings():
    recipes = {r.name: r for r in all_recipes()}
    assert set(recipes) == set(list_recipes()) == {"crowdselect-1k", *(f"{b}-1k" for b in BASELINES)}
    main = recipes["crowdselect-1k"]
    assert main.selection["strategy"] == "crowdselect"
    assert (main.selection["k"], main.selection["weights"], main.selection["n_clusters"], main.selection["seed"]) == (
        1000, [1, 1, 2], 10, 42)
    assert {r.selection["strategy"] for r in recipes.values()} == BASELINES | {"crowdselect"}
    for r in recipes.values():
        assert r.selection["strategy"] in STRATEGIES
        assert r.selection["k"] == 1000 and r.config == r.name and r.format == "messages"
        assert r.source["dataset"] == "Magpie-Align/Magpie-100K-Generator-Zoo" and r.source["split"] == "train"
        assert r.reward == "Skywork-Reward-Llama-3.1-8B" and r.crowd == "magpie-100k-generator-zoo"
        assert r.license == "llama3.1"
    assert len({r.repo_id for r in recipes.values()}) == 1  # one repo, one config per set, one shared card
    crowd = main.make_crowd()
    assert len(crowd) == 19 and crowd.reward == "Skywork-Reward-Llama-3.1-8B"
    assert crowd == Crowd.preset("magpie-100k-generator-zoo")


@pytest.mark.unit
def test_recipe_files_live_in_the_package_only():
    assert RECIPE_DIR == ROOT / "crowdselect_hf" / "recipes"
    assert not list((ROOT / "dataset_scripts").glob("*.yaml")), "keep one copy of the recipes, in crowdselect_hf/recipes/"


def _write(tmp_path, name, **changes):
    data = yaml.safe_load((RECIPE_DIR / "random-1k.yaml").read_text())
    data["name"] = name
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.unit
def test_bad_recipes_are_clear_errors(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown recipe 'x'; known recipes: \['cluster-random-1k', 'crowdselect-1k'"):
        get_recipe("x")
    path = _write(tmp_path, "a")
    path.rename(tmp_path / "b.yaml")
    with pytest.raises(RecipeError, match="name 'a' must equal the file name 'b'"):
        Recipe.from_file(tmp_path / "b.yaml")
    with pytest.raises(RecipeError, match="'selection.k' must be of type int"):
        Recipe.from_file(_write(tmp_path, "c", selection={"strategy": "random"}))
    with pytest.raises(RecipeError, match="malformed repo id 'nobody'"):
        Recipe.from_file(_write(tmp_path, "d", target={"repo_id": "nobody", "config": "d"}))
    with pytest.raises(RecipeError, match="format must be one of"):
        Recipe.from_file(_write(tmp_path, "e", format="text"))
    (tmp_path / "f.yaml").write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="is not valid YAML"):
        Recipe.from_file(tmp_path / "f.yaml")


# The licence each real crowd table is under (see its NOTICE / README).
LICENSES = {"zeroeval_gsm": "apache-2.0", "alpaca_zoo": "cc-by-nc-4.0"}


def _table_recipe(tmp_path, table, name, selection):
    data = {
        "name": name, "description": f"test recipe on the {table.name} crowd table",
        "source": {"dataset": "parquet", "data_files": str(table.dir / "zoo.parquet"), "split": "train"},
        "crowd": {"file": str(table.dir / "models.json")}, "reward": table.reward,
        "license": LICENSES[table.name], "format": "messages",
        "target": {"repo_id": "tester/zoo-sets", "config": name}, "selection": selection,
    }
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return folder


@pytest.mark.unit
def test_build_rebuilds_a_recipe_and_load_selected_finds_it(tmp_path, monkeypatch, real_table):
    monkeypatch.setenv("CROWDSELECT_HOME", str(tmp_path / "home"))
    folder = _table_recipe(tmp_path, real_table, "zoo-reward-top-30", {"strategy": "reward-top", "k": 30})
    _table_recipe(tmp_path, real_table, "zoo-crowdselect-40",
                {"strategy": "crowdselect", "k": 40, "n_clusters": 4, "weights": [1, 1, 2], "seed": 3, "n_init": 2})
    monkeypatch.setenv("CROWDSELECT_RECIPES", str(folder))
    assert {"zoo-reward-top-30", "zoo-crowdselect-40", "crowdselect-1k"} <= set(list_recipes())

    result = build("zoo-reward-top-30")
    out = local_set_dir("tester/zoo-sets")
    assert result == {"recipe": "zoo-reward-top-30", "folder": str(out), "config": "zoo-reward-top-30", "rows": 30,
                      "dropped": 0, "url": None}
    # independent check: the 30 rows with the highest best reward, equal rewards (most of a 0/1
    # table) by crowd_id, in table order
    best, ids = list(real_table.scored["crowd_best_reward"]), list(real_table.scored["crowd_id"])
    ranked = sorted(range(len(ids)), key=lambda i: (-best[i], ids[i]))
    loaded = load_selected("zoo-reward-top-30")
    assert loaded["crowd_id"] == [ids[i] for i in sorted(ranked[:30])]

    # the CLI entry point, same recipe machinery, another config in the same folder
    spec = importlib.util.spec_from_file_location("build_script", ROOT / "dataset_scripts" / "build.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["zoo-crowdselect-40"]) == 0
    assert config_names(out) == ["zoo-crowdselect-40", "zoo-reward-top-30"]
    card = DatasetCard((out / "README.md").read_text())
    block = card.data.crowdselect["zoo-crowdselect-40"]
    built = block["record"]
    assert (built["strategy"], built["k"], built["clustering"]["n_clusters"], built["weights"], built["seed"]) == (
        "crowdselect", 40, 4, [1.0, 1.0, 2.0], 3)
    assert block["source"]["dataset"] == "parquet" and built["crowd"]["reward"] == real_table.reward
    assert built["metrics"]["reward"] == real_table.reward  # what the metrics were really computed from
    assert card.data.license == LICENSES[real_table.name]
    assert len(load_selected("zoo-crowdselect-40")) == 40
    record = json.loads((out / "zoo-crowdselect-40" / "_crowdselect" / "selection.json").read_text())
    assert record["n_selected"] == 40 and record["k"] == 40 and record["config"] == "zoo-crowdselect-40"
    assert script.main(["nope"]) == 1  # an unknown recipe: a one-line error, exit 1 (as every crowdselect error)
