/*
 * test_gguf.c — the GGUF reader against files of known content.
 *
 *   bad corpus     every tests/fixtures/gguf/bad/NAME.gguf (one defect each,
 *                  made by scripts/make_gguf_corpus.py) fails with the status
 *                  and message expected.txt lists, through the file and the
 *                  memory path alike; every file there is listed;
 *   good files     every value and tensor a good/NAME.txt manifest lists
 *                  (written from gguf-py's independent reader) is read back
 *                  exactly, through every getter that fits its type;
 *   getters        type mismatches, missing keys, out-of-range indices;
 *   truncation     every prefix of every good file fails cleanly, until the
 *                  prefix holds all tensor data, from then on it opens;
 *   mutations      random byte and field mutations of good files either fail
 *                  with a message or open into something every getter can
 *                  walk without leaving the buffer;
 *   real model     facts about SmolLM2-135M-Instruct Q4_1 (skipped when
 *                  models/ does not hold it).
 * Buffers handed to slm_gguf_open_memory end right before a PROT_NONE page,
 * so a read past the end crashes the test even without AddressSanitizer.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf.h"
#include "status.h"
#include "testutil.h"

#define BAD_DIR "tests/fixtures/gguf/bad"
#define GOOD_DIR "tests/fixtures/gguf/good"
#define MODEL_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* --- helpers ------------------------------------------------------------------ */

/* A copy of n bytes that ends exactly at a PROT_NONE guard page. */
typedef struct guarded {
    uint8_t *data;
    void *map;
    size_t map_len;
} guarded;

static guarded guard_copy(const void *src, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (n + page - 1) / page + 1;
    guarded gb = {0};
    gb.map_len = pages * page;
    gb.map = mmap(NULL, gb.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(gb.map != MAP_FAILED);
    uint8_t *guard = (uint8_t *)gb.map + (pages - 1) * page;
    assert_int_equal(mprotect(guard, page, PROT_NONE), 0);
    gb.data = guard - n;
    if (n)
        memcpy(gb.data, src, n);
    return gb;
}

static void guard_free(guarded *gb) { munmap(gb->map, gb->map_len); }

static const char *status_token(slm_status st)
{
    switch (st) {
    case SLM_OK: return "OK";
    case SLM_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case SLM_STATUS_IO: return "IO";
    case SLM_STATUS_BAD_FORMAT: return "BAD_FORMAT";
    case SLM_STATUS_UNSUPPORTED: return "UNSUPPORTED";
    case SLM_STATUS_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case SLM_STATUS_DEVICE: return "DEVICE";
    case SLM_STATUS_NOT_FOUND: return "NOT_FOUND";
    case SLM_STATUS_INTERNAL: return "INTERNAL";
    default: break; /* statuses the reader never returns */
    }
    return slm_status_name(st);
}

static void expect_error(slm_status got, slm_status want, const char *substr)
{
    const char *msg = slm_last_error();
    if (got != want || !strstr(msg, substr))
        fail_msg("expected %s containing \"%s\", got %s: \"%s\"", status_token(want), substr,
                 status_token(got), msg);
}

static uint64_t fnv1a64(const uint8_t *p, uint64_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static size_t hex_decode(const char *tok, uint8_t *out, size_t cap)
{
    assert_int_equal(tok[0], 'x');
    size_t n = strlen(tok + 1) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(tok + 1 + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static slm_gguf_type type_from_name(const char *name)
{
    for (int t = 0; t < SLM_GGUF_TYPE_COUNT; t++)
        if (strcmp(slm_gguf_type_name((slm_gguf_type)t), name) == 0)
            return (slm_gguf_type)t;
    fail_msg("unknown type name %s in manifest", name);
    return SLM_GGUF_TYPE_COUNT;
}

static bool is_int(slm_gguf_type t)
{
    return t <= SLM_GGUF_INT32 || t == SLM_GGUF_UINT64 || t == SLM_GGUF_INT64;
}

/* --- bad corpus ---------------------------------------------------------------- */

static void test_bad_corpus(void **state)
{
    (void)state;
    FILE *f = fopen(BAD_DIR "/expected.txt", "r");
    assert_non_null(f);
    char line[512], names[128][64];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\n")] = '\0';
        char name[64], status[32];
        int used = 0;
        assert_int_equal(sscanf(line, "%63s %31s %n", name, status, &used), 2);
        const char *substr = line + used;
        assert_true(n < 128);
        strcpy(names[n++], name);

        char path[256];
        snprintf(path, sizeof path, BAD_DIR "/%s.gguf", name);
        slm_gguf *g = (slm_gguf *)&g; /* poison: must come back NULL */
        slm_status st = slm_gguf_open(path, &g);
        if (strcmp(status_token(st), status) != 0 || !strstr(slm_last_error(), substr))
            fail_msg("%s: expected %s \"%s\", got %s \"%s\"", name, status, substr,
                     status_token(st), slm_last_error());
        assert_null(g);
        char msg_file[1024];
        snprintf(msg_file, sizeof msg_file, "%s", slm_last_error());

        size_t size = 0;
        void *bytes = tu_read_file(path, &size);
        assert_non_null(bytes);
        guarded gb = guard_copy(bytes, size);
        g = (slm_gguf *)&g;
        slm_status st2 = slm_gguf_open_memory(gb.data, size, &g);
        assert_int_equal(st2, st);
        assert_null(g);
        assert_string_equal(slm_last_error(), msg_file);
        guard_free(&gb);
        free(bytes);
    }
    fclose(f);
    assert_true(n >= 22);

    /* Every .gguf in the folder is listed, so none goes unchecked. */
    DIR *d = opendir(BAD_DIR);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".gguf") != 0)
            continue;
        files++;
        bool listed = false;
        for (int i = 0; i < n && !listed; i++)
            listed = strlen(names[i]) == len - 5 && strncmp(names[i], e->d_name, len - 5) == 0;
        if (!listed)
            fail_msg("%s is not listed in expected.txt", e->d_name);
    }
    closedir(d);
    assert_int_equal(files, n);
    print_message("bad corpus: %d files, each failed as expected\n", n);
}

