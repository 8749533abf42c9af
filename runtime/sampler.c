/*
 * sampler.c — see sampler.h. Candidates are (id, logit) pairs in a scratch
 * array allocated once per sampler; top-k uses a partial selection so the
 * common case (k = 40 of 49k) does not sort the whole vocabulary.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

typedef struct {
    int32_t id;
    float logit;
} cand;

struct slm_sampler {
    slm_sampler_params p;
    int n_vocab;
    cand *cands;        /* [n_vocab] */
    int32_t *history;   /* ring of the last repeat_last_n tokens */
    int hist_len, hist_pos;
    uint16_t *counts;   /* [n_vocab] occurrences inside the ring */
    uint64_t rng[4];
    slm_logit_bias *bias; /* owned copy of p.bias */
};

void slm_sampler_params_default(slm_sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0x5eed;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Range checks; each message starts with the slm_sampling field's name. */
static slm_status check_params(const slm_sampler_params *p, int n_vocab)
{
    if (!p || p->size < sizeof *p)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "sampler: params missing or too old");
    if (n_vocab <= 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "sampler: n_vocab %d", n_vocab);
    if (!(p->temperature >= 0) && !(p->temperature < 0))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "sampling.temperature: NaN");
    if (!(p->top_p > 0))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "sampling.top_p: %g must be > 0",
                         p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "sampling.min_p: %g must be in [0, 1]",
                         p->min_p);
    if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "sampling.repeat_penalty: %g must be > 0", p->repeat_penalty);
    if (p->repeat_last_n < 0 || p->repeat_last_n > 1 << 20)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "sampler: repeat_last_n %d out of range",
                         p->repeat_last_n);
    if (!isfinite(p->presence_penalty))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "sampling.presence_penalty: must be finite");
    if (!isfinite(p->frequency_penalty))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "sampling.frequency_penalty: must be finite");
    if (p->n_bias < 0 || (p->n_bias > 0 && !p->bias))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "sampling.logit_bias: NULL or n < 0");
    for (int i = 0; i < p->n_bias; i++) {
        if (p->bias[i].token < 0 || p->bias[i].token >= n_vocab)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "sampling.logit_bias: token %d is outside the vocabulary of %d",
                             p->bias[i].token, n_vocab);
        if (!(p->bias[i].bias >= -100 && p->bias[i].bias <= 100))
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "sampling.logit_bias: the bias of token %d is %g, not in "
                             "[-100, 100]", p->bias[i].token, p->bias[i].bias);
    }
    return SLM_OK;
}

slm_status slm_sampler_create(const slm_sampler_params *p, int n_vocab, slm_sampler **out)
{
    *out = NULL;
    slm_status st = check_params(p, n_vocab);
    if (st)
        return st;
    slm_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->history = malloc((size_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 1) * sizeof(int32_t));
    s->bias = malloc((size_t)(p->n_bias > 0 ? p->n_bias : 1) * sizeof *s->bias);
    if (!s->cands || !s->counts || !s->history || !s->bias) {
        slm_sampler_free(s);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "sampler: out of memory");
    }
    if (p->n_bias > 0)
        memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof *s->bias);
    s->p.bias = s->bias;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix(&x);
    *out = s;
    return SLM_OK;
}

void slm_sampler_free(slm_sampler *s)
{
    if (!s)
        return;
    free(s->cands);
    free(s->counts);
    free(s->history);
    free(s->bias);
    free(s);
}

