/*
 * test_cpu_attention.c — the CPU backend's paged KV pool (kv_store) and fused
 * attention, through the slm_backend_cpu() table, against a naive softmax in
 * double precision written here.
 *
 * Each case: several sequences of different lengths whose blocks are
 * non-contiguous, shuffled ids of one pool; a first step that prefills every
 * sequence at once; a mixed step with a prefill chunk of several tokens of
 * one sequence (causal inside the chunk) beside one decode token of each
 * other sequence; then a single decode token. q, k and v are column ranges
 * of one fused QKV row (strided), two layers are written and read so layer
 * offsets are exercised, outputs are poisoned. Shapes: GQA 9 heads over 3 KV
 * heads, MHA, and 16 heads over 1 KV head (more query heads per KV head than
 * one work item takes); head_dim 64 and 40 (not a multiple of Q8_0's 32);
 * block sizes 16 and 5; KV storage F32, F16 and Q8_0. The reference reads
 * the K/V values as stored (rounded to F16, or through Q8_0), so one
 * tolerance covers every storage type.
 *
 * Also: the F16 row decoder for all 65536 bit patterns.
 *
 * Error paths: a block id outside the pool, a table too short for a
 * position, a KV slot outside the pool — each fails end_step with a message
 * and the next step works.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_backend.h"
#include "fp16.h"
#include "quant.h"
#include "testutil.h"

#define MAXS 5   /* sequences */
#define MAXP 80  /* positions per sequence */
#define MAXB 80  /* blocks per sequence */
#define MAXT 400 /* tokens per step */
#define LAYERS 2

typedef struct cfg {
    int n_heads, n_kv, hd, bs;
    slm_type type;
} cfg;

typedef struct world {
    cfg c;
    const slm_backend_ops *ops;
    slm_backend *be;
    slm_kv *kv;
    int n_blocks;
    int n_seqs;
    int len[MAXS];            /* positions stored so far */
    int32_t blocks[MAXS][MAXB]; /* each sequence's block table */
    int nblk[MAXS];
    float *kref[LAYERS], *vref[LAYERS]; /* [seq][pos][kv head][hd], as stored */
} world;

typedef struct tok {
    int seq, pos;
} tok;

static size_t ref_at(const world *w, int s, int p, int h)
{
    return (((size_t)s * MAXP + p) * w->c.n_kv + h) * w->c.hd;
}

/* The values the pool holds after storing src as `type`. */
static void round_row(slm_type type, const float *src, float *dst, int hd)
{
    if (type == SLM_TYPE_F32) {
        memcpy(dst, src, (size_t)hd * 4);
    } else if (type == SLM_TYPE_F16) {
        for (int i = 0; i < hd; i++)
            dst[i] = slm_f16_to_f32(slm_f32_to_f16(src[i]));
    } else {
        /* Q8_0 per 32 values; the tail block padded with zeros */
        int pd = (hd + 31) / 32 * 32;
        float pad[256] = {0}, out[256];
        uint8_t q[8 * 34];
        memcpy(pad, src, (size_t)hd * 4);
        assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_0, pad, q, pd));
        assert_true(slm_dequantize_row(SLM_TYPE_Q8_0, q, out, pd));
        memcpy(dst, out, (size_t)hd * 4);
    }
}

static void shuffle(int32_t *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = tu_int(0, i);
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Opens a backend and a pool; gives every sequence room for `room`
 * positions in blocks drawn from a shuffled permutation of the pool. */
static void world_init(world *w, cfg c, int n_seqs, int room)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    w->n_seqs = n_seqs;
    w->ops = slm_backend_cpu();
    slm_backend_params p = {.size = sizeof p, .n_threads = tu_int(1, 3), .device_index = -1};
    assert_int_equal(w->ops->open(&p, &w->be), SLM_OK);
    int per = (room + c.bs - 1) / c.bs;
    assert_true(per <= MAXB);
    w->n_blocks = n_seqs * per + tu_int(1, 9); /* spare blocks nobody uses */
    slm_kv_desc d = {.n_layers = LAYERS, .n_blocks = w->n_blocks, .block_size = c.bs,
                     .n_kv_heads = c.n_kv, .head_dim = c.hd, .type = c.type};
    assert_int_equal(w->ops->kv_create(w->be, &d, &w->kv), SLM_OK);
    int32_t *perm = malloc((size_t)w->n_blocks * sizeof(int32_t));
    assert_non_null(perm);
    for (int i = 0; i < w->n_blocks; i++)
        perm[i] = i;
    shuffle(perm, w->n_blocks);
    for (int s = 0; s < n_seqs; s++) {
        w->nblk[s] = per;
        memcpy(w->blocks[s], perm + s * per, (size_t)per * sizeof(int32_t));
    }
    free(perm);
    for (int l = 0; l < LAYERS; l++) {
        w->kref[l] = calloc((size_t)MAXS * MAXP * c.n_kv * c.hd, sizeof(float));
        w->vref[l] = calloc((size_t)MAXS * MAXP * c.n_kv * c.hd, sizeof(float));
        assert_non_null(w->kref[l]);
        assert_non_null(w->vref[l]);
    }
}

