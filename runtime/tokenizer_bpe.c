/*
 * tokenizer_bpe.c — byte-level BPE (tokenizer.ggml.model = "gpt2"):
 *   1. pre-tokenize: the regex list of tokenizer.ggml.pre (gguf-facts §5.4)
 *      is applied in order, each regex splitting every piece made so far;
 *      matches and the gaps between them both become pieces. A regex sees
 *      only its piece, so look-aheads like \s+(?!\S) stop at piece ends
 *      (as in llama.cpp and Hugging Face's Sequence of pre-tokenizers);
 *   2. each piece's bytes become the tokens of their GPT-2 byte characters
 *      (byte_id), then adjacent pairs are merged lowest rank first, ties to
 *      the left (a binary heap of candidate pairs; stale candidates are
 *      recognised on pop because a symbol's id changes when it merges);
 *   3. with ignore_merges (llama3), a piece that is a token as a whole is
 *      emitted directly.
 * Regexes are compiled once at load with PCRE2_UTF | PCRE2_UCP (so \p{L},
 * \s, ... are Unicode-aware) and PCRE2_MATCH_INVALID_UTF (invalid bytes in
 * the text cannot match anything and so land in gap pieces), and JIT-compiled
 * when the library supports it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "tokenizer_impl.h"
#include "unicode.h"

/* The patterns (raw PCRE2 syntax in C strings). */
#define RE_GPT2 \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3_HEAD \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct pre_set {
    const char *const *names; /* tokenizer.ggml.pre values, NULL-terminated */
    const char *re[SLM_TOK_MAX_REGEX];
    bool ignore_merges;
} pre_set;

static const char *const names_llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3",
                                           "pixtral", NULL};
static const char *const names_qwen2[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", NULL};
static const char *const names_smollm[] = {"smollm", "starcoder", "refact", "command-r",
                                           "codeshell", "exaone", "minerva-7b", NULL};
static const char *const names_gpt2[] = {"gpt-2", "gpt2", "phi-2", "roberta-bpe", "mpt",
                                         "olmo", "jais", NULL};
static const char *const names_default[] = {"default", NULL};

static const pre_set pre_sets[] = {
    {names_llama3, {RE_LLAMA3_HEAD "\\p{N}{1,3}|" RE_LLAMA3_TAIL}, true},
    {names_qwen2, {RE_LLAMA3_HEAD "\\p{N}|" RE_LLAMA3_TAIL}, false},
    {names_smollm, {"\\p{N}", RE_GPT2}, false},
    {names_gpt2, {RE_GPT2}, false},
    {names_default, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, false},
};

static const pre_set *find_pre(const char *pre, size_t len)
{
    if (!pre)
        return &pre_sets[sizeof(pre_sets) / sizeof(pre_sets[0]) - 1];
    for (size_t i = 0; i < sizeof(pre_sets) / sizeof(pre_sets[0]); i++)
        for (const char *const *n = pre_sets[i].names; *n; n++)
            if (strlen(*n) == len && !memcmp(*n, pre, len))
                return &pre_sets[i];
    return NULL;
}

slm_status slm_tok_bpe_setup(slm_tokenizer *t, const char *pre, size_t len)
{
    const pre_set *p = find_pre(pre, len);
    if (!p)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "tokenizer: unknown pre-tokenizer tokenizer.ggml.pre = '%.*s' (known: "
                         "llama3/llama-bpe, qwen2, smollm, gpt2/gpt-2, default and their aliases)",
                         (int)(len > 64 ? 64 : len), pre);
    snprintf(t->pre, sizeof(t->pre), "%s", p->names[0]);
    t->ignore_merges = p->ignore_merges;
    for (int i = 0; i < SLM_TOK_MAX_REGEX && p->re[i]; i++) {
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)p->re[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off,
                                       NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof(msg));
            return slm_error(SLM_STATUS_INTERNAL,
                             "tokenizer: pre-tokenizer regex %d of '%s' does not compile at "
                             "offset %zu: %s",
                             i, t->pre, (size_t)off, (const char *)msg);
        }
        /* JIT is an optimisation: without it (unsupported CPU, no exec
         * memory) pcre2_match interprets, with the same results. */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        t->re[t->n_re++] = re;
    }
    return SLM_OK;
}

/* --- pre-tokenization --------------------------------------------------------- */

