"""ops.dense's fast paths (``_kernels.dense_fast``: float, packed and quantized kernels; the
quantized one is ``_qdense_fast`` -> ``_qdense_run``) against what a NumPy user can pass: every
dtype and byte order, layouts, ranks, subclasses, lists, ``out=`` of every wrong kind, NaN and
inf, several threads. The fast path must give the validating path's bits or hand the call to it;
values against the int64 NumPy reference (int8) or the float64 one (float kernels, int4)."""

import os
import tempfile

import numpy as np
import pytest

from fastdense import _kernels, ops
from fastdense import quantizers as Q
from _helpers import run_in_threads

K, N, M = 40, 18, 6
_RNG = np.random.default_rng(2026)
X = (_RNG.standard_normal((M, K)) * _RNG.uniform(0.2, 3, size=(M, 1))).astype(np.float32)
W = (_RNG.standard_normal((K, N)) * 0.3).astype(np.float32)
B = _RNG.standard_normal(N).astype(np.float32)
_W4 = Q.quantize_int4(W, -1)
KERNELS = {
    "float32": W,
    "float64": W.astype(np.float64),
    "packed": ops.pack_kernel(W),
    "int8": ops.quantize_kernel(W, "int8"),
    "int4/16": ops.quantize_kernel(W, "int4", block_size=16),
    "int4/unit": ops.quantize_kernel(W, "int4", block_size=None),
    "int4/inputs": _kernels.QuantizedKernel("int4", Q.pack_int4(_W4.q), _W4.scale, None, -1, True),
}
QUANTIZED = [name for name in KERNELS if name.startswith("int")]
# np.matrix is one of the inputs: NumPy warns on creating one
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


def _dtype_of(name):
    return np.dtype(np.float64 if name == "float64" else np.float32)


def reference(name, x, bias=B, activation="relu"):
    """float64 relu(x @ w + b) of the kernel's arithmetic: exact int64 products for int8 and
    int4 with quantized inputs (Q.int8_dense_reference), float64 products of the dequantized
    kernel for float-input int4 (Q.int4_dense_reference), x cast to the compute dtype first."""
    x2 = np.asarray(x).reshape(-1, K).astype(_dtype_of(name))
    if name in ("float32", "float64", "packed"):
        z = x2.astype(np.float64) @ W.astype(_dtype_of(name)).astype(np.float64) + bias
    elif name == "int8":
        z = Q.int8_dense_reference(x2, *Q.quantize_int8(W), bias).astype(np.float64)
    elif name == "int4/inputs":
        z = Q.int8_dense_reference(x2, _W4.q, _W4.scale, bias).astype(np.float64)
    else:
        block = 16 if name == "int4/16" else -1
        z = Q.int4_dense_reference(x2, Q.quantize_int4(W, block), bias).astype(np.float64)
    if activation == "relu":
        z = np.maximum(z, 0)
    return z.reshape(np.shape(x)[:-1] + (N,))


