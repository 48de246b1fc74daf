"""Global pooling layers (fastdense/layers/pooling.py) against Keras 3.15.1's files and NumPy.

Fixtures: tests/fixtures/keras_pool (written by its mk_pool.py with Keras 3.15.1, torch backend):
``pool_text`` (int ids -> Embedding -> GlobalAveragePooling1D and GlobalMaxPooling1D ->
Concatenate -> Dense relu -> Dense softmax), ``pool_image`` (two inputs: GlobalAveragePooling2D,
GlobalMaxPooling2D channels_first with keepdims, GlobalAveragePooling3D with keepdims,
GlobalMaxPooling3D -> Concatenate -> Dense) and ``pool_masked`` (Embedding(mask_zero=True) ->
GlobalAveragePooling1D, which Keras averages over the unmasked steps).
"""

from pathlib import Path

import numpy as np
import pytest

import fastdense
from fastdense.layers import (
    Dense,
    Embedding,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalAvgPool1D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
)
from fastdense.models import Model, Sequential, load_model, save_model
from fastdense.saving import KerasFileError

FIXTURES = Path(__file__).parent / "fixtures" / "keras_pool"


def _feed(data) -> list[np.ndarray]:
    return [data[f"x{i}"] for i in range(sum(k.startswith("x") for k in data.files))]


