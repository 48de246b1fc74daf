"""The records a compiled model plan is made of: what `fastdense._kernels.Plan` reads.

:mod:`fastdense.models.plan` turns a model's layers into a list of :class:`PlanStep` over
numbered per-sample buffers (:class:`PlanBuffer`); ``_kernels.Plan`` reads the fields by
name. A new step kind adds its ``FD_STEP_*`` value in C and, when it needs data, new
defaulted fields at the end of :class:`PlanStep`.

    >>> PlanStep(kind=0, srcs=(0,), dst=1, k=3, n=2).rows
    1
    >>> PlanBuffer(width=3, input_index=0)
    PlanBuffer(width=3, input_index=0, output_index=-1, offset=0)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # annotations only: the records import nothing at run time
    from fastdense.activations import KernelActivation

__all__ = ["PlanStep", "PlanBuffer"]


class PlanStep(NamedTuple):
    """One step of a plan: ``dst = kind(srcs)`` for every sample of a block."""

    kind: int                      # _kernels.FD_STEP_*
    srcs: tuple[int, ...]          # source buffers
    dst: int                       # destination buffer
    rows: int = 1                  # rows per sample (dense, act, concat)
    k: int = 0                     # dense: features in
    n: int = 0                     # dense: features out (before glu halves); act: columns;
                                   # merge/copy: width; concat: out columns
    cols: tuple[int, ...] = ()     # concat: columns of each source
    w: Any = None                  # dense: ndarray or PackedKernel; gather: table or QuantizedTable
    bias: Any = None               # dense: ndarray or None
    act: KernelActivation | None = None   # dense, act; norm: an element-wise activation after it
    mode: int = 0                  # norm: the fd_norm_kind (csrc/fd_norm.h); gather: fd_gather_kind
    eps: float = 0.0               # norm: epsilon


class PlanBuffer(NamedTuple):
    """A per-sample buffer of a plan: a model input, a model output or an intermediate."""

    width: int                     # elements per sample
    input_index: int = -1          # model input it is, or -1
    output_index: int = -1         # model output it is, or -1
    offset: int = 0                # intermediates: offset in a task's scratch (elements per sample)
