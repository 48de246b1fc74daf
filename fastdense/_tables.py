"""Tables in and out of a model: which columns feed which input, what the output columns are called.

One rule for ``fastdense.dask.predict`` on a dask DataFrame and for ``fastdense predict`` on a
``.csv``/``.parquet`` file. A model input of per-sample shape ``(k,)`` takes ``k`` columns, in the
order given; the outputs become columns named ``<output name>_<j>`` (``dense_2_0``,
``dense_2_1``, ...), all outputs of a multi-output model side by side. Nothing here imports
pandas: the callers hand in column names and arrays.

    >>> ColumnSpec.parse(None, ["a", "b", "c"], input_names=["x"]).inputs
    (('x', ('a', 'b', 'c')),)
    >>> output_column_names(["score"], [(2,)])
    ['score_0', 'score_1']
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["ColumnSpec", "output_column_names", "model_io", "ModelIO"]


class ModelIO(NamedTuple):
    """What a model takes and gives, per sample (found by running it on zero samples)."""

    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int | None, ...], ...]     # per sample, None for a free axis
    input_dtypes: tuple[np.dtype, ...]
    output_names: tuple[str, ...]                        # unique, in predict's output order
    output_shapes: tuple[tuple[int, ...], ...]           # per sample, for the given input shapes
    output_dtypes: tuple[np.dtype, ...]
    output_keys: tuple[str, ...] | None                  # predict returns a dict with these keys


def _flat_outputs(outputs: Any) -> tuple[list[np.ndarray], tuple[str, ...] | None]:
    if isinstance(outputs, Mapping):
        return [np.asarray(v) for v in outputs.values()], tuple(str(k) for k in outputs)
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(v) for v in outputs], None
    return [np.asarray(outputs)], None


def flat_outputs(outputs: Any, keys: Sequence[str] | None = None) -> list[np.ndarray]:
    """``model.predict``'s result (an array, a list or a dict) as a flat list of arrays; a dict's
    values in the order of ``keys`` (``ModelIO.output_keys``) when given."""
    if keys is not None and isinstance(outputs, Mapping):
        return [np.asarray(outputs[k]) for k in keys]
    return _flat_outputs(outputs)[0]


def model_io(model: Any, sample_shapes: Sequence[tuple[int, ...]] | None = None) -> ModelIO:
    """Inputs and outputs of ``model``; ``sample_shapes`` (per input) fills free axes and builds
    a Sequential model that has no input shape yet."""
    if sample_shapes is not None and not getattr(model, "built", True):
        model.predict(np.zeros((0,) + tuple(sample_shapes[0]), np.float32))   # builds it, as predict would
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"the model has no inputs yet ({exc}); build it or give it an input shape") from exc
    names = tuple(str(n) for n in model.input_names)
    shapes = tuple(tuple(t.shape[1:]) for t in inputs)
    dtypes = tuple(np.dtype(t.dtype) for t in inputs)
    if sample_shapes is None:
        sample_shapes = shapes
    if len(sample_shapes) != len(shapes):
        raise ValueError(f"the model takes {len(shapes)} input(s) ({', '.join(names)}), got {len(sample_shapes)}")
    probe = []
    for name, shape, given, dtype in zip(names, shapes, sample_shapes, dtypes):
        given = tuple(given)
        if len(given) != len(shape) or any(d is not None and d != g for d, g in zip(shape, given)):
            raise ValueError(f"input {name!r} expects samples of shape {shape}, got {given}")
        probe.append(np.zeros((0,) + given, dtype))
    flat, keys = _flat_outputs(model.predict(probe if len(probe) > 1 else probe[0]))
    seen: dict[str, int] = {}
    out_names = []
    for name in [str(n) for n in model.output_names]:
        seen[name] = seen.get(name, 0) + 1
        out_names.append(name if seen[name] == 1 else f"{name}_{seen[name] - 1}")
    if keys is not None:
        out_names = list(keys)
    if len(out_names) != len(flat):
        out_names = [f"output_{i}" for i in range(len(flat))]
    return ModelIO(names, tuple(tuple(s) for s in sample_shapes), dtypes, tuple(out_names),
                   tuple(a.shape[1:] for a in flat), tuple(a.dtype for a in flat), keys)


def output_column_names(output_names: Sequence[str], output_shapes: Sequence[tuple[int, ...]]) -> list[str]:
    """``<output name>_<j>`` for every column of every output (outputs must be one row per sample)."""
    columns = []
    for name, shape in zip(output_names, output_shapes):
        if len(shape) != 1:
            raise ValueError(
                f"output {name!r} has per-sample shape {shape}; table columns need one value per "
                "column (per-sample shape (k,)): write a .npy/.npz file or use a dask array instead"
            )
        columns += [f"{name}_{j}" for j in range(shape[0])]
    return columns


class ColumnSpec(NamedTuple):
    """Which table columns feed each model input, in the model's input order."""

    inputs: tuple[tuple[str, tuple[Any, ...]], ...]      # (input name, its column labels)

    @classmethod
    def parse(cls, columns: Any, available: Sequence[Any], input_names: Sequence[str]) -> "ColumnSpec":
        """``columns``: None (every column, one-input models), a list of column names (one-input
        models) or ``{input name: [column names]}``; checked against the ``available`` columns."""
        available = list(available)
        input_names = list(input_names)
        if columns is None:
            if len(input_names) != 1:
                raise ValueError(
                    f"the model takes {len(input_names)} inputs ({', '.join(input_names)}): give "
                    "columns={input name: [column names], ...}"
                )
            spec = {input_names[0]: available}
        elif isinstance(columns, Mapping):
            unknown = [k for k in columns if k not in input_names]
            missing = [k for k in input_names if k not in columns]
            if unknown or missing:
                raise ValueError(
                    f"columns must map each model input ({', '.join(input_names)}) to its columns; "
                    f"got keys {list(columns)}"
                )
            spec = {k: list(columns[k]) for k in input_names}
        elif isinstance(columns, (list, tuple)) and all(isinstance(c, str) for c in columns):
            if len(input_names) != 1:
                raise ValueError(
                    f"the model takes {len(input_names)} inputs ({', '.join(input_names)}): give "
                    "columns as {input name: [column names], ...}, not one list"
                )
            spec = {input_names[0]: list(columns)}
        else:
            raise TypeError(
                f"columns must be None, a list of column names or a dict of them, got {type(columns).__name__}"
            )
        for name, cols in spec.items():
            absent = [c for c in cols if c not in available]
            if absent:
                raise ValueError(f"input {name!r}: no column(s) {absent} in the table (it has {available})")
            if not cols:
                raise ValueError(f"input {name!r}: no columns given")
        return cls(tuple((name, tuple(spec[name])) for name in input_names))

    def check_widths(self, input_shapes: Sequence[tuple[int | None, ...]]) -> None:
        """Each input must take one row of columns per sample: per-sample shape (k,), k columns."""
        for (name, cols), shape in zip(self.inputs, input_shapes):
            if len(shape) != 1 or (shape[0] is not None and shape[0] != len(cols)):
                raise ValueError(
                    f"input {name!r} expects samples of shape {shape}; a table gives it "
                    f"{len(cols)} column(s) ({', '.join(map(str, cols))})"
                )

    def arrays(self, frame: Any, dtypes: Sequence[np.dtype]) -> list[np.ndarray]:
        """One C-contiguous array per model input from a pandas DataFrame."""
        arrays = []
        for (name, cols), dtype in zip(self.inputs, dtypes):
            selected = frame[list(cols)]
            # pandas turns dates into their integer count of ns or us (which one, the file decides)
            temporal = [c for c, kind in zip(cols, selected.dtypes) if getattr(kind, "kind", "O") in "mM"]
            if temporal:
                raise ValueError(f"input {name!r}: columns {temporal} hold dates or durations, not numbers")
            try:
                arrays.append(np.ascontiguousarray(selected.to_numpy(dtype=dtype)))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"input {name!r}: columns {list(cols)} are not all numeric ({exc})") from exc
        return arrays
