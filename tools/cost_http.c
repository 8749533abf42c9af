/*
 * cost_http.c — one concurrency level of `slm cost --url`: the same closed
 * loop as cost_sweep.c, but against any OpenAI-compatible server (slm
 * serve, llama-server, vLLM) through its streaming completions API, so
 * runtimes can be compared on one machine with one tool.
 *
 * Each request is POST URL/v1/completions with
 *   {"prompt": [ids], "max_tokens": OUT, "temperature": 0, "stream": true,
 *    "ignore_eos": true, "stream_options": {"include_usage": true}}.
 * The prompt is a list of token ids (OpenAI's completions API allows it;
 * slm serve, llama-server and vLLM accept it), so the server runs exactly
 * the workload's input length whatever its tokenizer; the ids come from
 * slm_cost_prompt in [SLM_COST_URL_TOKEN_LO, SLM_COST_URL_TOKEN_HI).
 * ignore_eos is the extension field slm serve, llama-server and vLLM share:
 * every request then runs its full output length.
 *
 * One thread drives all requests with curl's multi interface (one easy
 * handle per request in flight); the SSE stream is split into lines as it
 * arrives and each `data:` event parsed with jansson. Per request, on this
 * process's clock:
 *   TTFT = POST sent → the first event whose choice carries text;
 *   tokens = usage.completion_tokens from the stream's last event when the
 *          server sends it (include_usage), else one token per event with
 *          text (a server may merge tokens into one event: usage corrects);
 *   TPOT = (last text event − first text event) / (tokens − 1), the mean
 *          gap between tokens, for requests with two or more;
 *   end-to-end = POST sent → `data: [DONE]` (or the end of the transfer).
 * Input tokens are usage.prompt_tokens when sent, else the ids sent.
 * Errors — no connection, an HTTP status other than 200, an event that is
 * not JSON, an error event, a stream with no text or cut short — stop the
 * level with one line naming the URL and what went wrong.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "cost.h"

/* One request in flight and what its stream said. */
typedef struct {
    CURL *h;
    char *body;                /* the POST body: curl reads it while sending */
    double t0, t_first, t_last, t_done; /* slm_cli_now(); 0: not yet */
    int text_events;
    long prompt_tokens, completion_tokens; /* from usage; -1: not sent */
    bool finished;             /* a choice had a finish_reason */
    long status;               /* HTTP status, 0 until the first body bytes */
    char *buf;                 /* bytes of an unfinished line (or an error body) */
    size_t len, cap;
    char err[512];             /* what went wrong in the stream, "" when nothing */
    char curl_err[CURL_ERROR_SIZE];
} http_req;

typedef struct {
    const char *cmd, *url;
    char endpoint[1024];
    struct curl_slist *headers;
    CURLM *multi;
    const slm_cost_request *reqs;
    int n, level;
    uint64_t seed;
    http_req *q; /* [n] */
    char model[128]; /* the "model" the server named in its events */
} http_loop;

static void take_model(http_loop *L, json_t *ev)
{
    const char *m = json_string_value(json_object_get(ev, "model"));
    if (m && !L->model[0])
        snprintf(L->model, sizeof L->model, "%s", m);
}

/* The text a choice carries: "text" (completions) or "delta.content". */
static const char *choice_text(json_t *choice)
{
    const char *t = json_string_value(json_object_get(choice, "text"));
    if (!t)
        t = json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
    return t;
}

