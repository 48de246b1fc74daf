# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython glue: numpy arrays in, BLAS from scipy.linalg.cython_blas, csrc calls, nogil."""

from collections import namedtuple

import numpy as np
cimport numpy as cnp
from libc.stddef cimport ptrdiff_t
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

cnp.import_array()

# The cpdef enums of _kernels.pxd (values from the C headers), member by member as module
# attributes too: _kernels.FD_STEP_DENSE, _kernels.FD_F32, _kernels.FD_TUNE_PLAN_ROWS_PER_BLOCK, ...
for _enum in (fd_status, fd_dtype, fd_step_kind, fd_gather_kind, fd_tune):
    globals().update(_enum.__members__)
del _enum


class PlanLimitError(ValueError):
    """A plan exceeds a fixed limit of the C code (fastdense then runs the model layer by layer)."""


def _status_error(int rc, str what):
    """The exception for a csrc status code (fd_status.h), None for FD_OK."""
    if rc == FD_OK:
        return None
    if rc == FD_ERR_NOMEM:
        return MemoryError(f"fastdense: {what}: out of memory")
    if rc == FD_ERR_LIMIT:
        return PlanLimitError(f"fastdense: {what}: exceeds a limit of the compiled kernel")
    if rc == FD_ERR_INDEX:
        return ValueError(f"fastdense: {what}: an embedding id is outside its table")
    return ValueError(f"fastdense: {what}: invalid argument (status {rc})")


cdef inline int _check(int rc, str what) except -1:
    """Raise the exception for a csrc status code; FD_OK passes."""
    if rc != FD_OK:
        raise _status_error(rc, what)
    return 0

fd_set_blas(<fd_sgemm_fn>sgemm, <fd_dgemm_fn>dgemm, <fd_sgemv_fn>sgemv, <fd_dgemv_fn>dgemv)
fd_find_blas_threads_api(<void *>sgemm)


cdef inline int _dtype_code(cnp.ndarray a):
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT32:
        return FD_F32
    if t == cnp.NPY_FLOAT64:
        return FD_F64
    return -1


cdef int _matrix(cnp.ndarray a, const void **data, ptrdiff_t *ld, int *colmajor):
    """Describe a 2-D array as BLAS sees it; 0 when its strides need a copy first."""
    cdef ptrdiff_t es = cnp.PyArray_ITEMSIZE(a)
    cdef ptrdiff_t r = cnp.PyArray_DIM(a, 0), c = cnp.PyArray_DIM(a, 1)
    cdef ptrdiff_t s0 = cnp.PyArray_STRIDE(a, 0), s1 = cnp.PyArray_STRIDE(a, 1)
    data[0] = cnp.PyArray_DATA(a)
    if (s1 == es or c <= 1) and s0 % es == 0 and s0 >= es * c and s0 > 0:
        ld[0] = s0 // es
        colmajor[0] = 0
        return 1
    if (s0 == es or r <= 1) and s1 % es == 0 and s1 >= es * r and s1 > 0:
        ld[0] = s1 // es
        colmajor[0] = 1
        return 1
    if r <= 1 and c <= 1:
        ld[0] = c if c > 0 else 1
        colmajor[0] = 0
        return 1
    return 0


def blas_compatible(cnp.ndarray a):
    """True when a 2-D array can be handed to BLAS without a copy."""
    cdef const void *d
    cdef ptrdiff_t ld
    cdef int cm
    return bool(_matrix(a, &d, &ld, &cm))


def dense2d(cnp.ndarray x, cnp.ndarray w, object bias, cnp.ndarray out,
            int code, double p0, double p1, double p2, PackedKernel packed=None):
    """out := act(x @ w + bias) for validated 2-D arrays of one dtype (see fastdense.ops);
    `packed`, when given, is w's PackedKernel."""
    cdef fd_dense_args a
    cdef int rc
    a.dtype = _dtype_code(w)
    a.wpack = NULL
    a.norm = NULL
    if packed is not None and packed.packed is not None and packed.kernel.shape == (<object>w).shape:
        a.wpack = <const float *>cnp.PyArray_DATA(<cnp.ndarray>packed.packed)
    a.m = cnp.PyArray_DIM(x, 0)
    a.k = cnp.PyArray_DIM(x, 1)
    a.n = cnp.PyArray_DIM(w, 1)
    if not _matrix(x, &a.x, &a.ldx, &a.x_colmajor) or not _matrix(w, &a.w, &a.ldw, &a.w_colmajor):
        raise ValueError("dense2d: operands need BLAS-compatible strides")
    if a.x_colmajor == 0 and a.ldx < a.k:
        a.ldx = a.k if a.k > 0 else 1
    if a.w_colmajor == 0 and a.ldw < a.n:
        a.ldw = a.n if a.n > 0 else 1
    if a.x_colmajor and a.ldx < a.m:
        a.ldx = a.m if a.m > 0 else 1
    if a.w_colmajor and a.ldw < a.k:
        a.ldw = a.k if a.k > 0 else 1
    a.bias = NULL if bias is None else cnp.PyArray_DATA(<cnp.ndarray>bias)
    a.out = cnp.PyArray_DATA(out)
    a.ldo = cnp.PyArray_DIM(out, 1)
    a.act.code = code
    a.act.p[0] = p0
    a.act.p[1] = p1
    a.act.p[2] = p2
    with nogil:
        rc = fd_dense(&a)
    _check(rc, "dense")
    return out


