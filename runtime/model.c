/*
 * model.c — loading a GGUF of any family in runtime/arch.c onto a backend
 * (see model.h). Reading order: hyperparameters from metadata (the family's
 * own keys), then each tensor checked against the shape those imply, then
 * uploaded. Every failure names the key or tensor at fault; partial loads
 * are undone by slm_model_free.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "tokenizer.h"

static slm_status arch_int(const slm_gguf *g, const char *arch, const char *suffix,
                           bool required, int64_t dflt, int64_t lo, int64_t hi, int *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    slm_status st = slm_gguf_get_int_at(g, key, 0, &v);
    if (st == SLM_STATUS_NOT_FOUND && !required)
        v = dflt;
    else if (st)
        return st;
    if (v < lo || v > hi)
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s = %lld is outside %lld..%lld", key,
                         (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return SLM_OK;
}

static slm_status arch_float(const slm_gguf *g, const char *arch, const char *suffix,
                             bool required, double dflt, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v;
    slm_status st = slm_gguf_get_float(g, key, &v);
    if (st == SLM_STATUS_NOT_FOUND && !required)
        v = dflt;
    else if (st)
        return st;
    if (!isfinite(v))
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s is not finite", key);
    *out = (float)v;
    return SLM_OK;
}

/* Per-layer values stored as arrays must be equal in every layer: slm's
 * forward pass assumes uniform layers. */
static slm_status check_uniform(const slm_gguf *g, const char *arch, const char *suffix,
                                int n_layer, int value)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    for (int l = 1; l < n_layer; l++) {
        int64_t v;
        if (slm_gguf_get_int_at(g, key, (uint64_t)l, &v) != SLM_OK)
            return SLM_OK; /* absent or scalar */
        if (v != value)
            return slm_error(SLM_STATUS_UNSUPPORTED,
                             "model: %s differs between layers (%d in layer 0, %lld in layer %d)",
                             key, value, (long long)v, l);
    }
    return SLM_OK;
}

static slm_status read_rope(const slm_gguf *g, slm_hparams *hp)
{
    const char *a = hp->arch;
    slm_status st;
    if ((st = arch_int(g, a, "rope.dimension_count", false, hp->head_dim, 2, hp->head_dim,
                       &hp->rope.n_rot)))
        return st;
    if (hp->rope.n_rot % 2)
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s.rope.dimension_count %d is odd", a,
                         hp->rope.n_rot);
    if ((st = arch_float(g, a, "rope.freq_base", false, 10000.0, &hp->rope.freq_base)))
        return st;
    if (!(hp->rope.freq_base > 0))
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s.rope.freq_base %g must be > 0", a,
                         hp->rope.freq_base);
    char key[128], type[32] = "linear";
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    st = slm_gguf_get_str_copy(g, key, type, sizeof type);
    if (st && st != SLM_STATUS_NOT_FOUND)
        return st;
    float factor = 0;
    if ((st = arch_float(g, a, "rope.scaling.factor", false, 0.0, &factor)))
        return st;
    if (factor == 0 && (st = arch_float(g, a, "rope.scale_linear", false, 0.0, &factor)))
        return st;
    hp->rope.freq_scale = 1.0f;
    if (strcmp(type, "none") != 0 && factor != 0 && factor != 1) {
        if (strcmp(type, "linear") != 0)
            return slm_error(SLM_STATUS_UNSUPPORTED,
                             "model: rope scaling type '%s' is not supported (linear and "
                             "Llama-3 rope_freqs are)",
                             type);
        if (!(factor > 0))
            return slm_error(SLM_STATUS_BAD_FORMAT, "model: rope scaling factor %g", factor);
        hp->rope.freq_scale = 1.0f / factor;
    }
    hp->rope.mode = hp->ad->rope;
    hp->rope_swa = hp->rope;
    if (hp->ad->swa_rope_base) {
        /* Gemma 3's local layers: their own base, no scaling */
        if ((st = arch_float(g, a, "rope.freq_base_swa", false, 10000.0,
                             &hp->rope_swa.freq_base)))
            return st;
        if (!(hp->rope_swa.freq_base > 0))
            return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s.rope.freq_base_swa %g must be > 0",
                             a, hp->rope_swa.freq_base);
        hp->rope_swa.freq_scale = 1.0f;
    }
    return SLM_OK;
}

