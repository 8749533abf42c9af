/*
 * backend_vulkan.c — the Vulkan backend's ops table (runtime/backend.h):
 * open/close, capabilities, buffers, weights (uploaded as raw GGUF rows;
 * the shaders read their 2-byte-aligned fields by byte address, so no
 * repacking; a weight larger than one bindable buffer is split into parts
 * of whole rows), RoPE tables (uploaded once), the paged KV pool, memory
 * facts, and steps. A step copies its per-token arrays into the
 * host-visible step buffer at begin_step and plans itself there (vk_ops.c
 * slm_vk_plan), records command buffers (vk_ops.c submits each full chunk
 * as it goes); submit hands the last to the queue with a fence and returns,
 * wait waits on it and copies the logits rows out. Device, memory and
 * pipelines live in vk_device.c and vk_pipelines.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_vulkan.h"
#include "vk_internal.h"

static void vk_close(slm_backend *b)
{
    if (!b)
        return;
    slm_vk_backend *be = slm_vk_be(b);
    if (be->dev)
        vkDeviceWaitIdle(be->dev);
    slm_vk_pipelines_destroy(be);
    slm_vk_device_close(be);
    free(be);
}

static const slm_backend_ops vk_ops;

/* The knobs of params (zero / NULL: the defaults below). */
static void take_knobs(slm_vk_backend *be, const slm_backend_params *p)
{
    /* Below this many rows the matrix-vector kernel beats the tiled one. */
    be->matvec_max_rows = p && p->vk_matvec_rows > 0 ? p->vk_matvec_rows : 4;
    /* Contexts from this length split across workgroups in decode steps. */
    be->split_min_len = p && p->vk_split_min > 0 ? p->vk_split_min : 512;
    /* Dispatches per submitted chunk of a step. */
    be->chunk_dispatches = p && p->vk_chunk > 0 ? p->vk_chunk : VK_CHUNK_DISPATCHES;
    if (!p)
        return;
    snprintf(be->want_device, sizeof be->want_device, "%s", p->vk_device ? p->vk_device : "");
    snprintf(be->cache_dir, sizeof be->cache_dir, "%s", p->cache_dir ? p->cache_dir : "");
    be->no_subgroup = p->vk_subgroup < 0;
    be->max_buffer_knob = p->vk_max_buffer;
}

static slm_status vk_open(const slm_backend_params *params, slm_backend **out)
{
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: open: out is NULL");
    *out = NULL;
    if (params && params->size < sizeof *params)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: slm_backend_params.size %zu is "
                         "too small", params->size);
    int device = params ? params->device_index : SLM_DEVICE_ANY;
    slm_vk_backend *be = calloc(1, sizeof *be);
    if (!be)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory");
    be->base.ops = &vk_ops;
    take_knobs(be, params);
    slm_status st = slm_vk_device_open(be, device);
    /* CPU implementations (lavapipe) run every matmul with the barrier-free
     * register-tiled kernel; the vulkan.matmul knob overrides the choice
     * (tests run both families on one device). */
    if (!st) {
        int fam = params ? params->vk_matmul : 0;
        be->matmul_direct = fam == 1 || (fam == 0 && be->props.deviceType ==
                                                          VK_PHYSICAL_DEVICE_TYPE_CPU);
    }
    if (!st)
        st = slm_vk_pipelines_create(be);
    if (st) {
        vk_close(&be->base);
        return st;
    }
    *out = &be->base;
    return SLM_OK;
}

static const char *vk_describe(slm_backend *b) { return slm_vk_be(b)->desc; }

static slm_status vk_supports(slm_backend *b, const slm_support_query *q)
{
    (void)b;
    switch (q->op) {
    case SLM_OP_EMBED:
    case SLM_OP_MATMUL:
        if (slm_vk_wtype_index(q->type) >= 0)
            return SLM_OK;
        return slm_error(SLM_STATUS_UNSUPPORTED, "vulkan: weight type %s is not supported",
                         slm_type_name(q->type));
    case SLM_OP_KV_STORE:
    case SLM_OP_ATTENTION:
    case SLM_OP_KV_COPY:
        if (q->type != SLM_TYPE_F32 && q->type != SLM_TYPE_F16)
            return slm_error(SLM_STATUS_UNSUPPORTED,
                             "vulkan: KV cache type %s is not supported (F16 or F32)",
                             slm_type_name(q->type));
        __attribute__((fallthrough)); /* and the head size */
    case SLM_OP_ROPE:
        /* attention keeps one head's row in registers: 256 at most, even */
        if (q->head_dim && (q->head_dim < 2 || q->head_dim % 2 || q->head_dim > 256))
            return slm_error(SLM_STATUS_UNSUPPORTED,
                             "vulkan: heads of %d (even sizes up to 256 are supported)",
                             q->head_dim);
        return SLM_OK;
    case SLM_OP_RMSNORM:
    case SLM_OP_LAYERNORM:
    case SLM_OP_BIAS:
    case SLM_OP_SWIGLU:
    case SLM_OP_GEGLU:
    case SLM_OP_GELU:
    case SLM_OP_SOFTCAP:
    case SLM_OP_ADD:
    case SLM_OP_SCALE:
    case SLM_OP_GET_ROWS:
    case SLM_OP_LOGITS:
        return SLM_OK;
    default:
        return slm_error(SLM_STATUS_UNSUPPORTED, "vulkan: op %d", (int)q->op);
    }
}

