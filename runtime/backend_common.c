/*
 * backend_common.c — what every backend and every caller of backend.h
 * shares: default parameters, the one RoPE frequency formula, the check the
 * registry applies to a table (version, mandatory slots), the checks of a
 * step every begin_step makes, the paged KV layout of the CPU and CUDA
 * pools, and the submit-then-wait shorthand for callers with nothing to
 * overlap.
 */
#include <math.h>
#include <string.h>

#include "backend.h"
#include "quant_blocks.h"
#include "status.h"

void slm_backend_params_default(slm_backend_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->device_index = SLM_DEVICE_ANY;
}

double slm_rope_inv_freq(const slm_rope_params *p, int i)
{
    double f = (double)p->freq_scale * pow((double)p->freq_base, -2.0 * i / p->n_rot);
    if (p->freq_factors)
        f /= (double)p->freq_factors[i];
    return f;
}

slm_status slm_rope_params_check(const slm_rope_params *p, int max_rot, const char *who)
{
    if (!p || (p->mode != SLM_ROPE_NORM && p->mode != SLM_ROPE_NEOX) || p->n_rot < 2 ||
        p->n_rot % 2 != 0 || p->n_rot > max_rot || !(p->freq_base > 0) ||
        !isfinite(p->freq_base) || !isfinite(p->freq_scale))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "%s: rope: mode %d, n_rot %d (at most %d), freq_base %g, freq_scale %g",
                         who, p ? (int)p->mode : -1, p ? p->n_rot : 0, max_rot,
                         p ? (double)p->freq_base : 0.0, p ? (double)p->freq_scale : 0.0);
    return SLM_OK;
}

/* The mandatory slots, by name, for the registry's check. */
#define SLOT(name) {#name, offsetof(slm_backend_ops, name)}
static const struct {
    const char *name;
    size_t off;
} mandatory[] = {
    SLOT(open), SLOT(close), SLOT(describe), SLOT(supports), SLOT(buf_alloc), SLOT(buf_free),
    SLOT(upload), SLOT(download), SLOT(load_weight), SLOT(weight_free), SLOT(kv_create),
    SLOT(kv_free), SLOT(rope_create), SLOT(rope_free), SLOT(reserve), SLOT(begin_step),
    SLOT(submit), SLOT(wait), SLOT(embed), SLOT(rmsnorm), SLOT(matmul), SLOT(rope),
    SLOT(kv_store), SLOT(attention), SLOT(swiglu), SLOT(get_rows), SLOT(logits),
    SLOT(geglu), SLOT(gelu), SLOT(layernorm), SLOT(bias), SLOT(softcap), SLOT(add), SLOT(scale),
};
#undef SLOT

slm_status slm_backend_ops_check(const slm_backend_ops *ops)
{
    if (!ops)
        return slm_error(SLM_STATUS_INTERNAL, "backend table is NULL");
    const char *name = ops->name ? ops->name : "(unnamed)";
    if (ops->api_version != SLM_BACKEND_API_VERSION)
        return slm_error(SLM_STATUS_INTERNAL,
                         "backend '%s' implements interface version %d, this runtime needs %d",
                         name, ops->api_version, SLM_BACKEND_API_VERSION);
    for (size_t i = 0; i < sizeof mandatory / sizeof mandatory[0]; i++) {
        void (*fn)(void);
        memcpy(&fn, (const char *)ops + mandatory[i].off, sizeof fn);
        if (!fn)
            return slm_error(SLM_STATUS_INTERNAL, "backend '%s' leaves mandatory slot %s empty",
                             name, mandatory[i].name);
    }
    return SLM_OK;
}

slm_status slm_step_check(const slm_step *s, int *n_bt)
{
    if (!s)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "begin_step: no step");
    if (s->n_tokens < 0 || s->n_seqs < 0 || s->n_logit_rows < 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "step has negative counts (%d tokens, %d sequences, %d logit rows)",
                         s->n_tokens, s->n_seqs, s->n_logit_rows);
    if (s->n_seqs > 0 && (!s->block_table_start || !s->block_table_len))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "step has %d sequences but no block tables",
                         s->n_seqs);
    if (s->n_logit_rows > 0 && !s->logit_rows)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "step has %d logit rows but no array",
                         s->n_logit_rows);
    int64_t top = 0;
    for (int i = 0; i < s->n_seqs; i++) {
        int64_t start = s->block_table_start[i], len = s->block_table_len[i];
        if (start < 0 || len < 0 || start + len > INT32_MAX)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "sequence %d has block table start %lld length %lld", i,
                             (long long)start, (long long)len);
        top = start + len > top ? start + len : top;
    }
    if (top > 0 && !s->block_tables)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "step has block tables but no block ids");
    for (int t = 0; t < s->n_tokens; t++) {
        if (s->seq_of_token && (s->seq_of_token[t] < 0 || s->seq_of_token[t] >= s->n_seqs))
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "token %d belongs to sequence %d of %d",
                             t, s->seq_of_token[t], s->n_seqs);
        if (s->positions && s->positions[t] < 0)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "token %d has position %d", t,
                             s->positions[t]);
    }
    for (int i = 0; i < s->n_logit_rows; i++)
        if (s->logit_rows[i] < 0 || s->logit_rows[i] >= s->n_tokens)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "logit row %d is token %d of %d", i,
                             s->logit_rows[i], s->n_tokens);
    *n_bt = (int)top;
    return SLM_OK;
}

