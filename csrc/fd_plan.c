/* fastdense whole-model plan runner: every layer of a block of samples back to back, so the
   intermediates of one block stay in cache; blocks spread over fastdense's pool when the BLAS
   is single-threaded (see fd_kernel.c for the thread policy). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fd_plan.h"
#include "fd_qgemm.h"

#define FD_PLAN_MAX_BUFS 256

typedef struct {
    const fd_plan *p;
    const void *const *inputs;
    void *const *outputs;
    ptrdiff_t m, block, nblocks, ntasks;
    char *scratch;
    int lock;
    atomic_long next_block;          /* blocks are claimed as threads get free */
} plan_ctx;

#define MERGE_LOOP(T, OP)                                                        \
    do {                                                                         \
        T *d = (T *)dst;                                                         \
        const T *s0 = (const T *)src[0];                                         \
        for (ptrdiff_t i = 0; i < len; i++) d[i] = s0[i];                        \
        for (int j = 1; j < st->nsrc; j++) {                                     \
            const T *sj = (const T *)src[j];                                     \
            for (ptrdiff_t i = 0; i < len; i++) { T a = d[i], b = sj[i]; d[i] = (OP); } \
        }                                                                        \
    } while (0)

static void merge(const fd_step *st, int dtype, char **src, char *dst, ptrdiff_t len)
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

/* All steps for samples [r0, r0 + rows), intermediates in this task's scratch. */
static int run_block(const plan_ctx *c, ptrdiff_t r0, ptrdiff_t rows, char *scratch)
{
    const fd_plan *p = c->p;
    const size_t es = p->dtype == FD_F32 ? 4 : 8;
    char *buf[FD_PLAN_MAX_BUFS];
    for (int b = 0; b < p->nbufs; b++) {
        const size_t off = (size_t)r0 * p->width[b] * es;
        if (p->in_index[b] >= 0) buf[b] = (char *)c->inputs[p->in_index[b]] + off;
        else if (p->out_index[b] >= 0) buf[b] = (char *)c->outputs[p->out_index[b]] + off;
        else buf[b] = scratch + (size_t)p->offset[b] * c->block * es;
    }
    for (int s = 0; s < p->nsteps; s++) {
        const fd_step *st = &p->steps[s];
        char *src[FD_PLAN_MAX_SRC];
        for (int j = 0; j < st->nsrc; j++) src[j] = buf[st->src[j]];
        char *dst = buf[st->dst];
        switch (st->kind) {
        case FD_STEP_DENSE: {
            fd_dense_args a;
            memset(&a, 0, sizeof(a));
            a.dtype = p->dtype;
            a.m = rows * st->t; a.k = st->k; a.n = st->n;
            a.x = src[0]; a.ldx = st->k > 0 ? st->k : 1;
            a.w = st->w; a.ldw = st->n > 0 ? st->n : 1;
            a.wpack = st->wpack;
            a.bias = st->bias;
            a.out = dst;
            a.ldo = fd_act_halves(st->act.code) ? st->n / 2 : st->n;
            if (a.ldo < 1) a.ldo = 1;
            a.act = st->act;
            /* one block: the layer itself may use every free core (fd_dense's policy);
               several blocks already run in parallel, one per thread */
            if (c->ntasks == 1 && c->nblocks == 1 ? fd_dense(&a)
                : fd_dense_serial(&a, scratch + (size_t)p->glu_offset * c->block * es, c->lock)) return -1;
            break;
        }
        case FD_STEP_QDENSE: {   /* float32 plans only */
            const fd_qweights *qw = (const fd_qweights *)st->w;
            const ptrdiff_t m = rows * st->t, half = st->n / 2;
            const int halves = fd_act_halves(st->act.code);
            float *out = halves ? (float *)(scratch + (size_t)p->glu_offset * c->block * es) : (float *)dst;
            int rc = qw->bits == 8
                ? fd_q8_dense(fd_qgemm_isa(), qw, m, (const float *)src[0], st->k, &st->act, st->bias, out, st->n)
                : fd_q4_dense(fd_qgemm_isa(), qw, m, (const float *)src[0], st->k, &st->act, st->bias, out, st->n);
            if (rc) return -1;
            for (ptrdiff_t r = 0; halves && r < m; r++)   /* glu wrote n / 2 columns per row */
                memcpy((float *)dst + r * half, out + r * st->n, (size_t)half * sizeof(float));
            break;
        }
        case FD_STEP_ACT: {
            const ptrdiff_t cols_out = fd_act_halves(st->act.code) ? st->n / 2 : st->n;
            if (st->n == 0) break;
            if (p->dtype == FD_F32)
                fd_epilogue_f32(&st->act, NULL, (const float *)src[0], st->n, (float *)dst, cols_out, rows * st->t, st->n);
            else
                fd_epilogue_f64(&st->act, NULL, (const double *)src[0], st->n, (double *)dst, cols_out, rows * st->t, st->n);
            break;
        }
        case FD_STEP_CONCAT: {
            const ptrdiff_t nrows = rows * st->t;
            for (ptrdiff_t r = 0; r < nrows; r++) {
                char *d = dst + (size_t)r * st->n * es;
                for (int j = 0; j < st->nsrc; j++) {
                    memcpy(d, src[j] + (size_t)r * st->cols[j] * es, (size_t)st->cols[j] * es);
                    d += (size_t)st->cols[j] * es;
                }
            }
            break;
        }
        case FD_STEP_COPY:
            memcpy(dst, src[0], (size_t)rows * st->n * es);
            break;
        default:
            merge(st, p->dtype, src, dst, rows * st->n);
        }
    }
    return 0;
}

