/*
 * test_embed.c — pooled embeddings (slm_engine_submit_embed, slm_engine_embed)
 * against transformers' final hidden states on the tiny fixtures
 * (tests/fixtures/tiny/tiny-{llama,qwen2,qwen3,gemma3}-{f16,q8_0,q4_k}.embed,
 * made by scripts/make_embedding_fixtures.py from the same GGUF files).
 *
 * Bounds on the cosine between slm's and the reference's L2-normalised
 * vectors: F16 ≥ 0.999 (f32 activations; only summation order differs),
 * Q8_0 and Q4_K ≥ 0.995 (the CPU quantizes activations to 8-bit blocks on
 * the fly, which transformers does not: the gap test_tiny_models.c bounds
 * on the logits; measured ≥ 0.9991, F16 1.000000). Every cosine is
 * printed. The engine runs with 16-token steps, so the 37-token input
 * pools over three chunks.
 *
 * Also: a batch of inputs equals each input alone, bitwise, even beside a
 * generation request; an input whose blocks are already in the prefix
 * cache (each input there is embedded twice) still pools every token (the
 * scheduler must not start it on cached blocks); the file's pooling_type
 * key chooses the pooling; more inputs than the engine's queue holds all
 * come back right; bad input fails naming what is wrong, and the engine
 * carries on. With SLM_TEST_BACKEND=vulkan (ctest:
 * test_gpu_vulkan_embed; "skipped: no device" without one) the same on the
 * Vulkan backend.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_write.h"
#include "slm.h"
#include "testutil.h"

#define MAX_SEQ 8

typedef struct {
    uint32_t n_seq, d;
    uint32_t len[MAX_SEQ];
    int32_t *tokens[MAX_SEQ];
    float *vec[MAX_SEQ][3]; /* mean, cls, last */
} reference;

/* SLM_TEST_BACKEND, else the CPU (ctest: test_gpu_vulkan_embed). */
static const char *g_backend = "cpu";

static const slm_pooling POOLINGS[3] = {SLM_POOLING_MEAN, SLM_POOLING_CLS, SLM_POOLING_LAST};
static const char *const POOL_NAMES[3] = {"mean", "cls", "last"};

static bool load_reference(const char *path, reference *r)
{
    size_t size, at = 12;
    uint8_t *b = tu_read_file(path, &size);
    memset(r, 0, sizeof *r);
    if (!b || size < 12 || memcmp(b, "SLME", 4)) {
        free(b);
        return false;
    }
    memcpy(&r->n_seq, b + 4, 4), memcpy(&r->d, b + 8, 4);
    bool ok = r->n_seq <= MAX_SEQ;
    for (uint32_t s = 0; ok && s < r->n_seq; s++) {
        ok = at + 4 <= size;
        if (ok)
            memcpy(&r->len[s], b + at, 4), at += 4;
        size_t need = (size_t)r->len[s] * 4 + 3 * (size_t)r->d * 4;
        ok = ok && at + need <= size;
        if (!ok)
            break;
        r->tokens[s] = malloc((size_t)r->len[s] * 4);
        memcpy(r->tokens[s], b + at, (size_t)r->len[s] * 4), at += (size_t)r->len[s] * 4;
        for (int k = 0; k < 3; k++) {
            r->vec[s][k] = malloc((size_t)r->d * 4);
            memcpy(r->vec[s][k], b + at, (size_t)r->d * 4), at += (size_t)r->d * 4;
        }
    }
    free(b);
    return ok && at == size;
}

