"""Nested structures of a model's inputs and outputs: a tensor, a list/tuple of them, a dict.

Leaves are flattened in Keras order (lists in order, dicts by sorted key) and packed back
into the same structure.

    >>> flatten_struct({"b": 2, "a": [1, 0]})
    [1, 0, 2]
    >>> pack_struct({"b": None, "a": [None, None]}, [1, 0, 2])
    {'b': 2, 'a': [1, 0]}
"""
from __future__ import annotations

from typing import Any

__all__ = ["flatten_struct", "pack_struct"]


def flatten_struct(structure: Any) -> list:
    """Leaves in Keras order: lists in order, dicts by sorted key."""
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in flatten_struct(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten_struct(item)]
    return [structure]


def pack_struct(structure: Any, leaves: list) -> Any:
    """Inverse of :func:`flatten_struct`."""
    iterator = iter(leaves)

    def pack(node: Any) -> Any:
        if isinstance(node, dict):
            packed = {key: pack(node[key]) for key in sorted(node)}
            return {key: packed[key] for key in node}
        if isinstance(node, (list, tuple)):
            return type(node)(pack(item) for item in node) if isinstance(node, tuple) else [pack(i) for i in node]
        return next(iterator)

    return pack(structure)
