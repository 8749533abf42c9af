/*
 * test_tiny_models.c — the whole forward pass against transformers on tiny
 * random-weight models of every family slm runs (tests/fixtures/tiny, made
 * by scripts/make_tiny_models.py: llama in F32/F16/Q8_0/Q4_K; gemma3,
 * gemma2, qwen2, qwen3, phi3, stablelm, gptneox, exaone and Mistral in
 * F16/Q8_0/Q4_K, each exercising its family's traits — see the script's
 * table): the same GGUF files, transformers' logits at every position of
 * three 48-token sequences, which cross the families' 16-token windows.
 *
 * Bounds on max |Δlogit| (llama logits have std ≈ 1.3; the families' are
 * of the same order, Gemma 2's capped at ±3):
 *   F32, F16 weights: 1e-3 (f32 activations, F32 KV; only summation order differs)
 *   Q8_0: 0.25 and Q4_K: 0.4 (activations quantized to 8-bit blocks on the fly,
 *   which transformers does not do; measured 0.13 and 0.22 — the same CPU
 *   activation-precision gap test_reference.c describes; values are printed).
 * Also: evaluating the sequence in chunks of 16 and token by token gives
 * bitwise-identical logits (the batch invariance the scheduler relies on),
 * on every SIMD level this CPU has. With SLM_TEST_BACKEND=vulkan (ctest:
 * test_gpu_vulkan_tiny_models) the same files on the Vulkan backend, every
 * type within 1e-3 (f32 activations).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_registry.h"
#include "cpu_simd.h"
#include "session.h"
#include "testutil.h"

typedef struct {
    uint32_t n_seq, seq_len, n_vocab;
    int32_t *tokens;
    float *logits;
} reference;

static bool load_reference(const char *path, reference *r)
{
    size_t size;
    uint8_t *b = tu_read_file(path, &size);
    if (!b || size < 16 || memcmp(b, "SLMR", 4)) {
        free(b);
        return false;
    }
    memcpy(&r->n_seq, b + 4, 4), memcpy(&r->seq_len, b + 8, 4), memcpy(&r->n_vocab, b + 12, 4);
    size_t nt = (size_t)r->n_seq * r->seq_len, nl = nt * r->n_vocab;
    if (size != 16 + nt * 4 + nl * 4) {
        free(b);
        return false;
    }
    r->tokens = malloc(nt * 4);
    r->logits = malloc(nl * 4);
    memcpy(r->tokens, b + 16, nt * 4);
    memcpy(r->logits, b + 16 + nt * 4, nl * 4);
    free(b);
    return true;
}

static slm_backend *open_cpu(slm_simd level, int threads, int act_terms)
{
    slm_backend_params bp;
    tu_backend_params(&bp);
    bp.n_threads = threads;
    bp.cpu_act_terms = act_terms;
    bp.cpu_simd = slm_simd_name(level);
    slm_backend *be = NULL;
    assert_int_equal(slm_backend_cpu()->open(&bp, &be), SLM_OK);
    return be;
}

/* The logits of every reference sequence on one backend, evaluated in
 * chunks of 16 and token by token: both within `bound` of transformers, and
 * the two equal bitwise (exact_split) or within split_tol. */
