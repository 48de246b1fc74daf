"""Dense: constructor validation, forward pass against float64 NumPy, the fast path, configs in
both Keras dialects, and a property test of from_config(get_config()) over argument combinations."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastdense import activations, constraints, initializers, regularizers
from fastdense.layers import Dense, Input

RNG = np.random.default_rng(11)

KERAS3_DENSE_KEYS = {
    "name", "trainable", "dtype", "units", "activation", "use_bias", "kernel_initializer",
    "bias_initializer", "kernel_regularizer", "bias_regularizer", "kernel_constraint",
    "bias_constraint", "quantization_config",
}

REFERENCE = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True),
}


pytestmark = pytest.mark.usefixtures("fresh_names")  # tests/conftest.py


def built(units, input_dim, **kwargs):
    layer = Dense(units, **kwargs)
    layer.build((None, input_dim))
    return layer


def reference(layer, x, activation="linear"):
    kernel = layer.kernel.astype(np.float64)
    z = np.asarray(x, np.float64) @ kernel
    if layer.use_bias:
        z = z + layer.bias.astype(np.float64)
    return REFERENCE[activation](z)


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True, None, float("nan"), float("inf")])
def test_units_validation_quotes_the_value(units):
    with pytest.raises(ValueError, match=r"expected a positive integer\. Received: units=" + repr(units).replace("(", r"\(")[:4]):
        Dense(units)


def test_integral_units_accepted():
    assert Dense(np.int64(4)).units == 4 and Dense(8.0).units == 8


def test_weight_shapes_and_properties():
    layer = built(5, 3)
    assert layer.kernel.shape == (3, 5) and layer.bias.shape == (5,)
    assert layer.kernel is layer.weights[0] and layer.bias is layer.weights[1]
    no_bias = built(5, 3, use_bias=False)
    assert no_bias.bias is None and len(no_bias.weights) == 1
    with pytest.raises(AttributeError, match="not built"):
        Dense(2).kernel


def test_initializers_used():
    layer = built(4, 3, kernel_initializer="ones", bias_initializer=initializers.Constant(0.5))
    np.testing.assert_array_equal(layer.kernel, np.ones((3, 4)))
    np.testing.assert_array_equal(layer.bias, np.full(4, 0.5))


def test_bad_lora_rank_and_quantization_are_refused():
    with pytest.raises(ValueError, match="lora_rank"):  # LoRA itself: tests/test_layers_lora.py
        Dense(2, lora_rank=0)
    with pytest.raises(ValueError, match="quantization"):
        Dense(2, quantization_config={"mode": "int8"})


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "sigmoid", "softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_matches_float64_numpy(activation, dtype):
    layer = built(7, 5, activation=activation, dtype=dtype, bias_initializer="random_normal")
    x = RNG.standard_normal((6, 5)).astype(dtype)
    out = layer(x)
    assert out.dtype == np.dtype(dtype) and out.shape == (6, 7)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, reference(layer, x, activation), rtol=tol, atol=tol)


def test_n_d_inputs_act_on_the_last_axis():
    layer = built(4, 3, activation="relu", bias_initializer="random_normal")
    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    out = layer(x)
    assert out.shape == (2, 5, 4)
    np.testing.assert_allclose(out, reference(layer, x, "relu"), rtol=1e-5, atol=1e-6)


def test_fast_and_general_paths_agree():
    layer = built(6, 4, activation="relu", bias_initializer="random_normal")
    x = RNG.standard_normal((8, 4))
    expected = reference(layer, x, "relu")
    variants = [
        (x.astype(np.float32), expected),                       # fast path
        (x, expected),                                          # float64 -> cast
        (np.asfortranarray(x.astype(np.float32)), expected),    # other layout
        (x.astype(np.float32)[::2], expected[::2]),             # strided rows
        (x.tolist(), expected),                                 # nested lists
    ]
    for data, want in variants:
        np.testing.assert_allclose(layer(data), want, rtol=1e-5, atol=1e-6)
    assert layer._fast is not None


def test_python_callable_activation_runs_after_the_op():
    def cube(z):
        return z ** 3

    layer = built(3, 2, activation=cube, bias_initializer="ones")
    x = RNG.standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(layer(x), reference(layer, x) ** 3, rtol=1e-4, atol=1e-6)


def test_activation_can_be_changed_after_build():
    layer = built(3, 2)
    x = RNG.standard_normal((4, 2)).astype(np.float32)
    layer.activation = "relu"
    np.testing.assert_allclose(layer(x), reference(layer, x, "relu"), rtol=1e-5, atol=1e-6)
    assert layer.get_config()["activation"] == "relu"


def test_activity_regularizer_disables_the_fast_path_and_records_loss():
    layer = built(3, 2, activity_regularizer="l2")
    assert layer._fast is None
    out = layer(np.ones((2, 2), np.float32))
    assert layer.losses == pytest.approx([0.01 * float(np.sum(out.astype(np.float64) ** 2))], rel=1e-5)


def test_symbolic_output_shape():
    assert Dense(3)(Input((4,))).shape == (None, 3)
    assert Dense(3, dtype="float64")(Input((2, 4))).dtype == "float64"


# --------------------------------------------------------------------------- configs


def test_config_keys_are_keras3():
    config = Dense(4, name="d").get_config()
    assert set(config) == KERAS3_DENSE_KEYS
    assert config["dtype"] == {"module": "keras", "class_name": "DTypePolicy",
                               "config": {"name": "float32"}, "registered_name": None}
    assert config["kernel_initializer"] == {"module": "keras.initializers", "class_name": "GlorotUniform",
                                            "config": {"seed": None, "input_axes": None, "output_axes": None},
                                            "registered_name": None}
    assert config["activation"] == "linear" and config["quantization_config"] is None
    assert "activity_regularizer" in Dense(4, activity_regularizer="l1").get_config()


def test_from_config_accepts_keras2_dialect():
    keras2 = {
        "name": "dense_2", "trainable": True, "dtype": "float32", "units": 10, "activation": "tanh",
        "use_bias": True,
        "kernel_initializer": {"class_name": "VarianceScaling",
                               "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.01}},
        "bias_regularizer": None, "activity_regularizer": None,
        "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}},
        "bias_constraint": None, "batch_input_shape": [None, 6],
    }
    layer = Dense.from_config(keras2)
    assert layer.units == 10 and layer._batch_input_shape == (None, 6)
    assert isinstance(layer.kernel_regularizer, regularizers.L1L2)
    assert isinstance(layer.kernel_constraint, constraints.MaxNorm)
    config = layer.get_config()
    assert set(config) == KERAS3_DENSE_KEYS
    assert config["kernel_initializer"]["class_name"] == "VarianceScaling"
    assert config["kernel_regularizer"]["module"] == "keras.regularizers"


def test_from_config_unknown_key_is_a_clear_error():
    with pytest.raises(TypeError, match="Error when deserializing class 'Dense'"):
        Dense.from_config({"units": 2, "bogus": 1})


ACTIVATION_NAMES = ["linear", "relu", "tanh", "sigmoid", "softmax", "gelu", "elu", "selu", "softplus",
                    "softsign", "silu", "hard_sigmoid", "relu6", "leaky_relu", "mish", "exponential",
                    "log_softmax"]

initializer_strategy = st.one_of(
    st.sampled_from(["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal",
                     "zeros", "ones", "orthogonal"]),
    st.builds(initializers.RandomNormal, mean=st.floats(-1, 1), stddev=st.floats(0.01, 1),
              seed=st.none() | st.integers(0, 100)),
    st.builds(initializers.RandomUniform, minval=st.floats(-1, 0), maxval=st.floats(0.1, 1),
              seed=st.none() | st.integers(0, 100)),
    st.builds(initializers.Constant, value=st.floats(-2, 2)),
    st.builds(initializers.VarianceScaling, scale=st.floats(0.1, 3),
              mode=st.sampled_from(["fan_in", "fan_out", "fan_avg"]),
              distribution=st.sampled_from(["truncated_normal", "untruncated_normal", "uniform"])),
)
regularizer_strategy = st.one_of(
    st.none(),
    st.builds(regularizers.L1, l1=st.floats(0, 1)),
    st.builds(regularizers.L2, l2=st.floats(0, 1)),
    st.builds(regularizers.L1L2, l1=st.floats(0, 1), l2=st.floats(0, 1)),
)
constraint_strategy = st.one_of(
    st.none(),
    st.builds(constraints.MaxNorm, max_value=st.floats(0.5, 5), axis=st.sampled_from([0, -1])),
    st.just(constraints.NonNeg()),
    st.builds(constraints.UnitNorm, axis=st.sampled_from([0, -1])),
    st.builds(constraints.MinMaxNorm, min_value=st.floats(0, 0.5), max_value=st.floats(1, 3),
              rate=st.floats(0.1, 1), axis=st.sampled_from([0, -1])),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    units=st.integers(1, 64),
    activation=st.sampled_from(ACTIVATION_NAMES + [None]),
    use_bias=st.booleans(),
    kernel_initializer=initializer_strategy,
    bias_initializer=initializer_strategy,
    kernel_regularizer=regularizer_strategy,
    bias_regularizer=regularizer_strategy,
    activity_regularizer=regularizer_strategy,
    kernel_constraint=constraint_strategy,
    bias_constraint=constraint_strategy,
    dtype=st.sampled_from(["float32", "float64"]),
    trainable=st.booleans(),
    name=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
)
def test_config_round_trip_property(**kwargs):
    layer = Dense(**kwargs)
    config = layer.get_config()
    as_json = json.loads(json.dumps(config))
    clone = Dense.from_config(as_json)
    assert clone.get_config() == config
    assert json.loads(json.dumps(clone.get_config())) == as_json
    expected_activation = activations.serialize(activations.get(kwargs["activation"]))
    assert config["activation"] == expected_activation
    assert clone.use_bias == kwargs["use_bias"] and clone.dtype == kwargs["dtype"]
