/*
 * forward.c — see forward.h. Activations live in backend buffers, one per
 * named region; shapes are (tokens, columns), f32, row-major. The residual
 * stream x is updated in place by the O and down matmuls' fused add — or,
 * for families that norm a block's output first (Gemma's post-norms), by
 * the next norm's fused add of that output (`pend`), so no extra pass over
 * x is spent on it. What differs between families comes from the model's
 * slm_arch description (arch.h) and the file's own keys and tensors.
 */
#include "forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "status.h"

/* x, xn, xn2, qkv, attn, gu, ff, sel, logits */
#define N_REGIONS 9

struct slm_forward {
    slm_model *m;
    slm_kv *kv;
    int max_tokens, max_logit_rows;
    slm_status pending; /* a failure before or at submit, for slm_forward_wait */
    char pending_msg[512];
    bool submitted;
    bool keep_hidden; /* the next submit norms every row into xn */
    int hidden_rows;  /* rows of xn the last step left normed (0: none) */
    slm_buf *bufs[N_REGIONS]; /* one per region: each must fit one device buffer */
    size_t bytes[N_REGIONS];
    slm_ref x;      /* (T, n_embd) residual stream */
    slm_ref xn;     /* (T, n_embd) normed input of a matmul; a post-normed block output */
    slm_ref xn2;    /* (T, n_embd) the FFN's normed input in a parallel layer */
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
    f->bytes[*n] = floats * sizeof(float);
    slm_status st = be->ops->buf_alloc(be, f->bytes[*n], &f->bufs[*n]);
    *r = (slm_ref){f->bufs[(*n)++], 0};
    return st;
}

/* The activations' bytes count towards the step workspace, then the
 * backend's own scratch for the largest step. */
static slm_status reserve(slm_forward *f, size_t *workspace)
{
    size_t bytes = 0;
    for (int i = 0; i < N_REGIONS; i++)
        bytes += f->bytes[i];
    slm_backend *be = f->m->be;
    /* NOTE: the backend adds everything it holds for steps this size, so
     * a second call (with the pool) reports the whole again. */
    slm_step_limits lim = {f->max_tokens, f->max_tokens, f->max_logit_rows, f->m->hp.n_head,
                           f->m->hp.n_vocab, f->kv};
    slm_status st = be->ops->reserve(be, &lim, &bytes);
    if (workspace)
        *workspace = bytes;
    return st;
}

slm_status slm_forward_create(slm_model *m, slm_kv *kv, int max_tokens, int max_logit_rows,
                              slm_forward **out, size_t *workspace)
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
    f->kv = kv;
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
        st = region(f, &n, hp->parallel ? T * hp->n_embd : 1, &f->xn2);
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
    if (!st)
        st = reserve(f, workspace);
    if (st) {
        slm_forward_free(f);
        return st;
    }
    *out = f;
    return SLM_OK;
}

int slm_forward_max_logit_rows(const slm_forward *f) { return f->max_logit_rows; }

slm_status slm_forward_set_kv(slm_forward *f, slm_kv *kv, size_t *workspace)
{
    f->kv = kv;
    return reserve(f, workspace);
}

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

/* y = norm(x (+= add first when add.buf)) with the family's norm. */
static void norm(slm_forward *f, slm_ref x, slm_ref add, slm_norm_w w, int rows, slm_ref y)
{
    slm_backend *be = f->m->be;
    const slm_hparams *hp = &f->m->hp;
    if (hp->ad->norm == SLM_NORM_LAYER)
        be->ops->layernorm(be, x, add, w.w, w.b, hp->norm_eps, rows, hp->n_embd, y);
    else
        be->ops->rmsnorm(be, x, add, w.w, hp->norm_eps, rows, hp->n_embd, y);
}

/* q, k, v as (T, ·) views with one row stride: columns of one fused output, or
 * three dense regions of the qkv buffer when the weights could not be fused.
 * Biases are added here, on whichever layout. */
