/* fd_q4gemm.c -- the Keras 3 int4 Dense kernel with float inputs: the fd_q4_* entry points, and
 * the "digits" recipe (FD_Q4_DIGITS) on the int8 units (see fd_qgemm.h); weights packed for the
 * "float" recipe run fd_q4gemm_float.c's kernels instead.
 *
 * Keras computes x @ w with w = (q - zero) * scale in float32.  Here the products are exact
 * integers: a row's inputs are cut into chunks of at most Q4CH = 128 k that never straddle a
 * weight group; per chunk, a power of two 2^s with max|x| 2^s in [2^29, 2^30) turns each input
 * into the integer X = rint(x 2^s) (|X| < 2^30), written as four balanced signed base-256 digits
 * X = d0 + 2^8 d1 + 2^16 d2 + 2^24 d3, d_p in [-128, 127] (W = (X + 0x80808080) ^ 0x80808080
 * holds them as bytes).  With u = q + 8 in [0, 15] and z' = zero + 8 (8 per unit):
 *     T_p = sum_k d_pk (u_k - z') = sum_k d_pk u_k - z' D_p,   D_p = sum_k d_pk   (exact int32:
 *     |T_p| <= 128 * 15 * 128), summed by vpdpbusd (u8 u, s8 digits broadcast 4 at a time),
 *     R = (T0 + 2^8 T1) + 2^16 (T2 + 2^8 T3)   (exact: int32 halves, then a double, |R| < 2^42),
 *     v = float(R) * 2^-s   (the one rounding; the power of two is exact),
 *     acc = fma(v, scale_g, acc) per chunk in k order (per unit: acc + v, then acc / kernel_scale).
 * Every path (AMX TDPBSUD from 2 rows, AVX512-VNNI, AVX-VNNI, AVX2 with vpmaddubsw pair sums
 * <= 2 * 15 * 128 summed 8 deep in int16, C) forms the same integers and the same float
 * operations in the same order, so the results agree bit for bit whatever the path, batch or
 * thread split (tests/test_q4_digits.py holds the int64 NumPy transcription).  Error against exact
 * arithmetic on Keras's weights: |x_k - X_k 2^-s| <= 2^-s / 2 <= max_chunk|x| 2^-30 per input, one
 * rounding of v and one of each fma (docs/quantization.md).
 *
 * A row holding NaN or inf, or a chunk whose maximum has an exponent outside [-97, 115] (2^-s
 * or v would leave float32's normal range), is computed by q4_row_float instead: Keras's
 * formula in float32 (each weight (q - zero) * scale rounded, one fmaf per k in k order).
 *
 * Packed weights: per panel of 16 columns, per chunk, per pair of k-quads, 64 bytes: byte
 * 4 col + b holds u of k = 8t + b (low nibble) and 8t + 4 + b (high nibble); one 64-byte load
 * and an AND give one quad's vpdpbusd operand, a 16-bit shift and the AND the next one's.
 */
#include "fd_qgemm.h"
#include "fd_q4gemm_float.h"

#include "fd_qsimd.h"
#include "fd_status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define Q4ROWS 4                 /* int4 rows per strip */
#define Q4CH 128                 /* k per digit chunk (within one weight group) */
#define Q4STACK (32 * 1024)      /* digit bytes kept on the stack */
#define Q4E_MIN (-97)            /* chunk maxima exponents the integer form takes */
#define Q4E_MAX 115


/* Quad pairs of a run of len k cut into chunks of Q4CH. */
static ptrdiff_t q4_pairs_of(ptrdiff_t len) { return len / Q4CH * (Q4CH / 8) + (len % Q4CH + 7) / 8; }
static ptrdiff_t q4_chunks_of(ptrdiff_t len) { return (len + Q4CH - 1) / Q4CH; }

/* Quad pairs per panel and chunks over all of k. */
static ptrdiff_t q4_pairs(ptrdiff_t k, ptrdiff_t block)
{
    ptrdiff_t groups = q_groups(k, block);
    return (groups - 1) * q4_pairs_of(block) + q4_pairs_of(k - (groups - 1) * block);
}

static ptrdiff_t q4_chunks(ptrdiff_t k, ptrdiff_t block)
{
    ptrdiff_t groups = q_groups(k, block);
    return (groups - 1) * q4_chunks_of(block) + q4_chunks_of(k - (groups - 1) * block);
}

/* One chunk: k0 and len in k, its group, its first pair. Iterate with q4_chunk_next. */
typedef struct {
    ptrdiff_t k0, len, g, pair, pairs, index;
} q4_chunk;

static void q4_chunk_first(const fd_qweights *w, q4_chunk *ch)
{
    ch->k0 = 0;
    ch->g = 0;
    ch->pair = 0;
    ch->index = 0;
    ch->len = w->block < Q4CH ? w->block : Q4CH;
    if (ch->len > w->k) ch->len = w->k;
    ch->pairs = (ch->len + 7) / 8;
}

/* 0 after the last chunk. */
static int q4_chunk_next(const fd_qweights *w, q4_chunk *ch)
{
    ptrdiff_t end = ch->k0 + ch->len, gend = (ch->g + 1) * w->block;
    if (gend > w->k) gend = w->k;
    if (end >= w->k) return 0;
    if (end >= gend) ch->g++, gend = (ch->g + 1) * w->block < w->k ? (ch->g + 1) * w->block : w->k;
    ch->pair += ch->pairs;
    ch->index++;
    ch->k0 = end;
    ch->len = gend - end < Q4CH ? gend - end : Q4CH;
    ch->pairs = (ch->len + 7) / 8;
    return 1;
}

fd_q4_recipe fd_q4_recipe_of(fd_qisa isa)
{
    /* digits where 512-bit VNNI / AMX make four byte products per weight cheaper than one float
       FMA; on 256-bit units the float recipe wins from a few rows on (docs/quantization.md) */
    return isa == FD_QISA_AVX512_VNNI || isa == FD_QISA_AMX ? FD_Q4_DIGITS : FD_Q4_FLOAT;
}

