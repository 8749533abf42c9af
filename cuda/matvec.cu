/*
 * matvec.cu — y(rows, out) = x(rows, in) · Wᵀ (+ add) for small row counts
 * (decode): the quantized types multiply int8 codes with dp4a, the float
 * types (F32, F16, BF16) multiply in f32.
 *
 * Quantized path, two kernels:
 *   1. quantize: each row of x becomes activation blocks in the workspace,
 *      slm_cu_q8a (Q8_0 coding, one warp per 32 values) for the 32-element
 *      types or slm_cu_q8k (Q8_K coding, one warp per 256) for the K types,
 *      coded exactly as the CPU backend codes them (cuda_logic.cuh, tested
 *      bit for bit on the host), so both backends multiply the same values;
 *   2. dot: one warp per output element; its lanes walk the row's 32-element
 *      parts (a block of a 32-element type, an eighth of a K block) and sum
 *      slm_cu_dot32 / slm_cu_dot256, then reduce across the warp.
 * Neighbouring lanes read neighbouring parts, so a warp's loads of one
 * weight row are contiguous. Rows of x are grid.y: each re-reads W (from L2
 * when it fits); the cuBLAS path (matmul.cu) takes larger row counts.
 *
 * Not tuned: no shared-memory reuse of activations across output rows, no
 * 16-byte vector loads, no per-shape choice of rows per block. Compiled,
 * host-tested logic only: not yet run on a GPU.
 */
#include "cuda_backend.h"
#include "cuda_logic.cuh"

#define WARPS 4 /* output elements per block of the dot kernels */

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ int warp_sum_int(int v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The signed absmax of a warp's values, the lowest index winning ties
 * (quant.c's serial scan); every lane gets it. */
__device__ __forceinline__ float warp_absmax_first(float v, int i)
{
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, i, o);
        slm_cu_absmax_step(&v, &i, ov, oi);
    }
    return v;
}

/* x(rows, in) → q8a blocks [rows][in/32]: grid (in/32, rows), one warp. */
__global__ void quantize_q8a(const float *x, int64_t in, slm_cu_q8a *out)
{
    int lane = threadIdx.x;
    int64_t b = blockIdx.x, r = blockIdx.y;
    float v = x[r * in + b * 32 + lane];
    float best = warp_absmax_first(v, lane);
    float d = slm_cu_q8_0_scale(best), id = slm_cu_q8_0_inv(d);
    int q = slm_cu_q8_0_code(v, id);
    slm_cu_q8a *o = out + r * (in / 32) + b;
    o->qs[lane] = (int8_t)q;
    int sum = warp_sum_int(q);
    if (lane == 0) {
        o->d = slm_cu_q8_0_stored(d);
        o->sum = sum;
    }
}

/* x(rows, in) → q8k blocks [rows][in/256]: grid (in/256, rows), one warp;
 * lane l holds elements 8l..8l+7 (half of one 16-element group). */
