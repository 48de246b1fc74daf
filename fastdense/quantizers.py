"""Keras 3 weight and input quantizers in NumPy, and the integer reference of a quantized Dense.

Everything here follows Keras 3.15 (``keras/src/quantizers/quantizers.py`` and
``keras/src/layers/core/dense.py``) value for value: the same float32 arithmetic, the same
rounding (half to even), the same epsilon (1e-7) and the same clipping, so a weight quantized
here is the weight ``model.quantize(...)`` stores, and an input row is quantized to the integers
Keras multiplies.

The modes Keras 3.15 writes for Dense:

- ``"int8"``: int8 kernel ``q = clip(round(w * kernel_scale), -127, 127)`` with one
  ``kernel_scale = 127 / (max|w[:, j]| + 1e-7)`` per output unit; inputs quantized per row the
  same way (``AbsMaxQuantizer``); ``y = float32(xq @ q) / (kernel_scale * inputs_scale) + bias``.
- ``"int4"`` with ``block_size=None`` or ``-1`` (policy ``"int4/-1"``): int4 kernel in [-8, 7]
  with one scale ``7 / (max|w[:, j]| + 1e-7)`` per unit; inputs stay float (Keras quantizes them
  only when a config names an activation quantizer); ``y = (x @ q) / kernel_scale + bias``.
- ``"int4"`` with a block size (Keras's default is 128, policy ``"int4/128"``): per group of
  ``block_size`` input features and per unit, asymmetric: ``scale = (max - min + 1e-7) / 15``,
  ``zero = clip(round(-min / scale) - 8, -8, 7)``, ``q = clip(round(w / scale) + zero, -8, 7)``;
  the kernel is ``(q - zero) * scale`` in float32 and ``y = x @ kernel + bias``; inputs stay float.

int4 kernels are stored packed two per byte along the output axis (``pack_int4(q, axis=-1)``):
column ``2c`` in the low nibble of byte ``c``, column ``2c + 1`` in the high nibble.

>>> import numpy as np
>>> q, scale = quantize_int8(np.array([[0.5, -1.0], [0.25, 0.5]], np.float32))
>>> q.tolist(), scale.tolist()
([[127, -127], [63, 63]], [253.99993896484375, 126.99998474121094])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from fastdense.saving.serialization import deserialize_dtype

EPSILON = 1e-7  # keras.backend.epsilon(), the quantizers' default
INT8_RANGE = (-127, 127)
INT4_RANGE = (-8, 7)
INT4_BLOCK_SIZE = 128  # Int4QuantizationConfig's default block_size


def abs_max_quantize(
    x: np.ndarray, axis: int, value_range: tuple[int, int] = INT8_RANGE, epsilon: float = EPSILON
) -> tuple[np.ndarray, np.ndarray]:
    """``(q, scale)`` as Keras's ``abs_max_quantize``: ``scale = hi / (max|x| + eps)`` along ``axis``
    (kept as a size-1 axis), ``q = clip(round(x * scale), lo, hi)`` as int8; all in float32."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = value_range
    amax = np.max(np.abs(x), axis=axis, keepdims=True)
    scale = np.float32(hi) / (amax + np.float32(epsilon))
    q = np.clip(np.round(x * scale), lo, hi).astype(np.int8)
    return q, scale.astype(np.float32)


def quantize_int8(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q, kernel_scale)`` for ``Dense.quantize("int8")``: int8 ``q`` shaped like the
    ``(input_dim, units)`` kernel and one float32 scale per unit."""
    kernel = _kernel_2d(kernel)
    q, scale = abs_max_quantize(kernel, axis=0, value_range=INT8_RANGE)
    return q, scale[0]


def quantize_inputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(xq, inputs_scale)``: each row of ``x`` quantized to int8 by its own abs-max, as the
    int8 Dense layer's ``AbsMaxQuantizer`` does (``inputs_scale`` shaped ``(..., 1)``)."""
    return abs_max_quantize(x, axis=-1, value_range=INT8_RANGE)


class Int4Weights(NamedTuple):
    """An int4-quantized kernel as Keras stores it (before packing)."""

    q: np.ndarray  # int8 in [-8, 7], (input_dim, units)
    scale: np.ndarray  # float32: (units,) per unit, or (groups, units) per block
    zero: np.ndarray | None  # int8 (groups, units) for blocks, None per unit
    block_size: int  # -1: one scale per unit


