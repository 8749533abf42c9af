/*
 * engine.c — the public engine of slm.h: continuous batching over one model.
 *
 * One background thread runs steps: schedule (runtime/scheduler.c picks this
 * step's tokens: one decode token per running request plus prefill chunks
 * under the token budget) → submit one forward pass over the whole batch
 * (one matmul per weight for all its tokens, attention per sequence through
 * its block table) → while the device works, deliver the previous step's
 * text and results to the callbacks → wait → sample one token for every
 * request that has a logit row, decide which stopped (end of sequence, stop
 * strings held back by runtime/stopstr.c, length) and free their blocks, so
 * the next schedule sees them gone. Callbacks thus run one step late but in
 * order (every on_token of a request before its on_done), and the next
 * step's device time hides their cost where the backend is asynchronous.
 *
 * API calls from other threads only touch the incoming queue and cancel
 * flags under the engine lock; everything the scheduler owns is touched by
 * the engine thread alone, between steps. Callbacks run on the engine thread
 * without the lock held, so they may call slm_engine_cancel and submit.
 *
 * Embedding requests (slm_engine_submit_embed) ride the same steps: their
 * prompt is prefilled like any other (one "new token" in the scheduler's
 * eyes, never starting on cached blocks), the step keeps the final-normed
 * hidden states of its rows (slm_forward_keep_hidden), each embedding
 * request's rows are pooled as they come (pool_entry), and where a
 * generation request would sample, it ends instead (embed_finish).
 *
 * The KV pool is sized once, at open, from the memory the backend measures
 * after the weights and a worst-case step's workspace are allocated.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_model.h"
#include "embed.h"
#include "forward.h"
#include "grammar.h"
#include "json_schema.h"
#include "sampler.h"
#include "scheduler.h"
#include "status.h"
#include "stopstr.h"
#include "tokenizer.h"

/* Without a memory measurement the pool holds at most 1 GiB of K/V. */
#define ENGINE_KV_BYTES_UNMEASURED ((uint64_t)1 << 30)
/* Of measured free memory the pool takes this share, less a margin for
 * what the device or the process allocates later: most of a GPU's memory,
 * half of a host's (shared with everything else on the machine). */
#define ENGINE_KV_SHARE_DEVICE 0.90
#define ENGINE_KV_SHARE_HOST 0.50
#define ENGINE_KV_MARGIN ((uint64_t)256 << 20)

/* What the choices of one request share: its callbacks and the result
 * on_done gets once the last choice is delivered. Freed with the last
 * choice (refs counts the choices alive, forked or not). */
typedef struct egroup {
    int refs;
    bool have_result;
    slm_result res;
    char err[256];
    slm_done_cb on_done;
    slm_choice_cb on_choice;
    void *user;
} egroup;

typedef struct ereq {
    uint64_t id;
    int32_t *prompt;
    int n_prompt, max_new;
    slm_sampler *smp;
    slm_detok *dt;
    slm_stopstr stops;
    slm_grammar *grammar;  /* structured output (NULL: free text) */
    slm_grammar_state *gs; /* where the output stands in the grammar */
    bool ignore_eos;
    slm_token_cb on_token;
    slm_done_cb on_done;
    void *user;
    slm_sched_req *sr;     /* engine thread only */
    bool scheduled;        /* appeared in a plan at least once */
    int cached;            /* prompt tokens found in the prefix cache */
    atomic_bool cancel;
    double t_submit, t_sched, t_first;
    /* Text sampled but not yet handed to on_token (delivered while the
     * next step runs), and the result once the request has ended. */
    char *out;
    size_t out_len, out_cap;
    slm_result res;
    char err[256];
    /* Embedding requests only (slm_engine_submit_embed): prefill, no
     * sampling; the hidden states pool into `pool` step by step. */
    bool embed;
    slm_pooling pooling;   /* resolved: MEAN, CLS or LAST */
    bool normalize;
    double *pool;          /* [n_embd] sum (MEAN) or the row (CLS, LAST) */
    int pooled;            /* prompt tokens folded into pool so far */
    float *emb_out;        /* caller's [n_embd] */
    struct ereq *next;     /* incoming queue, then the live list, then the ended list */
    /* Choice `choice` of its group. Choice 0 is what the scheduler gets
     * at admission; the others wait in forks[] until its prompt has been
     * computed, then fork its sequence (fork_choices). */
    int choice;
    egroup *g;
    struct ereq **forks;
    int n_forks;
    /* Log-probabilities of the tokens sampled but not yet delivered. */
    bool want_lp;
    int top_n;
    slm_token_logprobs *lp;
    int n_lp, cap_lp;
} ereq;

struct slm_engine {
    slm_model *m;
    slm_engine_params p;
    slm_sched *sched;
    slm_forward *fwd;
    slm_kv *kv;
    float *logits; /* [max_running][n_vocab] */
    float *hidden; /* [step_tokens][n_embd], made by the first embedding step */
    /* Structured output: the vocabulary's trie, built by the first request
     * with a schema (under trie_mu), and the engine thread's mask scratch. */
    pthread_mutex_t trie_mu;
    slm_token_trie *trie;
    slm_grammar_state *gscratch;
    uint8_t *gallowed; /* [n_vocab] */
    float *graw;       /* [n_vocab]: a row as the model gave it, for logprobs */
    bool overlap;  /* callbacks run while the next step is on the device */
    int n_vocab;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Guarded by mu. */
    ereq *in_head, *in_tail; /* submitted, not yet handed to the scheduler */
    int n_incoming;
    ereq *live;              /* in the scheduler; the engine thread alone changes it */
    ereq *ended, **ended_tail; /* engine thread only: ended, results not yet delivered */
    int sched_waiting;       /* the scheduler's waiting count, for the queue bound */
    bool stop, drain;
    bool cancel_pending;
    uint64_t next_id;
    slm_engine_stats stats;
    /* Engine thread only; published into stats by publish_stats. */
    uint64_t n_forks, n_forked_blocks, n_computed;
};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + 1e-6 * (double)t.tv_nsec;
}

/* ---- parameters ---------------------------------------------------------- */

void slm_engine_params_default(slm_engine_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->max_running = 64;
    p->max_waiting = 256;
    p->step_tokens = 512;
    p->block_size = 16;
}

void slm_sampling_default(slm_sampling *s)
{
    *s = (slm_sampling){.size = sizeof *s, .temperature = 0.8f, .top_k = 40, .top_p = 0.95f,
                        .min_p = 0.05f, .repeat_penalty = 1.0f};
}

void slm_request_params_default(slm_request_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->max_tokens = 256;
    p->n = 1;
}

