/*
 * op_reference.h — the one scalar reference for every backend op
 * (runtime/backend.h), in plain C with double accumulation. Every op test
 * compares against these: test_backend_ops.c for every backend, and
 * test_cpu_matmul.c for the CPU kernels it drives directly. No second RoPE,
 * attention or matmul reference lives anywhere in tests/.
 *
 * Conventions: inputs are the f32 values a backend is given; outputs are
 * doubles, the exact (or nearly exact) value the backend's f32 result is
 * compared with. Quantized data enters as the values it decodes to
 * (slm_dequantize_row, itself checked bit for bit against ggml in
 * test_quant.c), so the reference of an op never depends on the kernel it
 * checks. Shapes follow backend.h: (rows, cols), row-major, dense unless a
 * stride is given.
 *
 * Not here: random data, tolerances, buffers (the tests own those).
 */
#ifndef SLM_OP_REFERENCE_H
#define SLM_OP_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "quant.h"

/* How a backend's matmul sees its activations. */
typedef enum ref_act {
    REF_ACT_F32 = 0,  /* f32 activations as given (the GPU backends) */
    REF_ACT_Q8 = 1,   /* quantized to 8-bit blocks once (CPU, cpu_act_terms 1) */
    REF_ACT_Q8X2 = 2, /* ... plus the quantized residual x − q₁ (cpu_act_terms 2) */
} ref_act;

/* out[0..n) = the activation values a matmul against weights of `wtype`
 * multiplies: x itself for REF_ACT_F32 or a float weight type (F32, F16,
 * BF16); else x through the 8-bit block format of the weight's family (Q8_0
 * for 32-element types, Q8_K for 256-element types), and with REF_ACT_Q8X2
 * plus the same format of the f32 residual x − q₁. n is a multiple of that
 * block. Doubles, so q₁ + q₂ is represented without a rounding. */
void ref_act_values(slm_type wtype, ref_act act, const float *x, int64_t n, double *out);

/* y(rows, out) = x(rows, in) · w(out, in)ᵀ (+ add(rows, out) when add is
 * not NULL), summed in double. mag (may be NULL) gets Σ|w·x| (+ |add|) per
 * element: the scale a float summation's error is proportional to. */
void ref_matmul(const float *w, int64_t out, int64_t in, const double *x, int64_t rows,
                const float *add, double *y, double *mag);

/* y(n, cols) = rows ids[0..n) of a table of `type` (row-major GGUF rows of
 * slm_type_row_bytes(type, cols) bytes), decoded. */
void ref_embed(slm_type type, const void *table, int64_t cols, const int32_t *ids, int n,
               double *y);

/* rmsnorm with the optional fused residual: x_out(rows, d) = x + add in f32
 * (one f32 addition, as the op stores it; x when add is NULL), then
 * y = x_out / sqrt(mean(x_out²) + eps) · w in double. */
void ref_rmsnorm(const float *x, const float *add, const float *w, float eps, int rows, int d,
                 float *x_out, double *y);

/* The inverse frequency of rotation pair i, freq_scale · base^(−2i/n_rot) /
 * freq_factors[i], written out here from the formula (not through
 * slm_rope_inv_freq, which the backends use). */
double ref_rope_inv_freq(const slm_rope_params *p, int i);

/* RoPE on n rows of n_heads·head_dim floats `stride` floats apart:
 * y[0..extent) where extent = (n−1)·stride + n_heads·head_dim, every
 * element not rotated (padding between rows, dimensions past n_rot) equal to
 * x. angle (may be NULL) gets |θ| of the pair each rotated element belongs
 * to, 0 elsewhere: an f32 angle's error grows with it. */
void ref_rope(const slm_rope_params *p, const int32_t *pos, int n, const float *x, int stride,
              int n_heads, int head_dim, double *y, double *angle);

/* dst[0..hd) = the values a KV pool of storage `type` (F32, F16, Q8_0) holds
 * after storing src: f16-rounded, or through Q8_0 blocks of 32 with the tail
 * of the last block zero-padded. */
void ref_kv_round(slm_type type, const float *src, float *dst, int hd);

/* Attention of one query token over positions 0..n_pos−1 of its sequence
 * (only the last p->window of them when p->window > 0):
 * out(n_heads·hd) = softmax(cap(p->scale · q·Kᵀ)) · V per head, cap the
 * soft-cap c·tanh(s/c) when p->softcap = c > 0, query head h reading KV head
 * h / (n_heads / n_kv). k and v hold the stored values (see ref_kv_round) of
 * position p, KV head g at [p·kv_stride + g·hd]. A naive two-pass softmax in
 * double. */
void ref_attention(const float *q, int n_heads, int n_kv, int hd, const slm_attn_params *p,
                   const float *k, const float *v, size_t kv_stride, int n_pos, double *out);

/* y(rows, ff) = silu(g) ⊙ u, g and u rows `stride` floats apart; with
 * ref_geglu gelu_tanh(g) ⊙ u instead (backend.h gives the formula). */
void ref_swiglu(const float *g, const float *u, int stride, int rows, int ff, double *y);
void ref_geglu(const float *g, const float *u, int stride, int rows, int ff, double *y);

/* y[i] = 0.5·x·(1 + erf(x/√2)), the exact GELU. */
void ref_gelu(const float *x, size_t n, double *y);

/* x[i] = cap·tanh(x[i]/cap). */
void ref_softcap(const float *x, float cap, size_t n, double *y);

/* layernorm with the optional fused residual: x_out = x + add in f32 (as
 * rmsnorm), then y = (x_out − mean) / sqrt(var + eps) · w + b in double
 * (b may be NULL). */
void ref_layernorm(const float *x, const float *add, const float *w, const float *b, float eps,
                   int rows, int d, float *x_out, double *y);

/* y = x with b[c] added to columns c < d of each of `rows` rows `stride`
 * floats apart; elements between rows equal x. y has (rows−1)·stride + d
 * elements. */
void ref_bias(const float *x, int stride, int rows, const float *b, int d, double *y);

/* y[i] = a[i] + b[i]; x[i] · s. */
void ref_add(const float *a, const float *b, size_t n, double *y);
void ref_scale(const float *x, float s, size_t n, double *y);

/* y(n_rows, d) = rows[0..n_rows) of x(·, d): get_rows, and the logits copy. */
void ref_get_rows(const float *x, int d, const int32_t *rows, int n_rows, double *y);

#endif
