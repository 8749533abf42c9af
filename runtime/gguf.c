/*
 * gguf.c — the GGUF reader (see gguf.h for the contract).
 *
 * The story: slm_gguf_open maps the file, slm_gguf_open_memory takes a
 * buffer; both end in parse(), which walks the file once with a bounds-checked
 * cursor (every read asks `n <= size - pos` first, so hostile u64 lengths and
 * counts can never move it past the end), building:
 *   kvs[n_kv]           one record per key/value, pointing into the bytes;
 *   str_off[n_kv]       for string arrays, the file offset of every element's
 *                       length prefix (O(1) element access for tokenizers);
 *   kv_sorted[]         indices sorted by key (duplicate check, O(log n) find);
 *   tensors[n_tensors]  descriptors, then checked against the file's end,
 *                       the alignment and each other (tensor_sorted[] by name).
 * Sorting instead of pairwise comparison keeps the duplicate and overlap
 * checks O(n log n): a fuzzed 1 MB file can claim ~80k keys.
 *
 * Every failure goes through slm_error() with a message naming the record
 * ("kv 3 'general.name'", "tensor 2 'output.weight'") and the offending
 * value. Multi-byte fields are decoded as little-endian byte by byte, so the
 * reader also works on a big-endian host.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "status.h"

#define HEADER_BYTES 24u
#define MIN_KV_BYTES 13u     /* u64 key length + 1-byte key + u32 type (+ >= 0 payload) */
#define MIN_TENSOR_BYTES 24u /* u64 name length + u32 n_dims + u32 type + u64 offset */

struct slm_gguf {
    const uint8_t *base; /* the file bytes */
    uint64_t size;
    void *map;           /* non-NULL when we mmapped base */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;

    int64_t n_kv;
    slm_gguf_kv *kvs;
    uint64_t **str_off;  /* [n_kv]; non-NULL only for string arrays */
    int64_t *kv_sorted;  /* kv indices sorted by key */
    char *key_arena;     /* NUL-terminated copies of all keys */

    int64_t n_tensors;
    slm_gguf_tensor *tensors;
    int64_t *tensor_sorted; /* tensor indices sorted by name */
};

