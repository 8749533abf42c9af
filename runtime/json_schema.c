/*
 * json_schema.c — JSON Schema → grammar (see json_schema.h). One recursive
 * walk over the schema (parsed with jansson): each subschema becomes one
 * grammar node, named in errors by its JSON pointer. $ref targets become
 * alias nodes, compiled once and shared, so recursive schemas are graphs.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"
#include "status.h"

#define MAX_COUNT 1000000 /* largest minItems/maxItems/minLength/maxLength accepted */
#define MAX_REFS 256
#define MAX_NEST 64 /* subschemas inside each other; the walk recurses once per level */

typedef struct ref {
    char *ptr;
    int node;
} ref;

typedef struct ctx {
    slm_grammar *g;
    json_t *doc;
    ref refs[MAX_REFS];
    int n_refs;
    int depth; /* of the walk, bounded by MAX_NEST */
    slm_status st; /* the first failure; its message is the thread's error */
} ctx;

static const char *const annotations[] = {"title",    "description", "default",  "examples",
                                          "$schema",  "$id",         "$comment", "deprecated",
                                          "readOnly", "writeOnly",   "$defs",    "definitions",
                                          NULL};
static const char *const keywords[] = {
    "type",     "properties", "required",  "additionalProperties", "items", "minItems",
    "maxItems", "enum",       "const",     "minLength",            "maxLength", "anyOf",
    "oneOf",    "$ref",       NULL};
static const char *const types[] = {"object", "array",   "string", "number",
                                    "integer", "boolean", "null",   NULL};

static bool in_list(const char *const *list, const char *s)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

/* Records the first failure (INVALID_ARGUMENT, the message formatted) and
 * returns -1, so a failing path is one line. */
static int fail(ctx *c, const char *fmt, ...) SLM_PRINTF(2, 3);
static int fail(ctx *c, const char *fmt, ...)
{
    if (!c->st) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        c->st = slm_error(SLM_STATUS_INVALID_ARGUMENT, "json schema: %s", msg);
    }
    return -1;
}

static int oom(ctx *c)
{
    if (!c->st)
        c->st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "json schema: out of memory");
    return -1;
}

static int compile(ctx *c, json_t *s, const char *path);

/* Every key of s is a keyword we handle or an annotation; with `only`,
 * keywords other than those listed are refused beside `what`. */
static int check_keys(ctx *c, json_t *s, const char *path, const char *const *only,
                      const char *what)
{
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (in_list(annotations, k))
            continue;
        if (!in_list(keywords, k))
            return fail(c, "keyword '%s' at %s is not supported", k, path);
        if (only && !in_list(only, k))
            return fail(c, "keyword '%s' beside '%s' at %s is not supported", k, what, path);
    }
    return 0;
}

/* A non-negative integer keyword, or def when absent. */
static int get_count(ctx *c, json_t *s, const char *key, const char *path, int def, int *out)
{
    json_t *v = json_object_get(s, key);
    *out = def;
    if (!v)
        return 0;
    double d = json_is_integer(v) ? (double)json_integer_value(v)
               : json_is_real(v)  ? json_real_value(v)
                                  : -1;
    if (d < 0 || d != (double)(long long)d || d > MAX_COUNT)
        return fail(c, "'%s' at %s must be a non-negative integer (at most 1000000)",
                    key, path);
    *out = (int)d;
    return 0;
}

static int get_bounds(ctx *c, json_t *s, const char *lo_key, const char *hi_key,
                      const char *path, int *lo, int *hi)
{
    if (get_count(c, s, lo_key, path, 0, lo) || get_count(c, s, hi_key, path, -1, hi))
        return -1;
    if (*hi >= 0 && *lo > *hi)
        return fail(c, "'%s' is above '%s' at %s, so no value fits", lo_key, hi_key, path);
    return 0;
}

/* ---- constants ---------------------------------------------------------- */

static bool of_type(json_t *v, const char *t)
{
    if (!strcmp(t, "number"))
        return json_is_number(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v));
    if (!strcmp(t, "string"))
        return json_is_string(v);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(t, "null"))
        return json_is_null(v);
    if (!strcmp(t, "array"))
        return json_is_array(v);
    return json_is_object(v);
}

