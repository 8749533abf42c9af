/*
 * backend.h — the one interface between the backend-agnostic runtime (forward
 * pass, engine) and a compute backend (cpu_fallback/, cuda/, vulkan/).
 * Version 3 (SLM_BACKEND_API_VERSION; 3 added the ops of the model families:
 * geglu, gelu, layernorm, bias, softcap, and windowed / soft-capped attention); the registry refuses a table of any
 * other version or with a mandatory slot left NULL.
 *
 * A backend is one table of function pointers (slm_backend_ops) plus an
 * opaque device handle whose first member is `const slm_backend_ops *ops`.
 * Nothing outside a backend's folder knows its types.
 *
 * Memory: the runtime never dereferences device memory. Activations live in
 * backend buffers (slm_buf) and are addressed as (buffer, byte offset) pairs;
 * every activation tensor is f32, row-major, shape (rows, cols) as stated on
 * each op. Weights are uploaded once through load_weight, which may copy or
 * repack; constants (RoPE frequency tables) once through rope_create; the
 * KV cache is a backend-owned pool of fixed-size token blocks. `memory`
 * reports the device's free and total bytes, `reserve` allocates (and
 * reports) the workspace of the largest step the caller will run, so the
 * engine can size the KV pool from what is really left.
 *
 * A step, and its ordering rules:
 *   begin_step(step)  plans the step once: copies and checks every per-token
 *                     and per-sequence array against the KV pool (block ids,
 *                     slots, positions covered by block tables) and works
 *                     out what the ops would otherwise re-derive (attention
 *                     split counts, workspace offsets). Ops take only sizes
 *                     and buffers, so inputs can live at fixed device
 *                     addresses and a recorded step can be replayed.
 *   op calls          record (GPU) or run (CPU) in call order; each sees the
 *                     writes of the ones before. The `logits` op names the
 *                     rows copied into step->logits, the host buffer the step
 *                     carries: that copy is part of the step.
 *   submit()          returns at once on a GPU (the device works on); the
 *                     CPU backend has already run the ops and returns.
 *   wait()            blocks until the submitted step is done and returns its
 *                     status (the first failure of any op: bad arguments,
 *                     out of memory, lost device). Only after wait returns
 *                     SLM_OK are step->logits valid.
 * Between submit and wait the caller may do host work that touches neither
 * the backend nor step->logits (sampling an earlier step's logits kept
 * elsewhere, scheduling the next step); it may not call any other slot of
 * the same handle. A step begun must be ended by submit + wait (also after a
 * failed begin_step: wait then reports that failure). No op fails on its
 * own and no op allocates.
 *
 * Optional slots are NULL when a backend does not offer them; each says
 * what the runtime does instead. supports() may refuse a weight type, a
 * head size or a KV storage type at load, with a message naming it.
 *
 * No environment variables: every knob arrives in slm_backend_params.
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

#define SLM_BACKEND_API_VERSION 3

typedef struct slm_backend slm_backend;
typedef struct slm_backend_ops slm_backend_ops;
typedef struct slm_buf slm_buf;       /* device buffer (backend-defined) */
typedef struct slm_weight slm_weight; /* uploaded weight (backend-defined) */
typedef struct slm_kv slm_kv;         /* paged KV pool (backend-defined) */
typedef struct slm_rope slm_rope;     /* RoPE constants on the device (backend-defined) */

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

    /* Tuning knobs (zero / NULL: the backend's own choice). The public
     * slm_model_params.options string maps onto these (backend_options.c). */
    const char *cpu_simd;      /* CPU: "scalar", "avx2", "avx512", "neon" (must be available) */
    int cpu_act_terms;         /* CPU: activations quantized in 1 (q8) or 2 (q8x2) terms */
    int cpu_pack;              /* CPU: 0 auto (repack weights where the level has packed kernels), -1 never */
    const char *vk_device;     /* Vulkan: first device whose name contains this */
    int vk_subgroup;           /* Vulkan: -1 never use subgroup reductions, 0 auto */
    uint64_t vk_max_buffer;    /* Vulkan: lower the bindable-buffer limit (tests) */
    int vk_matvec_rows;        /* Vulkan: matmul of up to this many rows uses the matrix-vector kernel */
    int vk_split_min;          /* Vulkan: context length from which decode attention splits */
    int vk_chunk;              /* Vulkan: dispatches per submitted chunk of a step */
    int vk_matmul;             /* Vulkan: 0 auto, 1 "direct" (register-tiled), 2 "gpu" (shared-memory tiled) */
    const char *cache_dir;     /* a folder for compiled-pipeline caches (NULL: none) */
    int cuda_device;           /* CUDA: 1 + the index of the device to use (0: device_index decides) */
    int cuda_matvec_rows;      /* CUDA: matmul of up to this many rows uses the int8 matrix-vector
                                * kernel, more rows cuBLAS (0: the default, -1: always cuBLAS) */
    int cuda_split_min;        /* CUDA: context length from which decode attention splits (0: 512) */
} slm_backend_params;

