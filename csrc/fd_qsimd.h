/* fd_qsimd.h -- what the quantized kernels (fd_qgemm.c, fd_q4gemm.c, fd_q4gemm_float.c) share:
   whether this is an x86 build, the target attributes of their per-path copies (chosen at run
   time, so the default build stays portable), and the panel and group counts of the packed
   weights.  Included by those .c files only. */
#ifndef FD_QSIMD_H
#define FD_QSIMD_H

#include <stddef.h>

#include "fd_qgemm.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FD_Q_X86 1
#include <immintrin.h>
#else
#define FD_Q_X86 0
#endif

#define AI static inline __attribute__((always_inline))

#if FD_Q_X86 && defined(__GNUC__)
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
/* AVX-512F/BW/VL/DQ: the float copies, which also run where VNNI is missing */
#define T_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
#define T_AVX512VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#endif

#if FD_Q_X86 && defined(__GNUC__)
/* An int4 tile's result v for panel `panel` of one row to c (the row's start): the per-unit
   scale divided out when the weights have one scale per unit (not grouped, which fold theirs in
   per group), and only the panel's columns inside n written.  Every AVX-512 int4 tile's store. */
T_AVX512 AI void q4_store_512(const fd_qweights *w, ptrdiff_t panel, int grouped, __m512 v, float *c)
{
    const ptrdiff_t left = w->n - panel * FD_QPANEL;
    const __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
    if (!grouped) v = _mm512_div_ps(v, _mm512_loadu_ps(w->scale + panel * FD_QPANEL));
    _mm512_mask_storeu_ps(c + panel * FD_QPANEL, m, v);
}
#endif

/* Panels of FD_QPANEL columns for n columns, and groups of `block` rows for k rows. */
static inline ptrdiff_t q_panels(ptrdiff_t n) { return (n + FD_QPANEL - 1) / FD_QPANEL; }
static inline ptrdiff_t q_groups(ptrdiff_t k, ptrdiff_t block) { return (k + block - 1) / block; }

#endif
