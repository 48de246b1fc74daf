# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython glue: numpy arrays in, BLAS from scipy.linalg.cython_blas, csrc calls, nogil."""

import numpy as np
cimport numpy as cnp
from libc.stddef cimport ptrdiff_t
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

cnp.import_array()

cdef extern from "fd_act.h" nogil:
    ctypedef struct fd_act:
        int code
        double p[3]
    const char *fd_act_name(int code)
    int fd_act_rowwise(int code)
    int fd_act_halves(int code)
    void fd_epilogue_f32(const fd_act *a, const float *bias, const float *src, ptrdiff_t ld_src,
                         float *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in)
    void fd_epilogue_f64(const fd_act *a, const double *bias, const double *src, ptrdiff_t ld_src,
                         double *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in)

cdef extern from "fd_cpu.h" nogil:
    int FD_CPU_FEATURE_COUNT
    int fd_cpu_has(int f)
    const char *fd_cpu_feature_name(int f)
    int fd_cpu_level()
    const char *fd_cpu_path()
    const char *fd_cpu_vendor_string()
    int fd_cpu_family()
    int fd_cpu_model()

cdef extern from "fd_kernel.h" nogil:
    ctypedef void (*fd_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                                 float *, int *, float *, float *, int *)
    ctypedef void (*fd_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                                 double *, int *, double *, double *, int *)
    ctypedef void (*fd_sgemv_fn)(char *, int *, int *, float *, float *, int *, float *, int *,
                                 float *, float *, int *)
    ctypedef void (*fd_dgemv_fn)(char *, int *, int *, double *, double *, int *, double *, int *,
                                 double *, double *, int *)
    void fd_set_blas(fd_sgemm_fn, fd_dgemm_fn, fd_sgemv_fn, fd_dgemv_fn)
    void fd_find_blas_threads_api(void *fn)
    const char *fd_blas_path()
    const char *fd_blas_config()
    int fd_blas_get_threads()
    int fd_blas_set_threads(int n)
    enum: FD_F32, FD_F64
    ctypedef struct fd_dense_args:
        int dtype
        ptrdiff_t m, k, n
        const void *x
        ptrdiff_t ldx
        int x_colmajor
        const void *w
        ptrdiff_t ldw
        int w_colmajor
        const void *bias
        void *out
        ptrdiff_t ldo
        fd_act act
        const float *wpack
    int fd_dense(const fd_dense_args *a)
    void fd_set_num_threads(int n)
    int fd_get_num_threads()
    int fd_cpu_count()
    int fd_own_threading()
    void fd_set_own_threading(int v)
    void fd_set_blas_int_max(ptrdiff_t v)
    ptrdiff_t fd_get_blas_int_max()

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
    if rc != 0:
        raise MemoryError("fastdense: could not allocate scratch memory")
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


def activation_name(int code):
    """Canonical name of kernel activation `code`, or None."""
    cdef const char *s = fd_act_name(code)
    return None if s == NULL else s.decode()


def activation_flags(int code):
    """(rowwise, halves) of kernel activation `code`."""
    return bool(fd_act_rowwise(code)), bool(fd_act_halves(code))


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
    ['avx2', 'avx512_bf16', 'avx512_vnni']
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


