/*
 * stopstr.c — see stopstr.h. After every feed the held text is shorter than
 * the longest stop string, so each search costs O(stop strings × their
 * length) whatever the length of the answer.
 */
#include "stopstr.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"

slm_status slm_stopstr_init(slm_stopstr *s, const char *const *stop, int n)
{
    memset(s, 0, sizeof *s);
    if (n < 0 || (n > 0 && !stop))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "stop strings: bad count %d", n);
    for (int i = 0; i < n; i++)
        if (!stop[i] || !stop[i][0])
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "stop string %d is empty", i);
    if (n) {
        s->stop = calloc((size_t)n, sizeof *s->stop);
        s->stop_len = calloc((size_t)n, sizeof *s->stop_len);
        if (!s->stop || !s->stop_len) {
            slm_stopstr_free(s);
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "stop strings: out of memory");
        }
    }
    s->n_stop = n;
    for (int i = 0; i < n; i++) {
        s->stop_len[i] = strlen(stop[i]);
        s->stop[i] = strdup(stop[i]);
        if (!s->stop[i]) {
            slm_stopstr_free(s);
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "stop strings: out of memory");
        }
    }
    return SLM_OK;
}

void slm_stopstr_free(slm_stopstr *s)
{
    for (int i = 0; s->stop && i < s->n_stop; i++)
        free(s->stop[i]);
    free(s->stop);
    free(s->stop_len);
    free(s->held);
    free(s->out);
    memset(s, 0, sizeof *s);
}

static bool grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    char *p = realloc(*buf, c);
    if (!p)
        return false;
    *buf = p;
    *cap = c;
    return true;
}

/* Moves held[0..n) to the output buffer and keeps the rest held. */
static void release(slm_stopstr *s, size_t n, const char **emit, size_t *len)
{
    if (!grow(&s->out, &s->out_cap, n + 1))
        n = 0; /* keep it held; the next call retries */
    memcpy(s->out, s->held, n);
    memmove(s->held, s->held + n, s->held_len - n);
    s->held_len -= n;
    *emit = s->out;
    *len = n;
}

/* Length of the longest suffix of held that is a proper prefix of a stop. */
static size_t partial_match(const slm_stopstr *s)
{
    size_t best = 0;
    for (int i = 0; i < s->n_stop; i++) {
        size_t k = s->stop_len[i] - 1 < s->held_len ? s->stop_len[i] - 1 : s->held_len;
        for (; k > best; k--)
            if (!memcmp(s->held + s->held_len - k, s->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

bool slm_stopstr_feed(slm_stopstr *s, const char *text, size_t len, const char **emit,
                      size_t *n)
{
    *emit = "";
    *n = 0;
    if (s->stopped)
        return true;
    if (s->n_stop == 0) {
        *emit = text;
        *n = len;
        return false;
    }
    if (!grow(&s->held, &s->held_cap, s->held_len + len)) {
        *emit = text; /* unchecked, but nothing is lost */
        *n = len;
        return false;
    }
    memcpy(s->held + s->held_len, text, len);
    s->held_len += len;
    size_t first = s->held_len;
    for (int i = 0; i < s->n_stop; i++) {
        const char *p = memmem(s->held, s->held_len, s->stop[i], s->stop_len[i]);
        if (p && (size_t)(p - s->held) < first)
            first = (size_t)(p - s->held);
    }
    if (first < s->held_len) {
        s->stopped = true;
        release(s, first, emit, n);
        s->held_len = 0;
        return true;
    }
    release(s, s->held_len - partial_match(s), emit, n);
    return false;
}

void slm_stopstr_flush(slm_stopstr *s, const char **emit, size_t *n)
{
    *emit = "";
    *n = 0;
    if (!s->stopped && s->held_len)
        release(s, s->held_len, emit, n);
}
