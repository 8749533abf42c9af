/*
 * cpu_vec.h — private to the CPU backend: the f32 vector kernels of
 * attention and of the gated activations, one table per SIMD level (the
 * quantized matmul's kernels are cpu_dot.h's).
 *
 * Attention (attention.c) works on tiles: up to SLM_CPU_ATTN_ROWS query
 * rows (several tokens × the query heads of one KV head) against one KV
 * block at a time, with the block's K rows decoded once into a transposed
 * buffer kT[d][j] and its V rows into v[j][d]. The two kernels below are
 * the tile's arithmetic: scores broadcast one query element against a
 * vector of positions (no horizontal sums), accum broadcasts one weight
 * against a vector of dimensions. Each row is reduced with its own
 * accumulators in an order fixed by the shapes alone (d ascending for a
 * score, j ascending for an output element), never by how many rows share
 * a call — so attention's results do not depend on the other tokens of a
 * step.
 *
 * The gated activations (ops.c's swiglu and geglu) take one row at a time:
 * y = act(g)·u. The SIMD levels compute exp with their own polynomial
 * (relative error about 2 ulp), so they differ from the scalar level's
 * libm by rounding only.
 */
#ifndef SLM_CPU_VEC_H
#define SLM_CPU_VEC_H

#include <stdint.h>

#include "cpu_simd.h"

typedef struct slm_vec_kernels {
    /* s[i·bsp + j] = Σ_{d<hd} q[i·hdp + d] · kT[d·bsp + j] for i < nq,
     * j < bsp (bsp and hdp multiples of 8) */
    void (*scores)(const float *q, int nq, int hd, int hdp, const float *kT, int bsp, float *s);
    /* acc[i·hdp + d] += Σ_{j<nk} p[i·bsp + j] · v[j·hdp + d] for i < nq,
     * d < hdp, j ascending */
    void (*accum)(float *acc, int nq, int hdp, const float *p, int bsp, int nk, const float *v);
    /* dst[0..n) = the f16 values at src (any alignment); exact */
    void (*f16_row)(const uint8_t *src, float *dst, int n);
    /* y[i] = silu(g[i])·u[i] and y[i] = gelu_tanh(g[i])·u[i], i < n */
    void (*swiglu_row)(const float *g, const float *u, float *y, int64_t n);
    void (*geglu_row)(const float *g, const float *u, float *y, int64_t n);
} slm_vec_kernels;

extern const slm_vec_kernels slm_vec_scalar;
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
extern const slm_vec_kernels slm_vec_avx2;
#endif

/* The table a SIMD level runs: AVX2's for the AVX2 and AVX-512 levels,
 * the portable one for the rest. */
const slm_vec_kernels *slm_vec_for(slm_simd level);

#endif
