/* fd_q4gemm.c -- the Keras 3 int4 Dense kernel with float inputs (see fd_qgemm.h).
 *
 * Keras multiplies x by the float32 kernel it rebuilds, w = (q - zero) * scale per group of
 * `block` input rows (or w = q, the sums divided by one kernel_scale per unit).  Here every
 * weight is that same float32 value, looked up from its nibble, and x * w is summed with one
 * FMA per weight: the products are Keras's, only the order of the sums differs.
 *
 * The vectors run along k, not along the units: lane l of a column's 16-lane sum collects
 * k = 16 v + l (v = 0, 1, ... within each group), so a column's 16 possible weights of a group
 * form one zmm table, T[u] = (u - 8 - zero) * scale (computed once, at pack time), and one
 * vpermps (which reads the low 4 bits of each index lane and ignores the rest) turns 16
 * nibbles into 16 weights.  The packed kernel holds, per panel of 16 columns and per group, a
 * 1 KiB block of the 16 columns' tables, then per chunk of up to 128 rows of the group a 1 KiB
 * block of 64 bytes per column: nibble t of dword l is u = q + 8 for row 16 t + l of the chunk.
 * A shift by 4 t puts nibble t in the low bits of every lane: per 16 weights a vpermps (port
 * 5), an FMA and 7/8 of a shift, where unpacking in place took a widen, a mask and a
 * subtraction (and the old layout 4 FMA chains at one row).  x is read as plain vectors (no broadcasts); rows of
 * a group past its end read x as 0 (masked loads), so their weights add nothing.  At the end
 * each column's 16 lanes are added in a fixed tree: (l, l + 8), (l, l + 4), (l, l + 2), (0, 1).
 *
 * Same table values, same FMA chains, same tree on every path (fmaf in C), so the same bits
 * for any rows, threads and path.
 */
#include "fd_qgemm.h"

#include "fd_status.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FD_Q4_X86 1
#include <immintrin.h>
#else
#define FD_Q4_X86 0
#endif

#define Q4ROWS 4     /* rows per strip: each strip reads every packed weight once */
#define Q4CHUNK 128  /* rows of a group per 64-byte column chunk (8 vectors of 16 nibbles) */
#define Q4OVER 64    /* bytes past the packed kernel that the offset loads may read */
#define AI static inline __attribute__((always_inline))

static ptrdiff_t q_panels(ptrdiff_t n) { return (n + FD_QPANEL - 1) / FD_QPANEL; }
static ptrdiff_t q_groups(ptrdiff_t k, ptrdiff_t block) { return (k + block - 1) / block; }
static ptrdiff_t q_cdiv(ptrdiff_t a, ptrdiff_t b) { return (a + b - 1) / b; }

/* The packed layout's shape, in blocks of 16 columns x 64 bytes (1 KiB): per panel, per group,
   one block of the columns' tables (16 floats each) and the group's chunks (the last group may
   have fewer); a panel is `blocks` blocks. */
typedef struct {
    ptrdiff_t groups, per_group, blocks;
} q4_shape;

#define Q4BLOCK (FD_QPANEL * 64)

static q4_shape q4_shape_of(ptrdiff_t k, ptrdiff_t block)
{
    q4_shape s;
    s.groups = q_groups(k, block);
    s.per_group = q_cdiv(block, Q4CHUNK);
    s.blocks = (s.groups - 1) * (1 + s.per_group) + 1 + q_cdiv(k - (s.groups - 1) * block, Q4CHUNK);
    return s;
}

/* Group g's block of tables in a panel; its chunks follow. */
static ptrdiff_t q4_group_at(const q4_shape *s, ptrdiff_t g) { return g * (1 + s->per_group) * Q4BLOCK; }

/* ---------------------------------------------------------------- packing */

ptrdiff_t fd_q4_packed_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
{
    return q_panels(n) * q4_shape_of(k, block).blocks * Q4BLOCK + Q4OVER;
}

