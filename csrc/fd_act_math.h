/* fd_act_math.h -- scalar activation math, written so gcc vectorizes loops that call it.
 *
 * Everything here is `always_inline` and branch-free (selects, no calls), so a loop over
 * these functions becomes SIMD code in whatever target it is inlined into (fd_act_impl.h
 * is compiled three times: baseline, AVX2+FMA, AVX-512).  Two families:
 *
 *   fd32_*  float32 activations.  The transcendental ones (exp, expm1, tanh, sigmoid, erfc,
 *           log1p) are computed natively in float32 (8 lanes on AVX2, 16 on AVX-512) with float32
 *           polynomials, to a few ulp; the cheap ones (clips, softsign, squareplus, ...),
 *           tanh_shrink, gelu's tanh form and celu with alpha < 0 still go through float64
 *           (within 1 ulp).
 *   fd64_*  float64 activations, with double-precision polynomials accurate to ~1 ulp
 *           (libm only for erfc in gelu and the per-row log1p of log_softmax).
 *
 * NaN handling: every clamp is written `x > hi ? hi : x`, which keeps NaN (comparisons with NaN
 * are false), and every piecewise select puts NaN in the branch that computes with x.  The
 * exception, fd_clamp_bits32 (cheaper in the vector loops), clamps NaN too: its callers send NaN
 * down a branch that does not use the clamped value, or return it explicitly.
 * Coefficients: csrc/fd_act_coeffs.py.
 */
#ifndef FD_ACT_MATH_H
#define FD_ACT_MATH_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define FD_INLINE static inline __attribute__((always_inline))
#else
#define FD_INLINE static inline
#endif

/* ---------------------------------------------------------------- constants */

#define FD_SELU_ALPHA 1.6732632423543772848170429916717
#define FD_SELU_SCALE 1.0507009873554804934193349852946
#define FD_SELU_SA 1.7580993408473768599402175208123      /* scale * alpha */
#define FD_SQRT1_2 0.70710678118654752440084436210485
#define FD_SQRT_2_OVER_PI 0.79788456080286535587989211986876
#define FD_GELU_TANH_C 0.044715

/* expm1(r) = r + r^2 Q(r), |r| <= 0.35; rel err 6.0e-11 */
static const double FD_EXPM1_Q[7] = {
    0.5,
    0.16666666722181583,
    0.041666666722163605,
    0.008333297083738358,
    0.0013888852650214914,
    0.00019900428151885762,
    2.4860731891275798e-05
};
/* float64: expm1(r) = r + r^2 Q(r), |r| <= 0.3466; rel err 1.2e-16 */
static const double FD_EXPM1_Q64[11] = {
    0.5,
    0.1666666666666667,
    0.04166666666666664,
    0.008333333333326066,
    0.0013888888888898424,
    0.0001984126987497326,
    2.4801587300898582e-05,
    2.755725525560422e-06,
    2.755729113582922e-07,
    2.510526587727234e-08,
    2.0910301758806574e-09
};
/* float64: log(1+f) = 2s + s z R(z), s = f/(2+f), z = s^2 <= 0.02944; rel err 1.4e-16 */
static const double FD_LOG1P_R64[8] = {
    0.6666666666666666,
    0.4000000000000071,
    0.28571428570864116,
    0.2222222238309348,
    0.18181796225277916,
    0.15386219824266575,
    0.13269087766814489,
    0.13084930899392494
};
/* x - tanh x = x^3 G(x^2), |x| < 0.5; rel err 9.4e-12 */
static const double FD_TANH_SHRINK_G32[7] = {
    0.3333333333302102,
    -0.13333333210779022,
    0.05396817511780783,
    -0.021867576089195904,
    0.008840969128968748,
    -0.003457021419714173,
    0.0010342926171590858
};
/* x - tanh x = x^3 G(2 x^2 - 1), |x| < 1; rel err 1.4e-16 */
static const double FD_TANH_SHRINK_G64[16] = {
    0.2778856568389047,
    -0.04611875889321073,
    0.007757311213734747,
    -0.0013068008522788182,
    0.00022018657483106126,
    -3.7100775156885004e-05,
    6.25138910107065e-06,
    -1.053344073128487e-06,
    1.7748562555698795e-07,
    -2.990589799585497e-08,
    5.039785423623794e-09,
    -8.491994017700844e-10,
    1.4224555214270573e-10,
    -2.3963261930326496e-11,
    4.556098553987198e-12,
    -7.688849557041522e-13
};

