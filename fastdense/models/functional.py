"""The functional `Model`: a graph of layers between symbolic inputs and outputs.

>>> import numpy as np
>>> import fastdense
>>> from fastdense.layers import Dense, Concatenate
>>> left, right = fastdense.Input((4,), name="left"), fastdense.Input((4,), name="right")
>>> shared = Dense(3, activation="relu", name="shared")
>>> merged = Concatenate(name="concat")([shared(left), shared(right)])
>>> model = fastdense.Model([left, right], Dense(2, name="head")(merged), name="two_towers")
>>> [layer.name for layer in model.layers]
['left', 'right', 'shared', 'concat', 'head']
>>> model.predict([np.ones((5, 4)), np.zeros((5, 4))]).shape
(5, 2)

Execution walks the nodes in topological order (deepest first), once per call,
through one method, :meth:`Model._run_layers`.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np

from fastdense.layers.base import WEIGHTS_LOCK, Layer, LayerNotConnectedError
from fastdense.layers.input_layer import InputLayer
from fastdense.layers.node import Node, SymbolicTensor, flatten, map_structure
from fastdense.models.plan import check_out, run_compiled
from fastdense.saving.serialization import (
    builtin_objects,
    deserialize_keras_object,
    register_builtin,
    serialize_keras_object,
)

__all__ = ["Model", "Functional"]


# --------------------------------------------------------------------------
# Structures: a tensor, a list/tuple of tensors, or a dict of tensors
# --------------------------------------------------------------------------


def _flatten_struct(structure: Any) -> list:
    """Leaves in Keras order: lists in order, dicts by sorted key."""
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in _flatten_struct(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in _flatten_struct(item)]
    return [structure]


def _pack_struct(structure: Any, leaves: list) -> Any:
    """Inverse of :func:`_flatten_struct`."""
    iterator = iter(leaves)

    def pack(node: Any) -> Any:
        if isinstance(node, dict):
            packed = {key: pack(node[key]) for key in sorted(node)}
            return {key: packed[key] for key in node}
        if isinstance(node, (list, tuple)):
            return type(node)(pack(item) for item in node) if isinstance(node, tuple) else [pack(i) for i in node]
        return next(iterator)

    return pack(structure)


# --------------------------------------------------------------------------
# Graph mapping (Keras's algorithm: depth-first from the outputs)
# --------------------------------------------------------------------------


def _map_graph(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor], model_name: str
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


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


class Model(Layer):
    """A functional model: ``Model(inputs, outputs, name=None)``.

    ``inputs`` / ``outputs`` are symbolic tensors, lists of them or dicts of
    them (the structure is kept: ``predict`` returns a list for a list of
    outputs and a dict for a dict).  Layers may be shared (several nodes) and
    the model may itself be used as a layer.  ``Functional`` is an alias.

    Keras 2 style attributes work: ``model.input``, ``model.output``,
    ``model.input_shape``, ``model.output_shape``, ``model.layers``,
    ``model.get_layer(name)``.
    """

    _is_functional = True

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 trainable: bool = True, **kwargs: Any) -> None:
        # Keras 1/2 spelling: Model(input=..., output=...).
        if inputs is None and "input" in kwargs:
            inputs = kwargs.pop("input")
        if outputs is None and "output" in kwargs:
            outputs = kwargs.pop("output")
        if inputs is None or outputs is None:
            raise TypeError(
                "Model needs `inputs` and `outputs` (symbolic tensors from fastdense.Input and layer "
                "calls): Model(inputs, outputs). Subclassed models are not supported; use Sequential "
                "for a stack of layers."
            )
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._init_graph(inputs, outputs)
        # Keras numbers a functional model's calls as a layer from 1 in configs
        # (node 0 links its own inputs to its outputs): keep the same numbering.
        _ModelNode(self, inputs, outputs)

    def _default_name(self) -> str:
        return "functional"

    # ------------------------------------------------------------------ graph

    def _init_graph(self, inputs: Any, outputs: Any) -> None:
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(outputs, tuple):
            outputs = list(outputs)
        flat_inputs = _flatten_struct(inputs)
        flat_outputs = _flatten_struct(outputs)
        for kind, tensors in (("inputs", flat_inputs), ("outputs", flat_outputs)):
            for tensor in tensors:
                if not isinstance(tensor, SymbolicTensor) or tensor._keras_history is None:
                    raise TypeError(
                        f"Model '{self.name}' {kind} must be SymbolicTensors from fastdense.Input or "
                        f"from calling layers on them, got {tensor!r}"
                    )
        if not flat_inputs or not flat_outputs:
            raise ValueError(f"Model '{self.name}' needs at least one input and one output")
        for tensor in flat_inputs:
            layer = tensor._keras_history[0]
            if not isinstance(layer, InputLayer):
                raise ValueError(
                    f"Model '{self.name}' inputs must come from fastdense.Input (an InputLayer); "
                    f"tensor {tensor.name!r} was produced by layer '{layer.name}' "
                    f"({type(layer).__name__})"
                )
        if len({id(t) for t in flat_inputs}) != len(flat_inputs):
            raise ValueError(
                f"Model '{self.name}' received the same input tensor more than once: "
                f"{[t.name for t in flat_inputs]}"
            )
        layers, nodes_by_depth, network_nodes = _map_graph(flat_inputs, flat_outputs, self.name)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.inputs: list[SymbolicTensor] = flat_inputs
        self.outputs: list[SymbolicTensor] = flat_outputs
        self._graph_layers = layers
        # Per-input (dtype, rank, fixed (axis, size) pairs), for the one-array fast check.
        self._input_checks = tuple(
            (np.dtype(t.dtype), len(t.shape), tuple((i, d) for i, d in enumerate(t.shape) if d is not None))
            for t in flat_inputs
        )
        self._single_output = isinstance(outputs, SymbolicTensor)
        self._nodes_by_depth = nodes_by_depth
        self._network_nodes = network_nodes
        self._compile_steps(flat_inputs, flat_outputs)
        self.built = True
        # A new graph (also a Sequential's add or pop): the compiled plans of this model, and of
        # any model that holds it, describe the old one, so none may be used again.
        with WEIGHTS_LOCK:
            Layer._weights_epoch += 1

    def _compile_steps(self, inputs: list[SymbolicTensor], outputs: list[SymbolicTensor]) -> None:
        """Turn the nodes into a flat list of steps over numbered array slots."""
        slots: dict[int, int] = {}

        def slot(tensor: SymbolicTensor) -> int:
            return slots.setdefault(id(tensor), len(slots))

        input_slots = [slot(t) for t in inputs]
        steps = []
        for depth in sorted(self._nodes_by_depth, reverse=True):
            for node in self._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                first, extra = node.call_args[0], node.call_args[1:]
                if isinstance(first, SymbolicTensor):
                    kind, ref = 0, slot(first)
                elif isinstance(first, list) and all(isinstance(t, SymbolicTensor) for t in first):
                    kind, ref = 1, [slot(t) for t in first]
                else:
                    kind, ref = 2, map_structure(
                        lambda t: _Slot(slot(t)) if isinstance(t, SymbolicTensor) else t, first
                    )
                has_symbolic_extra = any(
                    isinstance(t, SymbolicTensor) for t in flatten([list(extra), list(node.call_kwargs.values())])
                )
                if has_symbolic_extra:
                    extra = map_structure(lambda t: _Slot(slot(t)) if isinstance(t, SymbolicTensor) else t, extra)
                    kwargs = map_structure(
                        lambda t: _Slot(slot(t)) if isinstance(t, SymbolicTensor) else t, node.call_kwargs
                    )
                else:
                    kwargs = node.call_kwargs
                out_slots = [slot(t) for t in node.output_tensors]
                steps.append([node.layer, kind, ref, tuple(extra), dict(kwargs), out_slots,
                              has_symbolic_extra, ()])
        output_slots = [slot(t) for t in outputs]
        # Free each intermediate array after its last use.
        last_use: dict[int, int] = {}
        for index, step in enumerate(steps):
            used = [step[2]] if step[1] == 0 else (step[2] if step[1] == 1 else _slots_in(step[2]))
            if step[6]:
                used = list(used) + _slots_in([step[3], step[4]])
            for s in used:
                last_use[s] = index
        keep = set(output_slots)
        for s, index in last_use.items():
            if s not in keep:
                steps[index][7] = steps[index][7] + (s,)
        self._steps = [tuple(step) for step in steps]
        # A plain chain (one input, each layer feeding the next, one output) runs as `x = layer(x)`.
        chain: list[Layer] | None = []
        current = input_slots[0] if len(input_slots) == 1 else None
        for layer, kind, ref, extra, kwargs, out_slots, _, _ in self._steps:
            if kind != 0 or ref != current or extra or kwargs or len(out_slots) != 1:
                chain = None
                break
            chain.append(layer)
            current = out_slots[0]
        if chain is not None and (len(output_slots) != 1 or output_slots[0] != current):
            chain = None
        self._chain = chain
        self._n_slots = len(slots)
        self._input_slots = input_slots
        self._output_slots = output_slots

    def _run(self, arrays: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None,
             record_losses: bool = True) -> list[np.ndarray]:
        """Outputs for converted inputs: the compiled plan when the model has one (one native
        call for the whole model), else layer by layer with the same results. ``predict``
        passes ``record_losses=False``: it does not record activity-regularization losses."""
        outputs = run_compiled(self, arrays, out, record_losses)
        if outputs is not None:
            return outputs
        outputs = self._run_layers(arrays)
        if out is None:
            return outputs
        check_out(out, [o.shape for o in outputs], outputs[0].dtype, arrays)
        for target, value in zip(out, outputs):
            target[...] = value
        return list(out)

    def _run_layers(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the graph on converted input arrays (one per model input); outputs as a flat list."""
        chain = self._chain
        if chain is not None:
            x = arrays[0]
            for layer in chain:
                x = layer(x)
            return [x]
        values: list[Any] = [None] * self._n_slots
        for s, array in zip(self._input_slots, arrays):
            values[s] = array
        for layer, kind, ref, extra, kwargs, out_slots, symbolic_extra, release in self._steps:
            if kind == 0:
                x = values[ref]
            elif kind == 1:
                x = [values[i] for i in ref]
            else:
                x = _fill(ref, values)
            if symbolic_extra:
                out = layer(x, *_fill(extra, values), **_fill(kwargs, values))
            else:
                out = layer(x, *extra, **kwargs)
            if len(out_slots) == 1:
                values[out_slots[0]] = out
            else:
                for s, o in zip(out_slots, _flatten_struct(out)):
                    values[s] = o
            for s in release:
                values[s] = None
        return [values[s] for s in self._output_slots]

    # ---------------------------------------------------------------- calling

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(t, SymbolicTensor) for t in _flatten_struct(inputs)):
            return self._symbolic_call(inputs, args, kwargs)
        kwargs.pop("training", None)
        kwargs.pop("mask", None)
        if args or kwargs:
            raise TypeError(f"Model '{self.name}' takes only its inputs when called, got extra {args or kwargs}")
        arrays = self._standardize_inputs(inputs)
        return self._pack_outputs(self._run(arrays))

    def call(self, inputs: Any) -> Any:
        return self._pack_outputs(self._run(self._standardize_inputs(inputs)))

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto",
                steps: Any = None, callbacks: Any = None, *, out: Any = None) -> Any:
        """Outputs for NumPy inputs: an array, or a list/dict for several outputs.

        ``x`` is an array for a one-input model, a list (in ``model.inputs``
        order) or a dict keyed by input name otherwise.  ``batch_size=None``
        runs the whole input at once; an integer splits it into chunks of that
        many samples (same results).  Unlike a direct call, ``predict`` does not
        record activity-regularization losses (``losses``).  ``out``: a preallocated C-contiguous array
        (a list of them for several outputs) written in place and returned;
        repeated calls with ``out=`` allocate nothing.  ``verbose``, ``steps``
        and ``callbacks`` are accepted for Keras compatibility and ignored.
        """
        last = self.__dict__.get("_fd_last_plan")
        if last is not None and type(x) is np.ndarray and out is None and batch_size is None:
            # the call before compiled a plan for inputs like x: run it with no other Python step
            # (the weights epoch is checked as run_compiled checks it)
            epoch, dtype, ndim, tail, plan = last
            if (x.dtype is dtype and x.ndim == ndim and x.shape[1:] == tail and x.flags.c_contiguous
                    and epoch == Layer._weights_epoch and self._single_output):
                return plan.run_one(x)
        arrays = self._standardize_inputs(x)
        outs = None if out is None else (list(out) if isinstance(out, (list, tuple)) else [out])
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size <= 0):
            raise ValueError(f"predict expects batch_size to be a positive integer or None, got {batch_size!r}")
        total = arrays[0].shape[0] if arrays[0].ndim else 0
        if batch_size is None or total <= batch_size:
            return self._pack_outputs(self._run(arrays, outs, record_losses=False))
        chunks = []
        for start in range(0, total, batch_size):
            part = [a[start:start + batch_size] for a in arrays]
            chunks.append(self._run(part, None if outs is None else [o[start:start + batch_size] for o in outs],
                                    record_losses=False))
        if outs is not None:
            return self._pack_outputs(outs)
        outputs = [np.concatenate([chunk[i] for chunk in chunks], axis=0) for i in range(len(self.outputs))]
        return self._pack_outputs(outputs)

    def _pack_outputs(self, outputs: list[np.ndarray]) -> Any:
        """Flat outputs in the structure the model was built with."""
        return outputs[0] if self._single_output else _pack_struct(self._outputs_struct, outputs)

    def predict_on_batch(self, x: Any) -> Any:
        """``predict(x)`` on one batch."""
        return self.predict(x)

    @property
    def input_names(self) -> list[str]:
        return [t._keras_history[0].name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t._keras_history[0].name for t in self.outputs]

    def _standardize_inputs(self, x: Any) -> list[np.ndarray]:
        """Inputs as one array per model input, with the input's dtype; checked shapes."""
        checks = self._input_checks
        if type(x) is np.ndarray and len(checks) == 1:
            dtype, rank, fixed = checks[0]
            if x.dtype is dtype and x.ndim == rank:
                shape = x.shape
                for axis, size in fixed:
                    if shape[axis] != size:
                        break
                else:
                    return [x]
        inputs = self.inputs
        expected = ", ".join(self.input_names)
        if isinstance(x, dict):
            if isinstance(self._inputs_struct, dict):
                keys = sorted(self._inputs_struct)
            else:
                keys = self.input_names
            missing = [k for k in keys if k not in x]
            if missing:
                raise ValueError(
                    f"Model '{self.name}' is missing input {missing[0]!r}: expected keys {keys}, "
                    f"got {sorted(x)}"
                )
            raw = [x[k] for k in keys]
        elif len(inputs) == 1:
            if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
                x = x[0]
            raw = [x]
        else:
            if not isinstance(x, (list, tuple)):
                raise ValueError(
                    f"Model '{self.name}' expects {len(inputs)} inputs ({expected}) as a list or a dict, "
                    f"got a single {type(x).__name__}"
                )
            if len(x) != len(inputs):
                raise ValueError(
                    f"Model '{self.name}' expects {len(inputs)} inputs ({expected}), got {len(x)}"
                )
            raw = list(x)
        arrays = []
        for tensor, value in zip(inputs, raw):
            dtype = np.dtype(tensor.dtype)
            if type(value) is np.ndarray and value.dtype is dtype:
                array = value
            else:
                array = np.asarray(value)
                if array.dtype.kind not in "biuf":
                    raise TypeError(
                        f"Input '{tensor.name}' of model '{self.name}' expects a numeric array, "
                        f"got {type(value).__name__} with dtype {array.dtype}"
                    )
                array = array.astype(dtype, copy=False)
            shape = tensor.shape
            if array.ndim != len(shape) or any(
                d is not None and d != a for d, a in zip(shape, array.shape)
            ):
                raise ValueError(
                    f"Input '{tensor.name}' of model '{self.name}' expects arrays of shape {shape}, "
                    f"got shape {array.shape}"
                )
            arrays.append(array)
        batches = {a.shape[0] for a in arrays}
        if len(batches) > 1:
            raise ValueError(
                f"Model '{self.name}' inputs must have the same number of samples, got shapes "
                f"{[a.shape for a in arrays]}"
            )
        return arrays

    def _symbolic_call(self, inputs: Any, args: tuple, kwargs: dict) -> Any:
        # `training` / `mask` are recorded (Keras writes them into configs) and ignored.
        extra = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
        flat = _flatten_struct(inputs)
        if args or extra:
            raise TypeError(f"Model '{self.name}' takes only its inputs when called, got extra {args or extra}")
        if len(flat) != len(self.inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self.inputs)} inputs, got {len(flat)}")
        for index, (given, own) in enumerate(zip(flat, self.inputs)):
            if not isinstance(given, SymbolicTensor):
                raise TypeError(f"Model '{self.name}' was called on a mix of SymbolicTensors and arrays")
            if len(given.shape) != len(own.shape) or any(
                a is not None and b is not None and a != b for a, b in zip(given.shape[1:], own.shape[1:])
            ):
                raise ValueError(
                    f"Input {index} of model '{self.name}' expects shape {own.shape}, got shape {given.shape}"
                )
        batch = flat[0].shape[0]
        node_index = len(self._inbound_nodes)
        new = [SymbolicTensor((batch,) + t.shape[1:], t.dtype,
                              self._tensor_name(node_index, i, len(self.outputs)))
               for i, t in enumerate(self.outputs)]
        outputs = _pack_struct(self._outputs_struct, new)
        Node(self, call_args=(inputs,), call_kwargs=kwargs, outputs=outputs)
        return outputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    # ---------------------------------------------------------------- layers

    @property
    def layers(self) -> list[Layer]:
        """The model's layers in topological order (input layers first)."""
        return list(self._graph_layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by position in ``model.layers``."""
        layers = self.layers
        if index is not None:
            if name is not None:
                raise ValueError("Provide only a layer name or a layer index, not both")
            if not -len(layers) <= index < len(layers):
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model '{self.name}' only has "
                    f"{len(layers)} layers."
                )
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in layers]}.")

    # ----------------------------------------------------- Keras 2 properties

    def _require_graph(self) -> None:
        if not self.built:
            raise LayerNotConnectedError(
                f"Model '{self.name}' has no inputs yet: give its first layer an input_shape=, "
                "add an Input, or call it on data"
            )

    @property
    def input(self) -> Any:
        self._require_graph()
        return self._inputs_struct

    @property
    def output(self) -> Any:
        self._require_graph()
        return self._outputs_struct

    @property
    def input_shape(self) -> Any:
        self._require_graph()
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self) -> Any:
        self._require_graph()
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    # ---------------------------------------------------------------- weights

    @Layer.trainable.setter
    def trainable(self, value: bool) -> None:  # Layer's getter; the setter reaches every inner layer
        Layer.trainable.fset(self, value)
        for layer in self._all_layers():
            layer.trainable = value

    def _all_layers(self) -> list[Layer]:
        return self.layers if self.built else []

    @property
    def weights(self) -> list[np.ndarray]:
        """All weight arrays, layer by layer in ``model.layers`` order (kernel then bias)."""
        return [w for layer in self._all_layers() for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        if not self._trainable:
            return []
        return [w for layer in self._all_layers() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        if not self._trainable:
            return self.weights
        return [w for layer in self._all_layers() for w in layer.non_trainable_weights]

    @property
    def _weights_version(self) -> int:  # type: ignore[override]
        return sum(layer._weights_version for layer in self._all_layers())

    @property
    def losses(self) -> list[float]:
        return [loss for layer in self._all_layers() for loss in layer.losses]

    def quantize(self, mode: str | None = None, config: Any = None, filters: Any = None,
                 type_check: bool = True) -> None:
        """Quantize every Dense layer (nested models' too) as Keras 3's ``Model.quantize``.

        ``mode`` ``"int8"`` or ``"int4"``; ``config`` a Keras quantization config dict (see
        ``Dense.quantize``); ``filters`` a regex (or list of them) on layer names, or a
        callable ``layer -> bool``, choosing the layers. Other layers are left as they are;
        compiled plans are rebuilt on the next call. See docs/quantization.md.
        """
        import re
        import warnings

        from fastdense.layers.core import Dense

        if mode not in ("int8", "int4"):
            raise ValueError(f"Invalid quantization mode: expected 'int8' or 'int4', got {mode!r}")
        if filters is not None and not isinstance(filters, (str, list, tuple)) and not callable(filters):
            raise ValueError("The `filters` argument must be a regex string, a list of regex strings, or a "
                             f"callable. Received: {type(filters)}")

        def chosen(layer: Layer) -> bool:
            if filters is None:
                return True
            if callable(filters):
                return bool(filters(layer))
            patterns = [filters] if isinstance(filters, str) else list(filters)
            return any(re.search(pattern, layer.name) for pattern in patterns)

        def leaves(model: Model) -> list[Layer]:
            found: list[Layer] = []
            for layer in model._all_layers():
                found.extend(leaves(layer) if isinstance(layer, Model) else [layer])
            return found

        for layer in leaves(self):
            if isinstance(layer, Dense) and chosen(layer):
                try:
                    layer.quantize(mode, type_check=type_check, config=config)
                except NotImplementedError as error:
                    warnings.warn(str(error), stacklevel=2)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights, layer by layer (see :attr:`weights`)."""
        return [w for layer in self._all_layers() for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set all weights from a flat list in :attr:`weights` order.

        Everything is validated before anything changes; each layer's weights
        are then swapped atomically.
        """
        weights = list(weights)
        layers = [layer for layer in self._all_layers() if layer._weight_specs or isinstance(layer, Model)]
        expected = sum(len(layer.weights) for layer in layers)
        if len(weights) != expected:
            raise ValueError(
                f"Model '{self.name}' expects {expected} weight arrays "
                f"({', '.join(f'{l.name}: {len(l.weights)}' for l in layers if l.weights) or 'none'}), "
                f"got {len(weights)}"
            )
        plan = []
        start = 0
        for layer in layers:
            count = len(layer.weights)
            plan.append((layer, weights[start:start + count]))
            start += count
        validated = [(layer, layer._validate_weights(ws)) for layer, ws in plan if not isinstance(layer, Model)]
        for layer, ws in plan:
            if isinstance(layer, Model):
                layer._validate_all(ws)
        with WEIGHTS_LOCK:  # all layers at once for concurrent predicts
            for layer, ws in plan:
                if isinstance(layer, Model):
                    layer.set_weights(ws)
            for layer, values in validated:
                layer._swap_values(values)

    def _validate_all(self, weights: Sequence[Any]) -> None:
        weights = list(weights)
        start = 0
        for layer in self._all_layers():
            count = len(layer.weights)
            if isinstance(layer, Model):
                layer._validate_all(weights[start:start + count])
            else:
                layer._validate_weights(weights[start:start + count])
            start += count

    def count_params(self) -> int:
        """Number of scalars in all weights."""
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on model '{self.name}', but it isn't built. "
                f"You can build it manually via: `{self.name}.build(batch_input_shape)`."
            )
        return sum(layer.count_params() for layer in self._all_layers())

    def summary(self, line_length: int | None = None, positions: Sequence[float] | None = None,
                print_fn: Callable[[str], Any] | None = None, expand_nested: bool = False,
                show_trainable: bool = False) -> None:
        """Print a table of the layers: name (type), output shape, parameter count; totals.

        ``print_fn`` receives each line (default ``print``).
        """
        from fastdense.models.summary import print_summary

        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    # ----------------------------------------------------------------- config

    def _node_index_map(self) -> dict[int, int]:
        """Node id -> index among the model's nodes of that layer (Keras re-numbering)."""
        mapping: dict[int, int] = {}
        for layer in self.layers:
            kept = 1 if getattr(layer, "_is_functional", False) else 0
            for node in layer._inbound_nodes:
                if id(node) in self._network_nodes:
                    mapping[id(node)] = kept
                    kept += 1
        return mapping

    def get_config(self) -> dict:
        """Keras 3 functional config: layers with ``inbound_nodes``, input and output layers."""
        node_map = self._node_index_map()

        def tensor_config(tensor: SymbolicTensor) -> list:
            layer, node_index, tensor_index = tensor._keras_history
            return [layer.name, node_map[id(layer._inbound_nodes[node_index])], tensor_index]

        def serialize_arg(value: Any) -> Any:
            if isinstance(value, SymbolicTensor):
                return {
                    "class_name": "__keras_tensor__",
                    "config": {"shape": list(value.shape), "dtype": value.dtype,
                               "keras_history": tensor_config(value)},
                }
            if isinstance(value, (list, tuple)):
                return [serialize_arg(v) for v in value]
            if isinstance(value, dict):
                return {k: serialize_arg(v) for k, v in value.items()}
            return serialize_keras_object(value)

        layer_configs = []
        for layer in self.layers:
            entry = serialize_keras_object(layer)
            nodes = []
            for node in layer._inbound_nodes:
                if id(node) in self._network_nodes and not node.is_input:
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
            "name": self.name,
            "trainable": self.trainable,
            "layers": layer_configs,
            "input_layers": structure(self._inputs_struct),
            "output_layers": structure(self._outputs_struct),
        }

    def get_build_config(self) -> dict | None:
        return {"input_shape": None}

    def build_from_config(self, config: dict | None) -> None:
        pass

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> "Model":
        """Rebuild a functional model from a Keras 3 or Keras 2 functional config."""
        return _functional_from_config(cls, config, custom_objects)

    def save(self, filepath: Any, overwrite: bool = True, **kwargs: Any) -> None:
        """Save to a Keras file (``.keras`` or legacy ``.h5``): see ``fastdense.saving.save_model``."""
        from fastdense.saving import save_model

        save_model(self, filepath, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath: Any, overwrite: bool = True) -> None:
        """Save the weights to a Keras 3 ``.weights.h5`` file: see ``fastdense.saving.save_weights``."""
        from fastdense.saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath: Any, skip_mismatch: bool = False) -> None:
        """Load weights from ``.weights.h5``, ``.keras`` or ``.h5``: see ``fastdense.saving.load_weights``."""
        from fastdense.saving import load_weights

        load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def to_json(self, **kwargs: Any) -> str:
        """The model's Keras 3 config as a JSON string (``model_from_json`` reads it)."""
        return json.dumps(serialize_keras_object(self), **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class _ModelNode(Node):
    """A functional model's own node (its inputs -> its outputs); not a call.

    It sits at index 0 of the model's ``inbound_nodes`` without touching the
    tensors' history or other layers' ``outbound_nodes``.
    """

    def __init__(self, model: "Model", inputs: Any, outputs: Any) -> None:  # noqa: D107
        self.layer = model
        self.call_args = (inputs,)
        self.call_kwargs = {}
        self.input_tensors = list(model.inputs)
        self.outputs = outputs
        self.output_tensors = list(model.outputs)
        self.is_input = False
        self.node_index = len(model._inbound_nodes)
        model._inbound_nodes.append(self)


Functional = Model

register_builtin("keras.models", "Functional", "Model")(Model)
# What Keras 3 writes for a functional model's "module".
register_builtin("keras.src.models.functional", "Functional")(Model)


# --------------------------------------------------------------------------
# Helpers for the step list
# --------------------------------------------------------------------------


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _fill(structure: Any, values: list) -> Any:
    if isinstance(structure, _Slot):
        return values[structure.index]
    if isinstance(structure, list):
        return [_fill(s, values) for s in structure]
    if isinstance(structure, tuple):
        return tuple(_fill(s, values) for s in structure)
    if isinstance(structure, dict):
        return {k: _fill(v, values) for k, v in structure.items()}
    return structure


def _slots_in(structure: Any) -> list[int]:
    if isinstance(structure, _Slot):
        return [structure.index]
    if isinstance(structure, (list, tuple)):
        return [s for item in structure for s in _slots_in(item)]
    if isinstance(structure, dict):
        return [s for item in structure.values() for s in _slots_in(item)]
    return []


# --------------------------------------------------------------------------
# Deserialization
# --------------------------------------------------------------------------

_MODEL_CLASS_NAMES = ("Sequential", "Functional", "Model")


def deserialize_layer(layer_config: dict, custom_objects: dict | None = None) -> Layer:
    """A layer (or nested model) from its Keras 3 / Keras 2 config entry."""
    if not isinstance(layer_config, dict) or "class_name" not in layer_config:
        raise ValueError(f"Could not interpret layer config {layer_config!r}: expected a dict with 'class_name'")
    if layer_config["class_name"] in _MODEL_CLASS_NAMES:
        from fastdense.models.config import model_from_config

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
                return _node_tensor(created, name, int(node_index), int(tensor_index))
            if "class_name" in value:
                return deserialize_keras_object(value, custom_objects=custom_objects)
            return {k: revive(v) for k, v in value.items()}
        if isinstance(value, list):
            return [revive(v) for v in value]
        return value

    return revive(node_data.get("args", [])), revive(node_data.get("kwargs", {}))


def _functional_from_config(cls: type, config: dict, custom_objects: dict | None) -> Model:
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