static void check_on(slm_backend *be, const char *label, const char *name, const reference *r,
                     double bound, bool exact_split, double split_tol)
{
    char gguf[256];
    snprintf(gguf, sizeof gguf, "tests/fixtures/tiny/tiny-%s.gguf", name);
    slm_model *m;
    if (slm_model_load(gguf, be, NULL, NULL, &m) != SLM_OK)
        fail_msg("%s: %s", gguf, slm_last_error());
    assert_int_equal(m->hp.n_vocab, (int)r->n_vocab);
    slm_session *chunked, *single;
    assert_int_equal(slm_session_create(m, 64, 16, SLM_TYPE_F32, &chunked), SLM_OK);
    assert_int_equal(slm_session_create(m, 64, 1, SLM_TYPE_F32, &single), SLM_OK);
    size_t per_seq = (size_t)r->seq_len * r->n_vocab;
    float *got = malloc(per_seq * sizeof(float)), *one = malloc(per_seq * sizeof(float));
    double worst = 0, split = 0;
    for (uint32_t s = 0; s < r->n_seq; s++) {
        const int32_t *tok = r->tokens + (size_t)s * r->seq_len;
        tu_poison(got, per_seq);
        tu_poison(one, per_seq);
        slm_session_reset(chunked);
        slm_session_reset(single);
        assert_int_equal(slm_session_eval(chunked, tok, (int)r->seq_len, got), SLM_OK);
        assert_int_equal(slm_session_eval(single, tok, (int)r->seq_len, one), SLM_OK);
        const float *want = r->logits + s * per_seq;
        for (size_t i = 0; i < per_seq; i++) {
            double d = fabs((double)got[i] - want[i]);
            worst = isnan(got[i]) ? INFINITY : fmax(worst, d);
            split = isnan(one[i]) ? INFINITY : fmax(split, fabs((double)got[i] - one[i]));
        }
        if (exact_split && memcmp(got, one, per_seq * sizeof(float)))
            fail_msg("%s [%s]: chunked and token-by-token logits differ", name, label);
    }
    printf("tiny-%s [%s]: max |dlogit| = %.3g (bound %g); chunked vs token by token "
           "%.3g\n", name, label, worst, bound, split);
    assert_true(worst < bound);
    assert_true(split <= split_tol);
    free(got), free(one);
    slm_session_free(chunked), slm_session_free(single);
    slm_model_free(m);
}

/* On the CPU at every SIMD level (bitwise batch invariance), or, with
 * SLM_TEST_BACKEND=vulkan (or cuda, bounds below), on the Vulkan backend (f32 activations, so the
 * quantized models' bound is the F32 one; matvec and tiled matmul sum in
 * different orders, so chunked and token-by-token agree to 1e-4, not bitwise). */
static void check_model(const char *family, const char *type, double bound, double bound_x2)
{
    char ref_path[256], name[64];
    snprintf(name, sizeof name, "%s-%s", family, type);
    snprintf(ref_path, sizeof ref_path, "tests/fixtures/tiny/tiny-%s.logits", name);
    reference r = {0};
    assert_true(load_reference(ref_path, &r));
    const char *bn = getenv("SLM_TEST_BACKEND");
    if (bn && *bn && strcmp(bn, "cpu")) {
        slm_backend_params bp;
        tu_backend_params(&bp);
        slm_backend *be = NULL;
        if (slm_backend_open_by_name(bn, &bp, &be) != SLM_OK) {
            fprintf(stderr, "skipped: no device (%s)\n", slm_last_error());
            free(r.tokens), free(r.logits);
            skip();
        }
        if (!strcmp(bn, "cuda")) {
            /* CUDA: decode rows through 8-bit activations (the CPU's q8
             * bound), chunks through cuBLAS on f16 copies; chunked and
             * token-by-token differ by both. NOTE: chosen, not yet measured
             * on a GPU: the f32/f16 models' 5e-2 is a guess at f16 rounding
             * over the tiny models' layers. */
            double b = bound > 5e-2 ? bound : 5e-2;
            check_on(be, bn, name, &r, b, false, b);
        } else {
            check_on(be, bn, name, &r, 1e-3, false, 1e-4);
        }
        be->ops->close(be);
    }
    for (int lv = 0; !(bn && *bn && strcmp(bn, "cpu")) && lv < SLM_SIMD_COUNT; lv++) {
        if (!slm_simd_available((slm_simd)lv))
            continue;
        slm_backend *be = open_cpu((slm_simd)lv, 2, 0);
        check_on(be, slm_simd_name((slm_simd)lv), name, &r, bound, true, 0);
        be->ops->close(be);
        if (bound_x2 > 0) {
            char label[64];
            snprintf(label, sizeof label, "%s q8x2", slm_simd_name((slm_simd)lv));
            be = open_cpu((slm_simd)lv, 2, 2);
            check_on(be, label, name, &r, bound_x2, true, 0);
            be->ops->close(be);
        }
    }
    free(r.tokens), free(r.logits);
}

