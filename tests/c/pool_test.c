/* pool_test.c -- csrc/fd_pool.c on its own: every task of a job runs exactly once, on the caller
 * or a claimed worker; the first failure is returned; the helpers come back to the idle mask
 * (so the next job can claim them); and all of it with more callers than cores, where helpers
 * are taken back before they start. Prints "ok <jobs>" and exits 0, or names what failed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fd_pool.h"
#include "fd_status.h"

#define MAX_TASKS 64

typedef struct {
    atomic_int runs[MAX_TASKS];      /* times each task ran */
    ptrdiff_t fail_at;               /* this task fails with FD_ERR_ARG, or -1 */
    int spin;                        /* work per task */
} counting_job;

static int count_task(void *ctx, ptrdiff_t t, void *scratch)
{
    counting_job *j = ctx;
    volatile double acc = (double)t;
    for (int i = 0; i < j->spin; i++) acc = acc * 0.999 + 1.0;
    if (scratch) memset(scratch, (int)t, 16);   /* each participant's own scratch is writable */
    atomic_fetch_add(&j->runs[t], 1);
    return t == j->fail_at ? FD_ERR_ARG : FD_OK;
}

static atomic_int failures;

static void check(int cond, const char *what, long a, long b)
{
    if (!cond) {
        if (atomic_fetch_add(&failures, 1) < 10) printf("FAIL %s (%ld, %ld)\n", what, a, b);
    }
}

/* One job of `ntasks` tasks over up to `helpers` helpers: each task once, the status right. */
static void one_job(ptrdiff_t ntasks, int helpers, int spin, ptrdiff_t fail_at, size_t scratch_bytes)
{
    counting_job j;
    for (int t = 0; t < MAX_TASKS; t++) atomic_init(&j.runs[t], 0);
    j.fail_at = fail_at;
    j.spin = spin;
    const int rc = fd_pool_run(&(fd_tasks){count_task, &j, ntasks, scratch_bytes}, helpers);
    for (ptrdiff_t t = 0; t < ntasks; t++) check(atomic_load(&j.runs[t]) == 1, "task ran once", (long)t,
                                                 atomic_load(&j.runs[t]));
    check(rc == (fail_at >= 0 && fail_at < ntasks ? FD_ERR_ARG : FD_OK), "job status", rc, (long)fail_at);
}

static void *caller(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    for (int i = 0; i < 3000; i++) {
        seed = seed * 1103515245u + 12345u;
        const ptrdiff_t ntasks = 1 + (seed >> 8) % MAX_TASKS;
        const int spin = (int)((seed >> 16) % 4) * 200;
        const ptrdiff_t fail_at = (seed >> 20) % 8 == 0 ? (ptrdiff_t)((seed >> 4) % MAX_TASKS) : -1;
        one_job(ntasks, (int)(seed >> 24) % 8, spin, fail_at, (seed >> 28) % 2 ? 64 : 0);
    }
    return NULL;
}

int main(void)
{
    long jobs = 0;
    for (int threads = 1; threads <= 4; threads++) {   /* 4 on 2 cores: more threads than cores */
        fd_set_num_threads(threads);
        for (ptrdiff_t n = 0; n <= MAX_TASKS; n++, jobs++) one_job(n, threads - 1, n % 3 * 300, -1, 0);
        one_job(16, threads - 1, 300, 5, 32);
        jobs++;
        /* every helper came back: a lone caller can claim all of them again */
        const unsigned long got = fd_pool_claim(threads - 1);
        check(__builtin_popcountl(got) == threads - 1, "helpers back in the idle mask", threads,
              __builtin_popcountl(got));
        fd_pool_release(got);
        /* callers on several threads at once, so helpers are claimed, taken back and released
           while others wait for them */
        pthread_t th[6];
        for (int c = 0; c < 6; c++) pthread_create(&th[c], NULL, caller, (void *)(size_t)(c + 1 + 10 * threads));
        for (int c = 0; c < 6; c++) pthread_join(th[c], NULL);
        jobs += 6 * 3000;
        const unsigned long again = fd_pool_claim(threads - 1);
        check(__builtin_popcountl(again) == threads - 1, "helpers back after concurrent callers", threads,
              __builtin_popcountl(again));
        fd_pool_release(again);
    }
    if (atomic_load(&failures)) return 1;
    printf("ok %ld\n", jobs);
    return 0;
}
