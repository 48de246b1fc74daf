/* fd_cpu.h -- the one CPU-detection unit: which instruction sets this CPU and OS support, and
 * which SIMD path every kernel takes.
 *
 * Detection reads cpuid (and xgetbv, for the register state the OS saves) once, on first use,
 * the same way under gcc and clang; on aarch64 it reports NEON (ASIMD).  The environment
 * variable FASTDENSE_CPU_PATH=baseline|avx2|avx512|amx (neon|baseline on aarch64) can LOWER the
 * path, never raise it; the features above the forced path are then reported absent by
 * fd_cpu_has too, so every kernel that asks obeys the same path.  amx is avx512 plus the AMX
 * tiles (only the int8 kernel uses them): FASTDENSE_CPU_PATH=avx512 means AVX-512 without AMX.
 * AMX counts only when Linux grants this process the tile data (arch_prctl, requested once on
 * first use; the tiles themselves are configured and released by the kernel that uses them).
 */
#ifndef FD_CPU_H
#define FD_CPU_H

#ifdef __cplusplus
extern "C" {
#endif

/* The features, in one list: X(enum suffix, name reported to Python). */
#define FD_CPU_FEATURES(X)            \
    X(AVX2, "avx2")                   \
    X(FMA, "fma")                     \
    X(AVX512F, "avx512f")             \
    X(AVX512BW, "avx512bw")           \
    X(AVX512DQ, "avx512dq")           \
    X(AVX512VL, "avx512vl")           \
    X(AVX512_VNNI, "avx512_vnni")     \
    X(AVX512_BF16, "avx512_bf16")     \
    X(AVX_VNNI, "avx_vnni")           \
    X(AMX_TILE, "amx_tile")           \
    X(AMX_INT8, "amx_int8")           \
    X(NEON, "neon")

typedef enum {
#define FD_X(id, name) FD_CPU_##id,
    FD_CPU_FEATURES(FD_X)
#undef FD_X
    FD_CPU_FEATURE_COUNT
} fd_cpu_feature;

typedef enum { FD_CPU_VENDOR_OTHER = 0, FD_CPU_VENDOR_INTEL, FD_CPU_VENDOR_AMD } fd_cpu_vendor;

/* 1 when the CPU and OS support feature f and the forced path (if any) allows it. */
int fd_cpu_has(fd_cpu_feature f);
/* Name of feature f ("avx2", ...), NULL if out of range. */
const char *fd_cpu_feature_name(int f);

/* The SIMD level: 0 baseline, 1 AVX2 + FMA, 2 AVX-512 (F, DQ, BW, VL).  Always 0 off x86. */
int fd_cpu_level(void);
/* The path as a name: "avx512", "avx2", "neon" or "baseline". */
const char *fd_cpu_path(void);

/* Who made the CPU, and its display family and model (cpuid leaf 1, extended fields added);
   e.g. AMD family 25 (0x19) with AVX-512 is Zen 4, which runs 512-bit operations as two
   256-bit halves, so a kernel may prefer its AVX2 form there.  0 where unknown (aarch64).
   The vendor id picks tunings only (tile shapes, blocking, thread splits: never instructions
   or bits), so FASTDENSE_CPU_VENDOR=intel|amd|other may replace it: the tests run every
   vendor's tiles on one machine. */
fd_cpu_vendor fd_cpu_vendor_id(void);
const char *fd_cpu_vendor_string(void);   /* cpuid's 12 characters ("GenuineIntel"), or "" */
int fd_cpu_family(void);
int fd_cpu_model(void);

/* ------------------------------------------------------------------ per-path code
 * Code for one SIMD path goes between FD_TARGET_BEGIN_<PATH> and FD_TARGET_END: every function
 * defined there (static inline helpers from included headers too) is compiled for that target,
 * under gcc and clang alike.  Call it only when fd_cpu_level() says the CPU has the path.
 * FD_X86_DISPATCH is 1 where these paths exist. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FD_X86_DISPATCH 1
#if defined(__clang__)
#define FD_TARGET_BEGIN_AVX2 \
    _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define FD_TARGET_BEGIN_AVX512                                                                  \
    _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512dq,avx512vl,avx512bw,avx2,fma\"))), apply_to = function)")
#define FD_TARGET_END _Pragma("clang attribute pop")
#else
#define FD_TARGET_BEGIN_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define FD_TARGET_BEGIN_AVX512 \
    _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512dq,avx512vl,avx512bw,avx2,fma\")")
#define FD_TARGET_END _Pragma("GCC pop_options")
#endif
#else
#define FD_X86_DISPATCH 0
#endif

#ifdef __cplusplus
}
#endif

#endif /* FD_CPU_H */
