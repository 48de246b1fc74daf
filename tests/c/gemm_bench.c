/* gemm_bench: the FMA peak of one core (a register-only FMA loop per vector width) and the
 * float32 GEMM's GFLOP/s on one thread, for the path FASTDENSE_CPU_PATH selects (fd_cpu.h).
 *
 *   gemm_bench peak                    -> "peak <isa> <GFLOP/s>" per width this CPU runs
 *   gemm_bench gemm M K N [M K N ...]  -> "gemm <kernel> <entry> M K N <GFLOP/s>" per shape and
 *                                         entry: packed, plain (K blocks packed per call), direct
 *                                         (2-5 rows)
 *   gemm_bench paired M K N [...]      -> "paired <kernel> <entry> M K N <GFLOP/s> <peak> <ratio>":
 *                                         pairs of (FMA loop of the path's width, 10 ms, then
 *                                         the GEMM, 10 ms or one call), back to back; medians
 *
 * Built and run by bench/bench_paths.py (which sets the path); plain C, no Python. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fd_cpu.h"
#include "fd_gemm.h"

/* This thread's CPU time: the machine is shared, and time spent descheduled is not the
   kernel's (per-core figures; a host's steal time still counts). */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if FD_X86_DISPATCH
#include <immintrin.h>

/* CHAINS independent FMA chains (FMA latency 4 cycles x 2 ports needs at least 8 in flight),
   ITERS FMAs each; returns GFLOP/s = 2 * lanes * CHAINS * ITERS / seconds. */
#define CHAINS 12
FD_TARGET_BEGIN_AVX2
static double peak_avx2(long iters)
{
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(1.0f), a2 = _mm256_set1_ps(2.0f), a3 = _mm256_set1_ps(3.0f), a4 = _mm256_set1_ps(4.0f), a5 = _mm256_set1_ps(5.0f), a6 = _mm256_set1_ps(6.0f), a7 = _mm256_set1_ps(7.0f), a8 = _mm256_set1_ps(8.0f), a9 = _mm256_set1_ps(9.0f), a10 = _mm256_set1_ps(10.0f), a11 = _mm256_set1_ps(11.0f);
    const double t0 = now();
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, x, y);
        a1 = _mm256_fmadd_ps(a1, x, y);
        a2 = _mm256_fmadd_ps(a2, x, y);
        a3 = _mm256_fmadd_ps(a3, x, y);
        a4 = _mm256_fmadd_ps(a4, x, y);
        a5 = _mm256_fmadd_ps(a5, x, y);
        a6 = _mm256_fmadd_ps(a6, x, y);
        a7 = _mm256_fmadd_ps(a7, x, y);
        a8 = _mm256_fmadd_ps(a8, x, y);
        a9 = _mm256_fmadd_ps(a9, x, y);
        a10 = _mm256_fmadd_ps(a10, x, y);
        a11 = _mm256_fmadd_ps(a11, x, y);
    }
    const double t = now() - t0;
    const float sink = _mm256_cvtss_f32(a0) + _mm256_cvtss_f32(a1) + _mm256_cvtss_f32(a2) + _mm256_cvtss_f32(a3) + _mm256_cvtss_f32(a4) + _mm256_cvtss_f32(a5) + _mm256_cvtss_f32(a6) + _mm256_cvtss_f32(a7) + _mm256_cvtss_f32(a8) + _mm256_cvtss_f32(a9) + _mm256_cvtss_f32(a10) + _mm256_cvtss_f32(a11);
    if (sink == 12345.0f) puts("");
    return 2.0 * 8 * CHAINS * (double)iters / t * 1e-9;
}
FD_TARGET_END

