"""The real Keras files' configs: every Dense/Activation layer config and every model config in
../shared/fixtures/keras rebuilds in fastdense and is written back with the same keys and values;
with the weights from the files, the rebuilt models reproduce Keras's outputs."""

import io
import json
import zipfile

import numpy as np
import pytest

from fastdense.layers import Activation, Dense
from fastdense.layers.base import to_snake_case
from fastdense.models import Model, Sequential, model_from_config
from fastdense.saving import serialize_keras_object
from fastdense.saving.keras_format import weights_from_keras_store

from _helpers import FIXTURES, KERAS3, as_json


KERAS_FILES = KERAS3  # the supported fixtures (see _helpers.NOT_YET_SUPPORTED)


def strip_ids(value):
    """Drop Keras's in-memory ``shared_object_id`` markers (not part of any object's config)."""
    if isinstance(value, dict):
        return {k: strip_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


def keras_archive(name):
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.h5")
    return config, weights


def layer_entries(config):
    return config["config"]["layers"]


def reference_io(name):
    data = np.load(FIXTURES / f"{name}.io.npz")
    xs = [data[key] for key in sorted(k for k in data.files if k.startswith("x"))]
    return xs, data["y"]


def test_fixtures_found():
    assert {"mlp_mixed", "mlp_exotic", "seq_dense", "functional_shared", "mlp_f64", "mlp_dropout"} <= set(KERAS_FILES)


@pytest.mark.parametrize("name", KERAS_FILES)
def test_every_dense_and_activation_config_round_trips(name):
    config, _ = keras_archive(name)
    seen = 0
    for entry in layer_entries(config):
        cls = {"Dense": Dense, "Activation": Activation}.get(entry["class_name"])
        if cls is None:
            continue
        keras_config = strip_ids(entry["config"])
        layer = cls.from_config(keras_config)
        assert as_json(layer.get_config()) == keras_config
        written = as_json(serialize_keras_object(layer))
        assert written["module"] == entry["module"] and written["class_name"] == entry["class_name"]
        if "build_config" in entry:
            layer.build_from_config(entry["build_config"])
            assert as_json(serialize_keras_object(layer))["build_config"] == entry["build_config"]
        seen += 1
    assert seen > 0


@pytest.mark.parametrize("name", KERAS_FILES)
def test_model_config_rebuilds_and_writes_back_the_same(name):
    config, _ = keras_archive(name)
    model = model_from_config(config)
    expected_cls = Sequential if config["class_name"] == "Sequential" else Model
    assert type(model) is expected_cls
    ours = strip_ids(as_json(serialize_keras_object(model)))
    theirs = strip_ids({k: v for k, v in config.items() if k != "compile_config"})
    # Keras records the class of a functional model as registered_name "Functional";
    # fastdense writes null there (Keras 3 loads both through the module path).
    theirs.pop("registered_name")
    assert ours.pop("registered_name") is None
    assert ours == theirs


def load_keras_weights(model, weights_bytes):
    """Set weights from a .keras archive's model.weights.h5 (layers/<auto class name>/vars/<i>)."""
    h5py = pytest.importorskip("h5py")
    counts = {}
    with h5py.File(io.BytesIO(weights_bytes), "r") as handle:
        layers = model.layers
        for layer in layers:
            base = to_snake_case(type(layer).__name__)
            index = counts.get(base, 0)
            counts[base] = index + 1
            if layer.weights:
                group = handle["layers"][base if index == 0 else f"{base}_{index}"]["vars"]
                # (a LoRA Dense stores its merged kernel and bias only: the layer says what it takes)
                layer.set_weights(weights_from_keras_store(layer, [group[str(i)][()] for i in range(len(group))]))


@pytest.mark.parametrize("name", KERAS_FILES)
def test_rebuilt_model_reproduces_keras_outputs(name):
    config, weights = keras_archive(name)
    model = model_from_config(config)
    load_keras_weights(model, weights)
    xs, y = reference_io(name)
    got = model.predict(xs if len(xs) > 1 else xs[0])
    assert got.shape == y.shape and got.dtype == y.dtype
    # Keras 3.15 (torch) computed mlp_f64's reference in float32 precision: compare every
    # model with float32 tolerance here, and mlp_f64 with float64 NumPy below.
    np.testing.assert_allclose(got, y, rtol=2e-5, atol=2e-5)


def test_float64_model_is_float64_exact():
    config, weights = keras_archive("mlp_f64")
    model = model_from_config(config)
    load_keras_weights(model, weights)
    (x,), _ = reference_io("mlp_f64")
    k0, b0, k1, b1 = model.get_weights()
    assert k0.dtype == np.float64
    expected = np.tanh(x @ k0 + b0) @ k1 + b1
    got = model.predict(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_keras2_h5_config_reads_right():
    h5py = pytest.importorskip("h5py")
    with h5py.File(FIXTURES / "tfkeras2_mlp.h5", "r") as handle:
        config = json.loads(handle.attrs["model_config"])
        group = handle["model_weights"]
        model = model_from_config(config)
        # batch_input_shape [None, 6] is a *batch* shape (Keras 3.15 misreads it as per-sample)
        assert model.input_shape == (None, 6)
        assert model.layers[0].input.name == "dense_2_input"
        for layer in model.layers:
            inner = group[layer.name][layer.name]
            layer.set_weights([inner["kernel:0"][()], inner["bias:0"][()]])
    xs, y = reference_io("tfkeras2_mlp")
    np.testing.assert_allclose(model.predict(xs[0]), y, rtol=2e-5, atol=2e-5)
    written = as_json(serialize_keras_object(model))
    assert written["class_name"] == "Sequential" and written["module"] == "keras"
    first = written["config"]["layers"][0]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [None, 6]
    dense = written["config"]["layers"][1]
    assert dense["config"]["dtype"]["class_name"] == "DTypePolicy"
    assert "batch_input_shape" not in dense["config"] and "activity_regularizer" not in dense["config"]
    assert model_from_config(written).get_config() == model.get_config()


def test_functional_shared_graph_structure():
    config, _ = keras_archive("functional_shared")
    model = model_from_config(config)
    shared = model.get_layer("shared_dense")
    assert len(shared.inbound_nodes) == 2
    assert shared.get_input_at(0) is model.inputs[0] and shared.get_input_at(1) is model.inputs[1]
    assert shared.input_shape == (None, 16) and shared.output_shape == (None, 32)
    assert model.get_layer("concat").input == [shared.get_output_at(0), shared.get_output_at(1)]
    assert model.output_shape == (None, 8)
