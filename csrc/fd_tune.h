/* fd_tune.h -- the tuning constants that do not depend on the CPU path: when a dense call is
 * split over threads, how large its blocks are, how long idle workers spin, and the plan's
 * block sizes (fastdense/models/plan.py reads those as _kernels.FD_TUNE_PLAN_*).  The GEMM's
 * own blocking lives with each path (fd_tune_<path>.h).  None of them changes a result: a
 * row's bits never depend on the split or the blocks.  Why each value: docs/ and the commit
 * messages that set them.
 */
#ifndef FD_TUNE_H
#define FD_TUNE_H

typedef enum fd_tune {
    /* ---- threads (fd_pool.c) */
    FD_TUNE_WORKER_SPIN = 32768,         /* pauses (~30 ns) an idle worker spins before it sleeps */
    FD_TUNE_JOIN_SPIN = 4000,            /* pauses the caller spins for its helpers before it sleeps */
    FD_TUNE_AFFINITY_TTL_MS = 10,        /* a thread's count of its allowed cores is read again after this */

    /* ---- splitting one dense call (fd_dense.c); work counts multiply-adds */
    FD_TUNE_BLAS_MT_WORK = 1 << 18,      /* below: one block on the caller, no bookkeeping; above:
                                            OpenBLAS threads a GEMM (SMP_THRESHOLD_MIN * 4) */
    FD_TUNE_SPLIT_WORK = 1 << 21,        /* from this much work a call splits over the pool */
    FD_TUNE_SPLIT_FEW_ROWS = 4,          /* ... a call of at most this many rows, bound by reading */
    FD_TUNE_SPLIT_WORK_FEW_ROWS = 1 << 17, /* the weights, from this much (128 Ki weights) */
    FD_TUNE_SPLIT_WORK_OWN = 1 << 19,    /* fastdense's own kernels (no BLAS threads, no per-call
                                            packing), counting columns in panels of 16 */
    FD_TUNE_COLS_SPLIT_ROWS = 128,       /* fewer rows per thread than this: split by columns ... */
    FD_TUNE_COLS_SPLIT_MIN_COLS = 64,    /* ... when each thread gets at least this many */
    FD_TUNE_BLOCK_BYTES = 256 * 1024,    /* own pool: output rows per block about this size ... */
    FD_TUNE_BLOCK_MIN_ROWS = 256,        /* ... and at least this many (the BLAS re-packs per block) */
    FD_TUNE_BLAS_BLOCK_BYTES = 4 << 20,  /* multi-threaded BLAS: output bytes per GEMM ... */
    FD_TUNE_BLAS_BLOCK_MIN_ROWS = 512,   /* ... and at least this many rows */
    FD_TUNE_EPILOGUE_SPLIT_WORK = 1 << 16, /* after a BLAS GEMM, epilogues of this many values split */

    /* ---- the whole-model plan (fastdense/models/plan.py) */
    FD_TUNE_PLAN_ROWS_PER_BLOCK = 256,   /* GEMM rows per block: the BLAS re-packs weights per call */
    FD_TUNE_PLAN_BLOCK_BYTES = 4 << 20,  /* intermediates of one block (at most 4 x ROWS_PER_BLOCK
                                            samples) where a core's L2 holds FD_TUNE_PLAN_BIG_L2:
                                            each block streams every layer's weights in again, so
                                            fewer, larger blocks (the MLP at 4096: 1014 samples, not
                                            507) beat keeping a block's intermediates in one L2 ... */
    FD_TUNE_PLAN_BIG_L2 = 2 << 20,
    FD_TUNE_PLAN_BLOCK_BYTES_SMALL_L2 = 1 << 20, /* ... but with a smaller L2 (Zen 4: 1 MiB) the first
                                            layer's weights do not stay there anyway, and blocks of
                                            this size win (docs/gemm.md, fd_plan_block_bytes) */
    FD_TUNE_PLAN_BLAS_BLOCK_BYTES = 64 << 20, /* multi-threaded BLAS: whole batches up to this scratch */
    FD_TUNE_PLAN_SMALL_BATCH = 48,       /* packed plans: batches up to this size split by samples ... */
    FD_TUNE_PLAN_SMALL_BATCH_WORK = 1 << 20, /* ... when they are at least this many multiply-adds */

    /* ---- one block's dense steps (fd_plan.c step_cost_ns): a step splits over the pool when
       its estimated time on one core exceeds this (a fork/join costs about 0.8 us) ... */
    FD_TUNE_STEP_SPLIT_NS = 3000,
    /* ... estimated as the larger of its weights' bytes read and its multiply-adds, at these
       picoseconds each per kernel (one row, weights in L2), times FAR when the plan's weights
       do not fit one core's L2 (FD_TUNE_L2_BYTES where the OS does not say) */
    FD_TUNE_STEP_PS_PER_BYTE_F32 = 12, FD_TUNE_STEP_PS_PER_MAC_F32 = 11,
    FD_TUNE_STEP_PS_PER_BYTE_F64 = 12, FD_TUNE_STEP_PS_PER_MAC_F64 = 22,
    FD_TUNE_STEP_PS_PER_BYTE_Q8 = 7, FD_TUNE_STEP_PS_PER_MAC_Q8 = 3,
    FD_TUNE_STEP_PS_PER_BYTE_Q8_AMD = 12, /* AMD's L2 feeds a core half as fast (Zen 4, docs/threads.md) */
    FD_TUNE_STEP_PS_PER_BYTE_Q4 = 7, FD_TUNE_STEP_PS_PER_MAC_Q4_DIGITS = 19, FD_TUNE_STEP_PS_PER_MAC_Q4_FLOAT = 32,
    FD_TUNE_STEP_FAR = 2,
    FD_TUNE_L2_BYTES = 1 << 20
} fd_tune;

#endif
