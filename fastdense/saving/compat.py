"""Model configs from files: Keras 2 -> Keras 3 dialect, and the safety checks run before
anything is built.

:func:`upgrade_model_config` rewrites what tf.keras 2.x wrote into the form Keras 3 writes:

- a Sequential whose first layer carries ``batch_input_shape`` (and no InputLayer) gets an
  explicit ``InputLayer(batch_shape=...)``; ``batch_input_shape`` is a *batch* shape, its first
  entry is the batch size (Keras 3.15 misreads it as a per-sample shape);
- an InputLayer's ``batch_input_shape`` becomes ``batch_shape``;
- functional ``inbound_nodes`` lists ``[["dense", 0, 0, {}], ...]`` become Keras 3 node dicts;
- the functional class name ``Model`` becomes ``Functional``.

:func:`check_model_config` refuses what fastdense never does (Lambda layers, serialized Python
code, classes from modules it would have to import) and lists every unsupported layer in one
error, before any layer is built.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import KerasFileError, UnsafeFileError, UnsupportedLayerError

MODEL_CLASSES = ("Sequential", "Functional", "Model")
_KERAS_MODULE_PREFIXES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras", "fastdense")


def _layer_entries(config: Mapping[str, Any]) -> list[Any]:
    inner = config.get("config")
    if isinstance(inner, Mapping):
        layers = inner.get("layers", [])
    else:
        layers = inner if isinstance(inner, list) else []
    return layers if isinstance(layers, list) else []


def _entry_name(entry: Mapping[str, Any]) -> str:
    inner = entry.get("config")
    name = entry.get("name") or (inner.get("name") if isinstance(inner, Mapping) else None)
    return str(name) if name is not None else "?"


# --------------------------------------------------------------------------------------
# Keras 2 -> Keras 3
# --------------------------------------------------------------------------------------


def upgrade_model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Keras 3 style copy of a Keras 2 or Keras 3 model config (Keras 3 input is unchanged).

    >>> cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": [
    ...     {"class_name": "Dense", "config": {"name": "d", "units": 2, "batch_input_shape": [None, 6]}}]}}
    >>> [(e["class_name"], e["config"].get("batch_shape")) for e in upgrade_model_config(cfg)["config"]["layers"]]
    [('InputLayer', [None, 6]), ('Dense', None)]
    """
    config = copy.deepcopy(dict(config))
    _upgrade_model(config)
    return config


def _upgrade_model(config: dict[str, Any]) -> None:
    if config.get("class_name") == "Model":
        config["class_name"] = "Functional"
    inner = config.get("config")
    if isinstance(inner, list):  # very old Sequential: the config is the layer list
        inner = {"name": None, "layers": inner}
        config["config"] = inner
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        return
    for entry in inner["layers"]:
        if not isinstance(entry, dict):
            continue
        layer_config = entry.get("config")
        if entry.get("class_name") == "InputLayer" and isinstance(layer_config, dict):
            if "batch_input_shape" in layer_config and "batch_shape" not in layer_config:
                layer_config["batch_shape"] = layer_config.pop("batch_input_shape")
        if entry.get("class_name") in MODEL_CLASSES:
            _upgrade_model(entry)
        if isinstance(entry.get("inbound_nodes"), list):
            entry["inbound_nodes"] = [_upgrade_node(node) for node in entry["inbound_nodes"]]
    if config.get("class_name") == "Sequential":
        _add_input_layer(inner)


def _add_input_layer(inner: dict[str, Any]) -> None:
    layers = inner["layers"]
    if not layers or not isinstance(layers[0], dict) or layers[0].get("class_name") == "InputLayer":
        return
    first = layers[0].get("config")
    if not isinstance(first, dict) or first.get("batch_input_shape") is None:
        return
    batch_shape = list(first.pop("batch_input_shape"))
    dtype = first.get("dtype")
    if isinstance(dtype, Mapping):  # a Keras 2 mixed-precision Policy or a Keras 3 DTypePolicy
        dtype = (dtype.get("config") or {}).get("name")
    if dtype not in ("float16", "float32", "float64"):
        dtype = "float32"  # mixed policies keep float32 inputs
    name = first.get("name")
    input_config = {
        "batch_shape": batch_shape,
        "dtype": dtype,
        "sparse": False,
        "ragged": False,
        "name": f"{name}_input" if name else "input_layer",
    }
    layers.insert(0, {"class_name": "InputLayer", "config": input_config})


def _upgrade_node(node: Any) -> Any:
    """Keras 2 node ``[[layer, node_index, tensor_index, kwargs], ...]`` -> Keras 3 node dict."""
    if not isinstance(node, list):
        return node
    tensors = []
    kwargs: Any = {}
    for item in node:
        if not isinstance(item, list) or len(item) not in (3, 4):
            raise KerasFileError(f"cannot read functional node {node!r}: expected [layer, node, tensor, kwargs]")
        tensors.append(
            {
                "class_name": "__keras_tensor__",
                "config": {"shape": None, "dtype": None, "keras_history": [item[0], item[1], item[2]]},
            }
        )
        if len(item) == 4 and item[3]:
            kwargs = item[3]
    args = [tensors[0]] if len(tensors) == 1 else [tensors]
    return {"args": args, "kwargs": kwargs}