def apply_activation(cnp.ndarray x, int code, double p0=0.0, double p1=0.0, double p2=0.0):
    """Return act(x) over the last axis of a C-contiguous float32/float64 array (a new array).

    >>> apply_activation(np.array([-1.0, 2.0]), relu_code)    # doctest: +SKIP
    array([0., 2.])
    """
    cdef int dt = _dtype_code(x)
    if dt < 0 or not cnp.PyArray_IS_C_CONTIGUOUS(x):
        raise TypeError("apply_activation needs a C-contiguous float32 or float64 array")
    cdef fd_act act
    act.code = code
    act.p[0] = p0
    act.p[1] = p1
    act.p[2] = p2
    cdef ptrdiff_t cols = cnp.PyArray_DIM(x, x.ndim - 1) if x.ndim > 0 else 1
    cdef ptrdiff_t rows = (x.size // cols) if cols > 0 else 0
    cdef ptrdiff_t cols_out = cols // 2 if fd_act_halves(code) else cols
    shape = ((<object>x).shape[:-1] + (cols_out,)) if x.ndim > 0 else ()
    cdef cnp.ndarray out = np.empty(shape, dtype=x.dtype)
    if rows == 0 or cols == 0:
        return out
    cdef const void *src = cnp.PyArray_DATA(x)
    cdef void *dst = cnp.PyArray_DATA(out)
    with nogil:
        if dt == FD_F32:
            fd_epilogue_f32(&act, NULL, <const float *>src, cols, <float *>dst, cols_out, rows, cols)
        else:
            fd_epilogue_f64(&act, NULL, <const double *>src, cols, <double *>dst, cols_out, rows, cols)
    return out


ActivationInfo = namedtuple("ActivationInfo", "code id name rowwise halves")
ActivationInfo.__doc__ = """One row of the kernel's activation table (csrc/fd_act_list.h): code FD_ACT_<id>,
Keras name, rowwise (needs whole rows), halves (the output has half the columns: glu)."""


def activation_table():
    """The kernel's activations in code order, as ActivationInfo records.

    >>> activation_table()[1]
    ActivationInfo(code=1, id='RELU', name='relu', rowwise=False, halves=False)
    """
    cdef int code
    return tuple([ActivationInfo(code, fd_act_id(code).decode(), fd_act_name(code).decode(),
                                 bool(fd_act_rowwise(code)), bool(fd_act_halves(code)))
                  for code in range(FD_ACT_COUNT)])


# the activation codes as module attributes, from the same table: _kernels.FD_ACT_RELU, ...
globals().update({"FD_ACT_" + _info.id: _info.code for _info in activation_table()})


def cpu_path():
    """The SIMD path chosen on this machine: 'avx512', 'avx2', 'neon' or 'baseline'."""
    return fd_cpu_path().decode()


def cpu_level():
    """The SIMD path as a level: 0 baseline, 1 AVX2 + FMA, 2 AVX-512."""
    return fd_cpu_level()


def cpu_features():
    """{feature name: bool} as the kernels see them (FASTDENSE_CPU_PATH lowers them), plus
    'vendor', 'family' and 'model' of the CPU.

    >>> sorted(cpu_features())[:3]
    ['amx_int8', 'amx_tile', 'avx2']
    """
    cdef int f
    info = {fd_cpu_feature_name(f).decode(): bool(fd_cpu_has(f)) for f in range(FD_CPU_FEATURE_COUNT)}
    info["vendor"] = fd_cpu_vendor_string().decode(errors="replace")
    info["family"] = fd_cpu_family()
    info["model"] = fd_cpu_model()
    return info


def blas_info():
    """(library path, OpenBLAS config string, BLAS thread count or -1)."""
    return fd_blas_path().decode(errors="replace"), fd_blas_config().decode(errors="replace"), fd_blas_get_threads()


def blas_set_threads(int n):
    """Set the BLAS library's (process-wide) thread count; False when it cannot be set."""
    return fd_blas_set_threads(n) == 0


def set_num_threads(int n):
    fd_set_num_threads(n)


def get_num_threads():
    return fd_get_num_threads()


def cpu_count():
    return fd_cpu_count()


def own_threading():
    return bool(fd_own_threading())


def set_own_threading(int v):
    fd_set_own_threading(v)


def plan_split_policy():
    """How one block's dense steps are threaded: -1 by estimated cost, 0 never split, 1 always."""
    return fd_plan_get_split_policy()


def plan_l2_bytes():
    """One core's L2 in bytes as the plan's thread policy counts it."""
    return int(fd_plan_l2_bytes())


def plan_block_bytes():
    """Bytes of intermediates in one block of a compiled plan (by the size of one core's L2)."""
    return int(fd_plan_block_bytes())


def set_plan_split_policy(int mode):
    """Testing and benchmarking hook: force plan_split_policy() (-1 restores the default)."""
    fd_plan_set_split_policy(mode)


def set_blas_int_max(ptrdiff_t v):
    """Testing hook: the largest dimension handed to one BLAS call (<= 0 restores INT_MAX)."""
    fd_set_blas_int_max(v)


def get_blas_int_max():
    return fd_get_blas_int_max()


cdef inline bint _disjoint(cnp.ndarray a, cnp.ndarray b):
    """True when two C-contiguous arrays' memory ranges do not overlap."""
    cdef char *pa = <char *>cnp.PyArray_DATA(a)
    cdef char *pb = <char *>cnp.PyArray_DATA(b)
    return pa + cnp.PyArray_NBYTES(a) <= pb or pb + cnp.PyArray_NBYTES(b) <= pa


cdef class PackedKernel:
    """A (K, N) kernel with its weights packed once for the packed-weight GEMM.

    Built by ``fastdense.ops.pack_kernel`` (which copies) or by a layer for its own read-only
    kernel. ``kernel`` is the C-contiguous array; ``packed`` its float32 panels, or None for
    float64 kernels and on CPUs without AVX2 + FMA (the BLAS computes those).
    """
    cdef readonly object kernel
    cdef readonly object packed

    def __cinit__(self, cnp.ndarray kernel not None):
        cdef int t = cnp.PyArray_TYPE(kernel)
        if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or cnp.PyArray_NDIM(kernel) != 2 \
                or not cnp.PyArray_IS_C_CONTIGUOUS(kernel):
            raise ValueError(f"PackedKernel expects a C-contiguous 2-D float32 or float64 array, "
                             f"got {kernel.ndim}-D {kernel.dtype}")
        self.kernel = kernel
        self.packed = None
        cdef ptrdiff_t k = cnp.PyArray_DIM(kernel, 0), n = cnp.PyArray_DIM(kernel, 1)
        cdef cnp.npy_intp size, skip
        cdef cnp.ndarray out
        if t == cnp.NPY_FLOAT32 and fd_packed_available() and k > 0 and n > 0:
            size = fd_pack_f32_size(k, n) + 15
            out = cnp.PyArray_EMPTY(1, &size, cnp.NPY_FLOAT32, 0)
            # panels start on a cache line: the kernel's loads of a panel row never straddle two
            skip = <cnp.npy_intp>((64 - <size_t>cnp.PyArray_DATA(out) % 64) % 64 // 4)
            with nogil:
                fd_pack_f32(<const float *>cnp.PyArray_DATA(kernel), n, 0, k, n,
                            <float *>cnp.PyArray_DATA(out) + skip)
            out.flags.writeable = False
            out = out[skip:skip + size - 15]
            self.packed = out.view()   # a view of a read-only base can never be written

    def __reduce__(self):
        return (PackedKernel, (self.kernel,))   # packed again on load

    @property
    def shape(self):
        return self.kernel.shape

    @property
    def dtype(self):
        return self.kernel.dtype

    def __repr__(self):
        how = "packed" if self.packed is not None else "BLAS"
        return f"<PackedKernel shape={self.kernel.shape} dtype={self.kernel.dtype} ({how})>"


def packed_available():
    """True when this CPU runs the packed-weight GEMM (AVX2 + FMA, not forced to baseline)."""
    return bool(fd_packed_available())


def gemm_kernel_name():
    """The float32 GEMM path in use and why it was chosen (e.g. 'avx512 6x64 (...)')."""
    return fd_gemm_kernel_name().decode()


cdef object _fast_operands(object x, int t, cnp.ndarray w, object bias, object spec, object out,
                           fd_dense_args *a):
    """The result array (new, or `out`) when x, bias, spec and out are in kernel form for a kernel
    of dtype t and shape (a.k, a.n) whose memory is the ndarray w, else None; fills a's m, x, ldx,
    x_colmajor, bias, act, out and ldo. What both fast paths accept (dense_fast)."""
    if type(x) is not np.ndarray:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x, ba
    cdef int nd = cnp.PyArray_NDIM(xa)
    # (a byte-swapped array, '>f4' here, has the native type number: the kernels would read its
    # bytes as native numbers, so it goes through the validating path, which converts it)
    if cnp.PyArray_TYPE(xa) != t or nd < 1 or not cnp.PyArray_IS_C_CONTIGUOUS(xa) \
            or not cnp.PyArray_ISNOTSWAPPED(xa) or cnp.PyArray_DIM(xa, nd - 1) != a.k:
        return None
    a.bias = NULL
    if bias is not None:
        if type(bias) is not np.ndarray:
            return None
        ba = <cnp.ndarray>bias
        if cnp.PyArray_TYPE(ba) != t or cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != a.n \
                or not cnp.PyArray_IS_C_CONTIGUOUS(ba) or not cnp.PyArray_ISNOTSWAPPED(ba):
            return None
        a.bias = cnp.PyArray_DATA(ba)
    # spec is a fastdense.activations.KernelActivation (code, p0, p1, p2, halves), a tuple: read
    # by position, the tuple's C-level access, on this hot path
    if not isinstance(spec, tuple) or len(<tuple>spec) < 4:
        return None
    cdef tuple act = <tuple>spec
    a.act.code = <int>act[0]
    a.act.p[0] = <double>act[1]
    a.act.p[1] = <double>act[2]
    a.act.p[2] = <double>act[3]
    cdef ptrdiff_t nout = a.n
    if fd_act_halves(a.act.code):
        if a.n % 2:
            return None
        nout = a.n // 2
    cdef cnp.npy_intp dims[32]
    cdef int i
    if nd > 32:
        return None
    a.m = 1
    for i in range(nd - 1):
        dims[i] = cnp.PyArray_DIM(xa, i)
        a.m *= dims[i]
    dims[nd - 1] = nout
    cdef cnp.ndarray res
    if out is None:
        res = cnp.PyArray_EMPTY(nd, dims, t, 0)
    else:
        if type(out) is not np.ndarray:
            return None
        res = <cnp.ndarray>out
        if cnp.PyArray_TYPE(res) != t or cnp.PyArray_NDIM(res) != nd or not cnp.PyArray_IS_C_CONTIGUOUS(res) \
                or not cnp.PyArray_ISWRITEABLE(res) or not cnp.PyArray_ISNOTSWAPPED(res):
            return None
        for i in range(nd):
            if cnp.PyArray_DIM(res, i) != dims[i]:
                return None
        if not _disjoint(res, xa) or not _disjoint(res, w) or (bias is not None and not _disjoint(res, ba)):
            return None
    a.x = cnp.PyArray_DATA(xa)
    a.ldx = a.k
    a.x_colmajor = 0
    a.out = cnp.PyArray_DATA(res)
    a.ldo = nout if nout > 0 else 1
    return res


def dense_fast(object x, object w, object bias, object spec, object out=None):
    """act(x @ w + bias) when every operand is already in kernel form, else None.

    The common case of fastdense.ops.dense: ndarrays of one float dtype, x C-contiguous
    with rank >= 1, w C-contiguous 2-D, bias None or contiguous (N,), out None or a
    C-contiguous writeable array of the result's shape whose memory is disjoint from the
    inputs. Anything else (including every error) goes through the validating path in
    fastdense.ops, which also gives the error messages. w may be a PackedKernel, or a
    QuantizedKernel the integer kernels run (float32 x, bias and out; see _qdense_fast).
    """
    if type(w) is QuantizedKernel:
        return _qdense_fast(x, <QuantizedKernel>w, bias, spec, out)
    cdef object packed = None
    if type(w) is PackedKernel:
        packed = (<PackedKernel>w).packed
        w = (<PackedKernel>w).kernel
    if type(w) is not np.ndarray:
        return None
    cdef cnp.ndarray wa = <cnp.ndarray>w
    cdef int t = cnp.PyArray_TYPE(wa)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or cnp.PyArray_NDIM(wa) != 2 \
            or not cnp.PyArray_IS_C_CONTIGUOUS(wa) or not cnp.PyArray_ISNOTSWAPPED(wa):
        return None
    cdef fd_dense_args a
    a.k = cnp.PyArray_DIM(wa, 0)
    a.n = cnp.PyArray_DIM(wa, 1)
    if a.k == 0:
        return None
    cdef object res = _fast_operands(x, t, wa, bias, spec, out, &a)
    if res is None or cnp.PyArray_SIZE(<cnp.ndarray>res) == 0:
        return res
    a.dtype = FD_F32 if t == cnp.NPY_FLOAT32 else FD_F64
    a.w = cnp.PyArray_DATA(wa)
    a.ldw = a.n if a.n > 0 else 1
    a.w_colmajor = 0
    a.wpack = NULL
    a.norm = NULL
    if packed is not None:
        a.wpack = <const float *>cnp.PyArray_DATA(<cnp.ndarray>packed)
    cdef int rc
    with nogil:
        rc = fd_dense(&a)
    _check(rc, "dense")
    return res


from libc.stdlib cimport calloc, free, malloc

include "_kernels_quant.pxi"

# ---- quantized Embedding tables (csrc/fd_gather.h): rows de-scaled as they are gathered

cdef class QuantizedTable:
    """A Keras 3 int8 / int4 Embedding table as Keras stores it, kept quantized (built by
    fastdense.layers.Embedding, which checks the variables first): ``q`` int8 (rows, dim) or int4
    packed (rows, ceil(dim / 2)), ``scale`` float32 (rows,) or (rows, groups), ``zero`` int8
    (rows, groups) for int4 groups of ``block`` columns (``block`` -1: one scale per row)."""
    cdef readonly object q, scale, zero
    cdef readonly int bits
    cdef readonly ptrdiff_t block, rows, dim
    cdef fd_qtable _t

    def __cinit__(self, q, scale, zero, int bits, ptrdiff_t block, ptrdiff_t dim):
        q, scale = np.ascontiguousarray(q), np.ascontiguousarray(scale)   # no copy of a layer's weights
        groups = (dim + block - 1) // block if bits == 4 and block > 0 else 0   # (C division here)
        width = dim if bits == 8 else (dim + 1) // 2
        rows = q.shape[0] if q.ndim == 2 else 0
        if q.dtype != np.int8 or q.shape != (rows, width) or scale.dtype != np.float32 \
                or scale.shape != ((rows, groups) if groups else (rows,)):
            raise ValueError(f"QuantizedTable int{bits}: expected int8 q ({rows}, {width}) and float32 scale "
                             f"{(rows, groups) if groups else (rows,)}, got {q.dtype} {q.shape} and "
                             f"{scale.dtype} {scale.shape}")
        if groups:
            zero = np.ascontiguousarray(zero)
            if zero.dtype != np.int8 or zero.shape != (rows, groups):
                raise ValueError(f"QuantizedTable int4 zero must be int8 ({rows}, {groups}), got {zero!r}")
        else:
            zero = None
        self.q, self.scale, self.zero = q, scale, zero
        self.bits, self.block, self.rows, self.dim = bits, (block if groups else -1), rows, dim
        self._t.rows, self._t.dim, self._t.bits, self._t.block = rows, dim, bits, self.block
        self._t.q = <const int8_t *>cnp.PyArray_DATA(<cnp.ndarray>q)
        self._t.scale = <const float *>cnp.PyArray_DATA(<cnp.ndarray>scale)
        self._t.zero = NULL if zero is None else <const int8_t *>cnp.PyArray_DATA(<cnp.ndarray>zero)
        _check(fd_qtable_check(&self._t), "quantized table")

    def gather(self, cnp.ndarray ids, cnp.ndarray out):
        """out (count, dim), C-contiguous float32 := the rows of the C-contiguous int32 or int64 ids
        (count of them); -1, or the position of the first id outside [0, rows) (nothing written)."""
        cdef ptrdiff_t count = cnp.PyArray_SIZE(ids), bad
        cdef int t = cnp.PyArray_TYPE(ids)
        if not cnp.PyArray_IS_C_CONTIGUOUS(ids) or not cnp.PyArray_IS_C_CONTIGUOUS(out) \
                or cnp.PyArray_TYPE(out) != cnp.NPY_FLOAT32 or cnp.PyArray_SIZE(out) != count * self.dim \
                or not (t == cnp.NPY_INT32 or t == cnp.NPY_INT64 or t == cnp.NPY_LONGLONG):
            raise ValueError("QuantizedTable.gather: expected C-contiguous int32/int64 ids and a float32 out "
                             f"of ids.size x {self.dim} elements")
        with nogil:
            if t == cnp.NPY_INT32:
                bad = fd_gather_i32_q(<const int32_t *>cnp.PyArray_DATA(ids), count, &self._t,
                                      <float *>cnp.PyArray_DATA(out))
            else:
                bad = fd_gather_i64_q(<const int64_t *>cnp.PyArray_DATA(ids), count, &self._t,
                                      <float *>cnp.PyArray_DATA(out))
        return bad


# Stack room for the input/output pointers of one Plan.run; plans with more use the heap.
cdef enum:
    _RUN_STACK_ARRAYS = 16


cdef class Plan:
    """A compiled whole-model plan (built by fastdense.models.plan; not a public API).

    ``steps`` are ``fastdense.models.plan_steps.PlanStep`` records and ``buffers`` its
    ``PlanBuffer`` records, read by attribute name; dense weights are arrays or PackedKernels
    of the plan dtype. Everything C needs is copied into arrays sized for this plan, once, here;
    the plan is then checked by C (fd_plan_check): ValueError for an inconsistent plan,
    PlanLimitError when its sizes exceed what C can address.
    """
    cdef fd_plan plan
    cdef fd_step *c_steps
    cdef fd_buffer *c_bufs
    cdef int *c_src
    cdef ptrdiff_t *c_cols
    cdef list keep
    cdef readonly int n_inputs, n_outputs

    def __cinit__(self, steps, buffers, ptrdiff_t glu_offset, ptrdiff_t sample_elems, object dtype):
        cdef Py_ssize_t ns = len(steps), nb = len(buffers), nsrc_total = 0, ncols_total = 0, i, j
        cdef Py_ssize_t int_max = 2147483647
        steps = list(steps)
        buffers = list(buffers)
        for step in steps:
            nsrc_total += len(step.srcs)
            ncols_total += len(step.cols)
        if ns > int_max or nb > int_max or nsrc_total > int_max:
            raise PlanLimitError(f"fastdense plan: {ns} steps, {nb} buffers and {nsrc_total} step "
                                 f"sources exceed the C int range")
        self.keep = []
        self.c_steps = <fd_step *>calloc(max(ns, 1), sizeof(fd_step))
        self.c_bufs = <fd_buffer *>calloc(max(nb, 1), sizeof(fd_buffer))
        self.c_src = <int *>calloc(max(nsrc_total, 1), sizeof(int))
        self.c_cols = <ptrdiff_t *>calloc(max(ncols_total, 1), sizeof(ptrdiff_t))
        if not (self.c_steps and self.c_bufs and self.c_src and self.c_cols):
            raise MemoryError("fastdense: could not allocate a plan")
        cdef int want = cnp.NPY_FLOAT32 if np.dtype(dtype) == np.float32 else cnp.NPY_FLOAT64
        ins, outs = set(), set()
        for i in range(nb):
            b = buffers[i]
            self.c_bufs[i].width = b.width
            self.c_bufs[i].input_index = b.input_index
            self.c_bufs[i].output_index = b.output_index
            self.c_bufs[i].offset = b.offset
            if b.input_index >= 0:
                ins.add(b.input_index)
            if b.output_index >= 0:
                outs.add(b.output_index)
        if ins != set(range(len(ins))) or outs != set(range(len(outs))):
            raise ValueError("fastdense plan: the buffers' input and output indices must be 0, 1, ... "
                             f"without gaps, got inputs {sorted(ins)} and outputs {sorted(outs)}")
        self.n_inputs = len(ins)
        self.n_outputs = len(outs)
        cdef fd_step *st
        cdef int *src = self.c_src
        cdef ptrdiff_t *cols = self.c_cols
        for i in range(ns):
            step = steps[i]
            st = &self.c_steps[i]
            st.kind = step.kind
            st.nsrc = len(step.srcs)
            st.src = src
            for j in range(st.nsrc):
                src[j] = step.srcs[j]
            src += st.nsrc
            st.cols = NULL
            if step.cols:
                if len(step.cols) != st.nsrc:
                    raise ValueError(f"fastdense plan: step {i} has {st.nsrc} sources but "
                                     f"{len(step.cols)} column counts")
                st.cols = cols
                for j in range(st.nsrc):
                    cols[j] = step.cols[j]
                cols += st.nsrc
            st.dst = step.dst
            st.rows = step.rows
            st.k = step.k
            st.n = step.n
            act = step.act
            st.act.code = FD_ACT_LINEAR if act is None else act.code
            st.act.p[0] = 0.0 if act is None else act.p0
            st.act.p[1] = 0.0 if act is None else act.p1
            st.act.p[2] = 0.0 if act is None else act.p2
            st.mode = step.mode
            st.eps = step.eps
            st.w = NULL
            st.wpack = NULL
            st.bias = NULL
            w = step.w
            if type(w) is QuantizedKernel:   # FD_STEP_QDENSE: w is the kernel's fd_qweights
                if want != cnp.NPY_FLOAT32 or not (<QuantizedKernel>w)._native:
                    raise ValueError("fastdense plan: a quantized Dense runs in float32 plans, on its integer kernel")
                self.keep.append(w)
                st.w = &(<QuantizedKernel>w)._w
                w = None
            elif type(w) is QuantizedTable:   # FD_STEP_GATHER, FD_GATHER_QUANTIZED: w is its fd_qtable
                if want != cnp.NPY_FLOAT32 or st.mode != FD_GATHER_QUANTIZED:
                    raise ValueError("fastdense plan: a quantized table is a float32 plan's FD_GATHER_QUANTIZED step")
                self.keep.append(w)
                st.w = &(<QuantizedTable>w)._t
                w = None
            elif type(w) is PackedKernel:
                if (<PackedKernel>w).packed is not None:
                    self.keep.append((<PackedKernel>w).packed)
                    st.wpack = <const float *>cnp.PyArray_DATA(<cnp.ndarray>(<PackedKernel>w).packed)
                w = (<PackedKernel>w).kernel
            for name, a in (("w", w), ("bias", step.bias)):
                if a is None:
                    continue
                # (an affine step's scale and offset are float64 in every plan)
                if not isinstance(a, np.ndarray) or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a) \
                        or cnp.PyArray_TYPE(<cnp.ndarray>a) != (cnp.NPY_FLOAT64 if st.kind == FD_STEP_AFFINE else want):
                    raise ValueError("fastdense plan: weights must be C-contiguous arrays in the plan dtype")
                expected = st.k * st.n if name == "w" and st.kind in (FD_STEP_DENSE, FD_STEP_GATHER) else st.n
                if (<cnp.ndarray>a).size != expected:
                    raise ValueError(f"fastdense plan: step {i}'s {name} has {(<cnp.ndarray>a).size} "
                                     f"elements, expected {expected}")
                self.keep.append(a)
                if name == "w":
                    st.w = cnp.PyArray_DATA(<cnp.ndarray>a)
                else:
                    st.bias = cnp.PyArray_DATA(<cnp.ndarray>a)
        self.plan.dtype = FD_F32 if want == cnp.NPY_FLOAT32 else FD_F64
        self.plan.nsteps = <int>ns
        self.plan.steps = self.c_steps
        self.plan.nbufs = <int>nb
        self.plan.bufs = self.c_bufs
        self.plan.ninputs = self.n_inputs
        self.plan.noutputs = self.n_outputs
        self.plan.glu_offset = glu_offset
        self.plan.sample_elems = sample_elems
        _check(fd_plan_check(&self.plan), "plan")

    def __dealloc__(self):
        free(self.c_steps)
        free(self.c_bufs)
        free(self.c_src)
        free(self.c_cols)

    def step_costs(self, ptrdiff_t rows):
        """(estimated ns on one core, weights beyond one core's L2) of each step for one block of
        `rows` samples (0.0 for steps other than dense ones): what the thread policy reads."""
        cdef int far = fd_plan_weights_far(&self.plan)
        return [fd_plan_step_cost_ns(&self.plan, i, rows, far) for i in range(self.plan.nsteps)], bool(far)

    def run_one(self, cnp.ndarray x, cnp.ndarray y, ptrdiff_t m, ptrdiff_t block, cnp.ndarray scratch,
                int max_tasks):
        """run([x], [y], ...) for a plan of one input and one output, with fewer steps (the
        shortcut of predict and calls); the same checks by the caller."""
        self._run_one(x, y, m, block, scratch, max_tasks)

    cdef int _run_one(self, cnp.ndarray x, cnp.ndarray y, ptrdiff_t m, ptrdiff_t block, cnp.ndarray scratch,
                      int max_tasks) except -1:
        cdef const void *ins[1]
        cdef void *outs[1]
        cdef void *s = cnp.PyArray_DATA(scratch)
        cdef int rc
        if self.n_inputs != 1 or self.n_outputs != 1:
            raise ValueError(f"fastdense plan: run_one needs 1 input and 1 output, the plan has "
                             f"{self.n_inputs} and {self.n_outputs}")
        ins[0] = cnp.PyArray_DATA(x)
        outs[0] = cnp.PyArray_DATA(y)
        with nogil:
            rc = fd_plan_run(&self.plan, ins, outs, m, block, s, max_tasks)
        _check(rc, "plan")
        return 0

    def run(self, list inputs, list outputs, ptrdiff_t m, ptrdiff_t block, cnp.ndarray scratch,
            int max_tasks):
        """Run on m samples in blocks: C-contiguous inputs/outputs of the plan dtype and shapes and
        a scratch of max_tasks * block * sample_elems elements (checked by the caller)."""
        cdef const void *ins_stack[_RUN_STACK_ARRAYS]
        cdef void *outs_stack[_RUN_STACK_ARRAYS]
        cdef const void **ins = ins_stack
        cdef void **outs = outs_stack
        cdef void *s = cnp.PyArray_DATA(scratch)
        cdef int i, rc
        if len(inputs) != self.n_inputs or len(outputs) != self.n_outputs:
            raise ValueError(f"fastdense plan: expected {self.n_inputs} inputs and {self.n_outputs} "
                             f"outputs, got {len(inputs)} and {len(outputs)}")
        try:
            if self.n_inputs > _RUN_STACK_ARRAYS:
                ins = <const void **>malloc(self.n_inputs * sizeof(void *))
            if self.n_outputs > _RUN_STACK_ARRAYS:
                outs = <void **>malloc(self.n_outputs * sizeof(void *))
            if ins == NULL or outs == NULL:
                raise MemoryError("fastdense: could not allocate a plan's argument list")
            for i in range(self.n_inputs):
                ins[i] = cnp.PyArray_DATA(<cnp.ndarray>inputs[i])
            for i in range(self.n_outputs):
                outs[i] = cnp.PyArray_DATA(<cnp.ndarray>outputs[i])
            with nogil:
                rc = fd_plan_run(&self.plan, ins, outs, m, block, s, max_tasks)
        finally:
            if ins != ins_stack:
                free(ins)
            if outs != outs_stack:
                free(outs)
        _check(rc, "plan")


# ---- the shortcut of predict and calls (fastdense/models/plan.py PlanCache.shortcut and
# CompiledPlan.run_one), in C where a batch-1 call spends most of its Python time

cdef object _shortcut_plan(object cache, object x, bint call):
    """The plan of the cache's last run when x is an ndarray like that run's input (the same dtype
    object, rank and per-sample shape, C order) and no layer changed since, and (a call) the
    plan records no losses; else None."""
    cdef object last = cache.last
    if last is None or type(x) is not np.ndarray:
        return None
    cdef cnp.ndarray a = <cnp.ndarray>x
    cdef tuple tail = last.tail
    cdef int nd = cnp.PyArray_NDIM(a), i
    if <object>cnp.PyArray_DESCR(a) is not last.dtype or nd != last.ndim or nd != len(tail) + 1 \
            or not cnp.PyArray_IS_C_CONTIGUOUS(a):
        return None
    for i in range(1, nd):
        if cnp.PyArray_DIM(a, i) != <cnp.npy_intp>tail[i - 1]:
            return None
    if last.generation != cache.generation:
        return None
    cdef object plan = last.plan
    if call and plan.records_losses:
        return None
    return plan


def plan_shortcut(object cache, object x, bint call):
    """PlanCache.shortcut: see _shortcut_plan."""
    return _shortcut_plan(cache, x, call)


def plan_shortcut_run(object cache, object x, bint call):
    """``cache.shortcut(x, call).run_one(x)``, or None when there is no shortcut: this thread's
    last layout for as many samples is reused here, anything else goes to CompiledPlan.run_one."""
    cdef object plan = _shortcut_plan(cache, x, call)
    if plan is None:
        return None
    cdef cnp.ndarray a = <cnp.ndarray>x
    cdef cnp.npy_intp m = cnp.PyArray_DIM(a, 0)
    cdef object run = getattr(plan._local, "last", None)
    if run is None or run.m != m:
        return plan.run_one(x)
    cdef tuple shape = plan.out_shapes[0]
    cdef int nd = len(shape) + 1, i
    cdef cnp.npy_intp dims[32]
    if nd > 32:
        return plan.run_one(x)
    dims[0] = m
    for i in range(nd - 1):
        dims[i + 1] = <cnp.npy_intp>shape[i]
    cdef cnp.dtype dtype = plan.dtype   # x's own: the shortcut's inputs are in the plan dtype
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(nd, dims, dtype.type_num, 0)
    (<Plan>plan._plan)._run_one(a, y, m, run.block, run.scratch, run.tasks)
    return y
