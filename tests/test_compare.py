"""``crowdselect compare`` end to end, offline on the CPU, with results known in advance.

The pool is built so that each compared selection teaches its student one answer:
``reward-top-8`` picks rows whose best answer is "the sun is good .", ``reward-bottom-8`` (the
baseline) "the rain is bad .", ``length-longest-8`` a long answer about a cat. Tiny students are
built from a config and trained for real with TRL until each answers every prompt with its one
answer. The pairwise judge is a stub OpenAI-compatible server with a fixed rule — the answer that
mentions the sun wins, otherwise a tie; prompts marked "always first" get "A wins" whatever the
order (pure position bias, which the two orders cancel into a tie); prompts marked "no verdict"
get a reply without a label. So the win rates are known before anything runs. The reward judge
is a tiny random reward model, checked against scores computed here straight with transformers.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import datasets
import numpy as np
import pytest

import crowdselect_hf as cs
from crowdselect_hf.compare import CompareError
from crowdselect_hf.compare.config import MIN_EVAL_PROMPTS, CompareSettings, settings_of
from crowdselect_hf.compare.evalset import held_out_indices
from crowdselect_hf.compare.record import read_comparison
from crowdselect_hf.compare.stats import bootstrap_ci, holm, paired_result, sign_test
from crowdselect_hf.compare.verdicts import parse_verdict, position_stats, prompt_scores
from crowdselect_hf.pipeline import OutputConfig, SelectionConfig, curate

from .tiny_models import save_causal_lm, save_reward_model, word_tokenizer, words_of

SUN, RAIN, CAT = "the sun is good .", "the rain is bad .", "the cat and the dog are one two three four five and the tree is green ."
TOPICS = ("sky", "sea", "tree", "dog", "cat", "rain", "sun", "poem")
NORMAL, FIRST, SILENT = 18, 4, 2  # held-out prompts: judged normally, "always first", "no verdict"
CONFIGS = ("reward-bottom-8", "reward-top-8", "length-longest-8")
BASELINE = "reward-bottom-8"


def _pool_rows():
    rows = []

    def add(instruction, best, reward):
        rows.append({"instruction": instruction, "m-a-1b": {"content": "no .", "r": 0.1},
                     "m-a-7b": {"content": best, "r": reward}})

    for i, t in enumerate(TOPICS):
        add(f"Tell me about the {t} one .", SUN, 0.9)
        add(f"Say a word on the {t} two .", RAIN, 0.2)
        add(f"Give a list for the {t} three .", CAT, 0.5)
    held = [f"Write a poem about the {t} {n} ." for t in TOPICS for n in ("four", "five")][:NORMAL - 2]
    held += ["What is one and two ?", "Explain why the sky is blue ."]
    held += [f"always first : describe the {t} ." for t in TOPICS[:FIRST]]
    held += [f"no verdict : describe the {t} ." for t in TOPICS[:SILENT]]
    for text in held:
        add(text, "yes .", 0.5)
    return rows


class JudgeStub:
    """A pairwise judge on /v1/chat/completions (127.0.0.1) with the fixed rule of this module;
    after ``fail_after`` replies it answers HTTP 500 (the judge died). Stops by itself."""

    def __init__(self, fail_after: int | None = None, deadline_s: float = 300):
        self.requests: list[dict] = []
        self.fail_after = fail_after
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                served = sum(1 for r in stub.requests if r.get("_ok"))
                if stub.fail_after is not None and served >= stub.fail_after:
                    return self._send(500, {"error": {"message": "the judge is down"}})
                body["_ok"] = True
                content = stub.rule(body["messages"][-1]["content"])
                self._send(200, {"id": "j", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 0.2
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._stop = threading.Event()
        end = time.monotonic() + deadline_s

        def serve():
            while not self._stop.is_set() and time.monotonic() < end:
                self.server.handle_request()
            self.server.server_close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    @staticmethod
    def rule(prompt: str) -> str:
        question = re.search(r"<\|User Prompt\|>\n(.*?)\n\n", prompt, re.S).group(1)
        a = re.search(r"Assistant A's Answer\|>\n(.*?)\n<\|The End", prompt, re.S).group(1)
        b = re.search(r"Assistant B's Answer\|>\n(.*?)\n<\|The End", prompt, re.S).group(1)
        if question.startswith("always first"):
            return "A reads better. My final verdict is: [[A>B]]"
        if question.startswith("no verdict"):
            return "I cannot decide between them."
        if ("sun" in a) != ("sun" in b):
            return "My final verdict is: [[A>>B]]" if "sun" in a else "My final verdict is: [[B>A]]"
        return "My final verdict is tie: [[A=B]]"

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    rows = _pool_rows()
    pool = datasets.Dataset.from_list(rows)
    pool_path = root / "pool.parquet"
    pool.to_parquet(str(pool_path))
    folder = root / "curated"
    for strategy in ("reward-bottom", "reward-top", "length-longest"):
        curate(pool, SelectionConfig(k=8, strategy=strategy), OutputConfig(out=str(folder), report=False),
               source={"dataset": str(pool_path)})
    # not compared: its clusters label the evaluation prompts
    curate(pool, SelectionConfig(k=8, strategy="cluster-random", n_clusters=3, n_init=2), OutputConfig(out=str(folder), report=False),
           source={"dataset": str(pool_path)})
    texts = [r["instruction"] for r in rows] + [SUN, RAIN, CAT]
    tokenizer = word_tokenizer(words_of(texts))
    student = save_causal_lm(root / "tiny-student", tokenizer, seed=0)
    reward_model = save_reward_model(root / "tiny-rm", tokenizer, seed=1)
    return {"root": root, "folder": folder, "pool": pool_path, "student": str(student), "rm": str(reward_model)}


def _options(curated, judge_url, **extra):
    return dict(configs=CONFIGS, baseline=BASELINE, learning_rate=2e-2, epochs=20, train_batch_size=8, grad_accum=1,
                warmup_steps=0, max_length=64, save_steps=5, use_cpu=True, gradient_checkpointing=False, eval_size=50, allow_small_eval=True,
                max_new_tokens=6, answer_batch_size=8, reward_model=curated["rm"], judge_model="stub-judge",
                judge_base_url=judge_url, judge_retries=0, judge_concurrency=4, bootstrap=500, say=None, progress=False,
                **extra)


# -- pure parts ---------------------------------------------------------------------------------------

@pytest.mark.unit
def test_sign_test_and_holm_agree_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for wins, losses in [(18, 0), (9, 1), (5, 5), (30, 12), (0, 7), (61, 39)]:
        assert sign_test(wins, losses) == pytest.approx(scipy_stats.binomtest(wins, wins + losses).pvalue, rel=1e-12)
    # by hand: sorted 0.01·4 = 0.04, 0.03·3 = 0.09, 0.04·2 = 0.08 → 0.09 (monotone), 0.2·1 = 0.2
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])


@pytest.mark.unit
def test_bootstrap_is_seeded_and_matches_a_plain_loop():
    x = np.r_[np.ones(18), np.full(4, 0.5)]
    rng = np.random.default_rng(7)
    means = [x[rng.integers(0, x.size, size=x.size)].mean() for _ in range(300)]
    assert bootstrap_ci(x, 300, seed=7) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), rel=1e-12)
    assert bootstrap_ci(x, 300, seed=7) == bootstrap_ci(x, 300, seed=7) != bootstrap_ci(x, 300, seed=8)
    big = np.random.default_rng(0).random(5000)  # chunked resampling gives the same draw as one block
    rng = np.random.default_rng(3)
    block = big[rng.integers(0, 5000, size=(1000, 5000))].mean(axis=1)
    assert bootstrap_ci(big, 1000, seed=3) == tuple(np.quantile(block, [0.025, 0.975]))


@pytest.mark.unit
def test_verdicts_both_orders_and_ties():
    assert parse_verdict("reasoning... [[B>>A]]") == "B>>A" and parse_verdict("[[ A = B ]]") == "A=B"
    assert parse_verdict("[[B<A]]") == "A>B" and parse_verdict("[[A>B]] then [[B>A]]") is None
    assert parse_verdict("[[A>B]] ... final: [[A>B]]") == "A>B" and parse_verdict(None) is None
    # game 1 shows the baseline as A: "B>A" is a candidate win; in game 2 "A>B" is
    assert prompt_scores(["B>A", "A>B", "A=B", "A>>B", None], ["A>B", "A>B", "A=B", "B>A", "A>B"]).tolist()[:4] == [1, 0.5, 0.5, 0]
    stats = position_stats(["A>B", "A>B"], ["A>B", "A=B"])
    assert stats == {"consistent": 0.0, "first_wins": 1.0, "no_verdict": 0}
    r = paired_result("c", "b", "pairwise", [1, 0.5, 0.5, 0.75, 0.25, 0, np.nan], n_resamples=100)
    assert (r.n, r.wins, r.ties, r.losses) == (6, 2, 2, 2) and r.p_value == 1.0 and not r.significant
    assert "not significant" in r.sentence()


@pytest.mark.unit
def test_held_out_draw_is_seeded_and_disjoint():
    ids = [f"id{i % 90}" for i in range(100)]  # ten duplicates
    texts = [f"t{i}" for i in range(100)]
    selected = {f"id{i}" for i in range(0, 90, 3)}
    a = held_out_indices(ids, texts, selected, 20, seed=5)
    assert a.tolist() == held_out_indices(ids, texts, selected, 20, seed=5).tolist() == sorted(a.tolist())
    assert a.tolist() != held_out_indices(ids, texts, selected, 20, seed=6).tolist()
    assert len(a) == 20 and not {ids[i] for i in a} & selected and len({ids[i] for i in a}) == 20
    assert len(held_out_indices(ids, texts, selected, 500, seed=0)) == 60  # every unselected unique id, once


@pytest.mark.unit
def test_settings_route_options_and_reject_unknown_ones():
    s = settings_of(student="m", lora=True, judge_model="j", eval_size=200, configs=["a", "b"])
    assert (s.train.lora, s.judge.judges, s.evaluation.eval_size, s.run.configs) == (True, ("pairwise",), 200, ("a", "b"))
    assert s.train.learning_rate == 1e-5 and s.train.epochs == 3 and s.train.warmup_steps == 150  # the paper's
    with pytest.raises(TypeError, match="unknown option"):
        settings_of(student="m", lr=1e-5)
    with pytest.raises(CompareError, match="scheduler must be one of"):
        settings_of(student="m", scheduler="step")


# -- end to end ---------------------------------------------------------------------------------------

class KillTraining:
    """Raises (like Ctrl-C) at step ``step`` of the ``nth`` training run it sees."""

    def __init__(self, nth: int, step: int):
        from transformers import TrainerCallback

        outer = self
        self.runs = 0

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                outer.runs += 1

            def on_step_end(self, args, state, control, **kw):
                if outer.runs == nth and state.global_step == step:
                    raise KeyboardInterrupt(f"killed at step {step}")

        self.callback = Callback()


def _rewards_by_hand(rm_path, prompts, answers):
    """Scores of (prompt, answer) pairs straight through transformers, one pair at a time."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(rm_path)
    model = AutoModelForSequenceClassification.from_pretrained(rm_path).eval()
    out = []
    for p, answer in zip(prompts, answers):
        text = tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": answer}], tokenize=False)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out.append(float(model(input_ids=ids).logits[0, 0]))
    return np.array(out)


