/* Row-wise normalizations: see fd_norm.h. Two passes over a row (statistics, then the output),
   both in float64; a row of a Dense output is in L1 after the GEMM wrote it. */
#include <math.h>

#include "fd_norm.h"

/* inv (and the mean to subtract: 0 without centring) of one row. */
#define FD_NORM_STATS(T)                                                                        \
    static void fd_norm_stats_##T(const fd_norm *p, const T *x, ptrdiff_t n, double *mean,     \
                                  double *inv) {                                               \
        double sum = 0.0, sq = 0.0, mu = 0.0;                                                   \
        ptrdiff_t j;                                                                            \
        if (p->kind == FD_NORM_LAYER || p->kind == FD_NORM_LAYER_RMS) {                         \
            for (j = 0; j < n; j++) sum += (double)x[j];                                        \
            mu = n > 0 ? sum / (double)n : 0.0;                                                 \
            for (j = 0; j < n; j++) {                                                           \
                double d = (double)x[j] - mu;                                                   \
                sq += d * d;                                                                    \
            }                                                                                   \
            *inv = 1.0 / sqrt((n > 0 ? sq / (double)n : 0.0) + p->eps);                         \
            *mean = p->kind == FD_NORM_LAYER ? mu : 0.0;                                        \
            return;                                                                             \
        }                                                                                       \
        for (j = 0; j < n; j++) sq += (double)x[j] * (double)x[j];                              \
        *mean = 0.0;                                                                            \
        if (p->kind == FD_NORM_RMS) {                                                           \
            *inv = 1.0 / sqrt((n > 0 ? sq / (double)n : 0.0) + p->eps);                         \
        } else {                                                                                \
            double cap = 1.0 / p->eps;                                                          \
            double r = sq > 0.0 ? 1.0 / sqrt(sq) : cap;                                         \
            *inv = r < cap ? r : cap;                                                           \
        }                                                                                       \
    }

#define FD_NORM_ROWS(T)                                                                         \
    FD_NORM_STATS(T)                                                                            \
    void fd_norm_rows_##T(const fd_norm *p, const T *x, ptrdiff_t ldx, T *y, ptrdiff_t ldy,     \
                          ptrdiff_t m, ptrdiff_t n) {                                           \
        const T *g = (const T *)p->gamma, *b = (const T *)p->beta;                              \
        for (ptrdiff_t r = 0; r < m; r++) {                                                     \
            const T *xr = x + r * ldx;                                                          \
            T *yr = y + r * ldy;                                                                \
            double mean, inv;                                                                   \
            fd_norm_stats_##T(p, xr, n, &mean, &inv);                                           \
            for (ptrdiff_t j = 0; j < n; j++) {                                                 \
                double v = ((double)xr[j] - mean) * inv;                                        \
                if (g) v *= (double)g[j];                                                       \
                if (b) v += (double)b[j];                                                       \
                yr[j] = (T)v;                                                                   \
            }                                                                                   \
        }                                                                                       \
    }

typedef float f32;
typedef double f64;
FD_NORM_ROWS(f32)
FD_NORM_ROWS(f64)

#define FD_AFFINE_ROWS(T)                                                                       \
    void fd_affine_rows_##T(const double *scale, const double *offset, const T *x, ptrdiff_t ldx, \
                            T *y, ptrdiff_t ldy, ptrdiff_t m, ptrdiff_t n) {                    \
        for (ptrdiff_t r = 0; r < m; r++)                                                       \
            for (ptrdiff_t j = 0; j < n; j++)                                                   \
                y[r * ldy + j] = (T)((double)x[r * ldx + j] * scale[j] + offset[j]);            \
    }

#define FD_PRELU_ROWS(T)                                                                        \
    void fd_prelu_rows_##T(const T *alpha, const T *x, ptrdiff_t ldx, T *y, ptrdiff_t ldy,      \
                           ptrdiff_t m, ptrdiff_t n) {                                          \
        for (ptrdiff_t r = 0; r < m; r++)                                                       \
            for (ptrdiff_t j = 0; j < n; j++) {                                                 \
                T v = x[r * ldx + j];                                                           \
                y[r * ldy + j] = v >= 0 ? v : alpha[j] * v;                                     \
            }                                                                                   \
    }

FD_AFFINE_ROWS(f32)
FD_AFFINE_ROWS(f64)
FD_PRELU_ROWS(f32)
FD_PRELU_ROWS(f64)
