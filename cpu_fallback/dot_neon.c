/*
 * dot_neon.c — AArch64 Advanced SIMD kernels of the CPU matmul (compiled
 * only on aarch64): Q8_0 and Q4_0 dot products and the Q8_0 activation
 * quantizer; every other type and the Q8_K quantizer use dot_scalar.c.
 *
 * Plain ARMv8.0 NEON (no dot-product extension, so it runs on every
 * AArch64 core): widening s8 multiplies, pairwise adds into s32. Rows are
 * handled as in dot_avx2.c — a compile-time row count, one accumulator per
 * row, summed in an order fixed by n alone. The quantizer reproduces
 * dot_scalar.c bit for bit: vcvtaq rounds half away from zero, as roundf.
 */
#include <arm_neon.h>
#include <string.h>

#include "cpu_dot.h"

#define INLINE static inline __attribute__((always_inline))

/* Σ a·b over 16 s8 lanes into 4 × s32 (each s16 product fits: ≤ 128²). */
INLINE int32x4_t dot16(int8x16_t a, int8x16_t b)
{
    int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    int16x8_t p1 = vmull_s8(vget_high_s8(a), vget_high_s8(b));
    return vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1));
}

/* Codes of one block as two 16-lane halves (elements 0..15, 16..31). */
INLINE void q4_0_codes(const void *p, int8x16_t *lo, int8x16_t *hi)
{
    const slm_block_q4_0 *b = p;
    uint8x16_t v = vld1q_u8(b->qs);
    int8x16_t eight = vdupq_n_s8(8);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), eight);
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
}

INLINE void q8_0_codes(const void *p, int8x16_t *lo, int8x16_t *hi)
{
    const slm_block_q8_0 *b = p;
    *lo = vld1q_s8(b->qs);
    *hi = vld1q_s8(b->qs + 16);
}

INLINE float h2f(uint16_t h) { return slm_f16_to_f32(h); }

INLINE void blk32_impl(int64_t n, const uint8_t *w, size_t bytes,
                       void (*codes)(const void *, int8x16_t *, int8x16_t *), const void *x,
                       size_t xs, int nr, float *out)
{
    const slm_act_q8_0 *a[SLM_DOT_MAX_ROWS];
    float32x4_t acc[SLM_DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_0(x, xs, r);
        acc[r] = vdupq_n_f32(0.0f);
    }
    for (int64_t ib = 0; ib < n / SLM_QK; ib++, w += bytes) {
        int8x16_t lo, hi;
        codes(w, &lo, &hi);
        uint16_t dbits;
        memcpy(&dbits, w, 2); /* d is the first field of both block types */
        float d = h2f(dbits);
        for (int r = 0; r < nr; r++) {
            const slm_act_q8_0 *xb = &a[r][ib];
            int32x4_t p = vaddq_s32(dot16(lo, vld1q_s8(xb->qs)), dot16(hi, vld1q_s8(xb->qs + 16)));
            acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(p), vdupq_n_f32(d * xb->d));
        }
    }
    for (int r = 0; r < nr; r++)
        out[r] = vaddvq_f32(acc[r]);
}

INLINE void q4_0_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_q4_0), q4_0_codes, x, xs, nr, out);
}
INLINE void q8_0_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_q8_0), q8_0_codes, x, xs, nr, out);
}
SLM_DOT_DISPATCH(dot_q4_0, q4_0_impl)
SLM_DOT_DISPATCH(dot_q8_0, q8_0_impl)

static void quant_q8_0(const float *x, slm_act_q8_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / SLM_QK; b++, x += SLM_QK, y++) {
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(x + 4 * k);
            m = vmaxq_f32(m, vabsq_f32(v[k]));
        }
        float d = vmaxvq_f32(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int32x4_t sum = vdupq_n_s32(0);
        for (int k = 0; k < 8; k += 2) {
            int32x4_t q0 = vcvtaq_s32_f32(vmulq_n_f32(v[k], id));
            int32x4_t q1 = vcvtaq_s32_f32(vmulq_n_f32(v[k + 1], id));
            sum = vaddq_s32(sum, vaddq_s32(q0, q1));
            int16x8_t q16 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
            vst1_s8(y->qs + 4 * k, vqmovn_s16(q16));
        }
        y->d = slm_dot_f16_round(d);
        y->s = y->d * (float)vaddvq_s32(sum);
    }
}

const slm_dot_kernels slm_dot_neon = {
    .dot =
        {
            [SLM_TYPE_Q4_0] = dot_q4_0,
            [SLM_TYPE_Q8_0] = dot_q8_0,
        },
    .quant_q8_0 = quant_q8_0,
    .quant_q8_k = NULL,
};
