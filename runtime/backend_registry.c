/*
 * backend_registry.c — the backends compiled into this build, by name, in
 * the order the automatic choice tries them: GPU backends first (CUDA, then
 * Vulkan), the CPU last. A table is checked (version, mandatory slots)
 * before anything of it is called.
 */
#include "backend_registry.h"

#include <stdio.h>
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
#ifdef SLM_HAVE_CUDA
    {"cuda", slm_backend_cuda},
#endif
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

bool slm_backend_is_auto(const char *name)
{
    return !name || !*name || !strcmp(name, "auto");
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

static slm_status open_checked(size_t i, const slm_backend_params *params, slm_backend **out)
{
    const slm_backend_ops *ops = backends[i].table();
    slm_status st = slm_backend_ops_check(ops);
    return st ? st : ops->open(params, out);
}

slm_status slm_backend_open_at(int i, const slm_backend_params *params, slm_backend **out)
{
    *out = NULL;
    if (i < 0 || i >= (int)N_BACKENDS)
        return slm_error(SLM_STATUS_NOT_FOUND, "backend %d of %d", i, (int)N_BACKENDS);
    return open_checked((size_t)i, params, out);
}

slm_status slm_backend_open_by_name(const char *name, const slm_backend_params *params,
                                    slm_backend **out)
{
    *out = NULL;
    if (!slm_backend_is_auto(name)) {
        for (size_t i = 0; i < N_BACKENDS; i++)
            if (!strcmp(name, backends[i].name))
                return open_checked(i, params, out);
        return names_error(name);
    }
    /* auto: the first backend that finds a real GPU (they are listed
     * first), else the CPU backend, last in the list. */
    slm_backend_params p = *params;
    if (p.device_index == SLM_DEVICE_ANY)
        p.device_index = SLM_DEVICE_GPU_ONLY;
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (open_checked(i, &p, out) == SLM_OK)
            return SLM_OK;
    return slm_error(SLM_STATUS_DEVICE, "no backend could be opened: %s", slm_last_error());
}
