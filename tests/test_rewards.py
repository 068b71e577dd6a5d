"""RewardScorer: every score equals an un-batched forward pass of the same model on the same chat
text, lands in the right member and field, and leaves everything else alone."""

import json
import os
import subprocess
import sys
import textwrap

import datasets
import pytest

from crowdselect_hf import Crowd, CrowdError
from crowdselect_hf.rewards import RewardScorer, reward_dataset

from .tiny_models import save_causal_lm, save_reward_model, word_tokenizer, words_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INSTRUCTIONS = [
    "Write a short poem about the rain.",
    "Say hi.",
    "Explain why the sky is blue, and tell me how the sun and the sea change its colour over one long day. " * 4,
    "List three red things.",
]
RESPONSES = {
    "tiny-a-1b": ["The rain is good.", "hi", "Because of the sun. " * 40, None],
    "tiny-a-7b": ["Rain, rain: the sky is green and the tree is blue. " * 12, "Hello! I say hi to you.", "Blue.", "A red cat, a red dog, a red tree."],
    "tiny-b-3b": [None, None, "The sea is blue because the sky is blue.", ""],
}


def _rows():
    rows = []
    for i, instruction in enumerate(INSTRUCTIONS):
        row = {"uuid": f"u{i}", "instruction": instruction, "meta": {"lang": "en", "n": i}}
        for name, responses in RESPONSES.items():
            row[name] = {"content": responses[i], "judge": float(i) - 0.5}
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def tokenizer():
    texts = INSTRUCTIONS + [r for rs in RESPONSES.values() for r in rs if r]
    return word_tokenizer(words_of(texts))


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory, tokenizer):
    return save_reward_model(tmp_path_factory.mktemp("rm") / "tiny-rm", tokenizer, seed=1)


