/* fastdense fused dense kernel.
 *
 * out = act(x @ w + bias) is computed in row blocks: one BLAS GEMM per block (the row-major
 * trick: out^T = w^T x^T in BLAS's column-major terms, so no operand is copied), then the
 * bias + activation epilogue on that block while it is still in cache.
 *
 * Threading (see README, "Threads"): when the BLAS runs single-threaded, fastdense splits a
 * call over its own pool, taking only cores that no other fastdense call is using, so one big
 * call gets every core and concurrent calls get one core each instead of fighting; the split
 * itself depends only on the shape and the thread count, so results never depend on load. When the
 * BLAS is multi-threaded, each GEMM is left to it and concurrent multi-threaded GEMMs are
 * serialised (OpenBLAS collapses when two callers share its pool); epilogues still overlap.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FD_PAUSE() _mm_pause()
#else
#define FD_PAUSE() ((void)0)
#endif

#include <dlfcn.h>

#include "fd_kernel.h"
#include "fd_gemm.h"

/* ------------------------------------------------------------------ BLAS access */

static fd_sgemm_fn p_sgemm;
static fd_dgemm_fn p_dgemm;
static fd_sgemv_fn p_sgemv;
static fd_dgemv_fn p_dgemv;
static int (*p_blas_threads_get)(void);
static void (*p_blas_threads_set)(int);
static ptrdiff_t blas_int_max = INT_MAX;

void fd_set_blas(fd_sgemm_fn s, fd_dgemm_fn d, fd_sgemv_fn sv, fd_dgemv_fn dv)
{
    p_sgemm = s; p_dgemm = d; p_sgemv = sv; p_dgemv = dv;
}

static char blas_path[1024];
static const char *(*p_blas_config)(void);

/* Find the BLAS library behind `fn` (one of the gemm pointers) and its OpenBLAS thread API. */
void fd_find_blas_threads_api(void *fn)
{
    Dl_info info;
    if (!dladdr(fn, &info) || !info.dli_fname) return;
    strncpy(blas_path, info.dli_fname, sizeof(blas_path) - 1);
    void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (!h) return;
    static const char *prefixes[] = {"scipy_openblas_", "scipy_openblas64_", "openblas_"};
    char name[96];
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(*prefixes); i++) {
        snprintf(name, sizeof(name), "%sget_num_threads", prefixes[i]);
        void *get = dlsym(h, name);
        snprintf(name, sizeof(name), "%sset_num_threads", prefixes[i]);
        void *set = dlsym(h, name);
        snprintf(name, sizeof(name), "%sget_config", prefixes[i]);
        void *cfg = dlsym(h, name);
        if (get && set) {
            p_blas_threads_get = (int (*)(void))get;
            p_blas_threads_set = (void (*)(int))set;
            p_blas_config = (const char *(*)(void))cfg;
            if (dladdr(get, &info) && info.dli_fname)
                strncpy(blas_path, info.dli_fname, sizeof(blas_path) - 1);
            break;
        }
    }
}

const char *fd_blas_path(void) { return blas_path; }
const char *fd_blas_config(void) { return p_blas_config ? p_blas_config() : ""; }
int fd_blas_get_threads(void) { return p_blas_threads_get ? p_blas_threads_get() : -1; }
int fd_blas_set_threads(int n)
{
    if (!p_blas_threads_set) return -1;
    p_blas_threads_set(n);
    return 0;
}

void fd_set_blas_int_max(ptrdiff_t v) { blas_int_max = v < 1 ? INT_MAX : (v > INT_MAX ? INT_MAX : v); }
ptrdiff_t fd_get_blas_int_max(void) { return blas_int_max; }

/* C := op(A).op(B) + beta * C, column-major, dimensions that fit a BLAS int. */
static void blas_gemm(int dt, char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                      const void *A, ptrdiff_t lda, const void *B, ptrdiff_t ldb,
                      double beta, void *C, ptrdiff_t ldc)
{
    int im = (int)m, in = (int)n, ik = (int)k, ia = (int)lda, ib = (int)ldb, ic = (int)ldc;
    if (dt == FD_F32) {
        float al = 1.0f, be = (float)beta;
        p_sgemm(&ta, &tb, &im, &in, &ik, &al, (float *)A, &ia, (float *)B, &ib, &be, (float *)C, &ic);
    } else {
        double al = 1.0, be = beta;
        p_dgemm(&ta, &tb, &im, &in, &ik, &al, (double *)A, &ia, (double *)B, &ib, &be, (double *)C, &ic);
    }
}

