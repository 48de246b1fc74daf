"""LoRA on a quantized Dense (Keras 3.15's QLoRA: ``quantize`` then ``enable_lora``, or the reverse).

Keras computes ``descale(int product) + (lora_alpha / lora_rank) * ((x @ A) @ B)`` on the float
inputs, then the bias and the activation. A legacy .h5 file keeps A and B; a .keras file stores
the kernel with the update merged in and quantized again (``_get_kernel_with_merged_lora``), and
loading one sets A and B to zeros.

Fixtures: tests/fixtures/keras_quant/qlora_{int8,int4}.{keras,h5,npz}, written by its mk_qlora.py with Keras 3.15.1
(torch backend): ``Sequential([Input((12,)), Dense(8, "relu"), Dense(3)])``, ``quantize(mode)``,
``layers[0].enable_lora(2)``, A and B set to ``0.3 * normal``; the .npz holds ``x``, the
model's output ``y_lora`` and the output ``y_merged`` of the .keras file loaded back.
"""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastdense
from fastdense import quantizers
from fastdense.layers import Dense
from fastdense.models import Sequential, load_model, save_model
from fastdense.models.plan import compile_plan

FIXTURES = Path(__file__).parent / "fixtures" / "keras_quant"
MODES = ["int8", "int4"]


def _reference(layer: Dense, x: np.ndarray) -> np.ndarray:
    """Keras's quantized call with LoRA in float64 from the layer's variables (relu or linear)."""
    weights = dict(zip(layer.weight_names, layer.get_weights(), strict=True))
    x64 = x.astype(np.float64)
    if layer.quantization_mode == "int8":
        xq, x_scale = quantizers.quantize_inputs(x)
        product = (xq.astype(np.int64) @ weights["kernel"].astype(np.int64)).astype(np.float64)
        out = product / (weights["kernel_scale"].astype(np.float64) * x_scale.astype(np.float64))
    else:
        q = quantizers.unpack_int4(weights["kernel"], layer.units).astype(np.float64)
        rows = np.arange(q.shape[0]) // layer.dtype_policy.block_size
        w = (q - weights["kernel_zero"][rows]) * weights["kernel_scale"][rows].astype(np.float64)
        out = x64 @ w
    a, b = weights["lora_kernel_a"].astype(np.float64), weights["lora_kernel_b"].astype(np.float64)
    out = out + (layer.lora_alpha / layer.lora_rank) * ((x64 @ a) @ b) + weights["bias"]
    return np.maximum(out, 0) if layer.get_config()["activation"] == "relu" else out


@pytest.mark.parametrize("mode", MODES)
def test_keras_files_give_keras_outputs(mode):
    data = np.load(FIXTURES / f"qlora_{mode}.npz")
    # legacy .h5: A and B as trained; .keras: merged into the integers, A and B zeros
    for name, key in ((f"qlora_{mode}.h5", "y_lora"), (f"qlora_{mode}.keras", "y_merged")):
        model = load_model(FIXTURES / name)
        layer = model.layers[0]
        assert layer.lora_enabled and layer.lora_rank == 2 and layer.quantization_mode == mode
        expected_names = ["bias", "lora_kernel_a", "lora_kernel_b", "kernel", "kernel_scale"]
        assert layer.weight_names == expected_names + (["kernel_zero", "g_idx"] if mode == "int4" else [])
        np.testing.assert_allclose(model.predict(data["x"]), data[key], rtol=1e-6, atol=1e-6)
        lora_is_zero = not layer.get_weights()[1].any() and not layer.get_weights()[2].any()
        assert lora_is_zero == name.endswith(".keras")


