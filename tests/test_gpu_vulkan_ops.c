/*
 * test_gpu_vulkan_ops.c — every op of the Vulkan backend (vulkan/) against
 * a scalar double-precision reference, run for real on whatever Vulkan
 * device is present (Mesa lavapipe in CI). Without a device each case is
 * skipped visibly ("skipped: no device").
 *
 * Inputs are fresh random values at ragged sizes; weights are made with
 * slm_quantize_row_ref and the reference uses their slm_dequantize_row
 * values (the backend multiplies f32 activations by dequantized weights, so
 * the only error is f32 rounding and summation order). Every output buffer
 * is poisoned (NaN) on the device before the op runs, so an unwritten
 * element fails. Tolerances are stated beside each comparison.
 *
 * Covered: matmul for all 15 weight types on both kernels (matrix-vector
 * for rows ≤ 4, tiled for more) and both reductions (subgroup and shared
 * memory, the latter by reopening with SLM_VK_NO_SUBGROUP=1), with and
 * without the fused add; embed; rmsnorm with and without the residual add;
 * rope NORM/NEOX with strides, partial rotation, scaling and factors;
 * kv_store + paged causal GQA attention with F32 and F16 pools across two
 * steps (a prefill with the single-pass kernel, then a decode step with
 * split-K and merge); swiglu; add; scale; get_rows; error reporting; and a check that
 * the comparison itself fails on a wrong result.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "fp16.h"
#include "quant.h"
#include "slm.h"
#ifdef SLM_HAVE_VULKAN
#include "../vulkan/backend_vulkan.h"
#endif

static slm_backend *g_be;       /* NULL: no device, every case skips */
static const slm_backend_ops *g_ops;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

