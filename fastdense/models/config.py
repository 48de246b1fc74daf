"""Models from Keras configs: `model_from_config` and `model_from_json`.

Reads both dialects: Keras 3 (``{"module", "class_name", "config",
"registered_name"}``; functional ``inbound_nodes`` with ``__keras_tensor__``
arguments) and Keras 2 (``{"class_name", "config"}``; functional
``inbound_nodes`` as ``[[layer, node, tensor, kwargs], ...]``).

>>> from fastdense.models import Sequential, model_from_config
>>> from fastdense.layers import Dense
>>> model = Sequential([Dense(4, input_shape=(3,), name="d")], name="m")
>>> copy = model_from_config({"class_name": "Sequential", "config": model.get_config()})
>>> [layer.name for layer in copy.layers], copy.input_shape
(['d'], (None, 3))
"""

from __future__ import annotations

import json

from fastdense.models.functional import Model
from fastdense.models.sequential import Sequential
from fastdense.saving.serialization import CustomObjectScope, get_registered_object

__all__ = ["model_from_config", "model_from_json"]

_MODEL_CLASSES = {"Sequential": Sequential, "Functional": Model, "Model": Model}


def model_from_config(config: dict, custom_objects: dict | None = None) -> Model:
    """Build a model (Sequential or functional) from its serialized config.

    ``config`` is the whole entry (``{"class_name": "Sequential", "config": {...}}``,
    as in a ``.keras`` file's ``config.json`` or an ``.h5`` file's
    ``model_config``).  Layers are created and connected; weights are left as
    initialized (set them with ``model.set_weights`` or the loaders in
    ``fastdense.saving``).  ``custom_objects`` maps names to user classes.
    """
    if isinstance(config, str):
        raise TypeError("model_from_config expects a dict; use model_from_json for a JSON string")
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            "model_from_config expects a dict with 'class_name' and 'config' "
            f"(e.g. {{'class_name': 'Sequential', 'config': {{...}}}}), got {str(config)[:200]}"
        )
    class_name = config["class_name"]
    inner = config.get("config", {})
    cls = _MODEL_CLASSES.get(class_name)
    if cls is None:
        registered = config.get("registered_name")
        cls = get_registered_object(registered or class_name, custom_objects)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, Model)):
            raise ValueError(
                f"Unknown model class {class_name!r}: fastdense builds 'Sequential' and functional "
                "('Functional' / 'Model') models, or registered Model subclasses"
            )
    with CustomObjectScope(custom_objects):
        model = cls.from_config(inner, custom_objects=custom_objects)
    build_config = config.get("build_config")
    if not model.built and isinstance(build_config, dict):
        model.build_from_config(build_config)
    return model


def model_from_json(json_string: str, custom_objects: dict | None = None) -> Model:
    """``model_from_config(json.loads(json_string))`` (the output of ``model.to_json()``)."""
    return model_from_config(json.loads(json_string), custom_objects=custom_objects)
