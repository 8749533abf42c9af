/*
 * forward.h — the forward pass of a llama-family model, written once against
 * the backend interface (runtime/backend.h) for every backend:
 *
 *   embed → for each layer:
 *     rmsnorm → QKV matmul → RoPE(q, k) → KV store → fused paged attention
 *       → O matmul (+ residual)
 *     rmsnorm → gate|up matmul → SwiGLU → down matmul (+ residual)
 *   → keep the rows that need logits → final rmsnorm → output matmul
 *
 * A slm_forward holds the activation buffers for steps of up to max_tokens
 * tokens and max_logit_rows logit rows, allocated once; running a step
 * allocates nothing.
 */
#ifndef SLM_FORWARD_H
#define SLM_FORWARD_H

#include "backend.h"
#include "model.h"

typedef struct slm_forward slm_forward;

/* Allocates the activations for steps of up to max_tokens tokens and
 * max_logit_rows logit rows over kv (NULL: set later with
 * slm_forward_set_kv), and has the backend reserve the workspace of such a
 * step; *workspace (when not NULL) receives the bytes of both. */
slm_status slm_forward_create(slm_model *m, slm_kv *kv, int max_tokens, int max_logit_rows,
                              slm_forward **out, size_t *workspace);
void slm_forward_free(slm_forward *f); /* accepts NULL */

/* The pool steps use from now on; the backend's workspace grows to what
 * attention over it needs, and *workspace (when not NULL) grows by that. */
slm_status slm_forward_set_kv(slm_forward *f, slm_kv *kv, size_t *workspace);
int slm_forward_max_logit_rows(const slm_forward *f);

/* Begins, records and submits one step over the pool given at create:
 * step->n_tokens <= max_tokens, n_logit_rows <= max_logit_rows, K/V of every
 * token stored at step->kv_slot, first the n_copies block copies (dst :=
 * src). logits receives (n_logit_rows, n_vocab) floats by the time
 * slm_forward_wait returns. Returns at once where the backend runs
 * asynchronously; every submit must be followed by slm_forward_wait, which
 * returns the step's status (also a failure to begin or submit it). */
slm_status slm_forward_submit(slm_forward *f, const slm_step *step, float *logits,
                              const slm_kv_copy *copies, int n_copies);
slm_status slm_forward_wait(slm_forward *f);

/* Pooled embeddings: asks the next submitted step to also keep the
 * final-normed hidden states of ALL its tokens (after the output norm,
 * before the output projection: what an embedding pools). Costs one norm
 * over the step's rows; cleared by that submit. */
void slm_forward_keep_hidden(slm_forward *f);

/* After slm_forward_wait returned SLM_OK for a step submitted after
 * slm_forward_keep_hidden: out (n, n_embd) = rows row0 .. row0 + n of its
 * normed hidden states (a synchronous download). INVALID_ARGUMENT when
 * that step did not keep them or the rows are outside it. */
slm_status slm_forward_hidden(slm_forward *f, int row0, int n, float *out);

/* submit + wait. */
slm_status slm_forward_run(slm_forward *f, const slm_step *step, float *logits);

#endif
