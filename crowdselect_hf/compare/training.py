"""One student per config: TRL's ``SFTTrainer`` from the same base model, with the same
hyper-parameters and seed for every config, full fine-tuning or LoRA (PEFT, merged after).

Every row trains on its assistant turn only (``messages`` rows are split into TRL's
prompt-completion form), as LLaMA-Factory does by default in the paper's setup. A student's
folder (``students/<config>/``) holds TRL's checkpoints while it trains, so a killed run resumes
from the last one; ``plan.json`` records the settings they belong to, ``final/`` the trained
model and ``trained.json`` what training reported. Under ``accelerate launch`` / ``torchrun``
the trainer runs on every process, as TRL users expect.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._torch import check_chat_template, dtype_kwargs, require
from .cache import read_json, settings_diff, write_json
from .config import CompareError, TrainConfig

logger = logging.getLogger(__name__)

PLAN_FILE, TRAINED_FILE, FINAL_DIR = "plan.json", "trained.json", "final"
LOSS_ON = "the assistant turn only (TRL prompt-completion rows)"


@dataclass(frozen=True)
class TrainedStudent:
    """What training one student produced.

    Attributes:
        config: the curated config it was trained on; ``path``: its ``final/`` folder.
        key: the hash of everything that determined it (base model, rows, settings).
        rows, global_step, train_loss, runtime_s: as TRL reported them.
        resumed_from: the checkpoint a killed run was resumed from (``None``: a fresh run).
    """

    config: str
    path: str
    key: str
    rows: int
    global_step: int
    train_loss: float | None
    runtime_s: float
    resumed_from: str | None = None


def world_size() -> int:
    """Processes of a distributed launch (1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def completion_rows(ds):
    """``ds`` in TRL's conversational prompt-completion form (the loss falls on the completion).

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "hi"},
        ...                                                {"role": "assistant", "content": "hello"}], "crowd_id": "1"}])
        >>> completion_rows(ds)[0]
        {'prompt': [{'role': 'user', 'content': 'hi'}], 'completion': [{'role': 'assistant', 'content': 'hello'}]}
    """
    if "prompt" in ds.column_names and "completion" in ds.column_names:
        return ds.select_columns(["prompt", "completion"])
    if "messages" not in ds.column_names:
        raise CompareError(f"training rows need 'messages' or 'prompt' + 'completion' columns, got {ds.column_names}")
    last = [m[-1]["role"] if m else None for m in ds["messages"]]
    bad = [i for i, role in enumerate(last) if role != "assistant"]
    if bad:
        raise CompareError(f"training row {bad[0]} does not end with an assistant turn (its last role is {last[bad[0]]!r})")
    return ds.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                  remove_columns=ds.column_names, desc="prompt-completion rows")


def train_student(rows, student: str, folder: Path, config_name: str, train: TrainConfig, key: str,
                  settings: Mapping[str, Any], *, retrain: bool = False, callbacks: Sequence[Any] = (),
                  progress: bool = True) -> TrainedStudent:
    """Train (or resume, or reuse) the student of one config.

    Args:
        rows: the config's training rows (``messages`` or ``prompt``/``completion``).
        student: the base model.
        folder: ``students/<config>/``.
        config_name: the config.
        train: the hyper-parameters.
        key, settings: what determines this student (stored in ``plan.json``; a folder planned
            with another key is an error unless ``retrain``).
        retrain: replace a student trained with other settings.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        progress: show TRL's progress bar.

    Returns:
        The :class:`TrainedStudent`; a finished one with the same key is returned untouched.

    Raises:
        CompareError: the folder holds a student planned with other settings.
    """
    folder = Path(folder)
    done = read_json(folder / TRAINED_FILE)
    if done is not None and done.get("key") == key and (folder / FINAL_DIR).is_dir():
        fields = {k: v for k, v in done.items() if k in TrainedStudent.__dataclass_fields__}
        return TrainedStudent(**{**fields, "path": str(folder / FINAL_DIR)})  # where it is now (the folder may have moved)
    plan = read_json(folder / PLAN_FILE)
    if plan is not None and plan.get("key") != key:
        changed = settings_diff(plan.get("settings") or {}, dict(settings)) or ["the training rows or the base model's files"]
        if not retrain:
            raise CompareError(f"{folder} holds a student of {config_name!r} trained with other settings "
                               f"({'; '.join(changed[:4])}); pass --retrain to replace it, or choose another --out")
        logger.warning("retraining %s: %s", config_name, "; ".join(changed))
        shutil.rmtree(folder)
    if is_main_process():
        write_json(folder / PLAN_FILE, {"key": key, "settings": dict(settings)})
    return _fit(rows, student, folder, config_name, train, key, callbacks, progress)


