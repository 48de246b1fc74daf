"""fastdense.regularizers: Keras's penalties, names and configs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdense import regularizers as R

from _helpers import as_json, fixture_configs

RNG = np.random.default_rng(20240601)


def json_round_trip(obj):
    return as_json(R.serialize(obj))


@pytest.fixture(params=["float32", "float64"])
def matrix(request):
    return RNG.normal(size=(7, 5)).astype(request.param)


def test_l1_l2_penalties_match_hand_formulas(matrix):
    x = matrix.astype(np.float64)
    abs_sum = sum(abs(v) for v in x.ravel())
    sq_sum = sum(v * v for v in x.ravel())
    l1 = float(np.float32(0.3))  # Keras 3.15 keeps L1's factor at float32 precision
    assert R.L1(0.3).l1 == l1
    assert R.L1(0.3)(matrix) == pytest.approx(l1 * abs_sum, rel=1e-12)
    assert R.L2(0.2)(matrix) == pytest.approx(0.2 * sq_sum, rel=1e-12)
    assert R.L1L2(l1=0.3, l2=0.2)(matrix) == pytest.approx(0.3 * abs_sum + 0.2 * sq_sum, rel=1e-12)
    assert R.L1L2(l1=0.3)(matrix) == pytest.approx(0.3 * abs_sum, rel=1e-12)
    assert R.L1L2()(matrix) == 0.0
    assert isinstance(R.L2(0.2)(matrix), float)


def test_keras_docstring_examples():
    assert R.L2(2.0)(np.ones((5, 5))) == 50.0
    assert R.L1(0.01)(2 * np.ones((5, 5))) == pytest.approx(0.5)
    assert R.Regularizer()(np.ones(3)) == 0.0


def orthogonal_reference(x, factor, mode):
    """factor * mean over pairs i<j of |cos(v_i, v_j)| (rows or columns), loops in float64."""
    vectors = [np.asarray(v, dtype=np.float64) for v in (x if mode == "rows" else x.T)]
    unit = [v / max(np.sqrt(np.dot(v, v)), 1e-7) for v in vectors]
    pairs = list(itertools.combinations(range(len(unit)), 2))
    return factor * sum(abs(np.dot(unit[i], unit[j])) for i, j in pairs) / len(pairs)


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_regularizer_matches_reference(matrix, mode):
    got = R.OrthogonalRegularizer(factor=0.7, mode=mode)(matrix)
    assert got == pytest.approx(orthogonal_reference(matrix, 0.7, mode), rel=1e-6)


def test_orthogonal_regularizer_values():
    assert R.OrthogonalRegularizer(factor=1.0)(np.eye(4)) == 0.0  # orthogonal rows: no penalty
    assert R.OrthogonalRegularizer(factor=2.0)(np.ones((3, 3))) == pytest.approx(2.0)  # parallel rows
    # a zero row is divided by epsilon (Keras), contributing 0
    assert R.OrthogonalRegularizer(factor=1.0)(np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])) == pytest.approx(
        (0 + 0 + np.sqrt(0.5)) / 3
    )
    assert R.OrthogonalRegularizer()(np.ones((1, 4))) == 0.0  # a single row has no pairs
    with pytest.raises(ValueError, match=r"2-D.*\(2, 2, 2\)"):
        R.OrthogonalRegularizer()(np.ones((2, 2, 2)))


@pytest.mark.parametrize(
    "make, quoted",
    [
        (lambda: R.L1(-0.1), "-0.1"),
        (lambda: R.L2(float("nan")), "nan"),
        (lambda: R.L1L2(l1=float("inf")), "inf"),
        (lambda: R.L1L2(l2="0.1"), "'0.1'"),
        (lambda: R.L2(True), "True"),
        (lambda: R.OrthogonalRegularizer(factor=-1), "-1"),
        (lambda: R.OrthogonalRegularizer(mode="diagonal"), "'diagonal'"),
    ],
)
def test_bad_arguments_quote_the_value(make, quoted):
    with pytest.raises(ValueError) as info:
        make()
    assert quoted in str(info.value)


def test_none_means_default_like_keras():
    assert R.L1(None).l1 == float(np.float32(0.01)) and R.L2(None).l2 == 0.01
    assert R.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}


@pytest.mark.parametrize(
    "name, config",
    [
        # Keras 3.15 stores L1's and OrthogonalRegularizer's factors as float32
        ("l1", {"module": "keras.regularizers", "class_name": "L1", "config": {"l1": 0.009999999776482582},
                "registered_name": None}),
        ("l2", {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, "registered_name": None}),
        # Keras 3.15's alias "l1l2" is L1L2() with both factors 0 ...
        ("l1l2", {"module": "keras.regularizers", "class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.0},
                  "registered_name": None}),
        # ... while "l1_l2" is Keras 2's l1_l2() shortcut, 0.01 each
        ("l1_l2", {"module": "keras.regularizers", "class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.01},
                   "registered_name": None}),
        ("orthogonal_regularizer", {"module": "keras.regularizers", "class_name": "OrthogonalRegularizer",
                                    "config": {"factor": 0.009999999776482582, "mode": "rows"},
                                    "registered_name": None}),
        ("L2", {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, "registered_name": None}),
    ],
)
def test_names_and_keras_configs(name, config):
    assert R.serialize(R.get(name)) == config
    assert R.serialize(R.deserialize(name)) == config


def test_get_passthrough_and_errors():
    assert R.get(None) is None
    reg = R.L2(0.5)
    assert R.get(reg) is reg
    assert type(R.get(R.L1)) is R.L1

    def my_reg(x):
        return 0.1 * float(np.sum(x))

    assert R.get(my_reg) is my_reg
    with pytest.raises(ValueError, match="'l3'"):
        R.get("l3")
    with pytest.raises(ValueError, match="0.5"):
        R.get(0.5)


def test_configs_store_floats_like_keras():
    assert R.L2(1).get_config() == {"l2": 1.0} and isinstance(R.L2(1).l2, float)
    assert R.L1(np.float32(1e-5)).get_config() == {"l1": float(np.float32(1e-5))}


FIXTURE_CONFIGS = fixture_configs(module="keras.regularizers")


def test_every_keras_fixture_regularizer_round_trips_exactly():
    assert {c["class_name"] for c in FIXTURE_CONFIGS} >= {"L1", "L2", "L1L2"}
    for config in FIXTURE_CONFIGS:
        obj = R.deserialize(config)
        assert R.serialize(obj) == config
        assert json_round_trip(R.deserialize(json_round_trip(obj))) == config


def test_fixture_l1l2_penalty():
    (config,) = [c for c in FIXTURE_CONFIGS if c["class_name"] == "L1L2"]
    x = RNG.normal(size=(12, 24))
    expected = config["config"]["l1"] * np.abs(x).sum() + config["config"]["l2"] * np.square(x).sum()
    assert R.deserialize(config)(x) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"class_name": "L2", "config": {"l2": 0.01}}, {"l2": 0.01}),
        ({"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.001}}, {"l1": 0.0, "l2": 0.001}),
        ({"class_name": "L1", "config": {"l1": 0.5}}, {"l1": 0.5}),
    ],
)
def test_keras2_dialect(config, expected):
    assert R.deserialize(config).get_config() == expected


def test_unknown_config_key_is_a_clear_error():
    with pytest.raises(ValueError, match=r"L2.*\['l1'\]"):
        R.deserialize({"class_name": "L2", "config": {"l1": 0.1}})


def test_subclass_from_config_and_missing_get_config():
    class Doubled(R.Regularizer):
        def __init__(self, factor=1.0):
            self.factor = factor

        def __call__(self, x):
            return 2 * self.factor * float(np.sum(x))

        def get_config(self):
            return {"factor": self.factor}

    assert Doubled.from_config({"factor": 0.5})(np.ones(4)) == 4.0
    with pytest.raises(NotImplementedError, match="get_config"):
        R.Regularizer().get_config()


factor = st.floats(0, 1e3, allow_nan=False) | st.integers(0, 1000)

REGULARIZER_ARGS = st.one_of(
    st.tuples(st.just(R.L1), st.fixed_dictionaries({"l1": factor})),
    st.tuples(st.just(R.L2), st.fixed_dictionaries({"l2": factor})),
    st.tuples(st.just(R.L1L2), st.fixed_dictionaries({"l1": factor, "l2": factor})),
    st.tuples(st.just(R.OrthogonalRegularizer),
              st.fixed_dictionaries({"factor": factor, "mode": st.sampled_from(["rows", "columns"])})),
)


@settings(max_examples=200, deadline=None)
@given(REGULARIZER_ARGS)
def test_config_round_trip_for_any_arguments(case):
    cls, kwargs = case
    obj = cls(**kwargs)
    config = obj.get_config()
    assert cls.from_config(config).get_config() == config
    rebuilt = R.deserialize(json_round_trip(obj))
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    x = np.arange(12.0).reshape(3, 4) - 5
    assert rebuilt(x) == obj(x)
