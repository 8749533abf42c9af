/*
 * cmd_run.c — `slm run`: generates text for one prompt and streams it to
 * stdout, then prints one line of timings on stderr. The prompt is sent as
 * one user message, which the engine renders with the model's chat template
 * (or --chat-template's), unless --raw sends it as text. Generation goes
 * through the public engine of slm.h, as `slm chat` and `slm serve` do: one
 * request on an engine of one sequence; it stops at an end-of-generation
 * token, -n or the context.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    slm_cli_common c;
    const char *prompt, *chat_template;
    long n_predict, n_ctx;
    bool raw;
    slm_sampling sp;
} run_opts;

static void help(void)
{
    printf("usage: slm run -p PROMPT [options]\n\n"
           "Generates a continuation of PROMPT and streams it to stdout; timings go to stderr.\n\n"
           "  -p, --prompt TEXT      the prompt (the user message unless --raw)\n"
           "  -n, --n-predict N      most tokens to generate (default 128)\n"
           "  -c, --ctx N            context size in tokens (default 2048)\n"
           "  --raw                  use the prompt as is, without the chat template\n"
           "                         (special tokens such as <|im_start|> are recognised)\n"
           "  --chat-template NAME   chatml, llama3, llama2, mistral, phi3, gemma, exaone\n"
           "                         or plain (base models)\n"
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
    slm_sampling_default(&o->sp);
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

static int generate(const run_opts *o, slm_model *m, const slm_model_info *info)
{
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = (int)o->n_ctx;
    ep.max_running = 1;
    slm_engine *e = NULL;
    if (slm_engine_open(m, &ep, &e))
        return slm_cli_fail("run", "%s", slm_last_error());
    slm_message msg = {"user", o->prompt};
    slm_request_params rp;
    slm_request_params_default(&rp);
    if (o->raw) {
        rp.prompt = o->prompt;
    } else {
        rp.messages = &msg;
        rp.n_messages = 1;
        rp.chat_template = o->chat_template;
    }
    rp.sampling = &o->sp;
    rp.max_tokens = (int)o->n_predict;
    slm_cli_answer a;
    int rc = slm_cli_generate("run", e, &rp, false, &a);
    slm_engine_close(e, 0);
    if (!rc)
        slm_cli_timings("run", &a.result, info->backend, false);
    return rc;
}

int slm_cmd_run(int argc, char **argv)
{
    run_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    slm_model *m;
    slm_model_info info;
    if (slm_cli_load("run", &o.c, &m, &info))
        return 1;
    if (!o.raw)
        rc = slm_cli_check_template("run", m, &info, o.chat_template);
    if (!rc)
        rc = generate(&o, m, &info);
    slm_model_close(m);
    return rc;
}
