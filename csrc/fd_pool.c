/* fd_pool.c -- fastdense's thread pool (see fd_pool.h).
 *
 * Workers start on first use and spin briefly for the next job before they sleep. A job lives
 * on its caller's stack; the caller runs tasks too, then waits for its helpers. Which thread
 * runs a task never changes its result (the callers' split depends only on the shape and the
 * thread count).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FD_PAUSE() _mm_pause()
#else
#define FD_PAUSE() ((void)0)
#endif

#include "fd_pool.h"
#include "fd_status.h"
#include "fd_tune.h"

/* The tasks are cut into one home range per participant (the caller is participant 0, its
   helpers 1, 2, ... in worker order); each takes its own range's tasks first, then what is
   left of the others'. The same shape on the same threads thus runs the same tasks on the same
   threads call after call, so a thread finds its part of the weights still in its core's
   cache (at batch 1 a Dense reads every weight: with 2.7 MB of weights and 2 MiB of L2 per
   core, two cores keep their halves cached, one alone cannot), and a thread slowed down by
   the machine still leaves its tasks to the others. A range's counter is written by its owner
   alone unless someone steals, so it lives on a cache line its owner writes anyway. */
typedef struct {
    atomic_long next;   /* next task of this range to take */
    ptrdiff_t end;
} range_t;

typedef struct job {
    atomic_int failed;                   /* the first failure's status, or 0 */
    int nparts;                          /* participants: the caller and its helpers */
    _Alignas(64) range_t own;            /* the caller's home range */
    range_t *ranges[FD_MAX_THREADS];     /* every participant's home range, by participant */
} job_t;

/* A worker and its mailbox. The caller that claimed it (fd_pool_claim) writes the job's task
   function, context and the worker's home range into the mailbox line, then posts the job in
   `job`: a spinning worker thus gets everything it needs to start in the one cache line that
   carries the post (each line that moves between cores costs ~100 ns on these virtual machines,
   and a fork/join used to move about ten). The worker takes the job with an exchange, so a
   caller whose tasks were all taken before an idle worker woke up can take the job back (a
   compare-exchange) instead of waiting for it: on a loaded machine or a host that parked the
   virtual CPU, that wait would be the whole wake-up latency. Posting is plain stores: a caller
   that misses a worker that has just gone to sleep takes its job back, and wakes it at the
   next post. The worker reports completion by counting `done` on its own line (never touching
   the job, which lives on the caller's stack, after its last task). Sleeping on either side is
   announced (`sleeping`, `waiter`) so that the other side signals only then: a spinning worker
   or caller costs no mutex and no system call. */
typedef struct {
    _Alignas(64) _Atomic(job_t *) job;   /* written by the caller, with the fields below */
    fd_task_fn run;
    void *ctx;
    size_t scratch_bytes;
    range_t home;                        /* the worker's home range in that job */
    int slot, nparts;                    /* the worker's participant number, and the job's count */
    atomic_ulong posts;                  /* jobs posted, taken back ones included */
    _Alignas(64) atomic_ulong done;      /* written by the worker: jobs finished */
    atomic_int waiter;                   /* the caller waits on done_cv */
    _Alignas(64) atomic_int sleeping;    /* the worker waits on cv (written only as it sleeps or wakes) */
    _Alignas(64) unsigned long done_seen; /* the claimers' count of `done`: posting reads no line the
                                            worker just wrote */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    int started;
} worker_t;

static worker_t workers[FD_MAX_THREADS];
static atomic_ulong idle_mask;        /* bit i: worker i started and idle */
static atomic_int busy_cores;         /* cores running fastdense work now */
static atomic_int threads_cfg;        /* pool size incl. the caller; 0 = not yet set */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;

/* The cores the calling thread may run on: its affinity mask on Linux, the online CPUs elsewhere
   (macOS has no affinity masks). sched_getaffinity is a system call, about 120 ns on the 2-core
   KVM Xeon, and a batch-1 predict whose plan splits its steps asked for the count 4 times per
   call, so each thread keeps the answer for FD_TUNE_AFFINITY_TTL_MS: a new mask (taskset,
   os.sched_setaffinity, which sets the calling thread's) is seen within that time, and until
   then only how a call splits differs, never a result. */
