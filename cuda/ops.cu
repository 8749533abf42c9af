/*
 * ops.cu — the CUDA backend's row-wise ops and KV writes: embed, rmsnorm
 * and layernorm (each with the fused residual add), rope (NORM and NEOX,
 * partial rotary), kv_store, kv_copy, get_rows and the logits copy. The
 * element-wise ops are in elementwise.cu.
 *
 * Each op is a binding (checks sizes and buffer ranges on the host, records
 * a failure instead of launching on memory it was not given) and a small
 * kernel on the op stream. Per-element arithmetic that must match the
 * reference exactly (weight decoding, the Q8_0 KV coding, f16), RoPE's
 * pairing and LayerNorm's sums come from cuda_logic.cuh.
 *
 * Not done yet: RMSNorm fused with the activation quantization, RoPE fused
 * with kv_store. Compiled, host-tested
 * logic only: not yet run on a GPU.
 */
#include <math.h>

#include "cuda_backend.h"
#include "cuda_logic.cuh"

#define THREADS 256

/* ------------------------------------------------------------------------ */
/* embed                                                                     */

__global__ void embed_rows(int type, const uint8_t *w, size_t row_bytes, int block,
                           int block_bytes, int64_t cols, const int32_t *ids, int n, float *y)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * cols)
        return;
    y[i] = slm_cu_deq_row(type, block, block_bytes, w + (size_t)ids[i / cols] * row_bytes,
                          i % cols);
}

void slm_cu_embed(slm_backend *b, const slm_weight *table, slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "embed"))
        return;
    if (!table) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "embed: no table");
        return;
    }
    size_t count = (size_t)be->n_tokens * (size_t)table->cols;
    float *yp = slm_cu_f32(be, y, count, "embed", "y");
    if (!yp)
        return;
    const int32_t *ids = slm_cu_host(be, ST_TOKENS);
    for (int t = 0; t < be->n_tokens; t++)
        if (ids[t] < 0 || ids[t] >= table->rows) {
            slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                        "embed: token %d has id %d, outside the table's %lld rows", t, ids[t],
                        (long long)table->rows);
            return;
        }
    if (!count)
        return;
    const slm_type_info *ti = slm_type_get(table->type);
    embed_rows<<<slm_cu_blocks(count, THREADS), THREADS, 0, be->stream>>>(
        table->type, table->dev, table->row_bytes, (int)ti->block_elems, (int)ti->block_bytes,
        table->cols, slm_cu_dev(be, ST_TOKENS), be->n_tokens, yp);
    slm_cu_launched(be, "embed_rows");
}

/* ------------------------------------------------------------------------ */
/* rmsnorm, layernorm                                                        */

/* The block's (THREADS threads') sum of v, in a halving tree over shared
 * memory; every thread gets it. part is THREADS floats, free on entry and
 * free again on return (the trailing barrier lets a second call reuse it). */
__device__ float block_sum(float v, float *part)
{
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s)
            part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    float total = part[0];
    __syncthreads();
    return total;
}

/* A row's x += add, stored (the residual stream updated in place); each
 * thread its own elements i ≡ threadIdx.x, the ones it reads afterwards. */
__device__ void add_residual(float *xr, const float *ar, int d)
{
    if (ar)
        for (int i = threadIdx.x; i < d; i += blockDim.x)
            xr[i] += ar[i];
}