@pytest.fixture(scope="module")
def compared(curated, one_thread):
    """The whole comparison, as a user lives it: killed while training, then the judge dies half
    way, then a run that finishes. Spies record what each run recomputed."""
    from crowdselect_hf.compare import training
    from crowdselect_hf.generation import CrowdGenerator
    from crowdselect_hf.rewards import RewardScorer

    folder, out = curated["folder"], curated["folder"] / "_compare"
    seen: dict = {"fits": []}
    with pytest.MonkeyPatch.context() as mp:
        real_fit = training._fit
        mp.setattr(training, "_fit", lambda *a, **k: seen["fits"].append(a[3]) or real_fit(*a, **k))

        # 1. killed in the middle of the second student's training (after its checkpoint at step 5)
        dead = JudgeStub(fail_after=0)
        kill = KillTraining(nth=2, step=7)
        with pytest.raises(KeyboardInterrupt):
            cs.compare(folder, curated["student"], callbacks=[kill.callback], **_options(curated, dead.url))
        seen["after_kill"] = list(seen["fits"])
        seen["checkpoints_after_kill"] = sorted(p.name for p in (out / "students" / "reward-top-8").iterdir())

        # 2. resumes that student from its checkpoint, trains the third, answers and scores; the
        #    judge serves 30 replies and then dies: the stage fails and says to run again
        half = JudgeStub(fail_after=30)
        with pytest.raises(CompareError) as failed:
            cs.compare(folder, curated["student"], **_options(curated, half.url))
        seen["judge_failure"] = str(failed.value)
        dead.stop(), half.stop()

        # 3. a healthy judge, and spies that fail on any recomputation
        mp.setattr(training, "_fit", lambda *a, **k: pytest.fail("a cached student was trained again"))
        mp.setattr(CrowdGenerator, "_generate_local", lambda *a, **k: pytest.fail("cached answers were generated again"))
        mp.setattr(RewardScorer, "score_pairs", lambda *a, **k: pytest.fail("cached rewards were scored again"))
        judge = JudgeStub()
        lines: list[str] = []
        try:
            done = cs.compare(folder, curated["student"], **{**_options(curated, judge.url), "say": lines.append})
        finally:
            judge.stop()
        seen["final_requests"] = len(judge.requests)
    evalset = datasets.Dataset.from_parquet(str(out / "eval.parquet"))
    answers = {c: datasets.Dataset.from_parquet(str(out / "answers" / f"{c}.parquet"))["content"] for c in CONFIGS}
    return {**curated, "done": done, "record": done.record, "out": out, "seen": seen, "said": lines,
            "prompts": evalset["instruction"], "clusters": evalset["cluster"], "answers": answers, "judge_url": judge.url}


