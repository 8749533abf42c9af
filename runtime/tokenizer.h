/*
 * tokenizer.h — text <-> token ids for GGUF models, built from the
 * tokenizer.ggml.* metadata (gguf-facts §5):
 *   - byte-level BPE (tokenizer.ggml.model = "gpt2"): the pre-tokenizer
 *     regexes chosen by tokenizer.ggml.pre run through PCRE2, each piece is
 *     mapped byte by byte to the GPT-2 alphabet and merged by rank;
 *   - SentencePiece (tokenizer.ggml.model = "llama"): score-driven merges of
 *     UTF-8 characters after "▁" replacement, byte fallback to <0xXX>.
 * Special tokens: user-defined tokens are always cut out of the text;
 * control (and unknown) tokens only when the caller asks (parse_special,
 * e.g. for rendered chat templates). Matching is leftmost-longest, as in
 * Hugging Face tokenizers.
 *
 * Invalid UTF-8 input is defined behaviour, never an error: each byte that
 * is not part of a well-formed sequence stands alone. BPE maps it through
 * the byte alphabet like any byte — except that a byte whose alphabet
 * character is not in the vocabulary (byte-level vocabularies trained on
 * valid UTF-8 lack C0, C1 and F5..FF) is replaced by U+FFFD first;
 * SentencePiece emits it as its <0xXX> byte token (or unk when the
 * vocabulary has no byte tokens). So decode(encode(bytes)) == bytes
 * (with that replacement for BPE) whenever no special token text is parsed
 * and (SPM) the leading space convention is undone, as decode does.
 *
 * Decoding: slm_tokenizer_decode gives the raw bytes the tokens stand for
 * (which need not be valid UTF-8 when ids are arbitrary). The streaming
 * slm_detok hands out only complete, valid UTF-8: a sequence split across
 * tokens is held back until it completes, and malformed bytes become
 * U+FFFD.
 *
 * Threads: a loaded tokenizer is immutable; any number of threads may
 * encode and decode with it at once. A slm_detok belongs to one thread.
 * The tokenizer copies what it needs: the slm_gguf may be closed after load.
 */
#ifndef SLM_TOKENIZER_H
#define SLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "slm.h"

typedef struct slm_tokenizer slm_tokenizer;

/* Token types, as stored in tokenizer.ggml.token_type. */
enum {
    SLM_TOKEN_UNDEFINED = 0,
    SLM_TOKEN_NORMAL = 1,
    SLM_TOKEN_UNKNOWN = 2,
    SLM_TOKEN_CONTROL = 3,
    SLM_TOKEN_USER_DEFINED = 4,
    SLM_TOKEN_UNUSED = 5,
    SLM_TOKEN_BYTE = 6
};

typedef enum slm_tokenizer_kind {
    SLM_TOKENIZER_BPE = 0, /* "gpt2" */
    SLM_TOKENIZER_SPM = 1  /* "llama" */
} slm_tokenizer_kind;

/* Builds a tokenizer from the tokenizer.ggml.* keys of g. Special ids and
 * flags take llama.cpp's defaults when absent (gguf-facts §5.2); an id
 * outside the vocabulary counts as absent and is named in
 * slm_tokenizer_warning. Fails with:
 *   SLM_STATUS_UNSUPPORTED  tokenizer.ggml.model other than gpt2/llama, or an
 *                           unknown tokenizer.ggml.pre (the message names it);
 *   SLM_STATUS_BAD_FORMAT   missing tokens (or merges for gpt2), arrays of
 *                           the wrong type or length, a bad token type, a
 *                           merge without a separating space;
 *   SLM_STATUS_OUT_OF_MEMORY, SLM_STATUS_INVALID_ARGUMENT (NULL args).
 * On failure *out is NULL and nothing is leaked. */
slm_status slm_tokenizer_load(const slm_gguf *g, slm_tokenizer **out);

void slm_tokenizer_free(slm_tokenizer *t); /* accepts NULL */

/* Encodes text[0..len) (any bytes; NUL bytes are ordinary bytes). With
 * add_bos, BOS is prepended when the model has a BOS id, whatever
 * tokenizer.ggml.add_bos_token says: callers pass
 * slm_tokenizer_add_bos(t) for the model's own convention. parse_special:
 * cut control/unknown token texts out of the text (user-defined ones are
 * always cut out).
 * Writes at most cap ids to ids (which may be NULL when cap is 0) and the
 * total count to *n_out. Returns SLM_OK when it fit; when cap is too small,
 * returns SLM_STATUS_INVALID_ARGUMENT ("... needs N ids") with *n_out = N
 * and the first cap ids written, so a caller can size a buffer and retry.
 * Other failures: OUT_OF_MEMORY, INTERNAL (a regex engine error). */
slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len,
                                bool add_bos, bool parse_special, int32_t *ids, size_t cap,
                                size_t *n_out);

/* The whole NUL-terminated text, BOS by the tokenizer's convention
 * (slm_tokenizer_add_bos), into a malloc'd array *ids of *n ids. */
