/*
 * kvcache.c — the paged KV block manager (see kvcache.h for the model).
 *
 * Data structures:
 *   - blocks[n_blocks]: refcount, fill, free-list links, hash-chain link and
 *     the identity of the prefix it was filled after; tokens[n_blocks ×
 *     block_size] holds the token ids each block stores.
 *   - One doubly linked free list of the refcount-0 blocks, head = next to be
 *     evicted. Blocks with nothing reusable are pushed at the head, released
 *     registered blocks at the tail (most recently used).
 *   - A hash table (buckets of singly linked chains) of registered full
 *     blocks, keyed by the chain hash of their prefix and tokens.
 *   - seqs[]: per-sequence block tables, ids recycled through a stack.
 *
 * Exact prefix identity: every full block carries a "canonical" identity,
 * (id, generation) of the registered block holding the same prefix — itself
 * if it is registered, the one it duplicates otherwise. A registered block
 * records the canonical identity of the block before it. A block's
 * generation changes whenever it is taken for new contents, so a stale
 * parent reference can never match. Lookup compares tokens and the parent
 * identity, so equal matches mean equal prefixes, whatever the hash does.
 */
#include "kvcache.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

typedef struct kv_block {
    int32_t ref;        /* sequences whose table holds this block */
    int32_t n_filled;   /* token slots written (block_size when full) */
    int32_t prev, next; /* free-list links (-1 = none), only while ref == 0 */
    int32_t hnext;      /* next block in its hash bucket, only while hashed */
    int32_t parent;     /* canonical id of the block before it (-1 = first) */
    uint32_t parent_gen;
    uint32_t gen;       /* bumped each time the block is taken for new contents */
    int32_t canon;      /* registered block with the same prefix (-1: not full) */
    uint32_t canon_gen;
    uint8_t hashed;     /* registered in the hash table */
    uint64_t hash;      /* chain hash, valid once full */
    uint64_t filled_step; /* step in which it became full */
} kv_block;

typedef struct kv_seq {
    int live;
    int n_tokens;
    int n_table, cap_table;
    int32_t *table;
} kv_seq;

struct slm_kvcache {
    int n_blocks, block_size;
    kv_block *blocks;
    int32_t *tokens; /* [n_blocks * block_size] */

    int32_t free_head, free_tail;
    int n_free;   /* blocks on the free list */
    int n_cached; /* of which registered */

    int32_t *buckets; /* [n_buckets], -1 = empty */
    uint32_t n_buckets; /* power of two */

    kv_seq *seqs;
    int n_seqs, cap_seqs; /* ids 0..n_seqs-1 have been handed out */
    int32_t *dead_ids;    /* recycled ids, a stack */
    int n_dead;

    slm_kv_copy *pending, *taken; /* copies not yet taken / last taken */
    int n_pending, n_taken, cap_copies;

    uint64_t step;
};

/* --- hashing ------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Hash of a block of tokens chained after the hash of its prefix. */
static uint64_t chain_hash(uint64_t prefix, const int32_t *tok, int n)
{
    uint64_t h = mix64(prefix ^ 0x9e3779b97f4a7c15ULL);
    for (int i = 0; i < n; i++)
        h = mix64(h + (uint32_t)tok[i]);
    return h;
}

#define ROOT_HASH 0x5bd1e9955bd1e995ULL

static int32_t *block_tokens(const slm_kvcache *kc, int b)
{
    return kc->tokens + (size_t)b * (size_t)kc->block_size;
}

/* --- free list ---------------------------------------------------------- */

static void list_remove(slm_kvcache *kc, int b)
{
    kv_block *k = &kc->blocks[b];
    if (k->prev >= 0)
        kc->blocks[k->prev].next = k->next;
    else
        kc->free_head = k->next;
    if (k->next >= 0)
        kc->blocks[k->next].prev = k->prev;
    else
        kc->free_tail = k->prev;
    k->prev = k->next = -1;
    kc->n_free--;
    if (k->hashed)
        kc->n_cached--;
}

static void list_push(slm_kvcache *kc, int b, int at_head)
{
    kv_block *k = &kc->blocks[b];
    if (at_head) {
        k->prev = -1, k->next = kc->free_head;
        if (kc->free_head >= 0)
            kc->blocks[kc->free_head].prev = b;
        else
            kc->free_tail = b;
        kc->free_head = b;
    } else {
        k->next = -1, k->prev = kc->free_tail;
        if (kc->free_tail >= 0)
            kc->blocks[kc->free_tail].next = b;
        else
            kc->free_head = b;
        kc->free_tail = b;
    }
    kc->n_free++;
    if (k->hashed)
        kc->n_cached++;
}

