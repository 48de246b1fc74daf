/* fd_dense.c -- one fused dense call, out = act(x @ w + bias): which GEMM computes it, and how
 * it is split over threads.
 *
 * The product is computed in row blocks, each followed by its bias + activation epilogue while
 * the block is still in cache. The GEMM of a block is fastdense's own kernel (fd_gemm.c: packed
 * weights, a few rows against plain weights, or weights packed per call) where the CPU has it
 * for float32, else the BLAS (the row-major trick: out^T = w^T x^T in BLAS's column-major terms,
 * so no operand is copied).
 *
 * Threading (docs: "Threads"): when the BLAS runs single-threaded, or the GEMM is fastdense's
 * own, a call splits over fastdense's pool (fd_pool.c), taking only cores that no other
 * fastdense call is using, so one big call gets every core and concurrent calls get one core
 * each instead of fighting; the split itself depends only on the shape and the thread count, so
 * results never depend on load. When the BLAS is multi-threaded, each GEMM is left to it and
 * concurrent multi-threaded GEMMs are serialised (OpenBLAS collapses when two callers share its
 * pool); epilogues still overlap. Thresholds and block sizes: fd_tune.h.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fd_dense.h"
#include "fd_gemm.h"
#include "fd_pool.h"
#include "fd_tune.h"

static atomic_int own_threading = -1; /* -1 = follow the BLAS thread count */

void fd_set_own_threading(int v) { atomic_store(&own_threading, v); }

int fd_own_threading(void)
{
    int v = atomic_load(&own_threading);
    if (v >= 0) return v;
    /* an unknown BLAS may thread on its own: let it, rather than oversubscribe */
    return fd_blas_single_threaded();
}

/* What a job of a dense call hands its tasks. */
typedef struct {
    const fd_dense_args *a;
    ptrdiff_t rows_per_task, cols_per_task;
    void *shared;                 /* glu: full-width GEMM result shared by column tasks */
} job_t;

static size_t esize(const fd_dense_args *a) { return a->dtype == FD_F32 ? 4 : 8; }

/* The epilogue needs whole rows (softmax and co., or a fused normalization). */
static int rowwise(const fd_dense_args *a) { return fd_act_rowwise(a->act.code) || a->norm != NULL; }

/* Bias + activation of a block, then the fused normalization (only ever given whole rows). */
static void epilogue(const fd_dense_args *a, const char *src, ptrdiff_t ld_src, char *dst,
                     ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t col0, ptrdiff_t cols)
{
    const size_t es = esize(a);
    const char *bias = a->bias ? (const char *)a->bias + col0 * es : NULL;
    const ptrdiff_t cols_out = fd_act_halves(a->act.code) ? cols / 2 : cols;
    if (a->dtype == FD_F32) {
        fd_epilogue_f32(&a->act, (const float *)bias, (const float *)src, ld_src, (float *)dst, ld_dst, rows, cols);
        if (a->norm) fd_norm_rows_f32(a->norm, (const float *)dst, ld_dst, (float *)dst, ld_dst, rows, cols_out);
    } else {
        fd_epilogue_f64(&a->act, (const double *)bias, (const double *)src, ld_src, (double *)dst, ld_dst, rows, cols);
        if (a->norm) fd_norm_rows_f64(a->norm, (const double *)dst, ld_dst, (double *)dst, ld_dst, rows, cols_out);
    }
}

/* The packed kernel computes this call's product (see fd_gemm.c). */
static int uses_packed(const fd_dense_args *a)
{
    return a->wpack != NULL && a->dtype == FD_F32 && fd_packed_available();
}

/* A few rows of f32 against a row-major kernel: fastdense's own kernel reads the weights in
   place (a BLAS is slow there: OpenBLAS sgemm with 4 rows runs at a tenth of its speed). */
static int uses_direct(const fd_dense_args *a)
{
    return a->dtype == FD_F32 && a->m >= 2 && a->m <= FD_DIRECT_MAX_ROWS && !a->w_colmajor && a->wpack == NULL
           && fd_packed_available();
}

