/*
 * ops.c — the CPU backend's row-wise ops: embed, rmsnorm and layernorm (with
 * the fused residual add), the matmul binding, rope, swiglu and geglu, gelu,
 * bias, softcap, add, scale, get_rows.
 *
 * Each op is a binding plus a pool job: the binding (on the caller's thread)
 * checks every size and buffer range and records a failure for wait
 * instead of touching memory it was not given; the job only computes.
 * Activations are f32 row-major (rows, cols) at (buffer, byte offset).
 *
 * Rows are split over threads in contiguous ranges, and every output element
 * is reduced by one thread in a fixed order, so results do not depend on the
 * thread count.
 *
 * Not responsible for: the quantized matmul kernels (matmul.c), attention
 * (attention.c) and the KV pool (kv.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_matmul.h"
#include "cpu_vec.h"

/* Contiguous share [*lo, *hi) of n items for thread ith of nth. */
static void share(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

/* a·b without overflow into *out (sizes of arrays to check). */
static bool mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* Fails the op when [a, a+na) and [b, b+nb) floats of one buffer overlap. */
static bool disjoint(slm_cpu_backend *be, slm_ref a, size_t na, slm_ref b, size_t nb,
                     const char *op)
{
    if (a.buf != b.buf)
        return true;
    size_t a1 = a.off + na * sizeof(float), b1 = b.off + nb * sizeof(float);
    if (a.off < b1 && b.off < a1) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: input and output overlap", op);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* embed                                                                     */

typedef struct embed_job {
    const slm_weight *w;
    const int32_t *ids; /* [n], checked to be rows of w */
    int64_t n;
    float *y; /* (n, w->cols) */
} embed_job;

static void embed_rows(void *ctx, int ith, int nth)
{
    const embed_job *j = ctx;
    int64_t lo, hi;
    share(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        slm_dequantize_row((int)j->w->type, j->w->data + (size_t)j->ids[t] * j->w->row_bytes,
                           j->y + t * j->w->cols, j->w->cols);
}

void slm_cpu_embed(slm_backend *b, const slm_weight *table, slm_ref y)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "embed"))
        return;
    if (table == NULL) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "embed: no table");
        return;
    }
    size_t count;
    if (!mul_size((size_t)be->n_tokens, (size_t)table->cols, &count)) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "embed: output size overflows");
        return;
    }
    float *yp = slm_cpu_ref_f32(be, y, count, "embed", "y");
    if (yp == NULL)
        return;
    for (int t = 0; t < be->n_tokens; t++) {
        if (be->token_ids[t] < 0 || be->token_ids[t] >= table->rows) {
            slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                         "embed: token %d has id %d, outside the table's %lld rows", t,
                         be->token_ids[t], (long long)table->rows);
            return;
        }
    }
    embed_job j = {.w = table, .ids = be->token_ids, .n = be->n_tokens, .y = yp};
    slm_cpu_run(be, count, embed_rows, &j);
}

/* ------------------------------------------------------------------------ */
/* rmsnorm, layernorm                                                        */

typedef struct norm_job {
    float *x;          /* (rows, d), updated in place when add != NULL */
    const float *add;  /* (rows, d) or NULL */
    const float *w, *b; /* [d]; b (layernorm only) may be NULL */
    float *y;          /* (rows, d); may equal x */
    float eps;
    int64_t rows, d;
    bool layer;        /* layernorm: centred, then + b */
} norm_job;

/* 1/sqrt(var + eps) of row x, with its mean in *mean for a layernorm (0 for
 * rmsnorm). In double: a 4096-wide row of large residuals loses digits in
 * a float sum, and this is cheap; the layernorm's two passes (mean, then
 * centred squares) because one-pass E[x²] − E[x]² cancels on rows with a
 * large mean. */
static float inv_rms(const float *x, int64_t d, float eps, bool centre, float *mean)
{
    double m = 0, ss = 0;
    if (centre) {
        for (int64_t i = 0; i < d; i++)
            m += x[i];
        m /= (double)d;
    }
    for (int64_t i = 0; i < d; i++)
        ss += ((double)x[i] - m) * ((double)x[i] - m);
    *mean = (float)m;
    return (float)(1.0 / sqrt(ss / (double)d + (double)eps));
}