#define NEED_DEVICE()                                                                              \
    do {                                                                                           \
        if (!g_be) {                                                                               \
            fprintf(stderr, "skipped: no device\n");                                               \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------------ */
/* device helpers                                                            */

/* A device buffer holding n floats: `init` when given, NaN otherwise. */
static slm_buf *dev_floats(slm_backend *be, size_t n, const float *init)
{
    slm_buf *b = NULL;
    assert_int_equal(g_ops->buf_alloc(be, n * sizeof(float), &b), SLM_OK);
    float *tmp = xmalloc(n * sizeof(float));
    if (init)
        memcpy(tmp, init, n * sizeof(float));
    else
        tu_poison(tmp, n);
    assert_int_equal(g_ops->upload(be, (slm_ref){b, 0}, tmp, n * sizeof(float)), SLM_OK);
    free(tmp);
    return b;
}

static float *dev_read(slm_backend *be, slm_buf *b, size_t n)
{
    float *out = xmalloc(n * sizeof(float));
    assert_int_equal(g_ops->download(be, out, (slm_ref){b, 0}, n * sizeof(float)), SLM_OK);
    return out;
}

/* A step of n tokens with no per-token data (for ops that need none). */
static void begin_plain(slm_backend *be, int n)
{
    slm_step s = {.n_tokens = n};
    assert_int_equal(g_ops->begin_step(be, &s), SLM_OK);
}

static void end_ok(slm_backend *be)
{
    slm_status st = g_ops->end_step(be);
    if (st != SLM_OK)
        fprintf(stderr, "end_step: %s\n", slm_last_error());
    assert_int_equal(st, SLM_OK);
}

static const slm_ref NOREF = {NULL, 0};

/* ------------------------------------------------------------------------ */
/* matmul                                                                    */

static const slm_type all_types[] = {
    SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1,
    SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_IQ4_NL, SLM_TYPE_Q2_K,
    SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_XS,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* Random weights of `type`: raw rows in *raw, their values in *deq. */
static void make_weight(slm_type type, int64_t rows, int64_t cols, void **raw, float **deq)
{
    size_t rb = slm_type_row_bytes(type, cols);
    assert_true(rb > 0);
    *raw = xmalloc(rb * (size_t)rows);
    *deq = xmalloc((size_t)(rows * cols) * sizeof(float));
    float *src = xmalloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        tu_fill_normal(src, (size_t)cols, 1.0f);
        assert_true(slm_quantize_row_ref(type, src, (uint8_t *)*raw + (size_t)r * rb, cols));
        assert_true(slm_dequantize_row(type, (uint8_t *)*raw + (size_t)r * rb, *deq + r * cols, cols));
    }
    free(src);
}

/* A ragged column count for type: any size for 1-element types, else a
 * random number of blocks. */
static int64_t ragged_cols(slm_type type)
{
    int qk = slm_type_get(type)->block_elems;
    if (qk == 1)
        return tu_int(1, 300);
    return (int64_t)qk * tu_int(1, qk == 32 ? 9 : 2);
}

static void check_matmul_shape(slm_backend *be, slm_type type, int64_t out, int64_t cols, int rows,
                               bool with_add)
{
    void *raw;
    float *w;
    make_weight(type, out, cols, &raw, &w);
    slm_weight *wt = NULL;
    assert_int_equal(g_ops->load_weight(be, type, out, cols, raw, &wt), SLM_OK);
    size_t nx = (size_t)rows * (size_t)cols, ny = (size_t)rows * (size_t)out;
    float *x = xmalloc(nx * sizeof(float)), *add = xmalloc(ny * sizeof(float));
    tu_fill_uniform(x, nx, -1.0f, 1.0f);
    tu_fill_uniform(add, ny, -2.0f, 2.0f);
    /* Odd row counts read x one float past an aligned address, so the
     * kernels' unaligned path for x runs too. */
    size_t xoff = rows % 2 ? 1 : 0;
    float *xs = xmalloc((nx + 1) * sizeof(float));
    xs[0] = 0.0f;
    memcpy(xs + xoff, x, nx * sizeof(float));
    slm_buf *bx = dev_floats(be, nx + 1, xs), *by = dev_floats(be, ny, NULL);
    free(xs);
    slm_buf *ba = with_add ? dev_floats(be, ny, add) : NULL;
    begin_plain(be, rows);
    g_ops->matmul(be, wt, (slm_ref){bx, xoff * sizeof(float)}, rows, ba ? (slm_ref){ba, 0} : NOREF,
                  (slm_ref){by, 0});
    end_ok(be);
    float *y = dev_read(be, by, ny);
    for (int t = 0; t < rows; t++) {
        for (int64_t o = 0; o < out; o++) {
            double s = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                double p = (double)w[o * cols + c] * x[t * cols + c];
                s += p;
                mag += fabs(p);
            }
            if (with_add) {
                s += add[t * out + o];
                mag += fabs(add[t * out + o]);
            }
            float got = y[t * out + o];
            /* f32 products summed in a different order: ≤ 1e-5 of Σ|w·x| (+|add|) plus a floor. */
            if (!(fabs(got - s) <= 1e-5 * mag + 1e-6)) {
                fprintf(stderr, "matmul %s %lldx%lld rows %d: y[%d][%lld] = %g, want %g\n",
                        slm_type_name(type), (long long)out, (long long)cols, rows, t,
                        (long long)o, (double)got, s);
                fail();
            }
        }
    }
    free(y);
    g_ops->buf_free(be, bx);
    g_ops->buf_free(be, by);
    g_ops->buf_free(be, ba);
    g_ops->weight_free(be, wt);
    free(x);
    free(add);
    free(w);
    free(raw);
}

static void check_matmul(slm_backend *be, slm_type type, int rows, bool with_add)
{
    check_matmul_shape(be, type, tu_int(3, 45), ragged_cols(type), rows, with_add);
}

/* A second handle on the device, opened with env var `name` set to `value`. */
static slm_backend *open_with(const char *name, const char *value)
{
    setenv(name, value, 1);
    slm_backend_params p = {.size = sizeof p, .device_index = SLM_DEVICE_ANY};
    slm_backend *be = NULL;
    slm_status st = g_ops->open(&p, &be);
    unsetenv(name);
    assert_int_equal(st, SLM_OK);
    return be;
}

/* Every weight type through both matmul families: the register-tiled
 * kernel CPU implementations run (SLM_VK_MATMUL=direct), and the GPU pair,
 * matrix-vector for up to 4 rows and shared-memory tiles above. */
static void test_matmul_all_types(void **state)
{
    (void)state;
    NEED_DEVICE();
    slm_backend *fam[2] = {open_with("SLM_VK_MATMUL", "direct"), open_with("SLM_VK_MATMUL", "gpu")};
    for (size_t i = 0; i < N_TYPES; i++) {
        assert_true(g_ops->supports(g_be, SLM_OP_MATMUL, all_types[i]));
        for (int f = 0; f < 2; f++) {
            check_matmul(fam[f], all_types[i], 1, false);       /* decode: matrix-vector */
            check_matmul(fam[f], all_types[i], 3, true);        /* still matrix-vector, fused add */
            check_matmul(fam[f], all_types[i], tu_int(5, 37), i % 2 == 0); /* tiled */
        }
    }
    assert_false(g_ops->supports(g_be, SLM_OP_MATMUL, SLM_TYPE_Q8_K));
    g_ops->close(fam[0]);
    g_ops->close(fam[1]);
}

/* The shared-memory reduction path, on a backend opened without subgroups. */
static void test_matmul_shared_reduction(void **state)
{
    (void)state;
    NEED_DEVICE();
    setenv("SLM_VK_MATMUL", "gpu", 1);
    slm_backend *be = open_with("SLM_VK_NO_SUBGROUP", "1");
    unsetenv("SLM_VK_MATMUL");
    assert_null(strstr(g_ops->describe(be), "subgroup"));
    static const slm_type some[] = {SLM_TYPE_F32, SLM_TYPE_Q4_1, SLM_TYPE_Q8_0, SLM_TYPE_Q4_K,
                                    SLM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof some / sizeof some[0]; i++)
        check_matmul(be, some[i], tu_int(1, 4), true);
    g_ops->close(be);
}

/* ------------------------------------------------------------------------ */
/* embed, rmsnorm                                                            */

/* Embeds n random ids of a vocab × cols table of `type` and checks the rows. */
static void check_embed(slm_backend *be, slm_type type, int64_t vocab, int64_t cols)
{
    void *raw;
    float *w;
    make_weight(type, vocab, cols, &raw, &w);
    slm_weight *wt = NULL;
    assert_int_equal(g_ops->load_weight(be, type, vocab, cols, raw, &wt), SLM_OK);
    int n = tu_int(1, 9);
    int32_t ids[9];
    for (int t = 0; t < n; t++)
        ids[t] = t == 0 ? (int32_t)vocab - 1 : tu_int(0, (int)vocab - 1);
    slm_buf *by = dev_floats(be, (size_t)(n * cols), NULL);
    slm_step s = {.n_tokens = n, .token_ids = ids};
    assert_int_equal(g_ops->begin_step(be, &s), SLM_OK);
    g_ops->embed(be, wt, (slm_ref){by, 0});
    end_ok(be);
    float *y = dev_read(be, by, (size_t)(n * cols));
    float *ref = xmalloc((size_t)(n * cols) * sizeof(float));
    for (int t = 0; t < n; t++)
        memcpy(ref + t * cols, w + ids[t] * cols, (size_t)cols * sizeof(float));
    /* The same block formula in f32: equal up to one rounding of d·scale·q. */
    tu_assert_close("embed", y, ref, (size_t)(n * cols), 1e-6, 1e-6);
    free(ref);
    free(y);
    g_ops->buf_free(be, by);
    g_ops->weight_free(be, wt);
    free(w);
    free(raw);
}

static void test_embed(void **state)
{
    (void)state;
    NEED_DEVICE();
    static const slm_type types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0, SLM_TYPE_Q4_1,
                                     SLM_TYPE_Q5_0, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        check_embed(g_be, types[i], tu_int(2, 29), ragged_cols(types[i]));
}

/* Weights larger than one bindable buffer load as several parts of whole
 * rows (the device's limit lowered to 64 KiB with SLM_VK_MAX_BUFFER), and
 * matmul (both families) and embed run over every part. */
static void test_split_weights(void **state)
{
    (void)state;
    NEED_DEVICE();
    setenv("SLM_VK_MAX_BUFFER", "65536", 1);
    slm_backend *fam[2] = {open_with("SLM_VK_MATMUL", "direct"), open_with("SLM_VK_MATMUL", "gpu")};
    unsetenv("SLM_VK_MAX_BUFFER");
    static const slm_type types[] = {SLM_TYPE_F16, SLM_TYPE_Q8_0, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int64_t cols = 256 * tu_int(1, 2), out = tu_int(600, 1400);
        assert_true(slm_type_row_bytes(types[i], cols) * (size_t)out > 65536);
        for (int f = 0; f < 2; f++) {
            check_matmul_shape(fam[f], types[i], out, cols, 1, true);
            check_matmul_shape(fam[f], types[i], out, cols, tu_int(5, 8), false);
        }
        check_embed(fam[0], types[i], out, cols);
    }
    /* Beyond VK_MAX_PARTS parts: refused with the sizes named. */
    size_t rb = slm_type_row_bytes(SLM_TYPE_F32, 4096);
    void *big = calloc(65 * (65536 / rb + 1), rb);
    slm_weight *wt = NULL;
    assert_int_equal(g_ops->load_weight(fam[0], SLM_TYPE_F32, 65 * (65536 / (int64_t)rb + 1), 4096,
                                        big, &wt),
                     SLM_STATUS_UNSUPPORTED);
    assert_non_null(strstr(slm_last_error(), "largest size this device can bind"));
    free(big);
    g_ops->close(fam[0]);
    g_ops->close(fam[1]);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int with_add = 0; with_add < 2; with_add++) {
        int rows = tu_int(1, 7), d = tu_int(1, 700);
        size_t n = (size_t)rows * (size_t)d;
        float *x = xmalloc(n * sizeof(float)), *a = xmalloc(n * sizeof(float));
        float *w = xmalloc((size_t)d * sizeof(float));
        tu_fill_normal(x, n, 2.0f);
        tu_fill_normal(a, n, 1.0f);
        tu_fill_uniform(w, (size_t)d, 0.5f, 1.5f);
        slm_weight *wt = NULL;
        assert_int_equal(g_ops->load_weight(g_be, SLM_TYPE_F32, 1, d, w, &wt), SLM_OK);
        slm_buf *bx = dev_floats(g_be, n, x), *ba = dev_floats(g_be, n, a);
        slm_buf *by = dev_floats(g_be, n, NULL);
        float eps = 1e-5f;
        begin_plain(g_be, rows);
        g_ops->rmsnorm(g_be, (slm_ref){bx, 0}, with_add ? (slm_ref){ba, 0} : NOREF, wt, eps, rows,
                       d, (slm_ref){by, 0});
        end_ok(g_be);
        float *y = dev_read(g_be, by, n), *xs = dev_read(g_be, bx, n);
        float *ref = xmalloc(n * sizeof(float)), *xref = xmalloc(n * sizeof(float));
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < d; i++) {
                xref[r * d + i] = x[r * d + i] + (with_add ? a[r * d + i] : 0.0f);
                ss += (double)xref[r * d + i] * xref[r * d + i];
            }
            double inv = 1.0 / sqrt(ss / d + eps);
            for (int i = 0; i < d; i++)
                ref[r * d + i] = (float)(xref[r * d + i] * inv * w[i]);
        }
        /* The residual sum is one f32 add: exact match. */
        tu_assert_close("rmsnorm x+add", xs, xref, n, 0, 0);
        /* f32 sum of squares and inversesqrt (a few ulp): 1e-5 relative. */
        tu_assert_close("rmsnorm y", y, ref, n, 1e-6, 1e-5);
        free(ref);
        free(xref);
        free(y);
        free(xs);
        g_ops->buf_free(g_be, bx);
        g_ops->buf_free(g_be, ba);
        g_ops->buf_free(g_be, by);
        g_ops->weight_free(g_be, wt);
        free(x);
        free(a);
        free(w);
    }
}

