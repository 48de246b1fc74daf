"""Careful HDF5 reading shared by the .keras, .weights.h5 and legacy .h5 readers.

Only hard-linked groups and datasets are followed (soft and external links, external and
virtual datasets are refused), only numeric arrays are read, and every array's declared size is
checked before it is allocated, so a hostile file cannot point outside itself or make fastdense
allocate far more memory than the file holds.
"""

from __future__ import annotations

import contextlib
import io
import math
import mmap
import os
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from .errors import KerasFileError, UnsafeFileError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# One weight array may declare at most this many bytes.
MAX_ARRAY_BYTES = 8 << 30
# Above this size an array must store at least 1/MAX_EXPANSION of its bytes in the file:
# genuine (even compressed) weights do, "shape bombs" holding only a fill value do not.
BOMB_FLOOR_BYTES = 64 << 20
MAX_EXPANSION = 1000

_NUMERIC_KINDS = "fiub"


def is_hdf5(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) carries the HDF5 signature at offset 0."""
    return head[: len(HDF5_SIGNATURE)] == HDF5_SIGNATURE


def has_hdf5_signature(path: str) -> bool:
    """HDF5 signature at offset 0 or at a user-block offset (512, 1024, ... bytes)."""
    with open(path, "rb") as f:
        if is_hdf5(f.read(8)):
            return True
        offset = 512
        size = os.fstat(f.fileno()).st_size
        while offset + 8 <= size and offset <= 1 << 20:
            f.seek(offset)
            if is_hdf5(f.read(8)):
                return True
            offset *= 2
    return False


def open_h5(source: str | bytes, path: str) -> h5py.File:
    """Open an HDF5 file for reading from a path or from bytes already in memory.

    ``path`` names the file in errors (for bytes from an archive: "model.keras!model.weights.h5").
    """
    try:
        if isinstance(source, (bytes, bytearray)):
            check_global_heaps(source, path)
            return h5py.File(io.BytesIO(source), "r")
        with open(source, "rb") as f:
            if os.fstat(f.fileno()).st_size:      # (an empty file cannot be mapped; h5py refuses it)
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    check_global_heaps(mapped, path)
        return h5py.File(source, "r")
    except OSError as exc:
        raise KerasFileError(f"not a readable HDF5 file ({exc})", path=path) from exc


def _lengths_size(data: Any) -> int:
    """The superblock's "size of lengths" (8 unless the file says otherwise)."""
    offset = 0
    while offset + 16 <= min(len(data), (1 << 20) + 16):
        if data[offset:offset + 8] == HDF5_SIGNATURE:
            size = data[offset + 14] if data[offset + 8] in (0, 1) else data[offset + 10]
            return size if size in (2, 4, 8) else 8
        offset = 512 if offset == 0 else offset * 2
    return 8


def check_global_heaps(data: Any, path: str) -> None:
    """Walk every global heap collection ("GCOL": where variable-length strings such as Keras's
    attributes live) the way libhdf5 will, and refuse one it cannot walk. libhdf5 2.0 loops forever
    on an object of size 0 that a damaged size field makes it land on (one flipped byte of a legacy
    .h5 hung ``load_model``), and reads past the collection on an object that overruns it."""
    lengths = _lengths_size(data)
    header = 8 + lengths                   # "GCOL", version, 3 reserved bytes, collection size
    at = data.find(b"GCOL")
    while at != -1:
        if data[at + 4:at + 8] == b"\x01\x00\x00\x00" and at + header <= len(data):
            size = int.from_bytes(data[at + 8:at + header], "little")
            problem = None if header <= size <= len(data) - at else f"declares {size} bytes"
            p = header
            while problem is None and p + 8 + lengths <= size:
                index = int.from_bytes(data[at + p:at + p + 2], "little")
                length = int.from_bytes(data[at + p + 8:at + p + 8 + lengths], "little")
                need = 8 + lengths + ((length + 7) & ~7) if index > 0 else length
                if need == 0 or p + need > size:
                    problem = f"has an object of {length} bytes at offset {p} that does not fit it"
                p += need
            if problem is not None:
                raise KerasFileError(f"corrupted HDF5 file: the global heap at byte {at} {problem}", path=path)
        at = data.find(b"GCOL", at + 4)


