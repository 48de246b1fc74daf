/* Embedding gather: see fd_gather.h. The ids are all checked before the first row is copied,
   so a bad id never leaves a half-written output. */
#include <string.h>

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

/* the int4 value in column j of a packed row: low nibble first, two's complement */
static inline int nibble(const uint8_t *row, ptrdiff_t j)
{
    const int b = row[j >> 1];
    return (((j & 1) ? b >> 4 : b & 15) ^ 8) - 8;
}

static void row_q8(const int8_t *q, float scale, ptrdiff_t dim, float *out)
{
    for (ptrdiff_t j = 0; j < dim; j++) out[j] = (float)q[j] / scale;
}

static void row_q4(const uint8_t *q, float scale, ptrdiff_t dim, float *out)
{
    for (ptrdiff_t j = 0; j < dim; j++) out[j] = (float)nibble(q, j) / scale;
}

static void row_q4_groups(const uint8_t *q, const float *scale, const int8_t *zero, ptrdiff_t block,
                          ptrdiff_t dim, float *out)
{
    for (ptrdiff_t g = 0, j0 = 0; j0 < dim; g++, j0 += block) {
        const float s = scale[g], z = (float)zero[g];
        const ptrdiff_t j1 = dim - j0 < block ? dim : j0 + block;
        for (ptrdiff_t j = j0; j < j1; j++) out[j] = ((float)nibble(q, j) - z) * s;
    }
}

static void qrow(const fd_qtable *t, ptrdiff_t r, float *out)
{
    const ptrdiff_t dim = t->dim;
    if (t->bits == 8) {
        row_q8(t->q + r * dim, t->scale[r], dim, out);
        return;
    }
    const uint8_t *q = (const uint8_t *)t->q + r * ((dim + 1) / 2);
    if (t->block < 1) {
        row_q4(q, t->scale[r], dim, out);
    } else {
        const ptrdiff_t groups = (dim + t->block - 1) / t->block;
        row_q4_groups(q, t->scale + r * groups, t->zero + r * groups, t->block, dim, out);
    }
}

#define FD_GATHER_Q(I, TI)                                                                      \
    ptrdiff_t fd_gather_##I##_q(const TI *ids, ptrdiff_t count, const fd_qtable *t, float *out) \
    {                                                                                           \
        for (ptrdiff_t i = 0; i < count; i++)                                                   \
            if (ids[i] < 0 || (int64_t)ids[i] >= (int64_t)t->rows) return i;                   \
        for (ptrdiff_t i = 0; i < count; i++) qrow(t, (ptrdiff_t)ids[i], out + i * t->dim);     \
        return -1;                                                                              \
    }

FD_GATHER_Q(i32, int32_t)
FD_GATHER_Q(i64, int64_t)
