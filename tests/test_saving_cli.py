"""``python -m fastdense predict MODEL INPUT -o OUTPUT`` on the Keras fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fastdense.saving.cli import predict_main

from _helpers import FIXTURES


def fixture_io(name):
    return np.load(FIXTURES / f"{name}.io.npz")


def test_npy_input_npy_output(tmp_path, capsys):
    data = fixture_io("mlp_mixed")
    np.save(tmp_path / "x.npy", data["x0"])
    assert predict_main([str(FIXTURES / "mlp_mixed.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")
    assert np.max(np.abs(y - data["y"])) <= 1e-5
    assert "y.npy: float32 (5, 5)" in capsys.readouterr().out


def test_npz_input_with_two_inputs(tmp_path):
    data = fixture_io("functional_shared")
    np.savez(tmp_path / "x.npz", x0=data["x0"], x1=data["x1"])
    out = tmp_path / "y.npz"
    assert predict_main([str(FIXTURES / "functional_shared.h5"), str(tmp_path / "x.npz"), "-o", str(out), "-q"]) == 0
    with np.load(out) as y:
        assert np.max(np.abs(y["y"] - data["y"])) <= 1e-5


def test_npz_input_named_after_the_model_inputs(tmp_path):
    data = fixture_io("functional_shared")
    np.savez(tmp_path / "x.npz", right=data["x1"], left=data["x0"])
    assert predict_main([str(FIXTURES / "functional_shared.keras"), str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - data["y"])) <= 1e-5


def test_batch_size_and_the_io_npz_file_itself(tmp_path):
    data = fixture_io("tfkeras2_mlp")
    np.savez(tmp_path / "x.npz", x0=data["x0"])
    args = [str(FIXTURES / "tfkeras2_mlp.h5"), str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npy"), "--batch-size", "2"]
    assert predict_main(args) == 0
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - data["y"])) <= 1e-5


def test_errors_are_reported_not_raised(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", a=np.zeros((2, 16)), b=np.zeros((2, 16)), c=np.zeros((2, 16)))
    assert predict_main([str(FIXTURES / "functional_shared.keras"), str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npy")]) == 1
    assert "2 input(s)" in capsys.readouterr().err
    (tmp_path / "bad.keras").write_bytes(b"nope")
    np.save(tmp_path / "x.npy", np.zeros((2, 20), np.float32))
    assert predict_main([str(tmp_path / "bad.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 1
    assert "bad.keras" in capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()


def test_pickled_input_is_refused(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert predict_main([str(FIXTURES / "mlp_mixed.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 1
    assert "unpickling" in capsys.readouterr().err


def test_output_must_be_numpy(tmp_path):
    assert predict_main([str(FIXTURES / "mlp_mixed.keras"), "x.npy", "-o", str(tmp_path / "y.txt")]) == 2


def test_python_dash_m(tmp_path):
    data = fixture_io("seq_dense")
    np.save(tmp_path / "x.npy", data["x0"])
    import fastdense

    # the same fastdense this test imported (source tree or installed), whatever the cwd
    package_root = str(Path(fastdense.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-m", "fastdense", "predict", str(FIXTURES / "seq_dense.keras"), str(tmp_path / "x.npy"),
         "-o", str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - data["y"])) <= 1e-5