def _known_scores(prompts):
    """Per compared prompt (in evaluation order) the score of reward-top-8 under the stub's rule."""
    return np.array([0.5 if p.startswith("always first") else 1.0 for p in prompts if not p.startswith("no verdict")])


@pytest.mark.slow
def test_a_killed_run_resumes_at_the_stage_that_failed(compared):
    seen, out = compared["seen"], compared["out"]
    assert seen["after_kill"] == ["reward-bottom-8", "reward-top-8"]
    assert "checkpoint-5" in seen["checkpoints_after_kill"] and "final" not in seen["checkpoints_after_kill"]
    # run 2 resumed reward-top-8 from its checkpoint and trained the third student; run 3 trained nothing
    assert seen["fits"] == ["reward-bottom-8", "reward-top-8", "reward-top-8", "length-longest-8"]
    trained = json.loads((out / "students" / "reward-top-8" / "trained.json").read_text())
    assert trained["resumed_from"] == "checkpoint-5" and trained["global_step"] == 20
    assert not list((out / "students" / "reward-top-8").glob("checkpoint-*"))  # removed once final/ exists
    # the judge died after 30 of 96 games: 66 failed, and exactly those were asked again
    assert re.search(r"^66 pairwise judge calls failed .*run again", seen["judge_failure"])
    assert seen["final_requests"] == 66
    summary = {s.config: s for s in compared["record"].students}
    assert summary["reward-top-8"].resumed_from == "checkpoint-5" and summary[BASELINE].resumed_from is None


