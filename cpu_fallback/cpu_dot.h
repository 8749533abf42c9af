/*
 * cpu_dot.h — private to the CPU matmul: the per-row dot-product kernels and
 * the activation quantizers, one table per SIMD level.
 *
 * A dot kernel multiplies ONE weight row (n elements in its GGUF type) with
 * up to SLM_DOT_MAX_ROWS activation rows at once, so a weight block is
 * decoded once and used for every row of the group. Each activation row is
 * reduced with its own accumulators in an order that depends only on n,
 * never on how many rows share the call — which is what makes the matmul's
 * output independent of the batch (`rows`) and of the thread count.
 *
 * Activation formats (in the matmul's scratch):
 *   - 32-element weight types: slm_act_q8_0 blocks — the Q8_0 codes and
 *     scale of slm_quantize_row_ref(Q8_0), with the scale kept as the f32
 *     value of its f16 rounding, plus s = d·Σqs for the Q4_1/Q5_1 min term;
 *   - 256-element types: slm_block_q8_k, exactly as slm_quantize_row_ref(Q8_K);
 *   - F32/F16/BF16 weights: the f32 activations themselves.
 * Every level's quantizer produces bit-identical blocks (tests check it), so
 * SIMD levels differ only in the order of float additions.
 *
 * Not responsible for: threading, shapes, the residual add (matmul.c).
 */
#ifndef SLM_CPU_DOT_H
#define SLM_CPU_DOT_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_simd.h"
#include "fp16.h"
#include "quant.h"
#include "quant_blocks.h"
#include "quant_decode.h"

/* Activation rows one dot call may take: each level says how many it
 * handles (max_rows below, at most SLM_DOT_MAX_ROWS); arrays are sized for
 * the largest. */
#define SLM_DOT_MAX_ROWS 8
#define SLM_DOT_ROWS_DEFAULT 4

typedef struct slm_act_q8_0 {
    float d;         /* f32 value of the f16-rounded scale (as Q8_0 stores it) */
    float s;         /* d · Σ qs, for the min term of Q4_1 / Q5_1 */
    int8_t qs[SLM_QK];
} slm_act_q8_0;

/* out[r] = Σ_e w[e]·x_r[e] for r < nr (1 ≤ nr ≤ the level's max_rows), where
 * w is one weight row of n elements (n a multiple of the block size) and
 * x_r = (const char *)x + r·x_stride is activation row r in the format the
 * weight type needs (see above). */
typedef void (*slm_dot_fn)(int64_t n, const void *w, const void *x, size_t x_stride, int nr,
                           float *out);

/* Quantize n floats (n a multiple of the block size) into n/32 slm_act_q8_0
 * or n/256 slm_block_q8_k blocks. */
typedef void (*slm_quant_q8_0_fn)(const float *x, slm_act_q8_0 *y, int64_t n);
typedef void (*slm_quant_q8_k_fn)(const float *x, slm_block_q8_k *y, int64_t n);

typedef struct slm_dot_kernels {
    /* indexed by slm_type; NULL where this level has no kernel of its own
     * (the matmul then uses the scalar one) */
    slm_dot_fn dot[SLM_TYPE_COUNT];
    slm_quant_q8_0_fn quant_q8_0; /* NULL: use the scalar one */
    slm_quant_q8_k_fn quant_q8_k;
    /* activation rows per call of this level's own kernel of each type
     * (0: SLM_DOT_ROWS_DEFAULT, as the scalar kernels take) */
    unsigned char max_rows[SLM_TYPE_COUNT];
} slm_dot_kernels;

/* The scalar table: every supported type and both quantizers, no NULLs. */
extern const slm_dot_kernels slm_dot_scalar;
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
extern const slm_dot_kernels slm_dot_avx2;
extern const slm_dot_kernels slm_dot_avx512;
extern const slm_dot_kernels slm_dot_avx512vnni;
#endif
#if defined(__aarch64__)
extern const slm_dot_kernels slm_dot_neon;
#endif

