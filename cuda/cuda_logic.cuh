/*
 * cuda_logic.cuh — the per-thread arithmetic of the CUDA kernels, as
 * `__host__ __device__` inline functions so a host program compiled by nvcc
 * (tests/test_cuda_logic.cu, run in CI without a GPU) checks each against
 * the scalar reference (runtime/quant.c, tests/op_reference.c):
 *   - f16 / bf16 conversions (bit-exact with runtime/fp16.h);
 *   - the decoding of one element of every weight type (bit-exact with
 *     slm_dequantize_row: products are rounded one at a time, never fused
 *     into an FMA, as quant.c's split statements are);
 *   - the activation formats the matrix-vector kernels multiply: Q8_0-style
 *     blocks of 32 for the 32-element types, Q8_K-style blocks of 256 for
 *     the K types, made exactly as slm_quantize_row_ref makes them;
 *   - the int8 dot product of 32 weights with 32 activations for every
 *     quantized type (dp4a on the device, the same sum on the host);
 *   - the decoding of a stored K/V element;
 *   - the online-softmax update, the parts a split (flash-decoding) context
 *     is cut into, and the merge of their partial results;
 *   - attention's score soft-cap and sliding window (which positions a
 *     token reads, so a split context covers only those);
 *   - RoPE's pairing (NORM / NEOX, partial rotary) and rotation;
 *   - the activations (SiLU, GELU in its tanh and erf forms, soft-cap) and
 *     LayerNorm's per-thread share of the mean and variance sums.
 * Kernels (matvec.cu, matmul.cu, attention.cu, ops.cu) stay thin around
 * these: they pick indices, load, reduce across lanes and store.
 *
 * NOTE: weight blocks are 2-byte aligned at best (an 18-byte Q4_0 block), so
 * 32-bit words are read as two 16-bit halves; every field offset used that
 * way is even (quant_blocks.h), and rows start at even offsets.
 */
#ifndef SLM_CUDA_LOGIC_CUH
#define SLM_CUDA_LOGIC_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef SLM_HD
#define SLM_HD __host__ __device__
#endif
extern "C" {
#include "quant.h" /* slm_type ids */
}
#include "quant_decode.h"

#define SLM_CU_HD __host__ __device__ __forceinline__

/* ------------------------------------------------------------------------ */
/* bits and rounding                                                         */

SLM_CU_HD uint32_t slm_cu_fbits(float f)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

