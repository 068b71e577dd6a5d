"""CrowdGenerator: local tiny causal LMs (batched, left-padded, seeded), an OpenAI-compatible stub
server that fails on purpose, resuming, and the pipeline generate → reward → score → select → SFT."""

import functools
import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import datasets
import pytest

from crowdselect_hf import Crowd, CrowdError
from crowdselect_hf.generation import CrowdGenerator, GeneratorModel, generate_dataset

from .tiny_models import CHAT_TEMPLATE, save_causal_lm, save_reward_model, word_tokenizer, words_of

INSTRUCTIONS = [
    "Write a short poem about the rain.",
    "Say hi.",
    "Tell a story about a cat , a dog and the sea , and explain why the sky is blue .",
    "List three red things.",
    "What is one and two?",
]
NAMES = ("tiny-a-1b", "tiny-a-7b", "tiny-b-3b")


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer(words_of(INSTRUCTIONS))


@pytest.fixture(scope="module")
def lm_paths(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("lms")
    return [str(save_causal_lm(root / name, tokenizer, seed=i)) for i, name in enumerate(NAMES)]


@pytest.fixture
def instructions_ds():
    return datasets.Dataset.from_dict({"instruction": INSTRUCTIONS, "source": [f"s{i}" for i in range(len(INSTRUCTIONS))]})


@functools.lru_cache(maxsize=None)
def _load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).eval()


def _reference_greedy(path, instruction, max_new_tokens):
    """One prompt at a time, no padding, straight through transformers."""
    import torch

    tok, model = _load(path)
    text = tok.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


@pytest.mark.slow
def test_local_greedy_batched_equals_one_by_one(instructions_ds, lm_paths):
    out = generate_dataset(instructions_ds, lm_paths, max_new_tokens=6, batch_size=3, map_batch_size=4)
    assert out.column_names == ["instruction", "source", *NAMES]
    assert out["source"] == instructions_ds["source"]
    for name, path in zip(NAMES, lm_paths):
        assert out.features[name] == {"content": datasets.Value("string"), "error": datasets.Value("string")}
        for row in out:
            assert row[name]["error"] is None
            assert row[name]["content"] == _reference_greedy(path, row["instruction"], 6)
    # the models really differ, so the crowd is not three copies of one answer
    assert len({tuple(r["content"] for r in out[name]) for name in NAMES}) == 3


@pytest.mark.slow
def test_sampling_is_reproducible_for_a_seed(lm_paths):
    batch = {"instruction": INSTRUCTIONS}
    run = lambda seed: CrowdGenerator(lm_paths[:1], max_new_tokens=8, temperature=1.0, seed=seed, batch_size=2)(batch)
    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first != other


@pytest.mark.slow
def test_resume_keeps_present_responses(lm_paths):
    batch = {
        "instruction": INSTRUCTIONS[:3],
        "tiny-a-1b": [{"content": "KEEP ME", "error": None, "judge": 0.5}, {"content": None, "error": "timeout", "judge": None}, None],
    }
    gen = CrowdGenerator(lm_paths[:1], max_new_tokens=4)
    out = gen(batch)["tiny-a-1b"]
    assert out[0] == {"content": "KEEP ME", "error": None, "judge": 0.5}
    assert out[1]["content"] == _reference_greedy(lm_paths[0], INSTRUCTIONS[1], 4) and out[1]["error"] is None
    assert out[1]["judge"] is None and out[2]["content"] == _reference_greedy(lm_paths[0], INSTRUCTIONS[2], 4)
    assert (gen.stats_.kept, gen.stats_.generated) == (1, 2)
    # everything present: the model is never loaded, so even a missing checkpoint is fine
    done = {"instruction": ["x"], "ghost-1b": [{"content": "done", "error": None}]}
    gone = CrowdGenerator(["/nonexistent/ghost-1b"])
    assert gone(done) == {"ghost-1b": [{"content": "done", "error": None}]}


