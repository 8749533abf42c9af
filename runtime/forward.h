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

slm_status slm_forward_create(slm_model *m, int max_tokens, int max_logit_rows,
                              slm_forward **out);
void slm_forward_free(slm_forward *f); /* accepts NULL */
int slm_forward_max_logit_rows(const slm_forward *f);

/* Runs one step: step->n_tokens <= max_tokens, n_logit_rows <= max_logit_rows,
 * K/V of every token stored into kv at step->kv_slot. logits receives
 * (n_logit_rows, n_vocab) floats on the host. Returns end_step's status. */
slm_status slm_forward_run(slm_forward *f, slm_kv *kv, const slm_step *step, float *logits);

#endif
