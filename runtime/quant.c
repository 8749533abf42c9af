/*
 * quant.c — the GGML tensor type table and the scalar reference
 * (de)quantizers declared in quant.h.
 *
 * The table is indexed by GGML type id so a GGUF tensor-info record's type
 * field looks its entry up directly; removed ids have a zero block size and
 * are reported as unknown. The dequantizers follow ../shared/gguf-facts.md §3
 * and multiply in f32 in the same order ggml does, so their output is bit for
 * bit what ggml (and gguf-py) produce: they are the oracle for every backend
 * kernel. The quantizers are written from the format descriptions; they aim
 * for low error, not for speed.
 */
#include "quant.h"

#include "fp16.h"
#include "quant_blocks.h"
#include "quant_decode.h"
#include "status.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The type table (gguf-facts §2). Ids not listed are removed types.        */

static const slm_type_info type_table[SLM_TYPE_COUNT] = {
    [0] = {"f32", 1, 4, true},
    [1] = {"f16", 1, 2, true},
    [2] = {"q4_0", 32, 18, true},
    [3] = {"q4_1", 32, 20, true},
    [6] = {"q5_0", 32, 22, true},
    [7] = {"q5_1", 32, 24, true},
    [8] = {"q8_0", 32, 34, true},
    [9] = {"q8_1", 32, 36, false},
    [10] = {"q2_K", 256, 84, true},
    [11] = {"q3_K", 256, 110, true},
    [12] = {"q4_K", 256, 144, true},
    [13] = {"q5_K", 256, 176, true},
    [14] = {"q6_K", 256, 210, true},
    [15] = {"q8_K", 256, 292, false},
    [16] = {"iq2_xxs", 256, 66, false},
    [17] = {"iq2_xs", 256, 74, false},
    [18] = {"iq3_xxs", 256, 98, false},
    [19] = {"iq1_s", 256, 50, false},
    [20] = {"iq4_nl", 32, 18, true},
    [21] = {"iq3_s", 256, 110, false},
    [22] = {"iq2_s", 256, 82, false},
    [23] = {"iq4_xs", 256, 136, true},
    [24] = {"i8", 1, 1, false},
    [25] = {"i16", 1, 2, false},
    [26] = {"i32", 1, 4, false},
    [27] = {"i64", 1, 8, false},
    [28] = {"f64", 1, 8, false},
    [29] = {"iq1_m", 256, 56, false},
    [30] = {"bf16", 1, 2, true},
    [34] = {"tq1_0", 256, 54, false},
    [35] = {"tq2_0", 256, 66, false},
    [39] = {"mxfp4", 32, 17, false},
};

const slm_type_info *slm_type_get(int type)
{
    if (type < 0 || type >= SLM_TYPE_COUNT || type_table[type].block_elems == 0)
        return NULL;
    return &type_table[type];
}

const char *slm_type_name(int type)
{
    static _Thread_local char buf[32];
    const slm_type_info *ti = slm_type_get(type);
    if (ti)
        return ti->name;
    snprintf(buf, sizeof buf, "type#%d", type);
    return buf;
}

bool slm_type_supported(int type)
{
    const slm_type_info *ti = slm_type_get(type);
    return ti && ti->supported;
}

size_t slm_type_row_bytes(int type, int64_t n)
{
    const slm_type_info *ti = slm_type_get(type);
    if (!ti || n < 0 || n % ti->block_elems != 0)
        return 0;
    int64_t blocks = n / ti->block_elems;
    if ((uint64_t)blocks > SIZE_MAX / (size_t)ti->block_bytes)
        return 0;
    return (size_t)blocks * (size_t)ti->block_bytes;
}

/* ------------------------------------------------------------------------ */
/* Dequantization, one block at a time (gguf-facts §3).                     */
/*
 * Products are written as separate statements where ggml computes a scale
 * first (e.g. Q4_K's d·sc and dmin·m): that fixes the rounding order, and a
 * compiler that contracts a·b − c into an FMA only does so inside one
 * expression, so splitting keeps the result bit-identical to ggml's.
 */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static void deq_q4_0(const slm_block_q4_0 *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    for (int j = 0; j < SLM_QK / 2; j++) {
        y[j] = d * (float)(slm_qd_nib32(b->qs, j) - 8);
        y[j + 16] = d * (float)(slm_qd_nib32(b->qs, j + 16) - 8);
    }
}

