/*
 * cpu_packed.h — private to the CPU matmul: weights repacked at load into
 * groups of 16 interleaved rows, and the kernels that multiply them.
 *
 * Why: the row kernels of cpu_dot.h reduce one weight row against a few
 * activation rows and must sum each result across SIMD lanes and rescale
 * every block per row. In the packed layout one SIMD register holds the
 * same four codes of 8 (AVX2) or 16 weight rows, so one byte dot product
 * against four activation bytes broadcast to every lane adds to every
 * row's partial sum at once: lane i belongs to weight row i, nothing is
 * reduced across lanes, and one block's scaling is one vector FMA for a
 * register's worth of outputs.
 *
 * Layout (one group = 16 consecutive weight rows, the last group padded with
 * zero rows; a group is the row's blocks one after another). In every block,
 * the code bytes of the GGUF block are cut into 4-byte words and word k of
 * the 16 rows is stored as 64 contiguous bytes: [w_k(row0) … w_k(row15)].
 * Before the words, per block:
 *   Q4_0  d[16] (f16)                                         + 4 words
 *   Q4_1  d[16], m[16] (f16)                                  + 4 words
 *   Q5_0  d[16] (f16), 1 word of fifth bits (pack.c's order)  + 4 words
 *   Q4_K  d[16], dmin[16] (f16), sc[8][16], mn[8][16] (u8,
 *         the decoded 6-bit scales and mins)                  + 32 words
 * Every layout is the GGUF block's bytes rearranged (Q4_K's scales unpacked
 * from 12 to 16 bytes, Q5_0's high bits regrouped by word), so packing costs no precision and about no memory.
 *
 * A kernel's result for (row i, activation row c) is a float sum over blocks
 * in block order whatever the number of activation rows, so packed results
 * are batch- and thread-invariant like the row kernels'. They differ from
 * the row kernels' in float rounding only (both are checked against the
 * same reference).
 */
#ifndef SLM_CPU_PACKED_H
#define SLM_CPU_PACKED_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_simd.h"
#include "quant.h"

#define SLM_PACK_ROWS 16
#define SLM_PACK_MAX_COLS 8

/* out[c·16 + i] = Σ_e W[i][e]·x_c[e] for c < nc (1 ≤ nc ≤ the level's cols)
 * and the 16 rows of one packed group `wg` over n elements; x_c is
 * activation row c ((const char *)x + c·xs) in the format cpu_dot.h gives
 * the unpacked type. */
typedef void (*slm_gemm16_fn)(int64_t n, const void *wg, const void *x, size_t xs, int nc,
                              float *out);

typedef struct slm_gemm16_kernels {
    slm_gemm16_fn fn[SLM_TYPE_COUNT]; /* NULL: this level does not pack the type */
    unsigned char cols[SLM_TYPE_COUNT]; /* activation rows per call */
} slm_gemm16_kernels;

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
extern const slm_gemm16_kernels slm_gemm16_avx2;
#endif

/* A packed weight. */
typedef struct slm_cpu_packed {
    slm_type type;
    slm_simd simd;         /* the level whose kernel reads it */
    int64_t rows, cols;    /* the weight's shape (rows = outputs) */
    size_t group_bytes;    /* bytes of one 16-row group */
    slm_gemm16_fn kernel;
    int kernel_cols;
    uint8_t *data;         /* ceil(rows/16) groups, 64-byte aligned */
} slm_cpu_packed;

/* Bytes of one packed block of 16 rows (0 for a type no level packs). */
size_t slm_pack_block_bytes(slm_type type);

#endif
