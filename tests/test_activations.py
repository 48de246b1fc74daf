"""fastdense.activations: every Keras 3 activation against an independent high-precision NumPy
reference (ulp bounds, edge values, NaN), row-wise ops, glu, parameters, errors, and the
name / function / config round trips."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import warnings
from fractions import Fraction
from math import comb, factorial

import numpy as np
import pytest
import scipy.special as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastdense import _kernels, activations as A, ops

LD = np.longdouble
# The references are computed in long double; where that is just double (MSVC, Apple arm64)
# the float64 bounds below cannot be checked to the ulp.
EXTENDED = np.finfo(LD).nmant >= 63
needs_ld = pytest.mark.skipif(not EXTENDED, reason="long double is double here: no float64 reference")

KERAS_NAMES = [
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign",
    "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink",
    "threshold",
]

# ------------------------------------------------------------------------------------------
# Reference implementations: long double NumPy, written from the Keras definitions.
# ------------------------------------------------------------------------------------------

PI = LD("3.14159265358979323846264338327950288")
SELU_ALPHA = LD("1.6732632423543772848170429916717")
SELU_SCALE = LD("1.0507009873554804934193349852946")


def _tanh_shrink_series():
    """(x - tanh x) / x^3 as a series in x^2, from tanh's Bernoulli-number expansion."""
    bern = [Fraction(0)] * 61
    bern[0] = Fraction(1)
    for m in range(1, 61):
        bern[m] = -sum(comb(m + 1, k) * bern[k] for k in range(m)) / Fraction(m + 1)
    coef = [Fraction(4**n * (4**n - 1)) * bern[2 * n] / factorial(2 * n) for n in range(2, 31)]
    return [-LD(c.numerator) / LD(c.denominator) for c in coef]


TANH_SHRINK_SERIES = _tanh_shrink_series()


def _nan_where(x, y):
    return np.where(np.isnan(x), LD(np.nan), y)


def ref_tanh_shrink(x):
    y = x * x
    p = np.zeros_like(x)
    for c in TANH_SHRINK_SERIES[::-1]:
        p = p * np.where(np.abs(x) < 0.5, y, 0) + c
    return np.where(np.abs(x) < 0.5, x * y * p, x - np.tanh(x))


def ref_erfc_cf(z, terms=300):
    """erfc(z) for z >= 1 from Laplace's continued fraction (long double, ~1e-17 relative):
    sqrt(pi) exp(z^2) erfc(z) = 1 / (z + (1/2) / (z + (2/2) / (z + (3/2) / ...)))."""
    t = z.copy()
    for k in range(terms, 0, -1):
        t = z + LD(k) / 2 / t
    return np.exp(-z * z) / (np.sqrt(PI) * t)


def ref_gelu(x):
    """x Phi(x) with Phi(x) = erfc(-x / sqrt2) / 2: erf's Taylor series for |z| < 1, the
    continued fraction above beyond (relative accuracy deep into the tail)."""
    z = x / np.sqrt(LD(2))
    small = np.abs(z) < 1
    zs = np.where(small, z, 0)
    term, erf = zs.copy(), zs.copy()
    for n in range(1, 40):
        term = -term * zs * zs / n
        erf = erf + term / (2 * n + 1)
    erf = erf * 2 / np.sqrt(PI)
    tail = 0.5 * ref_erfc_cf(np.where(small, 1, np.abs(z)))
    phi = np.where(small, 0.5 + 0.5 * erf, np.where(x < 0, tail, 1 - tail))
    return np.where(np.isneginf(x), LD(-0.0), x * phi)


def ref_gelu_tanh(x):
    u = np.sqrt(LD(2) / PI) * (x + LD("0.044715") * x**3)
    return np.where(np.isneginf(x), LD(-0.0), x / (1 + np.exp(-2 * u)))


def ref_relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    y = np.where(x > threshold, x, LD(0))
    if max_value is not None:
        y = np.clip(y, 0, max_value)
    if negative_slope != 0:
        y = y - LD(negative_slope) * np.where(x < threshold, threshold - x, 0)
    return _nan_where(x, y)


def ref_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ref_log_softmax(x):
    w = x - x.max(-1, keepdims=True)
    rest = np.where(w == 0, 0, np.exp(w)).sum(-1, keepdims=True) + ((w == 0).sum(-1, keepdims=True) - 1)
    return w - np.log1p(rest)


