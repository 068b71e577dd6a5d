"""Training rows for supervised fine-tuning: the instruction as the user turn, the crowd's best
response as the assistant turn, in TRL's conversational formats.

``messages``           ``[{"role": "user", ...}, {"role": "assistant", ...}]``
``prompt-completion``  ``prompt=[user message]``, ``completion=[assistant message]``

``trl.SFTTrainer`` and ``trl sft --dataset_name ...`` read either with no glue code. The
``crowd_*`` columns can stay for audit (TRL drops columns it does not use); every other
column, the per-model responses above all, is removed so that TRL never sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import datasets

from .crowd import CONTENT_KEYS, MODEL_KEYS, Crowd, CrowdError, _pick

logger = logging.getLogger(__name__)

FORMATS = ("messages", "prompt-completion")
REQUIRED_COLUMNS = ("crowd_best_model",)
_DROP = "__crowdselect_drop_reason__"

_MESSAGE = datasets.Features({"m": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})})["m"]
FEATURES = {
    "messages": datasets.Features({"messages": _MESSAGE}),
    "prompt-completion": datasets.Features({"prompt": _MESSAGE, "completion": _MESSAGE}),
}
"""The ``datasets.Features`` of the training columns, per format."""


@dataclass(frozen=True)
class ResponseSource:
    """Where the responses live: enough of a :class:`~crowdselect_hf.Crowd` to find the best one.

    Args:
        layout: ``"wide"`` (a struct column per model, named by ``crowd_best_model``) or
            ``"long"`` (one list column of ``{model_key: ..., content_key: ...}``).
        instruction: the instruction column.
        content_key: the struct field holding the response text.
        column: long layout: the list column.
        model_key: long layout: the struct field naming the model.
    """

    layout: str
    instruction: str
    content_key: str
    column: str | None = None
    model_key: str | None = None

    def fn_kwargs(self) -> dict[str, Any]:
        return {"layout": self.layout, "instruction": self.instruction, "content_key": self.content_key,
                "column": self.column, "model_key": self.model_key}


def best_response(example: Mapping[str, Any], *, layout: str, content_key: str, column: str | None = None,
                  model_key: str | None = None, **_: Any) -> str | None:
    """The text of the best response of one row (``None`` when there is no best model).

    Example:
        >>> row = {"crowd_best_model": "b", "a": {"content": "no"}, "b": {"content": "yes"}}
        >>> best_response(row, layout="wide", content_key="content")
        'yes'
        >>> row = {"crowd_best_model": "b", "completions": [{"model": "a", "response": "no"},
        ...                                                 {"model": "b", "response": "yes"}]}
        >>> best_response(row, layout="long", content_key="response", column="completions", model_key="model")
        'yes'
    """
    best = example.get("crowd_best_model")
    if best is None:
        return None
    if layout == "wide":
        if best not in example:
            raise CrowdError(f"crowd_best_model is {best!r} but the data has no column {best!r}; "
                             "was the dataset scored with another crowd?")
        value = example[best]
        return None if value is None else value.get(content_key)
    for entry in example.get(column) or ():
        if entry is not None and entry.get(model_key) == best:
            return entry.get(content_key)
    raise CrowdError(f"crowd_best_model is {best!r} but list column {column!r} has no entry with {model_key}={best!r}")


def sft_example(example: Mapping[str, Any], *, format: str = "messages", layout: str, instruction: str,
                content_key: str, column: str | None = None, model_key: str | None = None) -> dict[str, Any]:
    """One training row in TRL's conversational format; for ``ds.map(sft_example, fn_kwargs=...)``.

    Args:
        example: a scored row (``crowd_best_model`` and the responses).
        format: ``"messages"`` or ``"prompt-completion"``.
        layout, instruction, content_key, column, model_key: where the responses live
            (:class:`ResponseSource`).

    Returns:
        ``{"messages": [...]}`` or ``{"prompt": [...], "completion": [...]}``.

    Example:
        >>> row = {"instruction": "Say yes.", "crowd_best_model": "b", "a": {"content": "no"}, "b": {"content": "yes"}}
        >>> sft_example(row, layout="wide", instruction="instruction", content_key="content")
        {'messages': [{'role': 'user', 'content': 'Say yes.'}, {'role': 'assistant', 'content': 'yes'}]}
        >>> sft_example(row, format="prompt-completion", layout="wide", instruction="instruction", content_key="content")
        {'prompt': [{'role': 'user', 'content': 'Say yes.'}], 'completion': [{'role': 'assistant', 'content': 'yes'}]}
    """
    _check_format(format)
    user = {"role": "user", "content": example.get(instruction) or ""}
    assistant = {"role": "assistant", "content": best_response(example, layout=layout, content_key=content_key,
                                                               column=column, model_key=model_key) or ""}
    if format == "messages":
        return {"messages": [user, assistant]}
    return {"prompt": [user], "completion": [assistant]}


def _with_reason(example: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    out = sft_example(example, **kwargs)
    if example.get("crowd_best_model") is None:
        reason = "no best model (no usable reward)"
    elif not out["messages" if "messages" in out else "completion"][-1]["content"].strip():
        reason = "empty best response"
    elif not out["messages" if "messages" in out else "prompt"][0]["content"].strip():
        reason = "empty instruction"
    else:
        reason = None
    out[_DROP] = reason
    return out


def response_source(ds: datasets.Dataset, crowd: Crowd | None = None) -> ResponseSource:
    """Find where the responses of a scored dataset live, from ``crowd`` or from the columns.

    Without a crowd, a dataset with struct columns holding a text ``content``/``response`` field
    is wide; one with a list column of ``{model, content}`` structs is long.
    """
    names = list(ds.column_names)
    lowered = {n.lower(): n for n in names}
    if crowd is not None:
        instruction = lowered.get(crowd.instruction.lower())
        if instruction is None:
            raise CrowdError(f"instruction column {crowd.instruction!r} of the crowd is not in the data; columns are: {names}")
        if crowd.layout == "long":
            return ResponseSource("long", instruction, crowd.content_key, crowd.list_column(names), crowd.model_key)
        return ResponseSource("wide", instruction, crowd.content_key)

    from .crowd import INSTRUCTION_KEYS

    instruction = next((lowered[k] for k in INSTRUCTION_KEYS if k in lowered), None)
    if instruction is None:
        raise CrowdError(f"no instruction column ({', '.join(INSTRUCTION_KEYS)}) in the data; columns are: {names}; "
                         "pass crowd=Crowd(..., instruction=...)")
    for name, feature in ds.features.items():
        if isinstance(feature, dict):
            key = _pick(feature, CONTENT_KEYS)
            if key is not None:
                return ResponseSource("wide", instruction, key)
    for name, feature in ds.features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, (datasets.List, datasets.LargeList)) and isinstance(inner, dict):
            key, model = _pick(inner, CONTENT_KEYS), _pick(inner, MODEL_KEYS)
            if key and model:
                return ResponseSource("long", instruction, key, name, model)
    raise CrowdError("no responses found: expected struct columns with a 'content' field (wide layout) or a list "
                     f"column of {{model, content}} (long layout); columns are: {names}; pass crowd=")


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


def to_sft(ds: datasets.Dataset, format: str = "messages", keep_metrics: bool = True, crowd: Crowd | None = None,
           return_dropped: bool = False, num_proc: int | None = None):
    """Turn scored (usually curated) rows into TRL-ready conversational training rows.

    The user turn is the instruction; the assistant turn is the response of
    ``crowd_best_model``. Rows without a best model (no usable reward), with an empty best
    response, or with an empty instruction are dropped: the count is logged as a warning and,
    with ``return_dropped=True``, the rows are returned (``index`` into ``ds``, ``crowd_id``,
    ``crowd_best_model``, ``reason``).

    Args:
        ds: a ``Dataset`` with the ``crowd_*`` columns of :func:`~crowdselect_hf.score` or
            ``ds.map(crowd_score)``, and the responses (wide or long layout).
        format: ``"messages"`` or ``"prompt-completion"`` (never both in one dataset).
        keep_metrics: keep the ``crowd_*`` columns for audit; all other input columns are
            always removed.
        crowd: where the responses live; found from the columns when ``None``.
        return_dropped: also return the dropped rows as a ``Dataset``.
        num_proc: passed to ``ds.map``.

    Returns:
        The training ``Dataset`` (``messages`` or ``prompt`` + ``completion``, then ``crowd_*``),
        or ``(dataset, dropped)`` with ``return_dropped=True``.

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_list([
        ...     {"instruction": "Say yes.", "a": {"content": "no", "r": 0.1}, "b": {"content": "yes", "r": 0.9},
        ...      "crowd_id": "1", "crowd_best_model": "b"},
        ...     {"instruction": "Say no.", "a": {"content": "", "r": 0.8}, "b": {"content": "yes", "r": 0.2},
        ...      "crowd_id": "2", "crowd_best_model": "a"}])
        >>> sft, dropped = to_sft(ds, return_dropped=True)
        >>> sft.column_names, sft[0]["messages"][1]["content"]
        (['messages', 'crowd_id', 'crowd_best_model'], 'yes')
        >>> dropped[0]
        {'index': 1, 'crowd_id': '2', 'crowd_best_model': 'a', 'reason': 'empty best response'}
    """
    _check_format(format)
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"to_sft needs a datasets.Dataset, got {type(ds).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise CrowdError(f"column(s) {missing} are missing: score the dataset first with "
                         "crowdselect_hf.score(ds) or ds.map(crowdselect_hf.crowd_score)")
    source = response_source(ds, crowd)
    metrics = [c for c in ds.column_names if c.startswith("crowd_")]
    keep = metrics if keep_metrics else []
    features = datasets.Features({**FEATURES[format], _DROP: datasets.Value("string"),
                                  **{c: ds.features[c] for c in keep}})
    mapped = ds.map(
        _with_reason,
        fn_kwargs={"format": format, **source.fn_kwargs()},
        remove_columns=[c for c in ds.column_names if c not in keep],
        features=features,
        num_proc=num_proc,
        desc="Building SFT rows",
    )
    reasons = mapped.data.column(_DROP).to_pylist()
    bad = [i for i, r in enumerate(reasons) if r is not None]
    out = mapped if not bad else mapped.select([i for i, r in enumerate(reasons) if r is None])
    out = out.remove_columns(_DROP)
    if bad:
        counts: dict[str, int] = {}
        for i in bad:
            counts[reasons[i]] = counts.get(reasons[i], 0) + 1
        logger.warning("to_sft dropped %d of %d rows: %s", len(bad), len(ds),
                       ", ".join(f"{n} {r}" for r, n in sorted(counts.items())))
    if not return_dropped:
        return out
    # ds[rows] honours an indices mapping (ds.select), ds.data would not.
    audit = ds.select_columns([c for c in ("crowd_id", "crowd_best_model") if c in ds.column_names])[bad]
    dropped = datasets.Dataset.from_dict(
        {"index": bad, "crowd_id": audit.get("crowd_id", [None] * len(bad)), "crowd_best_model": audit["crowd_best_model"],
         "reason": [reasons[i] for i in bad]},
        features=datasets.Features({"index": datasets.Value("int64"), "crowd_id": datasets.Value("string"),
                                    "crowd_best_model": datasets.Value("string"), "reason": datasets.Value("string")}),
    )
    return out, dropped
