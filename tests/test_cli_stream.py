"""``fastdense predict`` on large files: batches, progress, atomic output, tables, bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastdense.layers import Concatenate, Dense, Input
from fastdense.models import Model, Sequential
from fastdense.saving import cli
from fastdense.saving.cli import predict_main


def save_mlp(path, features=6, outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    model = Sequential([Dense(16, activation="relu", input_shape=(features,)), Dense(outputs, activation="softmax")])
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    model.save(path)
    return model


def save_two_in_two_out(path):
    rng = np.random.default_rng(1)
    a, b = Input((2,), name="left"), Input((3,), name="right")
    model = Model([a, b], [Dense(4, activation="tanh", name="mix")(Concatenate()([a, b])), Dense(2, name="side")(b)])
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    model.save(path)
    return model


def leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_npy_in_batches_equals_one_predict(tmp_path, capsys):
    model = save_mlp(tmp_path / "m.keras")
    x = np.random.default_rng(2).standard_normal((50, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = [str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--batch-size", "7"]
    assert predict_main(args + ["--progress"]) == 0
    captured = capsys.readouterr()
    assert "y.npy: float32 (50, 3)" in captured.out
    assert "100% |" in captured.err and "50/50 rows" in captured.err
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape == (50, 3)
    np.testing.assert_array_equal(y, model.predict(x))
    assert leftovers(tmp_path, {"m.keras", "x.npy", "y.npy"}) == []
    # float64 data, Fortran order, quiet: the same numbers
    np.save(tmp_path / "xf.npy", np.asfortranarray(x.astype(np.float64)))
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "xf.npy"), "-o", str(tmp_path / "y.npy"), "-q",
                         "--batch-size", "8"]) == 0
    assert capsys.readouterr() == ("", "")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.predict(x))


def test_empty_input_gives_an_empty_output(tmp_path):
    save_mlp(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.zeros((0, 6), np.float32))
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-q"]) == 0
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (0, 3) and y.dtype == np.float32


def test_a_failure_mid_stream_leaves_no_output_and_no_temp_files(tmp_path):
    model = save_mlp(tmp_path / "m.keras")
    (tmp_path / "y.npy").write_bytes(b"the earlier output")
    (tmp_path / "y.npz").write_bytes(b"the earlier npz")

    def batches(size):
        yield [np.ones((size, 6), np.float32)]
        yield [np.ones((size, 6), np.float32)]
        raise OSError("disk went away")

    source = cli.Source(100, [(6,)], 24, batches)
    for name in ("y.npy", "y.npz"):
        with pytest.raises(OSError, match="disk went away"):
            cli.run_predict(model, source, str(tmp_path / name), 10, cli._Progress(100, False))
    assert (tmp_path / "y.npy").read_bytes() == b"the earlier output"
    assert (tmp_path / "y.npz").read_bytes() == b"the earlier npz"
    assert leftovers(tmp_path, {"m.keras", "y.npy", "y.npz"}) == []


def test_errors_are_reported_and_write_nothing(tmp_path, capsys):
    save_two_in_two_out(tmp_path / "two.keras")
    np.savez(tmp_path / "x.npz", x0=np.zeros((4, 2)), x1=np.zeros((4, 3)))
    assert predict_main([str(tmp_path / "two.keras"), str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npy")]) == 1
    assert "2 outputs" in capsys.readouterr().err
    save_mlp(tmp_path / "m.keras")
    x = np.zeros((10, 6), np.float32)
    np.save(tmp_path / "x.npy", x)
    with open(tmp_path / "x.npy", "r+b") as f:
        f.truncate(os.path.getsize(tmp_path / "x.npy") - 8)
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 1
    assert "truncated" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros((10, 5), np.float32))
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 1
    assert "(6,), got (5,)" in capsys.readouterr().err
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.txt")]) == 2
    assert leftovers(tmp_path, {"two.keras", "x.npz", "m.keras", "x.npy"}) == []


def test_npz_in_npz_out_with_two_outputs(tmp_path):
    model = save_two_in_two_out(tmp_path / "two.keras")
    rng = np.random.default_rng(3)
    left, right = rng.standard_normal((33, 2)), rng.standard_normal((33, 3))
    np.savez(tmp_path / "x.npz", right=right, left=left)
    assert predict_main([str(tmp_path / "two.keras"), str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"), "-q",
                         "--batch-size", "5"]) == 0
    want = model.predict([left, right])
    with np.load(tmp_path / "y.npz") as y:
        assert sorted(y.files) == ["y0", "y1"]
        np.testing.assert_array_equal(y["y0"], want[0])
        np.testing.assert_array_equal(y["y1"], want[1])
    assert leftovers(tmp_path, {"two.keras", "x.npz", "y.npz"}) == []


def test_csv_in_csv_out(tmp_path):
    pd = pytest.importorskip("pandas")
    model = save_mlp(tmp_path / "m.keras", features=3)
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.standard_normal((40, 4)).astype(np.float32), columns=["id", "c", "a", "b"])
    frame.to_csv(tmp_path / "x.csv", index=False)
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "x.csv"), "-o", str(tmp_path / "y.csv"),
                         "--columns", "a,b,c", "--batch-size", "9", "-q"]) == 0
    x = pd.read_csv(tmp_path / "x.csv")[["a", "b", "c"]].to_numpy(np.float32)
    y = pd.read_csv(tmp_path / "y.csv", dtype=np.float32)
    name = model.output_names[0]
    assert list(y.columns) == [f"{name}_0", f"{name}_1", f"{name}_2"]
    np.testing.assert_array_equal(y.to_numpy(), model.predict(x))     # float32 text round-trips
    # a .csv input into a .npy output: rows unknown until the end, the header is written last
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "x.csv"), "-o", str(tmp_path / "y.npy"),
                         "--columns", "a", "--columns", "b,c", "--batch-size", "16", "-q"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.predict(x))


def test_parquet_multi_input_by_columns(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    model = save_two_in_two_out(tmp_path / "two.keras")
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.standard_normal((70, 5)).astype(np.float32), columns=list("pqrst"))
    frame.to_parquet(tmp_path / "x.parquet", row_group_size=20)
    assert predict_main([str(tmp_path / "two.keras"), str(tmp_path / "x.parquet"), "-o", str(tmp_path / "y.parquet"),
                         "--columns", "left=q,p", "--columns", "right=t,s,r", "--batch-size", "16", "-q"]) == 0
    y = pd.read_parquet(tmp_path / "y.parquet")
    assert list(y.columns) == ["mix_0", "mix_1", "mix_2", "mix_3", "side_0", "side_1"]
    assert set(y.dtypes) == {np.dtype(np.float32)}
    want = model.predict([frame[["q", "p"]].to_numpy(), frame[["t", "s", "r"]].to_numpy()])
    np.testing.assert_array_equal(y.to_numpy(), np.concatenate(want, axis=1))
    assert predict_main([str(tmp_path / "two.keras"), str(tmp_path / "x.parquet"), "-o", str(tmp_path / "z.csv"),
                         "--columns", "left=q,nope", "--columns", "right=t,s,r"]) == 1
    assert not (tmp_path / "z.csv").exists()


def test_a_1_gib_npy_streams_in_bounded_memory(tmp_path):
    """1 GiB of input through a 256-8-4 MLP in a child process whose peak RSS must stay far below it."""
    model = Sequential([Dense(8, activation="relu", input_shape=(256,)), Dense(4)])
    model.set_weights([np.random.default_rng(6).standard_normal(w.shape).astype(np.float32) * 0.1
                       for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    rows = 1 << 20                                              # x 256 float32 = 1 GiB
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(rows, 256))  # sparse
    marked = np.r_[0:5, rows // 2 - 3:rows // 2 + 2, rows - 5:rows]
    x[marked] = np.random.default_rng(7).standard_normal((marked.size, 256)).astype(np.float32)
    x.flush()
    del x
    assert os.path.getsize(tmp_path / "x.npy") > 1 << 30
    code = textwrap.dedent(f"""
        import resource, sys
        from fastdense.saving.cli import predict_main
        from fastdense.saving.api import load_model
        load_model({str(tmp_path / "m.keras")!r}).predict(__import__("numpy").zeros((64, 256), "float32"))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        code = predict_main([{str(tmp_path / "m.keras")!r}, {str(tmp_path / "x.npy")!r},
                             "-o", {str(tmp_path / "y.npy")!r}, "-q"])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(code, base, peak)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    code, base, peak = map(int, result.stdout.split())
    assert code == 0
    assert (peak - base) * 1024 < 256 << 20, f"peak RSS grew by {(peak - base) / 1024:.0f} MiB for a 1 GiB input"
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert y.shape == (rows, 4) and y.dtype == np.float32
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(y[marked], model.predict(np.ascontiguousarray(x[marked])))
    zero = model.predict(np.zeros((1, 256), np.float32))[0]
    for part in (y[5:rows // 2 - 3], y[rows // 2 + 2:rows - 5]):
        assert (np.asarray(part) == zero).all()
