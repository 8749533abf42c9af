/*
 * grammar.h — constrained decoding: a compiled grammar of JSON values, a
 * per-sequence state that walks it byte by byte, and the per-step set of
 * vocabulary tokens whose bytes can continue the text.
 *
 * A grammar is a graph of nodes (literal sets, strings, numbers, arrays,
 * objects, alternatives chosen by their first byte); runtime/json_schema.c
 * builds one from a JSON Schema. A state is a pushdown automaton over that
 * graph: a stack of frames, one per open value, each with a few counters.
 * It is deterministic: every byte either extends exactly one way or is
 * refused, which holds because alternatives must start with different bytes
 * and a value that may end (a number, "1" of enum ["1","12"]) is followed by
 * bytes it cannot take (',', '}', ']', end of text).
 *
 * The output is compact JSON: no whitespace except at most one space after
 * ':' and ',', so a model cannot loop on spaces; strings and arrays are
 * bounded by the schema's maxLength/maxItems when it gives them, numbers by
 * digit counts, nesting by SLM_GRAMMAR_MAX_DEPTH. Strings may hold any UTF-8
 * (checked byte by byte, so tokens that end inside a character work) and
 * escapes other than surrogate \u escapes.
 *
 * The token trie holds the vocabulary's byte strings in preorder; a mask
 * walks it depth first, stepping a copy of the state per trie node and
 * skipping a whole subtree as soon as its prefix is refused, so the cost
 * follows the live part of the trie rather than the vocabulary.
 *
 * Threads: a finished grammar and a trie are immutable (share them); a
 * state belongs to one sequence; a mask call needs its own scratch.
 */
#ifndef SLM_GRAMMAR_H
#define SLM_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

#define SLM_GRAMMAR_MAX_DEPTH 32   /* open values at once (objects, arrays, strings...) */
#define SLM_GRAMMAR_MAX_PROPS 64   /* declared properties of one object */
#define SLM_GRAMMAR_MAX_KEY 64     /* bytes of an additional (undeclared) key */
#define SLM_GRAMMAR_NO_LIMIT (-1)

typedef struct slm_grammar slm_grammar;

/* ---- building (runtime/json_schema.c) ------------------------------------ */

/* Each add returns the new node's id (>= 0) or -1 when out of memory. The
 * children of arrays, objects and alternatives may be added later, so
 * recursive schemas are graphs. */
slm_status slm_grammar_create(slm_grammar **out);
void slm_grammar_free(slm_grammar *g); /* accepts NULL */
/* Any of the given byte strings (JSON texts such as "\"red\"", "null");
 * duplicates are fine; n >= 1. */
int slm_grammar_add_literals(slm_grammar *g, const char *const *lits, const size_t *lens, int n);
/* A JSON string of min_len..max_len characters (code points; an escape is
 * one); max_len SLM_GRAMMAR_NO_LIMIT for none. */
int slm_grammar_add_string(slm_grammar *g, int min_len, int max_len);
int slm_grammar_add_number(slm_grammar *g, bool integer);
int slm_grammar_add_array(slm_grammar *g, int items, int min_items, int max_items);
/* An object: declared properties (added in order, emitted in that order,
 * optional ones may be left out), then additional keys (of value node
 * `extra`, or none when -1) once no required property remains. */
int slm_grammar_add_object(slm_grammar *g, int extra);
/* name: the key's JSON text without the quotes (escaped as JSON). Fails
 * with INVALID_ARGUMENT past SLM_GRAMMAR_MAX_PROPS. */
slm_status slm_grammar_object_add(slm_grammar *g, int object, const char *name, size_t len,
                                  int value, bool required);
/* One of several values told apart by their first byte; `where` names the
 * place in error messages (e.g. "#/anyOf"). */
int slm_grammar_add_alt(slm_grammar *g, const char *where);
slm_status slm_grammar_alt_add(slm_grammar *g, int alt, int child);
/* A forward reference, resolved by slm_grammar_alias_set (for $ref). */
int slm_grammar_add_alias(slm_grammar *g);
void slm_grammar_alias_set(slm_grammar *g, int alias, int target);
/* The node any JSON value matches (built once per grammar). */
int slm_grammar_any(slm_grammar *g);
/* Makes `root` the start and checks the graph: every alternative's members
 * start with different bytes, no alias is left unresolved or loops without
 * consuming a byte. INVALID_ARGUMENT naming the place otherwise. */
slm_status slm_grammar_finish(slm_grammar *g, int root);

/* ---- matching ------------------------------------------------------------- */

typedef struct slm_grammar_frame {
    int32_t node, ph, i, pos, u;
    uint64_t m, x;
} slm_grammar_frame;

/* Plain data: copy it to fork a sequence's state. */
typedef struct slm_grammar_state {
    const slm_grammar *g;
    int depth;            /* open frames */
    bool started;         /* the root value has begun */
    slm_grammar_frame f[SLM_GRAMMAR_MAX_DEPTH];
} slm_grammar_state;

void slm_grammar_state_init(slm_grammar_state *s, const slm_grammar *g);
/* Copies only the live frames (cheap for shallow states). */
void slm_grammar_state_copy(slm_grammar_state *dst, const slm_grammar_state *src);
/* Consumes one byte; false (and s unchanged in meaning: do not use it
 * further) when the grammar refuses it. Callers that probe copy first. */
bool slm_grammar_step(slm_grammar_state *s, uint8_t byte);
/* Consumes bytes; false at the first refused one. */
bool slm_grammar_feed(slm_grammar_state *s, const char *bytes, size_t n);
/* Could the text end here (the value complete)? */
bool slm_grammar_can_end(const slm_grammar_state *s);
/* Is the value complete with nothing more allowed (only the end remains)? */
bool slm_grammar_done(const slm_grammar_state *s);

/* ---- the vocabulary ------------------------------------------------------- */

typedef struct slm_token_trie slm_token_trie;

/* What a token is to the grammar. */
enum {
    SLM_TRIE_TEXT = 0,  /* its bytes (may be empty: then never allowed) */
    SLM_TRIE_END = 1,   /* end of generation: allowed when the value may end */
    SLM_TRIE_NEVER = 2  /* control tokens and the like */
};

/* Builds the trie of n tokens' byte strings; kind[i] one of SLM_TRIE_*.
 * Copies what it needs. OUT_OF_MEMORY, or INVALID_ARGUMENT for a piece
 * longer than 65535 bytes. */
slm_status slm_token_trie_create(int n, const char *const *pieces, const size_t *lens,
                                 const uint8_t *kind, slm_token_trie **out);
void slm_token_trie_free(slm_token_trie *t); /* accepts NULL */
/* A model's vocabulary (runtime/grammar_vocab.c): pieces as bytes,
 * end-of-generation tokens as the end, control/unknown/unused never. */
struct slm_tokenizer;
slm_status slm_token_trie_from_tokenizer(const struct slm_tokenizer *tok, slm_token_trie **out);
/* What token id of a model's vocabulary is to the trie (SLM_TRIE_*). */
int slm_token_trie_kind(const struct slm_tokenizer *tok, int32_t id);
int slm_token_trie_n_nodes(const slm_token_trie *t);
/* States a mask call needs as scratch (the longest piece + 1). */
int slm_token_trie_scratch(const slm_token_trie *t);

/* allowed[0..n) = 1 for tokens that may come next in state s, else 0;
 * returns how many are allowed. scratch: slm_token_trie_scratch(t) states. */
int slm_token_trie_mask(const slm_token_trie *t, const slm_grammar_state *s,
                        slm_grammar_state *scratch, uint8_t *allowed);

#endif
