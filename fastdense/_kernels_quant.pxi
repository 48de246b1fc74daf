# Included by _kernels.pyx: the quantized Dense kernels (csrc/fd_qgemm.h) as a packed object.

from libc.stdint cimport int8_t, uint8_t, int32_t
from libc.string cimport memcpy

cdef extern from "fd_qgemm.h" nogil:
    ctypedef enum fd_qisa:
        FD_QISA_BASELINE, FD_QISA_AVX2, FD_QISA_AVX_VNNI, FD_QISA_AVX512_VNNI, FD_QISA_AMX, FD_QISA_COUNT
    int FD_QPANEL
    int FD_Q8_MAX_K
    ctypedef struct fd_qweights:
        ptrdiff_t k, n
        int bits
        ptrdiff_t block
        const void *w
        const int32_t *comp
        const float *scale
        const float *zero
        int recipe
        const uint8_t *w4
    ctypedef enum fd_q4_recipe:
        FD_Q4_FLOAT, FD_Q4_DIGITS
    ptrdiff_t fd_q8_packed_size(ptrdiff_t k, ptrdiff_t n)
    ptrdiff_t fd_q8_nibbles_size(ptrdiff_t k, ptrdiff_t n)
    void fd_q8_pack_nibbles(const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, uint8_t *w4)
    void fd_q8_pack(const int8_t *w, ptrdiff_t ldw, ptrdiff_t k, ptrdiff_t n, const float *kernel_scale,
                    int8_t *wp, int32_t *comp, float *scale_out)
    fd_q4_recipe fd_q4_recipe_of(fd_qisa isa)
    ptrdiff_t fd_q4_packed_size(fd_q4_recipe recipe, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
    ptrdiff_t fd_q4_params_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
    void fd_q4_pack(fd_q4_recipe recipe, const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block,
                    const float *scale, const int8_t *zero, uint8_t *wp, float *scale_out, float *zero_out)
    fd_qisa fd_qgemm_isa()
    int fd_qisa_supported(fd_qisa isa)
    const char *fd_qisa_name(fd_qisa isa)
    int fd_q8_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                    const fd_act *act, const float *bias, float *c, ptrdiff_t ldc)
    int fd_q8_quantize_rows(fd_qisa isa, ptrdiff_t m, ptrdiff_t k, const float *x, ptrdiff_t ldx,
                            int8_t *q, ptrdiff_t ldq, float *scale)
    int fd_q4_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                    const fd_act *act, const float *bias, float *c, ptrdiff_t ldc)

cdef extern from "fd_qdense.h" nogil:
    int fd_qdense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, const fd_act *act,
                  const float *bias, float *c, ptrdiff_t ldc, int max_threads)

cdef extern from "fd_pool.h" nogil:
    void fd_busy_enter()
    void fd_busy_leave()

Q8_MAX_K = FD_Q8_MAX_K
# the int4 recipes (csrc/fd_qgemm.h), by the names QuantizedKernel.int4_recipe reports
_Q4_RECIPES = {"float": FD_Q4_FLOAT, "digits": FD_Q4_DIGITS}


def quant_isa():
    """The quantized kernels' path here: 'amx', 'avx512_vnni', 'avx_vnni', 'avx2' or 'baseline'."""
    return fd_qisa_name(fd_qgemm_isa()).decode()


def q4_recipe():
    """The int4 recipe float-input int4 kernels packed here get: 'digits' (AVX512-VNNI, AMX) or 'float'."""
    return _q4_recipe_name(fd_q4_recipe_of(fd_qgemm_isa()))


cdef str _q4_recipe_name(fd_q4_recipe recipe):
    return next(name for name, code in _Q4_RECIPES.items() if code == recipe)


cdef cnp.ndarray _aligned_empty(cnp.npy_intp count, int typenum, cnp.npy_intp itemsize):
    """A read-only-to-be 1-D array of `count` items starting on a 64-byte boundary."""
    cdef cnp.npy_intp size = count + 64 // itemsize
    cdef cnp.ndarray raw = cnp.PyArray_ZEROS(1, &size, typenum, 0)
    cdef cnp.npy_intp skip = <cnp.npy_intp>((64 - <size_t>cnp.PyArray_DATA(raw) % 64) % 64) // itemsize
    return raw[skip:skip + count]