ptrdiff_t fd_q4_params_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block)
{
    return q_groups(k, block) * q_panels(n) * FD_QPANEL;
}

void fd_q4_pack(const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block,
                const float *scale, const int8_t *zero, uint8_t *wp, float *scale_out, float *zero_out)
{
    q4_shape sh = q4_shape_of(k, block);
    ptrdiff_t npad = q_panels(n) * FD_QPANEL, pstride = sh.blocks * Q4BLOCK;
    memset(wp, 0x88, (size_t)fd_q4_packed_size(k, n, block));   /* u = 8 where nothing is stored */
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        ptrdiff_t g = kk / block, r = kk % block, at = q4_group_at(&sh, g) + (1 + r / Q4CHUNK) * Q4BLOCK;
        ptrdiff_t t = r % Q4CHUNK / 16, lane = r % 16;
        for (ptrdiff_t j = 0; j < n; j++) {
            uint8_t *byte = wp + (j / FD_QPANEL) * pstride + at + (j % FD_QPANEL) * 64 + 4 * lane + t / 2;
            uint8_t nib = (uint8_t)((q[kk * ldq + j] + 8) & 15);
            *byte = (uint8_t)(t % 2 ? (*byte & 0x0F) | (nib << 4) : (*byte & 0xF0) | nib);
        }
    }
    for (ptrdiff_t g = 0; g < sh.groups; g++)
        for (ptrdiff_t j = 0; j < npad; j++) {
            /* padded columns: scale 1 (a harmless divisor per unit) or 0 with zero 8 (weight 0) */
            ptrdiff_t at = ((j / FD_QPANEL) * sh.groups + g) * FD_QPANEL + j % FD_QPANEL;   /* panel-major */
            scale_out[at] = j < n ? scale[g * n + j] : (zero ? 0.0f : 1.0f);
            if (zero) zero_out[at] = 8.0f + (j < n ? (float)zero[g * n + j] : 0.0f);
            /* the table: Keras's weight for each nibble, (q - zero) * scale in float32, or q */
            float zc = zero ? zero_out[at] : 8.0f, sc = zero ? scale_out[at] : 1.0f, table[16];
            for (int u = 0; u < 16; u++) table[u] = ((float)u - zc) * sc;
            memcpy(wp + (j / FD_QPANEL) * pstride + q4_group_at(&sh, g) + (j % FD_QPANEL) * 64, table, sizeof table);
        }
}

void fd_q4_panels_view(const fd_qweights *w, ptrdiff_t p0, fd_qweights *v)
{
    q4_shape sh = q4_shape_of(w->k, w->block);
    v->w = (const uint8_t *)w->w + p0 * sh.blocks * Q4BLOCK;
    v->scale = w->scale + p0 * sh.groups * FD_QPANEL;
    v->zero = w->zero ? w->zero + p0 * sh.groups * FD_QPANEL : NULL;
}

/* ---------------------------------------------------------------- portable C */

/* The reference order every path follows: per column, 16 lane sums of FMAs in k order, then
   the tree; per unit, divided by kernel_scale. */
