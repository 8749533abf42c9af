/*
 * matmul.cu — the matmul op: y(rows, out) = x(rows, in) · Wᵀ (+ add).
 * The binding checks the buffers and the workspace, then picks a path by
 * row count (slm_backend_params.cuda_matvec_rows, default 8):
 *   rows ≤ that   the int8 / f32 matrix-vector kernels (matvec.cu);
 *   more rows     prefill: x converted to f16 once, W dequantized to f16 a
 *                 chunk of output rows at a time into the workspace
 *                 (slm_cu_deq: the reference's decoding, then one rounding
 *                 to f16), and cublasGemmEx (f16 inputs, f32 accumulation
 *                 and output, tensor cores where the device has them)
 *                 writes y, with beta = 1 adding the residual in place.
 * NOTE: the crossover is a default, not a measurement (none could be made
 * here); an int8 tensor-core MMA kernel for mid-size batches is not written.
 * Compiled, host-tested logic only: not yet run on a GPU.
 */
#include <cuda_fp16.h>

#include "cuda_backend.h"
#include "cuda_logic.cuh"

/* f16 weight elements dequantized per cuBLAS call (32 MiB of workspace). */
#define GEMM_CHUNK_ELEMS ((int64_t)16 << 20)

/* Workspace offsets: activation codes (matvec) or f16 x then the f16
 * weight chunk (cuBLAS); the two paths never run at once. */
static size_t align256(size_t b) { return (b + 255) / 256 * 256; }

static size_t act_bytes(int64_t rows, int64_t cols)
{
    /* q8a: 40 bytes per 32 values; q8k: 292 per 256 (less) */
    return align256((size_t)rows * (size_t)((cols + 31) / 32) * sizeof(slm_cu_q8a));
}

static int64_t chunk_rows(int64_t out, int64_t in)
{
    int64_t n = GEMM_CHUNK_ELEMS / in;
    n = n < 1 ? 1 : n;
    return n < out ? n : out;
}

size_t slm_cu_matmul_ws(int64_t rows, int64_t cols)
{
    size_t gemm = align256((size_t)rows * (size_t)cols * 2) +
                  (size_t)GEMM_CHUNK_ELEMS * 2 + (size_t)cols * 2;
    size_t mv = act_bytes(rows, cols);
    return mv > gemm ? mv : gemm;
}

__global__ void to_f16(const float *x, size_t n, __half *y)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = __float2half_rn(x[i]);
}

/* Rows [o0, o0 + n) of w (cols elements each) as f16, row-major. */
__global__ void dequant_f16(int type, const uint8_t *w, size_t row_bytes, int block,
                            int block_bytes, int64_t cols, int64_t o0, int64_t n, __half *y)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols)
        return;
    int64_t r = i / cols;
    y[i] = __float2half_rn(
        slm_cu_deq_row(type, block, block_bytes, w + (size_t)(o0 + r) * row_bytes, i % cols));
}

static void gemm(slm_cu_backend *be, const slm_weight *w, const float *x, int rows,
                 const float *add, float *y)
{
    int64_t in = w->cols, out = w->rows;
    size_t nx = (size_t)rows * (size_t)in;
    __half *x16 = (__half *)be->ws;
    __half *w16 = (__half *)(be->ws + align256(nx * 2));
    to_f16<<<slm_cu_blocks(nx, 256), 256, 0, be->stream>>>(x, nx, x16);
    if (!slm_cu_launched(be, "to_f16"))
        return;
    /* residual: y starts as add (beta = 1); add == y needs no copy */
    if (add && add != y &&
        !CU_CHECK(be, cudaMemcpyAsync(y, add, (size_t)rows * (size_t)out * sizeof(float),
                                      cudaMemcpyDeviceToDevice, be->stream)))
        return;
    const slm_type_info *ti = slm_type_get(w->type);
    int64_t step = chunk_rows(out, in);
    float alpha = 1.0f, beta = add ? 1.0f : 0.0f;
    for (int64_t o0 = 0; o0 < out; o0 += step) {
        int64_t n = out - o0 < step ? out - o0 : step;
        dequant_f16<<<slm_cu_blocks((size_t)(n * in), 256), 256, 0, be->stream>>>(
            w->type, w->dev, w->row_bytes, (int)ti->block_elems, (int)ti->block_bytes, in, o0, n,
            w16);
        if (!slm_cu_launched(be, "dequant_f16"))
            return;
        /* column-major view: yᵀ(out, rows) = W(in, out)ᵀ · xᵀ(in, rows) */
        if (!CUBLAS_CHECK(be, cublasGemmEx(be->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, rows,
                                           (int)in, &alpha, w16, CUDA_R_16F, (int)in, x16,
                                           CUDA_R_16F, (int)in, &beta, y + o0, CUDA_R_32F,
                                           (int)out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)))
            return;
    }
}

/* Fails the op when two float ranges of one buffer overlap. */
static bool disjoint(slm_cu_backend *be, slm_ref a, size_t na, slm_ref b, size_t nb)
{
    if (a.buf != b.buf || a.off + na * 4 <= b.off || b.off + nb * 4 <= a.off)
        return true;
    slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "matmul: input and output overlap");
    return false;
}

void slm_cu_matmul(slm_backend *b, const slm_weight *w, slm_ref x, int rows, slm_ref add,
                   slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "matmul"))
        return;
    if (!w || rows < 0 || rows > 65535 || w->cols > INT32_MAX || w->rows > INT32_MAX) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "matmul: %s, %d rows",
                    w ? "weight given" : "no weight", rows);
        return;
    }
    size_t nx = (size_t)rows * (size_t)w->cols, ny = (size_t)rows * (size_t)w->rows;
    float *xp = slm_cu_f32(be, x, nx, "matmul", "x");
    float *yp = xp ? slm_cu_f32(be, y, ny, "matmul", "y") : NULL;
    if (!yp || !disjoint(be, x, nx, y, ny))
        return;
    const float *ap = NULL;
    if (add.buf) {
        if (!(ap = slm_cu_f32(be, add, ny, "matmul", "add")))
            return;
        if ((add.buf != y.buf || add.off != y.off) && !disjoint(be, add, ny, y, ny))
            return;
    }
    size_t need = slm_cu_matmul_ws(rows, w->cols);
    if (need > be->ws_bytes) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "matmul: %d rows of a %lld-wide %s weight need %zu bytes of workspace; "
                    "begin_step sized %zu (more rows than the step's tokens, or a weight "
                    "loaded after begin_step)",
                    rows, (long long)w->cols, slm_type_name(w->type), need, be->ws_bytes);
        return;
    }
    if (rows == 0)
        return;
    if (rows <= be->matvec_rows)
        slm_cu_matvec(be, w, xp, rows, ap, yp);
    else
        gemm(be, w, xp, rows, ap, yp);
}
