/*
 * server_openai.c — OpenAI request parsing and response JSON for `slm
 * serve` (see server_openai.h). Parsing is strict: a wrong type or a value
 * out of range is a 400 naming the field, and so is a field slm does not
 * support or know (the lists below); only the documented harmless ones are
 * accepted without effect.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_openai.h"

#define BAD 400
#define INVALID "invalid_request_error"

int slm_srv_error_set(slm_srv_error *e, int status, const char *type, const char *param,
                      const char *code, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- field readers: absent and null both mean "keep the default" -------- */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int get_number(json_t *o, const char *key, double lo, double hi, float *out,
                      slm_srv_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return slm_srv_error_set(e, BAD, INVALID, key, "invalid_type",
                                 "'%s' must be a number, not %s", key, type_name(v));
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return slm_srv_error_set(e, BAD, INVALID, key, "invalid_value",
                                 "'%s' must be between %g and %g, got %g", key, lo, hi, d);
    *out = (float)d;
    return 0;
}

/* Integers; an integral real (16.0) is accepted as clients in loosely typed
 * languages send those. *present says whether the field was given. */
static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                   bool *present, slm_srv_error *e)
{
    json_t *v = json_object_get(o, key);
    if (present)
        *present = false;
    if (!v || json_is_null(v))
        return 0;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        return slm_srv_error_set(e, BAD, INVALID, key, "invalid_type",
                                 "'%s' must be an integer, not %s", key, type_name(v));
    }
    if (x < lo || x > hi)
        return slm_srv_error_set(e, BAD, INVALID, key, "invalid_value",
                                 "'%s' must be between %lld and %lld, got %lld", key, lo, hi, x);
    *out = x;
    if (present)
        *present = true;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, slm_srv_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return slm_srv_error_set(e, BAD, INVALID, key, "invalid_type",
                                 "'%s' must be a boolean, not %s", key, type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* ---- the input: messages or prompt -------------------------------------- */

/* A message's content: a string, null (an assistant turn with none), or an
 * array of parts of which only {"type":"text","text":...} are supported. */
static int message_content(slm_srv_request *r, int i, json_t *c, slm_srv_error *e)
{
    if (!c || json_is_null(c)) {
        r->messages[i].content = "";
        return 0;
    }
    if (json_is_string(c)) {
        r->messages[i].content = json_string_value(c);
        return 0;
    }
    if (!json_is_array(c))
        return slm_srv_error_set(e, BAD, INVALID, "messages", "invalid_type",
                                 "messages[%d].content must be a string or an array of text "
                                 "parts, not %s", i, type_name(c));
    size_t total = 1, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text))
            return slm_srv_error_set(e, BAD, INVALID, "messages", "unsupported_content",
                                     "messages[%d].content[%zu]: only {\"type\":\"text\","
                                     "\"text\":...} parts are supported", i, k);
        total += json_string_length(text);
    }
    char *s = malloc(total);
    if (!s)
        return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t at = 0;
    json_array_foreach(c, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(s + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    s[at] = 0;
    r->message_text[i] = s;
    r->messages[i].content = s;
    return 0;
}

static int parse_messages(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    json_t *m = json_object_get(root, "messages");
    if (!m || json_is_null(m))
        return slm_srv_error_set(e, BAD, INVALID, "messages", "missing_required_parameter",
                                 "'messages' is required");
    if (!json_is_array(m) || json_array_size(m) == 0)
        return slm_srv_error_set(e, BAD, INVALID, "messages", "invalid_value",
                                 "'messages' must be a non-empty array");
    size_t n = json_array_size(m);
    if (n > 100000)
        return slm_srv_error_set(e, BAD, INVALID, "messages", "invalid_value",
                                 "too many messages (%zu)", n);
    r->messages = calloc(n, sizeof *r->messages);
    r->message_text = calloc(n, sizeof *r->message_text);
    if (!r->messages || !r->message_text)
        return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    r->n_messages = (int)n;
    for (int i = 0; i < (int)n; i++) {
        json_t *msg = json_array_get(m, (size_t)i);
        json_t *role = json_object_get(msg, "role");
        if (!json_is_object(msg) || !json_is_string(role))
            return slm_srv_error_set(e, BAD, INVALID, "messages", "invalid_value",
                                     "messages[%d] must be an object with a string 'role'", i);
        const char *rs = json_string_value(role);
        /* OpenAI's newer name for the system role. */
        r->messages[i].role = !strcmp(rs, "developer") ? "system" : rs;
        if (strcmp(r->messages[i].role, "system") && strcmp(rs, "user") &&
            strcmp(rs, "assistant"))
            return slm_srv_error_set(e, BAD, INVALID, "messages", "invalid_value",
                                     "messages[%d].role '%s' is not supported (system, "
                                     "developer, user or assistant)", i, rs);
        if (message_content(r, i, json_object_get(msg, "content"), e))
            return -1;
    }
    return 0;
}

static int parse_token_array(slm_srv_request *r, json_t *a, slm_srv_error *e)
{
    size_t n = json_array_size(a), k;
    json_t *v;
    if (n == 0 || n > (1u << 24))
        return slm_srv_error_set(e, BAD, INVALID, "prompt", "invalid_value",
                                 "a token-id prompt must hold 1 to 16777216 ids");
    r->tokens = malloc(n * sizeof *r->tokens);
    if (!r->tokens)
        return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    json_array_foreach(a, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT32_MAX)
            return slm_srv_error_set(e, BAD, INVALID, "prompt", "invalid_type",
                                     "prompt[%zu] must be a non-negative token id", k);
        r->tokens[k] = (int32_t)json_integer_value(v);
    }
    r->n_tokens = (int)n;
    return 0;
}

