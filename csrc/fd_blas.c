/* fd_blas.c -- the BLAS behind scipy (see fd_blas.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fd_blas.h"
#include "fd_status.h"

static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;

void fd_blas_lock(void) { pthread_mutex_lock(&blas_mu); }
void fd_blas_unlock(void) { pthread_mutex_unlock(&blas_mu); }

/* A forked child has no other threads: a lock one of them held would never be released. */
static void blas_after_fork_child(void) { pthread_mutex_init(&blas_mu, NULL); }
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork_handler(void) { pthread_atfork(NULL, NULL, blas_after_fork_child); }

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
    pthread_once(&fork_once, register_fork_handler);
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
int fd_blas_single_threaded(void) { return p_blas_threads_get != NULL && p_blas_threads_get() <= 1; }
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

void fd_blas_gemv(int dt, char t, ptrdiff_t m, ptrdiff_t n, const void *A, ptrdiff_t lda,
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

int fd_blas_gemm(int dt, char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                 const void *A_, ptrdiff_t lda, const void *B_, ptrdiff_t ldb, void *C_, ptrdiff_t ldc)
{
    const char *A = A_, *B = B_;
    char *C = C_;
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
        if (!As || !Bs || !Cs) { free(As); free(Bs); free(Cs); return FD_ERR_NOMEM; }
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

