/*
 * gguf.h — the GGUF reader: opens a GGUF file (version 2 or 3, little-endian)
 * by mapping it read-only, validates every byte of its header, metadata and
 * tensor table before anything else looks at it, and hands out views into the
 * mapping: metadata key/value pairs and tensor descriptors with pointers to
 * their data. Nothing is copied except keys and tensor names (small, copied
 * NUL-terminated for convenience) and tables the reader builds (sorted
 * indices for lookups, offsets of string-array elements).
 *
 * What "validated" guarantees once slm_gguf_open* returns SLM_OK:
 *   - every KV record lies inside the file; value types are 0..12; no nested
 *     arrays; keys are non-empty, unique and hold no NUL byte;
 *     general.alignment, when present, is a UINT32 that is a non-zero power
 *     of two;
 *   - every tensor has a unique non-empty name of at most 63 bytes without
 *     NUL bytes, 1..4 dims, each dim >= 0 with an element count that fits
 *     int64, a type id
 *     that slm_type_get() knows (known but unsupported types such as IQ2_XXS
 *     are accepted here — backends reject them at load), ne[0] divisible by
 *     the type's block size, an offset that is a multiple of the alignment,
 *     data [data_start+offset, +nbytes) inside the file, and no two tensors'
 *     data overlap (holes between tensors are allowed).
 * So the getters below never read out of bounds, whatever the file.
 *
 * Errors: every failing function returns an slm_status and records a message
 * (slm_last_error()) that names the field and the value, e.g.
 *   "gguf: tensor 3 'blk.0.attn_q.weight': data [offset 4096, 9216 bytes]
 *    ends past the end of the file (8000 bytes)".
 * Big-endian (byte-swapped) files are recognised and refused with
 * SLM_STATUS_UNSUPPORTED.
 *
 * Threads: an open slm_gguf is immutable; any number of threads may call the
 * getters on it at once. Open and close are not synchronised with getters.
 *
 * Not responsible for: knowing what keys mean (runtime/model code does), tensor
 * data contents (dequantization lives in quant.c), writing GGUF files.
 */
#ifndef SLM_GGUF_H
#define SLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

/* Metadata value types, numbered as in the file (gguf-facts §1.3). */
typedef enum slm_gguf_type {
    SLM_GGUF_UINT8 = 0,
    SLM_GGUF_INT8 = 1,
    SLM_GGUF_UINT16 = 2,
    SLM_GGUF_INT16 = 3,
    SLM_GGUF_UINT32 = 4,
    SLM_GGUF_INT32 = 5,
    SLM_GGUF_FLOAT32 = 6,
    SLM_GGUF_BOOL = 7,
    SLM_GGUF_STRING = 8,
    SLM_GGUF_ARRAY = 9,
    SLM_GGUF_UINT64 = 10,
    SLM_GGUF_INT64 = 11,
    SLM_GGUF_FLOAT64 = 12,
    SLM_GGUF_TYPE_COUNT = 13
} slm_gguf_type;

/* Longest tensor name in bytes (GGML_MAX_NAME - 1). */
#define SLM_GGUF_MAX_NAME 63
#define SLM_GGUF_MAX_DIMS 4
/* Alignment when general.alignment is absent. */
#define SLM_GGUF_DEFAULT_ALIGNMENT 32

typedef struct slm_gguf slm_gguf;

/* One metadata key/value record. Owned by the slm_gguf; valid until close. */
typedef struct slm_gguf_kv {
    const char *key;         /* NUL-terminated copy of the key (keys hold no NUL) */
    size_t key_len;          /* strlen(key) */
    slm_gguf_type type;      /* value type; SLM_GGUF_ARRAY for arrays */
    slm_gguf_type elem_type; /* arrays: element type (never ARRAY); else == type */
    uint64_t count;          /* arrays: element count; strings: byte length; else 1 */
    /* The payload inside the mapping: for scalars the value's bytes, for
     * strings the (not NUL-terminated) bytes, for arrays the first element.
     * Little-endian and unaligned: read it with memcpy or the getters. */
    const uint8_t *data;
} slm_gguf_kv;

/* One tensor-info record. Owned by the slm_gguf; valid until close. */
typedef struct slm_gguf_tensor {
    char name[SLM_GGUF_MAX_NAME + 1]; /* NUL-terminated copy */
    uint32_t n_dims;                  /* 1..4 as stored in the file */
    int64_t ne[SLM_GGUF_MAX_DIMS];    /* ne[0] is contiguous; missing dims are 1 */
    int64_t n_elements;               /* ne[0]*ne[1]*ne[2]*ne[3] */
    int type;                         /* GGML type id (runtime/quant.h) */
    uint64_t offset;                  /* from data_start; multiple of the alignment */
    uint64_t nbytes;                  /* size of the data in bytes (unpadded) */
    const void *data;                 /* data_start + offset inside the mapping */
} slm_gguf_tensor;

/* --- open / close ------------------------------------------------------- */

/* Maps the file at path read-only and validates it (see the top of this file).
 * Returns SLM_OK and *out, or: SLM_STATUS_IO (cannot open/stat/map, not a
 * regular file), SLM_STATUS_BAD_FORMAT (malformed; the message names the
 * field), SLM_STATUS_UNSUPPORTED (big-endian file, version other than 2/3),
 * SLM_STATUS_OUT_OF_MEMORY, SLM_STATUS_INVALID_ARGUMENT (NULL arguments).
 * On failure *out is NULL and nothing is left mapped or allocated. */
slm_status slm_gguf_open(const char *path, slm_gguf **out);

/* The same on a caller-owned buffer, which is not copied: it must stay
 * unchanged and alive until slm_gguf_close. Used by tests and the fuzzer.
 * data may be NULL only when size is 0 (which fails as too short). */
