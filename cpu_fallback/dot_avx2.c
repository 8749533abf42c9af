/*
 * dot_avx2.c — AVX2 + FMA + F16C kernels of the CPU matmul (compiled with
 * those flags by CMake because of the file name; chosen at run time only on
 * CPUs that have them). Covers every supported type (Q2_K … Q6_K, IQ4_XS,
 * the 32-element types, F32, F16, BF16) and both activation quantizers.
 *
 * Each kernel is written once for a compile-time row count (1..4) through an
 * always-inlined body, so every activation row keeps its accumulators in
 * registers and is summed in the same order whatever the row count. The
 * integer work per block uses the usual maddubs (u8 × s8 → s16 pairs) then
 * madd (→ s32) chain; all intermediate sums fit their lanes (noted per type).
 * The quantizers reproduce dot_scalar.c bit for bit (same max, same scale
 * arithmetic, the same rounding done exactly in SIMD).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu_dot.h"

#define INLINE static inline __attribute__((always_inline))

INLINE float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* 16 bytes of packed nibbles → 32 bytes: low nibbles first, then high
 * (the element order of Q4_0/Q4_1/IQ4_NL). */
INLINE __m256i nibbles32(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Σ of adjacent u8·s8 products → 8 × s32. u ≤ 63, |s| ≤ 127 keeps the s16
 * pairs from saturating. */
INLINE __m256i dot_us(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Signed × signed via |a| and sign(a)·b; b must not be −128 (activation
 * codes are within ±127). */
INLINE __m256i dot_ss(__m256i a, __m256i b)
{
    return dot_us(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
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

/* ---------------------------------------------------------------------- */
/* 32-element types. Blocks alternate between two accumulators per row so */
/* the FMA latency chain does not bound a single-row (decode) call.       */

/* One block's contribution: codes q (s8 for sym types, u8 for Q4_1), then
 * per row acc += (dw·dx)·Σ q·x. */
INLINE void blk_sym(__m256i q, float dw, const slm_act_q8_0 *const *a, int64_t ib, int nr,
                    __m256 *acc)
{
    for (int r = 0; r < nr; r++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)a[r][ib].qs);
        __m256 p = _mm256_cvtepi32_ps(dot_ss(q, xv));
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[r][ib].d), p, acc[r]);
    }
}

INLINE __m256i q4_0_codes(const slm_block_q4_0 *b)
{
    return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
}

INLINE __m256i q8_0_codes(const slm_block_q8_0 *b)
{
    return _mm256_loadu_si256((const __m256i *)b->qs);
}

INLINE __m256i q5_0_codes(const slm_block_q5_0 *b)
{
    return _mm256_sub_epi8(q5_codes(b->qs, b->qh), _mm256_set1_epi8(16));
}

INLINE __m256i iq4_nl_codes(const slm_block_iq4_nl *b) { return iq4_nl_lookup(b->qs); }

#define SYM32_IMPL(fname, btype, codes)                                                      \
    INLINE void fname(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out) \
    {                                                                                        \
        const btype *b = w;                                                                  \
        const slm_act_q8_0 *a[SLM_DOT_MAX_ROWS];                                             \
        __m256 acc0[SLM_DOT_MAX_ROWS], acc1[SLM_DOT_MAX_ROWS];                               \
        for (int r = 0; r < nr; r++) {                                                       \
            a[r] = slm_dot_act_q8_0(x, xs, r);                                               \
            acc0[r] = acc1[r] = _mm256_setzero_ps();                                         \
        }                                                                                    \
        int64_t nb = n / SLM_QK, ib = 0;                                                     \
        for (; ib + 1 < nb; ib += 2) {                                                       \
            blk_sym(codes(&b[ib]), h2f(b[ib].d), a, ib, nr, acc0);                           \
            blk_sym(codes(&b[ib + 1]), h2f(b[ib + 1].d), a, ib + 1, nr, acc1);               \
        }                                                                                    \
        if (ib < nb)                                                                         \
            blk_sym(codes(&b[ib]), h2f(b[ib].d), a, ib, nr, acc0);                           \
        for (int r = 0; r < nr; r++)                                                         \
            out[r] = hsum_ps(_mm256_add_ps(acc0[r], acc1[r]));                               \
    }

