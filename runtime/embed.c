/*
 * embed.c — slm_engine_embed: the blocking, many-input form of
 * slm_engine_submit_embed, for callers on their own thread (the slm embed
 * command, a server's worker answering /v1/embeddings).
 *
 * It keeps as many of the inputs queued in the engine as the queue takes,
 * so they are prefilled together in the same steps, and waits on a
 * condition variable that the requests' on_done (engine thread) signals.
 * It is written against the public API only: the engine knows nothing of
 * it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "embed.h"
#include "status.h"

typedef struct batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;            /* submitted, on_done not yet run */
    int prompt_tokens;
    int failed;             /* index of the first input that failed, or -1 */
    slm_status st;
    char msg[512];
} batch;

typedef struct slot {
    batch *b;
    int index;
} slot;

static void on_done(void *user, const slm_result *res)
{
    slot *s = user;
    batch *b = s->b;
    pthread_mutex_lock(&b->mu);
    b->prompt_tokens += res->prompt_tokens;
    if (res->finish != SLM_FINISH_STOP && b->failed < 0) {
        b->failed = s->index;
        b->st = res->status ? res->status : SLM_STATUS_CANCELLED;
        snprintf(b->msg, sizeof b->msg, "%s", res->error);
    }
    b->pending--;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Records a submit failure of input i (the message is the thread's last). */
static void note_failure(batch *b, int i, slm_status st)
{
    pthread_mutex_lock(&b->mu);
    if (b->failed < 0) {
        b->failed = i;
        b->st = st;
        snprintf(b->msg, sizeof b->msg, "%s", slm_last_error());
    }
    pthread_mutex_unlock(&b->mu);
}

/* Submits input i; on a full queue waits for one of ours to finish and
 * tries again (a full queue with none of ours in it is the caller's to
 * handle: QUEUE_FULL). Returns the submit's status. */
static slm_status submit_one(slm_engine *e, batch *b, slot *sl, const slm_embed_params *in,
                             float *out, uint64_t *id)
{
    slm_embed_params p = *in;
    p.size = sizeof p;
    p.out = out;
    p.on_done = on_done;
    p.user = sl;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        b->pending++;
        pthread_mutex_unlock(&b->mu);
        slm_status st = slm_engine_submit_embed(e, &p, id);
        pthread_mutex_lock(&b->mu);
        if (st)
            b->pending--;
        bool retry = st == SLM_STATUS_QUEUE_FULL && b->pending > 0 && b->failed < 0;
        if (retry) {
            int before = b->pending;
            while (b->pending == before)
                pthread_cond_wait(&b->cv, &b->mu);
        }
        pthread_mutex_unlock(&b->mu);
        if (!retry)
            return st;
    }
}

slm_status slm_engine_embed(slm_engine *e, const slm_embed_params *inputs, int n, float *out,
                            int *prompt_tokens)
{
    if (!e || (n > 0 && (!inputs || !out)) || n < 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_engine_embed: NULL argument or n < 0");
    for (int i = 0; i < n; i++)
        if (inputs[i].size < sizeof *inputs)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "slm_engine_embed: input %d: size %zu is smaller than this "
                             "library's %zu (use slm_embed_params_default)", i, inputs[i].size,
                             sizeof *inputs);
    size_t d = (size_t)slm_engine_n_embd(e);
    slot *slots = calloc((size_t)(n > 0 ? n : 1), sizeof *slots);
    uint64_t *ids = calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
    if (!slots || !ids) {
        free(slots);
        free(ids);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "slm_engine_embed: out of memory");
    }
    batch b = {.failed = -1};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    int submitted = 0;
    slm_status st;
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&b.mu);
        bool failed = b.failed >= 0;
        pthread_mutex_unlock(&b.mu);
        if (failed)
            break;
        slots[i] = (slot){&b, i};
        st = submit_one(e, &b, &slots[i], &inputs[i], out + (size_t)i * d, &ids[i]);
        if (st) {
            note_failure(&b, i, st);
            break;
        }
        submitted++;
    }
    pthread_mutex_lock(&b.mu);
    bool cancel = b.failed >= 0;
    pthread_mutex_unlock(&b.mu);
    if (cancel) /* NOT_FOUND for the ones already done: nothing to undo */
        for (int i = 0; i < submitted; i++)
            slm_engine_cancel(e, ids[i]);
    pthread_mutex_lock(&b.mu);
    while (b.pending > 0)
        pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    st = SLM_OK;
    if (b.failed >= 0)
        st = slm_error(b.st, "input %d: %s", b.failed, b.msg);
    else if (prompt_tokens)
        *prompt_tokens = b.prompt_tokens;
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    free(slots);
    free(ids);
    return st;
}
