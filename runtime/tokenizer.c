/*
 * tokenizer.c — loading a tokenizer from GGUF metadata, the encode driver
 * (special-token splitting, then the BPE or SentencePiece segment encoder),
 * decoding and streaming detokenization. The two algorithms live in
 * tokenizer_bpe.c and tokenizer_spm.c; the shared struct in
 * tokenizer_impl.h.
 *
 * Load copies everything it needs out of the slm_gguf (texts into one
 * arena, pieces — the bytes each token stands for — into another), so
 * decoding a token is a table lookup and the file may be closed afterwards.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "tokenizer_impl.h"
#include "unicode.h"

/* --- small shared helpers ---------------------------------------------------- */

slm_status slm_tok_reserve(void **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return SLM_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: %zu bytes of scratch", need);
        c *= 2;
    }
    void *q = realloc(*p, c);
    if (!q)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: %zu bytes of scratch", c);
    *p = q;
    *cap = c;
    return SLM_OK;
}

slm_status slm_tok_ids_push(slm_tok_ids *o, int32_t id)
{
    if (o->n == o->cap) {
        size_t bytes = o->cap * sizeof(int32_t);
        void *p = o->v;
        slm_status st = slm_tok_reserve(&p, &bytes, (o->n + 1) * sizeof(int32_t));
        if (st)
            return st;
        o->v = p;
        o->cap = bytes / sizeof(int32_t);
    }
    o->v[o->n++] = id;
    return SLM_OK;
}

void slm_tok_scratch_free(slm_tok_scratch *s)
{
    free(s->sym);
    free(s->heap);
    free(s->pieces);
    free(s->pieces2);
    free(s->buf);
    pcre2_match_data_free(s->md);
    memset(s, 0, sizeof(*s));
}

