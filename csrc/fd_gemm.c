/* fastdense packed-weight f32 GEMM (AVX2 + FMA).
 *
 * A Dense layer's weights are constant between set_weights calls, so they are packed once
 * into panels of 16 columns (fd_pack_f32); every call then streams the panels with a 6 x 16
 * register-blocked micro-kernel and never re-packs them, which a BLAS has to do per call.
 * That matters most for small and medium batches, where the packing is a large part of
 * the work.
 *
 * Each output element is one FMA chain over k in order, restarted from the stored partial
 * sum at every K block whose size depends only on K; so a row's result is the same bit for
 * bit whatever the batch size, the row's position in it, or the thread split.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fd_gemm.h"
#include "fd_act.h"
#include "fd_cpu.h"

#define NR 16                   /* columns per panel: two AVX2 vectors */
#define MR 6                    /* rows per micro-tile */
#ifndef KC_MAX
#define KC_MAX 256              /* K block: a 16-column slice of it stays in L1 (16 KiB) */
#endif
#ifndef KB_COLS
#define KB_COLS 1024            /* columns per slice of weights packed per call, in K blocks */
#endif
/* Floats between the panels of a K block packed per call: kc * 16 floats apart (a multiple of
   4 KiB), the 16 panels that one row of w is written to would all fall in one set of the L1
   cache; 128 bytes more per panel spreads them (measured: the packing's cost over the packed
   kernel at 32 x 512 x 256 went from about 57 to 36 thousand cycles). */
#define WBUF_PAD 32
#define FULL_PACK_MIN_ROWS 512  /* per call from this many rows, weights packed whole ... */
#define FULL_PACK_MAX_BYTES ((size_t)16 << 20)   /* ... when that takes at most 16 MiB */
#ifndef MC
#define MC 144                  /* most rows per block of x, packed (MC x KC: 144 KiB, in L2) */
#endif
#ifndef C_BLOCK_BYTES
#define C_BLOCK_BYTES (64 * 1024)
#endif

/* Rows per block of x for n columns in the packed path: about C_BLOCK_BYTES of output per
   block, a multiple of MR from 2 MR to MC. Each K block of panels then serves fewer rows before
   the next (it is read again from L3 per block), but the block's packed x and output stay close
   to the core: at 1024 columns and several K blocks, 12 rows per block ran at 77-83 GFLOP/s on
   one core against 65-79 for 144 (the same product, measured alternately in one C harness).
   The per-call K-block path keeps MC, to use each block of weights it has just packed for as
   many rows as it can. Row blocks change no result: each element is one FMA chain per K block. */
static ptrdiff_t row_block(ptrdiff_t n)
{
    const ptrdiff_t r = (ptrdiff_t)(C_BLOCK_BYTES / (sizeof(float) * (size_t)(n > 0 ? n : 1))) / MR * MR;
    return r < 2 * MR ? 2 * MR : r > MC ? MC : r;
}

ptrdiff_t fd_pack_f32_size(ptrdiff_t k, ptrdiff_t n)
{
    return ((n + NR - 1) / NR) * NR * k;
}

void fd_pack_f32(const float *w, ptrdiff_t ldw, int colmajor, ptrdiff_t k, ptrdiff_t n, float *dst)
{
    /* in blocks of 32 rows of w, so a block's rows stay in cache (and in the TLB) while
       every panel takes its 16 columns of them */
    const ptrdiff_t np = (n + NR - 1) / NR;
    for (ptrdiff_t k0 = 0; k0 < k; k0 += 32) {
        const ptrdiff_t k1 = k0 + 32 < k ? k0 + 32 : k;
        for (ptrdiff_t p = 0; p < np; p++) {
            const ptrdiff_t p0 = p * NR, cols = n - p0 < NR ? n - p0 : NR;
            float *d = dst + p * k * NR + k0 * NR;
            if (!colmajor && cols == NR) {   /* the common case: a fixed-size copy, inlined */
                for (ptrdiff_t kk = k0; kk < k1; kk++, d += NR)
                    memcpy(d, w + kk * ldw + p0, NR * sizeof(float));
                continue;
            }
            for (ptrdiff_t kk = k0; kk < k1; kk++, d += NR) {
                if (!colmajor) {
                    memcpy(d, w + kk * ldw + p0, (size_t)cols * sizeof(float));
                } else {
                    for (ptrdiff_t j = 0; j < cols; j++) d[j] = w[kk + (p0 + j) * ldw];
                }
                for (ptrdiff_t j = cols; j < NR; j++) d[j] = 0.0f;
            }
        }
    }
}

