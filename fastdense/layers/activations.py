"""Activation layers: ReLU, LeakyReLU, PReLU, ELU and Softmax (Keras 3 names and configs).

ReLU, LeakyReLU, ELU and last-axis Softmax hold a fused activation (``self.activation``, a
``fastdense.activations`` function with its parameters), so they run in the compiled kernel
like an ``Activation`` layer does.

>>> import numpy as np
>>> from fastdense.layers import ReLU, LeakyReLU
>>> ReLU(max_value=1.0)(np.array([[-1.0, 0.5, 2.0]])).tolist()
[[0.0, 0.5, 1.0]]
>>> LeakyReLU(negative_slope=0.5)(np.array([[-2.0, 2.0]])).tolist()
[[-1.0, 2.0]]
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from fastdense import activations, constraints, initializers, regularizers
from fastdense.layers.base import InputSpec, Layer
from fastdense.layers.core import _get_or_none, _serialize_or_none
from fastdense.saving.serialization import check_number, register_builtin

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax"]


def _number_or_none(value: Any) -> bool:
    return value is None or (
        isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    )


class _ActivationLayer(Layer):
    """A weightless layer that applies ``self.activation`` (a function of the array alone)."""

    activation: Any

    def _init_activation(self, function: Any) -> None:
        self.activation = function
        self.built = True

    def call(self, inputs: np.ndarray) -> np.ndarray:
        return self.activation(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)


@register_builtin("keras.layers", "ReLU")
class ReLU(_ActivationLayer):
    """Rectified linear unit with Keras's options:
    ``x`` for ``x >= threshold``, ``negative_slope * (x - threshold)`` below it, clipped at ``max_value``.

    >>> import numpy as np
    >>> ReLU(negative_slope=0.5, threshold=1.0)(np.array([[0.0, 2.0]])).tolist()
    [[-0.5, 2.0]]
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not _number_or_none(max_value) or (max_value is not None and max_value < 0.0):
            raise ValueError(f"max_value of a ReLU layer cannot be a negative value. Received: max_value={max_value}")
        if negative_slope is None or not _number_or_none(negative_slope) or negative_slope < 0.0:
            raise ValueError(
                "negative_slope of a ReLU layer cannot be None or a negative value. "
                f"Received: negative_slope={negative_slope}"
            )
        if threshold is None or not _number_or_none(threshold) or threshold < 0.0:
            raise ValueError(
                f"threshold of a ReLU layer cannot be None or a negative value. Received: threshold={threshold}"
            )
        self.max_value = max_value
        self.negative_slope = negative_slope
        self.threshold = threshold
        self._init_activation(functools.partial(
            activations.relu, negative_slope=negative_slope, max_value=max_value, threshold=threshold))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"max_value": self.max_value, "negative_slope": self.negative_slope,
                       "threshold": self.threshold})
        return config


@register_builtin("keras.layers", "LeakyReLU")
class LeakyReLU(_ActivationLayer):
    """``x`` for ``x >= 0``, ``negative_slope * x`` otherwise (Keras 2's ``alpha=`` is accepted).

    >>> import numpy as np
    >>> LeakyReLU(negative_slope=0.25)(np.array([[-4.0, 3.0]])).tolist()
    [[-1.0, 3.0]]
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        if "alpha" in kwargs:  # Keras 2's name
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or not _number_or_none(negative_slope) or negative_slope < 0:
            raise ValueError(
                "The negative_slope value of a Leaky ReLU layer cannot be None or negative value. "
                f"Expected a float. Received: negative_slope={negative_slope}"
            )
        self.negative_slope = negative_slope
        self._init_activation(functools.partial(activations.leaky_relu, negative_slope=negative_slope))

    def get_config(self) -> dict:
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config


@register_builtin("keras.layers", "ELU")
class ELU(_ActivationLayer):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    >>> import numpy as np
    >>> ELU(alpha=2.0)(np.array([[0.0, 3.0]])).tolist()
    [[0.0, 3.0]]
    """

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_number("ELU", "alpha", alpha)
        self._init_activation(functools.partial(activations.elu, alpha=self.alpha))

    def get_config(self) -> dict:
        config = super().get_config()
        config["alpha"] = self.alpha
        return config


