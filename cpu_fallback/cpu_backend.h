/*
 * cpu_backend.h — private to cpu_fallback/: the CPU backend's handle, its
 * buffer / weight / KV types, the per-step state, and the op functions that
 * backend_cpu.c puts into the one slm_backend_ops table.
 *
 * Step state: begin_step copies the step's arrays into storage the backend
 * owns (grown, never shrunk) and checks their internal consistency; ops read
 * only those copies. When the step names a KV pool, begin_step also plans
 * it once (slm_cpu_kv_plan: every slot, block id and position checked), so
 * kv_store and attention do not re-check. The first failure of a step (a bad argument to an op, a
 * token id past the table, a block id past the pool, scratch that could not
 * be allocated) is remembered in `err`/`err_msg`; every later op of the step
 * does nothing and wait returns it. Ops run on the calling thread and the
 * pool, immediately.
 *
 * Not responsible for: the matmul kernels (matmul.c, cpu_matmul.h).
 */
#ifndef SLM_CPU_BACKEND_H
#define SLM_CPU_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "cpu_matmul.h"
#include "cpu_pool.h"
#include "cpu_simd.h"
#include "status.h"

/* Query heads of one GQA group handled together by one attention work item
 * (bounds the per-thread scratch, which must be sized before n_heads is
 * known). */
#define SLM_CPU_ATTN_GROUP_MAX 8
/* Query rows (tokens × heads) one attention tile carries through the KV
 * blocks together; at least SLM_CPU_ATTN_GROUP_MAX. */
#define SLM_CPU_ATTN_ROWS 64

struct slm_buf {
    uint8_t *data; /* 64-byte aligned host memory */
    size_t size;   /* bytes usable */
};

struct slm_weight {
    slm_type type;
    int64_t rows, cols;
    size_t row_bytes;    /* slm_type_row_bytes(type, cols) */
    const uint8_t *data; /* the caller's memory (zero copy), rows × row_bytes */
    slm_cpu_packed *packed; /* the same weights repacked for the matmul, or NULL */
};

/* RoPE constants (rope_create): the inverse frequency of every rotated pair,
 * in double so long positions keep their phase. */
struct slm_rope {
    slm_rope_mode mode;
    int n_rot;
    double inv_freq[]; /* [n_rot / 2] */
};

/* The paged KV pool. K and V each: [layer][block][kv_head][slot][row], so the
 * rows one head reads from one block are contiguous. A row holds head_dim
 * values in the storage type; Q8_0 rows are ceil(head_dim/32) blocks, the
 * last padded with zeros (so any head_dim works). */
struct slm_kv {
    slm_kv_desc d;
    slm_kv_layout lay; /* slm_kv_layout_of(d): row, block and layer strides */
    uint8_t *k, *v;
};

typedef struct slm_cpu_backend {
    slm_backend base; /* must be first: the runtime sees only this */
    slm_pool *pool;
    slm_simd simd;
    int act_terms; /* 1: Q8 activations; 2: plus their quantized residual (cpu.act=q8x2) */
    bool pack;     /* repack weights at load where the level has packed kernels (cpu.pack) */
    int n_threads;
    char desc[256];

    /* Largest weight width per type (matmul scratch) and the largest KV
     * shapes created (attention scratch); grown by load_weight / kv_create. */
    int64_t max_cols[SLM_TYPE_COUNT];
    int max_head_dim, max_block_size;

    /* Scratch, grown in begin_step (64-byte aligned). */
    void *mm_scratch;
    size_t mm_scratch_bytes;
    void *attn_scratch;
    size_t attn_scratch_bytes;
    size_t attn_thread_bytes; /* per-thread stride in attn_scratch */

    /* The current step (copies) and its plan. */
    bool in_step;
    slm_kv *plan_kv;    /* the pool begin_step checked the step against (NULL: none) */
    int64_t attn_pos;   /* sum over tokens of (position + 1): attention's work */
    float *logits_out;  /* step->logits */
    slm_status err;
    char err_msg[512];
    int n_tokens, n_seqs, n_bt, n_logit;
    /* One allocation holds every copied array (grown, never shrunk); the
     * pointers below point into it. A per-token array the step omitted is
     * all -1 (the ops that need it fail naming it). */
    int32_t *step_mem;
    size_t step_mem_cap; /* int32 elements */
    int32_t *token_ids, *positions, *seq_of_token, *kv_slot; /* [n_tokens] each */
    int32_t *bt_start, *bt_len;                              /* [n_seqs] */
    int32_t *block_tables;                                   /* [n_bt] */
    int32_t *logit_rows;                                     /* [n_logit] */
} slm_cpu_backend;

static inline slm_cpu_backend *slm_cpu_be(slm_backend *be) { return (slm_cpu_backend *)be; }

/* Records the step's first failure (later ones are dropped: the first is the
 * cause) and sets the thread's slm_last_error. */
void slm_cpu_fail(slm_cpu_backend *be, slm_status st, const char *fmt, ...) SLM_PRINTF(3, 4);

/* True when an op may run: inside a step that has not failed. An op called
 * outside a step records a failure naming it. */
bool slm_cpu_op_ok(slm_cpu_backend *be, const char *op);

