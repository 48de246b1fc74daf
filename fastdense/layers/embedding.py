"""Embedding: integer ids -> rows of a ``(input_dim, output_dim)`` table.

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

from fastdense import constraints, initializers, regularizers
from fastdense.layers.base import Layer
from fastdense.layers.core import _get_or_none, _serialize_or_none
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
        if quantization_config is not None:
            raise ValueError(
                "fastdense Embedding does not support quantization; expected quantization_config=None, "
                f"got {quantization_config!r}"
            )
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

    def build(self, input_shape: Any = None) -> None:
        self.add_weight(
            "embeddings",
            (self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
        )

    @property
    def embeddings(self) -> np.ndarray:
        """The table, shape ``(input_dim, output_dim)`` (read-only; use ``set_weights``)."""
        if not self.built:
            raise AttributeError(f"Embedding '{self.name}' has no embeddings yet: it is not built")
        return self._values[0]

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
                "quantization_config": None,
            }
        )
        return config
