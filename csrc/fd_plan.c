/* fastdense whole-model plan runner: every layer of a block of samples back to back, so the
   intermediates of one block stay in cache; blocks spread over fastdense's pool when the BLAS
   is single-threaded (see fd_dense.c for the thread policy). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd_cpu.h"
#include "fd_gather.h"
#include "fd_norm.h"
#include "fd_plan.h"
#include "fd_qdense.h"
#include "fd_pool.h"
#include "fd_tune.h"

typedef struct {
    const fd_plan *p;
    const void *const *inputs;
    void *const *outputs;
    ptrdiff_t m, block, nblocks, ntasks;
    char *scratch;
    int lock;
    int policy;                      /* fd_plan_get_split_policy() for this run */
    int far;                         /* one block: the plan's weights do not fit one core's L2 */
    atomic_long next_block;          /* blocks are claimed as threads get free */
    atomic_int bad_index;            /* a gather step met an id outside its table */
} plan_ctx;

/* Where buffer b's rows for samples [r0, ...) are: in the caller's input or output array, or in
   this task's scratch. Computed per use, so a plan needs no per-buffer table per call. */
static char *buffer(const plan_ctx *c, int b, ptrdiff_t r0, char *scratch)
{
    const fd_buffer *bf = &c->p->bufs[b];
    const size_t es = c->p->dtype == FD_F32 ? 4 : 8;
    if (bf->input_index >= 0) return (char *)c->inputs[bf->input_index] + (size_t)r0 * bf->width * es;
    if (bf->output_index >= 0) return (char *)c->outputs[bf->output_index] + (size_t)r0 * bf->width * es;
    return scratch + (size_t)bf->offset * c->block * es;
}

/* The fd_norm of a NORM step: LayerNormalization and co., then its element-wise activation. */
static fd_norm norm_of(const fd_step *st)
{
    const fd_norm norm = {(fd_norm_kind)st->mode, st->eps, st->w, st->bias, st->act};
    return norm;
}

/* The normalization fused into dense step s (a float Dense; after a quantized one it is a step
   of its own): the NORM step right after it, in place on the rows it wrote (what the plan
   builder emits for a Layer/RMS/UnitNormalization that alone reads a Dense's output). It then
   runs in the Dense's epilogue, on each thread's rows while they are in cache, and the run
   skips it. 1 with *norm filled, else 0. */
static int fused_norm(const fd_plan *p, int s, fd_norm *norm)
{
    const fd_step *st = &p->steps[s], *next = &p->steps[s + 1];
    if (s + 1 >= p->nsteps || next->kind != FD_STEP_NORM || next->src[0] != st->dst || next->dst != st->dst ||
        next->n != (fd_act_halves(st->act.code) ? st->n / 2 : st->n))
        return 0;
    *norm = norm_of(next);
    return 1;
}

/* A NORM step's rows [t * chunk, (t + 1) * chunk), as one pool task. */
typedef struct {
    const fd_norm *norm;
    int dtype;
    const char *x;
    char *y;
    ptrdiff_t m, n, chunk;
} norm_job;

static int norm_task(void *ctx, ptrdiff_t t, void *scratch)
{
    const norm_job *j = ctx;
    const ptrdiff_t r0 = t * j->chunk, rows = j->m - r0 < j->chunk ? j->m - r0 : j->chunk;
    (void)scratch;
    if (rows <= 0) return FD_OK;
    if (j->dtype == FD_F32)
        fd_norm_rows_f32(j->norm, (const float *)j->x + r0 * j->n, j->n, (float *)j->y + r0 * j->n, j->n, rows, j->n);
    else
        fd_norm_rows_f64(j->norm, (const double *)j->x + r0 * j->n, j->n, (double *)j->y + r0 * j->n, j->n, rows,
                         j->n);
    return FD_OK;
}

/* Rows per task when one block's rows split over `threads` (0: do not split). Rows are
   independent, so the split changes no bit; small steps stay on the caller. */
