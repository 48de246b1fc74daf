"""Running a built model on arrays: input checking, then the compiled plan or layer by layer.

:class:`ModelInputs` turns what ``predict`` or a call receives (an array, a list, a dict) into
one checked array per model input; :func:`run_model` runs them through the model's compiled
plan (:mod:`fastdense.models.plan`) or, when the model has none, layer by layer
(:mod:`fastdense.models.node_steps`) with the same results; :func:`predict_batches` splits
``predict(batch_size=...)`` into chunks.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fastdense.layers.node import SymbolicTensor
from fastdense.models.node_steps import run_steps
from fastdense.models.plan import check_out, run_compiled

__all__ = ["ModelInputs", "run_model", "predict_batches"]


class ModelInputs:
    """A model's inputs: their tensors, the structure they were given in, the model's name."""

    __slots__ = ("tensors", "structure", "model_name", "_checks")

    def __init__(self, tensors: list[SymbolicTensor], structure: Any, model_name: str) -> None:
        self.tensors = tensors
        self.structure = structure
        self.model_name = model_name
        # Per-input (dtype, rank, fixed (axis, size) pairs), for the one-array fast check.
        self._checks = tuple(
            (np.dtype(t.dtype), len(t.shape), tuple((i, d) for i, d in enumerate(t.shape) if d is not None))
            for t in tensors
        )

    @property
    def names(self) -> list[str]:
        return [t._keras_history[0].name for t in self.tensors]

    def standardize(self, x: Any) -> list[np.ndarray]:
        """Inputs as one array per model input, with the input's dtype; checked shapes."""
        checks = self._checks
        if type(x) is np.ndarray and len(checks) == 1:
            dtype, rank, fixed = checks[0]
            if x.dtype is dtype and x.ndim == rank:
                shape = x.shape
                for axis, size in fixed:
                    if shape[axis] != size:
                        break
                else:
                    return [x]
        inputs = self.tensors
        expected = ", ".join(self.names)
        if isinstance(x, dict):
            if isinstance(self.structure, dict):
                keys = sorted(self.structure)
            else:
                keys = self.names
            missing = [k for k in keys if k not in x]
            if missing:
                raise ValueError(
                    f"Model '{self.model_name}' is missing input {missing[0]!r}: expected keys {keys}, "
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
                    f"Model '{self.model_name}' expects {len(inputs)} inputs ({expected}) as a list or a dict, "
                    f"got a single {type(x).__name__}"
                )
            if len(x) != len(inputs):
                raise ValueError(
                    f"Model '{self.model_name}' expects {len(inputs)} inputs ({expected}), got {len(x)}"
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
                        f"Input '{tensor.name}' of model '{self.model_name}' expects a numeric array, "
                        f"got {type(value).__name__} with dtype {array.dtype}"
                    )
                # integer ids for an integer input stay as they are (issue 13: a cast could wrap
                # an out-of-range id into range; Embedding checks every id of any integer dtype)
                if not (dtype.kind in "iu" and array.dtype.kind in "iu"):
                    array = array.astype(dtype, copy=False)
            shape = tensor.shape
            if array.ndim != len(shape) or any(
                d is not None and d != a for d, a in zip(shape, array.shape)
            ):
                raise ValueError(
                    f"Input '{tensor.name}' of model '{self.model_name}' expects arrays of shape {shape}, "
                    f"got shape {array.shape}"
                )
            arrays.append(array)
        batches = {a.shape[0] for a in arrays}
        if len(batches) > 1:
            raise ValueError(
                f"Model '{self.model_name}' inputs must have the same number of samples, got shapes "
                f"{[a.shape for a in arrays]}"
            )
        return arrays


def run_model(model: Any, arrays: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None,
              record_losses: bool = True) -> list[np.ndarray]:
    """Outputs for standardized inputs: the compiled plan when the model has one (one native
    call for the whole model), else layer by layer with the same results. ``predict``
    passes ``record_losses=False``: it does not record activity-regularization losses."""
    outputs = run_compiled(model, arrays, out, record_losses)
    if outputs is not None:
        return outputs
    outputs = run_steps(model._program, arrays)
    if out is None:
        return outputs
    check_out(out, [o.shape for o in outputs], [o.dtype for o in outputs], arrays)
    for target, value in zip(out, outputs):
        target[...] = value
    return list(out)


def _run_batch(model: Any, arrays: list[np.ndarray], start: int, batch_size: int,
               out: list[np.ndarray] | None) -> list[np.ndarray]:
    """One batch of ``predict(batch_size=)``: samples [start, start + batch_size). A bad input the
    batch meets (an id outside its table) is reported at its index in the batch, so the message
    also says which samples the batch holds."""
    stop = min(start + batch_size, arrays[0].shape[0])
    try:
        return run_model(model, [a[start:stop] for a in arrays], out, record_losses=False)
    except ValueError as error:
        raise ValueError(f"{error} (in the batch of samples {start} to {stop - 1}, "
                         f"batch_size={batch_size})") from error


def predict_batches(model: Any, arrays: list[np.ndarray], batch_size: int | None,
                    outs: list[np.ndarray] | None) -> list[np.ndarray]:
    """``predict``'s flat outputs: all samples at once, or in chunks of ``batch_size``."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size <= 0):
        raise ValueError(f"predict expects batch_size to be a positive integer or None, got {batch_size!r}")
    total = arrays[0].shape[0] if arrays[0].ndim else 0
    if batch_size is None or total <= batch_size:
        return run_model(model, arrays, outs, record_losses=False)
    starts = range(0, total, batch_size)
    if outs is None:
        chunks = [_run_batch(model, arrays, i, batch_size, None) for i in starts]
        return [np.concatenate([chunk[j] for chunk in chunks], axis=0) for j in range(len(chunks[0]))]
    # out is checked whole (its length, and no overlap with any input row: a chunk's check sees only
    # its own rows, and an earlier chunk's results could overwrite later inputs) before anything is
    # written: the first chunk goes into new arrays, then into out. Integer ids are checked chunk
    # by chunk (an id outside its table in a later chunk), so with integer inputs every chunk runs
    # into new arrays before out is written: never half-written.
    first = _run_batch(model, arrays, 0, batch_size, None)
    check_out(outs, [(total,) + f.shape[1:] for f in first], [f.dtype for f in first], arrays)
    staged = [(0, first)]
    ids = any(a.dtype.kind in "iub" for a in arrays)
    for i in starts[1:]:
        if ids:
            staged.append((i, _run_batch(model, arrays, i, batch_size, None)))
        else:
            _run_batch(model, arrays, i, batch_size, [o[i:i + batch_size] for o in outs])
    for i, values in staged:
        for target, value in zip(outs, values):
            target[i:i + batch_size] = value
    return outs
