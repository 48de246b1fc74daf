/* fastdense packed-weight f32 GEMM, one driver for every SIMD path (AVX2 + FMA, AVX-512).
 *
 * A Dense layer's weights are constant between set_weights calls, so they are packed once
 * into panels of 16 columns (fd_pack_f32); every call then streams the panels with a
 * register-blocked micro-kernel and never re-packs them, which a BLAS has to do per call.
 * That matters most for small and medium batches, where the packing is a large part of
 * the work. The panel layout is the same on every path (an AVX2 tile takes one panel, 6 x 16;
 * an AVX-512 tile four, 6 x 64), so packed weights stay valid whatever path runs them.
 *
 * Each output element is one FMA chain over k in order, restarted from the stored partial
 * sum at every K block whose size depends only on K; so a row's result is the same bit for
 * bit whatever the batch size, the row's position in it, the thread split, or the path.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fd_gemm.h"
#include "fd_cpu.h"
#include "fd_tune_avx2.h"
#include "fd_tune_avx512.h"
#include "fd_tune_neon.h"

#define PANEL 16                /* columns per packed panel, every path */
#define KC_MAX FD_AVX2_KC
_Static_assert(FD_AVX512_KC == FD_AVX2_KC && FD_NEON_KC == FD_AVX2_KC, "every path must split K alike: same bits");
/* rows per block of x read in place (few columns): 4096 x 512 x 10 on avx512 ran 9-11 % faster
   in blocks of 48-192 rows than with all rows per K block */
#define DIRECT_ROW_BLOCK 96
#define FULL_PACK_MIN_ROWS 512  /* per call from this many rows, weights packed whole ... */
#define FULL_PACK_MAX_BYTES ((size_t)16 << 20)   /* ... when that takes at most 16 MiB */

ptrdiff_t fd_pack_f32_size(ptrdiff_t k, ptrdiff_t n)
{
    return ((n + PANEL - 1) / PANEL) * PANEL * k;
}

