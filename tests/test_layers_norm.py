"""BatchNormalization, LayerNormalization, RMSNormalization, UnitNormalization, Normalization and
Rescaling against float64 NumPy formulas written here (independently of the layers)."""

from __future__ import annotations

import numpy as np
import pytest

from fastdense.layers import (
    BatchNormalization,
    Dense,
    LayerNormalization,
    Normalization,
    Rescaling,
    RMSNormalization,
    UnitNormalization,
)
from fastdense.models import Sequential, load_model

RNG = np.random.default_rng(13)
TOL = dict(rtol=2e-6, atol=2e-6)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ BatchNormalization


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_batch_normalization_uses_moving_statistics(center, scale, axis):
    x = rand(4, 3, 5)
    bn = BatchNormalization(axis=axis, center=center, scale=scale, epsilon=1e-3)
    bn.build(x.shape)
    c = x.shape[axis]
    gamma, beta = RNG.uniform(0.5, 2, c), RNG.standard_normal(c)
    mean, var = RNG.standard_normal(c), RNG.uniform(0.2, 3, c)
    weights = ([gamma] if scale else []) + ([beta] if center else []) + [mean, var]
    bn.set_weights(weights)
    assert bn.weight_names == ["gamma"] * scale + ["beta"] * center + ["moving_mean", "moving_variance"]
    assert [w.shape for w in bn.non_trainable_weights] == [(c,), (c,)]
    shape = [1, 1, 1]
    shape[axis] = c
    r = lambda v: np.reshape(v, shape)  # noqa: E731
    expected = (x.astype(np.float64) - r(mean)) / np.sqrt(r(var) + 1e-3)
    expected = expected * (r(gamma) if scale else 1) + (r(beta) if center else 0)
    got = bn(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, **TOL)


def test_batch_normalization_keras2_dialect_and_errors():
    bn = BatchNormalization.from_config({"name": "bn", "axis": [1], "fused": None, "virtual_batch_size": None,
                                         "adjustment": None, "momentum": 0.9})
    assert bn.axis == 1 and bn.momentum == 0.9
    with pytest.raises(ValueError, match="one axis"):
        BatchNormalization(axis=[1, 2])
    with pytest.raises(ValueError, match="renorm"):
        BatchNormalization(renorm=True)
    with pytest.raises(ValueError, match="epsilon"):
        BatchNormalization(epsilon=-1.0)
    bn = BatchNormalization(axis=3)
    with pytest.raises(ValueError, match="out of bounds"):
        bn(np.ones((2, 3)))
    with pytest.raises(NotImplementedError, match="inference only"):
        BatchNormalization()(np.ones((2, 3)), training=True)


def test_batch_normalization_affine_is_the_layer():
    bn = BatchNormalization()
    bn.build((None, 4))
    bn.set_weights([RNG.uniform(0.5, 2, 4), RNG.standard_normal(4), RNG.standard_normal(4), RNG.uniform(0.2, 3, 4)])
    affine = bn.affine()
    x = rand(3, 4).astype(np.float64)
    np.testing.assert_allclose(x * affine.scale + affine.offset, bn(x.astype(np.float32)), **TOL)
    assert bn.affine() is affine   # made once per set of weights
    bn.set_weights(bn.get_weights())
    assert bn.affine() is not affine


# ------------------------------------------------------------------ Layer / RMS / Unit


