"""Saving and loading: Keras object configs (``serialization``) and model files.

    >>> from fastdense.saving import register_serializable, serialize_keras_object
"""

from fastdense.saving.serialization import (
    CustomObjectScope,
    custom_object_scope,
    deserialize_dtype,
    deserialize_keras_object,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_serializable,
    serialize_dtype,
    serialize_keras_object,
)

# Keras's spelling of the decorator.
register_keras_serializable = register_serializable

__all__ = [
    "CustomObjectScope",
    "custom_object_scope",
    "deserialize_dtype",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
    "register_keras_serializable",
    "register_serializable",
    "serialize_dtype",
    "serialize_keras_object",
]

# --- Model files (.keras, .h5, .weights.h5): imported on first use, so that importing the
# layers does not pull in h5py.
_FILE_API = {
    "load_model": "fastdense.saving.api",
    "save_model": "fastdense.saving.api",
    "load_weights": "fastdense.saving.api",
    "save_weights": "fastdense.saving.api",
    "KerasFileError": "fastdense.saving.errors",
    "UnsafeFileError": "fastdense.saving.errors",
    "UnsupportedLayerError": "fastdense.saving.errors",
}
__all__ += list(_FILE_API)


def __getattr__(name: str):
    if name in _FILE_API:
        import importlib

        return getattr(importlib.import_module(_FILE_API[name]), name)
    raise AttributeError(f"module 'fastdense.saving' has no attribute {name!r}")
