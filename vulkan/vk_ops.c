/*
 * vk_ops.c — recording the ops of a step. Each op checks its arguments on
 * the host (buffer ranges, shapes, the step's token ids, slots and block
 * tables), then binds its pipeline, pushes its sizes and (block, offset)
 * addresses, dispatches and records a compute→compute memory barrier so
 * the next op sees its writes. A failed check records the step's first
 * error (returned by wait) and records nothing.
 *
 * Every activation address pushed to a shader is (block index, offset in
 * floats); weights are (block index, offset in bytes). Blocks are at most
 * 4 GiB (see size_limits in vk_device.c), so offsets fit 32 bits.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vk_internal.h"

void slm_vk_fail(slm_vk_backend *be, slm_status st, const char *fmt, ...)
{
    if (be->err != SLM_OK)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->err_msg, sizeof be->err_msg, fmt, ap);
    va_end(ap);
    be->err = st;
}

static bool op_ok(slm_vk_backend *be, const char *op)
{
    if (!be->in_step) {
        /* Outside a step there is no wait to report to: record it now. */
        slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: %s called outside a step", op);
        return false;
    }
    return be->err == SLM_OK;
}

/* An activation range of `floats` floats at ref: fills block and offset (in
 * floats). Fails the step when the buffer is missing, misaligned or short. */
static bool act(slm_vk_backend *be, slm_ref ref, uint64_t floats, const char *op, const char *what,
                uint32_t *blk, uint32_t *off)
{
    if (!ref.buf) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %s has no buffer", op, what);
        return false;
    }
    if (ref.off % 4 != 0) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %s offset %zu is not a multiple of 4",
                    op, what, ref.off);
        return false;
    }
    if (floats > ref.buf->bytes / 4 || ref.off > ref.buf->bytes ||
        floats * 4 > ref.buf->bytes - ref.off) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "%s: %s needs %llu floats at offset %zu of a %zu-byte buffer", op, what,
                    (unsigned long long)floats, ref.off, ref.buf->bytes);
        return false;
    }
    *blk = (uint32_t)ref.buf->block;
    *off = (uint32_t)((ref.buf->off + ref.off) / 4);
    return true;
}

/* Rows of `width` floats `stride` apart: the floats the last row ends at. */
static uint64_t strided(int64_t rows, int64_t width, int64_t stride)
{
    return rows > 0 ? (uint64_t)(rows - 1) * (uint64_t)stride + (uint64_t)width : 0;
}

static bool weight_ok(slm_vk_backend *be, const slm_weight *w, const char *op, int *ti)
{
    if (!w || !w->buf) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: no weight", op);
        return false;
    }
    *ti = slm_vk_wtype_index(w->type);
    if (*ti < 0) {
        slm_vk_fail(be, SLM_STATUS_UNSUPPORTED, "%s: weight type %s", op, slm_type_name(w->type));
        return false;
    }
    return true;
}

static bool grid_ok(slm_vk_backend *be, const char *op, uint64_t gx, uint64_t gy, uint64_t gz)
{
    const uint32_t *mx = be->props.limits.maxComputeWorkGroupCount;
    if (gx > mx[0] || gy > mx[1] || gz > mx[2]) {
        slm_vk_fail(be, SLM_STATUS_UNSUPPORTED,
                    "%s: %llu×%llu×%llu workgroups exceed the device's %u×%u×%u", op,
                    (unsigned long long)gx, (unsigned long long)gy, (unsigned long long)gz, mx[0],
                    mx[1], mx[2]);
        return false;
    }
    return true;
}