void fd_pack_f32(const float *w, ptrdiff_t ldw, int colmajor, ptrdiff_t k, ptrdiff_t n, float *dst)
{
    /* in blocks of 32 rows of w, so a block's rows stay in cache (and in the TLB) while
       every panel takes its 16 columns of them */
    const ptrdiff_t np = (n + PANEL - 1) / PANEL;
    for (ptrdiff_t k0 = 0; k0 < k; k0 += 32) {
        const ptrdiff_t k1 = k0 + 32 < k ? k0 + 32 : k;
        for (ptrdiff_t p = 0; p < np; p++) {
            const ptrdiff_t p0 = p * PANEL, cols = n - p0 < PANEL ? n - p0 : PANEL;
            float *d = dst + p * k * PANEL + k0 * PANEL;
            if (!colmajor && cols == PANEL) {   /* the common case: a fixed-size copy, inlined */
                for (ptrdiff_t kk = k0; kk < k1; kk++, d += PANEL)
                    memcpy(d, w + kk * ldw + p0, PANEL * sizeof(float));
                continue;
            }
            for (ptrdiff_t kk = k0; kk < k1; kk++, d += PANEL) {
                if (!colmajor) {
                    memcpy(d, w + kk * ldw + p0, (size_t)cols * sizeof(float));
                } else {
                    for (ptrdiff_t j = 0; j < cols; j++) d[j] = w[kk + (p0 + j) * ldw];
                }
                for (ptrdiff_t j = cols; j < PANEL; j++) d[j] = 0.0f;
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

/* One SIMD path of the packed GEMM: its tiles and blocking. The driver below is plain C; a
   call through these pointers runs a whole tile (kc FMA steps), so it costs nothing. */
typedef struct {
    const char *name;
    int x_in_place;             /* 1: x read in place by the row tiles at every shape, never packed */
    int mr;                     /* rows per packed-x tile */
    int tile_panels;            /* panels per packed-x tile */
    ptrdiff_t mc;               /* most rows per block of packed x */
    size_t c_block_bytes;       /* output bytes per row block (packed path) */
    size_t k_outer_bytes;       /* packed weights larger than this: K blocks outermost (packed path) ... */
    ptrdiff_t rows_outer_min_rows;  /* ... except from this many rows when they take at most */
    size_t rows_outer_max_bytes;    /* this many bytes (0: no exception) */
    /* x[rows, 0:kc] (rows a multiple of mr) -> dst, tile after tile: dst[t*kc*mr + kk*mr + r];
       dst needs 8 floats of slack past its end */
    void (*pack_x)(const float *x, ptrdiff_t rsx, ptrdiff_t csx, ptrdiff_t rows, ptrdiff_t kc, float *dst);
    /* mr rows of packed x against tile_panels panels (or fewer: cols valid columns from b) */
    void (*tile_px)(ptrdiff_t kc, const float *xp, const float *b, ptrdiff_t pstride, float *c,
                    ptrdiff_t ldc, int accumulate, ptrdiff_t cols);
    /* few rows (few_rows to few_max_rows rows in whole x tiles per block; 0: never): tiles of few_rows rows
       (few_rows / mr consecutive packed x tiles) against few_panels panels, so that a group of
       panels stays in L1 while fewer row tiles than its size pays for take it from L2; meanwhile
       the kc lines of the two panels at pf and pf + pstride come into L2 */
    ptrdiff_t few_max_rows;
    int few_rows, few_panels;
    void (*tile_px_few)(ptrdiff_t kc, const float *xp, const float *b, ptrdiff_t pstride, const float *pf,
                        float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t cols);
    /* outputs of at most narrow_panels panels (0: none): narrow_rows rows of x in place at a time */
    int narrow_rows, narrow_panels;
    void (*narrow_tile)(ptrdiff_t kc, const float *x, ptrdiff_t rsx, ptrdiff_t csx, const float *b, ptrdiff_t pstride,
                        float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t cols);
    /* at most column_cols columns (0: none): column_rows rows (x at rsx, k contiguous) against every K
       block of one panel in column tiles (rows in the vector lanes), into c */
    int column_rows, column_cols;
    void (*column_group)(ptrdiff_t k, ptrdiff_t kcb, const float *x, ptrdiff_t rsx, const float *b, float *c,
                         ptrdiff_t ldc, ptrdiff_t n, float *xt);
    /* rows (< mr, or any up to mr for few columns) of x in place against panels [0, np) */
    void (*row_tile)(int rows, ptrdiff_t kc, const float *x, ptrdiff_t rsx, ptrdiff_t csx, const float *b,
                     ptrdiff_t pstride, float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t n);
} gemm_path;

/* Rows per block of x for n columns in the packed path: about c_block_bytes of output per
   block, a multiple of mr from 2 mr to mc. Each K block of panels then serves fewer rows before
   the next (it is read again from L3 per block), but the block's packed x and output stay close
   to the core: at 1024 columns and several K blocks, 12 rows per block ran at 77-83 GFLOP/s on
   one core against 65-79 for 144 (AVX2, the same product, measured alternately in one C
   harness). The per-call K-block path keeps mc, to use each block of weights it has just packed
   for as many rows as it can. Row blocks change no result: each element is one FMA chain per
   K block. */
static ptrdiff_t row_block(const gemm_path *g, ptrdiff_t n)
{
    const ptrdiff_t r = (ptrdiff_t)(g->c_block_bytes / (sizeof(float) * (size_t)(n > 0 ? n : 1))) / g->mr * g->mr;
    return r < 2 * g->mr ? 2 * g->mr : r > g->mc ? g->mc : r;
}

/* The end of the row block from i0: mc rows (a multiple of mr), or all the rest when fewer than
   mr rows would be left, so the last few rows take their row tiles while the block's weights
   are near the core, not in a block of their own that streams all the weights again (32 x 512
   x 512 on avx512: blocks of 30 and 2 rows ran at 79 % of the FMA loop's cycles, one block of
   32 at 86 %). Whole tiles stay within mc rows: the packed x buffer holds mc rows. */
static ptrdiff_t block_end(const gemm_path *g, ptrdiff_t i0, ptrdiff_t mc, ptrdiff_t m)
{
    return m - i0 < mc + g->mr ? m : i0 + mc;
}

/* Rows [i0, i1) (whole tiles of at most mc rows, and fewer than mr more) of x against one K block [k0, k0 + kc) of packed panels b (panel
   p at b + p * pstride): x packed into xbuf for the whole row tiles, the last few rows as wide
   tiles over every panel. cold: the call's first row block against packed weights, which come
   from L3 or L2 for it (the path's few-rows tiles may run); later row blocks, and weights packed
   per call, find them in L2, where the 6-row tiles are as fast or faster (18-row last block of
   288 x 512 x 512 in 12 x 32 tiles: the product 3 % slower). */
static void block_tiles(const gemm_path *g, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t n,
                        const float *x, ptrdiff_t rsx, ptrdiff_t csx, const float *b, ptrdiff_t pstride, float *c,
                        ptrdiff_t ldc, float *xbuf, int cold)
{
    const ptrdiff_t np = (n + PANEL - 1) / PANEL, mr = g->mr, tp = g->tile_panels;
    const ptrdiff_t full = i0 + (i1 - i0) / mr * mr;          /* rows in whole tiles */
    g->pack_x(x + i0 * rsx + k0 * csx, rsx, csx, full - i0, kc, xbuf);
    if (cold && g->tile_px_few && full - i0 >= g->few_rows && full - i0 <= g->few_max_rows) {
        const ptrdiff_t fp = g->few_panels, fr = g->few_rows;
        for (ptrdiff_t p = 0; p < np; p += fp) {
            const ptrdiff_t cols = n - p * PANEL < fp * PANEL ? n - p * PANEL : fp * PANEL;
            /* the first tile brings the next group (or the first of the next K block) from L3
               while this one is multiplied: with few rows per group, a group's lines arriving
               when their turn comes stalled the tiles (the MLP's 2.6 MiB of weights per call at
               batch 32 do not fit the 2 MiB L2); the others prefetch their own group, in L1 */
            const float *bp = b + p * pstride, *next = p + fp < np ? b + (p + fp) * pstride : b + kc * PANEL;
            ptrdiff_t i = i0;
            for (; i + fr <= full; i += fr, next = bp)
                g->tile_px_few(kc, xbuf + (i - i0) * kc, bp, pstride, next, c + i * ldc + p * PANEL, ldc, k0 > 0, cols);
            for (; i < full; i += mr)
                g->tile_px(kc, xbuf + (i - i0) * kc, bp, pstride, c + i * ldc + p * PANEL, ldc, k0 > 0, cols);
        }
        if (full < i1)
            g->row_tile((int)(i1 - full), kc, x + full * rsx + k0 * csx, rsx, csx, b, pstride, c + full * ldc, ldc,
                        k0 > 0, n);
        return;
    }
    for (ptrdiff_t p = 0; p < np; p += tp) {
        const ptrdiff_t cols = n - p * PANEL < tp * PANEL ? n - p * PANEL : tp * PANEL;
        for (ptrdiff_t i = i0; i < full; i += mr)
            g->tile_px(kc, xbuf + (i - i0) * kc, b + p * pstride, pstride, c + i * ldc + p * PANEL, ldc, k0 > 0, cols);
    }
    if (full < i1)
        g->row_tile((int)(i1 - full), kc, x + full * rsx + k0 * csx, rsx, csx, b, pstride, c + full * ldc, ldc,
                    k0 > 0, n);
}

/* Few rows or few columns: all m rows against one K block, x read in place (packing it would
   cost more than it saves), each row tile sweeping all panels. */
static void block_direct(const gemm_path *g, ptrdiff_t m, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t n, const float *x,
                         ptrdiff_t rsx, ptrdiff_t csx, const float *b, ptrdiff_t pstride, float *c, ptrdiff_t ldc)
{
    ptrdiff_t i = 0;
    if (n <= g->narrow_panels * PANEL)
        for (; i + g->narrow_rows <= m; i += g->narrow_rows)
            g->narrow_tile(kc, x + i * rsx + k0 * csx, rsx, csx, b, pstride, c + i * ldc, ldc, k0 > 0, n);
    for (; i < m; i += g->mr)
        g->row_tile((int)(m - i < g->mr ? m - i : g->mr), kc, x + i * rsx + k0 * csx, rsx, csx, b, pstride,
                    c + i * ldc, ldc, k0 > 0, n);
}

/* The packed kernel's choice between the two, by the shape of the call (and the path). */
static int use_direct(const gemm_path *g, ptrdiff_t m, ptrdiff_t n)
{
    return g->x_in_place || m < g->mr || n <= 2 * PANEL;
}

static void gemm_packed(const gemm_path *g, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                        ptrdiff_t csx, const float *wp, float *c, ptrdiff_t ldc, float *xbuf)
{
    const ptrdiff_t kcb = k_block(k);
    if (use_direct(g, m, n)) {
        /* rows outermost: a block's x is read from memory once, in order, and its output stays
           in L1 across the K blocks (the panels, at most 2 x 16 columns, stay in L1 or L2) */
        float *xt = n <= g->column_cols && csx == 1 && m >= g->column_rows
                        ? aligned_alloc(64, (size_t)KC_MAX * (size_t)g->column_rows * sizeof(float)) : NULL;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += DIRECT_ROW_BLOCK) {
            const ptrdiff_t rows = m - i0 < DIRECT_ROW_BLOCK ? m - i0 : DIRECT_ROW_BLOCK;
            ptrdiff_t i = i0;
            if (xt)   /* (without it, the row tiles: the same bits) */
                for (; i + g->column_rows <= i0 + rows; i += g->column_rows)
                    g->column_group(k, kcb, x + i * rsx, rsx, wp, c + i * ldc, ldc, n, xt);
            for (ptrdiff_t k0 = 0; k0 < k && i < i0 + rows; k0 += kcb)
                block_direct(g, i0 + rows - i, k0, k - k0 < kcb ? k - k0 : kcb, n, x + i * rsx, rsx, csx,
                             wp + k0 * PANEL, k * PANEL, c + i * ldc, ldc);
        }
        free(xt);
        return;
    }
    const size_t wbytes = (size_t)fd_pack_f32_size(k, n) * sizeof(float);
    if (wbytes > g->k_outer_bytes && !(m >= g->rows_outer_min_rows && wbytes <= g->rows_outer_max_bytes)) {
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb)
            for (ptrdiff_t i0 = 0; i0 < m; i0 = block_end(g, i0, g->mc, m))
                block_tiles(g, i0, block_end(g, i0, g->mc, m), k0, k - k0 < kcb ? k - k0 : kcb, n, x, rsx, csx,
                            wp + k0 * PANEL, k * PANEL, c, ldc, xbuf, i0 == 0);
        return;
    }
    const ptrdiff_t mc = row_block(g, n);
    for (ptrdiff_t i0 = 0; i0 < m; i0 = block_end(g, i0, mc, m))
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb)
            block_tiles(g, i0, block_end(g, i0, mc, m), k0, k - k0 < kcb ? k - k0 : kcb, n, x, rsx, csx,
                        wp + k0 * PANEL, k * PANEL, c, ldc, xbuf, i0 == 0);
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

#if FD_X86_DISPATCH
#define FD_HAVE_PACKED 1
#include <immintrin.h>

FD_TARGET_BEGIN_AVX2

/* c[0:8] = v, or c[0:8] += v. */
static inline __attribute__((always_inline)) void store_ymm(int accumulate, float *c, __m256 v)
{
    if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
    _mm256_storeu_ps(c, v);
}

/* tile_avx2_RxP: C[R rows x P*16 columns] (+)= x[R rows, kc] @ P panels, `cols` of them valid;
   each output element is one FMA chain in k order. Entry points row_tile_avx2, tile_px_avx2. */
#include "fd_gemm_tiles_avx2.h"

/* x[rows, 0:kc] -> dst as row tiles of 6 (rows is a multiple of 6):
   dst[t * kc * 6 + kk * 6 + r], so a tile's 6 values at one k sit in one cache line.
   Rows stored contiguously go 8 values at a time through an 8 x 8 transpose (two rows of
   zeros), each column stored as 8 floats whose last 2 the next column overwrites: dst needs
   2 floats of slack past its end. */
static void pack_x6(const float *x, ptrdiff_t rsx, ptrdiff_t csx, ptrdiff_t rows, ptrdiff_t kc, float *dst)
{
    enum { MR = 6 };
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
    const ptrdiff_t full = n / PANEL, np = (n + PANEL - 1) / PANEL;
    for (ptrdiff_t kk = 0; kk < kc; kk++) {
        const float *src = w + kk * ldw;
        float *d = dst + kk * PANEL;
        for (ptrdiff_t p = 0; p < full; p++) {
            _mm256_storeu_ps(d + p * pstride, _mm256_loadu_ps(src + p * PANEL));
            _mm256_storeu_ps(d + p * pstride + 8, _mm256_loadu_ps(src + p * PANEL + 8));
        }
        if (full < np) {
            float *e = d + full * pstride;
            const ptrdiff_t cols = n - full * PANEL;
            memcpy(e, src + full * PANEL, (size_t)cols * sizeof(float));
            memset(e + cols, 0, (size_t)(PANEL - cols) * sizeof(float));
        }
    }
}

/* The direct kernel (2-5 rows, plain weights), 8 floats per vector: direct_rows_R_avx2 */
#define DIRECT_COLS FD_AVX2_DIRECT_COLS
#define KG FD_AVX2_DIRECT_KG
#define FD_DSFX avx2
#define FD_DVEC __m256
#define FD_DLANES 8
#define FD_DLOAD _mm256_load_ps
#define FD_DLOADU _mm256_loadu_ps
#define FD_DSTORE _mm256_store_ps
#define FD_DBCAST _mm256_broadcast_ss
#define FD_DFMA _mm256_fmadd_ps
#include "fd_gemm_direct.h"   /* undefines its FD_D* parameters */


FD_TARGET_END

FD_TARGET_BEGIN_AVX512

/* c[0:16] = v, or c[0:16] += v. */
static inline __attribute__((always_inline)) void store_zmm(int accumulate, float *c, __m512 v)
{
    if (accumulate) v = _mm512_add_ps(_mm512_loadu_ps(c), v);
    _mm512_storeu_ps(c, v);
}

/* The first `cols` (any number; none when <= 0) of c[0:16] = v, or += v: masked, never
   touching a float past them. */
static inline __attribute__((always_inline)) void store_zmm_part(int accumulate, float *c, __m512 v, ptrdiff_t cols)
{
    if (cols <= 0) return;
    const __mmask16 mask = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
    if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, c), v);
    _mm512_mask_storeu_ps(c, mask, v);
}

