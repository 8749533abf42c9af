/*
 * embed.c — how a program embeds slm, using nothing but include/slm.h:
 * open a model, start an engine, submit two requests at once (a chat and
 * a raw-text completion) whose tokens stream through a callback, wait for
 * both, print their results and the engine's statistics, shut down.
 *
 * usage: embed MODEL.gguf [QUESTION]
 * Exits 0 when both requests finished normally with some output.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "slm.h"

/* What one request's callbacks share with main(). Callbacks run on the
 * engine's thread, so the hand-back goes through a mutex and a condition. */
typedef struct answer {
    const char *label;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[4096];
    size_t len;
    int done;
    slm_result result;
} answer;

static void on_token(void *user, const char *text, size_t len)
{
    answer *a = user;
    pthread_mutex_lock(&a->mu);
    if (a->len + len < sizeof a->text) {
        memcpy(a->text + a->len, text, len);
        a->len += len;
    }
    pthread_mutex_unlock(&a->mu);
}

static void on_done(void *user, const slm_result *r)
{
    answer *a = user;
    pthread_mutex_lock(&a->mu);
    a->result = *r; /* r->error is valid only during the call: not kept */
    a->result.error = "";
    a->done = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void wait_for(answer *a)
{
    pthread_mutex_lock(&a->mu);
    while (!a->done)
        pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

static int submit(slm_engine *e, slm_request_params *p, answer *a)
{
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    p->on_token = on_token;
    p->on_done = on_done;
    p->user = a;
    uint64_t id;
    if (slm_engine_submit(e, p, &id) != SLM_OK) {
        fprintf(stderr, "embed: %s: %s\n", a->label, slm_last_error());
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: embed MODEL.gguf [QUESTION]\n");
        return 2;
    }
    const char *question = argc > 2 ? argv[2] : "What is the capital of France?";
    printf("slm %s\n", slm_version());

    slm_model_params mp;
    slm_model_params_default(&mp); /* backend: $SLM_BACKEND, else the best there is */
    slm_model *m = NULL;
    if (slm_model_open(argv[1], &mp, &m) != SLM_OK) {
        fprintf(stderr, "embed: %s\n", slm_last_error());
        return 1;
    }
    slm_model_info info = {.size = sizeof info};
    slm_model_get_info(m, &info);
    printf("model: %s (%s, %d layers) on %s\n", info.name, info.arch, info.n_layer,
           info.backend);

    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = 512;
    ep.max_running = 4;
    slm_engine *e = NULL;
    if (slm_engine_open(m, &ep, &e) != SLM_OK) {
        fprintf(stderr, "embed: %s\n", slm_last_error());
        slm_model_close(m);
        return 1;
    }

    answer chat = {.label = "chat"}, text = {.label = "completion"};
    slm_message msgs[] = {{"user", question}};
    slm_request_params p;
    slm_request_params_default(&p);
    p.messages = msgs;
    p.n_messages = 1;
    slm_sampling greedy;
    slm_sampling_default(&greedy);
    greedy.temperature = 0; /* greedy: the same answer every run */
    p.sampling = &greedy;
    p.max_tokens = 32;
    int rc = submit(e, &p, &chat);

    slm_request_params q;
    slm_request_params_default(&q);
    q.prompt = "The three primary colours are";
    slm_sampling seeded;
    slm_sampling_default(&seeded);
    seeded.seed = 42;
    q.sampling = &seeded;
    q.max_tokens = 24;
    const char *stops[] = {"\n"};
    q.stop = stops;
    q.n_stop = 1;
    if (!rc)
        rc = submit(e, &q, &text);

    answer *all[] = {&chat, &text};
    for (int i = 0; !rc && i < 2; i++) {
        answer *a = all[i];
        wait_for(a);
        const slm_result *r = &a->result;
        printf("%s: \"%.*s\"\n  finish=%s prompt=%d completion=%d ttft=%.1f ms total=%.1f ms\n",
               a->label, (int)a->len, a->text,
               r->finish == SLM_FINISH_STOP ? "stop" : r->finish == SLM_FINISH_LENGTH ? "length"
                                                                                      : "other",
               r->prompt_tokens, r->completion_tokens, r->ttft_ms, r->total_ms);
        if (r->finish > SLM_FINISH_LENGTH || r->completion_tokens < 1)
            rc = 1;
    }
    slm_engine_stats s = {.size = sizeof s};
    if (slm_engine_get_stats(e, &s) == SLM_OK)
        printf("engine: %llu requests, %llu steps, %llu tokens generated, KV %d/%d blocks\n",
               (unsigned long long)s.requests_done, (unsigned long long)s.steps,
               (unsigned long long)s.generated_tokens, s.kv_blocks_used, s.kv_blocks_total);
    slm_engine_close(e, 1);
    slm_model_close(m);
    return rc ? 1 : 0;
}
