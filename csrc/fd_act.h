/* fd_act.h -- every Keras 3 activation as a fused GEMM epilogue, with run-time CPU dispatch.
 *
 *   dst[i, j] = act(src[i, :] + bias)[j]        for i < rows
 *
 * Element-wise activations act on each value; row-wise ones (softmax, log_softmax, sparsemax)
 * on each whole row; glu halves the row: dst[i, j] = a_j * sigmoid(b_j), a = row[:n/2],
 * b = row[n/2:].  float32 is computed through float64 internally (<= 0.53 ulp measured, softmax
 * of long rows <= 1.4); float64 with double-precision polynomials (<= 1-4 ulp; gelu's erfc from
 * libm).  Loops are vectorized.  NaN in -> NaN out; no spurious overflow.
 */
#ifndef FD_ACT_H
#define FD_ACT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Activation codes.  Parameters p[0..2] (unused ones are ignored):
 *   RELU         p0 negative_slope, p1 max_value (NaN = None), p2 threshold   (Keras order of ops)
 *   LEAKY_RELU   p0 negative_slope
 *   ELU, CELU    p0 alpha
 *   GELU         p0 approximate (0: exact erf form, nonzero: tanh form)
 *   SQUAREPLUS   p0 b
 *   SOFT_SHRINK, HARD_SHRINK   p0 threshold
 *   THRESHOLD    p0 threshold, p1 default_value
 */
enum {
    FD_ACT_LINEAR = 0,
    FD_ACT_RELU,
    FD_ACT_RELU6,
    FD_ACT_LEAKY_RELU,
    FD_ACT_ELU,
    FD_ACT_SELU,
    FD_ACT_CELU,
    FD_ACT_GELU,
    FD_ACT_SIGMOID,
    FD_ACT_HARD_SIGMOID,
    FD_ACT_HARD_SILU,
    FD_ACT_SILU,
    FD_ACT_TANH,
    FD_ACT_HARD_TANH,
    FD_ACT_TANH_SHRINK,
    FD_ACT_SOFTPLUS,
    FD_ACT_SOFTSIGN,
    FD_ACT_SPARSE_PLUS,
    FD_ACT_SPARSE_SIGMOID,
    FD_ACT_SQUAREPLUS,
    FD_ACT_LOG_SIGMOID,
    FD_ACT_EXPONENTIAL,
    FD_ACT_MISH,
    FD_ACT_SOFT_SHRINK,
    FD_ACT_HARD_SHRINK,
    FD_ACT_THRESHOLD,
    FD_ACT_SOFTMAX,
    FD_ACT_LOG_SOFTMAX,
    FD_ACT_SPARSEMAX,
    FD_ACT_GLU,
    FD_ACT_COUNT
};

typedef struct {
    int code;       /* FD_ACT_* */
    double p[3];    /* the activation's parameters, see above */
} fd_act;

/* Canonical Keras name of `code` ("relu", ...), NULL if out of range. */
const char *fd_act_name(int code);
/* 1 for softmax, log_softmax, sparsemax and glu: they need whole rows. */
int fd_act_rowwise(int code);
/* 1 for glu: the output has cols_in / 2 columns (cols_in must be even). */
int fd_act_halves(int code);

/* dst[i, j] = act(src[i, :] + bias)[j] for i < rows.  src has cols_in columns and row stride
 * ld_src (elements); dst has row stride ld_dst.  bias (length cols_in) may be NULL.  dst == src
 * with ld_dst == ld_src (in place) works for every activation, glu included; otherwise dst and
 * src must not overlap.  Pure, thread-safe, no allocation.  An unknown code copies src + bias. */
void fd_epilogue_f32(const fd_act *a, const float *bias, const float *src, ptrdiff_t ld_src,
                     float *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in);
void fd_epilogue_f64(const fd_act *a, const double *bias, const double *src, ptrdiff_t ld_src,
                     double *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in);

#ifdef __cplusplus
}
#endif

#endif /* FD_ACT_H */
