/*
 * cmd_embed.c — `slm embed`: prints the pooled, L2-normalised embedding of
 * each input text (the model's final hidden states, mean or last token; see
 * slm_pooling in slm.h). Inputs come from -p (repeatable) and the remaining
 * arguments, or else one per line of stdin, read and embedded --batch lines
 * at a time so a long stream starts printing at once. Embedding goes
 * through the public engine of slm.h (slm_engine_embed), each batch's
 * inputs prefilled together.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    slm_cli_common c;
    const char **texts; /* from -p and the arguments */
    int n_texts;
    slm_pooling pooling;
    bool plain, raw;
    long n_ctx, batch;
} embed_opts;

static void help(void)
{
    printf("usage: slm embed [options] [TEXT...]\n\n"
           "Prints one embedding per input: the model's final hidden states pooled and\n"
           "L2-normalised. Inputs are the -p texts and the arguments, or else the lines of\n"
           "stdin (blank lines are skipped).\n\n"
           "  -p, --prompt TEXT      an input (may be repeated)\n"
           "  --pooling NAME         mean (every token) or last (the last token); cls (the\n"
           "                         first) also works (default: the model's pooling_type;\n"
           "                         mean for a model that has none)\n"
           "  --format NAME          json (default): one line per input,\n"
           "                         {\"index\": I, \"embedding\": [...]};\n"
           "                         plain: the numbers of each embedding on one line\n"
           "  --no-normalize         print the pooled vector without L2 normalisation\n"
           "  -b, --batch N          inputs embedded together (default 32)\n"
           "  -c, --ctx N            the longest input in tokens, plus one (default 2048)\n%s",
           slm_cli_common_help);
}

static bool parse_pooling(const char *v, slm_pooling *p)
{
    static const struct {
        const char *name;
        slm_pooling p;
    } names[] = {{"mean", SLM_POOLING_MEAN}, {"last", SLM_POOLING_LAST}, {"cls", SLM_POOLING_CLS}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(v, names[i].name)) {
            *p = names[i].p;
            return true;
        }
    return false;
}

/* One option with a value at argv[*i]; 0 when used, 1 after an error. */
static int value_opt(embed_opts *o, const char *a, const char *v)
{
    if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
        o->texts[o->n_texts++] = v;
    } else if (!strcmp(a, "--pooling")) {
        if (!parse_pooling(v, &o->pooling))
            return slm_cli_fail("embed", "--pooling '%s': use mean, last or cls", v);
    } else if (!strcmp(a, "--format")) {
        if (strcmp(v, "json") && strcmp(v, "plain"))
            return slm_cli_fail("embed", "--format '%s': use json or plain", v);
        o->plain = !strcmp(v, "plain");
    } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
        return !slm_cli_int("embed", a, v, 1, 4096, &o->batch);
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
        return !slm_cli_int("embed", a, v, 16, 1 << 20, &o->n_ctx);
    } else {
        return slm_cli_fail("embed", "unknown option '%s' (see slm embed --help)", a);
    }
    return 0;
}

/* Returns 0 to go on, -1 after --help, >0 on error. o->texts holds argc
 * slots (freed by the caller). */
static int parse(int argc, char **argv, embed_opts *o)
{
    memset(o, 0, sizeof *o);
    slm_cli_common_init(&o->c);
    o->n_ctx = 2048, o->batch = 32;
    o->texts = calloc((size_t)argc, sizeof *o->texts);
    if (!o->texts)
        return slm_cli_fail("embed", "out of memory");
    for (int i = 1; i < argc; i++) {
        int c = slm_cli_common_opt("embed", &o->c, argc, argv, &i);
        if (c < 0)
            return 1;
        if (c)
            continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return -1;
        } else if (!strcmp(a, "--no-normalize")) {
            o->raw = true;
        } else if (a[0] != '-' || !a[1]) {
            o->texts[o->n_texts++] = a; /* an input */
        } else if (!v) {
            return slm_cli_fail("embed", "unknown or incomplete option '%s' (see slm embed "
                                "--help)", a);
        } else if (value_opt(o, a, v)) {
            return 1;
        } else {
            i++;
        }
    }
    return 0;
}