/* float32: expm1(r) = r + r^2 Q(r), |r| <= 0.3486; rel err of Q 6.4e-08 */
static const float FD_EXPM1_Q32[6] = {
    5.000000000e-01f,
    1.666666716e-01f,
    4.166645929e-02f,
    8.333310485e-03f,
    1.393416664e-03f,
    1.989156444e-04f
};
/* float32: log1p(e) = e R(e - 0.5), 0 <= e <= 1; rel err 9.5e-08 */
static const float FD_LOG1P_R32[10] = {
    8.109301925e-01f,
    -2.885271013e-01f,
    1.326090097e-01f,
    -6.768818945e-02f,
    3.663523495e-02f,
    -2.056318335e-02f,
    1.157768536e-02f,
    -6.788016763e-03f,
    5.250270478e-03f,
    -3.176057013e-03f
};
/* float32: Phi(x) = 1/2 + x S(x^2), |x| <= 0.8; err of x S relative to Phi(-|x|) 9.7e-09 */
static const float FD_GELU_S32[5] = {
    3.989422917e-01f,
    -6.649038941e-02f,
    9.972309694e-03f,
    -1.180274412e-03f,
    1.016423557e-04f
};
/* float32: G(a) = a Phi(-a) e^(a^2/2) = g - N(a)/D(a), g = 0.3989422917366028, 0.7 <= a <= 14.8; err of G 1.1e-08 */
static const float FD_GELU_N32[4] = {
    3.989756107e-01f,
    2.317550182e-01f,
    6.587927043e-02f,
    9.033031762e-03f
};
/* float32: D(a) of the line above */
static const float FD_GELU_D32[6] = {
    1.000000000e+00f,
    1.834839225e+00f,
    1.462793708e+00f,
    6.517586112e-01f,
    1.649929583e-01f,
    2.264508419e-02f
};
#define FD_GELU_G32 0.398942292f   /* g = 1/sqrt(2 pi) rounded to float, as fitted */
#define FD_GELU_SPLIT32 0.8f

/* ---------------------------------------------------------------- helpers */

/* An activation's parameters, passed by value so they live in registers inside the loops. */
typedef struct { double a, b, c, d; } fd_prm;

FD_INLINE double fd_min(double x, double hi) { return x > hi ? hi : x; }   /* keeps NaN */
FD_INLINE double fd_max(double x, double lo) { return x < lo ? lo : x; }   /* keeps NaN */

/* c[0] + c[1] x + ... + c[n-1] x^(n-1) by Estrin's scheme (pairs, then pairs of pairs, ...):
 * these loops are latency-bound, and a Horner chain of n dependent FMAs was the bottleneck. */
#define FD_P2(c, i) ((c)[i] + (c)[(i) + 1] * x)
#define FD_P4(c, i) (FD_P2(c, i) + x2 * FD_P2(c, (i) + 2))
#define FD_P8(c, i) (FD_P4(c, i) + x4 * FD_P4(c, (i) + 4))
FD_INLINE double fd_poly7(const double *c, double x)
{
    double x2 = x * x, x4 = x2 * x2;
    return FD_P4(c, 0) + x4 * (FD_P2(c, 4) + x2 * c[6]);
}
FD_INLINE double fd_poly8(const double *c, double x)
{
    double x2 = x * x, x4 = x2 * x2;
    return FD_P8(c, 0);
}
FD_INLINE double fd_poly11(const double *c, double x)
{
    double x2 = x * x, x4 = x2 * x2, x8 = x4 * x4;
    return FD_P8(c, 0) + x8 * (FD_P2(c, 8) + x2 * c[10]);
}
FD_INLINE double fd_poly16(const double *c, double x)
{
    double x2 = x * x, x4 = x2 * x2, x8 = x4 * x4;
    return FD_P8(c, 0) + x8 * FD_P8(c, 8);
}
FD_INLINE float fd_poly6f(const float *c, float x)
{
    float x2 = x * x, x4 = x2 * x2;
    return FD_P4(c, 0) + x4 * FD_P2(c, 4);
}
FD_INLINE float fd_poly3f(const float *c, float x)
{
    return FD_P2(c, 0) + (x * x) * c[2];
}
FD_INLINE float fd_poly4f(const float *c, float x)
{
    float x2 = x * x;
    return FD_P4(c, 0);
}
FD_INLINE float fd_poly5f(const float *c, float x)
{
    float x2 = x * x;
    return FD_P2(c, 0) + x2 * (FD_P2(c, 2) + x2 * c[4]);
}
FD_INLINE float fd_poly10f(const float *c, float x)
{
    float x2 = x * x, x4 = x2 * x2, x8 = x4 * x4;
    return FD_P8(c, 0) + x8 * FD_P2(c, 8);
}
FD_INLINE float fd_poly11f(const float *c, float x)
{
    float x2 = x * x, x4 = x2 * x2, x8 = x4 * x4;
    return FD_P8(c, 0) + x8 * (FD_P2(c, 8) + x2 * c[10]);
}
#undef FD_P2
#undef FD_P4
#undef FD_P8

/* e^x = s (1 + p) with s = 2^n exact and p = expm1(r), r = x - n ln2 in [-0.35, 0.35].
 * Needs x in [-708, 709] (so s is a normal double) or NaN, which propagates through p.
 * Callers clamp only the side their argument can reach: each clamp is a compare and a blend. */
typedef struct { double s, p; } fd_exp_parts;

FD_INLINE fd_exp_parts fd_exp_split(double x)
{
    const double shift = 0x1.8p52;                       /* rounds to an integer, kept in the low bits */
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double k = x * 1.4426950408889634 + shift;
    double n = k - shift;
    double r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    uint64_t kb;
    memcpy(&kb, &k, sizeof kb);
    uint64_t sb = (kb + 1023u) << 52;                    /* low bits of k hold n: s = 2^n */
    fd_exp_parts e;
    memcpy(&e.s, &sb, sizeof sb);
    e.p = r + r * r * fd_poly7(FD_EXPM1_Q, r);
    return e;
}

/* exp(x) for x in [-708, 709], relative error ~1e-10. */
FD_INLINE double fd_exp_in(double x)
{
    fd_exp_parts e = fd_exp_split(x);
    return e.s + e.s * e.p;
}