ptrdiff_t fd_q4_packed_size(fd_q4_recipe recipe, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
{
    if (recipe == FD_Q4_FLOAT) return fd_q4f_packed_size(k, n, block);
    return q_panels(n) * q4_pairs(k, block) * 64;
}

ptrdiff_t fd_q4_params_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
{
    return q_groups(k, block) * q_panels(n) * FD_QPANEL;
}

void fd_q4_pack(fd_q4_recipe recipe, const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block,
                const float *scale, const int8_t *zero, uint8_t *wp, float *scale_out, float *zero_out)
{
    if (recipe == FD_Q4_FLOAT) {
        fd_q4f_pack(q, ldq, k, n, block, scale, zero, wp, scale_out, zero_out);
        return;
    }
    ptrdiff_t pstride = q4_pairs(k, block) * 64;
    fd_qweights w = {.k = k, .n = n, .bits = 4, .block = block, .recipe = FD_Q4_DIGITS};
    q4_chunk ch;
    memset(wp, 0, (size_t)fd_q4_packed_size(FD_Q4_DIGITS, k, n, block));   /* padding: u = 0 meets digits 0 */
    q4_chunk_first(&w, &ch);
    do {
        for (ptrdiff_t kk = 0; kk < ch.len; kk++) {
            ptrdiff_t t = kk / 8, high = kk / 4 % 2, b = kk % 4;
            for (ptrdiff_t j = 0; j < n; j++) {
                uint8_t *byte = wp + (j / FD_QPANEL) * pstride + (ch.pair + t) * 64 + (j % FD_QPANEL) * 4 + b;
                uint8_t nib = (uint8_t)((q[(ch.k0 + kk) * ldq + j] + 8) & 15);
                *byte = (uint8_t)(high ? (*byte & 0x0F) | (nib << 4) : (*byte & 0xF0) | nib);
            }
        }
    } while (q4_chunk_next(&w, &ch));
    fd_q4_pack_params(k, n, block, scale, zero, scale_out, zero_out);
}

void fd_q4_panels_view(const fd_qweights *w, ptrdiff_t p0, fd_qweights *v)
{
    if (w->recipe == FD_Q4_FLOAT) {
        fd_q4f_panels_view(w, p0, v);
        return;
    }
    ptrdiff_t groups = q_groups(w->k, w->block);
    v->w = (const uint8_t *)w->w + p0 * q4_pairs(w->k, w->block) * 64;
    v->scale = w->scale + p0 * groups * FD_QPANEL;
    v->zero = w->zero ? w->zero + p0 * groups * FD_QPANEL : NULL;
}

/* ---------------------------------------------------------------- a strip's rows as digits */

/* Per row and chunk: 2^-s and -D_p (in [-16256, 16384]: an int16, read by vpmaddwd). */
typedef struct {
    float inv;
    int32_t negd[4];
} q4_info;

/* A strip's rows: digits (pairs * 32 bytes per row: per pair, the low quad's d0..d3 then the
   high quad's, 4 bytes each) and per-chunk info; rows that need the float formula flagged. */
typedef struct {
    uint8_t *dig;
    q4_info *info;
    ptrdiff_t ldd, ldi;
    int float_row[Q4ROWS];
} q4_rows;

/* The exponent of the largest |x| in a chunk from its bits (|x| as integers orders like the
   floats): 1 when the chunk cannot take the integer form (NaN, inf, or 2^-s / v outside the
   normal range), else its 2^s and 2^-s. */
static int q4_chunk_scale(int32_t amax_bits, float *f, float *inv)
{
    if (amax_bits == 0) {   /* all zeros: any scale */
        *f = *inv = 1.0f;
        return 0;
    }
    int e = (amax_bits >> 23) - 127;   /* denormals: -127 */
    if (amax_bits >= 0x7F800000 || e < Q4E_MIN || e > Q4E_MAX) return 1;
    int32_t fb = (29 - e + 127) << 23, ib = (e - 29 + 127) << 23;
    memcpy(f, &fb, 4);
    memcpy(inv, &ib, 4);
    return 0;
}

/* The balanced digits of X as bytes: byte p of (X + 0x80808080) is d_p + 128. */
static uint32_t q4_digit_word(int32_t X) { return ((uint32_t)X + 0x80808080u) ^ 0x80808080u; }

static int q4_row_c(const fd_qweights *w, const float *x, uint8_t *dig, q4_info *info)
{
    q4_chunk ch;
    q4_chunk_first(w, &ch);
    do {
        int32_t amax = 0;
        for (ptrdiff_t kk = 0; kk < ch.len; kk++) {
            int32_t b;
            memcpy(&b, x + ch.k0 + kk, 4);
            b &= 0x7FFFFFFF;
            amax = b > amax ? b : amax;
        }
        float f, inv;
        if (q4_chunk_scale(amax, &f, &inv)) return 1;
        uint8_t *d = dig + ch.pair * 32;
        int32_t sum[4] = {0, 0, 0, 0};
        memset(d, 0, (size_t)(ch.pairs * 32));
        for (ptrdiff_t kk = 0; kk < ch.len; kk++) {
            uint32_t W = q4_digit_word((int32_t)nearbyintf(x[ch.k0 + kk] * f));   /* x 2^s is exact */
            for (int p = 0; p < 4; p++) {
                int8_t dp = (int8_t)(uint8_t)(W >> (8 * p));
                d[kk / 4 * 16 + 4 * p + kk % 4] = (uint8_t)dp;
                sum[p] += dp;
            }
        }
        info[ch.index].inv = inv;
        for (int p = 0; p < 4; p++) info[ch.index].negd[p] = -sum[p];
    } while (q4_chunk_next(w, &ch));
    return 0;
}

/* v = float(R) 2^-s for the four digit sums of one column, R = (T0 + 2^8 T1) + 2^16 (T2 + 2^8 T3). */
static float q4_value(const int32_t t[4], float inv)
{
    int32_t a = t[0] + t[1] * 256, b = t[2] + t[3] * 256;
    return (float)((int64_t)a + (int64_t)b * 65536) * inv;
}

static void q4_strip_c(int mr, const fd_qweights *w, const q4_rows *a, float *c, ptrdiff_t ldc)
{
    ptrdiff_t groups = q_groups(w->k, w->block), panels = q_panels(w->n), pstride = q4_pairs(w->k, w->block) * 64;
    const uint8_t *wp = (const uint8_t *)w->w;
    for (int r = 0; r < mr; r++)
        for (ptrdiff_t p = 0; p < panels; p++) {
            float acc[FD_QPANEL] = {0};
            q4_chunk ch;
            q4_chunk_first(w, &ch);
            do {
                const q4_info *in = a->info + r * a->ldi + ch.index;
                const uint8_t *d = a->dig + r * a->ldd + ch.pair * 32;
                const uint8_t *wb = wp + p * pstride + ch.pair * 64;
                const float *zb = w->zero ? w->zero + (p * groups + ch.g) * FD_QPANEL : NULL;
                for (int col = 0; col < FD_QPANEL; col++) {
                    int32_t t[4], z = zb ? (int32_t)zb[col] : 8;
                    for (int q = 0; q < 4; q++) t[q] = z * (int16_t)in->negd[q];
                    for (ptrdiff_t pr = 0; pr < ch.pairs; pr++)
                        for (int b = 0; b < 4; b++) {
                            uint8_t byte = wb[pr * 64 + col * 4 + b];
                            for (int q = 0; q < 4; q++)
                                t[q] += (int8_t)d[pr * 32 + 4 * q + b] * (byte & 15) +
                                        (int8_t)d[pr * 32 + 16 + 4 * q + b] * (byte >> 4);
                        }
                    float v = q4_value(t, in->inv);
                    acc[col] = zb ? fmaf(v, w->scale[(p * groups + ch.g) * FD_QPANEL + col], acc[col]) : acc[col] + v;
                }
            } while (q4_chunk_next(w, &ch));
            for (int col = 0; col < FD_QPANEL && p * FD_QPANEL + col < w->n; col++) {
                ptrdiff_t j = p * FD_QPANEL + col;
                c[r * ldc + j] = w->zero ? acc[col] : acc[col] / w->scale[j];
            }
        }
}

/* Keras's formula in float32 for one row (NaN, inf, or out-of-range chunks): per column,
   acc = fmaf(x_k, (q - zero) * scale, acc) in k order (per unit: x_k * q, then / kernel_scale). */
#define Q4_ROW_FLOAT_BODY                                                                                  \
    ptrdiff_t groups = q_groups(w->k, w->block), panels = q_panels(w->n);                                   \
    ptrdiff_t pstride = q4_pairs(w->k, w->block) * 64;                                                       \
    for (ptrdiff_t p = 0; p < panels; p++) {                                                                \
        float acc[FD_QPANEL] = {0}, wv[FD_QPANEL];                                                         \
        q4_chunk ch;                                                                                       \
        q4_chunk_first(w, &ch);                                                                            \
        do {                                                                                               \
            const uint8_t *wb = (const uint8_t *)w->w + p * pstride + ch.pair * 64;                        \
            const float *zb = w->zero ? w->zero + (p * groups + ch.g) * FD_QPANEL : NULL;                  \
            const float *sb = w->scale + (p * groups + ch.g) * FD_QPANEL;                                  \
            for (ptrdiff_t kk = 0; kk < ch.len; kk++) {                                                    \
                const uint8_t *row = wb + kk / 8 * 64 + kk % 4;                                            \
                int shift = kk / 4 % 2 * 4;                                                                \
                for (int col = 0; col < FD_QPANEL; col++) {                                                \
                    float q = (float)((row[4 * col] >> shift) & 15);                                       \
                    wv[col] = zb ? (q - zb[col]) * sb[col] : q - 8.0f;                                     \
                }                                                                                          \
                for (int col = 0; col < FD_QPANEL; col++) acc[col] = fmaf(x[ch.k0 + kk], wv[col], acc[col]); \
            }                                                                                              \
        } while (q4_chunk_next(w, &ch));                                                                   \
        for (int col = 0; col < FD_QPANEL && p * FD_QPANEL + col < w->n; col++) {                          \
            ptrdiff_t j = p * FD_QPANEL + col;                                                             \
            c[j] = w->zero ? acc[col] : acc[col] / w->scale[j];                                            \
        }                                                                                                  \
    }

static void q4_row_float_c(const fd_qweights *w, const float *x, float *c) { Q4_ROW_FLOAT_BODY }

#if FD_Q_X86 && defined(__GNUC__)


/* The same operations compiled with FMA (fmaf is exact either way): the same bits, faster. */
T_AVX2 static void q4_row_float_fma(const fd_qweights *w, const float *x, float *c) { Q4_ROW_FLOAT_BODY }

/* Within each 128-bit lane, 4 inputs' digit words (d0 d1 d2 d3 each) to one quad's operand
   bytes: d0 of the 4 inputs, then d1, d2, d3. */
#define Q4_TRANSPOSE 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15

/* ---------------------------------------------------------------- AVX-512 */

/* The bits of max |x_k| over len inputs (|x| as integers orders like the floats, NaN / inf above). */
T_AVX512VNNI static int32_t q4_amax_512(const float *x, ptrdiff_t len)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i vmax = _mm512_setzero_si512();
    for (ptrdiff_t kk = 0; kk < len; kk += 16) {
        __mmask16 m = len - kk >= 16 ? 0xFFFF : (__mmask16)((1u << (len - kk)) - 1);
        vmax = _mm512_max_epi32(vmax, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + kk), abs_mask));
    }
    return _mm512_reduce_max_epi32(vmax);
}

