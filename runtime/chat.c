/*
 * chat.c — see chat.h. Rendering appends to a growing string; each family
 * is one small function. Formats follow ../shared/gguf-facts.md §6, and the
 * Hugging Face Jinja templates for the families added since (EXAONE 3) —
 * where llama.cpp's C++ rendering of a family differs from the model's own
 * template, the template wins and the function says how they differ.
 */
#include "chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

/* The text being rendered and where the messages' contents lie in it. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
    slm_tok_range *spans;
    size_t n_spans, cap_spans;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* Records b->s[begin..len) as content (ordinary text when encoded). */
static void mark_content(sbuf *b, size_t begin)
{
    if (b->oom || b->len == begin)
        return;
    if (b->n_spans == b->cap_spans) {
        size_t cap = b->cap_spans ? 2 * b->cap_spans : 8;
        slm_tok_range *p = realloc(b->spans, cap * sizeof *p);
        if (!p) {
            b->oom = true;
            return;
        }
        b->spans = p, b->cap_spans = cap;
    }
    b->spans[b->n_spans++] = (slm_tok_range){begin, b->len};
}

static void put_content(sbuf *b, const char *s)
{
    size_t begin = b->len;
    puts_(b, s);
    mark_content(b, begin);
}

/* Content with leading and trailing whitespace removed (llama3, gemma trim). */
static void put_trimmed(sbuf *b, const char *s)
{
    const char *e = s + strlen(s);
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    size_t begin = b->len;
    put(b, s, (size_t)(e - s));
    mark_content(b, begin);
}

static const char *names[SLM_CHAT_FORMAT_COUNT] = {"chatml", "llama3", "llama2", "phi3",
                                                   "gemma",  "exaone", "plain"};

const char *slm_chat_format_name(slm_chat_format f)
{
    return f < SLM_CHAT_FORMAT_COUNT ? names[f] : "unknown";
}

static bool has(const char *t, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(t + i, needle, n))
            return true;
    return false;
}

bool slm_chat_detect(const char *t, size_t len, slm_chat_template *out)
{
    out->default_system = NULL;
    out->format = SLM_CHAT_CHATML;
    if (!t)
        return false;
    if (has(t, len, "<|im_start|>")) {
        static const char *systems[] = {
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
            "You are a helpful assistant.",
        };
        for (size_t i = 0; i < sizeof systems / sizeof systems[0]; i++)
            if (has(t, len, systems[i])) {
                out->default_system = systems[i];
                break;
            }
        return true;
    }
    if (has(t, len, "<|start_header_id|>"))
        out->format = SLM_CHAT_LLAMA3;
    else if (has(t, len, "[INST]"))
        out->format = SLM_CHAT_LLAMA2;
    else if (has(t, len, "<|assistant|>") && has(t, len, "<|end|>"))
        out->format = SLM_CHAT_PHI3;
    else if (has(t, len, "<start_of_turn>"))
        out->format = SLM_CHAT_GEMMA;
    else if (has(t, len, "[|system|]") && has(t, len, "[|assistant|]") &&
             has(t, len, "[|endofturn|]"))
        out->format = SLM_CHAT_EXAONE; /* llama.cpp's markers for EXAONE 3 */
    else
        return false;
    return true;
}

/* Turn markers that, as tokens of a vocabulary, name its chat family; the
 * note is what slm_chat_from_vocab reports. */
static const struct {
    const char *marker, *also, *note;
    slm_chat_format format;
} vocab_markers[] = {
    {"<|im_start|>", "<|im_end|>",
     "the model has no chat template; its vocabulary has <|im_start|>", SLM_CHAT_CHATML},
    {"<|start_header_id|>", "<|eot_id|>",
     "the model has no chat template; its vocabulary has <|start_header_id|>", SLM_CHAT_LLAMA3},
    {"<start_of_turn>", "<end_of_turn>",
     "the model has no chat template; its vocabulary has <start_of_turn>", SLM_CHAT_GEMMA},
    {"<|assistant|>", "<|end|>",
     "the model has no chat template; its vocabulary has <|assistant|>", SLM_CHAT_PHI3},
    {"[|assistant|]", "[|endofturn|]",
     "the model has no chat template; its vocabulary has [|assistant|]", SLM_CHAT_EXAONE},
    {"[INST]", "[/INST]", "the model has no chat template; its vocabulary has [INST]",
     SLM_CHAT_LLAMA2},
};

