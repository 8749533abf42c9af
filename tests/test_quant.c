/*
 * test_quant.c — the type table and the reference (de)quantizers of
 * runtime/quant.c.
 *
 *  - the table: every GGML id 0..39 has the block size and byte count of
 *    ../shared/gguf-facts.md §2 (typed in again here, independently), the
 *    removed ids are unknown, and exactly the 15 file formats are supported;
 *  - known answers: tests/fixtures/quant/<type>.bin (made by
 *    scripts/make_quant_fixtures.py with gguf-py) must decode bit for bit to
 *    gguf-py's values; where gguf-py made the bytes, our quantizer must match
 *    them exactly for the float and legacy types (and the count of matching
 *    blocks is reported for every type);
 *  - round trips: random rows at ragged lengths quantize and decode within
 *    each type's error bound, write exactly their row size, and bad lengths
 *    or types are refused without touching the output.
 */
#include "testutil.h"

#include "fp16.h"
#include "quant.h"
#include "quant_blocks.h"
#include "slm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* gguf-facts §2: id, block elements, block bytes; 0 elements = removed. */
static const struct { int id; int elems, bytes; } FACTS[SLM_TYPE_COUNT] = {
    {0, 1, 4},      {1, 1, 2},      {2, 32, 18},    {3, 32, 20},    {4, 0, 0},
    {5, 0, 0},      {6, 32, 22},    {7, 32, 24},    {8, 32, 34},    {9, 32, 36},
    {10, 256, 84},  {11, 256, 110}, {12, 256, 144}, {13, 256, 176}, {14, 256, 210},
    {15, 256, 292}, {16, 256, 66},  {17, 256, 74},  {18, 256, 98},  {19, 256, 50},
    {20, 32, 18},   {21, 256, 110}, {22, 256, 82},  {23, 256, 136}, {24, 1, 1},
    {25, 1, 2},     {26, 1, 4},     {27, 1, 8},     {28, 1, 8},     {29, 256, 56},
    {30, 1, 2},     {31, 0, 0},     {32, 0, 0},     {33, 0, 0},     {34, 256, 54},
    {35, 256, 66},  {36, 0, 0},     {37, 0, 0},     {38, 0, 0},     {39, 32, 17},
};

/* The 15 file formats slm reads, with their fixture file names. */
static const struct { int type; const char *file; } FORMATS[] = {
    {SLM_TYPE_F32, "f32"},       {SLM_TYPE_F16, "f16"},   {SLM_TYPE_BF16, "bf16"},
    {SLM_TYPE_Q4_0, "q4_0"},     {SLM_TYPE_Q4_1, "q4_1"}, {SLM_TYPE_Q5_0, "q5_0"},
    {SLM_TYPE_Q5_1, "q5_1"},     {SLM_TYPE_Q8_0, "q8_0"}, {SLM_TYPE_Q2_K, "q2_k"},
    {SLM_TYPE_Q3_K, "q3_k"},     {SLM_TYPE_Q4_K, "q4_k"}, {SLM_TYPE_Q5_K, "q5_k"},
    {SLM_TYPE_Q6_K, "q6_k"},     {SLM_TYPE_IQ4_NL, "iq4_nl"}, {SLM_TYPE_IQ4_XS, "iq4_xs"},
};
#define N_FORMATS (int)(sizeof FORMATS / sizeof FORMATS[0])

