"""Keras's int4 with an activation quantizer (Int4QuantizationConfig(block_size=-1,
activation_quantizer=AbsMaxQuantizer(axis=-1))): int4 weights, inputs quantized per row, run
natively by the int8 kernels. Exact integer sums, so outputs equal the int64 NumPy reference bit
for bit, on every path, batch and thread count; and Keras's own outputs (a fixture Keras wrote)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdense
from fastdense import _kernels, ops
from fastdense import quantizers as Q
from fastdense.layers import Dense
from fastdense.models import Sequential
from fastdense.saving import load_model

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "q4"
ACT_CONFIG = {"class_name": "Int4QuantizationConfig",
              "config": {"block_size": -1, "weight_quantizer": None,
                         "activation_quantizer": {"class_name": "AbsMaxQuantizer",
                                                  "config": {"axis": [-1], "value_range": [-127, 127]}}}}


def _kernel(k=70, n=45, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) * 0.2).astype(np.float32)
    w4 = Q.quantize_int4(w, -1)
    return w4, _kernels.QuantizedKernel("int4", Q.pack_int4(w4.q), w4.scale, None, -1, True)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8, 12, 13, 33, 70])
def test_int4_with_quantized_inputs_is_native_and_exact(m):
    w4, qk = _kernel()
    assert qk.native
    rng = np.random.default_rng(m)
    x = (rng.standard_normal((m, 70)) * 3).astype(np.float32)
    b = rng.standard_normal(45).astype(np.float32)
    want = Q.int8_dense_reference(x, w4.q, w4.scale, b)   # int64 products, Keras's de-scale order
    np.testing.assert_array_equal(ops.dense(x, qk, b), want)
    np.testing.assert_array_equal(ops.dense(x, qk, b, "relu"), np.maximum(want, 0))


def test_one_row_reads_nibbles_where_avx512_vnni_runs_and_gives_the_same_bits():
    """A lone row runs on a nibble copy of the int4 values on AVX512-VNNI / AMX (half the bytes
    of the int8 panels); its integers, and so its bits, are the int8 kernel's: checked against
    the int64 reference over k and n tails and the extreme values."""
    isa = _kernels.quant_isa()
    _, qk = _kernel(k=9, n=3)
    assert qk._row_nibbles == (isa in ("avx512_vnni", "amx"))
    if not qk._row_nibbles:
        pytest.skip(f"the nibble row kernel needs AVX512-VNNI; the quantized path here is {isa}")
    rng = np.random.default_rng(11)
    for k in (1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 63, 64, 65, 127, 128, 129, 784):
        for n in (1, 15, 16, 17, 100, 129, 512):
            q = rng.integers(-8, 8, (k, n)).astype(np.int8)
            q[:, 0] = -8
            q[:, -1] = 7
            scale = rng.uniform(0.5, 20, n).astype(np.float32)
            qk = _kernels.QuantizedKernel("int4", Q.pack_int4(q), scale, None, -1, True)
            x = (rng.standard_normal((4, k)) * rng.uniform(0.01, 100)).astype(np.float32)
            x[1] = 5.0      # every input quantizes to +127 ...
            x[2] = -5.0     # ... and to -127: the extreme products against -8 and 7
            b = rng.standard_normal(n).astype(np.float32)
            want = Q.int8_dense_reference(x, q, scale, b)
            for i in range(4):
                np.testing.assert_array_equal(ops.dense(x[i:i + 1], qk, b)[0], want[i], err_msg=f"k={k} n={n} row {i}")
            np.testing.assert_array_equal(ops.dense(x, qk, b), want)


def test_one_row_split_over_threads_gives_the_same_bits():
    w4, qk = _kernel(k=784, n=512, seed=12)
    x = np.random.default_rng(13).standard_normal((1, 784)).astype(np.float32)
    want = Q.int8_dense_reference(x, w4.q, w4.scale)
    before = fastdense.get_num_threads()
    try:
        for threads in (1, 2):
            fastdense.set_num_threads(threads)
            np.testing.assert_array_equal(ops.dense(x, qk), want)
    finally:
        fastdense.set_num_threads(before)


def test_int4_with_quantized_inputs_is_the_int8_layer_of_the_same_integers():
    """The same integers as an int8 kernel give the same bits (the int8 kernels run both)."""
    w4, qk = _kernel(k=300, n=130, seed=4)
    q8 = _kernels.QuantizedKernel("int8", w4.q, w4.scale, None, -1, True)
    x = np.random.default_rng(5).standard_normal((17, 300)).astype(np.float32)
    np.testing.assert_array_equal(ops.dense(x, qk, None, "tanh"), ops.dense(x, q8, None, "tanh"))


def test_threads_do_not_change_a_bit():
    w4, qk = _kernel(k=512, n=512, seed=6)
    x = np.random.default_rng(7).standard_normal((9, 512)).astype(np.float32)
    before = fastdense.get_num_threads()
    try:
        fastdense.set_num_threads(1)
        one = [ops.dense(x[:m], qk) for m in (1, 4, 9)]
        fastdense.set_num_threads(2)
        two = [ops.dense(x[:m], qk) for m in (1, 4, 9)]
    finally:
        fastdense.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one[2], Q.int8_dense_reference(x, w4.q, w4.scale))


_PATH_SCRIPT = """
import json, sys
import numpy as np
from fastdense import _kernels, ops
from fastdense import quantizers as Q
rng = np.random.default_rng(3)
out = {"isa": _kernels.quant_isa()}
for (m, k, n) in [(1, 20, 64), (5, 784, 33), (17, 129, 130), (4, 3, 1)]:
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    w4 = Q.quantize_int4(rng.standard_normal((k, n)).astype(np.float32), -1)
    qk = _kernels.QuantizedKernel("int4", Q.pack_int4(w4.q), w4.scale, None, -1, True)
    out[f"{m}x{k}x{n}"] = [ops.dense(x, qk).tobytes().hex(), Q.int8_dense_reference(x, w4.q, w4.scale).tobytes().hex()]
