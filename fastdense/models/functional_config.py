"""The functional model's Keras config, both ways: writing it and rebuilding a model from it.

Reads Keras 3 configs (``inbound_nodes`` as ``{"args", "kwargs"}`` with ``__keras_tensor__``
references) and Keras 2 ones (``[[layer, node, tensor, kwargs], ...]``).

    >>> import fastdense
    >>> from fastdense.layers import Dense
    >>> x = fastdense.Input((3,), name="x")
    >>> model = fastdense.Model(x, Dense(2, name="d")(x), name="m")
    >>> config = functional_config(model)
    >>> config["input_layers"], config["output_layers"]
    (['x', 0, 0], ['d', 0, 0])
    >>> [layer.name for layer in functional_from_config(fastdense.Model, config, None).layers]
    ['x', 'd']
"""
from __future__ import annotations

from typing import Any

from fastdense.layers.base import Layer
from fastdense.layers.node import SymbolicTensor
from fastdense.saving.serialization import builtin_objects, deserialize_keras_object, serialize_keras_object

__all__ = ["functional_config", "functional_from_config", "deserialize_layer", "node_index_map"]


# Node indices in Keras 3 configs: a layer's nodes are numbered among the nodes the model keeps,
# from 0 in the ``keras_history`` of call arguments (``inbound_nodes``) but from 1 for a functional
# model in ``input_layers`` / ``output_layers`` (Keras 3's functional.py: ``serialize_node`` and
# ``get_tensor_config``, read back by ``deserialize_node`` and ``get_tensor``). A fastdense
# functional model holds its own node at index 0 of ``_inbound_nodes`` (as tf.keras 2 did, whose
# list-style ``inbound_nodes`` count it), so its calls sit at 1, 2, ...


def _own_nodes(layer: Any) -> int:
    """How many nodes ``layer`` holds before its calls: 1 for a functional model, else 0."""
    return 1 if getattr(layer, "_is_functional", False) else 0


def node_index_map(model: Any) -> dict[int, int]:
    """Node id -> index among the model's nodes of that layer (Keras re-numbering, as in
    ``input_layers`` / ``output_layers``: a functional model's first call is 1)."""
    mapping: dict[int, int] = {}
    for layer in model.layers:
        kept = _own_nodes(layer)
        for node in layer._inbound_nodes:
            if id(node) in model._network_nodes:
                mapping[id(node)] = kept
                kept += 1
    return mapping


def functional_config(model: Any) -> dict:
    """Keras 3 functional config: layers with ``inbound_nodes``, input and output layers."""
    node_map = node_index_map(model)

    def tensor_config(tensor: SymbolicTensor, in_call: bool = False) -> list:
        layer, node_index, tensor_index = tensor._keras_history
        index = node_map[id(layer._inbound_nodes[node_index])]
        return [layer.name, index - _own_nodes(layer) if in_call else index, tensor_index]

    def serialize_arg(value: Any) -> Any:
        if isinstance(value, SymbolicTensor):
            return {
                "class_name": "__keras_tensor__",
                "config": {"shape": list(value.shape), "dtype": value.dtype,
                           "keras_history": tensor_config(value, in_call=True)},
            }
        if isinstance(value, (list, tuple)):
            return [serialize_arg(v) for v in value]
        if isinstance(value, dict):
            return {k: serialize_arg(v) for k, v in value.items()}
        return serialize_keras_object(value)

    layer_configs = []
    for layer in model.layers:
        entry = serialize_keras_object(layer)
        nodes = []
        for node in layer._inbound_nodes:
            if id(node) in model._network_nodes and not node.is_input:
                nodes.append({"args": serialize_arg(list(node.call_args)),
                              "kwargs": serialize_arg(node.call_kwargs)})
        entry["name"] = layer.name
        entry["inbound_nodes"] = nodes
        layer_configs.append(entry)

    def structure(tensors: Any) -> Any:
        if isinstance(tensors, SymbolicTensor):
            return tensor_config(tensors)
        if isinstance(tensors, dict):
            return {k: structure(v) for k, v in tensors.items()}
        return [structure(t) for t in tensors]

    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": layer_configs,
        "input_layers": structure(model._inputs_struct),
        "output_layers": structure(model._outputs_struct),
    }


_MODEL_CLASS_NAMES = ("Sequential", "Functional", "Model")