static void norm_rows(void *ctx, int ith, int nth)
{
    const norm_job *j = ctx;
    int64_t lo, hi;
    share(j->rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *x = j->x + r * j->d;
        float *y = j->y + r * j->d;
        if (j->add) {
            const float *a = j->add + r * j->d;
            for (int64_t i = 0; i < j->d; i++)
                x[i] += a[i];
        }
        float mf;
        float inv = inv_rms(x, j->d, j->eps, j->layer, &mf);
        if (!j->layer)
            for (int64_t i = 0; i < j->d; i++)
                y[i] = x[i] * inv * j->w[i];
        else
            for (int64_t i = 0; i < j->d; i++)
                y[i] = (x[i] - mf) * inv * j->w[i] + (j->b ? j->b[i] : 0.0f);
    }
}

/* An f32 [1, d] (or [d, 1]) weight, as norms and biases are. */
static bool vec_weight(const slm_weight *w, int d)
{
    return w != NULL && w->type == SLM_TYPE_F32 && w->rows * w->cols == d;
}

/* The binding both norms share: checks, then the job. */
static void norm_op(slm_backend *b, const char *op, bool layer, slm_ref x, slm_ref add,
                    const slm_weight *w, const slm_weight *bias, float eps, int rows, int d,
                    slm_ref y)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, op))
        return;
    if (rows < 0 || d < 1 || !vec_weight(w, d) || (bias && !vec_weight(bias, d)) ||
        !(eps >= 0)) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "%s: rows %d, d %d, eps %g with a %s weight of %lld elements%s (needs "
                     "f32 weights of d elements)",
                     op, rows, d, (double)eps, w ? slm_type_name((int)w->type) : "missing",
                     w ? (long long)(w->rows * w->cols) : 0LL, bias ? " and a bias" : "");
        return;
    }
    size_t n = (size_t)rows * (size_t)d;
    float *xp = slm_cpu_ref_f32(be, x, n, op, "x");
    float *yp = xp ? slm_cpu_ref_f32(be, y, n, op, "y") : NULL;
    if (yp == NULL)
        return;
    const float *ap = NULL;
    if (add.buf != NULL && (ap = slm_cpu_ref_f32(be, add, n, op, "add")) == NULL)
        return;
    norm_job j = {.x = xp, .add = ap, .w = (const float *)w->data,
                  .b = bias ? (const float *)bias->data : NULL, .y = yp, .eps = eps,
                  .rows = rows, .d = d, .layer = layer};
    slm_cpu_run(be, layer ? n * 2 : n, norm_rows, &j);
}

void slm_cpu_rmsnorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w, float eps,
                     int rows, int d, slm_ref y)
{
    norm_op(b, "rmsnorm", false, x, add, w, NULL, eps, rows, d, y);
}

void slm_cpu_layernorm(slm_backend *b, slm_ref x, slm_ref add, const slm_weight *w,
                       const slm_weight *bias, float eps, int rows, int d, slm_ref y)
{
    norm_op(b, "layernorm", true, x, add, w, bias, eps, rows, d, y);
}

/* ------------------------------------------------------------------------ */
/* matmul binding                                                            */

void slm_cpu_matmul_op(slm_backend *b, const slm_weight *w, slm_ref x, int rows, slm_ref add,
                       slm_ref y)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "matmul"))
        return;
    if (w == NULL || rows < 0) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "matmul: %s, %d rows",
                     w ? "weight given" : "no weight", rows);
        return;
    }
    size_t nx, ny;
    if (!mul_size((size_t)rows, (size_t)w->cols, &nx) ||
        !mul_size((size_t)rows, (size_t)w->rows, &ny)) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "matmul: sizes overflow");
        return;
    }
    float *xp = slm_cpu_ref_f32(be, x, nx, "matmul", "x");
    float *yp = xp ? slm_cpu_ref_f32(be, y, ny, "matmul", "y") : NULL;
    if (yp == NULL || !disjoint(be, x, nx, y, ny, "matmul"))
        return;
    const float *ap = NULL;
    if (add.buf != NULL) {
        if ((ap = slm_cpu_ref_f32(be, add, ny, "matmul", "add")) == NULL)
            return;
        /* add may be y itself, but must not partly overlap it */
        if ((add.buf != y.buf || add.off != y.off) && !disjoint(be, add, ny, y, ny, "matmul"))
            return;
    }
    size_t need = slm_cpu_matmul_scratch_bytes(w->type, w->cols, rows);
    if (need > be->mm_scratch_bytes) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "matmul: %d rows of a %lld-wide %s weight need %zu bytes of scratch; "
                     "begin_step sized %zu (more rows than the step's tokens, or a weight "
                     "loaded after begin_step)",
                     rows, (long long)w->cols, slm_type_name((int)w->type), need,
                     be->mm_scratch_bytes);
        return;
    }
    if (w->packed)
        slm_cpu_matmul_packed(be->pool, be->act_terms, w->packed, xp, rows, ap, yp, be->mm_scratch);
    else
        slm_cpu_matmul(be->pool, be->simd, be->act_terms, w->type, w->data, w->rows, w->cols, xp,
                       rows, ap, yp, be->mm_scratch);
}

