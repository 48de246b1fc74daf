/* fd_norm_impl.h -- the row-wise normalization loops.  Included once per SIMD target by fd_norm.c,
 * between FD_TARGET_BEGIN_<path> and FD_TARGET_END (fd_cpu.h), with FD_SFX(name) giving each copy
 * its own suffix (the scheme of fd_act_impl.h).  No include guard on purpose.  Every loop is the
 * same C on every path and is auto-vectorized without reassociation (no -ffast-math): the sums
 * keep FD_NORM_LANES interleaved partial sums, combined in one fixed order, so a row's statistics
 * are the same bits wherever the row is and whatever the path (only the multiply-adds the AVX2
 * and AVX-512 copies fuse may differ from the baseline's).
 */

/* Sum of the 16 partial sums, in a fixed order. */
static inline double FD_SFX(norm_total)(const double *s)
{
    double t[8];
    for (int l = 0; l < 8; l++)
        t[l] = s[l] + s[l + 8];
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

/* sum(x) and sum((x - mu)^2) of one row in float64 (16 lanes: two AVX-512 registers, so the
   adds' latency is hidden; x86 converts 8 floats to 8 doubles per instruction). */
#define FD_NORM_SUMS(T)                                                                         \
    static inline double FD_SFX(norm_sum_##T)(const T *x, ptrdiff_t n)                          \
    {                                                                                           \
        double s[16] = {0};                                                                     \
        ptrdiff_t j = 0;                                                                        \
        for (; j + 16 <= n; j += 16)                                                            \
            for (int l = 0; l < 16; l++)                                                        \
                s[l] += (double)x[j + l];                                                       \
        for (; j < n; j++)                                                                      \
            s[j & 15] += (double)x[j];                                                          \
        return FD_SFX(norm_total)(s);                                                           \
    }                                                                                           \
    static inline double FD_SFX(norm_sumsq_##T)(const T *x, ptrdiff_t n, double mu)             \
    {                                                                                           \
        double s[16] = {0};                                                                     \
        ptrdiff_t j = 0;                                                                        \
        for (; j + 16 <= n; j += 16)                                                            \
            for (int l = 0; l < 16; l++) {                                                      \
                const double d = (double)x[j + l] - mu;                                         \
                s[l] += d * d;                                                                  \
            }                                                                                   \
        for (; j < n; j++) {                                                                    \
            const double d = (double)x[j] - mu;                                                 \
            s[j & 15] += d * d;                                                                 \
        }                                                                                       \
        return FD_SFX(norm_total)(s);                                                           \
    }                                                                                           \
    /* the mean to subtract (0 without centring) and inv of one row (fd_norm.h) */              \
    static inline void FD_SFX(norm_stats_##T)(const fd_norm *p, const T *x, ptrdiff_t n,        \
                                              double *mean, double *inv)                        \
    {                                                                                           \
        if (p->kind == FD_NORM_LAYER || p->kind == FD_NORM_LAYER_RMS) {                         \
            const double mu = FD_SFX(norm_sum_##T)(x, n) / (double)n;                           \
            const double var = FD_SFX(norm_sumsq_##T)(x, n, mu) / (double)n;                    \
            *inv = 1.0 / sqrt(var + p->eps);                                                    \
            *mean = p->kind == FD_NORM_LAYER ? mu : 0.0;                                        \
            return;                                                                             \
        }                                                                                       \
        const double sq = FD_SFX(norm_sumsq_##T)(x, n, 0.0);                                    \
        *mean = 0.0;                                                                            \
        if (p->kind == FD_NORM_RMS) {                                                           \
            *inv = 1.0 / sqrt(sq / (double)n + p->eps);                                         \
        } else {                                                                                \
            /* comparisons written so that a NaN sum of squares stays NaN (as in Keras) */        \
            const double cap = 1.0 / p->eps, r = sq <= 0.0 ? cap : 1.0 / sqrt(sq);              \
            *inv = r > cap ? cap : r;                                                           \
        }                                                                                       \
    }

FD_NORM_SUMS(float)
FD_NORM_SUMS(double)

/* One row's output in the row's float64 statistics, rounded once (float64 rows; float32 rows
   whose inv is out of the float32 pass's range). has_g / has_b are constants where it is inlined. */
#define FD_NORM_OUT64(T)                                                                        \
    static inline FD_NORM_INLINE void FD_SFX(norm_out64_##T)(const T *x, T *y, ptrdiff_t n,     \
                                                             double mean, double inv,          \
                                                             const T *g, const T *b,           \
                                                             int has_g, int has_b)             \
    {                                                                                           \
        FD_NORM_IVDEP                                                                           \
        for (ptrdiff_t j = 0; j < n; j++) {                                                     \
            const double v = ((double)x[j] - mean) * inv;                                       \
            y[j] = (T)(has_g ? (has_b ? v * (double)g[j] + (double)b[j] : v * (double)g[j])     \
                             : (has_b ? v + (double)b[j] : v));                                 \
        }                                                                                       \
    }

FD_NORM_OUT64(float)
FD_NORM_OUT64(double)

/* One float32 row's output pass in float32: d = (x - mh) - ml, y = d * s * g + b. */
static inline FD_NORM_INLINE void FD_SFX(norm_out32)(const float *x, float *y, ptrdiff_t n, float mh, float ml,
                                                     float s, const float *g, const float *b, int centred,
                                                     int has_g, int has_b)
{
    FD_NORM_IVDEP
    for (ptrdiff_t j = 0; j < n; j++) {
        const float v = (centred ? (x[j] - mh) - ml : x[j]) * s;
        y[j] = has_g ? (has_b ? v * g[j] + b[j] : v * g[j]) : (has_b ? v + b[j] : v);
    }
}

static void FD_SFX(norm_rows_f32)(const fd_norm *p, const float *x, ptrdiff_t ldx, float *y, ptrdiff_t ldy,
                                  ptrdiff_t m, ptrdiff_t n)
{
    const float *g = (const float *)p->gamma, *b = (const float *)p->beta;
    const int centred = p->kind == FD_NORM_LAYER;
    for (ptrdiff_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        double mean, inv;
        FD_SFX(norm_stats_float)(p, xr, n, &mean, &inv);
        if (!(inv >= FD_NORM_INV_MIN && inv <= FD_NORM_INV_MAX)) {   /* NaN too */
            switch ((g != NULL) * 2 + (b != NULL)) {
            case 0: FD_SFX(norm_out64_float)(xr, yr, n, mean, inv, g, b, 0, 0); break;
            case 1: FD_SFX(norm_out64_float)(xr, yr, n, mean, inv, g, b, 0, 1); break;
            case 2: FD_SFX(norm_out64_float)(xr, yr, n, mean, inv, g, b, 1, 0); break;
            default: FD_SFX(norm_out64_float)(xr, yr, n, mean, inv, g, b, 1, 1);
            }
            continue;
        }
        const float mh = (float)mean, ml = (float)(mean - (double)mh), s = (float)inv;
        switch (centred * 4 + (g != NULL) * 2 + (b != NULL)) {
        case 0: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 0, 0, 0); break;
        case 1: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 0, 0, 1); break;
        case 2: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 0, 1, 0); break;
        case 3: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 0, 1, 1); break;
        case 4: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 1, 0, 0); break;
        case 5: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 1, 0, 1); break;
        case 6: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 1, 1, 0); break;
        default: FD_SFX(norm_out32)(xr, yr, n, mh, ml, s, g, b, 1, 1, 1);
        }
    }
}

static void FD_SFX(norm_rows_f64)(const fd_norm *p, const double *x, ptrdiff_t ldx, double *y, ptrdiff_t ldy,
                                  ptrdiff_t m, ptrdiff_t n)
{
    const double *g = (const double *)p->gamma, *b = (const double *)p->beta;
    for (ptrdiff_t r = 0; r < m; r++) {
        const double *xr = x + r * ldx;
        double *yr = y + r * ldy;
        double mean, inv;
        FD_SFX(norm_stats_double)(p, xr, n, &mean, &inv);
        switch ((g != NULL) * 2 + (b != NULL)) {
        case 0: FD_SFX(norm_out64_double)(xr, yr, n, mean, inv, g, b, 0, 0); break;
        case 1: FD_SFX(norm_out64_double)(xr, yr, n, mean, inv, g, b, 0, 1); break;
        case 2: FD_SFX(norm_out64_double)(xr, yr, n, mean, inv, g, b, 1, 0); break;
        default: FD_SFX(norm_out64_double)(xr, yr, n, mean, inv, g, b, 1, 1);
        }
    }
}

#undef FD_NORM_SUMS
#undef FD_NORM_OUT64
