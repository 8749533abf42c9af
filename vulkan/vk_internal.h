/*
 * vk_internal.h — the Vulkan backend's private types, shared by its files:
 *   vk_device.c    instance, device choice, memory blocks, sub-allocation,
 *                  staging copies, the step buffer, the descriptor set;
 *   vk_pipelines.c shader modules, pipelines and the on-disk pipeline cache;
 *   vk_ops.c       recording each op (validation, push constants, dispatch);
 *   backend_vulkan.c the ops table: open/close, weights, KV pool, steps.
 *
 * Memory model: device memory comes in at most VK_MAX_BLOCKS blocks, each
 * one VkBuffer bound whole at slot `i` of descriptor binding 0 (an array of
 * storage buffers); unused slots hold a small dummy buffer so the array is
 * always fully valid. A slm_buf is a range of one block; shaders address it
 * by (block index, element offset), both push constants. Binding 1 is the
 * host-visible step buffer (header + per-token arrays + a float arena).
 * One descriptor set and one pipeline layout serve every pipeline.
 *
 * A step (backend.h's ordering rules): begin_step copies the step's arrays
 * into the step buffer and plans it once (KV slots, block tables and
 * positions checked against the pool; the split of decode attention); ops
 * record, full chunks going to the queue as they fill; submit ends and
 * submits the last chunk with the fence and returns; wait waits on it and
 * copies the logits rows from the host-visible readback buffer.
 *
 * Errors inside a step are recorded (first one wins) and returned by
 * wait; the step's unsubmitted commands are then discarded.
 */
#ifndef SLM_VK_INTERNAL_H
#define SLM_VK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "backend.h"
#include "status.h"

#define VK_MAX_BLOCKS 24          /* = MAX_BLOCKS in shaders/common.glsl */
#define VK_BLOCK_MAX_BYTES (256u << 20)
#define VK_ALLOC_ALIGN 64
#define VK_STAGE_BYTES (8u << 20)
#define VK_ARENA_FLOATS 0         /* step arena: unused (RoPE tables live in device buffers) */
#define VK_PUSH_MAX 32            /* uint32 push-constant words (128 bytes) */
/* A long step is submitted in up to VK_CHUNKS command buffers, one each time
 * chunk_dispatches dispatches are recorded (the last takes the rest), so the
 * device runs the first layers while the CPU records the next. */
#define VK_CHUNKS 4
#define VK_CHUNK_DISPATCHES 96

/* Step header slots (= ST_* in shaders/common.glsl). */
enum {
    VK_ST_N_TOKENS, VK_ST_TOKENS, VK_ST_POS, VK_ST_SEQ, VK_ST_SLOT, VK_ST_BT_START,
    VK_ST_BT_LEN, VK_ST_BT, VK_ST_LOGIT, VK_ST_N_LOGIT, VK_ST_N_SEQS, VK_ST_N_BT,
    VK_ST_ARENA, VK_ST_HEADER = 16
};

/* The weight types every weight pipeline family is built for, in order. */
#define VK_N_WTYPES 15
extern const slm_type slm_vk_wtypes[VK_N_WTYPES];
int slm_vk_wtype_index(slm_type t); /* -1 when not one of them */

enum { VK_FAM_EMBED, VK_FAM_MATVEC, VK_FAM_MATMUL, VK_FAM_DIRECT, VK_FAM_DIRECT1, VK_N_FAMS };

/* Pipelines that take no weight type. */
enum {
    VK_P_RMSNORM, VK_P_ROPE, VK_P_KV_STORE_F32, VK_P_KV_STORE_F16, VK_P_ATTN_F32,
    VK_P_ATTN_F16, VK_P_ATTN_SPLIT_F32, VK_P_ATTN_SPLIT_F16, VK_P_ATTN_MERGE, VK_P_SWIGLU,
    VK_P_ADD, VK_P_SCALE, VK_P_GET_ROWS, VK_P_GEGLU, VK_P_GELU, VK_P_LAYERNORM, VK_P_BIAS,
    VK_P_SOFTCAP, VK_N_MISC
};

/* Split-K decode attention: steps of at most VK_SPLIT_TOKENS tokens whose
 * longest context — as one layer sees it, so no longer than its sliding
 * window — reaches split_min_len positions are split into at most
 * VK_SPLIT_MAX chunks of positions (multiples of 64), each chunk one
 * workgroup, merged by a second kernel. The partials live in a workspace
 * allocated with the KV pool, sized for query heads up to
 * VK_SPLIT_GQA · n_kv_heads (beyond that the single-pass kernel runs). */
#define VK_SPLIT_TOKENS 8
#define VK_SPLIT_MAX 32
#define VK_SPLIT_GQA 8

/* matmul_direct.comp's register tile: outputs × tokens per invocation
 * (VK_FAM_DIRECT; VK_FAM_DIRECT1 is the same kernel with one token, for
 * decode steps of one row). */