void slm_sampler_accept(slm_sampler *s, int32_t token)
{
    int cap = s->p.repeat_last_n;
    if (cap <= 0 || token < 0 || token >= s->n_vocab)
        return;
    if (s->hist_len == cap) { /* the ring is full: the oldest token leaves */
        int32_t old = s->history[s->hist_pos];
        s->counts[old]--;
    } else {
        s->hist_len++;
    }
    s->history[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % cap;
    if (s->counts[token] < UINT16_MAX)
        s->counts[token]++;
}

int32_t slm_argmax(const float *logits, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* NOTE: -100 bans rather than adds: a model's logits can span more than
 * 100, and a client asking for -100 means "never" (as OpenAI documents). */
static float biased(float logit, float bias)
{
    return bias <= -100 ? -INFINITY : logit + bias;
}

/* Candidates are in id order here (c[i].id == i). A token listed twice
 * gets both biases. */
static void apply_bias(const slm_sampler *s, cand *c)
{
    for (int i = 0; i < s->p.n_bias; i++)
        c[s->bias[i].token].logit = biased(c[s->bias[i].token].logit, s->bias[i].bias);
}

static void apply_penalties(const slm_sampler *s, cand *c, int n)
{
    const slm_sampler_params *p = &s->p;
    if (p->repeat_penalty == 1.0f && p->presence_penalty == 0 && p->frequency_penalty == 0)
        return;
    for (int i = 0; i < n; i++) {
        int k = s->counts[c[i].id];
        if (!k)
            continue;
        float l = c[i].logit;
        l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        c[i].logit = l - (float)k * p->frequency_penalty - p->presence_penalty;
    }
}

/* Descending by logit, ascending id on ties (a total order → reproducible). */
static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cand_before(const cand *x, const cand *y) { return cand_cmp(x, y) < 0; }

/* Moves the k best candidates to the front (in any order): quickselect. */
static void select_top(cand *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot))
                i++;
            while (cand_before(&pivot, &c[j]))
                j--;
            if (i <= j) {
                cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

int32_t slm_sampler_sample(slm_sampler *s, const float *logits)
{
    const slm_sampler_params *p = &s->p;
    int n = s->n_vocab;
    cand *c = s->cands;
    for (int i = 0; i < n; i++)
        c[i] = (cand){i, logits[i]};
    apply_bias(s, c);
    apply_penalties(s, c, n);
    if (p->temperature <= 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (cand_before(&c[i], &c[best]))
                best = i;
        return c[best].id;
    }
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    if (c[0].logit == -INFINITY) /* everything banned: no distribution to draw from */
        return c[0].id;
    /* Probabilities at temperature: softmax over the survivors. */
    double maxl = c[0].logit, sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp(((double)c[i].logit - maxl) / p->temperature);
    /* top-p: keep the smallest prefix whose mass reaches top_p;
     * min-p: drop candidates below min_p times the best one's probability. */
    int keep = n;
    double cum = 0;
    for (int i = 0; i < n; i++) {
        double pi = exp(((double)c[i].logit - maxl) / p->temperature) / sum;
        if (p->min_p > 0 && i > 0 && pi < p->min_p * (1.0 / sum)) {
            keep = i;
            break;
        }
        cum += pi;
        if (p->top_p < 1 && cum >= p->top_p) {
            keep = i + 1;
            break;
        }
    }
    while (keep > 1 && c[keep - 1].logit == -INFINITY) /* banned: never drawn */
        keep--;
    double mass = 0;
    for (int i = 0; i < keep; i++)
        mass += exp(((double)c[i].logit - maxl) / p->temperature);
    double u = (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) * mass;
    double acc = 0;
    for (int i = 0; i < keep; i++) {
        acc += exp(((double)c[i].logit - maxl) / p->temperature);
        if (u < acc)
            return c[i].id;
    }
    return c[keep - 1].id;
}

float slm_sampler_logprobs(slm_sampler *s, const float *logits, int32_t token, int n_top,
                           slm_logprob *top)
{
    int n = s->n_vocab;
    cand *c = s->cands;
    for (int i = 0; i < n; i++)
        c[i] = (cand){i, logits[i]};
    apply_bias(s, c);
    double maxl = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (c[i].logit > maxl)
            maxl = c[i].logit;
    if (maxl == -INFINITY) /* everything banned */
        maxl = 0;
    for (int i = 0; i < n; i++)
        sum += exp((double)c[i].logit - maxl);
    double lse = maxl + log(sum > 0 ? sum : 1);
    float lp = (float)((double)c[token].logit - lse);
    if (n_top > SLM_MAX_TOP_LOGPROBS)
        n_top = SLM_MAX_TOP_LOGPROBS;
    if (n_top > n)
        n_top = n;
    if (n_top > 0) {
        if (n_top < n)
            select_top(c, n, n_top);
        qsort(c, (size_t)n_top, sizeof *c, cand_cmp);
        for (int i = 0; i < n_top; i++)
            top[i] = (slm_logprob){c[i].id, (float)((double)c[i].logit - lse)};
    }
    return lp;
}
