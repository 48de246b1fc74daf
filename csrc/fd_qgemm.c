/* fd_qgemm.c -- Keras 3 int8 Dense kernels on packed weights, and the path choice (see fd_qgemm.h;
 * int4: fd_q4gemm.c).
 *
 * int8: the layer works on strips of up to 12 rows: quantize the strip's rows into a small
 * buffer (the only pass over x), run the strip against every panel of 16 columns with the
 * int32 sums in registers, de-scale them in registers into c, then run the float32 epilogue
 * (bias + activation) on the strip while it is in L1.  The packed kernel holds, per panel,
 * ceil(k/4) groups of 16 columns x 4 consecutive k: one 32-bit lane per column, the operand
 * layout of vpdpbusd.  Tiles: AVX-512 12 rows x 2 panels (24 zmm sums, each weight load used
 * by 12 rows; 8 x 3, 6 x 4 ... for the strip's last rows), AVX-VNNI 6 rows x 1 panel, AVX2
 * 4 x 1 (16 ymm registers).  vpdpbusd multiplies u8 by s8, so the VNNI paths store each
 * quantized input plus 128 and subtract 128 * sum_kk w[kk, j] (comp, computed at pack time) at
 * the end: exact in int32 arithmetic, which wraps consistently.  The AVX2 path splits each
 * input into |q| (u8) and its sign and feeds vpmaddubsw |q| and w ^ sign (see q8_sign_split):
 * a pair sum is at most 2 * 127 * 128 and never saturates; vpmaddwd by ones then sums 4
 * products to int32.  A tile whose rows hold no negative q (inputs after a relu) skips the
 * xor: 3 vector operations per 32 products instead of 4.
 */
#include "fd_qgemm.h"

#include "fd_cpu.h"
#include "fd_qgemm_amx.h"
#include "fd_qsimd.h"
#include "fd_status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QROWS 12                 /* rows per strip: quantized together, then run against every panel */
#define QSTACK (32 * 1024)       /* quantized-strip bytes kept on the stack */
#define Q_LA_PERIOD 4            /* k-quads per line of the next strip's x prefetched by the AVX-512 tiles */


/* ---------------------------------------------------------------- packing */

ptrdiff_t fd_q8_packed_size(ptrdiff_t k, ptrdiff_t n) { return q_panels(n) * ((k + 3) / 4) * 64 + FD_QAMX_OVERREAD; }

void fd_q8_pack(const int8_t *w, ptrdiff_t ldw, ptrdiff_t k, ptrdiff_t n, const float *kernel_scale,
                int8_t *wp, int32_t *comp, float *scale_out)
{
    ptrdiff_t k4 = (k + 3) / 4, panels = q_panels(n);
    memset(wp, 0, (size_t)fd_q8_packed_size(k, n));
    for (ptrdiff_t j = 0; j < panels * FD_QPANEL; j++) {
        comp[j] = 0;
        scale_out[j] = j < n ? kernel_scale[j] : 1.0f;
    }
    for (ptrdiff_t kk = 0; kk < k; kk++)
        for (ptrdiff_t j = 0; j < n; j++) {
            ptrdiff_t p = j / FD_QPANEL, col = j % FD_QPANEL;
            wp[((p * k4 + kk / 4) * FD_QPANEL + col) * 4 + kk % 4] = w[kk * ldw + j];
            comp[j] += 128 * (int32_t)w[kk * ldw + j];
        }
}

ptrdiff_t fd_q8_nibbles_size(ptrdiff_t k, ptrdiff_t n)
{
    return q_panels(n) * ((k + 7) / 8) * 64;
}

void fd_q8_pack_nibbles(const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, uint8_t *w4)
{
    const ptrdiff_t k8 = (k + 7) / 8;
    memset(w4, 0, (size_t)fd_q8_nibbles_size(k, n));
    for (ptrdiff_t j = 0; j < n; j++)
        for (ptrdiff_t kk = 0; kk < k; kk++) {
            const ptrdiff_t p = j / FD_QPANEL, col = j % FD_QPANEL, t = kk / 8, b = kk % 4;
            const uint8_t u = (uint8_t)(q[kk * ldq + j] + 8);
            w4[(p * k8 + t) * 64 + 4 * col + b] |= (uint8_t)(kk % 8 < 4 ? u : u << 4);
        }
}

fd_qweights fd_qweights_panels(const fd_qweights *w, ptrdiff_t p0, ptrdiff_t p1)
{
    fd_qweights v = *w;
    ptrdiff_t end = p1 * FD_QPANEL < w->n ? p1 * FD_QPANEL : w->n;
    v.n = end - p0 * FD_QPANEL;
    if (w->bits == 8) {
        v.w = (const int8_t *)w->w + p0 * ((w->k + 3) / 4) * 64;
        v.comp = w->comp + p0 * FD_QPANEL;
        v.scale = w->scale + p0 * FD_QPANEL;
        if (w->w4) v.w4 = w->w4 + p0 * ((w->k + 7) / 8) * 64;
    } else {
        fd_q4_panels_view(w, p0, &v);
    }
    return v;
}

/* ---------------------------------------------------------------- path choice */

int fd_qisa_supported(fd_qisa isa)
{
#if FD_Q_X86 && defined(__GNUC__)
    const int avx2 = fd_cpu_has(FD_CPU_AVX2) && fd_cpu_has(FD_CPU_FMA);
#endif
    switch (isa) {
    case FD_QISA_BASELINE: return 1;
#if FD_Q_X86 && defined(__GNUC__)
    case FD_QISA_AVX2: return avx2;
    case FD_QISA_AVX_VNNI: return avx2 && fd_cpu_has(FD_CPU_AVX_VNNI);
    case FD_QISA_AVX512_VNNI:
        return avx2 && fd_cpu_level() >= 2 && fd_cpu_has(FD_CPU_AVX512_VNNI);
    case FD_QISA_AMX:
        return fd_qisa_supported(FD_QISA_AVX512_VNNI) && fd_q8_amx_built() && fd_cpu_has(FD_CPU_AMX_TILE) &&
               fd_cpu_has(FD_CPU_AMX_INT8);
#endif
    default: return 0;
    }
}

/* The highest path FASTDENSE_QUANT_PATH (a fd_qisa_name) allows, read once: it lowers the
   quantized kernels alone, e.g. to time the AVX2 kernel on a CPU that also has AVX-VNNI. */
