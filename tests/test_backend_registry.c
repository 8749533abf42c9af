/*
 * test_backend_registry.c — what the registry promises about backend tables
 * and names (runtime/backend_registry.c, backend_common.c) and the options
 * string that carries backend knobs (backend_options.c): every table
 * compiled in passes the check; a table of another interface version or
 * with a mandatory slot left empty is refused naming it; unknown names and
 * options fail naming what is wrong; the CPU backend is last in the order
 * "auto" tries; a model opened with backend NULL runs and says why it was
 * passed over by a GPU backend, if it was.
 */
#include <stdio.h>
#include <string.h>

#include "backend_options.h"
#include "backend_registry.h"
#include "slm.h"
#include "testutil.h"

static void test_every_table_passes(void **state)
{
    (void)state;
    assert_true(slm_backend_count() >= 1);
    for (int i = 0; i < slm_backend_count(); i++) {
        const slm_backend_ops *ops = slm_backend_at(i);
        printf("backend %d: %s\n", i, ops->name);
        assert_int_equal(slm_backend_ops_check(ops), SLM_OK);
    }
    /* GPU backends first: the CPU is the last resort of "auto". */
    assert_string_equal(slm_backend_at(slm_backend_count() - 1)->name, "cpu");
}

static void test_bad_tables_refused(void **state)
{
    (void)state;
    slm_backend_ops t = *slm_backend_cpu();
    t.api_version = 1;
    assert_int_equal(slm_backend_ops_check(&t), SLM_STATUS_INTERNAL);
    assert_non_null(strstr(slm_last_error(), "version 1"));

    t = *slm_backend_cpu();
    t.wait = NULL;
    assert_int_equal(slm_backend_ops_check(&t), SLM_STATUS_INTERNAL);
    assert_non_null(strstr(slm_last_error(), "slot wait"));

    /* Optional slots may be empty. */
    t = *slm_backend_cpu();
    t.kv_copy = NULL;
    t.memory = NULL;
    assert_int_equal(slm_backend_ops_check(&t), SLM_OK);

    /* Version 3's ops are mandatory: a family's model needs them. */
    t = *slm_backend_cpu();
    t.geglu = NULL;
    assert_int_equal(slm_backend_ops_check(&t), SLM_STATUS_INTERNAL);
    assert_non_null(strstr(slm_last_error(), "slot geglu"));
}

static void test_unknown_name(void **state)
{
    (void)state;
    slm_backend_params bp;
    slm_backend_params_default(&bp);
    slm_backend *be = NULL;
    assert_int_equal(slm_backend_open_by_name("tpu", &bp, &be), SLM_STATUS_NOT_FOUND);
    assert_null(be);
    assert_non_null(strstr(slm_last_error(), "'tpu'"));
    assert_non_null(strstr(slm_last_error(), "cpu"));
    assert_true(slm_backend_is_auto(NULL) && slm_backend_is_auto("") &&
                slm_backend_is_auto("auto") && !slm_backend_is_auto("cpu"));
}

static void test_options(void **state)
{
    (void)state;
    slm_backend_params bp;
    slm_backend_params_default(&bp);
    char store[256];
    assert_int_equal(slm_backend_options_parse("cpu.simd=scalar, cpu.act=q8x2 vulkan.chunk=3,"
                                               "vulkan.subgroup=0,vulkan.matmul=gpu",
                                               &bp, store, sizeof store),
                     SLM_OK);
    assert_string_equal(bp.cpu_simd, "scalar");
    assert_int_equal(bp.cpu_act_terms, 2);
    assert_int_equal(bp.vk_chunk, 3);
    assert_int_equal(bp.vk_subgroup, -1);
    assert_int_equal(bp.vk_matmul, 2);
    /* CUDA's: the device index is kept as 1 + index (0 leaves device_index
     * to decide), -1 rows sends every matmul to cuBLAS */
    assert_int_equal(slm_backend_options_parse("cuda.device=0 cuda.matvec_rows=-1,"
                                               "cuda.split_min=64",
                                               &bp, store, sizeof store),
                     SLM_OK);
    assert_int_equal(bp.cuda_device, 1);
    assert_int_equal(bp.cuda_matvec_rows, -1);
    assert_int_equal(bp.cuda_split_min, 64);
    const char *bad[][2] = {
        {"cpu.simdd=avx2", "unknown backend option 'cpu.simdd'"},
        {"cpu.act=q4", "cpu.act=q4"},
        {"vulkan.chunk=0", "vulkan.chunk=0"},
        {"vulkan.chunk=2x", "vulkan.chunk=2x"},
        {"cuda.device=-1", "cuda.device=-1"},
        {"cuda.matvec_rows=-2", "cuda.matvec_rows=-2"},
        {"cuda.split_min=0", "cuda.split_min=0"},
        {"novalue", "'novalue' is not key=value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        slm_backend_params_default(&bp);
        assert_int_equal(slm_backend_options_parse(bad[i][0], &bp, store, sizeof store),
                         SLM_STATUS_INVALID_ARGUMENT);
        printf("%s -> %s\n", bad[i][0], slm_last_error());
        assert_non_null(strstr(slm_last_error(), bad[i][1]));
    }
    /* Through the public API: a bad option fails slm_model_open naming it,
     * before the file is even read. */
    slm_model_params mp;
    slm_model_params_default(&mp);
    mp.options = "cpu.simd=sse9";
    mp.backend = "cpu";
    slm_model *m = NULL;
    assert_int_not_equal(slm_model_open("tests/fixtures/tiny/tiny-llama-f32.gguf", &mp, &m),
                         SLM_OK);
    assert_non_null(strstr(slm_last_error(), "sse9"));
}

/* The automatic choice on this machine: some backend loads the model, and
 * a fallback note is either empty or names the backend it passed over. */
#define MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static void test_auto_opens(void **state)
{
    (void)state;
    FILE *f = fopen(MODEL, "rb");
    if (!f) {
        printf("skipped: %s not present (scripts/fetch-model)\n", MODEL);
        skip();
    }
    fclose(f);
    slm_model_params mp;
    slm_model_params_default(&mp);
    slm_model *m = NULL;
    if (slm_model_open(MODEL, &mp, &m) != SLM_OK)
        fail_msg("auto: %s", slm_last_error());
    slm_model_info info = {.size = sizeof info};
    assert_int_equal(slm_model_get_info(m, &info), SLM_OK);
    printf("auto: %s; fallback: '%s'; chat template %s %s\n", info.backend, info.fallback,
           info.chat_template, info.chat_template_note);
    assert_non_null(info.fallback);
    assert_non_null(info.chat_template);
    slm_model_close(m);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_table_passes), cmocka_unit_test(test_bad_tables_refused),
        cmocka_unit_test(test_unknown_name),       cmocka_unit_test(test_options),
        cmocka_unit_test(test_auto_opens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
