/*
 * test_cost.c — `slm cost`'s money side (tools/cost_model.c) on hand-worked
 * cases: what a busy hour costs for a bought and a rented machine, dollars
 * per million tokens, the percentiles; profiles read field by field, each
 * broken one rejected with a message naming the file and the field; the
 * device picks the profile with the longest matching string; every profile
 * shipped in bench/hardware/ loads; the chat mix is seeded and inside its
 * clips. Tolerance: 1e-9 relative on the arithmetic (it is exact up to
 * rounding).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cost.h"
#include "testutil.h"

#define near(a, b) assert_true(fabs((a) - (double)(b)) <= 1e-9 * fabs((double)(b)))

static slm_cost_profile bought(void)
{
    return (slm_cost_profile){.name = "card", .n_match = 1, .purchase_usd = 1600,
                              .amortization_years = 3, .power_load_w = 450, .power_idle_w = 20};
}

static void test_hour_bought(void **state)
{
    (void)state;
    slm_cost_profile p = bought();
    /* u = 1: 1600 / (3 × 8760) + 0.15 × 450 / 1000 = 0.060882800… + 0.0675 */
    near(slm_cost_usd_per_hour(&p, 1.0, 0.15, -1), 1600.0 / 26280.0 + 0.0675);
    /* u = 0.5: capital doubles per busy hour; each busy hour carries one idle
     * hour at 20 W: 1600 / 13140 + 0.15 × (450 + 20) / 1000 */
    near(slm_cost_usd_per_hour(&p, 0.5, 0.15, -1), 1600.0 / 13140.0 + 0.0705);
    /* a measured 100 W replaces the profile's load power */
    near(slm_cost_usd_per_hour(&p, 1.0, 0.15, 100), 1600.0 / 26280.0 + 0.015);
    /* free electricity leaves the capital alone */
    near(slm_cost_usd_per_hour(&p, 1.0, 0, -1), 1600.0 / 26280.0);
}

static void test_hour_rented(void **state)
{
    (void)state;
    slm_cost_profile p = {.cloud_usd_per_hour = 2.0, .power_load_w = 700};
    near(slm_cost_usd_per_hour(&p, 1.0, 0.15, -1), 2.0); /* power is in the rent */
    near(slm_cost_usd_per_hour(&p, 0.25, 0.15, 300), 8.0);
}

static void test_per_mtok(void **state)
{
    (void)state;
    near(slm_cost_usd_per_mtok(0.36, 100), 1.0); /* 360 000 tokens for $0.36 */
    near(slm_cost_usd_per_mtok(3.6, 1e6), 0.001);
    assert_true(isinf(slm_cost_usd_per_mtok(1, 0)));
}

static void test_percentile(void **state)
{
    (void)state;
    double v[] = {4, 1, 3, 2};
    near(slm_cost_percentile(v, 4, 0.5), 2.5);
    near(slm_cost_percentile(v, 4, 0.99), 3.97); /* 3 + 0.97 × (4 − 3) */
    near(slm_cost_percentile(v, 4, 0), 1);
    near(slm_cost_percentile(v, 4, 1), 4);
    double one = 7;
    near(slm_cost_percentile(&one, 1, 0.9), 7);
    assert_true(isnan(slm_cost_percentile(v, 0, 0.5)));
}