/* Payload bytes of each scalar value type; 0 for STRING and ARRAY. */
static const uint8_t scalar_size[SLM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static const char *const type_names[SLM_GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64"};

const char *slm_gguf_type_name(slm_gguf_type t)
{
    return (unsigned)t < SLM_GGUF_TYPE_COUNT ? type_names[t] : "invalid";
}

/* --- little-endian decoding ------------------------------------------------ */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static bool is_int_type(slm_gguf_type t)
{
    return t <= SLM_GGUF_INT32 || t == SLM_GGUF_UINT64 || t == SLM_GGUF_INT64;
}

/* Decodes an integer of type t at p. Returns false (value in *big) only for a
 * UINT64 above INT64_MAX. */
static bool decode_int(slm_gguf_type t, const uint8_t *p, int64_t *out, uint64_t *big)
{
    switch (t) {
    case SLM_GGUF_UINT8: *out = p[0]; return true;
    case SLM_GGUF_INT8: *out = (int8_t)p[0]; return true;
    case SLM_GGUF_UINT16: *out = le16(p); return true;
    case SLM_GGUF_INT16: *out = (int16_t)le16(p); return true;
    case SLM_GGUF_UINT32: *out = le32(p); return true;
    case SLM_GGUF_INT32: *out = (int32_t)le32(p); return true;
    case SLM_GGUF_INT64: *out = (int64_t)le64(p); return true;
    case SLM_GGUF_UINT64: {
        uint64_t v = le64(p);
        if (v > (uint64_t)INT64_MAX) {
            *big = v;
            return false;
        }
        *out = (int64_t)v;
        return true;
    }
    default: return false;
    }
}

static double decode_float(slm_gguf_type t, const uint8_t *p)
{
    if (t == SLM_GGUF_FLOAT32) {
        uint32_t bits = le32(p);
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    uint64_t bits = le64(p);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* --- the bounds-checked cursor --------------------------------------------- */

typedef struct cursor {
    const uint8_t *b;
    uint64_t size;
    uint64_t pos;
    char ctx[128]; /* "kv 3 'general.name'": what is being read, for messages */
} cursor;

/* Copies up to 48 bytes of s into dst for a message, '?' for non-printables,
 * "..." when cut. */
static void printable(char *dst, size_t cap, const uint8_t *s, uint64_t len)
{
    size_t n = 0;
    for (uint64_t i = 0; i < len && i < 48 && n + 1 < cap; i++)
        dst[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    if (len > 48 && n + 4 < cap) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}

static uint64_t left(const cursor *c) { return c->size - c->pos; }

/* Takes n bytes at the cursor: *out points at them and the cursor moves on.
 * Fails naming what (a field name) when fewer than n bytes are left. */
static slm_status take(cursor *c, uint64_t n, const char *what, const uint8_t **out)
{
    if (n > left(c))
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: %s: %s needs %" PRIu64 " bytes at offset %" PRIu64
                         " but the file ends at %" PRIu64,
                         c->ctx, what, n, c->pos, c->size);
    *out = c->b + c->pos;
    c->pos += n;
    return SLM_OK;
}

static slm_status read_u32(cursor *c, const char *what, uint32_t *v)
{
    const uint8_t *p = NULL;
    slm_status st = take(c, 4, what, &p);
    if (st == SLM_OK)
        *v = le32(p);
    return st;
}

static slm_status read_u64(cursor *c, const char *what, uint64_t *v)
{
    const uint8_t *p = NULL;
    slm_status st = take(c, 8, what, &p);
    if (st == SLM_OK)
        *v = le64(p);
    return st;
}

/* A GGUF string: u64 length, then the bytes (no NUL). */
static slm_status read_str(cursor *c, const char *what, const uint8_t **s, uint64_t *len)
{
    slm_status st = read_u64(c, what, len);
    if (st != SLM_OK)
        return st;
    if (*len > left(c))
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: %s: %s length %" PRIu64 " at offset %" PRIu64
                         " runs past the end of the file (%" PRIu64 " bytes left)",
                         c->ctx, what, *len, c->pos - 8, left(c));
    return take(c, *len, what, s);
}

/* --- metadata --------------------------------------------------------------- */

typedef struct key_ref {
    const char *key;
    size_t len;
    int64_t idx;
} key_ref;

static int cmp_key(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r != 0)
        return r;
    return alen < blen ? -1 : alen > blen;
}

static int cmp_key_ref(const void *pa, const void *pb)
{
    const key_ref *a = pa, *b = pb;
    return cmp_key(a->key, a->len, b->key, b->len);
}

/* Reads an array payload (the cursor is just after the value type). */
static slm_status parse_array(slm_gguf *g, cursor *c, int64_t i)
{
    slm_gguf_kv *kv = &g->kvs[i];
    uint32_t et;
    slm_status st = read_u32(c, "array element type", &et);
    if (st != SLM_OK)
        return st;
    if (et >= SLM_GGUF_TYPE_COUNT)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: %s: array element type %" PRIu32 " is not a GGUF type (0..12)",
                         c->ctx, et);
    if (et == SLM_GGUF_ARRAY)
        return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: %s: nested arrays are not supported",
                         c->ctx);
    kv->elem_type = (slm_gguf_type)et;
    if ((st = read_u64(c, "array count", &kv->count)) != SLM_OK)
        return st;
    kv->data = c->b + c->pos;
    uint64_t min_elem = et == SLM_GGUF_STRING ? 8 : scalar_size[et];
    /* Division, not count * size: the product of a hostile count overflows. */
    if (kv->count > left(c) / min_elem)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: %s: array of %" PRIu64 " %s needs at least %" PRIu64
                         " bytes each but only %" PRIu64 " bytes are left in the file",
                         c->ctx, kv->count, type_names[et], min_elem, left(c));
    if (et != SLM_GGUF_STRING) {
        c->pos += kv->count * min_elem;
        return SLM_OK;
    }
    uint64_t *off = malloc(kv->count ? kv->count * sizeof *off : 1);
    if (!off)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf: %s: no memory for %" PRIu64
                         " string offsets", c->ctx, kv->count);
    g->str_off[i] = off;
    for (uint64_t j = 0; j < kv->count; j++) {
        const uint8_t *s;
        uint64_t len;
        off[j] = c->pos;
        if ((st = read_str(c, "array string", &s, &len)) != SLM_OK)
            return st;
    }
    return SLM_OK;
}

/* Reads one KV record; the key is appended to *arena (offset kept in
 * key_off[i], turned into a pointer once the arena stops moving). */
