/*
 * test_cpu_ops.c — the CPU backend's ops through the slm_backend_cpu()
 * table, each against a scalar double-precision reference written here, at
 * ragged sizes, with every output poisoned (NaN) before the run, for every
 * SIMD level this machine has (SLM_CPU_SIMD set before open) and a random
 * thread count. Also: SIMD level parsing, the backend's error paths (each
 * surfaces at end_step and leaves the backend usable), and a check that the
 * comparison used here fails on a deliberately wrong result.
 *
 * Attention and the KV pool are in test_cpu_attention.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_simd.h"
#include "fp16.h"
#include "quant.h"
#include "quant_blocks.h"
#include "testutil.h"

/* ------------------------------------------------------------------------ */
/* harness                                                                   */

static slm_simd levels[SLM_SIMD_COUNT];
static int n_levels;

typedef struct env {
    const slm_backend_ops *ops;
    slm_backend *be;
} env;

static void open_level(env *e, slm_simd level)
{
    setenv("SLM_CPU_SIMD", slm_simd_name(level), 1);
    e->ops = slm_backend_cpu();
    slm_backend_params p = {.size = sizeof p, .n_threads = tu_int(1, 3), .device_index = -1};
    slm_status st = e->ops->open(&p, &e->be);
    if (st != SLM_OK)
        fail_msg("open at %s: %s", slm_simd_name(level), slm_last_error());
    char want[32];
    snprintf(want, sizeof want, "simd %s", slm_simd_name(level));
    assert_non_null(strstr(e->ops->describe(e->be), want));
}

static void close_env(env *e)
{
    e->ops->close(e->be);
    unsetenv("SLM_CPU_SIMD");
}

static slm_ref at(slm_buf *b) { return (slm_ref){.buf = b, .off = 0}; }

/* A buffer holding n floats copied from x. */
static slm_buf *buf_from(env *e, const float *x, size_t n)
{
    slm_buf *b;
    assert_int_equal(e->ops->buf_alloc(e->be, n * sizeof(float), &b), SLM_OK);
    assert_int_equal(e->ops->upload(e->be, at(b), x, n * sizeof(float)), SLM_OK);
    return b;
}

/* A buffer of n floats, all NaN (an output). */
static slm_buf *buf_poisoned(env *e, size_t n)
{
    float *tmp = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(tmp);
    tu_poison(tmp, n);
    slm_buf *b = buf_from(e, tmp, n);
    free(tmp);
    return b;
}

static float *download(env *e, slm_buf *b, size_t n)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(x);
    assert_int_equal(e->ops->download(e->be, x, at(b), n * sizeof(float)), SLM_OK);
    return x;
}

/* One sequence of n tokens at positions pos (ids may be NULL). */
typedef struct step_data {
    int32_t ids[512], pos[512], seq[512], slot[512];
    int32_t bt_start[1], bt_len[1], bt[1];
    slm_step s;
} step_data;

static void make_step(step_data *d, int n, const int32_t *ids)
{
    assert_true(n <= 512);
    for (int t = 0; t < n; t++) {
        d->ids[t] = ids ? ids[t] : 0;
        d->pos[t] = t;
        d->seq[t] = 0;
        d->slot[t] = t;
    }
    d->bt_start[0] = 0;
    d->bt_len[0] = 1;
    d->bt[0] = 0;
    d->s = (slm_step){.n_tokens = n, .token_ids = d->ids, .positions = d->pos,
                      .seq_of_token = d->seq, .kv_slot = d->slot, .n_seqs = 1,
                      .block_table_start = d->bt_start, .block_table_len = d->bt_len,
                      .block_tables = d->bt};
}

/* Largest |got - ref| / tol over n elements (NaN anywhere: infinity). */
static double worst_ratio(const float *got, const double *ref, const double *tol, size_t n,
                          size_t *at_i)
{
    double w = 0;
    *at_i = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - ref[i]) / tol[i];
        if (isnan(got[i]) || isnan(r))
            r = INFINITY;
        if (r > w) {
            w = r;
            *at_i = i;
        }
    }
    return w;
}

static void expect_close(const char *what, const float *got, const double *ref,
                         const double *tol, size_t n)
{
    size_t i;
    double w = worst_ratio(got, ref, tol, n, &i);
    if (w > 1.0)
        fail_msg("%s: element %zu of %zu: got %.9g, want %.9g (tolerance %.3g)", what, i, n,
                 (double)got[i], ref[i], tol[i]);
}