static slm_status check_engine_params(const slm_model *m, slm_engine_params *p)
{
    if (p->n_ctx == 0)
        p->n_ctx = m->hp.n_ctx_train;
    if (p->n_ctx < 2 || p->n_ctx > (1 << 24))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "engine: n_ctx %d out of range", p->n_ctx);
    if (p->max_running < 1 || p->max_running > 4096)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "engine: max_running %d out of range "
                         "1..4096", p->max_running);
    if (p->max_waiting < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "engine: max_waiting %d < 1",
                         p->max_waiting);
    if (p->block_size < 1 || p->block_size > 1024)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "engine: block_size %d out of range",
                         p->block_size);
    if (p->step_tokens < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "engine: step_tokens %d < 1",
                         p->step_tokens);
    /* Every running request gets its decode token in every step. */
    if (p->step_tokens < p->max_running)
        p->step_tokens = p->max_running;
    if (p->kv_blocks < 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "engine: kv_blocks %d < 0", p->kv_blocks);
    if (p->kv_type != SLM_KV_F16 && p->kv_type != SLM_KV_F32 && p->kv_type != SLM_KV_Q8_0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "engine: kv_type %d is not a KV type",
                         (int)p->kv_type);
    return SLM_OK;
}

/* ---- requests ------------------------------------------------------------ */

static void ereq_free(ereq *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_forks; i++)
        ereq_free(r->forks[i]);
    free(r->forks);
    free(r->lp);
    if (r->g && --r->g->refs == 0)
        free(r->g);
    free(r->prompt);
    free(r->out);
    free(r->pool);
    slm_sampler_free(r->smp);
    slm_detok_free(r->dt);
    slm_stopstr_free(&r->stops);
    slm_grammar_free(r->grammar);
    free(r->gs);
    free(r);
}

/* The request's prompt token ids from exactly one of its three inputs. */
static slm_status request_tokens(const slm_model *m, const slm_request_params *p, ereq *r)
{
    int given = (p->prompt != NULL) + (p->n_messages > 0) + (p->n_tokens > 0);
    if (given != 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "a request needs exactly one of prompt, messages and tokens (%d given)",
                         given);
    if (p->n_tokens > 0) {
        if (!p->tokens)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "tokens is NULL");
        for (int i = 0; i < p->n_tokens; i++)
            if (p->tokens[i] < 0 || p->tokens[i] >= m->hp.n_vocab)
                return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                                 "token %d at position %d is outside the vocabulary of %d",
                                 p->tokens[i], i, m->hp.n_vocab);
        r->prompt = malloc((size_t)p->n_tokens * sizeof *r->prompt);
        if (!r->prompt)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory");
        memcpy(r->prompt, p->tokens, (size_t)p->n_tokens * sizeof *r->prompt);
        r->n_prompt = p->n_tokens;
        return SLM_OK;
    }
    if (p->prompt)
        return slm_model_encode(m, p->prompt, true, &r->prompt, &r->n_prompt);
    if (!p->messages)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "messages is NULL");
    return slm_model_encode_chat(m, p->messages, p->n_messages, p->chat_template, &r->prompt,
                                 &r->n_prompt);
}

/* The choice fields of a request: how many and what each reports. */
static slm_status check_choices(const slm_engine *e, const slm_request_params *p)
{
    if (p->n < 1 || p->n > SLM_MAX_CHOICES)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "n: %d choices, the range is 1..%d", p->n,
                         SLM_MAX_CHOICES);
    if (p->n > e->p.max_running)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "n: %d choices exceed the engine's max_running of %d", p->n,
                         e->p.max_running);
    if (p->logprobs != 0 && p->logprobs != 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "logprobs: %d is not 0 or 1", p->logprobs);
    if (p->top_logprobs < 0 || p->top_logprobs > SLM_MAX_TOP_LOGPROBS)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "top_logprobs: %d is not in 0..%d",
                         p->top_logprobs, SLM_MAX_TOP_LOGPROBS);
    if (p->top_logprobs > 0 && !p->logprobs)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "top_logprobs: needs logprobs");
    if (p->logprobs && !p->on_choice)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "logprobs: reported through on_choice, which is not set");
    return SLM_OK;
}

/* The sampler of one choice: the request's sampling, seed + choice. */
static slm_status choice_sampler(const slm_request_params *p, int choice, int n_vocab,
                                 slm_sampler **out)
{
    slm_sampling sm;
    slm_sampling_default(&sm);
    if (p->sampling && p->sampling->size < sizeof sm)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "sampling.size %zu is smaller than this library's %zu (use "
                         "slm_sampling_default)", p->sampling->size, sizeof sm);
    if (p->sampling)
        sm = *p->sampling;
    slm_sampler_params sp;
    slm_sampler_params_default(&sp);
    sp.temperature = sm.temperature;
    sp.top_k = sm.top_k;
    sp.top_p = sm.top_p;
    sp.min_p = sm.min_p;
    sp.repeat_penalty = sm.repeat_penalty;
    sp.presence_penalty = sm.presence_penalty;
    sp.frequency_penalty = sm.frequency_penalty;
    sp.seed = sm.seed + (uint64_t)choice;
    sp.bias = sm.logit_bias;
    sp.n_bias = sm.n_logit_bias;
    return slm_sampler_create(&sp, n_vocab, out);
}

/* One choice's state around prompt[0..n_prompt): sampler (which has seen
 * the prompt for its penalties), detokenizer, stop strings, callbacks. */
static slm_status grammar_start(slm_engine *e, ereq *r, const char *schema);

static slm_status choice_make(slm_engine *e, const slm_request_params *p, egroup *g,
                              int choice, const int32_t *prompt, int n_prompt, ereq **out)
{
    ereq *r = calloc(1, sizeof *r);
    if (!r)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory");
    r->g = g;
    g->refs++;
    r->choice = choice;
    r->n_prompt = n_prompt;
    slm_status st = choice_sampler(p, choice, e->n_vocab, &r->smp);
    if (!st)
        st = slm_detok_create(e->m->tok, false, &r->dt);
    if (!st)
        st = slm_stopstr_init(&r->stops, p->stop, p->n_stop);
    /* each choice has its own grammar state (choice_sampler checked the
     * sampling's size) */
    if (!st && p->sampling && p->sampling->json_schema)
        st = grammar_start(e, r, p->sampling->json_schema);
    if (st) { /* the group stays the caller's */
        g->refs--;
        r->g = NULL;
        ereq_free(r);
        return st;
    }
    for (int i = 0; i < n_prompt; i++)
        slm_sampler_accept(r->smp, prompt[i]);
    int room = e->p.n_ctx - n_prompt;
    r->max_new = p->max_tokens < room ? p->max_tokens : room;
    r->ignore_eos = p->ignore_eos != 0 && !r->grammar; /* a value ends where it is complete */
    r->on_token = p->on_token;
    r->on_done = p->on_done;
    r->user = p->user;
    r->want_lp = p->logprobs != 0;
    r->top_n = p->top_logprobs;
    r->t_submit = now_ms();
    atomic_init(&r->cancel, false);
    *out = r;
    return SLM_OK;
}

/* Choices 1..n-1, held by choice 0 until its prompt is computed. */
static slm_status make_forks(slm_engine *e, const slm_request_params *p, ereq *r)
{
    if (p->n < 2)
        return SLM_OK;
    r->forks = calloc((size_t)p->n - 1, sizeof *r->forks);
    if (!r->forks)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int c = 1; c < p->n; c++) {
        slm_status st = choice_make(e, p, r->g, c, r->prompt, r->n_prompt, &r->forks[c - 1]);
        if (st)
            return st;
        r->n_forks = c;
    }
    return SLM_OK;
}