/* ------------------------------------------------------------------------ */
/* rope                                                                      */

/* Pairs whose cos/sin one pass computes into a stack table (the table is
 * shared by every head of the token). */
#define ROPE_CHUNK 64

typedef struct rope_job {
    float *x; /* n rows of n_heads·head_dim, `stride` floats apart */
    const int32_t *pos;
    int64_t n, stride;
    int n_heads, head_dim;
    const slm_rope *r;
} rope_job;

static void rope_rows(void *ctx, int ith, int nth)
{
    const rope_job *j = ctx;
    int half = j->r->n_rot / 2;
    /* NORM rotates (x[2i], x[2i+1]); NEOX rotates (x[i], x[i + n_rot/2]). */
    int stride = j->r->mode == SLM_ROPE_NEOX ? 1 : 2;
    int partner = j->r->mode == SLM_ROPE_NEOX ? half : 1;
    int64_t lo, hi;
    share(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        float *row = j->x + t * j->stride;
        double pos = (double)j->pos[t];
        for (int i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
            int ni = half - i0 < ROPE_CHUNK ? half - i0 : ROPE_CHUNK;
            float c[ROPE_CHUNK], s[ROPE_CHUNK];
            for (int k = 0; k < ni; k++) {
                double theta = pos * j->r->inv_freq[i0 + k];
                c[k] = (float)cos(theta);
                s[k] = (float)sin(theta);
            }
            for (int h = 0; h < j->n_heads; h++) {
                float *v = row + (int64_t)h * j->head_dim;
                for (int k = 0; k < ni; k++) {
                    int a = (i0 + k) * stride;
                    float x0 = v[a], x1 = v[a + partner];
                    v[a] = x0 * c[k] - x1 * s[k];
                    v[a + partner] = x0 * s[k] + x1 * c[k];
                }
            }
        }
    }
}

slm_status slm_cpu_rope_create(slm_backend *b, const slm_rope_params *p, slm_rope **out)
{
    (void)b;
    *out = NULL;
    slm_status st = slm_rope_params_check(p, 4096, "cpu backend");
    if (st)
        return st;
    int half = p->n_rot / 2;
    slm_rope *r = malloc(sizeof *r + (size_t)half * sizeof(double));
    if (!r)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cpu backend: out of memory");
    r->mode = p->mode;
    r->n_rot = p->n_rot;
    for (int i = 0; i < half; i++)
        r->inv_freq[i] = slm_rope_inv_freq(p, i);
    *out = r;
    return SLM_OK;
}

void slm_cpu_rope_free(slm_backend *b, slm_rope *r)
{
    (void)b;
    free(r);
}

void slm_cpu_rope(slm_backend *b, slm_ref x, int stride, int n_heads, int head_dim,
                  const slm_rope *r)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "rope"))
        return;
    if (r == NULL || n_heads < 1 || head_dim < 1 || r->n_rot > head_dim) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "rope: %d heads of %d, n_rot %d", n_heads,
                     head_dim, r ? r->n_rot : 0);
        return;
    }
    int64_t width = (int64_t)n_heads * head_dim;
    float *xp = slm_cpu_ref_rows(be, x, be->n_tokens, width, stride, "rope", "x");
    if (xp == NULL)
        return;
    size_t n = (size_t)be->n_tokens * (size_t)width;
    for (int t = 0; t < be->n_tokens; t++) {
        if (be->positions[t] < 0) {
            slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "rope: the step has no positions");
            return;
        }
    }
    rope_job j = {.x = xp, .pos = be->positions, .n = be->n_tokens, .stride = stride,
                  .n_heads = n_heads, .head_dim = head_dim, .r = r};
    slm_cpu_run(be, n * 4, rope_rows, &j);
}

/* ------------------------------------------------------------------------ */
/* swiglu                                                                    */

