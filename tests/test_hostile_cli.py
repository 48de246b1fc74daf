"""``fastdense predict`` against malformed and hostile input files: .npy headers that lie about
their shape, .npz archives whose members are not arrays, disagree on row counts or expand far
beyond their size. Each gets exit code 1 and one line naming the file and what was expected,
writes nothing, and memory stays bounded by the batch."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

from fastdense.layers import Concatenate, Dense, Input
from fastdense.models import Model, Sequential
from fastdense.saving.cli import predict_main


@pytest.fixture
def mlp(tmp_path):
    rng = np.random.default_rng(0)
    model = Sequential([Input((6,)), Dense(8, activation="relu"), Dense(3)])
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    return model


def npy_bytes(shape, descr="<f4", fortran=False, data=b""):
    """A .npy file whose header declares ``shape`` (anything numpy's header parser accepts)."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode("latin1")
    body = text + b" " * (118 - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little") + body + data


def predict(tmp_path, source, *extra):
    return predict_main([str(tmp_path / "m.keras"), str(tmp_path / source), "-o", str(tmp_path / "y.npy"), "-q",
                         *extra])


def outputs(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("y", ".y", ".fastdense")))


@pytest.mark.parametrize("shape, message", [
    ((-1, 6), r"declares shape \(-1, 6\); expected non-negative integers"),          # was: an empty output, exit 0
    ((5, -6), r"declares shape \(5, -6\); expected non-negative integers"),
    ((2**61, 8), r"truncated: shape \(2305843009213693952, 8\) float32 needs 73786976294838206592 bytes"),  # int64 wrap
    ((2**62 + 1, 4), "truncated: shape .* needs 73786976294838206608 bytes"),
])
def test_npy_headers_declaring_impossible_shapes(tmp_path, capsys, mlp, shape, message):
    (tmp_path / "x.npy").write_bytes(npy_bytes(shape, data=b"\0" * 480))
    assert predict(tmp_path, "x.npy") == 1
    err = capsys.readouterr().err
    assert "x.npy" in err and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert outputs(tmp_path) == []


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("members, message", [
    ({"x0.npy": _npy(np.float32(1.0))}, r"x\.npz!x0\.npy: expects samples along axis 0 .* shape \(\)"),  # IndexError
    ({"x0.npy": b"not an array"}, r"x\.npz!x0\.npy: not a valid \.npy file"),                        # AttributeError
    ({"x0.npy": _npy(np.zeros((4, 6), np.float32))[:-16]}, r"x\.npz!x0\.npy: the header declares shape \(4, 6\)"),
    ({"x0.npy": npy_bytes((-2, 6))}, r"declares shape \(-2, 6\); expected non-negative"),
    ({"x0.npy": _npy(np.array([[None] * 6], object))}, "without unpickling"),
])
def test_npz_members_that_are_not_arrays(tmp_path, capsys, mlp, members, message):
    _zip(tmp_path / "x.npz", members)
    assert predict(tmp_path, "x.npz") == 1
    err = capsys.readouterr().err
    assert __import__("re").search(message, err), err
    assert outputs(tmp_path) == []


def test_npz_that_is_no_zip(tmp_path, capsys, mlp):
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 but no archive")
    assert predict(tmp_path, "x.npz") == 1
    assert "x.npz: not a readable .npz file (BadZipFile" in capsys.readouterr().err


def test_npz_inputs_with_different_row_counts(tmp_path, capsys):
    a, b = Input((2,), name="a"), Input((3,), name="b")
    Model([a, b], Dense(2)(Concatenate()([a, b]))).save(tmp_path / "m.keras")
    np.savez(tmp_path / "x.npz", x0=np.ones((10, 2), np.float32), x1=np.ones((4, 3), np.float32))
    assert predict(tmp_path, "x.npz", "--batch-size", "3") == 1
    assert "x.npz: every input needs the same number of rows, the arrays hold x0 10, x1 4" in capsys.readouterr().err
    assert outputs(tmp_path) == []


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_streams_in_batches_with_the_same_results(tmp_path, save):
    rng = np.random.default_rng(1)
    left, right = Input((2,), name="left"), Input((3,), name="right")
    model = Model([left, right], Dense(4, activation="tanh")(Concatenate()([left, right])))
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    x0, x1 = rng.standard_normal((37, 2)), rng.standard_normal((37, 3)).astype(">f4")
    save(tmp_path / "x.npz", right=np.asfortranarray(x1), left=x0)     # by name, Fortran order, big-endian
    assert predict(tmp_path, "x.npz", "--batch-size", "5") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.predict([x0, x1.astype(np.float32)]))


def test_npz_bomb_streams_in_bounded_memory(tmp_path, mlp):
    """A 64 MiB array of zeros deflates to ~64 KiB; np.load read it whole (a 1000x expansion of the
    file in memory). Streamed, memory follows the batch, and the answer is still right."""
    rows = (64 << 20) // 24
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("x0.npy", "w") as member:
        member.write(npy_bytes((rows, 6)))
        left, zeros = rows * 24, bytes(1 << 20)
        while left:
            member.write(zeros[:left])
            left -= min(left, len(zeros))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        code = predict(tmp_path, "x.npz", "--batch-size", "4096")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0
    assert peak < 16 << 20, f"peak traced memory {peak >> 20} MiB for a 64 MiB member"
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert y.shape == (rows, 3)
    expected = mlp.predict(np.zeros((1, 6), np.float32))[0]
    assert (np.asarray(y[::997]) == expected).all() and (np.asarray(y[-1]) == expected).all()
    del y
    os.remove(tmp_path / "y.npy")


