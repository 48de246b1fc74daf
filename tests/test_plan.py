"""The compiled whole-model plan: same results as layer by layer, threads, memory, fallback."""
import threading
import tracemalloc

import numpy as np
import pytest
from _helpers import FIXTURES, INDEX, run_in_threads

import fastdense
from fastdense.layers import Activation, Add, Concatenate, Dense, Dropout, Flatten, Layer, Reshape
from fastdense.models import Model, Sequential, load_model
from fastdense import Input
from fastdense.models.plan import compile_plan, run_compiled


def fixture_inputs(name):
    data = np.load(FIXTURES / f"{name}.io.npz")
    return [data[f"x{i}"] for i in range(INDEX[name]["inputs"])], data["y"]


def mlp(dtype="float32"):
    rng = np.random.default_rng(0)
    model = Sequential([Dense(64, activation="relu", input_shape=(20,), dtype=dtype),
                        Dense(64, activation="gelu", dtype=dtype),
                        Dense(10, activation="softmax", dtype=dtype)])
    model.set_weights([rng.standard_normal(w.shape) * 0.3 for w in model.get_weights()])
    return model


def standardized(model, x):
    return model._standardize_inputs(x)


@pytest.mark.parametrize("name", sorted(INDEX))
def test_every_fixture_compiles_and_matches_layer_by_layer(name):
    path = FIXTURES / (f"{name}.h5" if INDEX[name].get("only") == "h5" else f"{name}.keras")
    model = load_model(path)
    inputs, expected = fixture_inputs(name)
    arrays = standardized(model, inputs if len(inputs) > 1 else inputs[0])
    dtype = next((a.dtype for a in arrays if a.dtype.kind == "f"), np.float32)  # as predict does (ids: ints)
    plan = compile_plan(model, [a.shape[1:] for a in arrays], dtype)
    assert plan is not None, f"{name} should compile"
    compiled = run_compiled(model, arrays)
    layered = model._run_layers(arrays)
    for c, l in zip(compiled, layered):
        if INDEX[name].get("group") == "layers":   # folded and fused layers: rounding (docs/layers.md)
            np.testing.assert_allclose(c, l, rtol=2e-6, atol=2e-6)
        else:
            np.testing.assert_array_equal(c, l)  # the same kernel calls: bitwise equal
    tol = 1e-12 if arrays[0].dtype == np.float64 else 1e-5
    got = model.predict(inputs if len(inputs) > 1 else inputs[0])
    if name != "mlp_f64":  # Keras computed mlp_f64's reference in float32 (see test_configs)
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


@pytest.mark.parametrize("batch", [1, 3, 257, 1100])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocks_match_layer_by_layer(batch, dtype):
    model = mlp(dtype)
    x = np.random.default_rng(batch).standard_normal((batch, 20)).astype(dtype)
    compiled = model.predict(x)
    layered = model._run_layers([x])[0]
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(compiled, layered, rtol=0, atol=tol)
    if batch <= 256:  # one block: the very same BLAS calls
        np.testing.assert_array_equal(compiled, layered)


def test_functional_graph_with_merges_and_reshapes():
    a, b = fastdense.Input((6,)), fastdense.Input((6,))
    shared = Dense(8, activation="tanh")
    c = Concatenate()([shared(a), shared(b)])
    r = Reshape((4, 4))(c)
    d = Dense(3)(r)                                  # N-D: acts on the last axis
    e = Flatten()(Dropout(0.5)(d))
    out = Activation("softmax")(Add()([Dense(5)(e), Dense(5)(Flatten()(r))]))
    model = Model([a, b], [out, e])
    rng = np.random.default_rng(3)
    xa, xb = rng.standard_normal((9, 6)).astype("float32"), rng.standard_normal((9, 6)).astype("float32")
    assert compile_plan(model, [(6,), (6,)], np.float32) is not None
    compiled = model.predict([xa, xb])
    layered = model._run_layers([xa, xb])
    for c_, l_ in zip(compiled, layered):
        np.testing.assert_array_equal(c_, l_)
    # hand-written numpy
    k, bias = shared.get_weights()
    h = np.concatenate([np.tanh(xa @ k + bias), np.tanh(xb @ k + bias)], axis=1).reshape(9, 4, 4)
    dk, db = model.get_layer(d._keras_history[0].name).get_weights()
    np.testing.assert_allclose(compiled[1], (h @ dk + db).reshape(9, 12), atol=1e-5)