/* ---- structured output ------------------------------------------------- */

/* The engine's trie and mask scratch, made once (any thread, at submit). */
static slm_status trie_ready(slm_engine *e)
{
    slm_status st = SLM_OK;
    pthread_mutex_lock(&e->trie_mu);
    if (!e->trie) {
        slm_token_trie *t = NULL;
        st = slm_token_trie_from_tokenizer(e->m->tok, &t);
        if (!st) {
            e->gscratch = malloc((size_t)slm_token_trie_scratch(t) * sizeof *e->gscratch);
            e->gallowed = malloc((size_t)e->n_vocab);
            e->graw = malloc((size_t)e->n_vocab * sizeof *e->graw);
            if (!e->gscratch || !e->gallowed || !e->graw) {
                free(e->gscratch);
                free(e->gallowed);
                free(e->graw);
                e->gscratch = NULL;
                e->gallowed = NULL;
                e->graw = NULL;
                slm_token_trie_free(t);
                st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "engine: out of memory for the mask");
            } else {
                e->trie = t; /* published last: the engine thread reads it unlocked */
            }
        }
    }
    pthread_mutex_unlock(&e->trie_mu);
    return st;
}

/* Compiles the request's schema and starts its state at the value's first
 * byte. */
static slm_status grammar_start(slm_engine *e, ereq *r, const char *schema)
{
    slm_status st = slm_json_schema_compile(schema, strlen(schema), &r->grammar);
    if (!st)
        st = trie_ready(e);
    if (!st && !(r->gs = malloc(sizeof *r->gs)))
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "engine: out of memory");
    if (!st)
        slm_grammar_state_init(r->gs, r->grammar);
    return st;
}

/* Sets the logits of tokens the grammar refuses to -inf before the sampler
 * draws. Returns false when no token can continue (a vocabulary without
 * the bytes the value needs). Engine thread. */
static bool grammar_mask(slm_engine *e, ereq *r, float *row)
{
    if (!r->gs)
        return true;
    int n = slm_token_trie_mask(e->trie, r->gs, e->gscratch, e->gallowed);
    for (int i = 0; i < e->n_vocab; i++)
        if (!e->gallowed[i])
            row[i] = -INFINITY;
    return n > 0;
}

/* Advances the request's grammar state over an accepted token's bytes.
 * False for a token the grammar refuses (the mask let it through: a bug). */
static bool grammar_advance(slm_engine *e, ereq *r, int32_t t)
{
    if (!r->gs)
        return true;
    size_t len;
    const char *piece = slm_tokenizer_piece(e->m->tok, t, false, &len);
    return piece && slm_grammar_feed(r->gs, piece, len);
}

static slm_status request_make(slm_engine *e, const slm_request_params *p, ereq **out)
{
    *out = NULL;
    if (p->size < sizeof *p)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "request params.size %zu is smaller than this library's %zu (use "
                         "slm_request_params_default)", p->size, sizeof *p);
    if (p->max_tokens < 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "max_tokens %d < 1", p->max_tokens);
    if (!p->on_done)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "on_done is required");
    slm_status st = check_choices(e, p);
    if (st)
        return st;
    egroup *g = calloc(1, sizeof *g);
    if (!g)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory");
    g->on_done = p->on_done;
    g->on_choice = p->on_choice;
    g->user = p->user;
    ereq tmp = {0};
    st = request_tokens(e->m, p, &tmp);
    if (!st && tmp.n_prompt < 1)
        st = slm_error(SLM_STATUS_INVALID_ARGUMENT, "the prompt is empty");
    if (!st && tmp.n_prompt >= e->p.n_ctx)
        st = slm_error(SLM_STATUS_INVALID_ARGUMENT,
                       "the prompt is %d tokens, which leaves no room in the context of %d "
                       "tokens", tmp.n_prompt, e->p.n_ctx);
    ereq *r = NULL;
    if (!st)
        st = choice_make(e, p, g, 0, tmp.prompt, tmp.n_prompt, &r);
    if (st) {
        free(tmp.prompt);
        free(g); /* choice_make failed or never ran: nobody holds it */
        return st;
    }
    r->prompt = tmp.prompt;
    st = make_forks(e, p, r);
    if (st) {
        ereq_free(r);
        return st;
    }
    *out = r;
    return SLM_OK;
}

void slm_embed_params_default(slm_embed_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->pooling = SLM_POOLING_MODEL;
    p->normalize = 1;
}

/* The pooling a request gets: its own, else the file's pooling_type, else
 * (no key, or 0 "none") mean. */
static slm_status resolve_pooling(const slm_model *m, slm_pooling asked, slm_pooling *out)
{
    if (asked < SLM_POOLING_MODEL || asked > SLM_POOLING_LAST)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "pooling %d is not one of model (0), mean (1), cls (2), last (3)",
                         (int)asked);
    *out = asked;
    if (asked != SLM_POOLING_MODEL)
        return SLM_OK;
    char key[64];
    snprintf(key, sizeof key, "%s.pooling_type", m->hp.arch);
    int64_t v = 0;
    slm_status st = slm_gguf_get_int(m->gguf, key, &v);
    if (st == SLM_STATUS_NOT_FOUND || (!st && v == 0)) {
        *out = SLM_POOLING_MEAN;
        return SLM_OK;
    }
    if (st)
        return st;
    if (v < SLM_POOLING_MEAN || v > SLM_POOLING_LAST)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "the model's %s is %lld, a pooling slm does not do (it does 1 mean, 2 "
                         "cls, 3 last): ask for one", key, (long long)v);
    *out = (slm_pooling)v;
    return SLM_OK;
}

/* An embedding request: the prompt tokens, the pooling, a pool; one
 * "new token" in the scheduler's eyes so its last prompt token is computed
 * with a logit row, which tells the engine it is done. */
