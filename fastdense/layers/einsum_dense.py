"""EinsumDense for the equations that are a Dense on several axes, run by the fused kernel.

An equation qualifies when the input is ``free axes + contracted axes``, the output is
``the same free axes + output axes``, and the kernel holds the contracted and output axes
(in any order): ``ab,bc->ac``, ``abc,cd->abd``, ``...b,bc->...c``, ``abc,cde->abde``
(a multi-head projection), ``abcd,cde->abe``. The kernel is rearranged once per set of
weights into a ``(contracted, output)`` matrix and every call is one :func:`fastdense.ops.dense`.
Other equations (an axis in input, kernel and output at once, a transposed output, an
ellipsis on the right) raise ``ValueError`` naming the equation.

>>> import numpy as np
>>> from fastdense.layers import EinsumDense
>>> layer = EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d")
>>> layer(np.ones((2, 3, 5), np.float32)).shape
(2, 3, 4)
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import numpy as np

from fastdense import activations, constraints, initializers, ops, quantizers, regularizers
from fastdense.layers.base import InputSpec, Layer
from fastdense.layers.core import _get_or_none, _serialize_or_none, _without_shared_ids
from fastdense.saving.serialization import register_builtin

__all__ = ["EinsumDense", "EinsumPlan", "analyze_equation"]


class EinsumPlan(NamedTuple):
    """How one EinsumDense equation maps onto a Dense, for one input shape."""

    kernel_shape: tuple[int, ...]
    bias_shape: tuple[int, ...] | None
    output_shape: tuple             # full output shape, batch included
    contracted: int                 # trailing input axes that are summed over
    kernel_order: tuple[int, ...]   # kernel axes as (contracted in input order, output in output order)
    out_axes: int                   # trailing output axes the kernel makes
    fused_bias: bool                # the bias varies along the output axes only


_PLAIN = re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$")
_LEFT = re.compile(r"^\.\.\.([a-zA-Z]+),([a-zA-Z]+)->\.\.\.([a-zA-Z]+)$")


def _unsupported(equation: str, why: str) -> ValueError:
    return ValueError(
        f"EinsumDense equation {equation!r} is not supported by fastdense: {why}. Supported: a Dense "
        "on trailing axes, input 'free + contracted' and output 'free + new' axes "
        "(e.g. 'ab,bc->ac', 'abc,cd->abd', '...b,bc->...c', 'abc,cde->abde')"
    )


def analyze_equation(equation: str, bias_axes: str | None, input_shape: tuple,
                     partial_output_shape: tuple) -> EinsumPlan:
    """The kernel and bias shapes (Keras's rules) and the Dense form of ``equation``."""
    if not isinstance(equation, str):
        raise ValueError(f"EinsumDense expects the equation as a string, got {equation!r}")
    text = equation.replace(" ", "")
    left = _LEFT.match(text)
    match = left or _PLAIN.match(text)
    if match is None:
        if "..." in text and re.match(r"^[a-zA-Z.]+,[a-zA-Z]+->[a-zA-Z.]+$", text):
            raise _unsupported(equation, "an ellipsis that is not on the left of input and output")
        raise ValueError(
            f"Invalid einsum equation '{equation}'. Equations must be in the form "
            "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]...."
        )
    in_spec, w_spec, out_spec = match.groups()
    for spec in (in_spec, w_spec, out_spec):
        if len(set(spec)) != len(spec):
            raise _unsupported(equation, f"an axis appears twice in {spec!r}")
    rank = len(input_shape)
    elided = rank - len(in_spec)
    if (left is None and elided != 0) or elided < 0:
        raise ValueError(
            f"EinsumDense equation {equation!r} expects inputs of rank {len(in_spec)}"
            f"{' or more' if left else ''}, got shape {tuple(input_shape)}"
        )
    partial = list(partial_output_shape)
    expected_partial = len(out_spec) if left else len(out_spec) - 1
    if len(partial) != expected_partial:
        raise ValueError(
            f"EinsumDense equation {equation!r} expects output_shape with {expected_partial} entries, "
            f"got {tuple(partial_output_shape)}"
        )
    if left:
        full = [input_shape[0]] + list(input_shape[1:elided]) + partial
        out_size = {d: full[elided + i] for i, d in enumerate(out_spec)}
        in_size = {d: input_shape[elided + i] for i, d in enumerate(in_spec)}
    else:
        full = [input_shape[0]] + partial
        out_size = {d: full[i] for i, d in enumerate(out_spec)}
        in_size = {d: input_shape[i] for i, d in enumerate(in_spec)}
    for d in in_spec:
        if d in out_size and out_size[d] is not None and out_size[d] != in_size[d]:
            raise ValueError(
                f"Input shape and output shape do not match at shared dimension '{d}'. "
                f"Input shape is {in_size[d]}, and output shape is {out_size[d]}."
            )
    for d in out_spec:
        if d not in in_spec and d not in w_spec:
            raise ValueError(
                f"Dimension '{d}' was specified in the output '{out_spec}' but has no corresponding dim in "
                f"the input spec '{in_spec}' or weight spec '{w_spec}'"
            )
    kernel_shape = []
    for d in w_spec:
        if d in out_size:
            kernel_shape.append(out_size[d])
        elif d in in_size:
            kernel_shape.append(in_size[d])
        else:
            raise ValueError(
                f"Weight dimension '{d}' did not have a match in either the input spec '{in_spec}' or the "
                f"output spec '{out_spec}'. For this layer, the weight must be fully specified."
            )
    bias_shape = None
    fused_bias = True
    if bias_axes is not None:
        for d in bias_axes:
            if d not in out_spec:
                raise ValueError(f"Bias dimension '{d}' was requested, but is not part of the output spec '{out_spec}'")
        first = min(out_spec.find(d) for d in bias_axes)
        bias_shape = tuple(out_size[d] if d in bias_axes else 1 for d in out_spec[first:])

    # The Dense form: input = free + contracted, output = free + new, kernel = contracted + new.
    contracted = [d for d in in_spec if d in w_spec and d not in out_spec]
    new = [d for d in out_spec if d in w_spec and d not in in_spec]
    free = [d for d in in_spec if d in out_spec and d not in w_spec]
    if any(d in in_spec and d in out_spec for d in w_spec):
        raise _unsupported(equation, "an axis is in the input, the kernel and the output at once")
    if [d for d in in_spec if d not in free and d not in contracted]:
        raise _unsupported(equation, "an input axis is summed over without a kernel axis")
    if list(in_spec) != free + contracted:
        raise _unsupported(equation, "the contracted axes are not the input's last axes")
    if list(out_spec) != free + new:
        raise _unsupported(equation, "the output is not the input's free axes followed by the new axes")
    if bias_axes is not None:
        fused_bias = all(d in new for d in bias_axes)
    order = tuple(w_spec.index(d) for d in contracted + new)
    if any(s is None for s in kernel_shape):
        raise ValueError(
            f"EinsumDense equation {equation!r} needs every kernel size known, got kernel shape "
            f"{tuple(kernel_shape)} from inputs {tuple(input_shape)} and output_shape {tuple(partial_output_shape)}"
        )
    return EinsumPlan(tuple(kernel_shape), bias_shape, tuple(full), len(contracted), order, len(new), fused_bias)


@register_builtin("keras.layers", "EinsumDense")
class EinsumDense(Layer):
    """A Dense whose kernel spans several axes, written as an einsum equation (Keras 3).

    ``output_shape`` gives the sizes of the output axes after the batch axis (those the
    ellipsis covers are left out); ``bias_axes`` names the output axes the bias varies along.
    Weights: ``kernel`` (the equation's kernel shape) and ``bias`` (if ``bias_axes``).

    >>> import numpy as np
    >>> layer = EinsumDense("ab,bc->ac", output_shape=2)
    >>> layer.build((None, 3))
    >>> layer.set_weights([np.ones((3, 2))])
    >>> layer(np.array([[1.0, 2.0, 3.0]])).tolist()
    [[6.0, 6.0]]
    """

    def __init__(
        self,
        equation: str,
        output_shape: Any,
        activation: Any = None,
        bias_axes: str | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        lora_rank: Any = None,
        lora_alpha: Any = None,
        gptq_unpacked_column_size: Any = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ) -> None:
        if lora_rank is not None:
            raise ValueError(
                f"fastdense EinsumDense does not support LoRA; expected lora_rank=None, got lora_rank={lora_rank!r}"
            )
        if gptq_unpacked_column_size is not None:
            raise ValueError("fastdense EinsumDense does not support GPTQ; expected gptq_unpacked_column_size=None, "
                             f"got {gptq_unpacked_column_size!r}")
        # quantization (Keras 3 int8 / int4), read as Dense reads it
        self._quant: quantizers.QuantizedPolicy | None = None
        if quantizers.is_quantized_policy(kwargs.get("dtype")):
            self._quant = quantizers.read_policy(kwargs["dtype"], quantization_config)
            kwargs["dtype"] = self._quant.source_name
        elif quantization_config is not None:
            quantizers.check_config(quantization_config)
        self.quantization_config = _without_shared_ids(quantization_config)
        super().__init__(**kwargs)
        if not isinstance(equation, str):
            raise ValueError(f"EinsumDense expects the equation as a string, got {equation!r}")
        if bias_axes is not None and not isinstance(bias_axes, str):
            raise ValueError(f"EinsumDense expects bias_axes as a string of axis letters, got {bias_axes!r}")
        self.equation = equation
        if isinstance(output_shape, (int, np.integer)) and not isinstance(output_shape, bool):
            self.partial_output_shape: tuple = (int(output_shape),)
        else:
            try:
                self.partial_output_shape = tuple(None if d is None else int(d) for d in output_shape)
            except (TypeError, ValueError):
                raise ValueError(
                    f"EinsumDense expects output_shape to be an int or a tuple of ints/None, got {output_shape!r}"
                ) from None
        self.bias_axes = bias_axes
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = _get_or_none(regularizers, kernel_regularizer)
        self.bias_regularizer = _get_or_none(regularizers, bias_regularizer)
        self.kernel_constraint = _get_or_none(constraints, kernel_constraint)
        self.bias_constraint = _get_or_none(constraints, bias_constraint)
        self._einsum: EinsumPlan | None = None
        self._matrix_cache: tuple | None = None
        self.activation = activations.get(activation)

    def build(self, input_shape: Any) -> None:
        plan = analyze_equation(self.equation, self.bias_axes, tuple(input_shape), self.partial_output_shape)
        self._einsum = plan
        if self._quant is not None:
            self._add_quantized_weights(plan, self._quant)
        else:
            self.add_weight("kernel", plan.kernel_shape, self.kernel_initializer, self.kernel_regularizer,
                            self.kernel_constraint)
            if plan.bias_shape is not None:
                self.add_weight("bias", plan.bias_shape, self.bias_initializer, self.bias_regularizer,
                                self.bias_constraint)
        self.input_spec = InputSpec(ndim=len(input_shape))

    # ------------------------------------------------------------------ quantization
    # Keras 3.15's variables: int8 keeps the kernel's shape, with one scale per output unit shaped
    # to broadcast over the output ((1,) * free axes + new axes); int4 packs the kernel reshaped
    # (a plain reshape, in the kernel's own axis order) to (contracted, new) rows x columns, as
    # Keras does, with Dense's int4 scales (per column, or per block of rows with zero points).

    def _add_quantized_weights(self, plan: EinsumPlan, policy: quantizers.QuantizedPolicy) -> None:
        """Bias (trainable, so first, as Keras lists weights), kernel, kernel_scale, then (int4
        blocks) kernel_zero and g_idx."""
        rows, cols = _flat_sizes(plan)
        if plan.bias_shape is not None:
            self.add_weight("bias", plan.bias_shape, self.bias_initializer, self.bias_regularizer,
                            self.bias_constraint)
        if policy.mode == "int8":
            self.add_weight("kernel", plan.kernel_shape, initializer="zeros", trainable=False, dtype="int8")
            self.add_weight("kernel_scale", _int8_scale_shape(plan), initializer="ones", trainable=False)
            return
        self.add_weight("kernel", (rows, (cols + 1) // 2), initializer="zeros", trainable=False, dtype="int8")
        groups = -(-rows // policy.block_size) if policy.block_size > 0 else 0
        self.add_weight("kernel_scale", (groups, cols) if groups else (cols,), initializer="ones", trainable=False)
        if groups:
            block = policy.block_size
            self.add_weight("kernel_zero", (groups, cols), initializer="zeros", trainable=False, dtype="int8")
            self.add_weight("g_idx", (rows,), trainable=False,
                            initializer=lambda shape, dtype=None: quantizers.group_index(shape[0], block))

    def quantize(self, mode: str | None = None, type_check: bool = True, config: Any = None) -> None:
        """Quantize the built layer's weights as Keras 3.15's ``EinsumDense.quantize`` does.

        ``"int8"``: per output unit abs-max over the kernel's contracted axes, inputs quantized
        per row of their contracted axes when called. ``"int4"``: the kernel reshaped to
        (contracted, new) rows x columns and quantized as Dense's int4 (``block_size`` from
        ``config``, 128 without one, as ``Model.quantize`` gives Keras; -1 one scale per column).

        >>> import numpy as np
        >>> layer = EinsumDense("abc,cd->abd", output_shape=(None, 2), bias_axes="d")
        >>> layer.build((None, 3, 2))
        >>> layer.set_weights([np.array([[0.5, 0.75], [0.25, 0.5]]), np.zeros(2)])
        >>> layer.quantize("int8")
        >>> layer.dtype_policy.name, layer.weight_names
        ('int8_from_float32', ['bias', 'kernel', 'kernel_scale'])
        """
        policy = quantizers.layer_quantize_policy(self, EinsumDense, mode, config, type_check)
        plan = self._einsum
        assert plan is not None
        values = self._values
        kernel = values[0]
        bias = values[1] if len(values) > 1 else None
        if not np.isfinite(kernel).all():
            raise ValueError(f"Cannot quantize EinsumDense '{self.name}': its kernel holds NaN or inf")
        rows, cols = _flat_sizes(plan)
        if policy.mode == "int8":
            q, scale = quantizers.quantize_int8(_to_matrix(kernel, plan))
            new = [_from_matrix(q, plan), scale.reshape(_int8_scale_shape(plan))]
        else:
            w = quantizers.quantize_int4(kernel.reshape(rows, cols), policy.block_size)
            new = [quantizers.pack_int4(w.q), w.scale]
            if w.zero is not None:
                new += [w.zero, quantizers.group_index(rows, w.block_size)]
        specs, self._weight_specs, self._values = self._weight_specs, (), ()
        try:
            self._add_quantized_weights(plan, policy)
        except Exception:
            self._weight_specs, self._values = specs, values
            raise
        self._quant = policy
        self.quantization_config = policy.config()
        self._swap_values(self._validate_weights(([bias] if bias is not None else []) + new))

    def _quantized_form(self, values: tuple) -> Any:
        """The ``(contracted, new)`` kernel of a quantized layer: a QuantizedKernel on Dense's
        integer kernels when Keras's layout is that matrix, else Keras's dequantized float kernel."""
        policy, plan = self._quant, self._einsum
        assert policy is not None and plan is not None
        at = 1 if plan.bias_shape is not None else 0
        kernel, scale = values[at], values[at + 1]
        if policy.mode == "int8":
            matrix = np.ascontiguousarray(_to_matrix(kernel, plan))
            return ops.QuantizedKernel("int8", matrix, np.ascontiguousarray(scale.reshape(-1)), None, -1,
                                       policy.quantize_inputs)
        zero = values[at + 2] if policy.block_size > 0 else None
        if plan.kernel_order == tuple(range(len(plan.kernel_order))):
            return ops.QuantizedKernel("int4", kernel, scale, zero, policy.block_size, policy.quantize_inputs)
        if policy.quantize_inputs:
            raise ValueError(
                f"EinsumDense '{self.name}' (equation {self.equation!r}): fastdense runs int4 with an activation "
                "quantizer only on kernels whose axes are the contracted then the new axes")
        # Keras's layout is a reshape of the kernel in its own axis order: dequantize as Keras does
        # ((q - zero) * scale per block, q / scale per column), reshape back, rearrange
        rows, cols = _flat_sizes(plan)
        q = quantizers.unpack_int4(kernel, cols)
        if zero is None:
            flat = q.astype(np.float32) / scale
        else:
            flat = quantizers.dequantize_int4(quantizers.Int4Weights(q, scale, zero, policy.block_size))
        return np.ascontiguousarray(_to_matrix(flat.reshape(plan.kernel_shape), plan), dtype=np.float32)

    def _keras_store_values(self) -> list[np.ndarray]:
        """The arrays of a .keras file (``EinsumDense.save_own_variables``): kernel, bias, ..."""
        return _swap_bias_kernel(self.get_weights(), self._quant is not None and self._einsum is not None
                                 and self._einsum.bias_shape is not None)

    def _weights_from_keras_store(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """``set_weights`` arguments for the arrays of a .keras file."""
        return _swap_bias_kernel(arrays, self._quant is not None and self._einsum is not None
                                 and self._einsum.bias_shape is not None)

    @property
    def kernel(self) -> np.ndarray:
        """The kernel (quantized: Keras's int8 kernel, or int4's unpacked (rows, columns) in [-8, 7])."""
        if not self.built:
            raise AttributeError(f"EinsumDense '{self.name}' has no kernel yet: it is not built")
        if self._quant is None:
            return self._values[0]
        kernel = self._values[1 if self._has_bias() else 0]
        if self._quant.mode == "int8":
            return kernel
        return quantizers.unpack_int4(kernel, _flat_sizes(self._einsum)[1])

    @property
    def bias(self) -> np.ndarray | None:
        if not self.built:
            raise AttributeError(f"EinsumDense '{self.name}' has no bias yet: it is not built")
        if not self._has_bias():
            return None
        return self._values[0] if self._quant is not None else self._values[1]

    def _has_bias(self) -> bool:
        return self._einsum is not None and self._einsum.bias_shape is not None

    def dense_form(self) -> tuple[Any, np.ndarray | None]:
        """(kernel as a ``(contracted, new)`` matrix, packed when it helps; bias as a vector over
        the new axes, or None), made once per set of weights."""
        values = self._values
        cached = self._matrix_cache
        if cached is not None and cached[0] is values:
            return cached[1], cached[2]
        plan = self._einsum
        assert plan is not None
        if self._quant is not None:
            matrix = self._quantized_form(values)
            b_values = values[:1] if plan.bias_shape is not None else ()
        else:
            matrix = np.ascontiguousarray(_to_matrix(values[0], plan))
            b_values = values[1:]
        if type(matrix) is np.ndarray and matrix.dtype == np.float32 and ops.packed_available():
            matrix = ops.pack_kernel(matrix)
        bias = None
        if b_values and plan.fused_bias:
            new_shape = plan.output_shape[len(plan.output_shape) - plan.out_axes:]
            # the bias spans the last new axes (Keras's bias shape): broadcast it over all of them
            b = b_values[0]
            b = b.reshape((1,) * (plan.out_axes - b.ndim) + b.shape)
            bias = np.ascontiguousarray(np.broadcast_to(b, new_shape).reshape(-1))
        self._matrix_cache = (values, matrix, bias)
        return matrix, bias

    def call(self, inputs: np.ndarray) -> np.ndarray:
        plan = self._einsum
        assert plan is not None
        matrix, bias = self.dense_form()
        lead = inputs.shape[:inputs.ndim - plan.contracted]
        x = np.ascontiguousarray(inputs, dtype=self._np_dtype).reshape(math.prod(lead), -1)
        separate_bias = self._has_bias() and not plan.fused_bias
        # a row-wise activation (softmax, glu ...) works on the last axis alone: fused only when
        # the kernel makes one output axis
        fused = activations.is_fused(self.activation) and not separate_bias and (
            plan.out_axes == 1 or not activations.resolve(self.activation).rowwise)
        name = activations.serialize(self.activation) if fused else "linear"
        out = ops.dense(x, matrix, bias, name if isinstance(name, str) else self.activation)
        new_shape = plan.output_shape[len(plan.output_shape) - plan.out_axes:]
        out = out.reshape(lead + tuple(new_shape))
        if separate_bias:
            out = out + self.bias
        if not fused:
            out = self.activation(out)
        return out

    def compute_output_shape(self, input_shape: Any) -> tuple:
        plan = analyze_equation(self.equation, self.bias_axes, tuple(input_shape), self.partial_output_shape)
        return plan.output_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "output_shape": list(self.partial_output_shape),
                "equation": self.equation,
                "activation": activations.serialize(self.activation),
                "bias_axes": self.bias_axes,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _serialize_or_none(regularizers, self.kernel_regularizer),
                "bias_regularizer": _serialize_or_none(regularizers, self.bias_regularizer),
                "activity_regularizer": _serialize_or_none(regularizers, self.activity_regularizer),
                "kernel_constraint": _serialize_or_none(constraints, self.kernel_constraint),
                "bias_constraint": _serialize_or_none(constraints, self.bias_constraint),
                "quantization_config": self.quantization_config,
            }
        )
        if self._quant is not None:
            config["dtype"] = self._quant.serialize()
        return config


def _swap_bias_kernel(arrays: list, has_bias: bool) -> list:
    """A quantized layer's arrays between weights order (bias, kernel, ...: Keras lists the
    trainable bias first) and .keras store order (kernel, bias, ...): the swap is its own inverse."""
    arrays = list(arrays)
    return arrays[1:2] + arrays[:1] + arrays[2:] if has_bias and len(arrays) > 1 else arrays


def _flat_sizes(plan: EinsumPlan | None) -> tuple[int, int]:
    """(rows, columns) of Keras's flattened kernel: the contracted sizes' product, the new ones'."""
    assert plan is not None
    contracted = [plan.kernel_shape[i] for i in plan.kernel_order[:plan.contracted]]
    return math.prod(contracted), math.prod(plan.kernel_shape) // max(math.prod(contracted), 1)


def _int8_scale_shape(plan: EinsumPlan) -> tuple[int, ...]:
    """Keras's int8 kernel_scale shape: broadcast over the output, 1 on the free axes."""
    new = tuple(plan.output_shape[len(plan.output_shape) - plan.out_axes:])
    return (1,) * (len(plan.output_shape) - plan.out_axes) + new


def _to_matrix(kernel: np.ndarray, plan: EinsumPlan) -> np.ndarray:
    """The kernel as the (contracted in input order, new in output order) matrix."""
    arranged = np.transpose(kernel, plan.kernel_order)
    return arranged.reshape(math.prod(arranged.shape[:plan.contracted]), -1)


def _from_matrix(matrix: np.ndarray, plan: EinsumPlan) -> np.ndarray:
    """The inverse of _to_matrix: the matrix back in the equation's kernel axis order."""
    arranged_shape = tuple(plan.kernel_shape[i] for i in plan.kernel_order)
    return np.ascontiguousarray(np.transpose(matrix.reshape(arranged_shape), np.argsort(plan.kernel_order)))
