/*
 * op_reference.c — see op_reference.h. Plain loops, double accumulators,
 * no SIMD and no cleverness: this file is the oracle, so it is written to be
 * read and believed, not to be fast. Quantized values come from
 * runtime/quant.c's reference codec (the one place block formats are
 * decoded for tests); everything else is the textbook formula.
 */
#include "op_reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp16.h"
#include "quant_blocks.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "op_reference: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

/* q = the values of x coded as `fmt` (Q8_0 or Q8_K), decoded again. */
static void through_format(slm_type fmt, const float *x, int64_t n, float *q)
{
    void *blocks = xmalloc(slm_type_row_bytes((int)fmt, n));
    if (!slm_quantize_row_ref((int)fmt, x, blocks, n) ||
        !slm_dequantize_row((int)fmt, blocks, q, n)) {
        fprintf(stderr, "op_reference: %lld values cannot be coded as %s\n", (long long)n,
                slm_type_name((int)fmt));
        abort();
    }
    free(blocks);
}

void ref_act_values(slm_type wtype, ref_act act, const float *x, int64_t n, double *out)
{
    int block = slm_type_get((int)wtype)->block_elems;
    if (act == REF_ACT_F32 || block == 1) {
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i];
        return;
    }
    slm_type fmt = block == SLM_QK_K ? SLM_TYPE_Q8_K : SLM_TYPE_Q8_0;
    float *q1 = xmalloc((size_t)n * sizeof(float));
    through_format(fmt, x, n, q1);
    for (int64_t i = 0; i < n; i++)
        out[i] = q1[i];
    if (act == REF_ACT_Q8X2) {
        /* the residual is formed in f32, as the kernel forms it */
        float *rest = xmalloc((size_t)n * sizeof(float)), *q2 = xmalloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            rest[i] = x[i] - q1[i];
        through_format(fmt, rest, n, q2);
        for (int64_t i = 0; i < n; i++)
            out[i] += q2[i];
        free(rest);
        free(q2);
    }
    free(q1);
}

void ref_matmul(const float *w, int64_t out, int64_t in, const double *x, int64_t rows,
                const float *add, double *y, double *mag)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = 0, m = 0;
            for (int64_t i = 0; i < in; i++) {
                double p = (double)w[o * in + i] * x[r * in + i];
                s += p;
                m += fabs(p);
            }
            if (add) {
                s += add[r * out + o];
                m += fabs((double)add[r * out + o]);
            }
            y[r * out + o] = s;
            if (mag)
                mag[r * out + o] = m;
        }
}

void ref_embed(slm_type type, const void *table, int64_t cols, const int32_t *ids, int n,
               double *y)
{
    size_t rb = slm_type_row_bytes((int)type, cols);
    float *row = xmalloc((size_t)cols * sizeof(float));
    for (int t = 0; t < n; t++) {
        if (!slm_dequantize_row((int)type, (const uint8_t *)table + (size_t)ids[t] * rb, row,
                                cols)) {
            fprintf(stderr, "op_reference: cannot decode %s\n", slm_type_name((int)type));
            abort();
        }
        for (int64_t i = 0; i < cols; i++)
            y[(size_t)t * cols + i] = row[i];
    }
    free(row);
}

void ref_rmsnorm(const float *x, const float *add, const float *w, float eps, int rows, int d,
                 float *x_out, double *y)
{
    for (int r = 0; r < rows; r++) {
        const size_t base = (size_t)r * d;
        double ss = 0;
        for (int i = 0; i < d; i++) {
            x_out[base + i] = add ? x[base + i] + add[base + i] : x[base + i];
            ss += (double)x_out[base + i] * x_out[base + i];
        }
        double inv = 1.0 / sqrt(ss / d + (double)eps);
        for (int i = 0; i < d; i++)
            y[base + i] = x_out[base + i] * inv * w[i];
    }
}

double ref_rope_inv_freq(const slm_rope_params *p, int i)
{
    double f = (double)p->freq_scale / pow((double)p->freq_base, 2.0 * i / p->n_rot);
    return p->freq_factors ? f / p->freq_factors[i] : f;
}

void ref_rope(const slm_rope_params *p, const int32_t *pos, int n, const float *x, int stride,
              int n_heads, int head_dim, double *y, double *angle)
{
    size_t extent = n == 0 ? 0 : (size_t)(n - 1) * stride + (size_t)n_heads * head_dim;
    for (size_t i = 0; i < extent; i++) {
        y[i] = x[i];
        if (angle)
            angle[i] = 0;
    }
    int half = p->n_rot / 2;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < n_heads; h++) {
            size_t base = (size_t)t * stride + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                double th = pos[t] * ref_rope_inv_freq(p, i);
                /* NORM pairs (2i, 2i+1); NEOX pairs (i, i + n_rot/2) */
                size_t a = base + (p->mode == SLM_ROPE_NEOX ? (size_t)i : 2 * (size_t)i);
                size_t b = a + (p->mode == SLM_ROPE_NEOX ? (size_t)half : 1);
                y[a] = x[a] * cos(th) - x[b] * sin(th);
                y[b] = x[a] * sin(th) + x[b] * cos(th);
                if (angle)
                    angle[a] = angle[b] = fabs(th);
            }
        }
}