/* tol[i] = atol + rtol·|ref[i]| */
static double *tol_of(const double *ref, size_t n, double atol, double rtol)
{
    double *t = malloc((n ? n : 1) * sizeof(double));
    assert_non_null(t);
    for (size_t i = 0; i < n; i++)
        t[i] = atol + rtol * fabs(ref[i]);
    return t;
}

static double *dalloc(size_t n)
{
    double *d = calloc(n ? n : 1, sizeof(double));
    assert_non_null(d);
    return d;
}

static float *falloc(size_t n)
{
    float *f = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(f);
    return f;
}

/* ------------------------------------------------------------------------ */
/* SIMD levels                                                               */

static void simd_levels_parse(void **state)
{
    (void)state;
    slm_simd l;
    assert_int_equal(slm_simd_parse("scalar", &l), SLM_OK);
    assert_int_equal(l, SLM_SIMD_SCALAR);
    assert_int_equal(slm_simd_parse("sse9", &l), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "sse9"));
    assert_non_null(strstr(slm_last_error(), "avx2"));
    assert_true(slm_simd_available(slm_simd_best()));
    /* a level this CPU or build lacks says so */
    for (int i = 0; i < SLM_SIMD_COUNT; i++) {
        if (slm_simd_available((slm_simd)i))
            continue;
        assert_int_equal(slm_simd_parse(slm_simd_name((slm_simd)i), &l), SLM_STATUS_UNSUPPORTED);
        assert_non_null(strstr(slm_last_error(), "not available"));
    }
    /* the environment: unknown names fail open with the variable named */
    setenv("SLM_CPU_SIMD", "bogus", 1);
    slm_backend *be = NULL;
    assert_int_not_equal(slm_backend_cpu()->open(NULL, &be), SLM_OK);
    assert_null(be);
    assert_non_null(strstr(slm_last_error(), "SLM_CPU_SIMD"));
    unsetenv("SLM_CPU_SIMD");
    assert_int_equal(slm_simd_from_env(&l), SLM_OK);
    assert_int_equal(l, slm_simd_best());
    /* n_threads 0 = one per core */
    assert_int_equal(slm_backend_cpu()->open(NULL, &be), SLM_OK);
    assert_non_null(strstr(slm_backend_cpu()->describe(be), "thread"));
    slm_backend_cpu()->close(be);
    slm_backend_cpu()->close(NULL);
}

/* ------------------------------------------------------------------------ */
/* embed                                                                     */

/* The reference value of element e of a row stored as `type`, decoded here
 * independently of runtime/quant.c for F32, F16 and Q8_0. */
static double ref_elem(slm_type type, const uint8_t *row, int64_t e)
{
    switch (type) {
    case SLM_TYPE_F32: {
        float f;
        memcpy(&f, row + 4 * e, 4);
        return f;
    }
    case SLM_TYPE_F16: {
        uint16_t h;
        memcpy(&h, row + 2 * e, 2);
        return slm_f16_to_f32(h);
    }
    case SLM_TYPE_Q8_0: {
        slm_block_q8_0 b;
        memcpy(&b, row + (e / SLM_QK) * sizeof b, sizeof b);
        return (double)slm_f16_to_f32(b.d) * b.qs[e % SLM_QK];
    }
    default: fail_msg("no independent decoder for %s", slm_type_name((int)type)); return 0;
    }
}

static void embed_one(env *e, slm_type type)
{
    int64_t rows = tu_int(3, 70);
    int64_t cols = type == SLM_TYPE_Q4_K ? 256 * tu_int(1, 2) : 32 * tu_int(1, 9);
    size_t rb = slm_type_row_bytes((int)type, cols);
    uint8_t *table = malloc((size_t)rows * rb);
    float *src = falloc((size_t)cols);
    float *deq = falloc((size_t)cols);
    assert_non_null(table);
    for (int64_t r = 0; r < rows; r++) {
        tu_fill_normal(src, (size_t)cols, 1.0f);
        assert_true(slm_quantize_row_ref((int)type, src, table + r * rb, cols));
    }
    slm_weight *w;
    assert_int_equal(e->ops->load_weight(e->be, type, rows, cols, table, &w), SLM_OK);
    int n = tu_int(1, 90);
    int32_t ids[90];
    for (int t = 0; t < n; t++)
        ids[t] = tu_int(0, (int)rows - 1);
    step_data sd;
    make_step(&sd, n, ids);
    size_t ny = (size_t)n * (size_t)cols;
    slm_buf *y = buf_poisoned(e, ny);
    assert_int_equal(e->ops->begin_step(e->be, &sd.s), SLM_OK);
    e->ops->embed(e->be, w, at(y));
    assert_int_equal(e->ops->end_step(e->be), SLM_OK);
    float *got = download(e, y, ny);
    double *ref = dalloc(ny);
    for (int t = 0; t < n; t++) {
        const uint8_t *row = table + (size_t)ids[t] * rb;
        if (type == SLM_TYPE_Q4_K) {
            /* Q4_K's decoder is tested against GGML in test_quant.c */
            assert_true(slm_dequantize_row((int)type, row, deq, cols));
            for (int64_t i = 0; i < cols; i++)
                ref[(size_t)t * cols + i] = deq[i];
        } else {
            for (int64_t i = 0; i < cols; i++)
                ref[(size_t)t * cols + i] = ref_elem(type, row, i);
        }
    }
    /* dequantization is exact: bit-equal (1e-30 only keeps the ratio finite) */
    double *tol = tol_of(ref, ny, 1e-30, 0);
    char what[64];
    snprintf(what, sizeof what, "embed %s", slm_type_name((int)type));
    expect_close(what, got, ref, tol, ny);
    free(tol);
    free(ref);
    free(got);
    e->ops->buf_free(e->be, y);
    e->ops->weight_free(e->be, w);
    free(deq);
    free(src);
    free(table);
}

