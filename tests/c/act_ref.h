/* act_ref.h -- the activations' references for tests/c/act_test.c, written from the Keras 3
 * definitions (as tests/test_activations.py's long-double NumPy references are), in the type R.
 * Included twice: R = double (checks the float32 results) and R = long double (the float64
 * results, where long double is wider than double).  <tgmath.h> picks exp / expl etc. by type.
 * No include guard on purpose; REF(name) gives each copy its own names. */

/* tanh x = sum a_k x^(2k+1) with a_0 = 1, (2k+1) a_k = -sum_{i<k} a_i a_(k-1-i) (from
 * tanh' = 1 - tanh^2), so x - tanh x = x^3 sum_{k>=1} -a_k x^(2k-2): no cancellation near 0. */
static inline R REF(tanh_shrink_small)(R x)
{
    enum { K = 40 };
    R a[K], y = x * x, s = 0;
    a[0] = 1;
    for (int k = 1; k < K; k++) {
        R c = 0;
        for (int i = 0; i < k; i++)
            c += a[i] * a[k - 1 - i];
        a[k] = -c / (2 * k + 1);
    }
    for (int k = K - 1; k >= 1; k--)
        s = s * y - a[k];
    return x * y * s;
}

/* x Phi(x) = x erfc(z) / 2 with z = -x / sqrt2.  z is rounded, and erfc's relative sensitivity to
 * that is 2 z^2 ulp, so 1/sqrt2 is carried as c + c_lo and the rounding dz of z is put back to
 * first order: erfc(z + dz) = erfc(z) - (2 / sqrt(pi)) e^(-z^2) dz. */
static inline R REF(gelu)(R x)
{
    const R c = sqrt((R)0.5), c_lo = fma(-c, c, (R)0.5) / (2 * c);
    R z = -x * c, dz = fma(-x, c, -z) - x * c_lo;
    R e = erfc(z);
    if (z > 1)
        e -= (R)1.12837916709551257389615890312154517L * exp(-z * z) * dz;
    return isinf(x) && x < 0 ? (R)-0.0 : x * e / 2;
}