SLM_CU_HD float slm_cu_bitsf(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* a·b rounded on its own: the device never contracts it with a following
 * add into an FMA (the host compiler does not either: C++ without -mfma). */
SLM_CU_HD float slm_cu_mul(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

/* v rounded to the nearest integer, ties to even (lrintf's default mode). */
SLM_CU_HD int slm_cu_rint(float v)
{
#ifdef __CUDA_ARCH__
    return __float2int_rn(v);
#else
    return (int)lrintf(v);
#endif
}

/* quant.c's round_clamp: round(v) clamped to [lo, hi]; NaN gives lo. */
SLM_CU_HD int slm_cu_round_clamp(float v, int lo, int hi)
{
    if (!(v > (float)lo - 1.0f))
        return lo;
    if (v > (float)hi + 1.0f)
        return hi;
    int r = slm_cu_rint(v);
    return r < lo ? lo : r > hi ? hi : r;
}

/* Little-endian 16 bits at p (any alignment). */
SLM_CU_HD uint32_t slm_cu_ld16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

/* 32 bits at a 2-byte aligned p, as two 16-bit loads. */
SLM_CU_HD uint32_t slm_cu_ld32(const uint8_t *p)
{
    const uint16_t *h = (const uint16_t *)p;
    return (uint32_t)h[0] | (uint32_t)h[1] << 16;
}

/* c + Σ of the four signed byte products of a and b (__dp4a). */
SLM_CU_HD int slm_cu_dp4a(uint32_t a, uint32_t b, int c)
{
#ifdef __CUDA_ARCH__
    return __dp4a((int)a, (int)b, c);
#else
    for (int k = 0; k < 4; k++)
        c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
#endif
}

/* ------------------------------------------------------------------------ */
/* f16 and bf16 (runtime/fp16.h's algorithms, on raw bits)                   */

SLM_CU_HD float slm_cu_f16_to_f32(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        float v = (float)man * (1.0f / 16777216.0f); /* subnormal: exact */
        return sign ? -v : v;
    }
    if (exp == 31)
        return slm_cu_bitsf(sign | 0x7f800000u | (man << 13));
    return slm_cu_bitsf(sign | ((exp + 112) << 23) | (man << 13));
}

SLM_CU_HD uint16_t slm_cu_f32_to_f16(float f)
{
    uint32_t x = slm_cu_fbits(f);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) {
        if (ax < 0x33000000u)
            return (uint16_t)sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000, shift = 126 - e;
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u, rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

SLM_CU_HD float slm_cu_bf16_to_f32(uint32_t h) { return slm_cu_bitsf(h << 16); }

/* ------------------------------------------------------------------------ */
/* one element of a weight block (bit-exact with slm_dequantize_row)         */

/* The IQ4 code book, for host and device (constant memory on the device). */
#ifdef __CUDA_ARCH__
#define SLM_CU_IQ4(i) slm_cu_iq4nl_dev[i]
#else
#define SLM_CU_IQ4(i) slm_iq4nl_values[i]
#endif
#ifdef __CUDACC__
static __constant__ int8_t slm_cu_iq4nl_dev[16] = SLM_IQ4NL_VALUES;
#endif

/* Element e of block b (block_elems(type) elements) as float. */
SLM_CU_HD float slm_cu_deq(int type, const uint8_t *b, int e)
{
    switch (type) {
    case SLM_TYPE_F32: return slm_cu_bitsf(slm_cu_ld16(b) | slm_cu_ld16(b + 2) << 16);
    case SLM_TYPE_F16: return slm_cu_f16_to_f32(slm_cu_ld16(b));
    case SLM_TYPE_BF16: return slm_cu_bf16_to_f32(slm_cu_ld16(b));
    case SLM_TYPE_Q4_0:
        return slm_cu_mul(slm_cu_f16_to_f32(slm_cu_ld16(b)), (float)(slm_qd_nib32(b + 2, e) - 8));
    case SLM_TYPE_Q4_1:
        return slm_cu_mul(slm_cu_f16_to_f32(slm_cu_ld16(b)), (float)slm_qd_nib32(b + 4, e)) +
               slm_cu_f16_to_f32(slm_cu_ld16(b + 2));
    case SLM_TYPE_Q5_0: {
        int q = slm_qd_nib32(b + 6, e) | slm_qd_q5_hbit(slm_qd_le32(b + 2), e) << 4;
        return slm_cu_mul(slm_cu_f16_to_f32(slm_cu_ld16(b)), (float)(q - 16));
    }
    case SLM_TYPE_Q5_1: {
        int q = slm_qd_nib32(b + 8, e) | slm_qd_q5_hbit(slm_qd_le32(b + 4), e) << 4;
        return slm_cu_mul(slm_cu_f16_to_f32(slm_cu_ld16(b)), (float)q) +
               slm_cu_f16_to_f32(slm_cu_ld16(b + 2));
    }
    case SLM_TYPE_Q8_0:
        return slm_cu_mul(slm_cu_f16_to_f32(slm_cu_ld16(b)), (float)(int8_t)b[2 + e]);
    case SLM_TYPE_Q2_K: {
        const slm_block_q2_k *k = (const slm_block_q2_k *)b;
        int s = e / 16;
        float dl = slm_cu_mul(slm_cu_f16_to_f32(k->d), (float)(k->scales[s] & 0xF));
        float ml = slm_cu_mul(slm_cu_f16_to_f32(k->dmin), (float)(k->scales[s] >> 4));
        return slm_cu_mul(dl, (float)slm_qd_q2k_code(k->qs, e)) - ml;
    }
    case SLM_TYPE_Q3_K: {
        const slm_block_q3_k *k = (const slm_block_q3_k *)b;
        float dl = slm_cu_mul(slm_cu_f16_to_f32(k->d),
                              (float)(slm_qd_q3k_scale(k->scales, e / 16) - 32));
        int q = slm_qd_q2k_code(k->qs, e) + 4 * slm_qd_k_hbit(k->hmask, e) - 4;
        return slm_cu_mul(dl, (float)q);
    }
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K: {
        /* Q4_K and Q5_K share d, dmin and the scales; Q5_K adds a bit plane. */
        const slm_block_q4_k *k = (const slm_block_q4_k *)b;
        int sc, m, q;
        slm_qd_k_scale_min(k->scales, e / 32, &sc, &m);
        if (type == SLM_TYPE_Q4_K) {
            q = slm_qd_q4k_nibble(k->qs, e);
        } else {
            const slm_block_q5_k *k5 = (const slm_block_q5_k *)b;
            q = slm_qd_q4k_nibble(k5->qs, e) | slm_qd_k_hbit(k5->qh, e) << 4;
        }
        float d1 = slm_cu_mul(slm_cu_f16_to_f32(k->d), (float)sc);
        float m1 = slm_cu_mul(slm_cu_f16_to_f32(k->dmin), (float)m);
        return slm_cu_mul(d1, (float)q) - m1;
    }
    case SLM_TYPE_Q6_K: {
        const slm_block_q6_k *k = (const slm_block_q6_k *)b;
        float dl = slm_cu_mul(slm_cu_f16_to_f32(k->d), (float)k->scales[e / 16]);
        return slm_cu_mul(dl, (float)(slm_qd_q6k_code(k->ql, k->qh, e) - 32));
    }
    case SLM_TYPE_IQ4_NL:
        return slm_cu_mul(slm_cu_f16_to_f32(slm_cu_ld16(b)),
                          (float)SLM_CU_IQ4(slm_qd_nib32(b + 2, e)));
    case SLM_TYPE_IQ4_XS: {
        const slm_block_iq4_xs *k = (const slm_block_iq4_xs *)b;
        int ib = e / 32;
        float dl = slm_cu_mul(slm_cu_f16_to_f32(k->d),
                              (float)(slm_qd_iq4xs_scale(k->scales_l, k->scales_h, ib) - 32));
        return slm_cu_mul(dl, (float)SLM_CU_IQ4(slm_qd_nib32(k->qs + 16 * ib, e % 32)));
    }
    default: return 0.0f; /* refused at load: supports() lists the types above */
    }
}

/* Element c of a weight row of `type` (block elements and bytes given):
 * the block it sits in, decoded (embed and the f16 dequantization). */
SLM_CU_HD float slm_cu_deq_row(int type, int block, int block_bytes, const uint8_t *row,
                               int64_t c)
{
    return slm_cu_deq(type, row + (size_t)(c / block) * (size_t)block_bytes, (int)(c % block));
}

/* ------------------------------------------------------------------------ */
/* activations quantized for the int8 dot products                           */

/* 32 activations for the 32-element weight types: Q8_0's codes and scale
 * (d already rounded through f16, as a Q8_0 block stores it) and Σ codes
 * (for the types with a minimum). 4-byte aligned for word loads. */
typedef struct slm_cu_q8a {
    float d;
    int sum;
    int8_t qs[32];
} slm_cu_q8a;

/* 256 activations for the K types: Q8_K's float scale, codes and the sums
 * of each 16 codes. */
typedef struct slm_cu_q8k {
    float d;
    int16_t bsums[16];
    int8_t qs[256];
} slm_cu_q8k;

/* Which of two candidates for "the element of largest magnitude, the first
 * on ties" wins (quant.c's signed_absmax): (va at index ia) or (vb at ib).
 * Lanes reduce with this in any order and agree with the serial scan. */
SLM_CU_HD bool slm_cu_absmax_first(float va, int ia, float vb, int ib)
{
    float a = fabsf(va), b = fabsf(vb);
    return a > b || (a == b && ia < ib);
}

/* A lane's own candidate among its n values x[0..n), which are elements
 * base.. of the block: the first of largest magnitude. */
SLM_CU_HD void slm_cu_absmax_local(const float *x, int n, int base, float *v, int *i)
{
    *v = x[0];
    *i = base;
    for (int k = 1; k < n; k++)
        if (fabsf(x[k]) > fabsf(*v)) {
            *v = x[k];
            *i = base + k;
        }
}

/* One step of a lane's butterfly reduction of (value, index) pairs: keeps
 * the partner's pair when it wins. */
SLM_CU_HD void slm_cu_absmax_step(float *v, int *i, float ov, int oi)
{
    if (slm_cu_absmax_first(ov, oi, *v, *i)) {
        *v = ov;
        *i = oi;
    }
}

/* Q8_0: the scale of a block whose signed absmax is best, and the code of x. */
SLM_CU_HD float slm_cu_q8_0_scale(float best) { return fabsf(best) / 127.0f; }
SLM_CU_HD float slm_cu_q8_0_inv(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }
SLM_CU_HD int slm_cu_q8_0_code(float x, float id) { return (int)roundf(x * id); }
/* The scale as the decoder sees it (through f16). */
SLM_CU_HD float slm_cu_q8_0_stored(float d) { return slm_cu_f16_to_f32(slm_cu_f32_to_f16(d)); }

/* Q8_K: the inverse scale for signed absmax best (0: all codes 0), the code
 * of x, and d = 1/iscale. */
SLM_CU_HD float slm_cu_q8k_iscale(float best) { return best != 0.0f ? -127.0f / best : 0.0f; }
SLM_CU_HD int slm_cu_q8k_code(float x, float iscale)
{
    return iscale != 0.0f ? slm_cu_round_clamp(iscale * x, -127, 127) : 0;
}
SLM_CU_HD float slm_cu_q8k_d(float iscale) { return iscale != 0.0f ? 1.0f / iscale : 0.0f; }

/* Whole-block forms (serial): what the device's warp-wide quantizers
 * compute lane by lane, and what the host test compares with quant.c. */
SLM_CU_HD void slm_cu_quant_q8a(const float *x, slm_cu_q8a *out)
{
    float best = x[0];
    for (int i = 1; i < 32; i++)
        if (fabsf(x[i]) > fabsf(best))
            best = x[i];
    float d = slm_cu_q8_0_scale(best), id = slm_cu_q8_0_inv(d);
    int sum = 0;
    for (int i = 0; i < 32; i++) {
        out->qs[i] = (int8_t)slm_cu_q8_0_code(x[i], id);
        sum += out->qs[i];
    }
    out->d = slm_cu_q8_0_stored(d);
    out->sum = sum;
}

SLM_CU_HD void slm_cu_quant_q8k(const float *x, slm_cu_q8k *out)
{
    float best = x[0];
    for (int i = 1; i < 256; i++)
        if (fabsf(x[i]) > fabsf(best))
            best = x[i];
    float is = slm_cu_q8k_iscale(best);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int i = 16 * g; i < 16 * g + 16; i++) {
            out->qs[i] = (int8_t)slm_cu_q8k_code(x[i], is);
            sum += out->qs[i];
        }
        out->bsums[g] = (int16_t)sum;
    }
    out->d = slm_cu_q8k_d(is);
}

