"""A crowd bound to one table: the only place that reads the members' rewards and answers.

:class:`CrowdBinding` resolves a :class:`~crowdselect_hf.Crowd` against a table's schema (or one
decoded example) once, and then reads, for any batch of that table:

* the ``[rows, members]`` reward matrix, from Arrow buffers (``score()``, Ray) or from decoded
  Python values (``ds.map``), with one type rule for both;
* each row's ``crowd_id`` (a hash of the instruction);
* the best answer's text (``to_sft``) and its **length in UTF-8 bytes** (the unit of
  ``crowd_best_bytes`` and of the length strategies);
* every answer to score with a reward model (``RewardScorer``).

The type rule, the same on every path: a reward is a number (integer, float or ``Decimal``,
converted to float64); ``None``/null is a missing reward (left out of the metrics, counted); any
other value (text, a boolean, a list) is an error naming the member, the field and the type found.
A member whose answers are all ``None`` is still a member: its rows count as unanswered.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import replace
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .crowd import (
    CONTENT_KEYS, Crowd, CrowdError, Member, find_crowd, is_numeric_type, log_guessed, parse_model_name, pick_name,
)
from .metrics import CrowdMetrics, crowd_metrics

logger = logging.getLogger(__name__)

LENGTH_UNIT = "UTF-8 bytes"
"""The unit of every answer length the package computes (``crowd_best_bytes``, length strategies)."""


def content_id(text: str) -> str:
    """The stable id of an instruction: the first 64 bits of its BLAKE2b hash, in hex.

    Identical instructions get identical ids (the selection keeps one row per id).

    Example:
        >>> content_id("Write a haiku about rain.")
        '018cbd1db6a4869a'
    """
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _not_a_number(field: str, where: str, found: Any) -> CrowdError:
    if type(found).__module__.split(".")[0] in ("torch", "tensorflow", "jax", "jaxlib"):
        return CrowdError(f"reward {field!r} of {where} is a {type(found).__module__}.{type(found).__name__}: the "
                          "crowd is read from Python or numpy values; map over ds.with_format(None) and set the "
                          "format afterwards")
    return CrowdError(f"reward {field!r} of {where} must be a number, found {type(found).__name__}; "
                      "convert the column to numbers (or None for a missing reward)")


def _instruction_error(column: str, found: Any) -> CrowdError:
    if found is None:
        return CrowdError(f"instruction column {column!r} has an empty (None) row; every row needs an instruction")
    return CrowdError(f"instruction column {column!r} must hold text, found {type(found).__name__}")


def reward_number(value: Any, field: str, where: str) -> float:
    """One decoded reward as float64 (``None`` → NaN), or the error of the type rule."""
    if isinstance(value, np.ndarray) and value.ndim == 0:  # a numpy-formatted dataset's struct field
        value = value.item()
    if value is None:
        return math.nan
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, Decimal, np.integer, np.floating)):
        raise _not_a_number(field, where, value)
    return float(value)


def reward_numbers(values: pa.Array | pa.ChunkedArray, field: str, where: str) -> np.ndarray:
    """An Arrow column of rewards as float64 (null → NaN), or the error of the type rule.

    Decimals convert value by value, exactly as ``float(Decimal)`` does on the Python path.
    """
    t = values.type
    if pa.types.is_decimal(t):
        return np.array([math.nan if v is None else float(v) for v in values.to_pylist()], dtype=np.float64)
    if is_numeric_type(t):
        # Not a checked cast: integers beyond 2**53 round to the nearest float64, as float(int) does.
        return pc.cast(values, pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if pa.types.is_null(t) or values.null_count == len(values):
        return np.full(len(values), np.nan)
    raise _not_a_number(field, where, _first_valid(values))


def _first_valid(values: pa.Array | pa.ChunkedArray) -> Any:
    valid = pc.drop_null(values)
    return valid[0].as_py()


def probe_example(columns: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """One example to bind a batch with: each column's first value that is neither ``None`` nor an
    empty list, so a member whose first cells are empty is still found.

    Example:
        >>> probe_example({"instruction": ["a", "b"], "m-7b": [None, {"content": "x", "r": 1}]})
        {'instruction': 'a', 'm-7b': {'content': 'x', 'r': 1}}
    """
    return {k: next((v for v in values if v is not None and not (isinstance(v, list) and not v)), None)
            for k, values in columns.items()}


def byte_lengths(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """UTF-8 bytes of each string (null → 0), read from the Arrow offsets."""
    if pa.types.is_null(strings.type):
        return np.zeros(len(strings), dtype=np.int64)
    return pc.fill_null(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def text_bytes(text: Any) -> int:
    """UTF-8 bytes of one decoded answer (not text → 0)."""
    return len(text.encode("utf-8")) if isinstance(text, str) else 0


class CrowdBinding:
    """A crowd resolved against one table's columns, and every reader of its answers.

    Args:
        crowd: a crowd already resolved (:meth:`resolve` makes one).
        open: the crowd was inferred from a long layout: any model a row names is a member.

    Attributes:
        crowd: the resolved :class:`~crowdselect_hf.Crowd` (exact column and field names).
        names, families, sizes: per member, in member order.
        open: the crowd was inferred from a long layout, so any model a row names is a member.

    Example:
        >>> binding = CrowdBinding.resolve({"instruction": "Hi", "m-1b": {"content": "a", "r": 1},
        ...                                 "m-7b": {"content": "bc", "r": 2.5}})
        >>> binding.rewards_python({"m-1b": [{"content": "a", "r": 1}], "m-7b": [{"content": "bc", "r": 2.5}]}, 1)
        array([[1. , 2.5]])
    """

    __slots__ = ("crowd", "names", "families", "sizes", "priority", "index", "open")

    def __init__(self, crowd: Crowd, open: bool = False):
        members = list(crowd.members)
        self.crowd = crowd
        self.open = open
        self.names = [m.name for m in members]
        self.families = [m.family for m in members]
        self.sizes = np.array([m.params_b for m in members], dtype=np.float64)
        order = sorted(range(len(members)), key=lambda j: self.names[j])
        self.priority = np.empty(len(members), dtype=np.int64)
        self.priority[order] = np.arange(len(members))
        self.index = {n: j for j, n in enumerate(self.names)}

    @classmethod
    def resolve(cls, data: Any, crowd: Crowd | None = None, reward: str | None = None, *,
                need_reward: bool = True) -> "CrowdBinding":
        """Bind ``crowd`` (inferred when ``None``) with ``reward`` (overriding the crowd's) to
        ``data``: a ``Dataset``, ``Features``, a ``pyarrow.Schema`` or one example."""
        if crowd is None:
            resolved = find_crowd(data, reward, need_reward=need_reward, open_long=True)
            log_guessed(resolved.members, "crowd inferred from the columns")
            return cls(resolved, open=resolved.layout == "long")
        return cls(crowd.with_reward(reward or crowd.reward).resolve(data, need_reward=need_reward))

    def __repr__(self):
        return f"CrowdBinding({self.crowd.layout}, {len(self.names)} members, reward={self.crowd.reward!r})"

    @property
    def instruction(self) -> str:
        return self.crowd.instruction

    @property
    def layout(self) -> str:
        return self.crowd.layout

    @property
    def reward(self) -> str | None:
        return self.crowd.reward

    @property
    def answer_columns(self) -> list[str]:
        """The columns holding the answers: one per member (wide) or the list column (long)."""
        return [self.crowd.column] if self.layout == "long" else list(self.names)

    def with_models(self, models: Sequence[Any]) -> "CrowdBinding":
        """An open binding extended by the models of ``models`` it does not know yet.

        Members stay sorted by name, as ``score()`` lists a long table's models, so sums over
        members run in the same order on every path (a member absent from a row adds nothing).
        """
        if not self.open:
            return self
        extra = {m for m in models if m is not None} - set(self.names)
        if not extra:
            return self
        known = {m.name: m for m in self.crowd.members}
        members = tuple(known.get(n) or Member(n, *parse_model_name(n)) for n in sorted(set(known) | extra))
        return CrowdBinding(replace(self.crowd, members=members), open=True)

    def metrics(self, R: np.ndarray) -> CrowdMetrics:
        return crowd_metrics(R, self.families, self.sizes, self.priority)

    def _where(self, j: int) -> str:
        return f"{self.crowd.column}[{self.names[j]}]" if self.layout == "long" else f"column {self.names[j]!r}"

    # -- instruction ids ----------------------------------------------------------------------------
    def ids_arrow(self, column: pa.ChunkedArray | pa.Array) -> list[str]:
        """``content_id`` of every instruction, hashed straight from the Arrow buffers."""
        name = self.instruction
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        blake2b = hashlib.blake2b
        out: list[str] = []
        for chunk in chunks:
            if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
                raise _instruction_error(name, None if pa.types.is_null(chunk.type) else _first_valid(chunk))
            if chunk.null_count:
                raise _instruction_error(name, None)
            _, offsets_buf, data_buf = chunk.buffers()
            dtype = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
            offsets = np.frombuffer(offsets_buf, dtype=dtype)[chunk.offset : chunk.offset + len(chunk) + 1].tolist()
            data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
            out.extend(blake2b(data[a:b], digest_size=8).hexdigest() for a, b in zip(offsets, offsets[1:]))
        return out

    def ids_python(self, texts: Sequence[Any]) -> list[str]:
        out = []
        for t in texts:
            if not isinstance(t, str):
                raise _instruction_error(self.instruction, t)
            out.append(content_id(t))
        return out

    # -- rewards and best-answer lengths from Arrow ---------------------------------------------------
    def answers_arrow(self, table: pa.Table) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """The reward matrix of an Arrow table, and a function from each row's best member to the
        byte length of its answer. Only the reward fields and the answers' offsets are read."""
        if self.layout == "long":
            return self._long_arrow(table)
        reward = self.reward
        R = np.empty((table.num_rows, len(self.names)), dtype=np.float64)
        bad: list[tuple[int, int, Any]] = []
        for j, name in enumerate(self.names):
            try:
                R[:, j] = reward_numbers(pc.struct_field(table.column(name), [reward]), reward, self._where(j))
            except CrowdError:
                values = pc.struct_field(table.column(name), [reward])
                row = int(pc.index(pc.is_valid(values), True).as_py())
                bad.append((row, j, values[row].as_py()))
        self._raise_first(bad)

        def best_bytes(best: np.ndarray) -> np.ndarray:
            out = np.zeros(table.num_rows, dtype=np.int64)
            for j, name in enumerate(self.names):
                rows = best == j
                if rows.any():
                    out[rows] = byte_lengths(self._content_arrow(table.column(name), f"column {name!r}"))[rows]
            return out

        return R, best_bytes

    def _raise_first(self, bad: list[tuple[int, int, Any]]) -> None:
        """Raise the type error of the first bad reward in (row, member) order, as every path does."""
        if bad:
            _, j, value = min(bad, key=lambda b: (b[0], b[1]))
            raise _not_a_number(self.reward, self._where(j), value)

    def _content_arrow(self, column, where: str):
        try:
            return pc.struct_field(column, [self.crowd.content_key])
        except (KeyError, pa.ArrowInvalid):
            raise CrowdError(f"{where} has no response field {self.crowd.content_key!r}") from None

    def _long_arrow(self, table: pa.Table) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        crowd = self.crowd
        R = np.full((table.num_rows, len(self.names)), np.nan)
        start = 0
        unknown: set[str] = set()
        kept_rows, kept_cols, kept_lens, bad = [], [], [], []
        for chunk in table.column(crowd.column).chunks:
            flat = pc.list_flatten(chunk)
            parents = pc.list_parent_indices(chunk).to_numpy() + start
            models = pc.struct_field(flat, [crowd.model_key]).to_pylist()
            cols = np.array([self.index.get(m, -1) if m is not None else -1 for m in models], dtype=np.int64)
            unknown.update(m for m, c in zip(models, cols) if c < 0 and m is not None)
            keep = cols >= 0
            repeated = self._first_repeat(parents[keep], cols[keep])
            rewards = pc.struct_field(flat, [crowd.reward])
            try:
                values = reward_numbers(rewards.filter(pa.array(keep)), crowd.reward, "")
            except CrowdError:
                valid = np.flatnonzero(keep & rewards.is_valid().to_numpy(zero_copy_only=False))
                found = rewards[int(valid[0])].as_py()  # one Arrow type: every bad value has found's type
                bad.extend((int(parents[i]), int(cols[i]), found) for i in valid)
                values = np.full(int(keep.sum()), np.nan)
            # The first row with an error decides, a repeated model before a bad reward (the row order
            # in which the decoded path meets them).
            if repeated is not None and (not bad or repeated[0] <= min(row for row, _, _ in bad)):
                self._raise_repeated(repeated[1])
            self._raise_first(bad)
            R[parents[keep], cols[keep]] = values
            kept_rows.append(parents[keep])
            kept_cols.append(cols[keep])
            kept_lens.append(byte_lengths(self._content_arrow(flat, f"list column {crowd.column!r}"))[keep])
            start += len(chunk)
        if unknown:
            logger.warning("models not in the crowd were ignored: %s", sorted(unknown))
        rows, cols, lens = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (kept_rows, kept_cols, kept_lens))

        def best_bytes(best: np.ndarray) -> np.ndarray:
            out = np.zeros(table.num_rows, dtype=np.int64)
            hit = cols == best[rows]
            out[rows[hit]] = lens[hit]
            return out

        return R, best_bytes

    def _first_repeat(self, rows: np.ndarray, cols: np.ndarray) -> tuple[int, int] | None:
        """``(row, member)`` of the first row that lists a member twice, or ``None``."""
        if rows.size == 0:
            return None
        key = rows * len(self.names) + cols
        uniq, counts = np.unique(key, return_counts=True)
        if not (counts > 1).any():
            return None
        k = int(uniq[np.argmax(counts > 1)])
        return k // len(self.names), k % len(self.names)

    def _raise_repeated(self, j: int) -> None:
        raise CrowdError(f"a row lists model {self.names[j]!r} more than once in {self.crowd.column!r}; "
                         "each model may answer once")

    # -- rewards and best-answer lengths from decoded rows ------------------------------------------------
    def rewards_python(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """The reward matrix of ``n`` decoded rows (a dict of columns, as ``ds.map`` passes)."""
        reward = self.reward
        R = np.full((n, len(self.names)), np.nan)
        bad: list[tuple[int, int, Any]] = []
        if self.layout == "long":
            for i, entries in enumerate(columns[self.crowd.column]):
                seen = set()
                for e in entries or ():
                    j = self.index.get(e.get(self.crowd.model_key))
                    if j is None:
                        continue
                    if j in seen:
                        self._raise_repeated(j)
                    seen.add(j)
                    if reward not in e:
                        raise CrowdError(f"entries of {self.crowd.column!r} have no reward field {reward!r}; "
                                         f"their fields are: {sorted(e)}")
                    R[i, j] = self._number(e[reward], i, j, bad)
                self._raise_first(bad)  # rows in order: the first row with an error decides
            return R
        for j, name in enumerate(self.names):
            for i, cell in enumerate(columns[name]):
                if cell is None:
                    continue
                if not isinstance(cell, Mapping):
                    raise CrowdError(f"column {name!r} must hold structs with the response and its scores, "
                                     f"found {type(cell).__name__}")
                if reward not in cell:
                    raise CrowdError(f"column {name!r} has no reward field {reward!r}; its fields are: {sorted(cell)}")
                R[i, j] = self._number(cell[reward], i, j, bad)
        self._raise_first(bad)
        return R

    def _number(self, value: Any, row: int, j: int, bad: list) -> float:
        try:
            return reward_number(value, self.reward, self._where(j))
        except CrowdError:
            bad.append((row, j, value))
            return math.nan

    def best_bytes_python(self, columns: Mapping[str, Sequence[Any]], best: np.ndarray) -> list[int]:
        """UTF-8 bytes of each decoded row's best answer (0 without a best member)."""
        out = []
        for i, b in enumerate(best.tolist()):
            out.append(0 if b < 0 else text_bytes(self._answer(columns, i, self.names[b])))
        return out

    def _answer(self, columns: Mapping[str, Sequence[Any]], row: int, member: str) -> Any:
        if self.layout == "wide":
            return _content(columns[member][row], self.crowd.content_key)
        for entry in columns[self.crowd.column][row] or ():
            if entry is not None and entry.get(self.crowd.model_key) == member:
                return _content(entry, self.crowd.content_key)
        return None

    def best_answer(self, example: Mapping[str, Any]) -> str | None:
        """The text of one scored row's best answer (``None`` when it has no best member).

        Raises:
            CrowdError: when ``crowd_best_model`` names a member this table does not have.
        """
        best = example.get("crowd_best_model")
        if best is None:
            return None
        if self.layout == "wide":
            if best not in example:
                raise CrowdError(f"crowd_best_model is {best!r} but the data has no column {best!r}; "
                                 "was the dataset scored with another crowd?")
            return _content(example[best], self.crowd.content_key)
        column = example.get(self.crowd.column) or ()
        if not any(e is not None and e.get(self.crowd.model_key) == best for e in column):
            raise CrowdError(f"crowd_best_model is {best!r} but list column {self.crowd.column!r} has no entry "
                             f"with {self.crowd.model_key}={best!r}")
        return self._answer({self.crowd.column: [column]}, 0, best)

    def answer_slots(self, columns: Mapping[str, Sequence[Any]]) -> Iterator[tuple[Any, int, Any, str]]:
        """Every answer of decoded rows that has text: ``(slot, row, text, where)``.

        ``slot`` is ``(column, row)`` (wide) or ``(row, entry index)`` (long), the address a reward
        is written back to. An open long binding yields every model's answers.
        """
        if self.layout == "wide":
            for name in self.names:
                for row, cell in enumerate(columns[name]):
                    text = _content(cell, self.crowd.content_key)
                    if text is not None:
                        yield (name, row), row, text, f"row {row} of the batch, column {name!r}"
            return
        column, model_key = self.crowd.column, self.crowd.model_key
        for row, entries in enumerate(columns[column]):
            for e, entry in enumerate(entries or ()):
                model = entry.get(model_key) if entry is not None else None
                text = _content(entry, self.crowd.content_key)
                if text is not None and (self.open or model in self.index):
                    yield (row, e), row, text, f"row {row} of the batch, {column}[{e}] ({model})"


def _content(cell: Any, key: str) -> Any:
    if not isinstance(cell, Mapping):
        return None
    if key in cell:
        return cell[key]
    found = pick_name(cell.keys(), CONTENT_KEYS)
    return cell[found] if found else None
