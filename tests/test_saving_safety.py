"""Hostile, corrupted and mismatched files: clean errors naming the file (and layer), no crash.

Each test mutates a copy of a real Keras fixture in tmp_path.
"""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastdense.saving import _h5, keras_format
from fastdense.saving.api import load_model, read_model_file
from fastdense.saving.errors import KerasFileError, UnsafeFileError, UnsupportedLayerError

from _helpers import FIXTURES


MLP = FIXTURES / "mlp_mixed.keras"  # Sequential: dense .. dense_4 (relu, tanh, gelu, sigmoid, softmax)


def members(path):
    with zipfile.ZipFile(path) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def write_archive(target, entries, compression=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are written on purpose
        with zipfile.ZipFile(target, "w", compression=compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return target


def rebuild(tmp_path, source=MLP, *, replace=None, drop=(), extra=(), name="m.keras"):
    replace = replace or {}
    entries = [(info.filename, replace.get(info.filename, data)) for info, data in members(source)
               if info.filename not in drop]
    return write_archive(tmp_path / name, entries + list(extra))


def edited_config(edit, source=MLP):
    with zipfile.ZipFile(source) as zf:
        config = json.loads(zf.read("config.json"))
    edit(config)
    return json.dumps(config).encode()


def edited_weights(edit, source=MLP):
    with zipfile.ZipFile(source) as zf:
        buffer = io.BytesIO(zf.read("model.weights.h5"))
    with h5py.File(buffer, "r+") as f:
        edit(f)
    return buffer.getvalue()


def dense_entry(name, **config):
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "config": {"name": name, "units": 4, **config}}


# --------------------------------------------------------------------------------------
# Not a model file at all / truncated / corrupted
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello world, not a model", b"PK\x03\x04garbage", b"\x89HDF\r\n\x1a\ngarbage"])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "junk.keras"
    path.write_bytes(content)
    with pytest.raises(KerasFileError, match="junk.keras"):
        load_model(path)


def test_directory(tmp_path):
    with pytest.raises(KerasFileError, match="directory"):
        load_model(tmp_path)


@pytest.mark.parametrize("source", ["mlp_mixed.keras", "functional_shared.h5", "tfkeras2_mlp.h5"])
@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.95, 0.999])
def test_truncated_files(tmp_path, source, fraction):
    data = (FIXTURES / source).read_bytes()
    path = tmp_path / source
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(KerasFileError, match=source.replace(".", r"\.")):
        load_model(path)


@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_flipped_bytes_inside_a_member_fail_the_crc(tmp_path, member):
    data = bytearray(MLP.read_bytes())
    with zipfile.ZipFile(MLP) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path = tmp_path / "m.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(KerasFileError, match=r"m\.keras.*(CRC|not a readable)"):
        load_model(path)


def test_invalid_json_config(tmp_path):
    path = rebuild(tmp_path, replace={"config.json": b'{"class_name": "Sequential", "config": '})
    with pytest.raises(KerasFileError, match=r"m\.keras: archive member 'config.json' is not valid JSON"):
        load_model(path)


def test_corrupted_weights_member(tmp_path):
    path = rebuild(tmp_path, replace={"model.weights.h5": b"\x89HDF\r\n\x1a\n" + b"\x00" * 100})
    with pytest.raises(KerasFileError, match=r"m\.keras!model\.weights\.h5: not a readable HDF5 file"):
        load_model(path)


@pytest.mark.parametrize("missing", ["config.json", "model.weights.h5"])
def test_missing_members(tmp_path, missing):
    path = rebuild(tmp_path, drop={missing})
    with pytest.raises(KerasFileError, match=f"missing {missing}"):
        load_model(path)


def test_npz_weights_are_refused_without_unpickling(tmp_path):
    path = rebuild(tmp_path, drop={"model.weights.h5"}, extra=[("model.weights.npz", b"PK\x05\x06" + b"\0" * 18)])
    with pytest.raises(KerasFileError, match="pickled"):
        load_model(path)