/* the same for 16-float vectors: row_tile_avx512, tile_px_avx512 */
#include "fd_gemm_tiles_avx512.h"

/* r[0..15] (16 x 16 floats) transposed in place: r[i][j] <- r[j][i] */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {   /* 2 x 2 blocks of the 128-bit lanes' elements */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {   /* 4 x 4 blocks within each 128-bit lane */
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {       /* then the 128-bit lanes: 4 x 4 of them */
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}

/* 32 rows of x (k contiguous, rows rsx apart) against every K block of one packed panel b in
   column tiles: each K block of x packed transposed (xt[kk * 32 + r], 32 KiB), the chains' sums
   added up per K block in ct as the row tiles add them in c (same order, same bits), then ct
   transposed into c once (xt: KC_MAX x 32 floats, 64-byte aligned). For outputs of at most
   column_cols columns, where a row tile uses at most half of a vector's lanes and broadcasts one
   x per FMA; from about 10 columns the transposes cost what the full lanes gain (docs/gemm.md). */
static void column_group_avx512(ptrdiff_t k, ptrdiff_t kcb, const float *x, ptrdiff_t rsx, const float *b, float *c,
                                ptrdiff_t ldc, ptrdiff_t n, float *xt)
{
    enum { ROWS = 32 };
    _Alignas(64) float ct[2 * PANEL * 16] = {0};
    for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb) {
        const ptrdiff_t kc = k - k0 < kcb ? k - k0 : kcb;
        ptrdiff_t kk = 0;
        for (; kk + 16 <= kc; kk += 16)
            for (int half = 0; half < 2; half++) {
                __m512 r[16];
                for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(x + (half * 16 + i) * rsx + k0 + kk);
                transpose16(r);
                for (int i = 0; i < 16; i++) _mm512_store_ps(xt + (kk + i) * ROWS + half * 16, r[i]);
            }
        for (; kk < kc; kk++)
            for (int i = 0; i < ROWS; i++) xt[kk * ROWS + i] = x[i * rsx + k0 + kk];
        column_tile_avx512(n, kc, xt, b + k0 * PANEL, ct, k0 > 0);
    }
    const __mmask16 mask = (__mmask16)((1u << n) - 1);
    for (int half = 0; half < 2; half++) {
        __m512 r[16];
        for (int j = 0; j < 16; j++) r[j] = _mm512_load_ps(ct + (half * PANEL + j) * 16);
        transpose16(r);
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(c + (half * 16 + i) * ldc, mask, r[i]);
    }
}

/* the direct kernel, 16 floats per vector: direct_rows_R_avx512 */
#define FD_DSFX avx512
#define FD_DVEC __m512
#define FD_DLANES 16
#define FD_DLOAD _mm512_load_ps
#define FD_DLOADU _mm512_loadu_ps
#define FD_DSTORE _mm512_store_ps
#define FD_DBCAST(p) _mm512_set1_ps(*(p))
#define FD_DFMA _mm512_fmadd_ps
#include "fd_gemm_direct.h"   /* undefines its FD_D* parameters */

FD_TARGET_END

static const gemm_path path_avx2 = {
    .name = "avx2 6x16", .mr = FD_AVX2_MR, .tile_panels = 1, .mc = FD_AVX2_MC,
    .c_block_bytes = FD_AVX2_C_BLOCK_BYTES, .k_outer_bytes = FD_AVX2_K_OUTER_BYTES,
    .pack_x = pack_x6, .tile_px = tile_px_avx2, .row_tile = row_tile_avx2};
_Static_assert(FD_AVX512_MR == FD_AVX2_MR, "the AVX-512 tiles take x as pack_x6 packs it");
/* The AVX-512 path's fields; IN_PLACE: x_in_place and the name. */
#define PATH_AVX512(NAME, IN_PLACE)                                                                            \
    {.name = NAME, .x_in_place = IN_PLACE, .mr = FD_AVX512_MR, .tile_panels = 4, .mc = FD_AVX512_MC,          \
     .c_block_bytes = FD_AVX512_C_BLOCK_BYTES, .k_outer_bytes = FD_AVX512_K_OUTER_BYTES,                      \
     .rows_outer_min_rows = FD_AVX512_ROWS_OUTER_MIN_ROWS, .rows_outer_max_bytes = FD_AVX512_ROWS_OUTER_MAX_BYTES, \
     .few_max_rows = FD_AVX512_FEW_MAX_ROWS, .few_rows = 12, .few_panels = 2, .tile_px_few = tile_px_few_avx512, \
     .narrow_rows = 12, .narrow_panels = 2, .narrow_tile = narrow_tile_avx512,                                \
     .column_rows = 32, .column_cols = 8, .column_group = column_group_avx512,                                \
     .pack_x = pack_x6, .tile_px = tile_px_avx512, .row_tile = row_tile_avx512}
static const gemm_path path_avx512 = PATH_AVX512("avx512 6x64", 0);
/* AMD Zen 4: the same tiles with x read in place at every shape. Packing x cost more than the
   packed tiles saved there (one thread, paired in alternate processes: the MLP 1.5 % faster at
   256 rows and 2.4 % at 4096; on two threads 1.3 and 1.5 %), while the AVX2 path on the same
   CPU gained nothing (0.6 % slower); Intel was not measured. Same tiles, same K blocks: the
   same bits. */
static const gemm_path path_avx512_x_in_place = PATH_AVX512("avx512 6x64 x-in-place", 1);
#undef PATH_AVX512

#elif defined(__aarch64__) && defined(__ARM_NEON)
#define FD_HAVE_PACKED 1
#include <arm_neon.h>

/* a + x * b rounded once, as the x86 FMAs: the same bits on every path */
static inline float32x4_t neon_fma(float32x4_t x, float32x4_t b, float32x4_t a) { return vfmaq_f32(a, x, b); }

/* c[0:4] = v, or c[0:4] += v. */
static inline void store_q(int accumulate, float *c, float32x4_t v)
{
    if (accumulate) v = vaddq_f32(vld1q_f32(c), v);
    vst1q_f32(c, v);
}

#include "fd_gemm_tiles_neon.h"

/* x[rows, 0:kc] -> dst as row tiles of 6: dst[t * kc * 6 + kk * 6 + r] (plain loops: a small
   part of the work, and the compiler vectorizes the contiguous case). */
static void pack_x_neon(const float *x, ptrdiff_t rsx, ptrdiff_t csx, ptrdiff_t rows, ptrdiff_t kc, float *dst)
{
    for (ptrdiff_t i = 0; i < rows; i += FD_NEON_MR, dst += kc * FD_NEON_MR)
        for (ptrdiff_t kk = 0; kk < kc; kk++)
            for (int r = 0; r < FD_NEON_MR; r++) dst[kk * FD_NEON_MR + r] = x[(i + r) * rsx + kk * csx];
}

/* fd_pack_f32's layout for a row-major block of kc rows x n columns, row by row. */
static void pack_w_rows(const float *w, ptrdiff_t ldw, ptrdiff_t kc, ptrdiff_t n, float *dst, ptrdiff_t pstride)
{
    const ptrdiff_t np = (n + PANEL - 1) / PANEL;
    for (ptrdiff_t kk = 0; kk < kc; kk++)
        for (ptrdiff_t p = 0; p < np; p++) {
            const ptrdiff_t cols = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
            float *d = dst + kk * PANEL + p * pstride;
            memcpy(d, w + kk * ldw + p * PANEL, (size_t)cols * sizeof(float));
            memset(d + cols, 0, (size_t)(PANEL - cols) * sizeof(float));
        }
}

static const gemm_path path_neon = {
    .name = "neon 6x16", .mr = FD_NEON_MR, .tile_panels = 1, .mc = FD_NEON_MC,
    .c_block_bytes = FD_NEON_C_BLOCK_BYTES, .k_outer_bytes = FD_NEON_K_OUTER_BYTES,
    .pack_x = pack_x_neon, .tile_px = tile_px_neon, .row_tile = row_tile_neon};
#else
#define FD_HAVE_PACKED 0
#endif

/* The path this process runs, or NULL (BLAS). AVX-512 wherever the CPU has it: on Intel (two
   512-bit FMA ports from Skylake-SP on) it has twice the AVX2 peak; on AMD Zen 4, which runs
   a 512-bit FMA as two 256-bit halves, the peak is the same (117 GFLOP/s a core both ways) but
   the 6x64 tile needs fewer loads and instructions per FMA: measured there 1-3 points closer
   to the peak and the MLP 1-4 % faster than on AVX2 (docs/cpu-paths.md). */
static const gemm_path *the_path(void)
{
#if FD_X86_DISPATCH
    const int level = fd_cpu_level();
    if (level >= 2) return fd_cpu_vendor_id() == FD_CPU_VENDOR_AMD ? &path_avx512_x_in_place : &path_avx512;
    return level >= 1 ? &path_avx2 : NULL;
#elif FD_HAVE_PACKED
    return fd_cpu_has(FD_CPU_NEON) ? &path_neon : NULL;
#else
    return NULL;
#endif
}

/* The same product for plain weights, in slices of KB_COLS columns, each packed one K block
   at a time into wbuf (kc x KB_COLS: 1 MiB, in L3), which every row then uses before the next
   block; x is packed once per block of rows and K block of a slice, as in the packed path.
   Same K blocks, same tiles: the bits of the packed path. */
#if FD_HAVE_PACKED
static void gemm_kblocks(const gemm_path *g, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                         ptrdiff_t csx, const float *w, ptrdiff_t ldw, int colmajor, float *c, ptrdiff_t ldc,
                         float *xbuf, float *wbuf)
{
    const ptrdiff_t kcb = k_block(k);
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FD_AVX2_KB_COLS) {
        const ptrdiff_t cols = n - j0 < FD_AVX2_KB_COLS ? n - j0 : FD_AVX2_KB_COLS;
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb) {
            const ptrdiff_t kc = k - k0 < kcb ? k - k0 : kcb;
            const ptrdiff_t pstride = colmajor ? kc * PANEL : kc * PANEL + FD_AVX2_WBUF_PAD;
            if (colmajor) fd_pack_f32(w + k0 + j0 * ldw, ldw, 1, kc, cols, wbuf);
            else pack_w_rows(w + k0 * ldw + j0, ldw, kc, cols, wbuf, pstride);
            if (use_direct(g, m, cols))
                block_direct(g, m, k0, kc, cols, x, rsx, csx, wbuf, pstride, c + j0, ldc);
            else
                for (ptrdiff_t i0 = 0; i0 < m; i0 = block_end(g, i0, g->mc, m))
                    block_tiles(g, i0, block_end(g, i0, g->mc, m), k0, kc, cols, x, rsx, csx, wbuf, pstride,
                                c + j0, ldc, xbuf, 0);
        }
    }
}
#endif

