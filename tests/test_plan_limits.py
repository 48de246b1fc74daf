"""The plan has no fixed limits (defect 1): deep and wide models compile into one plan and give the
layer-by-layer results; C's status codes map to distinct Python errors."""
import numpy as np
import pytest

import fastdense
from fastdense import _kernels
from fastdense.activations import KernelActivation
from fastdense.layers import Add, Concatenate, Dense
from fastdense.models import Model, Sequential
from fastdense.models.plan import compile_plan
from fastdense.models.plan_steps import PlanBuffer, PlanStep


def test_301_dense_layers_compile_and_match_numpy():
    """Before: MemoryError from predict (a 256-buffer limit reported as out of memory)."""
    rng = np.random.default_rng(14)
    deep = Sequential([Dense(4, input_shape=(4,))] + [Dense(4) for _ in range(300)])
    weights = []
    for _ in deep.layers:
        weights += [np.eye(4) + 0.05 * rng.standard_normal((4, 4)), 0.05 * rng.standard_normal(4)]
    deep.set_weights(weights)
    x = rng.standard_normal((7, 4)).astype(np.float32)
    assert compile_plan(deep, [(4,)], np.float32) is not None
    expected = x.astype(np.float64)
    for kernel, bias in zip(weights[::2], weights[1::2]):
        expected = expected @ kernel.astype(np.float32).astype(np.float64) + bias.astype(np.float32)
    got = deep.predict(x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got, deep._run_layers([x])[0])


def test_17_concatenated_inputs_and_17_outputs_compile_and_match_numpy():
    """Before: ValueError 'a step takes at most 16 inputs' from predict. 17 inputs and outputs also
    pass the stack room of Plan.run's pointer lists (16)."""
    rng = np.random.default_rng(17)
    inputs = [fastdense.Input((2,)) for _ in range(17)]
    head = Dense(3)
    joined = Concatenate()(inputs)
    outputs = [head(joined)] + [Add()([a, a]) for a in inputs[:16]]
    model = Model(inputs, outputs)
    xs = [rng.standard_normal((5, 2)).astype(np.float32) for _ in inputs]
    assert compile_plan(model, [(2,)] * 17, np.float32) is not None
    kernel, bias = (w.astype(np.float64) for w in head.get_weights())
    expected = np.concatenate(xs, axis=1).astype(np.float64) @ kernel + bias
    got = model.predict(xs)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5)
    for x, y in zip(xs, got[1:]):
        np.testing.assert_array_equal(y, 2 * x)
    for g, l in zip(got, model._run_layers(xs)):
        np.testing.assert_array_equal(g, l)


# ------------------------------------------------------------------ the plan itself

def _relu_plan(**changes):
    """x (3) -> Dense(2, relu) -> y: a valid plan, with fields replaced by `changes`."""
    w = np.arange(6, dtype=np.float32).reshape(3, 2) / 4
    step = PlanStep(_kernels.FD_STEP_DENSE, (0,), 1, k=3, n=2, w=w,
                    act=KernelActivation(_kernels.FD_ACT_RELU))
    buffers = [PlanBuffer(3, input_index=0), PlanBuffer(2, output_index=0)]
    args = {"steps": [step], "buffers": buffers, "glu_offset": 0, "sample_elems": 1, "dtype": np.float32}
    for key, value in changes.items():
        if key in PlanStep._fields:
            args["steps"] = [args["steps"][0]._replace(**{key: value})]
        else:
            args[key] = value
    return args, w


def test_plan_takes_the_records_by_name():
    args, w = _relu_plan()
    plan = _kernels.Plan(**args)
    x = np.array([[1.0, -2.0, 0.5], [-1.0, -1.0, -1.0]], np.float32)
    y = np.empty((2, 2), np.float32)
    plan.run([x], [y], 2, 2, np.empty(2, np.float32), 1)
    np.testing.assert_allclose(y, np.maximum(x.astype(np.float64) @ w, 0), rtol=1e-6)
    assert (plan.n_inputs, plan.n_outputs) == (1, 1)


@pytest.mark.parametrize("change", [
    {"kind": _kernels.FD_STEP_KIND_COUNT},           # no such step kind
    {"srcs": (5,)},                                  # a source buffer out of range
    {"dst": 0},                                      # writes a model input
    {"k": 4},                                        # the input buffer is 3 wide, not 4
    {"srcs": ()},                                    # no source
    {"buffers": [PlanBuffer(3, input_index=1), PlanBuffer(2, output_index=0)]},   # input 0 missing
])
def test_an_inconsistent_plan_is_a_value_error(change):
    args, _ = _relu_plan(**change)
    with pytest.raises(ValueError) as info:
        _kernels.Plan(**args)
    assert not isinstance(info.value, (_kernels.PlanLimitError, MemoryError))


def test_sizes_beyond_c_are_a_plan_limit_error():
    huge = 2 ** 62   # elements per sample: their bytes do not fit a ptrdiff_t
    args, _ = _relu_plan(buffers=[PlanBuffer(huge, input_index=0), PlanBuffer(2, output_index=0)],
                         k=huge, w=None)
    with pytest.raises(_kernels.PlanLimitError, match="limit"):
        _kernels.Plan(**args)


def test_run_checks_its_arguments():
    args, _ = _relu_plan()
    plan = _kernels.Plan(**args)
    x, y, scratch = np.ones((2, 3), np.float32), np.empty((2, 2), np.float32), np.empty(2, np.float32)
    with pytest.raises(ValueError, match="1 inputs and 1 outputs, got 2 and 1"):
        plan.run([x, x], [y], 2, 2, scratch, 1)
    with pytest.raises(ValueError, match="invalid argument") as info:
        plan.run([x], [y], 2, 0, scratch, 1)     # a block of 0 samples: FD_ERR_ARG from C
    assert not isinstance(info.value, _kernels.PlanLimitError)


def test_status_codes_map_to_distinct_exceptions():
    assert _kernels._status_error(_kernels.FD_OK, "x") is None
    nomem = _kernels._status_error(_kernels.FD_ERR_NOMEM, "plan")
    arg = _kernels._status_error(_kernels.FD_ERR_ARG, "plan")
    limit = _kernels._status_error(_kernels.FD_ERR_LIMIT, "plan")
    assert type(nomem) is MemoryError and type(arg) is ValueError and type(limit) is _kernels.PlanLimitError
    assert isinstance(limit, ValueError) and not isinstance(limit, MemoryError)