/* One block per row: x += add (stored), then y = x / sqrt(mean(x²) + eps) · w. */
__global__ void rmsnorm_rows(float *x, const float *add, const float *w, float eps, int d,
                             float *y)
{
    __shared__ float part[THREADS];
    float *xr = x + (size_t)blockIdx.x * d, *yr = y + (size_t)blockIdx.x * d;
    add_residual(xr, add ? add + (size_t)blockIdx.x * d : NULL, d);
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        ss += xr[i] * xr[i];
    float inv = 1.0f / sqrtf(block_sum(ss, part) / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        yr[i] = xr[i] * inv * w[i];
}

/* One block per row: x += add (stored), then the mean, then Σ(x − mean)²
 * (slm_cu_ln_share), then y = (x − mean)·inv·w + b. y may equal x: each
 * thread writes only elements it alone reads, and only after both sums. */
__global__ void layernorm_rows(float *x, const float *add, const float *w, const float *b,
                               float eps, int d, float *y)
{
    __shared__ float part[THREADS];
    float *xr = x + (size_t)blockIdx.x * d, *yr = y + (size_t)blockIdx.x * d;
    add_residual(xr, add ? add + (size_t)blockIdx.x * d : NULL, d);
    int t = threadIdx.x, nt = blockDim.x;
    float mean = block_sum(slm_cu_ln_share(xr, d, t, nt, 0.0f, false), part) / (float)d;
    float ssd = block_sum(slm_cu_ln_share(xr, d, t, nt, mean, true), part);
    float inv = slm_cu_ln_inv(ssd, d, eps);
    for (int i = t; i < d; i += nt)
        yr[i] = slm_cu_ln_out(xr[i], mean, inv, w[i], b ? b[i] : 0.0f);
}

/* A norm weight (or bias) fits: f32, d elements ([1, d] or [d, 1]). */
static bool norm_weight_ok(const slm_weight *w, int d)
{
    return w && w->type == SLM_TYPE_F32 && w->rows * w->cols == d;
}

void slm_cu_rmsnorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w, float eps,
                    int rows, int d, slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "rmsnorm"))
        return;
    if (rows < 0 || d < 1 || !norm_weight_ok(w, d) || !(eps >= 0)) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "rmsnorm: rows %d, d %d, eps %g with a %s weight (needs an f32 weight of d "
                    "elements)",
                    rows, d, (double)eps, w ? slm_type_name(w->type) : "missing");
        return;
    }
    size_t n = (size_t)rows * (size_t)d;
    float *xp = slm_cu_f32(be, x, n, "rmsnorm", "x");
    float *yp = xp ? slm_cu_f32(be, y, n, "rmsnorm", "y") : NULL;
    const float *ap = NULL;
    if (!yp || (add.buf && !(ap = slm_cu_f32(be, add, n, "rmsnorm", "add"))) || !rows)
        return;
    rmsnorm_rows<<<(unsigned)rows, THREADS, 0, be->stream>>>(xp, ap, (const float *)w->dev, eps,
                                                             d, yp);
    slm_cu_launched(be, "rmsnorm_rows");
}

void slm_cu_layernorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w,
                      const slm_weight *bias, float eps, int rows, int d, slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "layernorm"))
        return;
    if (rows < 0 || d < 1 || !norm_weight_ok(w, d) || (bias && !norm_weight_ok(bias, d)) ||
        !(eps >= 0)) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "layernorm: rows %d, d %d, eps %g with a %s weight and %s bias (needs "
                    "f32 of d elements)",
                    rows, d, (double)eps, w ? slm_type_name(w->type) : "missing",
                    bias ? slm_type_name(bias->type) : "no");
        return;
    }
    size_t n = (size_t)rows * (size_t)d;
    float *xp = slm_cu_f32(be, x, n, "layernorm", "x");
    float *yp = xp ? slm_cu_f32(be, y, n, "layernorm", "y") : NULL;
    const float *ap = NULL;
    if (!yp || (add.buf && !(ap = slm_cu_f32(be, add, n, "layernorm", "add"))) || !rows)
        return;
    /* y equal to x is in place row by row; any other overlap is not */
    if (yp != xp && x.buf == y.buf && x.off < y.off + n * 4 && y.off < x.off + n * 4) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "layernorm: x and y overlap");
        return;
    }
    layernorm_rows<<<(unsigned)rows, THREADS, 0, be->stream>>>(
        xp, ap, (const float *)w->dev, bias ? (const float *)bias->dev : NULL, eps, d, yp);
    slm_cu_launched(be, "layernorm_rows");
}

/* ------------------------------------------------------------------------ */
/* rope                                                                      */

/* One thread per (token, pair): the angle in double (as the CPU forms it),
 * its cos and sin applied to that pair of every head. The pairs cover a
 * head's first n_rot elements; the rest (partial rotary) stay as they are. */
__global__ void rope_pairs(float *x, int64_t stride, const int32_t *pos, int n, int n_heads,
                           int head_dim, const double *inv_freq, int half, int neox)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * half)
        return;
    int t = (int)(i / half), k = (int)(i % half);
    double theta = (double)pos[t] * inv_freq[k];
    float c = (float)cos(theta), s = (float)sin(theta);
    int a, pb;
    slm_cu_rope_pair(neox, 2 * half, k, &a, &pb);
    for (int h = 0; h < n_heads; h++)
        slm_cu_rope_rotate(x + t * stride + (int64_t)h * head_dim, a, pb, c, s);
}

void slm_cu_rope(slm_backend *b, slm_ref x, int stride, int n_heads, int head_dim,
                 const slm_rope *r)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "rope"))
        return;
    if (!r || n_heads < 1 || head_dim < 1 || r->n_rot > head_dim) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "rope: %d heads of %d, n_rot %d", n_heads,
                    head_dim, r ? r->n_rot : 0);
        return;
    }
    int64_t width = (int64_t)n_heads * head_dim;
    float *xp = slm_cu_rows(be, x, be->n_tokens, width, stride, "rope", "x");
    if (!xp)
        return;
    for (int t = 0; t < be->n_tokens; t++)
        if (slm_cu_host(be, ST_POS)[t] < 0) {
            slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "rope: the step has no positions");
            return;
        }
    int half = r->n_rot / 2;
    size_t n = (size_t)be->n_tokens * (size_t)half;
    if (!n)
        return;
    rope_pairs<<<slm_cu_blocks(n, THREADS), THREADS, 0, be->stream>>>(
        xp, stride, slm_cu_dev(be, ST_POS), be->n_tokens, n_heads, head_dim, r->inv_freq, half,
        r->mode == SLM_ROPE_NEOX);
    slm_cu_launched(be, "rope_pairs");
}

