"""fastdense.quantizers: Keras 3.15's int8 / int4 quantizers and the int64 reference of the
quantized Dense, against the real Keras files (int8_mlp, int4_mlp) and, when keras is
installed, against Keras itself bit for bit."""

import io
import json
import zipfile

import numpy as np
import pytest
from _helpers import FIXTURES, INDEX_ALL

from fastdense import quantizers as Q


def _act64(name, z):
    z = z.astype(np.float64)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    assert name == "linear", name
    return z


def _fixture_layers(name):
    """(config, [variables in file order]) of each Dense layer in NAME.keras."""
    h5py = pytest.importorskip("h5py")
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        config = json.loads(archive.read("config.json"))
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        dense = [layer["config"] for layer in config["config"]["layers"] if layer["class_name"] == "Dense"]
        groups = ["dense"] + [f"dense_{i}" for i in range(1, len(dense))]
        found = []
        for cfg, group in zip(dense, groups):
            store = weights["layers"][group]["vars"]
            found.append((cfg, [store[str(i)][()] for i in range(len(store))]))
    return found


@pytest.mark.skipif("int8_mlp" not in INDEX_ALL, reason="Keras fixtures not found")
def test_int8_mlp_reference_reproduces_keras():
    data = np.load(FIXTURES / "int8_mlp.io.npz")
    a = data["x0"]
    for cfg, (kernel, bias, kernel_scale) in _fixture_layers("int8_mlp"):
        assert cfg["dtype"]["config"] == {"mode": "int8", "source_name": "float32"}
        assert kernel.dtype == np.int8 and kernel_scale.shape == (cfg["units"],)
        a = _act64(cfg["activation"], Q.int8_dense_reference(a, kernel, kernel_scale, bias)).astype(np.float32)
    err = np.abs(a - data["y"]).max()
    assert err <= 2e-5 * max(1.0, np.abs(data["y"]).max()), err  # measured 3.0e-8


@pytest.mark.skipif("int4_mlp" not in INDEX_ALL, reason="Keras fixtures not found")
def test_int4_mlp_reference_reproduces_keras():
    data = np.load(FIXTURES / "int4_mlp.io.npz")
    a = data["x0"]
    for cfg, (packed, bias, scale, zero, g_idx) in _fixture_layers("int4_mlp"):
        assert cfg["dtype"]["config"] == {"mode": "int4/128", "source_name": "float32"}
        units, k = cfg["units"], packed.shape[0]
        assert packed.shape == (k, (units + 1) // 2) and scale.shape == zero.shape == (1, units)
        np.testing.assert_array_equal(g_idx, Q.group_index(k, 128))
        w = Q.Int4Weights(Q.unpack_int4(packed, units, axis=-1), scale, zero, 128)
        a = _act64(cfg["activation"], Q.int4_dense_reference(a, w, bias)).astype(np.float32)
    err = np.abs(a - data["y"]).max()
    assert err <= 2e-5 * max(1.0, np.abs(data["y"]).max()), err  # measured 2.4e-7


def test_pack_int4_matches_keras_docstring_examples():
    a = np.array([[-3, 7], [2, -8], [1, 0]], np.int8)
    np.testing.assert_array_equal(Q.pack_int4(a, axis=0), [[45, -121], [1, 0]])
    np.testing.assert_array_equal(Q.unpack_int4(Q.pack_int4(a, axis=0), 3, axis=0), a)
    b = np.array([[-3, 7, 2], [-8, 1, 0]], np.int8)
    np.testing.assert_array_equal(Q.pack_int4(b, axis=1), [[125, 2], [24, 0]])
    np.testing.assert_array_equal(Q.unpack_int4(Q.pack_int4(b, axis=-1), 3, axis=-1), b)


def test_pack_int4_round_trips_every_value():
    q = np.arange(-8, 8, dtype=np.int8).reshape(4, 4)
    np.testing.assert_array_equal(Q.unpack_int4(Q.pack_int4(q), 4), q)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        Q.pack_int4(np.array([8], np.int8))
    with pytest.raises(TypeError, match="int8"):
        Q.pack_int4(np.array([1.0]))
    with pytest.raises(ValueError, match="length"):
        Q.unpack_int4(np.zeros((2, 2), np.int8), 7)


def test_inputs_round_half_to_even_with_keras_scale():
    # max|x| = 127: 127 + 1e-7 rounds to 127 in float32, so the scale is exactly 1
    q, scale = Q.quantize_inputs(np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -126.5]], np.float32))
    assert scale.tolist() == [[1.0]]
    assert q.tolist() == [[127, 0, 2, 2, 0, -126]]
    q, scale = Q.quantize_inputs(np.zeros((1, 3), np.float32))
    assert q.tolist() == [[0, 0, 0]] and scale[0, 0] == np.float32(127) / np.float32(1e-7)


