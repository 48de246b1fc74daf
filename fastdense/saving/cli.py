"""``fastdense predict MODEL INPUT -o OUTPUT``: run a saved model on a file, in batches.

INPUT is a ``.npy`` file (the single input), a ``.npz`` file whose arrays are named ``x0``,
``x1``, ... (inputs in order) or after the model's input names, or a ``.csv``/``.parquet``
table (needs pandas / pyarrow: ``pip install "fastdense[dask]"``) whose columns feed the inputs
(``--columns``; default: every column into the one input). OUTPUT is a ``.npy`` file, a ``.npz``
file (``y`` for one output, ``y0``, ``y1``, ... for several) or a ``.csv``/``.parquet`` table
with columns ``<output name>_<j>``.

Large inputs stream: a ``.npy`` input is memory-mapped one batch at a time, a ``.npz``
member is decompressed one batch at a time, a table is read one batch at a time, and each
batch's outputs are appended to a temporary file beside OUTPUT, which replaces OUTPUT only when
every row is written -- a failure leaves no half-written output. Memory use is bounded by the
batch (``--batch-size`` rows, default about 32 MiB of input), not by the file (a Fortran-order
array, whose rows are not contiguous, is the exception: read whole, at most 1 GiB from a .npz). A progress bar goes to stderr
when it is a terminal (``--progress`` / ``--no-progress`` to choose).

Example::

    $ fastdense predict mlp.keras batch.npy -o scores.npy
    scores.npy: float32 (5, 10) from mlp.keras
    $ fastdense predict mlp.keras table.parquet --columns f0,f1,f2 -o scores.parquet
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from .._tables import ColumnSpec, ModelIO, flat_outputs, model_io, output_column_names
from ._atomic import atomic_path
from .errors import KerasFileError

_BATCH_BYTES = 32 << 20          # default batch: about this much input per batch
_TABLES = (".csv", ".parquet")
_OUTPUTS = (".npy", ".npz") + _TABLES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdense predict",
        description="Run a saved Keras/fastdense model (.keras, .h5) on a .npy/.npz/.csv/.parquet input, in batches.",
    )
    parser.add_argument("model", help="model file (.keras archive or legacy .h5)")
    parser.add_argument("input", help=".npy array; .npz with arrays x0, x1, ... or named after the model inputs; "
                                      ".csv or .parquet table")
    parser.add_argument("-o", "--output", required=True, help="where to write the outputs (.npy, .npz, .csv, .parquet)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="rows per batch (default: about 32 MiB of input per batch)")
    parser.add_argument("--columns", action="append", default=None, metavar="[INPUT=]C1,C2,...",
                        help="table input: the columns of the one input, or INPUT=C1,C2 once per model input "
                             "(default: every column)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar on stderr (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="serve every float layer in this dtype (needed for mixed_float16, "
                             "mixed_bfloat16 and float16 models; see load_model)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


def _kind(path: str) -> str:
    lower = path.lower()
    for ext in (".npy", ".npz") + _TABLES:
        if lower.endswith(ext):
            return ext
    return os.path.splitext(lower)[1]


# --------------------------------------------------------------------------------------------
# Inputs: a number of rows (when known) and batches of arrays, one per model input
# --------------------------------------------------------------------------------------------


class Source(NamedTuple):
    """An input file opened for streaming."""

    rows: int | None                      # None: not known before the end (.csv)
    sample_shapes: list[tuple[int, ...]]  # per model input
    row_bytes: int                        # bytes of one row of input, for the default batch
    batches: Any                          # batches(rows_per_batch) -> iterator of lists of arrays


class _NpyLayout(NamedTuple):
    """What a .npy header declares, checked: the array's shape, order and dtype, and where its data starts."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize


