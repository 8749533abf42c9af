/*
 * bench_backend_matmul.c — kernel lab harness for a backend's matmul op
 * through the backend interface (runtime/backend.h): for each weight type
 * and each (out × cols) shape of a real model, at several token counts,
 * prints the time per matmul and the MAC rate, measured by recording `reps`
 * matmuls in one step (one submit) so per-step overhead is amortized.
 *
 * Before timing, each case's output is checked against a double-precision
 * product of the dequantized weights (max |Δ| relative to Σ|w·x| printed),
 * so a fast wrong kernel shows up here too.
 *
 * Usage: bench_backend_matmul [backend (vulkan)] [types (q4_0,q4_1,q8_0,q4_k,q6_k)]
 *                             [rows (1,8,32)] [shapes (smollm2)]
 * shapes: smollm2 (576-wide, 135M) or llama1b (2048-wide, 1B).
 * Benchmarks report; they never pass or fail.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backend.h"
#include "backend_registry.h"
#include "quant.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct { const char *name; int out, cols; } shape;
static const shape smollm2[] = {{"attn_q", 576, 576},   {"attn_kv", 192, 576},
                                {"ffn_up", 1536, 576},  {"ffn_down", 576, 1536},
                                {"output", 49152, 576}};
static const shape llama1b[] = {{"attn_q", 2048, 2048}, {"attn_kv", 512, 2048},
                                {"ffn_up", 8192, 2048}, {"ffn_down", 2048, 8192}};

static const slm_backend_ops *ops;
static slm_backend *be;

static int fail(const char *what)
{
    fprintf(stderr, "bench_backend_matmul: %s: %s\n", what, slm_last_error());
    return 1;
}

/* One case: returns 0 and prints a line, or 1 on a backend failure. */
static int run_case(slm_type type, const shape *s, int rows)
{
    if (s->cols % slm_type_get(type)->block_elems != 0) {
        printf("%-7s %-9s %6dx%-5d rows %3d  skipped: %d columns are not whole blocks\n",
               slm_type_name(type), s->name, s->out, s->cols, rows, s->cols);
        return 0;
    }
    size_t rb = slm_type_row_bytes(type, s->cols);
    uint8_t *raw = malloc(rb * (size_t)s->out);
    float *w = malloc((size_t)s->out * (size_t)s->cols * sizeof(float));
    float *src = malloc((size_t)s->cols * sizeof(float));
    size_t nx = (size_t)rows * (size_t)s->cols, ny = (size_t)rows * (size_t)s->out;
    float *x = malloc(nx * sizeof(float)), *y = malloc(ny * sizeof(float));
    if (!raw || !w || !src || !x || !y) {
        fprintf(stderr, "bench_backend_matmul: out of memory\n");
        exit(1);
    }
    for (int r = 0; r < s->out; r++) {
        for (int c = 0; c < s->cols; c++)
            src[c] = frand();
        slm_quantize_row_ref(type, src, raw + (size_t)r * rb, s->cols);
        slm_dequantize_row(type, raw + (size_t)r * rb, w + (size_t)r * (size_t)s->cols, s->cols);
    }
    for (size_t i = 0; i < nx; i++)
        x[i] = frand();
    slm_weight *wt = NULL;
    slm_buf *bx = NULL, *by = NULL;
    int rc = 1;
    if (ops->load_weight(be, type, s->out, s->cols, raw, &wt) ||
        ops->buf_alloc(be, nx * sizeof(float), &bx) || ops->buf_alloc(be, ny * sizeof(float), &by) ||
        ops->upload(be, (slm_ref){bx, 0}, x, nx * sizeof(float))) {
        rc = fail("setup");
        goto out;
    }
    slm_step step = {.n_tokens = rows};
    slm_ref nil = {NULL, 0};
    /* Check once, then time reps calls in one step, growing reps until the
     * step takes at least 0.2 s. */
    if (ops->begin_step(be, &step))
        goto step_failed;
    ops->matmul(be, wt, (slm_ref){bx, 0}, rows, nil, (slm_ref){by, 0});
    if (slm_backend_finish_step(be) || ops->download(be, y, (slm_ref){by, 0}, ny * sizeof(float)))
        goto step_failed;
    double worst = 0;
    for (int t = 0; t < rows; t++)
        for (int o = 0; o < s->out; o += 1 + s->out / 64) {
            double acc = 0, mag = 0;
            for (int c = 0; c < s->cols; c++) {
                double p = (double)w[(size_t)o * s->cols + c] * x[(size_t)t * s->cols + c];
                acc += p;
                mag += fabs(p);
            }
            double d = fabs(y[(size_t)t * s->out + o] - acc) / (mag + 1e-30);
            worst = d > worst ? d : worst;
        }
    double dt = 0;
    int reps = 1;
    for (;;) {
        double t0 = now();
        if (ops->begin_step(be, &step))
            goto step_failed;
        for (int i = 0; i < reps; i++)
            ops->matmul(be, wt, (slm_ref){bx, 0}, rows, nil, (slm_ref){by, 0});
        if (slm_backend_finish_step(be))
            goto step_failed;
        dt = now() - t0;
        if (dt >= 0.2 || reps >= 4096)
            break;
        reps = dt < 0.02 ? reps * 8 : reps * 2;
    }
    double per = dt / reps;
    double macs = (double)rows * s->out * s->cols;
    printf("%-7s %-9s %6dx%-5d rows %3d  %9.3f ms  %8.3f GMAC/s  %7.2f GB/s weights  err %.1e\n",
           slm_type_name(type), s->name, s->out, s->cols, rows, per * 1e3, macs / per * 1e-9,
           (double)rb * s->out / per * 1e-9, worst);
    fflush(stdout);
    rc = 0;
    goto out;
step_failed:
    rc = fail("step");
out:
    ops->buf_free(be, bx);
    ops->buf_free(be, by);
    ops->weight_free(be, wt);
    free(raw), free(w), free(src), free(x), free(y);
    return rc;
}