static int cpu_count_now(void)
{
    long c = 0;
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) c = CPU_COUNT(&set);
#endif
    if (c < 1) c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : (c > FD_MAX_THREADS ? FD_MAX_THREADS : (int)c);
}

int fd_cpu_count(void)
{
    static _Thread_local int count;           /* 0: not read yet on this thread */
    static _Thread_local long long read_ms;
    struct timespec ts;
#if defined(CLOCK_MONOTONIC_COARSE)
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);   /* the kernel's tick, read without a system call */
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    const long long now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (count == 0 || now_ms - read_ms >= FD_TUNE_AFFINITY_TTL_MS) {
        count = cpu_count_now();
        read_ms = now_ms;
    }
    return count;
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

static void fail(job_t *job, int rc)
{
    int none = 0;
    atomic_compare_exchange_strong(&job->failed, &none, rc);
}

/* Participant `slot`'s share of the job: its home range, then what is left of the others'. */
static void run_tasks(job_t *job, int slot, int nparts, fd_task_fn run, void *ctx, size_t scratch_bytes,
                      range_t *home)
{
    void *scratch = NULL;
    if (scratch_bytes) {
        scratch = malloc(scratch_bytes);
        if (!scratch) { fail(job, FD_ERR_NOMEM); return; }
    }
    for (int i = 0; i < nparts; i++) {
        const int part = (slot + i) % nparts;
        /* the caller's range found without reading the ranges: one line fewer to fetch */
        range_t *r = i == 0 ? home : part == 0 ? &job->own : job->ranges[part];
        if (atomic_load_explicit(&r->next, memory_order_relaxed) >= r->end) continue;
        /* the range's last task ends it without another fetch_add: the counter only grows, and
           writing it again would pull its line back from a core that just read it (the caller
           checking the range before it joins), a transfer on the join's critical path */
        for (ptrdiff_t t = atomic_fetch_add(&r->next, 1); t < r->end;
             t = t + 1 < r->end ? atomic_fetch_add(&r->next, 1) : r->end) {
            const int rc = run(ctx, t, scratch);
            if (rc) fail(job, rc);
        }
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

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (;;) {
        /* spin first, about a millisecond (pauses of ~30 ns): the next layer's job usually
           follows within microseconds, the next call within a few; and a virtual CPU left idle
           is given away by the host, which can take milliseconds to give it back -- the caller
           would then run every part itself, at half speed */
        job_t *job = NULL;
        unsigned long seen = atomic_load_explicit(&w->posts, memory_order_relaxed);
        for (int spin = 0; spin < FD_TUNE_WORKER_SPIN; spin++) {
            if (atomic_load_explicit(&w->job, memory_order_relaxed) != NULL && (job = atomic_exchange(&w->job, NULL)))
                break;
            const unsigned long posts = atomic_load_explicit(&w->posts, memory_order_relaxed);
            if (posts != seen) {   /* a job came and was taken back: calls are still coming */
                seen = posts;
                spin = 0;
            }
            fd_spin_pause(spin);
        }
        if (job == NULL) {
            /* sleep until a job is posted, then spin again: the caller may have taken it
               back while this thread woke up, and the next one likely follows soon */
            pthread_mutex_lock(&w->mu);
            atomic_store(&w->sleeping, 1);
            if ((job = atomic_exchange(&w->job, NULL)) == NULL) {
                pthread_cond_wait(&w->cv, &w->mu);
                job = atomic_exchange(&w->job, NULL);
            }
            atomic_store(&w->sleeping, 0);
            pthread_mutex_unlock(&w->mu);
            if (job == NULL) continue;
        }
        run_tasks(job, w->slot, w->nparts, w->run, w->ctx, w->scratch_bytes, &w->home);
        /* the job lives on the caller's stack: after this store it may be gone */
        atomic_fetch_add(&w->done, 1);
        if (atomic_load(&w->waiter)) {
            pthread_mutex_lock(&w->mu);
            pthread_cond_signal(&w->done_cv);
            pthread_mutex_unlock(&w->mu);
        }
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
        pthread_cond_init(&w->done_cv, NULL);
        atomic_store(&w->job, NULL);
        atomic_store(&w->sleeping, 0);
        atomic_store(&w->waiter, 0);
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

unsigned long fd_pool_claim(int want)
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

void fd_pool_release(unsigned long helpers)
{
    atomic_fetch_sub(&busy_cores, __builtin_popcountl(helpers));
    atomic_fetch_or(&idle_mask, helpers);
}

int fd_pool_run_claimed(const fd_tasks *tasks, unsigned long helpers)
{
    /* on this stack: a worker touches it only until it counts the job done */
    job_t job;
    worker_t *posted[FD_MAX_THREADS];
    unsigned long base[FD_MAX_THREADS];
    while (helpers && __builtin_popcountl(helpers) >= tasks->ntasks) {   /* more helpers than tasks */
        const unsigned long top = 1UL << (63 - __builtin_clzl(helpers));
        fd_pool_release(top);
        helpers &= ~top;
    }
    const int nh = __builtin_popcountl(helpers);
    atomic_init(&job.failed, 0);
    job.nparts = 1 + nh;
    atomic_init(&job.own.next, 0);
    job.own.end = tasks->ntasks / job.nparts;
    job.ranges[0] = &job.own;
    if (job.nparts == 1) {
        run_tasks(&job, 0, job.nparts, tasks->run, tasks->ctx, tasks->scratch_bytes, &job.own);
        return atomic_load(&job.failed);
    }
    /* every mailbox and range first: a helper may steal from any range as soon as it starts */
    for (int i = 0, slot = 1; i < FD_MAX_THREADS; i++) {
        if (!(helpers & (1UL << i))) continue;
        worker_t *w = &workers[i];
        posted[slot - 1] = w;
        base[slot - 1] = w->done_seen;
        w->run = tasks->run;
        w->ctx = tasks->ctx;
        w->scratch_bytes = tasks->scratch_bytes;
        atomic_store_explicit(&w->home.next, tasks->ntasks * slot / job.nparts, memory_order_relaxed);
        w->home.end = tasks->ntasks * (slot + 1) / job.nparts;
        w->slot = slot;
        w->nparts = job.nparts;
        job.ranges[slot++] = &w->home;
    }
    for (int h = 0; h < nh; h++) {
        worker_t *w = posted[h];
        atomic_store_explicit(&w->posts, atomic_load_explicit(&w->posts, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&w->job, &job, memory_order_release);
        if (atomic_load_explicit(&w->sleeping, memory_order_relaxed)) {
            pthread_mutex_lock(&w->mu);
            pthread_cond_signal(&w->cv);
            pthread_mutex_unlock(&w->mu);
        }
    }
    run_tasks(&job, 0, job.nparts, tasks->run, tasks->ctx, tasks->scratch_bytes, &job.own);
    /* every task is taken: a helper that has not picked the job up yet is not needed */
    for (int h = 0; h < nh; h++) {
        worker_t *w = posted[h];
        if (atomic_load(&w->done) != base[h]) {   /* it took the job and finished */
            w->done_seen = base[h] + 1;
            continue;
        }
        /* taken back only if still posted: a failed compare-exchange would take the mailbox line
           from the worker all the same */
        job_t *expected = &job;
        if (atomic_load_explicit(&w->job, memory_order_relaxed) == &job &&
            atomic_compare_exchange_strong(&w->job, &expected, NULL))
            continue;
        w->done_seen = base[h] + 1;
        for (int spin = 0; spin < FD_TUNE_JOIN_SPIN && atomic_load(&w->done) == base[h]; spin++) fd_spin_pause(spin);
        if (atomic_load(&w->done) == base[h]) {
            pthread_mutex_lock(&w->mu);
            atomic_store(&w->waiter, 1);
            while (atomic_load(&w->done) == base[h]) pthread_cond_wait(&w->done_cv, &w->mu);
            atomic_store(&w->waiter, 0);
            pthread_mutex_unlock(&w->mu);
        }
    }
    fd_pool_release(helpers);
    return atomic_load(&job.failed);
}

int fd_pool_run(const fd_tasks *tasks, int max_helpers)
{
    unsigned long helpers = 0;
    if (max_helpers > 0 && tasks->ntasks > 1)
        helpers = fd_pool_claim(max_helpers < tasks->ntasks - 1 ? max_helpers : (int)(tasks->ntasks - 1));
    return fd_pool_run_claimed(tasks, helpers);
}

void fd_busy_enter(void) { atomic_fetch_add(&busy_cores, 1); }
void fd_busy_leave(void) { atomic_fetch_sub(&busy_cores, 1); }
