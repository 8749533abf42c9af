/*
 * fuzz_json_schema.c — libFuzzer target for structured output: the input is
 * a JSON Schema, a NUL byte, then text. The schema goes through the compiler
 * (runtime/json_schema.c: it comes from HTTP clients); when it compiles, the
 * text is fed byte by byte to a grammar state, and at every byte the trie's
 * mask over a small vocabulary (every single byte, a few JSON-ish pieces,
 * an end token) must equal a brute-force check of each token; a mismatch
 * aborts. Built with AddressSanitizer and UBSan (SLM_FUZZ=ON). Run it like
 * fuzz_gguf: build-fuzz/tests/fuzz_json_schema CORPUS -max_total_time=60.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "json_schema.h"

#define N_EXTRA 9
static const char *const extra[N_EXTRA] = {"{\"", "\":", "\", \"", "true", "null", "12", "\\u00",
                                           "\xc3\xa9", "\"}"};
#define N_VOCAB (256 + N_EXTRA + 1)

static const char *pieces[N_VOCAB];
static size_t lens[N_VOCAB];
static uint8_t kinds[N_VOCAB];
static char bytes[256];
static slm_token_trie *trie;

static void vocab_init(void)
{
    for (int i = 0; i < 256; i++) {
        bytes[i] = (char)i;
        pieces[i] = &bytes[i];
        lens[i] = 1;
    }
    for (int i = 0; i < N_EXTRA; i++) {
        pieces[256 + i] = extra[i];
        lens[256 + i] = strlen(extra[i]);
    }
    pieces[N_VOCAB - 1] = "";
    kinds[N_VOCAB - 1] = SLM_TRIE_END;
    if (slm_token_trie_create(N_VOCAB, pieces, lens, kinds, &trie) != SLM_OK)
        abort();
}

static void check_mask(const slm_grammar_state *s)
{
    static slm_grammar_state scratch[16];
    static uint8_t mask[N_VOCAB];
    if (slm_token_trie_scratch(trie) > 16)
        abort();
    int n = slm_token_trie_mask(trie, s, scratch, mask), m = 0;
    for (int i = 0; i < N_VOCAB; i++) {
        slm_grammar_state t;
        slm_grammar_state_copy(&t, s);
        int ok = kinds[i] == SLM_TRIE_END ? slm_grammar_can_end(s)
                                          : slm_grammar_feed(&t, pieces[i], lens[i]);
        if (ok != mask[i])
            abort();
        m += ok;
    }
    if (n != m)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!trie)
        vocab_init();
    const uint8_t *nul = memchr(data, 0, size);
    size_t schema_len = nul ? (size_t)(nul - data) : size;
    slm_grammar *g;
    if (slm_json_schema_compile((const char *)data, schema_len, &g) != SLM_OK)
        return 0;
    slm_grammar_state s;
    slm_grammar_state_init(&s, g);
    check_mask(&s);
    for (size_t i = schema_len + 1; i < size && slm_grammar_step(&s, data[i]); i++)
        check_mask(&s);
    slm_grammar_free(g);
    return 0;
}
