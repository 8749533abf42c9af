/*
 * attention.cu — fused paged attention over the KV pool:
 *   out(n, n_heads·hd) = softmax(cap(scale · q·Kᵀ)) · V
 * for each token over positions 0..pos of its sequence (only the last
 * `window` of them for a sliding-window layer), K/V read through the
 * sequence's block table (layout in cuda_backend.h); cap is the optional
 * soft-cap cap·tanh(s / cap) of each score (slm_attn_params).
 *
 * One warp per (token, query head, split): lane l owns elements l, l+32, …
 * of the head (hd ≤ 256: 8 registers of q and of the accumulator), each
 * position's score is a warp sum, and the online softmax (slm_cu_osm_push)
 * keeps the running max, sum and rescaled accumulator. The same kernel runs
 * prefill (causal by construction: a token reads its own positions only)
 * and decode.
 *
 * Flash-decoding: a step of few tokens with long contexts splits each
 * context into up to ATTN_SPLIT_MAX parts (planned in begin_step; a token
 * with a shorter context than the step's longest gets some empty parts);
 * each part writes (m, l, acc[hd]) to the workspace and a second kernel
 * merges the parts (slm_cu_osm_merge). A windowed layer splits only each
 * token's window (slm_cu_attn_part), so no part reads a KV block wholly
 * before it, and into fewer parts when the window is shorter than the
 * step's longest context. Window and soft-cap hold in both kernels' paths.
 *
 * Not done yet: one K/V read shared by a GQA group's heads, FlashAttention-2
 * tiles for prefill. Compiled, host-tested logic only (the update, merge,
 * window and soft-cap are tested on the host): not yet run on a GPU.
 */
#include <math.h>

#include "cuda_backend.h"
#include "cuda_logic.cuh"

#define PER_LANE (ATTN_MAX_HEAD / 32)

int slm_cu_attention_splits(int n_tokens, int n_ctx, int split_min)
{
    if (n_tokens < 1 || n_tokens > ATTN_SPLIT_TOKENS || n_ctx < split_min)
        return 1;
    int part = split_min / 2 > 0 ? split_min / 2 : 1;
    int s = n_ctx / part;
    return s < 1 ? 1 : s < ATTN_SPLIT_MAX ? s : ATTN_SPLIT_MAX;
}

size_t slm_cu_attention_ws(int n_tokens, int n_heads, int head_dim, int n_split)
{
    if (n_split <= 1)
        return 0;
    return (size_t)n_tokens * (size_t)n_heads * (size_t)n_split * (size_t)(head_dim + 2) *
           sizeof(float);
}

typedef struct attn_args {
    const uint8_t *k, *v; /* this layer's K and V */
    size_t row_bytes, head_block_bytes, block_bytes;
    int kv_type, bs, hd, group, n_heads, n_split;
    const float *q;
    int64_t q_stride;
    float scale, softcap; /* the layer's slm_attn_params, by value */
    int window;
    const int32_t *pos, *seq, *bt_start, *bt;
    float *out;  /* (n, n_heads·hd) */
    float *part; /* [token][head][split][m, l, acc[hd]] when n_split > 1 */
} attn_args;

__global__ void attend(attn_args a)
{
    int lane = threadIdx.x;
    int t = blockIdx.x / a.n_heads, h = blockIdx.x % a.n_heads, s = blockIdx.y;
    int p0, p1;
    slm_cu_attn_part(a.pos[t], a.window, a.n_split, s, &p0, &p1);
    const float *q = a.q + t * a.q_stride + (int64_t)h * a.hd;
    float qr[PER_LANE], acc[PER_LANE];
    for (int k = 0; k < PER_LANE; k++) {
        int i = lane + 32 * k;
        qr[k] = i < a.hd ? q[i] * a.scale : 0.0f;
        acc[k] = 0.0f;
    }
    const int32_t *table = a.bt + a.bt_start[a.seq[t]];
    size_t head_off = (size_t)(h / a.group) * a.head_block_bytes;
    slm_cu_osm st = slm_cu_osm_init();
    for (int p = p0; p < p1; p++) {
        size_t off = (size_t)table[p / a.bs] * a.block_bytes + head_off +
                     (size_t)(p % a.bs) * a.row_bytes;
        float d = 0.0f;
        for (int k = 0; k < PER_LANE; k++) {
            int i = lane + 32 * k;
            if (i < a.hd)
                d += qr[k] * slm_cu_kv_elem(a.kv_type, a.k + off, i);
        }
        for (int o = 16; o > 0; o >>= 1)
            d += __shfl_xor_sync(0xffffffffu, d, o);
        d = slm_cu_softcap(d, a.softcap);
        float corr, w;
        slm_cu_osm_push(&st, d, &corr, &w);
        for (int k = 0; k < PER_LANE; k++) {
            int i = lane + 32 * k;
            if (i < a.hd)
                acc[k] = acc[k] * corr + w * slm_cu_kv_elem(a.kv_type, a.v + off, i);
        }
    }
    if (a.n_split == 1) {
        float *o = a.out + ((size_t)t * a.n_heads + h) * a.hd;
        for (int k = 0; k < PER_LANE; k++)
            if (lane + 32 * k < a.hd)
                o[lane + 32 * k] = acc[k] / st.l;
        return;
    }
    float *part = a.part + (((size_t)t * a.n_heads + h) * a.n_split + s) * (size_t)(a.hd + 2);
    if (lane == 0) {
        part[0] = st.m;
        part[1] = st.l;
    }
    for (int k = 0; k < PER_LANE; k++)
        if (lane + 32 * k < a.hd)
            part[2 + lane + 32 * k] = acc[k];
}