static int q_env_top(void)
{
    static int top = -1;
    int t = __atomic_load_n(&top, __ATOMIC_RELAXED);
    if (t < 0) {
        const char *want = getenv("FASTDENSE_QUANT_PATH");
        t = FD_QISA_COUNT - 1;
        for (int isa = 0; want != NULL && isa < FD_QISA_COUNT; isa++)
            if (strcmp(want, fd_qisa_name((fd_qisa)isa)) == 0) t = isa;
        __atomic_store_n(&top, t, __ATOMIC_RELAXED);
    }
    return t;
}

/* fd_cpu_has already drops what FASTDENSE_CPU_PATH forbids: avx2 keeps AVX-VNNI, baseline
   keeps nothing; FASTDENSE_QUANT_PATH may lower it further. */
fd_qisa fd_qgemm_isa(void)
{
    for (int isa = q_env_top(); isa > FD_QISA_BASELINE; isa--)
        if (fd_qisa_supported((fd_qisa)isa)) return (fd_qisa)isa;
    return FD_QISA_BASELINE;
}

const char *fd_qisa_name(fd_qisa isa)
{
    static const char *const names[FD_QISA_COUNT] = {"baseline", "avx2", "avx_vnni", "avx512_vnni", "amx"};
    return (unsigned)isa < FD_QISA_COUNT ? names[isa] : NULL;
}

/* ---------------------------------------------------------------- portable C */

/* Keras's scale for a row: 127 / (max|x| + 1e-7) in float32; NaN when the row holds NaN or inf
   (x * 0 is NaN exactly then), so its outputs come out NaN. */
static float q_row_scale(float amax, float nonfinite)
{
    return nonfinite == 0.0f ? 127.0f / (amax + 1e-7f) : NAN;
}

/* Quantize one row into dst (k4 * 4 bytes, padded with the quantized zero), + shift (0 or 128). */
static float q8_row_c(ptrdiff_t k, const float *x, uint8_t *dst, ptrdiff_t kpad, int shift)
{
    float amax = 0.0f, nonfinite = 0.0f;
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        float a = fabsf(x[kk]);
        amax = a > amax ? a : amax;
        nonfinite += x[kk] * 0.0f;
    }
    float s = q_row_scale(amax, nonfinite);
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        float v = x[kk] * s;
        v = v > -127.0f ? v : -127.0f;   /* NaN -> -127: defined; the row's scale is NaN anyway */
        v = v < 127.0f ? v : 127.0f;
        dst[kk] = (uint8_t)((int)nearbyintf(v) + shift);
    }
    for (ptrdiff_t kk = k; kk < kpad; kk++) dst[kk] = (uint8_t)shift;
    return s;
}

/* The rows of x the next strip will quantize, brought in a cache line at a time from inside the
   current strip's tiles (AVX512-VNNI), so that the row quantizer finds them close instead of
   waiting on memory at the start of every strip. One line every 4 k-quads keeps a few misses in
   flight at a time; the same lines prefetched in one burst before a strip (or before each
   quarter of its panels) stalled the core on the misses and made the int8 MLP at 4096 2.4-4.5 %
   slower, this 2.2-3.1 % faster (Zen 4, docs/quantization.md). */
typedef struct {
    const char *row;       /* the row of the next line */
    ptrdiff_t off;         /* the next line's byte offset in it */
    ptrdiff_t bytes;       /* bytes of a row */
    ptrdiff_t stride;      /* bytes from row to row */
    ptrdiff_t rows;        /* rows left to prefetch */
} q_lookahead;

static void q8_strip_c(int mr, const fd_qweights *w, const uint8_t *a, ptrdiff_t lda, const int32_t *fix,
                       const float *is, void *c, ptrdiff_t ldc, int f32out, q_lookahead *la)
{
    (void)la;
    (void)fix;
    ptrdiff_t k4 = (w->k + 3) / 4, panels = q_panels(w->n);
    const int8_t *wp = (const int8_t *)w->w;
    for (int r = 0; r < mr; r++) {
        const int8_t *ar = (const int8_t *)(a + r * lda);
        for (ptrdiff_t p = 0; p < panels; p++) {
            int32_t acc[FD_QPANEL] = {0};
            const int8_t *wg = wp + p * k4 * 64;
            for (ptrdiff_t g = 0; g < k4; g++, wg += 64)
                for (int col = 0; col < FD_QPANEL; col++)
                    for (int b = 0; b < 4; b++) acc[col] += (int32_t)ar[4 * g + b] * wg[4 * col + b];
            for (int col = 0; col < FD_QPANEL && p * FD_QPANEL + col < w->n; col++) {
                ptrdiff_t j = p * FD_QPANEL + col;
                if (f32out)
                    ((float *)c)[r * ldc + j] = (float)acc[col] / (w->scale[j] * is[r]);
                else
                    ((int32_t *)c)[r * ldc + j] = acc[col];
            }
        }
    }
}

#if FD_Q_X86 && defined(__GNUC__)


static int32_t load_i32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---------------------------------------------------------------- AVX-512 */

T_AVX512VNNI static float q8_row_512(ptrdiff_t k, const float *x, uint8_t *dst, ptrdiff_t kpad, int shift)
{
    /* |x| as integers orders like the floats, and NaN / inf (>= 0x7F800000) above them all;
       four running maxima, so the pass is not one chain of vpmaxsd */
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
    ptrdiff_t kk = 0;
    for (; kk + 64 <= k; kk += 64) {
        m0 = _mm512_max_epi32(m0, _mm512_and_si512(_mm512_loadu_si512(x + kk), abs_mask));
        m1 = _mm512_max_epi32(m1, _mm512_and_si512(_mm512_loadu_si512(x + kk + 16), abs_mask));
        m2 = _mm512_max_epi32(m2, _mm512_and_si512(_mm512_loadu_si512(x + kk + 32), abs_mask));
        m3 = _mm512_max_epi32(m3, _mm512_and_si512(_mm512_loadu_si512(x + kk + 48), abs_mask));
    }
    for (; kk < k; kk += 16) {
        __mmask16 m = k - kk >= 16 ? 0xFFFF : (__mmask16)((1u << (k - kk)) - 1);
        m0 = _mm512_max_epi32(m0, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + kk), abs_mask));
    }
    int32_t bits = _mm512_reduce_max_epi32(_mm512_max_epi32(_mm512_max_epi32(m0, m1), _mm512_max_epi32(m2, m3)));
    float amax;
    memcpy(&amax, &bits, 4);
    float s = q_row_scale(amax, bits >= 0x7F800000 ? 1.0f : 0.0f);
    /* |x * s| <= 127 (+ rounding) for a finite row: no clamp needed before rounding, and the
       saturating packs keep every value, so 64 at a time go out as bytes in one store (Zen 4:
       228 against 337 cycles a row of 784); a NaN row (every product NaN, INT_MIN) keeps the
       truncating stores below, whose bytes are the shift alone */
    const __m512 vs = _mm512_set1_ps(s);
