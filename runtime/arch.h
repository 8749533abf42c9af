/*
 * arch.h — what differs between the model families slm runs, as data: one
 * description per GGUF `general.architecture`, read by the loader (which
 * tensors and keys to expect) and the forward pass (which norm, which FFN,
 * where the residual goes). Adding a family that is a recombination of these
 * traits is one table row in arch.c; a family needing a new trait gets a
 * field here and a branch in forward.c, never a copy of the forward pass.
 *
 * Traits that files state for themselves are not here: biases (loaded when
 * the tensors are present), partial rotary (rope.dimension_count), sliding
 * windows and soft-caps (their keys), tied output (no output.weight).
 */
#ifndef SLM_ARCH_H
#define SLM_ARCH_H

#include <stdbool.h>

#include "backend.h"

typedef enum slm_norm_kind {
    SLM_NORM_RMS = 0,   /* x / rms(x) · w */
    SLM_NORM_LAYER = 1, /* (x − mean) / std(x) · w + b (StableLM, GPT-NeoX) */
} slm_norm_kind;

typedef enum slm_ffn_kind {
    SLM_FFN_SWIGLU = 0, /* down(silu(gate x) ⊙ up x) */
    SLM_FFN_GEGLU = 1,  /* down(gelu_tanh(gate x) ⊙ up x) (Gemma) */
    SLM_FFN_GELU = 2,   /* down(gelu(up x)), no gate (GPT-NeoX) */
} slm_ffn_kind;

typedef struct slm_arch {
    const char *name;      /* general.architecture */
    slm_norm_kind norm;
    slm_ffn_kind ffn;
    slm_rope_mode rope;    /* NORM for llama (the converter permutes Q/K), else NEOX */
    bool qk_norm;          /* per-head RMSNorm of q and k (attn_q_norm, attn_k_norm) */
    bool post_norms;       /* norms of the attention and FFN outputs before their
                            * residual adds (post_attention_norm, post_ffw_norm) */
    bool parallel;         /* attention and FFN read the same x (GPT-NeoX); the
                            * file's use_parallel_residual key may turn it off */
    bool embed_scale;      /* embeddings times sqrt(n_embd) (Gemma) */
    bool fused_qkv;        /* one attn_qkv tensor [q; k; v] (Phi-3, GPT-NeoX) */
    bool fused_gate_up;    /* ffn_up holds [gate; up] and there is no ffn_gate (Phi-3) */
    int swa_pattern;       /* with a sliding window: layer l slides iff l % n < n − 1
                            * (Gemma 3: 6, Gemma 2: 2); 0: every layer slides */
    bool swa_rope_base;    /* sliding layers rotate with rope.freq_base_swa
                            * (default 10000) and no scaling (Gemma 3) */
    bool softcaps;         /* attn_ and final_logit_softcapping keys (Gemma 2) */
    const char *eps_key;   /* the norm epsilon's key after "<arch>." */
} slm_arch;

/* The description of `name`, or NULL when slm does not run it. */
const slm_arch *slm_arch_find(const char *name);

/* "llama, mistral-style llama, gemma3, …": the supported names, for messages. */
const char *slm_arch_list(void);

#endif