static void dispatch(slm_vk_backend *be, VkPipeline p, const uint32_t *push, int n_push,
                     uint32_t gx, uint32_t gy, uint32_t gz)
{
    if (gx == 0 || gy == 0 || gz == 0)
        return;
    vkCmdBindPipeline(be->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p);
    vkCmdPushConstants(be->cmd, be->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                       (uint32_t)n_push * 4, push);
    vkCmdDispatch(be->cmd, gx, gy, gz);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
    vkCmdPipelineBarrier(be->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    /* The barrier orders later submissions too (same queue, submission
     * order), so a full chunk can go to the device now. */
    if (++be->n_dispatch >= be->chunk_dispatches && be->chunk + 1 < VK_CHUNKS) {
        slm_status st = slm_vk_check(be, vkEndCommandBuffer(be->cmd), "vkEndCommandBuffer");
        be->recording = false;
        if (!st)
            st = slm_vk_submit(be, be->cmd);
        if (!st)
            st = slm_vk_chunk_begin(be, be->chunk + 1);
        if (st)
            slm_vk_fail(be, st, "submitting part of the step: %s", slm_last_error());
    }
}

/* A 1-D launch of `count` threads in groups of `wg`, split over x and y. */
static bool grid1d(slm_vk_backend *be, const char *op, uint64_t count, uint32_t wg, uint32_t *gx,
                   uint32_t *gy)
{
    uint64_t groups = (count + wg - 1) / wg;
    uint64_t x = groups < 65535 ? groups : 65535;
    uint64_t y = x ? (groups + x - 1) / x : 0;
    if (!grid_ok(be, op, x, y, 1))
        return false;
    *gx = (uint32_t)x;
    *gy = (uint32_t)y;
    return true;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline int32_t step_at(const slm_vk_backend *be, int field, int i)
{
    return be->step_host[be->step_host[field] + i];
}

/* ------------------------------------------------------------------------ */

void slm_vk_embed(slm_backend *b, const slm_weight *table, slm_ref y)
{
    slm_vk_backend *be = slm_vk_be(b);
    int ti;
    uint32_t yb, yo;
    if (!op_ok(be, "embed") || !weight_ok(be, table, "embed", &ti))
        return;
    int n = be->n_tokens;
    if (!act(be, y, (uint64_t)n * (uint64_t)table->cols, "embed", "y", &yb, &yo))
        return;
    for (int t = 0; t < n; t++) {
        int32_t id = step_at(be, VK_ST_TOKENS, t);
        if (id < 0 || id >= table->rows) {
            slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                        "embed: token %d of the step is id %d, outside the table's %lld rows", t,
                        id, (long long)table->rows);
            return;
        }
    }
    uint64_t gx = ((uint64_t)table->cols + 63) / 64;
    if (!grid_ok(be, "embed", gx, (uint64_t)n, 1))
        return;
    for (int p = 0; p < table->n_parts; p++) {
        const slm_buf *pb = table->parts[p];
        int64_t r0 = p * table->part_rows;
        int64_t nr = table->rows - r0 < table->part_rows ? table->rows - r0 : table->part_rows;
        uint32_t pc[] = {(uint32_t)pb->block, (uint32_t)pb->off, (uint32_t)table->row_bytes,
                         (uint32_t)table->cols, yb, yo, (uint32_t)r0, (uint32_t)nr};
        dispatch(be, be->wpipe[VK_FAM_EMBED][ti], pc, 8, (uint32_t)gx, (uint32_t)n, 1);
    }
}

void slm_vk_rmsnorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w, float eps,
                    int rows, int d, slm_ref y)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, ab = 0, ao = 0, wb, wo, yb, yo;
    if (!op_ok(be, "rmsnorm"))
        return;
    if (rows < 0 || d < 1 || !w || !w->buf || w->type != SLM_TYPE_F32 || w->rows * w->cols != d ||
        !(eps >= 0)) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "rmsnorm: %d rows of %d, weight %s of %lld elements, eps %g", rows, d,
                    w ? slm_type_name(w->type) : "missing", w ? (long long)(w->rows * w->cols) : 0LL,
                    (double)eps);
        return;
    }
    uint64_t count = (uint64_t)rows * (uint64_t)d;
    if (!act(be, x, count, "rmsnorm", "x", &xb, &xo) ||
        (add.buf && !act(be, add, count, "rmsnorm", "add", &ab, &ao)) ||
        !act(be, y, count, "rmsnorm", "y", &yb, &yo) ||
        !act(be, (slm_ref){w->buf, 0}, (uint64_t)d, "rmsnorm", "w", &wb, &wo) ||
        !grid_ok(be, "rmsnorm", (uint64_t)rows, 1, 1))
        return;
    uint32_t pc[] = {xb, xo, ab, ao, add.buf != NULL, wb, wo, yb, yo, (uint32_t)d, fbits(eps)};
    dispatch(be, be->misc[VK_P_RMSNORM], pc, 11, (uint32_t)rows, 1, 1);
}

/* True when w is an F32 weight of d elements (a norm's scale or bias). */
static bool vec_ok(const slm_weight *w, int d)
{
    return w && w->buf && w->type == SLM_TYPE_F32 && w->rows * w->cols == d;
}

