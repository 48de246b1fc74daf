"""Keras 3 activations on NumPy arrays, computed by the compiled epilogue (csrc/fd_act.c).

Every built-in Keras 3 activation is here under its Keras name, signature and defaults, and
each one is also what ``fastdense.ops.dense(..., activation=...)`` fuses into the matrix
product. float32 and float64 arrays keep their dtype; other real dtypes (bool, integers,
float16) are computed in float32, Keras's default float type.

    >>> import numpy as np
    >>> from fastdense import activations
    >>> activations.relu(np.array([-10.0, -5.0, 0.0, 5.0, 10.0]), max_value=5.0)
    array([0., 0., 0., 5., 5.])
    >>> activations.get("swish") is activations.silu
    True
    >>> activations.resolve("gelu")
    ActivationSpec(code=7, params=(0.0, 0.0, 0.0), rowwise=False, halves=False, name='gelu')

Row-wise activations (softmax, log_softmax, sparsemax) work over the last axis, and glu
halves the last axis; any other ``axis`` is refused with a ValueError.
"""
from __future__ import annotations

import difflib
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from fastdense import _kernels
from fastdense.saving import serialization

__all__ = [
    "ALL_NAMES", "ActivationSpec", "KernelActivation", "celu", "deserialize", "elu", "exponential",
    "gelu", "get", "glu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "is_fused",
    "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "resolve",
    "selu", "serialize", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign",
    "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink",
    "threshold",
]


class KernelActivation(NamedTuple):
    """An activation as the kernel runs it."""
    code: int          # _kernels activation id (FD_ACT_*)
    p0: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    halves: bool = False   # glu: output has half the columns


class ActivationSpec(NamedTuple):
    """What the kernel needs to apply an activation: ``(code, (p0, p1, p2), rowwise, halves, name)``.

    ``code`` and ``params`` are the ``fd_act`` of csrc/fd_act.h; ``rowwise`` is True when the
    activation needs whole rows (softmax, log_softmax, sparsemax, glu); ``halves`` is True for
    glu, whose output has half as many columns as its input.
    """

    code: int
    params: tuple[float, float, float]
    rowwise: bool
    halves: bool
    name: str

    @property
    def kernel(self) -> KernelActivation:
        """The :class:`KernelActivation` the kernel takes for this spec."""
        p0, p1, p2 = (float(v) for v in self.params)
        return KernelActivation(int(self.code), p0, p1, p2, bool(self.halves))


# ---------------------------------------------------------------------------------------------
# Parameter checks: each returns the value as the kernel takes it, or raises with the reason.
# ---------------------------------------------------------------------------------------------