static slm_status parse_kv(slm_gguf *g, cursor *c, int64_t i, char **arena, size_t *arena_len,
                           size_t *arena_cap, size_t *key_off)
{
    slm_gguf_kv *kv = &g->kvs[i];
    const uint8_t *key = NULL;
    uint64_t klen;
    snprintf(c->ctx, sizeof c->ctx, "kv %" PRId64, i);
    slm_status st = read_str(c, "key", &key, &klen);
    if (st != SLM_OK)
        return st;
    if (klen == 0)
        return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: kv %" PRId64 ": empty key", i);
    char shown[64];
    printable(shown, sizeof shown, key, klen);
    snprintf(c->ctx, sizeof c->ctx, "kv %" PRId64 " '%s'", i, shown);
    if (memchr(key, 0, klen))
        return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: %s: key contains a NUL byte", c->ctx);
    if (*arena_len + klen + 1 > *arena_cap) {
        size_t cap = (*arena_cap ? *arena_cap * 2 : 4096) + klen + 1;
        char *p = realloc(*arena, cap);
        if (!p)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf: no memory for keys");
        *arena = p;
        *arena_cap = cap;
    }
    memcpy(*arena + *arena_len, key, klen);
    (*arena)[*arena_len + klen] = '\0';
    key_off[i] = *arena_len;
    *arena_len += klen + 1;
    kv->key_len = klen;

    uint32_t t;
    if ((st = read_u32(c, "value type", &t)) != SLM_OK)
        return st;
    if (t >= SLM_GGUF_TYPE_COUNT)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: %s: value type %" PRIu32 " is not a GGUF type (0..12)", c->ctx, t);
    kv->type = kv->elem_type = (slm_gguf_type)t;
    kv->count = 1;
    if (t == SLM_GGUF_ARRAY)
        return parse_array(g, c, i);
    if (t == SLM_GGUF_STRING)
        return read_str(c, "string value", &kv->data, &kv->count);
    return take(c, scalar_size[t], "value", &kv->data);
}

/* general.alignment: a UINT32, non-zero power of two (gguf-facts §1.5). */
static slm_status check_alignment(slm_gguf *g)
{
    g->alignment = SLM_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = slm_gguf_find_kv(g, "general.alignment");
    if (i < 0)
        return SLM_OK;
    const slm_gguf_kv *kv = &g->kvs[i];
    if (kv->type != SLM_GGUF_UINT32)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: kv %" PRId64 " 'general.alignment' is %s, must be uint32", i,
                         type_names[kv->type]);
    uint32_t a = le32(kv->data);
    if (a == 0 || (a & (a - 1)) != 0)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: general.alignment %" PRIu32 " is not a non-zero power of two", a);
    g->alignment = a;
    return SLM_OK;
}

static slm_status parse_kvs(slm_gguf *g, cursor *c)
{
    size_t n = (size_t)g->n_kv;
    g->kvs = calloc(n ? n : 1, sizeof *g->kvs);
    g->str_off = calloc(n ? n : 1, sizeof *g->str_off);
    g->kv_sorted = malloc((n ? n : 1) * sizeof *g->kv_sorted);
    size_t *key_off = malloc((n ? n : 1) * sizeof *key_off);
    key_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    size_t arena_len = 0, arena_cap = 0;
    slm_status st = SLM_OK;
    if (!g->kvs || !g->str_off || !g->kv_sorted || !key_off || !refs) {
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf: no memory for %zu kv records", n);
        goto done;
    }
    for (int64_t i = 0; i < g->n_kv; i++)
        if ((st = parse_kv(g, c, i, &g->key_arena, &arena_len, &arena_cap, key_off)) != SLM_OK)
            goto done;
    for (size_t i = 0; i < n; i++) {
        g->kvs[i].key = g->key_arena + key_off[i];
        refs[i] = (key_ref){g->kvs[i].key, g->kvs[i].key_len, (int64_t)i};
    }
    qsort(refs, n, sizeof *refs, cmp_key_ref);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_key_ref(&refs[i - 1], &refs[i]) == 0) {
            int64_t a = refs[i - 1].idx < refs[i].idx ? refs[i - 1].idx : refs[i].idx;
            int64_t b = refs[i - 1].idx < refs[i].idx ? refs[i].idx : refs[i - 1].idx;
            char shown[64];
            printable(shown, sizeof shown, (const uint8_t *)refs[i].key, refs[i].len);
            st = slm_error(SLM_STATUS_BAD_FORMAT,
                           "gguf: duplicate key '%s' (kv %" PRId64 " and kv %" PRId64 ")", shown,
                           a, b);
            goto done;
        }
        g->kv_sorted[i] = refs[i].idx;
    }
    st = check_alignment(g);
done:
    free(key_off);
    free(refs);
    return st;
}

/* --- tensors ---------------------------------------------------------------- */