static bool of_types(json_t *v, json_t *type)
{
    if (!type)
        return true;
    if (json_is_string(type))
        return of_type(v, json_string_value(type));
    size_t i;
    json_t *t;
    json_array_foreach(type, i, t) if (json_is_string(t) && of_type(v, json_string_value(t)))
        return true;
    return false;
}

/* Appends the values of an enum / const schema (those of its type, when
 * "type" is given beside them) to the array `into`. */
static int collect_literals(ctx *c, json_t *s, const char *path, json_t *into)
{
    static const char *const only[] = {"enum", "const", "type", NULL};
    json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (check_keys(c, s, path, only, en ? "enum" : "const"))
        return -1;
    if (en && cn)
        return fail(c, "both 'enum' and 'const' at %s", path);
    if (en && (!json_is_array(en) || json_array_size(en) == 0))
        return fail(c, "'enum' at %s must be a non-empty array", path);
    json_t *type = json_object_get(s, "type");
    size_t n = en ? json_array_size(en) : 1, added = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = en ? json_array_get(en, i) : cn;
        if (!of_types(v, type))
            continue;
        if (json_array_append(into, v))
            return oom(c);
        added++;
    }
    if (!added)
        return fail(c, "no value of '%s' at %s is of the given type", en ? "enum" : "const",
                    path);
    return 0;
}

