/*
 * kv.c — the CPU backend's paged KV pool and the kv_store op.
 *
 * Layout (cpu_backend.h): K and V are separate arrays, each
 * [layer][block][kv_head][slot][row], so the block_size rows one KV head
 * reads from one block are contiguous — attention walks a sequence's block
 * table and streams each block's rows for one head in order.
 *
 * Storage types: F32, F16 and Q8_0. A Q8_0 row is ceil(head_dim/32) blocks
 * with the tail of the last block stored as zeros (quantizing zeros beside
 * real values leaves the block's scale unchanged), so any head_dim works.
 * Q8_0 rows are made with the reference quantizer, so tests can compute the
 * exact values attention reads.
 *
 * Not responsible for: which slots a sequence owns (the runtime's KV cache
 * manager hands out blocks; the step says where each token goes).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "fp16.h"
#include "quant_blocks.h"

/* Creates a pool of desc->n_blocks blocks for every layer, zero-filled
 * (calloc, so untouched pages cost nothing until written). Fails with
 * UNSUPPORTED for a storage type other than F32/F16/Q8_0, INVALID_ARGUMENT
 * for a non-positive dimension or a size that overflows. */
slm_status slm_cpu_kv_create(slm_backend *b, const slm_kv_desc *desc, slm_kv **out)
{
    if (b == NULL || desc == NULL || out == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: kv_create: missing argument");
    *out = NULL;
    slm_cpu_backend *be = slm_cpu_be(b);
    const slm_kv_desc *d = desc;
    slm_kv_layout lay;
    slm_status st = slm_kv_layout_of(d, &lay);
    if (st)
        return slm_error(st, "cpu backend: %s", slm_last_error());
    slm_kv *kv = calloc(1, sizeof(*kv));
    if (kv == NULL)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cpu backend: out of memory");
    kv->d = *d;
    kv->lay = lay;
    size_t total = lay.total_bytes;
    kv->k = calloc(1, total);
    kv->v = kv->k ? calloc(1, total) : NULL;
    if (kv->v == NULL) {
        free(kv->k);
        free(kv);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY,
                         "cpu backend: cannot allocate a KV pool of 2 x %zu bytes", total);
    }
    /* attention's per-thread scratch is sized from these at begin_step */
    if (kv->lay.padded_dim > be->max_head_dim)
        be->max_head_dim = kv->lay.padded_dim;
    if (d->block_size > be->max_block_size)
        be->max_block_size = d->block_size;
    *out = kv;
    return SLM_OK;
}

void slm_cpu_kv_free(slm_backend *b, slm_kv *kv)
{
    (void)b;
    if (kv == NULL)
        return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

/* Writes head_dim floats as one row in the pool's storage type. */
static void store_row(const slm_kv *kv, uint8_t *dst, const float *src)
{
    int hd = kv->d.head_dim;
    switch (kv->d.type) {
    case SLM_TYPE_F32: memcpy(dst, src, (size_t)hd * sizeof(float)); break;
    case SLM_TYPE_F16: {
        uint16_t h;
        for (int i = 0; i < hd; i++) {
            h = slm_f32_to_f16(src[i]);
            memcpy(dst + 2 * (size_t)i, &h, 2);
        }
        break;
    }
    default:
        for (int i0 = 0; i0 < hd; i0 += SLM_QK) {
            float tmp[SLM_QK] = {0};
            int n = hd - i0 < SLM_QK ? hd - i0 : SLM_QK;
            memcpy(tmp, src + i0, (size_t)n * sizeof(float));
            slm_quantize_row_ref(SLM_TYPE_Q8_0, tmp, dst + (size_t)(i0 / SLM_QK) * sizeof(slm_block_q8_0),
                                 SLM_QK);
        }
        break;
    }
}

/* f16 → f32 through a table of all 65536 values (256 KB, filled once by
 * on first use): one load per element instead of fp16.h's branches, which
 * made F16 KV four times slower to read than F32. Exact by construction. */
static float f16_table[1 << 16];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void fill_f16_table(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        f16_table[h] = slm_f16_to_f32((uint16_t)h);
}

void slm_cpu_f16_to_f32_row(const uint8_t *src, float *dst, int n)
{
    pthread_once(&f16_once, fill_f16_table);
    for (int i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * (size_t)i, 2);
        dst[i] = f16_table[h];
    }
}

void slm_cpu_kv_row_to_f32(const slm_kv *kv, const uint8_t *row, float *dst)
{
    switch (kv->d.type) {
    case SLM_TYPE_F32: memcpy(dst, row, (size_t)kv->d.head_dim * sizeof(float)); break;
    case SLM_TYPE_F16: slm_cpu_f16_to_f32_row(row, dst, kv->d.head_dim); break;
    default:
        for (int blk = 0; blk < kv->lay.padded_dim / SLM_QK; blk++) {
            slm_block_q8_0 q;
            memcpy(&q, row + (size_t)blk * sizeof(q), sizeof(q));
            float d = slm_f16_to_f32(q.d);
            for (int i = 0; i < SLM_QK; i++)
                dst[blk * SLM_QK + i] = d * (float)q.qs[i];
        }
        break;
    }
}