cdef class QuantizedKernel:
    """A Keras-quantized (K, N) Dense kernel, packed once for the integer kernels (read-only).

    Built by ``fastdense.ops.quantize_kernel`` (from float weights) or from the variables a
    Keras file stores (``QuantizedKernel.from_keras``). ``mode`` is ``"int8"`` or ``"int4"``;
    ``kernel``, ``kernel_scale`` and ``kernel_zero`` are Keras's variables (int8 (K, N) or int4
    packed two per byte along N; one scale per unit or per block of ``block_size`` input rows),
    read-only copies; ``quantize_inputs`` says whether inputs are quantized per row (Keras's
    int8 default) or stay float (Keras's int4 default).  ``int4_recipe`` is how float-input
    int4 runs (``"digits"`` or ``"float"``, chosen for this machine's path when packed; the bits
    are the same on every path for one recipe), else None.
    """
    cdef readonly str mode
    cdef readonly object kernel
    cdef readonly object kernel_scale
    cdef readonly object kernel_zero
    cdef readonly ptrdiff_t block_size
    cdef readonly bint quantize_inputs
    cdef readonly ptrdiff_t k, n
    cdef readonly str int4_recipe
    cdef object _packed, _comp, _scale, _zero, _nibbles
    cdef fd_qweights _w
    cdef bint _native

    def __cinit__(self, str mode, kernel, kernel_scale, kernel_zero=None, ptrdiff_t block_size=-1,
                  bint quantize_inputs=True):
        from fastdense import quantizers  # the int4 unpacking lives in one place

        if mode not in ("int8", "int4"):
            raise ValueError(f"QuantizedKernel mode must be 'int8' or 'int4', got {mode!r}")
        kernel = np.asarray(kernel)
        if kernel.dtype != np.int8 or kernel.ndim != 2:
            raise ValueError(f"QuantizedKernel {mode} kernel must be a 2-D int8 array, "
                             f"got {kernel.ndim}-D {kernel.dtype}")
        scale = np.array(kernel_scale, dtype=np.float32, order="C", copy=True)
        self.k = kernel.shape[0]
        if self.k < 1:
            raise ValueError(f"QuantizedKernel needs at least one input row, got kernel shape {kernel.shape}")
        self.n = scale.shape[scale.ndim - 1] if scale.ndim else 0
        self.mode = mode
        self.quantize_inputs = quantize_inputs
        zero = None
        if mode == "int8":
            self.n = kernel.shape[1]
            if scale.shape != (self.n,):
                raise ValueError(f"QuantizedKernel int8 kernel_scale must have shape ({self.n},), "
                                 f"got {scale.shape}")
            if kernel_zero is not None or block_size != -1:
                raise ValueError("QuantizedKernel int8 takes no kernel_zero or block_size")
            if self.k > FD_Q8_MAX_K:
                raise ValueError(f"QuantizedKernel int8 supports up to {FD_Q8_MAX_K} input rows "
                                 f"(int32 sums), got {self.k}")
            self.block_size = -1
        else:
            if kernel.shape[1] != (self.n + 1) // 2:
                raise ValueError(f"QuantizedKernel int4 kernel holds two units per byte: for "
                                 f"{self.n} units expected shape ({self.k}, {(self.n + 1) // 2}), got {kernel.shape}")
            if block_size == -1:
                if scale.shape != (self.n,) or kernel_zero is not None:
                    raise ValueError(f"QuantizedKernel int4 with one scale per unit needs kernel_scale of "
                                     f"shape ({self.n},) and no kernel_zero, got {scale.shape}")
            else:
                if block_size < 1:
                    raise ValueError(f"QuantizedKernel int4 block_size must be -1 or positive, got {block_size}")
                groups = (self.k + block_size - 1) // block_size
                zero = np.array(kernel_zero, dtype=np.int8, order="C", copy=True) if kernel_zero is not None else None
                if scale.shape != (groups, self.n) or zero is None or zero.shape != (groups, self.n):
                    raise ValueError(f"QuantizedKernel int4 with block_size {block_size} needs kernel_scale and "
                                     f"kernel_zero of shape ({groups}, {self.n}), got {scale.shape} and "
                                     f"{None if zero is None else zero.shape}")
                if zero.min() < -8 or zero.max() > 7:
                    raise ValueError(f"QuantizedKernel int4 kernel_zero must lie in [-8, 7], "
                                     f"got [{zero.min()}, {zero.max()}]")
            self.block_size = block_size
        self.kernel = _read_only(np.array(kernel, order="C", copy=True))
        self.kernel_scale = _read_only(scale)
        self.kernel_zero = None if zero is None else _read_only(zero)
        # int4 with quantized inputs (Keras: per unit only) is an int8 product of int4 values:
        # packed as int8 it runs every int8 path, exact int32 sums de-scaled as Keras does
        self._native = self.n > 0 and (mode == "int4" and (not quantize_inputs or self.block_size == -1 and self.k <= FD_Q8_MAX_K)
                                       or mode == "int8" and quantize_inputs)
        if self._native:
            self._pack(quantizers, fd_q4_recipe_of(fd_qgemm_isa()))

    cdef _pack(self, quantizers, fd_q4_recipe recipe):
        cdef ptrdiff_t k = self.k, n = self.n, npad = (n + FD_QPANEL - 1) // FD_QPANEL * FD_QPANEL
        cdef ptrdiff_t block = self.block_size if self.block_size > 0 else k
        cdef cnp.ndarray kern = <cnp.ndarray>self.kernel, sc = <cnp.ndarray>self.kernel_scale, q, zero
        cdef cnp.ndarray wp, comp, scale_out, zero_out
        cdef bint as_int8 = self.mode == "int8" or self.quantize_inputs
        if as_int8:
            if self.mode == "int4":
                kern = np.ascontiguousarray(quantizers.unpack_int4(self.kernel, n, axis=-1))
            wp = _aligned_empty(fd_q8_packed_size(k, n), cnp.NPY_INT8, 1)
            comp = _aligned_empty(npad, cnp.NPY_INT32, 4)
            scale_out = _aligned_empty(npad, cnp.NPY_FLOAT32, 4)
            with nogil:
                fd_q8_pack(<const int8_t *>cnp.PyArray_DATA(kern), n, k, n, <const float *>cnp.PyArray_DATA(sc),
                           <int8_t *>cnp.PyArray_DATA(wp), <int32_t *>cnp.PyArray_DATA(comp),
                           <float *>cnp.PyArray_DATA(scale_out))
            self._comp = _read_only(comp)
            zero_out = None
            self.int4_recipe = None
            # int4 values: a nibble copy too where the AVX512-VNNI row kernel can read it (half
            # the bytes of the int8 panels, which bound one row's time)
            if self.mode == "int4" and fd_qgemm_isa() in (FD_QISA_AVX512_VNNI, FD_QISA_AMX):
                nib = _aligned_empty(fd_q8_nibbles_size(k, n), cnp.NPY_UINT8, 1)
                with nogil:
                    fd_q8_pack_nibbles(<const int8_t *>cnp.PyArray_DATA(kern), n, k, n,
                                       <uint8_t *>cnp.PyArray_DATA(nib))
                self._nibbles = _read_only(nib)
        else:
            q = np.ascontiguousarray(quantizers.unpack_int4(self.kernel, n, axis=-1))
            wp = _aligned_empty(fd_q4_packed_size(recipe, k, n, block), cnp.NPY_UINT8, 1)
            scale_out = _aligned_empty(fd_q4_params_size(k, n, block), cnp.NPY_FLOAT32, 4)
            zero = self.kernel_zero if self.kernel_zero is not None else None
            zero_out = _aligned_empty(fd_q4_params_size(k, n, block), cnp.NPY_FLOAT32, 4) if zero is not None else None
            fd_q4_pack(recipe, <const int8_t *>cnp.PyArray_DATA(q), n, k, n, block, <const float *>cnp.PyArray_DATA(sc),
                       NULL if zero is None else <const int8_t *>cnp.PyArray_DATA(zero),
                       <uint8_t *>cnp.PyArray_DATA(wp), <float *>cnp.PyArray_DATA(scale_out),
                       NULL if zero_out is None else <float *>cnp.PyArray_DATA(zero_out))
            self._comp = None
            self.int4_recipe = _q4_recipe_name(recipe)
        self._packed = _read_only(wp)
        self._scale = _read_only(scale_out)
        self._zero = None if zero_out is None else _read_only(zero_out)
        self._w.k = k
        self._w.n = n
        self._w.bits = 8 if as_int8 else 4
        self._w.block = block
        self._w.w = cnp.PyArray_DATA(<cnp.ndarray>self._packed)
        self._w.comp = NULL if self._comp is None else <const int32_t *>cnp.PyArray_DATA(<cnp.ndarray>self._comp)
        self._w.scale = <const float *>cnp.PyArray_DATA(<cnp.ndarray>self._scale)
        self._w.zero = NULL if self._zero is None else <const float *>cnp.PyArray_DATA(<cnp.ndarray>self._zero)
        self._w.recipe = recipe
        self._w.w4 = NULL if self._nibbles is None else <const uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>self._nibbles)

    def __reduce__(self):
        return (QuantizedKernel, (self.mode, self.kernel, self.kernel_scale, self.kernel_zero,
                                  self.block_size, self.quantize_inputs))   # packed again on load

    @property
    def shape(self):
        """(K, N): the float kernel's shape."""
        return (self.k, self.n)

    @property
    def _row_nibbles(self):
        """Testing hook: whether one-row calls read a nibble copy (int4 values, AVX512-VNNI)."""
        return self._nibbles is not None

    @property
    def native(self):
        """True when the integer kernels run it (else fastdense.ops computes it in NumPy)."""
        return bool(self._native)

    def __repr__(self):
        block = "" if self.mode == "int8" else f" block_size={self.block_size}"
        inputs = "inputs quantized" if self.quantize_inputs else "float inputs"
        return f"<QuantizedKernel {self.mode} shape=({self.k}, {self.n}){block} ({inputs})>"