/* ------------------------------------------------------------------------ */
/* kv_store, kv_copy                                                         */

__device__ __forceinline__ uint8_t *kv_row(uint8_t *base, const slm_kv *kv, int slot, int h)
{
    int bs = kv->d.block_size;
    return base + (size_t)(slot / bs) * kv->lay.block_bytes + (size_t)h * kv->lay.head_block_bytes +
           (size_t)(slot % bs) * kv->lay.row_bytes;
}

/* F32/F16: grid (tokens, kv heads), a thread per element. */
__global__ void store_plain(slm_kv kv, uint8_t *base, const float *src, int64_t stride,
                            const int32_t *slot)
{
    int t = blockIdx.x, h = blockIdx.y, hd = kv.d.head_dim;
    uint8_t *row = kv_row(base, &kv, slot[t], h);
    const float *s = src + t * stride + (int64_t)h * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        if (kv.d.type == SLM_TYPE_F32)
            ((float *)row)[i] = s[i];
        else
            ((uint16_t *)row)[i] = slm_cu_f32_to_f16(s[i]);
    }
}

/* Q8_0: grid (tokens, kv heads, blocks of 32), one warp per block, the
 * tail past head_dim coded as zeros (the CPU's and ref_kv_round's rule). */
__global__ void store_q8_0(slm_kv kv, uint8_t *base, const float *src, int64_t stride,
                           const int32_t *slot)
{
    int t = blockIdx.x, h = blockIdx.y, blk = blockIdx.z, lane = threadIdx.x;
    int i = blk * 32 + lane, hd = kv.d.head_dim;
    float v = i < hd ? src[t * stride + (int64_t)h * hd + i] : 0.0f;
    float amax = fabsf(v);
    for (int o = 16; o > 0; o >>= 1)
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    float d = slm_cu_q8_0_scale(amax), id = slm_cu_q8_0_inv(d);
    uint8_t *b = kv_row(base, &kv, slot[t], h) + (size_t)blk * 34;
    b[2 + lane] = (uint8_t)(int8_t)slm_cu_q8_0_code(v, id);
    if (lane == 0)
        *(uint16_t *)b = slm_cu_f32_to_f16(d);
}

static void store_one(slm_cu_backend *be, const slm_kv *kv, uint8_t *base, const float *src,
                      int64_t stride)
{
    const int32_t *slot = slm_cu_dev(be, ST_SLOT);
    if (kv->d.type == SLM_TYPE_Q8_0) {
        dim3 grid((unsigned)be->n_tokens, (unsigned)kv->d.n_kv_heads,
                  (unsigned)(kv->lay.padded_dim / 32));
        store_q8_0<<<grid, 32, 0, be->stream>>>(*kv, base, src, stride, slot);
    } else {
        dim3 grid((unsigned)be->n_tokens, (unsigned)kv->d.n_kv_heads);
        store_plain<<<grid, 128, 0, be->stream>>>(*kv, base, src, stride, slot);
    }
    slm_cu_launched(be, "kv_store");
}

void slm_cu_kv_store(slm_backend *b, slm_kv *kv, int layer, slm_ref k, int k_stride, slm_ref v,
                     int v_stride)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "kv_store") || !slm_cu_kv_planned(be, kv, "kv_store"))
        return;
    if (layer < 0 || layer >= kv->d.n_layers) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "kv_store: layer %d of a %d-layer pool",
                    layer, kv->d.n_layers);
        return;
    }
    int64_t width = (int64_t)kv->d.n_kv_heads * kv->d.head_dim;
    const float *kp = slm_cu_rows(be, k, be->n_tokens, width, k_stride, "kv_store", "k");
    const float *vp = kp ? slm_cu_rows(be, v, be->n_tokens, width, v_stride, "kv_store", "v")
                         : NULL;
    if (!vp || !be->n_tokens)
        return;
    size_t off = (size_t)layer * kv->lay.layer_bytes;
    store_one(be, kv, kv->k + off, kp, k_stride);
    store_one(be, kv, kv->v + off, vp, v_stride);
}