static void world_free(world *w)
{
    w->ops->kv_free(w->be, w->kv);
    w->ops->close(w->be);
    for (int l = 0; l < LAYERS; l++) {
        free(w->kref[l]);
        free(w->vref[l]);
    }
}

/* The step arrays for a list of tokens; the sequences' block tables are
 * concatenated in reverse order so table starts are not 0, 1·n, 2·n. */
typedef struct step_arrays {
    int32_t ids[MAXT], pos[MAXT], seq[MAXT], slot[MAXT];
    int32_t start[MAXS], len[MAXS], bt[MAXS * MAXB];
    slm_step s;
} step_arrays;

static void build_step(const world *w, const tok *toks, int n, step_arrays *a)
{
    int off = 0;
    for (int s = w->n_seqs - 1; s >= 0; s--) {
        a->start[s] = off;
        a->len[s] = w->nblk[s];
        memcpy(a->bt + off, w->blocks[s], (size_t)w->nblk[s] * sizeof(int32_t));
        off += w->nblk[s];
    }
    for (int t = 0; t < n; t++) {
        int s = toks[t].seq, p = toks[t].pos;
        a->ids[t] = 0;
        a->pos[t] = p;
        a->seq[t] = s;
        a->slot[t] = w->blocks[s][p / w->c.bs] * w->c.bs + p % w->c.bs;
    }
    a->s = (slm_step){.n_tokens = n, .token_ids = a->ids, .positions = a->pos,
                      .seq_of_token = a->seq, .kv_slot = a->slot, .n_seqs = w->n_seqs,
                      .block_table_start = a->start, .block_table_len = a->len,
                      .block_tables = a->bt};
}

/* Runs one step over `toks` for both layers (kv_store then attention) and
 * checks every output against the double-precision reference. */