void slm_vk_layernorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w,
                      const slm_weight *bias, float eps, int rows, int d, slm_ref y)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, ab = 0, ao = 0, wb, wo, bb = 0, bo = 0, yb, yo;
    if (!op_ok(be, "layernorm"))
        return;
    if (rows < 0 || d < 1 || !vec_ok(w, d) || (bias && !vec_ok(bias, d)) || !(eps >= 0)) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "layernorm: %d rows of %d, weight %s of %lld elements, bias %s of %lld, "
                    "eps %g",
                    rows, d, w ? slm_type_name(w->type) : "missing",
                    w ? (long long)(w->rows * w->cols) : 0LL,
                    bias ? slm_type_name(bias->type) : "none",
                    bias ? (long long)(bias->rows * bias->cols) : 0LL, (double)eps);
        return;
    }
    uint64_t count = (uint64_t)rows * (uint64_t)d;
    if (!act(be, x, count, "layernorm", "x", &xb, &xo) ||
        (add.buf && !act(be, add, count, "layernorm", "add", &ab, &ao)) ||
        !act(be, y, count, "layernorm", "y", &yb, &yo) ||
        !act(be, (slm_ref){w->buf, 0}, (uint64_t)d, "layernorm", "w", &wb, &wo) ||
        (bias && !act(be, (slm_ref){bias->buf, 0}, (uint64_t)d, "layernorm", "b", &bb, &bo)) ||
        !grid_ok(be, "layernorm", (uint64_t)rows, 1, 1))
        return;
    uint32_t pc[] = {xb, xo, ab, ao, add.buf != NULL, wb, wo, bb, bo, bias != NULL,
                     yb, yo, (uint32_t)d, fbits(eps)};
    dispatch(be, be->misc[VK_P_LAYERNORM], pc, 14, (uint32_t)rows, 1, 1);
}

/* One part of a weight (out rows of it) times x: y columns start at yo,
 * rows of y and add are y_stride floats apart. */
static void matmul_part(slm_vk_backend *be, int ti, const slm_weight *w, const slm_buf *pb,
                        uint64_t out, uint32_t xb, uint32_t xo, int rows, uint32_t ab,
                        uint32_t ao, bool has_add, uint32_t yb, uint32_t yo, uint32_t y_stride)
{
    uint32_t pc[] = {(uint32_t)pb->block, (uint32_t)pb->off, (uint32_t)w->row_bytes,
                     (uint32_t)w->cols, (uint32_t)out, xb, xo, yb, yo, ab, ao, has_add,
                     (uint32_t)rows, y_stride};
    if (be->matmul_direct) {
        /* VK_DIRECT_WG invocations of VK_DIRECT_TM outputs per workgroup in x,
         * VK_DIRECT_TN tokens (1 for one-row steps) per workgroup in y. */
        uint64_t per = (uint64_t)VK_DIRECT_WG * VK_DIRECT_TM;
        uint64_t gx = (out + per - 1) / per, tn = rows == 1 ? 1 : VK_DIRECT_TN;
        uint64_t gy = ((uint64_t)rows + tn - 1) / tn;
        int fam = rows == 1 ? VK_FAM_DIRECT1 : VK_FAM_DIRECT;
        if (grid_ok(be, "matmul", gx, gy, 1))
            dispatch(be, be->wpipe[fam][ti], pc, 14, (uint32_t)gx, (uint32_t)gy, 1);
    } else if (rows <= be->matvec_max_rows) {
        /* One workgroup per output element; outputs split over x and y. */
        uint64_t gx = out < 65535 ? out : 65535, gy = (out + gx - 1) / gx;
        if (grid_ok(be, "matmul", gx, gy, (uint64_t)rows))
            dispatch(be, be->wpipe[VK_FAM_MATVEC][ti], pc, 14, (uint32_t)gx, (uint32_t)gy,
                     (uint32_t)rows);
    } else {
        uint64_t gx = (out + 15) / 16, gy = ((uint64_t)rows + 15) / 16;
        if (grid_ok(be, "matmul", gx, gy, 1))
            dispatch(be, be->wpipe[VK_FAM_MATMUL][ti], pc, 14, (uint32_t)gx, (uint32_t)gy, 1);
    }
}

