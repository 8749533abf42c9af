/*
 * test_cpu_matmul.c — the CPU quantized matmul (cpu_fallback/cpu_matmul.h)
 * against a double-precision reference, for every supported weight type ×
 * every SIMD level this machine has × ragged shapes.
 *
 * Reference (the shared one, op_reference.c): W is made by
 * slm_quantize_row_ref from random floats and dequantized with
 * slm_dequantize_row; x becomes the values the matmul's quantizer codes it
 * as (ref_act_values: Q8_0 or Q8_K blocks, F32/F16/BF16 weights use x as
 * is); y_ref = Σ w·x in double (+ add) by ref_matmul.
 * Tolerance: |y − y_ref| ≤ 1e-5 · (Σ|w·x| + |add|) per element — the
 * integer block products are exact, so only f32 scaling and summation
 * rounding remain (≲ 1e-6 relative at these sizes).
 *
 * Two activation terms (act_terms = 2): the reference takes x's Q8 blocks
 * plus the Q8 blocks of the residual x − q₁ (REF_ACT_Q8X2); same tolerance. And against exact f32 activations, two terms must cut the
 * error at least tenfold.
 *
 * Also: the activation quantizers of every level against the reference
 * quantizer, byte for byte (ties included); bitwise row invariance (a row of
 * a 17-row call equals a 1-row call) and thread-count invariance (pools of
 * 1, 2, 3 threads equal no pool); add == y in place; F16/BF16 weights used
 * exactly; and a check that the comparison fails on a wrong result.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_dot.h"
#include "cpu_matmul.h"
#include "fp16.h"
#include "op_reference.h"
#include "quant.h"

#define TOL_REL 1e-5

static const slm_type all_types[] = {
    SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1,
    SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_IQ4_NL, SLM_TYPE_Q2_K,
    SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_XS,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* ---------------------------------------------------------------------- */
/* A test case: quantized weights, activations and the reference.        */

typedef struct mm_case {
    slm_type type;
    int terms;   /* activation terms (1, or 2 with the quantized residual) */
    int64_t out, in, rows;
    void *w;     /* (out, in) in type */
    float *x;    /* (rows, in) */
    double *ref; /* (rows, out) Σ w·x of the dequantized operands */
    double *mag; /* (rows, out) Σ |w·x| */
} mm_case;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Activation terms of the cases case_make makes (tests set it). */
static int g_terms = 1;
/* Run through packed weights where the level packs the type (tests set it):
 * the same checks then hold for the packed kernels. */
static bool g_packed = false;

static void case_make(mm_case *c, slm_type type, int64_t out, int64_t in, int64_t rows)
{
    size_t rb = slm_type_row_bytes(type, in);
    assert_true(rb > 0);
    *c = (mm_case){.type = type, .terms = g_terms, .out = out, .in = in, .rows = rows};
    c->w = xmalloc(rb * (size_t)out);
    c->x = xmalloc((size_t)(rows * in) * sizeof(float));
    c->ref = xmalloc((size_t)(rows * out) * sizeof(double));
    c->mag = xmalloc((size_t)(rows * out) * sizeof(double));
    float *wf = xmalloc((size_t)(out * in) * sizeof(float));
    double *xd = xmalloc((size_t)(rows * in) * sizeof(double));
    /* rows of different scales and a few large values, so block scales vary */
    for (int64_t o = 0; o < out; o++) {
        tu_fill_normal(wf + o * in, (size_t)in, tu_uniform(0.01f, 2.0f));
        wf[o * in + tu_int(0, (int)in - 1)] *= 4.0f;
        assert_true(slm_quantize_row_ref(type, wf + o * in, (uint8_t *)c->w + (size_t)o * rb, in));
        assert_true(slm_dequantize_row(type, (uint8_t *)c->w + (size_t)o * rb, wf + o * in, in));
    }
    for (int64_t r = 0; r < rows; r++) {
        tu_fill_normal(c->x + r * in, (size_t)in, tu_uniform(0.1f, 3.0f));
        ref_act_values(type, g_terms == 2 ? REF_ACT_Q8X2 : REF_ACT_Q8, c->x + r * in, in,
                       xd + r * in);
    }
    ref_matmul(wf, out, in, xd, rows, NULL, c->ref, c->mag);
    free(wf);
    free(xd);
}

static void case_free(mm_case *c)
{
    free(c->w);
    free(c->x);
    free(c->ref);
    free(c->mag);
}