/* y := op(A).x, column-major A, dimensions that fit a BLAS int. */
static void blas_gemv(int dt, char t, ptrdiff_t m, ptrdiff_t n, const void *A, ptrdiff_t lda,
                      const void *x, ptrdiff_t incx, void *y)
{
    int im = (int)m, in = (int)n, ia = (int)lda, ix = (int)incx, iy = 1;
    if (dt == FD_F32) {
        float al = 1.0f, be = 0.0f;
        p_sgemv(&t, &im, &in, &al, (float *)A, &ia, (float *)x, &ix, &be, (float *)y, &iy);
    } else {
        double al = 1.0, be = 0.0;
        p_dgemv(&t, &im, &in, &al, (double *)A, &ia, (double *)x, &ix, &be, (double *)y, &iy);
    }
}

/* Copy a column-major rows x cols block with leading dimension ld into dst (ld = rows). */
static void pack(char *dst, const char *src, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t ld, size_t es)
{
    for (ptrdiff_t c = 0; c < cols; c++)
        memcpy(dst + (size_t)c * rows * es, src + (size_t)c * ld * es, (size_t)rows * es);
}

/* C := op(A).op(B) for any 64-bit sizes: pieces no larger than the BLAS int, and blocks
 * packed to small leading dimensions when a leading dimension itself is too large. */
static int gemm64(int dt, char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                  const char *A, ptrdiff_t lda, const char *B, ptrdiff_t ldb, char *C, ptrdiff_t ldc)
{
    const size_t es = dt == FD_F32 ? 4 : 8;
    const ptrdiff_t lim = blas_int_max;
    if (m == 0 || n == 0) return 0;
    if (k == 0) {
        for (ptrdiff_t j = 0; j < n; j++) memset(C + (size_t)j * ldc * es, 0, (size_t)m * es);
        return 0;
    }
    if (m <= lim && n <= lim && k <= lim && lda <= lim && ldb <= lim && ldc <= lim) {
        blas_gemm(dt, ta, tb, m, n, k, A, lda, B, ldb, 0.0, C, ldc);
        return 0;
    }
    const int packed = lda > lim || ldb > lim || ldc > lim;
    const ptrdiff_t bs = packed ? (lim < 1024 ? lim : 1024) : lim;
    char *As = NULL, *Bs = NULL, *Cs = NULL;
    if (packed) {
        As = malloc((size_t)bs * bs * es);
        Bs = malloc((size_t)bs * bs * es);
        Cs = malloc((size_t)bs * bs * es);
        if (!As || !Bs || !Cs) { free(As); free(Bs); free(Cs); return -1; }
    }
    for (ptrdiff_t j0 = 0; j0 < n; j0 += bs) {
        const ptrdiff_t nc = n - j0 < bs ? n - j0 : bs;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += bs) {
            const ptrdiff_t mc = m - i0 < bs ? m - i0 : bs;
            char *Cb = C + (size_t)(i0 + j0 * ldc) * es;
            for (ptrdiff_t p0 = 0; p0 < k; p0 += bs) {
                const ptrdiff_t kc = k - p0 < bs ? k - p0 : bs;
                const char *Ab = A + (size_t)(ta == 'N' ? i0 + p0 * lda : p0 + i0 * lda) * es;
                const char *Bb = B + (size_t)(tb == 'N' ? p0 + j0 * ldb : j0 + p0 * ldb) * es;
                const double beta = p0 == 0 ? 0.0 : 1.0;
                if (!packed) {
                    blas_gemm(dt, ta, tb, mc, nc, kc, Ab, lda, Bb, ldb, beta, Cb, ldc);
                    continue;
                }
                const ptrdiff_t ar = ta == 'N' ? mc : kc, ac = ta == 'N' ? kc : mc;
                const ptrdiff_t br = tb == 'N' ? kc : nc, bc = tb == 'N' ? nc : kc;
                pack(As, Ab, ar, ac, lda, es);
                pack(Bs, Bb, br, bc, ldb, es);
                blas_gemm(dt, ta, tb, mc, nc, kc, As, ar, Bs, br, beta, Cs, mc);
            }
            if (packed)
                for (ptrdiff_t c = 0; c < nc; c++)
                    memcpy(Cb + (size_t)c * ldc * es, Cs + (size_t)c * mc * es, (size_t)mc * es);
        }
    }
    free(As); free(Bs); free(Cs);
    return 0;
}

/* ------------------------------------------------------------------ thread pool */

#define FD_MAX_THREADS 64

typedef struct job job_t;
typedef void (*task_fn)(job_t *job, ptrdiff_t t, void *scratch);