/* Fills p with the defaults (size set, every knob zero, device chosen). */
void slm_backend_params_default(slm_backend_params *p);

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
    SLM_OP_KV_COPY,
    SLM_OP_LOGITS,
    SLM_OP_GEGLU,
    SLM_OP_GELU,
    SLM_OP_LAYERNORM,
    SLM_OP_BIAS,
    SLM_OP_SOFTCAP,
    SLM_OP_COUNT
} slm_op;

/* A question for supports(): can `op` run with this weight type (embed,
 * matmul, rmsnorm), KV storage type (kv_store, attention, kv_copy) and
 * head size (rope, kv_store, attention; 0 = not asked)? */
typedef struct slm_support_query {
    slm_op op;
    slm_type type;
    int head_dim;
} slm_support_query;

/* Device memory as the backend measures it (host memory for the CPU). */
typedef struct slm_mem_info {
    uint64_t total_bytes;
    uint64_t free_bytes;
    bool host; /* the host's RAM (CPU, lavapipe, integrated GPUs): shared with everything else */
} slm_mem_info;

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

/* The inverse frequency of pair i (0 <= i < n_rot/2), in double precision:
 * freq_scale · base^(-2i/n_rot) / freq_factors[i]. Every backend's
 * rope_create tabulates exactly this, once. */
double slm_rope_inv_freq(const slm_rope_params *p, int i);

/* SLM_OK when p is a RoPE rope_create can tabulate with at most max_rot
 * rotated dimensions, else INVALID_ARGUMENT naming `who` and the values. */
slm_status slm_rope_params_check(const slm_rope_params *p, int max_rot, const char *who);

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

/* The byte layout of a paged KV pool as the CPU and CUDA backends store it:
 * K and V each [layer][block][kv_head][slot][row], so the rows one KV head
 * reads from one block are contiguous; a row is head_dim values as F32, F16
 * or Q8_0 blocks (padded_dim / 32 of them, the tail coded as zeros, so any
 * head_dim works). */
typedef struct slm_kv_layout {
    int padded_dim;          /* head_dim rounded up to the storage block (32 for Q8_0) */
    size_t row_bytes;        /* one head's row of one token */
    size_t head_block_bytes; /* block_size rows */
    size_t block_bytes;      /* n_kv_heads head blocks */
    size_t layer_bytes;      /* n_blocks blocks */
    size_t total_bytes;      /* n_layers layers: the size of K, and of V */
} slm_kv_layout;

/* Fills *out for d: SLM_OK; UNSUPPORTED naming a storage type other than
 * F32, F16 or Q8_0; INVALID_ARGUMENT for a size below 1, more than
 * INT32_MAX token slots, or a byte count that overflows. */
slm_status slm_kv_layout_of(const slm_kv_desc *d, slm_kv_layout *out);

/* How one layer attends (read during the attention call; a GPU backend
 * records the values, not the pointer). */
typedef struct slm_attn_params {
    float scale;   /* multiplies q·k (1/sqrt(head_dim) for most models) */
    float softcap; /* > 0: each score s becomes softcap·tanh(s / softcap) before
                    * the softmax (Gemma 2); 0: none */
    int window;    /* > 0: a token at position p attends only to positions
                    * p - window < j <= p (sliding window, itself included);
                    * 0: every earlier position */
} slm_attn_params;

