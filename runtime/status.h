/*
 * status.h — internal error reporting: every failing path records one
 * human-readable message per thread and returns an slm_status.
 * The public side is slm_last_error() in include/slm.h.
 */
#ifndef SLM_STATUS_H
#define SLM_STATUS_H

#include "slm.h"

#if defined(__GNUC__)
#define SLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SLM_PRINTF(a, b)
#endif

/* Records the message for slm_last_error() and returns st, so a failing path
 * reads `return slm_error(SLM_STATUS_BAD_FORMAT, "...", ...);`. */
slm_status slm_error(slm_status st, const char *fmt, ...) SLM_PRINTF(2, 3);

/* Clears the calling thread's message. */
void slm_error_clear(void);

/* Broken internal invariants (bugs, never input): report file:line through
 * the abort hook, which a host program may replace. */
typedef void (*slm_abort_hook)(const char *file, int line, const char *what);
void slm_set_abort_hook(slm_abort_hook hook);
void slm_assert_fail(const char *file, int line, const char *what);
#define SLM_ASSERT(c) ((c) ? (void)0 : slm_assert_fail(__FILE__, __LINE__, #c))

#endif
