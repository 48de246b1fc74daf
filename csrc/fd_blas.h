/* fd_blas.h -- the BLAS behind scipy: its GEMM/GEMV pointers, its library and thread API, and
   GEMM/GEMV calls of any 64-bit size. */
#ifndef FD_BLAS_H
#define FD_BLAS_H

#include <stddef.h>

/* Element type of a call's matrices. */
typedef enum fd_dtype { FD_F32 = 0, FD_F64 = 1 } fd_dtype;

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
/* 1 when the BLAS is known to run single-threaded (an OpenBLAS set to 1 thread); an unknown BLAS
   may thread on its own. */
int fd_blas_single_threaded(void);

/* Largest dimension passed to one BLAS call (INT_MAX; lowered by tests to exercise splitting). */
void fd_set_blas_int_max(ptrdiff_t v);
ptrdiff_t fd_get_blas_int_max(void);

/* C := op(A).op(B), column-major, any 64-bit sizes: pieces no larger than the BLAS int, and
   blocks packed to small leading dimensions when a leading dimension itself is too large.
   0, or FD_ERR_NOMEM when those blocks could not be allocated. */
int fd_blas_gemm(int dtype, char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                 const void *A, ptrdiff_t lda, const void *B, ptrdiff_t ldb, void *C, ptrdiff_t ldc);
/* y := op(A).x, column-major A, dimensions that fit a BLAS int (the caller checks). */
void fd_blas_gemv(int dtype, char t, ptrdiff_t m, ptrdiff_t n, const void *A, ptrdiff_t lda,
                  const void *x, ptrdiff_t incx, void *y);

/* Serialise multi-threaded BLAS calls (OpenBLAS collapses when two callers share its pool). */
void fd_blas_lock(void);
void fd_blas_unlock(void);

#endif
