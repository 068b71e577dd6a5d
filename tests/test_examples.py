"""The scripts in examples/ run as a user copies them: the pipeline on a local crowd table, and
full and LoRA SFT with TRL for 2 CPU steps on a curated set, with a tiny model built in code."""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

import crowdselect_hf as cs

from .conftest import GSM_REWARD
from .tiny_models import save_causal_lm, word_tokenizer, words_of

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args):
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                          cwd=EXAMPLES, timeout=600)


@pytest.fixture(scope="module")
def curated_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curated")
    scored = cs.score(cs.demo_pool(), crowd=cs.demo_crowd())
    sel = cs.crowd_select(scored, k=16, n_clusters=4, n_init=2)
    for fmt in ("messages", "prompt-completion"):
        rows = cs.to_sft(scored.select(sel.indices), format=fmt, crowd=cs.demo_crowd())
        cs.save_local(rows, folder, f"demo-{fmt}", selection=sel, crowd=cs.demo_crowd())
    return folder


@pytest.fixture(scope="module")
def tiny_lm(curated_folder, tmp_path_factory):
    rows = datasets.load_dataset(str(curated_folder), "demo-messages", split="train")
    texts = [m["content"] for conv in rows["messages"] for m in conv]
    return save_causal_lm(tmp_path_factory.mktemp("lm") / "tiny-lm", word_tokenizer(words_of(texts), max_words=2000))


@pytest.mark.parametrize("fmt", ["messages", "prompt-completion"])
def test_full_sft_example_trains_two_steps(curated_folder, tiny_lm, tmp_path, fmt):
    out = tmp_path / "sft"
    result = run_example("sft_trl.py", "--dataset", curated_folder, "--config", f"demo-{fmt}", "--model", tiny_lm,
                         "--max-steps", 2, "--max-length", 64, "--warmup-steps", 0, "--cpu", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2 steps" in result.stdout
    assert (out / "model.safetensors").exists()


def test_lora_example_trains_an_adapter(curated_folder, tiny_lm, tmp_path):
    out = tmp_path / "lora"
    result = run_example("sft_lora.py", "--dataset", curated_folder, "--config", "demo-messages", "--model", tiny_lm,
                         "--max-steps", 2, "--max-length", 64, "--warmup-steps", 0, "--cpu", "--output-dir", out,
                         "--lora-r", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2 steps" in result.stdout and "trainable params" in result.stdout
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["peft_type"] == "LORA"
    assert not (out / "model.safetensors").exists()  # only the adapter is saved


def test_pipeline_example_on_a_local_crowd_table(gsm_ds, gsm_dir, tmp_path):
    pool = tmp_path / "gsm.parquet"
    gsm_ds.select(range(200)).to_parquet(str(pool))
    result = run_example("curate.py", "--pool", pool, "--crowd", gsm_dir / "models.json", "--reward", GSM_REWARD,
                         "--k", 40, "--n-clusters", 4, "--out", tmp_path / "cur")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "40 rows" in result.stdout
    rows = datasets.load_dataset(str(tmp_path / "cur"), "crowdselect-40", split="train")
    assert len(rows) == 40 and (tmp_path / "cur" / "crowdselect-40" / "report.html").exists()
