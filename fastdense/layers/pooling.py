"""Global pooling: the mean or the maximum over a sample's steps (1D) or positions (2D, 3D).

The usual head of a text model (``Embedding -> GlobalAveragePooling1D -> Dense``) and of
a convolutional feature map fed to Dense layers.

>>> import numpy as np
>>> from fastdense.layers import GlobalAveragePooling1D, GlobalMaxPooling1D
>>> x = np.array([[[1.0, 2.0], [3.0, 6.0]]])
>>> GlobalAveragePooling1D()(x).tolist(), GlobalMaxPooling1D()(x).tolist()
([[2.0, 4.0]], [[3.0, 6.0]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastdense.layers.base import InputSpec, Layer, standardize_data_format
from fastdense.layers.node import SymbolicTensor
from fastdense.saving.serialization import register_builtin

__all__ = [
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
]


class _GlobalPooling(Layer):
    """Keras's ``BaseGlobalPooling``: reduces the ``pool_dims`` axes between the batch and the
    channels (``data_format="channels_last"``, the default) or after the channels
    (``"channels_first"``); ``keepdims`` keeps them as axes of size 1. The mean is summed in
    float64 and rounded once, as the compiled plan's POOL step does (csrc/fd_plan.c)."""

    _pool_dims = 1
    statistic = "mean"   # or "max"

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=self._pool_dims + 2)
        self.built = True

    def _axes(self) -> tuple[int, ...]:
        first = 1 if self.data_format == "channels_last" else 2
        return tuple(range(first, first + self._pool_dims))

    def call(self, inputs: np.ndarray) -> np.ndarray:
        if self.statistic == "max":
            return np.max(inputs, axis=self._axes(), keepdims=self.keepdims)
        return np.mean(inputs, axis=self._axes(), keepdims=self.keepdims, dtype=np.float64).astype(inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        shape = tuple(input_shape)
        if self.keepdims:
            return tuple(1 if axis in self._axes() else d for axis, d in enumerate(shape))
        return tuple(d for axis, d in enumerate(shape) if axis not in self._axes())

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


def _masking_embedding(tensor: SymbolicTensor) -> Any:
    """An Embedding with ``mask_zero=True`` that ``tensor`` derives from, or None."""
    from fastdense.layers.embedding import Embedding  # noqa: PLC0415 - embedding imports base only

    seen: set[int] = set()
    todo = [tensor]
    while todo:
        history = todo.pop()._keras_history
        if history is None or id(history[0]) in seen:
            continue
        layer = history[0]
        seen.add(id(layer))
        if isinstance(layer, Embedding) and layer.mask_zero:
            return layer
        todo.extend(layer._inbound_nodes[history[1]].input_tensors)
    return None


@register_builtin("keras.layers", "GlobalAveragePooling1D")
class GlobalAveragePooling1D(_GlobalPooling):
    """The mean over the steps: ``(batch, steps, features) -> (batch, features)``.

    Keras averages only the steps a mask keeps (an ``Embedding(mask_zero=True)`` upstream);
    fastdense does not carry masks, so it refuses that graph rather than average the padding.
    """

    def call(self, inputs: np.ndarray, mask: Any = None) -> np.ndarray:
        """``mask`` (batch, steps), as Keras takes it: the mean of the steps it keeps."""
        if mask is None:
            return super().call(inputs)
        keep = np.asarray(mask, dtype=bool)
        (axis,) = self._axes()
        if keep.shape != (inputs.shape[0], inputs.shape[axis]):
            raise ValueError(f"{self._owner()} expects a mask of shape (batch, steps) = "
                             f"{(inputs.shape[0], inputs.shape[axis])}, got shape {keep.shape}")
        keep = np.expand_dims(keep, 3 - axis)   # against the features axis
        total = np.sum(np.where(keep, inputs, 0), axis=axis, keepdims=self.keepdims, dtype=np.float64)
        return (total / np.sum(keep, axis=axis, keepdims=self.keepdims)).astype(inputs.dtype)

    def _symbolic_call(self, inputs: Any, args: tuple, kwargs: dict) -> Any:
        if isinstance(inputs, SymbolicTensor):
            embedding = _masking_embedding(inputs)
            if embedding is not None:
                raise ValueError(
                    f"GlobalAveragePooling1D '{self.name}' would average the steps the mask of Embedding "
                    f"'{embedding.name}' keeps, and fastdense does not carry masks: expected "
                    "mask_zero=False upstream, got mask_zero=True"
                )
        return super()._symbolic_call(inputs, args, kwargs)


@register_builtin("keras.layers", "GlobalAveragePooling2D")
class GlobalAveragePooling2D(_GlobalPooling):
    """The mean over the rows and columns: ``(batch, rows, cols, channels) -> (batch, channels)``."""

    _pool_dims = 2


@register_builtin("keras.layers", "GlobalAveragePooling3D")
class GlobalAveragePooling3D(_GlobalPooling):
    """The mean over the three spatial axes."""

    _pool_dims = 3


@register_builtin("keras.layers", "GlobalMaxPooling1D")
class GlobalMaxPooling1D(_GlobalPooling):
    """The maximum over the steps (NaN wins, as in Keras): ``(batch, steps, features) -> (batch, features)``."""

    statistic = "max"


@register_builtin("keras.layers", "GlobalMaxPooling2D")
class GlobalMaxPooling2D(_GlobalPooling):
    """The maximum over the rows and columns."""

    _pool_dims = 2
    statistic = "max"


@register_builtin("keras.layers", "GlobalMaxPooling3D")
class GlobalMaxPooling3D(_GlobalPooling):
    """The maximum over the three spatial axes."""

    _pool_dims = 3
    statistic = "max"
