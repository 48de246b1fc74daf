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
