/*
 * test_scheduler.c — continuous batching (runtime/scheduler.c) driven with
 * synthetic "sampled" tokens: the token a request samples at position p is a
 * fixed function of (request, p), so recomputation after preemption must
 * reproduce it.
 *
 * A simulated device checks every plan: rows match the requests' known
 * tokens and positions, KV slots are the block manager's and distinct within
 * the step, block tables and logit rows are right; block copies are applied
 * and each token's K/V slot receives a hash of its whole prefix; then every
 * position a scheduled token attends to must hold the hash of that
 * request's own prefix (so prefix reuse, copy-on-write and preemption never
 * feed a request someone else's K/V). After every step: no request lost or
 * duplicated (state counts equal the scheduler's), computed ≤ known, a
 * request holds a KV sequence iff running and it holds exactly its computed
 * tokens, block accounting equals the KV manager's stats.
 *
 * Scenarios: a 2,000-token prompt beside 8 decoders; preemption under a tiny
 * pool; FCFS; queue full; context cap; prefix reuse; randomized long runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "testutil.h"

#define MAX_REQS 512

typedef struct treq {
    slm_sched_req *r;
    int id, n_prompt, max_new;
    int stop_at;        /* generated count at which the test stops it early, or -1 */
    int first_step;     /* step it was first scheduled in, -1 before */
    int removed;
    int admit_order;    /* order of its latest admission (running order) */
    slm_req_state before; /* state before the current step's schedule */
    uint64_t *ph;       /* ph[p]: hash of its tokens 0..p, valid for p < known */
} treq;

typedef struct sim {
    slm_sched *s;
    slm_sched_params p;
    uint64_t *dev;       /* shadow K/V pool: prefix hash per slot */
    uint32_t *slot_mark; /* step stamp per slot, to find duplicates */
    treq reqs[MAX_REQS];
    int n_reqs;
    int step;
    int n_admits;
    int queue[MAX_REQS]; /* the waiting queue as it should be: FCFS, */
    int n_queue;         /* preempted requests back at the front */
} sim;

static int32_t synth_token(int id, int pos)
{
    uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ULL + (uint64_t)pos * 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 31;
    return (int32_t)(x % 50000);
}

