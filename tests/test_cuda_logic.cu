/*
 * test_cuda_logic.cu — the CUDA kernels' per-thread logic (cuda/
 * cuda_logic.cuh) checked on the host, against the scalar reference, with
 * no GPU: nvcc compiles this as a host program and CI runs it.
 *
 *   f16/bf16        every f16 and bf16 value, and random plus edge-case
 *                   floats to f16, bit for bit against runtime/fp16.h;
 *   slm_cu_deq      every element of every weight type, bit for bit against
 *                   slm_dequantize_row, on blocks made by the reference
 *                   quantizer and on random bytes (every bit pattern a
 *                   field can hold), at ragged block counts;
 *   activations     slm_cu_quant_q8a / q8k byte for byte against
 *                   slm_quantize_row_ref's Q8_0 / Q8_K (ties, zeros, signs);
 *                   the quantize kernels' warp reduction of the scale,
 *                   emulated lane by lane with their own steps; the Q8_0 KV
 *                   row rounding against ref_kv_round;
 *   dot products    every quantized type's int8 dot, summed over a row as
 *                   the matrix-vector kernel's lanes sum it (slm_cu_dot_part
 *                   per part, a butterfly across lanes), against a double
 *                   sum of the decoded weights times the decoded
 *                   activations, within 4e-6 of Σ|w·x| (f32 products only);
 *   softmax         the parts a split context is cut into (cover it once);
 *                   the online update over random split points, merged in
 *                   random order with empty parts, against ref_attention;
 *   window, cap     the sliding window's span against the plain causal /
 *                   window test, its split parts (cover the span, never
 *                   start before it), the per-layer split plan; attention
 *                   with window and soft-cap through attend's per-part
 *                   steps, merged, against ref_attention (double);
 *   rope            the NORM / NEOX pairing with partial rotary, rotated
 *                   as rope_pairs does, against ref_rope (untouched dims
 *                   bit for bit);
 *   activations     SiLU, GELU (tanh and erf forms) and the soft-cap
 *                   against double formulas (ref_geglu / ref_gelu /
 *                   ref_softcap), over the whole useful range and at ±inf;
 *   layernorm       the kernel's 256 thread shares and halving tree,
 *                   against ref_layernorm, rows far from zero mean too.
 * Some cases feed the checker a wrong decoding, an off-by-one window or
 * the other GELU and expect it to object, so these comparisons can fail.
 *
 * What this does not show: that the kernels around these functions index,
 * reduce across lanes or synchronise correctly. That needs a GPU
 * (test_gpu_backend_ops, test_gpu_cuda_backend_ops).
 */
extern "C" {
#include "testutil.h"

#include "fp16.h"
#include "op_reference.h"
#include "quant.h"
}

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_logic.cuh"

static const slm_type wtypes[] = {
    SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1,
    SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K,
    SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_NL, SLM_TYPE_IQ4_XS,
};
#define N_WTYPES (sizeof wtypes / sizeof wtypes[0])

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static bool same_float(float a, float b)
{
    return slm_f32_bits(a) == slm_f32_bits(b) || (isnan(a) && isnan(b));
}

/* ------------------------------------------------------------------------ */
/* f16 / bf16                                                                */

static void fp16_exact(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        if (!same_float(slm_cu_f16_to_f32(h), slm_f16_to_f32((uint16_t)h)))
            fail_msg("f16 %04x: %a, reference %a", h, (double)slm_cu_f16_to_f32(h),
                     (double)slm_f16_to_f32((uint16_t)h));
        if (!same_float(slm_cu_bf16_to_f32(h), slm_bf16_to_f32((uint16_t)h)))
            fail_msg("bf16 %04x differs", h);
    }
    const float edges[] = {0.0f, -0.0f, 65504.0f, 65520.0f, 65519.99f, 6.1035156e-05f,
                           5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, INFINITY, -INFINITY,
                           NAN, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        assert_int_equal(slm_cu_f32_to_f16(edges[i]), slm_f32_to_f16(edges[i]));
    for (int i = 0; i < 1000000; i++) {
        float f = slm_f32_from_bits((uint32_t)tu_rand_u64());
        if (slm_cu_f32_to_f16(f) != slm_f32_to_f16(f))
            fail_msg("f32 %a to f16: %04x, reference %04x", (double)f, slm_cu_f32_to_f16(f),
                     slm_f32_to_f16(f));
    }
}

/* ------------------------------------------------------------------------ */
/* element decoding                                                          */

/* A row of nb blocks of `type`: the reference quantizer's coding of normal
 * values (random_bytes false) or random bytes with every f16 field left as
 * drawn (NaN and infinities included: both sides must agree on them too). */
static uint8_t *make_row(slm_type type, int64_t n, bool random_bytes)
{
    size_t bytes = slm_type_row_bytes((int)type, n);
    uint8_t *raw = (uint8_t *)xmalloc(bytes);
    if (random_bytes) {
        for (size_t i = 0; i < bytes; i++)
            raw[i] = (uint8_t)tu_rand_u64();
        return raw;
    }
    float *x = (float *)xmalloc((size_t)n * sizeof(float));
    tu_fill_normal(x, (size_t)n, tu_uniform(0.01f, 4.0f));
    assert_true(slm_quantize_row_ref((int)type, x, raw, n));
    free(x);
    return raw;
}

/* Mismatching elements of slm_cu_deq over a row decoded as `as`, against
 * the reference's decoding of the row as `type` (the same type, except in
 * the case that proves the checker can fail). */
static int64_t deq_mismatches(slm_type type, slm_type as, const uint8_t *raw, int64_t n)
{
    const slm_type_info *ti = slm_type_get((int)type);
    float *ref = (float *)xmalloc((size_t)n * sizeof(float));
    assert_true(slm_dequantize_row((int)type, raw, ref, n));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float got = slm_cu_deq_row((int)as, (int)ti->block_elems, (int)ti->block_bytes, raw, i);
        if (!same_float(got, ref[i])) {
            if (bad++ == 0 && as == type)
                fprintf(stderr, "%s element %lld: %a, reference %a\n", ti->name, (long long)i,
                        (double)got, (double)ref[i]);
        }
    }
    free(ref);
    return bad;
}

