/*
 * model.h — a model loaded onto a backend: hyperparameters read from GGUF
 * metadata, and every weight uploaded once (through the backend's
 * load_weight) under a named pointer. Q|K|V and gate|up are fused into one
 * weight each at load time when their types match, so the forward pass does
 * one matmul per shared input (not Q|K|V when q and k are normed per head:
 * the norm wants them dense).
 *
 * Architectures: the families of runtime/arch.c (llama incl. Mistral and
 * SmolLM, qwen2, qwen3, exaone, phi3, gemma2, gemma3, stablelm, gptneox).
 * Others fail to load with a message naming the architecture; a supported
 * one missing a key or tensor fails naming that.
 *
 * Ownership: the model owns the GGUF mapping (weights point into it on the
 * CPU backend) and any fused copies; the backend is borrowed and must outlive
 * the model.
 */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "arch.h"
#include "backend.h"
#include "gguf.h"

typedef struct slm_hparams {
    char arch[32];
    const slm_arch *ad; /* the family's description (arch.h) */
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_ff;
    float norm_eps;
    slm_rope_params rope; /* freq_factors points into the model when present */
    slm_rope_params rope_swa; /* sliding layers' RoPE (== rope unless ad->swa_rope_base) */
    int swa_window;       /* sliding window in tokens, 0: none */
    float attn_softcap;   /* 0: none */
    float final_softcap;  /* 0: none */
    bool parallel;        /* attention and FFN both read the layer's input x */
} slm_hparams;

/* A norm's weight and (LayerNorm) bias. */
typedef struct slm_norm_w {
    const slm_weight *w, *b; /* b NULL: none */
} slm_norm_w;

typedef struct slm_layer {
    slm_norm_w attn_norm; /* F32 [n_embd] */
    /* Fused [q; k; v] rows when the types match, else wq, wk, wv. */
    slm_weight *wqkv, *wq, *wk, *wv;
    /* Biases (F32, NULL when absent): of the fused rows, or of each. */
    const slm_weight *bqkv, *bq, *bk, *bv, *bo;
    const slm_weight *q_norm, *k_norm; /* F32 [head_dim] per-head norms, or NULL */
    slm_weight *wo;
    const slm_weight *post_attn_norm; /* or NULL */
    slm_norm_w ffn_norm; /* w NULL: the FFN reads attn_norm's output (parallel) */
    /* Fused [gate; up] rows when the types match, else w_gate, w_up
     * (SLM_FFN_GELU: only w_up). */
    slm_weight *w_gate_up, *w_gate, *w_up;
    const slm_weight *b_up, *b_down;
    slm_weight *w_down;
    const slm_weight *post_ffn_norm; /* or NULL */
    bool swa; /* attends through the sliding window */
} slm_layer;

typedef struct slm_model {
    slm_gguf *gguf;
    slm_backend *be;
    slm_hparams hp;
    slm_weight *tok_embd;
    slm_norm_w output_norm;
    slm_weight *output; /* == tok_embd when tied */
    slm_layer *layers;  /* [n_layer] */
    slm_weight **all_weights; /* everything to free (each once) */
    int n_weights;
    void **owned; /* host copies made for fusion, freed after the weights */
    int n_owned;
    float *rope_factors; /* [n_rot/2] or NULL */
    slm_rope *rope;      /* the RoPE frequency table on the backend (rope_create) */
    slm_rope *rope_swa;  /* the sliding layers' table, or NULL (they use rope) */
    char path[512];
    /* Set only for models opened through the public API (slm_model_open,
     * runtime/api_model.c): such a model owns its backend and tokenizer,
     * which slm_model_free releases, and runs at most one engine at a time
     * (a backend handle serves one thread). */
    slm_backend *owned_backend;
    struct slm_tokenizer *tok;
    atomic_int n_engines;
    char name[256]; /* general.name, else the file name */
    char fallback[512]; /* why "auto" passed over a GPU backend, or "" */
} slm_model;

/* Called during loading with the fraction done (0..1). */
typedef void (*slm_progress_fn)(float fraction, void *user);

/* Opens the GGUF at path, checks the architecture, hyperparameters, and every
 * tensor's presence, shape and type (messages name the tensor), and uploads
 * the weights to be. On failure nothing is left allocated. */
slm_status slm_model_load(const char *path, slm_backend *be, slm_progress_fn progress,
                          void *user, slm_model **out);
void slm_model_free(slm_model *m); /* accepts NULL */

/* Whether slm can run the file at path: every check slm_model_load makes
 * of the architecture, keys, tensors, shapes and types, without a backend
 * and without reading weights. SLM_OK, or the status and message
 * slm_model_load would fail with (naming the key or tensor). */
slm_status slm_model_check(const char *path);

/* Reads the hyperparameters only (no backend needed). */
slm_status slm_hparams_read(const slm_gguf *g, slm_hparams *hp);

#endif