def quantize_int4(kernel: np.ndarray, block_size: int | None = INT4_BLOCK_SIZE) -> Int4Weights:
    """The int4 weights of ``Dense.quantize("int4")``: per block of ``block_size`` input features
    (asymmetric, with zero points) or, for ``block_size`` None or -1, one symmetric scale per unit."""
    kernel = _kernel_2d(kernel)
    if block_size is None or block_size == -1:
        q, scale = abs_max_quantize(kernel, axis=0, value_range=INT4_RANGE)
        return Int4Weights(q, scale[0], None, -1)
    if not isinstance(block_size, (int, np.integer)) or block_size <= 0:
        raise ValueError(f"block_size must be None, -1 or a positive integer, got {block_size!r}")
    k, n = kernel.shape
    groups = -(-k // block_size)
    # Keras pads the last group with zero rows, so zeros take part in its min and max.
    padded = np.zeros((groups * block_size, n), np.float32)
    padded[:k] = kernel
    blocks = padded.reshape(groups, block_size, n)
    lo, hi = INT4_RANGE
    wmin = blocks.min(axis=1, keepdims=True)
    wmax = blocks.max(axis=1, keepdims=True)
    scale = (wmax - wmin + np.float32(EPSILON)) / np.float32(hi - lo)
    zero = np.clip(np.round(-wmin / scale) + np.float32(lo), lo, hi)
    q = np.clip(np.round(blocks / scale) + zero, lo, hi).astype(np.int8)
    return Int4Weights(q.reshape(-1, n)[:k], scale[:, 0].astype(np.float32), zero[:, 0].astype(np.int8),
                       int(block_size))


def group_index(input_dim: int, block_size: int) -> np.ndarray:
    """Keras's ``g_idx`` weight: the block of each input feature, as float32."""
    return (np.arange(input_dim) // block_size).astype(np.float32)


def dequantize_int4(w: Int4Weights) -> np.ndarray:
    """The float32 kernel Keras multiplies by: ``(q - zero) * scale`` per block, or ``q`` per unit
    (Keras divides the product by the scale afterwards in that mode)."""
    if w.zero is None:
        return w.q.astype(np.float32)
    rows = np.arange(w.q.shape[0]) // w.block_size
    return (w.q.astype(np.float32) - w.zero[rows].astype(np.float32)) * w.scale[rows]


def pack_int4(q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Two int4 values per int8 byte along ``axis`` (odd lengths padded with a zero):
    element ``2c`` in the low nibble of byte ``c``, element ``2c + 1`` in the high nibble."""
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"pack_int4 expects int8 values in [-8, 7], got dtype {q.dtype}")
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError(f"pack_int4 expects values in [-8, 7], got [{q.min()}, {q.max()}]")
    q = np.moveaxis(q, axis, 0)
    if q.shape[0] % 2:
        q = np.concatenate([q, np.zeros((1,) + q.shape[1:], np.int8)])
    u = q.view(np.uint8) & 0x0F
    packed = (u[0::2] | (u[1::2] << 4)).view(np.int8)
    return np.moveaxis(packed, 0, axis)


def unpack_int4(packed: np.ndarray, length: int, axis: int = -1) -> np.ndarray:
    """The int8 values in [-8, 7] that ``pack_int4`` packed; ``length`` is the unpacked length."""
    packed = np.asarray(packed)
    if packed.dtype not in (np.int8, np.uint8):
        raise TypeError(f"unpack_int4 expects int8 or uint8 bytes, got dtype {packed.dtype}")
    p = np.moveaxis(packed.view(np.uint8), axis, 0)
    if not 2 * p.shape[0] - 1 <= length <= 2 * p.shape[0]:
        raise ValueError(f"unpack_int4: {p.shape[0]} bytes hold {2 * p.shape[0] - 1} or "
                         f"{2 * p.shape[0]} values, got length {length}")
    nibbles = np.stack([p & 0x0F, p >> 4], axis=1).reshape((-1,) + p.shape[1:])[:length]
    values = ((nibbles ^ 8).astype(np.int8) - np.int8(8)).astype(np.int8)
    return np.moveaxis(values, 0, axis)


def int_matmul(xq: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``xq @ q`` exactly, in int64: the integer reference every kernel path must equal."""
    return np.asarray(xq, np.int64) @ np.asarray(q, np.int64)


def int8_dense_reference(
    x: np.ndarray, q: np.ndarray, kernel_scale: np.ndarray, bias: np.ndarray | None = None, quantize: bool = True
) -> np.ndarray:
    """The int8 Dense layer before its activation, as Keras computes it: the integer product
    exact, then ``float32(acc) / (kernel_scale * inputs_scale)`` and ``+ bias`` in float32.
    ``quantize=False`` is Keras's int8 layer without an input quantizer (float inputs)."""
    x = np.asarray(x, np.float32)
    kernel_scale = np.asarray(kernel_scale, np.float32)
    if quantize:
        xq, inputs_scale = quantize_inputs(x)
        y = int_matmul(xq, q).astype(np.float32) / (kernel_scale * inputs_scale)
    else:
        y = (x.astype(np.float64) @ q.astype(np.float64)).astype(np.float32) / kernel_scale
    return y if bias is None else y + np.asarray(bias, np.float32)


def int4_dense_reference(x: np.ndarray, w: Int4Weights, bias: np.ndarray | None = None) -> np.ndarray:
    """The int4 Dense layer (inputs float, as Keras's default) before its activation: the
    float32 kernel Keras rebuilds, multiplied in float64, then de-scaled and biased in float32."""
    y = (np.asarray(x, np.float64) @ dequantize_int4(w).astype(np.float64)).astype(np.float32)
    if w.zero is None:
        y = y / w.scale
    return y if bias is None else y + np.asarray(bias, np.float32)


def _kernel_2d(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2:
        raise ValueError(f"a Dense kernel has shape (input_dim, units), got shape {kernel.shape}")
    return kernel


# --------------------------------------------------------------------------- Keras policies and configs
#
# A quantized Dense layer says how it is quantized twice, as Keras writes it: its dtype policy
# ("int8_from_float32": QuantizedDTypePolicy; "int4/128_from_float32": Int4DTypePolicy) and its
# quantization_config (Int8QuantizationConfig / Int4QuantizationConfig, naming the input
# quantizer). QuantizedPolicy is the one record both are read into.


class QuantizedPolicy(NamedTuple):
    """A Dense layer's quantization, as its Keras dtype policy and quantization_config say."""

    mode: str  # "int8" or "int4"
    block_size: int = -1  # int4: input rows per scale block; -1 one scale per unit
    quantize_inputs: bool = True  # inputs quantized per row (Keras's int8 default)
    source_name: str = "float32"  # the float policy the layer was quantized from

    def __repr__(self) -> str:
        kind = "QuantizedDTypePolicy" if self.mode == "int8" else "Int4DTypePolicy"
        return f'<{kind} "{self.name}">'

    @property
    def name(self) -> str:
        """Keras's policy name: ``"int8_from_float32"``, ``"int4/128_from_float32"``."""
        mode = self.mode if self.mode == "int8" else f"int4/{self.block_size}"
        return f"{mode}_from_{self.source_name}"

    @property
    def quantization_mode(self) -> str:
        return self.mode

    @property
    def compute_dtype(self) -> str:
        return self.source_name

    @property
    def variable_dtype(self) -> str:
        return self.source_name

    def serialize(self) -> dict:
        """The layer's ``dtype`` entry as Keras 3.15 writes it."""
        if self.mode == "int8":
            class_name, mode = "QuantizedDTypePolicy", "int8"
        else:
            class_name, mode = "Int4DTypePolicy", f"int4/{self.block_size}"
        return {"module": "keras.dtype_policies", "class_name": class_name,
                "config": {"mode": mode, "source_name": self.source_name}, "registered_name": None}

    def config(self) -> dict:
        """The layer's ``quantization_config`` entry as Keras 3.15 writes it."""
        inputs = _ABS_MAX_CONFIG if self.quantize_inputs else None
        if self.mode == "int8":
            inner: dict = {"weight_quantizer": None, "activation_quantizer": inputs}
            class_name = "Int8QuantizationConfig"
        else:
            inner = {"weight_quantizer": None, "activation_quantizer": inputs,
                     "block_size": self.block_size}
            class_name = "Int4QuantizationConfig"
        return {"module": "keras.quantizers", "class_name": class_name, "config": inner, "registered_name": None}


_ABS_MAX_CONFIG = {"module": "keras.quantizers", "class_name": "AbsMaxQuantizer",
                   "config": {"value_range": [-127, 127], "epsilon": EPSILON, "output_dtype": "int8"},
                   "registered_name": None}
_POLICY_CLASSES = ("QuantizedDTypePolicy", "Int4DTypePolicy")


def is_quantized_policy(value: Any) -> bool:
    """True for a Keras quantized dtype policy: its dict, or a name such as ``"int8_from_float32"``."""
    if isinstance(value, QuantizedPolicy):
        return True
    if isinstance(value, Mapping):
        return value.get("class_name") in _POLICY_CLASSES or value.get("class_name") == "QuantizedFloat8DTypePolicy"
    return isinstance(value, str) and value.startswith(("int8", "int4", "float8", "gptq", "awq"))


def read_policy(dtype: Any, quantization_config: Any = None) -> QuantizedPolicy:
    """The QuantizedPolicy of a layer config's ``dtype`` (a quantized policy dict or name) and
    ``quantization_config`` (a Keras config dict or None, which means Keras's defaults)."""
    if isinstance(dtype, QuantizedPolicy):
        mode, source = dtype.name.split("_from_")
    elif isinstance(dtype, Mapping):
        inner = dtype.get("config")
        if dtype.get("class_name") not in _POLICY_CLASSES or not isinstance(inner, Mapping):
            raise ValueError(f"Unsupported quantized dtype policy {dict(dtype)!r}: fastdense reads "
                             "QuantizedDTypePolicy (int8) and Int4DTypePolicy (int4/<block_size>)")
        mode, source = inner.get("mode"), inner.get("source_name", "float32")
    elif isinstance(dtype, str) and "_from_" in dtype:
        mode, source = dtype.split("_from_", 1)
    else:
        raise ValueError(f"Could not interpret quantized dtype policy {dtype!r}: expected e.g. "
                         "'int8_from_float32' or 'int4/128_from_float32'")
    try:   # (inside load_model(path, dtype=...) a 16-bit source reads as the serving dtype)
        float_source = deserialize_dtype(source)
    except ValueError:
        float_source = None
    if float_source != "float32":
        raise ValueError(f"Quantized dtype policy {mode!r} from {source!r} is not supported: "
                         "fastdense runs quantized layers from float32 only")
    source = float_source
    if mode == "int8":
        block = -1
    elif isinstance(mode, str) and mode.startswith("int4/"):
        try:
            block = int(mode.split("/", 1)[1])
        except ValueError:
            block = 0
        if block < -1 or block == 0:
            raise ValueError(f"Invalid int4 dtype policy mode {mode!r}: expected 'int4/<block_size>' with "
                             "block_size -1 or a positive integer")
    else:
        raise ValueError(f"Quantization mode {mode!r} is not supported: fastdense runs 'int8' and "
                         "'int4/<block_size>' (not float8, gptq or awq)")
    base = "int8" if mode == "int8" else "int4"
    return QuantizedPolicy(base, block, _read_config(base, block, quantization_config), source)


def config_dict(config: Any) -> Any:
    """A quantization config as Keras serializes it: None and dicts as they are, a Keras
    ``Int8QuantizationConfig`` / ``Int4QuantizationConfig`` object (anything with ``get_config``)
    as ``{"class_name": its class name, "config": config.get_config()}``."""
    if config is None or isinstance(config, Mapping):
        return config
    get_config = getattr(config, "get_config", None)
    if not callable(get_config):
        raise ValueError("quantization config must be None, a Keras Int8QuantizationConfig / "
                         f"Int4QuantizationConfig or its config dict, got {type(config).__name__}")
    return {"class_name": type(config).__name__, "config": dict(get_config())}


def quantize_policy(mode: str, config: Any = None) -> QuantizedPolicy:
    """The policy a float32 layer's ``quantize(mode, config=config)`` gives it (``mode`` "int8" or
    "int4"; ``config`` as :func:`config_dict` takes it). int4 takes the config's ``block_size``,
    and Keras's default 128 without a config (what ``Model.quantize("int4")`` passes to each
    layer: ``Int4QuantizationConfig()``)."""
    config = config_dict(config)
    if mode == "int4":
        inner = config.get("config") if isinstance(config, Mapping) else None
        block = inner.get("block_size") if isinstance(inner, Mapping) else None
        # Keras reads a config without block_size (or block_size None) as one scale per unit
        mode = f"int4/{INT4_BLOCK_SIZE if config is None else -1 if block is None else block}"
    return read_policy(f"{mode}_from_float32", config)


def layer_quantize_policy(layer: Any, owner: type, mode: Any, config: Any, type_check: bool) -> QuantizedPolicy:
    """The checks that open ``quantize`` on each quantizable layer class ``owner`` (Dense,
    EinsumDense, Embedding), as Keras's do, then the policy it takes: subclasses refused with
    NotImplementedError when ``type_check`` (Model.quantize warns and goes on), then ValueError
    for a layer not built, already quantized, not float32, or a mode other than int8 / int4."""
    kind = owner.__name__
    if type_check and type(layer) is not owner:
        raise NotImplementedError(f"{type(layer).__name__} does not support quantize(); only {kind} does")
    if not layer.built:
        raise ValueError(f"Cannot quantize {kind} '{layer.name}': it is not built yet")
    if layer._quant is not None:
        raise ValueError(f"{kind} '{layer.name}' is already quantized with dtype_policy="
                         f"'{layer._quant.name}'; quantize the float model instead")
    if layer.dtype != "float32":
        raise ValueError(f"{kind} '{layer.name}' has dtype {layer.dtype!r}; fastdense quantizes float32 layers")
    if mode not in ("int8", "int4"):
        raise ValueError(f"Invalid quantization mode for {kind} '{layer.name}': expected 'int8' or 'int4', "
                         f"got {mode!r}")
    return quantize_policy(mode, config)


def check_config(config: Any) -> str:
    """The mode (``"int8"`` / ``"int4"``) of a Keras quantization config dict, after checking it
    is one fastdense runs; ValueError otherwise."""
    names = {"Int8QuantizationConfig": "int8", "Int4QuantizationConfig": "int4"}
    mode = names.get(config.get("class_name")) if isinstance(config, Mapping) else None
    inner = config.get("config") if isinstance(config, Mapping) else None
    if mode is None or not isinstance(inner, Mapping):
        raise ValueError("quantization_config must be None or a Keras Int8QuantizationConfig / "
                         f"Int4QuantizationConfig config dict, got {config!r}")
    block = inner.get("block_size")
    _read_config(mode, -1 if mode == "int8" or block is None else block, config)
    return mode


def _read_config(mode: str, block: int, config: Any) -> bool:
    """Whether the layer quantizes its inputs, from its quantization_config (None: Keras's
    default for the mode: int8 yes, int4 no)."""
    if config is None:
        return mode == "int8"
    expected = "Int8QuantizationConfig" if mode == "int8" else "Int4QuantizationConfig"
    inner = config.get("config") if isinstance(config, Mapping) else None
    if not isinstance(config, Mapping) or config.get("class_name") != expected or not isinstance(inner, Mapping):
        raise ValueError(f"A {mode} layer needs quantization_config None or a Keras "
                         f"{expected} config, got {config!r}")
    config_block = inner.get("block_size")
    if mode == "int4" and (-1 if config_block is None else config_block) != block:
        raise ValueError(f"quantization_config block_size {config_block!r} contradicts the dtype "
                         f"policy's int4/{block}")
    activation = inner.get("activation_quantizer")
    if activation is None:
        return False
    if not isinstance(activation, Mapping) or activation.get("class_name") != "AbsMaxQuantizer":
        raise ValueError(f"Unsupported activation_quantizer {activation!r}: fastdense runs Keras's "
                         "AbsMaxQuantizer (per row, value_range (-127, 127)) or none")
    settings = activation.get("config") or {}
    value_range = list(settings.get("value_range", [-127, 127]))
    axis = settings.get("axis", None)
    if value_range != [-127, 127] or float(settings.get("epsilon", EPSILON)) != EPSILON \
            or settings.get("output_dtype", "int8") != "int8" or axis not in (None, -1, [-1], (-1,)):
        raise ValueError(f"Unsupported AbsMaxQuantizer settings {dict(settings)!r}: fastdense runs "
                         "value_range (-127, 127), epsilon 1e-7, output_dtype int8, per row")
    if mode == "int4" and block != -1:
        raise ValueError("Keras refuses an activation quantizer with int4 blocks (block_size > 0); "
                         f"got one with int4/{block}")
    return True
