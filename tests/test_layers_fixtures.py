"""The "layers" fixtures (real Keras 3.15 files, ../shared/fixtures/keras, group "layers"):
they load from .keras and .h5 and reproduce Keras's outputs, their layer configs round-trip
key for key, and what fastdense saves loads back (in fastdense, and in real Keras when it is
installed) to the same outputs.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from fastdense.layers import Layer
from fastdense.models import load_model
from fastdense.saving import deserialize_keras_object
from fastdense.saving.api import save_model

from _helpers import FIXTURES, INDEX, as_json

# int8_mlp / int4_mlp belong to the quantization work (issue 14)
NAMES = sorted(n for n, info in INDEX.items() if info.get("group") == "layers" and not n.startswith("int"))
needs_fixtures = pytest.mark.skipif(not NAMES, reason=f"no Keras 'layers' fixtures at {FIXTURES}")


def io_arrays(name):
    data = np.load(FIXTURES / f"{name}.io.npz")
    return [data[f"x{i}"] for i in range(INDEX[name]["inputs"])], data["y"]


def run(model, xs):
    return np.asarray(model.predict(xs if len(xs) > 1 else xs[0]))


def within_keras_tolerance(got, y):
    assert got.shape == y.shape and got.dtype == y.dtype
    assert np.max(np.abs(got - y)) <= 2e-5 * max(1.0, float(np.abs(y).max()))


def strip_ids(value):
    if isinstance(value, dict):
        return {k: strip_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


def keras_layer_entries(name):
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        config = json.loads(archive.read("config.json"))
    return [entry for entry in config["config"]["layers"] if entry["class_name"] != "InputLayer"]


@needs_fixtures
@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", NAMES)
def test_fixture_reproduces_keras_outputs(name, ext):
    xs, y = io_arrays(name)
    model = load_model(FIXTURES / f"{name}{ext}")
    within_keras_tolerance(run(model, xs), y)
    # one sample at a time gives the same rows (no batch-dependent path)
    single = np.concatenate([run(model, [x[i:i + 1] for x in xs]) for i in range(len(y))])
    np.testing.assert_allclose(single, run(model, xs), rtol=1e-6, atol=1e-6)


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_layer_configs_round_trip_key_for_key(name):
    for entry in keras_layer_entries(name):
        theirs = strip_ids(entry["config"])
        layer = deserialize_keras_object(entry, printable_module_name="layer")
        assert isinstance(layer, Layer)
        ours = as_json(layer.get_config())
        assert ours == theirs, entry["class_name"]
        again = type(layer).from_config(layer.get_config())
        assert as_json(again.get_config()) == ours


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_model_config_writes_back_what_keras_wrote(name):
    model = load_model(FIXTURES / f"{name}.keras")
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        theirs = strip_ids(json.loads(archive.read("config.json"))["config"])
    assert as_json(model.get_config()) == theirs


@needs_fixtures
@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("source", [".keras", ".h5"])
@pytest.mark.parametrize("name", NAMES)
def test_saved_files_reload_to_the_same_outputs(tmp_path, name, source, ext):
    xs, y = io_arrays(name)
    model = load_model(FIXTURES / f"{name}{source}")
    save_model(model, tmp_path / f"m{ext}")
    again = load_model(tmp_path / f"m{ext}")
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    within_keras_tolerance(run(again, xs), y)
    np.testing.assert_allclose(run(again, xs), run(model, xs), rtol=1e-6, atol=1e-6)


@needs_fixtures
@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", NAMES)
def test_real_keras_reads_what_fastdense_saves(tmp_path, name, ext):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    xs, y = io_arrays(name)
    model = load_model(FIXTURES / f"{name}{ext}")
    save_model(model, tmp_path / f"m{ext}")
    theirs = keras.saving.load_model(tmp_path / f"m{ext}", compile=False)
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in model.layers]
    got = np.asarray(theirs.predict(xs if len(xs) > 1 else xs[0], verbose=0))
    within_keras_tolerance(got, y)
    if ext == ".h5":  # the legacy file holds every variable, LoRA matrices included
        for a, b in zip(theirs.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(np.asarray(a), b)