def make_reference(path):
    """Un-batched forward passes of the model, loaded independently, on the chat text."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True).eval()

    def score(instruction, response, max_length=None, template=None, side="right"):
        conv = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        text = tok.apply_chat_template(conv, tokenize=False, chat_template=template)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if max_length is not None and len(ids) > max_length:
            ids = ids[:max_length] if side == "right" else ids[-max_length:]
        with torch.no_grad():
            return float(model(input_ids=torch.tensor([ids])).logits[0, 0])

    score.tokenizer = tok
    return score


@pytest.fixture(scope="module")
def reference(rm_path):
    return make_reference(rm_path)


@pytest.fixture
def wide_ds():
    return datasets.Dataset.from_list(_rows())


def _check_wide(before, after, name, reference, **ref_kw):
    assert after.column_names == before.column_names
    n = 0
    for row_b, row_a in zip(before, after):
        for col in before.column_names:
            if col not in RESPONSES:
                assert row_a[col] == row_b[col], col
                continue
            got = dict(row_a[col])
            score = got.pop(name)
            assert got == row_b[col]
            if row_b[col]["content"] is None:
                assert score is None
            else:
                expected = reference(row_b["instruction"], row_b[col]["content"], **ref_kw)
                assert score == pytest.approx(expected, abs=1e-5), (row_b["uuid"], col)
                n += 1
    return n


@pytest.mark.slow
@pytest.mark.parametrize("batch_size,map_batch_size,sort", [(1, 4, True), (3, 4, True), (16, 3, True), (2, 2, False)])
def test_scores_equal_unbatched_forward(wide_ds, rm_path, reference, batch_size, map_batch_size, sort):
    tok = reference.tokenizer
    lengths = [len(tok(r)["input_ids"]) for rs in RESPONSES.values() for r in rs if r]
    assert max(lengths) > 20 * min(lengths)  # very unequal lengths, so padding really happens
    scorer = RewardScorer(str(rm_path), batch_size=batch_size, sort_by_length=sort)
    # A map batch where a member has no response at all needs the output types (map would infer null).
    features = scorer.output_features(wide_ds.features) if map_batch_size < 3 else None
    out = wide_ds.map(scorer, batched=True, batch_size=map_batch_size, features=features)
    assert _check_wide(wide_ds, out, "tiny-rm", reference) == 9
    assert scorer.stats_.scored == 9 and scorer.stats_.missing == 3 and scorer.stats_.truncated == 0
    if batch_size > 1:
        assert scorer.stats_.padding_fraction > 0


@pytest.mark.slow
def test_length_sorting_cuts_padding(wide_ds, rm_path):
    fractions = {}
    for sort in (True, False):
        scorer = RewardScorer(str(rm_path), batch_size=2, sort_by_length=sort)
        wide_ds.map(scorer, batched=True, batch_size=len(wide_ds))
        fractions[sort] = scorer.stats_.padding_fraction
    assert fractions[True] < fractions[False]


@pytest.mark.slow
def test_per_example_map_and_reward_name(wide_ds, rm_path, reference):
    out = wide_ds.map(RewardScorer(str(rm_path), reward_name="my_reward"))
    assert _check_wide(wide_ds, out, "my_reward", reference) == 9


@pytest.mark.slow
def test_explicit_crowd_scores_only_its_members(wide_ds, rm_path, reference):
    crowd = Crowd(("TINY-A-7B", "tiny-b-3b"))  # matched case-insensitively
    out = wide_ds.map(RewardScorer(str(rm_path), crowd=crowd), batched=True)
    for row_b, row_a in zip(wide_ds, out):
        assert row_a["tiny-a-1b"] == row_b["tiny-a-1b"]
        for col in ("tiny-a-7b", "tiny-b-3b"):
            content = row_b[col]["content"]
            expected = None if content is None else pytest.approx(reference(row_b["instruction"], content), abs=1e-5)
            assert row_a[col]["tiny-rm"] == expected


@pytest.mark.slow
def test_long_layout(rm_path, reference):
    rows = []
    for i, instruction in enumerate(INSTRUCTIONS):
        entries = [{"model": name, "response": rs[i], "overall": 1.0 + i} for name, rs in RESPONSES.items()]
        rows.append({"prompt": instruction, "completions": entries[::-1] if i % 2 else entries})
    ds = datasets.Dataset.from_list(rows)
    for crowd, scored_models in ((None, set(RESPONSES)), (Crowd(("tiny-a-1b",), layout="long", column="completions"), {"tiny-a-1b"})):
        out = ds.map(RewardScorer(str(rm_path), crowd=crowd, reward_name="rm", batch_size=3), batched=True, batch_size=3)
        for row_b, row_a in zip(ds, out):
            assert row_a["prompt"] == row_b["prompt"]
            assert len(row_a["completions"]) == len(row_b["completions"])
            for eb, ea in zip(row_b["completions"], row_a["completions"]):
                ea = dict(ea)
                score = ea.pop("rm")
                assert ea == eb
                if eb["response"] is None or eb["model"] not in scored_models:
                    assert score is None
                else:
                    assert score == pytest.approx(reference(row_b["prompt"], eb["response"]), abs=1e-5)


@pytest.mark.slow
def test_truncation_policy(wide_ds, rm_path, reference):
    long_pairs = sum(
        len(reference.tokenizer(reference.tokenizer.apply_chat_template(
            [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r[c]["content"]}], tokenize=False),
            add_special_tokens=False)["input_ids"]) > 40
        for r in wide_ds for c in RESPONSES if r[c]["content"] is not None
    )
    assert 0 < long_pairs < 9
    for side in ("right", "left"):
        scorer = RewardScorer(str(rm_path), max_length=40, batch_size=4, truncation=side)
        out = wide_ds.map(scorer, batched=True)
        assert _check_wide(wide_ds, out, "tiny-rm", reference, max_length=40, side=side) == 9
        assert scorer.stats_.truncated == long_pairs

    skip = RewardScorer(str(rm_path), max_length=40, truncation="skip")
    out = wide_ds.map(skip, batched=True)
    scores = [row[c]["tiny-rm"] for row in out for c in RESPONSES if row[c]["content"] is not None]
    assert sum(s is None for s in scores) == long_pairs == skip.stats_.skipped

    with pytest.raises(ValueError, match=r"max_length 40 \(--max-length\) with truncation 'error'"):
        wide_ds.map(RewardScorer(str(rm_path), max_length=40, truncation="error"), batched=True)


@pytest.mark.slow
def test_reward_dataset_types_all_missing_first_batch(rm_path, reference):
    rows = _rows()
    for name in RESPONSES:  # the first map batch has nothing to score
        rows[0][name]["content"] = None
        rows[1][name]["content"] = None
    ds = datasets.Dataset.from_list(rows)
    out = reward_dataset(ds, str(rm_path), map_batch_size=2, batch_size=2)
    assert out.features["tiny-a-7b"]["tiny-rm"] == datasets.Value("float64")
    assert _check_wide(ds, out, "tiny-rm", reference) == 5


@pytest.mark.slow
def test_scored_table_feeds_crowd_inference(wide_ds, rm_path):
    from crowdselect_hf import score

    out = reward_dataset(wide_ds.map(lambda r: r, remove_columns=[]), str(rm_path))
    crowd = Crowd.infer(out, reward="tiny-rm")
    assert sorted(crowd.names) == sorted(RESPONSES)
    scored = score(out, reward="tiny-rm")
    assert scored["crowd_n_scored"] == [2, 2, 3, 2]


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.slow
def test_not_a_sequence_classifier(tmp_path, wide_ds, tokenizer):
    lm = save_causal_lm(tmp_path / "lm", tokenizer)
    with pytest.raises(ValueError, match="not a sequence classifier.*LlamaForCausalLM"):
        wide_ds.map(RewardScorer(str(lm)), batched=True)
    two = save_reward_model(tmp_path / "two", tokenizer, num_labels=2)
    with pytest.raises(ValueError, match="2 outputs.*exactly one"):
        wide_ds.map(RewardScorer(str(two)), batched=True)


@pytest.mark.slow
def test_causal_checkpoint_relabelled_as_classifier_is_refused(tmp_path, wide_ds, tokenizer):
    lm = save_causal_lm(tmp_path / "lm", tokenizer)
    cfg = json.loads((lm / "config.json").read_text())
    cfg.update(architectures=["LlamaForSequenceClassification"], id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    (lm / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="randomly initialised head"):
        RewardScorer(str(lm)).load()


@pytest.mark.slow
def test_tokenizer_without_chat_template(tmp_path, wide_ds, tokenizer):
    from .tiny_models import CHAT_TEMPLATE

    bare = word_tokenizer(words_of(INSTRUCTIONS), chat_template=None)
    path = save_reward_model(tmp_path / "bare-rm", bare, seed=1)
    with pytest.raises(ValueError, match="no chat template; pass template="):
        wide_ds.map(RewardScorer(str(path)), batched=True)
    out = wide_ds.map(RewardScorer(str(path), template=CHAT_TEMPLATE, reward_name="tiny-rm"), batched=True)
    assert _check_wide(wide_ds, out, "tiny-rm", make_reference(path), template=CHAT_TEMPLATE) == 9


@pytest.mark.slow
def test_missing_pad_token_scores_one_pair_at_a_time(tmp_path, wide_ds, tokenizer, reference):
    path = save_reward_model(tmp_path / "nopad", tokenizer, seed=1, pad_token_id=None)
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
    tok_cfg.pop("pad_token", None)
    (path / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    scorer = RewardScorer(str(path), reward_name="tiny-rm", batch_size=8)
    out = wide_ds.map(scorer, batched=True)
    assert scorer.stats_.forward_passes == 9 and scorer.stats_.padding_fraction == 0
    assert _check_wide(wide_ds, out, "tiny-rm", reference) == 9


@pytest.mark.unit
def test_missing_instruction_column(rm_path):
    batch = {"question_text": ["x"], "m-1b": [{"content": "y"}]}
    with pytest.raises(CrowdError, match="no instruction column.*question_text"):
        RewardScorer(str(rm_path))(batch)


@pytest.mark.unit
def test_no_responses_and_bad_options(rm_path):
    with pytest.raises(CrowdError, match="no responses to score"):
        RewardScorer(str(rm_path))({"instruction": ["x"], "meta": [{"lang": "en"}]})
    with pytest.raises(CrowdError, match=r"\['m-9b'\] have no column"):
        RewardScorer(str(rm_path), crowd=Crowd(("m-9b",)))({"instruction": ["x"], "m-1b": [{"content": "y"}]})
    with pytest.raises(ValueError, match="truncation must be one of"):
        RewardScorer(str(rm_path), truncation="middle")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        RewardScorer(str(rm_path), batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        RewardScorer(str(rm_path), batchsize=3)


# -- fingerprints -----------------------------------------------------------------------------

_FINGERPRINT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import datasets
    from datasets.fingerprint import Hasher
    from datasets.table import InMemoryTable
    from crowdselect_hf.generation import CrowdGenerator
    from crowdselect_hf.rewards import RewardScorer
    path, rows = sys.argv[1], json.loads(sys.argv[2])
    ds = datasets.Dataset(InMemoryTable.from_pylist(rows), fingerprint="base")
    scorer = RewardScorer(path, batch_size=4)
    before = Hasher.hash(scorer)
    out = ds.map(scorer, batched=True)
    local = CrowdGenerator([path], max_new_tokens=4)
    served = CrowdGenerator(["m-1b", "m-7b"], base_url="http://127.0.0.1:9/v1")
    print(json.dumps([before, Hasher.hash(scorer), out._fingerprint, Hasher.hash(local), Hasher.hash(served),
                      "torch" in sys.modules]))
    """
)