slm_status slm_gguf_open_memory(const void *data, size_t size, slm_gguf **out);

/* Unmaps (if slm_gguf_open mapped it) and frees everything. NULL-safe. */
void slm_gguf_close(slm_gguf *g);

/* --- file facts ----------------------------------------------------------- */

uint32_t slm_gguf_version(const slm_gguf *g);     /* 2 or 3 */
uint32_t slm_gguf_alignment(const slm_gguf *g);   /* general.alignment or 32 */
uint64_t slm_gguf_data_start(const slm_gguf *g);  /* absolute offset of the data blob */
uint64_t slm_gguf_file_size(const slm_gguf *g);   /* bytes in the file / buffer */
const void *slm_gguf_file_data(const slm_gguf *g); /* start of the mapping / buffer */

/* "uint8", "int32", "float32", "string", "array", ...; "invalid" for values
 * outside 0..12 (which an open file never holds). */
const char *slm_gguf_type_name(slm_gguf_type t);

/* --- metadata: by index ---------------------------------------------------- */

int64_t slm_gguf_kv_count(const slm_gguf *g);

/* The record at index i (0..kv_count-1, file order), or NULL if out of range. */
const slm_gguf_kv *slm_gguf_kv_at(const slm_gguf *g, int64_t i);

/* Index of the record whose key equals key (a C string), or -1. O(log n). */
int64_t slm_gguf_find_kv(const slm_gguf *g, const char *key);

/* Scalar value of record i. Each fails with SLM_STATUS_INVALID_ARGUMENT for
 * an index out of range and SLM_STATUS_BAD_FORMAT naming the key and its
 * actual type when the type does not fit:
 *   kv_int:   any of the 8 integer types; a UINT64 above INT64_MAX fails;
 *   kv_float: FLOAT32 or FLOAT64;
 *   kv_bool:  BOOL (any non-zero byte is true, as in ggml);
 *   kv_str:   STRING; *s points into the mapping, NOT NUL-terminated. */
slm_status slm_gguf_kv_int(const slm_gguf *g, int64_t i, int64_t *out);
slm_status slm_gguf_kv_float(const slm_gguf *g, int64_t i, double *out);
slm_status slm_gguf_kv_bool(const slm_gguf *g, int64_t i, bool *out);
slm_status slm_gguf_kv_str(const slm_gguf *g, int64_t i, const char **s, size_t *len);

/* --- metadata: by key ------------------------------------------------------ */

/* As the kv_* getters, found by key; SLM_STATUS_NOT_FOUND ("gguf: key 'x'
 * not found") when absent. Optional keys: test for NOT_FOUND. */
slm_status slm_gguf_get_int(const slm_gguf *g, const char *key, int64_t *out);
slm_status slm_gguf_get_float(const slm_gguf *g, const char *key, double *out);
slm_status slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out);
slm_status slm_gguf_get_str(const slm_gguf *g, const char *key, const char **s, size_t *len);

/* Copies the string value of key into buf with a NUL terminator. Fails with
 * SLM_STATUS_INVALID_ARGUMENT (buf untouched) when len + 1 > cap. */
slm_status slm_gguf_get_str_copy(const slm_gguf *g, const char *key, char *buf, size_t cap);

/* A per-layer integer hyperparameter that may be a scalar or an array with
 * one entry per layer (gguf-facts §1.10.12): a scalar integer gives its value
 * for every layer; an integer array gives element [layer], failing with
 * SLM_STATUS_BAD_FORMAT when layer >= its count. */
slm_status slm_gguf_get_int_at(const slm_gguf *g, const char *key, uint64_t layer,
                               int64_t *out);

/* --- metadata: arrays ------------------------------------------------------ */

/* Looks up an array by key: *kv_index (for the element getters), its element
 * type and count. SLM_STATUS_NOT_FOUND when absent, SLM_STATUS_BAD_FORMAT
 * when the key is not an array. Any out pointer may be NULL. */
slm_status slm_gguf_get_arr(const slm_gguf *g, const char *key, int64_t *kv_index,
                            slm_gguf_type *elem_type, uint64_t *count);

/* Element j of the array in record i, O(1) for every element type (string
 * offsets are precomputed at open). Fail with SLM_STATUS_INVALID_ARGUMENT for
 * i or j out of range, SLM_STATUS_BAD_FORMAT naming the key when record i is
 * not an array of a fitting element type (same rules as the kv_* getters;
 * arr_bool accepts BOOL elements). arr_str's *s is NOT NUL-terminated. */
slm_status slm_gguf_arr_int(const slm_gguf *g, int64_t i, uint64_t j, int64_t *out);
slm_status slm_gguf_arr_float(const slm_gguf *g, int64_t i, uint64_t j, double *out);
slm_status slm_gguf_arr_bool(const slm_gguf *g, int64_t i, uint64_t j, bool *out);
slm_status slm_gguf_arr_str(const slm_gguf *g, int64_t i, uint64_t j, const char **s,
                            size_t *len);

/* --- tensors ----------------------------------------------------------------- */

int64_t slm_gguf_tensor_count(const slm_gguf *g);

/* The tensor at index i (file order), or NULL if out of range. */
const slm_gguf_tensor *slm_gguf_tensor_at(const slm_gguf *g, int64_t i);

/* Index of the tensor named name, or -1. O(log n). */
int64_t slm_gguf_find_tensor(const slm_gguf *g, const char *name);

/* As find_tensor, but fails with SLM_STATUS_NOT_FOUND ("gguf: tensor 'x' not
 * found") when absent; *out is set only on success. */
slm_status slm_gguf_get_tensor(const slm_gguf *g, const char *name,
                               const slm_gguf_tensor **out);

#endif
