"""Normalization layers at inference: BatchNormalization, LayerNormalization,
RMSNormalization and UnitNormalization (Keras 3 arguments, configs and weight order).

Every layer computes in float64 and returns its own dtype, so its result differs from the
exact one by the final rounding only (Keras computes in float32; the two agree to a few
float32 ulps).

>>> import numpy as np
>>> from fastdense.layers import BatchNormalization
>>> bn = BatchNormalization(epsilon=0.0)
>>> bn.build((None, 2))
>>> bn.set_weights([np.array([2.0, 1.0]), np.array([0.5, 0.0]), np.array([1.0, 0.0]), np.array([4.0, 1.0])])
>>> bn(np.array([[3.0, 5.0]])).tolist()
[[2.5, 5.0]]
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from fastdense import constraints, initializers, regularizers
from fastdense.layers.base import InputSpec, Layer
from fastdense.layers.core import _get_or_none, _serialize_or_none
from fastdense.saving.serialization import check_number, register_builtin

__all__ = [
    "BatchNormalization",
    "LayerNormalization",
    "RMSNormalization",
    "UnitNormalization",
    "FeatureAffine",
    "canonical_axes",
]


class FeatureAffine(NamedTuple):
    """``y = x * scale + offset`` per feature of one axis (what a compiled plan folds).

    ``scale`` and ``offset`` are float64 vectors over ``axis`` (negative: from the end).
    """

    axis: int
    scale: np.ndarray
    offset: np.ndarray


def canonical_axes(axis: Any, rank: int, owner: str, shape: Any = None) -> tuple[int, ...]:
    """``axis`` (an int or a list of ints) as sorted non-negative axes of a rank-``rank`` input.

    >>> canonical_axes([-1, 1], 3, "LayerNormalization 'ln'")
    (1, 2)
    """
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not -rank <= a < rank:
            raise ValueError(
                f"Axis {a} is out of bounds for input shape {tuple(shape) if shape is not None else rank}. "
                f"Received: axis={axis}"
            )
        out.append(int(a) % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: axis {axis} names the same axis twice")
    return tuple(sorted(out))


def _axis_argument(axis: Any, layer: str) -> int | list[int]:
    """An int or a list of ints, as Keras's LayerNormalization and UnitNormalization take it."""
    if isinstance(axis, (list, tuple)):
        if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis):
            raise TypeError(f"Expected an int or a list/tuple of ints for the argument 'axis', but received: {axis!r}")
        return [int(a) for a in axis]
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return int(axis)
    raise TypeError(f"Expected an int or a list/tuple of ints for the argument 'axis', but received: {axis!r}")


def _check_out_of_bounds(axis: Any, input_shape: Any) -> None:
    rank = len(input_shape)
    for a in axis if isinstance(axis, (list, tuple)) else [axis]:
        if a >= rank or a < -rank:
            raise ValueError(
                f"Axis {a} is out of bounds for input shape {tuple(input_shape)}. Received: axis={axis}"
            )


def _broadcast_shape(rank: int, axes: Sequence[int], sizes: Sequence[int]) -> tuple[int, ...]:
    shape = [1] * rank
    for a, size in zip(axes, sizes):
        shape[a] = size
    return tuple(shape)


def _epsilon(value: Any, layer: str) -> float:
    return float(check_number(layer, "epsilon", value, minimum=0.0))


# --------------------------------------------------------------------------------------
# BatchNormalization
# --------------------------------------------------------------------------------------

# Keras 2 (tf.keras) BatchNormalization arguments that inference does not use.
_KERAS2_BN_KEYS = ("fused", "virtual_batch_size", "adjustment")