static slm_status embed_make(const slm_engine *e, const slm_embed_params *p, ereq **out)
{
    *out = NULL;
    if (p->size < sizeof *p)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "embed params.size %zu is smaller than this library's %zu (use "
                         "slm_embed_params_default)", p->size, sizeof *p);
    if (!p->on_done)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "on_done is required");
    if (!p->out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "out (the embedding's buffer) is NULL");
    if (!p->text == !(p->n_tokens > 0))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "an embedding needs text or tokens (%s)",
                         p->text ? "both given" : "neither given");
    slm_request_params rp;
    slm_request_params_default(&rp);
    rp.tokens = p->tokens;
    rp.n_tokens = p->n_tokens;
    ereq *r = calloc(1, sizeof *r);
    egroup *g = r ? calloc(1, sizeof *g) : NULL;
    if (!g) {
        free(r);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    /* A group of one, so that delivery treats it as any request (its
     * result goes to on_done through group_deliver). */
    g->on_done = p->on_done;
    g->user = p->user;
    g->refs = 1;
    r->g = g;
    /* NOTE: the text is data, not a prompt: special-token texts in it stay
     * ordinary text. */
    slm_status st = p->text ? slm_model_encode(e->m, p->text, false, &r->prompt, &r->n_prompt)
                            : request_tokens(e->m, &rp, r);
    if (!st && r->n_prompt < 1)
        st = slm_error(SLM_STATUS_INVALID_ARGUMENT, "the input is empty");
    if (!st && r->n_prompt >= e->p.n_ctx)
        st = slm_error(SLM_STATUS_INVALID_ARGUMENT,
                       "the input is %d tokens; the context of %d tokens takes at most %d",
                       r->n_prompt, e->p.n_ctx, e->p.n_ctx - 1);
    if (!st)
        st = resolve_pooling(e->m, p->pooling, &r->pooling);
    if (!st && !(r->pool = calloc((size_t)e->m->hp.n_embd, sizeof *r->pool)))
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory");
    if (st) {
        ereq_free(r);
        return st;
    }
    r->embed = true;
    r->normalize = p->normalize != 0;
    r->emb_out = p->out;
    r->max_new = 1;
    r->on_done = p->on_done;
    r->user = p->user;
    r->t_submit = now_ms();
    atomic_init(&r->cancel, false);
    *out = r;
    return SLM_OK;
}

/* ---- the engine thread ------------------------------------------------- */

/* Queues text for on_token (delivered by deliver()). On a full host the
 * text is dropped rather than the engine stopping; the result still comes. */
static void emit(ereq *r, const char *text, size_t len)
{
    if (!len || (!r->on_token && !r->g->on_choice))
        return;
    if (r->out_len + len > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 64;
        while (cap < r->out_len + len)
            cap *= 2;
        char *p = realloc(r->out, cap);
        if (!p)
            return;
        r->out = p;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, text, len);
    r->out_len += len;
}

static void finish(slm_engine *e, ereq *r, slm_finish_reason why, slm_status st,
                   const char *msg);

/* Choice 0 ended before its prompt was computed: the choices waiting to
 * fork it end the same way, with no output. */
static void end_unforked(slm_engine *e, ereq *r, slm_finish_reason why, slm_status st,
                         const char *msg)
{
    ereq **kids = r->forks;
    int n = r->n_forks;
    r->forks = NULL;
    r->n_forks = 0;
    for (int i = 0; i < n; i++)
        finish(e, kids[i], why, st, msg);
    free(kids);
}

/* Ends a request: queues the text it held back where the answer ended
 * normally, records its result, frees its blocks (so the next schedule has
 * them) and moves it to the ended list; deliver() calls its callbacks. */
static void finish(slm_engine *e, ereq *r, slm_finish_reason why, slm_status st,
                   const char *msg)
{
    int n_known = r->sr ? slm_sched_req_n_known(r->sr) : r->n_prompt;
    if (!r->embed && (why == SLM_FINISH_LENGTH || (why == SLM_FINISH_STOP && !r->stops.stopped))) {
        const char *t;
        size_t n;
        slm_detok_flush(r->dt, &t, &n);
        const char *t2;
        size_t n2;
        slm_stopstr_feed(&r->stops, t, n, &t2, &n2);
        emit(r, t2, n2);
        if (!r->stops.stopped) {
            slm_stopstr_flush(&r->stops, &t2, &n2);
            emit(r, t2, n2);
        }
    }
    double t = now_ms();
    snprintf(r->err, sizeof r->err, "%s", msg ? msg : "");
    r->res = (slm_result){
        .size = sizeof r->res, .finish = why, .status = st, .error = r->err,
        .prompt_tokens = r->n_prompt, .completion_tokens = n_known - r->n_prompt,
        .cached_tokens = r->cached,
        .queue_ms = r->scheduled ? r->t_sched - r->t_submit : t - r->t_submit,
        .ttft_ms = r->t_first > 0 ? r->t_first - r->t_submit : 0,
        .total_ms = t - r->t_submit,
    };
    if (r->sr)
        slm_sched_remove(e->sched, r->sr);
    r->sr = NULL;
    slm_sched_stats ss;
    slm_sched_stats_get(e->sched, &ss);
    pthread_mutex_lock(&e->mu);
    /* NOTE: a caller that submits again from on_done (slm_engine_embed
     * keeping its inputs queued) must not see the queue as full as it was
     * before the last schedule admitted some: publish_stats comes after
     * the callbacks. */
    e->sched_waiting = ss.n_waiting;
    for (ereq **pp = &e->live; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    if (r->choice == 0) { /* the prompt was computed once for all choices */
        e->stats.requests_done++;
        e->stats.prompt_tokens += (uint64_t)r->n_prompt;
        e->stats.cached_tokens += (uint64_t)r->cached;
    }
    e->stats.generated_tokens += (uint64_t)(n_known - r->n_prompt);
    pthread_mutex_unlock(&e->mu);
    r->next = NULL;
    *e->ended_tail = r;
    e->ended_tail = &r->next;
    end_unforked(e, r, why, st, msg);
}

/* Hands a choice's pending text and log-probabilities to its callback;
 * done: its result, on the choice's last call. */
static void flush_out(ereq *r, const slm_result *done)
{
    egroup *g = r->g;
    if (g->on_choice && (r->out_len || r->n_lp || done)) {
        slm_choice_event ev = {sizeof ev, r->choice, r->out ? r->out : "", r->out_len,
                               r->n_lp ? r->lp : NULL, r->n_lp, done};
        g->on_choice(g->user, &ev);
    } else if (!g->on_choice && r->out_len && r->on_token) {
        r->on_token(r->user, r->out, r->out_len);
    }
    r->out_len = 0;
    r->n_lp = 0;
}

/* Folds an ended choice into its group's result; the last one delivered
 * runs on_done. Choice 0 gives the finish, prompt and timings, the first
 * error wins over them, completion tokens add up. */
static void group_deliver(ereq *r)
{
    egroup *g = r->g;
    const slm_result *c = &r->res;
    if (!g->have_result) {
        g->have_result = true;
        g->res = *c;
        g->res.completion_tokens = 0;
        snprintf(g->err, sizeof g->err, "%s", r->err);
    }
    bool err = g->res.finish == SLM_FINISH_ERROR;
    if (r->choice == 0 && !err) {
        double total = g->res.total_ms;
        int completion = g->res.completion_tokens;
        g->res = *c;
        g->res.completion_tokens = completion;
        g->res.total_ms = total > c->total_ms ? total : c->total_ms;
    }
    if (c->finish == SLM_FINISH_ERROR && !err) {
        g->res.finish = c->finish;
        g->res.status = c->status;
        snprintf(g->err, sizeof g->err, "%s", r->err);
    }
    g->res.completion_tokens += c->completion_tokens;
    if (c->total_ms > g->res.total_ms)
        g->res.total_ms = c->total_ms;
    g->res.error = g->err;
    if (g->refs == 1)
        g->on_done(g->user, &g->res);
}

/* Runs the callbacks the last step earned: queued text of the running
 * requests, then text and on_done of the ended ones (each request's
 * on_token calls precede its on_done). Engine thread, no lock held. */
static void deliver(slm_engine *e)
{
    for (ereq *r = e->live; r; r = r->next)
        flush_out(r, NULL);
    ereq *r = e->ended;
    e->ended = NULL;
    e->ended_tail = &e->ended;
    while (r) {
        ereq *next = r->next;
        flush_out(r, &r->res);
        group_deliver(r);
        ereq_free(r);
        r = next;
    }
}

/* Hands queued submissions to the scheduler (engine thread, lock held). */
static void admit_incoming(slm_engine *e, ereq **failed)
{
    while (e->in_head) {
        ereq *r = e->in_head;
        e->in_head = r->next;
        e->n_incoming--;
        slm_status st = slm_sched_submit(e->sched, r->prompt, r->n_prompt, r->max_new, r, &r->sr);
        if (st) {
            r->sr = NULL;
            r->next = *failed; /* finished outside the lock */
            *failed = r;
            continue;
        }
        if (r->embed)
            slm_sched_req_no_prefix(r->sr);
        r->next = e->live;
        e->live = r;
    }
    e->in_tail = NULL;
}

/* Applies cancellations: between steps, so the scheduler may free blocks. */
static void apply_cancels(slm_engine *e, bool all)
{
    ereq *next;
    for (ereq *r = e->live; r; r = next) {
        next = r->next;
        if (all || atomic_load(&r->cancel)) {
            slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_ABORTED);
            finish(e, r, SLM_FINISH_CANCELLED, SLM_STATUS_CANCELLED, "cancelled");
        }
    }
}

