/* fd_dense.h -- the fused dense call out = act(x @ w + bias), row-major: GEMM path choice and
   threading policy (fd_dense.c). No GIL needed anywhere. */
#ifndef FD_DENSE_H
#define FD_DENSE_H

#include <stddef.h>
#include "fd_act.h"
#include "fd_blas.h"
#include "fd_norm.h"
#include "fd_status.h"

/* One fused dense call. Matrices are row-major with a leading dimension (row stride, in
   elements), or transposed (column-major) when the *_colmajor flag is set:
     x[i, k] = x_colmajor ? x[i + k * ldx] : x[i * ldx + k]      (M x K)
     w[k, n] = w_colmajor ? w[k + n * ldw] : w[k * ldw + n]      (K x N)
     out[i, j] = out[i * ldo + j]                                (M x N, or M x N/2 for glu)
   bias has N entries or is NULL. out must not overlap x, w or bias. */
typedef struct {
    int dtype;                 /* fd_dtype */
    ptrdiff_t m, k, n;
    const void *x; ptrdiff_t ldx; int x_colmajor;
    const void *w; ptrdiff_t ldw; int w_colmajor;
    const void *bias;
    void *out; ptrdiff_t ldo;
    fd_act act;
    /* f32 only, optional: w packed by fd_pack_f32 (then the packed kernel computes x @ w
       where the CPU has it; w itself is still needed for the BLAS path). */
    const float *wpack;
    /* optional: each output row normalized after the activation (fd_norm.h: a LayerNormalization,
       RMSNormalization or UnitNormalization after the Dense, fused as a row-wise epilogue), or NULL */
    const fd_norm *norm;
} fd_dense_args;

/* FD_OK, or FD_ERR_NOMEM when scratch memory could not be allocated. */
int fd_dense(const fd_dense_args *a);
/* One dense call on the calling thread only (the plan runs blocks in parallel itself); glu needs
   m * n elements of glu_scratch; lock_blas serialises its BLAS GEMM with other callers'. */
int fd_dense_serial(const fd_dense_args *a, void *glu_scratch, int lock_blas);

/* 1 when fastdense splits work over its own pool (BLAS single-threaded), 0 when it lets the
   BLAS thread each call and serialises concurrent multi-threaded BLAS calls. */
int fd_own_threading(void);
/* Force the mode: 1 own pool, 0 BLAS threads, -1 follow the BLAS thread count (default). */
void fd_set_own_threading(int v);

#endif
