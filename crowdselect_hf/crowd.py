"""Who answered: the crowd of models, their families and sizes, and where their scores live.

A crowd table stores, for every instruction, one response per model and one or more reward
scores per response, in one of two layouts:

* **wide** — one struct column per model, e.g. ``"Qwen2.5-7B-Instruct": {"content": str,
  "Skywork-Reward-Llama-3.1-8B": float, ...}`` (Magpie-100K-Generator-Zoo);
* **long** — one list column of structs, each naming its model, e.g. ``"completions":
  [{"model": str, "response": str, "overall_score": float, ...}, ...]`` (UltraFeedback).

:class:`Crowd` describes the members (name, family, size in billions of parameters), the reward
field to read, and the layout. It is a frozen value object: cheap to hash and pickle, so map
transforms holding one have stable fingerprints.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from .model_names import DEFAULT_REWARD, KNOWN_SIZES, PRESETS, parse_model_name  # noqa: F401  (KNOWN_SIZES: re-exported)

CONTENT_KEYS = ("content", "response")
MODEL_KEYS = ("model", "model_name")
NON_REWARD_KEYS = CONTENT_KEYS + MODEL_KEYS + ("error",)
"""Member fields that are never the reward: the answer, the model's name, a generation error."""
INSTRUCTION_KEYS = ("instruction", "prompt", "question")


logger = logging.getLogger(__name__)


class CrowdError(ValueError):
    """The data or the crowd description does not fit together."""


@dataclass(frozen=True)
class Member:
    """One model of the crowd.

    Args:
        name: the model column (wide layout) or the value of the model field (long layout).
        family: models of one family are expected to get better with size (stability).
        params_b: size in billions of parameters; ``nan`` when unknown (then the member takes
            no part in stability).
    """

    name: str
    family: str
    params_b: float = math.nan

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise CrowdError(f"a crowd member needs a non-empty name, got {self.name!r}")
        try:
            size = float(self.params_b) if self.params_b is not None else math.nan
        except (TypeError, ValueError):
            raise CrowdError(f"member {self.name!r}: params_b must be a number, got {self.params_b!r}") from None
        if isinstance(self.params_b, bool) or not (math.isnan(size) or 0 < size < math.inf):
            raise CrowdError(f"member {self.name!r}: params_b must be a positive number of billions of parameters "
                             f"(or null when unknown), got {self.params_b!r}")
        object.__setattr__(self, "params_b", size)
        object.__setattr__(self, "family", str(self.family) if self.family else parse_model_name(self.name)[0])