/* The direct kernel on the path's vector width (fd_gemm_direct.h). */
int fd_gemm_direct_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                       ptrdiff_t csx, const float *w, ptrdiff_t ldw, float *c, ptrdiff_t ldc)
{
#if !FD_X86_DISPATCH   /* NEON: no direct kernel of its own yet; the K-block path, same bits */
    if (m > FD_DIRECT_MAX_ROWS) return -1;
    return fd_gemm_kblocks_f32(m, n, k, x, rsx, csx, w, ldw, 0, c, ldc);
#elif FD_HAVE_PACKED
    if (m <= 0 || n <= 0) return 0;
    if (m > FD_DIRECT_MAX_ROWS) return -1;
    const gemm_path *g = the_path();
    const int wide = g == &path_avx512 || g == &path_avx512_x_in_place;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += DIRECT_COLS) {
        const ptrdiff_t cols = n - j0 < DIRECT_COLS ? n - j0 : DIRECT_COLS;
#define FD_DIRECT_CASE(R)                                                                     \
    (wide ? direct_rows_##R##_avx512 : direct_rows_##R##_avx2)(cols, k, x, rsx, csx, w + j0, ldw, \
                                                               c + j0, ldc)
        switch (m) {
        case 1: FD_DIRECT_CASE(1); break;
        case 2: FD_DIRECT_CASE(2); break;
        case 3: FD_DIRECT_CASE(3); break;
        case 4: FD_DIRECT_CASE(4); break;
        default: FD_DIRECT_CASE(5); break;
        }
#undef FD_DIRECT_CASE
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
    pack_w_rows(w + r0 * ldw, ldw, r1 - r0, n, dst + r0 * PANEL, k * PANEL);
#else
    (void)w; (void)ldw; (void)k; (void)n; (void)r0; (void)r1; (void)dst;
#endif
}

