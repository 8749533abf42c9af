/*
 * session.c — see session.h.
 */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"

#define SESSION_BLOCK 16

slm_status slm_session_create(slm_model *m, int n_ctx, int n_batch, slm_type kv_type,
                              slm_session **out)
{
    *out = NULL;
    if (n_ctx < 1 || n_batch < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "session: n_ctx %d, n_batch %d", n_ctx,
                         n_batch);
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    slm_session *s = calloc(1, sizeof *s);
    if (!s)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "session: out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->block_size = SESSION_BLOCK;
    int n_blocks = (n_ctx + SESSION_BLOCK - 1) / SESSION_BLOCK;
    s->block_table = malloc((size_t)n_blocks * sizeof(int32_t));
    s->ids = malloc((size_t)n_batch * sizeof(int32_t));
    s->pos = malloc((size_t)n_batch * sizeof(int32_t));
    s->seq = calloc((size_t)n_batch, sizeof(int32_t));
    s->slot = malloc((size_t)n_batch * sizeof(int32_t));
    s->rows = malloc((size_t)n_batch * sizeof(int32_t));
    s->logits = malloc((size_t)m->hp.n_vocab * n_batch * sizeof(float));
    slm_status st = SLM_OK;
    if (!s->block_table || !s->ids || !s->pos || !s->seq || !s->slot || !s->rows || !s->logits)
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "session: out of memory");
    for (int b = 0; !st && b < n_blocks; b++)
        s->block_table[b] = b;
    slm_kv_desc kd = {m->hp.n_layer, n_blocks, SESSION_BLOCK, m->hp.n_head_kv,
                      m->hp.head_dim, kv_type};
    if (!st)
        st = m->be->ops->kv_create(m->be, &kd, &s->kv);
    /* Logits for every row of a batch may not fit one device buffer (a 128k
     * vocabulary × 256 rows is 131 MB): fewer rows then, and evaluations
     * that want every row's logits run in chunks of that many tokens. */
    int rows = n_batch;
    while (!st &&
           (st = slm_forward_create(m, s->kv, n_batch, rows, &s->fwd, NULL)) ==
               SLM_STATUS_UNSUPPORTED &&
           rows > 1) {
        rows /= 2;
        st = SLM_OK;
    }
    s->logit_chunk = rows;
    if (st) {
        slm_session_free(s);
        return st;
    }
    *out = s;
    return SLM_OK;
}

void slm_session_free(slm_session *s)
{
    if (!s)
        return;
    slm_forward_free(s->fwd);
    if (s->kv)
        s->m->be->ops->kv_free(s->m->be, s->kv);
    free(s->block_table);
    free(s->ids), free(s->pos), free(s->seq), free(s->slot), free(s->rows);
    free(s->logits);
    free(s);
}

void slm_session_reset(slm_session *s) { s->n_past = 0; }

static slm_status eval_chunk(slm_session *s, const int32_t *tokens, int n, bool all)
{
    for (int i = 0; i < n; i++) {
        s->ids[i] = tokens[i];
        s->pos[i] = s->n_past + i;
        s->slot[i] = s->n_past + i; /* identity block table: slot == position */
        s->rows[i] = i;
    }
    int n_blocks_used = (s->n_past + n + s->block_size - 1) / s->block_size;
    int32_t start = 0;
    slm_step step = {
        .n_tokens = n, .token_ids = s->ids, .positions = s->pos, .seq_of_token = s->seq,
        .kv_slot = s->slot, .n_seqs = 1, .block_table_start = &start,
        .block_table_len = &n_blocks_used, .block_tables = s->block_table,
        .n_logit_rows = all ? n : 1, .logit_rows = all ? s->rows : &s->rows[n - 1],
    };
    slm_status st = slm_forward_run(s->fwd, &step, s->logits);
    if (!st)
        s->n_past += n;
    return st;
}

slm_status slm_session_eval(slm_session *s, const int32_t *tokens, int n, float *all_logits)
{
    if (n < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "session: nothing to evaluate");
    if (n > s->n_ctx - s->n_past)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "context full: %d tokens already, %d more would exceed the context of "
                         "%d tokens",
                         s->n_past, n, s->n_ctx);
    int n_vocab = s->m->hp.n_vocab;
    for (int done = 0; done < n;) {
        int chunk = all_logits ? s->logit_chunk : s->n_batch;
        int c = n - done < chunk ? n - done : chunk;
        slm_status st = eval_chunk(s, tokens + done, c, all_logits != NULL);
        if (st)
            return st;
        if (all_logits)
            memcpy(all_logits + (size_t)done * n_vocab, s->logits,
                   (size_t)c * n_vocab * sizeof(float));
        done += c;
    }
    if (all_logits) /* s->logits holds the last chunk's rows: keep only the last */
        memcpy(s->logits, all_logits + (size_t)(n - 1) * n_vocab, (size_t)n_vocab * sizeof(float));
    return SLM_OK;
}
