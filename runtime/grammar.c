/*
 * grammar.c — the grammar graph, its byte-level pushdown matcher and the
 * token trie that turns a state into a vocabulary mask (see grammar.h).
 *
 * Matching is one loop (slm_grammar_step): the top frame looks at the byte
 * and either takes it, takes it and closes (a string's closing quote), lets
 * it pass because the value may end there (a number before ','), asks for a
 * child value to be opened with it (an array's next item), or refuses it.
 * A value that passes is popped and its parent sees the same byte. The end
 * of the text is the byte -1, which only a value that may end lets pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "status.h"

enum { N_LIT, N_STR, N_NUM, N_ARR, N_OBJ, N_ALT, N_ALIAS };

/* What a frame does with a byte. */
enum { R_REJECT, R_TAKEN, R_DONE, R_PASS, R_PUSH };

#define NUM_INT_DIGITS 16  /* digits before the point */
#define NUM_FRAC_DIGITS 16 /* after it */
#define NUM_EXP_DIGITS 2  /* up to 1e99: every JSON parser reads it as a finite double */
#define KEY_ALIVE (1 << 24) /* object key: an additional key is still possible */

typedef struct lit {
    char *s;
    size_t n;
} lit;

typedef struct prop {
    char *name; /* JSON-escaped, without quotes */
    size_t len;
    int value;
    bool required;
} prop;

typedef struct node {
    int kind;
    int a, b;        /* LIT: count; STR, ARR: min, max; NUM: integer; OBJ: extra; ALIAS: target */
    int child;       /* ARR: items */
    lit *lits;       /* LIT, sorted, no duplicates */
    prop *props;     /* OBJ */
    int np;
    bool *req_from;  /* OBJ [np + 1]: a required property at index >= i */
    int *kids;       /* ALT */
    int nk;
    char *where;     /* ALT: for messages */
    uint8_t first[32];
    int first_state; /* 0 unknown, 1 computing, 2 known */
} node;

struct slm_grammar {
    node *nodes;
    int n, cap;
    int root, any;
};

/* ---- building -------------------------------------------------------------- */

slm_status slm_grammar_create(slm_grammar **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory");
    (*out)->root = -1;
    (*out)->any = -1;
    return SLM_OK;
}

void slm_grammar_free(slm_grammar *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n; i++) {
        node *nd = &g->nodes[i];
        for (int k = 0; nd->kind == N_LIT && k < nd->a; k++)
            free(nd->lits[k].s);
        for (int k = 0; k < nd->np; k++)
            free(nd->props[k].name);
        free(nd->lits);
        free(nd->props);
        free(nd->req_from);
        free(nd->kids);
        free(nd->where);
    }
    free(g->nodes);
    free(g);
}

static int add_node(slm_grammar *g, int kind)
{
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        node *p = realloc(g->nodes, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        g->nodes = p;
        g->cap = cap;
    }
    memset(&g->nodes[g->n], 0, sizeof g->nodes[g->n]);
    g->nodes[g->n].kind = kind;
    g->nodes[g->n].child = -1;
    return g->n++;
}

static int lit_cmp(const void *pa, const void *pb)
{
    const lit *a = pa, *b = pb;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

int slm_grammar_add_literals(slm_grammar *g, const char *const *lits, const size_t *lens, int n)
{
    lit *ls = calloc((size_t)(n > 0 ? n : 1), sizeof *ls);
    if (!ls)
        return -1;
    for (int i = 0; i < n; i++) {
        ls[i].s = malloc(lens[i] ? lens[i] : 1);
        ls[i].n = lens[i];
        if (!ls[i].s) {
            for (int k = 0; k <= i; k++)
                free(ls[k].s);
            free(ls);
            return -1;
        }
        memcpy(ls[i].s, lits[i], lens[i]);
    }
    qsort(ls, (size_t)n, sizeof *ls, lit_cmp);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && lit_cmp(&ls[m - 1], &ls[i]) == 0)
            free(ls[i].s);
        else
            ls[m++] = ls[i];
    }
    int id = add_node(g, N_LIT);
    if (id < 0) {
        for (int k = 0; k < m; k++)
            free(ls[k].s);
        free(ls);
        return -1;
    }
    g->nodes[id].lits = ls;
    g->nodes[id].a = m;
    return id;
}

int slm_grammar_add_string(slm_grammar *g, int min_len, int max_len)
{
    int id = add_node(g, N_STR);
    if (id >= 0) {
        g->nodes[id].a = min_len;
        g->nodes[id].b = max_len;
    }
    return id;
}

int slm_grammar_add_number(slm_grammar *g, bool integer)
{
    int id = add_node(g, N_NUM);
    if (id >= 0)
        g->nodes[id].a = integer;
    return id;
}

