/*
 * cpu_matmul.h — quantized matrix multiplication on the CPU:
 * y(rows, out) = x(rows, in) · W(out, in)ᵀ with W stored in any supported
 * GGUF type, row-major in GGUF order.
 *
 * Quantized weights: each activation row is first quantized to 8-bit blocks
 * (Q8_0 for 32-element types, Q8_K for 256-element types) and every output
 * is an integer dot product per block, scaled — the scheme whose reference is
 * "dequantize W, dequantize the quantized x, dot in double". F32/F16/BF16
 * weights use the f32 activations directly.
 *
 * Work is split over the pool by output columns (each y element is reduced
 * by one thread in a fixed order, so results do not depend on the number of
 * threads or on `rows` — the batch-invariance the scheduler relies on).
 */
#ifndef SLM_CPU_MATMUL_H
#define SLM_CPU_MATMUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu_pool.h"
#include "cpu_simd.h"
#include "quant.h"

/* Can slm_cpu_matmul multiply weights of this type? */
bool slm_cpu_matmul_supported(slm_type type);

#define SLM_CPU_MAX_ACT_TERMS 2

/* Bytes of scratch slm_cpu_matmul needs for `rows` activation rows of `in`
 * elements against a weight of `type` (0 when none is needed), for any
 * number of activation terms. */
size_t slm_cpu_matmul_scratch_bytes(slm_type type, int64_t in, int64_t rows);

/* y(rows, out) = x(rows, in) · Wᵀ (+ add(rows, out) when add != NULL; add may
 * equal y). `in` must be a multiple of the type's block size. `scratch` has
 * at least slm_cpu_matmul_scratch_bytes(type, in, rows) bytes, 64-byte
 * aligned. Uses the kernels of `simd` (which must be available); act_terms is
 * 1 or 2 (see above; float weight types ignore it). */
void slm_cpu_matmul(slm_pool *pool, slm_simd simd, int act_terms, slm_type type, const void *w,
                    int64_t out, int64_t in, const float *x, int64_t rows, const float *add,
                    float *y, void *scratch);

/* Weights repacked at load into 16-row groups (cpu_packed.h) for the SIMD
 * levels that have packed kernels of the type: same results up to float
 * rounding, several times less work per multiply-add in prefill. */
typedef struct slm_cpu_packed slm_cpu_packed;

/* Does `simd` have a packed kernel for `type`? */
bool slm_cpu_pack_available(slm_simd simd, slm_type type);

/* W(rows, cols) packed for `simd`; NULL when the level does not pack the
 * type, cols is not a multiple of its block, or memory runs out. */
slm_cpu_packed *slm_cpu_pack(slm_simd simd, slm_type type, const void *w, int64_t rows,
                             int64_t cols);
void slm_cpu_packed_free(slm_cpu_packed *p); /* accepts NULL */

/* slm_cpu_matmul with a packed W (its shape and level are in `w`); scratch
 * as slm_cpu_matmul_scratch_bytes(type, cols, rows). */
void slm_cpu_matmul_packed(slm_pool *pool, int act_terms, const slm_cpu_packed *w, const float *x,
                           int64_t rows, const float *add, float *y, void *scratch);

#endif
