/*
 * server_embed.c — see server_embed.h. The request is parsed into an array
 * of slm_embed_params pointing into the JSON (texts) or into owned token
 * arrays; the engine embeds them all in one slm_engine_embed call, which
 * keeps them queued together so they share steps; the response is built
 * with jansson. The in-flight count covers the call, so a graceful drain
 * waits for it like it waits for generations.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "server_embed.h"

#define BAD 400
#define INVALID "invalid_request_error"

typedef struct embed_request {
    json_t *root;
    slm_embed_params *in;
    int32_t **tokens; /* [n] owned token arrays (NULL for text inputs) */
    int n;
    bool base64;
    slm_pooling pooling;
} embed_request;

static void request_free(embed_request *r)
{
    for (int i = 0; r->tokens && i < r->n; i++)
        free(r->tokens[i]);
    free(r->tokens);
    free(r->in);
    json_decref(r->root);
}

/* Token ids of a JSON array (every item an integer; the engine checks the
 * vocabulary). what names the array in messages: "input", "input[2]". */
static int token_array(json_t *a, const char *what, int32_t **out, int *n, slm_srv_error *e)
{
    size_t len = json_array_size(a);
    if (len == 0)
        return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_value",
                                 "%s is an empty list of tokens", what);
    if (len > (1u << 24))
        return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_value",
                                 "%s has %zu tokens, too many", what, len);
    *out = malloc(len * sizeof **out);
    if (!*out)
        return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t k = 0; k < len; k++) {
        json_t *t = json_array_get(a, k);
        json_int_t v = json_is_integer(t) ? json_integer_value(t) : -1;
        if (!json_is_integer(t) || v < 0 || v > INT32_MAX)
            return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_value",
                                     "%s[%zu] is not a token id (a non-negative integer)",
                                     what, k);
        (*out)[k] = (int32_t)v;
    }
    *n = (int)len;
    return 0;
}

/* One input of the request: a string or a token-id array. */
static int one_input(embed_request *r, int i, json_t *v, const char *what, slm_srv_error *e)
{
    slm_embed_params_default(&r->in[i]);
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_value",
                                     "%s is an empty string", what);
        if (strlen(json_string_value(v)) != json_string_length(v))
            return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_value",
                                     "%s holds a NUL character", what);
        r->in[i].text = json_string_value(v);
        return 0;
    }
    if (json_is_array(v)) {
        if (token_array(v, what, &r->tokens[i], &r->in[i].n_tokens, e))
            return -1;
        r->in[i].tokens = r->tokens[i];
        return 0;
    }
    return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_type",
                             "%s must be a string or an array of token ids", what);
}

/* "input": one string, one token array, or an array of either. */
static int parse_input(embed_request *r, slm_srv_error *e)
{
    json_t *input = json_object_get(r->root, "input");
    if (!input || json_is_null(input))
        return slm_srv_error_set(e, BAD, INVALID, "input", "missing_required_parameter",
                                 "'input' is required");
    /* A flat array of integers is one input; any other array is a list. */
    bool list = json_is_array(input) && json_array_size(input) > 0 &&
                !json_is_integer(json_array_get(input, 0));
    size_t n = list ? json_array_size(input) : 1;
    if (json_is_array(input) && json_array_size(input) == 0)
        return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_value",
                                 "'input' is an empty array");
    if (n > SLM_SRV_MAX_EMBED_INPUTS)
        return slm_srv_error_set(e, BAD, INVALID, "input", "invalid_value",
                                 "'input' has %zu items; at most %d per request", n,
                                 SLM_SRV_MAX_EMBED_INPUTS);
    r->in = calloc(n, sizeof *r->in);
    r->tokens = calloc(n, sizeof *r->tokens);
    if (!r->in || !r->tokens)
        return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    r->n = (int)n;
    if (!list)
        return one_input(r, 0, input, "'input'", e);
    for (size_t i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "input[%zu]", i);
        if (one_input(r, (int)i, json_array_get(input, i), what, e))
            return -1;
    }
    return 0;
}

/* encoding_format, dimensions, pooling; any field slm does not know. */
static int parse_options(const slm_srv *s, embed_request *r, int n_embd, slm_srv_error *e)
{
    static const char *const known[] = {"input", "model", "encoding_format", "dimensions",
                                        "user", "pooling"};
    const char *key;
    json_t *v;
    json_object_foreach(r->root, key, v) {
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(key, known[k]))
            k++;
        if (k == sizeof known / sizeof known[0])
            /* NOTE: param must outlive the JSON (it points at constants),
             * so the field is named in the message, as OpenAI does. */
            return slm_srv_error_set(e, BAD, INVALID, NULL, "unsupported_parameter",
                                     "unrecognized request argument '%.100s' (the embeddings "
                                     "of slm take input, model, encoding_format, dimensions, "
                                     "user and pooling)", key);
    }
    const char *model;
    if (slm_srv_parse_model(r->root, &s->names, &model, e))
        return -1;
    json_t *f = json_object_get(r->root, "encoding_format");
    if (f && !json_is_null(f)) {
        const char *fs = json_is_string(f) ? json_string_value(f) : "";
        if (strcmp(fs, "float") && strcmp(fs, "base64"))
            return slm_srv_error_set(e, BAD, INVALID, "encoding_format", "invalid_value",
                                     "'encoding_format' must be \"float\" or \"base64\"");
        r->base64 = !strcmp(fs, "base64");
    }
    json_t *d = json_object_get(r->root, "dimensions");
    if (d && !json_is_null(d) && (!json_is_integer(d) || json_integer_value(d) != n_embd))
        return slm_srv_error_set(e, BAD, INVALID, "dimensions", "invalid_value",
                                 "this model's embeddings have %d dimensions; 'dimensions' may "
                                 "only be %d (slm does not shorten them)", n_embd, n_embd);
    json_t *p = json_object_get(r->root, "pooling");
    r->pooling = SLM_POOLING_MODEL;
    if (p && !json_is_null(p)) {
        const char *ps = json_is_string(p) ? json_string_value(p) : "";
        if (!strcmp(ps, "mean"))
            r->pooling = SLM_POOLING_MEAN;
        else if (!strcmp(ps, "last"))
            r->pooling = SLM_POOLING_LAST;
        else if (!strcmp(ps, "cls"))
            r->pooling = SLM_POOLING_CLS;
        else
            return slm_srv_error_set(e, BAD, INVALID, "pooling", "invalid_value",
                                     "'pooling' must be \"mean\", \"last\" or \"cls\"");
    }
    return 0;
}