static void *scratch_new(slm_type type, int64_t in, int64_t rows)
{
    size_t n = slm_cpu_matmul_scratch_bytes(type, in, rows);
    if (n == 0)
        return NULL;
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    assert_non_null(p);
    return p;
}

/* y = x·Wᵀ (+ add) with a fresh scratch; y is poisoned first unless it is
 * also the add operand. */
static void run(const mm_case *c, slm_pool *pool, slm_simd lvl, const float *add, float *y)
{
    void *scratch = scratch_new(c->type, c->in, c->rows);
    if (add != y)
        tu_poison(y, (size_t)(c->rows * c->out));
    if (g_packed && slm_cpu_pack_available(lvl, c->type)) {
        slm_cpu_packed *p = slm_cpu_pack(lvl, c->type, c->w, c->out, c->in);
        assert_non_null(p);
        slm_cpu_matmul_packed(pool, c->terms, p, c->x, c->rows, add, y, scratch);
        slm_cpu_packed_free(p);
    } else {
        slm_cpu_matmul(pool, lvl, c->terms, c->type, c->w, c->out, c->in, c->x, c->rows, add, y,
                       scratch);
    }
    free(scratch);
}

/* Largest |y − (ref + add)| / (TOL_REL·(Σ|w·x| + |add|)); > 1 fails, NaN
 * gives +inf. */
static double worst_err(const mm_case *c, const float *y, const float *add, int64_t *at)
{
    double worst = 0;
    *at = 0;
    for (int64_t i = 0; i < c->rows * c->out; i++) {
        double a = add ? add[i] : 0.0;
        double err = fabs((double)y[i] - (c->ref[i] + a));
        double e = isnan(y[i]) ? INFINITY : err / (TOL_REL * (c->mag[i] + fabs(a)) + 1e-30);
        if (e > worst || isnan(e)) {
            worst = isnan(e) ? INFINITY : e;
            *at = i;
        }
    }
    return worst;
}

static void expect_close(const mm_case *c, const float *y, const float *add, slm_simd lvl,
                         const char *what)
{
    int64_t at;
    double e = worst_err(c, y, add, &at);
    if (!(e <= 1.0)) {
        double a = add ? add[at] : 0.0;
        fprintf(stderr,
                "%s: %s %s rows=%lld out=%lld in=%lld: y[%lld]=%.9g ref=%.9g (err %.3g of tol)\n",
                what, slm_type_name(c->type), slm_simd_name(lvl), (long long)c->rows,
                (long long)c->out, (long long)c->in, (long long)at, (double)y[at],
                c->ref[at] + a, e);
    }
    assert_true(e <= 1.0);
}

/* Block-size multiples for `in`, including odd ones; float types also get
 * sizes that no SIMD width divides. */
static int ins_for(slm_type t, int64_t *ins)
{
    int bs = slm_type_get(t)->block_elems;
    if (bs == 256) {
        ins[0] = 256, ins[1] = 768;
        return 2;
    }
    ins[0] = 32, ins[1] = 96, ins[2] = 288;
    if (bs == 1) {
        ins[3] = 7, ins[4] = 45;
        return 5;
    }
    return 3;
}

/* ---------------------------------------------------------------------- */

static void test_quantizers_match_reference(void **state)
{
    (void)state;
    enum { N = 1024 };
    float x[N];
    slm_act_q8_0 a0[N / SLM_QK];
    slm_block_q8_0 r0[N / SLM_QK];
    slm_block_q8_k ak[N / SLM_QK_K], rk[N / SLM_QK_K];
    for (int trial = 0; trial < 8; trial++) {
        tu_fill_normal(x, N, tu_uniform(0.01f, 10.0f));
        /* exact ties for the rounding: block 0 of Q8_0 has amax 127, so
         * id = 1 and the halves stay halves (roundf: away from zero); block
         * 0 of Q8_K has max −127, so iscale = 1 (lrintf: to even) */
        x[0] = 127.0f, x[1] = 2.5f, x[2] = -3.5f, x[3] = 0.5f, x[4] = -0.5f;
        x[256] = -127.0f, x[257] = 2.5f, x[258] = -3.5f, x[259] = 0.5f;
        /* a +/− tie for the signed maximum of Q8_K block 3 (first one wins) */
        float t = 200.0f + (float)trial;
        x[800] = trial % 2 ? t : -t;
        x[801] = trial % 2 ? -t : t;
        /* an all-zero block of each format */
        memset(x + 512, 0, 256 * sizeof(float));
        assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_0, x, r0, N));
        assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_K, x, rk, N));
        for (int l = 0; l < SLM_SIMD_COUNT; l++) {
            if (!slm_simd_available((slm_simd)l))
                continue;
            slm_dot_kernels k = slm_dot_resolve((slm_simd)l);
            k.quant_q8_0(x, a0, N);
            k.quant_q8_k(x, ak, N);
            for (int b = 0; b < N / SLM_QK; b++) {
                int sum = 0;
                for (int j = 0; j < SLM_QK; j++)
                    sum += a0[b].qs[j];
                assert_memory_equal(a0[b].qs, r0[b].qs, SLM_QK);
                /* exact: the same f16 scale, and s is d·Σq in f32 */
                assert_true(a0[b].d == slm_f16_to_f32(r0[b].d));
                assert_true(a0[b].s == a0[b].d * (float)sum);
            }
            assert_memory_equal(ak, rk, sizeof ak);
        }
    }
}

