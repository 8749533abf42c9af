/*
 * pack.c — repacks a GGUF weight into the 16-row interleaved layout of
 * cpu_packed.h at load, for the SIMD levels that have packed kernels
 * (matmul.c multiplies it). Portable C: the layout is the same for every
 * level; only which types a level packs differs.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu_matmul.h"
#include "cpu_packed.h"
#include "quant_blocks.h"
#include "quant_decode.h"

#define WORDS_AT(nw) ((size_t)(nw) * 4 * SLM_PACK_ROWS)
#define HALVES (2 * SLM_PACK_ROWS)

size_t slm_pack_block_bytes(slm_type type)
{
    switch (type) {
    case SLM_TYPE_Q4_0: return HALVES + WORDS_AT(4);
    case SLM_TYPE_Q4_1: return 2 * HALVES + WORDS_AT(4);
    case SLM_TYPE_Q5_0: return HALVES + WORDS_AT(5);
    case SLM_TYPE_Q4_K: return 2 * HALVES + 16 * SLM_PACK_ROWS + WORDS_AT(32);
    default: return 0;
    }
}

static const slm_gemm16_kernels *level_kernels(slm_simd simd)
{
    switch (simd) {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
    /* NOTE: the AVX-512 levels keep their row kernels until packed kernels
     * of their own are measured against them on an AVX-512 machine. */
    case SLM_SIMD_AVX2: return &slm_gemm16_avx2;
#endif
    default: return NULL;
    }
}

bool slm_cpu_pack_available(slm_simd simd, slm_type type)
{
    const slm_gemm16_kernels *k = level_kernels(simd);
    return (unsigned)type < SLM_TYPE_COUNT && k != NULL && k->fn[type] != NULL &&
           slm_pack_block_bytes(type) > 0;
}

/* Word k (4 bytes at src + 4k of each row's block) of the 16 rows, for k <
 * nw, as [w_k(row0) … w_k(row15)]. */
static uint8_t *put_words(uint8_t *dst, const uint8_t *const src[SLM_PACK_ROWS], int nw)
{
    for (int k = 0; k < nw; k++)
        for (int i = 0; i < SLM_PACK_ROWS; i++, dst += 4)
            memcpy(dst, src[i] + 4 * k, 4);
    return dst;
}

/* The f16 field at byte `off` of the 16 rows' blocks. */
static uint8_t *put_halves(uint8_t *dst, const uint8_t *const blk[SLM_PACK_ROWS], size_t off)
{
    for (int i = 0; i < SLM_PACK_ROWS; i++, dst += 2)
        memcpy(dst, blk[i] + off, 2);
    return dst;
}

static void pack_q4_k(uint8_t *dst, const uint8_t *const blk[SLM_PACK_ROWS])
{
    const uint8_t *qs[SLM_PACK_ROWS];
    uint8_t sc[SLM_PACK_ROWS][8], mn[SLM_PACK_ROWS][8];
    dst = put_halves(dst, blk, offsetof(slm_block_q4_k, d));
    dst = put_halves(dst, blk, offsetof(slm_block_q4_k, dmin));
    for (int i = 0; i < SLM_PACK_ROWS; i++) {
        const slm_block_q4_k *b = (const slm_block_q4_k *)blk[i];
        slm_qd_k_scales_mins(b->scales, sc[i], mn[i]);
        qs[i] = b->qs;
    }
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < SLM_PACK_ROWS; i++)
            *dst++ = sc[i][j];
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < SLM_PACK_ROWS; i++)
            *dst++ = mn[i][j];
    put_words(dst, qs, 32);
}

/* Q5_0: d, then each row's fifth bits rearranged into one word (byte k:
 * bits 0-3 those of elements 4k..4k+3, bits 4-7 those of 16+4k..16+4k+3,
 * the two halves word k of the codes holds), then the code words. */