void slm_vk_matmul(slm_backend *b, const slm_weight *w, slm_ref x, int rows, slm_ref add,
                   slm_ref y)
{
    slm_vk_backend *be = slm_vk_be(b);
    int ti;
    uint32_t xb, xo, ab = 0, ao = 0, yb, yo;
    if (!op_ok(be, "matmul") || !weight_ok(be, w, "matmul", &ti))
        return;
    if (rows < 0) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "matmul: %d rows", rows);
        return;
    }
    uint64_t out = (uint64_t)w->rows;
    if (!act(be, x, (uint64_t)rows * (uint64_t)w->cols, "matmul", "x", &xb, &xo) ||
        (add.buf && !act(be, add, (uint64_t)rows * out, "matmul", "add", &ab, &ao)) ||
        !act(be, y, (uint64_t)rows * out, "matmul", "y", &yb, &yo))
        return;
    for (int p = 0; p < w->n_parts; p++) {
        int64_t r0 = p * w->part_rows;
        int64_t nr = w->rows - r0 < w->part_rows ? w->rows - r0 : w->part_rows;
        matmul_part(be, ti, w, w->parts[p], (uint64_t)nr, xb, xo, rows, ab,
                    ao + (uint32_t)r0, add.buf != NULL, yb, yo + (uint32_t)r0, (uint32_t)out);
    }
}

void slm_vk_rope(slm_backend *b, slm_ref x, int stride, int n_heads, int head_dim,
                 const slm_rope *r)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, fb, fo;
    if (!op_ok(be, "rope"))
        return;
    if (!r || n_heads < 1 || head_dim < 1 || r->n_rot > head_dim || stride < n_heads * head_dim) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "rope: %d heads of %d, stride %d, n_rot %d",
                    n_heads, head_dim, stride, r ? r->n_rot : 0);
        return;
    }
    int n = be->n_tokens;
    uint32_t half = (uint32_t)r->n_rot / 2;
    if (!act(be, x, strided(n, (int64_t)n_heads * head_dim, stride), "rope", "x", &xb, &xo) ||
        !act(be, (slm_ref){r->buf, 0}, half, "rope", "frequencies", &fb, &fo))
        return;
    for (int t = 0; t < n; t++) {
        if (step_at(be, VK_ST_POS, t) < 0) {
            slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "rope: the step has no positions");
            return;
        }
    }
    uint64_t gx = ((uint64_t)n_heads * half + 63) / 64;
    if (!grid_ok(be, "rope", gx, (uint64_t)n, 1))
        return;
    uint32_t pc[] = {xb, xo, (uint32_t)stride, (uint32_t)n_heads, (uint32_t)head_dim, half,
                     r->mode == SLM_ROPE_NEOX, fb, fo};
    dispatch(be, be->misc[VK_P_ROPE], pc, 9, (uint32_t)gx, (uint32_t)n, 1);
}

/* True when kv is the pool begin_step planned (else fails the step). */
static bool planned(slm_vk_backend *be, const slm_kv *kv, const char *op)
{
    if (kv && kv == be->plan_kv)
        return true;
    slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %s", op,
                kv ? "not the KV pool the step was begun with (slm_step.kv)" : "no KV pool");
    return false;
}

/* The KV element offsets of layer's K and V regions. */
static bool kv_layer(slm_vk_backend *be, slm_kv *kv, int layer, const char *op, uint32_t *blk,
                     uint32_t *k, uint32_t *v)
{
    if (!kv || layer < 0 || layer >= kv->desc.n_layers) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: layer %d of %s", op, layer,
                    kv ? "the pool" : "no pool");
        return false;
    }
    const slm_buf *lb = kv->layers[layer];
    uint32_t esize = kv->desc.type == SLM_TYPE_F16 ? 2 : 4;
    *blk = (uint32_t)lb->block;
    *k = (uint32_t)(lb->off / esize);
    *v = *k + (uint32_t)(kv->n_slots * kv->width);
    return true;
}

void slm_vk_kv_store(slm_backend *b, slm_kv *kv, int layer, slm_ref k, int k_stride, slm_ref v,
                     int v_stride)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t kb, ko, vb, vo, pb, pk, pv;
    if (!op_ok(be, "kv_store") || !planned(be, kv, "kv_store") ||
        !kv_layer(be, kv, layer, "kv_store", &pb, &pk, &pv))
        return;
    int n = be->n_tokens;
    int64_t width = kv->width;
    if (k_stride < width || v_stride < width) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "kv_store: strides %d, %d under row width %lld",
                    k_stride, v_stride, (long long)width);
        return;
    }
    if (!act(be, k, strided(n, width, k_stride), "kv_store", "k", &kb, &ko) ||
        !act(be, v, strided(n, width, v_stride), "kv_store", "v", &vb, &vo))
        return;
    uint64_t gx = ((uint64_t)width / 2 + 63) / 64;
    if (!grid_ok(be, "kv_store", gx, (uint64_t)n, 1))
        return;
    uint32_t pc[] = {kb, ko, (uint32_t)k_stride, vb, vo, (uint32_t)v_stride, pb, pk, pv,
                     (uint32_t)width};
    int pipe = kv->desc.type == SLM_TYPE_F16 ? VK_P_KV_STORE_F16 : VK_P_KV_STORE_F32;
    dispatch(be, be->misc[pipe], pc, 10, (uint32_t)gx, (uint32_t)n, 1);
}