/* One literal node: the compact JSON texts of the values. */
static int literal_node(ctx *c, json_t *values)
{
    size_t n = json_array_size(values);
    char **texts = calloc(n, sizeof *texts);
    size_t *lens = calloc(n, sizeof *lens);
    int m = 0, id = -1;
    for (size_t i = 0; texts && lens && i < n; i++, m++) {
        texts[i] = json_dumps(json_array_get(values, i), JSON_COMPACT | JSON_ENCODE_ANY);
        if (!texts[i])
            break;
        lens[i] = strlen(texts[i]);
    }
    if (texts && lens && (size_t)m == n)
        id = slm_grammar_add_literals(c->g, (const char *const *)texts, lens, m);
    for (int i = 0; texts && i < m; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    return id < 0 ? oom(c) : id;
}

static int compile_literals(ctx *c, json_t *s, const char *path)
{
    json_t *values = json_array();
    int id = !values ? oom(c) : collect_literals(c, s, path, values) ? -1 : literal_node(c, values);
    json_decref(values);
    return id;
}

/* ---- combinators and references ----------------------------------------- */

static bool is_literal_schema(json_t *s)
{
    return json_is_object(s) && !json_object_get(s, "$ref") && !json_object_get(s, "anyOf") &&
           !json_object_get(s, "oneOf") &&
           (json_object_get(s, "enum") || json_object_get(s, "const"));
}

/* oneOf: a value listed by two alternatives would match both. */
static int check_one_of(ctx *c, json_t *values, const char *path)
{
    for (size_t i = 0; i < json_array_size(values); i++)
        for (size_t k = i + 1; k < json_array_size(values); k++)
            if (json_equal(json_array_get(values, i), json_array_get(values, k)))
                return fail(c, "two alternatives of 'oneOf' at %s list the same value", path);
    return 0;
}

/* anyOf / oneOf: the members become one alternative node, chosen by the
 * first byte; enum and const members are merged into one set of literals
 * first, so constants of one type ("a" | "b") can be told apart. */
static int compile_alternatives(ctx *c, json_t *s, const char *path)
{
    const char *kw = json_object_get(s, "anyOf") ? "anyOf" : "oneOf";
    static const char *const only_any[] = {"anyOf", NULL}, *const only_one[] = {"oneOf", NULL};
    if (check_keys(c, s, path, kw[0] == 'a' ? only_any : only_one, kw))
        return -1;
    json_t *alts = json_object_get(s, kw);
    if (!json_is_array(alts) || json_array_size(alts) == 0)
        return fail(c, "'%s' at %s must be a non-empty array of schemas", kw, path);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%s", path, kw);
    int alt = slm_grammar_add_alt(c->g, sub);
    json_t *values = json_array();
    if (alt < 0 || !values) {
        json_decref(values);
        return oom(c);
    }
    size_t i;
    json_t *a;
    int rc = 0;
    json_array_foreach(alts, i, a) {
        snprintf(sub, sizeof sub, "%s/%s/%zu", path, kw, i);
        if (is_literal_schema(a)) {
            rc = collect_literals(c, a, sub, values);
        } else {
            int k = compile(c, a, sub);
            rc = k < 0 ? -1 : slm_grammar_alt_add(c->g, alt, k) ? oom(c) : 0;
        }
        if (rc)
            break;
    }
    if (!rc && json_array_size(values) > 0 && kw[0] == 'o')
        rc = check_one_of(c, values, path);
    if (!rc && json_array_size(values) > 0) {
        int k = literal_node(c, values);
        rc = k < 0 ? -1 : slm_grammar_alt_add(c->g, alt, k) ? oom(c) : 0;
    }
    json_decref(values);
    return rc ? -1 : alt;
}

/* Follows a JSON pointer ("#", "#/$defs/a~1b") through the document. */
static json_t *resolve(json_t *doc, const char *ptr)
{
    if (ptr[0] != '#')
        return NULL;
    json_t *v = doc;
    const char *p = ptr + 1;
    while (*p == '/' && v) {
        p++;
        char tok[256];
        size_t n = 0;
        for (; *p && *p != '/' && n + 1 < sizeof tok; p++) {
            if (*p == '~' && (p[1] == '0' || p[1] == '1')) {
                tok[n++] = p[1] == '0' ? '~' : '/';
                p++;
            } else {
                tok[n++] = *p;
            }
        }
        tok[n] = 0;
        if (json_is_object(v))
            v = json_object_get(v, tok);
        else if (json_is_array(v))
            v = json_array_get(v, (size_t)strtoul(tok, NULL, 10));
        else
            v = NULL;
    }
    return *p ? NULL : v;
}

static int compile_ref(ctx *c, json_t *s, const char *path)
{
    static const char *const only[] = {"$ref", NULL};
    if (check_keys(c, s, path, only, "$ref"))
        return -1;
    json_t *r = json_object_get(s, "$ref");
    if (!json_is_string(r))
        return fail(c, "'$ref' at %s must be a string", path);
    const char *ptr = json_string_value(r);
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ptr, ptr))
            return c->refs[i].node;
    json_t *target = resolve(c->doc, ptr);
    if (!target)
        return fail(c, "'$ref' \"%s\" at %s does not point into this schema (only "
                    "local references such as \"#/$defs/name\" are supported)", ptr, path);
    if (c->n_refs == MAX_REFS)
        return fail(c, "more than 256 distinct '$ref' targets (at %s)", path);
    int alias = slm_grammar_add_alias(c->g);
    char *copy = strdup(ptr);
    if (alias < 0 || !copy) {
        free(copy);
        return oom(c);
    }
    c->refs[c->n_refs++] = (ref){copy, alias};
    char sub[512];
    snprintf(sub, sizeof sub, "%s", ptr);
    int node = compile(c, target, sub);
    if (node < 0)
        return -1;
    slm_grammar_alias_set(c->g, alias, node);
    return alias;
}

/* ---- typed values ------------------------------------------------------- */

static int compile_array(ctx *c, json_t *s, const char *path)
{
    int lo, hi;
    if (get_bounds(c, s, "minItems", "maxItems", path, &lo, &hi))
        return -1;
    json_t *items = json_object_get(s, "items");
    char sub[512];
    snprintf(sub, sizeof sub, "%s/items", path);
    int item;
    if (json_is_array(items))
        return fail(c, "'items' at %s is an array (tuple validation is not supported)",
                    path);
    if (json_is_false(items)) {
        if (lo > 0)
            return fail(c, "'items' is false but 'minItems' is above 0 at %s", path);
        hi = 0;
        item = slm_grammar_any(c->g);
    } else {
        item = items ? compile(c, items, sub) : slm_grammar_any(c->g);
    }
    if (item < 0)
        return c->st ? -1 : oom(c);
    int id = slm_grammar_add_array(c->g, item, lo, hi);
    return id < 0 ? oom(c) : id;
}

