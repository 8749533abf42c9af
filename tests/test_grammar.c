/*
 * test_grammar.c — structured output's grammar (runtime/grammar.c) and its
 * JSON Schema compiler (runtime/json_schema.c):
 *   - byte strings each schema must accept (whole, and then may end) or
 *     refuse (at some byte, or unfinished);
 *   - schemas that must not compile, with the keyword and place named;
 *   - the token trie's mask equals a brute-force check of every token, on
 *     fresh random vocabularies of ragged sizes, along random walks;
 *   - fresh random schemas: random walks through the mask always end in a
 *     complete text that jansson parses and a small validator of the
 *     supported keywords accepts;
 *   - the real vocabularies (the default model, Gemma 3) against brute
 *     force, with the time one mask takes printed (never asserted).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar.h"
#include "json_schema.h"
#include "testutil.h"
#include "tokenizer.h"

static slm_grammar *compile_ok(const char *schema)
{
    slm_grammar *g = NULL;
    slm_status st = slm_json_schema_compile(schema, strlen(schema), &g);
    if (st)
        fail_msg("schema %s: %s", schema, slm_last_error());
    return g;
}

/* Feeds text; true when every byte is taken and the value may then end. */
static bool accepts(const slm_grammar *g, const char *text)
{
    slm_grammar_state s;
    slm_grammar_state_init(&s, g);
    return slm_grammar_feed(&s, text, strlen(text)) && slm_grammar_can_end(&s);
}

typedef struct gcase {
    const char *schema;
    const char *yes[8];
    const char *no[12];
} gcase;

static const gcase cases[] = {
    {"{\"type\":\"object\"}",
     {"{}", "{\"a\":1}", "{\"a\": [1, 2.5e3, \"x\\u00e9\"], \"b\":{\"c\":null}}",
      "{\"k\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}", "{\"a\":-0.5E+12,\"b\":true}"},
     {"{ }", "[1]", "{\"a\":1,}", "{\"a\":01}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\x01\"}",
      "{\"a\":\"\xc3\x28\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":  1}", "{\"a\":1} ", "{\"a\\\\\":1}",
      "{\"a\":1"}},
    {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":5},"
     "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\","
     "\"bc\"]},\"minItems\":1,\"maxItems\":2}},\"required\":[\"name\",\"age\",\"tags\"],"
     "\"additionalProperties\":false}",
     {"{\"name\":\"bob\",\"age\":3,\"tags\":[\"a\"]}",
      "{\"name\": \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\", \"age\": -12, "
      "\"tags\": [\"bc\", \"a\"]}"},
     {"{\"age\":3}", "{\"name\":\"bobbie\",\"age\":3,\"tags\":[\"a\"]}",
      "{\"name\":\"b\",\"age\":3.5,\"tags\":[\"a\"]}", "{\"name\":\"b\",\"age\":3,\"tags\":[]}",
      "{\"name\":\"b\",\"age\":3,\"tags\":[\"a\",\"a\",\"a\"]}",
      "{\"age\":3,\"name\":\"b\",\"tags\":[\"a\"]}",
      "{\"name\":\"b\",\"age\":3,\"tags\":[\"a\"],\"x\":1}",
      "{\"name\":\"b\",\"age\":3,\"tags\":[\"b\"]}"}},
    {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"},{\"type\":\"null\"}]}",
     {"\"x\"", "12", "null", "-7"},
     {"true", "1.5", "nul", "\"x"}},
    {"{\"enum\":[1,12,\"a\"]}", {"1", "12", "\"a\""}, {"123", "2", "\"b\"", "1.0"}},
    {"{\"type\":\"number\"}", {"12", "0.25", "-3e-7"}, {"-", "1.", "00", ".5", "1e"}},
    {"{\"const\":{\"a\":[1,2]}}", {"{\"a\":[1,2]}"}, {"{\"a\":[1,2,3]}", "{\"a\": [1,2]}"}},
    {"{\"type\":[\"string\",\"null\"],\"minLength\":2,\"maxLength\":3}",
     {"\"ab\"", "\"abc\"", "null", "\"\\n\\t\""}, {"\"a\"", "\"abcd\"", "1"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
     "\"additionalProperties\":{\"type\":\"boolean\"}}",
     {"{\"a\":1,\"b\":true}", "{\"b\":false}", "{}", "{\"ab\":true}"},
     {"{\"a\":1,\"a\":true}", "{\"b\":1}", "{\"b\":true,\"a\":1}", "{\"a\":true}"}},
    {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
     "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},"
     "\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}",
     {"{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}"},
     {"{\"kids\":[]}", "{\"v\":1,\"kids\":[{}]}"}},
    {"{\"type\":\"object\",\"properties\":{\"q\\\"x\":{\"type\":\"boolean\"}},"
     "\"required\":[\"q\\\"x\"]}",
     {"{\"q\\\"x\":true}"}, {"{\"q\":true}", "{}"}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"maxItems\":0}", {"[]"}, {"[true]"}},
    {"true", {"[]", "{\"a\":[{}]}", "\"s\"", "false"}, {"", "tru"}},
    {"{\"oneOf\":[{\"const\":\"a\"},{\"enum\":[\"b\",\"c\"]},{\"type\":\"integer\"}]}",
     {"\"a\"", "\"c\"", "3"}, {"\"d\"", "1.5"}},
};

static void test_accepts_and_refuses(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        slm_grammar *g = compile_ok(cases[c].schema);
        for (int i = 0; i < 8 && cases[c].yes[i]; i++)
            if (!accepts(g, cases[c].yes[i]))
                fail_msg("schema %s refused %s", cases[c].schema, cases[c].yes[i]);
        for (int i = 0; i < 12 && cases[c].no[i]; i++)
            if (accepts(g, cases[c].no[i]))
                fail_msg("schema %s accepted %s", cases[c].schema, cases[c].no[i]);
        slm_grammar_free(g);
    }
}