static slm_status push_span(void **arr, size_t *cap, size_t *n, size_t off, size_t len)
{
    slm_status st = slm_tok_reserve(arr, cap, (*n + 1) * sizeof(slm_tok_span));
    if (st)
        return st;
    ((slm_tok_span *)*arr)[(*n)++] = (slm_tok_span){off, len};
    return SLM_OK;
}

/* One match of re in text[0..len) from start: SLM_OK with *ms and *me, or
 * NOT_FOUND. The JIT's fixed stack can overflow on very long pieces (a
 * megabyte of spaces); the interpreter, which keeps its backtracking on the
 * heap, takes over then. */
static slm_status match_once(const pcre2_code *re, const char *text, size_t len, size_t start,
                             pcre2_match_data *md, size_t *ms, size_t *me)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)text, len, start, 0, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)text, len, start, PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return SLM_STATUS_NOT_FOUND;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        return slm_error(SLM_STATUS_INTERNAL, "tokenizer: regex match failed: %s",
                         (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return SLM_OK;
}

/* Splits piece p of text by re, appending pieces (absolute offsets). */
static slm_status split_piece(const pcre2_code *re, const char *text, slm_tok_span p,
                              slm_tok_scratch *s, size_t *n_out)
{
    const char *base = text + p.off;
    size_t gap = 0, pos = 0;
    slm_status st;
    while (pos < p.len) {
        size_t ms = 0, me = 0;
        st = match_once(re, base, p.len, pos, s->md, &ms, &me);
        if (st == SLM_STATUS_NOT_FOUND)
            break;
        if (st)
            return st;
        if (me == ms) { /* no pattern here matches empty; step over it anyway */
            int32_t cp;
            pos = ms + slm_utf8_decode((const uint8_t *)base + ms, p.len - ms, &cp, NULL);
            continue;
        }
        if (ms > gap &&
            (st = push_span(&s->pieces2, &s->pieces2_cap, n_out, p.off + gap, ms - gap)))
            return st;
        if ((st = push_span(&s->pieces2, &s->pieces2_cap, n_out, p.off + ms, me - ms)))
            return st;
        gap = pos = me;
    }
    if (gap < p.len)
        return push_span(&s->pieces2, &s->pieces2_cap, n_out, p.off + gap, p.len - gap);
    return SLM_OK;
}

/* Runs the regex list over text; the pieces end up in s->pieces. */
slm_status slm_tok_bpe_pretokenize(const slm_tokenizer *t, const char *text, size_t len,
                                   slm_tok_scratch *s, size_t *n_pieces)
{
    size_t n = 0;
    slm_status st = push_span(&s->pieces, &s->pieces_cap, &n, 0, len);
    if (st)
        return st;
    if (!s->md && !(s->md = pcre2_match_data_create(1, NULL)))
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: regex match data");
    for (int r = 0; r < t->n_re; r++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            slm_tok_span p = ((slm_tok_span *)s->pieces)[i];
            if ((st = split_piece(t->re[r], text, p, s, &m)))
                return st;
        }
        void *tmp = s->pieces;
        size_t tcap = s->pieces_cap;
        s->pieces = s->pieces2;
        s->pieces_cap = s->pieces2_cap;
        s->pieces2 = tmp;
        s->pieces2_cap = tcap;
        n = m;
    }
    *n_pieces = n;
    return SLM_OK;
}

/* --- merging ------------------------------------------------------------------- */

typedef struct sym {
    int32_t id; /* token id; -1: byte without a token; -2: merged away */
    int32_t prev, next;
} sym;

typedef struct cand {
    int32_t rank, left, lid, rid;
} cand;