static int qkv_matmul(slm_forward *f, const slm_layer *L, int T, slm_ref *q, slm_ref *k,
                      slm_ref *v)
{
    slm_backend *be = f->m->be;
    const slm_hparams *hp = &f->m->hp;
    size_t nq = (size_t)hp->n_head * hp->head_dim, nkv = (size_t)hp->n_head_kv * hp->head_dim;
    int stride = 0; /* dense: each view's stride is its own width */
    if (L->wqkv) {
        stride = (int)(nq + 2 * nkv);
        be->ops->matmul(be, L->wqkv, f->xn, T, none, f->qkv);
        *q = f->qkv, *k = at(f->qkv, nq), *v = at(f->qkv, nq + nkv);
        if (L->bqkv)
            be->ops->bias(be, f->qkv, stride, T, L->bqkv);
    } else {
        /* NOTE: unfused, q/k/v are dense and share the stride only when nq ==
         * nkv; otherwise each gets its own stride, which the ops below take
         * per call. */
        *q = f->qkv, *k = at(f->qkv, T * nq), *v = at(f->qkv, T * (nq + nkv));
        be->ops->matmul(be, L->wq, f->xn, T, none, *q);
        be->ops->matmul(be, L->wk, f->xn, T, none, *k);
        be->ops->matmul(be, L->wv, f->xn, T, none, *v);
    }
    if (L->bq)
        be->ops->bias(be, *q, stride ? stride : (int)nq, T, L->bq);
    if (L->bk)
        be->ops->bias(be, *k, stride ? stride : (int)nkv, T, L->bk);
    if (L->bv)
        be->ops->bias(be, *v, stride ? stride : (int)nkv, T, L->bv);
    return stride;
}

/* A block's output projection y = W·in joins the residual stream: added to
 * x by the matmul's fused add (then its bias, if any), or, with a
 * post-norm, normed into f->xn and left for the next norm's fused add
 * (*pend) — so a post-norm costs no extra pass over x. */
static void block_out(slm_forward *f, const slm_weight *w, slm_ref in, const slm_weight *bias,
                      const slm_weight *post_norm, int T, slm_ref *pend)
{
    slm_backend *be = f->m->be;
    const slm_hparams *hp = &f->m->hp;
    if (post_norm) {
        be->ops->matmul(be, w, in, T, none, f->xn);
        be->ops->rmsnorm(be, f->xn, none, post_norm, hp->norm_eps, T, hp->n_embd, f->xn);
        *pend = f->xn;
        return;
    }
    be->ops->matmul(be, w, in, T, f->x, f->x);
    if (bias)
        be->ops->bias(be, f->x, hp->n_embd, T, bias);
}

/* The attention half of layer l on the normed input f->xn; its output
 * joins x through block_out. */
static void attention_block(slm_forward *f, int l, int T, slm_ref *pend)
{
    slm_backend *be = f->m->be;
    const slm_hparams *hp = &f->m->hp;
    const slm_layer *L = &f->m->layers[l];
    int nq = hp->n_head * hp->head_dim, nkv = hp->n_head_kv * hp->head_dim;
    slm_ref q, k, v;
    int stride = qkv_matmul(f, L, T, &q, &k, &v);
    int qs = stride ? stride : nq, ks = stride ? stride : nkv;
    if (L->q_norm) { /* per head: q and k are dense here (not fused at load) */
        be->ops->rmsnorm(be, q, none, L->q_norm, hp->norm_eps, T * hp->n_head, hp->head_dim, q);
        be->ops->rmsnorm(be, k, none, L->k_norm, hp->norm_eps, T * hp->n_head_kv, hp->head_dim,
                         k);
    }
    const slm_rope *rope = L->swa && f->m->rope_swa ? f->m->rope_swa : f->m->rope;
    be->ops->rope(be, q, qs, hp->n_head, hp->head_dim, rope);
    be->ops->rope(be, k, ks, hp->n_head_kv, hp->head_dim, rope);
    be->ops->kv_store(be, f->kv, l, k, ks, v, ks);
    slm_attn_params ap = {.scale = 1.0f / sqrtf((float)hp->head_dim),
                          .softcap = hp->attn_softcap,
                          .window = L->swa ? hp->swa_window : 0};
    be->ops->attention(be, f->kv, l, q, qs, hp->n_head, &ap, f->attn);
    block_out(f, L->wo, f->attn, L->bo, L->post_attn_norm, T, pend);
}

