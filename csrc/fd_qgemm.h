/* fd_qgemm.h -- the quantized Dense kernels (Keras 3 int8 and int4), weights packed once.
 *
 * int8 (Keras "int8"): each input row is quantized by its own abs-max exactly as Keras's
 * AbsMaxQuantizer does (float32: s = 127 / (max|x| + 1e-7), q = clip(rint(x * s), -127, 127)),
 * multiplied by the int8 kernel with exact int32 sums, then
 *     c[i, j] = act(float(acc[i, j]) / (kernel_scale[j] * s_i) + bias[j])
 * with the de-scale in Keras's order (a float32 product, then a float32 division), so the
 * values before the activation equal Keras's bit for bit.  A row holding NaN or +-inf gives NaN.
 *
 * int4 (Keras "int4", inputs left float as Keras's default): the kernel Keras rebuilds,
 *     w[kk, j] = (q[kk, j] - zero[g, j]) * scale[g, j]   (g = kk / block, float32)
 * or w = q with one kernel_scale per unit (block = -1: c = act(x @ w / kernel_scale + bias)),
 * by one of two recipes (fd_q4_recipe), fixed when the weights are packed (fd_q4_recipe_of: the
 * faster one on that path; weights packed under a recipe always run it, whatever path runs them):
 *   digits (AVX512-VNNI, AMX; fd_q4gemm.c): exact integer products: per row and chunk of <= 128 k
 *     inside a group, the inputs become X = rint(x 2^s) (max|x| 2^s in [2^29, 2^30)) written as
 *     four signed base-256 digits, the digit-by-nibble sums are exact int32 (vpdpbusd /
 *     vpmaddubsw / TDPBSUD), combined exactly and rounded once per chunk, v = float(R) 2^-s, then
 *     acc = fma(v, scale, acc) in chunk order (error bound in docs/quantization.md).  Rows
 *     holding NaN / inf or chunks whose maxima leave 2^[-97, 115] take Keras's float32 formula.
 *   float (AVX2, AVX-VNNI, C; fd_q4gemm_float.c): nibbles unpacked in registers, per group
 *     sum x (q - zero) with one float32 FMA per k in k order, times the group's scale: four byte
 *     products per weight cost more than one FMA on 256-bit units once rows share the unpacking.
 *
 * Paths (fd_qisa), picked by the caller (fd_qgemm_isa() is the best one the CPU and
 * FASTDENSE_CPU_PATH allow) and compiled with target attributes, so the default build runs on
 * any x86-64: AMX (int8 on tiles from 3 rows, fd_qgemm_amx.h), AVX512-VNNI (vpdpbusd zmm),
 * AVX-VNNI (vpdpbusd ymm), AVX2 (vpmaddubsw on |q| and w ^ sign(q): pair sums <= 2 * 127 * 128,
 * never saturated) and portable C.  int8: every path gives the same int32 sums and the same
 * float operations after them, bit for bit, for any number of rows.  int4: every path gives the
 * same bits for weights packed under one recipe, for any number of rows (so the bits are per
 * path family: digits where packing saw AVX512-VNNI / AMX, float elsewhere).  Pure, thread-safe on disjoint outputs; scratch up to 32 KiB per call on
 * the stack, more from malloc.
 */
#ifndef FD_QGEMM_H
#define FD_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#include "fd_act.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FD_QISA_BASELINE = 0,   /* portable C */
    FD_QISA_AVX2,           /* AVX2: vpmaddubsw + vpmaddwd */
    FD_QISA_AVX_VNNI,       /* AVX-VNNI: VEX vpdpbusd, 256 bits */
    FD_QISA_AVX512_VNNI,    /* AVX512-VNNI: vpdpbusd, 512 bits */
    FD_QISA_AMX,            /* int8 on AMX tiles (tdpbssd, fd_qgemm_amx.h) where they win, else AVX512-VNNI */
    FD_QISA_COUNT
} fd_qisa;

/* Columns per packed panel (one zmm of int32 or float32 sums). */
#define FD_QPANEL 16
/* Longest k whose int8 sums fit int32 in every case: 132104 * 127 * 128 < 2^31. */
#define FD_Q8_MAX_K 132104

/* The int4 recipes (fd_qweights.recipe), above. */
typedef enum {
    FD_Q4_FLOAT = 0,        /* float FMAs on unpacked nibbles (fd_q4gemm_float.c) */
    FD_Q4_DIGITS            /* base-256 input digits on the integer units (fd_q4gemm.c) */
} fd_q4_recipe;

/* Packed weights: filled by fd_q8_pack / fd_q4_pack into buffers of the sizes below. */
typedef struct {
    ptrdiff_t k, n;         /* kernel shape (input features, units) */
    int bits;               /* 8 or 4 */
    ptrdiff_t block;        /* int4: input rows per scale group; k when one scale per unit */
    const void *w;          /* int8: panels x ceil(k/4) x 16 x 4 bytes; int4: see fd_q4_pack */
    const int32_t *comp;    /* int8: 128 * sum_kk w[kk, j] per column (AVX-VNNI paths' shift) */
    const float *scale;     /* int8 and per-unit int4: kernel_scale per column (padded with 1);
                               int4 blocks: per panel, groups x 16 floats */
    const float *zero;      /* int4 blocks: per panel, groups x 16 zero points + 8 as floats, else NULL */
    int recipe;             /* int4: the fd_q4_recipe fd_q4_pack packed w for */
    const uint8_t *w4;      /* int8 weights of int4 values (int4 with quantized inputs), also as
                               nibbles for one-row calls (fd_q8_pack_nibbles), or NULL */
} fd_qweights;