/* --- good files against their manifests ------------------------------------------ */

/* Checks one scalar value (type t, manifest text v) as the getters see it. */
static void check_scalar(const slm_gguf *g, int64_t i, slm_gguf_type t, const char *v)
{
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    if (is_int(t)) {
        int64_t got = 0;
        if (t == SLM_GGUF_UINT64 && strtoull(v, NULL, 10) > (uint64_t)INT64_MAX) {
            expect_error(slm_gguf_kv_int(g, i, &got), SLM_STATUS_BAD_FORMAT, "does not fit int64");
            uint64_t raw;
            memcpy(&raw, kv->data, 8); /* the fixtures are read on little-endian hosts */
            assert_true(raw == strtoull(v, NULL, 10));
            return;
        }
        assert_int_equal(slm_gguf_kv_int(g, i, &got), SLM_OK);
        int64_t by_key = 0;
        assert_int_equal(slm_gguf_get_int(g, kv->key, &by_key), SLM_OK);
        assert_true(got == strtoll(v, NULL, 10) && by_key == got);
        double dummy;
        assert_int_equal(slm_gguf_kv_float(g, i, &dummy), SLM_STATUS_BAD_FORMAT);
    } else if (t == SLM_GGUF_FLOAT32 || t == SLM_GGUF_FLOAT64) {
        double got = 0, by_key = 0;
        assert_int_equal(slm_gguf_kv_float(g, i, &got), SLM_OK);
        assert_int_equal(slm_gguf_get_float(g, kv->key, &by_key), SLM_OK);
        /* exact: the manifest holds the stored value in hex-float notation */
        assert_true(got == strtod(v, NULL) && by_key == got);
    } else if (t == SLM_GGUF_BOOL) {
        bool got = false, by_key = false;
        assert_int_equal(slm_gguf_kv_bool(g, i, &got), SLM_OK);
        assert_int_equal(slm_gguf_get_bool(g, kv->key, &by_key), SLM_OK);
        assert_int_equal(got, v[0] == '1');
        assert_int_equal(by_key, got);
    } else {
        assert_int_equal(t, SLM_GGUF_STRING);
        uint8_t want[256];
        size_t wlen = hex_decode(v, want, sizeof want);
        const char *s = NULL;
        size_t len = 0;
        assert_int_equal(slm_gguf_kv_str(g, i, &s, &len), SLM_OK);
        assert_int_equal(len, wlen);
        assert_memory_equal(s, want, wlen);
        char buf[257];
        assert_int_equal(slm_gguf_get_str_copy(g, kv->key, buf, sizeof buf), SLM_OK);
        assert_int_equal(strlen(buf), wlen);
        assert_memory_equal(buf, want, wlen);
        int64_t dummy;
        expect_error(slm_gguf_kv_int(g, i, &dummy), SLM_STATUS_BAD_FORMAT, "is string, not");
    }
}

