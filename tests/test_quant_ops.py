"""ops.quantize_kernel and ops.dense on a QuantizedKernel, against the NumPy int64 reference
(fastdense.quantizers), on every CPU path (forced with FASTDENSE_CPU_PATH in subprocesses)."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from _helpers import FIXTURES, INDEX_ALL, softmax64

from fastdense import _kernels, ops
from fastdense import quantizers as Q


def _data(m=9, k=300, n=70, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 5, size=(m, 1))).astype(np.float32)
    w = (rng.standard_normal((k, n)) * rng.uniform(0.01, 1, size=n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    return x, w, b


def test_int8_matches_the_integer_reference_bit_for_bit():
    x, w, b = _data()
    qk = ops.quantize_kernel(w, "int8")
    q, s = Q.quantize_int8(w)
    np.testing.assert_array_equal(qk.kernel, q)
    np.testing.assert_array_equal(qk.kernel_scale, s)
    want = Q.int8_dense_reference(x, q, s, b)
    np.testing.assert_array_equal(ops.dense(x, qk, b), want)
    np.testing.assert_array_equal(ops.dense(x, qk, b, "relu"), np.maximum(want, 0))
    np.testing.assert_array_equal(ops.dense(x, qk), Q.int8_dense_reference(x, q, s))


def test_int8_fused_activations_follow_the_float_epilogue():
    x, w, b = _data()
    qk = ops.quantize_kernel(w, "int8")
    z = Q.int8_dense_reference(x, qk.kernel, qk.kernel_scale, b).astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    got = ops.dense(x, qk, b, "softmax")
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ops.dense(x, qk, b, "tanh"), np.tanh(z), rtol=1e-6, atol=1e-7)
    glu = ops.dense(x, qk, b, "glu")
    a, g = z[:, :35], z[:, 35:]
    np.testing.assert_allclose(glu, a / (1 + np.exp(-g)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("recipe", ["float", "digits"])
@pytest.mark.parametrize("block", [128, 7, -1])
def test_int4_matches_the_float_reference(block, recipe):
    x, w, b = _data()
    qk = _kernels._q4_repacked(ops.quantize_kernel(w, "int4", block_size=block), recipe)
    assert qk.int4_recipe == recipe
    wq = Q.quantize_int4(w, block)
    np.testing.assert_array_equal(qk.kernel, Q.pack_int4(wq.q))
    _assert_near_the_int4_reference(ops.dense(x, qk, b), x, wq, b)


def _assert_near_the_int4_reference(got, x, wq, b):
    """got (float-input int4, before the activation or after relu) within the float32 rounding of
    its sums of Q.int4_dense_reference (float64 products of the kernel Keras rebuilds)."""
    x = x.reshape(-1, x.shape[-1])
    want = Q.int4_dense_reference(x, wq, b)
    mag = np.abs(x).astype(np.float64) @ np.abs(Q.dequantize_int4(wq)).astype(np.float64)
    if wq.zero is None:
        mag /= wq.scale
    got = got.reshape(want.shape)
    assert np.all(np.abs(got - want) <= 4e-7 * (x.shape[1] + 2) ** 0.5 * mag + 1e-6 * np.abs(want))


def test_rows_are_independent_of_the_batch():
    x, w, b = _data(m=37)
    int4 = ops.quantize_kernel(w, "int4")
    for qk in (ops.quantize_kernel(w, "int8"), _kernels._q4_repacked(int4, "float"), _kernels._q4_repacked(int4, "digits")):
        whole = ops.dense(x, qk, b, "relu")
        for i in (0, 5, 36):
            np.testing.assert_array_equal(ops.dense(x[i], qk, b, "relu"), whole[i])
        np.testing.assert_array_equal(ops.dense(x.reshape(37, 1, -1), qk, b, "relu")[:, 0], whole)


def test_non_native_configurations_use_the_reference():
    x, w, b = _data()
    q, s = Q.quantize_int8(w)
    weight_only = _kernels.QuantizedKernel("int8", q, s, None, -1, False)
    assert not weight_only.native
    np.testing.assert_array_equal(ops.dense(x, weight_only, b), Q.int8_dense_reference(x, q, s, b, quantize=False))
    # per-unit int4 with quantized inputs runs natively on the int8 kernels (tests/test_q4_inputs.py)
    w4 = Q.quantize_int4(w, -1)
    w4a8 = _kernels.QuantizedKernel("int4", Q.pack_int4(w4.q), w4.scale, None, -1, True)
    assert w4a8.native
    np.testing.assert_array_equal(ops.dense(x, w4a8, b), Q.int8_dense_reference(x, w4.q, w4.scale, b))


def test_quantized_kernel_is_read_only_and_pickles():
    _, w, _ = _data()
    qk = ops.quantize_kernel(w, "int4", block_size=64)
    for a in (qk.kernel, qk.kernel_scale, qk.kernel_zero):
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a.flags.writeable = True
    back = pickle.loads(pickle.dumps(qk))
    assert (back.mode, back.shape, back.block_size) == ("int4", (300, 70), 64)
    x = np.ones((2, 300), np.float32)
    np.testing.assert_array_equal(ops.dense(x, back), ops.dense(x, qk))


def test_bad_input_is_refused_by_name():
    x, w, b = _data()
    qk = ops.quantize_kernel(w)
    with pytest.raises(ValueError, match="last dimension 300"):
        ops.dense(x[:, :10], qk)
    with pytest.raises(ValueError, match=r"bias must have shape \(70,\)"):
        ops.dense(x, qk, b[:3])
    with pytest.raises(ValueError, match="even number of units"):
        ops.dense(x, ops.quantize_kernel(w[:, :5]), None, "glu")
    with pytest.raises(ValueError, match="mode must be 'int8' or 'int4'"):
        ops.quantize_kernel(w, "int2")
    with pytest.raises(ValueError, match="NaN or inf"):
        ops.quantize_kernel(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        ops.quantize_kernel(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="kernel_scale must have shape"):
        _kernels.QuantizedKernel("int8", np.zeros((3, 4), np.int8), np.ones(5, np.float32))
    with pytest.raises(ValueError, match="two units per byte"):
        _kernels.QuantizedKernel("int4", np.zeros((3, 4), np.int8), np.ones(5, np.float32), None, -1, False)
    with pytest.raises(ValueError, match=r"kernel_zero must lie in \[-8, 7\]"):
        _kernels.QuantizedKernel("int4", np.zeros((3, 1), np.int8), np.ones((1, 2), np.float32),
                                 np.full((1, 2), 9, np.int8), 4, False)
    with pytest.raises(ValueError, match="up to 132104 input rows"):
        _kernels.QuantizedKernel("int8", np.zeros((132105, 1), np.int8), np.ones(1, np.float32))


def test_nan_rows_give_nan_outputs():
    x, w, b = _data(m=3)
    x[1, 7] = np.nan
    x[2, 0] = np.inf
    y = ops.dense(x, ops.quantize_kernel(w), b)
    assert np.isfinite(y[0]).all() and np.isnan(y[1:]).all()


@pytest.mark.skipif("int8_mlp" not in INDEX_ALL, reason="Keras fixtures not found")
@pytest.mark.parametrize("name", ["int8_mlp", "int4_mlp"])
def test_fixture_variables_through_ops(name):
    from test_quantizers import _fixture_layers

    data = np.load(FIXTURES / f"{name}.io.npz")
    a = data["x0"]
    for cfg, values in _fixture_layers(name):
        policy = Q.read_policy(cfg["dtype"], cfg["quantization_config"])
        if policy.mode == "int8":
            qk = _kernels.QuantizedKernel("int8", values[0], values[2])
        else:
            qk = _kernels.QuantizedKernel("int4", values[0], values[2], values[3], policy.block_size, False)
        a = ops.dense(a, qk, values[1], cfg["activation"])
    err = float(np.abs(a - data["y"]).max())
    assert err <= 2e-5 * max(1.0, float(np.abs(data["y"]).max())), err


_PATH_SCRIPT = """
import json, sys
import numpy as np
from fastdense import _kernels, ops
rng = np.random.default_rng(3)
out = {"isa": _kernels.quant_isa()}
for (m, k, n) in [(1, 20, 64), (5, 784, 33), (17, 129, 130), (4, 3, 1), (29, 70, 300)]:
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    for mode, block in [("int8", None), ("int4", 128), ("int4", 5), ("int4", -1)]:
        qk = ops.quantize_kernel(w, mode, block_size=block)
        # int4: both recipes, whichever this path would pack for (their bits differ)
        for recipe in ("float", "digits") if mode == "int4" else (None,):
            y = ops.dense(x, _kernels._q4_repacked(qk, recipe) if recipe else qk, b)
            out[f"{m}x{k}x{n}/{mode}/{block}/{recipe}"] = y.tobytes().hex()
