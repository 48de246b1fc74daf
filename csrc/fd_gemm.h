/* fastdense packed-weight f32 GEMM: c = x @ w with w packed once (see fd_gemm.c). One packed
   layout (panels of 16 columns) and the same bits on every path: AVX-512, AVX2 + FMA, NEON. */
#ifndef FD_GEMM_H
#define FD_GEMM_H

#include <stddef.h>

/* Floats needed to pack a k x n matrix (n rounded up to panels of 16 columns). */
ptrdiff_t fd_pack_f32_size(ptrdiff_t k, ptrdiff_t n);
/* Pack w[kk, j] = colmajor ? w[kk + j * ldw] : w[kk * ldw + j] into dst. */
void fd_pack_f32(const float *w, ptrdiff_t ldw, int colmajor, ptrdiff_t k, ptrdiff_t n, float *dst);
/* 1 when this CPU runs the packed kernel (AVX2 + FMA, or NEON, and not forced to the baseline). */
int fd_packed_available(void);
/* The float32 GEMM kernel this process runs and why, for `fastdense info`: "avx512 6x64 (...)",
   "avx2 6x16 (...)", "neon 6x16" or "BLAS (...)"; the first word is the path. */
const char *fd_gemm_kernel_name(void);
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

/* Plain row-major weights (k x n) packed whole for a call of m_per_thread rows per thread:
   fd_whole_pack_buffer() gives the calling thread's buffer for them (kept for its next call),
   or NULL when that is not worth it (fewer than 512 rows per thread, a single K block, more
   than 16 MiB) or memory is short. fd_pack_f32_rows packs rows [r0, r1) of w into it (so
   several threads can fill one copy), in fd_pack_f32's layout. */
float *fd_whole_pack_buffer(ptrdiff_t m_per_thread, ptrdiff_t k, ptrdiff_t n);
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
