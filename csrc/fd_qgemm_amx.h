/* fd_qgemm_amx.h -- the int8 Dense kernel on Intel AMX tiles (TDPBSSD), for fd_qgemm.c.
 *
 * Same contract and same bits as the other int8 paths (fd_qgemm.h): Keras's row quantizer, exact
 * int32 sums, then float(acc) / (kernel_scale[j] * s_i), bias and activation.  TDPBSSD multiplies
 * signed by signed bytes, so the quantized inputs (in [-127, 127]) need no +128 shift and the
 * packed weights' comp is unused.  The packed int8 layout (per panel of 16 columns, ceil(k/4)
 * rows of 16 columns x 4 k) is already AMX's B-tile layout: one 64-byte tile row per 4 k.
 *
 * Tiles are configured per call on the calling thread (ldtilecfg) and released at its end
 * (tilerelease), so the thread pays no AMX state cost outside the kernel.  The process must
 * have Linux's permission for the tile data (fd_cpu requests it; fd_cpu_has(FD_CPU_AMX_INT8)).
 */
#ifndef FD_QGEMM_AMX_H
#define FD_QGEMM_AMX_H

#include <stddef.h>
#include <stdint.h>

#include "fd_act.h"
#include "fd_qgemm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes a 64-deep k step may read past the end of a panel: the last step of the last panel
   reads a whole 16-row B tile, up to 15 rows (of 64 bytes) beyond ceil(k/4).  Those rows meet
   the zero padding of the quantized rows (k rounded up to 64), so what they hold never counts;
   fd_q8_packed_size leaves them zeroed after the last panel so the read stays in the buffer. */
#define FD_QAMX_OVERREAD (15 * 64)

/* Fewest rows worth the tiles: with fewer (a batch of 1 or 2, or the last rows after whole
   16-row tiles) the AVX512-VNNI strips are as fast or faster; for a small kernel (k * n below
   FD_QAMX_SMALL, where quantizing the rows costs about what the product does) from
   FD_QAMX_MIN_ROWS_SMALL rows.  Measured: docs/quantization.md. */
#define FD_QAMX_MIN_ROWS 3
#define FD_QAMX_MIN_ROWS_SMALL 12
#define FD_QAMX_SMALL 32768

/* Keras's row quantizer of the caller's path: q (kpad bytes, zero padded), returns the scale. */
typedef float (*fd_q8_row_fn)(ptrdiff_t k, const float *x, uint8_t *dst, ptrdiff_t kpad, int shift);

/* 1 when this build has the AMX kernel (the compiler knows amx-tile / amx-int8). */
int fd_q8_amx_built(void);

/* How many of m rows (the first ones) of a k x n layer to run on tiles: 0 below the minimum
   above, else m less a last partial 16-row tile shorter than it, which the VNNI strips take. */
ptrdiff_t fd_q8_amx_rows(ptrdiff_t m, ptrdiff_t k, ptrdiff_t n);

/* Rows [0, m) on tiles: with x, c (float, row stride ldc) = act(descale(row(x) @ w) + bias);
   without x (NULL), c (int32) = q @ w for already quantized rows q (stride ldq).  The caller
   has checked w (bits 8, 1 <= k <= FD_Q8_MAX_K) and that the CPU runs AMX.  Returns FD_OK or
   FD_ERR_NOMEM. */
int fd_q8_amx(const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, fd_q8_row_fn row,
              const int8_t *q, ptrdiff_t ldq, const fd_act *act, const float *bias, void *c, ptrdiff_t ldc);

#ifdef __cplusplus
}
#endif

#endif /* FD_QGEMM_AMX_H */