static void free_reference(reference *r)
{
    for (uint32_t s = 0; s < r->n_seq; s++) {
        free(r->tokens[s]);
        for (int k = 0; k < 3; k++)
            free(r->vec[s][k]);
    }
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

static double l2(const float *a, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}

static slm_status copy_tensor(void *user, int64_t i, const char *name, int type,
                              const int64_t *ne, void *buf, size_t nbytes)
{
    (void)name, (void)type, (void)ne;
    memcpy(buf, slm_gguf_tensor_at(user, i)->data, nbytes);
    return SLM_OK;
}

/* The fixture tiny-<name>.gguf as the public API can open it: gguf-py
 * leaves out the empty tokenizer.ggml.merges the byte-level tokenizer
 * needs (test_engine.c does the same), plus <arch>.pooling_type = pooling
 * unless it is negative. Returns the copy's path (in the build folder). */
static const char *fixture_copy(const char *name, const char *arch, int pooling)
{
    static char dst[512];
    const char *dir = getenv("SLM_BUILD_DIR");
    char src[256], key[64];
    snprintf(src, sizeof src, "tests/fixtures/tiny/tiny-%s.gguf", name);
    /* One name per backend: ctest runs the CPU and Vulkan variants at once. */
    snprintf(dst, sizeof dst, "%s/test_embed_%s_%s_%d.gguf", dir ? dir : "/tmp", g_backend, name,
             pooling);
    snprintf(key, sizeof key, "%s.pooling_type", arch);
    slm_gguf *g = NULL;
    slm_gguf_writer *w = NULL;
    slm_status st = slm_gguf_open(src, &g);
    if (!st)
        st = slm_gguf_writer_create(&w);
    for (int64_t i = 0; !st && i < slm_gguf_kv_count(g); i++)
        st = slm_gguf_put_copy(w, g, i);
    if (!st && slm_gguf_find_kv(g, "tokenizer.ggml.merges") < 0)
        st = slm_gguf_put_arr_str(w, "tokenizer.ggml.merges", NULL, NULL, 0);
    if (!st && pooling >= 0)
        st = slm_gguf_put_u32(w, key, (uint32_t)pooling);
    for (int64_t i = 0; !st && i < slm_gguf_tensor_count(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        st = slm_gguf_add_tensor(w, t->name, t->type, (int)t->n_dims, t->ne);
    }
    if (!st)
        st = slm_gguf_writer_write(w, dst, copy_tensor, g, NULL, NULL);
    slm_gguf_writer_free(w);
    slm_gguf_close(g);
    if (st)
        fail_msg("cannot write %s: %s", dst, slm_last_error());
    return dst;
}

/* An engine with 16-token steps on a copy of fixture tiny-<name>. */
/* The engine's queue bound, for the queue test (0: the default). */
static int g_max_waiting;

static slm_engine *open_engine(const char *name, int pooling, slm_model **m)
{
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)strcspn(name, "-"), name);
    const char *path = fixture_copy(name, arch, pooling);
    slm_model_params mp;
    slm_model_params_default(&mp);
    mp.backend = g_backend;
    mp.n_threads = 2;
    if (slm_model_open(path, &mp, m) != SLM_OK) {
        remove(path);
        if (strcmp(g_backend, "cpu")) {
            fprintf(stderr, "skipped: no device (%s)\n", slm_last_error());
            skip();
        }
        fail_msg("open %s: %s", path, slm_last_error());
    }
    slm_engine_params ep;
    slm_engine_params_default(&ep);
    ep.n_ctx = 128;
    ep.max_running = 4;
    ep.step_tokens = 16; /* the 37-token input pools over three chunks */
    ep.kv_blocks = 64;
    if (g_max_waiting)
        ep.max_waiting = g_max_waiting;
    slm_engine *e = NULL;
    if (slm_engine_open(*m, &ep, &e) != SLM_OK)
        fail_msg("engine on %s: %s", path, slm_last_error());
    remove(path); /* mapped: the model keeps it */
    return e;
}

static slm_embed_params input(const int32_t *tokens, int n, slm_pooling pooling)
{
    slm_embed_params p;
    slm_embed_params_default(&p);
    p.tokens = tokens;
    p.n_tokens = n;
    p.pooling = pooling;
    return p;
}