static void embed_types(void **state)
{
    (void)state;
    const slm_type types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0, SLM_TYPE_Q4_K};
    for (int l = 0; l < n_levels; l++) {
        env e;
        open_level(&e, levels[l]);
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
            embed_one(&e, types[k]);
        close_env(&e);
    }
}

/* ------------------------------------------------------------------------ */
/* rmsnorm                                                                   */

/* Runs rmsnorm on fresh data; returns the worst error ratio of y (so the
 * checker test can reuse it) after checking x's in-place update. When
 * `corrupt`, one element of the result is nudged past its tolerance before
 * the comparison. */
static double rmsnorm_case(env *e, bool residual, bool corrupt)
{
    int rows = tu_int(1, 70), d = tu_int(1, 400);
    size_t n = (size_t)rows * d;
    float eps = 1e-5f;
    float *x = falloc(n), *a = falloc(n), *w = falloc((size_t)d);
    tu_fill_normal(x, n, 3.0f);
    tu_fill_normal(a, n, 1.0f);
    tu_fill_uniform(w, (size_t)d, 0.5f, 1.5f);
    slm_weight *wt;
    assert_int_equal(e->ops->load_weight(e->be, SLM_TYPE_F32, 1, d, w, &wt), SLM_OK);
    slm_buf *xb = buf_from(e, x, n), *ab = buf_from(e, a, n), *yb = buf_poisoned(e, n);
    step_data sd;
    make_step(&sd, rows, NULL);
    assert_int_equal(e->ops->begin_step(e->be, &sd.s), SLM_OK);
    e->ops->rmsnorm(e->be, at(xb), residual ? at(ab) : (slm_ref){0}, wt, eps, rows, d, at(yb));
    assert_int_equal(e->ops->end_step(e->be), SLM_OK);
    float *gx = download(e, xb, n), *gy = download(e, yb, n);
    double *rx = dalloc(n), *ry = dalloc(n);
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < d; i++) {
            size_t k = (size_t)r * d + i;
            rx[k] = residual ? (double)(x[k] + a[k]) : x[k];
            ss += rx[k] * rx[k];
        }
        double inv = 1.0 / sqrt(ss / d + eps);
        for (int i = 0; i < d; i++)
            ry[(size_t)r * d + i] = rx[(size_t)r * d + i] * inv * w[i];
    }
    /* the residual add is one float addition: exact match (tiny atol only
     * so a -0/+0 difference cannot matter) */
    double *tx = tol_of(rx, n, 1e-30, 0);
    expect_close("rmsnorm residual x", gx, rx, tx, n);
    /* y: float products of a double-accumulated norm, ~3 roundings */
    double *ty = tol_of(ry, n, 1e-6, 2e-6);
    if (corrupt) {
        size_t k = (size_t)tu_int(0, (int)n - 1);
        gy[k] = (float)(ry[k] + 3 * ty[k]);
    }
    size_t wi;
    double worst = worst_ratio(gy, ry, ty, n, &wi);
    if (!corrupt)
        expect_close(residual ? "rmsnorm with residual" : "rmsnorm", gy, ry, ty, n);
    free(tx);
    free(ty);
    free(rx);
    free(ry);
    free(gx);
    free(gy);
    e->ops->buf_free(e->be, xb);
    e->ops->buf_free(e->be, ab);
    e->ops->buf_free(e->be, yb);
    e->ops->weight_free(e->be, wt);
    free(x);
    free(a);
    free(w);
    return worst;
}

