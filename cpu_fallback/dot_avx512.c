/*
 * dot_avx512.c — AVX-512 (F, BW, VL, DQ) kernels of the CPU matmul, chosen
 * at run time only on CPUs that have them. Same coverage and structure as
 * dot_avx2.c (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K, F32,
 * F16, BF16 and both quantizers; Q2_K, Q3_K, IQ4_XS use dot_scalar.c), with
 * 512-bit registers:
 *   - 32-element types take two blocks per register (scale per 256-bit half);
 *   - Q4_K/Q5_K take one 64-element chunk (two sub-blocks) per register;
 *   - Q6_K takes 64 elements (four 16-element scale groups) per register;
 *   - float weights take 16 elements per step with a masked tail.
 * Rows are handled as in dot_avx2.c: a compile-time row count, each row its
 * own accumulators, summed in an order fixed by n alone. The quantizers
 * reproduce dot_scalar.c bit for bit.
 *
 * dot_avx512vnni.c compiles this file again with SLM_DOT_VNNI (and
 * -mavx512vnni): the byte dot products become VPDPBUSD, the rest is shared.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu_dot.h"

#define INLINE static inline __attribute__((always_inline))

INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* [lo | hi] from two 256-bit halves. */
INLINE __m512i join_i(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
INLINE __m512 join_ps(float lo, float hi)
{
    return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1);
}

#ifdef SLM_DOT_VNNI
/* unsigned × signed bytes, summed by fours into int32: one VPDPBUSD (AVX-512
 * VNNI) instead of VPMADDUBSW + VPMADDWD; exact where the pair form could
 * saturate int16, equal elsewhere. */
INLINE __m512i dot_us(__m512i u, __m512i s)
{
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
}
/* acc + the int16 pair products of a and b summed into int32: VPDPWSSD. */
INLINE __m512i madd_acc(__m512i acc, __m512i a, __m512i b)
{
    return _mm512_dpwssd_epi32(acc, a, b);
}
#define SLM_DOT_TABLE slm_dot_avx512vnni
#else
INLINE __m512i madd_acc(__m512i acc, __m512i a, __m512i b)
{
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
}
INLINE __m512i dot_us(__m512i u, __m512i s)
{
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
}
#define SLM_DOT_TABLE slm_dot_avx512
#endif

/* Signed × signed: |a| times b with a's sign moved onto b (b within ±127). */
INLINE __m512i dot_ss(__m512i a, __m512i b)
{
    __m512i sb = _mm512_mask_sub_epi8(b, _mm512_movepi8_mask(a), _mm512_setzero_si512(), b);
    return dot_us(_mm512_abs_epi8(a), sb);
}

INLINE __m256i nibbles32(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* The 32 bits of a Q5 qh field as 32 bytes: 0xFF where element e's bit is
 * set (byte e/8 of qh spread over 8 lanes, then one bit tested per lane). */
INLINE __m256i qh_bytes(const uint8_t qh[4])
{
    uint32_t bits;
    memcpy(&bits, qh, 4);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                    _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                                       0x0303030303030303LL));
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

INLINE __m256i q5_codes(const uint8_t *qs, const uint8_t qh[4])
{
    return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(qh_bytes(qh), _mm256_set1_epi8(0x10)));
}

/* IQ4_NL: each nibble looked up in the 16-entry code book. */
INLINE __m256i iq4_nl_lookup(const uint8_t *qs)
{
    __m256i book = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)slm_iq4nl_values));
    return _mm256_shuffle_epi8(book, nibbles32(qs));
}

INLINE __m256i ld256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* ---------------------------------------------------------------------- */
/* 32-element types: blocks ib (low half) and ib+1 (high half) together;  */
/* an odd last block goes alone with a zero high half.                    */

INLINE __m256i q4_0_codes(const void *p)
{
    return _mm256_sub_epi8(nibbles32(((const slm_block_q4_0 *)p)->qs), _mm256_set1_epi8(8));
}
INLINE __m256i q8_0_codes(const void *p) { return ld256(((const slm_block_q8_0 *)p)->qs); }
INLINE __m256i q4_1_codes(const void *p) { return nibbles32(((const slm_block_q4_1 *)p)->qs); }
INLINE __m256i q5_0_codes(const void *p)
{
    const slm_block_q5_0 *b = p;
    return _mm256_sub_epi8(q5_codes(b->qs, b->qh), _mm256_set1_epi8(16));
}
INLINE __m256i q5_1_codes(const void *p)
{
    const slm_block_q5_1 *b = p;
    return q5_codes(b->qs, b->qh);
}
INLINE __m256i iq4_nl_codes(const void *p) { return iq4_nl_lookup(((const slm_block_iq4_nl *)p)->qs); }