@dataclass(frozen=True)
class Crowd:
    """The crowd: its members, the reward field, and the layout of the table.

    Args:
        members: the models, in any order (metrics do not depend on it). A long-layout crowd may
            have none: it is then *open*, and every model its rows name is a member.
        reward: the numeric field holding each response's reward. ``None`` until resolved
            against data (:meth:`resolve` picks it as :meth:`infer` does).
        layout: ``"wide"`` (a struct column per member) or ``"long"`` (one list column).
        column: the list column of the long layout.
        model_key: long layout: the struct field naming the model.
        content_key: the struct field holding the response text.
        instruction: the instruction column (``crowd_id`` is a hash of it).

    Example:
        >>> crowd = Crowd.preset("magpie-100k-generator-zoo")
        >>> len(crowd), crowd.reward
        (19, 'Skywork-Reward-Llama-3.1-8B')
        >>> crowd["Qwen2.5-7B-Instruct"].family, crowd["Qwen2.5-7B-Instruct"].params_b
        ('qwen2.5', 7.0)
    """

    members: tuple[Member, ...]
    reward: str | None = None
    layout: str = "wide"
    column: str | None = None
    model_key: str = "model"
    content_key: str = "content"
    instruction: str = "instruction"
    _by_name: Mapping[str, Member] = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        members = tuple(m if isinstance(m, Member) else Member(**_member_kwargs(m)) for m in self.members)
        if not members and self.layout != "long":  # a long crowd without members is open: the rows name them
            raise CrowdError("a crowd needs at least one member")
        seen: dict[str, str] = {}
        for m in members:
            key = m.name.lower()
            if key in seen:
                raise CrowdError(f"crowd member {m.name!r} is listed twice (also as {seen[key]!r})")
            seen[key] = m.name
        if self.layout not in ("wide", "long"):
            raise CrowdError(f"layout must be 'wide' or 'long', got {self.layout!r}")
        if self.layout == "long" and not self.column:
            raise CrowdError("the long layout needs the name of its list column (column=...)")
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "_by_name", {m.name: m for m in members})

    def __getstate__(self):
        return {k: getattr(self, k) for k in ("members", "reward", "layout", "column", "model_key", "content_key", "instruction")}

    def __setstate__(self, state):
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_by_name", {m.name: m for m in self.members})

    # -- container protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return iter(self.members)

    def __getitem__(self, name: str) -> Member:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a member of this crowd; members: {self.names}") from None

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def families(self) -> dict[str, list[str]]:
        """Family → member names, smallest first."""
        out: dict[str, list[Member]] = {}
        for m in self.members:
            out.setdefault(m.family, []).append(m)
        return {f: [m.name for m in sorted(ms, key=lambda m: (m.params_b, m.name))] for f, ms in out.items()}

    def member_columns(self, names: Iterable[str]) -> list[str]:
        """The column of each member among ``names`` (matched case-insensitively), in member order.

        Raises:
            CrowdError: naming the members without a column, and the columns there are.
        """
        names = list(names)
        lowered = {n.lower(): n for n in names}
        missing = [m.name for m in self.members if m.name.lower() not in lowered]
        if missing:
            raise CrowdError(f"crowd member(s) {missing} have no column in the data; columns are: {names}")
        return [lowered[m.name.lower()] for m in self.members]

    def list_column(self, names: Iterable[str]) -> str:
        """The long layout's list column among ``names`` (matched case-insensitively)."""
        names = list(names)
        column = pick_name(names, (self.column,)) if self.column else None
        if column is None:
            raise CrowdError(f"list column {self.column!r} of the crowd is not in the data; columns are: {names}")
        return column

    def with_reward(self, reward: str | None) -> "Crowd":
        return replace(self, reward=reward)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (dataset cards record it)."""
        return {
            "members": [
                {"name": m.name, "family": m.family, "params_b": None if math.isnan(m.params_b) else m.params_b}
                for m in self.members
            ],
            "reward": self.reward,
            "layout": self.layout,
            **({"column": self.column, "model_key": self.model_key} if self.layout == "long" else {}),
            "content_key": self.content_key,
            "instruction": self.instruction,
        }

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, reward: str | None = None) -> "Crowd":
        """A crowd known by name. ``"magpie-100k-generator-zoo"``: the 19 models of
        Magpie-Align/Magpie-100K-Generator-Zoo, reward ``Skywork-Reward-Llama-3.1-8B``."""
        key = name.lower().rsplit("/", 1)[-1]
        if key not in PRESETS:
            raise CrowdError(f"unknown crowd preset {name!r}; known presets: {sorted(PRESETS)}")
        members, default_reward = PRESETS[key]
        return cls(members=tuple(Member(n, f, s) for n, f, s in members), reward=reward or default_reward)

    @classmethod
    def from_file(cls, path: str | Path, reward: str | None = None, **layout: Any) -> "Crowd":
        """Read members from a JSON or YAML file.

        The file holds a list of ``{name, family, params_b}`` mappings (other keys are ignored),
        or a mapping with such a list under ``members`` and optionally ``reward``.

        Example:
            >>> crowd = Crowd.from_file("../shared/data/alpaca_zoo/models.json",
            ...                         reward="weighted_alpaca_eval_gpt4_turbo")  # doctest: +SKIP
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise CrowdError(f"cannot read crowd file {str(path)!r}: {e.strerror or e}") from None
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CrowdError(f"crowd file {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
        except Exception as e:  # yaml.YAMLError carries its own position text
            raise CrowdError(f"crowd file {str(path)!r} is not valid YAML: {e}") from None
        if isinstance(data, Mapping):
            reward = reward or data.get("reward")
            data = data.get("members")
        if not isinstance(data, list) or not data:
            raise CrowdError(
                f"crowd file {str(path)!r} must hold a non-empty list of {{name, family, params_b}} "
                f"(or a mapping with such a list under 'members')"
            )
        members = []
        for i, entry in enumerate(data):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise CrowdError(f"crowd file {str(path)!r}, entry {i}: expected a mapping with a 'name', got {entry!r}")
            try:
                members.append(Member(**_member_kwargs(entry)))
            except CrowdError as e:
                raise CrowdError(f"crowd file {str(path)!r}, entry {i}: {e}") from None
        log_guessed([m for m, e in zip(members, data) if "params_b" not in e or not e.get("family")], f"crowd file {path}")
        return cls(members=tuple(members), reward=reward, **layout)

    @classmethod
    def infer(cls, data: Any, reward: str | None = None, *, need_reward: bool = True) -> "Crowd":
        """Find the crowd in a dataset, its features, or one example.

        Wide members are struct columns with a text (or all-None) ``content`` (or ``response``)
        field; a long layout is a list-of-struct column with a ``model`` field. Families and sizes
        come from the model names (:func:`parse_model_name`). The reward is ``reward`` if given,
        else the one field all members share besides the answer, the model and an ``error``, else
        ``Skywork-Reward-Llama-3.1-8B`` when it is among several, else the only numeric one;
        otherwise an error lists them.

        Args:
            data: a ``Dataset``, an ``IterableDataset`` with known features, ``Features``, a
                ``pyarrow.Schema``, or one example as a dict.
            reward: the reward field; matched case-insensitively.
            need_reward: ``False`` to find the answers of a table that has no reward yet (the
                crowd's ``reward`` is then ``None``).
        """
        return find_crowd(data, reward, need_reward=need_reward)

    def resolve(self, data: Any, *, need_reward: bool = True) -> "Crowd":
        """Bind this crowd to a table: exact column and field names (matched case-insensitively),
        the layout, and the reward. Raises :class:`CrowdError` naming what is missing."""
        return _resolve(self, data, need_reward)


def log_guessed(members: Sequence[Member], where: str) -> None:
    """One INFO line naming the members whose family or size was read from their names."""
    if members:
        shown = ", ".join(f"{m.name} ({m.family}, {'size unknown' if math.isnan(m.params_b) else f'{m.params_b:g}B'})"
                          for m in members)
        logger.info("%s: family and size read from the model names of %d member(s), pass a crowd file to set "
                    "them: %s", where, len(members), shown)


def _member_kwargs(entry: Any) -> dict[str, Any]:
    if isinstance(entry, Member):
        return {"name": entry.name, "family": entry.family, "params_b": entry.params_b}
    if isinstance(entry, str):
        family, size = parse_model_name(entry)
        return {"name": entry, "family": family, "params_b": size}
    if isinstance(entry, Mapping):
        # An absent field is read from the name; ``params_b: null`` says "unknown" and is kept.
        name = entry.get("name")
        guessed_family, guessed_size = parse_model_name(str(name))
        family = entry.get("family") or guessed_family
        size = entry["params_b"] if "params_b" in entry else guessed_size
        return {"name": name, "family": family, "params_b": size}
    if isinstance(entry, Sequence) and len(entry) == 3:
        return {"name": entry[0], "family": entry[1], "params_b": entry[2]}
    raise CrowdError(f"cannot read a crowd member from {entry!r}")


# -- finding the crowd in a table ---------------------------------------------------------------------
#
# One set of rules for a table's schema and for one decoded example, so ``score()`` and
# ``ds.map(crowd_score)`` find the same crowd: a wide member is a struct with a text (or all-None)
# ``content``; a long layout is a list of structs naming their model; the reward is chosen among
# the fields every member shares that are not the answer, the model or an error. Whether the
# reward's *values* are numbers is checked where they are read (binding.py), value by value.

def _schema_of(data: Any) -> tuple[str, Any]:
    """Return ("schema", pa.Schema) or ("example", dict)."""
    if isinstance(data, pa.Schema):
        return "schema", data
    features = getattr(data, "features", None) if not isinstance(data, Mapping) else None
    import datasets

    if isinstance(data, datasets.Features):
        return "schema", data.arrow_schema
    if isinstance(data, (datasets.Dataset, datasets.IterableDataset)):
        if features is None:
            raise CrowdError(
                "this IterableDataset does not know its features, so the crowd cannot be found from them; "
                "pass crowd=Crowd(...) (--crowd FILE) explicitly, or map per example (the crowd is then read from each row)"
            )
        return "schema", features.arrow_schema
    if isinstance(data, Mapping):
        return "example", data
    raise CrowdError(f"cannot find a crowd in a {type(data).__name__}; pass a Dataset, Features, a pyarrow Schema or an example dict")


def is_numeric_type(t: pa.DataType) -> bool:
    """Arrow types whose values are rewards as they are: integers, floats and decimals."""
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_text_or_null(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _struct_fields(t: pa.DataType) -> dict[str, pa.DataType]:
    return {t.field(i).name: t.field(i).type for i in range(t.num_fields)}


def pick_name(names: Iterable[str], candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` among ``names``, matched case-insensitively, spelled as in ``names``.

    Example:
        >>> pick_name(["Instruction", "m-7b"], ("prompt", "instruction"))
        'Instruction'
    """
    lowered = {n.lower(): n for n in names}
    for c in candidates:
        if c is not None and c.lower() in lowered:
            return lowered[c.lower()]
    return None


def find_instruction(names: Iterable[str], preferred: str | None = None) -> str:
    """The instruction column among ``names``: ``preferred``, else ``instruction``/``prompt``/``question``.

    Raises:
        CrowdError: naming what was looked for and the columns there are.
    """
    names = list(names)
    candidates = ((preferred,) if preferred else ()) + tuple(k for k in INSTRUCTION_KEYS if k != preferred)
    found = pick_name(names, candidates)
    if found is None:
        raise CrowdError(f"no instruction column found (looked for {list(candidates)}); columns are: {names}")
    return found


def _list_value_type(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return t.value_type
    return None


def _reward_candidates(structs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Fields every member has that could be the reward (not the answer, the model or an error)."""
    skip = {k.lower() for k in NON_REWARD_KEYS}
    common = [n for n in structs[0] if n.lower() not in skip]
    for fields in structs[1:]:
        common = [n for n in common if n in fields]
    return common


def _choose_reward(candidates: Sequence[str], numeric: Sequence[str], reward: str | None, where: str,
                   need: bool = True) -> str | None:
    """The reward field: ``reward`` if given, else the only candidate, else the default reward,
    else the only candidate holding numbers; otherwise an error listing them."""
    if reward is not None:
        match = pick_name(candidates, (reward,))
        if match is None:
            raise CrowdError(f"reward field {reward!r} is not a field of every crowd member ({where}); "
                             f"fields they share: {sorted(candidates)}")
        return match
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        if not need:
            return None
        raise CrowdError(f"the crowd members share no numeric score field ({where}); score the responses first "
                         "(RewardScorer, or `crowdselect reward`) or name the field with reward= (--reward)")
    default = pick_name(candidates, (DEFAULT_REWARD,))
    if default is not None:
        return default
    if len(numeric) == 1:
        return numeric[0]
    if not need:
        return None
    raise CrowdError(f"several fields could be the reward ({where}): {sorted(candidates)}; "
                     "choose one with reward= (--reward)")


def _wide_members_schema(schema: pa.Schema) -> dict[str, dict[str, pa.DataType]]:
    out = {}
    for f in schema:
        if pa.types.is_struct(f.type):
            fields = _struct_fields(f.type)
            content = pick_name(fields, CONTENT_KEYS)
            if content is not None and _is_text_or_null(fields[content]):
                out[f.name] = fields
    return out


def _wide_members_example(example: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out = {}
    for k, v in example.items():
        if isinstance(v, Mapping):
            content = pick_name(v, CONTENT_KEYS)
            if content is not None and (v[content] is None or isinstance(v[content], str)):
                out[k] = v
    return out


def _long_columns(schema: pa.Schema) -> dict[str, dict[str, pa.DataType]]:
    out = {}
    for f in schema:
        value = _list_value_type(f.type)
        if value is not None and pa.types.is_struct(value):
            fields = _struct_fields(value)
            if pick_name(fields, MODEL_KEYS) and pick_name(fields, CONTENT_KEYS):
                out[f.name] = fields
    return out


def _long_columns_example(example: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out = {}
    for k, v in example.items():
        if isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            if pick_name(v[0], MODEL_KEYS) and pick_name(v[0], CONTENT_KEYS):
                out[k] = v[0]
    return out


def _numeric_fields(structs: Sequence[Mapping[str, Any]], candidates: Sequence[str], schema: bool) -> list[str]:
    if schema:
        return [c for c in candidates if all(is_numeric_type(s[c]) for s in structs)]
    return [c for c in candidates if all(s[c] is None or _is_number(s[c]) for s in structs)
            and any(_is_number(s[c]) for s in structs)]


def _no_crowd(kind: str, names: Sequence[str]) -> CrowdError:
    return CrowdError(
        f"no crowd found in this {kind}: expected struct columns with a text 'content' field (one per model, wide "
        f"layout) or a list column of {{model, content, <score>}} (long layout); columns are: {', '.join(names)}"
    )


def find_crowd(data: Any, reward: str | None = None, *, need_reward: bool = True, open_long: bool = False) -> Crowd:
    """:meth:`Crowd.infer`; with ``open_long``, a long layout found from a schema alone (which
    cannot list the models) gives an open crowd instead of an error."""
    kind, found = _schema_of(data)
    schema = kind == "schema"
    names = list(found.names if schema else found.keys())
    instruction = find_instruction(names)
    wide = _wide_members_schema(found) if schema else _wide_members_example(found)
    if wide:
        structs = list(wide.values())
        candidates = _reward_candidates(structs)
        chosen = _choose_reward(candidates, _numeric_fields(structs, candidates, schema), reward,
                                "columns " + ", ".join(wide), need_reward)
        members = tuple(Member(name, *parse_model_name(name)) for name in wide)
        return Crowd(members, reward=chosen, layout="wide", content_key=pick_name(structs[0], CONTENT_KEYS),
                     instruction=instruction)
    long = _long_columns(found) if schema else _long_columns_example(found)
    if not long:
        raise _no_crowd("table" if schema else "example",
                        [f"{f.name}: {f.type}" for f in found] if schema else names)
    if len(long) > 1:
        raise CrowdError(f"several list columns could hold the crowd: {sorted(long)}; pass crowd=Crowd(..., layout='long', column=...)")
    column, fields = next(iter(long.items()))
    model_key = pick_name(fields, MODEL_KEYS)
    entries = [fields] if schema else [e for e in found[column]]
    candidates = _reward_candidates(entries)
    chosen = _choose_reward(candidates, _numeric_fields(entries, candidates, schema), reward,
                            f"list column {column!r}", need_reward)
    if schema:
        model_names = [] if open_long and not _is_dataset(data) else _long_model_names(data, column, model_key)
    else:
        model_names = sorted({str(e[model_key]) for e in found[column] if e.get(model_key) is not None})
    members = tuple(Member(n, *parse_model_name(n)) for n in model_names)
    return Crowd(members, reward=chosen, layout="long", column=column, model_key=model_key,
                 content_key=pick_name(fields, CONTENT_KEYS), instruction=instruction)


def _is_dataset(data: Any) -> bool:
    import datasets

    return isinstance(data, datasets.Dataset)


def _long_model_names(data: Any, column: str, model_key: str) -> list[str]:
    """The distinct model names of a long-layout column, read without decoding responses."""
    import datasets
    import pyarrow.compute as pc

    if not isinstance(data, datasets.Dataset):
        raise CrowdError(
            f"the long layout names its models inside the rows of {column!r}; pass the Dataset itself "
            "(not only its features) or an explicit crowd"
        )
    col = data.data.table.column(column)
    values = pc.struct_field(pc.list_flatten(col), [model_key])
    names = [n for n in pc.unique(values).to_pylist() if n is not None]
    if not names:
        raise CrowdError(f"list column {column!r} names no model")
    return sorted(names)


def _resolve(crowd: Crowd, data: Any, need_reward: bool) -> Crowd:
    kind, found = _schema_of(data)
    schema = kind == "schema"
    names = list(found.names if schema else found.keys())
    instruction = find_instruction(names, crowd.instruction)
    if crowd.layout == "long" or (crowd.column and pick_name(names, (crowd.column,))):
        column = crowd.list_column(names)
        if schema:
            value = _list_value_type(found.field(column).type)
            if value is None or not pa.types.is_struct(value):
                raise CrowdError(f"column {column!r} must be a list of structs for the long layout, got {found.field(column).type}")
            entries = [_struct_fields(value)]
        else:
            entries = [e for e in found[column] or () if isinstance(e, Mapping)]
        if not entries:  # a row with no answers: nothing to read the field names from
            return replace(crowd, layout="long", column=column, instruction=instruction)
        model_key = pick_name(entries[0], (crowd.model_key, *MODEL_KEYS))
        if model_key is None:
            raise CrowdError(f"list column {column!r} has no model field ({crowd.model_key!r}); fields: {sorted(entries[0])}")
        candidates = _reward_candidates(entries)
        reward = _choose_reward(candidates, _numeric_fields(entries, candidates, schema), crowd.reward,
                                f"list column {column!r}", need_reward)
        return replace(crowd, layout="long", column=column, model_key=model_key, reward=reward, instruction=instruction,
                       content_key=pick_name(entries[0], (crowd.content_key, *CONTENT_KEYS)) or crowd.content_key)

    columns = crowd.member_columns(names)
    structs: list[Mapping[str, Any]] = []
    for col in columns:
        if schema:
            t = found.field(col).type
            if not pa.types.is_struct(t):
                raise CrowdError(f"column {col!r} must be a struct with the response and its scores, got {t}")
            fields: Mapping[str, Any] = _struct_fields(t)
        else:
            cell = found[col]
            if cell is None:
                continue
            if not isinstance(cell, Mapping):
                raise CrowdError(f"column {col!r} must be a struct with the response and its scores, got {type(cell).__name__}")
            fields = cell
        if crowd.reward is not None and pick_name(fields, (crowd.reward,)) is None:
            raise CrowdError(f"column {col!r} has no reward field {crowd.reward!r}; its fields are: {sorted(fields)}")
        structs.append(fields)
    members = tuple(Member(col, m.family, m.params_b) for m, col in zip(crowd.members, columns))
    reward, content_key = crowd.reward, crowd.content_key
    if structs:
        candidates = _reward_candidates(structs)
        reward = _choose_reward(candidates, _numeric_fields(structs, candidates, schema), crowd.reward,
                                "columns " + ", ".join(columns), need_reward)
        content_key = pick_name(structs[0], (crowd.content_key, *CONTENT_KEYS)) or content_key
    return replace(crowd, members=members, reward=reward, layout="wide", content_key=content_key, instruction=instruction)