/* K blocks: near-equal, at most KC_MAX; the split depends on K alone. */
static ptrdiff_t k_block(ptrdiff_t k)
{
    const ptrdiff_t blocks = (k + KC_MAX - 1) / KC_MAX;
    return blocks > 1 ? (k + blocks - 1) / blocks : k;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FD_HAVE_PACKED 1
#include <immintrin.h>

FD_TARGET_BEGIN_AVX2

/* c[0:8] = v, or c[0:8] += v. */
static inline __attribute__((always_inline)) void store(int accumulate, float *c, __m256 v)
{
    if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
    _mm256_storeu_ps(c, v);
}

/* The edge of a tile: the first `cols` of each row of `edge` (rows x width) go to c. */
static __attribute__((noinline)) void partial_store(const float *edge, int rows, int width, float *c,
                                                    ptrdiff_t ldc, int accumulate, ptrdiff_t cols)
{
    for (int r = 0; r < rows; r++) {
        const float *er = edge + r * width;
        float *cr = c + r * ldc;
        if (accumulate)
            for (ptrdiff_t j = 0; j < cols; j++) cr[j] += er[j];
        else
            memcpy(cr, er, (size_t)cols * sizeof(float));
    }
}

/* tile_RxP: C[R rows x P*16 columns] (+)= x[R rows, kc] @ P panels, `cols` of them valid;
   each output element is one FMA chain in k order. */
#include "fd_gemm_tiles.h"

/* Rows r in [0, rows) (rows <= MR), panels [p0, p1): the widest tile the registers hold. */
static void row_tile(int rows, ptrdiff_t kc, const float *x, ptrdiff_t rsx, ptrdiff_t csx,
                     const float *b, ptrdiff_t ldb, ptrdiff_t pstride, ptrdiff_t p0, ptrdiff_t p1, float *c,
                     ptrdiff_t ldc, int acc, ptrdiff_t n)
{
    /* panels per tile by rows: 12 accumulators at most (8 for one row) */
    static const int np_for_rows[MR + 1] = {0, 4, 3, 2, 1, 1, 1};
    const int np = np_for_rows[rows];
    ptrdiff_t p = p0;
#define FD_TILE(R, P)                                                                        \
    tile_##R##x##P(kc, x, rsx, csx, b + p * pstride, ldb, pstride, c + p * NR, ldc, acc,     \
                   n - p * NR < (P) * NR ? n - p * NR : (P) * NR)
    for (; p + np <= p1; p += np) {
        switch (rows) {
        case 1: FD_TILE(1, 4); break;
        case 2: FD_TILE(2, 3); break;
        case 3: FD_TILE(3, 2); break;
        case 4: FD_TILE(4, 1); break;
        case 5: FD_TILE(5, 1); break;
        default: FD_TILE(6, 1); break;
        }
    }
    for (; p < p1; p++) {
        switch (rows) {
        case 1: FD_TILE(1, 1); break;
        case 2: FD_TILE(2, 1); break;
        default: FD_TILE(3, 1); break;   /* rows 3 only: 4..6 take one panel per tile above */
        }
    }
#undef FD_TILE
}

/* x[rows, k0:k0+kc] -> dst as row tiles of MR (rows is a multiple of MR):
   dst[t * kc * MR + kk * MR + r], so a tile's MR values at one k sit in one cache line.
   Rows stored contiguously go 8 values at a time through an 8 x 8 transpose (two rows of
   zeros), each column stored as 8 floats whose last 2 the next column overwrites: dst needs
   2 floats of slack past its end. */