/* Two rows or more of f32 without packed weights (and not run by the direct kernel): the
   packed kernel's tiles on weights packed one K block at a time into a buffer that stays in
   cache (fd_gemm_kblocks_f32), so every batch gives the bits of the layer's packed weights.
   OpenBLAS is slow with few rows (the row-major trick makes them its narrow dimension: at
   32x512x512 it takes 1.7x the time of packing plus the packed kernel). */
static int uses_pack_per_call(const fd_dense_args *a)
{
    return a->dtype == FD_F32 && a->wpack == NULL && a->m >= 2 && !uses_direct(a) && fd_packed_available();
}

/* fastdense's own single-threaded kernels: split over its own pool */
static int uses_own_kernel(const fd_dense_args *a)
{
    return uses_packed(a) || uses_direct(a) || uses_pack_per_call(a);
}

/* GEMM of rows [r0, r0+rows) x columns [c0, c0+cols) into C (row-major, ld ldc). */
static int gemm_block(const fd_dense_args *a, ptrdiff_t r0, ptrdiff_t rows, ptrdiff_t c0,
                      ptrdiff_t cols, char *C, ptrdiff_t ldc)
{
    const size_t es = esize(a);
    const char ta = a->w_colmajor ? 'T' : 'N', tb = a->x_colmajor ? 'T' : 'N';
    const char *A = (const char *)a->w + (size_t)(a->w_colmajor ? c0 * a->ldw : c0) * es;
    const char *B = (const char *)a->x + (size_t)(a->x_colmajor ? r0 : r0 * a->ldx) * es;
    if (uses_packed(a)) {
        /* c0 is a multiple of 16 (see task_cols), the start of a panel */
        const ptrdiff_t rsx = a->x_colmajor ? 1 : a->ldx, csx = a->x_colmajor ? a->ldx : 1;
        return fd_gemm_packed_f32(rows, cols, a->k, (const float *)B, rsx, csx, a->wpack + c0 * a->k,
                                  (float *)C, ldc);
    }
    if (uses_direct(a)) {
        const ptrdiff_t rsx = a->x_colmajor ? 1 : a->ldx, csx = a->x_colmajor ? a->ldx : 1;
        return fd_gemm_direct_f32(rows, cols, a->k, (const float *)B, rsx, csx, (const float *)A,
                                  a->ldw, (float *)C, ldc);
    }
    if (uses_pack_per_call(a)) {
        const ptrdiff_t rsx = a->x_colmajor ? 1 : a->ldx, csx = a->x_colmajor ? a->ldx : 1;
        return fd_gemm_kblocks_f32(rows, cols, a->k, (const float *)B, rsx, csx, (const float *)A, a->ldw,
                                   a->w_colmajor, (float *)C, ldc);
    }
    const ptrdiff_t lim = fd_get_blas_int_max();
    if (rows == 1 && a->k > 0 && cols <= lim && a->k <= lim && a->ldw <= lim && a->ldx <= lim) {
        /* one sample: y(cols) = op(A) x, A = w^T viewed column-major */
        const ptrdiff_t incx = a->x_colmajor ? a->ldx : 1;
        if (ta == 'N') fd_blas_gemv(a->dtype, 'N', cols, a->k, A, a->ldw, B, incx, C);
        else fd_blas_gemv(a->dtype, 'T', a->k, cols, A, a->ldw, B, incx, C);
        return 0;
    }
    return fd_blas_gemm(a->dtype, ta, tb, cols, rows, a->k, A, a->ldw, B, a->ldx, C, ldc);
}

/* Rows [r0, r1) of the output, all columns: GEMM then epilogue while the block is hot. */
static int dense_rows(const fd_dense_args *a, ptrdiff_t r0, ptrdiff_t r1, void *scratch, int lock_blas)
{
    const size_t es = esize(a);
    const int halves = fd_act_halves(a->act.code);
    char *out = (char *)a->out + (size_t)r0 * a->ldo * es;
    char *C = halves ? scratch : out;
    const ptrdiff_t ldc = halves ? a->n : a->ldo;
    if (uses_own_kernel(a)) lock_blas = 0;
    if (lock_blas) fd_blas_lock();
    int rc = gemm_block(a, r0, r1 - r0, 0, a->n, C, ldc);
    if (lock_blas) fd_blas_unlock();
    if (rc) return rc;
    epilogue(a, C, ldc, out, a->ldo, r1 - r0, 0, a->n);
    return 0;
}