/* Every sequence × pooling of one fixture within the type's bound. */
static void check_fixture(const char *name, double bound)
{
    char path[256];
    reference r;
    snprintf(path, sizeof path, "tests/fixtures/tiny/tiny-%s.embed", name);
    if (!load_reference(path, &r))
        fail_msg("cannot read %s", path);
    slm_model *m;
    slm_engine *e = open_engine(name, -1, &m);
    float *got = malloc(r.d * sizeof *got);
    double worst = 1;
    for (uint32_t s = 0; s < r.n_seq; s++)
        for (int k = 0; k < 3; k++) {
            slm_embed_params p = input(r.tokens[s], (int)r.len[s], POOLINGS[k]);
            tu_poison(got, r.d);
            int n_tok = 0;
            assert_int_equal(slm_engine_embed(e, &p, 1, got, &n_tok), SLM_OK);
            assert_int_equal(n_tok, (int)r.len[s]);
            double c = cosine(got, r.vec[s][k], (int)r.d);
            printf("  %-12s len %2u %-4s cosine %.6f\n", name, r.len[s], POOL_NAMES[k], c);
            assert_true(fabs(l2(got, (int)r.d) - 1) < 1e-5);
            if (!(c >= bound))
                fail_msg("%s: sequence %u, %s pooling: cosine %.6f < %.4f", name, s,
                         POOL_NAMES[k], c, bound);
            worst = c < worst ? c : worst;
        }
    printf("%s: worst cosine %.6f (bound %.4f)\n", name, worst, bound);
    free(got);
    slm_engine_close(e, 1);
    slm_model_close(m);
    free_reference(&r);
}

/* One family in each stored type. */
static void check_family(const char *family)
{
    static const struct {
        const char *type;
        double bound;
    } types[] = {{"f16", 0.999}, {"q8_0", 0.995}, {"q4_k", 0.995}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%s", family, types[i].type);
        check_fixture(name, types[i].bound);
    }
}

static void test_llama(void **state) { (void)state, check_family("llama"); }
static void test_qwen2(void **state) { (void)state, check_family("qwen2"); }
static void test_qwen3(void **state) { (void)state, check_family("qwen3"); }
static void test_gemma3(void **state) { (void)state, check_family("gemma3"); }

static void gen_done(void *user, const slm_result *res)
{
    (void)res;
    *(int *)user = 1;
}

/* All sequences in one call, beside a running generation request, equal
 * each alone bitwise; so does a sequence whose blocks a generation request
 * just left in the prefix cache (it must pool every token anyway). */