static int64_t ragged_elems(slm_type type)
{
    return (int64_t)slm_type_get((int)type)->block_elems * tu_int(1, 9);
}

static void deq_every_type(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_WTYPES; t++) {
        for (int pass = 0; pass < 6; pass++) {
            int64_t n = ragged_elems(wtypes[t]);
            uint8_t *raw = make_row(wtypes[t], n, pass % 2 == 1);
            int64_t bad = deq_mismatches(wtypes[t], wtypes[t], raw, n);
            if (bad)
                fail_msg("slm_cu_deq %s: %lld of %lld elements differ",
                         slm_type_name((int)wtypes[t]), (long long)bad, (long long)n);
            free(raw);
        }
    }
}

/* The checker objects to a wrong decoding: Q4_0 bytes read as IQ4_NL (same
 * block size, another code book) and Q4_K read as Q5_K's scales. */
static void checker_catches_wrong_result(void **state)
{
    (void)state;
    uint8_t *raw = make_row(SLM_TYPE_Q4_0, 64, false);
    assert_true(deq_mismatches(SLM_TYPE_Q4_0, SLM_TYPE_IQ4_NL, raw, 64) > 0);
    free(raw);
    raw = make_row(SLM_TYPE_Q6_K, 256, false);
    assert_true(deq_mismatches(SLM_TYPE_Q6_K, SLM_TYPE_Q3_K, raw, 256) > 0);
    free(raw);
}

/* ------------------------------------------------------------------------ */
/* activation formats                                                        */

/* 32·nb activations with the cases the scale search must get right: ties of
 * opposite sign at the maximum, all zeros, a single non-zero. */
static void fill_acts(float *x, int n)
{
    tu_fill_normal(x, (size_t)n, tu_uniform(0.1f, 3.0f));
    int kind = tu_int(0, 3);
    if (kind == 1) {
        x[tu_int(0, n - 1)] = 5.0f;
        x[tu_int(0, n - 1)] = -5.0f; /* may land first or second: both orders happen */
    } else if (kind == 2) {
        memset(x, 0, (size_t)n * sizeof(float));
    } else if (kind == 3) {
        memset(x, 0, (size_t)n * sizeof(float));
        x[tu_int(0, n - 1)] = tu_uniform(-1.0f, 1.0f);
    }
}

static void q8a_matches_q8_0(void **state)
{
    (void)state;
    for (int it = 0; it < 2000; it++) {
        float x[32];
        fill_acts(x, 32);
        slm_cu_q8a a;
        slm_block_q8_0 ref;
        slm_cu_quant_q8a(x, &a);
        assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_0, x, &ref, 32));
        assert_memory_equal(a.qs, ref.qs, 32);
        assert_true(same_float(a.d, slm_f16_to_f32(ref.d)));
        int sum = 0;
        for (int i = 0; i < 32; i++)
            sum += ref.qs[i];
        assert_int_equal(a.sum, sum);
    }
}

static void q8k_matches_q8_k(void **state)
{
    (void)state;
    for (int it = 0; it < 300; it++) {
        float x[256];
        fill_acts(x, 256);
        slm_cu_q8k a;
        slm_block_q8_k ref;
        slm_cu_quant_q8k(x, &a);
        assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_K, x, &ref, 256));
        assert_memory_equal(a.qs, ref.qs, 256);
        assert_memory_equal(a.bsums, ref.bsums, sizeof ref.bsums);
        assert_true(same_float(a.d, ref.d));
    }
}

/* The warp reduction of quantize_q8a / quantize_q8k, emulated lane by lane
 * with the kernels' own steps (slm_cu_absmax_local, then five butterfly
 * rounds of slm_cu_absmax_step, every lane reading its partner's pair from
 * before the round as __shfl_xor_sync does): every lane ends with the
 * serial scan's signed absmax, whatever the ties. */
static float warp_absmax(const float *x, int per_lane, int lane_out)
{
    float v[32], nv[32];
    int id[32], ni[32];
    for (int l = 0; l < 32; l++)
        slm_cu_absmax_local(x + per_lane * l, per_lane, per_lane * l, &v[l], &id[l]);
    for (int o = 16; o > 0; o >>= 1) {
        for (int l = 0; l < 32; l++) {
            nv[l] = v[l];
            ni[l] = id[l];
            slm_cu_absmax_step(&nv[l], &ni[l], v[l ^ o], id[l ^ o]);
        }
        memcpy(v, nv, sizeof v);
        memcpy(id, ni, sizeof id);
    }
    for (int l = 1; l < 32; l++)
        if (!same_float(v[l], v[0]) || id[l] != id[0])
            fail_msg("lanes 0 and %d disagree", l);
    return v[lane_out];
}

static void warp_absmax_is_serial(void **state)
{
    (void)state;
    for (int it = 0; it < 3000; it++) {
        int per_lane = it % 2 ? 8 : 1, n = 32 * per_lane;
        float x[256];
        fill_acts(x, n);
        if (it % 3 == 0) /* many ties of both signs at the top */
            for (int k = 0; k < 6; k++)
                x[tu_int(0, n - 1)] = tu_int(0, 1) ? 3.0f : -3.0f;
        float serial = x[0];
        for (int i = 1; i < n; i++)
            if (fabsf(x[i]) > fabsf(serial))
                serial = x[i];
        float got = warp_absmax(x, per_lane, tu_int(0, 31));
        if (!same_float(got, serial))
            fail_msg("warp absmax %g, serial %g (%d per lane)", (double)got, (double)serial,
                     per_lane);
    }
}