static void deq_q4_1(const slm_block_q4_1 *b, float *y)
{
    float d = slm_f16_to_f32(b->d), m = slm_f16_to_f32(b->m);
    for (int j = 0; j < SLM_QK / 2; j++) {
        float lo = d * (float)slm_qd_nib32(b->qs, j);
        float hi = d * (float)slm_qd_nib32(b->qs, j + 16);
        y[j] = lo + m;
        y[j + 16] = hi + m;
    }
}

/* The 5-bit quants of a Q5_0/Q5_1 block, 0..31. The loops below take the
 * two halves of a 32-element block in one pass so the nibble choice inside
 * slm_qd_nib32 folds away and the loop vectorizes. */
static void q5_unpack(const uint8_t qh4[4], const uint8_t qs[16], int q[32])
{
    uint32_t qh = slm_qd_le32(qh4);
    for (int j = 0; j < SLM_QK / 2; j++) {
        q[j] = slm_qd_nib32(qs, j) | slm_qd_q5_hbit(qh, j) << 4;
        q[j + 16] = slm_qd_nib32(qs, j + 16) | slm_qd_q5_hbit(qh, j + 16) << 4;
    }
}

static void deq_q5_0(const slm_block_q5_0 *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    int q[32];
    q5_unpack(b->qh, b->qs, q);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(q[j] - 16);
}

static void deq_q5_1(const slm_block_q5_1 *b, float *y)
{
    float d = slm_f16_to_f32(b->d), m = slm_f16_to_f32(b->m);
    int q[32];
    q5_unpack(b->qh, b->qs, q);
    for (int j = 0; j < 32; j++) {
        float t = d * (float)q[j];
        y[j] = t + m;
    }
}

static void deq_q8_0(const slm_block_q8_0 *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    for (int j = 0; j < SLM_QK; j++)
        y[j] = d * (float)b->qs[j];
}

static void deq_q8_1(const slm_block_q8_1 *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    for (int j = 0; j < SLM_QK; j++)
        y[j] = d * (float)b->qs[j];
}

static void deq_q2_k(const slm_block_q2_k *b, float *y)
{
    float d = slm_f16_to_f32(b->d), dmin = slm_f16_to_f32(b->dmin);
    for (int s = 0; s < 16; s++) {
        float dl = d * (float)(b->scales[s] & 0xF);
        float ml = dmin * (float)(b->scales[s] >> 4);
        for (int i = 0; i < 16; i++) {
            float t = dl * (float)slm_qd_q2k_code(b->qs, 16 * s + i);
            y[16 * s + i] = t - ml;
        }
    }
}

static void deq_q3_k(const slm_block_q3_k *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    for (int s = 0; s < 16; s++) {
        float dl = d * (float)(slm_qd_q3k_scale(b->scales, s) - 32);
        for (int i = 0; i < 16; i++) {
            int e = 16 * s + i;
            int hbit = slm_qd_k_hbit(b->hmask, e);
            y[e] = dl * (float)(slm_qd_q2k_code(b->qs, e) + 4 * hbit - 4);
        }
    }
}

static void deq_q4_k(const slm_block_q4_k *b, float *y)
{
    float d = slm_f16_to_f32(b->d), dmin = slm_f16_to_f32(b->dmin);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        slm_qd_k_scale_min(b->scales, s, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        for (int i = 0; i < 32; i++) {
            float t = d1 * (float)slm_qd_q4k_nibble(b->qs, 32 * s + i);
            y[32 * s + i] = t - m1;
        }
    }
}

static void deq_q5_k(const slm_block_q5_k *b, float *y)
{
    float d = slm_f16_to_f32(b->d), dmin = slm_f16_to_f32(b->dmin);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        slm_qd_k_scale_min(b->scales, s, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        for (int i = 0; i < 32; i++) {
            int e = 32 * s + i;
            int q = slm_qd_q4k_nibble(b->qs, e) | slm_qd_k_hbit(b->qh, e) << 4;
            float t = d1 * (float)q;
            y[e] = t - m1;
        }
    }
}

static void deq_q6_k(const slm_block_q6_k *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    for (int s = 0; s < 16; s++) {
        float dl = d * (float)b->scales[s];
        for (int i = 0; i < 16; i++)
            y[16 * s + i] = dl * (float)(slm_qd_q6k_code(b->ql, b->qh, 16 * s + i) - 32);
    }
}

static void deq_q8_k(const slm_block_q8_k *b, float *y)
{
    float d;
    memcpy(&d, &b->d, sizeof d);
    for (int j = 0; j < SLM_QK_K; j++)
        y[j] = d * (float)b->qs[j];
}

