"""Random stacks of Dense and the issue-13 layers against a float64 NumPy reference written here,
independently of the layers and of the compiled plan (which folds and fuses some of them)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdense.layers import (
    ELU,
    BatchNormalization,
    Dense,
    Dropout,
    GaussianNoise,
    Identity,
    LayerNormalization,
    LeakyReLU,
    Normalization,
    PReLU,
    ReLU,
    Rescaling,
    RMSNormalization,
    Softmax,
    UnitNormalization,
)
from fastdense.models import Sequential

KINDS = ["dense", "bn", "ln", "rms", "unit", "norm", "rescale", "relu", "leaky", "prelu", "elu", "softmax",
         "noise", "identity", "dropout"]


def reference(kind, layer, x):
    """One layer in float64, from its weights and arguments alone."""
    w = [v.astype(np.float64) for v in layer.get_weights()]
    if kind == "dense":
        y = x @ w[0] + w[1]
        return {"linear": y, "relu": np.maximum(y, 0), "tanh": np.tanh(y)}[layer.get_config()["activation"]]
    if kind == "bn":
        gamma, beta, mean, var = w
        return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta
    if kind == "ln":
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + layer.epsilon) * w[0] + w[1]
    if kind == "rms":
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + layer.epsilon) * w[0]
    if kind == "unit":
        return x / np.maximum(np.sqrt((x ** 2).sum(-1, keepdims=True)), 1e-12)
    if kind == "norm":
        return (x - layer.input_mean) / np.maximum(np.sqrt(layer.input_variance), 1e-7)
    if kind == "rescale":
        return x * layer.scale + layer.offset
    if kind == "relu":
        c = layer.get_config()
        y = np.where(x >= c["threshold"], x, c["negative_slope"] * (x - c["threshold"]))
        return y if c["max_value"] is None else np.minimum(y, c["max_value"])
    if kind == "leaky":
        return np.where(x >= 0, x, layer.negative_slope * x)
    if kind == "prelu":
        return np.where(x >= 0, x, w[0] * x)
    if kind == "elu":
        return np.where(x > 0, x, layer.alpha * np.expm1(np.minimum(x, 0)))
    if kind == "softmax":
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return x   # noise, identity, dropout


@st.composite
def stacks(draw):
    width = draw(st.integers(1, 9))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
    seed = draw(st.integers(0, 2**31 - 1))
    return width, kinds, seed


def build(width, kinds, seed):
    rng = np.random.default_rng(seed)
    layers, current = [], width
    for kind in kinds:
        if kind == "dense":
            current = int(rng.integers(1, 10))
            layer = Dense(current, activation=str(rng.choice(["linear", "relu", "tanh"])))
        elif kind == "bn":
            layer = BatchNormalization(epsilon=float(rng.choice([1e-3, 1e-5])))
        elif kind == "ln":
            layer = LayerNormalization(epsilon=float(rng.choice([1e-3, 1e-6])))
        elif kind == "rms":
            layer = RMSNormalization(epsilon=1e-6)
        elif kind == "unit":
            layer = UnitNormalization()
        elif kind == "norm":
            layer = Normalization(mean=rng.standard_normal(current), variance=rng.uniform(0.1, 4, current))
        elif kind == "rescale":
            layer = Rescaling(float(rng.uniform(-2, 2)), offset=float(rng.uniform(-1, 1)))
        elif kind == "relu":
            layer = ReLU(max_value=float(rng.choice([1.0, 6.0])) if rng.random() < 0.5 else None,
                         negative_slope=float(rng.choice([0.0, 0.1])), threshold=float(rng.choice([0.0, 0.3])))
        elif kind == "leaky":
            layer = LeakyReLU(float(rng.uniform(0, 0.5)))
        elif kind == "prelu":
            layer = PReLU()
        elif kind == "elu":
            layer = ELU(float(rng.uniform(0.1, 2)))
        elif kind == "softmax":
            layer = Softmax()
        elif kind == "noise":
            layer = GaussianNoise(0.5)
        elif kind == "identity":
            layer = Identity()
        else:
            layer = Dropout(0.5)
        layers.append(layer)
    model = Sequential(layers)
    model.build((None, width))
    for layer, kind in zip(model.layers, kinds):
        weights = [rng.standard_normal(v.shape) for v in layer.get_weights()]
        if kind == "bn":
            weights[3] = rng.uniform(0.2, 3, weights[3].shape)
        layer.set_weights(weights)
    return model, rng.standard_normal((int(rng.integers(1, 8)), width)).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(stacks())
def test_random_stacks_match_the_float64_reference(case):
    width, kinds, seed = case
    model, x = build(width, kinds, seed)
    expected = x.astype(np.float64)
    for layer, kind in zip(model.layers, kinds):
        expected = reference(kind, layer, expected)
    scale = max(1.0, float(np.abs(expected).max()))
    # the compiled plan (folds and fuses) and the layers one by one
    for got in (model.predict(x), model._run_layers([x])[0]):
        assert got.shape == expected.shape and got.dtype == np.float32
        # float32 rounding through up to six layers (a normalization can amplify a small
        # difference of nearly equal values: the bound is relative to the output's size)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("kinds", [["dense", "bn", "relu"], ["norm", "dense", "ln"], ["dense", "prelu", "softmax"]])
def test_rows_do_not_depend_on_the_batch(kinds):
    model, _ = build(6, kinds, 3)
    x = np.random.default_rng(1).standard_normal((40, 6)).astype(np.float32)
    full = model.predict(x)
    np.testing.assert_array_equal(np.concatenate([model.predict(x[i:i + 1]) for i in range(40)]), full)