static float q4_tree(const float a[16])
{
    float h[8], q[4];
    for (int l = 0; l < 8; l++) h[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; l++) q[l] = h[l] + h[l + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

static void q4_strip_c(int mr, const fd_qweights *w, const float *x, ptrdiff_t ldx, float *c, ptrdiff_t ldc)
{
    q4_shape sh = q4_shape_of(w->k, w->block);
    ptrdiff_t pstride = sh.blocks * Q4BLOCK;
    for (int r = 0; r < mr; r++)
        for (ptrdiff_t j = 0; j < w->n; j++) {
            ptrdiff_t p = j / FD_QPANEL, col = j % FD_QPANEL;
            float acc[16] = {0};
            for (ptrdiff_t g = 0; g < sh.groups; g++) {
                ptrdiff_t k0 = g * w->block, len = w->k - k0 < w->block ? w->k - k0 : w->block;
                const uint8_t *base = (const uint8_t *)w->w + p * pstride + q4_group_at(&sh, g) + col * 64;
                float table[16];
                memcpy(table, base, sizeof table);
                for (ptrdiff_t v = 0; v * 16 < len; v++) {
                    const uint8_t *bytes = base + (1 + v / 8) * Q4BLOCK;
                    int t = (int)(v % 8);
                    for (int l = 0; l < 16; l++) {
                        uint8_t b = bytes[4 * l + t / 2];
                        float xv = 16 * v + l < len ? x[r * ldx + k0 + 16 * v + l] : 0.0f;
                        acc[l] = fmaf(xv, table[(t % 2 ? b >> 4 : b) & 15], acc[l]);
                    }
                }
            }
            float y = q4_tree(acc);
            c[r * ldc + j] = w->zero ? y : y / w->scale[j];
        }
}

#if FD_Q4_X86 && defined(__GNUC__)

#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

/* ---------------------------------------------------------------- AVX-512 */

T_AVX512 AI float q4_tree_512(__m512 v)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));   /* lanes 0, 1: q0 + q2, q1 + q3 */
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

/* Nibble t of each lane of the 64 bytes at b, in the lane's low 4 bits (vpermps ignores the
   rest): one load and a shift by an immediate (t is a constant in the unrolled loop).
   Loads at byte offset t / 2 and a shift for odd t only measured no faster: 3 of their 4
   offsets split a cache line. */
T_AVX512 AI __m512i q4_view_512(const uint8_t *b, int t)
{
    __m512i v = _mm512_loadu_si512((const void *)b);
    switch (t) {
    case 0: return v;
    case 1: return _mm512_srli_epi32(v, 4);
    case 2: return _mm512_srli_epi32(v, 8);
    case 3: return _mm512_srli_epi32(v, 12);
    case 4: return _mm512_srli_epi32(v, 16);
    case 5: return _mm512_srli_epi32(v, 20);
    case 6: return _mm512_srli_epi32(v, 24);
    default: return _mm512_srli_epi32(v, 28);
    }
}

/* MR rows x NC columns (columns c0.. of panel p0) over the whole k. */
T_AVX512 AI void q4_tile_512(const int MR, const int NC, const int GROUPED, const fd_qweights *w, const q4_shape *sh,
                             const float *x, ptrdiff_t ldx, ptrdiff_t p0, int c0, float *c, ptrdiff_t ldc)
{
    const uint8_t *wp = (const uint8_t *)w->w + p0 * sh->blocks * Q4BLOCK + c0 * 64;
    __m512 acc[4][8];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NC; j++) acc[r][j] = _mm512_setzero_ps();
    for (ptrdiff_t g = 0; g < sh->groups; g++) {
        ptrdiff_t k0 = g * w->block, len = w->k - k0 < w->block ? w->k - k0 : w->block;
        const float *table = (const float *)(wp + q4_group_at(sh, g));   /* column j's at table + 16 j */
        for (ptrdiff_t ch = 0; ch * Q4CHUNK < len; ch++) {
            const uint8_t *b = wp + q4_group_at(sh, g) + (1 + ch) * Q4BLOCK;
            const float *xc = x + k0 + ch * Q4CHUNK;
            ptrdiff_t left = len - ch * Q4CHUNK;
            if (left >= Q4CHUNK) {
#pragma GCC unroll 8
                for (int t = 0; t < 8; t++)
                    for (int j = 0; j < NC; j++) {
                        __m512 wv = _mm512_permutexvar_ps(q4_view_512(b + j * 64, t), _mm512_loadu_ps(table + 16 * j));
                        for (int r = 0; r < MR; r++)
                            acc[r][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xc + r * ldx + 16 * t), wv, acc[r][j]);
                    }
            } else {
                for (int t = 0; 16 * t < left; t++) {
                    __mmask16 m = left - 16 * t >= 16 ? 0xFFFF : (__mmask16)((1u << (left - 16 * t)) - 1);
                    for (int j = 0; j < NC; j++) {
                        __m512 wv = _mm512_permutexvar_ps(q4_view_512(b + j * 64, t), _mm512_loadu_ps(table + 16 * j));
                        for (int r = 0; r < MR; r++)
                            acc[r][j] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xc + r * ldx + 16 * t), wv, acc[r][j]);
                    }
                }
            }
        }
    }
    ptrdiff_t cols = w->n - p0 * FD_QPANEL - c0;
    for (int j = 0; j < NC && j < cols; j++)
        for (int r = 0; r < MR; r++) {
            float y = q4_tree_512(acc[r][j]);
            c[r * ldc + p0 * FD_QPANEL + c0 + j] = GROUPED ? y : y / w->scale[p0 * FD_QPANEL + c0 + j];
        }
}