static void pack_x(const float *x, ptrdiff_t rsx, ptrdiff_t csx, ptrdiff_t rows, ptrdiff_t kc, float *dst)
{
    const __m256 z = _mm256_setzero_ps();
    for (ptrdiff_t i = 0; i < rows; i += MR, dst += kc * MR) {
        const float *xr[MR];
        for (ptrdiff_t r = 0; r < MR; r++) xr[r] = x + (i + r) * rsx;
        ptrdiff_t kk = 0;
        if (csx == 1) {
            for (; kk + 8 <= kc; kk += 8) {
                const __m256 t0 = _mm256_unpacklo_ps(_mm256_loadu_ps(xr[0] + kk), _mm256_loadu_ps(xr[1] + kk));
                const __m256 t1 = _mm256_unpackhi_ps(_mm256_loadu_ps(xr[0] + kk), _mm256_loadu_ps(xr[1] + kk));
                const __m256 t2 = _mm256_unpacklo_ps(_mm256_loadu_ps(xr[2] + kk), _mm256_loadu_ps(xr[3] + kk));
                const __m256 t3 = _mm256_unpackhi_ps(_mm256_loadu_ps(xr[2] + kk), _mm256_loadu_ps(xr[3] + kk));
                const __m256 t4 = _mm256_unpacklo_ps(_mm256_loadu_ps(xr[4] + kk), _mm256_loadu_ps(xr[5] + kk));
                const __m256 t5 = _mm256_unpackhi_ps(_mm256_loadu_ps(xr[4] + kk), _mm256_loadu_ps(xr[5] + kk));
                /* s_j: rows 0-3 (or 4-5 and zeros) at k = j and j + 4 */
                const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                const __m256 s4 = _mm256_shuffle_ps(t4, z, 0x44), s5 = _mm256_shuffle_ps(t4, z, 0xEE);
                const __m256 s6 = _mm256_shuffle_ps(t5, z, 0x44), s7 = _mm256_shuffle_ps(t5, z, 0xEE);
                float *d = dst + kk * MR;
                _mm256_storeu_ps(d + 0 * MR, _mm256_permute2f128_ps(s0, s4, 0x20));
                _mm256_storeu_ps(d + 1 * MR, _mm256_permute2f128_ps(s1, s5, 0x20));
                _mm256_storeu_ps(d + 2 * MR, _mm256_permute2f128_ps(s2, s6, 0x20));
                _mm256_storeu_ps(d + 3 * MR, _mm256_permute2f128_ps(s3, s7, 0x20));
                _mm256_storeu_ps(d + 4 * MR, _mm256_permute2f128_ps(s0, s4, 0x31));
                _mm256_storeu_ps(d + 5 * MR, _mm256_permute2f128_ps(s1, s5, 0x31));
                _mm256_storeu_ps(d + 6 * MR, _mm256_permute2f128_ps(s2, s6, 0x31));
                _mm256_storeu_ps(d + 7 * MR, _mm256_permute2f128_ps(s3, s7, 0x31));
            }
        }
        for (; kk < kc; kk++)
            for (ptrdiff_t r = 0; r < MR; r++) dst[kk * MR + r] = xr[r][kk * csx];
    }
}

/* fd_pack_f32 for a row-major block of kc rows x n columns (a slice of the weights), row by
   row: each row of w is read in order, which the hardware prefetcher follows, and its 16
   column pieces go to their panels (pstride floats apart), which stay in cache. */
static void pack_w_rows(const float *w, ptrdiff_t ldw, ptrdiff_t kc, ptrdiff_t n, float *dst, ptrdiff_t pstride)
{
    const ptrdiff_t full = n / NR, np = (n + NR - 1) / NR;
    for (ptrdiff_t kk = 0; kk < kc; kk++) {
        const float *src = w + kk * ldw;
        float *d = dst + kk * NR;
        for (ptrdiff_t p = 0; p < full; p++) {
            _mm256_storeu_ps(d + p * pstride, _mm256_loadu_ps(src + p * NR));
            _mm256_storeu_ps(d + p * pstride + 8, _mm256_loadu_ps(src + p * NR + 8));
        }
        if (full < np) {
            float *e = d + full * pstride;
            const ptrdiff_t cols = n - full * NR;
            memcpy(e, src + full * NR, (size_t)cols * sizeof(float));
            memset(e + cols, 0, (size_t)(NR - cols) * sizeof(float));
        }
    }
}