/* The parts of a split context cover it once, in order, for any split. */
static void split_ranges_cover(void **state)
{
    (void)state;
    for (int n_pos = 1; n_pos < 300; n_pos += tu_int(1, 7))
        for (int n_split = 1; n_split <= 32; n_split++) {
            int next = 0;
            for (int s = 0; s < n_split; s++) {
                int p0, p1;
                slm_cu_split_range(n_pos, n_split, s, &p0, &p1);
                assert_true(p0 <= p1);
                if (p0 < p1) {
                    assert_int_equal(p0, next);
                    next = p1;
                }
            }
            assert_int_equal(next, n_pos);
        }
}

/* A Q8_0 KV row (kv_store's coding: blocks of 32, the tail zero-padded)
 * holds what ref_kv_round says the pool holds; so do the CPU's Q8_0 and
 * F16 rows read back with attention's slm_cu_kv_elem. */
static void q8_0_kv_rows(void **state)
{
    (void)state;
    for (int it = 0; it < 200; it++) {
        int hd = tu_int(1, 260);
        float src[288] = {0}, want[288], got[288];
        fill_acts(src, hd);
        ref_kv_round(SLM_TYPE_Q8_0, src, want, hd);
        for (int b0 = 0; b0 < hd; b0 += 32) {
            float blk[32] = {0};
            memcpy(blk, src + b0, (size_t)(hd - b0 < 32 ? hd - b0 : 32) * sizeof(float));
            slm_cu_q8a a;
            slm_cu_quant_q8a(blk, &a);
            for (int i = b0; i < hd && i < b0 + 32; i++)
                got[i] = a.d * (float)a.qs[i - b0];
        }
        for (int i = 0; i < hd; i++)
            if (!same_float(got[i], want[i]))
                fail_msg("Q8_0 KV row of %d, element %d: %g, reference %g", hd, i,
                         (double)got[i], (double)want[i]);
        uint8_t row[9 * 34];
        float padded[288] = {0};
        memcpy(padded, src, (size_t)hd * sizeof(float));
        assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_0, padded, row, (hd + 31) / 32 * 32));
        for (int i = 0; i < hd; i++)
            assert_true(same_float(slm_cu_kv_elem(SLM_TYPE_Q8_0, row, i), want[i]));
        uint16_t h[288];
        ref_kv_round(SLM_TYPE_F16, src, want, hd);
        for (int i = 0; i < hd; i++)
            h[i] = slm_f32_to_f16(src[i]);
        for (int i = 0; i < hd; i++)
            assert_true(same_float(slm_cu_kv_elem(SLM_TYPE_F16, (const uint8_t *)h, i), want[i]));
    }
}

/* ------------------------------------------------------------------------ */
/* int8 dot products                                                         */

/* One row of n weights of a quantized type against n activations, the way
 * matvec.cu sums it (block by block, part by part), against Σ of decoded
 * weights × decoded activations in double. Returns the error over the
 * tolerance (≤ 1 passes). */
static double dot_ratio(slm_type type, const uint8_t *w, const float *x, int64_t n)
{
    const slm_type_info *ti = slm_type_get((int)type);
    bool k = ti->block_elems == 256;
    float *wd = (float *)xmalloc((size_t)n * sizeof(float));
    float *xd = (float *)xmalloc((size_t)n * sizeof(float));
    void *xq = xmalloc(slm_type_row_bytes(k ? SLM_TYPE_Q8_K : SLM_TYPE_Q8_0, n));
    assert_true(slm_dequantize_row((int)type, w, wd, n));
    assert_true(slm_quantize_row_ref(k ? SLM_TYPE_Q8_K : SLM_TYPE_Q8_0, x, xq, n));
    assert_true(slm_dequantize_row(k ? SLM_TYPE_Q8_K : SLM_TYPE_Q8_0, xq, xd, n));
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        ref += (double)wd[i] * xd[i];
        mag += fabs((double)wd[i] * xd[i]);
    }
    /* Types with a minimum (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) sum two f32 terms
     * per part, codes·scale·Σqx and min·Σx, each up to about max|w|·Σ|x|
     * even where they cancel: their rounding is measured against that. */
    if (type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1 || type == SLM_TYPE_Q2_K ||
        type == SLM_TYPE_Q4_K || type == SLM_TYPE_Q5_K)
        for (int64_t p0 = 0; p0 < n; p0 += 32) {
            double wmax = 0, xsum = 0;
            for (int64_t i = p0; i < p0 + 32; i++) {
                wmax = fmax(wmax, fabs((double)wd[i]));
                xsum += fabs((double)xd[i]);
            }
            mag += 3 * wmax * xsum;
        }
    /* the row's activation blocks, then matvec_q's sum: lane l takes parts
     * l, l+32, ...; the lanes' sums meet in a butterfly */
    void *act = xmalloc((size_t)n / 32 * sizeof(slm_cu_q8a)); /* ≥ n / 256 q8k */
    for (int64_t b = 0; b < n / ti->block_elems; b++) {
        if (k)
            slm_cu_quant_q8k(x + b * 256, (slm_cu_q8k *)act + b);
        else
            slm_cu_quant_q8a(x + b * 32, (slm_cu_q8a *)act + b);
    }
    float lane[32] = {0}, next[32];
    for (int l = 0; l < 32; l++)
        for (int64_t p = l; p < n / 32; p += 32)
            lane[l] += slm_cu_dot_part((int)type, (int)ti->block_elems, (int)ti->block_bytes, w,
                                       act, p);
    for (int o = 16; o > 0; o >>= 1) {
        for (int l = 0; l < 32; l++)
            next[l] = lane[l] + lane[l ^ o];
        memcpy(lane, next, sizeof lane);
    }
    float got = lane[0];
    free(act);
    free(wd);
    free(xd);
    free(xq);
    /* f32 products of at most four factors per part and an f32 sum over the
     * parts: ≤ (4 + parts)·2⁻²⁴ of Σ|w·x|; 4e-6 of it, plus 1e-30 so an
     * exact zero passes. */
    double err = fabs((double)got - ref);
    return isnan(got) ? INFINITY : err / (4e-6 * mag + 1e-30);
}

