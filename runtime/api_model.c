/*
 * api_model.c — the public model handle of slm.h: opening a GGUF onto a
 * backend chosen by name (the handle then owns backend and tokenizer), its
 * facts for clients, and the text → token path every request takes
 * (api_model.h). The model itself is runtime/model.c's slm_model.
 */
#include "api_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_options.h"
#include "backend_registry.h"
#include "status.h"
#include "tokenizer.h"

void slm_model_params_default(slm_model_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->device_index = -1;
}

/* Failures that say "not on this device" rather than "not this file". */
static bool device_reason(slm_status st)
{
    return st == SLM_STATUS_OUT_OF_MEMORY || st == SLM_STATUS_UNSUPPORTED ||
           st == SLM_STATUS_DEVICE;
}

static slm_status load_named(const char *path, const char *name, const slm_backend_params *bp,
                             void (*progress)(float, void *), void *user, slm_backend **be,
                             slm_model **m)
{
    slm_status st = slm_backend_open_by_name(name, bp, be);
    if (!st && (st = slm_model_load(path, *be, progress, user, m))) {
        (*be)->ops->close(*be);
        *be = NULL;
    }
    return st;
}

/* Appends "name: why" to the fallback note. */
static void note_fallback(char *note, size_t n, const char *name, const char *why)
{
    size_t used = note ? strlen(note) : 0;
    if (note && used + 1 < n)
        snprintf(note + used, n - used, "%s%s: %s", used ? "; " : "", name, why);
}

slm_status slm_model_load_on(const char *path, const char *name, const slm_backend_params *bp,
                             void (*progress)(float, void *), void *user, slm_backend **be,
                             slm_model **m, char *fell_back, size_t fell_back_n)
{
    *be = NULL;
    *m = NULL;
    if (fell_back && fell_back_n)
        fell_back[0] = '\0';
    if (!slm_backend_is_auto(name))
        return load_named(path, name, bp, progress, user, be, m);
    /* auto: registry order (GPU backends first, the CPU last). A backend
     * that finds no GPU is skipped quietly; one that opens but cannot take
     * the model passes it on to the next, and the note says why. */
    slm_status st = SLM_STATUS_DEVICE;
    for (int i = 0; i < slm_backend_count(); i++) {
        const slm_backend_ops *ops = slm_backend_at(i);
        /* GPU backends refuse a CPU implementation (lavapipe) here; the
         * CPU backend has one device and ignores the index. */
        slm_backend_params p = *bp;
        if (p.device_index == SLM_DEVICE_ANY)
            p.device_index = SLM_DEVICE_GPU_ONLY;
        if ((st = slm_backend_open_at(i, &p, be)))
            continue;
        st = slm_model_load(path, *be, progress, user, m);
        if (!st)
            return SLM_OK;
        (*be)->ops->close(*be);
        *be = NULL;
        if (!device_reason(st))
            return st; /* the file itself is at fault: no backend will do better */
        note_fallback(fell_back, fell_back_n, ops->name, slm_last_error());
    }
    return slm_error(st, "no backend could load %s: %s", path, slm_last_error());
}

slm_status slm_model_open(const char *path, const slm_model_params *p, slm_model **out)
{
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_model_open: out is NULL");
    *out = NULL;
    if (!path)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_model_open: path is NULL");
    slm_model_params dp;
    slm_model_params_default(&dp);
    if (p) {
        if (p->size < sizeof dp)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "slm_model_open: params.size %zu is smaller than this library's "
                             "%zu (use slm_model_params_default)", p->size, sizeof dp);
        dp = *p;
    }
    if (dp.n_threads < 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_model_open: n_threads %d < 0",
                         dp.n_threads);
    slm_backend_params bp;
    slm_backend_params_default(&bp);
    bp.n_threads = dp.n_threads;
    bp.device_index = dp.device_index < 0 ? SLM_DEVICE_ANY : dp.device_index;
    char store[4096];
    slm_status ost = slm_backend_options_parse(dp.options, &bp, store, sizeof store);
    if (ost)
        return ost;
    slm_backend *be = NULL;
    slm_model *m = NULL;
    char fell_back[sizeof m->fallback];
    slm_status st = slm_model_load_on(path, dp.backend, &bp, dp.progress, dp.progress_user, &be,
                                      &m, fell_back, sizeof fell_back);
    if (st)
        return st;
    memcpy(m->fallback, fell_back, sizeof m->fallback);
    m->owned_backend = be;
    if (slm_gguf_get_str_copy(m->gguf, "general.name", m->name, sizeof m->name) != SLM_OK ||
        !m->name[0]) {
        const char *base = strrchr(m->path, '/');
        base = base ? base + 1 : m->path;
        size_t n = strlen(base) < sizeof m->name - 1 ? strlen(base) : sizeof m->name - 1;
        memcpy(m->name, base, n); /* a long file name is cut, not an error */
        m->name[n] = 0;
    }
    st = slm_tokenizer_load(m->gguf, &m->tok);
    if (st) {
        slm_model_free(m);
        return st;
    }
    *out = m;
    return SLM_OK;
}

void slm_model_close(slm_model *m) { slm_model_free(m); }

