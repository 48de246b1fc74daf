/* C-level checks of csrc/fd_norm.c and csrc/fd_gather.c (built and run by tests/test_layers_c.py, once
   per CPU path through FASTDENSE_CPU_PATH).
   References are written here in long double; exit status 0 when every check passes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fd_cpu.h"
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

/* long double reference of one row; returns the value for column j (and *scaled = xhat * gamma) */
static long double ref(fd_norm_kind kind, const float *x, int n, const float *g, const float *b, double eps, int j,
                       long double *scaled) {
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
    *scaled = v;
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
                    long double scaled, want = ref((fd_norm_kind)kind, x + r * LD, N, p.gamma, p.beta, eps, j, &scaled);
                    /* fd_norm.c's bound: u (6 |xhat * gamma| + |y|), u = 2**-24 */
                    double err = (double)(fabsl(y[r * LD + j] - want) / (6 * fabsl(scaled) + fabsl(want) + 1e-30L));
                    if (err > worst) worst = err;
                }
            CHECK(worst <= 0x1p-24, "kind %d affine %d: error %.3g u of the bound", kind, affine, worst * 0x1p24);
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
    /* a row far from zero with a small spread: the mean's low part keeps x - mean accurate */
    float far[16], farout[16];
    for (int j = 0; j < 16; j++) far[j] = 1000.0f + (float)j * 0x1p-10f;
    fd_norm centre = {FD_NORM_LAYER, 0.0, NULL, NULL};
    fd_norm_rows_f32(&centre, far, 16, farout, 16, 1, 16);
    for (int j = 0; j < 16; j++) {
        long double scaled, want = ref(FD_NORM_LAYER, far, 16, NULL, NULL, 0.0, j, &scaled);
        CHECK(fabsl(farout[j] - want) <= 0x1p-24L * 7 * fabsl(want), "far row %d: %.9g vs %.9Lg", j, farout[j], want);
    }
    /* nearly constant with eps 0: one ulp apart (inv about 2**24), and tiny values one ulp apart
       (subnormal: inv about 2**150, beyond float32; the float64 output pass) */
    float tiny[2][4] = {{1.0f, 1.0f + 0x1p-23f, 1.0f, 1.0f}, {0x1p-140f, 0x1p-140f + 0x1p-149f, 0x1p-140f, 0x1p-140f}};
    for (int t = 0; t < 2; t++) {
        float tinyout[4];
        fd_norm_rows_f32(&centre, tiny[t], 4, tinyout, 4, 1, 4);
        for (int j = 0; j < 4; j++) {
            long double scaled, want = ref(FD_NORM_LAYER, tiny[t], 4, NULL, NULL, 0.0, j, &scaled);
            CHECK(fabsl(tinyout[j] - want) <= 0x1p-23L * fabsl(want), "tiny row %d %d: %.9g vs %.9Lg", t, j,
                  tinyout[j], want);
        }
    }
    /* an activation after the normalization */
    fd_norm relu = {FD_NORM_LAYER, 1e-3, g, b, {FD_ACT_RELU, {0, NAN, 0}}};
    float plain[M * LD], act[M * LD];
    fd_norm unfused = relu;
    unfused.post.code = FD_ACT_LINEAR;
    fd_norm_rows_f32(&unfused, x, LD, plain, LD, M, N);
    fd_norm_rows_f32(&relu, x, LD, act, LD, M, N);
    for (int r = 0; r < M; r++)
        for (int j = 0; j < N; j++)
            CHECK(act[r * LD + j] == (plain[r * LD + j] > 0 ? plain[r * LD + j] : 0.0f), "relu after norm %d,%d", r, j);
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
    else printf("norm_gather: all checks passed on the %s path\n", fd_cpu_path());
    return failures != 0;
}