static int run_task(void *ctx, ptrdiff_t t)
{
    plan_ctx *c = ctx;
    const fd_plan *p = c->p;
    char *scratch = c->scratch + (size_t)t * c->block * p->sample_elems * (p->dtype == FD_F32 ? 4 : 8);
    /* a block's results do not depend on the thread that runs it, so a thread slowed down by
       the machine simply takes fewer blocks */
    for (ptrdiff_t b; (b = atomic_fetch_add(&c->next_block, 1)) < c->nblocks;) {
        ptrdiff_t r0 = b * c->block, rows = c->m - r0 < c->block ? c->m - r0 : c->block;
        if (run_block(c, r0, rows, scratch)) return -1;
    }
    return 0;
}

int fd_plan_run(const fd_plan *p, const void *const *inputs, void *const *outputs, ptrdiff_t m,
                ptrdiff_t block, void *scratch, int max_tasks)
{
    if (m <= 0) return 0;
    if (block < 1) return -2;
    if (p->nbufs > FD_PLAN_MAX_BUFS) return -2;
    plan_ctx c;
    c.p = p; c.inputs = inputs; c.outputs = outputs; c.m = m; c.scratch = scratch;
    c.block = block;
    c.nblocks = (m + block - 1) / block;
    atomic_init(&c.next_block, 0);
    /* the caller asks for several tasks only where fastdense's pool threads the plan (its own
       thread policy, or every dense step on the packed kernel) */
    c.lock = !fd_own_threading();
    c.ntasks = 1;
    if (max_tasks > 1) {
        c.ntasks = fd_get_num_threads();
        if (c.ntasks > max_tasks) c.ntasks = max_tasks;
        if (c.ntasks > c.nblocks) c.ntasks = c.nblocks;
        if (c.ntasks < 1) c.ntasks = 1;
    }
    if (c.ntasks == 1) return run_task(&c, 0);   /* each fd_dense call counts its own cores */
    fd_busy_enter();
    int rc = fd_parallel_for(run_task, &c, c.ntasks, (int)c.ntasks - 1);
    fd_busy_leave();
    return rc;
}
