"""Weight initializers, as in ``keras.initializers``: same classes, names, formulas and configs.

An initializer is called with a shape and a dtype and returns a new numpy array::

    >>> from fastdense.initializers import GlorotUniform
    >>> w = GlorotUniform(seed=0)((8, 16))
    >>> w.shape, w.dtype, bool(abs(w).max() <= (6 / (8 + 16)) ** 0.5)
    ((8, 16), dtype('float32'), True)

Randomness: ``seed=<int>`` makes an instance return the same values on every call (as in
Keras); ``seed=None`` draws fresh values on every call, so one unseeded instance can be
shared by several layers without giving them identical weights. fastdense draws from
numpy's PCG64 generator: same distributions as Keras, not the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "IdentityInitializer",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "OrthogonalInitializer",
    "RandomInitializer",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "deserialize",
    "get",
    "serialize",
]

_MODULE = "keras.initializers"

# Standard deviation of a standard normal truncated to [-2, 2]: dividing by it makes a
# truncated normal have the requested standard deviation (Keras's constant).
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978

ShapeLike = int | Sequence[int]


def _shape(shape: Any, owner: str) -> tuple[int, ...]:
    """Validate a weight shape: an int or a sequence of non-negative ints."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        result = tuple(dims)
    except TypeError:
        raise ValueError(f"{owner}: shape must be a tuple of non-negative ints, got {shape!r}") from None
    for dim in result:
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)) or dim < 0:
            raise ValueError(f"{owner}: shape must be a tuple of non-negative ints, got {shape!r}")
    return tuple(int(dim) for dim in result)


def _dtype(dtype: Any, owner: str, floating: bool) -> np.dtype:
    """Validate the requested dtype (None means float32)."""
    try:
        result = np.dtype("float32" if dtype is None else dtype)
    except TypeError:
        raise ValueError(f"{owner}: unknown dtype {dtype!r}") from None
    if floating and result.kind != "f":
        raise ValueError(f"{owner} produces floating point values; got dtype {result.name!r}")
    if result.kind not in "biuf":
        raise ValueError(f"{owner}: dtype must be numeric, got {result.name!r}")
    return result


class Initializer:
    """Base class of initializers; subclass it for your own.

    Implement ``__call__(shape, dtype="float32")`` returning a numpy array, and
    ``get_config()`` returning the constructor arguments so the initializer can be saved.
    ``from_config(config)`` defaults to ``cls(**config)``.

    Example::

        @fastdense.saving.register_serializable(package="my_project")
        class Scaled(Initializer):
            def __init__(self, scale=1.0):
                self.scale = scale
            def __call__(self, shape, dtype="float32"):
                return np.full(shape, self.scale, dtype=dtype)
            def get_config(self):
                return {"scale": self.scale}
    """

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        """Return a new array of the given shape and dtype."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(shape, dtype)")

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-compatible."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Initializer:
        """Rebuild an initializer from ``get_config()`` output (a TF 1.x ``dtype`` key is ignored)."""
        return instantiate_from_config(cls, config, ignored_keys=("dtype",))

    def clone(self) -> Initializer:
        """A new initializer with the same config."""
        return type(self).from_config(self.get_config())

    def __repr__(self) -> str:
        return config_repr(self)


# --------------------------------------------------------------------------------------
# Constant initializers
# --------------------------------------------------------------------------------------


@register_builtin(_MODULE, "Zeros", "zeros", "zero")
class Zeros(Initializer):
    """All zeros.

    >>> Zeros()((2, 3)).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        return np.zeros(_shape(shape, "Zeros"), dtype=_dtype(dtype, "Zeros", floating=False))


@register_builtin(_MODULE, "Ones", "ones", "one")
class Ones(Initializer):
    """All ones.

    >>> Ones()(2, dtype="float64").tolist()
    [1.0, 1.0]
    """

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        return np.ones(_shape(shape, "Ones"), dtype=_dtype(dtype, "Ones", floating=False))


