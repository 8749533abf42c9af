/*
 * server_gen.c — the generation routes of `slm serve`: a parsed OpenAI
 * request becomes an engine request (server_job.c carries its tokens from
 * the engine thread to the event loop), answered either as one JSON body or
 * as a server-sent event stream. slm_srv_generate runs on a worker thread
 * (parsing and tokenising may take a while); slm_srv_gen_pump and
 * slm_srv_gen_end run on the loop, which frames and writes what they
 * produce. The loop ends a job whose client hung up, which cancels it and
 * frees its KV blocks at the engine's next step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server_http.h"

static void jobs_add(slm_srv *s, slm_srv_job *j)
{
    pthread_mutex_lock(&s->jobs_mu);
    j->prev = NULL;
    j->next = s->jobs;
    if (s->jobs)
        s->jobs->prev = j;
    s->jobs = j;
    pthread_mutex_unlock(&s->jobs_mu);
}

/* The connection is done with the job: cancel it if it still runs, and
 * drop the connection's reference. */
static void jobs_done(slm_srv *s, slm_srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool running = !j->done;
    j->wake = NULL; /* nobody to wake any more (see server_job.c) */
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
    pthread_mutex_unlock(&s->jobs_mu);
    j->owner = NULL;
    slm_srv_job_release(j);
}

/* Output arrives per choice (n, logprobs) through on_choice into j->ch,
 * which slm_srv_generate sets up for rq->n choices before submit. */
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
static int refused(slm_srv *s, slm_srv_exchange *x, const slm_srv_request *rq, slm_status st)
{
    slm_srv_error e;
    const char *msg = slm_last_error();
    if (st == SLM_STATUS_QUEUE_FULL) {
        slm_srv_error_set(&e, 503, "server_error", NULL, "queue_full",
                          "the server is busy (%s); retry shortly", msg);
        return slm_srv_respond_error(s, x, &e, "Retry-After", "1");
    }
    if (st == SLM_STATUS_CANCELLED) {
        slm_srv_error_set(&e, 503, "server_error", NULL, "draining", "%s", msg);
        return slm_srv_respond_error(s, x, &e, "Retry-After", "1");
    }
    if (st == SLM_STATUS_INVALID_ARGUMENT) {
        slm_srv_error_set(&e, 400, "invalid_request_error",
                          slm_srv_engine_error_param(msg, rq->chat),
                          strstr(msg, "context") ? "context_length_exceeded" : "invalid_value",
                          "%s", msg);
        return slm_srv_respond_error(s, x, &e, NULL, NULL);
    }
    slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "%s", msg);
    return slm_srv_respond_error(s, x, &e, NULL, NULL);
}

int slm_srv_generate(slm_srv *s, slm_srv_exchange *x, bool chat, const char *body, size_t len)
{
    slm_srv_error e;
    slm_srv_job *j = slm_srv_job_new(&s->metrics);
    if (!j) {
        slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        return slm_srv_respond_error(s, x, &e, NULL, NULL);
    }
    if (slm_srv_request_parse(body, len, chat, &s->names, &s->sampling_defaults, &j->rq, &e)) {
        slm_srv_job_release(j);
        slm_srv_job_release(j);
        return slm_srv_respond_error(s, x, &e, NULL, NULL);
    }
    if (slm_srv_choices_init(&j->ch, j->rq.n) || slm_srv_choices_init(&x->got, j->rq.n)) {
        slm_srv_job_release(j);
        slm_srv_job_release(j);
        slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        return slm_srv_respond_error(s, x, &e, NULL, NULL);
    }
    slm_request_params p;
    fill_params(s, j, &p);
    j->wake = slm_srv_loop_wake_job;
    j->wake_ctx = s->loop;
    uint64_t id = 0;
    slm_status st = slm_engine_submit(s->engine, &p, &id);
    if (st) {
        int rc = refused(s, x, &j->rq, st);
        slm_srv_job_release(j); /* the engine's reference: it never got the job */
        slm_srv_job_release(j);
        return rc;
    }
    j->id = id;
    jobs_add(s, j);
    x->job = j;
    x->stream = j->rq.stream;
    snprintf(x->id, sizeof x->id, "%s-%llu", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&s->seq, 1));
    x->vocab = (slm_srv_vocab){model_piece, s->model};
    x->reply = (slm_srv_reply){&j->rq, x->id, s->model_id, (long long)time(NULL), &x->vocab};
    return 0;
}

static void event(slm_srv_buf *out, char *json)
{
    if (json)
        slm_srv_sse_event(out, json);
    free(json);
}

static char *failure_json(const slm_result *r)
{
    slm_srv_error e;
    slm_srv_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                      r->error && r->error[0] ? r->error : slm_status_name(r->status));
    return slm_srv_error_json(&e);
}

static void final_events(slm_srv_exchange *x, slm_srv_buf *out)
{
    const slm_result *r = &x->job->result;
    if (r->finish == SLM_FINISH_ERROR) {
        event(out, failure_json(r));
    } else { /* each choice's finish chunk went out with its last text */
        if (x->reply.rq->include_usage)
            event(out, slm_srv_usage_chunk_json(&x->reply, r->prompt_tokens,
                                                r->completion_tokens));
    }
    slm_srv_sse_done(out);
}

bool slm_srv_gen_pump(slm_srv *s, slm_srv_exchange *x, slm_srv_buf *out)
{
    if (x->finished || !x->job)
        return true;
    bool done = slm_srv_job_take(x->job, &x->got);
    if (x->stream) {
        if (!x->started) {
            x->started = true;
            x->status = 200;
            slm_srv_metrics_http(&s->metrics, 200);
            /* the assistant role comes first (per choice), as OpenAI's does */
            slm_srv_choice_events(&x->reply, &x->got, true, out);
        }
        slm_srv_choice_events(&x->reply, &x->got, false, out);
        if (done)
            final_events(x, out);
    } else if (done) {
        /* result is final once take saw done under the job's lock */
        const slm_result *r = &x->job->result;
        char *body = r->finish == SLM_FINISH_ERROR
                         ? failure_json(r)
                         : slm_srv_choices_response_json(&x->reply, &x->got, r->prompt_tokens,
                                                         r->completion_tokens);
        x->status = r->finish == SLM_FINISH_ERROR || !body ? 500 : 200;
        slm_srv_metrics_http(&s->metrics, x->status);
        if (body)
            slm_srv_buf_append(out, body, strlen(body));
        free(body);
    }
    x->finished = done;
    return done;
}

void slm_srv_gen_end(slm_srv *s, slm_srv_exchange *x)
{
    if (x->job)
        jobs_done(s, x->job);
    x->job = NULL;
    slm_srv_choices_free(&x->got);
}
