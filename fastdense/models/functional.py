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

The model's jobs live in their own files: graph mapping (``graph.py``), the steps over
numbered array slots and running them layer by layer (``node_steps.py``), input checking and
execution (``execution.py``, through the compiled plan of ``plan.py`` when the model has one)
and the Keras config both ways (``functional_config.py``).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np

from fastdense.layers.base import WEIGHTS_LOCK, Layer, LayerNotConnectedError
from fastdense.layers.input_layer import InputLayer
from fastdense.layers.node import Node, SymbolicTensor
from fastdense.models.execution import ModelInputs, predict_batches, run_model
from fastdense.models.functional_config import deserialize_layer, functional_config, functional_from_config
from fastdense.models.graph import map_graph
from fastdense.models.node_steps import compile_steps, run_steps
from fastdense.models.plan import PlanCache, run_shortcut
from fastdense.models.structure import flatten_struct, pack_struct
from fastdense.models.summary import print_summary
from fastdense.saving.serialization import register_builtin, serialize_keras_object

# deserialize_layer: importable from here as before (it lives in functional_config)
__all__ = ["Model", "Functional", "deserialize_layer"]


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
        self._plan_cache = PlanCache()
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
        flat_inputs = flatten_struct(inputs)
        flat_outputs = flatten_struct(outputs)
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
        layers, nodes_by_depth, network_nodes = map_graph(flat_inputs, flat_outputs, self.name)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.inputs: list[SymbolicTensor] = flat_inputs
        self.outputs: list[SymbolicTensor] = flat_outputs
        self._graph_layers = layers
        self._model_inputs = ModelInputs(flat_inputs, inputs, self.name)
        # one output given bare or as a one-element list / tuple: calls and predict return the
        # array itself, as Keras does (its Functional.call unpacks a singleton)
        self._single_output = isinstance(outputs, SymbolicTensor) or (
            isinstance(outputs, (list, tuple)) and len(outputs) == 1 and isinstance(outputs[0], SymbolicTensor))
        self._nodes_by_depth = nodes_by_depth
        self._network_nodes = network_nodes
        self._program = compile_steps(nodes_by_depth, flat_inputs, flat_outputs)
        self.built = True
        # A new graph (also a Sequential's add or pop): the compiled plans of this model, and of
        # any model that holds it, describe the old one, so none may be used again.
        with WEIGHTS_LOCK:
            self._changed()

    def _run(self, arrays: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None,
             record_losses: bool = True) -> list[np.ndarray]:
        """Outputs for standardized inputs (see :func:`fastdense.models.execution.run_model`)."""
        return run_model(self, arrays, out, record_losses)

    def _run_layers(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the graph on converted input arrays (one per model input); outputs as a flat list."""
        return run_steps(self._program, arrays)

    # ---------------------------------------------------------------- calling

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and self._single_output:
            # the run before was a plan for inputs like these, and no layer changed since
            y = run_shortcut(self._plan_cache, inputs, True)
            if y is not None:
                return y
        if any(isinstance(t, SymbolicTensor) for t in flatten_struct(inputs)):
            return self._symbolic_call(inputs, args, kwargs)
        kwargs.pop("training", None)
        kwargs.pop("mask", None)
        if args or kwargs:
            raise TypeError(f"Model '{self.name}' takes only its inputs when called, got extra {args or kwargs}")
        arrays = self._model_inputs.standardize(inputs)
        return self._pack_outputs(self._run(arrays))

    def call(self, inputs: Any) -> Any:
        return self._pack_outputs(self._run(self._model_inputs.standardize(inputs)))

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
        if out is None and batch_size is None and self._single_output:
            # the run before was a plan for inputs like x, and no layer changed since
            y = run_shortcut(self._plan_cache, x, False)
            if y is not None:
                return y
        arrays = self._model_inputs.standardize(x)
        outs = None if out is None else (list(out) if isinstance(out, (list, tuple)) else [out])
        return self._pack_outputs(predict_batches(self, arrays, batch_size, outs))

    def _pack_outputs(self, outputs: list[np.ndarray]) -> Any:
        """Flat outputs in the structure the model was built with."""
        if self._single_output:
            return outputs[0]
        packed = pack_struct(self._outputs_struct, outputs)
        return packed[0] if isinstance(packed, (list, tuple)) and len(packed) == 1 else packed

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
        return self._model_inputs.standardize(x)

    def _symbolic_call(self, inputs: Any, args: tuple, kwargs: dict) -> Any:
        # `training` / `mask` are recorded (Keras writes them into configs) and ignored.
        extra = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
        flat = flatten_struct(inputs)
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
        outputs = pack_struct(self._outputs_struct, new)
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
        """The graph's version plus every layer's: changes whenever a plan would."""
        return self._version + sum(layer._weights_version for layer in self._all_layers())

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_plan_cache", None)     # compiled plans: a copy compiles its own
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._plan_cache = PlanCache()

    @property
    def losses(self) -> list[float]:
        return [loss for layer in self._all_layers() for loss in layer.losses]

    def quantize(self, mode: str | None = None, config: Any = None, filters: Any = None,
                 type_check: bool = True) -> None:
        """Quantize every layer that has a ``quantize`` method (nested models' too) as Keras 3's
        ``Model.quantize`` does.

        ``mode`` ``"int8"`` or ``"int4"``; ``config`` a Keras quantization config dict (see
        ``Dense.quantize``); ``filters`` a regex (or list of them) on layer names, or a
        callable ``layer -> bool``, choosing the layers. Other layers are left as they are;
        compiled plans are rebuilt on the next call. See docs/quantization.md.
        """
        import re
        import warnings

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

        # every layer that quantizes itself, as Keras calls quantize on each leaf layer (subclasses
        # are skipped with a warning when type_check: their quantize refuses them)
        targets = [layer for layer in leaves(self) if callable(getattr(layer, "quantize", None)) and chosen(layer)]
        for layer in targets:
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
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    # ----------------------------------------------------------------- config

    def get_config(self) -> dict:
        """Keras 3 functional config: layers with ``inbound_nodes``, input and output layers."""
        return functional_config(self)

    def get_build_config(self) -> dict | None:
        return {"input_shape": None}

    def build_from_config(self, config: dict | None) -> None:
        pass

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> "Model":
        """Rebuild a functional model from a Keras 3 or Keras 2 functional config."""
        return functional_from_config(cls, config, custom_objects)

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