json.dump(out, sys.stdout)
"""


def test_every_cpu_path_gives_the_same_bits():
    """FASTDENSE_CPU_PATH=baseline / avx2 / avx512 in subprocesses: identical outputs (int8 sums are
    exact; int4 sums follow one order on every path for weights packed under one recipe), int8
    equal to the int64 reference."""
    results = {}
    # FASTDENSE_QUANT_PATH=avx2: the AVX2 kernel even where AVX-VNNI is (avx2 keeps AVX-VNNI)
    for path, quant in (("baseline", None), ("avx2", None), ("avx2", "avx2"), ("avx512", None)):
        env = {k: v for k, v in os.environ.items() if k != "FASTDENSE_QUANT_PATH"}
        env["FASTDENSE_CPU_PATH"] = path
        if quant:
            env["FASTDENSE_QUANT_PATH"] = quant
        run = subprocess.run([sys.executable, "-c", _PATH_SCRIPT], env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        results[f"{path}/{quant}"] = json.loads(run.stdout)
    isas = {path: r.pop("isa") for path, r in results.items()}
    assert isas["baseline/None"] == "baseline"
    assert isas["avx2/avx2"] in ("avx2", "baseline"), isas
    first = results["baseline/None"]
    assert all(r == first for r in results.values()), isas
    # and the int8 ones are the integer reference's
    rng = np.random.default_rng(3)
    for m, k, n in [(1, 20, 64), (5, 784, 33), (17, 129, 130), (4, 3, 1), (29, 70, 300)]:
        x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        q, s = Q.quantize_int8(w)
        want = Q.int8_dense_reference(x, q, s, b)
        assert first[f"{m}x{k}x{n}/int8/None/None"] == want.tobytes().hex()


@pytest.mark.parametrize("activation", ["relu", "softmax", "glu"])
def test_threads_split_rows_and_columns_without_changing_a_bit(activation):
    """ops.dense splits a quantized call over the pool (columns for <= 4 rows, rows from 8 on):
    every row is bit for bit the one-thread result at any batch size (int4: under either recipe),
    and int8 the int64 reference's."""
    import fastdense

    x, w, b = _data(m=40, k=300, n=512, seed=4)
    kernels = [ops.quantize_kernel(w, "int8")] + [
        _kernels._q4_repacked(ops.quantize_kernel(w, "int4", block_size=block), recipe)
        for block in (128, -1) for recipe in ("float", "digits")]
    before = fastdense.get_num_threads()
    try:
        for qk in kernels:
            results = {}
            for threads in (1, 2):
                fastdense.set_num_threads(threads)
                results[threads] = [ops.dense(x[:m], qk, b, activation) for m in (1, 3, 4, 8, 13, 40)]
            for one, two in zip(results[1], results[2]):
                np.testing.assert_array_equal(one, two)
                np.testing.assert_array_equal(one, results[1][-1][: len(one)])
            if qk.mode == "int8" and activation == "relu":
                want = np.maximum(Q.int8_dense_reference(x, qk.kernel, qk.kernel_scale, b), 0)
                for got in results[2]:
                    np.testing.assert_array_equal(got, want[: len(got)])
    finally:
        fastdense.set_num_threads(before)