/* --- hash table --------------------------------------------------------- */

static void hash_insert(slm_kvcache *kc, int b)
{
    uint32_t i = (uint32_t)kc->blocks[b].hash & (kc->n_buckets - 1);
    kc->blocks[b].hnext = kc->buckets[i];
    kc->buckets[i] = b;
    kc->blocks[b].hashed = 1;
}

static void hash_remove(slm_kvcache *kc, int b)
{
    uint32_t i = (uint32_t)kc->blocks[b].hash & (kc->n_buckets - 1);
    int32_t *p = &kc->buckets[i];
    while (*p != b) {
        SLM_ASSERT(*p >= 0);
        p = &kc->blocks[*p].hnext;
    }
    *p = kc->blocks[b].hnext;
    kc->blocks[b].hnext = -1;
    kc->blocks[b].hashed = 0;
}

/* The registered block holding `tok` after the prefix whose canonical
 * identity is (parent, parent_gen), or -1. */
static int hash_find(const slm_kvcache *kc, uint64_t h, int parent, uint32_t parent_gen,
                     const int32_t *tok)
{
    for (int b = kc->buckets[(uint32_t)h & (kc->n_buckets - 1)]; b >= 0; b = kc->blocks[b].hnext) {
        const kv_block *k = &kc->blocks[b];
        if (k->hash == h && k->parent == parent && (parent < 0 || k->parent_gen == parent_gen) &&
            memcmp(block_tokens(kc, b), tok, sizeof(int32_t) * (size_t)kc->block_size) == 0)
            return b;
    }
    return -1;
}

/* --- block life cycle ----------------------------------------------------- */

/* Takes the head of the free list (the eviction victim) for new contents.
 * The caller has checked that the list is not empty. */
static int block_take(slm_kvcache *kc)
{
    int b = kc->free_head;
    SLM_ASSERT(b >= 0);
    list_remove(kc, b);
    kv_block *k = &kc->blocks[b];
    if (k->hashed)
        hash_remove(kc, b); /* evicted: its prefix is forgotten */
    k->gen++;
    k->ref = 1;
    k->n_filled = 0;
    k->canon = -1;
    k->parent = -1;
    return b;
}

/* Drops pending copies into b: b is being released, nobody will read them. */
static void drop_copies_to(slm_kvcache *kc, int b)
{
    int w = 0;
    for (int r = 0; r < kc->n_pending; r++)
        if (kc->pending[r].dst != b)
            kc->pending[w++] = kc->pending[r];
    kc->n_pending = w;
}

static void block_release(slm_kvcache *kc, int b)
{
    kv_block *k = &kc->blocks[b];
    SLM_ASSERT(k->ref > 0);
    if (--k->ref > 0)
        return;
    drop_copies_to(kc, b);
    /* Registered blocks become the most recently used cached blocks; the
     * rest hold nothing anyone can find, so they are reused first. */
    list_push(kc, b, !k->hashed);
}

/* Called when block b, at index idx of seq s's table, has just become full:
 * computes its chain hash and registers it unless an identical registered
 * block exists, in which case b takes that block's identity. */
static void block_seal(slm_kvcache *kc, const kv_seq *s, int idx, int b)
{
    kv_block *k = &kc->blocks[b];
    uint64_t prefix = ROOT_HASH;
    int parent = -1;
    uint32_t parent_gen = 0;
    if (idx > 0) {
        const kv_block *p = &kc->blocks[s->table[idx - 1]];
        prefix = p->hash, parent = p->canon, parent_gen = p->canon_gen;
    }
    k->hash = chain_hash(prefix, block_tokens(kc, b), kc->block_size);
    k->parent = parent, k->parent_gen = parent_gen;
    k->filled_step = kc->step;
    int dup = hash_find(kc, k->hash, parent, parent_gen, block_tokens(kc, b));
    if (dup >= 0) {
        k->canon = dup, k->canon_gen = kc->blocks[dup].gen;
    } else {
        hash_insert(kc, b);
        k->canon = b, k->canon_gen = k->gen;
    }
}

/* --- create / free -------------------------------------------------------- */

