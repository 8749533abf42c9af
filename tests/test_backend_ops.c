/*
 * test_backend_ops.c — the op-parity suite: every op of every backend in
 * this build (runtime/backend_registry.h) against the one scalar reference
 * (op_reference.c), through the backend.h table only.
 *
 * Each backend runs as a list of configurations — its knobs from
 * slm_backend_params — and each configuration names the op groups it runs:
 *   cpu     every SIMD level this machine has (cpu_simd), all ops with one
 *           activation term, and matmul again with two (cpu_act_terms 2);
 *   vulkan  the device that opens (lavapipe in CI): the ops once, matmul in
 *           both families (vk_matmul 1 "direct", 2 "gpu") with the
 *           matrix-vector / tiled crossover pinned (vk_matvec_rows) so row
 *           counts fall on both sides of it, shared-memory reductions
 *           (vk_subgroup −1), split-K attention (vk_split_min 1), chunked
 *           submission (vk_chunk 2) and weights split over several buffers
 *           (a 64 KiB vk_max_buffer);
 *   cuda    the ops and long chains once with the defaults, split-K
 *           attention on every context (cuda_split_min 1), and matmul on
 *           each side of its crossover: every row count through the int8
 *           matrix-vector kernel (activations coded as the CPU codes them,
 *           so the reference models them exactly) and every row count
 *           through cuBLAS on f16 copies (its own, wider tolerance);
 *   other   every op with its defaults.
 *
 * Every case draws fresh random inputs (the seed is printed; SLM_TEST_SEED
 * replays it) at ragged sizes, poisons every output with NaN before the run
 * (an element the op never writes fails), and compares with a tolerance
 * stated and justified beside it. Quantized activations are modelled
 * exactly (ref_act_values), so the CPU's q8 error is not hidden in a loose
 * tolerance; the GPU backends multiply f32 activations.
 *
 * Also: supports() answers and refusals naming what is refused, the error
 * contract of a step (a bad step fails begin_step and wait; an op on a
 * too-small buffer fails the step naming the op; a good step afterwards
 * works; an op outside a step is refused), the KV plan's checks, kv_copy,
 * the CPU's knobs and F16 KV decoder, the GPU device choice, and a check
 * that the comparison itself fails on a wrong result.
 *
 * Usage: test_backend_ops [--cpu | --gpu | --all] [--only NAME]. --cpu (the
 * default) is the ctest test test_backend_ops; --gpu (test_gpu_backend_ops)
 * runs every backend but the CPU and exits 77 after "skipped: no device"
 * when none opens; --only keeps the backend of that name
 * (test_gpu_cuda_backend_ops: --gpu --only cuda).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_registry.h"
#include "cpu_backend.h"
#include "cpu_simd.h"
#include "fp16.h"
#include "op_reference.h"
#include "quant.h"

/* ------------------------------------------------------------------------ */
/* configurations                                                            */

enum {
    G_SUPPORT = 1 << 0,     /* supports() answers and refusals */
    G_EMBED = 1 << 1,
    G_RMSNORM = 1 << 2,
    G_MATMUL = 1 << 3,      /* all 15 weight types, rows on both sides of the crossover */
    G_MATMUL_FEW = 1 << 4,  /* five representative types */
    G_ROPE = 1 << 5,
    G_ATTENTION = 1 << 6,   /* every shape × every KV type supports() allows */
    G_ATTN_FEW = 1 << 7,    /* two shapes */
    G_SMALL = 1 << 8,       /* swiglu, geglu, gelu, softcap, layernorm, bias, add, scale,
                             * get_rows, logits */
    G_ERRORS = 1 << 9,      /* the step's error contract, the KV plan's checks */
    G_SPLIT = 1 << 10,      /* weights over several device buffers */
    G_CHAIN = 1 << 11,      /* long chains of dependent ops in one step */
};
#define G_EVERY                                                                                    \
    (G_SUPPORT | G_EMBED | G_RMSNORM | G_MATMUL | G_ROPE | G_ATTENTION | G_SMALL | G_ERRORS)

typedef struct cfg {
    char label[96];   /* "cpu simd avx2 q8x2", for messages */
    int reg;          /* index in the registry */
    const slm_backend_ops *ops;
    slm_backend_params p;
    unsigned groups;  /* G_* this configuration runs */
    ref_act act;      /* how its matmul sees activations */
    double mm_rtol;   /* matmul tolerance per Σ|w·x| (0: the f32 one, 4e-6) */
    slm_backend *be;  /* NULL when it did not open */
    char why[256];    /* why it did not open */
} cfg;

#define MAX_CFGS 40
static cfg g_cfgs[MAX_CFGS];
static int g_ncfg;

/* The Vulkan matrix-vector kernel's row limit in the configurations that pin
 * it: the backend runs it for rows ≤ this (backend.h words it "rows below
 * which"; either way row 1 and rows ≥ 5 take different kernels, and the
 * cases run rows 1, 4, 5 and more). */
#define VK_MATVEC_ROWS 4

static bool is_cpu(const cfg *c) { return !strcmp(c->ops->name, "cpu"); }
static bool is_vulkan(const cfg *c) { return !strcmp(c->ops->name, "vulkan"); }
static bool is_cuda(const cfg *c) { return !strcmp(c->ops->name, "cuda"); }

static cfg *add_cfg(int reg, const char *label, unsigned groups, ref_act act)
{
    if (g_ncfg == MAX_CFGS) {
        fprintf(stderr, "too many configurations\n");
        exit(1);
    }
    cfg *c = &g_cfgs[g_ncfg++];
    memset(c, 0, sizeof *c);
    c->reg = reg;
    c->ops = slm_backend_at(reg);
    snprintf(c->label, sizeof c->label, "%s %s", c->ops->name, label);
    slm_backend_params_default(&c->p);
    c->groups = groups;
    c->act = act;
    return c;
}

/* Every SIMD level at one activation term (all ops), and matmul again with
 * two terms, at a random thread count each. */
static void cpu_configs(int reg)
{
    for (int l = 0; l < SLM_SIMD_COUNT; l++) {
        if (!slm_simd_available((slm_simd)l))
            continue;
        const char *name = slm_simd_name((slm_simd)l);
        char label[64];
        snprintf(label, sizeof label, "simd %s", name);
        cfg *c = add_cfg(reg, label, G_EVERY, REF_ACT_Q8);
        c->p.cpu_simd = name;
        c->p.cpu_act_terms = 1;
        c->p.n_threads = tu_int(1, 3);
        snprintf(label, sizeof label, "simd %s q8x2", name);
        c = add_cfg(reg, label, G_MATMUL, REF_ACT_Q8X2);
        c->p.cpu_simd = name;
        c->p.cpu_act_terms = 2;
        c->p.n_threads = tu_int(1, 3);
    }
}

/* The ops once with the device's own choices; then each knob with the ops
 * it changes. */
static void vulkan_configs(int reg)
{
    add_cfg(reg, "default", (G_EVERY & ~G_MATMUL) | G_MATMUL_FEW, REF_ACT_F32);
    cfg *c = add_cfg(reg, "matmul direct", G_MATMUL, REF_ACT_F32);
    c->p.vk_matmul = 1;
    c->p.vk_matvec_rows = VK_MATVEC_ROWS;
    c = add_cfg(reg, "matmul gpu", G_MATMUL, REF_ACT_F32);
    c->p.vk_matmul = 2;
    c->p.vk_matvec_rows = VK_MATVEC_ROWS;
    c = add_cfg(reg, "no subgroups", G_MATMUL_FEW | G_RMSNORM | G_ATTN_FEW, REF_ACT_F32);
    c->p.vk_subgroup = -1;
    c->p.vk_matmul = 2;
    c->p.vk_matvec_rows = VK_MATVEC_ROWS;
    c = add_cfg(reg, "split-K attention", G_ATTN_FEW, REF_ACT_F32);
    c->p.vk_split_min = 1;
    c = add_cfg(reg, "chunked steps", G_CHAIN | G_ERRORS | G_ATTN_FEW, REF_ACT_F32);
    c->p.vk_chunk = 2;
    c = add_cfg(reg, "split weights direct", G_SPLIT, REF_ACT_F32);
    c->p.vk_max_buffer = 65536;
    c->p.vk_matmul = 1;
    c = add_cfg(reg, "split weights gpu", G_SPLIT, REF_ACT_F32);
    c->p.vk_max_buffer = 65536;
    c->p.vk_matmul = 2;
}

/* The ops and chains with the defaults; split-K attention on every
 * context; matmul once through the int8 matrix-vector kernel for every row
 * count and once through cuBLAS for every row count. */
static void cuda_configs(int reg)
{
    add_cfg(reg, "default", (G_EVERY & ~G_MATMUL) | G_CHAIN, REF_ACT_F32);
    cfg *c = add_cfg(reg, "split-K attention", G_ATTENTION, REF_ACT_F32);
    c->p.cuda_split_min = 1;
    c = add_cfg(reg, "matmul int8", G_MATMUL, REF_ACT_Q8);
    c->p.cuda_matvec_rows = 1 << 20;
    c = add_cfg(reg, "matmul cublas f16", G_MATMUL, REF_ACT_F32);
    c->p.cuda_matvec_rows = -1;
    /* weights and activations each rounded to f16 once (≤ 2⁻¹¹ relative
     * each, so ≤ 2·2⁻¹¹ + 2⁻²² per product), summed in f32: 1.1e-3 of
     * Σ|w·x| bounds it. */
    c->mm_rtol = 1.1e-3;
}

/* Opens every configuration of backend reg; a GPU backend whose first
 * configuration does not open has no device here, and its others are
 * dropped. Returns how many opened. */
static int open_backend(int reg, int first)
{
    int opened = 0;
    for (int i = first; i < g_ncfg; i++) {
        cfg *c = &g_cfgs[i];
        if (c->ops->open(&c->p, &c->be) != SLM_OK) {
            c->be = NULL;
            snprintf(c->why, sizeof c->why, "%s", slm_last_error());
            if (i == first && strcmp(c->ops->name, "cpu") != 0) {
                fprintf(stderr, "skipped: no device (%s: %s)\n", c->ops->name, c->why);
                g_ncfg = first; /* drop this backend's configurations */
                return 0;
            }
            continue;
        }
        opened++;
        fprintf(stderr, "config %-28s %s\n", c->label, c->ops->describe(c->be));
    }
    (void)reg;
    return opened;
}

/* Builds and opens the configurations of the backends `mode` selects
 * ("cpu", "gpu" or "all"). Returns how many opened. */
static int setup_configs(const char *mode, const char *only)
{
    int opened = 0;
    for (int reg = 0; reg < slm_backend_count(); reg++) {
        const slm_backend_ops *ops = slm_backend_at(reg);
        bool cpu = !strcmp(ops->name, "cpu");
        if ((cpu && !strcmp(mode, "gpu")) || (!cpu && !strcmp(mode, "cpu")) ||
            (only && strcmp(ops->name, only)))
            continue;
        int first = g_ncfg;
        if (cpu)
            cpu_configs(reg);
        else if (!strcmp(ops->name, "vulkan"))
            vulkan_configs(reg);
        else if (!strcmp(ops->name, "cuda"))
            cuda_configs(reg);
        else /* CUDA and later backends: every op with their own defaults */
            add_cfg(reg, "default", G_EVERY, REF_ACT_F32);
        opened += open_backend(reg, first);
    }
    return opened;
}