def _real(act: str, name: str, value: Any, *, minimum: float | None = None,
          finite: bool = True, nonzero: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{act}: {name} must be a real number, got {value!r}")
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ValueError(f"{act}: {name} must be a {'finite' if finite else 'non-NaN'} number, "
                         f"got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{act}: {name} must be >= {minimum:g}, got {value!r}")
    if nonzero and number == 0.0:
        raise ValueError(f"{act}: {name} must be nonzero, got {value!r}")
    return number


def _flag(act: str, name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return 1.0 if value else 0.0
    raise TypeError(f"{act}: {name} must be True or False, got {value!r}")


def _last_axis(act: str, axis: Any, ndim: int | None = None) -> float:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{act}: axis must be an integer, got {axis!r}")
    if axis == -1 or (ndim is not None and axis == ndim - 1):
        return 0.0
    raise ValueError(f"{act}: fastdense applies {act} over the last axis only (axis=-1), "
                     f"got axis={axis!r}" + (f" for an input of rank {ndim}" if ndim is not None else ""))


def _relu_params(negative_slope: Any = 0.0, max_value: Any = None, threshold: Any = 0.0) -> tuple:
    ns = _real("relu", "negative_slope", negative_slope)
    mv = math.nan if max_value is None else _real("relu", "max_value", max_value, finite=False)
    t = _real("relu", "threshold", threshold, finite=False)
    return ns, mv, t


_REQUIRED = object()   # default of a parameter Keras makes the caller give

# The Python-facing parameters of the activations that take any: name -> (((param, default), ...),
# packer(**params) -> (p0, p1, p2)). Codes, names and flags come from the kernel's table
# (csrc/fd_act_list.h, through _kernels.activation_table()); an activation without a row here
# takes no parameters.
_PARAMS: dict[str, tuple[tuple[tuple[str, Any], ...], Callable[..., tuple]]] = {
    "relu": ((("negative_slope", 0.0), ("max_value", None), ("threshold", 0.0)), _relu_params),
    "leaky_relu": ((("negative_slope", 0.2),),
                   lambda negative_slope: (_real("leaky_relu", "negative_slope", negative_slope),)),
    "elu": ((("alpha", 1.0),), lambda alpha: (_real("elu", "alpha", alpha),)),
    "celu": ((("alpha", 1.0),), lambda alpha: (_real("celu", "alpha", alpha, nonzero=True),)),
    "gelu": ((("approximate", False),), lambda approximate: (_flag("gelu", "approximate", approximate),)),
    "squareplus": ((("b", 4.0),), lambda b: (_real("squareplus", "b", b, minimum=0.0),)),
    "soft_shrink": ((("threshold", 0.5),),
                    lambda threshold: (_real("soft_shrink", "threshold", threshold, minimum=0.0, finite=False),)),
    "hard_shrink": ((("threshold", 0.5),),
                    lambda threshold: (_real("hard_shrink", "threshold", threshold, minimum=0.0, finite=False),)),
    "threshold": ((("threshold", _REQUIRED), ("default_value", _REQUIRED)),
                  lambda threshold, default_value: (
                      _real("threshold", "threshold", threshold, finite=False),
                      _real("threshold", "default_value", default_value, finite=False))),
    "softmax": ((("axis", -1),), lambda axis: (_last_axis("softmax", axis),)),
    "log_softmax": ((("axis", -1),), lambda axis: (_last_axis("log_softmax", axis),)),
    "sparsemax": ((("axis", -1),), lambda axis: (_last_axis("sparsemax", axis),)),
    "glu": ((("axis", -1),), lambda axis: (_last_axis("glu", axis),)),
}


class _Entry(NamedTuple):
    """One activation: the kernel's row plus its Python-facing parameters."""

    code: int
    signature: tuple[tuple[str, Any], ...]
    pack: Callable[..., tuple] | None
    rowwise: bool
    halves: bool


def _entry(info: Any) -> _Entry:
    signature, pack = _PARAMS.get(info.name, ((), None))
    return _Entry(info.code, signature, pack, info.rowwise, info.halves)


_TABLE: dict[str, _Entry] = {info.name: _entry(info) for info in _kernels.activation_table()}
if not set(_PARAMS) <= set(_TABLE):
    raise ImportError(f"fastdense.activations: parameters for activations the kernel does not have: "
                      f"{sorted(set(_PARAMS) - set(_TABLE))}")
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

#: Every activation name accepted by :func:`get` and :func:`resolve` (aliases included).
ALL_NAMES: tuple[str, ...] = tuple(sorted(list(_TABLE) + list(_ALIASES)))


def _spec(name: str, params: Mapping[str, Any]) -> ActivationSpec:
    """Validate ``params`` (keyword -> value) of activation ``name``; build its kernel spec."""
    entry = _TABLE[name]
    signature, pack = entry.signature, entry.pack
    allowed = dict(signature)
    unknown = [key for key in params if key not in allowed]
    if unknown:
        expected = ", ".join(allowed) if allowed else "none"
        raise TypeError(f"{name}: unexpected parameter {unknown[0]!r} (its parameters: {expected})")
    values = {key: params.get(key, default) for key, default in signature}
    missing = [key for key, value in values.items() if value is _REQUIRED]
    if missing:
        raise ValueError(
            f"activation {name!r} needs its parameters {', '.join(missing)} (Keras has no defaults "
            f"for them): use functools.partial(fastdense.activations.{name}, "
            + ", ".join(f"{key}=..." for key in missing) + ")")
    packed = tuple(pack(**values)) if pack is not None else ()
    packed = packed + (0.0,) * (3 - len(packed))
    return ActivationSpec(entry.code, packed, entry.rowwise, entry.halves, name)


_SPEC_CACHE: dict[tuple, ActivationSpec] = {}


def _params_spec(name: str, params: dict[str, Any]) -> ActivationSpec:
    """:func:`_spec`, cached by parameter values and their types (for the module functions)."""
    try:
        values = tuple(params.values())
        key = (name, values, tuple(map(type, values)))
        spec = _SPEC_CACHE.get(key)
    except TypeError:   # an unhashable parameter value: _spec explains what is wrong with it
        return _spec(name, params)
    if spec is None:
        spec = _spec(name, params)
        if len(_SPEC_CACHE) > 1024:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[key] = spec
    return spec


def _canonical(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name in _TABLE:
        return name
    close = difflib.get_close_matches(name, ALL_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"Unknown activation {name!r}{hint}; valid names: {', '.join(ALL_NAMES)}")


# ---------------------------------------------------------------------------------------------
# Applying an activation to an array
# ---------------------------------------------------------------------------------------------

def _as_float_array(x: Any, act: str) -> np.ndarray:
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize in (4, 8):
        pass
    elif kind == "f" and arr.dtype.itemsize > 8:   # long double: computed in float64
        arr = arr.astype(np.float64)
    elif kind in "biuf":
        arr = arr.astype(np.float32)
    else:
        raise TypeError(f"{act}: expected a real numeric array (float32, float64, integer, bool), "
                        f"got dtype {arr.dtype}")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def _apply(x: Any, spec: ActivationSpec, axis: Any = -1) -> np.ndarray:
    arr = _as_float_array(x, spec.name)
    if spec.rowwise:
        if arr.ndim == 0:
            raise ValueError(f"{spec.name} works over the last axis and needs an input of rank >= 1, "
                             f"got a scalar")
        _last_axis(spec.name, axis, arr.ndim)
        if spec.halves and arr.shape[-1] % 2:
            raise ValueError(f"glu splits the last axis in two halves and needs it to have even size, "
                             f"got shape {arr.shape}")
    return _kernels.apply_activation(arr, spec.code, *spec.params)


# ---------------------------------------------------------------------------------------------
# The activations (Keras signatures)
# ---------------------------------------------------------------------------------------------

def linear(x: Any) -> np.ndarray:
    """Identity: returns ``x`` as a float array.

    >>> linear(np.array([1.0, -2.0]))
    array([ 1., -2.])
    """
    return _as_float_array(x, "linear")


def relu(x: Any, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0) -> np.ndarray:
    """Rectified linear unit, with Keras's optional slope, cap and threshold.

    ``y = x if x > threshold else 0``, clipped to ``[0, max_value]`` when ``max_value`` is
    given, minus ``negative_slope * max(threshold - x, 0)``.

    >>> relu(np.array([-10.0, -5.0, 0.0, 5.0, 10.0]), negative_slope=0.5)
    array([-5. , -2.5,  0. ,  5. , 10. ])
    """
    return _apply(x, _params_spec("relu", {"negative_slope": negative_slope, "max_value": max_value,
                                    "threshold": threshold}))


def relu6(x: Any) -> np.ndarray:
    """``min(max(x, 0), 6)``.

    >>> relu6(np.array([-1.0, 3.0, 9.0]))
    array([0., 3., 6.])
    """
    return _apply(x, _DEFAULT_SPECS["relu6"])


def leaky_relu(x: Any, negative_slope: float = 0.2) -> np.ndarray:
    """``x if x >= 0 else negative_slope * x``.

    >>> leaky_relu(np.array([-1.0, 2.0]))
    array([-0.2,  2. ])
    """
    return _apply(x, _params_spec("leaky_relu", {"negative_slope": negative_slope}))


def elu(x: Any, alpha: float = 1.0) -> np.ndarray:
    """Exponential linear unit: ``x if x >= 0 else alpha * (exp(x) - 1)``.

    >>> elu(np.array([-1.0, 2.0]))
    array([-0.63212056,  2.        ])
    """
    return _apply(x, _params_spec("elu", {"alpha": alpha}))


def selu(x: Any) -> np.ndarray:
    """Scaled ELU: ``scale * elu(x, alpha)`` with alpha = 1.67326324, scale = 1.05070098.

    >>> selu(np.array([-1.0, 1.0]))
    array([-1.11133074,  1.05070099])
    """
    return _apply(x, _DEFAULT_SPECS["selu"])


def celu(x: Any, alpha: float = 1.0) -> np.ndarray:
    """Continuously differentiable ELU: ``x if x >= 0 else alpha * (exp(x / alpha) - 1)``.

    >>> celu(np.array([-2.0, 1.0]), alpha=2.0)
    array([-1.26424112,  1.        ])
    """
    return _apply(x, _params_spec("celu", {"alpha": alpha}))


def gelu(x: Any, approximate: bool = False) -> np.ndarray:
    """Gaussian error linear unit ``x * Phi(x)`` (exact erf form), or with ``approximate=True``
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    >>> gelu(np.array([-1.0, 0.0, 1.0]))
    array([-0.15865525,  0.        ,  0.84134475])
    """
    return _apply(x, _params_spec("gelu", {"approximate": approximate}))


def sigmoid(x: Any) -> np.ndarray:
    """``1 / (1 + exp(-x))``.

    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    return _apply(x, _DEFAULT_SPECS["sigmoid"])


def hard_sigmoid(x: Any) -> np.ndarray:
    """Piecewise linear sigmoid: ``relu6(x + 3) / 6``.

    >>> hard_sigmoid(np.array([-4.0, 0.0, 1.5, 4.0]))
    array([0.  , 0.5 , 0.75, 1.  ])
    """
    return _apply(x, _DEFAULT_SPECS["hard_sigmoid"])


def hard_silu(x: Any) -> np.ndarray:
    """Hard SiLU (hard swish): ``x * relu6(x + 3) / 6``.

    >>> hard_silu(np.array([-4.0, 1.0, 4.0]))
    array([0.        , 0.66666667, 4.        ])
    """
    return _apply(x, _DEFAULT_SPECS["hard_silu"])


hard_swish = hard_silu


def silu(x: Any) -> np.ndarray:
    """SiLU (swish): ``x * sigmoid(x)``.

    >>> silu(np.array([-1.0, 0.0, 1.0]))
    array([-0.26894142,  0.        ,  0.73105858])
    """
    return _apply(x, _DEFAULT_SPECS["silu"])


swish = silu


def tanh(x: Any) -> np.ndarray:
    """Hyperbolic tangent.

    >>> tanh(np.array([-1.0, 0.0, 1.0]))
    array([-0.76159416,  0.        ,  0.76159416])
    """
    return _apply(x, _DEFAULT_SPECS["tanh"])


def hard_tanh(x: Any) -> np.ndarray:
    """``clip(x, -1, 1)``.

    >>> hard_tanh(np.array([-3.0, 0.5, 3.0]))
    array([-1. ,  0.5,  1. ])
    """
    return _apply(x, _DEFAULT_SPECS["hard_tanh"])


def tanh_shrink(x: Any) -> np.ndarray:
    """``x - tanh(x)`` (accurate near 0, where the two cancel).

    >>> tanh_shrink(np.array([1e-3, 1.0]))
    array([3.33333200e-10, 2.38405844e-01])
    """
    return _apply(x, _DEFAULT_SPECS["tanh_shrink"])


def softplus(x: Any) -> np.ndarray:
    """``log(exp(x) + 1)``, without overflow.

    >>> softplus(np.array([-1000.0, 1000.0]))
    array([   0., 1000.])
    """
    return _apply(x, _DEFAULT_SPECS["softplus"])


def softsign(x: Any) -> np.ndarray:
    """``x / (abs(x) + 1)``.

    >>> softsign(np.array([-1.0, 3.0]))
    array([-0.5 ,  0.75])
    """
    return _apply(x, _DEFAULT_SPECS["softsign"])


def sparse_plus(x: Any) -> np.ndarray:
    """``0`` for ``x <= -1``, ``(x + 1)^2 / 4`` for ``-1 < x < 1``, ``x`` for ``x >= 1``.

    >>> sparse_plus(np.array([-2.0, 0.0, 2.0]))
    array([0.  , 0.25, 2.  ])
    """
    return _apply(x, _DEFAULT_SPECS["sparse_plus"])


def sparse_sigmoid(x: Any) -> np.ndarray:
    """``0`` for ``x <= -1``, ``(x + 1) / 2`` for ``-1 < x < 1``, ``1`` for ``x >= 1``.

    >>> sparse_sigmoid(np.array([-2.0, 0.0, 0.5, 2.0]))
    array([0.  , 0.5 , 0.75, 1.  ])
    """
    return _apply(x, _DEFAULT_SPECS["sparse_sigmoid"])


def squareplus(x: Any, b: float = 4) -> np.ndarray:
    """``(x + sqrt(x^2 + b)) / 2`` (``b >= 0``).

    >>> squareplus(np.array([0.0, 1.5]))
    array([1., 2.])
    """
    return _apply(x, _params_spec("squareplus", {"b": b}))


def log_sigmoid(x: Any) -> np.ndarray:
    """``log(sigmoid(x))``, without overflow.

    >>> log_sigmoid(np.array([-1000.0, 1000.0]))
    array([-1000.,     0.])
    """
    return _apply(x, _DEFAULT_SPECS["log_sigmoid"])


def exponential(x: Any) -> np.ndarray:
    """``exp(x)``.

    >>> exponential(np.array([0.0, 1.0]))
    array([1.        , 2.71828183])
    """
    return _apply(x, _DEFAULT_SPECS["exponential"])


def mish(x: Any) -> np.ndarray:
    """``x * tanh(softplus(x))``.

    >>> mish(np.array([-1.0, 1.0]))
    array([-0.30340146,  0.86509839])
    """
    return _apply(x, _DEFAULT_SPECS["mish"])


def soft_shrink(x: Any, threshold: float = 0.5) -> np.ndarray:
    """``x - threshold`` above ``threshold``, ``x + threshold`` below ``-threshold``, else 0.

    >>> soft_shrink(np.array([-2.0, 0.2, 2.0]))
    array([-1.5,  0. ,  1.5])
    """
    return _apply(x, _params_spec("soft_shrink", {"threshold": threshold}))


def hard_shrink(x: Any, threshold: float = 0.5) -> np.ndarray:
    """``x`` where ``abs(x) > threshold``, else 0.

    >>> hard_shrink(np.array([-2.0, 0.2, 2.0]))
    array([-2.,  0.,  2.])
    """
    return _apply(x, _params_spec("hard_shrink", {"threshold": threshold}))


def threshold(x: Any, threshold: float, default_value: float) -> np.ndarray:
    """``x`` where ``x > threshold``, else ``default_value`` (both parameters required, as in Keras).

    >>> threshold(np.array([-1.0, 0.0, 1.0, 2.0]), 1.0, 0.0)
    array([0., 0., 0., 2.])
    """
    return _apply(x, _params_spec("threshold", {"threshold": threshold, "default_value": default_value}))


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` over the last axis (computed as ``exp(x - max)``: huge values are fine).

    >>> softmax(np.array([[1.0, 1.0], [1e30, 0.0]]))
    array([[0.5, 0.5],
           [1. , 0. ]])
    """
    return _apply(x, _DEFAULT_SPECS["softmax"], axis)


def log_softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``log(softmax(x))`` over the last axis, finite wherever x is.

    >>> log_softmax(np.array([0.0, -1000.0]))
    array([    0., -1000.])
    """
    return _apply(x, _DEFAULT_SPECS["log_softmax"], axis)


def sparsemax(x: Any, axis: int = -1) -> np.ndarray:
    """Euclidean projection of each last-axis row onto the probability simplex
    (``max(x - tau, 0)``, summing to 1); ``-inf`` entries get 0.

    >>> sparsemax(np.array([2.0, 1.0, -1.0]))
    array([1., 0., 0.])
    """
    return _apply(x, _DEFAULT_SPECS["sparsemax"], axis)


def glu(x: Any, axis: int = -1) -> np.ndarray:
    """Gated linear unit: splits the last axis into halves ``a, b`` and returns ``a * sigmoid(b)``.

    >>> glu(np.array([[2.0, 4.0, 0.0, 1000.0]]))
    array([[1., 4.]])
    """
    return _apply(x, _DEFAULT_SPECS["glu"], axis)


# ---------------------------------------------------------------------------------------------
# Name <-> function <-> kernel spec
# ---------------------------------------------------------------------------------------------

_missing = [name for name in _TABLE if not callable(globals().get(name))]
if _missing:
    raise ImportError(f"fastdense.activations: the kernel has activations without a Python function: "
                      f"{_missing} (add a function with the Keras signature, see docs/extending.md)")
_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {name: globals()[name] for name in _TABLE}
_FUNCTIONS.update({alias: _FUNCTIONS[target] for alias, target in _ALIASES.items()})
_NAME_OF: dict[Callable[..., Any], str] = {fn: name for name, fn in _FUNCTIONS.items() if name in _TABLE}

# Specs with default parameters, by name (aliases included) and by function; threshold has none.
_DEFAULT_SPECS: dict[str, ActivationSpec] = {}
for _name in ALL_NAMES:
    try:
        _DEFAULT_SPECS[_name] = _spec(_canonical(_name), {})
    except ValueError:
        pass
_FUNCTION_SPECS: dict[Callable[..., Any], ActivationSpec] = {
    fn: _DEFAULT_SPECS[name] for fn, name in _NAME_OF.items() if name in _DEFAULT_SPECS}
_LINEAR_SPEC = _DEFAULT_SPECS["linear"]
del _name

# id(partial) -> (the partial, the keywords it was resolved with, its spec)
_PARTIAL_SPECS: dict[int, tuple[Any, dict[str, Any], ActivationSpec]] = {}


def _partial_spec(p: functools.partial) -> ActivationSpec:
    name = _NAME_OF.get(p.func)
    if name is None:
        raise TypeError(_type_message(p))
    if p.args:
        raise TypeError(f"{name}: give its parameters to functools.partial by keyword "
                        f"(e.g. partial({name}, {', '.join(k for k, _ in _TABLE[name].signature) or '...'}=...)), "
                        f"got positional {p.args!r}")
    cached = _PARTIAL_SPECS.get(id(p))
    if cached is not None and cached[0] is p and cached[1] == p.keywords:
        return cached[2]
    spec = _spec(name, p.keywords)
    if len(_PARTIAL_SPECS) > 256:
        _PARTIAL_SPECS.clear()
    _PARTIAL_SPECS[id(p)] = (p, dict(p.keywords), spec)
    return spec


def _type_message(activation: Any) -> str:
    return ("activation must be a name like 'relu' or a fastdense activation function, "
            f"got {activation!r}")


def resolve(activation: Any) -> ActivationSpec:
    """The kernel spec of an activation: a name (or alias), None (linear), one of this module's
    functions, or ``functools.partial(fn, **params)`` of one.

    >>> resolve(functools.partial(leaky_relu, negative_slope=0.1)).params
    (0.1, 0.0, 0.0)

    Raises ValueError for an unknown name or a bad parameter value, TypeError for an unknown
    parameter or anything that is not an activation identifier.
    """
    if type(activation) is str:
        spec = _DEFAULT_SPECS.get(activation)
        if spec is not None:
            return spec
        return _spec(_canonical(activation), {})   # raises: unknown name, or threshold
    if activation is None:
        return _LINEAR_SPEC
    if isinstance(activation, str):
        return resolve(str(activation))
    if isinstance(activation, functools.partial):
        return _partial_spec(activation)
    if callable(activation):
        try:
            spec = _FUNCTION_SPECS.get(activation)
        except TypeError:   # unhashable callable
            spec = None
        if spec is not None:
            return spec
        if activation is threshold:
            return _spec("threshold", {})   # raises: its parameters are required
    raise TypeError(_type_message(activation))


def halves(activation: Any) -> bool:
    """True when ``activation`` halves the last axis (glu); False for every other one,
    Python callables included.

    >>> halves("glu"), halves(relu)
    (True, False)
    """
    try:
        return bool(resolve(activation).halves)
    except (TypeError, ValueError):
        return False


def is_fused(activation: Any) -> bool:
    """True when ``ops.dense`` computes ``activation`` inside the kernel (see :func:`resolve`).

    >>> is_fused(relu), is_fused(np.tanh)
    (True, False)
    """
    try:
        resolve(activation)
    except (TypeError, ValueError):
        return False
    return True


def get(identifier: Any) -> Callable[..., Any]:
    """The activation function for an identifier, as ``keras.activations.get``: None -> linear,
    a name -> its function, a config dict -> :func:`deserialize`, a callable passes through.

    >>> get("relu") is relu, get(None) is linear
    (True, True)
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        return _FUNCTIONS[_canonical(identifier)]
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r} "
                     "(expected None, a name such as 'relu', a config dict or a callable)")


def _non_default_params(p: functools.partial, name: str) -> dict[str, Any]:
    _spec(name, p.keywords)   # validates
    defaults = dict(_TABLE[name].signature)
    return {k: v for k, v in p.keywords.items()
            if defaults[k] is _REQUIRED or not _same_value(v, defaults[k])}


def _same_value(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b) or (
        isinstance(a, numbers.Real) and isinstance(b, numbers.Real)
        and not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b))