/* ff(T, n_ff) = the FFN's activation of its normed input xin. */
static void ffn_activation(slm_forward *f, const slm_layer *L, slm_ref xin, int T)
{
    slm_backend *be = f->m->be;
    const slm_arch *ad = f->m->hp.ad;
    int ff = f->m->hp.n_ff;
    if (ad->ffn == SLM_FFN_GELU) {
        be->ops->matmul(be, L->w_up, xin, T, none, f->ff);
        if (L->b_up)
            be->ops->bias(be, f->ff, ff, T, L->b_up);
        be->ops->gelu(be, f->ff, (size_t)T * ff, f->ff);
        return;
    }
    void (*glu)(slm_backend *, slm_ref, slm_ref, int, int, int, slm_ref) =
        ad->ffn == SLM_FFN_GEGLU ? be->ops->geglu : be->ops->swiglu;
    if (L->w_gate_up) {
        be->ops->matmul(be, L->w_gate_up, xin, T, none, f->gu);
        if (L->b_up)
            be->ops->bias(be, f->gu, 2 * ff, T, L->b_up);
        glu(be, f->gu, at(f->gu, (size_t)ff), 2 * ff, T, ff, f->ff);
    } else {
        slm_ref g = f->gu, u = at(f->gu, (size_t)T * ff);
        be->ops->matmul(be, L->w_gate, xin, T, none, g);
        be->ops->matmul(be, L->w_up, xin, T, none, u);
        glu(be, g, u, ff, T, ff, f->ff);
    }
}

/* The FFN half of layer l on xin; its output joins x through block_out. */
static void ffn_block(slm_forward *f, int l, slm_ref xin, int T, slm_ref *pend)
{
    const slm_layer *L = &f->m->layers[l];
    ffn_activation(f, L, xin, T);
    block_out(f, L->w_down, f->ff, L->b_down, L->post_ffn_norm, T, pend);
}

/* One layer. Sequential: x += attn(norm₁ x); x += ffn(norm₂ x). Parallel
 * (GPT-NeoX): both read the same x, x += attn(norm₁ x) + ffn(norm₂ x) —
 * norm₂ is taken before the attention changes x, from norm₁'s output when
 * the layer has no FFN norm of its own. */
static void layer(slm_forward *f, int l, int T, slm_ref *pend)
{
    const slm_layer *L = &f->m->layers[l];
    norm(f, f->x, *pend, L->attn_norm, T, f->xn);
    *pend = none;
    if (f->m->hp.parallel) {
        slm_ref xin = f->xn;
        if (L->ffn_norm.w) {
            norm(f, f->x, none, L->ffn_norm, T, f->xn2);
            xin = f->xn2;
        }
        /* NOTE: xn (the FFN's input when it has no norm) survives the
         * attention: only post-norms write it, and no family has both. */
        attention_block(f, l, T, pend);
        ffn_block(f, l, xin, T, pend);
        return;
    }
    attention_block(f, l, T, pend);
    norm(f, f->x, *pend, L->ffn_norm, T, f->xn);
    *pend = none;
    ffn_block(f, l, f->xn, T, pend);
}

