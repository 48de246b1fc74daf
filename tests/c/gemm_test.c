/* gemm_test: the float32 GEMM (csrc/fd_gemm.c) on the path FASTDENSE_CPU_PATH selects, against
 * a double-precision reference and against itself, over many shapes (m 1..20 and a few large,
 * k 0..700, n 1..1030, edges around the 16-column panels and the 256-long K blocks, row
 * blocks ending in a part tile).
 *
 * Checks, per shape: every element within the float32 FMA-chain bound of the reference; the
 * same bits from the packed kernel, the per-call K-block kernel (row- and column-major
 * weights), the direct kernel (2-5 rows), one row at a time, x column-major, and column
 * ranges starting at any panel. Prints "path <kernel>", "digest <hash of every output bit>"
 * (equal digests on two paths: the same bits) and "ok <shapes>"; exits 1 on a failure.
 * --quick: small shapes only (under an emulator).
 * Built and run by tests/test_gemm_c.py, or: make -f tests/c/gemm.mk && build/c/gemm_test */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fd_gemm.h"

static int failures;
static uint64_t digest = 1469598103934665603ull;

#define FAIL(...) do { if (failures++ < 20) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static void hash_floats(const float *c, ptrdiff_t m, ptrdiff_t n, ptrdiff_t ldc)
{
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++) {
            uint32_t u;
            memcpy(&u, &c[i * ldc + j], 4);
            digest = (digest ^ u) * 1099511628211ull;
        }
}

/* A reproducible value in [-1, 1) with few significant bits cut off: a 24-bit LCG. */
static float value(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int32_t)(*s >> 40) - (1 << 23)) / (float)(1 << 23);
}

static int same_bits(const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, ptrdiff_t m, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < m; i++)
        if (memcmp(a + i * lda, b + i * ldb, (size_t)n * sizeof(float))) return 0;
    return 1;
}

static void check_shape(ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, uint64_t seed)
{
    const ptrdiff_t ldc = n + 3;   /* output rows with a gap: nothing may be written there */
    float *x = malloc(sizeof(float) * (size_t)(m * k + 1)), *xt = malloc(sizeof(float) * (size_t)(m * k + 1));
    float *w = malloc(sizeof(float) * (size_t)(k * n + 1)), *wt = malloc(sizeof(float) * (size_t)(k * n + 1));
    float *wp = malloc(sizeof(float) * (size_t)(fd_pack_f32_size(k, n) + 1));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc)), *d = malloc(sizeof(float) * (size_t)(m * ldc));
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t kk = 0; kk < k; kk++) xt[kk * m + i] = x[i * k + kk] = value(&seed);
    for (ptrdiff_t kk = 0; kk < k; kk++)
        for (ptrdiff_t j = 0; j < n; j++) wt[j * k + kk] = w[kk * n + j] = value(&seed);
    fd_pack_f32(w, n, 0, k, n, wp);

    for (ptrdiff_t i = 0; i < m * ldc; i++) c[i] = NAN;
    if (fd_gemm_packed_f32(m, n, k, x, k, 1, wp, c, ldc)) { FAIL("packed %td %td %td: -1", m, k, n); goto out; }
    /* float32 FMA chains of length k, then K-block partial sums added: within
       (k + 2) u sum |x w| of the exact value, u = 2^-24 */
    for (ptrdiff_t i = 0; i < m; i++) {
        for (ptrdiff_t j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (ptrdiff_t kk = 0; kk < k; kk++) {
                ref += (double)x[i * k + kk] * (double)w[kk * n + j];
                mag += fabs((double)x[i * k + kk] * (double)w[kk * n + j]);
            }
            const double got = c[i * ldc + j], bound = (double)(k + 2) * 0x1p-24 * mag;
            if (!(fabs(got - ref) <= bound)) {
                FAIL("m=%td k=%td n=%td c[%td,%td]=%.9g ref=%.9g bound=%.3g", m, k, n, i, j, got, ref, bound);
                goto out;
            }
        }
        for (ptrdiff_t j = n; j < ldc && i + 1 < m; j++)
            if (!isnan(c[i * ldc + j])) { FAIL("m=%td k=%td n=%td: wrote past column n", m, k, n); goto out; }
    }
    hash_floats(c, m, n, ldc);

    /* the same bits from every other way in */
    memset(d, 0, sizeof(float) * (size_t)(m * ldc));
    if (fd_gemm_kblocks_f32(m, n, k, x, k, 1, w, n, 0, d, ldc) || !same_bits(c, ldc, d, ldc, m, n))
        FAIL("m=%td k=%td n=%td: kblocks (row-major w) differs from packed", m, k, n);
    memset(d, 0, sizeof(float) * (size_t)(m * ldc));
    if (fd_gemm_kblocks_f32(m, n, k, x, k, 1, wt, k, 1, d, ldc) || !same_bits(c, ldc, d, ldc, m, n))
        FAIL("m=%td k=%td n=%td: kblocks (column-major w) differs from packed", m, k, n);
    memset(d, 0, sizeof(float) * (size_t)(m * ldc));
    if (fd_gemm_packed_f32(m, n, k, xt, 1, m, wp, d, ldc) || !same_bits(c, ldc, d, ldc, m, n))
        FAIL("m=%td k=%td n=%td: column-major x differs", m, k, n);
    if (m <= FD_DIRECT_MAX_ROWS) {
        memset(d, 0, sizeof(float) * (size_t)(m * ldc));
        if (fd_gemm_direct_f32(m, n, k, x, k, 1, w, n, d, ldc) || !same_bits(c, ldc, d, ldc, m, n))
            FAIL("m=%td k=%td n=%td: direct differs from packed", m, k, n);
    }
    for (ptrdiff_t i = 0; i < m; i += (m > 24 ? 97 : 1)) {   /* a row alone: the bits it has in the batch */
        if (fd_gemm_packed_f32(1, n, k, x + i * k, k, 1, wp, d, ldc) || !same_bits(c + i * ldc, ldc, d, ldc, 1, n))
            FAIL("m=%td k=%td n=%td: row %td alone differs from the batch", m, k, n, i);
    }
    for (ptrdiff_t j0 = 16; j0 < n; j0 += 16 * (1 + n / 160)) {   /* a column range from panel j0/16 */
        if (fd_gemm_packed_f32(m, n - j0, k, x, k, 1, wp + j0 * k, d, ldc)
            || !same_bits(c + j0, ldc, d, ldc, m, n - j0))
            FAIL("m=%td k=%td n=%td: columns from %td differ", m, k, n, j0);
    }
