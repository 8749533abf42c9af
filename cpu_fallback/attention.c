/*
 * attention.c — fused paged attention on the CPU:
 *   out(n, n_heads·head_dim) = softmax(cap(scale · q·Kᵀ)) · V
 * for each token over positions 0..pos of its own sequence (the last
 * `window` of them for a sliding-window layer), K/V read from the paged
 * pool (kv.c) through the sequence's block table; cap is the optional
 * logit soft-cap c·tanh(s/c) (Gemma 2).
 *
 * Work item = (tile of consecutive tokens, KV head, chunk of that KV head's
 * query heads). A tile's rows — its tokens × the chunk's heads, at most
 * SLM_CPU_ATTN_ROWS — walk the sequence's blocks together: each block's K
 * and V rows are decoded to f32 once per tile (not once per token, which
 * cost prefill more than the arithmetic did), then the level's kernels
 * (cpu_vec.h) compute every row's scores against the block and add the
 * block's V rows with weights exp(s − m), an online softmax: the running
 * max m and sum l of each row are updated per block, rescaling the row's
 * accumulator by exp(m_old − m_new) when the max grows. Nothing of size
 * O(sequence length) is stored. A row skips the blocks outside its own
 * positions; inside a block, positions outside its range get weight 0.
 *
 * Chunks hold at most SLM_CPU_ATTN_GROUP_MAX heads; when there are fewer
 * items than twice the threads (a single decode token, a short prompt),
 * chunks and then tiles shrink so every thread gets work. Items are taken
 * from an atomic counter, latest tiles first: tokens late in a prompt cost
 * the most, and starting them first leaves the cheap ones to fill the end.
 *
 * Each output element is reduced by one thread in an order fixed by its own
 * token's positions, so results do not depend on the thread count, on the
 * tiling or on the other tokens of the step.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_vec.h"

#define G SLM_CPU_ATTN_GROUP_MAX
#define R SLM_CPU_ATTN_ROWS

static int round8(int n) { return (n + 7) / 8 * 8; }
static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

/* Per-thread floats, with hdp = pd and bsp = bs rounded up to 8: q and acc
 * (R·hdp each), the block's kT and v (hdp·bsp each), one decoded row
 * (hdp), scores (R·bsp), running max and sum (R each). */
size_t slm_cpu_attention_thread_bytes(int pd, int bs)
{
    size_t hdp = (size_t)round8(pd), bsp = (size_t)round8(bs);
    size_t floats = 2 * R * hdp + 2 * hdp * bsp + hdp + R * bsp + 2 * R;
    return round64(floats * sizeof(float));
}

typedef struct attn_job {
    const slm_cpu_backend *be;
    const slm_vec_kernels *k;
    const slm_kv *kv;
    int layer;
    const float *q; /* n rows of n_heads·hd, q_stride floats apart */
    int64_t q_stride;
    float *out;     /* (n, n_heads·hd), dense */
    int n_heads, n_kv_heads, group, chunk, n_chunks, hd, hdp, bs, bsp;
    int tile;       /* tokens per tile */
    float scale, softcap; /* softcap 0: none */
    int window;           /* 0: every earlier position */
    int64_t n_tiles, n_items;
    atomic_llong next;
    uint8_t *scratch;
    size_t thread_bytes;
} attn_job;

/* The thread's scratch, carved as slm_cpu_attention_thread_bytes says. */
typedef struct tile_ws {
    float *q, *acc, *kT, *v, *row, *s, *m, *l;
} tile_ws;

static tile_ws carve(const attn_job *j, int ith)
{
    float *f = (float *)(j->scratch + (size_t)ith * j->thread_bytes);
    tile_ws w;
    w.q = f, f += (size_t)R * j->hdp;
    w.acc = f, f += (size_t)R * j->hdp;
    w.kT = f, f += (size_t)j->hdp * j->bsp;
    w.v = f, f += (size_t)j->bsp * j->hdp;
    w.row = f, f += j->hdp;
    w.s = f, f += (size_t)R * j->bsp;
    w.m = f, f += R;
    w.l = f;
    return w;
}

