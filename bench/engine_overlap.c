/*
 * engine_overlap.c — what the engine gains by running a step's callbacks
 * while the next step is on the device (slm_engine_params.sequential = 0)
 * instead of after it (= 1). Uses slm.h alone: opens MODEL on BACKEND,
 * then alternates the two modes ROUNDS times, each time submitting N
 * greedy requests of TOKENS tokens at once and timing until all are done.
 * The callbacks do what a server's do (copy the text into a per-request
 * buffer under a lock); the gain is the host work hidden behind the device.
 *
 * usage: engine_overlap MODEL [BACKEND=vulkan] [N=8] [TOKENS=64] [ROUNDS=3]
 * Prints each run and the median ratio sequential ÷ overlapped wall time.
 * A benchmark: it reports, it does not pass or fail.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm.h"

typedef struct req {
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *left;
    char text[8192];
    size_t len;
} req;

static void on_token(void *user, const char *t, size_t n)
{
    req *r = user;
    pthread_mutex_lock(r->mu);
    if (r->len + n < sizeof r->text) {
        memcpy(r->text + r->len, t, n);
        r->len += n;
    }
    pthread_mutex_unlock(r->mu);
}

static void on_done(void *user, const slm_result *res)
{
    (void)res;
    req *r = user;
    pthread_mutex_lock(r->mu);
    if (--*r->left == 0)
        pthread_cond_signal(r->cv);
    pthread_mutex_unlock(r->mu);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One run: n requests of `tokens` tokens through a fresh engine. */
static double run(slm_model *m, int sequential, int n, int tokens)
{
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = 512;
    ep.max_running = n;
    ep.sequential = sequential;
    slm_engine *e = NULL;
    if (slm_engine_open(m, &ep, &e)) {
        fprintf(stderr, "engine: %s\n", slm_last_error());
        exit(1);
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int left = n;
    req *rs = calloc((size_t)n, sizeof *rs);
    slm_sampling greedy;
    slm_sampling_default(&greedy);
    greedy.temperature = 0;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        char prompt[64];
        snprintf(prompt, sizeof prompt, "Story number %d: once upon a time", i);
        rs[i] = (req){.mu = &mu, .cv = &cv, .left = &left};
        slm_request_params p;
        slm_request_params_default(&p);
        p.prompt = prompt;
        p.sampling = &greedy;
        p.max_tokens = tokens;
        p.ignore_eos = 1;
        p.on_token = on_token;
        p.on_done = on_done;
        p.user = &rs[i];
        if (slm_engine_submit(e, &p, NULL)) {
            fprintf(stderr, "submit: %s\n", slm_last_error());
            exit(1);
        }
    }
    pthread_mutex_lock(&mu);
    while (left > 0)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    double t = now_s() - t0;
    slm_engine_close(e, 1);
    free(rs);
    return t;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [BACKEND] [N] [TOKENS] [ROUNDS]\n", argv[0]);
        return 2;
    }
    const char *backend = argc > 2 ? argv[2] : "vulkan";
    int n = argc > 3 ? atoi(argv[3]) : 8, tokens = argc > 4 ? atoi(argv[4]) : 64;
    int rounds = argc > 5 ? atoi(argv[5]) : 3;
    if (n < 1 || tokens < 1 || rounds < 1 || rounds > 64)
        return fprintf(stderr, "bad N, TOKENS or ROUNDS\n"), 2;
    slm_model_params mp;
    slm_model_params_default(&mp);
    mp.backend = backend;
    slm_model *m = NULL;
    if (slm_model_open(argv[1], &mp, &m)) {
        fprintf(stderr, "model: %s\n", slm_last_error());
        return 1;
    }
    slm_model_info info = {.size = sizeof info};
    slm_model_get_info(m, &info);
    printf("%s on %s: %d requests × %d tokens, %d rounds\n", info.name, info.backend, n, tokens,
           rounds);
    run(m, 0, n, 4); /* warm-up: pipelines, caches, pages */
    double ratio[64];
    for (int r = 0; r < rounds; r++) {
        double ov = run(m, 0, n, tokens), sq = run(m, 1, n, tokens);
        ratio[r] = sq / ov;
        printf("round %d: overlapped %.3f s (%.1f tok/s), sequential %.3f s (%.1f tok/s), "
               "sequential/overlapped %.3f\n",
               r + 1, ov, n * tokens / ov, sq, n * tokens / sq, ratio[r]);
    }
    qsort(ratio, (size_t)rounds, sizeof ratio[0], cmp);
    printf("median sequential/overlapped wall time: %.3f\n", ratio[rounds / 2]);
    slm_model_close(m);
    return 0;
}
