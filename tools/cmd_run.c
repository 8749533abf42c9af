/*
 * cmd_run.c — `slm run`: generates text for one prompt and streams it to
 * stdout, then prints one line of timings on stderr. The prompt is wrapped in
 * the model's chat template (recognised from tokenizer.chat_template) unless
 * --raw is given; generation stops at an end-of-generation token or -n.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "cli.h"
#include "sampler.h"
#include "session.h"
#include "tokenizer.h"

typedef struct {
    slm_cli_common c;
    const char *prompt, *chat_template;
    long n_predict, n_ctx;
    bool raw;
    slm_sampler_params sp;
} run_opts;

static void help(void)
{
    printf("usage: slm run -p PROMPT [options]\n\n"
           "Generates a continuation of PROMPT and streams it to stdout; timings go to stderr.\n\n"
           "  -p, --prompt TEXT      the prompt (the user message unless --raw)\n"
           "  -n, --n-predict N      most tokens to generate (default 128)\n"
           "  -c, --ctx N            context size in tokens (default 2048)\n"
           "  --raw                  use the prompt as is, without the chat template\n"
           "  --chat-template NAME   chatml, llama3, llama2, mistral, phi3 or gemma\n"
           "                         (default: recognised from the model)\n"
           "%s"
           "  --seed N               random seed (default 1)\n%s",
           slm_cli_sampling_help, slm_cli_common_help);
}

/* Returns 0 to go on, -1 after --help, >0 on error. */
static int parse(int argc, char **argv, run_opts *o)
{
    memset(o, 0, sizeof *o);
    slm_cli_common_init(&o->c);
    slm_sampler_params_default(&o->sp);
    o->sp.seed = 1;
    o->n_predict = 128, o->n_ctx = 2048;
    for (int i = 1; i < argc; i++) {
        int c = slm_cli_common_opt("run", &o->c, argc, argv, &i);
        if (c < 0)
            return 1;
        if (c)
            continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int sc;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return -1;
        } else if (!strcmp(a, "--raw")) {
            o->raw = true;
            continue;
        } else if (!v) {
            return slm_cli_fail("run", "unknown or incomplete option '%s' (see slm run --help)", a);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            o->prompt = v;
        } else if (!strcmp(a, "--chat-template")) {
            o->chat_template = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            ok = slm_cli_int("run", a, v, 1, 1 << 20, &o->n_predict);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            ok = slm_cli_int("run", a, v, 16, 1 << 20, &o->n_ctx);
        } else if ((sc = slm_cli_sampling_opt("run", &o->sp, a, v)) != 0) {
            ok = sc > 0;
        } else {
            return slm_cli_fail("run", "unknown option '%s' (see slm run --help)", a);
        }
        if (!ok)
            return 1;
        i++;
    }
    if (!o->prompt)
        return slm_cli_fail("run", "a prompt is required: -p TEXT (see slm run --help)");
    return 0;
}

/* The text the model sees: the prompt in the chat template, or as is. */
static int render(const run_opts *o, const slm_model *m, char **text)
{
    if (o->raw) {
        *text = strdup(o->prompt);
        return *text ? 0 : slm_cli_fail("run", "out of memory");
    }
    slm_chat_template t;
    if (slm_cli_chat_template("run", o->chat_template, m, &t))
        return 1;
    slm_chat_msg msg = {"user", o->prompt};
    if (slm_chat_render(&t, &msg, 1, true, text))
        return slm_cli_fail("run", "%s", slm_last_error());
    return 0;
}

static int generate(const run_opts *o, slm_cli_model *cm, const slm_tokenizer *tok,
                    const int32_t *ids, size_t n_prompt)
{
    slm_session *s = NULL;
    slm_sampler *smp = NULL;
    slm_detok *dt = NULL;
    int rc = 0;
    if (n_prompt + 1 > (size_t)o->n_ctx)
        return slm_cli_fail("run", "the prompt is %zu tokens, longer than the context of %ld "
                            "(raise --ctx)", n_prompt, o->n_ctx);
    if (slm_session_create(cm->m, (int)o->n_ctx, 256, SLM_TYPE_F16, &s) ||
        slm_sampler_create(&o->sp, cm->m->hp.n_vocab, &smp) || slm_detok_create(tok, false, &dt)) {
        rc = slm_cli_fail("run", "%s", slm_last_error());
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++)
        slm_sampler_accept(smp, ids[i]);
    double t0 = slm_cli_now();
    if (slm_session_eval(s, ids, (int)n_prompt, NULL)) {
        rc = slm_cli_fail("run", "%s", slm_last_error());
        goto done;
    }
    double t1 = slm_cli_now();
    long n_gen = 0;
    while (n_gen < o->n_predict && s->n_past < s->n_ctx) {
        int32_t t = slm_sampler_sample(smp, s->logits);
        if (slm_tokenizer_is_eog(tok, t))
            break;
        const char *piece;
        size_t len;
        if (slm_detok_feed(dt, t, &piece, &len) == SLM_OK && len)
            fwrite(piece, 1, len, stdout), fflush(stdout);
        slm_sampler_accept(smp, t);
        n_gen++;
        if (slm_session_eval(s, &t, 1, NULL)) {
            rc = slm_cli_fail("run", "%s", slm_last_error());
            goto done;
        }
    }
    const char *rest;
    size_t rl;
    slm_detok_flush(dt, &rest, &rl);
    fwrite(rest, 1, rl, stdout);
    putchar('\n');
    fflush(stdout); /* the answer before the timings line on stderr */
    double t2 = slm_cli_now();
    fprintf(stderr, "slm run: prompt %zu tokens in %.2f s (%.1f tok/s), generated %ld tokens in "
            "%.2f s (%.1f tok/s), %s\n",
            n_prompt, t1 - t0, (double)n_prompt / (t1 - t0), n_gen, t2 - t1,
            n_gen ? (double)n_gen / (t2 - t1) : 0.0, cm->be->ops->describe(cm->be));
done:
    slm_detok_free(dt);
    slm_sampler_free(smp);
    slm_session_free(s);
    return rc;
}

int slm_cmd_run(int argc, char **argv)
{
    run_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    slm_cli_model cm;
    if (slm_cli_load("run", &o.c, &cm))
        return 1;
    slm_tokenizer *tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (slm_tokenizer_load(cm.m->gguf, &tok))
        rc = slm_cli_fail("run", "%s", slm_last_error());
    if (!rc)
        rc = render(&o, cm.m, &text);
    if (!rc && slm_tokenizer_encode_alloc(tok, text, !o.raw, &ids, &n))
        rc = slm_cli_fail("run", "%s", slm_last_error());
    if (!rc)
        rc = generate(&o, &cm, tok, ids, n);
    free(ids);
    free(text);
    slm_tokenizer_free(tok);
    slm_cli_unload(&cm);
    return rc;
}
