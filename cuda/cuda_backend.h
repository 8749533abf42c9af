/*
 * cuda_backend.h — what the CUDA backend's files share (private to cuda/):
 * the handle, the backend-defined buffer, weight, KV pool and RoPE types of
 * runtime/backend.h, the error recording every op goes through, and the
 * entry points of the kernel files.
 *
 * Errors: a failing CUDA or cuBLAS call, a failed launch or a bad argument
 * is recorded once per step in the handle (the first one wins) with the
 * call's name; the step's later ops then do nothing and wait() returns it.
 * Nothing here aborts.
 *
 * Memory: buffers, weights (raw GGUF rows, uploaded once) and the KV pool
 * are cudaMalloc'd; one workspace (activation codes, f16 copies for cuBLAS,
 * split attention partials) is sized by reserve / begin_step, never by an
 * op. The step's int arrays go host (pinned) → device once per step.
 */
#ifndef SLM_CUDA_BACKEND_H
#define SLM_CUDA_BACKEND_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend.h"
#include "status.h"
}

struct slm_buf {
    uint8_t *dev;
    size_t size;
};

struct slm_weight {
    slm_type type;
    int64_t rows, cols;
    size_t row_bytes;
    uint8_t *dev; /* rows × row_bytes, as in the file */
};

/* Layout as the CPU's (slm_kv_layout_of): K and V each
 * [layer][block][kv_head][slot][row], so one head's rows of one block are
 * contiguous. Q8_0 rows are padded_dim/32 blocks, the tail coded as zeros. */
struct slm_kv {
    slm_kv_desc d;
    slm_kv_layout lay; /* slm_kv_layout_of(d) */
    uint8_t *k, *v;
};

struct slm_rope {
    slm_rope_mode mode;
    int n_rot;
    double *inv_freq; /* device [n_rot/2] */
};

/* The step's int arrays, as offsets into the step image (host and device). */
enum { ST_TOKENS, ST_POS, ST_SEQ, ST_SLOT, ST_BT_START, ST_BT_LEN, ST_BT, ST_LOGIT, ST_COUNT };

/* Attention splits a context of at least split_min positions (default
 * ATTN_SPLIT_MIN) into parts of split_min/2 or more, at most ATTN_SPLIT_MAX
 * (flash-decoding), when a step has at most ATTN_SPLIT_TOKENS tokens. */
#define ATTN_SPLIT_MAX 32
#define ATTN_SPLIT_TOKENS 64
#define ATTN_SPLIT_MIN 512
/* Heads up to this size (8 elements per lane of a warp). */
#define ATTN_MAX_HEAD 256

typedef struct slm_cu_backend {
    slm_backend base;
    int device;
    char desc[384];
    cudaStream_t stream; /* every op, in call order */
    cudaStream_t copy;   /* uploads, downloads, the logits copy */
    cudaEvent_t ops_done; /* the point in the op stream the copy stream waits for */
    cublasHandle_t blas;
    void *blas_ws;   /* cuBLAS's workspace, given at open so no GEMM allocates */
    int matvec_rows; /* matmul rows up to which the int8 kernel runs */
    int split_min;   /* contexts from this length split (attention.cu) */

    /* the step */
    bool opened; /* from begin_step to wait */
    slm_status err;
    char err_msg[512];
    int32_t *h_step; /* pinned image of the step's arrays */
    int32_t *d_step; /* its device copy */
    size_t step_cap; /* ints each holds */
    size_t at[ST_COUNT];
    int n_tokens, n_seqs, n_bt, n_logit, n_heads;
    int max_pos; /* the largest position of the step's tokens (-1: none) */
    slm_kv *plan_kv;
    int attn_split;

    /* workspace */
    uint8_t *ws;
    size_t ws_bytes;
    int64_t max_cols; /* the widest weight loaded */

    /* logits */
    float *pinned;
    size_t pinned_bytes;
    float *logits_out;
    size_t logits_bytes;
    bool logits_staged; /* copied into `pinned` by the copy stream */
    const float *logits_src; /* else copied from here at wait */
} slm_cu_backend;

static inline slm_cu_backend *slm_cu_be(slm_backend *b) { return (slm_cu_backend *)b; }

/* Host views of the step's arrays (valid from begin_step to wait). */
static inline const int32_t *slm_cu_host(const slm_cu_backend *be, int which)
{
    return be->h_step + be->at[which];
}
static inline const int32_t *slm_cu_dev(const slm_cu_backend *be, int which)
{
    return be->d_step + be->at[which];
}

