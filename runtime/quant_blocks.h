/*
 * quant_blocks.h — the byte layout of every GGML quantization block slm
 * reads, as C structs whose sizes are checked at compile time against
 * ../shared/gguf-facts.md §3. Every multi-byte field is little-endian; f16
 * fields are kept as raw uint16_t bits (convert with fp16.h).
 *
 * NOTE: blocks sit back to back in a tensor with no padding, so an 18-byte
 * block is only 2-byte aligned. All fields here are uint8/uint16 (or a float
 * in Q8_K, an activation-only format we allocate ourselves), so the structs
 * have no padding and need at most 2-byte alignment.
 */
#ifndef SLM_QUANT_BLOCKS_H
#define SLM_QUANT_BLOCKS_H

#include <stdint.h>

#define SLM_QK 32    /* elements per block of the legacy and IQ4_NL types */
#define SLM_QK_K 256 /* elements per super-block of the K and IQ4_XS types */
#define SLM_K_SCALE_BYTES 12

/* C11's _Static_assert is static_assert in C++ (CUDA .cu files read these
 * structs too). */
#ifdef __cplusplus
#define SLM_STATIC_ASSERT static_assert
#else
#define SLM_STATIC_ASSERT _Static_assert
#endif

typedef struct { uint16_t d; uint8_t qs[SLM_QK / 2]; } slm_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[SLM_QK / 2]; } slm_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[SLM_QK / 2]; } slm_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[SLM_QK / 2]; } slm_block_q5_1;
typedef struct { uint16_t d; int8_t qs[SLM_QK]; } slm_block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[SLM_QK]; } slm_block_q8_1;
typedef struct {
    uint8_t scales[SLM_QK_K / 16]; /* low nibble scale, high nibble min */
    uint8_t qs[SLM_QK_K / 4];
    uint16_t d, dmin;
} slm_block_q2_k;
typedef struct {
    uint8_t hmask[SLM_QK_K / 8];
    uint8_t qs[SLM_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} slm_block_q3_k;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[SLM_K_SCALE_BYTES];
    uint8_t qs[SLM_QK_K / 2];
} slm_block_q4_k;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[SLM_K_SCALE_BYTES];
    uint8_t qh[SLM_QK_K / 8];
    uint8_t qs[SLM_QK_K / 2];
} slm_block_q5_k;
typedef struct {
    uint8_t ql[SLM_QK_K / 2];
    uint8_t qh[SLM_QK_K / 4];
    int8_t scales[SLM_QK_K / 16];
    uint16_t d;
} slm_block_q6_k;
typedef struct {
    float d;
    int8_t qs[SLM_QK_K];
    int16_t bsums[SLM_QK_K / 16];
} slm_block_q8_k;
typedef struct { uint16_t d; uint8_t qs[SLM_QK / 2]; } slm_block_iq4_nl;
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[SLM_QK_K / 64];
    uint8_t qs[SLM_QK_K / 2];
} slm_block_iq4_xs;

SLM_STATIC_ASSERT(sizeof(slm_block_q4_0) == 18, "q4_0 layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q4_1) == 20, "q4_1 layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q5_0) == 22, "q5_0 layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q5_1) == 24, "q5_1 layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q8_0) == 34, "q8_0 layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q8_1) == 36, "q8_1 layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q2_k) == 84, "q2_k layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q3_k) == 110, "q3_k layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q4_k) == 144, "q4_k layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q5_k) == 176, "q5_k layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q6_k) == 210, "q6_k layout");
SLM_STATIC_ASSERT(sizeof(slm_block_q8_k) == 292, "q8_k layout");
SLM_STATIC_ASSERT(sizeof(slm_block_iq4_nl) == 18, "iq4_nl layout");
SLM_STATIC_ASSERT(sizeof(slm_block_iq4_xs) == 136, "iq4_xs layout");

/* The IQ4_NL / IQ4_XS non-linear code book (gguf-facts §3.15). The
 * initializer is a macro too, so device code (CUDA constant memory) can
 * hold its own copy of the same sixteen values. */
#define SLM_IQ4NL_VALUES \
    { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 }
static const int8_t slm_iq4nl_values[16] = SLM_IQ4NL_VALUES;

#endif
