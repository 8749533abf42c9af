/*
 * vk_spirv.h — the SPIR-V of every vulkan/shaders/NAME.comp, embedded at build
 * time (vulkan/CMakeLists.txt generates vk_spirv_table.c and one array per
 * shader). Code is 4-byte aligned, as vkCreateShaderModule requires.
 */
#ifndef SLM_VK_SPIRV_H
#define SLM_VK_SPIRV_H

#include <stddef.h>

typedef struct slm_vk_spirv {
    const char *name; /* the .comp file's name without extension */
    const unsigned char *code;
    const size_t *size; /* bytes */
} slm_vk_spirv;

extern const slm_vk_spirv slm_vk_spirv_table[];
extern const int slm_vk_spirv_count;

#endif
