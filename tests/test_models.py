"""Sequential and functional models: graph execution against hand-written NumPy, structures,
errors, weights, summary, configs (round trips, Keras 2 functional dialect), nesting."""

import json
import re

import numpy as np
import pytest

import fastdense
from fastdense.layers import (
    Activation,
    Add,
    Average,
    Concatenate,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Maximum,
    Minimum,
    Multiply,
    Reshape,
    Subtract,
)
from fastdense.models import Functional, Model, Sequential, model_from_config, model_from_json
from fastdense.saving import serialize_keras_object

RNG = np.random.default_rng(7)


pytestmark = pytest.mark.usefixtures("fresh_names")  # tests/conftest.py


def f64(layer):
    return [w.astype(np.float64) for w in layer.get_weights()]


def relu(x):
    return np.maximum(x, 0)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- functional


def build_two_tower():
    left, right = Input((6,), name="left"), Input((6,), name="right")
    shared = Dense(5, activation="relu", name="shared")
    a, b = shared(left), shared(right)
    cat = Concatenate(name="cat")([a, b])
    merged = [Add(name="add")([a, b]), Subtract(name="sub")([a, b]), Multiply(name="mul")([a, b]),
              Average(name="avg")([a, b]), Maximum(name="max")([a, b]), Minimum(name="min")([a, b])]
    stacked = Concatenate(name="stack")(merged)
    head = Dense(3, name="head")(Concatenate(name="all")([cat, stacked]))
    shaped = Reshape((3, 1), name="reshape")(Dropout(0.5, name="drop")(head))
    out = Activation("softmax", name="out")(Flatten(name="flat")(shaped))
    return Model([left, right], out, name="two_tower")


def two_tower_numpy(model, xl, xr):
    k, b = f64(model.get_layer("shared"))
    a, c = relu(xl @ k + b), relu(xr @ k + b)
    stacked = np.concatenate([a + c, a - c, a * c, (a + c) / 2, np.maximum(a, c), np.minimum(a, c)], axis=-1)
    hk, hb = f64(model.get_layer("head"))
    head = np.concatenate([a, c, stacked], axis=-1) @ hk + hb
    return softmax(head)