static void test_batch_equals_single(void **state)
{
    (void)state;
    reference r;
    assert_true(load_reference("tests/fixtures/tiny/tiny-qwen2-f16.embed", &r));
    slm_model *m;
    slm_engine *e = open_engine("qwen2-f16", -1, &m);
    size_t d = r.d;
    float *solo = malloc(r.n_seq * d * sizeof(float)), *all = malloc(r.n_seq * d * sizeof(float));
    slm_embed_params in[MAX_SEQ];
    for (uint32_t s = 0; s < r.n_seq; s++) {
        in[s] = input(r.tokens[s], (int)r.len[s], SLM_POOLING_MEAN);
        assert_int_equal(slm_engine_embed(e, &in[s], 1, solo + s * d, NULL), SLM_OK);
    }
    /* The longest sequence as a generation prompt: its full blocks enter
     * the prefix cache, and it decodes while the batch runs. */
    uint32_t longest = r.n_seq - 1;
    slm_sampling greedy;
    slm_sampling_default(&greedy);
    greedy.temperature = 0;
    slm_request_params gp;
    slm_request_params_default(&gp);
    gp.tokens = r.tokens[longest];
    gp.n_tokens = (int)r.len[longest];
    gp.sampling = &greedy;
    gp.max_tokens = 24;
    gp.ignore_eos = 1;
    int gen_finished = 0;
    gp.on_done = gen_done;
    gp.user = &gen_finished;
    assert_int_equal(slm_engine_submit(e, &gp, NULL), SLM_OK);
    int total = 0;
    tu_poison(all, r.n_seq * d);
    assert_int_equal(slm_engine_embed(e, in, (int)r.n_seq, all, &total), SLM_OK);
    int want = 0;
    for (uint32_t s = 0; s < r.n_seq; s++)
        want += (int)r.len[s];
    assert_int_equal(total, want);
    /* The CPU reduces every row in a fixed order whatever the batch; a GPU
     * backend's kernels may not (test_engine.c's GPU variant): 1e-5 there. */
    bool cpu = !strcmp(g_backend, "cpu");
    for (uint32_t s = 0; s < r.n_seq; s++)
        if (cpu ? memcmp(solo + s * d, all + s * d, d * sizeof(float)) != 0
                : tu_max_rel_err(all + s * d, solo + s * d, d, 1e-5, 0, NULL) > 1)
            fail_msg("sequence %u: batched embedding differs from its solo one", s);
    slm_engine_close(e, 1);
    assert_int_equal(gen_finished, 1);
    /* The prefix cache held the longest prompt's full blocks: the mean over
     * every token must still match transformers. */
    assert_true(cosine(all + longest * d, r.vec[longest][0], (int)d) >= 0.999);
    free(solo);
    free(all);
    slm_model_close(m);
    free_reference(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    slm_model *m;
    slm_engine *e = open_engine("llama-f16", -1, &m);
    float out[3 * 256];
    int32_t good[3] = {5, 6, 7}, bad[2] = {5, 256};
    slm_embed_params p = input(bad, 2, SLM_POOLING_MODEL);
    assert_int_equal(slm_engine_embed(e, &p, 1, out, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "vocabulary"));
    p = input(NULL, 0, SLM_POOLING_MODEL);
    assert_int_equal(slm_engine_embed(e, &p, 1, out, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "text or tokens"));
    p = input(good, 3, SLM_POOLING_MODEL);
    p.text = "and text";
    assert_int_equal(slm_engine_embed(e, &p, 1, out, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "both given"));
    p = input(good, 3, (slm_pooling)7);
    assert_int_equal(slm_engine_embed(e, &p, 1, out, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "pooling 7"));
    int32_t long_in[200];
    for (int i = 0; i < 200; i++)
        long_in[i] = i;
    p = input(long_in, 200, SLM_POOLING_MODEL);
    assert_int_equal(slm_engine_embed(e, &p, 1, out, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "context"));
    /* The failing input is named; the good ones around it do not stay. */
    slm_embed_params three[3] = {input(good, 3, SLM_POOLING_MEAN), input(bad, 2, SLM_POOLING_MEAN),
                                 input(good, 3, SLM_POOLING_MEAN)};
    assert_int_equal(slm_engine_embed(e, three, 3, out, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_true(strncmp(slm_last_error(), "input 1: ", 9) == 0);
    slm_engine_stats st = {.size = sizeof st};
    /* The engine carries on: text works, and nothing was left behind. */
    p = input(NULL, 0, SLM_POOLING_MODEL);
    p.text = "hello there";
    int n_tok = 0;
    assert_int_equal(slm_engine_embed(e, &p, 1, out, &n_tok), SLM_OK);
    assert_true(n_tok >= 2);
    assert_true(fabs(l2(out, 256) - 1) < 1e-5);
    p.normalize = 0;
    assert_int_equal(slm_engine_embed(e, &p, 1, out, NULL), SLM_OK);
    assert_true(fabs(l2(out, 256) - 1) > 1e-3); /* a raw mean is not a unit vector */
    /* The engine publishes its counters after a step's callbacks, so the
     * last on_done can come a moment before them. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(slm_engine_get_stats(e, &st), SLM_OK);
        if (st.running == 0 && st.waiting == 0)
            break;
        usleep(10000);
    }
    assert_int_equal(st.running, 0);
    assert_int_equal(st.waiting, 0);
    slm_engine_close(e, 1);
    slm_model_close(m);
}

/* SLM_POOLING_MODEL follows the file: no key → mean; pooling_type 3 →
 * last, 2 → cls; 4 (rank) is refused naming the key, unless the request
 * names a pooling. */
static void test_pooling_from_file(void **state)
{
    (void)state;
    reference r;
    assert_true(load_reference("tests/fixtures/tiny/tiny-qwen3-f16.embed", &r));
    uint32_t s = 1; /* 9 tokens: mean, cls and last all differ */
    const struct {
        int key;  /* -1: no key */
        int want; /* index into the reference's vectors, -1: refused */
    } cases[] = {{-1, 0}, {0, 0}, {3, 2}, {2, 1}, {1, 0}, {4, -1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        slm_model *m;
        slm_engine *e = open_engine("qwen3-f16", cases[c].key, &m);
        float got[256];
        slm_embed_params p = input(r.tokens[s], (int)r.len[s], SLM_POOLING_MODEL);
        slm_status st = slm_engine_embed(e, &p, 1, got, NULL);
        if (cases[c].want < 0) {
            assert_int_equal(st, SLM_STATUS_UNSUPPORTED);
            assert_non_null(strstr(slm_last_error(), "qwen3.pooling_type"));
            p.pooling = SLM_POOLING_LAST; /* asking for one overrides the file */
            assert_int_equal(slm_engine_embed(e, &p, 1, got, NULL), SLM_OK);
            assert_true(cosine(got, r.vec[s][2], 256) >= 0.999);
        } else {
            assert_int_equal(st, SLM_OK);
            double cw = cosine(got, r.vec[s][cases[c].want], 256);
            printf("  pooling_type %d: cosine to %s %.6f\n", cases[c].key,
                   POOL_NAMES[cases[c].want], cw);
            assert_true(cw >= 0.999);
            for (int k = 0; k < 3; k++) /* and not to the others */
                if (k != cases[c].want)
                    assert_true(cosine(got, r.vec[s][k], 256) < 0.99);
        }
        slm_engine_close(e, 1);
        slm_model_close(m);
    }
    free_reference(&r);
}

/* More inputs than the engine's queue takes: slm_engine_embed keeps it
 * full, waiting for its own to finish, and every input still comes back
 * right (each equal to its solo embedding). */
static void test_more_inputs_than_queue(void **state)
{
    (void)state;
    reference r;
    assert_true(load_reference("tests/fixtures/tiny/tiny-llama-f16.embed", &r));
    g_max_waiting = 1;
    slm_model *m;
    slm_engine *e = open_engine("llama-f16", -1, &m);
    g_max_waiting = 0;
    enum { N = 12 };
    slm_embed_params in[N];
    float *all = malloc(N * r.d * sizeof(float)), *one = malloc(r.d * sizeof(float));
    for (int i = 0; i < N; i++)
        in[i] = input(r.tokens[i % r.n_seq], (int)r.len[i % r.n_seq], SLM_POOLING_MEAN);
    tu_poison(all, N * r.d);
    assert_int_equal(slm_engine_embed(e, in, N, all, NULL), SLM_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(slm_engine_embed(e, &in[i], 1, one, NULL), SLM_OK);
        assert_true(tu_max_rel_err(all + (size_t)i * r.d, one, r.d, 1e-5, 0, NULL) <= 1);
    }
    free(all);
    free(one);
    slm_engine_close(e, 1);
    slm_model_close(m);
    free_reference(&r);
}

/* submit_embed with a callback: on_done after out is filled; cancel works. */
typedef struct {
    int done;
    slm_finish_reason finish;
    float first;
} cb_state;

static void cb_done(void *user, const slm_result *res)
{
    cb_state *c = user;
    c->finish = res->finish;
    c->done++;
}

static void test_submit_and_cancel(void **state)
{
    (void)state;
    slm_model *m;
    slm_engine *e = open_engine("llama-f16", -1, &m);
    int32_t toks[100];
    for (int i = 0; i < 100; i++)
        toks[i] = (i * 37) % 256;
    float out[256];
    cb_state c = {0};
    slm_embed_params p = input(toks, 100, SLM_POOLING_MEAN);
    p.out = out;
    p.on_done = cb_done;
    p.user = &c;
    uint64_t id;
    assert_int_equal(slm_engine_submit_embed(e, &p, &id), SLM_OK);
    slm_status cs = slm_engine_cancel(e, id);
    slm_engine_close(e, 1);
    assert_int_equal(c.done, 1);
    /* Either the cancel came in time or the request had finished. */
    if (cs == SLM_OK)
        assert_true(c.finish == SLM_FINISH_CANCELLED || c.finish == SLM_FINISH_STOP);
    else
        assert_int_equal(c.finish, SLM_FINISH_STOP);
    slm_model_close(m);
    p.out = NULL;
    e = open_engine("llama-f16", -1, &m);
    assert_int_equal(slm_engine_submit_embed(e, &p, &id), SLM_STATUS_INVALID_ARGUMENT);
    slm_engine_close(e, 1);
    slm_model_close(m);
}

int main(void)
{
    tu_seed();
    const char *b = getenv("SLM_TEST_BACKEND");
    if (b && *b) {
        g_backend = b;
        printf("backend: %s\n", b);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_pooling_from_file),
        cmocka_unit_test(test_submit_and_cancel),
        cmocka_unit_test(test_more_inputs_than_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
