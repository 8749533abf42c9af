/*
 * test_sampler.c — the sampler: greedy picks the argmax; a seed reproduces
 * a sequence of draws; top-k / top-p / min-p never pick outside their sets;
 * draws follow the softmax at temperature (chi-square-style bound); the
 * penalties move logits the documented way; bad parameters are refused
 * with the slm_sampling field's name; logit biases ban (-100) and add;
 * log-probabilities are the log-softmax after the biases (against a double
 * reference computed here), with the top alternatives in order.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "testutil.h"

#define V 257

static void random_logits(float *l, int n)
{
    for (int i = 0; i < n; i++)
        l[i] = 3.0f * tu_normal();
}

static slm_sampler *make(float temp, int k, float p, float minp, uint64_t seed)
{
    slm_sampler_params sp;
    slm_sampler_params_default(&sp);
    sp.temperature = temp, sp.top_k = k, sp.top_p = p, sp.min_p = minp, sp.seed = seed;
    slm_sampler *s;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_OK);
    return s;
}

static void test_greedy(void **state)
{
    (void)state;
    float l[V];
    for (int rep = 0; rep < 20; rep++) {
        random_logits(l, V);
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best])
                best = i;
        slm_sampler *s = make(0, 40, 0.9f, 0.1f, (uint64_t)rep);
        assert_int_equal(slm_sampler_sample(s, l), best);
        assert_int_equal(slm_argmax(l, V), best);
        slm_sampler_free(s);
    }
}

static void test_seed_reproduces(void **state)
{
    (void)state;
    float l[V];
    random_logits(l, V);
    uint64_t seed = tu_rand_u64();
    slm_sampler *a = make(1.0f, 0, 1.0f, 0, seed), *b = make(1.0f, 0, 1.0f, 0, seed),
                *c = make(1.0f, 0, 1.0f, 0, seed + 1);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = slm_sampler_sample(a, l), y = slm_sampler_sample(b, l), z = slm_sampler_sample(c, l);
        assert_int_equal(x, y);
        differ += x != z;
    }
    assert_true(differ > 0); /* another seed gives another sequence */
    slm_sampler_free(a), slm_sampler_free(b), slm_sampler_free(c);
}

static int rank_of(const float *l, int id)
{
    int r = 0;
    for (int i = 0; i < V; i++)
        r += l[i] > l[id] || (l[i] == l[id] && i < id);
    return r;
}

static void test_top_k_top_p_min_p(void **state)
{
    (void)state;
    float l[V];
    random_logits(l, V);
    slm_sampler *k = make(1.5f, 5, 1.0f, 0, tu_rand_u64());
    for (int i = 0; i < 500; i++)
        assert_true(rank_of(l, slm_sampler_sample(k, l)) < 5);
    slm_sampler_free(k);
    /* top-p 0.5: the chosen token's rank is inside the smallest prefix
     * reaching half the mass at temperature 1. */
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++)
        mx = fmax(mx, l[i]);
    for (int i = 0; i < V; i++)
        sum += exp(l[i] - mx);
    int order[V];
    for (int i = 0; i < V; i++)
        order[rank_of(l, i)] = i;
    int prefix = 0;
    for (double cum = 0; cum < 0.5; prefix++)
        cum += exp(l[order[prefix]] - mx) / sum;
    slm_sampler *p = make(1.0f, 0, 0.5f, 0, tu_rand_u64());
    for (int i = 0; i < 500; i++)
        assert_true(rank_of(l, slm_sampler_sample(p, l)) < prefix);
    slm_sampler_free(p);
    slm_sampler *m = make(1.0f, 0, 1.0f, 0.2f, tu_rand_u64());
    for (int i = 0; i < 500; i++) {
        int t = slm_sampler_sample(m, l);
        assert_true(exp(l[t] - mx) >= 0.2 - 1e-9);
    }
    slm_sampler_free(m);
}

/* Draw frequencies follow softmax(l / T): with 4 tokens and 20000 draws,
 * each frequency is within 0.02 of its probability (> 6 sigma). */
static void test_distribution(void **state)
{
    (void)state;
    float l[V];
    for (int i = 0; i < V; i++)
        l[i] = -1e9f;
    l[3] = 1.0f, l[10] = 0.5f, l[100] = 0.0f, l[256] = -1.0f;
    const float T = 0.7f;
    slm_sampler *s = make(T, 0, 1.0f, 0, tu_rand_u64());
    int ids[4] = {3, 10, 100, 256}, cnt[4] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        int t = slm_sampler_sample(s, l);
        for (int j = 0; j < 4; j++)
            cnt[j] += t == ids[j];
    }
    double z = 0;
    for (int j = 0; j < 4; j++)
        z += exp(l[ids[j]] / T);
    for (int j = 0; j < 4; j++)
        assert_true(fabs(cnt[j] / (double)N - exp(l[ids[j]] / T) / z) < 0.02);
    slm_sampler_free(s);
}