/* ------------------------------------------------------------------------ */
/* rope                                                                      */

static void test_rope(void **state)
{
    (void)state;
    NEED_DEVICE();
    for (int mode = 0; mode < 2; mode++) {
        int n = tu_int(1, 11), n_heads = tu_int(1, 5), head_dim = 2 * tu_int(2, 40);
        int width = n_heads * head_dim, stride = width + tu_int(0, 9);
        slm_rope_params p = {.mode = mode ? SLM_ROPE_NEOX : SLM_ROPE_NORM,
                             .n_rot = 2 * tu_int(1, head_dim / 2),
                             .freq_base = tu_uniform(5000.0f, 1e6f),
                             .freq_scale = mode ? 0.25f : 1.0f};
        float ff[64];
        for (int i = 0; i < p.n_rot / 2; i++)
            ff[i] = tu_uniform(1.0f, 8.0f);
        p.freq_factors = mode ? ff : NULL;
        size_t total = (size_t)n * (size_t)stride;
        float *x = xmalloc(total * sizeof(float));
        tu_fill_normal(x, total, 1.0f);
        int32_t pos[11];
        for (int t = 0; t < n; t++)
            pos[t] = tu_int(0, 4000);
        slm_buf *bx = dev_floats(g_be, total, x);
        slm_step s = {.n_tokens = n, .positions = pos};
        assert_int_equal(g_ops->begin_step(g_be, &s), SLM_OK);
        g_ops->rope(g_be, (slm_ref){bx, 0}, stride, n_heads, head_dim, &p);
        g_ops->rope(g_be, (slm_ref){bx, 0}, stride, n_heads, head_dim, &p); /* twice: table reuse */
        end_ok(g_be);
        float *y = dev_read(g_be, bx, total);
        float *ref = xmalloc(total * sizeof(float));
        memcpy(ref, x, total * sizeof(float));
        int half = p.n_rot / 2;
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < n_heads; h++) {
                float *v = ref + (size_t)t * stride + (size_t)h * head_dim;
                for (int i = 0; i < half; i++) {
                    double th = pos[t] * (double)p.freq_scale * pow(p.freq_base, -2.0 * i / p.n_rot);
                    if (p.freq_factors)
                        th /= ff[i];
                    th *= 2; /* applied twice */
                    int a = mode ? i : 2 * i, b = mode ? i + half : 2 * i + 1;
                    double x0 = v[a], x1 = v[b];
                    v[a] = (float)(x0 * cos(th) - x1 * sin(th));
                    v[b] = (float)(x0 * sin(th) + x1 * cos(th));
                }
            }
        }
        /* f32 angle pos·inv_freq (relative error ~1e-7 of up to 4000 rad) and
         * f32 cos/sin: ≤ 2e-3 absolute on unit-scale values. Padding and
         * unrotated dimensions must be untouched (they are compared too). */
        tu_assert_close("rope", y, ref, total, 2e-3, 0);
        free(ref);
        free(y);
        free(x);
        g_ops->buf_free(g_be, bx);
    }
}