/* Packed x for the row blocks of an m-row call: mc x kc floats + pack_x's slack. */
static float *alloc_xbuf(const gemm_path *g, ptrdiff_t m, ptrdiff_t kcb)
{
    const ptrdiff_t mc = m < g->mc ? (m + g->mr - 1) / g->mr * g->mr : g->mc;
    return malloc(((size_t)mc * (size_t)kcb + 8) * sizeof(float));
}

int fd_gemm_kblocks_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                        ptrdiff_t csx, const float *w, ptrdiff_t ldw, int colmajor, float *c, ptrdiff_t ldc)
{
#if FD_HAVE_PACKED
    const gemm_path *g = the_path();
    if (!g) return -1;
    if (m <= 0 || n <= 0) return 0;
    if (k == 0) {
        for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return 0;
    }
    const ptrdiff_t kcb = k_block(k);
    float *xbuf = alloc_xbuf(g, m, kcb);
    if (!xbuf) return -1;
    /* Many rows against several K blocks of row-major weights: packing one K block at a time
       would make every row's output go out to memory and back once per K block, so the
       weights are packed whole (at most FULL_PACK_MAX_BYTES; from 512 rows packing is about
       1 % of the work) and the packed path runs, its output block kept in L2 across K blocks. */
    float *whole = colmajor ? NULL : fd_whole_pack_buffer(m, k, n);
    if (whole) {
        for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb)
            pack_w_rows(w + k0 * ldw, ldw, k - k0 < kcb ? k - k0 : kcb, n, whole + k0 * PANEL, k * PANEL);
        gemm_packed(g, m, n, k, x, rsx, csx, whole, c, ldc, xbuf);
        free(xbuf);
        return 0;
    }
    const ptrdiff_t slice = n < FD_AVX2_KB_COLS ? n : FD_AVX2_KB_COLS;
    const size_t wfloats = (size_t)fd_pack_f32_size(kcb, slice) + (size_t)(slice + PANEL - 1) / PANEL * FD_AVX2_WBUF_PAD;
    float *wbuf = aligned_alloc(64, wfloats * sizeof(float) / 64 * 64 + 64);
    if (!wbuf) { free(xbuf); return -1; }
    gemm_kblocks(g, m, n, k, x, rsx, csx, w, ldw, colmajor, c, ldc, xbuf, wbuf);
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
    return the_path() != NULL;
}