static void test_matches_reference(void **state)
{
    (void)state;
    static const int64_t rows_set[] = {1, 2, 5, 17}, outs[] = {1, 7, 67};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        int64_t ins[5];
        int nin = ins_for(all_types[ti], ins);
        for (int ii = 0; ii < nin; ii++)
            for (int oi = 0; oi < 3; oi++)
                for (int ri = 0; ri < 4; ri++) {
                    mm_case c;
                    case_make(&c, all_types[ti], outs[oi], ins[ii], rows_set[ri]);
                    size_t ny = (size_t)(c.rows * c.out);
                    float *y = xmalloc(ny * sizeof(float)), *add = xmalloc(ny * sizeof(float));
                    tu_fill_normal(add, ny, 1.0f);
                    for (int l = 0; l < SLM_SIMD_COUNT; l++) {
                        if (!slm_simd_available((slm_simd)l))
                            continue;
                        run(&c, NULL, (slm_simd)l, NULL, y);
                        expect_close(&c, y, NULL, (slm_simd)l, "plain");
                        run(&c, NULL, (slm_simd)l, add, y);
                        expect_close(&c, y, add, (slm_simd)l, "with add");
                    }
                    free(y);
                    free(add);
                    case_free(&c);
                }
    }
}

/* add == y: the residual is read from y and the sum written over it. */
static void test_add_in_place(void **state)
{
    (void)state;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        mm_case c;
        int64_t in = slm_type_get(all_types[ti])->block_elems == 256 ? 512 : 160;
        case_make(&c, all_types[ti], 13, in, 3);
        size_t ny = (size_t)(c.rows * c.out);
        float *add = xmalloc(ny * sizeof(float)), *y = xmalloc(ny * sizeof(float));
        tu_fill_normal(add, ny, 2.0f);
        for (int l = 0; l < SLM_SIMD_COUNT; l++) {
            if (!slm_simd_available((slm_simd)l))
                continue;
            memcpy(y, add, ny * sizeof(float));
            run(&c, NULL, (slm_simd)l, y, y);
            expect_close(&c, y, add, (slm_simd)l, "add == y");
        }
        free(add);
        free(y);
        case_free(&c);
    }
}

/* Row r of a 17-row call equals a 1-row call on row r, bit for bit, and a
 * pool of any size equals no pool. */
static void test_batch_and_thread_invariance(void **state)
{
    (void)state;
    slm_pool *pools[3];
    for (int p = 0; p < 3; p++) {
        pools[p] = slm_pool_create(p + 1);
        assert_non_null(pools[p]);
    }
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        mm_case c;
        int64_t in = slm_type_get(all_types[ti])->block_elems == 256 ? 768 : 224;
        case_make(&c, all_types[ti], 37, in, 17);
        size_t ny = (size_t)(c.rows * c.out);
        float *y = xmalloc(ny * sizeof(float)), *y1 = xmalloc((size_t)c.out * sizeof(float));
        float *yp = xmalloc(ny * sizeof(float));
        for (int l = 0; l < SLM_SIMD_COUNT; l++) {
            if (!slm_simd_available((slm_simd)l))
                continue;
            run(&c, NULL, (slm_simd)l, NULL, y);
            for (int64_t r = 0; r < c.rows; r++) {
                mm_case one = c;
                one.rows = 1;
                one.x = c.x + r * c.in;
                run(&one, NULL, (slm_simd)l, NULL, y1);
                assert_memory_equal(y1, y + r * c.out, (size_t)c.out * sizeof(float));
            }
            for (int p = 0; p < 3; p++) {
                run(&c, pools[p], (slm_simd)l, NULL, yp);
                assert_memory_equal(yp, y, ny * sizeof(float));
            }
        }
        free(y);
        free(y1);
        free(yp);
        case_free(&c);
    }
    for (int p = 0; p < 3; p++)
        slm_pool_free(pools[p]);
}

