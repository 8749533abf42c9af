/*
 * cmd_chat.c — `slm chat`: an interactive conversation that keeps history.
 * Each line read from stdin is a user message; the whole conversation is
 * rendered through the model's chat template (as `slm run` renders one
 * prompt), the answer is streamed to stdout and becomes an assistant
 * message in the history. "/reset" forgets the history, "/exit" or EOF ends.
 *
 * The one session (KV cache) lives for the whole chat. `held` mirrors the
 * tokens whose K/V it holds (invariant: held[0..s->n_past) are exactly those
 * tokens, in order), so each turn evaluates only what the new rendering adds
 * beyond the longest common prefix with them: usually just the closing of
 * the last answer and the new user message.
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
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "cli.h"
#include "sampler.h"
#include "session.h"
#include "tokenizer.h"

typedef struct {
    slm_cli_common c;
    const char *system, *chat_template;
    long n_predict, n_ctx;
    slm_sampler_params sp;
} chat_opts;

/* The conversation. Every content string is malloc'd and owned here; roles
 * are string literals. msgs[0] is the system message when there is one. */
typedef struct {
    slm_chat_msg *msgs;
    int n, cap;
} history;

typedef struct {
    const chat_opts *o;
    slm_cli_model *cm;
    const slm_tokenizer *tok;
    slm_chat_template tmpl;
    slm_session *s;
    slm_detok *dt;
    int32_t *held;  /* [n_ctx]: the tokens in the session, see the file header */
    int32_t *ids;   /* [ids_cap]: the current rendering's tokens */
    size_t ids_cap;
    char *answer;   /* the answer being generated, [answer_cap] bytes */
    size_t answer_len, answer_cap;
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
           "  --chat-template NAME   chatml, llama3, llama2, mistral, phi3 or gemma\n"
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
    slm_sampler_params_default(&o->sp);
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
        slm_chat_msg *p = realloc(h->msgs, (size_t)cap * sizeof *p);
        if (!p)
            return false;
        h->msgs = p, h->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c)
        return false;
    memcpy(c, content, len);
    c[len] = '\0';
    h->msgs[h->n++] = (slm_chat_msg){role, c};
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

/* Renders the history with the generation prompt and tokenizes it into
 * c->ids; *n gets the count. Returns 0, or 1 after an error line. */
static int render_tokens(chat *c, size_t *n)
{
    char *text = NULL;
    if (slm_chat_render(&c->tmpl, c->h.msgs, c->h.n, true, &text))
        return slm_cli_fail("chat", "%s", slm_last_error());
    size_t len = strlen(text), need = len + 8;
    int rc = 0;
    if (need > c->ids_cap) {
        int32_t *p = realloc(c->ids, need * sizeof *p);
        if (!p) {
            free(text);
            return slm_cli_fail("chat", "out of memory");
        }
        c->ids = p, c->ids_cap = need;
    }
    if (slm_tokenizer_encode(c->tok, text, len, slm_tokenizer_add_bos(c->tok), true, c->ids,
                             c->ids_cap, n))
        rc = slm_cli_fail("chat", "%s", slm_last_error());
    free(text);
    return rc;
}

/* Makes the history (whose last message is the new user message) fit the
 * context with room for the answer, dropping the oldest exchanges; leaves
 * its tokens in c->ids[0..*n). Returns 0; 2 when the message cannot fit
 * even alone (it is removed again; error line printed); 1 on other errors. */
