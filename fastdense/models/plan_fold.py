"""Folding per-feature affine layers (BatchNormalization, Normalization, Rescaling) into the
kernel and bias of a neighbouring Dense, when a model plan is built.

A Dense with a linear activation followed by ``y * a + c`` (per output feature) is the Dense
with kernel ``W * a`` and bias ``b * a + c``; an affine map before a Dense,
``(x * a + c) @ W + b``, is the Dense with kernel ``a[:, None] * W`` and bias ``c @ W + b``. The
folded weights are computed in float64 and rounded once to the plan dtype.

Rounding bound (tested in tests/test_layers_fold.py): with u the unit roundoff of the plan dtype
(2**-24 for float32) and K the Dense's input width, every output of the folded Dense differs
from the exact (float64) value of the unfolded layers by at most
``(K + 2) * u * (|x| @ |W'| + |b'|)`` (plus float64 rounding), where ``W'`` and ``b'`` are the
folded weights: one rounding of each folded weight, then the kernel's K-term dot product and the
bias addition. The unfolded float32 computation has a bound of the same form with one more
rounding per affine layer, so folding does not make results worse, only different in the last
bits.

    >>> import numpy as np
    >>> from fastdense.layers.normalization import FeatureAffine
    >>> w, b = fold_after(np.eye(2), np.zeros(2), FeatureAffine(-1, np.array([2.0, 3.0]), np.array([1.0, 0.0])))
    >>> w.tolist(), b.tolist()
    ([[2.0, 0.0], [0.0, 3.0]], [1.0, 0.0])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastdense.layers.normalization import BatchNormalization, FeatureAffine
from fastdense.layers.preprocessing import Normalization, Rescaling

__all__ = ["affine_of", "compose", "concatenate", "fold_after", "fold_before", "FOLDABLE"]

FOLDABLE = (BatchNormalization, Normalization, Rescaling)


def affine_of(layer: Any, width: int, rank: int) -> FeatureAffine | None:
    """``layer`` as a float64 affine map over the last axis of a rank-``rank`` per-sample input of
    ``width`` features (vectors of length ``width``), or None when it is not one."""
    if not isinstance(layer, FOLDABLE):
        return None
    affine = layer.affine()
    if affine is None:
        return None
    axis = affine.axis
    if axis not in (-1, rank):   # the last axis (axis 0 is the batch)
        return None
    scale, offset = np.asarray(affine.scale, np.float64), np.asarray(affine.offset, np.float64)
    if scale.size not in (1, width) or offset.size not in (1, width):
        return None
    return FeatureAffine(-1, np.broadcast_to(scale.reshape(-1), (width,)).copy(),
                         np.broadcast_to(offset.reshape(-1), (width,)).copy())


def compose(first: FeatureAffine, second: FeatureAffine) -> FeatureAffine:
    """The affine map ``second(first(x))``."""
    return FeatureAffine(-1, first.scale * second.scale, first.offset * second.scale + second.offset)


def concatenate(parts: list[FeatureAffine | None], widths: list[int]) -> FeatureAffine:
    """The affine map of a last-axis concatenation whose parts carry ``parts`` (None: identity)."""
    scale = np.concatenate([np.ones(w) if p is None else p.scale for p, w in zip(parts, widths)])
    offset = np.concatenate([np.zeros(w) if p is None else p.offset for p, w in zip(parts, widths)])
    return FeatureAffine(-1, scale, offset)


def fold_after(kernel: np.ndarray, bias: np.ndarray | None, affine: FeatureAffine) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias (float64) of ``affine(x @ kernel + bias)``."""
    w = np.asarray(kernel, np.float64)
    b = np.zeros(w.shape[1]) if bias is None else np.asarray(bias, np.float64)
    return w * affine.scale, b * affine.scale + affine.offset


def fold_before(kernel: np.ndarray, bias: np.ndarray | None, affine: FeatureAffine) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias (float64) of ``affine(x) @ kernel + bias``."""
    w = np.asarray(kernel, np.float64)
    b = np.zeros(w.shape[1]) if bias is None else np.asarray(bias, np.float64)
    return affine.scale[:, None] * w, affine.offset @ w + b
