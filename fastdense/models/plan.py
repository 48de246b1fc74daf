"""Compiled whole-model inference: a model's layers as one native call.

A model whose layers are Dense, Activation, Dropout, Flatten, Reshape and the element-wise
merges / last-axis Concatenate compiles, once per (weights version, dtype, sample shapes),
into a plan run by one nogil call (``fastdense._kernels.Plan``): each Dense is the fused
kernel, intermediates live in per-thread scratch buffers reused across calls, and large
batches stream through every layer in blocks of samples so the intermediates stay in cache.
Anything else returns ``None`` from :func:`compile_plan` and the model runs layer by layer,
with the same results.

    >>> import numpy as np
    >>> from fastdense.models import Sequential
    >>> from fastdense.layers import Dense
    >>> model = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(2)])
    >>> plan = compile_plan(model, [(3,)], np.float32)
    >>> plan.run([np.ones((5, 3), np.float32)])[0].shape
    (5, 2)
"""
from __future__ import annotations

import math
import threading
from typing import Any, Sequence

import numpy as np

from fastdense import _kernels, activations, ops
from fastdense.layers.base import WEIGHTS_LOCK, Layer
from fastdense.layers.core import Activation, Dense, Dropout
from fastdense.layers.input_layer import InputLayer
from fastdense.layers.merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from fastdense.layers.reshaping import Flatten, Reshape

__all__ = ["CompiledPlan", "compile_plan", "run_compiled"]

# step kinds, as csrc/fd_plan.h numbers them
_DENSE, _ACT, _ADD, _SUB, _MUL, _AVG, _MAX, _MIN, _CONCAT, _COPY, _QDENSE = range(11)
_MERGES = {Add: _ADD, Subtract: _SUB, Multiply: _MUL, Average: _AVG, Maximum: _MAX, Minimum: _MIN}

_ROWS_PER_BLOCK = 256                 # GEMM rows per block: the BLAS re-packs weights per call
_BLOCK_BYTES = 2 << 20                # intermediates of one block: about L2 + a slice of L3
_BLAS_BLOCK_BYTES = 64 << 20          # multi-threaded BLAS: whole batches up to this scratch size
_SMALL_BATCH = 48                     # packed plans: batches up to this size split by samples ...
_SMALL_BATCH_WORK = 1 << 20           # ... when they are at least this many multiply-adds


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


class _Unsupported(Exception):
    """The model has something the plan does not cover: run it layer by layer."""