@register_builtin(_MODULE, "Constant", "constant")
class Constant(Initializer):
    """Every element equal to ``value`` (a number, or an array broadcastable to the shape).

    >>> Constant(0.5)((2, 2)).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """

    def __init__(self, value: Any = 0.0) -> None:
        if isinstance(value, np.generic):
            value = value.item()
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)):
            raise ValueError(f"Constant: value must be a finite number or array of numbers, got {value!r}")
        self.value = value

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        shape = _shape(shape, "Constant")
        value = np.asarray(self.value, dtype=_dtype(dtype, "Constant", floating=False))
        try:
            return np.broadcast_to(value, shape).copy()
        except ValueError:
            raise ValueError(
                f"Constant: value of shape {value.shape} cannot fill a weight of shape {shape}"
            ) from None

    def get_config(self) -> dict[str, Any]:
        return {"value": serialize_keras_object(self.value)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Constant:
        config = dict(config)
        if isinstance(config.get("value"), Mapping):  # Keras's {"class_name": "__numpy__", ...}
            config["value"] = deserialize_keras_object(config["value"])
        return instantiate_from_config(cls, config, ignored_keys=("dtype",))


@register_builtin(_MODULE, "Identity", "identity", "IdentityInitializer")
class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only; rectangular shapes allowed).

    Keras 3.6-3.14 wrote it as ``"IdentityInitializer"``; both names are read. Keras 3.15's
    config is ``{}`` (it drops ``gain``); fastdense writes ``{}`` for the default gain and
    ``{"gain": g}`` otherwise, which Keras reads back correctly.

    >>> Identity(gain=2.0)((2, 3)).tolist()
    [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = check_number("Identity", "gain", gain)

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        shape = _shape(shape, "Identity")
        if len(shape) != 2:
            raise ValueError(f"Identity initializer only makes 2-D matrices, got shape {shape} of rank {len(shape)}")
        dtype = _dtype(dtype, "Identity", floating=False)
        return (self.gain * np.eye(*shape)).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {} if self.gain == 1.0 else {"gain": self.gain}


IdentityInitializer = Identity

# --------------------------------------------------------------------------------------
# Random initializers
# --------------------------------------------------------------------------------------


def _check_seed(owner: str, seed: Any) -> Any:
    """None, an int, or a serialized Keras SeedGenerator dict."""
    if seed is None:
        return None
    if isinstance(seed, Mapping):
        inner = seed.get("config")
        inner_seed = inner.get("seed") if isinstance(inner, Mapping) else None
        if seed.get("class_name") != "SeedGenerator" or not _is_int(inner_seed):
            raise ValueError(f"{owner}: seed must be an int, None or a Keras SeedGenerator config, got {seed!r}")
        return dict(seed)
    if not _is_int(seed):
        raise ValueError(f"{owner}: seed must be an int or None, got {seed!r}")
    return int(seed)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _seed_sequence(seed: int) -> np.random.SeedSequence:
    # Negative seeds get their own stream instead of an error.
    return np.random.SeedSequence(abs(seed), spawn_key=(1,) if seed < 0 else ())


class RandomInitializer(Initializer):
    """Base of the random initializers: holds the ``seed``.

    - ``seed=<int>``: every call returns the same values (reproducible; as Keras).
    - ``seed=None``: every call draws new values.
    - a Keras ``SeedGenerator`` config dict: a seeded stream, different values on each call
      but the same sequence for the same seed (as Keras's SeedGenerator).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = _check_seed(type(self).__name__, seed)
        self._stream: np.random.Generator | None = None
        if isinstance(self.seed, dict):
            self._stream = np.random.Generator(np.random.PCG64(_seed_sequence(int(self.seed["config"]["seed"]))))

    def _generator(self) -> np.random.Generator:
        if self._stream is not None:
            return self._stream
        if self.seed is None:
            return np.random.default_rng()
        return np.random.Generator(np.random.PCG64(_seed_sequence(self.seed)))

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


def _truncated_standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal samples restricted to [-2, 2] (out-of-range draws are redrawn)."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values


@register_builtin(_MODULE, "RandomNormal", "random_normal", "normal")
class RandomNormal(RandomInitializer):
    """Normal distribution with ``mean`` and ``stddev``.

    >>> w = RandomNormal(mean=1.0, stddev=0.0, seed=1)((2,))
    >>> w.tolist()
    [1.0, 1.0]
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        self.mean = check_number("RandomNormal", "mean", mean)
        self.stddev = check_number("RandomNormal", "stddev", stddev, minimum=0.0)
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        shape, dtype = _shape(shape, "RandomNormal"), _dtype(dtype, "RandomNormal", floating=True)
        return self._generator().normal(self.mean, self.stddev, shape).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


@register_builtin(_MODULE, "TruncatedNormal", "truncated_normal")
class TruncatedNormal(RandomInitializer):
    """Normal distribution with values beyond 2 ``stddev`` from ``mean`` redrawn.

    The result's standard deviation is about ``0.88 * stddev`` (as in Keras).

    >>> w = TruncatedNormal(stddev=1.0, seed=0)((1000,))
    >>> bool(abs(w).max() <= 2.0)
    True
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        self.mean = check_number("TruncatedNormal", "mean", mean)
        self.stddev = check_number("TruncatedNormal", "stddev", stddev, minimum=0.0)
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        shape, dtype = _shape(shape, "TruncatedNormal"), _dtype(dtype, "TruncatedNormal", floating=True)
        values = self.mean + self.stddev * _truncated_standard_normal(self._generator(), shape)
        return values.astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


@register_builtin(_MODULE, "RandomUniform", "random_uniform", "uniform")
class RandomUniform(RandomInitializer):
    """Uniform distribution on ``[minval, maxval)``.

    >>> w = RandomUniform(-1.0, 1.0, seed=0)((1000,))
    >>> bool(-1.0 <= w.min() and w.max() < 1.0)
    True
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        self.minval = check_number("RandomUniform", "minval", minval)
        self.maxval = check_number("RandomUniform", "maxval", maxval)
        if self.maxval < self.minval:
            raise ValueError(f"RandomUniform: minval must be <= maxval, got minval={minval!r}, maxval={maxval!r}")
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        shape, dtype = _shape(shape, "RandomUniform"), _dtype(dtype, "RandomUniform", floating=True)
        values = self._generator().uniform(self.minval, self.maxval, shape).astype(dtype)
        if self.maxval > self.minval:  # float32 rounding can reach maxval: keep [minval, maxval)
            below_max = np.nextafter(dtype.type(self.maxval), dtype.type(-np.inf))
            np.minimum(values, below_max, out=values)
        return values

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


def _axes(owner: str, name: str, axes: Any) -> int | list[int] | None:
    if axes is None:
        return None
    if _is_int(axes):
        return int(axes)
    if isinstance(axes, (list, tuple)) and all(_is_int(axis) for axis in axes):
        return [int(axis) for axis in axes]
    raise ValueError(f"{owner}: {name} must be None, an int or a list of ints, got {axes!r}")


def compute_fans(
    shape: ShapeLike,
    input_axes: int | Sequence[int] | None = None,
    output_axes: int | Sequence[int] | None = None,
) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape, by Keras's rule.

    Rank 0: (1, 1). Rank 1: (n, n). Rank 2 ``(input_dim, units)``: (input_dim, units).
    Rank 3+ (convolution kernels ``(..., in_channels, out_channels)``): both multiplied by
    the product of the leading "receptive field" dimensions.

    With both ``input_axes`` and ``output_axes`` (Keras 3.15, for EinsumDense kernels),
    fan_in and fan_out are the products of those axes' sizes; with only one of them the
    rule above applies, as in Keras.

    >>> compute_fans((8, 16))
    (8, 16)
    >>> compute_fans((3, 3, 4, 32))
    (36, 288)
    >>> compute_fans((4, 2, 8), input_axes=[0], output_axes=[1, 2])
    (4, 16)
    """
    shape = _shape(shape, "compute_fans")
    if input_axes is not None and output_axes is not None:
        return _axes_size(shape, input_axes), _axes_size(shape, output_axes)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _axes_size(shape: tuple[int, ...], axes: int | Sequence[int]) -> int:
    axes = [axes] if _is_int(axes) else list(axes)
    for axis in axes:
        if not -len(shape) <= axis < len(shape):
            raise ValueError(f"compute_fans: axis {axis} is out of range for shape {shape}")
    return math.prod(shape[axis] for axis in axes)


@register_builtin(_MODULE, "VarianceScaling", "variance_scaling")
class VarianceScaling(RandomInitializer):
    """Scale-aware initializer: variance ``scale / n``.

    ``n`` is fan_in, fan_out or their average (``mode`` "fan_in", "fan_out", "fan_avg";
    see :func:`compute_fans`). ``distribution``:

    - "truncated_normal": normal truncated at 2 standard deviations, with the standard
      deviation divided by 0.8796... so that the truncated values have variance ``scale / n``;
    - "untruncated_normal": normal with standard deviation ``sqrt(scale / n)``;
    - "uniform": uniform on ``[-limit, limit]`` with ``limit = sqrt(3 * scale / n)``.

    ("normal" is read as "truncated_normal", as Keras does.)

    >>> init = VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform", seed=0)
    >>> bool(abs(init((8, 4))).max() <= (3 * 2.0 / 8) ** 0.5)
    True
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        input_axes: int | Sequence[int] | None = None,
        output_axes: int | Sequence[int] | None = None,
    ) -> None:
        owner = type(self).__name__
        self.scale = check_number(owner, "scale", scale, minimum=0.0, strict=True)
        if mode not in self._MODES:
            raise ValueError(f"{owner}: mode must be one of {self._MODES}, got {mode!r}")
        if not isinstance(distribution, str) or distribution.lower() not in (*self._DISTRIBUTIONS, "normal"):
            raise ValueError(f"{owner}: distribution must be one of {self._DISTRIBUTIONS}, got {distribution!r}")
        distribution = distribution.lower()
        self.mode = mode
        self.distribution = "truncated_normal" if distribution == "normal" else distribution
        self.input_axes = _axes(owner, "input_axes", input_axes)
        self.output_axes = _axes(owner, "output_axes", output_axes)
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        owner = type(self).__name__
        shape, dtype = _shape(shape, owner), _dtype(dtype, owner, floating=True)
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._generator()
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / TRUNCATED_NORMAL_STDDEV
            values = stddev * _truncated_standard_normal(rng, shape)
        elif self.distribution == "untruncated_normal":
            values = rng.normal(0.0, math.sqrt(variance), shape)
        else:
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, shape)
        return values.astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling preset whose config holds only the seed and axes (as in Keras)."""

    _PRESET: tuple[float, str, str] = (1.0, "fan_in", "truncated_normal")

    def __init__(
        self,
        seed: int | None = None,
        input_axes: int | Sequence[int] | None = None,
        output_axes: int | Sequence[int] | None = None,
    ) -> None:
        scale, mode, distribution = self._PRESET
        super().__init__(scale, mode, distribution, seed=seed, input_axes=input_axes, output_axes=output_axes)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


@register_builtin(_MODULE, "GlorotUniform", "glorot_uniform")
class GlorotUniform(_FixedVarianceScaling):
    """Glorot (Xavier) uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``.

    >>> bool(abs(GlorotUniform(seed=0)((8, 16))).max() <= 0.5)
    True
    """

    _PRESET = (1.0, "fan_avg", "uniform")


@register_builtin(_MODULE, "GlorotNormal", "glorot_normal")
class GlorotNormal(_FixedVarianceScaling):
    """Glorot (Xavier) normal: truncated normal, ``stddev = sqrt(2 / (fan_in + fan_out))``."""

    _PRESET = (1.0, "fan_avg", "truncated_normal")


@register_builtin(_MODULE, "HeUniform", "he_uniform")
class HeUniform(_FixedVarianceScaling):
    """He uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / fan_in)``."""

    _PRESET = (2.0, "fan_in", "uniform")


@register_builtin(_MODULE, "HeNormal", "he_normal")
class HeNormal(_FixedVarianceScaling):
    """He normal: truncated normal, ``stddev = sqrt(2 / fan_in)``."""

    _PRESET = (2.0, "fan_in", "truncated_normal")


@register_builtin(_MODULE, "LecunUniform", "lecun_uniform")
class LecunUniform(_FixedVarianceScaling):
    """LeCun uniform: ``U(-limit, limit)``, ``limit = sqrt(3 / fan_in)``."""

    _PRESET = (1.0, "fan_in", "uniform")


@register_builtin(_MODULE, "LecunNormal", "lecun_normal")
class LecunNormal(_FixedVarianceScaling):
    """LeCun normal: truncated normal, ``stddev = sqrt(1 / fan_in)``."""

    _PRESET = (1.0, "fan_in", "truncated_normal")


@register_builtin(_MODULE, "Orthogonal", "orthogonal", "OrthogonalInitializer", "orthogonal_initializer")
class Orthogonal(RandomInitializer):
    """A random orthogonal matrix times ``gain`` (QR of a normal matrix, signs made uniform).

    Shapes of rank > 2 are treated as ``(prod(shape[:-1]), shape[-1])``. The result has
    orthonormal columns when it has at least as many rows as columns, else orthonormal rows.

    >>> q = Orthogonal(seed=0)((6, 4))
    >>> bool(np.allclose(q.T @ q, np.eye(4), atol=1e-6))
    True
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        self.gain = check_number("Orthogonal", "gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape: ShapeLike, dtype: Any = "float32") -> np.ndarray:
        shape, dtype = _shape(shape, "Orthogonal"), _dtype(dtype, "Orthogonal", floating=True)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal initializer needs a shape of rank >= 2, got shape {shape} of rank {len(shape)}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        if rows == 0 or cols == 0:
            return np.zeros(shape, dtype=dtype)
        a = self._generator().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        signs = np.sign(np.diag(r))
        q *= np.where(signs == 0, 1.0, signs)
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gain": self.gain}


OrthogonalInitializer = Orthogonal

# Keras's module table also accepts the base class by name.
register_builtin(_MODULE, "Initializer", "initializer")(Initializer)


# --------------------------------------------------------------------------------------
# Module functions
# --------------------------------------------------------------------------------------


def serialize(initializer: Any) -> Any:
    """The Keras 3 config of an initializer.

    >>> serialize(Zeros())
    {'module': 'keras.initializers', 'class_name': 'Zeros', 'config': {}, 'registered_name': None}
    """
    return serialize_keras_object(initializer)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """An initializer from a Keras 3 / Keras 2 config or a name.

    >>> deserialize({"class_name": "RandomNormal", "config": {"stddev": 0.1, "seed": 3}})
    RandomNormal(seed=3, mean=0.0, stddev=0.1)
    """
    return deserialize_keras_object(
        config, builtin_objects(_MODULE), custom_objects, printable_module_name="initializer"
    )


def get(identifier: Any) -> Any:
    """An initializer from a name, a config dict, a class, an instance or a callable.

    None gives None; an unknown name raises ValueError. A numpy array gives
    ``Constant(array)``: the weight takes exactly these values (Keras 3 also accepts
    arrays; fastdense's version can be saved).

    >>> get("he_normal")
    HeNormal(seed=None, input_axes=None, output_axes=None)
    >>> get(np.array([[1.0, 2.0]]))((1, 2)).tolist()
    [[1.0, 2.0]]
    """
    if isinstance(identifier, (np.ndarray, np.generic)):
        return Constant(identifier)
    return get_from_identifier(identifier, builtin_objects(_MODULE), "initializer")
