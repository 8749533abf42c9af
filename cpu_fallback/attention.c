/*
 * attention.c — fused paged attention on the CPU:
 *   out(n, n_heads·head_dim) = softmax(cap(scale · q·Kᵀ)) · V
 * for each token over positions 0..pos of its own sequence (the last
 * `window` of them for a sliding-window layer), K/V read from the paged
 * pool (kv.c) through the sequence's block table; cap is the optional
 * logit soft-cap c·tanh(s/c) (Gemma 2).
 *
 * One pass per work item with an online softmax: the KV positions are
 * visited block by block; for each block the scores of every query head are
 * computed, the running max m and sum l are updated (rescaling the output
 * accumulator by exp(m_old − m_new) when the max grows), and the block's V
 * rows are added with weights exp(s − m). Nothing of size O(sequence length)
 * is stored, and each K/V row is decoded once for all the query heads that
 * share it (GQA).
 *
 * Work item = (token, KV head, chunk of that KV head's query heads). Chunks
 * hold at most SLM_CPU_ATTN_GROUP_MAX heads (bounding the per-thread
 * scratch); when there are fewer items than twice the threads (a single
 * decode token), chunks shrink so every thread gets work. Items are taken
 * from an atomic counter: prefill tokens late in a chunk cost more than
 * early ones, so a static split would leave threads idle.
 *
 * Each output element is reduced by one thread in a fixed order, so results
 * do not depend on the thread count or on the other tokens of the step.
 */
#include <math.h>
#include <stdatomic.h>

#include "cpu_backend.h"

#define G SLM_CPU_ATTN_GROUP_MAX

static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

/* Per-thread floats: q (G·pd), acc (G·pd), k and v rows (pd each), scores
 * (G·bs), running max and sum (G each). */
size_t slm_cpu_attention_thread_bytes(int pd, int bs)
{
    size_t floats = 2 * (size_t)G * pd + 2 * (size_t)pd + (size_t)G * bs + 2 * (size_t)G;
    return round64(floats * sizeof(float));
}

typedef struct attn_job {
    const slm_cpu_backend *be;
    const slm_kv *kv;
    int layer;
    const float *q; /* n rows of n_heads·hd, q_stride floats apart */
    int64_t q_stride;
    float *out;     /* (n, n_heads·hd), dense */
    int n_heads, n_kv_heads, group, chunk, n_chunks, hd, pd, bs;
    float scale, softcap; /* softcap 0: none */
    int window;           /* 0: every earlier position */
    int64_t n_items;
    atomic_llong next;
    uint8_t *scratch;
    size_t thread_bytes;
} attn_job;

/* NOTE: the dot product and axpy below work in groups of 8 lanes written
 * as plain loops: compilers turn each group into vector instructions at -O2
 * (SLP vectorization) while this file stays portable C with no ISA flags.
 * The summation order depends only on n. */
static float dot(const float *restrict a, const float *restrict b, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    float tail = 0;
    for (; i < n; i++)
        tail += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) +
           tail;
}

/* y += w·x */
static void axpy(float *restrict y, float w, const float *restrict x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            y[i + k] += w * x[i + k];
    for (; i < n; i++)
        y[i] += w * x[i];
}

/* A K or V row as floats: in place for F32 storage, else decoded into buf. */
static const float *kv_f32(const slm_kv *kv, const uint8_t *row, float *buf)
{
    if (kv->d.type == SLM_TYPE_F32)
        return (const float *)row;
    slm_cpu_kv_row_to_f32(kv, row, buf);
    return buf;
}

/* One work item: query heads h0..h0+nh-1 of token t, all on KV head kvh. */
static void attend(const attn_job *j, float *ws, int t, int kvh, int h0, int nh)
{
    const slm_cpu_backend *be = j->be;
    const slm_kv *kv = j->kv;
    int hd = j->hd, pd = j->pd, bs = j->bs;
    float *qs = ws, *acc = qs + G * pd, *kbuf = acc + G * pd, *vbuf = kbuf + pd;
    float *s = vbuf + pd, *m = s + G * bs, *l = m + G;

    for (int h = 0; h < nh; h++) {
        const float *qh = j->q + t * j->q_stride + (int64_t)(h0 + h) * hd;
        for (int i = 0; i < hd; i++) {
            qs[h * pd + i] = qh[i] * j->scale;
            acc[h * pd + i] = 0;
        }
        m[h] = -INFINITY;
        l[h] = 0;
    }
    int seq = be->seq_of_token[t];
    const int32_t *table = be->block_tables + be->bt_start[seq];
    int n_pos = be->positions[t] + 1;
    /* Positions first..n_pos-1 are attended; whole blocks before the window
     * are never read, nor the earlier slots of the first block. */
    int first = j->window > 0 && n_pos > j->window ? n_pos - j->window : 0;
    for (int b = first / bs; b * bs < n_pos; b++) {
        int nj = n_pos - b * bs < bs ? n_pos - b * bs : bs;
        int j0 = first > b * bs ? first - b * bs : 0;
        int id = table[b];
        for (int jj = j0; jj < nj; jj++) {
            const float *k = kv_f32(kv, slm_cpu_kv_row(kv, 0, j->layer, id, kvh, jj), kbuf);
            for (int h = 0; h < nh; h++) {
                float sc = dot(qs + h * pd, k, hd);
                s[h * bs + jj] = j->softcap > 0 ? j->softcap * tanhf(sc / j->softcap) : sc;
            }
        }
        for (int h = 0; h < nh; h++) {
            float *sh = s + h * bs;
            float mx = m[h];
            for (int jj = j0; jj < nj; jj++)
                mx = sh[jj] > mx ? sh[jj] : mx;
            if (mx > m[h]) {
                /* the running max grew: earlier weights shrink by exp(Δ) */
                float corr = expf(m[h] - mx);
                l[h] *= corr;
                for (int i = 0; i < hd; i++)
                    acc[h * pd + i] *= corr;
                m[h] = mx;
            }
            float sum = 0;
            for (int jj = j0; jj < nj; jj++) {
                sh[jj] = expf(sh[jj] - mx);
                sum += sh[jj];
            }
            l[h] += sum;
        }
        for (int jj = j0; jj < nj; jj++) {
            const float *v = kv_f32(kv, slm_cpu_kv_row(kv, 1, j->layer, id, kvh, jj), vbuf);
            for (int h = 0; h < nh; h++)
                axpy(acc + h * pd, s[h * bs + jj], v, hd);
        }
    }
    for (int h = 0; h < nh; h++) {
        float *o = j->out + ((size_t)t * j->n_heads + h0 + h) * hd;
        float inv = 1.0f / l[h];
        for (int i = 0; i < hd; i++)
            o[i] = acc[h * pd + i] * inv;
    }
}

