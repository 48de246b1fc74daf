/* fastdense packed-weight f32 GEMM: c = x @ w with w packed once (see fd_gemm.c). */
#ifndef FD_GEMM_H
#define FD_GEMM_H

#include <stddef.h>

/* Floats needed to pack a k x n matrix (n rounded up to panels of 16 columns). */
ptrdiff_t fd_pack_f32_size(ptrdiff_t k, ptrdiff_t n);
/* Pack w[kk, j] = colmajor ? w[kk + j * ldw] : w[kk * ldw + j] into dst. */
void fd_pack_f32(const float *w, ptrdiff_t ldw, int colmajor, ptrdiff_t k, ptrdiff_t n, float *dst);
/* 1 when this CPU runs the packed kernel (AVX2 + FMA and not forced to the baseline). */
int fd_packed_available(void);
/* c[i, j] = sum_kk x[i * rsx + kk * csx] * w[kk, j] for i < m, j < n, with wp the packed w
   (or, for a column range starting at a multiple of 16, the packed w advanced by that many
   columns times k). Returns -1 when scratch memory could not be allocated. */
int fd_gemm_packed_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                       ptrdiff_t csx, const float *wp, float *c, ptrdiff_t ldc);

/* The same product, bit for bit, for a plain w (w[kk, j] = colmajor ? w[kk + j * ldw] :
   w[kk * ldw + j]) packed one K block at a time in a small buffer, for calls without packed
   weights. -1 when scratch memory could not be allocated. */
int fd_gemm_kblocks_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                        ptrdiff_t csx, const float *w, ptrdiff_t ldw, int colmajor, float *c, ptrdiff_t ldc);

/* Rows of a plan for plain weights shared by several threads: for a call of at least
   fd_shared_pack_rows() rows per thread against w (row-major, k x n), fd_shared_pack_buffer()
   gives the calling thread's buffer for the whole packed w (NULL: not worth it or no memory),
   which the threads fill with fd_pack_f32_rows (rows [r0, r1) of w each) before the packed
   kernel runs on it. Same layout as fd_pack_f32. */
float *fd_shared_pack_buffer(ptrdiff_t m_per_thread, ptrdiff_t k, ptrdiff_t n);
void fd_pack_f32_rows(const float *w, ptrdiff_t ldw, ptrdiff_t k, ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1,
                      float *dst);

/* The same product for a row-major w (w[kk * ldw + j]) read in place: for a few rows, where
   packing w would cost more than it saves. Bitwise equal to fd_gemm_packed_f32 on the
   packed w. -1 when scratch memory could not be allocated. */
int fd_gemm_direct_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                       ptrdiff_t csx, const float *w, ptrdiff_t ldw, float *c, ptrdiff_t ldc);
/* Most rows fd_gemm_direct_f32 takes (2 to 5 rows: where it beats a BLAS). */
#define FD_DIRECT_MAX_ROWS 5

#endif