/* Checks that every token's slot is in the pool and its positions 0..pos
 * are covered by its sequence's block table with block ids in the pool. */
static slm_status plan_tables(const slm_vk_backend *be, const slm_kv *kv)
{
    int bs = kv->desc.block_size;
    for (int t = 0; t < be->n_tokens; t++) {
        int32_t seq = step_at(be, VK_ST_SEQ, t), pos = step_at(be, VK_ST_POS, t);
        int32_t slot = step_at(be, VK_ST_SLOT, t);
        if (slot < 0 || slot >= kv->n_slots)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "vulkan: token %d has KV slot %d, outside the pool's %lld", t, slot,
                             (long long)kv->n_slots);
        if (seq < 0 || pos < 0)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "vulkan: token %d has no sequence or position", t);
        int32_t start = step_at(be, VK_ST_BT_START, seq), len = step_at(be, VK_ST_BT_LEN, seq);
        if ((int64_t)pos >= (int64_t)len * bs)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "vulkan: token %d at position %d, but its sequence has %d blocks of %d",
                             t, pos, len, bs);
        for (int32_t j = 0; j <= pos / bs; j++) {
            int32_t id = be->step_host[be->step_host[VK_ST_BT] + start + j];
            if (id < 0 || id >= kv->desc.n_blocks)
                return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                                 "vulkan: sequence %d uses block %d, outside the pool's %d", seq,
                                 id, kv->desc.n_blocks);
        }
    }
    return SLM_OK;
}

/* Whether decode attention may split (few tokens, a workspace with room
 * for n_heads): keeps the step's longest context for the attention calls
 * to split (split_of), or 0. n_heads 0 (not known) plans as if every query
 * head had its own KV head. */
static void plan_split(slm_vk_backend *be, const slm_kv *kv, int n_heads)
{
    be->split_longest = 0;
    if (be->n_tokens > VK_SPLIT_TOKENS || n_heads > VK_SPLIT_GQA * kv->desc.n_kv_heads)
        return;
    for (int t = 0; t < be->n_tokens; t++)
        if (step_at(be, VK_ST_POS, t) + 1 > be->split_longest)
            be->split_longest = step_at(be, VK_ST_POS, t) + 1;
}

/* The split of one attention call with a sliding window of `window`
 * positions (0: none): the most positions a token of the step attends to,
 * cut into at most VK_SPLIT_MAX chunks of *chunk positions (a multiple of
 * 64); returns their count, or 0 for one pass. The chunks start at each
 * token's window (attention_split.comp), so a window shorter than the
 * context both shortens the split and skips the blocks before it. */
static uint32_t split_of(const slm_vk_backend *be, int window, uint32_t *chunk)
{
    int64_t span = be->split_longest;
    if (window > 0 && window < span)
        span = window;
    if (span < be->split_min_len || span <= 64)
        return 0;
    int64_t tiles = (span + 63) / 64;
    int64_t per = (tiles + VK_SPLIT_MAX - 1) / VK_SPLIT_MAX; /* tiles per chunk */
    *chunk = (uint32_t)(per * 64);
    return (uint32_t)((span + *chunk - 1) / *chunk);
}

slm_status slm_vk_plan(slm_vk_backend *be, slm_kv *kv, int n_heads)
{
    be->plan_kv = kv;
    slm_status st = plan_tables(be, kv);
    if (!st)
        plan_split(be, kv, n_heads);
    return st;
}

