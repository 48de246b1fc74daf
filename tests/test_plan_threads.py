"""The plan's thread policy for small batches (csrc/fd_plan.c ``split_step``) and the pool it
uses (csrc/fd_pool.c): the same bits whatever runs where, and the policy's own choices."""

import numpy as np
import pytest

import fastdense
from fastdense import _kernels
from fastdense.layers import Dense
from fastdense.models import Sequential
from _helpers import run_in_threads

POLICIES = (-1, 0, 1)   # by cost (default), never split, split what the kernels would split


@pytest.fixture
def restore():
    yield
    _kernels.set_plan_split_policy(-1)
    fastdense.set_num_threads(None)


def mlp(units, mode=None, seed=0):
    """A Dense stack on float32 inputs of units[0] features, quantized to `mode` if given."""
    rng = np.random.default_rng(seed)
    model = Sequential([Dense(n, activation=act) for n, act in
                        zip(units[1:], ["relu"] * (len(units) - 2) + ["softmax"])])
    model.build((None, units[0]))
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * (0.05 if w.ndim == 2 else 0.1)
                       for w in model.get_weights()])
    if mode:
        model.quantize(mode)
    return model


def float64_reference(model, x):
    """The float model in float64 NumPy (softmax last)."""
    h = x.astype(np.float64)
    weights = model.get_weights()
    for i in range(0, len(weights), 2):
        h = h @ weights[i].astype(np.float64) + weights[i + 1]
        if i + 2 < len(weights):
            h = np.maximum(h, 0)
    h = np.exp(h - h.max(axis=1, keepdims=True))
    return h / h.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("mode", [None, "int8", "int4"])
def test_every_policy_and_thread_count_gives_the_same_bits(mode, restore):
    # 784-512-512-10: at batch 1 the f32 steps split by cost, the int8 ones run on the caller
    model = mlp((784, 512, 512, 10), mode)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((m, 784)).astype(np.float32) for m in (1, 2, 3, 5, 11)]
    results = {}
    for threads in (1, 2, 3):
        fastdense.set_num_threads(threads)
        for policy in POLICIES:
            _kernels.set_plan_split_policy(policy)
            assert _kernels.plan_split_policy() == policy
            for x in xs:
                for _ in range(3):   # a pool that runs the same columns on the same thread again
                    results.setdefault(len(x), []).append(((threads, policy), model.predict(x), model(x)))
    for m, runs in results.items():
        first = runs[0][1]
        for key, predicted, called in runs:
            np.testing.assert_array_equal(predicted, first, err_msg=f"batch {m}, (threads, policy) {key}")
            np.testing.assert_array_equal(called, first, err_msg=f"batch {m}, (threads, policy) {key}")
    if mode is None:   # and they are the right numbers
        for x in xs:
            np.testing.assert_allclose(results[len(x)][0][1], float64_reference(model, x), rtol=0, atol=2e-6)


def test_cheap_steps_run_on_the_caller_and_costly_ones_split():
    f32, q8 = mlp((784, 512, 512, 10)), mlp((784, 512, 512, 10), "int8")
    x = np.ones((1, 784), np.float32)
    costs = {}
    for name, model in (("f32", f32), ("int8", q8)):
        model.predict(x)
        plan = model._plan_cache.last.plan
        costs[name] = plan._plan.step_costs(1)
    split_ns = _kernels.FD_TUNE_STEP_SPLIT_NS
    (f32_ns, f32_far), (q8_ns, q8_far) = costs["f32"], costs["int8"]
    # float32: 2.7 MB of weights, more than one core's L2; each big layer is costly: split
    assert f32_far and f32_ns[0] > split_ns and f32_ns[1] > split_ns
    # int8: 0.66 MB; its layers read a quarter of the bytes. Intel's L2 feeds a core fast enough
    # that they stay on the caller; AMD's at half that rate, so both split (fd_tune.h)
    amd = _kernels.cpu_features()["vendor"] == "AuthenticAMD"
    per_byte = _kernels.FD_TUNE_STEP_PS_PER_BYTE_Q8_AMD if amd else _kernels.FD_TUNE_STEP_PS_PER_BYTE_Q8
    assert not q8_far and q8_ns[0] == pytest.approx(784 * 512 * per_byte / 1000)
    assert (q8_ns[0] > split_ns and q8_ns[1] > split_ns) if amd else (q8_ns[0] < split_ns and q8_ns[1] < split_ns)
    # the 10-unit output layer is cheap in both; the cost grows with the batch
    assert f32_ns[2] < split_ns and q8_ns[2] < split_ns
    assert q8._plan_cache.last.plan._plan.step_costs(64)[0][0] > q8_ns[0]