/* FNV-1a: simple, and fast enough for token-sized keys. */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int32_t slm_tok_lookup(const slm_tokenizer *t, const char *text, size_t len)
{
    size_t i = (size_t)hash_bytes(text, len) & t->vhash_mask;
    for (;; i = (i + 1) & t->vhash_mask) {
        int32_t id = t->vhash[i];
        if (id < 0)
            return -1;
        if (t->text_len[id] == len && !memcmp(t->text + t->text_off[id], text, len))
            return id;
    }
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

/* --- loading ----------------------------------------------------------------- */

/* Appends one sentence to t->warning (cut when it is full: a warning is
 * for people, and the first ones say enough). */
static void warn(slm_tokenizer *t, const char *fmt, ...)
{
    size_t used = strlen(t->warning);
    if (used && used + 2 < sizeof t->warning) {
        memcpy(t->warning + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->warning + used, sizeof t->warning - used, fmt, ap);
    va_end(ap);
}

/* Reads an optional u32-ish special id; absent keeps *id. An id outside
 * the vocabulary also keeps it (llama.cpp too keeps its default then), but
 * is not silent: a wrong EOS means generation that never stops, so the key
 * and value go into t->warning. */
static slm_status read_id(slm_tokenizer *t, const slm_gguf *g, const char *key, int32_t *id)
{
    int64_t v;
    slm_status st = slm_gguf_get_int(g, key, &v);
    if (st == SLM_STATUS_NOT_FOUND)
        return SLM_OK;
    if (st)
        return st;
    if (v >= 0 && v < t->n_vocab)
        *id = (int32_t)v;
    else if (*id >= 0)
        warn(t, "%s = %lld is outside the vocabulary (%d tokens); using %d", key, (long long)v,
             (int)t->n_vocab, (int)*id);
    else
        warn(t, "%s = %lld is outside the vocabulary (%d tokens); ignored", key, (long long)v,
             (int)t->n_vocab);
    return SLM_OK;
}

static slm_status read_flag(const slm_gguf *g, const char *key, bool *flag)
{
    bool v;
    slm_status st = slm_gguf_get_bool(g, key, &v);
    if (st == SLM_STATUS_NOT_FOUND)
        return SLM_OK;
    if (st)
        return st;
    *flag = v;
    return SLM_OK;
}

/* Texts, scores and types into the tokenizer's own arrays. */
static slm_status load_vocab(slm_tokenizer *t, const slm_gguf *g)
{
    int64_t ti, si = -1, yi = -1;
    slm_gguf_type et;
    uint64_t n, ns = 0, ny = 0;
    slm_status st = slm_gguf_get_arr(g, "tokenizer.ggml.tokens", &ti, &et, &n);
    if (st == SLM_STATUS_NOT_FOUND)
        return slm_error(SLM_STATUS_BAD_FORMAT, "tokenizer: tokenizer.ggml.tokens is missing");
    if (st)
        return st;
    if (et != SLM_GGUF_STRING)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "tokenizer: tokenizer.ggml.tokens is an array of %s, not string",
                         slm_gguf_type_name(et));
    if (n == 0 || n > INT32_MAX)
        return slm_error(SLM_STATUS_BAD_FORMAT, "tokenizer: %llu tokens in tokenizer.ggml.tokens",
                         (unsigned long long)n);
    st = slm_gguf_get_arr(g, "tokenizer.ggml.scores", &si, NULL, &ns);
    if (st && st != SLM_STATUS_NOT_FOUND)
        return st;
    if (!st && ns != n)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "tokenizer: tokenizer.ggml.scores has %llu entries for %llu tokens",
                         (unsigned long long)ns, (unsigned long long)n);
    st = slm_gguf_get_arr(g, "tokenizer.ggml.token_type", &yi, NULL, &ny);
    if (st && st != SLM_STATUS_NOT_FOUND)
        return st;
    if (!st && ny != n)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "tokenizer: tokenizer.ggml.token_type has %llu entries for %llu tokens",
                         (unsigned long long)ny, (unsigned long long)n);

    t->n_vocab = (int32_t)n;
    t->text_off = malloc(n * sizeof(uint32_t));
    t->text_len = malloc(n * sizeof(uint32_t));
    t->piece_off = malloc(n * sizeof(uint32_t));
    t->piece_len = malloc(n * sizeof(uint32_t));
    t->score = calloc(n, sizeof(float));
    t->type = malloc(n);
    if (!t->text_off || !t->text_len || !t->piece_off || !t->piece_len || !t->score || !t->type)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: tables for %llu tokens",
                         (unsigned long long)n);
    uint64_t total = 0;
    for (uint64_t j = 0; j < n; j++) {
        const char *s;
        size_t len;
        if ((st = slm_gguf_arr_str(g, ti, j, &s, &len)))
            return st;
        t->text_off[j] = (uint32_t)total;
        t->text_len[j] = (uint32_t)len;
        total += (uint64_t)len + 1;
        if (len >= UINT32_MAX || total >= UINT32_MAX)
            return slm_error(SLM_STATUS_BAD_FORMAT, "tokenizer: token texts exceed 4 GiB");
    }
    t->text = malloc(total);
    t->piece = malloc(total);
    if (!t->text || !t->piece)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: %llu bytes of token text",
                         (unsigned long long)total);
    for (uint64_t j = 0; j < n; j++) {
        const char *s;
        size_t len;
        if ((st = slm_gguf_arr_str(g, ti, j, &s, &len)))
            return st;
        memcpy(t->text + t->text_off[j], s, len);
        t->text[t->text_off[j] + len] = 0;
        t->type[j] = SLM_TOKEN_NORMAL;
        if (si >= 0) {
            double v;
            if ((st = slm_gguf_arr_float(g, si, j, &v)))
                return st;
            t->score[j] = (float)v;
        }
        if (yi >= 0) {
            int64_t v;
            if ((st = slm_gguf_arr_int(g, yi, j, &v)))
                return st;
            if (v < 0 || v > SLM_TOKEN_BYTE)
                return slm_error(SLM_STATUS_BAD_FORMAT,
                                 "tokenizer: token %llu '%s' has type %lld (valid: 0..6)",
                                 (unsigned long long)j, t->text + t->text_off[j], (long long)v);
            t->type[j] = (uint8_t)v;
        }
    }
    return SLM_OK;
}

