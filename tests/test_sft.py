import logging

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from crowdselect_hf import Crowd, CrowdError, score
from crowdselect_hf.binding import CrowdBinding
from crowdselect_hf.sft import FORMATS, sft_example, to_sft


def _expected_pairs(table_dir, scored):
    """(instruction, best response) per row, read straight from the parquet file and the
    reward values, independently of to_sft."""
    table = pq.read_table(table_dir / "zoo.parquet").to_pylist()
    best = scored["crowd_best_model"]
    return [(row["instruction"], row[b]["content"]) for row, b in zip(table, best)]


@pytest.mark.unit
def test_messages_hold_instruction_and_best_response(real_table):
    scored, crowd = real_table.scored, real_table.crowd
    sft = to_sft(scored)
    scored_cols = [c for c in scored.column_names if c.startswith("crowd_")]
    assert sft.column_names == ["messages", *scored_cols]
    assert not set(crowd.names) & set(sft.column_names)
    expected = _expected_pairs(real_table.dir, scored)
    assert len(sft) == len(expected) == pq.ParquetFile(real_table.dir / "zoo.parquet").metadata.num_rows
    for got, (instruction, response) in zip(sft["messages"], expected):
        assert got == [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
    # the best model is really the arg-max of the reward, ties to the name that sorts first (recomputed here)
    table = pq.read_table(real_table.dir / "zoo.parquet").to_pylist()
    for row, best in zip(table, scored["crowd_best_model"]):
        rewards = {m: row[m][crowd.reward] for m in crowd.names if row[m][crowd.reward] is not None}
        assert best == min(m for m, r in rewards.items() if r == max(rewards.values()))
    assert sft["crowd_id"] == scored["crowd_id"]


@pytest.mark.unit
def test_prompt_completion_and_no_metrics(real_table):
    scored = real_table.scored
    sub = scored.select(range(0, len(scored), 7))
    sft = to_sft(sub, format="prompt-completion", keep_metrics=False)
    assert sft.column_names == ["prompt", "completion"]
    expected = [p for i, p in enumerate(_expected_pairs(real_table.dir, scored)) if i % 7 == 0]
    for prompt, completion, (instruction, response) in zip(sft["prompt"], sft["completion"], expected):
        assert prompt == [{"role": "user", "content": instruction}]
        assert completion == [{"role": "assistant", "content": response}]
    assert len(sft) == len(expected)


@pytest.mark.unit
def test_long_layout_gives_the_same_rows_as_wide(real_table):
    ds, crowd = real_table.ds, real_table.crowd
    rows = ds.select(range(40)).to_list()
    rng = np.random.default_rng(1)
    long_rows = []
    for row in rows:
        order = rng.permutation(len(crowd))
        long_rows.append({"instruction": row["instruction"], "source": "x", "completions": [
            {"model": crowd.names[j], "response": row[crowd.names[j]]["content"],
             "score": row[crowd.names[j]][crowd.reward]} for j in order]})
    long_ds = datasets.Dataset.from_list(long_rows)
    long_crowd = Crowd(crowd.members, reward="score", layout="long", column="completions", content_key="response")
    long_sft = to_sft(score(long_ds, crowd=long_crowd), crowd=long_crowd)
    wide_sft = to_sft(score(ds.select(range(40)), crowd=crowd))
    assert long_sft.column_names == wide_sft.column_names  # the list column and "source" are gone
    assert long_sft["messages"] == wide_sft["messages"]
    # without a crowd, the layout is found from the columns
    assert to_sft(score(long_ds, crowd=long_crowd))["messages"] == wide_sft["messages"]
    assert CrowdBinding.resolve(long_ds, need_reward=False).layout == "long"


@pytest.mark.unit
def test_empty_best_responses_are_dropped_and_reported(real_table, caplog):
    crowd = real_table.crowd
    rows = real_table.ds.select(range(30)).to_list()
    scored_rows = score(real_table.ds.select(range(30)), crowd=crowd)["crowd_best_model"]
    for i in (3, 11):
        rows[i][scored_rows[i]]["content"] = "   "
    for name in crowd.names:  # row 20: no usable reward at all
        rows[20][name][crowd.reward] = None
    ds = score(datasets.Dataset.from_list(rows, features=real_table.ds.features), crowd=crowd)
    assert ds["crowd_best_model"][20] is None
    with caplog.at_level(logging.WARNING, logger="crowdselect_hf.sft"):
        sft, dropped = to_sft(ds, return_dropped=True)
    assert len(sft) == 27
    assert dropped["index"] == [3, 11, 20]
    assert dropped["reason"] == ["empty best response", "empty best response", "no best model (no usable reward)"]
    assert dropped["crowd_id"] == [ds["crowd_id"][i] for i in (3, 11, 20)]
    assert "dropped 3 of 30 rows" in caplog.text
    kept = set(range(30)) - {3, 11, 20}
    assert sft["crowd_id"] == [ds["crowd_id"][i] for i in sorted(kept)]
    assert all(m[1]["content"].strip() for m in sft["messages"])
    # the indices of a selected view point into that view
    view = ds.select([20, 0, 3])
    _, dropped = to_sft(view, return_dropped=True)
    assert dropped["index"] == [0, 2] and dropped["crowd_id"] == [ds["crowd_id"][20], ds["crowd_id"][3]]


@pytest.mark.unit
def test_clear_errors(gsm_ds, gsm_scored):
    with pytest.raises(CrowdError, match=r"crowd_best_model.*score the dataset first"):
        to_sft(gsm_ds)
    with pytest.raises(ValueError, match="format must be one of"):
        to_sft(gsm_scored, format="chatml")
    broken = gsm_scored.select(range(3)).map(lambda r: {"crowd_best_model": "no-such-model"})
    with pytest.raises(CrowdError, match="no column 'no-such-model'"):
        to_sft(broken)
    assert FORMATS == ("messages", "prompt-completion")


@pytest.mark.unit
def test_best_response_long_missing_model_is_an_error():
    row = {"instruction": "Say x.", "crowd_best_model": "c", "completions": [{"model": "a", "response": "x"}]}
    with pytest.raises(CrowdError, match="no entry with model='c'"):
        sft_example(row)
    long_crowd = Crowd(("a", "c"), layout="long", column="completions", content_key="response")
    with pytest.raises(CrowdError, match="no entry with model='c'"):
        to_sft(datasets.Dataset.from_list([row]), crowd=long_crowd)


@pytest.mark.unit
def test_empty_dataset_gives_empty_training_rows(gsm_scored):
    for fmt in FORMATS:
        sft, dropped = to_sft(gsm_scored.select([]), format=fmt, return_dropped=True)
        assert len(sft) == 0 and len(dropped) == 0
        assert sft.column_names == to_sft(gsm_scored.select(range(2)), format=fmt).column_names
        assert dropped.column_names == ["index", "crowd_id", "crowd_best_model", "reason"]
    assert to_sft(gsm_scored.select([]), keep_metrics=False).column_names == ["messages"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_trl_sft_trainer_consumes_both_formats(fmt, gsm_scored, tmp_path):
    torch = pytest.importorskip("torch")
    trl = pytest.importorskip("trl")
    from .tiny_models import llama_config, word_tokenizer, words_of
    from transformers import LlamaForCausalLM

    sft = to_sft(gsm_scored.select(range(8)), format=fmt)
    texts = [m["content"] for row in sft.select_columns([c for c in sft.column_names if not c.startswith("crowd_")])
             for msgs in row.values() for m in msgs]
    tokenizer = word_tokenizer(words_of(texts), max_words=2000)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(len(tokenizer)))
    args = trl.SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, max_length=64,
                         report_to="none", use_cpu=True, logging_steps=1, save_strategy="no", learning_rate=1e-3)
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=sft, processing_class=tokenizer)
    assert "input_ids" in trainer.train_dataset.column_names
    labels = trainer.train_dataset[0]["labels"]
    masked = sum(1 for t in labels if t == -100)
    if fmt == "prompt-completion":  # TRL put the loss on the completion only: it saw the prompt/completion split
        assert 0 < masked < len(labels)
    else:
        assert masked == 0
    result = trainer.train()
    assert trainer.state.global_step == 2
    assert np.isfinite(result.training_loss)
