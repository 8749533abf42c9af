/*
 * server_http.c — the libmicrohttpd daemon of `slm serve` (see
 * server_http.h): routing, API keys, body size limits, the health and
 * metrics endpoints, and the server's life cycle (loading → ready →
 * draining → stopped). The generation routes live in server_gen.c.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server_embed.h"
#include "server_http.h"

/* Per-request state of a connection (MHD's con_cls). */
typedef struct http_req {
    slm_srv_buf body;
    size_t body_seen;
    bool too_big;
} http_req;

int slm_srv_respond(slm_srv *s, struct MHD_Connection *c, int status, const char *ctype,
                    char *body, const char *hname, const char *hvalue)
{
    const char *text = body ? body : "{}";
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                             MHD_RESPMEM_MUST_COPY);
    free(body);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname)
        MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    slm_srv_metrics_http(&s->metrics, status);
    return ok;
}

int slm_srv_respond_error(slm_srv *s, struct MHD_Connection *c, const slm_srv_error *e,
                          const char *hname, const char *hvalue)
{
    return slm_srv_respond(s, c, e->status, "application/json", slm_srv_error_json(e), hname,
                           hvalue);
}

static int fail(slm_srv *s, struct MHD_Connection *c, int status, const char *type,
                const char *code, const char *hname, const char *hvalue, const char *msg)
{
    slm_srv_error e;
    slm_srv_error_set(&e, status, type, NULL, code, "%s", msg);
    return slm_srv_respond_error(s, c, &e, hname, hvalue);
}

/* Constant-time comparison, so the key cannot be guessed byte by byte. */
static bool key_ok(const slm_srv *s, struct MHD_Connection *c)
{
    if (!s->cfg.api_key)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7))
        return false;
    const char *k = h + 7, *want = s->cfg.api_key;
    size_t n = strlen(k), m = strlen(want);
    unsigned char diff = n != m;
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(want[i] ^ (i < n ? k[i] : 0));
    return diff == 0;
}

static int route_health(slm_srv *s, struct MHD_Connection *c)
{
    int st = atomic_load(&s->state);
    const char *body = st == SLM_SRV_READY      ? "{\"status\":\"ok\"}"
                       : st == SLM_SRV_LOADING  ? "{\"status\":\"loading\"}"
                       : st == SLM_SRV_DRAINING ? "{\"status\":\"draining\"}"
                                                : "{\"status\":\"failed\"}";
    return slm_srv_respond(s, c, st == SLM_SRV_READY ? 200 : 503, "application/json",
                           strdup(body), NULL, NULL);
}

static int route_metrics(slm_srv *s, struct MHD_Connection *c)
{
    slm_engine_stats es = {.size = sizeof es};
    bool have = atomic_load(&s->state) != SLM_SRV_LOADING && s->engine &&
                slm_engine_get_stats(s->engine, &es) == SLM_OK;
    char *text = slm_srv_metrics_render(&s->metrics, have ? &es : NULL);
    if (!text)
        return fail(s, c, 500, "server_error", NULL, NULL, NULL, "out of memory");
    return slm_srv_respond(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", text, NULL,
                           NULL);
}

static int route_models(slm_srv *s, struct MHD_Connection *c)
{
    char *body = malloc(1024);
    if (!body)
        return fail(s, c, 500, "server_error", NULL, NULL, NULL, "out of memory");
    snprintf(body, 1024,
             "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\","
             "\"created\":%lld,\"owned_by\":\"slm\"}]}",
             s->model_id, s->started);
    return slm_srv_respond(s, c, 200, "application/json", body, NULL, NULL);
}

/* POST /v1/embeddings: server_embed.c answers, this sends it. */
static int route_embeddings(slm_srv *s, struct MHD_Connection *c, const char *body, size_t len)
{
    char *json;
    slm_srv_error e;
    int status = slm_srv_embeddings(s, body, len, &json, &e);
    if (status != 200)
        return slm_srv_respond_error(s, c, &e, status == 503 ? "Retry-After" : NULL,
                                     status == 503 ? "1" : NULL);
    return slm_srv_respond(s, c, 200, "application/json", json, NULL, NULL);
}