T_AVX512VNNI static int q4_row_512(const fd_qweights *w, const float *x, uint8_t *dig, q4_info *info)
{
    const __m512i bias = _mm512_set1_epi32((int)0x80808080u);
    const __m512i tr = _mm512_broadcast_i32x4(_mm_setr_epi8(Q4_TRANSPOSE)), ones = _mm512_set1_epi8(1);
    q4_chunk ch;
    q4_chunk_first(w, &ch);
    do {
        const float *xc = x + ch.k0;
        float f, inv;
        if (q4_chunk_scale(q4_amax_512(xc, ch.len), &f, &inv)) return 1;
        const __m512 vf = _mm512_set1_ps(f);
        __m512i dsum = _mm512_setzero_si512();
        uint8_t *d = dig + ch.pair * 32;
        /* 16 inputs = 4 quads = 64 bytes; the last store may run up to 32 bytes into the next chunk
           (rewritten by it) or the row's slack */
        for (ptrdiff_t kk = 0; kk < ch.len; kk += 16) {
            __mmask16 m = ch.len - kk >= 16 ? 0xFFFF : (__mmask16)((1u << (ch.len - kk)) - 1);
            __m512i X = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xc + kk), vf));
            __m512i W = _mm512_shuffle_epi8(_mm512_xor_si512(_mm512_add_epi32(X, bias), bias), tr);
            dsum = _mm512_dpbusd_epi32(dsum, ones, W);   /* lane dword p: sum of d_p over a quad */
            _mm512_storeu_si512((void *)(d + kk * 4), W);
        }
        __m128i s4 = _mm_add_epi32(_mm_add_epi32(_mm512_castsi512_si128(dsum), _mm512_extracti32x4_epi32(dsum, 1)),
                                   _mm_add_epi32(_mm512_extracti32x4_epi32(dsum, 2), _mm512_extracti32x4_epi32(dsum, 3)));
        info[ch.index].inv = inv;
        _mm_storeu_si128((__m128i *)info[ch.index].negd, _mm_sub_epi32(_mm_setzero_si128(), s4));
    } while (q4_chunk_next(w, &ch));
    return 0;
}

/* acc += the 4-products of u8 u and the s8 digits at d broadcast.  In asm: given the
   intrinsic's separate input and output, gcc copies and spills a tile's sums. */
T_AVX512VNNI AI void q4_dp_512(__m512i *acc, __m512i u, const uint8_t *d)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(*acc) : "v"(u), "m"(*(const int32_t *)d));
}

T_AVX512VNNI AI void q4_dpr_512(__m512i *acc, __m512i u, __m512i d)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(*acc) : "v"(u), "v"(d));
}

/* float(R) for 16 columns' digit sums, exactly: int32 halves, a double, one rounding. */
T_AVX512VNNI AI __m512 q4_value_512(const __m512i t[4])
{
    __m512i a = _mm512_add_epi32(t[0], _mm512_slli_epi32(t[1], 8)), b = _mm512_add_epi32(t[2], _mm512_slli_epi32(t[3], 8));
    const __m512d k16 = _mm512_set1_pd(65536.0);
    __m512d lo = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(b)), k16, _mm512_cvtepi32_pd(_mm512_castsi512_si256(a)));
    __m512d hi = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(b, 1)), k16,
                                 _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(a, 1)));
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
}