# --------------------------------------------------------------------------------------
# fastdense bench: arguments that could only fail after minutes of timing are refused first
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--batches", "99999999999"], "--batches expects batch sizes up to 1048576"),   # was: a MemoryError
    (["--batches", "1", "--json", "/nonexistent-dir/r.json"], "cannot write '/nonexistent-dir/r.json'"),
    (["--batches", "1", "--json", "."], r"cannot write '\.'"),
    (["--quantize", "int8", "--batches", "1", "--json", "/nonexistent-dir/r.json"], "cannot write"),
])
def test_bench_refuses_bad_arguments_before_timing(monkeypatch, capsys, args, message):
    from fastdense import benchmark, benchmark_quant

    def ran(*args, **kwargs):
        raise AssertionError("the benchmark ran before its arguments were checked")

    monkeypatch.setattr(benchmark, "run_mlp", ran)
    monkeypatch.setattr(benchmark_quant, "run_quant", ran)
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(args)
    assert exit_info.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_a_model_file_asking_for_training_mode_is_an_error_not_a_traceback(tmp_path, capsys):
    """A functional node saved with training=True (Keras would run the dropout at inference):
    fastdense's layer refuses with NotImplementedError, which the command let escape."""
    from fastdense.layers import GaussianDropout

    x = Input((4,), name="x")
    Model(x, Dense(2)(GaussianDropout(0.1)(x, training=True))).save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    assert predict(tmp_path, "x.npy") == 1
    assert "error: GaussianDropout 'gaussian_dropout' runs inference only" in capsys.readouterr().err
    assert outputs(tmp_path) == []


def test_a_batch_too_large_for_memory_is_an_error_not_a_traceback(tmp_path, capsys, mlp, monkeypatch):
    np.save(tmp_path / "x.npy", np.ones((3, 6), np.float32))

    def no_memory(self, *args, **kwargs):
        raise MemoryError("Unable to allocate 1.00 TiB")

    monkeypatch.setattr(Sequential, "predict", no_memory)
    assert predict(tmp_path, "x.npy") == 1
    assert "error: MemoryError: Unable to allocate 1.00 TiB (try a smaller --batch-size)" in capsys.readouterr().err
    assert outputs(tmp_path) == []


@pytest.mark.parametrize("fail_at", ["open", "close"])
def test_npz_output_that_cannot_be_written_leaves_no_temporary_files(tmp_path, capsys, monkeypatch, fail_at):
    """One .npy part per output, all open at once: a model with many outputs can meet 'Too many
    open files' opening them (the parts directory and the open files were left behind), and the
    final header write can fail as well."""
    from fastdense.saving import cli

    x = Input((3,), name="x")
    Model(x, [Dense(2, name=f"o{i}")(x) for i in range(3)]).save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.ones((4, 3), np.float32))
    (tmp_path / "y.npz").write_bytes(b"the earlier output")
    calls = []
    method = "__init__" if fail_at == "open" else "close"
    real = getattr(cli._NpyWriter, method)

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(24, "Too many open files")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cli._NpyWriter, method, failing)
    assert predict_main([str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"), "-q"]) == 1
    assert "Too many open files" in capsys.readouterr().err
    assert (tmp_path / "y.npz").read_bytes() == b"the earlier output"
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "x.npy", "y.npz"]


def test_npy_output_of_high_rank_gets_a_header_that_fits(tmp_path):
    """The .npy header is written last, into room reserved first: 128 bytes did not hold the shape
    of a rank-25 output, and the run failed only after every batch was computed."""
    from fastdense.layers import Reshape

    model = Sequential([Input((4,)), Dense(3, name="d"), Reshape((1,) * 23 + (3,))])
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(4).standard_normal((9, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert predict(tmp_path, "x.npy", "--batch-size", "4") == 0
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (9,) + (1,) * 23 + (3,)
    np.testing.assert_array_equal(y, model.predict(x))


@pytest.mark.parametrize("column", ["timestamp_us", "timestamp_ns", "duration"])
def test_parquet_dates_are_not_taken_for_numbers(tmp_path, capsys, mlp, column):
    """A timestamp column reached the model as its count of microseconds (or nanoseconds: the
    file's unit decided), where a .csv date is refused as not numeric."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import datetime

    values = {
        "timestamp_us": pa.array([datetime.datetime(2020, 1, 1)] * 2, pa.timestamp("us")),
        "timestamp_ns": pa.array([datetime.datetime(2020, 1, 1)] * 2, pa.timestamp("ns")),
        "duration": pa.array([datetime.timedelta(seconds=5)] * 2, pa.duration("s")),
    }[column]
    table = {f"f{i}": [1.0, 2.0] for i in range(6)}
    table["f2"] = values
    pq.write_table(pa.table(table), tmp_path / "x.parquet")
    assert predict(tmp_path, "x.parquet") == 1
    assert "columns ['f2'] hold dates or durations, not numbers" in capsys.readouterr().err
    assert outputs(tmp_path) == []