/* The sliding window, the soft-caps and the residual layout: keys each
 * family may carry. */
static slm_status read_extras(const slm_gguf *g, slm_hparams *hp)
{
    const char *a = hp->arch;
    slm_status st;
    if ((st = arch_int(g, a, "attention.sliding_window", false, 0, 0, 1 << 24, &hp->swa_window)))
        return st;
    if (hp->ad->softcaps &&
        ((st = arch_float(g, a, "attn_logit_softcapping", false, 0.0, &hp->attn_softcap)) ||
         (st = arch_float(g, a, "final_logit_softcapping", false, 0.0, &hp->final_softcap))))
        return st;
    if (hp->attn_softcap < 0 || hp->final_softcap < 0)
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s soft-caps %g / %g must be >= 0", a,
                         hp->attn_softcap, hp->final_softcap);
    hp->parallel = hp->ad->parallel;
    if (hp->parallel) {
        char key[128];
        snprintf(key, sizeof key, "%s.use_parallel_residual", a);
        bool v;
        st = slm_gguf_get_bool(g, key, &v);
        if (st == SLM_OK)
            hp->parallel = v;
        else if (st != SLM_STATUS_NOT_FOUND)
            return st;
    }
    return SLM_OK;
}

slm_status slm_hparams_read(const slm_gguf *g, slm_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    slm_status st = slm_gguf_get_str_copy(g, "general.architecture", hp->arch, sizeof hp->arch);
    if (st)
        return st;
    hp->ad = slm_arch_find(hp->arch);
    if (!hp->ad)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "model: architecture '%s' is not supported yet (supported: %s)",
                         hp->arch, slm_arch_list());
    const char *a = hp->arch;
    const int big = 1 << 24;
    if ((st = arch_int(g, a, "context_length", true, 0, 1, big, &hp->n_ctx_train)) ||
        (st = arch_int(g, a, "embedding_length", true, 0, 1, 1 << 16, &hp->n_embd)) ||
        (st = arch_int(g, a, "block_count", true, 0, 1, 1024, &hp->n_layer)) ||
        (st = arch_int(g, a, "feed_forward_length", true, 0, 1, 1 << 18, &hp->n_ff)) ||
        (st = arch_int(g, a, "attention.head_count", true, 0, 1, 1024, &hp->n_head)) ||
        (st = arch_int(g, a, "attention.head_count_kv", false, hp->n_head, 1, hp->n_head,
                       &hp->n_head_kv)))
        return st;
    if (hp->n_embd % hp->n_head)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "model: embedding_length %d is not a multiple of head_count %d",
                         hp->n_embd, hp->n_head);
    if ((st = arch_int(g, a, "attention.key_length", false, hp->n_embd / hp->n_head, 1, 1024,
                       &hp->head_dim)))
        return st;
    int vlen = 0;
    if ((st = arch_int(g, a, "attention.value_length", false, hp->head_dim, 1, 1024, &vlen)))
        return st;
    if (vlen != hp->head_dim)
        return slm_error(SLM_STATUS_UNSUPPORTED, "model: value_length %d != key_length %d", vlen,
                         hp->head_dim);
    if (hp->n_head % hp->n_head_kv)
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: head_count %d is not a multiple of "
                         "head_count_kv %d", hp->n_head, hp->n_head_kv);
    if ((st = check_uniform(g, a, "feed_forward_length", hp->n_layer, hp->n_ff)) ||
        (st = check_uniform(g, a, "attention.head_count", hp->n_layer, hp->n_head)) ||
        (st = check_uniform(g, a, "attention.head_count_kv", hp->n_layer, hp->n_head_kv)))
        return st;
    if ((st = arch_float(g, a, hp->ad->eps_key, true, 0, &hp->norm_eps)))
        return st;
    if (!(hp->norm_eps > 0))
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s.%s %g must be > 0", a,
                         hp->ad->eps_key, hp->norm_eps);
    uint64_t n_tokens;
    if ((st = slm_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, NULL, &n_tokens)))
        return st;
    if (n_tokens == 0 || n_tokens > (uint64_t)big)
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %llu tokens in tokenizer.ggml.tokens",
                         (unsigned long long)n_tokens);
    hp->n_vocab = (int)n_tokens;
    if ((st = read_rope(g, hp)))
        return st;
    return read_extras(g, hp);
}

