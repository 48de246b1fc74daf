/* fd_qdense.h -- one quantized Dense call (fd_qgemm's int8 / int4 layers) split over fastdense's
   pool: rows for batches, columns for a few rows (bound by reading the weights).  Every row's
   and column's result is computed the same way whatever the split, so the bits never depend on
   it.  No GIL needed. */
#ifndef FD_QDENSE_H
#define FD_QDENSE_H

#include <stddef.h>

#include "fd_act.h"
#include "fd_qgemm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* c = act(x @ w + bias) as fd_q8_dense / fd_q4_dense (by w->bits) compute it, on the caller
   plus up to max_threads - 1 idle workers.  c has row stride ldc >= n (glu writes n / 2 per row).
   Returns FD_OK, FD_ERR_NOMEM or FD_ERR_ARG (fd_status.h). */
int fd_qdense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, const fd_act *act,
              const float *bias, float *c, ptrdiff_t ldc, int max_threads);

#ifdef __cplusplus
}
#endif

#endif /* FD_QDENSE_H */