/* In order, each a device-to-device copy of one layer's K or V block. */
void slm_cu_kv_copy(slm_backend *b, slm_kv *kv, const slm_kv_copy *copies, int n)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "kv_copy") || !slm_cu_kv_planned(be, kv, "kv_copy"))
        return;
    if (slm_kv_copies_check(copies, n, kv->d.n_blocks)) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s", slm_last_error());
        return;
    }
    for (int i = 0; i < n; i++)
        for (int l = 0; l < kv->d.n_layers; l++)
            for (int which = 0; which < 2; which++) {
                uint8_t *layer = (which ? kv->v : kv->k) + (size_t)l * kv->lay.layer_bytes;
                if (!CU_CHECK(be, cudaMemcpyAsync(layer + (size_t)copies[i].dst * kv->lay.block_bytes,
                                                  layer + (size_t)copies[i].src * kv->lay.block_bytes,
                                                  kv->lay.block_bytes, cudaMemcpyDeviceToDevice,
                                                  be->stream)))
                    return;
            }
}

/* ------------------------------------------------------------------------ */
/* get_rows, logits                                                          */

__global__ void gather_rows(const float *x, int d, const int32_t *rows, int n, float *y)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (int64_t)n * d)
        y[i] = x[(int64_t)rows[i / d] * d + i % d];
}

/* y and x share memory (the forward pass compacts rows in place, rows
 * ascending, y at or below x): one block copies row after row, a chunk of
 * the row at a time, every read of a chunk before its writes, so no value
 * is overwritten before it is read (rows[i] ≥ i) — memmove's order. */
__global__ void gather_rows_inplace(const float *x, int d, const int32_t *rows, int n, float *y)
{
    for (int r = 0; r < n; r++) {
        const float *src = x + (int64_t)rows[r] * d;
        float *dst = y + (int64_t)r * d;
        for (int c0 = 0; c0 < d; c0 += blockDim.x) {
            int c = c0 + threadIdx.x;
            float v = c < d ? src[c] : 0.0f;
            __syncthreads();
            if (c < d)
                dst[c] = v;
            __syncthreads();
        }
    }
}

void slm_cu_get_rows(slm_backend *b, slm_ref x, int d, slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "get_rows"))
        return;
    if (d < 1) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "get_rows: row width %d", d);
        return;
    }
    size_t nx = (size_t)be->n_tokens * (size_t)d, ny = (size_t)be->n_logit * (size_t)d;
    const float *xp = slm_cu_f32(be, x, nx, "get_rows", "x");
    float *yp = xp ? slm_cu_f32(be, y, ny, "get_rows", "y") : NULL;
    if (!yp || !ny)
        return;
    const int32_t *rows = slm_cu_dev(be, ST_LOGIT);
    bool shared = x.buf == y.buf && x.off < y.off + ny * 4 && y.off < x.off + nx * 4;
    if (shared) {
        const int32_t *hr = slm_cu_host(be, ST_LOGIT);
        for (int i = 0; i < be->n_logit; i++)
            if (hr[i] < i || (i && hr[i] <= hr[i - 1]) || y.off > x.off) {
                slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                            "get_rows: in place needs ascending rows and y at or below x");
                return;
            }
        gather_rows_inplace<<<1, THREADS, 0, be->stream>>>(xp, d, rows, be->n_logit, yp);
    } else {
        gather_rows<<<slm_cu_blocks(ny, THREADS), THREADS, 0, be->stream>>>(xp, d, rows,
                                                                           be->n_logit, yp);
    }
    slm_cu_launched(be, "get_rows");
}

/* The rows go to pinned memory on the copy stream once the ops before are
 * done (or, without enough pinned memory reserved, straight to the step's
 * buffer at wait). */
void slm_cu_logits(slm_backend *b, slm_ref x, int cols)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "logits"))
        return;
    if (cols < 1 || (be->n_logit && !be->logits_out)) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "logits: %d columns%s", cols,
                    be->logits_out ? "" : " and no slm_step.logits buffer");
        return;
    }
    size_t bytes = (size_t)be->n_logit * (size_t)cols * sizeof(float);
    const float *xp = slm_cu_f32(be, x, bytes / sizeof(float), "logits", "x");
    if (!xp || !bytes)
        return;
    be->logits_bytes = bytes;
    be->logits_src = xp;
    be->logits_staged = false;
    if (bytes > be->pinned_bytes)
        return; /* wait copies from logits_src */
    if (CU_CHECK(be, cudaEventRecord(be->ops_done, be->stream)) &&
        CU_CHECK(be, cudaStreamWaitEvent(be->copy, be->ops_done, 0)) &&
        CU_CHECK(be, cudaMemcpyAsync(be->pinned, xp, bytes, cudaMemcpyDeviceToHost, be->copy)))
        be->logits_staged = true;
}
