/*
 * test_cli_env.c — the `slm` command's mapping of its SLM_* environment onto
 * the library's parameters (tools/cli_env.c, compiled into this program):
 * each variable becomes its backend option, empty means unset, the pipeline
 * cache folder follows XDG_CACHE_HOME then HOME, a value the options string
 * cannot carry is an error that names the variable, and --backend defaults
 * to $SLM_BACKEND.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "testutil.h"

static const char *const all_vars[] = {
    "SLM_BACKEND",        "SLM_CPU_SIMD",     "SLM_CPU_ACT",        "SLM_VK_DEVICE",
    "SLM_VK_NO_SUBGROUP", "SLM_VK_MAX_BUFFER", "SLM_VK_MATVEC_ROWS", "SLM_VK_SPLIT_MIN",
    "SLM_VK_CHUNK",       "SLM_VK_MATMUL",    "XDG_CACHE_HOME",     "HOME",
};

/* Every test starts from an environment without any of the variables. */
static int clean_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof all_vars / sizeof all_vars[0]; i++)
        unsetenv(all_vars[i]);
    return 0;
}

/* The options string of the current environment (asserts success). */
static const char *options(void)
{
    static char buf[4096];
    char why[256] = "";
    int rc = slm_cli_env_options(buf, sizeof buf, why, sizeof why);
    if (rc)
        fail_msg("slm_cli_env_options failed: %s", why);
    return buf;
}

/* Why the current environment fails with a buffer of cap bytes (asserts
 * that it does). */
static const char *failure(size_t cap)
{
    static char buf[4096], why[256];
    why[0] = '\0';
    assert_true(cap <= sizeof buf);
    assert_int_equal(slm_cli_env_options(buf, cap, why, sizeof why), -1);
    return why;
}

static void test_nothing_set(void **state)
{
    (void)state;
    assert_string_equal(options(), "");
    assert_string_equal(slm_cli_env_backend(), "auto");
}

static void test_every_variable(void **state)
{
    (void)state;
    setenv("SLM_CPU_SIMD", "avx2", 1);
    setenv("SLM_CPU_ACT", "q8x2", 1);
    setenv("SLM_VK_DEVICE", "llvmpipe", 1);
    setenv("SLM_VK_MAX_BUFFER", "4096", 1);
    setenv("SLM_VK_MATVEC_ROWS", "4", 1);
    setenv("SLM_VK_SPLIT_MIN", "64", 1);
    setenv("SLM_VK_CHUNK", "5", 1);
    setenv("SLM_VK_MATMUL", "direct", 1);
    setenv("SLM_VK_NO_SUBGROUP", "1", 1);
    setenv("HOME", "/home/u", 1);
    assert_string_equal(options(),
                        "cpu.simd=avx2,cpu.act=q8x2,vulkan.device=llvmpipe,"
                        "vulkan.max_buffer=4096,vulkan.matvec_rows=4,vulkan.split_min=64,"
                        "vulkan.chunk=5,vulkan.matmul=direct,vulkan.subgroup=0,"
                        "vulkan.cache_dir=/home/u/.cache/slm");
}

static void test_empty_and_zero_mean_unset(void **state)
{
    (void)state;
    setenv("SLM_CPU_ACT", "", 1);
    setenv("SLM_VK_NO_SUBGROUP", "0", 1);
    setenv("SLM_BACKEND", "", 1);
    assert_string_equal(options(), "");
    assert_string_equal(slm_cli_env_backend(), "auto");
    setenv("SLM_BACKEND", "cpu", 1);
    assert_string_equal(slm_cli_env_backend(), "cpu");
}

static void test_cache_dir(void **state)
{
    (void)state;
    setenv("HOME", "/home/u", 1);
    setenv("XDG_CACHE_HOME", "/var/cache/u", 1);
    assert_string_equal(options(), "vulkan.cache_dir=/var/cache/u/slm");
    /* A folder the options string cannot carry is left out, not an error:
     * the cache only saves start-up time. */
    setenv("XDG_CACHE_HOME", "/var/my cache", 1);
    assert_string_equal(options(), "");
}

static void test_uncarriable_value_is_an_error(void **state)
{
    (void)state;
    setenv("SLM_VK_DEVICE", "GeForce RTX", 1);
    assert_non_null(strstr(failure(256), "SLM_VK_DEVICE"));
    setenv("SLM_VK_DEVICE", "a,b", 1);
    assert_non_null(strstr(failure(256), "SLM_VK_DEVICE"));
}

static void test_small_buffer_is_an_error(void **state)
{
    (void)state;
    setenv("SLM_VK_MATMUL", "direct", 1);
    assert_non_null(strstr(failure(16), "longer than"));
    assert_non_null(strstr(failure(0), "longer than"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_nothing_set, clean_env),
        cmocka_unit_test_setup(test_every_variable, clean_env),
        cmocka_unit_test_setup(test_empty_and_zero_mean_unset, clean_env),
        cmocka_unit_test_setup(test_cache_dir, clean_env),
        cmocka_unit_test_setup(test_uncarriable_value_is_an_error, clean_env),
        cmocka_unit_test_setup(test_small_buffer_is_an_error, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