#define Q8_ROUND_512(off) \
    _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + kk + (off)), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
    kk = 0;
    if (bits < 0x7F800000) {
        /* the packs interleave the four vectors' 128-bit lanes: dword 4 l + v is vector v's lane l */
        const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const __m512i bshift = _mm512_set1_epi8((char)shift);
        for (; kk + 64 <= k; kk += 64) {
            __m512i p = _mm512_packs_epi16(_mm512_packs_epi32(Q8_ROUND_512(0), Q8_ROUND_512(16)),
                                           _mm512_packs_epi32(Q8_ROUND_512(32), Q8_ROUND_512(48)));
            _mm512_storeu_si512(dst + kk, _mm512_add_epi8(_mm512_permutexvar_epi32(order, p), bshift));
        }
    }
#undef Q8_ROUND_512
    const __m512i vshift = _mm512_set1_epi32(shift);
    for (; kk < k; kk += 16) {
        __mmask16 m = k - kk >= 16 ? 0xFFFF : (__mmask16)((1u << (k - kk)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + kk), vs);
        __m512i q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_mask_cvtepi32_storeu_epi8(dst + kk, m, _mm512_add_epi32(q, vshift));
    }
    for (kk = k; kk < kpad; kk++) dst[kk] = (uint8_t)shift;
    return s;
}

/* acc += the 4-products of u8 a and s8 w.  In asm: gcc's register allocator, given the
   intrinsic's separate input and output, copies and spills the sums of a 24-register tile
   every step. */
T_AVX512VNNI AI void q_dpbusd_512(__m512i *acc, __m512i a, __m512i w)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(*acc) : "v"(a), "v"(w));
}

/* One line of the next strip's x (q_lookahead), if any is left. */
AI void q_lookahead_step(q_lookahead *la)
{
    if (la->rows <= 0) return;
    __builtin_prefetch(la->row + la->off, 0, 3);
    la->off += 64;
    if (la->off >= la->bytes) {
        la->off = 0;
        la->row += la->stride;
        la->rows--;
    }
}

/* MR rows x NP panels of int32 sums over the whole k.  The large tile, 12 rows x 2 panels,
   keeps 24 zmm sums: each weight load feeds 12 vpdpbusd and each input broadcast 2, so the
   weights stream from L2 at ~11 bytes a cycle, and 24 independent chains cover vpdpbusd's
   latency on its two ports. */
T_AVX512VNNI AI void q8_tile_512(const int MR, const int NP, ptrdiff_t k4, const uint8_t *a, ptrdiff_t lda,
                             const int8_t *wp, ptrdiff_t pstride, const int32_t *comp, const float *ks,
                             const float *is, void *c, ptrdiff_t ldc, ptrdiff_t ncols, int f32, q_lookahead *la)
{
    __m512i acc[24];
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) acc[r * NP + p] = _mm512_setzero_si512();
    ptrdiff_t g0 = 0;
    if (MR == 1 && NP <= 4) {
        /* one row against a few panels (a layer's last few columns, a narrow output layer): NP
           chains alone would wait on vpdpbusd's latency, so 8 / NP chains per panel take
           alternate k-quads; integer sums, so the same bits */
        const int CH = 8 / NP;
        __m512i part[8];
        for (int i = 0; i < 8; i++) part[i] = _mm512_setzero_si512();
        for (; g0 + CH <= k4; g0 += CH)
            for (int h = 0; h < CH; h++) {
                __m512i av = _mm512_set1_epi32(load_i32(a + 4 * (g0 + h)));
                for (int p = 0; p < NP; p++)
                    q_dpbusd_512(&part[p * CH + h], av,
                                 _mm512_loadu_si512((const void *)(wp + p * pstride + (g0 + h) * 64)));
            }
        for (int p = 0; p < NP; p++)
            for (int h = 0; h < CH; h++) acc[p] = _mm512_add_epi32(acc[p], part[p * CH + h]);
    }
#pragma GCC unroll 2
    for (ptrdiff_t g = g0; g < k4; g++) {
        if (la && g % Q_LA_PERIOD == 0) q_lookahead_step(la);
        __m512i wv[8];
        for (int p = 0; p < NP; p++) wv[p] = _mm512_loadu_si512((const void *)(wp + p * pstride + g * 64));
        for (int r = 0; r < MR; r++) {
            __m512i av = _mm512_set1_epi32(load_i32(a + r * lda + 4 * g));
            for (int p = 0; p < NP; p++) q_dpbusd_512(&acc[r * NP + p], av, wv[p]);
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < NP; p++) {
        ptrdiff_t left = ncols - p * FD_QPANEL;
        __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __m512i cp = _mm512_loadu_si512((const void *)(comp + p * FD_QPANEL));
        __m512 kv = _mm512_loadu_ps(ks + p * FD_QPANEL);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512i v = _mm512_sub_epi32(acc[r * NP + p], cp);
            if (f32) {
                __m512 f = _mm512_div_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(kv, _mm512_set1_ps(is[r])));
                _mm512_mask_storeu_ps((float *)c + r * ldc + p * FD_QPANEL, m, f);
            } else {
                _mm512_mask_storeu_epi32((int32_t *)c + r * ldc + p * FD_QPANEL, m, v);
            }
        }
    }
}

/* Panels per tile for mr rows: up to 24 sums (12 x 2, 8 x 3, 6 x 4), 8 panels for one row. */
static int q8_np_512(int mr) { return mr == 1 ? 8 : mr <= 6 ? 4 : mr <= 8 ? 3 : 2; }

