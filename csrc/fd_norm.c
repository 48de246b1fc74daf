/* Row-wise normalizations: see fd_norm.h. Two passes over a row (statistics, then the output),
   both in float64; a row of a Dense output is in L1 after the GEMM wrote it. */
#include <math.h>

#include "fd_norm.h"

/* Sums over a row in 8 interleaved float64 partial sums (combined in a fixed order): the
   compiler vectorizes them without reassociating anything, so every CPU path gives the same
   bits; a single running sum is a serial chain of adds about 4x slower at 512 values. */
#define FD_NORM_SUMS(T)                                                                         \
    static double fd_sum_##T(const T *x, ptrdiff_t n) {                                         \
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                 \
        ptrdiff_t j = 0;                                                                        \
        for (; j + 8 <= n; j += 8)                                                              \
            for (int l = 0; l < 8; l++) s[l] += (double)x[j + l];                               \
        for (; j < n; j++) s[j & 7] += (double)x[j];                                            \
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));                \
    }                                                                                           \
    static double fd_sumsq_##T(const T *x, ptrdiff_t n, double mu) {                            \
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                 \
        ptrdiff_t j = 0;                                                                        \
        for (; j + 8 <= n; j += 8)                                                              \
            for (int l = 0; l < 8; l++) {                                                       \
                double d = (double)x[j + l] - mu;                                               \
                s[l] += d * d;                                                                  \
            }                                                                                   \
        for (; j < n; j++) {                                                                    \
            double d = (double)x[j] - mu;                                                       \
            s[j & 7] += d * d;                                                                  \
        }                                                                                       \
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));                \
    }

/* inv (and the mean to subtract: 0 without centring) of one row. */
#define FD_NORM_STATS(T)                                                                        \
    FD_NORM_SUMS(T)                                                                             \
    static void fd_norm_stats_##T(const fd_norm *p, const T *x, ptrdiff_t n, double *mean,     \
                                  double *inv) {                                               \
        if (p->kind == FD_NORM_LAYER || p->kind == FD_NORM_LAYER_RMS) {                         \
            double mu = n > 0 ? fd_sum_##T(x, n) / (double)n : 0.0;                             \
            double var = n > 0 ? fd_sumsq_##T(x, n, mu) / (double)n : 0.0;                      \
            *inv = 1.0 / sqrt(var + p->eps);                                                    \
            *mean = p->kind == FD_NORM_LAYER ? mu : 0.0;                                        \
            return;                                                                             \
        }                                                                                       \
        double sq = fd_sumsq_##T(x, n, 0.0);                                                    \
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
            if (g && b)                                                                         \
                for (ptrdiff_t j = 0; j < n; j++)                                               \
                    yr[j] = (T)(((double)xr[j] - mean) * inv * (double)g[j] + (double)b[j]);    \
            else                                                                                \
                for (ptrdiff_t j = 0; j < n; j++) {                                             \
                    double v = ((double)xr[j] - mean) * inv;                                    \
                    if (g) v *= (double)g[j];                                                   \
                    if (b) v += (double)b[j];                                                   \
                    yr[j] = (T)v;                                                               \
                }                                                                               \
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