def test_functional_graph_matches_numpy():
    model = build_two_tower()
    # Keras's order: by depth from the outputs (deepest first), then by traversal order.
    assert [l.name for l in model.layers] == [
        "left", "right", "shared", "add", "sub", "mul", "avg", "max", "min", "cat", "stack", "all",
        "head", "drop", "reshape", "flat", "out"]
    xl, xr = RNG.standard_normal((7, 6)), RNG.standard_normal((7, 6))
    expected = two_tower_numpy(model, xl, xr)
    np.testing.assert_allclose(model.predict([xl, xr]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model([xl, xr]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict({"left": xl, "right": xr}), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict([xl, xr], batch_size=3), expected, rtol=1e-5, atol=1e-6)
    assert model.predict([xl, xr]).dtype == np.float32
    assert model.input_shape == [(None, 6), (None, 6)] and model.output_shape == (None, 3)
    assert model.input_names == ["left", "right"] and model.output_names == ["out"]


def test_layer_applied_twice_in_a_chain_runs_twice():
    x = Input((4,), name="x")
    layer = Dense(4, activation="relu", name="twice")
    model = Model(x, layer(layer(x)))
    k, b = f64(layer)
    data = RNG.standard_normal((5, 4))
    np.testing.assert_allclose(model.predict(data), relu(relu(data @ k + b) @ k + b), rtol=1e-5, atol=1e-6)
    assert [l.name for l in model.layers] == ["x", "twice"]
    assert model.count_params() == 20


def test_multiple_outputs_as_list_and_dict():
    x = Input((3,), name="x")
    d1, d2 = Dense(2, name="d1"), Dense(4, name="d2")
    y1, y2 = d1(x), d2(x)
    data = RNG.standard_normal((5, 3))
    as_list = Model(x, [y1, y2]).predict(data)
    assert isinstance(as_list, list) and [o.shape for o in as_list] == [(5, 2), (5, 4)]
    as_dict = Model(x, {"small": y1, "big": y2}).predict(data)
    assert set(as_dict) == {"small", "big"}
    np.testing.assert_allclose(as_dict["small"], as_list[0])
    np.testing.assert_allclose(as_dict["big"], as_list[1])
    k, b = f64(d2)
    np.testing.assert_allclose(as_list[1], data @ k + b, rtol=1e-5, atol=1e-6)


def test_dict_inputs():
    a, b = Input((2,), name="a"), Input((2,), name="b")
    model = Model({"b": b, "a": a}, Subtract()([a, b]))
    assert model.input_names == ["a", "b"]  # dicts flatten by sorted key, as in Keras
    out = model.predict({"a": np.ones((1, 2)), "b": np.full((1, 2), 3.0)})
    np.testing.assert_array_equal(out, [[-2.0, -2.0]])


def test_predict_batch_size_validation_and_chunks():
    model = Sequential([Dense(3, input_shape=(2,))])
    data = RNG.standard_normal((10, 2))
    np.testing.assert_allclose(model.predict(data, batch_size=4), model.predict(data), rtol=1e-6)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            model.predict(data, batch_size=bad)


def test_input_errors_in_predict():
    model = build_two_tower()
    x = np.ones((2, 6))
    with pytest.raises(ValueError, match=re.escape("Model 'two_tower' expects 2 inputs (left, right), got 1")):
        model.predict([x])
    with pytest.raises(ValueError, match=r"expects 2 inputs \(left, right\) as a list or a dict, got a single ndarray"):
        model.predict(x)
    with pytest.raises(ValueError, match=r"is missing input 'right'"):
        model.predict({"left": x})
    with pytest.raises(ValueError, match=re.escape(
            "Input 'right' of model 'two_tower' expects arrays of shape (None, 6), got shape (2, 5)")):
        model.predict([x, np.ones((2, 5))])
    with pytest.raises(ValueError, match="same number of samples"):
        model.predict([x, np.ones((3, 6))])
    with pytest.raises(TypeError, match="numeric"):
        model.predict([x, np.full((2, 6), "a")])


def test_graph_construction_errors():
    a, b = Input((3,), name="a"), Input((3,), name="b")
    y = Add(name="add")([Dense(2, name="da")(a), Dense(2, name="db")(b)])
    with pytest.raises(ValueError, match=r"Graph disconnected: .*tensor <SymbolicTensor name='b'.*needed by layer 'db'"):
        Model(a, y)
    with pytest.raises(ValueError, match="must come from fastdense.Input"):
        Model(Dense(2, name="mid")(a), y)
    with pytest.raises(ValueError, match="same input tensor more than once"):
        Model([a, a], Dense(1)(a))
    with pytest.raises(TypeError, match="must be SymbolicTensors"):
        Model(a, np.ones(3))
    with pytest.raises(TypeError, match="needs `inputs` and `outputs`"):
        Model()
    c = Input((3,), name="c")
    with pytest.raises(ValueError, match=r"The name 'twin' is used 2 times in model"):
        Model(c, Dense(2, name="twin")(Dense(3, name="twin")(c)))


def test_unused_input_still_belongs_to_the_model():
    a, b = Input((3,), name="a"), Input((3,), name="b")
    model = Model([a, b], Dense(2, name="d")(a))
    assert [l.name for l in model.layers] == ["a", "b", "d"]
    assert model.predict([np.ones((1, 3)), np.zeros((1, 3))]).shape == (1, 2)


def test_functional_alias_and_keras2_kwargs():
    x = Input((2,))
    assert Functional is Model
    model = Model(input=x, output=Dense(1)(x))
    assert model.name == "functional"


# --------------------------------------------------------------------------- Sequential


def test_sequential_add_pop_layers_inputs_outputs():
    model = Sequential(name="stack")
    first = Dense(8, activation="relu", input_shape=(4,), name="first")
    model.add(first)
    model.add(Dense(3, name="second"))
    assert [l.name for l in model.layers] == ["first", "second"]
    assert model.inputs[0].name == "first_input" and model.outputs[0].shape == (None, 3)
    second = model.pop()
    assert second.name == "second" and second.inbound_nodes == [] and first.outbound_nodes == []
    assert model.output_shape == (None, 8)
    model.add(second)
    assert model.output_shape == (None, 3)
    assert len(second.inbound_nodes) == 1
    model.pop()
    model.pop()
    assert model.layers == []
    with pytest.raises(TypeError, match="There are no layers"):
        model.pop()


def test_sequential_deferred_build_from_data():
    model = Sequential([Dense(4, activation="relu", name="a"), Dense(2, name="b")])
    assert not model.built
    with pytest.raises(AttributeError, match="has no input yet"):
        model.inputs
    with pytest.raises(ValueError, match="has not yet been built"):
        model.summary()
    data = RNG.standard_normal((3, 5))
    out = model.predict(data)
    assert model.built and model.input_shape == (None, 5) and out.shape == (3, 2)
    (k0, b0), (k1, b1) = f64(model.layers[0]), f64(model.layers[1])
    np.testing.assert_allclose(out, relu(data @ k0 + b0) @ k1 + b1, rtol=1e-5, atol=1e-6)
    assert model.layers[0].input.name == "a_input"


def test_sequential_build_method_and_input_first():
    model = Sequential([Dense(3, name="d")])
    model.build((None, 6))
    assert model.input_shape == (None, 6) and model.layers[0].kernel.shape == (6, 3)
    with_input = Sequential([Input((5,), name="inp"), Dense(2)])
    assert with_input.input.name == "inp" and with_input.output_shape == (None, 2)
    with_layer = Sequential([InputLayer(shape=(5,), name="il"), Dense(2)])
    assert with_layer.layers[0].input.name == "il"


def test_sequential_errors():
    model = Sequential([Dense(2, input_shape=(3,), name="dup")])
    with pytest.raises(ValueError, match=r"should have unique names\. Name 'dup' is already the name of a layer"):
        model.add(Dense(2, name="dup"))
    assert len(model.layers) == 1
    with pytest.raises(TypeError, match=r"The added layer must be an instance of class Layer"):
        model.add("dense")
    with pytest.raises(ValueError, match="can only be added first"):
        model.add(Input((2,)))
    with pytest.raises(ValueError, match="expects inputs with last dimension 7"):
        model.add(_built(7))
    assert len(model.layers) == 1  # a failed add leaves the model as it was


def _built(input_dim):
    layer = Dense(1)
    layer.build((None, input_dim))
    return layer


def test_sequential_model_call_equals_predict():
    model = Sequential([Dense(3, input_shape=(2,), activation="softmax")])
    data = RNG.standard_normal((4, 2))
    np.testing.assert_allclose(model(data), model.predict(data))
    k, b = f64(model.layers[0])
    np.testing.assert_allclose(model(data), softmax(data @ k + b), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- weights


def test_model_weights_api():
    model = Sequential([Dense(4, input_shape=(3,)), Dropout(0.1), Dense(2, use_bias=False)])
    assert [w.shape for w in model.get_weights()] == [(3, 4), (4,), (4, 2)]
    assert model.count_params() == 3 * 4 + 4 + 4 * 2
    new = [np.full((3, 4), 0.5), np.arange(4.0), np.ones((4, 2))]
    version = model._weights_version
    model.set_weights(new)
    assert model._weights_version > version
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(model.predict(np.ones((1, 3))), [[1.5 * 4 + 6] * 2])


def test_model_set_weights_validates_everything_first():
    model = Sequential([Dense(4, input_shape=(3,), name="d0"), Dense(2, name="d1")])
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"Layer 'd1' weight 'kernel' expects shape \(4, 2\), got shape \(2, 4\)"):
        model.set_weights([np.ones((3, 4)), np.ones(4), np.ones((2, 4)), np.ones(2)])
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)  # d0 untouched
    with pytest.raises(ValueError, match=r"Model 'sequential' expects 4 weight arrays \(d0: 2, d1: 2\), got 3"):
        model.set_weights(before[:3])


def test_trainable_propagates_and_losses_collect():
    from fastdense import regularizers

    model = Sequential([Dense(2, input_shape=(2,), kernel_regularizer=regularizers.L2(1.0),
                              kernel_initializer="ones")])
    assert model.losses == pytest.approx([4.0])
    assert len(model.trainable_weights) == 2
    model.trainable = False
    assert model.layers[0].trainable is False and model.trainable_weights == []
    assert len(model.non_trainable_weights) == 2


# --------------------------------------------------------------------------- summary


def test_sequential_summary():
    model = Sequential([Dense(16, input_shape=(8,), name="dense"), Dense(4, name="dense_1")], name="seq")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "seq"'
    assert re.search(r"Layer \(type\)\s+Output Shape\s+Param #", text)
    assert re.search(r"dense \(Dense\)\s+\(None, 16\)\s+144", text)
    assert re.search(r"dense_1 \(Dense\)\s+\(None, 4\)\s+68", text)
    assert "Total params: 212" in text and "Trainable params: 212" in text
    assert "Non-trainable params: 0" in text


def test_functional_summary_lists_connections():
    model = build_two_tower()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text
    assert re.search(r"shared \(Dense\)\s+\(None, 5\)\s+35\s+left\[0\]\[0\]", text)
    assert re.search(r"^\s+right\[0\]\[0\]$", text, re.M)
    assert re.search(r"cat \(Concatenate\)\s+\(None, 10\)\s+0\s+shared\[0\]\[0\]", text)
    assert f"Total params: {model.count_params():,}" in text
    model.layers[2].trainable = False
    lines.clear()
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 35" in "\n".join(lines)


def test_shared_layer_with_different_shapes_shows_multiple():
    a, b = Input((4,), name="a"), Input((2, 4), name="b")
    shared = Dense(3, name="shared")
    model = Model([a, b], [shared(a), shared(b)])
    lines = []
    model.summary(print_fn=lines.append)
    assert re.search(r"shared \(Dense\)\s+multiple\s+15", "\n".join(lines))


# --------------------------------------------------------------------------- configs


def test_sequential_config_round_trip():
    model = Sequential([Dense(8, activation="relu", input_shape=(4,), name="a"), Dropout(0.2, name="drop"),
                        Dense(3, activation="softmax", name="b")], name="stack")
    config = model.get_config()
    assert [l["class_name"] for l in config["layers"]] == ["InputLayer", "Dense", "Dropout", "Dense"]
    assert config["build_input_shape"] == [None, 4]
    assert set(config) == {"name", "trainable", "dtype", "layers", "build_input_shape"}
    clone = Sequential.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    data = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(clone.predict(data), model.predict(data), rtol=1e-6)
    assert json.loads(json.dumps(config)) == json.loads(json.dumps(config, default=list))


def test_functional_config_round_trip_with_shared_layer():
    model = build_two_tower()
    entry = serialize_keras_object(model)
    assert (entry["module"], entry["class_name"]) == ("keras.src.models.functional", "Functional")
    config = entry["config"]
    assert set(config) == {"name", "trainable", "layers", "input_layers", "output_layers"}
    assert config["input_layers"] == [["left", 0, 0], ["right", 0, 0]]
    assert config["output_layers"] == ["out", 0, 0]
    shared = next(l for l in config["layers"] if l["name"] == "shared")
    assert len(shared["inbound_nodes"]) == 2
    assert shared["inbound_nodes"][1] == {"args": [{"class_name": "__keras_tensor__", "config": {
        "shape": [None, 6], "dtype": "float32", "keras_history": ["right", 0, 0]}}], "kwargs": {}}
    cat = next(l for l in config["layers"] if l["name"] == "cat")
    assert [arg["config"]["keras_history"] for arg in cat["inbound_nodes"][0]["args"][0]] == [
        ["shared", 0, 0], ["shared", 1, 0]]

    clone = model_from_json(json.dumps(entry))
    assert json.loads(json.dumps(serialize_keras_object(clone))) == json.loads(json.dumps(entry))
    clone.set_weights(model.get_weights())
    xl, xr = RNG.standard_normal((4, 6)), RNG.standard_normal((4, 6))
    np.testing.assert_allclose(clone.predict([xl, xr]), model.predict([xl, xr]), rtol=1e-6)


def test_config_of_layer_applied_twice_and_dict_outputs():
    x = Input((4,), name="x")
    layer = Dense(4, name="twice")
    model = Model({"x": x}, {"y": layer(layer(x))}, name="loop")
    config = model.get_config()
    assert config["input_layers"] == {"x": ["x", 0, 0]} and config["output_layers"] == {"y": ["twice", 1, 0]}
    entry = next(l for l in config["layers"] if l["name"] == "twice")
    assert [n["args"][0]["config"]["keras_history"] for n in entry["inbound_nodes"]] == [["x", 0, 0], ["twice", 0, 0]]
    clone = Model.from_config(config)
    assert len(clone.get_layer("twice").inbound_nodes) == 2
    clone.set_weights(model.get_weights())
    data = {"x": RNG.standard_normal((2, 4))}
    np.testing.assert_allclose(clone.predict(data)["y"], model.predict(data)["y"], rtol=1e-6)


def test_keras2_functional_config_dialect():
    config = {
        "class_name": "Model",
        "config": {
            "name": "model_1",
            "layers": [
                {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
                 "config": {"batch_input_shape": [None, 3], "dtype": "float32", "sparse": False, "name": "input_1"}},
                {"class_name": "InputLayer", "name": "input_2", "inbound_nodes": [],
                 "config": {"batch_input_shape": [None, 3], "dtype": "float32", "sparse": False, "name": "input_2"}},
                {"class_name": "Dense", "name": "dense_1",
                 "config": {"name": "dense_1", "trainable": True, "dtype": "float32", "units": 2,
                            "activation": "relu", "use_bias": True,
                            "kernel_initializer": {"class_name": "VarianceScaling",
                                                   "config": {"scale": 1.0, "mode": "fan_avg",
                                                              "distribution": "uniform", "seed": None}},
                            "bias_initializer": {"class_name": "Zeros", "config": {}},
                            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
                            "kernel_constraint": None, "bias_constraint": None},
                 "inbound_nodes": [[["input_1", 0, 0, {}]], [["input_2", 0, 0, {}]]]},
                {"class_name": "Add", "name": "add_1", "config": {"name": "add_1", "trainable": True},
                 "inbound_nodes": [[["dense_1", 0, 0, {}], ["dense_1", 1, 0, {}]]]},
            ],
            "input_layers": [["input_1", 0, 0], ["input_2", 0, 0]],
            "output_layers": [["add_1", 0, 0]],
        },
    }
    model = model_from_config(config)
    assert [l.name for l in model.layers] == ["input_1", "input_2", "dense_1", "add_1"]
    assert len(model.get_layer("dense_1").inbound_nodes) == 2
    model.set_weights([np.array([[1.0, -1.0]] * 3), np.zeros(2)])
    out = model.predict([np.ones((1, 3)), 2 * np.ones((1, 3))])
    # output_layers was a one-element list: Keras 3 returns the array itself (unpack_singleton)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [[9.0, 0.0]])
    rewritten = model.get_config()
    assert rewritten["layers"][2]["inbound_nodes"][1]["args"][0]["config"]["keras_history"] == ["input_2", 0, 0]


def test_keras2_sequential_bare_list_dialect():
    config = {"class_name": "Sequential", "config": [
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 3, "batch_input_shape": [None, 5],
                                           "activation": "linear", "dtype": "float32"}}]}
    model = model_from_config(config)
    assert model.input_shape == (None, 5) and model.layers[0].input.name == "dense_1_input"