/* acc += one chunk's value: v = float(R) 2^-s, then fma(v, scale, acc) (per unit: acc + v). */
T_AVX512VNNI AI __m512 q4_accumulate_512(const int GROUPED, const __m512i t[4], float inv, const float *scale, __m512 acc)
{
    __m512 v = _mm512_mul_ps(q4_value_512(t), _mm512_set1_ps(inv));
    return GROUPED ? _mm512_fmadd_ps(v, _mm512_loadu_ps(scale), acc) : _mm512_add_ps(acc, v);
}

/* MR rows x NP panels (4 MR NP <= 16 int32 sums). */
T_AVX512VNNI AI void q4_tile_512(const int MR, const int NP, const int GROUPED, const fd_qweights *w, const q4_rows *a,
                             ptrdiff_t p0, float *c, ptrdiff_t ldc)
{
    ptrdiff_t groups = q_groups(w->k, w->block), pstride = q4_pairs(w->k, w->block) * 64;
    const uint8_t *wp = (const uint8_t *)w->w + p0 * pstride;
    const __m512i nib = _mm512_set1_epi8(15);
    __m512 acc[4][4];
    __m512i t[4][4][4], z[4];
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    for (int p = 0; p < NP; p++) z[p] = _mm512_set1_epi32(8);
    q4_chunk ch;
    q4_chunk_first(w, &ch);
    do {
        if (GROUPED)
            for (int p = 0; p < NP; p++)
                z[p] = _mm512_cvttps_epi32(_mm512_loadu_ps(w->zero + ((p0 + p) * groups + ch.g) * FD_QPANEL));
        for (int r = 0; r < MR; r++)
            for (int q = 0; q < 4; q++) {   /* T_p starts at -z' D_p */
                __m512i nd = _mm512_set1_epi32(a->info[r * a->ldi + ch.index].negd[q]);
                for (int p = 0; p < NP; p++) t[r][p][q] = _mm512_madd_epi16(z[p], nd);
            }
        const uint8_t *wc = wp + ch.pair * 64, *dc = a->dig + ch.pair * 32;
        for (ptrdiff_t pr = 0; pr < ch.pairs; pr++) {
            __m512i lo[4], hi[4];
            for (int p = 0; p < NP; p++) {
                __m512i v = _mm512_loadu_si512((const void *)(wc + p * pstride + pr * 64));
                lo[p] = _mm512_and_si512(v, nib);
                hi[p] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
            }
            for (int r = 0; r < MR; r++) {
                const uint8_t *d = dc + r * a->ldd + pr * 32;
                for (int q = 0; q < 4; q++) {
                    if (NP == 1) {
                        q4_dp_512(&t[r][0][q], lo[0], d + 4 * q);
                        q4_dp_512(&t[r][0][q], hi[0], d + 16 + 4 * q);
                        continue;
                    }
                    const __m512i dl = _mm512_set1_epi32(*(const int32_t *)(d + 4 * q));
                    const __m512i dh = _mm512_set1_epi32(*(const int32_t *)(d + 16 + 4 * q));
                    for (int p = 0; p < NP; p++) q4_dpr_512(&t[r][p][q], lo[p], dl);
                    for (int p = 0; p < NP; p++) q4_dpr_512(&t[r][p][q], hi[p], dh);
                }
            }
        }
        for (int r = 0; r < MR; r++)
            for (int p = 0; p < NP; p++)
                acc[r][p] = q4_accumulate_512(GROUPED, t[r][p], a->info[r * a->ldi + ch.index].inv,
                                              w->scale + ((p0 + p) * groups + ch.g) * FD_QPANEL, acc[r][p]);
    } while (q4_chunk_next(w, &ch));
    for (int p = 0; p < NP; p++)
        for (int r = 0; r < MR; r++) q4_store_512(w, p0 + p, GROUPED, acc[r][p], c + r * ldc);
}

T_AVX512VNNI static void q4_strip_512(int mr, const fd_qweights *w, const q4_rows *a, float *c, ptrdiff_t ldc)
{
    ptrdiff_t panels = q_panels(w->n);
    int npmax = mr == 1 ? 4 : mr == 2 ? 2 : 1;
    for (ptrdiff_t p0 = 0; p0 < panels; p0 += npmax) {
        int np = panels - p0 < npmax ? (int)(panels - p0) : npmax;
#define Q4_512(MR, NP)                                                  \
    case MR * 8 + NP:                                                   \
        if (w->zero) q4_tile_512(MR, NP, 1, w, a, p0, c, ldc);          \
        else q4_tile_512(MR, NP, 0, w, a, p0, c, ldc);                  \
        break;
        switch (mr * 8 + np) {
            Q4_512(1, 1) Q4_512(1, 2) Q4_512(1, 3) Q4_512(1, 4)
            Q4_512(2, 1) Q4_512(2, 2) Q4_512(3, 1) Q4_512(4, 1)
        }
#undef Q4_512
    }
}

/* ---------------------------------------------------------------- AVX2 and AVX-VNNI (256 bits) */

T_AVX2 static int q4_row_256(const fd_qweights *w, const float *x, uint8_t *dig, q4_info *info)
{
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), bias = _mm256_set1_epi32((int)0x80808080u);
    const __m256i tr = _mm256_setr_epi8(Q4_TRANSPOSE, Q4_TRANSPOSE), ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1), iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    q4_chunk ch;
    q4_chunk_first(w, &ch);
    do {
        const float *xc = x + ch.k0;
        __m256i vmax = _mm256_setzero_si256();
        for (ptrdiff_t kk = 0; kk < ch.len; kk += 8) {
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(ch.len - kk)), iota);
            vmax = _mm256_max_epi32(vmax, _mm256_and_si256(_mm256_maskload_epi32((const int *)(xc + kk), m), abs_mask));
        }
        int32_t lanes[8], amax = 0;
        _mm256_storeu_si256((__m256i *)lanes, vmax);
        for (int l = 0; l < 8; l++) amax = lanes[l] > amax ? lanes[l] : amax;
        float f, inv;
        if (q4_chunk_scale(amax, &f, &inv)) return 1;
        const __m256 vf = _mm256_set1_ps(f);
        __m256i dsum = _mm256_setzero_si256();
        uint8_t *d = dig + ch.pair * 32;
        for (ptrdiff_t kk = 0; kk < ch.len; kk += 8) {   /* 8 inputs = 2 quads = 32 bytes */
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(ch.len - kk)), iota);
            __m256i X = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_maskload_ps(xc + kk, m), vf));
            __m256i W = _mm256_shuffle_epi8(_mm256_xor_si256(_mm256_add_epi32(X, bias), bias), tr);
            dsum = _mm256_add_epi32(dsum, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, W), ones16));
            _mm256_storeu_si256((__m256i *)(d + kk * 4), W);
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(dsum), _mm256_extracti128_si256(dsum, 1));
        info[ch.index].inv = inv;
        _mm_storeu_si128((__m128i *)info[ch.index].negd, _mm_sub_epi32(_mm_setzero_si128(), s4));
    } while (q4_chunk_next(w, &ch));
    return 0;
}

