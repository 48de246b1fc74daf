"""The Layer base class: names, dtypes, weights, set_weights, losses, input checks, configs,
custom layers; and the small layers (Activation, Dropout, Flatten, Reshape, merges, InputLayer)."""

import json
import threading

import numpy as np
import pytest

import fastdense
from fastdense import regularizers
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
    Layer,
    LayerNotConnectedError,
    Maximum,
    Minimum,
    Multiply,
    Reshape,
    Subtract,
    add,
    clear_session,
    concatenate,
)
from fastdense.models import Model, Sequential, model_from_config
from fastdense.saving import register_serializable, serialize_keras_object

RNG = np.random.default_rng(1234)


pytestmark = pytest.mark.usefixtures("fresh_names")  # tests/conftest.py


def built_dense(units=4, input_dim=3, **kwargs):
    layer = Dense(units, **kwargs)
    layer.build((None, input_dim))
    return layer


# ----------------------------------------------------------------------------- names


def test_auto_names_are_snake_case_with_counters():
    assert [Dense(1).name for _ in range(3)] == ["dense", "dense_1", "dense_2"]
    assert Activation("relu").name == "activation"

    class MyFancyLayer(Layer):
        pass

    assert MyFancyLayer().name == "my_fancy_layer"
    assert MyFancyLayer().name == "my_fancy_layer_1"
    assert Dense(1, name="head").name == "head"
    assert Dense(1).name == "dense_3"  # explicit names do not consume the counter
    assert InputLayer(shape=(2,)).name == "input_layer"
    assert Sequential().name == "sequential"


def test_clear_session_resets_names():
    Dense(1)
    clear_session()
    assert Dense(1).name == "dense"


@pytest.mark.parametrize("bad", ["a/b", "", 3])
def test_bad_names_rejected(bad):
    with pytest.raises(ValueError, match="name"):
        Dense(1, name=bad)


def test_unknown_keyword_argument():
    with pytest.raises(TypeError, match=r"Unrecognized keyword arguments passed to Dense: \{'foo': 1\}"):
        Dense(2, foo=1)


# ----------------------------------------------------------------------------- dtypes


def test_default_dtype_float32_and_float64_layer():
    assert Dense(2).dtype == "float32"
    layer = built_dense(2, 3, dtype="float64")
    assert layer.dtype == "float64" and layer.kernel.dtype == np.float64
    x = RNG.standard_normal((4, 3))
    out = layer(x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, x @ layer.kernel + layer.bias, rtol=1e-12)


def test_dtype_policy_dict_and_numpy_dtype_accepted():
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"}, "registered_name": None}
    assert Dense(2, dtype=policy).dtype == "float64"
    assert Dense(2, dtype=np.float64).dtype == "float64"
    assert Dense(2, dtype=np.dtype("float32")).dtype == "float32"


@pytest.mark.parametrize("bad", ["float16", "mixed_float16", "int32", "banana"])
def test_unsupported_dtypes_rejected(bad):
    with pytest.raises(ValueError):
        Dense(2, dtype=bad)


