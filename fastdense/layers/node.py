"""Symbolic tensors and the nodes that link layers into a graph.

Calling a layer on :class:`SymbolicTensor` objects (for example the result of
``fastdense.Input``) does not compute anything: it records a :class:`Node`
linking the input tensors to new output tensors.  A layer called several
times (a *shared* layer) owns one node per call, in call order.  Models walk
these nodes to find the layers between their inputs and outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from fastdense.layers.base import Layer

__all__ = ["SymbolicTensor", "Node", "KerasHistory", "flatten", "map_structure"]


class KerasHistory(tuple):
    """``(layer, node_index, tensor_index)``: where a symbolic tensor was made."""

    __slots__ = ()

    def __new__(cls, layer: "Layer", node_index: int, tensor_index: int) -> "KerasHistory":
        return tuple.__new__(cls, (layer, node_index, tensor_index))

    def __getnewargs__(self) -> tuple:  # copy.deepcopy and pickle
        return tuple(self)

    @property
    def layer(self) -> "Layer":
        return self[0]

    @property
    def node_index(self) -> int:
        return self[1]

    @property
    def tensor_index(self) -> int:
        return self[2]


class SymbolicTensor:
    """A placeholder for an array in a layer graph: a shape, a dtype, a name.

    The batch dimension (first entry of ``shape``) is usually ``None``.

    >>> import fastdense
    >>> x = fastdense.Input(shape=(8,), name="features")
    >>> x
    <SymbolicTensor name='features' shape=(None, 8) dtype=float32>
    """

    __slots__ = ("shape", "dtype", "name", "_keras_history", "__weakref__")

    def __init__(self, shape: tuple, dtype: str = "float32", name: str | None = None) -> None:
        self.shape = tuple(shape)
        self.dtype = str(dtype)
        self.name = name
        self._keras_history: KerasHistory | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def node(self) -> "Node | None":
        """The node that produced this tensor (``None`` for a free tensor)."""
        if self._keras_history is None:
            return None
        layer, node_index, _ = self._keras_history
        return layer._inbound_nodes[node_index]

    def __repr__(self) -> str:
        return f"<SymbolicTensor name={self.name!r} shape={self.shape} dtype={self.dtype}>"

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"SymbolicTensor {self.name!r} has no value: it is a placeholder in a "
            "layer graph. Build a model from it (fastdense.models.Model(inputs, outputs)) "
            "and call model.predict(x) to compute values."
        )

    def __bool__(self) -> bool:
        raise TypeError(f"SymbolicTensor {self.name!r} has no truth value (it holds no data)")


def flatten(structure: Any) -> list:
    """Leaves of a nested list/tuple/dict structure, in order (dicts by insertion order)."""
    if isinstance(structure, (list, tuple)):
        out: list = []
        for item in structure:
            out.extend(flatten(item))
        return out
    if isinstance(structure, dict):
        out = []
        for item in structure.values():
            out.extend(flatten(item))
        return out
    return [structure]


def map_structure(fn: Any, structure: Any) -> Any:
    """Apply ``fn`` to every leaf, keeping lists, tuples and dicts."""
    if isinstance(structure, list):
        return [map_structure(fn, item) for item in structure]
    if isinstance(structure, tuple):
        return tuple(map_structure(fn, item) for item in structure)
    if isinstance(structure, dict):
        return {key: map_structure(fn, item) for key, item in structure.items()}
    return fn(structure)


def _iter_tensors(structure: Any) -> Iterator[SymbolicTensor]:
    for leaf in flatten(structure):
        if isinstance(leaf, SymbolicTensor):
            yield leaf


class Node:
    """One call of a layer on symbolic tensors.

    Attributes (Keras 2 names): ``outbound_layer`` (the called layer, also
    ``layer``), ``inbound_layers``, ``node_indices``, ``tensor_indices``,
    ``input_tensors``, ``output_tensors``, ``input_shapes``, ``output_shapes``;
    ``call_args`` / ``call_kwargs`` keep the call's structure for configs.
    Creating a node registers it in ``layer.inbound_nodes`` and in the
    ``outbound_nodes`` of every layer that produced one of its inputs, and
    stamps the outputs with their ``_keras_history``.
    """

    def __init__(
        self,
        layer: "Layer",
        call_args: tuple = (),
        call_kwargs: dict | None = None,
        outputs: Any = None,
    ) -> None:
        self.layer = layer
        self.call_args = tuple(call_args)
        self.call_kwargs = dict(call_kwargs or {})
        self.input_tensors: list[SymbolicTensor] = list(
            _iter_tensors([list(self.call_args), list(self.call_kwargs.values())])
        )
        self.outputs = outputs
        self.output_tensors: list[SymbolicTensor] = flatten(outputs) if outputs is not None else []
        self.is_input = not self.input_tensors

        self.node_index = len(layer._inbound_nodes)
        layer._inbound_nodes.append(self)
        for tensor_index, tensor in enumerate(self.output_tensors):
            tensor._keras_history = KerasHistory(layer, self.node_index, tensor_index)
        for parent_layer in {id(t._keras_history[0]): t._keras_history[0] for t in self.input_tensors
                             if t._keras_history is not None}.values():
            parent_layer._outbound_nodes.append(self)

    @property
    def outbound_layer(self) -> "Layer":
        return self.layer

    @property
    def inbound_layers(self) -> list:
        return [t._keras_history[0] for t in self.input_tensors]

    @property
    def node_indices(self) -> list[int]:
        return [t._keras_history[1] for t in self.input_tensors]

    @property
    def tensor_indices(self) -> list[int]:
        return [t._keras_history[2] for t in self.input_tensors]

    @property
    def input_shapes(self) -> list[tuple]:
        return [t.shape for t in self.input_tensors]

    @property
    def output_shapes(self) -> list[tuple]:
        return [t.shape for t in self.output_tensors]

    @property
    def parent_nodes(self) -> list["Node"]:
        """Nodes that produced this node's inputs (no duplicates, in input order)."""
        parents: list[Node] = []
        for tensor in self.input_tensors:
            node = tensor.node
            if node is not None and all(node is not p for p in parents):
                parents.append(node)
        return parents

    def __repr__(self) -> str:
        inbound = ", ".join(t.name or "?" for t in self.input_tensors)
        return f"<Node {self.layer.name}[{self.node_index}] inputs=[{inbound}]>"
