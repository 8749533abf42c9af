/*
 * backend_registry.c — the backends compiled into this build, by name, and
 * the "auto" choice: a GPU backend when one opens, else the CPU. The CLI's
 * --backend and SLM_BACKEND go through here.
 */
#include "backend_registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#ifdef SLM_HAVE_VULKAN
#include "../vulkan/backend_vulkan.h"
#endif

typedef const slm_backend_ops *(*table_fn)(void);

static const struct {
    const char *name;
    table_fn table;
} backends[] = {
#ifdef SLM_HAVE_VULKAN
    {"vulkan", slm_backend_vulkan},
#endif
    {"cpu", slm_backend_cpu},
};

#define N_BACKENDS (sizeof backends / sizeof backends[0])

int slm_backend_count(void) { return (int)N_BACKENDS; }

const slm_backend_ops *slm_backend_at(int i)
{
    return i >= 0 && i < (int)N_BACKENDS ? backends[i].table() : NULL;
}

static slm_status names_error(const char *name)
{
    char list[128] = "auto";
    for (size_t i = 0; i < N_BACKENDS; i++) {
        strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, backends[i].name, sizeof list - strlen(list) - 1);
    }
    return slm_error(SLM_STATUS_NOT_FOUND, "backend '%s' is not in this build (available: %s)",
                     name, list);
}

const char *slm_backend_resolve_name(const char *name)
{
    if (!name || !*name)
        name = getenv("SLM_BACKEND");
    return name && *name ? name : "auto";
}

slm_status slm_backend_open_by_name(const char *name, const slm_backend_params *params,
                                    slm_backend **out)
{
    *out = NULL;
    name = slm_backend_resolve_name(name);
    if (strcmp(name, "auto") != 0) {
        for (size_t i = 0; i < N_BACKENDS; i++)
            if (!strcmp(name, backends[i].name))
                return backends[i].table()->open(params, out);
        return names_error(name);
    }
    /* auto: the first GPU backend (they are listed first) that finds a real
     * GPU, else the CPU backend. */
    slm_backend_params p = *params;
    if (p.device_index == SLM_DEVICE_ANY)
        p.device_index = SLM_DEVICE_GPU_ONLY;
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (backends[i].table()->open(&p, out) == SLM_OK)
            return SLM_OK;
    return slm_error(SLM_STATUS_DEVICE, "no backend could be opened: %s", slm_last_error());
}
