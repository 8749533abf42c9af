/*
 * test_kvcache.c — the paged KV block manager (runtime/kvcache.c).
 *
 * The long random test runs ≥ 10k create/fork/append/free operations at a
 * random block size and pool size and, after every one, compares the
 * manager with a reference model kept here: each sequence's tokens, the
 * refcount of every block (recounted from the block tables), block contents,
 * predicted success of every append (blocks needed vs blocks unreferenced),
 * predicted copy-on-write pairs, and that newly handed-out blocks were not
 * in use. A shadow "device pool" records, for every slot written, a hash of
 * the whole token prefix that produced it; every live position must read
 * back the hash of its own sequence's prefix, which proves that prefix reuse
 * only shares K/V computed after an identical prefix and that COW copies
 * preserve contents. Targeted tests cover prefix hits, chained-prefix
 * exactness, COW, LRU eviction order, out-of-blocks and bad arguments.
 */
#include <stdlib.h>
#include <string.h>

#include "kvcache.h"
#include "testutil.h"

static void check_ok(const slm_kvcache *kc)
{
    slm_status st = slm_kvcache_check(kc);
    if (st != SLM_OK)
        fail_msg("kvcache invariant: %s", slm_last_error());
}

/* ------------------------------------------------------------------------ */
/* Targeted tests                                                            */
/* ------------------------------------------------------------------------ */

static slm_kvcache *make(int n_blocks, int bs)
{
    slm_kvcache *kc = NULL;
    assert_int_equal(slm_kvcache_create(n_blocks, bs, &kc), SLM_OK);
    return kc;
}

static int new_seq(slm_kvcache *kc, const int32_t *tok, int n, int *n_cached)
{
    int id = -1, c = -1;
    assert_int_equal(slm_kvcache_seq_create(kc, tok, n, &id, &c), SLM_OK);
    assert_true(id >= 0);
    if (n_cached)
        *n_cached = c;
    return id;
}

static int32_t block_at(const slm_kvcache *kc, int seq, int i)
{
    const int32_t *t;
    int n;
    assert_int_equal(slm_kvcache_block_table(kc, seq, &t, &n), SLM_OK);
    assert_true(i < n);
    return t[i];
}

static void test_prefix_reuse(void **state)
{
    (void)state;
    int bs = tu_int(2, 7);
    slm_kvcache *kc = make(40, bs);
    int n = 3 * bs + tu_int(1, bs - 1); /* three full blocks and a partial one */
    int32_t p[64];
    for (int i = 0; i < n; i++)
        p[i] = tu_int(0, 1000);
    int a = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, a, p, n), SLM_OK);

    /* Same step: blocks being written now are not offered. */
    int c0, b0 = new_seq(kc, p, n, &c0);
    assert_int_equal(c0, 0);
    slm_kvcache_seq_free(kc, b0);

    slm_kvcache_step_begin(kc);
    int c1, b1 = new_seq(kc, p, n, &c1);
    assert_int_equal(c1, 3 * bs); /* full blocks only */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(block_at(kc, b1, i), block_at(kc, a, i));
        assert_int_equal(slm_kvcache_block_refcount(kc, block_at(kc, a, i)), 2);
    }
    assert_int_equal(slm_kvcache_seq_len(kc, b1), 3 * bs);
    assert_int_equal(slm_kvcache_slot_of(kc, b1, bs + 1), block_at(kc, a, 1) * bs + 1);

    /* A difference inside the second block stops the match after the first. */
    int32_t q[64];
    memcpy(q, p, sizeof(int32_t) * (size_t)n);
    q[bs + tu_int(0, bs - 1)] += 1;
    int c2, b2 = new_seq(kc, q, n, &c2);
    assert_int_equal(c2, bs);

    /* After every holder is gone the blocks stay cached and are revived. */
    slm_kvcache_seq_free(kc, a), slm_kvcache_seq_free(kc, b1), slm_kvcache_seq_free(kc, b2);
    slm_kvcache_stats st;
    slm_kvcache_stats_get(kc, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.cached, 3);
    int c3, b3 = new_seq(kc, p, n, &c3);
    assert_int_equal(c3, 3 * bs);
    assert_int_equal(slm_kvcache_seq_len(kc, b3), 3 * bs);
    slm_kvcache_stats_get(kc, &st);
    assert_int_equal(st.used, 3);
    assert_int_equal(st.cached, 0);
    assert_int_equal(st.used + st.cached + st.free, st.total);
    check_ok(kc);
    slm_kvcache_free(kc);
}