/* One `data:` event of a 200 stream. */
static void on_event(http_loop *L, http_req *q, const char *data)
{
    if (!strcmp(data, "[DONE]")) {
        q->t_done = slm_cli_now();
        return;
    }
    json_error_t je;
    json_t *ev = json_loads(data, 0, &je);
    json_t *err = ev ? json_object_get(ev, "error") : NULL;
    if (!json_is_object(ev)) {
        snprintf(q->err, sizeof q->err, "an event that is not a JSON object: %.120s", data);
    } else if (err) {
        const char *msg = json_string_value(json_object_get(err, "message"));
        snprintf(q->err, sizeof q->err, "the stream reported an error: %.300s",
                 msg ? msg : data);
    } else {
        take_model(L, ev);
        json_t *choice = json_array_get(json_object_get(ev, "choices"), 0);
        const char *text = choice ? choice_text(choice) : NULL;
        if (text && text[0]) {
            q->t_last = slm_cli_now();
            if (!q->t_first)
                q->t_first = q->t_last;
            q->text_events++;
        }
        if (choice && json_is_string(json_object_get(choice, "finish_reason")))
            q->finished = true;
        json_t *usage = json_object_get(ev, "usage");
        if (json_is_object(usage)) {
            json_t *p = json_object_get(usage, "prompt_tokens");
            json_t *c = json_object_get(usage, "completion_tokens");
            q->prompt_tokens = json_is_integer(p) ? (long)json_integer_value(p) : -1;
            q->completion_tokens = json_is_integer(c) ? (long)json_integer_value(c) : -1;
        }
    }
    json_decref(ev);
}

/* Handles every complete line in q->buf (SSE: `data: ...` lines; blank
 * lines, comments and other fields are skipped), keeping the unfinished
 * rest for the next bytes. */
static void on_lines(http_loop *L, http_req *q)
{
    char *start = q->buf, *nl;
    while (!q->err[0] && (nl = memchr(start, '\n', q->len - (size_t)(start - q->buf)))) {
        *nl = '\0';
        if (nl > start && nl[-1] == '\r')
            nl[-1] = '\0';
        if (!strncmp(start, "data:", 5))
            on_event(L, q, start + 5 + (start[5] == ' '));
        start = nl + 1;
    }
    q->len -= (size_t)(start - q->buf);
    memmove(q->buf, start, q->len);
}

static bool append(http_req *q, const char *p, size_t n)
{
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 4096;
        while (cap < q->len + n + 1)
            cap *= 2;
        char *b = realloc(q->buf, cap);
        if (!b)
            return false;
        q->buf = b, q->cap = cap;
    }
    memcpy(q->buf + q->len, p, n);
    q->len += n;
    q->buf[q->len] = '\0';
    return true;
}

typedef struct {
    http_loop *L;
    http_req *q;
} write_ctx;

/* curl's write callback. Returning less than n aborts the transfer. */
static size_t on_bytes(char *p, size_t size, size_t nmemb, void *user)
{
    http_loop *L = ((write_ctx *)user)->L;
    http_req *q = ((write_ctx *)user)->q;
    size_t n = size * nmemb;
    if (!q->status)
        curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &q->status);
    if (q->status != 200) /* keep the error body (its start) for the message */
        return q->len > 2048 || append(q, p, n) ? n : 0;
    if (!append(q, p, n)) {
        snprintf(q->err, sizeof q->err, "out of memory");
        return 0;
    }
    on_lines(L, q);
    return q->err[0] ? 0 : n;
}

static char *request_body(const http_loop *L, int i)
{
    int n_in = L->reqs[i].n_in;
    int32_t *ids = malloc((size_t)n_in * sizeof *ids);
    json_t *prompt = json_array();
    char *s = NULL;
    if (ids && prompt) {
        slm_cost_prompt(L->seed, L->level, i, n_in, SLM_COST_URL_TOKEN_LO, SLM_COST_URL_TOKEN_HI,
                        ids);
        for (int k = 0; k < n_in; k++)
            json_array_append_new(prompt, json_integer(ids[k]));
        json_t *o = json_pack("{s:O, s:i, s:f, s:b, s:b, s:{s:b}}", "prompt", prompt,
                              "max_tokens", L->reqs[i].n_out, "temperature", 0.0, "stream", 1,
                              "ignore_eos", 1, "stream_options", "include_usage", 1);
        s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    }
    json_decref(prompt);
    free(ids);
    return s;
}

