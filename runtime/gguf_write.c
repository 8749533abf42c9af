/*
 * gguf_write.c — see gguf_write.h. The metadata section is kept as bytes
 * already in file order; keys are remembered to refuse duplicates (a file
 * slm writes must pass slm's own reader, which refuses them too).
 */
#include "gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "status.h"

#define ALIGN 32

typedef struct {
    char name[SLM_GGUF_MAX_NAME + 1];
    int type, n_dims;
    int64_t ne[4];
    uint64_t nbytes, offset;
} wtensor;

struct slm_gguf_writer {
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    wtensor *t;
    int64_t n_t, cap_t;
    bool oom;
};

slm_status slm_gguf_writer_create(slm_gguf_writer **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? SLM_OK : slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf writer: out of memory");
}

void slm_gguf_writer_free(slm_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->kv);
    free(w->t);
    free(w);
}

static void bytes(slm_gguf_writer *w, const void *p, size_t n)
{
    if (w->oom)
        return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n)
            cap *= 2;
        uint8_t *b = realloc(w->kv, cap);
        if (!b) {
            w->oom = true;
            return;
        }
        w->kv = b, w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

/* Little-endian encoders (slm targets little-endian hosts, but the file
 * format is fixed, so encode explicitly). */
static void u32le(slm_gguf_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bytes(w, b, 4);
}

static void u64le(slm_gguf_writer *w, uint64_t v)
{
    u32le(w, (uint32_t)v);
    u32le(w, (uint32_t)(v >> 32));
}

static void str(slm_gguf_writer *w, const char *s, size_t len)
{
    u64le(w, len);
    bytes(w, s, len);
}

static slm_status key(slm_gguf_writer *w, const char *k, slm_gguf_type type)
{
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], k))
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "gguf writer: key '%s' added twice", k);
    char **keys = realloc(w->keys, (w->n_kv + 1) * sizeof *keys);
    char *copy = strdup(k);
    if (!keys || !copy) {
        free(copy);
        if (keys)
            w->keys = keys;
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf writer: out of memory");
    }
    w->keys = keys;
    w->keys[w->n_kv++] = copy;
    str(w, k, strlen(k));
    u32le(w, (uint32_t)type);
    return SLM_OK;
}

static slm_status done(slm_gguf_writer *w)
{
    return w->oom ? slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf writer: out of memory") : SLM_OK;
}

slm_status slm_gguf_put_u32(slm_gguf_writer *w, const char *k, uint32_t v)
{
    slm_status st = key(w, k, SLM_GGUF_UINT32);
    if (!st)
        u32le(w, v);
    return st ? st : done(w);
}

slm_status slm_gguf_put_i32(slm_gguf_writer *w, const char *k, int32_t v)
{
    slm_status st = key(w, k, SLM_GGUF_INT32);
    if (!st)
        u32le(w, (uint32_t)v);
    return st ? st : done(w);
}

slm_status slm_gguf_put_f32(slm_gguf_writer *w, const char *k, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    slm_status st = key(w, k, SLM_GGUF_FLOAT32);
    if (!st)
        u32le(w, u);
    return st ? st : done(w);
}

slm_status slm_gguf_put_bool(slm_gguf_writer *w, const char *k, bool v)
{
    uint8_t b = v;
    slm_status st = key(w, k, SLM_GGUF_BOOL);
    if (!st)
        bytes(w, &b, 1);
    return st ? st : done(w);
}

slm_status slm_gguf_put_str(slm_gguf_writer *w, const char *k, const char *s, size_t len)
{
    slm_status st = key(w, k, SLM_GGUF_STRING);
    if (!st)
        str(w, s, len);
    return st ? st : done(w);
}

static slm_status arr_head(slm_gguf_writer *w, const char *k, slm_gguf_type elem, uint64_t n)
{
    slm_status st = key(w, k, SLM_GGUF_ARRAY);
    if (!st) {
        u32le(w, (uint32_t)elem);
        u64le(w, n);
    }
    return st;
}

slm_status slm_gguf_put_arr_str(slm_gguf_writer *w, const char *k, const char *const *s,
                                const size_t *lens, uint64_t n)
{
    slm_status st = arr_head(w, k, SLM_GGUF_STRING, n);
    for (uint64_t i = 0; !st && i < n; i++)
        str(w, s[i], lens ? lens[i] : strlen(s[i]));
    return st ? st : done(w);
}

slm_status slm_gguf_put_arr_i32(slm_gguf_writer *w, const char *k, const int32_t *v, uint64_t n)
{
    slm_status st = arr_head(w, k, SLM_GGUF_INT32, n);
    for (uint64_t i = 0; !st && i < n; i++)
        u32le(w, (uint32_t)v[i]);
    return st ? st : done(w);
}

