"""Quantized Embedding (Keras 3.15 int8 / int4): variables, quantize, the gather, files.

References, independent of fastdense's code paths:
- Keras 3.15.1 itself: tests/fixtures/keras_quant/emb_* (written by emb_make.py there, torch
  backend): ``Sequential(ids (5,) -> Embedding(40, 257) -> Flatten -> Dense(3))`` and a functional
  ``ids (4,) -> Embedding(30, 7)`` model, each quantized ``int8``, ``int4`` (Keras's default blocks
  of 128), ``int4pr`` (block_size=-1) and ``int4b4`` (block_size=4), saved as .keras and .h5; the
  .npz holds the ids ``x``, Keras's output ``y``, the float ``table`` and Keras's ``q``, ``scale``,
  ``zero``.
- NumPy transcriptions of Keras's formulas below: the quantizers in float32 as Keras's NumPy
  code runs them, the nibbles unpacked with int64 shifts, and the lookups in float64, rounded once
  to float32 (a float64 quotient or product of these operands rounded to float32 is the correctly
  rounded float32 result, i.e. Keras's float32 operation, bit for bit).
"""

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastdense
from fastdense import _kernels
from fastdense.layers import Dense, Embedding, Flatten
from fastdense.models import Model, Sequential, load_model
from fastdense.models.plan import compile_plan
from fastdense.saving import KerasFileError

FIXTURES = Path(__file__).parent / "fixtures" / "keras_quant"
CASES = {"int8": ("int8", None, -1), "int4": ("int4", None, 128),
         "int4pr": ("int4", {"class_name": "Int4QuantizationConfig", "config": {"block_size": -1}}, -1),
         "int4b4": ("int4", {"class_name": "Int4QuantizationConfig", "config": {"block_size": 4}}, 4)}
POLICY = {"int8": "int8_from_float32", "int4": "int4/128_from_float32", "int4pr": "int4/-1_from_float32",
          "int4b4": "int4/4_from_float32"}


# ------------------------------------------------------------------ references (NumPy, Keras's formulas)