/* Rows [i0, i1) (at most MC) of x against one K block [k0, k0 + kc) of packed panels b (panel
   p at b + p * pstride): x packed into xbuf for the whole row tiles, the last few rows as wide
   tiles over every panel. */
static void block_tiles(ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t n, const float *x,
                        ptrdiff_t rsx, ptrdiff_t csx, const float *b, ptrdiff_t pstride, float *c, ptrdiff_t ldc,
                        float *xbuf)
{
    const ptrdiff_t np = (n + NR - 1) / NR;
    const ptrdiff_t full = i0 + (i1 - i0) / MR * MR;          /* rows in whole tiles */
    pack_x(x + i0 * rsx + k0 * csx, rsx, csx, full - i0, kc, xbuf);
    for (ptrdiff_t p = 0; p < np; p++) {
        const ptrdiff_t cols = n - p * NR < NR ? n - p * NR : NR;
        for (ptrdiff_t i = i0; i < full; i += MR)
            tile_6x1_px(kc, xbuf + (i - i0) * kc, b + p * pstride, pstride, c + i * ldc + p * NR, ldc, k0 > 0, cols);
    }
    if (full < i1)
        row_tile((int)(i1 - full), kc, x + full * rsx + k0 * csx, rsx, csx, b, NR, pstride, 0, np,
                 c + full * ldc, ldc, k0 > 0, n);
}

/* Few rows or few columns: all m rows against one K block, x read in place (packing it would
   cost more than it saves), each row tile sweeping all panels. */
static void block_direct(ptrdiff_t m, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t n, const float *x, ptrdiff_t rsx,
                         ptrdiff_t csx, const float *b, ptrdiff_t pstride, float *c, ptrdiff_t ldc)
{
    const ptrdiff_t np = (n + NR - 1) / NR;
    for (ptrdiff_t i = 0; i < m; i += MR)
        row_tile((int)(m - i < MR ? m - i : MR), kc, x + i * rsx + k0 * csx, rsx, csx, b, NR, pstride, 0, np,
                 c + i * ldc, ldc, k0 > 0, n);
}

/* The packed kernel's choice between the two, by the shape of the call. */
static int use_direct(ptrdiff_t m, ptrdiff_t n) { return m < MR || n <= 2 * NR; }

static void gemm_packed_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                             ptrdiff_t csx, const float *wp, float *c, ptrdiff_t ldc, float *xbuf)
{
    const ptrdiff_t kcb = k_block(k);
    if (use_direct(m, n)) {
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb)
            block_direct(m, k0, k - k0 < kcb ? k - k0 : kcb, n, x, rsx, csx, wp + k0 * NR, k * NR, c, ldc);
        return;
    }
    const ptrdiff_t mc = row_block(n);
    for (ptrdiff_t i0 = 0; i0 < m; i0 += mc)
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb)
            block_tiles(i0, i0 + mc < m ? i0 + mc : m, k0, k - k0 < kcb ? k - k0 : kcb, n, x, rsx, csx,
                        wp + k0 * NR, k * NR, c, ldc, xbuf);
}

/* The same product for plain weights, in slices of KB_COLS columns, each packed one K block
   at a time into wbuf (kc x KB_COLS: 1 MiB, in L3), which every row then uses before the next
   block; x is packed once per block of rows and K block of a slice, as in the packed path.
   Same K blocks, same tiles: the bits of the packed path. */
static void gemm_kblocks_avx2(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                              ptrdiff_t csx, const float *w, ptrdiff_t ldw, int colmajor, float *c,
                              ptrdiff_t ldc, float *xbuf, float *wbuf)
{
    const ptrdiff_t kcb = k_block(k);
    for (ptrdiff_t j0 = 0; j0 < n; j0 += KB_COLS) {
        const ptrdiff_t cols = n - j0 < KB_COLS ? n - j0 : KB_COLS;
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb) {
            const ptrdiff_t kc = k - k0 < kcb ? k - k0 : kcb;
            const ptrdiff_t pstride = colmajor ? kc * NR : kc * NR + WBUF_PAD;
            if (colmajor) fd_pack_f32(w + k0 + j0 * ldw, ldw, 1, kc, cols, wbuf);
            else pack_w_rows(w + k0 * ldw + j0, ldw, kc, cols, wbuf, pstride);
            if (use_direct(m, cols))
                block_direct(m, k0, kc, cols, x, rsx, csx, wbuf, pstride, c + j0, ldc);
            else
                for (ptrdiff_t i0 = 0; i0 < m; i0 += MC)
                    block_tiles(i0, i0 + MC < m ? i0 + MC : m, k0, kc, cols, x, rsx, csx, wbuf, pstride,
                                c + j0, ldc, xbuf);
        }
    }
}

