/*
 * chat.h — chat templates: turning a list of (role, content) messages into
 * the prompt text a model was trained on. GGUF files carry the Hugging Face
 * Jinja template (tokenizer.chat_template); slm does not run Jinja, it
 * recognises the family from marker strings (as llama.cpp does) and renders
 * that family's format in C. The rendered text contains the special-token
 * markers literally; encode it with special-token parsing on, except inside
 * the contents (slm_chat_render_spans says where they are), so that a
 * message cannot forge a turn by writing the markers.
 */
#ifndef SLM_CHAT_H
#define SLM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "slm.h"
#include "tokenizer.h"

typedef enum slm_chat_format {
    SLM_CHAT_CHATML = 0, /* <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen2) */
    SLM_CHAT_LLAMA3 = 1, /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    SLM_CHAT_LLAMA2 = 2, /* [INST] <<SYS>>..<</SYS>> user [/INST] answer </s> (and Mistral) */
    SLM_CHAT_PHI3 = 3,   /* <|role|>\ncontent<|end|>\n */
    SLM_CHAT_GEMMA = 4,  /* <start_of_turn>user|model\ncontent<end_of_turn>\n */
    SLM_CHAT_EXAONE = 5, /* [|role|]content then [|endofturn|]\n, or \n after a user turn */
    SLM_CHAT_PLAIN = 6,  /* base models: the contents alone, separated by blank lines */
    SLM_CHAT_FORMAT_COUNT
} slm_chat_format;

typedef struct slm_chat_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} slm_chat_msg;

typedef struct slm_chat_template {
    slm_chat_format format;
    /* System message the model's own template adds when the conversation
     * has none (SmolLM2 and Qwen2 templates do), or NULL. */
    const char *default_system;
} slm_chat_template;

/* Recognises the family of a Jinja template text. Returns false (and sets
 * *out to ChatML, the fallback) when no family's markers are present. */
bool slm_chat_detect(const char *tmpl, size_t len, slm_chat_template *out);

/* For a file without tokenizer.chat_template: the family whose turn markers
 * are tokens of the vocabulary (Gemma 3 270M ships no template but has
 * <start_of_turn>/<end_of_turn>), else the plain format of base models
 * (also when t is NULL). Returns a static sentence saying which way it
 * went, for the user ("the model has no chat template; its vocabulary has
 * <start_of_turn>"). */
const char *slm_chat_from_vocab(const slm_tokenizer *t, slm_chat_template *out);

/* "chatml", "llama3", "llama2" (also "mistral"), "phi3", "gemma", "exaone",
 * "plain". Fails with
 * INVALID_ARGUMENT listing the valid names. */
slm_status slm_chat_from_name(const char *name, slm_chat_template *out);
const char *slm_chat_format_name(slm_chat_format f);

/* Renders msgs into a malloc'd NUL-terminated string (*out; caller frees).
 * With add_generation_prompt the text ends where the assistant's answer
 * begins. Fails with INVALID_ARGUMENT naming an unknown role. */
slm_status slm_chat_render(const slm_chat_template *t, const slm_chat_msg *msgs, int n,
                           bool add_generation_prompt, char **out);

/* slm_chat_render, and the byte ranges of the messages' contents in *out
 * (a malloc'd array, *n_spans long, in order; NULL when there are none) for
 * slm_tokenizer_encode_spans. */
slm_status slm_chat_render_spans(const slm_chat_template *t, const slm_chat_msg *msgs, int n,
                                 bool add_generation_prompt, char **out, slm_tok_range **spans,
                                 size_t *n_spans);

/* The text that ends an assistant turn (a stop string for generation);
 * "" for plain, whose turns end only at the model's EOS. */
const char *slm_chat_end_of_turn(slm_chat_format f);

#endif
