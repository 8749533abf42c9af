/*
 * gemm16_avx2.c — AVX2 kernels for weights packed in 16-row groups
 * (cpu_packed.h): Q4_0, Q4_1, Q5_0 and Q4_K. (A packed Q6_K kernel measured no
 * faster than dot_avx2.c's in prefill and a third slower in decode — its
 * 6-bit codes cost six operations per word to assemble, shared by only four
 * activation rows — so Q6_K keeps the row kernel; bench/NOTES.md.)
 *
 * A ymm register holds eight rows, so a group is done in two halves (rows
 * 0–7, then 8–15), each lane one weight row. For every 4-element group of a
 * block the eight rows' codes (unsigned bytes) meet the activation row's
 * four int8 codes broadcast to every lane: VPMADDUBSW gives two-product
 * int16 sums per lane, which are added as int16 over a whole 32-element
 * block (4-bit codes: at most 8 × 2·15·127 = 30480, no overflow) or two
 * words (6-bit: 2 × 2·63·127 = 32004), then widened once by VPMADDWD. One
 * vector FMA then scales a block for eight outputs. What unsigned codes
 * over-count (Q4_0: 8 per code) is taken off with the activation
 * block's sum, the K types' mins with its bsums.
 *
 * Within a lane the float sum runs over blocks in order, whatever the number
 * of activation rows (nc): batch-invariant, like the row kernels.
 */
#include <immintrin.h>
#include <string.h>

#include "cpu_dot.h"
#include "cpu_packed.h"

#define INLINE static inline __attribute__((always_inline))
/* Keeps a word loop rolled: unrolled, GCC 12 computes every column's byte
 * products first and spills them to the stack before adding them up. */
#define NO_UNROLL _Pragma("GCC unroll 1")

enum { ROWS = SLM_PACK_ROWS, HALF = 8, WORD = 4 * SLM_PACK_ROWS };
/* Software prefetch, one pass (the first half) per block, this many bytes
 * ahead: decode streams weights from DRAM with little else to overlap, and
 * the hardware prefetcher alone left 1B Q4_0 decode at 24.9 t/s against
 * 26.9 with it (bench/NOTES.md). */
#define PF_BYTES 2304

INLINE void prefetch_ahead(const uint8_t *blk, size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64)
        _mm_prefetch((const char *)blk + PF_BYTES + o, _MM_HINT_T0);
}

/* Four bytes at p in every lane. */
INLINE __m256i bcst32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
INLINE __m256i ld(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
/* 8 f16 values (one per row) as floats. */
INLINE __m256 halves8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
/* 8 bytes (one per row) as int32. */
INLINE __m256i u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
INLINE __m256i widen(__m256i s16) { return _mm256_madd_epi16(s16, _mm256_set1_epi16(1)); }
INLINE __m256i mubs(__m256i u, __m256i s) { return _mm256_maddubs_epi16(u, s); }
INLINE __m256 fl(__m256i v) { return _mm256_cvtepi32_ps(v); }

/* ---------------------------------------------------------------------- */
/* 32-element blocks against slm_act_q8_0.                                */

/* The activation rows' blocks and zeroed per-row sums of one half. */
INLINE void start_q8_0(const void *x, size_t xs, int nc, const slm_act_q8_0 **a, __m256 *acc)
{
    for (int c = 0; c < nc; c++) {
        a[c] = slm_dot_act_q8_0(x, xs, c);
        acc[c] = _mm256_setzero_ps();
    }
}

/* out[c·16 + 8hf ..] = acc[c]: one half's eight outputs per activation row. */
INLINE void store_half(float *out, int nc, int hf, const __m256 *acc)
{
    for (int c = 0; c < nc; c++)
        _mm256_storeu_ps(out + c * ROWS + HALF * hf, acc[c]);
}

/* Rows 8·hf .. 8·hf+7 of the group; has_min: Q4_1 (d·dx·Σq·x + m·s), else
 * Q4_0 (d·(dx·Σq·x − 8·s)). */
INLINE void blk32_half(int64_t n, const uint8_t *wg, const void *x, size_t xs, int nc, float *out,
                       int has_min, int hf)
{
    const size_t hdr = has_min ? 4 * ROWS : 2 * ROWS, bb = hdr + 4 * WORD;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const slm_act_q8_0 *a[SLM_PACK_MAX_COLS];
    __m256 acc[SLM_PACK_MAX_COLS];
    start_q8_0(x, xs, nc, a, acc);
    const uint8_t *blk = wg;
    for (int64_t b = 0; b < n / SLM_QK; b++, blk += bb) {
        if (hf == 0)
            prefetch_ahead(blk, bb);
        __m256i s16[SLM_PACK_MAX_COLS];
        for (int c = 0; c < nc; c++)
            s16[c] = _mm256_setzero_si256();
        NO_UNROLL
        for (int k = 0; k < 4; k++) { /* word k: elements 4k.. (low) and 16+4k.. (high) */
            __m256i v = ld(blk + hdr + WORD * k + 32 * hf);
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            for (int c = 0; c < nc; c++) {
                const int8_t *xq = a[c][b].qs;
                s16[c] = _mm256_add_epi16(s16[c], mubs(lo, bcst32(xq + 4 * k)));
                s16[c] = _mm256_add_epi16(s16[c], mubs(hi, bcst32(xq + 16 + 4 * k)));
            }
        }
        __m256 dw = halves8(blk + 16 * hf);
        for (int c = 0; c < nc; c++) {
            const slm_act_q8_0 *xb = &a[c][b];
            __m256 f = fl(widen(s16[c]));
            if (has_min) {
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(f, _mm256_set1_ps(xb->d)), dw, acc[c]);
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(xb->s), halves8(blk + 2 * ROWS + 16 * hf), acc[c]);
            } else {
                __m256 t = _mm256_fmsub_ps(f, _mm256_set1_ps(xb->d), _mm256_set1_ps(8.0f * xb->s));
                acc[c] = _mm256_fmadd_ps(t, dw, acc[c]);
            }
        }
    }
    store_half(out, nc, hf, acc);
}

