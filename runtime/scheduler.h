/*
 * scheduler.h — continuous batching: decides, step by step, which tokens of
 * which requests the model computes, and where their K/V goes.
 *
 * One rule (vLLM-style): a request has tokens KNOWN (prompt + sampled so far)
 * and tokens COMPUTED (whose K/V is in the cache). Each step grants each
 * running request min(known − computed, budget left) tokens under a per-step
 * token budget: decoding requests (known − computed == 1) first, then
 * prefill chunks of running requests, then new requests first come first
 * served. So prefill, chunked prefill, decode and recomputation after
 * preemption are one mechanism, and a long prompt never stalls decoders.
 *
 * Blocks come from the paged KV block manager (kvcache.h), which the
 * scheduler owns. When a running request cannot get a block, the NEWEST
 * running request not yet in this step is preempted: its blocks are freed
 * (full blocks stay cached for prefix reuse) and it goes back to the FRONT
 * of the waiting queue, to be recomputed from its known tokens later. A
 * step that had to preempt admits nobody new.
 *
 * The engine loop is schedule → execute → update:
 *   slm_sched_schedule()  gives a plan (the slm_step arrays + block copies);
 *   the engine performs the copies, runs the step, samples one token for
 *   every plan entry with a logit row, and calls slm_sched_update() with it.
 * Stops other than the length limit (EOS, stop strings, cancellation) are
 * the engine's: it calls slm_sched_finish(). The scheduler knows nothing of
 * the model; tokens are just ints.
 *
 * Ownership: the scheduler owns its requests until slm_sched_remove(); a
 * finished request keeps its tokens for the engine to read. Threads: none —
 * the engine serialises every call (it owns the lock).
 */
#ifndef SLM_SCHEDULER_H
#define SLM_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "kvcache.h"
#include "slm.h"

/* Request states. Every finished state sorts after every unfinished one. */
typedef enum slm_req_state {
    SLM_REQ_WAITING = 0,          /* queued, holds no blocks (new or preempted) */
    SLM_REQ_RUNNING = 1,          /* holds blocks; prefilling or decoding */
    SLM_REQ_FINISHED_LENGTH = 2,  /* produced max_new_tokens */
    SLM_REQ_FINISHED_STOPPED = 3, /* the engine saw a stop token or string */
    SLM_REQ_FINISHED_ABORTED = 4  /* cancelled (client gone, removed, error) */
} slm_req_state;

#define SLM_REQ_IS_FINISHED(st) ((st) >= SLM_REQ_FINISHED_LENGTH)

typedef struct slm_sched_params {
    size_t size;          /* sizeof(slm_sched_params) */
    int n_blocks;         /* KV pool blocks (measured by the engine) */
    int block_size;       /* tokens per block (16) */
    int max_batch_tokens; /* token budget of one step (512) */
    int max_running;      /* sequences in one step at most (64) */
    int max_waiting;      /* waiting queue bound for new submissions (256) */
    int max_context;      /* prompt + max_new_tokens of a request at most (4096);
                             must fit in the pool */
    int prefix_cache;     /* reuse cached full blocks of equal prefixes (1) */
} slm_sched_params;

typedef struct slm_sched slm_sched;
typedef struct slm_sched_req slm_sched_req;

/* One request's share of a step. Entry i of a plan is sequence i of the
 * step (seq_of_token values index the entries). */
typedef struct slm_sched_entry {
    slm_sched_req *req;
    int start;     /* position of its first token in this step */
    int n_tokens;  /* its tokens in this step (rows start_row ..) */
    int start_row; /* row of its first token in the step */
    int logit_row; /* row whose logits are sampled for it, or -1 (mid-prefill) */
} slm_sched_entry;

/* A step plan. Arrays belong to the scheduler and stay valid until the next
 * slm_sched_schedule() or slm_sched_free(). */
typedef struct slm_sched_plan {
    int n_entries;
    const slm_sched_entry *entries;
    int n_tokens;
    const int32_t *token_ids;    /* [n_tokens] */
    const int32_t *positions;    /* [n_tokens] */
    const int32_t *seq_of_token; /* [n_tokens] entry index */
    const int32_t *kv_slot;      /* [n_tokens] */
    const int32_t *block_table_start; /* [n_entries] */
    const int32_t *block_table_len;   /* [n_entries] */
    const int32_t *block_tables;      /* concatenated */
    int n_logit_rows;
    const int32_t *logit_rows;  /* [n_logit_rows], in entry order */
    int n_copies;
    const slm_kv_copy *copies;  /* block copies to perform, in order, before the step */
    int n_preempted;            /* requests preempted while planning this step */
} slm_sched_plan;