/* A string; an array holding one string; an array of token ids; or an array
 * holding one array of ids. Several prompts in one request are refused. */
static int parse_prompt(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    json_t *p = json_object_get(root, "prompt");
    if (!p || json_is_null(p))
        return slm_srv_error_set(e, BAD, INVALID, "prompt", "missing_required_parameter",
                                 "'prompt' is required");
    if (json_is_string(p)) {
        r->prompt = json_string_value(p);
        return 0;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return slm_srv_error_set(e, BAD, INVALID, "prompt", "invalid_type",
                                 "'prompt' must be a string, an array of token ids, or an "
                                 "array holding one of those");
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first))
        return parse_token_array(r, p, e);
    if (json_array_size(p) != 1)
        return slm_srv_error_set(e, BAD, INVALID, "prompt", "invalid_value",
                                 "only one prompt per request is supported");
    if (json_is_string(first)) {
        r->prompt = json_string_value(first);
        return 0;
    }
    if (json_is_array(first))
        return parse_token_array(r, first, e);
    return slm_srv_error_set(e, BAD, INVALID, "prompt", "invalid_type",
                             "'prompt' must be a string or token ids");
}

/* ---- options ------------------------------------------------------------ */

static int parse_stop(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    json_t *s = json_object_get(root, "stop");
    if (!s || json_is_null(s))
        return 0;
    if (json_is_string(s)) {
        if (json_string_length(s) > 0)
            r->stop[r->n_stop++] = json_string_value(s);
        return 0;
    }
    if (!json_is_array(s))
        return slm_srv_error_set(e, BAD, INVALID, "stop", "invalid_type",
                                 "'stop' must be a string or an array of strings, not %s",
                                 type_name(s));
    if (json_array_size(s) > SLM_SRV_MAX_STOP)
        return slm_srv_error_set(e, BAD, INVALID, "stop", "invalid_value",
                                 "at most %d stop strings are supported", SLM_SRV_MAX_STOP);
    size_t k;
    json_t *v;
    json_array_foreach(s, k, v) {
        if (!json_is_string(v))
            return slm_srv_error_set(e, BAD, INVALID, "stop", "invalid_type",
                                     "stop[%zu] must be a string", k);
        if (json_string_length(v) > 0)
            r->stop[r->n_stop++] = json_string_value(v);
    }
    return 0;
}

int slm_srv_parse_model(json_t *root, const slm_srv_model_names *names, const char **model,
                        slm_srv_error *e)
{
    *model = NULL;
    json_t *m = json_object_get(root, "model");
    if (!m || json_is_null(m))
        return 0;
    if (!json_is_string(m))
        return slm_srv_error_set(e, BAD, INVALID, "model", "invalid_type",
                                 "'model' must be a string, not %s", type_name(m));
    *model = json_string_value(m);
    if (!(*model)[0] || !names)
        return 0;
    if (names->id && !strcmp(*model, names->id))
        return 0;
    for (int i = 0; i < 4 && names->names[i]; i++)
        if (!strcmp(*model, names->names[i]))
            return 0;
    return slm_srv_error_set(e, 404, INVALID, "model", "model_not_found",
                             "The model '%.200s' does not exist; this server serves '%s'",
                             *model, names->id ? names->id : "");
}

/* top_p and repeat_penalty: 0 is inside get_number's closed range but not
 * a valid value (nothing would be left to sample; every logit divided by
 * zero). */
static int positive(json_t *root, const char *key, float v, slm_srv_error *e)
{
    json_t *x = json_object_get(root, key);
    if (x && !json_is_null(x) && !(v > 0))
        return slm_srv_error_set(e, BAD, INVALID, key, "invalid_value",
                                 "'%s' must be greater than 0, got %g", key, v);
    return 0;
}