/* mr <= 8 rows, or 12, against every panel. */
T_AVX512VNNI static void q8_rows_512(int mr, const fd_qweights *w, const uint8_t *a, ptrdiff_t lda, const float *is,
                                 void *c, ptrdiff_t ldc, int f32, q_lookahead *la)
{
    ptrdiff_t k4 = (w->k + 3) / 4, panels = q_panels(w->n), pstride = k4 * 64;
    int npmax = q8_np_512(mr);
    for (ptrdiff_t p0 = 0; p0 < panels; p0 += npmax) {
        int np = panels - p0 < npmax ? (int)(panels - p0) : npmax;
        const int8_t *wp = (const int8_t *)w->w + p0 * pstride;
        void *cp = f32 ? (void *)((float *)c + p0 * FD_QPANEL) : (void *)((int32_t *)c + p0 * FD_QPANEL);
#define Q8_512(MR, NP)                                                                                      \
    case MR * 16 + NP:                                                                                      \
        q8_tile_512(MR, NP, k4, a, lda, wp, pstride, w->comp + p0 * FD_QPANEL, w->scale + p0 * FD_QPANEL, is, \
                    cp, ldc, w->n - p0 * FD_QPANEL, f32, la);                                               \
        break;
        switch (mr * 16 + np) {
            Q8_512(1, 1) Q8_512(1, 2) Q8_512(1, 3) Q8_512(1, 4) Q8_512(1, 5) Q8_512(1, 6) Q8_512(1, 7) Q8_512(1, 8)
            Q8_512(2, 1) Q8_512(2, 2) Q8_512(2, 3) Q8_512(2, 4) Q8_512(3, 1) Q8_512(3, 2) Q8_512(3, 3) Q8_512(3, 4)
            Q8_512(4, 1) Q8_512(4, 2) Q8_512(4, 3) Q8_512(4, 4) Q8_512(5, 1) Q8_512(5, 2) Q8_512(5, 3) Q8_512(5, 4)
            Q8_512(6, 1) Q8_512(6, 2) Q8_512(6, 3) Q8_512(6, 4) Q8_512(7, 1) Q8_512(7, 2) Q8_512(7, 3)
            Q8_512(8, 1) Q8_512(8, 2) Q8_512(8, 3) Q8_512(12, 1) Q8_512(12, 2)
        }
#undef Q8_512
    }
}

/* One row against NP panels of nibbles (fd_q8_pack_nibbles): the nibbles are vpdpbusd's u8
   operand and the row's int8 values (a ^ 0x80: a holds xq + 128) its s8 one, so the low nibbles
   need one AND, and the high ones, kept in place as 16 u, another (their sums are 16 times
   the sum, shifted back exactly).  sum_k xq u = xq . q + 8 sum_k xq: the int8 kernel's
   integers, de-scaled the same way, so the same bits. */
T_AVX512VNNI AI void q8n_tile_512(const int NP, ptrdiff_t k, const uint8_t *a, int32_t rowsum, const uint8_t *w4,
                                  ptrdiff_t pstride, const float *ks, float is, void *c, ptrdiff_t ncols, int f32)
{
    __m512i lo[8], hi[8];
    for (int p = 0; p < NP; p++) lo[p] = hi[p] = _mm512_setzero_si512();
    const __m512i m0f = _mm512_set1_epi8(0x0F), mf0 = _mm512_set1_epi8((char)0xF0);
    const __m512i flip = _mm512_set1_epi32((int)0x80808080);
    const ptrdiff_t k4 = (k + 3) / 4, pairs = k4 / 2;
    for (ptrdiff_t t = 0; t < pairs; t++) {
        const __m512i a0 = _mm512_xor_si512(_mm512_set1_epi32(load_i32(a + 8 * t)), flip);
        const __m512i a1 = _mm512_xor_si512(_mm512_set1_epi32(load_i32(a + 8 * t + 4)), flip);
        for (int p = 0; p < NP; p++) {
            const __m512i wv = _mm512_loadu_si512((const void *)(w4 + p * pstride + t * 64));
            q_dpbusd_512(&lo[p], _mm512_and_si512(wv, m0f), a0);
            q_dpbusd_512(&hi[p], _mm512_and_si512(wv, mf0), a1);
        }
    }
    if (k4 & 1) {   /* a last lone quad: its high nibbles are zero, and a has no bytes past it */
        const __m512i a0 = _mm512_xor_si512(_mm512_set1_epi32(load_i32(a + 8 * pairs)), flip);
        for (int p = 0; p < NP; p++)
            q_dpbusd_512(&lo[p], _mm512_and_si512(_mm512_loadu_si512((const void *)(w4 + p * pstride + pairs * 64)), m0f), a0);
    }
    const __m512i fix = _mm512_set1_epi32(8 * rowsum);
    for (int p = 0; p < NP; p++) {
        ptrdiff_t left = ncols - p * FD_QPANEL;
        __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __m512i v = _mm512_sub_epi32(_mm512_add_epi32(lo[p], _mm512_srai_epi32(hi[p], 4)), fix);
        if (f32) {
            __m512 f = _mm512_div_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(_mm512_loadu_ps(ks + p * FD_QPANEL), _mm512_set1_ps(is)));
            _mm512_mask_storeu_ps((float *)c + p * FD_QPANEL, m, f);
        } else {
            _mm512_mask_storeu_epi32((int32_t *)c + p * FD_QPANEL, m, v);
        }
    }
}

T_AVX512VNNI static void q8n_row_512(const fd_qweights *w, const uint8_t *a, const float *is, void *c, int f32)
{
    /* sum_k xq: the bytes' sum less 128 per byte (the padding bytes hold 128, xq = 0) */
    const ptrdiff_t kpad = (w->k + 3) / 4 * 4;
    __m512i sad = _mm512_setzero_si512();
    for (ptrdiff_t kk = 0; kk < kpad; kk += 64) {
        const __mmask64 m = kpad - kk >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (kpad - kk)) - 1);
        sad = _mm512_add_epi64(sad, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(m, a + kk), _mm512_setzero_si512()));
    }
    const int32_t rowsum = (int32_t)(_mm512_reduce_add_epi64(sad) - 128 * (long long)kpad);
    const ptrdiff_t panels = q_panels(w->n), pstride = (w->k + 7) / 8 * 64;
    for (ptrdiff_t p0 = 0; p0 < panels; p0 += 8) {
        const int np = panels - p0 < 8 ? (int)(panels - p0) : 8;
        const uint8_t *wp = w->w4 + p0 * pstride;
        void *cp = f32 ? (void *)((float *)c + p0 * FD_QPANEL) : (void *)((int32_t *)c + p0 * FD_QPANEL);
#define Q8N_512(NP) \
    case NP: q8n_tile_512(NP, w->k, a, rowsum, wp, pstride, w->scale + p0 * FD_QPANEL, is[0], cp, w->n - p0 * FD_QPANEL, f32); break;
        switch (np) { Q8N_512(1) Q8N_512(2) Q8N_512(3) Q8N_512(4) Q8N_512(5) Q8N_512(6) Q8N_512(7) Q8N_512(8) }
#undef Q8N_512
    }
}