static void rmsnorm_both(void **state)
{
    (void)state;
    for (int l = 0; l < n_levels; l++) {
        env e;
        open_level(&e, levels[l]);
        for (int rep = 0; rep < 3; rep++) {
            rmsnorm_case(&e, false, false);
            rmsnorm_case(&e, true, false);
        }
        close_env(&e);
    }
}

/* The comparison must catch a single wrong element and a NaN. */
static void checker_catches_wrong_result(void **state)
{
    (void)state;
    env e;
    open_level(&e, SLM_SIMD_SCALAR);
    assert_true(rmsnorm_case(&e, true, false) <= 1.0);
    assert_true(rmsnorm_case(&e, true, true) > 1.0);
    close_env(&e);
    float got[3] = {1, NAN, 3};
    double ref[3] = {1, 2, 3}, tol[3] = {1, 1, 1};
    size_t i;
    assert_true(isinf(worst_ratio(got, ref, tol, 3, &i)));
    assert_int_equal(i, 1);
}

/* ------------------------------------------------------------------------ */
/* matmul binding                                                            */

/* The activation values the kernels multiply: x itself for float weights,
 * else x through the 8-bit block format of the weight's family. */
static void act_values(slm_type type, const float *x, int64_t n, float *out)
{
    if (type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16) {
        memcpy(out, x, (size_t)n * sizeof(float));
        return;
    }
    slm_type act = slm_type_get((int)type)->block_elems == SLM_QK_K ? SLM_TYPE_Q8_K
                                                                    : SLM_TYPE_Q8_0;
    void *q = malloc(slm_type_row_bytes((int)act, n));
    assert_non_null(q);
    assert_true(slm_quantize_row_ref((int)act, x, q, n));
    assert_true(slm_dequantize_row((int)act, q, out, n));
    free(q);
}

static void matmul_one(env *e, slm_type type, int add_mode)
{
    int bs = slm_type_get((int)type)->block_elems;
    int64_t in = bs == 1 ? tu_int(1, 300) : (int64_t)bs * tu_int(1, bs == 32 ? 9 : 2);
    int64_t out = tu_int(1, 70);
    int rows = tu_int(1, 9);
    size_t rb = slm_type_row_bytes((int)type, in);
    uint8_t *wdata = malloc((size_t)out * rb);
    float *wf = falloc((size_t)(out * in)), *x = falloc((size_t)(rows * in));
    float *xa = falloc((size_t)(rows * in)), *add = falloc((size_t)(rows * out));
    tu_fill_normal(wf, (size_t)(out * in), 1.0f);
    tu_fill_normal(x, (size_t)(rows * in), 1.0f);
    tu_fill_normal(add, (size_t)(rows * out), 1.0f);
    for (int64_t o = 0; o < out; o++) {
        assert_true(slm_quantize_row_ref((int)type, wf + o * in, wdata + o * rb, in));
        assert_true(slm_dequantize_row((int)type, wdata + o * rb, wf + o * in, in));
    }
    for (int r = 0; r < rows; r++)
        act_values(type, x + (size_t)r * in, in, xa + (size_t)r * in);
    slm_weight *w;
    assert_int_equal(e->ops->load_weight(e->be, type, out, in, wdata, &w), SLM_OK);
    size_t ny = (size_t)rows * (size_t)out;
    slm_buf *xb = buf_from(e, x, (size_t)(rows * in));
    /* add_mode: 0 none, 1 separate buffer, 2 add is y itself */
    slm_buf *yb = add_mode == 2 ? buf_from(e, add, ny) : buf_poisoned(e, ny);
    slm_buf *ab = add_mode == 1 ? buf_from(e, add, ny) : NULL;
    step_data sd;
    make_step(&sd, rows, NULL);
    assert_int_equal(e->ops->begin_step(e->be, &sd.s), SLM_OK);
    slm_ref aref = add_mode == 0 ? (slm_ref){0} : add_mode == 1 ? at(ab) : at(yb);
    e->ops->matmul(e->be, w, at(xb), rows, aref, at(yb));
    if (e->ops->end_step(e->be) != SLM_OK)
        fail_msg("matmul %s: %s", slm_type_name((int)type), slm_last_error());
    float *got = download(e, yb, ny);
    double *ref = dalloc(ny), *tol = dalloc(ny);
    for (int r = 0; r < rows; r++) {
        for (int64_t o = 0; o < out; o++) {
            double s = 0, mag = 0;
            for (int64_t i = 0; i < in; i++) {
                double p = (double)wf[o * in + i] * xa[(size_t)r * in + i];
                s += p;
                mag += fabs(p);
            }
            size_t k = (size_t)r * out + o;
            ref[k] = s + (add_mode ? add[k] : 0);
            /* float accumulation over `in` terms of the exact block products */
            tol[k] = 1e-5 * (mag + (add_mode ? fabs(add[k]) : 0)) + 1e-6;
        }
    }
    char what[64];
    snprintf(what, sizeof what, "matmul %s add %d", slm_type_name((int)type), add_mode);
    expect_close(what, got, ref, tol, ny);
    free(ref);
    free(tol);
    free(got);
    e->ops->buf_free(e->be, xb);
    e->ops->buf_free(e->be, yb);
    e->ops->buf_free(e->be, ab);
    e->ops->weight_free(e->be, w);
    free(wdata);
    free(wf);
    free(x);
    free(xa);
    free(add);
}