slm_status slm_model_get_info(const slm_model *m, slm_model_info *info)
{
    if (!m || !info || info->size < sizeof *info)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "slm_model_get_info: NULL argument or info.size not set");
    int64_t n_params = 0;
    for (int64_t i = 0; i < slm_gguf_tensor_count(m->gguf); i++)
        n_params += slm_gguf_tensor_at(m->gguf, i)->n_elements;
    size_t size = info->size;
    memset(info, 0, sizeof *info);
    info->size = size;
    info->name = m->name;
    info->arch = m->hp.arch;
    info->backend = m->be->ops->describe(m->be);
    info->n_vocab = m->hp.n_vocab;
    info->n_ctx_train = m->hp.n_ctx_train;
    info->n_embd = m->hp.n_embd;
    info->n_layer = m->hp.n_layer;
    info->n_params = n_params;
    info->file_bytes = slm_gguf_file_size(m->gguf);
    info->fallback = m->fallback;
    slm_chat_template t;
    const char *why = slm_model_chat_template(m, &t);
    info->chat_template = slm_chat_format_name(t.format);
    info->chat_template_note = why ? why : "";
    info->tokenizer_warning = slm_tokenizer_warning(m->tok);
    return SLM_OK;
}

slm_status slm_model_encode(const slm_model *m, const char *text, bool special, int32_t **ids,
                            int *n)
{
    *ids = NULL;
    *n = 0;
    if (!m->tok)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "model has no tokenizer loaded");
    size_t got = 0;
    slm_status st = slm_tokenizer_encode_alloc(m->tok, text, special, ids, &got);
    *n = (int)got;
    return st;
}

slm_status slm_model_count_message_tokens(const slm_model *m, const slm_message *msgs, int n,
                                          const char *chat_template, int *n_tokens)
{
    if (!m || !n_tokens || (n > 0 && !msgs) || n < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "slm_model_count_message_tokens: NULL argument or no messages");
    int32_t *ids = NULL;
    slm_status st = slm_model_encode_chat(m, msgs, n, chat_template, &ids, n_tokens);
    free(ids);
    return st;
}

slm_status slm_model_count_tokens(const slm_model *m, const char *text, int *n)
{
    if (!m || !text || !n)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_model_count_tokens: NULL argument");
    int32_t *ids;
    slm_status st = slm_model_encode(m, text, true, &ids, n);
    free(ids);
    return st;
}

const char *slm_model_chat_template(const slm_model *m, slm_chat_template *t)
{
    const char *s = NULL;
    size_t len = 0;
    slm_gguf_get_str(m->gguf, "tokenizer.chat_template", &s, &len);
    if (slm_chat_detect(s, len, t))
        return NULL;
    if (!s) /* no template: the vocabulary's turn markers, else plain */
        return slm_chat_from_vocab(m->tok, t);
    return "the model's chat template is not one slm recognises";
}

/* Renders messages with the template named (NULL: the model's), and where
 * their contents lie when spans is not NULL. */
static slm_status render_chat(const slm_model *m, const slm_message *msgs, int n,
                              const char *template_name, char **out, slm_tok_range **spans,
                              size_t *n_spans)
{
    slm_chat_template t;
    if (template_name) {
        slm_status st = slm_chat_from_name(template_name, &t);
        if (st)
            return st;
    } else {
        slm_model_chat_template(m, &t); /* unrecognised: ChatML, the documented fallback */
    }
    slm_chat_msg *cm = malloc((size_t)(n > 0 ? n : 1) * sizeof *cm);
    if (!cm)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory rendering %d messages", n);
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            free(cm);
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "message %d has no %s", i,
                             msgs[i].role ? "content" : "role");
        }
        cm[i] = (slm_chat_msg){msgs[i].role, msgs[i].content};
    }
    slm_status st = slm_chat_render_spans(&t, cm, n, true, out, spans, n_spans);
    free(cm);
    return st;
}

slm_status slm_model_render_chat(const slm_model *m, const slm_message *msgs, int n,
                                 const char *template_name, char **out)
{
    return render_chat(m, msgs, n, template_name, out, NULL, NULL);
}

slm_status slm_model_encode_chat(const slm_model *m, const slm_message *msgs, int n,
                                 const char *template_name, int32_t **ids, int *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (!m->tok)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "model has no tokenizer loaded");
    char *text = NULL;
    slm_tok_range *spans = NULL;
    size_t n_spans = 0, got = 0;
    slm_status st = render_chat(m, msgs, n, template_name, &text, &spans, &n_spans);
    if (!st)
        st = slm_tokenizer_encode_spans(m->tok, text, true, spans, n_spans, ids, &got);
    *n_ids = (int)got;
    free(text);
    free(spans);
    return st;
}

slm_status slm_model_token_piece(const slm_model *m, int32_t token, const char **piece,
                                 size_t *len)
{
    if (!m || !m->tok || !piece || !len)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_model_token_piece: NULL argument");
    *piece = slm_tokenizer_piece(m->tok, token, true, len);
    if (!*piece)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "token %d is outside the vocabulary of %d",
                         token, slm_tokenizer_n_vocab(m->tok));
    return SLM_OK;
}
