/*
 * server_job.c — the per-request hand-off between the engine thread and a
 * connection thread (see server_job.h). The engine side only appends under
 * the lock and signals; all formatting and socket work happens on the
 * connection side, so the callbacks return within microseconds.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&j->mu, NULL)) {
        free(j);
        return NULL;
    }
    if (pthread_cond_init(&j->cv, &ca)) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
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
    slm_srv_buf_free(&j->text);
    slm_srv_choices_free(&j->ch);
    slm_srv_request_free(&j->rq);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void slm_srv_job_on_token(void *user, const char *text, size_t len)
{
    slm_srv_job *j = user;
    double t = slm_srv_now();
    pthread_mutex_lock(&j->mu);
    /* NOTE: out of memory here drops text rather than stalling the engine;
     * the client then sees a shorter answer, never a crash. */
    (void)slm_srv_buf_append(&j->text, text, len);
    bool first = !j->got_token;
    double prev = j->t_last;
    j->got_token = true;
    j->t_last = t;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (j->metrics && len) {
        if (first)
            slm_srv_histogram_observe(&j->metrics->ttft, t - j->t_arrival);
        else
            slm_srv_histogram_observe(&j->metrics->itl, t - prev);
    }
}

/* Time to first token and between tokens, for text that arrived at t. */
static void observe_text(slm_srv_job *j, double t, bool first, double prev, size_t len)
{
    if (!j->metrics || !len)
        return;
    if (first)
        slm_srv_histogram_observe(&j->metrics->ttft, t - j->t_arrival);
    else
        slm_srv_histogram_observe(&j->metrics->itl, t - prev);
}

void slm_srv_job_on_choice(void *user, const slm_choice_event *ev)
{
    slm_srv_job *j = user;
    double t = slm_srv_now();
    pthread_mutex_lock(&j->mu);
    /* NOTE: as in on_token, out of memory drops output, never stalls. */
    (void)slm_srv_choices_add(&j->ch, ev);
    bool first = !j->got_token && ev->len;
    double prev = j->t_last;
    if (ev->len) {
        j->got_token = true;
        j->t_last = t;
    }
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    observe_text(j, t, first, prev, ev->len);
}

int slm_srv_job_take_choices(slm_srv_job *j, slm_srv_choices *to)
{
    pthread_mutex_lock(&j->mu);
    int rc = slm_srv_choices_move(&j->ch, to);
    pthread_mutex_unlock(&j->mu);
    return rc;
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
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (j->metrics)
        slm_srv_metrics_finished(j->metrics, r->finish);
    slm_srv_job_release(j);
}

bool slm_srv_peer_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int n = poll(&p, 1, 0);
    if (n <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return true;
    if (p.revents & POLLIN) {
        /* Readable: either a pipelined request (the peer is still there) or
         * end of file, which recv tells apart without consuming anything. */
        char c;
        ssize_t k = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return false;
}

slm_srv_wait slm_srv_job_wait(slm_srv_job *j, int fd, slm_srv_buf *out, bool *done)
{
    pthread_mutex_lock(&j->mu);
    while (!j->done && j->text.len == 0 && !j->ch.dirty) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_nsec += 50 * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        int rc = pthread_cond_timedwait(&j->cv, &j->mu, &t);
        if (rc == ETIMEDOUT && !j->done && j->text.len == 0 && !j->ch.dirty &&
            slm_srv_peer_gone(fd)) {
            pthread_mutex_unlock(&j->mu);
            return SLM_SRV_WAIT_GONE;
        }
    }
    slm_srv_wait w = SLM_SRV_WAIT_DONE;
    if (j->text.len) {
        if (slm_srv_buf_append(out, j->text.data, j->text.len) == 0) {
            j->text.len = 0;
            w = SLM_SRV_WAIT_TEXT;
        }
    }
    *done = j->done && j->text.len == 0;
    pthread_mutex_unlock(&j->mu);
    return w;
}