static void matmul_binding(void **state)
{
    (void)state;
    const slm_type types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0, SLM_TYPE_Q4_0,
                              SLM_TYPE_Q4_K, SLM_TYPE_Q6_K};
    for (int l = 0; l < n_levels; l++) {
        env e;
        open_level(&e, levels[l]);
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
            for (int mode = 0; mode < 3; mode++)
                matmul_one(&e, types[k], mode);
        close_env(&e);
    }
}

/* ------------------------------------------------------------------------ */
/* rope                                                                      */

static void rope_one(env *e, slm_rope_mode mode, bool factors)
{
    int n = tu_int(1, 40), n_heads = tu_int(1, 5), hd = 2 * tu_int(2, 40);
    int n_rot = 2 * tu_int(1, hd / 2); /* partial rotary when < hd */
    int width = n_heads * hd;
    int stride = width + tu_int(0, 17); /* a column range of a wider row */
    size_t total = (size_t)(n - 1) * stride + width;
    float *x = falloc(total), ff[64];
    tu_fill_uniform(x, total, -2, 2);
    for (int i = 0; i < n_rot / 2; i++)
        ff[i] = tu_uniform(1.0f, 8.0f);
    slm_rope_params p = {.mode = mode, .n_rot = n_rot, .freq_base = tu_uniform(5000, 1e6f),
                         .freq_scale = tu_uniform(0.25f, 1.0f),
                         .freq_factors = factors ? ff : NULL};
    step_data sd;
    make_step(&sd, n, NULL);
    for (int t = 0; t < n; t++)
        sd.pos[t] = tu_int(0, 8000);
    slm_buf *xb = buf_from(e, x, total);
    assert_int_equal(e->ops->begin_step(e->be, &sd.s), SLM_OK);
    e->ops->rope(e->be, at(xb), stride, n_heads, hd, &p);
    assert_int_equal(e->ops->end_step(e->be), SLM_OK);
    float *got = download(e, xb, total);
    double *ref = dalloc(total);
    for (size_t i = 0; i < total; i++)
        ref[i] = x[i]; /* everything not rotated must come back untouched */
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < n_heads; h++) {
            size_t base = (size_t)t * stride + (size_t)h * hd;
            for (int i = 0; i < n_rot / 2; i++) {
                double th = sd.pos[t] * (double)p.freq_scale *
                            pow((double)p.freq_base, -2.0 * i / n_rot);
                if (factors)
                    th /= ff[i];
                size_t a = base + (mode == SLM_ROPE_NEOX ? (size_t)i : 2 * (size_t)i);
                size_t b = a + (mode == SLM_ROPE_NEOX ? (size_t)n_rot / 2 : 1);
                ref[a] = x[a] * cos(th) - x[b] * sin(th);
                ref[b] = x[a] * sin(th) + x[b] * cos(th);
            }
        }
    }
    /* cos/sin rounded to float, then two float products and a sum: a few
     * ulps of |x| <= 2. Elements that must be untouched are also checked
     * bit for bit below. */
    double *tol = tol_of(ref, total, 2e-6, 0);
    char what[64];
    snprintf(what, sizeof what, "rope %s n_rot %d/%d%s", mode == SLM_ROPE_NEOX ? "neox" : "norm",
             n_rot, hd, factors ? " freq factors" : "");
    expect_close(what, got, ref, tol, total);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < n_heads; h++)
            for (int i = n_rot; i < hd; i++) {
                size_t k = (size_t)t * stride + (size_t)h * hd + i;
                assert_memory_equal(&got[k], &x[k], sizeof(float));
            }
    for (int t = 0; t + 1 < n; t++)
        for (int i = width; i < stride; i++) {
            size_t k = (size_t)t * stride + i;
            assert_memory_equal(&got[k], &x[k], sizeof(float));
        }
    free(tol);
    free(ref);
    free(got);
    free(x);
    e->ops->buf_free(e->be, xb);
}

