/* Embedding gather: see fd_gather.h. The ids are all checked before the first row is copied,
   so a bad id never leaves a half-written output. */
#include <string.h>

#include "fd_cpu.h"
#include "fd_gather.h"
#include "fd_status.h"

#define FD_GATHER(I, TI, T, TT)                                                                 \
    ptrdiff_t fd_gather_##I##_##T(const TI *ids, ptrdiff_t count, const TT *table,              \
                                  ptrdiff_t rows, ptrdiff_t dim, TT *out) {                     \
        for (ptrdiff_t i = 0; i < count; i++)                                                   \
            if (ids[i] < 0 || (int64_t)ids[i] >= (int64_t)rows) return i;                      \
        for (ptrdiff_t i = 0; i < count; i++)                                                   \
            memcpy(out + i * dim, table + (ptrdiff_t)ids[i] * dim, (size_t)dim * sizeof(TT));   \
        return -1;                                                                              \
    }

FD_GATHER(i32, int32_t, f32, float)
FD_GATHER(i64, int64_t, f32, float)
FD_GATHER(i32, int32_t, f64, double)
FD_GATHER(i64, int64_t, f64, double)

/* ---- quantized tables. Each value takes Keras's float32 operations in Keras's order (a
   division, or a subtraction then a multiplication: each exactly rounded by IEEE 754, none of
   them fusable into an FMA), so the bits are those of Keras's _int8_call / _int4_call. */

int fd_qtable_check(const fd_qtable *t)
{
    if (t == NULL || t->rows < 1 || t->dim < 1 || t->q == NULL || t->scale == NULL) return FD_ERR_ARG;
    if (t->bits == 8) return t->block == -1 ? FD_OK : FD_ERR_ARG;
    if (t->bits != 4) return FD_ERR_ARG;
    if (t->block == -1) return FD_OK;
    return t->block >= 1 && t->zero != NULL ? FD_OK : FD_ERR_ARG;
}

/* int8 rows: one division a value, vectorized per CPU path (a division is exactly rounded in
   every ISA, so the paths give the same bits) */
#define FD_ROW_Q8(SFX)                                                                          \
    static void row_q8_##SFX(const int8_t *q, float scale, ptrdiff_t dim, float *out)          \
    {                                                                                           \
        for (ptrdiff_t j = 0; j < dim; j++) out[j] = (float)q[j] / scale;                       \
    }

FD_ROW_Q8(baseline)
#if FD_X86_DISPATCH
FD_TARGET_BEGIN_AVX2
FD_ROW_Q8(avx2)
FD_TARGET_END
FD_TARGET_BEGIN_AVX512
FD_ROW_Q8(avx512)
FD_TARGET_END
#endif

typedef void (*row_q8_fn)(const int8_t *, float, ptrdiff_t, float *);
static const row_q8_fn row_q8_paths[] = {   /* indexed by fd_cpu_level() */
    row_q8_baseline,
#if FD_X86_DISPATCH
    row_q8_avx2,
    row_q8_avx512,
#endif
};

/* int4 rows go through a table of the 16 values a nibble (low nibble first, two's complement)
   takes under one scale (and zero): each entry is computed with Keras's operations, once per
   row or group instead of once per column, so the bits are the same. */
static void nibble_values_div(float scale, float lut[16])
{
    for (int v = 0; v < 16; v++) lut[v] = (float)((v ^ 8) - 8) / scale;
}

static void nibble_values_zero(float scale, float zero, float lut[16])
{
    for (int v = 0; v < 16; v++) lut[v] = ((float)((v ^ 8) - 8) - zero) * scale;
}

/* out[j] = lut[nibble j of row] for the columns j0 <= j < j1 (inlined into each path's copy:
   a call from AVX-512 code into baseline code would run the latter with the upper registers dirty) */
static inline __attribute__((always_inline)) void nibble_cols(const uint8_t *row, const float lut[16], ptrdiff_t j0,
                                                              ptrdiff_t j1, float *out)
{
    ptrdiff_t j = j0;
    if (j < j1 && (j & 1)) {
        out[j] = lut[row[j >> 1] >> 4];
        j++;
    }
    for (; j + 1 < j1; j += 2) {
        const int b = row[j >> 1];
        out[j] = lut[b & 15];
        out[j + 1] = lut[b >> 4];
    }
    if (j < j1) out[j] = lut[row[j >> 1] & 15];
}

static void nibble_cols_baseline(const uint8_t *row, const float lut[16], ptrdiff_t j0, ptrdiff_t j1, float *out)
{
    nibble_cols(row, lut, j0, j1, out);
}

#if FD_X86_DISPATCH
#include <immintrin.h>