def _fit(rows, student: str, folder: Path, config_name: str, train: TrainConfig, key: str, callbacks: Sequence[Any],
         progress: bool) -> TrainedStudent:
    require("trl", "train", "training students")
    transformers = require("transformers", "train", "training students")
    import torch
    import trl
    from transformers.trainer_utils import get_last_checkpoint

    cuda = torch.cuda.is_available() and not train.use_cpu
    dtype = _dtype(train.dtype, cuda)
    tokenizer = transformers.AutoTokenizer.from_pretrained(student)
    check_chat_template(tokenizer, None, student)
    # bf16 weights train in bf16 (as TRL loads them by default); fp16 is mixed precision over fp32 weights.
    weights = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(student, use_safetensors=True, **dtype_kwargs(weights))
    peft_config = None
    if train.lora:
        peft = require("peft", "train", "LoRA students")
        peft_config = peft.LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
                                      target_modules="all-linear", task_type="CAUSAL_LM")
    args = trl.SFTConfig(
        output_dir=str(folder), num_train_epochs=train.epochs, max_steps=train.max_steps, learning_rate=train.learning_rate,
        per_device_train_batch_size=train.train_batch_size, gradient_accumulation_steps=train.grad_accum,
        lr_scheduler_type=train.scheduler, warmup_steps=train.warmup_steps, max_length=train.max_length, seed=train.seed,
        data_seed=train.seed, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        **_checkpointing(train.gradient_checkpointing), use_cpu=not cuda,
        save_strategy="steps" if train.save_steps else "epoch", save_steps=train.save_steps or 500, save_total_limit=1,
        logging_steps=10, report_to="none", disable_tqdm=not progress, completion_only_loss=True,
    )
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last:
        logger.warning("%s: resuming training from %s", config_name, last)
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=completion_rows(rows), processing_class=tokenizer,
                             peft_config=peft_config, callbacks=list(callbacks) or None)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    runtime = time.perf_counter() - t0
    final = folder / FINAL_DIR
    if train.lora:
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(final, safe_serialization=True)
            tokenizer.save_pretrained(final)
    else:
        trainer.save_model(str(final))
    done = TrainedStudent(config=config_name, path=str(final), key=key, rows=len(rows),
                          global_step=int(trainer.state.global_step), train_loss=_finite(result.training_loss),
                          runtime_s=round(runtime, 3), resumed_from=Path(last).name if last else None)
    if trainer.is_world_process_zero():
        write_json(folder / TRAINED_FILE, asdict(done))
        for ckpt in folder.glob("checkpoint-*"):  # the optimizer states are no use once final/ exists
            shutil.rmtree(ckpt, ignore_errors=True)
    del trainer, model
    return done


def _checkpointing(on: bool) -> dict[str, Any]:
    """Activation checkpointing under the name this transformers knows (``gradient_checkpointing``
    is a deprecated alias since transformers 5)."""
    import inspect

    import transformers

    if "activation_checkpointing" in inspect.signature(transformers.TrainingArguments).parameters:
        return {"activation_checkpointing": on, "gradient_checkpointing": None}
    return {"gradient_checkpointing": on}


def _dtype(name: str, cuda: bool):
    import torch

    if name == "auto":
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    if name in ("bf16", "fp16") and not cuda:
        raise CompareError(f"dtype {name} needs a GPU; on the CPU train in fp32 (--dtype fp32 or auto)")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None