static void dot_every_quant_type(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_WTYPES; t++) {
        if (slm_type_get((int)wtypes[t])->block_elems == 1)
            continue; /* float weights: f32 activations, no int8 path */
        for (int pass = 0; pass < 20; pass++) {
            int64_t n = ragged_elems(wtypes[t]);
            uint8_t *w = make_row(wtypes[t], n, false);
            float *x = (float *)xmalloc((size_t)n * sizeof(float));
            fill_acts(x, (int)n);
            double r = dot_ratio(wtypes[t], w, x, n);
            if (r > 1.0)
                fail_msg("dot %s, %lld elements: error %.3g of the tolerance",
                         slm_type_name((int)wtypes[t]), (long long)n, r);
            free(w);
            free(x);
        }
    }
}

/* A corrupted weight byte moves the dot off its reference (the checker is
 * not blind to the weights). */
static void dot_checker_fails(void **state)
{
    (void)state;
    int64_t n = 256;
    uint8_t *w = make_row(SLM_TYPE_Q4_K, n, false);
    float *x = (float *)xmalloc((size_t)n * sizeof(float));
    tu_fill_normal(x, (size_t)n, 1.0f);
    assert_true(dot_ratio(SLM_TYPE_Q4_K, w, x, n) <= 1.0);
    /* every code of sub-block 0 moved by one: Σ changes by Σ x of it */
    for (int i = 0; i < 32; i++)
        ((slm_block_q4_k *)w)->qs[i] ^= 0x01;
    double bad = 0;
    /* compare the corrupted blocks' dot with the uncorrupted reference */
    slm_cu_q8k a;
    slm_cu_quant_q8k(x, &a);
    for (int p = 0; p < 8; p++)
        bad += slm_cu_dot256(SLM_TYPE_Q4_K, w, &a, p);
    for (int i = 0; i < 32; i++)
        ((slm_block_q4_k *)w)->qs[i] ^= 0x01;
    double good = 0;
    for (int p = 0; p < 8; p++)
        good += slm_cu_dot256(SLM_TYPE_Q4_K, w, &a, p);
    assert_true(fabs(bad - good) > 1e-3 * fabs(good) || fabs(bad - good) > 1e-3);
    free(w);
    free(x);
}

/* ------------------------------------------------------------------------ */
/* online softmax, split and merged                                          */

/* One head over n positions, cut into random parts (some empty), each run
 * with slm_cu_osm_push as a warp of attention.cu does, merged in a random
 * order with slm_cu_osm_merge, then normalized. */
static void attend_split(const float *q, const float *k, const float *v, int n, int hd,
                         float scale, float *out)
{
    int n_parts = tu_int(1, 6);
    int cut[8];
    cut[0] = 0;
    cut[n_parts] = n;
    for (int i = 1; i < n_parts; i++)
        cut[i] = tu_int(0, n);
    for (int i = 1; i < n_parts; i++) /* sort the inner cuts */
        for (int j = i; j > 1 && cut[j] < cut[j - 1]; j--) {
            int t = cut[j];
            cut[j] = cut[j - 1];
            cut[j - 1] = t;
        }
    slm_cu_osm st[8];
    float *acc = (float *)xmalloc((size_t)n_parts * hd * sizeof(float));
    for (int pi = 0; pi < n_parts; pi++) {
        st[pi] = slm_cu_osm_init();
        float *a = acc + (size_t)pi * hd;
        for (int i = 0; i < hd; i++)
            a[i] = 0;
        for (int p = cut[pi]; p < cut[pi + 1]; p++) {
            float s = 0, corr, w;
            for (int i = 0; i < hd; i++)
                s += q[i] * scale * k[(size_t)p * hd + i];
            slm_cu_osm_push(&st[pi], s, &corr, &w);
            for (int i = 0; i < hd; i++)
                a[i] = a[i] * corr + w * v[(size_t)p * hd + i];
        }
    }
    int first = tu_int(0, n_parts - 1);
    slm_cu_osm all = st[first];
    for (int i = 0; i < hd; i++)
        out[i] = acc[(size_t)first * hd + i];
    for (int pi = 0; pi < n_parts; pi++) {
        if (pi == first)
            continue;
        float ca, cb;
        slm_cu_osm_merge(&all, st[pi], &ca, &cb);
        for (int i = 0; i < hd; i++)
            out[i] = out[i] * ca + acc[(size_t)pi * hd + i] * cb;
    }
    for (int i = 0; i < hd; i++)
        out[i] /= all.l;
    free(acc);
}

static void softmax_split_merge(void **state)
{
    (void)state;
    for (int it = 0; it < 300; it++) {
        int n = tu_int(1, 300), hd = tu_int(1, 130);
        float *q = (float *)xmalloc((size_t)hd * 4), *k = (float *)xmalloc((size_t)n * hd * 4);
        float *v = (float *)xmalloc((size_t)n * hd * 4), *got = (float *)xmalloc((size_t)hd * 4);
        double *ref = (double *)xmalloc((size_t)hd * 8), *tol = (double *)xmalloc((size_t)hd * 8);
        tu_fill_normal(q, (size_t)hd, tu_uniform(0.5f, 3.0f));
        tu_fill_normal(k, (size_t)n * hd, 1.0f);
        tu_fill_normal(v, (size_t)n * hd, 1.0f);
        float scale = 1.0f / sqrtf((float)hd);
        attend_split(q, k, v, n, hd, scale, got);
        slm_attn_params ap = {scale, 0.0f, 0};
        ref_attention(q, 1, 1, hd, &ap, k, v, (size_t)hd, n, ref);
        /* f32 scores (hd-term sums: ~hd·2⁻²⁴ relative each, times |s| up to
         * ~10 through exp), the exp and the weighted f32 sums: 2e-5 of the
         * largest |v| bounds it with room; outputs are averages of v. */
        double vmax = 0;
        for (size_t i = 0; i < (size_t)n * hd; i++)
            vmax = fmax(vmax, fabs(v[i]));
        for (int i = 0; i < hd; i++)
            tol[i] = 2e-5 * vmax * (1 + hd / 64.0);
        char what[64];
        snprintf(what, sizeof what, "attention %d positions, head %d", n, hd);
        tu_expect_close_d(what, got, ref, tol, (size_t)hd);
        free(q);
        free(k);
        free(v);
        free(got);
        free(ref);
        free(tol);
    }
}

