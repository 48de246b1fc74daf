/* fd_act.c -- activation names and flags, and CPU dispatch of the epilogue.
 *
 * x86-64: fd_act_impl.h is compiled three times: portable baseline (SSE2), AVX2+FMA and AVX-512
 * (F/DQ/VL/BW).  fd_cpu_level() (fd_cpu.c) picks the one the CPU and OS support at run time, or
 * the lower one FASTDENSE_CPU_PATH asks for.
 * AArch64: once, the NEON copy.  AdvSIMD is part of the base architecture (every AArch64 CPU has
 * it, and the compiler's default target uses it), so the choice is made at compile time and
 * FASTDENSE_CPU_PATH=baseline, which takes the NEON GEMM away, leaves it in place: it is the
 * architecture's baseline, as SSE2 is x86-64's.  gcc 12 vectorizes every loop with 128-bit
 * vectors there that it vectorizes in the SSE2 copy (and gelu's float64 tanh form besides, with
 * NEON's FMA); tests/c/act_test.c checks the bounds under qemu-aarch64 (.ci/arm64-c).
 * Elsewhere: one baseline copy.
 */
/* One code-generation choice for this file only: no jump threading.  It duplicates the code after
 * a clamp such as `x < -14.8 ? -14.8 : x` for the constant branch, and if-conversion then computes
 * that copy for every lane too; in gelu its products underflow to subnormals on every vector (a 2x
 * slowdown).  The epilogues are branch-free by design, so the pass buys nothing here.
 *
 * FMA contraction stays on: the AVX2 and AVX-512 copies fuse a*b + c where gcc sees fit, the
 * baseline (SSE2) copy cannot, so the three paths may differ in the last bits.  That is accepted
 * (numpy's SIMD paths differ the same way): each path on its own must stay within the activation's
 * float32 ulp bound against the float64 reference (tests/test_activations.py checks every path). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-thread-jumps")
#endif

#include "fd_act.h"
#include "fd_act_math.h"
#include "fd_cpu.h"

static const struct {
    const char *id, *name;
    unsigned char rowwise, halves;
} fd_table[FD_ACT_COUNT] = {
#define FD_X(id_, fn, name_, dispatch, rowwise_, halves_) \
    [FD_ACT_##id_] = {#id_, name_, rowwise_, halves_},
    FD_ACTIVATIONS(FD_X)
#undef FD_X
};

static int known(int code) { return code >= 0 && code < FD_ACT_COUNT; }

const char *fd_act_name(int code) { return known(code) ? fd_table[code].name : NULL; }
const char *fd_act_id(int code) { return known(code) ? fd_table[code].id : NULL; }
int fd_act_rowwise(int code) { return known(code) && fd_table[code].rowwise; }
int fd_act_halves(int code) { return known(code) && fd_table[code].halves; }

/* ------------------------------------------------------------------ the copies */

/* the first copy: the architecture's baseline */
#if defined(__aarch64__)
#define FD_BASE(name) name##_neon
#else
#define FD_BASE(name) name##_baseline
#endif
#define FD_SFX(name) FD_BASE(name)
#include "fd_act_impl.h"
#undef FD_SFX

#if FD_X86_DISPATCH
FD_TARGET_BEGIN_AVX2
#define FD_SFX(name) name##_avx2
#include "fd_act_impl.h"
#undef FD_SFX
FD_TARGET_END

FD_TARGET_BEGIN_AVX512
#define FD_SFX(name) name##_avx512
#include "fd_act_impl.h"
#undef FD_SFX
FD_TARGET_END
#endif

/* ------------------------------------------------------------------ dispatch */

typedef void (*fd_epi_f32)(const fd_act *, const float *, const float *, ptrdiff_t, float *,
                           ptrdiff_t, ptrdiff_t, ptrdiff_t);
typedef void (*fd_epi_f64)(const fd_act *, const double *, const double *, ptrdiff_t, double *,
                           ptrdiff_t, ptrdiff_t, ptrdiff_t);

/* indexed by fd_cpu_level() (always 0 off x86) */
static const struct {
    fd_epi_f32 f32;
    fd_epi_f64 f64;
} fd_paths[] = {
    {FD_BASE(epilogue_f32), FD_BASE(epilogue_f64)},
#if FD_X86_DISPATCH
    {epilogue_f32_avx2, epilogue_f64_avx2},
    {epilogue_f32_avx512, epilogue_f64_avx512},
#endif
};

void fd_epilogue_f32(const fd_act *a, const float *bias, const float *src, ptrdiff_t ld_src,
                     float *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in)
{
    if (rows <= 0 || cols_in <= 0)
        return;
    if (bias == NULL && src == dst && (a->code == FD_ACT_LINEAR || a->code < 0 ||
                                       a->code >= FD_ACT_COUNT))
        return;
    fd_paths[fd_cpu_level()].f32(a, bias, src, ld_src, dst, ld_dst, rows, cols_in);
}

void fd_epilogue_f64(const fd_act *a, const double *bias, const double *src, ptrdiff_t ld_src,
                     double *dst, ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t cols_in)
{
    if (rows <= 0 || cols_in <= 0)
        return;
    if (bias == NULL && src == dst && (a->code == FD_ACT_LINEAR || a->code < 0 ||
                                       a->code >= FD_ACT_COUNT))
        return;
    fd_paths[fd_cpu_level()].f64(a, bias, src, ld_src, dst, ld_dst, rows, cols_in);
}