@contextlib.contextmanager
def reading(path: str, what: str = "HDF5 file") -> Iterator[None]:
    """Turn any error h5py raises on a damaged file into a KerasFileError naming ``path``."""
    try:
        yield
    except KerasFileError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, OverflowError) as exc:
        raise KerasFileError(f"corrupted {what} ({type(exc).__name__}: {exc})", path=path) from exc


def child(group: h5py.Group, name: str, path: str, *, layer: str | None = None) -> Any:
    """``group[name]`` (``name`` may contain "/"), following hard links only."""
    current: Any = group
    for part in name.split("/"):
        if not part or part in (".", ".."):
            raise UnsafeFileError(f"invalid HDF5 path {name!r}", path=path, layer=layer)
        if not isinstance(current, h5py.Group) or part not in current:
            raise KerasFileError(f"missing HDF5 entry {_join(current, part)!r}", path=path, layer=layer)
        link = current.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise UnsafeFileError(
                f"HDF5 entry {_join(current, part)!r} is a {type(link).__name__}; "
                "only entries stored in the file itself are read",
                path=path,
                layer=layer,
            )
        current = current[part]
    return current


def _join(group: Any, part: str) -> str:
    base = getattr(group, "name", "") or ""
    return f"{base.rstrip('/')}/{part}"


def group(parent: h5py.Group, name: str, path: str, *, layer: str | None = None) -> h5py.Group:
    found = child(parent, name, path, layer=layer)
    if not isinstance(found, h5py.Group):
        raise KerasFileError(f"HDF5 entry {found.name!r} should be a group, found a dataset", path=path, layer=layer)
    return found


class ReadBudget:
    """The bomb rule over all the arrays read from one file, not just each one: a file of many
    arrays, each declaring a little under BOMB_FLOOR_BYTES and storing nothing, must not add up
    to gigabytes either. Create one per file and pass it to every :func:`read_array`.

    It also sees that each dataset and group is reached once: hard links can make one stored
    array appear under thousands of names (each read a new copy in memory), or make a few groups
    a lattice with 2**30 paths through it. Keras never stores anything twice."""

    def __init__(self) -> None:
        self.declared = 0
        self.stored = 0
        self.seen: dict[Any, str] = {}

    def visit(self, obj: Any, path: str, layer: str | None = None) -> None:
        """Note that the group or dataset ``obj`` is being read; refuse it if it already was."""
        first = self.seen.get(obj.id)
        if first is None:
            self.seen[obj.id] = obj.name
        else:
            raise UnsafeFileError(
                f"HDF5 entry {obj.name!r} is read a second time (first as {first!r}); a Keras file stores "
                "and lists each group and weight once (refusing names or hard links that repeat them)",
                path=path,
                layer=layer,
            )

    def take(self, declared: int, stored: int, where: str, path: str, layer: str | None) -> None:
        self.declared += declared
        self.stored += stored
        if self.declared > BOMB_FLOOR_BYTES and self.declared > MAX_EXPANSION * self.stored:
            raise UnsafeFileError(
                f"the arrays read up to dataset {where!r} declare {self.declared} bytes in all but the file "
                f"stores only {self.stored}; refusing a likely decompression bomb",
                path=path,
                layer=layer,
            )