/* --- weights ---------------------------------------------------------------- */

static slm_status find_tensor(const slm_model *m, const char *name, int64_t ne0, int64_t ne1,
                              const slm_gguf_tensor **out)
{
    slm_status st = slm_gguf_get_tensor(m->gguf, name, out);
    if (st)
        return slm_error(st, "model: tensor '%s' is missing from %s", name, m->path);
    const slm_gguf_tensor *t = *out;
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected "
                         "[%lld, %lld]",
                         name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)ne0, (long long)ne1);
    return SLM_OK;
}

static slm_status upload(slm_model *m, const char *name, slm_type type, int64_t rows,
                         int64_t cols, const void *data, slm_weight **out)
{
    slm_backend *be = m->be;
    slm_support_query q = {rows == 1 ? SLM_OP_RMSNORM : SLM_OP_MATMUL, type, 0};
    *out = NULL;
    if (!be && !slm_type_supported(type)) /* slm_model_check: the file only */
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "model: tensor '%s' has type %s, which slm cannot run", name,
                         slm_type_name(type));
    if (!be)
        return SLM_OK;
    if (!slm_type_supported(type) || be->ops->supports(be, &q))
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "model: tensor '%s' has type %s, which the %s backend cannot run", name,
                         slm_type_name(type), be->ops->name);
    slm_status st = be->ops->load_weight(be, type, rows, cols, data, out);
    if (st)
        return slm_error(st, "model: loading tensor '%s' (%s): %s", name, slm_type_name(type),
                         slm_last_error());
    m->all_weights[m->n_weights++] = *out;
    return SLM_OK;
}

static slm_status load(slm_model *m, const char *name, int64_t ne0, int64_t ne1,
                       slm_weight **out)
{
    const slm_gguf_tensor *t;
    slm_status st = find_tensor(m, name, ne0, ne1, &t);
    return st ? st : upload(m, name, (slm_type)t->type, ne1, ne0, t->data, out);
}

/* Loads the weights named by `names` (all with ne0 = cols) as one weight
 * whose rows are theirs stacked in order, when they share a type; else
 * loads them one by one into singles[]. */
static slm_status load_fused(slm_model *m, const char *const *names, const int64_t *rows,
                             int n, int64_t cols, slm_weight **fused, slm_weight **singles)
{
    const slm_gguf_tensor *t[3];
    int64_t total = 0;
    bool same = true;
    for (int i = 0; i < n; i++) {
        slm_status st = find_tensor(m, names[i], cols, rows[i], &t[i]);
        if (st)
            return st;
        same = same && t[i]->type == t[0]->type;
        total += rows[i];
    }
    if (!same || !m->be) {
        for (int i = 0; i < n; i++) {
            slm_status st = upload(m, names[i], (slm_type)t[i]->type, rows[i], cols, t[i]->data,
                                   &singles[i]);
            if (st)
                return st;
        }
        return SLM_OK;
    }
    uint8_t *buf = malloc(slm_type_row_bytes(t[0]->type, cols) * (size_t)total);
    if (!buf)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "model: out of memory fusing '%s'", names[0]);
    m->owned[m->n_owned++] = buf;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(buf + off, t[i]->data, t[i]->nbytes);
        off += t[i]->nbytes;
    }
    return upload(m, names[0], (slm_type)t[0]->type, total, cols, buf, fused);
}

/* An F32 vector weight [n] when the file has `name`, else *out = NULL. */
static slm_status load_opt(slm_model *m, const char *name, int64_t n, const slm_weight **out)
{
    *out = NULL;
    if (slm_gguf_find_tensor(m->gguf, name) < 0)
        return SLM_OK;
    slm_weight *w;
    slm_status st = load(m, name, n, 1, &w);
    *out = w;
    return st;
}

/* blk.<l>.<what>.<kind> */
static const char *tname(char *buf, size_t cap, int l, const char *what, const char *kind)
{
    snprintf(buf, cap, "blk.%d.%s.%s", l, what, kind);
    return buf;
}

