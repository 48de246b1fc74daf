"""The Keras file readers on the real Keras fixtures, without building fastdense models.

Each reader's config and weights are run through a float64 NumPy reference of the model
(below) and must reproduce the outputs Keras computed (``NAME.io.npz``); the weights the
readers return are compared with the raw HDF5 content.
"""

from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest
from scipy.special import erf, logsumexp

from fastdense.saving import compat, keras_format, legacy_h5
from fastdense.saving.api import read_model_file

from _helpers import FIXTURE_FILES, FIXTURES, INDEX, KERAS3


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x):
    return np.logaddexp(0.0, x)


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softmax": lambda x: np.exp(x - logsumexp(x, axis=-1, keepdims=True)),
    "log_softmax": lambda x: x - logsumexp(x, axis=-1, keepdims=True),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "exponential": np.exp,
}


def _layer(entry, weights, x):
    cls = entry["class_name"]
    cfg = entry["config"]
    name = cfg["name"]
    if cls == "Dense" and isinstance(cfg.get("dtype"), dict) and "config" in cfg["dtype"] \
            and "mode" in cfg["dtype"]["config"]:
        return ACTIVATIONS[cfg.get("activation") or "linear"](_quantized_dense(cfg, weights[name], x))
    if cls == "Dense":
        w = [np.asarray(a, np.float64) for a in weights[name]]
        y = x @ w[0]
        if cfg.get("use_bias", True):
            y = y + w[1]
        return ACTIVATIONS[cfg.get("activation") or "linear"](y)
    if cls == "Activation":
        return ACTIVATIONS[cfg["activation"]](x)
    if cls == "Flatten":
        return x.reshape(x.shape[0], -1)
    if cls in ("Dropout", "InputLayer"):
        return x
    if cls == "Add":
        return sum(x)
    if cls == "Concatenate":
        return np.concatenate(x, axis=cfg.get("axis", -1))
    raise NotImplementedError(cls)


def _quantized_dense(cfg, arrays, x):
    """A Keras int8 / int4 Dense (fastdense.quantizers, checked bit for bit against Keras)."""
    from fastdense import quantizers

    arrays = list(arrays)
    if arrays[0].dtype != np.int8:  # .h5: trainable first (bias, kernel, ...); .keras: kernel, bias, ...
        arrays = arrays[1:2] + arrays[:1] + arrays[2:]
    bias = arrays[1] if cfg.get("use_bias", True) else None
    rest = arrays[2:] if bias is not None else arrays[1:]
    policy = quantizers.read_policy(cfg["dtype"], cfg.get("quantization_config"))
    x = np.asarray(x, np.float32)
    if policy.mode == "int8":
        return quantizers.int8_dense_reference(x, arrays[0], rest[0], bias, policy.quantize_inputs)
    q = quantizers.unpack_int4(arrays[0], cfg["units"])
    zero = rest[1] if policy.block_size > 0 else None
    w = quantizers.Int4Weights(q, rest[0], zero, policy.block_size)
    return quantizers.int4_dense_reference(x, w, bias)


def reference(config, weights, inputs):
    """Evaluate the model ``config`` (Keras 2 or 3 dialect) on ``inputs`` in float64."""
    inner = config["config"]
    xs = [np.asarray(x, np.float64) for x in inputs]
    if config["class_name"] == "Sequential":
        x = xs[0]
        for entry in inner["layers"]:
            x = _layer(entry, weights, x)
        return x
    # functional: evaluate layer entries in order (the config lists them topologically)
    outputs = {}
    for i, entry in enumerate(inner["layers"]):
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            inputs_ = inner["input_layers"]
            inputs_ = [inputs_] if inputs_ and isinstance(inputs_[0], str) else inputs_  # one input: flat
            index = [layer[0] for layer in inputs_].index(name)
            outputs[(name, 0)] = xs[index]
            continue
        for k, node in enumerate(entry["inbound_nodes"]):
            arg = node["args"][0]
            if isinstance(arg, list):
                value = [outputs[tuple(t["config"]["keras_history"][:2])] for t in arg]
            else:
                value = outputs[tuple(arg["config"]["keras_history"][:2])]
            outputs[(name, k)] = _layer(entry, weights, value)
    out = inner["output_layers"]
    return outputs[(out[0], out[1])]


