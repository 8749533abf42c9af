/*
 * backend.h — the one interface between the backend-agnostic runtime (forward
 * pass, scheduler) and a compute backend (cpu_fallback/, cuda/, vulkan/).
 *
 * A backend is one table of function pointers (slm_backend_ops) plus an
 * opaque device handle whose first member is `const slm_backend_ops *ops`.
 * Nothing outside a backend's folder knows its types.
 *
 * Memory: the runtime never dereferences device memory. Activations live in
 * backend buffers (slm_buf) and are addressed as (buffer, byte offset) pairs;
 * every activation tensor is f32, row-major, shape (rows, cols) as stated on
 * each op. Weights are uploaded once through load_weight, which may copy or
 * repack; the KV cache is a backend-owned pool of fixed-size token blocks.
 *
 * Steps: begin_step(step) → op calls → end_step(). The step descriptor carries
 * everything that is per token or per sequence (token ids, positions, KV
 * slots, block tables, rows that need logits); ops take only sizes and
 * buffers, so a backend can keep step inputs at fixed device addresses and
 * replay a recorded step. No op fails on its own and no op allocates: errors
 * (out of memory, lost device) surface as end_step's status. The CPU backend
 * runs each op as it is called; GPU backends record and submit at end_step.
 *
 * Threads: one backend handle is used by one thread at a time.
 */
#ifndef SLM_BACKEND_H
#define SLM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant.h"
#include "slm.h"

#define SLM_BACKEND_API_VERSION 1

typedef struct slm_backend slm_backend;
typedef struct slm_backend_ops slm_backend_ops;
typedef struct slm_buf slm_buf;       /* device buffer (backend-defined) */
typedef struct slm_weight slm_weight; /* uploaded weight (backend-defined) */
typedef struct slm_kv slm_kv;         /* paged KV pool (backend-defined) */

/* A place in a device buffer: byte offset `off` into `buf`. */
typedef struct slm_ref {
    slm_buf *buf;
    size_t off;
} slm_ref;

/* Every backend handle starts with this. */
struct slm_backend {
    const slm_backend_ops *ops;
};

#define SLM_DEVICE_ANY (-1)
#define SLM_DEVICE_GPU_ONLY (-2)

typedef struct slm_backend_params {
    size_t size;       /* sizeof(slm_backend_params) */
    int n_threads;     /* CPU: worker threads (0 = one per online core) */
    /* GPU backends: which device. SLM_DEVICE_ANY chooses (discrete, then
     * integrated, then CPU implementations such as lavapipe);
     * SLM_DEVICE_GPU_ONLY chooses but fails when only a CPU implementation is
     * there (the "auto" backend choice uses it, so a machine without a GPU gets
     * the CPU backend rather than Vulkan emulated on the CPU). */
    int device_index;
} slm_backend_params;

/* Ops that supports() is asked about, one per op slot below. */
typedef enum slm_op {
    SLM_OP_EMBED,
    SLM_OP_RMSNORM,
    SLM_OP_MATMUL,
    SLM_OP_ROPE,
    SLM_OP_KV_STORE,
    SLM_OP_ATTENTION,
    SLM_OP_SWIGLU,
    SLM_OP_ADD,
    SLM_OP_SCALE,
    SLM_OP_GET_ROWS,
    SLM_OP_COUNT
} slm_op;

typedef enum slm_rope_mode {
    SLM_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]) — llama */
    SLM_ROPE_NEOX = 2  /* rotate split halves (x[i], x[i+n_rot/2]) — qwen2, phi3, gemma */
} slm_rope_mode;

typedef struct slm_rope_params {
    slm_rope_mode mode;
    int n_rot;               /* rotated dimensions per head (<= head_dim, even) */
    float freq_base;         /* theta base, e.g. 10000 */
    float freq_scale;        /* linear scaling: 1/factor (1 = none) */
    const float *freq_factors; /* host array [n_rot/2] of divisors, or NULL */
} slm_rope_params;

/* The KV pool's shape. Position p of a sequence lives in token slot
 * block_table[p / block_size] * block_size + p % block_size. */
typedef struct slm_kv_desc {
    int n_layers;
    int n_blocks;
    int block_size;  /* tokens per block (16 by default) */
    int n_kv_heads;
    int head_dim;
    slm_type type;   /* storage type of K and V: F32, F16 or Q8_0 */
} slm_kv_desc;

/* Everything per token and per sequence in one step. Host pointers; the
 * backend copies what it needs in begin_step, so they need not outlive it. */
typedef struct slm_step {
    int n_tokens;
    const int32_t *token_ids;  /* [n_tokens] */
    const int32_t *positions;  /* [n_tokens] position of each token in its sequence */
    const int32_t *seq_of_token; /* [n_tokens] index into the sequences below */
    const int32_t *kv_slot;    /* [n_tokens] token slot its K/V is stored in */
    int n_seqs;
    const int32_t *block_table_start; /* [n_seqs] offset into block_tables */
    const int32_t *block_table_len;   /* [n_seqs] blocks in that table */
    const int32_t *block_tables;      /* concatenated block ids */
    int n_logit_rows;
    const int32_t *logit_rows; /* [n_logit_rows] token rows whose logits are wanted */
} slm_step;