#define VK_DIRECT_TM 32
#define VK_DIRECT_TN 4
#define VK_DIRECT_WG 16 /* matmul_direct local_size_x */

typedef struct vk_range {
    VkDeviceSize off, size;
} vk_range;

typedef struct vk_block {
    VkBuffer buf; /* VK_NULL_HANDLE: slot unused */
    VkDeviceMemory mem;
    VkDeviceSize size;
    vk_range *free; /* sorted by offset, coalesced */
    int n_free, cap_free;
    int n_live; /* slm_bufs in it; the block is released at 0 */
} vk_block;

struct slm_buf {
    int block;
    VkDeviceSize off, size; /* the range taken from the block (aligned size) */
    size_t bytes;           /* the size asked for: what ops and copies may touch */
};

/* A weight is one buffer, or — when it is larger than the device can bind
 * in one range (maxStorageBufferRange, maxMemoryAllocationSize) — several
 * buffers of part_rows whole rows each (the last may hold fewer); ops
 * dispatch once per part. buf is parts[0]. */
#define VK_MAX_PARTS 64
struct slm_weight {
    slm_type type;
    int64_t rows, cols;
    size_t row_bytes;
    slm_buf *buf;
    int n_parts;
    int64_t part_rows;
    slm_buf *parts[VK_MAX_PARTS];
};

/* RoPE constants: inv_freq[n_rot / 2] floats in a device buffer. */
struct slm_rope {
    slm_buf *buf;
    int n_rot;
    slm_rope_mode mode;
};

struct slm_kv {
    slm_kv_desc desc;
    int64_t n_slots;   /* n_blocks · block_size */
    uint32_t width;    /* n_kv_heads · head_dim */
    slm_buf **layers;  /* [n_layers]: K region then V region, n_slots·width each */
    slm_buf *ws;       /* split-K partials: [VK_SPLIT_TOKENS][heads][VK_SPLIT_MAX][head_dim+2] */
};

typedef struct slm_vk_backend {
    slm_backend base;
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties memprops;
    char desc[640];
    bool subgroup; /* subgroup arithmetic in compute shaders */

    VkDeviceSize block_bytes;      /* size of a shared block */
    VkDeviceSize max_buffer;       /* largest single bound range */
    vk_block blocks[VK_MAX_BLOCKS];
    VkBuffer dummy_buf;
    VkDeviceMemory dummy_mem;

    VkBuffer step_buf, stage_buf;
    VkDeviceMemory step_mem, stage_mem;
    void *step_map, *stage_map;
    size_t step_cap; /* int32 slots */
    int32_t *step_host; /* host copy of the step buffer's integer part */

    VkDescriptorSetLayout dsl;
    VkDescriptorPool dpool;
    VkDescriptorSet dset;
    VkPipelineLayout layout;
    VkPipelineCache cache;
    VkPipeline wpipe[VK_N_FAMS][VK_N_WTYPES];
    VkPipeline misc[VK_N_MISC];

    VkCommandPool cpool;
    VkCommandBuffer cmd;               /* the one being recorded */
    VkCommandBuffer cmds[VK_CHUNKS];   /* a step's chunks; cmd is one of them */
    VkFence fence;
    int chunk;          /* index of cmd in cmds during a step */
    bool recording;     /* cmd is begun and not yet ended */
    int n_dispatch;     /* dispatches recorded into cmd */
    int chunk_dispatches; /* dispatches after which a chunk is submitted */

    /* the step being recorded, and its plan */
    bool in_step, lost;
    bool opened;           /* begin_step called, wait not yet */
    bool submitted;        /* the last chunk went to the queue with the fence */
    int n_tokens, n_seqs, n_logit, n_bt;
    slm_kv *plan_kv;       /* the pool begin_step checked the step against */
    /* the longest context of the step's tokens when split-K decode attention
     * may run (few tokens, few query heads per KV head), else 0; each
     * attention call splits the part of it its window keeps */
    int64_t split_longest;
    float *logits_out;     /* step->logits */
    slm_ref logits_src;    /* the logits op's rows on the device */
    size_t logits_bytes;   /* their bytes (0: no logits op) */
    bool logits_recorded;  /* copied into the readback buffer by the step itself */
    slm_status err;
    char err_msg[256];

    /* host-visible buffer the logits op copies into (grown by reserve) */
    VkBuffer rb_buf;
    VkDeviceMemory rb_mem;
    void *rb_map;
    size_t rb_bytes;

    /* knobs (slm_backend_params) */
    int matvec_max_rows; /* rows <= this use the matrix-vector pipelines */
    bool matmul_direct;  /* every matmul runs matmul_direct (CPU implementations) */
    int split_min_len;   /* contexts this long use split-K decode attention */
    char want_device[128]; /* a device-name substring or index ("" = choose) */
    bool no_subgroup;    /* never use subgroup reductions */
    uint64_t max_buffer_knob; /* lowers max_buffer when smaller (0 = none) */
    char cache_dir[512]; /* compiled-pipeline cache folder ("" = none) */
} slm_vk_backend;

