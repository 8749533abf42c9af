/*
 * api_model.h — what the public model handle (slm_model_open in slm.h,
 * implemented in api_model.c) offers the engine beyond the public API:
 * turning a request's input — raw text or chat messages — into token ids
 * with the model's own tokenizer and chat template.
 */
#ifndef SLM_API_MODEL_H
#define SLM_API_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "chat.h"
#include "model.h"

/* Encodes text (BOS by the model's convention; special-token texts cut out
 * when `special`) into a malloc'd array *ids of *n ids. Thread-safe. */
slm_status slm_model_encode(const slm_model *m, const char *text, bool special, int32_t **ids,
                            int *n);

/* The model's chat template family, recognised from tokenizer.chat_template.
 * Returns NULL when recognised. A file without a template gets the family
 * its vocabulary's turn tokens name, or plain for a base model
 * (slm_chat_from_vocab); an unrecognised template gets ChatML. Either way
 * the return value says why. */
const char *slm_model_chat_template(const slm_model *m, slm_chat_template *t);

/* Renders messages with the chat template named (NULL: the model's, as
 * slm_model_chat_template chooses it), ending where the assistant's answer begins. *out is
 * malloc'd. An unknown template name fails naming it. */
slm_status slm_model_render_chat(const slm_model *m, const slm_message *msgs, int n,
                                 const char *template_name, char **out);

/* Renders messages (as slm_model_render_chat) and encodes the text with
 * the template's markup parsed for control tokens and the contents as
 * ordinary text, into a malloc'd array *ids of *n_ids ids. */
slm_status slm_model_encode_chat(const slm_model *m, const slm_message *msgs, int n,
                                 const char *template_name, int32_t **ids, int *n_ids);

/* Opens backend `name` ("auto" when NULL or "") and loads the model at path
 * onto it. Automatically, the backends are tried in registry order (GPU
 * ones first, the CPU last): one that finds no GPU is skipped; one whose
 * device cannot take the model — out of device memory, a type or size it
 * cannot run, a device error — passes it on to the next, and *fell_back
 * (when not NULL) collects "backend: reason" for each. A malformed or
 * unreadable file fails as is. */
slm_status slm_model_load_on(const char *path, const char *name, const slm_backend_params *bp,
                             void (*progress)(float, void *), void *user, slm_backend **be,
                             slm_model **m, char *fell_back, size_t fell_back_n);

#endif
