/*
 * scheduler.c — continuous batching over the paged KV block manager (see
 * scheduler.h for the rule and the engine loop).
 *
 * Structures: two intrusive doubly linked lists of requests — `waiting`
 * (FCFS; preempted requests are pushed back at its front) and `running` (in
 * admission order, so its tail is the newest running request, the one
 * preempted first) — and `finished`, where requests wait for
 * slm_sched_remove() so the engine can read their tokens. The plan's arrays are allocated once in create
 * for the worst step (max_batch_tokens tokens, max_running sequences of
 * max_context tokens), so planning a step allocates nothing.
 *
 * Invariants between calls: computed ≤ known ≤ n_prompt + max_new; a
 * request holds a KV sequence iff it is RUNNING, and that sequence holds
 * exactly its `computed` tokens.
 */
#include "scheduler.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

struct slm_sched_req {
    slm_req_state state;
    int32_t *tokens; /* [n_prompt + max_new]: prompt, then sampled tokens */
    int n_prompt, n_known, n_computed, max_new;
    int seq;         /* KV sequence, -1 unless RUNNING */
    int in_step;     /* scheduled in the plan being built */
    int n_preempted;
    int no_prefix;   /* never admitted onto cached blocks (embeddings) */
    void *user;
    slm_sched_req *prev, *next; /* links in `waiting` or `running` */
};

typedef struct req_list {
    slm_sched_req *head, *tail;
    int n;
} req_list;

struct slm_sched {
    slm_sched_params p;
    slm_kvcache *kc;
    req_list waiting, running, finished;
    long n_preemptions, n_steps;

    /* the plan being built / last built */
    slm_sched_plan plan;
    slm_sched_entry *entries;
    int32_t *token_ids, *positions, *seq_of_token, *kv_slot;
    int32_t *bt_start, *bt_len, *bt;
    int32_t *logit_rows;
    int budget; /* tokens left in the step being planned */
};

/* --- lists ----------------------------------------------------------------- */

static void list_unlink(req_list *l, slm_sched_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

static void list_push_back(req_list *l, slm_sched_req *r)
{
    r->next = NULL, r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void list_push_front(req_list *l, slm_sched_req *r)
{
    r->prev = NULL, r->next = l->head;
    if (l->head)
        l->head->prev = r;
    else
        l->tail = r;
    l->head = r;
    l->n++;
}

/* --- create / free ----------------------------------------------------------- */

void slm_sched_params_default(slm_sched_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->n_blocks = 1024;
    p->block_size = 16;
    p->max_batch_tokens = 512;
    p->max_running = 64;
    p->max_waiting = 256;
    p->max_context = 4096;
    p->prefix_cache = 1;
}

static slm_status check_params(const slm_sched_params *p)
{
    if (p->size < sizeof *p)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: params.size %zu, expected %zu",
                         p->size, sizeof *p);
    if (p->n_blocks < 1 || p->block_size < 1 || p->n_blocks > INT32_MAX / p->block_size)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "scheduler: bad KV pool (%d blocks of %d tokens)", p->n_blocks,
                         p->block_size);
    if (p->max_batch_tokens < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: max_batch_tokens %d < 1",
                         p->max_batch_tokens);
    if (p->max_running < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: max_running %d < 1",
                         p->max_running);
    if (p->max_waiting < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: max_waiting %d < 1",
                         p->max_waiting);
    if (p->max_context < 2 || p->max_context > p->n_blocks * p->block_size)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "scheduler: max_context %d must be in [2, %d] (the KV pool's tokens)",
                         p->max_context, p->n_blocks * p->block_size);
    int64_t per_seq = (p->max_context + p->block_size - 1) / p->block_size;
    if (per_seq * p->max_running > INT32_MAX / 4)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "scheduler: max_running %d × %lld blocks per sequence is too large",
                         p->max_running, (long long)per_seq);
    return SLM_OK;
}