int slm_grammar_add_array(slm_grammar *g, int items, int min_items, int max_items)
{
    int id = add_node(g, N_ARR);
    if (id >= 0) {
        g->nodes[id].child = items;
        g->nodes[id].a = min_items;
        g->nodes[id].b = max_items;
    }
    return id;
}

int slm_grammar_add_object(slm_grammar *g, int extra)
{
    int id = add_node(g, N_OBJ);
    if (id >= 0)
        g->nodes[id].a = extra;
    return id;
}

slm_status slm_grammar_object_add(slm_grammar *g, int object, const char *name, size_t len,
                                  int value, bool required)
{
    node *nd = &g->nodes[object];
    if (nd->np >= SLM_GRAMMAR_MAX_PROPS)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "an object may declare at most %d properties", SLM_GRAMMAR_MAX_PROPS);
    prop *p = realloc(nd->props, (size_t)(nd->np + 1) * sizeof *p);
    if (!p)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory");
    nd->props = p;
    char *s = malloc(len ? len : 1);
    if (!s)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory");
    memcpy(s, name, len);
    p[nd->np++] = (prop){s, len, value, required};
    return SLM_OK;
}

int slm_grammar_add_alt(slm_grammar *g, const char *where)
{
    char *w = strdup(where ? where : "#");
    if (!w)
        return -1;
    int id = add_node(g, N_ALT);
    if (id < 0) {
        free(w);
        return -1;
    }
    g->nodes[id].where = w;
    return id;
}

slm_status slm_grammar_alt_add(slm_grammar *g, int alt, int child)
{
    node *nd = &g->nodes[alt];
    int *k = realloc(nd->kids, (size_t)(nd->nk + 1) * sizeof *k);
    if (!k)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory");
    nd->kids = k;
    k[nd->nk++] = child;
    return SLM_OK;
}

int slm_grammar_add_alias(slm_grammar *g)
{
    int id = add_node(g, N_ALIAS);
    if (id >= 0)
        g->nodes[id].a = -1;
    return id;
}

void slm_grammar_alias_set(slm_grammar *g, int alias, int target) { g->nodes[alias].a = target; }

/* any value = object | array | string | number | true | false | null */
int slm_grammar_any(slm_grammar *g)
{
    if (g->any >= 0)
        return g->any;
    static const char *const words[] = {"true", "false", "null"};
    static const size_t lens[] = {4, 5, 4};
    int any = slm_grammar_add_alt(g, "any value");
    if (any < 0)
        return -1;
    int kids[5] = {slm_grammar_add_object(g, any), slm_grammar_add_array(g, any, 0, -1),
                   slm_grammar_add_string(g, 0, SLM_GRAMMAR_NO_LIMIT),
                   slm_grammar_add_number(g, false), slm_grammar_add_literals(g, words, lens, 3)};
    for (int i = 0; i < 5; i++)
        if (kids[i] < 0 || slm_grammar_alt_add(g, any, kids[i]))
            return -1;
    g->any = any;
    return any;
}

/* ---- checking -------------------------------------------------------------- */

static void set_bit(uint8_t *set, int b) { set[b >> 3] |= (uint8_t)(1u << (b & 7)); }
static bool has_bit(const uint8_t *set, int b) { return set[b >> 3] >> (b & 7) & 1; }

static const char *byte_desc(int b, char *buf)
{
    if (b >= 0x21 && b < 0x7f)
        snprintf(buf, 8, "'%c'", b);
    else
        snprintf(buf, 8, "0x%02x", b);
    return buf;
}

