"""Dense.quantize / Model.quantize, quantized dtype policies, configs and files (Keras 3 int8 /
int4), against fastdense.quantizers (checked bit for bit against Keras in test_quantizers.py)
and, when keras is installed, against Keras reading what fastdense wrote."""

import io
import os
import zipfile

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
        values = dict(zip(layer.weight_names, layer.get_weights()))
        if policy.mode == "int8":
            z = Q.int8_dense_reference(a, values["kernel"], values["kernel_scale"], values["bias"])
        else:
            weights = Q.Int4Weights(layer.kernel, values["kernel_scale"], values.get("kernel_zero"), policy.block_size)
            z = Q.int4_dense_reference(a, weights, values["bias"])
        a = acts[layer.get_config()["activation"]](z.astype(np.float64)).astype(np.float32)
    return a


# Keras's Layer.weights lists the trainable variables first: the bias, then the non-trainable
# quantized variables in the order Dense._int8_build / _int4_build add them (keras/src/layers/
# core/dense.py); without a bias the list just drops it.
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("mode, block, names", [
    ("int8", None, ["bias", "kernel", "kernel_scale"]),
    ("int4", None, ["bias", "kernel", "kernel_scale", "kernel_zero", "g_idx"]),
    ("int4", -1, ["bias", "kernel", "kernel_scale"]),
])
def test_dense_quantize_stores_keras_variables(mode, block, names, use_bias):
    if not use_bias:
        names = names[1:]
    layer = Dense(10, use_bias=use_bias)
    layer.build((None, 300))
    kernel = np.array(layer.get_weights()[0])
    config = None if block is None else {"module": "keras.quantizers", "class_name": "Int4QuantizationConfig",
                                         "config": {"weight_quantizer": None, "activation_quantizer": None,
                                                    "block_size": block}, "registered_name": None}
    layer.quantize(mode, config=config)
    assert layer.weight_names == names
    assert layer.quantization_mode == mode
    values = layer.get_weights()
    at = names.index("kernel")   # the arrays sit where the names say
    if use_bias:
        np.testing.assert_array_equal(values[0], np.zeros(10, np.float32))   # the bias, kept
        assert layer.bias is layer.weights[0]
    else:
        assert layer.bias is None
    if mode == "int8":
        q, scale = Q.quantize_int8(kernel)
        np.testing.assert_array_equal(values[at], q)
        np.testing.assert_array_equal(layer.kernel, q)
        np.testing.assert_array_equal(values[at + 1], scale)
        assert layer.dtype_policy.name == "int8_from_float32"
    else:
        w = Q.quantize_int4(kernel, 128 if block is None else block)
        np.testing.assert_array_equal(values[at], Q.pack_int4(w.q))
        np.testing.assert_array_equal(layer.kernel, w.q)
        np.testing.assert_array_equal(values[at + 1], w.scale)
        assert layer.dtype_policy.name == f"int4/{128 if block is None else -1}_from_float32"
        if block is None:
            np.testing.assert_array_equal(values[at + 2], w.zero)
            np.testing.assert_array_equal(values[at + 3], Q.group_index(300, 128))
    assert [spec.trainable for spec in layer._weight_specs] == [n == "bias" for n in names]
    # a layer built from the policy lists the same variables in the same order
    built = Dense.from_config(layer.get_config())
    built.build((None, 300))
    assert built.weight_names == names
    built.set_weights(values)
    x = np.random.default_rng(1).standard_normal((3, 300)).astype(np.float32)
    np.testing.assert_array_equal(built(x), layer(x))


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


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_files_keep_keras_store_orders_with_and_without_bias(tmp_path, mode):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(3)
    model = Sequential([Dense(8, use_bias=False, input_shape=(6,)), Dense(4)])
    model.build((None, 6))
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    model.quantize(mode)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = model.predict(x)
    for name in ("m.keras", "m.h5"):
        save_model(model, tmp_path / name)
        back = load_model(tmp_path / name)
        for ours, theirs in zip(back.layers, model.layers, strict=True):
            assert ours.weight_names == theirs.weight_names
            for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
                np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(back.predict(x), y)
    with h5py.File(tmp_path / "m.h5", "r") as f:   # legacy .h5: trainable first
        assert [n.rsplit("/", 1)[-1] for n in f["model_weights/dense_1"].attrs["weight_names"]][:2] == ["bias", "kernel"]
        assert [n.rsplit("/", 1)[-1] for n in f["model_weights/dense"].attrs["weight_names"]][0] == "kernel"
    with zipfile.ZipFile(tmp_path / "m.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:   # .keras: kernel, bias, ...
        store = f["layers/dense_1/vars"]
        np.testing.assert_array_equal(store["0"][()], model.layers[1].get_weights()[1])   # kernel
        np.testing.assert_array_equal(store["1"][()], model.layers[1].bias)
        np.testing.assert_array_equal(f["layers/dense/vars/0"][()], model.layers[0].get_weights()[0])


@pytest.mark.parametrize("name", ["int8_mlp", "int4_mlp"])
def test_weights_are_in_the_order_keras_wrote(name):
    """A Keras legacy .h5 lists each layer's trainable_weights + non_trainable_weights, which
    for a trainable quantized Dense is its Layer.weights order (bias, kernel, kernel_scale, ...);
    the .keras file of the same model stores kernel, bias, kernel_scale, ... (save_own_variables).
    get_weights follows the first, whichever file was loaded."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(FIXTURES / f"{name}.h5", "r") as f:
        group = f["model_weights"]
        written = {layer: [(n.decode() if isinstance(n, bytes) else n) for n in group[layer].attrs["weight_names"]]
                   for layer in group.attrs["layer_names"] if isinstance(layer, str)}
        arrays = {layer: [group[layer][n][()] for n in names] for layer, names in written.items()}
    for ext in ("keras", "h5"):
        model = load_model(FIXTURES / f"{name}.{ext}")
        dense = [layer for layer in model.layers if isinstance(layer, Dense)]
        assert dense
        for layer in dense:
            assert layer.weight_names == [n.rsplit("/", 1)[-1] for n in written[layer.name]]
            assert layer.weight_names[:2] == ["bias", "kernel"]
            for ours, theirs in zip(layer.get_weights(), arrays[layer.name], strict=True):
                np.testing.assert_array_equal(ours, theirs)


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
