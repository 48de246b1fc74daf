"""The packed-weight float32 GEMM: ops.pack_kernel / PackedKernel, the Dense layer's packed
kernel and model plans, against float64 NumPy; bitwise invariance over batch size, row
position, thread count and the validating (slow) path; the baseline CPU path in a child."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from _helpers import run_in_threads, softmax64

import fastdense
from fastdense import _kernels, ops
from fastdense.layers import Dense, Flatten
from fastdense.models import Model, Sequential
from fastdense.models.plan import compile_plan

needs_packed = pytest.mark.skipif(not ops.packed_available(),
                                  reason="the packed GEMM needs AVX2 + FMA (and no FASTDENSE_CPU_PATH=baseline)")


REFERENCE = {  # float64 formulas, independent of the kernel
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "softmax": softmax64,
    "glu": lambda z: z[..., : z.shape[-1] // 2] / (1 + np.exp(-z[..., z.shape[-1] // 2:])),
}


def pre_activation(x, w, b):
    """(z, mag): float64 x @ w + b and the rounding scale sum |x||w| + |b| per output."""
    x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)
    z = x64 @ w64
    mag = np.abs(x64) @ np.abs(w64)
    if b is not None:
        z = z + np.asarray(b, np.float64)
        mag = mag + np.abs(np.asarray(b, np.float64))
    return z, mag


def assert_matches(y, x, w, b, act, z_mag=None, dtype=np.float32):
    """y agrees with the float64 reference within float32 rounding of the dot products."""
    z, mag = pre_activation(x, w, b) if z_mag is None else z_mag
    ref = REFERENCE[act](z)
    assert y.shape == ref.shape
    assert y.dtype == dtype
    scale = 1e-5 if dtype == np.float32 else 1e-12
    atol = scale * (mag.max(initial=0) + 1)
    if act == "glu":  # a * sigmoid(g): an error in g is multiplied by |a|
        atol *= 1 + np.abs(z).max(initial=0)
    np.testing.assert_allclose(y, ref, rtol=0, atol=atol)


def data(m, k, n, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    return x, w, b


@pytest.fixture
def restore_threads():
    yield
    fastdense.set_num_threads(None)


# ----------------------------------------------------------------------------- pack_kernel


def test_pack_kernel_is_an_independent_read_only_copy():
    x, w, b = data(9, 40, 37, 0)
    source = w.copy()
    pk = ops.pack_kernel(source)
    assert type(pk) is ops.PackedKernel
    assert pk.shape == (40, 37) and pk.dtype == np.float32
    np.testing.assert_array_equal(pk.kernel, w)
    assert not np.shares_memory(pk.kernel, source)
    assert pk.kernel.flags.c_contiguous and not pk.kernel.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        pk.kernel[0, 0] = 1.0
    with pytest.raises(AttributeError):
        pk.kernel = source
    before = ops.dense(x, pk, b, "relu")
    source[...] = 0.0  # the caller's array changes: the packed copy does not
    after = ops.dense(x, pk, b, "relu")
    np.testing.assert_array_equal(after, before)
    assert_matches(after, x, w, b, "relu")
    np.testing.assert_array_equal(pk.kernel, w)


@needs_packed
@pytest.mark.parametrize("k, n", [(1, 1), (3, 16), (5, 17), (17, 33), (2, 48)])
def test_packed_layout_is_panels_of_16_columns(k, n):
    w = np.arange(1, k * n + 1, dtype=np.float32).reshape(k, n)
    pk = ops.pack_kernel(w)
    panels = -(-n // 16)
    assert pk.packed.dtype == np.float32 and pk.packed.ndim == 1
    assert pk.packed.shape == (panels * 16 * k,)
    assert not pk.packed.flags.writeable
    assert pk.packed.ctypes.data % 64 == 0   # panels start on a cache line
    with pytest.raises(ValueError):
        pk.packed.flags.writeable = True
    expected = np.zeros((k, panels * 16), np.float32)
    expected[:, :n] = w
    expected = expected.reshape(k, panels, 16).transpose(1, 0, 2).reshape(-1)
    np.testing.assert_array_equal(pk.packed, expected)
    assert repr(pk) == f"<PackedKernel shape=({k}, {n}) dtype=float32 (packed)>"


@pytest.mark.parametrize("layout", ["F", "strided", "list"])
def test_pack_kernel_accepts_any_layout(layout):
    x, w, b = data(6, 20, 35, 1)
    src = {"F": np.asfortranarray(w), "strided": np.repeat(w, 2, axis=1)[:, ::2], "list": w.tolist()}[layout]
    pk = ops.pack_kernel(src)
    assert pk.kernel.flags.c_contiguous
    assert pk.dtype == (np.float64 if layout == "list" else np.float32)  # Python floats are float64
    np.testing.assert_array_equal(pk.kernel, w)
    y = ops.dense(x, pk, b)
    if layout != "list":
        np.testing.assert_array_equal(y, ops.dense(x, ops.pack_kernel(w), b))
    assert_matches(y, x, w, b, "linear", dtype=pk.dtype)


def test_float64_kernel_keeps_the_blas_path():
    x, w, b = data(13, 70, 40, 2, np.float64)
    pk = ops.pack_kernel(w)
    assert pk.packed is None and pk.dtype == np.float64
    assert "(BLAS)" in repr(pk) and "shape=(70, 40)" in repr(pk) and "float64" in repr(pk)
    y = ops.dense(x, pk, b, "tanh")
    assert_matches(y, x, w, b, "tanh", dtype=np.float64)
    np.testing.assert_array_equal(y, ops.dense(x, w, b, "tanh"))  # the very same BLAS call
    # float32 x is cast to the kernel's float64
    y32 = ops.dense(x.astype(np.float32), pk, b)
    assert y32.dtype == np.float64
    assert_matches(y32, x.astype(np.float32), w, b, "linear", dtype=np.float64)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.float16])
def test_integer_and_half_kernels_are_cast_to_float32(dtype):
    rng = np.random.default_rng(3)
    w = rng.integers(0, 5, (30, 21)).astype(dtype)
    x = rng.standard_normal((8, 30)).astype(np.float32)
    pk = ops.pack_kernel(w)
    assert pk.dtype == np.float32 and pk.kernel.dtype == np.float32
    assert (pk.packed is not None) == ops.packed_available()
    y = ops.dense(x, pk)
    assert_matches(y, x, w, None, "linear")
    np.testing.assert_array_equal(y, ops.dense(x, ops.pack_kernel(w.astype(np.float32))))


@pytest.mark.parametrize("bad, error", [
    (np.ones((2, 3, 4), np.float32), ValueError),
    (np.ones(3, np.float32), ValueError),
    (np.float32(1.0), ValueError),
    (np.ones((2, 3), np.complex64), TypeError),
    (np.ones((2, 3), bool), TypeError),
    (np.array([["a", "b"]]), TypeError),
    (np.ones((2, 2), object), TypeError),
])
def test_pack_kernel_refuses_what_dense_refuses(bad, error):
    with pytest.raises(error) as packed_error:
        ops.pack_kernel(bad)
    with pytest.raises(error) as dense_error:
        ops.dense(np.ones((1, max(np.shape(bad)[:1] or (1,))), np.float32), bad)
    if error is TypeError:  # the same message
        assert str(packed_error.value) == str(dense_error.value)
        assert "real numeric array" in str(packed_error.value)
        if bad.dtype == bool:
            assert "bool kernel is refused" in str(packed_error.value)
    else:
        assert "kernel must be 2-D (K, N)" in str(packed_error.value)
        assert f"got shape {np.shape(bad)}" in str(packed_error.value)


def test_pack_kernel_of_a_packed_kernel_is_itself_and_repr():
    w = np.ones((4, 7), np.float32)
    pk = ops.pack_kernel(w)
    assert ops.pack_kernel(pk) is pk
    text = repr(pk)
    assert "shape=(4, 7)" in text and "float32" in text
    assert text.endswith("(packed)>" if pk.packed is not None else "(BLAS)>")


def test_packed_available_follows_the_cpu_path():
    assert ops.packed_available() == (_kernels.cpu_path() != "baseline")
    assert (ops.pack_kernel(np.ones((2, 2), np.float32)).packed is not None) == ops.packed_available()


def test_packed_kernel_constructor_checks_its_array():
    for arr in (np.ones((3, 4), np.float32, order="F"), np.ones((3, 4), np.int32), np.ones(4, np.float32)):
        with pytest.raises(ValueError, match="C-contiguous 2-D float32 or float64"):
            ops.PackedKernel(arr)


def test_empty_kernels():
    b = np.array([-1.0, 0.5, 2.0], np.float32)
    pk = ops.pack_kernel(np.ones((0, 3), np.float32))  # K = 0: the empty sum, activation(bias)
    assert pk.packed is None
    np.testing.assert_array_equal(ops.dense(np.ones((4, 0), np.float32), pk, b, "relu"),
                                  np.tile([0.0, 0.5, 2.0], (4, 1)).astype(np.float32))
    pk = ops.pack_kernel(np.ones((3, 0), np.float32))  # N = 0
    assert pk.packed is None
    assert ops.dense(np.ones((2, 3), np.float32), pk).shape == (2, 0)
    pk = ops.pack_kernel(np.ones((3, 5), np.float32))  # M = 0
    assert ops.dense(np.ones((0, 3), np.float32), pk).shape == (0, 5)


def test_packed_kernel_errors_match_the_plain_kernel():
    w = np.ones((3, 4), np.float32)
    pk = ops.pack_kernel(w)
    cases = [
        (np.ones((2, 5), np.float32), None, "linear"),      # width mismatch
        (np.ones((2, 3), np.float32), np.ones(3), "linear"),  # bias shape
        (np.float32(1.0), None, "linear"),                    # scalar x
    ]
    for x, b, act in cases:
        with pytest.raises(ValueError) as with_pack:
            ops.dense(x, pk, b, act)
        with pytest.raises(ValueError) as with_plain:
            ops.dense(x, w, b, act)
        assert str(with_pack.value) == str(with_plain.value)
    pk_odd = ops.pack_kernel(np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="even number of units"):
        ops.dense(np.ones((2, 3), np.float32), pk_odd, None, "glu")


# ----------------------------------------------------------------------------- correctness

MS = [1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 31, 32, 33, 100, 145, 300]
KS = [1, 3, 16, 17, 255, 256, 257, 513, 784]
NS = [1, 5, 15, 16, 17, 31, 32, 33, 48, 100, 513]


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("k", KS)
def test_shapes_against_float64(k, n):
    """Every M of MS for linear + bias; relu / softmax / glu and no bias on a subset of M.

    Also: y[:M] is bitwise the first M rows of the largest batch (row results do not depend
    on the batch size nor on which GEMM path -- direct or packed x -- a batch takes)."""
    x, w, b = data(max(MS), k, n, k * 1000 + n)
    pk = ops.pack_kernel(w)
    z, mag = pre_activation(x, w, b)
    full = ops.dense(x, pk, b)
    for m in MS:
        y = ops.dense(x[:m], pk, b)
        assert_matches(y, x[:m], w, b, "linear", (z[:m], mag[:m]))
        np.testing.assert_array_equal(y, full[:m], err_msg=f"m={m}")
    z0, mag0 = pre_activation(x, w, None)
    for m in (1, 5, 7, 33, 145, 300):
        for act in ("relu", "softmax", "glu"):
            if act == "glu" and n % 2:
                continue
            assert_matches(ops.dense(x[:m], pk, b, act), x[:m], w, b, act, (z[:m], mag[:m]))
        assert_matches(ops.dense(x[:m], pk, None, "relu"), x[:m], w, None, "relu", (z0[:m], mag0[:m]))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 160), k=st.integers(1, 600), n=st.integers(1, 140),
       act=st.sampled_from(sorted(REFERENCE)), use_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_random_shapes_against_float64_and_single_rows(m, k, n, act, use_bias, seed):
    if act == "glu" and n % 2:
        n += 1
    x, w, b = data(m, k, n, seed)
    b = b if use_bias else None
    pk = ops.pack_kernel(w)
    y = ops.dense(x, pk, b, act)
    assert_matches(y, x, w, b, act)
    for i in {0, m // 2, m - 1}:
        np.testing.assert_array_equal(ops.dense(x[i:i + 1], pk, b, act), y[i:i + 1])


def test_special_values_stay_in_their_row_and_column():
    x, w, b = data(40, 300, 70, 4)
    pk = ops.pack_kernel(w)
    clean = ops.dense(x, pk, b)
    x_bad = x.copy()
    x_bad[5, 3] = np.nan
    x_bad[20, 0] = np.inf
    y = ops.dense(x_bad, pk, b)
    others = np.setdiff1d(np.arange(40), [5, 20])
    np.testing.assert_array_equal(y[others], clean[others])
    assert np.isnan(y[5]).all()
    ref = pre_activation(x_bad, w, b)[0]
    np.testing.assert_array_equal(np.isposinf(y[20]), np.isposinf(ref[20]))
    np.testing.assert_array_equal(np.isneginf(y[20]), np.isneginf(ref[20]))
    w_bad = w.copy()
    w_bad[7, 66] = np.inf  # the last, partial panel
    y = ops.dense(x, ops.pack_kernel(w_bad), b)
    np.testing.assert_array_equal(np.delete(y, 66, axis=1), np.delete(clean, 66, axis=1))
    np.testing.assert_array_equal(np.isinf(y[:, 66]), x[:, 7] != 0)


# ----------------------------------------------------------------------------- bitwise invariance

# (M, K, N): the thread split is by columns for few rows, by rows for many
INVARIANCE_SHAPES = [(3, 784, 513), (100, 784, 513), (300, 257, 100), (1100, 257, 100), (500, 513, 48)]


@needs_packed
@pytest.mark.parametrize("act", ["linear", "relu", "softmax", "glu"])
@pytest.mark.parametrize("m, k, n", INVARIANCE_SHAPES)
def test_row_results_do_not_depend_on_batch_position_or_threads(m, k, n, act, restore_threads):
    if act == "glu" and n % 2:
        n += 1
    x, w, b = data(m, k, n, m + k + n)
    pk = ops.pack_kernel(w)
    probe = sorted({0, 1, m // 3, m // 2, m - 2, m - 1})
    fastdense.set_num_threads(1)
    alone = np.concatenate([ops.dense(x[i:i + 1], pk, b, act) for i in probe])
    assert_matches(alone, x[probe], w, b, act)
    perm = np.random.default_rng(m).permutation(m)  # every row at another position
    for threads in (1, 2):
        fastdense.set_num_threads(threads)
        assert fastdense.get_num_threads() == threads
        y = ops.dense(x, pk, b, act)
        np.testing.assert_array_equal(y[probe], alone, err_msg=f"threads={threads}")
        y_perm = ops.dense(x[perm], pk, b, act)
        np.testing.assert_array_equal(y_perm[np.argsort(perm)], y, err_msg=f"permuted, threads={threads}")
        for size in (2, 7, 13, 145):  # a probe row inside smaller batches, first and last
            for i in probe:
                lo = min(i, max(m - size, 0))
                np.testing.assert_array_equal(ops.dense(x[lo:lo + size], pk, b, act)[i - lo], alone[probe.index(i)])
    fastdense.set_num_threads(None)
    np.testing.assert_array_equal(ops.dense(x, pk, b, act)[probe], alone)


@needs_packed
def test_concurrent_calls_give_the_same_bits(restore_threads):
    x, w, b = data(300, 257, 130, 7)
    pk = ops.pack_kernel(w)
    expected = ops.dense(x, pk, b, "relu")
    fastdense.set_num_threads(2)
    results, errors = {}, []

    def work(i):
        try:
            results[i] = [ops.dense(x[: 1 + 37 * i], pk, b, "relu") for _ in range(10)]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_in_threads(work, range(8))
    assert not errors
    for i, ys in results.items():
        for y in ys:
            np.testing.assert_array_equal(y, expected[: 1 + 37 * i])


# ----------------------------------------------------------------------------- slow path


def _variants(x):
    """x in layouts that dense_fast refuses (so the validating path runs)."""
    m, k = x.shape
    rows = np.zeros((2 * m, k), x.dtype)
    rows[::2] = x
    cols = np.zeros((m, 2 * k), x.dtype)
    cols[:, ::2] = x
    wide = np.zeros((m, k + 9), x.dtype)
    wide[:, :k] = x
    return {
        "float64": x.astype(np.float64),
        "fortran": np.asfortranarray(x),
        "row-strided": rows[::2],
        "column-strided": cols[:, ::2],
        "wider-buffer": wide[:, :k],
        "reversed": np.ascontiguousarray(x[::-1])[::-1],
        "list": x.tolist(),
    }


@pytest.mark.parametrize("act", ["relu", "glu"])
@pytest.mark.parametrize("m, k, n", [(1, 33, 18), (5, 17, 40), (7, 256, 34), (100, 784, 514), (300, 257, 100)])
def test_slow_path_gives_the_fast_path_bits(m, k, n, act, restore_threads):
    x, w, b = data(m, k, n, 11 * m + n)
    pk = ops.pack_kernel(w)
    for threads in (None, 1):
        fastdense.set_num_threads(threads)
        fast = ops.dense(x, pk, b, act)
        assert_matches(fast, x, w, b, act)
        for name, xv in _variants(x).items():
            y = ops.dense(xv, pk, b, act)
            assert y.dtype == np.float32, name
            np.testing.assert_array_equal(y, fast, err_msg=name)
        np.testing.assert_array_equal(ops.dense(x, pk, b.astype(np.float64), act), fast)  # bias cast
        np.testing.assert_array_equal(ops.dense(x, pk, b.tolist(), act), fast)
        np.testing.assert_array_equal(ops.dense(x.reshape(1, m, k), pk, b, act)[0], fast)  # rank 3
        np.testing.assert_array_equal(ops.dense(x[0], pk, b, act), fast[0])  # rank 1
        out = np.full_like(fast, np.nan)
        assert ops.dense(x, pk, b, act, out=out) is out  # fast path with out=
        np.testing.assert_array_equal(out, fast)
        out = np.full_like(fast, np.nan)
        assert ops.dense(np.asfortranarray(x), pk, b, act, out=out) is out  # slow path with out=
        np.testing.assert_array_equal(out, fast)


def test_out_checks_with_a_packed_kernel():
    x, w, b = data(4, 8, 6, 12)
    pk = ops.pack_kernel(w)
    with pytest.raises(ValueError, match="out must have shape"):
        ops.dense(x, pk, b, out=np.empty((4, 6), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.dense(x, pk, b, out=np.empty((6, 4), np.float32).T)
    x_buf = x.copy()
    with pytest.raises(ValueError, match="overlap"):  # out sharing x's memory
        ops.dense(x_buf, pk, b, out=x_buf.reshape(-1)[:24].reshape(4, 6))
    np.testing.assert_array_equal(x_buf, x)  # refused before anything was written
    assert_matches(ops.dense(x, pk, b), x, w, b, "linear")


# ----------------------------------------------------------------------------- Dense layer


def test_dense_layer_uses_the_packed_kernel_and_repacks_after_set_weights():
    rng = np.random.default_rng(13)
    layer = Dense(70, activation="relu")
    layer.build((None, 50))
    x = rng.standard_normal((33, 50)).astype(np.float32)
    for step in range(3):
        w = rng.standard_normal((50, 70)) / 7
        b = rng.standard_normal(70)
        layer.set_weights([w, b])
        for m in (1, 7, 33):
            y = layer(x[:m])
            assert_matches(y, x[:m], w.astype(np.float32), b.astype(np.float32), "relu")
            expected = ops.dense(x[:m], ops.pack_kernel(layer.kernel), layer.bias, "relu")
            np.testing.assert_array_equal(y, expected, err_msg=f"step {step}, m={m}")
        packed = layer._packed
        assert packed[0] is layer._values
        assert (type(packed[1]) is ops.PackedKernel) == ops.packed_available()
        if ops.packed_available():
            np.testing.assert_array_equal(packed[1].kernel, w.astype(np.float32))
        # the generic paths (list input, rank 3, call) see the same new weights
        np.testing.assert_array_equal(layer(x.tolist()), layer(x))
        np.testing.assert_array_equal(layer(x.reshape(3, 11, 50)).reshape(33, 70), layer(x))
        np.testing.assert_array_equal(layer.call(x), layer(x))


def test_dense_layer_set_weights_between_calls_never_uses_stale_weights():
    layer = Dense(20, use_bias=False)
    layer.build((None, 10))
    x = np.eye(10, dtype=np.float32)
    for value in (1.0, 2.0, -3.0):
        w = np.full((10, 20), value)
        layer.set_weights([w])
        np.testing.assert_array_equal(layer(x), np.full((10, 20), value, np.float32))
        np.testing.assert_array_equal(layer(x[:1]), np.full((1, 20), value, np.float32))


def test_dense_layer_with_a_python_activation_after_the_packed_kernel():
    rng = np.random.default_rng(14)
    layer = Dense(24, activation=lambda z: 2 * z - 1)
    layer.build((None, 40))
    w, b = rng.standard_normal((40, 24)) / 6, rng.standard_normal(24)
    layer.set_weights([w, b])
    x = rng.standard_normal((9, 40)).astype(np.float32)
    y = layer(x)
    np.testing.assert_array_equal(y, 2 * ops.dense(x, ops.pack_kernel(layer.kernel), layer.bias) - 1)
    z, mag = pre_activation(x, layer.kernel, layer.bias)
    np.testing.assert_allclose(y, 2 * z - 1, rtol=0, atol=2e-5 * (mag.max() + 1))


def test_float64_dense_layer():
    rng = np.random.default_rng(15)
    layer = Dense(30, activation="tanh", dtype="float64")
    layer.build((None, 45))
    w, b = rng.standard_normal((45, 30)) / 7, rng.standard_normal(30)
    layer.set_weights([w, b])
    x = rng.standard_normal((12, 45))
    y = layer(x)
    assert y.dtype == np.float64
    assert_matches(y, x, w, b, "tanh", dtype=np.float64)
    assert not (type(layer._packed[1]) is ops.PackedKernel and layer._packed[1].packed is not None)
    layer.set_weights([-w, b])
    assert_matches(layer(x), x, -w, b, "tanh", dtype=np.float64)


# ----------------------------------------------------------------------------- model plans


def _mlp(rng):
    model = Sequential([Dense(100, activation="relu", input_shape=(33,)),
                        Dense(48, activation="tanh"),
                        Dense(10, activation="softmax")])
    model.set_weights([rng.standard_normal(v.shape) / np.sqrt(v.shape[0]) for v in model.get_weights()])
    return model


def _reference_mlp(model, x):
    h = np.asarray(x, np.float64)
    for layer, act in zip(model.layers, ("relu", "tanh", "softmax")):
        h = REFERENCE[act](h @ layer.kernel.astype(np.float64) + layer.bias)
    return h


def _layer_by_layer(model, x):
    for layer in model.layers:
        x = layer(x)
    return x


def test_plan_matches_layer_by_layer_bitwise_and_float64(restore_threads):
    rng = np.random.default_rng(16)
    model = _mlp(rng)
    plan = compile_plan(model, [(33,)], np.float32)
    assert plan is not None
    assert plan._packed == ops.packed_available()
    assert plan.block < 1100  # the largest batch runs in several blocks
    for threads in (None, 1, 2):
        fastdense.set_num_threads(threads)
        for batch in (1, 7, 32, 300, 1100):
            x = rng.standard_normal((batch, 33)).astype(np.float32)
            got = model.predict(x)
            np.testing.assert_array_equal(got, _layer_by_layer(model, x), err_msg=f"batch {batch}")
            np.testing.assert_allclose(got, _reference_mlp(model, x), rtol=0, atol=1e-5)
            np.testing.assert_array_equal(model.predict(x[:1]), got[:1])


def test_plan_after_set_weights_uses_the_new_packed_kernels():
    rng = np.random.default_rng(17)
    model = _mlp(rng)
    x = rng.standard_normal((1100, 33)).astype(np.float32)
    before = model.predict(x)
    model.set_weights([rng.standard_normal(v.shape) / np.sqrt(v.shape[0]) for v in model.get_weights()])
    after = model.predict(x)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, _layer_by_layer(model, x))
    np.testing.assert_allclose(after, _reference_mlp(model, x), rtol=0, atol=1e-5)
    plan = compile_plan(model, [(33,)], np.float32)
    assert plan._packed == ops.packed_available()


def test_functional_plan_with_rank3_dense_and_glu():
    rng = np.random.default_rng(18)
    inp = fastdense.Input((4, 12))
    h = Dense(34, activation="relu")(inp)           # acts on the last axis: 4 rows per sample
    out = Dense(20, activation="glu")(Flatten()(h))
    model = Model(inp, out)
    model.set_weights([rng.standard_normal(v.shape) / 3 for v in model.get_weights()])
    plan = compile_plan(model, [(4, 12)], np.float32)
    assert plan is not None and plan._packed == ops.packed_available()
    assert plan.block < 1100
    d1, d2 = model.layers[1], model.layers[3]
    for batch in (1, 7, 1100):
        x = rng.standard_normal((batch, 4, 12)).astype(np.float32)
        got = model.predict(x)
        assert got.shape == (batch, 10)
        np.testing.assert_array_equal(got, model._run_layers([x])[0])
        h1 = np.maximum(x.astype(np.float64) @ d1.kernel.astype(np.float64) + d1.bias, 0).reshape(batch, -1)
        ref = REFERENCE["glu"](h1 @ d2.kernel.astype(np.float64) + d2.bias)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_float64_plan_is_not_packed():
    rng = np.random.default_rng(19)
    model = Sequential([Dense(20, activation="relu", input_shape=(9,), dtype="float64"), Dense(3, dtype="float64")])
    model.set_weights([rng.standard_normal(v.shape) for v in model.get_weights()])
    plan = compile_plan(model, [(9,)], np.float64)
    assert plan is not None and plan._packed is False
    x = rng.standard_normal((50, 9))
    h = np.maximum(x @ model.layers[0].kernel + model.layers[0].bias, 0)
    np.testing.assert_allclose(model.predict(x), h @ model.layers[1].kernel + model.layers[1].bias,
                               rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- baseline CPU path

_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastdense
    from fastdense import _kernels, ops
    from fastdense.layers import Dense
    from fastdense.models import Sequential
    from fastdense.models.plan import compile_plan

    rng = np.random.default_rng(0)
    report = {"path": _kernels.cpu_path(), "available": ops.packed_available(), "errors": [],
              "bitwise_blas": True}
    for m, k, n in [(1, 1, 1), (7, 257, 33), (100, 784, 513), (300, 17, 48)]:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        pk = ops.pack_kernel(w)
        report.setdefault("packed_none", []).append(pk.packed is None)
        report.setdefault("reprs", []).append(repr(pk))
        y = ops.dense(x, pk, b)
        ref = x.astype(np.float64) @ w + b
        mag = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)) + np.abs(b)
        report["errors"].append(float(np.abs(y - ref).max() / (mag.max() + 1)))
        report["bitwise_blas"] &= bool(np.array_equal(y, ops.dense(x, w, b)))
    model = Sequential([Dense(16, activation="relu", input_shape=(8,)), Dense(4)])
    report["plan_packed"] = compile_plan(model, [(8,)], np.float32)._packed
    model.predict(np.ones((3, 8), np.float32))
    report["layer_kernel"] = type(model.layers[0]._packed[1]).__name__
    print(json.dumps(report))
""")