/* One register of blocks: codes q, weight scales d0/d1 (d1 = 0 and zero
 * codes for a lone block), into acc per row. min: Q4_1's m·s terms. */
INLINE void pair32(__m512i q, int sym, float d0, float d1, float m0, float m1, int64_t ib, int two,
                   const slm_act_q8_0 *const *a, int nr, __m512 *acc, float *summ)
{
    for (int r = 0; r < nr; r++) {
        const slm_act_q8_0 *x0 = &a[r][ib];
        __m256i lo = ld256(x0->qs);
        __m512i xv = two ? join_i(lo, ld256(x0[1].qs)) : _mm512_castsi256_si512(lo);
        __m512i p = sym ? dot_ss(q, xv) : dot_us(q, xv);
        __m512 sc = join_ps(d0 * x0->d, two ? d1 * x0[1].d : 0.0f);
        acc[r] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(p), acc[r]);
        if (summ) {
            summ[r] += m0 * x0->s;
            if (two)
                summ[r] += m1 * x0[1].s;
        }
    }
}

/* The shared loop; `bytes` is the block size, codes() decodes a block,
 * has_min marks Q4_1/Q5_1 (unsigned codes plus the m·s term). */
INLINE void blk32_impl(int64_t n, const uint8_t *w, size_t bytes, __m256i (*codes)(const void *),
                       int has_min, const void *x, size_t xs, int nr, float *out)
{
    const slm_act_q8_0 *a[SLM_DOT_MAX_ROWS];
    __m512 acc[SLM_DOT_MAX_ROWS];
    float summ[SLM_DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_0(x, xs, r);
        acc[r] = _mm512_setzero_ps();
        summ[r] = 0.0f;
    }
    int64_t nb = n / SLM_QK, ib = 0;
    /* d and m sit at offsets 0 and 2 in every 32-element block type */
    const slm_block_q4_1 *h;
    for (; ib + 1 < nb; ib += 2, w += 2 * bytes) {
        const slm_block_q4_1 *h1 = (const slm_block_q4_1 *)(w + bytes);
        h = (const slm_block_q4_1 *)w;
        __m512i q = join_i(codes(w), codes(w + bytes));
        pair32(q, !has_min, h2f(h->d), h2f(h1->d), has_min ? h2f(h->m) : 0.0f,
               has_min ? h2f(h1->m) : 0.0f, ib, 1, a, nr, acc, has_min ? summ : NULL);
    }
    if (ib < nb) {
        h = (const slm_block_q4_1 *)w;
        __m512i q = _mm512_castsi256_si512(codes(w));
        q = _mm512_inserti64x4(q, _mm256_setzero_si256(), 1);
        pair32(q, !has_min, h2f(h->d), 0.0f, has_min ? h2f(h->m) : 0.0f, 0.0f, ib, 0, a, nr, acc,
               has_min ? summ : NULL);
    }
    for (int r = 0; r < nr; r++)
        out[r] = _mm512_reduce_add_ps(acc[r]) + summ[r];
}

INLINE void q4_0_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_q4_0), q4_0_codes, 0, x, xs, nr, out);
}
INLINE void q8_0_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_q8_0), q8_0_codes, 0, x, xs, nr, out);
}
INLINE void q4_1_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_q4_1), q4_1_codes, 1, x, xs, nr, out);
}
INLINE void q5_0_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_q5_0), q5_0_codes, 0, x, xs, nr, out);
}
INLINE void q5_1_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_q5_1), q5_1_codes, 1, x, xs, nr, out);
}
INLINE void iq4_nl_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    blk32_impl(n, w, sizeof(slm_block_iq4_nl), iq4_nl_codes, 0, x, xs, nr, out);
}
SLM_DOT_DISPATCH8(dot_q4_0, q4_0_impl)
SLM_DOT_DISPATCH8(dot_q8_0, q8_0_impl)
SLM_DOT_DISPATCH8(dot_q4_1, q4_1_impl)
SLM_DOT_DISPATCH8(dot_q5_0, q5_0_impl)
SLM_DOT_DISPATCH8(dot_q5_1, q5_1_impl)
SLM_DOT_DISPATCH8(dot_iq4_nl, iq4_nl_impl)

/* ---------------------------------------------------------------------- */
/* K types against Q8_K.                                                  */