/* A strip of up to QROWS = 12 rows: one tile of rows when it can (each pass reads every
   weight), else 8 rows then the rest; a lone row of int4 values on their nibbles.  On AMD, tiles
   of at most 6 rows x 4 panels instead: 10 loads (4 of weights, 6 broadcasts) per 24 vpdpbusd
   against the 12 x 2 tile's 14, which Zen 4 runs 3-4 % faster (int8 MLP, one core, 256 rows:
   813-816 against 844-849 us; 8 x 3 tiles: 849-872); Intel keeps the tile that streams the
   fewest weight bytes from L2 a product.  Integer sums: the tile never changes a bit. */
T_AVX512VNNI static void q8_strip_512(int mr, const fd_qweights *w, const uint8_t *a, ptrdiff_t lda,
                                  const int32_t *fix, const float *is, void *c, ptrdiff_t ldc, int f32out,
                                  q_lookahead *la)
{
    (void)fix;
    if (mr == 1 && w->w4) {
        q8n_row_512(w, a, is, c, f32out);
        return;
    }
    const int amd = fd_cpu_vendor_id() == FD_CPU_VENDOR_AMD;
    size_t es = f32out ? sizeof(float) : sizeof(int32_t);
    for (int r0 = 0; r0 < mr;) {
        int rows = amd ? (mr - r0 < 6 ? mr - r0 : 6) : mr - r0 == 12 || mr - r0 <= 8 ? mr - r0 : 8;
        q8_rows_512(rows, w, a + r0 * lda, lda, is + r0, (char *)c + r0 * ldc * es, ldc, f32out, la);
        r0 += rows;
    }
}

/* ---------------------------------------------------------------- AVX2 and AVX-VNNI (256 bits) */

T_AVX2 static float q8_row_256(ptrdiff_t k, const float *x, uint8_t *dst, ptrdiff_t kpad, int shift)
{
    /* |x| as integers orders like the floats, and NaN / inf (>= 0x7F800000) above them all */
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i vmax = _mm256_setzero_si256();
    ptrdiff_t kk = 0;
    for (; kk + 8 <= k; kk += 8)
        vmax = _mm256_max_epi32(vmax, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + kk)), abs_mask));
    int32_t lanes[8], bits = 0;
    _mm256_storeu_si256((__m256i *)lanes, vmax);
    for (int l = 0; l < 8; l++) bits = lanes[l] > bits ? lanes[l] : bits;
    for (; kk < k; kk++) {
        int32_t b;
        memcpy(&b, x + kk, 4);
        b &= 0x7FFFFFFF;
        bits = b > bits ? b : bits;
    }
    float amax;
    memcpy(&amax, &bits, 4);
    float s = q_row_scale(amax, bits >= 0x7F800000 ? 1.0f : 0.0f);
    /* |x * s| <= 127 (+ rounding) for a finite row, so the int8 packs need only the clamp to
       -127 (a NaN row's INT_MIN packs to -128, then -127 as before; its outputs are NaN) */
    const __m256 vs = _mm256_set1_ps(s);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), lo8 = _mm256_set1_epi8(-127);
    const __m256i flip = _mm256_set1_epi8((char)(shift ? 0x80 : 0));   /* + 128 as u8 */
#define Q8_ROUND(off) \
    _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + kk + (off)), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
    for (kk = 0; kk + 32 <= k; kk += 32) {
        __m256i q16a = _mm256_packs_epi32(Q8_ROUND(0), Q8_ROUND(8)), q16b = _mm256_packs_epi32(Q8_ROUND(16), Q8_ROUND(24));
        __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), order);
        _mm256_storeu_si256((__m256i *)(dst + kk), _mm256_xor_si256(_mm256_max_epi8(q8, lo8), flip));
    }
    for (; kk + 8 <= k; kk += 8) {
        __m256i q32 = Q8_ROUND(0);
        __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(q32), _mm256_extracti128_si256(q32, 1));
        __m128i w8 = _mm_max_epi8(_mm_packs_epi16(w16, w16), _mm256_castsi256_si128(lo8));
        _mm_storel_epi64((__m128i *)(dst + kk), _mm_xor_si128(w8, _mm256_castsi256_si128(flip)));
    }
#undef Q8_ROUND
    for (; kk < k; kk++) {
        float v = x[kk] * s;
        v = v > -127.0f ? v : -127.0f;
        v = v < 127.0f ? v : 127.0f;
        dst[kk] = (uint8_t)((int)nearbyintf(v) + shift);
    }
    for (kk = k; kk < kpad; kk++) dst[kk] = (uint8_t)shift;
    return s;
}

/* AVX2's operands for a strip row (q in [-127, 127], kpad a multiple of 4): q becomes |q| in
   place, sign gets 0xFF where q < 0, and the row's fix is sum_{q<0} |q|.  Then
   vpmaddubsw(|q|, w ^ sign) multiplies |q| by w, or by ~w = -w - 1 where q < 0: the products
   sum to q.w - fix, each pair within 2 x 127 x 128 (never saturated), and the sign costs one
   vpxor (any ALU port) instead of vpsignb + vpabsb on the two multiply ports. */
T_AVX2 static int32_t q8_sign_split(ptrdiff_t kpad, uint8_t *a, uint8_t *sign)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i fix = zero;
    ptrdiff_t kk = 0;
    for (; kk + 32 <= kpad; kk += 32) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(a + kk)), s = _mm256_cmpgt_epi8(zero, q);
        __m256i aq = _mm256_abs_epi8(q);
        _mm256_storeu_si256((__m256i *)(a + kk), aq);
        _mm256_storeu_si256((__m256i *)(sign + kk), s);
        fix = _mm256_add_epi64(fix, _mm256_sad_epu8(_mm256_and_si256(aq, s), zero));
    }
    int64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, fix);
    int32_t total = (int32_t)(lanes[0] + lanes[1] + lanes[2] + lanes[3]);
    for (; kk < kpad; kk++) {
        int q = (int8_t)a[kk];
        sign[kk] = q < 0 ? 0xFF : 0;
        a[kk] = (uint8_t)(q < 0 ? -q : q);
        total += q < 0 ? -q : 0;
    }
    return total;
}

/* acc += t, and acc += the 4-products of u8 a and s8 w (VEX: AVX-VNNI, not AVX512-VL), in asm
   for the reason q_dpbusd_512 gives. */
T_AVX2 AI void q_add_256(__m256i *acc, __m256i t)
{
    __asm__("vpaddd %1, %0, %0" : "+x"(*acc) : "x"(t));
}

T_AVXVNNI AI void q_dpbusd_256(__m256i *acc, __m256i a, __m256i w)
{
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(*acc) : "x"(a), "x"(w));
}