/* ------------------------------------------------------------------------ */
/* kv_store + attention                                                      */

typedef struct attn_case {
    int n_heads, n_kv, hd, bs, n_blocks;
    int n_seqs;
    int len[2];         /* tokens per sequence (all in the first step) */
    int32_t table[2][32]; /* block ids of each sequence */
    float *k, *v;       /* [seq][pos][n_kv·hd], as stored (f16-rounded for F16) */
} attn_case;

static float store_round(slm_type t, float x) { return t == SLM_TYPE_F16 ? slm_f16_to_f32(slm_f32_to_f16(x)) : x; }

/* Reference attention of one token at `pos` of sequence q over its stored K/V. */
static void attn_ref(const attn_case *c, int seq, int pos, const float *q, float scale, float *out)
{
    int kvw = c->n_kv * c->hd, grp = c->n_heads / c->n_kv;
    const float *K = c->k + (size_t)seq * 256 * kvw, *V = c->v + (size_t)seq * 256 * kvw;
    double *sc = xmalloc((size_t)(pos + 1) * sizeof(double));
    for (int h = 0; h < c->n_heads; h++) {
        int kh = h / grp;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j <= pos; j++) {
            double s = 0;
            for (int d = 0; d < c->hd; d++)
                s += (double)q[h * c->hd + d] * K[(size_t)j * kvw + kh * c->hd + d];
            sc[j] = s * scale;
            if (sc[j] > mx)
                mx = sc[j];
        }
        for (int j = 0; j <= pos; j++)
            sum += (sc[j] = exp(sc[j] - mx));
        for (int d = 0; d < c->hd; d++) {
            double o = 0;
            for (int j = 0; j <= pos; j++)
                o += sc[j] * V[(size_t)j * kvw + kh * c->hd + d];
            out[h * c->hd + d] = (float)(o / sum);
        }
    }
    free(sc);
}