static slm_status vk_memory(slm_backend *b, slm_mem_info *out)
{
    return slm_vk_memory(slm_vk_be(b), out);
}

/* Buffers cannot come or go inside a step: a new or released memory block
 * rewrites the descriptor set the recorded commands use. */
static slm_status vk_buf_alloc(slm_backend *b, size_t bytes, slm_buf **out)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: buf_alloc: out is NULL");
    *out = NULL;
    if (be->in_step || be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: buf_alloc inside a step");
    return slm_vk_buf_alloc(be, bytes, out);
}

static void vk_buf_free(slm_backend *b, slm_buf *buf)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (!buf)
        return;
    if (be->in_step || be->opened) {
        /* NOTE: kept until close (blocks are freed there) rather than freed
         * under commands that may use it. */
        slm_vk_fail(be, SLM_STATUS_INVALID_ARGUMENT, "buf_free inside a step");
        return;
    }
    slm_vk_buf_free(be, buf);
}

static slm_status vk_upload(slm_backend *b, slm_ref dst, const void *src, size_t bytes)
{
    return slm_vk_copy(slm_vk_be(b), dst, (void *)src, bytes, true);
}

static slm_status vk_download(slm_backend *b, void *dst, slm_ref src, size_t bytes)
{
    return slm_vk_copy(slm_vk_be(b), src, dst, bytes, false);
}

static void vk_weight_free(slm_backend *b, slm_weight *w);

static slm_status vk_load_weight(slm_backend *b, slm_type type, int64_t rows, int64_t cols,
                                 const void *data, slm_weight **out)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: load_weight: out is NULL");
    *out = NULL;
    if (slm_vk_wtype_index(type) < 0)
        return slm_error(SLM_STATUS_UNSUPPORTED, "vulkan: weight type %s is not supported",
                         slm_type_name(type));
    const slm_type_info *ti = slm_type_get(type);
    if (rows < 1 || cols < 1 || cols % ti->block_elems != 0 || !data)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "vulkan: load_weight: %lld × %lld of %s%s", (long long)rows,
                         (long long)cols, slm_type_name(type), data ? "" : " without data");
    size_t row_bytes = slm_type_row_bytes(type, cols);
    /* Rows per buffer: all of them, or as many as one bindable range holds
     * (rounded up to 4 bytes: shaders read the last 16-bit field as a uint). */
    uint64_t fit = row_bytes ? ((uint64_t)be->max_buffer - 4) / row_bytes : 0;
    int64_t part_rows = (uint64_t)rows <= fit ? rows : (int64_t)fit;
    if (part_rows < 1 || (rows + part_rows - 1) / part_rows > VK_MAX_PARTS)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "vulkan: a %lld × %lld %s weight needs more than %d buffers of the "
                         "largest size this device can bind (%llu bytes)",
                         (long long)rows, (long long)cols, slm_type_name(type), VK_MAX_PARTS,
                         (unsigned long long)be->max_buffer);
    slm_weight *w = calloc(1, sizeof *w);
    if (!w)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory");
    *w = (slm_weight){.type = type, .rows = rows, .cols = cols, .row_bytes = row_bytes,
                      .part_rows = part_rows};
    slm_status st = SLM_OK;
    for (int64_t r0 = 0; r0 < rows && !st; r0 += part_rows) {
        size_t bytes = row_bytes * (size_t)(rows - r0 < part_rows ? rows - r0 : part_rows);
        slm_buf **pb = &w->parts[w->n_parts++];
        st = vk_buf_alloc(b, (bytes + 3) & ~(size_t)3, pb);
        if (!st)
            st = vk_upload(b, (slm_ref){*pb, 0}, (const uint8_t *)data + row_bytes * (size_t)r0,
                           bytes);
    }
    if (st) {
        vk_weight_free(b, w);
        return st;
    }
    w->buf = w->parts[0];
    *out = w;
    return SLM_OK;
}

