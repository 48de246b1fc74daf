"""``load_model(path, dtype=...)``: serving mixed-precision and 16-bit Keras models in float32.

Fixtures: tests/fixtures/keras_mixed/mp_{mixed_float16,mixed_bfloat16,float16}.{keras,h5,npz} (its mk_mixed.py),
written by Keras 3.15.1 (torch backend) with ``keras.config.set_dtype_policy(policy)`` around
``Sequential([Input((10,)), Dense(16, "relu"), LayerNormalization(), Dense(3, "softmax")])``;
the .npz holds ``x`` and Keras's own outputs ``y_keras`` (16-bit arithmetic).
"""

from pathlib import Path

import numpy as np
import pytest

from fastdense import quantizers
from fastdense.layers import Dense
from fastdense.models import load_model, save_model
from fastdense.saving import KerasFileError
from fastdense.saving.cli import predict_main
from fastdense.saving.serialization import serving_dtype

FIXTURES = Path(__file__).parent / "fixtures"
POLICIES = ["mixed_float16", "mixed_bfloat16", "float16"]
# Keras computes in 16 bits: its outputs (softmax, <= 1) differ from float32 arithmetic by about
# that precision
KERAS_TOLERANCE = {"mixed_float16": 2e-3, "float16": 2e-3, "mixed_bfloat16": 2e-2}


def _reference(model, x: np.ndarray) -> np.ndarray:
    """Dense relu -> LayerNormalization -> Dense softmax in float64 from the model's weights."""
    (k1, b1), (gamma, beta), (k2, b2) = (
        [w.astype(np.float64) for w in layer.get_weights()] for layer in model.layers)
    h = np.maximum(x.astype(np.float64) @ k1 + b1, 0)
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mean) / np.sqrt(var + model.layers[1].epsilon) * gamma + beta
    z = h @ k2 + b2
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_16_bit_models_are_refused_by_default_naming_the_option(policy, ext):
    with pytest.raises(KerasFileError, match=r"dtype='float32'"):
        load_model(FIXTURES / "keras_mixed" / f"mp_{policy}.{ext}")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_float32_serving(policy, ext):
    data = np.load(FIXTURES / "keras_mixed" / f"mp_{policy}.npz")
    model = load_model(FIXTURES / "keras_mixed" / f"mp_{policy}.{ext}", dtype="float32")
    assert [layer.dtype for layer in model.layers] == ["float32"] * 3
    assert all(w.dtype == np.float32 for w in model.get_weights())
    got = model.predict(data["x"])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _reference(model, data["x"]), rtol=1e-5, atol=1e-6)
    # Keras's own 16-bit outputs: close, not equal
    np.testing.assert_allclose(got, data["y_keras"], atol=KERAS_TOLERANCE[policy])
    assert np.abs(got - data["y_keras"]).max() > 0


def test_float16_weights_are_the_files_values():
    # a float16 policy stores float16 variables: served as their exact float32 values
    import h5py

    model = load_model(FIXTURES / "keras_mixed" / "mp_float16.h5", dtype="float32")
    with h5py.File(FIXTURES / "keras_mixed" / "mp_float16.h5", "r") as f:
        stored = f["model_weights/dense_4/mp_float16/dense_4/kernel"][()]
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], stored.astype(np.float32))


def test_saved_and_reloaded_as_float32(tmp_path):
    data = np.load(FIXTURES / "keras_mixed" / "mp_mixed_float16.npz")
    model = load_model(FIXTURES / "keras_mixed" / "mp_mixed_float16.keras", dtype="float32")
    save_model(model, tmp_path / "m.keras")
    back = load_model(tmp_path / "m.keras")     # plain float32 now: no option needed
    np.testing.assert_array_equal(back.predict(data["x"]), model.predict(data["x"]))


def test_float64_model_served_in_float32():
    data = np.load(FIXTURES / "keras_mixed" / "mp_mixed_float16.npz")
    model64 = load_model(FIXTURES / "keras_mixed" / "mp_mixed_float16.keras", dtype="float64")
    assert model64.layers[0].dtype == "float64"
    np.testing.assert_allclose(model64.predict(data["x"]), _reference(model64, data["x"]), rtol=1e-12, atol=1e-14)


def test_the_option_ends_with_the_load():
    load_model(FIXTURES / "keras_mixed" / "mp_float16.keras", dtype="float32")
    with pytest.raises(ValueError, match="float16"):
        Dense(2, dtype="float16")
    with serving_dtype("float32"):
        assert Dense(2, dtype="mixed_bfloat16").dtype == "float32"
        assert quantizers.read_policy("int8_from_mixed_float16").source_name == "float32"
    with pytest.raises(ValueError, match="from float32 only"):
        quantizers.read_policy("int8_from_mixed_float16")


@pytest.mark.parametrize("dtype", ["float16", "int8", np.float32])
def test_bad_dtype_values(dtype):
    with pytest.raises(ValueError, match="dtype"):
        load_model(FIXTURES / "keras_mixed" / "mp_float16.keras", dtype=dtype)


def test_cli_predict_dtype(tmp_path, capsys):
    data = np.load(FIXTURES / "keras_mixed" / "mp_mixed_bfloat16.npz")
    np.save(tmp_path / "x.npy", data["x"])
    model_path = str(FIXTURES / "keras_mixed" / "mp_mixed_bfloat16.keras")
    assert predict_main([model_path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-q"]) != 0
    assert "dtype='float32'" in capsys.readouterr().err
    assert predict_main([model_path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-q",
                        "--dtype", "float32"]) == 0
    model = load_model(model_path, dtype="float32")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.predict(data["x"]))


def test_keras_reads_the_float32_model(tmp_path):
    keras = pytest.importorskip("keras")
    data = np.load(FIXTURES / "keras_mixed" / "mp_mixed_float16.npz")
    model = load_model(FIXTURES / "keras_mixed" / "mp_mixed_float16.h5", dtype="float32")
    save_model(model, tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert theirs.layers[0].compute_dtype == "float32"
    np.testing.assert_allclose(np.asarray(theirs.predict(data["x"], verbose=0)), model.predict(data["x"]),
                               rtol=1e-5, atol=1e-6)