/* The kernels of a SIMD level with its missing entries taken from the
 * scalar table (no NULLs). A level not compiled into this build gives the
 * scalar table. */
slm_dot_kernels slm_dot_resolve(slm_simd level);

/* The activation format a weight type is multiplied against. */
typedef enum slm_act_kind { SLM_ACT_F32, SLM_ACT_Q8_0, SLM_ACT_Q8_K } slm_act_kind;

static inline slm_act_kind slm_act_kind_of(slm_type t)
{
    switch (t) {
    case SLM_TYPE_F32:
    case SLM_TYPE_F16:
    case SLM_TYPE_BF16: return SLM_ACT_F32;
    case SLM_TYPE_Q2_K:
    case SLM_TYPE_Q3_K:
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K:
    case SLM_TYPE_Q6_K:
    case SLM_TYPE_IQ4_XS: return SLM_ACT_Q8_K;
    default: return SLM_ACT_Q8_0;
    }
}

/* Activation row r of a kernel's x (rows x_stride bytes apart), in the
 * format its weight type needs. */
static inline const slm_act_q8_0 *slm_dot_act_q8_0(const void *x, size_t x_stride, int r)
{
    return (const slm_act_q8_0 *)((const char *)x + (size_t)r * x_stride);
}

static inline const slm_block_q8_k *slm_dot_act_q8_k(const void *x, size_t x_stride, int r)
{
    return (const slm_block_q8_k *)((const char *)x + (size_t)r * x_stride);
}

/* Σ_j mn[j]·(bsums[2j] + bsums[2j+1]): the integer min term of a Q4_K/Q5_K
 * super-block (mins from slm_qd_k_scales_mins, bsums of its Q8_K row). */
static inline int slm_dot_k_min_sum(const uint8_t mn[8], const int16_t *bsums)
{
    int s = 0;
    for (int j = 0; j < 8; j++)
        s += mn[j] * (bsums[2 * j] + bsums[2 * j + 1]);
    return s;
}

/* Defines slm_dot_fn `name` over a kernel body `impl(n, w, x, xs, NR, out)`
 * written for a compile-time row count NR (1..SLM_DOT_MAX_ROWS): each row
 * count gets its own inlined copy, so accumulators stay in registers. */
#define SLM_DOT_DISPATCH(name, impl)                                                          \
    static void name(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out) \
    {                                                                                         \
        switch (nr) {                                                                         \
        case 1: impl(n, w, x, xs, 1, out); break;                                             \
        case 2: impl(n, w, x, xs, 2, out); break;                                             \
        case 3: impl(n, w, x, xs, 3, out); break;                                             \
        default: impl(n, w, x, xs, 4, out); break;                                            \
        }                                                                                     \
    }

/* The same for kernels that take up to eight activation rows. */
#define SLM_DOT_DISPATCH8(name, impl)                                                         \
    static void name(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out) \
    {                                                                                         \
        switch (nr) {                                                                         \
        case 1: impl(n, w, x, xs, 1, out); break;                                             \
        case 2: impl(n, w, x, xs, 2, out); break;                                             \
        case 3: impl(n, w, x, xs, 3, out); break;                                             \
        case 4: impl(n, w, x, xs, 4, out); break;                                             \
        case 5: impl(n, w, x, xs, 5, out); break;                                             \
        case 6: impl(n, w, x, xs, 6, out); break;                                             \
        case 7: impl(n, w, x, xs, 7, out); break;                                             \
        default: impl(n, w, x, xs, 8, out); break;                                            \
        }                                                                                     \
    }

/* The f32 value of the f16 rounding of d (the scale a Q8_0 block stores);
 * every level rounds through this one function so scales agree bitwise. */
static inline float slm_dot_f16_round(float d) { return slm_f16_to_f32(slm_f32_to_f16(d)); }

#endif