/* The f32 array at ref holding `count` floats, or NULL (failure recorded,
 * naming op and what) when the ref is missing, misaligned or runs past its
 * buffer. */
float *slm_cpu_ref_f32(slm_cpu_backend *be, slm_ref ref, size_t count, const char *op,
                       const char *what);

/* Like slm_cpu_ref_f32 for `rows` rows of `width` floats whose starts are
 * `stride` floats apart (stride >= width), e.g. column ranges of a fused
 * QKV output. */
float *slm_cpu_ref_rows(slm_cpu_backend *be, slm_ref ref, int64_t rows, int64_t width,
                        int64_t stride, const char *op, const char *what);

/* Runs fn on the pool when `work` (elements touched) is large enough to pay
 * for waking the workers, else on the caller alone. */
void slm_cpu_run(slm_cpu_backend *be, size_t work, slm_pool_fn fn, void *ctx);

/* Per-thread attention scratch for KV pools up to head_dim / block_size. */
size_t slm_cpu_attention_thread_bytes(int head_dim, int block_size);

/* --- ops (backend.h documents each) --- */
void slm_cpu_embed(slm_backend *be, const slm_weight *table, slm_ref y);
void slm_cpu_rmsnorm(slm_backend *be, slm_ref x, slm_ref add, const slm_weight *w, float eps,
                     int rows, int d, slm_ref y);
void slm_cpu_matmul_op(slm_backend *be, const slm_weight *w, slm_ref x, int rows, slm_ref add,
                       slm_ref y);
void slm_cpu_rope(slm_backend *be, slm_ref x, int stride, int n_heads, int head_dim,
                  const slm_rope *r);
void slm_cpu_swiglu(slm_backend *be, slm_ref g, slm_ref u, int stride, int rows, int ff,
                    slm_ref y);
void slm_cpu_add(slm_backend *be, slm_ref a, slm_ref b, size_t count, slm_ref y);
void slm_cpu_scale(slm_backend *be, slm_ref x, float s, size_t count);
void slm_cpu_geglu(slm_backend *be, slm_ref g, slm_ref u, int stride, int rows, int ff,
                   slm_ref y);
void slm_cpu_gelu(slm_backend *be, slm_ref x, size_t count, slm_ref y);
void slm_cpu_layernorm(slm_backend *be, slm_ref x, slm_ref add, const slm_weight *w,
                       const slm_weight *bias, float eps, int rows, int d, slm_ref y);
void slm_cpu_bias(slm_backend *be, slm_ref x, int stride, int rows, const slm_weight *b);
void slm_cpu_softcap(slm_backend *be, slm_ref x, size_t count, float cap);
void slm_cpu_get_rows(slm_backend *be, slm_ref x, int d, slm_ref y);
void slm_cpu_logits(slm_backend *be, slm_ref x, int cols);
slm_status slm_cpu_rope_create(slm_backend *be, const slm_rope_params *p, slm_rope **out);
void slm_cpu_rope_free(slm_backend *be, slm_rope *r);

slm_status slm_cpu_kv_create(slm_backend *be, const slm_kv_desc *desc, slm_kv **out);
void slm_cpu_kv_free(slm_backend *be, slm_kv *kv);
void slm_cpu_kv_store(slm_backend *be, slm_kv *kv, int layer, slm_ref k, int k_stride,
                      slm_ref v, int v_stride);
void slm_cpu_kv_copy(slm_backend *be, slm_kv *kv, const slm_kv_copy *copies, int n);
/* Checks the step's KV indices against kv once (begin_step): every slot in
 * the pool, every block id of every table in the pool, every position
 * covered by its sequence's table. Sets be->attn_pos. */
slm_status slm_cpu_kv_plan(slm_cpu_backend *be, const slm_kv *kv);
/* True when kv is the pool begin_step planned (else records a failure naming op). */
bool slm_cpu_kv_planned(slm_cpu_backend *be, const slm_kv *kv, const char *op);
/* Row `slot` (token slot in the pool) of kv_head `head` in `layer`; which = 0
 * for K, 1 for V. Caller has checked every index. */
static inline const uint8_t *slm_cpu_kv_row(const slm_kv *kv, int which, int layer, int block,
                                            int head, int slot_in_block)
{
    const uint8_t *base = which ? kv->v : kv->k;
    return base + (size_t)layer * kv->lay.layer_bytes + (size_t)block * kv->lay.block_bytes +
           (size_t)head * kv->lay.head_block_bytes + (size_t)slot_in_block * kv->lay.row_bytes;
}
/* dst[0..n) = the f16 values at src (any alignment); exact. */
void slm_cpu_f16_to_f32_row(const uint8_t *src, float *dst, int n);
/* Values of one KV row as floats: dst[0..padded_dim) (Q8_0) or
 * dst[0..head_dim) (F32, F16). */
void slm_cpu_kv_row_to_f32(const slm_kv *kv, const uint8_t *row, float *dst);

void slm_cpu_attention(slm_backend *be, slm_kv *kv, int layer, slm_ref q, int q_stride,
                       int n_heads, const slm_attn_params *p, slm_ref out);

#endif
