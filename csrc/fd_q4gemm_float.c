/* fd_q4gemm_float.c -- the int4 "float" recipe (FD_Q4_FLOAT, fd_qgemm.h): Keras's int4 Dense
 * with float inputs on float FMAs, for the paths where it beats the digits recipe of
 * fd_q4gemm.c (AVX2, AVX-VNNI, C: one FMA per weight and row there, against four byte products
 * per weight on 256-bit integer units; docs/quantization.md).  Reached through fd_q4_* of
 * fd_q4gemm.c when the weights were packed for this recipe.
 *
 * int4: per panel of 16 columns and per group of `block` rows, rows in pairs, one byte per
 * column holding the pair's two nibbles, each stored as q + 8 (0..15); vpmovzxbd widens 16 bytes
 * to 16 lanes.  Per group, x * (q - zero) is summed with one FMA per k (q - zero exact), and
 * the group's sum times its scale added to the row's: one multiply per group instead of one
 * per weight (Keras rounds each weight (q - zero) * scale first; both are within float
 * rounding of the exact product).  Same order, so same bits, on every path (fmaf in C).
 */
#include "fd_q4gemm_float.h"

#include "fd_qsimd.h"
#include "fd_status.h"

#include <math.h>
#include <string.h>

#define Q4ROWS 4                 /* int4 rows per strip */

ptrdiff_t fd_q4f_packed_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
{
    return q_panels(n) * q_groups(k, block) * ((block + 1) / 2) * FD_QPANEL;
}

void fd_q4f_pack(const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block,
                 const float *scale, const int8_t *zero, uint8_t *wp, float *scale_out, float *zero_out)
{
    ptrdiff_t groups = q_groups(k, block), half = (block + 1) / 2;
    ptrdiff_t pstride = groups * half * FD_QPANEL;
    memset(wp, 0x88, (size_t)fd_q4f_packed_size(k, n, block));   /* biased zeros */
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        ptrdiff_t g = kk / block, t = (kk % block) / 2, high = (kk % block) % 2;
        for (ptrdiff_t j = 0; j < n; j++) {
            uint8_t *byte = wp + (j / FD_QPANEL) * pstride + (g * half + t) * FD_QPANEL + j % FD_QPANEL;
            uint8_t nib = (uint8_t)((q[kk * ldq + j] + 8) & 15);
            *byte = (uint8_t)(high ? (*byte & 0x0F) | (nib << 4) : (*byte & 0xF0) | nib);
        }
    }
    fd_q4_pack_params(k, n, block, scale, zero, scale_out, zero_out);
}

void fd_q4_pack_params(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block, const float *scale, const int8_t *zero,
                       float *scale_out, float *zero_out)
{
    ptrdiff_t groups = q_groups(k, block), npad = q_panels(n) * FD_QPANEL;
    for (ptrdiff_t g = 0; g < groups; g++)
        for (ptrdiff_t j = 0; j < npad; j++) {
            /* padded columns: scale 1 (a harmless divisor per unit) or 0 with zero 8 (weight 0) */
            ptrdiff_t at = ((j / FD_QPANEL) * groups + g) * FD_QPANEL + j % FD_QPANEL;   /* panel-major */
            scale_out[at] = j < n ? scale[g * n + j] : (zero ? 0.0f : 1.0f);
            if (zero) zero_out[at] = 8.0f + (j < n ? (float)zero[g * n + j] : 0.0f);
        }
}

void fd_q4f_panels_view(const fd_qweights *w, ptrdiff_t p0, fd_qweights *v)
{
    ptrdiff_t groups = q_groups(w->k, w->block);
    v->w = (const uint8_t *)w->w + p0 * groups * ((w->block + 1) / 2) * FD_QPANEL;
    v->scale = w->scale + p0 * groups * FD_QPANEL;
    v->zero = w->zero ? w->zero + p0 * groups * FD_QPANEL : NULL;
}

/* int4 sums, the same on every path: per group, acc_g = sum x * (q - zero) with one FMA per k,
   then acc = fma(acc_g, scale, acc); one scale per unit: acc = sum x * q, divided at the end. */