/* Queues the log-probability of sampled token t (and the top_n
 * alternatives) for delivery; dropped when the host is out of memory. */
static void record_logprob(ereq *r, const float *logits, int32_t t)
{
    if (r->n_lp == r->cap_lp) {
        int cap = r->cap_lp ? 2 * r->cap_lp : 8;
        slm_token_logprobs *p = realloc(r->lp, (size_t)cap * sizeof *p);
        if (!p)
            return;
        r->lp = p;
        r->cap_lp = cap;
    }
    slm_token_logprobs *x = &r->lp[r->n_lp++];
    x->sampled.token = t;
    x->n_top = r->top_n;
    x->sampled.logprob = slm_sampler_logprobs(r->smp, logits, t, r->top_n, x->top);
}

/* The sampled token of one request: stop, or record and stream it.
 * logits: the row to sample (masked by a grammar); lp_logits: the same row
 * before the mask, which the log-probabilities report. */
static void take_token(slm_engine *e, ereq *r, const float *logits, const float *lp_logits)
{
    const slm_tokenizer *tok = e->m->tok;
    int32_t t = slm_sampler_sample(r->smp, logits);
    if (r->t_first <= 0)
        r->t_first = now_ms();
    if (!r->ignore_eos && slm_tokenizer_is_eog(tok, t)) {
        slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_STOPPED);
        finish(e, r, SLM_FINISH_STOP, SLM_OK, NULL);
        return;
    }
    if (r->want_lp)
        record_logprob(r, lp_logits, t);
    slm_sampler_accept(r->smp, t);
    if (!grammar_advance(e, r, t)) {
        slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_ABORTED);
        /* NOTE: reachable when logit_bias bans (-100) every token the
         * grammar allows: the sampler then draws among banned tokens. */
        finish(e, r, SLM_FINISH_ERROR, SLM_STATUS_INVALID_ARGUMENT,
               "the sampled token does not continue the response's grammar: does "
               "logit_bias ban every token the schema allows here?");
        return;
    }
    if (slm_sched_update(e->sched, r->sr, t) != SLM_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", slm_last_error());
        slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_ABORTED);
        finish(e, r, SLM_FINISH_ERROR, SLM_STATUS_INTERNAL, msg);
        return;
    }
    const char *piece, *out;
    size_t len, n;
    if (slm_detok_feed(r->dt, t, &piece, &len) != SLM_OK)
        len = 0;
    bool stopped = slm_stopstr_feed(&r->stops, piece, len, &out, &n);
    emit(r, out, n);
    if (stopped) {
        slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_STOPPED);
        finish(e, r, SLM_FINISH_STOP, SLM_OK, NULL);
    } else if (slm_sched_req_state(r->sr) == SLM_REQ_FINISHED_LENGTH) {
        finish(e, r, SLM_FINISH_LENGTH, SLM_OK, NULL);
    }
}

/* Every request of a failed step ends with the step's error. */
static void fail_plan(slm_engine *e, const slm_sched_plan *pl, slm_status st, const char *msg)
{
    ereq **rs = malloc((size_t)pl->n_entries * sizeof *rs);
    int n = 0;
    for (int i = 0; rs && i < pl->n_entries; i++)
        rs[n++] = slm_sched_req_user(pl->entries[i].req);
    for (int i = 0; i < n; i++) {
        slm_sched_finish(e->sched, rs[i]->sr, SLM_REQ_FINISHED_ABORTED);
        finish(e, rs[i], SLM_FINISH_ERROR, st, msg);
    }
    free(rs);
}

/* Notes when each request of the plan was first scheduled and how much of
 * its prompt the prefix cache held. */
static void note_scheduled(const slm_sched_plan *pl)
{
    double t = now_ms();
    for (int i = 0; i < pl->n_entries; i++) {
        ereq *r = slm_sched_req_user(pl->entries[i].req);
        if (!r->scheduled) {
            r->scheduled = true;
            r->t_sched = t;
            r->cached = pl->entries[i].start < r->n_prompt ? pl->entries[i].start : r->n_prompt;
        }
    }
}

/* ---- embeddings -------------------------------------------------------- */

static bool plan_has_embed(const slm_sched_plan *pl)
{
    for (int i = 0; i < pl->n_entries; i++)
        if (((ereq *)slm_sched_req_user(pl->entries[i].req))->embed)
            return true;
    return false;
}

/* Folds rows (n, d) of hidden states, tokens start .. start + n of r's
 * prompt, into r's pool. A chunk starting at 0 again is a recomputation
 * after preemption: the pool starts over. */
static void pool_rows(ereq *r, const float *rows, int start, int n, int d)
{
    if (start == 0) {
        memset(r->pool, 0, (size_t)d * sizeof *r->pool);
        r->pooled = 0;
    }
    int first = 0;
    if (r->pooling == SLM_POOLING_CLS)
        n = start == 0 ? 1 : 0; /* only the first token counts */
    else if (r->pooling == SLM_POOLING_LAST)
        first = start + n == r->n_prompt ? n - 1 : n; /* only the last token counts */
    for (int t = first; t < n; t++) {
        const float *x = rows + (size_t)t * d;
        if (r->pooling == SLM_POOLING_MEAN)
            for (int j = 0; j < d; j++)
                r->pool[j] += x[j];
        else
            for (int j = 0; j < d; j++)
                r->pool[j] = x[j];
    }
}

