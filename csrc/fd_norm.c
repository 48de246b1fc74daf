/* Row-wise normalizations: see fd_norm.h. Two float64 passes over a row for its statistics
 * (sum, then the squares of x - mean), then the output pass; a row of a Dense output is in L1
 * after the GEMM wrote it (fd_dense.c runs this as the Dense's epilogue).
 *
 * The float32 output pass, and its bound (tested by tests/test_layers_norm.py against float64
 * NumPy, and in C by tests/c/norm_gather_test.c, on every CPU path). u = 2**-24; mean and inv are
 * the float64 statistics, whose relative errors (about n * 2**-53 / 16) are far below u for any
 * row that fits in memory. The mean is split mh = fl32(mean), ml = fl32(mean - mh), and
 *   d = fl(fl(x - mh) - ml)    x - mh is exact when x and mh are within a factor of 2
 *                              (Sterbenz); otherwise |x - mh| >= |mh| / 2 >= |ml| / u, so both
 *                              cases give |d - (x - mean)| <= (2u + u^2) |x - mean| (+ u^2 |mean|
 *                              from ml's rounding, and 2**-149 when ml is subnormal);
 *   v = fl(d * s)              s = fl32(inv): two more roundings, u each;
 *   y = fl(v * g + b)          one rounding with a fused multiply-add (AVX2, AVX-512), two
 *                              without (baseline): u |y| and u |xhat * g|.
 * So |y - y_exact| <= u (6 |xhat * g| + |y_exact|) with room to spare (5.02 u |xhat * g| without
 * FMA), xhat = (x - mean) * inv exact. Rows with inv outside [2**-60, 2**60] (values beyond
 * 2**60, or a nearly constant row with eps near 0, where s or ml would leave float32's normal
 * range) and NaN rows take the float64 output pass: one rounding, like float64 rows.
 * Measured on Sapphire Rapids under KVM (LayerNormalization with gamma and beta, 512 values a
 * row, 256 rows): 0.15 us a row on the AVX-512 path, 0.18 AVX2, 0.31 baseline, against 0.48 us
 * for the former float64 output pass compiled for the baseline only. */
#include <math.h>

#include "fd_cpu.h"
#include "fd_norm.h"

/* The output loops read x[j] and write y[j] only: no dependence between iterations, in place
   (y == x) included, so the vectorizer needs no overlap check (it would refuse y == x). */
#if defined(__clang__)
#define FD_NORM_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FD_NORM_IVDEP _Pragma("GCC ivdep")
#else
#define FD_NORM_IVDEP
#endif
#if defined(__GNUC__) || defined(__clang__)
#define FD_NORM_INLINE __attribute__((always_inline))
#else
#define FD_NORM_INLINE
#endif

#define FD_NORM_INV_MIN 0x1p-60   /* the float32 output pass's range of inv (above) */
#define FD_NORM_INV_MAX 0x1p60

/* ------------------------------------------------------------------ the three copies */

#define FD_SFX(name) name##_baseline
#include "fd_norm_impl.h"
#undef FD_SFX

#if FD_X86_DISPATCH
FD_TARGET_BEGIN_AVX2
#define FD_SFX(name) name##_avx2
#include "fd_norm_impl.h"
#undef FD_SFX
FD_TARGET_END

FD_TARGET_BEGIN_AVX512
#define FD_SFX(name) name##_avx512
#include "fd_norm_impl.h"
#undef FD_SFX
FD_TARGET_END
#endif

/* ------------------------------------------------------------------ dispatch */

typedef void (*fd_norm_f32)(const fd_norm *, const float *, ptrdiff_t, float *, ptrdiff_t, ptrdiff_t, ptrdiff_t);
typedef void (*fd_norm_f64)(const fd_norm *, const double *, ptrdiff_t, double *, ptrdiff_t, ptrdiff_t, ptrdiff_t);

/* indexed by fd_cpu_level() */
static const struct {
    fd_norm_f32 f32;
    fd_norm_f64 f64;
} fd_norm_paths[] = {
    {norm_rows_f32_baseline, norm_rows_f64_baseline},
#if FD_X86_DISPATCH
    {norm_rows_f32_avx2, norm_rows_f64_avx2},
    {norm_rows_f32_avx512, norm_rows_f64_avx512},
#endif
};

/* The post activation follows every few rows, while they are still in L1. */
enum { FD_NORM_POST_ROWS = 8 };

/* fd_norm_rows_f32 and fd_norm_rows_f64: one body for both dtypes. */
#define FD_NORM_ROWS(T, SFX)                                                                          \
    void fd_norm_rows_##SFX(const fd_norm *p, const T *x, ptrdiff_t ldx, T *y, ptrdiff_t ldy, ptrdiff_t m, \
                            ptrdiff_t n)                                                              \
    {                                                                                                 \
        if (m <= 0 || n <= 0) return;                                                                 \
        const fd_norm_##SFX rows = fd_norm_paths[fd_cpu_level()].SFX;                                 \
        if (p->post.code == FD_ACT_LINEAR) {                                                          \
            rows(p, x, ldx, y, ldy, m, n);                                                            \
            return;                                                                                   \
        }                                                                                             \
        for (ptrdiff_t r = 0; r < m; r += FD_NORM_POST_ROWS) {                                        \
            const ptrdiff_t k = m - r < FD_NORM_POST_ROWS ? m - r : FD_NORM_POST_ROWS;                \
            rows(p, x + r * ldx, ldx, y + r * ldy, ldy, k, n);                                        \
            fd_epilogue_##SFX(&p->post, NULL, y + r * ldy, ldy, y + r * ldy, ldy, k, n);              \
        }                                                                                             \
    }

FD_NORM_ROWS(float, f32)
FD_NORM_ROWS(double, f64)
#undef FD_NORM_ROWS

typedef float f32;
typedef double f64;

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
