/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader: any byte string goes
 * through slm_gguf_open_memory; when it opens, every KV, every array element
 * (through every element getter, so type checks are exercised too) and every
 * tensor's data is read. Built with AddressSanitizer and UBSan (SLM_FUZZ=ON),
 * so a read outside the input or an overflow is a crash. libFuzzer hands us a
 * buffer of exactly size bytes, so over-reads are caught at the first byte.
 * Run by scripts/fuzz, seeded with tests/fixtures/gguf/{good,bad}.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf.h"

/* Keeps the compiler from dropping reads whose values are otherwise unused. */
static volatile uint64_t sink;

static uint64_t touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = n;
    for (size_t i = 0; i < n; i++)
        h = h * 31 + b[i];
    return h;
}

static void walk_kvs(const slm_gguf *g)
{
    for (int64_t i = 0; i < slm_gguf_kv_count(g); i++) {
        const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
        int64_t v;
        double d;
        bool b;
        const char *s;
        size_t len;
        uint64_t h = touch(kv->key, kv->key_len + 1) + (uint64_t)slm_gguf_find_kv(g, kv->key);
        if (slm_gguf_kv_int(g, i, &v) == SLM_OK)
            h += (uint64_t)v;
        if (slm_gguf_kv_float(g, i, &d) == SLM_OK)
            h += d > 0;
        if (slm_gguf_kv_bool(g, i, &b) == SLM_OK)
            h += b;
        if (slm_gguf_kv_str(g, i, &s, &len) == SLM_OK)
            h += touch(s, len);
        if (slm_gguf_get_int_at(g, kv->key, 1, &v) == SLM_OK)
            h += (uint64_t)v;
        if (kv->type == SLM_GGUF_ARRAY) {
            for (uint64_t j = 0; j <= kv->count; j++) { /* one past the end too */
                if (slm_gguf_arr_int(g, i, j, &v) == SLM_OK)
                    h += (uint64_t)v;
                if (slm_gguf_arr_float(g, i, j, &d) == SLM_OK)
                    h += d > 0;
                if (slm_gguf_arr_bool(g, i, j, &b) == SLM_OK)
                    h += b;
                if (slm_gguf_arr_str(g, i, j, &s, &len) == SLM_OK)
                    h += touch(s, len);
            }
        }
        sink += h;
    }
}

static void walk_tensors(const slm_gguf *g)
{
    for (int64_t i = 0; i < slm_gguf_tensor_count(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        const slm_gguf_tensor *by_name = NULL;
        sink += (uint64_t)slm_gguf_find_tensor(g, t->name);
        sink += slm_gguf_get_tensor(g, t->name, &by_name) == SLM_OK && by_name == t;
        sink += touch(t->data, (size_t)t->nbytes) + (uint64_t)t->n_elements;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    slm_gguf *g = NULL;
    if (slm_gguf_open_memory(data, size, &g) != SLM_OK)
        return 0;
    sink += slm_gguf_version(g) + slm_gguf_alignment(g) + slm_gguf_data_start(g);
    walk_kvs(g);
    walk_tensors(g);
    slm_gguf_close(g);
    return 0;
}
