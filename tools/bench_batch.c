/*
 * bench_batch.c — the batched half of `slm bench`: N sequences decoded
 * together through the public engine of slm.h (nothing past it), timed the
 * way llama-batched-bench times its S_PP and S_TG.
 *
 * One run: N requests, each of P random prompt tokens (drawn afresh for
 * every sequence and run, so the prefix cache has nothing to reuse),
 * max_tokens G, ignore_eos, greedy sampling. For the two phases to be
 * clean — every prompt prefilled in one step (step_tokens = N × P), then
 * G − 1 steps that each decode one token of all N, every sequence ending in
 * the same step — the N requests must reach the scheduler together. But
 * slm_engine_submit takes one request at a time and the engine thread
 * admits whatever has arrived when it wakes, so a gate holds it: a
 * one-token request whose on_done blocks the engine thread until all N are
 * queued. NOTE: on_done "must return quickly"; the gate breaks that on
 * purpose, for the microseconds N submissions take, outside the timed span.
 *
 * The times are the requests' own (slm_result, on the engine's clock),
 * measured from the one step that scheduled them all (queue_ms):
 *   prefill_s = max over sequences of (ttft_ms − queue_ms)
 *             — first step's start until the last first token is sampled;
 *   decode_s  = max over sequences of (total_ms − queue_ms) − prefill_s
 *             — from there until the last sequence is done.
 * The engine's step counter confirms the lockstep (gate + prefill + G − 1
 * decode steps); a run that was not in lockstep, stopped early or hit the
 * prefix cache is an error, never a number.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* What the engine thread and the caller share during one run. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate_held, gate_open; /* guarded by mu */
    int left;                  /* sequences not yet done; guarded by mu */
} batch_sync;

/* One sequence's request and, once done, its result. */
typedef struct {
    batch_sync *sync;
    slm_result res;
    char error[256];
} batch_seq;

struct slm_cli_batch {
    const char *cmd;
    slm_engine *e;
    int n_seq, n_prompt, n_gen, n_vocab;
    int32_t *tokens; /* (n_seq, n_prompt) */
    batch_seq *seqs; /* [n_seq] */
    batch_sync sync;
    slm_sampling greedy;
};

