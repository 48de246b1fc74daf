/* act_test: every activation epilogue (csrc/fd_act.c) on the CPU path FASTDENSE_CPU_PATH selects,
 * against a reference in a wider type (tests/c/act_ref.h: double for the float32 results, long
 * double for the float64 ones where it is wider than double), within the ulp bounds that
 * tests/test_activations.py asserts and docs/activations.md documents.
 *
 * Element-wise: each activation (and the parametrised forms the Python tests check) over the
 * Python tests' inputs (uniform [-100, 100], 3 N(0, 1), a grid of [-20, 20], +-e^U(-90, 5), edges:
 * +-inf, NaN, -0, denormals, +-FLT_MAX, ...).  Row-wise (softmax, log_softmax, sparsemax, glu):
 * rows of 1 to 1000 values (100003 without --quick).  Each case also runs with a bias, in place
 * and with row strides, which must give the bits of the plain call on src + bias.
 *
 * Prints "path <fd_cpu_path()>", one line per case ("f32 gelu max 2.25 bound 3 at -0.808..."),
 * "ok <cases>"; exits 1 on a failure.  --quick: fewer inputs (under an emulator).  --bounds: only
 * the bound table ("bound <name> <float32 ulp> <float64 ulp>"), which tests/test_activations_c.py
 * compares with tests/test_activations.py's.
 * Built and run by tests/test_activations_c.py and .ci/arm64-c, or:
 *   make -f tests/c/act.mk [CC=clang | CC=aarch64-linux-gnu-gcc] && build/c/act_test */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "fd_act.h"
#include "fd_cpu.h"

#define R double
#define REF(name) ref_##name##_d
#include "act_ref.h"
#undef R
#undef REF
#define R long double
#define REF(name) ref_##name##_ld
#include "act_ref.h"
#undef R
#undef REF

/* float64 results need a reference with more digits than double */
#define EXTENDED (LDBL_MANT_DIG > DBL_MANT_DIG)

static int failures;
#define FAIL(...) do { if (failures++ < 30) { fprintf(stderr, "FAIL " __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* ------------------------------------------------------------------ the bounds (max ulp) */

/* tests/test_activations.py's F32_BOUND and F64_BOUND (every other activation: 1 ulp);
 * gelu's tanh form is computed in float64: 1 ulp in float32. */
static const struct { const char *name; double f32, f64; } bounds[] = {
    {"gelu", 3, 4}, {"mish", 5, 4}, {"silu", 4, 3}, {"softplus", 4, 2}, {"log_sigmoid", 4, 2},
    {"sigmoid", 3, 2}, {"tanh", 3, 3}, {"selu", 2, 2}, {"celu", 2, 2}, {"elu", 1.5, 2},
    {"exponential", 1.5, 2}, {"tanh_shrink", 1, 3}, {"hard_silu", 1, 2}, {"squareplus", 1, 2},
};
/* row-wise: (float32, float64) max ulp; sparsemax: absolute, 4 eps times the row's max |x| (>= 1) */
static const struct { const char *name; double f32, f64; } row_bounds[] = {
    {"softmax", 2, 3}, {"log_softmax", 1, 3}, {"glu", 1, 3},
};

static double bound_of(const char *name, int f64, const double *p)
{
    if (!f64 && strcmp(name, "gelu") == 0 && p[0] != 0)
        return 1;
    for (size_t i = 0; i < sizeof bounds / sizeof *bounds; i++)
        if (strcmp(bounds[i].name, name) == 0)
            return f64 ? bounds[i].f64 : bounds[i].f32;
    for (size_t i = 0; i < sizeof row_bounds / sizeof *row_bounds; i++)
        if (strcmp(row_bounds[i].name, name) == 0)
            return f64 ? row_bounds[i].f64 : row_bounds[i].f32;
    return 1;
}

/* ------------------------------------------------------------------ the cases */

typedef struct {
    const char *name, *params;   /* Keras name; the parameters as text, for the report */
    double p[3];                 /* the fd_act's p[0..2] (fd_act_list.h) */
} act_case;