SYM32_IMPL(q4_0_impl, slm_block_q4_0, q4_0_codes)
SYM32_IMPL(q8_0_impl, slm_block_q8_0, q8_0_codes)
SYM32_IMPL(q5_0_impl, slm_block_q5_0, q5_0_codes)
SYM32_IMPL(iq4_nl_impl, slm_block_iq4_nl, iq4_nl_codes)
SLM_DOT_DISPATCH(dot_q4_0, q4_0_impl)
SLM_DOT_DISPATCH(dot_q8_0, q8_0_impl)
SLM_DOT_DISPATCH(dot_q5_0, q5_0_impl)
SLM_DOT_DISPATCH(dot_iq4_nl, iq4_nl_impl)

/* Q4_1 / Q5_1: w = d·q + m with q in 0..31, so Σ w·x = d·dx·Σq·qx + m·s.
 * d and m are the first two fields of both block types. */
INLINE void blk_min(__m256i q, const slm_block_q4_1 *b, const slm_act_q8_0 *const *a, int64_t ib,
                    int nr, __m256 *acc, float *summ)
{
    float d = h2f(b->d), m = h2f(b->m);
    for (int r = 0; r < nr; r++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)a[r][ib].qs);
        __m256 p = _mm256_cvtepi32_ps(dot_us(q, xv));
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a[r][ib].d), p, acc[r]);
        summ[r] += m * a[r][ib].s;
    }
}

INLINE __m256i q4_1_codes(const uint8_t *p) { return nibbles32(((const slm_block_q4_1 *)p)->qs); }
INLINE __m256i q5_1_codes(const uint8_t *p)
{
    const slm_block_q5_1 *b = (const slm_block_q5_1 *)p;
    return q5_codes(b->qs, b->qh);
}

INLINE void min_impl(int64_t n, const uint8_t *w, size_t bytes, __m256i (*codes)(const uint8_t *),
                     const void *x, size_t xs, int nr, float *out)
{
    const slm_act_q8_0 *a[SLM_DOT_MAX_ROWS];
    __m256 acc0[SLM_DOT_MAX_ROWS], acc1[SLM_DOT_MAX_ROWS];
    float summ[SLM_DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_0(x, xs, r);
        acc0[r] = acc1[r] = _mm256_setzero_ps();
        summ[r] = 0.0f;
    }
    int64_t nb = n / SLM_QK, ib = 0;
    for (; ib + 1 < nb; ib += 2, w += 2 * bytes) {
        blk_min(codes(w), (const slm_block_q4_1 *)w, a, ib, nr, acc0, summ);
        blk_min(codes(w + bytes), (const slm_block_q4_1 *)(w + bytes), a, ib + 1, nr, acc1, summ);
    }
    if (ib < nb)
        blk_min(codes(w), (const slm_block_q4_1 *)w, a, ib, nr, acc0, summ);
    for (int r = 0; r < nr; r++)
        out[r] = hsum_ps(_mm256_add_ps(acc0[r], acc1[r])) + summ[r];
}

INLINE void q4_1_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    min_impl(n, w, sizeof(slm_block_q4_1), q4_1_codes, x, xs, nr, out);
}
INLINE void q5_1_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    min_impl(n, w, sizeof(slm_block_q5_1), q5_1_codes, x, xs, nr, out);
}
SLM_DOT_DISPATCH(dot_q5_1, q5_1_impl)
SLM_DOT_DISPATCH(dot_q4_1, q4_1_impl)

/* ---------------------------------------------------------------------- */
/* K types against Q8_K.                                                  */

/* Q4_K (hbits = NULL) and Q5_K (hbits = qh): per 64-element chunk c the
 * low nibbles are sub-block 2c, the high nibbles 2c+1. s32 lanes stay below
 * 4 chunks · 2 · 2·31·127 · 63. */
