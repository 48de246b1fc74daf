/* qgemm_test.c -- every fd_qgemm path against independent references.
 *
 *   qgemm_test check ISA    int8: integer products bit for bit against an int64 reference over
 *                           many shapes and extreme values, Keras's row quantizer bit for bit,
 *                           the layer's de-scale + bias bit for bit; int4, both recipes (float,
 *                           digits): within a float bound of a double reference and bit for
 *                           bit against the portable C path of the same recipe.
 *                           Exit 0 on success, 1 on a mismatch, 77 when the CPU lacks ISA.
 *                           amx: also the AMX kernel called directly (tiles for any m, so
 *                           m 1..40 too, below the rows fd_q8_dense hands it).
 *   qgemm_test bench        GOPS on one thread of the int8 / int4 layers and the float32
 *                           packed GEMM + epilogue at MLP shapes.
 *   qgemm_test bench-mlp [ISA]  the MLP alone, batches 1 to 4096, one path or every one
 *                           (int4 under both recipes, batches up to 256).
 *   qgemm_test bench-amx    AMX tiles against the AVX512-VNNI strips per number of rows: the
 *                           crossover behind FD_QAMX_MIN_ROWS.
 *
 * ISA: baseline, avx2, avx_vnni, avx512_vnni, amx.  Build: python tests/c/qgemm_build.py OUT [check ISA | bench].
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fd_gemm.h"
#include "fd_qgemm.h"
#include "fd_qgemm_amx.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rnd_float(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static int failures = 0;
#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            if (failures++ < 20) {                         \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__);              \
                fprintf(stderr, "\n");                     \
            }                                              \
        }                                                  \
    } while (0)

/* Packed int8 weights owning their buffers. */
typedef struct {
    fd_qweights w;
    int8_t *wp;
    int32_t *comp;
    float *scale;
} q8_packed;

static q8_packed q8_make(const int8_t *w, ptrdiff_t k, ptrdiff_t n, const float *ks)
{
    q8_packed p;
    ptrdiff_t npad = (n + 15) / 16 * 16;
    p.wp = malloc((size_t)fd_q8_packed_size(k, n));
    p.comp = malloc(sizeof(int32_t) * (size_t)npad);
    p.scale = malloc(sizeof(float) * (size_t)npad);
    fd_q8_pack(w, n, k, n, ks, p.wp, p.comp, p.scale);
    p.w = (fd_qweights){.k = k, .n = n, .bits = 8, .block = k, .w = p.wp, .comp = p.comp, .scale = p.scale};
    return p;
}
static void q8_free(q8_packed *p) { free(p->wp); free(p->comp); free(p->scale); }

typedef struct {
    fd_qweights w;
    uint8_t *wp;
    float *scale, *zero;
} q4_packed;

static q4_packed q4_make(fd_q4_recipe recipe, const int8_t *q, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block,
                         const float *s, const int8_t *z)
{
    q4_packed p;
    ptrdiff_t params = fd_q4_params_size(k, n, block);
    p.wp = malloc((size_t)fd_q4_packed_size(recipe, k, n, block));
    p.scale = malloc(sizeof(float) * (size_t)params);
    p.zero = z ? malloc(sizeof(float) * (size_t)params) : NULL;
    fd_q4_pack(recipe, q, n, k, n, block, s, z, p.wp, p.scale, p.zero);
    p.w = (fd_qweights){.k = k, .n = n, .bits = 4, .block = block, .w = p.wp, .scale = p.scale, .zero = p.zero, .recipe = recipe};
    return p;
}

static const char *const q4_recipe_names[] = {"float", "digits"};
static void q4_free(q4_packed *p) { free(p->wp); free(p->scale); free(p->zero); }

/* Keras's AbsMaxQuantizer on one row, written out in float32 without SIMD. */
static float ref_quantize_row(ptrdiff_t k, const float *x, int8_t *q)
{
    float amax = 0.0f;
    int bad = 0;
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        if (!isfinite(x[kk])) bad = 1;
        else if (fabsf(x[kk]) > amax) amax = fabsf(x[kk]);
    }
    volatile float denom = amax + 1e-7f;
    float s = bad ? NAN : 127.0f / denom;
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        volatile float v = x[kk] * s;
        float r = rintf(v);
        q[kk] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (r == r ? (int)r : -127));
    }
    return s;
}

/* ------------------------------------------------------------------ int8 checks */