/* Q4_K / Q5_K: chunk c's 32 qs bytes in both halves, the low half keeps the
 * low nibbles (sub-block 2c), the high half the high ones (2c+1); the
 * activations of both sub-blocks are 64 contiguous codes. */
INLINE void qk45_impl(int64_t n, const uint8_t *w, size_t bbytes, int has_qh, const void *x,
                      size_t xs, int nr, float *out)
{
    const slm_block_q8_k *a[SLM_DOT_ROWS_DEFAULT];
    __m512 acc[SLM_DOT_ROWS_DEFAULT];
    float summ[SLM_DOT_ROWS_DEFAULT];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_k(x, xs, r);
        acc[r] = _mm512_setzero_ps();
        summ[r] = 0.0f;
    }
    const __m512i shift = join_i(_mm256_setzero_si256(), _mm256_set1_epi16(4));
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    for (int64_t ib = 0; ib < n / SLM_QK_K; ib++, w += bbytes) {
        const slm_block_q4_k *hdr = (const slm_block_q4_k *)w;
        const uint8_t *qs = has_qh ? ((const slm_block_q5_k *)w)->qs : hdr->qs;
        uint8_t sc[8], mn[8];
        slm_qd_k_scales_mins(hdr->scales, sc, mn);
        __m512i qhv = has_qh ? _mm512_broadcast_i64x4(ld256(((const slm_block_q5_k *)w)->qh))
                             : _mm512_setzero_si512();
        __m512i sumi[SLM_DOT_ROWS_DEFAULT];
        for (int r = 0; r < nr; r++)
            sumi[r] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            __m512i v = _mm512_broadcast_i64x4(ld256(qs + 32 * c));
            __m512i q = _mm512_and_si512(_mm512_srlv_epi16(v, shift), m4);
            if (has_qh) {
                __m512i bit = join_i(_mm256_set1_epi8((char)(1 << (2 * c))),
                                     _mm256_set1_epi8((char)(1 << (2 * c + 1))));
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qhv, bit), q, b4);
            }
            __m512i s16 = join_i(_mm256_set1_epi16(sc[2 * c]), _mm256_set1_epi16(sc[2 * c + 1]));
            for (int r = 0; r < nr; r++) {
                __m512i xv = _mm512_loadu_si512(a[r][ib].qs + 64 * c);
                sumi[r] = madd_acc(sumi[r], _mm512_maddubs_epi16(q, xv), s16);
            }
        }
        float d = h2f(hdr->d), dmin = h2f(hdr->dmin);
        for (int r = 0; r < nr; r++) {
            float dd = d * a[r][ib].d, dm = dmin * a[r][ib].d;
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
            summ[r] += dm * (float)slm_dot_k_min_sum(mn, a[r][ib].bsums);
        }
    }
    for (int r = 0; r < nr; r++)
        out[r] = _mm512_reduce_add_ps(acc[r]) - summ[r];
}

INLINE void q4_k_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    qk45_impl(n, w, sizeof(slm_block_q4_k), 0, x, xs, nr, out);
}
INLINE void q5_k_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    qk45_impl(n, w, sizeof(slm_block_q5_k), 1, x, xs, nr, out);
}
SLM_DOT_DISPATCH(dot_q4_k, q4_k_impl)
SLM_DOT_DISPATCH(dot_q5_k, q5_k_impl)

/* The i16 scale vector for four 16-element groups g..g+3 of a Q6_K block:
 * each int8 scale repeated over the 8 pair-lanes of its group. */
INLINE __m512i q6_scales(__m256i sc2, int g)
{
    const int64_t rep = 0x0101010101010101LL;
    __m256i idx = _mm256_setr_epi64x((g & 15) * rep, (g & 15) * rep + rep, (g & 15) * rep,
                                     (g & 15) * rep + rep);
    /* lane 0 holds groups g, g+1; lane 1 groups g+2, g+3: pshufb indexes
     * within each 128-bit lane of the twice-broadcast scales */
    idx = _mm256_add_epi8(idx, _mm256_setr_epi64x(0, 0, 2 * rep, 2 * rep));
    return _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(sc2, idx));
}

/* Q6_K: per 128-element half h, the 64 ql bytes give elements 0..63 (low
 * nibbles) and 64..127 (high nibbles); qh supplies bit pairs 0/2 and 4/6. */
