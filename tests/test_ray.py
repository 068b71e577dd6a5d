"""The Ray engine (crowdselect_hf.ray): the same crowd_* values, selection and reward scores as the
single-process path, rows kept in input order whatever order Ray runs blocks in, recovery from an
actor that dies mid-batch, and a clear message when Ray is not installed.

One local Ray instance (num_cpus=2) serves the whole module and is shut down at the end."""

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect_hf import CrowdScore, crowd_select
from crowdselect_hf.cli import main
from crowdselect_hf.scoring import COLUMNS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTOR = {"num_cpus": 0.5}  # two CPUs: leave room for the read and write tasks beside an actor


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    assert not ray.is_initialized(), "another test left Ray running"
    # Workers import this module (DieOnce) and tests/tiny_models by name.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}})
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def gsm_parquet(gsm_dir, tmp_path_factory):
    """The shipped GSM8K table in row groups of 41 rows (9 read blocks Ray may run in any order),
    in a temporary folder. The engine does not care which table it reads: the small one keeps
    these tests fast and runs them on a plain clone."""
    path = tmp_path_factory.mktemp("gsm-ray") / "zoo.parquet"
    table = pq.read_table(gsm_dir / "zoo.parquet")
    pq.write_table(table, path, row_group_size=41)
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-table.num_rows // 41) > 1
    return path


def _equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return np.array_equal(a.astype(float), b.astype(float), equal_nan=True)
    return a.tolist() == b.tolist()


class DieOnce:
    """Wraps a map callable; the first call in any process creates ``marker`` and kills the process
    (as a lost node or an OOM kill would). Every later call passes through."""

    def __init__(self, fn, marker):
        self.fn = fn
        self.marker = str(marker)

    def __getattr__(self, name):
        if name in ("fn", "marker"):
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __call__(self, *args, **kwargs):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return self.fn(*args, **kwargs)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


@pytest.mark.slow
def test_ray_path_equals_single_process(ray_local, gsm_parquet, gsm_crowd, gsm_scored, tmp_path):
    from crowdselect_hf import ray as csray

    ds = csray.read_parquet(str(gsm_parquet))
    ds = csray.score_stage(ds, CrowdScore(crowd=gsm_crowd), batch_size=50)
    ds = ds.randomize_block_order(seed=3)  # whatever order blocks finish in, the selection must not care
    out = csray.write_parquet(ds, str(tmp_path / "scored"))

    compact, X = csray.read_scored(out, columns=["instruction"])
    assert X is None and len(compact) == len(gsm_scored) == pq.ParquetFile(gsm_parquet).metadata.num_rows
    for c in COLUMNS:
        assert _equal(compact[c], gsm_scored[c]), c

    kw = dict(k=120, n_clusters=10, seed=42)
    sel = csray.select(out, **kw)
    ref = crowd_select(gsm_scored, **kw)
    assert sel.ids == ref.ids
    assert sel.indices.tolist() == ref.indices.tolist()
    assert sel.backfilled.tolist() == ref.backfilled.tolist()
    assert _equal(sel.combined, ref.combined) and sel.clusters.tolist() == ref.clusters.tolist()

    rows = csray.selected_rows(out, sel)
    assert rows["crowd_id"] == ref.ids
    assert rows["instruction"] == gsm_scored.select(ref.indices)["instruction"]
    first = gsm_crowd.names[0]
    assert rows[first] == gsm_scored.select(ref.indices)[first]


@pytest.mark.slow
def test_actor_killed_mid_batch_is_restarted_and_no_row_is_lost_or_duplicated(ray_local, gsm_parquet, gsm_crowd,
                                                                               gsm_scored, tmp_path):
    from crowdselect_hf import ray as csray

    marker = tmp_path / "died"
    n = len(gsm_scored)
    ds = csray.read_parquet(str(gsm_parquet))
    ds = csray.score_stage(ds, DieOnce(CrowdScore(crowd=gsm_crowd), marker), batch_size=64, actors=1,
                           max_restarts=2, max_task_retries=2, **ACTOR)
    out = csray.write_parquet(ds, str(tmp_path / "scored"))

    assert marker.exists(), "the injected failure did not happen"
    assert int(marker.read_text()) != os.getpid()
    raw = pq.read_table(out, columns=["crowd_row", "crowd_id", "crowd_difficulty"])
    assert raw.num_rows == n
    rows = raw.column("crowd_row").to_numpy()
    assert sorted(rows.tolist()) == list(range(n))
    order = np.argsort(rows)
    assert raw.column("crowd_id").take(pa.array(order)).to_pylist() == gsm_scored["crowd_id"]
    assert _equal(raw.column("crowd_difficulty").take(pa.array(order)).to_numpy(), gsm_scored["crowd_difficulty"])