static void vk_weight_free(slm_backend *b, slm_weight *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_parts; i++)
        vk_buf_free(b, w->parts[i]);
    free(w);
}

static void vk_kv_free(slm_backend *b, slm_kv *kv)
{
    if (!kv)
        return;
    if (kv->layers)
        for (int l = 0; l < kv->desc.n_layers; l++)
            vk_buf_free(b, kv->layers[l]);
    vk_buf_free(b, kv->ws);
    free(kv->layers);
    free(kv);
}

static slm_status vk_kv_create(slm_backend *b, const slm_kv_desc *d, slm_kv **out)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (!out || !d)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: kv_create: NULL argument");
    *out = NULL;
    if (d->type != SLM_TYPE_F32 && d->type != SLM_TYPE_F16)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "vulkan: KV cache type %s is not supported (F16 or F32)",
                         slm_type_name(d->type));
    if (d->n_layers < 1 || d->n_blocks < 1 || d->block_size < 1 || d->n_kv_heads < 1 ||
        d->head_dim < 2 || d->head_dim % 2 || d->head_dim > 256)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "vulkan: kv_create: %d layers, %d blocks of %d, %d KV heads of %d "
                         "(head_dim must be even and at most 256)",
                         d->n_layers, d->n_blocks, d->block_size, d->n_kv_heads, d->head_dim);
    int64_t n_slots = (int64_t)d->n_blocks * d->block_size;
    uint64_t width = (uint64_t)d->n_kv_heads * (uint64_t)d->head_dim;
    uint64_t esize = d->type == SLM_TYPE_F16 ? 2 : 4;
    uint64_t layer_bytes = 2 * (uint64_t)n_slots * width * esize;
    if (n_slots > INT32_MAX || layer_bytes / 2 / esize / width != (uint64_t)n_slots ||
        layer_bytes > be->max_buffer)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "vulkan: one layer's KV cache (%d blocks of %d tokens) exceeds the largest "
                         "buffer the device can bind (%llu bytes)",
                         d->n_blocks, d->block_size, (unsigned long long)be->max_buffer);
    slm_kv *kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->layers = calloc((size_t)d->n_layers, sizeof *kv->layers))) {
        free(kv);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory");
    }
    kv->desc = *d;
    kv->n_slots = n_slots;
    kv->width = (uint32_t)width;
    size_t ws_floats = (size_t)VK_SPLIT_TOKENS * (size_t)(VK_SPLIT_GQA * d->n_kv_heads) *
                       VK_SPLIT_MAX * (size_t)(d->head_dim + 2);
    slm_status wst = vk_buf_alloc(b, ws_floats * sizeof(float), &kv->ws);
    if (wst) {
        vk_kv_free(b, kv);
        return wst;
    }
    for (int l = 0; l < d->n_layers; l++) {
        slm_status st = vk_buf_alloc(b, (size_t)layer_bytes, &kv->layers[l]);
        if (st) {
            vk_kv_free(b, kv);
            return st;
        }
    }
    *out = kv;
    return SLM_OK;
}

static slm_status vk_rope_create(slm_backend *b, const slm_rope_params *p, slm_rope **out)
{
    *out = NULL;
    float tab[512]; /* the table is built here: n_rot at most 2·512 */
    slm_status st = slm_rope_params_check(p, 2 * 512, "vulkan");
    if (st)
        return st;
    int half = p->n_rot / 2;
    for (int i = 0; i < half; i++)
        tab[i] = (float)slm_rope_inv_freq(p, i);
    slm_rope *r = calloc(1, sizeof *r);
    if (!r)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory");
    r->n_rot = p->n_rot;
    r->mode = p->mode;
    st = vk_buf_alloc(b, (size_t)half * sizeof(float), &r->buf);
    if (!st)
        st = vk_upload(b, (slm_ref){r->buf, 0}, tab, (size_t)half * sizeof(float));
    if (st) {
        vk_buf_free(b, r->buf);
        free(r);
        return st;
    }
    *out = r;
    return SLM_OK;
}

static void vk_rope_free(slm_backend *b, slm_rope *r)
{
    if (!r)
        return;
    vk_buf_free(b, r->buf);
    free(r);
}

/* The step buffer for the largest step's arrays (block tables bounded by
 * the pool), and the readback buffer for its logits rows. */
