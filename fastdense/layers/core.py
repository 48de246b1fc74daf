"""Dense, Activation and Dropout: the layers of a Keras MLP.

>>> import numpy as np
>>> from fastdense.layers import Dense
>>> layer = Dense(2, activation="relu")
>>> layer.build((None, 2))
>>> layer.set_weights([np.array([[0.5, 0.75], [0.25, 0.5]]), np.zeros(2)])
>>> layer(np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
[[1.0, 1.75], [2.5, 4.25]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fastdense import activations, constraints, initializers, ops, quantizers, regularizers
from fastdense.layers.base import InputSpec, Layer, standardize_shape
from fastdense.saving.serialization import check_number, register_builtin

__all__ = ["Dense", "Activation", "Dropout"]

_ndarray = np.ndarray


def _serialize_or_none(module: Any, obj: Any) -> Any:
    return None if obj is None else module.serialize(obj)


def _get_or_none(module: Any, identifier: Any) -> Any:
    return None if identifier is None else module.get(identifier)


def _positive_int(value: Any, argument: str) -> int:
    message = (
        f"Received an invalid value for `{argument}`, expected a positive integer. "
        f"Received: {argument}={value!r}"
    )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(message)
    try:
        integer = int(value)
    except (ValueError, OverflowError):
        raise ValueError(message) from None
    if integer != value or integer <= 0:
        raise ValueError(message)
    return integer


def _without_shared_ids(config: Any) -> Any:
    """A config without Keras's ``shared_object_id`` entries (ids of objects shared between
    layers when Keras saved them; fastdense keeps a copy per layer)."""
    if isinstance(config, dict):
        return {k: _without_shared_ids(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [_without_shared_ids(v) for v in config]
    return config


@dataclass(frozen=True, slots=True)
class _FastPath:
    """What a Dense call on a plain ndarray needs, prepared once per setting change
    (slots: an attribute read costs what a tuple index does)."""

    dtype: np.dtype                        # inputs of exactly this dtype take the fast path
    op: Callable[..., np.ndarray]          # ops.dense
    use_bias: bool
    activation: Any                        # the op's activation: a name or a fused function
    post: Callable[[np.ndarray], Any] | None   # a Python activation applied after the op


@register_builtin("keras.layers", "Dense")
class Dense(Layer):
    """Densely connected layer: ``output = activation(dot(input, kernel) + bias)``.

    Same constructor as ``keras.layers.Dense`` (Keras 3), plus the Keras 2
    first-layer arguments ``input_shape=``, ``input_dim=``,
    ``batch_input_shape=``, ``batch_size=``.  Inputs of rank > 2 are
    transformed along their last axis: ``(batch, d0, d1) -> (batch, d0, units)``.
    The kernel has shape ``(input_dim, units)`` and the bias ``(units,)``.

    The forward pass is one call of :func:`fastdense.ops.dense` (the fused,
    compiled kernel); calling a built layer on a NumPy array of its dtype and
    input width goes straight to it.

    >>> import numpy as np
    >>> layer = Dense(16, activation="relu", input_shape=(8,))
    >>> layer(np.ones((4, 8), dtype=np.float32)).shape
    (4, 16)
    >>> layer.kernel.shape, layer.bias.shape
    ((8, 16), (16,))
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: Any = None,
        lora_alpha: Any = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ) -> None:
        # quantization (Keras 3 int8 / int4): a quantized dtype policy builds the integer variables
        self._quant: quantizers.QuantizedPolicy | None = None
        if quantizers.is_quantized_policy(kwargs.get("dtype")):
            self._quant = quantizers.read_policy(kwargs["dtype"], quantization_config)
            kwargs["dtype"] = self._quant.source_name
        elif quantization_config is not None:
            quantizers.check_config(quantization_config)   # kept for a later quantize(), as Keras does
        self.quantization_config = _without_shared_ids(quantization_config)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = _positive_int(units, "units")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = _get_or_none(regularizers, kernel_regularizer)
        self.bias_regularizer = _get_or_none(regularizers, bias_regularizer)
        self.kernel_constraint = _get_or_none(constraints, kernel_constraint)
        self.bias_constraint = _get_or_none(constraints, bias_constraint)
        self.input_spec = InputSpec(min_ndim=2)
        self._fast: _FastPath | None = None
        self._packed: tuple | None = None  # (the _values it was made from, kernel for the op)
        self.activation = activation  # resolves and prepares the fused op
        # --- LoRA (issue 13): the low-rank update, merged into the served kernel
        if lora_rank is not None:
            lora_rank = _positive_int(lora_rank, "lora_rank")
        if lora_alpha is not None:
            lora_alpha = check_number("Dense", "lora_alpha", lora_alpha, minimum=0.0, strict=True)
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        self.lora_enabled = False
        # --- end LoRA

    # The activation is resolved once; the op gets it fused when the kernel can.
    @property
    def activation(self) -> Any:
        """The activation function (a callable on NumPy arrays)."""
        return self._activation

    @activation.setter
    def activation(self, identifier: Any) -> None:
        function = activations.get(identifier)
        if activations.is_fused(function):
            # Built-ins go to the op by name (the op caches the name's kernel form).
            name = activations.serialize(function)
            self._op_activation = name if isinstance(name, str) else function
            self._post_activation = None
        else:
            self._op_activation, self._post_activation = "linear", function
        self._activation = function
        self._refresh_cache()

    @property
    def kernel(self) -> np.ndarray:
        """The kernel, shape ``(input_dim, units)`` (read-only; use ``set_weights``)."""
        if not self.built:
            raise AttributeError(f"Dense '{self.name}' has no kernel yet: it is not built")
        values = self._values
        if self._quant is not None:
            kernel = values[self._quantized_kernel_at()]
            if self._quant.mode == "int4":
                kernel = quantizers.unpack_int4(kernel, self.units)   # as Keras: int8 in [-8, 7]
            # LoRA: as Keras, the integers plus the float update, in float32
            return kernel if not self.lora_enabled else kernel.astype(np.float32) + self._lora_delta(values)
        return self._merged_kernel(values) if self.lora_enabled else values[0]

    @property
    def bias(self) -> np.ndarray | None:
        """The bias, shape ``(units,)``, or ``None`` when ``use_bias=False``."""
        if not self.built:
            raise AttributeError(f"Dense '{self.name}' has no bias yet: it is not built")
        return self._bias_of(self._values)

    def _bias_of(self, values: tuple) -> np.ndarray | None:
        """The bias in ``values`` (one read of ``_values``), or None without one."""
        if not self.use_bias:
            return None
        return values[0] if self._quant is not None else values[1]

    def _quantized_kernel_at(self) -> int:
        """Where a quantized Dense keeps its int8 kernel: after the bias and the LoRA matrices
        (Keras lists the trainable variables first)."""
        return self.use_bias + 2 * self.lora_enabled

    def _lora_at(self) -> int:
        """Where lora_kernel_a is (lora_kernel_b follows): after the kernel and bias of a float
        Dense, after the bias of a quantized one."""
        return self.use_bias + (self._quant is None)

    def build(self, input_shape: Any) -> None:
        input_shape = standardize_shape(input_shape, "input_shape")
        if len(input_shape) < 2:
            raise ValueError(
                f"Dense '{self.name}' expects inputs with at least 2 dimensions, got shape {input_shape}"
            )
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"Dense '{self.name}' needs a known last input dimension to build, got shape {input_shape}"
            )
        if self._quant is not None:
            self._add_quantized_weights(input_dim, self._quant)
            self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})
            if self.lora_rank:   # as below: Keras builds LoRA on the quantized kernel too
                self.built = True
                self.enable_lora(self.lora_rank)
            return
        self.add_weight(
            "kernel",
            (input_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.add_weight(
                "bias",
                (self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})
        if self.lora_rank:  # LoRA (issue 13)
            self.built = True
            # without lora_alpha, as Keras 3.15's Dense.build: a built layer's lora_alpha is its
            # rank whatever it was given, and Keras-trained LoRA matrices are scaled by 1 (an .h5
            # file's config may say otherwise; Keras computes with the rank, so fastdense does)
            self.enable_lora(self.lora_rank)

    # ------------------------------------------------------------------ quantization

    def _add_quantized_weights(self, input_dim: int, policy: quantizers.QuantizedPolicy) -> None:
        """The variables of a quantized Dense, in the order of Keras's ``weights``: bias, kernel,
        kernel_scale, then (int4 blocks) kernel_zero and g_idx. Only the bias is trainable, and a
        Keras layer lists its trainable variables first (``Layer.weights``), so the bias leads;
        a .keras file stores them in another order (see _keras_store_values)."""
        n = self.units
        if self.use_bias:
            self.add_weight("bias", (n,), initializer=self.bias_initializer, regularizer=self.bias_regularizer,
                            constraint=self.bias_constraint)
        if policy.mode == "int8":
            self.add_weight("kernel", (input_dim, n), initializer="zeros", trainable=False, dtype="int8")
        else:
            self.add_weight("kernel", (input_dim, (n + 1) // 2), initializer="zeros", trainable=False, dtype="int8")
        groups = -(-input_dim // policy.block_size) if policy.block_size > 0 else 0
        self.add_weight("kernel_scale", (groups, n) if groups else (n,), initializer="ones", trainable=False)
        if groups:
            self.add_weight("kernel_zero", (groups, n), initializer="zeros", trainable=False, dtype="int8")
            # an array initializer (a Constant) rather than a lambda: the layer stays picklable
            self.add_weight("g_idx", (input_dim,), trainable=False,
                            initializer=quantizers.group_index(input_dim, policy.block_size))

    def quantize(self, mode: str | None = None, type_check: bool = True, config: Any = None) -> None:
        """Quantize the built layer's weights as Keras 3's ``Dense.quantize`` does.

        ``mode`` is ``"int8"`` (inputs quantized per row, exact integer products) or
        ``"int4"`` (Keras's default: blocks of 128 input rows with zero points, float inputs);
        ``config`` a Keras ``Int8QuantizationConfig`` / ``Int4QuantizationConfig`` or its config
        dict (``block_size``, ``activation_quantizer``): int4 with ``block_size=-1`` and
        ``activation_quantizer=AbsMaxQuantizer(axis=-1)`` quantizes the inputs per row and runs
        the int8 kernels on the int4 values. See docs/quantization.md.

        >>> import numpy as np
        >>> layer = Dense(2, input_shape=(2,))
        >>> layer.build((None, 2))
        >>> layer.set_weights([np.array([[0.5, 0.75], [0.25, 0.5]]), np.zeros(2)])
        >>> layer.quantize("int8")
        >>> layer.dtype_policy.name, layer.weight_names
        ('int8_from_float32', ['bias', 'kernel', 'kernel_scale'])
        """
        policy = quantizers.layer_quantize_policy(self, Dense, mode, config, type_check)
        values = self._values
        kernel, bias = values[0], (values[1] if self.use_bias else None)
        # LoRA stays as it is: Keras quantizes the frozen kernel alone and adds the float update
        lora = list(values[self._lora_at():self._lora_at() + 2]) if self.lora_enabled else []
        if not np.isfinite(kernel).all():
            raise ValueError(f"Cannot quantize Dense '{self.name}': its kernel holds NaN or inf")
        if policy.mode == "int8":
            q, scale = quantizers.quantize_int8(kernel)
            new = [q, scale]
        else:
            w = quantizers.quantize_int4(kernel, policy.block_size)
            new = [quantizers.pack_int4(w.q), w.scale]
            if w.zero is not None:
                new += [w.zero, quantizers.group_index(kernel.shape[0], w.block_size)]
        specs, self._weight_specs, self._values = self._weight_specs, (), ()
        try:
            self._add_quantized_weights(kernel.shape[0], policy)
            if lora:   # the LoRA matrices go back in after the bias (Keras's order)
                at, nb = self._lora_at(), self.use_bias
                self._weight_specs = self._weight_specs[:nb] + specs[at:at + 2] + self._weight_specs[nb:]
                self._values = self._values[:nb] + values[at:at + 2] + self._values[nb:]
        except Exception:
            self._weight_specs, self._values = specs, values
            raise
        self._quant = policy
        self.quantization_config = policy.config()
        self._swap_values(self._validate_weights(([bias] if bias is not None else []) + lora + new))

    def _quantized_kernel(self, values: tuple) -> Any:
        """The QuantizedKernel for these weights (Keras's variables, packed for the kernels)."""
        policy = self._quant
        at = self._quantized_kernel_at()
        kernel, scale = values[at], values[at + 1]
        zero = values[at + 2] if policy.block_size > 0 else None
        return ops.QuantizedKernel(policy.mode, kernel, scale, zero, policy.block_size, policy.quantize_inputs)

    def _refresh_cache(self) -> None:
        # The fast path skips the generic checks, so enable it only when the
        # generic path would add nothing: built, plain Dense.call, no activity
        # regularizer, and exactly the kernel (and bias) as weights.
        if (
            not self.built
            or type(self).call is not Dense.call
            or self._activity_regularizer is not None
            or len(self._weight_specs) != 1 + self.use_bias + 2 * self.lora_enabled
        ):
            self._fast = None
            return
        self._fast = _FastPath(self._np_dtype, ops.dense, self.use_bias, self._op_activation, self._post_activation)

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        # Fast path: a built layer on an ndarray of its dtype goes straight to the op; the op
        # checks the width, and a mismatch is re-run through the generic path for the
        # layer's own error message.  Everything else was checked at build time.
        fast = self._fast
        if (fast is not None and type(inputs) is _ndarray and inputs.dtype is fast.dtype
                and inputs.ndim > 1 and not args and not kwargs):
            values = self._values  # one read: a consistent (kernel, bias) pair
            packed = self._packed
            kernel = packed[1] if packed is not None and packed[0] is values else self._pack(values)
            try:
                out = fast.op(inputs, kernel, values[1] if fast.use_bias else None, fast.activation)
            except ValueError:
                return Layer.__call__(self, inputs)
            return out if fast.post is None else fast.post(out)
        return Layer.__call__(self, inputs, *args, **kwargs)

    def _pack(self, values: tuple) -> Any:
        """The kernel in values, packed once per set of weights (see ops.pack_kernel).

        Called with one read of ``_values``, so the packed kernel always matches the bias it
        is used with; set_weights replaces ``_values``, which makes the next call re-pack.
        """
        packed = self._packed
        if packed is not None and packed[0] is values:
            return packed[1]
        if self._quant is not None:   # (LoRA on it: added by _call_quantized_lora)
            kernel = self._quantized_kernel(values)
        else:
            kernel = self._merged_kernel(values) if self.lora_enabled else values[0]
            if kernel.dtype == np.float32 and kernel.ndim == 2 and kernel.flags.c_contiguous \
                    and not kernel.flags.writeable and ops.packed_available():
                kernel = ops.PackedKernel(kernel)
        self._packed = (values, kernel)
        return kernel

    def call(self, inputs: np.ndarray) -> np.ndarray:
        values = self._values
        if self._quant is not None and self.lora_enabled:
            return self._call_quantized_lora(inputs, values)
        out = ops.dense(inputs, self._pack(values), self._bias_of(values), self._op_activation)
        post = self._post_activation
        return out if post is None else post(out)

    def _call_quantized_lora(self, inputs: np.ndarray, values: tuple) -> np.ndarray:
        """Keras's quantized call with LoRA: the integer product de-scaled, plus
        ``(lora_alpha / lora_rank) * ((x @ A) @ B)`` on the float inputs, then bias and activation."""
        a, b = values[self._lora_at()], values[self._lora_at() + 1]
        x = np.asarray(inputs, np.float32)
        out = ops.dense(x, self._pack(values), None, "linear")
        out += np.float32(self.lora_alpha / self.lora_rank) * ((x @ a) @ b)
        bias = self._bias_of(values)
        if bias is not None:
            out += bias
        return self._activation(out)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        units = self.units // 2 if activations.halves(self._activation) else self.units
        return tuple(input_shape)[:-1] + (units,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": activations.serialize(self._activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _serialize_or_none(regularizers, self.kernel_regularizer),
                "bias_regularizer": _serialize_or_none(regularizers, self.bias_regularizer),
                "kernel_constraint": _serialize_or_none(constraints, self.kernel_constraint),
                "bias_constraint": _serialize_or_none(constraints, self.bias_constraint),
                "quantization_config": self.quantization_config,
            }
        )
        if self.lora_rank:
            config["lora_rank"] = self.lora_rank
            config["lora_alpha"] = self.lora_alpha
        if self._quant is not None:
            config["dtype"] = self._quant.serialize()
        return config

    # ------------------------------------------------------------------ LoRA (issue 13)
    # Weights in Keras's order: kernel, bias, lora_kernel_a, lora_kernel_b (the kernel becomes
    # non-trainable, so legacy .h5 files list bias, lora_kernel_a, lora_kernel_b, kernel).
    # Calls serve kernel + (lora_alpha / lora_rank) * lora_kernel_a @ lora_kernel_b, merged
    # once per set of weights (by _pack); a .keras file stores that merged kernel and the
    # bias only, as Keras writes it, and loading one sets the LoRA matrices to zeros.

    def enable_lora(self, rank: int, lora_alpha: float | None = None, a_initializer: Any = "he_uniform",
                    b_initializer: Any = "zeros") -> None:
        """Add the LoRA matrices ``lora_kernel_a (input_dim, rank)`` and ``lora_kernel_b (rank, units)``."""
        if self.kernel_constraint:
            raise ValueError(
                "Lora is incompatible with kernel constraints. In order to enable lora on this layer, "
                "remove the `kernel_constraint` argument."
            )
        if not self.built:
            raise ValueError("Cannot enable lora on a layer that isn't yet built.")
        if self.lora_enabled:
            raise ValueError("lora is already enabled. This can only be done once per layer.")
        rank = _positive_int(rank, "rank")
        quantized = self._quant is not None
        input_dim = self._values[self._quantized_kernel_at() if quantized else 0].shape[0]
        self.add_weight("lora_kernel_a", (input_dim, rank), a_initializer, self.kernel_regularizer, dtype="float32")
        self.add_weight("lora_kernel_b", (rank, self.units), b_initializer, self.kernel_regularizer, dtype="float32")
        specs = self._weight_specs
        if quantized:   # after the bias: Keras lists the trainable variables first (the kernel is frozen)
            nb, values = self.use_bias, self._values
            self._weight_specs = specs[:nb] + specs[-2:] + specs[nb:-2]
            self._swap_values(values[:nb] + values[-2:] + values[nb:-2])
        else:
            self._weight_specs = (specs[0]._replace(trainable=False),) + specs[1:]
        self.lora_enabled = True
        self.lora_rank = rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else rank
        self._refresh_cache()

    def _lora_delta(self, values: tuple) -> np.ndarray:
        """``(lora_alpha / lora_rank) * A @ B`` in float32, as Keras adds it to a quantized kernel."""
        a, b = values[self._lora_at()], values[self._lora_at() + 1]
        return np.float32(self.lora_alpha / self.lora_rank) * (a @ b)

    def _merged_quantized(self, values: tuple) -> list[np.ndarray]:
        """The quantized variables after the kernel's position (kernel, kernel_scale, ...) with
        LoRA merged as Keras saves them (``Dense._get_kernel_with_merged_lora``): the float kernel
        Keras computes with, plus the update, quantized again by the layer's own quantizer."""
        policy, at = self._quant, self._quantized_kernel_at()
        assert policy is not None
        kernel, scale = values[at], values[at + 1]
        delta = self._lora_delta(values)
        if policy.mode == "int8":
            return list(quantizers.quantize_int8(kernel.astype(np.float32) / scale + delta))
        q = quantizers.unpack_int4(kernel, self.units)
        if policy.block_size <= 0:
            w = quantizers.quantize_int4(q.astype(np.float32) / scale + delta, -1)
            return [quantizers.pack_int4(w.q), w.scale]
        old = quantizers.Int4Weights(q, scale, values[at + 2], policy.block_size)
        w = quantizers.quantize_int4(quantizers.dequantize_int4(old) + delta, policy.block_size)
        return [quantizers.pack_int4(w.q), w.scale, w.zero, values[at + 3]]

    def _merged_kernel(self, values: tuple) -> np.ndarray:
        """kernel + (lora_alpha / lora_rank) * A @ B, in float64, as a read-only array of the kernel dtype."""
        kernel, a, b = values[0], values[-2], values[-1]
        delta = (self.lora_alpha / self.lora_rank) * (a.astype(np.float64) @ b.astype(np.float64))
        merged = np.ascontiguousarray(kernel + delta, dtype=kernel.dtype)
        merged.flags.writeable = False
        return merged

    def _keras_store_values(self) -> list[np.ndarray]:
        """The arrays Keras keeps in a .keras file for this layer (``Dense.save_own_variables``):
        the kernel (LoRA: merged), then the bias, then a quantized layer's other variables."""
        if self._quant is not None:   # kernel, bias, kernel_scale, ... (LoRA: merged)
            values = self._values
            at = self._quantized_kernel_at()
            rest = self._merged_quantized(values) if self.lora_enabled else list(values[at:])
            return [np.array(v) for v in rest[:1] + list(values[:self.use_bias]) + rest[1:]]
        if not self.lora_enabled:
            return self.get_weights()
        values = self._values
        return [np.array(self._merged_kernel(values))] + ([np.array(values[1])] if self.use_bias else [])

    def _weights_from_keras_store(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """``set_weights`` arguments for the arrays of a .keras file (LoRA matrices zeroed, as Keras)."""
        if self._quant is not None:
            # the store's kernel, bias, ... back to weights order bias, (LoRA zeros,) kernel, ...;
            # a wrong count is left to set_weights, which names the weights it expects
            arrays = list(arrays)
            if self.use_bias and len(arrays) > 1:
                arrays = arrays[1:2] + arrays[:1] + arrays[2:]
            if self.lora_enabled:
                at = self._lora_at()
                zeros = [np.zeros_like(v) for v in self._values[at:at + 2]]
                arrays = arrays[:self.use_bias] + zeros + arrays[self.use_bias:]
            return arrays
        if not self.lora_enabled or len(arrays) != 1 + self.use_bias:
            return arrays
        a, b = self._values[-2], self._values[-1]
        return list(arrays) + [np.zeros(a.shape, a.dtype), np.zeros(b.shape, b.dtype)]
    # ------------------------------------------------------------------ end LoRA


@register_builtin("keras.layers", "Activation")
class Activation(Layer):
    """Applies an activation function: ``Activation("relu")(x)``.

    >>> import numpy as np
    >>> Activation("relu")(np.array([[-1.0, 2.0]])).tolist()
    [[0.0, 2.0]]
    """

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.built = True

    def call(self, inputs: np.ndarray) -> np.ndarray:
        return self.activation(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        if activations.halves(self.activation) and input_shape and input_shape[-1] is not None:
            return tuple(input_shape)[:-1] + (input_shape[-1] // 2,)
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config


@register_builtin("keras.layers", "Dropout")
class Dropout(Layer):
    """Dropout: the identity at inference (the default, ``training=False``).

    With ``training=True`` it zeroes a fraction ``rate`` of the inputs (drawn
    from a generator seeded with ``seed``) and scales the rest by
    ``1 / (1 - rate)``, like Keras.

    >>> import numpy as np
    >>> Dropout(0.5)(np.ones((1, 3))).tolist()
    [[1.0, 1.0, 1.0]]
    """

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0 <= rate <= 1:
            raise ValueError(
                "Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                f"Received: rate={rate!r}"
            )
        super().__init__(**kwargs)
        self.rate = rate
        self.noise_shape = None if noise_shape is None else standardize_shape(noise_shape, "noise_shape")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.built = True

    def call(self, inputs: np.ndarray, training: bool | None = None) -> np.ndarray:
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return np.zeros_like(inputs)
        shape = inputs.shape
        if self.noise_shape is not None:
            shape = tuple(d if n is None else n for d, n in zip(inputs.shape, self.noise_shape))
        keep = self._rng.random(shape) >= self.rate
        return (inputs * keep / (1.0 - self.rate)).astype(inputs.dtype, copy=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "rate": self.rate,
            "seed": self.seed,
            "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
        })
        return config

