/*
 * arch.c — the table of model families (see arch.h). Each row was written
 * from the family's Hugging Face modelling code and checked against the
 * GGUF files llama.cpp's converter writes for it (tensor names, which Q/K
 * permutation, Gemma's norm weights stored with the +1 already added); the
 * tiny models in tests/fixtures/tiny test every row against transformers.
 */
#include "arch.h"

#include <string.h>

#define RMS_EPS "attention.layer_norm_rms_epsilon"
#define LN_EPS "attention.layer_norm_epsilon"

static const slm_arch archs[] = {
    /* Llama 2/3, Mistral (sliding window when the file has the key),
     * SmolLM: all stored as "llama". */
    {.name = "llama", .rope = SLM_ROPE_NORM, .eps_key = RMS_EPS},
    {.name = "qwen2", .rope = SLM_ROPE_NEOX, .eps_key = RMS_EPS},
    {.name = "qwen3", .rope = SLM_ROPE_NEOX, .qk_norm = true, .eps_key = RMS_EPS},
    {.name = "exaone", .rope = SLM_ROPE_NEOX, .eps_key = RMS_EPS},
    {.name = "phi3", .rope = SLM_ROPE_NEOX, .fused_qkv = true, .fused_gate_up = true,
     .eps_key = RMS_EPS},
    {.name = "gemma2", .ffn = SLM_FFN_GEGLU, .rope = SLM_ROPE_NEOX, .post_norms = true,
     .embed_scale = true, .swa_pattern = 2, .softcaps = true, .eps_key = RMS_EPS},
    {.name = "gemma3", .ffn = SLM_FFN_GEGLU, .rope = SLM_ROPE_NEOX, .qk_norm = true,
     .post_norms = true, .embed_scale = true, .swa_pattern = 6, .swa_rope_base = true,
     .eps_key = RMS_EPS},
    {.name = "stablelm", .norm = SLM_NORM_LAYER, .rope = SLM_ROPE_NEOX, .eps_key = LN_EPS},
    {.name = "gptneox", .norm = SLM_NORM_LAYER, .ffn = SLM_FFN_GELU, .rope = SLM_ROPE_NEOX,
     .parallel = true, .fused_qkv = true, .eps_key = LN_EPS},
};

const slm_arch *slm_arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].name, name) == 0)
            return &archs[i];
    return NULL;
}

const char *slm_arch_list(void)
{
    return "llama (incl. Mistral), qwen2, qwen3, exaone, phi3, gemma2, gemma3, stablelm, "
           "gptneox";
}
