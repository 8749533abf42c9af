/*
 * quant.h — the tensor type table and the scalar reference (de)quantizers.
 *
 * Type ids are GGML's (they are what a GGUF tensor-info record stores), so a
 * tensor's type field indexes the table directly. The table knows every id
 * GGML has defined up to MXFP4 (so the GGUF reader can compute sizes and tell
 * "known but unsupported" from "unknown"); `supported` marks the types slm can
 * dequantize and multiply.
 *
 * The reference functions here are plain scalar C: they are the oracle every
 * backend kernel is tested against, and the way tests make quantized data.
 * They are not fast and are not meant to be.
 */
#ifndef SLM_QUANT_H
#define SLM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum slm_type {
    SLM_TYPE_F32 = 0,
    SLM_TYPE_F16 = 1,
    SLM_TYPE_Q4_0 = 2,
    SLM_TYPE_Q4_1 = 3,
    SLM_TYPE_Q5_0 = 6,
    SLM_TYPE_Q5_1 = 7,
    SLM_TYPE_Q8_0 = 8,
    SLM_TYPE_Q8_1 = 9,
    SLM_TYPE_Q2_K = 10,
    SLM_TYPE_Q3_K = 11,
    SLM_TYPE_Q4_K = 12,
    SLM_TYPE_Q5_K = 13,
    SLM_TYPE_Q6_K = 14,
    SLM_TYPE_Q8_K = 15,
    SLM_TYPE_IQ4_NL = 20,
    SLM_TYPE_IQ4_XS = 23,
    SLM_TYPE_BF16 = 30,
    SLM_TYPE_COUNT = 40 /* one past the last id GGML had defined (MXFP4 = 39) */
} slm_type;

typedef struct slm_type_info {
    const char *name;     /* GGML's name, e.g. "q4_K"; NULL for removed ids */
    int32_t block_elems;  /* elements per block; 0 for removed ids */
    int32_t block_bytes;  /* bytes per block */
    bool supported;       /* slm can dequantize and multiply it */
} slm_type_info;

/* The entry for a type id, or NULL when the id is outside 0..SLM_TYPE_COUNT-1
 * or names a removed type (block size 0). */
const slm_type_info *slm_type_get(int type);

/* Name for messages: the GGML name, or "type#N" for unknown ids (thread-safe,
 * the returned pointer is a static string or a thread-local buffer). */
const char *slm_type_name(int type);

/* True for the types slm can dequantize and multiply (the 15 file formats of
 * the foundation issue). */
bool slm_type_supported(int type);

/* Bytes of n elements of a type; n must be a multiple of its block size.
 * Returns 0 for unknown types or a ragged n. */
size_t slm_type_row_bytes(int type, int64_t n);

/* dst[0..n) = the values stored in src. n must be a multiple of the type's
 * block size and the type supported (or Q8_K/Q8_1); otherwise does nothing
 * and returns false. */
bool slm_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* Reference quantizer for making test data and synthetic models: quantizes
 * n floats into dst (slm_type_row_bytes(type, n) bytes), following the
 * scheme of GGML's reference quantizers closely enough that
 * quantize→dequantize error stays within the type's usual bound. Also
 * accepts Q8_K and Q8_1 (activation formats). Returns false for an
 * unsupported type or a ragged n. */
bool slm_quantize_row_ref(int type, const float *src, void *dst, int64_t n);

#endif
