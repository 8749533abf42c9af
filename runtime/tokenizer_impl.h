/*
 * tokenizer_impl.h — what tokenizer.c (loading, special tokens, decoding),
 * tokenizer_bpe.c (byte-level BPE) and tokenizer_spm.c (SentencePiece)
 * share: the tokenizer struct and per-call scratch. Not installed, not for
 * other modules: they use tokenizer.h.
 *
 * Invariants of a loaded slm_tokenizer (established by slm_tokenizer_load):
 *   - texts and pieces live in two arenas; text_off/text_len and
 *     piece_off/piece_len index them; every text is NUL-terminated;
 *   - vhash maps every token text to its id (the last id wins for duplicate
 *     texts, as in llama.cpp and Hugging Face);
 *   - mhash (BPE) maps a pair of token ids to the merge's rank and the id of
 *     their concatenation; merges whose parts or result are not tokens are
 *     dropped at load (they could never apply to token symbols);
 *   - byte_id[b]: BPE, the token of byte b's mapped character; SPM, the
 *     <0xXX> token; -1 when the vocabulary lacks it;
 *   - special ids are -1 or < n_vocab (a file's id outside the vocabulary
 *     is ignored and named in warning).
 */
#ifndef SLM_TOKENIZER_IMPL_H
#define SLM_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

#define SLM_TOK_MAX_REGEX 4
#define SLM_TOK_MAX_EOG 16
#define SLM_TOK_SPECIAL_KEYS (65536 + 256)

typedef struct slm_tok_merge {
    uint64_t key;   /* left id << 32 | right id; UINT64_MAX = empty slot */
    int32_t rank;   /* index in tokenizer.ggml.merges: lower merges first */
    int32_t result; /* id of left+right */
} slm_tok_merge;

struct slm_tokenizer {
    slm_tokenizer_kind kind;
    int32_t n_vocab;
    char *text;                   /* token texts, each NUL-terminated */
    uint32_t *text_off, *text_len;
    char *piece;                  /* decoded bytes of each token */
    uint32_t *piece_off, *piece_len;
    float *score;                 /* [n_vocab]; 0 when the file has none */
    uint8_t *type;                /* [n_vocab] SLM_TOKEN_* */
    int32_t *vhash;               /* open addressing, -1 = empty */
    size_t vhash_mask;
    slm_tok_merge *mhash;         /* BPE only */
    size_t mhash_mask;
    int32_t byte_id[256];
    /* Special tokens matched in text, bucketed by their first two bytes
     * (key b0 << 8 | b1; a one-byte token's key is 65536 + b0) and, within a
     * bucket, longest first: special[special_begin[k] .. special_begin[k+1]).
     * Two bytes, not one: Gemma's 6k control tokens all start with '<'. */
    int32_t *special;
    uint32_t *special_begin; /* [SLM_TOK_SPECIAL_KEYS + 1] */
    /* BPE pre-tokenizer. */
    pcre2_code *re[SLM_TOK_MAX_REGEX];
    int n_re;
    bool ignore_merges;
    char pre[32];
    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    int32_t eog[SLM_TOK_MAX_EOG];
    int n_eog;
    size_t max_piece;
    /* What load ignored and the user should hear of (special ids outside
     * the vocabulary), "; "-separated; "" when nothing. */
    char warning[512];
};

/* Growable id list for encode's output. */
typedef struct slm_tok_ids {
    int32_t *v;
    size_t n, cap;
} slm_tok_ids;

/* Per-call working memory, grown as needed and freed by slm_tok_scratch_free. */
typedef struct slm_tok_scratch {
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
    void *pieces, *pieces2;
    size_t pieces_cap, pieces2_cap;
    char *buf;
    size_t buf_cap;
    pcre2_match_data *md;
} slm_tok_scratch;

slm_status slm_tok_ids_push(slm_tok_ids *o, int32_t id);
/* Makes *p hold at least need bytes (realloc); OUT_OF_MEMORY on failure. */
slm_status slm_tok_reserve(void **p, size_t *cap, size_t need);
void slm_tok_scratch_free(slm_tok_scratch *s);

/* Vocabulary lookup of text[0..len): id or -1. */
int32_t slm_tok_lookup(const slm_tokenizer *t, const char *text, size_t len);

/* BPE: sets up t->re / ignore_merges / pre from the pre name (len bytes;
 * NULL = key absent). UNSUPPORTED for an unknown name. */
slm_status slm_tok_bpe_setup(slm_tokenizer *t, const char *pre, size_t len);
/* BPE: encodes one text segment (no special tokens inside) onto out. */
slm_status slm_tok_bpe_encode(const slm_tokenizer *t, const char *text, size_t len,
                              slm_tok_scratch *s, slm_tok_ids *out);
/* A piece of text found by the BPE pre-tokenizer: text[off, off + len). */
typedef struct slm_tok_span {
    size_t off, len;
} slm_tok_span;

/* BPE: runs the pre-tokenizer regexes over text; the pieces, in order and
 * covering the text, are left in s->pieces (slm_tok_span[*n_pieces]).
 * Exposed for tests, which compare the split with Hugging Face's. */
slm_status slm_tok_bpe_pretokenize(const slm_tokenizer *t, const char *text, size_t len,
                                   slm_tok_scratch *s, size_t *n_pieces);
/* SPM: encodes one text segment; prefix: prepend the "▁" of
 * add_space_prefix. An empty text with prefix encodes a lone "▁". */
slm_status slm_tok_spm_encode(const slm_tokenizer *t, const char *text, size_t len,
                              bool prefix, slm_tok_scratch *s, slm_tok_ids *out);

#endif