static void close_configs(void)
{
    for (int i = 0; i < g_ncfg; i++)
        if (g_cfgs[i].be)
            g_cfgs[i].ops->close(g_cfgs[i].be);
}

/* Runs fn on every open configuration that runs any of `groups`. */
static void for_each(unsigned groups, void (*fn)(const cfg *c))
{
    for (int i = 0; i < g_ncfg; i++)
        if (g_cfgs[i].be && (g_cfgs[i].groups & groups))
            fn(&g_cfgs[i]);
}

/* ------------------------------------------------------------------------ */
/* buffers, steps, comparisons                                               */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static const slm_ref NOREF = {NULL, 0};
static slm_ref at(slm_buf *b) { return (slm_ref){b, 0}; }
static slm_ref at_float(slm_buf *b, size_t i) { return (slm_ref){b, i * sizeof(float)}; }

/* A device buffer of n floats: init when given, NaN otherwise. */
static slm_buf *dev_floats(const cfg *c, const float *init, size_t n)
{
    slm_buf *b = NULL;
    if (c->ops->buf_alloc(c->be, (n ? n : 1) * sizeof(float), &b) != SLM_OK)
        fail_msg("%s: buf_alloc of %zu floats: %s", c->label, n, slm_last_error());
    float *tmp = xmalloc(n * sizeof(float));
    if (init)
        memcpy(tmp, init, n * sizeof(float));
    else
        tu_poison(tmp, n);
    assert_int_equal(c->ops->upload(c->be, at(b), tmp, n * sizeof(float)), SLM_OK);
    free(tmp);
    return b;
}

static float *dev_read(const cfg *c, slm_buf *b, size_t n)
{
    float *x = xmalloc(n * sizeof(float));
    if (c->ops->download(c->be, x, at(b), n * sizeof(float)) != SLM_OK)
        fail_msg("%s: download: %s", c->label, slm_last_error());
    return x;
}

static double *dalloc(size_t n) { return xmalloc(n * sizeof(double)); }

/* tol[i] = atol + rtol·|ref[i]| */
static double *tol_of(const double *ref, size_t n, double atol, double rtol)
{
    double *t = dalloc(n);
    for (size_t i = 0; i < n; i++)
        t[i] = atol + rtol * fabs(ref[i]);
    return t;
}

/* The comparison every case ends in; names the configuration. */
static void expect_close(const cfg *c, const char *what, const float *got, const double *ref,
                         const double *tol, size_t n)
{
    char full[512];
    snprintf(full, sizeof full, "%s: %s", c->label, what);
    tu_expect_close_d(full, got, ref, tol, n);
}

/* A step of n tokens, one sequence at positions 0..n−1 (ids may be NULL),
 * for ops that need no KV pool. */
#define MAXT 512
typedef struct plain_step {
    int32_t ids[MAXT], pos[MAXT], seq[MAXT], slot[MAXT];
    int32_t bt_start[1], bt_len[1], bt[1];
    slm_step s;
} plain_step;

static void plain_step_init(plain_step *d, int n, const int32_t *ids)
{
    assert_true(n <= MAXT);
    for (int t = 0; t < n; t++) {
        d->ids[t] = ids ? ids[t] : 0;
        d->pos[t] = t;
        d->seq[t] = 0;
        d->slot[t] = t;
    }
    d->bt_start[0] = 0;
    d->bt_len[0] = 1;
    d->bt[0] = 0;
    d->s = (slm_step){.n_tokens = n, .token_ids = d->ids, .positions = d->pos,
                      .seq_of_token = d->seq, .kv_slot = d->slot, .n_seqs = 1,
                      .block_table_start = d->bt_start, .block_table_len = d->bt_len,
                      .block_tables = d->bt};
}

/* begin_step that must succeed (on failure the step is still ended, as the
 * contract asks, before the test fails). */
static void begin_ok(const cfg *c, const slm_step *s, const char *what)
{
    if (c->ops->begin_step(c->be, s) != SLM_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", slm_last_error());
        c->ops->submit(c->be);
        c->ops->wait(c->be);
        fail_msg("%s: %s: begin_step: %s", c->label, what, msg);
    }
}

/* submit, then wait: both must succeed. */
static void finish_ok(const cfg *c, const char *what)
{
    slm_status st = c->ops->submit(c->be);
    slm_status wst = c->ops->wait(c->be);
    if (st != SLM_OK || wst != SLM_OK)
        fail_msg("%s: %s: %s failed: %s", c->label, what, st ? "submit" : "wait", slm_last_error());
}

/* submit, then wait, expecting the step to fail with a message holding
 * `needle`. */
static void finish_fails(const cfg *c, const char *what, const char *needle)
{
    slm_status st = c->ops->submit(c->be);
    slm_status wst = c->ops->wait(c->be);
    if (st == SLM_OK && wst == SLM_OK)
        fail_msg("%s: %s: the step succeeded", c->label, what);
    if (!strstr(slm_last_error(), needle))
        fail_msg("%s: %s: expected an error naming '%s', got '%s'", c->label, what, needle,
                 slm_last_error());
}

/* ------------------------------------------------------------------------ */
/* weights and capabilities                                                  */

static const slm_type all_types[] = {
    SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q8_0,  SLM_TYPE_Q4_0,
    SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q2_K,  SLM_TYPE_Q3_K,
    SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_NL, SLM_TYPE_IQ4_XS,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static const slm_type few_types[] = {SLM_TYPE_F32, SLM_TYPE_Q4_1, SLM_TYPE_Q8_0, SLM_TYPE_Q4_K,
                                     SLM_TYPE_Q6_K};

/* Random weights of `type`: rows of different scales, each with one large
 * value, so block scales vary; raw GGUF rows in *raw, their decoded values
 * in *deq (rows, cols). */
static void make_weight(slm_type type, int64_t rows, int64_t cols, void **raw, float **deq)
{
    size_t rb = slm_type_row_bytes((int)type, cols);
    assert_true(rb > 0);
    *raw = xmalloc(rb * (size_t)rows);
    *deq = xmalloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        float *row = *deq + r * cols;
        tu_fill_normal(row, (size_t)cols, tu_uniform(0.05f, 2.0f));
        row[tu_int(0, (int)cols - 1)] *= 4.0f;
        uint8_t *dst = (uint8_t *)*raw + (size_t)r * rb;
        assert_true(slm_quantize_row_ref((int)type, row, dst, cols));
        assert_true(slm_dequantize_row((int)type, dst, row, cols));
    }
}

/* A ragged width for type: any for 1-element types, else 1..9 blocks of 32
 * or 1..2 super-blocks of 256. */
static int64_t ragged_cols(slm_type type)
{
    int qk = slm_type_get((int)type)->block_elems;
    if (qk == 1)
        return tu_int(1, 300);
    return (int64_t)qk * tu_int(1, qk == 32 ? 9 : 2);
}

static slm_weight *load_ok(const cfg *c, slm_type type, int64_t rows, int64_t cols,
                           const void *raw)
{
    slm_weight *w = NULL;
    if (c->ops->load_weight(c->be, type, rows, cols, raw, &w) != SLM_OK)
        fail_msg("%s: load_weight %s %lld x %lld: %s", c->label, slm_type_name((int)type),
                 (long long)rows, (long long)cols, slm_last_error());
    return w;
}

/* What the backends we know must support (a backend that suddenly refuses
 * F16 KV or a weight type is a regression, not a skip). */
static bool must_support(const cfg *c, const slm_support_query *q)
{
    if (!is_cpu(c) && !is_vulkan(c) && !is_cuda(c))
        return false; /* a new backend: its refusals are printed, not failed */
    switch (q->op) {
    case SLM_OP_KV_STORE:
    case SLM_OP_ATTENTION:
    case SLM_OP_KV_COPY:
        /* Q8_0 KV: the CPU and CUDA; Vulkan refuses it (checked below) */
        return q->type == SLM_TYPE_F32 || q->type == SLM_TYPE_F16 ||
               (q->type == SLM_TYPE_Q8_0 && !is_vulkan(c));
    default: return true;
    }
}

/* Asks supports(); a refusal must name the type (or head size) and is a
 * failure for what must_support lists, a printed skip otherwise. */
static bool supported(const cfg *c, slm_op op, slm_type type, int head_dim)
{
    slm_support_query q = {.op = op, .type = type, .head_dim = head_dim};
    if (c->ops->supports(c->be, &q) == SLM_OK)
        return true;
    const char *msg = slm_last_error();
    if (!strstr(msg, slm_type_name((int)type)))
        fail_msg("%s: supports refused op %d %s without naming the type: '%s'", c->label, (int)op,
                 slm_type_name((int)type), msg);
    if (must_support(c, &q))
        fail_msg("%s: must support op %d with %s (head size %d): '%s'", c->label, (int)op,
                 slm_type_name((int)type), head_dim, msg);
    fprintf(stderr, "%s: not offered, skipped: op %d %s head size %d (%s)\n", c->label, (int)op,
            slm_type_name((int)type), head_dim, msg);
    return false;
}

/* ------------------------------------------------------------------------ */
/* supports() and refusals                                                   */

static void check_refusal(const cfg *c, slm_op op, slm_type type, int head_dim)
{
    slm_support_query q = {.op = op, .type = type, .head_dim = head_dim};
    if (c->ops->supports(c->be, &q) != SLM_STATUS_UNSUPPORTED)
        fail_msg("%s: supports(op %d, %s) did not refuse", c->label, (int)op,
                 slm_type_name((int)type));
    if (!strstr(slm_last_error(), slm_type_name((int)type)))
        fail_msg("%s: refusal of %s does not name it: '%s'", c->label, slm_type_name((int)type),
                 slm_last_error());
}

/* kv_create with desc must fail with st, naming `name` when given. */
static void check_kv_create_fails(const cfg *c, slm_kv_desc d, slm_status st, const char *name)
{
    slm_kv *kv = (slm_kv *)&kv; /* any non-NULL value: must come back NULL */
    assert_int_equal(c->ops->kv_create(c->be, &d, &kv), st);
    assert_null(kv);
    if (name && !strstr(slm_last_error(), name))
        fail_msg("%s: kv_create refusal does not name %s: '%s'", c->label, name, slm_last_error());
}

