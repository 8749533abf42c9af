/*
 * cmd_bench.c — `slm bench`: prompt processing and decode speed the way
 * llama-bench measures them. ppN: N random tokens evaluated as one batch
 * from an empty context; tgN: N random tokens evaluated one at a time (no
 * sampling is timed). One untimed warm-up run of each, then -r timed
 * repetitions; mean ± sd of tokens/s. Decode also reports the weight bytes
 * streamed per second (every weight is read once per token; the embedding
 * table only one row unless it doubles as the output matrix).
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

typedef struct {
    slm_cli_common c;
    int n_prompt, n_gen, reps;
    bool json;
} bench_opts;

typedef struct {
    const char *name; /* "pp512" */
    int n_prompt, n_gen;
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
           "  -r, --repetitions N  timed runs of each test (default 5)\n"
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

static int bench_test(slm_model *m, const bench_opts *o, bench_result *r)
{
    int n = r->n_prompt + r->n_gen;
    slm_session *s;
    if (slm_session_create(m, n, r->n_prompt > 0 ? r->n_prompt : 1, SLM_TYPE_F16, &s))
        return slm_cli_fail("bench", "%s", slm_last_error());
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    for (int i = 0; i < n; i++)
        tok[i] = rand() % m->hp.n_vocab;
    double tps, sum = 0, sq = 0;
    slm_status st = run_once(s, tok, r->n_prompt, r->n_gen, &tps); /* warm-up */
    for (int i = 0; !st && i < o->reps; i++) {
        st = run_once(s, tok, r->n_prompt, r->n_gen, &tps);
        r->samples[r->n_samples++] = tps;
        sum += tps;
        sq += tps * tps;
    }
    free(tok);
    slm_session_free(s);
    if (st)
        return slm_cli_fail("bench", "%s", slm_last_error());
    r->mean = sum / o->reps;
    r->sd = o->reps > 1 ? sqrt(fmax(0, (sq - sum * sum / o->reps) / (o->reps - 1))) : 0;
    r->gbps = r->n_gen ? r->mean * (double)weight_bytes_per_token(m) / 1e9 : 0;
    return 0;
}

static void cpu_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && !strncmp(line, "model name", 10)) {
            snprintf(buf, cap, "%s", colon + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
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
    cpu_name(cpu, sizeof cpu);
    printf("{\"machine\": ");
    json_str(host);
    printf(", \"cpu\": ");
    json_str(cpu);
    printf(", \"threads\": %d, \"model\": ", threads);
    json_str(o->c.model);
    printf(", \"model_bytes\": %" PRIu64 ", \"backend\": ", slm_gguf_file_size(m->gguf));
    json_str(m->be->ops->describe(m->be));
    printf(", \"commit\": \"%s\", \"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, "
           "\"avg_ts\": %.3f, \"stddev_ts\": %.3f, \"gb_per_s\": %.3f, \"samples_ts\": [",
           SLM_GIT_COMMIT, r->name, r->n_prompt, r->n_gen, r->mean, r->sd, r->gbps);
    for (int i = 0; i < r->n_samples; i++)
        printf("%s%.3f", i ? ", " : "", r->samples[i]);
    printf("]}\n");
}

static int parse(int argc, char **argv, bench_opts *o)
{
    slm_cli_common_init(&o->c);
    o->n_prompt = 512, o->n_gen = 128, o->reps = 5;
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
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--n-gen")) && val) {
            if (!slm_cli_int("bench", a, argv[++i], 0, 1 << 16, &v))
                return 1;
            o->n_gen = (int)v;
        } else if ((!strcmp(a, "-r") || !strcmp(a, "--repetitions")) && val) {
            if (!slm_cli_int("bench", a, argv[++i], 1, 64, &v))
                return 1;
            o->reps = (int)v;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else {
            return slm_cli_fail("bench", "unknown or incomplete option '%s' (see slm bench --help)",
                                a);
        }
    }
    if (!o->n_prompt && !o->n_gen)
        return slm_cli_fail("bench", "nothing to measure: -p and -n are both 0");
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
    char pp[32], tg[32];
    snprintf(pp, sizeof pp, "pp%d", o.n_prompt);
    snprintf(tg, sizeof tg, "tg%d", o.n_gen);
    bench_result res[2] = {{.name = pp, .n_prompt = o.n_prompt}, {.name = tg, .n_gen = o.n_gen}};
    const char *slash = strrchr(o.c.model, '/');
    if (!o.json) {
        printf("| model | size | params | backend | threads | test | t/s | GB/s |\n"
               "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |\n");
    }
    rc = 0;
    for (int t = 0; t < 2 && !rc; t++) {
        if (!res[t].n_prompt && !res[t].n_gen)
            continue;
        if ((rc = bench_test(m, &o, &res[t])))
            break;
        if (o.json) {
            print_json(m, &o, &res[t], threads);
        } else {
            int64_t params = 0;
            for (int64_t i = 0; i < slm_gguf_tensor_count(m->gguf); i++)
                params += slm_gguf_tensor_at(m->gguf, i)->n_elements;
            char gb[32] = "-";
            if (res[t].n_gen)
                snprintf(gb, sizeof gb, "%.1f", res[t].gbps);
            printf("| %s | %.1f MiB | %.1f M | %s | %d | %s | %.2f ± %.2f | %s |\n",
                   slash ? slash + 1 : o.c.model,
                   (double)slm_gguf_file_size(m->gguf) / 1048576.0, (double)params / 1e6,
                   m->be->ops->name, threads, res[t].name, res[t].mean, res[t].sd, gb);
        }
        fflush(stdout);
    }
    slm_model_close(m);
    return rc;
}
