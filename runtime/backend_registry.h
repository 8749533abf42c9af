/*
 * backend_registry.h — finding and opening a backend by name ("cpu",
 * "vulkan", "cuda", or "auto"). See backend_registry.c.
 */
#ifndef SLM_BACKEND_REGISTRY_H
#define SLM_BACKEND_REGISTRY_H

#include "backend.h"

/* Backends compiled in, GPU ones first. */
int slm_backend_count(void);
const slm_backend_ops *slm_backend_at(int i);

/* The backend name `name` stands for: itself, or when NULL or "" the value
 * of $SLM_BACKEND, else "auto". */
const char *slm_backend_resolve_name(const char *name);

/* Opens the named backend; NULL or "" means $SLM_BACKEND, else "auto".
 * "auto" opens the first backend that works (a GPU when one is there, the
 * CPU otherwise). An unknown name fails with NOT_FOUND listing the names. */
slm_status slm_backend_open_by_name(const char *name, const slm_backend_params *params,
                                    slm_backend **out);

#endif
