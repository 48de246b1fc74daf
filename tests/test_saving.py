"""load_model / save / save_weights / load_weights on the real Keras fixtures.

Every fixture loads from every format it comes in and reproduces the outputs Keras computed
(``NAME.io.npz``); every loaded model survives save -> load through .keras, .h5 and
.weights.h5 with identical outputs; a fastdense-saved file has the fixtures' layout; writes
are atomic.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import h5py
import numpy as np
import pytest

from fastdense.layers import Dense
from fastdense.models import Sequential, model_from_config
from fastdense.saving import api, keras_format
from fastdense.saving.api import load_model, load_weights, read_model_file, save_model, save_weights
from fastdense.saving.errors import KerasFileError

from _helpers import FIXTURE_FILES, FIXTURES, INDEX, KERAS3


def io_arrays(name):
    data = np.load(FIXTURES / f"{name}.io.npz")
    return [data[f"x{i}"] for i in range(INDEX[name]["inputs"])], data["y"]


def predict(model, xs):
    return np.asarray(model.predict(xs if len(xs) > 1 else xs[0]))


def keras_tolerance(y):
    # Keras 3.15 (torch) computes even its float64 model's matmuls in float32 (it promotes
    # matmul(float64 tensor, float64 variable) to float32), so mlp_f64's reference outputs
    # carry float32 rounding (~1e-7); float64 precision is checked separately below.
    return 1e-5 if y.dtype == np.float32 else 1e-6


_LOADED = {}


def loaded(filename):
    if filename not in _LOADED:
        _LOADED[filename] = load_model(FIXTURES / filename)
    return _LOADED[filename]


@pytest.mark.parametrize("filename", FIXTURE_FILES)
def test_fixture_loads_and_reproduces_keras_outputs(filename):
    name = filename.split(".")[0]
    xs, y = io_arrays(name)
    out = predict(loaded(filename), xs)
    assert out.shape == y.shape
    assert out.dtype == y.dtype
    assert np.max(np.abs(out - y)) <= keras_tolerance(y)


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_float64_model_computes_in_float64(ext):
    """mlp_f64 (tanh then linear) against float64 NumPy on the file's own weights: <= 1e-12."""
    model = loaded(f"mlp_f64{ext}")
    (x,), _ = io_arrays("mlp_f64")
    k0, b0, k1, b1 = [w for _, ws in read_model_file(FIXTURES / f"mlp_f64{ext}").layer_weights for w in ws]
    assert k0.dtype == np.float64
    expected = np.tanh(x @ k0 + b0) @ k1 + b1
    assert np.max(np.abs(predict(model, [x]) - expected)) <= 1e-12


def test_tfkeras2_model_takes_batch_input_shape_as_a_batch_shape():
    model = loaded("tfkeras2_mlp.h5")
    assert model.input_shape == (None, 6)
    assert model.output_shape == (None, 4)
    assert [layer.name for layer in model.layers] == ["dense_2", "dense_3"]


def test_loaded_layer_weights_are_the_files():
    model = loaded("functional_shared.keras")
    weights = dict(read_model_file(FIXTURES / "functional_shared.keras").layer_weights)
    for layer in model.layers:
        for got, want in zip(layer.get_weights(), weights[layer.name]):
            np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", FIXTURE_FILES)
@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, filename, ext):
    name = filename.split(".")[0]
    xs, _ = io_arrays(name)
    model = loaded(filename)
    target = tmp_path / f"copy{ext}"
    model.save(target) if hasattr(model, "save") else save_model(model, target)
    again = load_model(target)
    assert type(again) is type(model)
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(predict(again, xs), predict(model, xs))
    for layer_again, layer in zip(again.layers, model.layers):
        if getattr(layer, "lora_enabled", False) and ext == ".keras":
            # a .keras file keeps a LoRA Dense's merged kernel (and zero LoRA matrices), as Keras
            np.testing.assert_array_equal(layer_again.kernel, layer.kernel)
            continue
        for a, b in zip(layer_again.get_weights(), layer.get_weights()):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("filename", FIXTURE_FILES)