#define NONE NAN   /* relu's max_value=None */
static const act_case cases[] = {
    {"linear", "", {0}}, {"relu", "", {0, NONE, 0}}, {"relu6", "", {0}}, {"leaky_relu", "", {0.2}},
    {"elu", "", {1}}, {"selu", "", {0}}, {"celu", "", {1}}, {"gelu", "", {0}}, {"sigmoid", "", {0}},
    {"hard_sigmoid", "", {0}}, {"hard_silu", "", {0}}, {"silu", "", {0}}, {"tanh", "", {0}},
    {"hard_tanh", "", {0}}, {"tanh_shrink", "", {0}}, {"softplus", "", {0}}, {"softsign", "", {0}},
    {"sparse_plus", "", {0}}, {"sparse_sigmoid", "", {0}}, {"squareplus", "", {4}},
    {"log_sigmoid", "", {0}}, {"exponential", "", {0}}, {"mish", "", {0}},
    {"soft_shrink", "", {0.5}}, {"hard_shrink", "", {0.5}},
    /* the parametrised forms of tests/test_activations.py's PARAMS */
    {"relu", "negative_slope=0.1", {0.1, NONE, 0}}, {"relu", "max_value=6", {0, 6, 0}},
    {"relu", "threshold=1.5", {0, NONE, 1.5}},
    {"relu", "negative_slope=0.3,max_value=2,threshold=-0.5", {0.3, 2, -0.5}},
    {"relu", "threshold=-1", {0, NONE, -1}}, {"relu", "negative_slope=0.5,threshold=2", {0.5, NONE, 2}},
    {"relu", "max_value=inf", {0, INFINITY, 0}},
    {"leaky_relu", "negative_slope=0.01", {0.01}}, {"leaky_relu", "negative_slope=0", {0}},
    {"leaky_relu", "negative_slope=-0.5", {-0.5}},
    {"elu", "alpha=0.5", {0.5}}, {"elu", "alpha=2", {2}},
    {"celu", "alpha=0.5", {0.5}}, {"celu", "alpha=3", {3}}, {"celu", "alpha=-1", {-1}},
    {"gelu", "approximate=True", {1}},
    {"squareplus", "b=0", {0}}, {"squareplus", "b=1", {1}}, {"squareplus", "b=100", {100}},
    {"soft_shrink", "threshold=0", {0}}, {"soft_shrink", "threshold=2", {2}},
    {"hard_shrink", "threshold=0", {0}}, {"hard_shrink", "threshold=2", {2}},
    {"threshold", "threshold=0,default_value=0", {0, 0}},
    {"threshold", "threshold=1,default_value=-7.5", {1, -7.5}},
    {"threshold", "threshold=-2,default_value=inf", {-2, INFINITY}},
};
static const char *const row_names[] = {"softmax", "log_softmax", "sparsemax", "glu"};

static int code_of(const char *name)
{
    for (int c = 0; c < FD_ACT_COUNT; c++)
        if (strcmp(fd_act_name(c), name) == 0)
            return c;
    fprintf(stderr, "act_test: no activation named %s in fd_act_list.h\n", name);
    exit(2);
}

/* ------------------------------------------------------------------ inputs */

static uint64_t state = 0x9e3779b97f4a7c15ull;
static double uniform01(void)   /* xorshift64*: deterministic, in [0, 1) */
{
    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    return (double)((state * 2685821657736338717ull) >> 11) * 0x1p-53;
}
static double normal(void)      /* Box-Muller */
{
    return sqrt(-2 * log(1 - uniform01())) * cos(6.283185307179586 * uniform01());
}

static const float edges[] = {
    INFINITY, -INFINITY, NAN, -0.0f, 0.0f, 1e-45f, -1e-45f, 1e-40f, -1e-40f, 1.1754944e-38f, 1e-7f, -1e-7f,
    0.5f, -0.5f, 1.0f, -1.0f, 3.0f, -3.0f, 6.0f, 14.6f, -14.6f, 15.0f, -15.0f, 20.0f, -20.0f, 40.0f, -40.0f,
    88.7f, -88.7f, 88.72f, 89.0f, -103.0f, -104.0f, 110.0f, -110.0f, 1000.0f, -1000.0f, 1e30f, -1e30f,
    3.4028235e38f, -3.4028235e38f,
};
static const double edges64[] = {1e300, -1e300, 700.0, 709.0, 710.0, -745.0, 5e-324, -5e-324};