static void test_type_table(void **state)
{
    (void)state;
    int n_supported = 0;
    for (int id = 0; id < SLM_TYPE_COUNT; id++) {
        const slm_type_info *ti = slm_type_get(id);
        assert_int_equal(FACTS[id].id, id);
        if (FACTS[id].elems == 0) {
            assert_null(ti);
            assert_false(slm_type_supported(id));
            assert_int_equal(slm_type_row_bytes(id, 256), 0);
            char want[32];
            snprintf(want, sizeof want, "type#%d", id);
            assert_string_equal(slm_type_name(id), want);
            continue;
        }
        assert_non_null(ti);
        assert_non_null(ti->name);
        assert_string_equal(slm_type_name(id), ti->name);
        assert_int_equal(ti->block_elems, FACTS[id].elems);
        assert_int_equal(ti->block_bytes, FACTS[id].bytes);
        assert_int_equal(slm_type_supported(id), ti->supported);
        n_supported += ti->supported;
        /* row sizes: 7 blocks, and a ragged count (when blocks are > 1) */
        assert_int_equal(slm_type_row_bytes(id, 7 * (int64_t)ti->block_elems), 7 * (size_t)ti->block_bytes);
        if (ti->block_elems > 1)
            assert_int_equal(slm_type_row_bytes(id, ti->block_elems + 1), 0);
    }
    /* exactly the 15 formats are supported (each one is, and no others) */
    assert_int_equal(n_supported, N_FORMATS);
    for (int i = 0; i < N_FORMATS; i++)
        assert_true(slm_type_supported(FORMATS[i].type));
    assert_false(slm_type_supported(SLM_TYPE_Q8_K));
    assert_false(slm_type_supported(SLM_TYPE_Q8_1));
    assert_string_equal(slm_type_name(SLM_TYPE_Q4_K), "q4_K");
    assert_string_equal(slm_type_name(SLM_TYPE_IQ4_XS), "iq4_xs");
    assert_string_equal(slm_type_name(SLM_TYPE_BF16), "bf16");
    /* outside the table */
    assert_null(slm_type_get(-1));
    assert_null(slm_type_get(SLM_TYPE_COUNT));
    assert_null(slm_type_get(1 << 30));
    assert_string_equal(slm_type_name(-3), "type#-3");
    assert_string_equal(slm_type_name(40), "type#40");
    assert_int_equal(slm_type_row_bytes(SLM_TYPE_Q4_0, -32), 0);
    assert_int_equal(slm_type_row_bytes(SLM_TYPE_Q8_0, 0), 0);
    /* byte counts that overflow size_t are refused, not wrapped */
    assert_int_equal(slm_type_row_bytes(28 /* f64 */, INT64_MAX), 0);
}

/* ---- known answers from gguf-py ---------------------------------------- */

typedef struct fixture {
    uint32_t type, n, flags, nbytes;
    float *src, *deq;
    uint8_t *bytes;
    void *raw;
} fixture;

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Loads and validates tests/fixtures/quant/<name>.bin (layout in
 * scripts/make_quant_fixtures.py). Fails the test on a malformed file. */
static fixture load_fixture(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/quant/%s.bin", name);
    size_t size = 0;
    uint8_t *raw = tu_read_file(path, &size);
    if (!raw)
        fail_msg("cannot read %s (run from the source root)", path);
    assert_true(size >= 24);
    assert_memory_equal(raw, "SLMQFIX1", 8);
    fixture f = {le32(raw + 8), le32(raw + 12), le32(raw + 16), le32(raw + 20), NULL, NULL, NULL, raw};
    assert_int_equal(size, 24 + (size_t)f.n * 8 + f.nbytes);
    /* copied out so the floats are aligned */
    f.src = malloc((size_t)f.n * 4);
    f.deq = malloc((size_t)f.n * 4);
    f.bytes = malloc(f.nbytes);
    assert_non_null(f.src);
    assert_non_null(f.deq);
    assert_non_null(f.bytes);
    memcpy(f.src, raw + 24, (size_t)f.n * 4);
    memcpy(f.bytes, raw + 24 + (size_t)f.n * 4, f.nbytes);
    memcpy(f.deq, raw + 24 + (size_t)f.n * 4 + f.nbytes, (size_t)f.n * 4);
    return f;
}

static void free_fixture(fixture *f)
{
    free(f->src);
    free(f->deq);
    free(f->bytes);
    free(f->raw);
}

/* Types whose reference quantizer must reproduce gguf-py byte for byte. */
static int must_match_gguf(int type)
{
    return type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16 ||
           type == SLM_TYPE_Q4_0 || type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_0 ||
           type == SLM_TYPE_Q5_1 || type == SLM_TYPE_Q8_0;
}