/* The sums of MR rows x 2 NP vectors, stored: minus comp (VNNI's +128 on the inputs) or plus
   fix[r] (AVX2's sign trick); f32: de-scaled as Keras does, a float32 product then a division. */
T_AVX2 AI void q8_store_256(const int MR, const int NP, __m256i acc[12], const int32_t *comp, const int32_t *fix,
                            const float *ks, const float *is, void *c, ptrdiff_t ldc, ptrdiff_t ncols, int f32)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#pragma GCC unroll 8
    for (int v = 0; v < 2 * NP; v++) {
        ptrdiff_t left = ncols - 8 * v < 8 ? ncols - 8 * v : 8;
        if (left <= 0) continue;   /* the tile's last panel holds 8 columns or fewer */
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), iota);
        __m256i cp = comp ? _mm256_loadu_si256((const __m256i *)(comp + 8 * v)) : _mm256_setzero_si256();
        __m256 kv = _mm256_loadu_ps(ks + 8 * v);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256i s = _mm256_sub_epi32(acc[r * 2 * NP + v], cp);
            if (fix) s = _mm256_add_epi32(s, _mm256_set1_epi32(fix[r]));
            if (f32) {
                __m256 f = _mm256_div_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(kv, _mm256_set1_ps(is[r])));
                _mm256_maskstore_ps((float *)c + r * ldc + 8 * v, m, f);
            } else {
                _mm256_maskstore_epi32((int *)c + r * ldc + 8 * v, m, s);
            }
        }
    }
}

/* AVX2: MR <= 4 rows x NP panels (2 NP vectors of 8 columns), 16 ymm registers in all.
   SIGNED 0: the tile's rows hold no negative q (all their fix are 0: inputs after a relu, or
   images), so |q| = q and the sign xor, one of the 4 vector operations per 32 products, goes. */
/* One k group of the 4 x 1 tile, in asm so that the 8 sums stay in registers: given the
   intrinsics, gcc copies and spills some of them every step. */
#define Q8_ROW_SIGNED(R)                                   \
    "vpbroadcastd %[a" #R "], %[av]\n\t"                 \
    "vpbroadcastd %[s" #R "], %[t1]\n\t"                 \
    "vpxor %[w0], %[t1], %[t0]\n\t"                      \
    "vpxor %[w1], %[t1], %[t1]\n\t"                      \
    "vpmaddubsw %[t0], %[av], %[t0]\n\t"                 \
    "vpmaddubsw %[t1], %[av], %[t1]\n\t"                 \
    "vpmaddwd %[ones], %[t0], %[t0]\n\t"                 \
    "vpmaddwd %[ones], %[t1], %[t1]\n\t"                 \
    "vpaddd %[t0], %[c" #R "0], %[c" #R "0]\n\t"         \
    "vpaddd %[t1], %[c" #R "1], %[c" #R "1]\n\t"
#define Q8_ROW_UNSIGNED(R)                                 \
    "vpbroadcastd %[a" #R "], %[av]\n\t"                 \
    "vpmaddubsw %[w0], %[av], %[t0]\n\t"                 \
    "vpmaddubsw %[w1], %[av], %[t1]\n\t"                 \
    "vpmaddwd %[ones], %[t0], %[t0]\n\t"                 \
    "vpmaddwd %[ones], %[t1], %[t1]\n\t"                 \
    "vpaddd %[t0], %[c" #R "0], %[c" #R "0]\n\t"         \
    "vpaddd %[t1], %[c" #R "1], %[c" #R "1]\n\t"

T_AVX2 AI void q8_step_4x1(const int SIGNED, __m256i acc[8], __m256i ones, const int8_t *wg, const uint8_t *a,
                           const uint8_t *sign, ptrdiff_t lda)
{
    __m256i av, t0, t1;
    const __m256i w0 = _mm256_loadu_si256((const __m256i *)wg), w1 = _mm256_loadu_si256((const __m256i *)(wg + 32));
#define Q8_OPERANDS                                                                                              \
    : [c00] "+x"(acc[0]), [c01] "+x"(acc[1]), [c10] "+x"(acc[2]), [c11] "+x"(acc[3]), [c20] "+x"(acc[4]),       \
      [c21] "+x"(acc[5]), [c30] "+x"(acc[6]), [c31] "+x"(acc[7]), [av] "=&x"(av), [t0] "=&x"(t0), [t1] "=&x"(t1) \
    : [ones] "x"(ones), [w0] "x"(w0), [w1] "x"(w1), [a0] "m"(*(const int32_t *)a),                              \
      [a1] "m"(*(const int32_t *)(a + lda)), [a2] "m"(*(const int32_t *)(a + 2 * lda)),                         \
      [a3] "m"(*(const int32_t *)(a + 3 * lda))
    if (SIGNED)
        __asm__(Q8_ROW_SIGNED(0) Q8_ROW_SIGNED(1) Q8_ROW_SIGNED(2) Q8_ROW_SIGNED(3)
                Q8_OPERANDS, [s0] "m"(*(const int32_t *)sign), [s1] "m"(*(const int32_t *)(sign + lda)),
                [s2] "m"(*(const int32_t *)(sign + 2 * lda)), [s3] "m"(*(const int32_t *)(sign + 3 * lda)));
    else
        __asm__(Q8_ROW_UNSIGNED(0) Q8_ROW_UNSIGNED(1) Q8_ROW_UNSIGNED(2) Q8_ROW_UNSIGNED(3) Q8_OPERANDS);
#undef Q8_OPERANDS
}
#undef Q8_ROW_SIGNED
#undef Q8_ROW_UNSIGNED

T_AVX2 AI void q8_tile_avx2(const int MR, const int NP, const int SIGNED, ptrdiff_t k4, const uint8_t *a,
                            const uint8_t *sign, ptrdiff_t lda, const int8_t *wp, ptrdiff_t pstride,
                            const int32_t *fix, const float *ks, const float *is, void *c, ptrdiff_t ldc,
                            ptrdiff_t ncols, int f32)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[12];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < 2 * NP; v++) acc[r * 2 * NP + v] = _mm256_setzero_si256();
    if (MR == 4 && NP == 1) {
#pragma GCC unroll 2
        for (ptrdiff_t g = 0; g < k4; g++) q8_step_4x1(SIGNED, acc, ones, wp + g * 64, a + 4 * g, sign + 4 * g, lda);
        q8_store_256(MR, NP, acc, NULL, fix, ks, is, c, ldc, ncols, f32);
        return;
    }