/* Reads dims and type of tensor i and derives n_elements and nbytes. */
static slm_status parse_shape(cursor *c, slm_gguf_tensor *t)
{
    slm_status st = read_u32(c, "n_dims", &t->n_dims);
    if (st != SLM_OK)
        return st;
    if (t->n_dims < 1 || t->n_dims > SLM_GGUF_MAX_DIMS)
        return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: %s: n_dims %" PRIu32 " is outside 1..4",
                         c->ctx, t->n_dims);
    int64_t n = 1;
    for (uint32_t d = 0; d < SLM_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < t->n_dims && (st = read_u64(c, "dimension", &v)) != SLM_OK)
            return st;
        if (v > (uint64_t)INT64_MAX)
            return slm_error(SLM_STATUS_BAD_FORMAT,
                             "gguf: %s: dimension %" PRIu32 " is %" PRId64 " (negative)", c->ctx,
                             d, (int64_t)v);
        t->ne[d] = (int64_t)v;
        if (v != 0 && n > INT64_MAX / (int64_t)v)
            return slm_error(SLM_STATUS_BAD_FORMAT,
                             "gguf: %s: dimensions overflow int64 at dimension %" PRIu32
                             " (%" PRIu64 ")", c->ctx, d, v);
        n *= (int64_t)v;
    }
    t->n_elements = n;

    uint32_t type;
    if ((st = read_u32(c, "type", &type)) != SLM_OK)
        return st;
    const slm_type_info *ti = type < SLM_TYPE_COUNT ? slm_type_get((int)type) : NULL;
    if (!ti)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         type < SLM_TYPE_COUNT
                             ? "gguf: %s: type %" PRIu32 " is a removed GGML type"
                             : "gguf: %s: type %" PRIu32 " is not a known GGML type",
                         c->ctx, type);
    t->type = (int)type;
    if (t->ne[0] % ti->block_elems != 0)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: %s: ne0 = %" PRId64 " is not a multiple of the %s block size %" PRId32,
                         c->ctx, t->ne[0], ti->name, ti->block_elems);
    uint64_t blocks = (uint64_t)(n / ti->block_elems);
    if (blocks > UINT64_MAX / (uint64_t)ti->block_bytes)
        return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: %s: data size overflows 64 bits", c->ctx);
    t->nbytes = blocks * (uint64_t)ti->block_bytes;
    return SLM_OK;
}

static slm_status parse_tensor_info(cursor *c, int64_t i, slm_gguf_tensor *t)
{
    const uint8_t *name = NULL;
    uint64_t len;
    snprintf(c->ctx, sizeof c->ctx, "tensor %" PRId64, i);
    slm_status st = read_str(c, "name", &name, &len);
    if (st != SLM_OK)
        return st;
    char shown[64];
    printable(shown, sizeof shown, name, len);
    if (len == 0)
        return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: tensor %" PRId64 ": empty name", i);
    if (len > SLM_GGUF_MAX_NAME)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: tensor %" PRId64 " '%s': name is %" PRIu64
                         " bytes, longer than %d", i, shown, len, SLM_GGUF_MAX_NAME);
    if (memchr(name, 0, len))
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: tensor %" PRId64 " '%s': name contains a NUL byte", i, shown);
    memcpy(t->name, name, len);
    t->name[len] = '\0';
    snprintf(c->ctx, sizeof c->ctx, "tensor %" PRId64 " '%s'", i, shown);
    if ((st = parse_shape(c, t)) != SLM_OK)
        return st;
    return read_u64(c, "offset", &t->offset);
}

/* Offsets against alignment and the end of the file; sets data pointers. */
static slm_status place_tensors(slm_gguf *g)
{
    for (int64_t i = 0; i < g->n_tensors; i++) {
        slm_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return slm_error(SLM_STATUS_BAD_FORMAT,
                             "gguf: tensor %" PRId64 " '%s': offset %" PRIu64
                             " is not a multiple of the alignment %" PRIu32,
                             i, t->name, t->offset, g->alignment);
        /* Three comparisons instead of one sum: each term may be near 2^64. */
        if (g->data_start > g->size || t->offset > g->size - g->data_start ||
            t->nbytes > g->size - g->data_start - t->offset)
            return slm_error(SLM_STATUS_BAD_FORMAT,
                             "gguf: tensor %" PRId64 " '%s': data [offset %" PRIu64 ", %" PRIu64
                             " bytes] ends past the end of the file (%" PRIu64 " bytes)",
                             i, t->name, t->offset, t->nbytes, g->size);
        t->data = g->base + g->data_start + t->offset;
    }
    return SLM_OK;
}

typedef struct span {
    uint64_t offset, nbytes;
    int64_t idx;
} span;

static int cmp_span(const void *pa, const void *pb)
{
    const span *a = pa, *b = pb;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    return (a->nbytes > b->nbytes) - (a->nbytes < b->nbytes);
}