def serialize(activation: Any) -> Any:
    """The Keras config value of an activation: the name string for a built-in.

    A ``functools.partial`` of a built-in with non-default parameters becomes
    ``{"module": "fastdense.activations", "class_name": "partial", "config": {"name": ..., params}}``
    (a fastdense extension; Keras has no config for it). A function registered with
    ``fastdense.saving.register_serializable`` gets its Keras function config.

    >>> serialize(swish)
    'silu'
    """
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return _canonical(activation)
    if isinstance(activation, functools.partial) and activation.func in _NAME_OF and not activation.args:
        name = _NAME_OF[activation.func]
        params = _non_default_params(activation, name)
        if not params:
            return name
        return {"module": "fastdense.activations", "class_name": "partial",
                "config": {"name": name, **{k: (v.item() if isinstance(v, np.generic) else v)
                                            for k, v in params.items()}},
                "registered_name": None}
    try:
        name = _NAME_OF.get(activation)
    except TypeError:
        name = None
    if name is not None:
        return name
    serialization = _serialization()
    if serialization is not None and _is_registered(serialization, activation):
        return serialization.serialize_keras_object(activation)
    raise ValueError(
        f"Cannot serialize activation {activation!r}: it is not a fastdense built-in activation "
        "(or a functools.partial of one) nor a registered function. Register custom activations "
        "with @fastdense.saving.register_serializable()")


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """Rebuild an activation from :func:`serialize`'s output or a Keras config
    (a name, or a ``{"class_name": "function", "config": name, ...}`` dict).

    >>> deserialize("relu") is relu
    True
    """
    if isinstance(config, str):
        name = _ALIASES.get(config, config)
        if name in _TABLE:
            return _FUNCTIONS[name]
        if custom_objects and config in custom_objects:
            return custom_objects[config]
        serialization = _serialization()
        found = None if serialization is None else serialization.get_registered_object(config)
        if callable(found):
            return found
        _canonical(config)   # raises: unknown name, with the valid ones
    if isinstance(config, Mapping) and config.get("class_name") == "partial" and \
            config.get("module") == "fastdense.activations":
        inner = config.get("config")
        if not isinstance(inner, Mapping) or not isinstance(inner.get("name"), str):
            raise ValueError(f"Could not interpret activation config {dict(config)!r}: its 'config' "
                             "must be a dict with the activation 'name' and its parameters")
        params = {k: v for k, v in inner.items() if k != "name"}
        name = _canonical(inner["name"])
        _spec(name, params)   # validates before building
        return functools.partial(_FUNCTIONS[name], **params)
    serialization = _serialization()
    if serialization is None or not isinstance(config, Mapping):
        raise ValueError(f"Could not interpret activation config {config!r}: expected a name such as "
                         "'relu' or a Keras function config dict")
    found = serialization.deserialize_keras_object(
        config, module_objects=_FUNCTIONS, custom_objects=custom_objects,
        printable_module_name="activation function")
    if not callable(found):
        raise ValueError(f"Activation config {config!r} did not give a callable, got {found!r}")
    return found


def _is_registered(serialization: Any, fn: Any) -> bool:
    """True for a function registered with fastdense.saving.register_serializable."""
    name = getattr(fn, "__name__", None)
    if name is None or not callable(fn):
        return False
    return serialization.get_registered_name(fn) != name


def _serialization():
    """fastdense.saving.serialization (the registry: it imports nothing from fastdense)."""
    return serialization


def _register_builtins() -> None:
    serialization = _serialization()
    if serialization is None:
        return
    aliases: dict[str, list[str]] = {}
    for alias, target in _ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    for name, fn in _FUNCTIONS.items():
        if name in _TABLE:
            serialization.register_builtin("keras.activations", name, *aliases.get(name, ()))(fn)


_register_builtins()