def test_unsupported_layers_fall_back_with_identical_results():
    class Double(Layer):
        def call(self, x):
            return 2 * x

    inputs = fastdense.Input((4,))
    model = Model(inputs, Dense(3)(Double()(Dense(4, activation="relu")(inputs))))
    assert compile_plan(model, [(4,)], np.float32) is None
    x = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
    np.testing.assert_array_equal(model.predict(x), model._run_layers([x])[0])
    # a Python callable activation is not fused either
    model2 = Sequential([Dense(3, activation=lambda z: z * 3, input_shape=(4,))])
    assert compile_plan(model2, [(4,)], np.float32) is None
    np.testing.assert_allclose(model2.predict(x), 3 * (x @ model2.layers[0].kernel + model2.layers[0].bias),
                               atol=1e-5)


def test_predict_out_writes_in_place_and_checks():
    model = mlp()
    x = np.random.default_rng(1).standard_normal((40, 20)).astype("float32")
    out = np.empty((40, 10), np.float32)
    assert model.predict(x, out=out) is out
    np.testing.assert_array_equal(out, model._run_layers([x])[0])
    chunks = np.empty((40, 10), np.float32)
    model.predict(x, batch_size=16, out=chunks)
    np.testing.assert_allclose(chunks, out, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(40, 10\)"):
        model.predict(x, out=np.empty((40, 9), np.float32))
    with pytest.raises(ValueError, match="float32"):
        model.predict(x, out=np.empty((40, 10), np.float64))


def test_repeated_predict_allocates_nothing_but_the_result():
    model = mlp()
    x = np.random.default_rng(2).standard_normal((64, 20)).astype("float32")
    out = np.empty((64, 10), np.float32)
    for _ in range(20):  # warm: plan compiled, scratch allocated
        model.predict(x, out=out)
        model.predict(x)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(300):
            model.predict(x, out=out)
        for _ in range(300):
            model.predict(x)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grown < 64 * 1024, f"predict grew memory by {grown} bytes"


@pytest.mark.parametrize("own_pool", [False, True])
def test_eight_threads_thousand_predicts(own_pool):
    model = mlp()
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((b, 20)).astype("float32") for b in (1, 7, 64)]
    expected = [model._run_layers([x])[0] for x in xs]
    errors = []

    def work(seed):
        try:
            for i in range(1000):
                j = (seed + i) % len(xs)
                np.testing.assert_allclose(model.predict(xs[j]), expected[j], rtol=0, atol=1e-6)
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    try:
        if own_pool:
            fastdense.set_num_threads(2)
        run_in_threads(work, range(8))
    finally:
        fastdense.set_num_threads(None)
    assert not errors, errors[0]


def test_set_weights_while_predicting_never_mixes():
    """Weights flip between two sets; every prediction matches one set or the other."""
    model = mlp()
    rng = np.random.default_rng(5)
    set_a = model.get_weights()
    set_b = [rng.standard_normal(w.shape) * 0.3 for w in set_a]
    x = rng.standard_normal((16, 20)).astype("float32")
    model.set_weights(set_b)
    expect_b = model._run_layers([x])[0]
    model.set_weights(set_a)
    expect_a = model._run_layers([x])[0]
    stop = threading.Event()
    bad = []

    def flip():
        while not stop.is_set():
            model.set_weights(set_b)
            model.set_weights(set_a)

    def predict():
        for _ in range(300):
            y = model.predict(x)
            if not (np.allclose(y, expect_a, atol=1e-6) or np.allclose(y, expect_b, atol=1e-6)):
                bad.append(y)

    flipper = threading.Thread(target=flip)
    readers = [threading.Thread(target=predict) for _ in range(3)]
    flipper.start()
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    stop.set()
    flipper.join()
    assert not bad, f"{len(bad)} predictions mixed old and new weights"