def deserialize_layer(layer_config: dict, custom_objects: dict | None = None) -> Layer:
    """A layer (or nested model) from its Keras 3 / Keras 2 config entry."""
    if not isinstance(layer_config, dict) or "class_name" not in layer_config:
        raise ValueError(f"Could not interpret layer config {layer_config!r}: expected a dict with 'class_name'")
    if layer_config["class_name"] in _MODEL_CLASS_NAMES:
        from fastdense.models.config import (
            model_from_config,  # (it imports the model classes)
        )

        return model_from_config(layer_config, custom_objects=custom_objects)
    layer = deserialize_keras_object(
        layer_config,
        module_objects=builtin_objects("keras.layers"),
        custom_objects=custom_objects,
        printable_module_name="layer",
    )
    if not isinstance(layer, Layer):
        raise ValueError(
            f"Config of class {layer_config['class_name']!r} did not produce a layer, got {layer!r}"
        )
    return layer


def _unpack_singleton(values: list) -> Any:
    return values[0] if len(values) == 1 else values


def _node_tensor(created: dict[str, Layer], layer_name: str, node_index: int, tensor_index: int) -> SymbolicTensor:
    if layer_name not in created:
        raise ValueError(f"Model config refers to unknown layer {layer_name!r}")
    layer = created[layer_name]
    if node_index >= len(layer._inbound_nodes):
        raise IndexError(f"layer {layer_name!r} has no node {node_index} yet")
    return layer._inbound_nodes[node_index].output_tensors[tensor_index]


def _deserialize_node(node_data: Any, created: dict[str, Layer], custom_objects: dict | None) -> tuple[list, dict]:
    if not node_data:
        return [], {}
    if isinstance(node_data, list):  # Keras 2: [[layer_name, node_index, tensor_index, kwargs], ...]
        tensors = []
        kwargs: dict = {}
        for entry in node_data:
            if not isinstance(entry, (list, tuple)) or len(entry) not in (3, 4):
                raise ValueError(f"Could not interpret inbound node entry {entry!r}")
            tensors.append(_node_tensor(created, entry[0], int(entry[1]), int(entry[2])))
            if len(entry) == 4 and entry[3]:
                kwargs = dict(entry[3])
        return [_unpack_singleton(tensors)], kwargs

    def revive(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                name, node_index, tensor_index = value["config"]["keras_history"]
                # (Keras 3 numbers the calls from 0: past a functional model's own node)
                own = _own_nodes(created[name]) if name in created else 0
                return _node_tensor(created, name, int(node_index) + own, int(tensor_index))
            if "class_name" in value:
                return deserialize_keras_object(value, custom_objects=custom_objects)
            return {k: revive(v) for k, v in value.items()}
        if isinstance(value, list):
            return [revive(v) for v in value]
        return value

    return revive(node_data.get("args", [])), revive(node_data.get("kwargs", {}))


def functional_from_config(cls: type, config: dict, custom_objects: dict | None) -> Any:
    if not isinstance(config, dict) or "layers" not in config:
        raise ValueError(f"Not a functional model config (no 'layers' key): {str(config)[:200]}")
    created: dict[str, Layer] = {}
    pending: dict[str, list] = {}
    order: list[str] = []
    for layer_data in config["layers"]:
        layer = deserialize_layer(layer_data, custom_objects)
        name = layer_data.get("name", layer.name)
        if name in created:
            raise ValueError(f"Model config has two layers named {name!r}")
        created[name] = layer
        order.append(name)
        nodes = list(layer_data.get("inbound_nodes", []))
        if nodes:
            pending[name] = nodes

    while pending:
        progress = False
        for name in order:
            queue = pending.get(name)
            if not queue:
                continue
            layer = created[name]
            while queue:
                try:
                    args, kwargs = _deserialize_node(queue[0], created, custom_objects)
                except IndexError:
                    break
                layer(*args, **kwargs)
                queue.pop(0)
                progress = True
            if not queue:
                del pending[name]
        if not progress:
            raise ValueError(
                f"Cannot rebuild model {config.get('name')!r}: the calls of layers {sorted(pending)} "
                "refer to nodes that the config never creates"
            )

    def tensors(structure: Any) -> Any:
        if isinstance(structure, (list, tuple)) and len(structure) == 3 and isinstance(structure[0], str):
            return _node_tensor(created, structure[0], int(structure[1]), int(structure[2]))
        if isinstance(structure, dict):
            return {k: tensors(v) for k, v in structure.items()}
        return [tensors(s) for s in structure]

    inputs = tensors(config["input_layers"])
    outputs = tensors(config["output_layers"])
    return cls(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))