static inline slm_vk_backend *slm_vk_be(slm_backend *b) { return (slm_vk_backend *)b; }

/* --- vk_device.c --- */
/* Maps a failed VkResult to a status with "vulkan: <what>: <result>". */
slm_status slm_vk_check(slm_vk_backend *be, VkResult r, const char *what);
slm_status slm_vk_device_open(slm_vk_backend *be, int device_index);
/* Free and total device-local memory (VK_EXT_memory_budget where the
 * device has it, else the heap less what this backend holds). */
slm_status slm_vk_memory(slm_vk_backend *be, slm_mem_info *out);
/* Makes the readback buffer hold at least `bytes` (outside steps only). */
slm_status slm_vk_readback_reserve(slm_vk_backend *be, size_t bytes);
void slm_vk_device_close(slm_vk_backend *be);
slm_status slm_vk_buf_alloc(slm_vk_backend *be, size_t bytes, slm_buf **out);
void slm_vk_buf_free(slm_vk_backend *be, slm_buf *buf);
slm_status slm_vk_copy(slm_vk_backend *be, slm_ref dev, void *host, size_t bytes, bool to_device);
/* Makes the step buffer hold at least `slots` int32 (outside steps only). */
slm_status slm_vk_step_reserve(slm_vk_backend *be, size_t slots);
/* Submits cmd (already ended) and waits on the fence. */
slm_status slm_vk_submit_wait(slm_vk_backend *be, VkCommandBuffer cmd);
/* Submits cmd (already ended) without waiting (an early chunk of a step). */
slm_status slm_vk_submit(slm_vk_backend *be, VkCommandBuffer cmd);
/* Starts recording into be->cmds[i] (reset, begun, descriptor set bound). */
slm_status slm_vk_chunk_begin(slm_vk_backend *be, int i);

/* --- vk_pipelines.c --- */
slm_status slm_vk_pipelines_create(slm_vk_backend *be);
void slm_vk_pipelines_destroy(slm_vk_backend *be);

/* --- vk_ops.c: the op slots of the table --- */
void slm_vk_fail(slm_vk_backend *be, slm_status st, const char *fmt, ...) SLM_PRINTF(3, 4);
void slm_vk_embed(slm_backend *be, const slm_weight *table, slm_ref y);
void slm_vk_rmsnorm(slm_backend *be, slm_ref x, slm_ref add, const slm_weight *w, float eps,
                    int rows, int d, slm_ref y);
void slm_vk_matmul(slm_backend *be, const slm_weight *w, slm_ref x, int rows, slm_ref add,
                   slm_ref y);
void slm_vk_rope(slm_backend *be, slm_ref x, int stride, int n_heads, int head_dim,
                 const slm_rope *r);
void slm_vk_kv_store(slm_backend *be, slm_kv *kv, int layer, slm_ref k, int k_stride, slm_ref v,
                     int v_stride);
void slm_vk_attention(slm_backend *be, slm_kv *kv, int layer, slm_ref q, int q_stride,
                      int n_heads, const slm_attn_params *p, slm_ref out);
void slm_vk_swiglu(slm_backend *be, slm_ref g, slm_ref u, int stride, int rows, int ff,
                   slm_ref y);
void slm_vk_geglu(slm_backend *be, slm_ref g, slm_ref u, int stride, int rows, int ff,
                  slm_ref y);
void slm_vk_gelu(slm_backend *be, slm_ref x, size_t count, slm_ref y);
void slm_vk_layernorm(slm_backend *be, slm_ref x, slm_ref add, const slm_weight *w,
                      const slm_weight *b, float eps, int rows, int d, slm_ref y);
void slm_vk_bias(slm_backend *be, slm_ref x, int stride, int rows, const slm_weight *b);
void slm_vk_softcap(slm_backend *be, slm_ref x, size_t count, float cap);
void slm_vk_add(slm_backend *be, slm_ref a, slm_ref b, size_t count, slm_ref y);
void slm_vk_scale(slm_backend *be, slm_ref x, float s, size_t count);
void slm_vk_get_rows(slm_backend *be, slm_ref x, int d, slm_ref y);
void slm_vk_logits(slm_backend *be, slm_ref x, int cols);
void slm_vk_kv_copy(slm_backend *be, slm_kv *kv, const slm_kv_copy *copies, int n);
/* The step's plan over kv (begin_step): slots, tables, positions checked;
 * whether decode attention may split for n_heads query heads. */
slm_status slm_vk_plan(slm_vk_backend *be, slm_kv *kv, int n_heads);

#endif