static slm_status build_vhash(slm_tokenizer *t)
{
    size_t cap = pow2_at_least((size_t)t->n_vocab * 2);
    t->vhash = malloc(cap * sizeof(int32_t));
    if (!t->vhash)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: vocabulary hash");
    memset(t->vhash, 0xff, cap * sizeof(int32_t));
    t->vhash_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->text + t->text_off[id];
        size_t len = t->text_len[id];
        size_t i = (size_t)hash_bytes(s, len) & t->vhash_mask;
        for (;; i = (i + 1) & t->vhash_mask) {
            int32_t o = t->vhash[i];
            if (o < 0 || (t->text_len[o] == len && !memcmp(t->text + t->text_off[o], s, len))) {
                t->vhash[i] = id; /* a later duplicate wins */
                break;
            }
        }
    }
    return SLM_OK;
}

static size_t merge_slot(const slm_tokenizer *t, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->mhash_mask;
}

/* Parses tokenizer.ggml.merges into the pair table. */
static slm_status load_merges(slm_tokenizer *t, const slm_gguf *g)
{
    int64_t mi;
    slm_gguf_type et;
    uint64_t n;
    slm_status st = slm_gguf_get_arr(g, "tokenizer.ggml.merges", &mi, &et, &n);
    if (st == SLM_STATUS_NOT_FOUND)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "tokenizer: tokenizer.ggml.merges is missing (required for gpt2)");
    if (st)
        return st;
    if (et != SLM_GGUF_STRING)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "tokenizer: tokenizer.ggml.merges is an array of %s, not string",
                         slm_gguf_type_name(et));
    if (n > INT32_MAX)
        return slm_error(SLM_STATUS_BAD_FORMAT, "tokenizer: %llu merges", (unsigned long long)n);
    size_t cap = pow2_at_least((size_t)n * 2);
    t->mhash = malloc(cap * sizeof(slm_tok_merge));
    if (!t->mhash)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: merge table");
    memset(t->mhash, 0xff, cap * sizeof(slm_tok_merge));
    t->mhash_mask = cap - 1;
    for (uint64_t j = 0; j < n; j++) {
        const char *s;
        size_t len;
        if ((st = slm_gguf_arr_str(g, mi, j, &s, &len)))
            return st;
        /* Split at the first space after position 0 (gguf-facts §5.1). */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp)
            return slm_error(SLM_STATUS_BAD_FORMAT,
                             "tokenizer: merge %llu '%.*s' has no separating space",
                             (unsigned long long)j, (int)(len > 64 ? 64 : len), s);
        size_t ll = (size_t)(sp - s), rl = len - ll - 1;
        int32_t l = slm_tok_lookup(t, s, ll), r = slm_tok_lookup(t, sp + 1, rl);
        if (l < 0 || r < 0)
            continue;
        /* The result's text is left+right without the space. */
        char stackbuf[256];
        char *cat = ll + rl <= sizeof(stackbuf) ? stackbuf : malloc(ll + rl);
        if (!cat)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: merge text");
        memcpy(cat, s, ll);
        memcpy(cat + ll, sp + 1, rl);
        int32_t res = slm_tok_lookup(t, cat, ll + rl);
        if (cat != stackbuf)
            free(cat);
        if (res < 0)
            continue;
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
        size_t i = merge_slot(t, key);
        while (t->mhash[i].key != UINT64_MAX && t->mhash[i].key != key)
            i = (i + 1) & t->mhash_mask;
        if (t->mhash[i].key == key)
            continue; /* a repeated merge keeps its first (lowest) rank */
        t->mhash[i].key = key;
        t->mhash[i].rank = (int32_t)j;
        t->mhash[i].result = res;
    }
    return SLM_OK;
}

static int hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The bytes a token stands for (SPM byte tokens whose text is not <0xXX>
 * keep their text); hidden (control/unknown) tokens keep their
 * text, and decoding decides whether to show them. */