__global__ void quantize_q8k(const float *x, int64_t in, slm_cu_q8k *out)
{
    int lane = threadIdx.x;
    int64_t b = blockIdx.x, r = blockIdx.y;
    const float *xb = x + r * in + b * 256 + 8 * lane;
    float v[8], best;
    int bi;
    for (int k = 0; k < 8; k++)
        v[k] = xb[k];
    slm_cu_absmax_local(v, 8, 8 * lane, &best, &bi);
    best = warp_absmax_first(best, bi);
    float is = slm_cu_q8k_iscale(best);
    slm_cu_q8k *o = out + r * (in / 256) + b;
    int sum = 0;
    for (int k = 0; k < 8; k++) {
        int q = slm_cu_q8k_code(v[k], is);
        o->qs[8 * lane + k] = (int8_t)q;
        sum += q;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* the other half of the group */
    if (lane % 2 == 0)
        o->bsums[lane / 2] = (int16_t)sum;
    if (lane == 0)
        o->d = slm_cu_q8k_d(is);
}

/* One warp per (output o, row r): Σ over the row's 32-element parts. */
template <int TYPE, int BLOCK, int BLOCK_BYTES>
__global__ void matvec_q(const uint8_t *w, size_t row_bytes, int64_t out, int64_t in,
                         const void *act, const float *add, float *y)
{
    int lane = threadIdx.x;
    int64_t o = (int64_t)blockIdx.x * WARPS + threadIdx.y, r = blockIdx.y;
    if (o >= out)
        return;
    const uint8_t *wr = w + (size_t)o * row_bytes;
    int64_t parts = in / 32;
    /* row r's activation blocks: parts q8a, or parts/8 q8k (equal bytes per
     * row either way only for q8a, so the pointer steps by type) */
    const void *ar = BLOCK == 32 ? (const void *)((const slm_cu_q8a *)act + r * parts)
                                 : (const void *)((const slm_cu_q8k *)act + r * (in / 256));
    float s = 0.0f;
    for (int64_t p = lane; p < parts; p += 32)
        s += slm_cu_dot_part(TYPE, BLOCK, BLOCK_BYTES, wr, ar, p);
    s = warp_sum(s);
    if (lane == 0)
        y[r * out + o] = s + (add ? add[r * out + o] : 0.0f);
}

/* F32, F16, BF16 weights against f32 activations. */
__global__ void matvec_f(int type, const uint8_t *w, size_t row_bytes, int64_t out, int64_t in,
                         const float *x, const float *add, float *y)
{
    int lane = threadIdx.x;
    int64_t o = (int64_t)blockIdx.x * WARPS + threadIdx.y, r = blockIdx.y;
    if (o >= out)
        return;
    const uint8_t *wr = w + (size_t)o * row_bytes;
    int esz = type == SLM_TYPE_F32 ? 4 : 2;
    float s = 0.0f;
    for (int64_t i = lane; i < in; i += 32)
        s += slm_cu_deq_row(type, 1, esz, wr, i) * x[r * in + i];
    s = warp_sum(s);
    if (lane == 0)
        y[r * out + o] = s + (add ? add[r * out + o] : 0.0f);
}

#define MATVEC_CASE(T, B, BB)                                                                  \
    case T:                                                                                    \
        matvec_q<T, B, BB><<<grid, block, 0, be->stream>>>(w->dev, w->row_bytes, w->rows,      \
                                                           w->cols, act, add, y);              \
        break;

void slm_cu_matvec(slm_cu_backend *be, const slm_weight *w, const float *x, int rows,
                   const float *add, float *y)
{
    dim3 block(32, WARPS), grid((unsigned)((w->rows + WARPS - 1) / WARPS), (unsigned)rows);
    int be_elems = slm_type_get(w->type)->block_elems;
    if (be_elems == 1) {
        matvec_f<<<grid, block, 0, be->stream>>>(w->type, w->dev, w->row_bytes, w->rows, w->cols,
                                                 x, add, y);
        slm_cu_launched(be, "matvec_f");
        return;
    }
    /* the activation codes go to the start of the workspace (sized for
     * rows × cols by begin_step / reserve; matmul.cu checked it) */
    void *act = be->ws;
    dim3 qgrid((unsigned)(w->cols / be_elems), (unsigned)rows);
    if (be_elems == 32)
        quantize_q8a<<<qgrid, 32, 0, be->stream>>>(x, w->cols, (slm_cu_q8a *)act);
    else
        quantize_q8k<<<qgrid, 32, 0, be->stream>>>(x, w->cols, (slm_cu_q8k *)act);
    if (!slm_cu_launched(be, be_elems == 32 ? "quantize_q8a" : "quantize_q8k"))
        return;
    switch (w->type) {
        MATVEC_CASE(SLM_TYPE_Q4_0, 32, 18)
        MATVEC_CASE(SLM_TYPE_Q4_1, 32, 20)
        MATVEC_CASE(SLM_TYPE_Q5_0, 32, 22)
        MATVEC_CASE(SLM_TYPE_Q5_1, 32, 24)
        MATVEC_CASE(SLM_TYPE_Q8_0, 32, 34)
        MATVEC_CASE(SLM_TYPE_IQ4_NL, 32, 18)
        MATVEC_CASE(SLM_TYPE_Q2_K, 256, 84)
        MATVEC_CASE(SLM_TYPE_Q3_K, 256, 110)
        MATVEC_CASE(SLM_TYPE_Q4_K, 256, 144)
        MATVEC_CASE(SLM_TYPE_Q5_K, 256, 176)
        MATVEC_CASE(SLM_TYPE_Q6_K, 256, 210)
        MATVEC_CASE(SLM_TYPE_IQ4_XS, 256, 136)
    default:
        slm_cu_fail(be, SLM_STATUS_UNSUPPORTED, "matmul: weight type %s",
                    slm_type_name(w->type));
        return;
    }
    slm_cu_launched(be, "matvec_q");
}