/* Equal block contents after different prefixes are different blocks. */
static void test_prefix_chain_exact(void **state)
{
    (void)state;
    slm_kvcache *kc = make(16, 4);
    const int32_t x[8] = {1, 1, 1, 1, 2, 2, 2, 2}, y[8] = {3, 3, 3, 3, 2, 2, 2, 2},
                  z[8] = {5, 5, 5, 5, 2, 2, 2, 2};
    int a = new_seq(kc, NULL, 0, NULL), b = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, a, x, 8), SLM_OK);
    assert_int_equal(slm_kvcache_append(kc, b, y, 8), SLM_OK);
    assert_int_not_equal(block_at(kc, a, 1), block_at(kc, b, 1));
    slm_kvcache_step_begin(kc);
    int c;
    int s = new_seq(kc, y, 8, &c);
    assert_int_equal(c, 8);
    assert_int_equal(block_at(kc, s, 1), block_at(kc, b, 1));
    int t = new_seq(kc, z, 8, &c);
    assert_int_equal(c, 0);
    assert_int_equal(slm_kvcache_seq_len(kc, t), 0);
    slm_kvcache_free(kc);
}

static void test_copy_on_write(void **state)
{
    (void)state;
    slm_kvcache *kc = make(8, 4);
    const int32_t p[6] = {10, 11, 12, 13, 14, 15};
    int a = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, a, p, 6), SLM_OK);
    const slm_kv_copy *cp;
    int ncp;
    slm_kvcache_take_copies(kc, &cp, &ncp);
    assert_int_equal(ncp, 0);

    int b;
    assert_int_equal(slm_kvcache_seq_fork(kc, a, &b), SLM_OK);
    int32_t shared = block_at(kc, a, 1);
    assert_int_equal(slm_kvcache_block_refcount(kc, shared), 2);
    assert_int_equal(slm_kvcache_blocks_needed(kc, b, 1), 1); /* the copy */

    const int32_t tb = 77, ta = 88;
    assert_int_equal(slm_kvcache_append(kc, b, &tb, 1), SLM_OK);
    int32_t mine = block_at(kc, b, 1);
    assert_int_not_equal(mine, shared);
    assert_int_equal(block_at(kc, b, 0), block_at(kc, a, 0)); /* full block still shared */
    slm_kvcache_take_copies(kc, &cp, &ncp);
    assert_int_equal(ncp, 1);
    assert_int_equal(cp[0].src, shared);
    assert_int_equal(cp[0].dst, mine);
    assert_int_equal(slm_kvcache_block_refcount(kc, shared), 1);

    /* a is the sole owner now: it writes in place, no copy. */
    assert_int_equal(slm_kvcache_append(kc, a, &ta, 1), SLM_OK);
    assert_int_equal(block_at(kc, a, 1), shared);
    slm_kvcache_take_copies(kc, &cp, &ncp);
    assert_int_equal(ncp, 0);
    int nf;
    const int32_t *ka = slm_kvcache_block_tokens(kc, shared, &nf), *kb;
    assert_int_equal(nf, 3);
    assert_int_equal(ka[2], ta);
    kb = slm_kvcache_block_tokens(kc, mine, &nf);
    assert_int_equal(nf, 3);
    assert_int_equal(kb[0], 14);
    assert_int_equal(kb[1], 15);
    assert_int_equal(kb[2], tb);

    /* A copy whose destination is freed before it is taken is dropped. */
    int c;
    assert_int_equal(slm_kvcache_seq_fork(kc, a, &c), SLM_OK);
    assert_int_equal(slm_kvcache_append(kc, c, &tb, 1), SLM_OK);
    slm_kvcache_seq_free(kc, c);
    slm_kvcache_take_copies(kc, &cp, &ncp);
    assert_int_equal(ncp, 0);
    check_ok(kc);
    slm_kvcache_free(kc);
}