static void deq_iq4_nl(const slm_block_iq4_nl *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    for (int j = 0; j < SLM_QK / 2; j++) {
        y[j] = d * (float)slm_iq4nl_values[slm_qd_nib32(b->qs, j)];
        y[j + 16] = d * (float)slm_iq4nl_values[slm_qd_nib32(b->qs, j + 16)];
    }
}

static void deq_iq4_xs(const slm_block_iq4_xs *b, float *y)
{
    float d = slm_f16_to_f32(b->d);
    for (int ib = 0; ib < 8; ib++) {
        float dl = d * (float)(slm_qd_iq4xs_scale(b->scales_l, b->scales_h, ib) - 32);
        const uint8_t *qs = b->qs + 16 * ib;
        for (int j = 0; j < SLM_QK / 2; j++) {
            y[32 * ib + j] = dl * (float)slm_iq4nl_values[slm_qd_nib32(qs, j)];
            y[32 * ib + j + 16] = dl * (float)slm_iq4nl_values[slm_qd_nib32(qs, j + 16)];
        }
    }
}

/* Whether quant.c has a (de)quantizer for the type: the supported types
 * plus the two activation formats. */
static bool has_codec(int type)
{
    return slm_type_supported(type) || type == SLM_TYPE_Q8_K || type == SLM_TYPE_Q8_1;
}

/* Validates (type, n) and the buffers for the row functions; records why
 * on failure. */
static bool check_row(const char *what, int type, const void *src, const void *dst, int64_t n)
{
    if (n > 0 && (!src || !dst)) {
        slm_error(SLM_STATUS_INVALID_ARGUMENT, "%s: NULL %s buffer", what, src ? "destination" : "source");
        return false;
    }
    if (!has_codec(type)) {
        slm_error(SLM_STATUS_UNSUPPORTED, "%s: no codec for tensor type %s", what, slm_type_name(type));
        return false;
    }
    int64_t be = slm_type_get(type)->block_elems;
    if (n < 0 || n % be != 0) {
        slm_error(SLM_STATUS_INVALID_ARGUMENT, "%s: %lld elements is not a multiple of the %s block (%lld)",
                  what, (long long)n, slm_type_name(type), (long long)be);
        return false;
    }
    return true;
}

