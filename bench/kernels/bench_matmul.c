/*
 * bench_matmul.c — kernel lab harness for the CPU quantized matmul
 * (cpu_fallback/cpu_matmul.h): for every supported weight type × every SIMD
 * level this CPU has, at decode shape (rows = 1), a small batch (rows = 16)
 * and a prefill chunk (rows = 64), prints the time per call and the weight
 * bytes streamed per second, beside a measured single-pass read bandwidth
 * of this machine. Where a level has packed kernels for the type
 * (cpu_packed.h), the same weights repacked are timed too ("avx2+pack"), so
 * the row kernels stay beside the packed ones and the gain stays measurable.
 *
 * Before timing, each level's result is checked against the scalar level
 * (max relative difference printed; they differ only in summation order).
 * Weights are the reference quantization of 64 random rows, tiled to the
 * full height, and (by default) several copies are rotated so that every
 * call reads its weights from DRAM, not from the last-level cache.
 *
 * Usage: bench_matmul [threads (1)] [min seconds per case (0.3)] [type filter]
 * Benchmarks report; they never pass or fail.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_matmul.h"
#include "cpu_pool.h"
#include "cpu_simd.h"
#include "quant.h"

#define COLD_BYTES ((size_t)256 << 20) /* rotate weight copies over at least this much */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float randn(void)
{
    /* xorshift + Box-Muller: the data only needs to look like weights */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        u[i] = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

/* GB/s of a plain summing read over a buffer much larger than the caches:
 * the yardstick for "a good fraction of memory bandwidth" (one thread, or
 * the pool's threads each reading their share). */
typedef struct { const uint64_t *p; size_t n; uint64_t sum[64]; } read_job;
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* 256-bit loads in four chains: a plain C loop tops out below DRAM speed on
 * this class of machine and would understate the bandwidth. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    return o[0] + o[1] + o[2] + o[3];
}
#endif

static void read_part(void *ctx, int ith, int nth)
{
    read_job *j = ctx;
    size_t lo = j->n * (size_t)ith / (size_t)nth, hi = j->n * (size_t)(ith + 1) / (size_t)nth;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) {
        j->sum[ith % 64] = read_avx2(j->p + lo, hi - lo);
        return;
    }