INLINE void q6_k_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    const slm_block_q6_k *b = w;
    const slm_block_q8_k *a[SLM_DOT_ROWS_DEFAULT];
    __m512 acc[SLM_DOT_ROWS_DEFAULT];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_k(x, xs, r);
        acc[r] = _mm512_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    const __m512i shA = join_i(_mm256_setzero_si256(), _mm256_set1_epi16(2));
    const __m512i shB = join_i(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
    for (int64_t ib = 0; ib < n / SLM_QK_K; ib++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)b[ib].scales);
        __m256i sc2 = _mm256_broadcastsi128_si256(sc8);
        __m256i scw = _mm256_cvtepi8_epi16(sc8);
        __m512i sumi[SLM_DOT_ROWS_DEFAULT];
        for (int r = 0; r < nr; r++) {
            __m256i mins = _mm256_madd_epi16(ld256(a[r][ib].bsums), scw);
            __m256i neg = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(mins, 5));
            sumi[r] = _mm512_inserti64x4(_mm512_setzero_si512(), neg, 0);
        }
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512(b[ib].ql + 64 * h);
            __m512i qh = _mm512_broadcast_i64x4(ld256(b[ib].qh + 32 * h));
            __m512i qa = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                         _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shA), m2), 4));
            __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                         _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shB), m2), 4));
            __m512i sa = q6_scales(sc2, 8 * h), sb = q6_scales(sc2, 8 * h + 4);
            for (int r = 0; r < nr; r++) {
                const int8_t *xq = a[r][ib].qs + 128 * h;
                /* integer sums: the order of the two adds changes nothing */
                sumi[r] = madd_acc(sumi[r], _mm512_maddubs_epi16(qa, _mm512_loadu_si512(xq)), sa);
                sumi[r] = madd_acc(sumi[r], _mm512_maddubs_epi16(qb, _mm512_loadu_si512(xq + 64)), sb);
            }
        }
        float d = h2f(b[ib].d);
        for (int r = 0; r < nr; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d * a[r][ib].d), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
    }
    for (int r = 0; r < nr; r++)
        out[r] = _mm512_reduce_add_ps(acc[r]);
}
SLM_DOT_DISPATCH(dot_q6_k, q6_k_impl)

/* ---------------------------------------------------------------------- */
/* Float weights: 32 elements per step in two accumulators, then masked   */
/* 16-element steps (the mask zeroes what lies past n).                   */

INLINE __m512 ld_f32(const void *w, int64_t i, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, (const float *)w + i);
}
INLINE __m512 ld_f16(const void *w, int64_t i, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i));
}
INLINE __m512 ld_bf16(const void *w, int64_t i, __mmask16 m)
{
    __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

#define FLOAT_IMPL(fname, ld)                                                                 \
    INLINE void fname(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out) \
    {                                                                                         \
        const float *xr[SLM_DOT_ROWS_DEFAULT];                                                \
        __m512 acc0[SLM_DOT_ROWS_DEFAULT], acc1[SLM_DOT_ROWS_DEFAULT];                        \
        for (int r = 0; r < nr; r++) {                                                        \
            xr[r] = (const float *)((const char *)x + (size_t)r * xs);                        \
            acc0[r] = acc1[r] = _mm512_setzero_ps();                                          \
        }                                                                                     \
        int64_t i = 0;                                                                        \
        for (; i + 32 <= n; i += 32) {                                                        \
            __m512 w0 = ld(w, i, 0xFFFF), w1 = ld(w, i + 16, 0xFFFF);                         \
            for (int r = 0; r < nr; r++) {                                                    \
                acc0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xr[r] + i), acc0[r]);           \
                acc1[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xr[r] + i + 16), acc1[r]);      \
            }                                                                                 \
        }                                                                                     \
        for (; i < n; i += 16) {                                                              \
            int64_t left = n - i;                                                             \
            __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);     \
            __m512 w0 = ld(w, i, m);                                                          \
            for (int r = 0; r < nr; r++)                                                      \
                acc0[r] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, xr[r] + i), acc0[r]);  \
        }                                                                                     \
        for (int r = 0; r < nr; r++)                                                          \
            out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));                   \
    }

FLOAT_IMPL(f32_impl, ld_f32)
FLOAT_IMPL(f16_impl, ld_f16)
FLOAT_IMPL(bf16_impl, ld_bf16)
SLM_DOT_DISPATCH(dot_f32, f32_impl)
SLM_DOT_DISPATCH(dot_f16, f16_impl)
SLM_DOT_DISPATCH(dot_bf16, bf16_impl)

/* ---------------------------------------------------------------------- */
/* Activation quantizers.                                                 */