def test_int8_weights_per_unit():
    w = np.array([[0.5, -1.0, 0.0], [0.25, 0.5, 0.0]], np.float32)
    q, scale = Q.quantize_int8(w)
    assert q.tolist() == [[127, -127, 0], [63, 63, 0]]  # 0.25 * 253.99994 = 63.49998 -> 63
    np.testing.assert_array_equal(scale, np.float32(127) / (np.float32([0.5, 1.0, 0.0]) + np.float32(1e-7)))


def test_int4_blocks_include_the_zero_padding_of_the_last_block():
    # 3 rows, block 2: the second block is row 2 plus a zero row, so its min is 0, not 1
    w = np.array([[-1.0], [3.0], [1.0]], np.float32)
    got = Q.quantize_int4(w, block_size=2)
    scale = (np.float32([4.0, 1.0]) + np.float32(1e-7)) / np.float32(15)
    np.testing.assert_array_equal(got.scale[:, 0], scale)
    zero = np.clip(np.round(np.float32([1.0, 0.0]) / scale) - 8, -8, 7)
    np.testing.assert_array_equal(got.zero[:, 0], zero)
    assert got.q.shape == (3, 1) and got.block_size == 2
    # the rebuilt kernel is within half a step of the float one
    assert np.all(np.abs(Q.dequantize_int4(got) - w) <= scale[[0, 0, 1]][:, None] / 2 + 1e-6)


def test_int4_per_unit():
    w = np.array([[0.7, -0.2], [-0.35, 0.1]], np.float32)
    got = Q.quantize_int4(w, block_size=-1)
    assert got.zero is None and got.block_size == -1
    # scale 7 / (0.7 + 1e-7) = 9.9999986: -0.35 * scale = -3.4999995 rounds to -3, not -4
    assert got.q.tolist() == [[7, -7], [-3, 3]]
    with pytest.raises(ValueError, match="block_size"):
        Q.quantize_int4(w, block_size=0)


def test_reference_integer_product_is_exact():
    rng = np.random.default_rng(0)
    xq = rng.integers(-127, 128, (3, 5000)).astype(np.int8)
    q = np.full((5000, 2), -128, np.int8)
    got = Q.int_matmul(xq, q)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got[:, 0], -128 * xq.astype(np.int64).sum(1))


@pytest.fixture(scope="module")
def keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("mode", ["int8", "int4", "int4/-1"])
@pytest.mark.parametrize("shape", [(20, 64), (300, 7), (129, 33), (5, 1)])
def test_bit_exact_with_keras(keras, mode, shape):
    k, n = shape
    rng = np.random.default_rng(k * n)
    w = (rng.standard_normal((k, n)) * rng.uniform(0.01, 3, size=n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    layer = keras.layers.Dense(n)
    layer.build((None, k))
    layer.kernel.assign(w)
    layer.bias.assign(bias)
    if mode == "int4/-1":
        layer.quantize("int4", config=keras.quantizers.Int4QuantizationConfig(block_size=-1))
    else:
        layer.quantize(mode)
    x = (rng.standard_normal((9, k)) * 3).astype(np.float32)
    want = keras.ops.convert_to_numpy(layer(x))
    stored = keras.ops.convert_to_numpy(layer._kernel)
    stored_scale = keras.ops.convert_to_numpy(layer.kernel_scale)
    if mode == "int8":
        q, scale = Q.quantize_int8(w)
        np.testing.assert_array_equal(q, stored)
        np.testing.assert_array_equal(scale, stored_scale)
        np.testing.assert_array_equal(Q.int8_dense_reference(x, q, scale, bias), want)  # bit for bit
        return
    got = Q.quantize_int4(w, 128 if mode == "int4" else -1)
    np.testing.assert_array_equal(Q.pack_int4(got.q), stored)
    np.testing.assert_array_equal(got.scale, stored_scale)
    if got.zero is not None:
        np.testing.assert_array_equal(got.zero, keras.ops.convert_to_numpy(layer.kernel_zero))
    y = Q.int4_dense_reference(x, got, bias)
    assert np.abs(y - want).max() <= 1e-6 * max(1.0, np.abs(want).max())