static void check_q8_shape(fd_qisa isa, ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, int extreme)
{
    int8_t *w = malloc((size_t)(k * n)), *q = malloc((size_t)(m * k));
    float *ks = malloc(sizeof(float) * (size_t)n);
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(m * (n + 3)));
    for (ptrdiff_t i = 0; i < k * n; i++) w[i] = extreme == 1 ? -128 : extreme == 2 ? 127 : (int8_t)rnd_int(-128, 127);
    for (ptrdiff_t i = 0; i < m * k; i++) q[i] = extreme == 1 ? 127 : extreme == 2 ? (i % 2 ? 127 : -127) : (int8_t)rnd_int(-127, 127);
    if (extreme == 3)   /* no negative q (after a relu): AVX2's unsigned tiles */
        for (ptrdiff_t i = 0; i < m * k; i++) q[i] = (int8_t)rnd_int(0, 127);
    if (extreme == 4)   /* rows without negatives, except every fifth row's one: tiles of both kinds */
        for (ptrdiff_t i = 0; i < m; i++)
            for (ptrdiff_t kk = 0; kk < k; kk++)
                q[i * k + kk] = (int8_t)(i % 5 == 3 && kk == (i * 7) % k ? -rnd_int(1, 127) : rnd_int(0, 127));
    for (ptrdiff_t j = 0; j < n; j++) ks[j] = 1.0f;
    q8_packed p = q8_make(w, k, n, ks);
    ptrdiff_t ldc = n + 3;
    for (ptrdiff_t i = 0; i < m * ldc; i++) c[i] = 0x5A5A5A5A;
    int rc = fd_q8_gemm_i32(isa, &p.w, m, q, k, c, ldc);
    CHECK(rc == 0, "fd_q8_gemm_i32 returned %d", rc);
    for (ptrdiff_t i = 0; i < m; i++) {
        for (ptrdiff_t j = 0; j < n; j++) {
            int64_t ref = 0;
            for (ptrdiff_t kk = 0; kk < k; kk++) ref += (int64_t)q[i * k + kk] * w[kk * n + j];
            CHECK(ref == c[i * ldc + j], "%s m=%td k=%td n=%td extreme=%d: c[%td,%td] = %d, int64 reference %lld",
                  fd_qisa_name(isa), m, k, n, extreme, i, j, c[i * ldc + j], (long long)ref);
        }
        for (ptrdiff_t j = n; j < ldc; j++) CHECK(c[i * ldc + j] == 0x5A5A5A5A, "wrote past column %td", n);
    }
    q8_free(&p);
    free(w); free(q); free(ks); free(c);
}

static void check_q8_quantizer(fd_qisa isa)
{
    const ptrdiff_t ks_[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 47, 64, 95, 100, 784, 1029};
    for (size_t t = 0; t < sizeof ks_ / sizeof ks_[0]; t++) {
        ptrdiff_t k = ks_[t], m = 6;
        float *x = malloc(sizeof(float) * (size_t)(m * k));
        int8_t *q = malloc((size_t)(m * k)), *r = malloc((size_t)k);
        float s[6];
        for (ptrdiff_t i = 0; i < m; i++) {
            float mag = i == 0 ? 1e-30f : i == 1 ? 3e30f : (float)ldexp(1.0, rnd_int(-20, 20));
            for (ptrdiff_t kk = 0; kk < k; kk++) x[i * k + kk] = rnd_float() * mag;
        }
        for (ptrdiff_t kk = 0; kk < k; kk++) x[2 * k + kk] = 0.0f;   /* a zero row */
        x[3 * k + k / 2] = NAN;                                      /* non-finite rows */
        x[4 * k + k - 1] = -INFINITY;
        for (ptrdiff_t kk = 0; kk < k; kk++)                         /* exact halves: ties to even */
            x[5 * k + kk] = kk == 0 ? 127.0f : (float)(rnd_int(-254, 254)) * 0.5f;
        CHECK(fd_q8_quantize_rows(isa, m, k, x, k, q, k, s) == 0, "quantize rows failed");
        for (ptrdiff_t i = 0; i < m; i++) {
            float rs = ref_quantize_row(k, x + i * k, r);
            int nonfinite = i == 3 || i == 4;
            CHECK(nonfinite ? isnan(s[i]) : memcmp(&rs, &s[i], 4) == 0, "%s k=%td row %td: scale %.9g, reference %.9g",
                  fd_qisa_name(isa), k, i, s[i], rs);
            if (!nonfinite)
                for (ptrdiff_t kk = 0; kk < k; kk++)
                    CHECK(q[i * k + kk] == r[kk], "%s k=%td row %td col %td: q %d, reference %d (x %.9g)",
                          fd_qisa_name(isa), k, i, kk, q[i * k + kk], r[kk], x[i * k + kk]);
        }
        free(x); free(q); free(r);
    }
}

