"""Build a crowd table from instructions alone: :class:`CrowdGenerator` asks every model of a
crowd for one response per instruction, and :func:`generate_dataset` applies it model by model.

Two backends:

* ``"transformers"`` — local causal LMs (a folder or Hub id; safetensors only), the prompt
  rendered by the tokenizer's chat template, batched with left padding, greedy by default and
  seeded per micro-batch, so a run is reproducible;
* ``"openai"`` — any OpenAI-compatible server (vLLM, TGI, llama.cpp, the OpenAI API) through the
  ``openai`` client, with bounded concurrency (threads), retries with exponential back-off on
  429/5xx/connection errors, and per-row errors recorded in the row (``error``) instead of raised.

The output is the wide layout: one struct column per model, ``{"content": str | None,
"error": str | None}``. Generation is resumable: a member whose response is already present in
the row is kept as it is and not generated again (rows with ``content`` None are retried).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

from ._torch import (
    check_installed,
    check_chat_template,
    check_model_source,
    checkpoint_identity,
    dtype_kwargs,
    free,
    model_label,
    render_chat,
    require,
    resolve_device,
    resolve_dtype,
)
from .crowd import Crowd, CrowdError, Member, find_instruction, parse_model_name

logger = logging.getLogger(__name__)

GENERATION_VERSION = "1"
"""Bumped whenever the responses generated for a given configuration would change."""

BACKENDS = ("transformers", "openai")
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class GeneratorModel:
    """One model of the crowd to generate with.

    Args:
        name: the output column (default: the last part of ``model``).
        model: a local folder or Hub id (transformers), or the model name the server knows (openai).
        family, params_b: for stability; read from ``name`` by :func:`~crowdselect_hf.parse_model_name`
            when not given.

    Example:
        >>> m = GeneratorModel.of("Qwen/Qwen2.5-7B-Instruct")
        >>> m.name, m.family, m.params_b
        ('Qwen2.5-7B-Instruct', 'qwen2.5-instruct', 7.0)
    """

    name: str
    model: str
    family: str | None = None
    params_b: float | None = None

    def __post_init__(self):
        if not self.name or not self.model:
            raise ValueError(f"a generator model needs a name and a model, got {self!r}")
        family, size = parse_model_name(self.name)
        if self.family is None:
            object.__setattr__(self, "family", family)
        if self.params_b is None:
            object.__setattr__(self, "params_b", size)

    @classmethod
    def of(cls, spec: Any) -> "GeneratorModel":
        """From a string (``model``), a mapping ``{name?, model, family?, params_b?}``, a
        ``(name, model)`` pair, or a :class:`GeneratorModel`."""
        if isinstance(spec, GeneratorModel):
            return spec
        if isinstance(spec, str):
            return cls(model_label(spec), spec)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"name", "model", "family", "params_b"}
            if unknown or "model" not in spec:
                raise ValueError(f"a model mapping needs 'model' (and optionally name, family, params_b); got keys {sorted(spec)}")
            return cls(spec.get("name") or model_label(spec["model"]), spec["model"], spec.get("family"), spec.get("params_b"))
        if isinstance(spec, Sequence) and len(spec) == 2 and all(isinstance(s, str) for s in spec):
            return cls(spec[0], spec[1])
        raise ValueError(f"cannot read a generator model from {spec!r}")


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that determines the responses (and so the fingerprint) of a :class:`CrowdGenerator`.

    Args:
        max_new_tokens: longest response in tokens.
        temperature: 0 = greedy; otherwise sampling, seeded.
        top_p: nucleus sampling (with ``temperature > 0``).
        seed: base seed; each micro-batch (transformers) or request (openai) derives its own.
        batch_size: prompts per ``generate`` call (transformers).
        system_prompt: an optional system turn before the instruction.
        instruction: the instruction column (default: ``instruction``/``prompt``/``question``).
        backend: ``"transformers"`` or ``"openai"`` (default: ``"openai"`` when ``base_url`` is set).
        base_url: the OpenAI-compatible endpoint, e.g. ``http://localhost:8000/v1``.
        api_key_env: the environment variable holding the API key (the key itself is never
            stored, so it never reaches a fingerprint or a pickle); ``"EMPTY"`` when unset.
        max_concurrency: requests in flight at once (openai).
        max_retries: retries after a 429, a 5xx, a timeout or a connection error (openai).
        backoff, max_backoff: the first retry waits about ``backoff`` seconds, doubling up to
            ``max_backoff`` (a ``Retry-After`` header is honoured up to it).
        timeout: seconds per request (openai).
        device, dtype, trust_remote_code, revision, template: as for reward models.
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8
    system_prompt: str | None = None
    instruction: str | None = None
    backend: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    max_retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float = 120.0
    device: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    template: str | None = None

    def __post_init__(self):
        backend = self.backend or ("openai" if self.base_url else "transformers")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        object.__setattr__(self, "backend", backend)
        for name in ("max_new_tokens", "batch_size", "max_concurrency"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {self.max_retries!r}")
        if not (self.temperature >= 0) or not (0 < self.top_p <= 1):
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature!r}, {self.top_p!r}")


@dataclass
class GenerationStats:
    """Counts of one generator in one process (``generator.stats_``)."""

    generated: int = 0
    kept: int = 0
    failed: int = 0
    retries: int = 0


class CrowdGenerator:
    """A batched ``ds.map`` transform that writes one response per model into every row.

    Args:
        models: the crowd — model strings (``"Qwen/Qwen2.5-7B-Instruct"``, a local folder, or a
            served model name), mappings ``{name, model, family, params_b}``, ``(name, model)``
            pairs or :class:`GeneratorModel`; a mapping ``{name: model}`` works too.
        max_new_tokens, temperature, seed: see :class:`GenerationConfig`, as are the other
            keyword arguments (``base_url`` selects the OpenAI-compatible backend).

    Use :func:`generate_dataset` (one model at a time, output types fixed), or
    ``ds.map(gen, batched=True, features=gen.output_features(ds.features))``. Local models are
    loaded lazily on the first call and kept until :meth:`unload`; they are never pickled.

    Example:
        >>> gen = CrowdGenerator(["Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct"], max_new_tokens=256)
        >>> [(m.name, m.family, m.params_b) for m in gen.crowd]
        [('Qwen2.5-1.5B-Instruct', 'qwen2.5-instruct', 1.5), ('Qwen2.5-7B-Instruct', 'qwen2.5-instruct', 7.0)]
        >>> ds = ds.map(gen, batched=True, features=gen.output_features(ds.features))  # doctest: +SKIP
    """

    def __init__(self, models: Any, max_new_tokens: int = 512, temperature: float = 0.0, seed: int = 0, **options: Any):
        if isinstance(models, (str, GeneratorModel)):
            models = [models]
        elif isinstance(models, Mapping):
            models = [GeneratorModel(name, model) for name, model in models.items()]
        specs = tuple(GeneratorModel.of(m) for m in models)
        if not specs:
            raise ValueError("CrowdGenerator needs at least one model")
        names = [m.name for m in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model column name(s) {dupes} appear twice; name them apart with {{'name': ..., 'model': ...}}")
        unknown = set(options) - set(GenerationConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"CrowdGenerator got unexpected keyword argument(s) {sorted(unknown)}")
        if "dtype" in options and options["dtype"] is not None:
            options["dtype"] = str(options["dtype"]).replace("torch.", "")
        self.models = specs
        self.config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, **options)
        if self.config.backend == "openai":
            check_installed("openai", "generate", "generation through an OpenAI-compatible server")
            self.identity = tuple(f"served:{m.model}@{self.config.base_url}" for m in specs)
        else:
            check_installed("torch", "generate", "local generation")
            check_installed("transformers", "generate", "local generation")
            self.identity = tuple(checkpoint_identity(m.model, self.config.revision) for m in specs)
        self._reset()

    def _reset(self):
        self._loaded: dict[str, tuple[Any, Any, str]] = {}
        self._client = None
        self._lock = threading.Lock()
        self.stats_ = GenerationStats()

    def __getstate__(self):
        return {"models": [asdict(m) for m in self.models], "config": asdict(self.config),
                "identity": self.identity, "version": GENERATION_VERSION}

    def __setstate__(self, state):
        self.models = tuple(GeneratorModel(**m) for m in state["models"])
        self.config = GenerationConfig(**state["config"])
        self.identity = tuple(state["identity"])
        self._reset()

    def __repr__(self):
        return f"CrowdGenerator({[m.name for m in self.models]}, backend={self.config.backend!r})"

    @property
    def crowd(self) -> Crowd:
        """The crowd this generator writes (wide layout, no reward yet)."""
        return Crowd(tuple(Member(m.name, m.family, m.params_b) for m in self.models),
                     instruction=self.config.instruction or "instruction")

    def output_features(self, features=None):
        """``datasets.Features`` after generation: every member a struct with ``content`` and
        ``error`` (strings); an existing member struct keeps its other fields."""
        import datasets

        new = dict(features or {})
        text = datasets.Value("string")
        for m in self.models:
            old = new.get(m.name)
            if old is not None and not isinstance(old, Mapping):
                raise CrowdError(f"column {m.name!r} exists but is not a struct of responses (it is {old}); rename the model with name=")
            new[m.name] = {**(old or {}), "content": text, "error": text}
        return datasets.Features(new)

    # -- the map transform ------------------------------------------------------------------
    def __call__(self, batch: Any, rank: int | None = None) -> dict[str, list]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"CrowdGenerator expects a batch as a dict of columns, got {type(batch).__name__}")
        column = find_instruction(batch.keys(), self.config.instruction)
        batched = isinstance(batch[column], (list, tuple))
        columns = batch if batched else {k: [v] for k, v in batch.items()}
        instructions = columns[column]
        for row, text in enumerate(instructions):
            if not isinstance(text, str):
                raise CrowdError(f"instruction column {column!r} must hold text; row {row} of the batch holds {text!r}")
        out = {}
        for m in self.models:
            existing = columns.get(m.name)
            values: list[dict | None] = [None] * len(instructions)
            todo = []
            for row in range(len(instructions)):
                old = existing[row] if existing is not None else None
                if old is not None and not isinstance(old, Mapping):
                    raise CrowdError(f"column {m.name!r} must hold response structs, row {row} of the batch holds {old!r}")
                if old is not None and old.get("content") is not None:
                    values[row] = {**old, "error": old.get("error")}
                    self.stats_.kept += 1
                else:
                    values[row] = dict(old or {})
                    todo.append(row)
            if todo:
                results = self._generate(m, [instructions[r] for r in todo], rank)
                for row, (content, error) in zip(todo, results):
                    values[row].update(content=content, error=error)
                    if error is None:
                        self.stats_.generated += 1
                    else:
                        self.stats_.failed += 1
            out[m.name] = values
        return out if batched else {k: v[0] for k, v in out.items()}

    def _messages(self, instruction: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.config.system_prompt}] if self.config.system_prompt else []
        return system + [{"role": "user", "content": instruction}]

    def _generate(self, m: GeneratorModel, instructions: list[str], rank: int | None) -> list[tuple[str | None, str | None]]:
        if self.config.backend == "openai":
            return self._generate_openai(m, instructions)
        return self._generate_local(m, instructions, rank)

    def _seed(self, m: GeneratorModel, instruction: str) -> int:
        h = hashlib.blake2b(f"{self.config.seed}\0{m.name}\0{instruction}".encode(), digest_size=4)
        return int.from_bytes(h.digest(), "little")

    # -- transformers -----------------------------------------------------------------------
    def load(self, m: GeneratorModel | str, rank: int | None = None):
        """Load (or return the loaded) tokenizer, model and device of one member."""
        if isinstance(m, str):
            m = next((x for x in self.models if x.name == m), None) or GeneratorModel.of(m)
        if m.name in self._loaded:
            return self._loaded[m.name]
        transformers = require("transformers", "generate", "local generation")
        cfg = self.config
        kw = dict(revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        check_model_source(m.model, "model")
        tokenizer = transformers.AutoTokenizer.from_pretrained(m.model, **kw)
        check_chat_template(tokenizer, cfg.template, m.model)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError(f"the tokenizer of {m.model!r} has neither a pad nor an eos token; batched generation needs one")
            tokenizer.pad_token = tokenizer.eos_token
        device = resolve_device(cfg.device, rank)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                m.model, use_safetensors=True, **dtype_kwargs(resolve_dtype(cfg.dtype, device)), **kw)
        except (OSError, ValueError) as e:
            raise type(e)(f"cannot load {m.model!r} as a causal LM with safetensors weights: {e}") from None
        self._loaded[m.name] = (tokenizer, model.to(device).eval(), device)
        return self._loaded[m.name]

    def unload(self) -> None:
        """Drop every loaded model and the client."""
        devices = [d for _, _, d in self._loaded.values()]
        self._loaded.clear()
        self._client = None
        for d in set(devices) or {"cpu"}:
            free(d)

    def _generate_local(self, m: GeneratorModel, instructions: list[str], rank: int | None):
        import torch

        tokenizer, model, device = self.load(m, rank)
        cfg = self.config
        prompts = [render_chat(tokenizer, self._messages(i), cfg.template, add_generation_prompt=True) for i in instructions]
        lengths = [len(x) for x in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda j: (-lengths[j], j))
        out: list[tuple[str | None, str | None]] = [(None, None)] * len(prompts)
        sampling = cfg.temperature > 0
        extra = dict(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p) if sampling else dict(do_sample=False)
        for start in range(0, len(order), cfg.batch_size):
            chunk = order[start : start + cfg.batch_size]
            enc = tokenizer([prompts[j] for j in chunk], add_special_tokens=False, padding=True, return_tensors="pt")
            torch.manual_seed(self._seed(m, instructions[chunk[0]]))
            with torch.inference_mode():
                gen = model.generate(
                    input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                    max_new_tokens=cfg.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **extra,
                )
            new = gen[:, enc["input_ids"].shape[1]:].cpu()
            for j, text in zip(chunk, tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[j] = (text.strip(), None)
        return out

    # -- OpenAI-compatible ------------------------------------------------------------------
    def _openai_client(self):
        with self._lock:
            if self._client is None:
                openai = require("openai", "generate", "generation through an OpenAI-compatible server")
                self._client = openai.OpenAI(
                    base_url=self.config.base_url, api_key=os.environ.get(self.config.api_key_env) or "EMPTY",
                    max_retries=0, timeout=self.config.timeout,
                )
            return self._client

    def _generate_openai(self, m: GeneratorModel, instructions: list[str]):
        client = self._openai_client()
        workers = min(self.config.max_concurrency, len(instructions))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crowdselect-gen") as pool:
            return list(pool.map(lambda i: self._ask(client, m, i), instructions))

    def _ask(self, client, m: GeneratorModel, instruction: str) -> tuple[str | None, str | None]:
        import openai

        cfg = self.config
        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError, openai.APITimeoutError)
        params = dict(model=m.model, messages=self._messages(instruction), max_tokens=cfg.max_new_tokens,
                      temperature=cfg.temperature, top_p=cfg.top_p, seed=self._seed(m, instruction) % (2**31))
        for attempt in range(cfg.max_retries + 1):
            try:
                reply = client.chat.completions.create(**params)
            except retryable as e:
                if attempt == cfg.max_retries:
                    return None, _describe(e, attempt + 1)
                with self._lock:
                    self.stats_.retries += 1
                time.sleep(self._delay(attempt, e))
                continue
            except openai.OpenAIError as e:  # 4xx other than 429, malformed replies: retrying will not help
                return None, _describe(e, attempt + 1)
            choices = getattr(reply, "choices", None) or []
            content = choices[0].message.content if choices and choices[0].message is not None else None
            if content is None:
                return None, f"the server returned no content (model {m.model!r})"
            return content, None
        return None, "no attempt made"  # unreachable: max_retries >= 0

    def _delay(self, attempt: int, error: Exception) -> float:
        cfg = self.config
        wait = min(cfg.max_backoff, cfg.backoff * 2**attempt) * (0.5 + random.random() / 2)
        response = getattr(error, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        try:
            if header is not None:
                wait = max(wait, min(cfg.max_backoff, float(header)))
        except ValueError:
            pass
        return wait


def _describe(error: Exception, attempts: int) -> str:
    status = getattr(error, "status_code", None)
    head = f"{type(error).__name__}" + (f" (HTTP {status})" if status else "")
    text = f"{head} after {attempts} attempt{'s' if attempts > 1 else ''}: {error}"
    return text[:_MAX_ERROR_CHARS]


def generate_dataset(ds, models: Any, *, map_batch_size: int = 64, num_proc: int | None = None, **options: Any):
    """Add one response column per model to an instruction dataset (the CLI calls this).

    Models run one after the other (one model in memory at a time); each is a batched
    ``ds.map`` with the output types fixed, so the datasets cache makes a re-run free and a
    partly generated table resumes where it stopped.

    Args:
        ds: a ``datasets.Dataset`` with an instruction column (other columns are kept).
        models: as :class:`CrowdGenerator`.
        map_batch_size: rows per ``ds.map`` batch.
        num_proc: processes; with CUDA, process ``rank`` uses GPU ``rank % device_count``.
        options: ``max_new_tokens``, ``temperature``, ``seed``, ``base_url``, ... (:class:`GenerationConfig`).

    Returns:
        The dataset with a ``{content, error}`` struct per model. Failed rows have
        ``content=None`` and the reason in ``error``; they are logged and retried on a re-run.

    Example:
        >>> crowd_table = generate_dataset(ds, ["tiny-a-1b", "tiny-a-7b"], base_url="http://localhost:8000/v1")  # doctest: +SKIP
    """
    import datasets

    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"generate_dataset expects a datasets.Dataset, got {type(ds).__name__}")
    if len(ds) == 0:
        raise CrowdError("the dataset is empty: there is nothing to generate for")
    specs = CrowdGenerator(models, **options).models
    for m in specs:
        gen = CrowdGenerator([m], **options)
        ds = ds.map(gen, batched=True, batch_size=map_batch_size, features=gen.output_features(ds.features),
                    num_proc=num_proc, with_rank=True, desc=f"generate {m.name}")
        gen.unload()
        failed = _count_missing(ds, m.name)
        if failed:
            logger.warning("%s: %d of %d rows have no response (see their 'error'); run again to retry them", m.name, failed, len(ds))
    return ds


def _count_missing(ds, column: str) -> int:
    import pyarrow.compute as pc

    col = ds.with_format("arrow")[column]
    return int(pc.sum(pc.is_null(pc.struct_field(col, ["content"]))).as_py() or 0)


def members_of(models: Iterable[Any]) -> list[Member]:
    """The crowd members (name, family, size) a list of model specs generates."""
    return [Member(m.name, m.family, m.params_b) for m in map(GeneratorModel.of, models)]

