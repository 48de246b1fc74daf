"""Layer/RMS/UnitNormalization after a Dense, fused into the Dense's epilogue in compiled plans
(csrc/fd_plan.c ``fused_norm``, csrc/fd_norm.c): which plans fuse, the float32 error bound
against float64 NumPy with Keras's semantics, and that a row's bits depend neither on the batch
nor on the thread split, nor on whether the normalization was fused."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

import fastdense
from fastdense import _kernels
from fastdense.layers import Activation, Dense, LayerNormalization, ReLU, RMSNormalization, UnitNormalization
from fastdense.models import Model, Sequential
from fastdense.models import plan as plan_module
from fastdense.models.plan import compile_plan

RNG = np.random.default_rng(13)
U32 = 2.0**-24


class Reference(NamedTuple):
    """Keras's computation of a normalization in float64 on one batch of rows."""

    scaled: np.ndarray             # normalized * gamma (before beta)
    want: np.ndarray               # the result
    inv: np.ndarray                # each row's 1 / sqrt(...) factor
    gamma: np.ndarray | float      # the scale applied after it (1.0 without)


def reference(y, layer):
    y = np.asarray(y, np.float64)
    # (weights over several axes flatten like the rows: the trailing axes in memory order)
    named = dict(zip(layer.weight_names, (np.asarray(v, np.float64).reshape(-1) for v in layer.get_weights())))
    if isinstance(layer, UnitNormalization):
        with np.errstate(divide="ignore"):
            inv = np.minimum(1.0 / np.sqrt((y * y).sum(-1, keepdims=True)), 1e12)
        return Reference(y * inv, y * inv, inv, 1.0)
    if isinstance(layer, RMSNormalization):
        inv = 1.0 / np.sqrt((y * y).mean(-1, keepdims=True) + layer.epsilon)
        return Reference(y * inv * named["scale"], y * inv * named["scale"], inv, named["scale"])
    mean = y.mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(((y - mean) ** 2).mean(-1, keepdims=True) + layer.epsilon)
    gamma = named.get("gamma", 1.0)
    scaled = (y if layer.rms_scaling else y - mean) * inv * gamma
    return Reference(scaled, scaled + named.get("beta", 0.0), inv, gamma)


def within_float32_bound(got, ref):
    """csrc/fd_norm.c's bound: |y - y64| <= 2**-24 (6 |xhat * gamma| + |y64|)."""
    err = np.abs(got - ref.want)
    bound = U32 * (6 * np.abs(ref.scaled) + np.abs(ref.want)) + 1e-37
    return bool((err <= bound).all()), float((err / bound).max())


def norm_layers(n):
    """Every form a plan fuses, with random weights."""
    out = []
    for kwargs in ({}, {"center": False}, {"scale": False}, {"center": False, "scale": False},
                   {"rms_scaling": True}, {"epsilon": 1e-6}):
        out.append(LayerNormalization(**kwargs))
    out += [RMSNormalization(), UnitNormalization()]
    for layer in out:
        layer.build((None, n))
        layer.set_weights([RNG.uniform(0.5, 2, w.shape) * RNG.choice([-1, 1], w.shape) for w in layer.get_weights()])
    return out


def plan_steps(model, shape, dtype, monkeypatch):
    """The PlanSteps of the model's compiled plan."""
    seen = []
    original = plan_module._kernel_plan

    def spy(steps, *args):
        seen.extend(steps)
        return original(steps, *args)

    monkeypatch.setattr(plan_module, "_kernel_plan", spy)
    assert compile_plan(model, [shape], dtype) is not None
    return seen


def test_a_normalization_after_a_dense_is_in_place_right_after_it(monkeypatch):
    model = Sequential([Dense(24, activation="relu", input_shape=(8,)), LayerNormalization(), ReLU(),
                        Dense(8), RMSNormalization(), Activation("gelu"), UnitNormalization()])
    steps = plan_steps(model, (8,), np.float32, monkeypatch)
    kinds = [s.kind for s in steps]
    dense, norm = _kernels.FD_STEP_DENSE, _kernels.FD_STEP_NORM
    assert kinds == [dense, norm, dense, norm, norm]
    for d, nrm in ((steps[0], steps[1]), (steps[2], steps[3])):
        assert nrm.srcs == (d.dst,) and nrm.dst == d.dst        # the form fd_plan.c fuses
    assert steps[1].act.code == _kernels.FD_ACT_RELU and steps[3].act.code == _kernels.FD_ACT_GELU
    # a norm after a norm: a step of its own, into a buffer of its own
    assert steps[4].act is None and steps[4].srcs == (steps[3].dst,) and steps[4].dst != steps[3].dst


