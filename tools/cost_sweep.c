/*
 * cost_sweep.c — one concurrency level of `slm cost`: a closed loop through
 * the public engine of slm.h. `level` requests are in flight from the
 * start; each one's on_done lets the next in, until the workload's N are
 * done. Unlike bench_batch.c's lockstep (every sequence admitted in one
 * step, phases timed apart) this is how a server sees a steady stream of
 * users, so requests start and finish at staggered steps and prefill
 * chunks share steps with decodes.
 *
 * Every latency is the request's own, on the engine's clock (slm_result):
 *   TTFT = ttft_ms (submit → first output token, queueing included);
 *   TPOT = (total_ms − ttft_ms) / (completion_tokens − 1), requests with
 *          at least two tokens;
 *   end-to-end = total_ms.
 * Rates are over the level's wall time (first submission → last done):
 * output tok/s, input tok/s (prompt tokens), requests/s; per-user output
 * tok/s is 1000 / median TPOT, the decode speed one user watches.
 * Memory: the KV blocks in use, sampled while the loop waits (its peak), of
 * the pool's total; the process's peak resident set (VmHWM, which only
 * grows over a sweep); on a GPU backend, the device memory in use when the
 * engine sized its pool (total − free after weights and workspace, plus
 * the pool). Power: RAPL package energy over the level when
 * /sys/class/powercap exposes it (it excludes DRAM on most parts and
 * everything outside the CPU package).
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cost.h"

/* What the engine thread and the loop share. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_flight, done; /* guarded by mu */
} loop_sync;

/* One request's result, copied from its on_done. */
typedef struct {
    loop_sync *sync;
    slm_result res;
    char error[256];
} loop_req;

typedef struct {
    const char *cmd;
    slm_engine *e;
    const slm_cost_request *reqs;
    int n, level, n_vocab;
    uint64_t seed;
    int32_t *tokens; /* scratch for one prompt: the engine copies it at submit */
    loop_req *out;   /* [n] */
    loop_sync sync;
    slm_sampling greedy;
    int kv_peak;
} loop;

static void on_req_done(void *user, const slm_result *r)
{
    loop_req *q = user;
    slm_cli_keep_result(&q->res, q->error, sizeof q->error, r);
    pthread_mutex_lock(&q->sync->mu);
    q->sync->in_flight--;
    q->sync->done++;
    pthread_cond_broadcast(&q->sync->cv);
    pthread_mutex_unlock(&q->sync->mu);
}

/* splitmix64: the prompt tokens of request i depend on (seed, i) alone, so
 * two runs, and every level of one run, see the same requests. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void slm_cost_prompt(uint64_t seed, int level, int i, int n_in, int32_t lo, int32_t hi,
                     int32_t *out)
{
    uint64_t s = mix(seed ^ mix((uint64_t)i + 1) ^ mix(((uint64_t)level << 32) + 0x5eed));
    for (int k = 0; k < n_in; k++)
        out[k] = lo + (int32_t)((s = mix(s)) % (uint64_t)(hi - lo));
}

static int submit(loop *L, int i)
{
    slm_cost_prompt(L->seed, L->level, i, L->reqs[i].n_in, 0, L->n_vocab, L->tokens);
    loop_req *q = &L->out[i];
    memset(q, 0, sizeof *q);
    q->sync = &L->sync;
    slm_request_params rp;
    slm_request_params_default(&rp);
    rp.tokens = L->tokens;
    rp.n_tokens = L->reqs[i].n_in;
    rp.max_tokens = L->reqs[i].n_out;
    rp.ignore_eos = 1;
    rp.sampling = &L->greedy;
    rp.on_done = on_req_done;
    rp.user = q;
    pthread_mutex_lock(&L->sync.mu);
    L->sync.in_flight++; /* before submit: its on_done may come first */
    pthread_mutex_unlock(&L->sync.mu);
    if (slm_engine_submit(L->e, &rp, NULL) == SLM_OK)
        return 0;
    pthread_mutex_lock(&L->sync.mu);
    L->sync.in_flight--;
    pthread_mutex_unlock(&L->sync.mu);
    return slm_cli_fail(L->cmd, "level %d, request %d: %s", L->level, i + 1, slm_last_error());
}

static void sample_kv(loop *L)
{
    slm_engine_stats es = {.size = sizeof es};
    if (!slm_engine_get_stats(L->e, &es) && es.kv_blocks_used > L->kv_peak)
        L->kv_peak = es.kv_blocks_used;
}

static void progress(const loop *L, int done, double t0, bool final)
{
    if (!isatty(2))
        return;
    fprintf(stderr, "\rslm %s: level %d: %d/%d requests, %.1f s%s", L->cmd, L->level, done, L->n,
            slm_cli_now() - t0, final ? "\n" : "");
    fflush(stderr);
}

