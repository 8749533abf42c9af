/*
 * model.h — a llama-family model loaded onto a backend: hyperparameters read
 * from GGUF metadata, and every weight uploaded once (through the backend's
 * load_weight) under a named pointer. Q|K|V and gate|up are fused into one
 * weight each at load time when their types match, so the forward pass does
 * one matmul per shared input.
 *
 * Architectures: llama (Llama 2/3, Mistral, SmolLM/SmolLM2 — all stored as
 * "llama"). Others fail to load with a message naming the architecture.
 *
 * Ownership: the model owns the GGUF mapping (weights point into it on the
 * CPU backend) and any fused copies; the backend is borrowed and must outlive
 * the model.
 */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "backend.h"
#include "gguf.h"

typedef struct slm_hparams {
    char arch[32];
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
} slm_hparams;

typedef struct slm_layer {
    const slm_weight *attn_norm; /* F32 [n_embd] */
    /* Fused [q; k; v] rows when the types match, else wq, wk, wv. */
    slm_weight *wqkv, *wq, *wk, *wv;
    slm_weight *wo;
    const slm_weight *ffn_norm;
    /* Fused [gate; up] rows when the types match, else w_gate, w_up. */
    slm_weight *w_gate_up, *w_gate, *w_up;
    slm_weight *w_down;
} slm_layer;

typedef struct slm_model {
    slm_gguf *gguf;
    slm_backend *be;
    slm_hparams hp;
    slm_weight *tok_embd;
    slm_weight *output_norm;
    slm_weight *output; /* == tok_embd when tied */
    slm_layer *layers;  /* [n_layer] */
    slm_weight **all_weights; /* everything to free (each once) */
    int n_weights;
    void **owned; /* host copies made for fusion, freed after the weights */
    int n_owned;
    float *rope_factors; /* [n_rot/2] or NULL */
    slm_rope *rope;      /* the RoPE frequency table on the backend (rope_create) */
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

/* Reads the hyperparameters only (no backend needed). */
slm_status slm_hparams_read(const slm_gguf *g, slm_hparams *hp);

#endif
