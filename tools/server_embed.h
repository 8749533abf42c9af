/*
 * server_embed.h — POST /v1/embeddings of `slm serve`, as one function from
 * a request body to a status and a JSON body, so that whichever HTTP layer
 * routes it needs one call: parse OpenAI's embeddings request, run every
 * input through the engine together (slm_engine_embed, blocking the calling
 * thread until all are done), and build OpenAI's response.
 *
 * Request: "input" (a string, an array of strings, an array of token ids,
 * or an array of token-id arrays; at most SLM_SRV_MAX_EMBED_INPUTS inputs,
 * none empty), "model" (checked as the other routes check it),
 * "encoding_format" ("float", default, or "base64": the little-endian
 * float32 bytes), "dimensions" (accepted only equal to the model's width:
 * slm does not truncate), "user" (ignored, as OpenAI's own is advisory),
 * and slm's extension "pooling" ("mean", "last", "cls"; default: the
 * model's pooling_type, mean when it has none). Any other field is a 400
 * naming it.
 *
 * Response: {"object":"list","data":[{"object":"embedding","index":i,
 * "embedding":[...] or "base64"}],"model":id,"usage":{"prompt_tokens":n,
 * "total_tokens":n}}; every embedding L2-normalised.
 */
#ifndef SLM_SERVER_EMBED_H
#define SLM_SERVER_EMBED_H

#include <stddef.h>

#include "server_http.h"

#define SLM_SRV_MAX_EMBED_INPUTS 2048 /* OpenAI's own limit */

/* Answers one /v1/embeddings body (len bytes, need not be terminated) on
 * the server's engine. Returns 200 with *json (malloc'd; the caller frees
 * it), or the error's HTTP status with *err filled and *json NULL: 400
 * (malformed or unsupported request, an input too long for the context),
 * 404 (another model), 503 (the engine's queue is full or it is shutting
 * down: retry), 500 (the engine failed). Thread-safe; blocks until the
 * embeddings are done. */
int slm_srv_embeddings(slm_srv *s, const char *body, size_t len, char **json,
                       slm_srv_error *err);

#endif