static int parse_sampling(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    slm_sampling *s = &r->sampling;
    long long v;
    bool present;
    if (get_number(root, "temperature", 0, 2, &s->temperature, e) ||
        get_number(root, "top_p", 0, 1, &s->top_p, e) ||
        get_number(root, "min_p", 0, 1, &s->min_p, e) ||
        get_number(root, "presence_penalty", -2, 2, &s->presence_penalty, e) ||
        get_number(root, "frequency_penalty", -2, 2, &s->frequency_penalty, e) ||
        get_number(root, "repeat_penalty", 0, 10, &s->repeat_penalty, e) ||
        positive(root, "top_p", s->top_p, e) ||
        positive(root, "repeat_penalty", s->repeat_penalty, e))
        return -1;
    if (get_int(root, "top_k", -1, 1 << 30, &v, &present, e))
        return -1;
    if (present)
        s->top_k = (int)v;
    if (get_int(root, "seed", INT64_MIN, INT64_MAX, &v, &r->has_seed, e))
        return -1;
    if (r->has_seed)
        s->seed = (uint64_t)v;
    return 0;
}

/* response_format: {"type":"text"} (free text), {"type":"json_object"} (any
 * JSON object) or {"type":"json_schema","json_schema":{"name","schema",
 * "strict"}}. The schema is checked here, so a bad one is a 400 naming the
 * problem before anything is queued; it travels to the engine as compact
 * JSON text in sampling.json_schema. "strict" is accepted either way: the
 * output always follows the schema. */
static int parse_response_format(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    static const char P[] = "response_format";
    json_t *rf = json_object_get(root, P);
    if (!rf || json_is_null(rf))
        return 0;
    if (!json_is_object(rf))
        return slm_srv_error_set(e, BAD, INVALID, P, "invalid_type",
                                 "'response_format' must be an object, not %s", type_name(rf));
    json_t *t = json_object_get(rf, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "";
    json_t *schema = NULL;
    if (!strcmp(type, "text"))
        return 0;
    if (!strcmp(type, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js))
            return slm_srv_error_set(e, BAD, INVALID, P, "invalid_value",
                                     "'response_format.json_schema' must be an object");
        if (!json_is_string(json_object_get(js, "name")))
            return slm_srv_error_set(e, BAD, INVALID, P, "invalid_value",
                                     "'response_format.json_schema.name' must be a string");
        json_t *strict = json_object_get(js, "strict");
        if (strict && !json_is_null(strict) && !json_is_boolean(strict))
            return slm_srv_error_set(e, BAD, INVALID, P, "invalid_type",
                                     "'response_format.json_schema.strict' must be a boolean");
        schema = json_object_get(js, "schema");
        if (!json_is_object(schema))
            return slm_srv_error_set(e, BAD, INVALID, P, "invalid_value",
                                     "'response_format.json_schema.schema' must be a JSON "
                                     "Schema object");
    } else if (strcmp(type, "json_object")) {
        return slm_srv_error_set(e, BAD, INVALID, P, "invalid_value",
                                 "'response_format.type' must be \"text\", \"json_object\" or "
                                 "\"json_schema\"");
    }
    r->json_schema = schema ? json_dumps(schema, JSON_COMPACT) : strdup("{\"type\":\"object\"}");
    if (!r->json_schema)
        return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    if (slm_json_schema_check(r->json_schema) != SLM_OK)
        return slm_srv_error_set(e, BAD, INVALID, P, "invalid_value", "%s", slm_last_error());
    r->sampling.json_schema = r->json_schema;
    return 0;
}

static int parse_limits(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    long long v;
    bool present;
    if (get_int(root, "max_tokens", 1, 1 << 30, &v, &present, e))
        return -1;
    if (present)
        r->max_tokens = (int)v;
    /* The newer name wins when both are given. */
    if (get_int(root, "max_completion_tokens", 1, 1 << 30, &v, &present, e))
        return -1;
    if (present)
        r->max_tokens = (int)v;
    r->n = 1;
    if (get_int(root, "n", 1, SLM_MAX_CHOICES, &v, &present, e))
        return -1;
    if (present)
        r->n = (int)v;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return slm_srv_error_set(e, BAD, INVALID, "stream_options", "invalid_type",
                                     "'stream_options' must be an object");
        if (get_bool(so, "include_usage", &r->include_usage, e))
            return -1;
    }
    return get_bool(root, "stream", &r->stream, e) ||
           get_bool(root, "ignore_eos", &r->ignore_eos, e);
}

/* ---- issue 15: fields slm supports, refuses or ignores -------------------- */

/* Fields each endpoint uses, besides the harmless ones. response_format
 * is parsed by the grammar-constrained sampling code. */
static const char *const common_fields[] = {
    "model", "stream", "stream_options", "temperature", "top_p", "top_k", "min_p",
    "presence_penalty", "frequency_penalty", "repeat_penalty", "seed", "max_tokens",
    "max_completion_tokens", "n", "stop", "ignore_eos", "logprobs", "logit_bias",
    "response_format", "tools", "tool_choice", "functions", "function_call",
    SLM_SRV_HARMLESS_FIELDS, NULL};