struct job {
    task_fn fn;
    int (*user_fn)(void *ctx, ptrdiff_t t);  /* fd_parallel_for */
    void *user_ctx;
    const fd_dense_args *a;
    ptrdiff_t ntasks, rows_per_task, cols_per_task;
    void *shared;                 /* glu: full-width GEMM result shared by column tasks */
    atomic_long next;             /* next task index to take */
    atomic_int pending;           /* helpers still working */
    atomic_int failed;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic(job_t *) job;
    int started;
} worker_t;

static worker_t workers[FD_MAX_THREADS];
static atomic_ulong idle_mask;        /* bit i: worker i started and idle */
static atomic_int busy_cores;         /* cores running fastdense work now */
static atomic_int threads_cfg;        /* pool size incl. the caller; 0 = not yet set */
static atomic_int own_threading = -1; /* -1 = follow the BLAS thread count */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;

int fd_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0) return c > FD_MAX_THREADS ? FD_MAX_THREADS : c;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : (c > FD_MAX_THREADS ? FD_MAX_THREADS : (int)c);
}

int fd_get_num_threads(void)
{
    int n = atomic_load(&threads_cfg);
    return n > 0 ? n : fd_cpu_count();
}

void fd_set_num_threads(int n)
{
    if (n < 1) n = fd_cpu_count();
    if (n > FD_MAX_THREADS) n = FD_MAX_THREADS;
    atomic_store(&threads_cfg, n);
}

void fd_set_own_threading(int v) { atomic_store(&own_threading, v); }

int fd_own_threading(void)
{
    int v = atomic_load(&own_threading);
    if (v >= 0) return v;
    /* an unknown BLAS may thread on its own: let it, rather than oversubscribe */
    return p_blas_threads_get != NULL && p_blas_threads_get() <= 1;
}

static void run_tasks(job_t *job)
{
    void *scratch = NULL;
    const fd_dense_args *a = job->a;
    if (fd_act_halves(a->act.code) && job->shared == NULL) {
        size_t es = a->dtype == FD_F32 ? 4 : 8;
        scratch = malloc((size_t)job->rows_per_task * a->n * es + 64);
        if (!scratch) { atomic_store(&job->failed, 1); return; }
    }
    for (;;) {
        ptrdiff_t t = atomic_fetch_add(&job->next, 1);
        if (t >= job->ntasks) break;
        job->fn(job, t, scratch);
    }
    free(scratch);
}

/* One step of a spin-wait. Every 512th step yields the CPU: when the thread being waited for
   shares this core (the scheduler's choice, or a busy machine), a pure spin would take its
   time slices; on an idle core sched_yield returns at once. */
static inline void fd_spin_pause(int spin)
{
    if ((spin & 511) == 511) sched_yield();
    else FD_PAUSE();
}

#ifndef FD_WORKER_SPIN
#define FD_WORKER_SPIN 32768
#endif

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const unsigned long bit = 1UL << (w - workers);
    for (;;) {
        /* spin first, about a millisecond (pauses of ~30 ns): the next layer's job usually
           follows within microseconds, the next call within a few; and a virtual CPU left idle
           is given away by the host, which can take milliseconds to give it back -- the caller
           would then run every part itself, at half speed */
        job_t *job = NULL;
        for (int spin = 0; spin < FD_WORKER_SPIN && (job = atomic_load(&w->job)) == NULL; spin++) fd_spin_pause(spin);
        if (job == NULL) {
            pthread_mutex_lock(&w->mu);
            while ((job = atomic_load(&w->job)) == NULL) pthread_cond_wait(&w->cv, &w->mu);
            pthread_mutex_unlock(&w->mu);
        }
        atomic_store(&w->job, NULL);
        run_tasks(job);
        atomic_fetch_or(&idle_mask, bit);
        /* the job lives on the caller's stack: touch it only under its mutex, which the
           caller takes once more before it returns */
        pthread_mutex_lock(&job->mu);
        if (atomic_fetch_sub(&job->pending, 1) == 1) pthread_cond_signal(&job->cv);
        pthread_mutex_unlock(&job->mu);
    }
    return NULL;
}

static atomic_int pool_size;         /* workers started */