T_AVXVNNI AI void q4_dp_256(__m256i *acc, __m256i u, __m256i d)
{
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(*acc) : "x"(u), "x"(d));
}

T_AVX2 AI __m256 q4_value_256(const __m256i t[4])
{
    __m256i a = _mm256_add_epi32(t[0], _mm256_slli_epi32(t[1], 8)), b = _mm256_add_epi32(t[2], _mm256_slli_epi32(t[3], 8));
    const __m256d k16 = _mm256_set1_pd(65536.0);
    __m256d lo = _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(b)), k16, _mm256_cvtepi32_pd(_mm256_castsi256_si128(a)));
    __m256d hi = _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(b, 1)), k16,
                                 _mm256_cvtepi32_pd(_mm256_extracti128_si256(a, 1)));
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
}

/* MR rows x NH halves of a panel (8 columns each, byte offset 32 h in a pair's 64 bytes), MR NH
   <= 2.  VNNI: vpdpbusd.  AVX2: vpmaddubsw pair sums (|.| <= 2 * 15 * 128) summed in int16 over 4
   quad pairs (<= 30720), then vpmaddwd by ones into the int32 sums. */
#define Q4_TILE_256(NAME, TARGET, VNNI)                                                                              \
    TARGET AI void NAME(const int MR, const int NH, const int GROUPED, const fd_qweights *w, const q4_rows *a,     \
                        int r0, ptrdiff_t h0, float *c, ptrdiff_t ldc)                                             \
    {                                                                                                             \
        ptrdiff_t groups = q_groups(w->k, w->block), pstride = q4_pairs(w->k, w->block) * 64;                     \
        const __m256i nib = _mm256_set1_epi8(15), ones16 = _mm256_set1_epi16(1);                                  \
        __m256 acc[2][2];                                                                                         \
        __m256i t[2][2][4], z[2];                                                                                 \
        const uint8_t *wh[2];                                                                                     \
        for (int h = 0; h < NH; h++) {                                                                            \
            wh[h] = (const uint8_t *)w->w + ((h0 + h) / 2) * pstride + ((h0 + h) % 2) * 32;                        \
            z[h] = _mm256_set1_epi32(8);                                                                          \
            for (int r = 0; r < MR; r++) acc[r][h] = _mm256_setzero_ps();                                         \
        }                                                                                                         \
        q4_chunk ch;                                                                                              \
        q4_chunk_first(w, &ch);                                                                                   \
        do {                                                                                                      \
            if (GROUPED)                                                                                          \
                for (int h = 0; h < NH; h++)                                                                      \
                    z[h] = _mm256_cvttps_epi32(_mm256_loadu_ps(w->zero + (((h0 + h) / 2) * groups + ch.g) * FD_QPANEL + \
                                                               ((h0 + h) % 2) * 8));                              \
            for (int r = 0; r < MR; r++)                                                                          \
                for (int q = 0; q < 4; q++)                                                                       \
                    for (int h = 0; h < NH; h++)                                                                  \
                        t[r][h][q] = _mm256_madd_epi16(z[h], _mm256_set1_epi32(a->info[(r0 + r) * a->ldi + ch.index].negd[q])); \
            const uint8_t *dc = a->dig + ch.pair * 32;                                                            \
            for (ptrdiff_t pr0 = 0; pr0 < ch.pairs; pr0 += 4) {                                                   \
                ptrdiff_t pend = ch.pairs - pr0 < 4 ? ch.pairs : pr0 + 4;                                          \
                __m256i s16[2][2][4];                                                                             \
                if (!VNNI)                                                                                        \
                    for (int r = 0; r < MR; r++)                                                                  \
                        for (int h = 0; h < NH; h++)                                                              \
                            for (int q = 0; q < 4; q++) s16[r][h][q] = _mm256_setzero_si256();                    \
                for (ptrdiff_t pr = pr0; pr < pend; pr++) {                                                       \
                    __m256i lo[2], hi[2];                                                                         \
                    for (int h = 0; h < NH; h++) {                                                                \
                        __m256i v = _mm256_loadu_si256((const __m256i *)(wh[h] + (ch.pair + pr) * 64));            \
                        lo[h] = _mm256_and_si256(v, nib);                                                         \
                        hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);                                   \
                    }                                                                                             \
                    for (int r = 0; r < MR; r++) {                                                                \
                        const uint8_t *d = dc + (r0 + r) * a->ldd + pr * 32;                                      \
                        for (int q = 0; q < 4; q++) {                                                             \
                            __m256i dl = _mm256_set1_epi32(*(const int32_t *)(d + 4 * q));                        \
                            __m256i dh = _mm256_set1_epi32(*(const int32_t *)(d + 16 + 4 * q));                   \
                            for (int h = 0; h < NH; h++) {                                                        \
                                if (VNNI) {                                                                       \
                                    Q4_DP_VNNI(&t[r][h][q], lo[h], dl);                                           \
                                    Q4_DP_VNNI(&t[r][h][q], hi[h], dh);                                           \
                                } else {                                                                          \
                                    s16[r][h][q] = _mm256_add_epi16(s16[r][h][q], _mm256_maddubs_epi16(lo[h], dl)); \
                                    s16[r][h][q] = _mm256_add_epi16(s16[r][h][q], _mm256_maddubs_epi16(hi[h], dh)); \
                                }                                                                                 \
                            }                                                                                     \
                        }                                                                                         \
                    }                                                                                             \
                }                                                                                                 \
                if (!VNNI)                                                                                        \
                    for (int r = 0; r < MR; r++)                                                                  \
                        for (int h = 0; h < NH; h++)                                                              \
                            for (int q = 0; q < 4; q++)                                                           \
                                t[r][h][q] = _mm256_add_epi32(t[r][h][q], _mm256_madd_epi16(s16[r][h][q], ones16)); \
            }                                                                                                     \
            for (int r = 0; r < MR; r++) {                                                                        \
                const __m256 inv = _mm256_set1_ps(a->info[(r0 + r) * a->ldi + ch.index].inv);                     \
                for (int h = 0; h < NH; h++) {                                                                    \
                    __m256 v = _mm256_mul_ps(q4_value_256(t[r][h]), inv);                                         \
                    acc[r][h] = GROUPED ? _mm256_fmadd_ps(v, _mm256_loadu_ps(w->scale + (((h0 + h) / 2) * groups + ch.g) * \
                                                                                         FD_QPANEL + ((h0 + h) % 2) * 8), \
                                                          acc[r][h])                                              \
                                        : _mm256_add_ps(acc[r][h], v);                                            \
                }                                                                                                 \
            }                                                                                                     \
        } while (q4_chunk_next(w, &ch));                                                                          \
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                                           \
        for (int h = 0; h < NH; h++) {                                                                            \
            ptrdiff_t left = w->n - (h0 + h) * 8;                                                                 \
            if (left <= 0) break;                                                                                 \
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), iota);                 \
            for (int r = 0; r < MR; r++) {                                                                        \
                __m256 y = acc[r][h];                                                                             \
                if (!GROUPED)                                                                                     \
                    y = _mm256_div_ps(y, _mm256_loadu_ps(w->scale + ((h0 + h) / 2) * FD_QPANEL + ((h0 + h) % 2) * 8)); \
                _mm256_maskstore_ps(c + (r0 + r) * ldc + (h0 + h) * 8, m, y);                                    \
            }                                                                                                     \
        }                                                                                                         \
    }