static ptrdiff_t split_rows(ptrdiff_t m, ptrdiff_t n, int threads)
{
    if (threads < 2 || m < 8 || (double)m * (double)n < FD_TUNE_EPILOGUE_SPLIT_WORK) return 0;
    return ((m + threads - 1) / threads + 3) / 4 * 4;
}

#define MERGE_LOOP(T, OP)                                                        \
    do {                                                                         \
        T *d = (T *)dst;                                                         \
        const T *s0 = (const T *)buffer(c, st->src[0], r0, scratch);             \
        for (ptrdiff_t i = 0; i < len; i++) d[i] = s0[i];                        \
        for (int j = 1; j < st->nsrc; j++) {                                     \
            const T *sj = (const T *)buffer(c, st->src[j], r0, scratch);         \
            for (ptrdiff_t i = 0; i < len; i++) { T a = d[i], b = sj[i]; d[i] = (OP); } \
        }                                                                        \
    } while (0)

static void merge(const plan_ctx *c, const fd_step *st, int dtype, ptrdiff_t r0, char *scratch,
                  char *dst, ptrdiff_t len)
{
    if (dtype == FD_F32) {
        switch (st->kind) {
        case FD_STEP_ADD: case FD_STEP_AVG: MERGE_LOOP(float, a + b); break;
        case FD_STEP_SUB: MERGE_LOOP(float, a - b); break;
        case FD_STEP_MUL: MERGE_LOOP(float, a * b); break;
        case FD_STEP_MAX: MERGE_LOOP(float, (a > b || a != a) ? a : b); break;
        case FD_STEP_MIN: MERGE_LOOP(float, (a < b || a != a) ? a : b); break;
        }
        if (st->kind == FD_STEP_AVG) {
            float *d = (float *)dst, n = (float)st->nsrc;
            for (ptrdiff_t i = 0; i < len; i++) d[i] /= n;
        }
    } else {
        switch (st->kind) {
        case FD_STEP_ADD: case FD_STEP_AVG: MERGE_LOOP(double, a + b); break;
        case FD_STEP_SUB: MERGE_LOOP(double, a - b); break;
        case FD_STEP_MUL: MERGE_LOOP(double, a * b); break;
        case FD_STEP_MAX: MERGE_LOOP(double, (a > b || a != a) ? a : b); break;
        case FD_STEP_MIN: MERGE_LOOP(double, (a < b || a != a) ? a : b); break;
        }
        if (st->kind == FD_STEP_AVG) {
            double *d = (double *)dst, n = (double)st->nsrc;
            for (ptrdiff_t i = 0; i < len; i++) d[i] /= n;
        }
    }
}

/* ---- global pooling: each sample's rows x n values -> n (the mean, or the maximum) ---- */

#define POOL_CHUNK 256   /* columns summed at a time in doubles on the stack */

#define POOL_ROWS(T)                                                                              \
    static void pool_rows_##T(int mode, const T *x, T *y, ptrdiff_t samples, ptrdiff_t rows,      \
                              ptrdiff_t n)                                                        \
    {                                                                                             \
        for (ptrdiff_t s = 0; s < samples; s++, x += rows * n, y += n) {                          \
            if (mode == 1) {                                                                      \
                for (ptrdiff_t j = 0; j < n; j++) y[j] = x[j];                                    \
                for (ptrdiff_t r = 1; r < rows; r++)                                              \
                    for (ptrdiff_t j = 0; j < n; j++) {                                           \
                        const T v = x[r * n + j], m = y[j];                                       \
                        y[j] = (m == m && !(v <= m)) ? v : m;   /* a NaN, once met, stays */    \
                    }                                                                             \
                continue;                                                                         \
            }                                                                                     \
            for (ptrdiff_t j0 = 0; j0 < n; j0 += POOL_CHUNK) {                                    \
                const ptrdiff_t w = n - j0 < POOL_CHUNK ? n - j0 : POOL_CHUNK;                    \
                double acc[POOL_CHUNK];                                                           \
                for (ptrdiff_t j = 0; j < w; j++) acc[j] = 0.0;                                   \
                for (ptrdiff_t r = 0; r < rows; r++)                                              \
                    for (ptrdiff_t j = 0; j < w; j++) acc[j] += (double)x[r * n + j0 + j];        \
                for (ptrdiff_t j = 0; j < w; j++) y[j0 + j] = (T)(acc[j] / (double)rows);         \
            }                                                                                     \
        }                                                                                         \
    }