def _q4_repacked(QuantizedKernel w, str recipe):
    """A copy of float-input int4 kernel w packed for `recipe` ("digits" or "float") whatever this
    machine's path would pick: for tests to run both recipes on every path."""
    from fastdense import quantizers

    if w.int4_recipe is None:
        raise ValueError(f"only float-input int4 kernels have a recipe, got {w!r}")
    if recipe not in _Q4_RECIPES:
        raise ValueError(f"int4 recipe must be one of {sorted(_Q4_RECIPES)}, got {recipe!r}")
    cdef QuantizedKernel out = QuantizedKernel(w.mode, w.kernel, w.kernel_scale, w.kernel_zero, w.block_size,
                                               w.quantize_inputs)
    out._pack(quantizers, _Q4_RECIPES[recipe])
    return out


cdef object _read_only(cnp.ndarray a):
    a.flags.writeable = False
    return a.view()   # a view of a read-only base can never be made writeable


cdef int _qdense_run(QuantizedKernel w, ptrdiff_t m, const float *x, const float *bias, const fd_act *act,
                     float *out) except -1:
    """out := act(x @ w + bias): x (m, K) and out (m, N) (or (m, N / 2) for glu) C-contiguous float32,
    w native, bias NULL or (N,); the GIL released, split over the pool as a plan's quantized step
    is (the same bits). The one call sequence of qdense and the op's fast path."""
    cdef ptrdiff_t n = w.n, nout = n // 2, i
    cdef bint halves = fd_act_halves(act.code)
    cdef float *full = out
    cdef fd_qisa isa = fd_qgemm_isa()
    cdef int rc
    if halves:   # the epilogue halves rows of n columns in place: whole rows go to a scratch
        full = <float *>malloc(<size_t>m * <size_t>n * sizeof(float))
        if full == NULL:
            raise MemoryError("fastdense: could not allocate scratch memory")
    with nogil:
        fd_busy_enter()
        rc = fd_qdense(isa, &w._w, m, x, w.k, act, bias, full, n, fd_get_num_threads())
        fd_busy_leave()
        if halves:
            if rc == FD_OK:
                for i in range(m):
                    memcpy(out + i * nout, full + i * n, <size_t>nout * sizeof(float))
            free(full)
    if rc == FD_ERR_NOMEM:
        raise MemoryError("fastdense: could not allocate scratch memory")
    if rc != FD_OK:
        raise ValueError(f"fastdense: the quantized kernel refused its arguments (code {rc})")
    return 0