def ref_sparsemax(x):
    """Keras's sort-based sparsemax."""
    zs = -np.sort(-x, axis=-1)
    cs = np.cumsum(zs, -1)
    k = np.arange(1, x.shape[-1] + 1)
    support = zs - (cs - 1) / k > 0
    kk = support.sum(-1, keepdims=True)
    tau = (np.take_along_axis(cs, kk - 1, -1) - 1) / kk
    return np.maximum(x - tau, 0)


def ref_glu(x):
    a, b = np.split(x, 2, axis=-1)
    return a / (1 + np.exp(-b))


ELEMENTWISE_REF = {
    "linear": lambda x: x,
    "relu": ref_relu,
    "relu6": lambda x: np.clip(x, 0, 6),
    "leaky_relu": lambda x, negative_slope=0.2: ref_relu(x, negative_slope=negative_slope),
    "elu": lambda x, alpha=1.0: np.where(x >= 0, x, LD(alpha) * np.expm1(np.minimum(x, 0))),
    "selu": lambda x: SELU_SCALE * np.where(x >= 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "celu": lambda x, alpha=1.0: np.where(x >= 0, x, LD(alpha) * np.expm1(np.minimum(x, 0) / LD(alpha))),
    "gelu": lambda x, approximate=False: ref_gelu_tanh(x) if approximate else ref_gelu(x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: np.where(x <= -3, 0, np.where(x >= 3, x, x * (x + 3) / 6)),
    "silu": lambda x: np.where(np.isneginf(x), LD(-0.0), x / (1 + np.exp(-x))),
    "tanh": np.tanh,
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "tanh_shrink": ref_tanh_shrink,
    "softplus": lambda x: np.logaddexp(x, LD(0)),
    "softsign": lambda x: np.where(np.isinf(x), np.sign(x), x / (1 + np.abs(x))),
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x < 1, (x + 1) ** 2 / 4, x)),
    "sparse_sigmoid": lambda x: np.where(x <= -1, 0, np.where(x >= 1, 1, (x + 1) / 2)),
    "squareplus": lambda x, b=4.0: np.where(
        x >= 0, (x + np.sqrt(x * x + LD(b))) / 2, LD(b) / (2 * (np.sqrt(x * x + LD(b)) - x))),
    "log_sigmoid": lambda x: -np.logaddexp(LD(0), -x),
    "exponential": np.exp,
    "mish": lambda x: np.where(np.isneginf(x), LD(-0.0), x * np.tanh(np.logaddexp(x, LD(0)))),
    "soft_shrink": lambda x, threshold=0.5: _nan_where(
        x, np.where(x > threshold, x - LD(threshold), np.where(x < -threshold, x + LD(threshold), 0))),
    "hard_shrink": lambda x, threshold=0.5: _nan_where(x, np.where(np.abs(x) > threshold, x, 0)),
    "threshold": lambda x, threshold, default_value: _nan_where(x, np.where(x > threshold, x, LD(default_value))),
}
ROWWISE_REF = {"softmax": ref_softmax, "log_softmax": ref_log_softmax, "sparsemax": ref_sparsemax, "glu": ref_glu}


def reference(name, x, **params):
    with np.errstate(all="ignore"):
        r = ({**ELEMENTWISE_REF, **ROWWISE_REF}[name])(np.asarray(x, dtype=LD), **params)
        return np.asarray(r, dtype=LD).astype(np.float64)