/* ------------------------------------------------------------------------ */
/* int8 dot products: 32 weights (part `p` of a block) · 32 activations     */

/* Spreads 4 bits of h (bit k → bit 8k+4 of the result): the 5th bit of four
 * Q5 codes, one per byte. */
SLM_CU_HD uint32_t slm_cu_spread4(uint32_t h)
{
    return (h & 1) << 4 | (h & 2) << 11 | (h & 4) << 18 | (h & 8) << 25;
}

/* Σ of 16 or 32 code bytes (4 per word, words w[0..n)) times the
 * activation codes at a. */
SLM_CU_HD int slm_cu_dot_words(const uint32_t *w, const int8_t *a, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s = slm_cu_dp4a(w[i], slm_cu_ld32((const uint8_t *)a + 4 * i), s);
    return s;
}

/* The 32 unsigned 4-bit codes of a qs[16] block (element j low nibbles,
 * j+16 high) as 8 words in element order. */
SLM_CU_HD void slm_cu_nib_words(const uint8_t *qs, uint32_t w[8])
{
    for (int i = 0; i < 4; i++) {
        uint32_t v = slm_cu_ld32(qs + 4 * i);
        w[i] = v & 0x0F0F0F0Fu;
        w[i + 4] = (v >> 4) & 0x0F0F0F0Fu;
    }
}

