"""Folding BatchNormalization / Normalization / Rescaling into a neighbouring Dense
(fastdense/models/plan_fold.py): the folded float32 Dense stays within the documented rounding
bound of the exact (float64) unfolded computation."""

from __future__ import annotations

import numpy as np
import pytest

from fastdense import ops
from fastdense.layers import BatchNormalization, Dense, Normalization, Rescaling
from fastdense.layers.normalization import FeatureAffine
from fastdense.models.plan_fold import affine_of, compose, fold_after, fold_before

RNG = np.random.default_rng(17)
U = 2.0 ** -24


def batch_norm(width):
    bn = BatchNormalization(epsilon=1e-3)
    bn.build((None, width))
    bn.set_weights([RNG.uniform(0.5, 2, width), RNG.standard_normal(width), RNG.standard_normal(width),
                    RNG.uniform(0.05, 3, width)])
    return bn


def within_bound(got, x, w, b, exact):
    k = x.shape[1]
    bound = (k + 2) * U * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)) + np.abs(b)) + 1e-300
    excess = np.abs(got.astype(np.float64) - exact) / bound
    assert excess.max() <= 1.0, excess.max()
    return excess.max()


@pytest.mark.parametrize("k,n", [(1, 1), (7, 5), (64, 32), (300, 17)])
def test_dense_then_batch_normalization(k, n):
    x = RNG.standard_normal((33, k)).astype(np.float32)
    kernel, bias = RNG.standard_normal((k, n)).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
    bn = batch_norm(n)
    affine = affine_of(bn, n, 1)
    w, b = fold_after(kernel, bias, affine)
    w32, b32 = w.astype(np.float32), b.astype(np.float32)
    got = ops.dense(x, ops.pack_kernel(w32) if ops.packed_available() else w32, b32)
    gamma, beta, mean, var = (v.astype(np.float64) for v in bn.get_weights())
    exact = ((x.astype(np.float64) @ kernel + bias) - mean) / np.sqrt(var + 1e-3) * gamma + beta
    within_bound(got, x, w32, b32, exact)
    # and the layers themselves (unfolded, float32 between them) are no closer in general
    unfolded = bn(Dense(n, weights=[kernel, bias])(x))
    assert np.abs(unfolded - exact).max() <= 4 * np.abs(got - exact).max() + 1e-6


@pytest.mark.parametrize("k,n", [(3, 4), (50, 8)])
def test_normalization_then_dense(k, n):
    mean, var = RNG.standard_normal(k), RNG.uniform(0.01, 9, k)
    norm = Normalization(mean=mean, variance=var)
    norm.build((None, k))
    x = (RNG.standard_normal((20, k)) * 3 + 1).astype(np.float32)
    kernel, bias = RNG.standard_normal((k, n)).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
    w, b = fold_before(kernel, bias, affine_of(norm, k, 1))
    w32, b32 = w.astype(np.float32), b.astype(np.float32)
    got = ops.dense(x, w32, b32)
    exact = ((x.astype(np.float64) - mean) / np.sqrt(var)) @ kernel + bias
    # the bound of a fold before a Dense: relative to the folded weights and bias
    within_bound(got, x, w32, b32, exact)


def test_composition_and_rescaling():
    first = FeatureAffine(-1, np.array([2.0, 3.0]), np.array([1.0, -1.0]))
    rescale = Rescaling(0.5, offset=0.25)
    second = affine_of(rescale, 2, 1)
    both = compose(first, second)
    x = RNG.standard_normal((4, 2))
    np.testing.assert_allclose(x * both.scale + both.offset, (x * first.scale + first.offset) * 0.5 + 0.25)
    assert affine_of(Rescaling(np.ones((2, 2))), 2, 1) is None      # not per feature
    assert affine_of(Dense(2), 2, 1) is None
    bn = BatchNormalization(axis=1)
    bn.build((None, 3, 4))
    assert affine_of(bn, 4, 2) is None                                # not the last axis
    assert affine_of(Normalization(axis=None, mean=1.0, variance=4.0), 3, 1).scale.tolist() == [0.5] * 3
