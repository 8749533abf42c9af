/*
 * dot_scalar.c — the portable kernels of the CPU matmul: a dot product for
 * every supported weight type and the two activation quantizers, in plain C.
 * This is the path every CPU has; the SIMD files (dot_avx2.c, dot_avx512.c,
 * dot_neon.c) speed up the common types and fall back here for the rest.
 *
 * Scheme: a weight block is first decoded to small integers (codes, per-group
 * integer scales and mins); each activation row then takes an integer dot
 * product per block against its 8-bit codes and adds it, scaled in f32, to
 * its own accumulator. The integer part is exact, so the only rounding is the
 * f32 scaling and summation, in block order.
 */
#include <math.h>
#include <string.h>

#include "cpu_dot.h"

/* ---------------------------------------------------------------------- */
/* Activation quantizers (the bit-exact reference for every SIMD level).  */

static void quant_q8_0(const float *x, slm_act_q8_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / SLM_QK; b++, x += SLM_QK, y++) {
        float amax = 0.0f;
        for (int j = 0; j < SLM_QK; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < SLM_QK; j++) {
            float v = x[j] * id;
            y->qs[j] = (int8_t)roundf(v);
            sum += y->qs[j];
        }
        y->d = slm_dot_f16_round(d);
        y->s = y->d * (float)sum;
    }
}

