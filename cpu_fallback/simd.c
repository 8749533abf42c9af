/*
 * simd.c — which SIMD level the CPU kernels may use (cpu_simd.h).
 *
 * A level is available when its kernels are compiled into this build (the
 * *_avx2.c / *_avx512.c files exist only in x86 builds, *_neon.c only in
 * AArch64 ones) AND the CPU has the instructions AND the operating system
 * saves the register state they use (XCR0 bits for YMM and ZMM: a kernel or
 * hypervisor can hide AVX state even when CPUID advertises the instructions).
 *
 * Detection is cheap and stateless, so nothing is cached.
 */
#include "cpu_simd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "status.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* CPUID leaf 1 ECX bits. */
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID1_ECX_F16C (1u << 29)
/* XCR0: SSE (1) and AVX (2) state for YMM; opmask (5), ZMM_Hi256 (6) and
 * Hi16_ZMM (7) on top of those for AVX-512. */
#define XCR0_YMM 0x06u
#define XCR0_ZMM 0xe6u

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    /* NOTE: xgetbv as raw asm so this file needs no -mxsave flag. */
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* ECX of CPUID leaf 1 (0 if the leaf is missing). */
static uint32_t cpuid1_ecx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    return c;
}

/* The OS saves the state whose XCR0 bits are all set in `mask`. */
static bool os_saves(uint64_t mask)
{
    if (!(cpuid1_ecx() & CPUID1_ECX_OSXSAVE))
        return false;
    return (read_xcr0() & mask) == mask;
}

static bool have_avx2(void)
{
    __builtin_cpu_init();
    /* NOTE: f16c via CPUID because clang's __builtin_cpu_supports does not
     * know that feature name. */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           (cpuid1_ecx() & CPUID1_ECX_F16C) && os_saves(XCR0_YMM);
}

static bool have_avx512(void)
{
    __builtin_cpu_init();
    return have_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && os_saves(XCR0_ZMM);
}

static bool have_avx512vnni(void)
{
    return have_avx512() && __builtin_cpu_supports("avx512vnni");
}
#endif

bool slm_simd_available(slm_simd level)
{
    switch (level) {
    case SLM_SIMD_SCALAR: return true;
#if defined(__x86_64__)
    case SLM_SIMD_AVX2: return have_avx2();
    case SLM_SIMD_AVX512: return have_avx512();
    case SLM_SIMD_AVX512_VNNI: return have_avx512vnni();
#endif
#if defined(__aarch64__)
    case SLM_SIMD_NEON: return true; /* Advanced SIMD is mandatory on AArch64 */
#endif
    default: return false;
    }
}

slm_simd slm_simd_best(void)
{
    static const slm_simd order[] = {SLM_SIMD_AVX512_VNNI, SLM_SIMD_AVX512, SLM_SIMD_AVX2,
                                     SLM_SIMD_NEON};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (slm_simd_available(order[i]))
            return order[i];
    return SLM_SIMD_SCALAR;
}

static const char *const names[SLM_SIMD_COUNT] = {
    [SLM_SIMD_SCALAR] = "scalar",
    [SLM_SIMD_AVX2] = "avx2",
    [SLM_SIMD_AVX512] = "avx512",
    [SLM_SIMD_NEON] = "neon",
    [SLM_SIMD_AVX512_VNNI] = "avx512vnni",
};

const char *slm_simd_name(slm_simd level)
{
    if ((unsigned)level >= SLM_SIMD_COUNT)
        return "unknown";
    return names[level];
}

slm_status slm_simd_parse(const char *name, slm_simd *out)
{
    if (name == NULL || out == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "SIMD level: no name given");
    for (int i = 0; i < SLM_SIMD_COUNT; i++) {
        if (strcasecmp(name, names[i]) != 0)
            continue;
        if (!slm_simd_available((slm_simd)i))
            return slm_error(SLM_STATUS_UNSUPPORTED,
                             "SIMD level '%s' is not available on this CPU or in this build "
                             "(best here: %s)",
                             names[i], slm_simd_name(slm_simd_best()));
        *out = (slm_simd)i;
        return SLM_OK;
    }
    return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                     "unknown SIMD level '%s' (valid: scalar, avx2, avx512, neon)", name);
}