@pytest.mark.unit
def test_members_family_and_size():
    gen = CrowdGenerator(["/models/tiny-a-1b", {"name": "tiny-a-7b", "model": "org/some-7b-chat"},
                          {"model": "served-x", "name": "custom", "family": "tiny-b", "params_b": 3}], base_url="http://x/v1")
    crowd = gen.crowd
    assert [(m.name, m.family, m.params_b) for m in crowd] == [("tiny-a-1b", "tiny-a", 1.0), ("tiny-a-7b", "tiny-a", 7.0),
                                                               ("custom", "tiny-b", 3.0)]
    assert crowd.families == {"tiny-a": ["tiny-a-1b", "tiny-a-7b"], "tiny-b": ["custom"]}
    assert GeneratorModel.of(("col", "srv")).model == "srv"


@pytest.mark.unit
def test_bad_input(lm_paths):
    with pytest.raises(CrowdError, match="no instruction column.*'text'"):
        CrowdGenerator(lm_paths[:1])({"text": ["hi"]})
    with pytest.raises(CrowdError, match="row 1 of the batch holds None"):
        CrowdGenerator(lm_paths[:1])({"instruction": ["hi", None]})
    with pytest.raises(ValueError, match="appear twice"):
        CrowdGenerator(["a/m-1b", "b/m-1b"])
    with pytest.raises(ValueError, match="backend must be one of"):
        CrowdGenerator(["m-1b"], backend="ollama")
    with pytest.raises(TypeError, match="unexpected keyword"):
        CrowdGenerator(["m-1b"], max_tokens=3)
    with pytest.raises(CrowdError, match="exists but is not a struct"):
        CrowdGenerator(["m-1b"]).output_features(datasets.Features({"instruction": datasets.Value("string"), "m-1b": datasets.Value("string")}))


@pytest.mark.slow
def test_tokenizer_without_chat_template(tmp_path, tokenizer):
    path = str(save_causal_lm(tmp_path / "bare-1b", word_tokenizer(words_of(INSTRUCTIONS), chat_template=None)))
    with pytest.raises(ValueError, match="no chat template; pass template="):
        CrowdGenerator([path], max_new_tokens=2)({"instruction": ["hi"]})
    out = CrowdGenerator([path], max_new_tokens=2, template=CHAT_TEMPLATE)({"instruction": ["hi"]})
    assert out["bare-1b"][0]["error"] is None and isinstance(out["bare-1b"][0]["content"], str)


# -- OpenAI-compatible backend against a stub server --------------------------------------------

class _Stub:
    """/v1/chat/completions on 127.0.0.1. Behaviour by instruction: ``flaky`` answers 500 twice
    then succeeds, ``busy`` answers 429 (Retry-After: 0) once, ``broken`` always 500, ``bad``
    400; anything else succeeds. Serves at most ``max_requests`` and stops by itself."""

    def __init__(self, max_requests=200, deadline_s=120):
        self.requests: list[dict] = []
        self.healed = False
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                prompt = body["messages"][-1]["content"]
                seen = sum(r["messages"][-1]["content"] == prompt and r["model"] == body["model"] for r in stub.requests)
                if prompt == "broken" and not stub.healed:
                    return self._send(500, {"error": {"message": "boom"}})
                if prompt == "flaky" and seen <= 2:
                    return self._send(500, {"error": {"message": "try again"}})
                if prompt == "busy" and seen <= 1:
                    return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                if prompt == "bad":
                    return self._send(400, {"error": {"message": "bad request"}})
                content = f"{body['model']} says: {prompt[::-1]}"
                self._send(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 0.2
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._stop = threading.Event()
        end = time.monotonic() + deadline_s

        def serve():
            while not self._stop.is_set() and len(self.requests) < max_requests and time.monotonic() < end:
                self.server.handle_request()
            self.server.server_close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)

    def count(self, prompt, model=None):
        return sum(r["messages"][-1]["content"] == prompt and (model is None or r["model"] == model) for r in self.requests)


@pytest.fixture
def stub():
    s = _Stub()
    yield s
    s.stop()