/* Q5_0/Q5_1: adds the high bits (qh at 2-byte aligned qh4) to nibble words. */
SLM_CU_HD void slm_cu_q5_high(const uint8_t *qh4, uint32_t w[8])
{
    uint32_t qh = slm_cu_ld32(qh4);
    for (int i = 0; i < 8; i++)
        w[i] |= slm_cu_spread4(qh >> (4 * i));
}

/* IQ4: maps each nibble of the words to its signed code-book value. */
SLM_CU_HD void slm_cu_iq4_words(uint32_t w[8])
{
    for (int i = 0; i < 8; i++) {
        uint32_t v = 0;
        for (int k = 0; k < 4; k++)
            v |= (uint32_t)(uint8_t)SLM_CU_IQ4((w[i] >> (8 * k)) & 0xF) << (8 * k);
        w[i] = v;
    }
}

/* A 32-element weight block b of `type` times a slm_cu_q8a. */
SLM_CU_HD float slm_cu_dot32(int type, const uint8_t *b, const slm_cu_q8a *a)
{
    uint32_t w[8];
    float d = slm_cu_f16_to_f32(slm_cu_ld16(b));
    switch (type) {
    case SLM_TYPE_Q4_0:
        slm_cu_nib_words(b + 2, w);
        return d * a->d * (float)(slm_cu_dot_words(w, a->qs, 8) - 8 * a->sum);
    case SLM_TYPE_Q4_1:
        slm_cu_nib_words(b + 4, w);
        return d * a->d * (float)slm_cu_dot_words(w, a->qs, 8) +
               slm_cu_f16_to_f32(slm_cu_ld16(b + 2)) * a->d * (float)a->sum;
    case SLM_TYPE_Q5_0:
        slm_cu_nib_words(b + 6, w);
        slm_cu_q5_high(b + 2, w);
        return d * a->d * (float)(slm_cu_dot_words(w, a->qs, 8) - 16 * a->sum);
    case SLM_TYPE_Q5_1:
        slm_cu_nib_words(b + 8, w);
        slm_cu_q5_high(b + 4, w);
        return d * a->d * (float)slm_cu_dot_words(w, a->qs, 8) +
               slm_cu_f16_to_f32(slm_cu_ld16(b + 2)) * a->d * (float)a->sum;
    case SLM_TYPE_Q8_0:
        for (int i = 0; i < 8; i++)
            w[i] = slm_cu_ld32(b + 2 + 4 * i);
        return d * a->d * (float)slm_cu_dot_words(w, a->qs, 8);
    case SLM_TYPE_IQ4_NL:
        slm_cu_nib_words(b + 2, w);
        slm_cu_iq4_words(w);
        return d * a->d * (float)slm_cu_dot_words(w, a->qs, 8);
    default: return 0.0f;
    }
}