def dense_fast(object x, object w, object bias, tuple spec, object out=None):
    """act(x @ w + bias) when every operand is already in kernel form, else None.

    The common case of fastdense.ops.dense: ndarrays of one float dtype, x C-contiguous
    with rank >= 1, w C-contiguous 2-D, bias None or contiguous (N,), out None or a
    C-contiguous writeable array of the result's shape whose memory is disjoint from the
    inputs. Anything else (including every error) goes through the validating path in
    fastdense.ops, which also gives the error messages. w may be a PackedKernel.
    """
    cdef object packed = None
    if type(w) is PackedKernel:
        packed = (<PackedKernel>w).packed
        w = (<PackedKernel>w).kernel
    if type(x) is not np.ndarray or type(w) is not np.ndarray:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x, wa = <cnp.ndarray>w, ba
    cdef int t = cnp.PyArray_TYPE(wa)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or cnp.PyArray_TYPE(xa) != t:
        return None
    cdef int nd = cnp.PyArray_NDIM(xa)
    if nd < 1 or cnp.PyArray_NDIM(wa) != 2 or not cnp.PyArray_IS_C_CONTIGUOUS(xa) \
            or not cnp.PyArray_IS_C_CONTIGUOUS(wa):
        return None
    cdef fd_dense_args a
    a.k = cnp.PyArray_DIM(wa, 0)
    a.n = cnp.PyArray_DIM(wa, 1)
    if cnp.PyArray_DIM(xa, nd - 1) != a.k or a.k == 0:
        return None
    a.bias = NULL
    if bias is not None:
        if type(bias) is not np.ndarray:
            return None
        ba = <cnp.ndarray>bias
        if cnp.PyArray_TYPE(ba) != t or cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != a.n \
                or not cnp.PyArray_IS_C_CONTIGUOUS(ba):
            return None
        a.bias = cnp.PyArray_DATA(ba)
    a.act.code = <int>spec[0]
    a.act.p[0] = <double>spec[1]
    a.act.p[1] = <double>spec[2]
    a.act.p[2] = <double>spec[3]
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
                or not cnp.PyArray_ISWRITEABLE(res):
            return None
        for i in range(nd):
            if cnp.PyArray_DIM(res, i) != dims[i]:
                return None
        if not _disjoint(res, xa) or not _disjoint(res, wa) or (bias is not None and not _disjoint(res, ba)):
            return None
    a.dtype = FD_F32 if t == cnp.NPY_FLOAT32 else FD_F64
    a.x = cnp.PyArray_DATA(xa)
    a.ldx = a.k
    a.x_colmajor = 0
    a.w = cnp.PyArray_DATA(wa)
    a.ldw = a.n if a.n > 0 else 1
    a.w_colmajor = 0
    a.wpack = NULL if packed is None else <const float *>cnp.PyArray_DATA(<cnp.ndarray>packed)
    a.out = cnp.PyArray_DATA(res)
    a.ldo = nout if nout > 0 else 1
    cdef int rc
    if a.m == 0 or nout == 0:
        return res
    with nogil:
        rc = fd_dense(&a)
    if rc != 0:
        raise MemoryError("fastdense: could not allocate scratch memory")
    return res


cdef extern from "fd_gemm.h" nogil:
    ptrdiff_t fd_pack_f32_size(ptrdiff_t k, ptrdiff_t n)
    void fd_pack_f32(const float *w, ptrdiff_t ldw, int colmajor, ptrdiff_t k, ptrdiff_t n, float *dst)
    int fd_packed_available()


include "_kernels_quant.pxi"


cdef extern from "fd_plan.h" nogil:
    int FD_PLAN_MAX_SRC
    ctypedef struct fd_step:
        int kind
        int nsrc
        int src[16]
        int dst
        ptrdiff_t t, k, n
        ptrdiff_t cols[16]
        const void *w
        const float *wpack
        const void *bias
        fd_act act
    ctypedef struct fd_plan:
        int dtype
        int nsteps
        const fd_step *steps
        int nbufs
        const ptrdiff_t *width
        const int *in_index
        const int *out_index
        const ptrdiff_t *offset
        ptrdiff_t glu_offset
        ptrdiff_t sample_elems
    int fd_plan_run(const fd_plan *p, const void *const *inputs, void *const *outputs, ptrdiff_t m,
                    ptrdiff_t block, void *scratch, int max_tasks)

from libc.stdlib cimport calloc, free


