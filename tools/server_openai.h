/*
 * server_openai.h — the OpenAI wire format of `slm serve`, as pure functions:
 * a request body (JSON) becomes an slm_srv_request whose fields map one to
 * one onto slm_request_params, and results become the JSON bodies and stream
 * chunks OpenAI's clients expect. Nothing here touches the network or the
 * engine, so tests/test_server_http.c checks it without a model.
 *
 * Errors are OpenAI's shape, {"error":{"message","type","param","code"}},
 * with the HTTP status that goes with them (slm_srv_error).
 *
 * Every field of a request body is known: used, accepted as harmless
 * (SLM_SRV_HARMLESS_FIELDS), or refused with a 400 naming it; an unknown
 * field is refused too rather than silently ignored.
 */
#ifndef SLM_SERVER_OPENAI_H
#define SLM_SERVER_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

#define SLM_SRV_MAX_STOP 16        /* stop strings one request may give */
#define SLM_SRV_MAX_LOGIT_BIAS 1024 /* logit_bias entries one request may give */
#define SLM_SRV_MAX_COMPLETION_LOGPROBS 5 /* /v1/completions' logprobs cap (OpenAI's) */

/* Fields accepted and ignored because they change nothing slm answers:
 * who the end user is (user), whether OpenAI should store the exchange
 * (store, metadata), a billing tier (service_tier), and whether tool calls
 * may run in parallel (parallel_tool_calls, moot without tools). */
#define SLM_SRV_HARMLESS_FIELDS "user", "store", "metadata", "service_tier", "parallel_tool_calls"

/* An error answer: HTTP status plus the four fields of OpenAI's error body.
 * type/param/code point at constants (or NULL for JSON null). */
typedef struct slm_srv_error {
    int status;
    const char *type;  /* "invalid_request_error", "server_error", ... */
    const char *param; /* the request field at fault, or NULL */
    const char *code;  /* "model_not_found", "invalid_api_key", ... or NULL */
    char message[512];
    /* Holds param when it names a field of the body itself (an unknown
     * one); param then points here, so pass the error by pointer. */
    char param_buf[64];
} slm_srv_error;

