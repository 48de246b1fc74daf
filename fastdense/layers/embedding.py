"""Embedding: integer ids -> rows of a ``(input_dim, output_dim)`` table (float, or Keras 3's int8 /
int4, kept quantized: only the gathered rows are de-scaled, in csrc/fd_gather.c).

>>> import numpy as np
>>> from fastdense.layers import Embedding
>>> layer = Embedding(3, 2)
>>> layer.build()
>>> layer.set_weights([np.array([[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]])])
>>> layer(np.array([[2, 0]])).tolist()
[[[2.0, 2.5], [0.0, 0.5]]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastdense import _kernels, constraints, initializers, quantizers, regularizers
from fastdense.layers.base import Layer
from fastdense.layers.core import _get_or_none, _serialize_or_none, _without_shared_ids
from fastdense.saving.serialization import register_builtin

__all__ = ["Embedding", "check_ids"]


def check_ids(ids: np.ndarray, input_dim: int, owner: str) -> None:
    """Raise ``ValueError`` naming the first id outside ``[0, input_dim)`` (never read out of bounds)."""
    if ids.size == 0:
        return
    low, high = ids.min(), ids.max()
    if low >= 0 and high < input_dim:
        return
    bad = np.argwhere((ids < 0) | (ids >= input_dim))[0]
    raise ValueError(
        f"{owner} expects ids in [0, {input_dim}), got {ids[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
    )


@register_builtin("keras.layers", "Embedding")
class Embedding(Layer):
    """Maps integer ids to dense vectors: ``output[..., :] = embeddings[ids[...]]``.

    Inputs of any integer dtype are used as they are (never cast to float first); float
    inputs holding whole numbers are accepted, as Keras casts them. An id outside
    ``[0, input_dim)`` raises ``ValueError`` naming it. ``mask_zero`` is kept in the config
    (fastdense layers do not propagate masks). The output has shape ``ids.shape + (output_dim,)``.

    Quantized as Keras 3.15 quantizes it (``quantize("int8" | "int4")``, or a file whose layer has
    a ``QuantizedDTypePolicy`` / ``Int4DTypePolicy``), the table stays int8 / packed int4 with
    Keras's variables and each gathered row is de-scaled in Keras's float32 operations
    (docs/quantization.md, "Quantized Embedding").

    >>> import numpy as np
    >>> Embedding(10, 4)(np.array([[1, 2, 3]], np.int32)).shape
    (1, 3, 4)
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        embeddings_constraint: Any = None,
        mask_zero: bool = False,
        weights: Any = None,
        lora_rank: Any = None,
        lora_alpha: Any = None,
        quantization_config: Any = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"`{name}` must be a positive integer. Received: {name}={value!r} (of type {type(value).__name__})."
                )
        if lora_rank is not None:
            raise ValueError(
                f"fastdense Embedding does not support LoRA; expected lora_rank=None, got lora_rank={lora_rank!r}"
            )
        # quantization (Keras 3 int8 / int4): a quantized dtype policy builds the integer variables
        self._quant: quantizers.QuantizedPolicy | None = None
        if quantizers.is_quantized_policy(kwargs.get("dtype")):
            self._quant = quantizers.read_policy(kwargs["dtype"], quantization_config)
            kwargs["dtype"] = self._quant.source_name
        elif quantization_config is not None:
            quantizers.check_config(quantization_config)   # kept for a later quantize(), as Keras does
        self.quantization_config = _without_shared_ids(quantization_config)
        self._packed: tuple | None = None   # (the _values it was made from, their QuantizedTable)
        kwargs.pop("input_length", None)  # Keras 2; Keras 3 ignores it too
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = _get_or_none(regularizers, embeddings_regularizer)
        self.embeddings_constraint = _get_or_none(constraints, embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        if weights is not None:
            self.build()
            self.set_weights(weights if isinstance(weights, list) and len(weights) == 1 else [weights])

    def enable_lora(self, rank: int, lora_alpha: Any = None, a_initializer: Any = "he_uniform",
                    b_initializer: Any = "zeros") -> None:
        """Keras's LoRA on an Embedding: not served by fastdense (float or quantized tables)."""
        policy = "" if self._quant is None else f" (dtype policy '{self._quant.name}')"
        raise ValueError(f"fastdense Embedding does not support LoRA; Embedding '{self.name}'{policy} cannot "
                         f"enable_lora(rank={rank!r})")

    def build(self, input_shape: Any = None) -> None:
        if self._quant is not None:
            self._add_quantized_weights(self._quant)
            return
        self.add_weight(
            "embeddings",
            (self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
        )

    @property
    def embeddings(self) -> np.ndarray:
        """The table, shape ``(input_dim, output_dim)`` (read-only; use ``set_weights``); int8 once
        quantized, as in Keras (int4: unpacked, values in [-8, 7])."""
        if not self.built:
            raise AttributeError(f"Embedding '{self.name}' has no embeddings yet: it is not built")
        table = self._values[0]
        if self._quant is not None and self._quant.mode == "int4":
            return quantizers.unpack_int4(table, self.output_dim)
        return table

    def _to_array(self, x: Any) -> np.ndarray:
        # ids keep their integer dtype; whole-number floats become int64 (Keras casts them)
        array = np.asarray(x)
        kind = array.dtype.kind
        if kind in "iu":
            return array
        if kind == "f":
            if not np.all(np.isfinite(array)) or np.any(array != np.trunc(array)):
                raise ValueError(f"{self._owner()} expects integer ids, got non-integer values of dtype {array.dtype}")
            return array.astype(np.int64)
        raise TypeError(f"{self._owner()} expects an array of integer ids, got {type(x).__name__} with dtype {array.dtype}")

    def call(self, inputs: np.ndarray) -> np.ndarray:
        if self._quant is not None:
            return self._gather_quantized(inputs)
        check_ids(inputs, self.input_dim, self._owner())
        return np.take(self._values[0], inputs, axis=0)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": _serialize_or_none(regularizers, self.embeddings_regularizer),
                "activity_regularizer": _serialize_or_none(regularizers, self.activity_regularizer),
                "embeddings_constraint": _serialize_or_none(constraints, self.embeddings_constraint),
                "mask_zero": self.mask_zero,
                "quantization_config": self.quantization_config,
            }
        )
        if self._quant is not None:
            config["dtype"] = self._quant.serialize()
        return config

    # ------------------------------------------------------------------ quantization
    # Keras 3.15's variables (Embedding._int8_build / _int4_build), in Keras's order, none of them
    # trainable: embeddings int8 (input_dim, output_dim) or int4 packed two per byte along
    # output_dim, embeddings_scale (input_dim,) per row or (input_dim, groups) for int4 groups of
    # block_size columns, then for those embeddings_zero int8 (input_dim, groups) and g_idx
    # float32 (output_dim,). A .keras file and a legacy .h5 file store them in this order too.

    def _add_quantized_weights(self, policy: quantizers.QuantizedPolicy) -> None:
        rows, dim = self.input_dim, self.output_dim
        width = dim if policy.mode == "int8" else (dim + 1) // 2
        groups = -(-dim // policy.block_size) if policy.mode == "int4" and policy.block_size > 0 else 0
        self.add_weight("embeddings", (rows, width), initializer="zeros", trainable=False, dtype="int8")
        self.add_weight("embeddings_scale", (rows, groups) if groups else (rows,), initializer="ones",
                        trainable=False)
        if groups:
            self.add_weight("embeddings_zero", (rows, groups), initializer="zeros", trainable=False, dtype="int8")
            self.add_weight("g_idx", (dim,), trainable=False,   # an array initializer: picklable
                            initializer=quantizers.group_index(dim, policy.block_size))

    def quantize(self, mode: str | None = None, type_check: bool = True, config: Any = None) -> None:
        """Quantize the built table as Keras 3.15's ``Embedding.quantize`` does.

        ``"int8"``: per row (over output_dim) ``scale = 127 / (max|row| + 1e-7)``,
        ``q = clip(round(row * scale), -127, 127)``. ``"int4"`` with ``block_size`` -1 (or None):
        the same with 7 and [-8, 7]; with a block size (Keras's default 128, as
        ``Model.quantize("int4")`` passes it): per row and group of ``block_size`` columns,
        asymmetric with a zero point (Keras's ``abs_max_quantize_grouped_with_zero_point`` on the
        transposed table); int4 values packed two per byte along output_dim. ``config`` a Keras
        ``Int8QuantizationConfig`` / ``Int4QuantizationConfig`` or its config dict.

        >>> import numpy as np
        >>> layer = Embedding(2, 3)
        >>> layer.build()
        >>> layer.set_weights([np.array([[0.5, -1.0, 0.25], [2.0, 0.0, 1.0]])])
        >>> layer.quantize("int8")
        >>> layer.dtype_policy.name, layer.weight_names, layer.embeddings.tolist()
        ('int8_from_float32', ['embeddings', 'embeddings_scale'], [[63, -127, 32], [127, 0, 64]])
        """
        policy = quantizers.layer_quantize_policy(self, Embedding, mode, config, type_check)
        table = self._values[0]
        if not np.isfinite(table).all():
            raise ValueError(f"Cannot quantize Embedding '{self.name}': its embeddings hold NaN or inf")
        if policy.mode == "int8":
            q, scale = quantizers.abs_max_quantize(table, axis=-1, value_range=quantizers.INT8_RANGE)
            new = [q, scale[:, 0]]
        elif policy.block_size == -1:
            q, scale = quantizers.abs_max_quantize(table, axis=-1, value_range=quantizers.INT4_RANGE)
            new = [quantizers.pack_int4(q), scale[:, 0]]
        else:   # Keras quantizes the transposed table: groups of block_size along output_dim
            w = quantizers.quantize_int4(table.T, policy.block_size)
            new = [quantizers.pack_int4(np.ascontiguousarray(w.q.T)), w.scale.T, w.zero.T,
                   quantizers.group_index(self.output_dim, policy.block_size)]
        specs, values = self._weight_specs, self._values
        self._weight_specs, self._values = (), ()
        try:
            self._add_quantized_weights(policy)
        except Exception:
            self._weight_specs, self._values = specs, values
            raise
        self._quant = policy
        self.quantization_config = policy.config()
        self._swap_values(self._validate_weights(new))

    def _validate_weights(self, weights: Any) -> tuple[np.ndarray, ...]:
        """Layer's checks, and for a quantized table: integer variables given exactly (a cast would
        wrap 300 to 44), the int4 table's packed width, g_idx as the block size makes it."""
        if self._quant is None:
            return super()._validate_weights(weights)
        weights = list(weights)
        for spec, value in zip(self._weight_specs, weights):
            array = np.asarray(value)
            if spec.name == "embeddings" and self._quant.mode == "int4" and array.shape != spec.shape:
                raise ValueError(f"Embedding '{self.name}' weight 'embeddings' holds int4 values packed two per "
                                 f"byte along output_dim: expected shape {spec.shape} for output_dim "
                                 f"{self.output_dim}, got shape {array.shape}")
            if spec.dtype == "int8" and array.dtype != np.int8 and array.dtype.kind in "biuf" and array.size:
                with np.errstate(invalid="ignore"):
                    exact = np.all((array >= -128) & (array <= 127) & (array == np.round(array)))
                if not exact:
                    raise ValueError(f"Embedding '{self.name}' weight '{spec.name}' holds int8 values, got "
                                     f"{array.dtype} values that are not integers in [-128, 127]")
        new = super()._validate_weights(weights)
        if self._quant.block_size > 0:
            expected = quantizers.group_index(self.output_dim, self._quant.block_size)
            if not np.array_equal(new[3], expected):
                raise ValueError(f"Embedding '{self.name}' weight 'g_idx' must be the group of each column, "
                                 f"floor(arange({self.output_dim}) / {self._quant.block_size}) = "
                                 f"{expected.tolist()[:8]}...; got {new[3].tolist()[:8]}... (fastdense does not "
                                 "run re-ordered int4 groups)")
        return new

    def _quantized_table(self, values: tuple) -> Any:
        """The QuantizedTable of these weights (made once per set of weights; no copy of them)."""
        packed = self._packed
        if packed is not None and packed[0] is values:
            return packed[1]
        policy = self._quant
        assert policy is not None
        table = _kernels.QuantizedTable(values[0], values[1], values[2] if policy.block_size > 0 else None,
                                        8 if policy.mode == "int8" else 4, policy.block_size, self.output_dim)
        self._packed = (values, table)
        return table

    def _gather_quantized(self, ids: np.ndarray) -> np.ndarray:
        """Keras's ``_int8_call`` / ``_int4_call``: the rows of ids, de-scaled, in float32."""
        table = self._quantized_table(self._values)
        flat = ids
        if ids.dtype != np.int32 and ids.dtype != np.int64:
            if not np.can_cast(ids.dtype, np.int64):   # uint64: a cast could wrap an id into range
                check_ids(ids, self.input_dim, self._owner())
            flat = ids.astype(np.int64)
        out = np.empty(ids.shape + (self.output_dim,), np.float32)
        if table.gather(np.ascontiguousarray(flat), out) >= 0:
            check_ids(ids, self.input_dim, self._owner())   # names the id (the gather wrote nothing)
        return out