/* Checks element j of array record i against manifest text v. */
static void check_element(const slm_gguf *g, int64_t i, slm_gguf_type et, uint64_t j, const char *v)
{
    if (is_int(et)) {
        int64_t got = 0;
        if (et == SLM_GGUF_UINT64 && strtoull(v, NULL, 10) > (uint64_t)INT64_MAX) {
            expect_error(slm_gguf_arr_int(g, i, j, &got), SLM_STATUS_BAD_FORMAT,
                         "does not fit int64");
            return;
        }
        assert_int_equal(slm_gguf_arr_int(g, i, j, &got), SLM_OK);
        assert_true(got == strtoll(v, NULL, 10));
    } else if (et == SLM_GGUF_FLOAT32 || et == SLM_GGUF_FLOAT64) {
        double got = 0;
        assert_int_equal(slm_gguf_arr_float(g, i, j, &got), SLM_OK);
        assert_true(got == strtod(v, NULL)); /* exact: hex-float manifest */
    } else if (et == SLM_GGUF_BOOL) {
        bool got = false;
        assert_int_equal(slm_gguf_arr_bool(g, i, j, &got), SLM_OK);
        assert_int_equal(got, v[0] == '1');
    } else {
        uint8_t want[256];
        size_t wlen = hex_decode(v, want, sizeof want);
        const char *s = NULL;
        size_t len = 0;
        assert_int_equal(slm_gguf_arr_str(g, i, j, &s, &len), SLM_OK);
        assert_int_equal(len, wlen);
        assert_memory_equal(s, want, wlen);
    }
}

static void check_kv_line(const slm_gguf *g, int64_t i, char *rest, bool is_arr)
{
    char *save = NULL;
    const char *key = strtok_r(rest, " ", &save);
    slm_gguf_type t = type_from_name(strtok_r(NULL, " ", &save));
    const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
    assert_non_null(kv);
    assert_string_equal(kv->key, key);
    assert_int_equal(kv->key_len, strlen(key));
    assert_int_equal(slm_gguf_find_kv(g, key), i);
    if (!is_arr) {
        assert_int_equal(kv->type, t);
        check_scalar(g, i, t, strtok_r(NULL, " ", &save));
        return;
    }
    uint64_t count = strtoull(strtok_r(NULL, " ", &save), NULL, 10);
    int64_t idx = -1;
    slm_gguf_type et = SLM_GGUF_TYPE_COUNT;
    uint64_t got_count = 0;
    assert_int_equal(kv->type, SLM_GGUF_ARRAY);
    assert_int_equal(slm_gguf_get_arr(g, key, &idx, &et, &got_count), SLM_OK);
    assert_int_equal(idx, i);
    assert_int_equal(et, t);
    assert_int_equal(kv->elem_type, t);
    assert_true(got_count == count && kv->count == count);
    for (uint64_t j = 0; j < count; j++)
        check_element(g, i, t, j, strtok_r(NULL, " ", &save));
    assert_null(strtok_r(NULL, " ", &save));
    int64_t dummy;
    expect_error(slm_gguf_arr_int(g, i, count, &dummy), SLM_STATUS_INVALID_ARGUMENT,
                 "is past the array's");
}