@pytest.mark.parametrize("units", [1, 7, 64, 300])
def test_fused_float32_within_the_documented_bound(units):
    """|y - y64| <= 2**-24 (6 |xhat * gamma| + |y64|) (csrc/fd_norm.c), y64 from the Dense's own
    float32 output in float64 NumPy."""
    x = (RNG.standard_normal((41, 12)) * 3 + 5).astype(np.float32)
    dense = Dense(units, input_shape=(12,))
    dense.build((None, 12))
    dense.set_weights([RNG.standard_normal((12, units)).astype(np.float32),
                       (RNG.standard_normal(units) * 20).astype(np.float32)])   # rows far from zero mean
    y = Sequential([dense]).predict(x)
    for layer in norm_layers(units):
        got = Sequential([dense, layer]).predict(x)
        ref = reference(y, layer)
        ok, worst = within_float32_bound(got, ref)
        assert ok, (layer.get_config(), worst)
        # and not loose: most outputs are within a few u of their own size
        assert np.median(np.abs(got - ref.want) / (np.abs(ref.want) + 1e-30)) < 4 * U32


def test_fused_float64_plans():
    x = RNG.standard_normal((9, 10))
    dense = Dense(33, input_shape=(10,), dtype="float64")
    dense.build((None, 10))
    y = Sequential([dense]).predict(x)
    assert y.dtype == np.float64
    for layer in norm_layers(33):
        layer = type(layer).from_config({**layer.get_config(), "dtype": "float64"})
        layer.build((None, 33))
        layer.set_weights([RNG.uniform(0.5, 2, w.shape) for w in layer.get_weights()])
        got = Sequential([dense, layer]).predict(x)
        ref = reference(y, layer)
        # float64 rows: x - mean rounds like everything else (fd_norm.h), so the bound has a term
        # in the row's size beside those of the float32 bound; 33 values a row
        size = np.abs(y).max(-1, keepdims=True) * ref.inv * np.abs(ref.gamma)
        bound = 4 * 33 * 2.0**-53 * (np.abs(ref.scaled) + np.abs(ref.want) + size)
        np.testing.assert_array_less(np.abs(got - ref.want), bound + 1e-300)


def test_a_rows_bits_do_not_depend_on_batch_threads_or_fusing():
    """Every row's result is the same bits whatever the batch, the thread count (so the split of
    rows and columns over the pool) and whether the normalization ran fused or as its own step
    (float32: fastdense's own GEMM gives a row the same bits in any batch; float64 GEMMs are the
    BLAS's, which does not promise that)."""
    units = 260
    x = RNG.standard_normal((300, 48)).astype(np.float32)
    dense = Dense(units, input_shape=(48,))
    ln = LayerNormalization()
    ln.build((None, units))
    ln.set_weights([RNG.uniform(0.5, 2, units), RNG.standard_normal(units)])
    fused = Sequential([dense, ln, ReLU()])
    inp = fastdense.Input((48,))
    h = dense(inp)
    unfused = Model(inp, [ReLU()(ln(h)), h])      # the Dense's rows are also an output: a NORM step
    alone = Sequential([fastdense.Input((units,)), ln, ReLU()])
    alone64 = Sequential([fastdense.Input((units,), dtype="float64"),
                          LayerNormalization.from_config({**ln.get_config(), "dtype": "float64"})])
    alone64.layers[0].set_weights(ln.get_weights())
    threads = fastdense.get_num_threads()
    try:
        want = want64 = None
        for n_threads in (1, 2, 3):
            fastdense.set_num_threads(n_threads)
            full = fused.predict(x)
            if want is None:
                want = full
            np.testing.assert_array_equal(full, want)
            got, y = unfused.predict(x)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(alone.predict(y), want)
            y64 = y.astype(np.float64)
            if want64 is None:
                want64 = alone64.predict(y64)
            np.testing.assert_array_equal(alone64.predict(y64), want64)
            for lo, hi in ((0, 1), (5, 6), (3, 40), (17, 49), (100, 300)):
                np.testing.assert_array_equal(fused.predict(x[lo:hi]), want[lo:hi])
                np.testing.assert_array_equal(alone64.predict(y64[lo:hi]), want64[lo:hi])
    finally:
        fastdense.set_num_threads(threads)


