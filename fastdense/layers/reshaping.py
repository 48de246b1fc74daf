"""Flatten and Reshape: change the per-sample shape, keep the batch axis.

>>> import numpy as np
>>> from fastdense.layers import Flatten, Reshape
>>> Flatten()(np.ones((2, 3, 4))).shape
(2, 12)
>>> Reshape((3, -1))(np.ones((2, 12))).shape
(2, 3, 4)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastdense.layers.base import InputSpec, Layer, standardize_data_format
from fastdense.saving.serialization import register_builtin

__all__ = ["Flatten", "Reshape"]


@register_builtin("keras.layers", "Flatten")
class Flatten(Layer):
    """Flattens each sample: ``(batch, d0, d1, ...) -> (batch, d0 * d1 * ...)``.

    ``data_format="channels_first"`` moves the channel axis (axis 1) last
    before flattening, as Keras does.  A rank-1 input becomes ``(batch, 1)``.
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = InputSpec(min_ndim=1)

    def call(self, inputs: np.ndarray) -> np.ndarray:
        if self.data_format == "channels_first" and inputs.ndim > 2:
            inputs = np.moveaxis(inputs, 1, -1)
        return inputs.reshape(inputs.shape[0], -1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        rest = tuple(input_shape[1:])
        if not rest:
            size: int | None = 1
        elif any(d is None for d in rest):
            size = None
        else:
            size = math.prod(rest)
        return (input_shape[0], size)

    def get_config(self) -> dict:
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


def _resolve_target(input_rest: tuple, target: tuple, owner: str) -> tuple:
    """``target`` with its ``-1`` replaced when the input size is known."""
    if -1 not in target:
        known = None if any(d is None for d in input_rest) else math.prod(input_rest)
        if known is not None and known != math.prod(target):
            raise ValueError(
                f"{owner} cannot reshape inputs of per-sample shape {input_rest} "
                f"({known} values) to {target} ({math.prod(target)} values)"
            )
        return target
    if any(d is None for d in input_rest):
        return tuple(None if d == -1 else d for d in target)
    total = math.prod(input_rest)
    others = math.prod(d for d in target if d != -1)
    if others == 0 or total % others:
        raise ValueError(
            f"{owner} cannot reshape inputs of per-sample shape {input_rest} ({total} values) "
            f"to {target}: {total} is not a multiple of {others}"
        )
    return tuple(total // others if d == -1 else d for d in target)


@register_builtin("keras.layers", "Reshape")
class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (one entry may be ``-1``)."""

    def __init__(self, target_shape: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            target = tuple(int(d) for d in target_shape)
        except (TypeError, ValueError):
            raise ValueError(
                f"The `target_shape` argument must be a tuple of integers. Received: target_shape={target_shape!r}"
            ) from None
        if target.count(-1) > 1:
            raise ValueError(
                "The `target_shape` argument must not contain more than one `-1` value. "
                f"Received: target_shape={target}"
            )
        if any(d < -1 or d == 0 for d in target):
            raise ValueError(
                "The `target_shape` argument must contain positive integers (and at most one -1). "
                f"Received: target_shape={target}"
            )
        self.target_shape = target
        self.built = True

    def call(self, inputs: np.ndarray) -> np.ndarray:
        target = _resolve_target(inputs.shape[1:], self.target_shape, f"Reshape '{self.name}'")
        return inputs.reshape((inputs.shape[0],) + target)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0],) + _resolve_target(
            tuple(input_shape[1:]), self.target_shape, f"Reshape '{self.name}'"
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["target_shape"] = self.target_shape
        return config