static bool has_token(const slm_tokenizer *t, const char *text)
{
    return slm_tokenizer_find(t, text, strlen(text)) >= 0;
}

const char *slm_chat_from_vocab(const slm_tokenizer *t, slm_chat_template *out)
{
    out->default_system = NULL;
    out->format = SLM_CHAT_PLAIN;
    for (size_t i = 0; t && i < sizeof vocab_markers / sizeof vocab_markers[0]; i++)
        if (has_token(t, vocab_markers[i].marker) && has_token(t, vocab_markers[i].also)) {
            out->format = vocab_markers[i].format;
            return vocab_markers[i].note;
        }
    return "the model has no chat template nor turn-marker tokens (a base model)";
}

slm_status slm_chat_from_name(const char *name, slm_chat_template *out)
{
    out->default_system = NULL;
    for (int i = 0; i < SLM_CHAT_FORMAT_COUNT; i++)
        if (!strcmp(name, names[i])) {
            out->format = (slm_chat_format)i;
            return SLM_OK;
        }
    if (!strcmp(name, "mistral")) {
        out->format = SLM_CHAT_LLAMA2;
        return SLM_OK;
    }
    return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                     "chat template '%s' is unknown (known: chatml, llama3, llama2, mistral, "
                     "phi3, gemma, exaone, plain)",
                     name);
}

const char *slm_chat_end_of_turn(slm_chat_format f)
{
    switch (f) {
    case SLM_CHAT_CHATML: return "<|im_end|>";
    case SLM_CHAT_LLAMA3: return "<|eot_id|>";
    case SLM_CHAT_LLAMA2: return "</s>";
    case SLM_CHAT_PHI3: return "<|end|>";
    case SLM_CHAT_GEMMA: return "<end_of_turn>";
    case SLM_CHAT_EXAONE: return "[|endofturn|]";
    default: return "";
    }
}

static void render_chatml(sbuf *b, const slm_chat_msg *m, int n, bool gen)
{
    for (int i = 0; i < n; i++) {
        puts_(b, "<|im_start|>");
        puts_(b, m[i].role);
        puts_(b, "\n");
        put_content(b, m[i].content);
        puts_(b, "<|im_end|>\n");
    }
    if (gen)
        puts_(b, "<|im_start|>assistant\n");
}

static void render_llama3(sbuf *b, const slm_chat_msg *m, int n, bool gen)
{
    for (int i = 0; i < n; i++) {
        puts_(b, "<|start_header_id|>");
        puts_(b, m[i].role);
        puts_(b, "<|end_header_id|>\n\n");
        put_trimmed(b, m[i].content);
        puts_(b, "<|eot_id|>");
    }
    if (gen)
        puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama 2 / Mistral: the system text goes inside the first [INST]. BOS comes
 * from the tokenizer for the first turn; later turns carry <s> literally. */
static void render_llama2(sbuf *b, const slm_chat_msg *m, int n)
{
    const char *sys = NULL;
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "system")) {
            sys = m[i].content;
        } else if (!strcmp(m[i].role, "user")) {
            puts_(b, first ? "[INST] " : "<s>[INST] ");
            if (sys) {
                puts_(b, "<<SYS>>\n");
                put_content(b, sys);
                puts_(b, "\n<</SYS>>\n\n");
                sys = NULL;
            }
            put_trimmed(b, m[i].content);
            puts_(b, " [/INST]");
            first = false;
        } else {
            puts_(b, " ");
            put_trimmed(b, m[i].content);
            puts_(b, " </s>");
        }
    }
}

static void render_phi3(sbuf *b, const slm_chat_msg *m, int n, bool gen)
{
    for (int i = 0; i < n; i++) {
        puts_(b, "<|");
        puts_(b, m[i].role);
        puts_(b, "|>\n");
        put_content(b, m[i].content);
        puts_(b, "<|end|>\n");
    }
    if (gen)
        puts_(b, "<|assistant|>\n");
}

/* Gemma has no system role: as in llama.cpp, the system texts (trimmed,
 * concatenated) open the next user turn, followed by a blank line.
 * NOTE: Gemma 3's Jinja template takes only a leading system message and
 * does not trim it; for the usual conversation (one system message first,
 * no surrounding whitespace) the two agree. */