static bool cand_less(const cand *a, const cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static const slm_tok_merge *find_merge(const slm_tokenizer *t, int32_t l, int32_t r)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->mhash_mask;
    for (;; i = (i + 1) & t->mhash_mask) {
        if (t->mhash[i].key == key)
            return &t->mhash[i];
        if (t->mhash[i].key == UINT64_MAX)
            return NULL;
    }
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
        if (!cand_less(&c, &h->v[p]))
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
        if (c + 1 < h->n && cand_less(&h->v[c + 1], &h->v[c]))
            c++;
        if (!cand_less(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

static void try_pair(const slm_tokenizer *t, const sym *sy, int32_t l, heap *h)
{
    if (l < 0 || sy[l].next < 0)
        return;
    int32_t r = sy[l].next;
    if (sy[l].id < 0 || sy[r].id < 0)
        return;
    const slm_tok_merge *m = find_merge(t, sy[l].id, sy[r].id);
    if (m)
        heap_push(h, (cand){m->rank, l, sy[l].id, sy[r].id});
}

static slm_status emit(const slm_tokenizer *t, int32_t id, slm_tok_ids *out)
{
    if (id >= 0)
        return slm_tok_ids_push(out, id);
    /* A byte whose character is not in the vocabulary: unk, else nothing. */
    return t->unk >= 0 ? slm_tok_ids_push(out, t->unk) : SLM_OK;
}

static slm_status merge_piece(const slm_tokenizer *t, const uint8_t *b, size_t n,
                              slm_tok_scratch *s, slm_tok_ids *out)
{
    slm_status st;
    if (t->ignore_merges && n > 1) {
        /* Mapped characters are below U+0144: at most 2 UTF-8 bytes each. */
        if ((st = slm_tok_reserve((void **)&s->buf, &s->buf_cap, 2 * n)))
            return st;
        size_t o = 0;
        for (size_t i = 0; i < n; i++)
            o += slm_utf8_encode(slm_byte_to_unicode(b[i]), s->buf + o);
        int32_t id = slm_tok_lookup(t, s->buf, o);
        if (id >= 0)
            return slm_tok_ids_push(out, id);
    }
    if (n == 1)
        return emit(t, t->byte_id[b[0]], out);
    if (n > INT32_MAX / 2)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokenizer: a %zu-byte piece is too long", n);
    if ((st = slm_tok_reserve(&s->sym, &s->sym_cap, n * sizeof(sym))))
        return st;
    sym *sy = s->sym;
    for (size_t i = 0; i < n; i++)
        sy[i] = (sym){t->byte_id[b[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    /* Every merge removes a symbol and adds at most two candidates, and the
     * initial pairs are n - 1: the heap never holds more than 3n. */
    if ((st = slm_tok_reserve(&s->heap, &s->heap_cap, 3 * n * sizeof(cand))))
        return st;
    heap h = {s->heap, 0};
    for (int32_t i = 0; i + 1 < (int32_t)n; i++)
        try_pair(t, sy, i, &h);
    while (h.n) {
        cand c = heap_pop(&h);
        int32_t l = c.left, r = sy[l].next;
        if (r < 0 || sy[l].id != c.lid || sy[r].id != c.rid)
            continue; /* stale: one side merged since */
        const slm_tok_merge *m = find_merge(t, c.lid, c.rid);
        sy[l].id = m->result;
        sy[l].next = sy[r].next;
        if (sy[r].next >= 0)
            sy[sy[r].next].prev = l;
        sy[r].id = -2;
        try_pair(t, sy, sy[l].prev, &h);
        try_pair(t, sy, l, &h);
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        if ((st = emit(t, sy[i].id, out)))
            return st;
    return SLM_OK;
}

/* Bytes whose GPT-2 character is not in the vocabulary (vocabularies
 * trained on valid UTF-8 lack C0, C1 and F5..FF) cannot be encoded; they are
 * replaced by U+FFFD, the visible "undecodable" mark, rather than dropped or
 * turned into unk (which in some models is an end-of-text token). Returns a
 * malloc'd copy in *copy, or NULL when no byte needs replacing. */
static slm_status replace_unencodable(const slm_tokenizer *t, const char *text, size_t len,
                                      char **copy, size_t *copy_len)
{
    size_t bad = 0;
    *copy = NULL;
    for (size_t i = 0; i < len; i++)
        bad += t->byte_id[(uint8_t)text[i]] < 0;
    if (!bad)
        return SLM_OK;
    if (len > (SIZE_MAX - 2 * bad) || !(*copy = malloc(len + 2 * bad)))
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "tokenizer: %zu-byte text copy", len);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (t->byte_id[(uint8_t)text[i]] < 0) {
            memcpy(*copy + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else
            (*copy)[o++] = text[i];
    }
    *copy_len = o;
    return SLM_OK;
}

slm_status slm_tok_bpe_encode(const slm_tokenizer *t, const char *text, size_t len,
                              slm_tok_scratch *s, slm_tok_ids *out)
{
    char *copy;
    size_t n = 0;
    slm_status st = replace_unencodable(t, text, len, &copy, &len);
    if (st)
        return st;
    if (copy)
        text = copy;
    st = slm_tok_bpe_pretokenize(t, text, len, s, &n);
    for (size_t i = 0; !st && i < n; i++) {
        slm_tok_span p = ((slm_tok_span *)s->pieces)[i];
        st = merge_piece(t, (const uint8_t *)text + p.off, p.len, s, out);
    }
    free(copy);
    return st;
}
