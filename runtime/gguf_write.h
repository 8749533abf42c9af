/*
 * gguf_write.h — a small GGUF v3 writer, for files slm makes itself
 * (`slm synth`'s random-weight models, test fixtures). Metadata is
 * serialized into memory as it is added; tensor infos are recorded with
 * their shapes, and tensor data is produced by a callback while the file is
 * streamed out, so multi-GB files never sit in memory whole.
 */
#ifndef SLM_GGUF_WRITE_H
#define SLM_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "slm.h"

typedef struct slm_gguf_writer slm_gguf_writer;

slm_status slm_gguf_writer_create(slm_gguf_writer **out);
void slm_gguf_writer_free(slm_gguf_writer *w); /* accepts NULL */

/* Metadata. Keys must be unique (a repeated key fails). */
slm_status slm_gguf_put_u32(slm_gguf_writer *w, const char *key, uint32_t v);
slm_status slm_gguf_put_i32(slm_gguf_writer *w, const char *key, int32_t v);
slm_status slm_gguf_put_f32(slm_gguf_writer *w, const char *key, float v);
slm_status slm_gguf_put_bool(slm_gguf_writer *w, const char *key, bool v);
slm_status slm_gguf_put_str(slm_gguf_writer *w, const char *key, const char *s, size_t len);
/* Arrays; strs[i] has lens[i] bytes (lens NULL: NUL-terminated). */
slm_status slm_gguf_put_arr_str(slm_gguf_writer *w, const char *key, const char *const *strs,
                                const size_t *lens, uint64_t n);
slm_status slm_gguf_put_arr_i32(slm_gguf_writer *w, const char *key, const int32_t *v,
                                uint64_t n);
slm_status slm_gguf_put_arr_f32(slm_gguf_writer *w, const char *key, const float *v, uint64_t n);
/* Copies record i of an open file (any type, arrays included). */
slm_status slm_gguf_put_copy(slm_gguf_writer *w, const slm_gguf *g, int64_t i);

/* Declares a tensor; ne[0] must be a multiple of the type's block size. */
slm_status slm_gguf_add_tensor(slm_gguf_writer *w, const char *name, int type, int n_dims,
                               const int64_t *ne);

/* Fills buf (nbytes) with the data of tensor i (in declaration order). */
typedef slm_status (*slm_gguf_fill_fn)(void *user, int64_t i, const char *name, int type,
                                       const int64_t *ne, void *buf, size_t nbytes);

/* Writes the file (alignment 32): header, metadata, tensor infos, then each
 * tensor's data from fill, padded. progress (may be NULL) gets the fraction of
 * tensor bytes written. A failure removes the partial file. */
slm_status slm_gguf_writer_write(slm_gguf_writer *w, const char *path, slm_gguf_fill_fn fill,
                                 void *user, void (*progress)(float, void *), void *puser);

#endif
