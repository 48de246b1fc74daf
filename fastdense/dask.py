"""Batch inference on Dask: ``predict(model, data)`` on a dask array or a dask DataFrame, lazily.

Install with ``pip install "fastdense[dask]"``. Importing fastdense never imports dask; this
module imports it on first use.

    >>> import dask.array as da                    # doctest: +SKIP
    >>> import fastdense.dask
    >>> x = da.random.random((1_000_000, 784), chunks=(50_000, 784)).astype("float32")  # doctest: +SKIP
    >>> y = fastdense.dask.predict(model, x)       # doctest: +SKIP
    >>> y                                          # doctest: +SKIP
    dask.array<fastdense-predict, shape=(1000000, 10), dtype=float32, chunksize=(50000, 10), ...>
    >>> scores = y.compute()                       # doctest: +SKIP

How the model reaches the workers: as a :class:`ModelPayload` -- its Keras config (JSON text)
and its weights (NumPy arrays), never code or pickled layer classes -- held in one
``dask.delayed`` node that every chunk's task depends on. Dask ships it to each worker once;
each worker process rebuilds the model from it through the same checks as
``fastdense.models.load_model`` (no Lambda, no unregistered classes) and keeps it (keyed by a
hash of config and weights) for every later chunk and every later ``predict`` of that model.

Threads (``threads=``, see docs/scale-out.md): the default ``threads=1`` makes each Dask worker
process run fastdense single-threaded, so Dask's worker threads -- one per core, as
``LocalCluster`` and ``dask worker`` give by default -- are the only parallelism.
``threads=n`` gives each task fastdense's pool of ``n`` cores instead (for workers started with
one thread each and ``n`` cores each); ``threads=None`` leaves the worker's setting alone (e.g.
``FASTDENSE_NUM_THREADS``). The setting is per worker process; tasks run by a local (threaded or
synchronous) scheduler run in your process, whose settings fastdense.dask never changes.
"""
from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._tables import ColumnSpec, flat_outputs, model_io, output_column_names

__all__ = ["predict", "ModelPayload", "model_payload", "model_from_payload", "CacheInfo", "cache_info"]

_CACHE_MODELS = 4     # models kept per worker process (least recently used dropped first)


class ModelPayload(NamedTuple):
    """A model as it travels to the workers: data only, no code."""

    key: str                         # sha256 of config and weights: the workers' cache key
    config: str                      # the model's config.json (as a .keras file holds it), JSON text
    weights: tuple[np.ndarray, ...]  # model.get_weights(), in order


class CacheInfo(NamedTuple):
    """The models this process rebuilt from payloads."""

    models: int        # held now
    builds: int        # rebuilt since the process started


_lock = threading.Lock()
_models: OrderedDict[str, Any] = OrderedDict()
_builds = 0
_threads_applied: int | None = None


def model_payload(model: Any) -> ModelPayload:
    """``model``'s config and weights, ready to travel (see :func:`model_from_payload`).

    Example:
        >>> from fastdense.models import Sequential
        >>> from fastdense.layers import Dense
        >>> payload = model_payload(Sequential([Dense(2, input_shape=(3,))]))
        >>> [w.shape for w in payload.weights]
        [(3, 2), (2,)]
    """
    from .saving.api import model_config  # noqa: PLC0415 - the file formats import h5py

    config = json.dumps(model_config(model))
    weights = tuple(np.ascontiguousarray(w) for w in model.get_weights())
    digest = hashlib.sha256(config.encode())
    for w in weights:
        digest.update(f"{w.dtype.str}{w.shape}".encode())
        digest.update(w.data)                                # (C-contiguous: the raw bytes)
    return ModelPayload(digest.hexdigest()[:32], config, weights)