static void test_lru_order(void **state)
{
    (void)state;
    /* bs 2, 4 blocks; three sequences of one full block each. */
    slm_kvcache *kc = make(4, 2);
    const int32_t t[4][2] = {{1, 2}, {3, 4}, {5, 6}, {7, 8}};
    int s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = new_seq(kc, NULL, 0, NULL);
        assert_int_equal(slm_kvcache_append(kc, s[i], t[i], 2), SLM_OK);
    }
    int32_t blk[3];
    for (int i = 0; i < 3; i++)
        blk[i] = block_at(kc, s[i], 0);
    slm_kvcache_step_begin(kc);
    for (int i = 0; i < 3; i++)
        slm_kvcache_seq_free(kc, s[i]); /* LRU order now: 0, 1, 2 */

    slm_kvcache_stats st;
    slm_kvcache_stats_get(kc, &st);
    assert_int_equal(st.cached, 3);
    assert_int_equal(st.free, 1);

    /* The never-used block goes before any cached one. */
    int d = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, d, t[3], 1), SLM_OK);
    int32_t spare = block_at(kc, d, 0);
    for (int i = 0; i < 3; i++)
        assert_int_not_equal(spare, blk[i]);
    /* Released, a partial block holds nothing findable: it is reused first. */
    slm_kvcache_seq_free(kc, d);
    d = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, d, t[3], 1), SLM_OK);
    assert_int_equal(block_at(kc, d, 0), spare);

    /* Touch sequence 0's block (revive and release): 1 becomes the oldest. */
    int c, r = new_seq(kc, t[0], 2, &c);
    assert_int_equal(c, 2);
    slm_kvcache_seq_free(kc, r);

    int e = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, e, t[3], 2), SLM_OK);
    assert_int_equal(block_at(kc, e, 0), blk[1]);
    slm_kvcache_step_begin(kc);
    r = new_seq(kc, t[1], 2, &c);
    assert_int_equal(c, 0); /* evicted */
    slm_kvcache_seq_free(kc, r);
    assert_true(slm_kvcache_block_is_cached(kc, blk[2])); /* still cached */
    assert_true(slm_kvcache_block_is_cached(kc, blk[0]));

    /* Next eviction takes 2's block (0 was touched after it). */
    int f = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, f, t[3], 1), SLM_OK);
    assert_int_equal(block_at(kc, f, 0), blk[2]);
    check_ok(kc);
    slm_kvcache_free(kc);
}

/* A freed sequence's later blocks are evicted before its earlier ones: they
 * are useless without their prefix. */
static void test_evict_tail_first(void **state)
{
    (void)state;
    slm_kvcache *kc = make(2, 2);
    const int32_t p[4] = {1, 2, 3, 4}, q[2] = {9, 9};
    int a = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, a, p, 4), SLM_OK);
    int32_t first = block_at(kc, a, 0), second = block_at(kc, a, 1);
    slm_kvcache_step_begin(kc);
    slm_kvcache_seq_free(kc, a);
    int b = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, b, q, 2), SLM_OK);
    assert_int_equal(block_at(kc, b, 0), second);
    int c, r = new_seq(kc, p, 4, &c);
    assert_int_equal(c, 2);
    assert_int_equal(block_at(kc, r, 0), first);
    check_ok(kc);
    slm_kvcache_free(kc);
}