/* ------------------------------------------------------------------------ */
/* sliding window and soft-cap                                               */

/* The span of a token is exactly the positions the plain test admits
 * (0 <= j <= p, and p − window < j when window > 0); the split parts cover
 * it once, in order, and none starts before it (no KV block wholly before
 * the window is read); a layer's plan needs no more parts than the longest
 * span of its step. */
static void window_span_and_parts(void **state)
{
    (void)state;
    for (int p = 0; p < 150; p++)
        for (int w = 0; w < 160; w += 1 + (w > 40) * 7) {
            int lo, hi;
            slm_cu_attn_span(p, w, &lo, &hi);
            for (int j = 0; j <= p + 2; j++) {
                bool plain = j <= p && (w == 0 || j > p - w);
                if (plain != (j >= lo && j < hi) || plain != slm_cu_in_window(p, j, w))
                    fail_msg("position %d, window %d: j %d is %s", p, w, j,
                             plain ? "in the window but not the span" : "outside the window");
            }
            for (int n_split = 1; n_split <= 32; n_split += 1 + (n_split > 8) * 4) {
                int next = lo;
                for (int s = 0; s < n_split; s++) {
                    int p0, p1;
                    slm_cu_attn_part(p, w, n_split, s, &p0, &p1);
                    assert_true(p0 <= p1 && p0 >= lo && p1 <= hi);
                    if (p0 < p1) {
                        assert_int_equal(p0, next);
                        next = p1;
                    }
                }
                assert_int_equal(next, hi);
            }
        }
    for (int n_ctx = 1; n_ctx < 200; n_ctx += 3)
        for (int w = 0; w < 220; w += 5) {
            int longest = 0;
            for (int p = 0; p < n_ctx; p++) {
                int lo, hi;
                slm_cu_attn_span(p, w, &lo, &hi);
                longest = hi - lo > longest ? hi - lo : longest;
            }
            assert_int_equal(slm_cu_window_ctx(n_ctx, w), longest);
        }
}

/* One query token at position pos as attention.cu computes it: n_split
 * parts of the span of window `window` (slm_cu_attn_part), each a run of
 * slm_cu_osm_push on soft-capped f32 scores of the pre-scaled q (attend),
 * merged in split order (merge_parts), normalized. k and v rows are hd
 * floats, position j at j·hd. */
static void attend_windowed(const float *q, const float *k, const float *v, int pos, int hd,
                            const slm_attn_params *p, int window, int n_split, float *out)
{
    float *acc = (float *)xmalloc((size_t)hd * sizeof(float));
    slm_cu_osm all = slm_cu_osm_init();
    for (int i = 0; i < hd; i++)
        out[i] = 0.0f;
    for (int s = 0; s < n_split; s++) {
        int p0, p1;
        slm_cu_attn_part(pos, window, n_split, s, &p0, &p1);
        slm_cu_osm st = slm_cu_osm_init();
        for (int i = 0; i < hd; i++)
            acc[i] = 0.0f;
        for (int j = p0; j < p1; j++) {
            float d = 0.0f, corr, w;
            for (int i = 0; i < hd; i++)
                d += q[i] * p->scale * k[(size_t)j * hd + i];
            slm_cu_osm_push(&st, slm_cu_softcap(d, p->softcap), &corr, &w);
            for (int i = 0; i < hd; i++)
                acc[i] = acc[i] * corr + w * v[(size_t)j * hd + i];
        }
        float ca, cb;
        slm_cu_osm_merge(&all, st, &ca, &cb);
        for (int i = 0; i < hd; i++)
            out[i] = out[i] * ca + (cb != 0.0f ? acc[i] * cb : 0.0f);
    }
    for (int i = 0; i < hd; i++)
        out[i] /= all.l;
    free(acc);
}

/* The largest |got − ref| / tol over n (> 1: the comparison fails). */
static double worst_ratio(const float *got, const double *ref, const double *tol, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = isnan(got[i]) ? INFINITY : fabs((double)got[i] - ref[i]) / tol[i];
        worst = r > worst ? r : worst;
    }
    return worst;
}

/* Windowed, soft-capped attention of one token through the split path
 * (1 to 32 parts) against ref_attention over positions 0..pos. Returns
 * the worst error over its tolerance. */
static double windowed_ratio(int pos, int hd, const slm_attn_params *ap, int n_split)
{
    int n = pos + 1;
    float *q = (float *)xmalloc((size_t)hd * 4), *k = (float *)xmalloc((size_t)n * hd * 4);
    float *v = (float *)xmalloc((size_t)n * hd * 4), *got = (float *)xmalloc((size_t)hd * 4);
    double *ref = (double *)xmalloc((size_t)hd * 8), *tol = (double *)xmalloc((size_t)hd * 8);
    /* q large enough that scores reach the cap (|s| up to ~3·cap) */
    tu_fill_normal(q, (size_t)hd, tu_uniform(0.5f, 6.0f));
    tu_fill_normal(k, (size_t)n * hd, 1.0f);
    tu_fill_normal(v, (size_t)n * hd, 1.0f);
    attend_windowed(q, k, v, pos, hd, ap, ap->window, n_split, got);
    ref_attention(q, 1, 1, hd, ap, k, v, (size_t)hd, n, ref);
    /* as softmax_split_merge: f32 scores of hd terms, exp, weighted f32
     * sums; tanh (the cap) only shrinks a score's error. Outputs are
     * averages of v: 2e-5 of the largest |v| (scaled with hd) bounds it. */
    double vmax = 0;
    for (size_t i = 0; i < (size_t)n * hd; i++)
        vmax = fmax(vmax, fabs(v[i]));
    for (int i = 0; i < hd; i++)
        tol[i] = 2e-5 * vmax * (1 + hd / 64.0);
    double r = worst_ratio(got, ref, tol, (size_t)hd);
    free(q);
    free(k);
    free(v);
    free(got);
    free(ref);
    free(tol);
    return r;
}