@pytest.mark.slow
def test_reward_scores_through_ray_equal_ds_map(ray_local, tmp_path):
    import datasets

    from crowdselect_hf import ray as csray
    from crowdselect_hf.rewards import RewardScorer, reward_dataset

    from .tiny_models import save_reward_model, word_tokenizer, words_of

    instructions = [f"Write a short poem about the {w}." for w in "rain sun cat dog tree sea sky".split()] + ["Say hi."]
    rows = [{"instruction": t, "tiny-a-1b": {"content": "The rain is good. " * (i % 3 + 1)},
             "tiny-a-7b": {"content": None if i == 2 else f"Hello {i}, the {t.split()[-1]}"}} for i, t in enumerate(instructions)]
    ds = datasets.Dataset.from_list(rows)
    tok = word_tokenizer(words_of(instructions + ["The rain is good. Hello"]))
    rm = str(save_reward_model(tmp_path / "tiny-rm", tok, seed=1))
    ds.to_parquet(str(tmp_path / "pool.parquet"))

    expected = reward_dataset(ds, rm, reward_name="rm", batch_size=4, map_batch_size=3)
    scorer = RewardScorer(rm, reward_name="rm", batch_size=4)
    out = csray.reward_stage(csray.read_parquet(str(tmp_path / "pool.parquet")), scorer, batch_size=3, actors=1, **ACTOR)
    got = pa.concat_tables(out.iter_batches(batch_format="pyarrow", batch_size=None)).sort_by("crowd_row")

    assert got.column("crowd_row").to_pylist() == list(range(len(ds)))
    for member in ("tiny-a-1b", "tiny-a-7b"):
        assert got.column(member).to_pylist() == expected[member], member
        assert got.schema.field(member).type == expected.data.schema.field(member).type
    assert expected["tiny-a-7b"][2]["rm"] is None and expected["tiny-a-1b"][0]["rm"] is not None


@pytest.mark.slow
def test_cli_engine_ray_score_then_select(ray_local, gsm_dir, gsm_parquet, gsm_crowd, gsm_scored, tmp_path, capsys):
    import datasets

    scored = tmp_path / "scored"
    assert main(["score", str(gsm_parquet), "--engine", "ray", "--crowd", str(gsm_dir / "models.json"),
                 "--reward", gsm_crowd.reward, "--out", str(scored), "-q"]) == 0
    assert main(["select", str(scored), "--engine", "ray", "--k", "20", "--n-clusters", "4", "--no-report",
                 "--out", str(tmp_path / "curated"), "-q"]) == 0
    ref = crowd_select(gsm_scored, k=20, n_clusters=4)
    pool = pq.read_table(tmp_path / "curated" / "crowdselect-20" / "_crowdselect" / "pool.parquet")
    assert pool.num_rows == len(gsm_scored)
    assert pool.filter(pool.column("crowd_selected")).column("crowd_id").to_pylist() == ref.ids
    rows = datasets.load_dataset(str(tmp_path / "curated"), "crowdselect-20", split="train")
    assert [m[0]["content"] for m in rows["messages"]] == gsm_scored.select(ref.indices)["instruction"]

    assert main(["score", str(gsm_parquet), "--engine", "ray", "--out", str(tmp_path / "x.parquet"), "-q"]) == 1
    assert "folder of Parquet files" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_engine_ray_generate_then_reward_equal_the_datasets_path(ray_local, tmp_path):
    import datasets

    from crowdselect_hf.generation import generate_dataset
    from crowdselect_hf.rewards import reward_dataset

    from .tiny_models import save_causal_lm, save_reward_model, word_tokenizer, words_of

    instructions = ["name a red fruit", "say hello to the team", "count to three please", "what is the sea"]
    tok = word_tokenizer(words_of(instructions + ["apple hello one two three water"]))
    lm = str(save_causal_lm(tmp_path / "tiny-a-1b", tok, seed=3))
    rm = str(save_reward_model(tmp_path / "rm", tok, seed=4))
    pool = datasets.Dataset.from_dict({"instruction": instructions})
    pool.to_parquet(str(tmp_path / "instructions.parquet"))

    assert main(["generate", str(tmp_path / "instructions.parquet"), "--engine", "ray", "--model", lm,
                 "--max-new-tokens", "3", "--out", str(tmp_path / "crowd"), "-q"]) == 0
    assert main(["reward", str(tmp_path / "crowd"), "--engine", "ray", "--model", rm, "--reward-name", "rm",
                 "--out", str(tmp_path / "rewarded"), "-q"]) == 0
    got = pq.read_table(tmp_path / "rewarded").sort_by("crowd_row")

    expected = reward_dataset(generate_dataset(pool, [lm], max_new_tokens=3), rm, reward_name="rm")
    assert got.column("crowd_row").to_pylist() == [0, 1, 2, 3]
    cells = got.column("tiny-a-1b").to_pylist()
    assert [c["content"] for c in cells] == [c["content"] for c in expected["tiny-a-1b"]]
    assert [c["rm"] for c in cells] == pytest.approx([c["rm"] for c in expected["tiny-a-1b"]], abs=1e-5)
    assert all(isinstance(c["rm"], float) for c in cells)


def test_engine_ray_without_ray_names_the_extra(monkeypatch, tmp_path, capsys):
    from crowdselect_hf import demo_pool

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    pool = demo_pool().select(range(40))
    pool.to_parquet(str(tmp_path / "pool.parquet"))
    code = main(["score", str(tmp_path / "pool.parquet"), "--engine", "ray", "--out", str(tmp_path / "out"), "-q"])
    assert code == 1
    assert "pip install 'crowdselect-hf[ray]'" in capsys.readouterr().err
    # The datasets engine needs no Ray.
    assert main(["score", str(tmp_path / "pool.parquet"), "--out", str(tmp_path / "scored.parquet"), "-q"]) == 0
    assert pq.read_table(tmp_path / "scored.parquet").num_rows == 40
    from crowdselect_hf.ray import require_ray

    with pytest.raises(ImportError, match=r"crowdselect-hf\[ray\]"):
        require_ray()