def read_array(
    parent: h5py.Group, name: str, path: str, *, budget: ReadBudget, layer: str | None = None
) -> np.ndarray:
    """Read the numeric dataset ``parent[name]`` into a new numpy array, after checking it (and
    charging it to ``budget``, the file's :class:`ReadBudget`)."""
    dataset = child(parent, name, path, layer=layer)
    if not isinstance(dataset, h5py.Dataset):
        raise KerasFileError(f"HDF5 entry {dataset.name!r} should be a dataset, found a group", path=path, layer=layer)
    where = dataset.name
    if dataset.external:
        raise UnsafeFileError(f"dataset {where!r} keeps its data in external files", path=path, layer=layer)
    if dataset.is_virtual:
        raise UnsafeFileError(f"dataset {where!r} is a virtual dataset", path=path, layer=layer)
    shape = dataset.shape
    if shape is None:
        raise KerasFileError(f"dataset {where!r} is empty (no shape)", path=path, layer=layer)
    bfloat16 = _is_bfloat16(dataset)
    if not bfloat16 and dataset.dtype.kind not in _NUMERIC_KINDS:
        raise KerasFileError(
            f"dataset {where!r} has dtype {dataset.dtype}; weights must be numeric arrays", path=path, layer=layer
        )
    declared = math.prod(shape) * dataset.dtype.itemsize
    if declared > MAX_ARRAY_BYTES:
        raise UnsafeFileError(
            f"dataset {where!r} declares shape {shape} ({declared} bytes), above the "
            f"limit of {MAX_ARRAY_BYTES} bytes per weight",
            path=path,
            layer=layer,
        )
    stored = dataset.id.get_storage_size()
    if declared > BOMB_FLOOR_BYTES and declared > MAX_EXPANSION * stored:
        raise UnsafeFileError(
            f"dataset {where!r} declares {declared} bytes but stores only {stored}; "
            "refusing a likely decompression bomb",
            path=path,
            layer=layer,
        )
    budget.visit(dataset, path, layer)
    budget.take(declared, stored, where, path, layer)
    try:
        value = dataset[()]
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise KerasFileError(f"cannot read dataset {where!r} ({exc})", path=path, layer=layer) from exc
    value = np.array(value, copy=True)
    if bfloat16:
        value = _bfloat16_to_float32(value)
    return value


def _is_bfloat16(dataset: h5py.Dataset) -> bool:
    marker = _attr(dataset, "dtype") if "dtype" in dataset.attrs else None
    if isinstance(marker, bytes):
        marker = marker.decode("utf-8", "replace")
    return marker == "bfloat16" and dataset.dtype.itemsize == 2


def _bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Keras stores bfloat16 as 2-byte opaque values; widen them exactly to float32."""
    bits = np.frombuffer(raw.tobytes(), dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).reshape(raw.shape)


# The HDF5 type classes an attribute Keras writes may have: strings (fixed or variable length), and
# the float64 of an empty list.
_ATTRIBUTE_CLASSES = {h5py.h5t.STRING: "string", h5py.h5t.FLOAT: "float", h5py.h5t.INTEGER: "integer"}


def _attr(obj: Any, name: str) -> Any:
    """``obj.attrs[name]``, read only if its HDF5 type is one Keras writes: libhdf5 2.0 crashes
    (SIGSEGV in H5T__conv_vlen) converting an attribute whose type a damaged byte turned from a
    variable-length string into a variable-length sequence."""
    type_class = obj.attrs.get_id(name).get_type().get_class()
    if type_class not in _ATTRIBUTE_CLASSES:
        raise ValueError(
            f"attribute {name!r} of {obj.name!r} has HDF5 type class {type_class}; expected strings or numbers "
            f"({', '.join(sorted(_ATTRIBUTE_CLASSES.values()))})"
        )
    return obj.attrs[name]


def str_attr(obj: Any, name: str) -> str | None:
    """A string attribute (stored as str or bytes), or None when absent."""
    if name not in obj.attrs:
        return None
    value = _attr(obj, name)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    raise ValueError(f"attribute {name!r} should be a string, got {type(value).__name__}")


def str_list_attr(obj: Any, name: str) -> list[str]:
    """A list-of-strings attribute, joining Keras's chunks ``name0``, ``name1``, ... for long lists."""
    if name in obj.attrs:
        chunks = [_attr(obj, name)]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in obj.attrs:
            chunks.append(_attr(obj, f"{name}{len(chunks)}"))
    out: list[str] = []
    for chunk in chunks:
        values = np.atleast_1d(np.asarray(chunk))
        if values.size == 0:  # Keras writes an empty list as an empty float64 array
            continue
        for value in values.tolist():
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if not isinstance(value, str):
                raise ValueError(f"attribute {name!r} should hold strings, found {value!r}")
            out.append(value)
    return out