static void build_pieces(slm_tokenizer *t)
{
    uint32_t off = 0;
    t->max_piece = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)t->text + t->text_off[id];
        size_t n = t->text_len[id], o = 0;
        char *dst = t->piece + off;
        int ty = t->type[id];
        if (ty == SLM_TOKEN_CONTROL || ty == SLM_TOKEN_UNKNOWN) {
            memcpy(dst, s, n);
            o = n;
        } else if (t->kind == SLM_TOKENIZER_BPE) {
            /* As Hugging Face's ByteLevel decoder: the mapped bytes when
             * every character is in the byte alphabet, else the raw text. */
            size_t i = 0;
            while (i < n) {
                int32_t cp;
                size_t k = slm_utf8_decode(s + i, n - i, &cp, NULL);
                int b = cp >= 0 ? slm_unicode_to_byte((uint32_t)cp) : -1;
                if (b < 0)
                    break;
                dst[o++] = (char)b;
                i += k;
            }
            if (i < n) {
                memcpy(dst, s, n);
                o = n;
            }
        } else if (ty == SLM_TOKEN_BYTE && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' &&
                   hex_digit(s[3]) >= 0 && hex_digit(s[4]) >= 0) {
            dst[o++] = (char)(hex_digit(s[3]) << 4 | hex_digit(s[4]));
        } else {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                    dst[o++] = ' ';
                    i += 3;
                } else
                    dst[o++] = (char)s[i++];
            }
        }
        t->piece_off[id] = off;
        t->piece_len[id] = (uint32_t)o;
        off += (uint32_t)o;
        if (o > t->max_piece)
            t->max_piece = o;
    }
}

static bool is_special_type(int ty)
{
    return ty == SLM_TOKEN_CONTROL || ty == SLM_TOKEN_USER_DEFINED || ty == SLM_TOKEN_UNKNOWN;
}

/* The bucket of special token id (see tokenizer_impl.h). */
static uint32_t special_key(const slm_tokenizer *t, int32_t id)
{
    const uint8_t *s = (const uint8_t *)t->text + t->text_off[id];
    return t->text_len[id] >= 2 ? (uint32_t)s[0] << 8 | s[1] : 65536u + s[0];
}

static slm_status build_specials(slm_tokenizer *t)
{
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        n += is_special_type(t->type[id]) && t->text_len[id] > 0;
    t->special = malloc((n ? n : 1) * sizeof(int32_t));
    if (!t->special)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: special token table");
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_type(t->type[id]) && t->text_len[id] > 0)
            t->special[n++] = id;
    t->special_begin = calloc(SLM_TOK_SPECIAL_KEYS + 1, sizeof(uint32_t));
    if (!t->special_begin)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: special token index");
    /* Sort by bucket key, then longest first (then id), so a scan tries the
     * longest candidate first. Insertion sort: qsort has no context pointer
     * in C11 and special tokens number in the thousands at most. */
    for (size_t i = 1; i < n; i++) {
        int32_t v = t->special[i];
        uint32_t kv = special_key(t, v);
        size_t j = i;
        while (j > 0) {
            int32_t u = t->special[j - 1];
            uint32_t ku = special_key(t, u);
            int before = kv < ku || (kv == ku && (t->text_len[v] > t->text_len[u] ||
                                                  (t->text_len[v] == t->text_len[u] && v < u)));
            if (!before)
                break;
            t->special[j] = u;
            j--;
        }
        t->special[j] = v;
    }
    for (size_t i = 0; i < n; i++)
        t->special_begin[special_key(t, t->special[i]) + 1]++;
    for (uint32_t k = 0; k < SLM_TOK_SPECIAL_KEYS; k++)
        t->special_begin[k + 1] += t->special_begin[k];
    return SLM_OK;
}

/* End-of-turn markers, in the order EOT is chosen from them. */
static const char *const eot_names[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
    "<end_of_utterance>", "<|eom_id|>", "<|return|>", "<|call|>", "[|endofturn|]"};

static void add_eog(slm_tokenizer *t, int32_t id)
{
    if (id < 0)
        return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return;
    if (t->n_eog < SLM_TOK_MAX_EOG)
        t->eog[t->n_eog++] = id;
}

