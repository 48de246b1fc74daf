/* fastdense embedding gather: out[i, :] = table[ids[i], :], every id checked first. */
#ifndef FD_GATHER_H
#define FD_GATHER_H

#include <stddef.h>
#include <stdint.h>

/* Copy the rows of `table` (rows x dim, row-major) named by `count` ids into `out` (count x dim).
   Returns -1 when every id is in [0, rows); otherwise the position of the first id outside it,
   and nothing is read from the table or written to out. */
ptrdiff_t fd_gather_i32_f32(const int32_t *ids, ptrdiff_t count, const float *table, ptrdiff_t rows,
                            ptrdiff_t dim, float *out);
ptrdiff_t fd_gather_i64_f32(const int64_t *ids, ptrdiff_t count, const float *table, ptrdiff_t rows,
                            ptrdiff_t dim, float *out);
ptrdiff_t fd_gather_i32_f64(const int32_t *ids, ptrdiff_t count, const double *table, ptrdiff_t rows,
                            ptrdiff_t dim, double *out);
ptrdiff_t fd_gather_i64_f64(const int64_t *ids, ptrdiff_t count, const double *table, ptrdiff_t rows,
                            ptrdiff_t dim, double *out);

/* A Keras 3.15 quantized Embedding table, as Keras stores it (it stays quantized: only the
   gathered rows are de-scaled, in Keras's float32 operations, so the bits are Keras's):
   - bits 8 (int8_from_float32): q int8 (rows, dim); out = (float)q / scale[row];
   - bits 4, block <= 0 (int4/-1): q two values per byte along a row ((dim + 1) / 2 bytes, column
     2c in the low nibble of byte c), out = (float)q / scale[row];
   - bits 4, block > 0 (int4/<block>): scale and zero (rows, groups), groups = ceil(dim / block),
     out = ((float)q - (float)zero[row, g]) * scale[row, g] with g = column / block (Keras's g_idx). */
typedef struct {
    ptrdiff_t rows, dim;             /* input_dim, output_dim */
    int bits;                        /* 8 or 4 */
    ptrdiff_t block;                 /* int4: columns per scale group, or -1: one scale per row */
    const int8_t *q;
    const float *scale;
    const int8_t *zero;              /* int4 groups only, else NULL */
} fd_qtable;

/* FD_OK for a consistent table, FD_ERR_ARG otherwise (checked once, when it is made). */
int fd_qtable_check(const fd_qtable *t);

/* The float32 rows of the quantized table t named by `count` ids, into out (count x t->dim):
   -1, or the position of the first id outside [0, t->rows) and nothing written (as above). */
ptrdiff_t fd_gather_i32_q(const int32_t *ids, ptrdiff_t count, const fd_qtable *t, float *out);
ptrdiff_t fd_gather_i64_q(const int64_t *ids, ptrdiff_t count, const fd_qtable *t, float *out);

#endif
