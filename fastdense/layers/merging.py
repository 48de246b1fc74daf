"""Merge layers: combine a list of inputs into one output.

>>> import numpy as np
>>> from fastdense.layers import Add, Concatenate
>>> a, b = np.ones((2, 3)), np.full((2, 3), 2.0)
>>> Add()([a, b]).tolist()
[[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
>>> Concatenate()([a, b]).shape
(2, 6)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastdense.layers.base import Layer
from fastdense.saving.serialization import register_builtin

__all__ = [
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate",
]


def _broadcast_dims(a: int | None, b: int | None, owner: str, shapes: Any) -> int | None:
    """Keras's rule for one axis of an element-wise merge (``None`` stays unknown)."""
    if a is None or b is None:
        return None
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    raise ValueError(f"{owner} expects inputs with compatible (broadcastable) shapes, got shapes {shapes}")


class _Merge(Layer):
    """Base of the element-wise merges: a list of inputs of broadcastable shapes."""

    _list_input = True
    _min_inputs = 1

    def build(self, input_shape: Any) -> None:
        self._check_shapes(input_shape)

    def _check_shapes(self, shapes: Any) -> None:
        if not isinstance(shapes, list):
            raise ValueError(
                f"{self._owner()} should be called on a list of inputs, got a single input of shape {shapes}"
            )
        if len(shapes) < self._min_inputs:
            raise ValueError(
                f"{self._owner()} should be called on a list of at least {self._min_inputs} inputs, "
                f"got {len(shapes)}"
            )

    def compute_output_shape(self, input_shape: Any) -> tuple:
        self._check_shapes(input_shape)
        rank = max(len(s) for s in input_shape)
        padded = [(1,) * (rank - len(s)) + tuple(s) for s in input_shape]
        out = list(padded[0])
        for shape in padded[1:]:
            out = [_broadcast_dims(a, b, self._owner(), input_shape) for a, b in zip(out, shape)]
        return tuple(out)

    def _combine(self, inputs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def call(self, inputs: list[np.ndarray]) -> np.ndarray:
        if len(inputs) == 1:
            return inputs[0]
        try:
            return self._combine(inputs)
        except ValueError:
            raise ValueError(
                f"{self._owner()} expects inputs with compatible (broadcastable) shapes, "
                f"got shapes {[x.shape for x in inputs]}"
            ) from None


@register_builtin("keras.layers", "Add")
class Add(_Merge):
    """Element-wise sum of a list of inputs."""

    def _combine(self, inputs: list[np.ndarray]) -> np.ndarray:
        out = inputs[0] + inputs[1]
        for x in inputs[2:]:
            out = out + x
        return out


@register_builtin("keras.layers", "Subtract")
class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    def _check_shapes(self, shapes: Any) -> None:
        super()._check_shapes(shapes)
        if len(shapes) != 2:
            raise ValueError(f"{self._owner()} should be called on exactly 2 inputs, got {len(shapes)}")

    def _combine(self, inputs: list[np.ndarray]) -> np.ndarray:
        return inputs[0] - inputs[1]


@register_builtin("keras.layers", "Multiply")
class Multiply(_Merge):
    """Element-wise product of a list of inputs."""

    def _combine(self, inputs: list[np.ndarray]) -> np.ndarray:
        out = inputs[0] * inputs[1]
        for x in inputs[2:]:
            out = out * x
        return out


@register_builtin("keras.layers", "Average")
class Average(_Merge):
    """Element-wise mean of a list of inputs."""

    def _combine(self, inputs: list[np.ndarray]) -> np.ndarray:
        out = inputs[0] + inputs[1]
        for x in inputs[2:]:
            out = out + x
        return (out / len(inputs)).astype(out.dtype, copy=False)


@register_builtin("keras.layers", "Maximum")
class Maximum(_Merge):
    """Element-wise maximum of a list of inputs."""

    def _combine(self, inputs: list[np.ndarray]) -> np.ndarray:
        out = np.maximum(inputs[0], inputs[1])
        for x in inputs[2:]:
            out = np.maximum(out, x)
        return out


@register_builtin("keras.layers", "Minimum")
class Minimum(_Merge):
    """Element-wise minimum of a list of inputs."""

    def _combine(self, inputs: list[np.ndarray]) -> np.ndarray:
        out = np.minimum(inputs[0], inputs[1])
        for x in inputs[2:]:
            out = np.minimum(out, x)
        return out


@register_builtin("keras.layers", "Concatenate")
class Concatenate(_Merge):
    """Concatenates a list of inputs along ``axis`` (default: the last axis).

    All other dimensions must match.
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"The `axis` argument must be an integer. Received: axis={axis!r}")
        self.axis = int(axis)

    def _check_shapes(self, shapes: Any) -> None:
        super()._check_shapes(shapes)
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(
                f"{self._owner()} requires inputs of the same rank, got shapes {shapes}"
            )
        rank = ranks.pop()
        if not -rank <= self.axis < rank:
            raise ValueError(f"{self._owner()} axis {self.axis} is out of range for inputs of rank {rank}")
        axis = self.axis % rank
        for position in range(rank):
            if position == axis:
                continue
            known = {s[position] for s in shapes if s[position] is not None}
            if len(known) > 1:
                raise ValueError(
                    f"{self._owner()} requires inputs with matching shapes except for the "
                    f"concatenation axis {self.axis}, got shapes {shapes}"
                )

    def compute_output_shape(self, input_shape: Any) -> tuple:
        self._check_shapes(input_shape)
        rank = len(input_shape[0])
        axis = self.axis % rank
        out = []
        for position in range(rank):
            dims = [s[position] for s in input_shape]
            if position == axis:
                out.append(None if any(d is None for d in dims) else sum(dims))
            else:
                known = [d for d in dims if d is not None]
                out.append(known[0] if known else None)
        return tuple(out)

    def call(self, inputs: list[np.ndarray]) -> np.ndarray:
        try:
            return np.concatenate(inputs, axis=self.axis)
        except ValueError:
            raise ValueError(
                f"{self._owner()} requires inputs with matching shapes except for the "
                f"concatenation axis {self.axis}, got shapes {[x.shape for x in inputs]}"
            ) from None

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = self.axis
        return config


# Keras's functional spellings: ``add([a, b])`` == ``Add()([a, b])``.

def add(inputs: list, **kwargs: Any) -> Any:
    """``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs: list, **kwargs: Any) -> Any:
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs: list, **kwargs: Any) -> Any:
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs: list, **kwargs: Any) -> Any:
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def maximum(inputs: list, **kwargs: Any) -> Any:
    """``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: list, **kwargs: Any) -> Any:
    """``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: list, axis: int = -1, **kwargs: Any) -> Any:
    """``Concatenate(axis=axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