/* The type whose GGML name is `name` (any case), or -1. */
static int type_named(const char *name)
{
    for (int t = 0; t < SLM_TYPE_COUNT; t++) {
        const slm_type_info *ti = slm_type_get(t);
        if (ti && ti->name && strcasecmp(ti->name, name) == 0)
            return t;
    }
    return -1;
}

/* Next comma-separated item of *list into buf; false at the end. */
static int next_item(const char **list, char *buf, size_t n)
{
    const char *p = *list;
    if (!*p)
        return 0;
    size_t i = 0;
    while (*p && *p != ',') {
        if (i + 1 < n)
            buf[i++] = *p;
        p++;
    }
    buf[i] = 0;
    *list = *p ? p + 1 : p;
    return 1;
}

int main(int argc, char **argv)
{
    const char *backend = argc > 1 ? argv[1] : "vulkan";
    const char *types = argc > 2 ? argv[2] : "q4_0,q4_1,q8_0,q4_k,q6_k";
    const char *rows_list = argc > 3 ? argv[3] : "1,8,32";
    const char *shapes = argc > 4 ? argv[4] : "smollm2";
    const shape *sh = strcmp(shapes, "llama1b") == 0 ? llama1b : smollm2;
    int n_sh = sh == llama1b ? 4 : 5;
    slm_backend_params p;
    slm_backend_params_default(&p);
    /* The library reads no environment: the kernel family scripts/gpu-check
     * asks for with SLM_VK_MATMUL (direct or gpu) is passed on here. */
    const char *fam = getenv("SLM_VK_MATMUL");
    if (fam && !strcmp(fam, "direct"))
        p.vk_matmul = 1;
    else if (fam && !strcmp(fam, "gpu"))
        p.vk_matmul = 2;
    if (slm_backend_open_by_name(backend, &p, &be))
        return fail("open");
    ops = be->ops;
    printf("# %s: %s\n", backend, ops->describe(be));
    char tname[32], rname[16];
    for (const char *tl = types; next_item(&tl, tname, sizeof tname);) {
        int type = type_named(tname);
        if (type < 0) {
            fprintf(stderr, "bench_backend_matmul: unknown type '%s'\n", tname);
            return 1;
        }
        for (int i = 0; i < n_sh; i++)
            for (const char *rl = rows_list; next_item(&rl, rname, sizeof rname);)
                if (run_case(type, &sh[i], atoi(rname)))
                    return 1;
    }
    ops->close(be);
    return 0;
}
