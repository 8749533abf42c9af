/*
 * matmul.c — y(rows, out) = x(rows, in) · W(out, in)ᵀ (+ add) on the CPU
 * (cpu_matmul.h), driving the kernels of cpu_dot.h.
 *
 * Two pool jobs per call:
 *   1. quantize each activation row into scratch (Q8_0 or Q8_K blocks; F32,
 *      F16 and BF16 weights skip this and read x directly). With two
 *      activation terms the quantization error of each block is quantized
 *      again into a second row of blocks, x ≈ q₁ + q₂, and every output is
 *      the sum of two integer dot products: ~7 more bits of activation
 *      precision for twice the arithmetic (SLM_CPU_ACT=q8x2);
 *   2. the threads claim runs of tiles of W_TILE weight rows (a shared
 *      counter: a thread slowed by other work on its core takes fewer), and
 *      for each tile run the activation rows in groups of the level's
 *      max_rows, so a tile of weights is read from memory once and then
 *      served from cache. Packed weights (cpu_packed.h) go the same way in
 *      16-row groups.
 * Every y element is produced by exactly one kernel call whose summation
 * order depends only on `in`, so results do not change with the thread count
 * or the number of rows (batch invariance).
 *
 * Not responsible for: validating shapes from files (the backend binding does
 * that; here a violated precondition is a bug and trips SLM_ASSERT).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cpu_dot.h"
#include "cpu_matmul.h"
#include "cpu_packed.h"
#include "status.h"

/* Weight rows per tile: a 4096-wide Q4_0 row is 2.3 KB, so 16 rows stay in
 * L1/L2 while every activation group passes over them. */
#define W_TILE 16
#define SCRATCH_ALIGN 64

bool slm_cpu_matmul_supported(slm_type type) { return slm_type_supported((int)type); }

/* Bytes of one quantized activation row, padded so every row starts 64-byte
 * aligned (0 for float weights, which read x directly). */
