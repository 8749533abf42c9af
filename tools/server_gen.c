/*
 * server_gen.c — the generation routes of `slm serve`: a parsed OpenAI
 * request becomes an engine request (server_job.c carries its tokens from
 * the engine thread to this connection's thread), answered either as one
 * JSON body or as a server-sent event stream. A client that hangs up has its
 * request cancelled, which frees its KV blocks at the engine's next step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "server_http.h"

static void jobs_add(slm_srv *s, slm_srv_job *j)
{
    pthread_mutex_lock(&s->jobs_mu);
    j->prev = NULL;
    j->next = s->jobs;
    if (s->jobs)
        s->jobs->prev = j;
    s->jobs = j;
    atomic_fetch_add(&s->in_flight, 1);
    pthread_mutex_unlock(&s->jobs_mu);
}

/* The connection is done with the job: cancel it if it still runs, and
 * drop the connection's reference. */
static void jobs_done(slm_srv *s, slm_srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool running = !j->done;
    pthread_mutex_unlock(&j->mu);
    if (running)
        slm_engine_cancel(s->engine, j->id);
    pthread_mutex_lock(&s->jobs_mu);
    if (j->prev)
        j->prev->next = j->next;
    else if (s->jobs == j)
        s->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    atomic_fetch_sub(&s->in_flight, 1);
    pthread_mutex_unlock(&s->jobs_mu);
    slm_srv_job_release(j);
}

/* issue 15: output arrives per choice (n, logprobs) through on_choice
 * into j->ch, which the server sets up for rq->n choices before submit. */
static void fill_choice_params(const slm_srv_request *rq, slm_request_params *p)
{
    p->n = rq->n;
    p->logprobs = rq->logprobs;
    p->top_logprobs = rq->top_logprobs;
    p->on_token = NULL;
    p->on_choice = slm_srv_job_on_choice;
}

/* The bytes of a token, for logprobs (slm_srv_vocab over the model). */
static const char *model_piece(void *ctx, int32_t token, size_t *len)
{
    const char *p = NULL;
    return slm_model_token_piece(ctx, token, &p, len) == SLM_OK ? p : NULL;
}

static void fill_params(slm_srv *s, slm_srv_job *j, slm_request_params *p)
{
    slm_srv_request *rq = &j->rq;
    slm_request_params_default(p);
    if (rq->chat) {
        p->messages = rq->messages;
        p->n_messages = rq->n_messages;
    } else if (rq->tokens) {
        p->tokens = rq->tokens;
        p->n_tokens = rq->n_tokens;
    } else {
        p->prompt = rq->prompt;
    }
    if (!rq->has_seed)
        rq->sampling.seed = atomic_fetch_add(&s->seq, 1) + 1;
    p->sampling = &rq->sampling;
    /* No max_tokens: as much as the context leaves (the engine caps it). */
    p->max_tokens = rq->max_tokens > 0 ? rq->max_tokens : s->n_ctx;
    p->stop = rq->stop;
    p->n_stop = rq->n_stop;
    p->ignore_eos = rq->ignore_eos;
    p->on_done = slm_srv_job_on_done;
    p->user = j;
    fill_choice_params(rq, p);
}

/* Maps a refused submission to its HTTP answer. */
static int refused(slm_srv *s, struct MHD_Connection *c, const slm_srv_request *rq,
                   slm_status st)
{
    slm_srv_error e;
    const char *msg = slm_last_error();
    if (st == SLM_STATUS_QUEUE_FULL) {
        slm_srv_error_set(&e, 503, "server_error", NULL, "queue_full",
                          "the server is busy (%s); retry shortly", msg);
        return slm_srv_respond_error(s, c, &e, "Retry-After", "1");
    }
    if (st == SLM_STATUS_CANCELLED) {
        slm_srv_error_set(&e, 503, "server_error", NULL, "draining", "%s", msg);
        return slm_srv_respond_error(s, c, &e, "Retry-After", "1");
    }
    if (st == SLM_STATUS_INVALID_ARGUMENT) {
        slm_srv_error_set(&e, 400, "invalid_request_error", slm_srv_engine_error_param(msg, rq->chat),
                          strstr(msg, "context") ? "context_length_exceeded" : "invalid_value",
                          "%s", msg);
        return slm_srv_respond_error(s, c, &e, NULL, NULL);
    }
    slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "%s", msg);
    return slm_srv_respond_error(s, c, &e, NULL, NULL);
}

static int fd_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return i ? i->connect_fd : -1;
}

static int engine_error(slm_srv *s, struct MHD_Connection *c, const slm_result *r)
{
    slm_srv_error e;
    slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                      r->error && r->error[0] ? r->error : slm_status_name(r->status));
    return slm_srv_respond_error(s, c, &e, NULL, NULL);
}

/* ---- one JSON answer --------------------------------------------------- */

static int answer_whole(slm_srv *s, struct MHD_Connection *c, slm_srv_job *j,
                        const slm_srv_reply *reply)
{
    slm_srv_buf text = {0};
    slm_srv_choices got;
    int fd = fd_of(c);
    if (slm_srv_choices_init(&got, j->rq.n)) {
        jobs_done(s, j);
        return MHD_NO;
    }
    for (;;) {
        bool done = false;
        if (slm_srv_job_wait(j, fd, &text, &done) == SLM_SRV_WAIT_GONE) {
            slm_srv_buf_free(&text);
            slm_srv_choices_free(&got);
            jobs_done(s, j);
            return MHD_NO; /* nobody to answer */
        }
        (void)slm_srv_job_take_choices(j, &got); /* out of memory: retried next time */
        if (done && slm_srv_job_take_choices(j, &got) == 0)
            break;
    }
    slm_result r = j->result; /* final once done was seen under the job's lock */
    int rc;
    if (r.finish == SLM_FINISH_ERROR) {
        rc = engine_error(s, c, &r);
    } else {
        char *body = slm_srv_choices_response_json(reply, &got, r.prompt_tokens,
                                                   r.completion_tokens);
        rc = body ? slm_srv_respond(s, c, 200, "application/json", body, NULL, NULL) : MHD_NO;
    }
    slm_srv_buf_free(&text);
    slm_srv_choices_free(&got);
    jobs_done(s, j);
    return rc;
}

