/*
 * test_fp16.c — the f16 and bf16 conversions of runtime/fp16.h against
 * independent references: every 16-bit pattern round-trips, and f32 →
 * 16-bit rounding (ties to even, subnormals, overflow, NaN) matches a
 * reference that computes the nearest representable value in double
 * precision. Where the CPU has F16C, the conversions must also agree bit
 * for bit with the hardware instructions (NaN payloads excepted).
 */
#include "testutil.h"

#include "fp16.h"

#include <math.h>
#include <stdio.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0; }

/* f16 bits → value, computed in double from the definition (gguf-facts §3). */
static double ref_f16_value(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 0x3ff;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return sign ? -v : v;
}

/*
 * Nearest value to a (finite, ≥ 0) on the grid of a binary format with
 * `mbits` stored mantissa bits and smallest normal exponent `emin`, ties to
 * even, as a double. a is an f32, so a/ulp is exact in double and rint (the
 * default rounding mode: ties to even) does the rounding.
 */
static double ref_round(double a, int mbits, int emin)
{
    if (a == 0)
        return 0;
    int e;
    frexp(a, &e); /* a = f·2^e, f in [0.5, 1) → floor(log2 a) = e − 1 */
    int ex = e - 1 < emin ? emin : e - 1;
    double ulp = ldexp(1.0, ex - mbits);
    return rint(a / ulp) * ulp;
}

/* Reference f32 → f16: the nearest f16, encoded from its exact value. */
static uint16_t ref_f32_to_f16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (isnan(f))
        return sign | 0x7e00;
    double r = ref_round(fabs((double)f), 10, -14);
    if (r >= 65520.0 || isinf(f)) /* 65520 = max f16 + half an ulp */
        return sign | 0x7c00;
    if (r < ldexp(1, -14))
        return sign | (uint16_t)(r * ldexp(1, 24));
    int e;
    double fr = frexp(r, &e); /* r = fr·2^e */
    uint16_t man = (uint16_t)(fr * 2048 - 1024);
    return sign | (uint16_t)((e - 1 + 15) << 10) | man;
}

/* Reference f32 → bf16: bf16 shares f32's exponent range, so the nearest
 * bf16 value is an f32 whose low 16 bits are zero. */
static uint16_t ref_f32_to_bf16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (isnan(f))
        return (uint16_t)(slm_f32_bits(f) >> 16) | 0x40;
    double r = ref_round(fabs((double)f), 7, -126);
    if (r >= ldexp(1, 128) || isinf(f))
        return sign | 0x7f80;
    return sign | (uint16_t)(slm_f32_bits((float)r) >> 16);
}

static void test_f16_all_patterns(void **state)
{
    (void)state;
    int fails = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = slm_f16_to_f32((uint16_t)h);
        double ref = ref_f16_value((uint16_t)h);
        uint16_t back = slm_f32_to_f16(f);
        if (f16_is_nan((uint16_t)h)) {
            /* NaN stays NaN both ways (payload not kept on the way back) */
            if (!isnan(f) || !f16_is_nan(back) || (back >> 15) != (h >> 15))
                fails++;
        } else if ((double)f != ref || !signbit(f) != !signbit(ref) || back != h) {
            if (fails < 5)
                fprintf(stderr, "f16 0x%04x: got %.9g back 0x%04x, want %.9g\n", h, f, back, ref);
            fails++;
        }
    }
    assert_int_equal(fails, 0);
}

static void test_bf16_all_patterns(void **state)
{
    (void)state;
    int fails = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = slm_bf16_to_f32((uint16_t)h);
        uint16_t back = slm_f32_to_bf16(f);
        if (slm_f32_bits(f) != h << 16)
            fails++;
        else if (bf16_is_nan((uint16_t)h) ? !bf16_is_nan(back) : back != h)
            fails++;
    }
    assert_int_equal(fails, 0);
}