static size_t act_row_bytes(slm_type type, int64_t in)
{
    size_t b;
    switch (slm_act_kind_of(type)) {
    case SLM_ACT_Q8_0: b = (size_t)(in / SLM_QK) * sizeof(slm_act_q8_0); break;
    case SLM_ACT_Q8_K: b = (size_t)(in / SLM_QK_K) * sizeof(slm_block_q8_k); break;
    default: return 0;
    }
    return (b + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
}

size_t slm_cpu_matmul_scratch_bytes(slm_type type, int64_t in, int64_t rows)
{
    if (in <= 0 || rows <= 0 || !slm_cpu_matmul_supported(type))
        return 0;
    return act_row_bytes(type, in) * (size_t)rows * SLM_CPU_MAX_ACT_TERMS;
}

static const slm_dot_kernels *level_table(slm_simd simd)
{
    switch (simd) {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
    case SLM_SIMD_AVX2: return &slm_dot_avx2;
    case SLM_SIMD_AVX512: return &slm_dot_avx512;
    case SLM_SIMD_AVX512_VNNI: return &slm_dot_avx512vnni;
#endif
#if defined(__aarch64__)
    case SLM_SIMD_NEON: return &slm_dot_neon;
#endif
    default: return &slm_dot_scalar;
    }
}

/* Where a level's table has no kernel of a type: the AVX-512 levels take
 * AVX2's (every AVX-512 CPU has AVX2), everything else the scalar one. */
static const slm_dot_kernels *fallback_table(slm_simd simd)
{
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
    if (simd == SLM_SIMD_AVX512 || simd == SLM_SIMD_AVX512_VNNI)
        return &slm_dot_avx2;
#endif
    (void)simd;
    return &slm_dot_scalar;
}

/* The kernel a level runs for type t (its own, else its fallback's, else
 * the scalar one) and the activation rows per call it takes (*rows). */
static slm_dot_fn dot_for(slm_simd simd, int t, int *rows)
{
    const slm_dot_kernels *k = level_table(simd);
    if (!k->dot[t])
        k = fallback_table(simd);
    if (!k->dot[t] || k->dot[t] == slm_dot_scalar.dot[t]) {
        *rows = SLM_DOT_ROWS_DEFAULT;
        return slm_dot_scalar.dot[t];
    }
    *rows = k->max_rows[t] ? k->max_rows[t] : SLM_DOT_ROWS_DEFAULT;
    return k->dot[t];
}

/* The level's activation quantizers (the scalar ones where it has none). */
static void quantizers_for(slm_simd simd, slm_quant_q8_0_fn *q0, slm_quant_q8_k_fn *qk)
{
    const slm_dot_kernels *k = level_table(simd);
    *q0 = k->quant_q8_0 ? k->quant_q8_0 : slm_dot_scalar.quant_q8_0;
    *qk = k->quant_q8_k ? k->quant_q8_k : slm_dot_scalar.quant_q8_k;
}

slm_dot_kernels slm_dot_resolve(slm_simd level)
{
    slm_dot_kernels k = {0};
    for (int t = 0; t < SLM_TYPE_COUNT; t++) {
        int rows;
        k.dot[t] = dot_for(level, t, &rows);
        k.max_rows[t] = (unsigned char)rows;
    }
    quantizers_for(level, &k.quant_q8_0, &k.quant_q8_k);
    return k;
}

typedef struct job {
    slm_act_kind act;
    int group;        /* activation rows per dot call */
    slm_dot_fn dot;
    slm_quant_q8_0_fn quant_q8_0;
    slm_quant_q8_k_fn quant_q8_k;
    const uint8_t *w; /* (out, in) in `type` */
    size_t w_row_bytes;
    int64_t out, in, rows;
    const float *x;   /* (rows, in) */
    const float *add; /* (rows, out) or NULL */
    float *y;         /* (rows, out) */
    uint8_t *act_buf; /* (rows, act_stride bytes) quantized x */
    size_t act_stride;
    int terms;        /* 1, or 2: act_buf + act_term holds the residual term */
    size_t act_term;  /* bytes from the first term's rows to the second's */
    const slm_cpu_packed *packed; /* W packed (slm_cpu_matmul_packed), else NULL */
    atomic_llong next;            /* the next unclaimed unit of pool job 2 */
} job;

/* Units (weight tiles or 16-row groups) per claim: about eight claims per
 * thread, so a thread slowed by its core's other work (a shared VM, a busy
 * neighbour) takes fewer while the rest take more, instead of everyone
 * waiting for it at the end of the op. */
static int64_t claim_size(int64_t units, int nth)
{
    int64_t c = units / ((int64_t)nth * 8);
    return c < 1 ? 1 : c;
}

/* Claims the next `chunk` of `units` units into [*lo, *hi); false when none
 * are left. Which thread computes a unit never changes a result. */
static bool claim(job *j, int64_t units, int64_t chunk, int64_t *lo, int64_t *hi)
{
    int64_t at = atomic_fetch_add_explicit(&j->next, chunk, memory_order_relaxed);
    if (at >= units)
        return false;
    *lo = at;
    *hi = at + chunk < units ? at + chunk : units;
    return true;
}

/* The residual term of one row, block by block: q₁ is x's blocks (already
 * quantized), q₂ the blocks of x − q₁. */
static void quantize_residual(const job *j, const float *x, const uint8_t *q1, uint8_t *q2)
{
    float rest[SLM_QK_K];
    if (j->act == SLM_ACT_Q8_K) {
        const slm_block_q8_k *a = (const slm_block_q8_k *)q1;
        for (int64_t b = 0; b < j->in / SLM_QK_K; b++) {
            for (int e = 0; e < SLM_QK_K; e++)
                rest[e] = x[b * SLM_QK_K + e] - a[b].d * (float)a[b].qs[e];
            j->quant_q8_k(rest, (slm_block_q8_k *)q2 + b, SLM_QK_K);
        }
        return;
    }
    const slm_act_q8_0 *a = (const slm_act_q8_0 *)q1;
    for (int64_t b = 0; b < j->in / SLM_QK; b++) {
        for (int e = 0; e < SLM_QK; e++)
            rest[e] = x[b * SLM_QK + e] - a[b].d * (float)a[b].qs[e];
        j->quant_q8_0(rest, (slm_act_q8_0 *)q2 + b, SLM_QK);
    }
}

/* Pool job 1: thread ith quantizes rows ith, ith + nth, ... */
static void quantize_rows(void *ctx, int ith, int nth)
{
    const job *j = ctx;
    for (int64_t r = ith; r < j->rows; r += nth) {
        const float *xr = j->x + r * j->in;
        uint8_t *dst = j->act_buf + (size_t)r * j->act_stride;
        if (j->act == SLM_ACT_Q8_K)
            j->quant_q8_k(xr, (slm_block_q8_k *)dst, j->in);
        else
            j->quant_q8_0(xr, (slm_act_q8_0 *)dst, j->in);
        if (j->terms == 2)
            quantize_residual(j, xr, dst, dst + j->act_term);
    }
}

/* y[r][o] for rows r0..r0+nr-1 and weight rows o0..o1-1. */
static void tile(const job *j, int64_t o0, int64_t o1, int64_t r0, int nr)
{
    const void *xa;
    size_t xs;
    if (j->act == SLM_ACT_F32) {
        xa = j->x + r0 * j->in;
        xs = (size_t)j->in * sizeof(float);
    } else {
        xa = j->act_buf + (size_t)r0 * j->act_stride;
        xs = j->act_stride;
    }
    bool two = j->terms == 2 && j->act != SLM_ACT_F32;
    for (int64_t o = o0; o < o1; o++) {
        float v[SLM_DOT_MAX_ROWS], v2[SLM_DOT_MAX_ROWS];
        const uint8_t *wr = j->w + (size_t)o * j->w_row_bytes;
        j->dot(j->in, wr, xa, xs, nr, v);
        if (two) { /* fixed order: first term, then the residual's */
            j->dot(j->in, wr, (const uint8_t *)xa + j->act_term, xs, nr, v2);
            for (int r = 0; r < nr; r++)
                v[r] += v2[r];
        }
        for (int r = 0; r < nr; r++) {
            size_t at = (size_t)(r0 + r) * (size_t)j->out + (size_t)o;
            /* NOTE: add may alias y; each element is read before it is written. */
            j->y[at] = j->add ? v[r] + j->add[at] : v[r];
        }
    }
}

/* Pool job 2: threads claim runs of W_TILE-row tiles. */
static void multiply(void *ctx, int ith, int nth)
{
    (void)ith;
    job *j = ctx;
    int64_t tiles = (j->out + W_TILE - 1) / W_TILE, lo, hi;
    int64_t chunk = claim_size(tiles, nth);
    while (claim(j, tiles, chunk, &lo, &hi))
        for (int64_t o0 = lo * W_TILE; o0 < hi * W_TILE && o0 < j->out; o0 += W_TILE) {
            int64_t o1 = o0 + W_TILE < j->out ? o0 + W_TILE : j->out;
            for (int64_t r0 = 0; r0 < j->rows; r0 += j->group) {
                int64_t left = j->rows - r0;
                tile(j, o0, o1, r0, left < j->group ? (int)left : j->group);
            }
        }
}

/* y rows r0..r0+nc-1 of the 16 outputs from o0 (n of them), from a packed
 * kernel's v[c·16 + i]. */
static void store_group(const job *j, const float *v, int64_t o0, int n, int64_t r0, int nc)
{
    for (int c = 0; c < nc; c++) {
        size_t at = (size_t)(r0 + c) * (size_t)j->out + (size_t)o0;
        const float *vc = v + c * SLM_PACK_ROWS;
        for (int i = 0; i < n; i++) /* add may alias y, as in tile() */
            j->y[at + i] = j->add ? vc[i] + j->add[at + i] : vc[i];
    }
}

/* Pool job 2 with packed W: threads claim runs of 16-row groups; each group
 * meets every activation row in calls of the kernel's column count while it
 * sits in L1/L2. */
static void multiply_packed(void *ctx, int ith, int nth)
{
    (void)ith;
    job *j = ctx;
    const slm_cpu_packed *p = j->packed;
    int64_t groups = (j->out + SLM_PACK_ROWS - 1) / SLM_PACK_ROWS, lo, hi;
    int64_t chunk = claim_size(groups, nth);
    float v[SLM_PACK_MAX_COLS * SLM_PACK_ROWS], v2[SLM_PACK_MAX_COLS * SLM_PACK_ROWS];
    while (claim(j, groups, chunk, &lo, &hi))
        for (int64_t g = lo; g < hi; g++) {
            const uint8_t *wg = p->data + (size_t)g * p->group_bytes;
            int64_t o0 = g * SLM_PACK_ROWS;
            int n = j->out - o0 < SLM_PACK_ROWS ? (int)(j->out - o0) : SLM_PACK_ROWS;
            for (int64_t r0 = 0; r0 < j->rows; r0 += p->kernel_cols) {
                int nc = j->rows - r0 < p->kernel_cols ? (int)(j->rows - r0) : p->kernel_cols;
                const uint8_t *xa = j->act_buf + (size_t)r0 * j->act_stride;
                p->kernel(j->in, wg, xa, j->act_stride, nc, v);
                if (j->terms == 2) { /* fixed order: first term, then the residual's */
                    p->kernel(j->in, wg, xa + j->act_term, j->act_stride, nc, v2);
                    for (int e = 0; e < nc * SLM_PACK_ROWS; e++)
                        v[e] += v2[e];
                }
                store_group(j, v, o0, n, r0, nc);
            }
        }
}

/* The job both entry points run: shapes, operands, the activation layout in
 * scratch and the level's quantizers; the weight side is the caller's. */
static void job_init(job *j, slm_simd simd, slm_type type, int64_t out, int64_t in,
                     const float *x, int64_t rows, const float *add, float *y, void *scratch,
                     int act_terms)
{
    *j = (job){
        .act = slm_act_kind_of(type),
        .out = out,
        .in = in,
        .rows = rows,
        .x = x,
        .add = add,
        .y = y,
        .act_buf = scratch,
        .act_stride = act_row_bytes(type, in),
        .terms = act_terms,
        .act_term = act_row_bytes(type, in) * (size_t)rows,
    };
    quantizers_for(simd, &j->quant_q8_0, &j->quant_q8_k);
    atomic_init(&j->next, 0);
}

/* Quantizes the activations (unless the weights are float), then runs
 * `multiply_fn` over the pool (nothing when the scratch is unusable). */
static void job_run(slm_pool *pool, job *j, slm_pool_fn multiply_fn)
{
    if (j->act != SLM_ACT_F32) {
        if (j->act_buf == NULL || (uintptr_t)j->act_buf % SCRATCH_ALIGN != 0) {
            slm_assert_fail(__FILE__, __LINE__, "matmul: scratch missing or not 64-byte aligned");
            return;
        }
        slm_pool_run(j->rows > 1 ? pool : NULL, quantize_rows, j);
    }
    slm_pool_run(pool, multiply_fn, j);
}

void slm_cpu_matmul_packed(slm_pool *pool, int act_terms, const slm_cpu_packed *w, const float *x,
                           int64_t rows, const float *add, float *y, void *scratch)
{
    if (w == NULL || w->kernel == NULL || rows < 0 || act_terms < 1 ||
        act_terms > SLM_CPU_MAX_ACT_TERMS) {
        slm_assert_fail(__FILE__, __LINE__, "matmul: bad packed weight, rows or act_terms");
        return;
    }
    if (rows == 0)
        return;
    job j;
    job_init(&j, w->simd, w->type, w->rows, w->cols, x, rows, add, y, scratch, act_terms);
    j.packed = w;
    job_run(pool, &j, multiply_packed);
}

void slm_cpu_matmul(slm_pool *pool, slm_simd simd, int act_terms, slm_type type, const void *w,
                    int64_t out, int64_t in, const float *x, int64_t rows, const float *add,
                    float *y, void *scratch)
{
    /* NOTE: a host's abort hook may return, so a broken precondition also
     * returns here instead of running on. */
    const slm_type_info *ti = slm_type_get((int)type);
    if (!slm_cpu_matmul_supported(type) || ti == NULL || (unsigned)simd >= SLM_SIMD_COUNT) {
        slm_assert_fail(__FILE__, __LINE__, "matmul: unsupported weight type or SIMD level");
        return;
    }
    if (out < 0 || rows < 0 || in <= 0 || in % ti->block_elems != 0) {
        slm_assert_fail(__FILE__, __LINE__, "matmul: in must be a positive multiple of the block");
        return;
    }
    if (act_terms < 1 || act_terms > SLM_CPU_MAX_ACT_TERMS) {
        slm_assert_fail(__FILE__, __LINE__, "matmul: act_terms must be 1 or 2");
        return;
    }
    if (out == 0 || rows == 0)
        return;
    job j;
    job_init(&j, simd, type, out, in, x, rows, add, y, scratch, act_terms);
    j.w = w;
    j.w_row_bytes = slm_type_row_bytes((int)type, in);
    j.dot = dot_for(simd, (int)type, &j.group);
    job_run(pool, &j, multiply);
}