static int task_rows(void *ctx, ptrdiff_t t, void *scratch)
{
    const job_t *job = ctx;
    const fd_dense_args *a = job->a;
    ptrdiff_t r0 = t * job->rows_per_task, r1 = r0 + job->rows_per_task;
    if (r1 > a->m) r1 = a->m;
    return dense_rows(a, r0, r1, scratch, 0);
}

/* Columns [c0, c1) of every row; the epilogue too when the activation is element-wise. */
static int task_cols(void *ctx, ptrdiff_t t, void *scratch)
{
    (void)scratch;
    const job_t *job = ctx;
    const fd_dense_args *a = job->a;
    const size_t es = esize(a);
    ptrdiff_t c0 = t * job->cols_per_task, c1 = c0 + job->cols_per_task;
    if (c1 > a->n) c1 = a->n;
    char *C = job->shared ? (char *)job->shared + (size_t)c0 * es : (char *)a->out + (size_t)c0 * es;
    const ptrdiff_t ldc = job->shared ? a->n : a->ldo;
    const int rc = gemm_block(a, 0, a->m, c0, c1 - c0, C, ldc);
    if (rc) return rc;
    if (!rowwise(a)) epilogue(a, C, ldc, C, ldc, a->m, c0, c1 - c0);
    return 0;
}

/* Epilogue of rows [r0, r1) (used after a multi-threaded BLAS GEMM). */
static int task_epilogue(void *ctx, ptrdiff_t t, void *scratch)
{
    (void)scratch;
    const job_t *job = ctx;
    const fd_dense_args *a = job->a;
    const size_t es = esize(a);
    ptrdiff_t r0 = t * job->rows_per_task, r1 = r0 + job->rows_per_task;
    if (r1 > a->m) r1 = a->m;
    const char *src = job->shared ? (const char *)job->shared + (size_t)r0 * a->n * es
                                  : (const char *)a->out + (size_t)r0 * a->ldo * es;
    epilogue(a, src, job->shared ? a->n : a->ldo, (char *)a->out + (size_t)r0 * a->ldo * es,
             a->ldo, r1 - r0, 0, a->n);
    return 0;
}

static ptrdiff_t ceil_div(ptrdiff_t a, ptrdiff_t b) { return (a + b - 1) / b; }

/* Rows per cache block: the output block about FD_TUNE_BLOCK_BYTES, but at least
   FD_TUNE_BLOCK_MIN_ROWS rows so that the BLAS re-packs the weights rarely. */
static ptrdiff_t block_rows(const fd_dense_args *a)
{
    ptrdiff_t r = (ptrdiff_t)(FD_TUNE_BLOCK_BYTES / ((size_t)(a->n > 0 ? a->n : 1) * esize(a)));
    if (r < FD_TUNE_BLOCK_MIN_ROWS) r = FD_TUNE_BLOCK_MIN_ROWS;
    return r;
}

/* Rows [r0, r1) of the plain weights into the shared packed copy (job->shared). */
static int task_pack_rows(void *ctx, ptrdiff_t t, void *scratch)
{
    (void)scratch;
    const job_t *job = ctx;
    const fd_dense_args *a = job->a;
    ptrdiff_t r0 = t * job->rows_per_task, r1 = r0 + job->rows_per_task;
    if (r1 > a->k) r1 = a->k;
    fd_pack_f32_rows((const float *)a->w, a->ldw, a->k, a->n, r0, r1, (float *)job->shared);
    return 0;
}

static int dense_own_threads(const fd_dense_args *a, double work);

/* Many rows per thread against plain row-major weights: the threads pack the weights once,
   together, into one copy (the caller's buffer), then run the packed kernel on it -- one copy
   in the cache for all of them, instead of one per row part. 1 if done (rc in *rc). */