static void check_attention(slm_type kvtype, int hd)
{
    attn_case c = {.n_kv = tu_int(1, 2), .hd = hd, .bs = tu_int(3, 6), .n_seqs = 2};
    c.n_heads = c.n_kv * tu_int(1, 3);
    c.len[0] = tu_int(1, 20);
    c.len[1] = tu_int(65, 90); /* more than one 64-position tile */
    int need0 = (c.len[0] + c.bs) / c.bs, need1 = (c.len[1] + 1 + c.bs - 1) / c.bs + 1;
    c.n_blocks = need0 + need1 + 3;
    assert_true(need0 <= 32 && need1 <= 32);
    /* Shuffled block ids so the tables are not contiguous. */
    int32_t *perm = xmalloc((size_t)c.n_blocks * sizeof(int32_t));
    for (int i = 0; i < c.n_blocks; i++)
        perm[i] = i;
    for (int i = c.n_blocks - 1; i > 0; i--) {
        int j = tu_int(0, i);
        int32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (int i = 0; i < need0; i++)
        c.table[0][i] = perm[i];
    for (int i = 0; i < need1; i++)
        c.table[1][i] = perm[need0 + i];
    free(perm);

    slm_kv_desc desc = {.n_layers = 2, .n_blocks = c.n_blocks, .block_size = c.bs,
                        .n_kv_heads = c.n_kv, .head_dim = c.hd, .type = kvtype};
    slm_kv *kv = NULL;
    assert_int_equal(g_ops->kv_create(g_be, &desc, &kv), SLM_OK);
    int layer = 1, qw = c.n_heads * hd, kvw = c.n_kv * hd;
    int row = qw + 2 * kvw; /* fused QKV rows: q | k | v */
    c.k = xmalloc((size_t)2 * 256 * kvw * sizeof(float));
    c.v = xmalloc((size_t)2 * 256 * kvw * sizeof(float));
    float scale = 1.0f / sqrtf((float)hd);

    for (int stepi = 0; stepi < 2; stepi++) {
        /* Step 0: the prompts of both sequences (single-pass kernel). Step 1:
         * one decode token of each, attending to what step 0 left in the
         * pool (split-K: the backend is opened with SLM_VK_SPLIT_MIN=1, so
         * sequence 1's 65+ positions split in two chunks and sequence 0's
         * second chunk is empty). */
        int n = stepi == 0 ? c.len[0] + c.len[1] : 2;
        int32_t *pos = xmalloc((size_t)n * 4), *seq = xmalloc((size_t)n * 4),
                *slot = xmalloc((size_t)n * 4);
        for (int t = 0; t < n; t++) {
            seq[t] = stepi == 0 ? (t < c.len[0] ? 0 : 1) : t;
            pos[t] = stepi == 0 ? (t < c.len[0] ? t : t - c.len[0]) : c.len[t];
            slot[t] = c.table[seq[t]][pos[t] / c.bs] * c.bs + pos[t] % c.bs;
        }
        int32_t bt_start[2] = {0, 32}, bt_len[2] = {need0, need1}, bt[64];
        memcpy(bt, c.table[0], sizeof c.table[0]);
        memcpy(bt + 32, c.table[1], sizeof c.table[1]);
        size_t nq = (size_t)n * (size_t)row;
        float *qkv = xmalloc(nq * sizeof(float));
        tu_fill_normal(qkv, nq, 1.0f);
        for (int t = 0; t < n; t++) {
            for (int e = 0; e < kvw; e++) {
                size_t at = ((size_t)seq[t] * 256 + (size_t)pos[t]) * kvw + e;
                c.k[at] = store_round(kvtype, qkv[(size_t)t * row + qw + e]);
                c.v[at] = store_round(kvtype, qkv[(size_t)t * row + qw + kvw + e]);
            }
        }
        slm_buf *bq = dev_floats(g_be, nq, qkv), *bo = dev_floats(g_be, (size_t)n * qw, NULL);
        slm_step s = {.n_tokens = n, .positions = pos, .seq_of_token = seq, .kv_slot = slot,
                      .n_seqs = 2, .block_table_start = bt_start, .block_table_len = bt_len,
                      .block_tables = bt};
        assert_int_equal(g_ops->begin_step(g_be, &s), SLM_OK);
        g_ops->kv_store(g_be, kv, layer, (slm_ref){bq, (size_t)qw * 4}, row,
                        (slm_ref){bq, (size_t)(qw + kvw) * 4}, row);
        g_ops->attention(g_be, kv, layer, (slm_ref){bq, 0}, row, c.n_heads, scale, (slm_ref){bo, 0});
        end_ok(g_be);
        float *o = dev_read(g_be, bo, (size_t)n * qw);
        float *ref = xmalloc((size_t)n * qw * sizeof(float));
        for (int t = 0; t < n; t++)
            attn_ref(&c, seq[t], pos[t], qkv + (size_t)t * row, scale, ref + (size_t)t * qw);
        /* Same K/V values (f16-rounded for an F16 pool); f32 dot products,
         * exp and online rescaling: ≤ 1e-4 + 1e-4·|ref| on unit-scale data. */
        tu_assert_close(kvtype == SLM_TYPE_F16 ? "attention f16" : "attention f32", o, ref,
                        (size_t)n * qw, 1e-4, 1e-4);
        free(o);
        free(ref);
        free(qkv);
        free(pos);
        free(seq);
        free(slot);
        g_ops->buf_free(g_be, bq);
        g_ops->buf_free(g_be, bo);
    }
    free(c.k);
    free(c.v);
    g_ops->kv_free(g_be, kv);
}

static void test_attention(void **state)
{
    (void)state;
    NEED_DEVICE();
    check_attention(SLM_TYPE_F32, 2 * tu_int(1, 40));
    check_attention(SLM_TYPE_F16, 2 * tu_int(33, 128)); /* > 64 dims per thread group */
    slm_kv_desc q8 = {.n_layers = 1, .n_blocks = 2, .block_size = 16, .n_kv_heads = 1,
                      .head_dim = 64, .type = SLM_TYPE_Q8_0};
    slm_kv *kv = NULL;
    assert_int_equal(g_ops->kv_create(g_be, &q8, &kv), SLM_STATUS_UNSUPPORTED);
    assert_null(kv);
}

/* ------------------------------------------------------------------------ */
/* swiglu, add, scale, get_rows                                              */

static void test_elementwise(void **state)
{
    (void)state;
    NEED_DEVICE();
    int rows = tu_int(1, 9), ff = tu_int(1, 300), stride = 2 * ff;
    size_t ng = (size_t)rows * stride, ny = (size_t)rows * ff;
    float *gu = xmalloc(ng * sizeof(float));
    tu_fill_normal(gu, ng, 3.0f);
    slm_buf *bg = dev_floats(g_be, ng, gu), *by = dev_floats(g_be, ny, NULL);

    size_t count = (size_t)tu_int(1, 100000);
    float *a = xmalloc(count * sizeof(float)), *b = xmalloc(count * sizeof(float));
    tu_fill_normal(a, count, 1.0f);
    tu_fill_normal(b, count, 1.0f);
    slm_buf *ba = dev_floats(g_be, count, a), *bb = dev_floats(g_be, count, b);
    slm_buf *bsum = dev_floats(g_be, count, NULL);
    float sc = tu_uniform(-3.0f, 3.0f);

    int d = tu_int(1, 200), n_logit = tu_int(1, rows);
    int32_t logit[9];
    for (int r = 0; r < n_logit; r++)
        logit[r] = tu_int(0, rows - 1);
    float *xr = xmalloc((size_t)rows * d * sizeof(float));
    tu_fill_normal(xr, (size_t)rows * d, 1.0f);
    slm_buf *bxr = dev_floats(g_be, (size_t)rows * d, xr);
    slm_buf *brows = dev_floats(g_be, (size_t)n_logit * d, NULL);

    slm_step s = {.n_tokens = rows, .n_logit_rows = n_logit, .logit_rows = logit};
    assert_int_equal(g_ops->begin_step(g_be, &s), SLM_OK);
    g_ops->swiglu(g_be, (slm_ref){bg, 0}, (slm_ref){bg, (size_t)ff * 4}, stride, rows, ff,
                  (slm_ref){by, 0});
    g_ops->add(g_be, (slm_ref){ba, 0}, (slm_ref){bb, 0}, count, (slm_ref){bsum, 0});
    g_ops->add(g_be, (slm_ref){ba, 0}, (slm_ref){bb, 0}, count, (slm_ref){ba, 0}); /* in place */
    g_ops->scale(g_be, (slm_ref){bb, 0}, sc, count);
    g_ops->get_rows(g_be, (slm_ref){bxr, 0}, d, (slm_ref){brows, 0});
    end_ok(g_be);

    float *y = dev_read(g_be, by, ny), *ref = xmalloc(ny * sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < ff; i++) {
            double g = gu[r * stride + i], u = gu[r * stride + ff + i];
            ref[r * ff + i] = (float)(g / (1.0 + exp(-g)) * u);
        }
    /* f32 exp and divide: a few ulp. */
    tu_assert_close("swiglu", y, ref, ny, 1e-6, 1e-5);
    float *sum = dev_read(g_be, bsum, count), *a2 = dev_read(g_be, ba, count);
    float *b2 = dev_read(g_be, bb, count), *rsum = xmalloc(count * sizeof(float)),
          *rsc = xmalloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) {
        rsum[i] = a[i] + b[i];
        rsc[i] = b[i] * sc;
    }
    /* One f32 add or multiply: exact. */
    tu_assert_close("add", sum, rsum, count, 0, 0);
    tu_assert_close("add in place", a2, rsum, count, 0, 0);
    tu_assert_close("scale", b2, rsc, count, 0, 0);
    float *rows_got = dev_read(g_be, brows, (size_t)n_logit * d);
    float *rows_ref = xmalloc((size_t)n_logit * d * sizeof(float));
    for (int r = 0; r < n_logit; r++)
        memcpy(rows_ref + r * d, xr + logit[r] * d, (size_t)d * sizeof(float));
    /* A copy: exact. */
    tu_assert_close("get_rows", rows_got, rows_ref, (size_t)n_logit * d, 0, 0);

    free(rows_got); free(rows_ref); free(sum); free(a2); free(b2); free(rsum); free(rsc);
    free(y); free(ref); free(gu); free(a); free(b); free(xr);
    g_ops->buf_free(g_be, bg);
    g_ops->buf_free(g_be, by);
    g_ops->buf_free(g_be, ba);
    g_ops->buf_free(g_be, bb);
    g_ops->buf_free(g_be, bsum);
    g_ops->buf_free(g_be, bxr);
    g_ops->buf_free(g_be, brows);
}