/* The closed loop: keeps `level` requests in flight until all n are done.
 * On a refused submission it waits for those in flight (their results are
 * not used) and returns 1. */
static int closed_loop(loop *L, double *wall_s)
{
    int next = 0, rc = 0;
    double t0 = slm_cli_now(), shown = 0;
    pthread_mutex_lock(&L->sync.mu);
    for (;;) {
        while (!rc && next < L->n && L->sync.in_flight < L->level) {
            pthread_mutex_unlock(&L->sync.mu);
            rc = submit(L, next);
            next += !rc;
            pthread_mutex_lock(&L->sync.mu);
        }
        if (rc ? L->sync.in_flight == 0 : L->sync.done == L->n)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 20 * 1000 * 1000; /* the KV sample's period */
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&L->sync.cv, &L->sync.mu, &until);
        int done = L->sync.done;
        pthread_mutex_unlock(&L->sync.mu);
        sample_kv(L);
        if (slm_cli_now() - shown > 0.25) {
            progress(L, done, t0, false);
            shown = slm_cli_now();
        }
        pthread_mutex_lock(&L->sync.mu);
    }
    pthread_mutex_unlock(&L->sync.mu);
    *wall_s = slm_cli_now() - t0;
    progress(L, L->sync.done, t0, true);
    return rc;
}

/* RAPL package energy in joules summed over packages; < 0 when unreadable. */
static double rapl_joules(void)
{
    DIR *d = opendir("/sys/class/powercap");
    if (!d)
        return -1;
    double total = -1;
    for (struct dirent *de; (de = readdir(d));) {
        int pkg, len = 0;
        /* intel-rapl:N is a package; intel-rapl:N:M its sub-zones (in it). */
        if (sscanf(de->d_name, "intel-rapl:%d%n", &pkg, &len) != 1 || de->d_name[len])
            continue;
        char path[512];
        snprintf(path, sizeof path, "/sys/class/powercap/%s/energy_uj", de->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long uj;
        if (f && fscanf(f, "%llu", &uj) == 1)
            total = (total < 0 ? 0 : total) + (double)uj * 1e-6;
        if (f)
            fclose(f);
    }
    closedir(d);
    return total;
}

/* VmHWM of this process in bytes, 0 when /proc does not say. */
static uint64_t host_peak_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb * 1024;
}

static slm_cost_pcts pcts(double *v, int n)
{
    return (slm_cost_pcts){slm_cost_percentile(v, n, 0.50), slm_cost_percentile(v, n, 0.90),
                           slm_cost_percentile(v, n, 0.99)};
}

void slm_cost_level_rates(slm_cost_level *o, double wall_s, double *ttft, double *e2e, int n,
                          double *tpot, int n_tpot)
{
    o->wall_s = wall_s;
    o->out_tps = (double)o->out_tokens / wall_s;
    o->in_tps = (double)o->in_tokens / wall_s;
    o->rps = n / wall_s;
    o->ttft_ms = pcts(ttft, n);
    o->e2e_ms = pcts(e2e, n);
    o->tpot_ms = pcts(tpot, n_tpot);
    o->user_out_tps = o->tpot_ms.p50 > 0 ? 1000.0 / o->tpot_ms.p50 : NAN;
}

/* The level's figures from the requests' results. Returns 0; 2 (why set)
 * when one ran out of memory; 1 after an error line when one failed
 * otherwise. */
static int summarize(const loop *L, double wall_s, slm_cost_level *o, char *why, size_t cap)
{
    double *ttft = malloc(sizeof(double) * (size_t)L->n * 3), *tpot = ttft + L->n,
           *e2e = tpot + L->n;
    if (!ttft)
        return slm_cli_fail(L->cmd, "out of memory");
    int n_tpot = 0, rc = 0;
    for (int i = 0; i < L->n && !rc; i++) {
        const slm_result *r = &L->out[i].res;
        if (r->finish == SLM_FINISH_ERROR && r->status == SLM_STATUS_OUT_OF_MEMORY) {
            snprintf(why, cap, "level %d: request %d ran out of memory (%s)", L->level, i + 1,
                     r->error);
            rc = 2;
        } else if (r->finish == SLM_FINISH_ERROR || r->finish == SLM_FINISH_CANCELLED) {
            rc = slm_cli_fail(L->cmd, "level %d, request %d: %s", L->level, i + 1,
                              r->error[0] ? r->error : slm_status_name(r->status));
        }
        o->in_tokens += (uint64_t)r->prompt_tokens;
        o->out_tokens += (uint64_t)r->completion_tokens;
        o->cached_tokens += (uint64_t)r->cached_tokens;
        ttft[i] = r->ttft_ms;
        e2e[i] = r->total_ms;
        if (r->completion_tokens >= 2)
            tpot[n_tpot++] = (r->total_ms - r->ttft_ms) / (r->completion_tokens - 1);
    }
    if (!rc)
        slm_cost_level_rates(o, wall_s, ttft, e2e, L->n, tpot, n_tpot);
    free(ttft);
    return rc;
}