static void test_out_of_blocks(void **state)
{
    (void)state;
    int bs = tu_int(1, 9);
    slm_kvcache *kc = make(3, bs);
    int32_t tok[64];
    for (int i = 0; i < 64; i++)
        tok[i] = i;
    int a = new_seq(kc, NULL, 0, NULL), b = new_seq(kc, NULL, 0, NULL);
    assert_int_equal(slm_kvcache_append(kc, a, tok, 2 * bs), SLM_OK);
    assert_int_equal(slm_kvcache_room(kc, b), bs);
    assert_false(slm_kvcache_can_append(kc, b, bs + 1));
    assert_int_equal(slm_kvcache_append(kc, b, tok, bs + 1), SLM_STATUS_OUT_OF_MEMORY);
    assert_int_equal(slm_kvcache_seq_len(kc, b), 0); /* unchanged */
    slm_kvcache_stats st;
    slm_kvcache_stats_get(kc, &st);
    assert_int_equal(st.used, 2);
    assert_int_equal(slm_kvcache_append(kc, b, tok, bs), SLM_OK);
    assert_int_equal(slm_kvcache_room(kc, a), 0);
    assert_int_equal(slm_kvcache_append(kc, a, tok, 1), SLM_STATUS_OUT_OF_MEMORY);
    assert_int_equal(slm_kvcache_seq_len(kc, a), 2 * bs);
    assert_int_equal(slm_kvcache_slot_of(kc, a, 2 * bs), -1);
    /* Blocks of a live sequence are never evicted, cached or not. */
    slm_kvcache_stats_get(kc, &st);
    assert_int_equal(st.used, 3);
    assert_int_equal(st.free + st.cached, 0);
    check_ok(kc);
    slm_kvcache_free(kc);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    slm_kvcache *kc = NULL;
    assert_int_equal(slm_kvcache_create(0, 16, &kc), SLM_STATUS_INVALID_ARGUMENT);
    assert_null(kc);
    assert_int_equal(slm_kvcache_create(4, 0, &kc), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(slm_kvcache_create(1 << 30, 16, &kc), SLM_STATUS_INVALID_ARGUMENT);
    assert_true(strlen(slm_last_error()) > 0);
    kc = make(4, 4);
    const int32_t t = 1;
    assert_int_equal(slm_kvcache_append(kc, 0, &t, 1), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(slm_kvcache_append(kc, -3, &t, 1), SLM_STATUS_INVALID_ARGUMENT);
    int a = new_seq(kc, NULL, 0, NULL), b;
    assert_int_equal(slm_kvcache_append(kc, a, &t, -1), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(slm_kvcache_append(kc, a, NULL, 1), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(slm_kvcache_seq_fork(kc, a + 1, &b), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(slm_kvcache_blocks_needed(kc, 99, 1), -1);
    const int32_t *tb;
    int nb;
    assert_int_equal(slm_kvcache_block_table(kc, 99, &tb, &nb), SLM_STATUS_INVALID_ARGUMENT);
    slm_kvcache_seq_free(kc, a);
    slm_kvcache_seq_free(kc, a); /* a dead id: nothing happens */
    assert_int_equal(slm_kvcache_seq_len(kc, a), -1);
    slm_kvcache_free(kc);
    slm_kvcache_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* Long random run against a reference model                                 */
/* ------------------------------------------------------------------------ */

#define MAX_SEQS 12
#define MAX_TOK 512

typedef struct mseq {
    int live, id, n;
    int32_t tok[MAX_TOK];
    uint64_t ph[MAX_TOK]; /* ph[p]: hash of tok[0..p] */
} mseq;

typedef struct model {
    slm_kvcache *kc;
    int bs, n_blocks;
    mseq seqs[MAX_SEQS];
    int32_t *refs;  /* [n_blocks] recounted from the tables */
    uint8_t *was_cached; /* [n_blocks] scratch */
    uint64_t *dev;  /* [n_blocks * bs] shadow device pool: prefix hash per slot */
    int32_t hist[4][MAX_TOK]; /* token arrays of freed sequences, for prefix hits */
    int hist_n[4];
    long hits, cows, ooms;
} model;

static uint64_t step_hash(uint64_t h, int32_t t)
{
    h ^= (uint64_t)(uint32_t)t + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static void model_recount(model *m)
{
    memset(m->refs, 0, sizeof(int32_t) * (size_t)m->n_blocks);
    for (int i = 0; i < MAX_SEQS; i++) {
        if (!m->seqs[i].live)
            continue;
        const int32_t *t;
        int nb;
        assert_int_equal(slm_kvcache_block_table(m->kc, m->seqs[i].id, &t, &nb), SLM_OK);
        for (int j = 0; j < nb; j++)
            m->refs[t[j]]++;
    }
}

static int model_unreferenced(const model *m)
{
    int n = 0;
    for (int b = 0; b < m->n_blocks; b++)
        n += m->refs[b] == 0;
    return n;
}

/* Everything the manager says must agree with the model. */
static void model_check(model *m)
{
    check_ok(m->kc);
    model_recount(m);
    int used = 0;
    for (int b = 0; b < m->n_blocks; b++) {
        assert_int_equal(slm_kvcache_block_refcount(m->kc, b), m->refs[b]);
        used += m->refs[b] > 0;
    }
    slm_kvcache_stats st;
    slm_kvcache_stats_get(m->kc, &st);
    assert_int_equal(st.total, m->n_blocks);
    assert_int_equal(st.used, used);
    assert_int_equal(st.used + st.cached + st.free, st.total);
    for (int i = 0; i < MAX_SEQS; i++) {
        const mseq *s = &m->seqs[i];
        if (!s->live)
            continue;
        assert_int_equal(slm_kvcache_seq_len(m->kc, s->id), s->n);
        const int32_t *t;
        int nb;
        assert_int_equal(slm_kvcache_block_table(m->kc, s->id, &t, &nb), SLM_OK);
        assert_int_equal(nb, (s->n + m->bs - 1) / m->bs);
        for (int p = 0; p < s->n; p++) {
            int32_t slot = slm_kvcache_slot_of(m->kc, s->id, p);
            assert_int_equal(slot, t[p / m->bs] * m->bs + p % m->bs);
            assert_int_equal(slm_kvcache_block_tokens(m->kc, t[p / m->bs], NULL)[p % m->bs],
                             s->tok[p]);
            if (m->dev[slot] != s->ph[p])
                fail_msg("seq %d position %d reads K/V of another prefix", i, p);
        }
        assert_int_equal(slm_kvcache_slot_of(m->kc, s->id, s->n), -1);
    }
}

static int32_t rand_token(void)
{
    /* A small alphabet half the time, so equal blocks arise by accident. */
    return tu_int(0, 1) ? tu_int(0, 2) : tu_int(0, 100000);
}

static void model_set_tokens(mseq *s, int from, const int32_t *tok, int n)
{
    for (int i = 0; i < n; i++) {
        int p = from + i;
        s->tok[p] = tok[i];
        s->ph[p] = step_hash(p ? s->ph[p - 1] : 1469598103934665603ULL, tok[i]);
    }
}

/* Appends n tokens to model sequence i, predicting the outcome. */
static void op_append(model *m, int i, const int32_t *tok, int n)
{
    mseq *s = &m->seqs[i];
    model_recount(m);
    const int32_t *t;
    int nb;
    assert_int_equal(slm_kvcache_block_table(m->kc, s->id, &t, &nb), SLM_OK);
    int32_t before[MAX_TOK];
    memcpy(before, t, sizeof(int32_t) * (size_t)nb);
    int nb_before = nb;
    int cow = n > 0 && s->n % m->bs != 0 && m->refs[t[nb - 1]] > 1;
    int need = (s->n + n + m->bs - 1) / m->bs - nb + cow;
    int ok = need <= model_unreferenced(m);
    assert_int_equal(slm_kvcache_blocks_needed(m->kc, s->id, n), need);
    assert_int_equal(slm_kvcache_can_append(m->kc, s->id, n), ok);
    slm_status st = slm_kvcache_append(m->kc, s->id, tok, n);
    assert_int_equal(st, ok ? SLM_OK : SLM_STATUS_OUT_OF_MEMORY);
    const slm_kv_copy *cp;
    int ncp;
    slm_kvcache_take_copies(m->kc, &cp, &ncp);
    assert_int_equal(slm_kvcache_block_table(m->kc, s->id, &t, &nb), SLM_OK);
    if (!ok) {
        m->ooms++;
        assert_int_equal(ncp, 0);
        assert_int_equal(nb, nb_before);
        assert_memory_equal(t, before, sizeof(int32_t) * (size_t)nb);
        return;
    }
    /* Blocks handed out were not in use by anyone (eviction never takes a
     * block in use). */
    for (int j = cow ? nb_before - 1 : nb_before; j < nb; j++)
        assert_int_equal(m->refs[t[j]], 0);
    for (int j = 0; j < nb_before - cow; j++)
        assert_int_equal(t[j], before[j]);
    assert_int_equal(ncp, cow);
    if (cow) {
        m->cows++;
        assert_int_equal(cp[0].src, before[nb_before - 1]);
        assert_int_equal(cp[0].dst, t[nb_before - 1]);
        memcpy(m->dev + (size_t)cp[0].dst * (size_t)m->bs, m->dev + (size_t)cp[0].src * (size_t)m->bs,
               sizeof(uint64_t) * (size_t)m->bs); /* what the engine does on the device */
    }
    int from = s->n;
    model_set_tokens(s, from, tok, n);
    s->n += n;
    for (int p = from; p < s->n; p++) /* what the step's kv_store does */
        m->dev[slm_kvcache_slot_of(m->kc, s->id, p)] = s->ph[p];
}

static int free_slot(const model *m)
{
    for (int i = 0; i < MAX_SEQS; i++)
        if (!m->seqs[i].live)
            return i;
    return -1;
}

static int live_slot(const model *m)
{
    int pick = -1, seen = 0;
    for (int i = 0; i < MAX_SEQS; i++)
        if (m->seqs[i].live && tu_int(0, seen++) == 0)
            pick = i;
    return pick;
}

static void op_create(model *m)
{
    int i = free_slot(m);
    if (i < 0)
        return;
    int32_t prompt[MAX_TOK];
    int n = 0;
    int src = tu_int(0, 2);
    if (src == 0) { /* a prefix of a live sequence */
        int j = live_slot(m);
        if (j >= 0) {
            n = tu_int(0, m->seqs[j].n);
            memcpy(prompt, m->seqs[j].tok, sizeof(int32_t) * (size_t)n);
        }
    } else if (src == 1) { /* a prefix of a freed one */
        int h = tu_int(0, 3);
        n = tu_int(0, m->hist_n[h]);
        memcpy(prompt, m->hist[h], sizeof(int32_t) * (size_t)n);
    }
    int extra = tu_int(0, 3 * m->bs);
    if (n + extra > MAX_TOK / 2)
        extra = 0;
    for (int k = 0; k < extra; k++)
        prompt[n + k] = rand_token();
    n += extra;

    mseq *s = &m->seqs[i];
    int cached = -1;
    model_recount(m);
    for (int b = 0; b < m->n_blocks; b++)
        m->was_cached[b] = (uint8_t)slm_kvcache_block_is_cached(m->kc, b);
    assert_int_equal(slm_kvcache_seq_create(m->kc, prompt, n, &s->id, &cached), SLM_OK);
    assert_true(cached >= 0 && cached <= n && cached % m->bs == 0);
    m->hits += cached > 0;
    s->live = 1, s->n = cached;
    model_set_tokens(s, 0, prompt, cached);
    /* Matched blocks were either in use (now shared) or cached. */
    const int32_t *t;
    int nb;
    assert_int_equal(slm_kvcache_block_table(m->kc, s->id, &t, &nb), SLM_OK);
    assert_int_equal(nb, cached / m->bs);
    for (int j = 0; j < nb; j++)
        assert_true(m->refs[t[j]] > 0 || m->was_cached[t[j]]);
    model_check(m);
    if (n > cached && tu_int(0, 1))
        op_append(m, i, prompt + cached, n - cached);
}

static void op_free(model *m)
{
    int i = live_slot(m);
    if (i < 0)
        return;
    mseq *s = &m->seqs[i];
    int h = tu_int(0, 3);
    memcpy(m->hist[h], s->tok, sizeof(int32_t) * (size_t)s->n);
    m->hist_n[h] = s->n;
    slm_kvcache_seq_free(m->kc, s->id);
    s->live = 0;
    const slm_kv_copy *cp;
    int ncp;
    slm_kvcache_take_copies(m->kc, &cp, &ncp);
    assert_int_equal(ncp, 0);
}

static void op_fork(model *m)
{
    int i = live_slot(m), j = free_slot(m);
    if (i < 0 || j < 0)
        return;
    assert_int_equal(slm_kvcache_seq_fork(m->kc, m->seqs[i].id, &m->seqs[j].id), SLM_OK);
    m->seqs[j].live = 1;
    m->seqs[j].n = m->seqs[i].n;
    memcpy(m->seqs[j].tok, m->seqs[i].tok, sizeof(int32_t) * (size_t)m->seqs[i].n);
    memcpy(m->seqs[j].ph, m->seqs[i].ph, sizeof(uint64_t) * (size_t)m->seqs[i].n);
}

static void test_random_ops(void **state)
{
    (void)state;
    static model m; /* large: keep it off the stack */
    memset(&m, 0, sizeof m);
    const int sizes[] = {1, 2, 3, 5, 16};
    m.bs = sizes[tu_int(0, 4)];
    m.n_blocks = tu_int(24, 80) / (m.bs > 8 ? 2 : 1);
    m.kc = make(m.n_blocks, m.bs);
    m.refs = calloc((size_t)m.n_blocks, sizeof *m.refs);
    m.dev = calloc((size_t)m.n_blocks * (size_t)m.bs, sizeof *m.dev);
    m.was_cached = calloc((size_t)m.n_blocks, 1);
    assert_non_null(m.refs);
    assert_non_null(m.was_cached);
    assert_non_null(m.dev);
    print_message("random ops: block_size %d, %d blocks\n", m.bs, m.n_blocks);
    const int n_ops = 30000;
    for (int op = 0; op < n_ops; op++) {
        int r = tu_int(0, 99);
        if (r < 25) {
            op_create(&m);
        } else if (r < 35) {
            op_fork(&m);
        } else if (r < 75) {
            int i = live_slot(&m);
            if (i >= 0) {
                int32_t tok[64];
                int n = tu_int(0, 2 * m.bs + 1);
                if (m.seqs[i].n + n > MAX_TOK / 2)
                    n = 0;
                for (int k = 0; k < n; k++)
                    tok[k] = rand_token();
                op_append(&m, i, tok, n);
            }
        } else if (r < 95) {
            op_free(&m);
        } else {
            slm_kvcache_step_begin(m.kc);
        }
        if (tu_int(0, 2) == 0)
            slm_kvcache_step_begin(m.kc);
        model_check(&m);
    }
    print_message("random ops: %ld prefix hits, %ld copies, %ld out-of-blocks\n", m.hits, m.cows,
                  m.ooms);
    /* Every path was exercised (no partial blocks, so no copies, at size 1). */
    assert_true(m.hits > 0 && m.ooms > 0 && (m.cows > 0 || m.bs == 1));
    for (int i = 0; i < MAX_SEQS; i++)
        if (m.seqs[i].live)
            slm_kvcache_seq_free(m.kc, m.seqs[i].id), m.seqs[i].live = 0;
    model_check(&m);
    slm_kvcache_stats st;
    slm_kvcache_stats_get(m.kc, &st);
    assert_int_equal(st.used, 0); /* refcounts return to zero */
    free(m.refs);
    free(m.was_cached);
    free(m.dev);
    slm_kvcache_free(m.kc);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_reuse),    cmocka_unit_test(test_prefix_chain_exact),
        cmocka_unit_test(test_copy_on_write),   cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_evict_tail_first), cmocka_unit_test(test_out_of_blocks),   cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_random_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