/* A completed value allows nothing more: the end is all that remains. */
static void test_done_forces_end(void **state)
{
    (void)state;
    slm_grammar *g = compile_ok("{\"type\":\"object\"}");
    slm_grammar_state s;
    slm_grammar_state_init(&s, g);
    assert_false(slm_grammar_done(&s));
    assert_false(slm_grammar_can_end(&s));
    assert_true(slm_grammar_feed(&s, "{}", 2));
    assert_true(slm_grammar_done(&s));
    assert_true(slm_grammar_can_end(&s));
    slm_grammar_state t = s;
    assert_false(slm_grammar_step(&t, ' '));
    t = s;
    assert_false(slm_grammar_step(&t, '\n'));
    slm_grammar_free(g);
}

typedef struct bad {
    const char *schema;
    const char *words[3]; /* the message must hold each */
} bad;

static const bad bads[] = {
    {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":\"^a\"}}}",
     {"'pattern'", "#/properties/name"}},
    {"{\"type\":\"string\",\"format\":\"date\"}", {"'format'", "#"}},
    {"{\"anyOf\":[{\"type\":\"object\"},{\"type\":\"object\",\"properties\":{\"a\":true}}]}",
     {"#/anyOf", "'{'"}},
    {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", {"#/oneOf"}},
    {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", {"'minItems'", "'maxItems'"}},
    {"{\"type\":\"strin\"}", {"'strin'"}},
    {"{\"$ref\":\"#/$defs/missing\"}", {"#/$defs/missing"}},
    {"{\"$ref\":\"https://example.com/s.json\"}", {"https://example.com/s.json"}},
    {"{\"properties\":{\"a\":false}}", {"#/properties/a", "false"}},
    {"{\"type\":\"object\",\"required\":[\"x\"],\"properties\":{\"a\":true},"
     "\"additionalProperties\":false}", {"'x'"}},
    {"{\"type\":\"object\"", {"not valid JSON"}},
    {"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", {"refers back"}},
    {"{\"type\":\"integer\",\"minimum\":0}", {"'minimum'"}},
    {"{\"type\":\"string\",\"maxLength\":-1}", {"'maxLength'"}},
    {"{\"oneOf\":[{\"const\":\"a\"},{\"enum\":[\"b\",\"a\"]}]}", {"'oneOf'", "same value"}},
};

static void test_refuses_schemas(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        slm_grammar *g = NULL;
        slm_status st = slm_json_schema_compile(bads[i].schema, strlen(bads[i].schema), &g);
        if (st != SLM_STATUS_INVALID_ARGUMENT)
            fail_msg("schema %s: status %d, not INVALID_ARGUMENT", bads[i].schema, (int)st);
        assert_null(g);
        const char *msg = slm_last_error();
        for (int k = 0; k < 3 && bads[i].words[k]; k++)
            if (!strstr(msg, bads[i].words[k]))
                fail_msg("schema %s: message \"%s\" does not name %s", bads[i].schema, msg,
                         bads[i].words[k]);
    }
    /* Nesting is bounded: a request's schema must not exhaust the stack. */
    char deep[2048] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "{\"items\":");
    strcat(deep, "true");
    for (int i = 0; i < 100; i++)
        strcat(deep, "}");
    assert_int_equal(slm_json_schema_check(deep), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "nested more than 64"));
    assert_int_equal(slm_json_schema_check("{\"type\":\"object\"}"), SLM_OK);
    assert_int_equal(slm_json_schema_check("{\"type\":\"object\",\"maxProperties\":2}"),
                     SLM_STATUS_INVALID_ARGUMENT);
}