static slm_status vk_reserve(slm_backend *b, const slm_step_limits *lim, size_t *bytes)
{
    slm_vk_backend *be = slm_vk_be(b);
    size_t bt = lim->kv ? (size_t)lim->kv->desc.n_blocks : 0;
    size_t ints = VK_ST_HEADER + 4 * (size_t)lim->max_tokens + 2 * (size_t)lim->max_seqs + bt +
                  (size_t)lim->max_logit_rows + VK_ARENA_FLOATS;
    slm_status st = slm_vk_step_reserve(be, ints);
    if (!st && lim->logit_cols > 0)
        st = slm_vk_readback_reserve(be, (size_t)lim->max_logit_rows * (size_t)lim->logit_cols *
                                             sizeof(float));
    if (!st)
        *bytes += be->step_cap * sizeof(int32_t) + be->rb_bytes;
    return st;
}

/* ------------------------------------------------------------------------ */
/* steps                                                                     */

/* Copies one step array (or -1s when absent) to slot `at` of the host image. */
static void put(int32_t *img, size_t at, const int32_t *src, int n)
{
    for (int i = 0; i < n; i++)
        img[at + (size_t)i] = src ? src[i] : -1;
}

static slm_status begin(slm_vk_backend *be, const slm_step *s)
{
    int n_bt = 0;
    if (be->lost)
        return slm_error(SLM_STATUS_DEVICE, "vulkan: the device was lost");
    if (be->in_step)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: begin_step inside a step");
    if (!s)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: begin_step: no step");
    slm_status st = slm_step_check(s, &n_bt);
    if (st)
        return st;
    size_t n = (size_t)s->n_tokens, ns = (size_t)s->n_seqs;
    size_t at[VK_ST_HEADER] = {0};
    at[VK_ST_TOKENS] = VK_ST_HEADER;
    at[VK_ST_POS] = at[VK_ST_TOKENS] + n;
    at[VK_ST_SEQ] = at[VK_ST_POS] + n;
    at[VK_ST_SLOT] = at[VK_ST_SEQ] + n;
    at[VK_ST_BT_START] = at[VK_ST_SLOT] + n;
    at[VK_ST_BT_LEN] = at[VK_ST_BT_START] + ns;
    at[VK_ST_BT] = at[VK_ST_BT_LEN] + ns;
    at[VK_ST_LOGIT] = at[VK_ST_BT] + (size_t)n_bt;
    at[VK_ST_ARENA] = at[VK_ST_LOGIT] + (size_t)s->n_logit_rows;
    size_t ints = at[VK_ST_ARENA];
    if (ints > INT32_MAX - VK_ARENA_FLOATS)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: begin_step: step too large");
    if ((st = slm_vk_step_reserve(be, ints + VK_ARENA_FLOATS)))
        return st;
    int32_t *img = be->step_host;
    for (int i = 0; i < VK_ST_HEADER; i++)
        img[i] = (int32_t)at[i];
    img[VK_ST_N_TOKENS] = s->n_tokens;
    img[VK_ST_N_LOGIT] = s->n_logit_rows;
    img[VK_ST_N_SEQS] = s->n_seqs;
    img[VK_ST_N_BT] = n_bt;
    put(img, at[VK_ST_TOKENS], s->token_ids, s->n_tokens);
    put(img, at[VK_ST_POS], s->positions, s->n_tokens);
    put(img, at[VK_ST_SEQ], s->seq_of_token, s->n_tokens);
    put(img, at[VK_ST_SLOT], s->kv_slot, s->n_tokens);
    put(img, at[VK_ST_BT_START], s->block_table_start, s->n_seqs);
    put(img, at[VK_ST_BT_LEN], s->block_table_len, s->n_seqs);
    put(img, at[VK_ST_BT], s->block_tables, n_bt);
    put(img, at[VK_ST_LOGIT], s->logit_rows, s->n_logit_rows);
    memcpy(be->step_map, img, ints * sizeof(int32_t));

    be->n_tokens = s->n_tokens;
    be->n_seqs = s->n_seqs;
    be->n_logit = s->n_logit_rows;
    be->n_bt = n_bt;
    be->logits_out = s->logits;
    be->logits_bytes = 0;
    be->logits_recorded = false;
    be->plan_kv = NULL;
    be->split_longest = 0;
    if (s->kv && (st = slm_vk_plan(be, s->kv, s->n_heads)))
        return st;
    if ((st = slm_vk_chunk_begin(be, 0)))
        return st;
    be->in_step = true;
    return SLM_OK;
}

/* Begins a step; a failure is returned and kept for wait (backend.h: a
 * step begun is ended by submit + wait, whatever happened). */
