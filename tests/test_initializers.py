"""fastdense.initializers: Keras's distributions, formulas, names and configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdense import initializers as I

from _helpers import as_json, fixture_configs

TRUNC = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]


def json_round_trip(obj):
    return as_json(I.serialize(obj))


def assert_mean_var(values, mean, var, *, fourth_moment):
    """Sample mean and variance within 6 standard errors (derived from the sample size)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    assert abs(values.mean() - mean) <= 6 * math.sqrt(var / n) + 1e-12
    var_se = math.sqrt(max(fourth_moment - var**2, 0.0) / n)
    assert abs(values.var() - var) <= 6 * var_se + 1e-12


def uniform_moments(limit):
    return limit**2 / 3, limit**4 / 5  # variance, E[x^4]


def normal_moments(std):
    return std**2, 3 * std**4


def truncated_moments(std):
    # standard normal truncated to [-2, 2]: E[z^2] = TRUNC^2, E[z^4] = 3 - 2*2^3*phi(2)/(1-2*Q(2)) ...
    # computed numerically once, independently of the code under test:
    z = np.linspace(-2, 2, 400001)
    pdf = np.exp(-z * z / 2)
    m2 = np.trapezoid(z**2 * pdf, z) / np.trapezoid(pdf, z)
    m4 = np.trapezoid(z**4 * pdf, z) / np.trapezoid(pdf, z)
    return std**2 * m2, std**4 * m4


def test_truncation_constant_is_the_truncated_standard_deviation():
    var, _ = truncated_moments(1.0)
    assert math.sqrt(var) == pytest.approx(TRUNC, rel=1e-9)
    assert I.TRUNCATED_NORMAL_STDDEV == TRUNC


# ---------------------------------------------------------------------------------------
# The seed transcript: Dense(16, input_shape=(8,)) kernel
# ---------------------------------------------------------------------------------------


def test_glorot_uniform_dense_kernel_8x16_within_half():
    init = I.get("glorot_uniform")
    limit = math.sqrt(6 / (8 + 16))
    assert limit == 0.5
    samples = np.stack([init((8, 16)) for _ in range(400)])
    assert samples.shape == (400, 8, 16) and samples.dtype == np.float32
    assert np.abs(samples).max() <= 0.5
    assert_mean_var(samples, 0.0, 2 / (8 + 16), fourth_moment=uniform_moments(limit)[1])
    # the values fill the interval, not a corner of it
    assert samples.min() < -0.49 and samples.max() > 0.49


def test_zeros_bias():
    bias = I.get("zeros")((16,))
    assert bias.shape == (16,) and bias.dtype == np.float32 and not bias.any()


# ---------------------------------------------------------------------------------------
# Variance scaling family
# ---------------------------------------------------------------------------------------

PRESETS = [
    (I.GlorotUniform, 1.0, "fan_avg", "uniform"),
    (I.GlorotNormal, 1.0, "fan_avg", "truncated_normal"),
    (I.HeUniform, 2.0, "fan_in", "uniform"),
    (I.HeNormal, 2.0, "fan_in", "truncated_normal"),
    (I.LecunUniform, 1.0, "fan_in", "uniform"),
    (I.LecunNormal, 1.0, "fan_in", "truncated_normal"),
]


def expected_variance(shape, scale, mode):
    fan_in, fan_out = shape[0], shape[1]
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return scale / max(1.0, n)


def check_distribution(values, variance, distribution):
    if distribution == "uniform":
        limit = math.sqrt(3 * variance)
        assert np.abs(values).max() <= limit * (1 + 1e-6)
        assert_mean_var(values, 0.0, variance, fourth_moment=uniform_moments(limit)[1])
    elif distribution == "truncated_normal":
        stddev = math.sqrt(variance) / TRUNC  # Keras's correction: truncated variance == variance
        assert np.abs(values).max() <= 2 * stddev * (1 + 1e-6)
        var, m4 = truncated_moments(stddev)
        assert var == pytest.approx(variance, rel=1e-6)
        assert_mean_var(values, 0.0, variance, fourth_moment=m4)
    else:
        assert_mean_var(values, 0.0, variance, fourth_moment=3 * variance**2)


