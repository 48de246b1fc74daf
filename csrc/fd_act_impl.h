/* fd_act_impl.h -- the epilogue loops.  Included once per SIMD target by fd_act.c, between
 * FD_TARGET_BEGIN_<path> and FD_TARGET_END (fd_cpu.h), with FD_SFX(name) giving each copy its own
 * suffix.  No include
 * guard on purpose.  The math (fd_act_math.h) is always_inline, so it is compiled for the
 * target it lands in; every inner loop here is branch-free and auto-vectorized.
 */

#define FD_CHUNK 256   /* row-wise ops work through a row in chunks of this many values */

/* dst[i, j] = FN(src[i, j] + bias[j], q) over a rows x n block. */
#define FD_ELEMWISE(T, FN)                                                                  \
    do {                                                                                    \
        for (ptrdiff_t i = 0; i < rows; i++) {                                              \
            const T *s_ = src + i * ld_src;                                                 \
            T *d_ = dst + i * ld_dst;                                                       \
            if (bias)                                                                       \
                for (ptrdiff_t j = 0; j < n; j++)                                           \
                    d_[j] = FN((T)(s_[j] + bias[j]), q);                                    \
            else                                                                            \
                for (ptrdiff_t j = 0; j < n; j++)                                           \
                    d_[j] = FN(s_[j], q);                                                   \
        }                                                                                   \
    } while (0)