/* One warp per (token, head): the parts merged in split order. */
__global__ void merge_parts(attn_args a)
{
    int lane = threadIdx.x;
    size_t th = blockIdx.x;
    const float *part = a.part + th * a.n_split * (size_t)(a.hd + 2);
    float acc[PER_LANE];
    for (int k = 0; k < PER_LANE; k++)
        acc[k] = 0.0f;
    slm_cu_osm st = slm_cu_osm_init();
    for (int s = 0; s < a.n_split; s++, part += a.hd + 2) {
        slm_cu_osm ps = {part[0], part[1]};
        float ca, cb;
        slm_cu_osm_merge(&st, ps, &ca, &cb);
        for (int k = 0; k < PER_LANE; k++)
            if (lane + 32 * k < a.hd)
                acc[k] = acc[k] * ca + (cb != 0.0f ? part[2 + lane + 32 * k] * cb : 0.0f);
    }
    float *o = a.out + th * a.hd;
    for (int k = 0; k < PER_LANE; k++)
        if (lane + 32 * k < a.hd)
            o[lane + 32 * k] = acc[k] / st.l;
}

/* The parts this call splits each context into: the step's plan, fewer
 * for a window shorter than the step's longest context, one when the
 * workspace was sized for fewer heads. */
static int call_splits(const slm_cu_backend *be, int n_heads, int hd, int window)
{
    int ctx = slm_cu_window_ctx(be->max_pos + 1, window);
    int s = slm_cu_attention_splits(be->n_tokens, ctx, be->split_min);
    if (s > be->attn_split)
        s = be->attn_split;
    if (slm_cu_attention_ws(be->n_tokens, n_heads, hd, s) > be->ws_bytes)
        s = 1;
    return s;
}

void slm_cu_attention(slm_backend *b, slm_kv *kv, int layer, slm_ref q, int q_stride,
                      int n_heads, const slm_attn_params *p, slm_ref out)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "attention") || !slm_cu_kv_planned(be, kv, "attention"))
        return;
    if (!p) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "attention: no slm_attn_params");
        return;
    }
    if (layer < 0 || layer >= kv->d.n_layers || n_heads < 1 || n_heads % kv->d.n_kv_heads ||
        !isfinite(p->scale) || !(p->softcap >= 0) || !isfinite(p->softcap) || p->window < 0) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "attention: layer %d, %d query heads over %d KV heads, scale %g, "
                    "softcap %g, window %d",
                    layer, n_heads, kv->d.n_kv_heads, (double)p->scale, (double)p->softcap,
                    p->window);
        return;
    }
    int hd = kv->d.head_dim, n = be->n_tokens;
    int64_t width = (int64_t)n_heads * hd;
    size_t no = (size_t)n * (size_t)width;
    const float *qp = slm_cu_rows(be, q, n, width, q_stride, "attention", "q");
    float *op = qp ? slm_cu_f32(be, out, no, "attention", "out") : NULL;
    if (!op)
        return;
    size_t q_extent = n ? (size_t)(n - 1) * q_stride + width : 0;
    if (q.buf == out.buf && q.off < out.off + no * 4 && out.off < q.off + q_extent * 4) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "attention: q and out overlap");
        return;
    }
    if (n == 0)
        return;
    attn_args a;
    a.k = kv->k + (size_t)layer * kv->lay.layer_bytes;
    a.v = kv->v + (size_t)layer * kv->lay.layer_bytes;
    a.row_bytes = kv->lay.row_bytes;
    a.head_block_bytes = kv->lay.head_block_bytes;
    a.block_bytes = kv->lay.block_bytes;
    a.kv_type = kv->d.type;
    a.bs = kv->d.block_size;
    a.hd = hd;
    a.group = n_heads / kv->d.n_kv_heads;
    a.n_heads = n_heads;
    a.q = qp;
    a.q_stride = q_stride;
    /* NOTE: the values, not p: the kernel may run (or a graph replay) after
     * the caller's struct is gone or reused for the next layer. */
    a.scale = p->scale;
    a.softcap = p->softcap;
    a.window = p->window;
    a.pos = slm_cu_dev(be, ST_POS);
    a.seq = slm_cu_dev(be, ST_SEQ);
    a.bt_start = slm_cu_dev(be, ST_BT_START);
    a.bt = slm_cu_dev(be, ST_BT);
    a.out = op;
    a.part = (float *)be->ws;
    a.n_split = call_splits(be, n_heads, hd, p->window);
    dim3 grid((unsigned)(n * n_heads), (unsigned)a.n_split);
    attend<<<grid, 32, 0, be->stream>>>(a);
    if (!slm_cu_launched(be, "attend") || a.n_split == 1)
        return;
    merge_parts<<<(unsigned)(n * n_heads), 32, 0, be->stream>>>(a);
    slm_cu_launched(be, "merge_parts");
}
