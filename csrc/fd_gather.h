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

#endif
