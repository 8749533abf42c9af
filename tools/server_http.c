/*
 * server_http.c — what `slm serve` answers (see server_http.h): the route
 * table, the checks made on a request head before any of its body is read
 * (route, method, API key, declared size, readiness), the health, metrics
 * and models endpoints, and the server's life cycle (loading → ready →
 * draining → stopped). Sockets and framing live in server_loop.c; the
 * generation routes in server_gen.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "server_embed.h"
#include "server_http.h"

void slm_srv_config_default(slm_srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->max_body = 1 << 20;
    c->max_conns = 16384;
    c->max_conns_per_client = 256;
    c->header_timeout = 10;
    c->body_timeout = 60;
    c->idle_timeout = 30;
    c->max_header = 16384;
    c->max_uri = 4096;
    c->workers = 4;
}

int slm_srv_respond(slm_srv *s, slm_srv_exchange *x, int status, const char *ctype,
                    char *body, const char *hname, const char *hvalue)
{
    free(x->resp);
    x->resp = body ? body : strdup("{}");
    x->status = x->resp ? status : 500;
    x->ctype = ctype;
    x->hname[0] = x->hvalue[0] = 0;
    if (hname) {
        snprintf(x->hname, sizeof x->hname, "%s", hname);
        snprintf(x->hvalue, sizeof x->hvalue, "%s", hvalue);
    }
    slm_srv_metrics_http(&s->metrics, x->status);
    return 0;
}

int slm_srv_respond_error(slm_srv *s, slm_srv_exchange *x, const slm_srv_error *e,
                          const char *hname, const char *hvalue)
{
    return slm_srv_respond(s, x, e->status, "application/json", slm_srv_error_json(e), hname,
                           hvalue);
}

static int fail(slm_srv *s, slm_srv_exchange *x, int status, const char *msg)
{
    slm_srv_error e;
    slm_srv_error_set(&e, status, "server_error", NULL, NULL, "%s", msg);
    return slm_srv_respond_error(s, x, &e, NULL, NULL);
}

/* The scheme is case-insensitive (RFC 9110 §11.1); the key compares in
 * constant time, so it cannot be guessed byte by byte. */
static bool key_ok(const slm_srv *s, const char *h, size_t n)
{
    if (!s->cfg.api_key)
        return true;
    if (!h || n < 7 || strncasecmp(h, "Bearer ", 7))
        return false;
    const char *k = h + 7, *want = s->cfg.api_key;
    n -= 7;
    while (n && *k == ' ')
        k++, n--;
    size_t m = strlen(want);
    unsigned char diff = n != m;
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(want[i] ^ (i < n ? k[i] : 0));
    return diff == 0;
}

static int route_health(slm_srv *s, slm_srv_exchange *x)
{
    int st = atomic_load(&s->state);
    const char *body = st == SLM_SRV_READY      ? "{\"status\":\"ok\"}"
                       : st == SLM_SRV_LOADING  ? "{\"status\":\"loading\"}"
                       : st == SLM_SRV_DRAINING ? "{\"status\":\"draining\"}"
                                                : "{\"status\":\"failed\"}";
    return slm_srv_respond(s, x, st == SLM_SRV_READY ? 200 : 503, "application/json",
                           strdup(body), NULL, NULL);
}

static int route_metrics(slm_srv *s, slm_srv_exchange *x)
{
    slm_engine_stats es = {.size = sizeof es};
    bool have = atomic_load(&s->state) != SLM_SRV_LOADING && s->engine &&
                slm_engine_get_stats(s->engine, &es) == SLM_OK;
    char *text = slm_srv_metrics_render(&s->metrics, have ? &es : NULL);
    if (!text)
        return fail(s, x, 500, "out of memory");
    return slm_srv_respond(s, x, 200, "text/plain; version=0.0.4; charset=utf-8", text, NULL,
                           NULL);
}

static int route_models(slm_srv *s, slm_srv_exchange *x)
{
    char *body = malloc(1024);
    if (!body)
        return fail(s, x, 500, "out of memory");
    snprintf(body, 1024,
             "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\","
             "\"created\":%lld,\"owned_by\":\"slm\"}]}",
             s->model_id, s->started);
    return slm_srv_respond(s, x, 200, "application/json", body, NULL, NULL);
}

static int route_chat(slm_srv *s, slm_srv_exchange *x)
{
    return slm_srv_generate(s, x, true, x->body, x->body_len);
}

static int route_completions(slm_srv *s, slm_srv_exchange *x)
{
    return slm_srv_generate(s, x, false, x->body, x->body_len);
}

/* POST /v1/embeddings: server_embed.c answers (blocking this worker until the
 * engine has pooled every input), this sends it. */
static int route_embeddings(slm_srv *s, slm_srv_exchange *x)
{
    char *json;
    slm_srv_error e;
    int status = slm_srv_embeddings(s, x->body, x->body_len, &json, &e);
    if (status != 200)
        return slm_srv_respond_error(s, x, &e, status == 503 ? "Retry-After" : NULL,
                                     status == 503 ? "1" : NULL);
    return slm_srv_respond(s, x, 200, "application/json", json, NULL, NULL);
}