static int cmp_name_ref(const void *pa, const void *pb)
{
    const key_ref *a = pa, *b = pb;
    return strcmp(a->key, b->key);
}

/* Unique names (tensor_sorted) and no two data ranges sharing a byte. */
static slm_status check_tensor_set(slm_gguf *g)
{
    size_t n = (size_t)g->n_tensors;
    key_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    span *spans = malloc((n ? n : 1) * sizeof *spans);
    slm_status st = SLM_OK;
    if (!refs || !spans) {
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf: no memory for %zu tensors", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        refs[i] = (key_ref){g->tensors[i].name, 0, (int64_t)i};
        spans[i] = (span){g->tensors[i].offset, g->tensors[i].nbytes, (int64_t)i};
    }
    qsort(refs, n, sizeof *refs, cmp_name_ref);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(refs[i - 1].key, refs[i].key) == 0) {
            int64_t a = refs[i - 1].idx < refs[i].idx ? refs[i - 1].idx : refs[i].idx;
            int64_t b = refs[i - 1].idx < refs[i].idx ? refs[i].idx : refs[i - 1].idx;
            st = slm_error(SLM_STATUS_BAD_FORMAT,
                           "gguf: duplicate tensor name '%s' (tensors %" PRId64 " and %" PRId64 ")",
                           refs[i].key, a, b);
            goto done;
        }
        g->tensor_sorted[i] = refs[i].idx;
    }
    /* In offset order, a non-empty range overlaps an earlier one exactly when
     * it starts before the furthest end seen so far (far's end). Empty
     * tensors own no bytes and overlap nothing. */
    qsort(spans, n, sizeof *spans, cmp_span);
    const span *far = NULL;
    for (size_t i = 0; i < n; i++) {
        const span *b = &spans[i];
        if (b->nbytes == 0)
            continue;
        if (far && far->offset + far->nbytes > b->offset) {
            st = slm_error(SLM_STATUS_BAD_FORMAT,
                           "gguf: tensors %" PRId64 " '%s' [offset %" PRIu64 ", %" PRIu64
                           " bytes] and %" PRId64 " '%s' [offset %" PRIu64 "] overlap",
                           far->idx, g->tensors[far->idx].name, far->offset, far->nbytes, b->idx,
                           g->tensors[b->idx].name, b->offset);
            goto done;
        }
        if (!far || b->offset + b->nbytes > far->offset + far->nbytes)
            far = b;
    }
done:
    free(refs);
    free(spans);
    return st;
}

static slm_status parse_tensors(slm_gguf *g, cursor *c)
{
    size_t n = (size_t)g->n_tensors;
    g->tensors = calloc(n ? n : 1, sizeof *g->tensors);
    g->tensor_sorted = malloc((n ? n : 1) * sizeof *g->tensor_sorted);
    if (!g->tensors || !g->tensor_sorted)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf: no memory for %zu tensors", n);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        slm_status st = parse_tensor_info(c, i, &g->tensors[i]);
        if (st != SLM_OK)
            return st;
    }
    /* align_up cannot overflow: pos <= size (the size of an object in memory,
     * far below 2^64 - 2^31) and the alignment is at most 2^31. */
    uint64_t a = g->alignment;
    g->data_start = (c->pos + a - 1) & ~(a - 1);
    slm_status st = place_tensors(g);
    return st != SLM_OK ? st : check_tensor_set(g);
}

/* --- header and the whole parse ------------------------------------------- */

static slm_status parse_header(slm_gguf *g, cursor *c)
{
    const uint8_t *b = g->base;
    if (g->size < HEADER_BYTES)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: file is %" PRIu64 " bytes, shorter than the %u-byte GGUF header",
                         g->size, HEADER_BYTES);
    if (memcmp(b, "GGUF", 4) != 0) {
        char shown[8];
        printable(shown, sizeof shown, b, 4);
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: bad magic %02x %02x %02x %02x ('%s'), expected 'GGUF'", b[0], b[1],
                         b[2], b[3], shown);
    }
    g->version = le32(b + 4);
    if (g->version != 0 && (g->version & 0xFFFF) == 0)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "gguf: version field 0x%08" PRIx32 " looks byte-swapped: big-endian GGUF "
                         "files are not supported", g->version);
    if (g->version != 2 && g->version != 3)
        return slm_error(g->version == 0 ? SLM_STATUS_BAD_FORMAT : SLM_STATUS_UNSUPPORTED,
                         "gguf: version %" PRIu32 " is not supported (only 2 and 3)", g->version);
    uint64_t nt = le64(b + 8), nkv = le64(b + 16);
    c->pos = HEADER_BYTES;
    uint64_t room = g->size - HEADER_BYTES;
    if (nkv > room / MIN_KV_BYTES)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: kv count %" PRIu64 " is impossible in a file of %" PRIu64
                         " bytes (a kv record takes at least %u)", nkv, g->size, MIN_KV_BYTES);
    room -= nkv * MIN_KV_BYTES;
    if (nt > room / MIN_TENSOR_BYTES)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: tensor count %" PRIu64 " is impossible in a file of %" PRIu64
                         " bytes with %" PRIu64 " kv records (a tensor record takes at least %u)",
                         nt, g->size, nkv, MIN_TENSOR_BYTES);
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;
    return SLM_OK;
}

