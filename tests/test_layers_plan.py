"""The issue-13 layers inside compiled model plans: which fixtures compile, and plans agree with
running the same model layer by layer (folded and fused steps change results by rounding only)."""

from __future__ import annotations

import numpy as np
import pytest

import fastdense

from fastdense.layers import (
    BatchNormalization,
    Dense,
    Dropout,
    GaussianNoise,
    LeakyReLU,
    Normalization,
    ReLU,
    Rescaling,
    Softmax,
)
from fastdense.models import Model, Sequential, load_model
from fastdense.models.plan import compile_plan

from _helpers import FIXTURES, INDEX

RNG = np.random.default_rng(23)
# fixtures whose every layer runs inside the plan
COMPILED = ["einsum_seq", "lora_dense", "noise_layers", "tab_bn", "tab_preproc"]


def layer_by_layer(model, xs):
    return model._run_layers(xs)[0]


@pytest.mark.skipif(not INDEX, reason="no Keras fixtures")
@pytest.mark.parametrize("name", COMPILED)
def test_fixture_compiles_and_matches_layer_by_layer(name):
    model = load_model(FIXTURES / f"{name}.keras")
    data = np.load(FIXTURES / f"{name}.io.npz")
    xs = [data[f"x{i}"] for i in range(INDEX[name]["inputs"])]
    assert compile_plan(model, [x.shape[1:] for x in xs], np.float32) is not None
    planned = model.predict(xs if len(xs) > 1 else xs[0])
    np.testing.assert_allclose(planned, layer_by_layer(model, xs), rtol=2e-6, atol=2e-6)


def random_bn(width):
    bn = BatchNormalization()
    bn.build((None, width))
    bn.set_weights([RNG.uniform(0.5, 2, width), RNG.standard_normal(width), RNG.standard_normal(width),
                    RNG.uniform(0.2, 3, width)])
    return bn


@pytest.mark.parametrize("layers", [
    lambda: [Dense(16, input_shape=(8,)), random_bn(16), ReLU()],                      # folded after, fused
    lambda: [Normalization(mean=RNG.standard_normal(8), variance=RNG.uniform(0.5, 2, 8), input_shape=(8,)),
             Dense(16, activation="tanh"), Rescaling(0.5, offset=0.1), Dense(4)],       # folded before
    lambda: [Dense(16, input_shape=(8,)), GaussianNoise(0.1), LeakyReLU(0.2), Dropout(0.5), Dense(3), Softmax()],
    lambda: [Dense(16, activation="relu", input_shape=(8,)), random_bn(16), Dense(4)],  # BN after relu: before
])
def test_stacks_compile_and_match_layer_by_layer(layers):
    model = Sequential(layers())
    x = RNG.standard_normal((37, 8)).astype(np.float32)
    assert compile_plan(model, [(8,)], np.float32) is not None
    np.testing.assert_allclose(model.predict(x), layer_by_layer(model, [x]), rtol=2e-5, atol=2e-5)


def test_a_dense_feeding_two_layers_is_not_folded():
    dense = Dense(6)
    x_in = fastdense.Input((4,))
    h = dense(x_in)
    a = random_bn(6)(h)
    model = Model(x_in, [a, h])
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    got = model.predict(x)
    want = model._run_layers([x])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(got[1], x.astype(np.float64) @ dense.kernel + dense.bias, rtol=1e-5, atol=1e-5)


def test_affine_maps_travel_through_a_concatenation():
    from fastdense.layers import Concatenate, Embedding, Flatten

    ids = fastdense.Input((3,), dtype="int32")
    num = fastdense.Input((4,))
    normed = Normalization(mean=RNG.standard_normal(4), variance=RNG.uniform(0.5, 2, 4))(num)
    joined = Concatenate()([Flatten()(Embedding(50, 2)(ids)), normed])
    out = Dense(3)(ReLU()(random_bn(5)(Dense(5, use_bias=False)(joined))))
    model = Model([ids, num], [out, normed])   # normed is also an output: applied there as a step
    xs = [RNG.integers(0, 50, (9, 3)).astype(np.int64), RNG.standard_normal((9, 4)).astype(np.float32)]
    assert compile_plan(model, [(3,), (4,)], np.float32) is not None
    for got, want in zip(model.predict(xs), model._run_layers(xs)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    bad = xs[0].copy()
    bad[4, 1] = 50
    with pytest.raises(ValueError, match=r"expects ids in \[0, 50\), got 50 at index \(4, 1\)"):
        model.predict([bad, xs[1]])