def ulp_error(y, ref, dtype):
    """|y - ref| in units in the last place of `dtype` at ref; 0 where both are NaN, or where y is
    the infinity that ref rounds to.  float32 ulps go down to the subnormals (float32 is computed
    in float64, so even its subnormal results are right); float64 results below the normal range
    lost their digits in any formula through exp, and are measured in units of 2^-1074 * 2^52."""
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    fi = np.finfo(dtype)
    floor = fi.minexp if dtype == np.float32 else fi.minexp + fi.nmant
    with np.errstate(all="ignore"):
        _, e = np.frexp(np.abs(ref))
        ulp = np.ldexp(1.0, np.maximum(e - 1 - fi.nmant, floor - fi.nmant))
        err = np.abs(y - ref) / ulp
        rounded = ref.astype(dtype).astype(np.float64)
    ok = (np.isnan(y) & np.isnan(ref)) | (y == ref) | (np.isinf(y) & (y == rounded))
    err = np.where(ok, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def quiet(fn, *args, **kwargs):
    """Call fn with every NumPy floating-point warning (and any warning) turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------

EDGES = [np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, 1e-7, -1e-7,
         0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, 14.6, -14.6, 15.0, -15.0, 20.0, -20.0, 40.0, -40.0,
         88.7, -88.7, 88.72, 89.0, -103.0, -104.0, 110.0, -110.0, 1000.0, -1000.0, 1e30, -1e30,
         3.4028235e38, -3.4028235e38]


def sample_inputs(n=30000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([
        rng.uniform(-100, 100, n),
        rng.standard_normal(n) * 3,
        np.linspace(-20, 20, n + 1),
        np.exp(rng.uniform(-90, 5, n)) * rng.choice([-1.0, 1.0], n),
        EDGES,
    ])
    return x.astype(np.float32)


X32 = sample_inputs()
X64 = np.concatenate([X32.astype(np.float64), np.random.default_rng(1).uniform(-40, 40, 20000),
                      [1e300, -1e300, 700.0, 709.0, 710.0, -745.0, 5e-324, -5e-324]])
# float64 gelu results below 1e-308 (x < -37.5) are subnormal: their ulp is absolute, not relative
GELU64_RANGE = (-37.0, np.inf)

# Per-activation max ulp measured against these references, over X32 and a 2M-point sweep of
# [-100, 100] (AVX2 and baseline paths; the two differ by FMA contraction, not in their bounds).
# The transcendental float32 activations are computed natively in float32 (exp, expm1, erfc, log1p
# polynomials; measured max in brackets); the rest go through float64 and are within 1 ulp.
# float32 subnormal results are measured in absolute units of the smallest denormal.
F32_BOUND = {
    "gelu": 3,            # [AVX2 2.25 at x = -0.808, baseline 2.55 at x = -0.841; every float in [-15, 15]]
    "mish": 5,            # [4.1]
    "silu": 4,            # [3.3]
    "softplus": 4,        # [3.2]
    "log_sigmoid": 4,     # [3.2]
    "sigmoid": 3,         # [2.6]
    "tanh": 3,            # [2.2]
    "selu": 2,            # [AVX2 1.5, baseline 1.7]: scale * expm1
    "celu": 2,            # [1.9 at alpha = 3]
    "elu": 1.5,           # [0.95]
    "exponential": 1.5,   # [0.98]
}


def f32_bound(name, params):
    return 1 if params.get("approximate") else F32_BOUND.get(name, 1)   # gelu's tanh form: float64


F64_BOUND = {"tanh": 3, "tanh_shrink": 3, "mish": 4, "gelu": 4, "silu": 3, "softplus": 2,
             "log_sigmoid": 2, "selu": 2, "celu": 2, "elu": 2, "sigmoid": 2, "exponential": 2,
             "hard_silu": 2, "squareplus": 2}

PARAMS = {  # the parametrised forms checked besides the defaults
    "relu": [dict(negative_slope=0.1), dict(max_value=6.0), dict(threshold=1.5),
             dict(negative_slope=0.3, max_value=2.0, threshold=-0.5), dict(threshold=-1.0),
             dict(negative_slope=0.5, threshold=2.0), dict(max_value=np.inf)],
    "leaky_relu": [dict(negative_slope=0.01), dict(negative_slope=0.0), dict(negative_slope=-0.5)],
    "elu": [dict(alpha=0.5), dict(alpha=2.0)],
    "celu": [dict(alpha=0.5), dict(alpha=3.0), dict(alpha=-1.0)],
    "gelu": [dict(approximate=True)],
    "squareplus": [dict(b=0.0), dict(b=1.0), dict(b=100.0)],
    "soft_shrink": [dict(threshold=0.0), dict(threshold=2.0)],
    "hard_shrink": [dict(threshold=0.0), dict(threshold=2.0)],
    "threshold": [dict(threshold=0.0, default_value=0.0), dict(threshold=1.0, default_value=-7.5),
                  dict(threshold=-2.0, default_value=np.inf)],
}
ELEMENTWISE_CASES = [(name, {}) for name in ELEMENTWISE_REF if name != "threshold"] + [
    (name, p) for name, plist in PARAMS.items() for p in plist]


def case_id(case):
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


# ------------------------------------------------------------------------------------------
# Accuracy
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ELEMENTWISE_CASES, ids=case_id)
def test_float32_within_few_ulp(case):
    name, params = case
    y = quiet(getattr(A, name), X32, **params)
    assert y.dtype == np.float32 and y.shape == X32.shape
    err = ulp_error(y, reference(name, X32, **params), np.float32)
    worst = int(np.argmax(err))
    bound = f32_bound(name, params)
    assert err.max() <= bound, f"{name}{params}: {err.max():.2f} ulp at x={X32[worst]!r} -> {y[worst]!r}"


@needs_ld
@pytest.mark.parametrize("case", ELEMENTWISE_CASES, ids=case_id)
def test_float64_within_few_ulp(case):
    name, params = case
    x = X64
    if name == "gelu" and not params.get("approximate"):
        x = x[(x > GELU64_RANGE[0]) | np.isnan(x)]
    y = quiet(getattr(A, name), x, **params)
    assert y.dtype == np.float64
    err = ulp_error(y, reference(name, x, **params), np.float64)
    worst = int(np.argmax(err))
    assert err.max() <= F64_BOUND.get(name, 1), f"{name}{params}: {err.max():.2f} ulp at x={x[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ELEMENTWISE_CASES, ids=case_id)
def test_nan_in_nan_out(case, dtype):
    name, params = case
    x = np.array([np.nan, 1.0, -np.nan, 0.0], dtype)
    y = quiet(getattr(A, name), x, **params)
    assert np.isnan(y[[0, 2]]).all() and not np.isnan(y[[1, 3]]).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_spurious_overflow(dtype):
    assert quiet(A.sigmoid, np.array([-1000.0, 1000.0], dtype)).tolist() == [0.0, 1.0]
    assert quiet(A.softplus, np.array([1000.0, -1000.0], dtype)).tolist() == [1000.0, 0.0]
    assert quiet(A.log_sigmoid, np.array([-1000.0, 1000.0], dtype)).tolist() == [-1000.0, 0.0]
    assert quiet(A.silu, np.array([-np.inf, np.inf], dtype)).tolist() == [0.0, np.inf]
    assert quiet(A.gelu, np.array([-np.inf, np.inf], dtype)).tolist() == [0.0, np.inf]
    assert quiet(A.mish, np.array([-np.inf, np.inf], dtype)).tolist() == [0.0, np.inf]
    assert quiet(A.softsign, np.array([-np.inf, np.inf], dtype)).tolist() == [-1.0, 1.0]
    assert quiet(A.elu, np.array([-np.inf], dtype)).tolist() == [-1.0]
    assert quiet(A.squareplus, np.array([-np.inf, np.inf], dtype)).tolist() == [0.0, np.inf]
    big = 88.7 if dtype == np.float32 else 709.0
    assert np.isfinite(quiet(A.exponential, np.array([big], dtype))).all()
    assert quiet(A.exponential, np.array([big + 1.0, -np.inf], dtype)).tolist() == [np.inf, 0.0]


# ------------------------------------------------------------------------------------------
# Row-wise activations and glu
# ------------------------------------------------------------------------------------------

ROW_BOUNDS = {  # (float32, float64) max ulp
    "softmax": (2.0, 3), "log_softmax": (1.0, 3), "glu": (1.0, 3)}


def _rows(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    scale = rng.choice([1.0, 10.0, 1e3], size=shape[:-1] + (1,))
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (3, 1000), (2, 100003), (4, 1), (2, 3, 8)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax", "glu"])
def test_rowwise(name, shape, dtype):
    if name == "glu" and shape[-1] % 2:
        shape = shape[:-1] + (shape[-1] + 1,)
    x = _rows(shape, dtype, seed=shape[-1])
    y = quiet(getattr(A, name), x)
    r = reference(name, x)
    assert y.dtype == dtype and y.shape == r.shape
    if name == "sparsemax":   # outputs near 0 come from cancellation: bound the absolute error
        scale = np.maximum(np.abs(x).max(-1, keepdims=True), 1.0)
        assert (np.abs(y - r) / scale).max() <= 4 * np.finfo(dtype).eps
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)
        return
    if dtype == np.float64 and not EXTENDED:
        np.testing.assert_allclose(y, r, rtol=1e-13, atol=1e-300)
        return
    bound = ROW_BOUNDS[name][dtype == np.float64]
    assert ulp_error(y, r, dtype).max() <= bound
    if name == "softmax":
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rowwise_huge_and_special_rows(dtype):
    big = np.finfo(dtype).max
    x = np.array([[1e30, 1e30, -1e30, 0.0], [big, big, big, -big], [-np.inf, 0.0, 1.0, 2.0],
                  [0.0, -30.0, -40.0, -50.0]], dtype)
    s = quiet(A.softmax, x)
    np.testing.assert_allclose(s[0], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(s[1], [1 / 3, 1 / 3, 1 / 3, 0], rtol=1e-6)
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s.sum(-1), 1.0, rtol=1e-6)
    assert s[2, 0] == 0.0
    ls = quiet(A.log_softmax, x)
    assert np.isfinite(ls[[0, 3]]).all() and ls[2, 0] == -np.inf and np.isfinite(ls[2, 1:]).all()
    assert ls[3, 0] < 0 and abs(ls[3, 0] + 9.3580e-14) < 1e-17   # -log1p(e^-30 + ...), not log(1 + tiny)
    sp = quiet(A.sparsemax, x)
    np.testing.assert_allclose(sp, [[0.5, 0.5, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 1], [1, 0, 0, 0]],
                               rtol=1e-6)
    for fn in (A.softmax, A.log_softmax, A.sparsemax):   # a NaN poisons its whole row only
        y = quiet(fn, np.array([[np.nan, 1.0, 2.0], [1.0, 2.0, 3.0]], dtype))
        assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


def test_glu_halves_the_last_axis():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 12
    y = quiet(A.glu, x)
    assert y.shape == (2, 3, 2)
    np.testing.assert_allclose(y, x[..., :2] * sc.expit(x[..., 2:]), rtol=1e-6)
    assert A.glu(np.zeros((3, 0), np.float32)).shape == (3, 0)
    with pytest.raises(ValueError, match=r"even size.*\(2, 3\)"):
        A.glu(np.ones((2, 3)))
    with pytest.raises(ValueError, match="rank >= 1"):
        A.glu(np.float32(1.0))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax", "glu"])
def test_rowwise_axis(name):
    x = np.ones((2, 4))
    fn = getattr(A, name)
    np.testing.assert_array_equal(fn(x, axis=1), fn(x))
    with pytest.raises(ValueError, match=f"{name}.*last axis.*axis=0"):
        fn(x, axis=0)
    with pytest.raises(ValueError, match="last axis"):
        A.resolve(functools.partial(fn, axis=1))
    assert A.resolve(functools.partial(fn, axis=-1)) == A.resolve(name)


# ------------------------------------------------------------------------------------------
# Property tests
# ------------------------------------------------------------------------------------------

float32_arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
                            elements=st.floats(width=32, allow_subnormal=True))


@settings(max_examples=60, deadline=None)
@given(x=float32_arrays, case=st.sampled_from(ELEMENTWISE_CASES))
def test_property_any_float32(x, case):
    name, params = case
    y = quiet(getattr(A, name), x, **params)
    assert y.shape == x.shape and y.dtype == np.float32
    bound = 1 if params.get("approximate") else F32_BOUND.get(name, 1)
    assert ulp_error(y, reference(name, x, **params), np.float32).max() <= bound


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
                    elements=st.floats(-1e4, 1e4)),
       name=st.sampled_from(["softmax", "log_softmax", "sparsemax"]))
def test_property_rowwise(x, name):
    y = quiet(getattr(A, name), x)
    r = reference(name, x)
    scale = np.maximum(np.abs(x).max(-1, keepdims=True), 1.0)
    tol = 8 * np.finfo(np.float64).eps * (scale if name != "softmax" else 1.0)
    assert (np.abs(y - r) <= tol).all()
    if name != "log_softmax":
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-12)


# ------------------------------------------------------------------------------------------
# The CPU paths and the fused kernel give the same numbers
# ------------------------------------------------------------------------------------------

def test_cpu_path_reported():
    assert _kernels.cpu_path() in ("avx512", "avx2", "neon", "baseline")


@pytest.mark.parametrize("path", ["baseline", "avx2", "avx512", "neon"])
def test_every_cpu_path_within_bound(tmp_path, path):
    """Force one CPU path in a child process.  The paths need not give the same bits (the AVX2 and
    AVX-512 copies fuse multiply-adds, the baseline cannot; numpy's SIMD paths differ too), but
    each must be within the activation's float32 bound of the float64 reference, and so within
    twice that bound of this process's path.  Row-wise ops work in float64: within 1 ulp."""
    rows = _rows((3, 40), np.float32, 5)
    cases = [(n, {}) for n in ROWWISE_REF] + ELEMENTWISE_CASES
    np.savez(tmp_path / "in.npz", x=X32, rows=rows)
    code = (
        "import sys, json, numpy as np\n"
        "from fastdense import activations as A, _kernels\n"
        "d = np.load(sys.argv[1])\n"
        "cases = json.loads(sys.argv[3])\n"
        "out = {str(i): getattr(A, n)(d['rows'] if n in sys.argv[4:] else d['x'], **p)\n"
        "       for i, (n, p) in enumerate(cases)}\n"
        "np.savez(sys.argv[2], path=_kernels.cpu_path(), **out)\n")
    env = dict(os.environ, FASTDENSE_CPU_PATH=path)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
                           json.dumps(cases), *ROWWISE_REF], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz") as npz:
        out = dict(npz)
    if str(out["path"]) != path:
        pytest.skip(f"this CPU has no {path} path (got {out['path']})")
    for i, (name, params) in enumerate(cases):
        y = out[str(i)]
        if name in ROWWISE_REF:
            here = getattr(A, name)(rows)
            assert ulp_error(y, here.astype(np.float64), np.float32).max() <= 1.0, name
            continue
        bound = f32_bound(name, params)
        err = ulp_error(y, reference(name, X32, **params), np.float32)
        worst = int(np.argmax(err))
        assert err.max() <= bound, f"{path} {name}{params}: {err.max():.2f} ulp at x={X32[worst]!r} -> {y[worst]!r}"
        here = getattr(A, name)(X32, **params)
        assert ulp_error(y, here.astype(np.float64), np.float32).max() <= 2 * bound, (path, name, params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ELEMENTWISE_CASES + [(n, {}) for n in ROWWISE_REF], ids=case_id)
def test_fused_dense_matches_activation(case, dtype):
    """dense(x, I, b, act) runs the same epilogue with a bias: equal to act(x + b)."""
    name, params = case
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 8)) * 4).astype(dtype)   # finite: x @ I would spread NaN along rows
    x[0, :2] = [1e30, -1e30]
    b = rng.standard_normal(8).astype(dtype)
    fn = getattr(A, name)
    act = functools.partial(fn, **params) if params else name
    fused = quiet(ops.dense, x, np.eye(8, dtype=dtype), b, act)
    plain = quiet(fn, x + b, **params)
    np.testing.assert_array_equal(fused, plain)