typedef struct store_job {
    slm_kv *kv;
    int layer;
    const float *k, *v; /* n rows of n_kv_heads·head_dim, strides below */
    int64_t k_stride, v_stride;
    const int32_t *slot;
    int64_t n;
} store_job;

static void store_rows(void *ctx, int ith, int nth)
{
    const store_job *j = ctx;
    const slm_kv *kv = j->kv;
    int bs = kv->d.block_size, nh = kv->d.n_kv_heads, hd = kv->d.head_dim;
    int64_t lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth;
    for (int64_t t = lo; t < hi; t++) {
        int block = j->slot[t] / bs, in_block = j->slot[t] % bs;
        for (int h = 0; h < nh; h++) {
            /* NOTE: the cast drops const: kv_row serves the reader too. */
            store_row(kv, (uint8_t *)slm_cpu_kv_row(kv, 0, j->layer, block, h, in_block),
                      j->k + t * j->k_stride + (int64_t)h * hd);
            store_row(kv, (uint8_t *)slm_cpu_kv_row(kv, 1, j->layer, block, h, in_block),
                      j->v + t * j->v_stride + (int64_t)h * hd);
        }
    }
}

void slm_cpu_kv_store(slm_backend *b, slm_kv *kv, int layer, slm_ref k, int k_stride,
                      slm_ref v, int v_stride)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "kv_store"))
        return;
    if (!slm_cpu_kv_planned(be, kv, "kv_store"))
        return;
    if (layer < 0 || layer >= kv->d.n_layers) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "kv_store: layer %d of a %d-layer pool",
                     layer, kv->d.n_layers);
        return;
    }
    int64_t width = (int64_t)kv->d.n_kv_heads * kv->d.head_dim;
    size_t n = (size_t)be->n_tokens * (size_t)width;
    const float *kp = slm_cpu_ref_rows(be, k, be->n_tokens, width, k_stride, "kv_store", "k");
    const float *vp = kp ? slm_cpu_ref_rows(be, v, be->n_tokens, width, v_stride, "kv_store", "v")
                         : NULL;
    if (vp == NULL)
        return;
    store_job j = {.kv = kv, .layer = layer, .k = kp, .v = vp, .k_stride = k_stride,
                   .v_stride = v_stride, .slot = be->kv_slot, .n = be->n_tokens};
    slm_cpu_run(be, 2 * n * (kv->d.type == SLM_TYPE_F32 ? 1 : 8), store_rows, &j);
}

/* ------------------------------------------------------------------------ */
/* the step's plan                                                           */

bool slm_cpu_kv_planned(slm_cpu_backend *be, const slm_kv *kv, const char *op)
{
    if (kv != NULL && kv == be->plan_kv)
        return true;
    slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %s", op,
                 kv ? "not the KV pool the step was begun with (slm_step.kv)"
                    : "no KV pool");
    return false;
}

/* Checks the step's copied arrays against the pool (slm_step_kv_check)
 * and counts the attention work: Σ (position + 1) over the tokens. */
slm_status slm_cpu_kv_plan(slm_cpu_backend *be, const slm_kv *kv)
{
    slm_step view = {.n_tokens = be->n_tokens, .positions = be->positions,
                     .seq_of_token = be->seq_of_token, .kv_slot = be->kv_slot,
                     .n_seqs = be->n_seqs, .block_table_start = be->bt_start,
                     .block_table_len = be->bt_len, .block_tables = be->block_tables};
    slm_status st = slm_step_kv_check(&view, kv->d.n_blocks, kv->d.block_size);
    int64_t work = 0;
    for (int t = 0; t < be->n_tokens && !st; t++)
        work += (int64_t)be->positions[t] + 1;
    be->attn_pos = work;
    return st;
}

/* ------------------------------------------------------------------------ */
/* kv_copy                                                                   */

void slm_cpu_kv_copy(slm_backend *b, slm_kv *kv, const slm_kv_copy *copies, int n)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "kv_copy") || !slm_cpu_kv_planned(be, kv, "kv_copy"))
        return;
    if (slm_kv_copies_check(copies, n, kv->d.n_blocks)) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s", slm_last_error());
        return;
    }
    /* In order: a later copy may read what an earlier one wrote. */
    for (int i = 0; i < n; i++)
        for (int l = 0; l < kv->d.n_layers; l++)
            for (int which = 0; which < 2; which++) {
                uint8_t *base = which ? kv->v : kv->k;
                uint8_t *layer = base + (size_t)l * kv->lay.layer_bytes;
                memmove(layer + (size_t)copies[i].dst * kv->lay.block_bytes,
                        layer + (size_t)copies[i].src * kv->lay.block_bytes, kv->lay.block_bytes);
            }
}