/* The JSON text of a key without its quotes. */
static char *key_text(const char *name, size_t *len)
{
    json_t *js = json_string(name);
    char *t = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
    json_decref(js);
    if (!t)
        return NULL;
    *len = strlen(t) - 2;
    memmove(t, t + 1, *len);
    return t;
}

static bool required_has(json_t *req, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(req, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), name))
        return true;
    return false;
}

static int add_prop(ctx *c, int obj, const char *name, int value, bool required)
{
    size_t len;
    char *t = key_text(name, &len);
    if (!t)
        return oom(c);
    slm_status st = slm_grammar_object_add(c->g, obj, t, len, value, required);
    free(t);
    if (st && !c->st)
        c->st = st;
    return st ? -1 : 0;
}

static int compile_object(ctx *c, json_t *s, const char *path)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *ap = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return fail(c, "'properties' at %s must be an object", path);
    if (req && !json_is_array(req))
        return fail(c, "'required' at %s must be an array of strings", path);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/additionalProperties", path);
    /* Without additionalProperties, declared properties are all we write
     * (extra ones would be allowed, but need not be written). */
    int extra = -1;
    bool declared = props && json_object_size(props) > 0;
    if (json_is_true(ap) || (!ap && !declared)) {
        extra = slm_grammar_any(c->g);
        if (extra < 0)
            return oom(c);
    } else if (ap && !json_is_boolean(ap)) {
        extra = compile(c, ap, sub);
        if (extra < 0)
            return -1;
    }
    int obj = slm_grammar_add_object(c->g, extra);
    if (obj < 0)
        return oom(c);
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        snprintf(sub, sizeof sub, "%s/properties/%s", path, k);
        int node = compile(c, v, sub);
        if (node < 0 || add_prop(c, obj, k, node, req && required_has(req, k)))
            return -1;
    }
    size_t i;
    json_array_foreach(req, i, v) {
        if (!json_is_string(v))
            return fail(c, "'required' at %s must be an array of strings", path);
        const char *name = json_string_value(v);
        if (props && json_object_get(props, name))
            continue;
        if (extra < 0)
            return fail(c, "required property '%s' at %s is neither declared nor "
                        "allowed by additionalProperties", name, path);
        if (add_prop(c, obj, name, extra, true))
            return -1;
    }
    return obj;
}

static int compile_type(ctx *c, json_t *s, const char *t, const char *path)
{
    static const char *const bools[] = {"false", "true"}, *const nul[] = {"null"};
    static const size_t bool_lens[] = {5, 4}, nul_len[] = {4};
    int id = -1;
    if (!strcmp(t, "object"))
        return compile_object(c, s, path);
    if (!strcmp(t, "array"))
        return compile_array(c, s, path);
    if (!strcmp(t, "string")) {
        int lo, hi;
        if (get_bounds(c, s, "minLength", "maxLength", path, &lo, &hi))
            return -1;
        id = slm_grammar_add_string(c->g, lo, hi);
    } else if (!strcmp(t, "number") || !strcmp(t, "integer")) {
        id = slm_grammar_add_number(c->g, t[0] == 'i');
    } else if (!strcmp(t, "boolean")) {
        id = slm_grammar_add_literals(c->g, bools, bool_lens, 2);
    } else {
        id = slm_grammar_add_literals(c->g, nul, nul_len, 1);
    }
    return id < 0 ? oom(c) : id;
}

/* The types a schema allows: its "type", or what its keywords imply (none:
 * any value). Writes up to 7 names; returns the count or -1. */