class CompiledPlan:
    """A model compiled for one dtype and one set of per-sample input shapes."""

    def __init__(self, plan: Any, dtype: np.dtype, out_shapes: list[tuple], sample_elems: int,
                 block: int, packed: bool = False, macs_per_sample: int = 0) -> None:
        self._plan = plan
        self._packed = packed                    # every Dense runs the packed kernel
        self._macs = macs_per_sample             # Dense multiply-adds per sample
        self.dtype = dtype
        self.out_shapes = out_shapes             # per sample
        self.block = block                       # samples per block when fastdense threads
        self._sample_elems = max(int(sample_elems), 1)
        self._local = threading.local()          # per-thread scratch, reused across calls
        self._layouts: dict[int, tuple[int, int]] = {}  # packed plans: m -> (block, tasks)

    def _layout(self, m: int) -> tuple[int, int]:
        """(block, tasks) for m samples.

        With fastdense's own pool (always, when every Dense runs the packed kernel), blocks of
        ``self.block`` samples stream through every layer (intermediates stay in cache) and
        spread over the cores. When the BLAS threads each GEMM itself, the batch goes through
        in blocks as large as memory allows, since the BLAS's threads work well only on large
        GEMMs.
        """
        if self._packed:
            # fixed per m (cached): fd_plan_run runs at most fastdense's thread count of tasks
            layout = self._layouts.get(m)
            if layout is None:
                block, cores = min(self.block, m), _kernels.cpu_count()
                if cores > 1 and 6 * cores <= m <= _SMALL_BATCH and m * self._macs >= _SMALL_BATCH_WORK:
                    # a small batch: each core takes its samples through every layer (one join
                    # per call instead of one per layer), in multiples of the kernel's 6 rows
                    block = -(-(-(-m // cores)) // 6) * 6
                layout = block, max(1, min(cores, -(-m // block)))
                if len(self._layouts) < 64:
                    self._layouts[m] = layout
            return layout
        if _kernels.own_threading():
            block = min(self.block, m)
            return block, max(1, min(_kernels.get_num_threads(), -(-m // block)))
        cap = max(self.block, _BLAS_BLOCK_BYTES // (self._sample_elems * self.dtype.itemsize))
        return min(m, cap), 1

    def _execute(self, arrays: list[np.ndarray], outputs: list[np.ndarray], m: int) -> None:
        """The native run of m > 0 samples, with this thread's scratch (grown when needed)."""
        block, tasks = self._layout(m)
        need = tasks * block * self._sample_elems
        scratch = getattr(self._local, "scratch", None)
        if scratch is None or scratch.size < need:
            scratch = np.empty(need, self.dtype)
            self._local.scratch = scratch
        self._plan.run(arrays, outputs, m, block, scratch, tasks)

    def run_one(self, x: np.ndarray) -> np.ndarray:
        """``run([x])[0]`` for a plan with one input and one output, with fewer Python steps
        (predict's shortcut)."""
        m = x.shape[0]
        y = np.empty((m,) + self.out_shapes[0], self.dtype)
        if m:
            self._execute([x], [y], m)
        return y

    def run(self, arrays: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Outputs for C-contiguous inputs of the plan dtype and shapes (``out``: written in place)."""
        m = arrays[0].shape[0]
        if out is None:
            dtype = self.dtype
            outputs = [np.empty((m,) + shape, dtype) for shape in self.out_shapes]
        else:
            outputs = list(out)
        if m:
            self._execute(arrays if type(arrays) is list else list(arrays), outputs, m)
        return outputs


def _layer_steps(model: Any) -> tuple[list, list[int], list[int]]:
    """(steps, input slots, output slots) of a built model, in execution order."""
    steps = getattr(model, "_steps", None)
    if steps is None:
        raise _Unsupported("model has no compiled graph")
    return steps, list(model._input_slots), list(model._output_slots)


def _act_spec(function: Any) -> tuple:
    """Kernel form of a layer's activation (the op's own conversion)."""
    if not activations.is_fused(function):
        raise _Unsupported("activation is a Python callable")
    return ops._spec(function)


def compile_plan(model: Any, sample_shapes: Sequence[tuple], dtype: Any,
                 record_losses: bool = False) -> CompiledPlan | None:
    """Compile ``model`` for inputs of per-sample shapes ``sample_shapes``; None if unsupported.

    With ``record_losses`` a layer with an activity regularizer (which records a penalty on
    its outputs, see ``Layer.losses``) makes the model run layer by layer; ``predict`` does not
    record such losses and always compiles.
    """
    try:
        return _compile(model, [tuple(s) for s in sample_shapes], np.dtype(dtype), record_losses)
    except _Unsupported:
        return None


def _compile(model: Any, sample_shapes: list[tuple], dtype: np.dtype, record_losses: bool) -> CompiledPlan:
    steps, input_slots, output_slots = _layer_steps(model)
    es = dtype.itemsize
    widths: list[int] = []
    in_index: list[int] = []
    out_index: list[int] = []
    shapes: list[tuple] = []
    slot_buf: dict[int, int] = {}       # slot -> buffer
    slot_shape: dict[int, tuple] = {}   # slot -> per-sample shape (buffers can be reshaped views)

    def new_buffer(shape: tuple, role_in: int = -1) -> int:
        widths.append(math.prod(shape))
        in_index.append(role_in)
        out_index.append(-1)
        shapes.append(shape)
        return len(widths) - 1

    for j, (s, shape) in enumerate(zip(input_slots, sample_shapes)):
        slot_buf[s] = new_buffer(shape, j)
        slot_shape[s] = shape

    plan_steps: list[tuple] = []
    glu_elems = 0          # per sample
    max_rows_per_sample = 1

    for layer, kind, ref, extra, kwargs, out_slots, symbolic_extra, _release in steps:
        if extra or kwargs or symbolic_extra or len(out_slots) != 1:
            raise _Unsupported("layer call with extra arguments")
        if record_losses and getattr(layer, "_activity_regularizer", None) is not None:
            raise _Unsupported("activity regularizer records the outputs")
        srcs = [ref] if kind == 0 else (list(ref) if kind == 1 else None)
        if srcs is None:
            raise _Unsupported("nested inputs")
        in_shapes = [slot_shape[s] for s in srcs]
        in_bufs = [slot_buf[s] for s in srcs]
        out_slot = out_slots[0]
        cls = type(layer)
        if cls is Dense and layer._quant is not None:
            # Keras int8 / int4: the layer's QuantizedKernel, run by the integer kernels
            (shape,) = in_shapes
            values = layer._values
            qkernel = layer._pack(values)
            bias = values[1] if layer.use_bias else None
            if dtype != np.float32 or not qkernel.native:
                raise _Unsupported("quantized Dense outside a float32 plan or without an integer kernel")
            k, n = qkernel.shape
            if not shape or shape[-1] != k:
                raise _Unsupported("Dense input does not match its kernel")
            code, p0, p1, p2, halves = _act_spec(layer.activation)
            if halves and n % 2:
                raise _Unsupported("glu on an odd number of units")
            t = math.prod(shape[:-1])
            dst = new_buffer(shape[:-1] + (n // 2 if halves else n,))
            if halves:
                glu_elems = max(glu_elems, t * n)
            max_rows_per_sample = max(max_rows_per_sample, t)
            plan_steps.append((_QDENSE, in_bufs, dst, t, k, n, None, qkernel,
                               None if bias is None else np.ascontiguousarray(bias), code, p0, p1, p2))
        elif cls is Dense:
            (shape,) = in_shapes
            values = layer._values          # one read: a consistent (kernel, bias) pair
            kernel, bias = values[0], (values[1] if layer.use_bias else None)
            if kernel.dtype != dtype or (bias is not None and bias.dtype != dtype):
                raise _Unsupported("layer dtype differs from the plan dtype")
            if not shape or shape[-1] != kernel.shape[0] or len(values) != 1 + layer.use_bias:
                raise _Unsupported("Dense input does not match its kernel")
            code, p0, p1, p2, halves = _act_spec(layer.activation)
            n = kernel.shape[1]
            if halves and n % 2:
                raise _Unsupported("glu on an odd number of units")
            t = math.prod(shape[:-1])
            out_shape = shape[:-1] + (n // 2 if halves else n,)
            dst = new_buffer(out_shape)
            if halves:
                glu_elems = max(glu_elems, t * n)
            max_rows_per_sample = max(max_rows_per_sample, t)
            packed = layer._pack(values)    # the layer's packed kernel for these weights
            plan_steps.append((_DENSE, in_bufs, dst, t, kernel.shape[0], n, None,
                               packed if type(packed) is ops.PackedKernel else np.ascontiguousarray(kernel),
                               None if bias is None else np.ascontiguousarray(bias),
                               code, p0, p1, p2))
        elif cls is Activation:
            (shape,) = in_shapes
            code, p0, p1, p2, halves = _act_spec(layer.activation)
            if not shape or (halves and shape[-1] % 2):
                raise _Unsupported("activation shape")
            out_shape = shape[:-1] + (shape[-1] // 2 if halves else shape[-1],)
            dst = new_buffer(out_shape)
            plan_steps.append((_ACT, in_bufs, dst, math.prod(shape[:-1]), 0, shape[-1], None, None, None,
                               code, p0, p1, p2))
        elif cls is Dropout or cls is Flatten or cls is Reshape:
            (shape,) = in_shapes
            if cls is Flatten:
                if layer.data_format == "channels_first" and len(shape) > 1:
                    raise _Unsupported("channels_first Flatten moves data")
                new_shape: tuple = (math.prod(shape),)
            elif cls is Reshape:
                new_shape = tuple(layer.compute_output_shape((None,) + shape)[1:])
            else:
                new_shape = shape
            slot_buf[out_slot] = in_bufs[0]       # same memory, new per-sample shape
            slot_shape[out_slot] = new_shape
            continue
        elif cls in _MERGES:
            if len(set(in_shapes)) != 1 or len(srcs) < 2 or (cls is Subtract and len(srcs) != 2):
                raise _Unsupported("merge with broadcasting")
            dst = new_buffer(in_shapes[0])
            plan_steps.append((_MERGES[cls], in_bufs, dst, 1, 0, widths[dst], None, None, None, 0, 0.0, 0.0, 0.0))
        elif cls is Concatenate:
            rank = len(in_shapes[0]) + 1
            if layer.axis not in (-1, rank - 1) or any(len(s) != rank - 1 for s in in_shapes) \
                    or len({s[:-1] for s in in_shapes}) != 1 or rank < 2:
                raise _Unsupported("concatenation off the last axis")
            cols = [s[-1] for s in in_shapes]
            out_shape = in_shapes[0][:-1] + (sum(cols),)
            dst = new_buffer(out_shape)
            plan_steps.append((_CONCAT, in_bufs, dst, math.prod(out_shape[:-1]), 0, sum(cols), cols,
                               None, None, 0, 0.0, 0.0, 0.0))
        elif cls is InputLayer:
            raise _Unsupported("nested input layer")
        else:
            raise _Unsupported(f"layer type {cls.__name__}")
        slot_buf[out_slot] = dst
        slot_shape[out_slot] = shapes[dst]

    # outputs: the buffer that holds each output becomes (or is copied into) the output array
    out_shapes = []
    for j, s in enumerate(output_slots):
        b = slot_buf[s]
        out_shapes.append(slot_shape[s])
        if in_index[b] < 0 and out_index[b] < 0:
            out_index[b] = j
            continue
        dst = new_buffer(slot_shape[s])
        out_index[dst] = j
        plan_steps.append((_COPY, [b], dst, 1, 0, widths[dst], None, None, None, 0, 0.0, 0.0, 0.0))

    intermediate = sum(w for b, w in enumerate(widths) if in_index[b] < 0 and out_index[b] < 0)
    per_sample = intermediate + glu_elems
    block = max(1, _ROWS_PER_BLOCK // max_rows_per_sample)
    block = max(block, min(_BLOCK_BYTES // max(per_sample * es, 1), 4 * block))
    offsets, offset = [], 0
    for b, w in enumerate(widths):
        offsets.append(offset)
        if in_index[b] < 0 and out_index[b] < 0:
            offset += w
    glu_offset = offset
    sample_elems = max(offset + glu_elems, 1)
    plan = _kernels.Plan(plan_steps, widths, in_index, out_index, offsets, glu_offset, sample_elems, dtype)
    dense_kernels = [step[7] for step in plan_steps if step[0] in (_DENSE, _QDENSE)]
    # packed (and quantized) kernels run on any thread: the plan spreads blocks over fastdense's pool
    packed = bool(dense_kernels) and all(
        (type(w) is ops.PackedKernel and w.packed is not None) or type(w) is ops.QuantizedKernel
        for w in dense_kernels)
    macs = sum(step[3] * step[4] * step[5] for step in plan_steps if step[0] in (_DENSE, _QDENSE))
    return CompiledPlan(plan, dtype, out_shapes, sample_elems, block, packed, macs)


def check_out(out: Sequence[Any], shapes: Sequence[tuple], dtype: np.dtype,
              arrays: Sequence[np.ndarray]) -> None:
    """Validate ``predict(out=...)`` buffers before anything is written."""
    if len(out) != len(shapes):
        raise ValueError(f"predict: out must hold {len(shapes)} arrays (one per output), got {len(out)}")
    for o, expected in zip(out, shapes):
        if not isinstance(o, np.ndarray) or o.shape != tuple(expected) or o.dtype != dtype \
                or not o.flags.c_contiguous or not o.flags.writeable:
            got = f"shape {o.shape}, dtype {o.dtype}" if isinstance(o, np.ndarray) else type(o).__name__
            raise ValueError(f"predict: out must be a writeable C-contiguous array of shape "
                             f"{tuple(expected)} and dtype {dtype}, got {got}")
        for a in arrays:
            if np.shares_memory(o, a):
                raise ValueError("predict: out must not overlap the inputs")


def run_compiled(model: Any, arrays: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None,
                 record_losses: bool = False) -> list[np.ndarray] | None:
    """Run ``model`` on standardized input arrays through its cached plan; None to fall back.

    Plans are cached per (dtype, per-sample shapes) and valid while no weight anywhere changed
    (``Layer._weights_epoch``). A plan holds the weight arrays it was compiled from, taken under
    the weights lock that ``set_weights`` holds, so calls see the old weights or the new ones,
    never a mix; a ``set_weights`` makes the next call compile a new plan.
    """
    first = arrays[0]
    dtype = first.dtype
    if dtype is not _F32 and dtype is not _F64 and dtype != _F32 and dtype != _F64:
        return None   # (identity first: the common case costs no dtype comparison)
    char = dtype.char
    if first.ndim < 1 or not first.flags.c_contiguous:
        return None
    if len(arrays) == 1:
        key: tuple = (char, record_losses, first.shape[1:])
    else:
        m = first.shape[0]
        for a in arrays:
            if a.dtype != dtype or a.ndim < 1 or a.shape[0] != m or not a.flags.c_contiguous:
                return None
        key = (char, record_losses) + tuple(a.shape[1:] for a in arrays)
    cache = model.__dict__.get("_fd_plans")
    entry = cache.get(key) if cache is not None and cache[None] == Layer._weights_epoch else None
    if entry is None:
        with WEIGHTS_LOCK:
            epoch = Layer._weights_epoch
            cache = model.__dict__.get("_fd_plans")
            if cache is None or cache[None] != epoch:
                cache = {None: epoch}
            entry = compile_plan(model, key[2:], dtype, record_losses) or False
            cache[key] = entry
            model.__dict__["_fd_plans"] = cache
    if entry is False:
        return None
    if len(arrays) == 1 and len(entry.out_shapes) == 1 and not record_losses:
        # for predict's shortcut (Functional.predict): the plan of the last one-input call
        model.__dict__["_fd_last_plan"] = (cache[None], dtype, first.ndim, first.shape[1:], entry)
    if out is not None:
        m = first.shape[0]
        check_out(out, [(m,) + shape for shape in entry.out_shapes], dtype, arrays)
    return entry.run(arrays, out)
