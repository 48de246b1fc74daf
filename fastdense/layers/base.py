"""The `Layer` base class: names, weights, building, symbolic calls, configs.

A layer is written the Keras way: ``__init__`` stores and validates the
arguments, ``build(input_shape)`` creates the weights with ``add_weight``,
``call(inputs)`` computes with NumPy or ``fastdense.ops``, and ``get_config``
returns the constructor arguments.

>>> import numpy as np
>>> from fastdense.layers import Layer
>>> class Scale(Layer):
...     def __init__(self, factor=2.0, **kwargs):
...         super().__init__(**kwargs)
...         self.factor = factor
...     def build(self, input_shape):
...         self.gain = self.add_weight("gain", (input_shape[-1],), initializer="ones")
...     def call(self, inputs):
...         return inputs * self.gain * self.factor
>>> Scale()(np.ones((2, 3))).tolist()
[[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]

Weights are plain NumPy arrays held in one tuple that ``set_weights`` replaces
with a single assignment, so a thread computing with the layer sees either the
old weights or the new ones, never a mix.  The arrays are read-only: change
them through ``set_weights``, which also bumps the layer's version and tells
the caches that hold it (compiled model plans, see :meth:`Layer._add_observer`).
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
import weakref
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from fastdense import constraints, initializers, quantizers, regularizers
from fastdense.layers.node import Node, SymbolicTensor, flatten, map_structure
from fastdense.saving import _budget as weight_budget
from fastdense.saving.serialization import deserialize_dtype, serialize_dtype

# Held while weights change; a model's set_weights holds it for all its layers at once, and
# the plan compiler holds it to take a consistent snapshot (never old and new weights mixed).
WEIGHTS_LOCK = threading.RLock()

__all__ = [
    "Layer",
    "InputSpec",
    "WeightSpec",
    "LayerNotConnectedError",
    "clear_session",
    "to_snake_case",
    "standardize_dtype",
    "standardize_shape",
]

Shape = tuple  # tuple of int | None

_FLOAT_DTYPES = ("float32", "float64")
# Weights may also be integers: a preprocessing Normalization's sample count is int32 in Keras,
# quantized Dense kernels (Keras 3 int8 / int4) are int8.
_WEIGHT_DTYPES = _FLOAT_DTYPES + ("int8", "int32", "int64")

# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

_name_lock = threading.Lock()
_name_uids: dict[str, int] = {}


def to_snake_case(name: str) -> str:
    """``"MyDenseLayer" -> "my_dense_layer"`` (Keras's rule for default names)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_object_name(prefix: str) -> str:
    """``prefix``, then ``prefix_1``, ``prefix_2``, ... (process-wide, like Keras)."""
    with _name_lock:
        count = _name_uids.get(prefix, 0)
        _name_uids[prefix] = count + 1
    return prefix if count == 0 else f"{prefix}_{count}"


def clear_session() -> None:
    """Reset automatic layer names, so the next ``Dense()`` is named ``dense`` again."""
    with _name_lock:
        _name_uids.clear()


# --------------------------------------------------------------------------
# Small standardizers
# --------------------------------------------------------------------------


def standardize_dtype(dtype: Any, allowed: Sequence[str] = _FLOAT_DTYPES) -> str:
    """Turn ``None``/str/NumPy dtype/Keras DTypePolicy (dict or object) into a dtype name.

    >>> standardize_dtype(None), standardize_dtype("float64")
    ('float32', 'float64')
    """
    if isinstance(dtype, dict) or (allowed == _FLOAT_DTYPES and isinstance(dtype, str)
                                   and (dtype.startswith("mixed_") or dtype in ("float16", "bfloat16"))):
        dtype = deserialize_dtype(dtype)   # (16-bit and mixed: its errors, or the serving dtype)
    elif hasattr(dtype, "name") and not isinstance(dtype, (np.dtype, type, str)):
        dtype = dtype.name  # a DTypePolicy-like object
    if dtype is None:
        return "float32"
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"Expected dtype to be one of {list(allowed)}, got {dtype!r}") from None
    if name not in allowed:
        raise ValueError(f"Expected dtype to be one of {list(allowed)}, got {dtype!r}")
    return name


def standardize_data_format(data_format: Any) -> str:
    """Keras's ``data_format`` argument: None -> ``"channels_last"``; a clear error otherwise.

    >>> standardize_data_format(None), standardize_data_format("Channels_First")
    ('channels_last', 'channels_first')
    """
    value = "channels_last" if data_format is None else str(data_format).lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(
            "The `data_format` argument must be one of 'channels_first', 'channels_last'. "
            f"Received: data_format={data_format!r}"
        )
    return value