static void supports_one(const cfg *c)
{
    assert_int_equal(slm_backend_ops_check(c->ops), SLM_OK);
    assert_true(c->ops->describe(c->be)[0] != '\0');
    for (size_t i = 0; i < N_TYPES; i++) {
        supported(c, SLM_OP_MATMUL, all_types[i], 0);
        supported(c, SLM_OP_EMBED, all_types[i], 0);
    }
    /* activation-only and unsupported file types: refused, named, also by
     * load_weight */
    const slm_type never[] = {SLM_TYPE_Q8_1, SLM_TYPE_Q8_K, (slm_type)16 /* iq2_xxs */};
    uint8_t junk[512] = {0};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        check_refusal(c, SLM_OP_MATMUL, never[i], 0);
        slm_weight *w = (slm_weight *)junk;
        assert_int_equal(c->ops->load_weight(c->be, never[i], 1, 256, junk, &w),
                         SLM_STATUS_UNSUPPORTED);
        assert_null(w);
        assert_non_null(strstr(slm_last_error(), slm_type_name((int)never[i])));
    }
    slm_weight *w = NULL;
    assert_int_equal(c->ops->load_weight(c->be, SLM_TYPE_Q4_0, 1, 33, junk, &w),
                     SLM_STATUS_INVALID_ARGUMENT); /* not whole blocks */
    assert_null(w);
    /* KV storage: what supports() refuses, kv_create refuses too */
    slm_kv_desc d = {.n_layers = 1, .n_blocks = 4, .block_size = 16, .n_kv_heads = 1,
                     .head_dim = 64};
    const slm_type kv_types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0};
    for (size_t i = 0; i < 3; i++) {
        d.type = kv_types[i];
        bool ok = supported(c, SLM_OP_KV_STORE, d.type, 64);
        assert_true(supported(c, SLM_OP_ATTENTION, d.type, 64) == ok);
        if (!ok)
            check_kv_create_fails(c, d, SLM_STATUS_UNSUPPORTED, slm_type_name((int)d.type));
    }
    if (is_vulkan(c))
        check_refusal(c, SLM_OP_KV_STORE, SLM_TYPE_Q8_0, 64);
    check_refusal(c, SLM_OP_KV_STORE, SLM_TYPE_Q4_0, 64);
    d.type = SLM_TYPE_Q4_0;
    check_kv_create_fails(c, d, SLM_STATUS_UNSUPPORTED, "q4_0");
    d.type = SLM_TYPE_F32;
    d.head_dim = 0;
    check_kv_create_fails(c, d, SLM_STATUS_INVALID_ARGUMENT, NULL);
    if (c->ops->memory) {
        slm_mem_info m;
        assert_int_equal(c->ops->memory(c->be, &m), SLM_OK);
        assert_true(m.total_bytes > 0 && m.free_bytes <= m.total_bytes);
    }
}

static void supports_and_refusals(void **state)
{
    (void)state;
    for_each(G_SUPPORT, supports_one);
}

/* ------------------------------------------------------------------------ */
/* embed                                                                     */

/* Embeds 2..max_n tokens (at most 33) of a vocab × cols table. */
static void embed_shape(const cfg *c, slm_type type, int64_t vocab, int64_t cols,
                        const void *raw, int max_n)
{
    slm_weight *w = load_ok(c, type, vocab, cols, raw);
    int n = tu_int(2, max_n < 33 ? max_n : 33);
    int32_t ids[33];
    ids[0] = (int32_t)vocab - 1; /* the last row and the first */
    ids[1] = 0;
    for (int t = 2; t < n; t++)
        ids[t] = tu_int(0, (int)vocab - 1);
    size_t ny = (size_t)n * (size_t)cols;
    slm_buf *y = dev_floats(c, NULL, ny);
    plain_step d;
    plain_step_init(&d, n, ids);
    begin_ok(c, &d.s, "embed");
    c->ops->embed(c->be, w, at(y));
    finish_ok(c, "embed");
    float *got = dev_read(c, y, ny);
    double *ref = dalloc(ny);
    ref_embed(type, raw, cols, ids, n, ref);
    /* The reference decodes with quant.c's f32 formula (bit for bit
     * ggml's). A backend evaluating it in another order, or fusing d·q − m
     * into one FMA, differs by a rounding or two of its largest term: 2·2⁻²³
     * of |w| ≲ 8 here, under 2e-6. */
    double *tol = tol_of(ref, ny, 2e-6, 1e-6);
    char what[64];
    snprintf(what, sizeof what, "embed %s %lld x %lld", slm_type_name((int)type),
             (long long)vocab, (long long)cols);
    expect_close(c, what, got, ref, tol, ny);
    free(tol);
    free(ref);
    free(got);
    c->ops->buf_free(c->be, y);
    c->ops->weight_free(c->be, w);
}

static void embed_one(const cfg *c)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        if (!supported(c, SLM_OP_EMBED, all_types[i], 0))
            continue;
        int64_t vocab = tu_int(2, 60), cols = ragged_cols(all_types[i]);
        void *raw;
        float *deq;
        make_weight(all_types[i], vocab, cols, &raw, &deq);
        embed_shape(c, all_types[i], vocab, cols, raw, 33);
        free(raw);
        free(deq);
    }
}

static void embed_all_types(void **state)
{
    (void)state;
    for_each(G_EMBED, embed_one);
}

/* ------------------------------------------------------------------------ */
/* rmsnorm                                                                   */

/* Runs rmsnorm (with the fused residual when `residual`; into x itself when
 * `in_place`, as the forward pass normalizes its selected rows) on fresh
 * data and checks it; returns the worst error ratio of y. When `corrupt`,
 * one element of the result is nudged to 3× its tolerance first and nothing
 * is asserted on y (the checker test uses that). */
static double rmsnorm_case(const cfg *c, bool residual, bool in_place, bool corrupt)
{
    int rows = tu_int(1, 33), d = tu_int(1, 700);
    size_t n = (size_t)rows * (size_t)d;
    float eps = tu_int(0, 1) ? 1e-5f : 1e-6f;
    float *x = xmalloc(n * 4), *a = xmalloc(n * 4), *w = xmalloc((size_t)d * 4);
    tu_fill_normal(x, n, 3.0f);
    tu_fill_normal(a, n, 1.0f);
    tu_fill_uniform(w, (size_t)d, 0.5f, 1.5f);
    slm_weight *wt = load_ok(c, SLM_TYPE_F32, 1, d, w);
    slm_buf *xb = dev_floats(c, x, n), *ab = dev_floats(c, a, n);
    slm_buf *yb = in_place ? xb : dev_floats(c, NULL, n);
    plain_step st;
    plain_step_init(&st, rows, NULL);
    begin_ok(c, &st.s, "rmsnorm");
    c->ops->rmsnorm(c->be, at(xb), residual ? at(ab) : NOREF, wt, eps, rows, d, at(yb));
    finish_ok(c, "rmsnorm");
    float *gx = dev_read(c, xb, n), *gy = dev_read(c, yb, n), *rx = xmalloc(n * 4);
    double *ry = dalloc(n);
    ref_rmsnorm(x, residual ? a : NULL, w, eps, rows, d, rx, ry);
    /* the residual stream x + add is one f32 addition per element: exact */
    if (!in_place && memcmp(gx, rx, n * 4) != 0)
        fail_msg("%s: rmsnorm%s: x after the op differs from x + add in f32", c->label,
                 residual ? " with residual" : "");
    /* y: the mean of squares summed in f32 (a GPU; the CPU sums in double)
     * is off by ≲ √d·2⁻²⁴ ≈ 1.6e-6 relative for d ≤ 700 positive terms,
     * the square root halves that, then inverse sqrt and two products add
     * a few ulps: 3e-6 relative, 1e-7 absolute near zero. (Seen: < 2e-7.) */
    double *ty = tol_of(ry, n, 1e-7, 3e-6);
    if (corrupt) {
        size_t k = (size_t)tu_int(0, (int)n - 1);
        gy[k] = (float)(ry[k] + 3 * ty[k]);
    }
    size_t wi;
    double worst = tu_worst_ratio(gy, ry, ty, n, &wi);
    if (!corrupt)
        expect_close(c, residual   ? "rmsnorm with residual"
                        : in_place ? "rmsnorm in place"
                                   : "rmsnorm",
                     gy, ry, ty, n);
    free(ty);
    free(ry);
    free(rx);
    free(gx);
    free(gy);
    c->ops->buf_free(c->be, xb);
    c->ops->buf_free(c->be, ab);
    if (!in_place)
        c->ops->buf_free(c->be, yb);
    c->ops->weight_free(c->be, wt);
    free(x);
    free(a);
    free(w);
    return worst;
}

static void rmsnorm_one(const cfg *c)
{
    for (int rep = 0; rep < 2; rep++) {
        rmsnorm_case(c, false, false, false);
        rmsnorm_case(c, true, false, false);
        rmsnorm_case(c, rep == 1, true, false);
    }
}

static void rmsnorm_both(void **state)
{
    (void)state;
    for_each(G_RMSNORM, rmsnorm_one);
}

/* The comparison must catch one element off by 3× its tolerance, and NaN. */
static void checker_catches_wrong_result(void **state)
{
    (void)state;
    const cfg *c = NULL;
    for (int i = 0; i < g_ncfg && !c; i++)
        if (g_cfgs[i].be)
            c = &g_cfgs[i];
    assert_non_null(c);
    assert_true(rmsnorm_case(c, true, false, false) <= 1.0);
    assert_true(rmsnorm_case(c, true, false, true) > 1.0);
    float got[3] = {1, NAN, 3};
    double ref[3] = {1, 2, 3}, tol[3] = {1, 1, 1};
    size_t i;
    assert_true(isinf(tu_worst_ratio(got, ref, tol, 3, &i)));
    assert_int_equal(i, 1);
}

/* ------------------------------------------------------------------------ */
/* matmul                                                                    */

/* y(rows, out) = x · Wᵀ for a fresh W of `type`; add_mode 0: no add, 1: a
 * separate add buffer, 2: add is y itself (in place). Odd row counts read x
 * one float past an aligned offset. */
static void matmul_case(const cfg *c, slm_type type, int64_t out, int64_t in, int rows,
                        int add_mode)
{
    void *raw;
    float *wf;
    make_weight(type, out, in, &raw, &wf);
    slm_weight *w = load_ok(c, type, out, in, raw);
    size_t nx = (size_t)rows * (size_t)in, ny = (size_t)rows * (size_t)out;
    size_t xoff = rows % 2;
    float *x = xmalloc((nx + 1) * 4), *add = xmalloc(ny * 4);
    x[0] = x[nx] = 0.0f;
    tu_fill_normal(x + xoff, nx, tu_uniform(0.1f, 3.0f));
    tu_fill_normal(add, ny, 1.0f);
    slm_buf *xb = dev_floats(c, x, nx + 1);
    slm_buf *yb = dev_floats(c, add_mode == 2 ? add : NULL, ny);
    slm_buf *ab = add_mode == 1 ? dev_floats(c, add, ny) : NULL;
    slm_ref aref = add_mode == 0 ? NOREF : add_mode == 1 ? at(ab) : at(yb);
    plain_step st;
    plain_step_init(&st, rows, NULL);
    char what[96];
    snprintf(what, sizeof what, "matmul %s %lld x %lld, %d rows, add %d", slm_type_name((int)type),
             (long long)out, (long long)in, rows, add_mode);
    begin_ok(c, &st.s, what);
    c->ops->matmul(c->be, w, at_float(xb, xoff), rows, aref, at(yb));
    finish_ok(c, what);
    float *got = dev_read(c, yb, ny);
    double *xv = dalloc(nx), *ref = dalloc(ny), *mag = dalloc(ny);
    for (int r = 0; r < rows; r++)
        ref_act_values(type, c->act, x + xoff + (size_t)r * in, in, xv + (size_t)r * in);
    ref_matmul(wf, out, in, xv, rows, add_mode ? add : NULL, ref, mag);
    /* The reference multiplies the very values the backend does (decoded
     * weights; activations as its quantizer codes them, or f32), so only
     * f32 rounding remains: block products and scales rounded in f32 and
     * summed in some order. That is ≤ in·2⁻²⁴ of Σ|w·x| at worst and about
     * √in·2⁻²⁴ ≈ 3e-6 of it for in ≤ 2304 in practice: 4e-6 of Σ|w·x|
     * (+|add|), plus 3e-7 for sums that cancel to ~0. (Seen: < 6e-7.) */
    double *tol = dalloc(ny);
    for (size_t k = 0; k < ny; k++)
        tol[k] = (c->mm_rtol > 0 ? c->mm_rtol : 4e-6) * mag[k] + 3e-7;
    expect_close(c, what, got, ref, tol, ny);
    free(tol);
    free(mag);
    free(ref);
    free(xv);
    free(got);
    c->ops->buf_free(c->be, xb);
    c->ops->buf_free(c->be, yb);
    c->ops->buf_free(c->be, ab);
    c->ops->weight_free(c->be, w);
    free(x);
    free(add);
    free(raw);
    free(wf);
}