/* ---- a server-sent event stream ---------------------------------------- */

typedef struct gen_stream {
    slm_srv *s;
    slm_srv_job *job;
    int fd;
    slm_srv_reply reply;
    char id[64];
    slm_srv_buf text; /* taken from the job, not yet framed */
    slm_srv_buf out;  /* framed events not yet sent */
    size_t out_off;
    bool started, finished;
    slm_srv_choices got; /* taken from the job, not yet framed */
    slm_srv_vocab vocab; /* reply.vocab points here: the stream outlives the handler */
} gen_stream;

static void event(gen_stream *g, char *json)
{
    if (json)
        slm_srv_sse_event(&g->out, json);
    free(json);
}

static void final_events(gen_stream *g)
{
    const slm_result *r = &g->job->result;
    if (r->finish == SLM_FINISH_ERROR) {
        slm_srv_error e;
        slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                          r->error && r->error[0] ? r->error : slm_status_name(r->status));
        event(g, slm_srv_error_json(&e));
    } else { /* each choice's finish chunk went out with its last text */
        if (g->reply.rq->include_usage)
            event(g, slm_srv_usage_chunk_json(&g->reply, r->prompt_tokens,
                                              r->completion_tokens));
    }
    slm_srv_sse_done(&g->out);
    g->finished = true;
}

/* Fills out with the next events; false when the client is gone. */
static bool next_events(gen_stream *g)
{
    if (!g->started) {
        g->started = true;
        /* The assistant role comes first, as OpenAI's does (per choice). */
        slm_srv_choice_events(&g->reply, &g->got, true, &g->out);
        return true;
    }
    bool done = false;
    if (slm_srv_job_wait(g->job, g->fd, &g->text, &done) == SLM_SRV_WAIT_GONE)
        return false;
    int took = slm_srv_job_take_choices(g->job, &g->got);
    slm_srv_choice_events(&g->reply, &g->got, false, &g->out);
    if (done && took == 0)
        final_events(g);
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    gen_stream *g = cls;
    while (g->out_off == g->out.len) {
        g->out_off = g->out.len = 0;
        if (g->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (slm_srv_peer_gone(g->fd) || !next_events(g))
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the free callback cancels */
    }
    size_t n = g->out.len - g->out_off < max ? g->out.len - g->out_off : max;
    memcpy(buf, g->out.data + g->out_off, n);
    g->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    gen_stream *g = cls;
    jobs_done(g->s, g->job);
    slm_srv_buf_free(&g->text);
    slm_srv_buf_free(&g->out);
    slm_srv_choices_free(&g->got);
    free(g);
}

static int answer_stream(slm_srv *s, struct MHD_Connection *c, slm_srv_job *j,
                         const slm_srv_reply *reply)
{
    gen_stream *g = calloc(1, sizeof *g);
    if (!g) {
        jobs_done(s, j);
        return MHD_NO;
    }
    g->s = s;
    g->job = j;
    g->fd = fd_of(c);
    if (slm_srv_choices_init(&g->got, j->rq.n)) {
        free(g);
        jobs_done(s, j);
        return MHD_NO;
    }
    g->reply = *reply;
    snprintf(g->id, sizeof g->id, "%s", reply->id);
    g->reply.id = g->id;
    g->vocab = *reply->vocab;
    g->reply.vocab = &g->vocab;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, g, stream_free);
    if (!r) {
        stream_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    slm_srv_metrics_http(&s->metrics, 200);
    return ok;
}

int slm_srv_generate(slm_srv *s, struct MHD_Connection *c, bool chat, const char *body,
                     size_t len)
{
    slm_srv_job *j = slm_srv_job_new(&s->metrics);
    if (!j)
        return MHD_NO;
    slm_srv_error e;
    if (slm_srv_request_parse(body, len, chat, &s->names, &s->sampling_defaults, &j->rq, &e)) {
        slm_srv_job_release(j);
        slm_srv_job_release(j);
        return slm_srv_respond_error(s, c, &e, NULL, NULL);
    }
    if (slm_srv_choices_init(&j->ch, j->rq.n)) {
        slm_srv_job_release(j);
        slm_srv_job_release(j);
        slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        return slm_srv_respond_error(s, c, &e, NULL, NULL);
    }
    slm_request_params p;
    fill_params(s, j, &p);
    uint64_t id = 0;
    slm_status st = slm_engine_submit(s->engine, &p, &id);
    if (st) {
        int rc = refused(s, c, &j->rq, st);
        slm_srv_job_release(j); /* the engine's reference: it never got the job */
        slm_srv_job_release(j);
        return rc;
    }
    j->id = id;
    jobs_add(s, j);
    char rid[64];
    snprintf(rid, sizeof rid, "%s-%llu", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&s->seq, 1));
    slm_srv_vocab vocab = {model_piece, s->model};
    slm_srv_reply reply = {&j->rq, rid, s->model_id, (long long)time(NULL), &vocab};
    return j->rq.stream ? answer_stream(s, c, j, &reply) : answer_whole(s, c, j, &reply);
}