slm_status slm_kvcache_create(int n_blocks, int block_size, slm_kvcache **out)
{
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "kvcache: out is NULL");
    *out = NULL;
    if (n_blocks < 1 || block_size < 1 || n_blocks > INT32_MAX / block_size)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "kvcache: bad pool shape (%d blocks of %d tokens)", n_blocks, block_size);
    slm_kvcache *kc = calloc(1, sizeof *kc);
    if (!kc)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "kvcache: out of host memory");
    kc->n_blocks = n_blocks, kc->block_size = block_size;
    kc->n_buckets = 1;
    while (kc->n_buckets < (uint32_t)n_blocks)
        kc->n_buckets <<= 1;
    kc->blocks = calloc((size_t)n_blocks, sizeof *kc->blocks);
    kc->tokens = calloc((size_t)n_blocks * (size_t)block_size, sizeof *kc->tokens);
    kc->buckets = malloc(sizeof *kc->buckets * kc->n_buckets);
    if (!kc->blocks || !kc->tokens || !kc->buckets) {
        slm_kvcache_free(kc);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "kvcache: out of host memory for %d blocks",
                         n_blocks);
    }
    for (uint32_t i = 0; i < kc->n_buckets; i++)
        kc->buckets[i] = -1;
    kc->free_head = kc->free_tail = -1;
    for (int b = 0; b < n_blocks; b++) {
        kc->blocks[b].hnext = -1;
        kc->blocks[b].canon = kc->blocks[b].parent = -1;
        list_push(kc, b, 0); /* ascending ids, so allocation order is predictable */
    }
    kc->step = 1;
    *out = kc;
    return SLM_OK;
}

void slm_kvcache_free(slm_kvcache *kc)
{
    if (!kc)
        return;
    for (int i = 0; i < kc->n_seqs; i++)
        free(kc->seqs[i].table);
    free(kc->seqs);
    free(kc->dead_ids);
    free(kc->pending);
    free(kc->taken);
    free(kc->buckets);
    free(kc->tokens);
    free(kc->blocks);
    free(kc);
}

int slm_kvcache_block_size(const slm_kvcache *kc) { return kc->block_size; }
int slm_kvcache_n_blocks(const slm_kvcache *kc) { return kc->n_blocks; }

/* --- sequences ------------------------------------------------------------ */

static kv_seq *seq_get(const slm_kvcache *kc, int id)
{
    if (id < 0 || id >= kc->n_seqs || !kc->seqs[id].live)
        return NULL;
    return &kc->seqs[id];
}

static int ensure_table(kv_seq *s, int n)
{
    if (n <= s->cap_table)
        return 1;
    int cap = s->cap_table ? s->cap_table : 4;
    while (cap < n)
        cap *= 2;
    int32_t *t = realloc(s->table, sizeof *t * (size_t)cap);
    if (!t)
        return 0;
    s->table = t, s->cap_table = cap;
    return 1;
}

/* Reserves a sequence id with room for `n_table` blocks; the id is not live
 * until the caller sets live. Returns -1 when host memory runs out. */
static int seq_reserve(slm_kvcache *kc, int n_table)
{
    int id;
    if (kc->n_dead > 0) {
        id = kc->dead_ids[kc->n_dead - 1];
    } else {
        if (kc->n_seqs == kc->cap_seqs) {
            int cap = kc->cap_seqs ? kc->cap_seqs * 2 : 16;
            kv_seq *s = realloc(kc->seqs, sizeof *s * (size_t)cap);
            if (!s)
                return -1;
            int32_t *d = realloc(kc->dead_ids, sizeof *d * (size_t)cap);
            if (!d) {
                kc->seqs = s; /* keep the larger array; cap_seqs unchanged is still safe */
                return -1;
            }
            memset(s + kc->cap_seqs, 0, sizeof *s * (size_t)(cap - kc->cap_seqs));
            kc->seqs = s, kc->dead_ids = d, kc->cap_seqs = cap;
        }
        id = kc->n_seqs;
    }
    if (!ensure_table(&kc->seqs[id], n_table))
        return -1;
    return id;
}

/* Marks a reserved id live. */
static void seq_commit_id(slm_kvcache *kc, int id)
{
    if (id == kc->n_seqs)
        kc->n_seqs++;
    else
        kc->n_dead--; /* it was the top of the dead stack */
    kc->seqs[id].live = 1;
}

