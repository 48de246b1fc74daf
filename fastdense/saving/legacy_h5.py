"""The legacy HDF5 model format (``.h5``), as Keras 3 and tf.keras 2.x write it.

Layout::

    /                      attrs: model_config (JSON), keras_version, backend
    /model_weights         attrs: layer_names [every layer of model.layers, in order],
                                  keras_version, backend
    /model_weights/<layer> attrs: weight_names ["dense/kernel", "dense/bias"] (tf.keras 2:
                                  "dense/kernel:0", Keras 3 Sequential: "model/dense/kernel")
    /model_weights/<layer>/<weight name>   the arrays, at the paths weight_names give
    /model_weights/top_level_model_weights  (Keras 3; the model's own weights, none here)

A weights-only legacy file (tf.keras ``save_weights("w.h5")``) has the same ``layer_names``
tree at its root and no ``model_config``.

Loading follows Keras: the layers *that have weights* are matched by position, the n-th such
layer of the model with the n-th such layer of the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from . import _h5
from .errors import KerasFileError
from .keras_format import KERAS_FORMAT_VERSION, keras_class_name, saved_layers

# What fastdense writes in the "backend" attributes (Keras itself ignores the value on load).
BACKEND_NAME = "fastdense"
# Keras's limit on the size of one HDF5 attribute; longer name lists are split in chunks.
HDF5_OBJECT_HEADER_LIMIT = 64512


@dataclass
class LegacyH5:
    """What fastdense reads from a legacy ``.h5`` file.

    ``layers`` lists ``(layer name, [arrays])`` for every layer in ``layer_names`` order.
    """

    path: str
    config: dict[str, Any] | None
    keras_version: str | None
    backend: str | None
    layers: list[tuple[str, list[np.ndarray]]] = field(default_factory=list)

    @property
    def weighted_layers(self) -> list[tuple[str, list[np.ndarray]]]:
        return [(name, arrays) for name, arrays in self.layers if arrays]


def read_legacy_h5(path: str | os.PathLike[str]) -> LegacyH5:
    """Read the config (if any) and every layer's weights from a legacy ``.h5`` file.

    >>> import os, tempfile
    >>> from fastdense import Sequential, layers
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "mlp.h5")
    >>> Sequential([layers.Input((6,)), layers.Dense(10, name="dense_2"), layers.Dense(4, name="dense_3")]).save(path)
    >>> f = read_legacy_h5(path)
    >>> f.backend, [(name, [w.shape for w in ws]) for name, ws in f.layers]
    ('fastdense', [('dense_2', [(6, 10), (10,)]), ('dense_3', [(10, 4), (4,)])])
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    with _h5.reading(path, "HDF5 model file"), _h5.open_h5(path, path) as f:
        return _read(f, path)


def _read(f: h5py.File, path: str) -> LegacyH5:
    config = None
    raw = _h5.str_attr(f, "model_config")
    if raw is not None:
        try:
            config = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise KerasFileError(f"the model_config attribute is not valid JSON ({exc})", path=path) from exc
        if not isinstance(config, dict) or "class_name" not in config:
            raise KerasFileError("the model_config attribute does not hold a model config", path=path)
    if "model_weights" in f:
        weights_group = _h5.group(f, "model_weights", path)
    elif "layer_names" in f.attrs or "layer_names0" in f.attrs:
        weights_group = f  # a weights-only legacy file
    elif config is not None:
        raise KerasFileError("the file has a model config but no model_weights group", path=path)
    else:
        raise KerasFileError(
            "not a Keras model file: no model_config, model_weights or layer_names in this HDF5 file",
            path=path,
        )
    keras_version = _h5.str_attr(weights_group, "keras_version") or _h5.str_attr(f, "keras_version")
    backend = _h5.str_attr(weights_group, "backend") or _h5.str_attr(f, "backend")
    layers = []
    budget = _h5.ReadBudget()
    for name in _h5.str_list_attr(weights_group, "layer_names"):
        layer_group = _h5.group(weights_group, name, path, layer=name)
        weight_names = _h5.str_list_attr(layer_group, "weight_names")
        arrays = [_h5.read_array(layer_group, weight_name, path, layer=name, budget=budget)
                  for weight_name in weight_names]
        layers.append((name, arrays))
    return LegacyH5(path=path, config=config, keras_version=keras_version, backend=backend, layers=layers)


def is_weights_only(path: str) -> bool:
    """True for a Keras 3 ``.weights.h5`` file (``vars`` / ``layers`` groups, no layer_names)."""
    with _h5.reading(path), _h5.open_h5(path, path) as f:
        return "model_config" not in f.attrs and "model_weights" not in f and ("layers" in f or "vars" in f)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def legacy_layer_entries(config: dict[str, Any]) -> dict[str, Any]:
    """A model config in the legacy H5 dialect: layer entries without module/registered_name/
    build_config (nested objects inside a layer's config keep their Keras 3 form)."""
    out = dict(config)
    if isinstance(out.get("layers"), list):
        entries = []
        for entry in out["layers"]:
            entry = {k: v for k, v in entry.items() if k not in ("module", "registered_name", "build_config")}
            if entry.get("class_name") in ("Sequential", "Functional", "Model") and isinstance(entry.get("config"), dict):
                entry["config"] = legacy_layer_entries(entry["config"])
            entries.append(entry)
        out["layers"] = entries
    return out


