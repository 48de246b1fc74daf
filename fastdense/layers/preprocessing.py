"""Preprocessing layers that serve with a model: Normalization (adapted in Keras) and Rescaling.

>>> import numpy as np
>>> from fastdense.layers import Normalization, Rescaling
>>> Normalization(mean=2.0, variance=4.0)(np.array([[4.0, 0.0]])).tolist()
[[1.0, -1.0]]
>>> Rescaling(0.5, offset=1.0)(np.array([[4.0]])).tolist()
[[3.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastdense.layers.base import Layer
from fastdense.layers.normalization import FeatureAffine
from fastdense.saving.serialization import (
    deserialize_keras_object,
    register_builtin,
    serialize_keras_object,
)

__all__ = ["Normalization", "Rescaling"]

# Keras's backend.epsilon(): the smallest standard deviation Normalization divides by.
_KERAS_EPSILON = 1e-7


@register_builtin("keras.layers", "Normalization")
class Normalization(Layer):
    """Feature-wise standardization: ``(x - mean) / max(sqrt(variance), 1e-7)``.

    The statistics are either passed in (``mean=``, ``variance=``: kept in the config, no
    weights) or, for a layer adapted in Keras, read from the file as the weights ``mean``,
    ``variance`` and ``count`` (int32), in that order. ``axis`` (an int, a list, or None for
    one statistic over everything) names the axes that keep their own statistics.
    ``invert=True`` maps standardized values back: ``mean + x * max(sqrt(variance), 1e-7)``.
    fastdense does not ``adapt``: fit the statistics in Keras, or pass them.

    >>> import numpy as np
    >>> layer = Normalization(mean=[1.0, 2.0], variance=[1.0, 4.0], invert=True)
    >>> layer(np.array([[1.0, 1.0]])).tolist()
    [[2.0, 4.0]]
    """

    def __init__(self, axis: Any = -1, mean: Any = None, variance: Any = None, invert: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            axis = (int(axis),)
        elif isinstance(axis, (list, tuple)) and all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis
        ):
            axis = tuple(int(a) for a in axis)
        else:
            raise ValueError(f"Normalization expects axis to be an int, a list of ints or None, got axis={axis!r}")
        self.axis = axis
        if (mean is not None) != (variance is not None):
            raise ValueError(
                "When setting values directly, both `mean` and `variance` must be set. "
                f"Received: mean={mean} and variance={variance}"
            )
        if mean is not None:
            mean, variance = _real_array(mean, "mean"), _real_array(variance, "variance")
            if mean.shape != variance.shape:
                raise ValueError(
                    "When setting values directly, `mean` and `variance` must have the same shape. "
                    f"Received: mean shape {mean.shape} and variance shape {variance.shape}"
                )
            if mean.ndim > len(axis):
                raise ValueError(
                    f"The rank of `mean` must be less than or equal to the number of axes ({len(axis)}). "
                    f"Received: mean shape {mean.shape} for axis {axis}"
                )
        self.input_mean = mean
        self.input_variance = variance
        self.invert = bool(invert)
        self._keep_axis: tuple[int, ...] = ()
        self._affine_cache: tuple | None = None

    def build(self, input_shape: Any) -> None:
        rank = len(input_shape)
        if any(a < -rank or a >= rank for a in self.axis):
            raise ValueError(
                "All `axis` values must be in the range [-ndim, ndim). "
                f"Received inputs with ndim={rank}, while axis={self.axis}"
            )
        keep = tuple(sorted(a % rank for a in self.axis))
        for a in keep:
            if input_shape[a] is None:
                raise ValueError(
                    f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                    f"inputs.shape={tuple(input_shape)}, with unknown axis at index {a}"
                )
        self._keep_axis = keep
        stats_shape = tuple(input_shape[a] for a in keep)
        if self.input_mean is None:
            self.add_weight("mean", stats_shape, "zeros", trainable=False)
            self.add_weight("variance", stats_shape, "ones", trainable=False)
            self.add_weight("count", (), "zeros", trainable=False, dtype="int32")
        elif self.input_mean.ndim and self.input_mean.shape != stats_shape[len(stats_shape) - self.input_mean.ndim:]:
            raise ValueError(
                f"Normalization '{self.name}': mean of shape {self.input_mean.shape} does not fit inputs of "
                f"shape {tuple(input_shape)} with axis={self.axis}"
            )

    def _statistics(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, variance) in float64, shaped to broadcast against a rank-``rank`` input."""
        keep = self._keep_axis
        if self.input_mean is None:
            mean, variance = self._values[0], self._values[1]
            sizes = mean.shape
        else:
            mean, variance = self.input_mean, self.input_variance
            # a lower-rank mean lines up with the last kept axes, as in Keras
            sizes = (1,) * (len(keep) - mean.ndim) + mean.shape
        shape = [1] * rank
        for a, size in zip(keep, sizes):
            shape[a] = size
        return (np.reshape(mean, shape).astype(np.float64), np.reshape(variance, shape).astype(np.float64))

    def affine(self) -> FeatureAffine | None:
        """The layer as ``x * scale + offset`` per feature of its one kept axis, or by scalars
        (``axis=None``); None when it keeps several axes."""
        if len(self.axis) > 1:
            return None
        values = self._values
        cached = self._affine_cache
        if cached is not None and cached[0] is values:
            return cached[1]
        if self.input_mean is None:
            mean, variance = values[0], values[1]
        else:
            mean, variance = self.input_mean, self.input_variance
        mean = np.asarray(mean, np.float64).reshape(-1)
        std = np.maximum(np.sqrt(np.asarray(variance, np.float64).reshape(-1)), _KERAS_EPSILON)
        axis = self.axis[0] if self.axis and mean.size > 1 else -1
        if self.invert:
            affine = FeatureAffine(axis, std, mean)
        else:
            affine = FeatureAffine(axis, 1.0 / std, -mean / std)
        self._affine_cache = (values, affine)
        return affine

    def call(self, inputs: np.ndarray) -> np.ndarray:
        x = np.asarray(inputs, dtype=np.float64)
        mean, variance = self._statistics(x.ndim)
        std = np.maximum(np.sqrt(variance), _KERAS_EPSILON)
        out = mean + x * std if self.invert else (x - mean) / std
        return out.astype(self._np_dtype, copy=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "axis": list(self.axis),
                "invert": self.invert,
                "mean": None if self.input_mean is None else self.input_mean.tolist(),
                "variance": None if self.input_variance is None else self.input_variance.tolist(),
            }
        )
        return config