/* Part p (elements 32p..32p+31) of a 256-element weight block b of `type`
 * times the same elements of a slm_cu_q8k. The K types' sub-block scales
 * and mins are applied in integers; d, dmin and the activation scale once. */
SLM_CU_HD float slm_cu_dot256(int type, const uint8_t *b, const slm_cu_q8k *a, int p)
{
    uint32_t w[8];
    const int8_t *x = a->qs + 32 * p;
    int bs = a->bsums[2 * p] + a->bsums[2 * p + 1];
    switch (type) {
    case SLM_TYPE_Q2_K: {
        /* sub-blocks 2p, 2p+1 of 16: bytes 32h + 16(s%2) + i, shift 2·((s%8)/2) */
        const slm_block_q2_k *k = (const slm_block_q2_k *)b;
        int isum = 0, msum = 0;
        for (int s = 2 * p; s < 2 * p + 2; s++) {
            const uint8_t *q = k->qs + 32 * (s / 8) + 16 * (s % 2);
            int shift = 2 * ((s % 8) / 2);
            for (int i = 0; i < 4; i++)
                w[i] = (slm_cu_ld32(q + 4 * i) >> shift) & 0x03030303u;
            isum += (k->scales[s] & 0xF) * slm_cu_dot_words(w, a->qs + 16 * s, 4);
            msum += (k->scales[s] >> 4) * a->bsums[s];
        }
        return a->d * (slm_cu_f16_to_f32(k->d) * (float)isum -
                       slm_cu_f16_to_f32(k->dmin) * (float)msum);
    }
    case SLM_TYPE_Q3_K: {
        /* code + 4·hbit − 4, hbit from bit s/2 of hmask[16(s%2) + i] */
        const slm_block_q3_k *k = (const slm_block_q3_k *)b;
        int isum = 0;
        for (int s = 2 * p; s < 2 * p + 2; s++) {
            const uint8_t *q = k->qs + 32 * (s / 8) + 16 * (s % 2);
            const uint8_t *hm = k->hmask + 16 * (s % 2);
            int shift = 2 * ((s % 8) / 2);
            for (int i = 0; i < 4; i++)
                w[i] = ((slm_cu_ld32(q + 4 * i) >> shift) & 0x03030303u) |
                       ((slm_cu_ld32(hm + 4 * i) >> (s / 2)) & 0x01010101u) << 2;
            int sumi = slm_cu_dot_words(w, a->qs + 16 * s, 4) - 4 * a->bsums[s];
            isum += (slm_qd_q3k_scale(k->scales, s) - 32) * sumi;
        }
        return a->d * slm_cu_f16_to_f32(k->d) * (float)isum;
    }
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K: {
        /* sub-block p: bytes qs[32(p/2) + i], nibble p%2; Q5_K's bit p of qh[i] */
        const slm_block_q4_k *k = (const slm_block_q4_k *)b;
        const uint8_t *qs = type == SLM_TYPE_Q4_K ? k->qs : ((const slm_block_q5_k *)b)->qs;
        for (int i = 0; i < 8; i++)
            w[i] = (slm_cu_ld32(qs + 32 * (p / 2) + 4 * i) >> (4 * (p % 2))) & 0x0F0F0F0Fu;
        if (type == SLM_TYPE_Q5_K)
            for (int i = 0; i < 8; i++)
                w[i] |= ((slm_cu_ld32(((const slm_block_q5_k *)b)->qh + 4 * i) >> p) &
                         0x01010101u) << 4;
        int sc, m;
        slm_qd_k_scale_min(k->scales, p, &sc, &m);
        int sumi = slm_cu_dot_words(w, x, 8);
        return a->d * (slm_cu_f16_to_f32(k->d) * (float)(sc * sumi) -
                       slm_cu_f16_to_f32(k->dmin) * (float)(m * bs));
    }
    case SLM_TYPE_Q6_K: {
        /* sub-block s: low nibbles of ql[64h + 32(k&1) + l], high pair of qh[32h + l] */
        const slm_block_q6_k *k = (const slm_block_q6_k *)b;
        int isum = 0;
        for (int s = 2 * p; s < 2 * p + 2; s++) {
            int h = s / 8, kk = (s % 8) / 2, l0 = 16 * (s % 2);
            const uint8_t *ql = k->ql + 64 * h + 32 * (kk & 1) + l0;
            const uint8_t *qh = k->qh + 32 * h + l0;
            for (int i = 0; i < 4; i++)
                w[i] = ((slm_cu_ld32(ql + 4 * i) >> (4 * (kk >> 1))) & 0x0F0F0F0Fu) |
                       ((slm_cu_ld32(qh + 4 * i) >> (2 * kk)) & 0x03030303u) << 4;
            int sumi = slm_cu_dot_words(w, a->qs + 16 * s, 4) - 32 * a->bsums[s];
            isum += k->scales[s] * sumi;
        }
        return a->d * slm_cu_f16_to_f32(k->d) * (float)isum;
    }
    case SLM_TYPE_IQ4_XS: {
        const slm_block_iq4_xs *k = (const slm_block_iq4_xs *)b;
        slm_cu_nib_words(k->qs + 16 * p, w);
        slm_cu_iq4_words(w);
        int ls = slm_qd_iq4xs_scale(k->scales_l, k->scales_h, p) - 32;
        return a->d * slm_cu_f16_to_f32(k->d) * (float)(ls * slm_cu_dot_words(w, x, 8));
    }
    default: return 0.0f;
    }
}