/* exp(x) for any x: clamped to [-708, 709] (e^709 ~ 8e307 stands in for overflow). */
FD_INLINE double fd_exp(double x) { return fd_exp_in(fd_min(fd_max(x, -708.0), 709.0)); }

/* expm1(x) for x in [-708, 709], accurate near 0 (relative error ~1e-10). */
FD_INLINE double fd_expm1_in(double x)
{
    fd_exp_parts e = fd_exp_split(x);
    return (e.s - 1.0) + e.s * e.p;
}

/* tanh(x), relative error ~1e-10: expm1(2|x|) / (expm1(2|x|) + 2) with the sign of x. */
FD_INLINE double fd_tanh(double x)
{
    double em = fd_expm1_in(fd_min(2.0 * fabs(x), 40.0));
    return copysign(em / (em + 2.0), x);
}

/* ---------------------------------------------------------------- float32 math */

FD_INLINE float fd_minf(float x, float hi) { return x > hi ? hi : x; }   /* keeps NaN */
FD_INLINE float fd_maxf(float x, float lo) { return x < lo ? lo : x; }   /* keeps NaN */
FD_INLINE uint32_t fd_bits32(float x) { uint32_t b; memcpy(&b, &x, sizeof b); return b; }
FD_INLINE float fd_from_bits32(uint32_t b) { float x; memcpy(&x, &b, sizeof x); return x; }
/* min of the bit patterns as unsigned integers (one vpminud): for hi >= 0 it clamps x in [0, hi] to
 * hi, for hi < 0 it clamps x below hi to hi and leaves every x >= -0 alone; NaN of either sign is
 * clamped too, so the caller restores it.  gcc turns the float selects above into compares and
 * blends (it may not use maxps without -ffinite-math-only), and then pushes the clamp's constant
 * through the following arithmetic as more blends; this one stays a single instruction. */
FD_INLINE float fd_clamp_bits32(float x, float hi)
{
    uint32_t a = fd_bits32(x), b = fd_bits32(hi);
    return fd_from_bits32(a < b ? a : b);
}

/* e^(h + l) = s1 s2 (1 + p), with p = expm1(r), r = h + l - n ln2 in [-0.35, 0.35], and 2^n split
 * in two normal factors s1 = 2^(n >> 1), s2 = 2^(n - (n >> 1)), so every n in [-252, 254] works.
 * A caller multiplies its (normal) result by s1 first and by s2 last: subnormal results and
 * overflow to inf then come out right.  h is the argument, clamped by the caller to the range it
 * needs (|h| <= 174) or NaN (which propagates through p); l is an optional small correction
 * (|l| < 0.1) that h cannot hold, e.g. the low half of -x^2/2: h - n ln2_hi is exact (Cody-Waite,
 * ln2_hi has 15 bits), so the result is as accurate as h + l. */
typedef struct { float s1, s2, p; } fd_exp32_parts;

FD_INLINE fd_exp32_parts fd_exp32_split(float h, float l)
{
    const float shift = 0x1.8p23f;                      /* rounds to an integer, kept in the low bits */
    const float ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    float k = (h + l) * 1.44269504f + shift;
    float n = k - shift;
    float r = h - n * ln2_hi;                           /* exact */
    r = (r + l) - n * ln2_lo;
    int32_t ni = (int32_t)(fd_bits32(k) - 0x4b400000u);   /* n */
    int32_t n1 = ni >> 1;
    fd_exp32_parts e;
    e.s1 = fd_from_bits32((uint32_t)(n1 + 127) << 23);
    e.s2 = fd_from_bits32((uint32_t)(ni - n1 + 127) << 23);
    e.p = r + r * r * fd_poly6f(FD_EXPM1_Q32, r);
    return e;
}

/* The same reduction with one scale factor, for callers whose n = round((h + l) / ln2) stays in
 * [-126 - B, 127 - B] (they clamp h): s = 2^(n + B) is a normal float and e^(h + l) = s (1 + p) 2^-B.
 * The caller computes with s (1 + p) and multiplies by the constant 2^-B last, so a subnormal result
 * is rounded once.  2^(n + B) comes out of the rounding constant itself: k's low bits hold n + 127 + B,
 * and k << 23 moves them into the exponent field (one shift, no integer arithmetic).  has_l = 0 drops
 * the correction l (r + 0 is not free: it would turn -0 into +0). */
typedef struct { float s, p; } fd_exp32_sp;

FD_INLINE fd_exp32_sp fd_exp32_scaled(float h, float l, int has_l, int B)
{
    const float shift = 0x1.8p23f + (float)(127 + B);
    const float ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    float k = (has_l ? h + l : h) * 1.44269504f + shift;
    float n = k - shift;
    float rh = h - n * ln2_hi;                          /* exact */
    float rl = (has_l ? l : 0.0f) - n * ln2_lo;         /* r = rh + rl */
    float r = rh + rl;
    fd_exp32_sp e;
    e.s = fd_from_bits32(fd_bits32(k) << 23);
    /* with l, p = rh + (rl + r^2 Q): the rounding of r stays out of the leading term */
    e.p = has_l ? rh + (rl + r * r * fd_poly6f(FD_EXPM1_Q32, r)) : r + r * r * fd_poly6f(FD_EXPM1_Q32, r);
    return e;
}