/* ------------------------------------------------------------------------ */
/* errors and the checker                                                    */

/* Records `ops` dependent in-place ops on b's n floats: add (b + b), then
 * scale by 1.5, alternately. */
static void record_chain(slm_backend *be, slm_buf *b, size_t n, int ops)
{
    for (int k = 0; k < ops; k++) {
        if (k % 2)
            g_ops->scale(be, (slm_ref){b, 0}, 1.5f, n);
        else
            g_ops->add(be, (slm_ref){b, 0}, (slm_ref){b, 0}, n, (slm_ref){b, 0});
    }
}

/* Runs the chain on x in one step and checks the result exactly. */
static void check_chain(slm_backend *be, slm_buf *b, const float *x, const float *want, size_t n,
                        int ops)
{
    assert_int_equal(g_ops->upload(be, (slm_ref){b, 0}, x, n * sizeof(float)), SLM_OK);
    begin_plain(be, 1);
    record_chain(be, b, n, ops);
    end_ok(be);
    float *y = dev_read(be, b, n);
    tu_assert_close("chunked chain", y, want, n, 0, 0);
    free(y);
}

/* Steps submitted in chunks (SLM_VK_CHUNK=2: a chunk every two dispatches,
 * up to the last command buffer): a chain of dependent ops gives the host's
 * result, and a step that fails after chunks went to the device waits for
 * them and leaves the handle usable. */