slm_status slm_kvcache_seq_create(slm_kvcache *kc, const int32_t *tokens, int n_tokens, int *seq,
                                  int *n_cached)
{
    if (!kc || !seq || n_tokens < 0 || (n_tokens > 0 && !tokens))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "kvcache: bad seq_create arguments");
    int bs = kc->block_size;
    int n_full = tokens ? n_tokens / bs : 0;
    int id = seq_reserve(kc, n_full > 0 ? n_full : 1);
    if (id < 0)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "kvcache: out of host memory for a sequence");
    kv_seq *s = &kc->seqs[id];

    /* Walk the prompt's full blocks down the chain of registered blocks. */
    int n = 0, parent = -1;
    uint32_t parent_gen = 0;
    uint64_t h = ROOT_HASH;
    for (; n < n_full; n++) {
        const int32_t *tok = tokens + (size_t)n * (size_t)bs;
        h = chain_hash(h, tok, bs);
        int b = hash_find(kc, h, parent, parent_gen, tok);
        if (b < 0 || kc->blocks[b].filled_step >= kc->step)
            break; /* not there, or its K/V is written only by the current step */
        s->table[n] = b;
        parent = b, parent_gen = kc->blocks[b].gen;
    }
    for (int i = 0; i < n; i++) {
        int b = s->table[i];
        if (kc->blocks[b].ref++ == 0)
            list_remove(kc, b);
    }
    s->n_table = n;
    s->n_tokens = n * bs;
    seq_commit_id(kc, id);
    *seq = id;
    if (n_cached)
        *n_cached = n * bs;
    return SLM_OK;
}

slm_status slm_kvcache_seq_fork(slm_kvcache *kc, int src, int *seq)
{
    if (!kc || !seq || !seq_get(kc, src))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "kvcache: fork of sequence %d, which is not live",
                         src);
    int id = seq_reserve(kc, kc->seqs[src].n_table > 0 ? kc->seqs[src].n_table : 1);
    if (id < 0)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "kvcache: out of host memory for a sequence");
    kv_seq *s = &kc->seqs[id], *p = &kc->seqs[src]; /* reserve may have moved seqs */
    memcpy(s->table, p->table, sizeof *s->table * (size_t)p->n_table);
    s->n_table = p->n_table;
    s->n_tokens = p->n_tokens;
    for (int i = 0; i < s->n_table; i++)
        kc->blocks[s->table[i]].ref++;
    seq_commit_id(kc, id);
    *seq = id;
    return SLM_OK;
}

void slm_kvcache_seq_free(slm_kvcache *kc, int seq)
{
    kv_seq *s = kc ? seq_get(kc, seq) : NULL;
    if (!s)
        return;
    /* Last block first: a chain's later blocks are useless without the
     * earlier ones, so they should be evicted first. */
    for (int i = s->n_table - 1; i >= 0; i--)
        block_release(kc, s->table[i]);
    s->n_table = 0, s->n_tokens = 0, s->live = 0;
    kc->dead_ids[kc->n_dead++] = seq;
}

/* --- appending ------------------------------------------------------------ */

static int needs_cow(const slm_kvcache *kc, const kv_seq *s)
{
    return s->n_tokens % kc->block_size != 0 && kc->blocks[s->table[s->n_table - 1]].ref > 1;
}

int slm_kvcache_blocks_needed(const slm_kvcache *kc, int seq, int n_tokens)
{
    const kv_seq *s = seq_get(kc, seq);
    if (!s || n_tokens < 0)
        return -1;
    if (n_tokens == 0)
        return 0;
    int64_t bs = kc->block_size;
    int64_t total = ((int64_t)s->n_tokens + n_tokens + bs - 1) / bs;
    int64_t need = total - s->n_table + needs_cow(kc, s);
    return need > INT_MAX ? INT_MAX : (int)need;
}

int slm_kvcache_can_append(const slm_kvcache *kc, int seq, int n_tokens)
{
    int need = slm_kvcache_blocks_needed(kc, seq, n_tokens);
    return need >= 0 && need <= kc->n_free;
}

int slm_kvcache_room(const slm_kvcache *kc, int seq)
{
    const kv_seq *s = seq_get(kc, seq);
    if (!s)
        return 0;
    int bs = kc->block_size, part = s->n_tokens % bs, avail = kc->n_free;
    int64_t room = 0;
    if (part != 0) {
        if (needs_cow(kc, s)) {
            if (avail == 0)
                return 0;
            avail--;
        }
        room = bs - part;
    }
    room += (int64_t)avail * bs;
    return room > INT_MAX ? INT_MAX : (int)room;
}

