/*
 * backend_vulkan.h — the Vulkan backend's one public entry point: its ops
 * table (runtime/backend.h). Compiled in when SLM_HAVE_VULKAN is defined;
 * everything else about the backend is private to vulkan/.
 */
#ifndef SLM_BACKEND_VULKAN_H
#define SLM_BACKEND_VULKAN_H

#include "../runtime/backend.h"

const slm_backend_ops *slm_backend_vulkan(void);

#endif