# ------------------------------------------------------------------------------------------
# Inputs: dtypes, shapes, layouts
# ------------------------------------------------------------------------------------------

def test_dtypes():
    assert A.relu(np.array([1, -2], np.int64)).dtype == np.float32
    assert A.relu(np.array([True, False])).dtype == np.float32
    assert A.sigmoid(np.array([1, 2], np.float16)).dtype == np.float32
    assert A.sigmoid(np.array([1.0], np.float64)).dtype == np.float64
    assert A.sigmoid([0.0, 1.0]).dtype == np.float64   # as np.asarray
    assert A.sigmoid(np.array([1.0], np.longdouble)).dtype == np.float64
    np.testing.assert_allclose(A.sigmoid(np.array([0, 2], np.int8)), sc.expit([0, 2]), rtol=1e-6)
    for bad in (np.array([1 + 2j]), np.array(["a"]), np.array([object()], dtype=object)):
        with pytest.raises(TypeError, match="real numeric array"):
            A.relu(bad)


def test_shapes_and_layouts():
    x = np.arange(-12, 12, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(A.tanh(x.T), np.tanh(x.T).astype(np.float32))
    np.testing.assert_array_equal(A.relu(x[:, ::2]), np.maximum(x[:, ::2], 0))
    frozen = x.copy()
    frozen.flags.writeable = False
    y = A.softmax(frozen)
    assert y is not frozen and (frozen == x).all()
    assert A.relu(np.float32(-3.0)).shape == ()
    assert A.relu(np.zeros((0, 5), np.float32)).shape == (0, 5)
    assert A.softmax(np.zeros((3, 0), np.float32)).shape == (3, 0)
    assert A.gelu(np.ones((2, 3, 4, 5))).shape == (2, 3, 4, 5)
    with pytest.raises(ValueError, match="rank >= 1"):
        A.softmax(np.float32(1.0))


# ------------------------------------------------------------------------------------------
# Names, aliases, the kernel table
# ------------------------------------------------------------------------------------------

def test_every_keras_name_is_here():
    assert sorted(A.ALL_NAMES) == sorted(KERAS_NAMES)
    for name in KERAS_NAMES:
        assert callable(getattr(A, name))
    assert A.swish is A.silu and A.hard_swish is A.hard_silu


def test_table_matches_the_kernel():
    table = _kernels.activation_table()
    assert [info.code for info in table] == list(range(len(table)))
    assert {info.name for info in table} == set(A._TABLE)
    for info in table:
        assert getattr(_kernels, "FD_ACT_" + info.id) == info.code
        entry = A._TABLE[info.name]
        assert (entry.code, entry.rowwise, entry.halves) == (info.code, info.rowwise, info.halves)
        spec = A._spec(info.name, {"threshold": 0.0, "default_value": 0.0} if info.name == "threshold" else {})
        assert spec.kernel == A.KernelActivation(info.code, *spec.params, info.halves)
    assert {info.name for info in table if info.rowwise} == {"softmax", "log_softmax", "sparsemax", "glu"}
    assert [info.name for info in table if info.halves] == ["glu"]
    assert (_kernels.FD_ACT_LINEAR, _kernels.FD_ACT_RELU) == (0, 1)


def test_kernel_activation_record():
    from fastdense import ops
    spec = ops._spec(functools.partial(A.relu, max_value=6.0))
    assert type(spec) is A.KernelActivation
    assert spec.code == _kernels.FD_ACT_RELU and spec.p1 == 6.0 and spec.halves is False
    assert spec[:5] == (spec.code, spec.p0, spec.p1, spec.p2, spec.halves)   # old 5-tuple order
    assert ops._spec("glu") == A.KernelActivation(_kernels.FD_ACT_GLU, 0.0, 0.0, 0.0, True)
    assert A.KernelActivation._fields == ("code", "p0", "p1", "p2", "halves")


def test_resolve():
    assert A.resolve(None) == A.resolve("linear") == A.resolve(A.linear)
    assert A.resolve("swish") == A.resolve(A.silu) == A.resolve("silu")
    assert A.resolve("hard_swish").name == "hard_silu"
    spec = A.resolve(functools.partial(A.relu, max_value=6.0, threshold=0.5))
    assert spec.code == A.resolve("relu").code and spec.params == (0.0, 6.0, 0.5)
    assert np.isnan(A.resolve("relu").params[1])            # max_value None
    assert A.resolve(functools.partial(A.gelu, approximate=True)).params[0] == 1.0
    assert A.resolve("glu").rowwise and A.resolve("glu").halves
    assert A.resolve(np.str_("elu")).name == "elu"
    p = functools.partial(A.leaky_relu, negative_slope=0.1)
    assert A.resolve(p) is A.resolve(p)                      # cached
    p.keywords["negative_slope"] = 0.3                       # ... but not stale
    assert A.resolve(p).params[0] == 0.3
    spec.code  # immutable
    with pytest.raises(AttributeError):
        spec.code = 3


def test_resolve_errors():
    with pytest.raises(ValueError, match=r"Unknown activation 'rleu' \(did you mean 'relu'\?\).*valid names: celu"):
        A.resolve("rleu")
    for bad in (42, np.tanh, lambda x: x, {"class_name": "function", "config": "relu"}, ["relu"]):
        with pytest.raises(TypeError, match="activation must be a name like 'relu' or a fastdense activation function, got"):
            A.resolve(bad)
    with pytest.raises(TypeError, match="unexpected parameter 'alpha'"):
        A.resolve(functools.partial(A.relu, alpha=0.1))
    with pytest.raises(TypeError, match="by keyword"):
        A.resolve(functools.partial(A.relu, 0.1))
    for bare in ("threshold", A.threshold):
        with pytest.raises(ValueError, match="needs its parameters threshold, default_value"):
            A.resolve(bare)
    assert A.resolve(functools.partial(A.threshold, threshold=1.0, default_value=0.0)).params == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="default_value"):
        A.resolve(functools.partial(A.threshold, threshold=1.0))