static inline R REF(softplus)(R x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

/* act(x) for one element-wise activation with parameters p (the fd_act's, fd_act_list.h). */
static inline R REF(elementwise)(int code, const double *p, R x)
{
    const R alpha = (R)1.6732632423543772848170429916717L, scale = (R)1.0507009873554804934193349852946L;
    const R pi = (R)3.14159265358979323846264338327950288L;
    R y;
    switch (code) {
    case FD_ACT_RELU:
    case FD_ACT_LEAKY_RELU: {
        const R ns = (R)p[0], t = code == FD_ACT_RELU ? (R)p[2] : 0;
        const int has_max = code == FD_ACT_RELU && !isnan(p[1]);
        y = x > t ? x : 0;
        if (has_max)
            y = y < 0 ? 0 : (y > (R)p[1] ? (R)p[1] : y);
        if (ns != 0)
            y -= ns * (x < t ? t - x : 0);
        return isnan(x) ? x : y;
    }
    case FD_ACT_RELU6: return x < 0 ? 0 : (x > 6 ? 6 : x);
    case FD_ACT_ELU: return x >= 0 ? x : (R)p[0] * expm1(x);
    case FD_ACT_SELU: return scale * (x >= 0 ? x : alpha * expm1(x));
    case FD_ACT_CELU: return x >= 0 ? x : (R)p[0] * expm1(x / (R)p[0]);
    case FD_ACT_GELU:
        if (p[0] == 0)
            return REF(gelu)(x);
        y = sqrt(2 / pi) * (x + (R)0.044715L * x * x * x);
        return isinf(x) && x < 0 ? (R)-0.0 : x / (1 + exp(-2 * y));
    case FD_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case FD_ACT_HARD_SIGMOID: y = x + 3; return (y < 0 ? 0 : (y > 6 ? 6 : y)) / 6;
    case FD_ACT_HARD_SILU: return x <= -3 ? 0 : (x >= 3 ? x : x * (x + 3) / 6);
    case FD_ACT_SILU: return isinf(x) && x < 0 ? (R)-0.0 : x / (1 + exp(-x));
    case FD_ACT_TANH: return tanh(x);
    case FD_ACT_HARD_TANH: return x < -1 ? -1 : (x > 1 ? 1 : x);
    case FD_ACT_TANH_SHRINK: return fabs(x) < (R)0.5 ? REF(tanh_shrink_small)(x) : x - tanh(x);
    case FD_ACT_SOFTPLUS: return REF(softplus)(x);
    case FD_ACT_SOFTSIGN: return isinf(x) ? copysign((R)1, x) : x / (1 + fabs(x));
    case FD_ACT_SPARSE_PLUS: return x <= -1 ? 0 : (x < 1 ? (x + 1) * (x + 1) / 4 : x);
    case FD_ACT_SPARSE_SIGMOID: return x <= -1 ? 0 : (x >= 1 ? 1 : (x + 1) / 2);
    case FD_ACT_SQUAREPLUS:
        y = sqrt(x * x + (R)p[0]);
        return x >= 0 ? (x + y) / 2 : (R)p[0] / (2 * (y - x));
    case FD_ACT_LOG_SIGMOID: return -REF(softplus)(-x);
    case FD_ACT_EXPONENTIAL: return exp(x);
    case FD_ACT_MISH: return isinf(x) && x < 0 ? (R)-0.0 : x * tanh(REF(softplus)(x));
    case FD_ACT_SOFT_SHRINK: {
        const R t = (R)p[0];
        return isnan(x) ? x : (x > t ? x - t : (x < -t ? x + t : 0));
    }
    case FD_ACT_HARD_SHRINK: return isnan(x) ? x : (fabs(x) > (R)p[0] ? x : 0);
    case FD_ACT_THRESHOLD: return isnan(x) ? x : (x > (R)p[0] ? x : (R)p[1]);
    default: return x;   /* linear */
    }
}

static inline int REF(descending)(const void *a, const void *b)
{
    const R u = *(const R *)a, v = *(const R *)b;
    return (u < v) - (u > v);
}

/* One row of a row-wise activation, in place (n values; glu writes n / 2).  tmp: n values. */
static inline void REF(rowwise)(int code, R *x, ptrdiff_t n, R *tmp)
{
    R m = -INFINITY, s = 0;
    for (ptrdiff_t j = 0; j < n; j++)
        m = x[j] > m ? x[j] : m;
    if (code == FD_ACT_SOFTMAX) {
        for (ptrdiff_t j = 0; j < n; j++)
            s += x[j] = exp(x[j] - m);
        for (ptrdiff_t j = 0; j < n; j++)
            x[j] /= s;
    } else if (code == FD_ACT_LOG_SOFTMAX) {
        /* (x - max) - log1p(sum over x < max of e^(x - max) + (count of maxima - 1)) */
        R sum = 0, count = 0;   /* summed apart: -1 + 1 + e^(x - max) would lose the small terms */
        for (ptrdiff_t j = 0; j < n; j++) {
            sum += x[j] == m ? 0 : exp(x[j] - m);
            count += x[j] == m;
        }
        for (ptrdiff_t j = 0; j < n; j++)
            x[j] = (x[j] - m) - log1p((count - 1) + sum);
    } else if (code == FD_ACT_SPARSEMAX) {   /* Keras's sort-based form */
        memcpy(tmp, x, (size_t)n * sizeof(R));
        qsort(tmp, (size_t)n, sizeof(R), REF(descending));
        R cs = 0, cs_k = 0;
        ptrdiff_t k = 0;
        for (ptrdiff_t j = 0; j < n; j++) {
            cs += tmp[j];
            if (tmp[j] - (cs - 1) / (R)(j + 1) > 0)
                k = j + 1, cs_k = cs;
        }
        const R tau = (cs_k - 1) / (R)k;
        for (ptrdiff_t j = 0; j < n; j++)
            x[j] = x[j] - tau > 0 ? x[j] - tau : 0;
    } else if (code == FD_ACT_GLU) {
        for (ptrdiff_t j = 0; j < n / 2; j++)
            x[j] = x[j] / (1 + exp(-x[j + n / 2]));
    }
}