def assert_close_to_reference(name, got, x, **kwargs):
    want = reference(name, x, **kwargs)
    assert got.shape == want.shape
    if name in ("int8", "int4/inputs"):   # exact integer sums, one float32 de-scaling
        np.testing.assert_array_equal(got, want.astype(np.float32))
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def _unaligned(a):
    """a's values in a C-contiguous array whose data starts one byte past an aligned address."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def _inputs(tmp):
    """name -> (what a user passes, its values as a float64 array or None when it must be refused)."""
    read_only = X.copy()
    read_only.flags.writeable = False
    memmap = np.memmap(os.path.join(tmp, "x.f32"), np.float32, "w+", shape=X.shape)
    memmap[...] = X
    ints = np.round(X * 3)
    return {
        "float32": (X, X),
        "float16": (X.astype(np.float16), X.astype(np.float16)),
        "float64": (X.astype(np.float64), X.astype(np.float64)),
        "longdouble": (X.astype(np.longdouble), X),
        "int32": (ints.astype(np.int32), ints),
        "int8": (ints.astype(np.int8), ints),
        "uint16": (np.abs(ints).astype(np.uint16), np.abs(ints)),
        "bool": (X > 0, (X > 0).astype(np.float64)),
        "big-endian f4": (X.astype(">f4"), X),
        "big-endian f8": (X.astype(">f8"), X),
        "fortran": (np.asfortranarray(X), X),
        "negative rows": (X[::-1], X[::-1]),
        "negative columns": (X[:, ::-1].copy()[:, ::-1], X),
        "every other row": (np.repeat(X, 2, axis=0)[::2], X),
        "unaligned": (_unaligned(X), X),
        "broadcast row": (np.broadcast_to(X[:1], X.shape), np.broadcast_to(X[:1], X.shape)),
        "rank 1": (X[2], X[2]),
        "rank 3": (X.reshape(2, 3, K), X.reshape(2, 3, K)),
        "rank 3 transposed": (X.reshape(3, 2, K).transpose(1, 0, 2), X.reshape(3, 2, K).transpose(1, 0, 2)),
        "empty batch": (X[:0], X[:0]),
        "empty middle axis": (X.reshape(2, 3, K)[:, :0], X.reshape(2, 3, K)[:, :0]),
        "read-only": (read_only, X),
        "matrix": (np.asmatrix(X), X),
        "masked": (np.ma.masked_array(X, mask=np.zeros(X.shape, bool)), X),
        "memmap": (memmap, X),
        "list": (X.tolist(), X),
        "object": (X.astype(object), None),
        "complex": (X.astype(np.complex64), None),
        "scalar": (np.float32(1), None),
        "wrong K": (X[:, :-1], None),
    }


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_input_kind_gives_the_reference_or_a_clear_error(name):
    """Each input: the reference's values (x cast to the compute dtype), the same bits as the
    C-contiguous native copy (which the fast path takes; float kernels to rounding), a plain ndarray; the ones that
    cannot be computed raise TypeError/ValueError naming what was expected."""
    kernel = KERNELS[name]
    dtype = _dtype_of(name)
    with tempfile.TemporaryDirectory() as tmp:
        for case, (x, values) in _inputs(tmp).items():
            if values is None:
                with pytest.raises((TypeError, ValueError), match=r"dense: x must"):
                    ops.dense(x, kernel, B, "relu")
                continue
            got = ops.dense(x, kernel, B, "relu")
            assert type(got) is np.ndarray and got.dtype == dtype, case
            clean = np.ascontiguousarray(values, dtype)
            fast = _kernels.dense_fast(clean, kernel, B.astype(dtype), ops._spec("relu"))
            assert fast is not None, case
            if name in ("float32", "float64", "packed"):
                # a BLAS takes strided x as it is (every float64 call; float32 where the packed
                # kernel does not run, FASTDENSE_CPU_PATH=baseline): the rounding may differ
                tol = 1e-14 if name == "float64" else 1e-6
                np.testing.assert_allclose(got, fast, rtol=tol, atol=tol, err_msg=case)
            else:
                np.testing.assert_array_equal(got, fast, err_msg=case)
            assert_close_to_reference(name, got, clean)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_byte_swapped_operands_are_converted_not_read_as_native(name):
    """A '>f4' / '>f8' array has the native type number: the fast path took it and read its bytes
    as native numbers (garbage results, and garbage written into a '>f4' out)."""
    kernel = KERNELS[name]
    dtype = _dtype_of(name)
    want = ops.dense(X, kernel, B, "relu")
    swapped = dtype.newbyteorder(">")
    assert _kernels.dense_fast(X.astype(swapped), kernel, B.astype(dtype), ops._spec("relu")) is None
    assert _kernels.dense_fast(X.astype(dtype), kernel, B.astype(swapped), ops._spec("relu")) is None
    np.testing.assert_array_equal(ops.dense(X.astype(swapped), kernel, B, "relu"), want)
    np.testing.assert_array_equal(ops.dense(X, kernel, B.astype(swapped), "relu"), want)
    np.testing.assert_array_equal(ops.dense(X, kernel, B.astype(">f8"), "relu"), want)
    out = np.zeros((M, N), swapped)
    with pytest.raises(ValueError, match=rf"out must have shape \({M}, {N}\) and dtype {dtype}, got .* dtype >f"):
        ops.dense(X, kernel, B, "relu", out=out)
    assert not out.any()
    if name in ("float32", "float64"):   # a big-endian kernel: cast once by the validating path
        np.testing.assert_array_equal(ops.dense(X, W.astype(swapped), B, "relu"), want)


@pytest.mark.parametrize("name", QUANTIZED)
def test_out_of_every_kind(name):
    """out=: written in place and returned when right (also unaligned, or when it is a memmap or
    an aligned slice of a bigger buffer); refused before anything is written when it aliases x or
    the bias, or has the wrong shape, dtype, layout or writeability."""
    kernel = KERNELS[name]
    want = ops.dense(X, kernel, B, "relu")
    for good in (np.empty((M, N), np.float32), _unaligned(np.empty((M, N), np.float32)),
                 np.empty(M * N + 64, np.float32)[64:].reshape(M, N)):
        assert ops.dense(X, kernel, B, "relu", out=good) is good
        np.testing.assert_array_equal(good, want)
    with tempfile.TemporaryDirectory() as tmp:
        mapped = np.memmap(os.path.join(tmp, "out.f32"), np.float32, "w+", shape=(M, N))
        assert ops.dense(X, kernel, B, "relu", out=mapped) is mapped
        np.testing.assert_array_equal(mapped, want)
        del mapped
    read_only = np.zeros((M, N), np.float32)
    read_only.flags.writeable = False
    shared = np.zeros(M * K + M * N, np.float32)
    x_in_shared = shared[: M * K].reshape(M, K)
    x_in_shared[...] = X
    bias_shared = np.zeros(M * N + N, np.float32)
    bias_shared[:N] = B
    bad = {
        "shape": (X, B, np.zeros((M, N + 1), np.float32), "out must have shape"),
        "rank": (X, B, np.zeros((M * N,), np.float32), "out must have shape"),
        "dtype": (X, B, np.zeros((M, N), np.float64), "out must have shape"),
        "fortran": (X, B, np.zeros((N, M), np.float32).T, "out must be C-contiguous"),
        "strided": (X, B, np.zeros((M, 2 * N), np.float32)[:, ::2], "out must be C-contiguous"),
        "read-only": (X, B, read_only, "out must be writeable"),
        "list": (X, B, np.zeros((M, N)).tolist(), "out must be a numpy array"),
        "x itself": (x_in_shared, B, shared[: M * N].reshape(M, N), "shares memory with x"),
        "x's tail": (x_in_shared, B, shared[M * K - 5: M * K - 5 + M * N].reshape(M, N), "shares memory with x"),
        "bias": (X, bias_shared[:N], bias_shared[N - 1: N - 1 + M * N].reshape(M, N), "shares memory with bias"),
    }
    for case, (x, bias, out, message) in bad.items():
        before = np.array(out, copy=True)
        with pytest.raises(ValueError, match=message):
            ops.dense(x, kernel, bias, "relu", out=out)
        np.testing.assert_array_equal(np.asarray(out), before, err_msg=case)
    # out next to x (touching, not overlapping) is fine
    beside = shared[M * K:].reshape(M, N)
    assert ops.dense(x_in_shared, kernel, B, "relu", out=beside) is beside
    np.testing.assert_array_equal(beside, want)


@pytest.mark.parametrize("name", QUANTIZED)
def test_nan_and_inf_rows(name):
    """Keras gives NaN outputs for a row with NaN or inf when it quantizes the inputs (int8, int4
    with quantized inputs: the row's scale is 0 or NaN); float-input int4 multiplies the float
    values, so NaN and inf reach exactly the outputs they reach in float64. Other rows keep their
    values; fast and validating paths agree."""
    kernel = KERNELS[name]
    x = X.copy()
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    x[3, 5] = -np.inf
    x[4, :] = np.inf
    x[5, :] = 0
    with np.errstate(invalid="ignore", over="ignore"):
        got = ops.dense(x, kernel, B)
        validating = ops.dense(x.tolist(), kernel, B)
        want = reference(name, x, activation="linear")
    np.testing.assert_array_equal(got, validating)
    finite = [0, 5]
    assert_close_to_reference(name, got[finite], x[finite], activation="linear")
    if name in ("int8", "int4/inputs"):
        assert np.isnan(got[1:5]).all()
    else:
        np.testing.assert_array_equal(np.isnan(got[1:5]), np.isnan(want[1:5]))
        infinite = np.isinf(want[1:5])
        np.testing.assert_array_equal(got[1:5][infinite], want[1:5][infinite])
        assert np.isinf(got[1:5]).sum() == infinite.sum()
        assert infinite.any() and np.isnan(want[1:5]).any()
    # softmax of a NaN row is NaN, of the others a distribution
    soft = ops.dense(x, kernel, B, "softmax")
    np.testing.assert_allclose(soft[finite].sum(axis=1), 1, rtol=1e-6)
    assert np.isnan(soft[1]).all()


@pytest.mark.parametrize("name", QUANTIZED)
def test_threads_share_a_kernel_bit_for_bit(name):
    """One QuantizedKernel from several Python threads at once, with batch sizes and ranks
    alternating: every result equals the single-thread one bit for bit."""
    kernel = KERNELS[name]
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal(shape).astype(np.float32) for shape in ((1, K), (7, K), (K,), (2, 5, K), (33, K))]
    single = [ops.dense(x, kernel, B, "relu") for x in xs]
    failures = []

    def work(seed):
        order = np.random.default_rng(seed).integers(len(xs), size=200)
        for i in order:
            if not np.array_equal(ops.dense(xs[i], kernel, B, "relu"), single[i]):
                failures.append(i)

    run_in_threads(work, range(4))
    assert failures == []