@pytest.mark.parametrize("cls, scale, mode, distribution", PRESETS, ids=lambda p: getattr(p, "__name__", None))
def test_presets_follow_keras_formulas(cls, scale, mode, distribution):
    shape = (300, 200)
    values = cls(seed=7)(shape, dtype="float64")
    assert values.dtype == np.float64
    check_distribution(values, expected_variance(shape, scale, mode), distribution)
    init = cls()
    assert (init.scale, init.mode, init.distribution) == (scale, mode, distribution)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["uniform", "truncated_normal", "untruncated_normal"])
def test_variance_scaling_modes_and_distributions(mode, distribution):
    shape = (250, 120)
    init = I.VarianceScaling(scale=3.0, mode=mode, distribution=distribution, seed=11)
    check_distribution(init(shape, "float64"), expected_variance(shape, 3.0, mode), distribution)


def test_variance_scaling_normal_means_truncated_normal():
    assert I.VarianceScaling(distribution="normal").distribution == "truncated_normal"
    assert I.VarianceScaling(distribution="Uniform").distribution == "uniform"


def test_compute_fans_any_rank():
    assert I.compute_fans(()) == (1, 1)
    assert I.compute_fans((7,)) == (7, 7)
    assert I.compute_fans((8, 16)) == (8, 16)
    assert I.compute_fans((5, 4, 3)) == (20, 15)  # Keras: receptive field 5
    assert I.compute_fans((3, 3, 4, 32)) == (3 * 3 * 4, 3 * 3 * 32)
    assert I.compute_fans(6) == (6, 6)


def test_compute_fans_with_explicit_axes():
    assert I.compute_fans((4, 2, 8), input_axes=[0], output_axes=[1, 2]) == (4, 16)
    assert I.compute_fans((4, 2, 8), input_axes=[0, 1], output_axes=[-1]) == (8, 8)
    assert I.compute_fans((4, 2, 8), input_axes=0, output_axes=2) == (4, 8)
    # as in Keras, one side alone does not override the shape rule
    assert I.compute_fans((4, 2, 8), input_axes=[0]) == (8, 32)
    with pytest.raises(ValueError, match="out of range"):
        I.compute_fans((4, 2), input_axes=[2], output_axes=[0])


def test_variance_scaling_uses_axes_and_conv_fans():
    conv = I.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform", seed=0)((3, 3, 16, 8), "float64")
    check_distribution(conv, 1.0 / (3 * 3 * 16), "uniform")
    axes = I.HeUniform(seed=0, input_axes=[0, 1], output_axes=[2])((20, 30, 4), "float64")
    check_distribution(axes, 2.0 / 600, "uniform")


def test_fan_below_one_is_clamped_like_keras():
    values = I.VarianceScaling(scale=0.5, mode="fan_in", distribution="uniform", seed=0)((0, 5))
    assert values.shape == (0, 5)
    scalar = I.VarianceScaling(scale=0.5, distribution="uniform", seed=0)(())
    assert scalar.shape == () and abs(float(scalar)) <= math.sqrt(1.5)


# ---------------------------------------------------------------------------------------
# Plain random and constant initializers
# ---------------------------------------------------------------------------------------


def test_random_normal_mean_and_stddev():
    values = I.RandomNormal(mean=2.0, stddev=0.5, seed=3)((400, 250), "float64")
    var, m4 = normal_moments(0.5)
    assert_mean_var(values, 2.0, var, fourth_moment=m4)


def test_truncated_normal_never_beyond_two_stddev():
    values = I.TruncatedNormal(mean=-1.0, stddev=0.3, seed=5)((500, 200), "float64")
    assert np.abs(values + 1.0).max() <= 0.6
    var, m4 = truncated_moments(0.3)  # uncorrected: std is 0.88 * stddev, as in Keras
    assert_mean_var(values, -1.0, var, fourth_moment=m4)
    assert values.std() == pytest.approx(0.3 * TRUNC, rel=0.01)
    float32 = I.TruncatedNormal(stddev=1.0, seed=5)((100_000,))
    assert np.abs(float32).max() <= 2.0


