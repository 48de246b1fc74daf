"""`Sequential`: a plain stack of single-input, single-output layers.

>>> import numpy as np
>>> from fastdense.models import Sequential
>>> from fastdense.layers import Dense
>>> model = Sequential(name="mlp")
>>> model.add(Dense(16, activation="relu", input_shape=(8,), name="hidden"))
>>> model.add(Dense(4, activation="softmax"))
>>> model.layers[0].input
<SymbolicTensor name='hidden_input' shape=(None, 8) dtype=float32>
>>> model.output_shape
(None, 4)
>>> model.predict(np.ones((3, 8))).shape
(3, 4)

As in Keras 2, a first layer with ``input_shape=`` (or ``input_dim=``,
``batch_input_shape=``) gives the model an input named ``<layer name>_input``
and every added layer is connected at once, so ``layer.input``,
``layer.output_shape`` and friends work.  Without an input shape the model is
built on its first call, from the data.
"""

from __future__ import annotations

from typing import Any

from fastdense.layers.base import Layer, LayerNotConnectedError, standardize_shape
from fastdense.layers.input_layer import InputLayer
from fastdense.layers.node import Node, SymbolicTensor
from fastdense.models.functional import Model
from fastdense.models.functional_config import deserialize_layer
from fastdense.models.plan import PlanCache, run_shortcut
from fastdense.saving.serialization import register_builtin, serialize_dtype, serialize_keras_object

__all__ = ["Sequential"]