/* Which route a URL is, and the one method it takes. */
typedef enum { R_NONE, R_HEALTH, R_METRICS, R_MODELS, R_CHAT, R_COMPLETIONS, R_EMBEDDINGS } route;

static route route_of(const char *url, const char **method)
{
    static const struct {
        const char *url, *method;
        route r;
    } table[] = {
        {"/health", "GET", R_HEALTH},
        {"/metrics", "GET", R_METRICS},
        {"/v1/models", "GET", R_MODELS},
        {"/v1/chat/completions", "POST", R_CHAT},
        {"/v1/completions", "POST", R_COMPLETIONS},
        {"/v1/embeddings", "POST", R_EMBEDDINGS},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(url, table[i].url)) {
            *method = table[i].method;
            return table[i].r;
        }
    return R_NONE;
}

/* Gathers the body (or only counts it, past the limit) until the last call. */
static bool take_body(slm_srv *s, http_req *hr, const char *data, size_t *size)
{
    if (*size == 0)
        return true;
    hr->body_seen += *size;
    if (hr->body_seen > s->cfg.max_body)
        hr->too_big = true;
    if (!hr->too_big && slm_srv_buf_append(&hr->body, data, *size))
        hr->too_big = true; /* out of memory: answered like an oversized body */
    *size = 0;
    return false;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    slm_srv *s = cls;
    http_req *hr = *con_cls;
    if (!hr) { /* headers only so far */
        hr = calloc(1, sizeof *hr);
        if (!hr)
            return MHD_NO;
        *con_cls = hr;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body)
            hr->too_big = true;
        return MHD_YES;
    }
    if (!take_body(s, hr, upload, upload_size))
        return MHD_YES;

    const char *want = NULL;
    route r = route_of(url, &want);
    if (r == R_NONE)
        return fail(s, c, 404, "invalid_request_error", "not_found", NULL, NULL,
                    "no such endpoint");
    if (strcmp(method, want)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s takes %s, not %.16s", url, want, method);
        return fail(s, c, 405, "invalid_request_error", "method_not_allowed", "Allow", want,
                    msg);
    }
    if (r == R_HEALTH)
        return route_health(s, c);
    if (r == R_METRICS)
        return route_metrics(s, c);
    if (!key_ok(s, c))
        return fail(s, c, 401, "invalid_request_error", "invalid_api_key", NULL, NULL,
                    "missing or wrong API key (send 'Authorization: Bearer KEY')");
    if (hr->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes",
                 s->cfg.max_body);
        return fail(s, c, 413, "invalid_request_error", "body_too_large", NULL, NULL, msg);
    }
    int st = atomic_load(&s->state);
    if (st != SLM_SRV_READY)
        return fail(s, c, 503, "server_error", st == SLM_SRV_LOADING ? "loading" : "draining",
                    "Retry-After", "1",
                    st == SLM_SRV_LOADING ? "the model is still loading"
                                          : "the server is shutting down");
    if (r == R_MODELS)
        return route_models(s, c);
    if (r == R_EMBEDDINGS)
        return route_embeddings(s, c, hr->body.data, hr->body.len);
    return slm_srv_generate(s, c, r == R_CHAT, hr->body.data, hr->body.len);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    (void)cls, (void)c, (void)why;
    http_req *hr = *con_cls;
    if (hr) {
        slm_srv_buf_free(&hr->body);
        free(hr);
        *con_cls = NULL;
    }
}

static int resolve(const char *host, int port, struct sockaddr_storage *sa)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res) {
        fprintf(stderr, "slm serve: cannot resolve --host '%s': %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
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
    struct sockaddr_storage sa;
    if (resolve(cfg->host, cfg->port, &sa))
        return -1;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handle, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        fprintf(stderr, "slm serve: cannot listen on %s:%d (address in use, or not this "
                "machine's)\n", cfg->host, cfg->port);
        return -1;
    }
    return 0;
}

int slm_srv_port(const slm_srv *s)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return i ? (int)i->port : s->cfg.port;
}

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
    int fd = MHD_quiesce_daemon(s->daemon);
    if (fd >= 0)
        close(fd);
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
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    pthread_mutex_destroy(&s->jobs_mu);
}