def test_graph_changes_after_predict_are_never_served_a_stale_plan():
    """add/pop on a Sequential (which changes no weight) after predict: predict, a call and an
    outer model holding it all follow the new graph (the outer model calls the inner one, as
    its layer-by-layer path and Keras do)."""
    rng = np.random.default_rng(9)
    model = Sequential([Dense(6, input_shape=(3,)), Activation("relu")])
    model.set_weights([rng.standard_normal((3, 6)), rng.standard_normal(6)])
    kernel, bias = model.get_weights()
    x = rng.standard_normal((5, 3)).astype(np.float32)
    z = x.astype(np.float64) @ kernel + bias
    inputs = fastdense.Input((3,))
    outer = Model(inputs, model(inputs))
    for _ in range(2):  # the second call takes predict's shortcut
        np.testing.assert_allclose(model.predict(x), np.maximum(z, 0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outer.predict(x), np.maximum(z, 0), rtol=1e-5, atol=1e-6)
    model.pop()
    assert np.any(z < 0)
    np.testing.assert_allclose(model.predict(x), z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x), z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outer.predict(x), z, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outer.predict(x), outer._run_layers([x])[0])
    model.add(Activation("sigmoid"))
    np.testing.assert_allclose(model.predict(x), 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)


def test_predict_shortcut_checks_what_the_full_path_checks():
    """The plan a call leaves for the next predict is used only for inputs of the same dtype,
    rank, per-sample shape and layout, and never with out= or batch_size."""
    model = mlp()
    x = np.random.default_rng(3).standard_normal((8, 20)).astype(np.float32)
    expected = model._run_layers([x])[0]
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        model.predict(np.ones((8, 21), np.float32))
    with pytest.raises(ValueError):
        model.predict(np.ones((8, 20, 1), np.float32))
    np.testing.assert_allclose(model.predict(x.astype(np.float64)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(np.asfortranarray(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x[::2]), expected[::2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=3), expected, rtol=1e-5, atol=1e-6)
    out = np.empty((8, 10), np.float32)
    assert model.predict(x, out=out) is out
    with pytest.raises(ValueError, match="out must"):
        model.predict(x, out=np.empty((8, 10), np.float64))


def test_changed_layer_settings_reach_predict():
    """Setting an attribute that the plan compiled in (activation, use_bias) on a built layer:
    predict, model(x) and the layer call all use the new setting."""
    rng = np.random.default_rng(4)
    model = Sequential([Dense(5, activation="relu", input_shape=(3,)), Activation("relu")])
    model.set_weights([rng.standard_normal((3, 5)), rng.standard_normal(5)])
    kernel, bias = model.get_weights()
    x = rng.standard_normal((6, 3)).astype(np.float32)
    z = x.astype(np.float64) @ kernel + bias
    model.predict(x)
    model.predict(x)
    dense, act = model.layers
    dense.activation = "tanh"
    act.activation = fastdense.activations.get("linear")
    for y in (model.predict(x), model(x), act(dense(x))):
        np.testing.assert_allclose(y, np.tanh(z), rtol=1e-5, atol=1e-6)
    dense.use_bias = False
    for y in (model.predict(x), model(x), act(dense(x))):
        np.testing.assert_allclose(y, np.tanh(z - bias), rtol=1e-5, atol=1e-6)


@pytest.fixture
def count_compilations(monkeypatch):
    """The number of plan compilations per model (by model name) from now on."""
    from fastdense.models import plan

    counts: dict[str, int] = {}
    real = plan.compile_plan

    def counting(model, *args, **kwargs):
        counts[model.name] = counts.get(model.name, 0) + 1
        return real(model, *args, **kwargs)

    monkeypatch.setattr(plan, "compile_plan", counting)
    return counts


def test_updating_one_model_never_recompiles_another(count_compilations):
    """Plan caches are per model: set_weights on a small model leaves an unrelated model's plan
    alone (before: one process-wide weights epoch made every model recompile)."""
    rng = np.random.default_rng(11)
    big, small = mlp(), Sequential([Dense(4, input_shape=(4,))], name="small")
    x = rng.standard_normal((3, 20)).astype(np.float32)
    expected = big._run_layers([x])[0]
    big.predict(x)
    for _ in range(5):
        small.set_weights([rng.standard_normal((4, 4)), rng.standard_normal(4)])
        small.layers[0].activation = "relu"
        np.testing.assert_array_equal(big.predict(x), expected)
        np.testing.assert_array_equal(big(x), expected)
        small.predict(np.ascontiguousarray(x[:, :4]))
    # one plan: no layer records activity losses, so calls take predict's plan (PlanCache.shortcut)
    assert count_compilations[big.name] == 1
    assert count_compilations["small"] == 5


def test_shared_layer_change_invalidates_every_model_that_holds_it(count_compilations):
    rng = np.random.default_rng(12)
    shared = Dense(3, activation="relu", name="shared")
    a_in, b_in = fastdense.Input((4,)), fastdense.Input((4,))
    model_a = Model(a_in, Dense(2, name="head_a")(shared(a_in)), name="model_a")
    model_b = Model(b_in, Activation("tanh")(shared(b_in)), name="model_b")
    outer_in = fastdense.Input((4,))
    outer = Model(outer_in, model_a(outer_in), name="outer")   # holds shared through model_a
    x = rng.standard_normal((5, 4)).astype(np.float32)

    def expect():
        kernel, bias = (w.astype(np.float64) for w in shared.get_weights())
        h = np.maximum(x @ kernel + bias, 0)
        head_k, head_b = (w.astype(np.float64) for w in model_a.get_layer("head_a").get_weights())
        return h @ head_k + head_b, np.tanh(h)

    for _ in range(2):
        ya, yb = expect()
        for _ in range(2):   # the second predict takes the shortcut
            np.testing.assert_allclose(model_a.predict(x), ya, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(model_b.predict(x), yb, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(outer.predict(x), ya, rtol=1e-5, atol=1e-6)
        shared.set_weights([rng.standard_normal((4, 3)), rng.standard_normal(3)])
    # model_a: one plan per weights for its predict and its call from outer (which runs layer by
    # layer: a nested model); no layer records losses, so the call takes predict's plan
    assert count_compilations == {"model_a": 2, "model_b": 2, "outer": 2}


def test_pickled_model_compiles_its_own_plans():
    import copy
    import pickle

    model = mlp()
    x = np.random.default_rng(13).standard_normal((4, 20)).astype(np.float32)
    expected = model.predict(x)
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert not twin._plan_cache.plans
        np.testing.assert_array_equal(twin.predict(x), expected)
        twin.layers[0].set_weights([w * 0 for w in twin.layers[0].get_weights()])
        np.testing.assert_array_equal(model.predict(x), expected)   # the original is untouched
        assert not np.array_equal(twin.predict(x), expected)


def test_models_beyond_the_plan_limits_run_layer_by_layer():
    """Before: 301 Dense layers raised MemoryError (a buffer limit of the plan), 17 concatenated
    inputs ValueError (a source limit). Now they run layer by layer, with the same results."""
    rng = np.random.default_rng(14)
    deep = Sequential([Dense(4, input_shape=(4,))] + [Dense(4) for _ in range(300)])
    weights = []
    for _ in deep.layers:
        weights += [np.eye(4) + 0.05 * rng.standard_normal((4, 4)), 0.05 * rng.standard_normal(4)]
    deep.set_weights(weights)
    x = rng.standard_normal((7, 4)).astype(np.float32)
    expected = x.astype(np.float64)
    for kernel, bias in zip(weights[::2], weights[1::2]):
        expected = expected @ kernel.astype(np.float32).astype(np.float64) + bias.astype(np.float32)
    for _ in range(2):
        np.testing.assert_allclose(deep.predict(x), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(deep.predict(x), deep._run_layers([x])[0])

    inputs = [fastdense.Input((2,)) for _ in range(17)]
    head = Dense(3)
    wide = Model(inputs, head(Concatenate()(inputs)))
    xs = [rng.standard_normal((5, 2)).astype(np.float32) for _ in inputs]
    kernel, bias = (w.astype(np.float64) for w in head.get_weights())
    expected = np.concatenate(xs, axis=1).astype(np.float64) @ kernel + bias
    for _ in range(2):
        np.testing.assert_allclose(wide.predict(xs), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(wide.predict(xs), wide._run_layers(xs)[0])


def test_a_real_memory_error_while_compiling_propagates(monkeypatch):
    from fastdense.models import plan

    def no_memory(*args, **kwargs):
        raise MemoryError("fastdense: could not allocate a plan")

    model = mlp()
    monkeypatch.setattr(plan._kernels, "Plan", no_memory)
    with pytest.raises(MemoryError, match="could not allocate a plan"):
        model.predict(np.ones((2, 20), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_native_shortcut_of_predict_and_calls(dtype):
    # run_shortcut (the C form of PlanCache.shortcut + CompiledPlan.run_one): the same numbers as
    # the full path, fresh output arrays, and no shortcut for inputs unlike the last run's
    from fastdense.models.plan import run_shortcut
    rng = np.random.default_rng(11)
    name = np.dtype(dtype).name
    model = Sequential([Input((5, 8), dtype=name), Dense(4, activation="tanh", dtype=name), Dense(3, dtype=name)])
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    kernel, bias, head, head_bias = (w.astype(np.float64) for w in model.get_weights())

    def reference(x):
        return np.tanh(x.astype(np.float64) @ kernel + bias) @ head + head_bias

    x = rng.standard_normal((3, 5, 8)).astype(dtype)
    first = model.predict(x)                                   # compiles, records the last plan
    cache = model._plan_cache
    y = run_shortcut(cache, x, False)
    assert y is not None and y.dtype == dtype and y.shape == (3, 5, 3) and y.flags.c_contiguous
    np.testing.assert_array_equal(y, first)
    np.testing.assert_array_equal(model(x), first)
    np.testing.assert_allclose(y, reference(x), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    again = model.predict(x * 2)                               # a new array each time
    assert again is not y and not np.shares_memory(again, y)
    np.testing.assert_array_equal(y, first)
    for m in (1, 7, 3):                                        # other batch sizes: run_one's layout
        xm = rng.standard_normal((m, 5, 8)).astype(dtype)
        np.testing.assert_allclose(model.predict(xm), reference(xm), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(run_shortcut(cache, xm, False), model.predict(xm, batch_size=m))
    other = np.float64 if dtype == np.float32 else np.float32
    assert run_shortcut(cache, x.astype(other), False) is None          # another dtype
    assert run_shortcut(cache, x[:, :, ::-1], False) is None            # not C-contiguous
    assert run_shortcut(cache, x.reshape(3, 40), False) is None         # another rank
    assert run_shortcut(cache, x[:, :4].copy(), False) is None          # another per-sample shape
    assert run_shortcut(cache, list(x), False) is None                  # not an array
    model.set_weights([w * 2 for w in model.get_weights()])             # a layer changed
    assert run_shortcut(cache, x, False) is None
    assert cache.shortcut(x, call=False) is None
    np.testing.assert_allclose(model.predict(x)[0, 0], model.predict(x, batch_size=1)[0, 0])
