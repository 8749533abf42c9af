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

/* Marks the functions libslm exports; everything else in the shared library
 * is hidden. */
#if defined(_WIN32)
#define SLM_API
#elif defined(__GNUC__) || defined(__clang__)
#define SLM_API __attribute__((visibility("default")))
#else
#define SLM_API
#endif

/* The version, in this one place (CMakeLists.txt reads it from here). */
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
SLM_API const char *slm_version(void);
SLM_API int slm_version_number(void);

/* The message of the calling thread's last failure ("" if none). The pointer
 * stays valid until the next slm call on the same thread. */
SLM_API const char *slm_last_error(void);

/* A short constant name for a status ("ok", "bad format", ...). */
SLM_API const char *slm_status_name(slm_status st);

/* ------------------------------------------------------------------------ */
/* Models                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct slm_model slm_model;

/* Called while a model loads with the fraction done (0..1). */
typedef void (*slm_progress_cb)(float fraction, void *user);

typedef struct slm_model_params {
    size_t size;             /* sizeof(slm_model_params); set by _default() */
    /* "cpu", "vulkan", "cuda" or "auto"/NULL: the first backend of this build
     * that opens and loads the model, GPU backends first, the CPU last (a
     * model that cannot load on one GPU backend falls back to the next). */
    const char *backend;
    int n_threads;           /* CPU threads; 0 = one per core */
    int device_index;        /* GPU to use; -1 = choose */
    slm_progress_cb progress;
    void *progress_user;
    /* Backend tuning knobs as "key=value" pairs separated by commas or
     * spaces (NULL: none). Keys: cpu.simd (scalar|avx2|avx512|neon),
     * cpu.act (q8|q8x2), cpu.pack (auto|off: repack weights for the
     * CPU's packed kernels), vulkan.device (a device-name substring),
     * vulkan.subgroup (0|1), vulkan.max_buffer (bytes), vulkan.matvec_rows,
     * vulkan.split_min, vulkan.chunk, vulkan.matmul (direct|gpu),
     * vulkan.cache_dir (pipeline cache folder), cuda.device (index),
     * cuda.matvec_rows (-1: always cuBLAS), cuda.split_min. An unknown key
     * or a bad value fails slm_model_open naming it. The library reads no
     * environment variables; the slm command maps its SLM_* ones here. */
    const char *options;
} slm_model_params;

SLM_API void slm_model_params_default(slm_model_params *p);

/* Opens a GGUF model file on a backend. Fails (and sets slm_last_error) on a
 * missing or malformed file, an unsupported architecture or tensor type, or
 * no usable backend. Thread-safe. */
SLM_API slm_status slm_model_open(const char *path, const slm_model_params *p, slm_model **out);

/* Frees the model. Every engine opened on it must be closed first.
 * Accepts NULL. */
SLM_API void slm_model_close(slm_model *m);

/* Facts for clients and /v1/models. */
typedef struct slm_model_info {
    size_t size;        /* sizeof(slm_model_info); the caller sets it */
    const char *name;   /* general.name, or the file name */
    const char *arch;
    const char *backend; /* describe() of the backend it runs on */
    int n_vocab, n_ctx_train, n_embd, n_layer;
    int64_t n_params;
    uint64_t file_bytes;
    /* Why the automatic backend choice passed over a GPU backend that
     * could not load the model ("" when it did not). */
    const char *fallback;
    /* The chat template messages are rendered with by default ("chatml",
     * "llama3", ...), and "" or why it was chosen otherwise (the model has
     * no template, so its vocabulary's turn tokens chose, or "plain" for a
     * base model; or the template is not one slm recognises: ChatML). */
    const char *chat_template;
    const char *chat_template_note;
    /* What the tokenizer ignored in the file ("" when nothing), e.g. a
     * special token id outside the vocabulary, naming the key and value. */
    const char *tokenizer_warning;
} slm_model_info;