/* acc[l] += x[8k + l]: eight interleaved lanes, so the sum vectorizes without reassociation. */
static inline void FD_SFX(acc8)(double *acc, const double *x, ptrdiff_t len)
{
    ptrdiff_t k = 0;
    for (; k + 8 <= len; k += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[k + l];
    for (; k < len; k++)
        acc[k & 7] += x[k];
}

/* The same with Neumaier compensation (the float64 row sums): sum = acc + cmp, error ~1 ulp. */
static inline void FD_SFX(acc8c)(double *acc, double *cmp, const double *x, ptrdiff_t len)
{
    ptrdiff_t k = 0;
    for (; k + 8 <= len; k += 8)
        for (int l = 0; l < 8; l++) {
            double a = acc[l], v = x[k + l], t = a + v;
            cmp[l] += fabs(a) >= fabs(v) ? (a - t) + v : (v - t) + a;
            acc[l] = t;
        }
    for (; k < len; k++) {
        double a = acc[k & 7], v = x[k], t = a + v;
        cmp[k & 7] += fabs(a) >= fabs(v) ? (a - t) + v : (v - t) + a;
        acc[k & 7] = t;
    }
}

/* ------------------------------------------------------------------ row-wise, float32 */
/* All take the pre-activation row in d (bias already added) and work in place. */

/* Largest value of the row, ignoring NaN (NaN reaches the result through the later passes). */
static inline float FD_SFX(rowmax_f32)(const float *d, ptrdiff_t n)
{
    float m8[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++)
            m8[l] = d[j + l] > m8[l] ? d[j + l] : m8[l];
    float m = -INFINITY;
    for (; j < n; j++)
        m = d[j] > m ? d[j] : m;
    for (int l = 0; l < 8; l++)
        m = m8[l] > m ? m8[l] : m;
    return m;
}

static inline double FD_SFX(rowmax_f64)(const double *d, ptrdiff_t n)
{
    double m8[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                    -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++)
            m8[l] = d[j + l] > m8[l] ? d[j + l] : m8[l];
    double m = -INFINITY;
    for (; j < n; j++)
        m = d[j] > m ? d[j] : m;
    for (int l = 0; l < 8; l++)
        m = m8[l] > m ? m8[l] : m;
    return m;
}

static inline double FD_SFX(sum8)(const double *acc)
{
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* The total of acc8c's lanes, still compensated. */
static inline double FD_SFX(sum8c)(const double *acc, const double *cmp)
{
    double s = 0.0, c = FD_SFX(sum8)(cmp);
    for (int l = 0; l < 8; l++) {
        double t = s + acc[l];
        c += fabs(s) >= fabs(acc[l]) ? (s - t) + acc[l] : (acc[l] - t) + s;
        s = t;
    }
    return s + c;
}

/* acc[l] += x[8k + l] for float x, summed in float64. */
static inline void FD_SFX(acc8f)(double *acc, const float *x, ptrdiff_t len)
{
    ptrdiff_t k = 0;
    for (; k + 8 <= len; k += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += (double)x[k + l];
    for (; k < len; k++)
        acc[k & 7] += (double)x[k];
}

/* softmax: e = exp(x - max) in float32, then e / sum(e) with the sum and the division in float64.
 * x - max is carried exactly as h + l (a two-sum), so its rounding does not become a relative
 * error of e; below -104 e rounds to 0 and l is dropped (it may be huge there, or NaN when x or
 * max is infinite). e is within about 0.65 ulp and the result within 2 ulp. This replaced a
 * float64 exp (0.5-1.5 ulp): 1.6-2.0 -> 1.1-1.6 ns per value on one AVX2 core, which matters
 * where the product is cheap beside it (4096x256x256: about a quarter of the call). */
static void FD_SFX(softmax_f32)(float *d, ptrdiff_t n)
{
    const float m = FD_SFX(rowmax_f32)(d, n);
    double acc[8] = {0};
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FD_CHUNK) {
        const ptrdiff_t len = n - j0 < FD_CHUNK ? n - j0 : FD_CHUNK;
        float *dj = d + j0;
        for (ptrdiff_t k = 0; k < len; k++) {
            const float x = dj[k], h = x - m, bv = h - x;
            const float l = (x - (h - bv)) + (-m - bv);     /* h + l == x - m exactly */
            const int near = h > -104.0f && l == l;
            const fd_exp32_sp q = fd_exp32_scaled(fd_maxf(h, -104.0f), near ? l : 0.0f, 1, 24);
            dj[k] = (q.s + q.s * q.p) * 0x1p-24f;
        }
        FD_SFX(acc8f)(acc, dj, len);
    }
    const double inv = 1.0 / FD_SFX(sum8)(acc);
    for (ptrdiff_t j = 0; j < n; j++)
        d[j] = (float)((double)d[j] * inv);
}

/* log_softmax: (x - max) - log1p(sum over x < max of exp(x - max) + (count of maxima - 1)),
 * so a dominant entry gets an accurate tiny result instead of log(1 + tiny) rounding. */
static void FD_SFX(log_softmax_f32)(float *d, ptrdiff_t n)
{
    const double m = FD_SFX(rowmax_f32)(d, n);
    double acc[8] = {0}, cnt[8] = {0}, e[FD_CHUNK], c[FD_CHUNK];
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FD_CHUNK) {
        ptrdiff_t len = n - j0 < FD_CHUNK ? n - j0 : FD_CHUNK;
        const float *dj = d + j0;
        for (ptrdiff_t k = 0; k < len; k++) {
            double w = (double)dj[k] - m;
            e[k] = w == 0.0 ? 0.0 : fd_exp(w);
            c[k] = w == 0.0 ? 1.0 : 0.0;
        }
        FD_SFX(acc8)(acc, e, len);
        FD_SFX(acc8)(cnt, c, len);
    }
    const double lse = log1p((FD_SFX(sum8)(cnt) - 1.0) + FD_SFX(sum8)(acc));
    for (ptrdiff_t j = 0; j < n; j++)
        d[j] = (float)(((double)d[j] - m) - lse);
}

/* sparsemax: max(x - tau, 0) with sum = 1.  tau by Michelot's fixed point: from tau = max - 1
 * (a lower bound), tau <- (sum of the x above tau - 1) / their count rises monotonically to the
 * answer and stops when the support stops shrinking (a few passes, no sort, no memory).
 * A row holding NaN or +inf gives NaN; -inf entries give 0. */
static void FD_SFX(sparsemax_f32)(float *d, ptrdiff_t n)
{
    const double m = FD_SFX(rowmax_f32)(d, n);
    int bad = 0;
    for (ptrdiff_t j = 0; j < n; j++)
        bad |= (d[j] != d[j]) | (d[j] == INFINITY);
    double tau = -1.0, e[FD_CHUNK], c[FD_CHUNK];
    double kprev = -1.0;
    for (ptrdiff_t it = 0; it <= n && !bad; it++) {
        double acc[8] = {0}, cnt[8] = {0};
        for (ptrdiff_t j0 = 0; j0 < n; j0 += FD_CHUNK) {
            ptrdiff_t len = n - j0 < FD_CHUNK ? n - j0 : FD_CHUNK;
            const float *dj = d + j0;
            for (ptrdiff_t k = 0; k < len; k++) {
                double w = (double)dj[k] - m;
                e[k] = w > tau ? w : 0.0;
                c[k] = w > tau ? 1.0 : 0.0;
            }
            FD_SFX(acc8)(acc, e, len);
            FD_SFX(acc8)(cnt, c, len);
        }
        double k = FD_SFX(sum8)(cnt);
        tau = (FD_SFX(sum8)(acc) - 1.0) / k;
        if (k == kprev)
            break;
        kprev = k;
    }
    tau = bad ? NAN : tau;
    for (ptrdiff_t j = 0; j < n; j++) {
        double y = ((double)d[j] - m) - tau;
        d[j] = (float)(y <= 0.0 ? 0.0 : y);
    }
}

/* ------------------------------------------------------------------ row-wise, float64 */

static void FD_SFX(softmax_f64)(double *d, ptrdiff_t n)
{
    const double m = FD_SFX(rowmax_f64)(d, n);
    double acc[8] = {0}, cmp[8] = {0};
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FD_CHUNK) {
        ptrdiff_t len = n - j0 < FD_CHUNK ? n - j0 : FD_CHUNK;
        double *dj = d + j0;
        for (ptrdiff_t k = 0; k < len; k++)
            dj[k] = fd_exp_diff64(dj[k], m);
        FD_SFX(acc8c)(acc, cmp, dj, len);
    }
    const double sum = FD_SFX(sum8c)(acc, cmp);
    for (ptrdiff_t j = 0; j < n; j++)
        d[j] = d[j] / sum;
}