def _dense64(layer, x: np.ndarray) -> np.ndarray:
    kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
    return x @ kernel + bias


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_text_model_matches_keras_and_numpy(ext):
    data = np.load(FIXTURES / "pool_text.npz")
    model = load_model(FIXTURES / f"pool_text.{ext}")
    (ids,) = _feed(data)
    got = model.predict(ids)
    np.testing.assert_allclose(got, data["y"], rtol=1e-5, atol=1e-6)
    table = model.get_layer("embedding").get_weights()[0].astype(np.float64)
    steps = table[ids]
    h = np.concatenate([steps.mean(1), steps.max(1)], -1)
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    z = _dense64(dense[1], np.maximum(_dense64(dense[0], h), 0))
    expected = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(got, expected / expected.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_image_model_matches_keras_and_numpy(ext):
    data = np.load(FIXTURES / "pool_image.npz")
    model = load_model(FIXTURES / f"pool_image.{ext}")
    img, vol = _feed(data)
    got = model.predict([img, vol])
    np.testing.assert_allclose(got, data["y"], rtol=1e-5, atol=1e-5)
    i64, v64 = img.astype(np.float64), vol.astype(np.float64)
    h = np.concatenate([i64.mean((1, 2)), i64.max((2, 3)), v64.mean((1, 2, 3)), v64.max((1, 2, 3))], -1)
    (dense,) = [layer for layer in model.layers if isinstance(layer, Dense)]
    np.testing.assert_allclose(got, _dense64(dense, h), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_masked_average_is_refused(ext):
    # Keras averages the 4 unmasked steps; averaging all 8 would be a wrong answer
    with pytest.raises(KerasFileError, match=r"mask_zero=False upstream, got mask_zero=True"):
        load_model(FIXTURES / f"pool_masked.{ext}")


def test_mask_through_other_layers_is_refused_and_without_mask_accepted():
    ids = fastdense.Input((6,), dtype="int32")
    with pytest.raises(ValueError, match="Embedding 'masked'"):
        GlobalAveragePooling1D()(Dense(4)(Embedding(10, 3, mask_zero=True, name="masked")(ids)))
    # max pooling does not read masks in Keras either
    assert GlobalMaxPooling1D()(Embedding(10, 3, mask_zero=True)(ids)).shape == (None, 3)
    assert GlobalAveragePooling1D()(Embedding(10, 3)(ids)).shape == (None, 3)


@pytest.mark.parametrize(("cls", "shape", "axes"), [
    (GlobalAveragePooling1D, (2, 5, 3), (1,)),
    (GlobalMaxPooling1D, (2, 5, 3), (1,)),
    (GlobalAveragePooling2D, (2, 4, 5, 3), (1, 2)),
    (GlobalMaxPooling2D, (2, 4, 5, 3), (1, 2)),
    (GlobalAveragePooling3D, (2, 2, 3, 4, 3), (1, 2, 3)),
    (GlobalMaxPooling3D, (2, 2, 3, 4, 3), (1, 2, 3)),
])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_values_shapes_and_configs(cls, shape, axes, data_format, keepdims):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = cls(data_format=data_format, keepdims=keepdims)
    if data_format == "channels_first":
        axes = tuple(a + 1 for a in axes)
    reduce = np.max if "Max" in cls.__name__ else np.mean
    expected = reduce(x.astype(np.float64), axis=axes, keepdims=keepdims)
    got = layer(x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + expected.shape[1:]
    config = layer.get_config()
    assert config["data_format"] == data_format and config["keepdims"] == keepdims
    np.testing.assert_array_equal(cls.from_config(config)(x), got)


def test_nan_and_bad_arguments():
    x = np.array([[[1.0, np.nan], [3.0, 2.0]]], np.float32)
    assert np.isnan(GlobalMaxPooling1D()(x)[0, 1]) and GlobalMaxPooling1D()(x)[0, 0] == 3.0
    assert GlobalAvgPool1D is GlobalAveragePooling1D
    with pytest.raises(ValueError, match="data_format"):
        GlobalAveragePooling2D(data_format="channels_middle")
    with pytest.raises(ValueError):
        GlobalAveragePooling2D()(np.ones((2, 3), np.float32))    # rank 2, expected 4


def test_saving_round_trip_and_model_calls(tmp_path):
    rng = np.random.default_rng(1)
    x = fastdense.Input((7, 4))
    y = Dense(2)(GlobalMaxPooling1D()(Dense(5, activation="tanh")(x)))
    model = Model(x, y)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    data = rng.standard_normal((3, 7, 4)).astype(np.float32)
    expected = model.predict(data)
    layered = model.layers[-1](model.layers[2](model.layers[1](data)))
    np.testing.assert_allclose(expected, layered, rtol=1e-6)
    for name in ("m.keras", "m.h5"):
        save_model(model, tmp_path / name)
        np.testing.assert_array_equal(load_model(tmp_path / name).predict(data), expected)
    seq = Sequential([fastdense.Input((7, 4)), GlobalAveragePooling1D(keepdims=True), Dense(2)])
    assert seq.predict(data).shape == (3, 1, 2)


def test_keras_reads_fastdense_pooling(tmp_path):
    keras = pytest.importorskip("keras")
    data = np.load(FIXTURES / "pool_image.npz")
    model = load_model(FIXTURES / "pool_image.keras")
    save_model(model, tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(theirs.predict(_feed(data), verbose=0)), data["y"], rtol=1e-5, atol=1e-5)


def test_explicit_mask_averages_the_kept_steps():
    # as Keras's GlobalAveragePooling1D.call(inputs, mask): sum over kept steps / their count
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], bool)
    expected = np.stack([x[0, :2].astype(np.float64).mean(0), x[1, :4].astype(np.float64).mean(0)])
    np.testing.assert_allclose(GlobalAveragePooling1D()(x, mask=mask), expected, rtol=1e-6)
    first = GlobalAveragePooling1D(data_format="channels_first")(np.swapaxes(x, 1, 2), mask=mask)
    np.testing.assert_allclose(first, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="mask of shape"):
        GlobalAveragePooling1D()(x, mask=mask[:, :4])


# ---- in the compiled plan (a POOL step, csrc/fd_plan.c)

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keepdims", [False, True])
def test_plan_pool_step_equals_the_layers(dtype, keepdims):
    from fastdense.models.plan import compile_plan

    rng = np.random.default_rng(4)
    x = fastdense.Input((9, 300), dtype=dtype)     # more columns than one 256-column chunk
    img = fastdense.Input((3, 4, 5), dtype=dtype)
    a = GlobalAveragePooling1D(keepdims=keepdims, dtype=dtype)(x)
    m = GlobalMaxPooling1D(keepdims=keepdims, dtype=dtype)(x)
    i = GlobalMaxPooling2D(keepdims=keepdims, dtype=dtype)(img)
    j = GlobalAveragePooling2D(dtype=dtype)(img)
    model = Model([x, img], [a, m, i, j])
    assert compile_plan(model, [(9, 300), (3, 4, 5)], np.dtype(dtype)) is not None
    xs = [rng.standard_normal((5, 9, 300)).astype(dtype), rng.standard_normal((5, 3, 4, 5)).astype(dtype)]
    xs[0][1, 4, 7] = np.nan     # NaN wins the maximum, and makes the mean NaN
    xs[1][2, 0, 0, 1] = np.nan
    got = model.predict(xs)
    for g, layered in zip(got, model._run_layers(xs), strict=True):
        np.testing.assert_array_equal(g, layered)     # the same value, NaN where the layers have it
    x64 = xs[0].astype(np.float64)
    np.testing.assert_allclose(got[0], x64.mean(1, keepdims=keepdims), rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert np.isnan(got[1].reshape(5, 300)[1, 7]) and np.isnan(got[0].reshape(5, 300)[1, 7])
    assert np.isnan(got[2].reshape(5, 5)[2, 1])
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(x64.max(1, keepdims=keepdims)))


def test_plan_runs_the_text_model_and_leaves_channels_first_to_the_layers():
    from fastdense.models.plan import compile_plan

    text = load_model(FIXTURES / "pool_text.keras")
    assert compile_plan(text, [(8,)], np.dtype(np.float32)) is not None
    image = load_model(FIXTURES / "pool_image.keras")   # GlobalMaxPooling2D(data_format="channels_first")
    assert compile_plan(image, [(4, 5, 3), (2, 3, 4, 2)], np.dtype(np.float32)) is None


def test_an_inconsistent_pool_step_is_a_value_error():
    from fastdense import _kernels
    from fastdense.models.plan_steps import PlanBuffer, PlanStep

    def plan(**changes):
        step = PlanStep(_kernels.FD_STEP_POOL, (0,), 1, rows=4, n=3, mode=0)._replace(**changes)
        return _kernels.Plan(steps=[step], buffers=[PlanBuffer(12, input_index=0), PlanBuffer(3, output_index=0)],
                             glu_offset=0, sample_elems=1, dtype=np.float32)

    y = np.empty((2, 3), np.float32)
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    plan().run([x], [y], 2, 2, np.empty(2, np.float32), 1)
    np.testing.assert_array_equal(y, x.reshape(2, 4, 3).mean(1))
    for change in ({"mode": 2}, {"rows": 5}, {"n": 4}):
        with pytest.raises(ValueError):
            plan(**change)