INLINE void qk45_impl(int64_t n, const uint8_t *w, size_t bbytes, int has_qh, const void *x,
                      size_t xs, int nr, float *out)
{
    const slm_block_q8_k *a[SLM_DOT_MAX_ROWS];
    __m256 acc[SLM_DOT_MAX_ROWS];
    float summ[SLM_DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_k(x, xs, r);
        acc[r] = _mm256_setzero_ps();
        summ[r] = 0.0f;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    for (int64_t ib = 0; ib < n / SLM_QK_K; ib++, w += bbytes) {
        /* Q4_K and Q5_K share d, dmin, scales at offsets 0, 2, 4 */
        const slm_block_q4_k *hdr = (const slm_block_q4_k *)w;
        const uint8_t *qh = has_qh ? ((const slm_block_q5_k *)w)->qh : NULL;
        const uint8_t *qs = has_qh ? ((const slm_block_q5_k *)w)->qs : hdr->qs;
        uint8_t sc[8], mn[8];
        slm_qd_k_scales_mins(hdr->scales, sc, mn);
        __m256i qhv = has_qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        __m256i sumi[SLM_DOT_MAX_ROWS];
        for (int r = 0; r < nr; r++)
            sumi[r] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(v, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (has_qh) {
                __m256i bl = _mm256_set1_epi8((char)(1 << (2 * c)));
                __m256i bh = _mm256_set1_epi8((char)(1 << (2 * c + 1)));
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qhv, bl), bl), b4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qhv, bh), bh), b4));
            }
            __m256i sl = _mm256_set1_epi16(sc[2 * c]), sh = _mm256_set1_epi16(sc[2 * c + 1]);
            for (int r = 0; r < nr; r++) {
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(a[r][ib].qs + 64 * c));
                __m256i x1 = _mm256_loadu_si256((const __m256i *)(a[r][ib].qs + 64 * c + 32));
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), sl);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), sh);
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p0, p1));
            }
        }
        float d = h2f(hdr->d), dmin = h2f(hdr->dmin);
        for (int r = 0; r < nr; r++) {
            float dd = d * a[r][ib].d, dm = dmin * a[r][ib].d;
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            summ[r] += dm * (float)slm_dot_k_min_sum(mn, a[r][ib].bsums);
        }
    }
    for (int r = 0; r < nr; r++)
        out[r] = hsum_ps(acc[r]) - summ[r];
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

/* Q6_K: codes u = q + 32 in 0..63 go through maddubs (pairs ≤ 16002), the
 * +32 is taken back as 32·Σ sc_j·bsums_j. Each 32-element piece covers two
 * 16-element scale groups, one per 128-bit lane. */
INLINE void q6_k_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    const slm_block_q6_k *b = w;
    const slm_block_q8_k *a[SLM_DOT_MAX_ROWS];
    __m256 acc[SLM_DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_k(x, xs, r);
        acc[r] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    for (int64_t ib = 0; ib < n / SLM_QK_K; ib++) {
        /* ~2 KB ahead, as gemm16_avx2.c does: decode streams these from DRAM */
        for (int o = 0; o < (int)sizeof *b; o += 64)
            _mm_prefetch((const char *)(b + ib + 10) + o, _MM_HINT_T0);
        __m256i sumi[SLM_DOT_MAX_ROWS];
        __m256i scw = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b[ib].scales));
        for (int r = 0; r < nr; r++) {
            __m256i bs = _mm256_loadu_si256((const __m256i *)a[r][ib].bsums);
            sumi[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(bs, scw), 5));
        }
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b[ib].ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b[ib].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b[ib].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
            for (int k = 0; k < 4; k++) {
                int j = 8 * h + 2 * k; /* scale groups j (low lane) and j+1 (high lane) */
                __m256i s16 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(b[ib].scales[j])),
                                                      _mm_set1_epi16(b[ib].scales[j + 1]), 1);
                for (int r = 0; r < nr; r++) {
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(a[r][ib].qs + 128 * h + 32 * k));
                    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xv), s16);
                    sumi[r] = _mm256_add_epi32(sumi[r], p);
                }
            }
        }
        float d = h2f(b[ib].d);
        for (int r = 0; r < nr; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a[r][ib].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
    }
    for (int r = 0; r < nr; r++)
        out[r] = hsum_ps(acc[r]);
}
SLM_DOT_DISPATCH(dot_q6_k, q6_k_impl)

/* ---------------------------------------------------------------------- */
/* Q2_K, Q3_K, IQ4_XS: 32 codes per register (two 16-element scale groups, */
/* one per 128-bit lane), scaled in the VPMADDWD that widens them.        */

