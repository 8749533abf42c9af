/*
 * test_gguf_write.c — the GGUF writer's files read back through the
 * validating reader with every value intact: scalars, strings, arrays,
 * records copied from another file, and tensors of several types whose data
 * comes from the fill callback. Also: duplicate keys and bad tensor rows
 * are refused, and a failing fill leaves no file behind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_write.h"
#include "quant.h"
#include "status.h"
#include "testutil.h"

static char path[64];

static slm_status fill_pattern(void *user, int64_t i, const char *name, int type,
                               const int64_t *ne, void *buf, size_t n)
{
    (void)user, (void)name, (void)type, (void)ne;
    for (size_t k = 0; k < n; k++)
        ((uint8_t *)buf)[k] = (uint8_t)(k * 7 + (size_t)i);
    return SLM_OK;
}

static slm_status fill_fail(void *user, int64_t i, const char *name, int type, const int64_t *ne,
                            void *buf, size_t n)
{
    (void)user, (void)i, (void)type, (void)ne, (void)buf, (void)n;
    return slm_error(SLM_STATUS_IO, "fill of '%s' failed on purpose", name);
}

static void test_round_trip(void **state)
{
    (void)state;
    slm_gguf_writer *w;
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    const char *toks[] = {"a", "", "ŀong tökén"};
    int32_t iv[] = {-1, 0, 7};
    float fv[] = {0.5f, -2.0f};
    assert_int_equal(slm_gguf_put_str(w, "general.architecture", "llama", 5), SLM_OK);
    assert_int_equal(slm_gguf_put_u32(w, "u", 4000000000u), SLM_OK);
    assert_int_equal(slm_gguf_put_i32(w, "i", -5), SLM_OK);
    assert_int_equal(slm_gguf_put_f32(w, "f", 1.25f), SLM_OK);
    assert_int_equal(slm_gguf_put_bool(w, "b", true), SLM_OK);
    assert_int_equal(slm_gguf_put_arr_str(w, "s", toks, NULL, 3), SLM_OK);
    assert_int_equal(slm_gguf_put_arr_i32(w, "ai", iv, 3), SLM_OK);
    assert_int_equal(slm_gguf_put_arr_f32(w, "af", fv, 2), SLM_OK);
    assert_int_equal(slm_gguf_put_u32(w, "u", 1), SLM_STATUS_INVALID_ARGUMENT);
    int64_t ne_a[2] = {5, 3}, ne_b[2] = {64, 2}, ne_c[1] = {256}, ne_bad[2] = {33, 1};
    assert_int_equal(slm_gguf_add_tensor(w, "a", SLM_TYPE_F32, 2, ne_a), SLM_OK);
    assert_int_equal(slm_gguf_add_tensor(w, "b", SLM_TYPE_Q4_0, 2, ne_b), SLM_OK);
    assert_int_equal(slm_gguf_add_tensor(w, "c", SLM_TYPE_Q6_K, 1, ne_c), SLM_OK);
    assert_int_equal(slm_gguf_add_tensor(w, "bad", SLM_TYPE_Q8_0, 2, ne_bad),
                     SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(slm_gguf_writer_write(w, path, fill_pattern, NULL, NULL, NULL), SLM_OK);
    slm_gguf_writer_free(w);

    slm_gguf *g;
    assert_int_equal(slm_gguf_open(path, &g), SLM_OK);
    int64_t x;
    double d;
    bool b;
    const char *s;
    size_t len;
    assert_int_equal(slm_gguf_get_int(g, "u", &x), SLM_OK);
    assert_int_equal(x, 4000000000LL);
    assert_int_equal(slm_gguf_get_int(g, "i", &x), SLM_OK);
    assert_int_equal(x, -5);
    assert_int_equal(slm_gguf_get_float(g, "f", &d), SLM_OK);
    assert_true(d == 1.25);
    assert_int_equal(slm_gguf_get_bool(g, "b", &b), SLM_OK);
    assert_true(b);
    int64_t ai;
    uint64_t n;
    assert_int_equal(slm_gguf_get_arr(g, "s", &ai, NULL, &n), SLM_OK);
    assert_int_equal(n, 3);
    for (uint64_t j = 0; j < n; j++) {
        assert_int_equal(slm_gguf_arr_str(g, ai, j, &s, &len), SLM_OK);
        assert_int_equal(len, strlen(toks[j]));
        assert_memory_equal(s, toks[j], len);
    }
    assert_int_equal(slm_gguf_get_arr(g, "ai", &ai, NULL, &n), SLM_OK);
    assert_int_equal(slm_gguf_arr_int(g, ai, 0, &x), SLM_OK);
    assert_int_equal(x, -1);
    assert_int_equal(slm_gguf_get_arr(g, "af", &ai, NULL, &n), SLM_OK);
    assert_int_equal(slm_gguf_arr_float(g, ai, 1, &d), SLM_OK);
    assert_true(d == -2.0);
    assert_int_equal(slm_gguf_tensor_count(g), 3);
    for (int64_t i = 0; i < 3; i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        for (uint64_t k = 0; k < t->nbytes; k++)
            assert_int_equal(((const uint8_t *)t->data)[k], (uint8_t)(k * 7 + (size_t)i));
    }
    assert_int_equal(slm_gguf_tensor_at(g, 1)->nbytes, 2 * 2 * 18);

    /* copying every record of this file into a new one gives the same values */
    slm_gguf_writer *w2;
    assert_int_equal(slm_gguf_writer_create(&w2), SLM_OK);
    for (int64_t i = 0; i < slm_gguf_kv_count(g); i++)
        assert_int_equal(slm_gguf_put_copy(w2, g, i), SLM_OK);
    char path2[80];
    snprintf(path2, sizeof path2, "%s.copy", path);
    assert_int_equal(slm_gguf_writer_write(w2, path2, fill_pattern, NULL, NULL, NULL), SLM_OK);
    slm_gguf_writer_free(w2);
    slm_gguf *g2;
    assert_int_equal(slm_gguf_open(path2, &g2), SLM_OK);
    assert_int_equal(slm_gguf_kv_count(g2), slm_gguf_kv_count(g));
    assert_int_equal(slm_gguf_get_arr(g2, "s", &ai, NULL, &n), SLM_OK);
    assert_int_equal(slm_gguf_arr_str(g2, ai, 2, &s, &len), SLM_OK);
    assert_memory_equal(s, toks[2], len);
    slm_gguf_close(g2);
    slm_gguf_close(g);
    unlink(path2);
}

static void test_failed_fill_removes_file(void **state)
{
    (void)state;
    slm_gguf_writer *w;
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    int64_t ne[1] = {32};
    assert_int_equal(slm_gguf_add_tensor(w, "t", SLM_TYPE_Q8_0, 1, ne), SLM_OK);
    assert_int_equal(slm_gguf_writer_write(w, path, fill_fail, NULL, NULL, NULL), SLM_STATUS_IO);
    assert_non_null(strstr(slm_last_error(), "on purpose"));
    assert_int_not_equal(access(path, F_OK), 0);
    slm_gguf_writer_free(w);
}

int main(void)
{
    tu_seed();
    snprintf(path, sizeof path, "/tmp/slm-test-write-%d.gguf", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_failed_fill_removes_file),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(path);
    return rc;
}