/* roundf() exactly (see dot_avx2.c), to s32. */
INLINE __m512i round_away(__m512 t)
{
    __m512 a = _mm512_abs_ps(t);
    __m512 tr = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(a, tr), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    tr = _mm512_mask_add_ps(tr, up, tr, _mm512_set1_ps(1.0f));
    __m512 sign = _mm512_andnot_ps(_mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff)), t);
    return _mm512_cvttps_epi32(_mm512_or_ps(tr, sign));
}

static void quant_q8_0(const float *x, slm_act_q8_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / SLM_QK; b++, x += SLM_QK, y++) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float d = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1))) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m512i q0 = round_away(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
        __m512i q1 = round_away(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
        _mm_storeu_si128((__m128i *)y->qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(y->qs + 16), _mm512_cvtepi32_epi8(q1));
        int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        y->d = slm_dot_f16_round(d);
        y->s = y->d * (float)sum;
    }
}

static void quant_q8_k(const float *x, slm_block_q8_k *y, int64_t n)
{
    for (int64_t b = 0; b < n / SLM_QK_K; b++, x += SLM_QK_K, y++) {
        __m512 amx = _mm512_setzero_ps(), mx = _mm512_loadu_ps(x), mn = mx;
        for (int k = 0; k < SLM_QK_K; k += 16) {
            __m512 v = _mm512_loadu_ps(x + k);
            amx = _mm512_max_ps(amx, _mm512_abs_ps(v));
            mx = _mm512_max_ps(mx, v);
            mn = _mm512_min_ps(mn, v);
        }
        float amax = _mm512_reduce_max_ps(amx), vmax = _mm512_reduce_max_ps(mx);
        float vmin = _mm512_reduce_min_ps(mn), max = 0.0f;
        /* the first element of largest magnitude, as the scalar scan picks it */
        if (amax == 0.0f)
            max = 0.0f;
        else if (vmax == amax && vmin != -amax)
            max = amax;
        else if (vmin == -amax && vmax != amax)
            max = -amax;
        else
            for (int j = 0; j < SLM_QK_K; j++)
                if (fabsf(x[j]) == amax) {
                    max = x[j];
                    break;
                }
        memset(y, 0, sizeof *y);
        if (max == 0.0f)
            continue;
        float iscale = -127.0f / max;
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
        for (int g = 0; g < SLM_QK_K / 16; g++) {
            /* cvtps rounds to nearest even under the default MXCSR, as lrintf does */
            __m512i t = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x + 16 * g)));
            t = _mm512_min_epi32(_mm512_max_epi32(t, lo), hi);
            _mm_storeu_si128((__m128i *)(y->qs + 16 * g), _mm512_cvtepi32_epi8(t));
            y->bsums[g] = (int16_t)_mm512_reduce_add_epi32(t);
        }
        y->d = 1.0f / iscale;
    }
}

const slm_dot_kernels SLM_DOT_TABLE = {
    .dot =
        {
            [SLM_TYPE_F32] = dot_f32,
            [SLM_TYPE_F16] = dot_f16,
            [SLM_TYPE_BF16] = dot_bf16,
            [SLM_TYPE_Q4_0] = dot_q4_0,
            [SLM_TYPE_Q4_1] = dot_q4_1,
            [SLM_TYPE_Q8_0] = dot_q8_0,
            [SLM_TYPE_Q5_0] = dot_q5_0,
            [SLM_TYPE_Q5_1] = dot_q5_1,
            [SLM_TYPE_IQ4_NL] = dot_iq4_nl,
            [SLM_TYPE_Q4_K] = dot_q4_k,
            [SLM_TYPE_Q5_K] = dot_q5_k,
            [SLM_TYPE_Q6_K] = dot_q6_k,
        },
    .quant_q8_0 = quant_q8_0,
    .quant_q8_k = quant_q8_k,
    /* 32-element blocks: 32 zmm registers hold eight rows' accumulators
     * beside a decoded weight block, so each block is decoded once per
     * eight rows (1B Q4_0 prefill +14%). The K types keep four: eight
     * measured 3% slower there (more live registers per row). */
    .max_rows =
        {
            [SLM_TYPE_Q4_0] = 8,
            [SLM_TYPE_Q4_1] = 8,
            [SLM_TYPE_Q8_0] = 8,
            [SLM_TYPE_Q5_0] = 8,
            [SLM_TYPE_Q5_1] = 8,
            [SLM_TYPE_IQ4_NL] = 8,
        },
};
