"""The Keras 3 formats: the ``.keras`` zip archive and the ``.weights.h5`` weights file.

A ``.keras`` file is a zip archive with three members, stored uncompressed::

    metadata.json      {"keras_version": "3.15.1", "date_saved": "2026-11-26@13:02:13"}
    config.json        the model config: {"module", "class_name", "config", "registered_name",
                       "build_config", "compile_config"}
    model.weights.h5   the weights, laid out as below (also the whole of a .weights.h5 file)

Weights live in HDF5 groups named after the model's layers *by class*, never by layer name::

    vars                       (attrs: name=<model name>)  the model's own weights (none)
    layers/dense/vars/0        first Dense layer in model.layers: kernel
    layers/dense/vars/1                                           bias
    layers/dense_1/vars/0      second Dense layer (counted among all model.layers, in order)
    layers/input_layer/vars    weightless layers still get an (empty) group
    layers/sequential/layers/dense/vars/0   a layer of a nested model

The group name is the snake_case class name, suffixed ``_1``, ``_2``, ... for the second, third
... layer of the same class in ``model.layers`` (a Sequential's ``model.layers`` leaves out its
InputLayer; a functional model's includes its InputLayers). Each ``vars`` group has a ``name``
attribute with the layer's name, and holds the layer's weights as datasets "0", "1", ... in
the layer's weight order.

Reading never extracts anything: only the three members above are read (into memory, each
under a size limit), other members are ignored, and names that try to escape the archive are
refused.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from . import _h5
from .errors import KerasFileError, UnsafeFileError

CONFIG_NAME = "config.json"
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "model.weights.h5"

# The Keras release whose file layout fastdense writes (and that Keras tools read from
# metadata.json's "keras_version"); fastdense also records itself under "saved_by".
KERAS_FORMAT_VERSION = "3.15.1"

# Largest uncompressed size read for each member.
MEMBER_LIMITS = {METADATA_NAME: 1 << 20, CONFIG_NAME: 64 << 20, WEIGHTS_NAME: 16 << 30}
# A member larger than ZIP_BOMB_FLOOR may expand at most ZIP_MAX_EXPANSION times its stored size
# (Keras stores members uncompressed; deflate itself cannot exceed ~1032:1).
ZIP_BOMB_FLOOR = 16 << 20
ZIP_MAX_EXPANSION = 100
MAX_MEMBERS = 10_000

ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def is_zip(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts like a zip archive."""
    return head[:4] in ZIP_SIGNATURES


# --------------------------------------------------------------------------------------
# Naming: where each layer's weights live
# --------------------------------------------------------------------------------------


def to_snake_case(name: str) -> str:
    """Keras's class-name -> group-name rule.

    >>> to_snake_case("Dense"), to_snake_case("InputLayer"), to_snake_case("ReLU")
    ('dense', 'input_layer', 're_lu')
    """
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_group_names(class_names: list[str]) -> list[str]:
    """Group names for layers of these classes, in order: dense, dense_1, activation, dense_2 ...

    >>> unique_group_names(["InputLayer", "Dense", "Activation", "Dense"])
    ['input_layer', 'dense', 'activation', 'dense_1']
    """
    used: dict[str, int] = {}
    names = []
    for class_name in class_names:
        base = to_snake_case(class_name)
        if base in used:
            used[base] += 1
            names.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            names.append(base)
    return names


def keras_class_name(obj: Any) -> str:
    """The Keras class name a fastdense object is saved under ("Functional" for a Model)."""
    name = type(obj).__name__
    return "Functional" if name == "Model" else name


def is_model(obj: Any) -> bool:
    """A Sequential or functional model (something whose weights nest under ``layers/``)."""
    return hasattr(obj, "layers") and keras_class_name(obj) in ("Sequential", "Functional")


def saved_layers(model: Any) -> list[Any]:
    """``model.layers`` as Keras saves them: a Sequential without its leading InputLayer."""
    layers = list(model.layers)
    if keras_class_name(model) == "Sequential" and layers and type(layers[0]).__name__ == "InputLayer":
        layers = layers[1:]
    return layers


