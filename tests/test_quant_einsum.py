"""Quantized EinsumDense (Keras 3.15 int8 / int4): variables, values, files.

References: an int64 / float64 NumPy transcription of Keras's EinsumDense._int8_call /
_int4_call, and the outputs and variables Keras 3.15.1 wrote in
tests/fixtures/keras_quant/einsum_* (made by einsum_make.py there, float inputs:
five EinsumDense equations and a Dense).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fastdense import quantizers as Q
from fastdense.layers import Dense, EinsumDense, Input
from fastdense.models import Model
from fastdense.models.plan import compile_plan
from fastdense.saving import load_model, save_model

QFIX = Path(__file__).resolve().parent / "fixtures" / "keras_quant"

# the layer variables Keras 3.15.1 wrote (einsum_make.py's printout)
KERAS_VARS = {
    "int8": {
        "proj": [("bias", (12,), "float32"), ("kernel", (40, 12), "int8"), ("kernel_scale", (1, 1, 12), "float32")],
        "heads": [("bias", (3, 4), "float32"), ("kernel", (12, 3, 4), "int8"),
                  ("kernel_scale", (1, 1, 3, 4), "float32")],
        "merge": [("bias", (6,), "float32"), ("kernel", (3, 4, 6), "int8"), ("kernel_scale", (1, 1, 6), "float32")],
        "tkernel": [("bias", (5, 1), "float32"), ("kernel", (7, 6), "int8"), ("kernel_scale", (1, 1, 7), "float32")],
        "out": [("kernel", (35, 3), "int8"), ("kernel_scale", (1, 3), "float32")],
    },
    "int4": {
        "proj": [("bias", (12,), "float32"), ("kernel", (40, 6), "int8"), ("kernel_scale", (1, 12), "float32"),
                 ("kernel_zero", (1, 12), "int8"), ("g_idx", (40,), "float32")],
        "heads": [("bias", (3, 4), "float32"), ("kernel", (12, 6), "int8"), ("kernel_scale", (1, 12), "float32"),
                  ("kernel_zero", (1, 12), "int8"), ("g_idx", (12,), "float32")],
        "merge": [("bias", (6,), "float32"), ("kernel", (12, 3), "int8"), ("kernel_scale", (1, 6), "float32"),
                  ("kernel_zero", (1, 6), "int8"), ("g_idx", (12,), "float32")],
        "tkernel": [("bias", (5, 1), "float32"), ("kernel", (6, 4), "int8"), ("kernel_scale", (1, 7), "float32"),
                    ("kernel_zero", (1, 7), "int8"), ("g_idx", (6,), "float32")],
        "out": [("kernel", (35, 2), "int8"), ("kernel_scale", (1, 3), "float32"),
                ("kernel_zero", (1, 3), "int8"), ("g_idx", (35,), "float32")],
    },
}
POLICY = {"int8": "int8_from_float32", "int4": "int4/128_from_float32", "int4pc": "int4/-1_from_float32"}


def _einsums(model):
    return {layer.name: layer for layer in model.layers if isinstance(layer, EinsumDense)}


def _specs(equation):
    ins, out = equation.replace("...", "").split("->")
    x, w = ins.split(",")
    return x, w, out


def keras_int8_reference(equation, x, kernel, scale, bias, activation=None):
    """Keras's _int8_call in int64 / float64: inputs abs-max quantized over their contracted axes."""
    xs, ws, os_ = _specs(equation)
    axes = tuple(x.ndim - len(xs) + i for i, d in enumerate(xs) if d not in os_)
    x = x.astype(np.float32)
    inputs_scale = np.float32(127) / (np.max(np.abs(x), axis=axes, keepdims=True) + np.float32(1e-7))
    xq = np.clip(np.round(x * inputs_scale), -127, 127).astype(np.int64)
    acc = np.einsum(equation, xq, kernel.astype(np.int64))
    # the input scale broadcast over the output: its contracted axes dropped, new axes added
    s = inputs_scale.reshape(inputs_scale.shape[:x.ndim - len(axes)] + (1,) * (acc.ndim - (x.ndim - len(axes))))
    y = acc.astype(np.float64) / (s.astype(np.float64) * scale.astype(np.float64))
    if bias is not None:
        y = y + bias
    return activation(y) if activation else y


def keras_int4_reference(equation, x, packed, scale, zero, kernel_shape, bias, block):
    """Keras's _int4_call in float64: the flat kernel unpacked, dequantized, reshaped, einsum."""
    rows = packed.shape[0]
    cols = int(np.prod(kernel_shape)) // rows
    q = Q.unpack_int4(packed, cols).astype(np.float64)
    if zero is None:
        w = q / scale
    else:
        g = np.arange(rows) // block
        w = (q - zero[g]) * scale[g]
    y = np.einsum(equation, x.astype(np.float64), w.reshape(kernel_shape))
    return y if bias is None else y + bias