/* e^x for any x: clamped to [-104, 89] (e^-104 rounds to 0, e^89 to inf). */
FD_INLINE float fd_exp32(float x)
{
    fd_exp32_parts e = fd_exp32_split(fd_minf(fd_maxf(x, -104.0f), 89.0f), 0.0f);
    return (e.s1 + e.s1 * e.p) * e.s2;
}

/* log(1 + e^-|x|), the smooth part of softplus and log_sigmoid: e R(e) for e = e^-|x| in [0, 1]. */
FD_INLINE float fd_softplus_tail32(float x)
{
    fd_exp32_sp q = fd_exp32_scaled(fd_maxf(-fabsf(x), -104.0f), 0.0f, 0, 64);
    float e = (q.s + q.s * q.p) * 0x1p-64f;
    return e * fd_poly10f(FD_LOG1P_R32, e - 0.5f);
}

/* A float64 constant c as float hi + lo, so that c x = hi x + lo x keeps c's digits. */
typedef struct { float hi, lo; } fd_f32x2;
FD_INLINE fd_f32x2 fd_split_const(double c)
{
    fd_f32x2 r;
    r.hi = (float)c;
    r.lo = (float)(c - (double)r.hi);
    return r;
}
FD_INLINE float fd_mul_const(fd_f32x2 c, float x)
{
    return c.hi * x + c.lo * fd_minf(fd_maxf(x, -FLT_MAX), FLT_MAX);   /* inf * (hi + lo) = inf */
}
/* the same for finite x (or NaN) */
FD_INLINE float fd_mul_const_fin(fd_f32x2 c, float x) { return c.hi * x + c.lo * x; }
/* the same for x >= 0 (or NaN): inf is clamped to FLT_MAX by its bits (x + 0 turns -0 into +0) */
FD_INLINE float fd_mul_const_pos(fd_f32x2 c, float x)
{
    return c.hi * x + c.lo * fd_clamp_bits32(x + 0.0f, FLT_MAX);
}

/* ---------------------------------------------------------------- float32 activations
 * Signature: float fd32_NAME(float v, fd_prm q); q holds the parameters (see fd_act_impl.h).
 * Where a tail is exactly 0 or x in float32, the input is clamped just beyond the point where
 * that happens (e.g. silu(x < -120) rounds to -0), which also keeps exp in range. */

#define FD32(name) FD_INLINE float fd32_##name(float v, fd_prm q)
#define FD64(name) FD_INLINE double fd64_##name(double x, fd_prm q)
#define FD_UNUSED3 (void)q

/* exact in float: computed natively on 8/16 lanes */
FD32(linear) { FD_UNUSED3; return v; }
FD32(relu) { FD_UNUSED3; return v < 0.0f ? 0.0f : v; }
FD32(relu6) { FD_UNUSED3; return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }
FD32(hard_tanh) { FD_UNUSED3; return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v); }
FD32(leaky_relu) { return v >= 0.0f ? v : (float)q.a * v; }

/* Keras relu with parameters (q.a negative_slope, q.b lo, q.c hi, q.d threshold):
 *   y = x if x > threshold else 0;  y = clip(y, lo, hi)  (lo, hi = 0, max_value when max_value is
 *   given, else -inf, inf);  then, with a slope, y -= negative_slope * max(threshold - x, 0). */
FD_INLINE double fd_relu_general(double x, fd_prm q, int slope)
{
    double y = x <= q.d ? 0.0 : x;
    y = fd_min(fd_max(y, q.b), q.c);
    if (slope)
        y = x < q.d ? y - q.a * (q.d - x) : y;
    return y;
}
FD32(relu_clip) { return (float)fd_relu_general(v, q, 0); }
FD32(relu_slope) { return (float)fd_relu_general(v, q, 1); }

/* expm1(h) for h in [-20, 0] or NaN: (s - 1) + s p with s = 2^n exact (h > 0: garbage) */
FD_INLINE float fd_expm1_32neg(float h)
{
    fd_exp32_sp e = fd_exp32_scaled(h, 0.0f, 0, 0);
    return (e.s - 1.0f) + e.s * e.p;
}

/* the expm1 branch sees x >= -20 (elu = -alpha there in float); x >= 0 and NaN take the other
 * branch (what expm1 makes of them is dropped), so only the lower clamp is needed;
 * alpha is applied as a float pair (hi + lo) so its float64 digits are kept */
FD32(elu)
{
    float em = fd_expm1_32neg(fd_clamp_bits32(v, -20.0f));
    return v < 0.0f ? fd_mul_const_fin(fd_split_const(q.a), em) : v;
}
FD32(selu)
{
    FD_UNUSED3;
    float em = fd_expm1_32neg(fd_clamp_bits32(v, -20.0f));
    return v < 0.0f ? fd_mul_const_fin(fd_split_const(FD_SELU_SA), em)
                    : fd_mul_const_pos(fd_split_const(FD_SELU_SCALE), v);
}
/* celu with alpha > 0: z = x / alpha <= 0 on the expm1 branch.  z = x (1/alpha) is carried as a
 * float pair zh + zl (Dekker's product with 12-bit halves, exact without FMA, for normal x), since
 * for small z its rounding would go straight into the result. */