slm_status slm_sched_create(const slm_sched_params *p, slm_sched **out)
{
    if (!p || !out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: NULL argument");
    *out = NULL;
    slm_status st = check_params(p);
    if (st != SLM_OK)
        return st;
    slm_sched *s = calloc(1, sizeof *s);
    if (!s)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "scheduler: out of host memory");
    s->p = *p;
    s->p.size = sizeof s->p;
    if ((st = slm_kvcache_create(p->n_blocks, p->block_size, &s->kc)) != SLM_OK) {
        free(s);
        return st;
    }
    size_t nt = (size_t)p->max_batch_tokens, ns = (size_t)p->max_running;
    size_t nb = ns * (size_t)((p->max_context + p->block_size - 1) / p->block_size);
    s->entries = malloc(sizeof *s->entries * ns);
    s->token_ids = malloc(sizeof(int32_t) * nt);
    s->positions = malloc(sizeof(int32_t) * nt);
    s->seq_of_token = malloc(sizeof(int32_t) * nt);
    s->kv_slot = malloc(sizeof(int32_t) * nt);
    s->logit_rows = malloc(sizeof(int32_t) * ns);
    s->bt_start = malloc(sizeof(int32_t) * ns);
    s->bt_len = malloc(sizeof(int32_t) * ns);
    s->bt = malloc(sizeof(int32_t) * nb);
    if (!s->entries || !s->token_ids || !s->positions || !s->seq_of_token || !s->kv_slot ||
        !s->logit_rows || !s->bt_start || !s->bt_len || !s->bt) {
        slm_sched_free(s);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "scheduler: out of host memory for step arrays");
    }
    *out = s;
    return SLM_OK;
}

static void req_free(slm_sched_req *r)
{
    free(r->tokens);
    free(r);
}

static void free_list(req_list *l)
{
    while (l->head) {
        slm_sched_req *r = l->head;
        list_unlink(l, r);
        req_free(r);
    }
}

void slm_sched_free(slm_sched *s)
{
    if (!s)
        return;
    free_list(&s->waiting);
    free_list(&s->finished);
    free_list(&s->running);
    slm_kvcache_free(s->kc);
    free(s->entries);
    free(s->token_ids);
    free(s->positions);
    free(s->seq_of_token);
    free(s->kv_slot);
    free(s->logit_rows);
    free(s->bt_start);
    free(s->bt_len);
    free(s->bt);
    free(s);
}

/* --- submission -------------------------------------------------------------- */

int slm_sched_queue_full(const slm_sched *s) { return s->waiting.n >= s->p.max_waiting; }

slm_status slm_sched_submit(slm_sched *s, const int32_t *prompt, int n_prompt, int max_new_tokens,
                            void *user, slm_sched_req **out)
{
    if (!s || !out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: NULL argument to submit");
    *out = NULL;
    if (n_prompt < 1 || !prompt)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: empty prompt");
    if (max_new_tokens < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: max_new_tokens %d < 1",
                         max_new_tokens);
    int64_t need = (int64_t)n_prompt + max_new_tokens;
    if (need > s->p.max_context)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "scheduler: request needs %lld tokens of context (prompt %d + "
                         "max_new_tokens %d), the limit is %d",
                         (long long)need, n_prompt, max_new_tokens, s->p.max_context);
    if (slm_sched_queue_full(s))
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "scheduler: queue full (%d requests waiting)",
                         s->waiting.n);
    slm_sched_req *r = calloc(1, sizeof *r);
    if (!r || !(r->tokens = malloc(sizeof(int32_t) * (size_t)need))) {
        free(r);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "scheduler: out of host memory for a request");
    }
    memcpy(r->tokens, prompt, sizeof(int32_t) * (size_t)n_prompt);
    r->state = SLM_REQ_WAITING;
    r->n_prompt = r->n_known = n_prompt;
    r->max_new = max_new_tokens;
    r->seq = -1;
    r->user = user;
    list_push_back(&s->waiting, r);
    *out = r;
    return SLM_OK;
}

/* --- planning -------------------------------------------------------------- */

/* Frees r's blocks and puts it at the front of the waiting queue; it will
 * recompute its known tokens (reusing whatever full blocks stay cached). */