static void q4_strip_c(int mr, const fd_qweights *w, const float *x, ptrdiff_t ldx, float *c, ptrdiff_t ldc)
{
    ptrdiff_t groups = q_groups(w->k, w->block), half = (w->block + 1) / 2, panels = q_panels(w->n);
    ptrdiff_t pstride = groups * half * FD_QPANEL;
    const uint8_t *wp = (const uint8_t *)w->w;
    for (int r = 0; r < mr; r++)
        for (ptrdiff_t p = 0; p < panels; p++) {
            float acc[FD_QPANEL] = {0};
            for (ptrdiff_t g = 0; g < groups; g++) {
                ptrdiff_t k0 = g * w->block, len = w->k - k0 < w->block ? w->k - k0 : w->block;
                const uint8_t *base = wp + p * pstride + g * half * FD_QPANEL;
                const float *zb = w->zero ? w->zero + (p * groups + g) * FD_QPANEL : NULL;
                float part[FD_QPANEL] = {0};
                for (ptrdiff_t kk = 0; kk < len; kk++) {
                    float xv = x[r * ldx + k0 + kk];
                    const uint8_t *row = base + (kk / 2) * FD_QPANEL;
                    for (int col = 0; col < FD_QPANEL; col++) {
                        float u = (float)(kk % 2 ? row[col] >> 4 : row[col] & 15);
                        part[col] = fmaf(xv, u - (zb ? zb[col] : 8.0f), part[col]);   /* x * (q - zero) */
                    }
                }
                for (int col = 0; col < FD_QPANEL; col++)
                    acc[col] = zb ? fmaf(part[col], w->scale[(p * groups + g) * FD_QPANEL + col], acc[col]) : part[col];
            }
            for (int col = 0; col < FD_QPANEL && p * FD_QPANEL + col < w->n; col++) {
                ptrdiff_t j = p * FD_QPANEL + col;
                c[r * ldc + j] = w->zero ? acc[col] : acc[col] / w->scale[j];
            }
        }
}

#if FD_Q_X86 && defined(__GNUC__)


/* Nibble u (= q + 8) to float without a conversion: (u | 2^23 bits) is the float 2^23 + u, so
   (2^23 + u) - (2^23 + zero + 8) = q - zero exactly.  The high nibble is masked in place, giving
   16 (q - zero), and multiplied by x / 16: the same product as x (q - zero), so the same sums as
   the other paths (for |x| >= 2^-122, where x / 16 is exact). */
T_AVX512 AI void q4_tile_512(const int MR, const int NP, const int GROUPED, const fd_qweights *w,
                             const float *x, ptrdiff_t ldx, ptrdiff_t p0, float *c, ptrdiff_t ldc)
{
    ptrdiff_t groups = q_groups(w->k, w->block), half = (w->block + 1) / 2;
    ptrdiff_t pstride = groups * half * FD_QPANEL;
    const uint8_t *wp = (const uint8_t *)w->w + p0 * pstride;
    const __m512 magic = _mm512_set1_ps(8388608.0f);
    const __m512i lo_mask = _mm512_set1_epi32(0x0F), hi_mask = _mm512_set1_epi32(0xF0);
    const __m512i mi = _mm512_castps_si512(magic);
    __m512 acc[4][4], part[4][4], zlo[4], zhi[4];
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    for (int p = 0; p < NP; p++) {   /* one scale per unit: q = u - 8 */
        zlo[p] = _mm512_set1_ps(8388608.0f + 8.0f);
        zhi[p] = _mm512_set1_ps(8388608.0f + 128.0f);
    }
    for (ptrdiff_t g = 0; g < groups; g++) {
        ptrdiff_t k0 = g * w->block, len = w->k - k0 < w->block ? w->k - k0 : w->block;
        const uint8_t *base = wp + g * half * FD_QPANEL;
        for (int r = 0; r < MR; r++)
            for (int p = 0; p < NP; p++) part[r][p] = GROUPED ? _mm512_setzero_ps() : acc[r][p];
        if (GROUPED)
            for (int p = 0; p < NP; p++) {
                __m512 zb = _mm512_loadu_ps(w->zero + ((p0 + p) * groups + g) * FD_QPANEL);
                zlo[p] = _mm512_add_ps(magic, zb);
                zhi[p] = _mm512_fmadd_ps(zb, _mm512_set1_ps(16.0f), magic);   /* exact: integers < 2^24 */
            }
        for (ptrdiff_t kk = 0; kk < len; kk += 2) {
            int two = len - kk >= 2;
            __m512 wlo[4], whi[4];
            for (int p = 0; p < NP; p++) {
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(base + p * pstride + kk / 2 * FD_QPANEL)));
                wlo[p] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_ternarylogic_epi32(v, lo_mask, mi, 0xEA)), zlo[p]);
                whi[p] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_ternarylogic_epi32(v, hi_mask, mi, 0xEA)), zhi[p]);
            }
            for (int r = 0; r < MR; r++) {
                __m512 x0 = _mm512_set1_ps(x[r * ldx + k0 + kk]);
                for (int p = 0; p < NP; p++) part[r][p] = _mm512_fmadd_ps(x0, wlo[p], part[r][p]);
                if (two) {
                    __m512 x1 = _mm512_set1_ps(x[r * ldx + k0 + kk + 1] * 0.0625f);
                    for (int p = 0; p < NP; p++) part[r][p] = _mm512_fmadd_ps(x1, whi[p], part[r][p]);
                }
            }
        }
        for (int p = 0; p < NP; p++) {
            __m512 sc = GROUPED ? _mm512_loadu_ps(w->scale + ((p0 + p) * groups + g) * FD_QPANEL) : magic;
            for (int r = 0; r < MR; r++)
                acc[r][p] = GROUPED ? _mm512_fmadd_ps(part[r][p], sc, acc[r][p]) : part[r][p];
        }
    }
    for (int p = 0; p < NP; p++)
        for (int r = 0; r < MR; r++) q4_store_512(w, p0 + p, GROUPED, acc[r][p], c + r * ldc);
}

