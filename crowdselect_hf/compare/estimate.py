"""What a comparison will cost, printed before it starts: rows × epochs × tokens per student,
optimizer steps, answers to generate, reward pairs, judge calls, and what is already cached.

Token counts are exact (the student's own tokenizer and chat template over the training rows,
cut at ``max_length``); compute is the usual approximation, ≈ 6 · parameters · tokens for full
fine-tuning and ≈ 4 · parameters · tokens for LoRA (no weight gradients of the frozen base). No
time is promised: throughput depends on the hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class StudentCost:
    """Training one student: ``rows`` rows of ``tokens`` tokens in all (one epoch), ``steps`` optimizer steps."""

    config: str
    rows: int
    tokens: int
    steps: int
    cached: bool = False


@dataclass(frozen=True)
class Estimate:
    """The work of one comparison.

    Attributes:
        student, params: the base model and its parameter count (``None`` when it could not be read).
        epochs, lora: training settings.
        students: per config, its :class:`StudentCost`.
        prompts, max_new_tokens: the evaluation prompts and the longest answer.
        reward_pairs: answers the reward judge scores; ``judge_calls``: pairwise judge requests.
        cached_answers, cached_judge_calls: how much of that is already in the work folder.
    """

    student: str
    params: int | None
    epochs: float
    lora: bool
    students: tuple[StudentCost, ...]
    prompts: int
    max_new_tokens: int
    reward_pairs: int
    judge_calls: int
    cached_answers: int = 0
    cached_judge_calls: int = 0

    @property
    def train_tokens(self) -> float:
        """Tokens the students still to train will process (all epochs)."""
        return sum(s.tokens * self.epochs for s in self.students if not s.cached)

    @property
    def train_flops(self) -> float | None:
        return None if self.params is None else (4 if self.lora else 6) * self.params * self.train_tokens

    @property
    def answers(self) -> int:
        return self.prompts * len(self.students)

    def lines(self) -> list[str]:
        """The estimate as printed before a comparison starts.

        Example:
            >>> e = Estimate("m", 3_210_000_000, 3.0, False, (StudentCost("a", 1000, 412_000, 1500),
            ...     StudentCost("b", 1000, 388_000, 1500, cached=True)), 500, 1024, 1000, 1500)
            >>> print("\\n".join(e.lines()))
            estimate (before starting):
              train  a: 1,000 rows × 3 epochs × 412 tokens/row = 1.24M tokens, 1,500 optimizer steps
              train  b: cached (1,000 rows, 1,500 steps)
              train  total to do: 1.24M tokens ≈ 2.4e+16 FLOPs (6 · 3.21B params · tokens)
              answer 500 prompts × 2 students = 1,000 answers of ≤ 1,024 new tokens (≤ 1.02M tokens)
              judge  reward model: 1,000 answers; pairwise: 1,500 judge calls (both orders)
        """
        out = ["estimate (before starting):"]
        for s in self.students:
            if s.cached:
                out.append(f"  train  {s.config}: cached ({s.rows:,} rows, {s.steps:,} steps)")
            else:
                per_row = s.tokens / s.rows if s.rows else 0
                out.append(f"  train  {s.config}: {s.rows:,} rows × {self.epochs:g} epochs × {per_row:,.0f} tokens/row = "
                           f"{_si(s.tokens * self.epochs)} tokens, {s.steps:,} optimizer steps")
        total = f"  train  total to do: {_si(self.train_tokens)} tokens"
        if self.train_flops is not None:
            total += (f" ≈ {self.train_flops:.2g} FLOPs ({4 if self.lora else 6} · {_si(self.params).replace('G', 'B')} params · tokens"
                      f"{', LoRA' if self.lora else ''})")
        out.append(total)
        todo = self.answers - self.cached_answers
        out.append(f"  answer {self.prompts:,} prompts × {len(self.students)} students = {self.answers:,} answers of ≤ "
                   f"{self.max_new_tokens:,} new tokens (≤ {_si(self.answers * self.max_new_tokens)} tokens)"
                   + (f"; {self.cached_answers:,} cached, {todo:,} to do" if self.cached_answers else ""))
        judges = []
        if self.reward_pairs:
            judges.append(f"reward model: {self.reward_pairs:,} answers")
        if self.judge_calls:
            judges.append(f"pairwise: {self.judge_calls:,} judge calls (both orders)"
                          + (f", {self.cached_judge_calls:,} cached" if self.cached_judge_calls else ""))
        out.append("  judge  " + ("; ".join(judges) if judges else "none configured"))
        return out


def optimizer_steps(rows: int, epochs: float, batch_size: int, grad_accum: int, max_steps: int = -1, processes: int = 1) -> int:
    """Optimizer steps of one training run, as the Trainer counts them.

    Example:
        >>> optimizer_steps(1000, 3, 1, 2), optimizer_steps(1000, 3, 1, 2, max_steps=10)
        (1500, 10)
    """
    if max_steps and max_steps > 0:
        return max_steps
    per_epoch = max(1, math.ceil(math.ceil(rows / (batch_size * processes)) / grad_accum))
    return int(math.ceil(per_epoch * epochs))


def row_tokens(tokenizer: Any, rows: Sequence[dict], max_length: int) -> int:
    """Tokens of the training rows through the chat template, each cut at ``max_length``."""
    total = 0
    for row in rows:
        messages = row.get("messages") or [*(row.get("prompt") or []), *(row.get("completion") or [])]
        ids = tokenizer.apply_chat_template(list(messages), tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        total += min(len(ids), max_length)
    return total


def count_parameters(student: str) -> int | None:
    """Parameters of a causal LM from its config alone (built on the meta device: nothing is loaded)."""
    try:
        import torch
        import transformers

        config = transformers.AutoConfig.from_pretrained(student)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # an unknown architecture or no config: the estimate goes without FLOPs
        return None


def _si(x: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.0f}"