/* Rows 1 and 4 (matrix-vector, and the CPU's full 4-row kernel group), 5
 * (the first tiled count, one row past a group) and a random larger
 * count; every add mode. */
static void matmul_types(const cfg *c, const slm_type *types, size_t n, bool few)
{
    for (size_t i = 0; i < n; i++) {
        if (!supported(c, SLM_OP_MATMUL, types[i], 0))
            continue;
        const int rows_all[4] = {1, 4, 5, tu_int(6, 37)}, rows_few[2] = {tu_int(1, 4),
                                                                          tu_int(5, 20)};
        const int *rows = few ? rows_few : rows_all;
        for (int k = 0; k < (few ? 2 : 4); k++)
            matmul_case(c, types[i], tu_int(1, 70), ragged_cols(types[i]), rows[k],
                        k < 3 ? k : tu_int(0, 2));
    }
}

static void matmul_one(const cfg *c)
{
    if (c->groups & G_MATMUL)
        matmul_types(c, all_types, N_TYPES, false);
    else
        matmul_types(c, few_types, sizeof few_types / sizeof few_types[0], true);
}

static void matmul_all_types(void **state)
{
    (void)state;
    for_each(G_MATMUL | G_MATMUL_FEW, matmul_one);
}

/* Weights larger than one bindable buffer (vk_max_buffer 64 KiB) load as
 * several parts of whole rows; matmul and embed run over every part. A
 * weight needing more parts than the backend binds is refused. */
static void split_one(const cfg *c)
{
    const slm_type types[] = {SLM_TYPE_F16, SLM_TYPE_Q8_0, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int64_t cols = 256 * tu_int(1, 2), out = tu_int(600, 1400);
        assert_true(slm_type_row_bytes((int)types[i], cols) * (size_t)out > 65536);
        matmul_case(c, types[i], out, cols, 1, 1);
        matmul_case(c, types[i], out, cols, tu_int(5, 8), 0);
        void *raw;
        float *deq;
        make_weight(types[i], out, cols, &raw, &deq);
        /* the output is one activation buffer: within the 64 KiB too */
        embed_shape(c, types[i], out, cols, raw, (int)(65536 / (4 * cols)));
        free(raw);
        free(deq);
    }
    size_t rb = slm_type_row_bytes(SLM_TYPE_F32, 4096);
    int64_t rows = 65 * (int64_t)(65536 / rb) + 1;
    void *big = calloc((size_t)rows, rb);
    assert_non_null(big);
    slm_weight *w = NULL;
    slm_status st = c->ops->load_weight(c->be, SLM_TYPE_F32, rows, 4096, big, &w);
    if (st != SLM_STATUS_UNSUPPORTED)
        fail_msg("%s: a weight of 65+ buffers: status %d, want UNSUPPORTED", c->label, (int)st);
    assert_null(w);
    assert_true(slm_last_error()[0] != '\0');
    free(big);
}

static void split_weights(void **state)
{
    (void)state;
    for_each(G_SPLIT, split_one);
}

/* ------------------------------------------------------------------------ */
/* rope                                                                      */

/* In place on n rows (a column range of wider rows: stride > width),
 * partial rotation, random base, scale and factors; `twice` applies the op
 * twice in the step (the table reused), which is one rotation by 2θ. */
static void rope_case(const cfg *c, slm_rope_mode mode, bool factors, bool twice)
{
    int n = tu_int(1, 20), n_heads = tu_int(1, 5), hd = 2 * tu_int(2, 40);
    int n_rot = 2 * tu_int(1, hd / 2);
    int width = n_heads * hd, stride = width + tu_int(0, 17);
    size_t total = (size_t)(n - 1) * stride + width;
    float *x = xmalloc(total * 4), ff[64];
    tu_fill_uniform(x, total, -2, 2);
    for (int i = 0; i < n_rot / 2; i++)
        ff[i] = tu_uniform(1.0f, 8.0f);
    slm_rope_params p = {.mode = mode, .n_rot = n_rot, .freq_base = tu_uniform(5000, 1e6f),
                         .freq_scale = tu_uniform(0.25f, 1.0f),
                         .freq_factors = factors ? ff : NULL};
    slm_rope *r = NULL;
    if (c->ops->rope_create(c->be, &p, &r) != SLM_OK)
        fail_msg("%s: rope_create: %s", c->label, slm_last_error());
    plain_step st;
    plain_step_init(&st, n, NULL);
    int32_t ref_pos[MAXT];
    for (int t = 0; t < n; t++) {
        st.pos[t] = tu_int(0, 8000);
        ref_pos[t] = twice ? 2 * st.pos[t] : st.pos[t];
    }
    slm_buf *xb = dev_floats(c, x, total);
    char what[96];
    snprintf(what, sizeof what, "rope %s n_rot %d of %d%s%s",
             mode == SLM_ROPE_NEOX ? "neox" : "norm", n_rot, hd, factors ? ", freq factors" : "",
             twice ? ", twice" : "");
    begin_ok(c, &st.s, what);
    c->ops->rope(c->be, at(xb), stride, n_heads, hd, r);
    if (twice)
        c->ops->rope(c->be, at(xb), stride, n_heads, hd, r);
    finish_ok(c, what);
    float *got = dev_read(c, xb, total);
    double *ref = dalloc(total), *angle = dalloc(total);
    ref_rope(&p, ref_pos, n, x, stride, n_heads, hd, ref, angle);
    /* cos and sin rounded to f32 and two products with |x| ≤ 2: a few e-7.
     * A backend that forms θ = pos·inv_freq in f32 (a GPU) has |Δθ| ≲
     * 3·2⁻²⁴·θ from rounding inv_freq, the product and the sine's argument
     * reduction, which moves the output by ≤ (|x₀|+|x₁|)·|Δθ| ≤ 4·|Δθ|.
     * Untouched elements (padding, dimensions past n_rot) have θ = 0: there
     * the bound is 2e-6, and they are also compared bit for bit below. */
    double *tol = dalloc(total);
    for (size_t i = 0; i < total; i++)
        tol[i] = 2e-6 + 4 * 3 * 5.97e-8 * angle[i];
    expect_close(c, what, got, ref, tol, total);
    for (size_t i = 0; i < total; i++)
        if (angle[i] == 0 && memcmp(&got[i], &x[i], 4) != 0)
            fail_msg("%s: %s: element %zu is not rotated but changed", c->label, what, i);
    free(tol);
    free(angle);
    free(ref);
    free(got);
    free(x);
    c->ops->buf_free(c->be, xb);
    c->ops->rope_free(c->be, r);
}

static void rope_one(const cfg *c)
{
    for (int rep = 0; rep < 2; rep++)
        for (int k = 0; k < 4; k++)
            rope_case(c, k % 2 ? SLM_ROPE_NEOX : SLM_ROPE_NORM, k >= 2, rep == 1);
}

static void rope_modes(void **state)
{
    (void)state;
    for_each(G_ROPE, rope_one);
}

/* ------------------------------------------------------------------------ */
/* kv_store + paged attention (+ kv_copy)                                    */

#define MAXS 6    /* sequences, a fork included */
#define MAXP 100  /* positions per sequence */
#define MAXB 40   /* blocks per sequence (MAXP / the smallest block size 3, rounded up) */
#define LAYERS 2

typedef struct shape {
    int n_heads, n_kv, hd, bs;
} shape;

/* A pool and the sequences living in it, with the reference's copy of
 * every K/V row as stored. */
typedef struct world {
    const cfg *c;
    shape sh;
    slm_type type;
    /* How each layer attends: layer 0 plainly (every earlier position);
     * layer 1 through a sliding window drawn so that the long sequence
     * crosses it (and sometimes wider than everything), with or without a
     * logit soft-cap that bites on these scores (|s| ~ 1..3). */
    slm_attn_params ap[LAYERS];
    slm_kv *kv;
    int n_blocks, n_seqs; /* sequences in use, a fork last */
    int len[MAXS];        /* positions stored so far */
    int32_t blocks[MAXS][MAXB];
    int nblk;             /* blocks each sequence's table holds */
    float *kref[LAYERS], *vref[LAYERS]; /* [seq][pos][n_kv·hd] */
} world;

typedef struct tok {
    int seq, pos;
} tok;

static size_t kv_width(const world *w) { return (size_t)w->sh.n_kv * w->sh.hd; }
static size_t ref_at(const world *w, int s, int p) { return ((size_t)s * MAXP + p) * kv_width(w); }

static void shuffle(int32_t *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = tu_int(0, i);
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Reserves the workspace of this pool's largest steps (MAXT tokens over
 * n_seqs sequences), then of larger ones: each call succeeds and the bytes
 * reported never shrink. */
static void reserve_for(const cfg *c, const slm_kv *kv, int n_heads, int n_seqs)
{
    slm_step_limits lim = {.max_tokens = MAXT / 2, .max_seqs = n_seqs, .max_logit_rows = 8,
                           .max_heads = n_heads, .kv = kv, .logit_cols = 64};
    size_t small = 0, big = 0;
    if (c->ops->reserve(c->be, &lim, &small) != SLM_OK)
        fail_msg("%s: reserve: %s", c->label, slm_last_error());
    lim.max_tokens = MAXT;
    lim.max_logit_rows = MAXT;
    if (c->ops->reserve(c->be, &lim, &big) != SLM_OK)
        fail_msg("%s: reserve, larger: %s", c->label, slm_last_error());
    assert_true(big >= small);
}

/* A pool for n_seqs sequences plus a fork, each table nblk blocks drawn
 * from one shuffled permutation of the pool (scattered, never contiguous
 * by construction), with spare blocks nobody owns. */