/* ---- vocabularies ------------------------------------------------------ */

typedef struct vocab {
    int n;
    char **pieces;
    size_t *lens;
    uint8_t *kind;
} vocab;

/* Every single byte, then random pieces over JSON-ish bytes (and some
 * random bytes, so pieces end inside UTF-8 characters), some repeated, a
 * few end tokens and a few tokens that are never allowed. */
static vocab vocab_random(int n)
{
    static const char alpha[] = "{}[]\":, abcnulltruefalse0123456789-.eE\\u\xc3\xa9\xe2\x82\xac";
    vocab v = {n, calloc((size_t)n, sizeof(char *)), calloc((size_t)n, sizeof(size_t)),
               calloc((size_t)n, 1)};
    for (int i = 0; i < n; i++) {
        size_t len = i < 256 ? 1 : (size_t)tu_int(0, 7);
        v.pieces[i] = malloc(len + 1);
        for (size_t k = 0; k < len; k++)
            v.pieces[i][k] = i < 256 ? (char)i
                             : tu_int(0, 9) == 0 ? (char)tu_int(0, 255)
                                                 : alpha[tu_int(0, (int)sizeof alpha - 2)];
        if (i > 256 && tu_int(0, 20) == 0) { /* same bytes as another token */
            int o = tu_int(256, i - 1);
            free(v.pieces[i]);
            v.pieces[i] = malloc(v.lens[o] + 1);
            memcpy(v.pieces[i], v.pieces[o], v.lens[o]);
            len = v.lens[o];
        }
        v.lens[i] = len;
        v.kind[i] = i == 256 || (i > 256 && tu_int(0, 60) == 0) ? SLM_TRIE_END
                    : i >= 256 && tu_int(0, 60) == 0 ? SLM_TRIE_NEVER
                                                     : SLM_TRIE_TEXT;
    }
    return v;
}

static void vocab_free(vocab *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->pieces[i]);
    free(v->pieces);
    free(v->lens);
    free(v->kind);
}

static slm_token_trie *vocab_trie(const vocab *v)
{
    slm_token_trie *t;
    assert_int_equal(slm_token_trie_create(v->n, (const char *const *)v->pieces, v->lens, v->kind,
                                           &t),
                     SLM_OK);
    return t;
}

/* The mask by trying every token's bytes on a copy of the state. */
static int brute_mask(int n, const char *const *pieces, const size_t *lens, const uint8_t *kind,
                      const slm_grammar_state *s, uint8_t *allowed)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        slm_grammar_state t = *s;
        allowed[i] = kind[i] == SLM_TRIE_END    ? slm_grammar_can_end(s)
                     : kind[i] == SLM_TRIE_NEVER ? 0
                                                 : lens[i] > 0 &&
                                                       slm_grammar_feed(&t, pieces[i], lens[i]);
        count += allowed[i];
    }
    return count;
}