@pytest.mark.parametrize("mode", MODES)
def test_outputs_follow_keras_formula(mode):
    rng = np.random.default_rng(5)
    model = Sequential([fastdense.Input((20,)), Dense(9, activation="relu", name="adapted"), Dense(4)])
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    model.quantize(mode)
    layer = model.get_layer("adapted")
    layer.enable_lora(3, lora_alpha=6.0)
    weights = layer.get_weights()
    weights[1] = rng.standard_normal(weights[1].shape).astype(np.float32)    # A
    weights[2] = rng.standard_normal(weights[2].shape).astype(np.float32)    # B
    layer.set_weights(weights)
    x = rng.standard_normal((7, 20)).astype(np.float32)
    got = layer(x)
    expected = _reference(layer, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    zero_b = list(weights)
    zero_b[2] = np.zeros_like(weights[2])
    layer.set_weights(zero_b)
    assert np.abs(layer(x) - got).max() > 0.1    # the update is not negligible here
    layer.set_weights(weights)
    np.testing.assert_allclose(model.predict(x), model.layers[1](layer(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("order", ["lora_then_quantize", "quantize_then_lora"])
def test_quantize_keeps_lora_as_keras(order):
    # Keras quantizes the frozen kernel alone and keeps A and B (no merge)
    rng = np.random.default_rng(2)
    layer = Dense(5, input_shape=(6,))
    layer.build((None, 6))
    kernel, bias = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    layer.set_weights([kernel, bias])
    if order == "lora_then_quantize":
        layer.enable_lora(2)
        a = rng.standard_normal((6, 2)).astype(np.float32)
        b = rng.standard_normal((2, 5)).astype(np.float32)
        layer.set_weights([kernel, bias, a, b])
        layer.quantize("int8")
    else:
        layer.quantize("int8")
        layer.enable_lora(2)
        a = rng.standard_normal((6, 2)).astype(np.float32)
        b = rng.standard_normal((2, 5)).astype(np.float32)
        layer.set_weights([bias, a, b] + layer.get_weights()[3:])
    assert layer.weight_names == ["bias", "lora_kernel_a", "lora_kernel_b", "kernel", "kernel_scale"]
    q, scale = quantizers.quantize_int8(kernel)
    got = dict(zip(layer.weight_names, layer.get_weights(), strict=True))
    np.testing.assert_array_equal(got["kernel"], q)
    np.testing.assert_array_equal(got["kernel_scale"], scale)
    np.testing.assert_array_equal(got["lora_kernel_a"], a)
    np.testing.assert_array_equal(got["lora_kernel_b"], b)
    assert [len(layer.trainable_weights), len(layer.non_trainable_weights)] == [3, 2]
    # Keras's `kernel` of a quantized LoRA layer: the integers plus the float update
    np.testing.assert_allclose(layer.kernel, q + (a.astype(np.float64) @ b), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_saving_merges_as_keras(tmp_path, mode):
    h5py = pytest.importorskip("h5py")
    data = np.load(FIXTURES / f"qlora_{mode}.npz")
    model = load_model(FIXTURES / f"qlora_{mode}.h5")    # A and B as trained
    save_model(model, tmp_path / "m.keras")

    def store(path: Path) -> list[np.ndarray]:
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
            group = f["layers/dense/vars"]
            return [group[str(i)][()] for i in range(len(group))]

    ours, keras = store(tmp_path / "m.keras"), store(FIXTURES / f"qlora_{mode}.keras")
    assert [a.dtype for a in ours] == [a.dtype for a in keras] and [a.shape for a in ours] == [a.shape for a in keras]
    # the same re-quantization; A @ B is a float32 product in both, so an integer on a rounding
    # tie may differ by one
    if mode == "int4":
        ours[0], keras[0] = (quantizers.unpack_int4(k, 8) for k in (ours[0], keras[0]))
    assert np.abs(ours[0].astype(np.int16) - keras[0]).max() <= 1
    assert np.mean(ours[0] == keras[0]) > 0.95
    for a, b in zip(ours[1:], keras[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    back = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(back.predict(data["x"]), data["y_merged"], rtol=1e-5, atol=1e-5)
    save_model(model, tmp_path / "m.h5")    # legacy .h5 keeps A and B
    np.testing.assert_allclose(load_model(tmp_path / "m.h5").predict(data["x"]), data["y_lora"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_plan_runs_zero_lora_and_leaves_the_rest_to_the_layers(mode):
    data = np.load(FIXTURES / f"qlora_{mode}.npz")
    merged = load_model(FIXTURES / f"qlora_{mode}.keras")    # LoRA zeros: the plain quantized step
    assert compile_plan(merged, [(12,)], np.dtype(np.float32)) is not None
    np.testing.assert_allclose(merged.predict(data["x"]), data["y_merged"], rtol=1e-6, atol=1e-6)
    trained = load_model(FIXTURES / f"qlora_{mode}.h5")
    assert compile_plan(trained, [(12,)], np.dtype(np.float32)) is None
    np.testing.assert_allclose(trained.predict(data["x"]), data["y_lora"], rtol=1e-6, atol=1e-6)


def test_keras_reads_fastdense_qlora_files(tmp_path):
    keras = pytest.importorskip("keras")
    data = np.load(FIXTURES / "qlora_int8.npz")
    model = load_model(FIXTURES / "qlora_int8.h5")
    for name, key in (("m.h5", "y_lora"), ("m.keras", "y_merged")):
        save_model(model, tmp_path / name)
        theirs = keras.saving.load_model(tmp_path / name)
        np.testing.assert_allclose(np.asarray(theirs.predict(data["x"], verbose=0)), data[key], rtol=1e-5, atol=1e-5)