/* Part p (elements 32p..32p+31) of a weight row of `type` times the same
 * elements of the row's activation blocks (slm_cu_q8a per 32 for the
 * 32-element types, slm_cu_q8k per 256 for the K types): the matrix-vector
 * kernel's lanes sum these over p. */
SLM_CU_HD float slm_cu_dot_part(int type, int block, int block_bytes, const uint8_t *row,
                                const void *act, int64_t p)
{
    if (block == 32)
        return slm_cu_dot32(type, row + (size_t)p * block_bytes, (const slm_cu_q8a *)act + p);
    return slm_cu_dot256(type, row + (size_t)(p / 8) * block_bytes,
                         (const slm_cu_q8k *)act + p / 8, (int)(p % 8));
}

/* ------------------------------------------------------------------------ */
/* the KV pool                                                               */

/* Element i of a stored K or V row (F32, F16, or Q8_0 blocks of 34 bytes). */
SLM_CU_HD float slm_cu_kv_elem(int type, const uint8_t *row, int i)
{
    if (type == SLM_TYPE_F32)
        return ((const float *)row)[i];
    if (type == SLM_TYPE_F16)
        return slm_cu_f16_to_f32(((const uint16_t *)row)[i]);
    const uint8_t *b = row + (size_t)(i / 32) * 34;
    return slm_cu_f16_to_f32(slm_cu_ld16(b)) * (float)(int8_t)b[2 + i % 32];
}