static void on_gate(void *user, const slm_result *r)
{
    (void)r;
    batch_sync *s = user;
    pthread_mutex_lock(&s->mu);
    s->gate_held = true;
    pthread_cond_broadcast(&s->cv);
    while (!s->gate_open)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void on_seq_done(void *user, const slm_result *r)
{
    batch_seq *q = user;
    slm_cli_keep_result(&q->res, q->error, sizeof q->error, r);
    pthread_mutex_lock(&q->sync->mu);
    if (--q->sync->left == 0)
        pthread_cond_broadcast(&q->sync->cv);
    pthread_mutex_unlock(&q->sync->mu);
}

/* The pool must hold every sequence whole: a preemption would recompute a
 * prompt in the middle of the decode phase and time that instead. */
static int check_pool(const slm_cli_batch *b, int block_size)
{
    slm_engine_stats es = {.size = sizeof es};
    if (slm_engine_get_stats(b->e, &es))
        return slm_cli_fail(b->cmd, "%s", slm_last_error());
    int per_seq = (b->n_prompt + b->n_gen + block_size - 1) / block_size;
    if ((int64_t)es.kv_blocks_total >= (int64_t)per_seq * b->n_seq)
        return 0;
    char kv[256];
    slm_cli_describe_kv(&es, kv, sizeof kv);
    return slm_cli_fail(b->cmd, "--batch %d: %d sequences of %d + %d tokens need %lld KV blocks "
                        "of %d tokens, more than the engine could take (%s); lower the count, "
                        "-p or -n", b->n_seq, b->n_seq, b->n_prompt, b->n_gen,
                        (long long)per_seq * b->n_seq, block_size, kv);
}

void slm_cli_batch_free(slm_cli_batch *b)
{
    if (!b)
        return;
    slm_engine_close(b->e, 0);
    pthread_cond_destroy(&b->sync.cv);
    pthread_mutex_destroy(&b->sync.mu);
    free(b->tokens);
    free(b->seqs);
    free(b);
}

int slm_cli_batch_open(const char *cmd, slm_model *m, int n_seq, int n_prompt, int n_gen,
                       slm_cli_batch **out)
{
    *out = NULL;
    slm_model_info info = {.size = sizeof info};
    if (slm_model_get_info(m, &info))
        return slm_cli_fail(cmd, "%s", slm_last_error());
    slm_cli_batch *b = calloc(1, sizeof *b);
    if (!b)
        return slm_cli_fail(cmd, "out of memory");
    pthread_mutex_init(&b->sync.mu, NULL);
    pthread_cond_init(&b->sync.cv, NULL);
    b->cmd = cmd, b->n_seq = n_seq, b->n_prompt = n_prompt, b->n_gen = n_gen;
    b->n_vocab = info.n_vocab;
    slm_sampling_default(&b->greedy);
    b->greedy.temperature = 0;
    b->tokens = malloc((size_t)n_seq * (size_t)n_prompt * sizeof *b->tokens);
    b->seqs = calloc((size_t)n_seq, sizeof *b->seqs);
    if (!b->tokens || !b->seqs) {
        slm_cli_batch_free(b);
        return slm_cli_fail(cmd, "out of memory");
    }
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = n_prompt + n_gen;
    ep.max_running = n_seq;
    ep.max_waiting = n_seq + 1;
    ep.step_tokens = n_seq * n_prompt; /* every prompt in one step */
    if (slm_engine_open(m, &ep, &b->e)) {
        int rc = slm_cli_fail(cmd, "--batch %d with -p %d: %s", n_seq, n_prompt, slm_last_error());
        slm_cli_batch_free(b);
        return rc;
    }
    if (check_pool(b, ep.block_size)) {
        slm_cli_batch_free(b);
        return 1;
    }
    *out = b;
    return 0;
}

/* Submits the one-token gate and returns once its on_done holds the engine
 * thread. */
static int hold_gate(slm_cli_batch *b)
{
    b->sync.gate_held = b->sync.gate_open = false;
    int32_t tok = rand() % b->n_vocab;
    slm_request_params rp;
    slm_request_params_default(&rp);
    rp.tokens = &tok;
    rp.n_tokens = 1;
    rp.max_tokens = 1;
    rp.sampling = &b->greedy;
    rp.on_done = on_gate;
    rp.user = &b->sync;
    if (slm_engine_submit(b->e, &rp, NULL))
        return slm_cli_fail(b->cmd, "%s", slm_last_error());
    pthread_mutex_lock(&b->sync.mu);
    while (!b->sync.gate_held)
        pthread_cond_wait(&b->sync.cv, &b->sync.mu);
    pthread_mutex_unlock(&b->sync.mu);
    return 0;
}

/* Queues the N sequences behind the gate, opens it and waits for all of
 * them. On a refused submission the ones queued are cancelled and waited
 * for, so nothing outlives the run. */
static int submit_all(slm_cli_batch *b)
{
    uint64_t *ids = calloc((size_t)b->n_seq, sizeof *ids);
    int n = 0, rc = 0;
    b->sync.left = b->n_seq;
    for (; ids && n < b->n_seq; n++) {
        batch_seq *q = &b->seqs[n];
        memset(q, 0, sizeof *q);
        q->sync = &b->sync;
        slm_request_params rp;
        slm_request_params_default(&rp);
        rp.tokens = b->tokens + (size_t)n * (size_t)b->n_prompt;
        rp.n_tokens = b->n_prompt;
        rp.max_tokens = b->n_gen;
        rp.ignore_eos = 1;
        rp.sampling = &b->greedy;
        rp.on_done = on_seq_done;
        rp.user = q;
        if (slm_engine_submit(b->e, &rp, &ids[n])) {
            rc = slm_cli_fail(b->cmd, "sequence %d of %d: %s", n + 1, b->n_seq, slm_last_error());
            break;
        }
    }
    if (!ids)
        rc = slm_cli_fail(b->cmd, "out of memory");
    pthread_mutex_lock(&b->sync.mu);
    b->sync.left -= b->n_seq - n; /* never submitted */
    b->sync.gate_open = true;
    pthread_cond_broadcast(&b->sync.cv);
    pthread_mutex_unlock(&b->sync.mu);
    for (int i = 0; rc && i < n; i++)
        slm_engine_cancel(b->e, ids[i]);
    pthread_mutex_lock(&b->sync.mu);
    while (b->sync.left > 0)
        pthread_cond_wait(&b->sync.cv, &b->sync.mu);
    pthread_mutex_unlock(&b->sync.mu);
    free(ids);
    return rc;
}

/* Every sequence produced its G tokens, none from the prefix cache, and the
 * engine ran exactly gate + prefill + G − 1 decode steps. */
static int check_run(const slm_cli_batch *b, uint64_t steps)
{
    for (int i = 0; i < b->n_seq; i++) {
        const slm_result *r = &b->seqs[i].res;
        if (r->finish == SLM_FINISH_ERROR || r->finish == SLM_FINISH_CANCELLED)
            return slm_cli_fail(b->cmd, "sequence %d: %s", i + 1,
                                r->error[0] ? r->error : slm_status_name(r->status));
        if (r->completion_tokens != b->n_gen)
            return slm_cli_fail(b->cmd, "sequence %d generated %d tokens, not %d", i + 1,
                                r->completion_tokens, b->n_gen);
        if (r->cached_tokens)
            return slm_cli_fail(b->cmd, "sequence %d reused %d prompt tokens from the prefix "
                                "cache", i + 1, r->cached_tokens);
    }
    if (steps != (uint64_t)b->n_gen + 1)
        return slm_cli_fail(b->cmd, "the engine ran %llu steps for a batch of %d where the "
                            "lockstep takes %d: the phases were not clean",
                            (unsigned long long)steps, b->n_seq, b->n_gen + 1);
    return 0;
}

int slm_cli_batch_run(slm_cli_batch *b, slm_cli_batch_times *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < (size_t)b->n_seq * (size_t)b->n_prompt; i++)
        b->tokens[i] = rand() % b->n_vocab;
    slm_engine_stats before, after;
    if (slm_cli_wait_idle(b->cmd, b->e, &before) || hold_gate(b) || submit_all(b) ||
        slm_cli_wait_idle(b->cmd, b->e, &after) ||
        check_run(b, after.steps - before.steps))
        return 1;
    double first = 0, done = 0;
    for (int i = 0; i < b->n_seq; i++) {
        const slm_result *r = &b->seqs[i].res;
        if (r->ttft_ms - r->queue_ms > first)
            first = r->ttft_ms - r->queue_ms;
        if (r->total_ms - r->queue_ms > done)
            done = r->total_ms - r->queue_ms;
        t->generated += r->completion_tokens;
    }
    t->prefill_s = first / 1e3;
    t->decode_s = (done - first) / 1e3;
    if (t->prefill_s <= 0 || t->decode_s <= 0)
        return slm_cli_fail(b->cmd, "the engine reported no time for the batch of %d", b->n_seq);
    return 0;
}