static void world_init(world *w, const cfg *c, shape sh, slm_type type, int n_seqs)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    w->sh = sh;
    w->type = type;
    w->n_seqs = n_seqs;
    w->nblk = (MAXP + sh.bs - 1) / sh.bs;
    float scale = 1.0f / sqrtf((float)sh.hd);
    w->ap[0] = (slm_attn_params){.scale = scale};
    w->ap[1] = (slm_attn_params){.scale = scale * 2,
                                 .softcap = tu_int(0, 1) ? tu_uniform(1.0f, 2.5f) : 0.0f,
                                 .window = tu_int(0, 3) ? tu_int(1, 70) : MAXP + 5};
    assert_true(w->nblk <= MAXB && n_seqs + 1 <= MAXS);
    w->n_blocks = (n_seqs + 1) * w->nblk + tu_int(1, 5);
    slm_kv_desc d = {.n_layers = LAYERS, .n_blocks = w->n_blocks, .block_size = sh.bs,
                     .n_kv_heads = sh.n_kv, .head_dim = sh.hd, .type = type};
    if (c->ops->kv_create(c->be, &d, &w->kv) != SLM_OK)
        fail_msg("%s: kv_create %s: %s", c->label, slm_type_name((int)type), slm_last_error());
    reserve_for(c, w->kv, sh.n_heads, n_seqs + 1);
    int32_t *perm = xmalloc((size_t)w->n_blocks * sizeof(int32_t));
    for (int i = 0; i < w->n_blocks; i++)
        perm[i] = i;
    shuffle(perm, w->n_blocks);
    for (int s = 0; s <= n_seqs; s++)
        memcpy(w->blocks[s], perm + s * w->nblk, (size_t)w->nblk * sizeof(int32_t));
    free(perm);
    for (int l = 0; l < LAYERS; l++) {
        w->kref[l] = calloc((size_t)MAXS * MAXP * kv_width(w), sizeof(float));
        w->vref[l] = calloc((size_t)MAXS * MAXP * kv_width(w), sizeof(float));
        assert_non_null(w->kref[l]);
        assert_non_null(w->vref[l]);
    }
}

static void world_free(world *w)
{
    w->c->ops->kv_free(w->c->be, w->kv);
    for (int l = 0; l < LAYERS; l++) {
        free(w->kref[l]);
        free(w->vref[l]);
    }
}

/* The step arrays for a list of tokens; the tables of every sequence in
 * use are concatenated in reverse order, so table starts are not 0, n, 2n. */
typedef struct step_arrays {
    int32_t ids[MAXT], pos[MAXT], seq[MAXT], slot[MAXT];
    int32_t start[MAXS], len[MAXS], bt[MAXS * MAXB];
    slm_step s;
} step_arrays;

static void build_step(const world *w, const tok *toks, int n, step_arrays *a)
{
    assert_true(n <= MAXT);
    int off = 0;
    for (int s = w->n_seqs - 1; s >= 0; s--) {
        a->start[s] = off;
        a->len[s] = w->nblk;
        memcpy(a->bt + off, w->blocks[s], (size_t)w->nblk * sizeof(int32_t));
        off += w->nblk;
    }
    for (int t = 0; t < n; t++) {
        int s = toks[t].seq, p = toks[t].pos;
        a->ids[t] = 0;
        a->pos[t] = p;
        a->seq[t] = s;
        a->slot[t] = w->blocks[s][p / w->sh.bs] * w->sh.bs + p % w->sh.bs;
    }
    a->s = (slm_step){.kv = w->kv, .n_tokens = n, .token_ids = a->ids, .positions = a->pos,
                      .seq_of_token = a->seq, .kv_slot = a->slot, .n_seqs = w->n_seqs,
                      .block_table_start = a->start, .block_table_len = a->len,
                      .block_tables = a->bt, .n_heads = w->sh.n_heads};
}

/* The reference's side of kv_copy: block i of sequence `from` copied over
 * block i of sequence `to`, i < n_copy, as stored. */
static void ref_copy_blocks(world *w, int from, int to, int n_copy)
{
    int upto = n_copy * w->sh.bs < w->len[from] ? n_copy * w->sh.bs : w->len[from];
    for (int l = 0; l < LAYERS; l++) {
        memcpy(w->kref[l] + ref_at(w, to, 0), w->kref[l] + ref_at(w, from, 0),
               (size_t)upto * kv_width(w) * sizeof(float));
        memcpy(w->vref[l] + ref_at(w, to, 0), w->vref[l] + ref_at(w, from, 0),
               (size_t)upto * kv_width(w) * sizeof(float));
    }
    w->len[to] = upto;
}

/* Checks one layer's attention output against the reference. */
static void check_attention(const world *w, int l, const tok *toks, int n, const float *qkv,
                            size_t stride, const slm_attn_params *ap, const float *got,
                            const char *what)
{
    size_t qw = (size_t)w->sh.n_heads * w->sh.hd, nout = (size_t)n * qw;
    double *ref = dalloc(nout);
    for (int t = 0; t < n; t++) {
        size_t seq = ref_at(w, toks[t].seq, 0);
        ref_attention(qkv + (size_t)t * stride, w->sh.n_heads, w->sh.n_kv, w->sh.hd, ap,
                      w->kref[l] + seq, w->vref[l] + seq, kv_width(w), toks[t].pos + 1,
                      ref + (size_t)t * qw);
    }
    /* Outputs are convex combinations of stored V values (|v| ≲ 5). The
     * reference reads the values as stored (f16-rounded, or through Q8_0),
     * so storage adds no error; what remains is f32: the q·k dots of up to
     * 256 terms (relative ~√hd·2⁻²⁴), exp (a few ulps; GLSL allows 3+2|x|),
     * the online rescaling and a weighted sum over ≤ 100 positions — a few
     * e-6 relative to max|v|: 1e-5 absolute plus 1e-5 relative at
     * unit-scale data. (Seen: < 2e-6.) */
    double *tol = tol_of(ref, nout, 1e-5, 1e-5);
    char full[320];
    snprintf(full, sizeof full, "%s layer %d (window %d, softcap %g)", what, l, ap->window,
             (double)ap->softcap);
    expect_close(w->c, full, got, ref, tol, nout);
    free(tol);
    free(ref);
}

/* Runs one step over `toks` for both layers — kv_copy first when n_copy
 * (block i of sequence copy_from to the same block of copy_to), then
 * kv_store and attention per layer — and checks every output. */
static void run_step(world *w, const tok *toks, int n, int copy_from, int copy_to, int n_copy)
{
    const cfg *c = w->c;
    const shape *sh = &w->sh;
    size_t qw = (size_t)sh->n_heads * sh->hd, kw = kv_width(w);
    size_t stride = qw + 2 * kw; /* fused QKV rows: q | k | v */
    size_t nqkv = (size_t)n * stride, nout = (size_t)n * qw;
    float *qkv[LAYERS];
    slm_buf *qb[LAYERS], *ob[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        qkv[l] = xmalloc(nqkv * 4);
        tu_fill_normal(qkv[l], nqkv, 1.0f);
        qb[l] = dev_floats(c, qkv[l], nqkv);
        ob[l] = dev_floats(c, NULL, nout);
    }
    step_arrays *a = xmalloc(sizeof *a);
    build_step(w, toks, n, a);
    char what[160];
    snprintf(what, sizeof what, "attention %s hd %d heads %d/%d bs %d, %d tokens%s",
             slm_type_name((int)w->type), sh->hd, sh->n_heads, sh->n_kv, sh->bs, n,
             n_copy ? " after kv_copy" : "");
    begin_ok(c, &a->s, what);
    if (n_copy) {
        slm_kv_copy copies[MAXB];
        for (int i = 0; i < n_copy; i++)
            copies[i] = (slm_kv_copy){w->blocks[copy_from][i], w->blocks[copy_to][i]};
        c->ops->kv_copy(c->be, w->kv, copies, n_copy);
    }
    for (int l = 0; l < LAYERS; l++) {
        c->ops->kv_store(c->be, w->kv, l, at_float(qb[l], qw), (int)stride,
                         at_float(qb[l], qw + kw), (int)stride);
        c->ops->attention(c->be, w->kv, l, at(qb[l]), (int)stride, sh->n_heads, &w->ap[l],
                          at(ob[l]));
    }
    finish_ok(c, what);
    if (n_copy)
        ref_copy_blocks(w, copy_from, copy_to, n_copy);
    for (int l = 0; l < LAYERS; l++)
        for (int t = 0; t < n; t++) {
            const float *row = qkv[l] + (size_t)t * stride + qw;
            for (int h = 0; h < sh->n_kv; h++) {
                size_t r = ref_at(w, toks[t].seq, toks[t].pos) + (size_t)h * sh->hd;
                ref_kv_round(w->type, row + (size_t)h * sh->hd, w->kref[l] + r, sh->hd);
                ref_kv_round(w->type, row + kw + (size_t)h * sh->hd, w->vref[l] + r, sh->hd);
            }
        }
    for (int t = 0; t < n; t++)
        if (toks[t].pos + 1 > w->len[toks[t].seq])
            w->len[toks[t].seq] = toks[t].pos + 1;
    for (int l = 0; l < LAYERS; l++) {
        float *got = dev_read(c, ob[l], nout);
        check_attention(w, l, toks, n, qkv[l], stride, &w->ap[l], got, what);
        free(got);
        c->ops->buf_free(c->be, qb[l]);
        c->ops->buf_free(c->be, ob[l]);
        free(qkv[l]);
    }
    free(a);
}

/* Four steps on one pool: (1) every sequence's prompt at once, one of them
 * longer than 64 positions; (2) a prefill chunk of one sequence (causal
 * inside the chunk) between decode tokens of the others; (3) one decode
 * token of the long sequence alone (few tokens over a long context: where a
 * backend splits the context, e.g. Vulkan's split-K); (4) when kv_copy is
 * offered, a fork: sequence f's blocks
 * copied to a new sequence in the step, then one token of f and one of the
 * fork at the same position, each written to and read from its own blocks
 * (copy-on-write of a partly filled last block). */
static void attention_case(const cfg *c, shape sh, slm_type type)
{
    world w;
    int n_seqs = tu_int(2, MAXS - 2), chunk = tu_int(2, 9);
    world_init(&w, c, sh, type, n_seqs);
    tok toks[MAXT] = {{0, 0}};
    int n = 0, long_seq = tu_int(0, n_seqs - 1);
    for (int s = 0; s < n_seqs; s++) {
        int len = s == long_seq ? tu_int(65, MAXP - chunk - 3) : tu_int(1, 40);
        for (int p = 0; p < len; p++)
            toks[n++] = (tok){s, p};
    }
    run_step(&w, toks, n, 0, 0, 0);
    int ps = tu_int(0, n_seqs - 1);
    n = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (s != ps)
            toks[n++] = (tok){s, w.len[s]};
        else
            for (int i = 0; i < chunk; i++)
                toks[n++] = (tok){ps, w.len[ps] + i};
    }
    run_step(&w, toks, n, 0, 0, 0);
    toks[0] = (tok){long_seq, w.len[long_seq]};
    run_step(&w, toks, 1, 0, 0, 0);
    if (c->ops->kv_copy) {
        int f = tu_int(0, n_seqs - 1), fork = n_seqs;
        w.n_seqs = n_seqs + 1;
        int n_copy = (w.len[f] + sh.bs - 1) / sh.bs;
        toks[0] = (tok){f, w.len[f]};
        toks[1] = (tok){fork, w.len[f]};
        run_step(&w, toks, 2, f, fork, n_copy);
    }
    world_free(&w);
}

static const shape attn_shapes[] = {
    {.n_heads = 9, .n_kv = 3, .hd = 64, .bs = 16}, /* GQA */
    {.n_heads = 9, .n_kv = 3, .hd = 40, .bs = 5},  /* head size not a multiple of 32 */
    {.n_heads = 4, .n_kv = 4, .hd = 40, .bs = 16}, /* MHA */
    {.n_heads = 16, .n_kv = 1, .hd = 64, .bs = 5}, /* many query heads per KV head */
    {.n_heads = 4, .n_kv = 2, .hd = 0, .bs = 16},  /* hd 66..256 drawn: > 64 per work group */
    {.n_heads = 2, .n_kv = 1, .hd = 0, .bs = 3},   /* hd 2..40 drawn, tiny blocks */
};