static void rope_modes(void **state)
{
    (void)state;
    for (int l = 0; l < n_levels; l++) {
        env e;
        open_level(&e, levels[l]);
        for (int rep = 0; rep < 3; rep++) {
            rope_one(&e, SLM_ROPE_NORM, false);
            rope_one(&e, SLM_ROPE_NEOX, false);
            rope_one(&e, SLM_ROPE_NORM, true);
            rope_one(&e, SLM_ROPE_NEOX, true);
        }
        close_env(&e);
    }
}

/* ------------------------------------------------------------------------ */
/* swiglu, add, scale, get_rows                                              */

static void swiglu_one(env *e, bool fused)
{
    int rows = tu_int(1, 40), ff = tu_int(1, 700);
    int stride = fused ? 2 * ff : ff + tu_int(0, 5);
    size_t extent = (size_t)(rows - 1) * stride + ff, ny = (size_t)rows * ff;
    float *g = falloc(fused ? extent + ff : extent), *u = falloc(extent);
    tu_fill_normal(g, fused ? extent + ff : extent, 3.0f);
    tu_fill_normal(u, extent, 1.0f);
    slm_buf *gb = buf_from(e, g, fused ? extent + ff : extent);
    slm_buf *ub = fused ? NULL : buf_from(e, u, extent);
    slm_buf *yb = buf_poisoned(e, ny);
    slm_ref gr = at(gb), ur = fused ? (slm_ref){gb, (size_t)ff * 4} : at(ub);
    const float *uv = fused ? g + ff : u;
    step_data sd;
    make_step(&sd, rows, NULL);
    assert_int_equal(e->ops->begin_step(e->be, &sd.s), SLM_OK);
    e->ops->swiglu(e->be, gr, ur, stride, rows, ff, at(yb));
    assert_int_equal(e->ops->end_step(e->be), SLM_OK);
    float *got = download(e, yb, ny);
    double *ref = dalloc(ny);
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < ff; i++) {
            double gv = g[(size_t)r * stride + i], uu = uv[(size_t)r * stride + i];
            ref[(size_t)r * ff + i] = gv / (1 + exp(-gv)) * uu;
        }
    /* expf and three float operations: a few ulps */
    double *tol = tol_of(ref, ny, 1e-6, 4e-6);
    expect_close(fused ? "swiglu fused gate|up" : "swiglu", got, ref, tol, ny);
    free(tol);
    free(ref);
    free(got);
    free(g);
    free(u);
    e->ops->buf_free(e->be, gb);
    e->ops->buf_free(e->be, ub);
    e->ops->buf_free(e->be, yb);
}

static void elementwise_one(env *e)
{
    size_t n = (size_t)tu_int(1, 40000);
    float *a = falloc(n), *b = falloc(n);
    tu_fill_normal(a, n, 2.0f);
    tu_fill_normal(b, n, 2.0f);
    float s = tu_uniform(-3, 3);
    slm_buf *ab = buf_from(e, a, n), *bb = buf_from(e, b, n), *yb = buf_poisoned(e, n);
    step_data sd;
    make_step(&sd, 1, NULL);
    assert_int_equal(e->ops->begin_step(e->be, &sd.s), SLM_OK);
    e->ops->add(e->be, at(ab), at(bb), n, at(yb)); /* y = a + b */
    e->ops->add(e->be, at(ab), at(bb), n, at(ab)); /* a += b, aliased */
    e->ops->scale(e->be, at(bb), s, n);            /* b *= s */
    assert_int_equal(e->ops->end_step(e->be), SLM_OK);
    float *gy = download(e, yb, n), *ga = download(e, ab, n), *gb = download(e, bb, n);
    double *rsum = dalloc(n), *rs = dalloc(n);
    for (size_t i = 0; i < n; i++) {
        rsum[i] = (double)a[i] + b[i];
        rs[i] = (double)b[i] * s;
    }
    /* one float rounding of the exact result: half an ulp */
    double *t1 = tol_of(rsum, n, 1e-30, 6e-8), *t2 = tol_of(rs, n, 1e-30, 6e-8);
    expect_close("add", gy, rsum, t1, n);
    expect_close("add in place", ga, rsum, t1, n);
    expect_close("scale", gb, rs, t2, n);
    free(t1);
    free(t2);
    free(rsum);
    free(rs);
    free(gy);
    free(ga);
    free(gb);
    free(a);
    free(b);
    e->ops->buf_free(e->be, ab);
    e->ops->buf_free(e->be, bb);
    e->ops->buf_free(e->be, yb);
}