/* A required vector weight of layer l ("attn_norm", …). */
static slm_status load_vec(slm_model *m, int l, const char *what, int64_t n,
                           const slm_weight **out)
{
    char name[96];
    slm_weight *w;
    slm_status st = load(m, tname(name, sizeof name, l, what, "weight"), n, 1, &w);
    *out = w;
    return st;
}

/* A norm's weight (required) and bias (when present). */
static slm_status load_norm(slm_model *m, int l, const char *what, slm_norm_w *out)
{
    char name[96];
    slm_status st = load_vec(m, l, what, m->hp.n_embd, &out->w);
    return st ? st : load_opt(m, tname(name, sizeof name, l, what, "bias"), m->hp.n_embd, &out->b);
}

static slm_status load_attention(slm_model *m, int l, slm_layer *L)
{
    const slm_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, nq = (int64_t)hp->n_head * hp->head_dim,
            nkv = (int64_t)hp->n_head_kv * hp->head_dim;
    char n[3][96], b[96];
    slm_status st = SLM_OK;
    if (hp->ad->fused_qkv) {
        if ((st = load(m, tname(n[0], sizeof n[0], l, "attn_qkv", "weight"), d, nq + 2 * nkv,
                       &L->wqkv)) ||
            (st = load_opt(m, tname(b, sizeof b, l, "attn_qkv", "bias"), nq + 2 * nkv, &L->bqkv)))
            return st;
    } else {
        const char *qkv[3] = {tname(n[0], sizeof n[0], l, "attn_q", "weight"),
                              tname(n[1], sizeof n[1], l, "attn_k", "weight"),
                              tname(n[2], sizeof n[2], l, "attn_v", "weight")};
        int64_t rows[3] = {nq, nkv, nkv};
        slm_weight *single[3] = {0};
        /* per-head q/k norms want q and k dense: no fusion then */
        if (!hp->ad->qk_norm)
            st = load_fused(m, qkv, rows, 3, d, &L->wqkv, single);
        for (int i = 0; hp->ad->qk_norm && i < 3 && !st; i++)
            st = load(m, qkv[i], d, rows[i], &single[i]);
        if (st)
            return st;
        L->wq = single[0], L->wk = single[1], L->wv = single[2];
        if ((st = load_opt(m, tname(b, sizeof b, l, "attn_q", "bias"), nq, &L->bq)) ||
            (st = load_opt(m, tname(b, sizeof b, l, "attn_k", "bias"), nkv, &L->bk)) ||
            (st = load_opt(m, tname(b, sizeof b, l, "attn_v", "bias"), nkv, &L->bv)))
            return st;
    }
    if (hp->ad->qk_norm && ((st = load_vec(m, l, "attn_q_norm", hp->head_dim, &L->q_norm)) ||
                            (st = load_vec(m, l, "attn_k_norm", hp->head_dim, &L->k_norm))))
        return st;
    if ((st = load(m, tname(n[0], sizeof n[0], l, "attn_output", "weight"), nq, d, &L->wo)) ||
        (st = load_opt(m, tname(b, sizeof b, l, "attn_output", "bias"), d, &L->bo)))
        return st;
    if (hp->ad->post_norms && (st = load_vec(m, l, "post_attention_norm", d, &L->post_attn_norm)))
        return st;
    return SLM_OK;
}