static slm_status parse(slm_gguf *g)
{
    cursor c = {.b = g->base, .size = g->size, .pos = 0, .ctx = "header"};
    slm_status st = parse_header(g, &c);
    if (st == SLM_OK)
        st = parse_kvs(g, &c);
    if (st == SLM_OK)
        st = parse_tensors(g, &c);
    return st;
}

/* --- open / close ------------------------------------------------------------ */

void slm_gguf_close(slm_gguf *g)
{
    if (!g)
        return;
    if (g->str_off)
        for (int64_t i = 0; i < g->n_kv; i++)
            free(g->str_off[i]);
    free(g->str_off);
    free(g->kvs);
    free(g->kv_sorted);
    free(g->key_arena);
    free(g->tensors);
    free(g->tensor_sorted);
    if (g->map)
        munmap(g->map, g->map_len);
    free(g);
}

/* Parses g (base/size/map already set); on failure closes it. */
static slm_status finish_open(slm_gguf *g, slm_gguf **out)
{
    slm_status st = parse(g);
    if (st != SLM_OK) {
        slm_gguf_close(g);
        return st;
    }
    *out = g;
    return SLM_OK;
}

slm_status slm_gguf_open_memory(const void *data, size_t size, slm_gguf **out)
{
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "gguf: out is NULL");
    *out = NULL;
    if (!data && size > 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "gguf: data is NULL but size is %zu", size);
    slm_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf: no memory");
    g->base = data ? data : (const uint8_t *)"";
    g->size = size;
    return finish_open(g, out);
}

slm_status slm_gguf_open(const char *path, slm_gguf **out)
{
    if (!out || !path)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "gguf: path or out is NULL");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return slm_error(SLM_STATUS_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return slm_error(SLM_STATUS_IO, "gguf: cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return slm_error(SLM_STATUS_IO, "gguf: '%s' is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return slm_error(SLM_STATUS_IO, "gguf: '%s' is too large to map", path);
    }
    slm_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf: no memory");
    }
    g->base = (const uint8_t *)"";
    g->size = (uint64_t)sb.st_size;
    if (sb.st_size > 0) {
        /* NOTE: mmap of 0 bytes fails, so an empty file skips it and fails
         * in parse() as too short, with the same message as a short file. */
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(g);
            return slm_error(SLM_STATUS_IO, "gguf: cannot map '%s': %s", path, strerror(e));
        }
        g->map = m;
        g->map_len = (size_t)sb.st_size;
        g->base = m;
    }
    close(fd);
    return finish_open(g, out);
}

/* --- file facts ---------------------------------------------------------------- */

uint32_t slm_gguf_version(const slm_gguf *g) { return g->version; }
uint32_t slm_gguf_alignment(const slm_gguf *g) { return g->alignment; }
uint64_t slm_gguf_data_start(const slm_gguf *g) { return g->data_start; }
uint64_t slm_gguf_file_size(const slm_gguf *g) { return g->size; }
const void *slm_gguf_file_data(const slm_gguf *g) { return g->base; }

/* --- metadata getters ------------------------------------------------------------ */

int64_t slm_gguf_kv_count(const slm_gguf *g) { return g->n_kv; }

const slm_gguf_kv *slm_gguf_kv_at(const slm_gguf *g, int64_t i)
{
    return (i >= 0 && i < g->n_kv) ? &g->kvs[i] : NULL;
}