static void render_gemma(sbuf *b, const slm_chat_msg *m, int n, bool gen)
{
    int sys_from = -1; /* first system message not yet placed */
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "system")) {
            if (sys_from < 0)
                sys_from = i;
            continue;
        }
        bool user = !strcmp(m[i].role, "user");
        puts_(b, user ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
        if (user && sys_from >= 0) {
            size_t before = b->len;
            for (int j = sys_from; j < i; j++)
                if (!strcmp(m[j].role, "system"))
                    put_trimmed(b, m[j].content);
            if (b->len > before) /* an all-blank system text adds nothing */
                puts_(b, "\n\n");
            sys_from = -1;
        }
        put_trimmed(b, m[i].content);
        puts_(b, "<end_of_turn>\n");
    }
    if (gen)
        puts_(b, "<start_of_turn>model\n");
}

/* EXAONE 3.0/3.5 (LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct's template): contents
 * verbatim, an empty system turn when the conversation does not open with
 * one; a user turn ends with a newline only. NOTE: llama.cpp's
 * LLM_CHAT_TEMPLATE_EXAONE_3 trims contents and omits the empty system turn;
 * the model was trained on the template's text. */
static void render_exaone(sbuf *b, const slm_chat_msg *m, int n, bool gen)
{
    if (n == 0 || strcmp(m[0].role, "system"))
        puts_(b, "[|system|][|endofturn|]\n");
    for (int i = 0; i < n; i++) {
        puts_(b, "[|");
        puts_(b, m[i].role);
        puts_(b, "|]");
        put_content(b, m[i].content);
        puts_(b, strcmp(m[i].role, "user") ? "[|endofturn|]\n" : "\n");
    }
    if (gen)
        puts_(b, "[|assistant|]");
}

/* Base models have no turns: the contents as one text, a blank line
 * between messages, so the model continues the last one. Nothing marks the
 * generation prompt. */
static void render_plain(sbuf *b, const slm_chat_msg *m, int n)
{
    for (int i = 0; i < n; i++) {
        if (i)
            puts_(b, "\n\n");
        put_content(b, m[i].content);
    }
}

slm_status slm_chat_render(const slm_chat_template *t, const slm_chat_msg *msgs, int n,
                           bool gen, char **out)
{
    return slm_chat_render_spans(t, msgs, n, gen, out, NULL, NULL);
}

slm_status slm_chat_render_spans(const slm_chat_template *t, const slm_chat_msg *msgs, int n,
                                 bool gen, char **out, slm_tok_range **spans, size_t *n_spans)
{
    *out = NULL;
    if (spans)
        *spans = NULL, *n_spans = 0;
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content ||
            (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")))
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "chat: message %d has role '%s' (expected system, user or "
                             "assistant)",
                             i, r ? r : "(null)");
    }
    sbuf b = {0};
    slm_chat_msg *all = NULL;
    if (t->default_system && (n == 0 || strcmp(msgs[0].role, "system"))) {
        all = malloc(((size_t)n + 1) * sizeof *all);
        if (!all)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "chat: out of memory");
        all[0] = (slm_chat_msg){"system", t->default_system};
        memcpy(all + 1, msgs, (size_t)n * sizeof *all);
        msgs = all;
        n++;
    }
    switch (t->format) {
    case SLM_CHAT_LLAMA3: render_llama3(&b, msgs, n, gen); break;
    case SLM_CHAT_LLAMA2: render_llama2(&b, msgs, n); break;
    case SLM_CHAT_PHI3: render_phi3(&b, msgs, n, gen); break;
    case SLM_CHAT_GEMMA: render_gemma(&b, msgs, n, gen); break;
    case SLM_CHAT_EXAONE: render_exaone(&b, msgs, n, gen); break;
    case SLM_CHAT_PLAIN: render_plain(&b, msgs, n); break;
    default: render_chatml(&b, msgs, n, gen); break;
    }
    free(all);
    puts_(&b, "");
    if (b.oom) {
        free(b.s);
        free(b.spans);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "chat: out of memory");
    }
    *out = b.s;
    if (spans)
        *spans = b.spans, *n_spans = b.n_spans;
    else
        free(b.spans);
    return SLM_OK;
}
