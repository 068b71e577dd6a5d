"""Shared helpers for the model-running modules (:mod:`.rewards`, :mod:`.generation`): lazy
optional imports, device and dtype choice, chat rendering, and a stable identity for local
checkpoints. Nothing here imports torch or transformers at module import time."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import re
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger(__name__)

_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency or fail with a message naming the extra to install.

    Example:
        >>> require("json", extra="rewards", what="reward scoring").__name__
        'json'
        >>> require("no_such_module_xyz", extra="rewards", what="reward scoring")
        Traceback (most recent call last):
        ...
        ImportError: reward scoring needs 'no_such_module_xyz': pip install 'crowdselect-hf[rewards]'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module!r}: pip install 'crowdselect-hf[{extra}]'") from None


def check_installed(module: str, extra: str, what: str) -> None:
    """Fail early (at construction) when an optional dependency is missing, without importing it."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{what} needs {module!r}: pip install 'crowdselect-hf[{extra}]'")


def resolve_device(device: Any = None, rank: int | None = None) -> str:
    """The torch device to run on.

    ``None`` picks CUDA when present (with ``rank`` from ``ds.map(..., with_rank=True)``, process
    ``rank`` takes GPU ``rank % device_count``), else the CPU. An explicit device is kept.
    """
    import torch

    if device is not None:
        return str(device) if not isinstance(device, int) else f"cuda:{device}"
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"cuda:{(rank or 0) % n}"
    return "cpu"


def resolve_dtype(dtype: Any, device: str):
    """The torch dtype: an explicit one (a ``torch.dtype`` or a name such as ``"bf16"``), or by
    default bfloat16 on a GPU that supports it, float16 on an older GPU, float32 on the CPU."""
    import torch

    if dtype is not None and dtype != "auto":
        if isinstance(dtype, torch.dtype):
            return dtype
        name = _DTYPES.get(str(dtype).lower().replace("torch.", ""))
        if name is None:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(set(_DTYPES))} or a torch.dtype")
        return getattr(torch, name)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def dtype_kwargs(dtype) -> dict:
    """``from_pretrained`` keyword for a dtype: ``dtype`` (transformers >= 4.56) or ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def model_label(name_or_path: str) -> str:
    """A short name for a model: the last part of a Hub id or a local path.

    Example:
        >>> model_label("Skywork/Skywork-Reward-Llama-3.1-8B")
        'Skywork-Reward-Llama-3.1-8B'
        >>> model_label("/models/tiny-a-1b/")
        'tiny-a-1b'
    """
    return str(name_or_path).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def checkpoint_identity(name_or_path: str, revision: str | None = None) -> str:
    """What a fingerprint should know about a checkpoint without loading it.

    A local folder is identified by the names, sizes and modification times of its files (so a
    retrained model in the same folder gets a new fingerprint); a Hub id by the id and revision.
    """
    path = Path(name_or_path)
    if path.is_dir():
        h = hashlib.blake2b(digest_size=8)
        for f in sorted(path.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return f"local:{h.hexdigest()}"
    return f"hub:{name_or_path}@{revision or 'main'}"


def check_model_source(name_or_path: str, what: str) -> None:
    """Fail early, in words, when ``name_or_path`` is neither an existing folder nor a Hub id."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{what} {text!r}: the folder has no config.json; pass a folder saved with "
                                    "save_pretrained(), or a Hub id (owner/name)")
        return
    looks_local = text.startswith((".", "/", "~", "\\")) or text.count("/") > 1 or path.exists()
    if looks_local:
        raise FileNotFoundError(f"{what} {text!r}: no such model folder; pass a folder saved with save_pretrained(), "
                                "or a Hub id (owner/name)")


def render_chat(tokenizer: Any, messages: Sequence[dict], template: str | None, add_generation_prompt: bool) -> str:
    """Render messages with the tokenizer's chat template (or ``template``, a jinja string)."""
    return tokenizer.apply_chat_template(
        list(messages), chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def check_chat_template(tokenizer: Any, template: str | None, model: str) -> None:
    if template is None and not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {model!r} has no chat template; pass template=<a jinja chat template> "
            "(e.g. the one of the model family the checkpoint was trained from)"
        )


def load_tokenizer(model: str, revision: str | None, trust_remote_code: bool):
    transformers = require("transformers", "rewards", "loading a tokenizer")
    return transformers.AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)


def free(device: str) -> None:
    """Release cached GPU memory after a model is dropped."""
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()