static void run_step(world *w, const tok *toks, int n)
{
    const cfg *c = &w->c;
    int qw = c->n_heads * c->hd, kw = c->n_kv * c->hd;
    int stride = qw + 2 * kw; /* fused QKV row: q | k | v */
    size_t nqkv = (size_t)n * stride, nout = (size_t)n * qw;
    float *qkv[LAYERS], *got[LAYERS];
    slm_buf *qb[LAYERS], *ob[LAYERS];
    float *poison = malloc(nout * sizeof(float));
    assert_non_null(poison);
    tu_poison(poison, nout);
    for (int l = 0; l < LAYERS; l++) {
        qkv[l] = malloc(nqkv * sizeof(float));
        got[l] = malloc(nout * sizeof(float));
        assert_non_null(qkv[l]);
        assert_non_null(got[l]);
        tu_fill_normal(qkv[l], nqkv, 1.0f);
        assert_int_equal(w->ops->buf_alloc(w->be, nqkv * 4, &qb[l]), SLM_OK);
        assert_int_equal(w->ops->upload(w->be, (slm_ref){qb[l], 0}, qkv[l], nqkv * 4), SLM_OK);
        assert_int_equal(w->ops->buf_alloc(w->be, nout * 4, &ob[l]), SLM_OK);
        assert_int_equal(w->ops->upload(w->be, (slm_ref){ob[l], 0}, poison, nout * 4), SLM_OK);
    }
    step_arrays *a = malloc(sizeof *a);
    assert_non_null(a);
    build_step(w, toks, n, a);
    float scale = 1.0f / sqrtf((float)c->hd);
    assert_int_equal(w->ops->begin_step(w->be, &a->s), SLM_OK);
    for (int l = 0; l < LAYERS; l++) {
        w->ops->kv_store(w->be, w->kv, l, (slm_ref){qb[l], (size_t)qw * 4}, stride,
                         (slm_ref){qb[l], (size_t)(qw + kw) * 4}, stride);
        w->ops->attention(w->be, w->kv, l, (slm_ref){qb[l], 0}, stride, c->n_heads, scale,
                          (slm_ref){ob[l], 0});
    }
    if (w->ops->end_step(w->be) != SLM_OK)
        fail_msg("attention step: %s", slm_last_error());
    for (int l = 0; l < LAYERS; l++)
        assert_int_equal(w->ops->download(w->be, got[l], (slm_ref){ob[l], 0}, nout * 4), SLM_OK);

    /* the reference: K/V as stored, then a naive softmax in double */
    for (int l = 0; l < LAYERS; l++)
        for (int t = 0; t < n; t++)
            for (int h = 0; h < c->n_kv; h++) {
                const float *row = qkv[l] + (size_t)t * stride + qw + h * c->hd;
                size_t r = ref_at(w, toks[t].seq, toks[t].pos, h);
                round_row(c->type, row, w->kref[l] + r, c->hd);
                round_row(c->type, row + kw, w->vref[l] + r, c->hd);
            }
    double *sc = malloc(MAXP * sizeof(double)), *o = malloc((size_t)c->hd * sizeof(double));
    assert_non_null(sc);
    assert_non_null(o);
    int group = c->n_heads / c->n_kv;
    for (int l = 0; l < LAYERS; l++) {
        for (int t = 0; t < n; t++) {
            int s = toks[t].seq, pos = toks[t].pos;
            for (int h = 0; h < c->n_heads; h++) {
                const float *q = qkv[l] + (size_t)t * stride + h * c->hd;
                double mx = -INFINITY, sum = 0;
                for (int p = 0; p <= pos; p++) {
                    const float *k = w->kref[l] + ref_at(w, s, p, h / group);
                    double d = 0;
                    for (int i = 0; i < c->hd; i++)
                        d += (double)q[i] * k[i];
                    sc[p] = d * scale;
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                for (int i = 0; i < c->hd; i++)
                    o[i] = 0;
                for (int p = 0; p <= pos; p++) {
                    double e = exp(sc[p] - mx);
                    sum += e;
                    const float *v = w->vref[l] + ref_at(w, s, p, h / group);
                    for (int i = 0; i < c->hd; i++)
                        o[i] += e * v[i];
                }
                for (int i = 0; i < c->hd; i++) {
                    double want = o[i] / sum;
                    float g = got[l][(size_t)t * qw + h * c->hd + i];
                    /* float dots of hd terms, float exp and a float sum over
                     * at most MAXP positions of values |v| < ~5: 1e-5 abs
                     * covers it with margin; the same for every storage type
                     * because the reference reads the stored values. */
                    double tol = 2e-5 + 1e-5 * fabs(want);
                    if (!(fabs(g - want) <= tol))
                        fail_msg("%s hd %d heads %d/%d bs %d: layer %d token %d (seq %d pos %d) "
                                 "head %d elem %d: got %.9g want %.9g",
                                 slm_type_name((int)c->type), c->hd, c->n_heads, c->n_kv, c->bs,
                                 l, t, s, pos, h, i, (double)g, want);
                }
            }
        }
    }
    for (int t = 0; t < n; t++)
        if (toks[t].pos + 1 > w->len[toks[t].seq])
            w->len[toks[t].seq] = toks[t].pos + 1;
    free(sc);
    free(o);
    free(a);
    free(poison);
    for (int l = 0; l < LAYERS; l++) {
        w->ops->buf_free(w->be, qb[l]);
        w->ops->buf_free(w->be, ob[l]);
        free(qkv[l]);
        free(got[l]);
    }
}

static void one_case(cfg c)
{
    world w;
    int n_seqs = tu_int(2, MAXS);
    int chunk = tu_int(2, 9);
    world_init(&w, c, n_seqs, MAXP);
    /* step 1: prefill every sequence (different lengths) at once */
    tok toks[MAXT] = {{0, 0}};
    int n = 0;
    for (int s = 0; s < n_seqs; s++) {
        int len = tu_int(1, MAXP - chunk - 2);
        for (int p = 0; p < len; p++)
            toks[n++] = (tok){s, p};
    }
    run_step(&w, toks, n);
    /* step 2: a prefill chunk of one sequence among decode tokens of others
     * (sequences in order, so the chunk sits between decode tokens) */
    int ps = tu_int(0, n_seqs - 1);
    n = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (s != ps)
            toks[n++] = (tok){s, w.len[s]};
        else
            for (int i = 0; i < chunk; i++)
                toks[n++] = (tok){ps, w.len[ps] + i};
    }
    run_step(&w, toks, n);
    /* step 3: one decode token alone (few work items: query heads split) */
    int ds = tu_int(0, n_seqs - 1);
    toks[0] = (tok){ds, w.len[ds]};
    run_step(&w, toks, 1);
    world_free(&w);
}

static void attention_shapes_and_types(void **state)
{
    (void)state;
    const slm_type types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0};
    const cfg shapes[] = {
        {.n_heads = 9, .n_kv = 3, .hd = 64, .bs = 16},
        {.n_heads = 9, .n_kv = 3, .hd = 40, .bs = 5},
        {.n_heads = 4, .n_kv = 4, .hd = 40, .bs = 16},
        {.n_heads = 16, .n_kv = 1, .hd = 64, .bs = 5},
    };
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            cfg c = shapes[k];
            c.type = types[t];
            one_case(c);
        }
}

/* Runs kv_store and attention over the (corrupted) step arrays `a`;
 * expects end_step to fail with a message containing `needle`. */
