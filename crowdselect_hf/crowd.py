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
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

DEFAULT_REWARD = "Skywork-Reward-Llama-3.1-8B"
CONTENT_KEYS = ("content", "response")
MODEL_KEYS = ("model", "model_name")
INSTRUCTION_KEYS = ("instruction", "prompt", "question")

# Sizes that model names do not spell out in billions.
KNOWN_SIZES = {
    "phi-3-mini": 3.8,
    "phi-3-small": 7.0,
    "phi-3-medium": 14.0,
    "phi-3.5-mini": 3.8,
    "phi-4-mini": 3.8,
}

_SIZE_TOKEN = re.compile(r"^(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])$", re.IGNORECASE)


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
        object.__setattr__(self, "params_b", size)
        object.__setattr__(self, "family", str(self.family) if self.family else parse_model_name(self.name)[0])


def parse_model_name(name: str) -> tuple[str, float]:
    """Read a family and a size (billions of parameters) from a model name.

    The size is the first ``<number>B`` token (``8x7B`` counts 56; ``270M`` counts 0.27); the
    family is the lower-cased name without it and without any ``org/`` prefix. Names that do not
    spell their size (``Phi-3-mini-128k-instruct``) are looked up in :data:`KNOWN_SIZES`.

    Example:
        >>> parse_model_name("Qwen2.5-7B-Instruct")
        ('qwen2.5-instruct', 7.0)
        >>> parse_model_name("Phi-3-mini-128k-instruct")
        ('phi-3-128k-instruct', 3.8)
    """
    base = name.rsplit("/", 1)[-1]
    tokens = [t for t in re.split(r"[-_\s]+", base) if t]
    size = math.nan
    size_at = None
    for unit in ("b", "m"):
        for i, tok in enumerate(tokens):
            m = _SIZE_TOKEN.match(tok)
            if m and m.group(3).lower() == unit:
                experts = int(m.group(1)) if m.group(1) else 1
                size = experts * float(m.group(2)) * (1.0 if unit == "b" else 1e-3)
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