def test_baseline_cpu_path_has_no_packing_and_same_results(tmp_path):
    env = dict(os.environ, FASTDENSE_CPU_PATH="baseline")
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["path"] == "baseline"
    assert report["available"] is False
    assert all(report["packed_none"])
    assert all(r.endswith("(BLAS)>") for r in report["reprs"])
    assert max(report["errors"]) < 1e-5
    assert report["bitwise_blas"]  # a PackedKernel without panels is exactly the plain kernel
    assert report["plan_packed"] is False
    assert report["layer_kernel"] == "ndarray"


# --------------------------------------------------------------------------- frozen copies, pickling


def test_packed_and_layer_weights_can_never_be_made_writeable():
    """Packed kernels and compiled plans hold copies: an in-place edit must be refused, since
    it would silently not reach them."""
    pk = ops.pack_kernel(np.ones((2, 3), np.float32))
    layer = Dense(3, input_shape=(2,))
    Sequential([layer]).predict(np.ones((1, 2), np.float32))
    for array in (pk.kernel, pk.packed, layer.kernel, layer.bias):
        if array is None:
            continue
        with pytest.raises(ValueError, match="WRITEABLE"):
            array.flags.writeable = True
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0


def test_called_layers_and_models_deepcopy_and_pickle():
    import copy
    import pickle

    rng = np.random.default_rng(7)
    model = Sequential([Dense(24, activation="relu", input_shape=(20,)), Dense(5)])
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    x = rng.standard_normal((9, 20)).astype(np.float32)
    expected = model.predict(x)
    model.layers[0](x)  # the layer's packed kernel is cached now
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(clone.predict(x), expected)
        assert clone.layers[0] is not model.layers[0]
        assert not clone.layers[0].kernel.flags.writeable
        clone.layers[1].set_weights([np.zeros((24, 5)), np.ones(5)])
        np.testing.assert_array_equal(clone.predict(x), np.ones((9, 5)))
        np.testing.assert_array_equal(model.predict(x), expected)  # the original is untouched
    pk = ops.pack_kernel(rng.standard_normal((20, 24)))
    again = pickle.loads(pickle.dumps(pk))
    np.testing.assert_array_equal(again.kernel, pk.kernel)
    np.testing.assert_array_equal(ops.dense(x, again), ops.dense(x, pk))