static int type_list(ctx *c, json_t *s, const char *path, const char **out)
{
    json_t *type = json_object_get(s, "type");
    int n = 0;
    if (json_is_string(type)) {
        out[n++] = json_string_value(type);
    } else if (json_is_array(type) && json_array_size(type) > 0) {
        size_t i;
        json_t *t;
        json_array_foreach(type, i, t) {
            if (!json_is_string(t) || n == 7)
                return fail(c, "'type' at %s must be a type name or an array of type names",
                            path);
            out[n++] = json_string_value(t);
        }
    } else if (type) {
        return fail(c, "'type' at %s must be a type name or an array of them", path);
    } else {
        if (json_object_get(s, "properties") || json_object_get(s, "required") ||
            json_object_get(s, "additionalProperties"))
            out[n++] = "object";
        if (json_object_get(s, "items") || json_object_get(s, "minItems") ||
            json_object_get(s, "maxItems"))
            out[n++] = "array";
        if (json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
            out[n++] = "string";
    }
    for (int i = 0; i < n; i++)
        if (!in_list(types, out[i]))
            return fail(c, "unknown type '%s' at %s", out[i], path);
    return n;
}

static int compile_typed(ctx *c, json_t *s, const char *path)
{
    if (check_keys(c, s, path, NULL, NULL))
        return -1;
    const char *names[7];
    int n = type_list(c, s, path, names);
    if (n < 0)
        return -1;
    if (n == 0) {
        int any = slm_grammar_any(c->g);
        return any < 0 ? oom(c) : any;
    }
    bool has_number = false;
    for (int i = 0; i < n; i++)
        has_number |= !strcmp(names[i], "number");
    int alt = -1, last = -1;
    for (int i = 0; i < n; i++) {
        if (has_number && !strcmp(names[i], "integer"))
            continue; /* every integer is a number */
        int k = compile_type(c, s, names[i], path);
        if (k < 0)
            return -1;
        if (last >= 0 && alt < 0) {
            alt = slm_grammar_add_alt(c->g, path);
            if (alt < 0 || slm_grammar_alt_add(c->g, alt, last))
                return oom(c);
        }
        if (alt >= 0 && slm_grammar_alt_add(c->g, alt, k))
            return oom(c);
        last = k;
    }
    return alt >= 0 ? alt : last;
}

static int compile_schema(ctx *c, json_t *s, const char *path)
{
    if (json_is_true(s)) {
        int any = slm_grammar_any(c->g);
        return any < 0 ? oom(c) : any;
    }
    if (json_is_false(s))
        return fail(c, "the schema at %s is false, which no value matches", path);
    if (!json_is_object(s))
        return fail(c, "the schema at %s must be an object or a boolean", path);
    if (json_object_get(s, "$ref"))
        return compile_ref(c, s, path);
    if (json_object_get(s, "anyOf") && json_object_get(s, "oneOf"))
        return fail(c, "both 'anyOf' and 'oneOf' at %s", path);
    if (json_object_get(s, "anyOf") || json_object_get(s, "oneOf"))
        return compile_alternatives(c, s, path);
    if (json_object_get(s, "enum") || json_object_get(s, "const"))
        return compile_literals(c, s, path);
    return compile_typed(c, s, path);
}

/* One subschema, nested at most MAX_NEST deep (a request's schema must not
 * exhaust the thread's stack). */
static int compile(ctx *c, json_t *s, const char *path)
{
    if (c->depth >= MAX_NEST)
        return fail(c, "the schema is nested more than %d levels deep at %s", MAX_NEST, path);
    c->depth++;
    int id = compile_schema(c, s, path);
    c->depth--;
    return id;
}

slm_status slm_json_schema_compile(const char *schema, size_t len, slm_grammar **out)
{
    *out = NULL;
    json_error_t jerr;
    json_t *doc = json_loadb(schema, len, JSON_DECODE_ANY, &jerr);
    if (!doc)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "json schema: not valid JSON: %s (line %d, column %d)", jerr.text,
                         jerr.line, jerr.column);
    ctx c = {.doc = doc};
    c.st = slm_grammar_create(&c.g);
    int root = c.st ? -1 : compile(&c, doc, "#");
    if (!c.st && root < 0)
        oom(&c);
    if (!c.st)
        c.st = slm_grammar_finish(c.g, root);
    for (int i = 0; i < c.n_refs; i++)
        free(c.refs[i].ptr);
    json_decref(doc);
    if (c.st) {
        slm_grammar_free(c.g);
        return c.st;
    }
    *out = c.g;
    return SLM_OK;
}

slm_status slm_json_schema_check(const char *schema)
{
    if (!schema)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "json schema: NULL");
    slm_grammar *g;
    slm_status st = slm_json_schema_compile(schema, strlen(schema), &g);
    slm_grammar_free(g);
    return st;
}