/* The reference, batch and thread invariance with two activation terms. */
static void test_two_terms(void **state)
{
    g_terms = 2;
    static const int64_t rows_set[] = {1, 5}, outs[] = {7, 67};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        int64_t ins[5];
        int nin = ins_for(all_types[ti], ins);
        for (int ii = 0; ii < nin; ii++)
            for (int oi = 0; oi < 2; oi++)
                for (int ri = 0; ri < 2; ri++) {
                    mm_case c;
                    case_make(&c, all_types[ti], outs[oi], ins[ii], rows_set[ri]);
                    float *y = xmalloc((size_t)(c.rows * c.out) * sizeof(float));
                    for (int l = 0; l < SLM_SIMD_COUNT; l++) {
                        if (!slm_simd_available((slm_simd)l))
                            continue;
                        run(&c, NULL, (slm_simd)l, NULL, y);
                        expect_close(&c, y, NULL, (slm_simd)l, "two terms");
                    }
                    free(y);
                    case_free(&c);
                }
    }
    test_batch_and_thread_invariance(state);
    g_terms = 1;
}

/* Against exact f32 activations, the second term must pay: the mean error
 * of every quantized type drops at least tenfold. */
static void test_two_terms_closer_to_f32(void **state)
{
    (void)state;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        slm_type t = all_types[ti];
        if (slm_act_kind_of(t) == SLM_ACT_F32)
            continue;
        int64_t in = slm_type_get(t)->block_elems == 256 ? 768 : 288, out = 64;
        mm_case c;
        case_make(&c, t, out, in, 4);
        /* exact: dequantized W times the f32 x, in double */
        size_t rb = slm_type_row_bytes(t, in);
        float *wf = xmalloc((size_t)(out * in) * sizeof(float));
        float *y = xmalloc(4 * out * sizeof(float));
        double *exact = xmalloc(4 * out * sizeof(double)), *xf = xmalloc(4 * in * sizeof(double));
        for (int64_t o = 0; o < out; o++)
            assert_true(slm_dequantize_row(t, (uint8_t *)c.w + (size_t)o * rb, wf + o * in, in));
        ref_act_values(t, REF_ACT_F32, c.x, 4 * in, xf);
        ref_matmul(wf, out, in, xf, 4, NULL, exact, NULL);
        double err[2];
        for (int k = 0; k < 2; k++) {
            c.terms = k + 1;
            run(&c, NULL, SLM_SIMD_SCALAR, NULL, y);
            err[k] = 0;
            for (int i = 0; i < 4 * out; i++)
                err[k] += fabs((double)y[i] - exact[i]);
        }
        printf("   %-7s mean |error| vs f32 activations: q8 %.3g, q8x2 %.3g\n", slm_type_name(t),
               err[0] / (4 * out), err[1] / (4 * out));
        assert_true(err[1] * 10 < err[0]);
        free(wf);
        free(xf);
        free(y);
        free(exact);
        case_free(&c);
    }
}

/* The packed kernels (cpu_packed.h) pass the same checks: reference at
 * ragged shapes (outputs not a multiple of the 16-row group, row counts not
 * a multiple of the kernel's columns), add in place, batch and thread
 * invariance, two terms. Some level of this machine must pack something
 * for the test to mean anything on x86 with AVX2. */
static void test_packed(void **state)
{
    int packs = 0;
    for (int l = 0; l < SLM_SIMD_COUNT; l++)
        for (size_t ti = 0; ti < N_TYPES; ti++)
            packs += slm_simd_available((slm_simd)l) && slm_cpu_pack_available((slm_simd)l, all_types[ti]);
    printf("   packed kernels on this machine: %d (level × type)\n", packs);
    if (slm_simd_available(SLM_SIMD_AVX2))
        assert_true(packs >= 3);
    g_packed = true;
    test_matches_reference(state);
    test_add_in_place(state);
    test_batch_and_thread_invariance(state);
    test_two_terms(state);
    g_packed = false;
}

