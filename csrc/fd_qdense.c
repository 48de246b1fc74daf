/* fd_qdense.c -- a quantized Dense call over the pool (see fd_qdense.h).
 *
 * Rows: a batch of 8 rows or more is cut into one part per thread (multiples of 4 rows), each
 * part a whole fd_q*_dense call with its epilogue.  Columns: a call of at most
 * FD_TUNE_SPLIT_FEW_ROWS rows reads every weight for little arithmetic (batch 1), so it is cut
 * by panels instead, one part per thread: the pool's home ranges then keep each thread on the
 * same columns call after call, and every part costs a quantization of the input rows and its
 * share of the fork/join (two parts per thread measured slower).  An element-wise activation
 * runs inside each part; a row-wise one (softmax, glu) on whole rows after the join.
 */
#include "fd_qdense.h"

#include "fd_pool.h"
#include "fd_status.h"
#include "fd_tune.h"

typedef struct {
    fd_qisa isa;
    const fd_qweights *w;
    const float *x, *bias;
    ptrdiff_t m, ldx, ldc;
    float *c;
    const fd_act *act;
    ptrdiff_t per_task;   /* rows, or panels when split by columns */
    int by_columns;
    int rowwise;          /* the activation needs whole rows (softmax, glu): after the join */
} qdense_job;

static int q_layer(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, const fd_act *act,
                   const float *bias, float *c, ptrdiff_t ldc)
{
    return w->bits == 8 ? fd_q8_dense(isa, w, m, x, ldx, act, bias, c, ldc)
                        : fd_q4_dense(isa, w, m, x, ldx, act, bias, c, ldc);
}

static int qdense_task(void *ctx, ptrdiff_t t, void *scratch)
{
    const qdense_job *j = ctx;
    (void)scratch;
    if (j->by_columns) {
        static const fd_act linear = {FD_ACT_LINEAR, {0.0, 0.0, 0.0}};
        ptrdiff_t panels = (j->w->n + FD_QPANEL - 1) / FD_QPANEL, p0 = t * j->per_task;
        ptrdiff_t p1 = p0 + j->per_task < panels ? p0 + j->per_task : panels;
        fd_qweights part = fd_qweights_panels(j->w, p0, p1);
        /* an elementwise activation runs on the part's own columns: the caller then never
           writes a line another core just wrote */
        const int whole_rows = j->rowwise;
        return q_layer(j->isa, &part, j->m, j->x, j->ldx, whole_rows ? &linear : j->act,
                       whole_rows || !j->bias ? NULL : j->bias + p0 * FD_QPANEL, j->c + p0 * FD_QPANEL, j->ldc);
    }
    ptrdiff_t r0 = t * j->per_task, rows = j->m - r0 < j->per_task ? j->m - r0 : j->per_task;
    return q_layer(j->isa, j->w, rows, j->x + r0 * j->ldx, j->ldx, j->act, j->bias, j->c + r0 * j->ldc, j->ldc);
}

int fd_qdense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, const fd_act *act,
              const float *bias, float *c, ptrdiff_t ldc, int max_threads)
{
    const double weights = (double)w->k * (double)w->n;
    const ptrdiff_t panels = (w->n + FD_QPANEL - 1) / FD_QPANEL;
    qdense_job job = {isa, w, x, bias, m, ldx, ldc, c, act, m, 0,
                      fd_act_rowwise(act->code) || fd_act_halves(act->code)};
    ptrdiff_t tasks = 1;
    if (max_threads > 1 && m >= 8 && (double)m * weights >= FD_TUNE_SPLIT_WORK_OWN) {
        job.per_task = ((m + max_threads - 1) / max_threads + 3) / 4 * 4;
        tasks = (m + job.per_task - 1) / job.per_task;
    } else if (max_threads > 1 && m <= FD_TUNE_SPLIT_FEW_ROWS && weights >= FD_TUNE_SPLIT_WORK_FEW_ROWS &&
               panels >= 2 * FD_TUNE_COLS_SPLIT_MIN_COLS / FD_QPANEL) {
        ptrdiff_t pieces = max_threads, min_panels = FD_TUNE_COLS_SPLIT_MIN_COLS / FD_QPANEL;
        job.by_columns = 1;
        job.per_task = (panels + pieces - 1) / pieces;
        if (job.per_task < min_panels) job.per_task = min_panels;
        tasks = (panels + job.per_task - 1) / job.per_task;
    }
    if (tasks == 1) return q_layer(isa, w, m, x, ldx, act, bias, c, ldc);
    int rc = fd_pool_run(&(fd_tasks){qdense_task, &job, tasks, 0}, max_threads - 1);
    if (rc == FD_OK && job.by_columns && job.rowwise) fd_epilogue_f32(act, bias, c, ldc, c, ldc, m, w->n);
    return rc;
}