/* Opens the engine for the level; 2 (why set) when it cannot take it. */
static int open_engine(loop *L, slm_model *m, int n_ctx, int longest, uint64_t kv_bytes_max,
                       char *why, size_t cap)
{
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.kv_bytes_max = kv_bytes_max;
    ep.n_ctx = n_ctx;
    ep.max_running = L->level;
    ep.max_waiting = L->level + 1;
    if (slm_engine_open(m, &ep, &L->e)) {
        snprintf(why, cap, "level %d: the engine could not open: %s", L->level, slm_last_error());
        return 2;
    }
    slm_engine_stats es = {.size = sizeof es};
    if (slm_engine_get_stats(L->e, &es))
        return slm_cli_fail(L->cmd, "%s", slm_last_error());
    int64_t need = (int64_t)L->level * ((longest + ep.block_size - 1) / ep.block_size);
    if (es.kv_blocks_total < need) {
        char kv[256];
        slm_cli_describe_kv(&es, kv, sizeof kv);
        snprintf(why, cap, "level %d: %d requests of up to %d tokens need %lld KV blocks, more "
                 "than the engine could take (%s)", L->level, L->level, longest, (long long)need,
                 kv);
        return 2;
    }
    return 0;
}

int slm_cost_run_level(const char *cmd, slm_model *m, const slm_cost_request *reqs, int n,
                       int level, uint64_t seed, uint64_t kv_bytes_max, slm_cost_level *out,
                       char *why, size_t cap)
{
    memset(out, 0, sizeof *out);
    out->level = level, out->n_requests = n, out->power_w = -1;
    slm_model_info info = {.size = sizeof info};
    if (slm_model_get_info(m, &info))
        return slm_cli_fail(cmd, "%s", slm_last_error());
    int longest = 0, max_in = 1;
    for (int i = 0; i < n; i++) {
        if (reqs[i].n_in + reqs[i].n_out > longest)
            longest = reqs[i].n_in + reqs[i].n_out;
        if (reqs[i].n_in > max_in)
            max_in = reqs[i].n_in;
    }
    loop L = {.cmd = cmd, .reqs = reqs, .n = n, .level = level, .n_vocab = info.n_vocab,
              .seed = seed};
    pthread_mutex_init(&L.sync.mu, NULL);
    pthread_cond_init(&L.sync.cv, NULL);
    slm_sampling_default(&L.greedy);
    L.greedy.temperature = 0;
    L.tokens = malloc((size_t)max_in * sizeof *L.tokens);
    L.out = calloc((size_t)n, sizeof *L.out);
    int rc = !L.tokens || !L.out ? slm_cli_fail(cmd, "out of memory")
                                 : open_engine(&L, m, longest, longest, kv_bytes_max, why, cap);
    slm_engine_stats before, after;
    double wall = 0, j0 = rapl_joules(), j1;
    if (!rc)
        rc = slm_cli_wait_idle(cmd, L.e, &before) || closed_loop(&L, &wall) ||
             slm_cli_wait_idle(cmd, L.e, &after);
    j1 = rapl_joules();
    if (!rc)
        rc = summarize(&L, wall, out, why, cap);
    if (!rc) {
        out->kv_blocks_peak = L.kv_peak;
        out->kv_blocks_total = after.kv_blocks_total;
        out->kv_pool_bytes = after.kv_pool_bytes;
        out->preemptions = after.preemptions - before.preemptions;
        out->host_peak_bytes = host_peak_bytes();
        /* The CPU backend's "memory" is the machine's: host_peak_bytes says it. */
        if (after.mem_total_bytes && strncmp(info.backend, "cpu", 3))
            out->device_used_bytes = after.mem_total_bytes - after.mem_free_bytes +
                                     after.kv_pool_bytes;
        if (j0 >= 0 && j1 > j0 && wall > 0)
            out->power_w = (j1 - j0) / wall; /* a counter wrap reads as "not measured" */
    }
    slm_engine_close(L.e, 0);
    pthread_cond_destroy(&L.sync.cv);
    pthread_mutex_destroy(&L.sync.mu);
    free(L.tokens);
    free(L.out);
    return rc;
}