#pragma GCC unroll 2
    for (ptrdiff_t g = 0; g < k4; g++) {
        __m256i wv[8];
        for (int v = 0; v < 2 * NP; v++)
            wv[v] = _mm256_loadu_si256((const __m256i *)(wp + (v / 2) * pstride + g * 64 + (v % 2) * 32));
        for (int r = 0; r < MR; r++) {
            __m256i av = _mm256_set1_epi32(load_i32(a + r * lda + 4 * g));
            __m256i sv = SIGNED ? _mm256_set1_epi32(load_i32(sign + r * lda + 4 * g)) : _mm256_setzero_si256();
            for (int v = 0; v < 2 * NP; v++) {
                __m256i pairs = _mm256_maddubs_epi16(av, SIGNED ? _mm256_xor_si256(wv[v], sv) : wv[v]);
                q_add_256(&acc[r * 2 * NP + v], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    q8_store_256(MR, NP, acc, NULL, fix, ks, is, c, ldc, ncols, f32);
}

/* AVX-VNNI: MR <= 6 rows x NP panels; 6 x 1 keeps 12 ymm sums, each weight load feeding 6
   vpdpbusd. */
T_AVXVNNI AI void q8_tile_avxvnni(const int MR, const int NP, ptrdiff_t k4, const uint8_t *a, ptrdiff_t lda,
                                  const int8_t *wp, ptrdiff_t pstride, const int32_t *comp, const float *ks,
                                  const float *is, void *c, ptrdiff_t ldc, ptrdiff_t ncols, int f32)
{
    __m256i acc[12];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < 2 * NP; v++) acc[r * 2 * NP + v] = _mm256_setzero_si256();
    for (ptrdiff_t g = 0; g < k4; g++) {
        __m256i wv[8];
        for (int v = 0; v < 2 * NP; v++)
            wv[v] = _mm256_loadu_si256((const __m256i *)(wp + (v / 2) * pstride + g * 64 + (v % 2) * 32));
        for (int r = 0; r < MR; r++) {
            __m256i av = _mm256_set1_epi32(load_i32(a + r * lda + 4 * g));
            for (int v = 0; v < 2 * NP; v++) q_dpbusd_256(&acc[r * 2 * NP + v], av, wv[v]);
        }
    }
    q8_store_256(MR, NP, acc, comp, NULL, ks, is, c, ldc, ncols, f32);
}

/* mr rows (AVX2 <= 4, AVX-VNNI <= 6) against every panel, NP panels at a time. */
T_AVX2 static void q8_rows_avx2(int mr, const fd_qweights *w, const uint8_t *a, ptrdiff_t lda, const int32_t *fix,
                                const float *is, void *c, ptrdiff_t ldc, int f32)
{
    ptrdiff_t k4 = (w->k + 3) / 4, panels = q_panels(w->n), pstride = k4 * 64;
    int npmax = mr <= 2 ? 2 : 1, negative = 0;
    for (int r = 0; r < mr; r++) negative |= fix[r] != 0;
    for (ptrdiff_t p0 = 0; p0 < panels; p0 += npmax) {
        int np = panels - p0 < npmax ? (int)(panels - p0) : npmax;
        const int8_t *wp = (const int8_t *)w->w + p0 * pstride;
        void *cp = f32 ? (void *)((float *)c + p0 * FD_QPANEL) : (void *)((int32_t *)c + p0 * FD_QPANEL);
#define Q8_AVX2(MR, NP)                                                                                          \
    case MR * 16 + NP:                                                                                           \
        if (negative)                                                                                            \
            q8_tile_avx2(MR, NP, 1, k4, a, a + QROWS * lda, lda, wp, pstride, fix, w->scale + p0 * FD_QPANEL, is,  \
                         cp, ldc, w->n - p0 * FD_QPANEL, f32);                                                   \
        else                                                                                                     \
            q8_tile_avx2(MR, NP, 0, k4, a, a + QROWS * lda, lda, wp, pstride, fix, w->scale + p0 * FD_QPANEL, is,  \
                         cp, ldc, w->n - p0 * FD_QPANEL, f32);                                                   \
        break;
        switch (mr * 16 + np) { Q8_AVX2(1, 1) Q8_AVX2(1, 2) Q8_AVX2(2, 1) Q8_AVX2(2, 2) Q8_AVX2(3, 1) Q8_AVX2(4, 1) }
#undef Q8_AVX2
    }
}

T_AVXVNNI static void q8_rows_avxvnni(int mr, const fd_qweights *w, const uint8_t *a, ptrdiff_t lda,
                                      const int32_t *fix, const float *is, void *c, ptrdiff_t ldc, int f32)
{
    ptrdiff_t k4 = (w->k + 3) / 4, panels = q_panels(w->n), pstride = k4 * 64;
    int npmax = mr == 1 ? 4 : mr == 2 ? 2 : 1;
    (void)fix;
    for (ptrdiff_t p0 = 0; p0 < panels; p0 += npmax) {
        int np = panels - p0 < npmax ? (int)(panels - p0) : npmax;
        const int8_t *wp = (const int8_t *)w->w + p0 * pstride;
        void *cp = f32 ? (void *)((float *)c + p0 * FD_QPANEL) : (void *)((int32_t *)c + p0 * FD_QPANEL);
#define Q8_VNNI(MR, NP)                                                                                      \
    case MR * 16 + NP:                                                                                       \
        q8_tile_avxvnni(MR, NP, k4, a, lda, wp, pstride, w->comp + p0 * FD_QPANEL, w->scale + p0 * FD_QPANEL, \
                        is, cp, ldc, w->n - p0 * FD_QPANEL, f32);                                            \
        break;
        switch (mr * 16 + np) {
            Q8_VNNI(1, 1) Q8_VNNI(1, 2) Q8_VNNI(1, 3) Q8_VNNI(1, 4) Q8_VNNI(2, 1) Q8_VNNI(2, 2)
            Q8_VNNI(3, 1) Q8_VNNI(4, 1) Q8_VNNI(5, 1) Q8_VNNI(6, 1)
        }
#undef Q8_VNNI
    }
}

/* A strip of up to QROWS rows in tiles of at most MRMAX rows. */
#define Q8_STRIP_256(NAME, TARGET, ROWS, MRMAX)                                                            \
    TARGET static void NAME(int mr, const fd_qweights *w, const uint8_t *a, ptrdiff_t lda, const int32_t *fix, \
                            const float *is, void *c, ptrdiff_t ldc, int f32out, q_lookahead *la)          \
    {                                                                                                      \
        (void)la;                                                                                          \
        size_t es = f32out ? sizeof(float) : sizeof(int32_t);                                             \
        for (int r0 = 0; r0 < mr; r0 += MRMAX) {                                                           \
            int rows = mr - r0 < MRMAX ? mr - r0 : MRMAX;                                                  \
            ROWS(rows, w, a + r0 * lda, lda, fix ? fix + r0 : NULL, is + r0, (char *)c + r0 * ldc * es, ldc, \
                 f32out);                                                                                  \
        }                                                                                                  \
    }

Q8_STRIP_256(q8_strip_avx2, T_AVX2, q8_rows_avx2, 4)
Q8_STRIP_256(q8_strip_avxvnni, T_AVXVNNI, q8_rows_avxvnni, 6)

#endif /* FD_Q_X86 */

/* ---------------------------------------------------------------- dispatch */

typedef float (*q8_row_fn)(ptrdiff_t, const float *, uint8_t *, ptrdiff_t, int);
typedef int32_t (*q8_split_fn)(ptrdiff_t, uint8_t *, uint8_t *);
typedef void (*q8_strip_fn)(int, const fd_qweights *, const uint8_t *, ptrdiff_t, const int32_t *, const float *,
                            void *, ptrdiff_t, int, q_lookahead *);

typedef struct {
    q8_row_fn row;
    q8_split_fn split;   /* AVX2: the strip's rows split into |q| and a sign plane (QROWS rows on) */
    q8_strip_fn strip;
    int shift;           /* 128: the path multiplies u8 inputs (vpdpbusd) */
} q_path;

static int q_path_of(fd_qisa isa, q_path *path)
{
    if ((unsigned)isa >= FD_QISA_COUNT || !fd_qisa_supported(isa)) return FD_ERR_ARG;
    *path = (q_path){q8_row_c, NULL, q8_strip_c, 0};
#if FD_Q_X86 && defined(__GNUC__)
    if (isa == FD_QISA_AVX2) *path = (q_path){q8_row_256, q8_sign_split, q8_strip_avx2, 0};
    if (isa == FD_QISA_AVX_VNNI) *path = (q_path){q8_row_256, NULL, q8_strip_avxvnni, 128};
    if (isa == FD_QISA_AVX512_VNNI || isa == FD_QISA_AMX)
        *path = (q_path){q8_row_512, NULL, q8_strip_512, 128};
#endif
    return FD_OK;
}

/* The quantized strip buffer: on the stack when small. */
typedef struct {
    uint8_t local[QSTACK];
    uint8_t *bytes;
} q_scratch;

static int q_scratch_get(q_scratch *s, ptrdiff_t bytes)
{
    s->bytes = bytes <= QSTACK ? s->local : (uint8_t *)malloc((size_t)bytes);
    return s->bytes ? 0 : -1;
}

static void q_scratch_free(q_scratch *s)
{
    if (s->bytes != s->local) free(s->bytes);
}

static int q8_run(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                  const int8_t *q, ptrdiff_t ldq, const fd_act *act, const float *bias, void *c, ptrdiff_t ldc)
{
    q_path path;
    if (w->bits != 8 || w->k < 1 || w->k > FD_Q8_MAX_K || q_path_of(isa, &path)) return FD_ERR_ARG;
    const ptrdiff_t tiled = isa == FD_QISA_AMX ? fd_q8_amx_rows(m, w->k, w->n) : 0;   /* the rest: VNNI strips */
    if (tiled > 0) {
        const int rc = fd_q8_amx(w, tiled, x, ldx, path.row, q, ldq, act, bias, c, ldc);
        if (rc || tiled == m) return rc;
    }
    ptrdiff_t lda = (w->k + 3) / 4 * 4;
    q_scratch s;
    if (q_scratch_get(&s, (path.split ? 2 : 1) * QROWS * lda)) return FD_ERR_NOMEM;
    for (ptrdiff_t i0 = tiled; i0 < m; i0 += QROWS) {
        int mr = m - i0 < QROWS ? (int)(m - i0) : QROWS;
        float is[QROWS];
        int32_t fix[QROWS];
        for (int r = 0; r < mr; r++) {
            uint8_t *dst = s.bytes + r * lda;
            if (x) {
                is[r] = path.row(w->k, x + (i0 + r) * ldx, dst, lda, path.shift);
            } else {   /* already quantized rows */
                for (ptrdiff_t kk = 0; kk < lda; kk++)
                    dst[kk] = (uint8_t)((kk < w->k ? q[(i0 + r) * ldq + kk] : 0) + path.shift);
                is[r] = 1.0f;
            }
            if (path.split) fix[r] = path.split(lda, dst, dst + QROWS * lda);
        }
        const int32_t *fx = path.split ? fix : NULL;
        if (x) {
            float *cs = (float *)c + i0 * ldc;
            const ptrdiff_t next = m - i0 - mr < QROWS ? m - i0 - mr : QROWS;
            q_lookahead la = {(const char *)(x + (i0 + mr) * ldx), 0, w->k * (ptrdiff_t)sizeof(float),
                              ldx * (ptrdiff_t)sizeof(float), next};
            path.strip(mr, w, s.bytes, lda, fx, is, cs, ldc, 1, next > 0 ? &la : NULL);
            fd_epilogue_f32(act, bias, cs, ldc, cs, ldc, mr, w->n);
        } else {
            path.strip(mr, w, s.bytes, lda, fx, is, (int32_t *)c + i0 * ldc, ldc, 0, NULL);
        }
    }
    q_scratch_free(&s);
    return FD_OK;
}

int fd_q8_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                const fd_act *act, const float *bias, float *c, ptrdiff_t ldc)
{
    return q8_run(isa, w, m, x, ldx, NULL, 0, act, bias, c, ldc);
}

int fd_q8_gemm_i32(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const int8_t *q, ptrdiff_t ldq,
                   int32_t *c, ptrdiff_t ldc)
{
    return q8_run(isa, w, m, NULL, 0, q, ldq, NULL, NULL, c, ldc);
}

int fd_q8_quantize_rows(fd_qisa isa, ptrdiff_t m, ptrdiff_t k, const float *x, ptrdiff_t ldx,
                        int8_t *q, ptrdiff_t ldq, float *scale)
{
    q_path path;
    if (q_path_of(isa, &path)) return FD_ERR_ARG;
    for (ptrdiff_t i = 0; i < m; i++)   /* unshifted: the int8 values themselves */
        scale[i] = path.row(k, x + i * ldx, (uint8_t *)(q + i * ldq), k, 0);
    return FD_OK;
}