def test_random_uniform_bounds_and_moments():
    values = I.RandomUniform(minval=-0.2, maxval=0.6, seed=1)((500, 200))
    assert values.min() >= -0.2 and values.max() < np.float32(0.6)
    var, m4 = uniform_moments(0.4)
    assert_mean_var(values, 0.2, var, fourth_moment=m4)
    assert I.RandomUniform(1.0, 1.0, seed=0)((3,)).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (3, 2, 4), (2, 2, 3, 12)])
def test_orthogonal(shape):
    q = I.Orthogonal(gain=1.0, seed=2)(shape, "float64")
    assert q.shape == shape
    flat = q.reshape(-1, shape[-1])
    if flat.shape[0] >= flat.shape[1]:
        np.testing.assert_allclose(flat.T @ flat, np.eye(flat.shape[1]), atol=1e-12)
    else:
        np.testing.assert_allclose(flat @ flat.T, np.eye(flat.shape[0]), atol=1e-12)
    scaled = I.Orthogonal(gain=3.0, seed=2)(shape, "float64")
    np.testing.assert_allclose(scaled, 3.0 * q, rtol=1e-12)
    assert I.Orthogonal(seed=2)(shape).dtype == np.float32


def test_orthogonal_needs_rank_two():
    with pytest.raises(ValueError, match=r"rank >= 2.*\(5,\)"):
        I.Orthogonal()((5,))


def test_identity():
    assert I.Identity().get_config() == {} and I.Identity(gain=2.5).get_config() == {"gain": 2.5}
    np.testing.assert_array_equal(I.Identity()((3, 3)), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(I.Identity(gain=0.5)((2, 4), "float64"), 0.5 * np.eye(2, 4))
    assert I.IdentityInitializer is I.Identity
    with pytest.raises(ValueError, match=r"2-D.*\(2, 2, 2\)"):
        I.Identity()((2, 2, 2))


def test_constant_zeros_ones():
    np.testing.assert_array_equal(I.Constant(2.5)((2, 3)), np.full((2, 3), 2.5, np.float32))
    np.testing.assert_array_equal(I.Constant([1.0, 2.0])((3, 2), "float64"), [[1, 2]] * 3)
    np.testing.assert_array_equal(I.Ones()((2,), "int32"), np.ones(2, np.int32))
    assert I.Zeros()((2, 2), "float64").dtype == np.float64
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)"):
        I.Constant([1.0, 2.0, 3.0])((2, 2))
    with pytest.raises(ValueError, match="'a'"):
        I.Constant("a")


def test_get_accepts_an_array_like_keras():
    kernel = np.arange(6, dtype=np.float64).reshape(2, 3)
    init = I.get(kernel)
    np.testing.assert_array_equal(init((2, 3)), kernel.astype(np.float32))
    np.testing.assert_array_equal(I.deserialize(json_round_trip(init))((2, 3), "float64"), kernel)


def test_constant_array_value_round_trips_through_json():
    init = I.Constant(np.array([0.5, -1.0], dtype=np.float32))
    config = json_round_trip(init)
    assert config["config"]["value"] == {"class_name": "__numpy__", "config": {"value": [0.5, -1.0], "dtype": "float32"}}
    rebuilt = I.deserialize(config)
    np.testing.assert_array_equal(rebuilt((2, 2)), init((2, 2)))


# ---------------------------------------------------------------------------------------
# Seeds and dtypes
# ---------------------------------------------------------------------------------------

RANDOM_CLASSES = [I.RandomNormal, I.RandomUniform, I.TruncatedNormal, I.VarianceScaling, I.Orthogonal] + [
    p[0] for p in PRESETS
]


@pytest.mark.parametrize("cls", RANDOM_CLASSES, ids=lambda c: c.__name__)
def test_seed_reproducible_and_unseeded_varies(cls):
    seeded = cls(seed=42)
    first = seeded((6, 5))
    np.testing.assert_array_equal(first, seeded((6, 5)))  # same instance, same values
    np.testing.assert_array_equal(first, cls(seed=42)((6, 5)))  # same seed, same values
    np.testing.assert_array_equal(first, cls.from_config(seeded.get_config())((6, 5)))
    assert not np.array_equal(first, cls(seed=43)((6, 5)))
    unseeded = cls()
    assert not np.array_equal(unseeded((6, 5)), unseeded((6, 5)))  # fresh values per call
    assert not np.array_equal(cls(seed=-42)((6, 5)), first)