/* Positions [*first, *n_pos) that token t attends. */
static void span(const attn_job *j, int t, int *first, int *n_pos)
{
    *n_pos = j->be->positions[t] + 1;
    *first = j->window > 0 && *n_pos > j->window ? *n_pos - j->window : 0;
}

/* Decodes rows lo..hi-1 of one block of KV head kvh: K transposed into
 * kT[d·bsp + jj], V into v[jj·hdp + d]; the other columns of kT, V rows
 * before lo and the padding of V rows are zeros, so the kernels read only
 * finite values (a weight 0 times scratch left from before could be NaN). */
static void load_block(const attn_job *j, tile_ws *w, int id, int kvh, int lo, int hi)
{
    const slm_kv *kv = j->kv;
    int hd = j->hd, hdp = j->hdp, bsp = j->bsp;
    memset(w->v, 0, (size_t)lo * hdp * sizeof(float));
    if (lo > 0 || hi < bsp) /* a full block (most of them) leaves none */
        for (int d = 0; d < hd; d++) {
            float *kd = w->kT + (size_t)d * bsp;
            for (int jj = 0; jj < bsp; jj++)
                if (jj < lo || jj >= hi)
                    kd[jj] = 0;
        }
    for (int jj = lo; jj < hi; jj++) {
        for (int which = 0; which < 2; which++) {
            const uint8_t *src = slm_cpu_kv_row(kv, which, j->layer, id, kvh, jj);
            float *dst = which ? w->v + (size_t)jj * hdp : w->row;
            if (kv->d.type == SLM_TYPE_F16)
                j->k->f16_row(src, dst, hd);
            else
                slm_cpu_kv_row_to_f32(kv, src, dst);
            for (int d = hd; d < hdp; d++)
                dst[d] = 0;
        }
        for (int d = 0; d < hd; d++)
            w->kT[(size_t)d * bsp + jj] = w->row[d];
    }
}

/* Softmax step of one row over its positions [lo, hi) of a block: turns
 * s[0..nk) into weights (0 outside [lo, hi)) and updates m, l and acc. */
static void softmax_row(const attn_job *j, float *s, int lo, int hi, int nk, float *m, float *l,
                        float *acc)
{
    float mx = *m;
    for (int jj = lo; jj < hi; jj++) {
        if (j->softcap > 0)
            s[jj] = j->softcap * tanhf(s[jj] / j->softcap);
        mx = s[jj] > mx ? s[jj] : mx;
    }
    if (mx > *m) {
        /* the running max grew: earlier weights shrink by exp(Δ) */
        float corr = expf(*m - mx);
        *l *= corr;
        for (int i = 0; i < j->hdp; i++)
            acc[i] *= corr;
        *m = mx;
    }
    float sum = 0;
    for (int jj = 0; jj < nk; jj++) {
        if (jj < lo || jj >= hi) {
            s[jj] = 0;
            continue;
        }
        s[jj] = expf(s[jj] - mx);
        sum += s[jj];
    }
    *l += sum;
}