/* The whole layer: bias and de-scale bit for bit, relu applied, rows independent. */
static void check_q8_dense(fd_qisa isa, ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, int nonneg)
{
    int8_t *w = malloc((size_t)(k * n)), *q = malloc((size_t)k);
    float *x = malloc(sizeof(float) * (size_t)(m * k)), *ks = malloc(sizeof(float) * (size_t)n);
    float *bias = malloc(sizeof(float) * (size_t)n), *c = malloc(sizeof(float) * (size_t)(m * n));
    float *one = malloc(sizeof(float) * (size_t)n);
    for (ptrdiff_t i = 0; i < k * n; i++) w[i] = (int8_t)rnd_int(-127, 127);
    for (ptrdiff_t i = 0; i < m * k; i++) x[i] = nonneg ? fabsf(rnd_float()) * 3.0f : rnd_float() * 3.0f;
    for (ptrdiff_t j = 0; j < n; j++) {
        ks[j] = 127.0f / (0.01f + fabsf(rnd_float()));
        bias[j] = rnd_float();
    }
    q8_packed p = q8_make(w, k, n, ks);
    fd_act linear = {FD_ACT_LINEAR, {0, 0, 0}}, relu = {FD_ACT_RELU, {0.0, NAN, 0.0}};
    for (int a = 0; a < 2; a++) {
        CHECK(fd_q8_dense(isa, &p.w, m, x, k, a ? &relu : &linear, bias, c, n) == 0, "fd_q8_dense failed");
        for (ptrdiff_t i = 0; i < m; i++) {
            float s = ref_quantize_row(k, x + i * k, q);
            CHECK(fd_q8_dense(isa, &p.w, 1, x + i * k, k, a ? &relu : &linear, bias, one, n) == 0, "one row");
            for (ptrdiff_t j = 0; j < n; j++) {
                int64_t acc = 0;
                for (ptrdiff_t kk = 0; kk < k; kk++) acc += (int64_t)q[kk] * w[kk * n + j];
                volatile float os = ks[j] * s;
                volatile float y = (float)acc / os;
                float ref = y + bias[j];
                if (a) ref = ref > 0.0f ? ref : 0.0f;
                CHECK(memcmp(&ref, &c[i * n + j], 4) == 0 && memcmp(&one[j], &c[i * n + j], 4) == 0,
                      "%s dense m=%td k=%td n=%td act=%d: c[%td,%td] = %.9g, one row %.9g, reference %.9g",
                      fd_qisa_name(isa), m, k, n, a, i, j, c[i * n + j], one[j], ref);
            }
        }
    }
    q8_free(&p);
    free(w); free(q); free(x); free(ks); free(bias); free(c); free(one);
}

/* ------------------------------------------------------------------ int4 checks */

static void check_q4_dense(fd_qisa isa, fd_q4_recipe recipe, ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
{
    int grouped = block > 0;
    if (!grouped) block = k;
    ptrdiff_t groups = (k + block - 1) / block;
    int8_t *q = malloc((size_t)(k * n)), *z = malloc((size_t)(groups * n));
    float *s = malloc(sizeof(float) * (size_t)(groups * n)), *x = malloc(sizeof(float) * (size_t)(m * k));
    float *c = malloc(sizeof(float) * (size_t)(m * n)), *cb = malloc(sizeof(float) * (size_t)(m * n));
    float *bias = malloc(sizeof(float) * (size_t)n);
    for (ptrdiff_t i = 0; i < k * n; i++) q[i] = (int8_t)rnd_int(-8, 7);
    for (ptrdiff_t i = 0; i < groups * n; i++) {
        z[i] = (int8_t)rnd_int(-8, 7);
        s[i] = grouped ? 0.01f + 0.1f * fabsf(rnd_float()) : 7.0f / (0.01f + fabsf(rnd_float()));
    }
    for (ptrdiff_t i = 0; i < m * k; i++) x[i] = rnd_float();
    for (ptrdiff_t j = 0; j < n; j++) bias[j] = rnd_float();
    q4_packed p = q4_make(recipe, q, k, n, block, s, grouped ? z : NULL);
    fd_act linear = {FD_ACT_LINEAR, {0, 0, 0}};
    CHECK(fd_q4_dense(isa, &p.w, m, x, k, &linear, bias, c, n) == 0, "fd_q4_dense failed");
    CHECK(fd_q4_dense(FD_QISA_BASELINE, &p.w, m, x, k, &linear, bias, cb, n) == 0, "fd_q4_dense baseline failed");
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++) {
            double acc = 0.0, mag = 0.0;
            for (ptrdiff_t kk = 0; kk < k; kk++) {
                ptrdiff_t g = kk / block;
                float wv = grouped ? ((float)q[kk * n + j] - (float)z[g * n + j]) * s[g * n + j] : (float)q[kk * n + j];
                acc += (double)x[i * k + kk] * wv;
                mag += fabs((double)x[i * k + kk] * wv);
            }
            double ref = (grouped ? acc : acc / s[j]) + bias[j];
            double bound = 1.2e-7 * (k + 2) * (grouped ? mag : mag / s[j]) + 1.2e-7 * fabs(bias[j]) + 1e-30;
            CHECK(fabs(c[i * n + j] - ref) <= bound, "%s q4 %s m=%td k=%td n=%td block=%td: c[%td,%td] = %.9g, reference %.9g",
                  fd_qisa_name(isa), q4_recipe_names[recipe], m, k, n, block, i, j, c[i * n + j], ref);
            CHECK(memcmp(&c[i * n + j], &cb[i * n + j], 4) == 0, "%s q4 %s m=%td k=%td n=%td block=%td: c[%td,%td] = %.9g, C path %.9g",
                  fd_qisa_name(isa), q4_recipe_names[recipe], m, k, n, block, i, j, c[i * n + j], cb[i * n + j]);
        }
    q4_free(&p);
    free(q); free(z); free(s); free(x); free(c); free(cb); free(bias);
}