@dataclass(frozen=True)
class Crowd:
    """The crowd: its members, the reward field, and the layout of the table.

    Args:
        members: the models, in any order (metrics do not depend on it).
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
        if not members:
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
        column = _pick(names, (self.column,)) if self.column else None
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
        return cls(members=tuple(members), reward=reward, **layout)

    @classmethod
    def infer(cls, data: Any, reward: str | None = None) -> "Crowd":
        """Find the crowd in a dataset, its features, or one example.

        Wide members are struct columns with a text ``content`` (or ``response``) field and at
        least one numeric field; a long layout is a list-of-struct column with a ``model`` field.
        Families and sizes come from the model names (:func:`parse_model_name`). The reward is
        ``reward`` if given, else the one numeric field all members share, else
        ``Skywork-Reward-Llama-3.1-8B`` when it is among several; otherwise an error lists them.

        Args:
            data: a ``Dataset``, an ``IterableDataset`` with known features, ``Features``, a
                ``pyarrow.Schema``, or one example as a dict.
            reward: the reward field; matched case-insensitively.
        """
        kind, schema_like = _schema_of(data)
        if kind == "example":
            return _infer_from_example(schema_like, reward)
        return _infer_from_schema(schema_like, reward, data)

    def resolve(self, data: Any) -> "Crowd":
        """Bind this crowd to a table: exact column and field names (matched case-insensitively),
        the layout, and the reward. Raises :class:`CrowdError` naming what is missing."""
        kind, schema_like = _schema_of(data)
        if kind == "example":
            return _resolve_against_example(self, schema_like)
        return _resolve_against_schema(self, schema_like)


def _member_kwargs(entry: Any) -> dict[str, Any]:
    if isinstance(entry, Member):
        return {"name": entry.name, "family": entry.family, "params_b": entry.params_b}
    if isinstance(entry, str):
        family, size = parse_model_name(entry)
        return {"name": entry, "family": family, "params_b": size}
    if isinstance(entry, Mapping):
        name = entry.get("name")
        family = entry.get("family")
        size = entry.get("params_b")
        if family is None or size is None:
            guessed_family, guessed_size = parse_model_name(str(name))
            family = family if family is not None else guessed_family
            size = size if size is not None else guessed_size
        return {"name": name, "family": family, "params_b": size}
    if isinstance(entry, Sequence) and len(entry) == 3:
        return {"name": entry[0], "family": entry[1], "params_b": entry[2]}
    raise CrowdError(f"cannot read a crowd member from {entry!r}")


# -- schema helpers ---------------------------------------------------------------------------

def _schema_of(data: Any) -> tuple[str, Any]:
    """Return ("schema", pa.Schema) or ("example", dict)."""
    if isinstance(data, pa.Schema):
        return "schema", data
    features = getattr(data, "features", None) if not isinstance(data, Mapping) else None
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        datasets = None
    if datasets is not None:
        if isinstance(data, datasets.Features):
            return "schema", data.arrow_schema
        if isinstance(data, (datasets.Dataset, datasets.IterableDataset)):
            if features is None:
                raise CrowdError(
                    "this IterableDataset does not know its features, so the crowd cannot be found from them; "
                    "pass crowd=Crowd(...) explicitly, or map per example (the crowd is then read from each row)"
                )
            return "schema", features.arrow_schema
    if isinstance(data, Mapping):
        return "example", data
    raise CrowdError(f"cannot find a crowd in a {type(data).__name__}; pass a Dataset, Features, a pyarrow Schema or an example dict")


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_score(t: pa.DataType) -> bool:
    """A field that can hold rewards: numeric, or all-null (Arrow infers ``null`` when every value is None)."""
    return _is_numeric(t) or pa.types.is_null(t)


def _score_fields(structs: Iterable[Mapping[str, pa.DataType]]) -> list[str]:
    """Fields every struct can hold rewards in, numeric in at least one of them."""
    structs = list(structs)
    common = [n for n, t in structs[0].items() if _is_score(t)]
    for fields in structs[1:]:
        common = [n for n in common if n in fields and _is_score(fields[n])]
    return [n for n in common if any(_is_numeric(f[n]) for f in structs)]


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _struct_fields(t: pa.DataType) -> dict[str, pa.DataType]:
    return {t.field(i).name: t.field(i).type for i in range(t.num_fields)}


def _pick(names: Iterable[str], candidates: Sequence[str]) -> str | None:
    lowered = {n.lower(): n for n in names}
    for c in candidates:
        if c.lower() in lowered:
            return lowered[c.lower()]
    return None


def _list_value_type(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return t.value_type
    return None


def _find_instruction(names: Iterable[str], preferred: str = "instruction") -> str:
    names = list(names)
    found = _pick(names, (preferred, *INSTRUCTION_KEYS))
    return found or preferred


def _choose_reward(common: Sequence[str], reward: str | None, where: str) -> str:
    if reward is not None:
        match = _pick(common, (reward,))
        if match is None:
            raise CrowdError(f"reward field {reward!r} is not a numeric field of every crowd member ({where}); numeric fields they share: {sorted(common)}")
        return match
    if len(common) == 1:
        return common[0]
    if not common:
        raise CrowdError(f"the crowd members share no numeric score field ({where}); score the responses first (RewardScorer) or pass reward=")
    default = _pick(common, (DEFAULT_REWARD,))
    if default is not None:
        return default
    raise CrowdError(f"several numeric fields could be the reward ({where}): {sorted(common)}; choose one with reward=")


def _wide_member_fields(schema: pa.Schema) -> dict[str, dict[str, pa.DataType]]:
    out = {}
    for f in schema:
        if pa.types.is_struct(f.type):
            fields = _struct_fields(f.type)
            content = _pick(fields, CONTENT_KEYS)
            if content is not None and _is_text(fields[content]) and any(_is_score(t) for n, t in fields.items() if n != content):
                out[f.name] = fields
    return out


def _long_columns(schema: pa.Schema) -> dict[str, dict[str, pa.DataType]]:
    out = {}
    for f in schema:
        value = _list_value_type(f.type)
        if value is not None and pa.types.is_struct(value):
            fields = _struct_fields(value)
            if _pick(fields, MODEL_KEYS) and _pick(fields, CONTENT_KEYS):
                out[f.name] = fields
    return out


def _infer_from_schema(schema: pa.Schema, reward: str | None, data: Any) -> Crowd:
    instruction = _find_instruction(schema.names)
    wide = _wide_member_fields(schema)
    if wide:
        chosen = _choose_reward(_score_fields(wide.values()), reward, "columns " + ", ".join(wide))
        content = _pick(next(iter(wide.values())), CONTENT_KEYS)
        members = tuple(Member(name, *parse_model_name(name)) for name in wide)
        return Crowd(members, reward=chosen, layout="wide", content_key=content, instruction=instruction)
    long = _long_columns(schema)
    if long:
        if len(long) > 1:
            raise CrowdError(f"several list columns could hold the crowd: {sorted(long)}; pass crowd=Crowd(..., layout='long', column=...)")
        column, fields = next(iter(long.items()))
        chosen = _choose_reward(_score_fields([fields]), reward, f"list column {column!r}")
        model_key = _pick(fields, MODEL_KEYS)
        names = _long_model_names(data, column, model_key)
        members = tuple(Member(name, *parse_model_name(name)) for name in names)
        return Crowd(members, reward=chosen, layout="long", column=column, model_key=model_key,
                     content_key=_pick(fields, CONTENT_KEYS), instruction=instruction)
    raise CrowdError(
        "no crowd found: expected struct columns with a text 'content' field and a numeric score "
        "(one per model, wide layout) or a list column of {model, content, <score>} (long layout); "
        f"columns are: {', '.join(f'{f.name}: {f.type}' for f in schema)}"
    )


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


def _infer_from_example(example: Mapping[str, Any], reward: str | None) -> Crowd:
    instruction = _find_instruction(example.keys())
    wide = {k: v for k, v in example.items() if isinstance(v, Mapping) and _pick(v, CONTENT_KEYS)}
    if wide:
        common = _numeric_keys_of_dicts(wide.values())
        chosen = _choose_reward(common, reward, "columns " + ", ".join(wide))
        content = _pick(next(iter(wide.values())), CONTENT_KEYS)
        members = tuple(Member(name, *parse_model_name(name)) for name in wide)
        return Crowd(members, reward=chosen, layout="wide", content_key=content, instruction=instruction)
    for column, value in example.items():
        if isinstance(value, list) and value and all(isinstance(x, Mapping) for x in value):
            model_key = _pick(value[0], MODEL_KEYS)
            content = _pick(value[0], CONTENT_KEYS)
            if model_key and content:
                chosen = _choose_reward(_numeric_keys_of_dicts(value, require_all=False), reward, f"list column {column!r}")
                names = sorted({str(x[model_key]) for x in value if x.get(model_key) is not None})
                members = tuple(Member(n, *parse_model_name(n)) for n in names)
                return Crowd(members, reward=chosen, layout="long", column=column, model_key=model_key,
                             content_key=content, instruction=instruction)
    raise CrowdError(
        "no crowd found in this example: expected dict values with a 'content' field and a numeric score "
        f"(wide layout) or a list of {{model, content, <score>}} (long layout); keys are: {sorted(example)}"
    )


def _numeric_keys_of_dicts(dicts: Iterable[Mapping[str, Any]], require_all: bool = True) -> list[str]:
    """Fields that are numbers (or None) in every dict and a number in at least one."""
    dicts = list(dicts)
    keys = list(dicts[0].keys())
    out = []
    for k in keys:
        values = [d.get(k, _MISSING) for d in dicts]
        if require_all and any(v is _MISSING for v in values):
            continue
        present = [v for v in values if v is not _MISSING and v is not None]
        if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            out.append(k)
    return out


_MISSING = object()


def _resolve_against_schema(crowd: Crowd, schema: pa.Schema) -> Crowd:
    names = schema.names
    instruction = _pick(names, (crowd.instruction,)) or _find_instruction(names, crowd.instruction)
    if crowd.layout == "long" or (crowd.column and _pick(names, (crowd.column,))):
        column = crowd.list_column(names)
        value = _list_value_type(schema.field(column).type)
        if value is None or not pa.types.is_struct(value):
            raise CrowdError(f"column {column!r} must be a list of structs for the long layout, got {schema.field(column).type}")
        fields = _struct_fields(value)
        model_key = _pick(fields, (crowd.model_key, *MODEL_KEYS))
        content_key = _pick(fields, (crowd.content_key, *CONTENT_KEYS))
        if model_key is None:
            raise CrowdError(f"list column {column!r} has no model field ({crowd.model_key!r}); fields: {sorted(fields)}")
        if crowd.reward is not None and _pick(fields, (crowd.reward,)) and not _is_score(fields[_pick(fields, (crowd.reward,))]):
            f = _pick(fields, (crowd.reward,))
            raise CrowdError(f"reward field {f!r} of list column {column!r} is not numeric (it is {fields[f]})")
        reward = _choose_reward(_score_fields([fields]), crowd.reward, f"list column {column!r}")
        return replace(crowd, layout="long", column=column, model_key=model_key, content_key=content_key or crowd.content_key,
                       reward=reward, instruction=instruction)

    members = []
    structs = []
    content_key = crowd.content_key
    for m, col in zip(crowd.members, crowd.member_columns(names)):
        t = schema.field(col).type
        if not pa.types.is_struct(t):
            raise CrowdError(f"column {col!r} (crowd member {m.name!r}) must be a struct with the response and its scores, got {t}")
        fields = _struct_fields(t)
        if crowd.reward is not None:
            f = _pick(fields, (crowd.reward,))
            if f is None:
                raise CrowdError(f"column {col!r} has no reward field {crowd.reward!r}; its fields are: {sorted(fields)}")
            if not _is_score(fields[f]):
                raise CrowdError(f"reward field {f!r} of column {col!r} is not numeric (it is {fields[f]}); rewards must be numbers")
        structs.append(fields)
        content_key = _pick(fields, (crowd.content_key, *CONTENT_KEYS)) or content_key
        members.append(Member(col, m.family, m.params_b))
    reward = _choose_reward(_score_fields(structs), crowd.reward, "columns " + ", ".join(m.name for m in members))
    return replace(crowd, members=tuple(members), reward=reward, layout="wide", content_key=content_key, instruction=instruction)


def _resolve_against_example(crowd: Crowd, example: Mapping[str, Any]) -> Crowd:
    keys = list(example.keys())
    instruction = _pick(keys, (crowd.instruction,)) or _find_instruction(keys, crowd.instruction)
    if crowd.layout == "long":
        return replace(crowd, column=crowd.list_column(keys), instruction=instruction)
    members = tuple(Member(col, m.family, m.params_b) for m, col in zip(crowd.members, crowd.member_columns(keys)))
    cells = [example[m.name] for m in members if isinstance(example[m.name], Mapping)]
    reward = crowd.reward
    if cells:
        if reward is None:
            reward = _choose_reward(_numeric_keys_of_dicts(cells), None, "columns " + ", ".join(m.name for m in members))
        else:
            reward = _pick(cells[0].keys(), (reward,)) or reward
    return replace(crowd, members=members, reward=reward, instruction=instruction)


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