static void get_rows_one(env *e)
{
    int n = tu_int(1, 60), d = tu_int(1, 300), nl = tu_int(1, 8);
    float *x = falloc((size_t)n * d);
    tu_fill_normal(x, (size_t)n * d, 1.0f);
    int32_t rows[8];
    for (int i = 0; i < nl; i++)
        rows[i] = tu_int(0, n - 1);
    step_data sd;
    make_step(&sd, n, NULL);
    sd.s.n_logit_rows = nl;
    sd.s.logit_rows = rows;
    slm_buf *xb = buf_from(e, x, (size_t)n * d), *yb = buf_poisoned(e, (size_t)nl * d);
    assert_int_equal(e->ops->begin_step(e->be, &sd.s), SLM_OK);
    e->ops->get_rows(e->be, at(xb), d, at(yb));
    assert_int_equal(e->ops->end_step(e->be), SLM_OK);
    float *got = download(e, yb, (size_t)nl * d);
    for (int i = 0; i < nl; i++) /* a copy: bit-exact */
        assert_memory_equal(got + (size_t)i * d, x + (size_t)rows[i] * d, (size_t)d * 4);
    free(got);
    free(x);
    e->ops->buf_free(e->be, xb);
    e->ops->buf_free(e->be, yb);
}

static void small_ops(void **state)
{
    (void)state;
    for (int l = 0; l < n_levels; l++) {
        env e;
        open_level(&e, levels[l]);
        for (int rep = 0; rep < 3; rep++) {
            swiglu_one(&e, true);
            swiglu_one(&e, false);
            elementwise_one(&e);
            get_rows_one(&e);
        }
        close_env(&e);
    }
}

/* ------------------------------------------------------------------------ */
/* error paths                                                               */

static void bad_token_then_recovers(void **state)
{
    (void)state;
    env e;
    open_level(&e, slm_simd_best());
    int64_t rows = 10, cols = 64;
    float *table = falloc((size_t)(rows * cols));
    tu_fill_normal(table, (size_t)(rows * cols), 1.0f);
    slm_weight *w;
    assert_int_equal(e.ops->load_weight(e.be, SLM_TYPE_F32, rows, cols, table, &w), SLM_OK);
    slm_buf *y = buf_poisoned(&e, 3 * (size_t)cols);
    const int32_t bad_ids[][3] = {{1, 10, 2}, {-1, 0, 0}, {0, 1, 1 << 30}};
    for (int k = 0; k < 3; k++) {
        step_data sd;
        make_step(&sd, 3, bad_ids[k]);
        assert_int_equal(e.ops->begin_step(e.be, &sd.s), SLM_OK);
        e.ops->embed(e.be, w, at(y));
        e.ops->scale(e.be, at(y), 2.0f, 3 * (size_t)cols); /* skipped after the failure */
        assert_int_equal(e.ops->end_step(e.be), SLM_STATUS_INVALID_ARGUMENT);
        assert_non_null(strstr(slm_last_error(), "token"));
    }
    /* the next step works */
    int32_t ids[3] = {9, 0, 4};
    step_data sd;
    make_step(&sd, 3, ids);
    assert_int_equal(e.ops->begin_step(e.be, &sd.s), SLM_OK);
    e.ops->embed(e.be, w, at(y));
    assert_int_equal(e.ops->end_step(e.be), SLM_OK);
    float *got = download(&e, y, 3 * (size_t)cols);
    for (int t = 0; t < 3; t++)
        assert_memory_equal(got + t * cols, table + ids[t] * cols, (size_t)cols * 4);
    free(got);
    e.ops->buf_free(e.be, y);
    e.ops->weight_free(e.be, w);
    free(table);
    close_env(&e);
}