INLINE void q4_0_impl(int64_t n, const void *w, const void *x, size_t xs, int nc, float *out)
{
    blk32_half(n, w, x, xs, nc, out, 0, 0);
    blk32_half(n, w, x, xs, nc, out, 0, 1);
}
INLINE void q4_1_impl(int64_t n, const void *w, const void *x, size_t xs, int nc, float *out)
{
    blk32_half(n, w, x, xs, nc, out, 1, 0);
    blk32_half(n, w, x, xs, nc, out, 1, 1);
}
SLM_DOT_DISPATCH(gemm_q4_0, q4_0_impl)
SLM_DOT_DISPATCH(gemm_q4_1, q4_1_impl)

/* Q5_0 rows 8hf..: as Q4_0 with each code's fifth bit from the packed
 * high-bit word (pack.c: byte k of a row's word holds the bits of word k's
 * low elements in bits 0-3 and of its high elements in bits 4-7). A
 * shuffle brings byte k to all four bytes of its lane, a mask and compare
 * turn bit b into 0x10 in byte b. Codes reach 31, so int16 partial sums
 * are widened every two words (2 × 2 × 2·31·127 = 31496). */
INLINE void q5_0_half(int64_t n, const uint8_t *wg, const void *x, size_t xs, int nc, float *out,
                      int hf)
{
    enum { HDR = 2 * ROWS, QW = HDR + WORD, BB = QW + 4 * WORD };
    const __m256i m4 = _mm256_set1_epi8(0x0F), b16 = _mm256_set1_epi8(0x10);
    const __m256i mlo = _mm256_set1_epi32(0x08040201), mhi = _mm256_set1_epi32((int)0x80402010u);
    const __m256i dw0 = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0, 0, 0,
                                         0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
    const slm_act_q8_0 *a[SLM_PACK_MAX_COLS];
    __m256 acc[SLM_PACK_MAX_COLS];
    start_q8_0(x, xs, nc, a, acc);
    const uint8_t *blk = wg;
    for (int64_t b = 0; b < n / SLM_QK; b++, blk += BB) {
        if (hf == 0)
            prefetch_ahead(blk, BB);
        __m256i hv = ld(blk + HDR + 32 * hf);
        __m256i s32[SLM_PACK_MAX_COLS], s16[SLM_PACK_MAX_COLS];
        for (int c = 0; c < nc; c++)
            s32[c] = s16[c] = _mm256_setzero_si256();
        NO_UNROLL
        for (int k = 0; k < 4; k++) {
            /* byte k of every dword to all four of its bytes */
            __m256i hb = _mm256_shuffle_epi8(hv, _mm256_add_epi8(dw0, _mm256_set1_epi8((char)k)));
            __m256i hlo = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, mlo), mlo), b16);
            __m256i hhi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, mhi), mhi), b16);
            __m256i v = ld(blk + QW + WORD * k + 32 * hf);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), hlo);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), hhi);
            for (int c = 0; c < nc; c++) {
                const int8_t *xq = a[c][b].qs;
                s16[c] = _mm256_add_epi16(s16[c], mubs(lo, bcst32(xq + 4 * k)));
                s16[c] = _mm256_add_epi16(s16[c], mubs(hi, bcst32(xq + 16 + 4 * k)));
                if (k & 1) {
                    s32[c] = _mm256_add_epi32(s32[c], widen(s16[c]));
                    s16[c] = _mm256_setzero_si256();
                }
            }
        }
        __m256 dw = halves8(blk + 16 * hf);
        for (int c = 0; c < nc; c++) {
            const slm_act_q8_0 *xb = &a[c][b];
            __m256 t = _mm256_fmsub_ps(fl(s32[c]), _mm256_set1_ps(xb->d),
                                       _mm256_set1_ps(16.0f * xb->s));
            acc[c] = _mm256_fmadd_ps(t, dw, acc[c]);
        }
    }
    store_half(out, nc, hf, acc);
}

INLINE void q5_0_impl(int64_t n, const void *w, const void *x, size_t xs, int nc, float *out)
{
    q5_0_half(n, w, x, xs, nc, out, 0);
    q5_0_half(n, w, x, xs, nc, out, 1);
}
SLM_DOT_DISPATCH(gemm_q5_0, q5_0_impl)