static shape draw_shape(size_t i)
{
    shape sh = attn_shapes[i];
    if (sh.hd == 0)
        sh.hd = sh.bs == 3 ? 2 * tu_int(1, 20) : 2 * tu_int(33, 128);
    return sh;
}

static void attention_one(const cfg *c)
{
    const slm_type types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0};
    bool few = !(c->groups & G_ATTENTION);
    for (size_t t = 0; t < 3; t++) {
        if (few && types[t] == SLM_TYPE_Q8_0)
            continue;
        for (size_t k = 0; k < sizeof attn_shapes / sizeof attn_shapes[0]; k++) {
            if (few && k != 0 && k != 4)
                continue;
            shape sh = draw_shape(k);
            if (supported(c, SLM_OP_KV_STORE, types[t], sh.hd) &&
                supported(c, SLM_OP_ATTENTION, types[t], sh.hd))
                attention_case(c, sh, types[t]);
        }
    }
}

static void attention_paged(void **state)
{
    (void)state;
    for_each(G_ATTENTION | G_ATTN_FEW, attention_one);
}

/* ------------------------------------------------------------------------ */
/* swiglu, add, scale, get_rows, logits                                      */

/* swiglu with g and u as the halves of one fused gate|up row (stride 2·ff),
 * or in two buffers of dense rows (padded: rows a little wider than ff). */
static void swiglu_case(const cfg *c, bool fused, bool padded, bool gelu)
{
    int rows = tu_int(1, 33), ff = tu_int(1, 700);
    int stride = fused ? 2 * ff : padded ? ff + tu_int(1, 5) : ff;
    size_t extent = (size_t)(rows - 1) * stride + ff, ny = (size_t)rows * ff;
    size_t ng = fused ? extent + ff : extent;
    float *g = xmalloc(ng * 4), *u = xmalloc(extent * 4);
    tu_fill_normal(g, ng, 3.0f);
    tu_fill_normal(u, extent, 1.0f);
    slm_buf *gb = dev_floats(c, g, ng), *ub = fused ? NULL : dev_floats(c, u, extent);
    slm_buf *yb = dev_floats(c, NULL, ny);
    const float *uv = fused ? g + ff : u;
    plain_step st;
    plain_step_init(&st, rows, NULL);
    char what[64];
    snprintf(what, sizeof what, "%s%s", gelu ? "geglu" : "swiglu",
             fused ? ", fused gate|up" : padded ? ", padded rows" : "");
    begin_ok(c, &st.s, what);
    (gelu ? c->ops->geglu : c->ops->swiglu)(c->be, at(gb),
                                            fused ? at_float(gb, (size_t)ff) : at(ub), stride,
                                            rows, ff, at(yb));
    finish_ok(c, what);
    float *got = dev_read(c, yb, ny);
    double *ref = dalloc(ny);
    (gelu ? ref_geglu : ref_swiglu)(g, uv, stride, rows, ff, ref);
    /* exp (a few ulps; GLSL allows 3+2|x| of them, ≤ 27 for |g| ≲ 12 here,
     * 1.6e-6 relative, which carries into silu), a divide and a product in
     * f32: 4e-6 relative, 1e-7 near zero. (Seen: < 3e-7.) GeGLU's tanh
     * goes through exp on GPUs too (tanh = 1 − 2/(e^{2x}+1)): the same
     * budget, and 1e-6 absolute where 1 + tanh cancels for g ≪ 0. */
    double *tol = tol_of(ref, ny, gelu ? 1e-6 : 1e-7, 4e-6);
    expect_close(c, what, got, ref, tol, ny);
    free(tol);
    free(ref);
    free(got);
    free(g);
    free(u);
    c->ops->buf_free(c->be, gb);
    c->ops->buf_free(c->be, ub);
    c->ops->buf_free(c->be, yb);
}

/* add (into a third buffer, and in place) and scale, when offered. */
static void add_scale_case(const cfg *c)
{
    if (!c->ops->add || !c->ops->scale) {
        fprintf(stderr, "%s: add/scale not offered, skipped\n", c->label);
        return;
    }
    size_t n = (size_t)tu_int(1, 40000);
    float *a = xmalloc(n * 4), *b = xmalloc(n * 4);
    tu_fill_normal(a, n, 2.0f);
    tu_fill_normal(b, n, 2.0f);
    float s = tu_uniform(-3, 3);
    slm_buf *ab = dev_floats(c, a, n), *bb = dev_floats(c, b, n), *yb = dev_floats(c, NULL, n);
    plain_step st;
    plain_step_init(&st, 1, NULL);
    begin_ok(c, &st.s, "add, scale");
    c->ops->add(c->be, at(ab), at(bb), n, at(yb)); /* y = a + b */
    c->ops->add(c->be, at(ab), at(bb), n, at(ab)); /* a += b, aliased */
    c->ops->scale(c->be, at(bb), s, n);            /* b *= s */
    finish_ok(c, "add, scale");
    float *gy = dev_read(c, yb, n), *ga = dev_read(c, ab, n), *gb = dev_read(c, bb, n);
    double *rsum = dalloc(n), *rs = dalloc(n);
    ref_add(a, b, n, rsum);
    ref_scale(b, s, n, rs);
    /* one f32 rounding of the exact result: 2⁻²⁴ relative (the 1e-30 only
     * keeps the ratio finite at an exact 0) */
    double *t1 = tol_of(rsum, n, 1e-30, 5.97e-8), *t2 = tol_of(rs, n, 1e-30, 5.97e-8);
    expect_close(c, "add", gy, rsum, t1, n);
    expect_close(c, "add in place", ga, rsum, t1, n);
    expect_close(c, "scale", gb, rs, t2, n);
    free(t1);
    free(t2);
    free(rsum);
    free(rs);
    free(gy);
    free(ga);
    free(gb);
    free(a);
    free(b);
    c->ops->buf_free(c->be, ab);
    c->ops->buf_free(c->be, bb);
    c->ops->buf_free(c->be, yb);
}

/* get_rows then the logits copy of those rows into the step's host
 * buffer, in one step; logit rows repeat and come in any order. */
static void rows_logits_case(const cfg *c)
{
    int n = tu_int(1, 60), d = tu_int(1, 300), nl = tu_int(1, 8);
    float *x = xmalloc((size_t)n * d * 4);
    tu_fill_normal(x, (size_t)n * d, 1.0f);
    int32_t rows[8];
    for (int i = 0; i < nl; i++)
        rows[i] = tu_int(0, n - 1);
    size_t ny = (size_t)nl * d;
    float *logits = xmalloc(ny * 4);
    tu_poison(logits, ny);
    plain_step st;
    plain_step_init(&st, n, NULL);
    st.s.n_logit_rows = nl;
    st.s.logit_rows = rows;
    st.s.logits = logits;
    slm_buf *xb = dev_floats(c, x, (size_t)n * d), *yb = dev_floats(c, NULL, ny);
    begin_ok(c, &st.s, "get_rows, logits");
    c->ops->get_rows(c->be, at(xb), d, at(yb));
    c->ops->logits(c->be, at(yb), d);
    finish_ok(c, "get_rows, logits");
    float *got = dev_read(c, yb, ny);
    double *ref = dalloc(ny);
    ref_get_rows(x, d, rows, nl, ref);
    /* copies: exact (a zero tolerance but for the ratio's sake) */
    double *tol = tol_of(ref, ny, 1e-30, 0);
    expect_close(c, "get_rows", got, ref, tol, ny);
    expect_close(c, "logits (host copy)", logits, ref, tol, ny);
    free(tol);
    free(ref);
    free(got);
    free(logits);
    free(x);
    c->ops->buf_free(c->be, xb);
    c->ops->buf_free(c->be, yb);
}

/* gelu (into another buffer and in place) and softcap (in place). */
static void gelu_softcap_case(const cfg *c)
{
    size_t n = (size_t)tu_int(1, 40000);
    float *x = xmalloc(n * 4);
    tu_fill_normal(x, n, 3.0f);
    float cap = tu_uniform(0.5f, 5.0f);
    slm_buf *xb = dev_floats(c, x, n), *yb = dev_floats(c, NULL, n), *zb = dev_floats(c, x, n);
    slm_buf *sb = dev_floats(c, x, n);
    plain_step st;
    plain_step_init(&st, 1, NULL);
    begin_ok(c, &st.s, "gelu, softcap");
    c->ops->gelu(c->be, at(xb), n, at(yb));
    c->ops->gelu(c->be, at(zb), n, at(zb));
    c->ops->softcap(c->be, at(sb), n, cap);
    finish_ok(c, "gelu, softcap");
    float *gy = dev_read(c, yb, n), *gz = dev_read(c, zb, n), *gs = dev_read(c, sb, n);
    double *rg = dalloc(n), *rs = dalloc(n);
    ref_gelu(x, n, rg);
    ref_softcap(x, cap, n, rs);
    /* erf and tanh in f32: a few ulps each (GPU tanh through exp: ≲ 30
     * ulps), then two products: 4e-6 relative, 1e-6 absolute where the
     * value is a difference of near-equal terms (gelu of x ≪ 0, tanh near
     * 0). (Seen: < 3e-7.) */
    double *tg = tol_of(rg, n, 1e-6, 4e-6), *ts = tol_of(rs, n, 1e-6, 4e-6);
    expect_close(c, "gelu", gy, rg, tg, n);
    expect_close(c, "gelu in place", gz, rg, tg, n);
    expect_close(c, "softcap", gs, rs, ts, n);
    free(tg);
    free(ts);
    free(rg);
    free(rs);
    free(gy);
    free(gz);
    free(gs);
    free(x);
    c->ops->buf_free(c->be, xb);
    c->ops->buf_free(c->be, yb);
    c->ops->buf_free(c->be, zb);
    c->ops->buf_free(c->be, sb);
}

/* layernorm with and without the fused residual and the bias, into y or in
 * place; rows drawn around a non-zero mean so the centring matters. */
