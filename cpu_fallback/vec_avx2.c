/*
 * vec_avx2.c — the f32 vector kernels of cpu_vec.h with AVX2 + FMA + F16C
 * (the AVX-512 levels run these too).
 *
 * The attention kernels are register-blocked: four query rows × 16
 * positions (scores) or four rows × 16 dimensions (accum) stay in eight
 * accumulators, so each loaded K or V vector feeds four FMAs. Fewer rows
 * or a narrower tail run the same code with smaller constant blocks; a
 * row's arithmetic is the same in every block shape.
 */
#include <immintrin.h>

#include "cpu_backend.h"
#include "cpu_vec.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* rows i..i+NR-1, columns j0..j0+8·NC-1 of s */
ALWAYS_INLINE void scores_block(const float *q, int hd, int hdp, const float *kT, int bsp,
                                float *s, int i, int j0, const int NR, const int NC)
{
    __m256 a[4][2];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++)
            a[r][c] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m256 k[2];
        for (int c = 0; c < NC; c++)
            k[c] = _mm256_loadu_ps(kT + (int64_t)d * bsp + j0 + 8 * c);
        for (int r = 0; r < NR; r++) {
            __m256 qv = _mm256_broadcast_ss(q + (int64_t)(i + r) * hdp + d);
            for (int c = 0; c < NC; c++)
                a[r][c] = _mm256_fmadd_ps(qv, k[c], a[r][c]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++)
            _mm256_storeu_ps(s + (int64_t)(i + r) * bsp + j0 + 8 * c, a[r][c]);
}

ALWAYS_INLINE void scores_rows(const float *q, int hd, int hdp, const float *kT, int bsp,
                               float *s, int i, const int NR)
{
    int j0 = 0;
    for (; j0 + 16 <= bsp; j0 += 16)
        scores_block(q, hd, hdp, kT, bsp, s, i, j0, NR, 2);
    if (j0 < bsp)
        scores_block(q, hd, hdp, kT, bsp, s, i, j0, NR, 1);
}

static void scores(const float *q, int nq, int hd, int hdp, const float *kT, int bsp, float *s)
{
    int i = 0;
    for (; i + 4 <= nq; i += 4)
        scores_rows(q, hd, hdp, kT, bsp, s, i, 4);
    for (; i < nq; i++)
        scores_rows(q, hd, hdp, kT, bsp, s, i, 1);
}

/* rows i..i+NR-1, dimensions d0..d0+8·NC-1 of acc */
ALWAYS_INLINE void accum_block(float *acc, int hdp, const float *p, int bsp, int nk,
                               const float *v, int i, int d0, const int NR, const int NC)
{
    __m256 a[4][2];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++)
            a[r][c] = _mm256_loadu_ps(acc + (int64_t)(i + r) * hdp + d0 + 8 * c);
    for (int j = 0; j < nk; j++) {
        __m256 vv[2];
        for (int c = 0; c < NC; c++)
            vv[c] = _mm256_loadu_ps(v + (int64_t)j * hdp + d0 + 8 * c);
        for (int r = 0; r < NR; r++) {
            __m256 w = _mm256_broadcast_ss(p + (int64_t)(i + r) * bsp + j);
            for (int c = 0; c < NC; c++)
                a[r][c] = _mm256_fmadd_ps(w, vv[c], a[r][c]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++)
            _mm256_storeu_ps(acc + (int64_t)(i + r) * hdp + d0 + 8 * c, a[r][c]);
}

ALWAYS_INLINE void accum_rows(float *acc, int hdp, const float *p, int bsp, int nk,
                              const float *v, int i, const int NR)
{
    int d0 = 0;
    for (; d0 + 16 <= hdp; d0 += 16)
        accum_block(acc, hdp, p, bsp, nk, v, i, d0, NR, 2);
    if (d0 < hdp)
        accum_block(acc, hdp, p, bsp, nk, v, i, d0, NR, 1);
}

static void accum(float *acc, int nq, int hdp, const float *p, int bsp, int nk, const float *v)
{
    int i = 0;
    for (; i + 4 <= nq; i += 4)
        accum_rows(acc, hdp, p, bsp, nk, v, i, 4);
    for (; i < nq; i++)
        accum_rows(acc, hdp, p, bsp, nk, v, i, 1);
}

static void f16_row(const uint8_t *src, float *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * (size_t)i))));
    if (i < n)
        slm_cpu_f16_to_f32_row(src + 2 * (size_t)i, dst + i, n - i);
}

/* e^x for x clamped to [-87.3, 88.3] (so 2^n stays a normal float):
 * x = n·ln2 + r, |r| ≤ ln2/2, e^r by Cephes' degree-7 polynomial. */
static inline __m256 exp_ps(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

/* silu(x)·u = x / (1 + e^(-x)) · u */
static inline __m256 silu_mul(__m256 x, __m256 u)
{
    __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x)));
    return _mm256_mul_ps(_mm256_div_ps(x, den), u);
}

/* gelu_tanh(x)·u = 0.5·x·(1 + tanh(z))·u with z = sqrt(2/π)·(x + 0.044715·x³),
 * computed as x / (1 + e^(−2z))·u (0.5·(1 + tanh(z)) = 1 / (1 + e^(−2z))):
 * no cancellation where tanh(z) ≈ −1, so it stays within the op test's
 * budget, which the tanh form (1 − 2/(1 + e^(2z))) exceeded for g ≪ 0. */
static inline __m256 gelu_mul(__m256 x, __m256 u)
{
    const __m256 c2 = _mm256_set1_ps(-2 * 0.7978845608028654f);
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 e = exp_ps(_mm256_mul_ps(c2, _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x)));
    __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
    return _mm256_mul_ps(_mm256_div_ps(x, den), u);
}

static void swiglu_row(const float *g, const float *u, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        _mm256_storeu_ps(y + i, silu_mul(x, _mm256_loadu_ps(u + i)));
    }
    if (i < n)
        slm_vec_scalar.swiglu_row(g + i, u + i, y + i, n - i);
}

static void geglu_row(const float *g, const float *u, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        _mm256_storeu_ps(y + i, gelu_mul(x, _mm256_loadu_ps(u + i)));
    }
    if (i < n)
        slm_vec_scalar.geglu_row(g + i, u + i, y + i, n - i);
}

const slm_vec_kernels slm_vec_avx2 = {
    .scores = scores,
    .accum = accum,
    .f16_row = f16_row,
    .swiglu_row = swiglu_row,
    .geglu_row = geglu_row,
};