@pytest.mark.slow
def test_the_estimate_is_printed_before_starting(compared):
    said = compared["said"]
    assert said.index("estimate (before starting):") < said.index("[train] reward-bottom-8")
    assert all(f"  train  {c}: cached (8 rows, 20 steps)" in said for c in CONFIGS), said
    assert "  answer 24 prompts × 3 students = 72 answers of ≤ 6 new tokens (≤ 432 tokens)" in said
    assert "  judge  reward model: 72 answers; pairwise: 96 judge calls (both orders)" in said
    assert any(line.startswith("WARNING: UNDERPOWERED COMPARISON — only 24 evaluation prompts") for line in said)
    assert any(line.startswith("reward-top-8 vs reward-bottom-8 (pairwise judge): win rate 90.9%") for line in said)
    e = compared["done"].estimate
    assert e.params == sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(
        compared["student"]).parameters())
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(compared["student"])
    rows = datasets.load_dataset(str(compared["folder"]), "reward-top-8", split="train")["messages"]
    assert {s.config: s.tokens for s in e.students}["reward-top-8"] == sum(
        len(tokenizer.apply_chat_template(m, tokenize=True)["input_ids"]) for m in rows)


@pytest.mark.slow
def test_the_evaluation_set_is_the_held_out_pool(compared):
    record, prompts = compared["record"], compared["prompts"]
    assert len(prompts) == NORMAL + FIRST + SILENT == record.evaluation["prompts"] == 24
    trained_on = {m[0]["content"] for c in CONFIGS
                  for m in datasets.load_dataset(str(compared["folder"]), c, split="train")["messages"]}
    assert not set(prompts) & trained_on
    assert record.evaluation["clusters_from"] == "cluster-random-8" and min(compared["clusters"]) >= 0
    assert record.underpowered and record.evaluation["min_eval_prompts"] == MIN_EVAL_PROMPTS
    # the premise of the known win rates: each student learned its one answer
    answers = compared["answers"]
    assert set(answers["reward-top-8"]) == {SUN}
    assert all("sun" not in a for c in ("reward-bottom-8", "length-longest-8") for a in answers[c])


