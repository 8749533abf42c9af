/*
 * slm.h — the public API of slm, a C11 inference runtime for small language
 * models (GGUF files, CPU / Vulkan / CUDA backends).
 *
 * This header is the specification: everything a program embedding slm may
 * use is declared here and nowhere else. Rules that hold for every function:
 *   - functions that can fail return an slm_status; on failure the calling
 *     thread's message is available from slm_last_error();
 *   - the library never calls exit() or abort() on anything a file, a request
 *     or a user can cause;
 *   - public enums are append-only and their numbers are pinned.
 */
#ifndef SLM_H
#define SLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_VERSION_MAJOR 0
#define SLM_VERSION_MINOR 1
#define SLM_VERSION_PATCH 0
#define SLM_VERSION "0.1.0"
/* MAJOR*1000000 + MINOR*1000 + PATCH, comparable with slm_version_number(). */
#define SLM_VERSION_NUMBER 1000

/* Status codes. Append-only; the numbers are part of the ABI. */
typedef enum slm_status {
    SLM_OK = 0,
    SLM_STATUS_INVALID_ARGUMENT = 1, /* a caller passed something impossible */
    SLM_STATUS_IO = 2,               /* a file could not be opened or read */
    SLM_STATUS_BAD_FORMAT = 3,       /* a file is malformed (the message names the field) */
    SLM_STATUS_UNSUPPORTED = 4,      /* valid input this build cannot handle */
    SLM_STATUS_OUT_OF_MEMORY = 5,    /* host or device memory exhausted */
    SLM_STATUS_DEVICE = 6,           /* a device error (lost device, failed launch) */
    SLM_STATUS_NOT_FOUND = 7,        /* a key, tensor or device that is not there */
    SLM_STATUS_INTERNAL = 8,         /* a broken invariant inside slm (a bug) */
    SLM_STATUS_QUEUE_FULL = 9,       /* the engine's waiting queue is full: retry later */
    SLM_STATUS_CANCELLED = 10        /* the operation was cancelled */
} slm_status;

/* The version string of the library actually linked (may differ from
 * SLM_VERSION when a program runs against a newer shared library). */
const char *slm_version(void);
int slm_version_number(void);

/* The message of the calling thread's last failure ("" if none). The pointer
 * stays valid until the next slm call on the same thread. */
const char *slm_last_error(void);

/* A short constant name for a status ("ok", "bad format", ...). */
const char *slm_status_name(slm_status st);

#ifdef __cplusplus
}
#endif
#endif /* SLM_H */
