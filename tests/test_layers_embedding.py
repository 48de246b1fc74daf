"""Embedding: ids of every integer dtype, bounds errors, and integer model inputs that reach the
embedding unchanged through predict and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

import fastdense
from fastdense.layers import Concatenate, Dense, Embedding, Flatten
from fastdense.models import Model, load_model
from fastdense.saving.cli import predict_main

RNG = np.random.default_rng(5)


def table_layer(input_dim=10, output_dim=3):
    layer = Embedding(input_dim, output_dim)
    layer.build()
    table = RNG.standard_normal((input_dim, output_dim)).astype(np.float32)
    layer.set_weights([table])
    return layer, table


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])
def test_any_integer_dtype_gathers_rows(dtype):
    layer, table = table_layer()
    ids = RNG.integers(0, 10, (4, 5)).astype(dtype)
    out = layer(ids)
    assert out.shape == (4, 5, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, table[ids.astype(np.int64)])


def test_whole_float_ids_are_accepted_others_refused():
    layer, table = table_layer()
    np.testing.assert_array_equal(layer(np.array([[1.0, 9.0]])), table[[[1, 9]]])
    with pytest.raises(ValueError, match="integer ids"):
        layer(np.array([[1.5]]))
    with pytest.raises(ValueError, match="integer ids"):
        layer(np.array([[np.nan]]))
    with pytest.raises(TypeError, match="integer ids"):
        layer(np.array([["a"]]))


@pytest.mark.parametrize("bad", [10, -1, 2**40])
def test_out_of_range_ids_name_the_id_and_its_index(bad):
    layer, _ = table_layer()
    ids = np.zeros((2, 3), np.int64)
    ids[1, 2] = bad
    with pytest.raises(ValueError, match=rf"ids in \[0, 10\), got {bad} at index \(1, 2\)"):
        layer(ids)


def test_arguments_and_config():
    with pytest.raises(ValueError, match="input_dim"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match="output_dim"):
        Embedding(3, 2.5)
    layer = Embedding(5, 2, mask_zero=True, input_length=7, weights=[np.ones((5, 2))])
    assert layer.built and layer.mask_zero
    config = layer.get_config()
    assert config["mask_zero"] is True and config["embeddings_initializer"]["class_name"] == "RandomUniform"
    assert "activity_regularizer" in config and config["quantization_config"] is None
    again = Embedding.from_config(config)
    assert again.input_dim == 5 and again.output_dim == 2


def recommender():
    ids = fastdense.Input((4,), dtype="int32", name="ids")
    num = fastdense.Input((3,), name="num")
    emb = Flatten()(Embedding(2**20, 2, name="emb")(ids))
    out = Dense(2, name="head")(Concatenate()([emb, Dense(4, name="num_dense")(num)]))
    return Model([ids, num], out, name="rec")


def test_integer_model_inputs_are_not_cast():
    model = recommender()
    emb = model.get_layer("emb")
    # ids above 2**24 would round in float32: int64 ids must arrive as they are
    big = 2**20 - 1
    ids = np.array([[big, 0, 1, 2]], np.int64)
    num = RNG.standard_normal((1, 3)).astype(np.float32)
    table = emb.get_weights()[0]
    direct = model.predict([ids, num])
    flat = table[ids.reshape(-1)].reshape(1, -1)
    head, num_dense = model.get_layer("head"), model.get_layer("num_dense")
    hidden = num.astype(np.float64) @ num_dense.kernel + num_dense.bias
    expected = np.concatenate([flat, hidden], 1) @ head.kernel + head.bias
    np.testing.assert_allclose(direct, expected, rtol=1e-5, atol=1e-5)
    too_big = ids.copy()
    too_big[0, 0] = 2**32 + 1   # would wrap to 1 if it were cast to int32
    with pytest.raises(ValueError, match=r"got 4294967297 at index \(0, 0\)"):
        model.predict([too_big, num])


def test_the_cli_passes_integer_inputs_through(tmp_path):
    model = recommender()
    model.save(tmp_path / "rec.keras")
    ids = RNG.integers(0, 2**20, (6, 4)).astype(np.int64)
    num = RNG.standard_normal((6, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x0=ids, x1=num)
    assert predict_main([str(tmp_path / "rec.keras"), str(tmp_path / "in.npz"), "-o", str(tmp_path / "y.npy"),
                         "-q"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), load_model(tmp_path / "rec.keras").predict([ids, num]),
                               rtol=1e-6, atol=1e-6)
    ids[2, 1] = 2**20
    np.savez(tmp_path / "bad.npz", x0=ids, x1=num)
    assert predict_main([str(tmp_path / "rec.keras"), str(tmp_path / "bad.npz"), "-o", str(tmp_path / "z.npy")]) == 1
    assert not (tmp_path / "z.npy").exists()