def _real_array(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"Normalization expects a real number or array for `{what}`, got {value!r}")
    return array.astype(np.float64)


@register_builtin("keras.layers", "Rescaling")
class Rescaling(Layer):
    """``x * scale + offset`` (scalars, or arrays that broadcast against the inputs).

    >>> import numpy as np
    >>> Rescaling(1 / 255)(np.array([[255.0]])).tolist()
    [[1.0]]
    """

    def __init__(self, scale: Any, offset: Any = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for what, value in (("scale", scale), ("offset", offset)):
            if np.asarray(value).dtype.kind not in "iuf":
                raise ValueError(f"Rescaling expects a real number or array for `{what}`, got {what}={value!r}")
        self.scale = scale
        self.offset = offset

    def affine(self) -> FeatureAffine | None:
        """The layer as ``x * scale + offset`` per feature of the last axis (None when the
        scale or offset is not a scalar or a vector)."""
        scale, offset = np.asarray(self.scale, np.float64), np.asarray(self.offset, np.float64)
        if scale.ndim > 1 or offset.ndim > 1:
            return None
        return FeatureAffine(-1, scale, offset)

    def call(self, inputs: np.ndarray) -> np.ndarray:
        dtype = self._np_dtype
        # Keras computes in the layer dtype: the scale and offset are cast first
        x = np.asarray(inputs, dtype=dtype)
        return (x * np.asarray(self.scale, dtype) + np.asarray(self.offset, dtype)).astype(dtype, copy=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"scale": serialize_keras_object(self.scale), "offset": serialize_keras_object(self.offset)})
        return config

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        config = dict(config)
        for key in ("scale", "offset"):
            if isinstance(config.get(key), dict):
                config[key] = deserialize_keras_object(config[key])
        return super().from_config(config)