static int fit(chat *c, size_t *n)
{
    long room = c->o->n_predict < c->o->n_ctx / 2 ? c->o->n_predict : c->o->n_ctx / 2;
    int dropped = 0;
    for (;;) {
        if (render_tokens(c, n))
            return 1;
        if ((long)*n + room <= c->o->n_ctx)
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
    if (*n + 1 > (size_t)c->o->n_ctx) {
        slm_cli_fail("chat", "the message makes a prompt of %zu tokens, longer than the "
                     "context of %ld (raise --ctx); it was not sent", *n, c->o->n_ctx);
        history_drop(&c->h, c->h.n - 1, 1);
        return 2;
    }
    return 0;
}

static bool answer_put(chat *c, const char *s, size_t len)
{
    if (c->answer_len + len + 1 > c->answer_cap) {
        size_t cap = c->answer_cap ? c->answer_cap : 256;
        while (cap < c->answer_len + len + 1)
            cap *= 2;
        char *p = realloc(c->answer, cap);
        if (!p)
            return false;
        c->answer = p, c->answer_cap = cap;
    }
    memcpy(c->answer + c->answer_len, s, len);
    c->answer_len += len;
    return true;
}

static void emit(chat *c, const char *s, size_t len, bool *oom)
{
    if (!len)
        return;
    fwrite(s, 1, len, stdout);
    fflush(stdout);
    if (!answer_put(c, s, len))
        *oom = true;
}

/* Evaluates tokens[0..n) at the end of the session, keeping held in step. */
static slm_status eval(chat *c, const int32_t *tokens, int n)
{
    int at = c->s->n_past;
    slm_status st = slm_session_eval(c->s, tokens, n, NULL);
    if (st) {
        /* NOTE: a failure may leave some chunks evaluated; start afresh
         * rather than trust a half-updated cache. */
        slm_session_reset(c->s);
        return st;
    }
    memcpy(c->held + at, tokens, (size_t)n * sizeof *tokens);
    return SLM_OK;
}

/* Answers the user message just appended to the history. Returns 0; 2 when
 * the message was refused (the chat goes on); 1 on a fatal error. */
static int answer(chat *c)
{
    size_t n;
    int rc = fit(c, &n);
    if (rc)
        return rc;
    slm_session *s = c->s;
    /* Reuse the longest prefix the cache already holds; at least the last
     * token is evaluated again, for its logits. */
    size_t lcp = 0;
    while (lcp < (size_t)s->n_past && lcp < n && c->held[lcp] == c->ids[lcp])
        lcp++;
    if (lcp == n)
        lcp--;
    if (lcp == 0)
        slm_session_reset(s);
    else
        /* NOTE: truncating the sequence is safe: the block table is the
         * identity and attention reads positions <= each token's own, so
         * stale K/V past n_past is overwritten before it is ever read. */
        s->n_past = (int)lcp;

    slm_sampler_params sp = c->o->sp;
    sp.seed += (uint64_t)c->turn;
    slm_sampler *smp = NULL;
    if (slm_sampler_create(&sp, c->cm->m->hp.n_vocab, &smp))
        return slm_cli_fail("chat", "%s", slm_last_error());
    for (size_t i = 0; i < n; i++)
        slm_sampler_accept(smp, c->ids[i]);

    double t0 = slm_cli_now();
    if (eval(c, c->ids + lcp, (int)(n - lcp))) {
        slm_sampler_free(smp);
        return slm_cli_fail("chat", "%s", slm_last_error());
    }
    double t1 = slm_cli_now();
    c->answer_len = 0;
    slm_detok_reset(c->dt);
    bool oom = false, cut = false;
    long n_gen = 0;
    while (n_gen < c->o->n_predict) {
        int32_t t = slm_sampler_sample(smp, s->logits);
        if (slm_tokenizer_is_eog(c->tok, t))
            break;
        const char *piece;
        size_t len;
        if (slm_detok_feed(c->dt, t, &piece, &len) == SLM_OK)
            emit(c, piece, len, &oom);
        slm_sampler_accept(smp, t);
        n_gen++;
        if (n_gen == c->o->n_predict) /* the next turn evaluates t with its prompt */
            break;
        if (s->n_past == s->n_ctx) {
            cut = true;
            break;
        }
        if (eval(c, &t, 1)) {
            slm_sampler_free(smp);
            return slm_cli_fail("chat", "%s", slm_last_error());
        }
    }
    slm_sampler_free(smp);
    const char *rest;
    size_t rl;
    slm_detok_flush(c->dt, &rest, &rl);
    emit(c, rest, rl, &oom);
    putchar('\n');
    fflush(stdout);
    double t2 = slm_cli_now();
    if (oom || !history_push(&c->h, "assistant", c->answer ? c->answer : "", c->answer_len))
        return slm_cli_fail("chat", "out of memory");
    c->turn++;
    if (cut)
        fprintf(stderr, "slm chat: the answer was cut short: the context of %ld tokens is full\n",
                c->o->n_ctx);
    fprintf(stderr, "slm chat: prompt %zu tokens (%zu cached, %zu evaluated in %.2f s, %.1f "
            "tok/s), generated %ld tokens in %.2f s (%.1f tok/s), %s\n",
            n, lcp, n - lcp, t1 - t0, (double)(n - lcp) / (t1 - t0), n_gen, t2 - t1,
            n_gen ? (double)n_gen / (t2 - t1) : 0.0, c->cm->be->ops->describe(c->cm->be));
    return 0;
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
    slm_cli_model cm;
    if (slm_cli_load("chat", &o.c, &cm))
        return 1;
    chat c = {.o = &o, .cm = &cm};
    slm_tokenizer *tok = NULL;
    if (slm_tokenizer_load(cm.m->gguf, &tok))
        rc = slm_cli_fail("chat", "%s", slm_last_error());
    c.tok = tok;
    if (!rc)
        rc = slm_cli_chat_template("chat", o.chat_template, cm.m, &c.tmpl);
    if (!rc && (slm_session_create(cm.m, (int)o.n_ctx, 256, SLM_TYPE_F16, &c.s) ||
                slm_detok_create(tok, false, &c.dt)))
        rc = slm_cli_fail("chat", "%s", slm_last_error());
    slm_sampler *probe = NULL; /* bad sampling options fail now, not at the first answer */
    if (!rc && slm_sampler_create(&o.sp, cm.m->hp.n_vocab, &probe))
        rc = slm_cli_fail("chat", "%s", slm_last_error());
    slm_sampler_free(probe);
    if (!rc && !(c.held = malloc((size_t)o.n_ctx * sizeof *c.held)))
        rc = slm_cli_fail("chat", "out of memory");
    if (!rc && o.system && !history_push(&c.h, "system", o.system, strlen(o.system)))
        rc = slm_cli_fail("chat", "out of memory");
    if (!rc)
        rc = loop(&c);
    history_free(&c.h);
    free(c.answer);
    free(c.ids);
    free(c.held);
    slm_detok_free(c.dt);
    slm_session_free(c.s);
    slm_tokenizer_free(tok);
    slm_cli_unload(&cm);
    return rc;
}
