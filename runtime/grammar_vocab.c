/*
 * grammar_vocab.c — a model's vocabulary as the grammar's token trie sees
 * it: each token's bytes (byte-fallback tokens as their byte, SentencePiece's
 * "▁" as a space), end-of-generation tokens as the end of the text, and
 * control, unknown and unused tokens never. Kept apart from grammar.c so
 * the grammar itself knows nothing of tokenizers.
 */
#include <stdlib.h>

#include "grammar.h"
#include "status.h"
#include "tokenizer.h"

int slm_token_trie_kind(const slm_tokenizer *tok, int32_t id)
{
    int type = slm_tokenizer_token_type(tok, id);
    size_t len;
    if (slm_tokenizer_is_eog(tok, id))
        return SLM_TRIE_END;
    if (!slm_tokenizer_piece(tok, id, false, &len) || type == SLM_TOKEN_CONTROL ||
        type == SLM_TOKEN_UNKNOWN || type == SLM_TOKEN_UNUSED)
        return SLM_TRIE_NEVER;
    return SLM_TRIE_TEXT;
}

slm_status slm_token_trie_from_tokenizer(const slm_tokenizer *tok, slm_token_trie **out)
{
    int n = slm_tokenizer_n_vocab(tok);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    uint8_t *kind = malloc((size_t)n);
    slm_status st = SLM_OK;
    *out = NULL;
    if (!pieces || !lens || !kind)
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory for the token trie");
    for (int i = 0; !st && i < n; i++) {
        pieces[i] = slm_tokenizer_piece(tok, i, false, &lens[i]);
        kind[i] = (uint8_t)slm_token_trie_kind(tok, i);
    }
    if (!st)
        st = slm_token_trie_create(n, pieces, lens, kind, out);
    free(pieces);
    free(lens);
    free(kind);
    return st;
}
