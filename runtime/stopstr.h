/*
 * stopstr.h — stop strings over streamed text: the engine feeds each piece
 * of generated text in, and gets back the part that is safe to hand to the
 * client. Text that could still turn out to be the start of a stop string is
 * held back until it can be ruled out; once a stop string appears, only the
 * text before it is released and the request stops. Plain C, no model, so
 * tests check it directly.
 */
#ifndef SLM_STOPSTR_H
#define SLM_STOPSTR_H

#include <stdbool.h>
#include <stddef.h>

#include "slm.h"

typedef struct slm_stopstr {
    char **stop;        /* owned copies */
    size_t *stop_len;
    int n_stop;
    char *held;         /* text not yet released */
    size_t held_len, held_cap;
    char *out;          /* what the last call released */
    size_t out_cap;
    bool stopped;
} slm_stopstr;

/* Copies n stop strings (none may be empty: INVALID_ARGUMENT naming which). */
slm_status slm_stopstr_init(slm_stopstr *s, const char *const *stop, int n);
void slm_stopstr_free(slm_stopstr *s);

/* Appends text[0..len). emit and n receive the text now safe to output (valid
 * until the next call). Returns true when a stop string has appeared: *emit
 * then ends right before it and later calls release nothing. Out of memory
 * releases the text unchecked rather than losing it (returns false). */
bool slm_stopstr_feed(slm_stopstr *s, const char *text, size_t len, const char **emit,
                      size_t *n);

/* Releases whatever is still held (the stream has ended). */
void slm_stopstr_flush(slm_stopstr *s, const char **emit, size_t *n);

#endif
