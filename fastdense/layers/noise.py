"""Layers that are the identity at inference: GaussianNoise, GaussianDropout, AlphaDropout,
SpatialDropout1D/2D/3D, ActivityRegularization and Identity.

They keep their Keras arguments and configs (so files round-trip) and return their input
unchanged; a compiled model plan gives them no step at all. fastdense does not train:
calling one with ``training=True`` raises ``NotImplementedError``.

>>> import numpy as np
>>> from fastdense.layers import GaussianNoise
>>> GaussianNoise(0.1)(np.ones((1, 2))).tolist()
[[1.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastdense import regularizers
from fastdense.layers.base import InputSpec, Layer, standardize_data_format, standardize_shape
from fastdense.saving.serialization import register_builtin

__all__ = [
    "ActivityRegularization",
    "AlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "Identity",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
]


def _fraction(value: Any, argument: str) -> Any:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 <= value <= 1:
        raise ValueError(
            f"Invalid value received for argument `{argument}`. Expected a float value between 0 and 1. "
            f"Received: {argument}={value!r}"
        )
    return value


class _InferenceIdentity(Layer):
    """Returns its input; refuses ``training=True`` (noise and dropout are training-only)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training:
            raise NotImplementedError(
                f"{self._owner()} runs inference only (training=False), where it is the identity; "
                "fastdense does not train"
            )
        return inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@register_builtin("keras.layers", "Identity")
class Identity(_InferenceIdentity):
    """Returns its input unchanged (in training too)."""

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return inputs


@register_builtin("keras.layers", "GaussianNoise")
class GaussianNoise(_InferenceIdentity):
    """Adds N(0, stddev) noise in training; the identity at inference."""

    def __init__(self, stddev: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stddev = _fraction(stddev, "stddev")
        self.seed = seed

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"stddev": self.stddev, "seed": self.seed})
        return config


@register_builtin("keras.layers", "GaussianDropout")
class GaussianDropout(_InferenceIdentity):
    """Multiplies by N(1, rate / (1 - rate)) noise in training; the identity at inference."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = _fraction(rate, "rate")
        self.seed = seed

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


@register_builtin("keras.layers", "AlphaDropout")
class AlphaDropout(_InferenceIdentity):
    """Dropout that keeps SELU's mean and variance in training; the identity at inference."""

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = _fraction(rate, "rate")
        self.noise_shape = None if noise_shape is None else list(standardize_shape(noise_shape, "noise_shape"))
        self.seed = seed

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape})
        return config


class _SpatialDropout(_InferenceIdentity):
    """Drops whole feature maps in training; the identity at inference.

    Keras's config for these holds ``rate``, ``seed``, ``name`` and ``dtype`` (a plain dtype
    name), plus ``data_format`` for the 2D and 3D forms.
    """

    _ndim = 3

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None, dtype: Any = None,
                 **kwargs: Any) -> None:
        kwargs.pop("noise_shape", None)  # Keras 2 wrote these; Keras 3 does not take them
        kwargs.pop("trainable", None)
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.rate = _fraction(rate, "rate")
        self.seed = seed
        self.input_spec = InputSpec(ndim=self._ndim)

    def get_config(self) -> dict:
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype}


@register_builtin("keras.layers", "SpatialDropout1D")
class SpatialDropout1D(_SpatialDropout):
    """Spatial dropout for ``(batch, steps, channels)`` inputs; the identity at inference."""

    _ndim = 3


class _SpatialDropoutND(_SpatialDropout):
    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None,
                 name: str | None = None, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__(rate, seed=seed, name=name, dtype=dtype, **kwargs)
        self.data_format = standardize_data_format(data_format)

    def get_config(self) -> dict:
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


@register_builtin("keras.layers", "SpatialDropout2D")
class SpatialDropout2D(_SpatialDropoutND):
    """Spatial dropout for 4-D inputs; the identity at inference."""

    _ndim = 4


@register_builtin("keras.layers", "SpatialDropout3D")
class SpatialDropout3D(_SpatialDropoutND):
    """Spatial dropout for 5-D inputs; the identity at inference."""

    _ndim = 5


@register_builtin("keras.layers", "ActivityRegularization")
class ActivityRegularization(_InferenceIdentity):
    """The identity, with an L1/L2 activity penalty on its output (reported in ``losses``)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs: Any) -> None:
        kwargs.pop("activity_regularizer", None)
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1 = l1
        self.l2 = l2

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("activity_regularizer", None)
        config.update({"l1": self.l1, "l2": self.l2})
        return config
