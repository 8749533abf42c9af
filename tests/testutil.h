/*
 * testutil.h — shared helpers for the cmocka tests: a seeded random source
 * (fresh seed per run unless SLM_TEST_SEED is set, always printed so a
 * failure can be replayed), poisoning of outputs, and float comparisons
 * that report the worst element.
 */
#ifndef SLM_TESTUTIL_H
#define SLM_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Seeds the test's random source: SLM_TEST_SEED if set, else time/pid.
 * Prints the seed. Call once at the start of main(). */
uint64_t tu_seed(void);

uint64_t tu_rand_u64(void);
/* Uniform in [lo, hi). */
float tu_uniform(float lo, float hi);
/* Standard normal (Box-Muller). */
float tu_normal(void);
/* Uniform integer in [lo, hi]. */
int tu_int(int lo, int hi);
void tu_fill_uniform(float *x, size_t n, float lo, float hi);
void tu_fill_normal(float *x, size_t n, float scale);

/* Fills n floats with NaN so unwritten outputs are caught. */
void tu_poison(float *x, size_t n);

/* Largest |a-b| / (atol + rtol·|b|) over n elements (≤ 1 means within
 * tolerance); NaN anywhere gives +inf. *worst gets the index. */
double tu_max_rel_err(const float *a, const float *b, size_t n, double atol, double rtol,
                      size_t *worst);

/* Asserts every element within atol + rtol·|ref|, printing the worst. */
void tu_assert_close(const char *what, const float *got, const float *ref, size_t n,
                     double atol, double rtol);

/* Largest |got − ref| / tol over n elements against a double reference and
 * a tolerance per element (≤ 1 means within tolerance; an exact match is 0
 * even at a zero tolerance); a NaN in got or ref gives +inf, so an output
 * the op never wrote (poisoned) always fails.
 * *worst gets the index. */
double tu_worst_ratio(const float *got, const double *ref, const double *tol, size_t n,
                      size_t *worst);

/* Fails the test, printing `what`, the worst element, its value, the
 * reference and the tolerance, when tu_worst_ratio exceeds 1. */
void tu_expect_close_d(const char *what, const float *got, const double *ref, const double *tol,
                       size_t n);

/* Reads a whole file into a malloc'd buffer (caller frees); NULL on failure. */
void *tu_read_file(const char *path, size_t *size);

/* Backend parameters with the knobs the environment names (SLM_CPU_SIMD,
 * SLM_CPU_ACT, SLM_VK_*), as the slm command maps them: the library reads
 * no environment, so tests that ctest runs with such variables pass them
 * on this way. Fails the test on a bad value. */
struct slm_backend_params;
void tu_backend_params(struct slm_backend_params *bp);

#endif
