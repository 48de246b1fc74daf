"""ReLU, LeakyReLU, PReLU, ELU, Softmax and the inference-identity layers, against float64 NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from fastdense.layers import (
    ELU,
    ActivityRegularization,
    AlphaDropout,
    Dense,
    GaussianDropout,
    GaussianNoise,
    Identity,
    LeakyReLU,
    PReLU,
    ReLU,
    Softmax,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from fastdense.models import Sequential, load_model
from fastdense.saving.errors import UnsupportedLayerError

RNG = np.random.default_rng(7)
TOL = dict(rtol=2e-6, atol=2e-6)


def relu64(x, negative_slope=0.0, max_value=None, threshold=0.0):
    x = x.astype(np.float64)
    out = np.where(x >= threshold, x, negative_slope * (x - threshold))
    return out if max_value is None else np.minimum(out, max_value)


@pytest.mark.parametrize("kwargs", [{}, {"max_value": 6.0}, {"negative_slope": 0.1},
                                    {"threshold": 0.5, "negative_slope": 0.2, "max_value": 1.5}])
def test_relu_options(kwargs):
    x = (RNG.standard_normal((5, 9)) * 4).astype(np.float32)
    np.testing.assert_allclose(ReLU(**kwargs)(x), relu64(x, **kwargs), **TOL)


def test_relu_validation():
    with pytest.raises(ValueError, match="max_value"):
        ReLU(max_value=-1.0)
    with pytest.raises(ValueError, match="negative_slope"):
        ReLU(negative_slope=None)
    with pytest.raises(ValueError, match="threshold"):
        ReLU(threshold=-0.5)
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(negative_slope=-0.1)


def test_leaky_relu_elu_and_keras2_alpha():
    x = (RNG.standard_normal((4, 6)) * 3).astype(np.float32)
    np.testing.assert_allclose(LeakyReLU()(x), np.where(x >= 0, x, 0.3 * x.astype(np.float64)), **TOL)
    old = LeakyReLU.from_config({"name": "lr", "alpha": 0.25})
    assert old.negative_slope == 0.25 and "alpha" not in old.get_config()
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(ELU(alpha=0.5)(x), np.where(x64 > 0, x64, 0.5 * np.expm1(x64)), rtol=1e-5, atol=1e-6)
    assert ELU(alpha=0.5).get_config()["alpha"] == 0.5


@pytest.mark.parametrize("shared_axes", [None, [1], [1, 2], 2])
def test_prelu_alpha_and_shared_axes(shared_axes):
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    layer = PReLU(shared_axes=shared_axes)
    layer.build(x.shape)
    shared = [] if shared_axes is None else (shared_axes if isinstance(shared_axes, list) else [shared_axes])
    shape = tuple(1 if i + 1 in shared else d for i, d in enumerate(x.shape[1:]))
    assert layer.alpha.shape == shape
    alpha = RNG.uniform(0, 1, shape)
    layer.set_weights([alpha])
    np.testing.assert_allclose(layer(x), np.where(x >= 0, x, alpha * x.astype(np.float64)), **TOL)
    config = layer.get_config()
    assert config["shared_axes"] == (None if shared_axes is None else shared)
    assert config["alpha_initializer"]["class_name"] == "Zeros"
    assert PReLU.from_config(config).get_config() == config


def test_prelu_regularizer_and_constraint_in_config():
    layer = PReLU(alpha_regularizer="l2", alpha_constraint="non_neg", alpha_initializer="ones")
    config = layer.get_config()
    assert config["alpha_regularizer"]["class_name"] == "L2"
    assert config["alpha_constraint"]["class_name"] == "NonNeg"
    layer(np.ones((2, 3)))
    assert len(layer.losses) == 1


def softmax64(x, axis):
    z = x.astype(np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 1, [1, 2], [-1]])
def test_softmax_axes(axis):
    x = (RNG.standard_normal((2, 3, 4)) * 3).astype(np.float32)
    axes = tuple(axis) if isinstance(axis, list) else axis
    np.testing.assert_allclose(Softmax(axis=axis)(x), softmax64(x, axes), rtol=1e-5, atol=1e-7)
    assert Softmax(axis=axis).get_config()["axis"] == axis


def test_softmax_mask():
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    mask = np.array([[True, True, False, True], [False, True, True, True]])
    out = Softmax()(x, mask=mask)
    expected = softmax64(np.where(mask, x, -1e9), -1) * mask
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)


IDENTITIES = [
    (GaussianNoise, {"stddev": 0.3, "seed": 1}),
    (GaussianDropout, {"rate": 0.3, "seed": None}),
    (AlphaDropout, {"rate": 0.2, "noise_shape": None, "seed": None}),
    (ActivityRegularization, {"l1": 0.01, "l2": 0.0}),
    (Identity, {}),
]


@pytest.mark.parametrize("cls,kwargs", IDENTITIES)
def test_identity_layers_return_their_input(cls, kwargs):
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    layer = cls(**kwargs)
    assert layer(x) is x
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    assert "activity_regularizer" not in config
    if cls is not Identity:
        with pytest.raises(NotImplementedError, match="inference only"):
            layer(x, training=True)


def test_spatial_dropouts():
    for cls, rank in ((SpatialDropout1D, 3), (SpatialDropout2D, 4), (SpatialDropout3D, 5)):
        x = np.ones((2,) * rank, np.float32)
        layer = cls(0.5)
        assert layer(x) is x
        with pytest.raises(ValueError, match=f"{rank} dimensions"):
            layer(np.ones((2,) * (rank - 1), np.float32))
        config = layer.get_config()
        assert config["dtype"] == "float32" and config["rate"] == 0.5
        assert cls.from_config({**config, "trainable": True, "noise_shape": None}).rate == 0.5
    assert SpatialDropout2D(0.1).get_config()["data_format"] == "channels_last"


def test_activity_regularization_records_its_penalty():
    layer = ActivityRegularization(l1=0.5, l2=0.25)
    x = np.array([[1.0, -2.0]], np.float32)
    layer(x)
    assert layer.losses == [pytest.approx(0.5 * 3.0 + 0.25 * 5.0)]


def test_stack_saves_and_reloads(tmp_path):
    model = Sequential([Dense(6, input_shape=(4,)), ReLU(max_value=2.0), Dense(6), LeakyReLU(0.1), Dense(6), PReLU(),
                        ELU(), GaussianNoise(0.1), AlphaDropout(0.1), Dense(3), Softmax()])
    model.layers[5].set_weights([RNG.uniform(0, 1, (6,))])
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    y = model.predict(x)
    for ext in (".keras", ".h5"):
        model.save(tmp_path / f"m{ext}")
        np.testing.assert_array_equal(load_model(tmp_path / f"m{ext}").predict(x), y)


def test_missing_layers_are_refused_together(tmp_path):
    import json
    import zipfile

    model = Sequential([Dense(2, input_shape=(3,)), ReLU()])
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    layers = config["config"]["layers"]
    layers[1:] = [{"module": "keras.layers", "class_name": c, "config": {"name": n}, "registered_name": None}
                  for c, n in (("Conv1D", "conv"), ("GRU", "gru"), ("MultiHeadAttention", "mha"))]
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(UnsupportedLayerError) as info:
        load_model(tmp_path / "bad.keras")
    assert info.value.layers == [("Conv1D", "conv"), ("GRU", "gru"), ("MultiHeadAttention", "mha")]