def test_keras_seed_generator_config_is_a_reproducible_stream():
    # what Keras 3.15 writes for RandomNormal(seed=keras.random.SeedGenerator(9))
    seed = {"module": "keras.random", "class_name": "SeedGenerator", "config": {"seed": 9, "name": "seed_generator"},
            "registered_name": None}
    a, b = I.RandomNormal(seed=seed), I.RandomNormal(seed=seed)
    a1, a2 = a((4,)), a((4,))
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, b((4,)))
    np.testing.assert_array_equal(a2, b((4,)))
    assert a.get_config()["seed"] == seed


@pytest.mark.parametrize("cls", RANDOM_CLASSES + [I.Zeros, I.Ones, I.Constant, I.Identity], ids=lambda c: c.__name__)
def test_default_dtype_float32_and_float64(cls):
    assert cls()((4, 4)).dtype == np.float32
    assert cls()((4, 4), dtype=None).dtype == np.float32
    assert cls()((4, 4), dtype="float64").dtype == np.float64
    assert cls()((4, 4), dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("cls", RANDOM_CLASSES, ids=lambda c: c.__name__)
def test_random_initializers_refuse_integer_dtypes(cls):
    with pytest.raises(ValueError, match="'int32'"):
        cls()((2, 2), dtype="int32")


@pytest.mark.parametrize("shape", [(2, -1), (2.0, 3), "abc", (None, 3), (True, 2)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match="shape"):
        I.GlorotUniform()(shape)


@pytest.mark.parametrize(
    "make, quoted",
    [
        (lambda: I.RandomNormal(stddev=-0.1), "-0.1"),
        (lambda: I.TruncatedNormal(stddev=-1), "-1"),
        (lambda: I.RandomNormal(mean=float("nan")), "nan"),
        (lambda: I.RandomUniform(minval=1.0, maxval=0.0), "minval=1.0"),
        (lambda: I.VarianceScaling(scale=0.0), "0.0"),
        (lambda: I.VarianceScaling(mode="fan_sum"), "'fan_sum'"),
        (lambda: I.VarianceScaling(distribution="cauchy"), "'cauchy'"),
        (lambda: I.VarianceScaling(input_axes="a"), "'a'"),
        (lambda: I.GlorotUniform(seed=1.5), "1.5"),
        (lambda: I.GlorotUniform(seed="7"), "'7'"),
        (lambda: I.GlorotUniform(seed=True), "True"),
        (lambda: I.Orthogonal(gain="big"), "'big'"),
        (lambda: I.Identity(gain=float("inf")), "inf"),
    ],
)
def test_bad_arguments_quote_the_value(make, quoted):
    with pytest.raises(ValueError) as info:
        make()
    assert quoted in str(info.value)


# ---------------------------------------------------------------------------------------
# Names, get / serialize / deserialize, configs
# ---------------------------------------------------------------------------------------

ALIASES = {
    "zeros": I.Zeros, "zero": I.Zeros, "Zeros": I.Zeros,
    "ones": I.Ones, "one": I.Ones, "constant": I.Constant,
    "random_normal": I.RandomNormal, "normal": I.RandomNormal,
    "random_uniform": I.RandomUniform, "uniform": I.RandomUniform,
    "truncated_normal": I.TruncatedNormal, "variance_scaling": I.VarianceScaling,
    "glorot_uniform": I.GlorotUniform, "glorot_normal": I.GlorotNormal,
    "he_uniform": I.HeUniform, "he_normal": I.HeNormal,
    "lecun_uniform": I.LecunUniform, "lecun_normal": I.LecunNormal,
    "orthogonal": I.Orthogonal, "Orthogonal": I.Orthogonal, "OrthogonalInitializer": I.Orthogonal,
    "identity": I.Identity, "Identity": I.Identity, "IdentityInitializer": I.Identity,
    "GlorotUniform": I.GlorotUniform,
}


@pytest.mark.parametrize("name, cls", ALIASES.items())
def test_get_by_name(name, cls):
    obj = I.get(name)
    assert type(obj) is cls
    assert obj.get_config() == cls().get_config()


def test_get_passthrough_and_errors():
    assert I.get(None) is None
    init = I.HeNormal(seed=1)
    assert I.get(init) is init
    assert type(I.get(I.LecunNormal)) is I.LecunNormal

    def my_init(shape, dtype="float32"):
        return np.full(shape, 3.0, dtype)

    assert I.get(my_init) is my_init
    with pytest.raises(ValueError, match="'glorot_uniformm'"):
        I.get("glorot_uniformm")
    with pytest.raises(ValueError, match="42"):
        I.get(42)
    with pytest.raises(ValueError, match="'L2'.*keras.regularizers"):
        I.deserialize({"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.1}, "registered_name": None})


# Keras 3.15 get_config() of every initializer with default arguments (keras/src/initializers).
KERAS_DEFAULT_CONFIGS = {
    "Zeros": {},
    "Ones": {},
    "Constant": {"value": 0.0},
    "Identity": {},  # Keras 3.15 drops the gain from the config
    "RandomNormal": {"seed": None, "mean": 0.0, "stddev": 0.05},
    "RandomUniform": {"seed": None, "minval": -0.05, "maxval": 0.05},
    "TruncatedNormal": {"seed": None, "mean": 0.0, "stddev": 0.05},
    "VarianceScaling": {"seed": None, "scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal",
                        "input_axes": None, "output_axes": None},
    "GlorotUniform": {"seed": None, "input_axes": None, "output_axes": None},
    "GlorotNormal": {"seed": None, "input_axes": None, "output_axes": None},
    "HeUniform": {"seed": None, "input_axes": None, "output_axes": None},
    "HeNormal": {"seed": None, "input_axes": None, "output_axes": None},
    "LecunUniform": {"seed": None, "input_axes": None, "output_axes": None},
    "LecunNormal": {"seed": None, "input_axes": None, "output_axes": None},
    "Orthogonal": {"seed": None, "gain": 1.0},
}


@pytest.mark.parametrize("class_name, config", KERAS_DEFAULT_CONFIGS.items())
def test_serialized_form_matches_keras(class_name, config):
    obj = I.deserialize(class_name)
    assert I.serialize(obj) == {
        "module": "keras.initializers", "class_name": class_name, "config": config, "registered_name": None,
    }


FIXTURE_CONFIGS = fixture_configs(module="keras.initializers")


def test_every_keras_fixture_initializer_round_trips_exactly():
    kinds = set()
    for config in FIXTURE_CONFIGS:
        obj = I.deserialize(config)
        assert I.serialize(obj) == config
        assert json_round_trip(I.deserialize(json_round_trip(obj))) == config
        kinds.add(config["class_name"])
    assert {"GlorotUniform", "Zeros", "HeNormal", "RandomNormal"} <= kinds


def test_fixture_seeded_initializers_are_reproducible():
    seeded = [c for c in FIXTURE_CONFIGS if c["config"].get("seed") is not None]
    assert seeded
    for config in seeded:
        np.testing.assert_array_equal(I.deserialize(config)((24, 24)), I.deserialize(config)((24, 24)))


@pytest.mark.parametrize(
    "config, cls, attrs",
    [
        # tf.keras 2 (tfkeras2_mlp.h5): glorot_uniform spelled out as VarianceScaling
        ({"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}},
         I.VarianceScaling, {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform"}),
        ({"class_name": "Zeros", "config": {}}, I.Zeros, {}),
        ({"class_name": "GlorotUniform", "config": {"seed": None}}, I.GlorotUniform, {"seed": None}),
        # TF 1.x wrote the dtype into initializer configs
        ({"class_name": "GlorotUniform", "config": {"seed": None, "dtype": "float32"}}, I.GlorotUniform, {"seed": None}),
        ({"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.05, "seed": 4}}, I.RandomNormal, {"seed": 4}),
        ({"class_name": "Orthogonal", "config": {"gain": 2.0, "seed": None}}, I.Orthogonal, {"gain": 2.0}),
        ({"class_name": "Identity", "config": {"gain": 1.0}}, I.Identity, {"gain": 1.0}),
        ({"class_name": "Constant", "config": {"value": 0.1}}, I.Constant, {"value": 0.1}),
        ({"module": "keras.src.initializers.random_initializers", "class_name": "HeUniform",
          "config": {"seed": 1}, "registered_name": None}, I.HeUniform, {"seed": 1}),
    ],
)
def test_keras2_dialect_and_older_spellings(config, cls, attrs):
    obj = I.deserialize(config)
    assert type(obj) is cls
    for key, value in attrs.items():
        assert getattr(obj, key) == value


def test_unknown_config_key_is_a_clear_error():
    with pytest.raises(ValueError, match=r"GlorotUniform.*\['scale'\]"):
        I.deserialize({"class_name": "GlorotUniform", "config": {"scale": 2.0}})


def test_subclass_with_default_from_config():
    class Halves(I.Initializer):
        def __init__(self, fill=0.5):
            self.fill = fill

        def __call__(self, shape, dtype="float32"):
            return np.full(shape, self.fill, dtype)

        def get_config(self):
            return {"fill": self.fill}

    clone = Halves.from_config(Halves(0.25).get_config())
    assert clone.fill == 0.25 and clone((2,)).tolist() == [0.25, 0.25]
    assert repr(clone) == "Halves(fill=0.25)"
    assert Halves(0.25).clone().get_config() == {"fill": 0.25}
    with pytest.raises(NotImplementedError):
        I.Initializer()((2,))


# ---------------------------------------------------------------------------------------
# Round trip over argument combinations
# ---------------------------------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000)
positive = st.floats(1e-6, 1e3) | st.integers(1, 1000)
non_negative = st.floats(0, 1e3) | st.integers(0, 1000)
seeds = st.none() | st.integers(-(2**40), 2**40)
axes = st.none() | st.integers(-3, 2) | st.lists(st.integers(0, 2), min_size=1, max_size=3)


@st.composite
def uniform_bounds(draw):
    a, b = draw(finite), draw(finite)
    return {"minval": min(a, b), "maxval": max(a, b), "seed": draw(seeds)}


INITIALIZER_ARGS = st.one_of(
    st.tuples(st.just(I.Zeros), st.just({})),
    st.tuples(st.just(I.Ones), st.just({})),
    st.tuples(st.just(I.Constant), st.fixed_dictionaries({"value": finite})),
    st.tuples(st.just(I.Identity), st.fixed_dictionaries({"gain": finite})),
    st.tuples(st.just(I.Orthogonal), st.fixed_dictionaries({"gain": finite, "seed": seeds})),
    st.tuples(st.sampled_from([I.RandomNormal, I.TruncatedNormal]),
              st.fixed_dictionaries({"mean": finite, "stddev": non_negative, "seed": seeds})),
    st.tuples(st.just(I.RandomUniform), uniform_bounds()),
    st.tuples(st.just(I.VarianceScaling), st.fixed_dictionaries({
        "scale": positive, "mode": st.sampled_from(["fan_in", "fan_out", "fan_avg"]),
        "distribution": st.sampled_from(["truncated_normal", "untruncated_normal", "uniform"]),
        "seed": seeds, "input_axes": axes, "output_axes": axes})),
    st.tuples(st.sampled_from([p[0] for p in PRESETS]),
              st.fixed_dictionaries({"seed": seeds, "input_axes": axes, "output_axes": axes})),
)


@settings(max_examples=300, deadline=None)
@given(INITIALIZER_ARGS)
def test_config_round_trip_for_any_arguments(case):
    cls, kwargs = case
    obj = cls(**kwargs)
    config = obj.get_config()
    assert cls.from_config(config).get_config() == config
    serialized = json_round_trip(obj)
    assert serialized["class_name"] in KERAS_DEFAULT_CONFIGS
    rebuilt = I.deserialize(serialized)
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    if kwargs.get("seed") is not None:
        np.testing.assert_array_equal(rebuilt((3, 4, 5)), obj((3, 4, 5)))