static slm_status vk_begin_step(slm_backend *b, const slm_step *s)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (be->in_step || be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: begin_step inside a step");
    be->err = SLM_OK;
    be->err_msg[0] = '\0';
    be->submitted = false;
    slm_status st = begin(be, s);
    be->opened = true;
    if (st) {
        char why[sizeof be->err_msg];
        snprintf(why, sizeof why, "%s", slm_last_error());
        slm_vk_fail(be, st, "begin_step: %s", why);
        return slm_error(st, "%s", why);
    }
    return SLM_OK;
}

/* Ends recording and hands the last chunk to the queue with the fence;
 * returns at once. A failed step is not submitted (earlier chunks may
 * have been: wait drains the queue for them). */
static slm_status vk_submit(slm_backend *b)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (!be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: submit without begin_step");
    if (!be->in_step)
        return SLM_OK; /* begin_step failed: wait reports it */
    be->in_step = false;
    slm_status st = SLM_OK;
    if (be->recording)
        st = slm_vk_check(be, vkEndCommandBuffer(be->cmd), "vkEndCommandBuffer");
    be->recording = false;
    if (!st && !be->err) {
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                           .commandBufferCount = 1,
                           .pCommandBuffers = &be->cmd};
        st = slm_vk_check(be, vkQueueSubmit(be->queue, 1, &si, be->fence), "vkQueueSubmit");
        be->submitted = !st;
    }
    if (st)
        slm_vk_fail(be, st, "%s", slm_last_error());
    return be->err ? slm_error(be->err, "vulkan: %s", be->err_msg) : SLM_OK;
}

/* Waits for the submitted step (or drains the chunks of a failed one) and
 * copies the logits rows to the step's host buffer. */
static slm_status vk_wait(slm_backend *b)
{
    slm_vk_backend *be = slm_vk_be(b);
    if (!be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: wait without begin_step");
    if (be->in_step)
        vk_submit(b);
    be->opened = false;
    slm_status st = SLM_OK;
    if (be->submitted) {
        st = slm_vk_check(be, vkWaitForFences(be->dev, 1, &be->fence, VK_TRUE, UINT64_MAX),
                          "vkWaitForFences");
        VkResult r = vkResetFences(be->dev, 1, &be->fence);
        if (!st)
            st = slm_vk_check(be, r, "vkResetFences");
    } else if (be->chunk > 0) {
        vkQueueWaitIdle(be->queue);
    }
    be->submitted = false;
    be->cmd = be->cmds[0];
    be->chunk = 0;
    be->plan_kv = NULL;
    if (be->err)
        return slm_error(be->err, "vulkan: %s", be->err_msg);
    if (st)
        return st;
    if (be->logits_bytes && be->logits_recorded)
        memcpy(be->logits_out, be->rb_map, be->logits_bytes);
    else if (be->logits_bytes)
        st = slm_vk_copy(be, be->logits_src, be->logits_out, be->logits_bytes, false);
    return st;
}

static const slm_backend_ops vk_ops = {
    .api_version = SLM_BACKEND_API_VERSION,
    .name = "vulkan",
    .open = vk_open,
    .close = vk_close,
    .describe = vk_describe,
    .supports = vk_supports,
    .memory = vk_memory,
    .buf_alloc = vk_buf_alloc,
    .buf_free = vk_buf_free,
    .upload = vk_upload,
    .download = vk_download,
    .load_weight = vk_load_weight,
    .weight_free = vk_weight_free,
    .kv_create = vk_kv_create,
    .kv_free = vk_kv_free,
    .rope_create = vk_rope_create,
    .rope_free = vk_rope_free,
    .reserve = vk_reserve,
    .begin_step = vk_begin_step,
    .submit = vk_submit,
    .wait = vk_wait,
    .embed = slm_vk_embed,
    .rmsnorm = slm_vk_rmsnorm,
    .matmul = slm_vk_matmul,
    .rope = slm_vk_rope,
    .kv_store = slm_vk_kv_store,
    .attention = slm_vk_attention,
    .swiglu = slm_vk_swiglu,
    .geglu = slm_vk_geglu,
    .gelu = slm_vk_gelu,
    .layernorm = slm_vk_layernorm,
    .bias = slm_vk_bias,
    .softcap = slm_vk_softcap,
    .add = slm_vk_add,
    .scale = slm_vk_scale,
    .get_rows = slm_vk_get_rows,
    .logits = slm_vk_logits,
    .kv_copy = slm_vk_kv_copy,
};

const slm_backend_ops *slm_backend_vulkan(void) { return &vk_ops; }