# --------------------------------------------------------------------------------------
# Hostile archives
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("evil", ["../evil.txt", "../../tmp/evil.txt", "/etc/evil", "assets/../../evil", "C:/evil.txt"])
def test_path_traversal_members_are_refused(tmp_path, evil):
    path = rebuild(tmp_path, extra=[(evil, b"owned")])
    with pytest.raises(UnsafeFileError, match="points outside the archive"):
        load_model(path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_unexpected_members_are_ignored(tmp_path):
    path = rebuild(tmp_path, extra=[("assets/vocab.txt", b"a\nb\n"), ("notes/readme.md", b"hi")])
    before = set(os.listdir(tmp_path))
    assert read_model_file(path).config["class_name"] == "Sequential"
    assert set(os.listdir(tmp_path)) == before  # nothing extracted


def test_duplicate_members_are_refused(tmp_path):
    path = rebuild(tmp_path, extra=[("config.json", b'{"class_name": "Sequential"}')])
    with pytest.raises(UnsafeFileError, match="two members named 'config.json'"):
        load_model(path)


def test_member_above_its_size_limit(tmp_path, monkeypatch):
    monkeypatch.setitem(keras_format.MEMBER_LIMITS, "config.json", 1 << 20)
    config = edited_config(lambda c: c.update(padding=" " * (2 << 20)))
    path = tmp_path / "bomb.keras"
    entries = [(info.filename, config if info.filename == "config.json" else data) for info, data in members(MLP)]
    write_archive(path, entries, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 200_000
    with pytest.raises(UnsafeFileError, match="declares .* above the limit"):
        load_model(path)


def test_zip_bomb_ratio(tmp_path, monkeypatch):
    monkeypatch.setattr(keras_format, "ZIP_BOMB_FLOOR", 1 << 20)
    config = edited_config(lambda c: c.update(padding=" " * (4 << 20)))
    entries = [(info.filename, config if info.filename == "config.json" else data) for info, data in members(MLP)]
    path = write_archive(tmp_path / "bomb.keras", entries, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(UnsafeFileError, match="zip bomb"):
        load_model(path)


def test_member_holding_more_than_it_declares(tmp_path):
    """A central directory that under-declares a member's size: the extra bytes are never read."""
    path = rebuild(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("metadata.json")
    # shrink the declared sizes in the local header and the central directory
    local = info.header_offset
    data[local + 18: local + 26] = (10).to_bytes(4, "little") * 2
    central = data.find(b"PK\x01\x02")
    data[central + 20: central + 28] = (10).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    with pytest.raises(KerasFileError, match=r"m\.keras"):
        load_model(path)


def test_h5_shape_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(_h5, "BOMB_FLOOR_BYTES", 1 << 20)

    def bomb(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(2048, 2048), dtype="float32", chunks=(256, 256),
                                              compression="gzip", fillvalue=0.0)

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(bomb)})
    with pytest.raises(UnsafeFileError, match="decompression bomb"):
        load_model(path)


def test_h5_declared_size_limit(tmp_path):
    def huge(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(1 << 20, 1 << 14), dtype="float32", chunks=(1024, 1024))

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(huge)})
    with pytest.raises(UnsafeFileError, match="above the limit"):
        load_model(path)


@pytest.mark.parametrize("kind", ["soft", "external"])
def test_h5_links_are_refused(tmp_path, kind):
    def link(f):
        del f["layers/dense/vars/0"]
        if kind == "soft":
            f["layers/dense/vars/0"] = h5py.SoftLink("/layers/dense_1/vars/0")
        else:
            f["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/x")

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(link)})
    with pytest.raises(UnsafeFileError, match="Link"):
        load_model(path)


def test_h5_external_storage_is_refused(tmp_path):
    (tmp_path / "outside.bin").write_bytes(np.zeros(20 * 64, np.float32).tobytes())

    def external(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(20, 64), dtype="float32",
                                              external=[(str(tmp_path / "outside.bin"), 0, h5py.h5f.UNLIMITED)])

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(external)})
    with pytest.raises(UnsafeFileError, match="external files"):
        load_model(path)


def test_non_numeric_weights(tmp_path):
    def strings(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars"].create_dataset("1", data=np.array([b"x"] * 64))

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(strings)})
    with pytest.raises(KerasFileError, match="must be numeric"):
        load_model(path)


# --------------------------------------------------------------------------------------
# Hostile configs: no code, no imports
# --------------------------------------------------------------------------------------


