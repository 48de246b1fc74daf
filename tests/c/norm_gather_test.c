/* C-level checks of csrc/fd_norm.c and csrc/fd_gather.c (built and run by tests/test_layers_c.py).
   References are written here in long double; exit status 0 when every check passes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fd_gather.h"
#include "fd_norm.h"

static int failures = 0;
#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            failures++;                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                 \
            fprintf(stderr, "\n");                        \
        }                                                 \
    } while (0)

static uint64_t state = 88172645463325252ull;
static double uniform(void) { /* xorshift64: deterministic, in [-1, 1) */
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return (double)(state >> 11) / 4503599627370496.0 - 1.0;
}

/* long double reference of one row; returns the value for column j */
static long double ref(fd_norm_kind kind, const float *x, int n, const float *g, const float *b, double eps, int j) {
    long double mean = 0, var = 0, sq = 0, inv;
    for (int i = n - 1; i >= 0; i--) mean += x[i];   /* reverse order: a different summation */
    mean /= n;
    for (int i = n - 1; i >= 0; i--) { var += (x[i] - mean) * (x[i] - mean); sq += (long double)x[i] * x[i]; }
    var /= n;
    long double v;
    switch (kind) {
    case FD_NORM_LAYER: inv = 1.0L / sqrtl(var + eps); v = (x[j] - mean) * inv; break;
    case FD_NORM_LAYER_RMS: inv = 1.0L / sqrtl(var + eps); v = x[j] * inv; break;
    case FD_NORM_RMS: inv = 1.0L / sqrtl(sq / n + eps); v = x[j] * inv; break;
    default: inv = sq > 0 ? 1.0L / sqrtl(sq) : 1.0L / eps; if (inv > 1.0L / eps) inv = 1.0L / eps; v = x[j] * inv;
    }
    if (g) v *= g[j];
    if (b) v += b[j];
    return v;
}

static void test_norm(void) {
    enum { M = 7, N = 37, LD = 41 };
    float x[M * LD], y[M * LD], g[N], b[N];
    for (int i = 0; i < M * LD; i++) x[i] = (float)(3.0 * uniform() + (i % 5));
    for (int j = 0; j < N; j++) { g[j] = (float)(1.0 + uniform()); b[j] = (float)uniform(); }
    for (int kind = FD_NORM_LAYER; kind <= FD_NORM_UNIT; kind++) {
        for (int affine = 0; affine < 2; affine++) {
            double eps = kind == FD_NORM_UNIT ? 1e-12 : 1e-3;
            fd_norm p = {(fd_norm_kind)kind, eps, affine ? g : NULL, affine ? b : NULL};
            fd_norm_rows_f32(&p, x, LD, y, LD, M, N);
            double worst = 0;
            for (int r = 0; r < M; r++)
                for (int j = 0; j < N; j++) {
                    long double want = ref((fd_norm_kind)kind, x + r * LD, N, p.gamma, p.beta, eps, j);
                    double err = fabs((double)(y[r * LD + j] - want)) / (fabsl(want) > 1e-3L ? (double)fabsl(want) : 1e-3);
                    if (err > worst) worst = err;
                }
            /* one rounding to float32 after float64 arithmetic: within 1 ulp of the exact value */
            CHECK(worst <= 1.2e-7, "kind %d affine %d: relative error %.3g", kind, affine, worst);
            /* in place gives the same bits; each row alone gives the same bits */
            float z[M * LD], one[LD];
            for (int i = 0; i < M * LD; i++) z[i] = x[i];
            fd_norm_rows_f32(&p, z, LD, z, LD, M, N);
            for (int r = 0; r < M; r++) {
                fd_norm_rows_f32(&p, x + r * LD, LD, one, LD, 1, N);
                for (int j = 0; j < N; j++) {
                    CHECK(z[r * LD + j] == y[r * LD + j], "in place differs at %d,%d", r, j);
                    CHECK(one[j] == y[r * LD + j], "row alone differs at %d,%d", r, j);
                }
            }
        }
    }
    /* a zero row under UnitNormalization stays zero; a constant row under LayerNormalization gives beta */
    float zeros[4] = {0, 0, 0, 0}, out[4], flat[4] = {2, 2, 2, 2}, beta[4] = {1, 2, 3, 4};
    fd_norm unit = {FD_NORM_UNIT, 1e-12, NULL, NULL};
    fd_norm_rows_f32(&unit, zeros, 4, out, 4, 1, 4);
    for (int j = 0; j < 4; j++) CHECK(out[j] == 0.0f, "unit of zeros: %g", out[j]);
    fd_norm layer = {FD_NORM_LAYER, 1e-3, NULL, beta};
    fd_norm_rows_f32(&layer, flat, 4, out, 4, 1, 4);
    for (int j = 0; j < 4; j++) CHECK(out[j] == beta[j], "layer norm of a constant row: %g", out[j]);
    /* float64 rows */
    double xd[3] = {1, 2, 3}, yd[3];
    fd_norm rms = {FD_NORM_RMS, 0.0, NULL, NULL};
    fd_norm_rows_f64(&rms, xd, 3, yd, 3, 1, 3);
    double scale = sqrt(14.0 / 3.0);
    for (int j = 0; j < 3; j++) CHECK(fabs(yd[j] - xd[j] / scale) < 1e-15, "rms f64 %d: %.17g", j, yd[j]);
}

