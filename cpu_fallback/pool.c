/*
 * pool.c — the CPU backend's persistent thread pool (cpu_pool.h).
 *
 * n-1 worker threads are created once and live until slm_pool_free; the
 * caller of slm_pool_run is thread 0. A job is published by bumping a
 * generation counter: workers spin on it for a short while (a decode step
 * issues hundreds of small jobs back to back, and a futex wake-up costs more
 * than many of them) and then sleep on a condition variable. The caller runs
 * its own share, then waits (spin, then sleep) until the count of workers
 * still busy reaches zero. Nothing is allocated per job.
 *
 * Invariants: at most one job is in flight (slm_pool_run is not reentrant and
 * waits for every worker), so a worker can never miss a generation: the next
 * bump happens only after it has finished the previous job.
 */
#include "cpu_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "status.h"

/* Iterations a thread polls before it sleeps. Short on purpose: on a machine
 * with fewer cores than threads, spinning steals time from the thread that is
 * doing the work. */
#define SPIN_ITERS 4096
/* Sanity bound on the thread count (a bad argument, not a machine limit). */
#define MAX_THREADS 1024

typedef struct worker {
    struct slm_pool *pool;
    int ith;
} worker;

struct slm_pool {
    int n;              /* threads including the caller */
    int n_started;      /* worker threads actually created */
    pthread_t *threads; /* [n - 1] */
    worker *workers;    /* [n - 1] */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers wait here for a new generation */
    pthread_cond_t done; /* the caller waits here for pending == 0 */
    atomic_uint gen;     /* bumped once per job (and once to stop) */
    atomic_int pending;  /* workers that have not finished the current job */
    atomic_bool stop;
    slm_pool_fn fn; /* the current job; written before gen is bumped */
    void *ctx;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Waits until gen differs from `seen` and returns the new value. */
static unsigned wait_for_job(slm_pool *p, unsigned seen)
{
    unsigned g;
    for (int i = 0; i < SPIN_ITERS; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
        pthread_cond_wait(&p->wake, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    slm_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->stop))
            return NULL;
        p->fn(p->ctx, w->ith, p->n);
        /* The last worker to finish wakes the caller; it signals under the
         * mutex so the caller cannot check `pending` and then miss it. */
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

/* Bumps the generation so every worker wakes up (for a job or to stop). */
static void publish(slm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

slm_pool *slm_pool_create(int n_threads)
{
    if (n_threads < 1 || n_threads > MAX_THREADS) {
        slm_error(SLM_STATUS_INVALID_ARGUMENT, "thread pool: %d threads requested (1..%d)",
                  n_threads, MAX_THREADS);
        return NULL;
    }
    slm_pool *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        slm_error(SLM_STATUS_OUT_OF_MEMORY, "thread pool: out of memory");
        return NULL;
    }
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, false);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        slm_error(SLM_STATUS_INTERNAL, "thread pool: pthread_mutex_init failed");
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        slm_error(SLM_STATUS_INTERNAL, "thread pool: pthread_cond_init failed");
        return NULL;
    }
    if (pthread_cond_init(&p->done, NULL) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        free(p);
        slm_error(SLM_STATUS_INTERNAL, "thread pool: pthread_cond_init failed");
        return NULL;
    }
    if (n_threads == 1)
        return p;
    p->threads = calloc((size_t)n_threads - 1, sizeof(*p->threads));
    p->workers = calloc((size_t)n_threads - 1, sizeof(*p->workers));
    if (p->threads == NULL || p->workers == NULL) {
        slm_pool_free(p);
        slm_error(SLM_STATUS_OUT_OF_MEMORY, "thread pool: out of memory");
        return NULL;
    }
    for (int i = 0; i < n_threads - 1; i++) {
        p->workers[i] = (worker){.pool = p, .ith = i + 1};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
            slm_pool_free(p);
            slm_error(SLM_STATUS_INTERNAL, "thread pool: could not start thread %d of %d",
                      i + 2, n_threads);
            return NULL;
        }
        p->n_started++;
    }
    return p;
}

void slm_pool_free(slm_pool *p)
{
    if (p == NULL)
        return;
    if (p->n_started > 0) {
        atomic_store(&p->stop, true);
        publish(p);
        for (int i = 0; i < p->n_started; i++)
            pthread_join(p->threads[i], NULL);
    }
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->workers);
    free(p);
}

int slm_pool_size(const slm_pool *p) { return p ? p->n : 1; }

void slm_pool_run(slm_pool *p, slm_pool_fn fn, void *ctx)
{
    if (p == NULL || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    publish(p);
    fn(ctx, 0, p->n);
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0)
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