slm_status slm_tokenizer_encode_alloc(const slm_tokenizer *t, const char *text,
                                      bool parse_special, int32_t **ids, size_t *n);

/* A byte range [begin, end) of a text to encode. */
typedef struct slm_tok_range {
    size_t begin, end;
} slm_tok_range;

/* slm_tokenizer_encode_alloc, except that inside the plain spans (sorted,
 * non-overlapping) control-token texts are ordinary text even with
 * parse_special, and no special token straddles a span border: a chat
 * template's markup is parsed for control tokens, the messages' contents
 * are not. The text between special tokens is still encoded in one piece
 * across span borders, so spans change nothing else. */
slm_status slm_tokenizer_encode_spans(const slm_tokenizer *t, const char *text,
                                      bool parse_special, const slm_tok_range *plain,
                                      size_t n_plain, int32_t **ids, size_t *n);

/* The bytes of ids[0..n): the concatenation of their pieces (control and
 * unknown tokens only when special is true), with the SentencePiece
 * leading space removed from the first piece when add_space_prefix is set.
 * Writes at most cap bytes and then, if room is left, a NUL; *n_out gets the
 * byte count (without NUL). When cap < count + 1 returns
 * SLM_STATUS_INVALID_ARGUMENT with *n_out = count. Ids out of range fail
 * with INVALID_ARGUMENT naming the position. */
slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n,
                                bool special, char *out, size_t cap, size_t *n_out);

/* The bytes token id stands for (not NUL-terminated; *len bytes), or NULL
 * for an id out of range. Control/unknown tokens give "" unless special. */
const char *slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, bool special, size_t *len);

/* Copying form of slm_tokenizer_piece for callers that want a buffer:
 * writes the piece and a NUL; INVALID_ARGUMENT for a bad id or when cap <
 * len + 1 (*len still gets the piece length). */
slm_status slm_tokenizer_token_to_piece(const slm_tokenizer *t, int32_t id, bool special,
                                        char *buf, size_t cap, size_t *len);

/* The token's text as stored in the vocabulary (NUL-terminated; BPE texts
 * are in the GPT-2 alphabet, SPM texts use "▁"), or NULL if out of range. */
const char *slm_tokenizer_token_text(const slm_tokenizer *t, int32_t id);

/* The id of the token whose stored text is text[0..len), or -1. O(1). */
int32_t slm_tokenizer_find(const slm_tokenizer *t, const char *text, size_t len);

slm_tokenizer_kind slm_tokenizer_kind_of(const slm_tokenizer *t);
int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t);
int slm_tokenizer_token_type(const slm_tokenizer *t, int32_t id); /* -1 if out of range */
/* Special ids; -1 when the model has none. */
int32_t slm_tokenizer_bos(const slm_tokenizer *t);
int32_t slm_tokenizer_eos(const slm_tokenizer *t);
int32_t slm_tokenizer_eot(const slm_tokenizer *t); /* key, else found by text */
int32_t slm_tokenizer_unk(const slm_tokenizer *t);
int32_t slm_tokenizer_pad(const slm_tokenizer *t);
bool slm_tokenizer_add_bos(const slm_tokenizer *t); /* the model's convention */
bool slm_tokenizer_add_eos(const slm_tokenizer *t);
/* End of generation: EOS, EOT, EOM, or a control token whose text is one
 * of the usual end-of-turn markers (<|im_end|>, <|eot_id|>, ...). */
bool slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id);
/* The longest piece in bytes (for sizing buffers). */
size_t slm_tokenizer_max_piece(const slm_tokenizer *t);
/* The pre-tokenizer in use for BPE ("smollm", "llama3", ...; "" for SPM). */
const char *slm_tokenizer_pre(const slm_tokenizer *t);
/* What load ignored in the file, for the user ("" when nothing), e.g.
 * "tokenizer.ggml.eos_token_id = 300000 is outside the vocabulary (262144
 * tokens); using 2". Lives as long as t. */
const char *slm_tokenizer_warning(const slm_tokenizer *t);

/* --- streaming detokenization ---------------------------------------------- */

typedef struct slm_detok slm_detok;

/* A decoder for one stream of tokens; special: render control tokens.
 * Fails with OUT_OF_MEMORY or INVALID_ARGUMENT. */
slm_status slm_detok_create(const slm_tokenizer *t, bool special, slm_detok **out);
void slm_detok_free(slm_detok *d); /* accepts NULL */
/* Forgets held bytes; the next token starts a new stream. */
void slm_detok_reset(slm_detok *d);

/* Feeds one token. *text and *len receive the UTF-8 that became complete
 * (possibly empty), never ending inside a sequence and never malformed
 * (malformed bytes become U+FFFD). The pointer stays valid until the next
 * call on d. An id out of range fails with INVALID_ARGUMENT and changes
 * nothing. Never allocates. */
slm_status slm_detok_feed(slm_detok *d, int32_t id, const char **text, size_t *len);

/* Ends the stream: bytes still held (an unfinished sequence) come out as
 * U+FFFD. The detok is then ready for a new stream. */
void slm_detok_flush(slm_detok *d, const char **text, size_t *len);

#endif
