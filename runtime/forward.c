/*
 * forward.c — see forward.h. Activations live in one backend buffer carved
 * into named regions; shapes are (tokens, columns), f32, row-major. The
 * residual stream x is updated in place by the O and down matmuls' fused add.
 */
#include "forward.h"

#include <math.h>
#include <stdlib.h>

#include "status.h"

/* x, xn, qkv, attn, gu, ff, sel, logits */
#define N_REGIONS 8

struct slm_forward {
    slm_model *m;
    int max_tokens, max_logit_rows;
    slm_buf *bufs[N_REGIONS]; /* one per region: each must fit one device buffer */
    slm_ref x;      /* (T, n_embd) residual stream */
    slm_ref xn;     /* (T, n_embd) normed input of a matmul */
    slm_ref qkv;    /* (T, nq + 2 nkv) */
    slm_ref attn;   /* (T, nq) */
    slm_ref gu;     /* (T, 2 n_ff) */
    slm_ref ff;     /* (T, n_ff) */
    slm_ref sel;    /* (L, n_embd) rows that need logits */
    slm_ref logits; /* (L, n_vocab) */
};

/* Allocates the region of `floats` floats as buffer *n of f. */
static slm_status region(slm_forward *f, int *n, size_t floats, slm_ref *r)
{
    slm_backend *be = f->m->be;
    slm_status st = be->ops->buf_alloc(be, floats * sizeof(float), &f->bufs[*n]);
    *r = (slm_ref){f->bufs[(*n)++], 0};
    return st;
}

slm_status slm_forward_create(slm_model *m, int max_tokens, int max_logit_rows,
                              slm_forward **out)
{
    *out = NULL;
    if (max_tokens < 1 || max_logit_rows < 1 || max_logit_rows > max_tokens)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "forward: max_tokens %d / max_logit_rows %d", max_tokens,
                         max_logit_rows);
    slm_forward *f = calloc(1, sizeof *f);
    if (!f)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "forward: out of memory");
    const slm_hparams *hp = &m->hp;
    size_t T = (size_t)max_tokens, L = (size_t)max_logit_rows;
    size_t nq = (size_t)hp->n_head * hp->head_dim, nkv = (size_t)hp->n_head_kv * hp->head_dim;
    f->m = m;
    f->max_tokens = max_tokens;
    f->max_logit_rows = max_logit_rows;
    /* Separate buffers rather than one carved arena: GPU drivers bind at
     * most maxStorageBufferRange bytes at once (128 MiB on some), and the
     * logits of a 128k vocabulary alone can reach that. */
    int n = 0;
    slm_status st = region(f, &n, T * hp->n_embd, &f->x);
    if (!st)
        st = region(f, &n, T * hp->n_embd, &f->xn);
    if (!st)
        st = region(f, &n, T * (nq + 2 * nkv), &f->qkv);
    if (!st)
        st = region(f, &n, T * nq, &f->attn);
    if (!st)
        st = region(f, &n, T * 2 * (size_t)hp->n_ff, &f->gu);
    if (!st)
        st = region(f, &n, T * hp->n_ff, &f->ff);
    if (!st)
        st = region(f, &n, L * hp->n_embd, &f->sel);
    if (!st && (st = region(f, &n, L * hp->n_vocab, &f->logits)))
        st = slm_error(st, "forward: logits of %zu rows × %d vocabulary: %s", L, hp->n_vocab,
                       slm_last_error());
    if (st) {
        slm_forward_free(f);
        return st;
    }
    *out = f;
    return SLM_OK;
}

int slm_forward_max_logit_rows(const slm_forward *f) { return f->max_logit_rows; }

void slm_forward_free(slm_forward *f)
{
    if (!f)
        return;
    for (int i = 0; i < N_REGIONS; i++)
        f->m->be->ops->buf_free(f->m->be, f->bufs[i]);
    free(f);
}

static slm_ref at(slm_ref r, size_t floats) { return (slm_ref){r.buf, r.off + floats * sizeof(float)}; }

static const slm_ref none = {0};

/* q, k, v as (T, ·) views with one row stride: columns of one fused output, or
 * three dense regions of the qkv buffer when the weights could not be fused. */
