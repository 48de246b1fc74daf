/* fastdense row-wise normalizations (the epilogues of LayerNormalization, RMSNormalization and
   UnitNormalization over a row's last axis), with run-time CPU dispatch like the activations.

   y = post(((x - mean) or x) * inv * gamma + beta), per row, with
     FD_NORM_LAYER        mean over the row, inv = 1 / sqrt(var + eps)
     FD_NORM_LAYER_RMS    Keras's deprecated LayerNormalization(rms_scaling=True): no centring,
                          inv = 1 / sqrt(var + eps) (the variance, not the mean square)
     FD_NORM_RMS          no centring, inv = 1 / sqrt(mean(x * x) + eps)
     FD_NORM_UNIT         no centring, inv = min(1 / sqrt(sum(x * x)), 1 / eps) (Keras: eps = 1e-12)
   gamma and beta may be NULL (1 and 0); post is an element-wise activation (fd_act.h) applied to
   the result (FD_ACT_LINEAR, code 0: none), e.g. the ReLU a model puts after its LayerNorm.

   The statistics (mean, var, inv) are float64 sums in a fixed order. float64 rows: the output in
   float64 (x - mean rounds too: the error has a term u |mean| * inv * |gamma| beside those of the
   float32 bound, as in float64 NumPy). float32 rows: the output pass is float32 vector code,
   d = (x - mean_hi) - mean_lo (the mean as two floats), y = d * inv32 * gamma + beta; every
   output is within 2**-24 * (6 |xhat * gamma| + |y|) of the exact value (xhat = the exact
   normalized value, y = the exact result; before post), see fd_norm.c. A row whose inv exceeds
   2**60 (a nearly constant row with a tiny eps) takes the float64 output pass instead.
   A row's bits do not depend on the batch, the row's position or the thread split; the AVX2
   and AVX-512 copies fuse multiply-adds, the baseline copy cannot, so CPU paths may differ in
   the last bit. */
#ifndef FD_NORM_H
#define FD_NORM_H

#include <stddef.h>

#include "fd_act.h"

typedef enum { FD_NORM_LAYER = 0, FD_NORM_LAYER_RMS = 1, FD_NORM_RMS = 2, FD_NORM_UNIT = 3 } fd_norm_kind;

typedef struct {
    fd_norm_kind kind;
    double eps;
    const void *gamma;   /* n values of the rows' dtype, or NULL */
    const void *beta;    /* n values of the rows' dtype, or NULL */
    fd_act post;         /* element-wise activation after it (code FD_ACT_LINEAR: none) */
} fd_norm;

/* Normalize m rows of n values: row r of x starts at x + r * ldx, of y at y + r * ldy
   (y == x with ldy == ldx allowed: a row is read completely before it is written). Pure,
   thread-safe, no allocation. */
void fd_norm_rows_f32(const fd_norm *p, const float *x, ptrdiff_t ldx, float *y, ptrdiff_t ldy,
                      ptrdiff_t m, ptrdiff_t n);
void fd_norm_rows_f64(const fd_norm *p, const double *x, ptrdiff_t ldx, double *y, ptrdiff_t ldy,
                      ptrdiff_t m, ptrdiff_t n);

/* y = x * scale + offset per column (the affine layers a plan cannot fold into a Dense:
   BatchNormalization, Normalization, Rescaling), in float64 with one rounding, like the layers. */
void fd_affine_rows_f32(const double *scale, const double *offset, const float *x, ptrdiff_t ldx, float *y,
                        ptrdiff_t ldy, ptrdiff_t m, ptrdiff_t n);
void fd_affine_rows_f64(const double *scale, const double *offset, const double *x, ptrdiff_t ldx, double *y,
                        ptrdiff_t ldy, ptrdiff_t m, ptrdiff_t n);

/* PReLU over m samples of n values each: y = x >= 0 ? x : alpha[j] * x (alpha: n values of the
   rows' dtype, one per value of a sample, shared axes already broadcast). */
void fd_prelu_rows_f32(const float *alpha, const float *x, ptrdiff_t ldx, float *y, ptrdiff_t ldy, ptrdiff_t m,
                       ptrdiff_t n);
void fd_prelu_rows_f64(const double *alpha, const double *x, ptrdiff_t ldx, double *y, ptrdiff_t ldy, ptrdiff_t m,
                       ptrdiff_t n);

#endif
