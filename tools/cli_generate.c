/*
 * cli_generate.c — one request through the engine of slm.h, the way
 * `slm run` and every turn of `slm chat` make it: the answer is streamed to
 * stdout from the engine thread as it comes while the calling thread waits
 * for the request to finish; then the timings line both commands print.
 *
 * Ordering: the token callback writes (and flushes) stdout itself, and the
 * caller writes nothing to stdout until on_done has run — on_done comes
 * last, on the same engine thread — so the answer, its closing newline and
 * the timings line on stderr come out in that order.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server_openai.h" /* slm_srv_buf: the growable text buffer the server streams with */

/* One request in flight: shared by the caller and the engine thread. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;          /* guarded by mu */
    bool keep, oom;     /* engine thread until done */
    slm_srv_buf text;   /* the answer so far, when kept */
    slm_cli_answer *a;
} pending;

static void on_token(void *user, const char *text, size_t len)
{
    pending *p = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (p->keep && !p->oom && slm_srv_buf_append(&p->text, text, len))
        p->oom = true;
}

static void on_done(void *user, const slm_result *r)
{
    pending *p = user;
    pthread_mutex_lock(&p->mu);
    p->a->result = *r;
    snprintf(p->a->error, sizeof p->a->error, "%s", r->error ? r->error : "");
    p->a->result.error = p->a->error; /* r->error lives only during this call */
    p->done = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int slm_cli_generate(const char *cmd, slm_engine *e, const slm_request_params *params,
                     bool keep, slm_cli_answer *a)
{
    memset(a, 0, sizeof *a);
    pending p = {.keep = keep, .a = a};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    slm_request_params rp = *params;
    rp.on_token = on_token;
    rp.on_done = on_done;
    rp.user = &p;
    int rc = 0;
    if (slm_engine_submit(e, &rp, NULL)) {
        rc = slm_cli_fail(cmd, "%s", slm_last_error());
    } else {
        pthread_mutex_lock(&p.mu);
        while (!p.done)
            pthread_cond_wait(&p.cv, &p.mu);
        pthread_mutex_unlock(&p.mu);
        putchar('\n');
        fflush(stdout); /* the answer before anything the caller puts on stderr */
        if (a->result.finish == SLM_FINISH_ERROR)
            rc = slm_cli_fail(cmd, "generation failed: %s",
                              a->error[0] ? a->error : slm_status_name(a->result.status));
        else if (p.oom)
            rc = slm_cli_fail(cmd, "out of memory");
    }
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
    a->text = p.text.data; /* the caller's now */
    a->len = p.text.len;
    if (keep && !rc && !a->text && !(a->text = calloc(1, 1)))
        rc = slm_cli_fail(cmd, "out of memory"); /* an empty answer is "" */
    return rc;
}

/* Milliseconds as seconds, never below 0 (a phase that did not happen). */
static double seconds(double ms) { return ms > 0 ? ms / 1e3 : 0; }

static double rate(double n, double s) { return s > 0 ? n / s : 0; }

void slm_cli_timings(const char *cmd, const slm_result *r, const char *backend, bool show_cached)
{
    /* The prompt's time is from the request's first step to its first
     * token, so it holds the prefill; the rest is decoding. NOTE: the first
     * token came with the prompt, so the decode rate counts the others. */
    double prompt_s = seconds(r->ttft_ms - r->queue_ms), gen_s = seconds(r->total_ms - r->ttft_ms);
    int evaluated = r->prompt_tokens - r->cached_tokens, n = r->completion_tokens;
    char prompt[128];
    if (show_cached)
        snprintf(prompt, sizeof prompt, "prompt %d tokens (%d cached, %d evaluated in %.2f s, "
                 "%.1f tok/s)", r->prompt_tokens, r->cached_tokens, evaluated, prompt_s,
                 rate(evaluated, prompt_s));
    else
        snprintf(prompt, sizeof prompt, "prompt %d tokens in %.2f s (%.1f tok/s)",
                 r->prompt_tokens, prompt_s, rate(evaluated, prompt_s));
    fprintf(stderr, "slm %s: %s, generated %d tokens in %.2f s (%.1f tok/s), %s\n", cmd, prompt,
            n, gen_s, rate(n > 1 ? n - 1 : 0, gen_s), backend);
}