static void test_penalties(void **state)
{
    (void)state;
    float l[V] = {0};
    l[7] = 2.0f, l[8] = 1.9f;
    slm_sampler_params sp;
    slm_sampler_params_default(&sp);
    sp.temperature = 0, sp.repeat_penalty = 1.1f;
    slm_sampler *s;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_OK);
    assert_int_equal(slm_sampler_sample(s, l), 7);
    slm_sampler_accept(s, 7); /* 2.0 / 1.1 = 1.82 < 1.9 */
    assert_int_equal(slm_sampler_sample(s, l), 8);
    slm_sampler_free(s);
    sp.repeat_penalty = 1.0f, sp.frequency_penalty = 0.06f;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_OK);
    slm_sampler_accept(s, 7); /* 2.0 - 0.06 = 1.94 > 1.9 */
    assert_int_equal(slm_sampler_sample(s, l), 7);
    slm_sampler_accept(s, 7); /* 2.0 - 0.12 = 1.88 < 1.9 */
    assert_int_equal(slm_sampler_sample(s, l), 8);
    slm_sampler_free(s);
    sp.frequency_penalty = 0, sp.presence_penalty = 0.2f, sp.repeat_last_n = 2;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_OK);
    slm_sampler_accept(s, 7);
    assert_int_equal(slm_sampler_sample(s, l), 8);
    slm_sampler_accept(s, 1), slm_sampler_accept(s, 2); /* 7 falls out of the window */
    assert_int_equal(slm_sampler_sample(s, l), 7);
    slm_sampler_free(s);
}

static void test_bad_params(void **state)
{
    (void)state;
    slm_sampler_params sp;
    slm_sampler *s = (slm_sampler *)&sp;
    slm_sampler_params_default(&sp);
    sp.top_p = 0;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_STATUS_INVALID_ARGUMENT);
    assert_null(s);
    assert_non_null(strstr(slm_last_error(), "top_p"));
    slm_sampler_params_default(&sp);
    sp.min_p = 2;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_STATUS_INVALID_ARGUMENT);
    slm_sampler_params_default(&sp);
    sp.temperature = NAN;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_STATUS_INVALID_ARGUMENT);
    slm_sampler_params_default(&sp);
    assert_int_equal(slm_sampler_create(&sp, 0, &s), SLM_STATUS_INVALID_ARGUMENT);
    /* Each error names its slm_sampling field, for the HTTP layer's param. */
    slm_sampler_params_default(&sp);
    sp.repeat_penalty = 0;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "sampling.repeat_penalty:"));
    slm_sampler_params_default(&sp);
    slm_logit_bias b[] = {{3, 1}, {V, 1}};
    sp.bias = b, sp.n_bias = 2;
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "sampling.logit_bias:"));
    b[1] = (slm_logit_bias){4, -101};
    assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "sampling.logit_bias:"));
}

/* A -100 bias removes the argmax from greedy and sampled draws; +3 on a
 * token moves its log-probability exactly as log-softmax says; the top
 * list is the reference's order. Bound 1e-5 (float logits, double sums). */
static void test_bias_and_logprobs(void **state)
{
    (void)state;
    float l[V];
    random_logits(l, V);
    int best = 0;
    for (int i = 1; i < V; i++)
        best = l[i] > l[best] ? i : best;
    slm_logit_bias b[] = {{best, -100}, {5, 3}};
    for (int hot = 0; hot < 2; hot++) {
        slm_sampler_params sp;
        slm_sampler_params_default(&sp);
        sp.temperature = hot ? 1.0f : 0, sp.top_k = 0, sp.top_p = 1, sp.min_p = 0;
        sp.bias = b, sp.n_bias = 2;
        slm_sampler *s;
        assert_int_equal(slm_sampler_create(&sp, V, &s), SLM_OK);
        for (int rep = 0; rep < 200; rep++)
            assert_int_not_equal(slm_sampler_sample(s, l), best);
        slm_logprob top[SLM_MAX_TOP_LOGPROBS];
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++)
            if (i != best)
                mx = fmax(mx, l[i] + (i == 5 ? 3 : 0));
        for (int i = 0; i < V; i++)
            if (i != best)
                sum += exp(l[i] + (i == 5 ? 3 : 0) - mx);
        double want5 = l[5] + 3 - mx - log(sum);
        assert_true(fabs(slm_sampler_logprobs(s, l, 5, 20, top) - want5) < 1e-5);
        assert_true(isinf(slm_sampler_logprobs(s, l, best, 0, top)));
        for (int i = 0; i < 20; i++) {
            assert_int_not_equal(top[i].token, best);
            double w = l[top[i].token] + (top[i].token == 5 ? 3 : 0) - mx - log(sum);
            assert_true(fabs(top[i].logprob - w) < 1e-5);
            if (i)
                assert_true(top[i].logprob <= top[i - 1].logprob);
        }
        /* Nothing outside the list beats its last entry. */
        for (int i = 0; i < V; i++) {
            bool listed = i == best;
            for (int j = 0; j < 20; j++)
                listed |= top[j].token == i;
            if (!listed)
                assert_true(l[i] + (i == 5 ? 3 : 0) - mx - log(sum) <= top[19].logprob + 1e-6);
        }
        slm_sampler_free(s);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),       cmocka_unit_test(test_seed_reproduces),
        cmocka_unit_test(test_top_k_top_p_min_p), cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_penalties),    cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_bias_and_logprobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