/* A few rows against a row-major w read in place, KG rows of w at a time (KG streams read in
   order, which the hardware prefetcher follows; 8 or 16 such streams a multiple of 4 KiB
   apart crowd one L1 set): for each piece of V vectors (8 columns each)
   of those rows, the R x V partial sums come from an L1 buffer t into registers, take KG FMAs
   each in k order, and go back; at the end of each K block t (from 0 in every K block) is
   stored or added to c. The same FMA chains and K blocks as the tiles, so the results equal
   the packed kernel's bit for bit. Columns past the last whole vector take the same chains
   one element at a time (fmaf rounds as a vector FMA lane does). */
#define DIRECT_COLS 512
#define KG 4
static inline __attribute__((always_inline)) void
direct_group(const int R, const int V, const int kg, const float *x, ptrdiff_t rsx, ptrdiff_t csx,
             const float *w, ptrdiff_t ldw, float *t, ptrdiff_t ldt)
{
    __m256 a[MR - 1][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) a[r][v] = _mm256_load_ps(t + r * ldt + 8 * v);
    for (int kk = 0; kk < kg; kk++) {
        const float *wk = w + kk * ldw;
        __m256 wv[4];
        for (int v = 0; v < V; v++) wv[v] = _mm256_loadu_ps(wk + 8 * v);
        for (int r = 0; r < R; r++) {
            const __m256 xb = _mm256_broadcast_ss(x + r * rsx + kk * csx);
            for (int v = 0; v < V; v++) a[r][v] = _mm256_fmadd_ps(xb, wv[v], a[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) _mm256_store_ps(t + r * ldt + 8 * v, a[r][v]);
}

/* vectors per piece: R x V partial sums, at most 10 registers */
#define DIRECT_V(R) ((R) <= 2 ? 4 : 2)

static inline __attribute__((always_inline)) void
direct_rows(const int R, ptrdiff_t cols, ptrdiff_t k, const float *x, ptrdiff_t rsx, ptrdiff_t csx,
            const float *w, ptrdiff_t ldw, float *c, ptrdiff_t ldc)
{
    enum { LDT = DIRECT_COLS + 24 };   /* rows of t not 4 KiB apart */
    float t[(MR - 1) * LDT] __attribute__((aligned(32)));
    const int V = DIRECT_V(R);
    const ptrdiff_t kcb = k_block(k), vec = cols / 8 * 8, wide = cols / (8 * V) * (8 * V);
    if (k == 0)
        for (int r = 0; r < R; r++) memset(c + r * ldc, 0, (size_t)cols * sizeof(float));
    for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb) {
        const ptrdiff_t kc = k - k0 < kcb ? k - k0 : kcb;
        for (int r = 0; r < R; r++) memset(t + r * LDT, 0, (size_t)cols * sizeof(float));
        for (ptrdiff_t g = k0; g < k0 + kc; g += KG) {
            const int kg = k0 + kc - g < KG ? (int)(k0 + kc - g) : KG;
            const float *xg = x + g * csx, *wg = w + g * ldw;
            ptrdiff_t j = 0;
            if (kg == KG) {
                for (; j < wide; j += 8 * V) direct_group(R, V, KG, xg, rsx, csx, wg + j, ldw, t + j, LDT);
                for (; j < vec; j += 8) direct_group(R, 1, KG, xg, rsx, csx, wg + j, ldw, t + j, LDT);
            } else {
                for (; j < vec; j += 8) direct_group(R, 1, kg, xg, rsx, csx, wg + j, ldw, t + j, LDT);
            }
            for (int kk = 0; kk < kg; kk++)
                for (ptrdiff_t jj = vec; jj < cols; jj++)
                    for (int r = 0; r < R; r++)
                        t[r * LDT + jj] = fmaf(xg[r * rsx + kk * csx], wg[kk * ldw + jj], t[r * LDT + jj]);
        }
        for (int r = 0; r < R; r++) {
            float *cr = c + r * ldc;
            if (k0 == 0) memcpy(cr, t + r * LDT, (size_t)cols * sizeof(float));
            else for (ptrdiff_t j = 0; j < cols; j++) cr[j] += t[r * LDT + j];
        }
    }
}

#define FD_DIRECT_ROWS(R)                                                                      \
    static void direct_rows_##R(ptrdiff_t cols, ptrdiff_t k, const float *x, ptrdiff_t rsx,   \
                                ptrdiff_t csx, const float *w, ptrdiff_t ldw, float *c,        \
                                ptrdiff_t ldc)                                                 \
    {                                                                                          \
        direct_rows(R, cols, k, x, rsx, csx, w, ldw, c, ldc);                                  \
    }
FD_DIRECT_ROWS(1)
FD_DIRECT_ROWS(2)
FD_DIRECT_ROWS(3)
FD_DIRECT_ROWS(4)
FD_DIRECT_ROWS(5)

FD_TARGET_END
#else
#define FD_HAVE_PACKED 0
#endif

int fd_gemm_direct_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                       ptrdiff_t csx, const float *w, ptrdiff_t ldw, float *c, ptrdiff_t ldc)
{
#if FD_HAVE_PACKED
    if (m <= 0 || n <= 0) return 0;
    if (m > MR - 1) return -1;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += DIRECT_COLS) {
        const ptrdiff_t cols = n - j0 < DIRECT_COLS ? n - j0 : DIRECT_COLS;
        switch (m) {
        case 1: direct_rows_1(cols, k, x, rsx, csx, w + j0, ldw, c + j0, ldc); break;
        case 2: direct_rows_2(cols, k, x, rsx, csx, w + j0, ldw, c + j0, ldc); break;
        case 3: direct_rows_3(cols, k, x, rsx, csx, w + j0, ldw, c + j0, ldc); break;
        case 4: direct_rows_4(cols, k, x, rsx, csx, w + j0, ldw, c + j0, ldc); break;
        default: direct_rows_5(cols, k, x, rsx, csx, w + j0, ldw, c + j0, ldc); break;
        }
    }
    return 0;