@pytest.mark.slow
def test_pairwise_win_rates_are_the_known_ones(compared):
    record, prompts = compared["record"], compared["prompts"]
    top = record.result("reward-top-8", "pairwise")
    # 18 wins; 4 ties from the prompts where the judge always prefers the first answer (the two
    # orders cancel it); 2 prompts without a verdict left out
    assert (top.n, top.wins, top.ties, top.losses) == (22, 18, 4, 0)
    assert top.win_rate == 20 / 22
    assert top.p_value == 2 / 2**18 and top.p_adjusted == 2 * top.p_value and top.significant
    scores = _known_scores(prompts)
    rng = np.random.default_rng(0)
    means = scores[rng.integers(0, scores.size, size=(500, scores.size))].mean(axis=1)
    assert top.win_rate_ci == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), rel=1e-12)
    cat = record.result("length-longest-8", "pairwise")
    assert (cat.n, cat.wins, cat.ties, cat.losses, cat.win_rate, cat.win_rate_ci) == (22, 0, 22, 0, 0.5, (0.5, 0.5))
    assert cat.p_value == 1.0 and not cat.significant and "not significant" in cat.sentence()
    assert record.position["reward-top-8"] == {"consistent": 18 / 22, "first_wins": 26 / 44, "no_verdict": 4}
    assert record.judges["pairwise"]["system_prompt"].startswith("Please act as an impartial judge")
    per_cluster = [c for c in record.clusters if c.config == "reward-top-8" and c.judge == "pairwise"]
    assert sum(c.n for c in per_cluster) == 22


@pytest.mark.slow
def test_reward_judge_agrees_with_scores_computed_by_hand(compared):
    scipy_stats = pytest.importorskip("scipy.stats")
    record, prompts, answers = compared["record"], compared["prompts"], compared["answers"]
    by_hand = {c: _rewards_by_hand(compared["rm"], prompts, a) for c, a in answers.items()}
    for c in ("reward-top-8", "length-longest-8"):
        r = record.result(c, "reward")
        d = by_hand[c] - by_hand[BASELINE]
        assert r.mean_difference == pytest.approx(d.mean(), abs=1e-5)
        assert (r.wins, r.losses, r.ties) == (int((d > 1e-6).sum()), int((d < -1e-6).sum()), 0)
        assert r.p_value == pytest.approx(scipy_stats.binomtest(r.wins, r.wins + r.losses).pvalue)
    summary = {s.config: s for s in record.students}
    assert summary["reward-top-8"].mean_reward == pytest.approx(by_hand["reward-top-8"].mean(), abs=1e-5)
    assert summary[BASELINE].answered == 24


@pytest.mark.slow
def test_compare_json_card_and_report(compared):
    from crowdselect_hf.report import write_report

    record, folder = compared["record"], compared["folder"]
    assert read_comparison(folder / "_compare" / "compare.json") == record
    options = {k: v for k, v in _options(compared, compared["judge_url"]).items() if k not in ("say", "progress")}
    assert CompareSettings.from_dict(record.settings) == settings_of(student=compared["student"], **options)
    assert "--allow-small-eval" in record.command and "--judge-base-url" in record.command
    readme = (folder / "README.md").read_text()
    assert "## Downstream comparison" in readme and "**Underpowered:**" in readme
    assert "| `reward-top-8` | pairwise | 90.9% [" in readme and "| `length-longest-8` | pairwise | 50.0% [50.0%, 50.0%]" in readme
    assert datasets.load_dataset(str(folder), "reward-top-8", split="train").num_rows == 8  # still loads
    page = write_report(folder / "reward-top-8", out=compared["root"] / "bare.html", plots=False).read_text()
    assert "<section id='comparison'" in page and "href='#comparison'" in page and "Underpowered" in page
    assert "reward-top-8 vs reward-bottom-8 (pairwise judge): win rate 90.9%" in page
    other = write_report(folder / "cluster-random-8", out=compared["root"] / "other.html", plots=False).read_text()
    assert "id='comparison'" not in other  # not compared: no section