@register_builtin("keras.layers", "BatchNormalization")
class BatchNormalization(Layer):
    """Batch normalization with the moving statistics (inference):
    ``y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta`` along ``axis``.

    Weights, in Keras's order: ``gamma`` (if ``scale``), ``beta`` (if ``center``),
    ``moving_mean``, ``moving_variance``. ``momentum``, the renorm arguments and
    ``synchronized`` are kept in the config for Keras; inference does not use them.
    A compiled model plan folds a BatchNormalization next to a Dense into the Dense's kernel.

    >>> import numpy as np
    >>> bn = BatchNormalization()
    >>> bn(np.ones((2, 3), np.float32)).shape
    (2, 3)
    """

    def __init__(
        self,
        axis: Any = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        renorm: bool = False,
        renorm_clipping: Any = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        **kwargs: Any,
    ) -> None:
        for key in _KERAS2_BN_KEYS:
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):  # tf.keras 2 wrote the axis as a one-element list
            if len(axis) != 1:
                raise ValueError(
                    f"BatchNormalization '{self.name}' normalizes along one axis, got axis={list(axis)}"
                )
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"BatchNormalization '{self.name}' expects an integer axis, got axis={axis!r}")
        if renorm:
            raise ValueError(
                f"BatchNormalization '{self.name}': renorm=True is not supported by fastdense "
                "(it adds renorm statistics to the weights); got renorm=True"
            )
        self.axis = int(axis)
        self.synchronized = bool(synchronized)
        self.momentum = float(check_number("BatchNormalization", "momentum", momentum))
        self.epsilon = _epsilon(epsilon, "BatchNormalization")
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = _get_or_none(regularizers, beta_regularizer)
        self.gamma_regularizer = _get_or_none(regularizers, gamma_regularizer)
        self.beta_constraint = _get_or_none(constraints, beta_constraint)
        self.gamma_constraint = _get_or_none(constraints, gamma_constraint)
        self.renorm = False
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = renorm_momentum
        self._affine_cache: tuple | None = None

    def build(self, input_shape: Any) -> None:
        rank = len(input_shape)
        (axis,) = canonical_axes(self.axis, rank, self._owner(), input_shape)
        size = input_shape[axis]
        if size is None:
            raise ValueError(
                f"BatchNormalization '{self.name}' needs a known size on axis {self.axis}, got shape {tuple(input_shape)}"
            )
        shape = (size,)
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer, self.gamma_constraint)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer, self.beta_constraint)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer, trainable=False)
        self.input_spec = InputSpec(ndim=rank, axes={self.axis: size})

    def affine(self) -> FeatureAffine:
        """The layer as ``x * scale + offset`` per feature (float64), made once per set of weights."""
        values = self._values
        cached = self._affine_cache
        if cached is not None and cached[0] is values:
            return cached[1]
        named = dict(zip(self.weight_names, values))
        mean = named["moving_mean"].astype(np.float64)
        scale = 1.0 / np.sqrt(named["moving_variance"].astype(np.float64) + self.epsilon)
        if self.scale:
            scale = scale * named["gamma"]
        offset = -mean * scale
        if self.center:
            offset = offset + named["beta"]
        affine = FeatureAffine(self.axis, scale, offset)
        self._affine_cache = (values, affine)
        return affine

    def call(self, inputs: np.ndarray, training: bool | None = None, mask: Any = None) -> np.ndarray:
        # (a mask changes only the batch statistics of training, which fastdense never computes)
        if training:
            raise NotImplementedError(
                f"BatchNormalization '{self.name}' runs inference only (training=False): "
                "fastdense uses the moving statistics and never updates them"
            )
        return _apply_affine(inputs, self.affine(), self._np_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        _check_out_of_bounds(self.axis, input_shape)
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                "beta_regularizer": _serialize_or_none(regularizers, self.beta_regularizer),
                "gamma_regularizer": _serialize_or_none(regularizers, self.gamma_regularizer),
                "beta_constraint": _serialize_or_none(constraints, self.beta_constraint),
                "gamma_constraint": _serialize_or_none(constraints, self.gamma_constraint),
                "synchronized": self.synchronized,
                "renorm": self.renorm,
                "renorm_clipping": self.renorm_clipping,
                "renorm_momentum": self.renorm_momentum,
            }
        )
        return config


def _apply_affine(inputs: np.ndarray, affine: FeatureAffine, dtype: np.dtype) -> np.ndarray:
    """``inputs * scale + offset`` along ``affine.axis``, in float64, returned as ``dtype``."""
    x = np.asarray(inputs, dtype=np.float64)
    shape = [1] * x.ndim
    shape[affine.axis] = affine.scale.shape[0] if affine.scale.ndim else 1
    scale = np.reshape(affine.scale, shape) if affine.scale.ndim else affine.scale
    offset = np.reshape(affine.offset, shape) if affine.offset.ndim else affine.offset
    return (x * scale + offset).astype(dtype, copy=False)


# --------------------------------------------------------------------------------------
# LayerNormalization and RMSNormalization
# --------------------------------------------------------------------------------------


