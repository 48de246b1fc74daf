"""fastdense.ops.dense against float64 NumPy: shapes, ranks, layouts, dtypes, out=, errors."""
import functools
import platform
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from _helpers import softmax64

import fastdense
from fastdense import _kernels, activations
from fastdense.ops import dense


def _erf(x):
    from scipy.special import erf
    return erf(x)


REFERENCE = {  # float64 formulas, independent of the kernel
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "gelu": lambda z: 0.5 * z * (1 + _erf(z / np.sqrt(2))),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "softplus": lambda z: np.logaddexp(0, z),
    "softmax": softmax64,
    "log_softmax": lambda z: z - z.max(-1, keepdims=True)
    - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)),
    "glu": lambda z: z[..., : z.shape[-1] // 2] / (1 + np.exp(-z[..., z.shape[-1] // 2:])),
}


def reference(x, w, b, act):
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    if b is not None:
        z = z + np.asarray(b, np.float64)
    return REFERENCE[act](z)


def tolerance(x, w, b, dtype):
    """Rounding bound of a float32/float64 dot product: eps * K * sum |x||w| (+ |b|)."""
    eps = np.finfo(dtype).eps
    k = max(w.shape[0], 1)
    mag = np.abs(np.asarray(x, np.float64)) @ np.abs(np.asarray(w, np.float64))
    if b is not None:
        mag = mag + np.abs(np.asarray(b, np.float64))
    return 4 * eps * k * (mag.max(initial=0) + 1)


def assert_matches(y, x, w, b, act, dtype):
    ref = reference(x, w, b, act)
    assert y.shape == ref.shape
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref, rtol=0, atol=tolerance(x, w, b, dtype))


def test_seed_example():
    y = dense(np.array([[1, 2], [3, 4]], np.float32), np.array([[0.5, 0.75], [0.25, 0.5]], np.float32))
    np.testing.assert_array_equal(y, np.array([[1, 1.75], [2.5, 4.25]], np.float32))
    assert y.dtype == np.float32


@pytest.mark.parametrize("act", sorted(REFERENCE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 16, 16), (7, 33, 12), (64, 300, 130), (1, 700, 520), (300, 64, 700)])
def test_every_reference_activation(act, dtype, shape):
    m, k, n = shape
    rng = np.random.default_rng(m * 1000 + k + n)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    assert_matches(dense(x, w, b, act), x, w, b, act, dtype)
    assert_matches(dense(x, w, None, act), x, w, None, act, dtype)


def _layout(a, kind):
    if kind == "C":
        return np.ascontiguousarray(a)
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided":  # every other element of a wider buffer
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if kind == "readonly":
        r = np.array(a)
        r.flags.writeable = False
        return r
    if kind == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    raise AssertionError(kind)


layouts = st.sampled_from(["C", "F", "strided", "readonly", "reversed"])


@settings(max_examples=120, deadline=None)
@given(
    batch=st.lists(st.integers(0, 5), min_size=0, max_size=3),
    k=st.integers(0, 40),
    n=st.integers(1, 40).map(lambda v: 2 * v),
    act=st.sampled_from(sorted(REFERENCE)),
    dtype=st.sampled_from([np.float32, np.float64]),
    x_layout=layouts,
    w_layout=layouts,
    use_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_ranks_layouts(batch, k, n, act, dtype, x_layout, w_layout, use_bias, seed):
    rng = np.random.default_rng(seed)
    x = _layout(rng.standard_normal(tuple(batch) + (k,)).astype(dtype), x_layout)
    w = _layout(rng.standard_normal((k, n)).astype(dtype), w_layout)
    b = rng.standard_normal(n).astype(dtype) if use_bias else None
    y = dense(x, w, b, act)
    rows = x.reshape(int(np.prod(batch, dtype=int)), k)
    ref = reference(rows, w, b, act).reshape(tuple(batch) + (y.shape[-1],))
    assert y.shape == ref.shape and y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=0, atol=tolerance(rows, w, b, dtype))