/* Packing keeps every code: a packed weight whose source changes after
 * packing still gives the result of the weights it was packed from, and a
 * 16-row group holds exactly the rows it should (zero rows past the end). */
static void test_packed_independent_of_source(void **state)
{
    (void)state;
    for (int l = 0; l < SLM_SIMD_COUNT; l++) {
        if (!slm_simd_available((slm_simd)l))
            continue;
        for (size_t ti = 0; ti < N_TYPES; ti++) {
            slm_type t = all_types[ti];
            if (!slm_cpu_pack_available((slm_simd)l, t))
                continue;
            mm_case c;
            case_make(&c, t, 21, slm_type_get(t)->block_elems == 256 ? 512 : 128, 3);
            slm_cpu_packed *p = slm_cpu_pack((slm_simd)l, t, c.w, c.out, c.in);
            assert_non_null(p);
            memset(c.w, 0x5a, slm_type_row_bytes(t, c.in) * (size_t)c.out);
            float *y = xmalloc((size_t)(c.rows * c.out) * sizeof(float));
            void *scratch = scratch_new(t, c.in, c.rows);
            tu_poison(y, (size_t)(c.rows * c.out));
            slm_cpu_matmul_packed(NULL, 1, p, c.x, c.rows, NULL, y, scratch);
            expect_close(&c, y, NULL, (slm_simd)l, "packed, source overwritten");
            free(scratch);
            free(y);
            slm_cpu_packed_free(p);
            case_free(&c);
        }
    }
}

/* F16 and BF16 weights are used exactly: with a one-hot x, y[o] is the
 * stored value of W[o][k] bit for bit (subnormals included). */
static void test_half_weights_exact(void **state)
{
    (void)state;
    const slm_type types[2] = {SLM_TYPE_F16, SLM_TYPE_BF16};
    enum { OUT = 9, IN = 37 };
    uint16_t w[OUT * IN];
    float x[IN], y[OUT];
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < OUT * IN; i++) {
            uint16_t h;
            do { /* any finite value, subnormals included */
                h = (uint16_t)tu_rand_u64();
            } while (t == 0 ? (h & 0x7c00) == 0x7c00 : (h & 0x7f80) == 0x7f80);
            w[i] = h;
        }
        for (int l = 0; l < SLM_SIMD_COUNT; l++) {
            if (!slm_simd_available((slm_simd)l))
                continue;
            for (int k = 0; k < IN; k++) {
                memset(x, 0, sizeof x);
                x[k] = 1.0f;
                tu_poison(y, OUT);
                slm_cpu_matmul(NULL, (slm_simd)l, 1, types[t], w, OUT, IN, x, 1, NULL, y, NULL);
                for (int o = 0; o < OUT; o++) {
                    uint16_t h = w[o * IN + k];
                    float want = t == 0 ? slm_f16_to_f32(h) : slm_bf16_to_f32(h);
                    assert_true(y[o] == want); /* exact */
                }
            }
        }
    }
}

/* The comparison used above rejects a result that is wrong by a little
 * (one element off by 1e-4 relative), by a lot, or not written (NaN). */
static void test_checker_fails_on_wrong_result(void **state)
{
    (void)state;
    mm_case c;
    case_make(&c, SLM_TYPE_Q4_K, 11, 512, 3);
    size_t ny = (size_t)(c.rows * c.out);
    float *y = xmalloc(ny * sizeof(float));
    int64_t at;
    run(&c, NULL, SLM_SIMD_SCALAR, NULL, y);
    assert_true(worst_err(&c, y, NULL, &at) <= 1.0);
    int64_t k = tu_int(0, (int)ny - 1);
    float good = y[k];
    y[k] = (float)((double)good + 1e-4 * c.mag[k]);
    assert_true(worst_err(&c, y, NULL, &at) > 1.0 && at == k);
    y[k] = -good + 1.0f;
    assert_true(worst_err(&c, y, NULL, &at) > 1.0);
    y[k] = NAN;
    assert_true(worst_err(&c, y, NULL, &at) > 1.0 && at == k);
    free(y);
    case_free(&c);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantizers_match_reference),
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_add_in_place),
        cmocka_unit_test(test_batch_and_thread_invariance),
        cmocka_unit_test(test_two_terms),
        cmocka_unit_test(test_two_terms_closer_to_f32),
        cmocka_unit_test(test_packed),
        cmocka_unit_test(test_packed_independent_of_source),
        cmocka_unit_test(test_half_weights_exact),
        cmocka_unit_test(test_checker_fails_on_wrong_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