def io(name):
    data = np.load(FIXTURES / f"{name}.io.npz")
    xs = [data[f"x{i}"] for i in range(INDEX[name]["inputs"])]
    return xs, data["y"]


def weights_by_name(model_file):
    return {name: arrays for name, arrays in model_file.layer_weights}


# the NumPy reference below knows Dense networks; the "layers" fixtures (normalization, embedding
# ...) are checked against Keras's outputs in test_layers_fixtures.py
@pytest.mark.parametrize("filename", [f for f in FIXTURE_FILES if INDEX[f.split(".")[0]].get("group") != "layers"])
def test_reader_weights_reproduce_keras_outputs(filename):
    name = filename.split(".")[0]
    content = read_model_file(FIXTURES / filename)
    config = compat.upgrade_model_config(content.config)
    xs, y = io(name)
    out = reference(config, weights_by_name(content), xs)
    assert out.shape == y.shape
    # float64 reference vs Keras's float32 arithmetic: float32 rounding only. That holds for
    # mlp_f64 too: Keras 3.15 (torch) promotes matmul(float64 tensor, float64 variable) to
    # float32, so its "float64" outputs are only float32-accurate (off by ~1e-7).
    assert np.max(np.abs(out - y)) <= 2e-6 * max(1.0, np.abs(y).max())


@pytest.mark.parametrize("name", KERAS3)
def test_keras_archive_weights_match_raw_h5(name):
    archive = keras_format.read_keras_archive(FIXTURES / f"{name}.keras")
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as zf:
        raw = h5py.File(__import__("io").BytesIO(zf.read("model.weights.h5")), "r")
        count = 0
        for path, arrays in archive.weights.items():
            group = raw[f"{path}/vars" if path else "vars"]
            assert len(group) == len(arrays)
            for i, value in enumerate(arrays):
                np.testing.assert_array_equal(value, group[str(i)][()])
                assert value.dtype == group[str(i)].dtype
                count += 1
        assert count == sum(len(v) for v in archive.weights.values()) > 0
    # the names recorded in the file agree with the class-based paths computed from config.json
    for path, layer_name, _ in keras_format.config_layer_paths(archive.config):
        assert archive.names[path] == layer_name


# (a .keras file of a LoRA Dense holds the merged kernel and the bias, its .h5 every variable)
@pytest.mark.parametrize("name", [n for n in KERAS3 if n != "lora_dense"])
def test_h5_and_keras_fixtures_hold_the_same_weights(name):
    a = weights_by_name(read_model_file(FIXTURES / f"{name}.keras"))
    b = weights_by_name(read_model_file(FIXTURES / f"{name}.h5"))
    assert {k for k, v in a.items() if v} == {k for k, v in b.items() if v}
    for layer, arrays in b.items():
        assert len(arrays) == len(a[layer])
        expected = a[layer]
        if expected and expected[0].dtype == np.int8 and arrays[0].dtype != np.int8:
            # a quantized Dense: .h5 holds the trainable bias first, .keras the int8 kernel first
            expected = expected[1:2] + expected[:1] + expected[2:]
        for x, z in zip(arrays, expected):
            np.testing.assert_array_equal(x, z)


def test_functional_shared_paths_count_classes_over_all_layers():
    """Keras names groups by class among *all* model.layers (InputLayers included)."""
    archive = keras_format.read_keras_archive(FIXTURES / "functional_shared.keras")
    paths = [(p, n) for p, n, _ in keras_format.config_layer_paths(archive.config)]
    assert paths == [
        ("layers/input_layer", "left"), ("layers/input_layer_1", "right"), ("layers/dense", "shared_dense"),
        ("layers/concatenate", "concat"), ("layers/add", "add"), ("layers/dense_1", "head_a"),
        ("layers/dense_2", "head_b"), ("layers/add_1", "sum"), ("layers/activation", "out_act"),
    ]
    assert [w.shape for w in archive.weights["layers/dense"]] == [(16, 32), (32,)]
    assert archive.weights["layers/input_layer"] == []


def test_sequential_paths_skip_the_input_layer():
    archive = keras_format.read_keras_archive(FIXTURES / "mlp_dropout.keras")
    paths = [p for p, _, _ in keras_format.config_layer_paths(archive.config)]
    assert paths == ["layers/flatten", "layers/dense", "layers/activation", "layers/dropout", "layers/dense_1"]
    assert set(archive.weights) == {"", *paths}