static const char *const chat_fields[] = {"messages", "top_logprobs", NULL};
static const char *const completion_fields[] = {"prompt", "echo", "best_of", "suffix", NULL};

static bool listed(const char *const *list, const char *key)
{
    for (; *list; list++)
        if (!strcmp(*list, key))
            return true;
    return false;
}

/* A field this endpoint does not know is refused, not ignored: a client
 * that sends it expects it to do something. */
static int check_fields(json_t *root, bool chat, slm_srv_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (listed(common_fields, key) || listed(chat ? chat_fields : completion_fields, key))
            continue;
        if (listed(chat ? completion_fields : chat_fields, key))
            slm_srv_error_set(e, BAD, INVALID, NULL, "unsupported_parameter",
                              "'%.100s' is a field of %s, not of this endpoint", key,
                              chat ? "/v1/completions" : "/v1/chat/completions");
        else
            slm_srv_error_set(e, BAD, INVALID, NULL, "unsupported_parameter",
                              "unknown field '%.100s': slm does not support it", key);
        /* The key dies with the body: param gets a copy. */
        snprintf(e->param_buf, sizeof e->param_buf, "%s", key);
        e->param = e->param_buf;
        return -1;
    }
    return 0;
}

/* tools and its older spellings: slm's chat renderer has no tool-call
 * format for any template, so a request that offers tools is refused
 * rather than answered as if none were given. "none" choices are harmless. */
static int refuse_tools(json_t *root, slm_srv_error *e)
{
    static const char *const offers[] = {"tools", "functions"};
    static const char *const choices[] = {"tool_choice", "function_call"};
    for (int i = 0; i < 2; i++) {
        json_t *t = json_object_get(root, offers[i]);
        if (t && !json_is_null(t) && !(json_is_array(t) && json_array_size(t) == 0))
            return slm_srv_error_set(e, BAD, INVALID, offers[i], "unsupported_parameter",
                                     "'%s' is not supported: slm renders chat templates in C "
                                     "and none of its templates has a tool-call format, so "
                                     "the model cannot be offered tools", offers[i]);
        json_t *c = json_object_get(root, choices[i]);
        if (c && !json_is_null(c) && !(json_is_string(c) && !strcmp(json_string_value(c), "none")))
            return slm_srv_error_set(e, BAD, INVALID, choices[i], "unsupported_parameter",
                                     "'%s' is not supported: no tools can be offered (only "
                                     "\"none\" is accepted)", choices[i]);
    }
    return 0;
}

/* logit_bias: {"<token id>": bias in [-100, 100], ...}. Ids outside the
 * vocabulary are the engine's to refuse (it knows the vocabulary); its
 * message names logit_bias. */
static int parse_logit_bias(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    json_t *o = json_object_get(root, "logit_bias");
    if (!o || json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return slm_srv_error_set(e, BAD, INVALID, "logit_bias", "invalid_type",
                                 "'logit_bias' must be an object of token ids to biases, not %s",
                                 type_name(o));
    size_t n = json_object_size(o);
    if (n > SLM_SRV_MAX_LOGIT_BIAS)
        return slm_srv_error_set(e, BAD, INVALID, "logit_bias", "invalid_value",
                                 "'logit_bias' holds %zu entries, at most %d are supported", n,
                                 SLM_SRV_MAX_LOGIT_BIAS);
    r->logit_bias = malloc((n ? n : 1) * sizeof *r->logit_bias);
    if (!r->logit_bias)
        return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        size_t len = strlen(key);
        bool digits = len > 0 && len <= 10;
        for (size_t i = 0; digits && i < len; i++)
            digits = key[i] >= '0' && key[i] <= '9';
        long long id = digits ? strtoll(key, NULL, 10) : -1;
        if (!digits || id > INT32_MAX)
            return slm_srv_error_set(e, BAD, INVALID, "logit_bias", "invalid_value",
                                     "logit_bias key '%.40s' is not a token id (a decimal "
                                     "integer string)", key);
        if (!json_is_number(v))
            return slm_srv_error_set(e, BAD, INVALID, "logit_bias", "invalid_type",
                                     "logit_bias[\"%s\"] must be a number, not %s", key,
                                     type_name(v));
        double b = json_number_value(v);
        if (!(b >= -100 && b <= 100))
            return slm_srv_error_set(e, BAD, INVALID, "logit_bias", "invalid_value",
                                     "logit_bias[\"%s\"] must be between -100 and 100, got %g",
                                     key, b);
        r->logit_bias[r->n_logit_bias++] = (slm_logit_bias){(int32_t)id, (float)b};
    }
    r->sampling.logit_bias = r->logit_bias;
    r->sampling.n_logit_bias = r->n_logit_bias;
    return 0;
}