/* The bytes a node's value can start with; checks alternatives on the way. */
static slm_status first_bytes(slm_grammar *g, int id)
{
    if (id < 0 || id >= g->n)
        return slm_error(SLM_STATUS_INTERNAL, "grammar: node %d does not exist", id);
    node *nd = &g->nodes[id];
    if (nd->first_state == 2)
        return SLM_OK;
    if (nd->first_state == 1)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "a $ref refers back to itself without an object or array around it");
    nd->first_state = 1;
    uint8_t *f = nd->first;
    switch (nd->kind) {
    case N_LIT:
        for (int i = 0; i < nd->a; i++) {
            if (!nd->lits[i].n)
                return slm_error(SLM_STATUS_INTERNAL, "grammar: empty literal");
            set_bit(f, (uint8_t)nd->lits[i].s[0]);
        }
        break;
    case N_STR: set_bit(f, '"'); break;
    case N_NUM:
        set_bit(f, '-');
        for (int c = '0'; c <= '9'; c++)
            set_bit(f, c);
        break;
    case N_ARR: set_bit(f, '['); break;
    case N_OBJ: set_bit(f, '{'); break;
    case N_ALIAS: {
        if (nd->a < 0)
            return slm_error(SLM_STATUS_INTERNAL, "grammar: unresolved reference");
        slm_status st = first_bytes(g, nd->a);
        if (st)
            return st;
        nd = &g->nodes[id];
        memcpy(nd->first, g->nodes[nd->a].first, 32);
        break;
    }
    case N_ALT:
        for (int k = 0; k < nd->nk; k++) {
            slm_status st = first_bytes(g, g->nodes[id].kids[k]);
            if (st)
                return st;
            nd = &g->nodes[id];
            const uint8_t *kf = g->nodes[nd->kids[k]].first;
            for (int b = 0; b < 256; b++) {
                if (!has_bit(kf, b))
                    continue;
                char buf[8];
                if (has_bit(nd->first, b))
                    return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                                     "%s: two alternatives can both start with %s, so they cannot "
                                     "be told apart while generating (alternatives must be of "
                                     "different JSON types or distinct constants)",
                                     nd->where, byte_desc(b, buf));
                set_bit(nd->first, b);
            }
        }
        if (!nd->nk)
            return slm_error(SLM_STATUS_INVALID_ARGUMENT, "%s: no alternative", nd->where);
        break;
    }
    g->nodes[id].first_state = 2;
    return SLM_OK;
}

/* Precomputes, per object, whether a required property lies at or after
 * each index. */
static slm_status object_tables(node *nd)
{
    nd->req_from = calloc((size_t)nd->np + 1, sizeof *nd->req_from);
    if (!nd->req_from)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory");
    for (int i = nd->np - 1; i >= 0; i--)
        nd->req_from[i] = nd->req_from[i + 1] || nd->props[i].required;
    return SLM_OK;
}

slm_status slm_grammar_finish(slm_grammar *g, int root)
{
    if (root < 0 || root >= g->n)
        return slm_error(SLM_STATUS_INTERNAL, "grammar: no root");
    for (int i = 0; i < g->n; i++) {
        slm_status st = first_bytes(g, i);
        if (!st && g->nodes[i].kind == N_OBJ && !g->nodes[i].req_from)
            st = object_tables(&g->nodes[i]);
        if (!st && g->nodes[i].kind == N_ARR && (g->nodes[i].child < 0 ||
                                                 g->nodes[i].child >= g->n))
            st = slm_error(SLM_STATUS_INTERNAL, "grammar: array without items");
        if (st)
            return st;
    }
    g->root = root;
    return SLM_OK;
}

/* ---- matching -------------------------------------------------------------- */

void slm_grammar_state_init(slm_grammar_state *s, const slm_grammar *g)
{
    s->g = g;
    s->depth = 0;
    s->started = false;
}

void slm_grammar_state_copy(slm_grammar_state *dst, const slm_grammar_state *src)
{
    dst->g = src->g;
    dst->depth = src->depth;
    dst->started = src->started;
    memcpy(dst->f, src->f, (size_t)src->depth * sizeof src->f[0]);
}

static bool is_digit(int b) { return b >= '0' && b <= '9'; }