/* The ops of one step, in order, for a step the backend has begun. */
static void record(slm_forward *f, int T, int Lr, const slm_kv_copy *copies, int n_copies)
{
    slm_model *m = f->m;
    slm_backend *be = m->be;
    const slm_hparams *hp = &m->hp;
    if (n_copies > 0)
        be->ops->kv_copy(be, f->kv, copies, n_copies);
    be->ops->embed(be, m->tok_embd, f->x);
    if (hp->ad->embed_scale)
        be->ops->scale(be, f->x, sqrtf((float)hp->n_embd), (size_t)T * hp->n_embd);
    slm_ref pend = none;
    for (int l = 0; l < hp->n_layer; l++)
        layer(f, l, T, &pend);
    if (pend.buf)
        be->ops->add(be, f->x, pend, (size_t)T * hp->n_embd, f->x);
    /* NOTE: xn is free once the layers are done (pend, which may alias
     * it, was just added), and the logits path below reads only x. */
    if (f->hidden_rows)
        norm(f, f->x, none, m->output_norm, T, f->xn);
    if (Lr > 0) {
        be->ops->get_rows(be, f->x, hp->n_embd, f->sel);
        norm(f, f->sel, none, m->output_norm, Lr, f->sel);
        be->ops->matmul(be, m->output, f->sel, Lr, none, f->logits);
        if (hp->final_softcap > 0)
            be->ops->softcap(be, f->logits, (size_t)Lr * hp->n_vocab, hp->final_softcap);
        be->ops->logits(be, f->logits, hp->n_vocab);
    }
}

/* Keeps a failure (and its message) for slm_forward_wait. */
static slm_status remember(slm_forward *f, slm_status st)
{
    f->pending = st;
    if (st)
        snprintf(f->pending_msg, sizeof f->pending_msg, "%s", slm_last_error());
    return st;
}

slm_status slm_forward_submit(slm_forward *f, const slm_step *step, float *logits,
                              const slm_kv_copy *copies, int n_copies)
{
    slm_backend *be = f->m->be;
    int T = step->n_tokens, Lr = step->n_logit_rows;
    f->submitted = false;
    f->pending = SLM_OK;
    f->hidden_rows = f->keep_hidden && T >= 1 && T <= f->max_tokens ? T : 0;
    f->keep_hidden = false;
    if (T < 1 || T > f->max_tokens || Lr < 0 || Lr > f->max_logit_rows)
        return remember(f, slm_error(SLM_STATUS_INVALID_ARGUMENT,
                                     "forward: step of %d tokens / %d logit rows exceeds %d / %d",
                                     T, Lr, f->max_tokens, f->max_logit_rows));
    if (n_copies > 0 && !be->ops->kv_copy)
        return remember(f, slm_error(SLM_STATUS_UNSUPPORTED,
                                     "forward: the step copies KV blocks, which the %s backend "
                                     "does not offer", be->ops->name));
    slm_step s = *step;
    s.kv = f->kv;
    s.logits = logits;
    s.n_heads = f->m->hp.n_head;
    f->submitted = true; /* begin_step opens the step even when it fails: wait closes it */
    slm_status st = be->ops->begin_step(be, &s);
    if (!st)
        record(f, T, Lr, copies, n_copies);
    slm_status sst = be->ops->submit(be);
    return remember(f, st ? st : sst);
}

slm_status slm_forward_wait(slm_forward *f)
{
    if (!f->submitted)
        return f->pending ? slm_error(f->pending, "%s", f->pending_msg)
                          : slm_error(SLM_STATUS_INVALID_ARGUMENT, "forward: nothing submitted");
    f->submitted = false;
    slm_backend *be = f->m->be;
    slm_status st = be->ops->wait(be);
    if (st || !f->pending)
        return st;
    return slm_error(f->pending, "%s", f->pending_msg);
}

void slm_forward_keep_hidden(slm_forward *f) { f->keep_hidden = true; }

slm_status slm_forward_hidden(slm_forward *f, int row0, int n, float *out)
{
    if (row0 < 0 || n < 1 || row0 + n > f->hidden_rows)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "forward: hidden rows %d..%d asked, the last step kept %d", row0,
                         row0 + n, f->hidden_rows);
    size_t d = (size_t)f->m->hp.n_embd;
    slm_backend *be = f->m->be;
    return be->ops->download(be, out, at(f->xn, (size_t)row0 * d), (size_t)n * d * sizeof(float));
}

slm_status slm_forward_run(slm_forward *f, const slm_step *step, float *logits)
{
    slm_forward_submit(f, step, logits, NULL, 0);
    return slm_forward_wait(f);
}
