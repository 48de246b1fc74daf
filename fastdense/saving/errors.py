"""Errors raised when a Keras model or weights file cannot be read, written or applied.

All of them are ``ValueError`` subclasses, so ``except ValueError`` keeps working for code
written against Keras, and each message names the file (and the layer, when one is at fault)::

    KerasFileError: model.keras: layer 'dense_1' (layers/dense_1/vars): weight 0 has shape
    (8, 4) in the file, the model expects (8, 5)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["KerasFileError", "UnsafeFileError", "UnsupportedLayerError"]


class KerasFileError(ValueError):
    """A model or weights file that is corrupted, truncated, or does not fit the model.

    ``path`` is the file, ``layer`` the layer at fault (or None).

    >>> str(KerasFileError("weight 0 has the wrong shape", path="m.keras", layer="dense"))
    "m.keras: layer 'dense': weight 0 has the wrong shape"
    """

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None, layer: str | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.layer = layer
        self.detail = message
        prefix = f"{self.path}: " if self.path is not None else ""
        where = f"layer {layer!r}: " if layer is not None else ""
        super().__init__(f"{prefix}{where}{message}")


class UnsafeFileError(KerasFileError):
    """A file that asks for something fastdense never does: running code (Lambda layers,
    serialized lambdas), importing a module it names, or reading outside the expected members."""


class UnsupportedLayerError(KerasFileError):
    """A model that uses layers fastdense does not implement; ``layers`` lists them all as
    ``(class_name, layer_name)`` pairs so one error tells everything the file needs."""

    def __init__(self, layers: Sequence[tuple[str, str]], *, path: str | os.PathLike[str] | None = None) -> None:
        self.layers = list(layers)
        listed = ", ".join(f"{cls} {name!r}" for cls, name in self.layers)
        classes = sorted({cls for cls, _ in self.layers})
        # Keras writes the mask of an Embedding(mask_zero=True) that a later layer reads as a
        # NotEqual operation in the graph
        mask = (" (NotEqual is the mask of an Embedding with mask_zero=True, which a later layer reads: "
                "fastdense does not carry masks)") if "NotEqual" in classes else ""
        super().__init__(
            f"the model uses {len(self.layers)} layer(s) that fastdense does not support: {listed}{mask}. "
            f"fastdense implements Dense-network layers only; unsupported classes: {', '.join(classes)}. "
            "If one of them is your own layer class, register it with "
            "@fastdense.saving.register_serializable() or pass custom_objects={...}",
            path=path,
        )