int64_t slm_gguf_find_kv(const slm_gguf *g, const char *key)
{
    size_t len = strlen(key);
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const slm_gguf_kv *kv = &g->kvs[g->kv_sorted[mid]];
        int r = cmp_key(kv->key, kv->key_len, key, len);
        if (r == 0)
            return g->kv_sorted[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static slm_status bad_index(const slm_gguf *g, int64_t i)
{
    return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                     "gguf: kv index %" PRId64 " is out of range (%" PRId64 " records)", i, g->n_kv);
}

static slm_status wrong_type(const slm_gguf_kv *kv, const char *wanted)
{
    if (kv->type == SLM_GGUF_ARRAY)
        return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: key '%s' is an array of %s, not %s",
                         kv->key, type_names[kv->elem_type], wanted);
    return slm_error(SLM_STATUS_BAD_FORMAT, "gguf: key '%s' is %s, not %s", kv->key,
                     type_names[kv->type], wanted);
}

/* Integer of type t at p, for key; fails for a UINT64 above INT64_MAX. */
static slm_status int_at(const slm_gguf_kv *kv, slm_gguf_type t, const uint8_t *p, int64_t *out)
{
    uint64_t big = 0;
    if (!decode_int(t, p, out, &big))
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: key '%s': value %" PRIu64 " (uint64) does not fit int64", kv->key,
                         big);
    return SLM_OK;
}

slm_status slm_gguf_kv_int(const slm_gguf *g, int64_t i, int64_t *out)
{
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    if (!kv)
        return bad_index(g, i);
    if (!is_int_type(kv->type))
        return wrong_type(kv, "an integer");
    return int_at(kv, kv->type, kv->data, out);
}

slm_status slm_gguf_kv_float(const slm_gguf *g, int64_t i, double *out)
{
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    if (!kv)
        return bad_index(g, i);
    if (kv->type != SLM_GGUF_FLOAT32 && kv->type != SLM_GGUF_FLOAT64)
        return wrong_type(kv, "a float");
    *out = decode_float(kv->type, kv->data);
    return SLM_OK;
}

slm_status slm_gguf_kv_bool(const slm_gguf *g, int64_t i, bool *out)
{
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    if (!kv)
        return bad_index(g, i);
    if (kv->type != SLM_GGUF_BOOL)
        return wrong_type(kv, "a bool");
    *out = kv->data[0] != 0;
    return SLM_OK;
}

slm_status slm_gguf_kv_str(const slm_gguf *g, int64_t i, const char **s, size_t *len)
{
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    if (!kv)
        return bad_index(g, i);
    if (kv->type != SLM_GGUF_STRING)
        return wrong_type(kv, "a string");
    *s = (const char *)kv->data;
    *len = (size_t)kv->count;
    return SLM_OK;
}

static slm_status find_or_fail(const slm_gguf *g, const char *key, int64_t *i)
{
    *i = slm_gguf_find_kv(g, key);
    if (*i < 0)
        return slm_error(SLM_STATUS_NOT_FOUND, "gguf: key '%s' not found", key);
    return SLM_OK;
}

slm_status slm_gguf_get_int(const slm_gguf *g, const char *key, int64_t *out)
{
    int64_t i;
    slm_status st = find_or_fail(g, key, &i);
    return st != SLM_OK ? st : slm_gguf_kv_int(g, i, out);
}

slm_status slm_gguf_get_float(const slm_gguf *g, const char *key, double *out)
{
    int64_t i;
    slm_status st = find_or_fail(g, key, &i);
    return st != SLM_OK ? st : slm_gguf_kv_float(g, i, out);
}

slm_status slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out)
{
    int64_t i;
    slm_status st = find_or_fail(g, key, &i);
    return st != SLM_OK ? st : slm_gguf_kv_bool(g, i, out);
}

slm_status slm_gguf_get_str(const slm_gguf *g, const char *key, const char **s, size_t *len)
{
    int64_t i;
    slm_status st = find_or_fail(g, key, &i);
    return st != SLM_OK ? st : slm_gguf_kv_str(g, i, s, len);
}

slm_status slm_gguf_get_str_copy(const slm_gguf *g, const char *key, char *buf, size_t cap)
{
    const char *s = NULL;
    size_t len = 0;
    slm_status st = slm_gguf_get_str(g, key, &s, &len);
    if (st != SLM_OK)
        return st;
    if (len >= cap)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "gguf: key '%s': string of %zu bytes does not fit a buffer of %zu", key,
                         len, cap);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return SLM_OK;
}

slm_status slm_gguf_get_arr(const slm_gguf *g, const char *key, int64_t *kv_index,
                            slm_gguf_type *elem_type, uint64_t *count)
{
    int64_t i;
    slm_status st = find_or_fail(g, key, &i);
    if (st != SLM_OK)
        return st;
    const slm_gguf_kv *kv = &g->kvs[i];
    if (kv->type != SLM_GGUF_ARRAY)
        return wrong_type(kv, "an array");
    if (kv_index)
        *kv_index = i;
    if (elem_type)
        *elem_type = kv->elem_type;
    if (count)
        *count = kv->count;
    return SLM_OK;
}