static void layernorm_case(const cfg *c, bool residual, bool bias, bool in_place)
{
    int rows = tu_int(1, 33), d = tu_int(1, 700);
    size_t n = (size_t)rows * (size_t)d;
    float eps = tu_int(0, 1) ? 1e-5f : 1e-6f;
    float *x = xmalloc(n * 4), *a = xmalloc(n * 4), *w = xmalloc((size_t)d * 4);
    float *b = xmalloc((size_t)d * 4);
    tu_fill_normal(x, n, 3.0f);
    for (size_t i = 0; i < n; i++)
        x[i] += 4.0f;
    tu_fill_normal(a, n, 1.0f);
    tu_fill_uniform(w, (size_t)d, 0.5f, 1.5f);
    tu_fill_normal(b, (size_t)d, 1.0f);
    slm_weight *wt = load_ok(c, SLM_TYPE_F32, 1, d, w);
    slm_weight *bt = bias ? load_ok(c, SLM_TYPE_F32, 1, d, b) : NULL;
    slm_buf *xb = dev_floats(c, x, n), *ab = dev_floats(c, a, n);
    slm_buf *yb = in_place ? xb : dev_floats(c, NULL, n);
    plain_step st;
    plain_step_init(&st, rows, NULL);
    begin_ok(c, &st.s, "layernorm");
    c->ops->layernorm(c->be, at(xb), residual ? at(ab) : NOREF, wt, bt, eps, rows, d, at(yb));
    finish_ok(c, "layernorm");
    float *gx = dev_read(c, xb, n), *gy = dev_read(c, yb, n), *rx = xmalloc(n * 4);
    double *ry = dalloc(n);
    ref_layernorm(x, residual ? a : NULL, w, bias ? b : NULL, eps, rows, d, rx, ry);
    if (!in_place && memcmp(gx, rx, n * 4) != 0)
        fail_msg("%s: layernorm%s: x after the op differs from x + add in f32", c->label,
                 residual ? " with residual" : "");
    /* As rmsnorm (3e-6 relative), plus the mean: an f32 sum of d ≤ 700
     * terms of |x| ≲ 15 is off by ≲ √d·15·2⁻²⁴, which shifts every centred
     * value by that, ×inv ≲ 1/3·w ≤ 1.5: < 1e-5 absolute. (Seen: < 1e-6.) */
    double *ty = tol_of(ry, n, 1e-5, 3e-6);
    char what[80];
    snprintf(what, sizeof what, "layernorm%s%s%s", residual ? " with residual" : "",
             bias ? " and bias" : "", in_place ? " in place" : "");
    expect_close(c, what, gy, ry, ty, n);
    free(ty);
    free(ry);
    free(rx);
    free(gx);
    free(gy);
    c->ops->buf_free(c->be, xb);
    c->ops->buf_free(c->be, ab);
    if (!in_place)
        c->ops->buf_free(c->be, yb);
    c->ops->weight_free(c->be, wt);
    c->ops->weight_free(c->be, bt);
    free(x);
    free(a);
    free(w);
    free(b);
}

/* bias over strided rows (a column range of a fused QKV output); the
 * elements between rows must stay as they were. */
static void bias_case(const cfg *c)
{
    int rows = tu_int(1, 33), d = tu_int(1, 700), stride = d + (tu_int(0, 1) ? tu_int(1, 300) : 0);
    size_t extent = (size_t)(rows - 1) * stride + d;
    float *x = xmalloc(extent * 4), *b = xmalloc((size_t)d * 4);
    tu_fill_normal(x, extent, 2.0f);
    tu_fill_normal(b, (size_t)d, 1.0f);
    slm_weight *bt = load_ok(c, SLM_TYPE_F32, 1, d, b);
    slm_buf *xb = dev_floats(c, x, extent);
    plain_step st;
    plain_step_init(&st, rows, NULL);
    begin_ok(c, &st.s, "bias");
    c->ops->bias(c->be, at(xb), stride, rows, bt);
    finish_ok(c, "bias");
    float *got = dev_read(c, xb, extent);
    double *ref = dalloc(extent);
    ref_bias(x, stride, rows, b, d, ref);
    /* one f32 addition: one rounding, 2⁻²⁴ relative; untouched elements exact */
    double *tol = tol_of(ref, extent, 1e-30, 5.97e-8);
    expect_close(c, stride > d ? "bias, strided rows" : "bias", got, ref, tol, extent);
    free(tol);
    free(ref);
    free(got);
    free(x);
    free(b);
    c->ops->buf_free(c->be, xb);
    c->ops->weight_free(c->be, bt);
}

static void small_one(const cfg *c)
{
    for (int rep = 0; rep < 2; rep++) {
        for (int gelu = 0; gelu < 2; gelu++) {
            swiglu_case(c, true, false, gelu);
            swiglu_case(c, false, false, gelu);
            swiglu_case(c, false, true, gelu);
        }
        add_scale_case(c);
        rows_logits_case(c);
        gelu_softcap_case(c);
        layernorm_case(c, rep == 0, true, false);
        layernorm_case(c, rep == 1, false, false);
        layernorm_case(c, true, rep == 0, true);
        bias_case(c);
    }
}

static void small_ops(void **state)
{
    (void)state;
    for_each(G_SMALL, small_one);
}

/* ------------------------------------------------------------------------ */
/* the step's error contract                                                 */

/* The probe of the error tests: swiglu of ROWS dense rows of 8 from g into
 * y (mandatory in every backend, cheap, one input and one output). y holds
 * a sentinel until a good step writes it. */
#define ROWS 4
typedef struct probe {
    const cfg *c;
    float gv[ROWS * 16], sentinel[ROWS * 8];
    slm_buf *g, *y;
} probe;

static void probe_init(probe *pr, const cfg *c)
{
    pr->c = c;
    tu_fill_normal(pr->gv, ROWS * 16, 2.0f);
    for (int i = 0; i < ROWS * 8; i++)
        pr->sentinel[i] = 1234.5f;
    pr->g = dev_floats(c, pr->gv, ROWS * 16);
    pr->y = dev_floats(c, pr->sentinel, ROWS * 8);
}

static void probe_free(probe *pr)
{
    pr->c->ops->buf_free(pr->c->be, pr->g);
    pr->c->ops->buf_free(pr->c->be, pr->y);
}

static void probe_op(const probe *pr, slm_buf *y)
{
    pr->c->ops->swiglu(pr->c->be, at(pr->g), at_float(pr->g, 8), 16, ROWS, 8, at(y));
}

/* The probe in a good step: y must be right. */
static void probe_works(const probe *pr, const char *when)
{
    const cfg *c = pr->c;
    plain_step st;
    plain_step_init(&st, ROWS, NULL);
    begin_ok(c, &st.s, when);
    probe_op(pr, pr->y);
    finish_ok(c, when);
    float *got = dev_read(c, pr->y, ROWS * 8);
    double ref[ROWS * 8];
    ref_swiglu(pr->gv, pr->gv + 8, 16, ROWS, 8, ref);
    double *tol = tol_of(ref, ROWS * 8, 1e-7, 4e-6); /* as in swiglu_case */
    expect_close(c, when, got, ref, tol, ROWS * 8);
    free(tol);
    free(got);
}

/* b's n floats must still hold want, bit for bit. */
static void expect_unchanged(const cfg *c, slm_buf *b, const float *want, size_t n,
                             const char *when)
{
    float *got = dev_read(c, b, n);
    if (memcmp(got, want, n * 4) != 0)
        fail_msg("%s: %s: the output was written", c->label, when);
    free(got);
}

/* A bad step (a logit row past its tokens): begin_step fails, an op
 * recorded anyway writes nothing, wait reports the failure. */
static void bad_step_fails(const probe *pr)
{
    const cfg *c = pr->c;
    plain_step st;
    int32_t bad_row = ROWS;
    plain_step_init(&st, ROWS, NULL);
    st.s.n_logit_rows = 1;
    st.s.logit_rows = &bad_row;
    if (c->ops->begin_step(c->be, &st.s) == SLM_OK)
        fail_msg("%s: begin_step accepted logit row %d of %d tokens", c->label, bad_row, ROWS);
    probe_op(pr, pr->y);
    finish_fails(c, "a bad step", "logit row");
    expect_unchanged(c, pr->y, pr->sentinel, ROWS * 8, "an op in a failed step");
}

/* An op on a buffer too small for it fails the step, naming the op. */
static void too_small_fails(const probe *pr)
{
    const cfg *c = pr->c;
    slm_buf *small = dev_floats(c, NULL, 3);
    plain_step st;
    plain_step_init(&st, ROWS, NULL);
    begin_ok(c, &st.s, "a too-small output");
    probe_op(pr, small);
    finish_fails(c, "an op on a too-small buffer", "swiglu");
    c->ops->buf_free(c->be, small);
}

/* An op outside a step is refused, naming it, and writes nothing; submit
 * and wait without a step fail. */
static void outside_step_refused(const probe *pr)
{
    const cfg *c = pr->c;
    float *before = dev_read(c, pr->y, ROWS * 8);
    probe_op(pr, pr->y);
    if (!strstr(slm_last_error(), "swiglu"))
        fail_msg("%s: an op outside a step: expected an error naming it, got '%s'", c->label,
                 slm_last_error());
    expect_unchanged(c, pr->y, before, ROWS * 8, "an op outside a step");
    free(before);
    assert_int_not_equal(c->ops->submit(c->be), SLM_OK);
    assert_int_not_equal(c->ops->wait(c->be), SLM_OK);
}

/* A token id outside the embedding table is known only to the op: the step
 * fails at wait, naming the token. */
static void bad_token_fails(const cfg *c)
{
    float row[32];
    tu_fill_normal(row, 32, 1.0f);
    slm_weight *w = load_ok(c, SLM_TYPE_F32, 1, 32, row);
    int32_t bad_id = 7;
    slm_buf *e = dev_floats(c, NULL, 32);
    plain_step st;
    plain_step_init(&st, 1, &bad_id);
    begin_ok(c, &st.s, "a bad token id");
    c->ops->embed(c->be, w, at(e));
    finish_fails(c, "a token id outside the table", "token");
    c->ops->weight_free(c->be, w);
    c->ops->buf_free(c->be, e);
}

/* RoPE of n_rot 10 on heads of 8: the op fails the step, naming itself. */
static void bad_rope_fails(const cfg *c)
{
    slm_rope_params p = {.mode = SLM_ROPE_NEOX, .n_rot = 10, .freq_base = 1e4f, .freq_scale = 1};
    slm_rope *r = NULL;
    assert_int_equal(c->ops->rope_create(c->be, &p, &r), SLM_OK);
    slm_buf *x = dev_floats(c, NULL, 8);
    plain_step st;
    plain_step_init(&st, 1, NULL);
    begin_ok(c, &st.s, "rope past its head");
    c->ops->rope(c->be, at(x), 8, 1, 8, r);
    finish_fails(c, "rope with n_rot past the head size", "rope");
    c->ops->buf_free(c->be, x);
    c->ops->rope_free(c->be, r);
}

/* Each failure, and after each a good step that works. */
static void error_contract_one(const cfg *c)
{
    probe pr;
    probe_init(&pr, c);
    bad_step_fails(&pr);
    too_small_fails(&pr);
    probe_works(&pr, "a good step after failed ones");
    outside_step_refused(&pr);
    probe_works(&pr, "a step after an op outside one");
    bad_token_fails(c);
    probe_works(&pr, "a step after a bad token id");
    bad_rope_fails(c);
    probe_works(&pr, "a step after a bad rope");
    probe_free(&pr);
}

/* Bad block tables and slots fail the step's plan at begin_step (and wait
 * reports it); a kv op on a pool the step was not begun with fails the
 * step naming the op; afterwards the pool computes correctly. */
static void expect_plan_error(world *w, step_arrays *a, const char *needle)
{
    const cfg *c = w->c;
    if (c->ops->begin_step(c->be, &a->s) == SLM_OK)
        fail_msg("%s: begin_step accepted a step that should fail ('%s')", c->label, needle);
    if (!strstr(slm_last_error(), needle))
        fail_msg("%s: begin_step: expected an error naming '%s', got '%s'", c->label, needle,
                 slm_last_error());
    finish_fails(c, "a step with bad KV indices", needle);
}

