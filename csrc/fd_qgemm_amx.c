/* fd_qgemm_amx.c -- the int8 Dense kernel on AMX tiles (see fd_qgemm_amx.h).
 *
 * Blocks of up to 32 rows: the block's rows are quantized (the caller's row quantizer, no
 * shift) into a buffer with k rounded up to 64, zero padded, so a 16-row x 64-byte A tile
 * covers one 64-deep k step of 16 rows.  Against each pair of panels (32 columns) the block
 * runs 2 x 2 int32 C tiles (16 x 16 each): per k step 2 A tiles, 2 B tiles (16 rows of the
 * packed panel: 16 columns x 4 k each) and 4 TDPBSSD.  The C tiles go to a small int32 buffer,
 * are de-scaled with AVX-512 into c exactly as the VNNI path does (float(acc) / (ks * s), so
 * the same bits) during the next pair's k steps, and the float32 epilogue runs on the block.
 * Tile numbers: C 0-3, A 4-5, B 6-7, all 64 bytes wide.
 *
 * The last k step may take rows of a B tile beyond ceil(k / 4) (the next panel's, or the
 * FD_QAMX_OVERREAD zeros after the last panel); they meet the quantized rows' zero padding,
 * so each adds 0 * w, which is exactly 0.  The last block's A and C tiles are configured
 * with just its rows.
 */
#include "fd_qgemm_amx.h"

#include "fd_status.h"

#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define FD_QAMX 1
#include <immintrin.h>
#else
#define FD_QAMX 0
#endif

#if FD_QAMX

#define T_AMX __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,amx-tile,amx-int8")))
#define AI static inline __attribute__((always_inline))

#define BLOCK_ROWS 32   /* rows per block: two A tiles */
#define KSTEP 64        /* k per TDPBSSD: one A tile row */

/* ldtilecfg's 64-byte operand, palette 1. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Configure the tiles for a block of mr rows: every tile 64 bytes wide; B tiles (6, 7) 16
   rows; the first row tile's C (0, 1) and A (4) min(mr, 16) rows, the second's (2, 3, 5) the
   rest.  Fewer rows than 16 cost the tile unit less and read no rows past m. */
T_AMX static void amx_configure(int mr)
{
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    const int top = mr < 16 ? mr : 16, bottom = mr > 16 ? mr - 16 : 1;
    const int rows[8] = {top, top, bottom, bottom, top, bottom, 16, 16};
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = (uint8_t)rows[t];
    }
    __asm__ volatile("" ::: "memory");   /* gcc's ldtilecfg asm names only 8 of the 64 bytes it reads */
    _tile_loadconfig(&cfg);
}

int fd_q8_amx_built(void) { return 1; }

ptrdiff_t fd_q8_amx_rows(ptrdiff_t m, ptrdiff_t k, ptrdiff_t n)
{
    const ptrdiff_t least = k * n < FD_QAMX_SMALL ? FD_QAMX_MIN_ROWS_SMALL : FD_QAMX_MIN_ROWS;
    const ptrdiff_t tail = m % 16 < least ? m % 16 : 0;
    return m < least ? 0 : m - tail;
}

/* One pair of panels' sums in a 32 x 32 int32 buffer, waiting to be stored into c. */
typedef struct {
    const int32_t *cb;   /* NULL: nothing waiting */
    int mr;              /* rows */
    ptrdiff_t ncols;     /* columns (<= 32) */
    const float *ks;     /* kernel_scale of those columns */
    const float *is;     /* the rows' input scales */
    void *c;             /* where column 0 of row 0 goes */
    ptrdiff_t ldc;
    int f32out;          /* de-scaled floats, else the int32 sums */
} amx_out;

/* Rows [r0, r1) of o into c: float(acc) / (ks * is), the VNNI path's instructions, or int32. */
T_AMX static void amx_store(const amx_out *o, int r0, int r1)
{
    for (int h = 0; h < 2 && 16 * h < o->ncols; h++) {
        ptrdiff_t left = o->ncols - 16 * h;
        __mmask16 msk = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 kv = _mm512_loadu_ps(o->ks + 16 * h);
        for (int r = r0; r < r1; r++) {
            __m512i v = _mm512_loadu_si512((const void *)(o->cb + r * BLOCK_ROWS + 16 * h));
            if (o->f32out) {
                __m512 f = _mm512_div_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(kv, _mm512_set1_ps(o->is[r])));
                _mm512_mask_storeu_ps((float *)o->c + r * o->ldc + 16 * h, msk, f);
            } else {
                _mm512_mask_storeu_epi32((int32_t *)o->c + r * o->ldc + 16 * h, msk, v);
            }
        }
    }
}

/* MT row tiles x NT column tiles of int32 sums over every k step, into cb (32 x 32 int32).
   The previous pair's stores (divisions, mostly) are spread over the k steps, so they run
   while the tile unit works. */