def _read_npy_layout(f: IO[bytes], where: str) -> _NpyLayout:
    """Parse and check the header of the .npy stream ``f`` (left at the first data byte)."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{where}: not a valid .npy file ({exc})") from exc
    if dtype.hasobject:
        raise ValueError(f"{where}: cannot read the input without unpickling (it holds Python objects, dtype {dtype})")
    # numpy checks that the header is a dict of the right keys, not that the shape is one
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"{where}: the .npy header declares shape {shape}; expected non-negative integers")
    if len(shape) < 2:
        raise ValueError(f"{where}: expects samples along axis 0 and features after it, got an array of shape {shape}")
    return _NpyLayout(tuple(shape), bool(fortran), dtype, f.tell())


def _npy_header(path: str) -> _NpyLayout:
    """The checked header of a .npy file, without reading its data; the file must hold that data."""
    with open(path, "rb") as f:
        layout = _read_npy_layout(f, path)
    need = layout.offset + layout.data_bytes
    if os.path.getsize(path) < need:
        raise ValueError(f"{path}: truncated: shape {layout.shape} {layout.dtype} needs {need} bytes, the file has "
                         f"{os.path.getsize(path)}")
    return layout


def _npy_source(path: str) -> Source:
    shape, fortran, dtype, offset = layout = _npy_header(path)

    def batches(size: int) -> Iterator[list[np.ndarray]]:
        if fortran:     # rows are not contiguous in the file: map it whole, copy rows out
            whole = np.load(path, mmap_mode="r", allow_pickle=False)
            for start in range(0, shape[0], size):
                yield [np.ascontiguousarray(whole[start:start + size])]
            return
        for start in range(0, shape[0], size):
            rows = min(size, shape[0] - start)
            # only this batch's rows are mapped; the map goes when the batch is done
            yield [np.memmap(path, dtype=dtype, mode="r", offset=offset + start * layout.row_bytes,
                             shape=(rows,) + shape[1:])]

    return Source(shape[0], [shape[1:]], layout.row_bytes, batches)


# A Fortran-order .npz member cannot stream by rows; it is read whole up to this size.
_NPZ_WHOLE_LIMIT = 1 << 30


def _npz_keys(path: str, names: list[str], model: Any) -> list[str]:
    """The .npz arrays that feed the model's inputs, in input order."""
    count = len(getattr(model, "inputs", None) or [None])
    positional = [f"x{i}" for i in range(count)]
    model_names = [str(n) for n in (getattr(model, "input_names", None) or [])]
    if all(n in names for n in positional):
        return positional
    if model_names and all(n in names for n in model_names):
        return model_names
    if count == 1 and len(names) == 1:
        return names
    wanted = " or ".join(repr(k) for k in (positional, model_names) if k)
    raise ValueError(f"{path}: the model takes {count} input(s) named {wanted}; the file holds {names}")


class _NpzMember(NamedTuple):
    info: zipfile.ZipInfo
    layout: _NpyLayout


def _npz_source(path: str, model: Any) -> Source:
    """The model inputs from a .npz file, streamed member by member in row blocks (a zip member
    decompresses in order), never unpickling anything: memory is bounded by the batch, whatever
    the members declare or expand to."""
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
            keys = _npz_keys(path, list(arrays), model)
            members = []
            for key in keys:
                where = f"{path}!{arrays[key].filename}"
                with archive.open(arrays[key]) as f:
                    layout = _read_npy_layout(f, where)
                if layout.offset + layout.data_bytes != arrays[key].file_size:
                    raise ValueError(f"{where}: the header declares shape {layout.shape} {layout.dtype} "
                                     f"({layout.offset + layout.data_bytes} bytes with the header), the member "
                                     f"holds {arrays[key].file_size} bytes")
                if layout.fortran and layout.data_bytes > _NPZ_WHOLE_LIMIT:
                    raise ValueError(f"{where}: a Fortran-order array of {layout.data_bytes} bytes cannot be read "
                                     "by rows; save it in C order (np.ascontiguousarray) or as a .npy file")
                members.append(_NpzMember(arrays[key], layout))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    rows = {m.layout.shape[0] for m in members}
    if len(rows) > 1:
        counts = ", ".join(f"{k} {m.layout.shape[0]}" for k, m in zip(keys, members))
        raise ValueError(f"{path}: every input needs the same number of rows, the arrays hold {counts}")

    def batches(size: int) -> Iterator[list[np.ndarray]]:
        try:
            with zipfile.ZipFile(path) as archive, contextlib.ExitStack() as stack:
                streams = [stack.enter_context(archive.open(m.info)) for m in members]
                readers = [_member_rows(stream, m, f"{path}!{m.info.filename}") for stream, m in zip(streams, members)]
                total = members[0].layout.shape[0]
                for start in range(0, total, size):
                    yield [read(min(size, total - start)) for read in readers]
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc

    total = members[0].layout.shape[0] if members else 0
    return Source(total, [m.layout.shape[1:] for m in members], sum(m.layout.row_bytes for m in members), batches)