def test_glu_halves_the_symbolic_output_shape():
    from fastdense import Input
    from fastdense.layers import Activation

    inputs = Input((6,))
    hidden = Dense(34, activation="glu")(inputs)
    assert hidden.shape == (None, 17)
    assert Activation("glu")(Dense(8)(inputs)).shape == (None, 4)
    outputs = Dense(3)(Flatten()(hidden))
    model = Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    assert model.predict(x).shape == (4, 3)
    assert compile_plan(model, [(6,)], np.float32) is not None


@needs_packed
@pytest.mark.parametrize("m", [2, 3, 4, 5, 6, 7, 13, 32, 64, 65, 200, 700])
def test_plain_kernel_calls_equal_the_packed_kernel(m, restore_threads):
    """Two rows or more of float32 against a plain kernel run fastdense's own kernel (weights
    read in place, or packed per call one K block of up to 1024 columns at a time, by each
    thread for its part): the same bits as the layer's packed kernel, whatever the thread
    count or the layout of x and of the weights, and float64-close. N = 1040 and 1100 take two
    column slices, the second one narrow."""
    rng = np.random.default_rng(m)
    for k, n in [(37, 5), (300, 100), (513, 130), (257, 1040), (20, 1100)]:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        plain = ops.dense(x, w, b, "relu")
        np.testing.assert_array_equal(plain, ops.dense(x, ops.pack_kernel(w), b, "relu"))
        np.testing.assert_array_equal(ops.dense(x, np.asfortranarray(w), b, "relu"), plain)
        np.testing.assert_array_equal(ops.dense(np.asfortranarray(x), w, b, "relu"), plain)
        for threads in (1, 3):
            fastdense.set_num_threads(threads)
            np.testing.assert_array_equal(ops.dense(x, w, b, "relu"), plain, err_msg=f"threads={threads}")
        fastdense.set_num_threads(None)
        z, mag = pre_activation(x, w, b)
        assert np.all(np.abs(plain - np.maximum(z, 0)) <= 1e-5 * mag.max() + 1e-6)


