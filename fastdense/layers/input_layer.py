"""`Input` and `InputLayer`: the entry points of a layer graph.

>>> import fastdense
>>> x = fastdense.Input(shape=(8,), name="features")
>>> x
<SymbolicTensor name='features' shape=(None, 8) dtype=float32>
>>> x._keras_history[0]
<InputLayer name=features, built=True>
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastdense.layers.base import Layer, standardize_dtype, standardize_shape
from fastdense.layers.node import Node, SymbolicTensor
from fastdense.saving.serialization import register_builtin

__all__ = ["Input", "InputLayer"]

_INPUT_DTYPES = (
    "float32", "float64", "float16", "bool",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
)


@register_builtin("keras.layers", "InputLayer")
class InputLayer(Layer):
    """Holds a model input: its batch shape, dtype and name.

    Creating one also creates its output :class:`SymbolicTensor` (``layer.output``).
    Prefer :func:`Input`, which returns that tensor.  Accepts Keras 3 arguments
    (``shape``, ``batch_size``, ``batch_shape``) and Keras 2 ones
    (``input_shape``, ``batch_input_shape``).
    """

    def __init__(
        self,
        shape: Any = None,
        batch_size: int | None = None,
        dtype: Any = None,
        sparse: bool | None = None,
        ragged: bool | None = None,
        batch_shape: Any = None,
        input_tensor: Any = None,
        optional: bool = False,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs:
            batch_shape = kwargs.pop("batch_input_shape")
        kwargs.pop("trainable", None)
        if sparse or ragged:
            raise ValueError("fastdense supports dense inputs only; got sparse=True or ragged=True")
        if input_tensor is not None:
            raise ValueError("InputLayer(input_tensor=...) is not supported by fastdense")
        super().__init__(name=name, **kwargs)
        if batch_shape is not None:
            if shape is not None or batch_size is not None:
                raise ValueError(
                    "You cannot pass both `shape` and `batch_shape` at the same time "
                    f"(got shape={shape!r}, batch_shape={batch_shape!r})"
                )
            batch_shape = standardize_shape(batch_shape, "batch_shape")
        elif shape is not None:
            batch_shape = (batch_size,) + standardize_shape(shape, "shape")
        else:
            raise ValueError("You must pass a `shape` argument (or `batch_shape`), e.g. Input(shape=(8,))")
        if not batch_shape:
            raise ValueError(f"An input needs at least a batch dimension, got batch_shape={batch_shape!r}")
        self._dtype = standardize_dtype(dtype, _INPUT_DTYPES)
        self._np_dtype = np.dtype(self._dtype)
        self._trainable = False
        self.batch_shape: tuple = batch_shape
        self.sparse = False
        self.ragged = False
        self.optional = bool(optional)
        self.built = True
        Node(self, outputs=SymbolicTensor(batch_shape, self._dtype, self.name))

    def _default_name(self) -> str:
        return "input_layer"

    @property
    def batch_size(self) -> int | None:
        return self.batch_shape[0]

    @property
    def input(self) -> SymbolicTensor:
        """The input tensor itself (Keras 2: an input layer's input is its output)."""
        return self.output

    @property
    def input_shape(self) -> tuple:
        return self.batch_shape

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return self.batch_shape

    def get_config(self) -> dict:
        return {
            "batch_shape": self.batch_shape,
            "dtype": self._dtype,
            "sparse": self.sparse,
            "ragged": self.ragged,
            "name": self.name,
            "optional": self.optional,
        }

    @classmethod
    def from_config(cls, config: dict) -> "InputLayer":
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = standardize_dtype(config["dtype"])
        return cls(**config)


def Input(  # noqa: N802 -- Keras's name
    shape: Any = None,
    batch_size: int | None = None,
    dtype: Any = None,
    sparse: bool | None = None,
    ragged: bool | None = None,
    batch_shape: Any = None,
    name: str | None = None,
    tensor: Any = None,
    optional: bool = False,
) -> SymbolicTensor:
    """A symbolic model input of per-sample ``shape`` (the batch axis is added).

    >>> import fastdense
    >>> fastdense.Input(shape=(8,), name="dense_1_input")
    <SymbolicTensor name='dense_1_input' shape=(None, 8) dtype=float32>
    """
    layer = InputLayer(
        shape=shape,
        batch_size=batch_size,
        dtype=dtype,
        sparse=sparse,
        ragged=ragged,
        batch_shape=batch_shape,
        input_tensor=tensor,
        optional=optional,
        name=name,
    )
    return layer.output
