"""Hostile model files against the newer layer kinds (quantized Dense, Embedding, EinsumDense,
LoRA): weights whose values a cast would silently change, configs that declare absurd shapes or
values, malformed layer lists. Each file is a mutated copy of a real Keras fixture in tmp_path;
every load must give a KerasFileError naming the file, never a wrong model, a MemoryError or a
raw Python error."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile

import h5py
import numpy as np
import pytest

from fastdense.saving.api import load_model, load_weights
from fastdense.saving import _h5
from fastdense.saving.errors import KerasFileError, UnsafeFileError

from _helpers import FIXTURES


def mutate(tmp_path, source, *, config=None, weights=None, name="m.keras"):
    """A copy of fixture ``source`` (.keras) with ``config(dict)`` / ``weights(h5py.File)`` applied."""
    entries = []
    with zipfile.ZipFile(FIXTURES / source) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename == "config.json" and config is not None:
                parsed = json.loads(data)
                parsed = config(parsed) or parsed
                data = json.dumps(parsed).encode()
            if info.filename == "model.weights.h5" and weights is not None:
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as f:
                    weights(f)
                data = buffer.getvalue()
            entries.append((info.filename, data))
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in entries:
            zf.writestr(member, data)
    return path


def replace(f, key, value):
    del f[key]
    f[key] = value


def layers(config):
    return config["config"]["layers"]


def reference(name):
    data = np.load(FIXTURES / f"{name}.io.npz")
    return [data[k] for k in sorted(data.files) if k.startswith("x")], data["y"]


# --------------------------------------------------------------------------------------
# Quantized weights: a value the layer's integer dtype cannot hold is an error, not a wrap
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", ["float_scaled", "int16_scaled", "float_fraction", "float_nan"])
def test_int8_kernel_values_outside_int8_are_refused(tmp_path, stored):
    def edit(f):
        kernel = f["layers/dense/vars/0"][()]
        value = {
            "float_scaled": kernel.astype(np.float32) * 3.3,      # 127 * 3.3 would wrap to 163 - 256
            "int16_scaled": kernel.astype(np.int16) * 7,
            "float_fraction": kernel.astype(np.float32) + 0.5,    # would truncate
            "float_nan": np.where(kernel == kernel.max(), np.nan, kernel).astype(np.float32),
        }[stored]
        replace(f, "layers/dense/vars/0", value)

    path = mutate(tmp_path, "int8_mlp.keras", weights=edit)
    with pytest.raises(KerasFileError, match=r"m\.keras: layer 'dense_21': weight 1 \(layers/dense/vars\): kernel "
                                             r"holds int8 values.*not integers in \[-128, 127\]"):
        load_model(path)


def test_int8_kernel_outside_int8_in_a_legacy_h5(tmp_path):
    path = tmp_path / "m.h5"
    path.write_bytes((FIXTURES / "int8_mlp.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        found = []
        f.visititems(lambda name, obj: found.append(name) if name.endswith("/kernel") else None)
        replace(f, found[0], f[found[0]][()].astype(np.int32) * 300)
    with pytest.raises(KerasFileError, match=r"m\.h5: layer 'dense_21'.*kernel holds int8 values"):
        load_model(path)


def test_load_weights_refuses_wrapping_int8_values_and_changes_nothing(tmp_path):
    model = load_model(FIXTURES / "int8_mlp.keras")
    before = model.get_weights()
    path = mutate(tmp_path, "int8_mlp.keras", weights=lambda f: replace(
        f, "layers/dense_1/vars/0", f["layers/dense_1/vars/0"][()].astype(np.int16) + 200))
    with pytest.raises(KerasFileError, match="not integers in"):
        load_weights(model, path)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("g_idx", ["shifted", "reversed_groups"])
def test_int4_g_idx_other_than_the_configs_is_refused(tmp_path, g_idx):
    """Keras computes with the file's g_idx (the block of each kernel row); fastdense runs blocks in
    order, so a file whose g_idx is not that order would silently give other outputs."""
    def edit(f):
        value = f["layers/dense/vars/4"][()]            # 20 rows, one block of 128: all zeros
        if g_idx == "shifted":
            value = value + 5                           # block 5 of 1: Keras cannot run it either
        else:
            value = value.copy()
            value[:10] = 1
        replace(f, "layers/dense/vars/4", value)

    path = mutate(tmp_path, "int4_mlp.keras", weights=edit)
    with pytest.raises(KerasFileError, match=r"layer 'dense_24'.*g_idx is fixed by the layer's config"):
        load_model(path)


@pytest.mark.parametrize("name, key", [("int8_mlp", "layers/dense/vars/0"),     # the int8 kernel
                                       ("int4_mlp", "layers/dense/vars/4")])    # g_idx
def test_integer_and_derived_weights_stored_as_exact_floats_load(tmp_path, name, key):
    """The checks refuse only what a cast would change: the same values in float64 load as they are."""
    path = mutate(tmp_path, f"{name}.keras", weights=lambda f: replace(f, key, f[key][()].astype(np.float64)))
    x, y = reference(name)
    np.testing.assert_allclose(load_model(path).predict(x[0]), y, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# Configs that declare absurd shapes: refused before anything is allocated
# --------------------------------------------------------------------------------------


def _set(index, **values):
    def edit(config):
        layers(config)[index]["config"].update(values)
    return edit


@pytest.mark.parametrize("source, edit, layer", [
    ("mlp_mixed.keras", _set(1, units=10**12), "dense"),                       # 80 TB kernel
    ("mlp_mixed.keras", _set(1, units=3 * 10**8), "dense"),                    # 24 GB: would be allocated
    ("emb_tab.keras", _set(1, input_dim=10**12), "embedding"),
    ("emb_tab.keras", _set(1, output_dim=10**10), "embedding"),
    ("einsum_seq.keras", _set(1, output_shape=[None, 10**11]), "einsum_dense"),
    ("einsum_seq.keras", _set(1, equation="abc,cde->abde", output_shape=[None, 10**5, 10**5]), "einsum_dense"),
    ("lora_dense.keras", _set(1, lora_rank=10**9), "dense_19"),
])
def test_configs_declaring_huge_weights_are_refused_before_allocating(tmp_path, source, edit, layer):
    path = mutate(tmp_path, source, config=edit)
    with pytest.raises(KerasFileError, match=rf"m\.keras: layer '{layer}': weight '\w+' of shape .* needs \d+ bytes, "
                                             "more than this file's weights can fill"):
        load_model(path)


def test_huge_build_config_shape_is_refused(tmp_path):
    def edit(config):
        layers(config)[1]["build_config"] = {"input_shape": [None, 10**9]}
    with pytest.raises(KerasFileError, match=r"layer 'dense': weight 'kernel' of shape \(1000000000, 64\)"):
        load_model(mutate(tmp_path, "mlp_mixed.keras", config=edit))


def _int4_block_too_large(config):
    for entry in layers(config)[1:]:
        entry["config"]["dtype"]["config"]["mode"] = "int4/" + "9" * 30
        entry["config"]["quantization_config"]["config"]["block_size"] = int("9" * 30)


@pytest.mark.parametrize("source, edit, match", [
    ("mlp_mixed.keras", _set(1, units=10**400), r"layer 'dense': weight 'kernel' of shape \(20, 1000+\) float32 needs"),
    ("int4_mlp.keras", _int4_block_too_large, "cannot rebuild the model from its config: .*too large"),
])
def test_config_integers_too_large_for_numpy(tmp_path, source, edit, match):
    with pytest.raises(KerasFileError, match=match):
        load_model(mutate(tmp_path, source, config=edit))


# --------------------------------------------------------------------------------------
# Malformed layer lists and graphs
# --------------------------------------------------------------------------------------


def _layers_dict(config):
    config["config"]["layers"] = {"a": 1}


def _entry_int(config):
    layers(config)[1] = 5


def _entry_config_none(config):
    layers(config)[1]["config"] = None


def _entry_config_list(config):
    layers(config)[2]["config"] = [1, 2]


def _top_config_int(config):
    config["config"] = 5


def _nested_deeply(config):
    for depth in range(200):
        config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                  "config": {"name": f"s{depth}", "layers": [config]}}
    return config


@pytest.mark.parametrize("edit", [_layers_dict, _entry_int, _entry_config_none, _entry_config_list, _top_config_int,
                                  _nested_deeply])
def test_malformed_model_configs(tmp_path, edit):
    with pytest.raises(KerasFileError, match=r"m\.keras: cannot rebuild the model from its config"):
        load_model(mutate(tmp_path, "mlp_mixed.keras", config=edit))


# --------------------------------------------------------------------------------------
# HDF5 shape bombs spread over many arrays
# --------------------------------------------------------------------------------------


def _unbacked(group, name, nbytes):
    """A dataset declaring ``nbytes`` of float32 that stores nothing (its chunks are never written)."""
    group.create_dataset(name, shape=(nbytes // 4,), dtype="float32", chunks=(4096,), fillvalue=1.0)


def test_many_arrays_each_below_the_bomb_floor_are_refused_together(tmp_path, monkeypatch):
    """Each array stays under BOMB_FLOOR_BYTES, so the per-array rule passed every one; 120 of
    60 MiB in a 2 MiB file made fastdense allocate 7 GiB."""
    monkeypatch.setattr(_h5, "BOMB_FLOOR_BYTES", 1 << 20)

    def edit(f):
        for i in range(40):
            _unbacked(f.create_group(f"layers/ghost_{i}/vars"), "0", 900 << 10)

    path = mutate(tmp_path, "mlp_mixed.keras", weights=edit)
    with pytest.raises(UnsafeFileError, match=r"m\.keras!model\.weights\.h5: the arrays read up to dataset "
                                              r"'/layers/ghost_\d+/vars/0' declare \d+ bytes in all"):
        load_model(path)


def test_many_small_bombs_in_a_legacy_h5(tmp_path, monkeypatch):
    monkeypatch.setattr(_h5, "BOMB_FLOOR_BYTES", 1 << 20)
    path = tmp_path / "m.h5"
    path.write_bytes((FIXTURES / "mlp_mixed.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        group = f["model_weights/dense"]
        names = [f"bomb_{i}".encode() for i in range(40)]
        for name in names:
            _unbacked(group, name.decode(), 900 << 10)
        group.attrs["weight_names"] = names
    with pytest.raises(UnsafeFileError, match=r"m\.h5: layer 'dense': the arrays read .* declare \d+ bytes in all"):
        load_model(path)


@pytest.mark.parametrize("batch_input_shape", [5, {"a": 1}, "abc"])
def test_tfkeras2_batch_input_shape_that_is_no_shape(tmp_path, batch_input_shape):
    """The Keras 2 -> 3 upgrade ran outside load_model's error handling: an int raised a bare TypeError."""
    path = tmp_path / "m.h5"
    path.write_bytes((FIXTURES / "tfkeras2_mlp.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers(config)[0]["config"]["batch_input_shape"] = batch_input_shape
        f.attrs["model_config"] = json.dumps(config).encode()
    with pytest.raises(KerasFileError, match=r"m\.h5: cannot rebuild the model from its config"):
        load_model(path)


# --------------------------------------------------------------------------------------
# HDF5 hard links that repeat what is stored once
# --------------------------------------------------------------------------------------


def test_a_lattice_of_hard_linked_groups_is_refused_at_once(tmp_path):
    """Each group links its 'layers' twice to the next: 2**depth paths in a file of a few groups.
    At depth 28 the reader walked for hours; now the second visit of a group is refused."""
    def edit(f):
        groups = [f.create_group(f"chain/{i}") for i in range(14)]
        for here, there in zip(groups, groups[1:]):
            layers_group = here.create_group("layers")
            layers_group["x"] = there
            layers_group["y"] = there
        f["layers/dense/layers"] = groups[0]["layers"]

    with pytest.raises(UnsafeFileError, match=r"m\.keras!model\.weights\.h5: HDF5 entry '/layers/dense/layers/.*' "
                                              "is read a second time"):
        load_model(mutate(tmp_path, "mlp_mixed.keras", weights=edit))


def test_one_dataset_under_many_names_is_refused(tmp_path):
    """One 4 MiB array hard-linked under 3000 names became 12 GiB of copies in memory."""
    def edit(f):
        stored = f.create_group("store").create_dataset("big", data=np.ones(1 << 10, np.float32))
        for i in range(50):
            f[f"layers/ghost_{i}/vars/0"] = stored

    with pytest.raises(UnsafeFileError, match=r"HDF5 entry '/layers/ghost_1/vars/0' is read a second time "
                                              r"\(first as '/layers/ghost_0/vars/0'\)"):
        load_model(mutate(tmp_path, "mlp_mixed.keras", weights=edit))


def test_legacy_weight_names_repeating_one_dataset_are_refused(tmp_path):
    path = tmp_path / "m.h5"
    path.write_bytes((FIXTURES / "mlp_mixed.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        group = f["model_weights/dense"]
        group.create_dataset("big", data=np.ones(1 << 10, np.float32))
        group.attrs["weight_names"] = [b"big"] * 50
    with pytest.raises(UnsafeFileError, match=r"m\.h5: layer 'dense': HDF5 entry '/model_weights/dense/big' is read "
                                              "a second time"):
        load_model(path)


# --------------------------------------------------------------------------------------
# Damage libhdf5 itself cannot survive
# --------------------------------------------------------------------------------------


def _grow_heap_object(data, text, by=1024):
    """``data`` with the size field of the global heap object holding ``text`` grown by ``by``:
    libhdf5 then walks the collection out of step and lands on an object of size 0."""
    at = data.find(text)
    assert at > 8
    size = int.from_bytes(data[at - 8:at], "little")
    assert size == len(text) - 1                   # the object is the NUL-terminated string
    return data[:at - 8] + (size + by).to_bytes(8, "little") + data[at:]


def _load_in_a_child(path):
    code = textwrap.dedent(f"""
        from fastdense.saving.api import load_model
        try:
            load_model({str(path)!r})
        except ValueError as exc:
            print(exc)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=path.parent).stdout


@pytest.mark.parametrize("kind", ["h5", "keras"])
def test_a_damaged_global_heap_is_refused_not_looped_on(tmp_path, kind):
    """One changed byte (a heap object's size) made libhdf5 2.0 loop forever reading the model_config
    attribute of a legacy .h5 (found by a byte-flip fuzzer); the loader now walks each global heap
    collection first. A child process, so that a regression times out instead of hanging the suite."""
    if kind == "h5":
        path = tmp_path / "m.h5"
        path.write_bytes(_grow_heap_object((FIXTURES / "noise_layers.h5").read_bytes(), b"activity_regularization\0"))
    else:
        def edit(f):
            f["layers/dense/vars"].attrs["name"] = "a_name_long_enough_to_be_moved_by_the_damage" * 2
        path = mutate(tmp_path, "mlp_mixed.keras", weights=edit)
        with zipfile.ZipFile(path) as zf:
            entries = [(info.filename, zf.read(info)) for info in zf.infolist()]
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in entries:
                if name == "model.weights.h5":
                    data = _grow_heap_object(data, b"a_name_long_enough_to_be_moved_by_the_damage" * 2 + b"\0")
                zf.writestr(name, data)
    assert "corrupted HDF5 file: the global heap at byte" in _load_in_a_child(path)


def test_an_attribute_whose_type_was_damaged_is_refused_not_read(tmp_path):
    """One byte in the type of a legacy .h5's weight_names attribute (variable-length string ->
    variable-length sequence) made libhdf5 2.0 crash (SIGSEGV in H5T__conv_vlen) when h5py read it;
    attributes are now read only if their HDF5 type class is one Keras writes. Found by a byte-flip
    fuzzer. In a child process, so that a regression fails the test instead of killing the suite."""
    data = bytearray((FIXTURES / "seq_dense.h5").read_bytes())
    # the type of each string-valued weight_names attribute: class 9 (vlen), version 1, flags 1 (string)
    names = [i for i in range(len(data)) if data.startswith(b"weight_names\0", i)]
    types = [data.find(b"\x19\x01\x00\x00", i, i + 32) for i in names]
    vlen_string = [t for t in types if t > 0][-1]           # the last layer's
    data[vlen_string + 1] = 0x05                            # flags: a sequence of type 5
    path = tmp_path / "m.h5"
    path.write_bytes(bytes(data))
    assert "has HDF5 type class 9; expected strings or numbers" in _load_in_a_child(path)