/* Pools an embedding request's chunk of the step just waited for (one
 * download of its rows). A request whose rows do not continue where its
 * pool left off, or that cannot get them, ends with an error rather than a
 * wrong embedding: false then (its scheduler entry is gone). */
static bool pool_entry(slm_engine *e, const slm_sched_entry *en, ereq *r)
{
    int d = e->m->hp.n_embd;
    if (!e->hidden)
        e->hidden = malloc((size_t)e->p.step_tokens * (size_t)d * sizeof *e->hidden);
    slm_status st = e->hidden ? slm_forward_hidden(e->fwd, en->start_row, en->n_tokens,
                                                   e->hidden)
                              : slm_error(SLM_STATUS_OUT_OF_MEMORY,
                                          "embedding: out of memory for hidden states");
    if (!st && en->start != 0 && en->start != r->pooled)
        st = slm_error(SLM_STATUS_INTERNAL, "embedding: chunk at token %d, pooled %d",
                       en->start, r->pooled);
    if (st) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", slm_last_error());
        slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_ABORTED);
        finish(e, r, SLM_FINISH_ERROR, st, msg);
        return false;
    }
    pool_rows(r, e->hidden, en->start, en->n_tokens, d);
    r->pooled = en->start + en->n_tokens;
    return true;
}

/* The request's last token is computed: its embedding goes to the caller's
 * buffer (mean taken, L2-normalised unless asked not to) and the request
 * ends, its blocks freed for the next schedule. */
static void embed_finish(slm_engine *e, ereq *r)
{
    int d = e->m->hp.n_embd;
    double div = r->pooling == SLM_POOLING_MEAN ? (double)r->n_prompt : 1.0;
    double ss = 0;
    for (int j = 0; j < d; j++) {
        r->pool[j] /= div;
        ss += r->pool[j] * r->pool[j];
    }
    /* NOTE: an all-zero vector stays zero rather than becoming NaN. */
    double scale = r->normalize && ss > 0 ? 1.0 / sqrt(ss) : 1.0;
    for (int j = 0; j < d; j++)
        r->emb_out[j] = (float)(r->pool[j] * scale);
    if (r->t_first <= 0)
        r->t_first = now_ms();
    slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_STOPPED);
    finish(e, r, SLM_FINISH_STOP, SLM_OK, NULL);
}

/* Submits the plan's step with its block copies (copy-on-write after a
 * fork). Returns the submit status; the step must be waited for either way. */
static slm_status submit_plan(slm_engine *e, const slm_sched_plan *pl)
{
    slm_step step;
    slm_sched_plan_step(pl, &step);
    if (plan_has_embed(pl))
        slm_forward_keep_hidden(e->fwd);
    return slm_forward_submit(e->fwd, &step, e->logits, pl->copies, pl->n_copies);
}

/* Choice 0's prompt is computed (its first logit row is here): the other
 * choices fork its sequence, sharing its KV blocks, join the live list
 * and sample their first token from the same row. The scheduler plans
 * them from the next step on like any running request. */
static void fork_choices(slm_engine *e, ereq *r, const float *row, const float *lp_row)
{
    ereq **kids = r->forks;
    int n = r->n_forks;
    r->forks = NULL;
    r->n_forks = 0;
    for (int i = 0; i < n; i++) {
        ereq *c = kids[i];
        int shared = 0;
        slm_status st = slm_sched_fork(e->sched, r->sr, c, &c->sr, &shared);
        c->scheduled = true;
        c->t_sched = r->t_sched;
        c->cached = r->cached;
        pthread_mutex_lock(&e->mu);
        c->next = e->live;
        e->live = c;
        /* NOTE: copied under the lock slm_engine_cancel marks under, once
         * the fork is findable: a cancel lands on both or on neither. */
        atomic_store(&c->cancel, atomic_load(&r->cancel));
        pthread_mutex_unlock(&e->mu);
        if (st) {
            c->sr = NULL;
            char msg[256];
            snprintf(msg, sizeof msg, "fork for choice %d: %s", c->choice, slm_last_error());
            finish(e, c, SLM_FINISH_ERROR, st, msg);
            continue;
        }
        e->n_forks++;
        e->n_forked_blocks += (uint64_t)shared;
        take_token(e, c, row, lp_row);
    }
    free(kids);
}

/* Samples one token for every entry with a logit row (rows come in entry
 * order) and pools every embedding entry's rows. Each entry's request is
 * read before anything here can end it: ending entry i (take_token,
 * pool_entry) frees only entry i's scheduler request; later entries hold
 * other requests, and the plan's arrays stay valid until the next
 * schedule. */
static void sample_plan(slm_engine *e, const slm_sched_plan *pl)
{
    int k = 0;
    for (int i = 0; i < pl->n_entries; i++) {
        const slm_sched_entry *en = &pl->entries[i];
        bool has_row = en->logit_row >= 0;
        ereq *r = slm_sched_req_user(en->req);
        if (r->embed) { /* every chunk is pooled; the last one ends it */
            if (pool_entry(e, en, r) && has_row)
                embed_finish(e, r);
            k += has_row;
            continue;
        }
        if (!has_row)
            continue;
        float *row = e->logits + (size_t)k * e->n_vocab;
        k++;
        /* NOTE: logprobs are the model's distribution (slm.h), not the
         * grammar's: they are taken from the row as it was before the mask. */
        const float *lp_row = row;
        if (r->gs && r->want_lp) {
            memcpy(e->graw, row, (size_t)e->n_vocab * sizeof *row);
            lp_row = e->graw;
        }
        /* NOTE: masked once for choice 0 before its forks take their first
         * token: every choice starts in the same grammar state. */
        if (!grammar_mask(e, r, row)) {
            slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_ABORTED);
            finish(e, r, SLM_FINISH_ERROR, SLM_STATUS_UNSUPPORTED,
                   "no token of the vocabulary can continue the response's grammar");
            continue;
        }
        if (r->n_forks)
            fork_choices(e, r, row, lp_row);
        take_token(e, r, row, lp_row);
    }
}

/* One step: plan, submit, deliver the last step's callbacks while the
 * device runs (unless sequential), wait, sample. Returns false when there was
 * nothing to do. */
static bool run_step(slm_engine *e)
{
    const slm_sched_plan *pl;
    if (slm_sched_schedule(e->sched, &pl) != SLM_OK || pl->n_tokens == 0)
        return false;
    note_scheduled(pl);
    e->n_computed += (uint64_t)pl->n_tokens;
    slm_status st = submit_plan(e, pl);
    if (e->overlap)
        deliver(e);
    slm_status wst = slm_forward_wait(e->fwd);
    if (!st)
        st = wst;
    if (st) {
        char msg[256];
        snprintf(msg, sizeof msg, "step failed: %s", slm_last_error());
        fail_plan(e, pl, st, msg);
        return true;
    }
    sample_plan(e, pl);
    if (!e->overlap)
        deliver(e);
    return true;
}