static void test_known_blocks(void **state)
{
    (void)state;
    for (int t = 0; t < N_FORMATS; t++) {
        fixture f = load_fixture(FORMATS[t].file);
        const slm_type_info *ti = slm_type_get(FORMATS[t].type);
        assert_int_equal(f.type, FORMATS[t].type);
        assert_int_equal(f.nbytes, slm_type_row_bytes((int)f.type, f.n));

        /* decode: bit-identical to gguf-py (no tolerance) */
        float *out = malloc((size_t)f.n * 4);
        assert_non_null(out);
        tu_poison(out, f.n);
        assert_true(slm_dequantize_row((int)f.type, f.bytes, out, f.n));
        uint32_t mismatches = 0;
        for (uint32_t i = 0; i < f.n; i++) {
            if (slm_f32_bits(out[i]) != slm_f32_bits(f.deq[i])) {
                if (mismatches++ < 5)
                    fprintf(stderr, "%s[%u]: got %.9g (0x%08x), gguf-py %.9g (0x%08x)\n", ti->name, i,
                            out[i], slm_f32_bits(out[i]), f.deq[i], slm_f32_bits(f.deq[i]));
            }
        }
        assert_int_equal(mismatches, 0);

        /* the same bytes at an odd address decode the same (blocks in a file
         * are only 2-byte aligned; src may be anywhere) */
        uint8_t *odd = malloc(f.nbytes + 1);
        assert_non_null(odd);
        memcpy(odd + 1, f.bytes, f.nbytes);
        tu_poison(out, f.n);
        assert_true(slm_dequantize_row((int)f.type, odd + 1, out, f.n));
        assert_memory_equal(out, f.deq, (size_t)f.n * 4);
        free(odd);

        if (f.flags & 1) {
            /* gguf-py quantized src: compare our reference quantizer's bytes */
            uint8_t *mine = malloc(f.nbytes);
            assert_non_null(mine);
            assert_true(slm_quantize_row_ref((int)f.type, f.src, mine, f.n));
            uint32_t nblocks = f.n / (uint32_t)ti->block_elems, same = 0;
            for (uint32_t b = 0; b < nblocks; b++)
                same += !memcmp(mine + (size_t)b * ti->block_bytes, f.bytes + (size_t)b * ti->block_bytes,
                                (size_t)ti->block_bytes);
            fprintf(stderr, "%-6s: reference quantizer matches gguf-py in %u of %u blocks\n", ti->name, same,
                    nblocks);
            if (must_match_gguf((int)f.type))
                assert_int_equal(same, nblocks);
            free(mine);
        } else {
            fprintf(stderr, "%-6s: gguf-py cannot quantize it; decoded random blocks only\n", ti->name);
        }
        free(out);
        free_fixture(&f);
    }
}

/* ---- round trips --------------------------------------------------------- */

/*
 * Bound on RMS(dequant(quant(x)) − x) / RMS(x) for a row of normal values.
 * Measured with this file's rows: "mean" over all row lengths, "tail" the
 * worst single-block row in 40 000 trials (3 000 for 256-element blocks);
 * each bound is about 15% above the tail. Short rows have the heaviest
 * tails: one 32-value block of Q4_0 (ggml's max/−8 scheme, reproduced
 * exactly) occasionally reaches 0.16 although its mean is 0.085. F32 is
 * exact; F16/BF16 are checked element by element (see test_round_trip).
 *
 *   type    mean    tail    bound        type    mean    tail    bound
 *   q8_0    0.0053  0.0097  0.012        q4_0    0.085   0.164   0.19
 *   q8_1    0.0053  0.0104  0.012        q4_1    0.078   0.137   0.16
 *   q8_K    0.0069  0.0113  0.013        q4_K    0.071   0.085   0.098
 *   q6_K    0.0166  0.0207  0.024        iq4_nl  0.073   0.120   0.14
 *   q5_0    0.042   0.082   0.095        iq4_xs  0.074   0.087   0.10
 *   q5_1    0.037   0.064   0.075        q3_K    0.144   0.167   0.19
 *   q5_K    0.036   0.042   0.048        q2_K    0.268   0.308   0.35
 */