POOL_ROWS(float)
POOL_ROWS(double)
#undef POOL_ROWS

/* ---- the thread policy of one block's dense steps (a small batch in one block) ----
   Splitting a step over the pool costs a fork/join (about 0.8 us on a 2-core KVM Xeon), so a
   cheap step runs on the caller alone; a costly one splits (columns for a few rows), and at
   batch 1 the pool's home ranges keep each core on the same columns call after call, so a plan
   whose weights overflow one core's L2 still runs from the L2s of all the cores. The cost is
   estimated from what bounds a step at a few rows: reading its weights, or its multiply-adds.
   Whatever runs where, the bits are the same (the kernels' promise). */
static atomic_int split_policy = -1;

void fd_plan_set_split_policy(int mode) { atomic_store(&split_policy, mode < 0 ? -1 : mode > 0); }
int fd_plan_get_split_policy(void) { return atomic_load(&split_policy); }

/* Bytes of weights dense step st reads per block, and its kernel's picoseconds per byte and per
   multiply-add (fd_tune.h); 0 for other kinds. */
static double step_weights(const fd_plan *p, const fd_step *st, double *ps_byte, double *ps_mac)
{
    const double kn = (double)st->k * (double)st->n;
    if (st->kind == FD_STEP_QDENSE) {
        const fd_qweights *qw = (const fd_qweights *)st->w;
        const int q8 = qw->bits == 8;
        *ps_byte = !q8 ? FD_TUNE_STEP_PS_PER_BYTE_Q4
                   : fd_cpu_vendor_id() == FD_CPU_VENDOR_AMD ? FD_TUNE_STEP_PS_PER_BYTE_Q8_AMD : FD_TUNE_STEP_PS_PER_BYTE_Q8;
        *ps_mac = q8 ? FD_TUNE_STEP_PS_PER_MAC_Q8
                     : qw->recipe == FD_Q4_DIGITS ? FD_TUNE_STEP_PS_PER_MAC_Q4_DIGITS : FD_TUNE_STEP_PS_PER_MAC_Q4_FLOAT;
        return q8 ? kn : kn / 2;
    }
    if (st->kind != FD_STEP_DENSE) return 0;
    const int f32 = p->dtype == FD_F32;
    *ps_byte = f32 ? FD_TUNE_STEP_PS_PER_BYTE_F32 : FD_TUNE_STEP_PS_PER_BYTE_F64;
    *ps_mac = f32 ? FD_TUNE_STEP_PS_PER_MAC_F32 : FD_TUNE_STEP_PS_PER_MAC_F64;
    return kn * (f32 ? 4 : 8);
}

double fd_plan_l2_bytes(void)
{
    static atomic_long cached;
    long b = atomic_load_explicit(&cached, memory_order_relaxed);
    if (b == 0) {
#ifdef _SC_LEVEL2_CACHE_SIZE
        b = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        if (b <= 0) b = FD_TUNE_L2_BYTES;
        atomic_store_explicit(&cached, b, memory_order_relaxed);
    }
    return (double)b;
}

size_t fd_plan_block_bytes(void)
{
    return fd_plan_l2_bytes() >= FD_TUNE_PLAN_BIG_L2 ? FD_TUNE_PLAN_BLOCK_BYTES : FD_TUNE_PLAN_BLOCK_BYTES_SMALL_L2;
}

int fd_plan_weights_far(const fd_plan *p)
{
    double bytes = 0, ps_byte, ps_mac;
    for (int s = 0; s < p->nsteps; s++) bytes += step_weights(p, &p->steps[s], &ps_byte, &ps_mac);
    return bytes > fd_plan_l2_bytes();
}