#endif
    uint64_t s[8] = {0};
    for (size_t i = lo; i + 8 <= hi; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += j->p[i + k];
    j->sum[ith % 64] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static double read_bandwidth(slm_pool *pool)
{
    size_t n = COLD_BYTES / sizeof(uint64_t);
    uint64_t *p = malloc(n * sizeof(uint64_t));
    if (!p)
        return 0;
    for (size_t i = 0; i < n; i++)
        p[i] = i;
    read_job j = {.p = p, .n = n};
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        slm_pool_run(pool, read_part, &j);
        double gbs = (double)(n * sizeof(uint64_t)) / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    free(p);
    return best;
}

typedef struct {
    slm_type type;
    int64_t out, in;
    size_t bytes; /* one copy */
    int copies;
    uint8_t *w;   /* copies × bytes */
} weights;

static int make_weights(weights *wt, slm_type type, int64_t out, int64_t in)
{
    size_t rb = slm_type_row_bytes(type, in);
    wt->type = type, wt->out = out, wt->in = in;
    wt->bytes = rb * (size_t)out;
    wt->copies = (int)((COLD_BYTES + wt->bytes - 1) / wt->bytes);
    wt->w = malloc(wt->bytes * (size_t)wt->copies);
    float *row = malloc((size_t)in * sizeof(float));
    if (!wt->w || !row) {
        free(wt->w);
        free(row);
        return -1;
    }
    int64_t uniq = out < 64 ? out : 64;
    for (int64_t o = 0; o < uniq; o++) {
        for (int64_t e = 0; e < in; e++)
            row[e] = 0.02f * randn();
        slm_quantize_row_ref(type, row, wt->w + (size_t)o * rb, in);
    }
    for (int64_t o = uniq; o < out; o++)
        memcpy(wt->w + (size_t)o * rb, wt->w + (size_t)(o % uniq) * rb, rb);
    for (int c = 1; c < wt->copies; c++)
        memcpy(wt->w + (size_t)c * wt->bytes, wt->w, wt->bytes);
    free(row);
    return 0;
}

/* Max |a − b| / max |b| over n. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static void report(slm_type type, const char *level, const char *suffix, const weights *wt,
                   int64_t rows, double per, double peak, double diff)
{
    char name[32];
    snprintf(name, sizeof name, "%s%s", level, suffix);
    double gbs = (double)wt->bytes / per / 1e9;
    printf("%-7s %-11s rows=%-3lld %5lldx%-5lld %9.1f us  %7.2f GB/s  %5.1f%% of read bw"
           "  %8.2f GFLOP/s  vs scalar %.1e\n",
           slm_type_name(type), name, (long long)rows, (long long)wt->out, (long long)wt->in,
           per * 1e6, gbs, 100.0 * gbs / peak, 2.0 * (double)(rows * wt->out * wt->in) / per / 1e9,
           diff);
    fflush(stdout);
}

/* The same weights packed (every copy, so reads stay cold), timed alike. */
static void bench_packed(slm_pool *pool, slm_simd lvl, const weights *wt, const float *x,
                         int64_t rows, float *y, const float *y0, void *scratch, double min_s,
                         double peak)
{
    slm_cpu_packed **p = calloc((size_t)wt->copies, sizeof *p);
    for (int c = 0; p && c < wt->copies; c++)
        if ((p[c] = slm_cpu_pack(lvl, wt->type, wt->w + (size_t)c * wt->bytes, wt->out, wt->in)) ==
            NULL) {
            fprintf(stderr, "out of memory packing %s\n", slm_type_name(wt->type));
            for (int k = 0; k < c; k++)
                slm_cpu_packed_free(p[k]);
            free(p);
            return;
        }
    if (p == NULL)
        return;
    slm_cpu_matmul_packed(pool, 1, p[0], x, rows, NULL, y, scratch);
    double diff = rel_diff(y, y0, (size_t)(rows * wt->out));
    int calls = 0;
    double t0 = now(), t;
    do {
        slm_cpu_matmul_packed(pool, 1, p[calls % wt->copies], x, rows, NULL, y, scratch);
        calls++;
        t = now() - t0;
    } while (t < min_s || calls < 3);
    report(wt->type, slm_simd_name(lvl), "+pack", wt, rows, t / calls, peak, diff);
    for (int c = 0; c < wt->copies; c++)
        slm_cpu_packed_free(p[c]);
    free(p);
}

static void bench_shape(slm_pool *pool, slm_type type, int64_t out, int64_t in, int64_t rows,
                        double min_s, double peak)
{
    weights wt;
    if (make_weights(&wt, type, out, in) != 0) {
        fprintf(stderr, "out of memory for %s %lldx%lld\n", slm_type_name(type), (long long)out,
                (long long)in);
        return;
    }
    size_t ny = (size_t)(rows * out);
    float *x = malloc((size_t)(rows * in) * sizeof(float));
    float *y = malloc(ny * sizeof(float)), *y0 = malloc(ny * sizeof(float));
    size_t sb = slm_cpu_matmul_scratch_bytes(type, in, rows);
    void *scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    for (int64_t i = 0; i < rows * in; i++)
        x[i] = randn();
    slm_cpu_matmul(pool, SLM_SIMD_SCALAR, 1, type, wt.w, out, in, x, rows, NULL, y0, scratch);
    for (int l = 0; l < SLM_SIMD_COUNT; l++) {
        if (!slm_simd_available((slm_simd)l))
            continue;
        slm_cpu_matmul(pool, (slm_simd)l, 1, type, wt.w, out, in, x, rows, NULL, y, scratch);
        double diff = rel_diff(y, y0, ny);
        int calls = 0;
        double t0 = now(), t;
        do {
            const uint8_t *w = wt.w + (size_t)(calls % wt.copies) * wt.bytes;
            slm_cpu_matmul(pool, (slm_simd)l, 1, type, w, out, in, x, rows, NULL, y, scratch);
            calls++;
            t = now() - t0;
        } while (t < min_s || calls < 3);
        double per = t / calls;
        report(type, slm_simd_name((slm_simd)l), "", &wt, rows, per, peak, diff);
        if (slm_cpu_pack_available((slm_simd)l, type))
            bench_packed(pool, (slm_simd)l, &wt, x, rows, y, y0, scratch, min_s, peak);
    }
    free(scratch);
    free(x);
    free(y);
    free(y0);
    free(wt.w);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    double min_s = argc > 2 ? atof(argv[2]) : 0.3;
    const char *filter = argc > 3 ? argv[3] : NULL;
    slm_pool *pool = threads > 1 ? slm_pool_create(threads) : NULL;
    if (threads > 1 && !pool) {
        fprintf(stderr, "pool: %s\n", slm_last_error());
        return 1;
    }
    static const slm_type types[] = {
        SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0,
        SLM_TYPE_IQ4_NL, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K,
        SLM_TYPE_Q6_K, SLM_TYPE_IQ4_XS, SLM_TYPE_F16, SLM_TYPE_BF16, SLM_TYPE_F32,
    };
    static const int64_t shapes[][2] = {{576, 1536}, {4096, 4096}};
    static const int64_t rows_set[] = {1, 16, 64};
    double peak = read_bandwidth(pool);
    printf("threads=%d  read bandwidth (sum over %zu MiB, best of 5): %.2f GB/s\n", threads,
           COLD_BYTES >> 20, peak);
    printf("weights rotated over >= %zu MiB of copies (cold, from DRAM)\n", COLD_BYTES >> 20);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        if (filter && !strstr(filter, slm_type_name(types[t])))
            continue;
        for (int s = 0; s < 2; s++)
            for (int r = 0; r < 3; r++)
                bench_shape(pool, types[t], shapes[s][0], shapes[s][1], rows_set[r], min_s, peak);
    }
    slm_pool_free(pool);
    return 0;
}
