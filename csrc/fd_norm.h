/* fastdense row-wise normalizations (the epilogues of LayerNormalization, RMSNormalization and
   UnitNormalization over a row's last axis), the same C on every CPU path.

   Each row is read in float64: y = ((x - mean) or x) * inv * gamma + beta with
     FD_NORM_LAYER        mean over the row, inv = 1 / sqrt(var + eps)
     FD_NORM_LAYER_RMS    Keras's deprecated LayerNormalization(rms_scaling=True): no centring,
                          inv = 1 / sqrt(var + eps) (the variance, not the mean square)
     FD_NORM_RMS          no centring, inv = 1 / sqrt(mean(x * x) + eps)
     FD_NORM_UNIT         no centring, inv = min(1 / sqrt(sum(x * x)), 1 / eps) (Keras: eps = 1e-12)
   gamma and beta may be NULL (1 and 0). Results are the float64 values rounded once, so they
   do not depend on the batch, the row's position or the CPU path. */
#ifndef FD_NORM_H
#define FD_NORM_H

#include <stddef.h>

typedef enum { FD_NORM_LAYER = 0, FD_NORM_LAYER_RMS = 1, FD_NORM_RMS = 2, FD_NORM_UNIT = 3 } fd_norm_kind;

typedef struct {
    fd_norm_kind kind;
    double eps;
    const void *gamma;   /* n values of the rows' dtype, or NULL */
    const void *beta;    /* n values of the rows' dtype, or NULL */
} fd_norm;

/* Normalize m rows of n values: row r of x starts at x + r * ldx, of y at y + r * ldy
   (y == x allowed: the row is read completely before it is written). */
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