/* ------------------------------------------------------------------ AMX tiles, any m */

/* The reference quantizer in fd_q8_row_fn's shape (the kernel takes its caller's quantizer). */
static float ref_row(ptrdiff_t k, const float *x, uint8_t *dst, ptrdiff_t kpad, int shift)
{
    float s = ref_quantize_row(k, x, (int8_t *)dst);
    for (ptrdiff_t kk = 0; kk < kpad; kk++) dst[kk] = (uint8_t)((kk < k ? (int8_t)dst[kk] : 0) + shift);
    return s;
}

/* fd_q8_amx itself for m rows: int32 sums against int64, and the layer against fd_q8_dense on
   the AVX512-VNNI path bit for bit (de-scale, bias, relu). */
static void check_amx_direct(ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, int extreme)
{
    int8_t *w = malloc((size_t)(k * n)), *q = malloc((size_t)(m * k));
    float *x = malloc(sizeof(float) * (size_t)(m * k)), *ks = malloc(sizeof(float) * (size_t)n);
    float *bias = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)(m * n));
    float *yv = malloc(sizeof(float) * (size_t)(m * n));
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(m * (n + 3)));
    for (ptrdiff_t i = 0; i < k * n; i++) w[i] = extreme ? -128 : (int8_t)rnd_int(-128, 127);
    for (ptrdiff_t i = 0; i < m * k; i++) {
        q[i] = extreme ? (i % 3 ? 127 : -127) : (int8_t)rnd_int(-127, 127);
        x[i] = rnd_float() * 2.0f;
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        ks[j] = 127.0f / (0.01f + fabsf(rnd_float()));
        bias[j] = rnd_float();
    }
    q8_packed p = q8_make(w, k, n, ks);
    ptrdiff_t ldc = n + 3;
    for (ptrdiff_t i = 0; i < m * ldc; i++) c[i] = 0x5A5A5A5A;
    CHECK(fd_q8_amx(&p.w, m, NULL, 0, NULL, q, k, NULL, NULL, c, ldc) == 0, "fd_q8_amx (int32) failed");
    for (ptrdiff_t i = 0; i < m; i++) {
        for (ptrdiff_t j = 0; j < n; j++) {
            int64_t ref = 0;
            for (ptrdiff_t kk = 0; kk < k; kk++) ref += (int64_t)q[i * k + kk] * w[kk * n + j];
            CHECK(ref == c[i * ldc + j], "amx direct m=%td k=%td n=%td extreme=%d: c[%td,%td] = %d, int64 reference %lld",
                  m, k, n, extreme, i, j, c[i * ldc + j], (long long)ref);
        }
        for (ptrdiff_t j = n; j < ldc; j++) CHECK(c[i * ldc + j] == 0x5A5A5A5A, "amx direct wrote past column %td", n);
    }
    fd_act relu = {FD_ACT_RELU, {0.0, NAN, 0.0}};
    CHECK(fd_q8_amx(&p.w, m, x, k, ref_row, NULL, 0, &relu, bias, y, n) == 0, "fd_q8_amx (layer) failed");
    CHECK(fd_q8_dense(FD_QISA_AVX512_VNNI, &p.w, m, x, k, &relu, bias, yv, n) == 0, "fd_q8_dense failed");
    for (ptrdiff_t i = 0; i < m * n; i++)
        CHECK(memcmp(&y[i], &yv[i], 4) == 0, "amx direct layer m=%td k=%td n=%td: y[%td] = %.9g, avx512_vnni %.9g",
              m, k, n, i, y[i], yv[i]);
    q8_free(&p);
    free(w); free(q); free(x); free(ks); free(bias); free(y); free(yv); free(c);
}

