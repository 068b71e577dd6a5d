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
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

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
from .binding import CrowdBinding, probe_example
from .crowd import NON_REWARD_KEYS, Crowd, CrowdError, find_instruction

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
    """Counts of one scorer in one process (``scorer.stats_``).

    ``missing`` counts the answers with no text to score: member cells (wide layout, and a crowd
    named for the long layout: a member without an entry in a row counts too) or list entries
    (long layout, crowd inferred).
    """

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
        check_reward_name(self.reward_name)
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
        self._bindings: dict[tuple, CrowdBinding] = {}
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
        check_model_source(cfg.model, "reward model")
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
                    raise ValueError(f"pair {j}{at} has {len(seq)} tokens, more than max_length {cfg.max_length} (--max-length) with truncation 'error' (--truncation)")
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
        binding = self._binding_for(batch)
        batched = isinstance(batch[binding.instruction], (list, tuple))
        columns = batch if batched else {k: [v] for k, v in batch.items()}
        out = self._score_columns(columns, binding, rank)
        return out if batched else {k: v[0] for k, v in out.items()}

    def _binding_for(self, batch: Mapping[str, Any]) -> CrowdBinding:
        """The crowd bound to this batch's columns, resolved once per set of columns."""
        key = tuple(batch.keys())
        binding = self._bindings.get(key)
        if binding is None:
            batched = all(isinstance(v, (list, tuple)) for v in batch.values())  # an example's instruction is text
            probe = probe_example(batch) if batched else dict(batch)
            find_instruction(key, self.crowd.instruction if self.crowd is not None else None)  # its own error
            try:
                binding = self._bindings[key] = self._bind(probe)
            except CrowdError as e:
                if self.crowd is not None:
                    raise
                raise CrowdError(f"no responses to score: {e}. Pass crowd=Crowd(...) to name them.") from None
        return binding

    def _bind(self, data: Any) -> CrowdBinding:
        """Bind the crowd to ``data`` (without its reward: that is what this scorer writes)."""
        crowd = self.crowd.with_reward(None) if self.crowd is not None else None
        binding = CrowdBinding.resolve(data, crowd, need_reward=False)
        check_reward_name(self.reward_name, binding.crowd)
        return binding

    def _score_columns(self, columns: Mapping[str, list], binding: CrowdBinding, rank: int | None) -> dict[str, list]:
        instructions = columns[binding.instruction]
        name = self.reward_name
        pairs_i, pairs_r, where, slots = [], [], [], []
        for slot, row, text, at in binding.answer_slots(columns):
            pairs_i.append(_instruction(instructions, row, binding.instruction))
            pairs_r.append(_text(text, at))
            where.append(at)
            slots.append(slot)
        self.stats_.missing += _answer_places(columns, binding, len(instructions)) - len(slots)
        scores = self.score_pairs(pairs_i, pairs_r, rank=rank, where=where) if slots else []
        got = dict(zip(slots, scores))
        if binding.layout == "wide":
            return {
                col: [None if v is None else {**v, name: got.get((col, row))} for row, v in enumerate(columns[col])]
                for col in binding.names
            }
        column = binding.crowd.column
        return {
            column: [
                None if entries is None else [{**entry, name: got.get((row, e))} for e, entry in enumerate(entries)]
                for row, entries in enumerate(columns[column])
            ]
        }

    def output_features(self, features):
        """The ``datasets.Features`` after scoring: each member gains a float64 ``reward_name``.

        Pass them to ``ds.map(..., features=...)`` so the type is right even when a whole first
        batch has no response to score (:func:`reward_dataset` does this).

        Args:
            features: the input ``datasets.Features``, or the ``Dataset`` itself (needed for a
                long layout without an explicit crowd: its models are named inside the rows).

        Example:
            >>> features = scorer.output_features(ds)  # doctest: +SKIP
            >>> ds = ds.map(scorer, batched=True, features=features)  # doctest: +SKIP
        """
        import datasets

        names = list(getattr(features, "features", features))
        # A batch with these columns was scored already (Ray's adapter asks afterwards): its binding.
        binding = self._bindings.get(tuple(names)) or self._bind(features)
        features = getattr(features, "features", features)
        new = dict(features)
        score = datasets.Value("float64")
        if binding.layout == "wide":
            for col in binding.names:
                new[col] = {**features[col], self.reward_name: score}
        else:
            column = binding.crowd.column
            feat = features[column]
            inner = feat.feature if hasattr(feat, "feature") else feat[0]
            inner = {**inner, self.reward_name: score}
            new[column] = datasets.List(inner) if hasattr(datasets, "List") else [inner]
        return datasets.Features(new)


def check_reward_name(name: str, crowd: Crowd | None = None) -> None:
    """Refuse a reward field that would overwrite an answer's text, its model or error field, or
    be mistaken for one of the ``crowd_*`` columns."""
    taken = {k.lower() for k in NON_REWARD_KEYS}
    if crowd is not None:
        taken |= {k.lower() for k in (crowd.content_key, crowd.model_key) if k}
    if name.lower() in taken or name.lower().startswith("crowd_"):
        raise CrowdError(f"reward name {name!r} is reserved (each answer's {', '.join(sorted(taken))} fields and "
                         "the crowd_* columns): writing scores there would overwrite data; pick another reward_name "
                         "(--reward-name)")


def _instruction(instructions: Sequence[Any], row: int, column: str) -> str:
    value = instructions[row]
    if not isinstance(value, str):
        raise CrowdError(f"instruction column {column!r} must hold text; row {row} of the batch holds {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CrowdError(f"the response in {where} must be text, found {type(value).__name__}")
    return value


def _answer_places(columns: Mapping[str, Sequence[Any]], binding: CrowdBinding, n_rows: int) -> int:
    """How many answers the batch could hold: one per member and row, or (crowd inferred from a
    long layout, members unknown) one per list entry."""
    if binding.open:
        return sum(len(entries or ()) for entries in columns[binding.crowd.column])
    return len(binding.names) * n_rows


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
    features = scorer.output_features(ds)
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


