/* fd_act.h -- every Keras 3 activation as a fused GEMM epilogue, with run-time CPU dispatch.
 *
 *   dst[i, j] = act(src[i, :] + bias)[j]        for i < rows
 *
 * Element-wise activations act on each value; row-wise ones (softmax, log_softmax, sparsemax)
 * on each whole row; glu halves the row: dst[i, j] = a_j * sigmoid(b_j), a = row[:n/2],
 * b = row[n/2:].  float32: the transcendental activations (exp, expm1, tanh, sigmoid, erfc, log1p
 * based) are computed natively in float32 with float32 polynomials, to a few ulp; the cheap ones
 * (clips, softsign, squareplus, ...) go through float64, within 1 ulp.  float64: double-precision
 * polynomials (1-4 ulp; gelu's erfc from libm).  Each activation's bound, per dtype and CPU path,
 * is in tests/test_activations.py.  Loops are vectorized; the code for each SIMD path is chosen
 * at run time (fd_cpu.h).  NaN in -> NaN out; no spurious overflow.
 */
#ifndef FD_ACT_H
#define FD_ACT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Activation codes: FD_ACT_LINEAR, FD_ACT_RELU, ... (the list and each one's parameters:
   fd_act_list.h). */
#include "fd_act_list.h"

typedef enum fd_act_code {
#define FD_X(id, fn, name, dispatch, rowwise, halves) FD_ACT_##id,
    FD_ACTIVATIONS(FD_X)
#undef FD_X
    FD_ACT_COUNT
} fd_act_code;

typedef struct {
    int code;       /* FD_ACT_* */
    double p[3];    /* the activation's parameters (fd_act_list.h) */
} fd_act;

/* Canonical Keras name of `code` ("relu", ...), NULL if out of range. */
const char *fd_act_name(int code);
/* Its identifier in the enum without FD_ACT_ ("RELU", ...), NULL if out of range. */
const char *fd_act_id(int code);
/* 1 for softmax, log_softmax, sparsemax and glu: they need whole rows. */
int fd_act_rowwise(int code);
/* 1 for glu: the output has cols_in / 2 columns (cols_in must be even). */
int fd_act_halves(int code);

/* dst[i, j] = act(src[i, :] + bias)[j] for i < rows.  src has cols_in columns and row stride
 * ld_src (elements); dst has row stride ld_dst.  bias (length cols_in) may be NULL.  dst == src
 * with ld_dst == ld_src (in place) works for every activation, glu included; otherwise dst and
 * src must not overlap.  Pure, thread-safe, no allocation.  An unknown code copies src + bias. */
void fd_epilogue_f32(const fd_act *a, const float *bias, const float *src, ptrdiff_t ld_src,
                     float *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in);
void fd_epilogue_f64(const fd_act *a, const double *bias, const double *src, ptrdiff_t ld_src,
                     double *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in);

#ifdef __cplusplus
}
#endif

#endif /* FD_ACT_H */