def test_rank1_is_one_sample():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = dense(np.array([1, 0, -1], np.float32), w, np.ones(4, np.float32), "relu")
    assert y.shape == (4,)
    np.testing.assert_array_equal(y, np.maximum(w[0] - w[2] + 1, 0))


def test_dtype_rule_casts_to_kernel_dtype():
    x64 = np.ones((2, 3))
    w32 = np.ones((3, 2), np.float32)
    assert dense(x64, w32).dtype == np.float32
    assert dense(x64.astype(np.float32), w32.astype(np.float64)).dtype == np.float64
    # integers and float16 are cast; integer/float16 kernels compute in float32
    y = dense(np.array([[1, 2, 3]], np.int64), np.ones((3, 2), np.int32), np.array([1, 1], np.int8))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[7, 7]])
    assert dense(np.ones((1, 3), np.float16), np.ones((3, 2), np.float16)).dtype == np.float32
    assert dense([[1, 2, 3]], [[1], [1], [1]]).dtype == np.float32
    # bool inputs are 0/1 values
    np.testing.assert_array_equal(dense(np.array([[True, False, True]]), np.ones((3, 1))), [[2.0]])


@pytest.mark.parametrize("bad, what", [
    (np.ones((3, 2), np.complex64), "complex"),
    (np.ones((3, 2), object), "object"),
    (np.array([["a", "b"]] * 3), "<U1"),
    (np.ones((3, 2), bool), "bool"),
])
def test_refused_kernel_dtypes(bad, what):
    with pytest.raises(TypeError, match="kernel") as info:
        dense(np.ones((1, 3)), bad)
    assert what in str(info.value)