typedef struct glu_job {
    const float *g, *u; /* rows of ff floats, `stride` floats apart */
    float *y;           /* (rows, ff) */
    int64_t rows, ff, stride;
    /* silu or gelu_tanh, times u: the level's row kernel (cpu_vec.h) */
    void (*row)(const float *g, const float *u, float *y, int64_t n);
} glu_job;

static void glu_rows(void *ctx, int ith, int nth)
{
    const glu_job *j = ctx;
    int64_t lo, hi;
    share(j->rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        j->row(j->g + r * j->stride, j->u + r * j->stride, j->y + r * j->ff, j->ff);
}

static void glu(slm_backend *b, const char *op, bool gelu, slm_ref g, slm_ref u, int stride,
                int rows, int ff, slm_ref y)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, op))
        return;
    if (rows < 0 || ff < 1) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %d rows of %d", op, rows, ff);
        return;
    }
    size_t n = (size_t)rows * (size_t)ff;
    size_t extent = rows == 0 ? 0 : ((size_t)rows - 1) * (size_t)stride + (size_t)ff;
    float *gp = slm_cpu_ref_rows(be, g, rows, ff, stride, op, "g");
    float *up = gp ? slm_cpu_ref_rows(be, u, rows, ff, stride, op, "u") : NULL;
    float *yp = up ? slm_cpu_ref_f32(be, y, n, op, "y") : NULL;
    if (yp == NULL || !disjoint(be, g, extent, y, n, op) || !disjoint(be, u, extent, y, n, op))
        return;
    const slm_vec_kernels *k = slm_vec_for(be->simd);
    glu_job j = {.g = gp, .u = up, .y = yp, .rows = rows, .ff = ff, .stride = stride,
                 .row = gelu ? k->geglu_row : k->swiglu_row};
    slm_cpu_run(be, n * 8, glu_rows, &j);
}

void slm_cpu_swiglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff,
                    slm_ref y)
{
    glu(b, "swiglu", false, g, u, stride, rows, ff, y);
}

void slm_cpu_geglu(slm_backend *b, slm_ref g, slm_ref u, int stride, int rows, int ff,
                   slm_ref y)
{
    glu(b, "geglu", true, g, u, stride, rows, ff, y);
}

/* ------------------------------------------------------------------------ */
/* add, scale                                                                */

typedef struct elt_job {
    const float *a, *b;
    float *y;
    float s;
    int64_t n;
} elt_job;

static void add_range(void *ctx, int ith, int nth)
{
    const elt_job *j = ctx;
    int64_t lo, hi;
    share(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        j->y[i] = j->a[i] + j->b[i];
}

static void scale_range(void *ctx, int ith, int nth)
{
    const elt_job *j = ctx;
    int64_t lo, hi;
    share(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        j->y[i] *= j->s;
}

void slm_cpu_add(slm_backend *b, slm_ref a, slm_ref bb, size_t count, slm_ref y)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "add"))
        return;
    float *ap = slm_cpu_ref_f32(be, a, count, "add", "a");
    float *bp = ap ? slm_cpu_ref_f32(be, bb, count, "add", "b") : NULL;
    float *yp = bp ? slm_cpu_ref_f32(be, y, count, "add", "y") : NULL;
    if (yp == NULL)
        return;
    /* NOTE: y may alias a or b exactly (element i is read before it is
     * written, by the same thread); no partial overlap check is needed for
     * that, and a partial overlap only gives wrong values, never a crash. */
    elt_job j = {.a = ap, .b = bp, .y = yp, .n = (int64_t)count};
    slm_cpu_run(be, count, add_range, &j);
}

void slm_cpu_scale(slm_backend *b, slm_ref x, float s, size_t count)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "scale"))
        return;
    float *xp = slm_cpu_ref_f32(be, x, count, "scale", "x");
    if (xp == NULL)
        return;
    elt_job j = {.y = xp, .s = s, .n = (int64_t)count};
    slm_cpu_run(be, count, scale_range, &j);
}

/* ------------------------------------------------------------------------ */
/* gelu, softcap                                                             */