/* Special ids and flags with llama.cpp's defaults (gguf-facts §5.2). */
static slm_status load_specials(slm_tokenizer *t, const slm_gguf *g)
{
    slm_status st;
    bool spm = t->kind == SLM_TOKENIZER_SPM;
    t->bos = spm ? 1 : 11;
    t->eos = spm ? 2 : 11;
    t->unk = spm ? 0 : -1;
    t->eot = t->eom = t->pad = -1;
    t->add_bos = spm || t->ignore_merges; /* llama3-style BPE adds BOS */
    t->add_eos = false;
    t->add_space_prefix = spm;
    /* Defaults that do not fit a small vocabulary mean "none". */
    if (t->bos >= t->n_vocab)
        t->bos = -1;
    if (t->eos >= t->n_vocab)
        t->eos = -1;
    if (t->unk >= t->n_vocab)
        t->unk = -1;
    if ((st = read_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos)) ||
        (st = read_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos)) ||
        (st = read_id(t, g, "tokenizer.ggml.unknown_token_id", &t->unk)) ||
        (st = read_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad)) ||
        (st = read_id(t, g, "tokenizer.ggml.eot_token_id", &t->eot)) ||
        (st = read_id(t, g, "tokenizer.ggml.eom_token_id", &t->eom)) ||
        (st = read_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos)) ||
        (st = read_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos)) ||
        (st = read_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)))
        return st;
    size_t n_names = sizeof(eot_names) / sizeof(eot_names[0]);
    for (size_t i = 0; i < n_names && t->eot < 0; i++)
        t->eot = slm_tok_lookup(t, eot_names[i], strlen(eot_names[i]));
    add_eog(t, t->eos);
    add_eog(t, t->eot);
    add_eog(t, t->eom);
    for (size_t i = 0; i < n_names; i++)
        add_eog(t, slm_tok_lookup(t, eot_names[i], strlen(eot_names[i])));
    return SLM_OK;
}

static void byte_ids_spm(slm_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        static const char hex[] = "0123456789ABCDEF";
        memcpy(name, "<0x", 3);
        name[3] = hex[b >> 4];
        name[4] = hex[b & 15];
        name[5] = '>';
        t->byte_id[b] = slm_tok_lookup(t, name, 6);
    }
}

static void byte_ids_bpe(slm_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t k = slm_utf8_encode(slm_byte_to_unicode((uint8_t)b), u);
        t->byte_id[b] = slm_tok_lookup(t, u, k);
    }
}

slm_status slm_tokenizer_load(const slm_gguf *g, slm_tokenizer **out)
{
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: NULL out");
    *out = NULL;
    if (!g)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: NULL gguf");
    const char *model, *pre = NULL;
    size_t mlen, plen = 0;
    slm_status st = slm_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen);
    if (st == SLM_STATUS_NOT_FOUND)
        return slm_error(SLM_STATUS_BAD_FORMAT, "tokenizer: tokenizer.ggml.model is missing");
    if (st)
        return st;
    slm_tokenizer_kind kind;
    if (mlen == 4 && !memcmp(model, "gpt2", 4))
        kind = SLM_TOKENIZER_BPE;
    else if (mlen == 5 && !memcmp(model, "llama", 5))
        kind = SLM_TOKENIZER_SPM;
    else
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "tokenizer: tokenizer.ggml.model '%.*s' is not supported "
                         "(gpt2 and llama are)",
                         (int)(mlen > 64 ? 64 : mlen), model);
    if (kind == SLM_TOKENIZER_BPE) {
        st = slm_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &plen);
        if (st && st != SLM_STATUS_NOT_FOUND)
            return st;
        if (st)
            pre = NULL;
    }
    slm_tokenizer *t = calloc(1, sizeof(*t));
    if (!t)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: struct");
    t->kind = kind;
    if ((st = load_vocab(t, g)) || (st = build_vhash(t)))
        goto fail;
    if (kind == SLM_TOKENIZER_BPE) {
        if ((st = slm_tok_bpe_setup(t, pre, plen)) || (st = load_merges(t, g)))
            goto fail;
        byte_ids_bpe(t);
    } else
        byte_ids_spm(t);
    build_pieces(t);
    if ((st = load_specials(t, g)) || (st = build_specials(t)))
        goto fail;
    *out = t;
    return SLM_OK;
fail:
    slm_tokenizer_free(t);
    return st;
}

void slm_tokenizer_free(slm_tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->piece);
    free(t->piece_off);
    free(t->piece_len);
    free(t->score);
    free(t->type);
    free(t->vhash);
    free(t->mhash);
    free(t->special);
    free(t->special_begin);
    for (int i = 0; i < t->n_re; i++)
        pcre2_code_free(t->re[i]);
    free(t);
}

/* --- encoding ------------------------------------------------------------------ */