/* ------------------------------------------------------------------------ */
/* online softmax and the merge of split results                             */

/* Positions [*p0, *p1) of part s of n_split of a context of n_pos: equal
 * parts of ceil(n_pos / n_split), the last ones shorter or empty. */
SLM_CU_HD void slm_cu_split_range(int n_pos, int n_split, int s, int *p0, int *p1)
{
    int chunk = (n_pos + n_split - 1) / n_split;
    *p0 = s * chunk < n_pos ? s * chunk : n_pos;
    *p1 = *p0 + chunk < n_pos ? *p0 + chunk : n_pos;
}

/* The running state of one query head: max score m, Σ exp(s − m) l; the
 * output accumulator (Σ exp(s − m)·v, unnormalized) lives beside it. */
typedef struct slm_cu_osm {
    float m, l;
} slm_cu_osm;

SLM_CU_HD slm_cu_osm slm_cu_osm_init(void)
{
    slm_cu_osm s = {-INFINITY, 0.0f};
    return s;
}

/* Takes score sc: returns in *corr the factor the accumulator is scaled by
 * and in *p the weight of this position's v (acc = acc·corr + p·v). */
SLM_CU_HD void slm_cu_osm_push(slm_cu_osm *st, float sc, float *corr, float *p)
{
    float m = sc > st->m ? sc : st->m;
    *corr = st->m == -INFINITY ? 0.0f : expf(st->m - m);
    *p = expf(sc - m);
    st->l = st->l * *corr + *p;
    st->m = m;
}

/* Merges partial state b into a: *ca and *cb scale the two accumulators
 * (acc = acc_a·ca + acc_b·cb). An empty part (m = −inf) weighs nothing. */
SLM_CU_HD void slm_cu_osm_merge(slm_cu_osm *a, slm_cu_osm b, float *ca, float *cb)
{
    float m = a->m > b.m ? a->m : b.m;
    *ca = a->m == -INFINITY ? 0.0f : expf(a->m - m);
    *cb = b.m == -INFINITY ? 0.0f : expf(b.m - m);
    a->l = a->l * *ca + b.l * *cb;
    a->m = m;
}

/* ------------------------------------------------------------------------ */
/* attention: soft-cap and sliding window                                    */

/* cap·tanh(s / cap) for cap > 0 (Gemma 2's score and logit capping); s
 * itself for cap = 0. */
SLM_CU_HD float slm_cu_softcap(float s, float cap)
{
    return cap > 0.0f ? cap * tanhf(s / cap) : s;
}

/* Whether a token at position p attends to position j: causal (j <= p) and,
 * with window > 0, one of the last `window` positions (p − window < j). */
SLM_CU_HD bool slm_cu_in_window(int p, int j, int window)
{
    return j <= p && (window <= 0 || j > p - window);
}

