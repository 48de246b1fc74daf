/* Blocking constants of the AVX-512 float32 GEMM (fd_gemm.c). Measurements behind them are in
   the commit messages and docs/cpu-paths.md. */
#ifndef FD_TUNE_AVX512_H
#define FD_TUNE_AVX512_H

#define FD_AVX512_MR 12     /* rows per packed-x tile: 12 x 32 outputs in 24 zmm accumulators */
#define FD_AVX512_KC 256    /* = FD_AVX2_KC (checked): the K blocks decide the bits */
#ifndef FD_AVX512_MC
#define FD_AVX512_MC 144    /* most rows per block of packed x */
#endif
#ifndef FD_AVX512_C_BLOCK_BYTES
#define FD_AVX512_C_BLOCK_BYTES (64 * 1024)   /* output bytes per row block (packed path) */
#endif

#endif
