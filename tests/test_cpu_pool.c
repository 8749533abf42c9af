/*
 * test_cpu_pool.c — the CPU backend's thread pool (cpu_fallback/pool.c):
 * every thread runs each job exactly once with a distinct ith and the right
 * nth, the caller is thread 0, many jobs in a row all complete (no lost
 * wake-up, no job seen twice), a pool of 1 and a NULL pool run on the
 * caller, and bad sizes fail with a message.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_pool.h"
#include "slm.h"
#include "testutil.h"

#define MAX_T 16

typedef struct seen {
    atomic_int count[MAX_T]; /* runs per ith */
    atomic_int bad_nth;      /* runs that saw an nth other than `want_nth` */
    int want_nth;
    pthread_t caller;
    atomic_int caller_ith; /* ith the calling thread got (-1 if none) */
} seen;

static void record(void *ctx, int ith, int nth)
{
    seen *s = ctx;
    if (nth != s->want_nth || ith < 0 || ith >= MAX_T) {
        atomic_fetch_add(&s->bad_nth, 1);
        return;
    }
    atomic_fetch_add(&s->count[ith], 1);
    if (pthread_equal(pthread_self(), s->caller))
        atomic_store(&s->caller_ith, ith);
}

static void check_one_job(slm_pool *p, int n)
{
    seen s;
    memset(&s, 0, sizeof s);
    s.want_nth = n;
    s.caller = pthread_self();
    atomic_store(&s.caller_ith, -1);
    slm_pool_run(p, record, &s);
    assert_int_equal(atomic_load(&s.bad_nth), 0);
    for (int i = 0; i < MAX_T; i++)
        assert_int_equal(atomic_load(&s.count[i]), i < n ? 1 : 0);
    assert_int_equal(atomic_load(&s.caller_ith), 0);
}

static void every_thread_runs_once(void **state)
{
    (void)state;
    const int sizes[] = {1, 2, 3, 5, 8};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        slm_pool *p = slm_pool_create(sizes[k]);
        assert_non_null(p);
        assert_int_equal(slm_pool_size(p), sizes[k]);
        for (int rep = 0; rep < 20; rep++)
            check_one_job(p, sizes[k]);
        slm_pool_free(p);
    }
}

typedef struct sum_job {
    const int64_t *x;
    int64_t n;
    int64_t part[MAX_T];
    atomic_llong total; /* Σ (ith + 1) over runs */
} sum_job;

/* Each thread sums its contiguous share; the parts must add to the whole. */
static void partial_sum(void *ctx, int ith, int nth)
{
    sum_job *j = ctx;
    int64_t lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth, s = 0;
    for (int64_t i = lo; i < hi; i++)
        s += j->x[i];
    j->part[ith] = s;
    atomic_fetch_add(&j->total, ith + 1);
}

static void many_jobs_in_a_row(void **state)
{
    (void)state;
    int n = tu_int(2, 6);
    slm_pool *p = slm_pool_create(n);
    assert_non_null(p);
    int64_t len = tu_int(1, 5000);
    int64_t *x = malloc((size_t)len * sizeof(int64_t));
    assert_non_null(x);
    sum_job j = {.x = x, .n = len};
    atomic_init(&j.total, 0);
    const int jobs = 3000;
    for (int r = 0; r < jobs; r++) {
        int64_t want = 0;
        for (int64_t i = 0; i < len; i++)
            want += x[i] = (int64_t)(tu_rand_u64() % 1000);
        for (int t = 0; t < MAX_T; t++)
            j.part[t] = -1;
        slm_pool_run(p, partial_sum, &j);
        int64_t got = 0;
        for (int t = 0; t < n; t++)
            got += j.part[t];
        assert_int_equal(got, want);
        for (int t = n; t < MAX_T; t++)
            assert_int_equal(j.part[t], -1); /* no thread beyond the pool ran */
    }
    /* every job ran every thread exactly once: Σ_jobs Σ_ith (ith+1) */
    assert_int_equal(atomic_load(&j.total), (long long)jobs * n * (n + 1) / 2);
    free(x);
    slm_pool_free(p);
}

static void null_pool_runs_on_caller(void **state)
{
    (void)state;
    check_one_job(NULL, 1);
    assert_int_equal(slm_pool_size(NULL), 1);
    slm_pool_free(NULL); /* accepted */
}

static void bad_sizes_fail(void **state)
{
    (void)state;
    assert_null(slm_pool_create(0));
    assert_non_null(strstr(slm_last_error(), "threads"));
    assert_null(slm_pool_create(-3));
    assert_null(slm_pool_create(1 << 20));
}

/* Create and free without ever running a job: workers must exit cleanly. */
static void create_free_idle(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        slm_pool *p = slm_pool_create(tu_int(1, 8));
        assert_non_null(p);
        slm_pool_free(p);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_thread_runs_once),
        cmocka_unit_test(many_jobs_in_a_row),
        cmocka_unit_test(null_pool_runs_on_caller),
        cmocka_unit_test(bad_sizes_fail),
        cmocka_unit_test(create_free_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