static void check_tensor_line(const slm_gguf *g, int64_t i, const char *rest)
{
    char name[128];
    int type, n_dims;
    int64_t ne[4];
    uint64_t offset, nbytes, hash;
    assert_int_equal(sscanf(rest, "%127s %d %d %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64
                                  " %" SCNu64 " %" SCNu64 " %" SCNx64,
                            name, &type, &n_dims, &ne[0], &ne[1], &ne[2], &ne[3], &offset,
                            &nbytes, &hash),
                     10);
    const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
    assert_non_null(t);
    assert_string_equal(t->name, name);
    assert_int_equal(t->type, type);
    assert_int_equal(t->n_dims, n_dims);
    for (int d = 0; d < 4; d++)
        assert_int_equal(t->ne[d], ne[d]);
    assert_int_equal(t->n_elements, ne[0] * ne[1] * ne[2] * ne[3]);
    assert_true(t->offset == offset && t->nbytes == nbytes);
    const uint8_t *base = slm_gguf_file_data(g);
    assert_ptr_equal(t->data, base + slm_gguf_data_start(g) + offset);
    assert_true(fnv1a64(t->data, t->nbytes) == hash);
    assert_int_equal(slm_gguf_find_tensor(g, name), i);
    const slm_gguf_tensor *by_name = NULL;
    assert_int_equal(slm_gguf_get_tensor(g, name, &by_name), SLM_OK);
    assert_ptr_equal(by_name, t);
}

static void check_manifest(const char *stem)
{
    char path[256];
    snprintf(path, sizeof path, GOOD_DIR "/%s.txt", stem);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    snprintf(path, sizeof path, GOOD_DIR "/%s.gguf", stem);
    slm_gguf *g = NULL;
    slm_status st = slm_gguf_open(path, &g);
    if (st != SLM_OK)
        fail_msg("%s: %s", path, slm_last_error());
    static char line[1 << 16];
    int64_t kv_i = 0, t_i = 0;
    bool header = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "file ", 5) == 0) {
            unsigned version, align;
            uint64_t data_start, size;
            int64_t n_kv, n_t;
            assert_int_equal(sscanf(line + 5, "%u %u %" SCNu64 " %" SCNu64 " %" SCNd64 " %" SCNd64,
                                    &version, &align, &data_start, &size, &n_kv, &n_t),
                             6);
            assert_int_equal(slm_gguf_version(g), version);
            assert_int_equal(slm_gguf_alignment(g), align);
            assert_true(slm_gguf_data_start(g) == data_start);
            assert_true(slm_gguf_file_size(g) == size);
            assert_int_equal(slm_gguf_kv_count(g), n_kv);
            assert_int_equal(slm_gguf_tensor_count(g), n_t);
            header = true;
        } else if (strncmp(line, "kv ", 3) == 0 || strncmp(line, "arr ", 4) == 0) {
            bool arr = line[0] == 'a';
            check_kv_line(g, kv_i++, line + (arr ? 4 : 3), arr);
        } else if (strncmp(line, "tensor ", 7) == 0) {
            check_tensor_line(g, t_i++, line + 7);
        } else {
            fail_msg("%s: bad manifest line '%s'", stem, line);
        }
    }
    fclose(f);
    assert_true(header);
    assert_int_equal(kv_i, slm_gguf_kv_count(g));
    assert_int_equal(t_i, slm_gguf_tensor_count(g));
    slm_gguf_close(g);
}

static void test_good_manifests(void **state)
{
    (void)state;
    const char *stems[] = {"v3_all_types", "v2", "align64", "edge", "empty", "gguf_py"};
    for (size_t i = 0; i < sizeof stems / sizeof *stems; i++)
        check_manifest(stems[i]);
}

/* --- getters: mismatches, absent keys, edges --------------------------------------- */

