"""Tiny models and tokenizers built from a config in code, for offline tests and benchmarks.

Reusable from any test: ``from tiny_models import word_tokenizer, save_reward_model, ...``
(``tests/`` is on ``sys.path`` under pytest; benchmarks add it themselves).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{{ '<|' + m['role'] + '|> ' + m['content'] + ' <|end|> ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
BASE_WORDS = (
    "the a an is are was be to of and in on for with it this that you i we they what how why "
    "write say tell give list explain describe poem story hello hi yes no good bad short long "
    "rain sun cat dog tree sea sky red blue green one two three four five"
).split()


def words_of(texts: Iterable[str]) -> list[str]:
    """The distinct word-level tokens of some texts (words and single punctuation marks)."""
    seen: dict[str, None] = {}
    for t in texts:
        for w in re.findall(r"\w+|[^\w\s]", t or ""):
            seen.setdefault(w, None)
    return list(seen)


def word_tokenizer(words: Iterable[str] = (), chat_template: str | None = CHAT_TEMPLATE, max_words: int | None = None):
    """A word-level ``PreTrainedTokenizerFast`` (words and punctuation split apart).

    Args:
        words: vocabulary beyond :data:`BASE_WORDS`; other words map to ``<unk>``.
        chat_template: a jinja chat template, or ``None`` for a tokenizer without one.
        max_words: cap the vocabulary (the first words win).
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for w in [*BASE_WORDS, *words]:
        if max_words is not None and len(vocab) >= len(SPECIALS) + max_words:
            break
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(pattern=Regex(r"<\|[a-z]+\|>|\w+|[^\w\s]"), behavior="isolated"),
    ])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=SPECIALS[4:],
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def llama_config(vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 2, intermediate: int = 64, **kw):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, intermediate_size=intermediate, max_position_embeddings=4096,
        pad_token_id=0, bos_token_id=2, eos_token_id=3, **kw,
    )


def save_reward_model(path: Path, tokenizer=None, seed: int = 0, num_labels: int = 1, pad_token_id: int | None = 0, **config) -> Path:
    """A random Llama sequence classifier (one output) with its tokenizer, saved as safetensors."""
    import torch
    from transformers import LlamaForSequenceClassification

    tokenizer = tokenizer if tokenizer is not None else word_tokenizer()
    torch.manual_seed(seed)
    cfg = llama_config(len(tokenizer), num_labels=num_labels, **config)
    cfg.pad_token_id = pad_token_id
    model = LlamaForSequenceClassification(cfg).eval()
    # A random head gives scores near 0 everywhere; scale it so scores differ visibly.
    with torch.no_grad():
        model.score.weight.mul_(20.0)
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def save_causal_lm(path: Path, tokenizer=None, seed: int = 0, **config) -> Path:
    """A random Llama causal LM with its tokenizer, saved as safetensors."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = tokenizer if tokenizer is not None else word_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(len(tokenizer), **config)).eval()
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