/* chat: logprobs (bool) + top_logprobs (0..20, needs logprobs);
 * completions: logprobs (0..5 alternatives; given at all turns it on). */
static int parse_logprobs(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    long long v;
    bool present;
    if (!r->chat) {
        if (get_int(root, "logprobs", 0, SLM_SRV_MAX_COMPLETION_LOGPROBS, &v, &present, e))
            return -1;
        r->logprobs = present;
        r->top_logprobs = present ? (int)v : 0;
        return 0;
    }
    if (get_bool(root, "logprobs", &r->logprobs, e) ||
        get_int(root, "top_logprobs", 0, SLM_MAX_TOP_LOGPROBS, &v, &present, e))
        return -1;
    if (present && v > 0 && !r->logprobs)
        return slm_srv_error_set(e, BAD, INVALID, "top_logprobs", "invalid_value",
                                 "'top_logprobs' needs 'logprobs': true");
    r->top_logprobs = present ? (int)v : 0;
    return 0;
}

/* Completions: echo (the prompt leads the text), best_of (only = n: slm
 * does not generate extra candidates to rank), suffix (insertion: none). */
static int parse_completion_extras(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    long long v;
    bool present;
    if (get_bool(root, "echo", &r->echo, e) ||
        get_int(root, "best_of", 1, 1000, &v, &present, e))
        return -1;
    if (present && v != r->n)
        return slm_srv_error_set(e, BAD, INVALID, "best_of", "unsupported_value",
                                 "'best_of' %lld differs from n (%d): slm does not generate "
                                 "candidates to rank, so best_of must equal n", v, r->n);
    if (r->echo && !r->prompt)
        return slm_srv_error_set(e, BAD, INVALID, "echo", "unsupported_value",
                                 "'echo' needs a text prompt, not token ids");
    if (r->echo && r->logprobs)
        return slm_srv_error_set(e, BAD, INVALID, "echo", "unsupported_value",
                                 "'echo' with 'logprobs' would need the prompt's "
                                 "log-probabilities, which slm does not compute");
    json_t *sfx = json_object_get(root, "suffix");
    if (sfx && !json_is_null(sfx) && !(json_is_string(sfx) && json_string_length(sfx) == 0))
        return slm_srv_error_set(e, BAD, INVALID, "suffix", "unsupported_parameter",
                                 "'suffix' (text insertion) is not supported");
    return 0;
}

static int parse_features(slm_srv_request *r, json_t *root, slm_srv_error *e)
{
    return check_fields(root, r->chat, e) || refuse_tools(root, e) ||
           parse_logit_bias(r, root, e) || parse_logprobs(r, root, e) ||
           (!r->chat && parse_completion_extras(r, root, e));
}

const char *slm_srv_engine_error_param(const char *msg, bool chat)
{
    static const char *const fields[] = {
        "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
        "frequency_penalty", "seed", "logit_bias", "n", "logprobs", "top_logprobs", NULL};
    const char *f = msg && !strncmp(msg, "sampling.", 9) ? msg + 9 : msg;
    for (int i = 0; f && fields[i]; i++) {
        size_t n = strlen(fields[i]);
        if (!strncmp(f, fields[i], n) && f[n] == ':')
            return fields[i];
    }
    return chat ? "messages" : "prompt";
}

int slm_srv_request_parse(const char *body, size_t len, bool chat,
                          const slm_srv_model_names *names, const slm_sampling *defaults,
                          slm_srv_request *r, slm_srv_error *e)
{
    memset(r, 0, sizeof *r);
    r->chat = chat;
    if (defaults)
        r->sampling = *defaults;

    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", len, 0, &jerr);
    int rc = -1;
    if (!root) {
        slm_srv_error_set(e, BAD, INVALID, NULL, "invalid_json",
                          "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
        return -1;
    }
    r->root = root;
    if (!json_is_object(root)) {
        slm_srv_error_set(e, BAD, INVALID, NULL, "invalid_json",
                          "the body must be a JSON object, not %s", type_name(root));
        goto out;
    }
    if (slm_srv_parse_model(root, names, &r->model, e) ||
        (chat ? parse_messages(r, root, e) : parse_prompt(r, root, e)) ||
        parse_sampling(r, root, e) || parse_limits(r, root, e) || parse_stop(r, root, e) ||
        parse_features(r, root, e) || parse_response_format(r, root, e))
        goto out;
    if (!r->stream && r->include_usage)
        r->include_usage = false; /* only meaningful for streams */
    rc = 0;
out:
    if (rc)
        slm_srv_request_free(r);
    return rc;
}

void slm_srv_request_free(slm_srv_request *r)
{
    if (!r)
        return;
    for (int i = 0; r->message_text && i < r->n_messages; i++)
        free(r->message_text[i]);
    free(r->message_text);
    free(r->messages);
    free(r->tokens);
    free(r->logit_bias);
    free(r->json_schema);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

const char *slm_srv_finish_name(slm_finish_reason f)
{
    switch (f) {
    case SLM_FINISH_STOP: return "stop";
    case SLM_FINISH_LENGTH: return "length";
    case SLM_FINISH_CANCELLED: return "cancelled";
    default: return "error";
    }
}

/* ---- response builders -------------------------------------------------- */

/* Length of a valid UTF-8 sequence starting at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    unsigned cp = c & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string of text, bad UTF-8 bytes replaced by U+FFFD. */
static json_t *text_value(const char *text, size_t len)
{
    json_t *v = json_stringn(text ? text : "", text ? len : 0);
    if (v)
        return v;
    char *fixed = malloc(len * 3 + 1);
    if (!fixed)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq((const unsigned char *)text + i, len - i);
        if (k == 0) {
            memcpy(fixed + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(fixed + o, text + i, k);
            o += k;
            i += k;
        }
    }
    v = json_stringn(fixed, o);
    free(fixed);
    return v;
}

static json_t *usage_obj(int prompt_tokens, int completion_tokens)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", prompt_tokens, "completion_tokens",
                     completion_tokens, "total_tokens", prompt_tokens + completion_tokens);
}