void slm_vk_attention(slm_backend *b, slm_kv *kv, int layer, slm_ref q, int q_stride,
                      int n_heads, const slm_attn_params *p, slm_ref out)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t qb, qo, ob, oo, pb, pk, pv;
    if (!op_ok(be, "attention") || !planned(be, kv, "attention") ||
        !kv_layer(be, kv, layer, "attention", &pb, &pk, &pv))
        return;
    int hd = kv->desc.head_dim, nkv = kv->desc.n_kv_heads, n = be->n_tokens;
    if (!p) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "attention: no slm_attn_params");
        return;
    }
    if (n_heads < nkv || n_heads % nkv != 0 || q_stride < n_heads * hd || !isfinite(p->scale) ||
        !(p->softcap >= 0) || !isfinite(p->softcap) || p->window < 0) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "attention: %d query heads over %d KV heads of %d, q stride %d, scale %g, "
                    "softcap %g, window %d",
                    n_heads, nkv, hd, q_stride, (double)p->scale, (double)p->softcap, p->window);
        return;
    }
    if (!act(be, q, strided(n, (int64_t)n_heads * hd, q_stride), "attention", "q", &qb, &qo) ||
        !act(be, out, (uint64_t)n * (uint64_t)n_heads * (uint64_t)hd, "attention", "out", &ob,
             &oo) ||
        !grid_ok(be, "attention", (uint64_t)n_heads, (uint64_t)n, 1))
        return;
    uint32_t pc[] = {qb, qo, (uint32_t)q_stride, ob, oo, pb, pk, pv, (uint32_t)n_heads,
                     (uint32_t)nkv, (uint32_t)hd, (uint32_t)kv->desc.block_size,
                     fbits(p->scale), 0, 0, fbits(p->softcap), (uint32_t)p->window};
    bool f16 = kv->desc.type == SLM_TYPE_F16;
    /* Split when begin_step allowed it; more query heads than the workspace
     * holds (a step planned without n_heads) take the single pass. */
    uint32_t chunk = 0, n_split = split_of(be, p->window, &chunk);
    if (n_split < 2 || n_heads > VK_SPLIT_GQA * nkv) {
        dispatch(be, be->misc[f16 ? VK_P_ATTN_F16 : VK_P_ATTN_F32], pc, 17, (uint32_t)n_heads,
                 (uint32_t)n, 1);
        return;
    }
    /* Partials go to the pool's workspace, then the merge writes out. */
    uint32_t wb = (uint32_t)kv->ws->block, wo = (uint32_t)(kv->ws->off / 4);
    pc[3] = wb;
    pc[4] = wo;
    pc[13] = chunk;
    pc[14] = n_split;
    dispatch(be, be->misc[f16 ? VK_P_ATTN_SPLIT_F16 : VK_P_ATTN_SPLIT_F32], pc, 17,
             (uint32_t)n_heads, (uint32_t)n, n_split);
    uint32_t mc[] = {wb, wo, ob, oo, (uint32_t)n_heads, (uint32_t)hd, n_split};
    dispatch(be, be->misc[VK_P_ATTN_MERGE], mc, 7, (uint32_t)n_heads, (uint32_t)n, 1);
}

/* swiglu and geglu: the same shapes and push constants, another pipeline. */
static void glu(slm_vk_backend *be, const char *op, int pipe, slm_ref g, slm_ref u, int stride,
                int rows, int ff, slm_ref y)
{
    uint32_t gb, go, ub, uo, yb, yo;
    if (!op_ok(be, op))
        return;
    if (rows < 0 || ff < 1 || stride < ff) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %d rows of %d, stride %d", op, rows, ff,
                    stride);
        return;
    }
    uint64_t gx = ((uint64_t)ff + 63) / 64;
    if (!act(be, g, strided(rows, ff, stride), op, "g", &gb, &go) ||
        !act(be, u, strided(rows, ff, stride), op, "u", &ub, &uo) ||
        !act(be, y, (uint64_t)rows * (uint64_t)ff, op, "y", &yb, &yo) ||
        !grid_ok(be, op, gx, (uint64_t)rows, 1))
        return;
    uint32_t pc[] = {gb, go, ub, uo, (uint32_t)stride, (uint32_t)ff, yb, yo};
    dispatch(be, be->misc[pipe], pc, 8, (uint32_t)gx, (uint32_t)rows, 1);
}

void slm_vk_swiglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff, slm_ref y)
{
    glu(slm_vk_be(b), "swiglu", VK_P_SWIGLU, g, u, stride, rows, ff, y);
}

void slm_vk_geglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff, slm_ref y)
{
    glu(slm_vk_be(b), "geglu", VK_P_GEGLU, g, u, stride, rows, ff, y);
}