def test_model_from_config_errors():
    with pytest.raises(ValueError, match="expects a dict with 'class_name'"):
        model_from_config({"config": {}})
    with pytest.raises(ValueError, match="Unknown model class 'Mystery'"):
        model_from_config({"class_name": "Mystery", "config": {}})
    with pytest.raises(ValueError, match=r"Unknown layer 'NoSuchLayer'"):
        model_from_config({"class_name": "Sequential", "config": {"layers": [
            {"class_name": "NoSuchLayer", "config": {}}]}})
    with pytest.raises(ValueError, match="refer to nodes that the config never creates"):
        model_from_config({"class_name": "Functional", "config": {
            "name": "broken", "layers": [
                {"class_name": "InputLayer", "name": "i", "inbound_nodes": [],
                 "config": {"batch_shape": [None, 2], "name": "i"}},
                {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 1},
                 "inbound_nodes": [[["i", 3, 0, {}]]]}],
            "input_layers": [["i", 0, 0]], "output_layers": [["d", 0, 0]]}})


def test_nested_models_config_round_trip():
    inner = Sequential([Dense(4, input_shape=(3,), activation="relu", name="inner_d")], name="inner")
    x = Input((3,), name="x")
    sub_in = Input((4,), name="sub_in")
    sub = Model(sub_in, Dense(2, name="sub_d")(sub_in), name="sub")
    model = Model(x, sub(inner(x)), name="outer")
    data = RNG.standard_normal((3, 3))
    expected = sub.predict(inner.predict(data))
    np.testing.assert_allclose(model.predict(data), expected, rtol=1e-6)
    config = model.get_config()
    sub_entry = next(l for l in config["layers"] if l["name"] == "sub")
    assert sub_entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == ["inner", 0, 0]
    assert config["output_layers"] == ["sub", 1, 0]  # a functional model's calls count from 1
    clone = Model.from_config(json.loads(json.dumps(config)))
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(data), expected, rtol=1e-6)


def test_to_json_is_loadable():
    model = Sequential([Dense(2, input_shape=(3,))], name="j")
    text = model.to_json()
    assert json.loads(text)["class_name"] == "Sequential"
    assert model_from_json(text).get_config() == model.get_config()


def test_fastdense_namespace_exports():
    assert fastdense.Input is Input and fastdense.Model is Model and fastdense.Sequential is Sequential


def test_save_and_load_methods_delegate_to_saving(tmp_path):
    pytest.importorskip("h5py")
    from fastdense.saving import load_model

    model = Sequential([Dense(4, input_shape=(3,), activation="softmax"), Dense(2)], name="saved")
    data = RNG.standard_normal((2, 3))
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(data), model.predict(data), rtol=1e-6)
    model.save_weights(tmp_path / "w.weights.h5")
    twin = Sequential([Dense(4, input_shape=(3,), activation="softmax"), Dense(2)])
    twin.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(twin.predict(data), model.predict(data), rtol=1e-6)
