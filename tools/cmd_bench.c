/*
 * cmd_bench.c — `slm bench`: prompt processing and decode speed the way
 * llama-bench measures them. ppN: N random tokens evaluated as one batch
 * from an empty context; tgN: N random tokens evaluated one at a time (no
 * sampling is timed). One untimed warm-up run of each, then -r timed
 * repetitions; mean ± sd of tokens/s. Decode also reports the weight bytes
 * streamed per second (every weight is read once per token; the embedding
 * table only one row unless it doubles as the output matrix).
 *
 * --batch LIST measures instead what llama-batched-bench does: for each
 * count B, B sequences through the public engine (bench_batch.c), each a
 * prompt of P random tokens (-p, default 128 here) and G generated tokens
 * (-n, default 128; greedy, end-of-sequence ignored). Two tests per B:
 *   ppP@bB: B × P / prefill_s — llama-batched-bench's S_PP;
 *   tgG@bB: B × (G − 1) / decode_s — its S_TG; the first token of each
 *           sequence comes from the prefill, so G − 1 decode steps of B
 *           tokens each are timed (llama-batched-bench -ntg T times T
 *           steps: compare with -n T+1);
 * prefill_s and decode_s as bench_batch.c defines them. GB/s of tgG@bB is
 * the weight bytes of one decode step × steps per second.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_internal.h"

#include "slm_commit.h" /* SLM_GIT_COMMIT, generated at build time */

#define MAX_BATCHES 16

typedef struct {
    slm_cli_common c;
    int n_prompt, n_gen, reps;
    bool json;
    int batch[MAX_BATCHES]; /* --batch counts; n_batch == 0: the ppN/tgN tests */
    int n_batch;
} bench_opts;

typedef struct {
    char name[32]; /* "pp512", "tg128@b8" */
    int n_prompt, n_gen;
    int n_seq;     /* batched tests: sequences; 0 for ppN/tgN */
    int n_tokens;  /* batched: tokens each sample counts (B × P, B × (G − 1)) */
    int generated; /* batched: tokens the sequences generated in the last run */
    double mean, sd, gbps;
    double samples[64];
    int n_samples;
} bench_result;

static void help(void)
{
    printf("usage: slm bench [options]\n\n"
           "Measures prompt processing (ppN) and decode (tgN) speed on random tokens.\n\n"
           "  -p, --n-prompt N     prompt tokens per pp test, 0 to skip (default 512)\n"
           "  -n, --n-gen N        generated tokens per tg test, 0 to skip (default 128)\n"
           "  -r, --repetitions N  timed runs of each test, after one untimed (default 5)\n"
           "  --batch LIST         instead: batched decode through the engine, for each\n"
           "                       count B in LIST (e.g. 1,8,32) B sequences together, each\n"
           "                       -p random prompt tokens and -n generated ones (defaults\n"
           "                       128 and 128 here; greedy, end-of-sequence ignored):\n"
           "                       ppP@bB = B*P / time from the step that takes every\n"
           "                       prompt to the last first token (llama-batched-bench's\n"
           "                       S_PP); tgG@bB = B*(G-1) / time from that first token\n"
           "                       to the last sequence done (its S_TG; the first token\n"
           "                       comes from the prefill, so -n T+1 matches its -ntg T)\n"
           "  --json               one JSON object per test instead of the table\n%s",
           slm_cli_common_help);
}

static uint64_t weight_bytes_per_token(const slm_model *m)
{
    uint64_t total = 0, embd = 0;
    for (int64_t i = 0; i < slm_gguf_tensor_count(m->gguf); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(m->gguf, i);
        if (!strcmp(t->name, "token_embd.weight"))
            embd = t->nbytes;
        else
            total += t->nbytes;
    }
    bool tied = m->output == m->tok_embd;
    return total + (tied ? embd : embd / (uint64_t)m->hp.n_vocab);
}

/* One timed run: tokens/s. */
static slm_status run_once(slm_session *s, const int32_t *tok, int n_prompt, int n_gen,
                           double *tps)
{
    slm_session_reset(s);
    double t0 = slm_cli_now();
    slm_status st = SLM_OK;
    if (n_prompt > 0)
        st = slm_session_eval(s, tok, n_prompt, NULL);
    for (int i = 0; !st && i < n_gen; i++)
        st = slm_session_eval(s, &tok[i], 1, NULL);
    double dt = slm_cli_now() - t0;
    *tps = (double)(n_prompt + n_gen) / dt;
    return st;
}

/* Mean and sample standard deviation of r's samples. */
static void summarize(bench_result *r)
{
    double sum = 0, sq = 0;
    int n = r->n_samples;
    for (int i = 0; i < n; i++) {
        sum += r->samples[i];
        sq += r->samples[i] * r->samples[i];
    }
    r->mean = n ? sum / n : 0;
    r->sd = n > 1 ? sqrt(fmax(0, (sq - sum * sum / n) / (n - 1))) : 0;
}

