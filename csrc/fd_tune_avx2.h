/* Blocking constants of the AVX2 + FMA float32 GEMM (fd_gemm.c). Measurements behind them are
   in the commit messages and docs/cpu-paths.md. */
#ifndef FD_TUNE_AVX2_H
#define FD_TUNE_AVX2_H

#define FD_AVX2_MR 6        /* rows per packed-x tile: 6 x 16 outputs in 12 ymm accumulators */
#define FD_AVX2_KC 256      /* most k per K block (the split depends on K alone: same bits on
                               every path, so every path's KC must be this one) */
#define FD_AVX2_MC 144      /* most rows per block of packed x (MC x KC floats: 144 KiB, in L2) */
#define FD_AVX2_C_BLOCK_BYTES (64 * 1024)   /* output bytes per row block in the packed path */
/* packed weights larger than this run K blocks outermost (each K block of weights stays in L2
   for all rows); never here: row blocks outermost, their output kept near the core */
#define FD_AVX2_K_OUTER_BYTES SIZE_MAX
#define FD_AVX2_KB_COLS 1024   /* columns per slice of weights packed per call, in K blocks */
/* floats between the panels of a K block packed per call: kc * 16 floats apart (a multiple of
   4 KiB) the 16 panels one row of w is written to would share one L1 set */
#define FD_AVX2_WBUF_PAD 32
#define FD_AVX2_DIRECT_COLS 512   /* columns per pass of the direct (2-5 rows) kernel */
#define FD_AVX2_DIRECT_KG 4       /* rows of w per register pass of the direct kernel */

#endif