bool slm_dequantize_row(int type, const void *src, float *dst, int64_t n)
{
    if (!check_row("dequantize", type, src, dst, n))
        return false;
    const slm_type_info *ti = slm_type_get(type);
    const uint8_t *p = src;
    int64_t nb = n / ti->block_elems;
    /* Blocks in a file are only 2-byte aligned and src may be anywhere, so
     * each block is copied to an aligned buffer before its fields are read. */
    _Alignas(8) uint8_t blk[sizeof(slm_block_q8_k)];
    for (int64_t i = 0; i < nb; i++, p += ti->block_bytes) {
        float *y = dst + i * ti->block_elems;
        memcpy(blk, p, (size_t)ti->block_bytes);
        const void *b = blk;
        switch (type) {
        case SLM_TYPE_F32: memcpy(y, blk, 4); break;
        case SLM_TYPE_F16: *y = slm_f16_to_f32(rd16(blk)); break;
        case SLM_TYPE_BF16: *y = slm_bf16_to_f32(rd16(blk)); break;
        case SLM_TYPE_Q4_0: deq_q4_0(b, y); break;
        case SLM_TYPE_Q4_1: deq_q4_1(b, y); break;
        case SLM_TYPE_Q5_0: deq_q5_0(b, y); break;
        case SLM_TYPE_Q5_1: deq_q5_1(b, y); break;
        case SLM_TYPE_Q8_0: deq_q8_0(b, y); break;
        case SLM_TYPE_Q8_1: deq_q8_1(b, y); break;
        case SLM_TYPE_Q2_K: deq_q2_k(b, y); break;
        case SLM_TYPE_Q3_K: deq_q3_k(b, y); break;
        case SLM_TYPE_Q4_K: deq_q4_k(b, y); break;
        case SLM_TYPE_Q5_K: deq_q5_k(b, y); break;
        case SLM_TYPE_Q6_K: deq_q6_k(b, y); break;
        case SLM_TYPE_Q8_K: deq_q8_k(b, y); break;
        case SLM_TYPE_IQ4_NL: deq_iq4_nl(b, y); break;
        case SLM_TYPE_IQ4_XS: deq_iq4_xs(b, y); break;
        default:
            slm_error(SLM_STATUS_INTERNAL, "dequantize: %s listed as supported but has no decoder",
                      slm_type_name(type));
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Reference quantizers.                                                    */
/*
 * The legacy types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) reproduce GGML's reference
 * scheme exactly as gguf-py implements it (tests check byte equality), so
 * f32 arithmetic is again split into statements to keep its rounding. The
 * K and IQ4 types use our own search: per sub-block, a small sweep of
 * candidate scales, each refined by a least-squares fit of the scale (and
 * min) to the integer codes it produced; then the sub-block scales are
 * quantized against a super-scale and every value is re-coded with the
 * scales exactly as the decoder will see them (after f16 rounding).
 */

/* round(v) clamped to [lo, hi]; NaN gives lo. */
static int round_clamp(float v, int lo, int hi)
{
    if (!(v > (float)lo - 1.0f))
        return lo;
    if (v > (float)hi + 1.0f)
        return hi;
    int r = (int)lrintf(v);
    return r < lo ? lo : r > hi ? hi : r;
}

/* The element of largest magnitude (the first one on ties), signed. Starts
 * from x[0], like numpy's argmax, so an all-(−0) block yields −0 and its
 * scale's sign bit matches gguf-py's. */
static float signed_absmax(const float *x, int n)
{
    float best = x[0], amax = fabsf(x[0]);
    for (int i = 1; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            best = x[i];
        }
    }
    return best;
}

static void put16(uint16_t *dst, uint16_t v) { memcpy(dst, &v, 2); }

/* Legacy code for x: trunc(x·id + off) computed the way gguf-py does (the
 * product and sum in double, then rounded to f32 before the truncation),
 * clamped to 0..qmax. */
static int legacy_code_f64(float x, float id, double off, int qmax)
{
    float t = truncf((float)((double)x * (double)id + off));
    return !(t > 0.0f) ? 0 : t >= (float)qmax ? qmax : (int)t; /* NaN gives 0 */
}

/* The same with f32 arithmetic throughout: trunc((x − min)·id + 0.5). */
static int legacy_code_f32(float x, float min, float id, int qmax)
{
    float t = x - min;
    t = t * id;
    t = t + 0.5f;
    t = truncf(t);
    return !(t > 0.0f) ? 0 : t >= (float)qmax ? qmax : (int)t; /* NaN gives 0 */
}

static void pack_nibbles(const int *q, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
}

static void pack_qh32(const int *q, uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++)
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(h >> (8 * k));
}

/* Q4_0 (bits = 4) and Q5_0 (bits = 5): d = max / −2^(bits−1). */
static void quant_sym_legacy(const float *x, int bits, uint16_t *d16, int *q)
{
    int half = 1 << (bits - 1);
    float d = signed_absmax(x, 32) / (float)-half;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(d16, slm_f32_to_f16(d));
    for (int j = 0; j < 32; j++)
        q[j] = legacy_code_f64(x[j], id, (double)half + 0.5, 2 * half - 1);
}

/* Q4_1 and Q5_1: d = (max − min) / (2^bits − 1), m = min. */
static void quant_minmax_legacy(const float *x, int bits, uint16_t *d16, uint16_t *m16, int *q)
{
    int qmax = (1 << bits) - 1;
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    float d = (hi - lo) / (float)qmax;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(d16, slm_f32_to_f16(d));
    put16(m16, slm_f32_to_f16(lo));
    for (int j = 0; j < 32; j++)
        q[j] = legacy_code_f32(x[j], lo, id, qmax);
}

static void quant_q4_0(const float *x, slm_block_q4_0 *b)
{
    int q[32];
    quant_sym_legacy(x, 4, &b->d, q);
    pack_nibbles(q, b->qs);
}

static void quant_q5_0(const float *x, slm_block_q5_0 *b)
{
    int q[32];
    quant_sym_legacy(x, 5, &b->d, q);
    pack_nibbles(q, b->qs);
    pack_qh32(q, b->qh);
}

static void quant_q4_1(const float *x, slm_block_q4_1 *b)
{
    int q[32];
    quant_minmax_legacy(x, 4, &b->d, &b->m, q);
    pack_nibbles(q, b->qs);
}

static void quant_q5_1(const float *x, slm_block_q5_1 *b)
{
    int q[32];
    quant_minmax_legacy(x, 5, &b->d, &b->m, q);
    pack_nibbles(q, b->qs);
    pack_qh32(q, b->qh);
}

/* Q8_0 / Q8_1 codes: d = amax / 127, q = round-half-away(x / d). Returns d. */
static float quant_8bit(const float *x, int8_t *qs)
{
    float d = fabsf(signed_absmax(x, 32)) / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) {
        float v = x[j] * id;
        qs[j] = (int8_t)roundf(v);
    }
    return d;
}

static void quant_q8_0(const float *x, slm_block_q8_0 *b)
{
    put16(&b->d, slm_f32_to_f16(quant_8bit(x, b->qs)));
}

