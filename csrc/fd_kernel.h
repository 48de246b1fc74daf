/* fastdense fused dense kernel: out = act(x @ w + bias), row-major, BLAS from scipy. */
#ifndef FD_KERNEL_H
#define FD_KERNEL_H

#include <stddef.h>
#include "fd_act.h"
#include "fd_status.h"

/* Fortran BLAS signatures, as scipy.linalg.cython_blas exports them. */
typedef void (*fd_sgemm_fn)(char *ta, char *tb, int *m, int *n, int *k, float *alpha,
                            float *a, int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*fd_dgemm_fn)(char *ta, char *tb, int *m, int *n, int *k, double *alpha,
                            double *a, int *lda, double *b, int *ldb, double *beta, double *c, int *ldc);
typedef void (*fd_sgemv_fn)(char *t, int *m, int *n, float *alpha, float *a, int *lda,
                            float *x, int *incx, float *beta, float *y, int *incy);
typedef void (*fd_dgemv_fn)(char *t, int *m, int *n, double *alpha, double *a, int *lda,
                            double *x, int *incx, double *beta, double *y, int *incy);

void fd_set_blas(fd_sgemm_fn sgemm, fd_dgemm_fn dgemm, fd_sgemv_fn sgemv, fd_dgemv_fn dgemv);

/* The BLAS library behind `fn` (a gemm pointer): its path, OpenBLAS config string and thread
   count (-1 / "" when it is not an OpenBLAS fastdense can talk to). */
void fd_find_blas_threads_api(void *fn);
const char *fd_blas_path(void);
const char *fd_blas_config(void);
int fd_blas_get_threads(void);
int fd_blas_set_threads(int n);

/* Element type of a call's matrices. */
typedef enum fd_dtype { FD_F32 = 0, FD_F64 = 1 } fd_dtype;

/* One fused dense call. Matrices are row-major with a leading dimension (row stride, in
   elements), or transposed (column-major) when the *_colmajor flag is set:
     x[i, k] = x_colmajor ? x[i + k * ldx] : x[i * ldx + k]      (M x K)
     w[k, n] = w_colmajor ? w[k + n * ldw] : w[k * ldw + n]      (K x N)
     out[i, j] = out[i * ldo + j]                                (M x N, or M x N/2 for glu)
   bias has N entries or is NULL. out must not overlap x, w or bias. */
typedef struct {
    int dtype;
    ptrdiff_t m, k, n;
    const void *x; ptrdiff_t ldx; int x_colmajor;
    const void *w; ptrdiff_t ldw; int w_colmajor;
    const void *bias;
    void *out; ptrdiff_t ldo;
    fd_act act;
    /* f32 only, optional: w packed by fd_pack_f32 (then the packed kernel computes x @ w
       where the CPU has it; w itself is still needed for the BLAS path). */
    const float *wpack;
} fd_dense_args;

/* Returns 0 on success, -1 when scratch memory could not be allocated. No GIL needed. */
int fd_dense(const fd_dense_args *a);

/* Threads: fastdense's own pool size (1 = never split). */
void fd_set_num_threads(int n);
int fd_get_num_threads(void);
int fd_cpu_count(void);
/* 1 when fastdense splits work over its own pool (BLAS single-threaded), 0 when it lets the
   BLAS thread each call and serialises concurrent multi-threaded BLAS calls. */
int fd_own_threading(void);
/* Force the mode: 1 own pool, 0 BLAS threads, -1 follow the BLAS thread count (default). */
void fd_set_own_threading(int v);

/* Largest dimension passed to one BLAS call (INT_MAX; lowered by tests to exercise splitting). */
void fd_set_blas_int_max(ptrdiff_t v);
ptrdiff_t fd_get_blas_int_max(void);

/* For other csrc files (the whole-model plan). */
/* Run fn(ctx, t) for t < ntasks on the caller plus up to max_helpers idle pool threads;
   -1 when a task returned nonzero. */
int fd_parallel_for(int (*fn)(void *ctx, ptrdiff_t t), void *ctx, ptrdiff_t ntasks, int max_helpers);
/* One dense call on the calling thread only; glu needs m * n elements of scratch. */
int fd_dense_serial(const fd_dense_args *a, void *glu_scratch, int lock_blas);
void fd_busy_enter(void);
void fd_busy_leave(void);

#endif