#else
    (void)m; (void)n; (void)k; (void)x; (void)rsx; (void)csx; (void)w; (void)ldw; (void)c; (void)ldc;
    return -1;
#endif
}

/* The whole-weights buffer of fd_gemm_kblocks_f32, kept per thread from call to call (at most
   FULL_PACK_MAX_BYTES, freed when the thread ends): a fresh allocation of that size is fresh
   pages every call, measured at about 600 page faults and 1 ms for 4 MiB on a pool thread. */
typedef struct { float *p; size_t bytes; } thread_buffer;
static pthread_key_t pack_buffer_key;
static pthread_once_t pack_buffer_once = PTHREAD_ONCE_INIT;
static int pack_buffer_key_ok;

static void free_thread_buffer(void *v)
{
    thread_buffer *b = v;
    free(b->p);
    free(b);
}

static void make_pack_buffer_key(void)
{
    pack_buffer_key_ok = pthread_key_create(&pack_buffer_key, free_thread_buffer) == 0;
}

static float *thread_pack_buffer(size_t bytes)
{
    pthread_once(&pack_buffer_once, make_pack_buffer_key);
    if (!pack_buffer_key_ok) return NULL;
    thread_buffer *b = pthread_getspecific(pack_buffer_key);
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b || pthread_setspecific(pack_buffer_key, b)) { free(b); return NULL; }
    }
    if (b->bytes < bytes) {
        free(b->p);
        b->p = aligned_alloc(64, bytes);
        b->bytes = b->p ? bytes : 0;
    }
    return b->p;
}

