/* Embedding gather: see fd_gather.h. The ids are all checked before the first row is copied,
   so a bad id never leaves a half-written output. */
#include <string.h>

#include "fd_gather.h"

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
