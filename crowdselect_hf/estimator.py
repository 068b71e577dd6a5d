"""The scikit-learn estimator contract (``get_params`` / ``set_params``), without importing
scikit-learn.

``sklearn.base.BaseEstimator`` would give the same two methods, but importing it pulls in
``scipy.stats`` through ``sklearn.utils``: about 2 s on the 2-core CI machine, paid by every
``crowdselect select`` even when the embeddings and clusters come from the cache
(benchmarks/README.md, "Where a re-selection's time goes"). ``sklearn.base.clone`` and
``GridSearchCV`` need only these methods, and the parameters are the ``__init__`` arguments, stored
unchanged under their own names.
"""

from __future__ import annotations

import inspect
from typing import Any


class Params:
    """Mixin: an estimator whose parameters are its ``__init__`` arguments.

    Example:
        >>> class Thing(Params):
        ...     def __init__(self, k=3, name="a"):
        ...         self.k, self.name = k, name
        >>> Thing(k=5).get_params()
        {'k': 5, 'name': 'a'}
        >>> Thing().set_params(name="b")
        Thing(name='b')
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        if any(p.kind in kinds for p in signature.parameters.values()):
            raise TypeError(f"{cls.__name__}.__init__ must name its parameters (no *args or **kwargs)")
        return sorted(p.name for p in signature.parameters.values() if p.name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters, by name; with ``deep``, also ``name__sub`` of nested estimators."""
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{sub}", v) for sub, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any):
        """Set parameters (``name`` or ``name__sub`` of a nested estimator); returns ``self``."""
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid ones: {valid}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, subs in nested.items():
            getattr(self, name).set_params(**subs)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = value is default or bool(value == default)
            except Exception:  # noqa: BLE001 - arrays and other values without a plain ==
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"
