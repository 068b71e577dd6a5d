"""Score every crowd member's response with a reward model: :class:`RewardScorer`, a batched
``ds.map`` transform, and :func:`reward_dataset`, which applies it with the right output types.

The reward model is a sequence classifier with one output (e.g. ``Skywork/Skywork-Reward-Llama-3.1-8B``)
that reads the conversation ``user: instruction / assistant: response`` through the tokenizer's
chat template. Scores land in each member's struct (wide layout) or list entry (long layout)
under ``reward_name``; nothing else in the row changes. Within each map batch the pairs are sorted
by length into micro-batches so little compute goes to padding.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from ._torch import (
    check_installed,
    check_chat_template,
    checkpoint_identity,
    dtype_kwargs,
    free,
    model_label,
    render_chat,
    require,
    resolve_device,
    resolve_dtype,
)
from .crowd import CONTENT_KEYS, INSTRUCTION_KEYS, MODEL_KEYS, Crowd, CrowdError, _pick

logger = logging.getLogger(__name__)

REWARD_VERSION = "1"
"""Bumped whenever the scores written for a given configuration would change."""

TRUNCATION = ("right", "left", "skip", "error")


@dataclass(frozen=True)
class RewardConfig:
    """Everything that determines the scores (and so the fingerprint) of a :class:`RewardScorer`.

    Args:
        model: a local folder or a Hub id of a sequence classifier with one output.
        reward_name: the field the score is written to; default: the model's name.
        max_length: longest conversation in tokens; longer ones follow ``truncation``.
        batch_size: pairs per forward pass (micro-batch).
        max_batch_tokens: optional cap on ``pairs × longest`` per forward pass (bounds GPU memory).
        truncation: ``"right"`` keeps the first ``max_length`` tokens, ``"left"`` the last ones,
            ``"skip"`` gives the pair no score (None), ``"error"`` raises.
        sort_by_length: sort pairs by length before cutting micro-batches (less padding).
        device, dtype: ``None`` = CUDA with bf16 (fp16 on GPUs without bf16) when present, else
            CPU with fp32.
        trust_remote_code: run the checkpoint's own Python code (off unless you trust it).
        revision: Hub revision (branch, tag or commit).
        template: a jinja chat template for tokenizers that have none.
    """

    model: str
    reward_name: str | None = None
    max_length: int = 4096
    batch_size: int = 8
    max_batch_tokens: int | None = None
    truncation: str = "right"
    sort_by_length: bool = True
    device: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    template: str | None = None

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a local path or a Hub id (a string), got {self.model!r}")
        if self.truncation not in TRUNCATION:
            raise ValueError(f"truncation must be one of {TRUNCATION}, got {self.truncation!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2, got {self.max_length!r}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < self.max_length:
            raise ValueError(f"max_batch_tokens ({self.max_batch_tokens}) must be at least max_length ({self.max_length})")


@dataclass
class RewardStats:
    """Counts of one scorer in one process (``scorer.stats_``)."""

    pairs: int = 0
    scored: int = 0
    missing: int = 0
    truncated: int = 0
    skipped: int = 0
    tokens: int = 0
    padded_slots: int = 0
    forward_passes: int = 0

    @property
    def padding_fraction(self) -> float:
        """Share of the token slots of all forward passes that were padding."""
        return 0.0 if self.padded_slots == 0 else 1.0 - self.tokens / self.padded_slots


@dataclass
class _Plan:
    layout: str
    instruction: str
    content_key: str
    members: list[str] = field(default_factory=list)  # wide: columns; long: allowed models (empty = all)
    column: str | None = None
    model_key: str | None = None


class RewardScorer:
    """A batched ``ds.map`` transform writing a reward-model score into every member's response.

    Args:
        model: a local folder or Hub id of a sequence classifier with **one** output, loaded with
            safetensors only, lazily on the first call (never pickled).
        reward_name: the field the score is written to; default: the model's name
            (``Skywork/Skywork-Reward-Llama-3.1-8B`` → ``Skywork-Reward-Llama-3.1-8B``).
        crowd: which members to score; inferred from each batch when ``None`` (wide: struct
            columns with a text ``content``; long: a list column of ``{model, content, ...}``).
        max_length, batch_size, device, dtype, trust_remote_code: see :class:`RewardConfig`;
            other keyword arguments (``truncation``, ``sort_by_length``, ``max_batch_tokens``,
            ``revision``, ``template``) too.

    A member whose response is missing (``None``) gets the score ``None``. Use
    ``ds.map(scorer, batched=True)`` (add ``num_proc=N, with_rank=True`` for N GPUs), or
    :func:`reward_dataset`, which also fixes the output types. ``scorer.stats_`` counts pairs,
    truncations and padding in this process.

    Example:
        >>> scorer = RewardScorer("Skywork/Skywork-Reward-Llama-3.1-8B", batch_size=16)
        >>> scorer.reward_name
        'Skywork-Reward-Llama-3.1-8B'
        >>> ds = ds.map(scorer, batched=True, batch_size=256)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        reward_name: str | None = None,
        crowd: Crowd | None = None,
        max_length: int = 4096,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        **options: Any,
    ):
        check_installed("torch", "rewards", "RewardScorer")
        check_installed("transformers", "rewards", "RewardScorer")
        if crowd is not None and not isinstance(crowd, Crowd):
            raise TypeError(f"crowd must be a Crowd or None, got {type(crowd).__name__}")
        unknown = set(options) - {"truncation", "sort_by_length", "max_batch_tokens", "revision", "template"}
        if unknown:
            raise TypeError(f"RewardScorer got unexpected keyword argument(s) {sorted(unknown)}")
        dtype_name = None if dtype is None else str(dtype).replace("torch.", "")
        self.config = RewardConfig(model=model, reward_name=reward_name, max_length=max_length, batch_size=batch_size,
                                   device=None if device is None else str(device), dtype=dtype_name,
                                   trust_remote_code=trust_remote_code, **options)
        self.crowd = crowd
        self.identity = checkpoint_identity(model, self.config.revision)
        self._reset()

    @property
    def reward_name(self) -> str:
        return self.config.reward_name or model_label(self.config.model)

    def _reset(self):
        self._model = None
        self._tokenizer = None
        self._device = None
        self._pad_id = None
        self._per_pair = False
        self._plans: dict[Any, _Plan] = {}
        self.stats_ = RewardStats()

    def __getstate__(self):
        return {"config": asdict(self.config), "crowd": self.crowd, "identity": self.identity, "version": REWARD_VERSION}

    def __setstate__(self, state):
        self.config = RewardConfig(**state["config"])
        self.crowd = state["crowd"]
        self.identity = state["identity"]
        self._reset()

    def __repr__(self):
        return f"RewardScorer({self.config.model!r}, reward_name={self.reward_name!r})"

    # -- model ------------------------------------------------------------------------------
    def load(self, rank: int | None = None) -> "RewardScorer":
        """Load the tokenizer and model now (the first call does it otherwise)."""
        if self._model is not None:
            return self
        transformers = require("transformers", "rewards", "RewardScorer")
        cfg = self.config
        kw = dict(revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        tokenizer = transformers.AutoTokenizer.from_pretrained(cfg.model, **kw)
        check_chat_template(tokenizer, cfg.template, cfg.model)
        mconf = transformers.AutoConfig.from_pretrained(cfg.model, **kw)
        archs = getattr(mconf, "architectures", None) or []
        if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
            raise ValueError(
                f"{cfg.model!r} is not a sequence classifier (its architectures are {archs}); a reward model "
                "is an *ForSequenceClassification checkpoint with one output"
            )
        if getattr(mconf, "num_labels", 1) != 1:
            raise ValueError(f"{cfg.model!r} has {mconf.num_labels} outputs; a reward model must have exactly one (num_labels=1)")
        device = resolve_device(cfg.device, rank)
        dtype = resolve_dtype(cfg.dtype, device)
        try:
            model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
                cfg.model, use_safetensors=True, output_loading_info=True, **dtype_kwargs(dtype), **kw
            )
        except ValueError as e:
            raise ValueError(f"cannot load {cfg.model!r} as a sequence classifier: {e}") from None
        except OSError as e:
            raise OSError(f"cannot load {cfg.model!r} (safetensors weights are required): {e}") from None
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            raise ValueError(
                f"{cfg.model!r} is not a trained sequence classifier: the checkpoint lacks {missing[:4]} "
                "(loading it would score with a randomly initialised head)"
            )
        pad_id = model.config.pad_token_id
        if pad_id is None and tokenizer.pad_token_id is not None:
            pad_id = tokenizer.pad_token_id
            model.config.pad_token_id = pad_id
        if pad_id is None:
            logger.warning("%s defines no pad token: scoring one pair per forward pass", cfg.model)
            self._per_pair = True
        self._tokenizer, self._pad_id = tokenizer, pad_id
        self._model = model.to(device).eval()
        self._device = device
        return self

    def unload(self) -> None:
        """Drop the model (e.g. between two reward models on one GPU)."""
        device = self._device or "cpu"
        self._model = self._tokenizer = None
        free(device)

    # -- scoring ----------------------------------------------------------------------------
    def chat_text(self, instruction: str, response: str) -> str:
        """The exact text the model scores for one pair."""
        self.load()
        return render_chat(
            self._tokenizer,
            [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}],
            self.config.template,
            add_generation_prompt=False,
        )

    def score_pairs(self, instructions: Sequence[str], responses: Sequence[str], rank: int | None = None,
                    where: Sequence[str] | None = None) -> list[float | None]:
        """Scores of (instruction, response) pairs, in their order (None for skipped ones).

        Args:
            where: optional description of each pair for error messages (row and member).
        """
        import torch

        self.load(rank)
        cfg = self.config
        texts = [self.chat_text(i, r) for i, r in zip(instructions, responses)]
        ids = self._tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        scores: list[float | None] = [None] * len(ids)
        keep = []
        for j, seq in enumerate(ids):
            if len(seq) > cfg.max_length:
                if cfg.truncation == "error":
                    at = f" ({where[j]})" if where else ""
                    raise ValueError(f"pair {j}{at} has {len(seq)} tokens, more than max_length={cfg.max_length} (truncation='error')")
                if cfg.truncation == "skip":
                    self.stats_.skipped += 1
                    continue
                ids[j] = seq[: cfg.max_length] if cfg.truncation == "right" else seq[-cfg.max_length:]
                self.stats_.truncated += 1
            keep.append(j)
        if cfg.sort_by_length:
            keep.sort(key=lambda j: -len(ids[j]))
        with torch.inference_mode():
            for chunk in self._micro_batches(keep, ids):
                for j, s in zip(chunk, self._forward([ids[j] for j in chunk])):
                    scores[j] = s
        self.stats_.pairs += len(ids)
        self.stats_.scored += sum(s is not None for s in scores)
        return scores

    def _micro_batches(self, order: list[int], ids: list[list[int]]):
        cap = 1 if self._per_pair else self.config.batch_size
        budget = self.config.max_batch_tokens
        chunk: list[int] = []
        longest = 0
        for j in order:
            n = len(ids[j])
            if chunk and (len(chunk) >= cap or (budget and max(longest, n) * (len(chunk) + 1) > budget)):
                yield chunk
                chunk, longest = [], 0
            chunk.append(j)
            longest = max(longest, n)
        if chunk:
            yield chunk

    def _forward(self, seqs: list[list[int]]) -> list[float]:
        import torch

        width = max(len(s) for s in seqs)
        pad = self._pad_id if self._pad_id is not None else 0
        input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: causal attention never sees it
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        logits = self._model(input_ids=input_ids.to(self._device), attention_mask=mask.to(self._device)).logits
        self.stats_.tokens += int(mask.sum())
        self.stats_.padded_slots += mask.numel()
        self.stats_.forward_passes += 1
        return [float(x) for x in logits[:, 0].float().cpu()]

    # -- the map transform ------------------------------------------------------------------
    def __call__(self, batch: Any, rank: int | None = None) -> dict[str, Any]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"RewardScorer expects a batch as a dict of columns (the default format), got {type(batch).__name__}")
        plan = self._plan_for(batch)
        batched = isinstance(batch[plan.instruction], (list, tuple))
        columns = batch if batched else {k: [v] for k, v in batch.items()}
        out = self._score_columns(columns, plan, rank)
        return out if batched else {k: v[0] for k, v in out.items()}

    def _plan_for(self, batch: Mapping[str, Any]) -> _Plan:
        key = tuple(batch.keys())
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _plan(batch, self.crowd)
        return plan

    def _score_columns(self, columns: Mapping[str, list], plan: _Plan, rank: int | None) -> dict[str, list]:
        instructions = columns[plan.instruction]
        name = self.reward_name
        pairs_i, pairs_r, where, slots = [], [], [], []
        if plan.layout == "wide":
            for col in plan.members:
                for row, value in enumerate(columns[col]):
                    if value is not None and value.get(plan.content_key) is not None:
                        pairs_i.append(_instruction(instructions, row, plan.instruction))
                        pairs_r.append(_text(value[plan.content_key], row, col))
                        where.append(f"row {row} of the batch, column {col!r}")
                        slots.append((col, row))
        else:
            allowed = set(plan.members)
            for row, entries in enumerate(columns[plan.column]):
                for e, entry in enumerate(entries or ()):
                    if (not allowed or entry.get(plan.model_key) in allowed) and entry.get(plan.content_key) is not None:
                        pairs_i.append(_instruction(instructions, row, plan.instruction))
                        pairs_r.append(_text(entry[plan.content_key], row, f"{plan.column}[{e}]"))
                        where.append(f"row {row} of the batch, {plan.column}[{e}] ({entry.get(plan.model_key)})")
                        slots.append((row, e))
        n_rows = len(instructions)
        self.stats_.missing += (len(plan.members) * n_rows if plan.layout == "wide" else 0) - len(slots)
        scores = self.score_pairs(pairs_i, pairs_r, rank=rank, where=where) if slots else []
        got = dict(zip(slots, scores))
        if plan.layout == "wide":
            return {
                col: [None if v is None else {**v, name: got.get((col, row))} for row, v in enumerate(columns[col])]
                for col in plan.members
            }
        return {
            plan.column: [
                None if entries is None else [{**entry, name: got.get((row, e))} for e, entry in enumerate(entries)]
                for row, entries in enumerate(columns[plan.column])
            ]
        }

    def output_features(self, features):
        """The ``datasets.Features`` after scoring: each member gains a float64 ``reward_name``.

        Pass them to ``ds.map(..., features=...)`` so the type is right even when a whole first
        batch has no response to score (:func:`reward_dataset` does this).
        """
        import datasets

        plan = _plan({k: None for k in features}, self.crowd, features=features)
        new = dict(features)
        score = datasets.Value("float64")
        if plan.layout == "wide":
            for col in plan.members:
                new[col] = {**features[col], self.reward_name: score}
        else:
            feat = features[plan.column]
            inner = feat.feature if hasattr(feat, "feature") else feat[0]
            inner = {**inner, self.reward_name: score}
            new[plan.column] = datasets.List(inner) if hasattr(datasets, "List") else [inner]
        return datasets.Features(new)