def _member_rows(stream: IO[bytes], member: _NpzMember, where: str) -> Any:
    """``read(n)``: the next ``n`` rows of a .npz member (whole, for a Fortran-order one)."""
    layout = member.layout
    _read_npy_layout(stream, where)       # skip the header
    whole = None
    if layout.fortran:
        data = stream.read(layout.data_bytes)
        _check_length(data, layout.data_bytes, where)
        whole = np.frombuffer(data, layout.dtype).reshape(layout.shape, order="F")
    done = 0

    def read(rows: int) -> np.ndarray:
        nonlocal done
        if whole is not None:
            block = np.ascontiguousarray(whole[done:done + rows])
        else:
            data = stream.read(rows * layout.row_bytes)
            _check_length(data, rows * layout.row_bytes, where)
            block = np.frombuffer(data, layout.dtype).reshape((rows,) + layout.shape[1:])
        done += rows
        return block

    return read


def _check_length(data: bytes, expected: int, where: str) -> None:
    if len(data) != expected:
        raise ValueError(f"{where}: truncated: expected {expected} more bytes of data, got {len(data)}")


def _parse_columns(values: list[str] | None) -> Any:
    """--columns values -> None, a list of names, or {input: [names]}."""
    if not values:
        return None
    if all("=" not in v for v in values):
        return [c for v in values for c in v.split(",") if c]
    spec = {}
    for value in values:
        name, sep, cols = value.partition("=")
        if not sep:
            raise ValueError(f"--columns: give INPUT=C1,C2 for every input, or one list; got {values}")
        spec[name] = [c for c in cols.split(",") if c]
    return spec


def _input_names(model: Any) -> list[str]:
    try:
        return [str(n) for n in model.input_names]
    except (AttributeError, ValueError):
        return ["input"]          # a Sequential model without an input shape: one input


def _table_source(path: str, kind: str, model: Any, columns: Any) -> Source:
    if kind == ".parquet":
        try:
            import pyarrow.parquet as pq  # noqa: PLC0415
        except ImportError as exc:
            raise ValueError(f"{path}: reading .parquet needs pyarrow (pip install \"fastdense[dask]\")") from exc
        parquet = pq.ParquetFile(path)
        available, rows = list(parquet.schema_arrow.names), parquet.metadata.num_rows
    else:
        pd = _pandas(path)
        available, rows = list(pd.read_csv(path, nrows=0).columns), None
    spec = ColumnSpec.parse(columns, available, _input_names(model))
    if getattr(model, "built", True):
        spec.check_widths([tuple(t.shape[1:]) for t in model.inputs])
        dtypes = [np.dtype(t.dtype) for t in model.inputs]
    else:
        dtypes = [np.dtype(np.float32)]
    needed = [c for _, cols in spec.inputs for c in cols]

    def batches(size: int) -> Iterator[list[np.ndarray]]:
        if kind == ".parquet":
            for batch in parquet.iter_batches(batch_size=size, columns=list(dict.fromkeys(needed))):
                yield spec.arrays(batch.to_pandas(), dtypes)
        else:
            with pd.read_csv(path, usecols=list(dict.fromkeys(needed)), chunksize=size) as reader:
                for frame in reader:
                    yield spec.arrays(frame, dtypes)

    return Source(rows, [(len(cols),) for _, cols in spec.inputs], 8 * len(needed), batches)


def _pandas(path: str) -> Any:
    try:
        import pandas as pd  # noqa: PLC0415
    except ImportError as exc:
        raise ValueError(f"{path}: .csv and .parquet files need pandas (pip install \"fastdense[dask]\")") from exc
    return pd


def open_source(path: str, model: Any, columns: Any) -> Source:
    """INPUT opened for batches, by its extension."""
    kind = _kind(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such input file: {path}")
    if columns is not None and kind not in _TABLES:
        raise ValueError(f"--columns applies to .csv/.parquet inputs, not {path}")
    if kind in _TABLES:
        return _table_source(path, kind, model, columns)
    if kind == ".npz":
        return _npz_source(path, model)
    if kind == ".npy":
        return _npy_source(path)
    raise ValueError(f"{path}: the input must be a .npy, .npz, .csv or .parquet file")


# --------------------------------------------------------------------------------------------
# Outputs: written batch by batch into a temporary file that replaces the target at the end
# --------------------------------------------------------------------------------------------


def _npy_header_text(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    return repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}).encode(
        "latin1")