static void preempt(slm_sched *s, slm_sched_req *r)
{
    SLM_ASSERT(r->state == SLM_REQ_RUNNING && !r->in_step);
    slm_kvcache_seq_free(s->kc, r->seq);
    r->seq = -1;
    r->n_computed = 0;
    r->state = SLM_REQ_WAITING;
    r->n_preempted++;
    list_unlink(&s->running, r);
    list_push_front(&s->waiting, r);
    s->n_preemptions++;
    s->plan.n_preempted++;
}

/* The newest running request not in this step, other than `except`. */
static slm_sched_req *newest_unscheduled(slm_sched *s, const slm_sched_req *except)
{
    for (slm_sched_req *v = s->running.tail; v; v = v->prev)
        if (!v->in_step && v != except)
            return v;
    return NULL;
}

/* Adds n tokens of r (from its computed count on) to the step: KV slots,
 * rows, and a logit row if that completes its known tokens. The caller
 * has checked the budget and that the blocks are available. */
static void grant(slm_sched *s, slm_sched_req *r, int n)
{
    slm_sched_plan *pl = &s->plan;
    slm_status st = slm_kvcache_append(s->kc, r->seq, r->tokens + r->n_computed, n);
    SLM_ASSERT(st == SLM_OK);
    (void)st;
    int e = pl->n_entries++;
    slm_sched_entry *en = &s->entries[e];
    en->req = r, en->start = r->n_computed, en->n_tokens = n, en->start_row = pl->n_tokens;
    en->logit_row = -1;
    for (int i = 0; i < n; i++) {
        int row = pl->n_tokens++, pos = r->n_computed + i;
        s->token_ids[row] = r->tokens[pos];
        s->positions[row] = pos;
        s->seq_of_token[row] = e;
        s->kv_slot[row] = slm_kvcache_slot_of(s->kc, r->seq, pos);
    }
    r->n_computed += n;
    r->in_step = 1;
    s->budget -= n;
    if (r->n_computed == r->n_known) {
        en->logit_row = pl->n_tokens - 1;
        s->logit_rows[pl->n_logit_rows++] = en->logit_row;
    }
}

/* Phase 1: one token for every decoding request, oldest first. A request
 * that cannot get a block preempts the newest running request not yet in
 * the step — which, walking oldest first, is the list's tail (possibly
 * itself). */
static void plan_decodes(slm_sched *s)
{
    slm_sched_req *r = s->running.head;
    while (r && s->budget > 0 && s->plan.n_entries < s->p.max_running) {
        if (r->n_known - r->n_computed != 1) {
            r = r->next;
            continue;
        }
        int preempted_self = 0;
        while (!slm_kvcache_can_append(s->kc, r->seq, 1)) {
            slm_sched_req *v = newest_unscheduled(s, NULL);
            SLM_ASSERT(v != NULL); /* r itself is a candidate */
            preempt(s, v);
            if (v == r) {
                preempted_self = 1;
                break;
            }
        }
        if (preempted_self)
            break; /* r was the tail: nobody after it */
        grant(s, r, 1);
        r = r->next;
    }
}

/* Phase 2: prefill chunks of running requests, oldest first, as large as
 * the budget and the free blocks allow. One that cannot get a single token
 * preempts newer unscheduled requests; if there are none it waits a step
 * (decoders keep running and eventually free or need its blocks). */
static void plan_prefills(slm_sched *s)
{
    for (slm_sched_req *r = s->running.head; r && s->budget > 0; r = r->next) {
        if (r->in_step || r->n_known - r->n_computed < 2)
            continue;
        if (s->plan.n_entries >= s->p.max_running)
            break;
        int want = r->n_known - r->n_computed;
        if (want > s->budget)
            want = s->budget;
        int room;
        while ((room = slm_kvcache_room(s->kc, r->seq)) == 0) {
            slm_sched_req *v = newest_unscheduled(s, r);
            if (!v)
                break;
            preempt(s, v);
        }
        if (room > 0)
            grant(s, r, want < room ? want : room);
    }
}

/* Phase 3: admit waiting requests in order while the budget, the sequence
 * limit and the blocks allow; the first that does not fit stops admission
 * so nobody overtakes it (FCFS). Nobody is admitted in a step that had to
 * preempt: blocks are short, and the victim (now first in line) would be
 * re-admitted at once only to recompute what it just lost. */