static void attention_window_softcap(void **state)
{
    (void)state;
    for (int it = 0; it < 400; it++) {
        int pos = tu_int(0, 300), hd = it % 8 == 0 ? 256 : tu_int(1, 256);
        slm_attn_params ap;
        ap.scale = 1.0f / sqrtf((float)hd);
        ap.softcap = tu_int(0, 2) ? tu_uniform(1.0f, 2.5f) : 0.0f;
        ap.window = tu_int(0, 3) ? tu_int(1, pos + 10) : 0;
        int n_split = tu_int(0, 1) ? 1 : tu_int(2, 32);
        double r = windowed_ratio(pos, hd, &ap, n_split);
        if (r > 1.0)
            fail_msg("position %d, head %d, window %d, softcap %g, %d parts: error %.3g of the "
                     "tolerance",
                     pos, hd, ap.window, (double)ap.softcap, n_split, r);
    }
}

/* The checker sees a window one position too wide (equal scores, v of
 * position j all j: the window of 3 at position 60 averages 59, one of 4
 * 58.5), and a soft-cap left out (scores 12 and 0, the first capped to
 * ~1). */
static void window_checker_fails(void **state)
{
    (void)state;
    enum { NP = 61, HD = 16 };
    float *kk = (float *)xmalloc(NP * HD * 4), *vv = (float *)xmalloc(NP * HD * 4);
    float q[HD], k[2 * HD], v[2 * HD], got[HD];
    double ref[HD], tol[HD];
    for (int j = 0; j < NP * HD; j++) {
        kk[j] = 1.0f;
        vv[j] = (float)(j / HD);
    }
    for (int i = 0; i < HD; i++) {
        q[i] = 1.0f;
        tol[i] = 1e-4;
    }
    slm_attn_params ap = {0.25f, 0.0f, 3};
    ref_attention(q, 1, 1, HD, &ap, kk, vv, HD, NP, ref);
    attend_windowed(q, kk, vv, NP - 1, HD, &ap, 3, 4, got);
    assert_true(worst_ratio(got, ref, tol, HD) <= 1.0);
    attend_windowed(q, kk, vv, NP - 1, HD, &ap, 4, 4, got);
    assert_true(worst_ratio(got, ref, tol, HD) > 1.0);
    free(kk);
    free(vv);
    for (int i = 0; i < 16; i++) {
        q[i] = 3.0f;
        k[i] = 1.0f;       /* position 0: score 16·3·0.25 = 12, capped to ~1 */
        k[16 + i] = 0.0f;  /* position 1: score 0 */
        v[i] = 1.0f;
        v[16 + i] = -1.0f;
        tol[i] = 1e-4;
    }
    slm_attn_params capped = {0.25f, 1.0f, 0}, uncapped = {0.25f, 0.0f, 0};
    ref_attention(q, 1, 1, 16, &capped, k, v, 16, 2, ref);
    attend_windowed(q, k, v, 1, 16, &capped, 0, 2, got);
    assert_true(worst_ratio(got, ref, tol, 16) <= 1.0);
    attend_windowed(q, k, v, 1, 16, &uncapped, 0, 2, got);
    assert_true(worst_ratio(got, ref, tol, 16) > 1.0);
}

/* ------------------------------------------------------------------------ */
/* RoPE: pairing and partial rotary                                          */

/* n tokens of n_heads heads rotated as rope_pairs does (a thread per token
 * and pair: the angle in double, its cos and sin in f32, then
 * slm_cu_rope_pair / slm_cu_rope_rotate on every head), against ref_rope;
 * elements no pair covers (past n_rot, between rows) must come back bit
 * for bit. */
static void rope_partial_rotary(void **state)
{
    (void)state;
    for (int it = 0; it < 300; it++) {
        int head_dim = it % 5 == 0 ? 256 : 2 * tu_int(1, 128);
        int n_rot = tu_int(0, 2) ? 2 * tu_int(1, head_dim / 2) : head_dim;
        int n_heads = tu_int(1, 4), n = tu_int(1, 5);
        int stride = n_heads * head_dim + tu_int(0, 1) * tu_int(1, 9);
        slm_rope_params p = {tu_int(0, 1) ? SLM_ROPE_NEOX : SLM_ROPE_NORM, n_rot, 10000.0f,
                             1.0f, NULL};
        if (it % 3 == 0)
            p.freq_base = 1000000.0f;
        int32_t pos[5];
        for (int t = 0; t < n; t++)
            pos[t] = tu_int(0, 8000);
        size_t extent = (size_t)(n - 1) * stride + (size_t)n_heads * head_dim;
        float *x = (float *)xmalloc(extent * 4), *got = (float *)xmalloc(extent * 4);
        double *ref = (double *)xmalloc(extent * 8), *tol = (double *)xmalloc(extent * 8);
        tu_fill_normal(x, extent, 2.0f);
        memcpy(got, x, extent * 4);
        int half = n_rot / 2, neox = p.mode == SLM_ROPE_NEOX;
        for (int t = 0; t < n; t++)
            for (int kk = 0; kk < half; kk++) {
                double theta = (double)pos[t] * slm_rope_inv_freq(&p, kk);
                float c = (float)cos(theta), sn = (float)sin(theta);
                int a, b;
                slm_cu_rope_pair(neox, n_rot, kk, &a, &b);
                for (int h = 0; h < n_heads; h++)
                    slm_cu_rope_rotate(got + (size_t)t * stride + (size_t)h * head_dim, a, b, c,
                                       sn);
            }
        ref_rope(&p, pos, n, x, stride, n_heads, head_dim, ref, NULL);
        for (size_t i = 0; i < extent; i++) {
            int e = (int)(i % (size_t)stride);
            bool rotated = e < n_heads * head_dim && e % head_dim < n_rot;
            if (!rotated) {
                if (!same_float(got[i], x[i]))
                    fail_msg("rope %s, n_rot %d of %d: element %d moved",
                             neox ? "neox" : "norm", n_rot, head_dim, e);
                tol[i] = 0;
                continue;
            }
            /* the pair's two inputs: cos and sin rounded to f32 (2⁻²⁴ each),
             * two products and a sum in f32: < 3·2⁻²⁴·(|x0| + |x1|) */
            int d = e % head_dim, partner = neox ? (d < half ? d + half : d - half) : d ^ 1;
            size_t row = i - (size_t)d;
            tol[i] = 2.5e-7 * (fabs(x[row + d]) + fabs(x[row + partner])) + 1e-30;
        }
        for (size_t i = 0; i < extent; i++)
            if (tol[i] > 0 && fabs((double)got[i] - ref[i]) > tol[i])
                fail_msg("rope %s, n_rot %d of %d, element %zu: %g, reference %g",
                         neox ? "neox" : "norm", n_rot, head_dim, i, (double)got[i], ref[i]);
        free(x);
        free(got);
        free(ref);
        free(tol);
    }
}