static void FD_SFX(log_softmax_f64)(double *d, ptrdiff_t n)
{
    const double m = FD_SFX(rowmax_f64)(d, n);
    double acc[8] = {0}, cmp[8] = {0}, cnt[8] = {0}, e[FD_CHUNK], c[FD_CHUNK];
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FD_CHUNK) {
        ptrdiff_t len = n - j0 < FD_CHUNK ? n - j0 : FD_CHUNK;
        const double *dj = d + j0;
        for (ptrdiff_t k = 0; k < len; k++) {
            double w = dj[k] - m;
            e[k] = w == 0.0 ? 0.0 : fd_exp_diff64(dj[k], m);
            c[k] = w == 0.0 ? 1.0 : 0.0;
        }
        FD_SFX(acc8c)(acc, cmp, e, len);
        FD_SFX(acc8)(cnt, c, len);
    }
    const double lse = log1p((FD_SFX(sum8)(cnt) - 1.0) + FD_SFX(sum8c)(acc, cmp));
    for (ptrdiff_t j = 0; j < n; j++)
        d[j] = (d[j] - m) - lse;
}

static void FD_SFX(sparsemax_f64)(double *d, ptrdiff_t n)
{
    const double m = FD_SFX(rowmax_f64)(d, n);
    int bad = 0;
    for (ptrdiff_t j = 0; j < n; j++)
        bad |= (d[j] != d[j]) | (d[j] == INFINITY);
    double tau = -1.0, e[FD_CHUNK], c[FD_CHUNK];
    double kprev = -1.0;
    for (ptrdiff_t it = 0; it <= n && !bad; it++) {
        double acc[8] = {0}, cmp[8] = {0}, cnt[8] = {0};
        for (ptrdiff_t j0 = 0; j0 < n; j0 += FD_CHUNK) {
            ptrdiff_t len = n - j0 < FD_CHUNK ? n - j0 : FD_CHUNK;
            const double *dj = d + j0;
            for (ptrdiff_t k = 0; k < len; k++) {
                double w = dj[k] - m;
                e[k] = w > tau ? w : 0.0;
                c[k] = w > tau ? 1.0 : 0.0;
            }
            FD_SFX(acc8c)(acc, cmp, e, len);
            FD_SFX(acc8)(cnt, c, len);
        }
        double k = FD_SFX(sum8)(cnt);
        tau = (FD_SFX(sum8c)(acc, cmp) - 1.0) / k;
        if (k == kprev)
            break;
        kprev = k;
    }
    tau = bad ? NAN : tau;
    for (ptrdiff_t j = 0; j < n; j++) {
        double y = (d[j] - m) - tau;
        d[j] = y <= 0.0 ? 0.0 : y;
    }
}

