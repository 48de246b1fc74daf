"""fastdense.constraints: Keras's projections, axis semantics, names and configs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdense import constraints as C

from _helpers import as_json, fixture_configs

EPS = 1e-7  # Keras's backend.epsilon()
RNG = np.random.default_rng(7)


def json_round_trip(obj):
    return as_json(C.serialize(obj))


def norms(w, axis):
    """Reference L2 norms over axis (kept dims), float64."""
    return np.sqrt(np.sum(np.asarray(w, np.float64) ** 2, axis=axis, keepdims=True))


# (shape, axis) pairs: every single axis of 2-D and 3-D weights, and axis lists
AXIS_CASES = [((6, 4), 0), ((6, 4), 1), ((6, 4), -1), ((3, 5, 4), 0), ((3, 5, 4), 1), ((3, 5, 4), 2),
              ((3, 5, 4), [0, 1]), ((2, 3, 5, 4), [0, 1, 2])]


@pytest.mark.parametrize("shape, axis", AXIS_CASES)
def test_max_norm_formula_along_each_axis(shape, axis):
    w = RNG.normal(scale=2.0, size=shape)
    got = C.MaxNorm(max_value=1.5, axis=axis)(w)
    n = norms(w, tuple(axis) if isinstance(axis, list) else axis)
    np.testing.assert_allclose(got, w * np.clip(n, 0, 1.5) / (EPS + n), rtol=1e-12)
    assert norms(got, tuple(axis) if isinstance(axis, list) else axis).max() <= 1.5 + 1e-9


@pytest.mark.parametrize("shape, axis", AXIS_CASES)
def test_unit_norm_along_each_axis(shape, axis):
    w = RNG.normal(size=shape)
    ax = tuple(axis) if isinstance(axis, list) else axis
    got = C.UnitNorm(axis=axis)(w)
    np.testing.assert_allclose(got, w / (EPS + norms(w, ax)), rtol=1e-12)
    np.testing.assert_allclose(norms(got, ax), 1.0, rtol=1e-6)


@pytest.mark.parametrize("shape, axis", AXIS_CASES)
@pytest.mark.parametrize("rate", [1.0, 0.5, 0.0])
def test_min_max_norm_formula(shape, axis, rate):
    w = RNG.normal(scale=1.0, size=shape)
    ax = tuple(axis) if isinstance(axis, list) else axis
    got = C.MinMaxNorm(min_value=0.8, max_value=1.2, rate=rate, axis=axis)(w)
    n = norms(w, ax)
    desired = rate * np.clip(n, 0.8, 1.2) + (1 - rate) * n
    np.testing.assert_allclose(got, w * desired / (EPS + n), rtol=1e-12)
    if rate == 1.0:
        got_norms = norms(got, ax)
        assert got_norms.min() >= 0.8 - 1e-6 and got_norms.max() <= 1.2 + 1e-6


def test_dense_kernel_axis_zero_constrains_each_unit():
    # Dense kernel (input_dim, units): axis=0 is the incoming weight vector of each unit
    kernel = np.array([[3.0, 0.1], [4.0, 0.0]])
    got = C.MaxNorm(max_value=1.0)(kernel)
    np.testing.assert_allclose(got[:, 0], [0.6, 0.8], rtol=1e-6)  # norm 5 -> 1
    np.testing.assert_allclose(got[:, 1], [0.1, 0.0], rtol=1e-5)  # norm 0.1 kept


def test_non_neg():
    w = np.array([[-1.5, 0.0], [2.0, -0.0]], dtype=np.float32)
    got = C.NonNeg()(w)
    np.testing.assert_array_equal(got, [[0.0, 0.0], [2.0, 0.0]])
    assert got.dtype == np.float32
    assert C.NonNeg()(np.array([-2, 3])).tolist() == [0, 3]


@pytest.mark.parametrize("constraint", [C.MaxNorm(0.5), C.MinMaxNorm(0.5, 0.7), C.UnitNorm(), C.NonNeg()], ids=repr)
def test_inputs_untouched_and_dtype_kept(constraint):
    for dtype in (np.float32, np.float64):
        w = RNG.normal(size=(5, 3)).astype(dtype)
        before = w.copy()
        got = constraint(w)
        assert got is not w and got.dtype == dtype and got.shape == w.shape
        np.testing.assert_array_equal(w, before)
    ints = constraint(np.array([[3, 0], [4, 1]]))
    assert ints.shape == (2, 2)


def test_float32_accuracy_matches_float64_reference():
    w = RNG.normal(size=(64, 32)).astype(np.float32)
    np.testing.assert_allclose(C.UnitNorm()(w), (w / (EPS + norms(w, 0))).astype(np.float32), rtol=1e-6)


def test_zero_vector_stays_zero():
    assert not C.UnitNorm()(np.zeros((3, 2))).any()
    assert not C.MaxNorm()(np.zeros((3, 2))).any()


def test_axis_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match=r"axis=2.*\(3, 4\)"):
        C.MaxNorm(axis=2)(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"axis=\[0, 3\]"):
        C.UnitNorm(axis=[0, 3])(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"axis=\[0, -2\]"):
        C.UnitNorm(axis=[0, -2])(np.ones((3, 4)))


@pytest.mark.parametrize(
    "make, quoted",
    [
        (lambda: C.MaxNorm(max_value=-1), "-1"),
        (lambda: C.MaxNorm(max_value="2"), "'2'"),
        (lambda: C.MaxNorm(axis=0.5), "0.5"),
        (lambda: C.UnitNorm(axis=[]), "[]"),
        (lambda: C.UnitNorm(axis=None), "None"),
        (lambda: C.UnitNorm(axis=[1, 1]), "[1, 1]"),
        (lambda: C.MinMaxNorm(min_value=2.0, max_value=1.0), "min_value=2.0"),
        (lambda: C.MinMaxNorm(rate=1.5), "1.5"),
        (lambda: C.MinMaxNorm(rate=-0.1), "-0.1"),
        (lambda: C.MinMaxNorm(min_value=float("nan")), "nan"),
    ],
)
def test_bad_arguments_quote_the_value(make, quoted):
    with pytest.raises(ValueError) as info:
        make()
    assert quoted in str(info.value)


@pytest.mark.parametrize(
    "name, class_name, config",
    [
        ("max_norm", "MaxNorm", {"max_value": 2, "axis": 0}),
        ("maxnorm", "MaxNorm", {"max_value": 2, "axis": 0}),
        ("MaxNorm", "MaxNorm", {"max_value": 2, "axis": 0}),
        ("min_max_norm", "MinMaxNorm", {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}),
        ("non_neg", "NonNeg", {}),
        ("nonneg", "NonNeg", {}),
        ("unit_norm", "UnitNorm", {"axis": 0}),
        ("unitnorm", "UnitNorm", {"axis": 0}),
    ],
)
def test_names_and_keras_default_configs(name, class_name, config):
    assert C.serialize(C.get(name)) == {
        "module": "keras.constraints", "class_name": class_name, "config": config, "registered_name": None,
    }


def test_get_passthrough_and_errors():
    assert C.get(None) is None
    c = C.UnitNorm(axis=1)
    assert C.get(c) is c
    assert type(C.get(C.NonNeg)) is C.NonNeg
    clip = np.tanh
    assert C.get(clip) is clip
    with pytest.raises(ValueError, match="'max_normm'"):
        C.get("max_normm")
    with pytest.raises(ValueError, match=r"\[1\]"):
        C.get([1])


def test_tuple_axis_is_stored_as_list_so_configs_survive_json():
    c = C.MaxNorm(axis=(0, 1))
    assert c.get_config() == {"max_value": 2, "axis": [0, 1]}
    assert json_round_trip(c)["config"] == c.get_config()


FIXTURE_CONFIGS = fixture_configs(module="keras.constraints")


def test_every_keras_fixture_constraint_round_trips_exactly():
    assert {c["class_name"] for c in FIXTURE_CONFIGS} >= {"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"}
    w = RNG.normal(size=(24, 24))
    for config in FIXTURE_CONFIGS:
        obj = C.deserialize(config)
        assert C.serialize(obj) == config
        rebuilt = C.deserialize(json_round_trip(obj))
        assert C.serialize(rebuilt) == config
        np.testing.assert_array_equal(rebuilt(w), obj(w))


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}}, {"max_value": 2, "axis": 0}),
        ({"class_name": "NonNeg", "config": {}}, {}),
        ({"class_name": "UnitNorm", "config": {"axis": [0, 1]}}, {"axis": [0, 1]}),
        ({"class_name": "MinMaxNorm", "config": {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}},
         {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}),
    ],
)
def test_keras2_dialect(config, expected):
    assert C.deserialize(config).get_config() == expected


def test_subclass_defaults():
    class Clip(C.Constraint):
        def __init__(self, limit=1.0):
            self.limit = limit

        def __call__(self, w):
            return np.clip(w, -self.limit, self.limit)

        def get_config(self):
            return {"limit": self.limit}

    assert Clip.from_config({"limit": 0.5})(np.array([2.0])).tolist() == [0.5]
    w = np.ones(2)
    assert C.Constraint()(w) is w and C.Constraint().get_config() == {}
    with pytest.raises(ValueError, match=r"Clip.*\['lim'\]"):
        Clip.from_config({"lim": 1})


number = st.floats(0, 1e3, allow_nan=False) | st.integers(0, 1000)
axis = st.integers(-2, 1) | st.lists(st.integers(0, 1), min_size=1, max_size=2, unique=True)


@st.composite
def min_max_args(draw):
    a, b = draw(number), draw(number)
    return {"min_value": min(a, b), "max_value": max(a, b), "rate": draw(st.floats(0, 1) | st.sampled_from([0, 1])),
            "axis": draw(axis)}


CONSTRAINT_ARGS = st.one_of(
    st.tuples(st.just(C.MaxNorm), st.fixed_dictionaries({"max_value": number, "axis": axis})),
    st.tuples(st.just(C.MinMaxNorm), min_max_args()),
    st.tuples(st.just(C.UnitNorm), st.fixed_dictionaries({"axis": axis})),
    st.tuples(st.just(C.NonNeg), st.just({})),
)


@settings(max_examples=200, deadline=None)
@given(CONSTRAINT_ARGS)
def test_config_round_trip_for_any_arguments(case):
    cls, kwargs = case
    obj = cls(**kwargs)
    config = obj.get_config()
    assert cls.from_config(config).get_config() == config
    rebuilt = C.deserialize(json_round_trip(obj))
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    w = np.arange(12.0).reshape(3, 4) - 5
    np.testing.assert_array_equal(rebuilt(w), obj(w))
