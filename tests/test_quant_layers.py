"""Dense.quantize / Model.quantize, quantized dtype policies, configs and files (Keras 3 int8 /
int4), against fastdense.quantizers (checked bit for bit against Keras in test_quantizers.py)
and, when keras is installed, against Keras reading what fastdense wrote."""

import os

import numpy as np
import pytest
from _helpers import FIXTURES

from fastdense import quantizers as Q
from fastdense.layers import Dense
from fastdense.models import Sequential
from fastdense.models.plan import compile_plan
from fastdense.saving import load_model, save_model

pytestmark = pytest.mark.usefixtures("fresh_names")


def _mlp(seed=0):
    rng = np.random.default_rng(seed)
    model = Sequential([Dense(48, activation="relu", input_shape=(20,)), Dense(16, activation="tanh"),
                        Dense(6, activation="softmax")])
    model.build((None, 20))
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in model.get_weights()])
    x = rng.standard_normal((11, 20)).astype(np.float32)
    return model, x


def _reference(model, x):
    """The quantized model layer by layer with the NumPy references, activations in float64."""
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
            "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1,
                                                                                                    keepdims=True)}
    a = x
    for layer in model.layers:
        policy = layer.dtype_policy
        values = layer.get_weights()
        if policy.mode == "int8":
            z = Q.int8_dense_reference(a, values[0], values[2], values[1])
        else:
            zero = values[3] if policy.block_size > 0 else None
            z = Q.int4_dense_reference(a, Q.Int4Weights(layer.kernel, values[2], zero, policy.block_size), values[1])
        a = acts[layer.get_config()["activation"]](z.astype(np.float64)).astype(np.float32)
    return a


@pytest.mark.parametrize("mode, block, names", [
    ("int8", None, ["kernel", "bias", "kernel_scale"]),
    ("int4", None, ["kernel", "bias", "kernel_scale", "kernel_zero", "g_idx"]),
    ("int4", -1, ["kernel", "bias", "kernel_scale"]),
])
def test_dense_quantize_stores_keras_variables(mode, block, names):
    layer = Dense(10)
    layer.build((None, 300))
    kernel = np.array(layer.get_weights()[0])
    config = None if block is None else {"module": "keras.quantizers", "class_name": "Int4QuantizationConfig",
                                         "config": {"weight_quantizer": None, "activation_quantizer": None,
                                                    "block_size": block}, "registered_name": None}
    layer.quantize(mode, config=config)
    assert layer.weight_names == names
    assert layer.quantization_mode == mode
    values = layer.get_weights()
    if mode == "int8":
        q, scale = Q.quantize_int8(kernel)
        np.testing.assert_array_equal(values[0], q)
        np.testing.assert_array_equal(values[2], scale)
        assert layer.dtype_policy.name == "int8_from_float32"
    else:
        w = Q.quantize_int4(kernel, 128 if block is None else block)
        np.testing.assert_array_equal(values[0], Q.pack_int4(w.q))
        np.testing.assert_array_equal(layer.kernel, w.q)
        np.testing.assert_array_equal(values[2], w.scale)
        assert layer.dtype_policy.name == f"int4/{128 if block is None else -1}_from_float32"
        if block is None:
            np.testing.assert_array_equal(values[3], w.zero)
            np.testing.assert_array_equal(values[4], Q.group_index(300, 128))
    assert [layer._weight_specs[i].trainable for i in range(len(names))] == [n == "bias" for n in names]


def test_quantize_refuses_what_keras_refuses():
    layer = Dense(3)
    with pytest.raises(ValueError, match="not built"):
        layer.quantize("int8")
    layer.build((None, 4))
    with pytest.raises(ValueError, match="'int8' or 'int4'"):
        layer.quantize("int2")
    layer.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        layer.quantize("int8")
    f64 = Dense(3, dtype="float64")
    f64.build((None, 4))
    with pytest.raises(ValueError, match="float32"):
        f64.quantize("int8")
    with pytest.raises(ValueError, match="Int8QuantizationConfig"):
        Dense(3, quantization_config={"mode": "int8"})
    with pytest.raises(ValueError, match="float8"):
        Dense(3, dtype="float8_from_float32")

    class Sub(Dense):
        pass

    sub = Sub(3)
    sub.build((None, 4))
    with pytest.raises(NotImplementedError, match="Sub"):
        sub.quantize("int8")


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_model_quantize_runs_compiled_and_matches_the_reference(mode):
    model, x = _mlp()
    model.quantize(mode)
    assert {layer.dtype_policy.quantization_mode for layer in model.layers} == {mode}
    plan = compile_plan(model, [(20,)], np.dtype(np.float32))
    assert plan is not None  # the quantized Dense is a plan step
    y = model.predict(x)
    want = _reference(model, x)
    assert np.abs(y - want).max() <= 2e-6
    np.testing.assert_array_equal(np.concatenate([model.predict(x[i:i + 1]) for i in range(11)]), y)
    np.testing.assert_array_equal(model(x), y)  # layer by layer gives the same bits


def test_model_quantize_filters():
    model, _ = _mlp()
    model.quantize("int8", filters=["dense$", "dense_2"])
    assert [layer.quantization_mode for layer in model.layers] == ["int8", None, "int8"]
    with pytest.raises(ValueError, match="filters"):
        model.quantize("int8", filters=3)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_config_and_file_round_trips(tmp_path, mode):
    model, x = _mlp()
    model.quantize(mode)
    y = model.predict(x)
    clone = Sequential.from_config(model.get_config())
    clone.build((None, 20))
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(x), y)
    for name in ("m.keras", "m.h5"):
        save_model(model, tmp_path / name)
        back = load_model(tmp_path / name)
        assert [layer.dtype_policy.name for layer in back.layers] == [layer.dtype_policy.name for layer in model.layers]
        np.testing.assert_array_equal(back.predict(x), y)


@pytest.mark.parametrize("name", ["int8_mlp", "int4_mlp"])
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras_files_load_with_their_policies(name, ext):
    model = load_model(FIXTURES / f"{name}.{ext}")
    data = np.load(FIXTURES / f"{name}.io.npz")
    want = "int8_from_float32" if name == "int8_mlp" else "int4/128_from_float32"
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    assert {layer.dtype_policy.name for layer in dense} == {want}
    y = model.predict(data["x0"])
    assert np.abs(y - data["y"]).max() <= 2e-5 * max(1.0, np.abs(data["y"]).max())


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras_reads_what_fastdense_writes(keras, tmp_path, mode, ext):
    model, x = _mlp()
    model.quantize(mode)
    save_model(model, tmp_path / f"m.{ext}")
    theirs = keras.saving.load_model(tmp_path / f"m.{ext}", compile=False)
    assert [layer.dtype_policy.name for layer in theirs.layers] == [layer.dtype_policy.name for layer in model.layers]
    got = keras.ops.convert_to_numpy(theirs(x))
    assert np.abs(got - model.predict(x)).max() <= 1e-6
