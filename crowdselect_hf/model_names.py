"""Model names: the family and size a model's name spells, and the crowds known by name.

Pure (standard library only, nothing from the package), so anything may use it.
"""

from __future__ import annotations

import math
import re

DEFAULT_REWARD = "Skywork-Reward-Llama-3.1-8B"
"""The reward model of Magpie-100K-Generator-Zoo, preferred when a crowd shares several score fields."""

# Sizes that model names do not spell out in billions.
KNOWN_SIZES = {
    "phi-3-mini": 3.8,
    "phi-3-small": 7.0,
    "phi-3-medium": 14.0,
    "phi-3.5-mini": 3.8,
    "phi-4-mini": 3.8,
}

# Mixture-of-experts models: the published total of parameters, which ``<n>x<size>B`` does not
# give (experts share attention and embeddings). An MoE name not listed here has an unknown size.
MOE_SIZES = {
    "mixtral-8x7b": 46.7,
    "mixtral-8x22b": 141.0,
}

_SIZE_TOKEN = re.compile(r"^(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])$", re.IGNORECASE)


def parse_model_name(name: str) -> tuple[str, float]:
    """Read a family and a size (billions of parameters) from a model name.

    The size is the first ``<number>B`` token (``270M`` counts 0.27); the family is the
    lower-cased name without it, without any ``org/`` prefix and without a serving provider's
    ``@provider`` suffix (the same weights, served elsewhere). A mixture-of-experts token
    (``8x7B``) takes the published total from :data:`MOE_SIZES`, else the size is unknown (NaN):
    8×7B is not 56B of dense compute. Names that do not spell their size
    (``Phi-3-mini-128k-instruct``) are looked up in :data:`KNOWN_SIZES`.

    Example:
        >>> parse_model_name("Qwen2.5-7B-Instruct")
        ('qwen2.5-instruct', 7.0)
        >>> parse_model_name("Phi-3-mini-128k-instruct")
        ('phi-3-128k-instruct', 3.8)
        >>> parse_model_name("gemma-2-27b-it@together")
        ('gemma-2-it', 27.0)
        >>> parse_model_name("Mixtral-8x7B-Instruct-v0.1")
        ('mixtral-instruct-v0.1', 46.7)
    """
    base = name.rsplit("/", 1)[-1].split("@", 1)[0] or name
    tokens = [t for t in re.split(r"[-_\s]+", base) if t]
    size = math.nan
    size_at = None
    for unit in ("b", "m"):
        for i, tok in enumerate(tokens):
            m = _SIZE_TOKEN.match(tok)
            if m and m.group(3).lower() == unit:
                if m.group(1):  # n experts: only a published total will do
                    size = MOE_SIZES.get("-".join(t.lower() for t in tokens[: i + 1]), math.nan)
                else:
                    size = float(m.group(2)) * (1.0 if unit == "b" else 1e-3)
                size_at = i
                break
        if size_at is not None:
            break
    lowered = [t.lower() for t in tokens]
    if size_at is None:
        for prefix, known in KNOWN_SIZES.items():
            parts = prefix.split("-")
            for i in range(len(lowered) - len(parts) + 1):
                if lowered[i : i + len(parts)] == parts:
                    size, size_at = known, i + len(parts) - 1
                    break
            if size_at is not None:
                break
    family_tokens = [t for i, t in enumerate(lowered) if i != size_at]
    return "-".join(family_tokens) or base.lower(), size


# -- presets ------------------------------------------------------------------------------------

_MAGPIE_ZOO = (
    ("gemma-2-2b-it", "gemma-2", 2), ("gemma-2-9b-it", "gemma-2", 9), ("gemma-2-27b-it", "gemma-2", 27),
    ("Meta-Llama-3-8B-Instruct", "llama-3", 8), ("Meta-Llama-3-70B-Instruct", "llama-3", 70),
    ("Meta-Llama-3.1-8B-Instruct", "llama-3.1", 8), ("Meta-Llama-3.1-70B-Instruct", "llama-3.1", 70),
    ("Meta-Llama-3.1-405B-Instruct", "llama-3.1", 405),
    ("Phi-3-mini-128k-instruct", "phi-3", 3.8), ("Phi-3-small-128k-instruct", "phi-3", 7),
    ("Phi-3-medium-128k-instruct", "phi-3", 14),
    ("Qwen2-1.5B-Instruct", "qwen2", 1.5), ("Qwen2-7B-Instruct", "qwen2", 7), ("Qwen2-72B-Instruct", "qwen2", 72),
    ("Qwen2.5-3B-Instruct", "qwen2.5", 3), ("Qwen2.5-7B-Instruct", "qwen2.5", 7), ("Qwen2.5-14B-Instruct", "qwen2.5", 14),
    ("Qwen2.5-32B-Instruct", "qwen2.5", 32), ("Qwen2.5-72B-Instruct", "qwen2.5", 72),
)

PRESETS: dict[str, tuple[tuple[tuple[str, str, float], ...], str]] = {
    "magpie-100k-generator-zoo": (_MAGPIE_ZOO, DEFAULT_REWARD),
}