def test_int8_row_tiles_match_the_reference_at_every_batch():
    """Batches 1..30 cover the kernels' row tiles (12-row strips cut 8 + rest, 6 and 4 rows on
    256-bit paths) and their column tails (n = 70: 4 panels + 6 columns)."""
    x, w, b = _data(m=30, k=37, n=70, seed=5)
    qk = ops.quantize_kernel(w, "int8")
    want = Q.int8_dense_reference(x, qk.kernel, qk.kernel_scale, b)
    for m in range(1, 31):
        np.testing.assert_array_equal(ops.dense(x[:m], qk, b), want[:m])


def test_int4_recipe_is_reported_and_only_float_input_int4_has_one():
    x, w, b = _data()
    int4 = ops.quantize_kernel(w, "int4")
    want = "digits" if _kernels.quant_isa() in ("avx512_vnni", "amx") else "float"
    assert int4.int4_recipe == want
    assert ops.quantize_kernel(w, "int8").int4_recipe is None
    w4 = Q.quantize_int4(w, -1)
    assert _kernels.QuantizedKernel("int4", Q.pack_int4(w4.q), w4.scale, None, -1, True).int4_recipe is None
    with pytest.raises(ValueError, match="only float-input int4 kernels have a recipe"):
        _kernels._q4_repacked(ops.quantize_kernel(w, "int8"), "float")
    with pytest.raises(ValueError, match="int4 recipe must be one of"):
        _kernels._q4_repacked(int4, "fast")
    # pickling packs again for the loading machine's path (here: the same recipe)
    assert pickle.loads(pickle.dumps(_kernels._q4_repacked(int4, "float"))).int4_recipe == want


