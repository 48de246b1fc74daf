"""`model.summary()`: a Keras-style table of layers, output shapes and parameter counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from fastdense.models.functional_config import node_index_map

if TYPE_CHECKING:  # pragma: no cover
    from fastdense.models.functional import Model

__all__ = ["print_summary"]


def _format_shape(shape: Any) -> str:
    if isinstance(shape, list):
        return ", ".join(_format_shape(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def _layer_output_shape(model: "Model", layer: Any) -> str:
    """The layer's output shape within this model, or ``multiple`` when its calls differ."""
    shapes = []
    for node in layer._inbound_nodes:
        if id(node) in model._network_nodes:
            shape = node.output_shapes
            shapes.append(shape[0] if len(shape) == 1 else shape)
    if not shapes:
        return "?"
    if any(s != shapes[0] for s in shapes[1:]):
        return "multiple"
    return _format_shape(shapes[0])


def _connections(model: "Model", layer: Any) -> list[str]:
    node_map = node_index_map(model)
    out = []
    for node in layer._inbound_nodes:
        if id(node) not in model._network_nodes or node.is_input:
            continue
        for tensor in node.input_tensors:
            parent, node_index, tensor_index = tensor._keras_history
            index = node_map.get(id(parent._inbound_nodes[node_index]), node_index)
            out.append(f"{parent.name}[{index}][{tensor_index}]")
    return out


def _count(weights: list[np.ndarray]) -> int:
    return int(sum(w.size for w in weights))


def print_summary(
    model: "Model",
    line_length: int | None = None,
    positions: Sequence[float] | None = None,
    print_fn: Callable[[str], Any] | None = None,
) -> None:
    """Print ``model``'s layers as a table (Keras 2 layout) followed by the parameter totals.

    Sequential models get three columns (layer (type), output shape, params);
    functional models a fourth, "Connected to", listing ``layer[node][tensor]``.
    """
    if print_fn is None:
        print_fn = print
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' has not yet been built. Build the model first by calling "
            "`build(input_shape)`, by giving its first layer an input_shape=, or by calling it on a "
            "batch of data."
        )
    sequential = not model._is_functional   # a Sequential (the class says so; no upward import)
    if sequential:
        line_length = line_length or 65
        positions = positions or [0.45, 0.85, 1.0]
        headers = ["Layer (type)", "Output Shape", "Param #"]
    else:
        line_length = line_length or 98
        positions = positions or [0.33, 0.55, 0.67, 1.0]
        headers = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]

    def row(fields: Sequence[str]) -> str:
        line = ""
        for index, field in enumerate(fields):
            if index > 0:
                line = line[:-1] + " "
            line += str(field)
            line = line[: positions[index]]
            line += " " * (positions[index] - len(line))
        return line.rstrip()

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    print_fn(row(headers))
    print_fn("=" * line_length)
    layers = model.layers
    for index, layer in enumerate(layers):
        name = f"{layer.name} ({type(layer).__name__})"
        params = layer.count_params() if layer.built else 0
        fields = [name, _layer_output_shape(model, layer), str(params)]
        if sequential:
            print_fn(row(fields))
        else:
            connected = _connections(model, layer) or [""]
            print_fn(row(fields + [connected[0]]))
            for extra in connected[1:]:
                print_fn(row(["", "", "", extra]))
        print_fn("=" * line_length if index == len(layers) - 1 else "_" * line_length)
    if not layers:
        print_fn("=" * line_length)
    trainable = _count(model.trainable_weights)
    total = _count(model.weights)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn("_" * line_length)