def layer_paths(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(weights path, layer)`` for every layer, nested models included, in model order.

    The path of the n-th Dense is ``layers/dense_n``; a nested model's layers follow its own entry.
    """
    layers = saved_layers(model)
    for name, layer in zip(unique_group_names([keras_class_name(layer) for layer in layers]), layers):
        path = f"{prefix}layers/{name}"
        yield path, layer
        if is_model(layer):
            yield from layer_paths(layer, prefix=f"{path}/")


def config_layer_paths(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """``(weights path, layer name, class name)`` for each layer of a model *config*.

    The same naming as :func:`layer_paths`, computed from ``config.json`` alone.
    """
    inner = config.get("config", {})
    entries = inner.get("layers", []) if isinstance(inner, dict) else inner
    # A malformed config names no weights here; rebuilding the model then says what is wrong.
    entries = [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []
    class_name = config.get("class_name")
    if class_name == "Sequential" and entries and entries[0].get("class_name") == "InputLayer":
        entries = entries[1:]
    classes = [str(entry.get("class_name", "")) for entry in entries]
    for name, entry in zip(unique_group_names(["Functional" if c == "Model" else c for c in classes]), entries):
        path = f"{prefix}layers/{name}"
        layer_config = entry.get("config")
        layer_name = entry.get("name") or (layer_config.get("name", "") if isinstance(layer_config, dict) else "")
        yield path, str(layer_name), str(entry.get("class_name", ""))
        if entry.get("class_name") in ("Sequential", "Functional", "Model"):
            yield from config_layer_paths(entry, prefix=f"{path}/")


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


@dataclass
class KerasArchive:
    """What fastdense reads from a ``.keras`` file.

    ``weights`` maps each weights path ("" for the model itself, "layers/dense", ...) to its
    arrays in order; ``names`` maps the same paths to the layer names recorded in the file.
    """

    path: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> bytes:
    """Read one member into memory, refusing bombs: declared and actual sizes are both capped."""
    limit = MEMBER_LIMITS[info.filename]
    if info.flag_bits & 0x1:
        raise KerasFileError(f"archive member {info.filename!r} is encrypted", path=path)
    if info.file_size > limit:
        raise UnsafeFileError(
            f"archive member {info.filename!r} declares {info.file_size} bytes, above the "
            f"limit of {limit} bytes",
            path=path,
        )
    if info.file_size > ZIP_BOMB_FLOOR and info.file_size > ZIP_MAX_EXPANSION * max(info.compress_size, 1):
        raise UnsafeFileError(
            f"archive member {info.filename!r} expands from {info.compress_size} to "
            f"{info.file_size} bytes; refusing a likely zip bomb",
            path=path,
        )
    chunks = []
    total = 0
    with archive.open(info, "r") as member:
        while True:
            chunk = member.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > min(limit, info.file_size):
                raise UnsafeFileError(
                    f"archive member {info.filename!r} holds more data than the "
                    f"{info.file_size} bytes it declares",
                    path=path,
                )
            chunks.append(chunk)
    if total != info.file_size:
        raise KerasFileError(
            f"archive member {info.filename!r} is truncated: {total} of {info.file_size} bytes", path=path
        )
    return b"".join(chunks)


def _unsafe_member_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (
        name.startswith(("/", "\\"))
        or bool(re.match(r"^[A-Za-z]:", name))
        or ".." in parts
        or "\x00" in name
    )


def _load_json(data: bytes, member: str, path: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise KerasFileError(f"archive member {member!r} is not valid JSON ({exc})", path=path) from exc


def read_keras_archive(path: str | os.PathLike[str]) -> KerasArchive:
    """Read config, metadata and weights of a ``.keras`` archive, without extracting anything.

    >>> import os, tempfile
    >>> from fastdense import Sequential, layers
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "mlp.keras")
    >>> Sequential([layers.Input((20,)), layers.Dense(64), layers.Dense(10)]).save(path)
    >>> archive = read_keras_archive(path)
    >>> archive.config["class_name"], [w.shape for w in archive.weights["layers/dense"]]
    ('Sequential', [(20, 64), (64,)])
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path, "r") as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise UnsafeFileError(f"archive has {len(infos)} members, more than {MAX_MEMBERS}", path=path)
            wanted: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                if _unsafe_member_name(info.filename):
                    raise UnsafeFileError(
                        f"archive member {info.filename!r} points outside the archive; refusing the file",
                        path=path,
                    )
                if info.filename in MEMBER_LIMITS:
                    if info.filename in wanted:
                        raise UnsafeFileError(f"archive has two members named {info.filename!r}", path=path)
                    wanted[info.filename] = info
            if "model.weights.npz" in archive.namelist() and WEIGHTS_NAME not in wanted:
                raise KerasFileError(
                    "weights are stored as model.weights.npz (pickled numpy); fastdense reads only "
                    "model.weights.h5. Re-save the model with Keras's default weights_format='h5'",
                    path=path,
                )
            missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if name not in wanted]
            if missing:
                raise KerasFileError(
                    f"not a Keras model archive: missing {', '.join(missing)} "
                    f"(members: {sorted(archive.namelist())[:10]})",
                    path=path,
                )
            config = _load_json(_read_member(archive, wanted[CONFIG_NAME], path), CONFIG_NAME, path)
            metadata: Any = {}
            if METADATA_NAME in wanted:
                metadata = _load_json(_read_member(archive, wanted[METADATA_NAME], path), METADATA_NAME, path)
            weights_bytes = _read_member(archive, wanted[WEIGHTS_NAME], path)
    except KerasFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, OverflowError) as exc:
        raise KerasFileError(f"not a readable .keras archive ({type(exc).__name__}: {exc})", path=path) from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasFileError(f"{CONFIG_NAME} does not hold a model config (no 'class_name')", path=path)
    if not isinstance(metadata, dict):
        raise KerasFileError(f"{METADATA_NAME} should hold a JSON object", path=path)
    weights_path = f"{path}!{WEIGHTS_NAME}"
    weights, names = read_weight_tree(weights_bytes, weights_path)
    return KerasArchive(path=path, config=config, metadata=metadata, weights=weights, names=names)