double fd_plan_step_cost_ns(const fd_plan *p, int s, ptrdiff_t m, int far)
{
    const fd_step *st = &p->steps[s];
    double ps_byte = 0, ps_mac = 0;
    double bytes = step_weights(p, st, &ps_byte, &ps_mac);
    /* one row of int4 values reads their nibble copy: half the bytes (fd_q8_pack_nibbles) */
    if (st->kind == FD_STEP_QDENSE && ((const fd_qweights *)st->w)->w4 && m * st->rows == 1) bytes /= 2;
    const double read = bytes * ps_byte * (far ? FD_TUNE_STEP_FAR : 1);
    const double arith = (double)m * (double)st->rows * (double)st->k * (double)st->n * ps_mac;
    return (read > arith ? read : arith) / 1000;
}

/* Whether step s of one block of `rows` samples may split over the pool. */
static int split_step(const plan_ctx *c, int s, ptrdiff_t rows)
{
    if (c->ntasks != 1 || c->nblocks != 1) return 0;   /* blocks already run one per thread */
    if (c->policy >= 0) return c->policy;
    return fd_plan_step_cost_ns(c->p, s, rows, c->far) > FD_TUNE_STEP_SPLIT_NS;
}

/* All steps for samples [r0, r0 + rows), intermediates in this task's scratch. */
static int run_block(const plan_ctx *c, ptrdiff_t r0, ptrdiff_t rows, char *scratch)
{
    const fd_plan *p = c->p;
    const size_t es = p->dtype == FD_F32 ? 4 : 8;
    for (int s = 0; s < p->nsteps; s++) {
        const fd_step *st = &p->steps[s];
        const char *src0 = buffer(c, st->src[0], r0, scratch);
        char *dst = buffer(c, st->dst, r0, scratch);
        fd_norm norm;
        switch (st->kind) {
        case FD_STEP_DENSE: {
            const int fused = fused_norm(p, s, &norm);
            fd_dense_args a;
            memset(&a, 0, sizeof(a));
            a.dtype = p->dtype;
            a.m = rows * st->rows; a.k = st->k; a.n = st->n;
            a.x = src0; a.ldx = st->k > 0 ? st->k : 1;
            a.w = st->w; a.ldw = st->n > 0 ? st->n : 1;
            a.wpack = st->wpack;
            a.bias = st->bias;
            a.out = dst;
            a.ldo = fd_act_halves(st->act.code) ? st->n / 2 : st->n;
            if (a.ldo < 1) a.ldo = 1;
            a.act = st->act;
            a.norm = fused ? &norm : NULL;
            /* a costly step of one block may use every free core (fd_dense's own split) */
            const int rc = split_step(c, s, rows)
                ? fd_dense(&a) : fd_dense_serial(&a, scratch + (size_t)p->glu_offset * c->block * es, c->lock);
            if (rc) return rc;
            s += fused;
            break;
        }
        case FD_STEP_QDENSE: {
            const ptrdiff_t m = rows * st->rows, half = st->n / 2;
            const int halves = fd_act_halves(st->act.code);
            float *out = halves ? (float *)(scratch + (size_t)p->glu_offset * c->block * es) : (float *)dst;
            /* a costly step of one block splits over the free cores (rows, or columns for a
               few rows; the split changes no bit) */
            const int threads = split_step(c, s, rows) ? fd_get_num_threads() : 1;
            const int rc = fd_qdense(fd_qgemm_isa(), (const fd_qweights *)st->w, m, (const float *)src0, st->k,
                                     &st->act, st->bias, out, st->n, threads);
            if (rc) return rc;
            for (ptrdiff_t r = 0; halves && r < m; r++)   /* glu wrote n / 2 columns per row */
                memcpy((float *)dst + r * half, out + r * st->n, (size_t)half * sizeof(float));
            break;
        }
        case FD_STEP_ACT: {
            const ptrdiff_t cols_out = fd_act_halves(st->act.code) ? st->n / 2 : st->n;
            if (st->n == 0) break;
            if (p->dtype == FD_F32)
                fd_epilogue_f32(&st->act, NULL, (const float *)src0, st->n, (float *)dst, cols_out, rows * st->rows, st->n);
            else
                fd_epilogue_f64(&st->act, NULL, (const double *)src0, st->n, (double *)dst, cols_out, rows * st->rows, st->n);
            break;
        }
        case FD_STEP_CONCAT: {
            /* source by source: each one's columns into their place in every row */
            const ptrdiff_t nrows = rows * st->rows;
            ptrdiff_t col0 = 0;
            for (int j = 0; j < st->nsrc; j++) {
                const char *sj = buffer(c, st->src[j], r0, scratch);
                const size_t bytes = (size_t)st->cols[j] * es;
                for (ptrdiff_t r = 0; r < nrows; r++)
                    memcpy(dst + ((size_t)r * st->n + col0) * es, sj + (size_t)r * bytes, bytes);
                col0 += st->cols[j];
            }
            break;
        }
        case FD_STEP_COPY:
            memcpy(dst, src0, (size_t)rows * st->n * es);
            break;
        case FD_STEP_NORM: {   /* one not fused into a Dense: split one block's rows over the pool */
            norm = norm_of(st);
            const ptrdiff_t m = rows * st->rows;
            norm_job job = {&norm, p->dtype, src0, dst, m, st->n, m};
            const int one_block = c->ntasks == 1 && c->nblocks == 1 && c->policy != 0;
            const ptrdiff_t chunk = split_rows(m, st->n, one_block ? fd_get_num_threads() : 1);
            if (chunk > 0) {
                job.chunk = chunk;
                const int rc = fd_pool_run(&(fd_tasks){norm_task, &job, (m + chunk - 1) / chunk, 0},
                                           fd_get_num_threads() - 1);
                if (rc) return rc;
            } else {
                norm_task(&job, 0, NULL);
            }
            break;
        }
        case FD_STEP_AFFINE:
            if (p->dtype == FD_F32)
                fd_affine_rows_f32((const double *)st->w, (const double *)st->bias, (const float *)src0, st->n,
                                   (float *)dst, st->n, rows * st->rows, st->n);
            else
                fd_affine_rows_f64((const double *)st->w, (const double *)st->bias, (const double *)src0, st->n,
                                   (double *)dst, st->n, rows * st->rows, st->n);
            break;
        case FD_STEP_PRELU:
            if (p->dtype == FD_F32)
                fd_prelu_rows_f32((const float *)st->w, (const float *)src0, st->n, (float *)dst, st->n, rows, st->n);
            else
                fd_prelu_rows_f64((const double *)st->w, (const double *)src0, st->n, (double *)dst, st->n, rows,
                                  st->n);
            break;
        case FD_STEP_GATHER: {
            const ptrdiff_t bad = st->mode == FD_GATHER_QUANTIZED
                ? fd_gather_i32_q((const int32_t *)src0, rows * st->rows, (const fd_qtable *)st->w, (float *)dst)
                : p->dtype == FD_F32
                ? fd_gather_i32_f32((const int32_t *)src0, rows * st->rows, (const float *)st->w, st->k, st->n,
                                    (float *)dst)
                : fd_gather_i64_f64((const int64_t *)src0, rows * st->rows, (const double *)st->w, st->k, st->n,
                                    (double *)dst);
            if (bad >= 0) return FD_ERR_INDEX;
            break;
        }
        case FD_STEP_POOL:
            if (p->dtype == FD_F32)
                pool_rows_float(st->mode, (const float *)src0, (float *)dst, rows, st->rows, st->n);
            else
                pool_rows_double(st->mode, (const double *)src0, (double *)dst, rows, st->rows, st->n);
            break;
        default:
            merge(c, st, p->dtype, r0, scratch, dst, rows * st->n);
        }
    }
    return 0;
}