static void plan_admissions(slm_sched *s)
{
    if (s->plan.n_preempted > 0)
        return;
    while (s->waiting.head && s->budget > 0 && s->running.n < s->p.max_running &&
           s->plan.n_entries < s->p.max_running) {
        slm_sched_req *r = s->waiting.head;
        int seq, cached = 0;
        /* Match at most known − 1 tokens: the last one must be computed to
         * get the logits that sample the next token. */
        int reuse = s->p.prefix_cache && !r->no_prefix;
        slm_status st = slm_kvcache_seq_create(s->kc, reuse ? r->tokens : NULL,
                                               reuse ? r->n_known - 1 : 0, &seq, &cached);
        if (st != SLM_OK)
            break; /* host memory: try again next step */
        int want = r->n_known - cached;
        if (want > s->budget)
            want = s->budget;
        if (!slm_kvcache_can_append(s->kc, seq, want)) {
            slm_kvcache_seq_free(s->kc, seq);
            break;
        }
        list_unlink(&s->waiting, r);
        list_push_back(&s->running, r);
        r->state = SLM_REQ_RUNNING;
        r->seq = seq;
        r->n_computed = cached;
        grant(s, r, want);
    }
}

/* Copies the block tables of the step's sequences into the plan. */
static void plan_block_tables(slm_sched *s)
{
    int off = 0;
    for (int e = 0; e < s->plan.n_entries; e++) {
        const int32_t *t;
        int n;
        slm_status st = slm_kvcache_block_table(s->kc, s->entries[e].req->seq, &t, &n);
        SLM_ASSERT(st == SLM_OK);
        (void)st;
        memcpy(s->bt + off, t, sizeof(int32_t) * (size_t)n);
        s->bt_start[e] = off, s->bt_len[e] = n;
        off += n;
    }
}

slm_status slm_sched_schedule(slm_sched *s, const slm_sched_plan **plan)
{
    if (!s || !plan)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: NULL argument to schedule");
    slm_kvcache_step_begin(s->kc);
    slm_sched_plan *pl = &s->plan;
    memset(pl, 0, sizeof *pl);
    for (slm_sched_req *r = s->running.head; r; r = r->next)
        r->in_step = 0;
    s->budget = s->p.max_batch_tokens;

    plan_decodes(s);
    plan_prefills(s);
    plan_admissions(s);
    plan_block_tables(s);

    pl->entries = s->entries;
    pl->token_ids = s->token_ids;
    pl->positions = s->positions;
    pl->seq_of_token = s->seq_of_token;
    pl->kv_slot = s->kv_slot;
    pl->block_table_start = s->bt_start;
    pl->block_table_len = s->bt_len;
    pl->block_tables = s->bt;
    pl->logit_rows = s->logit_rows;
    slm_kvcache_take_copies(s->kc, &pl->copies, &pl->n_copies);
    s->n_steps++;
    *plan = pl;
    return SLM_OK;
}

void slm_sched_plan_step(const slm_sched_plan *plan, slm_step *step)
{
    memset(step, 0, sizeof *step);
    step->n_tokens = plan->n_tokens;
    step->token_ids = plan->token_ids;
    step->positions = plan->positions;
    step->seq_of_token = plan->seq_of_token;
    step->kv_slot = plan->kv_slot;
    step->n_seqs = plan->n_entries;
    step->block_table_start = plan->block_table_start;
    step->block_table_len = plan->block_table_len;
    step->block_tables = plan->block_tables;
    step->n_logit_rows = plan->n_logit_rows;
    step->logit_rows = plan->logit_rows;
}

/* --- after the step ------------------------------------------------------- */

/* Takes an unfinished r off its queue and releases its blocks. */
static void release(slm_sched *s, slm_sched_req *r)
{
    if (r->state == SLM_REQ_RUNNING) {
        slm_kvcache_seq_free(s->kc, r->seq);
        r->seq = -1;
        list_unlink(&s->running, r);
    } else if (r->state == SLM_REQ_WAITING) {
        list_unlink(&s->waiting, r);
    }
}