/* Hand-picked cases with the answer worked out by hand (not by a reference). */
static void test_f16_crafted(void **state)
{
    (void)state;
    static const struct { float f; uint16_t h; } cases[] = {
        {1.0f, 0x3c00},
        {1.0f + 0x1p-11f, 0x3c00},      /* tie, even is down */
        {1.0f + 3 * 0x1p-11f, 0x3c02},  /* tie, even is up */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01}, /* just above a tie */
        {65504.0f, 0x7bff},             /* max finite */
        {65519.996f, 0x7bff},           /* just below the overflow tie */
        {65520.0f, 0x7c00},             /* tie at max: rounds to even = inf */
        {-1e30f, 0xfc00},
        {0x1p-24f, 0x0001},             /* smallest subnormal */
        {0x1p-25f, 0x0000},             /* tie with zero: even is zero */
        {0x1p-25f + 0x1p-40f, 0x0001},  /* just above that tie */
        {3 * 0x1p-25f, 0x0002},         /* tie between 1 and 2 subnormal ulps */
        {0x1p-14f - 0x1p-25f, 0x0400},  /* tie between max subnormal and min normal */
        {0x1p-14f, 0x0400},
        {-0.0f, 0x8000},
        {1e-30f, 0x0000},
        {-2.5f, 0xc100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = slm_f32_to_f16(cases[i].f);
        if (got != cases[i].h)
            fprintf(stderr, "f32 %.9g → f16 0x%04x, want 0x%04x\n", cases[i].f, got, cases[i].h);
        assert_int_equal(got, cases[i].h);
        assert_int_equal(ref_f32_to_f16(cases[i].f), cases[i].h); /* the reference agrees too */
    }
    assert_int_equal(slm_f32_to_f16(INFINITY), 0x7c00);
    assert_true(f16_is_nan(slm_f32_to_f16(NAN)));
    assert_true(f16_is_nan(slm_f32_to_f16(slm_f32_from_bits(0x7f800001u)))); /* signalling NaN */
    assert_true(f16_is_nan(slm_f32_to_f16(slm_f32_from_bits(0xffc00000u))));
}

static void test_bf16_crafted(void **state)
{
    (void)state;
    static const struct { uint32_t f; uint16_t h; } cases[] = {
        {0x3f808000u, 0x3f80}, /* tie, even down */
        {0x3f818000u, 0x3f82}, /* tie, even up */
        {0x3f808001u, 0x3f81}, /* above the tie */
        {0x7f7fffffu, 0x7f80}, /* max f32 rounds up to inf */
        {0x7f7f7fffu, 0x7f7f}, /* just below the tie at bf16 max */
        {0x00008000u, 0x0000}, /* subnormal tie, even down */
        {0x00018000u, 0x0002}, /* subnormal tie, even up */
        {0x80000000u, 0x8000},
        {0xff800000u, 0xff80},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f = slm_f32_from_bits(cases[i].f);
        assert_int_equal(slm_f32_to_bf16(f), cases[i].h);
        assert_int_equal(ref_f32_to_bf16(f), cases[i].h);
    }
    assert_true(bf16_is_nan(slm_f32_to_bf16(slm_f32_from_bits(0x7f800001u))));
    assert_true(bf16_is_nan(slm_f32_to_bf16(NAN)));
}

/*
 * f32 bit patterns to sweep: every upper half (all signs, exponents and
 * leading mantissa bits) with low halves chosen to sit on and around the f16
 * rounding point (bits 13..15 kept, remainder 0, 1, just below/at/above
 * half), plus random low halves. Returns the pattern for index i < SWEEP_N.
 */
#define SWEEP_LOW 64
#define SWEEP_N (65536u * SWEEP_LOW)
static uint32_t sweep_pattern(uint32_t i, const uint16_t *rand_low)
{
    static const uint16_t rem[6] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff};
    uint32_t hi = i / SWEEP_LOW, k = i % SWEEP_LOW;
    uint32_t low = k < 48 ? (k / 6) << 13 | rem[k % 6] : rand_low[k - 48];
    return hi << 16 | low;
}