@pytest.mark.parametrize("call, error, message", [
    (lambda: A.relu(np.ones(2), max_value=float("nan")), ValueError, "max_value must be a non-NaN number"),
    (lambda: A.relu(np.ones(2), negative_slope="0.1"), TypeError, "negative_slope must be a real number"),
    (lambda: A.leaky_relu(np.ones(2), negative_slope=np.inf), ValueError, "negative_slope must be a finite"),
    (lambda: A.celu(np.ones(2), alpha=0.0), ValueError, "alpha must be nonzero"),
    (lambda: A.elu(np.ones(2), alpha=True), TypeError, "alpha must be a real number"),
    (lambda: A.gelu(np.ones(2), approximate="yes"), TypeError, "approximate must be True or False"),
    (lambda: A.squareplus(np.ones(2), b=-1), ValueError, "b must be >= 0"),
    (lambda: A.soft_shrink(np.ones(2), threshold=-0.5), ValueError, "threshold must be >= 0"),
    (lambda: A.softmax(np.ones(2), axis=1.0), TypeError, "axis must be an integer"),
])
def test_parameter_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_parametrised_partials_fuse():
    x = np.array([[-2.0, -0.5, 0.5, 3.0]])
    for fn, params in [(A.relu, dict(negative_slope=0.5, max_value=2.0)), (A.elu, dict(alpha=2.0)),
                       (A.threshold, dict(threshold=0.0, default_value=-1.0)),
                       (A.hard_shrink, dict(threshold=1.0)), (A.squareplus, dict(b=1.0))]:
        p = functools.partial(fn, **params)
        assert A.is_fused(p)
        np.testing.assert_array_equal(ops.dense(x, np.eye(4)), x)
        np.testing.assert_array_equal(ops.dense(x, np.eye(4), None, p), fn(x, **params))
    np.testing.assert_array_equal(A.relu(x[0], negative_slope=0.5, max_value=2.0), [-1.0, -0.25, 0.5, 2.0])
    np.testing.assert_array_equal(A.relu(x[0], threshold=1.0), [0, 0, 0, 3.0])
    np.testing.assert_array_equal(A.threshold(x[0], 0.0, 9.0), [9.0, 9.0, 0.5, 3.0])