/* [sc[g] × 8 | sc[g+1] × 8] as int16: the scales of one register's two
 * groups. */
INLINE __m256i pair_scales(int g0, int g1)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)g0)),
                                   _mm_set1_epi16((short)g1), 1);
}

/* Σ_e code·x over one register, each group times its scale (s16 pairs):
 * unsigned codes u ≤ 7 keep the maddubs pairs far from saturating. */
INLINE __m256i scaled_dot(__m256i u, __m256i x, __m256i s16)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), s16);
}

/* Q2_K / Q3_K share the 2-bit planes: register (h, j) holds elements
 * 128h + 32j .. + 31, bit pair j of bytes qs[32h ..]. Q2_K: w = d·sc·q −
 * dmin·mn (q 0..3); Q3_K: w = d·(sc − 32)·(q + 4·hbit − 4), with the −4
 * taken off through the bsums like Q6_K's −32. */
INLINE void q23_k_impl(int64_t n, const void *w, int q3, const void *x, size_t xs, int nr,
                       float *out)
{
    const size_t bytes = q3 ? sizeof(slm_block_q3_k) : sizeof(slm_block_q2_k);
    const slm_block_q8_k *a[SLM_DOT_MAX_ROWS];
    __m256 acc[SLM_DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_k(x, xs, r);
        acc[r] = _mm256_setzero_ps();
    }
    const __m256i m2 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    const uint8_t *wp = w;
    for (int64_t ib = 0; ib < n / SLM_QK_K; ib++, wp += bytes) {
        const slm_block_q2_k *b2 = (const slm_block_q2_k *)wp;
        const slm_block_q3_k *b3 = (const slm_block_q3_k *)wp;
        int16_t sc[16], mn[16];
        for (int g = 0; g < 16; g++) {
            sc[g] = (int16_t)(q3 ? slm_qd_q3k_scale(b3->scales, g) - 32 : b2->scales[g] & 0xF);
            mn[g] = (int16_t)(q3 ? 4 * sc[g] : b2->scales[g] >> 4); /* what Σx is taken times */
        }
        __m256i mnv = _mm256_loadu_si256((const __m256i *)mn);
        const uint8_t *qs = q3 ? b3->qs : b2->qs;
        __m256i hm = q3 ? _mm256_loadu_si256((const __m256i *)b3->hmask) : _mm256_setzero_si256();
        __m256i sumi[SLM_DOT_MAX_ROWS];
        int msum[SLM_DOT_MAX_ROWS];
        for (int r = 0; r < nr; r++) {
            sumi[r] = _mm256_setzero_si256();
            msum[r] = hsum_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a[r][ib].bsums), mnv));
        }
        for (int h = 0; h < 2; h++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
            for (int j = 0; j < 4; j++) {
                __m256i u = _mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m2);
                if (q3) /* the high bit of element 128h + 32j + l is bit 4h + j of hmask[l] */
                    u = _mm256_or_si256(u, _mm256_slli_epi16(
                                               _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), m1), 2));
                int g = 8 * h + 2 * j;
                __m256i s16 = pair_scales(sc[g], sc[g + 1]);
                for (int r = 0; r < nr; r++) {
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(a[r][ib].qs + 128 * h + 32 * j));
                    sumi[r] = _mm256_add_epi32(sumi[r], scaled_dot(u, xv, s16));
                }
            }
        }
        float d = h2f(q3 ? b3->d : b2->d), dmin = q3 ? d : h2f(b2->dmin);
        for (int r = 0; r < nr; r++) {
            float dx = a[r][ib].d;
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            acc[r] = _mm256_sub_ps(acc[r], _mm256_setr_ps(dmin * dx * (float)msum[r], 0, 0, 0, 0, 0, 0, 0));
        }
    }
    for (int r = 0; r < nr; r++)
        out[r] = hsum_ps(acc[r]);
}

INLINE void q2_k_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    q23_k_impl(n, w, 0, x, xs, nr, out);
}
INLINE void q3_k_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    q23_k_impl(n, w, 1, x, xs, nr, out);
}
SLM_DOT_DISPATCH(dot_q2_k, q2_k_impl)
SLM_DOT_DISPATCH(dot_q3_k, q3_k_impl)