struct slm_backend_ops {
    int api_version; /* SLM_BACKEND_API_VERSION */
    const char *name; /* "cpu", "vulkan", "cuda" */

    /* --- device --- */
    /* Opens the backend; on failure returns a status and sets slm_last_error. */
    slm_status (*open)(const slm_backend_params *params, slm_backend **out);
    void (*close)(slm_backend *be); /* accepts NULL */
    /* One line describing the device (for `slm info`, bench output). */
    const char *(*describe)(slm_backend *be);

    /* --- capabilities --- */
    /* Can `op` run with weights of `type`? (type is ignored by ops without weights.) */
    bool (*supports)(slm_backend *be, slm_op op, slm_type type);

    /* --- memory --- */
    slm_status (*buf_alloc)(slm_backend *be, size_t bytes, slm_buf **out);
    void (*buf_free)(slm_backend *be, slm_buf *buf); /* accepts NULL */
    /* Synchronous copies between host memory and a buffer. */
    slm_status (*upload)(slm_backend *be, slm_ref dst, const void *src, size_t bytes);
    slm_status (*download)(slm_backend *be, void *dst, slm_ref src, size_t bytes);

    /* Uploads a weight of `rows` rows × `cols` elements stored as `type`
     * (rows of slm_type_row_bytes(type, cols) bytes, GGUF order). `data` must
     * stay valid until weight_free (the CPU backend uses it in place). Fails
     * with SLM_STATUS_UNSUPPORTED naming the type when it cannot run it. */
    slm_status (*load_weight)(slm_backend *be, slm_type type, int64_t rows, int64_t cols,
                              const void *data, slm_weight **out);
    void (*weight_free)(slm_backend *be, slm_weight *w); /* accepts NULL */

    slm_status (*kv_create)(slm_backend *be, const slm_kv_desc *desc, slm_kv **out);
    void (*kv_free)(slm_backend *be, slm_kv *kv); /* accepts NULL */

    /* --- a step --- */
    slm_status (*begin_step)(slm_backend *be, const slm_step *step);
    /* Submits (GPU), waits, and reports the first failure of the step. */
    slm_status (*end_step)(slm_backend *be);

    /* --- ops (n = step->n_tokens unless stated) --- */
    /* y(n, cols) = rows token_ids of the embedding weight, dequantized. */
    void (*embed)(slm_backend *be, const slm_weight *table, slm_ref y);
    /* If add.buf: x += add first (the residual stream, updated in place).
     * Then y(rows, d) = x / sqrt(mean(x²) + eps) · w. w is an F32 weight [1, d]. */
    void (*rmsnorm)(slm_backend *be, slm_ref x, slm_ref add, const slm_weight *w,
                    float eps, int rows, int d, slm_ref y);
    /* y(rows, w.rows) = x(rows, w.cols) · Wᵀ; if add.buf, y += add (same shape
     * as y, may equal y). Activations may be quantized to 8-bit blocks. */
    void (*matmul)(slm_backend *be, const slm_weight *w, slm_ref x, int rows, slm_ref add,
                   slm_ref y);
    /* Row strides: q, k and v are often column ranges of one fused QKV
     * matmul output, so the ops below take the distance between consecutive
     * token rows (`stride`, in floats) instead of assuming dense rows. */

    /* In place on x: n rows of n_heads·head_dim floats, `stride` floats
     * apart; positions from the step. */
    void (*rope)(slm_backend *be, slm_ref x, int stride, int n_heads, int head_dim,
                 const slm_rope_params *p);
    /* Writes k and v (n rows of n_kv_heads·head_dim floats, k_stride and
     * v_stride floats apart) of `layer` into the step's kv_slot. */
    void (*kv_store)(slm_backend *be, slm_kv *kv, int layer, slm_ref k, int k_stride, slm_ref v,
                     int v_stride);
    /* out(n, n_heads·head_dim), dense = softmax(scale · q·Kᵀ) · V for each
     * token over positions 0..its own position of its sequence (causal), K/V
     * read from the pool through the sequence's block table; query head h uses
     * KV head h / (n_heads / n_kv_heads). q rows are q_stride floats apart.
     * One fused pass (online softmax). */
    void (*attention)(slm_backend *be, slm_kv *kv, int layer, slm_ref q, int q_stride,
                      int n_heads, float scale, slm_ref out);
    /* y(rows, ff), dense = silu(g) ⊙ u, where g and u are rows of ff floats,
     * `stride` floats apart (g = gu, u = gu + ff, stride = 2·ff for a fused
     * gate|up output). */
    void (*swiglu)(slm_backend *be, slm_ref g, slm_ref u, int stride, int rows, int ff,
                   slm_ref y);
    /* y[i] = a[i] + b[i], i < count (y may alias a or b). */
    void (*add)(slm_backend *be, slm_ref a, slm_ref b, size_t count, slm_ref y);
    /* x[i] *= s, i < count. */
    void (*scale)(slm_backend *be, slm_ref x, float s, size_t count);
    /* y(step->n_logit_rows, d) = rows step->logit_rows of x(n, d). */
    void (*get_rows)(slm_backend *be, slm_ref x, int d, slm_ref y);
};

/* The backends compiled into this build. */
const slm_backend_ops *slm_backend_cpu(void);

#endif