static void test_f32(void **s) { (void)s; check_model("llama", "f32", 1e-3, 0); }
static void test_f16(void **s) { (void)s; check_model("llama", "f16", 1e-3, 0); }
static void test_q8_0(void **s) { (void)s; check_model("llama", "q8_0", 0.25, 0); }
static void test_q4_k(void **s) { (void)s; check_model("llama", "q4_k", 0.4, 0); }

/* A family's three files. F16: the llama bound. Quantized: the default q8
 * activations' error varies with the random model (measured 0.08-0.36 for
 * Q8_0 and 0.11-0.41 for Q4_K over the nine families, against llama's
 * 0.13 / 0.22), so the bound is 0.5 for both; and the same files with
 * two-term (q8x2) activations, whose error is ~2⁻⁷ of that (measured
 * 0.0003-0.0015), must come within 0.005 — which a wrong trait cannot (the
 * fixture script checks that dropping any one moves logits by > 1). */
static void check_family(const char *family)
{
    check_model(family, "f16", 1e-3, 0);
    check_model(family, "q8_0", 0.5, 0.005);
    check_model(family, "q4_k", 0.5, 0.005);
}

#define FAMILY(f)                                                                                  \
    static void test_##f(void **s)                                                                 \
    {                                                                                              \
        (void)s;                                                                                   \
        check_family(#f);                                                                          \
    }
FAMILY(gemma3)
FAMILY(gemma2)
FAMILY(qwen2)
FAMILY(qwen3)
FAMILY(phi3)
FAMILY(stablelm)
FAMILY(gptneox)
FAMILY(exaone)
FAMILY(mistral)
#undef FAMILY

/* The context is a hard limit: one token too many is refused and the
 * session is unchanged. */
static void test_context_full(void **state)
{
    (void)state;
    slm_backend *be = open_cpu(slm_simd_best(), 1, 0);
    slm_model *m;
    assert_int_equal(slm_model_load("tests/fixtures/tiny/tiny-llama-q8_0.gguf", be, NULL, NULL, &m),
                     SLM_OK);
    slm_session *s;
    assert_int_equal(slm_session_create(m, 20, 8, SLM_TYPE_F16, &s), SLM_OK);
    int32_t t[21] = {0};
    assert_int_equal(slm_session_eval(s, t, 21, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "context"));
    assert_int_equal(s->n_past, 0);
    assert_int_equal(slm_session_eval(s, t, 20, NULL), SLM_OK);
    assert_int_equal(slm_session_eval(s, t, 1, NULL), SLM_STATUS_INVALID_ARGUMENT);
    slm_session_free(s);
    slm_model_free(m);
    be->ops->close(be);
}

/* A file whose tensors do not match its hyperparameters is refused with a
 * message naming the tensor. */
static void test_missing_tensor(void **state)
{
    (void)state;
    slm_backend *be = open_cpu(slm_simd_best(), 1, 0);
    slm_model *m = (slm_model *)be;
    slm_status st = slm_model_load("tests/fixtures/gguf/good/v3_all_types.gguf", be, NULL, NULL, &m);
    assert_int_not_equal(st, SLM_OK);
    assert_null(m);
    be->ops->close(be);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32),          cmocka_unit_test(test_f16),
        cmocka_unit_test(test_q8_0),         cmocka_unit_test(test_q4_k),
        cmocka_unit_test(test_gemma3),       cmocka_unit_test(test_gemma2),
        cmocka_unit_test(test_qwen2),        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_phi3),         cmocka_unit_test(test_stablelm),
        cmocka_unit_test(test_gptneox),      cmocka_unit_test(test_exaone),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_context_full), cmocka_unit_test(test_missing_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