/* The longest special token of bucket k at text[i..len), or -1. */
static int32_t match_bucket(const slm_tokenizer *t, uint32_t k, const char *text, size_t len,
                            size_t i, bool parse_special)
{
    for (uint32_t j = t->special_begin[k]; j < t->special_begin[k + 1]; j++) {
        int32_t s = t->special[j];
        if (!parse_special && t->type[s] != SLM_TOKEN_USER_DEFINED)
            continue;
        size_t n = t->text_len[s];
        if (n <= len - i && !memcmp(text + i, t->text + t->text_off[s], n))
            return s;
    }
    return -1;
}

/* Leftmost-longest special token in text[from..len), or start = len when
 * there is none. A two-byte bucket holds only tokens longer than any of
 * the one-byte bucket, so it is tried first. Inside the plain spans
 * (sorted byte ranges) control tokens are not matched, and no match
 * crosses a span's border, so markup and content never share a token. */
static size_t next_special(const slm_tokenizer *t, const char *text, size_t len, size_t from,
                           bool parse_special, const slm_tok_range *plain, size_t n_plain,
                           int32_t *id)
{
    size_t k = 0;
    for (size_t i = from; i < len; i++) {
        while (k < n_plain && plain[k].end <= i)
            k++;
        bool in_plain = k < n_plain && plain[k].begin <= i;
        size_t lim = in_plain ? plain[k].end : k < n_plain ? plain[k].begin : len;
        bool parse = parse_special && !in_plain;
        uint8_t b = (uint8_t)text[i];
        int32_t s = -1;
        if (i + 1 < lim)
            s = match_bucket(t, (uint32_t)b << 8 | (uint8_t)text[i + 1], text, lim, i, parse);
        if (s < 0)
            s = match_bucket(t, 65536u + b, text, lim, i, parse);
        if (s >= 0) {
            *id = s;
            return i;
        }
    }
    return len;
}

static slm_status encode_segment(const slm_tokenizer *t, const char *s, size_t n, bool prefix,
                                 slm_tok_scratch *sc, slm_tok_ids *out)
{
    if (t->kind == SLM_TOKENIZER_BPE)
        return slm_tok_bpe_encode(t, s, n, sc, out);
    return slm_tok_spm_encode(t, s, n, prefix && t->add_space_prefix, sc, out);
}

/* The whole text: special tokens cut out, the segments between them
 * encoded. SentencePiece's leading "▁" goes at the start of the text and
 * after each control token (as llama.cpp and Hugging Face's legacy Llama
 * tokenizer do), not after a user-defined token (as the sentencepiece
 * library, which treats those as part of the text); when a run starts with a
 * user-defined token the "▁" is encoded on its own before it. */
static slm_status encode_all(const slm_tokenizer *t, const char *text, size_t len, bool add_bos,
                             bool parse_special, const slm_tok_range *plain, size_t n_plain,
                             slm_tok_scratch *sc, slm_tok_ids *out)
{
    slm_status st;
    if (add_bos && t->bos >= 0 && (st = slm_tok_ids_push(out, t->bos)))
        return st;
    bool prefix = true;
    size_t seg = 0;
    for (;;) {
        int32_t id = -1;
        size_t m = next_special(t, text, len, seg, parse_special, plain, n_plain, &id);
        if (m > seg) {
            if ((st = encode_segment(t, text + seg, m - seg, prefix, sc, out)))
                return st;
            prefix = false;
        }
        if (m == len)
            return SLM_OK;
        if (t->type[id] == SLM_TOKEN_USER_DEFINED) {
            if (prefix && t->kind == SLM_TOKENIZER_SPM && t->add_space_prefix &&
                (st = slm_tok_spm_encode(t, "", 0, true, sc, out)))
                return st;
            prefix = false;
        } else
            prefix = true;
        if ((st = slm_tok_ids_push(out, id)))
            return st;
        seg = m + t->text_len[id];
    }
}

static slm_status encode_into(const slm_tokenizer *t, const char *text, size_t len,
                              bool add_bos, bool parse_special, const slm_tok_range *plain,
                              size_t n_plain, slm_tok_ids *out)
{
    slm_tok_scratch sc = {0};
    slm_status st = encode_all(t, text, len, add_bos, parse_special, plain, n_plain, &sc, out);
    slm_tok_scratch_free(&sc);
    if (st) {
        free(out->v);
        out->v = NULL;
    }
    return st;
}

slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len,
                                bool add_bos, bool parse_special, int32_t *ids, size_t cap,
                                size_t *n_out)
{
    if (!t || !n_out || (!text && len) || (!ids && cap))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: encode: NULL argument");
    slm_tok_ids out = {0};
    slm_status st = encode_into(t, text ? text : "", len, add_bos, parse_special, NULL, 0, &out);
    if (st)
        return st;
    *n_out = out.n;
    size_t k = out.n < cap ? out.n : cap;
    if (k)
        memcpy(ids, out.v, k * sizeof(int32_t));
    free(out.v);
    if (out.n > cap)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "tokenizer: encode: the text needs %zu ids, the buffer holds %zu", out.n,
                         cap);
    return SLM_OK;
}

slm_status slm_tokenizer_encode_alloc(const slm_tokenizer *t, const char *text,
                                      bool parse_special, int32_t **ids, size_t *n)
{
    return slm_tokenizer_encode_spans(t, text, parse_special, NULL, 0, ids, n);
}

slm_status slm_tokenizer_encode_spans(const slm_tokenizer *t, const char *text,
                                      bool parse_special, const slm_tok_range *plain,
                                      size_t n_plain, int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!t || !text || (n_plain && !plain))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: encode: NULL argument");
    size_t len = strlen(text);
    if (len > (size_t)1 << 28)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "text of %zu bytes is too long", len);
    slm_tok_ids out = {0};
    slm_status st = encode_into(t, text, len, slm_tokenizer_add_bos(t), parse_special, plain,
                                n_plain, &out);
    if (st)
        return st;
    if (!out.v) { /* nothing encoded: still hand back an array */
        out.v = malloc(sizeof(int32_t));
        if (!out.v)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory tokenizing");
    }
    *ids = out.v;
    *n = out.n;
    return SLM_OK;
}

/* --- decoding ------------------------------------------------------------------ */

const char *slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, bool special, size_t *len)
{
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    int ty = t->type[id];
    bool hidden = (ty == SLM_TOKEN_CONTROL || ty == SLM_TOKEN_UNKNOWN) && !special;
    size_t n = hidden ? 0 : t->piece_len[id];
    if (len)
        *len = n;
    return t->piece + t->piece_off[id];
}

/* How many leading bytes of token id's piece to drop when it is the first
 * text of a decode: SentencePiece's add_space_prefix put a space there. */
static size_t lead_strip(const slm_tokenizer *t, int32_t id, const char *p, size_t n)
{
    int ty = t->type[id];
    if (t->kind != SLM_TOKENIZER_SPM || !t->add_space_prefix || ty == SLM_TOKEN_BYTE)
        return 0;
    return n > 0 && p[0] == ' ' ? 1 : 0;
}

/* Control and unknown tokens do not end the "start of text" state. */
static bool ends_start(const slm_tokenizer *t, int32_t id)
{
    return t->type[id] != SLM_TOKEN_CONTROL && t->type[id] != SLM_TOKEN_UNKNOWN;
}

slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n,
                                bool special, char *out, size_t cap, size_t *n_out)
{
    if (!t || !n_out || (!ids && n) || (!out && cap))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: decode: NULL argument");
    size_t o = 0;
    bool start = true;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "tokenizer: decode: id %d at position %zu is outside the vocabulary "
                             "(%d tokens)",
                             (int)ids[i], i, (int)t->n_vocab);
        size_t len;
        const char *p = slm_tokenizer_piece(t, ids[i], special, &len);
        if (start && ends_start(t, ids[i])) {
            size_t k = lead_strip(t, ids[i], p, len);
            p += k;
            len -= k;
            start = false;
        }
        if (len && o + len <= cap)
            memcpy(out + o, p, len);
        o += len;
    }
    *n_out = o;
    if (o + 1 > cap)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "tokenizer: decode: the text needs %zu bytes + NUL, the buffer holds %zu",
                         o, cap);
    out[o] = 0;
    return SLM_OK;
}