@needs_packed
@pytest.mark.parametrize("k, n", [(300, 40), (300, 14000), (256, 300)])
def test_many_rows_plain_kernel_whole_or_k_block_packing(k, n, restore_threads):
    """520 rows (one thread): weights packed whole when they take 16 MiB at most and have
    several K blocks (300 x 40), one K block of 1024 columns at a time beyond (300 x 14000: 14
    slices) or with one K block (256): the packed kernel's bits either way."""
    rng = np.random.default_rng(k + n)
    x = rng.standard_normal((520, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    fastdense.set_num_threads(1)
    plain = ops.dense(x, w, b, "relu")
    np.testing.assert_array_equal(plain, ops.dense(x, ops.pack_kernel(w), b, "relu"))
    rows = [0, 5, 6, 143, 144, 519]
    z, mag = pre_activation(x[rows], w, b)
    assert np.all(np.abs(plain[rows] - np.maximum(z, 0)) <= 1e-5 * mag.max() + 1e-6)


@needs_packed
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_many_rows_on_threads_share_one_packed_copy(threads, restore_threads):
    """1100 rows on 2 threads (550 each) pack the plain weights once, together, then run the
    packed kernel; on 1 or 3 threads each row part packs for itself: the same bits always."""
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((1100, 300)).astype(np.float32)
    w = rng.standard_normal((300, 130)).astype(np.float32)
    b = rng.standard_normal(130).astype(np.float32)
    fastdense.set_num_threads(threads)
    expected = ops.dense(x, ops.pack_kernel(w), b, "relu")
    for _ in range(2):   # the second call reuses the thread's buffer
        np.testing.assert_array_equal(ops.dense(x, w, b, "relu"), expected)
    np.testing.assert_array_equal(ops.dense(x, w, b, "softmax"), ops.dense(x, ops.pack_kernel(w), b, "softmax"))
    rows = [0, 549, 550, 1099]
    z, mag = pre_activation(x[rows], w, b)
    assert np.all(np.abs(expected[rows] - np.maximum(z, 0)) <= 1e-5 * mag.max() + 1e-6)