/* ---------------------------------------------------------------------- */
/* K types against slm_block_q8_k. Each super-block's sum sb is added into */
/* out (kept in memory: registers go to the per-column partial sums).     */

INLINE void zero_out(float *out, int nc, int hf)
{
    for (int c = 0; c < nc; c++)
        _mm256_storeu_ps(out + c * ROWS + HALF * hf, _mm256_setzero_ps());
}

INLINE void add_out(float *out, int c, int hf, __m256 sb, __m256 scale)
{
    float *o = out + c * ROWS + HALF * hf;
    _mm256_storeu_ps(o, _mm256_fmadd_ps(sb, scale, _mm256_loadu_ps(o)));
}

/* Q4_K rows 8hf..: sb = Σ_j d·sc_j·Σq·x − dmin·Σ_j mn_j·Σx per super-block
 * (sub-blocks j of 32), out += sb·dx. */
INLINE void q4_k_half(int64_t n, const uint8_t *wg, const void *x, size_t xs, int nc, float *out,
                      int hf)
{
    enum { SC = 4 * ROWS, MN = SC + 8 * ROWS, QW = MN + 8 * ROWS, BB = QW + 32 * WORD };
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const slm_block_q8_k *a[SLM_PACK_MAX_COLS];
    for (int c = 0; c < nc; c++)
        a[c] = slm_dot_act_q8_k(x, xs, c);
    zero_out(out, nc, hf);
    const uint8_t *blk = wg;
    for (int64_t b = 0; b < n / SLM_QK_K; b++, blk += BB) {
        if (hf == 0)
            prefetch_ahead(blk, BB);
        __m256 sb[SLM_PACK_MAX_COLS];
        __m256i ms[SLM_PACK_MAX_COLS];
        for (int c = 0; c < nc; c++)
            ms[c] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) { /* (mn_j, mn_j) int16 pairs × the two bsums of j */
            __m256i m = u8x8(blk + MN + ROWS * j + HALF * hf);
            m = _mm256_or_si256(m, _mm256_slli_epi32(m, 16));
            for (int c = 0; c < nc; c++)
                ms[c] = _mm256_add_epi32(ms[c], _mm256_madd_epi16(m, bcst32(a[c][b].bsums + 2 * j)));
        }
        __m256 ndmin = _mm256_sub_ps(_mm256_setzero_ps(), halves8(blk + 2 * ROWS + 16 * hf));
        __m256 dw = halves8(blk + 16 * hf);
        for (int c = 0; c < nc; c++)
            sb[c] = _mm256_mul_ps(fl(ms[c]), ndmin);
        for (int j = 0; j < 8; j++) { /* chunk j/2's words; odd j: high nibbles */
            __m256 scf = _mm256_mul_ps(fl(u8x8(blk + SC + ROWS * j + HALF * hf)), dw);
            __m256i s16[SLM_PACK_MAX_COLS];
            for (int c = 0; c < nc; c++)
                s16[c] = _mm256_setzero_si256();
            NO_UNROLL
            for (int k = 0; k < 8; k++) {
                __m256i v = ld(blk + QW + WORD * (8 * (j / 2) + k) + 32 * hf);
                __m256i q = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(v, 4) : v, m4);
                for (int c = 0; c < nc; c++)
                    s16[c] = _mm256_add_epi16(s16[c], mubs(q, bcst32(a[c][b].qs + 32 * j + 4 * k)));
            }
            for (int c = 0; c < nc; c++)
                sb[c] = _mm256_fmadd_ps(fl(widen(s16[c])), scf, sb[c]);
        }
        for (int c = 0; c < nc; c++)
            add_out(out, c, hf, sb[c], _mm256_set1_ps(a[c][b].d));
    }
}

INLINE void q4_k_impl(int64_t n, const void *w, const void *x, size_t xs, int nc, float *out)
{
    q4_k_half(n, w, x, xs, nc, out, 0);
    q4_k_half(n, w, x, xs, nc, out, 1);
}
SLM_DOT_DISPATCH8(gemm_q4_k, q4_k_impl)

const slm_gemm16_kernels slm_gemm16_avx2 = {
    .fn =
        {
            [SLM_TYPE_Q4_0] = gemm_q4_0,
            [SLM_TYPE_Q4_1] = gemm_q4_1,
            [SLM_TYPE_Q5_0] = gemm_q5_0,
            [SLM_TYPE_Q4_K] = gemm_q4_k,
        },
    /* activation rows per call: four keeps Q4_0/Q4_1's partial sums and
     * decoded codes within AVX2's sixteen registers; Q4_K keeps its sums
     * in memory between super-blocks, and eight rows measured 8% faster
     * than four (bench_matmul, 64 rows, 133 -> 144 GFLOP/s; Q4_0 unchanged
     * at eight, 160 -> 160) */
    .cols =
        {
            [SLM_TYPE_Q4_0] = 4,
            [SLM_TYPE_Q4_1] = 4,
            [SLM_TYPE_Q5_0] = 4,
            [SLM_TYPE_Q4_K] = 8,
        },
};
