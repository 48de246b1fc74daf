"""The seed transcript, end to end: Sequential + Dense(16, input_shape=(8,)) the Keras 2 way."""

import numpy as np
import pytest

import fastdense
from fastdense.layers import Dense, SymbolicTensor
from fastdense.models import Sequential


pytestmark = pytest.mark.usefixtures("fresh_names")  # tests/conftest.py


def test_seed_transcript():
    model = Sequential()
    layer = Dense(16, input_shape=(8,))
    model.add(layer)

    assert layer.name == "dense"
    assert layer.input_shape == (None, 8)
    assert layer.output_shape == (None, 16)
    assert isinstance(layer.input, SymbolicTensor)
    assert repr(layer.input) == "<SymbolicTensor name='dense_input' shape=(None, 8) dtype=float32>"
    assert layer.output.shape == (None, 16) and layer.output.dtype == "float32"
    assert model.input is layer.input and model.output is layer.output
    assert model.input_shape == (None, 8) and model.output_shape == (None, 16)

    kernel, bias = layer.get_weights()
    assert kernel.shape == (8, 16) and bias.shape == (16,)
    assert kernel.dtype == np.float32 and bias.dtype == np.float32
    limit = np.sqrt(6 / (8 + 16))
    assert limit == 0.5
    assert np.all(np.abs(kernel) <= limit) and np.abs(kernel).max() > 0.25
    # uniform(-0.5, 0.5) has standard deviation 0.5 / sqrt(3) = 0.289
    assert 0.2 < kernel.std() < 0.38
    assert np.array_equal(bias, np.zeros(16, np.float32))

    clone = Dense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.units == 16 and not clone.built


def test_seed_input_name_follows_the_layer_name():
    # Keras 2 names the implicit input "<first layer name>_input": the seed's "dense_1_input".
    model = Sequential()
    model.add(Dense(16, input_shape=(8,), name="dense_1"))
    assert repr(model.layers[0].input) == "<SymbolicTensor name='dense_1_input' shape=(None, 8) dtype=float32>"
    assert fastdense.Input(shape=(8,), name="dense_1_input").name == "dense_1_input"


def test_seed_predict_matches_numpy():
    model = Sequential([Dense(16, input_shape=(8,), activation="relu"), Dense(4)])
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    k0, b0, k1, b1 = (w.astype(np.float64) for w in model.get_weights())
    expected = np.maximum(x @ k0 + b0, 0) @ k1 + b1
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_seed_example_values():
    # [[1, 2], [3, 4]] @ [[0.5, 0.75], [0.25, 0.5]]
    layer = Dense(2, use_bias=False)
    layer.build((None, 2))
    layer.set_weights([np.array([[0.5, 0.75], [0.25, 0.5]])])
    np.testing.assert_array_equal(layer([[1, 2], [3, 4]]), [[1.0, 1.75], [2.5, 4.25]])