class _AxesNormalization(Layer):
    """Shared by the layers that normalize each sample over ``axis`` (an int or a list)."""

    axis: Any   # an int, or a sorted list once built (as Keras keeps it)

    def _build_axes(self, input_shape: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(axes as non-negative ints, weight shape); turns ``self.axis`` into a sorted list, as Keras."""
        rank = len(input_shape)
        axes = canonical_axes(self.axis, rank, self._owner(), input_shape)
        shape = tuple(input_shape[a] for a in axes)
        if any(d is None for d in shape):
            raise ValueError(
                f"{self._owner()} needs known sizes on axis {self.axis}, got shape {tuple(input_shape)}"
            )
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        return axes, shape

    def _axes_for(self, x: np.ndarray) -> tuple[int, ...]:
        return canonical_axes(self.axis, x.ndim, self._owner(), x.shape)

    def _weight_for(self, value: np.ndarray, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return np.reshape(value, _broadcast_shape(x.ndim, axes, value.shape))

    def compute_output_shape(self, input_shape: Any) -> Any:
        _check_out_of_bounds(self.axis, input_shape)
        return tuple(input_shape)


@register_builtin("keras.layers", "LayerNormalization")
class LayerNormalization(_AxesNormalization):
    """Normalizes each sample over ``axis``: ``(x - mean) / sqrt(var + epsilon) * gamma + beta``.

    ``axis`` is an int or a list of ints; weights ``gamma`` (if ``scale``) and ``beta``
    (if ``center``) have the size of those axes. ``rms_scaling=True`` is Keras's deprecated
    mode: ``x / sqrt(var + epsilon) * gamma`` (the variance, not the mean square; no ``beta``).

    >>> import numpy as np
    >>> LayerNormalization(epsilon=0.0)(np.array([[1.0, 3.0]])).tolist()
    [[-1.0, 1.0]]
    """

    def __init__(
        self,
        axis: Any = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        rms_scaling: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.axis = _axis_argument(axis, "LayerNormalization")
        self.epsilon = _epsilon(epsilon, "LayerNormalization")
        self.center = bool(center)
        self.scale = bool(scale)
        self.rms_scaling = bool(rms_scaling)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = _get_or_none(regularizers, beta_regularizer)
        self.gamma_regularizer = _get_or_none(regularizers, gamma_regularizer)
        self.beta_constraint = _get_or_none(constraints, beta_constraint)
        self.gamma_constraint = _get_or_none(constraints, gamma_constraint)

    def build(self, input_shape: Any) -> None:
        _, shape = self._build_axes(input_shape)
        if self.scale or self.rms_scaling:
            self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer, self.gamma_constraint)
        if self.center and not self.rms_scaling:
            self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer, self.beta_constraint)

    def call(self, inputs: np.ndarray) -> np.ndarray:
        axes = self._axes_for(inputs)
        named = dict(zip(self.weight_names, self._values))
        x = np.asarray(inputs, dtype=np.float64)
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        inv = 1.0 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + self.epsilon)
        out = (x if self.rms_scaling else centered) * inv
        if "gamma" in named:
            out = out * self._weight_for(named["gamma"], x, axes)
        if "beta" in named:
            out = out + self._weight_for(named["beta"], x, axes)
        return out.astype(self._np_dtype, copy=False)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "rms_scaling": self.rms_scaling,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": _serialize_or_none(regularizers, self.beta_regularizer),
                "gamma_regularizer": _serialize_or_none(regularizers, self.gamma_regularizer),
                "beta_constraint": _serialize_or_none(constraints, self.beta_constraint),
                "gamma_constraint": _serialize_or_none(constraints, self.gamma_constraint),
            }
        )
        return config


@register_builtin("keras.layers", "RMSNormalization")
class RMSNormalization(_AxesNormalization):
    """Root-mean-square normalization over ``axis``: ``x / sqrt(mean(x**2) + epsilon) * scale``.

    >>> import numpy as np
    >>> RMSNormalization(epsilon=0.0)(np.array([[2.0, -2.0]])).tolist()
    [[1.0, -1.0]]
    """

    def __init__(self, axis: Any = -1, epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _axis_argument(axis, "RMSNormalization")
        self.epsilon = _epsilon(epsilon, "RMSNormalization")

    def build(self, input_shape: Any) -> None:
        _, shape = self._build_axes(input_shape)
        self.add_weight("scale", shape, "ones")

    def call(self, inputs: np.ndarray) -> np.ndarray:
        axes = self._axes_for(inputs)
        x = np.asarray(inputs, dtype=np.float64)
        inv = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + self.epsilon)
        out = x * inv * self._weight_for(self._values[0], x, axes)
        return out.astype(self._np_dtype, copy=False)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon})
        return config


# Keras's UnitNormalization: x * min(1 / ||x||, 1 / epsilon) with epsilon 1e-12.
_UNIT_NORM_EPSILON = 1e-12


@register_builtin("keras.layers", "UnitNormalization")
class UnitNormalization(_AxesNormalization):
    """Scales each sample to unit L2 norm over ``axis``: ``x * min(1 / ||x||, 1e12)``.

    >>> import numpy as np
    >>> UnitNormalization()(np.array([[0.0, 2.0]])).tolist()
    [[0.0, 1.0]]
    """

    def __init__(self, axis: Any = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _axis_argument(axis, "UnitNormalization")
        self.built = True

    def call(self, inputs: np.ndarray) -> np.ndarray:
        axes = self._axes_for(inputs)
        x = np.asarray(inputs, dtype=np.float64)
        square_sum = np.sum(x * x, axis=axes, keepdims=True)
        with np.errstate(divide="ignore"):
            inv = np.minimum(1.0 / np.sqrt(square_sum), 1.0 / _UNIT_NORM_EPSILON)
        return (x * inv).astype(self._np_dtype, copy=False)

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = self.axis
        return config