/* IQ4_XS: per 32-element sub-block, code-book values (signed, |v| ≤ 127)
 * times x by the sign trick, scaled by the sub-block's (ls − 32). */
INLINE void iq4_xs_impl(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    const slm_block_iq4_xs *b = w;
    const slm_block_q8_k *a[SLM_DOT_MAX_ROWS];
    __m256 acc[SLM_DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        a[r] = slm_dot_act_q8_k(x, xs, r);
        acc[r] = _mm256_setzero_ps();
    }
    for (int64_t ib = 0; ib < n / SLM_QK_K; ib++) {
        __m256i sumi[SLM_DOT_MAX_ROWS];
        for (int r = 0; r < nr; r++)
            sumi[r] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            __m256i q = iq4_nl_lookup(b[ib].qs + 16 * s);
            int ls = slm_qd_iq4xs_scale(b[ib].scales_l, b[ib].scales_h, s) - 32;
            __m256i s16 = _mm256_set1_epi16((short)ls), aq = _mm256_sign_epi8(q, q);
            for (int r = 0; r < nr; r++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(a[r][ib].qs + 32 * s));
                sumi[r] = _mm256_add_epi32(sumi[r], scaled_dot(aq, _mm256_sign_epi8(xv, q), s16));
            }
        }
        float d = h2f(b[ib].d);
        for (int r = 0; r < nr; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a[r][ib].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
    }
    for (int r = 0; r < nr; r++)
        out[r] = hsum_ps(acc[r]);
}
SLM_DOT_DISPATCH(dot_iq4_xs, iq4_xs_impl)

/* ---------------------------------------------------------------------- */
/* Float weights: 16 elements per step in two accumulators, then 8, then  */
/* a scalar tail.                                                         */

INLINE __m256 ld_f32(const void *w, int64_t i) { return _mm256_loadu_ps((const float *)w + i); }
INLINE __m256 ld_f16(const void *w, int64_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
}
INLINE __m256 ld_bf16(const void *w, int64_t i)
{
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}
INLINE float el_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
INLINE float el_f16(const void *w, int64_t i) { return h2f(((const uint16_t *)w)[i]); }
INLINE float el_bf16(const void *w, int64_t i) { return slm_bf16_to_f32(((const uint16_t *)w)[i]); }

#define FLOAT_IMPL(fname, ld, el)                                                             \
    INLINE void fname(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out) \
    {                                                                                         \
        const float *xr[SLM_DOT_MAX_ROWS];                                                    \
        __m256 acc0[SLM_DOT_MAX_ROWS], acc1[SLM_DOT_MAX_ROWS];                                \
        for (int r = 0; r < nr; r++) {                                                        \
            xr[r] = (const float *)((const char *)x + (size_t)r * xs);                        \
            acc0[r] = acc1[r] = _mm256_setzero_ps();                                          \
        }                                                                                     \
        int64_t i = 0;                                                                        \
        for (; i + 16 <= n; i += 16) {                                                        \
            __m256 w0 = ld(w, i), w1 = ld(w, i + 8);                                          \
            for (int r = 0; r < nr; r++) {                                                    \
                acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[r] + i), acc0[r]);           \
                acc1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr[r] + i + 8), acc1[r]);       \
            }                                                                                 \
        }                                                                                     \
        if (i + 8 <= n) {                                                                     \
            __m256 w0 = ld(w, i);                                                             \
            for (int r = 0; r < nr; r++)                                                      \
                acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[r] + i), acc0[r]);           \
            i += 8;                                                                           \
        }                                                                                     \
        for (int r = 0; r < nr; r++) {                                                        \
            float s = hsum_ps(_mm256_add_ps(acc0[r], acc1[r]));                               \
            for (int64_t t = i; t < n; t++)                                                   \
                s += el(w, t) * xr[r][t];                                                     \
            out[r] = s;                                                                       \
        }                                                                                     \
    }

FLOAT_IMPL(f32_impl, ld_f32, el_f32)
FLOAT_IMPL(f16_impl, ld_f16, el_f16)
FLOAT_IMPL(bf16_impl, ld_bf16, el_bf16)
SLM_DOT_DISPATCH(dot_f32, f32_impl)
SLM_DOT_DISPATCH(dot_f16, f16_impl)
SLM_DOT_DISPATCH(dot_bf16, bf16_impl)

