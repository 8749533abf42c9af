/*
 * server_metrics.c — counters and histograms of `slm serve` and their
 * Prometheus text exposition (format 0.0.4): # HELP / # TYPE lines, then
 * samples; histograms as cumulative _bucket{le=...} series plus _sum and
 * _count. Every series is always present (zero before the first request),
 * so dashboards and tests can read it from the first scrape.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_metrics.h"
#include "server_openai.h"

static const double ttft_bounds[SLM_SRV_TTFT_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
static const double itl_bounds[SLM_SRV_ITL_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
static const int counted_status[SLM_SRV_N_STATUS] = {200, 400, 401, 404, 405, 413,
                                                     500, 503, 429, 408, 414, 417,
                                                     431, 501, 505, 422};

void slm_srv_metrics_init(slm_srv_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->ttft.bounds = ttft_bounds;
    m->ttft.n_bounds = SLM_SRV_TTFT_BUCKETS;
    m->itl.bounds = itl_bounds;
    m->itl.n_bounds = SLM_SRV_ITL_BUCKETS;
}

void slm_srv_histogram_observe(slm_srv_histogram *h, double seconds)
{
    if (!(seconds > 0))
        seconds = 0;
    int i = 0;
    while (i < h->n_bounds && seconds > h->bounds[i])
        i++;
    atomic_fetch_add(&h->counts[i], 1);
    atomic_fetch_add(&h->sum_us, (unsigned long long)(seconds * 1e6 + 0.5));
}

void slm_srv_metrics_finished(slm_srv_metrics *m, slm_finish_reason f)
{
    if ((int)f >= 0 && (int)f < SLM_SRV_N_FINISH)
        atomic_fetch_add(&m->finished[f], 1);
}

void slm_srv_metrics_http(slm_srv_metrics *m, int status)
{
    int i = 0;
    while (i < SLM_SRV_N_STATUS && counted_status[i] != status)
        i++;
    atomic_fetch_add(&m->http[i], 1);
}

/* printf onto the growable buffer; remembers the first failure in *fail. */
static void out(slm_srv_buf *b, int *fail, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void out(slm_srv_buf *b, int *fail, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || slm_srv_buf_append(b, line, (size_t)n))
        *fail = 1;
}

static void header(slm_srv_buf *b, int *fail, const char *name, const char *type,
                   const char *help)
{
    out(b, fail, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(slm_srv_buf *b, int *fail, const char *name, const char *type,
                   const char *help, unsigned long long v)
{
    header(b, fail, name, type, help);
    out(b, fail, "%s %llu\n", name, v);
}

static void histogram(slm_srv_buf *b, int *fail, const char *name, const char *help,
                      slm_srv_histogram *h)
{
    header(b, fail, name, "histogram", help);
    unsigned long long cum = 0;
    for (int i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load(&h->counts[i]);
        if (i < h->n_bounds)
            out(b, fail, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], cum);
        else
            out(b, fail, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
    }
    out(b, fail, "%s_sum %.6f\n%s_count %llu\n", name,
        (double)atomic_load(&h->sum_us) * 1e-6, name, cum);
}

char *slm_srv_metrics_render(slm_srv_metrics *m, const slm_engine_stats *s)
{
    slm_engine_stats zero = {0};
    if (!s)
        s = &zero;
    slm_srv_buf b = {0};
    int fail = 0;
    scalar(&b, &fail, "slm_requests_running", "gauge", "Requests being decoded now.",
           (unsigned long long)s->running);
    scalar(&b, &fail, "slm_requests_waiting", "gauge", "Requests queued, not yet admitted.",
           (unsigned long long)s->waiting);
    scalar(&b, &fail, "slm_prompt_tokens_total", "counter", "Prompt tokens processed.",
           s->prompt_tokens);
    scalar(&b, &fail, "slm_generation_tokens_total", "counter", "Tokens generated.",
           s->generated_tokens);
    scalar(&b, &fail, "slm_cached_prompt_tokens_total", "counter",
           "Prompt tokens reused from the prefix cache.", s->cached_tokens);
    scalar(&b, &fail, "slm_kv_blocks_used", "gauge", "KV cache blocks in use.",
           (unsigned long long)s->kv_blocks_used);
    scalar(&b, &fail, "slm_kv_blocks_total", "gauge", "KV cache blocks in the pool.",
           (unsigned long long)s->kv_blocks_total);
    scalar(&b, &fail, "slm_preemptions_total", "counter",
           "Sequences preempted for lack of KV blocks.", s->preemptions);
    scalar(&b, &fail, "slm_engine_steps_total", "counter", "Engine steps run.", s->steps);
    scalar(&b, &fail, "slm_http_connections", "gauge", "Client connections open.",
           (unsigned long long)atomic_load(&m->connections));
    /* issue 15: n > 1 forks the prompt's sequence instead of recomputing it. */
    scalar(&b, &fail, "slm_forks_total", "counter",
           "Sequences forked for choices beyond the first (n > 1).", s->forks);
    scalar(&b, &fail, "slm_kv_forked_blocks_total", "counter",
           "KV blocks forks shared with their parent instead of computing them.",
           s->forked_blocks);
    scalar(&b, &fail, "slm_computed_tokens_total", "counter",
           "Tokens run through the model (prompts, outputs, recomputation).",
           s->computed_tokens);
    histogram(&b, &fail, "slm_time_to_first_token_seconds",
              "Time from a request's arrival to its first output text.", &m->ttft);
    histogram(&b, &fail, "slm_inter_token_latency_seconds",
              "Time between consecutive pieces of one choice's output.", &m->itl);
    header(&b, &fail, "slm_requests_finished_total", "counter", "Requests ended, by reason.");
    for (int f = 0; f < SLM_SRV_N_FINISH; f++)
        out(&b, &fail, "slm_requests_finished_total{reason=\"%s\"} %llu\n",
            slm_srv_finish_name((slm_finish_reason)f), atomic_load(&m->finished[f]));
    header(&b, &fail, "slm_http_responses_total", "counter", "HTTP responses, by status.");
    for (int i = 0; i < SLM_SRV_N_STATUS; i++)
        out(&b, &fail, "slm_http_responses_total{status=\"%d\"} %llu\n", counted_status[i],
            atomic_load(&m->http[i]));
    out(&b, &fail, "slm_http_responses_total{status=\"other\"} %llu\n",
        atomic_load(&m->http[SLM_SRV_N_STATUS]));
    if (fail) {
        slm_srv_buf_free(&b);
        return NULL;
    }
    return b.data;
}