# ------------------------------------------------------------------ Keras's files


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras_files_load_with_keras_variables_and_outputs(mode, ext):
    model = load_model(QFIX / f"einsum_{mode}.{ext}")
    layers = _einsums(model)
    for name, want in KERAS_VARS[mode].items():
        layer = layers[name]
        got = [(n, tuple(w.shape), str(w.dtype)) for n, w in zip(layer.weight_names, layer.get_weights())]
        assert got == want, name
        assert layer.dtype_policy.name == POLICY[mode]
        assert layer.get_config()["dtype"]["class_name"] == ("QuantizedDTypePolicy" if mode == "int8"
                                                             else "Int4DTypePolicy")
    data = np.load(QFIX / f"einsum_{mode}.npz")
    y = model.predict(data["x"])
    # int8: integer products, de-scaled as Keras does; int4: float products (a few ulp)
    np.testing.assert_allclose(y, data["y"], rtol=0, atol=1e-6 if mode == "int8" else 2e-6)


def test_keras_int4_per_column_file():
    model = load_model(QFIX / "einsum_int4pc.keras")
    assert {layer.dtype_policy.name for layer in _einsums(model).values()} == {POLICY["int4pc"]}
    assert "kernel_zero" not in _einsums(model)["proj"].weight_names
    data = np.load(QFIX / "einsum_int4pc.npz")
    np.testing.assert_allclose(model.predict(data["x"]), data["y"], rtol=0, atol=2e-6)


@pytest.mark.parametrize("mode,config", [("int8", None), ("int4", None),
                                         ("int4pc", {"class_name": "Int4QuantizationConfig",
                                                     "config": {"block_size": -1}})])
def test_quantize_computes_kerass_integers_and_scales(mode, config):
    """Model.quantize on the float model gives exactly the variables Keras wrote."""
    model = load_model(QFIX / "einsum_float.keras")
    model.quantize(mode[:4], config=config)
    theirs = load_model(QFIX / f"einsum_{mode}.keras")
    for name, layer in _einsums(model).items():
        other = _einsums(theirs)[name]
        assert layer.dtype_policy.name == other.dtype_policy.name
        assert layer.weight_names == other.weight_names
        for n, a, b in zip(layer.weight_names, layer.get_weights(), other.get_weights()):
            assert a.dtype == b.dtype and a.shape == b.shape, (name, n)
            if n == "kernel":   # a rounding tie may land either side of .5 in float32: at most one step
                assert np.abs(a.astype(int) - b.astype(int)).max() <= (0 if mode == "int8" else 0x11), (name, n)
                assert np.mean(a != b) < 0.01, (name, n)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=0, err_msg=f"{name}/{n}")
    data = np.load(QFIX / f"einsum_{mode}.npz")
    np.testing.assert_allclose(model.predict(data["x"]), data["y"], rtol=0, atol=1e-5)


# ------------------------------------------------------------------ NumPy references

EQUATIONS = [
    # equation, input per-sample shape, output_shape, bias_axes, activation
    ("ab,bc->ac", (24,), (6,), "c", "relu"),
    ("abc,cd->abd", (3, 20), (3, 8), "d", None),
    ("abc,cde->abde", (4, 10), (4, 3, 5), "de", "tanh"),
    ("abc,cde->abde", (4, 10), (4, 3, 5), "e", None),
    ("abcd,cde->abe", (2, 3, 7), (2, 5), None, "relu"),
    ("...b,bc->...c", (2, 16), (4,), "c", None),
    ("abc,dc->abd", (3, 9), (3, 5), "d", None),
    ("abc,cd->abd", (3, 20), (3, 8), "b", None),   # bias along a free axis: added after the kernel
]


def _model(equation, shape, out, bias_axes, activation, seed=1):
    rng = np.random.default_rng(seed)
    inp = Input(shape)
    layer = EinsumDense(equation, output_shape=out, bias_axes=bias_axes, activation=activation)
    model = Model(inp, layer(inp))
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.normal(size=(5,) + shape).astype(np.float32)
    return model, layer, x


@pytest.mark.parametrize("equation,shape,out,bias_axes,activation", EQUATIONS)
def test_int8_matches_int64_reference_eager_and_compiled(equation, shape, out, bias_axes, activation):
    model, layer, x = _model(equation, shape, out, bias_axes, activation)
    model.quantize("int8")
    kernel, scale = layer.kernel, layer.get_weights()[layer.weight_names.index("kernel_scale")]
    # the kernel scale: per output unit, 127 / abs-max over the contracted axes
    act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, None: None}[activation]
    want = keras_int8_reference(equation, x, kernel, scale, layer.bias, act)
    np.testing.assert_allclose(layer(x), want, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(model.predict(x), want, rtol=2e-6, atol=2e-6)
    if bias_axes in (None,) or all(d not in _specs(equation)[0] for d in bias_axes):
        assert compile_plan(model, [shape], np.float32) is not None


@pytest.mark.parametrize("block", [128, 4, -1])
@pytest.mark.parametrize("equation,shape,out,bias_axes,activation", [e for e in EQUATIONS if e[4] is None])
def test_int4_matches_float64_reference(equation, shape, out, bias_axes, activation, block):
    model, layer, x = _model(equation, shape, out, bias_axes, activation)
    kernel = layer.get_weights()[0]
    model.quantize("int4", config={"class_name": "Int4QuantizationConfig", "config": {"block_size": block}})
    w = dict(zip(layer.weight_names, layer.get_weights()))
    assert layer.dtype_policy.name == f"int4/{block}_from_float32"
    want = keras_int4_reference(equation, x, w["kernel"], w["kernel_scale"], w.get("kernel_zero"),
                                kernel.shape, w.get("bias"), block)
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)
    if bias_axes is None or all(d not in _specs(equation)[0] for d in bias_axes):
        assert compile_plan(model, [shape], np.float32) is not None


