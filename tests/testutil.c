/*
 * testutil.c — see testutil.h. The random source is xoshiro256** seeded by
 * splitmix64, so a printed seed reproduces a run exactly.
 */
#include "testutil.h"

#include "backend_options.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t s[4];

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tu_seed(void)
{
    const char *env = getenv("SLM_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0)
                        : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        s[i] = splitmix(&x);
    fprintf(stderr, "test seed: SLM_TEST_SEED=%llu\n", (unsigned long long)seed);
    return seed;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tu_rand_u64(void)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

float tu_uniform(float lo, float hi)
{
    double u = (double)(tu_rand_u64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

float tu_normal(void)
{
    double u1 = ((double)(tu_rand_u64() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(tu_rand_u64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int tu_int(int lo, int hi) { return lo + (int)(tu_rand_u64() % (uint64_t)(hi - lo + 1)); }

void tu_fill_uniform(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = tu_uniform(lo, hi);
}

void tu_fill_normal(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * tu_normal();
}

void tu_poison(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

double tu_max_rel_err(const float *a, const float *b, size_t n, double atol, double rtol,
                      size_t *worst)
{
    double *ref = malloc((n ? n : 1) * sizeof(double)), *tol = malloc((n ? n : 1) * sizeof(double));
    if (!ref || !tol)
        abort();
    for (size_t i = 0; i < n; i++) {
        ref[i] = b[i];
        tol[i] = atol + rtol * fabs((double)b[i]);
    }
    double w = tu_worst_ratio(a, ref, tol, n, worst);
    free(ref);
    free(tol);
    return w;
}

void tu_assert_close(const char *what, const float *got, const float *ref, size_t n,
                     double atol, double rtol)
{
    size_t wi;
    double e = tu_max_rel_err(got, ref, n, atol, rtol, &wi);
    if (e > 1.0) {
        print_error("%s: element %zu of %zu: got %.9g, want %.9g (atol %g, rtol %g)\n", what, wi,
                    n, got[wi], ref[wi], atol, rtol);
        fail();
    }
}

double tu_worst_ratio(const float *got, const double *ref, const double *tol, size_t n,
                      size_t *worst)
{
    double w = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        /* an exact match passes even at a zero tolerance */
        double d = fabs((double)got[i] - ref[i]);
        double r = d == 0 ? 0 : d / tol[i];
        if (isnan(got[i]) || isnan(ref[i]) || isnan(r))
            r = INFINITY;
        if (r > w) {
            w = r;
            wi = i;
        }
    }
    if (worst)
        *worst = wi;
    return w;
}

void tu_expect_close_d(const char *what, const float *got, const double *ref, const double *tol,
                       size_t n)
{
    size_t wi;
    if (tu_worst_ratio(got, ref, tol, n, &wi) > 1.0) {
        print_error("%s: element %zu of %zu: got %.9g, want %.9g (tolerance %.3g)\n", what, wi, n,
                    (double)got[wi], ref[wi], tol[wi]);
        fail();
    }
}

void *tu_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && size)
        *size = (size_t)n;
    return buf;
}

void tu_backend_params(slm_backend_params *bp)
{
    /* The slm command's own mapping (tools/cli_env.c), so tests see the
     * variables exactly as users of the command do — the compiled-pipeline
     * cache included, which lavapipe would otherwise rebuild every time. */
    static char opts[4096], why[256], store[4096];
    slm_backend_params_default(bp);
    if (slm_cli_env_options(opts, sizeof opts, why, sizeof why) ||
        slm_backend_options_parse(opts, bp, store, sizeof store) != SLM_OK) {
        fprintf(stderr, "bad backend environment: %s\n", opts[0] ? slm_last_error() : why);
        abort();
    }
}