# --- the op's fast path (_kernels.dense_fast) for a native QuantizedKernel --------------------

_W_FAST = _data(k=40, n=18, seed=6)[1]


def _fast_path_kernels():
    """name -> native QuantizedKernel of _W_FAST (k=40, n=18): int8, int4 per unit and blocked
    under both recipes, per-unit int4 with quantized inputs (int8 kernels)."""
    w = _W_FAST
    kernels = {"int8": ops.quantize_kernel(w, "int8")}
    for block in (-1, 16):
        for recipe in ("float", "digits"):
            kernels[f"int4/{block}/{recipe}"] = _kernels._q4_repacked(
                ops.quantize_kernel(w, "int4", block_size=block), recipe)
    w4 = Q.quantize_int4(w, -1)
    kernels["int4/-1/inputs"] = _kernels.QuantizedKernel("int4", Q.pack_int4(w4.q), w4.scale, None, -1, True)
    return kernels


_FAST_KERNELS = _fast_path_kernels()


def _reference(x, qk, bias, activation):
    """float64 act(z) over the integer references' pre-activation z, keeping x's leading axes (None
    for float-input int4, which has no exact reference: _assert_near_the_int4_reference)."""
    x2 = x.reshape(-1, qk.k)
    if qk.mode == "int4" and not qk.quantize_inputs:
        return None
    q = qk.kernel if qk.mode == "int8" else Q.unpack_int4(qk.kernel, qk.n)
    z = Q.int8_dense_reference(x2, q, qk.kernel_scale, bias).astype(np.float64)
    if activation == "relu":
        z = np.maximum(z, 0)
    elif activation == "softmax":
        z = softmax64(z)
    elif activation == "glu":
        z = z[:, : qk.n // 2] / (1 + np.exp(-z[:, qk.n // 2:]))
    return z.reshape(x.shape[:-1] + (z.shape[-1],))


def _strided(x):
    """x's values in a non-C-contiguous array (dense_fast refuses it: the validating path runs)."""
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


@pytest.mark.parametrize("activation", ["linear", "relu", "softmax", "glu"])
@pytest.mark.parametrize("name", sorted(_FAST_KERNELS))
def test_fast_path_gives_the_validating_paths_bits(name, activation):
    """Ranks 1..3, with and without bias: the fast path (taken: dense_fast answers) returns bit for
    bit what ops._dense_checked and a non-contiguous x (the validating path) return, and the
    integer reference's values."""
    qk = _FAST_KERNELS[name]
    spec = ops._spec(activation)
    x, _, b = _data(m=6, k=40, n=18, seed=7)
    tol = {"linear": 0, "relu": 0, "softmax": 1e-6, "glu": 1e-6}[activation]
    for xs in (x[0], x, x.reshape(2, 3, 40)):
        for bias in (None, b):
            fast = _kernels.dense_fast(xs, qk, bias, spec)
            assert fast is not None and fast.dtype == np.float32 and fast.flags.c_contiguous
            assert fast.shape == xs.shape[:-1] + (9 if activation == "glu" else 18,)
            np.testing.assert_array_equal(ops.dense(xs, qk, bias, activation), fast)
            np.testing.assert_array_equal(ops._dense_checked(xs, qk, bias, spec, activation, None), fast)
            np.testing.assert_array_equal(ops.dense(_strided(xs), qk, bias, activation), fast)
            want = _reference(xs, qk, bias, activation)
            if want is not None:
                np.testing.assert_allclose(fast, want, rtol=tol, atol=tol * 1e-3)
            elif activation in ("linear", "relu"):   # relu keeps the bound of its input
                wq = Q.quantize_int4(_W_FAST, qk.block_size)
                z = ops.dense(xs, qk, bias)
                _assert_near_the_int4_reference(z, xs, wq, bias)
                np.testing.assert_array_equal(fast, z if activation == "linear" else np.maximum(z, 0))


@pytest.mark.parametrize("name", ["int8", "int4/16/float", "int4/-1/inputs"])
def test_fast_path_writes_out(name):
    qk = _FAST_KERNELS[name]
    x, _, b = _data(m=6, k=40, n=18, seed=8)
    x3 = x.reshape(3, 2, 40)
    for activation, width in (("relu", 18), ("glu", 9)):
        want = ops._dense_checked(x3, qk, b, ops._spec(activation), activation, None)
        out = np.full((3, 2, width), np.nan, np.float32)
        assert ops.dense(x3, qk, b, activation, out=out) is out
        np.testing.assert_array_equal(out, want)
        assert _kernels.dense_fast(x3, qk, b, ops._spec(activation), out) is out
        # an empty batch: the empty result (or out), no kernel call
        empty = np.empty((0, width), np.float32)
        assert ops.dense(x[:0], qk, b, activation, out=empty) is empty
        assert ops.dense(x[:0], qk, b, activation).shape == (0, width)


def test_fast_path_falls_back_where_the_float_fast_path_does():
    """dense_fast answers for a QuantizedKernel exactly where it answers for a float32 kernel of
    the same shape: the validating path casts (float64 x or bias) and raises the same errors."""
    qk, w = _FAST_KERNELS["int8"], _W_FAST
    x, _, b = _data(m=4, k=40, n=18, seed=9)
    relu, glu = ops._spec("relu"), ops._spec("glu")
    odd = ops.quantize_kernel(w[:, :17])
    buffer = np.zeros(300, np.float32)
    read_only = np.empty((4, 18), np.float32)
    read_only.flags.writeable = False
    cases = {
        "plain": (x, b, relu, None),
        "float64 x": (x.astype(np.float64), b, relu, None),
        "list x": (x.tolist(), b, relu, None),
        "strided x": (_strided(x), b, relu, None),
        "scalar x": (np.float32(1), b, relu, None),
        "wrong K": (x[:, :39].copy(), b, relu, None),
        "float64 bias": (x, b.astype(np.float64), relu, None),
        "strided bias": (x, np.repeat(b, 2)[::2], relu, None),
        "bias shape": (x, b[:5].copy(), relu, None),
        "out": (x, b, relu, np.empty((4, 18), np.float32)),
        "out shape": (x, b, relu, np.empty((4, 17), np.float32)),
        "out dtype": (x, b, relu, np.empty((4, 18), np.float64)),
        "out strided": (x, b, relu, np.empty((4, 36), np.float32)[:, ::2]),
        "out read-only": (x, b, relu, read_only),
        "out list": (x, b, relu, [[0.0] * 18] * 4),
        "out overlaps x": (buffer[:160].reshape(4, 40), b, relu, buffer[100:172].reshape(4, 18)),
        "out beside x": (buffer[:160].reshape(4, 40), b, relu, buffer[160:232].reshape(4, 18)),
        "out overlaps bias": (x, buffer[:18], relu, buffer[10:82].reshape(4, 18)),
    }
    answers = {case: _kernels.dense_fast(xs, qk, bias, spec, out) is not None
               for case, (xs, bias, spec, out) in cases.items()}
    assert answers == {case: _kernels.dense_fast(xs, w, bias, spec, out) is not None
                       for case, (xs, bias, spec, out) in cases.items()}
    assert sorted(case for case, yes in answers.items() if yes) == ["out", "out beside x", "plain"]
    assert _kernels.dense_fast(x, odd, b[:17].copy(), glu) is None
    # non-native kernels (the NumPy reference) always take the validating path
    q, s = Q.quantize_int8(w)
    assert _kernels.dense_fast(x, _kernels.QuantizedKernel("int8", q, s, None, -1, False), b, relu) is None
    # the validating path casts: float64 x and bias give the float32 inputs' bits
    want = ops.dense(x, qk, b, "relu")
    np.testing.assert_array_equal(ops.dense(x.astype(np.float64), qk, b, "relu"), want)
    np.testing.assert_array_equal(ops.dense(x, qk, b.astype(np.float64), "relu"), want)
    np.testing.assert_array_equal(ops.dense(x.tolist(), qk, list(b), "relu"), want)


def test_errors_of_the_quantized_op_are_unchanged():
    """Every error of ops.dense on a QuantizedKernel, message for message (the fast path raises none
    of its own: it hands these calls to the validating path)."""
    qk = _FAST_KERNELS["int8"]
    x, w, b = _data(m=4, k=40, n=18, seed=10)
    odd = ops.quantize_kernel(w[:, :17])
    shared = np.zeros(200, np.float32)
    read_only = np.empty((4, 18), np.float32)
    read_only.flags.writeable = False
    cases = [
        ((np.float32(1), qk), {}, ValueError, "dense: x must have at least 1 dimension (..., 40), got a scalar"),
        ((x[:, :39], qk), {}, ValueError, "dense: x must have last dimension 40 to match the quantized kernel "
                                          "of shape (40, 18), got x of shape (4, 39)"),
        ((x.astype(np.complex64), qk), {}, TypeError, "dense: x must be a real numeric array (float32, float64, "
                                                      "integer), got dtype complex64"),
        ((x, qk, b[:5]), {}, ValueError, "dense: bias must have shape (18,) to match the quantized kernel of "
                                         "shape (40, 18), got shape (5,)"),
        ((x, qk, b > 0), {}, TypeError, "dense: bias must be a real numeric array; bool bias is refused (cast it "
                                        "explicitly if you mean 0/1 weights), got dtype bool"),
        ((x, odd, None, "glu"), {}, ValueError, "dense: activation 'glu' halves the last axis, which needs an even "
                                                "number of units, got a quantized kernel of shape (40, 17)"),
        ((x, qk, b), {"out": [0.0]}, ValueError, "dense: out must be a numpy array, got list"),
        ((x, qk, b), {"out": np.empty((4, 17), np.float32)}, ValueError,
         "dense: out must have shape (4, 18) and dtype float32, got shape (4, 17) and dtype float32"),
        ((x, qk, b), {"out": np.empty((4, 18), np.float64)}, ValueError,
         "dense: out must have shape (4, 18) and dtype float32, got shape (4, 18) and dtype float64"),
        ((x, qk, b), {"out": np.empty((4, 36), np.float32)[:, ::2]}, ValueError,
         "dense: out must be C-contiguous, got a non-contiguous array"),
        ((x, qk, b), {"out": read_only}, ValueError, "dense: out must be writeable, got a read-only array"),
        ((shared[:160].reshape(4, 40), qk, b), {"out": shared[100:172].reshape(4, 18)}, ValueError,
         "dense: out must not overlap the inputs, but it shares memory with x"),
        ((x, qk, shared[:18]), {"out": shared[10:82].reshape(4, 18)}, ValueError,
         "dense: out must not overlap the inputs, but it shares memory with bias"),
    ]
    for args, kwargs, error, message in cases:
        with pytest.raises(error) as info:
            ops.dense(*args, **kwargs)
        assert str(info.value) == message