@pytest.fixture
def trap_module(tmp_path, monkeypatch):
    """A module that leaves a marker file if anything imports it."""
    marker = tmp_path / "imported"
    (tmp_path / "fd_trap_module.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef system(**kw): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    assert not marker.exists(), "a module named in the config was imported"
    assert "fd_trap_module" not in sys.modules


@pytest.mark.parametrize("module", ["os", "fd_trap_module"])
def test_layer_from_a_foreign_module(tmp_path, trap_module, module):
    def edit(config):
        config["config"]["layers"][2] = {"module": module, "class_name": "system", "registered_name": None,
                                         "config": {"name": "evil", "command": "touch /tmp/owned"}}

    path = rebuild(tmp_path, replace={"config.json": edited_config(edit)})
    with pytest.raises(UnsafeFileError, match=f"layer 'evil'.*module '{module}'.*never imports"):
        load_model(path)


def test_nested_object_from_a_foreign_module(tmp_path, trap_module):
    def edit(config):
        config["config"]["layers"][2]["config"]["kernel_initializer"] = {
            "module": "fd_trap_module", "class_name": "system", "config": {"command": "id"}, "registered_name": None}

    path = rebuild(tmp_path, replace={"config.json": edited_config(edit)})
    with pytest.raises(UnsafeFileError, match="layer 'dense_1'.*'system' from module 'fd_trap_module'"):
        load_model(path)


def test_lambda_layer_is_refused_by_name(tmp_path):
    code = {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}

    def edit(config):
        config["config"]["layers"].insert(2, {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                                              "config": {"name": "my_lambda", "function": code}})

    path = rebuild(tmp_path, replace={"config.json": edited_config(edit)})
    with pytest.raises(UnsafeFileError, match="layer 'my_lambda': Lambda layers hold Python code"):
        load_model(path)
    with pytest.raises(UnsafeFileError):
        load_model(path, safe_mode=False)  # never: fastdense does not run code from files


def test_serialized_lambda_activation_is_refused(tmp_path):
    def edit(config):
        config["config"]["layers"][3]["config"]["activation"] = {
            "class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}

    path = rebuild(tmp_path, replace={"config.json": edited_config(edit)})
    with pytest.raises(UnsafeFileError, match="layer 'dense_2'.*serialized Python function"):
        load_model(path)


def test_unsupported_layers_are_listed_together(tmp_path):
    def edit(config):
        layers = config["config"]["layers"]
        layers[1] = {"module": "keras.layers", "class_name": "Conv2D", "config": {"name": "conv"}, "registered_name": None}
        layers[2] = {"module": "keras.layers", "class_name": "LSTM", "config": {"name": "lstm"}, "registered_name": None}
        layers[3] = {"module": "keras.layers", "class_name": "MultiHeadAttention", "config": {"name": "mha"},
                     "registered_name": None}

    path = rebuild(tmp_path, replace={"config.json": edited_config(edit)})
    with pytest.raises(UnsupportedLayerError) as info:
        load_model(path)
    assert info.value.layers == [("Conv2D", "conv"), ("LSTM", "lstm"), ("MultiHeadAttention", "mha")]
    message = str(info.value)
    assert "m.keras" in message and "Conv2D 'conv', LSTM 'lstm', MultiHeadAttention 'mha'" in message


def test_keras_mask_operation_is_explained():
    # Keras writes the mask of an Embedding(mask_zero=True) that a later layer reads as a NotEqual
    # operation; the error says so instead of leaving users to guess what NotEqual is
    message = str(UnsupportedLayerError([("NotEqual", "not_equal")]))
    assert "NotEqual 'not_equal' (NotEqual is the mask of an Embedding with mask_zero=True" in message
    assert "mask_zero" not in str(UnsupportedLayerError([("Conv2D", "conv")]))


def test_a_config_that_is_not_a_model(tmp_path):
    path = rebuild(tmp_path, replace={"config.json": json.dumps(dense_entry("d")).encode()})
    with pytest.raises(KerasFileError, match="describes a 'Dense', not a Sequential or functional model"):
        load_model(path)


def test_invalid_layer_arguments_name_the_file(tmp_path):
    path = rebuild(tmp_path, replace={"config.json": edited_config(
        lambda c: c["config"]["layers"][1]["config"].update(units=-3))})
    with pytest.raises(KerasFileError, match=r"m\.keras: cannot rebuild the model.*-3"):
        load_model(path)


# --------------------------------------------------------------------------------------
# Weights that do not fit the model
# --------------------------------------------------------------------------------------


def test_wrong_weight_shape(tmp_path):
    def transpose(f):
        kernel = f["layers/dense_1/vars/0"][()]
        del f["layers/dense_1/vars/0"]
        f["layers/dense_1/vars/0"] = kernel.T

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(transpose)})
    with pytest.raises(KerasFileError, match=r"m\.keras: layer 'dense_1': weight 0 has shape \(32, 64\) in the file "
                                             r"\(layers/dense_1/vars\), the layer expects \(64, 32\)"):
        load_model(path)


def test_missing_weight(tmp_path):
    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(lambda f: f.__delitem__("layers/dense_2/vars/1"))})
    with pytest.raises(KerasFileError, match=r"layer 'dense_2': the file has 1 weight\(s\).*the layer has 2"):
        load_model(path)


