/* fd_pool.h -- fastdense's thread pool: jobs of numbered tasks run on the caller plus idle
   worker threads, never on more cores than no other fastdense call is using. */
#ifndef FD_POOL_H
#define FD_POOL_H

#include <stddef.h>

#define FD_MAX_THREADS 64   /* workers are claimed through one 64-bit mask */

/* Cores this process may run on (its affinity mask), at most FD_MAX_THREADS. */
int fd_cpu_count(void);
/* The pool size, the caller included (1 = never split); n < 1 restores fd_cpu_count(). */
void fd_set_num_threads(int n);
int fd_get_num_threads(void);

/* A job: run(ctx, t, scratch) for every t < ntasks, each task once, on whichever thread takes
   it. Every thread that takes part gets its own scratch of scratch_bytes (NULL for 0), for all
   the tasks it runs. A task returns 0 or an fd_status; the job returns the first failure. */
typedef int (*fd_task_fn)(void *ctx, ptrdiff_t t, void *scratch);
typedef struct {
    fd_task_fn run;
    void *ctx;
    ptrdiff_t ntasks;
    size_t scratch_bytes;
} fd_tasks;

/* Claim up to `want` idle workers (no more than the idle cores); their mask. */
unsigned long fd_pool_claim(int want);
/* Give claimed workers back unused. */
void fd_pool_release(unsigned long helpers);
/* Run the job on the caller plus the claimed `helpers`, and wait for them (it releases them). */
int fd_pool_run_claimed(const fd_tasks *tasks, unsigned long helpers);
/* Claim up to max_helpers workers (no more than ntasks - 1) and run the job. */
int fd_pool_run(const fd_tasks *tasks, int max_helpers);

/* Count the calling thread as a busy core while it runs fastdense work outside a job. */
void fd_busy_enter(void);
void fd_busy_leave(void);

#endif
