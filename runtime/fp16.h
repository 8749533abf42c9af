/*
 * fp16.h — exact conversions between f32 and the two 16-bit float formats
 * GGUF stores (IEEE binary16 "f16" and bfloat16), in portable C.
 * SIMD kernels may use F16C instead; these are the reference and must agree
 * bit for bit with it (round-to-nearest-even, subnormals kept).
 */
#ifndef SLM_FP16_H
#define SLM_FP16_H

#include <stdint.h>
#include <string.h>

static inline float slm_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t slm_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float slm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31)
        return slm_f32_from_bits(sign | 0x7f800000u | (man << 13));
    return slm_f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t slm_f32_to_f16(float f)
{
    uint32_t x = slm_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (nan stays quiet nan) */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) {
        /* result is subnormal (or zero): round ax * 2^24 to an integer, ties to even */
        if (ax < 0x33000000u) /* < 2^-25: rounds to zero */
            return (uint16_t)sign;
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias exponent, round mantissa 23 -> 10 bits, ties to even */
    uint32_t r = ax - 0x38000000u; /* exponent - 112 */
    uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++; /* carry into the exponent is the correct rounding */
    return (uint16_t)(sign | r);
}

static inline float slm_bf16_to_f32(uint16_t h) { return slm_f32_from_bits((uint32_t)h << 16); }

static inline uint16_t slm_f32_to_bf16(float f)
{
    uint32_t x = slm_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* nan: keep it quiet */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif
