/*
 * cmd_chat.c — `slm chat`: an interactive conversation that keeps history.
 * Each line read from stdin is a user message; the answer is streamed to
 * stdout and becomes an assistant message in the history. "/reset" forgets
 * the history, "/exit" or EOF ends.
 *
 * Every turn is one request to the engine of slm.h carrying the WHOLE
 * conversation as messages (system + history + the new user message), as
 * an HTTP client of `slm serve` would send it. Nothing is kept in the chat
 * between turns but the text: the engine's prefix cache finds the full KV
 * blocks (16 tokens) the previous turn's prompt and answer left behind, so
 * a turn evaluates only the new text plus at most one partly filled block
 * (the timings line says how many tokens came from the cache).
 *
 * When a conversation grows past the context, the oldest exchanges (never
 * the system message) are dropped until the rendering plus room for the
 * answer fits; stderr says so. A message too long on its own is refused with
 * an error line (the chat goes on; the exit status becomes 1).
 *
 * Not here: multi-line input, editing, saving conversations.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct {
    slm_cli_common c;
    const char *system, *chat_template;
    long n_predict, n_ctx;
    slm_sampling sp;
} chat_opts;

/* The conversation. Every content string is malloc'd and owned here; roles
 * are string literals. msgs[0] is the system message when there is one. */
typedef struct {
    slm_message *msgs;
    int n, cap;
} history;

typedef struct {
    const chat_opts *o;
    slm_model *m;
    slm_model_info info;
    slm_engine *e;  /* one sequence; its prefix cache outlives each turn */
    history h;
    int turn;       /* answers since the start or the last /reset (seeds the sampler) */
} chat;

static void help(void)
{
    printf("usage: slm chat [options]\n\n"
           "An interactive chat: each line on stdin is a user message, answered on stdout\n"
           "with the whole conversation as context; timings go to stderr after each answer.\n"
           "A line \"/reset\" forgets the conversation, \"/exit\" (or end of input) ends it.\n"
           "When the conversation outgrows the context, the oldest exchanges are dropped\n"
           "(the system message is kept), and stderr says so.\n\n"
           "  -s, --system TEXT      the system message (default: the model template's own)\n"
           "  -n, --n-predict N      most tokens per answer (default 512); the context keeps\n"
           "                         room for min(N, ctx/2) of them\n"
           "  -c, --ctx N            context size in tokens (default 2048)\n"
           "  --chat-template NAME   chatml, llama3, llama2, mistral, phi3, gemma, exaone\n"
           "                         or plain (base models)\n"
           "                         (default: recognised from the model)\n"
           "%s"
           "  --seed N               random seed of the first answer; answer k uses N+k\n"
           "                         (default 1)\n%s",
           slm_cli_sampling_help, slm_cli_common_help);
}

/* Returns 0 to go on, -1 after --help, >0 on error. */
static int parse(int argc, char **argv, chat_opts *o)
{
    memset(o, 0, sizeof *o);
    slm_cli_common_init(&o->c);
    slm_sampling_default(&o->sp);
    o->sp.seed = 1;
    o->n_predict = 512, o->n_ctx = 2048;
    for (int i = 1; i < argc; i++) {
        int c = slm_cli_common_opt("chat", &o->c, argc, argv, &i);
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
        } else if (!v) {
            return slm_cli_fail("chat", "unknown or incomplete option '%s' (see slm chat --help)",
                                a);
        } else if (!strcmp(a, "-s") || !strcmp(a, "--system")) {
            o->system = v;
        } else if (!strcmp(a, "--chat-template")) {
            o->chat_template = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            ok = slm_cli_int("chat", a, v, 1, 1 << 20, &o->n_predict);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            ok = slm_cli_int("chat", a, v, 16, 1 << 20, &o->n_ctx);
        } else if ((sc = slm_cli_sampling_opt("chat", &o->sp, a, v)) != 0) {
            ok = sc > 0;
        } else {
            return slm_cli_fail("chat", "unknown option '%s' (see slm chat --help)", a);
        }
        if (!ok)
            return 1;
        i++;
    }
    return 0;
}

/* --- history ----------------------------------------------------------------- */

/* Appends a copy of content; false on out of memory (history unchanged). */
static bool history_push(history *h, const char *role, const char *content, size_t len)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        slm_message *p = realloc(h->msgs, (size_t)cap * sizeof *p);
        if (!p)
            return false;
        h->msgs = p, h->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c)
        return false;
    memcpy(c, content, len);
    c[len] = '\0';
    h->msgs[h->n++] = (slm_message){role, c};
    return true;
}

/* Removes msgs[i..i+k). */
static void history_drop(history *h, int i, int k)
{
    for (int j = i; j < i + k; j++)
        free((char *)h->msgs[j].content);
    memmove(h->msgs + i, h->msgs + i + k, (size_t)(h->n - i - k) * sizeof *h->msgs);
    h->n -= k;
}

static void history_free(history *h)
{
    history_drop(h, 0, h->n);
    free(h->msgs);
    memset(h, 0, sizeof *h);
}