FD32(celu_pos)
{
    fd_f32x2 b = fd_split_const(q.b);
    float bh1 = fd_from_bits32(fd_bits32(b.hi) & 0xfffff000u), bh2 = b.hi - bh1;
    float x = fd_clamp_bits32(v, -20.0f * (float)q.a);   /* z >= -20: expm1 is -1 below */
    float x1 = fd_from_bits32(fd_bits32(x) & 0xfffff000u), x2 = x - x1;
    float zh = x * b.hi;
    float zl = (((x1 * bh1 - zh) + x1 * bh2) + x2 * bh1) + x2 * bh2 + x * b.lo;
    fd_exp32_sp e = fd_exp32_scaled(zh, zl, 1, 0);
    float em = (e.s - 1.0f) + e.s * e.p;
    float tiny = (float)(-0x1p-26 * q.a);              /* celu(x) rounds to x above (x^2 / 2 alpha) */
    return v < tiny ? fd_mul_const_fin(fd_split_const(q.a), em) : v;   /* x >= 0, NaN: x */
}
/* celu with alpha < 0 (z = x / alpha > 0 on the expm1 branch, where expm1 turns z's rounding into
 * a relative error of z ulps): in float64, as before; q.b holds 1/alpha (set by the dispatcher). */
FD32(celu)
{
    double x = v;
    return (float)(x >= 0.0 ? x : q.a * fd_expm1_in(fd_min(fd_max(x * q.b, -110.0), 709.0)));
}

/* gelu = x Phi(x), in two pieces computed on every lane and blended at |x| = 0.8:
 *   |x| < 0.8:   x (1/2 + x S(x^2)) = x/2 + x (x S), the odd series of erf: no exp, no division, and
 *                x S is at most 1.4 times Phi(x) (at x = -0.8), so its errors stay small in the sum.
 *   |x| >= 0.8:  with a = |x| and G(a) = a Phi(-a) e^(a^2/2) = g - N(a)/D(a) (a rational in a, which
 *                is exact: no rounded variable for the fit to amplify),
 *                gelu(x) = -G e^(-a^2/2) for x < 0, x - G e^(-a^2/2) for x > 0.
 *                N/D is at most 0.71 G (at a = 0.8, less beyond), which damps its rounding errors;
 *                g - N/D is carried as gh + gl (g - gh is exact: G >= g/2 there), so only the
 *                last operation rounds G e^(-a^2/2).
 * a^2/2 = h + l exactly enough: a = ah + al with ah its top 12 bits, so ah^2 and ah al are exact
 * products (exp would turn the rounding of a^2/2 into a relative error of a^2/2 ulps, ~100 ulps in
 * the tail).  The exp is scaled by 2^64 until the last factor, so results down to the last denormal
 * (x = -14.6) keep their digits. */
FD32(gelu)
{
    FD_UNUSED3;
    float x = fd_clamp_bits32(v, -14.8f);              /* >= -14.8: gelu(-14.8) rounds to -0 */
    float a = fd_clamp_bits32(fabsf(v), 14.8f);        /* <= 14.8: Phi(-a) is 0 in float above */
    float ah = fd_from_bits32(fd_bits32(a) & 0xfffff000u), al = a - ah;
    float h = (0.5f * ah) * ah;
    float l = ah * al + (0.5f * al) * al;
    fd_exp32_sp e = fd_exp32_scaled(-h, -l, 1, 64);    /* e^(-a^2/2) 2^64 = s (1 + p) */
    float r = (FD_GELU_N32[0] + a * fd_poly3f(FD_GELU_N32 + 1, a)) /
              (FD_GELU_D32[0] + a * fd_poly5f(FD_GELU_D32 + 1, a));
    float gh = FD_GELU_G32 - r;
    float gl = (FD_GELU_G32 - gh) - r;                 /* G = gh + gl */
    float t = ((gh + (gl + gh * e.p)) * e.s) * 0x1p-64f;   /* G e^(-a^2/2) */
    float tail = x < 0.0f ? -t : x - t;                /* x - t is also right for inf */
    float xs = copysignf(a, v), y2 = xs * xs;          /* |xs| <= 14.8 on every lane */
    float w = xs * (FD_GELU_S32[0] + y2 * fd_poly4f(FD_GELU_S32 + 1, y2));
    float small = 0.5f * xs + xs * w;
    float y = a < FD_GELU_SPLIT32 ? small : tail;
    return v != v ? v : y;
}
/* 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).  Still in float64: the
 * float32 version needs u2 in double anyway (exp turns its rounding into a relative error of |u2|
 * ulps, ~100 in the tail near x = -10), and measured slower than this with the conversions. */
FD32(gelu_tanh)
{
    FD_UNUSED3;
    double x = fd_max(v, -12.0);                         /* rounds to -0 below */
    double c = fd_min(x, 12.0);                          /* 1 + e^-2u rounds to 1 above */
    double u2 = (2.0 * FD_SQRT_2_OVER_PI) * c * (1.0 + FD_GELU_TANH_C * c * c);
    return (float)(x / (1.0 + fd_exp_in(-u2)));
}
/* sigmoid from e = e^-|x| <= 1: 1 / (1 + e) for x >= 0, e / (1 + e) below (nothing overflows,
 * tiny results keep their digits) */