static int parse(const slm_srv *s, const char *body, size_t len, int n_embd, embed_request *r,
                 slm_srv_error *e)
{
    json_error_t jerr;
    r->root = json_loadb(body ? body : "", len, 0, &jerr);
    if (!r->root)
        return slm_srv_error_set(e, BAD, INVALID, NULL, "invalid_json",
                                 "the body is not valid JSON: %s (line %d, column %d)",
                                 jerr.text, jerr.line, jerr.column);
    if (!json_is_object(r->root))
        return slm_srv_error_set(e, BAD, INVALID, NULL, "invalid_json",
                                 "the body must be a JSON object");
    /* Options first: an unknown field is named even when the input is bad. */
    if (parse_options(s, r, n_embd, e) || parse_input(r, e))
        return -1;
    for (int i = 0; i < r->n; i++)
        r->in[i].pooling = r->pooling;
    return 0;
}

/* Standard base64 of n bytes (RFC 4648, padded); malloc'd. */
static char *base64(const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* One item of "data". NOTE: base64 carries the floats' bytes as they are
 * in memory, which is little-endian on every machine slm runs on. */
static json_t *item(const float *v, int d, int index, bool b64)
{
    json_t *emb;
    if (b64) {
        char *t = base64((const unsigned char *)v, (size_t)d * sizeof *v);
        emb = t ? json_string(t) : NULL;
        free(t);
    } else {
        emb = json_array();
        for (int j = 0; emb && j < d; j++)
            json_array_append_new(emb, json_real(v[j]));
    }
    return json_pack("{s:s, s:i, s:o*}", "object", "embedding", "index", index, "embedding",
                     emb);
}

static char *response(const slm_srv *s, const embed_request *r, const float *out, int d,
                      int tokens)
{
    json_t *data = json_array();
    for (int i = 0; data && i < r->n; i++)
        if (json_array_append_new(data, item(out + (size_t)i * d, d, i, r->base64))) {
            json_decref(data);
            data = NULL;
        }
    json_t *o = json_pack("{s:s, s:o*, s:s, s:{s:i, s:i}}", "object", "list", "data", data,
                          "model", s->model_id, "usage", "prompt_tokens", tokens,
                          "total_tokens", tokens);
    /* %.9g-style reals: a float32 printed so it reads back exactly. */
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    return text;
}

/* The engine's refusal or failure as an HTTP error. */
static int engine_error(slm_status st, slm_srv_error *e)
{
    const char *msg = slm_last_error();
    if (st == SLM_STATUS_QUEUE_FULL)
        return slm_srv_error_set(e, 503, "server_error", NULL, "queue_full",
                                 "the server is busy (%s); retry shortly", msg);
    if (st == SLM_STATUS_CANCELLED)
        return slm_srv_error_set(e, 503, "server_error", NULL, "draining", "%s", msg);
    if (st == SLM_STATUS_INVALID_ARGUMENT || st == SLM_STATUS_UNSUPPORTED)
        return slm_srv_error_set(e, BAD, INVALID, "input",
                                 strstr(msg, "context") ? "context_length_exceeded"
                                                        : "invalid_value", "%s", msg);
    return slm_srv_error_set(e, 500, "server_error", NULL, NULL, "embedding failed: %s", msg);
}

int slm_srv_embeddings(slm_srv *s, const char *body, size_t len, char **json,
                       slm_srv_error *err)
{
    *json = NULL;
    slm_model_info info = {.size = sizeof info};
    if (slm_model_get_info(s->model, &info) != SLM_OK) {
        slm_srv_error_set(err, 500, "server_error", NULL, NULL, "%s", slm_last_error());
        return err->status;
    }
    embed_request r = {0};
    float *out = NULL;
    int tokens = 0;
    if (parse(s, body, len, info.n_embd, &r, err))
        goto done;
    out = malloc((size_t)r.n * (size_t)info.n_embd * sizeof *out);
    if (!out) {
        slm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    atomic_fetch_add(&s->in_flight, 1);
    slm_status st = slm_engine_embed(s->engine, r.in, r.n, out, &tokens);
    atomic_fetch_sub(&s->in_flight, 1);
    if (st) {
        engine_error(st, err);
        goto done;
    }
    *json = response(s, &r, out, info.n_embd, tokens);
    if (!*json)
        slm_srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
done:
    free(out);
    request_free(&r);
    return *json ? 200 : err->status;
}
