/*
 * test_status.c — the per-thread last-error message (runtime/status.c):
 * wrapping the previous message in a new one, as every layer does
 * ("model: loading tensor ...: %s", slm_last_error()), keeps both intact;
 * long messages are cut, not overrun; each thread has its own.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "status.h"
#include "testutil.h"

static void test_wrap_keeps_inner_message(void **state)
{
    (void)state;
    assert_int_equal(slm_error(SLM_STATUS_UNSUPPORTED, "inner: %s", "too big"),
                     SLM_STATUS_UNSUPPORTED);
    slm_error(SLM_STATUS_UNSUPPORTED, "outer '%s': %s", "token_embd.weight", slm_last_error());
    slm_error(SLM_STATUS_UNSUPPORTED, "run: %s", slm_last_error());
    assert_string_equal(slm_last_error(), "run: outer 'token_embd.weight': inner: too big");
}

static void test_long_message_is_cut(void **state)
{
    (void)state;
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    slm_error(SLM_STATUS_INTERNAL, "%s", big);
    size_t n = strlen(slm_last_error());
    assert_true(n > 100 && n < sizeof big - 1);
    slm_error(SLM_STATUS_INTERNAL, "again: %s", slm_last_error());
    assert_memory_equal(slm_last_error(), "again: xxx", 10);
}

static void *other_thread(void *arg)
{
    (void)arg;
    slm_error(SLM_STATUS_INTERNAL, "from the other thread");
    return NULL;
}

static void test_per_thread(void **state)
{
    (void)state;
    slm_error(SLM_STATUS_INTERNAL, "from this thread");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    assert_string_equal(slm_last_error(), "from this thread");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrap_keeps_inner_message),
        cmocka_unit_test(test_long_message_is_cut),
        cmocka_unit_test(test_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
