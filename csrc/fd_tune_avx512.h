/* Blocking constants of the AVX-512 float32 GEMM (fd_gemm.c). Measurements behind them are in
   the commit messages and docs/cpu-paths.md. */
#ifndef FD_TUNE_AVX512_H
#define FD_TUNE_AVX512_H

#define FD_AVX512_MR 6      /* rows per packed-x tile: 6 x 64 outputs in 24 zmm accumulators */
#define FD_AVX512_KC 256    /* = FD_AVX2_KC (checked): the K blocks decide the bits */
#ifndef FD_AVX512_MC
#define FD_AVX512_MC 144    /* most rows per block of packed x */
#endif
#ifndef FD_AVX512_C_BLOCK_BYTES
#define FD_AVX512_C_BLOCK_BYTES (64 * 1024)   /* output bytes per row block (packed path) */
#endif
#ifndef FD_AVX512_FEW_MAX_ROWS
/* a call's first row block of 12 to this many rows in whole x tiles (packed weights) takes
   12 x 32 tiles (two panels, in L1) instead of 6 x 64 (four panels, read from L2 by each of its
   few tiles) */
#define FD_AVX512_FEW_MAX_ROWS 24
#endif
#ifndef FD_AVX512_K_OUTER_BYTES
/* packed weights larger than this run K blocks outermost: each K block of weights (up to 1 MiB
   at 1024 columns) stays in L2 for every row, the output goes out once per K block ... */
#define FD_AVX512_K_OUTER_BYTES (1024 * 1024)
#endif
/* ... except for a call of this many rows or more against weights of at most one core's 2 MiB
   L2: row blocks outermost, the weights staying in L2 and each block's output in L2 across the K
   blocks, instead of the whole output out to L3 and back per K block (784 x 512, 1.6 MB packed,
   one thread: 4096 rows 6 %, 2048 rows 2.5 %, 1024 rows 1.5 % faster; not below: in the MLP
   plan's 256-row blocks 1-2 % slower, docs/gemm.md) */
#ifndef FD_AVX512_ROWS_OUTER_MIN_ROWS
#define FD_AVX512_ROWS_OUTER_MIN_ROWS 1024
#endif
#ifndef FD_AVX512_ROWS_OUTER_MAX_BYTES
#define FD_AVX512_ROWS_OUTER_MAX_BYTES (2 * 1024 * 1024)
#endif

#endif