T_AVX512 static void q4_strip_512(int mr, const fd_qweights *w, const float *x, ptrdiff_t ldx, float *c, ptrdiff_t ldc)
{
    ptrdiff_t panels = q_panels(w->n);
    int npmax = mr == 1 ? 4 : mr == 2 ? 2 : 1;
    for (ptrdiff_t p0 = 0; p0 < panels; p0 += npmax) {
        int np = panels - p0 < npmax ? (int)(panels - p0) : npmax;
#define Q4_512(MR, NP)                                                        \
    case MR * 8 + NP:                                                         \
        if (w->zero) q4_tile_512(MR, NP, 1, w, x, ldx, p0, c, ldc);           \
        else q4_tile_512(MR, NP, 0, w, x, ldx, p0, c, ldc);                   \
        break;
        switch (mr * 8 + np) {
            Q4_512(1, 1) Q4_512(1, 2) Q4_512(1, 3) Q4_512(1, 4)
            Q4_512(2, 1) Q4_512(2, 2) Q4_512(3, 1) Q4_512(4, 1)
        }
#undef Q4_512
    }
}

T_AVX2 AI void q4_tile_256(const int MR, const int NP, const int GROUPED, const fd_qweights *w,
                           const float *x, ptrdiff_t ldx, ptrdiff_t p0, float *c, ptrdiff_t ldc)
{
    ptrdiff_t groups = q_groups(w->k, w->block), half = (w->block + 1) / 2;
    ptrdiff_t pstride = groups * half * FD_QPANEL;
    const uint8_t *wp = (const uint8_t *)w->w + p0 * pstride;
    __m256 acc[4][4], part[4][4], zb[4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < 2 * NP; v++) acc[r][v] = _mm256_setzero_ps();
    for (int v = 0; v < 2 * NP; v++) zb[v] = _mm256_set1_ps(8.0f);
    for (ptrdiff_t g = 0; g < groups; g++) {
        ptrdiff_t k0 = g * w->block, len = w->k - k0 < w->block ? w->k - k0 : w->block;
        const uint8_t *base = wp + g * half * FD_QPANEL;
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < 2 * NP; v++) part[r][v] = GROUPED ? _mm256_setzero_ps() : acc[r][v];
        if (GROUPED)
            for (int v = 0; v < 2 * NP; v++) zb[v] = _mm256_loadu_ps(w->zero + ((p0 + v / 2) * groups + g) * FD_QPANEL + 8 * (v % 2));
        for (ptrdiff_t kk = 0; kk < len; kk += 2) {
            int two = len - kk >= 2;
            __m256 wlo[4], whi[4];
            for (int v = 0; v < 2 * NP; v++) {
                const uint8_t *src = base + (v / 2) * pstride + kk / 2 * FD_QPANEL + (v % 2) * 8;
                __m256i u = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)src));
                wlo[v] = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(u, _mm256_set1_epi32(15))), zb[v]);
                whi[v] = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(u, 4)), zb[v]);
            }
            for (int r = 0; r < MR; r++) {
                __m256 x0 = _mm256_set1_ps(x[r * ldx + k0 + kk]);
                for (int v = 0; v < 2 * NP; v++) part[r][v] = _mm256_fmadd_ps(x0, wlo[v], part[r][v]);
                if (two) {
                    __m256 x1 = _mm256_set1_ps(x[r * ldx + k0 + kk + 1]);
                    for (int v = 0; v < 2 * NP; v++) part[r][v] = _mm256_fmadd_ps(x1, whi[v], part[r][v]);
                }
            }
        }
        for (int v = 0; v < 2 * NP; v++) {
            __m256 sc = GROUPED ? _mm256_loadu_ps(w->scale + ((p0 + v / 2) * groups + g) * FD_QPANEL + 8 * (v % 2)) : zb[v];
            for (int r = 0; r < MR; r++)
                acc[r][v] = GROUPED ? _mm256_fmadd_ps(part[r][v], sc, acc[r][v]) : part[r][v];
        }
    }
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int v = 0; v < 2 * NP; v++) {
        ptrdiff_t left = w->n - p0 * FD_QPANEL - 8 * v;
        if (left <= 0) break;
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), iota);
        for (int r = 0; r < MR; r++) {
            __m256 y = acc[r][v];
            if (!GROUPED) y = _mm256_div_ps(y, _mm256_loadu_ps(w->scale + p0 * FD_QPANEL + 8 * v));
            _mm256_maskstore_ps(c + r * ldc + p0 * FD_QPANEL + 8 * v, m, y);
        }
    }
}