static const struct { int type; double bound; } BOUNDS[] = {
    {SLM_TYPE_F32, 0.0},      {SLM_TYPE_F16, 0.0},      {SLM_TYPE_BF16, 0.0},
    {SLM_TYPE_Q8_0, 0.012},   {SLM_TYPE_Q8_1, 0.012},   {SLM_TYPE_Q8_K, 0.013},
    {SLM_TYPE_Q6_K, 0.024},   {SLM_TYPE_Q5_0, 0.095},   {SLM_TYPE_Q5_1, 0.075},
    {SLM_TYPE_Q5_K, 0.048},   {SLM_TYPE_Q4_0, 0.19},    {SLM_TYPE_Q4_1, 0.16},
    {SLM_TYPE_Q4_K, 0.098},   {SLM_TYPE_IQ4_NL, 0.14},  {SLM_TYPE_IQ4_XS, 0.10},
    {SLM_TYPE_Q3_K, 0.19},    {SLM_TYPE_Q2_K, 0.35},
};
#define N_BOUNDS (int)(sizeof BOUNDS / sizeof BOUNDS[0])

#define GUARD 16 /* bytes after the row that must stay untouched */

/* Quantizes x[0..n) as type and decodes it into y; checks that exactly the
 * row's bytes were written. Returns RMS error / RMS value. */
static double round_trip(int type, const float *x, float *y, int64_t n)
{
    size_t rb = slm_type_row_bytes(type, n);
    assert_true(rb > 0);
    uint8_t *q = malloc(rb + GUARD);
    assert_non_null(q);
    memset(q, 0xA5, rb + GUARD);
    assert_true(slm_quantize_row_ref(type, x, q, n));
    for (int i = 0; i < GUARD; i++)
        assert_int_equal(q[rb + i], 0xA5);
    tu_poison(y, (size_t)n);
    assert_true(slm_dequantize_row(type, q, y, n));
    free(q);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(isfinite(y[i]));
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        sx += (double)x[i] * x[i];
    }
    return sx > 0 ? sqrt(se / sx) : sqrt(se);
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int t = 0; t < N_BOUNDS; t++) {
        int type = BOUNDS[t].type;
        int be = slm_type_get(type)->block_elems;
        /* ragged numbers of blocks; for 1-element "blocks" ragged lengths */
        const int nblocks[] = {1, 3, 7, be == 1 ? 1001 : 13};
        double worst = 0;
        for (int k = 0; k < 4; k++) {
            int64_t n = (int64_t)nblocks[k] * (be == 1 ? tu_int(1, 97) : be);
            float scale = expf(tu_uniform(-6.0f, 4.0f)); /* about 0.0025 .. 55 */
            float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
            assert_non_null(x);
            assert_non_null(y);
            tu_fill_normal(x, (size_t)n, scale);
            double e = round_trip(type, x, y, n);
            worst = e > worst ? e : worst;
            if (type == SLM_TYPE_F16 || type == SLM_TYPE_BF16) {
                /* exactly the conversion's rounding: the same bits as
                 * converting each element (itself tested in test_fp16) */
                for (int64_t i = 0; i < n; i++) {
                    float want = type == SLM_TYPE_F16 ? slm_f16_to_f32(slm_f32_to_f16(x[i]))
                                                      : slm_bf16_to_f32(slm_f32_to_bf16(x[i]));
                    assert_int_equal(slm_f32_bits(y[i]), slm_f32_bits(want));
                }
            } else if (type == SLM_TYPE_F32) {
                assert_memory_equal(x, y, (size_t)n * 4); /* exact */
            } else {
                /* RMS relative error within the type's bound (table above) */
                if (e >= BOUNDS[t].bound)
                    fprintf(stderr, "%s: n=%lld scale=%g error %.5f >= bound %.3f\n", slm_type_name(type),
                            (long long)n, scale, e, BOUNDS[t].bound);
                assert_true(e < BOUNDS[t].bound);
            }
            free(x);
            free(y);
        }
        fprintf(stderr, "%-7s worst RMS error / RMS value %.5f (bound %.3f)\n", slm_type_name(type), worst,
                BOUNDS[t].bound);
    }
}

/* Zero rows, constant rows and rows with one outlier stay finite and exact
 * where the format can represent them. */