slm_status slm_sched_update(slm_sched *s, slm_sched_req *r, int32_t token)
{
    if (!s || !r)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: NULL argument to update");
    if (r->state != SLM_REQ_RUNNING || r->n_computed != r->n_known)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "scheduler: update of a request that is not waiting for a token "
                         "(state %d, %d of %d tokens computed)",
                         (int)r->state, r->n_computed, r->n_known);
    r->tokens[r->n_known++] = token;
    if (r->n_known - r->n_prompt >= r->max_new) {
        release(s, r);
        r->state = SLM_REQ_FINISHED_LENGTH;
        list_push_back(&s->finished, r);
    }
    return SLM_OK;
}

slm_status slm_sched_fork(slm_sched *s, slm_sched_req *src, void *user, slm_sched_req **out,
                          int *n_shared)
{
    if (!s || !src || !out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: NULL argument to fork");
    *out = NULL;
    if (src->state != SLM_REQ_RUNNING || src->n_computed != src->n_known)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "scheduler: fork of a request that is not waiting for a token");
    size_t cap = (size_t)src->n_prompt + (size_t)src->max_new;
    slm_sched_req *r = calloc(1, sizeof *r);
    if (!r || !(r->tokens = malloc(sizeof(int32_t) * cap))) {
        free(r);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "scheduler: out of host memory for a fork");
    }
    int seq;
    slm_status st = slm_kvcache_seq_fork(s->kc, src->seq, &seq);
    if (st != SLM_OK) {
        req_free(r);
        return st;
    }
    memcpy(r->tokens, src->tokens, sizeof(int32_t) * (size_t)src->n_known);
    r->state = SLM_REQ_RUNNING;
    r->n_prompt = src->n_prompt;
    r->n_known = r->n_computed = src->n_known;
    r->max_new = src->max_new;
    r->seq = seq;
    r->user = user;
    list_push_back(&s->running, r);
    if (n_shared) {
        const int32_t *t;
        *n_shared = 0;
        slm_kvcache_block_table(s->kc, seq, &t, n_shared);
    }
    *out = r;
    return SLM_OK;
}

slm_status slm_sched_finish(slm_sched *s, slm_sched_req *r, slm_req_state why)
{
    if (!s || !r || !SLM_REQ_IS_FINISHED(why) || why > SLM_REQ_FINISHED_ABORTED)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "scheduler: finish with state %d", (int)why);
    if (SLM_REQ_IS_FINISHED(r->state))
        return SLM_OK;
    release(s, r);
    r->state = why;
    list_push_back(&s->finished, r);
    return SLM_OK;
}

void slm_sched_remove(slm_sched *s, slm_sched_req *r)
{
    if (!s || !r)
        return;
    slm_sched_finish(s, r, SLM_REQ_FINISHED_ABORTED);
    list_unlink(&s->finished, r);
    req_free(r);
}

/* --- queries ---------------------------------------------------------------- */

slm_req_state slm_sched_req_state(const slm_sched_req *r) { return r->state; }
int slm_sched_req_n_prompt(const slm_sched_req *r) { return r->n_prompt; }
int slm_sched_req_n_known(const slm_sched_req *r) { return r->n_known; }
int slm_sched_req_n_computed(const slm_sched_req *r) { return r->n_computed; }
const int32_t *slm_sched_req_tokens(const slm_sched_req *r) { return r->tokens; }
void slm_sched_req_no_prefix(slm_sched_req *r) { r->no_prefix = 1; }

void *slm_sched_req_user(const slm_sched_req *r) { return r->user; }
int slm_sched_req_kv_seq(const slm_sched_req *r) { return r->seq; }
int slm_sched_req_n_preempted(const slm_sched_req *r) { return r->n_preempted; }

void slm_sched_stats_get(const slm_sched *s, slm_sched_stats *st)
{
    st->n_waiting = s->waiting.n;
    st->n_running = s->running.n;
    st->n_finished = s->finished.n;
    st->n_preemptions = s->n_preemptions;
    st->n_steps = s->n_steps;
}

slm_kvcache *slm_sched_kvcache(slm_sched *s) { return s->kc; }