static int dense_shared_pack(const fd_dense_args *a, double work, int parts, int *rc)
{
    if (parts < 2 || a->w_colmajor || a->wpack != NULL) return 0;
    float *wp = fd_whole_pack_buffer(a->m / parts, a->k, a->n);
    if (!wp) return 0;
    job_t job = {a, 0, 0, wp};
    job.rows_per_task = ceil_div(ceil_div(a->k, parts), 8) * 8;
    *rc = fd_pool_run(&(fd_tasks){task_pack_rows, &job, ceil_div(a->k, job.rows_per_task), 0}, parts - 1);
    if (*rc == 0) {
        fd_dense_args packed = *a;
        packed.wpack = wp;
        *rc = dense_own_threads(&packed, work);
    }
    return 1;
}

static int dense_own_threads(const fd_dense_args *a, double work)
{
    /* The split depends only on the size and fastdense's thread count, never on how many
       cores are free, so results are the same bit for bit whatever else runs; the cores free
       now take the parts (a lone call gets them all, concurrent calls run their parts on
       their own thread). Few rows split by columns, so a thread that runs several parts
       still packs each slice of the weights once. */
    const int own = uses_own_kernel(a);
    const double own_work = (double)a->m * (double)((a->n + 15) / 16 * 16) * (double)(a->k > 0 ? a->k : 1);
    const int parts = (work >= FD_TUNE_SPLIT_WORK
                       || (a->m <= FD_TUNE_SPLIT_FEW_ROWS && work >= FD_TUNE_SPLIT_WORK_FEW_ROWS)
                       || (own && own_work >= FD_TUNE_SPLIT_WORK_OWN))
                      ? fd_get_num_threads() : 1;
    const int plain = uses_pack_per_call(a);
    int shared_rc;
    if (plain && a->m > a->n && dense_shared_pack(a, work, parts, &shared_rc)) return shared_rc;
    const unsigned long helpers = parts > 1 ? fd_pool_claim(parts - 1) : 0;
    job_t job = {a, 0, 0, NULL};
    /* Weights packed per call: each column part packs all of x again, each row part all of the
       weights; split the one that costs less to pack twice, rows into one part per thread. */
    if (parts > 1 && (plain ? a->m <= a->n : a->m < FD_TUNE_COLS_SPLIT_ROWS * parts)
        && a->n >= FD_TUNE_COLS_SPLIT_MIN_COLS * parts) {
        /* few rows: split columns (each thread packs only its slice of the weights, multiples
           of 16 columns); a row-wise epilogue runs after the barrier */
        const int halves = fd_act_halves(a->act.code);
        /* a few rows pack nothing per task: cut finer (four parts per thread, 64 columns at
           least), so a thread slowed down by the machine takes fewer of them */
        const ptrdiff_t pieces = a->m < 6 && uses_own_kernel(a) ? 4 * (ptrdiff_t)parts : parts;
        job.cols_per_task = ceil_div(ceil_div(a->n, pieces), 16) * 16;
        if (pieces > parts && job.cols_per_task < 64) job.cols_per_task = 64;
        if (halves) {
            job.shared = malloc((size_t)a->m * a->n * esize(a) + 64);
            if (!job.shared) {
                fd_pool_release(helpers);
                return FD_ERR_NOMEM;
            }
        }
        int rc = fd_pool_run_claimed(&(fd_tasks){task_cols, &job, ceil_div(a->n, job.cols_per_task), 0}, helpers);
        if (rc == 0 && rowwise(a)) {
            /* softmax and co. (or a fused normalization) need whole rows: spread them over the pool too, 16 rows at least
               per part (a row's result does not depend on the part it is in) */
            job_t rows_job = {a, 0, 0, job.shared};
            rows_job.rows_per_task = ceil_div(a->m, parts);
            if (rows_job.rows_per_task < 16) rows_job.rows_per_task = 16;
            rc = fd_pool_run(&(fd_tasks){task_epilogue, &rows_job, ceil_div(a->m, rows_job.rows_per_task), 0},
                             parts - 1);
        }
        free(job.shared);
        return rc;
    }
    ptrdiff_t br = plain ? a->m : block_rows(a);
    if (parts > 1) {
        ptrdiff_t even = ceil_div(a->m, parts);
        if (br > even) br = even;
        if (br < 8) br = 8;
    }
    if (br > a->m) br = a->m;
    if (br > fd_get_blas_int_max()) br = fd_get_blas_int_max();
    job.rows_per_task = br;
    /* glu: each thread's rows of the full-width product before halving */
    const size_t glu_bytes = fd_act_halves(a->act.code) ? (size_t)br * a->n * esize(a) + 64 : 0;
    return fd_pool_run_claimed(&(fd_tasks){task_rows, &job, ceil_div(a->m, br), glu_bytes}, helpers);
}