SLM_API slm_status slm_model_get_info(const slm_model *m, slm_model_info *info);

/* ------------------------------------------------------------------------ */
/* Engine: continuous batching over one model                                */
/* ------------------------------------------------------------------------ */

typedef struct slm_engine slm_engine;

/* Storage type of the KV cache. */
typedef enum slm_kv_type {
    SLM_KV_F16 = 0,  /* default */
    SLM_KV_F32 = 1,
    SLM_KV_Q8_0 = 2  /* half the memory of F16, more users; not every backend has it */
} slm_kv_type;

typedef struct slm_engine_params {
    size_t size;        /* sizeof(slm_engine_params); set by _default() */
    int n_ctx;          /* the most tokens one request may hold (prompt + output); 0 = model's */
    int max_running;    /* sequences decoded together (default 64) */
    int max_waiting;    /* queued requests beyond which submit fails with QUEUE_FULL (default 256) */
    int step_tokens;    /* token budget of one step: decodes + prefill chunks (default 512) */
    /* KV pool size in blocks; 0 = sized from memory: the free memory the
     * backend measures after the weights and a worst-case step's workspace
     * are allocated (less a margin), at most kv_bytes_max, and no more
     * than max_running full contexts need. */
    int kv_blocks;
    int block_size;     /* tokens per KV block (default 16) */
    uint64_t kv_bytes_max; /* cap on the KV pool in bytes (0: none) */
    slm_kv_type kv_type;   /* default SLM_KV_F16; a backend without it fails _open naming it */
    /* 1: run the callbacks of a step only after it, with the device idle
     * (for measuring); 0 (default): while the next step runs. */
    int sequential;
} slm_engine_params;

SLM_API void slm_engine_params_default(slm_engine_params *p);

/* Starts an engine (its step thread and KV pool) on a model. */
SLM_API slm_status slm_engine_open(slm_model *m, const slm_engine_params *p, slm_engine **out);

/* Stops the engine. drain = 1 finishes every admitted request first; drain = 0
 * cancels them (their on_done callbacks run with SLM_FINISH_CANCELLED).
 * Accepts NULL. */
SLM_API void slm_engine_close(slm_engine *e, int drain);

/* One entry of slm_sampling.logit_bias. */
typedef struct slm_logit_bias {
    int32_t token;
    float bias;
} slm_logit_bias;

/* Sampling of one request. Passed by pointer (slm_request_params.sampling)
 * and filled by slm_sampling_default(), so fields can be added. */
typedef struct slm_sampling {
    size_t size;             /* sizeof(slm_sampling); set by _default() */
    float temperature;       /* <= 0: greedy (default 0.8) */
    int top_k;               /* <= 0: off (default 40) */
    float top_p;             /* 1: off (default 0.95) */
    float min_p;             /* 0: off (default 0.05) */
    float repeat_penalty;    /* 1: off */
    float presence_penalty;  /* OpenAI semantics, 0: off */
    float frequency_penalty; /* OpenAI semantics, 0: off */
    uint64_t seed;           /* default 0 */
    /* Added to single tokens' logits before everything else (penalties,
     * temperature, top-k/p, the draw and the log-probabilities a request
     * reports). A bias in [-100, 100] per token id; -100 bans the token
     * outright, +100 all but forces it. Copied at submit. NULL: none. */
    const slm_logit_bias *logit_bias;
    int n_logit_bias;
    /* Structured output (NULL, the default: free text). A JSON Schema as
     * JSON text; the output is then a JSON value that validates against it,
     * written compactly (at most one space after ':' and ','), and ends as
     * soon as the value is complete (ignore_eos does not apply; an answer
     * cut short by max_tokens, the context or a stop string is incomplete:
     * SLM_FINISH_LENGTH says so for the first two). The
     * schema {"type":"object"} means any JSON object (OpenAI's json_object
     * mode). Compiled at slm_engine_submit, which fails with
     * INVALID_ARGUMENT naming an unsupported keyword or a contradiction and
     * where it is (see slm_json_schema_check); the text need not outlive
     * the submit call. */
    const char *json_schema;
} slm_sampling;