/* Walks the grammar by random allowed tokens until an end token is drawn
 * (or max_steps), checking each mask against brute force. Writes the text;
 * returns true when it ended with the value complete. */
static bool walk(const slm_grammar *g, const vocab *v, const slm_token_trie *t, int max_steps,
                 char *text, size_t cap)
{
    slm_grammar_state s, *scratch = malloc((size_t)slm_token_trie_scratch(t) * sizeof *scratch);
    uint8_t *mask = malloc((size_t)v->n), *ref = malloc((size_t)v->n);
    int *ids = malloc((size_t)v->n * sizeof *ids);
    size_t len = 0;
    bool ended = false;
    slm_grammar_state_init(&s, g);
    for (int step = 0; step < max_steps && !ended; step++) {
        int n = slm_token_trie_mask(t, &s, scratch, mask);
        int nb = brute_mask(v->n, (const char *const *)v->pieces, v->lens, v->kind, &s, ref);
        assert_int_equal(n, nb);
        for (int i = 0; i < v->n; i++)
            if (mask[i] != ref[i])
                fail_msg("token %d (%.*s): mask %d, brute force %d after \"%.*s\"", i,
                         (int)v->lens[i], v->pieces[i], mask[i], ref[i], (int)len, text);
        if (n == 0)
            fail_msg("no token allowed after \"%.*s\"", (int)len, text);
        int m = 0;
        for (int i = 0; i < v->n; i++)
            if (mask[i])
                ids[m++] = i;
        int pick = ids[tu_int(0, m - 1)];
        if (v->kind[pick] == SLM_TRIE_END) {
            ended = true;
            break;
        }
        assert_true(slm_grammar_feed(&s, v->pieces[pick], v->lens[pick]));
        assert_true(len + v->lens[pick] < cap);
        memcpy(text + len, v->pieces[pick], v->lens[pick]);
        len += v->lens[pick];
    }
    text[len] = 0;
    if (ended)
        assert_true(slm_grammar_can_end(&s));
    free(scratch);
    free(mask);
    free(ref);
    free(ids);
    return ended;
}

/* ---- a validator of the supported keywords ------------------------------ */

static bool valid(json_t *v, json_t *schema, json_t *doc);

static bool valid_type(json_t *v, const char *t)
{
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    return json_is_null(v);
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static bool valid_object(json_t *v, json_t *schema, json_t *doc)
{
    json_t *props = json_object_get(schema, "properties");
    json_t *req = json_object_get(schema, "required");
    json_t *ap = json_object_get(schema, "additionalProperties");
    size_t i;
    json_t *x;
    json_array_foreach(req, i, x) if (!json_object_get(v, json_string_value(x))) return false;
    const char *k;
    json_object_foreach(v, k, x) {
        json_t *ps = props ? json_object_get(props, k) : NULL;
        if (ps ? !valid(x, ps, doc) : (json_is_false(ap) || (ap && !valid(x, ap, doc))))
            return false;
    }
    return true;
}

static bool valid(json_t *v, json_t *schema, json_t *doc)
{
    if (json_is_boolean(schema))
        return json_is_true(schema);
    json_t *x, *t = json_object_get(schema, "$ref");
    if (t)
        return valid(v, json_object_get(json_object_get(doc, "$defs"),
                                        json_string_value(t) + strlen("#/$defs/")), doc);
    size_t i;
    if ((t = json_object_get(schema, "anyOf"))) {
        json_array_foreach(t, i, x) if (valid(v, x, doc)) return true;
        return false;
    }
    if ((t = json_object_get(schema, "enum"))) {
        json_array_foreach(t, i, x) if (json_equal(v, x)) return true;
        return false;
    }
    if ((t = json_object_get(schema, "type"))) {
        bool ok = false;
        if (json_is_string(t))
            ok = valid_type(v, json_string_value(t));
        json_array_foreach(t, i, x) ok |= valid_type(v, json_string_value(x));
        if (!ok)
            return false;
    }
    if (json_is_string(v)) {
        size_t n = utf8_chars(json_string_value(v), json_string_length(v));
        if ((x = json_object_get(schema, "maxLength")) && n > (size_t)json_integer_value(x))
            return false;
        if ((x = json_object_get(schema, "minLength")) && n < (size_t)json_integer_value(x))
            return false;
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if ((x = json_object_get(schema, "maxItems")) && n > (size_t)json_integer_value(x))
            return false;
        if ((x = json_object_get(schema, "minItems")) && n < (size_t)json_integer_value(x))
            return false;
        json_t *items = json_object_get(schema, "items");
        json_array_foreach(v, i, x) if (items && !valid(x, items, doc)) return false;
    }
    return !json_is_object(v) || valid_object(v, schema, doc);
}

/* ---- random schemas ------------------------------------------------------ */

static json_t *random_schema(int depth);

static json_t *random_object(int depth)
{
    json_t *s = json_pack("{s:s}", "type", "object"), *props = json_object(),
           *req = json_array();
    int n = tu_int(0, 4);
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, i % 2 ? "k%d" : "key%d", tu_int(0, 5)); /* prefixes, repeats */
        if (json_object_get(props, name))
            continue;
        json_object_set_new(props, name, random_schema(depth + 1));
        if (tu_int(0, 1))
            json_array_append_new(req, json_string(name));
    }
    json_object_set_new(s, "properties", props);
    json_object_set_new(s, "required", req);
    int ap = tu_int(0, 3);
    if (ap == 1)
        json_object_set_new(s, "additionalProperties", json_false());
    else if (ap == 2)
        json_object_set_new(s, "additionalProperties",
                            json_pack("{s:s,s:i}", "type", "string", "maxLength", 3));
    return s;
}

