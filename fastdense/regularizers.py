"""Weight and activity regularizers, as in ``keras.regularizers``.

A regularizer is called on an array and returns the penalty as a Python float; fastdense
layers report these in ``layer.losses``. Sums are taken in float64.

    >>> import numpy as np
    >>> from fastdense.regularizers import L2
    >>> L2(2.0)(np.ones((5, 5)))
    50.0
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
    "L1",
    "L1L2",
    "L2",
    "OrthogonalRegularizer",
    "Regularizer",
    "deserialize",
    "get",
    "l1_l2",
    "serialize",
]

_MODULE = "keras.regularizers"
_EPSILON = 1e-7  # Keras's backend.epsilon(): the smallest norm OrthogonalRegularizer divides by


def _factor(owner: str, name: str, value: Any, default: float, *, float32: bool = False) -> float:
    """A penalty factor: a finite number >= 0 (None means the default), stored as a float.

    ``float32``: round through float32 first, as Keras 3.15 stores L1's and
    OrthogonalRegularizer's factors (``L1(0.01)`` has ``l1 == 0.009999999776482582``), so
    configs match Keras's exactly.
    """
    number = float(check_number(owner, name, default if value is None else value, minimum=0.0))
    return float(np.float32(number)) if float32 else number


def _float64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


class Regularizer:
    """Base class of regularizers; subclass it for your own.

    Implement ``__call__(x) -> float`` and ``get_config()``. ``from_config(config)``
    defaults to ``cls(**config)``.

    Example::

        @fastdense.saving.register_serializable(package="my_project")
        class SumSquares(Regularizer):
            def __init__(self, factor=0.01):
                self.factor = factor
            def __call__(self, x):
                return self.factor * float(np.sum(np.square(x)))
            def get_config(self):
                return {"factor": self.factor}
    """

    def __call__(self, x: Any) -> float:
        """The penalty for array ``x``."""
        return 0.0

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-compatible."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config()")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Regularizer:
        """Rebuild a regularizer from ``get_config()`` output."""
        return instantiate_from_config(cls, config)

    def __repr__(self) -> str:
        return config_repr(self)


@register_builtin(_MODULE, "L1L2", "l1l2")
class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)``.

    The name ``"l1l2"`` (Keras 3.15's alias) gives ``L1L2()`` with both factors 0;
    ``"l1_l2"`` gives :func:`l1_l2`'s ``L1L2(0.01, 0.01)`` (Keras 2's function, and what
    Keras 3's documentation promises).

    >>> L1L2(l1=0.5, l2=0.25)(np.array([1.0, -2.0]))
    2.75
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = _factor("L1L2", "l1", l1, 0.0)
        self.l2 = _factor("L1L2", "l2", l2, 0.0)

    def __call__(self, x: Any) -> float:
        x = _float64(x)
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(x)))
        if self.l2:
            penalty += self.l2 * float(np.sum(np.square(x)))
        return penalty

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


@register_builtin(_MODULE, "L1", "l1")
class L1(Regularizer):
    """``l1 * sum(|x|)``; ``l1`` is kept at float32 precision, as Keras 3.15 does.

    >>> round(L1(0.1)(np.array([1.0, -2.0, 3.0])), 6)
    0.6
    """

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = _factor("L1", "l1", l1, 0.01, float32=True)

    def __call__(self, x: Any) -> float:
        return self.l1 * float(np.sum(np.abs(_float64(x))))

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


@register_builtin(_MODULE, "L2", "l2")
class L2(Regularizer):
    """``l2 * sum(x**2)``.

    >>> L2(0.5)(np.array([1.0, -2.0]))
    2.5
    """

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = _factor("L2", "l2", l2, 0.01)

    def __call__(self, x: Any) -> float:
        return self.l2 * float(np.sum(np.square(_float64(x))))

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


@register_builtin(_MODULE, "OrthogonalRegularizer", "orthogonal_regularizer")
class OrthogonalRegularizer(Regularizer):
    """Penalizes non-orthogonal rows (``mode="rows"``) or columns (``"columns"``) of a matrix.

    With the rows (or columns) L2-normalized to ``v_1 .. v_n`` (norms below 1e-7 are taken
    as 1e-7, as Keras does), the penalty is
    ``factor * mean over pairs i < j of |v_i . v_j|`` -- Keras's
    ``factor * 0.5 * sum(|off-diagonal of V V^T|) / (n (n - 1) / 2)``. A single row (or
    column) has no pairs: penalty 0.

    >>> round(OrthogonalRegularizer(factor=1.0)(np.array([[1.0, 0.0], [1.0, 1.0]])), 6)
    0.707107
    """

    _MODES = ("rows", "columns")

    def __init__(self, factor: float = 0.01, mode: str = "rows") -> None:
        self.factor = _factor("OrthogonalRegularizer", "factor", factor, 0.01, float32=True)
        if mode not in self._MODES:
            raise ValueError(f"OrthogonalRegularizer: mode must be one of {self._MODES}, got {mode!r}")
        self.mode = mode

    def __call__(self, x: Any) -> float:
        x = _float64(x)
        if x.ndim != 2:
            raise ValueError(f"OrthogonalRegularizer expects a 2-D array, got shape {x.shape}")
        vectors = x if self.mode == "rows" else x.T
        n = vectors.shape[0]
        if n < 2:
            return 0.0
        norms = np.sqrt(np.sum(np.square(vectors), axis=1, keepdims=True))
        unit = vectors / np.maximum(norms, _EPSILON)
        off_diagonal = np.abs(unit @ unit.T) * (1.0 - np.eye(n))
        return self.factor * 0.5 * float(np.sum(off_diagonal)) / (n * (n - 1) / 2.0)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}


register_builtin(_MODULE, "Regularizer", "regularizer")(Regularizer)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    """Keras 2's shortcut: ``L1L2`` with both factors 0.01 by default.

    >>> l1_l2()
    L1L2(l1=0.01, l2=0.01)
    """
    return L1L2(l1=l1, l2=l2)


def _keras2_shortcut(identifier: Any) -> L1L2 | None:
    return l1_l2() if isinstance(identifier, str) and identifier == "l1_l2" else None


def serialize(regularizer: Any) -> Any:
    """The Keras 3 config of a regularizer.

    >>> serialize(L2(0.01))
    {'module': 'keras.regularizers', 'class_name': 'L2', 'config': {'l2': 0.01}, 'registered_name': None}
    """
    return serialize_keras_object(regularizer)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """A regularizer from a Keras 3 / Keras 2 config or a name.

    >>> deserialize({"class_name": "L1L2", "config": {"l1": 0.0001, "l2": 0.001}})
    L1L2(l1=0.0001, l2=0.001)
    """
    shortcut = _keras2_shortcut(config)
    if shortcut is not None:
        return shortcut
    return deserialize_keras_object(
        config, builtin_objects(_MODULE), custom_objects, printable_module_name="regularizer"
    )


def get(identifier: Any) -> Any:
    """A regularizer from a name, a config dict, a class, an instance or a callable.

    None gives None; an unknown name raises ValueError.

    >>> get("l2")
    L2(l2=0.01)
    """
    shortcut = _keras2_shortcut(identifier)
    if shortcut is not None:
        return shortcut
    return get_from_identifier(identifier, builtin_objects(_MODULE), "regularizer")