def test_gap_in_weight_numbering(tmp_path):
    def gap(f):
        f["layers/dense_2/vars/5"] = f["layers/dense_2/vars/1"][()]
        del f["layers/dense_2/vars/1"]

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(gap)})
    with pytest.raises(KerasFileError, match=r"should hold datasets '0'..'1', found \['0', '5'\]"):
        load_model(path)


def test_missing_layer_group(tmp_path):
    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(lambda f: f.__delitem__("layers/dense_4"))})
    with pytest.raises(KerasFileError, match=r"layer 'dense_4': the file has no weights for this layer"):
        load_model(path)


def test_weights_for_a_layer_the_model_lacks(tmp_path):
    def extra(f):
        f.create_group("layers/dense_9/vars").create_dataset("0", data=np.zeros((2, 2), np.float32))

    path = rebuild(tmp_path, replace={"model.weights.h5": edited_weights(extra)})
    with pytest.raises(KerasFileError, match="no layer for: layers/dense_9"):
        load_model(path)


def _copy_h5(tmp_path, source, edit):
    path = tmp_path / Path(source).name
    path.write_bytes((FIXTURES / source).read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def test_legacy_wrong_shape(tmp_path):
    def transpose(f):
        group = f["model_weights/dense_3/dense_3"]
        kernel = group["kernel:0"][()]
        del group["kernel:0"]
        group["kernel:0"] = kernel.T

    path = _copy_h5(tmp_path, "tfkeras2_mlp.h5", transpose)
    with pytest.raises(KerasFileError, match=r"tfkeras2_mlp\.h5: layer 'dense_3': weight 0 has shape \(4, 10\)"):
        load_model(path)


def test_legacy_layer_names_pointing_nowhere(tmp_path):
    path = _copy_h5(tmp_path, "mlp_mixed.h5", lambda f: f["model_weights"].attrs.__setitem__(
        "layer_names", [b"dense", b"ghost"]))
    with pytest.raises(KerasFileError, match="layer 'ghost': missing HDF5 entry '/model_weights/ghost'"):
        load_model(path)


def test_legacy_weight_count_mismatch(tmp_path):
    path = _copy_h5(tmp_path, "mlp_mixed.h5", lambda f: f["model_weights/dense_1"].attrs.__setitem__(
        "weight_names", [b"mlp_mixed/dense_1/kernel"]))
    with pytest.raises(KerasFileError, match=r"layer 'dense_1': the file has 1 weight\(s\).*the layer has 2"):
        load_model(path)


def test_legacy_bad_model_config(tmp_path):
    path = _copy_h5(tmp_path, "mlp_mixed.h5", lambda f: f.attrs.__setitem__("model_config", b"{not json"))
    with pytest.raises(KerasFileError, match="model_config attribute is not valid JSON"):
        load_model(path)


def test_legacy_soft_link(tmp_path):
    def link(f):
        del f["model_weights/dense/mlp_mixed/dense/kernel"]
        f["model_weights/dense/mlp_mixed/dense/kernel"] = h5py.SoftLink("/model_weights/dense_1/mlp_mixed/dense_1/kernel")

    with pytest.raises(UnsafeFileError, match="SoftLink"):
        load_model(_copy_h5(tmp_path, "mlp_mixed.h5", link))


# --------------------------------------------------------------------------------------
# Random damage never crashes the interpreter
# --------------------------------------------------------------------------------------


def test_random_damage_never_crashes(tmp_path):
    """Truncations and byte flips of every fixture, loaded in a child process: each load either
    works or raises a ValueError (KerasFileError); the process must not die."""
    script = textwrap.dedent(
        f"""
        import os, random, sys
        from pathlib import Path
        from fastdense.saving.api import load_model
        fixtures = Path({str(FIXTURES)!r})
        rng = random.Random(1234)
        outcomes = {{"ok": 0, "error": 0}}
        target = Path({str(tmp_path)!r})
        for source in sorted(fixtures.glob("*.keras")) + sorted(fixtures.glob("*.h5")):
            data = source.read_bytes()
            for trial in range(12):
                damaged = bytearray(data)
                if trial % 3 == 0:
                    damaged = damaged[: rng.randrange(len(data))]
                else:
                    for _ in range(rng.choice([1, 4, 32])):
                        damaged[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                path = target / ("damaged" + source.suffix)
                path.write_bytes(bytes(damaged))
                try:
                    load_model(path)
                    outcomes["ok"] += 1
                except ValueError:
                    outcomes["error"] += 1
        print(outcomes)
        """
    )
    # cwd away from the checkout: `python -c` puts the working directory first on sys.path, and
    # the source tree's fastdense (without its built extension) must not shadow the installed one.
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert outcomes["error"] > 0
