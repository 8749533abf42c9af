/*
 * cpu_simd.h — which SIMD instruction sets the CPU kernels may use. Every
 * kernel has a scalar path that is always available; faster paths are chosen
 * at run time from the CPU's features (one binary for every x86-64 CPU), and
 * SLM_CPU_SIMD=scalar|avx2|avx512|avx512vnni|neon forces one (tests run every level the
 * machine has).
 */
#ifndef SLM_CPU_SIMD_H
#define SLM_CPU_SIMD_H

#include <stdbool.h>

#include "slm.h"

typedef enum slm_simd {
    SLM_SIMD_SCALAR = 0,
    SLM_SIMD_AVX2 = 1,   /* AVX2 + FMA + F16C */
    SLM_SIMD_AVX512 = 2, /* AVX-512 F, BW, VL, DQ (plus the AVX2 set) */
    SLM_SIMD_NEON = 3,   /* AArch64 Advanced SIMD */
    SLM_SIMD_AVX512_VNNI = 4, /* AVX512 plus VNNI byte dot products */
    SLM_SIMD_COUNT
} slm_simd;

/* Compiled into this build and supported by this CPU. */
bool slm_simd_available(slm_simd level);
/* The best available level. */
slm_simd slm_simd_best(void);
const char *slm_simd_name(slm_simd level);
/* Parses a level name; fails with a message listing the valid names or
 * saying the CPU lacks it. */
slm_status slm_simd_parse(const char *name, slm_simd *out);
#endif
