/* fd_cpu.c -- CPU feature detection (see fd_cpu.h).
 *
 * x86: cpuid leaves 1 and 7 (subleaves 0 and 1) say what the CPU implements; xgetbv(0) says
 * which register state the OS saves on a context switch.  A YMM feature counts only when the OS
 * saves SSE and AVX state (XCR0 bits 1, 2), a ZMM one only when it also saves the opmask and
 * upper ZMM state (bits 5, 6, 7): a CPU can have AVX-512 that the kernel has not enabled.
 * AMX needs the tile state in XCR0 (bits 17, 18) and, on Linux, this process's permission for
 * it: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), asked once, after FASTDENSE_CPU_PATH
 * (a path below amx never asks); refused means no AMX.
 * This reads cpuid directly rather than __builtin_cpu_supports, whose feature names and
 * runtime support differ between gcc and clang (and between their versions).
 */
#include "fd_cpu.h"

#include <stdlib.h>
#include <string.h>

#if FD_X86_DISPATCH
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#endif

static const char *const fd_feature_names[FD_CPU_FEATURE_COUNT] = {
#define FD_X(id, name) [FD_CPU_##id] = name,
    FD_CPU_FEATURES(FD_X)
#undef FD_X
};

typedef struct {
    unsigned features;     /* bit f: fd_cpu_feature f available (after FASTDENSE_CPU_PATH) */
    int level;
    fd_cpu_vendor vendor;
    int family, model;
    char vendor_string[13];
} fd_cpu_info;

static fd_cpu_info fd_info;
static int fd_info_ready;   /* 0 until fd_info is filled in; racing first callers agree */

#define BIT(f) (1u << (f))
#define AVX512_ALL (BIT(FD_CPU_AVX512F) | BIT(FD_CPU_AVX512BW) | BIT(FD_CPU_AVX512DQ) | \
                    BIT(FD_CPU_AVX512VL) | BIT(FD_CPU_AVX512_VNNI) | BIT(FD_CPU_AVX512_BF16))
#define AVX2_ALL (BIT(FD_CPU_AVX2) | BIT(FD_CPU_FMA) | BIT(FD_CPU_AVX_VNNI))
#define AMX_ALL (BIT(FD_CPU_AMX_TILE) | BIT(FD_CPU_AMX_INT8))

#if FD_X86_DISPATCH
static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect_x86(fd_cpu_info *ci)
{
    unsigned a, b, c, d, max_leaf;
    if (!__get_cpuid(0, &max_leaf, &b, &c, &d))
        return;
    memcpy(ci->vendor_string + 0, &b, 4);
    memcpy(ci->vendor_string + 4, &d, 4);
    memcpy(ci->vendor_string + 8, &c, 4);
    ci->vendor_string[12] = '\0';
    if (strcmp(ci->vendor_string, "GenuineIntel") == 0)
        ci->vendor = FD_CPU_VENDOR_INTEL;
    else if (strcmp(ci->vendor_string, "AuthenticAMD") == 0 ||
             strcmp(ci->vendor_string, "HygonGenuine") == 0)
        ci->vendor = FD_CPU_VENDOR_AMD;
    if (max_leaf < 1)
        return;
    __cpuid(1, a, b, c, d);
    const unsigned base_family = (a >> 8) & 0xf, base_model = (a >> 4) & 0xf;
    ci->family = (int)(base_family == 0xf ? base_family + ((a >> 20) & 0xff) : base_family);
    ci->model = (int)(base_family == 0x6 || base_family == 0xf
                          ? base_model + (((a >> 16) & 0xf) << 4) : base_model);
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return;   /* no AVX state saved by the OS: nothing above baseline */
    const unsigned long long xcr0 = xgetbv0();
    const int ymm = (xcr0 & 0x6) == 0x6;
    const int zmm = ymm && (xcr0 & 0xe0) == 0xe0;
    const int tiles = zmm && (xcr0 & 0x60000) == 0x60000;   /* XTILECFG, XTILEDATA */
    if (!ymm || max_leaf < 7)
        return;
    unsigned f = 0;
    if (fma) f |= BIT(FD_CPU_FMA);
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned max_sub7 = a;
    if ((b >> 5) & 1) f |= BIT(FD_CPU_AVX2);
    if (zmm) {
        if ((b >> 16) & 1) f |= BIT(FD_CPU_AVX512F);
        if ((b >> 17) & 1) f |= BIT(FD_CPU_AVX512DQ);
        if ((b >> 30) & 1) f |= BIT(FD_CPU_AVX512BW);
        if ((b >> 31) & 1) f |= BIT(FD_CPU_AVX512VL);
        if ((c >> 11) & 1) f |= BIT(FD_CPU_AVX512_VNNI);
    }
    if (tiles && ((d >> 24) & 1)) {
        f |= BIT(FD_CPU_AMX_TILE);
        if ((d >> 25) & 1) f |= BIT(FD_CPU_AMX_INT8);
    }
    if (max_sub7 >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        if ((a >> 4) & 1) f |= BIT(FD_CPU_AVX_VNNI);
        if (zmm && ((a >> 5) & 1)) f |= BIT(FD_CPU_AVX512_BF16);
    }
    ci->features = f;
}