def test_snake_case_matches_keras():
    assert [keras_format.to_snake_case(c) for c in ("Dense", "InputLayer", "BatchNormalization", "ReLU", "Conv2D")] == [
        "dense", "input_layer", "batch_normalization", "re_lu", "conv2d"]


def test_tfkeras2_file_is_read_with_its_batch_dimension_first():
    content = read_model_file(FIXTURES / "tfkeras2_mlp.h5")
    assert content.format == "h5"
    assert content.metadata == {"keras_version": "2.4.0", "backend": "tensorflow"}
    assert [(n, [w.shape for w in ws]) for n, ws in content.layer_weights] == [
        ("dense_2", [(6, 10), (10,)]), ("dense_3", [(10, 4), (4,)])]
    config = compat.upgrade_model_config(content.config)
    layers = config["config"]["layers"]
    assert layers[0] == {"class_name": "InputLayer", "config": {
        "batch_shape": [None, 6], "dtype": "float32", "sparse": False, "ragged": False, "name": "dense_2_input"}}
    assert "batch_input_shape" not in layers[1]["config"]
    assert content.config["config"]["layers"][0]["config"]["batch_input_shape"] == [None, 6]  # input untouched


def test_keras3_configs_pass_through_upgrade_unchanged():
    for name in KERAS3:
        for ext in (".keras", ".h5"):
            config = read_model_file(FIXTURES / f"{name}{ext}").config
            assert compat.upgrade_model_config(config) == config


def test_keras2_functional_nodes_are_upgraded():
    """A Keras 2 functional config (list nodes) becomes Keras 3 node dicts with the same history."""
    config = read_model_file(FIXTURES / "functional_shared.h5").config
    keras2 = json.loads(json.dumps(config))
    keras2["class_name"] = "Model"
    for entry in keras2["config"]["layers"]:
        nodes = []
        for node in entry["inbound_nodes"]:
            arg = node["args"][0]
            tensors = arg if isinstance(arg, list) else [arg]
            nodes.append([[*t["config"]["keras_history"], {}] for t in tensors])
        entry["inbound_nodes"] = nodes
        if entry["class_name"] == "InputLayer":
            entry["config"]["batch_input_shape"] = entry["config"].pop("batch_shape")
    upgraded = compat.upgrade_model_config(keras2)
    assert upgraded["class_name"] == "Functional"
    xs, y = io("functional_shared")
    weights = weights_by_name(read_model_file(FIXTURES / "functional_shared.h5"))
    np.testing.assert_allclose(reference(upgraded, weights, xs), y, atol=1e-5)
    for old, new in zip(config["config"]["layers"], upgraded["config"]["layers"]):
        old_hist = [[t["config"]["keras_history"] for t in (n["args"][0] if isinstance(n["args"][0], list) else [n["args"][0]])] for n in old["inbound_nodes"]]
        new_hist = [[t["config"]["keras_history"] for t in (n["args"][0] if isinstance(n["args"][0], list) else [n["args"][0]])] for n in new["inbound_nodes"]]
        assert old_hist == new_hist


def test_fixture_archive_layout_is_what_keras_format_documents():
    """The constants the writer uses match what Keras 3.15 wrote."""
    for name in KERAS3:
        with zipfile.ZipFile(FIXTURES / f"{name}.keras") as zf:
            infos = zf.infolist()
            assert [i.filename for i in infos] == [keras_format.METADATA_NAME, keras_format.CONFIG_NAME, keras_format.WEIGHTS_NAME]
            assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
            metadata = json.loads(zf.read("metadata.json"))
            assert metadata["keras_version"] == keras_format.KERAS_FORMAT_VERSION


def test_legacy_reader_sees_keras_attributes():
    content = legacy_h5.read_legacy_h5(FIXTURES / "mlp_mixed.h5")
    assert (content.keras_version, content.backend) == ("3.15.1", "torch")
    assert [n for n, _ in content.layers] == ["dense", "dense_1", "dense_2", "dense_3", "dense_4"]
    functional = legacy_h5.read_legacy_h5(FIXTURES / "functional_shared.h5")
    assert [n for n, w in functional.layers if not w] == ["left", "right", "concat", "add", "sum", "out_act"]