/* Columns per tile for mr rows: up to 16 zmm sums (one row: 8; 16 measured no faster). */
static int q4_nc_512(int mr) { return mr <= 2 ? 8 : 4; }

T_AVX512 static void q4_strip_512(int mr, const fd_qweights *w, const float *x, ptrdiff_t ldx, float *c, ptrdiff_t ldc)
{
    q4_shape sh = q4_shape_of(w->k, w->block);
    int nc = q4_nc_512(mr);
    for (ptrdiff_t p0 = 0; p0 < q_panels(w->n); p0++)
        for (int c0 = 0; c0 < FD_QPANEL && p0 * FD_QPANEL + c0 < w->n; c0 += nc) {
#define Q4_512(MR, NC)                                                              \
    case MR * 32 + NC:                                                              \
        if (w->zero) q4_tile_512(MR, NC, 1, w, &sh, x, ldx, p0, c0, c, ldc);        \
        else q4_tile_512(MR, NC, 0, w, &sh, x, ldx, p0, c0, c, ldc);                \
        break;
            switch (mr * 32 + nc) { Q4_512(1, 8) Q4_512(2, 8) Q4_512(3, 4) Q4_512(4, 4) }
#undef Q4_512
        }
}

/* ---------------------------------------------------------------- AVX2 */

/* The same table value, (u - zero - 8) * scale, computed per weight: 8 lanes of one view. */
T_AVX2 AI __m256 q4_weights_256(const uint8_t *b, int t, __m256 zc, __m256 sc, int grouped)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(b + t / 2));
    v = _mm256_and_si256(t % 2 ? _mm256_srli_epi32(v, 4) : v, _mm256_set1_epi32(15));
    __m256 d = _mm256_sub_ps(_mm256_cvtepi32_ps(v), zc);
    return grouped ? _mm256_mul_ps(d, sc) : d;
}

