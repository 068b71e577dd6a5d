"""Values as JSON and YAML can write them: one conversion for the card, the comparison record and
its cache keys."""

from __future__ import annotations

import math
from typing import Any, Mapping


def json_ready(value: Any) -> Any:
    """A copy of ``value`` that JSON and YAML write safely: NaN/inf → ``None``, numpy scalars
    and arrays → Python numbers and lists, tuples → lists, keys → strings.

    Example:
        >>> json_ready({"w": (1, 1, 2), "m": float("nan")})
        {'w': [1, 1, 2], 'm': None}
    """
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_ready(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None
