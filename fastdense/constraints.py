"""Weight constraints, as in ``keras.constraints``.

A constraint is called on a weight array and returns a new, constrained array (the input
is never modified). Norms are taken over ``axis`` -- for a Dense kernel of shape
``(input_dim, units)`` the default ``axis=0`` constrains each unit's incoming weight
vector -- and, as in Keras, divided with an epsilon of 1e-7.

    >>> import numpy as np
    >>> from fastdense.constraints import UnitNorm
    >>> w = UnitNorm()(np.array([[3.0, 0.0], [4.0, 2.0]]))
    >>> np.round(w, 6).tolist()
    [[0.6, 0.0], [0.8, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fastdense.saving.serialization import (
    builtin_objects,
    check_number,
    config_repr,
    deserialize_keras_object,
    get_from_identifier,
    instantiate_from_config,
    register_builtin,
    serialize_keras_object,
)

__all__ = [
    "Constraint",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "UnitNorm",
    "deserialize",
    "get",
    "serialize",
]

_MODULE = "keras.constraints"
_EPSILON = 1e-7  # Keras's backend.epsilon()

Axis = int | list[int]


def _axis(owner: str, axis: Any) -> Axis:
    """An int or a list of ints (tuples become lists, so configs survive JSON unchanged)."""
    def is_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))

    if is_int(axis):
        return int(axis)
    if isinstance(axis, (list, tuple)) and axis and all(is_int(a) for a in axis) and len(set(axis)) == len(axis):
        return [int(a) for a in axis]
    raise ValueError(f"{owner}: axis must be an int or a non-empty list of distinct ints, got {axis!r}")


def _float_array(w: Any) -> np.ndarray:
    w = np.asarray(w)
    return w if w.dtype.kind == "f" else w.astype(np.float64)


def _norms(owner: str, w: np.ndarray, axis: Axis) -> np.ndarray:
    """L2 norms over ``axis`` (kept as size-1 dims), computed in float64."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if not all(-w.ndim <= a < w.ndim for a in axes) or len({a % w.ndim for a in axes}) != len(axes):
        raise ValueError(f"{owner}(axis={axis!r}) cannot apply to a weight of shape {w.shape} (rank {w.ndim})")
    return np.sqrt(np.sum(np.square(w, dtype=np.float64), axis=axes, keepdims=True))


class Constraint:
    """Base class of constraints; subclass it for your own.

    Implement ``__call__(w) -> new array`` (and ``get_config()`` if it has arguments).
    The base ``__call__`` returns ``w`` unchanged.

    Example::

        @fastdense.saving.register_serializable(package="my_project")
        class ClipTo(Constraint):
            def __init__(self, limit=1.0):
                self.limit = limit
            def __call__(self, w):
                return np.clip(w, -self.limit, self.limit)
            def get_config(self):
                return {"limit": self.limit}
    """

    def __call__(self, w: Any) -> np.ndarray:
        """The constrained weights."""
        return w

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-compatible."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Constraint:
        """Rebuild a constraint from ``get_config()`` output."""
        return instantiate_from_config(cls, config)

    def __repr__(self) -> str:
        return config_repr(self)


@register_builtin(_MODULE, "MaxNorm", "max_norm", "maxnorm")
class MaxNorm(Constraint):
    """Rescale each weight vector whose norm exceeds ``max_value``.

    ``w * clip(norm, 0, max_value) / (epsilon + norm)`` with norms over ``axis``.

    >>> MaxNorm(max_value=1.0)(np.array([[3.0], [4.0]])).round(6).tolist()
    [[0.6], [0.8]]
    """

    def __init__(self, max_value: float = 2, axis: Axis = 0) -> None:
        self.max_value = check_number("MaxNorm", "max_value", max_value, minimum=0.0)
        self.axis = _axis("MaxNorm", axis)

    def __call__(self, w: Any) -> np.ndarray:
        w = _float_array(w)
        norms = _norms("MaxNorm", w, self.axis)
        desired = np.clip(norms, 0.0, self.max_value)
        return (w * (desired / (_EPSILON + norms))).astype(w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


@register_builtin(_MODULE, "MinMaxNorm", "min_max_norm")
class MinMaxNorm(Constraint):
    """Move each weight vector's norm into ``[min_value, max_value]`` at ``rate``.

    ``desired = rate * clip(norm, min_value, max_value) + (1 - rate) * norm``; the result is
    ``w * desired / (epsilon + norm)``. ``rate=1`` enforces the bounds strictly.

    >>> MinMaxNorm(min_value=1.0, max_value=2.0)(np.array([[0.3], [0.4]])).round(6).tolist()
    [[0.6], [0.8]]
    """

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Axis = 0) -> None:
        self.min_value = check_number("MinMaxNorm", "min_value", min_value, minimum=0.0)
        self.max_value = check_number("MinMaxNorm", "max_value", max_value, minimum=0.0)
        if self.max_value < self.min_value:
            raise ValueError(
                f"MinMaxNorm: min_value must be <= max_value, got min_value={min_value!r}, max_value={max_value!r}"
            )
        self.rate = check_number("MinMaxNorm", "rate", rate, minimum=0.0)
        if self.rate > 1:
            raise ValueError(f"MinMaxNorm: rate must be in [0, 1], got {rate!r}")
        self.axis = _axis("MinMaxNorm", axis)

    def __call__(self, w: Any) -> np.ndarray:
        w = _float_array(w)
        norms = _norms("MinMaxNorm", w, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return (w * (desired / (_EPSILON + norms))).astype(w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


@register_builtin(_MODULE, "NonNeg", "non_neg", "nonneg")
class NonNeg(Constraint):
    """Negative weights become 0.

    >>> NonNeg()(np.array([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    def __call__(self, w: Any) -> np.ndarray:
        w = np.asarray(w)
        return np.maximum(w, np.zeros((), dtype=w.dtype))


@register_builtin(_MODULE, "UnitNorm", "unit_norm", "unitnorm")
class UnitNorm(Constraint):
    """Scale each weight vector to norm 1: ``w / (epsilon + norm)`` with norms over ``axis``."""

    def __init__(self, axis: Axis = 0) -> None:
        self.axis = _axis("UnitNorm", axis)

    def __call__(self, w: Any) -> np.ndarray:
        w = _float_array(w)
        norms = _norms("UnitNorm", w, self.axis)
        return (w / (_EPSILON + norms)).astype(w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


register_builtin(_MODULE, "Constraint", "constraint")(Constraint)


def serialize(constraint: Any) -> Any:
    """The Keras 3 config of a constraint.

    >>> serialize(MaxNorm(2.0))
    {'module': 'keras.constraints', 'class_name': 'MaxNorm', 'config': {'max_value': 2.0, 'axis': 0}, 'registered_name': None}
    """
    return serialize_keras_object(constraint)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """A constraint from a Keras 3 / Keras 2 config or a name.

    >>> deserialize({"class_name": "UnitNorm", "config": {"axis": 0}})
    UnitNorm(axis=0)
    """
    return deserialize_keras_object(
        config, builtin_objects(_MODULE), custom_objects, printable_module_name="constraint"
    )


def get(identifier: Any) -> Any:
    """A constraint from a name, a config dict, a class, an instance or a callable.

    None gives None; an unknown name raises ValueError.

    >>> get("non_neg")
    NonNeg()
    """
    return get_from_identifier(identifier, builtin_objects(_MODULE), "constraint")