static int ensure_copies(slm_kvcache *kc, int n)
{
    if (n <= kc->cap_copies)
        return 1;
    int cap = kc->cap_copies ? kc->cap_copies * 2 : 16;
    while (cap < n)
        cap *= 2;
    slm_kv_copy *p = realloc(kc->pending, sizeof *p * (size_t)cap);
    if (!p)
        return 0;
    kc->pending = p;
    slm_kv_copy *t = realloc(kc->taken, sizeof *t * (size_t)cap);
    if (!t)
        return 0;
    kc->taken = t, kc->cap_copies = cap;
    return 1;
}

slm_status slm_kvcache_append(slm_kvcache *kc, int seq, const int32_t *tokens, int n)
{
    kv_seq *s = kc ? seq_get(kc, seq) : NULL;
    if (!s || n < 0 || (n > 0 && !tokens))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "kvcache: append %d tokens to sequence %d",
                         n, seq);
    if (n == 0)
        return SLM_OK;
    int need = slm_kvcache_blocks_needed(kc, seq, n);
    if (need > kc->n_free)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY,
                         "kvcache: %d blocks needed for %d tokens, %d available", need, n,
                         kc->n_free);
    int bs = kc->block_size;
    int n_table_after = (int)(((int64_t)s->n_tokens + n + bs - 1) / bs);
    int cow = needs_cow(kc, s);
    if (!ensure_table(s, n_table_after) || (cow && !ensure_copies(kc, kc->n_pending + 1)))
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "kvcache: out of host memory");

    if (cow) {
        int src = s->table[s->n_table - 1], dst = block_take(kc);
        memcpy(block_tokens(kc, dst), block_tokens(kc, src),
               sizeof(int32_t) * (size_t)kc->blocks[src].n_filled);
        kc->blocks[dst].n_filled = kc->blocks[src].n_filled;
        kc->pending[kc->n_pending++] = (slm_kv_copy){src, dst};
        block_release(kc, src); /* still referenced by the sequence it shares with */
        s->table[s->n_table - 1] = dst;
    }
    for (int i = 0; i < n; i++) {
        int pos = s->n_tokens, idx = pos / bs;
        if (idx == s->n_table)
            s->table[s->n_table++] = block_take(kc);
        int b = s->table[idx];
        SLM_ASSERT(kc->blocks[b].ref == 1 && kc->blocks[b].n_filled == pos % bs);
        block_tokens(kc, b)[pos % bs] = tokens[i];
        s->n_tokens++;
        if (++kc->blocks[b].n_filled == bs)
            block_seal(kc, s, idx, b);
    }
    return SLM_OK;
}

void slm_kvcache_step_begin(slm_kvcache *kc) { kc->step++; }

/* --- queries -------------------------------------------------------------- */

int slm_kvcache_seq_len(const slm_kvcache *kc, int seq)
{
    const kv_seq *s = seq_get(kc, seq);
    return s ? s->n_tokens : -1;
}

int32_t slm_kvcache_slot_of(const slm_kvcache *kc, int seq, int pos)
{
    const kv_seq *s = seq_get(kc, seq);
    if (!s || pos < 0 || pos >= s->n_tokens)
        return -1;
    return s->table[pos / kc->block_size] * kc->block_size + pos % kc->block_size;
}

slm_status slm_kvcache_block_table(const slm_kvcache *kc, int seq, const int32_t **blocks,
                                   int *n_blocks)
{
    const kv_seq *s = seq_get(kc, seq);
    if (!s)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "kvcache: sequence %d is not live", seq);
    *blocks = s->table;
    *n_blocks = s->n_table;
    return SLM_OK;
}

void slm_kvcache_take_copies(slm_kvcache *kc, const slm_kv_copy **copies, int *n_copies)
{
    slm_kv_copy *t = kc->taken;
    kc->taken = kc->pending, kc->n_taken = kc->n_pending;
    kc->pending = t, kc->n_pending = 0;
    *copies = kc->taken;
    *n_copies = kc->n_taken;
}

void slm_kvcache_stats_get(const slm_kvcache *kc, slm_kvcache_stats *st)
{
    st->total = kc->n_blocks;
    st->used = kc->n_blocks - kc->n_free;
    st->cached = kc->n_cached;
    st->free = kc->n_free - kc->n_cached;
}

int slm_kvcache_block_refcount(const slm_kvcache *kc, int block)
{
    return block >= 0 && block < kc->n_blocks ? kc->blocks[block].ref : -1;
}