@pytest.mark.slow
def test_another_bootstrap_seed_changes_only_the_intervals(compared):
    judge = JudgeStub(fail_after=0)
    try:
        again = cs.compare(compared["folder"], compared["student"],
                           **_options(compared, judge.url, bootstrap_seed=1)).record
    finally:
        judge.stop()
    assert len(judge.requests) == 0
    scores = _known_scores(compared["prompts"])
    rng = np.random.default_rng(1)
    means = scores[rng.integers(0, scores.size, size=(500, scores.size))].mean(axis=1)
    top = again.result("reward-top-8", "pairwise")
    assert top.win_rate_ci == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), rel=1e-12)
    # two-valued scores give coarse intervals (seeds 0 and 1 may agree); the reward differences are continuous
    before = compared["record"].result("reward-top-8", "reward")
    assert again.result("reward-top-8", "reward").mean_difference_ci != before.mean_difference_ci
    assert again.result("reward-top-8", "reward").mean_difference == before.mean_difference
    assert top.win_rate == 20 / 22 and again.settings["judge"]["bootstrap_seed"] == 1


# -- refusals, the command line, the page in a browser ---------------------------------------------

@pytest.mark.slow
def test_too_few_prompts_or_no_judge_is_refused_before_training(curated, tmp_path, monkeypatch):
    from crowdselect_hf.compare import training

    monkeypatch.setattr(training, "_fit", lambda *a, **k: pytest.fail("trained before refusing"))
    options = {**_options(curated, "http://127.0.0.1:9/v1"), "out": str(tmp_path / "work")}
    with pytest.raises(CompareError, match=r"only 24 evaluation prompts, fewer than the stated minimum of 100 .*--allow-small-eval"):
        cs.compare(curated["folder"], curated["student"], **{**options, "allow_small_eval": False})
    with pytest.raises(CompareError, match="no judge is configured"):
        cs.compare(curated["folder"], curated["student"], **{**options, "reward_model": None, "judge_model": None})
    with pytest.raises(CompareError, match="has no config 'crowdselect-8'.*configs found: cluster-random-8, length-longest-8"):
        cs.compare(curated["folder"], curated["student"], **{**options, "configs": ("crowdselect-8", BASELINE)})
    with pytest.raises(CompareError, match="needs the pool's instructions.*pass --pool"):
        _compare_without_pool(curated, {**options, "out": str(tmp_path / "w2")}, tmp_path)


def _compare_without_pool(curated, options, tmp_path):
    """A curated folder whose selections record a source that is not a loadable path."""
    import shutil

    from crowdselect_hf.record import SELECTION_FILE, sidecar

    folder = tmp_path / "copy"
    shutil.copytree(curated["folder"], folder, ignore=shutil.ignore_patterns("_compare"))
    for c in CONFIGS:
        path = sidecar(folder / c) / SELECTION_FILE
        data = json.loads(path.read_text())
        data["source"] = {"dataset": "an in-memory table"}
        path.write_text(json.dumps(data))
    cs.compare(folder, curated["student"], **options)


@pytest.mark.unit
def test_students_of_other_settings_are_not_silently_replaced(tmp_path):
    from crowdselect_hf.compare.config import TrainConfig
    from crowdselect_hf.compare.training import train_student

    folder = tmp_path / "students" / "a"
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text(json.dumps({"key": "old", "settings": {"train": {"learning_rate": 2e-5}}}))
    with pytest.raises(CompareError, match=r"trained with other settings \(train.learning_rate: 2e-05 → 1e-05\); pass --retrain"):
        train_student(None, "m", folder, "a", TrainConfig(), "new", {"train": {"learning_rate": 1e-5}})