static void quant_q8_k(const float *x, slm_block_q8_k *y, int64_t n)
{
    for (int64_t b = 0; b < n / SLM_QK_K; b++, x += SLM_QK_K, y++) {
        /* the signed value of largest magnitude, the first one on ties */
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < SLM_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        memset(y->qs, 0, sizeof y->qs);
        y->d = 0.0f;
        if (max != 0.0f) {
            float iscale = -127.0f / max;
            for (int j = 0; j < SLM_QK_K; j++) {
                long q = lrintf(iscale * x[j]);
                y->qs[j] = (int8_t)(q < -127 ? -127 : q > 127 ? 127 : q);
            }
            y->d = 1.0f / iscale;
        }
        for (int g = 0; g < SLM_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += y->qs[16 * g + j];
            y->bsums[g] = (int16_t)sum;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* 32-element types against slm_act_q8_0.                                 */

/* A decoded 32-element weight block: w[e] = d·q[e] + m. */
typedef struct {
    float d, m;
    int8_t q[SLM_QK];
} wblk32;

static float h2f(uint16_t h) { return slm_f16_to_f32(h); }

/* Two half loops, so the nibble choice inside slm_qd_nib32 folds away. */
static void nibbles(const uint8_t *qs, int off, int8_t *q)
{
    for (int j = 0; j < SLM_QK / 2; j++) {
        q[j] = (int8_t)(slm_qd_nib32(qs, j) - off);
        q[j + 16] = (int8_t)(slm_qd_nib32(qs, j + 16) - off);
    }
}

static void fifth_bit(const uint8_t qh4[4], int off, int8_t *q)
{
    uint32_t qh = slm_qd_le32(qh4);
    for (int j = 0; j < SLM_QK; j++)
        q[j] = (int8_t)(q[j] + slm_qd_q5_hbit(qh, j) * 16 - off);
}

static void dec_q4_0(const void *p, wblk32 *o)
{
    const slm_block_q4_0 *b = p;
    o->d = h2f(b->d), o->m = 0.0f;
    nibbles(b->qs, 8, o->q);
}

static void dec_q4_1(const void *p, wblk32 *o)
{
    const slm_block_q4_1 *b = p;
    o->d = h2f(b->d), o->m = h2f(b->m);
    nibbles(b->qs, 0, o->q);
}

static void dec_q5_0(const void *p, wblk32 *o)
{
    const slm_block_q5_0 *b = p;
    o->d = h2f(b->d), o->m = 0.0f;
    nibbles(b->qs, 0, o->q);
    fifth_bit(b->qh, 16, o->q);
}

static void dec_q5_1(const void *p, wblk32 *o)
{
    const slm_block_q5_1 *b = p;
    o->d = h2f(b->d), o->m = h2f(b->m);
    nibbles(b->qs, 0, o->q);
    fifth_bit(b->qh, 0, o->q);
}

static void dec_q8_0(const void *p, wblk32 *o)
{
    const slm_block_q8_0 *b = p;
    o->d = h2f(b->d), o->m = 0.0f;
    memcpy(o->q, b->qs, SLM_QK);
}

static void dec_iq4_nl(const void *p, wblk32 *o)
{
    const slm_block_iq4_nl *b = p;
    o->d = h2f(b->d), o->m = 0.0f;
    for (int j = 0; j < SLM_QK / 2; j++) {
        o->q[j] = slm_iq4nl_values[slm_qd_nib32(b->qs, j)];
        o->q[j + 16] = slm_iq4nl_values[slm_qd_nib32(b->qs, j + 16)];
    }
}

/* The shared loop of the 32-element types: decode a block, then one integer
 * dot per activation row. has_min adds m·Σx from the row's s. */
static void dot_blk32(int64_t n, const void *w, size_t bytes, void (*dec)(const void *, wblk32 *),
                      int has_min, const void *x, size_t x_stride, int nr, float *out)
{
    float acc[SLM_DOT_MAX_ROWS] = {0};
    const uint8_t *wp = w;
    for (int64_t b = 0; b < n / SLM_QK; b++, wp += bytes) {
        wblk32 blk;
        dec(wp, &blk);
        for (int r = 0; r < nr; r++) {
            const slm_act_q8_0 *a = (const slm_act_q8_0 *)((const char *)x + r * x_stride) + b;
            int isum = 0;
            for (int j = 0; j < SLM_QK; j++)
                isum += blk.q[j] * a->qs[j];
            float dd = blk.d * a->d;
            acc[r] += dd * (float)isum;
            if (has_min) {
                float mm = blk.m * a->s;
                acc[r] += mm;
            }
        }
    }
    for (int r = 0; r < nr; r++)
        out[r] = acc[r];
}

#define DOT32(name, blk, dec, has_min)                                                        \
    static void name(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out) \
    {                                                                                         \
        dot_blk32(n, w, sizeof(blk), dec, has_min, x, xs, nr, out);                          \
    }
DOT32(dot_q4_0, slm_block_q4_0, dec_q4_0, 0)
DOT32(dot_q4_1, slm_block_q4_1, dec_q4_1, 1)
DOT32(dot_q5_0, slm_block_q5_0, dec_q5_0, 0)
DOT32(dot_q5_1, slm_block_q5_1, dec_q5_1, 1)
DOT32(dot_q8_0, slm_block_q8_0, dec_q8_0, 0)
DOT32(dot_iq4_nl, slm_block_iq4_nl, dec_iq4_nl, 0)

/* ---------------------------------------------------------------------- */
/* 256-element types against slm_block_q8_k.                              */

/* A decoded super-block: w[e] = d·sc[e/16]·q[e] − dmin·mn[e/16]. */
typedef struct {
    float d, dmin;
    int8_t q[SLM_QK_K];
    int16_t sc[16], mn[16];
} wblk256;

static void dec_q2_k(const void *p, wblk256 *o)
{
    const slm_block_q2_k *b = p;
    o->d = h2f(b->d), o->dmin = h2f(b->dmin);
    for (int g = 0; g < 16; g++) {
        o->sc[g] = (int16_t)(b->scales[g] & 0xF);
        o->mn[g] = (int16_t)(b->scales[g] >> 4);
    }
    for (int e = 0; e < SLM_QK_K; e++)
        o->q[e] = (int8_t)slm_qd_q2k_code(b->qs, e);
}

static void dec_q3_k(const void *p, wblk256 *o)
{
    const slm_block_q3_k *b = p;
    o->d = h2f(b->d), o->dmin = 0.0f;
    for (int g = 0; g < 16; g++) {
        o->sc[g] = (int16_t)(slm_qd_q3k_scale(b->scales, g) - 32);
        o->mn[g] = 0;
    }
    for (int e = 0; e < SLM_QK_K; e++) {
        int hbit = slm_qd_k_hbit(b->hmask, e);
        o->q[e] = (int8_t)(slm_qd_q2k_code(b->qs, e) + 4 * hbit - 4);
    }
}

/* Q4_K/Q5_K: each 6-bit scale and min covers two 16-element groups. */
static void k_scales(const uint8_t *S, wblk256 *o)
{
    for (int j = 0; j < 8; j++) {
        int sc, m;
        slm_qd_k_scale_min(S, j, &sc, &m);
        o->sc[2 * j] = o->sc[2 * j + 1] = (int16_t)sc;
        o->mn[2 * j] = o->mn[2 * j + 1] = (int16_t)m;
    }
}

static void dec_q4_k(const void *p, wblk256 *o)
{
    const slm_block_q4_k *b = p;
    o->d = h2f(b->d), o->dmin = h2f(b->dmin);
    k_scales(b->scales, o);
    for (int e = 0; e < SLM_QK_K; e++)
        o->q[e] = (int8_t)slm_qd_q4k_nibble(b->qs, e);
}

static void dec_q5_k(const void *p, wblk256 *o)
{
    const slm_block_q5_k *b = p;
    o->d = h2f(b->d), o->dmin = h2f(b->dmin);
    k_scales(b->scales, o);
    for (int e = 0; e < SLM_QK_K; e++)
        o->q[e] = (int8_t)(slm_qd_q4k_nibble(b->qs, e) | slm_qd_k_hbit(b->qh, e) << 4);
}

static void dec_q6_k(const void *p, wblk256 *o)
{
    const slm_block_q6_k *b = p;
    o->d = h2f(b->d), o->dmin = 0.0f;
    for (int g = 0; g < 16; g++) {
        o->sc[g] = b->scales[g];
        o->mn[g] = 0;
    }
    for (int e = 0; e < SLM_QK_K; e++)
        o->q[e] = (int8_t)(slm_qd_q6k_code(b->ql, b->qh, e) - 32);
}

static void dec_iq4_xs(const void *p, wblk256 *o)
{
    const slm_block_iq4_xs *b = p;
    o->d = h2f(b->d), o->dmin = 0.0f;
    for (int ib = 0; ib < 8; ib++) {
        int ls = slm_qd_iq4xs_scale(b->scales_l, b->scales_h, ib);
        o->sc[2 * ib] = o->sc[2 * ib + 1] = (int16_t)(ls - 32);
        o->mn[2 * ib] = o->mn[2 * ib + 1] = 0;
        for (int j = 0; j < SLM_QK / 2; j++) {
            o->q[32 * ib + j] = slm_iq4nl_values[slm_qd_nib32(b->qs + 16 * ib, j)];
            o->q[32 * ib + j + 16] = slm_iq4nl_values[slm_qd_nib32(b->qs + 16 * ib, j + 16)];
        }
    }
}

/* The shared loop of the 256-element types. The integer sums fit int32:
 * at most 16 groups · 16 · 127 · 127 · 63. */
static void dot_blk256(int64_t n, const void *w, size_t bytes, void (*dec)(const void *, wblk256 *),
                       const void *x, size_t x_stride, int nr, float *out)
{
    float acc[SLM_DOT_MAX_ROWS] = {0};
    const uint8_t *wp = w;
    for (int64_t b = 0; b < n / SLM_QK_K; b++, wp += bytes) {
        wblk256 blk;
        dec(wp, &blk);
        for (int r = 0; r < nr; r++) {
            const slm_block_q8_k *a = (const slm_block_q8_k *)((const char *)x + r * x_stride) + b;
            int isum = 0, msum = 0;
            for (int g = 0; g < 16; g++) {
                int gs = 0;
                for (int j = 0; j < 16; j++)
                    gs += blk.q[16 * g + j] * a->qs[16 * g + j];
                isum += blk.sc[g] * gs;
                msum += blk.mn[g] * a->bsums[g];
            }
            float dd = blk.d * a->d, dm = blk.dmin * a->d;
            acc[r] += dd * (float)isum;
            acc[r] -= dm * (float)msum;
        }
    }
    for (int r = 0; r < nr; r++)
        out[r] = acc[r];
}

#define DOT256(name, blk, dec)                                                                \
    static void name(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out) \
    {                                                                                         \
        dot_blk256(n, w, sizeof(blk), dec, x, xs, nr, out);                                  \
    }
DOT256(dot_q2_k, slm_block_q2_k, dec_q2_k)
DOT256(dot_q3_k, slm_block_q3_k, dec_q3_k)
DOT256(dot_q4_k, slm_block_q4_k, dec_q4_k)
DOT256(dot_q5_k, slm_block_q5_k, dec_q5_k)
DOT256(dot_q6_k, slm_block_q6_k, dec_q6_k)
DOT256(dot_iq4_xs, slm_block_iq4_xs, dec_iq4_xs)

/* ---------------------------------------------------------------------- */
/* Float weights against f32 activations: 8 interleaved partial sums (the  */
/* same shape as one AVX2 register, for accuracy), added pairwise at the  */
/* end, then the tail.                                                    */

static float get_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
static float get_f16(const void *w, int64_t i) { return slm_f16_to_f32(((const uint16_t *)w)[i]); }
static float get_bf16(const void *w, int64_t i) { return slm_bf16_to_f32(((const uint16_t *)w)[i]); }

static void dot_float(int64_t n, const void *w, float (*get)(const void *, int64_t), const void *x,
                      size_t x_stride, int nr, float *out)
{
    for (int r = 0; r < nr; r++) {
        const float *xr = (const float *)((const char *)x + r * x_stride);
        float p[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
                p[k] += get(w, i + k) * xr[i + k];
        float s = ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
        for (; i < n; i++)
            s += get(w, i) * xr[i];
        out[r] = s;
    }
}

static void dot_f32(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    dot_float(n, w, get_f32, x, xs, nr, out);
}
static void dot_f16(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    dot_float(n, w, get_f16, x, xs, nr, out);
}
static void dot_bf16(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    dot_float(n, w, get_bf16, x, xs, nr, out);
}

const slm_dot_kernels slm_dot_scalar = {
    .dot =
        {
            [SLM_TYPE_F32] = dot_f32,
            [SLM_TYPE_F16] = dot_f16,
            [SLM_TYPE_BF16] = dot_bf16,
            [SLM_TYPE_Q4_0] = dot_q4_0,
            [SLM_TYPE_Q4_1] = dot_q4_1,
            [SLM_TYPE_Q5_0] = dot_q5_0,
            [SLM_TYPE_Q5_1] = dot_q5_1,
            [SLM_TYPE_Q8_0] = dot_q8_0,
            [SLM_TYPE_IQ4_NL] = dot_iq4_nl,
            [SLM_TYPE_Q2_K] = dot_q2_k,
            [SLM_TYPE_Q3_K] = dot_q3_k,
            [SLM_TYPE_Q4_K] = dot_q4_k,
            [SLM_TYPE_Q5_K] = dot_q5_k,
            [SLM_TYPE_Q6_K] = dot_q6_k,
            [SLM_TYPE_IQ4_XS] = dot_iq4_xs,
        },
    .quant_q8_0 = quant_q8_0,
    .quant_q8_k = quant_q8_k,
};
