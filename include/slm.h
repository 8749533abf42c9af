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

/* ------------------------------------------------------------------------ */
/* Models                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct slm_model slm_model;

/* Called while a model loads with the fraction done (0..1). */
typedef void (*slm_progress_cb)(float fraction, void *user);

typedef struct slm_model_params {
    size_t size;             /* sizeof(slm_model_params); set by _default() */
    const char *backend;     /* "cpu", "vulkan", "cuda", "auto" or NULL ($SLM_BACKEND, else auto) */
    int n_threads;           /* CPU threads; 0 = one per core */
    int device_index;        /* GPU to use; -1 = choose */
    slm_progress_cb progress;
    void *progress_user;
} slm_model_params;

void slm_model_params_default(slm_model_params *p);

/* Opens a GGUF model file on a backend. Fails (and sets slm_last_error) on a
 * missing or malformed file, an unsupported architecture or tensor type, or
 * no usable backend. Thread-safe. */
slm_status slm_model_open(const char *path, const slm_model_params *p, slm_model **out);

/* Frees the model. Every engine created on it must be destroyed first.
 * Accepts NULL. */
void slm_model_close(slm_model *m);

/* Facts for clients and /v1/models. */
typedef struct slm_model_info {
    size_t size;        /* sizeof(slm_model_info); the caller sets it */
    const char *name;   /* general.name, or the file name */
    const char *arch;
    const char *backend; /* describe() of the backend it runs on */
    int n_vocab, n_ctx_train, n_embd, n_layer;
    int64_t n_params;
    uint64_t file_bytes;
} slm_model_info;

slm_status slm_model_get_info(const slm_model *m, slm_model_info *info);

/* ------------------------------------------------------------------------ */
/* Engine: continuous batching over one model                                */
/* ------------------------------------------------------------------------ */

typedef struct slm_engine slm_engine;

typedef struct slm_engine_params {
    size_t size;        /* sizeof(slm_engine_params); set by _default() */
    int n_ctx;          /* the most tokens one request may hold (prompt + output); 0 = model's */
    int max_running;    /* sequences decoded together (default 64) */
    int max_waiting;    /* queued requests beyond which submit fails with QUEUE_FULL (default 256) */
    int step_tokens;    /* token budget of one step: decodes + prefill chunks (default 512) */
    int kv_blocks;      /* KV pool size in blocks; 0 = sized from n_ctx and max_running */
    int block_size;     /* tokens per KV block (default 16) */
} slm_engine_params;

void slm_engine_params_default(slm_engine_params *p);

/* Creates an engine and starts its step thread. */
slm_status slm_engine_create(slm_model *m, const slm_engine_params *p, slm_engine **out);

/* Stops the engine. drain = 1 finishes every admitted request first; drain = 0
 * cancels them (their on_done callbacks run with SLM_FINISH_CANCELLED).
 * Accepts NULL. */
void slm_engine_destroy(slm_engine *e, int drain);

typedef struct slm_sampling {
    float temperature;       /* <= 0: greedy (default 0.8) */
    int top_k;               /* <= 0: off (default 40) */
    float top_p;             /* 1: off (default 0.95) */
    float min_p;             /* 0: off (default 0.05) */
    float repeat_penalty;    /* 1: off */
    float presence_penalty;  /* OpenAI semantics, 0: off */
    float frequency_penalty; /* OpenAI semantics, 0: off */
    uint64_t seed;
} slm_sampling;

typedef struct slm_message {
    const char *role;        /* "system", "user", "assistant" */
    const char *content;
} slm_message;

typedef enum slm_finish_reason {
    SLM_FINISH_STOP = 0,      /* end-of-sequence token or a stop string */
    SLM_FINISH_LENGTH = 1,    /* max_tokens or the context cap reached */
    SLM_FINISH_CANCELLED = 2, /* slm_engine_cancel or engine destroyed without drain */
    SLM_FINISH_ERROR = 3      /* see slm_result.status and .error */
} slm_finish_reason;

typedef struct slm_result {
    size_t size;                   /* sizeof(slm_result) */
    slm_finish_reason finish;
    slm_status status;             /* SLM_OK unless finish == SLM_FINISH_ERROR */
    const char *error;             /* message when status != SLM_OK, else ""; valid
                                      only during the on_done call (copy it) */
    int prompt_tokens;
    int completion_tokens;
    int cached_tokens;             /* prompt tokens reused from the prefix cache */
    double queue_ms;               /* submit → first scheduled */
    double ttft_ms;                /* submit → first output token */
    double total_ms;               /* submit → finished */
} slm_result;

/* Callbacks run on the engine thread and must return quickly.
 * on_token gets each piece of output text as it becomes complete UTF-8
 * (stop strings are held back until they can be ruled out). on_done runs
 * exactly once per accepted request, last. */
typedef void (*slm_token_cb)(void *user, const char *text, size_t len);
typedef void (*slm_done_cb)(void *user, const slm_result *result);

typedef struct slm_request_params {
    size_t size;                  /* sizeof(slm_request_params); set by _default() */
    /* The input: exactly one of prompt, messages, tokens. */
    const char *prompt;           /* raw text, special tokens parsed */
    const slm_message *messages;  /* rendered with the model's chat template */
    int n_messages;
    const int32_t *tokens;
    int n_tokens;
    slm_sampling sampling;
    int max_tokens;               /* output cap (default 256); the context cap also applies */
    const char *const *stop;      /* stop strings (not included in the output) */
    int n_stop;
    int ignore_eos;               /* keep going past end-of-sequence tokens */
    slm_token_cb on_token;
    slm_done_cb on_done;
    void *user;
} slm_request_params;

void slm_request_params_default(slm_request_params *p);

/* Queues a request; its id (for cancel) goes to *id. Fails without calling
 * any callback: INVALID_ARGUMENT (bad parameters, prompt longer than the
 * context: the message says so), SLM_STATUS_QUEUE_FULL (retry later).
 * Thread-safe. */
slm_status slm_engine_submit(slm_engine *e, const slm_request_params *p, uint64_t *id);

/* Cancels a request (queued or running); its on_done follows with
 * SLM_FINISH_CANCELLED. NOT_FOUND when it already finished. Thread-safe. */
slm_status slm_engine_cancel(slm_engine *e, uint64_t id);

typedef struct slm_engine_stats {
    size_t size;                  /* sizeof(slm_engine_stats); the caller sets it */
    int running, waiting;
    int kv_blocks_used, kv_blocks_total;
    uint64_t requests_done, prompt_tokens, generated_tokens, cached_tokens, preemptions;
    uint64_t steps;
} slm_engine_stats;

slm_status slm_engine_get_stats(slm_engine *e, slm_engine_stats *s);

/* Counts the tokens a text encodes to (for clients' context checks). */
slm_status slm_model_count_tokens(const slm_model *m, const char *text, int *n);

#ifdef __cplusplus
}
#endif
#endif /* SLM_H */
