import json
import math
import os
import types
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

import crowdselect_hf
from crowdselect_hf.hub import (
    publish_folder,
    ConfigExistsError,
    HubError,
    PublishError,
    check_repo_id,
    config_names,
    load_selected,
    local_set_dir,
    publish,
    save_local,
)
from crowdselect_hf.recipes import RecipeError, get_recipe
from crowdselect_hf.record import SelectionRecord
from crowdselect_hf.selection import crowd_select
from crowdselect_hf.sft import to_sft

# Folders, cards and pushes do not depend on which crowd table the rows came from: the shipped
# GSM8K subset (Apache-2.0) serves them all.
SOURCE = {"dataset": "zeroeval_gsm (tests)", "split": "train", "revision": "local"}
LICENSE = "apache-2.0"


@pytest.fixture(scope="module")
def curated(gsm_scored, gsm_crowd):
    """Two real selections on the GSM8K table and their SFT rows."""
    sel = crowd_select(gsm_scored, k=60, n_clusters=4, n_init=2, seed=7)
    base = crowd_select(gsm_scored, k=40, strategy="reward-top")
    return {
        "crowdselect-60": (sel, to_sft(gsm_scored.select(sel.indices), crowd=gsm_crowd)),
        "reward-top-40": (base, to_sft(gsm_scored.select(base.indices), format="prompt-completion", crowd=gsm_crowd)),
    }


def _save(folder, name, curated, crowd, **kw):
    sel, rows = curated[name]
    return save_local(rows, folder, name, selection=sel, crowd=crowd, source=SOURCE, license=LICENSE, **kw)


def _rows(data):
    """The rows of a Dataset or Arrow table, NaN spelled out so that two NaN compare equal (a 0/1
    table has rows with stability NaN) while NaN and None stay different."""
    rows = data.to_pylist() if hasattr(data, "to_pylist") else data.to_list()
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in rows]


@pytest.mark.unit
def test_round_trip_and_second_config(tmp_path, curated, gsm_crowd, gsm_scored):
    folder = tmp_path / "sets"
    _save(folder, "crowdselect-60", curated, gsm_crowd)
    sel, rows = curated["crowdselect-60"]
    loaded = load_selected(folder, "crowdselect-60")
    assert loaded.features == rows.features
    assert _rows(loaded) == _rows(rows)
    assert loaded["crowd_id"] == [gsm_scored["crowd_id"][i] for i in sel.indices]

    _save(folder, "reward-top-40", curated, gsm_crowd)
    assert sorted(datasets.get_dataset_config_names(str(folder))) == ["crowdselect-60", "reward-top-40"]
    assert config_names(folder) == ["crowdselect-60", "reward-top-40"]
    assert _rows(load_selected(folder, "crowdselect-60")) == _rows(rows)
    second = load_selected(folder, "reward-top-40")
    assert second.column_names[:2] == ["prompt", "completion"] and "messages" not in second.column_names
    assert _rows(second) == _rows(curated["reward-top-40"][1])
    # load_dataset directly, as `trl sft --dataset_name <folder> --dataset_config <config>` does
    assert len(datasets.load_dataset(str(folder), "reward-top-40", split="train")) == 40
    assert not [p for p in folder.iterdir() if p.name.startswith(".crowdselect")]  # no staging left behind