cdef class Plan:
    """A compiled whole-model plan (built by fastdense.models.plan; not a public API).

    steps: tuples (kind, srcs, dst, t, k, n, cols, w, bias, code, p0, p1, p2), w an array or a
    PackedKernel; buffers are
    described by widths (elements per sample), in_index/out_index (-1 for intermediates)
    and offsets (offset of each intermediate in a task's scratch, in elements per sample).
    """
    cdef fd_plan plan
    cdef fd_step *c_steps
    cdef ptrdiff_t *c_width
    cdef int *c_in
    cdef int *c_out
    cdef ptrdiff_t *c_offset
    cdef list keep
    cdef readonly int n_inputs, n_outputs

    def __cinit__(self, list steps, list widths, list in_index, list out_index, list offsets,
                  ptrdiff_t glu_offset, ptrdiff_t sample_elems, object dtype):
        cdef int nb = len(widths), ns = len(steps), i, j
        self.keep = []
        self.c_steps = <fd_step *>calloc(max(ns, 1), sizeof(fd_step))
        self.c_width = <ptrdiff_t *>calloc(max(nb, 1), sizeof(ptrdiff_t))
        self.c_in = <int *>calloc(max(nb, 1), sizeof(int))
        self.c_out = <int *>calloc(max(nb, 1), sizeof(int))
        self.c_offset = <ptrdiff_t *>calloc(max(nb, 1), sizeof(ptrdiff_t))
        if not (self.c_steps and self.c_width and self.c_in and self.c_out and self.c_offset):
            raise MemoryError("fastdense: could not allocate a plan")
        cdef int want = cnp.NPY_FLOAT32 if np.dtype(dtype) == np.float32 else cnp.NPY_FLOAT64
        for i in range(nb):
            self.c_width[i] = widths[i]
            self.c_in[i] = in_index[i]
            self.c_out[i] = out_index[i]
            self.c_offset[i] = offsets[i]
        self.n_inputs = sum(1 for v in in_index if v >= 0)
        self.n_outputs = sum(1 for v in out_index if v >= 0)
        cdef fd_step *st
        cdef cnp.ndarray arr
        for i in range(ns):
            kind, srcs, dst, t, k, n, cols, w, bias, code, p0, p1, p2 = steps[i]
            st = &self.c_steps[i]
            if len(srcs) > 16:
                raise ValueError("fastdense plan: a step takes at most 16 inputs")
            st.kind = kind
            st.nsrc = len(srcs)
            for j in range(st.nsrc):
                st.src[j] = srcs[j]
                st.cols[j] = cols[j] if cols else 0
            st.dst = dst
            st.t = t
            st.k = k
            st.n = n
            st.act.code = code
            st.act.p[0] = p0
            st.act.p[1] = p1
            st.act.p[2] = p2
            st.w = NULL
            st.wpack = NULL
            st.bias = NULL
            if type(w) is QuantizedKernel:   # FD_STEP_QDENSE: w is the kernel's fd_qweights
                if want != cnp.NPY_FLOAT32 or not (<QuantizedKernel>w)._native:
                    raise ValueError("fastdense plan: a quantized Dense runs in float32 plans, on its integer kernel")
                self.keep.append(w)
                st.w = &(<QuantizedKernel>w)._w
                w = None
            elif type(w) is PackedKernel:
                if (<PackedKernel>w).packed is not None:
                    self.keep.append((<PackedKernel>w).packed)
                    st.wpack = <const float *>cnp.PyArray_DATA(<cnp.ndarray>(<PackedKernel>w).packed)
                w = (<PackedKernel>w).kernel
            for name, a in (("w", w), ("bias", bias)):
                if a is None:
                    continue
                arr = <cnp.ndarray>a
                if cnp.PyArray_TYPE(arr) != want or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
                    raise ValueError("fastdense plan: weights must be C-contiguous in the plan dtype")
                self.keep.append(arr)
                if name == "w":
                    st.w = cnp.PyArray_DATA(arr)
                else:
                    st.bias = cnp.PyArray_DATA(arr)
        self.plan.dtype = FD_F32 if want == cnp.NPY_FLOAT32 else FD_F64
        self.plan.nsteps = ns
        self.plan.steps = self.c_steps
        self.plan.nbufs = nb
        self.plan.width = self.c_width
        self.plan.in_index = self.c_in
        self.plan.out_index = self.c_out
        self.plan.offset = self.c_offset
        self.plan.glu_offset = glu_offset
        self.plan.sample_elems = sample_elems

    def __dealloc__(self):
        free(self.c_steps)
        free(self.c_width)
        free(self.c_in)
        free(self.c_out)
        free(self.c_offset)

    def run(self, list inputs, list outputs, ptrdiff_t m, ptrdiff_t block, cnp.ndarray scratch,
            int max_tasks):
        """Run on m samples in blocks: C-contiguous inputs/outputs of the plan dtype and a scratch
        of max_tasks * block * sample_elems elements (all checked by the caller)."""
        cdef const void *ins[64]
        cdef void *outs[64]
        cdef int i, rc
        if len(inputs) > 64 or len(outputs) > 64:
            raise ValueError("fastdense plan: at most 64 inputs and outputs")
        for i in range(len(inputs)):
            ins[i] = cnp.PyArray_DATA(<cnp.ndarray>inputs[i])
        for i in range(len(outputs)):
            outs[i] = cnp.PyArray_DATA(<cnp.ndarray>outputs[i])
        cdef void *s = cnp.PyArray_DATA(scratch)
        with nogil:
            rc = fd_plan_run(&self.plan, ins, outs, m, block, s, max_tasks)
        if rc != 0:
            raise MemoryError("fastdense: the plan could not allocate scratch memory")

