/*
 * cpu_pool.h — the CPU backend's persistent thread pool. Threads are created
 * once when the backend opens and sleep between jobs; a job runs one function
 * on every thread (the caller is thread 0) and returns when all are done.
 */
#ifndef SLM_CPU_POOL_H
#define SLM_CPU_POOL_H

typedef struct slm_pool slm_pool;

/* ith in 0..nth-1; each thread takes its own share of the work. */
typedef void (*slm_pool_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 (the caller counts as one). Returns NULL on failure with
 * slm_last_error set. */
slm_pool *slm_pool_create(int n_threads);
void slm_pool_free(slm_pool *pool); /* accepts NULL */
int slm_pool_size(const slm_pool *pool);

/* Runs fn(ctx, ith, nth) on all threads and waits. pool may be NULL: then
 * fn(ctx, 0, 1) runs on the caller. Not reentrant. */
void slm_pool_run(slm_pool *pool, slm_pool_fn fn, void *ctx);

#endif
