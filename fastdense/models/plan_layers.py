"""How the issue-13 layers enter a compiled model plan: pure functions from a layer (and the
per-sample shape it sees) to what a plan step needs. :mod:`fastdense.models.plan` calls them.

- identity layers (noise, dropout-like, Identity) cost nothing: the plan aliases their buffer;
- ReLU / LeakyReLU / ELU / last-axis Softmax are fused activations (merged into the preceding
  Dense's epilogue when that Dense is linear and feeds nothing else);
- BatchNormalization / Normalization / Rescaling are per-feature affine maps, folded into a
  neighbouring Dense (:mod:`fastdense.models.plan_fold`) or run as an affine step;
- Layer/RMS/UnitNormalization over the last axis are a row-wise step (csrc/fd_norm.c), fused
  into the epilogue of the Dense before them when nothing else reads that Dense's output;
- Dense with LoRA and EinsumDense are Dense steps on their merged / rearranged kernels;
- Embedding is a gather step (csrc/fd_gather.c).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from fastdense import activations
from fastdense.layers.activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from fastdense.layers.einsum_dense import EinsumDense
from fastdense.layers.noise import (
    ActivityRegularization,
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
    Identity,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from fastdense.layers.normalization import LayerNormalization, RMSNormalization, UnitNormalization
from fastdense.layers.pooling import (
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
)

__all__ = ["GLOBAL_POOLING", "IDENTITY_LAYERS", "NormStep", "activation_function", "einsum_dense_step", "norm_step",
           "prelu_alpha"]

# Layers that return their input at inference (ActivityRegularization only records a penalty,
# which predict does not; a plan that records losses refuses layers with activity regularizers).
IDENTITY_LAYERS = (GaussianNoise, GaussianDropout, AlphaDropout, SpatialDropout1D, SpatialDropout2D,
                   SpatialDropout3D, ActivityRegularization, Identity)

# Global pooling: a POOL step (its mean or maximum of each sample's rows) for channels-last inputs
GLOBAL_POOLING = (GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D,
                  GlobalMaxPooling2D, GlobalMaxPooling3D)

# fd_norm_kind in csrc/fd_norm.h
NORM_LAYER, NORM_LAYER_RMS, NORM_RMS, NORM_UNIT = range(4)


def activation_function(layer: Any) -> Any | None:
    """The fused activation an activation layer applies, or None (PReLU, a Softmax off the last
    axis, or not an activation layer)."""
    if isinstance(layer, (ReLU, LeakyReLU, ELU)) or (isinstance(layer, Softmax) and layer.axis in (-1, [-1])):
        function = layer.activation
        return function if activations.is_fused(function) else None
    return None


class NormStep(NamedTuple):
    """A row-wise normalization over the last axis of a per-sample shape."""

    kind: int                      # NORM_* (fd_norm_kind)
    eps: float
    gamma: np.ndarray | None       # (n,) in the plan dtype, or None
    beta: np.ndarray | None
    rows: int                      # rows per sample
    n: int                         # values per row


def norm_step(layer: Any, shape: tuple, dtype: np.dtype) -> NormStep | None:
    """``layer`` as a row-wise step on a per-sample ``shape``, when it normalizes the last axis or
    the last few axes together (a row is then those axes' values, in memory order; the weights
    have those axes' shape, so they flatten the same way). None otherwise: other axes run layer
    by layer."""
    if not isinstance(layer, (LayerNormalization, RMSNormalization, UnitNormalization)) or not shape:
        return None
    rank = len(shape) + 1
    axes = sorted(a % rank for a in (layer.axis if isinstance(layer.axis, list) else [layer.axis]))
    k = len(axes)
    if k > len(shape) or axes != list(range(rank - k, rank)):
        return None
    named = dict(zip(layer.weight_names, layer._values))
    n, rows = math.prod(shape[len(shape) - k:]), math.prod(shape[:len(shape) - k])

    def vec(name: str) -> np.ndarray | None:
        value = named.get(name)
        return None if value is None else np.ascontiguousarray(value.reshape(n), dtype=dtype)

    if isinstance(layer, LayerNormalization):
        kind = NORM_LAYER_RMS if layer.rms_scaling else NORM_LAYER
        return NormStep(kind, layer.epsilon, vec("gamma"), vec("beta"), rows, n)
    if isinstance(layer, RMSNormalization):
        return NormStep(NORM_RMS, layer.epsilon, vec("scale"), None, rows, n)
    return NormStep(NORM_UNIT, 1e-12, None, None, rows, n)


def prelu_alpha(layer: Any, shape: tuple, dtype: np.dtype) -> np.ndarray | None:
    """PReLU's alpha broadcast over one sample (``prod(shape)`` values), or None."""
    if not isinstance(layer, PReLU) or not layer.built:
        return None
    alpha = layer._values[0]
    try:
        return np.ascontiguousarray(np.broadcast_to(alpha, shape).reshape(-1), dtype=dtype)
    except ValueError:
        return None


class DenseStep(NamedTuple):
    """A layer that is one Dense on its input's trailing values."""

    rows: int                      # rows per sample
    k: int
    n: int
    kernel: Any                    # (k, n) ndarray or PackedKernel
    bias: np.ndarray | None
    out_shape: tuple               # per sample
    activation: Any                # the function fused into the step


def einsum_dense_step(layer: Any, shape: tuple, dtype: np.dtype) -> DenseStep | None:
    """An EinsumDense as a Dense step (None when its bias or activation cannot be fused)."""
    if not isinstance(layer, EinsumDense) or layer._einsum is None:
        return None
    plan = layer._einsum
    if layer._has_bias() and not plan.fused_bias:
        return None
    function = layer.activation
    if not activations.is_fused(function) or (plan.out_axes > 1 and activations.resolve(function).rowwise):
        return None
    kernel, bias = layer.dense_form()
    k = math.prod(shape[len(shape) - plan.contracted:])
    new = tuple(plan.output_shape[len(plan.output_shape) - plan.out_axes:])
    lead = shape[:len(shape) - plan.contracted]
    if layer.dtype != dtype:   # the float dtype (a quantized layer's source dtype)
        return None
    return DenseStep(math.prod(lead), k, math.prod(new), kernel, bias, lead + new, function)