static void test_gather(void) {
    float table[5 * 3], out[4 * 3];
    for (int i = 0; i < 15; i++) table[i] = (float)i;
    int32_t ids[4] = {4, 0, 2, 4};
    CHECK(fd_gather_i32_f32(ids, 4, table, 5, 3, out) == -1, "good ids refused");
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 3; c++) CHECK(out[i * 3 + c] == table[ids[i] * 3 + c], "row %d col %d", i, c);
    int64_t bad[4] = {1, 2, 5, -1};
    for (int i = 0; i < 12; i++) out[i] = -7.0f;
    CHECK(fd_gather_i64_f32(bad, 4, table, 5, 3, out) == 2, "first bad id not reported");
    for (int i = 0; i < 12; i++) CHECK(out[i] == -7.0f, "output written before the check");
    int64_t negative[1] = {-1}, huge[1] = {(int64_t)1 << 40};
    double dtable[4] = {1, 2, 3, 4}, dout[2];
    CHECK(fd_gather_i64_f64(negative, 1, dtable, 2, 2, dout) == 0, "negative id accepted");
    CHECK(fd_gather_i64_f64(huge, 1, dtable, 2, 2, dout) == 0, "huge id accepted");
    int32_t one[1] = {1};
    CHECK(fd_gather_i32_f64(one, 1, dtable, 2, 2, dout) == -1 && dout[0] == 3 && dout[1] == 4, "f64 gather");
    CHECK(fd_gather_i32_f32(ids, 0, table, 5, 3, out) == -1, "empty gather");
}

static void test_affine_prelu(void) {
    float x[6] = {-2, -0.5f, 0, 1, 3, -7}, y[6];
    double scale[3] = {0.5, -2, 3}, offset[3] = {1, 0, -0.25};
    fd_affine_rows_f32(scale, offset, x, 3, y, 3, 2, 3);
    for (int i = 0; i < 6; i++)
        CHECK(y[i] == (float)((double)x[i] * scale[i % 3] + offset[i % 3]), "affine %d: %g", i, y[i]);
    float alpha[3] = {0.25f, 0, 2};
    fd_prelu_rows_f32(alpha, x, 3, y, 3, 2, 3);
    for (int i = 0; i < 6; i++)
        CHECK(y[i] == (x[i] >= 0 ? x[i] : alpha[i % 3] * x[i]), "prelu %d: %g", i, y[i]);
}

int main(void) {
    test_affine_prelu();
    test_norm();
    test_gather();
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("norm_gather: all checks passed\n");
    return failures != 0;
}