const char *fd_gemm_kernel_name(void)
{
    const gemm_path *g = the_path();
    if (!g) return "BLAS (no AVX2 + FMA, or FASTDENSE_CPU_PATH=baseline)";
#if FD_X86_DISPATCH
    if (g == &path_avx512_x_in_place)
        return "avx512 6x64 (AMD Zen 4: 512-bit FMAs at the AVX2 rate, fewer instructions: 1-4 % faster than avx2 "
               "measured; x read in place, as packing it cost more than it saved)";
    if (g == &path_avx512)
        return "avx512 6x64 (512-bit FMAs: 1.5-1.8x the avx2 kernel measured on Sapphire Rapids)";
    return "avx2 6x16 (no AVX-512, or FASTDENSE_CPU_PATH=avx2)";
#else
    return g->name;
#endif
}

int fd_gemm_packed_f32(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x, ptrdiff_t rsx,
                       ptrdiff_t csx, const float *wp, float *c, ptrdiff_t ldc)
{
    const gemm_path *g = the_path();
    if (!g) return -1;
    if (m <= 0 || n <= 0) return 0;
    if (k == 0) {
        for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return 0;
    }
    if (use_direct(g, m, n)) {
        gemm_packed(g, m, n, k, x, rsx, csx, wp, c, ldc, NULL);
        return 0;
    }
    float *xbuf = alloc_xbuf(g, m, k_block(k));
    if (!xbuf) return -1;
    gemm_packed(g, m, n, k, x, rsx, csx, wp, c, ldc, xbuf);
    free(xbuf);
    return 0;
}