/* --- errors (backend_cuda.cu) --- */
/* Records the step's first failure (and sets slm_last_error). */
void slm_cu_fail(slm_cu_backend *be, slm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True when e is cudaSuccess; else records "<call>: <CUDA's message>". */
bool slm_cu_ok(slm_cu_backend *be, cudaError_t e, const char *call);
bool slm_cu_blas_ok(slm_cu_backend *be, cublasStatus_t s, const char *call);
/* After a launch: records a launch failure naming the kernel. */
bool slm_cu_launched(slm_cu_backend *be, const char *kernel);
/* Names the CUDA call by its text up to the '(' (see slm_cu_ok). */
#define CU_CHECK(be, call) slm_cu_ok((be), (call), #call)
#define CUBLAS_CHECK(be, call) slm_cu_blas_ok((be), (call), #call)

/* An op may run: inside a step, no failure yet. */
bool slm_cu_op_ok(slm_cu_backend *be, const char *op);
/* Device pointer of count floats at ref, or NULL after failing op. */
float *slm_cu_f32(slm_cu_backend *be, slm_ref ref, size_t count, const char *op,
                  const char *what);
/* Device pointer of rows of width floats `stride` apart, or NULL. */
float *slm_cu_rows(slm_cu_backend *be, slm_ref ref, int64_t rows, int64_t width,
                   int64_t stride, const char *op, const char *what);
/* The op's KV pool is the step's (slm_step.kv), else fails op. */
bool slm_cu_kv_planned(slm_cu_backend *be, const slm_kv *kv, const char *op);

/* --- workspace sizes (for reserve and begin_step) --- */
size_t slm_cu_matmul_ws(int64_t rows, int64_t cols);                  /* matmul.cu */
size_t slm_cu_attention_ws(int n_tokens, int n_heads, int head_dim, int n_split); /* attention.cu */
/* Splits for a step of n_tokens whose longest context is n_ctx. */
int slm_cu_attention_splits(int n_tokens, int n_ctx, int split_min);

/* --- kernels' launchers --- */
/* matvec.cu: y(rows, out) (+= add when add) with the int8 / float kernels. */
void slm_cu_matvec(slm_cu_backend *be, const slm_weight *w, const float *x, int rows,
                   const float *add, float *y);
/* matmul.cu: the op (chooses matvec or cuBLAS). */
void slm_cu_matmul(slm_backend *b, const slm_weight *w, slm_ref x, int rows, slm_ref add,
                   slm_ref y);
/* attention.cu */
void slm_cu_attention(slm_backend *b, slm_kv *kv, int layer, slm_ref q, int q_stride,
                      int n_heads, const slm_attn_params *p, slm_ref out);
/* ops.cu */
void slm_cu_embed(slm_backend *b, const slm_weight *table, slm_ref y);
void slm_cu_rmsnorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w, float eps,
                    int rows, int d, slm_ref y);
void slm_cu_rope(slm_backend *b, slm_ref x, int stride, int n_heads, int head_dim,
                 const slm_rope *r);
void slm_cu_kv_store(slm_backend *b, slm_kv *kv, int layer, slm_ref k, int k_stride, slm_ref v,
                     int v_stride);
void slm_cu_layernorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w,
                      const slm_weight *bias, float eps, int rows, int d, slm_ref y);
void slm_cu_get_rows(slm_backend *b, slm_ref x, int d, slm_ref y);
void slm_cu_logits(slm_backend *b, slm_ref x, int cols);
void slm_cu_kv_copy(slm_backend *b, slm_kv *kv, const slm_kv_copy *copies, int n);
/* elementwise.cu */
void slm_cu_swiglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff,
                   slm_ref y);
void slm_cu_geglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff,
                  slm_ref y);
void slm_cu_gelu(slm_backend *b, slm_ref x, size_t count, slm_ref y);
void slm_cu_softcap(slm_backend *b, slm_ref x, size_t count, float cap);
void slm_cu_bias(slm_backend *b, slm_ref x, int stride, int rows, const slm_weight *bias);
void slm_cu_add(slm_backend *b, slm_ref a, slm_ref bb, size_t count, slm_ref y);
void slm_cu_scale(slm_backend *b, slm_ref x, float s, size_t count);

/* Blocks of 256 threads covering n items (at least one block). */
static inline unsigned slm_cu_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b ? b : 1);
}

#endif