static slm_status load_ffn(slm_model *m, int l, slm_layer *L)
{
    const slm_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, ff = hp->n_ff;
    char n[2][96], b[96];
    slm_status st;
    /* The FFN norm: required unless attention and FFN share the input
     * (a parallel-residual StableLM has none). */
    bool has_norm =
        slm_gguf_find_tensor(m->gguf, tname(b, sizeof b, l, "ffn_norm", "weight")) >= 0;
    if ((!hp->parallel || has_norm) && (st = load_norm(m, l, "ffn_norm", &L->ffn_norm)))
        return st;
    if (hp->ad->ffn == SLM_FFN_GELU || hp->ad->fused_gate_up) {
        int64_t up_rows = hp->ad->fused_gate_up ? 2 * ff : ff;
        slm_weight **up = hp->ad->fused_gate_up ? &L->w_gate_up : &L->w_up;
        if ((st = load(m, tname(n[0], sizeof n[0], l, "ffn_up", "weight"), d, up_rows, up)) ||
            (st = load_opt(m, tname(b, sizeof b, l, "ffn_up", "bias"), up_rows, &L->b_up)))
            return st;
    } else {
        const char *gu[2] = {tname(n[0], sizeof n[0], l, "ffn_gate", "weight"),
                             tname(n[1], sizeof n[1], l, "ffn_up", "weight")};
        int64_t rows[2] = {ff, ff};
        slm_weight *single[2] = {0};
        if ((st = load_fused(m, gu, rows, 2, d, &L->w_gate_up, single)))
            return st;
        L->w_gate = single[0], L->w_up = single[1];
    }
    if ((st = load(m, tname(n[0], sizeof n[0], l, "ffn_down", "weight"), ff, d, &L->w_down)) ||
        (st = load_opt(m, tname(b, sizeof b, l, "ffn_down", "bias"), d, &L->b_down)))
        return st;
    if (hp->ad->post_norms && (st = load_vec(m, l, "post_ffw_norm", d, &L->post_ffn_norm)))
        return st;
    return SLM_OK;
}

static slm_status load_layer(slm_model *m, int l)
{
    slm_layer *L = &m->layers[l];
    slm_status st = load_norm(m, l, "attn_norm", &L->attn_norm);
    if (!st)
        st = load_attention(m, l, L);
    return st ? st : load_ffn(m, l, L);
}

/* Which layers slide: {arch}.attention.sliding_window_pattern as a bool per
 * layer or as n (layer l slides iff l % n < n − 1), else the family's n;
 * with no window, none. */
static slm_status read_swa_layers(slm_model *m)
{
    const slm_hparams *hp = &m->hp;
    if (hp->swa_window <= 0)
        return SLM_OK;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", hp->arch);
    int64_t idx;
    slm_gguf_type et;
    uint64_t count;
    if (slm_gguf_get_arr(m->gguf, key, &idx, &et, &count) == SLM_OK) {
        if (count < (uint64_t)hp->n_layer)
            return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s has %llu entries for %d layers",
                             key, (unsigned long long)count, hp->n_layer);
        for (int l = 0; l < hp->n_layer; l++) {
            slm_status st = slm_gguf_arr_bool(m->gguf, idx, (uint64_t)l, &m->layers[l].swa);
            if (st)
                return st;
        }
        return SLM_OK;
    }
    int64_t n = hp->ad->swa_pattern;
    slm_status st = slm_gguf_get_int(m->gguf, key, &n);
    if (st && st != SLM_STATUS_NOT_FOUND)
        return st;
    if (n < 0 || n > 1 << 20)
        return slm_error(SLM_STATUS_BAD_FORMAT, "model: %s = %lld", key, (long long)n);
    for (int l = 0; l < hp->n_layer; l++)
        m->layers[l].swa = n == 0 || l % n < n - 1;
    return SLM_OK;
}

static slm_status load_rope_factors(slm_model *m)
{
    const slm_gguf_tensor *t;
    /* Llama 3.1+: rope_freqs. Phi-3 LongRoPE files: the short factors,
     * which hold up to the original training context (the long ones and
     * their attention factor, for longer contexts, are not applied). */
    const char *name = "rope_freqs.weight";
    if (slm_gguf_get_tensor(m->gguf, name, &t) != SLM_OK &&
        slm_gguf_get_tensor(m->gguf, name = "rope_factors_short.weight", &t) != SLM_OK)
        return SLM_OK;
    int half = m->hp.rope.n_rot / 2;
    if (t->type != SLM_TYPE_F32 || t->n_elements != half)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "model: tensor '%s' must be F32 with %d elements", name, half);
    m->rope_factors = malloc((size_t)half * sizeof(float));
    if (!m->rope_factors)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "model: out of memory");
    memcpy(m->rope_factors, t->data, (size_t)half * sizeof(float));
    for (int i = 0; i < half; i++)
        if (!(m->rope_factors[i] > 0))
            return slm_error(SLM_STATUS_BAD_FORMAT,
                             "model: %s[%d] = %g must be > 0", name, i,
                             m->rope_factors[i]);
    m->hp.rope.freq_factors = m->rope_factors;
    return SLM_OK;
}

