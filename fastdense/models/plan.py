"""Compiled whole-model inference: a model's layers as one native call.

A model whose layers are Dense, Activation, Dropout, Flatten, Reshape and the element-wise
merges / last-axis Concatenate compiles, once per (versions of its layers, dtype, sample shapes),
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
from typing import Any, Callable, Sequence

import numpy as np

from fastdense import _kernels, activations, ops
from fastdense.layers.activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from fastdense.layers.base import WEIGHTS_LOCK
from fastdense.layers.core import Activation, Dense, Dropout
from fastdense.layers.einsum_dense import EinsumDense
from fastdense.layers.embedding import Embedding, check_ids
from fastdense.layers.merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from fastdense.layers.normalization import LayerNormalization, RMSNormalization, UnitNormalization
from fastdense.layers.reshaping import Flatten, Reshape
from fastdense.models import plan_fold, plan_layers
from fastdense.models.node_steps import ARG_LIST, ARG_TENSOR, NodeStep
from fastdense.models.plan_steps import PlanBuffer, PlanStep

__all__ = ["CompiledPlan", "PlanCache", "compile_plan", "run_compiled"]

# step kinds and tuning constants come from the kernel (csrc/fd_plan.h, csrc/fd_tune.h via _kernels.pxd)
_DENSE, _ACT, _CONCAT, _COPY = _kernels.FD_STEP_DENSE, _kernels.FD_STEP_ACT, _kernels.FD_STEP_CONCAT, _kernels.FD_STEP_COPY
_NORM, _AFFINE, _PRELU, _GATHER = (_kernels.FD_STEP_NORM, _kernels.FD_STEP_AFFINE, _kernels.FD_STEP_PRELU,
                                   _kernels.FD_STEP_GATHER)
_MERGES = {Add: _kernels.FD_STEP_ADD, Subtract: _kernels.FD_STEP_SUB, Multiply: _kernels.FD_STEP_MUL,
           Average: _kernels.FD_STEP_AVG, Maximum: _kernels.FD_STEP_MAX, Minimum: _kernels.FD_STEP_MIN}

_ROWS_PER_BLOCK = _kernels.FD_TUNE_PLAN_ROWS_PER_BLOCK        # GEMM rows per block
_BLOCK_BYTES = _kernels.plan_block_bytes()                   # intermediates of one block (by L2 size)
_BLAS_BLOCK_BYTES = _kernels.FD_TUNE_PLAN_BLAS_BLOCK_BYTES    # multi-threaded BLAS: whole batches up to this
_SMALL_BATCH = _kernels.FD_TUNE_PLAN_SMALL_BATCH              # packed plans: batches up to this size split ...
_SMALL_BATCH_WORK = _kernels.FD_TUNE_PLAN_SMALL_BATCH_WORK    # ... by samples from this many multiply-adds


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


class _Unsupported(Exception):
    """The model has something the plan does not cover: run it layer by layer."""


class _LastRun:
    """A thread's last run_one layout: m samples in blocks of ``block`` over ``tasks`` tasks."""

    __slots__ = ("m", "block", "tasks", "scratch")

    def __init__(self, m: int, block: int, tasks: int, scratch: np.ndarray) -> None:
        self.m, self.block, self.tasks, self.scratch = m, block, tasks, scratch