/* tests/test_activations.py's X32 (n per family) */
static ptrdiff_t inputs32(float *x, ptrdiff_t n)
{
    ptrdiff_t k = 0;
    for (ptrdiff_t i = 0; i < n; i++) x[k++] = (float)(200 * uniform01() - 100);
    for (ptrdiff_t i = 0; i < n; i++) x[k++] = (float)(3 * normal());
    for (ptrdiff_t i = 0; i <= n; i++) x[k++] = (float)(-20 + 40.0 * (double)i / (double)n);
    for (ptrdiff_t i = 0; i < n; i++)
        x[k++] = (float)(exp(95 * uniform01() - 90) * (uniform01() < 0.5 ? -1 : 1));
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) x[k++] = edges[i];
    return k;
}

/* ------------------------------------------------------------------ ulp errors */

/* |y - ref| in ulps of the result type at ref (ref rounded to double first, as the Python tests
 * do); 0 where both are NaN or y is the infinity ref rounds to.  float32 ulps go down to the
 * subnormals, float64 ones stop at 2^-1022 (results below the normal range lost digits in exp). */
static double ulp_error(double y, double ref, int f64)
{
    const int nmant = f64 ? 52 : 23, floor_exp = f64 ? -1022 + 52 : -126;
    const double rounded = f64 ? ref : (double)(float)ref;
    if ((isnan(y) && isnan(ref)) || y == ref || (isinf(y) && y == rounded))
        return 0;
    int e;
    frexp(fabs(ref), &e);
    const double err = fabs(y - ref) / ldexp(1.0, (e - 1 - nmant > floor_exp - nmant ? e - 1 - nmant : floor_exp - nmant));
    return isnan(err) ? INFINITY : err;
}

typedef struct { double err, at, got, want; } worst;   /* the largest error: at x, y and the reference */

static void report(const char *dtype, const char *name, const char *params, worst w, double bound)
{
    printf("%s %s%s%s max %.3g bound %g at %.9g\n", dtype, name, *params ? ":" : "", params, w.err, bound, w.at);
    if (!(w.err <= bound))
        FAIL("%s %s(%s): %.3g ulp at x = %.17g: %.17g, reference %.17g; bound %g", dtype, name, params, w.err, w.at,
             w.got, w.want, bound);
}

/* The epilogue with a bias, out of place with row strides, must give the bits of the plain call on
 * x + bias (and in place those of out of place): rows x cols blocks of the first inputs. */