static int dense_blas_threads(const fd_dense_args *a, double work)
{
    /* the BLAS threads each GEMM; blocks are large so it re-packs the weights rarely */
    const size_t es = esize(a);
    const int halves = fd_act_halves(a->act.code);
    const int lock = work >= FD_TUNE_BLAS_MT_WORK;
    ptrdiff_t br = (ptrdiff_t)((size_t)FD_TUNE_BLAS_BLOCK_BYTES / ((size_t)(a->n > 0 ? a->n : 1) * es));
    if (br < FD_TUNE_BLAS_BLOCK_MIN_ROWS) br = FD_TUNE_BLAS_BLOCK_MIN_ROWS;
    if (br > a->m) br = a->m;
    if (br > fd_get_blas_int_max()) br = fd_get_blas_int_max();
    void *scratch = NULL;
    if (halves) {
        scratch = malloc((size_t)br * a->n * es + 64);
        if (!scratch) return FD_ERR_NOMEM;
    }
    int rc = 0;
    for (ptrdiff_t r0 = 0; r0 < a->m && rc == 0; r0 += br) {
        ptrdiff_t r1 = r0 + br < a->m ? r0 + br : a->m;
        char *out = (char *)a->out + (size_t)r0 * a->ldo * es;
        char *C = halves ? scratch : out;
        const ptrdiff_t ldc = halves ? a->n : a->ldo;
        if (lock) fd_blas_lock();
        rc = gemm_block(a, r0, r1 - r0, 0, a->n, C, ldc);
        if (lock) fd_blas_unlock();
        if (rc) break;
        const double ework = (double)(r1 - r0) * a->n;
        if (ework < FD_TUNE_EPILOGUE_SPLIT_WORK || fd_get_num_threads() < 2) {
            epilogue(a, C, ldc, out, a->ldo, r1 - r0, 0, a->n);
            continue;
        }
        fd_dense_args sub = *a;
        sub.m = r1 - r0;
        sub.out = out;
        job_t job = {&sub, 0, 0, halves ? scratch : NULL};
        job.rows_per_task = ceil_div(sub.m, fd_get_num_threads());
        if (job.rows_per_task < 1) job.rows_per_task = 1;
        rc = fd_pool_run(&(fd_tasks){task_epilogue, &job, ceil_div(sub.m, job.rows_per_task), 0},
                         fd_get_num_threads() - 1);
    }
    free(scratch);
    return rc;
}

int fd_dense(const fd_dense_args *a)
{
    if (a->m == 0 || (a->n == 0)) return 0;
    const double work = (double)a->m * (double)a->n * (double)(a->k > 0 ? a->k : 1);
    if (work < FD_TUNE_BLAS_MT_WORK) {
        /* small: one block on the caller, no bookkeeping at all */
        void *scratch = NULL;
        if (fd_act_halves(a->act.code)) {
            scratch = malloc((size_t)a->m * a->n * esize(a) + 64);
            if (!scratch) return FD_ERR_NOMEM;
        }
        int rc = dense_rows(a, 0, a->m, scratch, 0);
        free(scratch);
        return rc;
    }
    fd_busy_enter();
    /* the packed kernel is single-threaded: it always splits over fastdense's own pool */
    int rc = (fd_own_threading() || uses_own_kernel(a)) ? dense_own_threads(a, work) : dense_blas_threads(a, work);
    fd_busy_leave();
    return rc;
}

int fd_dense_serial(const fd_dense_args *a, void *glu_scratch, int lock_blas)
{
    if (a->m == 0 || a->n == 0) return 0;
    return dense_rows(a, 0, a->m, glu_scratch, lock_blas);
}