/* A forked child has none of the parent's workers: forget them (they restart on demand). */
static void pool_after_fork_child(void)
{
    memset(workers, 0, sizeof(workers));
    atomic_store(&idle_mask, 0);
    atomic_store(&pool_size, 0);
    atomic_store(&busy_cores, 0);
    pthread_mutex_init(&pool_mu, NULL);
    pthread_mutex_init(&blas_mu, NULL);
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork_handler(void) { pthread_atfork(NULL, NULL, pool_after_fork_child); }

/* Start workers 0 .. n-2 if they are not running yet. */
static void pool_ensure(int n)
{
    if (atomic_load(&pool_size) >= n - 1) return;
    pthread_once(&fork_once, register_fork_handler);
    pthread_mutex_lock(&pool_mu);
    for (int i = 0; i < n - 1 && i < FD_MAX_THREADS; i++) {
        worker_t *w = &workers[i];
        if (w->started) continue;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        atomic_store(&w->job, NULL);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&w->th, &attr, worker_main, w) == 0) {
            w->started = 1;
            atomic_fetch_or(&idle_mask, 1UL << i);
        }
        pthread_attr_destroy(&attr);
        if (!w->started) break;
        atomic_store(&pool_size, i + 1);
    }
    pthread_mutex_unlock(&pool_mu);
}

/* Claim up to `want` idle workers, never more than the idle cores; returns their mask. */
static unsigned long claim_workers(int want)
{
    if (want <= 0) return 0;
    int cores = fd_get_num_threads();
    int free_cores = cores - atomic_load(&busy_cores);
    if (want > free_cores) want = free_cores;
    if (want <= 0) return 0;
    pool_ensure(cores);
    unsigned long got = 0;
    unsigned long mask = atomic_load(&idle_mask);
    for (;;) {
        unsigned long take = 0, m = mask;
        int c = 0;
        while (m && c < want) { unsigned long low = m & (~m + 1); take |= low; m &= ~low; c++; }
        if (!take) break;
        if (atomic_compare_exchange_weak(&idle_mask, &mask, mask & ~take)) { got = take; break; }
    }
    atomic_fetch_add(&busy_cores, __builtin_popcountl(got));
    return got;
}