/* Tokens t0..t1-1 (one sequence) × query heads h0..h0+nh-1 of KV head kvh. */
static void attend_tile(const attn_job *j, tile_ws *w, int t0, int t1, int kvh, int h0, int nh)
{
    const slm_cpu_backend *be = j->be;
    int hd = j->hd, hdp = j->hdp, bs = j->bs, bsp = j->bsp, nq = (t1 - t0) * nh;
    int lo_all = INT32_MAX, hi_all = 0;
    for (int t = t0; t < t1; t++) {
        int first, n_pos;
        span(j, t, &first, &n_pos);
        lo_all = first < lo_all ? first : lo_all;
        hi_all = n_pos > hi_all ? n_pos : hi_all;
        for (int h = 0; h < nh; h++) {
            int r = (t - t0) * nh + h;
            const float *qh = j->q + t * j->q_stride + (int64_t)(h0 + h) * hd;
            for (int i = 0; i < hdp; i++) {
                w->q[r * hdp + i] = i < hd ? qh[i] * j->scale : 0;
                w->acc[r * hdp + i] = 0;
            }
            w->m[r] = -INFINITY;
            w->l[r] = 0;
        }
    }
    const int32_t *table = be->block_tables + be->bt_start[be->seq_of_token[t0]];
    /* Blocks wholly before every row's window are never read. */
    for (int b = lo_all / bs; b * bs < hi_all; b++) {
        int base = b * bs;
        int lo = lo_all > base ? lo_all - base : 0;
        int nk = hi_all - base < bs ? hi_all - base : bs;
        load_block(j, w, table[b], kvh, lo, nk);
        j->k->scores(w->q, nq, hd, hdp, w->kT, bsp, w->s);
        for (int t = t0; t < t1; t++) {
            int first, n_pos;
            span(j, t, &first, &n_pos);
            int tlo = first > base ? first - base : 0;
            int thi = n_pos - base < nk ? n_pos - base : nk;
            for (int h = 0; h < nh; h++) {
                int r = (t - t0) * nh + h;
                float *s = w->s + (size_t)r * bsp;
                if (tlo >= thi) /* none of this row's positions: weight 0 */
                    memset(s, 0, (size_t)nk * sizeof(float));
                else
                    softmax_row(j, s, tlo, thi, nk, &w->m[r], &w->l[r], w->acc + (size_t)r * hdp);
            }
        }
        j->k->accum(w->acc, nq, hdp, w->s, bsp, nk, w->v);
    }
    for (int t = t0; t < t1; t++)
        for (int h = 0; h < nh; h++) {
            int r = (t - t0) * nh + h;
            float *o = j->out + ((size_t)t * j->n_heads + h0 + h) * hd;
            float inv = 1.0f / w->l[r];
            for (int i = 0; i < hd; i++)
                o[i] = w->acc[r * hdp + i] * inv;
        }
}

static void attn_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    attn_job *j = ctx;
    tile_ws w = carve(j, ith);
    const slm_cpu_backend *be = j->be;
    for (;;) {
        int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items)
            return;
        it = j->n_items - 1 - it; /* latest tiles first */
        int c = (int)(it % j->n_chunks);
        int64_t r = it / j->n_chunks;
        int kvh = (int)(r % j->n_kv_heads);
        int tile = (int)(r / j->n_kv_heads);
        int first = c * j->chunk;
        int nh = j->group - first < j->chunk ? j->group - first : j->chunk;
        int t_end = (tile + 1) * j->tile < be->n_tokens ? (tile + 1) * j->tile : be->n_tokens;
        /* a tile spans one sequence: split it where the sequence changes */
        for (int t0 = tile * j->tile; t0 < t_end;) {
            int t1 = t0 + 1;
            while (t1 < t_end && be->seq_of_token[t1] == be->seq_of_token[t0])
                t1++;
            attend_tile(j, &w, t0, t1, kvh, kvh * j->group + first, nh);
            t0 = t1;
        }
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
        .k = slm_vec_for(be->simd),
        .kv = kv,
        .layer = layer,
        .q = qp,
        .q_stride = q_stride,
        .out = op,
        .n_heads = n_heads,
        .n_kv_heads = kv->d.n_kv_heads,
        .group = n_heads / kv->d.n_kv_heads,
        .hd = hd,
        .hdp = round8(kv->lay.padded_dim),
        .bs = kv->d.block_size,
        .bsp = round8(kv->d.block_size),
        .scale = p->scale,
        .softcap = p->softcap,
        .window = p->window,
        .scratch = be->attn_scratch,
        .thread_bytes = be->attn_thread_bytes,
    };
    /* Split heads first, then tokens, until every thread has two items. */
    int64_t want = 2 * (int64_t)be->n_threads;
    j.chunk = j.group < G ? j.group : G;
    int64_t base = (int64_t)be->n_tokens * j.n_kv_heads;
    for (;;) {
        j.n_chunks = (j.group + j.chunk - 1) / j.chunk;
        if (j.chunk == 1 || base * j.n_chunks >= want)
            break;
        j.chunk = (j.chunk + 1) / 2;
    }
    j.tile = R / j.chunk;
    for (;;) {
        j.n_tiles = (be->n_tokens + j.tile - 1) / j.tile;
        j.n_items = j.n_tiles * j.n_kv_heads * j.n_chunks;
        if (j.tile == 1 || j.n_items >= want)
            break;
        j.tile = (j.tile + 1) / 2;
    }
    atomic_init(&j.next, 0);
    slm_cpu_run(be, (size_t)work, attn_worker, &j);
}
