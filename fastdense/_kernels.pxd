# The C side of fastdense._kernels: every csrc declaration the glue uses, and the constants
# shared with C. The cpdef enums take their values from the C headers (never a number copied
# here) and are module attributes in Python: _kernels.FD_STEP_DENSE, _kernels.FD_ERR_LIMIT, ...
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport int8_t, int32_t, int64_t


cdef extern from "fd_status.h" nogil:
    cpdef enum fd_status:
        FD_OK
        FD_ERR_NOMEM
        FD_ERR_ARG
        FD_ERR_LIMIT
        FD_ERR_INDEX


cdef extern from "fd_cpu.h" nogil:
    int FD_CPU_FEATURE_COUNT
    int fd_cpu_has(int f)
    const char *fd_cpu_feature_name(int f)
    int fd_cpu_level()
    const char *fd_cpu_path()
    const char *fd_cpu_vendor_string()
    int fd_cpu_family()
    int fd_cpu_model()


cdef extern from "fd_act.h" nogil:
    ctypedef struct fd_act:
        int code
        double p[3]
    # activation codes reach Python through activation_table() (one list: fd_act_list.h);
    # the glue itself needs these two
    enum: FD_ACT_LINEAR, FD_ACT_COUNT
    const char *fd_act_name(int code)
    const char *fd_act_id(int code)
    int fd_act_rowwise(int code)
    int fd_act_halves(int code)
    void fd_epilogue_f32(const fd_act *a, const float *bias, const float *src, ptrdiff_t ld_src,
                         float *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in)
    void fd_epilogue_f64(const fd_act *a, const double *bias, const double *src, ptrdiff_t ld_src,
                         double *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in)


cdef extern from "fd_blas.h" nogil:
    cpdef enum fd_dtype:
        FD_F32
        FD_F64
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
    void fd_set_blas_int_max(ptrdiff_t v)
    ptrdiff_t fd_get_blas_int_max()


cdef extern from "fd_pool.h" nogil:
    void fd_set_num_threads(int n)
    int fd_get_num_threads()
    int fd_cpu_count()


cdef extern from "fd_dense.h" nogil:
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
        const void *norm      # a fused fd_norm (fd_norm.h): set by plans in C, NULL from Python
    int fd_dense(const fd_dense_args *a)
    int fd_own_threading()
    void fd_set_own_threading(int v)


cdef extern from "fd_tune.h" nogil:
    # the path-independent tuning constants; fastdense.models.plan reads FD_TUNE_PLAN_*
    cpdef enum fd_tune:
        FD_TUNE_WORKER_SPIN
        FD_TUNE_JOIN_SPIN
        FD_TUNE_BLAS_MT_WORK
        FD_TUNE_SPLIT_WORK
        FD_TUNE_SPLIT_FEW_ROWS
        FD_TUNE_SPLIT_WORK_FEW_ROWS
        FD_TUNE_SPLIT_WORK_OWN
        FD_TUNE_COLS_SPLIT_ROWS
        FD_TUNE_COLS_SPLIT_MIN_COLS
        FD_TUNE_BLOCK_BYTES
        FD_TUNE_BLOCK_MIN_ROWS
        FD_TUNE_BLAS_BLOCK_BYTES
        FD_TUNE_BLAS_BLOCK_MIN_ROWS
        FD_TUNE_EPILOGUE_SPLIT_WORK
        FD_TUNE_PLAN_ROWS_PER_BLOCK
        FD_TUNE_PLAN_BLOCK_BYTES
        FD_TUNE_PLAN_BIG_L2
        FD_TUNE_PLAN_BLOCK_BYTES_SMALL_L2
        FD_TUNE_PLAN_BLAS_BLOCK_BYTES
        FD_TUNE_PLAN_SMALL_BATCH
        FD_TUNE_PLAN_SMALL_BATCH_WORK
        FD_TUNE_STEP_SPLIT_NS
        FD_TUNE_STEP_PS_PER_BYTE_Q8
        FD_TUNE_STEP_PS_PER_BYTE_Q8_AMD


cdef extern from "fd_gemm.h" nogil:
    ptrdiff_t fd_pack_f32_size(ptrdiff_t k, ptrdiff_t n)
    void fd_pack_f32(const float *w, ptrdiff_t ldw, int colmajor, ptrdiff_t k, ptrdiff_t n, float *dst)
    int fd_packed_available()
    const char *fd_gemm_kernel_name()


cdef extern from "fd_gather.h" nogil:
    ctypedef struct fd_qtable:
        ptrdiff_t rows, dim
        int bits
        ptrdiff_t block
        const int8_t *q
        const float *scale
        const int8_t *zero
    int fd_qtable_check(const fd_qtable *t)
    ptrdiff_t fd_gather_i32_q(const int32_t *ids, ptrdiff_t count, const fd_qtable *t, float *out)
    ptrdiff_t fd_gather_i64_q(const int64_t *ids, ptrdiff_t count, const fd_qtable *t, float *out)


cdef extern from "fd_plan.h" nogil:
    cpdef enum fd_gather_kind:
        FD_GATHER_FLOAT
        FD_GATHER_QUANTIZED
    cpdef enum fd_step_kind:
        FD_STEP_DENSE
        FD_STEP_ACT
        FD_STEP_ADD
        FD_STEP_SUB
        FD_STEP_MUL
        FD_STEP_AVG
        FD_STEP_MAX
        FD_STEP_MIN
        FD_STEP_CONCAT
        FD_STEP_COPY
        FD_STEP_NORM
        FD_STEP_AFFINE
        FD_STEP_PRELU
        FD_STEP_GATHER
        FD_STEP_QDENSE
        FD_STEP_POOL
        FD_STEP_KIND_COUNT
    ctypedef struct fd_step:
        int kind
        int nsrc
        const int *src
        int dst
        ptrdiff_t rows, k, n
        const ptrdiff_t *cols
        const void *w
        const void *bias
        const float *wpack
        fd_act act
        int mode
        double eps
    ctypedef struct fd_buffer:
        ptrdiff_t width
        int input_index
        int output_index
        ptrdiff_t offset
    ctypedef struct fd_plan:
        int dtype
        int nsteps
        const fd_step *steps
        int nbufs
        const fd_buffer *bufs
        int ninputs, noutputs
        ptrdiff_t glu_offset
        ptrdiff_t sample_elems
    int fd_plan_check(const fd_plan *p)
    int fd_plan_run(const fd_plan *p, const void *const *inputs, void *const *outputs, ptrdiff_t m,
                    ptrdiff_t block, void *scratch, int max_tasks)
    void fd_plan_set_split_policy(int mode)
    int fd_plan_get_split_policy()
    double fd_plan_step_cost_ns(const fd_plan *p, int s, ptrdiff_t m, int far)
    int fd_plan_weights_far(const fd_plan *p)
    double fd_plan_l2_bytes()
    size_t fd_plan_block_bytes()
