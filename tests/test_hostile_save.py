"""Saving where the target is awkward: a long name, a symbolic link, a FIFO or device, a read-only
file, a model holding something no file can store. The write stays atomic (never a half-written
file, never a leftover temporary) and never replaces what it must not."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from fastdense.layers import Dense, Input
from fastdense.models import Sequential, load_model
from fastdense.saving import _atomic


def mlp(seed=0):
    rng = np.random.default_rng(seed)
    model = Sequential([Input((3,)), Dense(4, name="hidden"), Dense(2, name="out")])
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_the_longest_file_names_save(tmp_path, ext):
    """A 255-byte name is valid; the temporary beside it ('.<name>.<random>.tmp') was not."""
    path = tmp_path / ("m" * (255 - len(ext)) + ext)
    model = mlp()
    model.save(path)
    assert same_weights(load_model(path), model)
    assert sorted(os.listdir(tmp_path)) == [path.name]


@pytest.mark.parametrize("ext", [".keras", ".h5", ".weights.h5"])
def test_a_symlink_target_is_followed_not_replaced(tmp_path, ext):
    real, link = tmp_path / f"v1{ext}", tmp_path / f"latest{ext}"
    save = (lambda m, p: m.save_weights(p)) if ext == ".weights.h5" else (lambda m, p: m.save(p))
    save(mlp(0), real)
    link.symlink_to(real.name)
    new = mlp(1)
    save(new, link)
    assert link.is_symlink() and os.readlink(link) == real.name
    reloaded = mlp(2)
    reloaded.load_weights(real)
    assert same_weights(reloaded, new)
    assert sorted(os.listdir(tmp_path)) == sorted([real.name, link.name])


def test_a_fifo_or_device_target_is_refused(tmp_path):
    fifo = tmp_path / "pipe.keras"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=r"pipe\.keras exists and is not a regular file"):
        mlp().save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    device = tmp_path / "null.keras"
    device.symlink_to(os.devnull)
    with pytest.raises(OSError, match=f"{os.devnull} exists and is not a regular file"):
        mlp().save(device)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["null.keras", "pipe.keras"]


def test_a_read_only_target_is_not_replaced(tmp_path, monkeypatch):
    """Renaming over a read-only file works wherever its directory is writable; writing it in place,
    as Keras does, fails. fastdense refuses too. (Root may write anything: then os.access is made to
    answer as it does for other users.)"""
    target = tmp_path / "m.keras"
    mlp(0).save(target)
    before = target.read_bytes()
    target.chmod(0o444)
    if os.geteuid() == 0:
        real_access = os.access
        monkeypatch.setattr(_atomic.os, "access", lambda p, mode: False if os.fspath(p) == str(target)
                            else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"m\.keras is read-only"):
        mlp(1).save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.keras"]


class _OddConfig(Dense):
    def get_config(self):
        return {**super().get_config(), "extra": {1, 2}}     # a set: JSON has no such thing


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_a_config_json_cannot_hold_leaves_the_earlier_file(tmp_path, ext):
    target = tmp_path / f"m{ext}"
    mlp().save(target)
    before = target.read_bytes()
    with pytest.raises(TypeError, match="set"):
        Sequential([Input((3,)), _OddConfig(2, name="odd")]).save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == [target.name]


def test_a_dangling_symlink_is_refused(tmp_path):
    """Following it would create a file wherever the link points; replacing it would drop the link."""
    link = tmp_path / "latest.keras"
    link.symlink_to(tmp_path / "gone" / "v9.keras")
    with pytest.raises(FileNotFoundError, match=r"latest\.keras: it is a symbolic link to .*v9\.keras, which does not"):
        mlp().save(link)
    assert link.is_symlink() and os.listdir(tmp_path) == ["latest.keras"]