FD32(sigmoid)
{
    FD_UNUSED3;
    fd_exp32_sp e = fd_exp32_scaled(fd_maxf(-fabsf(v), -120.0f), 0.0f, 0, 64);
    float m = e.s + e.s * e.p;                         /* e^-|x| 2^64 */
    float r = 1.0f / (1.0f + m * 0x1p-64f);
    return v >= 0.0f ? r : (m * r) * 0x1p-64f;
}
FD32(hard_sigmoid)
{
    FD_UNUSED3;
    double y = ((double)v + 3.0) * (1.0 / 6.0);
    return (float)(y < 0.0 ? 0.0 : (y > 1.0 ? 1.0 : y));
}
FD32(hard_silu)
{
    FD_UNUSED3;
    double x = v;
    return (float)(x <= -3.0 ? 0.0 : (x >= 3.0 ? x : x * (x + 3.0) * (1.0 / 6.0)));
}
/* x sigmoid(x), x multiplied in before the last factor 2^n */
FD32(silu)
{
    FD_UNUSED3;
    float x = fd_maxf(v, -120.0f);                     /* rounds to -0 below */
    fd_exp32_sp e = fd_exp32_scaled(fd_maxf(-fabsf(x), -120.0f), 0.0f, 0, 64);
    float m = e.s + e.s * e.p;                         /* e^-|x| 2^64 */
    float r = 1.0f / (1.0f + m * 0x1p-64f);
    return x >= 0.0f ? x * r : ((x * m) * r) * 0x1p-64f;
}
/* tanh |x| = em / (em + 2) = 1 - 2 / (em + 2), em = expm1(2|x|), with the sign of x: the second
 * form once tanh > 1/2, so results near 1 round right (tanh(9) = 1 - 3e-8 is not 1).  2|x| <= 20
 * (tanh rounds to 1 above 9.01), where expm1 = (s - 1) + s p with s = 2^n exact. */
FD32(tanh)
{
    FD_UNUSED3;
    fd_exp32_sp e = fd_exp32_scaled(fd_minf(2.0f * fabsf(v), 20.0f), 0.0f, 0, 0);
    float em = (e.s - 1.0f) + e.s * e.p;
    float z = (em > 2.0f ? 2.0f : em) / (em + 2.0f);
    return copysignf(em > 2.0f ? 1.0f - z : z, v);
}
FD32(tanh_shrink)
{
    FD_UNUSED3;
    double x = v, y = x * x;
    double small = x * y * fd_poly7(FD_TANH_SHRINK_G32, y);
    double big = x - fd_tanh(x);
    return (float)(y < 0.25 ? small : big);
}
FD32(softplus)
{
    FD_UNUSED3;
    return (v < 0.0f ? 0.0f : v) + fd_softplus_tail32(v);
}
FD32(softsign)
{
    FD_UNUSED3;
    double x = fd_min(fd_max(v, -1e30), 1e30);
    return (float)(x / (1.0 + fabs(x)));
}
FD32(sparse_plus)
{
    FD_UNUSED3;
    double x = v;
    return (float)(x <= -1.0 ? 0.0 : (x < 1.0 ? 0.25 * (x + 1.0) * (x + 1.0) : x));
}
FD32(sparse_sigmoid)
{
    FD_UNUSED3;
    double x = v;
    return (float)(x <= -1.0 ? 0.0 : (x >= 1.0 ? 1.0 : 0.5 * (x + 1.0)));
}
/* (x + sqrt(x^2 + b)) / 2, written without cancellation for x < 0 */
FD32(squareplus)
{
    double x = v;
    double s = sqrt(x * x + q.a);
    return (float)(x >= 0.0 ? 0.5 * (x + s) : 0.5 * q.a / (s - x));
}
FD32(log_sigmoid)
{
    FD_UNUSED3;
    return (v > 0.0f ? 0.0f : v) - fd_softplus_tail32(v);
}
FD32(exponential) { FD_UNUSED3; return fd_exp32(v); }
/* x tanh(softplus(x)) = x n / (n + 2), n = e (e + 2), e = e^x; x is multiplied in before the last
 * factor 2^-64 */
FD32(mish)
{
    FD_UNUSED3;
    float x = fd_maxf(v, -120.0f);                     /* rounds to -0 below */
    fd_exp32_sp e = fd_exp32_scaled(fd_minf(x, 20.0f), 0.0f, 0, 64);   /* n / (n + 2) rounds to 1 above */
    float m = e.s + e.s * e.p;                         /* e^x 2^64 */
    float ex = m * 0x1p-64f;
    float ratio = (m * (ex + 2.0f)) / (ex * (ex + 2.0f) + 2.0f);   /* n / (n + 2) / e^x 2^64 */
    return x > 20.0f ? x : (x * ratio) * 0x1p-64f;   /* x 2^64 would overflow for huge x */
}
FD32(soft_shrink)
{
    double x = v;
    return (float)(fabs(x) <= q.a ? 0.0 : x - copysign(q.a, x));
}
FD32(hard_shrink) { return fabs((double)v) <= q.a ? 0.0f : v; }
FD32(threshold) { return (double)v <= q.a ? (float)q.b : v; }

/* ---------------------------------------------------------------- float64 math
 * Vectorizable double-precision exp / expm1 / log1p / tanh accurate to ~1 ulp (polynomials fitted
 * to 1.2e-16), so the float64 loops vectorize too; erfc (gelu) and the per-row log1p of
 * log_softmax stay with libm. */

