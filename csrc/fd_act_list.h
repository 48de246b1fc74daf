/* fd_act_list.h -- every activation the kernel runs, one row each, in code order.
 *
 *   X(ID, fn, "name", DISPATCH, rowwise, halves)
 *
 * ID         FD_ACT_<ID>, the code (the row's position: append new rows at the end, so the codes
 *            of saved plans and tests stay put).
 * fn         the implementation's name; DISPATCH says how the epilogue calls it:
 *              ELEM    fd32_<fn> / fd64_<fn> of fd_act_math.h on each value;
 *              ROW     <fn>_f32 / <fn>_f64 of fd_act_impl.h on each whole row, in place;
 *              CUSTOM  the block FD_DISPATCH_<fn>(T, P, S) of fd_act_impl.h (variants chosen by
 *                      the parameters, or a different output shape);
 *              DEFAULT the switch's default (linear only: fd32_<fn> / fd64_<fn>, unknown codes too).
 * "name"     the Keras name (fastdense.activations uses it; _kernels.FD_ACT_<ID> too).
 * rowwise    1: needs whole rows (the plan and the thread split keep rows together).
 * halves     1: the output has half the input's columns (glu).
 *
 * From this list come the fd_act_code enum (fd_act.h), the name/flag table (fd_act.c), the
 * epilogue's switch (fd_act_impl.h) and, through _kernels.activation_table(), the code, name and
 * flags of fastdense.activations.  Parameters p[0..2] (unused ones are ignored):
 *   RELU         p0 negative_slope, p1 max_value (NaN = None), p2 threshold   (Keras order of ops)
 *   LEAKY_RELU   p0 negative_slope
 *   ELU, CELU    p0 alpha
 *   GELU         p0 approximate (0: exact erf form, nonzero: tanh form)
 *   SQUAREPLUS   p0 b
 *   SOFT_SHRINK, HARD_SHRINK   p0 threshold
 *   THRESHOLD    p0 threshold, p1 default_value
 */
#define FD_ACTIVATIONS(X)                                              \
    X(LINEAR, linear, "linear", DEFAULT, 0, 0)                         \
    X(RELU, relu, "relu", CUSTOM, 0, 0)                                \
    X(RELU6, relu6, "relu6", ELEM, 0, 0)                               \
    X(LEAKY_RELU, leaky_relu, "leaky_relu", CUSTOM, 0, 0)              \
    X(ELU, elu, "elu", ELEM, 0, 0)                                     \
    X(SELU, selu, "selu", ELEM, 0, 0)                                  \
    X(CELU, celu, "celu", CUSTOM, 0, 0)                                \
    X(GELU, gelu, "gelu", CUSTOM, 0, 0)                                \
    X(SIGMOID, sigmoid, "sigmoid", ELEM, 0, 0)                         \
    X(HARD_SIGMOID, hard_sigmoid, "hard_sigmoid", ELEM, 0, 0)          \
    X(HARD_SILU, hard_silu, "hard_silu", ELEM, 0, 0)                   \
    X(SILU, silu, "silu", ELEM, 0, 0)                                  \
    X(TANH, tanh, "tanh", ELEM, 0, 0)                                  \
    X(HARD_TANH, hard_tanh, "hard_tanh", ELEM, 0, 0)                   \
    X(TANH_SHRINK, tanh_shrink, "tanh_shrink", ELEM, 0, 0)             \
    X(SOFTPLUS, softplus, "softplus", ELEM, 0, 0)                      \
    X(SOFTSIGN, softsign, "softsign", ELEM, 0, 0)                      \
    X(SPARSE_PLUS, sparse_plus, "sparse_plus", ELEM, 0, 0)             \
    X(SPARSE_SIGMOID, sparse_sigmoid, "sparse_sigmoid", ELEM, 0, 0)    \
    X(SQUAREPLUS, squareplus, "squareplus", ELEM, 0, 0)                \
    X(LOG_SIGMOID, log_sigmoid, "log_sigmoid", ELEM, 0, 0)             \
    X(EXPONENTIAL, exponential, "exponential", ELEM, 0, 0)             \
    X(MISH, mish, "mish", ELEM, 0, 0)                                  \
    X(SOFT_SHRINK, soft_shrink, "soft_shrink", ELEM, 0, 0)             \
    X(HARD_SHRINK, hard_shrink, "hard_shrink", ELEM, 0, 0)             \
    X(THRESHOLD, threshold, "threshold", ELEM, 0, 0)                   \
    X(SOFTMAX, softmax, "softmax", ROW, 1, 0)                          \
    X(LOG_SOFTMAX, log_softmax, "log_softmax", ROW, 1, 0)              \
    X(SPARSEMAX, sparsemax, "sparsemax", ROW, 1, 0)                    \
    X(GLU, glu, "glu", CUSTOM, 1, 1)