static void attn_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    attn_job *j = ctx;
    float *ws = (float *)(j->scratch + (size_t)ith * j->thread_bytes);
    for (;;) {
        int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items)
            return;
        int c = (int)(it % j->n_chunks);
        int64_t r = it / j->n_chunks;
        int kvh = (int)(r % j->n_kv_heads);
        int t = (int)(r / j->n_kv_heads);
        int first = c * j->chunk;
        int nh = j->group - first < j->chunk ? j->group - first : j->chunk;
        attend(j, ws, t, kvh, kvh * j->group + first, nh);
    }
}

void slm_cpu_attention(slm_backend *b, slm_kv *kv, int layer, slm_ref q, int q_stride,
                       int n_heads, const slm_attn_params *p, slm_ref out)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "attention"))
        return;
    if (!slm_cpu_kv_planned(be, kv, "attention"))
        return;
    if (p == NULL || layer < 0 || layer >= kv->d.n_layers || n_heads < 1 ||
        n_heads % kv->d.n_kv_heads != 0 || !isfinite(p->scale) || !(p->softcap >= 0) ||
        !isfinite(p->softcap) || p->window < 0) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "attention: layer %d, %d query heads over %d KV heads, scale %g, "
                     "softcap %g, window %d",
                     layer, n_heads, kv->d.n_kv_heads, p ? (double)p->scale : 0.0,
                     p ? (double)p->softcap : 0.0, p ? p->window : 0);
        return;
    }
    int hd = kv->d.head_dim;
    int64_t width = (int64_t)n_heads * hd;
    size_t n = (size_t)be->n_tokens * (size_t)width;
    size_t q_extent = be->n_tokens == 0 ? 0 : (size_t)(be->n_tokens - 1) * q_stride + width;
    const float *qp = slm_cpu_ref_rows(be, q, be->n_tokens, width, q_stride, "attention", "q");
    float *op = qp ? slm_cpu_ref_f32(be, out, n, "attention", "out") : NULL;
    if (op == NULL)
        return;
    if (q.buf == out.buf && q.off < out.off + n * 4 && out.off < q.off + q_extent * 4) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "attention: q and out overlap");
        return;
    }
    size_t per = slm_cpu_attention_thread_bytes(kv->lay.padded_dim, kv->d.block_size);
    if (be->attn_scratch == NULL || be->attn_thread_bytes < per) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "attention: scratch was sized at begin_step before this KV pool existed");
        return;
    }
    /* begin_step checked every index attention follows (slm_cpu_kv_plan). */
    int64_t work = be->attn_pos * n_heads * hd * 2;
    if (be->n_tokens == 0)
        return;

    attn_job j = {
        .be = be,
        .kv = kv,
        .layer = layer,
        .q = qp,
        .q_stride = q_stride,
        .out = op,
        .n_heads = n_heads,
        .n_kv_heads = kv->d.n_kv_heads,
        .group = n_heads / kv->d.n_kv_heads,
        .hd = hd,
        .pd = kv->lay.padded_dim,
        .bs = kv->d.block_size,
        .scale = p->scale,
        .softcap = p->softcap,
        .window = p->window,
        .scratch = be->attn_scratch,
        .thread_bytes = be->attn_thread_bytes,
    };
    j.chunk = j.group < G ? j.group : G;
    int64_t base = (int64_t)be->n_tokens * j.n_kv_heads;
    for (;;) {
        j.n_chunks = (j.group + j.chunk - 1) / j.chunk;
        if (j.chunk == 1 || base * j.n_chunks >= 2 * (int64_t)be->n_threads)
            break;
        j.chunk = (j.chunk + 1) / 2;
    }
    j.n_items = base * j.n_chunks;
    atomic_init(&j.next, 0);
    slm_cpu_run(be, (size_t)work, attn_worker, &j);
}