static int lit_byte(const node *nd, slm_grammar_frame *f, int b)
{
    int lo = f->i, hi = f->u;
    size_t pos = (size_t)f->pos;
    bool can_end = nd->lits[lo].n == pos;
    if (b < 0)
        return can_end ? R_PASS : R_REJECT;
    int nlo = -1, nhi = -1;
    for (int k = lo; k < hi; k++) {
        const lit *l = &nd->lits[k];
        if (l->n > pos && (uint8_t)l->s[pos] == b) {
            if (nlo < 0)
                nlo = k;
            nhi = k + 1;
        } else if (nlo >= 0) {
            break; /* sorted: the matches are contiguous */
        }
    }
    if (nlo < 0)
        return can_end ? R_PASS : R_REJECT;
    f->i = nlo;
    f->u = nhi;
    f->pos++;
    return nhi - nlo == 1 && nd->lits[nlo].n == pos + 1 ? R_DONE : R_TAKEN;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? with bounded digit runs;
 * integers stop before the point. ph: 0 start, 1 after '-', 2 int digits,
 * 3 after a leading 0, 4 after '.', 5 fraction, 6 after e, 7 after its
 * sign, 8 exponent digits. */
static int num_byte(const node *nd, slm_grammar_frame *f, int b)
{
    bool integer = nd->a != 0;
    bool can_end = f->ph == 2 || f->ph == 3 || f->ph == 5 || f->ph == 8;
    bool more_int = f->ph == 2 || f->ph == 3; /* '.' or 'e' may follow */
    if (b < 0)
        return can_end ? R_PASS : R_REJECT;
    switch (f->ph) {
    case 0:
        if (b == '-') {
            f->ph = 1;
            return R_TAKEN;
        }
        /* fall through */
    case 1:
        if (b == '0') {
            f->ph = 3;
            return R_TAKEN;
        }
        if (b >= '1' && b <= '9') {
            f->ph = 2;
            f->pos = 1;
            return R_TAKEN;
        }
        return R_REJECT;
    case 2:
        if (is_digit(b)) {
            if (f->pos >= NUM_INT_DIGITS)
                return R_REJECT;
            f->pos++;
            return R_TAKEN;
        }
        break;
    case 4:
    case 5:
        if (is_digit(b) && (f->ph == 4 || f->pos < NUM_FRAC_DIGITS)) {
            f->pos = f->ph == 4 ? 1 : f->pos + 1;
            f->ph = 5;
            return R_TAKEN;
        }
        if (f->ph == 4)
            return R_REJECT;
        break;
    case 6:
        if (b == '+' || b == '-') {
            f->ph = 7;
            return R_TAKEN;
        }
        /* fall through */
    case 7:
        if (is_digit(b)) {
            f->ph = 8;
            f->pos = 1;
            return R_TAKEN;
        }
        return R_REJECT;
    case 8:
        if (is_digit(b) && f->pos < NUM_EXP_DIGITS) {
            f->pos++;
            return R_TAKEN;
        }
        break;
    }
    if (!integer && more_int && b == '.') {
        f->ph = 4;
        return R_TAKEN;
    }
    if (!integer && (more_int || f->ph == 5) && (b == 'e' || b == 'E')) {
        f->ph = 6;
        return R_TAKEN;
    }
    return can_end ? R_PASS : R_REJECT;
}

/* UTF-8 continuation bytes still expected (low byte) and the range the next
 * one must lie in (bits 8..23), which rules out overlong forms, surrogates
 * and code points past U+10FFFF. 0 for a byte that starts no sequence. */
static int utf8_lead(int b)
{
    int cnt, lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        cnt = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        cnt = 2;
        if (b == 0xE0)
            lo = 0xA0;
        if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        cnt = 3;
        if (b == 0xF0)
            lo = 0x90;
        if (b == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    return cnt | lo << 8 | hi << 16;
}

/* Feeds a continuation byte to a pending UTF-8 state; -1 if it is not one. */
static int utf8_cont(int u, int b)
{
    int lo = (u >> 8) & 0xff, hi = (u >> 16) & 0xff, cnt = u & 0xff;
    if (b < lo || b > hi)
        return -1;
    return cnt > 1 ? (cnt - 1) | 0x80 << 8 | 0xBF << 16 : 0;
}

static bool is_hex(int b)
{
    return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
}

/* ph: 0 before the quote, 1 content, 2 after '\', 3..6 \u's hex digits
 * (u = 1: the first was d/D, so the second must be 0-7: no surrogates).
 * pos: characters so far; u in content: pending UTF-8 (utf8_lead). */
static int str_byte(const node *nd, slm_grammar_frame *f, int b)
{
    if (b < 0)
        return R_REJECT;
    switch (f->ph) {
    case 0:
        if (b != '"')
            return R_REJECT;
        f->ph = 1;
        return R_TAKEN;
    case 2:
        if (b == 'u') {
            f->ph = 3;
            f->u = 0;
            return R_TAKEN;
        }
        if (!strchr("\"\\/bfnrt", b) || !b)
            return R_REJECT;
        f->ph = 1;
        return R_TAKEN;
    case 3:
    case 4:
    case 5:
    case 6:
        if (!is_hex(b) || (f->ph == 4 && f->u && !(b >= '0' && b <= '7')))
            return R_REJECT;
        if (f->ph == 3)
            f->u = b == 'd' || b == 'D';
        f->ph = f->ph == 6 ? 1 : f->ph + 1;
        if (f->ph == 1)
            f->u = 0;
        return R_TAKEN;
    }
    if (f->u) {
        int u = utf8_cont(f->u, b);
        if (u < 0)
            return R_REJECT;
        f->u = u;
        return R_TAKEN;
    }
    if (b == '"')
        return f->pos >= nd->a ? R_DONE : R_REJECT;
    if (b < 0x20 || (nd->b >= 0 && f->pos >= nd->b))
        return R_REJECT;
    if (b == '\\') {
        f->ph = 2;
    } else if (b >= 0x80) {
        f->u = utf8_lead(b);
        if (!f->u)
            return R_REJECT;
    }
    f->pos++;
    return R_TAKEN;
}

/* ph: 0 before '[', 1 after '[', 2 after an item, 3 after ',', 4 after ", ".
 * pos: items begun. */
static int arr_byte(const node *nd, slm_grammar_frame *f, int b, int *push)
{
    switch (f->ph) {
    case 0:
        if (b != '[')
            return R_REJECT;
        f->ph = 1;
        return R_TAKEN;
    case 1:
        if (b == ']')
            return nd->a <= 0 ? R_DONE : R_REJECT;
        break;
    case 2:
        if (b == ',' && (nd->b < 0 || f->pos < nd->b)) {
            f->ph = 3;
            return R_TAKEN;
        }
        if (b == ']' && f->pos >= nd->a)
            return R_DONE;
        return R_REJECT;
    case 3:
        if (b == ' ') {
            f->ph = 4;
            return R_TAKEN;
        }
        break;
    }
    if (b < 0 || (nd->b >= 0 && f->pos >= nd->b))
        return R_REJECT;
    f->pos++;
    *push = nd->child;
    return R_PUSH;
}

static uint64_t bits_upto(int n) { return n >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1; }

/* Opens a key: the declared candidates are the properties from f->i up to
 * and including the next required one; an additional key is possible when
 * no required property remains. */
static int key_open(const node *nd, slm_grammar_frame *f)
{
    int i = f->i, j = i;
    while (j < nd->np && !nd->props[j].required)
        j++;
    if (j == nd->np)
        j = nd->np - 1;
    uint64_t m = i < nd->np ? bits_upto(j + 1) & ~bits_upto(i) : 0;
    bool extra = nd->a >= 0 && !nd->req_from[i];
    if (!m && !extra)
        return R_REJECT;
    f->ph = 5;
    f->pos = 0;
    f->m = m;
    f->x = extra ? bits_upto(nd->np) : 0;
    f->u = extra ? KEY_ALIVE : 0;
    return R_TAKEN;
}

/* The names of set bits that continue with byte b at pos. */
static uint64_t key_narrow(const node *nd, uint64_t set, size_t pos, int b)
{
    uint64_t out = 0;
    for (uint64_t s = set; s; s &= s - 1) {
        int k = __builtin_ctzll(s);
        if (nd->props[k].len > pos && (uint8_t)nd->props[k].name[pos] == b)
            out |= (uint64_t)1 << k;
    }
    return out;
}

/* The name of a set bit that ends at pos, or -1. */
static int key_exact(const node *nd, uint64_t set, size_t pos)
{
    for (uint64_t s = set; s; s &= s - 1) {
        int k = __builtin_ctzll(s);
        if (nd->props[k].len == pos)
            return k;
    }
    return -1;
}

/* A byte of a key: declared names are matched literally (they may hold
 * escapes); an additional key is any escape-free text of valid UTF-8 up to
 * SLM_GRAMMAR_MAX_KEY bytes that is not a declared name (its value would
 * have to match that property's schema). */
static int key_byte(const node *nd, slm_grammar_frame *f, int b)
{
    size_t pos = (size_t)f->pos;
    bool alive = f->u & KEY_ALIVE;
    int u8 = f->u & 0xffffff;
    if (b == '"') {
        uint64_t esc = key_narrow(nd, f->m, pos, b); /* an escaped quote in a name */
        if (!esc) {
            int k = key_exact(nd, f->m, pos);
            if (k >= 0) {
                f->i = k + 1;
                f->pos = k;
            } else if (alive && !u8 && key_exact(nd, f->x, pos) < 0) {
                f->i = nd->np;
                f->pos = -1;
            } else {
                return R_REJECT;
            }
            f->ph = 6;
            return R_TAKEN;
        }
    }
    uint64_t m = key_narrow(nd, f->m, pos, b);
    if (alive) { /* the length bound applies where a character starts */
        if (u8)
            u8 = utf8_cont(u8, b);
        else if (pos >= SLM_GRAMMAR_MAX_KEY || b < 0x20 || b == '\\' || b == '"')
            u8 = -1;
        else if (b >= 0x80)
            u8 = utf8_lead(b) ? utf8_lead(b) : -1;
        alive = u8 >= 0;
    }
    if (!m && !alive)
        return R_REJECT;
    f->m = m;
    f->x = alive ? key_narrow(nd, f->x, pos, b) : 0;
    f->u = alive ? (u8 | KEY_ALIVE) : 0;
    f->pos++;
    return R_TAKEN;
}

/* ph: 0 before '{', 1 after '{', 2 after a value, 3 after ',', 4 after
 * ", ", 5 in a key, 6 after the key, 7 after ':', 8 after ": ".
 * i: the next declared property; pos: in a key its bytes, after it the
 * property chosen (-1: an additional one). */
static int obj_byte(const node *nd, slm_grammar_frame *f, int b, int *push)
{
    bool closable = !nd->req_from[f->i];
    switch (f->ph) {
    case 0:
        if (b != '{')
            return R_REJECT;
        f->ph = 1;
        f->i = 0;
        return R_TAKEN;
    case 1:
        if (b == '}')
            return closable ? R_DONE : R_REJECT;
        return b == '"' ? key_open(nd, f) : R_REJECT;
    case 2:
        if (b == '}')
            return closable ? R_DONE : R_REJECT;
        if (b == ',' && (f->i < nd->np || nd->a >= 0)) {
            f->ph = 3;
            return R_TAKEN;
        }
        return R_REJECT;
    case 3:
    case 4:
        if (b == ' ' && f->ph == 3) {
            f->ph = 4;
            return R_TAKEN;
        }
        return b == '"' ? key_open(nd, f) : R_REJECT;
    case 5:
        return b < 0 ? R_REJECT : key_byte(nd, f, b);
    case 6:
        if (b != ':')
            return R_REJECT;
        f->ph = 7;
        return R_TAKEN;
    case 7:
        if (b == ' ') {
            f->ph = 8;
            return R_TAKEN;
        }
        /* fall through */
    default:
        if (b < 0)
            return R_REJECT;
        *push = f->pos >= 0 ? nd->props[f->pos].value : nd->a;
        return R_PUSH;
    }
}

static int frame_byte(const slm_grammar *g, slm_grammar_frame *f, int b, int *push)
{
    const node *nd = &g->nodes[f->node];
    switch (nd->kind) {
    case N_LIT: return lit_byte(nd, f, b);
    case N_NUM: return num_byte(nd, f, b);
    case N_STR: return str_byte(nd, f, b);
    case N_ARR: return arr_byte(nd, f, b, push);
    case N_OBJ: return obj_byte(nd, f, b, push);
    }
    return R_REJECT;
}

/* Opens the value of node id that byte b starts: references are followed
 * and alternatives chosen by b. */
static bool push_node(slm_grammar_state *s, int id, int b)
{
    const slm_grammar *g = s->g;
    if (b < 0 || s->depth >= SLM_GRAMMAR_MAX_DEPTH)
        return false;
    for (;;) {
        const node *nd = &g->nodes[id];
        if (!has_bit(nd->first, b))
            return false;
        if (nd->kind == N_ALIAS) {
            id = nd->a;
            continue;
        }
        if (nd->kind != N_ALT)
            break;
        int k = 0;
        while (!has_bit(g->nodes[nd->kids[k]].first, b))
            k++;
        id = nd->kids[k];
    }
    slm_grammar_frame *f = &s->f[s->depth++];
    memset(f, 0, sizeof *f);
    f->node = id;
    if (g->nodes[id].kind == N_LIT)
        f->u = g->nodes[id].a; /* the range of literals still possible: all */
    return true;
}

/* b: a byte, or -1 for the end of the text. */
static bool step(slm_grammar_state *s, int b)
{
    if (!s->started) {
        if (!push_node(s, s->g->root, b))
            return false;
        s->started = true;
    }
    for (;;) {
        if (s->depth == 0)
            return b < 0;
        slm_grammar_frame *f = &s->f[s->depth - 1];
        int push = -1;
        switch (frame_byte(s->g, f, b, &push)) {
        case R_REJECT: return false;
        case R_TAKEN: return true;
        case R_DONE:
            if (--s->depth > 0)
                s->f[s->depth - 1].ph = 2;
            return true;
        case R_PASS:
            if (--s->depth > 0)
                s->f[s->depth - 1].ph = 2;
            continue;
        case R_PUSH:
            if (!push_node(s, push, b))
                return false;
            continue;
        }
    }
}

bool slm_grammar_step(slm_grammar_state *s, uint8_t byte) { return step(s, byte); }

bool slm_grammar_feed(slm_grammar_state *s, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!step(s, (uint8_t)bytes[i]))
            return false;
    return true;
}

bool slm_grammar_can_end(const slm_grammar_state *s)
{
    if (!s->started)
        return false;
    slm_grammar_state t;
    slm_grammar_state_copy(&t, s);
    return step(&t, -1);
}

bool slm_grammar_done(const slm_grammar_state *s) { return s->started && s->depth == 0; }

/* ---- the token trie -------------------------------------------------------- */

/* Preorder: a node's subtree follows it and ends before `skip`. */
typedef struct tnode {
    uint32_t skip;
    uint32_t tok;  /* first of its tokens in the layout's toks */
    uint32_t ntok; /* tokens whose bytes end here */
    uint16_t depth;
    uint8_t byte;
} tnode;

typedef struct tlayout {
    tnode *nodes;
    int n_nodes;
    int32_t *toks; /* token ids in byte order */
} tlayout;

/* NOTE: inside a string most of a vocabulary is allowed, and walking the
 * whole trie there costs milliseconds per step. So the "plain" tokens (text
 * of whole UTF-8 characters without '"', '\' or control bytes), which a
 * string takes whatever its state as long as there is room for their
 * characters, are listed by character count and marked without a walk;
 * only the other tokens go through a second, small trie. */
struct slm_token_trie {
    int n_vocab;
    tlayout all;   /* every text token */
    tlayout other; /* the text tokens that are not plain */
    int32_t *plain; /* plain token ids by character count, ascending */
    int *plain_upto; /* [max_chars + 1]: plain tokens of at most c characters */
    int n_plain, max_chars;
    int32_t *ends; /* SLM_TRIE_END tokens */
    int n_ends;
    int max_len;
};

typedef struct piece {
    const char *s;
    size_t n;
    int32_t id;
} piece;

static int piece_cmp(const void *pa, const void *pb)
{
    const piece *a = pa, *b = pb;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, n);
    if (c)
        return c;
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

void slm_token_trie_free(slm_token_trie *t)
{
    if (!t)
        return;
    free(t->all.nodes);
    free(t->all.toks);
    free(t->other.nodes);
    free(t->other.toks);
    free(t->plain);
    free(t->plain_upto);
    free(t->ends);
    free(t);
}

/* The characters of a plain piece, or -1 when it is not plain. */
static int plain_chars(const char *s, size_t n)
{
    int chars = 0, u = 0;
    for (size_t i = 0; i < n; i++) {
        int b = (uint8_t)s[i];
        if (u) {
            if ((u = utf8_cont(u, b)) < 0)
                return -1;
            continue;
        }
        if (b < 0x20 || b == '"' || b == '\\')
            return -1;
        if (b >= 0x80 && !(u = utf8_lead(b)))
            return -1;
        chars++;
    }
    return u ? -1 : chars;
}

/* Lays sorted pieces out as a preorder trie: each piece shares the path of
 * its common prefix with the one before it. path: max_len + 1 entries. */
static slm_status trie_lay(tlayout *t, const piece *ps, int n, uint32_t *path)
{
    size_t total = 0;
    for (int e = 0; e < n; e++)
        total += ps[e].n;
    t->nodes = malloc((total ? total : 1) * sizeof *t->nodes);
    t->toks = malloc((n > 0 ? (size_t)n : 1) * sizeof *t->toks);
    if (!t->nodes || !t->toks)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory for the token trie");
    int cur = 0;
    for (int e = 0; e < n; e++) {
        const piece *p = &ps[e];
        size_t lcp = 0;
        t->toks[e] = p->id;
        if (e > 0) {
            const piece *q = &ps[e - 1];
            while (lcp < p->n && lcp < q->n && p->s[lcp] == q->s[lcp])
                lcp++;
            if (lcp == p->n && lcp == q->n) { /* same bytes as the last token */
                t->nodes[path[cur]].ntok++;
                continue;
            }
        }
        for (; cur > (int)lcp; cur--)
            t->nodes[path[cur]].skip = (uint32_t)t->n_nodes;
        for (size_t d = lcp + 1; d <= p->n; d++) {
            path[d] = (uint32_t)t->n_nodes;
            t->nodes[t->n_nodes++] = (tnode){0, 0, 0, (uint16_t)d, (uint8_t)p->s[d - 1]};
        }
        cur = (int)p->n;
        t->nodes[path[cur]].tok = (uint32_t)e;
        t->nodes[path[cur]].ntok = 1;
    }
    for (; cur > 0; cur--)
        t->nodes[path[cur]].skip = (uint32_t)t->n_nodes;
    tnode *shrunk = realloc(t->nodes, (size_t)(t->n_nodes ? t->n_nodes : 1) * sizeof *shrunk);
    if (shrunk)
        t->nodes = shrunk;
    return SLM_OK;
}

/* The plain tokens by character count (a counting sort). */
static slm_status plain_list(slm_token_trie *t, const piece *ps, const int *chars, int np)
{
    t->plain_upto = calloc((size_t)t->max_chars + 2, sizeof *t->plain_upto);
    t->plain = malloc((size_t)(t->n_plain ? t->n_plain : 1) * sizeof *t->plain);
    if (!t->plain_upto || !t->plain)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory for the token trie");
    for (int e = 0; e < np; e++)
        if (chars[e] >= 0)
            t->plain_upto[chars[e] + 1]++;
    for (int c = 1; c <= t->max_chars + 1; c++)
        t->plain_upto[c] += t->plain_upto[c - 1];
    /* plain_upto[c] is now where tokens of c characters start; fill, then
     * each entry has moved on to where those of c + 1 start. */
    for (int e = 0; e < np; e++)
        if (chars[e] >= 0)
            t->plain[t->plain_upto[chars[e]]++] = ps[e].id;
    return SLM_OK;
}

slm_status slm_token_trie_create(int n, const char *const *pieces, const size_t *lens,
                                 const uint8_t *kind, slm_token_trie **out)
{
    *out = NULL;
    slm_token_trie *t = calloc(1, sizeof *t);
    piece *ps = malloc((size_t)(n > 0 ? n : 1) * sizeof *ps);
    piece *other = malloc((size_t)(n > 0 ? n : 1) * sizeof *other);
    int *chars = malloc((size_t)(n > 0 ? n : 1) * sizeof *chars);
    uint32_t *path = NULL;
    slm_status st = SLM_OK;
    if (!t || !ps || !other || !chars) {
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory for the token trie");
        goto out;
    }
    t->n_vocab = n;
    int np = 0, no = 0;
    for (int i = 0; i < n; i++) {
        if (kind[i] == SLM_TRIE_END)
            t->n_ends++;
        if (kind[i] != SLM_TRIE_TEXT || lens[i] == 0)
            continue;
        if (lens[i] > 65535) {
            st = slm_error(SLM_STATUS_INVALID_ARGUMENT, "grammar: token %d is %zu bytes long", i,
                           lens[i]);
            goto out;
        }
        ps[np++] = (piece){pieces[i], lens[i], i};
        if ((int)lens[i] > t->max_len)
            t->max_len = (int)lens[i];
    }
    qsort(ps, (size_t)np, sizeof *ps, piece_cmp);
    for (int e = 0; e < np; e++) {
        chars[e] = plain_chars(ps[e].s, ps[e].n);
        if (chars[e] < 0)
            other[no++] = ps[e];
        else if (chars[e] > t->max_chars)
            t->max_chars = chars[e];
        t->n_plain += chars[e] >= 0;
    }
    t->ends = malloc((size_t)(t->n_ends ? t->n_ends : 1) * sizeof *t->ends);
    path = malloc((size_t)(t->max_len + 1) * sizeof *path);
    if (!t->ends || !path) {
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "grammar: out of memory for the token trie");
        goto out;
    }
    st = trie_lay(&t->all, ps, np, path);
    if (!st)
        st = trie_lay(&t->other, other, no, path);
    if (!st)
        st = plain_list(t, ps, chars, np);
    int ne = 0;
    for (int i = 0; i < n; i++)
        if (kind[i] == SLM_TRIE_END)
            t->ends[ne++] = i;
out:
    free(path);
    free(ps);
    free(other);
    free(chars);
    if (st)
        slm_token_trie_free(t);
    else
        *out = t;
    return st;
}