FD_TARGET_BEGIN_AVX512
static double peak_avx512(long iters)
{
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    __m512 a0 = _mm512_set1_ps(0.0f), a1 = _mm512_set1_ps(1.0f), a2 = _mm512_set1_ps(2.0f), a3 = _mm512_set1_ps(3.0f), a4 = _mm512_set1_ps(4.0f), a5 = _mm512_set1_ps(5.0f), a6 = _mm512_set1_ps(6.0f), a7 = _mm512_set1_ps(7.0f), a8 = _mm512_set1_ps(8.0f), a9 = _mm512_set1_ps(9.0f), a10 = _mm512_set1_ps(10.0f), a11 = _mm512_set1_ps(11.0f);
    const double t0 = now();
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, x, y);
        a1 = _mm512_fmadd_ps(a1, x, y);
        a2 = _mm512_fmadd_ps(a2, x, y);
        a3 = _mm512_fmadd_ps(a3, x, y);
        a4 = _mm512_fmadd_ps(a4, x, y);
        a5 = _mm512_fmadd_ps(a5, x, y);
        a6 = _mm512_fmadd_ps(a6, x, y);
        a7 = _mm512_fmadd_ps(a7, x, y);
        a8 = _mm512_fmadd_ps(a8, x, y);
        a9 = _mm512_fmadd_ps(a9, x, y);
        a10 = _mm512_fmadd_ps(a10, x, y);
        a11 = _mm512_fmadd_ps(a11, x, y);
    }
    const double t = now() - t0;
    const float sink = _mm512_cvtss_f32(a0) + _mm512_cvtss_f32(a1) + _mm512_cvtss_f32(a2) + _mm512_cvtss_f32(a3) + _mm512_cvtss_f32(a4) + _mm512_cvtss_f32(a5) + _mm512_cvtss_f32(a6) + _mm512_cvtss_f32(a7) + _mm512_cvtss_f32(a8) + _mm512_cvtss_f32(a9) + _mm512_cvtss_f32(a10) + _mm512_cvtss_f32(a11);
    if (sink == 12345.0f) puts("");
    return 2.0 * 16 * CHAINS * (double)iters / t * 1e-9;
}
FD_TARGET_END
#endif

/* Best of `reps` rounds (each at least 0.1 s after a warm-up). */
static double best_rate(double (*f)(long), long iters, int reps)
{
    double best = 0;
    f(iters / 10);
    for (int r = 0; r < reps; r++) {
        const double g = f(iters);
        if (g > best) best = g;
    }
    return best;
}

static int cmd_peak(void)
{
#if FD_X86_DISPATCH
    if (fd_cpu_level() >= 1) printf("peak avx2 %.1f\n", best_rate(peak_avx2, 20000000, 5));
    if (fd_cpu_level() >= 2) printf("peak avx512 %.1f\n", best_rate(peak_avx512, 20000000, 5));
#endif
    return 0;
}