#define CHECK_FUSED(T, FN)                                                                          \
    do {                                                                                            \
        enum { ROWS = 3, COLS = 40, LD = 43 };                                                      \
        T s[ROWS * LD], d[ROWS * LD], plain[ROWS * LD], b[COLS];                                    \
        for (int j = 0; j < COLS; j++) b[j] = (T)(x[j] * 0.25);                                     \
        for (int i = 0; i < ROWS * LD; i++) s[i] = (T)x[i % n];                                     \
        for (int i = 0; i < ROWS; i++)                                                              \
            for (int j = 0; j < COLS; j++) plain[i * LD + j] = s[i * LD + j] + b[j];                \
        FN(a, b, s, LD, d, LD, ROWS, COLS);                                                         \
        FN(a, NULL, plain, LD, plain, LD, ROWS, COLS);                                              \
        FN(a, b, s, LD, s, LD, ROWS, COLS);                                                         \
        const int out = fd_act_halves(a->code) ? COLS / 2 : COLS;                                   \
        for (int i = 0; i < ROWS; i++)                                                              \
            if (memcmp(d + i * LD, plain + i * LD, out * sizeof(T)) ||                              \
                memcmp(s + i * LD, plain + i * LD, out * sizeof(T)))                                \
                FAIL(#T " %s: bias / in place / strides change the bits (row %d)", fd_act_name(a->code), i); \
    } while (0)

/* ------------------------------------------------------------------ element-wise */

static void check_elementwise(const act_case *c, const float *x, ptrdiff_t n, const double *x64, ptrdiff_t n64)
{
    const fd_act act = {code_of(c->name), {c->p[0], c->p[1], c->p[2]}}, *a = &act;
    float *y = malloc(sizeof(float) * (size_t)n);
    fd_epilogue_f32(a, NULL, x, n, y, n, 1, n);
    worst w = {0, 0, 0, 0};
    for (ptrdiff_t i = 0; i < n; i++) {
        const double want = ref_elementwise_d(act.code, act.p, x[i]), e = ulp_error(y[i], want, 0);
        if (e > w.err || isnan(e)) w = (worst){e, x[i], y[i], want};
    }
    report("f32", c->name, c->params, w, bound_of(c->name, 0, c->p));
    CHECK_FUSED(float, fd_epilogue_f32);
    free(y);

    double *y64 = malloc(sizeof(double) * (size_t)n64);
    fd_epilogue_f64(a, NULL, x64, n64, y64, n64, 1, n64);
    if (EXTENDED) {
        w = (worst){0, 0, 0, 0};
        for (ptrdiff_t i = 0; i < n64; i++) {
            if (act.code == FD_ACT_GELU && c->p[0] == 0 && x64[i] < -37)
                continue;   /* subnormal results (x < -37.5): absolute, not relative, error */
            const double want = (double)ref_elementwise_ld(act.code, act.p, x64[i]), e = ulp_error(y64[i], want, 1);
            if (e > w.err || isnan(e)) w = (worst){e, x64[i], y64[i], want};
        }
        report("f64", c->name, c->params, w, bound_of(c->name, 1, c->p));
    }
    CHECK_FUSED(double, fd_epilogue_f64);
    free(y64);
}

/* ------------------------------------------------------------------ row-wise */

/* rows x n values: N(0, 1) times a per-row scale of 1, 10 or 1000 */
static void check_rowwise(const char *name, ptrdiff_t rows, ptrdiff_t n)
{
    const fd_act act = {code_of(name), {0, 0, 0}}, *a = &act;
    const ptrdiff_t out = fd_act_halves(act.code) ? n / 2 : n;
    float *x = malloc(sizeof(float) * (size_t)(rows * n)), *y = malloc(sizeof(float) * (size_t)(rows * n));
    double *x64 = malloc(sizeof(double) * (size_t)(rows * n)), *y64 = malloc(sizeof(double) * (size_t)(rows * n));
    long double *r = malloc(sizeof(long double) * (size_t)n), *tmp = malloc(sizeof(long double) * (size_t)n);
    for (ptrdiff_t i = 0; i < rows; i++) {
        const double u = uniform01(), scale = u < 1 / 3.0 ? 1 : (u < 2 / 3.0 ? 10 : 1000);
        for (ptrdiff_t j = 0; j < n; j++) x64[i * n + j] = x[i * n + j] = (float)(normal() * scale);
    }
    fd_epilogue_f32(a, NULL, x, n, y, n, rows, n);
    fd_epilogue_f64(a, NULL, x64, n, y64, n, rows, n);
    const int sparse = act.code == FD_ACT_SPARSEMAX;
    for (int f64 = 0; f64 <= 1; f64++) {
        worst w = {0, 0, 0, 0};
        for (ptrdiff_t i = 0; i < rows; i++) {
            double amax = 1, sum = 0;
            for (ptrdiff_t j = 0; j < n; j++) {
                r[j] = x64[i * n + j];
                amax = fabs(x64[i * n + j]) > amax ? fabs(x64[i * n + j]) : amax;
            }
            ref_rowwise_ld(act.code, r, n, tmp);
            for (ptrdiff_t j = 0; j < out; j++) {
                const double got = f64 ? y64[i * n + j] : y[i * n + j], want = (double)r[j];
                sum += got;
                double e = sparse ? fabs(got - want) / amax / (f64 ? DBL_EPSILON : FLT_EPSILON)
                        : (f64 && !EXTENDED) ? fabs(got - want) / (fabs(want) * 1e-13 + 1e-300)
                        : ulp_error(got, want, f64);
                if (e > w.err || isnan(e)) w = (worst){e, x64[i * n + j], got, want};
            }
            if ((sparse || act.code == FD_ACT_SOFTMAX) && !(fabs(sum - 1) <= (f64 ? 1e-12 : 1e-5)))
                FAIL("%s %s: a row sums to %.17g", f64 ? "f64" : "f32", name, sum);
        }
        char params[40];
        snprintf(params, sizeof params, "%tdx%td", rows, n);
        report(f64 ? "f64" : "f32", name, params, w, sparse ? 4 : (f64 && !EXTENDED) ? 1 : bound_of(name, f64, act.p));
    }
    n = n < 40 ? n : 40;   /* CHECK_FUSED's block reads the first values */
    if (n == 40) {
        CHECK_FUSED(float, fd_epilogue_f32);
        CHECK_FUSED(double, fd_epilogue_f64);
    }
    free(x), free(y), free(x64), free(y64), free(r), free(tmp);
}

/* Rows with huge, infinite and NaN entries: softmax stays a distribution, a NaN poisons its row only. */
static void check_special_rows(void)
{
    const float big = FLT_MAX;
    const float rows[5][4] = {{1e30f, 1e30f, -1e30f, 0}, {big, big, big, -big}, {-INFINITY, 0, 1, 2},
                              {0, -30, -40, -50}, {NAN, 1, 2, 3}};
    const double want[4][4] = {{0.5, 0.5, 0, 0}, {1 / 3.0, 1 / 3.0, 1 / 3.0, 0}, {0, 0.0900305731703804562,
                               0.244728471054797611, 0.665240955774821934}, {1, 9.35762297e-14, 4.24835426e-18, 1.92874985e-22}};
    for (int code = 0; code < FD_ACT_COUNT; code++) {
        if (code != FD_ACT_SOFTMAX && code != FD_ACT_LOG_SOFTMAX && code != FD_ACT_SPARSEMAX)
            continue;
        const fd_act a = {code, {0, 0, 0}};
        float y[5][4];
        fd_epilogue_f32(&a, NULL, &rows[0][0], 4, &y[0][0], 4, 5, 4);
        for (int j = 0; j < 4; j++) {
            if (!isnan(y[4][j]))
                FAIL("f32 %s: NaN does not poison its row", fd_act_name(code));
            if (code == FD_ACT_SOFTMAX)
                for (int i = 0; i < 4; i++)
                    if (!(fabs(y[i][j] - want[i][j]) <= 1e-6 * want[i][j] + 1e-30))
                        FAIL("f32 softmax special row %d: %.9g, want %.9g", i, y[i][j], want[i][j]);
        }
        if (code == FD_ACT_LOG_SOFTMAX && !(y[2][0] == -INFINITY && fabs(y[3][0] + 9.3580e-14) < 1e-17))
            FAIL("f32 log_softmax special rows: %.9g %.9g", y[2][0], y[3][0]);
    }
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 1 && strcmp(argv[1], "--bounds") == 0) {
        for (size_t i = 0; i < sizeof bounds / sizeof *bounds; i++)
            printf("bound %s %g %g\n", bounds[i].name, bounds[i].f32, bounds[i].f64);
        for (size_t i = 0; i < sizeof row_bounds / sizeof *row_bounds; i++)
            printf("row_bound %s %g %g\n", row_bounds[i].name, row_bounds[i].f32, row_bounds[i].f64);
        return 0;
    }
    printf("path %s\n", fd_cpu_path());
    const ptrdiff_t fam = quick ? 2000 : 30000, extra = quick ? 2000 : 20000;
    float *x = malloc(sizeof(float) * (size_t)(4 * fam + 1 + 64));
    const ptrdiff_t n = inputs32(x, fam);
    double *x64 = malloc(sizeof(double) * (size_t)(n + extra + 8));
    ptrdiff_t n64 = 0;
    for (ptrdiff_t i = 0; i < n; i++) x64[n64++] = x[i];
    for (ptrdiff_t i = 0; i < extra; i++) x64[n64++] = 80 * uniform01() - 40;
    for (size_t i = 0; i < sizeof edges64 / sizeof *edges64; i++) x64[n64++] = edges64[i];

    int ncases = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, ncases++)
        check_elementwise(&cases[i], x, n, x64, n64);
    static const ptrdiff_t shapes[][2] = {{7, 5}, {3, 1000}, {4, 1}, {6, 8}, {2, 40}, {2, 100003}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes - (quick ? 1 : 0); s++)
        for (size_t i = 0; i < sizeof row_names / sizeof *row_names; i++, ncases++) {
            ptrdiff_t cols = shapes[s][1];
            if (strcmp(row_names[i], "glu") == 0 && cols % 2)
                cols++;
            check_rowwise(row_names[i], shapes[s][0], cols);
        }
    check_special_rows();
    free(x), free(x64);
    if (failures) {
        fprintf(stderr, "act_test: %d failure(s) on path %s\n", failures, fd_cpu_path());
        return 1;
    }
    printf("ok %d\n", ncases);
    return 0;
}