/* ------------------------------------------------------------------------ */
/* activations                                                               */

/* Inputs over the range each activation is not yet saturated or
 * underflowed, a fine grid plus random draws, and the extremes. */
static float *act_inputs(size_t *n)
{
    size_t grid = 24 * 256 + 1, rnd = 100000;
    float *x = (float *)xmalloc((grid + rnd + 8) * sizeof(float));
    size_t k = 0;
    for (size_t i = 0; i < grid; i++)
        x[k++] = -12.0f + (float)i / 256.0f;
    tu_fill_normal(x + k, rnd, 3.0f);
    k += rnd;
    const float edges[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e20f, -1e20f, INFINITY, -INFINITY};
    for (size_t i = 0; i < 8; i++)
        x[k++] = edges[i];
    *n = k;
    return x;
}

/* got against want (double) within rel·|want| + abs; the worst ratio. */
static double act_ratio(float got, double want, double rel, double abs_tol)
{
    if (isinf(want) || isnan(want))
        return (double)got == want || (isnan(got) && isnan(want)) ? 0 : INFINITY;
    if (isnan(got))
        return INFINITY;
    return fabs((double)got - want) / (rel * fabs(want) + abs_tol);
}

static void activations_against_double(void **state)
{
    (void)state;
    size_t n;
    float *x = act_inputs(&n);
    float *one = (float *)xmalloc(n * sizeof(float));
    double *rg = (double *)xmalloc(n * 8), *re = (double *)xmalloc(n * 8);
    double *rs = (double *)xmalloc(n * 8);
    for (size_t i = 0; i < n; i++)
        one[i] = 1.0f;
    float cap = 2.5f;
    ref_geglu(x, one, (int)n, 1, (int)n, rg);
    ref_gelu(x, n, re);
    ref_softcap(x, cap, n, rs);
    for (size_t i = 0; i < n; i++) {
        double xd = x[i];
        if (isinf(xd)) {
            /* as the formulas in double: +inf → +inf; −inf → NaN (−inf·0)
             * for both GELUs; ±cap for the soft-cap */
            assert_true(act_ratio(slm_cu_gelu_tanh(x[i]), rg[i], 0, 0) == 0);
            assert_true(act_ratio(slm_cu_gelu_erf(x[i]), re[i], 0, 0) == 0);
            assert_true(slm_cu_softcap(x[i], cap) == (xd > 0 ? cap : -cap));
            continue;
        }
        double z = 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd);
        double u = fabs(xd) / sqrt(2.0);
        /* the same functions in forms exact in double where the reference's
         * 1 + tanh / 1 + erf cancel (x ≪ 0) */
        double gt = xd / (1.0 + exp(-2.0 * z)), ge = 0.5 * xd * erfc(-xd / sqrt(2.0));
        double silu = xd / (1.0 + exp(-xd));
        /* f32 tolerances, relative, from the condition of each form: z
         * (no cancellation: x and x³ share a sign) to ~4 roundings, which
         * exp turns into 2|z| times that; erfc's argument rounded once,
         * which erfc turns into 2u² times it; tanh(x/cap) and exp(−x) well
         * conditioned (a few roundings); 1e-37 absolute for results near
         * f32's smallest normal. */
        double r[] = {
            act_ratio(slm_cu_gelu_tanh(x[i]), gt, 3e-7 + 6e-7 * fabs(z), 1e-37),
            act_ratio(slm_cu_gelu_erf(x[i]), ge, 4e-7 + 2e-7 * u * u, 1e-37),
            act_ratio(slm_cu_softcap(x[i], cap), rs[i], 4e-7, 1e-37),
            act_ratio(slm_cu_silu(x[i]), silu, 3e-7 + 1.2e-7 * fabs(xd), 1e-37),
            /* and the op-parity test's tolerance against the shared
             * reference (1e-6 absolute, 4e-6 relative) */
            act_ratio(slm_cu_gelu_tanh(x[i]), rg[i], 4e-6, 1e-6),
            act_ratio(slm_cu_gelu_erf(x[i]), re[i], 4e-6, 1e-6),
        };
        static const char *names[] = {"gelu_tanh", "gelu_erf", "softcap", "silu",
                                      "gelu_tanh vs ref_geglu", "gelu_erf vs ref_gelu"};
        for (int k = 0; k < 6; k++)
            if (r[k] > 1.0)
                fail_msg("%s(%a): error %.3g of the tolerance", names[k], xd, r[k]);
    }
    free(x);
    free(one);
    free(rg);
    free(re);
    free(rs);
}

/* The comparison tells the two GELUs apart (they differ by up to ~2e-4 near
 * |x| ≈ 2), so a kernel calling the wrong one fails. */
static void gelu_checker_fails(void **state)
{
    (void)state;
    double worst = 0;
    for (float x = -4.0f; x <= 4.0f; x += 1.0f / 64) {
        double xd = x, ge = 0.5 * xd * erfc(-xd / sqrt(2.0));
        double r = act_ratio(slm_cu_gelu_tanh(x), ge, 4e-6, 1e-6);
        worst = r > worst ? r : worst;
    }
    assert_true(worst > 1.0);
}