int slm_token_trie_n_nodes(const slm_token_trie *t) { return t->all.n_nodes; }
int slm_token_trie_scratch(const slm_token_trie *t) { return t->max_len + 1; }

/* Marks the tokens of a layout whose bytes the state takes: depth first,
 * a refused prefix skips its subtree. */
static int trie_walk(const tlayout *t, const slm_grammar_state *s, slm_grammar_state *scratch,
                     uint8_t *allowed)
{
    int count = 0;
    slm_grammar_state_copy(&scratch[0], s);
    for (int i = 0; i < t->n_nodes;) {
        const tnode *nd = &t->nodes[i];
        slm_grammar_state *st = &scratch[nd->depth];
        slm_grammar_state_copy(st, &scratch[nd->depth - 1]);
        if (!step(st, nd->byte)) {
            i = (int)nd->skip;
            continue;
        }
        for (uint32_t k = 0; k < nd->ntok; k++)
            allowed[t->toks[nd->tok + k]] = 1;
        count += (int)nd->ntok;
        i++;
    }
    return count;
}

/* Inside a string's text, between characters: how many more it may hold. */
static bool in_string_text(const slm_grammar_state *s, int *room)
{
    if (s->depth == 0)
        return false;
    const slm_grammar_frame *f = &s->f[s->depth - 1];
    const node *nd = &s->g->nodes[f->node];
    if (nd->kind != N_STR || f->ph != 1 || f->u)
        return false;
    *room = nd->b < 0 ? INT32_MAX : nd->b - f->pos;
    return true;
}

int slm_token_trie_mask(const slm_token_trie *t, const slm_grammar_state *s,
                        slm_grammar_state *scratch, uint8_t *allowed)
{
    memset(allowed, 0, (size_t)t->n_vocab);
    int count, room;
    if (in_string_text(s, &room)) {
        count = trie_walk(&t->other, s, scratch, allowed);
        int n = room > t->max_chars ? t->n_plain : t->plain_upto[room];
        for (int k = 0; k < n; k++)
            allowed[t->plain[k]] = 1;
        count += n;
    } else {
        count = trie_walk(&t->all, s, scratch, allowed);
    }
    if (slm_grammar_can_end(s))
        for (int k = 0; k < t->n_ends; k++) {
            allowed[t->ends[k]] = 1;
            count++;
        }
    return count;
}