def _instruction(instructions: Sequence[Any], row: int, column: str) -> str:
    value = instructions[row]
    if not isinstance(value, str):
        raise CrowdError(f"instruction column {column!r} must hold text; row {row} of the batch holds {value!r}")
    return value


def _text(value: Any, row: int, where: str) -> str:
    if not isinstance(value, str):
        raise CrowdError(f"the response in {where} (row {row} of the batch) must be text, found {type(value).__name__}")
    return value


def _plan(batch: Mapping[str, Any], crowd: Crowd | None, features=None) -> _Plan:
    """Bind the crowd (or the columns that look like one) to the batch's columns."""
    keys = list(batch.keys())
    preferred = (crowd.instruction,) if crowd is not None else ()
    instruction = _pick(keys, preferred + INSTRUCTION_KEYS)
    if instruction is None:
        raise CrowdError(f"no instruction column found (looked for {list(preferred + INSTRUCTION_KEYS)}); columns are: {keys}")

    def sample(col):
        if features is not None:
            return _feature_fields(features[col])
        values = batch[col] if isinstance(batch[col], list) else [batch[col]]
        for v in values:
            if isinstance(v, Mapping):
                return v
            if isinstance(v, list) and v and isinstance(v[0], Mapping):
                return v[0]
        return None

    if crowd is not None and crowd.layout == "long":
        column = crowd.list_column(keys)
        fields = sample(column) or {}
        return _Plan("long", instruction, _pick(fields, (crowd.content_key, *CONTENT_KEYS)) or crowd.content_key,
                     members=crowd.names, column=column, model_key=_pick(fields, (crowd.model_key, *MODEL_KEYS)) or crowd.model_key)
    if crowd is not None:
        members = crowd.member_columns(keys)
        content = crowd.content_key
        for col in members:
            fields = sample(col)
            if fields is not None:
                content = _pick(fields, (crowd.content_key, *CONTENT_KEYS)) or content
                break
        return _Plan("wide", instruction, content, members=members)

    wide, content = [], None
    for col in keys:
        fields = sample(col)
        if isinstance(fields, Mapping) and not _is_list_feature(features, col, batch):
            found = _pick(fields, CONTENT_KEYS)
            if found is not None:
                wide.append(col)
                content = content or found
    if wide:
        return _Plan("wide", instruction, content, members=wide)
    for col in keys:
        fields = sample(col)
        if isinstance(fields, Mapping) and _is_list_feature(features, col, batch):
            model_key, content = _pick(fields, MODEL_KEYS), _pick(fields, CONTENT_KEYS)
            if model_key and content:
                return _Plan("long", instruction, content, column=col, model_key=model_key)
    raise CrowdError(
        "no responses to score: expected struct columns with a text 'content' field (one per model) or a list "
        f"column of {{model, content}}; columns are: {keys}. Pass crowd=Crowd(...) to name them."
    )