static void bad_arguments_fail_cleanly(void **state)
{
    (void)state;
    env e;
    open_level(&e, slm_simd_best());
    /* unsupported weight type, named */
    uint8_t dummy[256] = {0};
    slm_weight *w = NULL;
    assert_int_equal(e.ops->load_weight(e.be, (slm_type)16, 1, 256, dummy, &w),
                     SLM_STATUS_UNSUPPORTED);
    assert_non_null(strstr(slm_last_error(), slm_type_name(16)));
    assert_null(w);
    assert_int_equal(e.ops->load_weight(e.be, SLM_TYPE_Q8_0, 1, 40, dummy, &w),
                     SLM_STATUS_INVALID_ARGUMENT); /* ragged columns */
    assert_false(e.ops->supports(e.be, SLM_OP_MATMUL, (slm_type)16));
    assert_true(e.ops->supports(e.be, SLM_OP_MATMUL, SLM_TYPE_Q4_K));
    assert_true(e.ops->supports(e.be, SLM_OP_EMBED, SLM_TYPE_Q8_0));

    /* copies past a buffer */
    slm_buf *b;
    assert_int_equal(e.ops->buf_alloc(e.be, 100, &b), SLM_OK);
    float tmp[32] = {0};
    assert_int_equal(e.ops->upload(e.be, (slm_ref){b, 90}, tmp, 16), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(e.ops->download(e.be, tmp, (slm_ref){b, 0}, 101),
                     SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(e.ops->upload(e.be, (slm_ref){b, SIZE_MAX}, tmp, 2),
                     SLM_STATUS_INVALID_ARGUMENT);

    /* an op reaching past its buffer fails at end_step, writes nothing */
    step_data sd;
    make_step(&sd, 2, NULL);
    assert_int_equal(e.ops->begin_step(e.be, &sd.s), SLM_OK);
    e.ops->scale(e.be, (slm_ref){b, 8}, 2.0f, 24);
    assert_int_equal(e.ops->end_step(e.be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "scale"));

    /* matmul with more rows than begin_step sized scratch for */
    float wq[64];
    tu_fill_normal(wq, 64, 1.0f);
    uint8_t wdata[2 * 34];
    assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_0, wq, wdata, 64));
    slm_weight *wt;
    assert_int_equal(e.ops->load_weight(e.be, SLM_TYPE_Q8_0, 1, 64, wdata, &wt), SLM_OK);
    slm_buf *big;
    assert_int_equal(e.ops->buf_alloc(e.be, 4096 * 4, &big), SLM_OK);
    make_step(&sd, 1, NULL);
    assert_int_equal(e.ops->begin_step(e.be, &sd.s), SLM_OK);
    e.ops->matmul(e.be, wt, (slm_ref){big, 0}, 40, (slm_ref){0}, (slm_ref){big, 64 * 40 * 4});
    assert_int_equal(e.ops->end_step(e.be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "scratch"));

    /* a bad step fails begin_step and end_step; ops in between do nothing */
    int32_t lr[1] = {5};
    make_step(&sd, 2, NULL);
    sd.s.n_logit_rows = 1;
    sd.s.logit_rows = lr;
    assert_int_equal(e.ops->begin_step(e.be, &sd.s), SLM_STATUS_INVALID_ARGUMENT);
    e.ops->scale(e.be, (slm_ref){b, 0}, 2.0f, 4);
    assert_int_equal(e.ops->end_step(e.be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "logit row"));
    assert_int_equal(e.ops->begin_step(e.be, NULL), SLM_STATUS_INVALID_ARGUMENT);
    assert_int_equal(e.ops->end_step(e.be), SLM_STATUS_INVALID_ARGUMENT);
    /* end_step without begin_step */
    assert_int_equal(e.ops->end_step(e.be), SLM_STATUS_INVALID_ARGUMENT);
    /* rope with n_rot past head_dim */
    make_step(&sd, 1, NULL);
    slm_rope_params p = {.mode = SLM_ROPE_NEOX, .n_rot = 10, .freq_base = 1e4f, .freq_scale = 1};
    assert_int_equal(e.ops->begin_step(e.be, &sd.s), SLM_OK);
    e.ops->rope(e.be, (slm_ref){b, 0}, 8, 1, 8, &p);
    assert_int_equal(e.ops->end_step(e.be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "n_rot"));

    e.ops->weight_free(e.be, wt);
    e.ops->weight_free(e.be, NULL);
    e.ops->buf_free(e.be, big);
    e.ops->buf_free(e.be, b);
    e.ops->buf_free(e.be, NULL);
    close_env(&e);
}

int main(void)
{
    tu_seed();
    for (int i = 0; i < SLM_SIMD_COUNT; i++)
        if (slm_simd_available((slm_simd)i))
            levels[n_levels++] = (slm_simd)i;
    for (int i = 0; i < n_levels; i++)
        fprintf(stderr, "testing SIMD level %s\n", slm_simd_name(levels[i]));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(simd_levels_parse),
        cmocka_unit_test(embed_types),
        cmocka_unit_test(rmsnorm_both),
        cmocka_unit_test(checker_catches_wrong_result),
        cmocka_unit_test(matmul_binding),
        cmocka_unit_test(rope_modes),
        cmocka_unit_test(small_ops),
        cmocka_unit_test(bad_token_then_recovers),
        cmocka_unit_test(bad_arguments_fail_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