/* e^x = s1 s2 (1 + p): 2^n split in two factors so that every n in [-1076, 1025] is representable
 * (subnormal results and overflow to inf come out right).  x must be clamped to [-746, 710]. */
typedef struct { double s1, s2, p; } fd_exp64_parts;

FD_INLINE fd_exp64_parts fd_exp64_split(double x)
{
    const double shift = 0x1.8p52;
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double k = x * 1.4426950408889634 + shift;
    double n = k - shift;
    double r = x - n * ln2_hi;                          /* exact */
    r = r - n * ln2_lo;
    double k1 = n * 0.5 + shift;                        /* n1 = rint(n / 2), n2 = n - n1 */
    double k2 = (n - (k1 - shift)) + shift;
    uint64_t b1, b2;
    memcpy(&b1, &k1, sizeof b1);
    memcpy(&b2, &k2, sizeof b2);
    b1 = (b1 + 1023u) << 52;
    b2 = (b2 + 1023u) << 52;
    fd_exp64_parts e;
    memcpy(&e.s1, &b1, sizeof b1);
    memcpy(&e.s2, &b2, sizeof b2);
    e.p = r + r * r * fd_poly11(FD_EXPM1_Q64, r);
    return e;
}

/* exp(x) for any x (NaN propagates). */
FD_INLINE double fd_exp64(double x)
{
    fd_exp64_parts e = fd_exp64_split(fd_min(fd_max(x, -746.0), 710.0));
    return (e.s1 + e.s1 * e.p) * e.s2;
}

/* expm1(x) for x >= -40 (clamp below: expm1 is -1 there in double); overflows to inf above 709.78. */
FD_INLINE double fd_expm1_64(double x)
{
    fd_exp64_parts e = fd_exp64_split(fd_min(fd_max(x, -40.0), 710.0));
    double s = e.s1 * e.s2;
    return (s - 1.0) + s * e.p;
}

/* exp(a - b) for the float64 softmax: a - b is rounded, and exp turns its absolute rounding error
 * (up to |a - b| * 1.1e-16) into a relative one; the exact residual of the subtraction is put back
 * to first order. */
FD_INLINE double fd_exp_diff64(double a, double b)
{
    double d = a - b;
    double bv = d - a;                                  /* two-sum of a and -b: */
    double err = (a - (d - bv)) + (-b - bv);            /* d + err == a - b exactly */
    double e = fd_exp64(d);
    return err == err ? e + e * err : e;                /* NaN err: a or b infinite */
}

/* log1p(t) for t in [0, 1] (fdlibm's scheme: log(1+f) = f - (f^2/2 - s (f^2/2 + R)), s = f/(2+f),
 * after reducing 1 + t to 2^k (1 + f), plus the rounding error of 1 + t). */
FD_INLINE double fd_log1p01_64(double t)
{
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double u = 1.0 + t;
    double c = (t - (u - 1.0)) / u;
    int big = u > 1.4142135623730951;
    double f = (big ? 0.5 * u : u) - 1.0;               /* exact */
    double k = big ? 1.0 : 0.0;
    double s = f / (2.0 + f), z = s * s;
    double hfsq = 0.5 * f * f;
    double r = z * fd_poly8(FD_LOG1P_R64, z);
    return k * ln2_hi - ((hfsq - (s * (hfsq + r) + (k * ln2_lo + c))) - f);
}

/* tanh(x) = expm1(2|x|) / (expm1(2|x|) + 2) with the sign of x. */
FD_INLINE double fd_tanh64(double x)
{
    double em = fd_expm1_64(fd_min(2.0 * fabs(x), 40.0));
    return copysign(em / (em + 2.0), x);
}