static void pack_q5_0(uint8_t *dst, const uint8_t *const blk[SLM_PACK_ROWS])
{
    const uint8_t *codes[SLM_PACK_ROWS];
    uint8_t hw[SLM_PACK_ROWS][4];
    const uint8_t *hp[SLM_PACK_ROWS];
    dst = put_halves(dst, blk, offsetof(slm_block_q5_0, d));
    for (int i = 0; i < SLM_PACK_ROWS; i++) {
        const slm_block_q5_0 *b = (const slm_block_q5_0 *)blk[i];
        uint32_t qh = (uint32_t)b->qh[0] | (uint32_t)b->qh[1] << 8 | (uint32_t)b->qh[2] << 16 |
                      (uint32_t)b->qh[3] << 24;
        for (int k = 0; k < 4; k++)
            hw[i][k] = (uint8_t)((qh >> (4 * k) & 0xF) | (qh >> (16 + 4 * k) & 0xF) << 4);
        hp[i] = hw[i];
        codes[i] = b->qs;
    }
    dst = put_words(dst, hp, 1);
    put_words(dst, codes, 4);
}

/* One packed block from the same block of 16 rows. */
static void pack_block(slm_type type, uint8_t *dst, const uint8_t *const blk[SLM_PACK_ROWS])
{
    const uint8_t *codes[SLM_PACK_ROWS];
    size_t at = type == SLM_TYPE_Q4_1 ? offsetof(slm_block_q4_1, qs)
                                      : offsetof(slm_block_q4_0, qs);
    switch (type) {
    case SLM_TYPE_Q4_K: pack_q4_k(dst, blk); return;
    case SLM_TYPE_Q5_0: pack_q5_0(dst, blk); return;
    default: break;
    }
    for (int i = 0; i < SLM_PACK_ROWS; i++)
        codes[i] = blk[i] + at;
    dst = put_halves(dst, blk, 0);
    if (type == SLM_TYPE_Q4_1)
        dst = put_halves(dst, blk, offsetof(slm_block_q4_1, m));
    put_words(dst, codes, 4);
}

slm_cpu_packed *slm_cpu_pack(slm_simd simd, slm_type type, const void *w, int64_t rows, int64_t cols)
{
    if (!slm_cpu_pack_available(simd, type) || rows < 1 || cols < 1)
        return NULL;
    const slm_type_info *ti = slm_type_get((int)type);
    if (cols % ti->block_elems != 0)
        return NULL;
    int64_t nb = cols / ti->block_elems, groups = (rows + SLM_PACK_ROWS - 1) / SLM_PACK_ROWS;
    size_t bb = slm_pack_block_bytes(type), row_bytes = slm_type_row_bytes((int)type, cols);
    if ((uint64_t)nb > SIZE_MAX / bb / (uint64_t)groups)
        return NULL;
    size_t group_bytes = bb * (size_t)nb, total = group_bytes * (size_t)groups;
    slm_cpu_packed *p = calloc(1, sizeof *p);
    uint8_t *zero = calloc(1, ti->block_bytes);
    if (p == NULL || zero == NULL ||
        (p->data = aligned_alloc(64, (total + 63) / 64 * 64)) == NULL) {
        free(p);
        free(zero);
        return NULL;
    }
    const slm_gemm16_kernels *k = level_kernels(simd);
    *p = (slm_cpu_packed){.type = type, .simd = simd, .rows = rows, .cols = cols,
                          .group_bytes = group_bytes, .kernel = k->fn[type],
                          .kernel_cols = k->cols[type] ? k->cols[type] : 1, .data = p->data};
    for (int64_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk[SLM_PACK_ROWS];
            for (int i = 0; i < SLM_PACK_ROWS; i++) {
                int64_t r = g * SLM_PACK_ROWS + i; /* rows past the end are zero blocks */
                blk[i] = r < rows ? (const uint8_t *)w + (size_t)r * row_bytes +
                                        (size_t)b * ti->block_bytes
                                  : zero;
            }
            pack_block(type, p->data + (size_t)g * group_bytes + (size_t)b * bb, blk);
        }
    free(zero);
    return p;
}

void slm_cpu_packed_free(slm_cpu_packed *p)
{
    if (p == NULL)
        return;
    free(p->data);
    free(p);
}