/* Run job->ntasks tasks on the caller plus the already claimed `helpers`, and wait for them. */
static int run_job_claimed(job_t *job, unsigned long helpers)
{
    atomic_store(&job->next, 0);
    atomic_store(&job->failed, 0);
    const int nh = __builtin_popcountl(helpers);
    if (nh == 0) {
        run_tasks(job);
        return atomic_load(&job->failed) ? -1 : 0;
    }
    pthread_mutex_init(&job->mu, NULL);
    pthread_cond_init(&job->cv, NULL);
    atomic_store(&job->pending, nh);
    for (int i = 0; i < FD_MAX_THREADS; i++) {
        if (!(helpers & (1UL << i))) continue;
        worker_t *w = &workers[i];
        pthread_mutex_lock(&w->mu);
        atomic_store(&w->job, job);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    run_tasks(job);
    for (int spin = 0; spin < 4000 && atomic_load(&job->pending) > 0; spin++) fd_spin_pause(spin);
    pthread_mutex_lock(&job->mu);
    while (atomic_load(&job->pending) > 0) pthread_cond_wait(&job->cv, &job->mu);
    pthread_mutex_unlock(&job->mu);
    atomic_fetch_sub(&busy_cores, nh);
    pthread_mutex_destroy(&job->mu);
    pthread_cond_destroy(&job->cv);
    return atomic_load(&job->failed) ? -1 : 0;
}

/* Claim up to max_helpers idle workers (no more than tasks - 1) and run the job. */
static int run_job(job_t *job, int max_helpers)
{
    unsigned long helpers = 0;
    if (max_helpers > 0 && job->ntasks > 1)
        helpers = claim_workers(max_helpers < job->ntasks - 1 ? max_helpers : (int)(job->ntasks - 1));
    return run_job_claimed(job, helpers);
}

/* ------------------------------------------------------------------ the fused op */

static size_t esize(const fd_dense_args *a) { return a->dtype == FD_F32 ? 4 : 8; }

static void epilogue(const fd_dense_args *a, const char *src, ptrdiff_t ld_src, char *dst,
                     ptrdiff_t ld_dst, ptrdiff_t rows, ptrdiff_t col0, ptrdiff_t cols)
{
    const size_t es = esize(a);
    const char *bias = a->bias ? (const char *)a->bias + col0 * es : NULL;
    if (a->dtype == FD_F32)
        fd_epilogue_f32(&a->act, (const float *)bias, (const float *)src, ld_src, (float *)dst, ld_dst, rows, cols);
    else
        fd_epilogue_f64(&a->act, (const double *)bias, (const double *)src, ld_src, (double *)dst, ld_dst, rows, cols);
}

/* The packed kernel computes this call's product (see fd_gemm.c). */
static int uses_packed(const fd_dense_args *a)
{
    return a->wpack != NULL && a->dtype == FD_F32 && fd_packed_available();
}

/* A few rows of f32 against a row-major kernel: fastdense's own kernel reads the weights in
   place (a BLAS is slow there: OpenBLAS sgemm with 4 rows runs at a tenth of its speed). */
static int uses_direct(const fd_dense_args *a)
{
    return a->dtype == FD_F32 && a->m >= 2 && a->m <= FD_DIRECT_MAX_ROWS && !a->w_colmajor && a->wpack == NULL
           && fd_packed_available();
}

/* Two rows or more of f32 without packed weights (and not run by the direct kernel): the
   packed kernel's tiles on weights packed one K block at a time into a buffer that stays in
   cache (fd_gemm_kblocks_f32), so every batch gives the bits of the layer's packed weights.
   OpenBLAS is slow with few rows (the row-major trick makes them its narrow dimension: at
   32x512x512 it takes 1.7x the time of packing plus the packed kernel). */
static int uses_pack_per_call(const fd_dense_args *a)
{
    return a->dtype == FD_F32 && a->wpack == NULL && a->m >= 2 && !uses_direct(a) && fd_packed_available();
}

/* fastdense's own single-threaded kernels: split over its own pool */
static int uses_own_kernel(const fd_dense_args *a)
{
    return uses_packed(a) || uses_direct(a) || uses_pack_per_call(a);
}

/* GEMM of rows [r0, r0+rows) x columns [c0, c0+cols) into C (row-major, ld ldc). */
static int gemm_block(const fd_dense_args *a, ptrdiff_t r0, ptrdiff_t rows, ptrdiff_t c0,
                      ptrdiff_t cols, char *C, ptrdiff_t ldc)
{
    const size_t es = esize(a);
    const char ta = a->w_colmajor ? 'T' : 'N', tb = a->x_colmajor ? 'T' : 'N';
    const char *A = (const char *)a->w + (size_t)(a->w_colmajor ? c0 * a->ldw : c0) * es;
    const char *B = (const char *)a->x + (size_t)(a->x_colmajor ? r0 : r0 * a->ldx) * es;
    if (uses_packed(a)) {
        /* c0 is a multiple of 16 (see task_cols), the start of a panel */
        const ptrdiff_t rsx = a->x_colmajor ? 1 : a->ldx, csx = a->x_colmajor ? a->ldx : 1;
        return fd_gemm_packed_f32(rows, cols, a->k, (const float *)B, rsx, csx, a->wpack + c0 * a->k,
                                  (float *)C, ldc);
    }
    if (uses_direct(a)) {
        const ptrdiff_t rsx = a->x_colmajor ? 1 : a->ldx, csx = a->x_colmajor ? a->ldx : 1;
        return fd_gemm_direct_f32(rows, cols, a->k, (const float *)B, rsx, csx, (const float *)A,
                                  a->ldw, (float *)C, ldc);
    }
    if (uses_pack_per_call(a)) {
        const ptrdiff_t rsx = a->x_colmajor ? 1 : a->ldx, csx = a->x_colmajor ? a->ldx : 1;
        return fd_gemm_kblocks_f32(rows, cols, a->k, (const float *)B, rsx, csx, (const float *)A, a->ldw,
                                   a->w_colmajor, (float *)C, ldc);
    }
    const ptrdiff_t lim = blas_int_max;
    if (rows == 1 && a->k > 0 && cols <= lim && a->k <= lim && a->ldw <= lim && a->ldx <= lim) {
        /* one sample: y(cols) = op(A) x, A = w^T viewed column-major */
        const ptrdiff_t incx = a->x_colmajor ? a->ldx : 1;
        if (ta == 'N') blas_gemv(a->dtype, 'N', cols, a->k, A, a->ldw, B, incx, C);
        else blas_gemv(a->dtype, 'T', a->k, cols, A, a->ldw, B, incx, C);
        return 0;
    }
    return gemm64(a->dtype, ta, tb, cols, rows, a->k, A, a->ldw, B, a->ldx, C, ldc);
}

/* Rows [r0, r1) of the output, all columns: GEMM then epilogue while the block is hot. */
static int dense_rows(const fd_dense_args *a, ptrdiff_t r0, ptrdiff_t r1, void *scratch, int lock_blas)
{
    const size_t es = esize(a);
    const int halves = fd_act_halves(a->act.code);
    char *out = (char *)a->out + (size_t)r0 * a->ldo * es;
    char *C = halves ? scratch : out;
    const ptrdiff_t ldc = halves ? a->n : a->ldo;
    if (uses_own_kernel(a)) lock_blas = 0;
    if (lock_blas) pthread_mutex_lock(&blas_mu);
    int rc = gemm_block(a, r0, r1 - r0, 0, a->n, C, ldc);
    if (lock_blas) pthread_mutex_unlock(&blas_mu);
    if (rc) return rc;
    epilogue(a, C, ldc, out, a->ldo, r1 - r0, 0, a->n);
    return 0;
}

static void task_rows(job_t *job, ptrdiff_t t, void *scratch)
{
    const fd_dense_args *a = job->a;
    ptrdiff_t r0 = t * job->rows_per_task, r1 = r0 + job->rows_per_task;
    if (r1 > a->m) r1 = a->m;
    if (dense_rows(a, r0, r1, scratch, 0)) atomic_store(&job->failed, 1);
}

/* Columns [c0, c1) of every row; the epilogue too when the activation is element-wise. */
static void task_cols(job_t *job, ptrdiff_t t, void *scratch)
{
    (void)scratch;
    const fd_dense_args *a = job->a;
    const size_t es = esize(a);
    ptrdiff_t c0 = t * job->cols_per_task, c1 = c0 + job->cols_per_task;
    if (c1 > a->n) c1 = a->n;
    const int rowwise = fd_act_rowwise(a->act.code);
    char *C = job->shared ? (char *)job->shared + (size_t)c0 * es : (char *)a->out + (size_t)c0 * es;
    const ptrdiff_t ldc = job->shared ? a->n : a->ldo;
    if (gemm_block(a, 0, a->m, c0, c1 - c0, C, ldc)) { atomic_store(&job->failed, 1); return; }
    if (!rowwise) epilogue(a, C, ldc, C, ldc, a->m, c0, c1 - c0);
}

/* Epilogue of rows [r0, r1) (used after a multi-threaded BLAS GEMM). */
static void task_epilogue(job_t *job, ptrdiff_t t, void *scratch)
{
    (void)scratch;
    const fd_dense_args *a = job->a;
    const size_t es = esize(a);
    ptrdiff_t r0 = t * job->rows_per_task, r1 = r0 + job->rows_per_task;
    if (r1 > a->m) r1 = a->m;
    const char *src = job->shared ? (const char *)job->shared + (size_t)r0 * a->n * es
                                  : (const char *)a->out + (size_t)r0 * a->ldo * es;
    epilogue(a, src, job->shared ? a->n : a->ldo, (char *)a->out + (size_t)r0 * a->ldo * es,
             a->ldo, r1 - r0, 0, a->n);
}

/* Below this much work (multiply-adds) a call runs on the caller alone. */
#define FD_SPLIT_WORK (1L << 21)
/* A few rows are bound by reading the weights: split them from 128 Ki weights (512 KiB f32). */
#define FD_SPLIT_WORK_FEW_ROWS (1L << 17)
/* fastdense's own kernels start no BLAS threads and pack nothing per call: split them from
   less work, counting the columns they compute (panels of 16). */
#define FD_SPLIT_WORK_OWN (1L << 19)
/* OpenBLAS threads a GEMM above this many multiply-adds (SMP_THRESHOLD_MIN * 4). */
#define FD_BLAS_MT_WORK (1L << 18)

static ptrdiff_t ceil_div(ptrdiff_t a, ptrdiff_t b) { return (a + b - 1) / b; }

/* Rows per cache block: the output block about 256 KiB, but at least 256 rows so that the
   BLAS re-packs the weights rarely. */
static ptrdiff_t block_rows(const fd_dense_args *a)
{
    ptrdiff_t r = (ptrdiff_t)(256 * 1024 / ((size_t)(a->n > 0 ? a->n : 1) * esize(a)));
    if (r < 256) r = 256;
    return r;
}

/* Rows [r0, r1) of the plain weights into the shared packed copy (job->shared). */
static void task_pack_rows(job_t *job, ptrdiff_t t, void *scratch)
{
    (void)scratch;
    const fd_dense_args *a = job->a;
    ptrdiff_t r0 = t * job->rows_per_task, r1 = r0 + job->rows_per_task;
    if (r1 > a->k) r1 = a->k;
    fd_pack_f32_rows((const float *)a->w, a->ldw, a->k, a->n, r0, r1, (float *)job->shared);
}

static int dense_own_threads(const fd_dense_args *a, double work);

/* Many rows per thread against plain row-major weights: the threads pack the weights once,
   together, into one copy (the caller's buffer), then run the packed kernel on it -- one copy
   in the cache for all of them, instead of one per row part. 1 if done (rc in *rc). */
static int dense_shared_pack(const fd_dense_args *a, double work, int parts, int *rc)
{
    if (parts < 2 || a->w_colmajor || a->wpack != NULL) return 0;
    float *wp = fd_whole_pack_buffer(a->m / parts, a->k, a->n);
    if (!wp) return 0;
    job_t job;
    memset(&job, 0, sizeof(job));
    job.a = a;
    job.fn = task_pack_rows;
    job.shared = wp;
    job.rows_per_task = ceil_div(ceil_div(a->k, parts), 8) * 8;
    job.ntasks = ceil_div(a->k, job.rows_per_task);
    *rc = run_job(&job, parts - 1);
    if (*rc == 0) {
        fd_dense_args packed = *a;
        packed.wpack = wp;
        *rc = dense_own_threads(&packed, work);
    }
    return 1;
}

static int dense_own_threads(const fd_dense_args *a, double work)
{
    /* The split depends only on the size and fastdense's thread count, never on how many
       cores are free, so results are the same bit for bit whatever else runs; the cores free
       now take the parts (a lone call gets them all, concurrent calls run their parts on
       their own thread). Few rows split by columns, so a thread that runs several parts
       still packs each slice of the weights once. */
    const int own = uses_own_kernel(a);
    const double own_work = (double)a->m * (double)((a->n + 15) / 16 * 16) * (double)(a->k > 0 ? a->k : 1);
    const int parts = (work >= FD_SPLIT_WORK || (a->m <= 4 && work >= FD_SPLIT_WORK_FEW_ROWS)
                       || (own && own_work >= FD_SPLIT_WORK_OWN))
                      ? fd_get_num_threads() : 1;
    const int plain = uses_pack_per_call(a);
    int shared_rc;
    if (plain && a->m > a->n && dense_shared_pack(a, work, parts, &shared_rc)) return shared_rc;
    const unsigned long helpers = parts > 1 ? claim_workers(parts - 1) : 0;
    job_t job;
    memset(&job, 0, sizeof(job));
    job.a = a;
    /* Weights packed per call: each column part packs all of x again, each row part all of the
       weights; split the one that costs less to pack twice, rows into one part per thread. */
    if (parts > 1 && (plain ? a->m <= a->n : a->m < 128 * parts) && a->n >= 64 * parts) {
        /* few rows: split columns (each thread packs only its slice of the weights, multiples
           of 16 columns); a row-wise epilogue runs after the barrier */
        const int halves = fd_act_halves(a->act.code), rowwise = fd_act_rowwise(a->act.code);
        job.fn = task_cols;
        /* a few rows pack nothing per task: cut finer (four parts per thread, 64 columns at
           least), so a thread slowed down by the machine takes fewer of them */
        const ptrdiff_t pieces = a->m < 6 && uses_own_kernel(a) ? 4 * (ptrdiff_t)parts : parts;
        job.cols_per_task = ceil_div(ceil_div(a->n, pieces), 16) * 16;
        if (pieces > parts && job.cols_per_task < 64) job.cols_per_task = 64;
        job.ntasks = ceil_div(a->n, job.cols_per_task);
        if (halves) {
            job.shared = malloc((size_t)a->m * a->n * esize(a) + 64);
            if (!job.shared) {
                atomic_fetch_sub(&busy_cores, __builtin_popcountl(helpers));
                atomic_fetch_or(&idle_mask, helpers);
                return -1;
            }
        }
        int rc = run_job_claimed(&job, helpers);
        if (rc == 0 && rowwise) {
            /* softmax and co. need whole rows: spread them over the pool too, 16 rows at least
               per part (a row's result does not depend on the part it is in) */
            job_t rows_job;
            memset(&rows_job, 0, sizeof(rows_job));
            rows_job.a = a;
            rows_job.fn = task_epilogue;
            rows_job.shared = job.shared;
            rows_job.rows_per_task = ceil_div(a->m, parts);
            if (rows_job.rows_per_task < 16) rows_job.rows_per_task = 16;
            rows_job.ntasks = ceil_div(a->m, rows_job.rows_per_task);
            rc = run_job(&rows_job, parts - 1);
        }
        free(job.shared);
        return rc;
    }
    job.fn = task_rows;
    ptrdiff_t br = plain ? a->m : block_rows(a);
    if (parts > 1) {
        ptrdiff_t even = ceil_div(a->m, parts);
        if (br > even) br = even;
        if (br < 8) br = 8;
    }
    if (br > a->m) br = a->m;
    if (br > blas_int_max) br = blas_int_max;
    job.rows_per_task = br;
    job.ntasks = ceil_div(a->m, br);
    return run_job_claimed(&job, helpers);
}

static int dense_blas_threads(const fd_dense_args *a, double work)
{
    /* the BLAS threads each GEMM; blocks are large so it re-packs the weights rarely */
    const size_t es = esize(a);
    const int halves = fd_act_halves(a->act.code);
    const int lock = work >= FD_BLAS_MT_WORK;
    ptrdiff_t br = (ptrdiff_t)((4u << 20) / ((size_t)(a->n > 0 ? a->n : 1) * es));
    if (br < 512) br = 512;
    if (br > a->m) br = a->m;
    if (br > blas_int_max) br = blas_int_max;
    void *scratch = NULL;
    if (halves) {
        scratch = malloc((size_t)br * a->n * es + 64);
        if (!scratch) return -1;
    }
    int rc = 0;
    for (ptrdiff_t r0 = 0; r0 < a->m && rc == 0; r0 += br) {
        ptrdiff_t r1 = r0 + br < a->m ? r0 + br : a->m;
        char *out = (char *)a->out + (size_t)r0 * a->ldo * es;
        char *C = halves ? scratch : out;
        const ptrdiff_t ldc = halves ? a->n : a->ldo;
        if (lock) pthread_mutex_lock(&blas_mu);
        rc = gemm_block(a, r0, r1 - r0, 0, a->n, C, ldc);
        if (lock) pthread_mutex_unlock(&blas_mu);
        if (rc) break;
        const double ework = (double)(r1 - r0) * a->n;
        if (ework < (1 << 16) || fd_get_num_threads() < 2) {
            epilogue(a, C, ldc, out, a->ldo, r1 - r0, 0, a->n);
            continue;
        }
        fd_dense_args sub = *a;
        sub.m = r1 - r0;
        sub.out = out;
        job_t job;
        memset(&job, 0, sizeof(job));
        job.a = &sub;
        job.fn = task_epilogue;
        job.shared = halves ? scratch : NULL;
        job.rows_per_task = ceil_div(sub.m, fd_get_num_threads());
        if (job.rows_per_task < 1) job.rows_per_task = 1;
        job.ntasks = ceil_div(sub.m, job.rows_per_task);
        rc = run_job(&job, fd_get_num_threads() - 1);
    }
    free(scratch);
    return rc;
}

int fd_dense(const fd_dense_args *a)
{
    if (a->m == 0 || (a->n == 0)) return 0;
    const double work = (double)a->m * (double)a->n * (double)(a->k > 0 ? a->k : 1);
    if (work < FD_BLAS_MT_WORK) {
        /* small: one block on the caller, no bookkeeping at all */
        void *scratch = NULL;
        if (fd_act_halves(a->act.code)) {
            scratch = malloc((size_t)a->m * a->n * esize(a) + 64);
            if (!scratch) return -1;
        }
        int rc = dense_rows(a, 0, a->m, scratch, 0);
        free(scratch);
        return rc;
    }
    atomic_fetch_add(&busy_cores, 1);
    /* the packed kernel is single-threaded: it always splits over fastdense's own pool */
    int rc = (fd_own_threading() || uses_own_kernel(a)) ? dense_own_threads(a, work) : dense_blas_threads(a, work);
    atomic_fetch_sub(&busy_cores, 1);
    return rc;
}

/* ------------------------------------------------------------------ API for other csrc files */

static void task_user(job_t *job, ptrdiff_t t, void *scratch)
{
    (void)scratch;
    if (job->user_fn(job->user_ctx, t)) atomic_store(&job->failed, 1);
}

int fd_parallel_for(int (*fn)(void *ctx, ptrdiff_t t), void *ctx, ptrdiff_t ntasks, int max_helpers)
{
    fd_dense_args none;
    memset(&none, 0, sizeof(none));      /* linear: run_tasks allocates no glu scratch */
    job_t job;
    memset(&job, 0, sizeof(job));
    job.fn = task_user;
    job.user_fn = fn;
    job.user_ctx = ctx;
    job.a = &none;
    job.ntasks = ntasks;
    return run_job(&job, max_helpers);
}

int fd_dense_serial(const fd_dense_args *a, void *glu_scratch, int lock_blas)
{
    if (a->m == 0 || a->n == 0) return 0;
    return dense_rows(a, 0, a->m, glu_scratch, lock_blas);
}

void fd_busy_enter(void) { atomic_fetch_add(&busy_cores, 1); }
void fd_busy_leave(void) { atomic_fetch_sub(&busy_cores, 1); }