T_AMX AI void amx_block(const int MT, const int NT, ptrdiff_t steps, const int8_t *a, ptrdiff_t lda,
                        const int8_t *b0, const int8_t *b1, int32_t *cb, const amx_out *prev)
{
    _tile_zero(0);
    if (NT > 1) _tile_zero(1);
    if (MT > 1) _tile_zero(2);
    if (MT > 1 && NT > 1) _tile_zero(3);
    for (ptrdiff_t s = 0; s < steps; s++) {
        _tile_loadd(6, b0 + s * 16 * 64, 64);
        _tile_loadd(4, a + s * KSTEP, lda);
        _tile_dpbssd(0, 4, 6);
        if (NT > 1) {
            _tile_loadd(7, b1 + s * 16 * 64, 64);
            _tile_dpbssd(1, 4, 7);
        }
        if (MT > 1) {
            _tile_loadd(5, a + 16 * lda + s * KSTEP, lda);
            _tile_dpbssd(2, 5, 6);
            if (NT > 1) _tile_dpbssd(3, 5, 7);
        }
        if (prev->cb) amx_store(prev, (int)(s * prev->mr / steps), (int)((s + 1) * prev->mr / steps));
    }
    const ptrdiff_t ldb = BLOCK_ROWS * 4;   /* bytes per cb row */
    _tile_stored(0, cb, ldb);
    if (NT > 1) _tile_stored(1, cb + 16, ldb);
    if (MT > 1) _tile_stored(2, cb + 16 * BLOCK_ROWS, ldb);
    if (MT > 1 && NT > 1) _tile_stored(3, cb + 16 * BLOCK_ROWS + 16, ldb);
}

T_AMX static void amx_rows(const fd_qweights *w, int mr, ptrdiff_t steps, const int8_t *a, ptrdiff_t lda,
                           const float *is, void *c, ptrdiff_t ldc, int f32out)
{
    ptrdiff_t panels = (w->n + FD_QPANEL - 1) / FD_QPANEL, pstride = (w->k + 3) / 4 * 64;
    int32_t cb[2][BLOCK_ROWS * BLOCK_ROWS] __attribute__((aligned(64)));   /* this pair's, the last's */
    amx_out prev = {NULL, mr, 0, NULL, is, NULL, ldc, f32out};
    const int mt = mr > 16 ? 2 : 1;
    for (ptrdiff_t p = 0; p < panels; p += 2) {
        const int8_t *b0 = (const int8_t *)w->w + p * pstride;
        int32_t *cur = cb[(p / 2) % 2];
        const int nt = panels - p > 1 ? 2 : 1;
        if (mt == 2 && nt == 2) amx_block(2, 2, steps, a, lda, b0, b0 + pstride, cur, &prev);
        else if (mt == 2) amx_block(2, 1, steps, a, lda, b0, NULL, cur, &prev);
        else if (nt == 2) amx_block(1, 2, steps, a, lda, b0, b0 + pstride, cur, &prev);
        else amx_block(1, 1, steps, a, lda, b0, NULL, cur, &prev);
        ptrdiff_t j0 = p * FD_QPANEL;
        prev.cb = cur;
        prev.ncols = w->n - j0 < 32 ? w->n - j0 : 32;
        prev.ks = w->scale + j0;
        prev.c = f32out ? (void *)((float *)c + j0) : (void *)((int32_t *)c + j0);
    }
    amx_store(&prev, 0, mr);
}

T_AMX int fd_q8_amx(const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, fd_q8_row_fn row,
                    const int8_t *q, ptrdiff_t ldq, const fd_act *act, const float *bias, void *c, ptrdiff_t ldc)
{
    const ptrdiff_t lda = (w->k + KSTEP - 1) / KSTEP * KSTEP, steps = lda / KSTEP;
    int8_t *a = aligned_alloc(64, (size_t)(BLOCK_ROWS * lda));
    if (!a) return FD_ERR_NOMEM;
    for (ptrdiff_t i0 = 0; i0 < m; i0 += BLOCK_ROWS) {
        const int mr = m - i0 < BLOCK_ROWS ? (int)(m - i0) : BLOCK_ROWS;
        if (i0 == 0 || mr < BLOCK_ROWS) amx_configure(mr);   /* whole blocks, then the last */
        float is[BLOCK_ROWS];
        for (int r = 0; r < mr; r++) {
            if (x) {
                is[r] = row(w->k, x + (i0 + r) * ldx, (uint8_t *)(a + r * lda), lda, 0);
            } else {
                memcpy(a + r * lda, q + (i0 + r) * ldq, (size_t)w->k);
                memset(a + r * lda + w->k, 0, (size_t)(lda - w->k));   /* the quantizer pads too */
                is[r] = 1.0f;
            }
        }
        __asm__ volatile("" ::: "memory");   /* the tile loads read a (their asm names no memory) */
        if (x) {
            float *cs = (float *)c + i0 * ldc;
            amx_rows(w, mr, steps, a, lda, is, cs, ldc, 1);
            fd_epilogue_f32(act, bias, cs, ldc, cs, ldc, mr, w->n);
        } else {
            amx_rows(w, mr, steps, a, lda, is, (int32_t *)c + i0 * ldc, ldc, 0);
        }
    }
    _tile_release();
    free(a);
    return FD_OK;
}

#else

int fd_q8_amx_built(void) { return 0; }

ptrdiff_t fd_q8_amx_rows(ptrdiff_t m, ptrdiff_t k, ptrdiff_t n)
{
    (void)m, (void)k, (void)n;
    return 0;
}

int fd_q8_amx(const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, fd_q8_row_fn row,
              const int8_t *q, ptrdiff_t ldq, const fd_act *act, const float *bias, void *c, ptrdiff_t ldc)
{
    (void)w, (void)m, (void)x, (void)ldx, (void)row, (void)q, (void)ldq, (void)act, (void)bias, (void)c, (void)ldc;
    return FD_ERR_ARG;
}

#endif