/* One KV block copy: every layer's K and V of block src into block dst. */
typedef struct slm_kv_copy {
    int32_t src;
    int32_t dst;
} slm_kv_copy;

/* The largest step a caller will run (for reserve). */
typedef struct slm_step_limits {
    int max_tokens;      /* tokens per step */
    int max_seqs;        /* sequences per step */
    int max_logit_rows;
    int max_heads;       /* query heads of the model */
    int logit_cols;      /* floats per logits row (the vocabulary) */
    const slm_kv *kv;    /* the pool the steps use (NULL: none yet) */
} slm_step_limits;

/* Everything per token and per sequence in one step. Host pointers; the
 * backend copies what it needs in begin_step, so they need not outlive it
 * — except `logits`, which the step writes into before wait returns. */
typedef struct slm_step {
    slm_kv *kv;                /* the pool the step's KV ops use (NULL: none) */
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
    float *logits;             /* host [n_logit_rows][n_vocab], filled by the logits op */
    int n_heads;               /* query heads (attention planning; 0: not known) */
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
    /* SLM_OK when the op can run as asked; SLM_STATUS_UNSUPPORTED with
     * slm_last_error naming the type or head size otherwise. */
    slm_status (*supports)(slm_backend *be, const slm_support_query *q);
    /* Optional. Device memory now. NULL: not measurable; the engine then
     * sizes the KV pool from max_running × n_ctx, capped at 1 GiB. */
    slm_status (*memory)(slm_backend *be, slm_mem_info *out);

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

    /* Tabulates p's inverse frequencies (slm_rope_inv_freq) on the device,
     * once; the rope op reads them. */
    slm_status (*rope_create)(slm_backend *be, const slm_rope_params *p, slm_rope **out);
    void (*rope_free)(slm_backend *be, slm_rope *r); /* accepts NULL */

    /* Allocates now the workspace every step within lim will need, so no
     * step allocates, and adds the bytes of all the workspace it then holds
     * to *bytes. Called again with larger limits (or a pool) it grows. */
    slm_status (*reserve)(slm_backend *be, const slm_step_limits *lim, size_t *bytes);

    /* --- a step (see the ordering rules at the top) --- */
    slm_status (*begin_step)(slm_backend *be, const slm_step *step);
    slm_status (*submit)(slm_backend *be);
    slm_status (*wait)(slm_backend *be);

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
     * apart; positions from the step; frequencies from r (rope_create). */
    void (*rope)(slm_backend *be, slm_ref x, int stride, int n_heads, int head_dim,
                 const slm_rope *r);
    /* Writes k and v (n rows of n_kv_heads·head_dim floats, k_stride and
     * v_stride floats apart) of `layer` into the step's kv_slot. */
    void (*kv_store)(slm_backend *be, slm_kv *kv, int layer, slm_ref k, int k_stride, slm_ref v,
                     int v_stride);
    /* out(n, n_heads·head_dim), dense = softmax(cap(p->scale · q·Kᵀ)) · V
     * for each token over positions 0..its own position of its sequence
     * (causal; only the last p->window of them when p->window > 0), where
     * cap is p->softcap·tanh(·/p->softcap) when p->softcap > 0; K/V read from
     * the pool through the sequence's block table; query head h uses KV head
     * h / (n_heads / n_kv_heads). q rows are q_stride floats apart. One fused
     * pass (online softmax). */
    void (*attention)(slm_backend *be, slm_kv *kv, int layer, slm_ref q, int q_stride,
                      int n_heads, const slm_attn_params *p, slm_ref out);
    /* y(rows, ff), dense = silu(g) ⊙ u, where g and u are rows of ff floats,
     * `stride` floats apart (g = gu, u = gu + ff, stride = 2·ff for a fused
     * gate|up output). */
    void (*swiglu)(slm_backend *be, slm_ref g, slm_ref u, int stride, int rows, int ff,
                   slm_ref y);
    /* As swiglu with gelu_tanh(g) in place of silu(g), where gelu_tanh(x) =
     * 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))) (Gemma's GeGLU). */
    void (*geglu)(slm_backend *be, slm_ref g, slm_ref u, int stride, int rows, int ff,
                  slm_ref y);
    /* y[i] = 0.5·x[i]·(1 + erf(x[i]/sqrt(2))), i < count; y may equal x (the
     * exact GELU of GPT-NeoX's non-gated FFN). */
    void (*gelu)(slm_backend *be, slm_ref x, size_t count, slm_ref y);
    /* If add.buf: x += add first. Then y(rows, d) = (x - mean) /
     * sqrt(var + eps) · w + b (b may be NULL: no bias); w, b F32 weights
     * [1, d]; y may equal x. */
    void (*layernorm)(slm_backend *be, slm_ref x, slm_ref add, const slm_weight *w,
                      const slm_weight *b, float eps, int rows, int d, slm_ref y);
    /* In place: x[r·stride + c] += b[c] for r < rows, c < b's d columns (b an
     * F32 weight [1, d]); the biases of Q/K/V and other projections, whose
     * outputs may be column ranges of a fused matmul (stride >= d). */
    void (*bias)(slm_backend *be, slm_ref x, int stride, int rows, const slm_weight *b);
    /* In place: x[i] = cap·tanh(x[i] / cap), i < count, cap > 0 (Gemma 2's
     * final-logit soft-capping). */
    void (*softcap)(slm_backend *be, slm_ref x, size_t count, float cap);
    /* y(step->n_logit_rows, d) = rows step->logit_rows of x(n, d). */
    void (*get_rows)(slm_backend *be, slm_ref x, int d, slm_ref y);
    /* step->logits (host) = x(step->n_logit_rows, cols), by the end of the
     * step (the copy is ordered after every op recorded before it). */
    void (*logits)(slm_backend *be, slm_ref x, int cols);

    /* y[i] = a[i] + b[i], i < count (y may alias a or b): the residual add
     * after a post-norm (Gemma 2/3) that no matmul epilogue carries. */
    void (*add)(slm_backend *be, slm_ref a, slm_ref b, size_t count, slm_ref y);
    /* x[i] *= s, i < count (Gemma's embedding scaling). */
    void (*scale)(slm_backend *be, slm_ref x, float s, size_t count);

    /* --- optional ops --- */
    /* Performs copies[0..n) in order, before the ops recorded after it.
     * NULL: not offered; the engine then fails a step whose plan needs a
     * copy (a forked sequence) with UNSUPPORTED naming the backend. */
    void (*kv_copy)(slm_backend *be, slm_kv *kv, const slm_kv_copy *copies, int n);
};

