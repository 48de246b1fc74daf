"""Regressions found by differential fuzzing against Keras 3.15.1 (random Keras models saved as
.keras / .h5, loaded and run by fastdense, saved back and run by Keras). Each test states the
Keras semantics it holds fastdense to with a float64 NumPy reference written here (or
fastdense.quantizers' references, checked bit for bit against Keras in test_quantizers.py, or
small files Keras wrote once, in tests/fixtures/keras_diff), so none of them needs Keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fastdense
from fastdense import quantizers as Q
from fastdense.layers import BatchNormalization, Concatenate, Dense, Normalization, Rescaling
from fastdense.models import Model, Sequential

pytestmark = pytest.mark.usefixtures("fresh_names")


# ---- an affine layer (BatchNormalization, Normalization, Rescaling) before an int8 / int4 Dense

def _affine_reference(kind, layer, x):
    """The affine layer in float64 from its weights and arguments alone."""
    x = x.astype(np.float64)
    if kind == "bn":
        gamma, beta, mean, var = (w.astype(np.float64) for w in layer.get_weights())
        return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta
    if kind == "norm":
        return (x - layer.input_mean) / np.maximum(np.sqrt(layer.input_variance), 1e-7)
    return x * layer.scale + layer.offset


def _quantized_reference(layer, x):
    values = dict(zip(layer.weight_names, layer.get_weights()))
    if layer.dtype_policy.mode == "int8":
        return Q.int8_dense_reference(x, values["kernel"], values["kernel_scale"], values["bias"])
    weights = Q.Int4Weights(layer.kernel, values["kernel_scale"], values.get("kernel_zero"),
                            layer.dtype_policy.block_size)
    return Q.int4_dense_reference(x, weights, values["bias"])


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kind", ["bn", "norm", "rescale"])
def test_affine_layer_before_a_quantized_dense(kind, mode):
    # The compiled plan folds an affine layer into the Dense after it; for a quantized Dense it
    # left the map pending and the integer kernel read a buffer nothing had written (outputs off
    # by 2 to 1e35).
    rng = np.random.default_rng(0)
    affine = {"bn": lambda: BatchNormalization(epsilon=0.01),
              "norm": lambda: Normalization(mean=rng.normal(size=6).tolist(), variance=(rng.random(6) + .5).tolist()),
              "rescale": lambda: Rescaling(2.0, offset=0.5)}[kind]()
    model = Sequential([fastdense.Input((6,)), affine, Dense(5, name="q")])
    model.set_weights([(rng.random(w.shape) + .5).astype(np.float32) if "variance" in name
                       else rng.normal(size=w.shape).astype(np.float32)
                       for w, name in zip(model.get_weights(), [n for layer in model.layers for n in layer.weight_names])])
    model.quantize(mode)
    x = rng.normal(size=(7, 6)).astype(np.float32)
    got = model.predict(x)   # first: the references' kernel calls leave their operands in the scratch
    expected = _quantized_reference(model.get_layer("q"), _affine_reference(kind, affine, x).astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_concatenated_affine_branches_before_a_quantized_dense():
    # a Concatenate carries its branches' pending maps to the Dense after it (docs/layers.md)
    rng = np.random.default_rng(1)
    a, b = fastdense.Input((3,), name="a"), fastdense.Input((2,), name="b")
    norm = Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0])
    out = Dense(4, name="q")(Concatenate()([norm(a), Rescaling(-3.0)(b)]))
    model = Model([a, b], out)
    model.get_layer("q").set_weights([rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)])
    model.quantize("int8")
    xa, xb = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    got = model.predict({"a": xa, "b": xb})
    joined = np.concatenate([_affine_reference("norm", norm, xa), -3.0 * xb.astype(np.float64)], -1)
    expected = _quantized_reference(model.get_layer("q"), joined.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---- quantizing a Dense with LoRA

def test_quantize_keeps_the_lora_matrices_it_computes_with():
    # Dense.quantize dropped the LoRA matrices but kept lora_enabled: predict then failed inside
    # NumPy ("operands could not be broadcast together"). Keras quantizes the frozen kernel and
    # keeps A and B (tests/test_quant_lora.py checks the values).
    model = Sequential([fastdense.Input((3,)), Dense(4, name="plain"), Dense(2, lora_rank=2, name="adapted")])
    model.quantize("int8")
    adapted = model.get_layer("adapted")
    assert adapted.quantization_mode == "int8" and adapted.lora_enabled
    assert adapted.weight_names == ["bias", "lora_kernel_a", "lora_kernel_b", "kernel", "kernel_scale"]
    assert model.predict(np.ones((2, 3), np.float32)).shape == (2, 2)


# ---- NaN through UnitNormalization in a compiled plan

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_normalization_keeps_nan_rows_nan(dtype):
    # Keras: x / max(||x||, 1e-12), NaN for a row holding NaN. The plan's NORM step took
    # min(1 / ||x||, 1e12) with comparisons that turned a NaN norm into the 1e12 cap:
    # [nan, 1, 2, 3] came out [nan, 1e12, 2e12, 3e12]. (After a Dense the row is NaN throughout.)
    from fastdense.layers import UnitNormalization
    x = np.array([[np.nan, 1.0, 2.0, 3.0], [3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1e-20, 0.0, 0.0, 0.0]], dtype)
    model = Sequential([fastdense.Input((4,), dtype=dtype), UnitNormalization(dtype=dtype)])
    x64 = x.astype(np.float64)
    expected = x64 / np.maximum(np.sqrt((x64 ** 2).sum(-1, keepdims=True)), 1e-12)
    got = model.predict(x)
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1:], expected[1:], rtol=1e-6, atol=0)


# ---- a model whose outputs are a one-element list

def test_one_element_output_list_returns_the_array():
    # Keras 3's Functional.call unpacks a one-element output list or tuple (unpack_singleton), so
    # predict and eager calls return the array; a symbolic call keeps the list. fastdense returned
    # [array] (Keras writes output_layers as [["dense", 0, 0]] for such models).
    x = np.array([[1.0, 2.0]], np.float32)
    kernel = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], np.float32)
    for wrap in (list, tuple):
        fastdense.layers.clear_session()
        inp = fastdense.Input((2,))
        model = Model(inp, wrap([Dense(3, use_bias=False)(inp)]))
        model.set_weights([kernel])
        expected = x.astype(np.float64) @ kernel
        for got in (model.predict(x), model.predict(x, batch_size=1), model(x)):
            assert isinstance(got, np.ndarray)
            np.testing.assert_allclose(got, expected, rtol=1e-6)
        symbolic = model(fastdense.Input((2,)))
        assert isinstance(symbolic, (list, tuple)) and len(symbolic) == 1
    nested = Model(inp, [[Dense(3)(inp)]])     # one level only, as Keras: [[y]] gives [y]
    got = nested.predict(x)
    assert isinstance(got, list) and len(got) == 1 and isinstance(got[0], np.ndarray)


# ---- a functional model nested in another and called more than once

# Written by Keras 3.15.1 (keras.saving.serialize_keras_object, initializers and other defaults
# dropped): outer = Model([a, b], [Add()([inner(a), inner(b)]), inner(b)]). In call arguments Keras
# numbers inner's calls 0, 1 (serialize_node); in output_layers from 1 (["inner", 3, 0] is the third).
NESTED_KERAS_CONFIG = (
    '{"module":"keras.src.models.functional","class_name":"Functional","config":{"name":"outer","trai'
    'nable":true,"layers":[{"module":"keras.layers","class_name":"InputLayer","config":{"batch_shape"'
    ':[null,2],"dtype":"float32","name":"a"},"name":"a","inbound_nodes":[]},{"module":"keras.layers",'
    '"class_name":"InputLayer","config":{"batch_shape":[null,2],"dtype":"float32","name":"b"},"name":'
    '"b","inbound_nodes":[]},{"module":"keras.src.models.functional","class_name":"Functional","confi'
    'g":{"name":"inner","trainable":true,"layers":[{"module":"keras.layers","class_name":"InputLayer"'
    ',"config":{"batch_shape":[null,2],"dtype":"float32","name":"inner_in"},"name":"inner_in","inboun'
    'd_nodes":[]},{"module":"keras.layers","class_name":"Dense","config":{"name":"inner_dense","train'
    'able":true,"dtype":{"module":"keras","class_name":"DTypePolicy","config":{"name":"float32"}},"un'
    'its":2,"activation":"tanh","use_bias":true},"name":"inner_dense","inbound_nodes":[{"args":[{"cla'
    'ss_name":"__keras_tensor__","config":{"shape":[null,2],"dtype":"float32","keras_history":["inner'
    '_in",0,0]}}],"kwargs":{}}]}],"input_layers":["inner_in",0,0],"output_layers":["inner_dense",0,0]'
    '},"name":"inner","inbound_nodes":[{"args":[{"class_name":"__keras_tensor__","config":{"shape":[n'
    'ull,2],"dtype":"float32","keras_history":["a",0,0]}}],"kwargs":{"mask":null}},{"args":[{"class_n'
    'ame":"__keras_tensor__","config":{"shape":[null,2],"dtype":"float32","keras_history":["b",0,0]}}'
    '],"kwargs":{"mask":null}},{"args":[{"class_name":"__keras_tensor__","config":{"shape":[null,2],"'
    'dtype":"float32","keras_history":["b",0,0]}}],"kwargs":{"mask":null}}]},{"module":"keras.layers"'
    ',"class_name":"Add","config":{"name":"add","trainable":true,"dtype":{"module":"keras","class_nam'
    'e":"DTypePolicy","config":{"name":"float32"}}},"name":"add","inbound_nodes":[{"args":[[{"class_n'
    'ame":"__keras_tensor__","config":{"shape":[null,2],"dtype":"float32","keras_history":["inner",0,'
    '0]}},{"class_name":"__keras_tensor__","config":{"shape":[null,2],"dtype":"float32","keras_histor'
    'y":["inner",1,0]}}]],"kwargs":{}}]}],"input_layers":[["a",0,0],["b",0,0]],"output_layers":[["add'
    '",0,0],["inner",3,0]]}}'
)


def _nested_reference(kernel, bias, a, b):
    def inner(x):
        return np.tanh(x.astype(np.float64) @ kernel + bias)
    return inner(a) + inner(b), inner(b)


def test_nested_functional_model_from_a_keras_config():
    # fastdense read call-argument indices as if Keras counted a functional model's own node
    # (tf.keras 2 did): inner's first call resolved to inner's own graph and loading failed with
    # "Graph disconnected" (the second call took the first call's tensor).
    import json

    from fastdense.models.config import model_from_config
    model = model_from_config(json.loads(NESTED_KERAS_CONFIG))
    kernel = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    bias = np.array([0.1, -0.2], np.float32)
    model.get_layer("inner").get_layer("inner_dense").set_weights([kernel, bias])
    a = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    b = np.array([[0.0, -3.0], [2.0, 1.0]], np.float32)
    for got, want in zip(model.predict([a, b]), _nested_reference(kernel, bias, a, b), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_nested_functional_model_config_numbers_calls_as_keras():
    # what fastdense writes: the same indices as the Keras config above (Keras could not load
    # fastdense's files: it looked for inner's node 1 when inner had been called once)
    import json

    from fastdense.layers import Add
    inner_in = fastdense.Input((2,), name="inner_in")
    inner = Model(inner_in, Dense(2, activation="tanh", name="inner_dense")(inner_in), name="inner")
    a, b = fastdense.Input((2,), name="a"), fastdense.Input((2,), name="b")
    outer = Model([a, b], [Add(name="add")([inner(a), inner(b)]), inner(b)], name="outer")
    ours, keras_config = outer.get_config(), json.loads(NESTED_KERAS_CONFIG)["config"]

    def history(config):
        add = next(layer for layer in config["layers"] if layer["name"] == "add")
        return ([arg["config"]["keras_history"] for arg in add["inbound_nodes"][0]["args"][0]],
                config["output_layers"])
    assert history(ours) == history(keras_config) == ([["inner", 0, 0], ["inner", 1, 0]],
                                                      [["add", 0, 0], ["inner", 3, 0]])
    inner_nodes = next(layer for layer in ours["layers"] if layer["name"] == "inner")["inbound_nodes"]
    assert [node["args"][0]["config"]["keras_history"] for node in inner_nodes] == [["a", 0, 0], ["b", 0, 0],
                                                                                     ["b", 0, 0]]


# ---- a nested model's weights in a legacy .h5 file

KERAS_DIFF_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras_diff"


def _weight_shapes(path, layer_name):
    import h5py
    with h5py.File(path, "r") as f:
        group = f["model_weights"][layer_name]
        return [group[name.decode() if isinstance(name, bytes) else name].shape for name in group.attrs["weight_names"]]


def test_nested_model_weights_in_a_legacy_h5(tmp_path):
    # Keras writes a nested model's weights trainable first across all its layers (hidden, bn's
    # gamma/beta, adapted's bias and LoRA matrices, then bn's moving statistics and adapted's
    # frozen kernel); fastdense read and wrote them layer by layer ("weight 4 has shape (3,) in the
    # file, the layer expects (5,)").
    from fastdense.saving.api import load_model
    source = KERAS_DIFF_FIXTURES / "nested_bn_lora.h5"
    data = np.load(KERAS_DIFF_FIXTURES / "nested_bn_lora.io.npz")
    model = load_model(source)
    np.testing.assert_allclose(model.predict(data["x0"]), data["y"], rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "copy.h5")
    assert _weight_shapes(tmp_path / "copy.h5", "inner") == _weight_shapes(source, "inner") == [
        (4, 5), (5,), (5,), (5,), (3,), (5, 2), (2, 3), (5,), (5,), (5, 3)]
    np.testing.assert_allclose(load_model(tmp_path / "copy.h5").predict(data["x0"]), data["y"], rtol=1e-5, atol=1e-5)