/* The positions [*lo, *hi) a token at position p attends to: the
 * contiguous run slm_cu_in_window accepts. A split context is cut from *lo,
 * so no part reads a KV block wholly before the window. */
SLM_CU_HD void slm_cu_attn_span(int p, int window, int *lo, int *hi)
{
    *hi = p + 1;
    *lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* Part s of n_split of the span of a token at position p (window as
 * above): slm_cu_split_range over the span, shifted to its start. */
SLM_CU_HD void slm_cu_attn_part(int p, int window, int n_split, int s, int *p0, int *p1)
{
    int lo, hi;
    slm_cu_attn_span(p, window, &lo, &hi);
    slm_cu_split_range(hi - lo, n_split, s, p0, p1);
    *p0 += lo;
    *p1 += lo;
}

/* The longest span of a step whose largest context is n_ctx positions: the
 * split plan for a windowed layer (never more parts than the step's). */
SLM_CU_HD int slm_cu_window_ctx(int n_ctx, int window)
{
    return window > 0 && window < n_ctx ? window : n_ctx;
}

/* ------------------------------------------------------------------------ */
/* RoPE                                                                      */

/* The two elements of a head that pair k (0 <= k < n_rot/2) rotates: NORM
 * (adjacent) 2k and 2k+1; NEOX (split halves of the rotated part) k and
 * k + n_rot/2. Elements from n_rot on are no pair's (partial rotary). */
SLM_CU_HD void slm_cu_rope_pair(int neox, int n_rot, int k, int *a, int *b)
{
    *a = neox ? k : 2 * k;
    *b = neox ? k + n_rot / 2 : 2 * k + 1;
}

/* Rotates (v[a], v[b]) by the angle whose cosine and sine are c and s. */
SLM_CU_HD void slm_cu_rope_rotate(float *v, int a, int b, float c, float s)
{
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
}

/* ------------------------------------------------------------------------ */
/* activations                                                               */

SLM_CU_HD float slm_cu_silu(float x) { return x / (1.0f + expf(-x)); }

/* gelu_tanh(x) = 0.5·x·(1 + tanh(z)), z = sqrt(2/π)·(x + 0.044715·x³),
 * computed as x / (1 + exp(−2z)) (the same function: 0.5(1 + tanh z) is the
 * logistic of 2z). NOTE: the tanh form loses every digit where tanh(z)
 * nears −1 (x below about −3); this one keeps them. An x whose cube
 * overflows gives x or −0, as the limit does; x = ±inf gives what the tanh
 * form does (+inf, and NaN from −inf·0). */
SLM_CU_HD float slm_cu_gelu_tanh(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/π) */
    float z = k * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-2.0f * z));
}

/* gelu(x) = 0.5·x·(1 + erf(x/√2)), computed as 0.5·x·erfc(−x/√2) (the
 * same function; erfc keeps the digits 1 + erf loses for negative x). */
SLM_CU_HD float slm_cu_gelu_erf(float x)
{
    return 0.5f * x * erfcf(-0.7071067811865476f * x);
}

/* ------------------------------------------------------------------------ */
/* LayerNorm                                                                 */

/* Thread t of nt's share of a row's sums, as the kernel's threads take it
 * (elements t, t + nt, …): Σx when centered is false, else Σ(x − mean)².
 * The block then adds the shares in a halving tree (ops.cu, block_sum). Two
 * passes over the row rather than Σx and Σx² in one: the variance is then
 * never a difference of two large sums (rows with |mean| ≫ spread keep it). */
SLM_CU_HD float slm_cu_ln_share(const float *x, int d, int t, int nt, float mean, bool centered)
{
    float s = 0.0f;
    for (int i = t; i < d; i += nt) {
        float v = centered ? x[i] - mean : x[i];
        s += centered ? v * v : v;
    }
    return s;
}

/* 1 / sqrt(var + eps) from the row's Σ(x − mean)² over d elements. */
SLM_CU_HD float slm_cu_ln_inv(float ssd, int d, float eps)
{
    return 1.0f / sqrtf(ssd / (float)d + eps);
}

/* One output element: (x − mean)·inv·w + b. */
SLM_CU_HD float slm_cu_ln_out(float x, float mean, float inv, float w, float b)
{
    return (x - mean) * inv * w + b;
}

#endif