static uint64_t hstep(uint64_t h, int32_t t)
{
    h ^= (uint64_t)(uint32_t)t + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static void sim_init(sim *m, const slm_sched_params *p)
{
    memset(m, 0, sizeof *m);
    m->p = *p;
    slm_status st = slm_sched_create(p, &m->s);
    if (st != SLM_OK)
        fail_msg("create: %s", slm_last_error());
    size_t slots = (size_t)p->n_blocks * (size_t)p->block_size;
    m->dev = calloc(slots, sizeof *m->dev);
    m->slot_mark = calloc(slots, sizeof *m->slot_mark);
    assert_non_null(m->dev);
    assert_non_null(m->slot_mark);
}

static void sim_free(sim *m)
{
    for (int i = 0; i < m->n_reqs; i++) {
        if (!m->reqs[i].removed)
            slm_sched_remove(m->s, m->reqs[i].r);
        free(m->reqs[i].ph);
    }
    slm_sched_free(m->s);
    free(m->dev);
    free(m->slot_mark);
}

static void fill_ph(treq *t, int from)
{
    const int32_t *tok = slm_sched_req_tokens(t->r);
    int known = slm_sched_req_n_known(t->r);
    for (int p = from; p < known; p++)
        t->ph[p] = hstep(p ? t->ph[p - 1] : 1469598103934665603ULL, tok[p]);
}

/* Submits a request; returns its index or -1 with the status in *st. */
static int sim_submit(sim *m, const int32_t *prompt, int n, int max_new, slm_status *st_out)
{
    assert_true(m->n_reqs < MAX_REQS);
    treq *t = &m->reqs[m->n_reqs];
    memset(t, 0, sizeof *t);
    slm_status st = slm_sched_submit(m->s, prompt, n, max_new, t, &t->r);
    if (st_out)
        *st_out = st;
    if (st != SLM_OK) {
        assert_null(t->r);
        return -1;
    }
    t->id = m->n_reqs;
    t->n_prompt = n, t->max_new = max_new, t->stop_at = -1, t->first_step = -1;
    t->ph = malloc(sizeof(uint64_t) * (size_t)(n + max_new));
    assert_non_null(t->ph);
    assert_ptr_equal(slm_sched_req_user(t->r), t);
    fill_ph(t, 0);
    m->queue[m->n_queue++] = m->n_reqs;
    return m->n_reqs++;
}

static int submit_ok(sim *m, const int32_t *prompt, int n, int max_new)
{
    slm_status st;
    int i = sim_submit(m, prompt, n, max_new, &st);
    if (st != SLM_OK)
        fail_msg("submit: %s", slm_last_error());
    return i;
}

/* Checks the plan row by row and "runs" it on the shadow pool. */
static void check_and_execute(sim *m, const slm_sched_plan *pl)
{
    slm_kvcache *kc = slm_sched_kvcache(m->s);
    int bs = m->p.block_size;
    assert_true(pl->n_tokens <= m->p.max_batch_tokens);
    assert_true(pl->n_entries <= m->p.max_running);
    slm_step step;
    slm_sched_plan_step(pl, &step);
    assert_int_equal(step.n_tokens, pl->n_tokens);
    assert_int_equal(step.n_seqs, pl->n_entries);
    assert_ptr_equal(step.kv_slot, pl->kv_slot);

    for (int c = 0; c < pl->n_copies; c++) /* before the step, in order */
        memcpy(m->dev + (size_t)pl->copies[c].dst * (size_t)bs,
               m->dev + (size_t)pl->copies[c].src * (size_t)bs, sizeof(uint64_t) * (size_t)bs);

    uint32_t stamp = (uint32_t)m->step + 1;
    int row = 0, n_logit = 0;
    for (int e = 0; e < pl->n_entries; e++) {
        const slm_sched_entry *en = &pl->entries[e];
        treq *t = slm_sched_req_user(en->req);
        for (int f = 0; f < e; f++) /* no request twice in one step */
            assert_ptr_not_equal(pl->entries[f].req, en->req);
        assert_int_equal(slm_sched_req_state(en->req), SLM_REQ_RUNNING);
        if (t->first_step < 0)
            t->first_step = m->step;
        if (t->before == SLM_REQ_WAITING) { /* admitted now: the newest running */
            t->admit_order = ++m->n_admits;
            assert_true(m->n_queue > 0);
            if (m->queue[0] != t->id)
                fail_msg("request %d admitted before %d, first in line", t->id, m->queue[0]);
            memmove(m->queue, m->queue + 1, sizeof(int) * (size_t)--m->n_queue);
        }
        int computed = slm_sched_req_n_computed(en->req), known = slm_sched_req_n_known(en->req);
        int seq = slm_sched_req_kv_seq(en->req);
        assert_true(en->n_tokens >= 1);
        assert_int_equal(en->start + en->n_tokens, computed);
        assert_int_equal(en->start_row, row);
        const int32_t *tok = slm_sched_req_tokens(en->req), *bt;
        int nbt;
        assert_int_equal(slm_kvcache_block_table(kc, seq, &bt, &nbt), SLM_OK);
        assert_int_equal(pl->block_table_len[e], nbt);
        assert_int_equal(nbt, (computed + bs - 1) / bs);
        assert_memory_equal(pl->block_tables + pl->block_table_start[e], bt,
                            sizeof(int32_t) * (size_t)nbt);
        for (int i = 0; i < en->n_tokens; i++, row++) {
            int pos = en->start + i;
            assert_int_equal(pl->token_ids[row], tok[pos]);
            assert_int_equal(pl->positions[row], pos);
            assert_int_equal(pl->seq_of_token[row], e);
            int32_t slot = pl->kv_slot[row];
            assert_int_equal(slot, bt[pos / bs] * bs + pos % bs);
            assert_int_not_equal(m->slot_mark[slot], stamp); /* distinct in the step */
            m->slot_mark[slot] = stamp;
            m->dev[slot] = t->ph[pos]; /* kv_store */
        }
        int wants_logits = computed == known;
        assert_int_equal(en->logit_row, wants_logits ? row - 1 : -1);
        if (wants_logits) {
            assert_true(n_logit < pl->n_logit_rows);
            assert_int_equal(pl->logit_rows[n_logit++], en->logit_row);
        }
    }
    assert_int_equal(row, pl->n_tokens);
    assert_int_equal(n_logit, pl->n_logit_rows);

    /* attention: everything each token reads is its own prefix's K/V */
    for (int e = 0; e < pl->n_entries; e++) {
        const slm_sched_entry *en = &pl->entries[e];
        treq *t = slm_sched_req_user(en->req);
        int seq = slm_sched_req_kv_seq(en->req);
        for (int p = 0; p < en->start + en->n_tokens; p++)
            if (m->dev[slm_kvcache_slot_of(kc, seq, p)] != t->ph[p])
                fail_msg("request %d position %d reads K/V of another prefix", t->id, p);
    }
}

/* Samples a token for every entry with a logit row; applies early stops. */
static void sample_and_update(sim *m, const slm_sched_plan *pl)
{
    for (int e = 0; e < pl->n_entries; e++) {
        const slm_sched_entry *en = &pl->entries[e];
        if (en->logit_row < 0)
            continue;
        treq *t = slm_sched_req_user(en->req);
        int known = slm_sched_req_n_known(en->req);
        assert_int_equal(slm_sched_update(m->s, en->req, synth_token(t->id, known)), SLM_OK);
        fill_ph(t, known);
        int gen = known + 1 - t->n_prompt;
        if (gen == t->max_new)
            assert_int_equal(slm_sched_req_state(en->req), SLM_REQ_FINISHED_LENGTH);
        else if (gen == t->stop_at)
            assert_int_equal(slm_sched_finish(m->s, en->req, SLM_REQ_FINISHED_STOPPED), SLM_OK);
    }
}

static void check_invariants(sim *m)
{
    slm_kvcache *kc = slm_sched_kvcache(m->s);
    int n_state[5] = {0};
    int n_blocks = slm_kvcache_n_blocks(kc);
    uint8_t *used = calloc((size_t)n_blocks, 1);
    assert_non_null(used);
    int n_used = 0;
    for (int i = 0; i < m->n_reqs; i++) {
        const treq *t = &m->reqs[i];
        if (t->removed)
            continue;
        slm_req_state st = slm_sched_req_state(t->r);
        assert_true(st >= SLM_REQ_WAITING && st <= SLM_REQ_FINISHED_ABORTED);
        n_state[st]++;
        int known = slm_sched_req_n_known(t->r), computed = slm_sched_req_n_computed(t->r);
        assert_true(computed >= 0 && computed <= known);
        assert_true(known >= t->n_prompt && known <= t->n_prompt + t->max_new);
        const int32_t *tok = slm_sched_req_tokens(t->r);
        for (int p = t->n_prompt; p < known; p++)
            assert_int_equal(tok[p], synth_token(t->id, p));
        int seq = slm_sched_req_kv_seq(t->r);
        if (st == SLM_REQ_RUNNING) {
            assert_true(seq >= 0);
            assert_int_equal(slm_kvcache_seq_len(kc, seq), computed);
            const int32_t *bt;
            int nbt;
            assert_int_equal(slm_kvcache_block_table(kc, seq, &bt, &nbt), SLM_OK);
            for (int j = 0; j < nbt; j++)
                if (!used[bt[j]])
                    used[bt[j]] = 1, n_used++;
        } else {
            assert_int_equal(seq, -1);
            if (st == SLM_REQ_WAITING)
                assert_int_equal(computed, 0);
        }
    }
    free(used);
    slm_sched_stats ss;
    slm_sched_stats_get(m->s, &ss);
    assert_int_equal(ss.n_waiting, n_state[SLM_REQ_WAITING]);
    assert_int_equal(m->n_queue, ss.n_waiting);
    for (int i = 0; i < m->n_queue; i++)
        assert_int_equal(slm_sched_req_state(m->reqs[m->queue[i]].r), SLM_REQ_WAITING);
    assert_int_equal(ss.n_running, n_state[SLM_REQ_RUNNING]);
    assert_int_equal(ss.n_finished, n_state[2] + n_state[3] + n_state[4]);
    assert_true(ss.n_running <= m->p.max_running);
    slm_kvcache_stats ks;
    slm_kvcache_stats_get(kc, &ks);
    assert_int_equal(ks.used, n_used);
    assert_int_equal(ks.used + ks.cached + ks.free, ks.total);
    if (slm_kvcache_check(kc) != SLM_OK)
        fail_msg("kvcache: %s", slm_last_error());
}

static int in_plan(const slm_sched_plan *pl, const slm_sched_req *r)
{
    for (int e = 0; e < pl->n_entries; e++)
        if (pl->entries[e].req == r)
            return 1;
    return 0;
}

/* Preemption takes the newest running request not in the step: whatever is
 * still running and newer than a victim must be in the step. */
static void check_preemptions(sim *m, const slm_sched_plan *pl)
{
    int n = 0, victims[MAX_REQS];
    for (int i = 0; i < m->n_reqs; i++) {
        const treq *v = &m->reqs[i];
        if (v->removed || v->before != SLM_REQ_RUNNING ||
            slm_sched_req_state(v->r) != SLM_REQ_WAITING)
            continue;
        int k = n++; /* insertion sort by admission order */
        while (k > 0 && m->reqs[victims[k - 1]].admit_order > v->admit_order)
            victims[k] = victims[k - 1], k--;
        victims[k] = i;
        for (int j = 0; j < m->n_reqs; j++) {
            const treq *t = &m->reqs[j];
            if (!t->removed && t->before == SLM_REQ_RUNNING &&
                slm_sched_req_state(t->r) == SLM_REQ_RUNNING && t->admit_order > v->admit_order &&
                !in_plan(pl, t->r))
                fail_msg("request %d preempted while newer request %d kept its blocks", v->id,
                         t->id);
        }
    }
    assert_int_equal(n, pl->n_preempted);
    memmove(m->queue + n, m->queue, sizeof(int) * (size_t)m->n_queue);
    memcpy(m->queue, victims, sizeof(int) * (size_t)n);
    m->n_queue += n;
}

/* A request leaving the waiting queue without being admitted. */
static void queue_drop(sim *m, int id)
{
    for (int i = 0; i < m->n_queue; i++)
        if (m->queue[i] == id) {
            memmove(m->queue + i, m->queue + i + 1, sizeof(int) * (size_t)(m->n_queue - i - 1));
            m->n_queue--;
            return;
        }
}

/* One engine step; returns the plan (valid until the next step). */
static const slm_sched_plan *sim_step(sim *m)
{
    const slm_sched_plan *pl;
    for (int i = 0; i < m->n_reqs; i++)
        if (!m->reqs[i].removed)
            m->reqs[i].before = slm_sched_req_state(m->reqs[i].r);
    assert_int_equal(slm_sched_schedule(m->s, &pl), SLM_OK);
    check_preemptions(m, pl);
    check_and_execute(m, pl);
    sample_and_update(m, pl);
    check_invariants(m);
    m->step++;
    return pl;
}

static int all_finished(const sim *m)
{
    for (int i = 0; i < m->n_reqs; i++)
        if (!m->reqs[i].removed && !SLM_REQ_IS_FINISHED(slm_sched_req_state(m->reqs[i].r)))
            return 0;
    return 1;
}

/* Steps until every request finished, failing after max_steps. */
static void drain(sim *m, int max_steps)
{
    for (int guard = 0; !all_finished(m); guard++) {
        assert_true(guard < max_steps);
        sim_step(m);
    }
}

static void random_prompt(int32_t *p, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = tu_int(0, 49999);
}

static slm_sched_params params(int n_blocks, int bs, int budget, int max_running, int max_context)
{
    slm_sched_params p;
    slm_sched_params_default(&p);
    p.n_blocks = n_blocks, p.block_size = bs, p.max_batch_tokens = budget;
    p.max_running = max_running, p.max_context = max_context;
    return p;
}

/* ------------------------------------------------------------------------ */

static void test_long_prompt_beside_decoders(void **state)
{
    (void)state;
    static sim m;
    int budget = tu_int(256, 512);
    slm_sched_params p = params(1024, 16, budget, 16, 4096);
    sim_init(&m, &p);
    int32_t prompt[2000];
    int dec[8];
    for (int i = 0; i < 8; i++) {
        int n = tu_int(3, 40);
        random_prompt(prompt, n);
        dec[i] = submit_ok(&m, prompt, n, 1000);
    }
    /* until all 8 decode */
    for (int guard = 0;; guard++) {
        assert_true(guard < 10);
        int decoding = 0;
        for (int i = 0; i < 8; i++)
            decoding += slm_sched_req_n_known(m.reqs[dec[i]].r) > m.reqs[dec[i]].n_prompt;
        if (decoding == 8)
            break;
        sim_step(&m);
    }
    random_prompt(prompt, 2000);
    int big = submit_ok(&m, prompt, 2000, 5);
    int steps = 0, done = 0;
    while (!done) {
        const slm_sched_plan *pl = sim_step(&m);
        steps++;
        int seen = 0;
        for (int e = 0; e < pl->n_entries; e++) {
            treq *t = slm_sched_req_user(pl->entries[e].req);
            if (t->id == big) {
                done = pl->entries[e].logit_row >= 0;
            } else {
                assert_int_equal(pl->entries[e].n_tokens, 1); /* a decoder: one token */
                seen++;
            }
        }
        assert_int_equal(seen, 8); /* every decoder progresses every step */
        assert_true(steps <= (2000 + budget - 1) / budget + 1);
    }
    /* exactly the chunking the rule gives: budget − 8 prompt tokens a step */
    assert_int_equal(steps, (2000 + budget - 9) / (budget - 8));
    sim_free(&m);
}

static void test_preemption_tiny_pool(void **state)
{
    (void)state;
    static sim m;
    int bs = tu_int(2, 5);
    int n_blocks = 48 / bs + tu_int(0, 3);
    slm_sched_params p = params(n_blocks, bs, tu_int(8, 40), 8, 40);
    sim_init(&m, &p);
    int n_req = tu_int(6, 10);
    for (int i = 0; i < n_req; i++) {
        int32_t prompt[40];
        int n = tu_int(5, 20), max_new = tu_int(8, 40 - n);
        random_prompt(prompt, n);
        submit_ok(&m, prompt, n, max_new);
    }
    for (int guard = 0; !all_finished(&m); guard++) {
        assert_true(guard < 20000);
        sim_step(&m);
    }
    slm_sched_stats ss;
    slm_sched_stats_get(m.s, &ss);
    print_message("preemption: %ld preemptions in %ld steps (%d blocks of %d)\n",
                  ss.n_preemptions, ss.n_steps, n_blocks, bs);
    assert_true(ss.n_preemptions > 0);
    for (int i = 0; i < m.n_reqs; i++) {
        assert_int_equal(slm_sched_req_state(m.reqs[i].r), SLM_REQ_FINISHED_LENGTH);
        assert_int_equal(slm_sched_req_n_known(m.reqs[i].r), m.reqs[i].n_prompt + m.reqs[i].max_new);
    }
    slm_kvcache_stats ks;
    slm_kvcache_stats_get(slm_sched_kvcache(m.s), &ks);
    assert_int_equal(ks.used, 0); /* no block leaked */
    sim_free(&m);
}

static void test_fcfs(void **state)
{
    (void)state;
    static sim m;
    /* 8 blocks of 4: A takes 6 blocks, so B (6 blocks) waits; C (1 block)
     * would fit but must not overtake B. */
    slm_sched_params p = params(8, 4, 64, 8, 32);
    sim_init(&m, &p);
    int32_t prompt[32];
    random_prompt(prompt, 32);
    int a = submit_ok(&m, prompt, 20, 4);
    int b = submit_ok(&m, prompt + 1, 24, 4);
    int c = submit_ok(&m, prompt + 2, 3, 2);
    int a_done = -1;
    for (int guard = 0; !all_finished(&m); guard++) {
        assert_true(guard < 200);
        sim_step(&m);
        if (a_done < 0 && SLM_REQ_IS_FINISHED(slm_sched_req_state(m.reqs[a].r)))
            a_done = m.step;
        if (m.reqs[b].first_step < 0)
            assert_int_equal(m.reqs[c].first_step, -1);
    }
    assert_int_equal(m.reqs[a].first_step, 0);
    assert_true(m.reqs[b].first_step >= a_done); /* B had to wait for A's blocks */
    assert_true(m.reqs[c].first_step >= m.reqs[b].first_step);
    sim_free(&m);
}

static void test_queue_full(void **state)
{
    (void)state;
    static sim m;
    slm_sched_params p = params(64, 16, 64, 1, 256);
    p.max_waiting = tu_int(2, 5);
    sim_init(&m, &p);
    int32_t prompt[8];
    random_prompt(prompt, 8);
    for (int i = 0; i < p.max_waiting; i++)
        submit_ok(&m, prompt, 8, 3);
    assert_true(slm_sched_queue_full(m.s));
    slm_status st;
    assert_int_equal(sim_submit(&m, prompt, 8, 3, &st), -1);
    assert_int_equal(st, SLM_STATUS_OUT_OF_MEMORY);
    assert_non_null(strstr(slm_last_error(), "queue full"));
    sim_step(&m); /* admits one (max_running 1) */
    assert_false(slm_sched_queue_full(m.s));
    submit_ok(&m, prompt, 8, 3);
    for (int guard = 0; !all_finished(&m); guard++) {
        assert_true(guard < 100);
        sim_step(&m);
    }
    sim_free(&m);
}

static void test_context_cap(void **state)
{
    (void)state;
    static sim m;
    int cap = tu_int(20, 100);
    slm_sched_params p = params(64, 16, 64, 4, cap);
    sim_init(&m, &p);
    int32_t prompt[100];
    random_prompt(prompt, 100);
    slm_status st;
    assert_int_equal(sim_submit(&m, prompt, cap - 4, 5, &st), -1);
    assert_int_equal(st, SLM_STATUS_INVALID_ARGUMENT);
    char want[32];
    snprintf(want, sizeof want, "limit is %d", cap);
    assert_non_null(strstr(slm_last_error(), want));
    assert_int_equal(sim_submit(&m, prompt, 0, 5, &st), -1);
    assert_int_equal(st, SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(sim_submit(&m, prompt, 5, 0, &st), -1);
    assert_int_equal(st, SLM_STATUS_INVALID_ARGUMENT);
    int ok = submit_ok(&m, prompt, cap - 4, 4); /* exactly at the cap */
    for (int guard = 0; !all_finished(&m); guard++) {
        assert_true(guard < 100);
        sim_step(&m);
    }
    assert_int_equal(slm_sched_req_n_known(m.reqs[ok].r), cap);
    sim_free(&m);

    /* A cap the pool could never hold, and other bad parameters. */
    slm_sched *s = NULL;
    p = params(4, 16, 64, 4, 65);
    assert_int_equal(slm_sched_create(&p, &s), SLM_STATUS_INVALID_ARGUMENT);
    assert_null(s);
    p = params(4, 16, 0, 4, 64);
    assert_int_equal(slm_sched_create(&p, &s), SLM_STATUS_INVALID_ARGUMENT);
    p = params(4, 16, 64, 0, 64);
    assert_int_equal(slm_sched_create(&p, &s), SLM_STATUS_INVALID_ARGUMENT);
    slm_sched_free(NULL);
}

static void test_prefix_reuse(void **state)
{
    (void)state;
    for (int cache = 0; cache <= 1; cache++) {
        static sim m;
        slm_sched_params p = params(64, 16, 256, 4, 512);
        p.prefix_cache = cache;
        sim_init(&m, &p);
        int32_t prompt[64];
        random_prompt(prompt, 64);
        int a = submit_ok(&m, prompt, 40, 3);
        drain(&m, 200);
        slm_sched_remove(m.s, m.reqs[a].r);
        m.reqs[a].removed = 1;
        /* A's 42 computed tokens left two full blocks cached. */
        int b = submit_ok(&m, prompt, 50, 2);
        const slm_sched_plan *pl = sim_step(&m);
        assert_int_equal(pl->n_entries, 1);
        assert_int_equal(pl->entries[0].start, cache ? 32 : 0);
        assert_int_equal(pl->entries[0].n_tokens, cache ? 18 : 50);
        drain(&m, 200);
        /* The whole prompt cached: the last token is still computed. */
        int c = submit_ok(&m, prompt, 48, 2);
        pl = sim_step(&m);
        assert_int_equal(pl->entries[0].start, cache ? 32 : 0);
        assert_true(pl->entries[0].logit_row >= 0);
        drain(&m, 200);
        assert_int_equal(slm_sched_req_n_known(m.reqs[b].r), 52);
        assert_int_equal(slm_sched_req_n_known(m.reqs[c].r), 50);
        sim_free(&m);
    }
}

/* Random traffic: shared system prompts, early stops, cancellations in any
 * state, random pool/budget/limits; then drain. */
static void test_random_runs(void **state)
{
    (void)state;
    for (int run = 0; run < 6; run++) {
        static sim m;
        const int sizes[] = {1, 2, 4, 5, 16};
        int bs = sizes[tu_int(0, 4)];
        int max_context = tu_int(24, 120);
        int n_blocks = (max_context + bs - 1) / bs + tu_int(0, 40);
        slm_sched_params p = params(n_blocks, bs, tu_int(4, 96), tu_int(1, 12), max_context);
        p.max_waiting = tu_int(2, 24);
        p.prefix_cache = tu_int(0, 3) != 0;
        sim_init(&m, &p);
        int32_t sys[3][120];
        for (int k = 0; k < 3; k++)
            random_prompt(sys[k], 120);
        int n_steps = 700;
        for (int it = 0; it < n_steps || !all_finished(&m); it++) {
            assert_true(it < 50000);
            if (it < n_steps && m.n_reqs < MAX_REQS && tu_int(0, 2) == 0) {
                int32_t prompt[120];
                int n = tu_int(1, max_context - 1), max_new = tu_int(1, max_context - n + 2);
                int shared = tu_int(0, n);
                memcpy(prompt, sys[tu_int(0, 2)], sizeof(int32_t) * (size_t)shared);
                random_prompt(prompt + shared, n - shared);
                slm_status st;
                int i = sim_submit(&m, prompt, n, max_new, &st);
                if (i < 0)
                    assert_true(st == SLM_STATUS_OUT_OF_MEMORY || n + max_new > max_context);
                else if (tu_int(0, 4) == 0)
                    m.reqs[i].stop_at = tu_int(1, max_new);
            }
            if (it < n_steps && m.n_reqs > 0 && tu_int(0, 15) == 0) { /* cancel any state */
                treq *t = &m.reqs[tu_int(0, m.n_reqs - 1)];
                if (!t->removed) {
                    queue_drop(&m, t->id);
                    slm_sched_remove(m.s, t->r);
                    t->removed = 1;
                }
            }
            sim_step(&m);
        }
        for (int i = 0; i < m.n_reqs; i++) {
            const treq *t = &m.reqs[i];
            if (t->removed)
                continue;
            slm_req_state st = slm_sched_req_state(t->r);
            int gen = slm_sched_req_n_known(t->r) - t->n_prompt;
            if (st == SLM_REQ_FINISHED_LENGTH)
                assert_int_equal(gen, t->max_new);
            else
                assert_true(st == SLM_REQ_FINISHED_STOPPED && gen == t->stop_at);
        }
        slm_sched_stats ss;
        slm_sched_stats_get(m.s, &ss);
        slm_kvcache_stats ks;
        slm_kvcache_stats_get(slm_sched_kvcache(m.s), &ks);
        assert_int_equal(ks.used, 0);
        print_message("random run %d: %d requests, %ld steps, %ld preemptions (bs %d, %d blocks)\n",
                      run, m.n_reqs, ss.n_steps, ss.n_preemptions, bs, n_blocks);
        /* first admissions follow submission order (FCFS) */
        int last = -1;
        for (int i = 0; i < m.n_reqs; i++)
            if (m.reqs[i].first_step >= 0) {
                assert_true(m.reqs[i].first_step >= last);
                last = m.reqs[i].first_step;
            }
        sim_free(&m);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_prompt_beside_decoders),
        cmocka_unit_test(test_preemption_tiny_pool),
        cmocka_unit_test(test_fcfs),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_context_cap),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_random_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
