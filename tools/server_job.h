/*
 * server_job.h — one generation request of `slm serve` as it passes between
 * two threads: the engine thread, whose on_choice/on_done callbacks append
 * output and the result, and the server's event loop, which takes text out
 * and writes it to the client. A mutex guards the hand-off; the callbacks
 * wake the loop through the job's wake hook, at most once until the loop
 * has taken what is pending (so a fast token stream costs one wake-up per
 * loop turn, not one per token).
 *
 * Lifetime: a job starts with two references, one for the connection and one
 * for the engine (dropped by on_done, or at once when submit fails); whoever
 * drops the last frees it, so neither side can outlive the other's memory.
 */
#ifndef SLM_SERVER_JOB_H
#define SLM_SERVER_JOB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "server_metrics.h"
#include "server_openai.h"
#include "slm.h"

typedef struct slm_srv_job {
    pthread_mutex_t mu;
    int refs;
    /* Called on the engine thread, under mu, when output arrives and no
     * wake-up is pending; the wake-up holds a reference of its own, which
     * the woken side drops with slm_srv_job_woken. NULL (set under mu):
     * nobody is woken, and after that no call is still under way. It must
     * not take mu (it may take its own lock). */
    void (*wake)(void *ctx, struct slm_srv_job *j);
    void *wake_ctx;
    bool wake_pending;
    void *owner;          /* the exchange that answers it; loop thread only */
    struct slm_srv_job *wake_next; /* the loop's list of woken jobs */
    bool done;            /* on_done ran: result is final */
    bool got_token;       /* for time-to-first-token (of any choice) */
    slm_result result;    /* copy; result.error points at errbuf */
    char errbuf[256];
    double t_arrival;     /* seconds, CLOCK_MONOTONIC */
    /* When each choice's text last arrived (0: not yet): time between
     * tokens is per choice, as the choices of one step arrive together. */
    double t_last[SLM_MAX_CHOICES];
    slm_srv_metrics *metrics; /* may be NULL */
    /* The parsed request, owned by the job so that every string the engine
     * was handed outlives the request whichever side finishes last. */
    slm_srv_request rq;
    /* Set by the server once submitted; read-only afterwards. */
    uint64_t id;
    struct slm_srv_job *next, *prev; /* the server's in-flight list */
    /* Per-choice output (n, logprobs) from slm_srv_job_on_choice, not yet
     * taken by the loop; guarded by mu. Set up (rq.n choices) by the
     * server before submit. */
    slm_srv_choices ch;
} slm_srv_job;

double slm_srv_now(void);

/* A job with both references held, or NULL when out of memory. */
slm_srv_job *slm_srv_job_new(slm_srv_metrics *metrics);
/* Drops one reference; the last frees the job. */
void slm_srv_job_release(slm_srv_job *j);

/* The engine callbacks, with the job as user pointer. */
void slm_srv_job_on_done(void *user, const slm_result *r);

/* The engine's per-choice callback (slm_request_params.on_choice): appends
 * the event to j->ch and wakes the loop. */
void slm_srv_job_on_choice(void *user, const slm_choice_event *ev);


/* Moves what on_choice collected onto *to (the exchange's copy, rq.n
 * choices) and returns true when the job is done and nothing is left to
 * take (result is then final). Never blocks. When out of memory the
 * output stays pending. */
bool slm_srv_job_take(slm_srv_job *j, slm_srv_choices *to);

/* The woken side is done with the wake-up: later output wakes it again.
 * Drops the wake-up's reference. */
void slm_srv_job_woken(slm_srv_job *j);

#endif