/* a[i], or -1 when the step leaves the array out */
static int32_t at_or_none(const int32_t *a, int i) { return a ? a[i] : -1; }

slm_status slm_step_kv_check(const slm_step *s, int n_blocks, int block_size)
{
    for (int q = 0; q < s->n_seqs; q++) {
        const int32_t *table = s->block_tables + s->block_table_start[q];
        for (int b = 0; b < s->block_table_len[q]; b++)
            if (table[b] < 0 || table[b] >= n_blocks)
                return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                                 "sequence %d block %d has id %d, outside the pool's %d blocks",
                                 q, b, table[b], n_blocks);
    }
    int64_t n_slots = (int64_t)n_blocks * block_size;
    for (int t = 0; t < s->n_tokens; t++) {
        int32_t slot = at_or_none(s->kv_slot, t), seq = at_or_none(s->seq_of_token, t);
        int32_t pos = at_or_none(s->positions, t);
        if (slot < 0 || slot >= n_slots)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "token %d has KV slot %d outside the pool's %lld slots", t, slot,
                             (long long)n_slots);
        if (seq < 0 || pos < 0)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "token %d has no sequence or position",
                             t);
        int64_t need = (int64_t)pos / block_size + 1;
        if (need > s->block_table_len[seq])
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "token %d at position %d needs %lld blocks; sequence %d has %d", t,
                             pos, (long long)need, seq, s->block_table_len[seq]);
    }
    return SLM_OK;
}

static bool mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

slm_status slm_kv_layout_of(const slm_kv_desc *d, slm_kv_layout *out)
{
    if (d->type != SLM_TYPE_F32 && d->type != SLM_TYPE_F16 && d->type != SLM_TYPE_Q8_0)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "KV cache type %s is not supported (f32, f16, q8_0)",
                         slm_type_name((int)d->type));
    if (d->n_layers < 1 || d->n_blocks < 1 || d->block_size < 1 || d->n_kv_heads < 1 ||
        d->head_dim < 1 || (int64_t)d->n_blocks * d->block_size > INT32_MAX)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "KV pool of %d layers, %d blocks of %d tokens, %d heads of %d",
                         d->n_layers, d->n_blocks, d->block_size, d->n_kv_heads, d->head_dim);
    size_t hd = (size_t)d->head_dim, blocks = (hd + SLM_QK - 1) / SLM_QK;
    slm_kv_layout l = {.padded_dim = d->head_dim};
    if (d->type == SLM_TYPE_F32)
        l.row_bytes = hd * 4;
    else if (d->type == SLM_TYPE_F16)
        l.row_bytes = hd * 2;
    else
        l.row_bytes = blocks * sizeof(slm_block_q8_0), l.padded_dim = (int)(blocks * SLM_QK);
    if (!mul_ok(l.row_bytes, (size_t)d->block_size, &l.head_block_bytes) ||
        !mul_ok(l.head_block_bytes, (size_t)d->n_kv_heads, &l.block_bytes) ||
        !mul_ok(l.block_bytes, (size_t)d->n_blocks, &l.layer_bytes) ||
        !mul_ok(l.layer_bytes, (size_t)d->n_layers, &l.total_bytes))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "KV pool size overflows");
    *out = l;
    return SLM_OK;
}

slm_status slm_kv_copies_check(const slm_kv_copy *copies, int n, int n_blocks)
{
    for (int i = 0; i < n; i++) {
        slm_kv_copy c = copies ? copies[i] : (slm_kv_copy){-1, -1};
        if (c.src < 0 || c.src >= n_blocks || c.dst < 0 || c.dst >= n_blocks)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "kv_copy: copy %d is block %d to %d in a pool of %d", i, c.src,
                             c.dst, n_blocks);
    }
    return SLM_OK;
}

slm_status slm_backend_finish_step(slm_backend *be)
{
    slm_status st = be->ops->submit(be);
    slm_status wst = be->ops->wait(be);
    return st ? st : wst;
}