SLM_API void slm_sampling_default(slm_sampling *s);

/* Checks that a JSON Schema (JSON text) can constrain generation, without
 * a model: SLM_OK, or INVALID_ARGUMENT whose message names the problem and
 * its place as a JSON pointer, e.g. "json schema: keyword 'pattern' at
 * #/properties/name is not supported". Supported: type (one or an array),
 * properties, required, additionalProperties (boolean or schema), items,
 * minItems, maxItems, enum, const, minLength, maxLength, anyOf/oneOf whose
 * alternatives start differently (different JSON types or distinct
 * constants), local $ref ("#/$defs/name"), and annotations (title,
 * description, default, examples, ...). Thread-safe. */
SLM_API slm_status slm_json_schema_check(const char *schema);

typedef struct slm_message {
    const char *role;        /* "system", "user", "assistant" */
    const char *content;
} slm_message;

typedef enum slm_finish_reason {
    SLM_FINISH_STOP = 0,      /* end-of-sequence token or a stop string */
    SLM_FINISH_LENGTH = 1,    /* max_tokens or the context cap reached */
    SLM_FINISH_CANCELLED = 2, /* slm_engine_cancel or engine closed without drain */
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

/* Most choices one request may ask for (slm_request_params.n) and most
 * alternatives per token it may ask log-probabilities of (top_logprobs). */
#define SLM_MAX_CHOICES 16
#define SLM_MAX_TOP_LOGPROBS 20

typedef struct slm_logprob {
    int32_t token;
    float logprob; /* natural log; -INFINITY for a token banned by logit_bias */
} slm_logprob;

/* The log-probability of one sampled token and its most likely
 * alternatives. The distribution is the model's: log-softmax of the raw
 * logits after logit_bias, before penalties and temperature (as OpenAI
 * reports them), so it does not depend on the sampling settings. */
typedef struct slm_token_logprobs {
    slm_logprob sampled;
    int n_top;                               /* = the request's top_logprobs */
    slm_logprob top[SLM_MAX_TOP_LOGPROBS];   /* most likely first (ties: lower id) */
} slm_token_logprobs;

/* What one choice of a request produced since its last event. */
typedef struct slm_choice_event {
    size_t size;                  /* sizeof(slm_choice_event) */
    int choice;                   /* 0 .. n-1 */
    const char *text;             /* output text, as on_token would get it */
    size_t len;
    /* With logprobs: one entry per output token sampled since the last
     * event (an end-of-sequence token that ends the choice is not output).
     * Tokens are reported when sampled, text once it is complete UTF-8 and
     * clear of stop strings, so the two need not line up within an event;
     * the tokens of a stop string are reported although its text is not. */
    const slm_token_logprobs *tokens;
    int n_tokens;
    /* Non-NULL on the choice's last event: how it ended (its own finish,
     * completion_tokens and timings; prompt_tokens is the request's). */
    const slm_result *done;
} slm_choice_event;

/* Per-choice events (engine thread, must return quickly); all pointers are
 * valid during the call only. */
typedef void (*slm_choice_cb)(void *user, const slm_choice_event *ev);

typedef struct slm_request_params {
    size_t size;                  /* sizeof(slm_request_params); set by _default() */
    /* The input: exactly one of prompt, messages, tokens. */
    const char *prompt;           /* raw text, special-token texts parsed as such */
    const slm_message *messages;  /* rendered with the model's chat template; contents
                                     are ordinary text (no control tokens) */
    int n_messages;
    const int32_t *tokens;
    int n_tokens;
    const slm_sampling *sampling; /* NULL: slm_sampling_default()'s; copied at submit */
    /* Renders messages: "chatml", "llama3", "llama2", "mistral", "phi3",
     * "gemma", "exaone", "plain", or NULL for the model's own (see
     * slm_model_info). */
    const char *chat_template;
    int max_tokens;               /* output cap (default 256); the context cap also applies */
    const char *const *stop;      /* stop strings (not included in the output) */
    int n_stop;
    int ignore_eos;               /* keep going past end-of-sequence tokens */
    slm_token_cb on_token;
    slm_done_cb on_done;
    void *user;
    /* Choices (default 1, at most SLM_MAX_CHOICES). The prompt is computed
     * once; then the sequence forks and each choice shares the prompt's KV
     * blocks (a partial last block is copied when a choice first writes
     * it), samples with its own generator (seed + choice index) and stops on
     * its own. on_done runs once, after every choice ended, with
     * completion_tokens summed, the finish of choice 0 (or the first error)
     * and the longest total_ms. */
    int n;
    /* 1: report each output token's log-probability (slm_token_logprobs)
     * through on_choice; top_logprobs (0..SLM_MAX_TOP_LOGPROBS, needs
     * logprobs) alternatives with it. */
    int logprobs;
    int top_logprobs;
    /* When set, replaces on_token: each choice's text, log-probabilities
     * and end, tagged with its index. on_done still runs last. */
    slm_choice_cb on_choice;
} slm_request_params;

SLM_API void slm_request_params_default(slm_request_params *p);

/* Queues a request; its id (for cancel) goes to *id. Fails without calling
 * any callback: INVALID_ARGUMENT (bad parameters, prompt longer than the
 * context: the message says so), SLM_STATUS_QUEUE_FULL (retry later).
 * Thread-safe. */
SLM_API slm_status slm_engine_submit(slm_engine *e, const slm_request_params *p, uint64_t *id);

/* Cancels a request (queued or running); its on_done follows with
 * SLM_FINISH_CANCELLED. NOT_FOUND when it already finished. Thread-safe. */
SLM_API slm_status slm_engine_cancel(slm_engine *e, uint64_t id);

typedef struct slm_engine_stats {
    size_t size;                  /* sizeof(slm_engine_stats); the caller sets it */
    int running, waiting;
    int kv_blocks_used, kv_blocks_total;
    uint64_t requests_done, prompt_tokens, generated_tokens, cached_tokens, preemptions;
    uint64_t steps;
    /* How the KV pool was sized (fixed at _open): the backend's memory
     * when measured (0 when the backend cannot tell), the workspace of a
     * worst-case step, and the pool. */
    uint64_t mem_total_bytes, mem_free_bytes; /* free: after weights and workspace */
    uint64_t workspace_bytes;
    uint64_t kv_block_bytes, kv_pool_bytes;
    int kv_sized_by;         /* 0: memory, 1: max_running × n_ctx, 2: kv_bytes_max, 3: kv_blocks given */
    /* Sequences forked for choices beyond the first (slm_request_params.n),
     * and the KV blocks they shared with their parent at the fork instead
     * of computing them again; tokens run through the model (prompt and
     * output, recomputation included). */
    uint64_t forks, forked_blocks, computed_tokens;
} slm_engine_stats;

SLM_API slm_status slm_engine_get_stats(slm_engine *e, slm_engine_stats *s);

/* Counts the tokens a text encodes to (for clients' context checks). */
SLM_API slm_status slm_model_count_tokens(const slm_model *m, const char *text, int *n);

/* The bytes token id stands for (control tokens as their text, e.g.
 * "<|im_end|>"), not NUL-terminated, valid while the model is open.
 * INVALID_ARGUMENT for an id outside the vocabulary. */
SLM_API slm_status slm_model_token_piece(const slm_model *m, int32_t token, const char **piece,
                                         size_t *len);

/* Counts the tokens of messages rendered with a chat template (NULL: the
 * model's), up to where the assistant's answer begins, as a request with
 * these messages would hold them. Only the template's own markup becomes
 * control tokens: special-token texts inside a message's content (a user
 * writing "<|im_start|>system") are encoded as ordinary text. */
SLM_API slm_status slm_model_count_message_tokens(const slm_model *m, const slm_message *msgs,
                                                  int n, const char *chat_template, int *n_tokens);

/* ------------------------------------------------------------------------ */
/* Embeddings: pooled final hidden states                                    */
/* ------------------------------------------------------------------------ */

/* How an embedding pools the hidden states of its input's tokens (the
 * final hidden states: after the output norm, before the output
 * projection). The numbers 1..3 are GGUF's <arch>.pooling_type values.
 * Append-only. */
typedef enum slm_pooling {
    /* The file's <arch>.pooling_type; a file without the key (any
     * generative model) or with 0 ("none") gets SLM_POOLING_MEAN, which
     * uses every token rather than trusting one; a file asking for
     * anything else (4: rank) fails the request naming it. */
    SLM_POOLING_MODEL = 0,
    SLM_POOLING_MEAN = 1, /* the mean over every token of the input */
    SLM_POOLING_CLS = 2,  /* the first token's (BERT-style [CLS]) */
    SLM_POOLING_LAST = 3  /* the last token's (decoder embedding models) */
} slm_pooling;

/* One embedding request. An embedding request goes through the engine's
 * scheduler beside generation requests: its input is prefilled (in chunks
 * under the step budget, batched with whatever else runs), nothing is
 * sampled, and its KV blocks are freed as soon as its last token is
 * computed. It never reuses the prefix cache (mean and CLS pooling need
 * every token's hidden state). Filled by slm_embed_params_default(). */
typedef struct slm_embed_params {
    size_t size;              /* sizeof(slm_embed_params); set by _default() */
    /* The input: exactly one of text (tokenized with BOS where the model
     * wants it; special-token texts in it, e.g. "<|im_start|>", are
     * ordinary text) and tokens. */
    const char *text;
    const int32_t *tokens;
    int n_tokens;
    slm_pooling pooling;      /* default SLM_POOLING_MODEL */
    int normalize;            /* 1 (default): L2-normalised; 0: as pooled */
    /* Receives the embedding, n_embd floats (slm_model_info.n_embd), before
     * on_done is called; the caller keeps it valid until then. */
    float *out;
    slm_done_cb on_done;      /* required with slm_engine_submit_embed */
    void *user;
} slm_embed_params;

SLM_API void slm_embed_params_default(slm_embed_params *p);

/* Queues an embedding request; its id (for slm_engine_cancel) goes to *id.
 * on_done runs once, on the engine thread, with finish SLM_FINISH_STOP
 * (out filled, completion_tokens 0), CANCELLED or ERROR. Fails without
 * calling it as slm_engine_submit does (INVALID_ARGUMENT naming what is
 * wrong: no or two inputs, a token outside the vocabulary, an input longer
 * than the context, out missing, an unknown pooling; QUEUE_FULL). */
SLM_API slm_status slm_engine_submit_embed(slm_engine *e, const slm_embed_params *p,
                                           uint64_t *id);

/* Embeds n inputs and waits for all of them: the blocking form of
 * slm_engine_submit_embed for a caller's own thread (never a callback).
 * Input i's embedding lands in out[i * n_embd ..]; each input's own out,
 * on_done and user are ignored. The inputs run batched together (as many
 * at once as the engine's queue takes). *prompt_tokens (when not NULL)
 * receives the tokens of all inputs. On any failure the inputs still
 * queued are cancelled and the status of the first failure is returned,
 * its message naming the input ("input 3: ..."). Thread-safe. */
SLM_API slm_status slm_engine_embed(slm_engine *e, const slm_embed_params *inputs, int n,
                                    float *out, int *prompt_tokens);

#ifdef __cplusplus
}
#endif
#endif /* SLM_H */
