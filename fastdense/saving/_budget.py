"""A cap on the weight memory a model config may make fastdense allocate while it is rebuilt.

Rebuilding a model from a file's config creates every weight (filled by its initializer) before
the file's arrays replace them. A config is a few bytes of JSON, so on its own it could ask for
terabytes (``"units": 1000000000000``) and fastdense would try to allocate and fill them. While
:func:`weight_budget` is active, ``Layer.add_weight`` charges each weight here first, and a weight
that would take the total past the limit raises :class:`~fastdense.saving.KerasFileError`
instead: the limit follows from the weights the file actually stores, which every real weight of
the model must match.

    >>> with weight_budget(500, "m.keras"):
    ...     charge("dense", "kernel", (10, 20), "float32")
    Traceback (most recent call last):
    ...
    fastdense.saving.errors.KerasFileError: m.keras: layer 'dense': weight 'kernel' ... needs 800 bytes, ...
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import KerasFileError

# Room above twice the file's weights: weights a file does not store (LoRA matrices, which Keras
# saves merged into the kernel; Normalization statistics given in the config) and dtype widening.
SLACK_BYTES = 256 << 20


@dataclass
class _Budget:
    limit: int
    path: str
    used: int = 0


_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("fastdense_weight_budget", default=None)


def limit_for(stored_bytes: int) -> int:
    """The allocation limit for a model whose file stores ``stored_bytes`` bytes of weights."""
    return 2 * stored_bytes + SLACK_BYTES


@contextlib.contextmanager
def weight_budget(limit: int, path: str) -> Iterator[None]:
    """Charge every weight created in this context (this thread, this task) against ``limit`` bytes."""
    token = _current.set(_Budget(int(limit), path))
    try:
        yield
    finally:
        _current.reset(token)


def charge(layer: str, weight: str, shape: tuple[Any, ...], dtype: Any) -> None:
    """Account for a new weight; raise KerasFileError if it does not fit the active budget."""
    budget = _current.get()
    if budget is None:
        return
    size = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
    if budget.used + size > budget.limit:
        raise KerasFileError(
            f"weight {weight!r} of shape {tuple(shape)} {np.dtype(dtype).name} needs {size} bytes, more than "
            f"this file's weights can fill (limit {budget.limit} bytes, {budget.used} already taken): the "
            "config declares shapes its own weights do not have",
            path=budget.path,
            layer=layer,
        )
    budget.used += size