json.dump(out, sys.stdout)
"""


@pytest.mark.parametrize("path,quant", [("baseline", None), ("avx2", "avx2"), ("avx2", None), ("avx512", None)])
def test_every_path_equals_the_integer_reference(path, quant):
    env = {k: v for k, v in os.environ.items() if k != "FASTDENSE_QUANT_PATH"}
    env["FASTDENSE_CPU_PATH"] = path
    if quant:
        env["FASTDENSE_QUANT_PATH"] = quant
    run = subprocess.run([sys.executable, "-c", _PATH_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    isa = result.pop("isa")
    for shape, (got, want) in result.items():
        assert got == want, (isa, shape)


class _KerasLikeConfig:
    """What Keras's Int4QuantizationConfig object offers: get_config() (class name from the type)."""

    def __init__(self, config):
        self._config = config

    def get_config(self):
        return dict(self._config)


_KerasLikeConfig.__name__ = "Int4QuantizationConfig"


@pytest.mark.parametrize("as_object", [False, True])
def test_model_quantize_takes_the_keras_config(as_object):
    rng = np.random.default_rng(8)
    model = Sequential([Dense(24, activation="relu"), Dense(5)])
    model.build((None, 40))
    model.set_weights([rng.standard_normal(s).astype(np.float32) * 0.3 for s in [(40, 24), (24,), (24, 5), (5,)]])
    x = rng.standard_normal((6, 40)).astype(np.float32)
    config = _KerasLikeConfig(ACT_CONFIG["config"]) if as_object else ACT_CONFIG
    model.quantize("int4", config=config)
    assert [layer.dtype_policy.name for layer in model.layers] == ["int4/-1_from_float32"] * 2
    assert model.layers[0].quantization_config["config"]["activation_quantizer"]["class_name"] == "AbsMaxQuantizer"
    # by hand: each layer's inputs quantized per row, int64 products, de-scaled, biased, relu
    h = x
    for layer, act in zip(model.layers, (lambda v: np.maximum(v, 0), lambda v: v)):
        bias, packed, scale = layer.get_weights()   # Keras's order: the trainable bias first
        q = Q.unpack_int4(packed, scale.shape[0])
        h = act(Q.int8_dense_reference(h, q, scale, bias))
    np.testing.assert_array_equal(model.predict(x), h)


def test_a_config_that_is_neither_dict_nor_keras_object_is_refused():
    layer = Dense(3)
    layer.build((None, 4))
    with pytest.raises(ValueError, match="Int4QuantizationConfig or its config dict, got int"):
        layer.quantize("int4", config=7)


@pytest.mark.skipif(not (FIXTURES / "int4_act_mlp.keras").exists(), reason="int4_act_mlp fixture not found")
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras_file_with_the_activation_quantizer(ext):
    """A Keras 3.15 MLP quantized with the activation quantizer (tests/fixtures/q4/make_int4_act.py):
    fastdense reads it, runs it natively and gives Keras's outputs."""
    model = load_model(FIXTURES / f"int4_act_mlp.{ext}")
    data = np.load(FIXTURES / "int4_act_mlp.io.npz")
    assert {layer.dtype_policy.name for layer in model.layers if isinstance(layer, Dense)} == {"int4/-1_from_float32"}
    assert all(layer._quantized_kernel(layer._values).native for layer in model.layers if isinstance(layer, Dense))
    y = model.predict(data["x0"])
    # the integer sums are exact; Keras's torch de-scale and activations may differ by rounding
    assert np.abs(y - data["y"]).max() <= 2e-6 * max(1.0, np.abs(data["y"]).max())
