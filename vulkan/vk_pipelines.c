/*
 * vk_pipelines.c — every compute pipeline the backend uses, created once at
 * open from the embedded SPIR-V (vk_spirv.h): the weight families (embed,
 * matvec, tiled matmul) once per weight type through specialization
 * constant 0, the KV ops once per KV storage type through constant 1, and
 * the rest once. Sizes are push constants, so nothing is compiled per model.
 *
 * The driver's pipeline cache is kept on disk in the folder the
 * vulkan.cache_dir knob names (the slm command passes $XDG_CACHE_HOME/slm or
 * ~/.cache/slm), one file per device and driver version, so a second start
 * skips shader compilation. The cache is an optimisation only: any failure
 * to read or write it is ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vk_internal.h"
#include "vk_spirv.h"

const slm_type slm_vk_wtypes[VK_N_WTYPES] = {
    SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0,   SLM_TYPE_Q4_1,
    SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_IQ4_NL, SLM_TYPE_Q2_K,
    SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K,   SLM_TYPE_IQ4_XS,
};

int slm_vk_wtype_index(slm_type t)
{
    for (int i = 0; i < VK_N_WTYPES; i++)
        if (slm_vk_wtypes[i] == t)
            return i;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* on-disk cache                                                             */

/* Writes the cache file path into buf; false when no cache folder was given
 * (the vulkan.cache_dir knob; the slm command passes ~/.cache/slm). */
static bool cache_path(const slm_vk_backend *be, char *buf, size_t n, char *dir, size_t dn)
{
    if (!be->cache_dir[0])
        return false;
    int k = snprintf(dir, dn, "%s", be->cache_dir);
    if (k < 0 || (size_t)k >= dn)
        return false;
    k = snprintf(buf, n, "%s/vulkan-%04x-%04x-%08x.cache", dir, be->props.vendorID,
                 be->props.deviceID, be->props.driverVersion);
    return k > 0 && (size_t)k < n;
}

static void *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    void *data = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && n < (64L << 20) && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)n))) {
            if (fread(data, 1, (size_t)n, f) == (size_t)n) {
                *size = (size_t)n;
            } else {
                free(data);
                data = NULL;
            }
        }
    }
    fclose(f);
    return data;
}

static void cache_open(slm_vk_backend *be)
{
    char path[1024], dir[900];
    size_t size = 0;
    void *data = cache_path(be, path, sizeof path, dir, sizeof dir) ? read_all(path, &size) : NULL;
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                    .initialDataSize = data ? size : 0,
                                    .pInitialData = data};
    /* The driver checks the header (vendor, device, UUID) and ignores a
     * stale cache; a rejected one is retried empty. */
    if (vkCreatePipelineCache(be->dev, &ci, NULL, &be->cache) != VK_SUCCESS) {
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        if (vkCreatePipelineCache(be->dev, &ci, NULL, &be->cache) != VK_SUCCESS)
            be->cache = VK_NULL_HANDLE;
    }
    free(data);
}

static void cache_save(slm_vk_backend *be)
{
    char path[1024], dir[900], tmp[1100];
    size_t size = 0;
    if (!be->cache || !cache_path(be, path, sizeof path, dir, sizeof dir) ||
        vkGetPipelineCacheData(be->dev, be->cache, &size, NULL) != VK_SUCCESS || size == 0)
        return;
    void *data = malloc(size);
    if (!data)
        return;
    if (vkGetPipelineCacheData(be->dev, be->cache, &size, data) == VK_SUCCESS) {
        /* Create .../slm (and its parent for the ~/.cache case). */
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            mkdir(dir, 0755);
            *slash = '/';
        }
        mkdir(dir, 0755);
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            bool ok = fwrite(data, 1, size, f) == size;
            ok = fclose(f) == 0 && ok;
            /* rename is atomic: a concurrent start reads the old or the new file. */
            if (!ok || rename(tmp, path) != 0)
                remove(tmp);
        }
    }
    free(data);
}

/* ------------------------------------------------------------------------ */
/* pipelines                                                                 */

static const slm_vk_spirv *find_spirv(const char *name)
{
    for (int i = 0; i < slm_vk_spirv_count; i++)
        if (strcmp(slm_vk_spirv_table[i].name, name) == 0)
            return &slm_vk_spirv_table[i];
    return NULL;
}

static slm_status make_module(slm_vk_backend *be, const char *name, VkShaderModule *out)
{
    const slm_vk_spirv *s = find_spirv(name);
    if (!s)
        return slm_error(SLM_STATUS_INTERNAL, "vulkan: shader %s is not embedded", name);
    VkShaderModuleCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                   .codeSize = *s->size,
                                   .pCode = (const uint32_t *)(const void *)s->code};
    return slm_vk_check(be, vkCreateShaderModule(be->dev, &ci, NULL, out), "vkCreateShaderModule");
}

/* One pipeline to build: its shader and its two specialization constants. */
typedef struct job {
    const char *shader;
    uint32_t spec[2];
    VkPipeline *out;
} job;