void slm_vk_gelu(slm_backend *b, slm_ref x, size_t count, slm_ref y)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, yb, yo, gx, gy;
    if (!op_ok(be, "gelu") || !act(be, x, count, "gelu", "x", &xb, &xo) ||
        !act(be, y, count, "gelu", "y", &yb, &yo) || !grid1d(be, "gelu", count, 256, &gx, &gy))
        return;
    uint32_t pc[] = {xb, xo, yb, yo, (uint32_t)count};
    dispatch(be, be->misc[VK_P_GELU], pc, 5, gx, gy, 1);
}

void slm_vk_softcap(slm_backend *b, slm_ref x, size_t count, float cap)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, gx, gy;
    if (!op_ok(be, "softcap"))
        return;
    if (!(cap > 0) || !isfinite(cap)) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "softcap: cap %g (must be > 0)", (double)cap);
        return;
    }
    if (!act(be, x, count, "softcap", "x", &xb, &xo) ||
        !grid1d(be, "softcap", count, 256, &gx, &gy))
        return;
    uint32_t pc[] = {xb, xo, (uint32_t)count, fbits(cap)};
    dispatch(be, be->misc[VK_P_SOFTCAP], pc, 4, gx, gy, 1);
}

void slm_vk_bias(slm_backend *b, slm_ref x, int stride, int rows, const slm_weight *w)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, wb, wo;
    if (!op_ok(be, "bias"))
        return;
    int64_t d = w ? w->rows * w->cols : 0;
    if (rows < 0 || !w || !w->buf || w->type != SLM_TYPE_F32 || d < 1 || stride < d) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "bias: %d rows %d floats apart, bias %s of %lld elements", rows, stride,
                    w ? slm_type_name(w->type) : "missing", (long long)d);
        return;
    }
    uint64_t gx = ((uint64_t)d + 63) / 64;
    if (!act(be, x, strided(rows, d, stride), "bias", "x", &xb, &xo) ||
        !act(be, (slm_ref){w->buf, 0}, (uint64_t)d, "bias", "b", &wb, &wo) ||
        !grid_ok(be, "bias", gx, (uint64_t)rows, 1))
        return;
    uint32_t pc[] = {xb, xo, (uint32_t)stride, wb, wo, (uint32_t)d};
    dispatch(be, be->misc[VK_P_BIAS], pc, 6, (uint32_t)gx, (uint32_t)rows, 1);
}

void slm_vk_add(slm_backend *b, slm_ref a, slm_ref bb, size_t count, slm_ref y)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t ab, ao, b_b, bo, yb, yo, gx, gy;
    if (!op_ok(be, "add") || !act(be, a, count, "add", "a", &ab, &ao) ||
        !act(be, bb, count, "add", "b", &b_b, &bo) || !act(be, y, count, "add", "y", &yb, &yo) ||
        !grid1d(be, "add", count, 256, &gx, &gy))
        return;
    uint32_t pc[] = {ab, ao, b_b, bo, yb, yo, (uint32_t)count};
    dispatch(be, be->misc[VK_P_ADD], pc, 7, gx, gy, 1);
}

void slm_vk_scale(slm_backend *b, slm_ref x, float s, size_t count)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, gx, gy;
    if (!op_ok(be, "scale") || !act(be, x, count, "scale", "x", &xb, &xo) ||
        !grid1d(be, "scale", count, 256, &gx, &gy))
        return;
    uint32_t pc[] = {xb, xo, (uint32_t)count, fbits(s)};
    dispatch(be, be->misc[VK_P_SCALE], pc, 4, gx, gy, 1);
}

void slm_vk_get_rows(slm_backend *b, slm_ref x, int d, slm_ref y)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo, yb, yo;
    if (!op_ok(be, "get_rows"))
        return;
    if (d < 1) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "get_rows: rows of %d", d);
        return;
    }
    uint64_t gx = ((uint64_t)d + 63) / 64;
    if (!act(be, x, (uint64_t)be->n_tokens * (uint64_t)d, "get_rows", "x", &xb, &xo) ||
        !act(be, y, (uint64_t)be->n_logit * (uint64_t)d, "get_rows", "y", &yb, &yo) ||
        !grid_ok(be, "get_rows", gx, (uint64_t)be->n_logit, 1))
        return;
    uint32_t pc[] = {xb, xo, (uint32_t)d, yb, yo};
    dispatch(be, be->misc[VK_P_GET_ROWS], pc, 5, (uint32_t)gx, (uint32_t)be->n_logit, 1);
}

