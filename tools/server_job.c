/*
 * server_job.c — the per-request hand-off between the engine thread and the
 * server's event loop (see server_job.h). The engine side only appends
 * under the lock and wakes the loop; all formatting and socket work happens
 * on the loop, so the callbacks return within microseconds.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server_job.h"

double slm_srv_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

slm_srv_job *slm_srv_job_new(slm_srv_metrics *metrics)
{
    slm_srv_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    if (pthread_mutex_init(&j->mu, NULL)) {
        free(j);
        return NULL;
    }
    j->refs = 2;
    j->metrics = metrics;
    j->t_arrival = slm_srv_now();
    return j;
}

void slm_srv_job_release(slm_srv_job *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0)
        return;
    slm_srv_choices_free(&j->ch);
    slm_srv_request_free(&j->rq);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Under j->mu: whether to wake the loop now (taking the wake-up's
 * reference). */
static bool arm_wake(slm_srv_job *j)
{
    if (!j->wake || j->wake_pending)
        return false;
    j->wake_pending = true;
    j->refs++;
    return true;
}

/* Time to first token and between tokens, for text that arrived at t
 * (prev: the same choice's last text, 0 for its first). */
static void observe_text(slm_srv_job *j, double t, bool first, double prev, size_t len)
{
    if (!j->metrics || !len)
        return;
    if (first)
        slm_srv_histogram_observe(&j->metrics->ttft, t - j->t_arrival);
    else if (prev > 0) /* another choice's first text is no gap between tokens */
        slm_srv_histogram_observe(&j->metrics->itl, t - prev);
}

/* Under j->mu, after output of `choice` arrived at t: the latency
 * bookkeeping and the loop's wake-up. */
static void arrived(slm_srv_job *j, int choice, double t, size_t len, bool *first,
                    double *prev)
{
    bool known = choice >= 0 && choice < SLM_MAX_CHOICES;
    *first = !j->got_token && len;
    *prev = known ? j->t_last[choice] : 0;
    if (len) {
        j->got_token = true;
        if (known)
            j->t_last[choice] = t;
    }
    /* NOTE: woken under the lock, so that clearing j->wake under it
     * (slm_srv_gen_end) guarantees no wake-up is still on its way. */
    if (arm_wake(j))
        j->wake(j->wake_ctx, j);
}

void slm_srv_job_on_choice(void *user, const slm_choice_event *ev)
{
    slm_srv_job *j = user;
    double t = slm_srv_now(), prev;
    bool first;
    pthread_mutex_lock(&j->mu);
    /* NOTE: out of memory here drops output rather than stalling the
     * engine; the client then sees a shorter answer, never a crash. */
    (void)slm_srv_choices_add(&j->ch, ev);
    arrived(j, ev->choice, t, ev->len, &first, &prev);
    pthread_mutex_unlock(&j->mu);
    observe_text(j, t, first, prev, ev->len);
}

void slm_srv_job_on_done(void *user, const slm_result *r)
{
    slm_srv_job *j = user;
    pthread_mutex_lock(&j->mu);
    j->result = *r;
    j->result.size = sizeof j->result;
    const char *msg = r->error ? r->error : "";
    strncpy(j->errbuf, msg, sizeof j->errbuf - 1);
    j->result.error = j->errbuf;
    j->done = true;
    /* NOTE: woken under the lock, so that clearing j->wake under it
     * (slm_srv_gen_end) guarantees no wake-up is still on its way. */
    if (arm_wake(j))
        j->wake(j->wake_ctx, j);
    pthread_mutex_unlock(&j->mu);
    if (j->metrics)
        slm_srv_metrics_finished(j->metrics, r->finish);
    slm_srv_job_release(j);
}

bool slm_srv_job_take(slm_srv_job *j, slm_srv_choices *to)
{
    pthread_mutex_lock(&j->mu);
    bool moved = slm_srv_choices_move(&j->ch, to) == 0;
    bool done = j->done && moved;
    pthread_mutex_unlock(&j->mu);
    return done;
}

void slm_srv_job_woken(slm_srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    j->wake_pending = false;
    pthread_mutex_unlock(&j->mu);
    slm_srv_job_release(j);
}