#define Q4_DP_VNNI(acc, u, d) q4_dp_256(acc, u, d)
Q4_TILE_256(q4_tile_avxvnni, T_AVXVNNI, 1)
#undef Q4_DP_VNNI
#define Q4_DP_VNNI(acc, u, d) (void)0
Q4_TILE_256(q4_tile_avx2, T_AVX2, 0)
#undef Q4_DP_VNNI

/* Rows in pairs against one half panel at a time (each weight load feeds two rows); a last
   single row against a whole panel at a time (WIDE; else half a panel).  TWO_ROWS 0: one row at
   a time (AVX2: its int16 and int32 sums of two rows would not fit 16 registers). */
#define Q4_STRIP_256(NAME, TARGET, TILE, TWO_ROWS, WIDE)                                                        \
    TARGET static void NAME(int mr, const fd_qweights *w, const q4_rows *a, float *c, ptrdiff_t ldc)       \
    {                                                                                                     \
        ptrdiff_t halves = (w->n + 7) / 8;                                                                \
        int r = 0;                                                                                        \
        for (; TWO_ROWS && r + 2 <= mr; r += 2)                                                           \
            for (ptrdiff_t h0 = 0; h0 < halves; h0++) {                                                   \
                if (w->zero) TILE(2, 1, 1, w, a, r, h0, c, ldc);                                          \
                else TILE(2, 1, 0, w, a, r, h0, c, ldc);                                                  \
            }                                                                                             \
        for (; r < mr; r++)                                                                               \
            for (ptrdiff_t h0 = 0; h0 < halves; h0 += 2) {                                                \
                int two = WIDE && halves - h0 >= 2;                                                       \
                if (!two && halves - h0 >= 2) { /* two halves, one at a time */                           \
                    if (w->zero) TILE(1, 1, 1, w, a, r, h0 + 1, c, ldc);                                  \
                    else TILE(1, 1, 0, w, a, r, h0 + 1, c, ldc);                                          \
                }                                                                                         \
                if (w->zero) {                                                                            \
                    if (two) TILE(1, 2, 1, w, a, r, h0, c, ldc);                                          \
                    else TILE(1, 1, 1, w, a, r, h0, c, ldc);                                              \
                } else {                                                                                  \
                    if (two) TILE(1, 2, 0, w, a, r, h0, c, ldc);                                          \
                    else TILE(1, 1, 0, w, a, r, h0, c, ldc);                                              \
                }                                                                                         \
            }                                                                                             \
    }

Q4_STRIP_256(q4_strip_avxvnni, T_AVXVNNI, q4_tile_avxvnni, 1, 1)
Q4_STRIP_256(q4_strip_avx2, T_AVX2, q4_tile_avx2, 0, 1)

/* ---------------------------------------------------------------- AMX (TDPBSUD) */

#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11)
#define FD_Q4_AMX 1
#define T_AMX __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,amx-tile,amx-int8")))
#define Q4_AMX_MIN_ROWS 2   /* one row: the VNNI strips are faster (docs/quantization.md) */
#define Q4_AMX_NP 2   /* panels per pass: C tiles 0-1 and 2-3 (chunks in turn), A tile 4, B tiles 5-6 */

/* The tiles take the digits as planes: A tile row 4 r + p is digit p of row r over 64 k (each
   chunk starts a new 64-k step; its padding is zero), B tile row t is quad t of the step
   (16 columns x 4 k, u8), unpacked from the nibbles into a 1 KiB buffer per panel; C[4 r + p]
   is the sum T_p + z' D_p of row r (the VNNI paths' integers, so the same bits after it). */
static ptrdiff_t q4_amx_steps(const fd_qweights *w)
{
    q4_chunk ch;
    ptrdiff_t steps = 0;
    q4_chunk_first(w, &ch);
    do steps += (ch.len + 63) / 64;
    while (q4_chunk_next(w, &ch));
    return steps;
}

/* Row x as digit planes a[p * lda + position] (lda = steps * 64, zero padded) and its info. */
T_AMX static int q4_row_amx(const fd_qweights *w, const float *x, uint8_t *a, ptrdiff_t lda, q4_info *info)
{
    const __m512i bias = _mm512_set1_epi32((int)0x80808080u);
    const __m512i tr = _mm512_broadcast_i32x4(_mm_setr_epi8(Q4_TRANSPOSE)), ones = _mm512_set1_epi8(1);
    ptrdiff_t pos = 0;
    q4_chunk ch;
    q4_chunk_first(w, &ch);
    do {
        const float *xc = x + ch.k0;
        float f, inv;
        if (q4_chunk_scale(q4_amax_512(xc, ch.len), &f, &inv)) return 1;
        const __m512 vf = _mm512_set1_ps(f);
        __m512i dsum = _mm512_setzero_si512();
        for (ptrdiff_t kk = 0; kk < (ch.len + 63) / 64 * 64; kk += 16) {
            __mmask16 m = ch.len - kk >= 16 ? 0xFFFF : ch.len > kk ? (__mmask16)((1u << (ch.len - kk)) - 1) : 0;
            __m512i X = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xc + kk), vf));
            __m512i W = _mm512_xor_si512(_mm512_add_epi32(X, bias), bias);
            dsum = _mm512_dpbusd_epi32(dsum, ones, _mm512_shuffle_epi8(W, tr));
            for (int p = 0; p < 4; p++)
                _mm_storeu_si128((__m128i *)(a + p * lda + pos + kk), _mm512_cvtepi32_epi8(_mm512_srli_epi32(W, 8 * p)));
        }
        __m128i s4 = _mm_add_epi32(_mm_add_epi32(_mm512_castsi512_si128(dsum), _mm512_extracti32x4_epi32(dsum, 1)),
                                   _mm_add_epi32(_mm512_extracti32x4_epi32(dsum, 2), _mm512_extracti32x4_epi32(dsum, 3)));
        info[ch.index].inv = inv;
        _mm_storeu_si128((__m128i *)info[ch.index].negd, _mm_sub_epi32(_mm_setzero_si128(), s4));
        pos += (ch.len + 63) / 64 * 64;
    } while (q4_chunk_next(w, &ch));
    return 0;
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} q4_tile_config;

/* C tiles 0-3 and A tile 4: 4 mr rows; B tiles 5-6: 16 rows; all 64 bytes wide. */
T_AMX static void q4_amx_configure(int mr)
{
    q4_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 7; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = (uint8_t)(t < 5 ? 4 * mr : 16);
    }
    __asm__ volatile("" ::: "memory");   /* gcc's ldtilecfg asm names only 8 of the 64 bytes it reads */
    _tile_loadconfig(&cfg);
}