def model_from_payload(payload: ModelPayload) -> Any:
    """The model ``payload`` describes, rebuilt once per process and then reused.

    The config goes through the checks ``load_model`` applies to a file (no Lambda, no
    serialized code, no classes from modules that are neither Keras's nor registered).
    """
    global _builds
    with _lock:
        model = _models.get(payload.key)
        if model is not None:
            _models.move_to_end(payload.key)
            return model
        from .models import model_from_config  # noqa: PLC0415
        from .saving import compat  # noqa: PLC0415

        config = compat.upgrade_model_config(json.loads(payload.config))
        compat.check_model_config(config)
        model = model_from_config(config)
        model.set_weights(list(payload.weights))
        _models[payload.key] = model
        _builds += 1
        while len(_models) > _CACHE_MODELS:
            _models.popitem(last=False)
        return model


def cache_info() -> CacheInfo:
    """How many models this process holds and has rebuilt (on a worker: ``client.run(cache_info)``)."""
    with _lock:
        return CacheInfo(len(_models), _builds)


def _in_dask_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _apply_thread_policy(threads: int | None) -> None:
    """Set fastdense's threads for this worker process (never outside a dask.distributed worker)."""
    global _threads_applied
    if threads is None or threads == _threads_applied or not _in_dask_worker():
        return
    from ._threads import set_num_threads  # noqa: PLC0415

    with _lock:
        if threads != _threads_applied:
            set_num_threads(threads)
            _threads_applied = threads


def _run(payload: ModelPayload, arrays: list[np.ndarray], input_names: Sequence[str] | None,
         output_keys: Sequence[str] | None, batch_size: int | None, threads: int | None) -> list[np.ndarray]:
    """The model's outputs (flat) for one chunk of every input, on the worker."""
    _apply_thread_policy(threads)
    model = model_from_payload(payload)
    if input_names is not None:
        x: Any = dict(zip(input_names, arrays))
    else:
        x = arrays[0] if len(arrays) == 1 else list(arrays)
    return flat_outputs(model.predict(x, batch_size=batch_size), output_keys)


def _only_block(blocks: Any) -> np.ndarray:
    """The one block of an input along its feature axes (blockwise hands a contracted axis in as a
    list, here of one block: the feature axes are one chunk)."""
    while isinstance(blocks, list):
        (blocks,) = blocks
    return blocks


def _predict_block(payload: ModelPayload, *blocks: Any, input_names: Sequence[str] | None,
                   output_keys: Sequence[str] | None, batch_size: int | None, threads: int | None,
                   several: bool) -> Any:
    outputs = _run(payload, [_only_block(b) for b in blocks], input_names, output_keys, batch_size, threads)
    return tuple(outputs) if several else outputs[0]


def _pick(outputs: tuple, index: int) -> np.ndarray:
    return outputs[index]


def _predict_partition(part: Any, payload: ModelPayload, *, spec: ColumnSpec, dtypes: Sequence[np.dtype],
                       output_keys: Sequence[str] | None, columns: Sequence[Any], batch_size: int | None,
                       threads: int | None) -> Any:
    import pandas as pd  # noqa: PLC0415

    outputs = _run(payload, spec.arrays(part, dtypes), None, output_keys, batch_size, threads)
    if len(outputs) == 1:      # the frame takes predict's fresh array as it is (pandas 3 copies by default)
        return pd.DataFrame(outputs[0], index=part.index, columns=list(columns), copy=False)
    values = [y[:, j] for y in outputs for j in range(y.shape[1])]
    return pd.DataFrame(dict(zip(columns, values)), index=part.index, columns=list(columns))