static void publish_stats(slm_engine *e)
{
    slm_sched_stats ss;
    slm_kvcache_stats ks;
    slm_sched_stats_get(e->sched, &ss);
    slm_kvcache_stats_get(slm_sched_kvcache(e->sched), &ks);
    pthread_mutex_lock(&e->mu);
    e->sched_waiting = ss.n_waiting;
    e->stats.running = ss.n_running;
    e->stats.waiting = ss.n_waiting + e->n_incoming;
    e->stats.kv_blocks_used = ks.used;
    e->stats.kv_blocks_total = ks.total;
    e->stats.preemptions = (uint64_t)ss.n_preemptions;
    e->stats.steps = (uint64_t)ss.n_steps;
    e->stats.forks = e->n_forks;
    e->stats.forked_blocks = e->n_forked_blocks;
    e->stats.computed_tokens = e->n_computed;
    pthread_mutex_unlock(&e->mu);
}

static bool sched_idle(slm_engine *e)
{
    slm_sched_stats ss;
    slm_sched_stats_get(e->sched, &ss);
    return ss.n_running == 0 && ss.n_waiting == 0;
}

static void *engine_main(void *arg)
{
    slm_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->in_head && !e->cancel_pending && sched_idle(e))
            pthread_cond_wait(&e->cv, &e->mu);
        bool quit_now = e->stop && !e->drain;
        ereq *failed = NULL;
        admit_incoming(e, &failed);
        e->cancel_pending = false;
        pthread_mutex_unlock(&e->mu);
        while (failed) {
            ereq *r = failed;
            failed = r->next;
            finish(e, r, SLM_FINISH_ERROR, SLM_STATUS_INTERNAL,
                   "engine: the scheduler refused the request");
        }
        apply_cancels(e, quit_now);
        if (quit_now)
            break;
        bool worked = run_step(e);
        if (!worked || sched_idle(e)) {
            /* No next step to hide the callbacks behind. Stats first, so a
             * client that reads them after its answer sees its request. */
            publish_stats(e);
            deliver(e);
        }
        publish_stats(e);
        if (!worked && !sched_idle(e)) {
            /* Waiting requests that can never be admitted: cannot happen
             * while kv_blocks holds one full context (checked at create). */
            ereq *next;
            for (ereq *r = e->live; r; r = next) {
                next = r->next;
                slm_sched_finish(e->sched, r->sr, SLM_REQ_FINISHED_ABORTED);
                finish(e, r, SLM_FINISH_ERROR, SLM_STATUS_INTERNAL,
                       "engine: request could not be scheduled");
            }
        }
        pthread_mutex_lock(&e->mu);
        bool done = e->stop && !e->in_head && sched_idle(e);
        pthread_mutex_unlock(&e->mu);
        if (done)
            break;
    }
    deliver(e);
    publish_stats(e);
    return NULL;
}

/* ---- public functions ---------------------------------------------------- */

static void engine_free(slm_engine *e)
{
    slm_sched_free(e->sched);
    slm_forward_free(e->fwd);
    if (e->kv)
        e->m->be->ops->kv_free(e->m->be, e->kv);
    free(e->logits);
    free(e->hidden);
    slm_token_trie_free(e->trie);
    free(e->gscratch);
    free(e->gallowed);
    free(e->graw);
    pthread_mutex_destroy(&e->trie_mu);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    atomic_fetch_sub(&e->m->n_engines, 1);
    free(e);
}

static slm_type kv_storage(slm_kv_type t)
{
    return t == SLM_KV_F32 ? SLM_TYPE_F32 : t == SLM_KV_Q8_0 ? SLM_TYPE_Q8_0 : SLM_TYPE_F16;
}

/* Bytes of one KV block over all layers, K and V. */
static uint64_t kv_block_bytes(const slm_hparams *hp, slm_type type, int block_size)
{
    uint64_t row = type == SLM_TYPE_F32   ? 4 * (uint64_t)hp->head_dim
                   : type == SLM_TYPE_F16 ? 2 * (uint64_t)hp->head_dim
                                          : 34 * (((uint64_t)hp->head_dim + 31) / 32);
    return (uint64_t)hp->n_layer * 2 * (uint64_t)hp->n_head_kv * row * (uint64_t)block_size;
}

/* Can the backend store and attend over this KV type and head size? */
static slm_status check_kv_support(slm_backend *be, slm_type type, int head_dim)
{
    const slm_op ops[] = {SLM_OP_KV_STORE, SLM_OP_ATTENTION};
    for (int i = 0; i < 2; i++) {
        slm_support_query q = {ops[i], type, head_dim};
        slm_status st = be->ops->supports(be, &q);
        if (st)
            return slm_error(st, "engine: KV cache of %s with heads of %d: %s",
                             slm_type_name(type), head_dim, slm_last_error());
    }
    return SLM_OK;
}

/* Sizes the KV pool: the blocks asked for, else what max_running full
 * contexts need, bounded by the measured free memory's share (after weights
 * and workspace) and by kv_bytes_max. Fills the sizing facts of the stats. */
static slm_status size_pool(slm_engine *e, uint64_t workspace, int *n_blocks)
{
    slm_engine_params *p = &e->p;
    slm_backend *be = e->m->be;
    slm_engine_stats *st = &e->stats;
    uint64_t bb = kv_block_bytes(&e->m->hp, kv_storage(p->kv_type), p->block_size);
    int64_t ctx_blocks = (p->n_ctx + p->block_size - 1) / p->block_size;
    int64_t n = ctx_blocks * p->max_running;
    st->kv_block_bytes = bb;
    st->workspace_bytes = workspace;
    st->kv_sized_by = 1;
    slm_mem_info mem = {0};
    if (p->kv_blocks > 0) {
        n = p->kv_blocks;
        st->kv_sized_by = 3;
    } else if (be->ops->memory && be->ops->memory(be, &mem) == SLM_OK) {
        st->mem_total_bytes = mem.total_bytes;
        st->mem_free_bytes = mem.free_bytes;
        double share = mem.host ? ENGINE_KV_SHARE_HOST : ENGINE_KV_SHARE_DEVICE;
        double budget = (double)mem.free_bytes * share - (double)ENGINE_KV_MARGIN;
        int64_t fit = budget > 0 ? (int64_t)(budget / (double)bb) : 0;
        if (fit < n) {
            n = fit;
            st->kv_sized_by = 0;
        }
    } else if ((uint64_t)n * bb > ENGINE_KV_BYTES_UNMEASURED) {
        n = (int64_t)(ENGINE_KV_BYTES_UNMEASURED / bb);
        st->kv_sized_by = 2;
    }
    if (p->kv_blocks == 0 && p->kv_bytes_max && (uint64_t)n * bb > p->kv_bytes_max) {
        n = (int64_t)(p->kv_bytes_max / bb);
        st->kv_sized_by = 2;
    }
    if (n > INT32_MAX / p->block_size)
        n = INT32_MAX / p->block_size;
    if (n < ctx_blocks) {
        char why[256];
        if (st->kv_sized_by == 2)
            snprintf(why, sizeof why, "the KV byte cap of %llu bytes binds: raise it or lower n_ctx",
                     (unsigned long long)p->kv_bytes_max);
        else if (st->kv_sized_by == 3)
            snprintf(why, sizeof why, "raise kv_blocks or lower n_ctx");
        else
            snprintf(why, sizeof why, "%llu bytes free of %llu after weights and %llu bytes of "
                     "workspace: lower n_ctx or free memory",
                     (unsigned long long)mem.free_bytes, (unsigned long long)mem.total_bytes,
                     (unsigned long long)workspace);
        return slm_error(p->kv_blocks ? SLM_STATUS_INVALID_ARGUMENT : SLM_STATUS_OUT_OF_MEMORY,
                         "engine: the KV pool holds %lld blocks of %d tokens (%llu bytes each), "
                         "fewer than one request of n_ctx %d needs (%lld); %s",
                         (long long)n, p->block_size, (unsigned long long)bb, p->n_ctx,
                         (long long)ctx_blocks, why);
    }
    *n_blocks = (int)n;
    st->kv_pool_bytes = (uint64_t)n * bb;
    return SLM_OK;
}