/* Pairs [t0, t1) of a chunk's packed nibbles into B rows 2t, 2t + 1 (u8). */
T_AMX AI void q4_amx_unpack(const uint8_t *wc, ptrdiff_t t0, ptrdiff_t t1, uint8_t *b)
{
    const __m512i nib = _mm512_set1_epi8(15);
    for (ptrdiff_t t = t0; t < t1; t++) {
        __m512i v = _mm512_loadu_si512((const void *)(wc + t * 64));
        _mm512_store_si512((void *)(b + (t - t0) * 128), _mm512_and_si512(v, nib));
        _mm512_store_si512((void *)(b + (t - t0) * 128 + 64), _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
    }
}

/* One 64-k step of the tiles: where its digits start in the planes, its quad pairs [t0, t1) of
   chunk `chunk` (whose first pair is `pair`), and whether it ends the chunk. */
typedef struct {
    ptrdiff_t apos, pair, t0, t1;
    int chunk, last;
} q4_step;

/* The chunk's sums (C tiles in cbuf) finished as the VNNI paths finish theirs: acc += ... */
T_AMX AI void q4_amx_finish(const int NP, const int GROUPED, int mr, const fd_qweights *w, const q4_chunk *ch,
                            const q4_info *info, ptrdiff_t ldi, ptrdiff_t p0, const int32_t *cbuf,
                            __m512 acc[Q4ROWS][Q4_AMX_NP])
{
    ptrdiff_t groups = q_groups(w->k, w->block);
    for (int p = 0; p < NP; p++) {
        __m512i z = GROUPED ? _mm512_cvttps_epi32(_mm512_loadu_ps(w->zero + ((p0 + p) * groups + ch->g) * FD_QPANEL))
                            : _mm512_set1_epi32(8);
        for (int r = 0; r < mr; r++) {
            const q4_info *in = info + r * ldi + ch->index;
            __m512i t[4];
            for (int q = 0; q < 4; q++)
                t[q] = _mm512_add_epi32(_mm512_loadu_si512((const void *)(cbuf + p * 256 + (4 * r + q) * 16)),
                                        _mm512_madd_epi16(z, _mm512_set1_epi32(in->negd[q])));
            acc[r][p] = q4_accumulate_512(GROUPED, t, in->inv, w->scale + ((p0 + p) * groups + ch->g) * FD_QPANEL,
                                          acc[r][p]);
        }
    }
}

/* mr rows x NP (<= 2) panels from panel p0.  Software-pipelined so that the tile unit never
   waits: the B buffers of step j + 1 are unpacked while step j's TDPBSUDs run, and each chunk's
   C tiles (0-1 for even chunks, 2-3 for odd ones) are stored and finished while the next
   chunk's steps run.  A: tile 4, B: tiles 5-6. */
T_AMX AI void q4_amx_panels(const int NP, const int GROUPED, int mr, const fd_qweights *w, const q4_step *steps,
                            ptrdiff_t nsteps, const q4_chunk *chunks, const uint8_t *a, ptrdiff_t lda,
                            const q4_info *info, ptrdiff_t ldi, ptrdiff_t p0, float *c, ptrdiff_t ldc, uint8_t *bbuf,
                            int32_t *cbuf)
{
    ptrdiff_t pstride = q4_pairs(w->k, w->block) * 64;
    const uint8_t *wp = (const uint8_t *)w->w + p0 * pstride;
    __m512 acc[Q4ROWS][Q4_AMX_NP];
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    for (int p = 0; p < NP; p++) q4_amx_unpack(wp + p * pstride + steps[0].pair * 64, steps[0].t0, steps[0].t1, bbuf + p * 1024);
    for (ptrdiff_t j = 0; j < nsteps; j++) {
        const q4_step *st = steps + j;
        uint8_t *bj = bbuf + (j % 2) * 2048, *bn = bbuf + ((j + 1) % 2) * 2048;
        int odd = st->chunk % 2;
        __asm__ volatile("" ::: "memory");   /* the tile loads read the buffers (their asm names no memory) */
        if (st->t0 == 0) {
            if (odd) {
                _tile_zero(2);
                if (NP > 1) _tile_zero(3);
            } else {
                _tile_zero(0);
                if (NP > 1) _tile_zero(1);
            }
        }
        _tile_loadd(4, a + st->apos, lda);
        _tile_loadd(5, bj, 64);
        if (NP > 1) _tile_loadd(6, bj + 1024, 64);
        if (odd) {
            _tile_dpbsud(2, 4, 5);
            if (NP > 1) _tile_dpbsud(3, 4, 6);
        } else {
            _tile_dpbsud(0, 4, 5);
            if (NP > 1) _tile_dpbsud(1, 4, 6);
        }
        if (j + 1 < nsteps)
            for (int p = 0; p < NP; p++) q4_amx_unpack(wp + p * pstride + st[1].pair * 64, st[1].t0, st[1].t1, bn + p * 1024);
        if (st->last && st->chunk > 0) {   /* the previous chunk's tiles are done: finish them */
            if (odd) {
                _tile_stored(0, cbuf, 64);
                if (NP > 1) _tile_stored(1, cbuf + 256, 64);
            } else {
                _tile_stored(2, cbuf, 64);
                if (NP > 1) _tile_stored(3, cbuf + 256, 64);
            }
            __asm__ volatile("" ::: "memory");
            q4_amx_finish(NP, GROUPED, mr, w, &chunks[st->chunk - 1], info, ldi, p0, cbuf, acc);
        }
    }
    int lastc = steps[nsteps - 1].chunk;
    if (lastc % 2) {
        _tile_stored(2, cbuf, 64);
        if (NP > 1) _tile_stored(3, cbuf + 256, 64);
    } else {
        _tile_stored(0, cbuf, 64);
        if (NP > 1) _tile_stored(1, cbuf + 256, 64);
    }
    __asm__ volatile("" ::: "memory");
    q4_amx_finish(NP, GROUPED, mr, w, &chunks[lastc], info, ldi, p0, cbuf, acc);
    for (int p = 0; p < NP; p++)
        for (int r = 0; r < mr; r++) q4_store_512(w, p0 + p, GROUPED, acc[r][p], c + r * ldc);
}

/* The whole call on tiles: strips of up to Q4ROWS rows, tiles configured per call (and for the
   last strip's rows) and released at the end.  Returns FD_OK or FD_ERR_NOMEM. */
T_AMX static int q4_dense_amx(const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx, const fd_act *act,
                              const float *bias, float *c, ptrdiff_t ldc)
{
    ptrdiff_t nchunks = q4_chunks(w->k, w->block), nsteps = q4_amx_steps(w), lda = nsteps * 64, panels = q_panels(w->n);
    size_t abytes = (size_t)(4 * Q4ROWS * lda), ibytes = sizeof(q4_info) * (size_t)(Q4ROWS * nchunks);
    size_t tbytes = sizeof(q4_step) * (size_t)nsteps + sizeof(q4_chunk) * (size_t)nchunks;
    size_t bytes = 64 + 4 * 1024 + 2 * 1024 + abytes + ibytes + tbytes;
    _Alignas(64) uint8_t local[Q4STACK];
    uint8_t *raw = bytes <= sizeof local ? local : (uint8_t *)malloc(bytes);
    if (!raw) return FD_ERR_NOMEM;
    uint8_t *bbuf = (uint8_t *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    int32_t *cbuf = (int32_t *)(bbuf + 4 * 1024);
    uint8_t *a = (uint8_t *)cbuf + 2 * 1024;
    q4_info *info = (q4_info *)(a + abytes);
    q4_step *steps = (q4_step *)(info + Q4ROWS * nchunks);
    q4_chunk *chunks = (q4_chunk *)(steps + nsteps);
    {
        q4_chunk ch;
        ptrdiff_t j = 0, pos = 0;
        q4_chunk_first(w, &ch);
        do {
            chunks[ch.index] = ch;
            for (ptrdiff_t t0 = 0; t0 < ch.pairs; t0 += 8, j++) {
                steps[j] = (q4_step){pos + t0 * 8, ch.pair, t0, ch.pairs - t0 < 8 ? ch.pairs : t0 + 8, (int)ch.index,
                                     t0 + 8 >= ch.pairs};
            }
            pos += (ch.len + 63) / 64 * 64;
        } while (q4_chunk_next(w, &ch));
    }
    int configured = 0;
    for (ptrdiff_t i0 = 0; i0 < m; i0 += Q4ROWS) {
        int mr = m - i0 < Q4ROWS ? (int)(m - i0) : Q4ROWS, float_row[Q4ROWS];
        memset(a, 0, (size_t)(4 * mr * lda));
        for (int r = 0; r < mr; r++) {
            float_row[r] = q4_row_amx(w, x + (i0 + r) * ldx, a + 4 * r * lda, lda, info + r * nchunks);
            if (float_row[r]) {   /* the tiles run it on zeros; q4_row_float writes it */
                memset(a + 4 * r * lda, 0, (size_t)(4 * lda));
                memset(info + r * nchunks, 0, sizeof(q4_info) * (size_t)nchunks);
            }
        }
        if (configured != mr) q4_amx_configure(configured = mr);
        float *cs = c + i0 * ldc;
        for (ptrdiff_t p0 = 0; p0 < panels; p0 += Q4_AMX_NP) {
#define Q4_AMX(NP, G) q4_amx_panels(NP, G, mr, w, steps, nsteps, chunks, a, lda, info, nchunks, p0, cs, ldc, bbuf, cbuf)
            if (panels - p0 >= 2) {
                if (w->zero) Q4_AMX(2, 1);
                else Q4_AMX(2, 0);
            } else {
                if (w->zero) Q4_AMX(1, 1);
                else Q4_AMX(1, 0);
            }
#undef Q4_AMX
        }
        for (int r = 0; r < mr; r++)
            if (float_row[r]) q4_row_float_fma(w, x + (i0 + r) * ldx, cs + r * ldc);
        fd_epilogue_f32(act, bias, cs, ldc, cs, ldc, mr, w->n);
    }
    _tile_release();
    if (raw != local) free(raw);
    return FD_OK;
}
#else
#define FD_Q4_AMX 0
#endif

#endif /* FD_Q_X86 */

/* ---------------------------------------------------------------- dispatch */

typedef int (*q4_row_fn)(const fd_qweights *, const float *, uint8_t *, q4_info *);
typedef void (*q4_strip_fn)(int, const fd_qweights *, const q4_rows *, float *, ptrdiff_t);
typedef void (*q4_float_fn)(const fd_qweights *, const float *, float *);

typedef struct {
    q4_row_fn row;
    q4_strip_fn strip;
    q4_float_fn row_float;
} q4_path;

static q4_path q4_path_of(fd_qisa isa)
{
#if FD_Q_X86 && defined(__GNUC__)
    if (isa == FD_QISA_AVX2) return (q4_path){q4_row_256, q4_strip_avx2, q4_row_float_fma};
    if (isa == FD_QISA_AVX_VNNI) return (q4_path){q4_row_256, q4_strip_avxvnni, q4_row_float_fma};
    if (isa == FD_QISA_AVX512_VNNI || isa == FD_QISA_AMX) return (q4_path){q4_row_512, q4_strip_512, q4_row_float_fma};
#endif
    (void)isa;
    return (q4_path){q4_row_c, q4_strip_c, q4_row_float_c};
}

int fd_q4_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                const fd_act *act, const float *bias, float *c, ptrdiff_t ldc)
{
    if (w->recipe == FD_Q4_FLOAT) return fd_q4f_dense(isa, w, m, x, ldx, act, bias, c, ldc);
    if (w->bits != 4 || w->recipe != FD_Q4_DIGITS || w->k < 1 || w->block < 1 || (unsigned)isa >= FD_QISA_COUNT ||
        !fd_qisa_supported(isa))
        return FD_ERR_ARG;
#if FD_Q_X86 && defined(__GNUC__) && FD_Q4_AMX
    if (isa == FD_QISA_AMX && m >= Q4_AMX_MIN_ROWS) return q4_dense_amx(w, m, x, ldx, act, bias, c, ldc);
#endif
    q4_path path = q4_path_of(isa);
    ptrdiff_t chunks = q4_chunks(w->k, w->block);
    q4_rows a;
    a.ldd = q4_pairs(w->k, w->block) * 32 + 64;   /* + 64: the last chunk's whole-vector stores */
    a.ldi = chunks;
    size_t bytes = (size_t)(Q4ROWS * a.ldd) + sizeof(q4_info) * (size_t)(Q4ROWS * chunks);
    _Alignas(64) uint8_t local[Q4STACK];
    uint8_t *buf = bytes <= sizeof local ? local : (uint8_t *)malloc(bytes);
    if (!buf) return FD_ERR_NOMEM;
    a.info = (q4_info *)buf;
    a.dig = buf + sizeof(q4_info) * (size_t)(Q4ROWS * chunks);
    for (ptrdiff_t i0 = 0; i0 < m; i0 += Q4ROWS) {
        int mr = m - i0 < Q4ROWS ? (int)(m - i0) : Q4ROWS;
        for (int r = 0; r < mr; r++) {
            a.float_row[r] = path.row(w, x + (i0 + r) * ldx, a.dig + r * a.ldd, a.info + r * a.ldi);
            if (a.float_row[r]) {   /* the strip runs it on zeros; q4_row_float writes it */
                memset(a.dig + r * a.ldd, 0, (size_t)a.ldd);
                memset(a.info + r * a.ldi, 0, sizeof(q4_info) * (size_t)chunks);
            }
        }
        float *cs = c + i0 * ldc;
        path.strip(mr, w, &a, cs, ldc);
        for (int r = 0; r < mr; r++)
            if (a.float_row[r]) path.row_float(w, x + (i0 + r) * ldx, cs + r * ldc);
        fd_epilogue_f32(act, bias, cs, ldc, cs, ldc, mr, w->n);
    }
    if (buf != local) free(buf);
    return FD_OK;
}