/* Schemas whose every string and array is bounded, so random walks end. */
static json_t *random_schema(int depth)
{
    int kind = tu_int(0, depth >= 3 ? 4 : 7);
    switch (kind) {
    case 0: {
        int lo = tu_int(0, 3);
        return json_pack("{s:s,s:i,s:i}", "type", "string", "minLength", lo, "maxLength",
                         lo + tu_int(0, 6));
    }
    case 1: return json_pack("{s:s}", "type", tu_int(0, 1) ? "integer" : "number");
    case 2: return json_pack("{s:[s,s,i,b,n]}", "enum", "red", "re\"d", 12, 1, 0);
    case 3: return json_pack("{s:s}", "type", tu_int(0, 1) ? "boolean" : "null");
    case 4:
        return json_pack("{s:[{s:s,s:i},{s:s},{s:s}]}", "anyOf", "type", "string", "maxLength", 4,
                         "type", "integer", "type", "null");
    case 5:
    case 6: return random_object(depth);
    default: {
        int lo = tu_int(0, 2);
        return json_pack("{s:s,s:o,s:i,s:i}", "type", "array", "items", random_schema(depth + 1),
                         "minItems", lo, "maxItems", lo + tu_int(0, 2));
    }
    }
}

static void test_mask_matches_brute_force(void **state)
{
    (void)state;
    const char *schemas[] = {
        "{\"type\":\"object\"}",
        cases[1].schema,
        cases[7].schema,
        cases[8].schema,
        "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":4},\"maxItems\":3}",
    };
    for (int round = 0; round < 6; round++) {
        vocab v = vocab_random(tu_int(257, 900));
        slm_token_trie *t = vocab_trie(&v);
        for (size_t k = 0; k < sizeof schemas / sizeof schemas[0]; k++) {
            slm_grammar *g = compile_ok(schemas[k]);
            char text[8192];
            walk(g, &v, t, 150, text, sizeof text);
            slm_grammar_free(g);
        }
        slm_token_trie_free(t);
        vocab_free(&v);
    }
}