def ref_quantize(table, mode, block):
    """(q as int64 (rows, dim), scale, zero or None): Keras 3.15 Embedding.quantize in float32."""
    t = np.asarray(table, np.float32)
    if mode == "int8" or block == -1:
        hi = 127 if mode == "int8" else 7
        scale = np.float32(hi) / (np.abs(t).max(axis=1) + np.float32(1e-7))
        q = np.clip(np.round(t * scale[:, None]), -hi - (mode == "int4"), hi)
        return q.astype(np.int64), scale, None
    rows, dim = t.shape
    groups = -(-dim // block)
    padded = np.zeros((rows, groups * block), np.float32)
    padded[:, :dim] = t                                      # Keras pads with zero columns
    g = padded.reshape(rows, groups, block)
    lo, hi = g.min(axis=2), g.max(axis=2)
    scale = (hi - lo + np.float32(1e-7)) / np.float32(15)
    zero = np.clip(np.round(-lo / scale) - np.float32(8), -8, 7)
    q = np.clip(np.round(g / scale[:, :, None]) + zero[:, :, None], -8, 7).reshape(rows, -1)[:, :dim]
    return q.astype(np.int64), scale, zero.astype(np.int64)


def ref_unpack(packed, dim):
    """int4 values from bytes, in int64: low nibble first, two's complement."""
    b = np.asarray(packed).view(np.uint8).astype(np.int64)
    nib = np.stack([b & 15, b >> 4], axis=-1).reshape(b.shape[0], -1)[:, :dim]
    return np.where(nib >= 8, nib - 16, nib)


def ref_lookup(ids, q, scale, zero, block):
    """Keras's _int8_call / _int4_call for ids: float64, rounded once to float32."""
    ids = np.asarray(ids, np.int64)
    rows = q[ids].astype(np.float64)
    if zero is None:
        return (rows / scale[ids][..., None].astype(np.float64)).astype(np.float32)
    col_group = np.arange(q.shape[1]) // block
    z = zero[ids][..., col_group].astype(np.float64)
    s = scale[ids][..., col_group].astype(np.float64)
    return ((rows - z) * s).astype(np.float32)


def layer_reference(layer, ids):
    w = dict(zip(layer.weight_names, layer.get_weights(), strict=True))
    q = w["embeddings"].astype(np.int64)
    if layer.quantization_mode == "int4":
        q = ref_unpack(w["embeddings"], layer.output_dim)
    return ref_lookup(ids, q, w["embeddings_scale"], w.get("embeddings_zero"), layer.dtype_policy.block_size)


def quantized_embedding(rows, dim, case, seed=0, dtype_ids=np.int32):
    rng = np.random.default_rng(seed)
    layer = Embedding(rows, dim)
    layer.build()
    table = rng.normal(0, 0.5, (rows, dim)).astype(np.float32)
    table[0] = 0.0
    layer.set_weights([table])
    mode, config, _ = CASES[case]
    layer.quantize(mode, config=config)
    return layer, table


# ------------------------------------------------------------------ Keras's files

FILES = sorted(p.stem for p in FIXTURES.glob("emb_*.npz"))


def test_the_fixtures_are_there():
    assert len(FILES) == 8


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", FILES)
def test_keras_files_load_with_keras_variables_and_outputs(name, ext):
    data = np.load(FIXTURES / f"{name}.npz")
    case = name.split("_")[2]
    model = load_model(FIXTURES / (name + ext))
    layer = model.get_layer("emb")
    rows, dim = layer.input_dim, layer.output_dim
    mode, _, block = CASES[case]
    assert layer.dtype_policy.name == POLICY[case] and layer.quantization_mode == mode
    groups = -(-dim // block) if block > 0 else 0
    expected = [("embeddings", np.int8, (rows, dim if mode == "int8" else (dim + 1) // 2)),
                ("embeddings_scale", np.float32, (rows, groups) if groups else (rows,))]
    if groups:
        expected += [("embeddings_zero", np.int8, (rows, groups)), ("g_idx", np.float32, (dim,))]
    assert [(n, w.dtype, w.shape) for n, w in zip(layer.weight_names, layer.weights)] == expected
    assert layer.trainable_weights == []
    np.testing.assert_array_equal(layer.embeddings, data["q"])          # Keras's property: unpacked
    np.testing.assert_array_equal(layer.weights[1], data["scale"])
    x = data["x"]
    got = layer(x)
    np.testing.assert_array_equal(got, layer_reference(layer, x))
    y = model.predict(x)
    if name.startswith("emb_out"):
        np.testing.assert_array_equal(y, data["y"])                      # Keras's bits
        assert compile_plan(model, [x.shape[1:]], np.float32) is not None
    elif case == "int8":
        np.testing.assert_array_equal(y, data["y"])                      # the int8 Dense is exact too
    else:   # the int4 Dense after it sums floats in its own order (docs/quantization.md)
        np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_quantize_gives_keras_integers_and_scales(case):
    data = np.load(FIXTURES / f"emb_seq_{case}.npz")   # 257 columns: groups 128, 128, 1
    mode, config, block = CASES[case]
    layer = Embedding(*data["table"].shape)
    layer.build()
    layer.set_weights([data["table"]])
    layer.quantize(mode, config=config)
    assert layer.dtype_policy.name == POLICY[case]
    np.testing.assert_array_equal(layer.embeddings, data["q"])
    np.testing.assert_array_equal(layer.weights[1], data["scale"])
    if block > 0:
        np.testing.assert_array_equal(layer.weights[2], data["zero"])
        np.testing.assert_array_equal(layer.weights[3], np.arange(257) // block)
    # the independent transcription agrees with both
    q, scale, zero = ref_quantize(data["table"], mode, block)
    np.testing.assert_array_equal(q, data["q"])
    np.testing.assert_array_equal(scale, data["scale"])
    if mode == "int4":
        np.testing.assert_array_equal(ref_unpack(layer.weights[0], 257), data["q"])


def test_model_quantize_quantizes_embeddings_as_keras():
    data = np.load(FIXTURES / "emb_seq_int4.npz")
    keras_model = load_model(FIXTURES / "emb_seq_int4.keras")
    model = Sequential([fastdense.Input((5,), dtype="int32"), Embedding(40, 257, name="emb"), Flatten(),
                        Dense(3, name="head")])
    model.get_layer("emb").set_weights([data["table"]])
    model.get_layer("head").set_weights([np.ones((5 * 257, 3), np.float32), np.zeros(3, np.float32)])
    model.quantize("int4")
    for got, want in zip(model.get_layer("emb").get_weights(), keras_model.get_layer("emb").get_weights()):
        np.testing.assert_array_equal(got, want)
    assert model.get_layer("emb").get_config()["quantization_config"] == \
        keras_model.get_layer("emb").get_config()["quantization_config"]
    # filters: a regex on names leaves the Embedding float
    model = Sequential([fastdense.Input((5,), dtype="int32"), Embedding(40, 8, name="emb"), Flatten(), Dense(3)])
    model.quantize("int8", filters="dense")
    assert model.get_layer("emb").quantization_mode is None


# ------------------------------------------------------------------ the gather, eager and in plans

@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dim", [1, 2, 3, 7, 8, 33, 130])
def test_gather_is_the_reference_bit_for_bit(case, dim):
    layer, _ = quantized_embedding(23, dim, case, seed=dim)
    rng = np.random.default_rng(dim)
    ids = rng.integers(0, 23, (9, 4))
    ids[0, :2] = [0, 22]
    expected = layer_reference(layer, ids)
    for dtype in (np.int32, np.int64, np.uint8, np.int16, np.uint64):
        got = layer(ids.astype(dtype))
        assert got.dtype == np.float32 and got.shape == (9, 4, dim)
        np.testing.assert_array_equal(got, expected)
    # whole-number floats are ids too, as Keras casts them
    np.testing.assert_array_equal(layer(ids.astype(np.float32)), expected)


@pytest.mark.parametrize("block", [1, 2, 3, 5, 127])
@pytest.mark.parametrize("dim", [1, 6, 11, 128, 255])
def test_groups_starting_on_odd_columns(block, dim):
    """Groups of an odd size start inside a byte (the high nibble); the last group is short."""
    rng = np.random.default_rng(block * 1000 + dim)
    layer = Embedding(17, dim)
    layer.build()
    table = rng.normal(0, 2, (17, dim)).astype(np.float32)
    layer.set_weights([table])
    layer.quantize("int4", config={"class_name": "Int4QuantizationConfig", "config": {"block_size": block}})
    q, scale, zero = ref_quantize(table, "int4", block)
    np.testing.assert_array_equal(ref_unpack(layer.weights[0], dim), q)
    np.testing.assert_array_equal(layer.weights[1], scale)
    np.testing.assert_array_equal(layer.weights[2], zero)
    ids = rng.integers(0, 17, (5, 3))
    np.testing.assert_array_equal(layer(ids), ref_lookup(ids, q, scale, zero, block))


_PATH_CHILD = """
import sys
import numpy as np
from fastdense import _kernels
from fastdense.layers import Embedding
out = {"path": np.array(_kernels.cpu_path())}
for dim in (5, 16, 37, 130):
    for mode, block in (("int8", -1), ("int4", -1), ("int4", 3), ("int4", 16), ("int4", 128)):
        rng = np.random.default_rng(dim)
        layer = Embedding(11, dim)
        layer.build()
        layer.set_weights([rng.normal(size=(11, dim)).astype(np.float32)])
        layer.quantize(mode, config=None if mode == "int8" else
                       {"class_name": "Int4QuantizationConfig", "config": {"block_size": block}})
        ids = rng.integers(0, 11, (4, 6))
        key = f"{mode}_{block}_{dim}"
        out["y_" + key], out["ids_" + key] = layer(ids), ids
        for name, w in zip(layer.weight_names, layer.get_weights()):
            out[name + "_" + key] = w
np.savez(sys.argv[1], **out)
"""


@pytest.mark.parametrize("path", ["baseline", "avx2", "avx512"])
def test_every_cpu_path_gives_the_reference_bits(tmp_path, path):
    """The gather's per-path copies (int8 divisions, int4 lookups) against the reference, each
    in a child process with FASTDENSE_CPU_PATH set."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _PATH_CHILD, str(tmp_path / "out.npz")], capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, FASTDENSE_CPU_PATH=path))
    assert result.returncode == 0, result.stderr
    data = np.load(tmp_path / "out.npz")
    if str(data["path"]) != path:
        pytest.skip(f"this CPU has no {path} path (FASTDENSE_CPU_PATH={path} ran {data['path']})")
    keys = [k[2:] for k in data.files if k.startswith("y_")]
    assert len(keys) == 20
    for key in keys:
        mode, block, dim = key.split("_")
        block, dim = int(block), int(dim)
        q = data["embeddings_" + key].astype(np.int64) if mode == "int8" else ref_unpack(data["embeddings_" + key], dim)
        zero = data["embeddings_zero_" + key] if block > 0 else None
        expected = ref_lookup(data["ids_" + key], q, data["embeddings_scale_" + key], zero, block)
        np.testing.assert_array_equal(data["y_" + key], expected, err_msg=key)


def test_extreme_values_and_zero_rows():
    layer = Embedding(4, 5)
    layer.build()
    table = np.array([[0, 0, 0, 0, 0], [1e38, -1e38, 1e-38, 0, 1], [1e-30, -1e-30, 0, 5e-31, 2e-30],
                      [7, -8, 0.5, -0.5, 1]], np.float32)
    for case in CASES:
        layer = Embedding(4, 5)
        layer.build()
        layer.set_weights([table])
        mode, config, _ = CASES[case]
        layer.quantize(mode, config=config)
        ids = np.array([[0, 1, 2, 3]])
        got = layer(ids)
        np.testing.assert_array_equal(got, layer_reference(layer, ids))
        assert np.isfinite(got).all()
        assert not got[0, 0].any()       # a zero row stays zero


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_plans_equal_the_layers(case):
    rng = np.random.default_rng(5)
    ids_in = fastdense.Input((6,), dtype="int32")
    emb = Embedding(50, 9, name="emb")
    model = Model(ids_in, Dense(4, name="head")(Flatten()(emb(ids_in))))
    out_model = Model(ids_in, emb(ids_in))
    model.get_layer("emb").set_weights([rng.normal(size=(50, 9)).astype(np.float32)])
    mode, config, _ = CASES[case]
    model.quantize(mode, config=config)     # out_model shares the quantized layer
    assert compile_plan(out_model, [(6,)], np.float32) is not None
    assert compile_plan(model, [(6,)], np.float32) is not None
    for m in (1, 2, 7, 64, 300):
        x = rng.integers(0, 50, (m, 6)).astype(np.int32)
        expected = layer_reference(emb, x)
        np.testing.assert_array_equal(out_model.predict(x), expected)
        np.testing.assert_array_equal(out_model(x), expected)
        np.testing.assert_array_equal(out_model.predict(x.astype(np.int64)), expected)
        head = model.get_layer("head")
        np.testing.assert_array_equal(model.predict(x), head(expected.reshape(m, -1)))


def test_plans_follow_quantize_and_set_weights_and_copies_work():
    import copy
    import pickle

    rng = np.random.default_rng(3)
    ids_in = fastdense.Input((4,), dtype="int32")
    emb = Embedding(20, 10)
    model = Model(ids_in, emb(ids_in))
    x = rng.integers(0, 20, (8, 4)).astype(np.int32)
    np.testing.assert_array_equal(model.predict(x), np.take(emb.embeddings, x, axis=0))   # float plan
    model.quantize("int4", config={"class_name": "Int4QuantizationConfig", "config": {"block_size": 3}})
    np.testing.assert_array_equal(model.predict(x), layer_reference(emb, x))              # compiled anew
    weights = emb.get_weights()
    weights[1] = weights[1] * np.float32(3.0)
    emb.set_weights(weights)
    np.testing.assert_array_equal(model.predict(x), layer_reference(emb, x))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(clone.predict(x), model.predict(x))
        assert clone.layers[1].dtype_policy.name == "int4/3_from_float32"
    dense = Dense(3)            # g_idx's initializer is an array (a Constant), not a lambda
    dense.build((None, 5))
    dense.quantize("int4", config={"class_name": "Int4QuantizationConfig", "config": {"block_size": 2}})
    x = rng.normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dense))(x), dense(x))


def test_a_sequential_starting_with_a_quantized_embedding():
    model = Sequential([Embedding(12, 6, input_shape=(3,)), Flatten(), Dense(2)])
    model.build((None, 3))
    model.quantize("int4", config={"class_name": "Int4QuantizationConfig", "config": {"block_size": 4}})
    x = np.array([[0, 5, 11], [3, 3, 3]])
    emb = model.layers[0]
    expected = model.layers[2](layer_reference(emb, x).reshape(2, -1))
    np.testing.assert_array_equal(model.predict(x.astype(np.float32)), expected)
    np.testing.assert_array_equal(model.predict(x), expected)


@pytest.mark.parametrize("case", ["int8", "int4"])
def test_a_text_model_embedding_pooling_dense(case):
    """Keras's text-model head on a quantized table: ids -> Embedding -> GlobalAveragePooling1D -> Dense."""
    from fastdense.layers import GlobalAveragePooling1D

    rng = np.random.default_rng(11)
    ids_in = fastdense.Input((7,), dtype="int32")
    emb = Embedding(60, 16)
    head = Dense(2)
    model = Model(ids_in, head(GlobalAveragePooling1D()(emb(ids_in))))
    emb.set_weights([rng.normal(size=(60, 16)).astype(np.float32)])
    model.quantize(case, config=CASES[case][1])
    x = rng.integers(0, 60, (5, 7)).astype(np.int32)
    assert compile_plan(model, [(7,)], np.float32) is not None     # gather, pool and Dense: one plan
    pooled = layer_reference(emb, x).astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(model.predict(x), head(pooled.astype(np.float32)), rtol=1e-6, atol=1e-6)


def test_the_table_stays_quantized_in_memory():
    layer, _ = quantized_embedding(1000, 64, "int4")
    table = layer._quantized_table(layer._values)
    assert np.shares_memory(table.q, layer.weights[0]) and np.shares_memory(table.scale, layer.weights[1])
    assert layer.weights[0].nbytes == 1000 * 32
    ids_in = fastdense.Input((2,), dtype="int32")
    model = Model(ids_in, layer(ids_in))
    plan = compile_plan(model, [(2,)], np.float32)
    assert plan is not None
    assert layer._quantized_table(layer._values) is table      # the plan's step holds this one


def test_quantized_table_is_checked_in_c_and_python():
    q = np.zeros((3, 4), np.int8)
    with pytest.raises(ValueError, match="QuantizedTable int8"):
        _kernels.QuantizedTable(q, np.ones(4, np.float32), None, 8, -1, 4)
    with pytest.raises(ValueError, match="QuantizedTable int4"):
        _kernels.QuantizedTable(q, np.ones(3, np.float32), None, 4, -1, 4)     # 4 bytes hold 8 values
    with pytest.raises(ValueError, match="zero"):
        _kernels.QuantizedTable(q[:, :2], np.ones((3, 1), np.float32), np.zeros((3, 2), np.int8), 4, 4, 4)
    table = _kernels.QuantizedTable(q, np.ones(3, np.float32), None, 8, -1, 4)
    out = np.full((2, 4), 7.0, np.float32)
    assert table.gather(np.array([1, 3], np.int32), out) == 1 and (out == 7.0).all()   # nothing written
    assert table.gather(np.array([-1, 0], np.int64), out) == 0
    with pytest.raises(ValueError, match="int32/int64 ids"):
        table.gather(np.array([1, 2], np.int16), out)
    with pytest.raises(ValueError, match="int32/int64 ids"):
        table.gather(np.array([1, 2, 0], np.int32), out)


# ------------------------------------------------------------------ configs and files both ways

def test_config_is_keras_s():
    import json
    import zipfile
    with zipfile.ZipFile(FIXTURES / "emb_out_int4b4.keras") as archive:
        keras_config = json.loads(archive.read("config.json"))
    keras_layer = next(layer for layer in keras_config["config"]["layers"] if layer["class_name"] == "Embedding")
    model = load_model(FIXTURES / "emb_out_int4b4.keras")
    config = model.get_layer("emb").get_config()
    for key in ("dtype", "quantization_config", "input_dim", "output_dim", "mask_zero"):
        assert config[key] == keras_layer["config"][key], key
    again = Embedding.from_config(config)
    again.build()
    assert again.weight_names == ["embeddings", "embeddings_scale", "embeddings_zero", "g_idx"]
    np.testing.assert_array_equal(again.weights[3], [0, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("case", list(CASES))
def test_fastdense_files_round_trip(tmp_path, case, ext):
    model = load_model(FIXTURES / f"emb_out_{case}.keras")
    data = np.load(FIXTURES / f"emb_out_{case}.npz")
    path = tmp_path / f"m{ext}"
    model.save(path)
    again = load_model(path)
    assert again.get_layer("emb").get_config() == model.get_layer("emb").get_config()
    for a, b in zip(again.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.predict(data["x"]), data["y"])


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("case", list(CASES))
def test_keras_reads_what_fastdense_quantized_and_saved(tmp_path, case, ext):
    keras = _keras()
    data = np.load(FIXTURES / f"emb_seq_{case}.npz")
    mode, config, _ = CASES[case]
    ids_in = fastdense.Input((5,), dtype="int32", name="ids")
    emb = Embedding(40, 257, name="emb")
    model = Model(ids_in, emb(ids_in))
    emb.set_weights([data["table"]])
    model.quantize(mode, config=config)
    path = tmp_path / f"m{ext}"
    model.save(path)
    theirs = keras.saving.load_model(path)
    layer = theirs.get_layer("emb")
    assert layer.dtype_policy.name == POLICY[case]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.embeddings), data["q"])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(theirs.predict(data["x"], verbose=0)),
                                  model.predict(data["x"]))


# ------------------------------------------------------------------ bad input

def test_ids_out_of_range_are_named_eager_and_compiled():
    layer, _ = quantized_embedding(10, 5, "int4")
    ids_in = fastdense.Input((3,), dtype="int32")
    model = Model(ids_in, layer(ids_in))
    for bad, shown in (([[1, 10, 2]], "10 at index (0, 1)"), ([[1, 2, -1]], "-1 at index (0, 2)")):
        with pytest.raises(ValueError, match=r"expects ids in \[0, 10\), got " + shown.replace("(", r"\(")
                           .replace(")", r"\)")):
            layer(np.array(bad))
        with pytest.raises(ValueError, match="expects ids in"):
            model.predict(np.array(bad, np.int32))
    with pytest.raises(ValueError, match="expects ids in"):
        layer(np.array([2**64 - 1], np.uint64))                     # never wrapped into range
    with pytest.raises(ValueError, match="expects ids in"):
        model.predict(np.array([[1, 2, 2**32 + 1]], np.int64))
    with pytest.raises(ValueError, match="integer ids"):
        layer(np.array([1.5]))
    with pytest.raises(TypeError, match="integer ids"):
        layer(np.array(["a"]))


def test_bad_weights_are_refused_with_their_names():
    layer, _ = quantized_embedding(6, 7, "int4b4")
    good = layer.get_weights()
    with pytest.raises(ValueError, match=r"packed two per byte.*expected shape \(6, 4\).*got shape \(6, 7\)"):
        layer.set_weights([np.zeros((6, 7), np.int8)] + good[1:])
    with pytest.raises(ValueError, match=r"'embeddings_scale' expects shape \(6, 2\)"):
        layer.set_weights([good[0], np.ones(6, np.float32)] + good[2:])
    with pytest.raises(ValueError, match="'embeddings_zero' holds int8 values"):
        layer.set_weights(good[:2] + [good[2] + 0.5] + good[3:])
    with pytest.raises(ValueError, match="'embeddings' holds int8 values"):
        layer.set_weights([good[0].astype(np.int64) + 300] + good[1:])
    with pytest.raises(ValueError, match="g_idx"):
        layer.set_weights(good[:3] + [np.zeros(7, np.float32)])
    with pytest.raises(ValueError, match="expects 4 weights"):
        layer.set_weights(good[:2])
    np.testing.assert_array_equal(layer.weights[0], good[0])        # nothing changed
    int8, _ = quantized_embedding(6, 7, "int8")
    with pytest.raises(ValueError, match=r"'embeddings' expects shape \(6, 7\)"):
        int8.set_weights([np.zeros((6, 4), np.int8), np.ones(6, np.float32)])


def test_a_file_with_another_g_idx_or_bad_integers_is_refused(tmp_path):
    path = tmp_path / "bad.h5"
    shutil.copy(FIXTURES / "emb_out_int4b4.h5", path)
    with h5py.File(path, "r+") as f:
        f["model_weights/emb/emb/g_idx"][...] = np.zeros(7, np.float32)
    with pytest.raises(KerasFileError, match="g_idx"):
        load_model(path)
    shutil.copy(FIXTURES / "emb_out_int4b4.h5", path)
    with h5py.File(path, "r+") as f:
        del f["model_weights/emb/emb/embeddings"]
        f["model_weights/emb/emb/embeddings"] = np.zeros((30, 7), np.int8)     # unpacked width
    with pytest.raises(KerasFileError, match="emb"):
        load_model(path)


def test_quantize_refusals():
    layer = Embedding(4, 3)
    with pytest.raises(ValueError, match="not built"):
        layer.quantize("int8")
    layer.build()
    with pytest.raises(ValueError, match="expected 'int8' or 'int4', got 'float8'"):
        layer.quantize("float8")
    with pytest.raises(ValueError, match="block_size"):
        layer.quantize("int4", config={"class_name": "Int4QuantizationConfig", "config": {"block_size": 0}})
    layer.set_weights([np.array([[np.nan, 0, 0]] + [[0, 0, 0]] * 3)])
    with pytest.raises(ValueError, match="NaN or inf"):
        layer.quantize("int8")
    assert layer.quantization_mode is None and layer.weight_names == ["embeddings"]
    layer.set_weights([np.zeros((4, 3))])
    layer.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        layer.quantize("int4")
    wide = Embedding(4, 3, dtype="float64")
    wide.build()
    with pytest.raises(ValueError, match="float32"):
        wide.quantize("int8")

    class Sub(Embedding):
        pass

    sub = Sub(4, 3)
    sub.build()
    with pytest.raises(NotImplementedError):
        sub.quantize("int8")


def test_lora_on_a_quantized_embedding_is_refused():
    config = Embedding(4, 3, dtype="int8_from_float32").get_config()
    assert config["dtype"]["class_name"] == "QuantizedDTypePolicy"
    with pytest.raises(ValueError, match="does not support LoRA"):
        Embedding.from_config({**config, "lora_rank": 2})
    layer, _ = quantized_embedding(4, 3, "int4")
    with pytest.raises(ValueError, match=r"does not support LoRA; Embedding '.*' \(dtype policy 'int4/128_from"):
        layer.enable_lora(2)
    assert layer.weight_names == ["embeddings", "embeddings_scale", "embeddings_zero", "g_idx"]
    with pytest.raises(ValueError, match="Unsupported quantized dtype policy|not supported"):
        Embedding(4, 3, dtype={"class_name": "QuantizedFloat8DTypePolicy", "config": {"mode": "float8"}})