def test_refused_x_and_bias_dtypes():
    with pytest.raises(TypeError, match="x must be a real numeric array.*complex"):
        dense(np.ones((1, 3), np.complex128), np.ones((3, 2)))
    with pytest.raises(TypeError, match="bias.*bool"):
        dense(np.ones((1, 3)), np.ones((3, 2)), np.array([True, False]))
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        dense("abc", np.ones((3, 2)))


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"last dimension 3 .*\(3, 2\).*\(4, 5\)"):
        dense(np.ones((4, 5)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"kernel must be 2-D.*\(3,\)"):
        dense(np.ones((4, 3)), np.ones(3))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\).*\(3,\)"):
        dense(np.ones((4, 3)), np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        dense(np.float32(1.0), np.ones((1, 2)))
    with pytest.raises(ValueError, match="even number of units"):
        dense(np.ones((4, 3)), np.ones((3, 5)), None, "glu")


def test_unknown_activation():
    with pytest.raises(ValueError, match="nope"):
        dense(np.ones((1, 3)), np.ones((3, 2)), None, "nope")
    with pytest.raises(TypeError):
        dense(np.ones((1, 3)), np.ones((3, 2)), None, 42)


def test_parametrised_activation_partial():
    x = np.array([[-2.0, 1.0]])
    w = np.eye(2)
    leaky = functools.partial(activations.leaky_relu, negative_slope=0.1)
    np.testing.assert_allclose(dense(x, w, None, leaky), [[-0.2, 1.0]])
    capped = functools.partial(activations.relu, max_value=0.5)
    np.testing.assert_allclose(dense(x, w, None, capped), [[0.0, 0.5]])


class TestOut:
    def setup_method(self):
        rng = np.random.default_rng(1)
        self.x = rng.standard_normal((6, 5)).astype(np.float32)
        self.w = rng.standard_normal((5, 4)).astype(np.float32)
        self.b = rng.standard_normal(4).astype(np.float32)

    def test_writes_in_place_and_returns_out(self):
        out = np.full((6, 4), np.nan, np.float32)
        y = dense(self.x, self.w, self.b, "relu", out=out)
        assert y is out
        assert_matches(out, self.x, self.w, self.b, "relu", np.float32)

    def test_nd_out(self):
        x = self.x.reshape(2, 3, 5)
        out = np.empty((2, 3, 4), np.float32)
        dense(x, self.w, self.b, out=out)
        assert_matches(out.reshape(6, 4), self.x, self.w, self.b, "linear", np.float32)

    @pytest.mark.parametrize("out, message", [
        (np.empty((6, 5), np.float32), "shape"),
        (np.empty((6, 4), np.float64), "dtype"),
        (np.empty((4, 6), np.float32).T, "C-contiguous"),
        ([[0.0] * 4] * 6, "numpy array"),
    ])
    def test_bad_out(self, out, message):
        with pytest.raises(ValueError, match=message):
            dense(self.x, self.w, self.b, out=out)

    def test_readonly_out(self):
        out = np.zeros((6, 4), np.float32)
        out.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            dense(self.x, self.w, self.b, out=out)
        assert not out.any()

    def test_overlapping_out_is_refused_before_writing(self):
        buf = np.zeros(30 + 24, np.float32)
        buf[:30] = self.x.ravel()
        x_view, out_view = buf[:30].reshape(6, 5), buf[26:50].reshape(6, 4)
        with pytest.raises(ValueError, match="overlap"):
            dense(x_view, self.w, self.b, out=out_view)
        np.testing.assert_array_equal(buf[30:], 0)
        square = np.ones((4, 4), np.float32)
        with pytest.raises(ValueError, match="shares memory with x"):
            dense(square, square.copy(), out=square)
        with pytest.raises(ValueError, match="shares memory with kernel"):
            dense(square.copy(), square, out=square)


def test_zero_sizes():
    w = np.ones((3, 4), np.float32)
    b = np.array([1, -1, 2, 0], np.float32)
    assert dense(np.ones((0, 3), np.float32), w, b).shape == (0, 4)
    assert dense(np.ones((2, 0, 3), np.float32), w, b).shape == (2, 0, 4)
    # K = 0: an empty sum, so the result is activation(bias)
    y = dense(np.ones((5, 0), np.float32), np.ones((0, 4), np.float32), b, "relu")
    np.testing.assert_array_equal(y, np.tile([1, 0, 2, 0], (5, 1)))
    y = dense(np.ones((2, 0)), np.ones((0, 3)), None, "softmax")
    np.testing.assert_allclose(y, np.full((2, 3), 1 / 3))
    assert dense(np.ones((2, 3), np.float32), np.ones((3, 0), np.float32)).shape == (2, 0)


@pytest.mark.parametrize("limit", [1, 3, 7, 64])
@pytest.mark.parametrize("x_order, w_order", [("C", "C"), ("F", "C"), ("C", "F"), ("F", "F")])
def test_dimensions_beyond_the_blas_int_are_split(limit, x_order, w_order):
    """Lower the per-call BLAS limit so that M, K, N and the leading dimensions all exceed it."""
    rng = np.random.default_rng(limit)
    x = np.array(rng.standard_normal((37, 29)), order=x_order)
    w = np.array(rng.standard_normal((29, 23)), order=w_order)
    b = rng.standard_normal(23)
    expected = {act: dense(x, w, b, act) for act in ("linear", "softmax")}
    try:
        _kernels.set_blas_int_max(limit)
        for act in ("linear", "softmax"):
            y = dense(x, w, b, act)
            np.testing.assert_allclose(y, expected[act], rtol=1e-12, atol=1e-12)
            assert_matches(y, x, w, b, act, np.float64)
        assert_matches(dense(x[:1], w, b, "relu"), x[:1], w, b, "relu", np.float64)
    finally:
        _kernels.set_blas_int_max(0)
    assert _kernels.get_blas_int_max() == 2**31 - 1


@pytest.mark.parametrize("own_pool", [False, True])
def test_threads_give_identical_results(own_pool):
    """Eight threads at once give bit-identical results to one thread, in both thread modes."""
    rng = np.random.default_rng(7)
    cases = [(rng.standard_normal((m, k)).astype(np.float32),
              rng.standard_normal((k, n)).astype(np.float32),
              rng.standard_normal(n).astype(np.float32), act)
             for (m, k, n), act in [((64, 512, 512), "relu"), ((1, 1024, 512), "gelu"),
                                    ((300, 128, 256), "softmax"), ((5, 16, 16), "tanh")]]
    try:
        if own_pool:
            fastdense.set_num_threads(2)
        expected = [dense(*c) for c in cases]
        errors = []

        def work():
            try:
                for _ in range(10):
                    for c, e in zip(cases, expected):
                        np.testing.assert_array_equal(dense(*c), e)
            except Exception as exc:  # noqa: BLE001 -- reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        for c, e in zip(cases, expected):
            assert_matches(e, c[0], c[1], c[2], c[3], np.float32)
    finally:
        fastdense.set_num_threads(None)


def test_set_num_threads_validates_and_restores_blas():
    before = _kernels.blas_info()[2]
    with pytest.raises(ValueError, match="positive int"):
        fastdense.set_num_threads(0)
    with pytest.raises(ValueError, match="positive int"):
        fastdense.set_num_threads("2")
    fastdense.set_num_threads(1)
    try:
        assert fastdense.get_num_threads() == 1
        if before > 0:
            assert _kernels.blas_info()[2] == 1
    finally:
        fastdense.set_num_threads(None)
    assert _kernels.blas_info()[2] == before
    assert fastdense.get_num_threads() == _kernels.cpu_count()


def test_gil_is_released():
    """A long call in one thread does not stop a pure-Python counter in another."""
    x = np.ones((1024, 1024), np.float32)
    w = np.ones((1024, 1024), np.float32)
    done = threading.Event()
    ticks = []

    def count():
        while not done.is_set():
            ticks.append(1)

    t = threading.Thread(target=count)
    t.start()
    try:
        for _ in range(3):
            dense(x, w, None, "relu")
    finally:
        done.set()
        t.join()
    assert len(ticks) > 100


def test_show_config(capsys):
    fastdense.show_config()
    text = capsys.readouterr().out
    assert fastdense.__version__ in text
    # the paths the kernels can take: x86-64's, or aarch64's (found missing by the first full
    # run of this suite on arm64, under qemu)
    arm = platform.machine().lower() in ("aarch64", "arm64")
    path = fastdense.config_info()["cpu_path"]
    assert path in (("neon", "baseline") if arm else ("avx512", "avx2", "baseline"))
    assert path in text
    assert "blas_library" in text
    # x86 names its CPU by CPUID; aarch64 by MIDR_EL1 when Linux shows it, else by the machine
    assert (" family " in fastdense.config_info()["cpu"]) != arm


def test_aarch64_cpu_named_by_midr(tmp_path, monkeypatch):
    """On aarch64 the CPU is named by MIDR_EL1's implementer and part (Neoverse N1 here), or by the
    machine alone where Linux does not show the register."""
    midr = tmp_path / "midr_el1"
    midr.write_text("0x00000000413fd0c1\n")
    monkeypatch.setattr(fastdense, "_MIDR_PATH", str(midr))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert fastdense._cpu_name("", 0, 0) == "aarch64 implementer 0x41 part 0xd0c"
    midr.write_text("garbage")
    assert fastdense._cpu_name("", 0, 0) == "aarch64"
    monkeypatch.setattr(fastdense, "_MIDR_PATH", str(tmp_path / "absent"))
    assert fastdense._cpu_name("", 0, 0) == "aarch64"
    assert fastdense._cpu_name("AuthenticAMD", 25, 17) == "AuthenticAMD family 25 model 17"


def test_fork_after_threaded_calls():
    """A child forked after fastdense used its thread pool still computes (no hang)."""
    import os
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    x = np.ones((512, 256), np.float32)
    w = np.ones((256, 512), np.float32)
    fastdense.set_num_threads(2)
    try:
        dense(x, w, None, "relu")  # starts the pool
        pid = os.fork()
        if pid == 0:  # child: must not wait on the parent's workers
            ok = bool(np.all(dense(x, w, None, "relu") == 256.0))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
    finally:
        fastdense.set_num_threads(None)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
