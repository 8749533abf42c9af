/*
 * server_pool.h — the fixed pool of worker threads of `slm serve`: the
 * event loop hands it work that may take long (parsing a request body,
 * tokenising, submitting to the engine) so that the loop itself never
 * stalls. A FIFO queue under one mutex; no thread per connection.
 */
#ifndef SLM_SERVER_POOL_H
#define SLM_SERVER_POOL_H

typedef struct slm_srv_pool slm_srv_pool;

/* n threads (at least 1); NULL when a thread or memory is not available. */
slm_srv_pool *slm_srv_pool_create(int n);
/* Queues fn(arg). Returns 0, or -1 when out of memory (fn not run). */
int slm_srv_pool_run(slm_srv_pool *p, void (*fn)(void *), void *arg);
/* Runs what is queued, then joins the threads and frees the pool. NULL-safe. */
void slm_srv_pool_free(slm_srv_pool *p);

#endif