static void test_getters(void **state)
{
    (void)state;
    slm_gguf *g = NULL;
    assert_int_equal(slm_gguf_open(GOOD_DIR "/v3_all_types.gguf", &g), SLM_OK);
    int64_t v = 0;
    double d = 0;
    bool b = true;
    const char *s = NULL;
    size_t len = 0;

    /* Integer keys of any width read as int64 (values from the generator). */
    assert_int_equal(slm_gguf_get_int(g, "test.u8", &v), SLM_OK);
    assert_int_equal(v, 200);
    assert_int_equal(slm_gguf_get_int(g, "test.i16", &v), SLM_OK);
    assert_int_equal(v, -32000);
    assert_int_equal(slm_gguf_get_int(g, "test.u32", &v), SLM_OK);
    assert_int_equal(v, 4000000000);

    expect_error(slm_gguf_get_int(g, "no.such.key", &v), SLM_STATUS_NOT_FOUND,
                 "key 'no.such.key' not found");
    expect_error(slm_gguf_get_int(g, "test.f32", &v), SLM_STATUS_BAD_FORMAT,
                 "key 'test.f32' is float32, not an integer");
    expect_error(slm_gguf_get_float(g, "test.i32", &d), SLM_STATUS_BAD_FORMAT, "is int32, not a float");
    expect_error(slm_gguf_get_bool(g, "test.u8", &b), SLM_STATUS_BAD_FORMAT, "is uint8, not a bool");
    expect_error(slm_gguf_get_str(g, "test.arr_str", &s, &len), SLM_STATUS_BAD_FORMAT,
                 "is an array of string, not a string");
    expect_error(slm_gguf_get_int(g, "test.u64", &v), SLM_STATUS_BAD_FORMAT,
                 "value 18000000000000000000 (uint64) does not fit int64");
    expect_error(slm_gguf_get_arr(g, "test.u8", NULL, NULL, NULL), SLM_STATUS_BAD_FORMAT,
                 "is uint8, not an array");

    /* Per-layer values: a scalar serves every layer, an array one each. */
    assert_int_equal(slm_gguf_get_int_at(g, "test.per_layer", 2, &v), SLM_OK);
    assert_int_equal(v, 3);
    expect_error(slm_gguf_get_int_at(g, "test.per_layer", 3, &v), SLM_STATUS_BAD_FORMAT,
                 "has 3 entries, none for layer 3");
    assert_int_equal(slm_gguf_get_int_at(g, "test.u8", 77, &v), SLM_OK);
    assert_int_equal(v, 200);
    expect_error(slm_gguf_get_int_at(g, "test.arr_str", 0, &v), SLM_STATUS_BAD_FORMAT,
                 "is an array of string, not an integer array");

    /* String copies need room for the terminator; a failed copy leaves buf. */
    char buf[16];
    memset(buf, '#', sizeof buf);
    expect_error(slm_gguf_get_str_copy(g, "test.str", buf, 14), SLM_STATUS_INVALID_ARGUMENT,
                 "string of 14 bytes does not fit a buffer of 14");
    assert_int_equal(buf[0], '#');
    assert_int_equal(slm_gguf_get_str_copy(g, "test.str", buf, 15), SLM_OK);
    assert_string_equal(buf, "h\xc3\xa9llo, w\xc3\xb6rld");

    /* Array element access. */
    int64_t ai = -1;
    assert_int_equal(slm_gguf_get_arr(g, "test.arr_str", &ai, NULL, NULL), SLM_OK);
    assert_int_equal(slm_gguf_arr_str(g, ai, 4, &s, &len), SLM_OK);
    assert_true(len == 3 && memcmp(s, "a b", 3) == 0);
    expect_error(slm_gguf_arr_str(g, ai, 5, &s, &len), SLM_STATUS_INVALID_ARGUMENT,
                 "element 5 is past the array's 5");
    expect_error(slm_gguf_arr_float(g, ai, 0, &d), SLM_STATUS_BAD_FORMAT, "not a float array");
    expect_error(slm_gguf_arr_int(g, slm_gguf_kv_count(g), 0, &v), SLM_STATUS_INVALID_ARGUMENT,
                 "out of range");
    expect_error(slm_gguf_arr_int(g, slm_gguf_find_kv(g, "test.u8"), 0, &v),
                 SLM_STATUS_BAD_FORMAT, "not an array");
    expect_error(slm_gguf_kv_int(g, -1, &v), SLM_STATUS_INVALID_ARGUMENT, "kv index -1");
    assert_null(slm_gguf_kv_at(g, -1));
    assert_null(slm_gguf_kv_at(g, slm_gguf_kv_count(g)));
    assert_int_equal(slm_gguf_find_kv(g, "test"), -1);    /* a prefix of keys */
    assert_int_equal(slm_gguf_find_kv(g, "test.u8x"), -1); /* a key plus a byte */

    /* Tensors. */
    const slm_gguf_tensor *t = NULL;
    expect_error(slm_gguf_get_tensor(g, "nope", &t), SLM_STATUS_NOT_FOUND, "tensor 'nope' not found");
    assert_null(t);
    assert_int_equal(slm_gguf_find_tensor(g, "norm.weigh"), -1);
    assert_null(slm_gguf_tensor_at(g, -1));
    assert_null(slm_gguf_tensor_at(g, slm_gguf_tensor_count(g)));
    assert_string_equal(slm_gguf_type_name(SLM_GGUF_FLOAT64), "float64");
    assert_string_equal(slm_gguf_type_name(SLM_GGUF_TYPE_COUNT), "invalid");
    slm_gguf_close(g);
    slm_gguf_close(NULL);
}