FD_TARGET_BEGIN_AVX2
/* the same, 8 columns a step: vpermps on each half of the 16 values, the nibble's bit 3 picks */
static void nibble_cols_avx2(const uint8_t *row, const float lut[16], ptrdiff_t j0, ptrdiff_t j1, float *out)
{
    ptrdiff_t j = j0;
    if (j < j1 && (j & 1)) {
        out[j] = lut[row[j >> 1] >> 4];
        j++;
    }
    const __m256 low = _mm256_loadu_ps(lut), high = _mm256_loadu_ps(lut + 8);
    const __m256i shift = _mm256_set_epi32(4, 0, 4, 0, 4, 0, 4, 0);   /* odd lanes: high nibble */
    const __m256i low4 = _mm256_set1_epi32(15);
    for (; j + 8 <= j1; j += 8) {
        int32_t four;
        memcpy(&four, row + (j >> 1), 4);                                  /* 4 bytes, 8 columns */
        const __m128i bytes = _mm_cvtsi32_si128(four);
        const __m256i both = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));
        const __m256i index = _mm256_and_si256(_mm256_srlv_epi32(both, shift), low4);
        const __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(index, 28));   /* bit 3 -> sign */
        _mm256_storeu_ps(out + j, _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, index),
                                                   _mm256_permutevar8x32_ps(high, index), upper));
    }
    nibble_cols(row, lut, j, j1, out);
}
FD_TARGET_END

FD_TARGET_BEGIN_AVX512
/* the same, 16 columns a step: the 16 values sit in one register and vpermps looks them up */
static void nibble_cols_avx512(const uint8_t *row, const float lut[16], ptrdiff_t j0, ptrdiff_t j1, float *out)
{
    ptrdiff_t j = j0;
    if (j < j1 && (j & 1)) {
        out[j] = lut[row[j >> 1] >> 4];
        j++;
    }
    const __m512 values = _mm512_set_ps(lut[15], lut[14], lut[13], lut[12], lut[11], lut[10], lut[9], lut[8],
                                        lut[7], lut[6], lut[5], lut[4], lut[3], lut[2], lut[1], lut[0]);
    const __m512i shift = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);   /* odd lanes: high nibble */
    const __m512i low4 = _mm512_set1_epi32(15);
    for (; j + 16 <= j1; j += 16) {
        const __m128i bytes = _mm_loadl_epi64((const __m128i *)(row + (j >> 1)));   /* 8 bytes, 16 columns */
        const __m512i both = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));  /* b0 b0 b1 b1 ... */
        const __m512i index = _mm512_and_si512(_mm512_srlv_epi32(both, shift), low4);
        _mm512_storeu_ps(out + j, _mm512_permutexvar_ps(index, values));
    }
    nibble_cols(row, lut, j, j1, out);
}
FD_TARGET_END
#endif

typedef void (*nibble_cols_fn)(const uint8_t *, const float *, ptrdiff_t, ptrdiff_t, float *);
static const nibble_cols_fn nibble_cols_paths[] = {   /* indexed by fd_cpu_level() */
    nibble_cols_baseline,
#if FD_X86_DISPATCH
    nibble_cols_avx2,
    nibble_cols_avx512,
#endif
};

/* the row kernels of this CPU path, chosen once per gather */
typedef struct {
    row_q8_fn q8;
    nibble_cols_fn nibbles;
} row_paths;

static void qrow(const fd_qtable *t, const row_paths *path, ptrdiff_t r, float *out)
{
    const ptrdiff_t dim = t->dim;
    if (t->bits == 8) {
        path->q8(t->q + r * dim, t->scale[r], dim, out);
        return;
    }
    const uint8_t *q = (const uint8_t *)t->q + r * ((dim + 1) / 2);
    float lut[16];
    if (t->block < 1) {
        nibble_values_div(t->scale[r], lut);
        path->nibbles(q, lut, 0, dim, out);
        return;
    }
    const ptrdiff_t groups = (dim + t->block - 1) / t->block;
    const float *scale = t->scale + r * groups;
    const int8_t *zero = t->zero + r * groups;
    for (ptrdiff_t g = 0, j0 = 0; g < groups; g++, j0 += t->block) {
        nibble_values_zero(scale[g], (float)zero[g], lut);
        path->nibbles(q, lut, j0, dim - j0 < t->block ? dim : j0 + t->block, out);
    }
}

#define FD_GATHER_Q(I, TI)                                                                      \
    ptrdiff_t fd_gather_##I##_q(const TI *ids, ptrdiff_t count, const fd_qtable *t, float *out) \
    {                                                                                           \
        for (ptrdiff_t i = 0; i < count; i++)                                                   \
            if (ids[i] < 0 || (int64_t)ids[i] >= (int64_t)t->rows) return i;                   \
        const int level = fd_cpu_level();                                                       \
        const row_paths path = {row_q8_paths[level], nibble_cols_paths[level]};                 \
        for (ptrdiff_t i = 0; i < count; i++) qrow(t, &path, (ptrdiff_t)ids[i], out + i * t->dim); \
        return -1;                                                                              \
    }

FD_GATHER_Q(i32, int32_t)
FD_GATHER_Q(i64, int64_t)
