/*
 * backend_options.c — see backend_options.h. Keys carry their backend's
 * name (cpu.*, vulkan.*, cuda.*), so one string can tune every backend that "auto"
 * may try.
 */
#include "backend_options.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"

/* A whole decimal number in [lo, hi], or -1 after failing naming key. */
static slm_status number(const char *key, const char *v, long long lo, long long hi,
                         long long *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "backend option %s=%s: expected a whole number in %lld..%lld", key, v,
                         lo, hi);
    *out = x;
    return SLM_OK;
}

static slm_status one_of(const char *key, const char *v, const char *const *names, int n,
                         int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return SLM_OK;
        }
    return slm_error(SLM_STATUS_INVALID_ARGUMENT, "backend option %s=%s: expected %s%s%s%s%s",
                     key, v, names[0], n > 1 ? " or " : "", n > 1 ? names[1] : "",
                     n > 2 ? " or " : "", n > 2 ? names[2] : "");
}

static slm_status apply(const char *key, const char *v, slm_backend_params *p)
{
    long long x = 0;
    int k = 0;
    slm_status st = SLM_OK;
    if (!strcmp(key, "cpu.simd")) {
        p->cpu_simd = v;
    } else if (!strcmp(key, "cpu.act")) {
        static const char *const acts[] = {"q8", "q8x2"};
        if (!(st = one_of(key, v, acts, 2, &k)))
            p->cpu_act_terms = k + 1;
    } else if (!strcmp(key, "cpu.pack")) {
        static const char *const packs[] = {"off", "auto"};
        if (!(st = one_of(key, v, packs, 2, &k)))
            p->cpu_pack = k ? 0 : -1;
    } else if (!strcmp(key, "vulkan.device")) {
        p->vk_device = v;
    } else if (!strcmp(key, "vulkan.subgroup")) {
        if (!(st = number(key, v, 0, 1, &x)))
            p->vk_subgroup = x ? 0 : -1;
    } else if (!strcmp(key, "vulkan.max_buffer")) {
        if (!(st = number(key, v, 4096, (long long)1 << 40, &x)))
            p->vk_max_buffer = (uint64_t)x;
    } else if (!strcmp(key, "vulkan.matvec_rows")) {
        if (!(st = number(key, v, 0, 1 << 20, &x)))
            p->vk_matvec_rows = (int)x;
    } else if (!strcmp(key, "vulkan.split_min")) {
        if (!(st = number(key, v, 1, 1 << 30, &x)))
            p->vk_split_min = (int)x;
    } else if (!strcmp(key, "vulkan.chunk")) {
        if (!(st = number(key, v, 1, 1 << 20, &x)))
            p->vk_chunk = (int)x;
    } else if (!strcmp(key, "vulkan.matmul")) {
        static const char *const fams[] = {"auto", "direct", "gpu"};
        if (!(st = one_of(key, v, fams, 3, &k)))
            p->vk_matmul = k;
    } else if (!strcmp(key, "vulkan.cache_dir")) {
        p->cache_dir = v;
    } else if (!strcmp(key, "cuda.device")) {
        if (!(st = number(key, v, 0, 1 << 10, &x)))
            p->cuda_device = (int)x + 1;
    } else if (!strcmp(key, "cuda.matvec_rows")) {
        if (!(st = number(key, v, -1, 1 << 20, &x)))
            p->cuda_matvec_rows = (int)x;
    } else if (!strcmp(key, "cuda.split_min")) {
        if (!(st = number(key, v, 1, 1 << 30, &x)))
            p->cuda_split_min = (int)x;
    } else {
        st = slm_error(SLM_STATUS_INVALID_ARGUMENT,
                       "unknown backend option '%s' (known: cpu.simd, cpu.act, cpu.pack, vulkan.device, "
                       "vulkan.subgroup, vulkan.max_buffer, vulkan.matvec_rows, "
                       "vulkan.split_min, vulkan.chunk, vulkan.matmul, vulkan.cache_dir, "
                       "cuda.device, cuda.matvec_rows, cuda.split_min)",
                       key);
    }
    return st;
}

slm_status slm_backend_options_parse(const char *options, slm_backend_params *p, char *store,
                                     size_t n)
{
    if (!options || !*options)
        return SLM_OK;
    if (strlen(options) + 1 > n)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "backend options longer than %zu bytes",
                         n - 1);
    strcpy(store, options);
    char *save = NULL;
    for (char *tok = strtok_r(store, ", \t\n", &save); tok; tok = strtok_r(NULL, ", \t\n", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1])
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "backend option '%s' is not key=value", tok);
        *eq = '\0';
        slm_status st = apply(tok, eq + 1, p);
        if (st)
            return st;
    }
    return SLM_OK;
}
