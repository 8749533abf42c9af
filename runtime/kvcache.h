/*
 * kvcache.h — the paged KV block manager: hands out block ids of the KV pool
 * to sequences. The pool's memory itself is a backend slm_kv (backend.h);
 * this module never touches it. It only decides which block holds which
 * tokens, so it is plain C with no device dependency.
 *
 * Model:
 *   - The pool has n_blocks blocks of block_size token slots. Position p of a
 *     sequence lives in slot table[p / block_size] * block_size + p % block_size.
 *   - Each sequence owns an append-only block table. Blocks are refcounted:
 *     a fork shares all of its parent's blocks; prefix reuse shares full
 *     blocks between sequences whose token prefixes are equal.
 *   - A FULL block is registered under a hash of its tokens chained with the
 *     hash of its prefix. A new sequence whose tokens start with registered
 *     blocks reuses them and is told how many tokens are already computed.
 *     Matches are exact: stored tokens are compared and each block remembers
 *     the identity (id and generation) of the block before it.
 *   - A block whose refcount drops to zero goes on the free list, which is
 *     kept in eviction order: blocks holding nothing reusable first, then
 *     registered ("cached") blocks least recently used first. A cached block
 *     stays findable until a new block is needed and it reaches the head.
 *     Blocks with refcount > 0 are never on the free list, so eviction never
 *     takes a block in use.
 *   - Appending into a partial last block shared with another sequence
 *     (after a fork) copies it first (copy-on-write): the manager gives the
 *     sequence a fresh block and records a (src, dst) pair; the engine must
 *     copy those blocks on the device, in order, before running the step.
 *   - Blocks filled during the current step (since slm_kvcache_step_begin)
 *     are not offered for prefix reuse: their K/V is written only when the
 *     step runs.
 *
 * Failure: every mutating call either succeeds completely or returns a status
 * and leaves the manager unchanged. Threads: none; the engine serialises
 * access.
 */
#ifndef SLM_KVCACHE_H
#define SLM_KVCACHE_H

#include <stdint.h>

#include "backend.h"
#include "slm.h"

typedef struct slm_kvcache slm_kvcache;

typedef struct slm_kvcache_stats {
    int total;  /* blocks in the pool */
    int used;   /* refcount > 0 */
    int cached; /* refcount 0, still holding a reusable full block */
    int free;   /* refcount 0, holding nothing reusable */
} slm_kvcache_stats;

/* slm_kv_copy (a block copy the engine performs before the step, dst :=
 * src) is backend.h's, so a plan's copies go to the kv_copy op as they are. */

/* Creates a manager for n_blocks blocks of block_size tokens (both ≥ 1).
 * INVALID_ARGUMENT on bad sizes, OUT_OF_MEMORY if host memory runs out. */
slm_status slm_kvcache_create(int n_blocks, int block_size, slm_kvcache **out);
void slm_kvcache_free(slm_kvcache *kc); /* accepts NULL */

int slm_kvcache_block_size(const slm_kvcache *kc);
int slm_kvcache_n_blocks(const slm_kvcache *kc);

/* Creates a sequence. If tokens is non-NULL, its first n_tokens are matched
 * against registered full blocks; matched blocks are shared (refcount + 1)
 * and become the start of the sequence, which then holds *n_cached tokens
 * (a multiple of block_size, ≤ n_tokens). A caller that needs the logits of
 * the last prompt token passes n_tokens = prompt length − 1 so that at least
 * that token is computed. *seq receives the sequence id (≥ 0).
 * OUT_OF_MEMORY (host) leaves the manager unchanged. */
slm_status slm_kvcache_seq_create(slm_kvcache *kc, const int32_t *tokens, int n_tokens,
                                  int *seq, int *n_cached);

/* A new sequence sharing all of src's blocks and tokens (parallel sampling,
 * beam search). The shared partial last block is copied on first append. */
slm_status slm_kvcache_seq_fork(slm_kvcache *kc, int src, int *seq);

/* Releases the sequence's blocks (registered full blocks stay cached) and
 * its id. Accepts an id that is not live (does nothing).
 * NOTE: call it between steps, after any step that wrote the sequence's K/V
 * has run: a full block it releases stays findable as a computed prefix. */
void slm_kvcache_seq_free(slm_kvcache *kc, int seq);

/* Number of blocks append(seq, n_tokens) would take from the free list
 * (new blocks plus a copy-on-write of the last block); -1 if seq is not
 * live or n_tokens < 0. */
int slm_kvcache_blocks_needed(const slm_kvcache *kc, int seq, int n_tokens);
/* Whether append(seq, n_tokens) would succeed. */
int slm_kvcache_can_append(const slm_kvcache *kc, int seq, int n_tokens);
/* Tokens that can be appended to seq with the blocks now available. */
int slm_kvcache_room(const slm_kvcache *kc, int seq);

/* Appends n tokens (ids in tokens[0..n)) to seq, taking blocks as needed
 * (evicting cached blocks LRU first) and registering blocks that become
 * full. OUT_OF_MEMORY with the sequence and pool unchanged when the pool
 * has too few blocks; INVALID_ARGUMENT for a dead seq or n < 0. */
slm_status slm_kvcache_append(slm_kvcache *kc, int seq, const int32_t *tokens, int n);

/* Marks the start of a new step: blocks filled before now may be reused by
 * prefix matching (their K/V has been written). */
void slm_kvcache_step_begin(slm_kvcache *kc);

/* Tokens held by seq (-1 if not live). */
int slm_kvcache_seq_len(const slm_kvcache *kc, int seq);
/* Token slot of position pos of seq, or -1 if pos is outside the sequence. */
int32_t slm_kvcache_slot_of(const slm_kvcache *kc, int seq, int pos);
/* The sequence's block table (valid until the next mutating call).
 * INVALID_ARGUMENT if seq is not live. */
slm_status slm_kvcache_block_table(const slm_kvcache *kc, int seq, const int32_t **blocks,
                                   int *n_blocks);

/* The block copies recorded since the last call, in the order the engine
 * must perform them; the pointer stays valid until the next mutating call.
 * Calling it clears the list. Copies whose destination was freed before
 * being taken are dropped. */
void slm_kvcache_take_copies(slm_kvcache *kc, const slm_kv_copy **copies, int *n_copies);

void slm_kvcache_stats_get(const slm_kvcache *kc, slm_kvcache_stats *st);

/* Introspection for tests and debugging. */
int slm_kvcache_block_refcount(const slm_kvcache *kc, int block);
/* The token ids stored in a block so far (NULL for a bad id). */
const int32_t *slm_kvcache_block_tokens(const slm_kvcache *kc, int block, int *n_filled);
/* Whether the block is registered for prefix reuse. */
int slm_kvcache_block_is_cached(const slm_kvcache *kc, int block);

/* Walks every structure and checks the invariants (refcounts equal table
 * references, free list holds exactly the refcount-0 blocks, registered
 * blocks are full and findable, sequence lengths fit their tables).
 * SLM_OK or INTERNAL with a message naming the first violation. O(pool). */
slm_status slm_kvcache_check(const slm_kvcache *kc);

#endif