/* Fills e and returns -1, so a failing parse path is one line. */
int slm_srv_error_set(slm_srv_error *e, int status, const char *type, const char *param,
                      const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* A parsed request. Strings point into `root`, which the request owns:
 * slm_srv_request_free releases everything. */
typedef struct slm_srv_request {
    bool chat;                     /* /v1/chat/completions (else /v1/completions) */
    bool stream, include_usage;
    const char *model;             /* as sent; NULL when absent */
    slm_message *messages;         /* chat: owned array, n_messages long */
    int n_messages;
    char **message_text;           /* chat: owned texts of content-part arrays */
    const char *prompt;            /* completions given text */
    int32_t *tokens;               /* completions given token ids (owned) */
    int n_tokens;
    slm_sampling sampling;         /* library defaults where the client said nothing */
    bool has_seed;
    int max_tokens;                /* 0: the server's default */
    const char *stop[SLM_SRV_MAX_STOP];
    int n_stop;
    bool ignore_eos;
    char *json_schema;             /* response_format's schema text (owned), which
                                      sampling.json_schema points at; NULL: free text */
    void *root;                    /* the json_t the strings live in */
    /* Added for issue 15 (OpenAI features). */
    int n;                         /* choices, 1..SLM_MAX_CHOICES */
    bool logprobs;                 /* chat: logprobs; completions: logprobs given */
    int top_logprobs;              /* alternatives per token */
    slm_logit_bias *logit_bias;    /* owned; sampling.logit_bias points here */
    int n_logit_bias;
    bool echo;                     /* completions: the prompt leads the text */
} slm_srv_request;

/* The names a request's "model" may carry to mean the served model. */
typedef struct slm_srv_model_names {
    const char *id;       /* what /v1/models lists and responses echo */
    const char *names[4]; /* other accepted spellings (NULL-terminated early) */
} slm_srv_model_names;

/* The "model" field of a request body (a jansson object; every route checks
 * it alike): absent, null or "" means the served model; any other string
 * must be one of names (else 404 model_not_found). *model gets the string
 * (NULL when absent; it lives in root). 0, or -1 with *e filled. */
struct json_t;
int slm_srv_parse_model(struct json_t *root, const slm_srv_model_names *names,
                        const char **model, slm_srv_error *e);

/* Parses an OpenAI request body; sampling fields the client leaves out keep
 * *defaults (the library's, from slm_request_params_default). Returns 0
 * with *out filled (free it with slm_srv_request_free), or -1 with *err
 * filled (400 for malformed JSON, wrong types and out-of-range values, 404
 * for an unknown model); *out is then already freed. Never reads past len; body need not be terminated. */
int slm_srv_request_parse(const char *body, size_t len, bool chat,
                          const slm_srv_model_names *names, const slm_sampling *defaults,
                          slm_srv_request *out, slm_srv_error *err);
void slm_srv_request_free(slm_srv_request *r);

/* The request field an engine refusal (slm_engine_submit's message) is
 * about: messages that start "sampling.<field>:", "n:", "logprobs:" or
 * "top_logprobs:" name it; anything else is the input's (messages or
 * prompt). Returns a constant. */
const char *slm_srv_engine_error_param(const char *msg, bool chat);

/* OpenAI's name of a finish reason ("stop", "length", "cancelled", "error"). */
const char *slm_srv_finish_name(slm_finish_reason f);

/* The bytes of a token (for logprobs' token, bytes and text_offset). */
typedef struct slm_srv_vocab {
    const char *(*piece)(void *ctx, int32_t token, size_t *len);
    void *ctx;
} slm_srv_vocab;

/* Context every response of one request shares. */
typedef struct slm_srv_reply {
    const slm_srv_request *rq;
    const char *id;    /* "chatcmpl-..." or "cmpl-..." */
    const char *model; /* the served model's id */
    long long created; /* Unix seconds */
    const slm_srv_vocab *vocab; /* needed when rq->logprobs */
} slm_srv_reply;


/* Each builder returns a malloc'd, NUL-terminated compact JSON text (the
 * caller frees it), or NULL when out of memory. Text that is not valid UTF-8
 * has its bad bytes replaced by U+FFFD rather than failing. */

/* The usage chunk that ends a stream when stream_options.include_usage is set. */
char *slm_srv_usage_chunk_json(const slm_srv_reply *r, int prompt_tokens,
                               int completion_tokens);

/* {"error":{...}} for e. */
char *slm_srv_error_json(const slm_srv_error *e);

/* Appends one server-sent event "data: <json>\n\n" to a growable buffer.
 * Returns 0, or -1 when out of memory (the buffer is unchanged). */
typedef struct slm_srv_buf {
    char *data;
    size_t len, cap;
} slm_srv_buf;

int slm_srv_buf_append(slm_srv_buf *b, const char *s, size_t n);
int slm_srv_sse_event(slm_srv_buf *b, const char *json);
/* The stream's last event, "data: [DONE]\n\n". */
int slm_srv_sse_done(slm_srv_buf *b);
void slm_srv_buf_free(slm_srv_buf *b);

/* ---- choices (n, logprobs) --------------------------------------------- */

/* What one choice produced: on the engine side the output not yet taken by
 * the connection, on the connection side what it took and not yet sent. */
typedef struct slm_srv_choice {
    slm_srv_buf text;
    slm_token_logprobs *lp;
    size_t n_lp, cap_lp;
    bool done;                /* its last event came */
    slm_finish_reason finish; /* once done */
    /* Connection side: the finish chunk went out; bytes of token pieces
     * sent so far (completions' text_offset). */
    bool finish_sent;
    size_t offset;
} slm_srv_choice;

typedef struct slm_srv_choices {
    int n;
    slm_srv_choice *c; /* [n] */
    bool dirty;        /* something arrived since the last move */
} slm_srv_choices;

/* 0, or -1 when out of memory. n is 1..SLM_MAX_CHOICES. */
int slm_srv_choices_init(slm_srv_choices *cs, int n);
void slm_srv_choices_free(slm_srv_choices *cs);
/* Appends one engine event. -1 when out of memory (what fit is kept) or
 * the choice index is out of range. */
int slm_srv_choices_add(slm_srv_choices *cs, const slm_choice_event *ev);
/* Moves what `from` holds onto `to` (same n) and empties from's pending
 * parts. -1 when out of memory (from is then left as it was). */
int slm_srv_choices_move(slm_srv_choices *from, slm_srv_choices *to);

/* One stream chunk of choice i: text, logprobs (when asked and lp != NULL:
 * lp's tokens), {"role":"assistant"} (role: a chat stream's first chunk),
 * or, with finish, the final chunk's finish_reason and no content. With
 * include_usage each chunk carries "usage": null, as OpenAI's do. */
char *slm_srv_chunk_json(const slm_srv_reply *r, int i, const char *text, size_t len,
                         const slm_srv_choice *lp, bool role, const char *finish);

/* The non-streaming body with every choice (text, logprobs when asked,
 * finish reason; completions with echo put the prompt first) and usage. */
char *slm_srv_choices_response_json(const slm_srv_reply *r, const slm_srv_choices *cs,
                                    int prompt_tokens, int completion_tokens);

/* Stream events for what cs holds: one chunk per choice with new text or
 * logprobs, then one finish chunk per choice that ended (once each); the
 * pending parts are emptied. With role (chat, the stream's start) a chunk
 * carrying {"role":"assistant"} per choice comes first; completions with
 * echo send the prompt as each choice's first text. 0, or -1 when out of
 * memory. */
int slm_srv_choice_events(const slm_srv_reply *r, slm_srv_choices *cs, bool start,
                          slm_srv_buf *out);

#endif
