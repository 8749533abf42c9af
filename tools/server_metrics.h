/*
 * server_metrics.h — what `slm serve` counts for GET /metrics, and the
 * Prometheus text rendering of it. The server keeps its own counters
 * (latency histograms, finished requests by reason, HTTP answers by status)
 * with lock-free atomics, because token callbacks on the engine thread update
 * them and must stay quick; the engine's gauges and token counters come from
 * slm_engine_get_stats at scrape time.
 */
#ifndef SLM_SERVER_METRICS_H
#define SLM_SERVER_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "slm.h"

#define SLM_SRV_TTFT_BUCKETS 14
#define SLM_SRV_ITL_BUCKETS 12
#define SLM_SRV_N_FINISH 4   /* slm_finish_reason values */
#define SLM_SRV_N_STATUS 16  /* HTTP statuses counted one by one (see .c) */

typedef struct slm_srv_histogram {
    const double *bounds; /* upper bounds in seconds, ascending */
    int n_bounds;
    atomic_ullong counts[16]; /* counts[i]: observations <= bounds[i]; [n_bounds]: +Inf */
    atomic_ullong sum_us;     /* sum of observations in microseconds */
} slm_srv_histogram;

typedef struct slm_srv_metrics {
    slm_srv_histogram ttft, itl;
    atomic_ullong finished[SLM_SRV_N_FINISH];
    atomic_ullong http[SLM_SRV_N_STATUS + 1]; /* last slot: any other status */
    atomic_int connections;   /* open client connections (the loop keeps it) */
} slm_srv_metrics;

void slm_srv_metrics_init(slm_srv_metrics *m);
/* Records one observation of `seconds` (negative counts as 0). Thread-safe. */
void slm_srv_histogram_observe(slm_srv_histogram *h, double seconds);
void slm_srv_metrics_finished(slm_srv_metrics *m, slm_finish_reason f);
void slm_srv_metrics_http(slm_srv_metrics *m, int status);

/* The exposition text (malloc'd, caller frees; NULL when out of memory).
 * s may be NULL while the model loads: the engine's series are then 0. */
char *slm_srv_metrics_render(slm_srv_metrics *m, const slm_engine_stats *s);

#endif