static void test_random_schemas_validate(void **state)
{
    (void)state;
    int complete = 0, total = 0;
    for (int round = 0; round < 5; round++) {
        vocab v = vocab_random(tu_int(300, 700));
        slm_token_trie *t = vocab_trie(&v);
        for (int k = 0; k < 12; k++) {
            json_t *schema = random_schema(0);
            char *text = json_dumps(schema, JSON_COMPACT);
            slm_grammar *g = compile_ok(text);
            for (int w = 0; w < 3; w++) {
                char out[16384];
                total++;
                if (!walk(g, &v, t, 600, out, sizeof out))
                    continue;
                complete++;
                json_error_t err;
                json_t *val = json_loads(out, JSON_DECODE_ANY, &err);
                if (!val)
                    fail_msg("schema %s: output %s is not JSON: %s", text, out, err.text);
                if (!valid(val, schema, schema))
                    fail_msg("schema %s: output %s does not validate", text, out);
                json_decref(val);
            }
            slm_grammar_free(g);
            free(text);
            json_decref(schema);
        }
        slm_token_trie_free(t);
        vocab_free(&v);
    }
    printf("random schemas: %d of %d walks ended complete, all valid\n", complete, total);
    assert_true(complete * 2 > total);
}

/* ---- the real vocabularies ------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Mask vs brute force at a few points of a text, on a model's own
 * vocabulary; prints the trie's size and the time of one mask there. */
static void check_model_vocab(const char *path)
{
    slm_gguf *gg;
    if (slm_gguf_open(path, &gg) != SLM_OK) {
        printf("skipped: %s not present\n", path);
        return;
    }
    slm_tokenizer *tok;
    assert_int_equal(slm_tokenizer_load(gg, &tok), SLM_OK);
    slm_gguf_close(gg);
    double t0 = now_s();
    slm_token_trie *t;
    assert_int_equal(slm_token_trie_from_tokenizer(tok, &t), SLM_OK);
    double t_build = now_s() - t0;
    int n = slm_tokenizer_n_vocab(tok);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    uint8_t *kind = malloc((size_t)n), *mask = malloc((size_t)n), *ref = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        pieces[i] = slm_tokenizer_piece(tok, i, false, &lens[i]);
        kind[i] = (uint8_t)slm_token_trie_kind(tok, i);
    }
    slm_grammar_state *scratch = malloc((size_t)slm_token_trie_scratch(t) * sizeof *scratch);
    printf("%s: %d tokens, trie of %d nodes built in %.1f ms\n", path, n,
           slm_token_trie_n_nodes(t), 1e3 * t_build);
    /* Points: the start, inside a key, inside a bounded string, after ':',
     * inside an array, complete; then json_object mode's free key and
     * unbounded string. */
    const char *texts[] = {"{\"name\": \"b\xc3\xa9\", \"age\": 12, \"tags\": [\"a\"]}",
                           "{\"ab\": \"c"};
    const char *schemas[] = {cases[1].schema, "{\"type\":\"object\"}"};
    size_t cuts[] = {0, 3, 11, 21, 22, 34, strlen(texts[0]), 3, strlen(texts[1])};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        int which = c < 7 ? 0 : 1;
        const char *text = texts[which];
        slm_grammar *g = compile_ok(schemas[which]);
        slm_grammar_state s;
        slm_grammar_state_init(&s, g);
        assert_true(slm_grammar_feed(&s, text, cuts[c]));
        int reps = 20, cnt = 0;
        double t1 = now_s();
        for (int r = 0; r < reps; r++)
            cnt = slm_token_trie_mask(t, &s, scratch, mask);
        double per = (now_s() - t1) / reps;
        int nb = brute_mask(n, pieces, lens, kind, &s, ref);
        assert_int_equal(cnt, nb);
        assert_memory_equal(mask, ref, (size_t)n);
        printf("  after \"%.*s\": %d tokens allowed, mask %.3f ms\n", (int)cuts[c], text, cnt,
               1e3 * per);
        slm_grammar_free(g);
    }
    free(scratch);
    free(pieces);
    free(lens);
    free(kind);
    free(mask);
    free(ref);
    slm_token_trie_free(t);
    slm_tokenizer_free(tok);
}

static void test_model_vocabularies(void **state)
{
    (void)state;
    check_model_vocab("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    check_model_vocab("models/gemma-3-270m-q4_k_m.gguf");
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_and_refuses),
        cmocka_unit_test(test_done_forces_end),
        cmocka_unit_test(test_refuses_schemas),
        cmocka_unit_test(test_mask_matches_brute_force),
        cmocka_unit_test(test_random_schemas_validate),
        cmocka_unit_test(test_model_vocabularies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
