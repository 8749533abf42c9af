/*
 * session.h — one sequence evaluated on a model: a KV pool sized for n_ctx
 * tokens with an identity block table, and the forward pass run over the
 * prompt in chunks of n_batch tokens, then one token at a time. This is
 * what `slm run`, `slm chat`, `slm bench` and the reference tests use; the
 * serving engine (many sequences, shared pool) builds on the same pieces.
 */
#ifndef SLM_SESSION_H
#define SLM_SESSION_H

#include "forward.h"
#include "model.h"

typedef struct slm_session {
    slm_model *m;
    slm_kv *kv;
    slm_forward *fwd;
    int n_ctx, n_batch, block_size;
    int logit_chunk; /* tokens per step when every row's logits are wanted (<= n_batch) */
    int n_past;             /* tokens whose K/V are in the cache */
    int32_t *block_table;   /* [n_ctx / block_size] = 0, 1, 2, ... */
    int32_t *ids, *pos, *seq, *slot, *rows; /* step arrays, [n_batch] */
    float *logits;          /* [n_vocab] logits after the last evaluated token */
} slm_session;

/* n_ctx: the most tokens the sequence may hold (<= the model's training
 * context is not enforced; RoPE simply continues). n_batch: tokens per
 * forward step. KV stored as kv_type (F16 by default in callers). */
slm_status slm_session_create(slm_model *m, int n_ctx, int n_batch, slm_type kv_type,
                              slm_session **out);
void slm_session_free(slm_session *s); /* accepts NULL */

/* Appends n tokens to the sequence and runs the model over them. Afterwards
 * s->logits holds the logits that follow the last token; if all_logits is
 * not NULL it receives (n, n_vocab) logits, one row per token. Fails with
 * INVALID_ARGUMENT ("context full: ...") when n_past + n > n_ctx, leaving
 * the session unchanged. */
slm_status slm_session_eval(slm_session *s, const int32_t *tokens, int n, float *all_logits);

/* Forgets the sequence (the cache is reused from position 0). */
void slm_session_reset(slm_session *s);

#endif