def _check_options(batch_size: Any, threads: Any) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size <= 0):
        raise ValueError(f"predict expects batch_size to be a positive integer or None, got {batch_size!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or threads <= 0):
        raise ValueError(f"predict expects threads to be a positive integer or None, got {threads!r}")


def predict(model: Any, data: Any, *, batch_size: int | None = None, columns: Any = None,
            output_columns: Sequence[Any] | None = None, threads: int | None = 1) -> Any:
    """``model.predict`` over a dask collection, lazily: nothing runs until you compute.

    Args:
        model: a fastdense model (Sequential or functional; built, or built from ``data``).
        data: a ``dask.array.Array`` (samples on axis 0, any chunks: feature axes are rechunked
            to one chunk); for a multi-input model a list (``model.inputs`` order) or a dict
            (input name -> array) of them, with the same number of rows. Or a
            ``dask.dataframe.DataFrame``.
        batch_size: passed to ``model.predict`` for each chunk (None: a chunk at once).
        columns: DataFrame input only: the feature columns of a one-input model (default: all
            columns, in order), or ``{input name: [columns]}`` for a multi-input model.
        output_columns: DataFrame input only: names of the output columns (default
            ``<output name>_<j>``, every output side by side).
        threads: fastdense threads per task in each worker process: 1 (default, for one Dask
            thread per core), ``n`` (fastdense's pool of n cores, for one Dask thread per
            worker) or None (leave the worker's setting). See the module docstring.

    Returns:
        For arrays: a dask array per model output (in ``model.predict``'s structure: an array,
        a list or a dict), chunked like ``data`` along the rows and in one chunk along the
        other axes, with the model's output dtype. For a DataFrame: a dask DataFrame with the
        same partitions and index as ``data`` and one column per output value.

    Example:
        >>> y = fastdense.dask.predict(model, x)                  # doctest: +SKIP
        >>> df_scores = fastdense.dask.predict(model, df, columns=["f0", "f1", "f2"])  # doctest: +SKIP
    """
    _check_options(batch_size, threads)
    import dask  # noqa: PLC0415

    dataframe = sys.modules.get("dask.dataframe")     # (a DataFrame exists only if it is imported)
    if dataframe is not None and isinstance(data, dataframe.DataFrame):
        return _predict_frame(model, data, columns, output_columns, batch_size, threads, dask)
    if dataframe is not None and isinstance(data, dataframe.Series):
        raise TypeError("predict takes a dask DataFrame, not a Series: select columns with df[[...]]")
    if columns is not None or output_columns is not None:
        raise TypeError("columns= and output_columns= apply to a dask DataFrame input only")
    return _predict_arrays(model, data, batch_size, threads, dask)


def _payload_node(model: Any, dask: Any) -> Any:
    """One graph node holding the (built) model's payload, shared by every chunk's task."""
    payload = model_payload(model)
    return dask.delayed(payload, name=f"fastdense-model-{payload.key}", traverse=False)


def _predict_arrays(model: Any, data: Any, batch_size: int | None, threads: int | None, dask: Any) -> Any:
    import dask.array as da  # noqa: PLC0415

    if isinstance(data, da.Array):
        arrays, names = [data], None
    elif isinstance(data, Mapping):
        names = list(data)
        arrays = list(data.values())
    elif isinstance(data, (list, tuple)):
        arrays, names = list(data), None
    else:
        raise TypeError(
            "fastdense.dask.predict expects a dask array (a list or dict of them for several inputs) "
            f"or a dask DataFrame, got {type(data).__name__}"
        )
    for i, a in enumerate(arrays):
        if not isinstance(a, da.Array):
            raise TypeError(f"input {i} is a {type(a).__name__}, not a dask array (wrap NumPy data with "
                            "dask.array.from_array)")
        if a.ndim < 2 or any(np.isnan(s) for s in a.shape[1:]):
            raise ValueError(f"input {i} must have samples on axis 0 and known feature sizes, got shape {a.shape}")
    if names is not None:
        expected = list(model.input_names)
        if sorted(names) != sorted(expected):
            raise ValueError(f"the model's inputs are named {expected}, got keys {names}")
        order = [names.index(n) for n in expected]
        arrays, names = [arrays[i] for i in order], expected
    rows = {a.shape[0] for a in arrays if not np.isnan(a.shape[0])}
    if len(rows) > 1:
        raise ValueError(f"the inputs must have the same number of rows, got shapes {[a.shape for a in arrays]}")
    io = model_io(model, [tuple(int(s) for s in a.shape[1:]) for a in arrays])
    node = _payload_node(model, dask)

    # blockwise indices: "r" for the rows, one letter for every other axis
    letters = iter("abcdefghijklmnopqstuvwxyz")
    row_chunks = arrays[0].chunks[0]
    argpairs: list[Any] = [node, None]
    for a in arrays:
        wanted = {axis: -1 for axis in range(1, a.ndim)}        # features: one chunk
        if a.chunks[0] != row_chunks:
            wanted[0] = row_chunks                              # rows: chunked as the first input
        if a.chunks[0] != row_chunks or any(len(c) > 1 for c in a.chunks[1:]):
            a = a.rechunk(wanted)
        argpairs += [a, "r" + "".join(next(letters) for _ in range(a.ndim - 1))]
    # concatenate=False: Dask's concatenation of a contracted axis copies the block even when there
    # is only one (a 78 MB copy per 25k-row chunk of 784 features, a fifth of the predict time)
    options = dict(input_names=names, output_keys=io.output_keys, batch_size=batch_size, threads=threads,
                   concatenate=False)

    def output(func: Any, args: list, shape: tuple[int, ...], dtype: np.dtype, **kwargs: Any) -> Any:
        axes = "".join(next(letters) for _ in shape)
        return da.blockwise(func, "r" + axes, *args, new_axes=dict(zip(axes, shape)), dtype=dtype,
                            meta=np.empty((0,) * (1 + len(shape)), dtype), **kwargs)

    if len(io.output_shapes) == 1:
        return output(_predict_block, argpairs, io.output_shapes[0], io.output_dtypes[0],
                      token="fastdense-predict", several=False, **options)
    # several outputs: one task per chunk runs the model, one light task per output picks its array
    both = da.blockwise(_predict_block, "r", *argpairs, dtype=object, meta=np.empty((0,), object),
                        token="fastdense-predict", several=True, **options)
    outputs = [output(_pick, [both, "r", i, None], shape, dtype, token="fastdense-output")
               for i, (shape, dtype) in enumerate(zip(io.output_shapes, io.output_dtypes))]
    if io.output_keys is not None:
        return dict(zip(io.output_keys, outputs))
    return outputs


def _predict_frame(model: Any, data: Any, columns: Any, output_columns: Sequence[Any] | None,
                   batch_size: int | None, threads: int | None, dask: Any) -> Any:
    import pandas as pd  # noqa: PLC0415

    try:
        input_names = [str(n) for n in model.input_names]
    except (AttributeError, ValueError):
        input_names = ["input"]          # a Sequential model without an input shape: one input
    spec = ColumnSpec.parse(columns, list(data.columns), input_names)
    if getattr(model, "built", True):
        spec.check_widths([tuple(t.shape[1:]) for t in model.inputs])
    io = model_io(model, [(len(cols),) for _, cols in spec.inputs])
    names = output_column_names(io.output_names, io.output_shapes)
    if output_columns is not None:
        if len(output_columns) != len(names):
            raise ValueError(f"output_columns must name the model's {len(names)} output columns, "
                             f"got {len(output_columns)}")
        names = list(output_columns)
    dtypes = [dtype for dtype, shape in zip(io.output_dtypes, io.output_shapes) for _ in range(shape[0])]
    meta = pd.DataFrame({name: np.empty(0, dtype) for name, dtype in zip(names, dtypes)},
                        index=data._meta.index[:0], columns=names)
    node = _payload_node(model, dask)
    return data.map_partitions(_predict_partition, node, spec=spec, dtypes=io.input_dtypes,
                               output_keys=io.output_keys, columns=names,
                               batch_size=batch_size, threads=threads, meta=meta,
                               token="fastdense-predict")
