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
from typing import Any, Mapping

import datasets

from .binding import CrowdBinding
from .crowd import Crowd, CrowdError

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

_DROPPED_FEATURES = datasets.Features({"index": datasets.Value("int64"), "crowd_id": datasets.Value("string"),
                                       "crowd_best_model": datasets.Value("string"), "reason": datasets.Value("string")})


def sft_example(example: Mapping[str, Any], *, format: str = "messages", crowd: Crowd | None = None) -> dict[str, Any]:
    """One training row in TRL's conversational format: the instruction, then the best response.

    Args:
        example: a scored row (``crowd_best_model`` and the responses).
        format: ``"messages"`` or ``"prompt-completion"``.
        crowd: where the responses live; found from ``example`` when ``None``
            (:meth:`CrowdBinding.resolve <crowdselect_hf.binding.CrowdBinding.resolve>`).

    Returns:
        ``{"messages": [...]}`` or ``{"prompt": [...], "completion": [...]}``.

    Raises:
        CrowdError: when ``crowd_best_model`` names a model the row has no response of.

    Example:
        >>> row = {"instruction": "Say yes.", "crowd_best_model": "b", "a": {"content": "no"}, "b": {"content": "yes"}}
        >>> sft_example(row)
        {'messages': [{'role': 'user', 'content': 'Say yes.'}, {'role': 'assistant', 'content': 'yes'}]}
        >>> sft_example(row, format="prompt-completion")
        {'prompt': [{'role': 'user', 'content': 'Say yes.'}], 'completion': [{'role': 'assistant', 'content': 'yes'}]}
        >>> row = {"prompt": "Say yes.", "crowd_best_model": "b", "completions": [{"model": "a", "response": "no"},
        ...                                                                      {"model": "b", "response": "yes"}]}
        >>> sft_example(row)["messages"][1]
        {'role': 'assistant', 'content': 'yes'}
    """
    _check_format(format)
    return _conversation(example, CrowdBinding.resolve(example, crowd, need_reward=False), format)


def _conversation(example: Mapping[str, Any], binding: CrowdBinding, format: str) -> dict[str, Any]:
    user = {"role": "user", "content": example.get(binding.instruction) or ""}
    assistant = {"role": "assistant", "content": binding.best_answer(example) or ""}
    if format == "messages":
        return {"messages": [user, assistant]}
    return {"prompt": [user], "completion": [assistant]}


class _TrainingRow:
    """The ``ds.map`` function of :func:`to_sft`: one training row and why it is dropped (or ``None``).

    Args:
        crowd: the crowd resolved against the table (exact column and field names).
        format: ``"messages"`` or ``"prompt-completion"``.

    Pickles as its crowd and format only, so the map fingerprint is stable across processes.
    """

    def __init__(self, crowd: Crowd, format: str):
        self.crowd, self.format = crowd, format
        self._binding = CrowdBinding(crowd)

    def __getstate__(self):
        return {"crowd": self.crowd, "format": self.format}

    def __setstate__(self, state):
        self.__init__(state["crowd"], state["format"])

    def __call__(self, example: Mapping[str, Any]) -> dict[str, Any]:
        out = _conversation(example, self._binding, self.format)
        turns = out.get("messages") or out["prompt"] + out["completion"]
        if example.get("crowd_best_model") is None:
            reason = "no best model (no usable reward)"
        elif not turns[-1]["content"].strip():
            reason = "empty best response"
        elif not turns[0]["content"].strip():
            reason = "empty instruction"
        else:
            reason = None
        out[_DROP] = reason
        return out


def _empty(features: datasets.Features) -> datasets.Dataset:
    return datasets.Dataset.from_dict({c: [] for c in features}, features=features)


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
        crowd: where the responses live; found from the columns when ``None``. Its reward, if
            set, must be a field of every member; the reward is not read.
        return_dropped: also return the dropped rows as a ``Dataset``.
        num_proc: passed to ``ds.map``.

    Returns:
        The training ``Dataset`` (``messages`` or ``prompt`` + ``completion``, then ``crowd_*``),
        or ``(dataset, dropped)`` with ``return_dropped=True``. An empty ``ds`` gives empty
        datasets with the same columns.

    Raises:
        CrowdError: when the ``crowd_*`` columns or the responses are missing, or
            ``crowd_best_model`` names a model the table has no response of.

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
    metrics = [c for c in ds.column_names if c.startswith("crowd_")]
    keep = metrics if keep_metrics else []
    if len(ds) == 0:  # nothing to read the responses from, and nothing to build
        empty = _empty(datasets.Features({**FEATURES[format], **{c: ds.features[c] for c in keep}}))
        return (empty, _empty(_DROPPED_FEATURES)) if return_dropped else empty
    binding = CrowdBinding.resolve(ds, crowd, need_reward=False)
    features = datasets.Features({**FEATURES[format], _DROP: datasets.Value("string"),
                                  **{c: ds.features[c] for c in keep}})
    mapped = ds.map(
        _TrainingRow(binding.crowd, format),
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
        features=_DROPPED_FEATURES,
    )
    return out, dropped