static void quant_q8_1(const float *x, slm_block_q8_1 *b)
{
    float d = quant_8bit(x, b->qs);
    int sum = 0;
    for (int j = 0; j < 32; j++)
        sum += b->qs[j];
    put16(&b->d, slm_f32_to_f16(d));
    put16(&b->s, slm_f32_to_f16(d * (float)sum));
}

static void quant_q8_k(const float *x, slm_block_q8_k *b)
{
    /* The signed largest value maps to −127 (so d may be negative), as in
     * ggml; a value of the other sign at +127·|d| cannot exceed it. */
    float max = signed_absmax(x, SLM_QK_K);
    float d = 0.0f;
    memset(b->qs, 0, sizeof b->qs);
    if (max != 0.0f) {
        float iscale = -127.0f / max;
        for (int j = 0; j < SLM_QK_K; j++)
            b->qs[j] = (int8_t)round_clamp(iscale * x[j], -127, 127);
        d = 1.0f / iscale;
    }
    memcpy(&b->d, &d, sizeof d);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum += b->qs[16 * g + j];
        b->bsums[g] = (int16_t)sum;
    }
}

/* Squared error of coding x as s·q + off, q = round((x − off)/s) in [qlo, qhi]. */
static double affine_err(const float *x, int n, float s, float off, int qlo, int qhi)
{
    double e = 0;
    for (int i = 0; i < n; i++) {
        int q = s != 0.0f ? round_clamp((x[i] - off) / s, qlo, qhi) : 0;
        double r = (double)s * q + off - x[i];
        e += r * r;
    }
    return e;
}

/*
 * Fits x[0..n) ≈ s·q − m with q in 0..nmax, s ≥ 0 and m ≥ 0 (the K-quant
 * min is unsigned and subtracted), minimising the squared error: a sweep of
 * 21 candidate scales around (max − min)/nmax, each refined by least squares
 * of (s, m) against the codes it produced. Returns s, stores m.
 */
static float fit_scale_min(const float *x, int n, int nmax, float *m_out)
{
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *m_out = -lo;
    if (!(hi > lo))
        return 0.0f;
    float best_s = (hi - lo) / (float)nmax, best_b = lo;
    double best_e = affine_err(x, n, best_s, best_b, 0, nmax);
    for (int k = -10; k <= 10; k++) {
        float iscale = ((float)nmax + 0.1f * (float)k) / (hi - lo);
        double sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int i = 0; i < n; i++) {
            int q = round_clamp(iscale * (x[i] - lo), 0, nmax);
            sq += q;
            sqq += (double)q * q;
            sx += x[i];
            sqx += (double)q * x[i];
        }
        double det = n * sqq - sq * sq;
        if (det <= 0)
            continue;
        double s = (n * sqx - sq * sx) / det;
        double b = (sqq * sx - sq * sqx) / det;
        if (b > 0) { /* the offset must be ≤ 0: refit the scale alone */
            b = 0;
            s = sqx / sqq;
        }
        if (!(s > 0))
            continue;
        double e = affine_err(x, n, (float)s, (float)b, 0, nmax);
        if (e < best_e) {
            best_e = e;
            best_s = (float)s;
            best_b = (float)b;
        }
    }
    *m_out = -best_b;
    return best_s;
}

/*
 * Fits x[0..n) ≈ s·q with q in qlo..qhi (qlo < 0 < qhi) and s of either
 * sign: candidates map the largest-magnitude element near qlo or near qhi,
 * each refined by least squares. Returns s (0 for an all-zero input).
 */
static float fit_scale_sym(const float *x, int n, int qlo, int qhi)
{
    float vmax = signed_absmax(x, n);
    if (vmax == 0.0f)
        return 0.0f;
    float best_s = vmax / (float)qlo;
    double best_e = affine_err(x, n, best_s, 0.0f, qlo, qhi);
    for (int side = 0; side < 2; side++) {
        float target = side == 0 ? (float)qlo : (float)qhi;
        for (int k = -10; k <= 10; k++) {
            float iscale = target * (1.0f + 0.025f * (float)k) / vmax; /* 0.75..1.25 × target */
            double sqq = 0, sqx = 0;
            for (int i = 0; i < n; i++) {
                int q = round_clamp(iscale * x[i], qlo, qhi);
                sqq += (double)q * q;
                sqx += (double)q * x[i];
            }
            if (sqq <= 0)
                continue;
            float s = (float)(sqx / sqq);
            double e = affine_err(x, n, s, 0.0f, qlo, qhi);
            if (s != 0.0f && e < best_e) {
                best_e = e;
                best_s = s;
            }
        }
    }
    return best_s;
}