class Sequential(Model):
    """A linear stack of layers: ``Sequential([Dense(16, input_shape=(8,)), Dense(4)])``.

    Args:
        layers: Layers to add, in order (an ``Input`` tensor or ``InputLayer``
            may come first).
        name: Model name (default ``sequential``, ``sequential_1``, ...).
        trainable: Whether the layers' weights count as trainable.
        dtype: Default dtype recorded in the config (``"float32"``).
    """

    _is_functional = False

    def __init__(self, layers: Any = None, name: str | None = None, trainable: bool = True,
                 **kwargs: Any) -> None:
        Layer.__init__(self, name=name, trainable=trainable, **kwargs)
        self._plan_cache = PlanCache()
        self._stack: list[Layer] = []
        self._stack_nodes: list[Node | None] = []
        self._input_layer: InputLayer | None = None
        if layers is not None:
            if isinstance(layers, (Layer, SymbolicTensor)):
                layers = [layers]
            for layer in layers:
                self.add(layer)

    def _default_name(self) -> str:
        return "sequential"

    # --------------------------------------------------------------- building

    def add(self, layer: Any) -> None:
        """Append a layer (connecting it at once when the model has an input)."""
        if isinstance(layer, SymbolicTensor):
            origin = layer._keras_history[0] if layer._keras_history is not None else None
            if not isinstance(origin, InputLayer):
                raise ValueError(
                    f"Sequential model '{self.name}' accepts only an Input tensor (from fastdense.Input) "
                    f"as a tensor, got {layer!r}"
                )
            layer = origin
        if not isinstance(layer, Layer):
            raise TypeError(
                "The added layer must be an instance of class Layer. "
                f"Received: layer={layer!r} of type {type(layer).__name__}."
            )
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._stack:
                raise ValueError(
                    f"Sequential model '{self.name}' already has layers or an input: an Input/InputLayer "
                    "can only be added first"
                )
            self._input_layer = layer
            return
        names = {l.name for l in self._stack}
        if self._input_layer is not None:
            names.add(self._input_layer.name)
        if layer.name in names:
            raise ValueError(
                "All layers added to a Sequential model should have unique names. "
                f"Name '{layer.name}' is already the name of a layer in this model. "
                "Update the `name` argument to pass a unique name."
            )
        self._stack.append(layer)
        self._stack_nodes.append(None)
        if self._input_layer is None and len(self._stack) == 1:
            batch_shape = _declared_batch_shape(layer)
            if batch_shape is not None:
                self._input_layer = InputLayer(
                    batch_shape=batch_shape, dtype=_input_dtype(layer), name=f"{layer.name}_input"
                )
        if self._input_layer is not None:
            try:
                self._connect()
            except Exception:
                self._stack.pop()
                self._stack_nodes.pop()
                raise

    def _connect(self) -> None:
        """Call every not-yet-connected layer on the previous output; refresh the graph."""
        assert self._input_layer is not None
        current = self._input_layer.output
        for index, layer in enumerate(self._stack):
            node = self._stack_nodes[index]
            if node is None:
                output = layer(current)
                if not isinstance(output, SymbolicTensor):
                    raise ValueError(
                        "All layers in a Sequential model should have a single output tensor; "
                        f"layer '{layer.name}' returned {output!r}. For multi-output layers, use the "
                        "functional API (fastdense.Model)."
                    )
                node = layer._inbound_nodes[-1]
                self._stack_nodes[index] = node
            current = node.output_tensors[0]
        self._init_graph(self._input_layer.output, current)

    def build(self, input_shape: Any = None) -> None:
        """Give the model an input of batch shape ``input_shape`` (e.g. ``(None, 8)``) and connect it."""
        if self._input_layer is None:
            if input_shape is None:
                raise ValueError(
                    f"Sequential model '{self.name}' has no input shape: pass build(input_shape), "
                    "give the first layer input_shape=, or add an Input"
                )
            shape = standardize_shape(input_shape, "input_shape")
            first = self._stack[0] if self._stack else None
            self._input_layer = InputLayer(
                batch_shape=shape,
                dtype=_input_dtype(first) if first is not None else "float32",
                name=f"{first.name}_input" if first is not None else None,
            )
        self._connect()

    def _ensure_built_for(self, shape: tuple) -> None:
        if not self.built:
            self.build((None,) + tuple(shape[1:]))

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._stack:
            raise TypeError(f"There are no layers in Sequential model '{self.name}'.")
        layer = self._stack.pop()
        node = self._stack_nodes.pop()
        if node is not None:
            if layer._inbound_nodes and layer._inbound_nodes[-1] is node:
                layer._inbound_nodes.pop()
            for parent in node.inbound_layers:
                parent._outbound_nodes[:] = [n for n in parent._outbound_nodes if n is not node]
        if self._input_layer is not None:
            self._connect()
        return layer

    # ---------------------------------------------------------------- calling

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and self.built and self._single_output:
            y = run_shortcut(self._plan_cache, inputs, True)   # as Functional.__call__
            if y is not None:
                return y
        if not self.built:
            if isinstance(inputs, SymbolicTensor):
                self.build(inputs.shape)
            else:
                import numpy as np

                self._ensure_built_for(np.shape(inputs))
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto",
                steps: Any = None, callbacks: Any = None, *, out: Any = None) -> Any:
        if out is None and batch_size is None and self.built and self._single_output:
            y = run_shortcut(self._plan_cache, x, False)   # as Functional.predict
            if y is not None:
                return y
        if not self.built:
            import numpy as np

            self._ensure_built_for(np.shape(x))
        return Model.predict(self, x, batch_size, out=out)

    # ----------------------------------------------------------------- layers

    @property
    def layers(self) -> list[Layer]:
        """The stacked layers (the input layer is not included, as in Keras)."""
        return list(self._stack)

    def _all_layers(self) -> list[Layer]:
        return list(self._stack)

    @property
    def inputs(self) -> list[SymbolicTensor]:  # type: ignore[override]
        self._require_graph()
        return self._graph_inputs

    @inputs.setter
    def inputs(self, value: list[SymbolicTensor]) -> None:
        self._graph_inputs = value

    @property
    def outputs(self) -> list[SymbolicTensor]:  # type: ignore[override]
        self._require_graph()
        return self._graph_outputs

    @outputs.setter
    def outputs(self, value: list[SymbolicTensor]) -> None:
        self._graph_outputs = value

    def _require_graph(self) -> None:
        if not self.built:
            raise LayerNotConnectedError(
                f"Sequential model '{self.name}' has no input yet: give its first layer an input_shape=, "
                "add a fastdense.Input, call build(input_shape), or call it on data"
            )

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on model '{self.name}', but it isn't built. "
                f"You can build it manually via: `{self.name}.build(batch_input_shape)`."
            )
        return sum(layer.count_params() for layer in self._stack)

    # ----------------------------------------------------------------- config

    def get_config(self) -> dict:
        """Keras 3 Sequential config: the layers (input layer first) and the build shape."""
        layers = ([self._input_layer] if self._input_layer is not None else []) + self._stack
        config: dict[str, Any] = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": serialize_dtype(self.dtype),
            "layers": [serialize_keras_object(layer) for layer in layers],
        }
        if self.built:
            config["build_input_shape"] = list(self._input_layer.batch_shape)
        return config

    def get_build_config(self) -> dict | None:
        if not self.built:
            return None
        return {"input_shape": list(self._input_layer.batch_shape)}

    def build_from_config(self, config: dict | None) -> None:
        if not self.built and config and config.get("input_shape") is not None:
            self.build(config["input_shape"])

    @classmethod
    def from_config(cls, config: Any, custom_objects: dict | None = None) -> "Sequential":
        """Rebuild from a Keras 3 or Keras 2 Sequential config (Keras 2.0-2.2: a bare layer list)."""
        if isinstance(config, list):
            config = {"layers": config}
        if not isinstance(config, dict) or "layers" not in config:
            raise ValueError(f"Not a Sequential config (no 'layers' key): {str(config)[:200]}")
        model = cls(name=config.get("name"), trainable=config.get("trainable", True),
                    dtype=config.get("dtype"))
        for layer_config in config["layers"]:
            model.add(deserialize_layer(layer_config, custom_objects))
        build_shape = config.get("build_input_shape")
        if not model.built and build_shape and model._stack:
            model.build(build_shape)
        return model


def _declared_batch_shape(layer: Layer) -> tuple | None:
    if isinstance(layer, Model) and layer.built and len(layer.inputs) == 1:
        return layer.inputs[0].shape
    return getattr(layer, "_batch_input_shape", None)


def _input_dtype(layer: Layer | None) -> str:
    if isinstance(layer, Model) and layer.built and len(layer.inputs) == 1:
        return layer.inputs[0].dtype
    return layer.dtype if layer is not None else "float32"


register_builtin("keras.models", "Sequential")(Sequential)
# What Keras 3 writes for a Sequential model's "module".
register_builtin("keras", "Sequential")(Sequential)