enum { N_JOBS = VK_N_FAMS * VK_N_WTYPES + VK_N_MISC };

static int plan(slm_vk_backend *be, job *jobs)
{
    static const char *fam_shader[VK_N_FAMS] = {"embed", "matvec", "matmul_tiled",
                                                      "matmul_direct", "matmul_direct"};
    /* constant 1 of the weight families: matmul_direct's tokens per invocation */
    static const uint32_t fam_spec1[VK_N_FAMS] = {0, 0, 0, VK_DIRECT_TN, 1};
    static const struct {
        const char *shader;
        uint32_t kv_f16;
    } misc[VK_N_MISC] = {
        [VK_P_RMSNORM] = {"rmsnorm", 0},   [VK_P_ROPE] = {"rope", 0},
        [VK_P_KV_STORE_F32] = {"kv_store", 0}, [VK_P_KV_STORE_F16] = {"kv_store", 1},
        [VK_P_ATTN_F32] = {"attention", 0}, [VK_P_ATTN_F16] = {"attention", 1},
        [VK_P_ATTN_SPLIT_F32] = {"attention_split", 0},
        [VK_P_ATTN_SPLIT_F16] = {"attention_split", 1},
        [VK_P_ATTN_MERGE] = {"attention_merge", 0},
        [VK_P_SWIGLU] = {"swiglu", 0},     [VK_P_ADD] = {"add", 0},
        [VK_P_SCALE] = {"scale", 0},       [VK_P_GET_ROWS] = {"get_rows", 0},
        [VK_P_GEGLU] = {"geglu", 0},       [VK_P_GELU] = {"gelu", 0},
        [VK_P_LAYERNORM] = {"layernorm", 0}, [VK_P_BIAS] = {"bias", 0},
        [VK_P_SOFTCAP] = {"softcap", 0},
    };
    int n = 0;
    for (int f = 0; f < VK_N_FAMS; f++) {
        for (int t = 0; t < VK_N_WTYPES; t++) {
            const char *sh = fam_shader[f];
            if (f == VK_FAM_MATVEC && be->subgroup)
                sh = "matvec_subgroup";
            jobs[n++] = (job){sh, {(uint32_t)slm_vk_wtypes[t], fam_spec1[f]}, &be->wpipe[f][t]};
        }
    }
    for (int i = 0; i < VK_N_MISC; i++)
        jobs[n++] = (job){misc[i].shader, {0, misc[i].kv_f16}, &be->misc[i]};
    return n;
}

slm_status slm_vk_pipelines_create(slm_vk_backend *be)
{
    job jobs[N_JOBS];
    int n = plan(be, jobs);
    const char *names[N_JOBS];
    VkShaderModule mods[N_JOBS];
    int n_mods = 0;
    slm_status st = SLM_OK;
    VkSpecializationMapEntry entries[2] = {{0, 0, 4}, {1, 4, 4}};
    VkSpecializationInfo spec[N_JOBS];
    VkComputePipelineCreateInfo ci[N_JOBS];
    VkPipeline pipes[N_JOBS];

    cache_open(be);
    for (int i = 0; i < n && !st; i++) {
        int m = 0;
        while (m < n_mods && strcmp(names[m], jobs[i].shader) != 0)
            m++;
        if (m == n_mods) {
            names[m] = jobs[i].shader;
            if ((st = make_module(be, jobs[i].shader, &mods[m])))
                break;
            n_mods++;
        }
        spec[i] = (VkSpecializationInfo){.mapEntryCount = 2, .pMapEntries = entries,
                                         .dataSize = 8, .pData = jobs[i].spec};
        ci[i] = (VkComputePipelineCreateInfo){
            .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                      .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                      .module = mods[m],
                      .pName = "main",
                      .pSpecializationInfo = &spec[i]},
            .layout = be->layout};
    }
    if (!st) {
        memset(pipes, 0, sizeof pipes);
        st = slm_vk_check(be, vkCreateComputePipelines(be->dev, be->cache, (uint32_t)n, ci, NULL,
                                                       pipes),
                          "vkCreateComputePipelines");
        for (int i = 0; i < n; i++)
            *jobs[i].out = pipes[i];
    }
    for (int m = 0; m < n_mods; m++)
        vkDestroyShaderModule(be->dev, mods[m], NULL);
    if (!st)
        cache_save(be);
    return st;
}

void slm_vk_pipelines_destroy(slm_vk_backend *be)
{
    if (!be->dev)
        return;
    for (int f = 0; f < VK_N_FAMS; f++)
        for (int t = 0; t < VK_N_WTYPES; t++)
            vkDestroyPipeline(be->dev, be->wpipe[f][t], NULL);
    for (int i = 0; i < VK_N_MISC; i++)
        vkDestroyPipeline(be->dev, be->misc[i], NULL);
    vkDestroyPipelineCache(be->dev, be->cache, NULL);
}