static void test_chunked_steps(void **state)
{
    (void)state;
    NEED_DEVICE();
    slm_backend *be = open_with("SLM_VK_CHUNK", "2");
    enum { N = 1000, OPS = 11 };
    float *x = xmalloc(N * sizeof(float)), *want = xmalloc(N * sizeof(float));
    tu_fill_uniform(x, N, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        want[i] = x[i];
        for (int k = 0; k < OPS; k++)
            want[i] = k % 2 ? want[i] * 1.5f : want[i] + want[i];
    }
    slm_buf *b = dev_floats(be, N, x);
    check_chain(be, b, x, want, N, OPS);
    /* The chain, then an op past the buffer: the step fails, naming it. */
    begin_plain(be, 1);
    record_chain(be, b, N, OPS);
    g_ops->scale(be, (slm_ref){b, 0}, 2.0f, N + 1);
    assert_int_equal(g_ops->end_step(be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "scale"));
    check_chain(be, b, x, want, N, OPS); /* and the handle still works */
    free(x);
    free(want);
    g_ops->buf_free(be, b);
    g_ops->close(be);
}

static void test_errors(void **state)
{
    (void)state;
    NEED_DEVICE();
    slm_weight *w = NULL;
    uint8_t junk[64] = {0};
    assert_int_equal(g_ops->load_weight(g_be, SLM_TYPE_Q8_1, 1, 32, junk, &w),
                     SLM_STATUS_UNSUPPORTED);
    assert_non_null(strstr(slm_last_error(), "q8_1"));
    assert_int_equal(g_ops->load_weight(g_be, SLM_TYPE_Q4_0, 1, 33, junk, &w),
                     SLM_STATUS_INVALID_ARGUMENT);

    /* An op on a too-small buffer fails the step at end_step, naming it. */
    slm_buf *small = dev_floats(g_be, 4, NULL);
    begin_plain(g_be, 3);
    g_ops->scale(g_be, (slm_ref){small, 0}, 2.0f, 5);
    assert_int_equal(g_ops->upload(g_be, (slm_ref){small, 0}, junk, 4),
                     SLM_STATUS_INVALID_ARGUMENT); /* no copies inside a step */
    assert_int_equal(g_ops->end_step(g_be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "scale"));

    /* A token id outside the table. */
    float row[32];
    tu_fill_normal(row, 32, 1.0f);
    assert_int_equal(g_ops->load_weight(g_be, SLM_TYPE_F32, 1, 32, row, &w), SLM_OK);
    slm_buf *by = dev_floats(g_be, 32, NULL);
    int32_t bad_id = 7;
    slm_step s = {.n_tokens = 1, .token_ids = &bad_id};
    assert_int_equal(g_ops->begin_step(g_be, &s), SLM_OK);
    g_ops->embed(g_be, w, (slm_ref){by, 0});
    assert_int_equal(g_ops->end_step(g_be), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "token"));

    /* A bad step is refused at begin_step; a good one still works after. */
    int32_t bad_row = 3;
    slm_step s2 = {.n_tokens = 1, .n_logit_rows = 1, .logit_rows = &bad_row};
    assert_int_equal(g_ops->begin_step(g_be, &s2), SLM_STATUS_INVALID_ARGUMENT);
    int32_t id0 = 0;
    slm_step s3 = {.n_tokens = 1, .token_ids = &id0};
    assert_int_equal(g_ops->begin_step(g_be, &s3), SLM_OK);
    g_ops->embed(g_be, w, (slm_ref){by, 0});
    end_ok(g_be);
    float *y = dev_read(g_be, by, 32);
    tu_assert_close("embed after errors", y, row, 32, 0, 0);
    free(y);
    assert_int_equal(g_ops->end_step(g_be), SLM_STATUS_INVALID_ARGUMENT); /* no step open */
    g_ops->buf_free(g_be, small);
    g_ops->buf_free(g_be, by);
    g_ops->weight_free(g_be, w);
}