# --------------------------------------------------------------------------------------
# Safety and support checks
# --------------------------------------------------------------------------------------


def _is_keras_module(module: str) -> bool:
    return module == "builtins" or any(module == p or module.startswith(p + ".") for p in _KERAS_MODULE_PREFIXES)


def _walk_objects(value: Any, depth: int = 0) -> Iterator[Mapping[str, Any]]:
    """Every nested dict that looks like a serialized object (has a "class_name")."""
    if depth > 64:
        raise KerasFileError("config nested deeper than 64 levels")
    if isinstance(value, Mapping):
        if "class_name" in value:
            yield value
        for item in value.values():
            yield from _walk_objects(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_objects(item, depth + 1)


def iter_layer_entries(config: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every layer entry of a model config, nested models' layers included."""
    for entry in _layer_entries(config):
        if isinstance(entry, Mapping):
            yield entry
            if entry.get("class_name") in MODEL_CLASSES:
                yield from iter_layer_entries(entry)


def check_model_config(
    config: Mapping[str, Any],
    *,
    path: str | None = None,
    custom_objects: Mapping[str, Any] | None = None,
) -> None:
    """Refuse unsafe configs, then raise one error listing all unsupported layers.

    Unsafe: a ``Lambda`` layer or a serialized lambda (``"__lambda__"``) anywhere, or an object
    from a module that is not Keras's and that is neither registered nor in ``custom_objects``
    (fastdense would have to import that module; it never does).
    """
    from . import serialization  # noqa: PLC0415 - serialization imports fastdense modules lazily

    custom_objects = dict(custom_objects or {})

    def known(name: str | None) -> bool:
        return bool(name) and serialization.get_registered_object(name, custom_objects) is not None

    if not isinstance(config, Mapping) or not isinstance(config.get("class_name"), str):
        raise KerasFileError("the model config has no 'class_name'", path=path)
    top = config["class_name"]
    if top not in MODEL_CLASSES and not known(config.get("registered_name")) and not known(top):
        raise KerasFileError(
            f"the file describes a {top!r}, not a Sequential or functional model", path=path
        )

    layer_classes = dict(serialization.builtin_objects("keras.layers"))
    unsupported: list[tuple[str, str]] = []
    for entry in iter_layer_entries(config):
        class_name = entry.get("class_name")
        name = _entry_name(entry)
        if not isinstance(class_name, str):
            raise KerasFileError(f"layer entry {name!r} has no class_name", path=path, layer=name)
        if class_name == "Lambda":
            raise UnsafeFileError(
                "Lambda layers hold Python code, which fastdense never loads or runs. "
                "Replace the Lambda with a layer class of your own, register it with "
                "@fastdense.saving.register_serializable(), and save the model again",
                path=path,
                layer=name,
            )
        for obj in _walk_objects(entry.get("config")):
            _check_object(obj, name, path, known)
        module = entry.get("module")
        registered = entry.get("registered_name")
        if class_name in MODEL_CLASSES or class_name in layer_classes or known(registered) or known(class_name):
            continue
        if isinstance(module, str) and not _is_keras_module(module):
            raise UnsafeFileError(
                f"the layer class {class_name!r} comes from module {module!r}, which is neither Keras "
                "nor registered; fastdense never imports modules named in a file. If it is your own "
                "layer, register it with @fastdense.saving.register_serializable() or pass "
                f"custom_objects={{{class_name!r}: {class_name}}}",
                path=path,
                layer=name,
            )
        unsupported.append((class_name, name))
    if unsupported:
        raise UnsupportedLayerError(unsupported, path=path)


def _check_object(obj: Mapping[str, Any], layer: str, path: str | None, known: Any) -> None:
    class_name = obj.get("class_name")
    if class_name == "__lambda__":
        raise UnsafeFileError(
            "its config holds a serialized Python function (bytecode); fastdense never runs code "
            "from a file. Define the function in your code, register it with "
            "@fastdense.saving.register_serializable() and save again",
            path=path,
            layer=layer,
        )
    if class_name == "Lambda":
        raise UnsafeFileError("it contains a Lambda layer (Python code), which fastdense never runs", path=path, layer=layer)
    module = obj.get("module")
    if isinstance(module, str) and not _is_keras_module(module):
        names = [obj.get("registered_name"), class_name]
        if class_name == "function":  # Keras 3 functions: {"class_name": "function", "config": name}
            names.append(obj.get("config"))
        if not any(known(n) for n in names if isinstance(n, str)):
            raise UnsafeFileError(
                f"its config names {class_name!r} from module {module!r}, which is neither Keras nor "
                "registered; fastdense never imports modules named in a file",
                path=path,
                layer=layer,
            )