static json_t *envelope(const slm_srv_reply *r, bool chunk)
{
    const char *object = r->rq->chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                     : "text_completion";
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", r->id, "object", object, "created",
                     (json_int_t)r->created, "model", r->model, "system_fingerprint",
                     "slm-" SLM_VERSION);
}

/* Serializes and frees o (NULL in, NULL out). */
static char *finish_json(json_t *o)
{
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

char *slm_srv_usage_chunk_json(const slm_srv_reply *r, int prompt_tokens, int completion_tokens)
{
    json_t *o = envelope(r, true);
    if (!o || json_object_set_new(o, "choices", json_array()) ||
        json_object_set_new(o, "usage", usage_obj(prompt_tokens, completion_tokens))) {
        json_decref(o);
        return NULL;
    }
    return finish_json(o);
}

char *slm_srv_error_json(const slm_srv_error *e)
{
    json_t *err = json_object();
    if (!err)
        return NULL;
    json_object_set_new(err, "message", text_value(e->message, strlen(e->message)));
    json_object_set_new(err, "type", json_string(e->type ? e->type : "server_error"));
    json_object_set_new(err, "param", e->param ? json_string(e->param) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    return finish_json(json_pack("{s:o}", "error", err));
}

/* ---- server-sent events ------------------------------------------------- */

int slm_srv_buf_append(slm_srv_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int slm_srv_sse_event(slm_srv_buf *b, const char *json)
{
    size_t n = strlen(json), old = b->len;
    if (slm_srv_buf_append(b, "data: ", 6) || slm_srv_buf_append(b, json, n) ||
        slm_srv_buf_append(b, "\n\n", 2)) {
        b->len = old;
        if (b->data)
            b->data[old] = 0;
        return -1;
    }
    return 0;
}

int slm_srv_sse_done(slm_srv_buf *b)
{
    return slm_srv_buf_append(b, "data: [DONE]\n\n", 14);
}

void slm_srv_buf_free(slm_srv_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- choices: collecting them and their JSON ------------------------------- */

int slm_srv_choices_init(slm_srv_choices *cs, int n)
{
    memset(cs, 0, sizeof *cs);
    cs->c = calloc((size_t)(n > 0 ? n : 1), sizeof *cs->c);
    if (!cs->c)
        return -1;
    cs->n = n;
    return 0;
}

void slm_srv_choices_free(slm_srv_choices *cs)
{
    for (int i = 0; cs->c && i < cs->n; i++) {
        slm_srv_buf_free(&cs->c[i].text);
        free(cs->c[i].lp);
    }
    free(cs->c);
    memset(cs, 0, sizeof *cs);
}

static int lp_append(slm_srv_choice *c, const slm_token_logprobs *lp, size_t n)
{
    if (c->n_lp + n > c->cap_lp) {
        size_t cap = c->cap_lp ? c->cap_lp : 16;
        while (cap < c->n_lp + n)
            cap *= 2;
        slm_token_logprobs *p = realloc(c->lp, cap * sizeof *p);
        if (!p)
            return -1;
        c->lp = p;
        c->cap_lp = cap;
    }
    memcpy(c->lp + c->n_lp, lp, n * sizeof *lp);
    c->n_lp += n;
    return 0;
}

int slm_srv_choices_add(slm_srv_choices *cs, const slm_choice_event *ev)
{
    if (ev->choice < 0 || ev->choice >= cs->n)
        return -1;
    slm_srv_choice *c = &cs->c[ev->choice];
    int rc = 0;
    if (ev->len && slm_srv_buf_append(&c->text, ev->text, ev->len))
        rc = -1;
    if (ev->n_tokens > 0 && lp_append(c, ev->tokens, (size_t)ev->n_tokens))
        rc = -1;
    if (ev->done) {
        c->done = true;
        c->finish = ev->done->finish;
    }
    cs->dirty = true;
    return rc;
}

int slm_srv_choices_move(slm_srv_choices *from, slm_srv_choices *to)
{
    for (int i = 0; i < from->n && i < to->n; i++) {
        slm_srv_choice *f = &from->c[i], *t = &to->c[i];
        size_t old_len = t->text.len, old_lp = t->n_lp;
        if ((f->text.len && slm_srv_buf_append(&t->text, f->text.data, f->text.len)) ||
            (f->n_lp && lp_append(t, f->lp, f->n_lp))) {
            t->text.len = old_len; /* undo this choice; earlier ones moved */
            t->n_lp = old_lp;
            return -1;
        }
        f->text.len = 0;
        f->n_lp = 0;
        t->done = f->done;
        t->finish = f->finish;
    }
    from->dirty = false;
    return 0;
}

/* A token's bytes, "" without a vocabulary. */
static const char *piece_of(const slm_srv_reply *r, int32_t tok, size_t *len)
{
    const char *p = r->vocab && r->vocab->piece ? r->vocab->piece(r->vocab->ctx, tok, len) : NULL;
    if (!p)
        *len = 0;
    return p ? p : "";
}

/* OpenAI reports a banned token's -inf as -9999. */
static json_t *lp_number(float lp) { return json_real(isfinite(lp) ? (double)lp : -9999.0); }

static json_t *bytes_array(const char *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

/* {"token","logprob","bytes"} of one chat entry (and its top list). */
static json_t *chat_entry(const slm_srv_reply *r, slm_logprob x, const slm_token_logprobs *top)
{
    size_t n;
    const char *p = piece_of(r, x.token, &n);
    json_t *o = json_pack("{s:o, s:o, s:o}", "token", text_value(p, n), "logprob",
                          lp_number(x.logprob), "bytes", bytes_array(p, n));
    if (o && top) {
        json_t *a = json_array();
        for (int i = 0; a && i < top->n_top; i++)
            json_array_append_new(a, chat_entry(r, top->top[i], NULL));
        json_object_set_new(o, "top_logprobs", a);
    }
    return o;
}

/* chat: {"content":[entries], "refusal": null}. */
static json_t *chat_logprobs(const slm_srv_reply *r, const slm_token_logprobs *lp, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, chat_entry(r, lp[i].sampled, &lp[i]));
    return json_pack("{s:o, s:n}", "content", a, "refusal");
}

/* completions: parallel arrays; text_offset counts token bytes from
 * *offset on (advanced past these tokens). */
static json_t *completion_logprobs(const slm_srv_reply *r, const slm_token_logprobs *lp,
                                   size_t n, size_t *offset)
{
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (size_t i = 0; toks && lps && tops && offs && i < n; i++) {
        size_t len;
        const char *p = piece_of(r, lp[i].sampled.token, &len);
        json_array_append_new(toks, text_value(p, len));
        json_array_append_new(lps, lp_number(lp[i].sampled.logprob));
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += len;
        json_t *t = json_object();
        for (int k = 0; t && k < lp[i].n_top; k++) {
            size_t tl;
            const char *tp = piece_of(r, lp[i].top[k].token, &tl);
            json_t *key = text_value(tp, tl);
            if (key && !json_object_get(t, json_string_value(key))) /* first is likeliest */
                json_object_set_new(t, json_string_value(key), lp_number(lp[i].top[k].logprob));
            json_decref(key);
        }
        json_array_append_new(tops, t);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offs);
}

/* The logprobs value of a choice or chunk: null unless asked for. */
static json_t *logprobs_value(const slm_srv_reply *r, const slm_srv_choice *c, size_t *offset)
{
    if (!r->rq->logprobs)
        return json_null();
    return r->rq->chat ? chat_logprobs(r, c->lp, c->n_lp)
                       : completion_logprobs(r, c->lp, c->n_lp, offset);
}

/* The prompt completions echo ("" unless echo). */
static const char *echo_text(const slm_srv_reply *r, size_t *len)
{
    const char *p = r->rq->echo && r->rq->prompt ? r->rq->prompt : "";
    *len = strlen(p);
    return p;
}

static json_t *whole_choice(const slm_srv_reply *r, int i, const slm_srv_choice *c)
{
    const char *fin = slm_srv_finish_name(c->finish);
    if (r->rq->chat)
        return json_pack("{s:i, s:{s:s, s:o}, s:o, s:s}", "index", i, "message", "role",
                         "assistant", "content", text_value(c->text.data, c->text.len),
                         "logprobs", logprobs_value(r, c, NULL), "finish_reason", fin);
    size_t elen, offset;
    const char *echo = echo_text(r, &elen);
    offset = elen;
    slm_srv_buf t = {0};
    if (slm_srv_buf_append(&t, echo, elen) ||
        (c->text.len && slm_srv_buf_append(&t, c->text.data, c->text.len))) {
        slm_srv_buf_free(&t);
        return NULL;
    }
    json_t *o = json_pack("{s:i, s:o, s:o, s:s}", "index", i, "text", text_value(t.data, t.len),
                          "logprobs", logprobs_value(r, c, &offset), "finish_reason", fin);
    slm_srv_buf_free(&t);
    return o;
}

char *slm_srv_choices_response_json(const slm_srv_reply *r, const slm_srv_choices *cs,
                                    int prompt_tokens, int completion_tokens)
{
    json_t *o = envelope(r, false), *a = json_array();
    if (!o || !a) {
        json_decref(o), json_decref(a);
        return NULL;
    }
    for (int i = 0; i < cs->n; i++) {
        json_t *c = whole_choice(r, i, &cs->c[i]);
        if (!c || json_array_append_new(a, c)) {
            json_decref(o), json_decref(a);
            return NULL;
        }
    }
    if (json_object_set_new(o, "choices", a) ||
        json_object_set_new(o, "usage", usage_obj(prompt_tokens, completion_tokens))) {
        json_decref(o);
        return NULL;
    }
    return finish_json(o);
}

char *slm_srv_chunk_json(const slm_srv_reply *r, int i, const char *text, size_t len,
                         const slm_srv_choice *lp, bool role, const char *finish)
{
    json_t *o = envelope(r, true), *choice;
    if (!o)
        return NULL;
    json_t *fin = finish ? json_string(finish) : json_null();
    size_t offset = lp ? lp->offset : 0;
    json_t *lpv = lp ? logprobs_value(r, lp, &offset) : json_null();
    if (r->rq->chat) {
        json_t *delta = json_object();
        if (delta && role)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (delta && (!finish || len) && !role)
            json_object_set_new(delta, "content", text_value(text, len));
        if (delta && role)
            json_object_set_new(delta, "content", json_string(""));
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", i, "delta", delta, "logprobs", lpv,
                           "finish_reason", fin);
    } else {
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", i, "text", text_value(text, len),
                           "logprobs", lpv, "finish_reason", fin);
    }
    if (!choice || json_object_set_new(o, "choices", json_pack("[o]", choice)) ||
        (r->rq->include_usage && json_object_set_new(o, "usage", json_null()))) {
        json_decref(o);
        return NULL;
    }
    return finish_json(o);
}

static int add_event(slm_srv_buf *out, char *json)
{
    int rc = json ? slm_srv_sse_event(out, json) : -1;
    free(json);
    return rc;
}

/* The stream's opening: a role chunk per chat choice; the echoed prompt
 * per completions choice (its bytes count for text_offset). */
static int start_events(const slm_srv_reply *r, slm_srv_choices *cs, slm_srv_buf *out)
{
    size_t elen;
    const char *echo = echo_text(r, &elen);
    for (int i = 0; i < cs->n; i++) {
        cs->c[i].offset = elen;
        if (r->rq->chat && add_event(out, slm_srv_chunk_json(r, i, "", 0, NULL, true, NULL)))
            return -1;
        if (!r->rq->chat && elen &&
            add_event(out, slm_srv_chunk_json(r, i, echo, elen, NULL, false, NULL)))
            return -1;
    }
    return 0;
}

int slm_srv_choice_events(const slm_srv_reply *r, slm_srv_choices *cs, bool start,
                          slm_srv_buf *out)
{
    if (start && start_events(r, cs, out))
        return -1;
    for (int i = 0; i < cs->n; i++) {
        slm_srv_choice *c = &cs->c[i];
        bool lp = r->rq->logprobs && c->n_lp;
        if (c->text.len || lp) {
            if (add_event(out, slm_srv_chunk_json(r, i, c->text.data ? c->text.data : "",
                                                  c->text.len, lp ? c : NULL, false, NULL)))
                return -1;
            for (size_t k = 0; k < c->n_lp; k++) { /* text_offset runs on */
                size_t len;
                piece_of(r, c->lp[k].sampled.token, &len);
                c->offset += len;
            }
        }
        c->text.len = 0;
        c->n_lp = 0;
    }
    for (int i = 0; i < cs->n; i++) {
        slm_srv_choice *c = &cs->c[i];
        if (c->done && !c->finish_sent) {
            if (add_event(out, slm_srv_chunk_json(r, i, "", 0, NULL, false,
                                            slm_srv_finish_name(c->finish))))
                return -1;
            c->finish_sent = true;
        }
    }
    return 0;
}