/* Bytes of the packed int8 weights (fd_q8_pack's wp). */
ptrdiff_t fd_q8_packed_size(ptrdiff_t k, ptrdiff_t n);
/* Pack w[kk * ldw + j] (k x n int8) into wp and fill comp (panels*16 int32) and scale_out
   (panels*16 float: kernel_scale, padded with 1). */
void fd_q8_pack(const int8_t *w, ptrdiff_t ldw, ptrdiff_t k, ptrdiff_t n, const float *kernel_scale,
                int8_t *wp, int32_t *comp, float *scale_out);

/* Bytes of fd_q8_pack_nibbles's copy. */
ptrdiff_t fd_q8_nibbles_size(ptrdiff_t k, ptrdiff_t n);
/* Pack q[kk * ldq + j] (k x n, values in [-8, 7]) as u = q + 8: per panel of 16 columns, per pair
   of k-quads 64 bytes, byte 4 col + b = u(8t + b) | u(8t + 4 + b) << 4 (0 past k).  An
   AVX512-VNNI row reads half the bytes of the int8 panels: at one row the int8 kernel waits on
   L2 (docs/quantization.md). */
void fd_q8_pack_nibbles(const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, uint8_t *w4);

/* The int4 recipe weights to be run on `isa` are packed for: digits on AVX512-VNNI and AMX,
   float elsewhere. */
fd_q4_recipe fd_q4_recipe_of(fd_qisa isa);
/* Bytes of packed int4 weights with `block` rows per group (block = k for one scale per unit). */
ptrdiff_t fd_q4_packed_size(fd_q4_recipe recipe, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block);
/* Floats of each of fd_q4_pack's scale_out and zero_out (either recipe). */
ptrdiff_t fd_q4_params_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t block);
/* Pack q[kk * ldq + j] (k x n, int8 values in [-8, 7]) into wp as u = q + 8.  digits: per panel
   of 16 columns, per chunk (<= 128 k inside a group), per pair of k-quads 64 bytes, byte 4 col +
   b = u(8t + b) | u(8t + 4 + b) << 4 (zero past the chunk's end); float: fd_q4gemm_float.h.
   scale: groups x n (or n per unit); zero: groups x n int8, or NULL for one scale per unit (then
   block must be k).  The caller sets the fd_qweights' recipe to `recipe`. */
void fd_q4_pack(fd_q4_recipe recipe, const int8_t *q, ptrdiff_t ldq, ptrdiff_t k, ptrdiff_t n, ptrdiff_t block,
                const float *scale, const int8_t *zero, uint8_t *wp, float *scale_out, float *zero_out);

/* int4 part of fd_qweights_panels: v's weights, scales and zeros from panel p0 on (fd_q4gemm.c). */
void fd_q4_panels_view(const fd_qweights *w, ptrdiff_t p0, fd_qweights *v);

/* The columns of panels [p0, p1) (0 <= p0 < p1 <= ceil(n / 16)) as weights of their own: a
   view into w, for splitting a layer's columns over threads (each column's sums are the same). */
fd_qweights fd_qweights_panels(const fd_qweights *w, ptrdiff_t p0, ptrdiff_t p1);

/* The best path this CPU runs (fd_cpu_has), lowered by FASTDENSE_CPU_PATH (baseline: C; avx2:
   AVX-VNNI when present, else AVX2; avx512: AVX512-VNNI; amx: everything) and by
   FASTDENSE_QUANT_PATH (a fd_qisa_name: the quantized kernels alone, e.g. avx2 for the AVX2
   kernel where AVX-VNNI is). */
fd_qisa fd_qgemm_isa(void);
/* 1 when the CPU runs `isa` and FASTDENSE_CPU_PATH allows it. */
int fd_qisa_supported(fd_qisa isa);
/* "baseline", "avx2", "avx_vnni", "avx512_vnni", "amx"; NULL out of range. */
const char *fd_qisa_name(fd_qisa isa);

/* The int8 layer: c = act(descale(quantize(x) @ w) + bias), x m x k floats (row stride ldx),
   c m x n (row stride ldc >= n; glu writes n / 2).  Returns FD_OK, FD_ERR_NOMEM, or FD_ERR_ARG
   (isa unsupported, k > FD_Q8_MAX_K, wrong bits) (fd_status.h). */
int fd_q8_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                const fd_act *act, const float *bias, float *c, ptrdiff_t ldc);
/* Keras's input quantizer alone: q[i * ldq + kk] and scale[i] for m rows of x. */
int fd_q8_quantize_rows(fd_qisa isa, ptrdiff_t m, ptrdiff_t k, const float *x, ptrdiff_t ldx,
                        int8_t *q, ptrdiff_t ldq, float *scale);
/* The integer product alone, for already quantized rows: c[i, j] = sum_kk q[i, kk] w[kk, j].
   q must lie in [-127, 127] (what the quantizer writes); w may hold -128. */
int fd_q8_gemm_i32(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const int8_t *q, ptrdiff_t ldq,
                   int32_t *c, ptrdiff_t ldc);

/* The int4 layer: c = act(x @ w (/ kernel_scale per unit) + bias), by w->recipe's kernels for
   `isa`.  Same returns. */
int fd_q4_dense(fd_qisa isa, const fd_qweights *w, ptrdiff_t m, const float *x, ptrdiff_t ldx,
                const fd_act *act, const float *bias, float *c, ptrdiff_t ldc);

#ifdef __cplusplus
}
#endif

#endif /* FD_QGEMM_H */
