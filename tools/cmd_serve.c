/*
 * cmd_serve.c — `slm serve`: an OpenAI-compatible HTTP server over one
 * model. It listens first (so /health can say "loading"), loads the model
 * and starts the engine, then waits for SIGTERM or SIGINT: it stops
 * accepting connections, lets in-flight requests finish for up to --grace
 * seconds, cancels what is left, and exits 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "server_http.h"

typedef struct {
    slm_cli_common c;
    const char *host, *api_key;
    long port, parallel, ctx, queue, grace, max_body, step_tokens, kv_blocks, kv_max_mb;
    long max_conns, max_conns_per_client, header_timeout, body_timeout, idle_timeout;
    long max_header, workers;
    bool auth_metrics;
} serve_opts;

static void help(void)
{
    printf("usage: slm serve [options]\n\n"
           "Serves the model over HTTP with OpenAI's API: POST /v1/chat/completions and\n"
           "/v1/completions (streaming or not; n choices, logprobs, logit_bias,\n"
           "response_format json_object / json_schema), POST /v1/embeddings, GET\n"
           "/v1/models, /health and /metrics (Prometheus). Requests are batched\n"
           "continuously; the KV cache is one pool shared by all of them. SIGTERM or\n"
           "SIGINT drains and exits 0.\n\n"
           "  --host ADDR          address to listen on (default 127.0.0.1)\n"
           "  --port N             port (default 8080; 0 picks a free one)\n"
           "  --parallel N         requests decoded together at most (default 16)\n"
           "  --ctx N              tokens one request may hold, prompt + output\n"
           "                       (default: the model's training context, at most 4096)\n"
           "  --queue N            requests waiting beyond which new ones get 503 (default 256)\n"
           "  --api-key KEY        require 'Authorization: Bearer KEY' on /v1/* (default:\n"
           "                       $SLM_API_KEY; none when unset)\n"
           "  --auth-metrics       require the API key on /metrics too\n"
           "  --grace SECONDS      how long shutdown waits for in-flight requests (default 30)\n"
           "  --max-body BYTES     larger request bodies get 413, before they are read\n"
           "                       (default 1048576)\n"
           "  --max-header BYTES   larger request headers get 431 (default 16384)\n"
           "  --max-conns N        open connections at most; beyond, 503 and close\n"
           "                       (default 16384, or what the descriptor limit holds)\n"
           "  --max-conns-per-client N  open connections from one address (default 256)\n"
           "  --header-timeout S   seconds for a whole request header, however slowly its\n"
           "                       bytes come (default 10); then 408 and close\n"
           "  --body-timeout S     seconds for a whole request body, and for a client\n"
           "                       that stops reading its answer (default 60)\n"
           "  --idle-timeout S     seconds a keep-alive connection may idle (default 30)\n"
           "  --workers N          threads that parse and submit requests (default 4)\n"
           "  --step-tokens N      token budget of one engine step (default 512)\n"
           "  --kv-blocks N        KV pool size in 16-token blocks (default: --parallel full\n"
           "                       contexts, as far as the backend's measured free memory\n"
           "                       allows after the weights and workspace)\n"
           "  --kv-max-mb N        cap the KV pool at N MiB\n%s",
           slm_cli_common_help);
}

static int parse(int argc, char **argv, serve_opts *o)
{
    memset(o, 0, sizeof *o);
    slm_cli_common_init(&o->c);
    o->host = "127.0.0.1";
    o->api_key = getenv("SLM_API_KEY");
    o->port = 8080, o->parallel = 16, o->queue = 256, o->grace = 30;
    o->max_body = 1 << 20, o->step_tokens = 512;
    slm_srv_config d;
    slm_srv_config_default(&d);
    o->max_conns = d.max_conns, o->max_conns_per_client = d.max_conns_per_client;
    o->header_timeout = (long)d.header_timeout, o->body_timeout = (long)d.body_timeout;
    o->idle_timeout = (long)d.idle_timeout, o->max_header = (long)d.max_header;
    o->workers = d.workers;
    static const struct {
        const char *name;
        long lo, hi;
        size_t off;
    } ints[] = {
        {"--port", 0, 65535, offsetof(serve_opts, port)},
        {"--parallel", 1, 4096, offsetof(serve_opts, parallel)},
        {"--ctx", 16, 1 << 24, offsetof(serve_opts, ctx)},
        {"--queue", 1, 1 << 20, offsetof(serve_opts, queue)},
        {"--grace", 0, 86400, offsetof(serve_opts, grace)},
        {"--max-body", 1024, 1L << 30, offsetof(serve_opts, max_body)},
        {"--step-tokens", 1, 1 << 16, offsetof(serve_opts, step_tokens)},
        {"--kv-blocks", 1, 1 << 24, offsetof(serve_opts, kv_blocks)},
        {"--kv-max-mb", 1, 1L << 30, offsetof(serve_opts, kv_max_mb)},
        {"--max-conns", 1, 1 << 20, offsetof(serve_opts, max_conns)},
        {"--max-conns-per-client", 1, 1 << 20, offsetof(serve_opts, max_conns_per_client)},
        {"--header-timeout", 1, 3600, offsetof(serve_opts, header_timeout)},
        {"--body-timeout", 1, 86400, offsetof(serve_opts, body_timeout)},
        {"--idle-timeout", 1, 86400, offsetof(serve_opts, idle_timeout)},
        {"--max-header", 1024, 1 << 20, offsetof(serve_opts, max_header)},
        {"--workers", 1, 256, offsetof(serve_opts, workers)},
    };
    for (int i = 1; i < argc; i++) {
        int c = slm_cli_common_opt("serve", &o->c, argc, argv, &i);
        if (c < 0)
            return 1;
        if (c)
            continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return -1;
        }
        if (!strcmp(a, "--auth-metrics")) {
            o->auth_metrics = true;
            continue;
        }
        if (!v)
            return slm_cli_fail("serve", "unknown or incomplete option '%s' (see slm serve "
                                "--help)", a);
        bool known = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !known; k++)
            if (!strcmp(a, ints[k].name)) {
                known = true;
                if (!slm_cli_int("serve", a, v, ints[k].lo, ints[k].hi,
                                 (long *)((char *)o + ints[k].off)))
                    return 1;
            }
        if (!known && !strcmp(a, "--host"))
            o->host = v, known = true;
        if (!known && !strcmp(a, "--api-key"))
            o->api_key = v, known = true;
        if (!known)
            return slm_cli_fail("serve", "unknown option '%s' (see slm serve --help)", a);
        i++;
    }
    if (o->api_key && !o->api_key[0])
        o->api_key = NULL;
    if (o->auth_metrics && !o->api_key)
        return slm_cli_fail("serve", "--auth-metrics needs an API key (--api-key or "
                            "$SLM_API_KEY)");
    return 0;
}

static int load(const serve_opts *o, slm_model **m, slm_engine **e, int *n_ctx)
{
    slm_model_info info;
    if (slm_cli_load("serve", &o->c, m, &info))
        return 1;
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = o->ctx ? (int)o->ctx : (info.n_ctx_train < 4096 ? info.n_ctx_train : 4096);
    ep.max_running = (int)o->parallel;
    ep.max_waiting = (int)o->queue;
    ep.step_tokens = (int)o->step_tokens;
    ep.kv_blocks = (int)o->kv_blocks;
    ep.kv_bytes_max = (uint64_t)o->kv_max_mb << 20;
    if (slm_engine_open(*m, &ep, e)) {
        int rc = slm_cli_fail("serve", "%s", slm_last_error());
        slm_model_close(*m);
        *m = NULL;
        return rc;
    }
    slm_engine_stats es = {.size = sizeof es};
    slm_engine_get_stats(*e, &es);
    *n_ctx = ep.n_ctx;
    char kv[256];
    slm_cli_describe_kv(&es, kv, sizeof kv);
    fprintf(stderr, "slm serve: ready: %s on %s, context %d per request, %d in parallel, %s\n",
            info.name, info.backend, ep.n_ctx, ep.max_running, kv);
    return 0;
}

/* Waits for in-flight requests to end, at most `seconds`. */
static bool wait_idle(slm_srv *s, double seconds)
{
    double end = slm_cli_now() + seconds;
    while (slm_srv_in_flight(s) > 0 && slm_cli_now() < end) {
        struct timespec d = {0, 20 * 1000000L};
        nanosleep(&d, NULL);
    }
    return slm_srv_in_flight(s) == 0;
}