/* %.9g: a float printed so it reads back exactly. */
static void print_one(const embed_opts *o, long index, const float *v, int d)
{
    if (!o->plain)
        printf("{\"index\": %ld, \"embedding\": [", index);
    for (int j = 0; j < d; j++)
        printf("%s%.9g", j ? (o->plain ? " " : ", ") : "", (double)v[j]);
    printf(o->plain ? "\n" : "]}\n");
}

/* Embeds texts[0..n) together and prints them, numbered from first. */
static int embed_batch(const embed_opts *o, slm_engine *e, int d, const char *const *texts,
                       int n, long first, float *out)
{
    slm_embed_params *in = calloc((size_t)n, sizeof *in);
    if (!in)
        return slm_cli_fail("embed", "out of memory");
    for (int i = 0; i < n; i++) {
        slm_embed_params_default(&in[i]);
        in[i].text = texts[i];
        in[i].pooling = o->pooling;
        in[i].normalize = !o->raw;
    }
    slm_status st = slm_engine_embed(e, in, n, out, NULL);
    free(in);
    if (st) { /* the message names the input within this batch: "input I: ..." */
        const char *msg = slm_last_error();
        int k = 0, off = 0;
        if (sscanf(msg, "input %d: %n", &k, &off) == 1 && off > 0)
            return slm_cli_fail("embed", "input %ld: %s", first + k, msg + off);
        return slm_cli_fail("embed", "%s", msg);
    }
    for (int i = 0; i < n; i++)
        print_one(o, first + i, out + (size_t)i * d, d);
    fflush(stdout);
    return 0;
}

/* Reads stdin a batch of non-blank lines at a time. */
static int embed_stdin(const embed_opts *o, slm_engine *e, int d, float *out)
{
    char **lines = calloc((size_t)o->batch, sizeof *lines);
    size_t *caps = calloc((size_t)o->batch, sizeof *caps);
    int rc = lines && caps ? 0 : slm_cli_fail("embed", "out of memory");
    long done = 0;
    while (!rc) {
        int n = 0;
        while (n < o->batch) {
            ssize_t len = getline(&lines[n], &caps[n], stdin);
            if (len < 0)
                break;
            while (len > 0 && (lines[n][len - 1] == '\n' || lines[n][len - 1] == '\r'))
                lines[n][--len] = 0;
            if (strspn(lines[n], " \t") < (size_t)len)
                n++;
        }
        if (n == 0)
            break;
        rc = embed_batch(o, e, d, (const char *const *)lines, n, done, out);
        done += n;
    }
    for (long i = 0; lines && i < o->batch; i++)
        free(lines[i]);
    free(lines);
    free(caps);
    return rc;
}

static int run(const embed_opts *o, slm_model *m, const slm_model_info *info)
{
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = (int)o->n_ctx;
    ep.max_running = (int)o->batch;
    slm_engine *e = NULL;
    if (slm_engine_open(m, &ep, &e))
        return slm_cli_fail("embed", "%s", slm_last_error());
    int d = info->n_embd, rc = 0;
    float *out = malloc((size_t)o->batch * (size_t)d * sizeof *out);
    if (!out)
        rc = slm_cli_fail("embed", "out of memory");
    for (int i = 0; !rc && i < o->n_texts; i += (int)o->batch) {
        int n = o->n_texts - i < o->batch ? o->n_texts - i : (int)o->batch;
        rc = embed_batch(o, e, d, o->texts + i, n, i, out);
    }
    if (!rc && o->n_texts == 0)
        rc = embed_stdin(o, e, d, out);
    free(out);
    slm_engine_close(e, 0);
    return rc;
}

int slm_cmd_embed(int argc, char **argv)
{
    embed_opts o;
    int rc = parse(argc, argv, &o);
    if (!rc) {
        slm_model *m = NULL;
        slm_model_info info;
        rc = slm_cli_load("embed", &o.c, &m, &info);
        if (!rc)
            rc = run(&o, m, &info);
        slm_model_close(m);
    }
    free(o.texts);
    return rc < 0 ? 0 : rc;
}
