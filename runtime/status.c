/*
 * status.c — per-thread last-error message and the assertion hook.
 * Messages are truncated to a fixed buffer; no allocation, so reporting an
 * out-of-memory condition cannot itself fail.
 */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

slm_status slm_error(slm_status st, const char *fmt, ...)
{
    /* Formatted aside first: callers often wrap the previous message
     * ("...: %s", slm_last_error()), and vsnprintf must not read the buffer
     * it is writing. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return st;
}

void slm_error_clear(void) { last_error[0] = '\0'; }

const char *slm_last_error(void) { return last_error; }

const char *slm_status_name(slm_status st)
{
    switch (st) {
    case SLM_OK: return "ok";
    case SLM_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case SLM_STATUS_IO: return "i/o error";
    case SLM_STATUS_BAD_FORMAT: return "bad format";
    case SLM_STATUS_UNSUPPORTED: return "unsupported";
    case SLM_STATUS_OUT_OF_MEMORY: return "out of memory";
    case SLM_STATUS_DEVICE: return "device error";
    case SLM_STATUS_NOT_FOUND: return "not found";
    case SLM_STATUS_INTERNAL: return "internal error";
    case SLM_STATUS_QUEUE_FULL: return "queue full";
    case SLM_STATUS_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

const char *slm_version(void) { return SLM_VERSION; }
int slm_version_number(void) { return SLM_VERSION_NUMBER; }

static void default_abort(const char *file, int line, const char *what)
{
    fprintf(stderr, "slm: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

static slm_abort_hook abort_hook = default_abort;

void slm_set_abort_hook(slm_abort_hook hook) { abort_hook = hook ? hook : default_abort; }

void slm_assert_fail(const char *file, int line, const char *what) { abort_hook(file, line, what); }