def test_int8_kernel_scale_is_per_unit_abs_max():
    model, layer, _ = _model("abc,cde->abde", (4, 10), (4, 3, 5), "de", None)
    kernel = layer.get_weights()[0].astype(np.float32)
    layer.quantize("int8")
    scale = layer.get_weights()[2]
    want = np.float32(127) / (np.abs(kernel).max(axis=0) + np.float32(1e-7))
    assert scale.shape == (1, 1, 3, 5)
    np.testing.assert_array_equal(scale[0, 0], want)
    np.testing.assert_array_equal(layer.kernel, np.clip(np.round(kernel * want), -127, 127).astype(np.int8))


# ------------------------------------------------------------------ files both ways


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_round_trip(tmp_path, mode, ext):
    model, layer, x = _model("abc,cde->abde", (4, 10), (4, 3, 5), "de", "relu")
    model.quantize(mode)
    save_model(model, tmp_path / f"m.{ext}")
    again = load_model(tmp_path / f"m.{ext}")
    assert [a.dtype for a in again.get_weights()] == [a.dtype for a in model.get_weights()]
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("equation,shape,out,bias_axes", [("abc,cde->abde", (4, 10), (4, 3, 5), "de"),
                                                          ("abc,dc->abd", (3, 9), (3, 5), "b")])
def test_keras_reads_what_fastdense_writes(keras, tmp_path, mode, ext, equation, shape, out, bias_axes):
    model, layer, x = _model(equation, shape, out, bias_axes, "relu")
    model.quantize(mode)
    save_model(model, tmp_path / f"m.{ext}")
    theirs = keras.saving.load_model(tmp_path / f"m.{ext}", compile=False)
    assert theirs.layers[-1].dtype_policy.name == layer.dtype_policy.name
    got = keras.ops.convert_to_numpy(theirs(x))
    np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=2e-6)


# ------------------------------------------------------------------ bad input


def test_bad_weights_are_refused():
    model, layer, _ = _model("abc,cd->abd", (3, 20), (3, 8), "d", None)
    model.quantize("int8")
    bias, kernel, scale = layer.get_weights()
    with pytest.raises(ValueError, match="weight 'kernel' expects a real numeric array"):
        layer.set_weights([bias, kernel.astype(np.complex64), scale])
    with pytest.raises(ValueError, match=r"weight 'kernel' expects shape \(20, 8\)"):
        layer.set_weights([bias, kernel[:10], scale])
    with pytest.raises(ValueError, match=r"weight 'kernel_scale' expects shape \(1, 1, 8\)"):
        layer.set_weights([bias, kernel, scale.reshape(8)])


def test_refusals_name_what_was_expected():
    with pytest.raises(ValueError, match="LoRA"):
        EinsumDense("abc,cd->abd", output_shape=(3, 8), lora_rank=2)
    with pytest.raises(ValueError, match="float8|not supported"):
        EinsumDense("abc,cd->abd", output_shape=(3, 8), dtype="float8_from_float32")
    model, layer, _ = _model("abc,cd->abd", (3, 20), (3, 8), "d", None)
    with pytest.raises(ValueError, match="'int8' or 'int4'"):
        layer.quantize("int2")
    layer.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        layer.quantize("int8")
    # int4 with an activation quantizer on a kernel Keras flattens in another axis order
    act = {"module": "keras.quantizers", "class_name": "AbsMaxQuantizer",
           "config": {"value_range": [-127, 127], "epsilon": 1e-7, "output_dtype": "int8"}}
    model, layer, x = _model("abc,dc->abd", (3, 9), (3, 5), "d", None)
    layer.quantize("int4", config={"class_name": "Int4QuantizationConfig",
                                   "config": {"block_size": -1, "activation_quantizer": act}})
    with pytest.raises(ValueError, match="abc,dc->abd"):
        layer(x)


def test_subclass_is_not_quantized():
    class Mine(EinsumDense):
        pass

    layer = Mine("ab,bc->ac", output_shape=2)
    layer.build((None, 3))
    with pytest.raises(NotImplementedError):
        layer.quantize("int8")
    assert isinstance(Dense(2), Dense)   # Dense untouched by the import