/* Best GFLOP/s over rounds of about 0.15 s for one entry point at m x k x n. */
static double time_gemm(int entry, ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, const float *x, const float *w,
                        const float *wp, float *c)
{
    double best = 0;
    for (int round = 0; round < 7; round++) {
        int calls = 0;
        const double t0 = now();
        double t;
        do {
            int rc = entry == 0 ? fd_gemm_packed_f32(m, n, k, x, k, 1, wp, c, n)
                   : entry == 1 ? fd_gemm_kblocks_f32(m, n, k, x, k, 1, w, n, 0, c, n)
                                : fd_gemm_direct_f32(m, n, k, x, k, 1, w, n, c, n);
            if (rc) { fprintf(stderr, "gemm failed\n"); exit(1); }
            calls++;
            t = now() - t0;
        } while (t < 0.15);
        const double g = 2.0 * (double)m * (double)k * (double)n * calls / t * 1e-9;
        if (round > 0 && g > best) best = g;   /* round 0 warms up */
    }
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

/* One entry point at m x k x n, timed right after the FMA loop of the path's vector width, PAIRS
   times: a change of clock speed (turbo shared with other tenants, another process on the
   other core) between the two halves of a pair is rarer than over a whole run. Medians of the
   GEMM's GFLOP/s, the loop's, and of their ratio per pair. */
#define PAIRS 21
static void time_paired(int entry, ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, const float *x, const float *w,
                        const float *wp, float *c, double out[3])
{
    double gemm[PAIRS], peak[PAIRS], ratio[PAIRS];
#if FD_X86_DISPATCH
    double (*loop)(long) = fd_cpu_level() >= 2 ? peak_avx512 : peak_avx2;
    const long iters = fd_cpu_level() >= 2 ? 400000 : 800000;   /* about 1 ms at the peak */
#endif
    for (int pair = -1; pair < PAIRS; pair++) {   /* pair -1 warms up */
        double p = 0;
#if FD_X86_DISPATCH
        for (int r = 0; r < 10; r++) p += loop(iters) / 10;
#endif
        int calls = 0;
        const double t0 = now();
        double t;
        do {
            int rc = entry == 0 ? fd_gemm_packed_f32(m, n, k, x, k, 1, wp, c, n)
                                : fd_gemm_kblocks_f32(m, n, k, x, k, 1, w, n, 0, c, n);
            if (rc) { fprintf(stderr, "gemm failed\n"); exit(1); }
            calls++;
            t = now() - t0;
        } while (t < 0.01);
        if (pair < 0) continue;
        gemm[pair] = 2.0 * (double)m * (double)k * (double)n * calls / t * 1e-9;
        peak[pair] = p;
        ratio[pair] = p > 0 ? gemm[pair] / p : 0;
    }
    out[0] = median(gemm, PAIRS), out[1] = median(peak, PAIRS), out[2] = median(ratio, PAIRS);
}

static int cmd_paired(int argc, char **argv)
{
    if (!fd_packed_available()) { printf("paired none\n"); return 0; }
    for (int a = 0; a + 2 < argc; a += 3) {
        const ptrdiff_t m = atol(argv[a]), k = atol(argv[a + 1]), n = atol(argv[a + 2]);
        float *x = malloc(sizeof(float) * (size_t)(m * k)), *w = malloc(sizeof(float) * (size_t)(k * n));
        float *wp = aligned_alloc(64, (sizeof(float) * (size_t)fd_pack_f32_size(k, n) + 64) / 64 * 64);
        float *c = malloc(sizeof(float) * (size_t)(m * n));
        for (ptrdiff_t i = 0; i < m * k; i++) x[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        for (ptrdiff_t i = 0; i < k * n; i++) w[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
        fd_pack_f32(w, n, 0, k, n, wp);
        for (int entry = 0; entry < 2; entry++) {
            double r[3];
            time_paired(entry, m, k, n, x, w, wp, c, r);
            printf("paired %s %s %td %td %td %.1f %.1f %.3f\n", fd_gemm_kernel_name(), entry ? "plain" : "packed",
                   m, k, n, r[0], r[1], r[2]);
            fflush(stdout);
        }
        free(x); free(w); free(wp); free(c);
    }
    return 0;
}

static int cmd_gemm(int argc, char **argv)
{
    if (!fd_packed_available()) { printf("gemm none\n"); return 0; }
    for (int a = 0; a + 2 < argc; a += 3) {
        const ptrdiff_t m = atol(argv[a]), k = atol(argv[a + 1]), n = atol(argv[a + 2]);
        float *x = malloc(sizeof(float) * (size_t)(m * k)), *w = malloc(sizeof(float) * (size_t)(k * n));
        float *wp = aligned_alloc(64, (sizeof(float) * (size_t)fd_pack_f32_size(k, n) + 64) / 64 * 64);   /* as PackedKernel */
        float *c = malloc(sizeof(float) * (size_t)(m * n));
        for (ptrdiff_t i = 0; i < m * k; i++) x[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        for (ptrdiff_t i = 0; i < k * n; i++) w[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
        fd_pack_f32(w, n, 0, k, n, wp);
        printf("gemm %s packed %td %td %td %.1f\n", fd_gemm_kernel_name(), m, k, n, time_gemm(0, m, k, n, x, w, wp, c));
        printf("gemm %s plain %td %td %td %.1f\n", fd_gemm_kernel_name(), m, k, n, time_gemm(1, m, k, n, x, w, wp, c));
        if (m <= FD_DIRECT_MAX_ROWS)   /* what ops.dense runs for 2-5 rows of plain weights */
            printf("gemm %s direct %td %td %td %.1f\n", fd_gemm_kernel_name(), m, k, n, time_gemm(2, m, k, n, x, w, wp, c));
        fflush(stdout);
        free(x); free(w); free(wp); free(c);
    }
    return 0;
}

/* The paired loop alone, for bench/bench_paths.py's peers (this file built as a shared library and
   called through ctypes right before each sample of another library's GEMM): GFLOP/s of ten
   1 ms rounds of the widest FMA loop this CPU runs, as each pair of time_paired starts; 0
   without one. */
double gemm_bench_loop(void)
{
    double p = 0;
#if FD_X86_DISPATCH
    double (*loop)(long) = fd_cpu_level() >= 2 ? peak_avx512 : fd_cpu_level() >= 1 ? peak_avx2 : NULL;
    const long iters = fd_cpu_level() >= 2 ? 400000 : 800000;
    for (int r = 0; loop && r < 10; r++) p += loop(iters) / 10;
#endif
    return p;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "peak")) return cmd_peak();
    if (argc >= 5 && !strcmp(argv[1], "gemm")) return cmd_gemm(argc - 2, argv + 2);
    if (argc >= 5 && !strcmp(argv[1], "paired")) return cmd_paired(argc - 2, argv + 2);
    fprintf(stderr, "usage: gemm_bench peak | gemm M K N [M K N ...] | paired M K N [M K N ...]\n");
    return 2;
}