float *fd_whole_pack_buffer(ptrdiff_t m_per_thread, ptrdiff_t k, ptrdiff_t n)
{
#if FD_HAVE_PACKED
    const size_t bytes = (size_t)fd_pack_f32_size(k, n) * sizeof(float) / 64 * 64 + 64;
    if (m_per_thread < FULL_PACK_MIN_ROWS || k <= k_block(k) || bytes > FULL_PACK_MAX_BYTES) return NULL;
    return thread_pack_buffer(bytes);
#else
    (void)m_per_thread; (void)k; (void)n;
    return NULL;
#endif
}

void fd_pack_f32_rows(const float *w, ptrdiff_t ldw, ptrdiff_t k, ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1,
                      float *dst)
{
#if FD_HAVE_PACKED
    pack_w_rows(w + r0 * ldw, ldw, r1 - r0, n, dst + r0 * NR, k * NR);
#else
    (void)w; (void)ldw; (void)k; (void)n; (void)r0; (void)r1; (void)dst;
#endif
}

int fd_gemm_kblocks_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                        ptrdiff_t csx, const float *w, ptrdiff_t ldw, int colmajor, float *c, ptrdiff_t ldc)
{
#if FD_HAVE_PACKED
    if (m <= 0 || n <= 0) return 0;
    if (k == 0) {
        for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return 0;
    }
    const ptrdiff_t kcb = k_block(k), mc = m < MC ? (m + MR - 1) / MR * MR : MC;
    float *xbuf = malloc(((size_t)mc * kcb + 8) * sizeof(float));   /* + pack_x's slack */
    if (!xbuf) return -1;
    /* Many rows against several K blocks of row-major weights: packing one K block at a time
       would make every row's output go out to memory and back once per K block, so the
       weights are packed whole (at most FULL_PACK_MAX_BYTES; from 512 rows packing is about
       1 % of the work) and the packed path runs, its output block kept in L2 across K blocks. */
    float *whole = colmajor ? NULL : fd_whole_pack_buffer(m, k, n);
    if (whole) {
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb)
            pack_w_rows(w + k0 * ldw, ldw, k - k0 < kcb ? k - k0 : kcb, n, whole + k0 * NR, k * NR);
        gemm_packed_avx2(m, n, k, x, rsx, csx, whole, c, ldc, xbuf);
        free(xbuf);
        return 0;
    }
    const ptrdiff_t slice = n < KB_COLS ? n : KB_COLS;
    const size_t wfloats = (size_t)fd_pack_f32_size(kcb, slice) + (size_t)(slice + NR - 1) / NR * WBUF_PAD;
    float *wbuf = aligned_alloc(64, wfloats * sizeof(float) / 64 * 64 + 64);
    if (!wbuf) { free(xbuf); return -1; }
    gemm_kblocks_avx2(m, n, k, x, rsx, csx, w, ldw, colmajor, c, ldc, xbuf, wbuf);
    free(xbuf);
    free(wbuf);
    return 0;
#else
    (void)m; (void)n; (void)k; (void)x; (void)rsx; (void)csx; (void)w; (void)ldw; (void)colmajor; (void)c; (void)ldc;
    return -1;
#endif
}

int fd_packed_available(void)
{
#if FD_HAVE_PACKED
    return fd_cpu_level() >= 1;
#else
    return 0;
#endif
}

int fd_gemm_packed_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                       ptrdiff_t csx, const float *wp, float *c, ptrdiff_t ldc)
{
#if FD_HAVE_PACKED
    if (m <= 0 || n <= 0) return 0;
    if (k == 0) {
        for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return 0;
    }
    if (use_direct(m, n)) {
        gemm_packed_avx2(m, n, k, x, rsx, csx, wp, c, ldc, NULL);
        return 0;
    }
    const ptrdiff_t kcb = k_block(k), mc = m < MC ? (m + MR - 1) / MR * MR : MC;
    float *xbuf = malloc(((size_t)mc * kcb + 8) * sizeof(float));   /* + pack_x's slack */
    if (!xbuf) return -1;
    gemm_packed_avx2(m, n, k, x, rsx, csx, wp, c, ldc, xbuf);
    free(xbuf);
    return 0;
#else
    (void)m; (void)n; (void)k; (void)x; (void)rsx; (void)csx; (void)wp; (void)c; (void)ldc;
    return -1;
#endif
}