static int bench_test(slm_model *m, const bench_opts *o, bench_result *r)
{
    int n = r->n_prompt + r->n_gen;
    slm_session *s;
    if (slm_session_create(m, n, r->n_prompt > 0 ? r->n_prompt : 1, SLM_TYPE_F16, &s))
        return slm_cli_fail("bench", "%s", slm_last_error());
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    for (int i = 0; i < n; i++)
        tok[i] = rand() % m->hp.n_vocab;
    double tps;
    slm_status st = run_once(s, tok, r->n_prompt, r->n_gen, &tps); /* warm-up */
    for (int i = 0; !st && i < o->reps; i++) {
        st = run_once(s, tok, r->n_prompt, r->n_gen, &tps);
        r->samples[r->n_samples++] = tps;
    }
    free(tok);
    slm_session_free(s);
    if (st)
        return slm_cli_fail("bench", "%s", slm_last_error());
    summarize(r);
    r->gbps = r->n_gen ? r->mean * (double)weight_bytes_per_token(m) / 1e9 : 0;
    return 0;
}

/* Adds one batched run's rates to the prefill and decode results. */
static void add_batch_sample(bench_result *pp, bench_result *tg, const slm_cli_batch_times *t)
{
    pp->samples[pp->n_samples++] = pp->n_tokens / t->prefill_s;
    tg->samples[tg->n_samples++] = tg->n_tokens / t->decode_s;
    pp->generated = tg->generated = t->generated;
}

/* ppP@bB and tgG@bB of one count B: one untimed run, then -r timed ones,
 * on one engine. */
static int bench_batch(slm_model *m, const bench_opts *o, int n_seq, bench_result *pp,
                       bench_result *tg)
{
    *pp = (bench_result){.n_prompt = o->n_prompt, .n_seq = n_seq,
                         .n_tokens = n_seq * o->n_prompt};
    *tg = (bench_result){.n_prompt = o->n_prompt, .n_gen = o->n_gen, .n_seq = n_seq,
                         .n_tokens = n_seq * (o->n_gen - 1)};
    snprintf(pp->name, sizeof pp->name, "pp%d@b%d", o->n_prompt, n_seq);
    snprintf(tg->name, sizeof tg->name, "tg%d@b%d", o->n_gen, n_seq);
    slm_cli_batch *b;
    if (slm_cli_batch_open("bench", m, n_seq, o->n_prompt, o->n_gen, &b))
        return 1;
    slm_cli_batch_times t;
    int rc = slm_cli_batch_run(b, &t); /* warm-up */
    for (int i = 0; !rc && i < o->reps; i++)
        if (!(rc = slm_cli_batch_run(b, &t)))
            add_batch_sample(pp, tg, &t);
    slm_cli_batch_free(b);
    if (rc)
        return rc;
    summarize(pp);
    summarize(tg);
    /* One decode step reads the weights once for all B sequences. */
    tg->gbps = tg->mean / n_seq * (double)weight_bytes_per_token(m) / 1e9;
    return 0;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void print_json(const slm_model *m, const bench_opts *o, const bench_result *r,
                       int threads)
{
    char host[256] = "unknown", cpu[256];
    gethostname(host, sizeof host);
    slm_cli_cpu_name(cpu, sizeof cpu);
    printf("{\"machine\": ");
    json_str(host);
    printf(", \"cpu\": ");
    json_str(cpu);
    printf(", \"threads\": %d, \"model\": ", threads);
    json_str(o->c.model);
    printf(", \"model_bytes\": %" PRIu64 ", \"backend\": ", slm_gguf_file_size(m->gguf));
    json_str(m->be->ops->describe(m->be));
    printf(", \"commit\": \"%s\", \"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, ",
           SLM_GIT_COMMIT, r->name, r->n_prompt, r->n_gen);
    if (r->n_seq)
        printf("\"n_seq\": %d, \"n_tokens\": %d, \"generated\": %d, ", r->n_seq, r->n_tokens,
               r->generated);
    printf("\"avg_ts\": %.3f, \"stddev_ts\": %.3f, \"gb_per_s\": %.3f, \"samples_ts\": [",
           r->mean, r->sd, r->gbps);
    for (int i = 0; i < r->n_samples; i++)
        printf("%s%.3f", i ? ", " : "", r->samples[i]);
    printf("]}\n");
}

/* The batched tests' own defaults and limits, once every option is read. */
static int batch_defaults(bench_opts *o, bool p_set, bool n_set)
{
    if (!p_set)
        o->n_prompt = 128;
    if (!n_set)
        o->n_gen = 128;
    if (o->n_prompt < 1)
        return slm_cli_fail("bench", "--batch needs a prompt: -p at least 1");
    if (o->n_gen < 2)
        return slm_cli_fail("bench", "--batch needs -n at least 2 (the first token of each "
                            "sequence comes from the prefill; the decode test times the rest)");
    return 0;
}

static int parse(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    slm_cli_common_init(&o->c);
    o->n_prompt = 512, o->n_gen = 128, o->reps = 5;
    bool p_set = false, n_set = false;
    for (int i = 1; i < argc; i++) {
        int c = slm_cli_common_opt("bench", &o->c, argc, argv, &i);
        long v;
        if (c < 0)
            return 1;
        if (c)
            continue;
        const char *a = argv[i];
        bool val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return -1;
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) && val) {
            if (!slm_cli_int("bench", a, argv[++i], 0, 1 << 16, &v))
                return 1;
            o->n_prompt = (int)v;
            p_set = true;
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--n-gen")) && val) {
            if (!slm_cli_int("bench", a, argv[++i], 0, 1 << 16, &v))
                return 1;
            o->n_gen = (int)v;
            n_set = true;
        } else if ((!strcmp(a, "-r") || !strcmp(a, "--repetitions")) && val) {
            if (!slm_cli_int("bench", a, argv[++i], 1, 64, &v))
                return 1;
            o->reps = (int)v;
        } else if (!strcmp(a, "--batch") && val) {
            /* 4096: the engine's max_running */
            if (!slm_cli_int_list("bench", a, argv[++i], 1, 4096, o->batch, MAX_BATCHES,
                                  &o->n_batch))
                return 1;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else {
            return slm_cli_fail("bench", "unknown or incomplete option '%s' (see slm bench --help)",
                                a);
        }
    }
    if (o->n_batch)
        return batch_defaults(o, p_set, n_set);
    if (!o->n_prompt && !o->n_gen)
        return slm_cli_fail("bench", "nothing to measure: -p and -n are both 0");
    return 0;
}