/* ------------------------------------------------------------------------ */
/* transfers inside a step                                                   */

/* Orders earlier compute writes before a transfer, or a transfer's writes
 * before later compute (to_compute). */
static void transfer_barrier(slm_vk_backend *be, bool to_compute)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = to_compute ? VK_ACCESS_TRANSFER_WRITE_BIT
                                                      : VK_ACCESS_SHADER_WRITE_BIT,
                          .dstAccessMask = to_compute ? VK_ACCESS_SHADER_READ_BIT |
                                                            VK_ACCESS_SHADER_WRITE_BIT
                                                      : VK_ACCESS_TRANSFER_READ_BIT |
                                                            VK_ACCESS_TRANSFER_WRITE_BIT};
    VkPipelineStageFlags cs = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         tr = VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(be->cmd, to_compute ? tr : cs, to_compute ? cs : tr, 0, 1, &mb, 0, NULL,
                         0, NULL);
}

/* The logits rows go to the readback buffer as the step's last command;
 * wait copies them out. Rows beyond what reserve sized it for are
 * downloaded by wait after the fence instead (slower, still in the step). */
void slm_vk_logits(slm_backend *b, slm_ref x, int cols)
{
    slm_vk_backend *be = slm_vk_be(b);
    uint32_t xb, xo;
    if (!op_ok(be, "logits"))
        return;
    uint64_t floats = (uint64_t)be->n_logit * (uint64_t)(cols > 0 ? cols : 0);
    if (cols < 1 || !act(be, x, floats, "logits", "x", &xb, &xo))
        return;
    if (floats && !be->logits_out) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "logits: the step names no host buffer");
        return;
    }
    be->logits_src = x;
    be->logits_bytes = (size_t)floats * sizeof(float);
    be->logits_recorded = be->logits_bytes <= be->rb_bytes;
    if (!be->logits_recorded || !floats)
        return;
    transfer_barrier(be, false);
    VkBufferCopy region = {.srcOffset = x.buf->off + x.off, .dstOffset = 0,
                           .size = be->logits_bytes};
    vkCmdCopyBuffer(be->cmd, be->blocks[x.buf->block].buf, be->rb_buf, 1, &region);
    transfer_barrier(be, true);
}

/* Every layer's K and V of block src[i] to dst[i]: the block's slots are
 * contiguous in each layer's K and V regions (slot-major rows). Copies run
 * one after another, so a later one may read an earlier one's destination. */
void slm_vk_kv_copy(slm_backend *b, slm_kv *kv, const slm_kv_copy *copies, int n)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (!op_ok(be, "kv_copy") || !planned(be, kv, "kv_copy"))
        return;
    if (slm_kv_copies_check(copies, n, kv->desc.n_blocks)) {
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s", slm_last_error());
        return;
    }
    /* vkCmdCopyBuffer may not copy a range onto itself */
    for (int i = 0; i < n; i++)
        if (copies[i].src == copies[i].dst) {
            slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "kv_copy: copy %d is block %d onto itself",
                        i, copies[i].src);
            return;
        }
    VkDeviceSize esize = kv->desc.type == SLM_TYPE_F16 ? 2 : 4;
    VkDeviceSize bbytes = (VkDeviceSize)kv->desc.block_size * kv->width * esize;
    VkDeviceSize region_bytes = (VkDeviceSize)kv->n_slots * kv->width * esize; /* K, then V */
    transfer_barrier(be, false);
    for (int i = 0; i < n; i++) {
        for (int l = 0; l < kv->desc.n_layers; l++) {
            const slm_buf *lb = kv->layers[l];
            VkBufferCopy r[2];
            for (int which = 0; which < 2; which++) {
                VkDeviceSize base = lb->off + which * region_bytes;
                r[which] = (VkBufferCopy){.srcOffset = base + (VkDeviceSize)copies[i].src * bbytes,
                                          .dstOffset = base + (VkDeviceSize)copies[i].dst * bbytes,
                                          .size = bbytes};
            }
            VkBuffer buf = be->blocks[lb->block].buf;
            vkCmdCopyBuffer(be->cmd, buf, buf, 2, r);
        }
        if (i + 1 < n) {
            VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                  .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                                  .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT |
                                                   VK_ACCESS_TRANSFER_WRITE_BIT};
            vkCmdPipelineBarrier(be->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                 VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
        }
    }
    transfer_barrier(be, true);
}