static void expect_step_error(world *w, step_arrays *a, int n, const char *needle)
{
    int qw = w->c.n_heads * w->c.hd, kw = w->c.n_kv * w->c.hd;
    int stride = qw + 2 * kw;
    slm_buf *qb, *ob;
    assert_int_equal(w->ops->buf_alloc(w->be, (size_t)n * stride * 4, &qb), SLM_OK);
    assert_int_equal(w->ops->buf_alloc(w->be, (size_t)n * qw * 4, &ob), SLM_OK);
    assert_int_equal(w->ops->begin_step(w->be, &a->s), SLM_OK);
    w->ops->kv_store(w->be, w->kv, 0, (slm_ref){qb, (size_t)qw * 4}, stride,
                     (slm_ref){qb, (size_t)(qw + kw) * 4}, stride);
    w->ops->attention(w->be, w->kv, 0, (slm_ref){qb, 0}, stride, w->c.n_heads, 0.125f,
                      (slm_ref){ob, 0});
    assert_int_equal(w->ops->end_step(w->be), SLM_STATUS_INVALID_ARGUMENT);
    if (strstr(slm_last_error(), needle) == NULL)
        fail_msg("expected an error about '%s', got '%s'", needle, slm_last_error());
    w->ops->buf_free(w->be, qb);
    w->ops->buf_free(w->be, ob);
}

static void bad_tables_fail_at_end_step(void **state)
{
    (void)state;
    world w;
    cfg c = {.n_heads = 4, .n_kv = 2, .hd = 40, .bs = 4, .type = SLM_TYPE_F16};
    world_init(&w, c, 2, 20);
    tok toks[6] = {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {1, 0}};
    step_arrays *a = malloc(sizeof *a);
    assert_non_null(a);

    /* a block id past the pool (in a block the token needs) */
    build_step(&w, toks, 6, a);
    a->bt[a->start[0] + 1] = w.n_blocks;
    expect_step_error(&w, a, 6, "block");
    /* a negative block id */
    build_step(&w, toks, 6, a);
    a->bt[a->start[1]] = -7;
    expect_step_error(&w, a, 6, "block");
    /* a table too short for the position */
    build_step(&w, toks, 6, a);
    a->len[0] = 1;
    expect_step_error(&w, a, 6, "blocks");
    /* a KV slot past the pool */
    build_step(&w, toks, 6, a);
    a->slot[3] = w.n_blocks * c.bs;
    expect_step_error(&w, a, 6, "slot");
    build_step(&w, toks, 6, a);
    a->slot[0] = -1;
    expect_step_error(&w, a, 6, "slot");

    /* a sequence index past the step's sequences fails begin_step */
    build_step(&w, toks, 6, a);
    a->seq[2] = 2;
    assert_int_equal(w.ops->begin_step(w.be, &a->s), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(w.ops->end_step(w.be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "sequence"));

    /* an unsupported storage type is refused, named */
    slm_kv *kv2 = NULL;
    slm_kv_desc d = {.n_layers = 1, .n_blocks = 4, .block_size = 16, .n_kv_heads = 1,
                     .head_dim = 64, .type = SLM_TYPE_Q4_0};
    assert_int_equal(w.ops->kv_create(w.be, &d, &kv2), SLM_STATUS_UNSUPPORTED);
    assert_non_null(strstr(slm_last_error(), "q4_0"));
    assert_null(kv2);
    d.type = SLM_TYPE_F16;
    d.head_dim = 0;
    assert_int_equal(w.ops->kv_create(w.be, &d, &kv2), SLM_STATUS_INVALID_ARGUMENT);

    /* and the backend still computes correctly afterwards */
    run_step(&w, toks, 6);
    free(a);
    world_free(&w);
}

/* The F16 KV decoder (a lookup table) against fp16.h for every bit
 * pattern, bit for bit (NaNs included), at an odd byte alignment. */
static void f16_rows_exact(void **state)
{
    (void)state;
    uint8_t *src = malloc(2 * 65536 + 1);
    float *dst = malloc(65536 * sizeof(float));
    assert_non_null(src);
    assert_non_null(dst);
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t v = (uint16_t)h;
        memcpy(src + 1 + 2 * h, &v, 2);
    }
    tu_poison(dst, 65536);
    slm_cpu_f16_to_f32_row(src + 1, dst, 65536);
    for (uint32_t h = 0; h < 65536; h++) {
        float want = slm_f16_to_f32((uint16_t)h);
        if (memcmp(&dst[h], &want, 4) != 0)
            fail_msg("f16 0x%04x: got %a want %a", h, (double)dst[h], (double)want);
    }
    free(src);
    free(dst);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f16_rows_exact),
        cmocka_unit_test(attention_shapes_and_types),
        cmocka_unit_test(bad_tables_fail_at_end_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