def read_weight_tree(source: str | bytes, path: str) -> tuple[dict[str, list[np.ndarray]], dict[str, str]]:
    """All weights of a Keras 3 weights file: ``{"layers/dense": [kernel, bias], ...}``.

    Only the model's own ``vars`` and the ``layers/...`` tree are read (an optimizer's state,
    if present, is skipped). Also returns the layer names recorded in each ``vars`` group.
    """
    weights: dict[str, list[np.ndarray]] = {}
    names: dict[str, str] = {}
    with _h5.reading(path, "weights file"), _h5.open_h5(source, path) as f:
        _collect(f, "", weights, names, path, depth=0, budget=_h5.ReadBudget())
    return weights, names


def _collect(
    group: h5py.Group,
    prefix: str,
    weights: dict[str, list[np.ndarray]],
    names: dict[str, str],
    path: str,
    depth: int,
    budget: _h5.ReadBudget,
) -> None:
    if depth > 32:
        raise KerasFileError(f"weights tree nested deeper than 32 levels at {prefix!r}", path=path)
    budget.visit(group, path)
    here = prefix.rstrip("/")
    if "vars" in group:
        vars_group = _h5.group(group, "vars", path)
        keys = sorted(vars_group.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
        expected = [str(i) for i in range(len(keys))]
        if keys != expected:
            raise KerasFileError(
                f"weights group {vars_group.name!r} should hold datasets '0'..'{len(keys) - 1}', found {keys}",
                path=path,
            )
        weights[here] = [_h5.read_array(vars_group, key, path, budget=budget) for key in keys]
        name = _h5.str_attr(vars_group, "name")
        if name is not None:
            names[here] = name
    # Keras 2.13 wrote "_layer_checkpoint_dependencies" where Keras 3 writes "layers".
    for container in ("layers", "_layer_checkpoint_dependencies"):
        if container in group:
            layers = _h5.group(group, container, path)
            for key in layers.keys():
                _collect(_h5.group(layers, key, path), f"{prefix}layers/{key}/", weights, names, path, depth + 1,
                         budget)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write_weight_tree(f: h5py.File, model: Any) -> None:
    """Write ``model``'s weights into an open, empty HDF5 file in the Keras 3 layout."""
    root = f.create_group("vars")
    root.attrs["name"] = str(model.name)
    for path, layer in layer_paths(model):
        vars_group = f.require_group(path).create_group("vars")
        vars_group.attrs["name"] = str(layer.name)
        if is_model(layer):
            continue  # a nested model's weights are written by its own layers
        for i, value in enumerate(keras_store_values(layer)):
            vars_group.create_dataset(str(i), data=_weight_array(value, layer, i))


def keras_store_values(layer: Any) -> list[np.ndarray]:
    """The arrays Keras 3 keeps for ``layer`` in a weights tree: its weights, unless the layer
    stores others (a LoRA Dense stores its merged kernel and bias, as Keras does)."""
    own = getattr(layer, "_keras_store_values", None)
    return own() if own is not None else layer.get_weights()


def weights_from_keras_store(layer: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The ``set_weights`` arguments for ``layer`` from the arrays of its weights-tree group."""
    convert = getattr(layer, "_weights_from_keras_store", None)
    return convert(arrays) if convert is not None else arrays


def _weight_array(value: Any, layer: Any, index: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise TypeError(
            f"layer {getattr(layer, 'name', '?')!r}: weight {index} has dtype {array.dtype}; "
            "only numeric arrays can be saved"
        )
    return np.require(array, requirements="C")  # (ascontiguousarray makes a scalar 1-d)


def weights_h5_bytes(model: Any) -> bytes:
    """The ``model.weights.h5`` member for ``model``, built in memory."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        write_weight_tree(f, model)
    return buffer.getvalue()


def metadata_for_save() -> dict[str, Any]:
    """metadata.json: Keras's fields, plus who really wrote the file."""
    import fastdense  # noqa: PLC0415 - the package imports saving

    return {
        "keras_version": KERAS_FORMAT_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "saved_by": f"fastdense {getattr(fastdense, '__version__', 'unknown')}",
    }


def write_keras_archive(target: str, config: dict[str, Any], weights_h5: bytes) -> None:
    """Write a ``.keras`` archive to ``target`` (an already-chosen temporary path).

    Members, order, compression and attributes are those Keras 3 writes.
    """
    metadata = json.dumps(metadata_for_save())
    config_json = json.dumps(config, allow_nan=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open(METADATA_NAME, "w") as member:
            member.write(metadata.encode("utf-8"))
        with archive.open(CONFIG_NAME, "w") as member:
            member.write(config_json.encode("utf-8"))
        archive.writestr(WEIGHTS_NAME, weights_h5)