/* ------------------------------------------------------------------ glu */

/* dst[i, j] = a * sigmoid(b), a = row[j], b = row[j + n/2] (bias added).  In place is safe:
 * column j of dst only overwrites column j of src, which nothing later reads. */
static void FD_SFX(glu_f32)(const float *bias, const float *src, ptrdiff_t ld_src, float *dst,
                            ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t n)
{
    const ptrdiff_t h = n / 2;
    for (ptrdiff_t i = 0; i < rows; i++) {
        const float *s = src + i * ld_src;
        float *d = dst + i * ld_dst;
        if (bias)
            for (ptrdiff_t j = 0; j < h; j++) {
                double a = (float)(s[j] + bias[j]), b = (float)(s[j + h] + bias[j + h]);
                d[j] = (float)(a * (1.0 / (1.0 + fd_exp(-b))));
            }
        else
            for (ptrdiff_t j = 0; j < h; j++)
                d[j] = (float)((double)s[j] * (1.0 / (1.0 + fd_exp(-(double)s[j + h]))));
    }
}

static void FD_SFX(glu_f64)(const double *bias, const double *src, ptrdiff_t ld_src, double *dst,
                            ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t n)
{
    const ptrdiff_t h = n / 2;
    for (ptrdiff_t i = 0; i < rows; i++) {
        const double *s = src + i * ld_src;
        double *d = dst + i * ld_dst;
        if (bias)   /* two loops: with the test inside, only the AVX2 and AVX-512 copies vectorized */
            for (ptrdiff_t j = 0; j < h; j++)
                d[j] = (s[j] + bias[j]) * fd_logistic64(s[j + h] + bias[j + h]);
        else
            for (ptrdiff_t j = 0; j < h; j++)
                d[j] = s[j] * fd_logistic64(s[j + h]);
    }
}

/* ------------------------------------------------------------------ entry points */

/* Row-wise ops: copy src + bias into the dst row (unless already there), then work in place. */
#define FD_ROWWISE(T, ROWFN)                                                                \
    do {                                                                                    \
        for (ptrdiff_t i = 0; i < rows; i++) {                                              \
            const T *s_ = src + i * ld_src;                                                 \
            T *d_ = dst + i * ld_dst;                                                       \
            if (bias)                                                                       \
                for (ptrdiff_t j = 0; j < n; j++)                                           \
                    d_[j] = s_[j] + bias[j];                                                \
            else if (d_ != s_)                                                              \
                memcpy(d_, s_, (size_t)n * sizeof(T));                                     \
            ROWFN(d_, n);                                                                   \
        }                                                                                   \
    } while (0)

/* Parameters for the relu family: returns the fd32/fd64 variant to use (0 plain relu,
 * 1 leaky, 2 clip without slope, 3 clip with slope) and fills q (see fd_relu_general). */
static inline int FD_SFX(relu_params)(const fd_act *a, fd_prm *q)
{
    double ns = a->p[0], mv = a->p[1], t = a->p[2];
    int has_max = !(mv != mv);
    if (!has_max && t == 0.0)
        return ns == 0.0 ? 0 : 1;
    q->a = ns;
    q->b = has_max ? 0.0 : -INFINITY;
    q->c = has_max ? mv : INFINITY;
    q->d = t;
    return ns == 0.0 ? 2 : 3;
}

/* The CUSTOM rows of fd_act_list.h: T the element type, P the math prefix (fd32, fd64), S the
   row-function suffix (f32, f64); q holds p[0..2] of the fd_act. */