/* One line of the Markdown table. */
static void print_row(const slm_model *m, const bench_opts *o, const bench_result *r, int threads)
{
    const char *slash = strrchr(o->c.model, '/');
    int64_t params = 0;
    for (int64_t i = 0; i < slm_gguf_tensor_count(m->gguf); i++)
        params += slm_gguf_tensor_at(m->gguf, i)->n_elements;
    char gb[32] = "-";
    if (r->n_gen)
        snprintf(gb, sizeof gb, "%.1f", r->gbps);
    printf("| %s | %.1f MiB | %.1f M | %s | %d | %s | %.2f ± %.2f | %s |\n",
           slash ? slash + 1 : o->c.model, (double)slm_gguf_file_size(m->gguf) / 1048576.0,
           (double)params / 1e6, m->be->ops->name, threads, r->name, r->mean, r->sd, gb);
}

static void report(const slm_model *m, const bench_opts *o, const bench_result *r, int threads)
{
    if (o->json)
        print_json(m, o, r, threads);
    else
        print_row(m, o, r, threads);
    fflush(stdout);
}

/* The ppN and tgN tests (through a session, no engine). */
static int run_single(slm_model *m, const bench_opts *o, int threads)
{
    bench_result res[2] = {{.n_prompt = o->n_prompt}, {.n_gen = o->n_gen}};
    snprintf(res[0].name, sizeof res[0].name, "pp%d", o->n_prompt);
    snprintf(res[1].name, sizeof res[1].name, "tg%d", o->n_gen);
    for (int t = 0; t < 2; t++) {
        if (!res[t].n_prompt && !res[t].n_gen)
            continue;
        if (bench_test(m, o, &res[t]))
            return 1;
        report(m, o, &res[t], threads);
    }
    return 0;
}

/* ppP@bB and tgG@bB for each count of --batch. */
static int run_batches(slm_model *m, const bench_opts *o, int threads)
{
    for (int k = 0; k < o->n_batch; k++) {
        bench_result pp, tg;
        if (bench_batch(m, o, o->batch[k], &pp, &tg))
            return 1;
        report(m, o, &pp, threads);
        report(m, o, &tg, threads);
    }
    return 0;
}

int slm_cmd_bench(int argc, char **argv)
{
    bench_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    slm_model *m;
    if (slm_cli_load("bench", &o.c, &m, NULL))
        return 1;
    int threads = o.c.threads ? o.c.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (!o.json) {
        printf("| model | size | params | backend | threads | test | t/s | GB/s |\n"
               "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |\n");
    }
    rc = o.n_batch ? run_batches(m, &o, threads) : run_single(m, &o, threads);
    slm_model_close(m);
    return rc;
}