# ------------------------------------------------------------------------------------------
# get / serialize / deserialize / is_fused
# ------------------------------------------------------------------------------------------

def test_get():
    assert A.get(None) is A.linear
    assert A.get("swish") is A.silu and A.get("hard_swish") is A.hard_silu
    assert A.get("threshold") is A.threshold
    assert A.get(np.tanh) is np.tanh
    p = functools.partial(A.relu, max_value=1.0)
    assert A.get(p) is p
    assert A.get({"module": "keras.activations", "class_name": "function", "config": "relu",
                  "registered_name": None}) is A.relu
    with pytest.raises(ValueError, match="Unknown activation 'nope'"):
        A.get("nope")
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: 42"):
        A.get(42)


@pytest.mark.parametrize("name", sorted(A.ALL_NAMES))
def test_name_round_trip(name):
    fn = A.get(name)
    canonical = {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)
    assert A.serialize(fn) == canonical == fn.__name__
    assert A.deserialize(A.serialize(fn)) is fn
    assert A.deserialize(name) is fn
    assert A.is_fused(fn) == (name != "threshold")


def test_keras_function_configs():
    # Keras 3.15 writes functions like this; earlier Keras 3 put the module in "module"
    assert A.deserialize({"module": "builtins", "class_name": "function", "config": "swish",
                          "registered_name": "function"}) is A.silu
    assert A.deserialize({"module": "keras.src.activations.activations", "class_name": "function",
                          "config": "gelu", "registered_name": None}) is A.gelu
    with pytest.raises(ValueError):
        A.deserialize({"module": "builtins", "class_name": "function", "config": "nope",
                       "registered_name": "function"})
    with pytest.raises(ValueError, match="Unknown activation 'nope'"):
        A.deserialize("nope")