/* What the backend must run beyond the weights: RoPE over heads of this
 * size (asked first, so a refusal names the head size), and the RoPE
 * frequency table, uploaded once. */
static slm_status load_constants(slm_model *m)
{
    slm_backend *be = m->be;
    slm_support_query q = {SLM_OP_ROPE, SLM_TYPE_F32, m->hp.head_dim};
    slm_status st = be->ops->supports(be, &q);
    if (st)
        return slm_error(st, "model: heads of %d: %s", m->hp.head_dim, slm_last_error());
    st = be->ops->rope_create(be, &m->hp.rope, &m->rope);
    if (st)
        return slm_error(st, "model: RoPE table: %s", slm_last_error());
    if (m->hp.ad->swa_rope_base && m->hp.swa_window > 0 &&
        (st = be->ops->rope_create(be, &m->hp.rope_swa, &m->rope_swa)))
        return slm_error(st, "model: RoPE table of the sliding layers: %s", slm_last_error());
    return SLM_OK;
}

static slm_status load_weights(slm_model *m, slm_progress_fn progress, void *user)
{
    const slm_hparams *hp = &m->hp;
    slm_status st;
    slm_weight *w;
    if ((st = load(m, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd)) ||
        (st = load(m, "output_norm.weight", hp->n_embd, 1, &w)) ||
        (st = load_opt(m, "output_norm.bias", hp->n_embd, &m->output_norm.b)))
        return st;
    m->output_norm.w = w;
    if (slm_gguf_find_tensor(m->gguf, "output.weight") >= 0) {
        if ((st = load(m, "output.weight", hp->n_embd, hp->n_vocab, &m->output)))
            return st;
    } else {
        m->output = m->tok_embd; /* tied */
    }
    for (int l = 0; l < hp->n_layer; l++) {
        if ((st = load_layer(m, l)))
            return st;
        if (progress)
            progress((float)(l + 1) / (float)hp->n_layer, user);
    }
    if ((st = read_swa_layers(m)) || (st = load_rope_factors(m)) || !m->be)
        return st;
    return load_constants(m);
}

slm_status slm_model_load(const char *path, slm_backend *be, slm_progress_fn progress,
                          void *user, slm_model **out)
{
    *out = NULL;
    slm_model *m = calloc(1, sizeof *m);
    if (!m)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "model: out of memory");
    m->be = be;
    snprintf(m->path, sizeof m->path, "%s", path);
    slm_status st = slm_gguf_open(path, &m->gguf);
    if (!st)
        st = slm_hparams_read(m->gguf, &m->hp);
    if (!st) {
        int per_layer = 24; /* upper bound of weights per layer */
        m->layers = calloc((size_t)m->hp.n_layer, sizeof *m->layers);
        m->all_weights = calloc((size_t)(per_layer * m->hp.n_layer + 4), sizeof(slm_weight *));
        m->owned = calloc((size_t)(2 * m->hp.n_layer), sizeof(void *));
        if (!m->layers || !m->all_weights || !m->owned)
            st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "model: out of memory");
    }
    if (!st)
        st = load_weights(m, progress, user);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", slm_last_error());
        slm_model_free(m);
        return slm_error(st, "%s", msg);
    }
    *out = m;
    return SLM_OK;
}

slm_status slm_model_check(const char *path)
{
    slm_model *m;
    slm_status st = slm_model_load(path, NULL, NULL, NULL, &m);
    slm_model_free(m);
    return st;
}

void slm_model_free(slm_model *m)
{
    if (!m)
        return;
    if (m->be) {
        m->be->ops->rope_free(m->be, m->rope);
        m->be->ops->rope_free(m->be, m->rope_swa);
        for (int i = 0; i < m->n_weights; i++)
            m->be->ops->weight_free(m->be, m->all_weights[i]);
    }
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->all_weights);
    free(m->owned);
    free(m->layers);
    free(m->rope_factors);
    slm_gguf_close(m->gguf);
    slm_tokenizer_free(m->tok);
    if (m->owned_backend)
        m->owned_backend->ops->close(m->owned_backend);
    free(m);
}