#define FD_DISPATCH_relu(T, P, S)                                                           \
    switch (FD_SFX(relu_params)(a, &q)) {                                                   \
    case 0: FD_ELEMWISE(T, P##_relu); break;                                                \
    case 1: FD_ELEMWISE(T, P##_leaky_relu); break;                                          \
    case 2: FD_ELEMWISE(T, P##_relu_clip); break;                                           \
    default: FD_ELEMWISE(T, P##_relu_slope); break;                                         \
    }
#define FD_DISPATCH_leaky_relu(T, P, S)                                                     \
    if (q.a == 0.0)                                                                         \
        FD_ELEMWISE(T, P##_relu);                                                           \
    else                                                                                    \
        FD_ELEMWISE(T, P##_leaky_relu);
/* float32 celu with alpha > 0 has its own form (1/alpha in q.b); float64 has one form */
#define FD_DISPATCH_celu(T, P, S) FD_CELU_##S
#define FD_CELU_f32                                                                         \
    q.b = 1.0 / q.a;                                                                        \
    if (q.a > 0.0)                                                                          \
        FD_ELEMWISE(float, fd32_celu_pos);                                                  \
    else                                                                                    \
        FD_ELEMWISE(float, fd32_celu);
#define FD_CELU_f64 FD_ELEMWISE(double, fd64_celu);
#define FD_DISPATCH_gelu(T, P, S)                                                           \
    if (q.a != 0.0)                                                                         \
        FD_ELEMWISE(T, P##_gelu_tanh);                                                      \
    else                                                                                    \
        FD_ELEMWISE(T, P##_gelu);
#define FD_DISPATCH_glu(T, P, S) FD_SFX(glu_##S)(bias, src, ld_src, dst, ld_dst, rows, n);

/* One case of the epilogue's switch per row of fd_act_list.h; DEFAULT (linear) is the switch's
   default, which also takes unknown codes. */
#define FD_CASE_ELEM(id, T, P, S, fn) case FD_ACT_##id: FD_ELEMWISE(T, P##_##fn); break;
#define FD_CASE_ROW(id, T, P, S, fn) case FD_ACT_##id: FD_ROWWISE(T, FD_SFX(fn##_##S)); break;
#define FD_CASE_CUSTOM(id, T, P, S, fn) case FD_ACT_##id: FD_DISPATCH_##fn(T, P, S) break;
#define FD_CASE_DEFAULT(id, T, P, S, fn)
#define FD_CASE_F32(id, fn, name, dispatch, rowwise, halves) FD_CASE_##dispatch(id, float, fd32, f32, fn)
#define FD_CASE_F64(id, fn, name, dispatch, rowwise, halves) FD_CASE_##dispatch(id, double, fd64, f64, fn)

static void FD_SFX(epilogue_f32)(const fd_act *a, const float *bias, const float *src,
                                 ptrdiff_t ld_src, float *dst, ptrdiff_t ld_dst, ptrdiff_t rows,
                                 ptrdiff_t n)
{
    fd_prm q = {a->p[0], a->p[1], a->p[2], 0.0};
    switch (a->code) {
    FD_ACTIVATIONS(FD_CASE_F32)
    default: FD_ELEMWISE(float, fd32_linear); break;
    }
}

static void FD_SFX(epilogue_f64)(const fd_act *a, const double *bias, const double *src,
                                 ptrdiff_t ld_src, double *dst, ptrdiff_t ld_dst, ptrdiff_t rows,
                                 ptrdiff_t n)
{
    fd_prm q = {a->p[0], a->p[1], a->p[2], 0.0};
    switch (a->code) {
    FD_ACTIVATIONS(FD_CASE_F64)
    default: FD_ELEMWISE(double, fd64_linear); break;
    }
}

#undef FD_CHUNK
#undef FD_ELEMWISE
#undef FD_ROWWISE
#undef FD_DISPATCH_relu
#undef FD_DISPATCH_leaky_relu
#undef FD_DISPATCH_celu
#undef FD_CELU_f32
#undef FD_CELU_f64
#undef FD_DISPATCH_gelu
#undef FD_DISPATCH_glu
#undef FD_CASE_ELEM
#undef FD_CASE_ROW
#undef FD_CASE_CUSTOM
#undef FD_CASE_DEFAULT
#undef FD_CASE_F32
#undef FD_CASE_F64
