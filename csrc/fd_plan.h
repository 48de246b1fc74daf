/* fastdense whole-model plan: a list of steps (dense, activation, merge, concat, copy) over
   per-sample buffers, run on blocks of samples in one native call without the GIL. */
#ifndef FD_PLAN_H
#define FD_PLAN_H

#include <stddef.h>
#include "fd_kernel.h"

enum {
    FD_STEP_DENSE = 0, FD_STEP_ACT, FD_STEP_ADD, FD_STEP_SUB, FD_STEP_MUL, FD_STEP_AVG,
    FD_STEP_MAX, FD_STEP_MIN, FD_STEP_CONCAT, FD_STEP_COPY,
    FD_STEP_QDENSE              /* a Keras int8 / int4 Dense: w is its fd_qweights (fd_qgemm.h) */
};
#define FD_PLAN_MAX_SRC 16

typedef struct {
    int kind;
    int nsrc;
    int src[FD_PLAN_MAX_SRC];
    int dst;
    ptrdiff_t t;                     /* rows per sample (dense, act, concat) */
    ptrdiff_t k, n;                  /* dense: features in/out (n before glu halves it);
                                        act: columns; merge/copy: width; concat: out columns */
    ptrdiff_t cols[FD_PLAN_MAX_SRC]; /* concat: columns of each source */
    const void *w, *bias;            /* dense: row-major (k, n) kernel and (n,) bias or NULL */
    const float *wpack;              /* dense, f32: w packed by fd_pack_f32, or NULL */
    fd_act act;                      /* dense, act */
} fd_step;

typedef struct {
    int dtype;
    int nsteps;
    const fd_step *steps;
    int nbufs;
    const ptrdiff_t *width;    /* elements per sample of each buffer */
    const int *in_index;       /* buffer b is model input in_index[b], or -1 */
    const int *out_index;      /* buffer b is model output out_index[b], or -1 */
    const ptrdiff_t *offset;   /* intermediates: offset in a task's scratch, in elements per sample */
    ptrdiff_t glu_offset;      /* offset of the glu scratch, in elements per sample */
    ptrdiff_t sample_elems;    /* scratch elements per sample of a block */
} fd_plan;

/* Run the plan on m samples in blocks of `block` samples, on up to max_tasks threads;
   scratch holds max_tasks * block * sample_elems elements. 0 on success. */
int fd_plan_run(const fd_plan *p, const void *const *inputs, void *const *outputs, ptrdiff_t m,
                ptrdiff_t block, void *scratch, int max_tasks);

#endif