/* Index of the IQ4 code-book entry nearest v (in code-book units). */
static int iq4_nearest(float v)
{
    int best = 0;
    float be = fabsf(v - (float)slm_iq4nl_values[0]);
    for (int k = 1; k < 16; k++) {
        float e = fabsf(v - (float)slm_iq4nl_values[k]);
        if (e < be) {
            be = e;
            best = k;
        }
    }
    return best;
}

static double iq4_err(const float *x, int n, float s)
{
    double e = 0;
    for (int i = 0; i < n; i++) {
        int k = s != 0.0f ? iq4_nearest(x[i] / s) : 8;
        double r = (double)s * slm_iq4nl_values[k] - x[i];
        e += r * r;
    }
    return e;
}

/*
 * Fits x[0..n) ≈ s·T[k_i] with T the IQ4 code book: both signs of s (the
 * book is asymmetric), the largest element mapped to magnitudes 90..140,
 * each candidate refined by least squares. Returns s.
 */
static float fit_scale_iq4(const float *x, int n)
{
    float amax = fabsf(signed_absmax(x, n));
    if (amax == 0.0f)
        return 0.0f;
    float best_s = 0.0f;
    double best_e = iq4_err(x, n, 0.0f);
    for (int sign = -1; sign <= 1; sign += 2) {
        for (int k = 0; k <= 20; k++) {
            float s0 = (float)sign * amax / (90.0f + 2.5f * (float)k);
            double stx = 0, stt = 0;
            for (int i = 0; i < n; i++) {
                int t = slm_iq4nl_values[iq4_nearest(x[i] / s0)];
                stx += (double)t * x[i];
                stt += (double)t * t;
            }
            float s = stt > 0 ? (float)(stx / stt) : s0;
            if (s == 0.0f)
                continue;
            double e = iq4_err(x, n, s);
            if (e < best_e) {
                best_e = e;
                best_s = s;
            }
        }
    }
    return best_s;
}

/* Quantizes non-negative v[0..n) against a super-scale with codes 0..lmax:
 * returns the scale (max/lmax), writes the codes. */
static float quant_scales_unsigned(const float *v, int n, int lmax, int *l)
{
    float max = 0.0f;
    for (int i = 0; i < n; i++)
        max = v[i] > max ? v[i] : max;
    float d = max / (float)lmax;
    for (int i = 0; i < n; i++)
        l[i] = d > 0.0f ? round_clamp(v[i] / d, 0, lmax) : 0;
    return d;
}

/* Signed version, codes lmin..−lmin−1: the largest-magnitude scale maps to
 * lmin, so the super-scale may be negative. */
static float quant_scales_signed(const float *v, int n, int lmin, int *l)
{
    float max = signed_absmax(v, n);
    float d = max / (float)lmin;
    for (int i = 0; i < n; i++)
        l[i] = d != 0.0f ? round_clamp(v[i] / d, lmin, -lmin - 1) : 0;
    return d;
}

/*
 * Shared by Q2_K, Q4_K and Q5_K: nsub sub-blocks of 256/nsub values, codes
 * 0..nmax, scales and mins coded 0..lmax against d and dmin. Writes the f16
 * super-scales, the scale/min codes and the element codes q[256].
 */
static void quant_k_affine(const float *x, int nsub, int nmax, int lmax, uint16_t *d16,
                           uint16_t *dmin16, int *ls, int *lm, int *q)
{
    int len = SLM_QK_K / nsub;
    float sc[16], mn[16];
    for (int s = 0; s < nsub; s++)
        sc[s] = fit_scale_min(x + s * len, len, nmax, &mn[s]);
    float d = quant_scales_unsigned(sc, nsub, lmax, ls);
    float dmin = quant_scales_unsigned(mn, nsub, lmax, lm);
    put16(d16, slm_f32_to_f16(d));
    put16(dmin16, slm_f32_to_f16(dmin));
    /* re-code with the scales exactly as the decoder will compute them */
    float df = slm_f16_to_f32(slm_f32_to_f16(d)), dmf = slm_f16_to_f32(slm_f32_to_f16(dmin));
    for (int s = 0; s < nsub; s++) {
        float ds = df * (float)ls[s], dm = dmf * (float)lm[s];
        for (int i = 0; i < len; i++)
            q[s * len + i] = ds != 0.0f ? round_clamp((x[s * len + i] + dm) / ds, 0, nmax) : 0;
    }
}