def standardize_shape(shape: Any, what: str = "shape") -> Shape:
    """A shape as a tuple of positive ints or ``None``; an int means ``(int,)``."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"Expected {what} to be a tuple of positive integers or None, got {shape!r}") from None
    out = []
    for dim in dims:
        if dim is None:
            out.append(None)
        elif isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim >= 0:
            out.append(int(dim))
        elif isinstance(dim, float) and dim.is_integer() and dim >= 0:
            out.append(int(dim))
        else:
            raise ValueError(f"Expected {what} to be a tuple of positive integers or None, got {shape!r}")
    return tuple(out)


def _shape_structure(shapes: Any) -> Any:
    """Normalize a build shape: a tuple for one input, a list of tuples for several."""
    if isinstance(shapes, (list, tuple)) and shapes and all(
        isinstance(s, (list, tuple)) or s is None for s in shapes
    ) and not all(s is None for s in shapes):
        return [None if s is None else standardize_shape(s, "input_shape") for s in shapes]
    if shapes is None:
        return None
    return standardize_shape(shapes, "input_shape")


# --------------------------------------------------------------------------
# Input specs
# --------------------------------------------------------------------------


class InputSpec:
    """What a layer accepts: rank (``ndim``, ``min_ndim``, ``max_ndim``),
    fixed sizes on some axes (``axes={-1: 8}``) or a whole ``shape``.

    >>> InputSpec(min_ndim=2, axes={-1: 8})
    InputSpec(min_ndim=2, axes={-1: 8})
    """

    def __init__(
        self,
        ndim: int | None = None,
        min_ndim: int | None = None,
        max_ndim: int | None = None,
        axes: dict[int, int] | None = None,
        shape: Sequence[int | None] | None = None,
        dtype: str | None = None,
        name: str | None = None,
    ) -> None:
        self.shape = None if shape is None else tuple(shape)
        self.ndim = len(self.shape) if self.shape is not None else ndim
        self.min_ndim = min_ndim
        self.max_ndim = max_ndim
        self.axes = dict(axes or {})
        self.dtype = dtype
        self.name = name

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("ndim", self.ndim), ("min_ndim", self.min_ndim),
                                           ("max_ndim", self.max_ndim), ("shape", self.shape))
                 if v is not None]
        if self.axes:
            parts.append(f"axes={self.axes!r}")
        return f"InputSpec({', '.join(parts)})"

    def check(self, shape: Shape, owner: str) -> None:
        """Raise ``ValueError`` (``"<owner> expects ..., got shape (4, 7)"``) on a mismatch."""
        rank = len(shape)
        if self.ndim is not None and rank != self.ndim:
            raise ValueError(f"{owner} expects inputs with {self.ndim} dimensions, got shape {shape}")
        if self.min_ndim is not None and rank < self.min_ndim:
            raise ValueError(
                f"{owner} expects inputs with at least {self.min_ndim} dimensions, got shape {shape}"
            )
        if self.max_ndim is not None and rank > self.max_ndim:
            raise ValueError(
                f"{owner} expects inputs with at most {self.max_ndim} dimensions, got shape {shape}"
            )
        for axis, size in self.axes.items():
            if size is None or not -rank <= axis < rank:
                continue
            dim = shape[axis]
            if dim is not None and dim != size:
                where = "last dimension" if axis == -1 else f"dimension {size} on axis {axis}"
                if axis == -1:
                    raise ValueError(f"{owner} expects inputs with last dimension {size}, got shape {shape}")
                raise ValueError(f"{owner} expects inputs with {where}, got shape {shape}")
        if self.shape is not None:
            for expected, dim in zip(self.shape, shape):
                if expected is not None and dim is not None and expected != dim:
                    raise ValueError(f"{owner} expects inputs of shape {self.shape}, got shape {shape}")


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------


class WeightSpec(NamedTuple):
    """Everything about one weight except its value."""

    name: str
    shape: Shape
    dtype: str
    trainable: bool
    initializer: Any
    regularizer: Any
    constraint: Any


class LayerNotConnectedError(AttributeError, RuntimeError):
    """A graph attribute (``input``, ``output_shape``, ...) of a layer that was never called.

    An ``AttributeError`` (so ``hasattr(layer, "input")`` is False, as in Keras)
    that is also a ``RuntimeError`` (what Keras 2's ``get_input_at`` raised).
    """


def _readonly(array: np.ndarray) -> np.ndarray:
    """``array`` frozen for good: a view of a read-only base, which NumPy refuses to make
    writeable again (compiled plans and packed kernels hold copies of the weights, so an
    in-place edit would silently not reach them; set_weights is the way to change weights)."""
    array.flags.writeable = False
    return array.view()


# --------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------

_build_lock = threading.RLock()
_BASE_CONFIG_KEYS = ("name", "trainable", "dtype", "activity_regularizer")
_ADD_WEIGHT_ORDER = ("name", "shape", "initializer", "regularizer", "constraint", "trainable", "dtype")
_ADD_WEIGHT_KERAS3_ORDER = ("shape", "initializer", "dtype", "trainable", "autocast", "regularizer", "constraint",
                            "aggregation", "name")
_KERAS2_KWARGS = ("input_shape", "input_dim", "batch_input_shape", "batch_size", "weights", "autocast")


# Layer attributes that model plans (fastdense.models.plan) and Dense's fast path read.
_PLAN_SETTINGS = frozenset({"activation", "use_bias", "data_format", "target_shape", "axis"})


class Layer:
    """Base class of all fastdense layers (and of models).

    Subclass it like a Keras layer: create weights in ``build(input_shape)``
    with :meth:`add_weight`, compute in ``call(inputs)``, and list extra
    constructor arguments in ``get_config`` (or let them be captured
    automatically when they are plain JSON values).

    Args:
        name: Unique name; defaults to the snake_case class name plus a
            counter (``dense``, ``dense_1``, ...).
        dtype: ``"float32"`` (default) or ``"float64"``; a Keras DTypePolicy
            config is accepted too.
        trainable: Whether the weights count as trainable.
        activity_regularizer: Penalty on the outputs, reported in ``losses``.
        input_shape, input_dim, batch_input_shape, batch_size: Keras 2 style
            declaration of a first layer's input (used by ``Sequential``).
        weights: Keras 2 style initial weights, set when the layer is built.
    """

    # Set by layers that take a list of inputs (merges).
    _list_input = False
    # This layer's own version: bumped by every change of its weights or of a setting that
    # compiled plans read (see `_changed`).
    _version = 0
    # Caches that hold this layer (weakly) and must hear of its changes; see _add_observer.
    _observers: "weakref.WeakSet[Any] | None" = None

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _PLAN_SETTINGS and self.__dict__.get("built", False):
            # a setting that compiled plans read, changed on a built layer (say
            # `layer.activation = "tanh"`): the plans that hold this layer compile anew
            with WEIGHTS_LOCK:
                self._changed()
            self._refresh_cache()

    @property
    def _weights_version(self) -> int:
        """Bumped by every change of the weights or of a compiled-in setting."""
        return self._version

    def _add_observer(self, observer: Any) -> None:
        """Call ``observer.invalidate()`` (under the weights lock) whenever this layer's
        weights or compiled-in settings change; the layer holds ``observer`` weakly.

        Model plan caches (``fastdense.models.plan.PlanCache``) observe the layers they
        compiled, so a change reaches exactly the models that contain the layer.
        """
        with WEIGHTS_LOCK:
            if self._observers is None:
                object.__setattr__(self, "_observers", weakref.WeakSet())
            self._observers.add(observer)

    def _changed(self) -> None:
        """A change compiled plans must see: bump the version, invalidate the observers.
        Called with WEIGHTS_LOCK held."""
        object.__setattr__(self, "_version", self._version + 1)
        if self._observers:
            for observer in list(self._observers):
                observer.invalidate()

    def __new__(cls, *args: Any, **kwargs: Any) -> "Layer":
        obj = super().__new__(cls)
        obj._auto_config = None
        if cls.get_config is Layer.get_config and cls.__init__ is not Layer.__init__:
            obj._auto_config = _capture_init_args(cls, args, kwargs)
        return obj

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is not None and not getattr(build, "_fastdense_wrapped", False):
            cls.build = _wrap_build(build)

    def __init__(
        self,
        *,
        activity_regularizer: Any = None,
        trainable: bool = True,
        dtype: Any = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        unknown = sorted(set(kwargs) - set(_KERAS2_KWARGS))
        if unknown:
            raise TypeError(
                f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                f"{ {k: kwargs[k] for k in unknown} }"
            )
        if name is None:
            name = unique_object_name(self._default_name())
        elif not isinstance(name, str) or "/" in name or not name:
            raise ValueError(
                f"Argument `name` must be a non-empty string without '/', got name={name!r}"
            )
        self.name: str = name
        self._dtype = standardize_dtype(dtype)
        self._np_dtype = np.dtype(self._dtype)
        self._trainable = bool(trainable)
        self._activity_regularizer = _get_regularizer(activity_regularizer)
        self.built = False
        self.input_spec: InputSpec | list[InputSpec] | None = None
        self._weight_specs: tuple[WeightSpec, ...] = ()
        self._values: tuple[np.ndarray, ...] = ()
        self._inbound_nodes: list[Node] = []
        self._outbound_nodes: list[Node] = []
        self._build_input_shape: Any = None
        self._activity_loss: float | None = None

        # Keras 2 first-layer arguments.
        batch_input_shape = kwargs.get("batch_input_shape")
        input_shape = kwargs.get("input_shape")
        if input_shape is None and kwargs.get("input_dim") is not None:
            input_shape = (kwargs["input_dim"],)
        if batch_input_shape is not None:
            self._batch_input_shape: Shape | None = standardize_shape(batch_input_shape, "batch_input_shape")
        elif input_shape is not None:
            batch_size = kwargs.get("batch_size")
            self._batch_input_shape = (batch_size,) + standardize_shape(input_shape, "input_shape")
        else:
            self._batch_input_shape = None
        self._initial_weights = kwargs.get("weights")

    def _default_name(self) -> str:
        return to_snake_case(type(self).__name__)

    # ------------------------------------------------------------------ dtype

    @property
    def dtype(self) -> str:
        """Dtype of the weights and of the computation: ``"float32"`` or ``"float64"``."""
        return self._dtype

    @property
    def compute_dtype(self) -> str:
        return self._dtype

    @property
    def variable_dtype(self) -> str:
        return self._dtype

    @property
    def activity_regularizer(self) -> Any:
        """Regularizer applied to the outputs of concrete calls (reported in ``losses``)."""
        return self._activity_regularizer

    @activity_regularizer.setter
    def activity_regularizer(self, value: Any) -> None:
        self._activity_regularizer = _get_regularizer(value)
        if self.built:
            with WEIGHTS_LOCK:   # plans that record losses run such a layer layer by layer
                self._changed()
            self._refresh_cache()

    # -------------------------------------------------------------- trainable

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)

    # ------------------------------------------------------------------ build

    def build(self, input_shape: Any) -> None:
        """Create the weights for inputs of ``input_shape`` (override in subclasses)."""
        self.built = True

    def _refresh_cache(self) -> None:
        """Hook run after ``build`` and after every weight or setting change.

        Subclasses precompute per-call state here (Dense prepares its fast path).
        """

    def _maybe_build(self, shapes: Any) -> None:
        if self.built:
            return
        with _build_lock:
            if self.built:
                return
            self.build(shapes)  # a subclass's build is wrapped: it records shapes, sets built
            if self._build_input_shape is None:
                self._build_input_shape = shapes
            self.built = True
            if self._initial_weights is not None:
                weights, self._initial_weights = self._initial_weights, None
                self.set_weights(weights)
            self._refresh_cache()

    def get_build_config(self) -> dict | None:
        """``{"input_shape": ...}`` for a layer built from an input shape, else ``None``."""
        if self._build_input_shape is None:
            return None
        return {"input_shape": self._build_input_shape}

    def build_from_config(self, config: dict | None) -> None:
        """Rebuild from :meth:`get_build_config` output (Keras 3 ``build_config``)."""
        if config and config.get("input_shape") is not None and not self.built:
            self._maybe_build(_shape_structure(config["input_shape"]))

    # ---------------------------------------------------------------- weights

    def add_weight(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Create a weight and return its (read-only) array.

        ``add_weight(name, shape, initializer, regularizer=None, constraint=None,
        trainable=True, dtype=None)``.  Keras 3's order, with the shape first
        (``add_weight((8, 16), "glorot_uniform", name="kernel")``), works too.
        The initializer defaults to ``glorot_uniform``.  Keep the result in an
        attribute if you like (``self.w = self.add_weight(...)``):
        ``set_weights`` rebinds such attributes to the new arrays.
        """
        order = _ADD_WEIGHT_ORDER if not args or isinstance(args[0], str) else _ADD_WEIGHT_KERAS3_ORDER
        if len(args) > len(order):
            raise TypeError(f"add_weight() takes at most {len(order)} positional arguments, got {len(args)}")
        for key, value in zip(order, args):
            if key in kwargs:
                raise TypeError(f"add_weight() got multiple values for argument {key!r}")
            kwargs[key] = value
        kwargs.pop("autocast", None)
        kwargs.pop("aggregation", None)
        unknown = sorted(set(kwargs) - set(_ADD_WEIGHT_ORDER))
        if unknown:
            raise TypeError(f"add_weight() got unexpected keyword arguments {unknown}")
        return self._add_weight(**kwargs)

    def _add_weight(
        self,
        name: str | None = None,
        shape: Any = None,
        initializer: Any = None,
        regularizer: Any = None,
        constraint: Any = None,
        trainable: bool = True,
        dtype: Any = None,
    ) -> np.ndarray:
        if shape is None:
            shape = ()
        shape = standardize_shape(shape, "weight shape")
        if any(dim is None for dim in shape):
            raise ValueError(f"Layer '{self.name}': weight shape must be fully defined, got {shape}")
        dtype_name = self._dtype if dtype is None else standardize_dtype(dtype, _WEIGHT_DTYPES)
        if name is None:
            name = f"weight_{len(self._weight_specs)}"
        init = initializers.get("glorot_uniform" if initializer is None else initializer)
        weight_budget.charge(self.name, name, shape, dtype_name)  # a model file's config may not ask for TBs
        spec = WeightSpec(
            name=name,
            shape=shape,
            dtype=dtype_name,
            trainable=bool(trainable),
            initializer=init,
            regularizer=_get_regularizer(regularizer),
            constraint=None if constraint is None else constraints.get(constraint),
        )
        value = np.asarray(init(shape, dtype=dtype_name))
        if value.shape != shape:
            raise ValueError(
                f"Layer '{self.name}': initializer {init!r} returned shape {value.shape} for weight "
                f"'{name}', expected {shape}"
            )
        value = _readonly(np.array(value, dtype=dtype_name, order="C", copy=True))
        self._weight_specs = self._weight_specs + (spec,)
        with WEIGHTS_LOCK:
            self._values = self._values + (value,)
            self._changed()
        return value

    @property
    def quantization_mode(self) -> str | None:
        """``"int8"`` or ``"int4"`` once quantized (Keras's name; Dense, EinsumDense and Embedding
        quantize), else None."""
        quant = getattr(self, "_quant", None)
        return None if quant is None else quant.mode

    @property
    def dtype_policy(self) -> Any:
        """Keras's dtype policy: a :class:`fastdense.quantizers.QuantizedPolicy` (``.name`` e.g.
        ``"int8_from_float32"``) once quantized, else the float dtype's name."""
        quant = getattr(self, "_quant", None)
        return quant if quant is not None else self.dtype

    @property
    def weights(self) -> list[np.ndarray]:
        """Current weight arrays (read-only), in creation order."""
        return list(self._values)

    @property
    def weight_names(self) -> list[str]:
        """Names given to ``add_weight`` (``["kernel", "bias"]`` for Dense), in weight order."""
        return [spec.name for spec in self._weight_specs]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        if not self._trainable:
            return []
        return [v for s, v in zip(self._weight_specs, self._values) if s.trainable]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        if not self._trainable:
            return list(self._values)
        return [v for s, v in zip(self._weight_specs, self._values) if not s.trainable]

    @property
    def variables(self) -> list[np.ndarray]:
        return self.weights

    @property
    def trainable_variables(self) -> list[np.ndarray]:
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list[np.ndarray]:
        return self.non_trainable_weights

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weight arrays (kernel then bias for Dense)."""
        return [np.array(v, copy=True) for v in self._values]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace all weights at once, after checking count, shapes and dtypes.

        Values are copied (the caller's arrays are never modified) and cast to
        the weight dtype.  Raises ``ValueError`` naming the weight and the
        expected and received shapes; on error nothing is changed.
        """
        self._swap_values(self._validate_weights(weights))

    def _validate_weights(self, weights: Sequence[Any]) -> tuple[np.ndarray, ...]:
        specs = self._weight_specs
        weights = list(weights)
        if len(weights) != len(specs):
            expected = ", ".join(f"{s.name} {s.shape}" for s in specs) or "none"
            hint = "" if self.built or specs else " (the layer is not built yet: call it on data or build(input_shape) first)"
            raise ValueError(
                f"Layer '{self.name}' expects {len(specs)} weights ({expected}), "
                f"got {len(weights)}{hint}"
            )
        new = []
        for spec, value in zip(specs, weights):
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise ValueError(
                    f"Layer '{self.name}' weight '{spec.name}' expects a real numeric array "
                    f"(stored as {spec.dtype}), got dtype {array.dtype}"
                )
            if array.shape != spec.shape:
                raise ValueError(
                    f"Layer '{self.name}' weight '{spec.name}' expects shape {spec.shape}, "
                    f"got shape {array.shape}"
                )
            new.append(_readonly(np.array(array, dtype=spec.dtype, order="C", copy=True)))
        return tuple(new)

    def _swap_values(self, new_values: tuple[np.ndarray, ...]) -> None:
        old_values = self._values
        with WEIGHTS_LOCK:
            self._values = new_values  # the one assignment readers race with
            self._changed()
        # Rebind `self.w = self.add_weight(...)` style attributes of custom layers.
        old_ids = {id(v): i for i, v in enumerate(old_values)}
        for key, value in list(vars(self).items()):
            index = old_ids.get(id(value))
            if index is not None and key != "_values":
                setattr(self, key, new_values[index])
        self._refresh_cache()

    def __getstate__(self) -> dict:
        # copy.deepcopy and pickle: caches (packed kernels, compiled plans) are rebuilt on use,
        # and the copy starts with no observers (each model's copy observes its own layers)
        state = dict(self.__dict__)
        state.pop("_observers", None)
        if "_packed" in state:
            state["_packed"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for value in self.__dict__.get("_values", ()):
            if isinstance(value, np.ndarray) and value.flags.writeable:
                value.flags.writeable = False   # weights stay read-only in the copy too

    def count_params(self) -> int:
        """Total number of scalars in the weights (the layer must be built)."""
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on layer '{self.name}', but the layer isn't "
                f"built. You can build it manually via: `{self.name}.build(batch_input_shape)`."
            )
        return int(sum(int(np.prod(s.shape)) for s in self._weight_specs))

    @property
    def losses(self) -> list[float]:
        """Activity penalty of the last concrete call, then weight penalties on current weights."""
        losses = [] if self._activity_loss is None else [self._activity_loss]
        if self._trainable:
            for spec, value in zip(self._weight_specs, self._values):
                if spec.regularizer is not None and spec.trainable:
                    losses.append(float(spec.regularizer(value)))
        return losses

    # ------------------------------------------------------------------- call

    def call(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Compute outputs from NumPy inputs (override in subclasses)."""
        return inputs

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if "training" in kwargs and not _accepts_kwarg(type(self).call, "training"):
            kwargs.pop("training")
        if any(isinstance(t, SymbolicTensor) for t in flatten([inputs, list(args), list(kwargs.values())])):
            return self._symbolic_call(inputs, args, kwargs)
        inputs = self._convert_inputs(inputs)
        shapes = map_structure(lambda a: tuple(a.shape), inputs)
        self._maybe_build(shapes)
        self._check_input_spec(shapes)
        outputs = self.call(inputs, *args, **kwargs)
        if self.activity_regularizer is not None:
            self._activity_loss = float(sum(float(self.activity_regularizer(o)) for o in flatten(outputs)))
        return outputs

    def _convert_inputs(self, inputs: Any) -> Any:
        if isinstance(inputs, (list, tuple)) and (
            self._list_input or (inputs and all(isinstance(x, np.ndarray) for x in inputs))
        ):
            return [self._to_array(x) for x in inputs]
        return self._to_array(inputs)

    def _to_array(self, x: Any) -> np.ndarray:
        if type(x) is np.ndarray and x.dtype is self._np_dtype:
            return x
        array = np.asarray(x)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"{self._owner()} expects numeric arrays, got {type(x).__name__} with dtype {array.dtype}"
            )
        return array.astype(self._np_dtype, copy=False)

    def _owner(self, index: int | None = None) -> str:
        owner = f"{type(self).__name__} '{self.name}'"
        return owner if index is None else f"Input {index} of {owner}"

    def _check_input_spec(self, shapes: Any) -> None:
        spec = self.input_spec
        if spec is None:
            return
        if isinstance(spec, InputSpec):
            if isinstance(shapes, list):
                raise ValueError(f"{self._owner()} expects 1 input, got a list of {len(shapes)}")
            spec.check(shapes, self._owner())
            return
        shape_list = shapes if isinstance(shapes, list) else [shapes]
        if len(shape_list) != len(spec):
            raise ValueError(f"{self._owner()} expects {len(spec)} inputs, got {len(shape_list)}")
        for index, (one_spec, shape) in enumerate(zip(spec, shape_list)):
            if one_spec is not None:
                one_spec.check(shape, self._owner(index))

    # ------------------------------------------------------- symbolic calling

    def _symbolic_call(self, inputs: Any, args: tuple, kwargs: dict) -> Any:
        leaves = flatten(inputs)
        if not all(isinstance(t, SymbolicTensor) for t in leaves):
            raise TypeError(
                f"{self._owner()} was called on a mix of SymbolicTensors and arrays; "
                "pass only SymbolicTensors (use fastdense.Input) when building a graph"
            )
        shapes = map_structure(lambda t: t.shape, inputs)
        if isinstance(shapes, tuple) and isinstance(inputs, tuple):  # tuple of tensors
            shapes = list(shapes)
        self._maybe_build(shapes)
        self._check_input_spec(shapes)
        output_shape = self.compute_output_shape(shapes)
        output_dtype = self._output_dtype(inputs)
        node_index = len(self._inbound_nodes)
        if isinstance(output_shape, list):
            outputs: Any = [
                SymbolicTensor(s, output_dtype, self._tensor_name(node_index, i, len(output_shape)))
                for i, s in enumerate(output_shape)
            ]
        else:
            outputs = SymbolicTensor(output_shape, output_dtype, self._tensor_name(node_index, 0, 1))
        Node(self, call_args=(inputs,) + tuple(args), call_kwargs=kwargs, outputs=outputs)
        return outputs

    def _output_dtype(self, inputs: Any) -> str:
        return self._dtype

    def _tensor_name(self, node_index: int, tensor_index: int, count: int) -> str:
        name = self.name if node_index == 0 else f"{self.name}_{node_index}"
        return name if count == 1 else f"{name}:{tensor_index}"

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Output shape for ``input_shape`` (batch dimension included, may be ``None``).

        The default runs ``call`` once on a small zero array (``None`` sizes
        become 1) and reports the result with the batch dimension restored;
        override it when that is not right for your layer.
        """

        def dummy(shape: Shape) -> np.ndarray:
            return np.zeros(tuple(1 if d is None else d for d in shape), dtype=self._np_dtype)

        sample = map_structure(dummy, input_shape) if isinstance(input_shape, list) else dummy(input_shape)
        result = self.call(sample)
        first = input_shape[0] if isinstance(input_shape, list) else input_shape
        batch = first[0] if first else None

        def restore(out: Any) -> Shape:
            shape = tuple(np.shape(out))
            return (batch,) + shape[1:] if shape else shape

        if isinstance(result, (list, tuple)):
            return [restore(o) for o in result]
        return restore(result)

    # ----------------------------------------------- Keras 2 graph bookkeeping

    @property
    def inbound_nodes(self) -> list[Node]:
        """Nodes where this layer was called, in call order."""
        return self._inbound_nodes

    @property
    def outbound_nodes(self) -> list[Node]:
        """Nodes of other layers that consume this layer's outputs."""
        return self._outbound_nodes

    def _node_attribute(self, node_index: int, attr: str, attr_name: str) -> Any:
        if not self._inbound_nodes:
            raise LayerNotConnectedError(
                f"Layer '{self.name}' has never been called and thus has no defined {attr_name}."
            )
        if not 0 <= node_index < len(self._inbound_nodes):
            raise ValueError(
                f"Asked to get {attr_name} at node {node_index}, but the layer '{self.name}' has "
                f"only {len(self._inbound_nodes)} inbound node"
                f"{'s' if len(self._inbound_nodes) != 1 else ''}."
            )
        values = getattr(self._inbound_nodes[node_index], attr)
        return values[0] if len(values) == 1 else list(values)

    def get_input_at(self, node_index: int) -> Any:
        """Input tensor(s) of the ``node_index``-th call (a list for several inputs)."""
        return self._node_attribute(node_index, "input_tensors", "input")

    def get_output_at(self, node_index: int) -> Any:
        """Output tensor(s) of the ``node_index``-th call."""
        return self._node_attribute(node_index, "output_tensors", "output")

    def get_input_shape_at(self, node_index: int) -> Any:
        """Input shape(s) of the ``node_index``-th call."""
        return self._node_attribute(node_index, "input_shapes", "input shape")

    def get_output_shape_at(self, node_index: int) -> Any:
        """Output shape(s) of the ``node_index``-th call."""
        return self._node_attribute(node_index, "output_shapes", "output shape")

    def _single_node_attribute(self, attr: str, attr_name: str, method: str) -> Any:
        if len(self._inbound_nodes) > 1:
            raise AttributeError(
                f"Layer '{self.name}' has multiple inbound nodes, hence the notion of "
                f'"layer {attr_name}" is ill-defined. Use `{method}(node_index)` instead.'
            )
        return self._node_attribute(0, attr, attr_name)

    def _agreed_shape(self, attr: str, attr_name: str, method: str) -> Any:
        if not self._inbound_nodes:
            raise LayerNotConnectedError(
                f"Layer '{self.name}' has never been called and thus has no defined {attr_name}."
            )
        first = getattr(self._inbound_nodes[0], attr)
        if any(getattr(node, attr) != first for node in self._inbound_nodes[1:]):
            raise AttributeError(
                f"Layer '{self.name}' has multiple inbound nodes, with different {attr_name}s. "
                f'Hence the notion of "{attr_name}" is ill-defined for the layer. '
                f"Use `{method}(node_index)` instead."
            )
        return first[0] if len(first) == 1 else list(first)

    @property
    def input(self) -> Any:
        """Input tensor(s) of the layer's only call (Keras 2)."""
        return self._single_node_attribute("input_tensors", "input", "get_input_at")

    @property
    def output(self) -> Any:
        """Output tensor(s) of the layer's only call (Keras 2)."""
        return self._single_node_attribute("output_tensors", "output", "get_output_at")

    @property
    def input_shape(self) -> Any:
        """Input shape, defined while every call of the layer had the same one (Keras 2)."""
        return self._agreed_shape("input_shapes", "input shape", "get_input_shape_at")

    @property
    def output_shape(self) -> Any:
        """Output shape, defined while every call of the layer had the same one (Keras 2)."""
        return self._agreed_shape("output_shapes", "output shape", "get_output_shape_at")

    # ----------------------------------------------------------------- config

    def get_config(self) -> dict:
        """Constructor arguments as JSON-friendly values (Keras 3 format)."""
        config: dict[str, Any] = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": serialize_dtype(self._dtype),
        }
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if type(self).get_config is Layer.get_config:
            extra = _extra_init_params(type(self))
            if extra:
                if self._auto_config is None:
                    raise NotImplementedError(
                        f"Layer {type(self).__name__} has arguments {extra} in `__init__()` that "
                        "are not plain JSON values, and therefore must override `get_config()`."
                    )
                config.update(self._auto_config)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        """Create a layer from :meth:`get_config` output (Keras 3 or Keras 2 dialect)."""
        config = dict(config)
        # a quantized policy goes to __init__ as it is: the layers that quantize read it there
        # (Dense, EinsumDense, Embedding), the others refuse it by name
        if isinstance(config.get("dtype"), dict) and not quantizers.is_quantized_policy(config["dtype"]):
            config["dtype"] = standardize_dtype(config["dtype"])
        try:
            return cls(**config)
        except TypeError as error:
            raise TypeError(
                f"Error when deserializing class '{cls.__name__}' using config={config}: {error}"
            ) from error

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _get_regularizer(identifier: Any) -> Any:
    if identifier is None:
        return None
    return regularizers.get(identifier)


@functools.lru_cache(maxsize=None)
def _accepts_kwarg(function: Callable, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return True
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _wrap_build(build: Callable) -> Callable:
    @functools.wraps(build)
    def build_wrapper(self: Layer, *args: Any, **kwargs: Any) -> None:
        if self.built:  # building twice would create a second set of weights
            return
        build(self, *args, **kwargs)
        shape = args[0] if args else kwargs.get("input_shape", next(iter(kwargs.values()), None))
        if self._build_input_shape is None:
            self._build_input_shape = _shape_structure(shape) if shape is not None else None
        self.built = True
        self._refresh_cache()

    build_wrapper._fastdense_wrapped = True  # type: ignore[attr-defined]
    return build_wrapper


_JSON_LEAF = (str, int, float, bool, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _JSON_LEAF):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _extra_init_params(cls: type) -> list[str]:
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return []
    return [
        name for name, p in list(params.items())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in _BASE_CONFIG_KEYS
    ]


def _capture_init_args(cls: type, args: tuple, kwargs: dict) -> dict | None:
    """Constructor arguments of a user subclass, for its automatic ``get_config``."""
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    captured: dict[str, Any] = {}
    for index, (name, value) in enumerate(bound.arguments.items()):
        if index == 0:
            continue
        param = bound.signature.parameters[name]
        if param.kind is param.VAR_KEYWORD:
            value = {k: v for k, v in value.items() if k not in _BASE_CONFIG_KEYS and k not in _KERAS2_KWARGS}
            if not _is_plain(value):
                return None
            captured.update(value)
            continue
        if param.kind is param.VAR_POSITIONAL or name in _BASE_CONFIG_KEYS:
            continue
        if not _is_plain(value):
            return None
        captured[name] = list(value) if isinstance(value, tuple) else value
    return captured