@pytest.mark.slow
def test_fingerprints_stable_across_processes(rm_path, tmp_path, monkeypatch):
    from datasets.fingerprint import Hasher

    from crowdselect_hf.generation import CrowdGenerator

    # Rows without responses: the map runs (and fingerprints) without loading the model, which
    # keeps these two cold processes cheap; the in-process checks below load it.
    rows = _rows()[:2]
    for row in rows:
        for name in RESPONSES:
            row[name]["content"] = None
    rows = json.dumps(rows)
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", _FINGERPRINT_SCRIPT, str(rm_path), rows], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    before, after_map, map_fingerprint, local, served, torch_imported = runs[0]
    assert not torch_imported and before == after_map
    scorer = RewardScorer(str(rm_path), batch_size=4)
    assert Hasher.hash(scorer) == before
    scorer.load()  # loading the model does not change the fingerprint
    assert Hasher.hash(scorer) == before
    ds = datasets.Dataset(datasets.table.InMemoryTable.from_pylist(json.loads(rows)), fingerprint="base")
    assert ds.map(scorer, batched=True)._fingerprint == map_fingerprint
    for changed in (RewardScorer(str(rm_path), batch_size=5), RewardScorer(str(rm_path), batch_size=4, reward_name="x"),
                    RewardScorer(str(rm_path), batch_size=4, max_length=64), RewardScorer(str(rm_path), batch_size=4, truncation="left")):
        assert Hasher.hash(changed) != before
    copy = save_reward_model(tmp_path / "tiny-rm", word_tokenizer(), seed=2)  # same name, other weights
    assert Hasher.hash(RewardScorer(str(copy), batch_size=4)) != before

    assert Hasher.hash(CrowdGenerator([str(rm_path)], max_new_tokens=4)) == local
    assert Hasher.hash(CrowdGenerator([str(rm_path)], max_new_tokens=5)) != local
    assert Hasher.hash(CrowdGenerator([str(copy)], max_new_tokens=4)) != local
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-never-hashed")
    served_here = CrowdGenerator(["m-1b", "m-7b"], base_url="http://127.0.0.1:9/v1")
    assert Hasher.hash(served_here) == served
    assert "sk-secret" not in repr(served_here.__getstate__())
    assert Hasher.hash(CrowdGenerator(["m-1b", "m-7b"], base_url="http://127.0.0.1:9/v1", seed=1)) != served