def qdense(cnp.ndarray x, QuantizedKernel w, object bias, cnp.ndarray out, int code,
           double p0, double p1, double p2):
    """out := act(x @ w + bias) for a validated C-contiguous float32 x (M, K), w native, bias
    None or float32 (N,), out C-contiguous float32 (M, N) (or (M, N / 2) for glu)."""
    cdef fd_act act
    act.code = code
    act.p[0] = p0
    act.p[1] = p1
    act.p[2] = p2
    _qdense_run(w, cnp.PyArray_DIM(x, 0), <const float *>cnp.PyArray_DATA(x),
                NULL if bias is None else <const float *>cnp.PyArray_DATA(<cnp.ndarray>bias), &act,
                <float *>cnp.PyArray_DATA(out))
    return out


cdef object _qdense_fast(object x, QuantizedKernel w, object bias, object spec, object out):
    """dense_fast for a QuantizedKernel: the result when w is native and x, bias, spec and out are
    in kernel form in float32 (as _fast_operands accepts them; out disjoint from w.kernel too, as
    ops checks it), else None (the validating path: casts, the NumPy reference, every error)."""
    if not w._native:
        return None
    cdef fd_dense_args a
    a.k = w.k
    a.n = w.n
    cdef object res = _fast_operands(x, cnp.NPY_FLOAT32, w.kernel, bias, spec, out, &a)
    if res is not None and cnp.PyArray_SIZE(<cnp.ndarray>res) != 0:
        _qdense_run(w, a.m, <const float *>a.x, <const float *>a.bias, &a.act, <float *>a.out)
    return res


def quantize_rows(cnp.ndarray x):
    """(q int8, scale float32) of a C-contiguous float32 (M, K): the kernels' input quantizer."""
    cdef ptrdiff_t m = cnp.PyArray_DIM(x, 0), k = cnp.PyArray_DIM(x, 1)
    cdef cnp.ndarray q = np.empty((m, k), np.int8), s = np.empty((m, 1), np.float32)
    with nogil:
        fd_q8_quantize_rows(fd_qgemm_isa(), m, k, <const float *>cnp.PyArray_DATA(x), k,
                            <int8_t *>cnp.PyArray_DATA(q), k, <float *>cnp.PyArray_DATA(s))
    return q, s