static void kv_plan_errors_one(const cfg *c)
{
    slm_type type = SLM_TYPE_F32;
    shape sh = {.n_heads = 4, .n_kv = 2, .hd = 40, .bs = 4};
    world w;
    world_init(&w, c, sh, type, 2);
    tok toks[6] = {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {1, 0}};
    step_arrays *a = xmalloc(sizeof *a);
    build_step(&w, toks, 6, a);
    a->bt[a->start[0] + 1] = w.n_blocks; /* a block id past the pool, in a block token 4 needs */
    expect_plan_error(&w, a, "block");
    build_step(&w, toks, 6, a);
    a->bt[a->start[1]] = -7;
    expect_plan_error(&w, a, "block");
    build_step(&w, toks, 6, a);
    a->len[0] = 1; /* too short for position 4 */
    expect_plan_error(&w, a, "block");
    build_step(&w, toks, 6, a);
    a->slot[3] = w.n_blocks * sh.bs;
    expect_plan_error(&w, a, "slot");
    build_step(&w, toks, 6, a);
    a->slot[0] = -1;
    expect_plan_error(&w, a, "slot");
    build_step(&w, toks, 6, a);
    a->seq[2] = 2; /* a sequence the step does not have */
    expect_plan_error(&w, a, "sequence");

    /* kv_store on another pool than the step's */
    world other;
    world_init(&other, c, sh, type, 2);
    size_t stride = 4 * 40 + 2 * 2 * 40;
    slm_buf *qb = dev_floats(c, NULL, 6 * stride);
    build_step(&w, toks, 6, a);
    begin_ok(c, &a->s, "kv_store on another pool");
    c->ops->kv_store(c->be, other.kv, 0, at_float(qb, 160), (int)stride, at_float(qb, 240),
                     (int)stride);
    finish_fails(c, "kv_store on a pool the step was not begun with", "kv_store");
    c->ops->buf_free(c->be, qb);
    world_free(&other);

    run_step(&w, toks, 6, 0, 0, 0); /* and the pool still works */
    free(a);
    world_free(&w);
}

static void error_contract(void **state)
{
    (void)state;
    for_each(G_ERRORS, error_contract_one);
    for_each(G_ERRORS, kv_plan_errors_one);
}

/* ------------------------------------------------------------------------ */
/* chunked steps                                                             */

/* Records `ops` dependent in-place ops on b: b += b, then b *= 1.5,
 * alternately. */
static void record_chain(const cfg *c, slm_buf *b, size_t n, int ops)
{
    for (int k = 0; k < ops; k++) {
        if (k % 2)
            c->ops->scale(c->be, at(b), 1.5f, n);
        else
            c->ops->add(c->be, at(b), at(b), n, at(b));
    }
}

static void check_chain(const cfg *c, slm_buf *b, const float *x, const float *want, size_t n,
                        int ops)
{
    assert_int_equal(c->ops->upload(c->be, at(b), x, n * 4), SLM_OK);
    plain_step st;
    plain_step_init(&st, 1, NULL);
    begin_ok(c, &st.s, "a chain of ops");
    record_chain(c, b, n, ops);
    finish_ok(c, "a chain of ops");
    float *y = dev_read(c, b, n);
    /* doubling and ×1.5 of these values are exact in f32 with no overflow:
     * the result must equal the host's bit for bit */
    if (memcmp(y, want, n * 4) != 0)
        fail_msg("%s: a chain of %d ops differs from the host's", c->label, ops);
    free(y);
}

/* A step longer than a submission chunk (vk_chunk 2): a chain of dependent
 * ops gives the host's result; a step that fails after chunks went to the
 * device waits for them, names the op, and leaves the handle usable. */
static void chain_one(const cfg *c)
{
    if (!c->ops->add || !c->ops->scale) {
        fprintf(stderr, "%s: add/scale not offered, chain skipped\n", c->label);
        return;
    }
    enum { N = 1000, OPS = 11 };
    float *x = xmalloc(N * 4), *want = xmalloc(N * 4);
    tu_fill_uniform(x, N, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        want[i] = x[i];
        for (int k = 0; k < OPS; k++)
            want[i] = k % 2 ? want[i] * 1.5f : want[i] + want[i];
    }
    slm_buf *b = dev_floats(c, x, N);
    check_chain(c, b, x, want, N, OPS);
    plain_step st;
    plain_step_init(&st, 1, NULL);
    begin_ok(c, &st.s, "a failing chain");
    record_chain(c, b, N, OPS);
    c->ops->scale(c->be, at(b), 2.0f, N + 1);
    finish_fails(c, "a chain ending in an op past its buffer", "scale");
    check_chain(c, b, x, want, N, OPS);
    free(x);
    free(want);
    c->ops->buf_free(c->be, b);
}

static void chunked_steps(void **state)
{
    (void)state;
    for_each(G_CHAIN, chain_one);
}

/* ------------------------------------------------------------------------ */
/* backend specifics: the CPU's knobs and F16 decoder, the GPU device choice */

static const cfg *first_cfg(const char *backend)
{
    for (int i = 0; i < g_ncfg; i++)
        if (g_cfgs[i].be && !strcmp(g_cfgs[i].ops->name, backend))
            return &g_cfgs[i];
    return NULL;
}

/* Every configuration opened (a GPU backend without a device was dropped
 * before), and each CPU one at the level and precision it asked for. */
static void configs_open(void **state)
{
    (void)state;
    for (int i = 0; i < g_ncfg; i++) {
        const cfg *c = &g_cfgs[i];
        if (!c->be)
            fail_msg("%s did not open: %s", c->label, c->why);
        if (!is_cpu(c))
            continue;
        char want[48];
        snprintf(want, sizeof want, "simd %s", c->p.cpu_simd);
        assert_non_null(strstr(c->ops->describe(c->be), want));
        assert_true((strstr(c->ops->describe(c->be), "q8x2") != NULL) == (c->p.cpu_act_terms == 2));
    }
}

/* SIMD level names parse or are refused by name; open refuses a bad knob,
 * naming it; n_threads 0 means one per core. */
static void cpu_knobs(void **state)
{
    (void)state;
    const cfg *c = first_cfg("cpu");
    if (!c)
        skip();
    slm_simd l;
    assert_int_equal(slm_simd_parse("scalar", &l), SLM_OK);
    assert_int_equal(l, SLM_SIMD_SCALAR);
    assert_int_equal(slm_simd_parse("sse9", &l), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "sse9"));
    assert_non_null(strstr(slm_last_error(), "avx2"));
    assert_true(slm_simd_available(slm_simd_best()));
    for (int i = 0; i < SLM_SIMD_COUNT; i++) {
        if (slm_simd_available((slm_simd)i))
            continue;
        assert_int_equal(slm_simd_parse(slm_simd_name((slm_simd)i), &l), SLM_STATUS_UNSUPPORTED);
        assert_non_null(strstr(slm_last_error(), "not available"));
    }
    slm_backend_params p;
    slm_backend_params_default(&p);
    slm_backend *be = NULL;
    p.cpu_simd = "bogus";
    assert_int_not_equal(c->ops->open(&p, &be), SLM_OK);
    assert_null(be);
    assert_non_null(strstr(slm_last_error(), "bogus"));
    p.cpu_simd = NULL;
    p.cpu_act_terms = 3;
    assert_int_equal(c->ops->open(&p, &be), SLM_STATUS_INVALID_ARGUMENT);
    assert_null(be);
    p.cpu_act_terms = 0;
    assert_int_equal(c->ops->open(&p, &be), SLM_OK);
    assert_non_null(strstr(c->ops->describe(be), "thread"));
    c->ops->close(be);
    c->ops->close(NULL);
}

/* The CPU's F16 KV decoder (a lookup table) against fp16.h for every bit
 * pattern, bit for bit (NaNs included), at an odd byte alignment. Not
 * reachable through the ops table with every pattern, so tested here. */
static void cpu_f16_kv_decoder(void **state)
{
    (void)state;
    if (!first_cfg("cpu"))
        skip();
    uint8_t *src = xmalloc(2 * 65536 + 1);
    float *dst = xmalloc(65536 * sizeof(float));
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t v = (uint16_t)h;
        memcpy(src + 1 + 2 * h, &v, 2);
    }
    tu_poison(dst, 65536);
    slm_cpu_f16_to_f32_row(src + 1, dst, 65536);
    for (uint32_t h = 0; h < 65536; h++) {
        float want = slm_f16_to_f32((uint16_t)h);
        if (memcmp(&dst[h], &want, 4) != 0)
            fail_msg("f16 0x%04x: got %a want %a", h, (double)dst[h], (double)want);
    }
    free(src);
    free(dst);
}

/* A GPU backend: an index past its devices is NOT_FOUND; Vulkan names a
 * device nobody has, CUDA an index by cuda_device; "GPU only" refuses a CPU implementation such as
 * lavapipe when that is what opened. */
static void gpu_device_one(const cfg *c)
{
    if (is_cpu(c) || strcmp(c->label + strlen(c->ops->name), " default") != 0)
        return;
    slm_backend_params p;
    slm_backend_params_default(&p);
    slm_backend *be = NULL;
    p.device_index = 99;
    assert_int_equal(c->ops->open(&p, &be), SLM_STATUS_NOT_FOUND);
    assert_null(be);
    if (is_vulkan(c)) {
        p.device_index = SLM_DEVICE_ANY;
        p.vk_device = "no-such-device-xyz";
        assert_int_equal(c->ops->open(&p, &be), SLM_STATUS_NOT_FOUND);
        assert_non_null(strstr(slm_last_error(), "no-such-device-xyz"));
        p.vk_device = NULL;
    }
    if (is_cuda(c)) { /* cuda.device 999: an index past the devices, named */
        p.device_index = SLM_DEVICE_ANY;
        p.cuda_device = 1000;
        assert_int_equal(c->ops->open(&p, &be), SLM_STATUS_NOT_FOUND);
        assert_non_null(strstr(slm_last_error(), "999"));
        p.cuda_device = 0;
    }
    p.device_index = SLM_DEVICE_GPU_ONLY;
    slm_status st = c->ops->open(&p, &be);
    if (strstr(c->ops->describe(c->be), "CPU implementation")) {
        assert_int_equal(st, SLM_STATUS_DEVICE);
        assert_null(be);
    } else {
        assert_int_equal(st, SLM_OK);
        c->ops->close(be);
    }
}

static void gpu_device_choice(void **state)
{
    (void)state;
    for_each(~0u, gpu_device_one);
}

int main(int argc, char **argv)
{
    const char *mode = "cpu", *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpu") || !strcmp(argv[i], "--gpu") || !strcmp(argv[i], "--all")) {
            mode = argv[i] + 2;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--cpu | --gpu | --all] [--only NAME]\n", argv[0]);
            return 2;
        }
    }
    tu_seed();
    if (setup_configs(mode, only) == 0) {
        printf("skipped: no device\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(configs_open),
        cmocka_unit_test(checker_catches_wrong_result),
        cmocka_unit_test(supports_and_refusals),
        cmocka_unit_test(embed_all_types),
        cmocka_unit_test(rmsnorm_both),
        cmocka_unit_test(matmul_all_types),
        cmocka_unit_test(split_weights),
        cmocka_unit_test(rope_modes),
        cmocka_unit_test(attention_paged),
        cmocka_unit_test(small_ops),
        cmocka_unit_test(error_contract),
        cmocka_unit_test(chunked_steps),
        cmocka_unit_test(cpu_knobs),
        cmocka_unit_test(cpu_f16_kv_decoder),
        cmocka_unit_test(gpu_device_choice),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    close_configs();
    return failed;
}