/* Linux hands out the AMX tile data per process, on request; elsewhere XCR0 is the whole story. */
static int amx_permitted(void)
{
#if defined(__linux__)
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 1;
#endif
}
#endif

static int level_of(unsigned f)
{
    const unsigned l1 = BIT(FD_CPU_AVX2) | BIT(FD_CPU_FMA);
    const unsigned l2 = l1 | BIT(FD_CPU_AVX512F) | BIT(FD_CPU_AVX512DQ) | BIT(FD_CPU_AVX512BW) |
                        BIT(FD_CPU_AVX512VL);
    return (f & l2) == l2 ? 2 : (f & l1) == l1 ? 1 : 0;
}

static void detect(fd_cpu_info *ci)
{
    memset(ci, 0, sizeof(*ci));
#if FD_X86_DISPATCH
    detect_x86(ci);
#elif defined(__aarch64__) && defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMD) ci->features |= BIT(FD_CPU_NEON);
#elif defined(__aarch64__) || defined(__ARM_NEON)
    ci->features |= BIT(FD_CPU_NEON);   /* ASIMD is part of the AArch64 base architecture */
#endif
    /* FASTDENSE_CPU_PATH lowers the path: drop every feature above it */
    const char *want = getenv("FASTDENSE_CPU_PATH");
    if (want != NULL) {
        if (strcmp(want, "baseline") == 0)
            ci->features = 0;
        else if (strcmp(want, "avx2") == 0)
            ci->features &= ~(unsigned)(AVX512_ALL | AMX_ALL);
        else if (strcmp(want, "avx512") == 0)
            ci->features &= ~(unsigned)AMX_ALL;
    }
    /* FASTDENSE_CPU_VENDOR: another vendor's tunings (fd_cpu.h) */
    const char *vendor = getenv("FASTDENSE_CPU_VENDOR");
    if (vendor != NULL) {
        static const struct { const char *name; fd_cpu_vendor id; } vendors[] = {
            {"other", FD_CPU_VENDOR_OTHER}, {"intel", FD_CPU_VENDOR_INTEL}, {"amd", FD_CPU_VENDOR_AMD}};
        for (size_t v = 0; v < sizeof(vendors) / sizeof(vendors[0]); v++)
            if (strcmp(vendor, vendors[v].name) == 0) ci->vendor = vendors[v].id;
    }
    ci->level = level_of(ci->features);
    /* AVX2-era extras without the AVX2 + FMA level itself would be a path no kernel has */
    if (ci->level == 0) ci->features &= ~(unsigned)(AVX2_ALL | AVX512_ALL);
    if (ci->level < 2) ci->features &= ~(unsigned)(AVX512_ALL | AMX_ALL);   /* amx sits above avx512 */
#if FD_X86_DISPATCH
    if ((ci->features & AMX_ALL) && !amx_permitted()) ci->features &= ~(unsigned)AMX_ALL;
#endif
}

static const fd_cpu_info *info(void)
{
    if (!__atomic_load_n(&fd_info_ready, __ATOMIC_ACQUIRE)) {
        fd_cpu_info ci;
        detect(&ci);
        /* racing first callers compute the same answer; each publishes whole copies */
        static int lock;
        while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE)) {}
        if (!__atomic_load_n(&fd_info_ready, __ATOMIC_RELAXED)) {
            fd_info = ci;
            __atomic_store_n(&fd_info_ready, 1, __ATOMIC_RELEASE);
        }
        __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
    }
    return &fd_info;
}

int fd_cpu_has(fd_cpu_feature f)
{
    return (unsigned)f < FD_CPU_FEATURE_COUNT && ((info()->features >> f) & 1);
}

const char *fd_cpu_feature_name(int f)
{
    return f >= 0 && f < FD_CPU_FEATURE_COUNT ? fd_feature_names[f] : NULL;
}

int fd_cpu_level(void) { return info()->level; }

/* AMX is not a float32 path: with it the float kernels still run "avx512". */
const char *fd_cpu_path(void)
{
    static const char *const names[] = {"baseline", "avx2", "avx512"};
    const fd_cpu_info *ci = info();
    if (ci->level == 0 && (ci->features & BIT(FD_CPU_NEON))) return "neon";
    return names[ci->level];
}

fd_cpu_vendor fd_cpu_vendor_id(void) { return info()->vendor; }
const char *fd_cpu_vendor_string(void) { return info()->vendor_string; }
int fd_cpu_family(void) { return info()->family; }
int fd_cpu_model(void) { return info()->model; }