@pytest.mark.slow
def test_the_command_line_reruns_from_the_cache(compared, capsys):
    from crowdselect_hf.cli import main

    o = _options(compared, "http://127.0.0.1:9/v1")  # nothing may be asked of a judge now
    argv = ["compare", str(compared["folder"]), "--student", compared["student"], "--configs", ",".join(CONFIGS),
            "--baseline", BASELINE, "--learning-rate", "0.02", "--epochs", "20", "--train-batch-size", "8",
            "--grad-accum", "1", "--warmup-steps", "0", "--max-length", "64", "--save-steps", "5", "--use-cpu",
            "--gradient-checkpointing", "false", "--eval-size", "50", "--allow-small-eval", "--max-new-tokens", "6",
            "--answer-batch-size", "8", "--reward-model", o["reward_model"], "--judge-model", "stub-judge",
            "--judge-base-url", o["judge_base_url"], "--judge-retries", "0", "--judge-concurrency", "4", "--bootstrap", "500"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "reward-top-8 vs reward-bottom-8 (pairwise judge): win rate 90.9%" in printed and "compare.json:" in printed
    assert main([*argv[:2], "--student", compared["student"], "--stop-after", "estimate", "--configs", ",".join(CONFIGS),
                 "--baseline", BASELINE, "--eval-size", "50", "--allow-small-eval"]) == 0
    printed = capsys.readouterr().out
    assert "  train  reward-top-8: 8 rows × 3 epochs" in printed and "judge  none configured" in printed
    assert "stopped after estimate" in printed and "[train]" not in printed
    with pytest.raises(SystemExit) as usage:
        main(["compare", str(compared["folder"]), "--student", "m", "--scheduler", "step"])
    assert usage.value.code == 2
    assert main(["compare", str(compared["folder"]), "--student", compared["student"], "--configs", "nope,reward-top-8"]) == 1
    assert "has no config 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_section_renders_in_headless_chromium(compared, tmp_path):
    from crowdselect_hf.report import write_report

    from .test_report import CHROMIUM_NAMES, _chromium, _probe, _run_chromium, _screenshot_pixels

    binary = _chromium()
    if binary is None:
        pytest.skip(f"no Chromium binary found (looked for {', '.join(CHROMIUM_NAMES)})")
    report = write_report(compared["folder"] / "reward-top-8")
    text = report.read_text(encoding="utf-8")
    assert "<section id='comparison'" in text
    result = _probe(binary, tmp_path, text, "probed.html")
    assert result["errors"] == [] and result["images"] == result["loaded"] > 0
    # only the section, for a screenshot a person can look at
    section = text[text.index("<section id='comparison'"):]
    section = section[:section.index("</section>") + len("</section>")]
    page = text[:text.index("<main class='wrap'>") + len("<main class='wrap'>")] + section + "</main></body></html>"
    only = tmp_path / "comparison.html"
    only.write_text(page, encoding="utf-8")
    shot = Path(os.environ.get("CROWDSELECT_SCREENSHOT_DIR", tmp_path)) / "comparison-section.png"
    _run_chromium(binary, tmp_path, only.as_uri(), f"--screenshot={shot}", "--window-size=1280,3000", "--hide-scrollbars",
                  "--virtual-time-budget=10000")
    pixels = _screenshot_pixels(shot)
    assert pixels.shape[:2] == (3000, 1280) and pixels[:, :, :3].std() > 0.05


@pytest.mark.unit
def test_the_paper_example_prints_the_workload_the_readme_states():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "examples" / "compare_paper.py"), "--workload"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "ESTIMATES, not measurements" in text
    # 4 configs × 1,000 rows × 3 epochs × 290 tokens, 8·N·T with N = 3.21e9; 4 × ceil(500 / 8) × 1,024 decode steps
    assert "3.48M tokens; 8.9e+16 FLOPs" in text and "258,048 decode steps" in text and "3,000 judge calls" in text
    readme = (root / "README.md").read_text(encoding="utf-8")
    for hours in re.findall(r"^\s+(train|answer|reward judge)\s+(\d+\.\d\d) h", text, flags=re.M):
        assert f"| {hours[1]}" in readme, f"README's GPU-hours for {hours[0]} differ from the script's {hours[1]}"
    assert "3.48M tokens, 8.9e16 FLOPs" in readme and "258,048 decode steps" in readme