@pytest.mark.unit
def test_sidecar_and_card(tmp_path, curated, gsm_crowd, gsm_dir):
    folder = tmp_path / "sets"
    for name in curated:
        _save(folder, name, curated, gsm_crowd)
    sel, rows = curated["crowdselect-60"]
    side = folder / "crowdselect-60" / "_crowdselect"
    pool = pq.read_table(side / "pool.parquet")
    assert pool.schema == sel.pool_table().schema and _rows(pool) == _rows(sel.pool_table())
    record = json.loads((side / "selection.json").read_text())
    assert SelectionRecord.from_dict(record).params == sel.params
    assert record["clusters"] == sel.summary()["clusters"] and record["config"] == "crowdselect-60"
    assert record["crowd"] == json.loads(json.dumps(gsm_crowd.to_dict()))
    assert record["source"]["dataset"] == SOURCE["dataset"] and record["source"]["fingerprint"] == rows._fingerprint

    card = DatasetCard((folder / "README.md").read_text())
    data = card.data.to_dict()
    assert data["license"] == LICENSE
    assert {"crowdselect", "sft", "synthetic"} <= set(data["tags"])
    assert data["task_categories"] == ["text-generation"] and data["size_categories"] == ["n<1K"]
    # configs: entries match the folders, and their patterns match exactly the data shards
    configs = {c["config_name"]: c["data_files"] for c in data["configs"]}
    assert set(configs) == {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for name, files in configs.items():
        assert files == [{"split": "train", "path": f"{name}/train-*"}]
        assert sorted(p.name for p in (folder / name).glob("train-*")) == ["train-00000-of-00001.parquet"]
    block = data["crowdselect"]["crowdselect-60"]
    card_record = SelectionRecord.from_dict(block["record"])
    assert block["record"] == json.loads((side / "selection.json").read_text())  # the card holds the sidecar's record
    assert card_record.params == sel.params and card_record.clusters == sel.record.clusters
    assert card_record.reward == gsm_crowd.reward and block["rows"] == card_record.rows == len(rows)
    assert block["format"] == "messages"
    first = json.loads((gsm_dir / "models.json").read_text())[0]
    assert card_record.crowd["members"][0] == {"name": first["name"], "family": first["family"],
                                               "params_b": float(first["params_b"])}
    assert block["package_version"] == card_record.package_version == crowdselect_hf.__version__
    assert block["source"]["fingerprint"] == rows._fingerprint
    assert data["crowdselect"]["reward-top-40"]["format"] == "prompt-completion"
    # the body: both configs, means of selection vs pool, per-cluster counts, how to train
    text = card.text
    means = sel.summary()["metric_means"]["difficulty"]
    assert f"| difficulty | {means['selected']:.4g} | {means['pool']:.4g} |" in text
    for c in sel.record.clusters:
        assert f"| {c.cluster} | {c.pool_rows} | {c.candidates} | {c.quota} | {c.picked_by_quota} | {c.backfilled} |" in text
    assert "### `crowdselect-60`" in text and "### `reward-top-40`" in text
    assert f"--dataset_name {folder} --dataset_config crowdselect-60" in text


@pytest.mark.unit
def test_overwrite_rules_and_foreign_card_content(tmp_path, curated, gsm_crowd):
    folder = tmp_path / "sets"
    folder.mkdir()
    # a config pushed by someone else (datasets reads one file format per repo: Parquet, as push_to_hub writes)
    (folder / "README.md").write_text("---\nlicense: mit\nconfigs:\n- config_name: mine\n  data_files: mine/*.parquet\n"
                                      "---\n\nMy own notes.\n")
    (folder / "mine").mkdir()
    datasets.Dataset.from_dict({"x": [1]}).to_parquet(str(folder / "mine" / "a.parquet"))
    _save(folder, "reward-top-40", curated, gsm_crowd)
    before = (folder / "README.md").read_text()
    with pytest.raises(ConfigExistsError, match=r"'reward-top-40' already exists.*\['mine', 'reward-top-40'\].*--overwrite"):
        _save(folder, "reward-top-40", curated, gsm_crowd)
    assert (folder / "README.md").read_text() == before
    card = DatasetCard(before)
    assert {"config_name": "mine", "data_files": "mine/*.parquet"} in card.data.configs  # never clobbered
    assert "My own notes." in card.text and card.data.license == LICENSE
    assert load_selected(folder, "mine")["x"] == [1]

    smaller = curated["reward-top-40"][1].select(range(5))
    save_local(smaller, folder, "reward-top-40", overwrite=True)
    assert len(load_selected(folder, "reward-top-40")) == 5
    assert not (folder / "reward-top-40" / "_crowdselect").exists()  # the old sidecar went with the old config
    assert "My own notes." in (folder / "README.md").read_text()


@pytest.mark.unit
def test_failed_save_leaves_the_folder_as_it_was(tmp_path, curated, gsm_crowd):
    folder = tmp_path / "sets"
    _save(folder, "reward-top-40", curated, gsm_crowd)
    snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    real = curated["crowdselect-60"][0]

    class Broken:
        ids, record = real.ids, real.record

        def pool_table(self):
            raise RuntimeError("disk full")

    rows = curated["crowdselect-60"][1]
    with pytest.raises(RuntimeError, match="disk full"):
        save_local(rows, folder, "crowdselect-60", selection=Broken())
    with pytest.raises(RuntimeError, match="disk full"):
        save_local(rows, folder, "reward-top-40", selection=Broken(), overwrite=True)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot
    with pytest.raises(RuntimeError):
        save_local(rows, tmp_path / "new", "x", selection=Broken())
    assert not (tmp_path / "new").exists()


@pytest.mark.unit
def test_load_selected_errors(tmp_path, curated, gsm_crowd):
    folder = tmp_path / "sets"
    for name in curated:
        _save(folder, name, curated, gsm_crowd)
    with pytest.raises(HubError, match=r"config 'nope' is not in .*its configs: crowdselect-60, reward-top-40"):
        load_selected(folder, "nope")
    with pytest.raises(HubError, match=r"holds several configs \(crowdselect-60, reward-top-40\); choose one with --config-name"):
        load_selected(folder)
    with pytest.raises(HubError, match="malformed repo id 'me//x'"):
        load_selected("me//x")
    with pytest.raises(HubError, match="malformed repo id 'a/b/c'"):
        load_selected("a/b/c")
    with pytest.raises(RecipeError, match=r"unknown recipe 'crowdselect-2k'; known recipes: \[.*'crowdselect-1k'"):
        load_selected("crowdselect-2k")
    # a recipe that is neither built locally nor cached, offline: say how to build it
    with pytest.raises(HubError, match=r"crowdselect build crowdselect-1k"):
        load_selected("crowdselect-1k")
    with pytest.raises(HubError, match=r"cannot load 'someone/not-cached'"):
        load_selected("someone/not-cached", "x")
    with pytest.raises(HubError, match="not a Hub-shaped folder"):
        load_selected(tmp_path)


@pytest.mark.unit
def test_recipe_name_loads_its_local_build(tmp_path, monkeypatch, curated, gsm_crowd):
    monkeypatch.setenv("CROWDSELECT_HOME", str(tmp_path / "home"))
    recipe = get_recipe("random-1k")
    sel, rows = curated["reward-top-40"]
    save_local(rows, local_set_dir(recipe.repo_id), recipe.config, selection=sel, crowd=gsm_crowd)
    assert _rows(load_selected("random-1k")) == _rows(rows)
    assert str(local_set_dir(recipe.repo_id)).startswith(str(tmp_path / "home"))


@pytest.mark.unit
def test_bad_names():
    with pytest.raises(HubError, match="config name '../x' is not valid"):
        save_local(datasets.Dataset.from_dict({"a": [1]}), "/tmp/unused-crowdselect", "../x")
    for bad in ("x", "a/b/c", "me/x--y", "me/.x", ""):
        with pytest.raises(HubError, match="malformed repo id"):
            check_repo_id(bad)
    assert check_repo_id("me/x.y_z-1") == "me/x.y_z-1"


def _http_error(cls, message, status):
    import importlib

    httpx = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")
    return cls(message, response=httpx.Response(status, request=httpx.Request("POST", "https://hub.test")))


class FakeHub:
    """Stands in for the network calls of HfApi; records what would be committed."""

    def __init__(self, remote_files, readme=None, fail=None, exists=True):
        self.remote_files, self.readme, self.fail, self.commits, self.created = remote_files, readme, fail, [], []
        self.exists = exists

    def install(self, monkeypatch, tmp_path):
        from huggingface_hub import HfApi

        hub = self

        def create_repo(self, repo_id, **kw):
            hub.created.append((repo_id, kw))
            hub.exists = True

        def repo_info(self, repo_id, **kw):
            if not hub.exists:
                raise _http_error(RepositoryNotFoundError, "404 not found", 404)
            return types.SimpleNamespace(sha="a" * 40, siblings=[types.SimpleNamespace(rfilename=f) for f in hub.remote_files])

        def hf_hub_download(self, repo_id, filename, **kw):
            assert filename == "README.md" and kw["revision"] == "a" * 40
            path = tmp_path / "downloaded-README.md"
            path.write_text(hub.readme)
            return str(path)

        def create_commit(self, repo_id, operations, **kw):
            if hub.fail:
                raise hub.fail
            files = {}
            for op in operations:
                if hasattr(op, "path_or_fileobj"):
                    files[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
                else:
                    files[op.path_in_repo] = None
            hub.commits.append((repo_id, files, kw))
            return types.SimpleNamespace(commit_url=f"https://hub.test/datasets/{repo_id}/commit/bbb", pr_url=None)

        for name, fn in [("create_repo", create_repo), ("repo_info", repo_info), ("hf_hub_download", hf_hub_download),
                         ("create_commit", create_commit)]:
            monkeypatch.setattr(HfApi, name, fn)


@pytest.mark.unit
def test_publish_commits_everything_at_once(tmp_path, monkeypatch, curated, gsm_crowd):
    local = tmp_path / "local"
    _save(local, "reward-top-40", curated, gsm_crowd)
    remote_readme = (local / "README.md").read_text()
    stale = "crowdselect-60/train-00000-of-00002.parquet"
    hub = FakeHub(["README.md", ".gitattributes", "reward-top-40/train-00000-of-00001.parquet", stale], remote_readme)
    hub.install(monkeypatch, tmp_path)
    sel, rows = curated["crowdselect-60"]
    with pytest.raises(ConfigExistsError, match="'crowdselect-60' already exists in 'me/sets'"):
        publish(rows, "me/sets", "crowdselect-60", selection=sel, crowd=gsm_crowd, source=SOURCE)
    assert hub.commits == []
    url = publish(rows, "me/sets", "crowdselect-60", selection=sel, crowd=gsm_crowd, source=SOURCE, overwrite=True,
                  private=True, token="hf_secret")
    assert url == "https://hub.test/datasets/me/sets/commit/bbb"
    assert len(hub.commits) == 1
    assert hub.created == []  # the repo existed: its visibility is left alone
    (repo_id, files, kw), = hub.commits
    assert sorted(files) == ["README.md", "crowdselect-60/_crowdselect/pool.parquet", "crowdselect-60/_crowdselect/selection.json",
                             "crowdselect-60/train-00000-of-00001.parquet", stale]
    assert files[stale] is None  # the stale shard is deleted in the same commit
    assert kw["parent_commit"] == "a" * 40 and kw["repo_type"] == "dataset" and kw["create_pr"] is False
    # the card that would be uploaded: both configs, the remote one untouched, the new block exact
    card = DatasetCard(files["README.md"].decode())
    assert [c["config_name"] for c in card.data.configs] == ["crowdselect-60", "reward-top-40"]
    assert card.data.crowdselect["reward-top-40"] == DatasetCard(remote_readme).data.crowdselect["reward-top-40"]
    assert card.data.crowdselect["crowdselect-60"]["record"]["k"] == 60
    assert "--dataset_name me/sets --dataset_config crowdselect-60" in card.text
    assert json.loads(files["crowdselect-60/_crowdselect/selection.json"])["clustering"]["n_clusters"] == 4
    # the uploaded shard holds exactly the rows
    shard = tmp_path / "shard.parquet"
    shard.write_bytes(files["crowdselect-60/train-00000-of-00001.parquet"])
    assert _rows(pq.read_table(shard)) == _rows(rows)


@pytest.mark.unit
def test_publish_folder_uploads_a_saved_config_as_is(tmp_path, monkeypatch, curated, gsm_crowd):
    remote_side = tmp_path / "remote"
    _save(remote_side, "reward-top-40", curated, gsm_crowd)
    local = tmp_path / "local"
    _save(local, "crowdselect-60", curated, gsm_crowd)
    hub = FakeHub(["README.md", "reward-top-40/train-00000-of-00001.parquet"], (remote_side / "README.md").read_text())
    hub.install(monkeypatch, tmp_path)
    url = publish_folder(local, "me/sets")  # the folder's only config
    assert url == "https://hub.test/datasets/me/sets/commit/bbb" and len(hub.commits) == 1
    (_, files, kw), = hub.commits
    on_disk = {p.relative_to(local).as_posix(): p.read_bytes() for p in (local / "crowdselect-60").rglob("*") if p.is_file()}
    assert {k: v for k, v in files.items() if k != "README.md"} == on_disk  # byte for byte, nothing re-encoded
    card = DatasetCard(files["README.md"].decode())
    local_card = DatasetCard((local / "README.md").read_text())
    assert [c["config_name"] for c in card.data.configs] == ["crowdselect-60", "reward-top-40"]
    assert card.data.crowdselect["crowdselect-60"] == local_card.data.crowdselect["crowdselect-60"]
    assert card.data.dataset_info is not None
    assert "--dataset_name me/sets --dataset_config crowdselect-60" in card.text
    with pytest.raises(HubError, match=r"config 'nope' is not in .*its configs: crowdselect-60"):
        publish_folder(local, "me/sets", "nope")
    with pytest.raises(HubError, match="not a Hub-shaped folder"):
        publish_folder(tmp_path / "empty", "me/sets")


@pytest.mark.unit
def test_publish_as_pull_request_returns_its_url(tmp_path, monkeypatch, curated):
    hub = FakeHub([".gitattributes"])
    hub.install(monkeypatch, tmp_path)
    from huggingface_hub import HfApi

    original = HfApi.create_commit

    def with_pr(self, repo_id, operations, **kw):
        out = original(self, repo_id, operations, **kw)
        return types.SimpleNamespace(commit_url=out.commit_url, pr_url=f"https://hub.test/datasets/{repo_id}/discussions/1")

    monkeypatch.setattr(HfApi, "create_commit", with_pr)
    rows = curated["reward-top-40"][1]
    url = publish(rows, "me/sets", "reward-top-40", create_pr=True, revision="dev", license="mit")
    assert url == "https://hub.test/datasets/me/sets/discussions/1"
    (_, files, kw), = hub.commits
    assert kw["create_pr"] is True and kw["revision"] == "dev"
    assert sorted(files) == ["README.md", "reward-top-40/train-00000-of-00001.parquet"]  # no selection: no sidecar
    card = DatasetCard(files["README.md"].decode())
    assert card.data.license == "mit" and card.data.crowdselect["reward-top-40"]["format"] == "prompt-completion"


@pytest.mark.unit
def test_publish_failure_reports_without_token(tmp_path, monkeypatch, curated, capsys):
    hub = FakeHub([".gitattributes"], fail=_http_error(HfHubHTTPError, "500 Server Error for token hf_secret123", 500),
                  exists=False)
    hub.install(monkeypatch, tmp_path)
    with pytest.raises(PublishError) as info:
        publish(curated["reward-top-40"][1], "me/sets", "reward-top-40", token="hf_secret123", private=True)
    assert hub.created == [("me/sets", {"repo_type": "dataset", "private": True, "exist_ok": True})]
    assert "hf_secret123" not in str(info.value) and "no commit was made" in str(info.value)
    assert "hf_secret123" not in capsys.readouterr().out
    with pytest.raises(HubError, match="malformed repo id"):
        publish(curated["reward-top-40"][1], "me/sets/extra", "reward-top-40")


@pytest.mark.integration
def test_publish_to_the_real_hub(curated, gsm_crowd):
    from huggingface_hub import HfApi, constants

    if not os.environ.get("HF_TOKEN") or constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_TOKEN and HF_HUB_OFFLINE unset")
    api = HfApi()
    try:
        user = api.whoami()["name"]
    except Exception as e:  # no network, bad token
        pytest.skip(f"the Hub does not answer: {type(e).__name__}")
    import uuid

    repo_id = f"{user}/crowdselect-hf-test-{uuid.uuid4().hex[:8]}"
    sel, rows = curated["reward-top-40"]
    try:
        url = publish(rows, repo_id, "reward-top-40", selection=sel, crowd=gsm_crowd, private=True, license=LICENSE)
        assert repo_id in url
        assert _rows(load_selected(repo_id, "reward-top-40")) == _rows(rows)
    finally:
        api.delete_repo(repo_id, repo_type="dataset", missing_ok=True)