const int32_t *slm_kvcache_block_tokens(const slm_kvcache *kc, int block, int *n_filled)
{
    if (block < 0 || block >= kc->n_blocks)
        return NULL;
    if (n_filled)
        *n_filled = kc->blocks[block].n_filled;
    return block_tokens(kc, block);
}

int slm_kvcache_block_is_cached(const slm_kvcache *kc, int block)
{
    return block >= 0 && block < kc->n_blocks && kc->blocks[block].hashed;
}

/* --- invariant check ------------------------------------------------------ */

static slm_status check_seqs(const slm_kvcache *kc, int32_t *refs)
{
    int bs = kc->block_size;
    for (int id = 0; id < kc->n_seqs; id++) {
        const kv_seq *s = &kc->seqs[id];
        if (!s->live)
            continue;
        if (s->n_table != (s->n_tokens + bs - 1) / bs)
            return slm_error(SLM_STATUS_INTERNAL, "kvcache: seq %d has %d tokens in %d blocks", id,
                             s->n_tokens, s->n_table);
        for (int i = 0; i < s->n_table; i++) {
            int b = s->table[i];
            if (b < 0 || b >= kc->n_blocks)
                return slm_error(SLM_STATUS_INTERNAL, "kvcache: seq %d holds block id %d", id, b);
            refs[b]++;
            int want = i < s->n_table - 1 ? bs : s->n_tokens - i * bs;
            if (kc->blocks[b].n_filled != want)
                return slm_error(SLM_STATUS_INTERNAL,
                                 "kvcache: block %d (seq %d, index %d) has %d tokens, expected %d",
                                 b, id, i, kc->blocks[b].n_filled, want);
        }
    }
    return SLM_OK;
}

static slm_status check_free_list(const slm_kvcache *kc, const int32_t *refs, uint8_t *seen)
{
    int count = 0, cached = 0, prev = -1;
    for (int b = kc->free_head; b >= 0; b = kc->blocks[b].next) {
        if (seen[b] || count > kc->n_blocks)
            return slm_error(SLM_STATUS_INTERNAL, "kvcache: free list loops at block %d", b);
        if (kc->blocks[b].prev != prev)
            return slm_error(SLM_STATUS_INTERNAL, "kvcache: free list back link broken at %d", b);
        if (refs[b] != 0)
            return slm_error(SLM_STATUS_INTERNAL, "kvcache: block %d is free but in use", b);
        seen[b] = 1, count++, cached += kc->blocks[b].hashed, prev = b;
    }
    if (prev != kc->free_tail || count != kc->n_free || cached != kc->n_cached)
        return slm_error(SLM_STATUS_INTERNAL, "kvcache: free list counts %d/%d, cached %d/%d", count,
                         kc->n_free, cached, kc->n_cached);
    return SLM_OK;
}

slm_status slm_kvcache_check(const slm_kvcache *kc)
{
    slm_status st = SLM_OK;
    int32_t *refs = calloc((size_t)kc->n_blocks, sizeof *refs);
    uint8_t *seen = calloc((size_t)kc->n_blocks, 1);
    if (!refs || !seen) {
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "kvcache: check out of memory");
        goto done;
    }
    if ((st = check_seqs(kc, refs)) != SLM_OK || (st = check_free_list(kc, refs, seen)) != SLM_OK)
        goto done;
    for (int b = 0; b < kc->n_blocks; b++) {
        const kv_block *k = &kc->blocks[b];
        if (k->ref != refs[b]) {
            st = slm_error(SLM_STATUS_INTERNAL, "kvcache: block %d refcount %d, referenced %d", b,
                           k->ref, refs[b]);
            goto done;
        }
        if (k->ref == 0 && !seen[b]) {
            st = slm_error(SLM_STATUS_INTERNAL, "kvcache: block %d unreferenced but not free", b);
            goto done;
        }
        if (k->hashed && (k->n_filled != kc->block_size ||
                          hash_find(kc, k->hash, k->parent, k->parent_gen, block_tokens(kc, b)) != b)) {
            st = slm_error(SLM_STATUS_INTERNAL, "kvcache: registered block %d is not findable", b);
            goto done;
        }
    }
    for (int i = 0; i < kc->n_pending; i++)
        if (kc->blocks[kc->pending[i].dst].ref == 0) {
            st = slm_error(SLM_STATUS_INTERNAL, "kvcache: pending copy into free block %d",
                           kc->pending[i].dst);
            goto done;
        }
done:
    free(refs);
    free(seen);
    return st;
}