def _feature_fields(feat) -> Mapping[str, Any] | None:
    inner = getattr(feat, "feature", None)
    if inner is None and isinstance(feat, list) and feat:
        inner = feat[0]
    target = inner if inner is not None else feat
    return target if isinstance(target, Mapping) else None


def _is_list_feature(features, col, batch) -> bool:
    if features is not None:
        f = features[col]
        return isinstance(f, list) or hasattr(f, "feature")
    values = batch[col] if isinstance(batch[col], list) else [batch[col]]
    return any(isinstance(v, list) for v in values if v is not None) and not any(isinstance(v, Mapping) for v in values)


def reward_dataset(ds, model: str, reward_name: str | None = None, crowd: Crowd | None = None, *,
                   map_batch_size: int = 256, num_proc: int | None = None, **scorer_options: Any):
    """Score every member's response of ``ds`` with one reward model (the CLI calls this).

    Args:
        ds: a ``datasets.Dataset`` (wide or long layout; instruction-only rows are fine).
        model, reward_name, crowd: as :class:`RewardScorer`.
        map_batch_size: rows per ``ds.map`` batch (length sorting happens within one).
        num_proc: processes; with CUDA, process ``rank`` uses GPU ``rank % device_count``.
        scorer_options: ``max_length``, ``batch_size``, ``device``, ``dtype``, ``truncation``, ...

    Returns:
        The dataset with the score in every member, typed float64 (None where no response).

    Example:
        >>> scored = reward_dataset(ds, "Skywork/Skywork-Reward-Llama-3.1-8B", batch_size=16)  # doctest: +SKIP
    """
    import datasets

    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"reward_dataset expects a datasets.Dataset, got {type(ds).__name__}; for others use ds.map(RewardScorer(...), batched=True)")
    if len(ds) == 0:
        raise CrowdError("the dataset is empty: there is nothing to score")
    scorer = RewardScorer(model, reward_name=reward_name, crowd=crowd, **scorer_options)
    features = scorer.output_features(ds.features)
    out = ds.map(scorer, batched=True, batch_size=map_batch_size, features=features, num_proc=num_proc,
                 with_rank=True, desc=f"reward {scorer.reward_name}")
    s = scorer.stats_
    if s.pairs:
        (logger.warning if s.truncated or s.skipped else logger.info)(
            "%s: %d pairs scored, %d truncated, %d skipped (longer than %d tokens), padding %.1f%%",
            scorer.reward_name, s.scored, s.truncated, s.skipped, scorer.config.max_length, 100 * s.padding_fraction,
        )
    scorer.unload()
    return out