def test_integer_and_list_inputs_are_cast_to_the_layer_dtype():
    layer = built_dense(2, 2)
    out = layer(np.array([[1, 2]], dtype=np.int64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, layer([[1.0, 2.0]]))
    with pytest.raises(TypeError, match="numeric"):
        layer(np.array([["a", "b"]]))


# ----------------------------------------------------------------------------- weights


def test_weight_lists_and_trainable_flag():
    layer = built_dense(4, 3)
    assert layer.weight_names == ["kernel", "bias"]
    assert [w.shape for w in layer.weights] == [(3, 4), (4,)]
    assert len(layer.trainable_weights) == 2 and layer.non_trainable_weights == []
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert layer.count_params() == 16


def test_non_trainable_weight_and_keras3_argument_order():
    class WithStats(Layer):
        def build(self, input_shape):
            self.add_weight((input_shape[-1],), "ones", name="scale")  # Keras 3 order
            self.add_weight("mean", (input_shape[-1],), "zeros", trainable=False)  # Keras 2 order

        def call(self, inputs):
            scale, mean = self.weights
            return (inputs - mean) * scale

    layer = WithStats()
    layer(np.ones((1, 3)))
    assert layer.weight_names == ["scale", "mean"]
    assert [w.tolist() for w in layer.trainable_weights] == [[1.0, 1.0, 1.0]]
    assert [w.tolist() for w in layer.non_trainable_weights] == [[0.0, 0.0, 0.0]]


def test_get_weights_returns_copies_and_weights_are_read_only():
    layer = built_dense(2, 2)
    copies = layer.get_weights()
    copies[0][...] = 7.0
    assert not np.any(layer.kernel == 7.0)
    with pytest.raises(ValueError):
        layer.kernel[0, 0] = 1.0


def test_set_weights_copies_casts_and_bumps_version():
    layer = built_dense(2, 2)
    version = layer._weights_version
    kernel = np.arange(4, dtype=np.float64).reshape(2, 2)
    layer.set_weights([kernel, [1, 2]])
    assert layer._weights_version == version + 1
    assert layer.kernel.dtype == np.float32 and layer.bias.dtype == np.float32
    np.testing.assert_array_equal(layer.kernel, kernel)
    kernel[0, 0] = 99.0  # the caller's array is not aliased
    assert layer.kernel[0, 0] == 0.0
    np.testing.assert_array_equal(layer(np.array([[1.0, 1.0]])), [[3.0, 6.0]])


def test_set_weights_count_error():
    layer = built_dense(4, 3)
    with pytest.raises(ValueError, match=r"Layer 'dense' expects 2 weights \(kernel \(3, 4\), bias \(4,\)\), got 1"):
        layer.set_weights([np.zeros((3, 4))])


def test_set_weights_shape_error_names_weight_and_shapes():
    layer = built_dense(4, 3)
    with pytest.raises(ValueError, match=r"Layer 'dense' weight 'kernel' expects shape \(3, 4\), got shape \(4, 3\)"):
        layer.set_weights([np.zeros((4, 3)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"weight 'bias' expects shape \(4,\), got shape \(5,\)"):
        layer.set_weights([np.zeros((3, 4)), np.zeros(5)])


@pytest.mark.parametrize("bad", [np.zeros(4, dtype=complex), np.array(["a"] * 4), np.array([None] * 4)])
def test_set_weights_dtype_error(bad):
    layer = built_dense(4, 3)
    with pytest.raises(ValueError, match=r"weight 'bias' expects a real numeric array \(stored as float32\), got dtype"):
        layer.set_weights([np.zeros((3, 4)), bad])


def test_set_weights_failure_changes_nothing():
    layer = built_dense(4, 3)
    before = layer.get_weights()
    version = layer._weights_version
    with pytest.raises(ValueError):
        layer.set_weights([np.ones((3, 4)), np.ones(5)])
    for old, new in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert layer._weights_version == version


def test_set_weights_on_unbuilt_layer_explains():
    with pytest.raises(ValueError, match="not built yet"):
        Dense(4).set_weights([np.zeros((3, 4)), np.zeros(4)])


def test_set_weights_is_atomic_for_a_concurrent_reader():
    layer = built_dense(8, 8)
    rng = np.random.default_rng(0)
    set_a = [rng.standard_normal((8, 8)), rng.standard_normal(8)]
    set_b = [rng.standard_normal((8, 8)) * 10, rng.standard_normal(8) * 10]
    x = rng.standard_normal((4, 8)).astype(np.float32)
    layer.set_weights(set_a)
    out_a = layer(x)
    layer.set_weights(set_b)
    out_b = layer(x)
    mixes = [x @ set_a[0].astype(np.float32) + set_b[1].astype(np.float32),
             x @ set_b[0].astype(np.float32) + set_a[1].astype(np.float32)]
    stop = threading.Event()
    bad = []

    def reader():
        while not stop.is_set():
            out = layer(x)
            if not (np.allclose(out, out_a, rtol=1e-5, atol=1e-5) or np.allclose(out, out_b, rtol=1e-5, atol=1e-5)):
                bad.append(out)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(2000):
        layer.set_weights(set_a if i % 2 else set_b)
    stop.set()
    thread.join()
    assert not bad
    assert not any(np.allclose(out_a, m) or np.allclose(out_b, m) for m in mixes)  # a mix is detectable


def test_initial_weights_keras2_kwarg():
    kernel, bias = np.full((3, 2), 0.5), np.array([1.0, -1.0])
    layer = Dense(2, weights=[kernel, bias])
    np.testing.assert_allclose(layer(np.ones((1, 3))), [[2.5, 0.5]])


def test_build_twice_keeps_one_set_of_weights():
    layer = built_dense(2, 3)
    layer.build((None, 3))
    assert len(layer.weights) == 2


def test_count_params_unbuilt_error():
    with pytest.raises(ValueError, match=r"You tried to call `count_params` on layer 'dense', but the layer isn't built"):
        Dense(2).count_params()


# ----------------------------------------------------------------------------- losses


def test_losses_weight_and_activity_regularizers():
    layer = Dense(3, kernel_regularizer=regularizers.L2(0.1), bias_regularizer=regularizers.L1(0.5),
                  activity_regularizer=regularizers.L1(0.01), bias_initializer="ones")
    layer.build((None, 2))
    kernel = layer.kernel.astype(np.float64)
    assert layer.losses == pytest.approx([0.1 * np.sum(kernel ** 2), 0.5 * 3.0], rel=1e-6)
    x = np.array([[1.0, -2.0]], np.float32)
    out = layer(x)
    losses = layer.losses
    assert len(losses) == 3
    assert losses[0] == pytest.approx(0.01 * np.abs(out).sum(), rel=1e-5)  # activity first, like Keras 3
    layer.set_weights([np.ones((2, 3)), np.zeros(3)])
    assert layer.losses[1:] == pytest.approx([0.1 * 6.0, 0.0])
    layer.trainable = False
    assert layer.losses == pytest.approx([losses[0]])


# ----------------------------------------------------------------------------- input checks


def test_input_spec_errors_quote_expected_and_received():
    layer = built_dense(16, 8)
    with pytest.raises(ValueError, match=r"^Dense 'dense' expects inputs with last dimension 8, got shape \(4, 7\)$"):
        layer(np.zeros((4, 7), np.float32))
    with pytest.raises(ValueError, match=r"^Dense 'dense' expects inputs with at least 2 dimensions, got shape \(8,\)$"):
        layer(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match=r"expects inputs with last dimension 8, got shape \(None, 5\)"):
        layer(Input((5,)))


def test_build_on_first_call_from_the_input_shape():
    layer = Dense(3)
    assert not layer.built
    out = layer(np.ones((2, 5, 4)))
    assert layer.built and layer.kernel.shape == (4, 3) and out.shape == (2, 5, 3)
    assert layer.get_build_config() == {"input_shape": (2, 5, 4)}


def test_build_from_config_builds():
    layer = Dense(3)
    layer.build_from_config({"input_shape": [None, 6]})
    assert layer.built and layer.kernel.shape == (6, 3)
    assert layer.get_build_config() == {"input_shape": (None, 6)}


# ----------------------------------------------------------------------------- Keras 2 kwargs


@pytest.mark.parametrize(
    "kwargs, batch_shape",
    [
        ({"input_shape": (8,)}, (None, 8)),
        ({"input_dim": 8}, (None, 8)),
        ({"batch_input_shape": (4, 8)}, (4, 8)),
        ({"input_shape": (8,), "batch_size": 2}, (2, 8)),
        ({"input_shape": (3, 8)}, (None, 3, 8)),
    ],
)
def test_keras2_first_layer_kwargs(kwargs, batch_shape):
    model = Sequential([Dense(5, **kwargs)])
    assert model.input_shape == batch_shape
    assert model.layers[0].input_shape == batch_shape
    assert model.output_shape == batch_shape[:-1] + (5,)


# ----------------------------------------------------------------------------- custom layers

# The README's "custom layer" example.
@register_serializable(package="Demo")
class ScaledDense(Layer):
    """Dense with a learned per-unit scale: scale * (x @ kernel + bias)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), initializer="glorot_uniform")
        self.bias = self.add_weight("bias", (self.units,), initializer="zeros")
        self.scale = self.add_weight("scale", (self.units,), initializer="ones")

    def call(self, inputs):
        return fastdense.ops.dense(inputs, self.kernel, self.bias) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_readme_example():
    inputs = fastdense.Input(shape=(8,))
    x = Dense(16, activation="relu")(inputs)
    outputs = ScaledDense(4)(x)
    model = fastdense.Model(inputs, outputs)
    assert outputs.shape == (None, 4)  # found by running `call` once on a dummy batch
    custom = model.layers[-1]
    assert custom.name == "scaled_dense" and custom.weight_names == ["kernel", "bias", "scale"]

    custom.set_weights([np.eye(16, 4), np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0])])
    assert custom.kernel is custom.weights[0]  # attributes follow set_weights
    x_np = RNG.standard_normal((5, 8)).astype(np.float32)
    hidden = np.maximum(x_np @ model.layers[1].kernel + model.layers[1].bias, 0)
    np.testing.assert_allclose(model.predict(x_np), hidden[:, :4] * [1, 2, 3, 4], rtol=1e-5, atol=1e-6)

    config = json.loads(model.to_json())
    assert config["config"]["layers"][-1]["registered_name"] == "Demo>ScaledDense"
    clone = model_from_config(config)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(x_np), model.predict(x_np), rtol=1e-6)


def test_custom_layer_without_get_config_captures_plain_arguments():
    class Offset(Layer):
        def __init__(self, amount=1.0, axis_names=("a", "b"), **kwargs):
            super().__init__(**kwargs)
            self.amount = amount

        def call(self, inputs):
            return inputs + self.amount

    layer = Offset(2.5, name="off")
    config = layer.get_config()
    assert config["amount"] == 2.5 and config["axis_names"] == ["a", "b"] and config["name"] == "off"
    clone = Offset.from_config(config)
    assert clone.amount == 2.5 and clone.name == "off"


def test_custom_layer_with_object_argument_must_define_get_config():
    class Holder(Layer):
        def __init__(self, thing, **kwargs):
            super().__init__(**kwargs)
            self.thing = thing

    with pytest.raises(NotImplementedError, match=r"must override `get_config\(\)`"):
        Holder(object()).get_config()


def test_call_drops_training_when_call_does_not_take_it():
    layer = Activation("relu")
    np.testing.assert_array_equal(layer(np.array([[-1.0, 1.0]]), training=True), [[0.0, 1.0]])


# ----------------------------------------------------------------------------- Activation


@pytest.mark.parametrize(
    "name, reference",
    [
        ("relu", lambda x: np.maximum(x, 0)),
        ("tanh", np.tanh),
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
        ("linear", lambda x: x),
    ],
)
def test_activation_layer_values(name, reference):
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    layer = Activation(name)
    np.testing.assert_allclose(layer(x), reference(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    assert layer.get_config()["activation"] == name
    assert Activation.from_config(layer.get_config()).get_config() == layer.get_config()


def test_activation_layer_config_keys():
    assert set(Activation("relu").get_config()) == {"name", "trainable", "dtype", "activation"}


# ----------------------------------------------------------------------------- Dropout


def test_dropout_is_identity_at_inference():
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    layer = Dropout(0.5)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_dropout_training_drops_and_rescales():
    x = np.ones((200, 50), np.float32)
    out = Dropout(0.25, seed=3)(x, training=True)
    kept = out != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    assert Dropout(1.0)(x, training=True).sum() == 0


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.5", True, None])
def test_dropout_rate_validation(rate):
    with pytest.raises(ValueError, match=r"Expected a float value between 0 and 1\. Received: rate="):
        Dropout(rate)


def test_dropout_config():
    config = Dropout(0.3, seed=7, name="drop").get_config()
    assert {k: config[k] for k in ("name", "rate", "seed", "noise_shape")} == {
        "name": "drop", "rate": 0.3, "seed": 7, "noise_shape": None}
    assert Dropout.from_config(config).get_config() == config


# ----------------------------------------------------------------------------- Flatten / Reshape


def test_flatten_values_and_shapes():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(Flatten()(x), x.reshape(2, 12))
    np.testing.assert_array_equal(Flatten(data_format="channels_first")(x), np.moveaxis(x, 1, -1).reshape(2, 12))
    assert Flatten()(np.ones(3)).shape == (3, 1)
    assert Flatten()(Input((3, 4))).shape == (None, 12)
    assert Flatten()(Input((None, 4))).shape == (None, None)
    with pytest.raises(ValueError, match="data_format"):
        Flatten(data_format="nhwc")


def test_reshape_values_shapes_and_errors():
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    np.testing.assert_array_equal(Reshape((3, 4))(x), x.reshape(2, 3, 4))
    np.testing.assert_array_equal(Reshape((-1, 2))(x), x.reshape(2, 6, 2))
    assert Reshape((-1, 2))(Input((12,))).shape == (None, 6, 2)
    assert Reshape((4, 3)).get_config()["target_shape"] == (4, 3)
    with pytest.raises(ValueError, match="more than one `-1`"):
        Reshape((-1, -1))
    with pytest.raises(ValueError, match=r"cannot reshape inputs of per-sample shape \(12,\)"):
        Reshape((5, -1))(x)
    with pytest.raises(ValueError, match=r"cannot reshape inputs of per-sample shape \(12,\)"):
        Reshape((5, 2))(Input((12,)))


# ----------------------------------------------------------------------------- merges


def test_merge_layers_match_numpy():
    a, b, c = (RNG.standard_normal((3, 4)).astype(np.float32) for _ in range(3))
    np.testing.assert_allclose(Add()([a, b, c]), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(Subtract()([a, b]), a - b, rtol=1e-6)
    np.testing.assert_allclose(Multiply()([a, b, c]), a * b * c, rtol=1e-6)
    np.testing.assert_allclose(Average()([a, b, c]), (a + b + c) / 3, rtol=1e-6)
    np.testing.assert_array_equal(Maximum()([a, b, c]), np.maximum(np.maximum(a, b), c))
    np.testing.assert_array_equal(Minimum()([a, b, c]), np.minimum(np.minimum(a, b), c))
    np.testing.assert_array_equal(Concatenate()([a, b]), np.concatenate([a, b], axis=-1))
    np.testing.assert_array_equal(Concatenate(axis=0)([a, b]), np.concatenate([a, b], axis=0))
    np.testing.assert_allclose(add([a, b]), a + b, rtol=1e-6)
    np.testing.assert_array_equal(concatenate([a, b], axis=1), np.concatenate([a, b], axis=1))
    assert Add()([a, b]).dtype == np.float32


def test_merge_broadcasting_and_symbolic_shapes():
    a = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(Add()([a, np.full((3, 1), 2.0, np.float32)]), np.full((3, 4), 3.0))
    x, y = Input((4,)), Input((1,))
    assert Add()([x, y]).shape == (None, 4)
    assert Concatenate()([Input((2, 3)), Input((2, 5))]).shape == (None, 2, 8)
    assert Concatenate(axis=1)([Input((2, 3)), Input((4, 3))]).shape == (None, 6, 3)


def test_merge_errors():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="exactly 2 inputs, got 3"):
        Subtract()([a, a, a])
    with pytest.raises(ValueError, match="should be called on a list of inputs"):
        Add()(Input((4,)))
    with pytest.raises(ValueError, match="compatible"):
        Add()([a, np.ones((3, 5), np.float32)])
    with pytest.raises(ValueError, match="compatible"):
        Add()([Input((4,)), Input((5,))])
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        Concatenate()([Input((2, 3)), Input((4, 3))])
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        Concatenate()([a, np.ones((2, 4), np.float32)])
    with pytest.raises(ValueError, match="out of range"):
        Concatenate(axis=3)([Input((2,)), Input((2,))])


def test_merge_configs():
    assert set(Add().get_config()) == {"name", "trainable", "dtype"}
    config = Concatenate(axis=1, name="cat").get_config()
    assert config["axis"] == 1 and Concatenate.from_config(config).axis == 1


# ----------------------------------------------------------------------------- InputLayer


def test_input_layer_and_input():
    x = Input(shape=(8,), name="features")
    assert repr(x) == "<SymbolicTensor name='features' shape=(None, 8) dtype=float32>"
    layer = x._keras_history[0]
    assert isinstance(layer, InputLayer) and layer.output is x and layer.batch_shape == (None, 8)
    assert layer.get_config() == {"batch_shape": (None, 8), "dtype": "float32", "sparse": False,
                                  "ragged": False, "name": "features", "optional": False}
    assert Input(shape=(8,), batch_size=4).shape == (4, 8)
    assert Input(batch_shape=(2, 3), dtype="float64").dtype == "float64"


def test_input_layer_accepts_keras2_config():
    layer = InputLayer.from_config({"batch_input_shape": [None, 16], "dtype": "float32", "sparse": False,
                                    "ragged": False, "name": "input_1"})
    assert layer.batch_shape == (None, 16) and layer.name == "input_1"
    assert InputLayer(input_shape=(3,)).batch_shape == (None, 3)


def test_input_errors():
    with pytest.raises(ValueError, match="must pass a `shape`"):
        Input()
    with pytest.raises(ValueError, match="dense inputs only"):
        Input((3,), sparse=True)
    with pytest.raises(ValueError, match="positive integers"):
        Input((3, -2))


def test_never_called_layer_attributes():
    layer = Dense(2)
    with pytest.raises(LayerNotConnectedError, match="has never been called"):
        layer.input
    assert not hasattr(layer, "output")


def test_serialize_layer_is_keras3_shape():
    entry = serialize_keras_object(Activation("relu", name="act"))
    assert entry["module"] == "keras.layers" and entry["class_name"] == "Activation"
    assert entry["registered_name"] is None and "build_config" not in entry
    entry = serialize_keras_object(built_dense(2, 3))
    assert entry["build_config"] == {"input_shape": [None, 3]}


def test_model_as_layer_in_sequential():
    inner = Sequential([Dense(4, input_shape=(3,), name="inner_dense")], name="inner")
    outer = Sequential([inner, Dense(2, name="outer_dense")], name="outer")
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(outer.predict(x), outer.layers[1](inner.predict(x)), rtol=1e-6)
    assert outer.input_shape == (None, 3)


def test_functional_model_usable_as_layer():
    inp = Input((3,), name="i")
    sub = Model(inp, Dense(2, name="d")(inp), name="sub")
    x = Input((3,), name="outer_in")
    y = sub(x)
    assert y.shape == (None, 2)
    outer = Model(x, Dense(1, name="o")(y))
    data = RNG.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(outer.predict(data), outer.layers[-1](sub.predict(data)), rtol=1e-6)