T_AVX2 AI float q4_tree_256(__m256 lo, __m256 hi)
{
    __m256 h = _mm256_add_ps(lo, hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

/* MR <= 2 rows x NC columns; lanes 0-7 and 8-15 of a column's sum in two ymm. */
T_AVX2 AI void q4_tile_256(const int MR, const int NC, const int GROUPED, const fd_qweights *w, const q4_shape *sh,
                           const float *x, ptrdiff_t ldx, ptrdiff_t p0, int c0, float *c, ptrdiff_t ldc)
{
    const uint8_t *wp = (const uint8_t *)w->w + p0 * sh->blocks * Q4BLOCK + c0 * 64;
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 acc[2][4][2], zc[4], sc[4];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NC; j++) acc[r][j][0] = acc[r][j][1] = _mm256_setzero_ps();
    for (int j = 0; j < NC; j++) zc[j] = sc[j] = _mm256_set1_ps(8.0f);
    for (ptrdiff_t g = 0; g < sh->groups; g++) {
        ptrdiff_t k0 = g * w->block, len = w->k - k0 < w->block ? w->k - k0 : w->block;
        if (GROUPED)
            for (int j = 0; j < NC; j++) {
                ptrdiff_t at = (p0 * sh->groups + g) * FD_QPANEL + c0 + j;
                zc[j] = _mm256_set1_ps(w->zero[at]);
                sc[j] = _mm256_set1_ps(w->scale[at]);
            }
        for (ptrdiff_t ch = 0; ch * Q4CHUNK < len; ch++) {
            const uint8_t *b = wp + q4_group_at(sh, g) + (1 + ch) * Q4BLOCK;
            const float *xc = x + k0 + ch * Q4CHUNK;
            ptrdiff_t left = len - ch * Q4CHUNK;
            for (int t = 0; t < 8 && 16 * t < left; t++) {
                __m256 xv[2][2];
                for (int h = 0; h < 2; h++) {
                    ptrdiff_t in = left - 16 * t - 8 * h;
                    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(in < 8 ? in : 8)), iota);
                    for (int r = 0; r < MR; r++) xv[r][h] = _mm256_maskload_ps(xc + r * ldx + 16 * t + 8 * h, m);
                }
                for (int j = 0; j < NC; j++)
                    for (int h = 0; h < 2; h++) {
                        __m256 wv = q4_weights_256(b + j * 64 + 32 * h, t, zc[j], sc[j], GROUPED);
                        for (int r = 0; r < MR; r++) acc[r][j][h] = _mm256_fmadd_ps(xv[r][h], wv, acc[r][j][h]);
                    }
            }
        }
    }
    ptrdiff_t cols = w->n - p0 * FD_QPANEL - c0;
    for (int j = 0; j < NC && j < cols; j++)
        for (int r = 0; r < MR; r++) {
            float y = q4_tree_256(acc[r][j][0], acc[r][j][1]);
            c[r * ldc + p0 * FD_QPANEL + c0 + j] = GROUPED ? y : y / w->scale[p0 * FD_QPANEL + c0 + j];
        }
}

T_AVX2 static void q4_strip_256(int mr, const fd_qweights *w, const float *x, ptrdiff_t ldx, float *c, ptrdiff_t ldc)
{
    q4_shape sh = q4_shape_of(w->k, w->block);
    for (int r0 = 0; r0 < mr; r0 += 2) {
        int rows = mr - r0 < 2 ? mr - r0 : 2, nc = rows == 1 ? 4 : 2;
        for (ptrdiff_t p0 = 0; p0 < q_panels(w->n); p0++)
            for (int c0 = 0; c0 < FD_QPANEL && p0 * FD_QPANEL + c0 < w->n; c0 += nc) {
                const float *xr = x + r0 * ldx;
                float *cr = c + r0 * ldc;
                if (rows == 1) {
                    if (w->zero) q4_tile_256(1, 4, 1, w, &sh, xr, ldx, p0, c0, cr, ldc);
                    else q4_tile_256(1, 4, 0, w, &sh, xr, ldx, p0, c0, cr, ldc);
                } else {
                    if (w->zero) q4_tile_256(2, 2, 1, w, &sh, xr, ldx, p0, c0, cr, ldc);
                    else q4_tile_256(2, 2, 0, w, &sh, xr, ldx, p0, c0, cr, ldc);
                }
            }
    }
}

#endif /* FD_Q4_X86 */

/* ---------------------------------------------------------------- dispatch */

typedef void (*q4_strip_fn)(int, const fd_qweights *, const float *, ptrdiff_t, float *, ptrdiff_t);

static q4_strip_fn q4_strip_of(fd_qisa isa)
{
#if FD_Q4_X86 && defined(__GNUC__)
    if (isa == FD_QISA_AVX2 || isa == FD_QISA_AVX_VNNI) return q4_strip_256;
    if (isa == FD_QISA_AVX512_VNNI || isa == FD_QISA_AMX) return q4_strip_512;
#endif
    (void)isa;
    return q4_strip_c;
}

int fd_q4_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
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