@pytest.mark.slow
def test_an_eval_file_replaces_the_held_out_slice(compared, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(compared["out"], work)  # the trained students move along: nothing is trained again
    prompts = [f"Tell a story about the {t} and the sea ." for t in TOPICS] + ["", "Say hi .", "Say hi ."]
    eval_file = tmp_path / "prompts.jsonl"
    eval_file.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(prompts)))
    judge = JudgeStub()
    try:
        options = {**_options(compared, judge.url, out=str(work), eval_file=str(eval_file)), "reward_model": None}
        record = cs.compare(compared["folder"], compared["student"], **options).record
    finally:
        judge.stop()
    assert record.evaluation["kind"] == "file" and record.evaluation["column"] == "prompt"
    assert record.evaluation["prompts"] == 9  # the empty prompt and the repeated one are dropped
    assert len(judge.requests) == 2 * 9 * 2 and record.judges_run() == ["pairwise"]
    # these prompts were never seen in training: the expectation comes from the answers given, through the stub's rule
    answers = {c: datasets.Dataset.from_parquet(str(work / "answers" / f"{c}.parquet")) for c in CONFIGS}
    questions = datasets.Dataset.from_parquet(str(work / "eval.parquet"))["instruction"]
    assert sorted(questions) == sorted(set(p for p in prompts if p))
    from crowdselect_hf.compare.verdicts import judge_prompt

    def score(q, base, cand):
        v1, v2 = (parse_verdict(JudgeStub.rule(judge_prompt(q, base, cand, g))) for g in (1, 2))
        return prompt_scores([v1], [v2])[0]

    for c in ("reward-top-8", "length-longest-8"):
        expected = [score(q, b, a) for q, b, a in zip(questions, answers[BASELINE]["content"], answers[c]["content"])]
        r = record.result(c, "pairwise")
        assert r.n == 9 and r.win_rate == pytest.approx(np.mean(expected))
        assert (r.wins, r.ties, r.losses) == tuple(int(f(np.array(expected), 0.5).sum()) for f in (np.greater, np.equal, np.less))
    assert record.result("reward-top-8", "pairwise").wins >= 7  # the sun student still says "sun" on most new prompts
    assert record.clusters == ()
    assert json.loads((work / "students" / "reward-top-8" / "trained.json").read_text())["resumed_from"] == "checkpoint-5"


@pytest.mark.unit
def test_served_students_are_asked_by_their_config_name():
    from crowdselect_hf.compare.answers import generator_for
    from crowdselect_hf.compare.config import AnswerConfig

    gen = generator_for("reward-top-8", "/work/students/reward-top-8/final",
                        AnswerConfig(student_base_url="http://localhost:8000/v1", max_new_tokens=7), seed=3)
    assert gen.config.backend == "openai" and gen.config.base_url == "http://localhost:8000/v1"
    assert [(m.name, m.model) for m in gen.models] == [("reward-top-8", "reward-top-8")]
    assert (gen.config.max_new_tokens, gen.config.seed) == (7, 3)
    local = generator_for("reward-top-8", "/work/students/reward-top-8/final", AnswerConfig(), seed=3)
    assert local.config.backend == "transformers" and local.models[0].model == "/work/students/reward-top-8/final"


@pytest.mark.slow
def test_a_lora_student_is_merged_into_a_plain_checkpoint(curated, one_thread, tmp_path):
    from crowdselect_hf.compare.config import TrainConfig
    from crowdselect_hf.compare.run import _training_rows
    from crowdselect_hf.compare.training import train_student
    from transformers import AutoModelForCausalLM

    train = TrainConfig(lora=True, lora_r=4, max_steps=2, train_batch_size=4, grad_accum=1, warmup_steps=0, max_length=64,
                        use_cpu=True, gradient_checkpointing=False, learning_rate=1e-2)
    rows = _training_rows(curated["folder"], "reward-top-8")
    done = train_student(rows, curated["student"], tmp_path / "lora", "reward-top-8", train, "k", {"train": "lora"}, progress=False)
    final = Path(done.path)
    assert done.global_step == 2 and (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(final)
    base = AutoModelForCausalLM.from_pretrained(curated["student"])
    assert not any("lora" in n for n, _ in merged.named_parameters())
    changed = [n for (n, a), (_, b) in zip(merged.named_parameters(), base.named_parameters()) if not (a == b).all()]
    assert changed and all(n.endswith("proj.weight") for n in changed)  # only the adapted linear layers moved