static int run_task(void *ctx, ptrdiff_t t, void *unused)
{
    (void)unused;
    plan_ctx *c = ctx;
    const fd_plan *p = c->p;
    char *scratch = c->scratch + (size_t)t * c->block * p->sample_elems * (p->dtype == FD_F32 ? 4 : 8);
    /* a block's results do not depend on the thread that runs it, so a thread slowed down by
       the machine simply takes fewer blocks */
    for (ptrdiff_t b; (b = atomic_fetch_add(&c->next_block, 1)) < c->nblocks;) {
        ptrdiff_t r0 = b * c->block, rows = c->m - r0 < c->block ? c->m - r0 : c->block;
        const int rc = run_block(c, r0, rows, scratch);
        if (rc == FD_ERR_INDEX) atomic_store(&c->bad_index, 1);
        if (rc) return rc;
    }
    return 0;
}

/* w == a * b, without overflow (a >= 1) */
static int is_product(ptrdiff_t w, ptrdiff_t a, ptrdiff_t b)
{
    return b >= 0 && b <= PTRDIFF_MAX / a && w == a * b;
}

int fd_plan_check(const fd_plan *p)
{
    if (p->dtype != FD_F32 && p->dtype != FD_F64) return FD_ERR_ARG;
    if (p->nsteps < 0 || p->nbufs < 0 || p->ninputs < 0 || p->noutputs < 0) return FD_ERR_ARG;
    if (p->sample_elems < 1 || p->glu_offset < 0 || p->glu_offset > p->sample_elems) return FD_ERR_ARG;
    /* sizes in bytes of one sample (a block multiplies them later, checked per run) */
    const ptrdiff_t lim = PTRDIFF_MAX / (ptrdiff_t)sizeof(double);
    if (p->sample_elems > lim) return FD_ERR_LIMIT;
    for (int b = 0; b < p->nbufs; b++) {
        const fd_buffer *bf = &p->bufs[b];
        if (bf->width < 0 || bf->input_index < -1 || bf->input_index >= p->ninputs ||
            bf->output_index < -1 || bf->output_index >= p->noutputs || bf->offset < 0)
            return FD_ERR_ARG;
        if (bf->width > lim) return FD_ERR_LIMIT;
        if (bf->input_index < 0 && bf->output_index < 0 && bf->offset > p->sample_elems - bf->width)
            return FD_ERR_ARG;   /* an intermediate must lie inside the scratch */
    }
    for (int s = 0; s < p->nsteps; s++) {
        const fd_step *st = &p->steps[s];
        if (st->kind < 0 || st->kind >= FD_STEP_KIND_COUNT || st->nsrc < 1 || st->src == NULL)
            return FD_ERR_ARG;
        if (st->dst < 0 || st->dst >= p->nbufs || p->bufs[st->dst].input_index >= 0) return FD_ERR_ARG;
        for (int j = 0; j < st->nsrc; j++)
            if (st->src[j] < 0 || st->src[j] >= p->nbufs) return FD_ERR_ARG;
        if (st->rows < 1 || st->k < 0 || st->n < 0) return FD_ERR_ARG;
        const ptrdiff_t in_width = p->bufs[st->src[0]].width, out_width = p->bufs[st->dst].width;
        const int halves = fd_act_halves(st->act.code);
        switch (st->kind) {
        case FD_STEP_QDENSE:   /* the rules of a dense step, plus its weights' own shape */
        case FD_STEP_DENSE:
            if (st->kind == FD_STEP_QDENSE && st->w != NULL &&
                (p->dtype != FD_F32 || ((const fd_qweights *)st->w)->k != st->k ||
                 ((const fd_qweights *)st->w)->n != st->n))
                return FD_ERR_ARG;
            if (st->w == NULL || st->nsrc != 1 || (halves && st->n % 2) || !is_product(in_width, st->rows, st->k) ||
                !is_product(out_width, st->rows, halves ? st->n / 2 : st->n))
                return FD_ERR_ARG;
            if (halves && (st->n > lim / st->rows || p->glu_offset > p->sample_elems - st->rows * st->n))
                return FD_ERR_ARG;   /* the glu scratch must hold the step's full-width rows */
            break;
        case FD_STEP_ACT:
            if (st->nsrc != 1 || (halves && st->n % 2) || !is_product(in_width, st->rows, st->n) ||
                !is_product(out_width, st->rows, halves ? st->n / 2 : st->n))
                return FD_ERR_ARG;
            break;
        case FD_STEP_NORM: case FD_STEP_AFFINE: case FD_STEP_PRELU:
            if (st->nsrc != 1 || in_width != out_width ||
                !is_product(out_width, st->kind == FD_STEP_PRELU ? 1 : st->rows, st->n) ||
                (st->kind == FD_STEP_NORM ? st->mode < FD_NORM_LAYER || st->mode > FD_NORM_UNIT || !(st->eps >= 0) ||
                                                fd_act_rowwise(st->act.code)
                                          : st->w == NULL || (st->kind == FD_STEP_AFFINE && st->bias == NULL)))
                return FD_ERR_ARG;
            break;
        case FD_STEP_GATHER:
            if (st->nsrc != 1 || st->w == NULL || st->k < 1 || in_width != st->rows ||
                !is_product(out_width, st->rows, st->n))
                return FD_ERR_ARG;
            if (st->mode == FD_GATHER_QUANTIZED &&
                (p->dtype != FD_F32 || fd_qtable_check(st->w) != FD_OK ||
                 ((const fd_qtable *)st->w)->rows != st->k || ((const fd_qtable *)st->w)->dim != st->n))
                return FD_ERR_ARG;
            if (st->mode != FD_GATHER_FLOAT && st->mode != FD_GATHER_QUANTIZED) return FD_ERR_ARG;
            break;
        case FD_STEP_POOL:
            if (st->nsrc != 1 || (st->mode != 0 && st->mode != 1) || !is_product(in_width, st->rows, st->n) ||
                out_width != st->n)
                return FD_ERR_ARG;
            break;
        case FD_STEP_CONCAT: {
            if (st->cols == NULL || !is_product(out_width, st->rows, st->n)) return FD_ERR_ARG;
            ptrdiff_t total = 0;
            for (int j = 0; j < st->nsrc; j++) {
                if (st->cols[j] < 0 || st->cols[j] > lim - total ||
                    !is_product(p->bufs[st->src[j]].width, st->rows, st->cols[j]))
                    return FD_ERR_ARG;
                total += st->cols[j];
            }
            if (total != st->n) return FD_ERR_ARG;
            break;
        }
        default:   /* copy and the merges: element by element over n per sample */
            if ((st->kind == FD_STEP_COPY && st->nsrc != 1) || (st->kind == FD_STEP_SUB && st->nsrc != 2) ||
                out_width != st->n)
                return FD_ERR_ARG;
            for (int j = 0; j < st->nsrc; j++)
                if (p->bufs[st->src[j]].width != st->n) return FD_ERR_ARG;
        }
    }
    return FD_OK;
}