T_AVX2 static void q4_strip_256(int mr, const fd_qweights *w, const float *x, ptrdiff_t ldx, float *c, ptrdiff_t ldc)
{
    ptrdiff_t panels = q_panels(w->n);
    int npmax = mr == 1 ? 2 : 1;
    for (ptrdiff_t p0 = 0; p0 < panels; p0 += npmax) {
        int np = panels - p0 < npmax ? (int)(panels - p0) : npmax;
#define Q4_256(MR, NP)                                                      \
    case MR * 8 + NP:                                                       \
        if (w->zero) q4_tile_256(MR, NP, 1, w, x, ldx, p0, c, ldc);         \
        else q4_tile_256(MR, NP, 0, w, x, ldx, p0, c, ldc);                 \
        break;
        switch (mr * 8 + np) { Q4_256(1, 1) Q4_256(1, 2) Q4_256(2, 1) Q4_256(3, 1) Q4_256(4, 1) }
#undef Q4_256
    }
}

#endif /* FD_Q_X86 */

typedef void (*q4_strip_fn)(int, const fd_qweights *, const float *, ptrdiff_t, float *, ptrdiff_t);

static q4_strip_fn q4_strip_of(fd_qisa isa)
{
#if FD_Q_X86 && defined(__GNUC__)
    if (isa == FD_QISA_AVX2 || isa == FD_QISA_AVX_VNNI) return q4_strip_256;
    if (isa == FD_QISA_AVX512_VNNI || isa == FD_QISA_AMX) return q4_strip_512;
#endif
    (void)isa;
    return q4_strip_c;
}

int fd_q4f_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                 const fd_act *act, const float *bias, float *c, ptrdiff_t ldc)
{
    if (w->bits != 4 || w->k < 1 || w->block < 1 || (unsigned)isa >= FD_QISA_COUNT || !fd_qisa_supported(isa))
        return FD_ERR_ARG;
    q4_strip_fn strip = q4_strip_of(isa);
    for (ptrdiff_t i0 = 0; i0 < m; i0 += Q4ROWS) {
        int mr = m - i0 < Q4ROWS ? (int)(m - i0) : Q4ROWS;
        float *cs = c + i0 * ldc;
        strip(mr, w, x + i0 * ldx, ldx, cs, ldc);
        fd_epilogue_f32(act, bias, cs, ldc, cs, ldc, mr, w->n);
    }
    return FD_OK;
}