/* Writes text to dir/name; returns the path (static buffer). */
static const char *put(const char *dir, const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

#define GOOD "name = Card X\nmatch = Card X\nmatch = CardX\npurchase_usd = 500\n" \
             "amortization_years = 3\npower_load_w = 170\npower_idle_w = 12\n" \
             "price_source = estimate\nprice_date = 2026-12-02\n"

/* The load fails and its message holds every needle. */
static void rejected(const char *dir, const char *text, const char *n1, const char *n2)
{
    slm_cost_profile p;
    char err[1024];
    const char *path = put(dir, "bad.conf", text);
    assert_int_equal(slm_cost_profile_load(path, &p, err, sizeof err), -1);
    if (!strstr(err, n1) || !strstr(err, n2) || !strstr(err, "bad.conf"))
        fail_msg("message '%s' lacks '%s' or '%s'", err, n1, n2);
    unlink(path);
}

static void test_profile_fields(void **state)
{
    (void)state;
    char dir[] = "/tmp/slm_cost_XXXXXX";
    assert_non_null(mkdtemp(dir));
    slm_cost_profile p;
    char err[1024];
    assert_int_equal(slm_cost_profile_load(put(dir, "x.conf", "# a card\n" GOOD), &p, err,
                                           sizeof err), 0);
    assert_string_equal(p.name, "Card X");
    assert_int_equal(p.n_match, 2);
    assert_string_equal(p.match[1], "CardX");
    near(p.power_idle_w, 12);
    rejected(dir, "name = A\nmatch = A\npurchase_usd = 1\namortization_years = 3\n"
                  "power_load_w = 1\nprice_source = s\nprice_date = d\n",
             "missing field", "power_idle_w");
    rejected(dir, GOOD "power_load_w = lots\n", ":10:", "field 'power_load_w'");
    rejected(dir, GOOD "power_idle_w = -3\n", "field 'power_idle_w'", "-3");
    rejected(dir, GOOD "watts = 3\n", "unknown field", "watts");
    rejected(dir, GOOD "cloud_usd_per_hour = 1\n", "field 'cloud_usd_per_hour'", "not both");
    rejected(dir, "match = A\ncloud_usd_per_hour = 1\nprice_source = s\nprice_date = d\n",
             "missing field", "'name'");
    rejected(dir, "name = A\nmatch = A\ncloud_usd_per_hour = 1\nprice_date = d\n",
             "missing field", "price_source");
    rejected(dir, GOOD "just words\n", ":10:", "key = value");
    unlink(put(dir, "x.conf", ""));
    rmdir(dir);
}

static void test_profile_find(void **state)
{
    (void)state;
    char dir[] = "/tmp/slm_cost_XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *rent = "cloud_usd_per_hour = 2\nprice_source = s\nprice_date = d\n";
    char a[256], b[256], c[256];
    snprintf(a, sizeof a, "name = H100 SXM\nmatch = H100\n%s", rent);
    snprintf(b, sizeof b, "name = H100 PCIe\nmatch = H100 PCIe\n%s", rent);
    snprintf(c, sizeof c, "name = small VM\nmatch = AMD EPYC\ncores = 2\nexclude = EPYC 9654\n%s",
             rent);
    put(dir, "h100_sxm.conf", a);
    put(dir, "h100_pcie.conf", b);
    put(dir, "vm.conf", c);
    slm_cost_profile p;
    char err[1024];
    /* the longest match string found in the device name wins, any case */
    assert_int_equal(slm_cost_profile_find(dir, NULL, "cuda: NVIDIA h100 pcie", 2, &p, err,
                                           sizeof err), 0);
    assert_string_equal(p.name, "H100 PCIe");
    assert_int_equal(slm_cost_profile_find(dir, NULL, "cuda: NVIDIA H100 80GB HBM3", 2, &p, err,
                                           sizeof err), 0);
    assert_string_equal(p.name, "H100 SXM");
    /* cores restricts auto-detection */
    assert_int_equal(slm_cost_profile_find(dir, NULL, "cpu: AMD EPYC, 2 threads", 2, &p, err,
                                           sizeof err), 0);
    assert_string_equal(p.name, "small VM");
    assert_int_equal(slm_cost_profile_find(dir, NULL, "cpu: AMD EPYC, 64 threads", 64, &p, err,
                                           sizeof err), 1);
    /* exclude rules a device out; a match is not a prefix of a longer word */
    assert_int_equal(slm_cost_profile_find(dir, NULL, "cpu: AMD EPYC 9654", 2, &p, err,
                                           sizeof err), 1);
    assert_int_equal(slm_cost_profile_find(dir, NULL, "cuda: NVIDIA H1000", 2, &p, err,
                                           sizeof err), 1);
    assert_non_null(strstr(err, "--hardware"));
    /* by file stem or by name */
    assert_int_equal(slm_cost_profile_find(dir, "vm", "x", 1, &p, err, sizeof err), 0);
    assert_string_equal(p.name, "small VM");
    assert_int_equal(slm_cost_profile_find(dir, "h100 pcie", "x", 1, &p, err, sizeof err), 0);
    assert_string_equal(p.name, "H100 PCIe");
    assert_int_equal(slm_cost_profile_find(dir, "nope", "x", 1, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "--hardware nope"));
    /* one broken profile in the folder is an error naming it */
    put(dir, "broken.conf", "name = B\n");
    assert_int_equal(slm_cost_profile_find(dir, NULL, "H100", 1, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "broken.conf"));
    const char *names[] = {"h100_sxm.conf", "h100_pcie.conf", "vm.conf", "broken.conf"};
    for (int i = 0; i < 4; i++)
        unlink(put(dir, names[i], ""));
    rmdir(dir);
}

/* Every shipped profile loads (the test runs from the source root). */
static void test_shipped_profiles(void **state)
{
    (void)state;
    slm_cost_profile p;
    char err[1024];
    int rc = slm_cost_profile_find("bench/hardware", NULL, "no such device", 1, &p, err,
                                   sizeof err);
    if (rc != 1)
        fail_msg("bench/hardware: %s", err);
    static const char *wanted[] = {"RTX 3060 12GB", "RTX 4060 Ti 16GB", "RTX 3090", "RTX 4090",
                                   "L4", "A10", "T4", "H100 PCIe", "H100 SXM", "H200"};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
        if (slm_cost_profile_find("bench/hardware", wanted[i], "", 1, &p, err, sizeof err))
            fail_msg("%s", err);
}

static void test_chat_mix(void **state)
{
    (void)state;
    enum { N = 2001 };
    slm_cost_request *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    double *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    slm_cost_workload_chat(7, N, a);
    slm_cost_workload_chat(7, N, b);
    assert_memory_equal(a, b, N * sizeof *a); /* same seed, same requests */
    slm_cost_workload_chat(8, N, b);
    assert_true(memcmp(a, b, N * sizeof *a) != 0);
    for (int i = 0; i < N; i++) {
        assert_in_range(a[i].n_in, SLM_COST_CHAT_IN_MIN, SLM_COST_CHAT_IN_MAX);
        assert_in_range(a[i].n_out, SLM_COST_CHAT_OUT_MIN, SLM_COST_CHAT_OUT_MAX);
        in[i] = a[i].n_in, out[i] = a[i].n_out;
    }
    /* Medians near the stated ones: the sample median's standard error here
     * is about 3% (1.25 sigma / sqrt(N) in log space); 15% is far outside it. */
    double mi = slm_cost_percentile(in, N, 0.5), mo = slm_cost_percentile(out, N, 0.5);
    assert_true(fabs(mi / SLM_COST_CHAT_IN_MEDIAN - 1) < 0.15);
    assert_true(fabs(mo / SLM_COST_CHAT_OUT_MEDIAN - 1) < 0.15);
    free(a), free(b), free(in), free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hour_bought),     cmocka_unit_test(test_hour_rented),
        cmocka_unit_test(test_per_mtok),        cmocka_unit_test(test_percentile),
        cmocka_unit_test(test_profile_fields),  cmocka_unit_test(test_profile_find),
        cmocka_unit_test(test_shipped_profiles), cmocka_unit_test(test_chat_mix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
