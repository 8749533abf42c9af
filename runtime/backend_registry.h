/*
 * backend_registry.h — the backends compiled into this build, in the order
 * "auto" tries them (GPU backends first, the CPU last), opened by name.
 * Every table is checked (slm_backend_ops_check) before it is used.
 */
#ifndef SLM_BACKEND_REGISTRY_H
#define SLM_BACKEND_REGISTRY_H

#include "backend.h"

/* Backends compiled in, GPU ones first. */
int slm_backend_count(void);
const slm_backend_ops *slm_backend_at(int i);

/* Opens the named backend ("cpu", "vulkan", "cuda"); NULL or "" or "auto"
 * opens the first in registry order that opens on a real GPU, else the
 * CPU. An unknown name fails with NOT_FOUND listing the names. */
slm_status slm_backend_open_by_name(const char *name, const slm_backend_params *params,
                                    slm_backend **out);

/* Opens backend i of the registry order (checked first). */
slm_status slm_backend_open_at(int i, const slm_backend_params *params, slm_backend **out);

/* Whether name means the automatic choice (NULL, "" or "auto"). */
bool slm_backend_is_auto(const char *name);

#endif
