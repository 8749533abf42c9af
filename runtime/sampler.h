/*
 * sampler.h — turns one row of logits into the next token: logit biases,
 * penalties (repetition, presence, frequency) over the tokens seen so far, then
 * top-k, top-p, min-p and temperature, then a draw from a seeded generator.
 * Temperature <= 0 is greedy (argmax, lowest id on ties).
 *
 * Same seed, same parameters, same logits → same tokens, on every machine:
 * the generator is xoshiro256** seeded by splitmix64 and the draw uses
 * double-precision cumulative sums in sorted order.
 */
#ifndef SLM_SAMPLER_H
#define SLM_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct slm_sampler_params {
    size_t size;              /* sizeof(slm_sampler_params) */
    float temperature;        /* <= 0: greedy */
    int top_k;                /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repeat_penalty;     /* 1: off; >1 divides positive logits of seen tokens */
    int repeat_last_n;        /* how many recent tokens the penalties look at */
    float presence_penalty;   /* subtracted once from every seen token */
    float frequency_penalty;  /* subtracted per occurrence */
    uint64_t seed;
    /* Per-token biases added first (copied by create); a bias of -100 or
     * less bans the token (its logit becomes -inf). */
    const slm_logit_bias *bias;
    int n_bias;
} slm_sampler_params;

typedef struct slm_sampler slm_sampler;

void slm_sampler_params_default(slm_sampler_params *p);

/* Fails with INVALID_ARGUMENT naming a parameter out of range: the message
 * starts "sampling.<field>: " with the slm_sampling field's name (the HTTP
 * server maps it to the request field), or names logit_bias and the
 * offending token. */
slm_status slm_sampler_create(const slm_sampler_params *p, int n_vocab, slm_sampler **out);
void slm_sampler_free(slm_sampler *s); /* accepts NULL */

/* Records a token as part of the context (prompt or generated) for the
 * penalties. */
void slm_sampler_accept(slm_sampler *s, int32_t token);

/* Picks the next token from logits[n_vocab] (not modified). */
int32_t slm_sampler_sample(slm_sampler *s, const float *logits);

/* Log-probability of `token` under the model's distribution: log-softmax of
 * logits[n_vocab] after the logit biases, before penalties and temperature.
 * With n_top > 0 (at most SLM_MAX_TOP_LOGPROBS) the n_top most likely tokens
 * go to top[] (most likely first, lower id on ties). Uses the sampler's
 * scratch, so not concurrently with sample(). */
float slm_sampler_logprobs(slm_sampler *s, const float *logits, int32_t token, int n_top,
                           slm_logprob *top);

/* Index of the largest logit (lowest index on ties). */
int32_t slm_argmax(const float *logits, int n);

#endif