void ref_kv_round(slm_type type, const float *src, float *dst, int hd)
{
    switch (type) {
    case SLM_TYPE_F32: memcpy(dst, src, (size_t)hd * sizeof(float)); break;
    case SLM_TYPE_F16:
        for (int i = 0; i < hd; i++)
            dst[i] = slm_f16_to_f32(slm_f32_to_f16(src[i]));
        break;
    case SLM_TYPE_Q8_0: {
        int padded = (hd + SLM_QK - 1) / SLM_QK * SLM_QK;
        float *pad = calloc((size_t)padded, sizeof(float)), *out = xmalloc((size_t)padded * 4);
        if (!pad)
            abort();
        memcpy(pad, src, (size_t)hd * sizeof(float));
        through_format(SLM_TYPE_Q8_0, pad, padded, out);
        memcpy(dst, out, (size_t)hd * sizeof(float));
        free(pad);
        free(out);
        break;
    }
    default:
        fprintf(stderr, "op_reference: no KV storage type %s\n", slm_type_name((int)type));
        abort();
    }
}

void ref_attention(const float *q, int n_heads, int n_kv, int hd, const slm_attn_params *ap,
                   const float *k, const float *v, size_t kv_stride, int n_pos, double *out)
{
    int group = n_heads / n_kv;
    int first = ap->window > 0 && n_pos > ap->window ? n_pos - ap->window : 0;
    double *sc = xmalloc((size_t)n_pos * sizeof(double));
    for (int h = 0; h < n_heads; h++) {
        const float *qh = q + (size_t)h * hd;
        size_t g = (size_t)(h / group) * hd;
        double mx = -INFINITY, sum = 0;
        for (int p = first; p < n_pos; p++) {
            double dot = 0;
            for (int i = 0; i < hd; i++)
                dot += (double)qh[i] * k[p * kv_stride + g + i];
            sc[p] = dot * ap->scale;
            if (ap->softcap > 0)
                sc[p] = ap->softcap * tanh(sc[p] / ap->softcap);
            mx = sc[p] > mx ? sc[p] : mx;
        }
        for (int p = first; p < n_pos; p++)
            sum += sc[p] = exp(sc[p] - mx);
        for (int i = 0; i < hd; i++) {
            double o = 0;
            for (int p = first; p < n_pos; p++)
                o += sc[p] * v[p * kv_stride + g + i];
            out[(size_t)h * hd + i] = o / sum;
        }
    }
    free(sc);
}

void ref_swiglu(const float *g, const float *u, int stride, int rows, int ff, double *y)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < ff; i++) {
            double gv = g[(size_t)r * stride + i], uv = u[(size_t)r * stride + i];
            y[(size_t)r * ff + i] = gv / (1.0 + exp(-gv)) * uv;
        }
}

void ref_geglu(const float *g, const float *u, int stride, int rows, int ff, double *y)
{
    const double c = 0.79788456080286535588; /* sqrt(2/π) */
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < ff; i++) {
            double gv = g[(size_t)r * stride + i], uv = u[(size_t)r * stride + i];
            y[(size_t)r * ff + i] = 0.5 * gv * (1.0 + tanh(c * (gv + 0.044715 * gv * gv * gv))) * uv;
        }
}

void ref_gelu(const float *x, size_t n, double *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
}

void ref_softcap(const float *x, float cap, size_t n, double *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = cap * tanh((double)x[i] / cap);
}

void ref_layernorm(const float *x, const float *add, const float *w, const float *b, float eps,
                   int rows, int d, float *x_out, double *y)
{
    for (int r = 0; r < rows; r++) {
        float *xo = x_out + (size_t)r * d;
        double mean = 0, var = 0;
        for (int i = 0; i < d; i++) {
            xo[i] = add ? x[(size_t)r * d + i] + add[(size_t)r * d + i] : x[(size_t)r * d + i];
            mean += xo[i];
        }
        mean /= d;
        for (int i = 0; i < d; i++)
            var += (xo[i] - mean) * (xo[i] - mean);
        double inv = 1.0 / sqrt(var / d + eps);
        for (int i = 0; i < d; i++)
            y[(size_t)r * d + i] = (xo[i] - mean) * inv * w[i] + (b ? b[i] : 0.0);
    }
}

void ref_bias(const float *x, int stride, int rows, const float *b, int d, double *y)
{
    size_t extent = rows == 0 ? 0 : (size_t)(rows - 1) * stride + d;
    for (size_t i = 0; i < extent; i++)
        y[i] = x[i];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < d; c++)
            y[(size_t)r * stride + c] += b[c];
}

void ref_add(const float *a, const float *b, size_t n, double *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (double)a[i] + b[i];
}

void ref_scale(const float *x, float s, size_t n, double *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (double)x[i] * s;
}

void ref_get_rows(const float *x, int d, const int32_t *rows, int n_rows, double *y)
{
    for (int r = 0; r < n_rows; r++)
        for (int i = 0; i < d; i++)
            y[(size_t)r * d + i] = x[(size_t)rows[r] * d + i];
}