static void test_open_errors(void **state)
{
    (void)state;
    slm_gguf *g = NULL;
    expect_error(slm_gguf_open("tests/fixtures/gguf/no-such-file.gguf", &g), SLM_STATUS_IO,
                 "cannot open 'tests/fixtures/gguf/no-such-file.gguf'");
    assert_null(g);
    expect_error(slm_gguf_open(GOOD_DIR, &g), SLM_STATUS_IO, "is not a regular file");
    expect_error(slm_gguf_open(NULL, &g), SLM_STATUS_INVALID_ARGUMENT, "NULL");
    expect_error(slm_gguf_open(GOOD_DIR "/v2.gguf", NULL), SLM_STATUS_INVALID_ARGUMENT, "NULL");
    expect_error(slm_gguf_open_memory(NULL, 5, &g), SLM_STATUS_INVALID_ARGUMENT, "data is NULL");
    expect_error(slm_gguf_open_memory(NULL, 0, &g), SLM_STATUS_BAD_FORMAT, "file is 0 bytes");
    assert_null(g);
}

/* --- truncation sweep ------------------------------------------------------------- */

/* Bytes a file needs: the end of its furthest tensor data (or the header). */
static uint64_t needed_bytes(const slm_gguf *g)
{
    uint64_t end = 24;
    for (int64_t i = 0; i < slm_gguf_tensor_count(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        uint64_t e = slm_gguf_data_start(g) + t->offset + t->nbytes;
        end = e > end ? e : end;
    }
    return end;
}

static void test_truncation_sweep(void **state)
{
    (void)state;
    const char *files[] = {"v3_all_types", "v2", "align64", "edge", "empty", "gguf_py"};
    int opened = 0, failed = 0;
    for (size_t fi = 0; fi < sizeof files / sizeof *files; fi++) {
        char path[256];
        snprintf(path, sizeof path, GOOD_DIR "/%s.gguf", files[fi]);
        size_t size = 0;
        uint8_t *bytes = tu_read_file(path, &size);
        assert_non_null(bytes);
        slm_gguf *full = NULL;
        assert_int_equal(slm_gguf_open_memory(bytes, size, &full), SLM_OK);
        /* Files with kvs but no tensors need every kv byte; none here. */
        assert_true(slm_gguf_tensor_count(full) > 0 || slm_gguf_kv_count(full) == 0);
        uint64_t need = needed_bytes(full);
        slm_gguf_close(full);
        for (size_t n = 0; n <= size; n++) {
            guarded gb = guard_copy(bytes, n);
            slm_gguf *g = NULL;
            slm_status st = slm_gguf_open_memory(gb.data, n, &g);
            if (n < need) {
                if (st != SLM_STATUS_BAD_FORMAT)
                    fail_msg("%s cut to %zu bytes (needs %" PRIu64 "): %s \"%s\"", files[fi], n,
                             need, status_token(st), slm_last_error());
                assert_null(g);
                assert_true(strncmp(slm_last_error(), "gguf: ", 6) == 0);
                failed++;
            } else {
                if (st != SLM_OK)
                    fail_msg("%s cut to %zu bytes (needs %" PRIu64 "): %s", files[fi], n, need,
                             slm_last_error());
                opened++;
            }
            slm_gguf_close(g);
            guard_free(&gb);
        }
        free(bytes);
    }
    print_message("truncation: %d prefixes failed cleanly, %d complete ones opened\n", failed,
                  opened);
}

/* --- random mutations -------------------------------------------------------------- */

/* Reads everything an open file offers; every byte it touches must lie in
 * the buffer (the guard page catches any that does not). */
static uint64_t walk(const slm_gguf *g, const uint8_t *buf, size_t size)
{
    uint64_t sum = 0;
    for (int64_t i = 0; i < slm_gguf_kv_count(g); i++) {
        const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
        assert_true(kv->type < SLM_GGUF_TYPE_COUNT && kv->elem_type < SLM_GGUF_TYPE_COUNT);
        assert_true(kv->key_len > 0 && strlen(kv->key) == kv->key_len);
        assert_int_equal(slm_gguf_find_kv(g, kv->key), i);
        int64_t v;
        double d;
        bool b;
        const char *s;
        size_t len;
        if (slm_gguf_kv_int(g, i, &v) == SLM_OK)
            sum += (uint64_t)v;
        if (slm_gguf_kv_float(g, i, &d) == SLM_OK)
            sum += d == d;
        if (slm_gguf_kv_bool(g, i, &b) == SLM_OK)
            sum += b;
        if (slm_gguf_kv_str(g, i, &s, &len) == SLM_OK) {
            assert_true((const uint8_t *)s >= buf && len <= size - (size_t)((const uint8_t *)s - buf));
            sum += fnv1a64((const uint8_t *)s, len);
        }
        if (kv->type != SLM_GGUF_ARRAY)
            continue;
        for (uint64_t j = 0; j < kv->count; j++) {
            if (slm_gguf_arr_int(g, i, j, &v) == SLM_OK)
                sum += (uint64_t)v;
            if (slm_gguf_arr_float(g, i, j, &d) == SLM_OK)
                sum += d == d;
            if (slm_gguf_arr_bool(g, i, j, &b) == SLM_OK)
                sum += b;
            if (slm_gguf_arr_str(g, i, j, &s, &len) == SLM_OK)
                sum += fnv1a64((const uint8_t *)s, len);
        }
    }
    for (int64_t i = 0; i < slm_gguf_tensor_count(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        const uint8_t *p = t->data;
        assert_true(p >= buf && t->nbytes <= size - (size_t)(p - buf));
        assert_true(t->n_dims >= 1 && t->n_dims <= 4 && strlen(t->name) > 0);
        assert_int_equal(slm_gguf_find_tensor(g, t->name), i);
        sum += fnv1a64(p, t->nbytes);
    }
    return sum;
}

static const uint64_t interesting[] = {0, 1, 2, 3, 4, 7, 9, 13, 31, 32, 63, 64, 255, 0x7FFFFFFF,
                                       0xFFFFFFFF, 0x100000000ull, 0x7FFFFFFFFFFFFFFFull,
                                       0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull};

/* Applies one random change to buf[0..limit). */
static void mutate(uint8_t *buf, size_t limit)
{
    size_t pos = (size_t)(tu_rand_u64() % limit);
    int kind = tu_int(0, 3);
    if (kind <= 1) {
        buf[pos] = (uint8_t)tu_rand_u64();
    } else if (kind == 2) {
        buf[pos] ^= (uint8_t)(1u << tu_int(0, 7));
    } else {
        uint64_t v = interesting[tu_int(0, (int)(sizeof interesting / sizeof *interesting) - 1)];
        size_t width = tu_int(0, 1) ? 8 : 4;
        for (size_t k = 0; k < width && pos + k < limit; k++)
            buf[pos + k] = (uint8_t)(v >> (8 * k));
    }
}

static void test_mutations(void **state)
{
    (void)state;
    const char *files[] = {"v3_all_types", "v2", "align64", "edge", "gguf_py"};
    int ok = 0, rejected = 0;
    for (int round = 0; round < 500; round++) {
        const char *stem = files[round % 5];
        char path[256];
        snprintf(path, sizeof path, GOOD_DIR "/%s.gguf", stem);
        size_t size = 0;
        uint8_t *bytes = tu_read_file(path, &size);
        assert_non_null(bytes);
        slm_gguf *orig = NULL;
        assert_int_equal(slm_gguf_open_memory(bytes, size, &orig), SLM_OK);
        /* Mostly the header and tables, where the parser looks. */
        size_t limit = (size_t)slm_gguf_data_start(orig) + 16;
        limit = limit < size ? limit : size;
        slm_gguf_close(orig);
        int n = tu_int(1, 4);
        for (int k = 0; k < n; k++)
            mutate(bytes, limit);
        guarded gb = guard_copy(bytes, size);
        slm_gguf *g = NULL;
        slm_status st = slm_gguf_open_memory(gb.data, size, &g);
        if (st == SLM_OK) {
            (void)walk(g, gb.data, size);
            ok++;
        } else {
            assert_null(g);
            if (strncmp(slm_last_error(), "gguf: ", 6) != 0)
                fail_msg("round %d (%s): %s without a gguf message: \"%s\"", round, stem,
                         status_token(st), slm_last_error());
            rejected++;
        }
        slm_gguf_close(g);
        guard_free(&gb);
        free(bytes);
    }
    print_message("mutations: %d rejected with a message, %d opened and walked\n", rejected, ok);
    assert_true(rejected > 0);
}

/* --- the default model --------------------------------------------------------------- */

static void test_real_model(void **state)
{
    (void)state;
    if (access(MODEL_PATH, R_OK) != 0) {
        print_message("skipped: %s not present (scripts/fetch-model)\n", MODEL_PATH);
        skip();
    }
    slm_gguf *g = NULL;
    slm_status st = slm_gguf_open(MODEL_PATH, &g);
    if (st != SLM_OK)
        fail_msg("%s", slm_last_error());
    /* Facts read with gguf-py 0.17.1's GGUFReader from the same file
     * (sha256 b179c952...; see scripts/fetch-model). */
    assert_int_equal(slm_gguf_version(g), 3);
    assert_int_equal(slm_gguf_kv_count(g), 33);
    assert_int_equal(slm_gguf_tensor_count(g), 272);
    assert_int_equal(slm_gguf_data_start(g), 1785664);
    char arch[32];
    assert_int_equal(slm_gguf_get_str_copy(g, "general.architecture", arch, sizeof arch), SLM_OK);
    assert_string_equal(arch, "llama");
    int64_t v;
    assert_int_equal(slm_gguf_get_int(g, "llama.block_count", &v), SLM_OK);
    assert_int_equal(v, 30);
    assert_int_equal(slm_gguf_get_int(g, "llama.embedding_length", &v), SLM_OK);
    assert_int_equal(v, 576);
    assert_int_equal(slm_gguf_get_int_at(g, "llama.attention.head_count_kv", 29, &v), SLM_OK);
    assert_int_equal(v, 3);
    double base;
    assert_int_equal(slm_gguf_get_float(g, "llama.rope.freq_base", &base), SLM_OK);
    assert_true(base == 100000.0); /* exact: 1e5 is representable in float32 */

    int64_t tok;
    slm_gguf_type et;
    uint64_t count;
    assert_int_equal(slm_gguf_get_arr(g, "tokenizer.ggml.tokens", &tok, &et, &count), SLM_OK);
    assert_int_equal(et, SLM_GGUF_STRING);
    assert_int_equal(count, 49152);
    const char *s;
    size_t len;
    uint64_t total = 0;
    for (uint64_t j = 0; j < count; j++) {
        assert_int_equal(slm_gguf_arr_str(g, tok, j, &s, &len), SLM_OK);
        total += len;
    }
    assert_int_equal(total, 369170);
    assert_int_equal(slm_gguf_arr_str(g, tok, 1, &s, &len), SLM_OK);
    assert_true(len == 12 && memcmp(s, "<|im_start|>", 12) == 0);
    assert_int_equal(slm_gguf_get_arr(g, "tokenizer.ggml.merges", NULL, NULL, &count), SLM_OK);
    assert_int_equal(count, 48900);

    const slm_gguf_tensor *t;
    assert_int_equal(slm_gguf_get_tensor(g, "token_embd.weight", &t), SLM_OK);
    assert_int_equal(t->type, 8); /* Q8_0 */
    assert_true(t->ne[0] == 576 && t->ne[1] == 49152 && t->ne[2] == 1 && t->n_dims == 2);
    assert_int_equal(t->nbytes, 30081024);
    int by_type[40] = {0};
    for (int64_t i = 0; i < slm_gguf_tensor_count(g); i++)
        by_type[slm_gguf_tensor_at(g, i)->type]++;
    assert_int_equal(by_type[3], 210); /* Q4_1 */
    assert_int_equal(by_type[0], 61);  /* F32 */
    assert_int_equal(by_type[8], 1);   /* Q8_0 */
    assert_int_equal(slm_gguf_get_tensor(g, "output_norm.weight", &t), SLM_OK);
    assert_true(slm_gguf_data_start(g) + t->offset == 98360128 && t->nbytes == 2304);
    slm_gguf_close(g);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_corpus),      cmocka_unit_test(test_good_manifests),
        cmocka_unit_test(test_getters),         cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_truncation_sweep), cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_real_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