out:
    free(x); free(xt); free(w); free(wt); free(wp); free(c); free(d);
}

int main(int argc, char **argv)
{
    /* --quick: the small shapes only (for slow runs, e.g. under an emulator) */
    const int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (!fd_packed_available()) {
        printf("path none\n");   /* no packed kernel on this CPU (or forced to the baseline) */
        return 0;
    }
    static const ptrdiff_t ks[] = {0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 255, 256, 257, 300, 512, 513, 700};
    static const ptrdiff_t ns[] = {1, 2, 5, 8, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 65, 100, 255, 257, 513, 1030};
    int shapes = 0;
    uint64_t seed = 12345;
    for (ptrdiff_t m = 1; m <= 20; m++)
        for (size_t a = 0; a < sizeof ks / sizeof *ks; a++)
            for (size_t b = 0; b < sizeof ns / sizeof *ns; b++) {
                if (ks[a] * ns[b] > 200000 && m % 4 != 1) continue;   /* the big ones for a few m */
                if (quick && (ks[a] * ns[b] > 20000 || m % 3 != 1)) continue;
                check_shape(m, ks[a], ns[b], seed++);
                shapes++;
            }
    /* row blocks, several K blocks, whole packing of plain weights (512+ rows) */
    /* ... and the K-block order of large packed weights (K blocks outermost on avx512) with row
       blocks ending in a padded tile (1-5 rows past the last whole tile of 6); few columns over
       more rows than a block of x read in place, in narrow, column and row tiles */
    static const ptrdiff_t big[][3] = {{37, 300, 129}, {150, 513, 200}, {600, 700, 100}, {288, 1024, 160},
                                       {32, 512, 512}, {151, 600, 1030}, {149, 257, 600},
                                       /* few columns over many rows: narrow tiles, row blocks of x in place */
                                       {211, 700, 10}, {150, 513, 26}, {97, 256, 32}, {203, 300, 16},
                                       /* at most 8 columns: avx512 column tiles, 32 rows at a time */
                                       {100, 513, 5}, {67, 300, 1}, {64, 17, 8}, {130, 700, 8},
                                       /* 1024+ rows, 1-2 MiB of weights: row blocks outermost on avx512 */
                                       {1025, 520, 520}};
    for (size_t s = 0; s < (quick ? 1 : sizeof big / sizeof *big); s++, shapes++) check_shape(big[s][0], big[s][1], big[s][2], seed++);
    printf("path %s\n", fd_gemm_kernel_name());
    printf("digest %016llx\n", (unsigned long long)digest);
    if (failures) { printf("FAILED %d\n", failures); return 1; }
    printf("ok %d\n", shapes);
    return 0;
}