def legacy_order(layer: Any, count: int) -> list[int]:
    """Positions of ``layer``'s weights in legacy .h5 order: the trainable weights first, then
    the others, each in weight order (Keras's ``trainable_weights + non_trainable_weights``).

    A LoRA Dense (kernel frozen) is stored as bias, lora_kernel_a, lora_kernel_b, kernel; a nested
    model as the trainable weights of all its layers, then all their other weights.
    """
    flags = _trainable_flags(layer)
    if flags is None or len(flags) != count:
        return list(range(count))
    return [i for i, t in enumerate(flags) if t] + [i for i, t in enumerate(flags) if not t]


def _trainable_flags(layer: Any) -> list[bool] | None:
    """Whether each of ``layer``'s weights (in weight order) is trainable; a model's are its
    layers' in turn. None when a layer does not say."""
    layers = getattr(layer, "_all_layers", None)
    if callable(layers):
        flags: list[bool] = []
        for inner in layers():
            inner_flags = _trainable_flags(inner)
            if inner_flags is None:
                return None
            flags += inner_flags
    else:
        specs = getattr(layer, "_weight_specs", None)
        if specs is None:
            return None
        flags = [bool(spec.trainable) for spec in specs]
    return flags if getattr(layer, "trainable", True) else [False] * len(flags)


def from_legacy_order(layer: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` read in legacy .h5 order, put back in ``layer``'s weight order."""
    order = legacy_order(layer, len(arrays))
    out: list[Any] = [None] * len(arrays)
    for position, index in enumerate(order):
        out[index] = arrays[position]
    return out


def _weight_names(layer: Any, count: int, prefix: str) -> list[str]:
    """``prefix/kernel``, ``prefix/bias`` ...: the short weight names, unique within the layer."""
    given = getattr(layer, "weight_names", None)
    if given is None:
        given = [getattr(weight, "name", "") for weight in getattr(layer, "weights", [])]
    short = []
    for i, name in enumerate(list(given)[:count]):
        name = str(name or "").rsplit("/", 1)[-1].split(":", 1)[0]
        short.append(name or f"variable_{i}")
    while len(short) < count:
        short.append(f"variable_{len(short)}")
    seen: dict[str, int] = {}
    unique = []
    for name in short:
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        unique.append(name)
    return [f"{prefix}{name}" for name in unique]


def _set_string_list(group: h5py.Group, name: str, values: list[bytes]) -> None:
    """Keras's ``save_attributes_to_hdf5_group``: split long lists over name0, name1, ..."""
    data = np.asarray(values)
    chunks = 1
    while any(part.nbytes > HDF5_OBJECT_HEADER_LIMIT for part in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = values
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = part.tolist()


def write_legacy_h5(target: str, model: Any, model_config: dict[str, Any]) -> None:
    """Write ``model`` to ``target`` (an already-chosen temporary path) as Keras 3 writes .h5.

    ``model_config`` is ``{"class_name": ..., "config": model.get_config()}``.
    """
    layers = saved_layers(model)
    sequential = keras_class_name(model) == "Sequential"
    with h5py.File(target, "w") as f:
        f.attrs["keras_version"] = KERAS_FORMAT_VERSION
        f.attrs["backend"] = BACKEND_NAME
        config = {"class_name": model_config["class_name"], "config": legacy_layer_entries(model_config["config"])}
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")
        weights_group = f.create_group("model_weights")
        _set_string_list(weights_group, "layer_names", [str(layer.name).encode("utf-8") for layer in layers])
        weights_group.attrs["backend"] = BACKEND_NAME.encode("utf-8")
        weights_group.attrs["keras_version"] = KERAS_FORMAT_VERSION.encode("utf-8")
        for layer in sorted(layers, key=lambda item: str(item.name)):
            layer_group = weights_group.create_group(str(layer.name))
            values = [np.asarray(v) for v in layer.get_weights()]
            prefix = f"{model.name}/{layer.name}/" if sequential else f"{layer.name}/"
            names = _weight_names(layer, len(values), prefix)
            order = legacy_order(layer, len(values))
            values, names = [values[i] for i in order], [names[i] for i in order]
            _set_string_list(layer_group, "weight_names", [n.encode("utf-8") for n in names])
            for name, value in zip(names, values):
                if value.dtype.kind not in "fiub":
                    raise TypeError(
                        f"layer {layer.name!r}: weight {name!r} has dtype {value.dtype}; only numeric arrays can be saved"
                    )
                layer_group.create_dataset(name, data=np.require(value, requirements="C"))
        top = weights_group.create_group("top_level_model_weights")
        top.attrs["weight_names"] = []