static long check_amx_shapes(void)
{
    long shapes = 0;
    const ptrdiff_t ks_[] = {1, 3, 4, 5, 63, 64, 65, 127, 128, 129, 200, 784, 1000, 2049, 3000};
    const ptrdiff_t ns_[] = {1, 10, 15, 16, 17, 31, 32, 33, 48, 50, 64, 100};
    for (ptrdiff_t m = 1; m <= 40; m++, shapes++) check_amx_direct(m, ks_[m % 15], ns_[m % 12], 0);
    for (size_t a = 0; a < sizeof ks_ / sizeof ks_[0]; a++)
        for (size_t b = 0; b < sizeof ns_ / sizeof ns_[0]; b++, shapes++)
            check_amx_direct(rnd_int(1, 70), ks_[a], ns_[b], 0);
    check_amx_direct(33, 4096, 40, 1);   /* sums of -128 x +-127 near -2^25 */
    check_amx_direct(17, FD_Q8_MAX_K, 17, 1);   /* within 6 * 10^3 of -2^31 */
    return shapes + 2;
}

static int check(fd_qisa isa)
{
    if (!fd_qisa_supported(isa)) {
        printf("SKIP: this CPU lacks %s\n", fd_qisa_name(isa));
        return 77;
    }
    const ptrdiff_t ks_[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 63, 64, 65, 127, 128, 129, 255, 257, 511, 784, 1023, 1100};
    const ptrdiff_t ns_[] = {1, 2, 3, 5, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 100, 129, 255, 512, 1030};
    long shapes = 0;
    for (size_t a = 0; a < sizeof ks_ / sizeof ks_[0]; a++)
        for (size_t b = 0; b < sizeof ns_ / sizeof ns_[0]; b++) {
            ptrdiff_t k = ks_[a], n = ns_[b];
            ptrdiff_t m = k * n > 200000 ? rnd_int(1, 6) : rnd_int(1, 20);
            check_q8_shape(isa, m, k, n, 0);
            shapes++;
        }
    for (ptrdiff_t m = 1; m <= 20; m++) check_q8_shape(isa, m, 37, 70, 0), shapes++;
    const ptrdiff_t signs[][2] = {{1, 1}, {4, 17}, {37, 70}, {64, 512}, {129, 33}, {784, 512}, {1023, 16}};
    for (size_t t = 0; t < sizeof signs / sizeof signs[0]; t++)
        for (int e = 3; e <= 4; e++, shapes++) check_q8_shape(isa, rnd_int(1, 26), signs[t][0], signs[t][1], e);
    check_q8_shape(isa, 33, 300, 130, 0);
    check_q8_shape(isa, 64, 512, 64, 0);
    for (int e = 1; e <= 2; e++) {
        check_q8_shape(isa, 5, 1000, 40, e);
        check_q8_shape(isa, 2, FD_Q8_MAX_K, 17, e);   /* sums within 6 * 10^3 of 2^31 */
        shapes += 2;
    }
    check_q8_quantizer(isa);
    const ptrdiff_t dense[][3] = {{1, 20, 64}, {5, 64, 32}, {7, 33, 5}, {4, 784, 48}, {13, 129, 130}, {3, 1, 1}};
    for (size_t t = 0; t < sizeof dense / sizeof dense[0]; t++)
        for (int nonneg = 0; nonneg < 2; nonneg++) check_q8_dense(isa, dense[t][0], dense[t][1], dense[t][2], nonneg);
    const ptrdiff_t q4[][4] = {{1, 20, 64, 128}, {5, 64, 6, 128}, {3, 300, 33, 128}, {9, 257, 70, 7}, {2, 33, 17, 1},
                               {4, 40, 100, 3}, {1, 784, 512, 128}, {6, 129, 40, -1}, {1, 1, 1, -1}, {11, 64, 31, 64}};
    for (size_t t = 0; t < sizeof q4 / sizeof q4[0]; t++)
        for (int recipe = FD_Q4_FLOAT; recipe <= FD_Q4_DIGITS; recipe++)
            check_q4_dense(isa, (fd_q4_recipe)recipe, q4[t][0], q4[t][1], q4[t][2], q4[t][3]);
    if (isa == FD_QISA_AMX) printf("amx: %ld shapes on AMX tiles at any m (1..70)\n", check_amx_shapes());
    printf("%s: %ld int8 GEMM shapes, quantizer, layers, int4 layers (both recipes): %s\n", fd_qisa_name(isa), shapes,
           failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------ bench */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Seconds per call: the fastest of 15 rounds of enough calls to last ~1 ms (the machine is
   shared, so the minimum is the figure least disturbed by others). */
#define TIME(out, CALL)                                                     \
    do {                                                                    \
        int reps = 1;                                                       \
        for (;;) {                                                          \
            double t0 = now();                                              \
            for (int r_ = 0; r_ < reps; r_++) { CALL; }                     \
            if (now() - t0 > 1e-3) break;                                   \
            reps *= 2;                                                      \
        }                                                                   \
        out = 1e30;                                                         \
        for (int s_ = 0; s_ < 15; s_++) {                                   \
            double t0 = now();                                              \
            for (int r_ = 0; r_ < reps; r_++) { CALL; }                     \
            double t = (now() - t0) / reps;                                 \
            out = t < out ? t : out;                                        \
        }                                                                   \
    } while (0)

/* The 784-512-512-10 MLP (relu, relu, linear) layer after layer, as a model runs it: all
   weights in use, so float32's 2.7 MB do not stay in a 2 MB L2 while int8's 0.67 MB do. */
static void mlp_bench(const char *only, int big)
{
    const ptrdiff_t dims[4] = {784, 512, 512, 10}, batches[] = {1, 32, 256, 4096};
    fd_act relu = {FD_ACT_RELU, {0.0, NAN, 0.0}}, linear = {FD_ACT_LINEAR, {0, 0, 0}};
    float *wp[3], *bias[3], *s4[3];
    int8_t *w8[3], *w4[3], *z4[3];
    q8_packed p8[3];
    q4_packed p4[2][3];   /* per recipe */
    float ks[512];
    for (int j = 0; j < 512; j++) ks[j] = 100.0f;
    for (int l = 0; l < 3; l++) {
        ptrdiff_t k = dims[l], n = dims[l + 1], g = (k + 127) / 128;
        float *wf = malloc(sizeof(float) * (size_t)(k * n));
        w8[l] = malloc((size_t)(k * n));
        w4[l] = malloc((size_t)(k * n));
        z4[l] = calloc((size_t)(g * n), 1);
        s4[l] = malloc(sizeof(float) * (size_t)(g * n));
        bias[l] = calloc((size_t)n, sizeof(float));
        for (ptrdiff_t i = 0; i < k * n; i++) {
            wf[i] = rnd_float() * 0.05f;
            w8[l][i] = (int8_t)rnd_int(-127, 127);
            w4[l][i] = (int8_t)rnd_int(-8, 7);
        }
        for (ptrdiff_t i = 0; i < g * n; i++) s4[l][i] = 0.01f;
        wp[l] = malloc(sizeof(float) * (size_t)fd_pack_f32_size(k, n));
        fd_pack_f32(wf, n, 0, k, n, wp[l]);
        p8[l] = q8_make(w8[l], k, n, ks);
        for (int r = FD_Q4_FLOAT; r <= FD_Q4_DIGITS; r++) p4[r][l] = q4_make((fd_q4_recipe)r, w4[l], k, n, 128, s4[l], z4[l]);
        free(wf);
    }
    printf("\nMLP 784-512-512-10 (relu, relu, linear), one thread, microseconds per call (ratio to float32)\n");
    printf("%5s %9s", "m", "f32");
    for (int isa = 1; isa < FD_QISA_COUNT; isa++)
        if (fd_qisa_supported((fd_qisa)isa) && (!only || strcmp(only, fd_qisa_name((fd_qisa)isa)) == 0))
            printf(" %15s %15s %15s", fd_qisa_name((fd_qisa)isa), "int4 float", "int4 digits");
    printf("\n");
    for (size_t b = 0; b < (big ? 4u : 3u); b++) {
        ptrdiff_t m = batches[b];
        float *x = malloc(sizeof(float) * (size_t)(m * 784)), *h1 = malloc(sizeof(float) * (size_t)(m * 512));
        float *h2 = malloc(sizeof(float) * (size_t)(m * 512)), *y = malloc(sizeof(float) * (size_t)(m * 10));
        for (ptrdiff_t i = 0; i < m * 784; i++) x[i] = rnd_float();
        double tf, t8, t4[2];
        TIME(tf, fd_gemm_packed_f32(m, 512, 784, x, 784, 1, wp[0], h1, 512); fd_epilogue_f32(&relu, bias[0], h1, 512, h1, 512, m, 512);
                 fd_gemm_packed_f32(m, 512, 512, h1, 512, 1, wp[1], h2, 512); fd_epilogue_f32(&relu, bias[1], h2, 512, h2, 512, m, 512);
                 fd_gemm_packed_f32(m, 10, 512, h2, 512, 1, wp[2], y, 10); fd_epilogue_f32(&linear, bias[2], y, 10, y, 10, m, 10));
        printf("%5td %9.1f", m, tf * 1e6);
        for (int isa = 1; isa < FD_QISA_COUNT; isa++) {
            fd_qisa q = (fd_qisa)isa;
            if (!fd_qisa_supported(q) || (only && strcmp(only, fd_qisa_name(q)) != 0)) continue;
            TIME(t8, fd_q8_dense(q, &p8[0].w, m, x, 784, &relu, bias[0], h1, 512);
                     fd_q8_dense(q, &p8[1].w, m, h1, 512, &relu, bias[1], h2, 512);
                     fd_q8_dense(q, &p8[2].w, m, h2, 512, &linear, bias[2], y, 10));
            printf(" %7.1f (%4.2fx)", t8 * 1e6, t8 / tf);
            for (int r = FD_Q4_FLOAT; r <= FD_Q4_DIGITS; r++) {
                t4[r] = NAN;   /* batch 4096: int8 alone */
                if (m <= 256)
                    TIME(t4[r], fd_q4_dense(q, &p4[r][0].w, m, x, 784, &relu, bias[0], h1, 512);
                         fd_q4_dense(q, &p4[r][1].w, m, h1, 512, &relu, bias[1], h2, 512);
                         fd_q4_dense(q, &p4[r][2].w, m, h2, 512, &linear, bias[2], y, 10));
                printf(" %7.1f (%4.2fx)", t4[r] * 1e6, t4[r] / tf);
            }
        }
        printf("\n");
        free(x); free(h1); free(h2); free(y);
    }
    for (int l = 0; l < 3; l++) {
        q8_free(&p8[l]);
        for (int r = FD_Q4_FLOAT; r <= FD_Q4_DIGITS; r++) q4_free(&p4[r][l]);
        free(wp[l]); free(bias[l]); free(s4[l]); free(w8[l]); free(w4[l]); free(z4[l]);
    }
}

static int bench(void)
{
    const ptrdiff_t shapes[][2] = {{784, 512}, {512, 512}, {512, 10}};
    const ptrdiff_t batches[] = {1, 32, 256};
    fd_act relu = {FD_ACT_RELU, {0.0, NAN, 0.0}};
    printf("one thread; GOPS = 2 m k n / time; float32 = fd_gemm_packed_f32 + fd_epilogue_f32 (relu)\n");
    printf("%-9s %5s %9s", "k x n", "m", "f32");
    for (int isa = 0; isa < FD_QISA_COUNT; isa++)
        if (fd_qisa_supported((fd_qisa)isa)) printf(" %12s %8s", fd_qisa_name((fd_qisa)isa), "int4");
    printf("   (GOPS; ratio = time / f32 time)\n");
    for (size_t s = 0; s < 3; s++)
        for (size_t b = 0; b < 3; b++) {
            ptrdiff_t k = shapes[s][0], n = shapes[s][1], m = batches[b];
            float *wf = malloc(sizeof(float) * (size_t)(k * n)), *x = malloc(sizeof(float) * (size_t)(m * k));
            float *c = malloc(sizeof(float) * (size_t)(m * n)), *ks = malloc(sizeof(float) * (size_t)n);
            float *bias = calloc((size_t)n, sizeof(float)), *s4 = malloc(sizeof(float) * (size_t)((k + 127) / 128 * n));
            int8_t *w8 = malloc((size_t)(k * n)), *w4 = malloc((size_t)(k * n)), *z4 = calloc((size_t)((k + 127) / 128 * n), 1);
            for (ptrdiff_t i = 0; i < k * n; i++) {
                wf[i] = rnd_float() * 0.05f;
                w8[i] = (int8_t)rnd_int(-127, 127);
                w4[i] = (int8_t)rnd_int(-8, 7);
            }
            for (ptrdiff_t i = 0; i < m * k; i++) x[i] = rnd_float();
            for (ptrdiff_t j = 0; j < n; j++) ks[j] = 100.0f;
            for (ptrdiff_t i = 0; i < (k + 127) / 128 * n; i++) s4[i] = 0.01f;
            float *wp = malloc(sizeof(float) * (size_t)fd_pack_f32_size(k, n));
            fd_pack_f32(wf, n, 0, k, n, wp);
            q8_packed p8 = q8_make(w8, k, n, ks);
            q4_packed p4[2];   /* per recipe; each path runs the one it packs for */
            for (int r = FD_Q4_FLOAT; r <= FD_Q4_DIGITS; r++) p4[r] = q4_make((fd_q4_recipe)r, w4, k, n, 128, s4, z4);
            double tf, t8, t4, ops = 2.0 * m * k * n;
            TIME(tf, fd_gemm_packed_f32(m, n, k, x, k, 1, wp, c, n); fd_epilogue_f32(&relu, bias, c, n, c, n, m, n));
            printf("%4tdx%-4td %5td %9.1f", k, n, m, ops / tf * 1e-9);
            for (int isa = 0; isa < FD_QISA_COUNT; isa++) {
                if (!fd_qisa_supported((fd_qisa)isa)) continue;
                TIME(t8, fd_q8_dense((fd_qisa)isa, &p8.w, m, x, k, &relu, bias, c, n));
                TIME(t4, fd_q4_dense((fd_qisa)isa, &p4[fd_q4_recipe_of((fd_qisa)isa)].w, m, x, k, &relu, bias, c, n));
                printf(" %6.1f %5.2fx %4.1f %4.2fx", ops / t8 * 1e-9, t8 / tf, ops / t4 * 1e-9, t4 / tf);
            }
            printf("\n");
            q8_free(&p8);
            for (int r = FD_Q4_FLOAT; r <= FD_Q4_DIGITS; r++) q4_free(&p4[r]);
            free(wf); free(x); free(c); free(ks); free(bias); free(s4); free(w8); free(w4); free(z4); free(wp);
        }
    mlp_bench(NULL, 0);
    return 0;
}

/* Microseconds per call, per number of rows, AVX512-VNNI strips against AMX tiles: the integer
   product alone (fd_q8_gemm_i32 against fd_q8_amx on quantized rows, so tiles at every m; the
   de-scale and epilogue cost both paths the same), and the whole layer (fd_q8_dense, relu: AMX
   means tiles from FD_QAMX_MIN_ROWS rows).  Where the tiles win sets FD_QAMX_MIN_ROWS. */
static int bench_amx(void)
{
    if (!fd_qisa_supported(FD_QISA_AMX)) {
        printf("SKIP: this CPU lacks amx\n");
        return 77;
    }
    const ptrdiff_t shapes[][2] = {{784, 512}, {512, 512}, {512, 10}, {512, 32}, {512, 64}, {64, 512}, {2048, 16}};
    const ptrdiff_t ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 24, 32, 33, 40, 48, 64, 128, 256, 1024};
    fd_act relu = {FD_ACT_RELU, {0.0, NAN, 0.0}};
    printf("one thread; microseconds per call; amx/vnni = time ratio; layer GOPS = 2 m k n / time\n");
    printf("%-9s %5s %9s %9s %8s %9s %9s %8s %7s %7s\n", "k x n", "m", "i32 vnni", "i32 amx", "amx/vnni",
           "layer vnni", "layer amx", "amx/vnni", "GOPS v", "GOPS a");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        ptrdiff_t k = shapes[s][0], n = shapes[s][1], mmax = 1024;
        int8_t *w = malloc((size_t)(k * n)), *q = malloc((size_t)(mmax * k));
        float *x = malloc(sizeof(float) * (size_t)(mmax * k)), *c = malloc(sizeof(float) * (size_t)(mmax * n));
        float *ks = malloc(sizeof(float) * (size_t)n), *bias = calloc((size_t)n, sizeof(float));
        int32_t *ci = malloc(sizeof(int32_t) * (size_t)(mmax * n));
        for (ptrdiff_t i = 0; i < k * n; i++) w[i] = (int8_t)rnd_int(-127, 127);
        for (ptrdiff_t i = 0; i < mmax * k; i++) {
            x[i] = rnd_float();
            q[i] = (int8_t)rnd_int(-127, 127);
        }
        for (ptrdiff_t j = 0; j < n; j++) ks[j] = 100.0f;
        q8_packed p = q8_make(w, k, n, ks);
        for (size_t b = 0; b < sizeof ms / sizeof ms[0]; b++) {
            ptrdiff_t m = ms[b];
            double tv, ta, lv, la, ops = 2.0 * m * k * n;
            TIME(tv, fd_q8_gemm_i32(FD_QISA_AVX512_VNNI, &p.w, m, q, k, ci, n));
            TIME(ta, fd_q8_amx(&p.w, m, NULL, 0, NULL, q, k, NULL, NULL, ci, n));
            TIME(lv, fd_q8_dense(FD_QISA_AVX512_VNNI, &p.w, m, x, k, &relu, bias, c, n));
            TIME(la, fd_q8_dense(FD_QISA_AMX, &p.w, m, x, k, &relu, bias, c, n));
            printf("%4tdx%-4td %5td %9.2f %9.2f %7.2fx %9.2f %9.2f %7.2fx %7.1f %7.1f\n", k, n, m, tv * 1e6, ta * 1e6,
                   ta / tv, lv * 1e6, la * 1e6, la / lv, ops / lv * 1e-9, ops / la * 1e-9);
        }
        q8_free(&p);
        free(w); free(q); free(x); free(c); free(ks); free(bias); free(ci);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "bench") == 0) return bench();
    if (argc >= 2 && strcmp(argv[1], "bench-amx") == 0) return bench_amx();
    if (argc >= 2 && strcmp(argv[1], "bench-mlp") == 0) {   /* [ISA]: that path alone, batches to 4096 */
        mlp_bench(argc >= 3 ? argv[2] : NULL, 1);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "check") == 0) {
        for (int isa = 0; isa < FD_QISA_COUNT; isa++)
            if (strcmp(argv[2], fd_qisa_name((fd_qisa)isa)) == 0) return check((fd_qisa)isa);
    }
    fprintf(stderr, "usage: %s check baseline|avx2|avx_vnni|avx512_vnni|amx | bench | bench-amx\n", argv[0]);
    return 2;
}