static void gelu_range(void *ctx, int ith, int nth)
{
    const elt_job *j = ctx;
    int64_t lo, hi;
    share(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        j->y[i] = 0.5f * j->a[i] * (1.0f + erff(j->a[i] * 0.70710678118654752f));
}

static void softcap_range(void *ctx, int ith, int nth)
{
    const elt_job *j = ctx;
    int64_t lo, hi;
    share(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        j->y[i] = j->s * tanhf(j->y[i] / j->s);
}

void slm_cpu_gelu(slm_backend *b, slm_ref x, size_t count, slm_ref y)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "gelu"))
        return;
    float *xp = slm_cpu_ref_f32(be, x, count, "gelu", "x");
    float *yp = xp ? slm_cpu_ref_f32(be, y, count, "gelu", "y") : NULL;
    if (yp == NULL)
        return;
    if ((x.buf != y.buf || x.off != y.off) && !disjoint(be, x, count, y, count, "gelu"))
        return;
    elt_job j = {.a = xp, .y = yp, .n = (int64_t)count};
    slm_cpu_run(be, count * 8, gelu_range, &j);
}

void slm_cpu_softcap(slm_backend *b, slm_ref x, size_t count, float cap)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "softcap"))
        return;
    if (!(cap > 0) || !isfinite(cap)) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "softcap: cap %g must be > 0", (double)cap);
        return;
    }
    float *xp = slm_cpu_ref_f32(be, x, count, "softcap", "x");
    if (xp == NULL)
        return;
    elt_job j = {.y = xp, .s = cap, .n = (int64_t)count};
    slm_cpu_run(be, count * 8, softcap_range, &j);
}

/* ------------------------------------------------------------------------ */
/* bias                                                                      */

typedef struct bias_job {
    float *x; /* rows of at least d floats, `stride` apart */
    const float *b;
    int64_t rows, d, stride;
} bias_job;

static void bias_rows(void *ctx, int ith, int nth)
{
    const bias_job *j = ctx;
    int64_t lo, hi;
    share(j->rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *x = j->x + r * j->stride;
        for (int64_t i = 0; i < j->d; i++)
            x[i] += j->b[i];
    }
}

void slm_cpu_bias(slm_backend *b, slm_ref x, int stride, int rows, const slm_weight *w)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "bias"))
        return;
    if (w == NULL || w->type != SLM_TYPE_F32 || w->rows != 1 || rows < 0 || stride < w->cols) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "bias: %d rows %d floats apart with a %s bias of %lld elements (needs an "
                     "f32 [1, d] weight, d <= stride)",
                     rows, stride, w ? slm_type_name((int)w->type) : "missing",
                     w ? (long long)(w->rows * w->cols) : 0LL);
        return;
    }
    float *xp = slm_cpu_ref_rows(be, x, rows, w->cols, stride, "bias", "x");
    if (xp == NULL)
        return;
    bias_job j = {.x = xp, .b = (const float *)w->data, .rows = rows, .d = w->cols,
                  .stride = stride};
    slm_cpu_run(be, (size_t)rows * (size_t)w->cols, bias_rows, &j);
}

/* ------------------------------------------------------------------------ */
/* get_rows                                                                  */

void slm_cpu_get_rows(slm_backend *b, slm_ref x, int d, slm_ref y)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "get_rows"))
        return;
    if (d < 1) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "get_rows: row width %d", d);
        return;
    }
    float *xp = slm_cpu_ref_f32(be, x, (size_t)be->n_tokens * (size_t)d, "get_rows", "x");
    float *yp = xp ? slm_cpu_ref_f32(be, y, (size_t)be->n_logit * (size_t)d, "get_rows", "y")
                   : NULL;
    if (yp == NULL)
        return;
    /* begin_step checked every logit row is a token of the step. memmove:
     * y may be x itself when the rows ascend (the forward pass compacts the
     * residual stream in place). */
    for (int i = 0; i < be->n_logit; i++)
        memmove(yp + (size_t)i * (size_t)d, xp + (size_t)be->logit_rows[i] * (size_t)d,
                (size_t)d * sizeof(float));
}

/* ------------------------------------------------------------------------ */
/* logits                                                                    */

void slm_cpu_logits(slm_backend *b, slm_ref x, int cols)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_cpu_op_ok(be, "logits"))
        return;
    size_t n;
    if (cols < 1 || !mul_size((size_t)be->n_logit, (size_t)cols, &n)) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "logits: %d rows of %d", be->n_logit, cols);
        return;
    }
    const float *xp = slm_cpu_ref_f32(be, x, n, "logits", "x");
    if (xp == NULL)
        return;
    if (n > 0 && be->logits_out == NULL) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "logits: the step names no host buffer");
        return;
    }
    memcpy(be->logits_out, xp, n * sizeof(float));
}
