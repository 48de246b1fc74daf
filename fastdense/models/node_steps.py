"""A model's nodes as a flat list of steps over numbered array slots, and running them.

:func:`compile_steps` turns the nodes of a functional graph (in topological order) into
:class:`NodeStep` records: which layer runs, which slots hold its arguments, which slots
receive its outputs and which slots are no longer needed after it. :func:`run_steps` runs
them layer by layer; the compiled plan (:mod:`fastdense.models.plan`) reads the same steps.

    >>> import numpy as np
    >>> import fastdense
    >>> from fastdense.layers import Dense
    >>> x = fastdense.Input((3,))
    >>> model = fastdense.Model(x, Dense(2, name="out")(x))
    >>> [(step.layer.name, step.ref, step.out_slots) for step in model._program.steps]
    [('out', 0, [1])]
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from fastdense.layers.base import Layer
from fastdense.layers.node import Node, SymbolicTensor, flatten, map_structure
from fastdense.models.structure import flatten_struct

__all__ = ["ARG_TENSOR", "ARG_LIST", "ARG_NESTED", "NodeStep", "StepProgram", "compile_steps", "run_steps"]

# How a step's first argument refers to slots (NodeStep.arg_kind).
ARG_TENSOR = 0   # ref is one slot
ARG_LIST = 1     # ref is a list of slots
ARG_NESTED = 2   # ref is a structure whose tensors are Slot leaves


class Slot:
    """A slot number inside a nested argument structure."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class NodeStep(NamedTuple):
    """One layer call of a model: ``out_slots = layer(ref, *extra, **kwargs)``."""

    layer: Layer
    arg_kind: int                  # ARG_*: how ref names the first argument's slots
    ref: Any                       # a slot, a list of slots or a structure with Slot leaves
    extra: tuple                   # further positional arguments
    kwargs: dict                   # keyword arguments
    out_slots: list[int]           # where the outputs go
    symbolic_extra: bool           # extra / kwargs hold Slot leaves (tensors of the graph)
    release: tuple[int, ...]       # slots no longer needed after this step


class StepProgram(NamedTuple):
    """A model's steps, its input and output slots, and its shortcut for a plain chain."""

    steps: list[NodeStep]
    input_slots: list[int]
    output_slots: list[int]
    n_slots: int
    chain: list[Layer] | None      # one input, each layer feeding the next, one output


def compile_steps(nodes_by_depth: dict[int, list[Node]], inputs: list[SymbolicTensor],
                  outputs: list[SymbolicTensor]) -> StepProgram:
    """The steps of the nodes, deepest first, over numbered array slots."""
    slots: dict[int, int] = {}

    def slot(tensor: SymbolicTensor) -> int:
        return slots.setdefault(id(tensor), len(slots))

    def to_slots(structure: Any) -> Any:
        return map_structure(lambda t: Slot(slot(t)) if isinstance(t, SymbolicTensor) else t, structure)

    input_slots = [slot(t) for t in inputs]
    steps: list[NodeStep] = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.is_input:
                continue
            first, extra = node.call_args[0], node.call_args[1:]
            if isinstance(first, SymbolicTensor):
                kind, ref = ARG_TENSOR, slot(first)
            elif isinstance(first, list) and all(isinstance(t, SymbolicTensor) for t in first):
                kind, ref = ARG_LIST, [slot(t) for t in first]
            else:
                kind, ref = ARG_NESTED, to_slots(first)
            symbolic_extra = any(
                isinstance(t, SymbolicTensor) for t in flatten([list(extra), list(node.call_kwargs.values())])
            )
            kwargs = node.call_kwargs
            if symbolic_extra:
                extra, kwargs = to_slots(extra), to_slots(kwargs)
            steps.append(NodeStep(node.layer, kind, ref, tuple(extra), dict(kwargs),
                                  [slot(t) for t in node.output_tensors], symbolic_extra, ()))
    output_slots = [slot(t) for t in outputs]

    # Free each intermediate array after its last use.
    last_use: dict[int, int] = {}
    for index, step in enumerate(steps):
        for s in _used_slots(step):
            last_use[s] = index
    keep = set(output_slots)
    for s, index in last_use.items():
        if s not in keep:
            steps[index] = steps[index]._replace(release=steps[index].release + (s,))

    # A plain chain (one input, each layer feeding the next, one output) runs as `x = layer(x)`.
    chain: list[Layer] | None = []
    current = input_slots[0] if len(input_slots) == 1 else None
    for step in steps:
        if step.arg_kind != ARG_TENSOR or step.ref != current or step.extra or step.kwargs \
                or len(step.out_slots) != 1:
            chain = None
            break
        chain.append(step.layer)
        current = step.out_slots[0]
    if chain is not None and (len(output_slots) != 1 or output_slots[0] != current):
        chain = None
    return StepProgram(steps, input_slots, output_slots, len(slots), chain)


def _used_slots(step: NodeStep) -> list[int]:
    if step.arg_kind == ARG_TENSOR:
        used = [step.ref]
    elif step.arg_kind == ARG_LIST:
        used = list(step.ref)
    else:
        used = _slots_in(step.ref)
    if step.symbolic_extra:
        used += _slots_in([step.extra, step.kwargs])
    return used


def run_steps(program: StepProgram, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the steps layer by layer on input arrays (one per model input); outputs as a flat list."""
    chain = program.chain
    if chain is not None:
        x = arrays[0]
        for layer in chain:
            x = layer(x)
        return [x]
    values: list[Any] = [None] * program.n_slots
    for s, array in zip(program.input_slots, arrays):
        values[s] = array
    for layer, kind, ref, extra, kwargs, out_slots, symbolic_extra, release in program.steps:
        if kind == ARG_TENSOR:
            x = values[ref]
        elif kind == ARG_LIST:
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
            for s, o in zip(out_slots, flatten_struct(out)):
                values[s] = o
        for s in release:
            values[s] = None
    return [values[s] for s in program.output_slots]


def _fill(structure: Any, values: list) -> Any:
    """``structure`` with each Slot leaf replaced by its value."""
    if isinstance(structure, Slot):
        return values[structure.index]
    if isinstance(structure, list):
        return [_fill(s, values) for s in structure]
    if isinstance(structure, tuple):
        return tuple(_fill(s, values) for s in structure)
    if isinstance(structure, dict):
        return {k: _fill(v, values) for k, v in structure.items()}
    return structure


def _slots_in(structure: Any) -> list[int]:
    if isinstance(structure, Slot):
        return [structure.index]
    if isinstance(structure, (list, tuple)):
        return [s for item in structure for s in _slots_in(item)]
    if isinstance(structure, dict):
        return [s for item in structure.values() for s in _slots_in(item)]
    return []