/* sigmoid(t) from e = exp(-|t|) <= 1, so nothing overflows and tiny results keep their digits */
FD_INLINE double fd_logistic64(double t)
{
    double e = fd_exp64(-fabs(t));
    return (t >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* ---------------------------------------------------------------- float64 activations */

FD64(linear) { FD_UNUSED3; return x; }
FD64(relu) { FD_UNUSED3; return x < 0.0 ? 0.0 : x; }
FD64(relu6) { FD_UNUSED3; return x < 0.0 ? 0.0 : (x > 6.0 ? 6.0 : x); }
FD64(hard_tanh) { FD_UNUSED3; return x < -1.0 ? -1.0 : (x > 1.0 ? 1.0 : x); }
FD64(relu_clip) { return fd_relu_general(x, q, 0); }
FD64(relu_slope) { return fd_relu_general(x, q, 1); }
FD64(leaky_relu) { return x >= 0.0 ? x : q.a * x; }
FD64(elu) { return x >= 0.0 ? x : q.a * fd_expm1_64(x); }
FD64(selu) { FD_UNUSED3; return x >= 0.0 ? FD_SELU_SCALE * x : FD_SELU_SA * fd_expm1_64(x); }
FD64(celu) { return x >= 0.0 ? x : q.a * fd_expm1_64(x / q.a); }

/* x Phi(x) = x erfc(-x/sqrt2) / 2 (libm erfc).  z = -x/sqrt2 is rounded; erfc's relative
 * sensitivity to that rounding is 2 z^2 eps (1000 ulp near x = -38), so the rounding residual dz
 * is added back to first order: erfc(z + dz) = erfc(z) - (2/sqrt(pi)) exp(-z^2) dz. */
FD64(gelu)
{
    FD_UNUSED3;
    const double c_hi = 0x1.6a09e667f3bcdp-1, c_lo = -0x1.bdd3413b26456p-55;   /* 1/sqrt2 */
    double z = -x * c_hi;
    double dz = fma(-x, c_hi, -z) - x * c_lo;
    double e = erfc(z);
    e = z > 1.0 ? e - 1.1283791670955126 * fd_exp64(-z * z) * dz : e;
    double y = x * (0.5 * e);
    return x < -40.0 ? -0.0 : y;
}
/* x sigmoid(u2), u2 = 2 sqrt(2/pi) x (1 + 0.044715 x^2).  exp turns the rounding of u2 into a
 * relative error of |u2| ulps in the tail (u2 ~ -700 at x = -21), so u2 is carried in
 * double-double (u + ue) and sigmoid(u + ue) = s + s (1 - s) ue. */
FD64(gelu_tanh)
{
    FD_UNUSED3;
    const double c_hi = 0x1.9884533d43651p+0, c_lo = -0x1.cbc0d30ebfd15p-54;   /* 2 sqrt(2/pi) */
    const double k_hi = 0x1.6e4e26d4801f7p-5, k_lo = 0x1.441355475a31ap-59;   /* 0.044715 */
    double p = x * x, pe = fma(x, x, -p);
    double t = k_hi * p, te = fma(k_hi, p, -t) + (k_hi * pe + k_lo * p);
    double s = 1.0 + t, bv = s - 1.0, se = ((1.0 - (s - bv)) + (t - bv)) + te;
    double v = x * s, ve = fma(x, s, -v) + x * se;
    double u = c_hi * v, ue = fma(c_hi, v, -u) + (c_hi * ve + c_lo * v);
    double e = fd_exp64(-fabs(u)), r = 1.0 / (1.0 + e);
    double sig = u >= 0.0 ? r : e * r;
    double y = x * (sig + (e * r * r) * ue);
    return x > 10.0 ? x : (x < -30.0 ? -0.0 : y);   /* exactly x / exactly 0 there */
}
FD64(sigmoid) { FD_UNUSED3; return fd_logistic64(x); }
FD64(hard_sigmoid)
{
    FD_UNUSED3;
    double y = x + 3.0;
    return (y < 0.0 ? 0.0 : (y > 6.0 ? 6.0 : y)) / 6.0;
}
FD64(hard_silu)
{
    FD_UNUSED3;
    return x <= -3.0 ? 0.0 : (x >= 3.0 ? x : x * (x + 3.0) / 6.0);
}
FD64(silu)
{
    FD_UNUSED3;
    double y = x * fd_logistic64(x);
    return x < -1e10 ? -0.0 : y;
}
FD64(tanh) { FD_UNUSED3; return fd_tanh64(x); }
/* |x| < 1: x^3 G(2x^2 - 1);  else (|x| - 1) + 2 / (e^(2|x|) + 1) with the sign of x, which is
 * free of the cancellation in x - tanh(x). */
FD64(tanh_shrink)
{
    FD_UNUSED3;
    double y = x * x, a = fabs(x);
    double small = x * y * fd_poly16(FD_TANH_SHRINK_G64, 2.0 * y - 1.0);
    double big = copysign((a - 1.0) + 2.0 / (fd_exp64(2.0 * a) + 1.0), x);
    return y < 1.0 ? small : big;
}
FD64(softplus) { FD_UNUSED3; return (x < 0.0 ? 0.0 : x) + fd_log1p01_64(fd_exp64(-fabs(x))); }
FD64(softsign)
{
    FD_UNUSED3;
    x = fd_min(fd_max(x, -1e300), 1e300);
    return x / (1.0 + fabs(x));
}
FD64(sparse_plus)
{
    FD_UNUSED3;
    return x <= -1.0 ? 0.0 : (x < 1.0 ? 0.25 * (x + 1.0) * (x + 1.0) : x);
}
FD64(sparse_sigmoid) { FD_UNUSED3; return x <= -1.0 ? 0.0 : (x >= 1.0 ? 1.0 : 0.5 * (x + 1.0)); }
FD64(squareplus)
{
    double a = fabs(x);
    double s = a > 1e150 ? a : sqrt(x * x + q.a);
    return x >= 0.0 ? 0.5 * (x + s) : 0.5 * q.a / (s - x);
}
FD64(log_sigmoid) { FD_UNUSED3; return (x > 0.0 ? 0.0 : x) - fd_log1p01_64(fd_exp64(-fabs(x))); }
FD64(exponential) { FD_UNUSED3; return fd_exp64(x); }
/* x n / (n + 2), n = e^x (e^x + 2) */
FD64(mish)
{
    FD_UNUSED3;
    double e = fd_exp64(fd_min(x, 40.0));
    double n = e * (e + 2.0);
    double y = x * (n / (n + 2.0));
    return x < -1e10 ? -0.0 : y;
}
FD64(soft_shrink) { return fabs(x) <= q.a ? 0.0 : x - copysign(q.a, x); }
FD64(hard_shrink) { return fabs(x) <= q.a ? 0.0 : x; }
FD64(threshold) { return x <= q.a ? q.b : x; }

#endif /* FD_ACT_MATH_H */