def test_weights_round_trip_into_a_fresh_model(tmp_path, filename):
    name = filename.split(".")[0]
    xs, _ = io_arrays(name)
    model = loaded(filename)
    save_weights(model, tmp_path / "w.weights.h5")
    fresh = model_from_config(api.model_config(model))  # freshly initialized weights
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), model.get_weights()))
    load_weights(fresh, tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(predict(fresh, xs), predict(model, xs))


@pytest.mark.parametrize("filename", ["mlp_mixed.keras", "functional_shared.h5", "tfkeras2_mlp.h5"])
def test_load_weights_from_model_files(filename):
    name = filename.split(".")[0]
    xs, y = io_arrays(name)
    model = loaded(filename)
    fresh = model_from_config(api.model_config(model))
    load_weights(fresh, FIXTURES / filename)
    assert np.max(np.abs(predict(fresh, xs) - y)) <= 1e-5


def test_save_weights_needs_the_keras_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        save_weights(loaded("seq_dense.keras"), tmp_path / "w.h5")


def test_save_needs_a_known_extension(tmp_path):
    with pytest.raises(ValueError, match=r"'\.keras'.*'\.h5'"):
        save_model(loaded("seq_dense.keras"), tmp_path / "model.bin")


def test_overwrite_false_refuses_an_existing_file(tmp_path):
    target = tmp_path / "m.keras"
    target.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        save_model(loaded("seq_dense.keras"), target, overwrite=False)
    assert target.read_bytes() == b"keep"


def test_load_weights_refuses_a_model_of_another_shape():
    model = Sequential([Dense(3, input_shape=(4,), name="a"), Dense(2, name="b")])
    with pytest.raises(KerasFileError, match=r"mlp_mixed\.keras: layer 'a'.*shape \(20, 64\).*\(4, 3\)"):
        load_weights(model, FIXTURES / "mlp_mixed.keras")
    before = model.get_weights()
    with pytest.warns(UserWarning) as record:
        load_weights(model, FIXTURES / "seq_dense.keras", skip_mismatch=True)
    assert ["skipping layer 'a'" in str(w.message) for w in record] == [True, False]
    assert "skipping layer 'b'" in str(record[1].message)
    assert record[0].filename == __file__
    assert all(np.array_equal(p, q) for p, q in zip(before, model.get_weights()))


def test_load_weights_legacy_counts_layers_with_weights():
    model = Sequential([Dense(10, input_shape=(6,)), Dense(4), Dense(4)])
    with pytest.raises(KerasFileError, match=r"tfkeras2_mlp\.h5: the file has weights for 2 layer\(s\).*3 layer"):
        load_weights(model, FIXTURES / "tfkeras2_mlp.h5")


def test_load_model_refuses_a_weights_only_file(tmp_path):
    save_weights(loaded("seq_dense.keras"), tmp_path / "w.weights.h5")
    with pytest.raises(KerasFileError, match="weights-only file"):
        load_model(tmp_path / "w.weights.h5")


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_model(FIXTURES / "does_not_exist.keras")


# --------------------------------------------------------------------------------------
# What fastdense writes looks like what Keras writes
# --------------------------------------------------------------------------------------


def _h5_layout(f):
    """Every group/dataset path with its attribute names, dataset shapes and dtypes."""
    items = {"/": ("group", tuple(sorted(f.attrs)))}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            items[name] = ("dataset", obj.shape, obj.dtype.str, tuple(sorted(obj.attrs)), obj.chunks, obj.compression)
        else:
            items[name] = ("group", tuple(sorted(obj.attrs)))

    f.visititems(visit)
    return items


def _strip_shared_ids(value):
    if isinstance(value, dict):
        return {k: _strip_shared_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [_strip_shared_ids(v) for v in value]
    return value


@pytest.mark.parametrize("name", KERAS3)
def test_saved_keras_archive_has_the_fixture_layout(tmp_path, name):
    save_model(loaded(f"{name}.keras"), tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as ours, zipfile.ZipFile(FIXTURES / f"{name}.keras") as theirs:
        assert [i.filename for i in ours.infolist()] == [i.filename for i in theirs.infolist()]
        for a, b in zip(ours.infolist(), theirs.infolist()):
            assert (a.compress_type, a.external_attr, a.create_system, a.flag_bits) == (
                b.compress_type, b.external_attr, b.create_system, b.flag_bits)
        metadata = json.loads(ours.read("metadata.json"))
        assert metadata["keras_version"] == json.loads(theirs.read("metadata.json"))["keras_version"]
        assert metadata["saved_by"].startswith("fastdense ")
        assert set(metadata) == {"keras_version", "date_saved", "saved_by"}
        our_config = json.loads(ours.read("config.json"))
        their_config = _strip_shared_ids(json.loads(theirs.read("config.json")))
        assert set(our_config) == set(their_config)
        for key in ("module", "class_name", "registered_name", "build_config", "compile_config"):
            assert our_config[key] == their_config[key], key
        assert our_config == their_config  # Dense/Activation/... configs written back exactly
        with h5py.File(io.BytesIO(ours.read("model.weights.h5")), "r") as a, \
                h5py.File(io.BytesIO(theirs.read("model.weights.h5")), "r") as b:
            assert _h5_layout(a) == _h5_layout(b)
            for path in ("vars", *[f"{p}/vars" for p, _, _ in keras_format.config_layer_paths(their_config)]):
                assert a[path].attrs["name"] == b[path].attrs["name"]


@pytest.mark.parametrize("name", KERAS3)
def test_saved_h5_has_the_fixture_layout(tmp_path, name):
    save_model(loaded(f"{name}.h5"), tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as a, h5py.File(FIXTURES / f"{name}.h5", "r") as b:
        assert _h5_layout(a) == _h5_layout(b)
        assert json.loads(a.attrs["model_config"]) == json.loads(b.attrs["model_config"])
        assert a.attrs["keras_version"] == b.attrs["keras_version"]
        assert a.attrs["backend"] == "fastdense"
        for group in ("model_weights", *[f"model_weights/{n}" for n in a["model_weights"]]):
            for key, value in b[group].attrs.items():
                if key != "backend":
                    np.testing.assert_array_equal(a[group].attrs[key], value)


@pytest.mark.parametrize("name", ["mlp_mixed", "functional_shared"])
def test_saved_weights_file_has_the_archive_layout(tmp_path, name):
    save_weights(loaded(f"{name}.keras"), tmp_path / "w.weights.h5")
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as zf, h5py.File(tmp_path / "w.weights.h5", "r") as a, \
            h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as b:
        assert _h5_layout(a) == _h5_layout(b)


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


class _Unsaveable(Dense):
    def get_weights(self):
        return [np.array(["not", "numbers"])]


@pytest.mark.parametrize("ext", [".keras", ".h5", ".weights.h5"])
def test_failed_save_leaves_the_earlier_file_intact(tmp_path, ext):
    target = tmp_path / f"model{ext}"
    good = loaded("seq_dense.keras")
    (save_weights if ext == ".weights.h5" else save_model)(good, target)
    before = target.read_bytes()
    bad = Sequential([_Unsaveable(2, input_shape=(3,), name="bad")])
    with pytest.raises(TypeError, match="layer 'bad'.*numeric"):
        (save_weights if ext == ".weights.h5" else save_model)(bad, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file left


def test_failure_inside_the_archive_write_leaves_the_earlier_file(tmp_path, monkeypatch):
    target = tmp_path / "m.keras"
    model = loaded("seq_dense.keras")
    save_model(model, target)
    before = target.read_bytes()

    def exploding_writestr(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", exploding_writestr)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.keras"]


def test_saved_file_gets_normal_permissions(tmp_path):
    target = tmp_path / "m.keras"
    save_model(loaded("seq_dense.keras"), target)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------------------
# User layers and nested models
# --------------------------------------------------------------------------------------

from fastdense.layers import Input, Layer  # noqa: E402
from fastdense.models import Model  # noqa: E402
from fastdense.saving.errors import UnsafeFileError  # noqa: E402


class Scale(Layer):
    """A user layer with one weight (saved under layers/scale/vars/0)."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.gain = self.add_weight("gain", (input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.gain * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_user_layer_round_trip_needs_custom_objects(tmp_path, ext):
    model = Sequential([Dense(3, input_shape=(4,), name="d"), Scale(3.0, name="s")], name="custom")
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    save_model(model, tmp_path / f"m{ext}")
    if ext == ".keras":
        assert [p for p, _, _ in keras_format.config_layer_paths(read_model_file(tmp_path / "m.keras").config)] == [
            "layers/dense", "layers/scale"]
    # .keras names the layer's module (not Keras's: refused as unsafe), .h5 does not (unsupported)
    with pytest.raises(UnsafeFileError if ext == ".keras" else KerasFileError, match=r"Scale.*custom_objects"):
        load_model(tmp_path / f"m{ext}")
    again = load_model(tmp_path / f"m{ext}", custom_objects={"Scale": Scale})
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.layers[1].factor == 3.0


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_nested_model_round_trip(tmp_path, ext):
    inner = Sequential([Dense(5, activation="relu", input_shape=(4,)), Dense(3)], name="inner")
    x = Input((4,), name="x")
    model = Model(x, Dense(2, name="out")(inner(x)), name="outer")
    save_model(model, tmp_path / f"m{ext}")
    if ext == ".keras":
        tree = read_model_file(tmp_path / "m.keras").keras_tree
        assert sorted(p for p, w in tree.items() if w) == [
            "layers/dense", "layers/sequential/layers/dense", "layers/sequential/layers/dense_1"]
    again = load_model(tmp_path / f"m{ext}")
    data = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(data), model.predict(data))


def test_save_keyword_arguments(tmp_path):
    model = loaded("seq_dense.keras")
    save_model(model, tmp_path / "a.h5", include_optimizer=False, save_format="h5")
    with pytest.raises(ValueError, match="zipped=False"):
        save_model(model, tmp_path / "b.keras", zipped=False)
    with pytest.raises(ValueError, match="save_format='tf'"):
        save_model(model, tmp_path / "c.keras", save_format="tf")
    with pytest.raises(TypeError, match="signatures"):
        save_model(model, tmp_path / "d.keras", signatures=None)
