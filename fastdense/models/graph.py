"""Graph mapping: the layers and nodes between a model's symbolic inputs and outputs.

Keras's algorithm: a depth-first walk from the outputs orders the nodes; each node's depth is
its distance from the outputs; layers come in decreasing depth. The walk also rejects cycles,
disconnected graphs (a tensor that comes from an input the model does not have) and duplicate
layer names.

    >>> import fastdense
    >>> from fastdense.layers import Dense
    >>> x = fastdense.Input((3,), name="x")
    >>> y = Dense(2, name="d")(x)
    >>> layers, nodes_by_depth, _ = map_graph([x], [y], "m")
    >>> [layer.name for layer in layers], sorted(nodes_by_depth)
    (['x', 'd'], [0, 1])
"""
from __future__ import annotations

from fastdense.layers.base import Layer
from fastdense.layers.node import Node, SymbolicTensor

__all__ = ["map_graph"]


def map_graph(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor], model_name: str
               ) -> tuple[list[Layer], dict[int, list[Node]], set[int]]:
    """Layers (topological order), nodes by depth and the ids of the model's nodes."""
    input_ids = {id(t) for t in inputs}
    finished: set[int] = set()
    in_progress: set[int] = set()
    nodes_in_decreasing_depth: list[Node] = []
    layer_indices: dict[int, int] = {}
    layers_by_id: dict[int, Layer] = {}

    def visit(tensor: SymbolicTensor) -> None:
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor.name!r} at layer '{layer.name}' is part of a cycle")
        if id(node) in finished:
            return
        if id(layer) not in layer_indices:
            layer_indices[id(layer)] = len(layer_indices)
            layers_by_id[id(layer)] = layer
        in_progress.add(id(node))
        if id(tensor) not in input_ids:
            for parent in node.input_tensors:
                if parent._keras_history is None:
                    raise ValueError(
                        f"Tensor {parent.name!r} (input of layer '{layer.name}') was not produced by a "
                        "layer: build graphs from fastdense.Input tensors"
                    )
                visit(parent)
        in_progress.discard(id(node))
        finished.add(id(node))
        nodes_in_decreasing_depth.append(node)

    for tensor in outputs:
        visit(tensor)

    node_depths: dict[int, int] = {}
    layer_depths: dict[int, int] = {}
    for node in reversed(nodes_in_decreasing_depth):
        depth = max(node_depths.setdefault(id(node), 0), layer_depths.get(id(node.layer), 0))
        layer_depths[id(node.layer)] = depth
        node_depths[id(node)] = depth
        for parent in node.parent_nodes:
            node_depths[id(parent)] = max(depth + 1, node_depths.get(id(parent), 0))

    # Inputs that no output depends on still belong to the model.
    network_nodes = {id(n) for n in nodes_in_decreasing_depth}
    all_nodes = {id(n): n for n in nodes_in_decreasing_depth}
    for tensor in inputs:
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(layer) not in layer_depths:
            layer_depths[id(layer)] = 0
            layer_indices[id(layer)] = -1
            layers_by_id[id(layer)] = layer
            node_depths[id(node)] = 0
        network_nodes.add(id(node))
        all_nodes[id(node)] = node

    nodes_by_depth: dict[int, list[Node]] = {}
    for node_id, depth in node_depths.items():
        nodes_by_depth.setdefault(depth, []).append(all_nodes[node_id])
    layers_by_depth: dict[int, list[Layer]] = {}
    for layer_id, depth in layer_depths.items():
        layers_by_depth.setdefault(depth, []).append(layers_by_id[layer_id])
    layers: list[Layer] = []
    for depth in sorted(layers_by_depth, reverse=True):
        layers.extend(sorted(layers_by_depth[depth], key=lambda l: layer_indices[id(l)]))

    # Every node must be computable from the inputs.
    computable = set(input_ids)
    accessed: list[str] = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.is_input:
                continue
            for tensor in node.input_tensors:
                if id(tensor) not in computable:
                    raise ValueError(
                        f"Graph disconnected: model '{model_name}' cannot obtain a value for tensor "
                        f"{tensor!r} needed by layer '{node.layer.name}': it comes from an Input that "
                        "is not among the model's inputs. The following previous layers were "
                        f"accessed without issue: {accessed}"
                    )
            computable.update(id(t) for t in node.output_tensors)
            if node.layer.name not in accessed:
                accessed.append(node.layer.name)

    names: dict[str, int] = {}
    for layer in layers:
        names[layer.name] = names.get(layer.name, 0) + 1
    duplicated = [name for name, count in names.items() if count > 1]
    if duplicated:
        raise ValueError(
            f"The name {duplicated[0]!r} is used {names[duplicated[0]]} times in model "
            f"'{model_name}'. All layer names should be unique."
        )
    return layers, nodes_by_depth, network_nodes