int slm_cmd_serve(int argc, char **argv)
{
    serve_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    /* Every thread started from here on inherits this mask, so the signals
     * reach only the sigwait below; a vanished client is an EPIPE, not a
     * signal. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static slm_srv srv;
    slm_srv_config cfg;
    slm_srv_config_default(&cfg);
    cfg.host = o.host;
    cfg.port = (int)o.port;
    cfg.api_key = o.api_key;
    cfg.max_body = (size_t)o.max_body;
    cfg.model_path = o.c.model;
    cfg.auth_metrics = o.auth_metrics;
    cfg.max_conns = (int)o.max_conns;
    cfg.max_conns_per_client = (int)o.max_conns_per_client;
    cfg.header_timeout = (double)o.header_timeout;
    cfg.body_timeout = (double)o.body_timeout;
    cfg.idle_timeout = (double)o.idle_timeout;
    cfg.max_header = (size_t)o.max_header;
    cfg.workers = (int)o.workers;
    if (slm_srv_start(&srv, &cfg))
        return 1;
    fprintf(stderr, "slm serve: listening on http://%s:%d%s\n", o.host, slm_srv_port(&srv),
            o.api_key ? " (API key required)" : "");
    slm_model *m = NULL;
    slm_engine *e = NULL;
    int n_ctx = 0;
    if (load(&o, &m, &e, &n_ctx)) {
        slm_srv_set_failed(&srv);
        slm_srv_stop(&srv);
        return 1;
    }
    slm_sampling dp;
    slm_sampling_default(&dp);
    slm_srv_set_ready(&srv, m, e, n_ctx, &dp);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "slm serve: %s: draining (%d in flight, grace %ld s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", slm_srv_in_flight(&srv), o.grace);
    slm_srv_quiesce(&srv);
    if (!wait_idle(&srv, (double)o.grace)) {
        fprintf(stderr, "slm serve: grace period over: cancelling %d requests\n",
                slm_srv_in_flight(&srv));
        slm_srv_cancel_all(&srv);
        wait_idle(&srv, 10);
    }
    slm_srv_stop(&srv);
    slm_engine_close(e, 0);
    slm_model_close(m);
    fprintf(stderr, "slm serve: stopped\n");
    return 0;
}