/* Index of the first message that is not the system message. */
static int first_turn(const history *h)
{
    return h->n && !strcmp(h->msgs[0].role, "system") ? 1 : 0;
}

/* --- one turn ---------------------------------------------------------------- */

/* Makes the history (whose last message is the new user message) fit the
 * context with room for the answer, dropping the oldest exchanges; *n gets
 * the prompt's tokens. Returns 0; 2 when the message cannot fit even alone
 * (it is removed again; error line printed); 1 on other errors. */
static int fit(chat *c, int *n)
{
    long room = c->o->n_predict < c->o->n_ctx / 2 ? c->o->n_predict : c->o->n_ctx / 2;
    int dropped = 0;
    for (;;) {
        if (slm_model_count_message_tokens(c->m, c->h.msgs, c->h.n, c->o->chat_template, n))
            return slm_cli_fail("chat", "%s", slm_last_error());
        if (*n + room <= c->o->n_ctx)
            break;
        int f = first_turn(&c->h);
        if (f >= c->h.n - 1) /* nothing left to drop but the new message */
            break;
        /* Drop the oldest message and, if it was a user's, the answer to it,
         * so the history still starts with a user message. */
        int k = 1;
        if (!strcmp(c->h.msgs[f].role, "user") && f + 1 < c->h.n - 1 &&
            !strcmp(c->h.msgs[f + 1].role, "assistant"))
            k = 2;
        history_drop(&c->h, f, k);
        dropped += k;
    }
    if (dropped)
        fprintf(stderr, "slm chat: context full: dropped the %d oldest message%s to fit "
                "--ctx %ld\n", dropped, dropped == 1 ? "" : "s", c->o->n_ctx);
    if (*n + 1 > c->o->n_ctx) {
        slm_cli_fail("chat", "the message makes a prompt of %d tokens, longer than the "
                     "context of %ld (raise --ctx); it was not sent", *n, c->o->n_ctx);
        history_drop(&c->h, c->h.n - 1, 1);
        return 2;
    }
    return 0;
}

/* Answers the user message just appended to the history. Returns 0; 2 when
 * the message was refused (the chat goes on); 1 on a fatal error. */
static int answer(chat *c)
{
    int n;
    int rc = fit(c, &n);
    if (rc)
        return rc;
    slm_sampling sp = c->o->sp;
    sp.seed += (uint64_t)c->turn;
    slm_request_params rp;
    slm_request_params_default(&rp);
    rp.messages = c->h.msgs;
    rp.n_messages = c->h.n;
    rp.chat_template = c->o->chat_template;
    rp.sampling = &sp;
    rp.max_tokens = (int)c->o->n_predict;
    slm_cli_answer a;
    rc = slm_cli_generate("chat", c->e, &rp, true, &a);
    if (!rc && !history_push(&c->h, "assistant", a.text, a.len))
        rc = slm_cli_fail("chat", "out of memory");
    if (!rc) {
        c->turn++;
        if (a.result.finish == SLM_FINISH_LENGTH && a.result.completion_tokens < c->o->n_predict)
            fprintf(stderr, "slm chat: the answer was cut short: the context of %ld tokens is "
                    "full\n", c->o->n_ctx);
        slm_cli_timings("chat", &a.result, c->info.backend, true);
    }
    free(a.text);
    return rc;
}

/* --- the loop ---------------------------------------------------------------- */

/* Reads lines until EOF or /exit. Returns the exit status. */
static int loop(chat *c)
{
    bool tty = isatty(0);
    char *line = NULL;
    size_t line_cap = 0;
    int status = 0;
    for (;;) {
        if (tty)
            fputs("> ", stderr), fflush(stderr);
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) {
            if (tty)
                fputc('\n', stderr);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (!strcmp(line, "/exit"))
            break;
        if (!strcmp(line, "/reset")) {
            history_drop(&c->h, first_turn(&c->h), c->h.n - first_turn(&c->h));
            c->turn = 0;
            if (tty)
                fputs("(the conversation is forgotten)\n", stderr);
            continue;
        }
        if (!history_push(&c->h, "user", line, (size_t)len)) {
            status = slm_cli_fail("chat", "out of memory");
            break;
        }
        int rc = answer(c);
        if (rc == 2) {
            status = 1;
            continue;
        }
        if (rc) {
            status = 1;
            break;
        }
    }
    free(line);
    return status;
}

int slm_cmd_chat(int argc, char **argv)
{
    chat_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    chat c = {.o = &o};
    if (slm_cli_load("chat", &o.c, &c.m, &c.info))
        return 1;
    rc = slm_cli_check_template("chat", c.m, &c.info, o.chat_template);
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = (int)o.n_ctx;
    ep.max_running = 1;
    if (!rc && slm_engine_open(c.m, &ep, &c.e))
        rc = slm_cli_fail("chat", "%s", slm_last_error());
    if (!rc && o.system && !history_push(&c.h, "system", o.system, strlen(o.system)))
        rc = slm_cli_fail("chat", "out of memory");
    if (!rc)
        rc = loop(&c);
    history_free(&c.h);
    slm_engine_close(c.e, 0);
    slm_model_close(c.m);
    return rc;
}