/* The backends compiled into this build. */
const slm_backend_ops *slm_backend_cpu(void);
#ifdef SLM_HAVE_CUDA
const slm_backend_ops *slm_backend_cuda(void); /* cuda/backend_cuda.cu */
#endif

/* Whether a table can be used by this runtime: SLM_OK, or INTERNAL naming
 * the wrong api_version or the first mandatory slot left NULL. */
slm_status slm_backend_ops_check(const slm_backend_ops *ops);

/* The begin_step checks every backend makes, with one wording.
 * slm_step_check: counts ≥ 0, block tables present for the sequences and
 * within int32, each token's sequence and position (when given) valid, each
 * logit row a token of the step; *n_bt gets the number of block ids the
 * tables use. slm_step_kv_check: what the KV ops follow lies in a pool of
 * n_blocks blocks of block_size tokens (every table's block ids, each
 * token's slot, enough blocks in its sequence's table for its position; a
 * missing array fails; call it on a step slm_step_check passed). Both SLM_OK
 * or INVALID_ARGUMENT naming the first fault; s may point at a backend's
 * own copies of the arrays. */
slm_status slm_step_check(const slm_step *s, int *n_bt);
slm_status slm_step_kv_check(const slm_step *s, int n_blocks, int block_size);

/* SLM_OK when every copy's blocks lie in a pool of n_blocks, else
 * INVALID_ARGUMENT naming the first that does not (the kv_copy ops' check). */
slm_status slm_kv_copies_check(const slm_kv_copy *copies, int n, int n_blocks);

/* submit then wait: a whole step for callers with nothing to overlap. */
slm_status slm_backend_finish_step(slm_backend *be);

#endif