def test_concurrent_callers_over_a_small_pool_give_the_same_bits(restore):
    # more callers than cores: helpers are claimed, taken back and released under contention
    models = {mode: mlp((256, 192, 192, 10), mode, seed=3) for mode in (None, "int8", "int4")}
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((m, 256)).astype(np.float32) for m in (1, 4, 40)]
    fastdense.set_num_threads(2)
    _kernels.set_plan_split_policy(1)
    expected = {(mode, i): model.predict(x) for mode, model in models.items() for i, x in enumerate(xs)}
    errors = []

    def work(seed):
        try:
            for i in range(300):
                mode = (None, "int8", "int4")[(seed + i) % 3]
                j = (seed * 7 + i) % len(xs)
                np.testing.assert_array_equal(models[mode].predict(xs[j]), expected[mode, j])
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    run_in_threads(work, range(6))
    assert not errors, errors[0]


@pytest.mark.parametrize("functional", [False, True])
def test_calls_take_predicts_plan_unless_a_layer_records_losses(functional):
    # the shortcut of calls (PlanCache.shortcut): never for a model whose layers record losses
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    if functional:
        inputs = fastdense.Input((8,))
        first = Dense(4, activation="relu")
        model = fastdense.models.Model(inputs, Dense(3)(first(inputs)))
    else:
        first = Dense(4, activation="relu", input_shape=(8,))
        model = Sequential([first, Dense(3)])
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    kernel, bias, head, head_bias = (w.astype(np.float64) for w in model.get_weights())
    hidden = np.maximum(x @ kernel + bias, 0)
    expected = hidden @ head + head_bias
    model.predict(x)
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
    assert model._plan_cache.shortcut(x, call=True) is not None
    first.activity_regularizer = "l1"            # invalidates the plans
    for _ in range(2):
        model.predict(x)                         # predict records nothing ...
        assert model._plan_cache.shortcut(x, call=True) is None
        first._activity_loss = None
        np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
        # ... a call does: l1 (0.01 * sum |h|) of the first layer's outputs
        np.testing.assert_allclose(model.losses, [0.01 * np.abs(hidden).sum()], rtol=1e-5)


def quantized_stack(mode, acts, units, seed=7):
    """Dense layers on 700 features with the given activations, an Activation and a
    LayerNormalization between the first two, quantized."""
    from fastdense.layers import Activation, LayerNormalization
    rng = np.random.default_rng(seed)
    layers = [Dense(units[0], activation=acts[0]), Activation("tanh"), LayerNormalization()]
    layers += [Dense(n, activation=a) for n, a in zip(units[1:], acts[1:])]
    model = Sequential(layers)
    model.build((None, 700))
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * (0.05 if w.ndim == 2 else 0.1)
                       for w in model.get_weights()])
    model.quantize(mode)
    return model


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("acts", [("relu", "gelu", "softmax"), ("silu", "elu", "log_softmax"),
                                  ("softplus", "selu", "tanh"), ("hard_sigmoid", "mish", "linear")])
def test_column_parts_give_the_bits_of_one_thread(mode, acts, restore):
    # the first two steps have enough weights to split by columns at a few rows (fd_qdense.c),
    # into parts that are not whole panels of 16 columns; the 37-unit head stays whole
    model = quantized_stack(mode, acts, (300, 450, 37))
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((m, 700)).astype(np.float32) for m in (1, 2, 3, 4)]
    _kernels.set_plan_split_policy(0)
    expected = [model.predict(x) for x in xs]
    _kernels.set_plan_split_policy(1)   # every quantized step split by columns, one part per thread
    for threads in (2, 3):
        fastdense.set_num_threads(threads)
        for x, want in zip(xs, expected):
            for _ in range(5):
                np.testing.assert_array_equal(model.predict(x), want, err_msg=f"{threads} threads, batch {len(x)}")
    # and the numbers are the layers' own: the quantized ops one after the other
    from fastdense.layers import Activation
    h = xs[3]
    for layer in model.layers:
        h = layer(h)
    np.testing.assert_allclose(expected[3], h, rtol=1e-6, atol=1e-6)
    assert not isinstance(model.layers[1], Dense) and isinstance(model.layers[1], Activation)

