/*
 * quant_decode.h — the per-element and per-sub-block decoding of the GGML
 * block formats in quant_blocks.h, as small `static inline` functions: where
 * each code's bits sit (packed nibbles, 2-bit fields, high-bit planes) and how
 * the K-quant 6-bit scales and mins are unpacked. Everything that decodes a
 * block — the reference dequantizer (runtime/quant.c), the CPU dot kernels
 * (cpu_fallback/dot_*.c) and, later, CUDA kernels — reads bits through these,
 * so the layout rules of gguf-facts §3 are written down once.
 *
 * They return small integers (codes, scales) only: no float arithmetic, so
 * sharing them cannot change anyone's rounding. Each caller applies d, dmin
 * and its own accumulation order. SIMD kernels keep their vector decoding;
 * they use these for the scalar per-block parts (scales, mins).
 *
 * CUDA: a .cu file defines SLM_HD as `__host__ __device__` before including
 * this header; in C it is empty. The IQ4 code book (slm_iq4nl_values) is a
 * host table; device code builds its own copy from SLM_IQ4NL_VALUES.
 */
#ifndef SLM_QUANT_DECODE_H
#define SLM_QUANT_DECODE_H

#include <stdint.h>

#include "quant_blocks.h"

#ifndef SLM_HD
#define SLM_HD
#endif

/* Bytes p[0..3] as a little-endian 32-bit value (Q5_0/Q5_1 `qh` is four
 * bytes at a 2-byte alignment, so it is read byte by byte). */
SLM_HD static inline uint32_t slm_qd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The 4-bit code of element j (0..31) of a 32-element block whose 16 `qs`
 * bytes hold elements j in the low nibbles and j + 16 in the high ones
 * (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, and each 32-element sub-block of IQ4_XS). */
SLM_HD static inline int slm_qd_nib32(const uint8_t *qs, int j)
{
    return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
}

/* The 5th bit (0 or 1) of element j of a Q5_0/Q5_1 block, qh = slm_qd_le32(b->qh). */
SLM_HD static inline int slm_qd_q5_hbit(uint32_t qh, int j) { return (int)((qh >> j) & 1); }

/* The 2-bit code of element e (0..255) of a Q2_K/Q3_K super-block: each
 * 128-element half uses 32 bytes, bit pair k of byte i holding element
 * 32k + i of that half. */
SLM_HD static inline int slm_qd_q2k_code(const uint8_t *qs, int e)
{
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

/* The high bit (0 or 1) of element e of a 256-element super-block whose
 * 32-byte bit plane holds element e in bit e/32 of byte e%32 (Q3_K `hmask`,
 * Q5_K `qh`). */
SLM_HD static inline int slm_qd_k_hbit(const uint8_t *plane, int e)
{
    return (plane[e % 32] >> (e / 32)) & 1;
}

/* Q3_K's 6-bit scale of sub-block j (0..15), stored as 0..63; the signed
 * scale is this − 32. Low nibbles in bytes 0..7, top two bits in 8..11. */
SLM_HD static inline int slm_qd_q3k_scale(const uint8_t *sc, int j)
{
    int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
    int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | hi << 4;
}

/* Q4_K/Q5_K's 6-bit scale and min of sub-block j (0..7) from the 12
 * `scales` bytes (gguf-facts §3.11). */
SLM_HD static inline void slm_qd_k_scale_min(const uint8_t *S, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = S[j] & 63;
        *m = S[j + 4] & 63;
    } else {
        *sc = (S[j + 4] & 0xF) | (S[j - 4] >> 6) << 4;
        *m = (S[j + 4] >> 4) | (S[j] >> 6) << 4;
    }
}

/* All eight scales and mins of a Q4_K/Q5_K super-block at once (what the
 * SIMD kernels broadcast per 64-element chunk). */
SLM_HD static inline void slm_qd_k_scales_mins(const uint8_t *S, uint8_t sc[8], uint8_t mn[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = S[j] & 63;
        mn[j] = S[j + 4] & 63;
        sc[j + 4] = (uint8_t)((S[j + 8] & 0xF) | (S[j] >> 6) << 4);
        mn[j + 4] = (uint8_t)((S[j + 8] >> 4) | (S[j + 4] >> 6) << 4);
    }
}

/* The low 4 bits of element e (0..255) of a Q4_K/Q5_K super-block: each
 * 64-element chunk uses 32 bytes, low nibbles first, then high nibbles. */
SLM_HD static inline int slm_qd_q4k_nibble(const uint8_t *qs, int e)
{
    int c = e / 64, r = e % 64;
    return r < 32 ? qs[32 * c + r] & 0xF : qs[32 * c + r - 32] >> 4;
}

/* The 6-bit code (0..63; the signed value is this − 32) of element e of a
 * Q6_K super-block: low 4 bits in `ql`, top 2 bits in `qh`. */
SLM_HD static inline int slm_qd_q6k_code(const uint8_t *ql, const uint8_t *qh, int e)
{
    int h = e / 128, k = (e % 128) / 32, l = e % 32;
    uint8_t lo = ql[64 * h + (k & 1) * 32 + l];
    int low = k < 2 ? lo & 0xF : lo >> 4;
    int high = (qh[32 * h + l] >> (2 * k)) & 3;
    return low | high << 4;
}

/* IQ4_XS's 6-bit scale of 32-element sub-block ib (0..7), stored as 0..63;
 * the signed scale is this − 32. */
SLM_HD static inline int slm_qd_iq4xs_scale(const uint8_t *scales_l, uint16_t scales_h, int ib)
{
    return ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((scales_h >> (2 * ib)) & 3) << 4;
}

#endif
