/*
 * server_job.h — one generation request of `slm serve` as it passes between
 * two threads: the engine thread, whose on_token/on_done callbacks append
 * text and the result, and the connection thread, which takes text out and
 * writes it to the client. A mutex and condition variable guard the hand-off.
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
    pthread_cond_t cv;
    int refs;
    slm_srv_buf text;     /* output not yet taken by the connection */
    bool done;            /* on_done ran: result is final */
    bool got_token;       /* for time-to-first-token */
    slm_result result;    /* copy; result.error points at errbuf */
    char errbuf[256];
    double t_arrival, t_last; /* seconds, CLOCK_MONOTONIC */
    slm_srv_metrics *metrics; /* may be NULL */
    /* The parsed request, owned by the job so that every string the engine
     * was handed outlives the request whichever side finishes last. */
    slm_srv_request rq;
    /* Set by the server once submitted; read-only afterwards. */
    uint64_t id;
    struct slm_srv_job *next, *prev; /* the server's in-flight list */
    /* Per-choice output (n, logprobs) from slm_srv_job_on_choice, not yet
     * taken by the connection; guarded by mu. Set up (rq.n choices) by the
     * server before submit. */
    slm_srv_choices ch;
} slm_srv_job;

double slm_srv_now(void);

/* A job with both references held, or NULL when out of memory. */
slm_srv_job *slm_srv_job_new(slm_srv_metrics *metrics);
/* Drops one reference; the last frees the job. */
void slm_srv_job_release(slm_srv_job *j);

/* The engine callbacks, with the job as user pointer. */
void slm_srv_job_on_token(void *user, const char *text, size_t len);
void slm_srv_job_on_done(void *user, const slm_result *r);

/* The engine's per-choice callback (slm_request_params.on_choice): appends
 * the event to j->ch and wakes the connection. */
void slm_srv_job_on_choice(void *user, const slm_choice_event *ev);

/* Moves what on_choice collected onto *to (the connection's copy, rq.n
 * choices). 0, or -1 when out of memory (nothing lost: retry later). */
int slm_srv_job_take_choices(slm_srv_job *j, slm_srv_choices *to);

typedef enum slm_srv_wait {
    SLM_SRV_WAIT_TEXT = 0, /* *out holds new text (maybe with done also set) */
    SLM_SRV_WAIT_DONE = 1, /* finished, no new text */
    SLM_SRV_WAIT_GONE = 2  /* the client hung up */
} slm_srv_wait;

/* Blocks until the job has new text or choice output, or is done, then moves the pending text
 * into *out (appending) and sets *done. While it waits it checks every
 * 50 ms whether the socket fd (-1: do not check) was closed by the peer, and
 * returns SLM_SRV_WAIT_GONE if so. */
slm_srv_wait slm_srv_job_wait(slm_srv_job *j, int fd, slm_srv_buf *out, bool *done);

/* True when the peer of a connected socket has closed it or it failed. */
bool slm_srv_peer_gone(int fd);

#endif