@pytest.mark.unit
def test_openai_backend_retries_and_records_errors(stub):
    prompts = ["hello", "flaky", "busy", "broken", "bad", "world"]
    ds = datasets.Dataset.from_dict({"instruction": prompts})
    models = ["srv-a-1b", {"name": "srv-b-3b", "model": "served/b"}]
    opts = dict(base_url=stub.url, max_retries=3, backoff=0.01, max_concurrency=3, max_new_tokens=7, seed=5)
    out = generate_dataset(ds, models, map_batch_size=4, **opts)
    for name, served in (("srv-a-1b", "srv-a-1b"), ("srv-b-3b", "served/b")):
        col = dict(zip(prompts, out[name]))
        for p in ("hello", "flaky", "busy", "world"):
            assert col[p] == {"content": f"{served} says: {p[::-1]}", "error": None}
        assert col["broken"]["content"] is None and "InternalServerError (HTTP 500) after 4 attempts" in col["broken"]["error"]
        assert col["bad"]["content"] is None and "BadRequestError (HTTP 400) after 1 attempt:" in col["bad"]["error"]
        assert (stub.count("flaky", served), stub.count("busy", served), stub.count("broken", served), stub.count("bad", served)) == (3, 2, 4, 1)
    sent = stub.requests[0]
    assert sent["max_tokens"] == 7 and sent["temperature"] == 0.0 and isinstance(sent["seed"], int)

    # a re-run asks again only for the failed rows
    stub.healed = True
    n = len(stub.requests)
    again = generate_dataset(out, models, **opts)
    assert len(stub.requests) - n == 4  # broken and bad, for each of the two models
    assert dict(zip(prompts, again["srv-a-1b"]))["broken"] == {"content": "srv-a-1b says: nekorb", "error": None}
    assert again["srv-a-1b"][0] == out["srv-a-1b"][0]


@pytest.mark.unit
def test_openai_unreachable_server_is_a_row_error():
    gen = CrowdGenerator(["m-1b"], base_url="http://127.0.0.1:9/v1", max_retries=1, backoff=0.01, timeout=2)
    out = gen({"instruction": ["hi"]})
    assert out["m-1b"][0]["content"] is None and out["m-1b"][0]["error"].startswith("APIConnectionError after 2 attempts")
    assert (gen.stats_.failed, gen.stats_.retries) == (1, 1)


# -- end to end ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_pipeline_generate_reward_score_select_sft(tmp_path, tokenizer, lm_paths):
    import crowdselect_hf as cs
    from crowdselect_hf.rewards import reward_dataset

    instructions = [f"{w} {v} about the {x} ." for w in ("Write", "Tell", "Explain") for v in ("a poem", "a story")
                    for x in ("rain", "sea", "cat", "dog")]
    ds = datasets.Dataset.from_dict({"instruction": instructions})
    crowd_table = generate_dataset(ds, lm_paths, max_new_tokens=5, batch_size=8, map_batch_size=12)
    rm = save_reward_model(tmp_path / "tiny-rm", word_tokenizer(words_of(instructions)), seed=3)
    scored = reward_dataset(crowd_table, str(rm), batch_size=8)
    crowd = Crowd.infer(scored)
    assert crowd.reward == "tiny-rm" and crowd.families == {"tiny-a": ["tiny-a-1b", "tiny-a-7b"], "tiny-b": ["tiny-b-3b"]}
    with_metrics = scored.map(cs.crowd_score, batched=True)
    for row in with_metrics:
        rewards = [row[n]["tiny-rm"] for n in NAMES]
        assert row["crowd_difficulty"] == pytest.approx(-sum(rewards) / 3)
        assert row["crowd_best_model"] == NAMES[max(range(3), key=lambda j: rewards[j])]
        assert row["crowd_n_families"] == 1  # tiny-b has one member, so only tiny-a counts
    if importlib.util.find_spec("crowdselect_hf.selection") is None:
        return
    from crowdselect_hf.selection import crowd_select

    sel = crowd_select(with_metrics, k=6, n_clusters=2)
    assert len(sel.indices) == 6
    curated = with_metrics.select(sel.indices)
    if importlib.util.find_spec("crowdselect_hf.sft") is None:
        return
    from crowdselect_hf.sft import to_sft

    sft = to_sft(curated)
    for row, example in zip(curated, sft):
        assert example["messages"][0] == {"role": "user", "content": row["instruction"]}
        assert example["messages"][1] == {"role": "assistant", "content": row[row["crowd_best_model"]]["content"]}