static void test_degenerate_rows(void **state)
{
    (void)state;
    float x[512], y[512];
    for (int t = 0; t < N_BOUNDS; t++) {
        int type = BOUNDS[t].type;
        int be = slm_type_get(type)->block_elems;
        int n = be == 1 ? 64 : (be == 32 ? 64 : 512);
        memset(x, 0, sizeof x);
        assert_true(round_trip(type, x, y, n) == 0.0); /* zeros decode to zeros, exactly */
        for (int i = 0; i < n; i++)
            x[i] = (i % 37 == 5) ? 100.0f : 0.01f * tu_normal();
        double e = round_trip(type, x, y, n);
        /* an outlier row is dominated by the outlier, so any sensible coding
         * keeps the relative error within the type's normal bound */
        assert_true(e <= (BOUNDS[t].bound > 0 ? BOUNDS[t].bound : 0.004));
    }
}

/* Q8_K's bsums are the sums of each 16 quants, Q8_1's s is d·Σqs. */
static void test_activation_formats(void **state)
{
    (void)state;
    float x[768];
    tu_fill_normal(x, 768, 2.0f);
    slm_block_q8_k k[3];
    assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_K, x, k, 768));
    for (int b = 0; b < 3; b++) {
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += k[b].qs[16 * g + j];
            assert_int_equal(k[b].bsums[g], sum);
        }
    }
    slm_block_q8_1 q[24];
    assert_true(slm_quantize_row_ref(SLM_TYPE_Q8_1, x, q, 768));
    for (int b = 0; b < 24; b++) {
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += q[b].qs[j];
        float want = slm_f16_to_f32(q[b].d) * (float)sum;
        /* s = f16(d·Σq) with d before its own f16 rounding (ggml's order), so
         * s is within two half-ulps of f16 (2^-10 relative) of f16(d)·Σq */
        assert_true(fabsf(slm_f16_to_f32(q[b].s) - want) <= fabsf(want) * 0x1p-10f + 0x1p-24f);
    }
}

/* Ragged lengths and unknown or unsupported types are refused with a
 * message, and the output is left untouched. */
static void test_refusals(void **state)
{
    (void)state;
    float x[400], y[300];
    uint8_t q[1024];
    tu_fill_normal(x, 400, 1.0f);
    for (int t = 0; t < N_BOUNDS; t++) {
        int type = BOUNDS[t].type;
        int be = slm_type_get(type)->block_elems;
        if (be == 1)
            continue;
        int64_t bad[] = {be + 1, be - 1, -be, be + be / 2};
        for (int k = 0; k < 4; k++) {
            memset(q, 0x5A, sizeof q);
            tu_poison(y, 300);
            assert_false(slm_quantize_row_ref(type, x, q, bad[k]));
            assert_true(strlen(slm_last_error()) > 0);
            assert_false(slm_dequantize_row(type, q, y, bad[k]));
            for (size_t i = 0; i < sizeof q; i++)
                assert_int_equal(q[i], 0x5A);
            for (int i = 0; i < 300; i++)
                assert_true(isnan(y[i]));
        }
    }
    const int refused[] = {-1, 4, 5, 16, 17, 24, 28, 29, 31, 34, 35, 38, 39, 40, 1000};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        memset(q, 0x5A, sizeof q);
        tu_poison(y, 300);
        assert_false(slm_quantize_row_ref(refused[k], x, q, 256));
        assert_false(slm_dequantize_row(refused[k], q, y, 256));
        assert_true(strlen(slm_last_error()) > 0);
        for (size_t i = 0; i < sizeof q; i++)
            assert_int_equal(q[i], 0x5A);
        for (int i = 0; i < 256; i++)
            assert_true(isnan(y[i]));
    }
    /* missing buffers are refused, not dereferenced */
    assert_false(slm_dequantize_row(SLM_TYPE_Q4_0, NULL, y, 32));
    assert_false(slm_quantize_row_ref(SLM_TYPE_Q4_0, x, NULL, 32));
    /* n = 0 is a valid empty row */
    assert_true(slm_dequantize_row(SLM_TYPE_Q4_K, q, y, 0));
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_known_blocks),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_degenerate_rows),
        cmocka_unit_test(test_activation_formats),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