/* Starts request i: its body, an easy handle, into the multi handle. */
static int start(http_loop *L, int i, write_ctx *ctx)
{
    http_req *q = &L->q[i];
    q->prompt_tokens = q->completion_tokens = -1;
    q->body = request_body(L, i);
    q->h = curl_easy_init();
    if (!q->body || !q->h)
        return slm_cli_fail(L->cmd, "out of memory");
    *ctx = (write_ctx){L, q};
    curl_easy_setopt(q->h, CURLOPT_URL, L->endpoint);
    curl_easy_setopt(q->h, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(q->h, CURLOPT_HTTPHEADER, L->headers);
    curl_easy_setopt(q->h, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(q->h, CURLOPT_WRITEDATA, ctx);
    curl_easy_setopt(q->h, CURLOPT_PRIVATE, q);
    curl_easy_setopt(q->h, CURLOPT_ERRORBUFFER, q->curl_err);
    curl_easy_setopt(q->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(q->h, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A server that stalls (no byte for 5 minutes) stops the sweep rather
     * than hanging it; a slow but moving one is never cut off. */
    curl_easy_setopt(q->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(q->h, CURLOPT_LOW_SPEED_TIME, 300L);
    q->t0 = slm_cli_now();
    if (curl_multi_add_handle(L->multi, q->h) != CURLM_OK)
        return slm_cli_fail(L->cmd, "%s: curl could not start a request", L->url);
    return 0;
}

/* The message of an error body: an OpenAI-style error's message, or the
 * body's start. */
static void error_body(http_req *q, char *out, size_t cap)
{
    json_t *o = q->buf ? json_loads(q->buf, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    if (!msg) /* llama.cpp's older servers: {"error": "..."}; else raw text */
        msg = json_string_value(json_object_get(o, "error"));
    snprintf(out, cap, "%.300s", msg ? msg : q->buf ? q->buf : "(no body)");
    for (char *c = out; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    json_decref(o);
}

/* A finished transfer: 0 when it was a complete stream, else 1 after an
 * error line. */
static int finished(http_loop *L, http_req *q, int i, CURLcode res)
{
    char why[600];
    curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &q->status);
    if (q->err[0])
        snprintf(why, sizeof why, "%s", q->err);
    else if (q->status && q->status != 200) { /* the status says more than a cut transfer */
        char body[400];
        error_body(q, body, sizeof body);
        snprintf(why, sizeof why, "HTTP status %ld: %s", q->status, body);
    } else if (res != CURLE_OK)
        snprintf(why, sizeof why, "%s", q->curl_err[0] ? q->curl_err : curl_easy_strerror(res));
    else if (!q->text_events)
        snprintf(why, sizeof why, "the stream carried no text (not an OpenAI-style stream?)");
    else if (!q->t_done && !q->finished)
        snprintf(why, sizeof why, "the stream ended before its finish_reason or [DONE]");
    else
        return 0;
    return slm_cli_fail(L->cmd, "%s: level %d, request %d: %s", L->endpoint, L->level, i + 1,
                        why);
}

/* Takes the finished transfers off the multi handle. */
static int reap(http_loop *L, int *in_flight, int *done)
{
    CURLMsg *msg;
    int left, rc = 0;
    while ((msg = curl_multi_info_read(L->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        http_req *q;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        if (!q->t_done)
            q->t_done = slm_cli_now();
        if (!rc)
            rc = finished(L, q, (int)(q - L->q), msg->data.result);
        curl_multi_remove_handle(L->multi, q->h);
        curl_easy_cleanup(q->h);
        q->h = NULL;
        (*in_flight)--, (*done)++;
    }
    return rc;
}

static void progress(const http_loop *L, int done, double t0, bool final)
{
    if (!isatty(2))
        return;
    fprintf(stderr, "\rslm %s: level %d: %d/%d requests, %.1f s%s", L->cmd, L->level, done, L->n,
            slm_cli_now() - t0, final ? "\n" : "");
    fflush(stderr);
}

/* The closed loop: `level` transfers in flight until all n are done, or
 * the first failure (the others are dropped). */
static int closed_loop(http_loop *L, write_ctx *ctx, double *wall_s)
{
    int next = 0, in_flight = 0, done = 0, rc = 0, running;
    double t0 = slm_cli_now(), shown = 0;
    while (!rc && done < L->n) {
        while (!rc && next < L->n && in_flight < L->level)
            if (!(rc = start(L, next, &ctx[next])))
                next++, in_flight++;
        if (!rc && curl_multi_perform(L->multi, &running) != CURLM_OK)
            rc = slm_cli_fail(L->cmd, "%s: curl's multi interface failed", L->url);
        if (!rc)
            rc = reap(L, &in_flight, &done);
        if (!rc && done < L->n)
            curl_multi_poll(L->multi, NULL, 0, 100, NULL);
        if (slm_cli_now() - shown > 0.25) {
            progress(L, done, t0, false);
            shown = slm_cli_now();
        }
    }
    *wall_s = slm_cli_now() - t0;
    progress(L, done, t0, true);
    return rc;
}

/* The level's figures from the streams. */
static int summarize(http_loop *L, double wall_s, slm_cost_level *o)
{
    double *ttft = malloc(sizeof(double) * (size_t)L->n * 3), *tpot = ttft + L->n,
           *e2e = tpot + L->n;
    if (!ttft)
        return slm_cli_fail(L->cmd, "out of memory");
    int n_tpot = 0;
    for (int i = 0; i < L->n; i++) {
        const http_req *q = &L->q[i];
        long out = q->completion_tokens >= 0 ? q->completion_tokens : q->text_events;
        o->in_tokens += (uint64_t)(q->prompt_tokens >= 0 ? q->prompt_tokens : L->reqs[i].n_in);
        o->out_tokens += (uint64_t)out;
        ttft[i] = (q->t_first - q->t0) * 1000;
        e2e[i] = (q->t_done - q->t0) * 1000;
        if (out >= 2)
            tpot[n_tpot++] = (q->t_last - q->t_first) * 1000 / (double)(out - 1);
    }
    slm_cost_level_rates(o, wall_s, ttft, e2e, L->n, tpot, n_tpot);
    free(ttft);
    return 0;
}

static int headers(http_loop *L, const char *api_key)
{
    char auth[1024];
    L->headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h = L->headers;
    h = h ? curl_slist_append(h, "Accept: text/event-stream") : NULL;
    h = h ? curl_slist_append(h, "Expect:") : NULL; /* no 100-continue round trip */
    if (h && api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
        h = curl_slist_append(h, auth);
    }
    return h ? 0 : slm_cli_fail(L->cmd, "out of memory");
}

int slm_cost_run_level_url(const char *cmd, const char *url, const char *api_key,
                           const slm_cost_request *reqs, int n, int level, uint64_t seed,
                           slm_cost_level *out, char *model, size_t model_cap)
{
    memset(out, 0, sizeof *out);
    out->level = level, out->n_requests = n, out->power_w = -1, out->remote = true;
    static bool curl_ready; /* curl_global_init once per process, one thread */
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return slm_cli_fail(cmd, "curl could not initialize");
    curl_ready = true;
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    http_loop L = {.cmd = cmd, .url = url, .reqs = reqs, .n = n, .level = level, .seed = seed};
    snprintf(L.endpoint, sizeof L.endpoint, "%.*s/v1/completions", (int)ul, url);
    L.q = calloc((size_t)n, sizeof *L.q);
    write_ctx *ctx = calloc((size_t)n, sizeof *ctx);
    L.multi = curl_multi_init();
    int rc = !L.q || !ctx || !L.multi ? slm_cli_fail(cmd, "out of memory") : headers(&L, api_key);
    double wall = 0;
    if (!rc)
        rc = closed_loop(&L, ctx, &wall);
    if (!rc)
        rc = summarize(&L, wall, out);
    if (!rc && model)
        snprintf(model, model_cap, "%s", L.model);
    for (int i = 0; L.q && i < n; i++) {
        if (L.q[i].h) {
            curl_multi_remove_handle(L.multi, L.q[i].h);
            curl_easy_cleanup(L.q[i].h);
        }
        free(L.q[i].body);
        free(L.q[i].buf);
    }
    if (L.multi)
        curl_multi_cleanup(L.multi);
    curl_slist_free_all(L.headers);
    free(L.q);
    free(ctx);
    return rc;
}