/* Shared by Q3_K and Q6_K: 16 signed sub-block scales coded lmin..−lmin−1
 * against d, element codes qlo..qhi. */
static void quant_k_sym(const float *x, int qlo, int qhi, int lmin, uint16_t *d16, int *l, int *q)
{
    float sc[16];
    for (int s = 0; s < 16; s++)
        sc[s] = fit_scale_sym(x + 16 * s, 16, qlo, qhi);
    float d = quant_scales_signed(sc, 16, lmin, l);
    put16(d16, slm_f32_to_f16(d));
    float df = slm_f16_to_f32(slm_f32_to_f16(d));
    for (int s = 0; s < 16; s++) {
        float ds = df * (float)l[s];
        for (int i = 0; i < 16; i++)
            q[16 * s + i] = ds != 0.0f ? round_clamp(x[16 * s + i] / ds, qlo, qhi) : 0;
    }
}

/* Puts 2-bit code c of element e into the Q2_K/Q3_K qs layout. */
static void q2_put(uint8_t *qs, int e, int c)
{
    qs[32 * (e / 128) + e % 32] |= (uint8_t)((c & 3) << (2 * ((e % 128) / 32)));
}

static void quant_q2_k(const float *x, slm_block_q2_k *b)
{
    int ls[16], lm[16], q[SLM_QK_K];
    quant_k_affine(x, 16, 3, 15, &b->d, &b->dmin, ls, lm, q);
    for (int s = 0; s < 16; s++)
        b->scales[s] = (uint8_t)(ls[s] | lm[s] << 4);
    memset(b->qs, 0, sizeof b->qs);
    for (int e = 0; e < SLM_QK_K; e++)
        q2_put(b->qs, e, q[e]);
}

static void quant_q3_k(const float *x, slm_block_q3_k *b)
{
    int l[16], q[SLM_QK_K];
    quant_k_sym(x, -4, 3, -32, &b->d, l, q);
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 16; j++) {
        int u = l[j] + 32;
        b->scales[j % 8] |= (uint8_t)((u & 0xF) << (j < 8 ? 0 : 4));
        b->scales[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
    }
    memset(b->qs, 0, sizeof b->qs);
    memset(b->hmask, 0, sizeof b->hmask);
    for (int e = 0; e < SLM_QK_K; e++) {
        int u = q[e] + 4; /* 0..7 */
        q2_put(b->qs, e, u);
        b->hmask[e % 32] |= (uint8_t)((u >> 2) << (e / 32));
    }
}

/* Packs Q4_K/Q5_K's 8 scales and 8 mins (6 bits each) into 12 bytes. */
static void k_pack_scales(const int *ls, const int *lm, uint8_t *S)
{
    for (int j = 0; j < 4; j++) {
        S[j] = (uint8_t)(ls[j] | (ls[j + 4] >> 4) << 6);
        S[j + 4] = (uint8_t)(lm[j] | (lm[j + 4] >> 4) << 6);
        S[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | (lm[j + 4] & 0xF) << 4);
    }
}

/* Puts the low nibble of code c of element e into the Q4_K/Q5_K qs layout. */
static void q4k_put(uint8_t *qs, int e, int c)
{
    int ch = e / 64, r = e % 64;
    if (r < 32)
        qs[32 * ch + r] |= (uint8_t)(c & 0xF);
    else
        qs[32 * ch + r - 32] |= (uint8_t)((c & 0xF) << 4);
}

static void quant_q4_k(const float *x, slm_block_q4_k *b)
{
    int ls[8], lm[8], q[SLM_QK_K];
    quant_k_affine(x, 8, 15, 63, &b->d, &b->dmin, ls, lm, q);
    k_pack_scales(ls, lm, b->scales);
    memset(b->qs, 0, sizeof b->qs);
    for (int e = 0; e < SLM_QK_K; e++)
        q4k_put(b->qs, e, q[e]);
}

static void quant_q5_k(const float *x, slm_block_q5_k *b)
{
    int ls[8], lm[8], q[SLM_QK_K];
    quant_k_affine(x, 8, 31, 63, &b->d, &b->dmin, ls, lm, q);
    k_pack_scales(ls, lm, b->scales);
    memset(b->qs, 0, sizeof b->qs);
    memset(b->qh, 0, sizeof b->qh);
    for (int e = 0; e < SLM_QK_K; e++) {
        q4k_put(b->qs, e, q[e]);
        b->qh[e % 32] |= (uint8_t)((q[e] >> 4) << (e / 32));
    }
}

