/* Blocking constants of the aarch64 NEON float32 GEMM (fd_gemm.c). Measured under qemu only
   (correctness, not speed): docs/cpu-paths.md. */
#ifndef FD_TUNE_NEON_H
#define FD_TUNE_NEON_H

#define FD_NEON_MR 6        /* rows per packed-x tile: 6 x 16 outputs in 24 q-register accumulators */
#define FD_NEON_KC 256      /* = FD_AVX2_KC (checked): the K blocks decide the bits */
#define FD_NEON_MC 144      /* most rows per block of packed x */
#define FD_NEON_C_BLOCK_BYTES (64 * 1024)   /* output bytes per row block (packed path) */
#define FD_NEON_K_OUTER_BYTES SIZE_MAX   /* K blocks never outermost (as AVX2) */

#endif