static void test_f16_rounding_sweep(void **state)
{
    (void)state;
    uint16_t rand_low[16];
    for (int i = 0; i < 16; i++)
        rand_low[i] = (uint16_t)tu_rand_u64();
    int fails = 0;
    for (uint32_t i = 0; i < SWEEP_N; i++) {
        float f = slm_f32_from_bits(sweep_pattern(i, rand_low));
        uint16_t got = slm_f32_to_f16(f), want = ref_f32_to_f16(f);
        if (isnan(f) ? !(f16_is_nan(got) && (got >> 15) == (want >> 15)) : got != want) {
            if (fails < 5)
                fprintf(stderr, "f32 0x%08x → f16 0x%04x, reference 0x%04x\n", slm_f32_bits(f), got, want);
            fails++;
        }
    }
    assert_int_equal(fails, 0);
}

static void test_bf16_rounding_sweep(void **state)
{
    (void)state;
    int fails = 0;
    /* bf16 rounds at bit 15: random upper halves with every low half pattern
     * near the tie, plus fully random patterns */
    static const uint16_t lows[] = {0, 1, 0x7fff, 0x8000, 0x8001, 0xffff};
    for (uint32_t hi = 0; hi < 65536; hi++) {
        for (size_t k = 0; k < sizeof lows / sizeof lows[0] + 4; k++) {
            uint32_t low = k < 6 ? lows[k] : (uint32_t)(tu_rand_u64() & 0xffff);
            float f = slm_f32_from_bits(hi << 16 | low);
            uint16_t got = slm_f32_to_bf16(f), want = ref_f32_to_bf16(f);
            if (got != want) {
                if (fails < 5)
                    fprintf(stderr, "f32 0x%08x → bf16 0x%04x, reference 0x%04x\n", slm_f32_bits(f), got, want);
                fails++;
            }
        }
    }
    assert_int_equal(fails, 0);
}

#if HAVE_X86
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, 0); /* 0: round to nearest even */
}

__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

/* F16C through CPUID rather than __builtin_cpu_supports("f16c"), which
 * clang 14 does not know: CPUID.1:ECX bit 29 (F16C), and bit 27 (OSXSAVE)
 * with XCR0 showing the OS saves the AVX state the VEX-encoded instructions
 * use. */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29)) || !(c & (1u << 27)))
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}
#endif

static void test_f16_vs_f16c(void **state)
{
    (void)state;
#if HAVE_X86
    if (!cpu_has_f16c()) {
        fprintf(stderr, "skipped: CPU has no F16C\n");
        skip();
    }
    int fails = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = slm_f16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
        /* F16C quiets signalling NaNs; only NaN-ness and sign are compared */
        if (isnan(b) ? !(isnan(a) && !signbit(a) == !signbit(b)) : slm_f32_bits(a) != slm_f32_bits(b))
            fails++;
    }
    uint16_t rand_low[16];
    for (int i = 0; i < 16; i++)
        rand_low[i] = (uint16_t)tu_rand_u64();
    for (uint32_t i = 0; i < SWEEP_N; i++) {
        float f = slm_f32_from_bits(sweep_pattern(i, rand_low));
        uint16_t a = slm_f32_to_f16(f), b = hw_f32_to_f16(f);
        if (isnan(f) ? !(f16_is_nan(a) && f16_is_nan(b) && (a >> 15) == (b >> 15)) : a != b) {
            if (fails < 5)
                fprintf(stderr, "f32 0x%08x: slm 0x%04x, F16C 0x%04x\n", slm_f32_bits(f), a, b);
            fails++;
        }
    }
    assert_int_equal(fails, 0);
#else
    fprintf(stderr, "skipped: not an x86 CPU (no F16C)\n");
    skip();
#endif
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_all_patterns),
        cmocka_unit_test(test_bf16_all_patterns),
        cmocka_unit_test(test_f16_crafted),
        cmocka_unit_test(test_bf16_crafted),
        cmocka_unit_test(test_f16_rounding_sweep),
        cmocka_unit_test(test_bf16_rounding_sweep),
        cmocka_unit_test(test_f16_vs_f16c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
