"""The settings of a downstream comparison, one dataclass per stage, each field with its help.

The ``crowdselect compare`` options are generated from these fields (:mod:`.options`), and
:func:`~crowdselect_hf.compare.compare` takes the same names as keyword arguments, so an option
is declared once. Every field name is unique across the classes: ``settings_of(**options)``
routes each keyword to its class.

Defaults follow the paper (arXiv 2503.01836, §4): lr 1e-5, 3 epochs, batch 1 × grad-accum 2,
cosine schedule, 150 warm-up steps, max length 2048.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
DTYPES = ("auto", "bf16", "fp16", "fp32")
STOP_AFTER = ("estimate", "train", "answers")
MIN_EVAL_PROMPTS = 100
"""Below this many evaluation prompts a comparison is refused (or, with ``allow_small_eval``,
marked underpowered): at n = 100 the 95% interval of a 50% win rate is already ±9.8 points."""


class CompareError(ValueError):
    """A comparison that cannot run as asked: the message names the input and what to do."""


@dataclass(frozen=True)
class RunConfig:
    """What to compare and where the work goes."""

    student: str = field(metadata={"help": "the base model every student is fine-tuned from (a local folder or Hub id)"})
    configs: tuple[str, ...] = field(default=(), metadata={
        "help": "the curated configs to compare, comma-separated (default: every config of the folder)"})
    baseline: str | None = field(default=None, metadata={
        "help": "the config every other one is judged against (default: a random-* config, else the first)"})
    out: str | None = field(default=None, metadata={
        "help": "the work folder: checkpoints, answers, judgments, compare.json (default: <folder>/_compare)"})
    stop_after: str | None = field(default=None, metadata={
        "help": "stop after this stage: estimate (print the work, do nothing), train or answers (cached; run again "
                "without it to go on)"})
    retrain: bool = field(default=False, metadata={
        "help": "replace students trained with other settings (otherwise that is an error)"})

    def __post_init__(self):
        if not isinstance(self.student, str) or not self.student:
            raise CompareError(f"student must be a model folder or Hub id, got {self.student!r}")
        configs = (self.configs,) if isinstance(self.configs, str) else tuple(self.configs or ())
        object.__setattr__(self, "configs", configs)
        if len(set(configs)) != len(configs):
            raise CompareError(f"configs {list(configs)} name a config twice")
        if self.stop_after not in (None, *STOP_AFTER):
            raise CompareError(f"stop_after must be one of {STOP_AFTER}, got {self.stop_after!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How every student is trained (the same for every config)."""

    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate (paper: 1e-5)"})
    epochs: float = field(default=3.0, metadata={"help": "training epochs (paper: 3)"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1: run the epochs)"})
    train_batch_size: int = field(default=1, metadata={"help": "rows per device and step (paper: 1)"})
    grad_accum: int = field(default=2, metadata={"help": "gradient accumulation steps (paper: 2)"})
    scheduler: str = field(default="cosine", metadata={"help": "learning-rate schedule (paper: cosine)"})
    warmup_steps: int = field(default=150, metadata={"help": "warm-up steps (paper: 150)"})
    max_length: int = field(default=2048, metadata={"help": "longest training row in tokens (paper: 2048)"})
    seed: int = field(default=42, metadata={"help": "training seed, the same for every student"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (PEFT) instead of all weights; merged after"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (with --lora)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (with --lora)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (with --lora)"})
    save_steps: int = field(default=0, metadata={
        "help": "write a resumable checkpoint every N steps (0: at the end of each epoch)"})
    dtype: str = field(default="auto", metadata={"help": "training precision; auto: bf16 on a GPU that has it, else fp32"})
    gradient_checkpointing: bool = field(default=True, metadata={
        "help": "recompute activations in the backward pass to save memory, true or false (TRL's default: true)"})
    use_cpu: bool = field(default=False, metadata={"help": "train on the CPU even when a GPU is present"})

    def __post_init__(self):
        _floats(self, "learning_rate", "epochs", "lora_dropout")
        _positive(self, "train_batch_size", "grad_accum", "max_length", "lora_r", "lora_alpha")
        _non_negative(self, "warmup_steps", "save_steps")
        if not self.learning_rate > 0 or not self.epochs > 0:
            raise CompareError(f"learning_rate and epochs must be > 0, got {self.learning_rate!r}, {self.epochs!r}")
        if self.scheduler not in SCHEDULERS:
            raise CompareError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.dtype not in DTYPES:
            raise CompareError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")


@dataclass(frozen=True)
class EvalConfig:
    """Which prompts every student answers."""

    eval_file: str | None = field(default=None, metadata={
        "help": "evaluation prompts: a local Parquet/JSONL/CSV file or a Hub dataset id (default: a held-out slice "
                "of the pool that no compared config selected)"})
    eval_split: str = field(default="train", metadata={"help": "the split of --eval-file to read"})
    eval_column: str | None = field(default=None, metadata={
        "help": "the prompt column of --eval-file (default: instruction, prompt or question)"})
    pool: str | None = field(default=None, metadata={
        "help": "the crowd table the configs were selected from, for the held-out slice (default: the source the "
                "selections recorded)"})
    eval_size: int = field(default=500, metadata={"help": "evaluation prompts to draw (seeded)"})
    eval_seed: int = field(default=0, metadata={"help": "seed of the evaluation draw"})
    min_eval_prompts: int = field(default=MIN_EVAL_PROMPTS, metadata={
        "help": "refuse a comparison on fewer evaluation prompts than this"})
    allow_small_eval: bool = field(default=False, metadata={
        "help": "run below --min-eval-prompts anyway, marked underpowered everywhere it is shown"})

    def __post_init__(self):
        _positive(self, "eval_size", "min_eval_prompts")


@dataclass(frozen=True)
class AnswerConfig:
    """How the students answer the evaluation prompts (through :class:`~crowdselect_hf.CrowdGenerator`)."""

    max_new_tokens: int = field(default=1024, metadata={"help": "longest student answer in tokens"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; otherwise sampling seeded by --seed"})
    answer_batch_size: int = field(default=8, metadata={"help": "prompts per generate call (local students)"})
    student_base_url: str | None = field(default=None, metadata={
        "help": "an OpenAI-compatible server (e.g. vLLM) serving each trained student under its config name; "
                "default: generate locally with transformers"})

    def __post_init__(self):
        _floats(self, "temperature")
        _positive(self, "max_new_tokens", "answer_batch_size")
        if not self.temperature >= 0:
            raise CompareError(f"temperature must be >= 0, got {self.temperature!r}")


@dataclass(frozen=True)
class JudgeConfig:
    """Who judges and how the results are tested. A judge runs when it is configured: the reward
    model with ``reward_model``, the pairwise LLM judge with ``judge_model``."""

    reward_model: str | None = field(default=None, metadata={
        "help": "judge (a): a reward model (sequence classifier, one output): mean reward and paired differences"})
    reward_batch_size: int = field(default=8, metadata={"help": "pairs per reward-model forward pass"})
    reward_max_length: int = field(default=4096, metadata={"help": "longest scored conversation in tokens"})
    judge_model: str | None = field(default=None, metadata={
        "help": "judge (b): the pairwise LLM judge's model name on --judge-base-url, Arena-Hard style"})
    judge_base_url: str = field(default="https://api.openai.com/v1", metadata={
        "help": "the pairwise judge's OpenAI-compatible endpoint"})
    judge_api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "the environment variable holding the judge's API key (never stored)"})
    judge_max_tokens: int = field(default=1024, metadata={"help": "longest judge reply in tokens"})
    judge_concurrency: int = field(default=8, metadata={"help": "judge requests in flight at once"})
    judge_retries: int = field(default=4, metadata={"help": "retries of a judge request after 429/5xx/timeouts"})
    judge_timeout: float = field(default=300.0, metadata={"help": "seconds per judge request"})
    max_failed_calls: int = field(default=0, metadata={
        "help": "judge calls that may fail for good (counted as missing); more fail the stage"})
    bootstrap: int = field(default=2000, metadata={"help": "bootstrap resamples of the 95 percent intervals"})
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of the bootstrap"})
    alpha: float = field(default=0.05, metadata={"help": "significance level of the paired tests (Holm-adjusted)"})
    side_by_side: int = field(default=4, metadata={"help": "prompts shown with every student's answer"})

    def __post_init__(self):
        _floats(self, "judge_timeout", "alpha")
        _positive(self, "reward_batch_size", "reward_max_length", "judge_max_tokens", "judge_concurrency", "bootstrap")
        _non_negative(self, "judge_retries", "max_failed_calls", "side_by_side")
        if not 0 < self.alpha < 1:
            raise CompareError(f"alpha must be between 0 and 1, got {self.alpha!r}")

    @property
    def judges(self) -> tuple[str, ...]:
        """The judges that run: ``"reward"`` and/or ``"pairwise"``."""
        return tuple(j for j, on in (("reward", self.reward_model), ("pairwise", self.judge_model)) if on)


SECTIONS: dict[str, type] = {"run": RunConfig, "train": TrainConfig, "evaluation": EvalConfig, "answers": AnswerConfig,
                             "judge": JudgeConfig}
"""The settings of a comparison, by section (the keys of compare.json's ``settings``)."""


@dataclass(frozen=True)
class CompareSettings:
    """All settings of one comparison."""

    run: RunConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    answers: AnswerConfig = field(default_factory=AnswerConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: _plain(asdict(getattr(self, name))) for name in SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> "CompareSettings":
        return cls(**{name: SECTIONS[name](**dict(data.get(name) or {})) for name in SECTIONS if name in data})

    def non_defaults(self) -> dict[str, Any]:
        """The options that differ from their defaults (what a command line must say to re-run)."""
        out: dict[str, Any] = {}
        for name, kind in SECTIONS.items():
            for f in dataclasses.fields(kind):
                value = getattr(getattr(self, name), f.name)
                if f.default is dataclasses.MISSING or value != f.default:
                    out[f.name] = value
        return out


def settings_of(**options: Any) -> CompareSettings:
    """Route keyword options (the CLI's names, with underscores) to their section.

    Example:
        >>> s = settings_of(student="Qwen/Qwen2.5-0.5B", learning_rate=2e-5, reward_model="me/rm")
        >>> s.train.learning_rate, s.judge.judges, s.run.configs
        (2e-05, ('reward',), ())
        >>> settings_of(student="m", lr=1)
        Traceback (most recent call last):
        ...
        TypeError: compare() got unknown option(s) ['lr']; options are: ...
    """
    owner = {f.name: name for name, kind in SECTIONS.items() for f in dataclasses.fields(kind)}
    unknown = sorted(set(options) - set(owner))
    if unknown:
        raise TypeError(f"compare() got unknown option(s) {unknown}; options are: {', '.join(sorted(owner))}")
    parts: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in options.items():
        parts[owner[key]][key] = value
    try:
        return CompareSettings(**{name: SECTIONS[name](**values) for name, values in parts.items()})
    except TypeError as e:  # the one required field, student
        raise CompareError(f"compare() needs a student model: {e}") from None


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _floats(obj: Any, *names: str) -> None:
    """Whole numbers given for float fields become floats (3 and 3.0 are one setting, one cache key)."""
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, int) and not isinstance(v, bool):
            object.__setattr__(obj, name, float(v))
        elif not isinstance(v, float):
            raise CompareError(f"{name} must be a number, got {v!r}")


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CompareError(f"{name} must be a positive integer, got {v!r}")


def _non_negative(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise CompareError(f"{name} must be a non-negative integer, got {v!r}")