/* The comparison used above must reject a wrong answer. */
static void test_checker_catches_errors(void **state)
{
    (void)state;
    float ref[5] = {1, 2, 3, 4, 5}, got[5] = {1, 2, 3.01f, 4, 5};
    size_t worst;
    assert_true(tu_max_rel_err(got, ref, 5, 1e-4, 1e-4, &worst) > 1.0);
    assert_int_equal(worst, 2);
    tu_poison(got, 5);
    assert_true(tu_max_rel_err(got, ref, 5, 1e-4, 1e-4, &worst) > 1.0);
}

/* describe() names the device; device choice errors are clear. */
static void test_describe(void **state)
{
    (void)state;
    NEED_DEVICE();
    const char *d = g_ops->describe(g_be);
    fprintf(stderr, "%s\n", d);
    assert_non_null(strstr(d, "vulkan: "));
    assert_string_equal(g_ops->name, "vulkan");
    assert_int_equal(g_ops->api_version, SLM_BACKEND_API_VERSION);

    /* "GPU only" refuses a CPU implementation such as lavapipe. */
    slm_backend_params p = {.size = sizeof p, .device_index = SLM_DEVICE_GPU_ONLY};
    slm_backend *be = NULL;
    slm_status st = g_ops->open(&p, &be);
    if (strstr(d, "CPU implementation")) {
        assert_int_equal(st, SLM_STATUS_DEVICE);
        assert_non_null(strstr(slm_last_error(), "CPU implementation"));
        assert_null(be);
    } else {
        assert_int_equal(st, SLM_OK);
        g_ops->close(be);
    }
    /* A device name nobody has. */
    setenv("SLM_VK_DEVICE", "no-such-device-xyz", 1);
    p.device_index = SLM_DEVICE_ANY;
    st = g_ops->open(&p, &be);
    unsetenv("SLM_VK_DEVICE");
    assert_int_equal(st, SLM_STATUS_NOT_FOUND);
    assert_non_null(strstr(slm_last_error(), "no-such-device-xyz"));
    /* An index past the last device. */
    p.device_index = 99;
    assert_int_equal(g_ops->open(&p, &be), SLM_STATUS_NOT_FOUND);
}

static int group_setup(void **state)
{
    (void)state;
#ifdef SLM_HAVE_VULKAN
    g_ops = slm_backend_vulkan();
    setenv("SLM_VK_SPLIT_MIN", "1", 1); /* split-K attention on short test contexts */
    slm_backend_params p = {.size = sizeof p, .device_index = SLM_DEVICE_ANY};
    if (g_ops->open(&p, &g_be) != SLM_OK) {
        fprintf(stderr, "skipped: no device (%s)\n", slm_last_error());
        g_be = NULL;
    }
#else
    fprintf(stderr, "skipped: no device (built without Vulkan)\n");
#endif
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_be)
        g_ops->close(g_be);
    return 0;
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_matmul_all_types),
        cmocka_unit_test(test_matmul_shared_reduction),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_split_weights),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_chunked_steps),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_checker_catches_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