/* ------------------------------------------------------------------------ */
/* layernorm                                                                 */

/* A row as layernorm_rows computes it with 256 threads: x += add, every
 * thread's share (slm_cu_ln_share), block_sum's halving tree, the mean,
 * then the centred sum the same way, then each element. */
#define LN_THREADS 256
static float ln_tree(float *part)
{
    for (int s = LN_THREADS / 2; s > 0; s >>= 1)
        for (int t = 0; t < s; t++)
            part[t] += part[t + s];
    return part[0];
}

static void ln_row(float *x, const float *add, const float *w, const float *b, float eps, int d,
                   float *y)
{
    float part[LN_THREADS];
    if (add)
        for (int i = 0; i < d; i++)
            x[i] += add[i];
    for (int t = 0; t < LN_THREADS; t++)
        part[t] = slm_cu_ln_share(x, d, t, LN_THREADS, 0.0f, false);
    float mean = ln_tree(part) / (float)d;
    for (int t = 0; t < LN_THREADS; t++)
        part[t] = slm_cu_ln_share(x, d, t, LN_THREADS, mean, true);
    float inv = slm_cu_ln_inv(ln_tree(part), d, eps);
    for (int i = 0; i < d; i++)
        y[i] = slm_cu_ln_out(x[i], mean, inv, w[i], b ? b[i] : 0.0f);
}

static void layernorm_rows_against_double(void **state)
{
    (void)state;
    for (int it = 0; it < 300; it++) {
        int d = it % 10 == 0 ? tu_int(1, 3) : tu_int(1, 5000);
        bool far = it % 3 == 0, residual = tu_int(0, 1), bias = tu_int(0, 1);
        float eps = tu_int(0, 1) ? 1e-5f : 1e-6f;
        float *x = (float *)xmalloc((size_t)d * 4), *a = (float *)xmalloc((size_t)d * 4);
        float *w = (float *)xmalloc((size_t)d * 4), *b = (float *)xmalloc((size_t)d * 4);
        float *xk = (float *)xmalloc((size_t)d * 4), *rx = (float *)xmalloc((size_t)d * 4);
        float *y = (float *)xmalloc((size_t)d * 4);
        double *ref = (double *)xmalloc((size_t)d * 8), *tol = (double *)xmalloc((size_t)d * 8);
        /* far: a mean 1000× the spread, where Σx² − (Σx)²/d in f32 would
         * lose every digit of the variance */
        float mean0 = far ? tu_uniform(-1000.0f, 1000.0f) : tu_uniform(-4.0f, 4.0f);
        tu_fill_normal(x, (size_t)d, far ? 1.0f : 3.0f);
        for (int i = 0; i < d; i++)
            x[i] += mean0;
        tu_fill_normal(a, (size_t)d, 1.0f);
        tu_fill_uniform(w, (size_t)d, 0.5f, 1.5f);
        tu_fill_normal(b, (size_t)d, 1.0f);
        memcpy(xk, x, (size_t)d * 4);
        ln_row(xk, residual ? a : NULL, w, bias ? b : NULL, eps, d, y);
        ref_layernorm(x, residual ? a : NULL, w, bias ? b : NULL, eps, 1, d, rx, ref);
        if (memcmp(xk, rx, (size_t)d * 4) != 0)
            fail_msg("layernorm: x + add differs from the reference's f32 sum");
        /* γ: the f32 sums' relative error (a thread's share of ⌈d/256⌉
         * terms, then 8 tree levels, then the division): the mean is off by
         * ≤ γ·mean|x|, which moves every centred value by that over σ
         * (σ = sqrt(var + eps)); the variance by ≤ 2γ; the element's own
         * x − mean, ·inv, ·w, +b by a few roundings. 4× that bound. */
        double mabs = 0, m = 0, var = 0;
        for (int i = 0; i < d; i++) {
            mabs += fabs(rx[i]);
            m += rx[i];
        }
        mabs /= d;
        m /= d;
        for (int i = 0; i < d; i++)
            var += (rx[i] - m) * (rx[i] - m);
        double sigma = sqrt(var / d + eps);
        double gamma = ((d + LN_THREADS - 1) / LN_THREADS + 9) * 0x1p-24;
        for (int i = 0; i < d; i++) {
            double bi = bias ? fabs(b[i]) : 0.0, yc = fabs(ref[i] - (bias ? b[i] : 0.0));
            tol[i] = 4 * gamma * (1 + mabs / sigma) * (fabs(w[i]) + yc) +
                     4e-7 * (fabs(ref[i]) + bi + fabs(w[i]) * fabs(rx[i]) / sigma) + 1e-30;
        }
        char what[96];
        snprintf(what, sizeof what, "layernorm d %d, mean %g%s%s", d, (double)mean0,
                 residual ? ", residual" : "", bias ? ", bias" : "");
        tu_expect_close_d(what, y, ref, tol, (size_t)d);
        free(x);
        free(a);
        free(w);
        free(b);
        free(xk);
        free(rx);
        free(y);
        free(ref);
        free(tol);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fp16_exact),
        cmocka_unit_test(deq_every_type),
        cmocka_unit_test(checker_catches_wrong_result),
        cmocka_unit_test(q8a_matches_q8_0),
        cmocka_unit_test(q8k_matches_q8_k),
        cmocka_unit_test(warp_absmax_is_serial),
        cmocka_unit_test(split_ranges_cover),
        cmocka_unit_test(q8_0_kv_rows),
        cmocka_unit_test(dot_every_quant_type),
        cmocka_unit_test(dot_checker_fails),
        cmocka_unit_test(softmax_split_merge),
        cmocka_unit_test(window_span_and_parts),
        cmocka_unit_test(attention_window_softcap),
        cmocka_unit_test(window_checker_fails),
        cmocka_unit_test(rope_partial_rotary),
        cmocka_unit_test(activations_against_double),
        cmocka_unit_test(gelu_checker_fails),
        cmocka_unit_test(layernorm_rows_against_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