class CompiledPlan:
    """A model compiled for one dtype and one set of per-sample input shapes."""

    def __init__(self, plan: Any, dtype: np.dtype, out_shapes: list[tuple], sample_elems: int,
                 block: int, packed: bool = False, macs_per_sample: int = 0,
                 ids: dict[int, tuple[int, str]] | None = None, records_losses: bool = False) -> None:
        self._plan = plan
        # a layer records activity losses on calls: a call (not predict) must run layer by layer
        self.records_losses = records_losses
        self._ids = ids or {}                    # input index -> (table rows, embedding) for gathers
        self._id_type = np.dtype(np.int32) if dtype == _F32 else np.dtype(np.int64)   # the gathers' ids
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
                    # per call instead of one per layer), in equal shares: at batch 32 on avx512
                    # 16 rows a core take 120-130 us against 137-150 us for 18 (multiples of
                    # the 6-row tile), on avx2 238 against 250 us (see docs/gemm.md)
                    block = -(-m // cores)
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
            self._local.last = None
        self._plan.run(arrays, outputs, m, block, scratch, tasks)

    def run_one(self, x: np.ndarray) -> np.ndarray:
        """``run([x])[0]`` for a plan with one input and one output, with fewer Python steps
        (the shortcut of predict and calls): a packed plan reuses this thread's last (m, block,
        tasks, scratch) while m stays the same (its layout depends on m alone)."""
        m = x.shape[0]
        y = np.empty((m,) + self.out_shapes[0], self.dtype)
        last = getattr(self._local, "last", None)
        if last is None or last.m != m:
            if m:
                self._execute([x], [y], m)   # grows this thread's scratch as needed
                if self._packed:
                    self._local.last = _LastRun(m, *self._layout(m), self._local.scratch)
            return y
        self._plan.run_one(x, y, m, last.block, last.scratch, last.tasks)
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
            arrays = arrays if type(arrays) is list else list(arrays)
            if self._ids:
                given = arrays
                arrays = self._ids_as_plan_elements(arrays, check=out is not None)
                try:
                    self._execute(arrays, outputs, m)
                except ValueError:   # the gather met an id outside its table: name it
                    self._ids_as_plan_elements(given, check=True)
                    raise
            else:
                self._execute(arrays, outputs, m)
        return outputs

    def _ids_as_plan_elements(self, arrays: list[np.ndarray], check: bool) -> list[np.ndarray]:
        """Integer id inputs stored as the plan's elements (int32 bits in a float32 plan, int64 in
        a float64 one) for the gather steps, which check every id against the table. Ids that the
        conversion could wrap into range (wider than int32 in a float32 plan) are checked here
        first, as are all ids when ``check`` (an ``out=`` array must not be half-written)."""
        arrays = list(arrays)
        id_type = self._id_type
        for j, (rows, owner) in self._ids.items():
            ids = arrays[j]
            if ids.dtype is not id_type:
                if ids.dtype != id_type:
                    if check or not np.can_cast(ids.dtype, id_type):
                        check_ids(ids, rows, owner)
                    ids = ids.astype(id_type)
                elif check:
                    check_ids(ids, rows, owner)
            elif check:
                check_ids(ids, rows, owner)
            arrays[j] = ids.view(self.dtype)
        return arrays


def _layer_steps(model: Any) -> tuple[list[NodeStep], list[int], list[int]]:
    """(steps, input slots, output slots) of a built model, in execution order."""
    program = getattr(model, "_program", None)
    if program is None:
        raise _Unsupported("model has no compiled graph")
    return program.steps, program.input_slots, program.output_slots


def _kernel_activation(function: Any) -> activations.KernelActivation:
    """Kernel form of a layer's activation (the op's own conversion)."""
    if not activations.is_fused(function):
        raise _Unsupported("activation is a Python callable")
    return ops._spec(function)


def _kernel_plan(steps: list[PlanStep], buffers: list[PlanBuffer], glu_offset: int, sample_elems: int,
                 dtype: np.dtype) -> Any:
    """The native plan; a model beyond the kernel's limits is not compilable (a real
    MemoryError propagates)."""
    try:
        return _kernels.Plan(steps, buffers, glu_offset, sample_elems, dtype)
    except _kernels.PlanLimitError as error:
        raise _Unsupported(str(error)) from None


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


class _PlanBuilder:
    """The buffers and steps of a plan being compiled for one dtype."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.buffers: list[PlanBuffer] = []     # offsets are filled in at the end
        self.shapes: list[tuple] = []           # per-sample shape of each buffer
        self.steps: list[PlanStep] = []
        self.glu_elems = 0                      # glu scratch per sample
        self.max_rows_per_sample = 1
        # issue 13 (folding and fusing, docs/layers.md):
        self.sole_reader = False                # the step being emitted is its sources' only reader
        self.linear_dense: dict[int, int] = {}  # buffer -> index of the linear Dense step that wrote it
        self.dense_out: dict[int, int] = {}     # buffer -> index of the Dense step that wrote it
        self.norm_out: dict[int, int] = {}      # buffer -> index of the NORM step that wrote it
        self.pending: dict[int, Any] = {}       # buffer -> FeatureAffine it waits for (not written yet)
        self.pending_src: dict[int, int] = {}   # such a buffer -> the buffer the map applies to
        self.id_inputs: dict[int, int] = {}     # buffer of an integer model input -> input index
        self.ids: dict[int, tuple[int, str]] = {}   # input index -> (table rows, Embedding) of its gather

    def new_buffer(self, shape: tuple, input_index: int = -1) -> int:
        self.buffers.append(PlanBuffer(math.prod(shape), input_index))
        self.shapes.append(shape)
        return len(self.buffers) - 1

    def add(self, step: PlanStep, out_shape: tuple) -> tuple[int, tuple]:
        """Append ``step`` writing a new buffer of per-sample ``out_shape``; (buffer, shape)."""
        dst = self.new_buffer(out_shape)
        self.steps.append(step._replace(dst=dst))
        if step.kind in (_DENSE, _kernels.FD_STEP_QDENSE):
            self.dense_out[dst] = len(self.steps) - 1
        return dst, out_shape

    def absorbing_dense(self, src: int) -> int | None:
        """The step of a linear Dense that wrote ``src`` for the step being emitted alone, which
        can take that step's elementwise work into its own weights or epilogue; else None."""
        return self.linear_dense.get(src) if self.sole_reader else None

    def into_norm(self, src: int, function: Any) -> bool:
        """Give the element-wise activation ``function`` of the step being emitted alone to the
        NORM step that wrote ``src`` (it then writes ``function(norm(x))``); False when it cannot."""
        i = self.norm_out.get(src) if self.sole_reader else None
        if i is None or self.steps[i].act is not None or activations.resolve(function).rowwise:
            return False
        self.steps[i] = self.steps[i]._replace(act=_kernel_activation(function))
        del self.norm_out[src]
        return True

    def pend(self, src: int, affine: Any, shape: tuple) -> tuple[int, tuple]:
        """A buffer that will hold ``affine(src)``: folded into the Dense that reads it, or
        written by an affine step when something else does (:meth:`materialize`)."""
        if src in self.pending:
            affine, src = plan_fold.compose(self.pending[src], affine), self.pending_src[src]
        dst = self.new_buffer(shape)
        self.pending[dst], self.pending_src[dst] = affine, src
        return dst, shape

    def materialize(self, buf: int) -> None:
        """Write a pending buffer with an affine step (no Dense reads it to fold the map in)."""
        affine = self.pending.pop(buf, None)
        if affine is not None:
            shape = self.shapes[buf]
            self.steps.append(PlanStep(_AFFINE, (self.pending_src.pop(buf),), buf, rows=math.prod(shape[:-1]),
                                       n=shape[-1], w=np.ascontiguousarray(affine.scale, np.float64),
                                       bias=np.ascontiguousarray(affine.offset, np.float64)))

    def dense_weights(self, kernel: np.ndarray, bias: np.ndarray) -> tuple[Any, np.ndarray]:
        """Folded float64 weights in the plan dtype, the kernel packed when it helps."""
        w = np.ascontiguousarray(kernel, dtype=self.dtype)
        w.flags.writeable = False
        if self.dtype == _F32 and ops.packed_available():
            w = ops.PackedKernel(w)
        return w, np.ascontiguousarray(bias, dtype=self.dtype)


# One emitter per layer type the plan takes (exact types: a subclass may compute something
# else): emit(builder, layer, source buffers, their per-sample shapes) -> (buffer, per-sample
# shape) of the layer's output. A new layer kind is an emitter and a row in _EMITTERS.


def _emit_dense(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    if layer._quant is not None:
        return _emit_quantized_dense(b, layer, srcs, in_shapes)
    (shape,) = in_shapes
    values = layer._values          # one read: a consistent (kernel, bias) pair
    kernel, bias = values[0], (values[1] if layer.use_bias else None)
    if kernel.dtype != b.dtype or (bias is not None and bias.dtype != b.dtype):
        raise _Unsupported("layer dtype differs from the plan dtype")
    if not shape or shape[-1] != kernel.shape[0] or len(values) != 1 + layer.use_bias + 2 * layer.lora_enabled:
        raise _Unsupported("Dense input does not match its kernel")
    act = _kernel_activation(layer.activation)
    n = kernel.shape[1]
    if act.halves and n % 2:
        raise _Unsupported("glu on an odd number of units")
    t = math.prod(shape[:-1])
    if act.halves:
        b.glu_elems = max(b.glu_elems, t * n)
    b.max_rows_per_sample = max(b.max_rows_per_sample, t)
    packed = layer._pack(values)    # the layer's packed kernel for these weights (LoRA: merged)
    affine = b.pending.get(srcs[0])
    if affine is not None:          # an affine layer before this Dense: folded into its weights
        w, bias = b.dense_weights(*plan_fold.fold_before(_plain(packed), bias, affine))
        srcs = (b.pending_src[srcs[0]],)
    else:
        w = packed if type(packed) is ops.PackedKernel else np.ascontiguousarray(packed)
        bias = None if bias is None else np.ascontiguousarray(bias)
    step = PlanStep(_DENSE, srcs, -1, rows=t, k=kernel.shape[0], n=n, w=w, bias=bias, act=act)
    dst, out_shape = b.add(step, shape[:-1] + (n // 2 if act.halves else n,))
    if act.code == _kernel_activation(activations.linear).code:
        b.linear_dense[dst] = len(b.steps) - 1
    return dst, out_shape


def _plain(kernel: Any) -> np.ndarray:
    """The (k, n) array of a plan kernel (a PackedKernel keeps its plain copy)."""
    return kernel.kernel if type(kernel) is ops.PackedKernel else kernel


def _emit_quantized_dense(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]
                          ) -> tuple[int, tuple]:
    """A Keras int8 / int4 Dense: its QuantizedKernel, run by the integer kernels (float32 plans).
    An affine map pending on its input is written first: Keras quantizes the Dense's input as it
    arrives, so the map cannot move into the integer weights."""
    (shape,) = in_shapes
    b.materialize(srcs[0])
    values = layer._values          # one read: consistent weights
    qkernel = layer._pack(values)   # the layer's QuantizedKernel for these weights
    bias = layer._bias_of(values)
    if b.dtype != np.float32 or not qkernel.native:
        raise _Unsupported("quantized Dense outside a float32 plan or without an integer kernel")
    if layer.lora_enabled and any(v.any() for v in values[layer._lora_at():layer._lora_at() + 2]):
        raise _Unsupported("LoRA on a quantized Dense")   # (a .keras file's LoRA loads as zeros)
    k, n = qkernel.shape
    if not shape or shape[-1] != k:
        raise _Unsupported("Dense input does not match its kernel")
    act = _kernel_activation(layer.activation)
    if act.halves and n % 2:
        raise _Unsupported("glu on an odd number of units")
    t = math.prod(shape[:-1])
    if act.halves:
        b.glu_elems = max(b.glu_elems, t * n)
    b.max_rows_per_sample = max(b.max_rows_per_sample, t)
    step = PlanStep(_kernels.FD_STEP_QDENSE, srcs, -1, rows=t, k=k, n=n, w=qkernel,
                    bias=None if bias is None else np.ascontiguousarray(bias), act=act)
    return b.add(step, shape[:-1] + (n // 2 if act.halves else n,))


def _emit_activation(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]
                     ) -> tuple[int, tuple]:
    (shape,) = in_shapes
    act = _kernel_activation(layer.activation)
    if not shape or (act.halves and shape[-1] % 2):
        raise _Unsupported("activation shape")
    if b.into_norm(srcs[0], layer.activation):
        return srcs[0], shape
    step = PlanStep(_ACT, srcs, -1, rows=math.prod(shape[:-1]), n=shape[-1], act=act)
    return b.add(step, shape[:-1] + (shape[-1] // 2 if act.halves else shape[-1],))


def _emit_view(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    """Dropout (inference), Flatten, Reshape: the same memory with a new per-sample shape."""
    (shape,) = in_shapes
    if type(layer) is Flatten:
        if layer.data_format == "channels_first" and len(shape) > 1:
            raise _Unsupported("channels_first Flatten moves data")
        return srcs[0], (math.prod(shape),)
    if type(layer) is Reshape:
        return srcs[0], tuple(layer.compute_output_shape((None,) + shape)[1:])
    return srcs[0], shape


def _emit_merge(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    if len(set(in_shapes)) != 1 or len(srcs) < 2 or (type(layer) is Subtract and len(srcs) != 2):
        raise _Unsupported("merge with broadcasting")
    return b.add(PlanStep(_MERGES[type(layer)], srcs, -1, n=math.prod(in_shapes[0])), in_shapes[0])


def _emit_concat(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    rank = len(in_shapes[0]) + 1
    if layer.axis not in (-1, rank - 1) or any(len(s) != rank - 1 for s in in_shapes) \
            or len({s[:-1] for s in in_shapes}) != 1 or rank < 2:
        raise _Unsupported("concatenation off the last axis")
    cols = tuple(s[-1] for s in in_shapes)
    out_shape = in_shapes[0][:-1] + (sum(cols),)
    return b.add(PlanStep(_CONCAT, srcs, -1, rows=math.prod(out_shape[:-1]), n=sum(cols), cols=cols), out_shape)


# ---- issue 13: the other layers of Dense networks (docs/layers.md) ----

def _emit_identity(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    """Noise, spatial dropout, ActivityRegularization, Identity: no step at all."""
    return srcs[0], in_shapes[0]


def _emit_activation_layer(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]
                           ) -> tuple[int, tuple]:
    """ReLU, LeakyReLU, ELU, last-axis Softmax: into the epilogue of the linear Dense before them."""
    function = plan_layers.activation_function(layer)
    if function is None:
        raise _Unsupported(f"{type(layer).__name__} off the last axis")
    act = _kernel_activation(function)
    if b.into_norm(srcs[0], function):
        return srcs[0], in_shapes[0]
    i = b.absorbing_dense(srcs[0])
    if i is None or act.halves:
        (shape,) = in_shapes
        return b.add(PlanStep(_ACT, srcs, -1, rows=math.prod(shape[:-1]), n=shape[-1], act=act), shape)
    b.steps[i] = b.steps[i]._replace(act=act)
    del b.linear_dense[srcs[0]]
    return srcs[0], in_shapes[0]


def _emit_affine(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    """BatchNormalization, Normalization, Rescaling: folded into the Dense before or after them."""
    (shape,) = in_shapes
    affine = plan_fold.affine_of(layer, shape[-1] if shape else 0, len(shape))
    if affine is None:
        raise _Unsupported("an affine layer off the last axis")
    i = b.absorbing_dense(srcs[0])
    if i is not None:
        step = b.steps[i]
        w, bias = b.dense_weights(*plan_fold.fold_after(_plain(step.w), step.bias, affine))
        b.steps[i] = step._replace(w=w, bias=bias)
        return srcs[0], shape
    return b.pend(srcs[0], affine, shape)


def _emit_norm(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    """Layer/RMS/UnitNormalization over the last axis (or the last few): a row-wise step. In place
    on the rows of the Dense before it when nothing else reads them: right after that Dense, the
    kernel runs it as the Dense's epilogue (csrc/fd_plan.c ``fused_norm``)."""
    (shape,) = in_shapes
    norm = plan_layers.norm_step(layer, shape, b.dtype)
    if norm is None:
        raise _Unsupported("a normalization over axes other than the last ones")
    step = PlanStep(_NORM, srcs, -1, rows=norm.rows, n=norm.n, w=norm.gamma, bias=norm.beta, mode=norm.kind,
                    eps=norm.eps)
    if b.sole_reader and srcs[0] in b.dense_out:
        del b.dense_out[srcs[0]]
        b.linear_dense.pop(srcs[0], None)
        b.steps.append(step._replace(dst=srcs[0]))
        dst = srcs[0]
    else:
        dst, shape = b.add(step, shape)
    b.norm_out[dst] = len(b.steps) - 1
    return dst, shape


def _emit_prelu(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    (shape,) = in_shapes
    alpha = plan_layers.prelu_alpha(layer, shape, b.dtype)
    if alpha is None:
        raise _Unsupported("PReLU alpha does not fit the input")
    return b.add(PlanStep(_PRELU, srcs, -1, n=alpha.size, w=alpha), shape)


def _emit_einsum_dense(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]
                       ) -> tuple[int, tuple]:
    form = plan_layers.einsum_dense_step(layer, in_shapes[0], b.dtype)
    if form is None:
        raise _Unsupported("an EinsumDense whose bias or activation is not fused")
    act = _kernel_activation(form.activation)
    if act.halves:
        raise _Unsupported("glu after an EinsumDense")
    b.max_rows_per_sample = max(b.max_rows_per_sample, form.rows)
    bias = None if form.bias is None else np.ascontiguousarray(form.bias, b.dtype)
    if type(form.kernel) is ops.QuantizedKernel:   # a quantized EinsumDense: the quantized Dense's step
        if b.dtype != np.float32 or not form.kernel.native:
            raise _Unsupported("quantized EinsumDense outside a float32 plan or without an integer kernel")
        b.materialize(srcs[0])   # inputs are quantized as they arrive: no affine map folds into them
        return b.add(PlanStep(_kernels.FD_STEP_QDENSE, srcs, -1, rows=form.rows, k=form.k, n=form.n,
                              w=form.kernel, bias=bias, act=act), form.out_shape)
    w = form.kernel if type(form.kernel) is ops.PackedKernel else np.ascontiguousarray(form.kernel, b.dtype)
    return b.add(PlanStep(_DENSE, srcs, -1, rows=form.rows, k=form.k, n=form.n, w=w, bias=bias, act=act),
                 form.out_shape)


def _emit_embedding(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]) -> tuple[int, tuple]:
    """Rows of the table gathered for the ids of an integer model input."""
    (shape,) = in_shapes
    j = b.id_inputs.get(srcs[0])
    values = layer._values
    quantized = layer.quantization_mode is not None   # the table stays quantized (csrc/fd_gather.c)
    if j is None or not b.sole_reader or (np.dtype(layer.dtype) if quantized else values[0].dtype) != b.dtype:
        raise _Unsupported("an Embedding not fed by an integer model input of its own")
    b.ids[j] = (layer.input_dim, layer._owner())
    if quantized:
        step = PlanStep(_GATHER, srcs, -1, rows=math.prod(shape), k=layer.input_dim, n=layer.output_dim,
                        w=layer._quantized_table(values), mode=_kernels.FD_GATHER_QUANTIZED)
    else:
        step = PlanStep(_GATHER, srcs, -1, rows=math.prod(shape), k=layer.input_dim, n=layer.output_dim,
                        w=np.ascontiguousarray(values[0]))
    return b.add(step, shape + (layer.output_dim,))


def _emit_global_pool(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]
                      ) -> tuple[int, tuple]:
    """Global pooling of channels-last samples: the mean or maximum of a sample's rows."""
    (shape,) = in_shapes
    if layer.data_format != "channels_last" or len(shape) != layer._pool_dims + 1:
        raise _Unsupported("global pooling of channels_first samples")
    out_shape = ((1,) * layer._pool_dims if layer.keepdims else ()) + shape[-1:]
    step = PlanStep(_kernels.FD_STEP_POOL, srcs, -1, rows=math.prod(shape[:-1]), n=shape[-1],
                    mode=int(layer.statistic == "max"))
    return b.add(step, out_shape)


def _emit_concat_carrying(b: _PlanBuilder, layer: Any, srcs: tuple[int, ...], in_shapes: list[tuple]
                          ) -> tuple[int, tuple]:
    """A last-axis Concatenate of pending buffers: concatenates what they apply to and carries
    their maps to its output (a Dense after it folds them all)."""
    parts = [b.pending.get(s) for s in srcs]
    raw = tuple(b.pending_src.get(s, s) for s in srcs)
    dst, shape = _emit_concat(b, layer, raw, in_shapes)
    if all(p is None for p in parts):
        return dst, shape
    return b.pend(dst, plan_fold.concatenate(parts, [sh[-1] for sh in in_shapes]), shape)


_ISSUE13_EMITTERS: dict[type, Callable[[_PlanBuilder, Any, tuple[int, ...], list[tuple]], tuple[int, tuple]]] = {
    **{cls: _emit_identity for cls in plan_layers.IDENTITY_LAYERS},
    **{cls: _emit_activation_layer for cls in (ReLU, LeakyReLU, ELU, Softmax)},
    **{cls: _emit_affine for cls in plan_fold.FOLDABLE},
    **{cls: _emit_norm for cls in (LayerNormalization, RMSNormalization, UnitNormalization)},
    PReLU: _emit_prelu,
    EinsumDense: _emit_einsum_dense,
    Embedding: _emit_embedding,
    **{cls: _emit_global_pool for cls in plan_layers.GLOBAL_POOLING},
}
# layers that read a pending buffer as it is (the rest get it written first)
_READS_PENDING = {Dense, Concatenate, *plan_layers.IDENTITY_LAYERS, *plan_fold.FOLDABLE}


_EMITTERS: dict[type, Callable[[_PlanBuilder, Any, tuple[int, ...], list[tuple]], tuple[int, tuple]]] = {
    Dense: _emit_dense,
    Activation: _emit_activation,
    Dropout: _emit_view,
    Flatten: _emit_view,
    Reshape: _emit_view,
    Concatenate: _emit_concat_carrying,
    **{cls: _emit_merge for cls in _MERGES},
    **_ISSUE13_EMITTERS,
}


def _compile(model: Any, sample_shapes: list[tuple], dtype: np.dtype, record_losses: bool) -> CompiledPlan:
    if any(0 in shape for shape in sample_shapes):
        # empty samples (a variable axis of length 0: Input((None, 4)) given (m, 0, 4)) have
        # nothing to run; the kernel's plan refuses steps of zero rows
        raise _Unsupported("samples of zero elements")
    steps, input_slots, output_slots = _layer_steps(model)
    b = _PlanBuilder(dtype)
    slot_buf: dict[int, int] = {}       # slot -> buffer
    slot_shape: dict[int, tuple] = {}   # slot -> per-sample shape (buffers can be reshaped views)
    model_inputs = list(getattr(model, "inputs", None) or [])
    for j, (s, shape) in enumerate(zip(input_slots, sample_shapes)):
        slot_buf[s] = b.new_buffer(shape, j)
        slot_shape[s] = shape
        if j < len(model_inputs) and np.dtype(model_inputs[j].dtype).kind in "iub":
            b.id_inputs[slot_buf[s]] = j     # ids: only an Embedding's gather reads them
    reads: dict[int, int] = dict.fromkeys(output_slots, 1)   # how often each slot is read
    for step in steps:
        for s in (step.ref if step.arg_kind == ARG_LIST else [step.ref] if step.arg_kind == ARG_TENSOR else []):
            reads[s] = reads.get(s, 0) + 1

    for step in steps:
        layer = step.layer
        # (Keras writes mask=None and training=False into node configs: nothing to compute)
        if step.extra or step.symbolic_extra or len(step.out_slots) != 1 or any(
                key not in ("mask", "training") or value not in (None, False) for key, value in step.kwargs.items()):
            raise _Unsupported("layer call with extra arguments")
        if record_losses and getattr(layer, "_activity_regularizer", None) is not None:
            raise _Unsupported("activity regularizer records the outputs")
        if step.arg_kind == ARG_TENSOR:
            srcs = [step.ref]
        elif step.arg_kind == ARG_LIST:
            srcs = list(step.ref)
        else:
            raise _Unsupported("nested inputs")
        emit = _EMITTERS.get(type(layer))
        if emit is None:
            raise _Unsupported(f"layer type {type(layer).__name__}")
        out_slot = step.out_slots[0]
        if type(layer) not in _READS_PENDING:
            for s in srcs:
                b.materialize(slot_buf[s])
        if type(layer) is not Embedding and any(slot_buf[s] in b.id_inputs for s in srcs):
            raise _Unsupported("integer inputs that feed something other than an Embedding")
        b.sole_reader = all(reads.get(s, 0) == 1 for s in srcs)
        slot_buf[out_slot], slot_shape[out_slot] = emit(
            b, layer, tuple(slot_buf[s] for s in srcs), [slot_shape[s] for s in srcs])
    for s in output_slots:
        if slot_buf[s] in b.id_inputs:
            raise _Unsupported("an integer input that is also an output")
        b.materialize(slot_buf[s])

    # outputs: the buffer that holds each output becomes (or is copied into) the output array
    buffers = b.buffers
    out_shapes = []
    for j, s in enumerate(output_slots):
        src = slot_buf[s]
        out_shapes.append(slot_shape[s])
        if buffers[src].input_index < 0 and buffers[src].output_index < 0:
            buffers[src] = buffers[src]._replace(output_index=j)
            continue
        dst, _ = b.add(PlanStep(_COPY, (src,), -1, n=buffers[src].width), slot_shape[s])
        buffers[dst] = buffers[dst]._replace(output_index=j)

    # intermediates get consecutive places in a task's scratch, the glu scratch after them
    offset = 0
    for i, buf in enumerate(buffers):
        if buf.input_index < 0 and buf.output_index < 0:
            buffers[i] = buf._replace(offset=offset)
            offset += buf.width
    glu_offset = offset
    per_sample = offset + b.glu_elems
    block = max(1, _ROWS_PER_BLOCK // b.max_rows_per_sample)
    block = max(block, min(_BLOCK_BYTES // max(per_sample * dtype.itemsize, 1), 4 * block))
    sample_elems = max(per_sample, 1)
    plan = _kernel_plan(b.steps, buffers, glu_offset, sample_elems, dtype)
    dense = [step for step in b.steps if step.kind in (_DENSE, _kernels.FD_STEP_QDENSE)]
    # packed and quantized kernels run on any thread: blocks spread over fastdense's pool
    packed = bool(dense) and all((type(step.w) is ops.PackedKernel and step.w.packed is not None)
                                 or type(step.w) is ops.QuantizedKernel for step in dense)
    macs = sum(step.rows * step.k * step.n for step in dense)
    records = any(getattr(step.layer, "_activity_regularizer", None) is not None for step in steps)
    return CompiledPlan(plan, dtype, out_shapes, sample_elems, block, packed, macs, b.ids, records)


def check_out(out: Sequence[Any], shapes: Sequence[tuple], dtypes: Sequence[np.dtype],
              arrays: Sequence[np.ndarray]) -> None:
    """Validate ``predict(out=...)`` buffers (one per output, of these shapes and dtypes) before
    anything is written."""
    if len(out) != len(shapes):
        raise ValueError(f"predict: out must hold {len(shapes)} arrays (one per output), got {len(out)}")
    for o, expected, dtype in zip(out, shapes, dtypes):
        if not isinstance(o, np.ndarray) or o.shape != tuple(expected) or o.dtype != dtype \
                or not o.flags.c_contiguous or not o.flags.writeable:
            got = f"shape {o.shape}, dtype {o.dtype}" if isinstance(o, np.ndarray) else type(o).__name__
            raise ValueError(f"predict: out must be a writeable C-contiguous array of shape "
                             f"{tuple(expected)} and dtype {dtype}, got {got}")
        for a in arrays:
            if np.shares_memory(o, a):
                raise ValueError("predict: out must not overlap the inputs")


class LastPlan:
    """The plan of a model's last one-input, one-output run, for the shortcut of ``predict`` and
    of calls (:meth:`PlanCache.shortcut`)."""

    __slots__ = ("generation", "dtype", "ndim", "tail", "plan")

    def __init__(self, generation: int, dtype: np.dtype, ndim: int, tail: tuple, plan: CompiledPlan) -> None:
        self.generation = generation     # the cache's generation when the plan was looked up
        self.dtype = dtype
        self.ndim = ndim
        self.tail = tail                 # per-sample input shape
        self.plan = plan


# ``cache.shortcut(x, call).run_one(x)`` in one native step, or None when there is no shortcut:
# what ``predict(x)`` and calls try first (a batch-1 call spent most of its Python time in those
# two methods: 0.97 us a call of a 4 x 4 Dense before, 0.63 us now; docs/architecture.md)
run_shortcut: Callable[[Any, Any, bool], np.ndarray | None] = _kernels.plan_shortcut_run


class PlanCache:
    """One model's compiled plans, by (dtype, record_losses, per-sample input shapes).

    The plans are valid while the model's own layers keep their versions: when a plan is
    compiled, the cache asks the model and each of its layers (nested models' layers too) to
    tell it about changes (``Layer._add_observer``, a weak reference), and their ``set_weights``,
    ``add_weight``, compiled-in settings (``layer.activation = ...``) and graph changes call
    :meth:`invalidate`. So updating one model never makes another recompile, and a layer
    shared by several models invalidates each of them. Invalidation and compilation both
    happen under the weights lock; a lock-free reader that raced with an invalidation sees a
    changed :attr:`generation` and does not keep what it read. Models drop it when pickled.
    """

    __slots__ = ("plans", "last", "generation", "__weakref__")

    def __init__(self) -> None:
        self.plans: dict[tuple, CompiledPlan | bool] = {}   # False: run layer by layer
        self.last: LastPlan | None = None
        self.generation = 0

    def shortcut(self, x: Any, call: bool) -> CompiledPlan | None:
        """The plan of the last run when ``x`` is an array like its input and no layer of the
        model changed since (see the class docstring), so ``predict(x)`` (or, ``call``, the model
        called on ``x``) can run it with no other Python step; else None. The caller checks
        that the model has a single output."""
        return _kernels.plan_shortcut(self, x, call)   # in C, with run_shortcut's test

    def invalidate(self) -> None:
        """Forget every plan (a layer the plans were compiled from changed)."""
        self.generation += 1
        self.plans = {}
        self.last = None

    def compile(self, model: Any, key: tuple, dtype: np.dtype, record_losses: bool) -> CompiledPlan | bool:
        """The plan for ``key``, compiled now and kept (False: the model runs layer by layer).
        Called under the weights lock."""
        entry = self.plans.get(key)
        if entry is None:
            for layer in _watched_layers(model):
                layer._add_observer(self)
            entry = compile_plan(model, key[2:], dtype, record_losses) or False
            self.plans[key] = entry
        return entry


def _watched_layers(model: Any) -> list:
    """The model and every layer whose weights or settings its plans read, nested models' too."""
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        found.append(layer)
        inner = getattr(layer, "_program", None)
        if inner is not None:
            stack.extend(step.layer for step in inner.steps)
    return found


def run_compiled(model: Any, arrays: Sequence[np.ndarray], out: Sequence[np.ndarray] | None = None,
                 record_losses: bool = False) -> list[np.ndarray] | None:
    """Run ``model`` on standardized input arrays through its cached plan; None to fall back.

    Plans are cached per (dtype, per-sample shapes) in the model's :class:`PlanCache`. A plan
    holds the weight arrays it was compiled from, taken under the weights lock that
    ``set_weights`` holds, so calls see the old weights or the new ones, never a mix; a
    ``set_weights`` on one of the model's layers makes its next call compile a new plan.
    """
    first = arrays[0]
    dtype = first.dtype
    if dtype is not _F32 and dtype is not _F64 and dtype != _F32 and dtype != _F64:
        # integer ids (for Embedding gathers) next to float inputs, or alone: float32 plans then
        dtype = next((a.dtype for a in arrays if a.dtype.kind == "f"), _F32)
        if dtype != _F32 and dtype != _F64:
            return None
    char = dtype.char
    if first.ndim < 1 or not first.flags.c_contiguous:
        return None
    if len(arrays) == 1 and first.dtype is dtype:
        key: tuple = (char, record_losses, first.shape[1:])
    else:
        m = first.shape[0]
        chars = char
        shapes = []
        for a in arrays:
            d, shape = a.dtype, a.shape
            if (d is not dtype and d != dtype and d.kind not in "iu") or not shape or shape[0] != m \
                    or not a.flags.c_contiguous:
                return None
            chars += d.char
            shapes.append(shape[1:])
        # the array dtypes are part of the key: ids arrive as integers, numbers in the plan dtype
        key = (chars, record_losses, *shapes)
    cache = model._plan_cache
    generation = cache.generation     # read before the plan: see PlanCache
    entry = cache.plans.get(key)
    if entry is None:
        with WEIGHTS_LOCK:
            generation = cache.generation
            entry = cache.compile(model, key, dtype, record_losses)
    if entry is False:
        return None
    if len(arrays) == 1 and len(entry.out_shapes) == 1 and first.dtype is dtype:
        # for the shortcut of predict and calls (PlanCache.shortcut): the plan of the last one-input
        # run whose input was in the plan dtype (integer ids, which the plan reads as its elements
        # after _ids_as_plan_elements, never are: float ids must then be converted, not read as ids)
        cache.last = LastPlan(generation, dtype, first.ndim, first.shape[1:], entry)
    if out is not None:
        m = first.shape[0]
        check_out(out, [(m,) + shape for shape in entry.out_shapes], [dtype] * len(entry.out_shapes), arrays)
    return entry.run(arrays, out)
