/*
 * vec_scalar.c — the portable f32 vector kernels (cpu_vec.h): what the
 * scalar and NEON levels run, and the AVX2 gates' tails. Like every level,
 * they are checked against tests/op_reference.c by test_backend_ops.
 */
#include <math.h>

#include "cpu_backend.h"
#include "cpu_vec.h"

static void scores(const float *q, int nq, int hd, int hdp, const float *kT, int bsp, float *s)
{
    for (int i = 0; i < nq; i++) {
        float *si = s + (int64_t)i * bsp;
        const float *qi = q + (int64_t)i * hdp;
        for (int j = 0; j < bsp; j++)
            si[j] = 0;
        for (int d = 0; d < hd; d++) {
            const float *kd = kT + (int64_t)d * bsp;
            for (int j = 0; j < bsp; j++)
                si[j] += qi[d] * kd[j];
        }
    }
}

static void accum(float *acc, int nq, int hdp, const float *p, int bsp, int nk, const float *v)
{
    for (int i = 0; i < nq; i++) {
        float *ai = acc + (int64_t)i * hdp;
        for (int j = 0; j < nk; j++) {
            float w = p[(int64_t)i * bsp + j];
            const float *vj = v + (int64_t)j * hdp;
            for (int d = 0; d < hdp; d++)
                ai[d] += w * vj[d];
        }
    }
}

/* 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))), the tanh form Gemma uses. */
static float gelu_tanh(float x)
{
    const float c = 0.7978845608028654f; /* sqrt(2/π) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static void swiglu_row(const float *g, const float *u, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void geglu_row(const float *g, const float *u, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = gelu_tanh(g[i]) * u[i];
}

const slm_vec_kernels slm_vec_scalar = {
    .scores = scores,
    .accum = accum,
    .f16_row = slm_cpu_f16_to_f32_row,
    .swiglu_row = swiglu_row,
    .geglu_row = geglu_row,
};

const slm_vec_kernels *slm_vec_for(slm_simd level)
{
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
    if (level == SLM_SIMD_AVX2 || level == SLM_SIMD_AVX512 || level == SLM_SIMD_AVX512_VNNI)
        return &slm_vec_avx2;
#endif
    (void)level;
    return &slm_vec_scalar;
}
