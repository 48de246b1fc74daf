"""EinsumDense (the Dense-on-axes equations, against np.einsum in float64) and Dense with LoRA."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import fastdense
from fastdense.layers import Dense, EinsumDense
from fastdense.models import Model, Sequential, load_model

RNG = np.random.default_rng(11)


CASES = [
    # equation, output_shape, bias_axes, input shape (with batch)
    ("ab,bc->ac", 4, "c", (5, 3)),
    ("abc,cd->abd", (None, 4), "d", (2, 7, 3)),
    ("abc,cd->abd", (7, 4), None, (2, 7, 3)),
    ("...b,bc->...c", 4, "c", (2, 3, 5, 6)),
    ("abc,cde->abde", (None, 2, 3), "de", (2, 5, 4)),     # a multi-head projection
    ("abc,cde->abde", (None, 2, 3), "e", (2, 5, 4)),
    ("abcd,cde->abe", (None, 6), "e", (2, 3, 4, 5)),      # heads merged back
    ("abc,dc->abd", (None, 4), "d", (2, 3, 5)),           # kernel stored (out, in)
    ("abc,cd->abd", (3, 4), "bd", (2, 3, 5)),             # a bias along a free axis too
]


@pytest.mark.parametrize("equation,output_shape,bias_axes,shape", CASES)
@pytest.mark.parametrize("activation", [None, "relu", "softmax"])
def test_equations_match_einsum(equation, output_shape, bias_axes, shape, activation):
    layer = EinsumDense(equation, output_shape, activation=activation, bias_axes=bias_axes)
    x = RNG.standard_normal(shape).astype(np.float32)
    layer.build(x.shape)
    weights = [RNG.standard_normal(w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    expected = np.einsum(equation, x.astype(np.float64), weights[0])
    if bias_axes:
        expected = expected + weights[1]
    if activation == "relu":
        expected = np.maximum(expected, 0)
    elif activation == "softmax":
        e = np.exp(expected - expected.max(-1, keepdims=True))
        expected = e / e.sum(-1, keepdims=True)
    got = layer(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_kernel_and_bias_shapes_follow_keras():
    layer = EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de")
    layer.build((None, 5, 4))
    assert [w.shape for w in layer.get_weights()] == [(4, 2, 3), (2, 3)]
    assert layer.compute_output_shape((None, 5, 4)) == (None, None, 2, 3)
    layer = EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d")
    assert layer.compute_output_shape((None, 7, 3)) == (None, None, 4)  # as Keras reports it


@pytest.mark.parametrize("equation,output_shape,why", [
    ("abc,bcd->abd", (3, 4), "input, the kernel and the output"),    # b is a batch axis of the kernel
    ("abc,cd->adb", (4, 3), "free axes followed by the new axes"),   # transposed output
    ("abc,bd->acd", (5, 4), "contracted axes are not the input's last axes"),
    ("ab...,bc->ac...", (4,), "ellipsis"),
])
def test_other_equations_are_refused_by_name(equation, output_shape, why):
    layer = EinsumDense(equation, output_shape=output_shape)
    with pytest.raises(ValueError, match=why) as info:
        layer.build((None, 3, 5))
    assert equation in str(info.value)


def test_invalid_equation_and_bias():
    with pytest.raises(ValueError, match="Invalid einsum equation"):
        EinsumDense("ab->b", 3).build((None, 3))
    with pytest.raises(ValueError, match="Bias dimension 'z'"):
        EinsumDense("ab,bc->ac", 3, bias_axes="z").build((None, 3))


def test_einsum_model_saves_and_reloads(tmp_path):
    inputs = fastdense.Input((7, 10))
    hidden = EinsumDense("abc,cde->abde", (None, 2, 4), bias_axes="de", activation="gelu")(inputs)
    out = EinsumDense("abcd,cde->abe", (None, 3), bias_axes="e")(hidden)
    model = Model(inputs, out)
    for layer in model.layers[1:]:
        layer.set_weights([RNG.standard_normal(w.shape) for w in layer.get_weights()])
    x = RNG.standard_normal((4, 7, 10)).astype(np.float32)
    y = model.predict(x)
    for ext in (".keras", ".h5"):
        model.save(tmp_path / f"m{ext}")
        np.testing.assert_array_equal(load_model(tmp_path / f"m{ext}").predict(x), y)


# ------------------------------------------------------------------------------ LoRA


def lora_dense(rank=3, alpha=6.0, use_bias=True):
    # enable_lora on a built layer keeps its lora_alpha (Dense(lora_rank=...) builds with the rank)
    layer = Dense(5, activation="relu", use_bias=use_bias)
    layer.build((None, 4))
    layer.enable_lora(rank, lora_alpha=alpha)
    weights = [RNG.standard_normal(w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    return layer, weights


@pytest.mark.parametrize("use_bias", [True, False])
def test_lora_serves_the_merged_kernel(use_bias):
    layer, weights = lora_dense(use_bias=use_bias)
    assert layer.weight_names == ["kernel"] + ["bias"] * use_bias + ["lora_kernel_a", "lora_kernel_b"]
    assert [w.shape for w in weights] == [(4, 5)] + [(5,)] * use_bias + [(4, 3), (3, 5)]
    kernel, a, b = weights[0], weights[-2], weights[-1]
    merged = kernel + (6.0 / 3) * a @ b
    x = RNG.standard_normal((7, 4)).astype(np.float32)
    expected = np.maximum(x.astype(np.float64) @ merged + (weights[1] if use_bias else 0), 0)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.kernel, merged, rtol=1e-6, atol=1e-6)
    assert [w.shape for w in layer.trainable_weights] == [(5,)] * use_bias + [(4, 3), (3, 5)]
    # a second set of weights is merged anew
    layer.set_weights([w * 2 for w in weights])
    np.testing.assert_allclose(layer.kernel, 2 * kernel + (6.0 / 3) * 4 * a @ b, rtol=1e-6, atol=1e-6)


def test_a_lora_dense_builds_with_its_rank_as_alpha():
    """Keras 3.15.1's Dense.build calls enable_lora(rank): a Dense given lora_rank=2 and
    lora_alpha=8 computes (and reports) alpha 2, so a Keras .h5 file saying alpha 8 is served as
    Keras serves it."""
    layer = Dense(5, lora_rank=2, lora_alpha=8)
    assert layer.get_config()["lora_alpha"] == 8          # before build: as given
    layer.build((None, 4))
    assert layer.lora_alpha == 2 and layer.get_config()["lora_alpha"] == 2
    kernel, bias, a, b = (RNG.standard_normal(w.shape) for w in layer.get_weights())
    layer.set_weights([kernel, bias, a, b])
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    expected = x.astype(np.float64) @ (kernel + a @ b) + bias
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_lora_config_and_errors():
    layer = Dense(3, lora_rank=2)
    assert layer.get_config()["lora_rank"] == 2 and layer.get_config()["lora_alpha"] == 2
    assert "lora_rank" not in Dense(3).get_config()
    with pytest.raises(ValueError, match="kernel constraints"):
        Dense(3, lora_rank=2, kernel_constraint="non_neg").build((None, 4))
    plain = Dense(3)
    with pytest.raises(ValueError, match="isn't yet built"):
        plain.enable_lora(2)
    plain.build((None, 4))
    plain.enable_lora(2, lora_alpha=8)
    assert plain.lora_enabled and plain.get_config()["lora_alpha"] == 8
    with pytest.raises(ValueError, match="already enabled"):
        plain.enable_lora(2)


def test_lora_files_keep_keras_variables(tmp_path):
    layer, weights = lora_dense()
    model = Sequential([layer], name="m")
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    y = model.predict(x)
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:   # trainable first: Keras's legacy order
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in f["model_weights"][layer.name].attrs["weight_names"]]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["bias", "lora_kernel_a", "lora_kernel_b", "kernel"]
    again = load_model(tmp_path / "m.h5")
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # built from its config, the Dense takes its rank as alpha, as Keras 3.15.1 does: an .h5 keeps
    # the variables, not the alpha enable_lora was given (6 here)
    assert again.layers[0].lora_alpha == 3
    model.save(tmp_path / "m.keras")   # Keras stores the merged kernel and the bias only
    again = load_model(tmp_path / "m.keras")
    k, bias, a, b = again.get_weights()
    np.testing.assert_allclose(k, weights[0] + 2.0 * weights[2] @ weights[3], rtol=1e-6, atol=1e-6)
    assert not a.any() and not b.any()
    np.testing.assert_allclose(again.predict(x), y, rtol=1e-6, atol=1e-6)
