/* fastdense whole-model plan: a list of steps (dense, activation, merge, concat, copy) over
   per-sample buffers, run on blocks of samples in one native call without the GIL. */
#ifndef FD_PLAN_H
#define FD_PLAN_H

#include <stddef.h>
#include "fd_dense.h"

typedef enum fd_step_kind {
    FD_STEP_DENSE = 0, FD_STEP_ACT, FD_STEP_ADD, FD_STEP_SUB, FD_STEP_MUL, FD_STEP_AVG,
    FD_STEP_MAX, FD_STEP_MIN, FD_STEP_CONCAT, FD_STEP_COPY,
    /* issue 13: the other layers of Dense networks (docs/layers.md) */
    FD_STEP_NORM,     /* row-wise normalization of rows x n per sample (fd_norm.h): mode = its
                         fd_norm_kind, eps; w = gamma, bias = beta (n values, or NULL); act = an
                         element-wise activation after it. In place (src = dst) on the buffer of
                         the DENSE step right before it, it runs fused in that step's epilogue
                         (fd_dense_args.norm); otherwise one block's rows split over the pool */
    FD_STEP_AFFINE,   /* y = x * w + bias per column of rows x n: w and bias n float64 values */
    FD_STEP_PRELU,    /* y = x >= 0 ? x : w[j] * x over a sample's n values */
    FD_STEP_GATHER,   /* rows ids per sample (int32 bits in a float32 plan, int64 in a float64 one)
                         -> rows of the (k, n) table w; an id outside [0, k): FD_ERR_INDEX.
                         mode FD_GATHER_QUANTIZED (float32 plans): w is an fd_qtable (fd_gather.h) */
    FD_STEP_QDENSE,                  /* a Keras int8 / int4 Dense (float32 plans): w is its fd_qweights */
    FD_STEP_POOL,     /* global pooling: rows x n per sample -> n, the mean (mode 0, summed in
                         double, one rounding) or the maximum (mode 1, NaN wins) over the rows */
    FD_STEP_KIND_COUNT
} fd_step_kind;

/* A gather step's table (fd_step.mode) */
typedef enum fd_gather_kind { FD_GATHER_FLOAT = 0, FD_GATHER_QUANTIZED = 1 } fd_gather_kind;

/* One step (fastdense.models.plan_steps.PlanStep). Its arrays belong to the plan's builder. */
typedef struct {
    int kind;                        /* fd_step_kind */
    int nsrc;
    const int *src;                  /* nsrc source buffers */
    int dst;                         /* destination buffer */
    ptrdiff_t rows;                  /* rows per sample (dense, act, concat) */
    ptrdiff_t k, n;                  /* dense: features in/out (n before glu halves it);
                                        act: columns; merge/copy: width; concat: out columns */
    const ptrdiff_t *cols;           /* concat: columns of each source (nsrc), else unused */
    const void *w, *bias;            /* dense: row-major (k, n) kernel and (n,) bias or NULL */
    const float *wpack;              /* dense, f32: w packed by fd_pack_f32, or NULL */
    fd_act act;                      /* dense, act; norm: the activation after it */
    int mode;                        /* norm: fd_norm_kind; gather: fd_gather_kind; pool: 0 mean, 1 max */
    double eps;                      /* norm: epsilon */
} fd_step;

/* One per-sample buffer (fastdense.models.plan_steps.PlanBuffer). */
typedef struct {
    ptrdiff_t width;                 /* elements per sample */
    int input_index;                 /* model input it is, or -1 */
    int output_index;                /* model output it is, or -1 */
    ptrdiff_t offset;                /* intermediates: offset in a task's scratch, elements per sample */
} fd_buffer;

typedef struct {
    int dtype;                 /* fd_dtype */
    int nsteps;
    const fd_step *steps;
    int nbufs;
    const fd_buffer *bufs;
    int ninputs, noutputs;     /* the input/output indices are 0 .. ninputs-1 / noutputs-1 */
    ptrdiff_t glu_offset;      /* offset of the glu scratch, in elements per sample */
    ptrdiff_t sample_elems;    /* scratch elements per sample of a block */
} fd_plan;

/* Check a plan once, when it is built: FD_OK, FD_ERR_ARG for an inconsistent plan (an index
   out of range, an unknown kind, a step without sources ...), FD_ERR_LIMIT when a sample's
   sizes in bytes do not fit a ptrdiff_t. fd_plan_run trusts a checked plan. */
int fd_plan_check(const fd_plan *p);

/* Run the plan on m samples in blocks of `block` samples, on up to max_tasks threads;
   scratch holds max_tasks * block * sample_elems elements. FD_OK or an fd_status. */
int fd_plan_run(const fd_plan *p, const void *const *inputs, void *const *outputs, ptrdiff_t m,
                ptrdiff_t block, void *scratch, int max_tasks);

/* How a run of one block (a small batch) threads its dense steps: -1 by their estimated cost
   (the default: a step cheaper than FD_TUNE_STEP_SPLIT_NS on one core runs on the caller
   alone, a costlier one splits over the pool), 0 never split, 1 split every step the dense
   kernels would split. Results are the same bits in every mode. */
void fd_plan_set_split_policy(int mode);
int fd_plan_get_split_policy(void);

/* The estimated nanoseconds of dense step s of p on one core for m rows (0 for other kinds),
   and whether the policy splits it; `far`: the plan's weights do not fit one core's L2. */
double fd_plan_step_cost_ns(const fd_plan *p, int s, ptrdiff_t m, int far);
int fd_plan_weights_far(const fd_plan *p);
/* One core's L2 in bytes: the OS's figure where it gives one, else FD_TUNE_L2_BYTES. */
double fd_plan_l2_bytes(void);
/* The plan's block size: a block's intermediates in about this many bytes (fd_tune.h: by the
   size of one core's L2). */
size_t fd_plan_block_bytes(void);

#endif