typedef struct slm_sched_stats {
    int n_waiting, n_running, n_finished; /* finished = not yet removed */
    long n_preemptions;                   /* since creation */
    long n_steps;                         /* plans made */
} slm_sched_stats;

void slm_sched_params_default(slm_sched_params *p);

/* Creates a scheduler and its KV block manager. INVALID_ARGUMENT naming the
 * bad parameter (e.g. a max_context that could never fit in the pool);
 * OUT_OF_MEMORY. All step arrays are sized here, once, for the worst step. */
slm_status slm_sched_create(const slm_sched_params *p, slm_sched **out);
/* Frees the scheduler, its KV manager and every request not yet removed.
 * Accepts NULL. */
void slm_sched_free(slm_sched *s);

/* Queues a request for prompt[0..n_prompt) (copied) that may generate up to
 * max_new_tokens tokens. Fails, queuing nothing, with:
 *   INVALID_ARGUMENT — empty prompt, max_new_tokens < 1, or a request longer
 *     than max_context (the message gives both numbers);
 *   OUT_OF_MEMORY    — the waiting queue is full (message "queue full"; see
 *     slm_sched_queue_full()) or host memory ran out.
 * NOTE: slm.h has no "busy" status yet; the engine should test
 * slm_sched_queue_full() to tell a full queue (HTTP 429/503) from an
 * allocation failure. */
slm_status slm_sched_submit(slm_sched *s, const int32_t *prompt, int n_prompt, int max_new_tokens,
                            void *user, slm_sched_req **out);
int slm_sched_queue_full(const slm_sched *s);

/* Plans the next step (see the file comment). Assumes the previous plan has
 * run: the engine performed it and called update() for its logit rows.
 * The plan may be empty (nothing to do). Never fails on a valid scheduler;
 * INVALID_ARGUMENT for NULL arguments. */
slm_status slm_sched_schedule(slm_sched *s, const slm_sched_plan **plan);

/* Points a backend step descriptor at the plan's arrays. */
void slm_sched_plan_step(const slm_sched_plan *plan, slm_step *step);

/* Records the token sampled for a request that had a logit row in the last
 * plan (all its known tokens are computed): known += 1. When it reaches
 * max_new_tokens the request finishes (FINISHED_LENGTH) and its blocks are
 * released. INVALID_ARGUMENT for a request that is not waiting for a token. */
slm_status slm_sched_update(slm_sched *s, slm_sched_req *r, int32_t token);

/* Forks a running request that just had its logits computed (all its
 * known tokens computed, waiting for update()): the new request holds the
 * same tokens and shares every KV block (slm_kvcache_seq_fork; a shared
 * partial last block is copied on the first append of either), is
 * RUNNING and also waits for its own update(). *n_shared gets the blocks
 * shared. INVALID_ARGUMENT for a request in another state; OUT_OF_MEMORY
 * (host) with nothing changed. Call between steps. */
slm_status slm_sched_fork(slm_sched *s, slm_sched_req *src, void *user, slm_sched_req **out,
                          int *n_shared);

/* Ends a request early with a finished state (STOPPED, ABORTED), releasing
 * its blocks and queue place. No effect on an already finished request.
 * INVALID_ARGUMENT if `why` is not a finished state. Call between steps. */
slm_status slm_sched_finish(slm_sched *s, slm_sched_req *r, slm_req_state why);

/* Forgets a request in any state (aborting it first if unfinished) and frees
 * it. Accepts NULL. */
void slm_sched_remove(slm_sched *s, slm_sched_req *r);

/* Makes a waiting request compute every token itself, never starting on
 * cached blocks (an embedding pools every token's hidden state). Its own
 * full blocks still enter the cache for others. */
void slm_sched_req_no_prefix(slm_sched_req *r);

/* --- queries ----------------------------------------------------------- */
slm_req_state slm_sched_req_state(const slm_sched_req *r);
int slm_sched_req_n_prompt(const slm_sched_req *r);
int slm_sched_req_n_known(const slm_sched_req *r);
int slm_sched_req_n_computed(const slm_sched_req *r);
/* The known tokens: prompt then generated ([n_known]). */
const int32_t *slm_sched_req_tokens(const slm_sched_req *r);
void *slm_sched_req_user(const slm_sched_req *r);
/* Its sequence in the KV manager, or -1 while it holds no blocks. */
int slm_sched_req_kv_seq(const slm_sched_req *r);
/* How many times it was preempted. */
int slm_sched_req_n_preempted(const slm_sched_req *r);

void slm_sched_stats_get(const slm_sched *s, slm_sched_stats *st);
/* The block manager (stats, block tables); owned by the scheduler. */
slm_kvcache *slm_sched_kvcache(slm_sched *s);

#endif