def test_partial_round_trip():
    for p in [functools.partial(A.relu, max_value=6.0, negative_slope=0.1),
              functools.partial(A.gelu, approximate=True),
              functools.partial(A.threshold, threshold=0.5, default_value=-1.0)]:
        config = A.serialize(p)
        assert json.loads(json.dumps(config)) == config
        back = A.deserialize(config)
        assert back.func is p.func and back.keywords == p.keywords
        assert A.resolve(back) == A.resolve(p)
    assert A.serialize(functools.partial(A.leaky_relu, negative_slope=0.2)) == "leaky_relu"  # defaults
    with pytest.raises(TypeError, match="unexpected parameter 'b'"):
        A.deserialize({"module": "fastdense.activations", "class_name": "partial",
                       "config": {"name": "relu", "b": 1.0}, "registered_name": None})


def test_serialize_foreign_callables():
    for bad in (np.tanh, lambda x: x, functools.partial(np.maximum, 0.0)):
        with pytest.raises(ValueError, match="Cannot serialize activation"):
            A.serialize(bad)
        assert not A.is_fused(bad)
    assert A.serialize(None) == "linear" and A.serialize("swish") == "silu"


def test_registered_custom_activation():
    from fastdense.saving import register_serializable

    @register_serializable(package="TestActivations")
    def scaled_tanh(x):
        return 2.0 * np.tanh(x)

    config = A.serialize(scaled_tanh)
    assert isinstance(config, dict) and config["config"] == "TestActivations>scaled_tanh"
    assert A.deserialize(config) is scaled_tanh
    assert A.get(scaled_tanh) is scaled_tanh and not A.is_fused(scaled_tanh)
    with pytest.raises(TypeError, match="activation must be a name"):
        A.resolve(scaled_tanh)