slm_status slm_gguf_put_arr_f32(slm_gguf_writer *w, const char *k, const float *v, uint64_t n)
{
    slm_status st = arr_head(w, k, SLM_GGUF_FLOAT32, n);
    for (uint64_t i = 0; !st && i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u32le(w, u);
    }
    return st ? st : done(w);
}

static const uint8_t scalar_bytes[SLM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

slm_status slm_gguf_put_copy(slm_gguf_writer *w, const slm_gguf *g, int64_t i)
{
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    if (!kv)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "gguf writer: no record %lld", (long long)i);
    if (kv->type == SLM_GGUF_STRING)
        return slm_gguf_put_str(w, kv->key, (const char *)kv->data, kv->count);
    if (kv->type != SLM_GGUF_ARRAY) {
        slm_status st = key(w, kv->key, kv->type);
        if (!st)
            bytes(w, kv->data, scalar_bytes[kv->type]);
        return st ? st : done(w);
    }
    slm_status st = arr_head(w, kv->key, kv->elem_type, kv->count);
    if (st)
        return st;
    if (kv->elem_type != SLM_GGUF_STRING) {
        bytes(w, kv->data, (size_t)kv->count * scalar_bytes[kv->elem_type]);
        return done(w);
    }
    for (uint64_t j = 0; j < kv->count; j++) {
        const char *s;
        size_t len;
        if ((st = slm_gguf_arr_str(g, i, j, &s, &len)))
            return st;
        str(w, s, len);
    }
    return done(w);
}

slm_status slm_gguf_add_tensor(slm_gguf_writer *w, const char *name, int type, int n_dims,
                               const int64_t *ne)
{
    if (strlen(name) > SLM_GGUF_MAX_NAME || n_dims < 1 || n_dims > 4)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "gguf writer: tensor '%s': bad name or dims",
                         name);
    uint64_t rows = 1;
    for (int d = 1; d < n_dims; d++)
        rows *= (uint64_t)ne[d];
    size_t row = slm_type_row_bytes(type, ne[0]);
    if (!row)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "gguf writer: tensor '%s': %lld elements per row do not fit type %s",
                         name, (long long)ne[0], slm_type_name(type));
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf writer: out of memory");
        w->t = t, w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type, t->n_dims = n_dims;
    for (int d = 0; d < 4; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = row * rows;
    t->offset = w->n_t ? w->t[w->n_t - 1].offset + ((w->t[w->n_t - 1].nbytes + ALIGN - 1) & ~(uint64_t)(ALIGN - 1)) : 0;
    w->n_t++;
    return SLM_OK;
}

static slm_status write_all(FILE *f, const void *p, size_t n, const char *path)
{
    if (n && fwrite(p, 1, n, f) != n)
        return slm_error(SLM_STATUS_IO, "gguf writer: writing %s failed", path);
    return SLM_OK;
}

static slm_status write_header(slm_gguf_writer *w, FILE *f, const char *path)
{
    slm_gguf_writer h = {0};
    bytes(&h, "GGUF", 4);
    u32le(&h, 3);
    u64le(&h, (uint64_t)w->n_t);
    u64le(&h, w->n_kv);
    bytes(&h, w->kv, w->kv_len);
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        str(&h, t->name, strlen(t->name));
        u32le(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            u64le(&h, (uint64_t)t->ne[d]);
        u32le(&h, (uint32_t)t->type);
        u64le(&h, t->offset);
    }
    static const uint8_t zeros[ALIGN];
    bytes(&h, zeros, (ALIGN - h.kv_len % ALIGN) % ALIGN);
    slm_status st = h.oom ? slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf writer: out of memory")
                          : write_all(f, h.kv, h.kv_len, path);
    free(h.kv);
    return st;
}

slm_status slm_gguf_writer_write(slm_gguf_writer *w, const char *path, slm_gguf_fill_fn fill,
                                 void *user, void (*progress)(float, void *), void *puser)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return slm_error(SLM_STATUS_IO, "gguf writer: cannot create %s", path);
    slm_status st = write_header(w, f, path);
    uint64_t total = 0, written = 0;
    for (int64_t i = 0; i < w->n_t; i++)
        total += w->t[i].nbytes;
    static const uint8_t zeros[ALIGN];
    for (int64_t i = 0; !st && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        void *buf = malloc(t->nbytes ? t->nbytes : 1);
        if (!buf) {
            st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "gguf writer: out of memory for '%s'",
                           t->name);
            break;
        }
        st = fill(user, i, t->name, t->type, t->ne, buf, t->nbytes);
        if (!st)
            st = write_all(f, buf, t->nbytes, path);
        if (!st)
            st = write_all(f, zeros, (ALIGN - t->nbytes % ALIGN) % ALIGN, path);
        free(buf);
        written += t->nbytes;
        if (progress && total)
            progress((float)((double)written / (double)total), puser);
    }
    if (fclose(f) && !st)
        st = slm_error(SLM_STATUS_IO, "gguf writer: closing %s failed", path);
    if (st)
        remove(path);
    return st;
}