/* ---------------------------------------------------------------------- */
/* Activation quantizers.                                                 */

INLINE float hmax_ps(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE __m256 abs_ps(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }

/* roundf() exactly: truncate |t|, add 1 when the (exact) fraction is ≥ ½,
 * put the sign back. */
INLINE __m256i round_away(__m256 t)
{
    __m256 a = abs_ps(t);
    __m256 tr = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, tr), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    tr = _mm256_add_ps(tr, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
    __m256 sign = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), t);
    return _mm256_cvttps_epi32(_mm256_or_ps(tr, sign));
}

/* Packs 4 × 8 s32 (each within ±127) into 32 s8 in element order. */
INLINE __m256i pack32(__m256i i0, __m256i i1, __m256i i2, __m256i i3)
{
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quant_q8_0(const float *x, slm_act_q8_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / SLM_QK; b++, x += SLM_QK, y++) {
        __m256 v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm256_loadu_ps(x + 8 * k);
        __m256 m = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
                                 _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
        float d = hmax_ps(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = round_away(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
        _mm256_storeu_si256((__m256i *)y->qs, pack32(q[0], q[1], q[2], q[3]));
        int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        y->d = slm_dot_f16_round(d);
        y->s = y->d * (float)sum;
    }
}

/* Q8_K's signed maximum: the value of largest magnitude, the first one on a
 * tie between +amax and −amax (as the scalar scan picks it). */
static float signed_max(const float *x, float amax, float vmax, float vmin)
{
    if (amax == 0.0f)
        return 0.0f;
    if (vmax == amax && vmin != -amax)
        return amax;
    if (vmin == -amax && vmax != amax)
        return -amax;
    for (int j = 0; j < SLM_QK_K; j++)
        if (fabsf(x[j]) == amax)
            return x[j];
    return 0.0f;
}

static void quant_q8_k(const float *x, slm_block_q8_k *y, int64_t n)
{
    for (int64_t b = 0; b < n / SLM_QK_K; b++, x += SLM_QK_K, y++) {
        __m256 amx = _mm256_setzero_ps(), mx = _mm256_loadu_ps(x), mn = mx;
        for (int k = 0; k < SLM_QK_K; k += 8) {
            __m256 v = _mm256_loadu_ps(x + k);
            amx = _mm256_max_ps(amx, abs_ps(v));
            mx = _mm256_max_ps(mx, v);
            mn = _mm256_min_ps(mn, v);
        }
        float vmin = -hmax_ps(_mm256_sub_ps(_mm256_setzero_ps(), mn));
        float max = signed_max(x, hmax_ps(amx), hmax_ps(mx), vmin);
        memset(y, 0, sizeof *y);
        if (max == 0.0f)
            continue;
        float iscale = -127.0f / max;
        __m256 is = _mm256_set1_ps(iscale);
        const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
        for (int g = 0; g < SLM_QK_K / 32; g++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                /* cvtps rounds to nearest even under the default MXCSR, as lrintf does */
                __m256i t = _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + 32 * g + 8 * k)));
                q[k] = _mm256_min_epi32(_mm256_max_epi32(t, lo), hi);
            }
            _mm256_storeu_si256((__m256i *)(y->qs + 32 * g), pack32(q[0], q[1], q[2], q[3]));
            y->bsums[2 * g] = (int16_t)hsum_epi32(_mm256_add_epi32(q[0], q[1]));
            y->bsums[2 * g + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q[2], q[3]));
        }
        y->d = 1.0f / iscale;
    }
}

const slm_dot_kernels slm_dot_avx2 = {
    .dot =
        {
            [SLM_TYPE_F32] = dot_f32,
            [SLM_TYPE_F16] = dot_f16,
            [SLM_TYPE_BF16] = dot_bf16,
            [SLM_TYPE_Q2_K] = dot_q2_k,
            [SLM_TYPE_Q3_K] = dot_q3_k,
            [SLM_TYPE_IQ4_XS] = dot_iq4_xs,
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
};