slm_status slm_tokenizer_token_to_piece(const slm_tokenizer *t, int32_t id, bool special,
                                        char *buf, size_t cap, size_t *len)
{
    size_t n;
    const char *p = slm_tokenizer_piece(t, id, special, &n);
    if (len)
        *len = n;
    if (!p)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: token id %d out of range",
                         (int)id);
    if (!buf || cap < n + 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "tokenizer: piece of token %d needs %zu bytes + NUL, buffer holds %zu",
                         (int)id, n, cap);
    memcpy(buf, p, n);
    buf[n] = 0;
    return SLM_OK;
}

const char *slm_tokenizer_token_text(const slm_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return NULL;
    return t->text + t->text_off[id];
}

int32_t slm_tokenizer_find(const slm_tokenizer *t, const char *text, size_t len)
{
    if (!t || (!text && len))
        return -1;
    return slm_tok_lookup(t, text ? text : "", len);
}

slm_tokenizer_kind slm_tokenizer_kind_of(const slm_tokenizer *t) { return t->kind; }
int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t) { return t->n_vocab; }
int32_t slm_tokenizer_bos(const slm_tokenizer *t) { return t->bos; }
int32_t slm_tokenizer_eos(const slm_tokenizer *t) { return t->eos; }
int32_t slm_tokenizer_eot(const slm_tokenizer *t) { return t->eot; }
int32_t slm_tokenizer_unk(const slm_tokenizer *t) { return t->unk; }
int32_t slm_tokenizer_pad(const slm_tokenizer *t) { return t->pad; }
bool slm_tokenizer_add_bos(const slm_tokenizer *t) { return t->add_bos; }
bool slm_tokenizer_add_eos(const slm_tokenizer *t) { return t->add_eos; }
size_t slm_tokenizer_max_piece(const slm_tokenizer *t) { return t->max_piece; }
const char *slm_tokenizer_pre(const slm_tokenizer *t) { return t->pre; }
const char *slm_tokenizer_warning(const slm_tokenizer *t) { return t->warning; }

int slm_tokenizer_token_type(const slm_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? t->type[id] : -1;
}

bool slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id)
{
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return true;
    return false;
}

/* --- streaming detokenization ---------------------------------------------------- */

struct slm_detok {
    const slm_tokenizer *t;
    bool special, start;
    size_t held;   /* bytes of an unfinished UTF-8 sequence at work[0..held) */
    uint8_t *work; /* held bytes + one piece */
    char *out;     /* sanitized output, up to 3 bytes per input byte */
};

slm_status slm_detok_create(const slm_tokenizer *t, bool special, slm_detok **out)
{
    if (!out || !t)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: detok: NULL argument");
    *out = NULL;
    slm_detok *d = calloc(1, sizeof(*d));
    size_t w = t->max_piece + 4;
    if (d) {
        d->work = malloc(w);
        d->out = malloc(3 * w);
    }
    if (!d || !d->work || !d->out) {
        slm_detok_free(d);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: detok buffers");
    }
    d->t = t;
    d->special = special;
    d->start = true;
    *out = d;
    return SLM_OK;
}

void slm_detok_free(slm_detok *d)
{
    if (!d)
        return;
    free(d->work);
    free(d->out);
    free(d);
}

void slm_detok_reset(slm_detok *d)
{
    d->held = 0;
    d->start = true;
}

slm_status slm_detok_feed(slm_detok *d, int32_t id, const char **text, size_t *len)
{
    const slm_tokenizer *t = d->t;
    *text = d->out;
    *len = 0;
    if (id < 0 || id >= t->n_vocab)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "tokenizer: detok: id %d is outside the vocabulary (%d tokens)", (int)id,
                         (int)t->n_vocab);
    size_t n;
    const char *p = slm_tokenizer_piece(t, id, d->special, &n);
    if (d->start && ends_start(t, id)) {
        size_t k = lead_strip(t, id, p, n);
        p += k;
        n -= k;
        d->start = false;
    }
    memcpy(d->work + d->held, p, n);
    size_t total = d->held + n, tail;
    *len = slm_utf8_sanitize(d->work, total, d->out, 1, &tail);
    memmove(d->work, d->work + total - tail, tail);
    d->held = tail;
    return SLM_OK;
}

void slm_detok_flush(slm_detok *d, const char **text, size_t *len)
{
    *text = d->out;
    *len = slm_utf8_sanitize(d->work, d->held, d->out, 0, NULL);
    d->held = 0;
    d->start = true;
}