def layer_norm64(x, axes, gamma=None, beta=None, eps=1e-3, rms_scaling=False):
    x = x.astype(np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    out = (x if rms_scaling else x - mean) / np.sqrt(var + eps)
    return out * (1 if gamma is None else gamma) + (0 if beta is None else beta)


@pytest.mark.parametrize("axis", [-1, [-1], [1, 2], [-2, -1], 1])
def test_layer_normalization_axes(axis):
    x = rand(3, 4, 6) * 3 + 1
    ln = LayerNormalization(axis=axis)
    ln.build(x.shape)
    axes = tuple(sorted(a % 3 for a in (axis if isinstance(axis, list) else [axis])))
    wshape = tuple(x.shape[a] for a in axes)
    gamma, beta = RNG.uniform(0.5, 2, wshape), RNG.standard_normal(wshape)
    ln.set_weights([gamma, beta])
    bshape = [1, 1, 1]
    for a in axes:
        bshape[a] = x.shape[a]
    expected = layer_norm64(x, axes, gamma.reshape(bshape), beta.reshape(bshape))
    np.testing.assert_allclose(ln(x), expected, **TOL)
    assert ln.get_config()["axis"] == sorted(axis) if isinstance(axis, list) else [axis]


def test_layer_normalization_options():
    x = rand(5, 8)
    ln = LayerNormalization(center=False, scale=False, epsilon=1e-5)
    np.testing.assert_allclose(ln(x), layer_norm64(x, (1,), eps=1e-5), **TOL)
    assert ln.get_weights() == []
    rms = LayerNormalization(rms_scaling=True, gamma_initializer="ones")
    out = rms(x)
    assert rms.weight_names == ["gamma"]
    np.testing.assert_allclose(out, layer_norm64(x, (1,), rms_scaling=True), **TOL)
    with pytest.raises(TypeError, match="axis"):
        LayerNormalization(axis="last")


@pytest.mark.parametrize("axis", [-1, [1, 2]])
def test_rms_normalization(axis):
    x = rand(3, 4, 5)
    layer = RMSNormalization(axis=axis, epsilon=1e-6)
    layer.build(x.shape)
    axes = (2,) if axis == -1 else (1, 2)
    scale = RNG.uniform(0.5, 2, tuple(x.shape[a] for a in axes))
    layer.set_weights([scale])
    x64 = x.astype(np.float64)
    expected = x64 / np.sqrt((x64 ** 2).mean(axis=axes, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(layer(x), expected, **TOL)
    assert layer.weight_names == ["scale"]


def test_unit_normalization():
    x = rand(4, 7)
    x[0] = 0.0   # a zero row stays zero (the norm is floored at 1e-12, as in Keras)
    x64 = x.astype(np.float64)
    norms = np.sqrt((x64 ** 2).sum(-1, keepdims=True))
    expected = np.where(norms > 0, x64 / np.where(norms > 0, norms, 1), 0)
    np.testing.assert_allclose(UnitNormalization()(x), expected, **TOL)
    layer = UnitNormalization(axis=[1, 2])
    y = layer(rand(2, 3, 4))
    np.testing.assert_allclose((y.astype(np.float64) ** 2).sum(axis=(1, 2)), 1.0, rtol=1e-6)
    assert layer.get_config()["axis"] == [1, 2] and layer.built


# ------------------------------------------------------------------ Normalization and Rescaling


def test_normalization_with_given_statistics_and_invert():
    mean, var = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 0.0])
    x = rand(6, 3)
    std = np.maximum(np.sqrt(var), 1e-7)
    np.testing.assert_allclose(Normalization(mean=mean, variance=var)(x), (x - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Normalization(mean=mean, variance=var, invert=True)(x), mean + x * std, **TOL)
    layer = Normalization(mean=2.0, variance=9.0, axis=None)
    np.testing.assert_allclose(layer(x), (x - 2.0) / 3.0, **TOL)
    assert layer.get_weights() == [] and layer.get_config()["mean"] == 2.0
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        Normalization(mean=1.0)
    with pytest.raises(ValueError, match="same shape"):
        Normalization(mean=[1.0, 2.0], variance=[1.0])


def test_adapted_normalization_weights():
    layer = Normalization(axis=-1)
    layer.build((None, 3))
    assert layer.weight_names == ["mean", "variance", "count"]
    assert [w.dtype for w in layer.get_weights()] == [np.float32, np.float32, np.int32]
    assert layer.get_weights()[2].shape == ()
    mean, var = np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 9.0])
    layer.set_weights([mean, var, np.array(10)])
    x = rand(4, 3)
    np.testing.assert_allclose(layer(x), (x - mean) / np.sqrt(var), **TOL)
    assert layer.trainable_weights == []
    per_step = Normalization(axis=(1, 2))   # statistics per (step, feature)
    per_step.build((None, 2, 3))
    m, v = RNG.standard_normal((2, 3)), RNG.uniform(0.5, 2, (2, 3))
    per_step.set_weights([m, v, np.array(1)])
    x3 = rand(5, 2, 3)
    np.testing.assert_allclose(per_step(x3), (x3 - m) / np.sqrt(v), rtol=1e-5, atol=1e-5)


def test_rescaling():
    x = rand(3, 4)
    np.testing.assert_allclose(Rescaling(0.5, offset=-1.0)(x), x * 0.5 - 1.0, **TOL)
    scale = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    layer = Rescaling(scale)
    np.testing.assert_allclose(layer(x), x * scale, **TOL)
    config = layer.get_config()
    assert config["scale"]["class_name"] == "__numpy__"
    again = Rescaling.from_config(config)
    np.testing.assert_array_equal(again.scale, scale)
    with pytest.raises(ValueError, match="scale"):
        Rescaling("big")


def test_a_model_of_them_saves_and_reloads(tmp_path):
    model = Sequential([
        Normalization(mean=[0.5] * 6, variance=[2.0] * 6, input_shape=(6,)),
        Dense(8), BatchNormalization(), LayerNormalization(), Rescaling(2.0), RMSNormalization(),
        UnitNormalization(), Dense(3),
    ])
    bn = model.layers[2]
    bn.set_weights([RNG.uniform(0.5, 2, 8), RNG.standard_normal(8), RNG.standard_normal(8), RNG.uniform(0.2, 3, 8)])
    x = rand(5, 6)
    y = model.predict(x)
    for ext in (".keras", ".h5"):
        model.save(tmp_path / f"m{ext}")
        again = load_model(tmp_path / f"m{ext}")
        np.testing.assert_array_equal(again.predict(x), y)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    for layer in model.layers:   # "name (Class)", cut to the summary's first column
        assert f"{layer.name} ({type(layer).__name__})"[:28] in text
    assert "Non-trainable params: 16" in text   # BatchNormalization's moving statistics
