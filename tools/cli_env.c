/*
 * cli_env.c — the SLM_* environment variables of the `slm` command, mapped
 * onto what the library takes. The library reads no environment (a program
 * that embeds it decides its own knobs); the command keeps the variables
 * users and tests already set, and turns them into --backend's default and
 * the "key=value,key=value" string of slm_model_params.options.
 *
 * Depends on libc alone, so tests compile this file into their program.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Variables passed on as they are. */
static const struct {
    const char *env, *key;
} direct[] = {
    {"SLM_CPU_SIMD", "cpu.simd"},
    {"SLM_CPU_ACT", "cpu.act"},
    {"SLM_CPU_PACK", "cpu.pack"},
    {"SLM_VK_DEVICE", "vulkan.device"},
    {"SLM_VK_MAX_BUFFER", "vulkan.max_buffer"},
    {"SLM_VK_MATVEC_ROWS", "vulkan.matvec_rows"},
    {"SLM_VK_SPLIT_MIN", "vulkan.split_min"},
    {"SLM_VK_CHUNK", "vulkan.chunk"},
    {"SLM_VK_MATMUL", "vulkan.matmul"},
    {"SLM_CUDA_DEVICE", "cuda.device"},
    {"SLM_CUDA_MATVEC_ROWS", "cuda.matvec_rows"},
    {"SLM_CUDA_SPLIT_MIN", "cuda.split_min"},
};

/* The value, or NULL when unset or empty (both mean "not asked for"). */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *slm_cli_env_backend(void)
{
    const char *b = env("SLM_BACKEND");
    return b ? b : "auto";
}

/* Whether the options string can carry v: it separates pairs with commas
 * and spaces and keys from values with '='. */
static bool carriable(const char *v) { return !v[strcspn(v, ", \t\n=")]; }

/* Appends "key=value" (and a separating comma); false when buf is full. */
static bool put(char *buf, size_t cap, const char *key, const char *value, const char *suffix)
{
    size_t at = strlen(buf);
    int n = snprintf(buf + at, cap - at, "%s%s=%s%s", at ? "," : "", key, value, suffix);
    return n >= 0 && (size_t)n < cap - at;
}

static int too_long(size_t cap, char *why, size_t why_cap)
{
    snprintf(why, why_cap, "the SLM_* environment makes backend options longer than %zu bytes",
             cap ? cap - 1 : 0);
    return -1;
}

int slm_cli_env_options(char *buf, size_t cap, char *why, size_t why_cap)
{
    if (!cap)
        return too_long(cap, why, why_cap);
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) {
        const char *v = env(direct[i].env);
        if (!v)
            continue;
        if (!carriable(v)) {
            snprintf(why, why_cap, "%s='%s' holds a comma, space or '=', which backend options "
                     "cannot carry", direct[i].env, v);
            return -1;
        }
        if (!put(buf, cap, direct[i].key, v, ""))
            return too_long(cap, why, why_cap);
    }
    /* NOTE: as the library read it before: any value but "0" turns the
     * subgroup path off. */
    const char *nosub = env("SLM_VK_NO_SUBGROUP");
    if (nosub && strcmp(nosub, "0") != 0 && !put(buf, cap, "vulkan.subgroup", "0", ""))
        return too_long(cap, why, why_cap);
    /* The pipeline cache only saves start-up time, so a folder the options
     * cannot carry is left out rather than failing the command. */
    const char *xdg = env("XDG_CACHE_HOME"), *home = env("HOME");
    const char *base = xdg ? xdg : home;
    if (base && carriable(base) &&
        !put(buf, cap, "vulkan.cache_dir", base, xdg ? "/slm" : "/.cache/slm"))
        return too_long(cap, why, why_cap);
    return 0;
}