int fd_plan_run(const fd_plan *p, const void *const *inputs, void *const *outputs, ptrdiff_t m,
                ptrdiff_t block, void *scratch, int max_tasks)
{
    if (m <= 0) return 0;
    if (block < 1 || block > PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / p->sample_elems) return FD_ERR_ARG;
    plan_ctx c;
    c.p = p; c.inputs = inputs; c.outputs = outputs; c.m = m; c.scratch = scratch;
    c.block = block;
    c.nblocks = (m + block - 1) / block;
    atomic_init(&c.next_block, 0);
    atomic_init(&c.bad_index, 0);
    /* the caller asks for several tasks only where fastdense's pool threads the plan (its own
       thread policy, or every dense step on the packed kernel) */
    c.lock = !fd_own_threading();
    c.policy = fd_plan_get_split_policy();
    c.far = 0;
    c.ntasks = 1;
    if (max_tasks > 1) {
        c.ntasks = fd_get_num_threads();
        if (c.ntasks > max_tasks) c.ntasks = max_tasks;
        if (c.ntasks > c.nblocks) c.ntasks = c.nblocks;
        if (c.ntasks < 1) c.ntasks = 1;
    }
    if (c.ntasks == 1) {   /* each fd_dense call counts its own cores */
        if (c.nblocks == 1 && c.policy < 0) c.far = fd_plan_weights_far(p);
        return run_task(&c, 0, NULL);
    }
    fd_busy_enter();
    int rc = fd_pool_run(&(fd_tasks){run_task, &c, c.ntasks, 0}, (int)c.ntasks - 1);
    fd_busy_leave();
    return atomic_load(&c.bad_index) ? FD_ERR_INDEX : rc;
}