def _npy_header_bytes(dtype: np.dtype, shape: tuple[int, ...], total: int) -> bytes:
    """A version 1.0 .npy header of exactly ``total`` bytes (space padded, as the format allows)."""
    body = _npy_header_text(dtype, shape)
    size = total - 10
    if len(body) + 1 > size:
        raise ValueError(f"output shape {shape} is too long for a .npy header of {total} bytes")
    body = body + b" " * (size - len(body) - 1) + b"\n"
    return np.lib.format.MAGIC_PREFIX + bytes([1, 0]) + size.to_bytes(2, "little") + body


class _NpyWriter:
    """One array appended row-block by row-block; the header (with the row count) goes in last,
    in room sized when the file is opened for any row count up to 20 digits."""

    def __init__(self, path: str, dtype: np.dtype, sample_shape: tuple[int, ...]) -> None:
        self.dtype, self.sample_shape, self.rows = np.dtype(dtype), tuple(sample_shape), 0
        widest = len(_npy_header_text(self.dtype, (10**20,) + self.sample_shape)) + 11
        self.header_bytes = -(-widest // 64) * 64      # data aligned on 64 bytes, as numpy writes it
        self.file = open(path, "wb")
        self.file.write(b"\0" * self.header_bytes)

    def write(self, array: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(array, self.dtype).data)
        self.rows += array.shape[0]

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(_npy_header_bytes(self.dtype, (self.rows,) + self.sample_shape, self.header_bytes))
        self.file.close()

    def abort(self) -> None:
        self.file.close()


class _NpySink:
    def __init__(self, tmp: str, io: ModelIO) -> None:
        if len(io.output_shapes) != 1:
            raise ValueError(f"the model has {len(io.output_shapes)} outputs; give an .npz, .csv or .parquet "
                             "output path to save them all")
        self.writer = _NpyWriter(tmp, io.output_dtypes[0], io.output_shapes[0])

    def write(self, outputs: list[np.ndarray]) -> None:
        self.writer.write(outputs[0])

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class _NpzSink:
    """Each output streams into its own .npy beside the target, zipped (stored) at the end."""

    def __init__(self, tmp: str, io: ModelIO) -> None:
        self.tmp = tmp
        self.parts = tempfile.mkdtemp(prefix=".fastdense-npz-", dir=os.path.dirname(tmp))
        self.names = ["y"] if len(io.output_shapes) == 1 else [f"y{i}" for i in range(len(io.output_shapes))]
        self.writers: list[_NpyWriter] = []
        try:     # one file per output, all open at once: a model with many outputs may meet EMFILE
            for name, dtype, shape in zip(self.names, io.output_dtypes, io.output_shapes):
                self.writers.append(_NpyWriter(os.path.join(self.parts, f"{name}.npy"), dtype, shape))
        except BaseException:
            self.abort()
            raise

    def write(self, outputs: list[np.ndarray]) -> None:
        for writer, array in zip(self.writers, outputs):
            writer.write(array)

    def close(self) -> None:
        try:
            for writer in self.writers:
                writer.close()
            with zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name in self.names:
                    with open(os.path.join(self.parts, f"{name}.npy"), "rb") as src, \
                            archive.open(f"{name}.npy", "w", force_zip64=True) as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        finally:
            shutil.rmtree(self.parts, ignore_errors=True)

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()
        shutil.rmtree(self.parts, ignore_errors=True)


class _TableSink:
    """Rows of ``<output name>_<j>`` columns, appended per batch (.csv text or .parquet row groups)."""

    def __init__(self, tmp: str, io: ModelIO, kind: str) -> None:
        self.pd = _pandas(tmp)
        self.tmp, self.kind = tmp, kind
        self.columns = output_column_names(io.output_names, io.output_shapes)
        self.writer: Any = None
        self.first = True
        if kind == ".parquet":
            try:
                import pyarrow  # noqa: PLC0415
                import pyarrow.parquet as pq  # noqa: PLC0415
            except ImportError as exc:
                raise ValueError("writing .parquet needs pyarrow (pip install \"fastdense[dask]\")") from exc
            self.pa = pyarrow
            schema = pyarrow.schema([(c, pyarrow.from_numpy_dtype(d)) for c, d in
                                     zip(self.columns, [d for d, s in zip(io.output_dtypes, io.output_shapes)
                                                        for _ in range(s[0])])])
            self.writer = pq.ParquetWriter(tmp, schema)
        else:
            self.writer = open(tmp, "w", newline="")

    def write(self, outputs: list[np.ndarray]) -> None:
        values = [y[:, j] for y in outputs for j in range(y.shape[1])]
        if self.kind == ".parquet":
            self.writer.write_table(self.pa.table(dict(zip(self.columns, values))))
        else:
            frame = self.pd.DataFrame(dict(zip(self.columns, values)), columns=self.columns)
            frame.to_csv(self.writer, header=self.first, index=False)
            self.first = False

    def close(self) -> None:
        if self.kind == ".csv" and self.first:
            self.writer.write(",".join(self.columns) + "\n")       # no rows: the header alone
        self.writer.close()

    def abort(self) -> None:
        self.writer.close()


def _sink(tmp: str, kind: str, io: ModelIO) -> Any:
    if kind == ".npy":
        return _NpySink(tmp, io)
    if kind == ".npz":
        return _NpzSink(tmp, io)
    return _TableSink(tmp, io, kind)


# --------------------------------------------------------------------------------------------
# Progress and the command
# --------------------------------------------------------------------------------------------


class _Progress:
    """``predict  42% |########            | 420000/1000000 rows  1.2M rows/s`` on stderr, at most 10 times a second."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0
        self.start = self.last = time.monotonic()

    def update(self, rows: int, final: bool = False) -> None:
        self.done += rows
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < 0.1):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        speed = f"{rate / 1e6:.2f}M rows/s" if rate >= 1e6 else f"{rate / 1e3:.1f}k rows/s"
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            bar = "#" * int(30 * fraction)
            line = f"predict {100 * fraction:3.0f}% |{bar:<30}| {self.done}/{self.total} rows  {speed}"
        else:
            line = f"predict {self.done} rows  {speed}"
        sys.stderr.write("\r" + line + ("\n" if final else ""))
        sys.stderr.flush()


def run_predict(model: Any, source: Source, output: str, batch_size: int | None, progress: _Progress) -> ModelIO:
    """Stream ``source`` through ``model`` into ``output`` (atomically); returns the model's I/O."""
    io = model_io(model, source.sample_shapes)
    if batch_size is None:
        batch_size = max(1, _BATCH_BYTES // max(source.row_bytes, 1))
    keys = io.output_keys
    with atomic_path(output) as tmp:
        sink = _sink(tmp, _kind(output), io)
        try:
            for arrays in source.batches(batch_size):
                x = arrays[0] if len(arrays) == 1 else arrays
                sink.write(flat_outputs(model.predict(x), keys))
                progress.update(arrays[0].shape[0])
                del arrays, x                 # a mapped batch is unmapped before the next is mapped
            sink.close()
        except BaseException:
            sink.abort()
            raise
    progress.update(0, final=True)
    return io


def predict_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fastdense predict``; returns the process exit code (0 ok, 1 error, 2 usage)."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if _kind(args.output) not in _OUTPUTS:
        print(f"fastdense predict: the output must be a .npy, .npz, .csv or .parquet file, got {args.output!r}",
              file=sys.stderr)
        return 2
    if args.batch_size is not None and args.batch_size <= 0:
        print(f"fastdense predict: --batch-size must be a positive integer, got {args.batch_size}", file=sys.stderr)
        return 2
    from .api import load_model  # noqa: PLC0415

    show = args.progress if args.progress is not None else (not args.quiet and sys.stderr.isatty())
    try:
        model = load_model(args.model, dtype=args.dtype)
        source = open_source(args.input, model, _parse_columns(args.columns))
        progress = _Progress(source.rows, show)
        io = run_predict(model, source, args.output, args.batch_size, progress)
    except (KerasFileError, ValueError, TypeError, OSError, NotImplementedError, MemoryError) as exc:
        # NotImplementedError: a layer the file asks for what fastdense does not do (a Dropout node
        # saved with training=True); MemoryError: a batch too large for this machine
        detail = f"MemoryError: {exc} (try a smaller --batch-size)" if isinstance(exc, MemoryError) else str(exc)
        message = f"fastdense predict: error: {detail}"
        print(f"\n{message}" if show else message, file=sys.stderr)
        return 1
    if not args.quiet:
        if len(io.output_shapes) == 1:
            what = f"{io.output_dtypes[0]} {(progress.done,) + io.output_shapes[0]}"
        else:
            what = f"{len(io.output_shapes)} outputs, {progress.done} rows"
        print(f"{os.fspath(args.output)}: {what} from {args.model}")
    return 0

