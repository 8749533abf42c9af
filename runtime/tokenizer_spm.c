/*
 * tokenizer_spm.c — SentencePiece BPE (tokenizer.ggml.model = "llama"), as
 * the sentencepiece library encodes with a BPE model (gguf-facts §5.7):
 *   1. the text gets a leading space when asked (add_space_prefix) and every
 *      space becomes "▁" (U+2581);
 *   2. it is split into UTF-8 characters; a byte that is not part of a
 *      well-formed sequence is a symbol of its own;
 *   3. adjacent symbols are merged while their concatenation is a token,
 *      highest score first, ties to the left (a binary heap of candidates;
 *      a candidate is stale when its left symbol's length changed);
 *   4. a final symbol that is not a token becomes its bytes' <0xXX> tokens
 *      (byte fallback), or unk when the vocabulary has no byte tokens.
 * Symbols are spans of the escaped text, so a candidate's text is the
 * contiguous span [left.start, left.start + left.len + right.len).
 * Only normal, user-defined and undefined tokens take part in merges and
 * final lookups, as only those are "pieces" to sentencepiece; control,
 * unknown, unused and byte tokens are never produced from text here.
 */
#include <string.h>

#include "status.h"
#include "tokenizer_impl.h"
#include "unicode.h"

typedef struct sym {
    uint32_t start, len; /* len 0: merged into its left neighbour */
    int32_t prev, next;
} sym;

typedef struct cand {
    float score;
    int32_t left;
    uint32_t len;
} cand;

static bool cand_before(const cand *a, const cand *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct heap {
    cand *v;
    size_t n;
} heap;

static void heap_push(heap *h, cand c)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&c, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
}

static cand heap_pop(heap *h)
{
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && cand_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!cand_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

static bool is_piece(const slm_tokenizer *t, int32_t id)
{
    int ty = t->type[id];
    return ty == SLM_TOKEN_NORMAL || ty == SLM_TOKEN_USER_DEFINED || ty == SLM_TOKEN_UNDEFINED;
}

static int32_t lookup_piece(const slm_tokenizer *t, const char *s, size_t n)
{
    int32_t id = slm_tok_lookup(t, s, n);
    return id >= 0 && is_piece(t, id) ? id : -1;
}

static void try_pair(const slm_tokenizer *t, const char *text, const sym *sy, int32_t l, heap *h)
{
    if (l < 0 || sy[l].next < 0)
        return;
    int32_t r = sy[l].next;
    uint32_t len = sy[l].len + sy[r].len;
    int32_t id = lookup_piece(t, text + sy[l].start, len);
    if (id >= 0)
        heap_push(h, (cand){t->score[id], l, len});
}

/* Escaped text: optional "▁" prefix, spaces replaced by "▁". */
static slm_status escape(const char *text, size_t len, bool prefix, slm_tok_scratch *s,
                         size_t *n_out)
{
    if (len > (SIZE_MAX - 3) / 3 || len >= UINT32_MAX / 3)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: a %zu-byte text is too long",
                         len);
    slm_status st = slm_tok_reserve((void **)&s->buf, &s->buf_cap, 3 * len + 3);
    if (st)
        return st;
    size_t o = 0;
    if (prefix) {
        memcpy(s->buf, "\xE2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s->buf + o, "\xE2\x96\x81", 3);
            o += 3;
        } else
            s->buf[o++] = text[i];
    }
    *n_out = o;
    return SLM_OK;
}

static slm_status emit_symbol(const slm_tokenizer *t, const char *s, size_t n, slm_tok_ids *out)
{
    slm_status st;
    int32_t id = lookup_piece(t, s, n);
    if (id >= 0)
        return slm_tok_ids_push(out, id);
    for (size_t i = 0; i < n; i++) {
        int32_t b = t->byte_id[(uint8_t)s[i]];
        if (b < 0)
            b = t->unk;
        if (b >= 0 && (st = slm_tok_ids_push(out, b)))
            return st;
    }
    return SLM_OK;
}

slm_status slm_tok_spm_encode(const slm_tokenizer *t, const char *text, size_t len, bool prefix,
                              slm_tok_scratch *s, slm_tok_ids *out)
{
    size_t n = 0;
    slm_status st = escape(text, len, prefix, s, &n);
    if (st)
        return st;
    if (n == 0)
        return SLM_OK;
    const char *e = s->buf;
    /* Symbols are at most n; candidates at most 3n (see tokenizer_bpe.c). */
    if ((st = slm_tok_reserve(&s->sym, &s->sym_cap, n * sizeof(sym))) ||
        (st = slm_tok_reserve(&s->heap, &s->heap_cap, 3 * n * sizeof(cand))))
        return st;
    sym *sy = s->sym;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = slm_utf8_decode((const uint8_t *)e + i, n - i, &cp, NULL);
        sy[ns] = (sym){(uint32_t)i, (uint32_t)k, ns - 1, -1};
        if (ns > 0)
            sy[ns - 1].next = ns;
        ns++;
        i += k;
    }
    heap h = {s->heap, 0};
    for (int32_t i = 0; i + 1 < ns; i++)
        try_pair(t, e, sy, i, &h);
    while (h.n) {
        cand c = heap_pop(&h);
        int32_t l = c.left;
        if (sy[l].len == 0)
            continue; /* merged away */
        int32_t r = sy[l].next;
        if (r < 0 || sy[l].len + sy[r].len != c.len)
            continue; /* stale: a side changed since */
        sy[l].len = c.len;
        sy[l].next = sy[r].next;
        if (sy[r].next >= 0)
            sy[sy[r].next].prev = l;
        sy[r].len = 0;
        try_pair(t, e, sy, sy[l].prev, &h);
        try_pair(t, e, sy, l, &h);
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        if ((st = emit_symbol(t, e + sy[i].start, sy[i].len, out)))
            return st;
    return SLM_OK;
}