static int qkv_matmul(slm_forward *f, const slm_layer *L, int T, slm_ref *q, slm_ref *k,
                      slm_ref *v)
{
    slm_backend *be = f->m->be;
    const slm_hparams *hp = &f->m->hp;
    size_t nq = (size_t)hp->n_head * hp->head_dim, nkv = (size_t)hp->n_head_kv * hp->head_dim;
    if (L->wqkv) {
        be->ops->matmul(be, L->wqkv, f->xn, T, none, f->qkv);
        *q = f->qkv, *k = at(f->qkv, nq), *v = at(f->qkv, nq + nkv);
        return (int)(nq + 2 * nkv);
    }
    /* NOTE: unfused, q/k/v are dense and share the stride only when nq == nkv;
     * otherwise each gets its own stride, which the ops below take per call. */
    *q = f->qkv, *k = at(f->qkv, T * nq), *v = at(f->qkv, T * (nq + nkv));
    be->ops->matmul(be, L->wq, f->xn, T, none, *q);
    be->ops->matmul(be, L->wk, f->xn, T, none, *k);
    be->ops->matmul(be, L->wv, f->xn, T, none, *v);
    return 0; /* dense: each view's stride is its own width */
}

static void attention_block(slm_forward *f, slm_kv *kv, int l, int T)
{
    slm_backend *be = f->m->be;
    const slm_hparams *hp = &f->m->hp;
    const slm_layer *L = &f->m->layers[l];
    int nq = hp->n_head * hp->head_dim, nkv = hp->n_head_kv * hp->head_dim;
    be->ops->rmsnorm(be, f->x, none, L->attn_norm, hp->norm_eps, T, hp->n_embd, f->xn);
    slm_ref q, k, v;
    int stride = qkv_matmul(f, L, T, &q, &k, &v);
    int qs = stride ? stride : nq, ks = stride ? stride : nkv;
    be->ops->rope(be, q, qs, hp->n_head, hp->head_dim, &hp->rope);
    be->ops->rope(be, k, ks, hp->n_head_kv, hp->head_dim, &hp->rope);
    be->ops->kv_store(be, kv, l, k, ks, v, ks);
    be->ops->attention(be, kv, l, q, qs, hp->n_head, 1.0f / sqrtf((float)hp->head_dim), f->attn);
    be->ops->matmul(be, L->wo, f->attn, T, f->x, f->x);
}

static void ffn_block(slm_forward *f, int l, int T)
{
    slm_backend *be = f->m->be;
    const slm_hparams *hp = &f->m->hp;
    const slm_layer *L = &f->m->layers[l];
    int ff = hp->n_ff;
    be->ops->rmsnorm(be, f->x, none, L->ffn_norm, hp->norm_eps, T, hp->n_embd, f->xn);
    if (L->w_gate_up) {
        be->ops->matmul(be, L->w_gate_up, f->xn, T, none, f->gu);
        be->ops->swiglu(be, f->gu, at(f->gu, (size_t)ff), 2 * ff, T, ff, f->ff);
    } else {
        slm_ref g = f->gu, u = at(f->gu, (size_t)T * ff);
        be->ops->matmul(be, L->w_gate, f->xn, T, none, g);
        be->ops->matmul(be, L->w_up, f->xn, T, none, u);
        be->ops->swiglu(be, g, u, ff, T, ff, f->ff);
    }
    be->ops->matmul(be, L->w_down, f->ff, T, f->x, f->x);
}

slm_status slm_forward_run(slm_forward *f, slm_kv *kv, const slm_step *step, float *logits)
{
    slm_model *m = f->m;
    slm_backend *be = m->be;
    const slm_hparams *hp = &m->hp;
    int T = step->n_tokens, Lr = step->n_logit_rows;
    if (T < 1 || T > f->max_tokens || Lr < 0 || Lr > f->max_logit_rows)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "forward: step of %d tokens / %d logit rows exceeds %d / %d", T, Lr,
                         f->max_tokens, f->max_logit_rows);
    slm_status st = be->ops->begin_step(be, step);
    if (st)
        return st;
    be->ops->embed(be, m->tok_embd, f->x);
    for (int l = 0; l < hp->n_layer; l++) {
        attention_block(f, kv, l, T);
        ffn_block(f, l, T);
    }
    if (Lr > 0) {
        be->ops->get_rows(be, f->x, hp->n_embd, f->sel);
        be->ops->rmsnorm(be, f->sel, none, m->output_norm, hp->norm_eps, Lr, hp->n_embd,
                         f->sel);
        be->ops->matmul(be, m->output, f->sel, Lr, none, f->logits);
    }
    st = be->ops->end_step(be);
    if (st || Lr == 0)
        return st;
    return be->ops->download(be, logits, f->logits, (size_t)Lr * hp->n_vocab * sizeof(float));
}
