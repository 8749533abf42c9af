/*
 * embed.h — what runtime/embed.c (slm_engine_embed, the blocking form of
 * slm_engine_submit_embed) needs of the engine beyond slm.h.
 */
#ifndef SLM_EMBED_H
#define SLM_EMBED_H

#include "slm.h"

/* The width of the engine's model's embeddings (its n_embd). Defined in
 * engine.c. */
int slm_engine_n_embd(const slm_engine *e);

#endif