enum { KEY = SLM_SRV_ROUTE_KEY, READY = SLM_SRV_ROUTE_READY, WORKER = SLM_SRV_ROUTE_WORKER,
       METRICS = SLM_SRV_ROUTE_METRICS };

/* Every endpoint: one line each. Quick answers run on the loop, so /health
 * is answered even while every worker is busy. */
static const slm_srv_route routes[] = {
    {"/health", "GET", route_health, 0},
    {"/metrics", "GET", route_metrics, METRICS},
    {"/v1/models", "GET", route_models, KEY | READY},
    {"/v1/chat/completions", "POST", route_chat, KEY | READY | WORKER},
    {"/v1/completions", "POST", route_completions, KEY | READY | WORKER},
    {"/v1/embeddings", "POST", route_embeddings, KEY | READY | WORKER},
};

const slm_srv_route *slm_srv_admit(slm_srv *s, const char *method, const char *path,
                                   size_t path_len, const char *auth, size_t auth_len,
                                   int64_t content_length, slm_srv_error *e,
                                   const char **hname, const char **hvalue)
{
    *hname = *hvalue = NULL;
    const slm_srv_route *r = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0] && !r; i++)
        if (strlen(routes[i].path) == path_len && !memcmp(routes[i].path, path, path_len))
            r = &routes[i];
    if (!r) {
        slm_srv_error_set(e, 404, "invalid_request_error", NULL, "not_found",
                          "no such endpoint");
        return NULL;
    }
    if (strcmp(method, r->method)) {
        slm_srv_error_set(e, 405, "invalid_request_error", NULL, "method_not_allowed",
                          "%s takes %s, not %.16s", r->path, r->method, method);
        *hname = "Allow";
        *hvalue = r->method;
        return NULL;
    }
    bool need_key = (r->flags & KEY) || ((r->flags & METRICS) && s->cfg.auth_metrics);
    if (need_key && !key_ok(s, auth, auth_len)) {
        slm_srv_error_set(e, 401, "invalid_request_error", NULL, "invalid_api_key",
                          "missing or wrong API key (send 'Authorization: Bearer KEY')");
        return NULL;
    }
    if (content_length > 0 && (uint64_t)content_length > s->cfg.max_body) {
        slm_srv_error_set(e, 413, "invalid_request_error", NULL, "body_too_large",
                          "the request body is larger than the limit of %zu bytes",
                          s->cfg.max_body);
        return NULL;
    }
    int st = atomic_load(&s->state);
    if ((r->flags & READY) && st != SLM_SRV_READY) {
        slm_srv_error_set(e, 503, "server_error", NULL,
                          st == SLM_SRV_LOADING ? "loading" : "draining",
                          st == SLM_SRV_LOADING ? "the model is still loading"
                                                : "the server is shutting down");
        *hname = "Retry-After";
        *hvalue = "1";
        return NULL;
    }
    return r;
}

int slm_srv_start(slm_srv *s, const slm_srv_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    atomic_init(&s->state, SLM_SRV_LOADING);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->seq, 0);
    slm_srv_metrics_init(&s->metrics);
    pthread_mutex_init(&s->jobs_mu, NULL);
    s->started = (long long)time(NULL);
    return slm_srv_loop_start(s);
}

int slm_srv_port(const slm_srv *s) { return slm_srv_loop_port(s); }

void slm_srv_set_ready(slm_srv *s, slm_model *m, slm_engine *e, int n_ctx,
                       const slm_sampling *defaults)
{
    s->model = m;
    s->engine = e;
    s->n_ctx = n_ctx;
    s->sampling_defaults = *defaults;
    const char *base = strrchr(s->cfg.model_path, '/');
    base = base ? base + 1 : s->cfg.model_path;
    snprintf(s->model_file, sizeof s->model_file, "%s", base);
    snprintf(s->model_id, sizeof s->model_id, "%s", base);
    size_t n = strlen(s->model_id);
    if (n > 5 && !strcmp(s->model_id + n - 5, ".gguf"))
        s->model_id[n - 5] = 0;
    slm_model_info info = {.size = sizeof info};
    if (slm_model_get_info(m, &info) == SLM_OK)
        snprintf(s->model_name, sizeof s->model_name, "%s", info.name);
    s->names = (slm_srv_model_names){s->model_id, {s->model_file, s->model_name, NULL}};
    atomic_store(&s->state, SLM_SRV_READY);
}

void slm_srv_set_failed(slm_srv *s) { atomic_store(&s->state, SLM_SRV_FAILED); }

void slm_srv_quiesce(slm_srv *s)
{
    atomic_store(&s->state, SLM_SRV_DRAINING);
    slm_srv_loop_quiesce(s);
}

int slm_srv_in_flight(slm_srv *s) { return atomic_load(&s->in_flight); }

void slm_srv_cancel_all(slm_srv *s)
{
    pthread_mutex_lock(&s->jobs_mu);
    for (slm_srv_job *j = s->jobs; j; j = j->next)
        slm_engine_cancel(s->engine, j->id);
    pthread_mutex_unlock(&s->jobs_mu);
}

void slm_srv_stop(slm_srv *s)
{
    slm_srv_loop_stop(s);
    pthread_mutex_destroy(&s->jobs_mu);
}