@register_builtin("keras.layers", "Softmax")
class Softmax(_ActivationLayer):
    """Softmax over ``axis`` (an int, or a list of ints: one softmax over all of them).

    >>> import numpy as np
    >>> Softmax()(np.array([[0.0, 0.0]])).tolist()
    [[0.5, 0.5]]
    """

    def __init__(self, axis: Any = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            if not axis or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis):
                raise ValueError(f"Softmax expects axis to be an int or a list of ints, got axis={axis!r}")
            axis = [int(a) for a in axis]
        elif isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Softmax expects axis to be an int or a list of ints, got axis={axis!r}")
        else:
            axis = int(axis)
        self.axis = axis
        single = axis if isinstance(axis, int) else (axis[0] if len(axis) == 1 else None)
        if single == -1:
            function: Any = activations.softmax
        elif single is not None:
            function = functools.partial(_softmax_on_axes, axes=(single,))
        else:
            function = functools.partial(_softmax_on_axes, axes=tuple(axis))
        self._init_activation(function)

    def call(self, inputs: np.ndarray, mask: Any = None) -> np.ndarray:
        if mask is None:
            return self.activation(inputs)
        # Keras: masked-out positions take a large negative value before, and 0 after, the softmax
        keep = np.asarray(mask)
        keep = keep if keep.dtype == np.bool_ else keep > 0.5
        if keep.ndim > inputs.ndim:
            raise ValueError(
                f"{self._owner()}: the mask must broadcast to the inputs, got mask shape {keep.shape} "
                f"for inputs of shape {inputs.shape}"
            )
        out = self.activation(np.where(keep, inputs, np.asarray(-1e9, inputs.dtype)))
        return np.where(keep, out, np.zeros((), out.dtype))

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = self.axis
        return config


def _softmax_on_axes(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Softmax over several axes (or one that is not the last), in float64."""
    x = np.asarray(x)
    for a in axes:
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"Softmax axis {a} is out of bounds for inputs of shape {x.shape}")
    z = x.astype(np.float64)
    e = np.exp(z - z.max(axis=axes, keepdims=True))
    return (e / e.sum(axis=axes, keepdims=True)).astype(x.dtype if x.dtype.kind == "f" else np.float32, copy=False)


@register_builtin("keras.layers", "PReLU")
class PReLU(Layer):
    """Parametric ReLU: ``x`` for ``x >= 0``, ``alpha * x`` otherwise, with ``alpha`` a weight
    of the per-sample input shape (size 1 on ``shared_axes``, counted from 1 as in Keras).

    >>> import numpy as np
    >>> layer = PReLU(alpha_initializer="ones")
    >>> layer(np.array([[-2.0, 3.0]])).tolist()
    [[-2.0, 3.0]]
    """

    def __init__(self, alpha_initializer: Any = "Zeros", alpha_regularizer: Any = None,
                 alpha_constraint: Any = None, shared_axes: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = _get_or_none(regularizers, alpha_regularizer)
        self.alpha_constraint = _get_or_none(constraints, alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 1 for a in axes):
                raise ValueError(
                    f"PReLU expects shared_axes to be positive axis numbers (1 is the first axis after the "
                    f"batch), got shared_axes={shared_axes!r}"
                )
            self.shared_axes = [int(a) for a in axes]

    def build(self, input_shape: Any) -> None:
        rank = len(input_shape)
        shape = list(input_shape[1:])
        for a in self.shared_axes or ():
            if a >= rank:
                raise ValueError(
                    f"PReLU '{self.name}': shared axis {a} is out of range for inputs of shape {tuple(input_shape)}"
                )
            shape[a - 1] = 1
        if any(d is None for d in shape):
            raise ValueError(
                f"PReLU '{self.name}' needs known sizes on the axes that are not shared, got shape {tuple(input_shape)}"
            )
        self.add_weight("alpha", tuple(shape), self.alpha_initializer, self.alpha_regularizer, self.alpha_constraint)
        axes = {i: input_shape[i] for i in range(1, rank) if i not in (self.shared_axes or ())}
        self.input_spec = InputSpec(ndim=rank, axes=axes)

    @property
    def alpha(self) -> np.ndarray:
        if not self.built:
            raise AttributeError(f"PReLU '{self.name}' has no alpha yet: it is not built")
        return self._values[0]

    def call(self, inputs: np.ndarray) -> np.ndarray:
        alpha = self._values[0]
        return np.where(inputs >= 0, inputs, inputs * alpha).astype(self._np_dtype, copy=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": _serialize_or_none(regularizers, self.alpha_regularizer),
                "alpha_constraint": _serialize_or_none(constraints, self.alpha_constraint),
                "shared_axes": self.shared_axes,
            }
        )
        return config