/* Record i as an array, and element j's bytes; fails on bad i or j. */
static slm_status arr_elem(const slm_gguf *g, int64_t i, uint64_t j, const slm_gguf_kv **kvp,
                           const uint8_t **p)
{
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    if (!kv)
        return bad_index(g, i);
    if (kv->type != SLM_GGUF_ARRAY)
        return wrong_type(kv, "an array");
    if (j >= kv->count)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "gguf: key '%s': element %" PRIu64 " is past the array's %" PRIu64, kv->key,
                         j, kv->count);
    *kvp = kv;
    if (kv->elem_type == SLM_GGUF_STRING)
        *p = g->base + g->str_off[i][j];
    else
        *p = kv->data + j * scalar_size[kv->elem_type];
    return SLM_OK;
}

slm_status slm_gguf_arr_int(const slm_gguf *g, int64_t i, uint64_t j, int64_t *out)
{
    const slm_gguf_kv *kv = NULL;
    const uint8_t *p = NULL;
    slm_status st = arr_elem(g, i, j, &kv, &p);
    if (st != SLM_OK)
        return st;
    if (!is_int_type(kv->elem_type))
        return wrong_type(kv, "an integer array");
    return int_at(kv, kv->elem_type, p, out);
}

slm_status slm_gguf_arr_float(const slm_gguf *g, int64_t i, uint64_t j, double *out)
{
    const slm_gguf_kv *kv = NULL;
    const uint8_t *p = NULL;
    slm_status st = arr_elem(g, i, j, &kv, &p);
    if (st != SLM_OK)
        return st;
    if (kv->elem_type != SLM_GGUF_FLOAT32 && kv->elem_type != SLM_GGUF_FLOAT64)
        return wrong_type(kv, "a float array");
    *out = decode_float(kv->elem_type, p);
    return SLM_OK;
}

slm_status slm_gguf_arr_bool(const slm_gguf *g, int64_t i, uint64_t j, bool *out)
{
    const slm_gguf_kv *kv = NULL;
    const uint8_t *p = NULL;
    slm_status st = arr_elem(g, i, j, &kv, &p);
    if (st != SLM_OK)
        return st;
    if (kv->elem_type != SLM_GGUF_BOOL)
        return wrong_type(kv, "a bool array");
    *out = p[0] != 0;
    return SLM_OK;
}

slm_status slm_gguf_arr_str(const slm_gguf *g, int64_t i, uint64_t j, const char **s,
                            size_t *len)
{
    const slm_gguf_kv *kv = NULL;
    const uint8_t *p = NULL;
    slm_status st = arr_elem(g, i, j, &kv, &p);
    if (st != SLM_OK)
        return st;
    if (kv->elem_type != SLM_GGUF_STRING)
        return wrong_type(kv, "a string array");
    *len = (size_t)le64(p); /* validated at open: the bytes follow inside the file */
    *s = (const char *)(p + 8);
    return SLM_OK;
}

slm_status slm_gguf_get_int_at(const slm_gguf *g, const char *key, uint64_t layer,
                               int64_t *out)
{
    int64_t i;
    slm_status st = find_or_fail(g, key, &i);
    if (st != SLM_OK)
        return st;
    const slm_gguf_kv *kv = &g->kvs[i];
    if (kv->type != SLM_GGUF_ARRAY)
        return slm_gguf_kv_int(g, i, out);
    if (layer >= kv->count)
        return slm_error(SLM_STATUS_BAD_FORMAT,
                         "gguf: key '%s' has %" PRIu64 " entries, none for layer %" PRIu64, key,
                         kv->count, layer);
    return slm_gguf_arr_int(g, i, layer, out);
}

/* --- tensor getters ----------------------------------------------------------------- */

int64_t slm_gguf_tensor_count(const slm_gguf *g) { return g->n_tensors; }

const slm_gguf_tensor *slm_gguf_tensor_at(const slm_gguf *g, int64_t i)
{
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

int64_t slm_gguf_find_tensor(const slm_gguf *g, const char *name)
{
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(g->tensors[g->tensor_sorted[mid]].name, name);
        if (r == 0)
            return g->tensor_sorted[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

slm_status slm_gguf_get_tensor(const slm_gguf *g, const char *name, const slm_gguf_tensor **out)
{
    int64_t i = slm_gguf_find_tensor(g, name);
    if (i < 0)
        return slm_error(SLM_STATUS_NOT_FOUND, "gguf: tensor '%s' not found", name);
    *out = &g->tensors[i];
    return SLM_OK;
}
