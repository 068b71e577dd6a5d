"""Where the ``crowd_*`` metrics came from: the reward field, the crowd and the method version.

``score()`` records a :class:`MetricsProvenance` in the ``id`` of the ``crowd_id`` feature:
``datasets`` keeps a feature's ``id`` through ``select``, ``filter``, ``map``, ``to_parquet``,
``save_to_disk`` and loading, so the record travels with the columns it describes. Selection
reads it to refuse stale metrics and to name, in the card and report, the reward that was
actually used.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from .metrics import ALGORITHM_VERSION

PREFIX = "crowdselect-provenance:"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MetricsProvenance:
    """What produced a table's ``crowd_*`` columns.

    Attributes:
        reward: the reward field read.
        members: ``(name, family, params_b)`` per member (``params_b`` ``None`` when unknown).
        layout: ``"wide"`` or ``"long"``.
        method: the metrics' algorithm version (:data:`~crowdselect_hf.metrics.ALGORITHM_VERSION`).
        schema_version: the version of this record.

    Example:
        >>> p = MetricsProvenance("r", (("m-1b", "m", 1.0),), "wide")
        >>> MetricsProvenance.from_text(p.to_text()) == p
        True
    """

    reward: str | None
    members: tuple[tuple[str, str, float | None], ...]
    layout: str
    method: str = ALGORITHM_VERSION
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, crowd: Any) -> "MetricsProvenance":
        """The provenance of metrics computed with a resolved :class:`~crowdselect_hf.Crowd`."""
        members = tuple(sorted((m.name, m.family, None if math.isnan(m.params_b) else float(m.params_b))
                               for m in crowd.members))
        return cls(crowd.reward, members, crowd.layout)

    def crowd(self, columns: Any = ()) -> Any:
        """The :class:`~crowdselect_hf.Crowd` these metrics were computed with (its members,
        families, sizes, reward and layout; column names are bound again from the table).
        ``columns``: the table's column names; wide members then come in their column order, the
        order an inferred crowd has, so sums over members run in the same order (same bits)."""
        from .crowd import Crowd, Member

        at = {name: i for i, name in enumerate(columns)}
        ordered = sorted(self.members, key=lambda m: at.get(m[0], len(at)))
        members = tuple(Member(name, family, size) for name, family, size in ordered)
        return Crowd(members=members, reward=self.reward, layout=self.layout)

    def to_text(self) -> str:
        return PREFIX + json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_text(cls, text: str | None) -> "MetricsProvenance | None":
        """The record in a feature ``id``; ``None`` when there is none (metrics of ``ds.map``)."""
        if not text or not text.startswith(PREFIX):
            return None
        data = json.loads(text[len(PREFIX):])
        if data.get("schema_version") != SCHEMA_VERSION:
            return None
        data["members"] = tuple(tuple(m) for m in data["members"])
        return cls(**data)

    def differences(self, other: "MetricsProvenance") -> list[str]:
        """What differs from ``other`` (the request), in words; empty when they match."""
        out = []
        if (self.reward or "").lower() != (other.reward or "").lower():
            out.append(f"reward field {self.reward!r} (asked: {other.reward!r})")
        mine = {n.lower(): (f, s) for n, f, s in self.members}
        theirs = {n.lower(): (f, s) for n, f, s in other.members}
        if set(mine) != set(theirs):
            only = sorted(set(mine) ^ set(theirs))
            out.append(f"crowd members (differ in {only[:5]}{'…' if len(only) > 5 else ''})")
        elif mine != theirs:
            changed = sorted(n for n in mine if mine[n] != theirs[n])
            out.append(f"families or sizes of {changed[:5]}")
        if self.method != other.method:
            out.append(f"metrics version {self.method} (this package computes {other.method})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"reward": self.reward, "layout": self.layout, "method": self.method,
                "members": [{"name": n, "family": f, "params_b": s} for n, f, s in self.members]}


def read_provenance(ds: Any) -> MetricsProvenance | None:
    """The provenance ``score()`` recorded on ``ds`` (``None`` when absent)."""
    feature = (getattr(ds, "features", None) or {}).get("crowd_id")
    return MetricsProvenance.from_text(getattr(feature, "id", None))
