/* fd_q4gemm_float.h -- the int4 float recipe's kernels (FD_Q4_FLOAT, fd_q4gemm_float.c), called
 * by fd_q4gemm.c's fd_q4_* for weights packed under that recipe; same arguments as those. */
#ifndef FD_Q4GEMM_FLOAT_H
#define FD_Q4GEMM_FLOAT_H

#include "fd_qgemm.h"

/* Per panel of 16 columns and per group, rows in pairs: byte c of a pair = (u0 & 15) | u1 << 4,
   u = q + 8 (an odd group's last pair has u1 = 8). */
ptrdiff_t fd_q4f_packed_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block);
void fd_q4f_pack(const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block,
                 const float *scale, const int8_t *zero, uint8_t *wp, float *scale_out, float *zero_out);
/* scale_out / zero_out of both recipes (one format): per panel, groups x 16 floats, panel-major;
   padded columns get scale 1 (per unit) or 0 with zero 8. */
void fd_q4_pack_params(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block, const float *scale, const int8_t *zero,
                       float *scale_out, float *zero_out);
void fd_q4f_panels_view(const fd_qweights *w, ptrdiff_t p0, fd_qweights *v);
/* Same bits on every path (C, AVX2 for AVX2 / AVX-VNNI, AVX-512 for AVX512-VNNI / AMX). */
int fd_q4f_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                 const fd_act *act, const float *bias, float *c, ptrdiff_t ldc);

#endif /* FD_Q4GEMM_FLOAT_H */