static void quant_q6_k(const float *x, slm_block_q6_k *b)
{
    int l[16], q[SLM_QK_K];
    quant_k_sym(x, -32, 31, -128, &b->d, l, q);
    for (int s = 0; s < 16; s++)
        b->scales[s] = (int8_t)l[s];
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int e = 0; e < SLM_QK_K; e++) {
        int u = q[e] + 32; /* 0..63 */
        int h = e / 128, k = (e % 128) / 32, i = e % 32;
        b->ql[64 * h + (k & 1) * 32 + i] |= (uint8_t)((u & 0xF) << (k < 2 ? 0 : 4));
        b->qh[32 * h + i] |= (uint8_t)((u >> 4) << (2 * k));
    }
}

/* Codes of n values against the IQ4 book at scale s (as the decoder sees it). */
static void iq4_codes(const float *x, int n, float s, uint8_t *qs)
{
    memset(qs, 0, (size_t)n / 2);
    for (int j = 0; j < n / 2; j++) {
        int lo = s != 0.0f ? iq4_nearest(x[j] / s) : 8;
        int hi = s != 0.0f ? iq4_nearest(x[j + n / 2] / s) : 8;
        qs[j] = (uint8_t)(lo | hi << 4);
    }
}

static void quant_iq4_nl(const float *x, slm_block_iq4_nl *b)
{
    uint16_t d = slm_f32_to_f16(fit_scale_iq4(x, SLM_QK));
    put16(&b->d, d);
    iq4_codes(x, SLM_QK, slm_f16_to_f32(d), b->qs);
}

static void quant_iq4_xs(const float *x, slm_block_iq4_xs *b)
{
    float sc[8];
    int l[8];
    for (int ib = 0; ib < 8; ib++)
        sc[ib] = fit_scale_iq4(x + 32 * ib, 32);
    uint16_t d = slm_f32_to_f16(quant_scales_signed(sc, 8, -32, l));
    put16(&b->d, d);
    uint16_t sh = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int ib = 0; ib < 8; ib++) {
        int u = l[ib] + 32;
        b->scales_l[ib / 2] |= (uint8_t)((u & 0xF) << (4 * (ib % 2)));
        sh |= (uint16_t)((u >> 4) << (2 * ib));
        iq4_codes(x + 32 * ib, 32, slm_f16_to_f32(d) * (float)l[ib], b->qs + 16 * ib);
    }
    put16(&b->scales_h, sh);
}

bool slm_quantize_row_ref(int type, const float *src, void *dst, int64_t n)
{
    if (!check_row("quantize", type, src, dst, n))
        return false;
    const slm_type_info *ti = slm_type_get(type);
    uint8_t *p = dst;
    int64_t nb = n / ti->block_elems;
    /* Built in an aligned buffer, then copied out: dst may be unaligned. */
    _Alignas(8) uint8_t blk[sizeof(slm_block_q8_k)];
    for (int64_t i = 0; i < nb; i++, p += ti->block_bytes) {
        const float *x = src + i * ti->block_elems;
        void *b = blk;
        switch (type) {
        case SLM_TYPE_F32: memcpy(blk, x, 4); break;
        case SLM_TYPE_F16: put16(b, slm_f32_to_f16(*x)); break;
        case SLM_TYPE_BF16: put16(b, slm_f32_to_bf16(*x)); break;
        case SLM_TYPE_Q4_0: quant_q4_0(x, b); break;
        case SLM_TYPE_Q4_1: quant_q4_1(x, b); break;
        case SLM_TYPE_Q5_0: quant_q5_0(x, b); break;
        case SLM_TYPE_Q5_1: quant_q5_1(x, b); break;
        case SLM_TYPE_Q8_0: quant_q8_0(x, b); break;
        case SLM_TYPE_Q8_1: quant_q8_1(x, b); break;
        case SLM_TYPE_Q2_K: quant_q2_k(x, b); break;
        case SLM_TYPE_Q3_K: quant_q3_k(x, b); break;
        case SLM_TYPE_Q4_K: quant_q4_k(x, b); break;
        case SLM_TYPE_Q5_K: quant_q5_k(x, b); break;
        case SLM_TYPE_Q6_K: quant_q6_k(x, b); break;
        case SLM_TYPE_Q8_K: quant_q8_k(x, b); break;
        case SLM_TYPE_IQ4_NL: quant_iq4_nl(x, b); break;
        case SLM_TYPE_IQ4_XS: quant_iq4_xs(x, b); break;
        default:
            slm_error(SLM_STATUS_INTERNAL, "quantize: %s listed as supported but has no encoder",
                      slm_type_name(type));
            return false;
        }
        memcpy(p, blk, (size_t)ti->block_bytes);
    }
    return true;
}