def test_a_normalization_not_after_a_dense_splits_rows_and_matches():
    """Input -> LayerNormalization -> Dense: the NORM step alone (rows split over the pool for a
    large block), the same bits as the fused form on the same values."""
    x = RNG.standard_normal((512, 200)).astype(np.float32) * 4
    ln = LayerNormalization()
    ln.build((None, 200))
    ln.set_weights([RNG.uniform(0.5, 2, 200), RNG.standard_normal(200)])
    first = Sequential([fastdense.Input((200,)), ln])
    got = first.predict(x)
    assert within_float32_bound(got, reference(x, ln))[0]
    identity = Dense(200, use_bias=False, kernel_initializer="identity", input_shape=(200,))
    np.testing.assert_array_equal(Sequential([identity, ln]).predict(x), got)


def test_keras_edge_cases_match_layer_by_layer():
    """Constant rows (inv = 1 / sqrt(eps)), eps = 0 (a constant row gives NaN, as Keras), rows
    so nearly constant that the float64 output pass takes over, zeros under UnitNormalization."""
    dense = Dense(4, use_bias=False, kernel_initializer="identity", input_shape=(4,))
    x = np.array([[2, 2, 2, 2], [1, 1 + 2.0**-23, 1, 1], [0, 0, 0, 0], [1e30, -1e30, 3, 0]], np.float32)
    for layer in (LayerNormalization(), LayerNormalization(epsilon=0.0), RMSNormalization(epsilon=0.0),
                  UnitNormalization()):
        model = Sequential([dense, layer])
        got = model.predict(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = model._run_layers([x])[0]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=4 * U32, atol=0)


def test_quantized_dense_then_normalization_in_place():
    """After an int8 Dense the normalization is a step of its own, in place on the Dense's rows."""
    x = RNG.standard_normal((64, 32)).astype(np.float32)
    dense = Dense(96, input_shape=(32,))
    model = Sequential([dense, LayerNormalization()])
    model.predict(x)
    dense.quantize("int8")
    assert compile_plan(model, [(32,)], np.float32) is not None
    inp = fastdense.Input((32,))
    h = dense(inp)
    unfused = Model(inp, [model.layers[1](h), h])
    got = model.predict(x)
    np.testing.assert_array_equal(got, unfused.predict(x)[0])
    assert within_float32_bound(got, reference(unfused.predict(x)[1], model.layers[1]))[0]


@pytest.mark.parametrize("make", [
    lambda: LayerNormalization(axis=[1, 2]),
    lambda: LayerNormalization(axis=[-2, -1], center=False),
    lambda: RMSNormalization(axis=[1, 2]),
    lambda: UnitNormalization(axis=[-1, -2]),
])
def test_normalizing_the_last_axes_together_is_a_plan_step(make, monkeypatch):
    """axis=[1, 2] on (rows, cols) samples: one row of rows * cols values (a NORM step after
    the Dense, not fused: a sample's rows could be in two threads' blocks), against Keras's
    float64 computation over both axes."""
    layer = make()
    model = Sequential([Dense(6, input_shape=(5, 3)), layer])
    x = RNG.standard_normal((11, 5, 3)).astype(np.float32)
    y = Sequential([model.layers[0]]).predict(x)
    layer.set_weights([RNG.uniform(0.5, 2, w.shape) for w in layer.get_weights()])
    steps = plan_steps(model, (5, 3), np.float32, monkeypatch)
    assert [(s.kind, s.rows, s.n) for s in steps][1] == (_kernels.FD_STEP_NORM, 1, 30)
    assert within_float32_bound(model.predict(x).reshape(11, 30), reference(y.reshape(11, 30), layer))[0]


def test_normalizing_other_axes_runs_layer_by_layer():
    layer = LayerNormalization(axis=1)
    model = Sequential([Dense(6, input_shape=(5, 3)), layer])
    x = RNG.standard_normal((4, 5, 3)).astype(np.float32)
    model.predict(x)
    assert compile_plan(model, [(5, 3)], np.float32) is None
    np.testing.assert_allclose(model.predict(x), model._run_layers([x])[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 200])
def test_glu_and_softmax_dense_then_normalization(batch):
    """A Dense whose activation halves its rows (glu) or needs them whole (softmax), then a fused
    normalization over its output columns: the same bits as the normalization run on its own."""
    x = RNG.standard_normal((batch, 40)).astype(np.float32)
    for activation, units in (("glu", 512), ("softmax", 300)):
        dense = Dense(units, activation=activation, input_shape=(40,))
        ln = LayerNormalization()
        fused = Sequential([dense, ln])
        got = fused.predict(x)
        y = Sequential([dense]).predict(x)
        np.testing.assert_array_equal(got, Sequential([fastdense.Input((y.shape[1],)), ln]).predict(y))
        assert within_float32_bound(got, reference(y, ln))[0]