/* Forward pass and workspace first, so the memory measured after them is
 * what the pool may take; then the pool and the scheduler over it. */
static slm_status engine_build(slm_engine *e)
{
    slm_model *m = e->m;
    slm_engine_params *ep = &e->p;
    slm_type kt = kv_storage(ep->kv_type);
    size_t ws = 0;
    slm_status st = check_kv_support(m->be, kt, m->hp.head_dim);
    if (!st)
        st = slm_forward_create(m, NULL, ep->step_tokens, ep->max_running, &e->fwd, &ws);
    int n_blocks = 0;
    if (!st)
        st = size_pool(e, ws, &n_blocks);
    slm_kv_desc kd = {m->hp.n_layer, n_blocks, ep->block_size, m->hp.n_head_kv, m->hp.head_dim, kt};
    if (!st)
        st = m->be->ops->kv_create(m->be, &kd, &e->kv);
    if (!st)
        st = slm_forward_set_kv(e->fwd, e->kv, &ws);
    e->stats.workspace_bytes = ws;
    slm_sched_params sp;
    slm_sched_params_default(&sp);
    sp.n_blocks = n_blocks;
    sp.block_size = ep->block_size;
    sp.max_batch_tokens = ep->step_tokens;
    sp.max_running = ep->max_running;
    /* The engine bounds the queue itself (incoming + waiting); preempted
     * requests rejoin the scheduler's queue, so leave it room. */
    sp.max_waiting = ep->max_waiting + ep->max_running;
    sp.max_context = ep->n_ctx;
    if (!st)
        st = slm_sched_create(&sp, &e->sched);
    e->logits = malloc((size_t)ep->max_running * (size_t)e->n_vocab * sizeof(float));
    if (!st && !e->logits)
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "engine: out of memory for logits");
    return st;
}

slm_status slm_engine_open(slm_model *m, const slm_engine_params *p, slm_engine **out)
{
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_engine_open: out is NULL");
    *out = NULL;
    if (!m || !m->tok)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "slm_engine_open: needs a model from slm_model_open");
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    if (p) {
        if (p->size < sizeof ep)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "engine params.size %zu is smaller than this library's %zu",
                             p->size, sizeof ep);
        ep = *p;
    }
    slm_status st = check_engine_params(m, &ep);
    if (st)
        return st;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&m->n_engines, &expected, 1))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "slm_engine_open: the model already has an engine (one per model)");
    slm_engine *e = calloc(1, sizeof *e);
    if (!e) {
        atomic_fetch_sub(&m->n_engines, 1);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "engine: out of memory");
    }
    e->m = m;
    e->p = ep;
    e->n_vocab = m->hp.n_vocab;
    e->next_id = 1;
    e->overlap = !ep.sequential;
    e->ended_tail = &e->ended;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->trie_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    st = engine_build(e);
    if (!st && pthread_create(&e->thread, NULL, engine_main, e) != 0)
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "engine: cannot start its thread");
    if (st) {
        engine_free(e);
        return st;
    }
    e->thread_started = true;
    publish_stats(e);
    *out = e;
    return SLM_OK;
}

void slm_engine_close(slm_engine *e, int drain)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    e->drain = drain != 0;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started)
        pthread_join(e->thread, NULL);
    engine_free(e);
}

/* Queues a made request for the engine thread, or frees it and fails. */
static slm_status enqueue(slm_engine *e, ereq *r, uint64_t *id)
{
    pthread_mutex_lock(&e->mu);
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        ereq_free(r);
        return slm_error(SLM_STATUS_CANCELLED, "the engine is shutting down");
    }
    if (e->n_incoming + e->sched_waiting >= e->p.max_waiting) {
        int n = e->n_incoming + e->sched_waiting;
        pthread_mutex_unlock(&e->mu);
        ereq_free(r);
        return slm_error(SLM_STATUS_QUEUE_FULL, "queue full: %d requests waiting (the limit)", n);
    }
    r->id = e->next_id++;
    for (int i = 0; i < r->n_forks; i++)
        r->forks[i]->id = r->id; /* cancelling the request cancels every choice */
    if (e->in_tail)
        e->in_tail->next = r;
    else
        e->in_head = r;
    e->in_tail = r;
    e->n_incoming++;
    e->stats.waiting++;
    if (id)
        *id = r->id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return SLM_OK;
}

slm_status slm_engine_submit(slm_engine *e, const slm_request_params *p, uint64_t *id)
{
    if (!e || !p)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_engine_submit: NULL argument");
    ereq *r;
    slm_status st = request_make(e, p, &r); /* tokenizing happens outside the lock */
    return st ? st : enqueue(e, r, id);
}

slm_status slm_engine_submit_embed(slm_engine *e, const slm_embed_params *p, uint64_t *id)
{
    if (!e || !p)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_engine_submit_embed: NULL argument");
    ereq *r;
    slm_status st = embed_make(e, p, &r);
    return st ? st : enqueue(e, r, id);
}

int slm_engine_n_embd(const slm_engine *e) { return e->m->hp.n_embd; }

slm_status slm_engine_cancel(slm_engine *e, uint64_t id)
{
    if (!e)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "slm_engine_cancel: engine is NULL");
    bool found = false;
    pthread_mutex_lock(&e->mu);
    /* Every choice of the request: forked ones are live requests of their own. */
    for (int list = 0; list < 2; list++)
        for (ereq *r = list ? e->live : e->in_head; r; r = r->next)
            if (r->id == id) {
                atomic_store(&r->cancel, true);
                found = true;
            }
    if (found) {
        e->cancel_pending = true;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return found ? SLM_OK
                 : slm_error(SLM_STATUS_NOT_FOUND, "request %llu is not queued or running",
                             (unsigned long long)id);
}

slm_status slm_engine_get_stats(slm_engine *e, slm_engine_stats *s)
{
    if (!e || !s || s->size < sizeof *s)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "slm_engine_get_stats: NULL argument or stats.size not set");
    pthread_mutex_lock(&e->mu);
    *s = e->stats;
    pthread_mutex_unlock(&e->mu);
    s->size = sizeof *s;
    return SLM_OK;
}
