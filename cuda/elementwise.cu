/*
 * elementwise.cu — the CUDA backend's element-wise ops: the gated
 * activations (swiglu, geglu), gelu, the soft-cap, the bias add over
 * strided rows, add and scale.
 *
 * One thread per output element, each reading only the inputs of its own
 * element, so the ops that may work in place (gelu, softcap, bias, add,
 * scale) need no ordering between threads. The activation arithmetic is
 * cuda_logic.cuh's (slm_cu_silu, slm_cu_gelu_tanh, slm_cu_gelu_erf,
 * slm_cu_softcap), tested on the host against double precision.
 *
 * Not done yet: the gated activations in the gate|up matmul's epilogue.
 * Compiled, host-tested logic only: not yet run on a GPU.
 */
#include <math.h>

#include "cuda_backend.h"
#include "cuda_logic.cuh"

#define THREADS 256

/* Whether [a, a+na) and [b, b+nb) floats of one buffer overlap (fails op). */
static bool overlap(slm_cu_backend *be, slm_ref a, size_t na, slm_ref b, size_t nb, const char *op)
{
    if (a.buf != b.buf || a.off + na * 4 <= b.off || b.off + nb * 4 <= a.off)
        return false;
    slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: input and output overlap", op);
    return true;
}

/* ------------------------------------------------------------------------ */
/* swiglu, geglu                                                             */

enum { GATE_SILU, GATE_GELU_TANH };

/* y(rows, ff) = act(g) ⊙ u over rows `stride` floats apart. */
__global__ void gated_rows(int act, const float *g, const float *u, int64_t stride, int rows,
                           int ff, float *y)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)rows * ff)
        return;
    int64_t r = i / ff, c = i % ff;
    float gv = g[r * stride + c];
    float a = act == GATE_SILU ? slm_cu_silu(gv) : slm_cu_gelu_tanh(gv);
    y[i] = a * u[r * stride + c];
}

/* swiglu's and geglu's binding: y must not overlap g or u (rows of g and u
 * interleave in a fused gate|up output, so no in-place form is offered). */
static void gated(slm_backend *b, int act, const char *op, slm_ref g, slm_ref u, int stride,
                  int rows, int ff, slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, op))
        return;
    if (rows < 0 || ff < 1) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %d rows of %d", op, rows, ff);
        return;
    }
    size_t n = (size_t)rows * (size_t)ff;
    size_t extent = rows ? (size_t)(rows - 1) * (size_t)stride + (size_t)ff : 0;
    const float *gp = slm_cu_rows(be, g, rows, ff, stride, op, "g");
    const float *up = gp ? slm_cu_rows(be, u, rows, ff, stride, op, "u") : NULL;
    float *yp = up ? slm_cu_f32(be, y, n, op, "y") : NULL;
    if (!yp || overlap(be, g, extent, y, n, op) || overlap(be, u, extent, y, n, op) || !n)
        return;
    gated_rows<<<slm_cu_blocks(n, THREADS), THREADS, 0, be->stream>>>(act, gp, up, stride, rows,
                                                                        ff, yp);
    slm_cu_launched(be, "gated_rows");
}

void slm_cu_swiglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff, slm_ref y)
{
    gated(b, GATE_SILU, "swiglu", g, u, stride, rows, ff, y);
}

void slm_cu_geglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff, slm_ref y)
{
    gated(b, GATE_GELU_TANH, "geglu", g, u, stride, rows, ff, y);
}

/* ------------------------------------------------------------------------ */
/* gelu, softcap                                                             */

__global__ void gelu_elems(const float *x, size_t n, float *y)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = slm_cu_gelu_erf(x[i]);
}

/* y may equal x exactly (one thread reads and writes element i); a partial
 * overlap would let a thread read an element another already wrote. */
void slm_cu_gelu(slm_backend *b, slm_ref x, size_t count, slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "gelu"))
        return;
    const float *xp = slm_cu_f32(be, x, count, "gelu", "x");
    float *yp = xp ? slm_cu_f32(be, y, count, "gelu", "y") : NULL;
    if (!yp || (xp != yp && overlap(be, x, count, y, count, "gelu")) || !count)
        return;
    gelu_elems<<<slm_cu_blocks(count, THREADS), THREADS, 0, be->stream>>>(xp, count, yp);
    slm_cu_launched(be, "gelu_elems");
}

__global__ void softcap_elems(float *x, size_t n, float cap)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = slm_cu_softcap(x[i], cap);
}

void slm_cu_softcap(slm_backend *b, slm_ref x, size_t count, float cap)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "softcap"))
        return;
    if (!(cap > 0) || !isfinite(cap)) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "softcap: cap %g (needs > 0, finite)",
                    (double)cap);
        return;
    }
    float *xp = slm_cu_f32(be, x, count, "softcap", "x");
    if (!xp || !count)
        return;
    softcap_elems<<<slm_cu_blocks(count, THREADS), THREADS, 0, be->stream>>>(xp, count, cap);
    slm_cu_launched(be, "softcap_elems");
}

/* ------------------------------------------------------------------------ */
/* bias                                                                      */

/* x[r·stride + c] += b[c], one thread per (r, c < d). */
__global__ void bias_rows(float *x, int64_t stride, int rows, int64_t d, const float *bias)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)rows * d)
        return;
    int64_t r = i / d, c = i % d;
    x[r * stride + c] += bias[c];
}

void slm_cu_bias(slm_backend *b, slm_ref x, int stride, int rows, const slm_weight *bias)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "bias"))
        return;
    if (rows < 0 || !bias || bias->type != SLM_TYPE_F32) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "bias: %d rows with a %s weight (needs an f32 weight)", rows,
                    bias ? slm_type_name(bias->type) : "missing");
        return;
    }
    /* b is [1, d]; a [d, 1] upload holds the same d floats */
    int64_t d = bias->rows * bias->cols;
    float *xp = slm_cu_rows(be, x, rows, d, stride, "bias", "x");
    size_t n = (size_t)rows * (size_t)d;
    if (!xp || !n)
        return;
    bias_rows<<<slm_cu_blocks(n, THREADS), THREADS, 0, be->stream>>>(xp, stride, rows, d,
                                                                       (const float *)bias->dev);
    slm_cu_launched(be, "bias_rows");
}

/* ------------------------------------------------------------------------ */
/* add, scale                                                                */

__global__ void add_elems(const float *a, const float *b, size_t n, float *y)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a[i] + b[i];
}

__global__ void scale_elems(float *x, float s, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= s;
}

void slm_cu_add(slm_backend *b, slm_ref a, slm_ref bb, size_t count, slm_ref y)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "add"))
        return;
    const float *ap = slm_cu_f32(be, a, count, "add", "a");
    const float *bp = ap ? slm_cu_f32(be, bb, count, "add", "b") : NULL;
    float *yp = bp ? slm_cu_f32(be, y, count, "add", "y") : NULL;
    if (!yp || !count)
        return;
    /* y may alias a or b exactly: element i is read and written by one thread */
    add_elems<<<slm_cu_blocks(count, THREADS), THREADS, 0, be->stream>>>(ap, bp, count, yp);
    slm_cu_launched(be, "add_elems");
}

void slm_cu_scale(slm_backend *b, slm_ref x, float s, size_t count)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!slm_cu_op_ok(be, "scale"))
        return;
    float *xp = slm_cu_f32(be, x, count, "scale", "x");
    if (!xp || !count)
        return;
    scale_elems<<<slm_cu_blocks(count, THREADS), THREADS, 0, be->stream>>>(xp, s, count);
    slm_cu_launched(be, "scale_elems");
}
