/*
 * vk_device.c — the Vulkan device and its memory: instance creation, the
 * choice of physical device, the compute queue, device memory blocks with a
 * first-fit sub-allocator, synchronous staging copies, the host-visible step
 * buffer, and the one descriptor set that exposes all of them to shaders.
 * See vk_internal.h for the memory model. Not responsible for pipelines
 * (vk_pipelines.c) or ops (vk_ops.c).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* ------------------------------------------------------------------------ */
/* errors                                                                    */

static const char *vk_result_name(VkResult r)
{
    switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "out of device memory";
    case VK_ERROR_INITIALIZATION_FAILED: return "initialization failed";
    case VK_ERROR_DEVICE_LOST: return "device lost";
    case VK_ERROR_MEMORY_MAP_FAILED: return "memory map failed";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "incompatible driver";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "feature not present";
    case VK_ERROR_TOO_MANY_OBJECTS: return "too many objects";
    case VK_TIMEOUT: return "timeout";
    default: return "error";
    }
}

slm_status slm_vk_check(slm_vk_backend *be, VkResult r, const char *what)
{
    if (r == VK_SUCCESS)
        return SLM_OK;
    if (r == VK_ERROR_DEVICE_LOST) {
        if (be)
            be->lost = true;
        return slm_error(SLM_STATUS_DEVICE, "vulkan: device lost (during %s)", what);
    }
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: %s: %s", what, vk_result_name(r));
    return slm_error(SLM_STATUS_DEVICE, "vulkan: %s failed: %s (VkResult %d)", what,
                     vk_result_name(r), (int)r);
}

/* ------------------------------------------------------------------------ */
/* choosing a device                                                         */

static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

static const char *type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU implementation";
    default: return "other device";
    }
}

/* The first queue family with compute, or UINT32_MAX. */
static uint32_t compute_family(VkPhysicalDevice pd)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties q[32];
    if (n > 32)
        n = 32;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
    for (uint32_t i = 0; i < n; i++)
        if ((q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && q[i].queueCount > 0)
            return i;
    return UINT32_MAX;
}

/* Why device pd cannot run slm, or NULL when it can. */
static const char *unusable(VkPhysicalDevice pd)
{
    VkPhysicalDeviceProperties p;
    VkPhysicalDeviceFeatures f;
    vkGetPhysicalDeviceProperties(pd, &p);
    vkGetPhysicalDeviceFeatures(pd, &f);
    if (VK_API_VERSION_MINOR(p.apiVersion) < 2 && VK_API_VERSION_MAJOR(p.apiVersion) == 1)
        return "it supports only Vulkan 1.0/1.1 (1.2 needed)";
    if (compute_family(pd) == UINT32_MAX)
        return "it has no compute queue";
    if (!f.shaderStorageBufferArrayDynamicIndexing)
        return "it lacks shaderStorageBufferArrayDynamicIndexing";
    if (p.limits.maxPerStageDescriptorStorageBuffers < VK_MAX_BLOCKS + 1 ||
        p.limits.maxDescriptorSetStorageBuffers < VK_MAX_BLOCKS + 1)
        return "it allows too few storage buffers per shader stage (25 needed)";
    if (p.limits.maxPushConstantsSize < VK_PUSH_MAX * 4)
        return "its push constants are under 128 bytes";
    return NULL;
}

/* Index chosen among n devices: explicit index, else the device the
 * vulkan.device knob names (an index or a substring of the name), else the
 * best type (discrete, integrated, virtual, CPU), lowest index first. */
static slm_status choose(const slm_vk_backend *be, VkPhysicalDevice *pds, uint32_t n, int want,
                         int *out)
{
    const char *env = be->want_device;
    if (want < 0 && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0') {
            want = (int)v;
        } else {
            for (uint32_t i = 0; i < n; i++) {
                VkPhysicalDeviceProperties p;
                vkGetPhysicalDeviceProperties(pds[i], &p);
                if (strstr(p.deviceName, env)) {
                    want = (int)i;
                    break;
                }
            }
            if (want < 0)
                return slm_error(SLM_STATUS_NOT_FOUND,
                                 "vulkan: no device name contains SLM_VK_DEVICE=\"%s\"", env);
        }
    }
    if (want >= 0) {
        if ((uint32_t)want >= n)
            return slm_error(SLM_STATUS_NOT_FOUND, "vulkan: device %d requested, %u present", want,
                             n);
        const char *why = unusable(pds[want]);
        if (why)
            return slm_error(SLM_STATUS_UNSUPPORTED, "vulkan: device %d cannot be used: %s", want,
                             why);
        *out = want;
        return SLM_OK;
    }
    int best = -1, best_rank = 99;
    const char *why_last = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const char *why = unusable(pds[i]);
        if (why) {
            why_last = why;
            continue;
        }
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(pds[i], &p);
        if (type_rank(p.deviceType) < best_rank) {
            best_rank = type_rank(p.deviceType);
            best = (int)i;
        }
    }
    if (best < 0)
        return slm_error(SLM_STATUS_UNSUPPORTED, "vulkan: no usable device (%s)", why_last);
    *out = best;
    return SLM_OK;
}

static void describe(slm_vk_backend *be)
{
    VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &drv};
    vkGetPhysicalDeviceProperties2(be->phys, &p2);
    snprintf(be->desc, sizeof be->desc, "vulkan: %.160s (%s; driver %.64s %.128s; Vulkan %u.%u.%u%s)",
             be->props.deviceName, type_name(be->props.deviceType), drv.driverName, drv.driverInfo,
             VK_API_VERSION_MAJOR(be->props.apiVersion), VK_API_VERSION_MINOR(be->props.apiVersion),
             VK_API_VERSION_PATCH(be->props.apiVersion), be->subgroup ? "; subgroup reductions" : "");
}

static void query_subgroup(slm_vk_backend *be)
{
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &sg};
    vkGetPhysicalDeviceProperties2(be->phys, &p2);
    /* no_subgroup forces the shared-memory path (tests reach both). */
    be->subgroup = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                   (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
                   (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                   sg.subgroupSize >= 1 && sg.subgroupSize <= 64 && !be->no_subgroup;
}

static void size_limits(slm_vk_backend *be)
{
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &m3};
    vkGetPhysicalDeviceProperties2(be->phys, &p2);
    VkDeviceSize mx = be->props.limits.maxStorageBufferRange;
    if (m3.maxMemoryAllocationSize && m3.maxMemoryAllocationSize < mx)
        mx = m3.maxMemoryAllocationSize;
    /* NOTE: shaders index with 32-bit byte addresses, so no range may reach 4 GiB. */
    if (mx > 0xffffff00u)
        mx = 0xffffff00u;
    /* The vulkan.max_buffer knob lowers the limit (tests split weights with it). */
    if (be->max_buffer_knob >= 4096 && be->max_buffer_knob < mx)
        mx = be->max_buffer_knob;
    be->max_buffer = mx & ~(VkDeviceSize)255;
    be->block_bytes = be->max_buffer < VK_BLOCK_MAX_BYTES ? be->max_buffer : VK_BLOCK_MAX_BYTES;
}

/* ------------------------------------------------------------------------ */
/* buffers and memory                                                        */

static int find_memory(slm_vk_backend *be, uint32_t bits, VkMemoryPropertyFlags need)
{
    for (uint32_t i = 0; i < be->memprops.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (be->memprops.memoryTypes[i].propertyFlags & need) == need)
            return (int)i;
    return -1;
}

/* Creates a buffer with its own memory (device-local, or host-visible and
 * coherent and mapped into *map when map is non-NULL). */
static slm_status make_buffer(slm_vk_backend *be, VkDeviceSize size, VkBuffer *buf,
                              VkDeviceMemory *mem, void **map)
{
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = size,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    *buf = VK_NULL_HANDLE;
    *mem = VK_NULL_HANDLE;
    slm_status st = slm_vk_check(be, vkCreateBuffer(be->dev, &bi, NULL, buf), "vkCreateBuffer");
    if (st)
        return st;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(be->dev, *buf, &req);
    int type = map ? find_memory(be, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                             VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
                   : find_memory(be, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type < 0 && !map)
        type = find_memory(be, req.memoryTypeBits, 0);
    if (type < 0) {
        st = slm_error(SLM_STATUS_UNSUPPORTED, "vulkan: no suitable memory type for a %s buffer",
                       map ? "host-visible" : "device");
        goto fail;
    }
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .allocationSize = req.size,
                               .memoryTypeIndex = (uint32_t)type};
    VkResult r = vkAllocateMemory(be->dev, &ai, NULL, mem);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) {
        st = slm_error(SLM_STATUS_OUT_OF_MEMORY,
                       "vulkan: out of device memory allocating %llu bytes",
                       (unsigned long long)req.size);
        goto fail;
    }
    if ((st = slm_vk_check(be, r, "vkAllocateMemory")))
        goto fail;
    if ((st = slm_vk_check(be, vkBindBufferMemory(be->dev, *buf, *mem, 0), "vkBindBufferMemory")))
        goto fail;
    if (map && (st = slm_vk_check(be, vkMapMemory(be->dev, *mem, 0, VK_WHOLE_SIZE, 0, map),
                                  "vkMapMemory")))
        goto fail;
    return SLM_OK;
fail:
    vkDestroyBuffer(be->dev, *buf, NULL);
    vkFreeMemory(be->dev, *mem, NULL);
    *buf = VK_NULL_HANDLE;
    *mem = VK_NULL_HANDLE;
    return st;
}

static void drop_buffer(slm_vk_backend *be, VkBuffer *buf, VkDeviceMemory *mem)
{
    if (be->dev == VK_NULL_HANDLE)
        return;
    vkDestroyBuffer(be->dev, *buf, NULL);
    vkFreeMemory(be->dev, *mem, NULL);
    *buf = VK_NULL_HANDLE;
    *mem = VK_NULL_HANDLE;
}

/* Points descriptor slot i at block i's buffer, or the dummy when unused. */
static void write_slot(slm_vk_backend *be, int i)
{
    VkDescriptorBufferInfo bi = {.buffer = be->blocks[i].buf ? be->blocks[i].buf : be->dummy_buf,
                                 .offset = 0,
                                 .range = VK_WHOLE_SIZE};
    VkWriteDescriptorSet w = {.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                              .dstSet = be->dset,
                              .dstBinding = 0,
                              .dstArrayElement = (uint32_t)i,
                              .descriptorCount = 1,
                              .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                              .pBufferInfo = &bi};
    vkUpdateDescriptorSets(be->dev, 1, &w, 0, NULL);
}

static void write_step_binding(slm_vk_backend *be)
{
    VkDescriptorBufferInfo bi = {.buffer = be->step_buf, .offset = 0, .range = VK_WHOLE_SIZE};
    VkWriteDescriptorSet w = {.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                              .dstSet = be->dset,
                              .dstBinding = 1,
                              .descriptorCount = 1,
                              .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                              .pBufferInfo = &bi};
    vkUpdateDescriptorSets(be->dev, 1, &w, 0, NULL);
}

static void block_release(slm_vk_backend *be, int i)
{
    vk_block *b = &be->blocks[i];
    drop_buffer(be, &b->buf, &b->mem);
    free(b->free);
    memset(b, 0, sizeof *b);
    if (be->dset)
        write_slot(be, i);
}

static slm_status block_create(slm_vk_backend *be, VkDeviceSize size, int *out)
{
    int slot = -1;
    for (int i = 0; i < VK_MAX_BLOCKS && slot < 0; i++)
        if (be->blocks[i].buf == VK_NULL_HANDLE)
            slot = i;
    if (slot < 0)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY,
                         "vulkan: all %d device memory blocks are in use (%llu bytes each)",
                         VK_MAX_BLOCKS, (unsigned long long)be->block_bytes);
    vk_block *b = &be->blocks[slot];
    slm_status st = make_buffer(be, size, &b->buf, &b->mem, NULL);
    if (st)
        return st;
    b->free = malloc(4 * sizeof *b->free);
    if (!b->free) {
        block_release(be, slot);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory");
    }
    b->cap_free = 4;
    b->n_free = 1;
    b->free[0] = (vk_range){0, size};
    b->size = size;
    write_slot(be, slot);
    *out = slot;
    return SLM_OK;
}

/* First fit in block b; returns the offset or UINT64_MAX. */
static VkDeviceSize block_take(vk_block *b, VkDeviceSize size)
{
    for (int k = 0; k < b->n_free; k++) {
        if (b->free[k].size < size)
            continue;
        VkDeviceSize off = b->free[k].off;
        b->free[k].off += size;
        b->free[k].size -= size;
        if (b->free[k].size == 0) {
            memmove(&b->free[k], &b->free[k + 1], (size_t)(b->n_free - k - 1) * sizeof *b->free);
            b->n_free--;
        }
        return off;
    }
    return UINT64_MAX;
}

/* Returns [off, off+size) to b's free list, coalescing with neighbours.
 * Returns false only when the list cannot grow (host out of memory). */
static bool block_give(vk_block *b, VkDeviceSize off, VkDeviceSize size)
{
    int k = 0;
    while (k < b->n_free && b->free[k].off < off)
        k++;
    bool join_prev = k > 0 && b->free[k - 1].off + b->free[k - 1].size == off;
    bool join_next = k < b->n_free && off + size == b->free[k].off;
    if (join_prev && join_next) {
        b->free[k - 1].size += size + b->free[k].size;
        memmove(&b->free[k], &b->free[k + 1], (size_t)(b->n_free - k - 1) * sizeof *b->free);
        b->n_free--;
    } else if (join_prev) {
        b->free[k - 1].size += size;
    } else if (join_next) {
        b->free[k].off = off;
        b->free[k].size += size;
    } else {
        if (b->n_free == b->cap_free) {
            vk_range *nf = realloc(b->free, (size_t)b->cap_free * 2 * sizeof *nf);
            if (!nf)
                return false;
            b->free = nf;
            b->cap_free *= 2;
        }
        memmove(&b->free[k + 1], &b->free[k], (size_t)(b->n_free - k) * sizeof *b->free);
        b->free[k] = (vk_range){off, size};
        b->n_free++;
    }
    return true;
}

slm_status slm_vk_buf_alloc(slm_vk_backend *be, size_t bytes, slm_buf **out)
{
    *out = NULL;
    VkDeviceSize size = ((VkDeviceSize)(bytes ? bytes : 1) + VK_ALLOC_ALIGN - 1) &
                        ~(VkDeviceSize)(VK_ALLOC_ALIGN - 1);
    if (bytes > be->max_buffer || size > be->max_buffer)
        return slm_error(SLM_STATUS_UNSUPPORTED,
                         "vulkan: a buffer of %zu bytes exceeds the largest storage buffer "
                         "this device can bind (%llu bytes)",
                         bytes, (unsigned long long)be->max_buffer);
    slm_buf *b = malloc(sizeof *b);
    if (!b)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory");
    int blk = -1;
    VkDeviceSize off = UINT64_MAX;
    for (int i = 0; i < VK_MAX_BLOCKS && off == UINT64_MAX; i++) {
        if (be->blocks[i].buf && (off = block_take(&be->blocks[i], size)) != UINT64_MAX)
            blk = i;
    }
    if (off == UINT64_MAX) {
        /* Larger than a shared block: a dedicated block of exactly its size. */
        slm_status st = block_create(be, size > be->block_bytes ? size : be->block_bytes, &blk);
        if (st) {
            free(b);
            return st;
        }
        off = block_take(&be->blocks[blk], size);
    }
    be->blocks[blk].n_live++;
    *b = (slm_buf){.block = blk, .off = off, .size = size, .bytes = bytes};
    *out = b;
    return SLM_OK;
}

void slm_vk_buf_free(slm_vk_backend *be, slm_buf *buf)
{
    if (!buf)
        return;
    vk_block *b = &be->blocks[buf->block];
    b->n_live--;
    if (b->n_live == 0 || !block_give(b, buf->off, buf->size)) {
        /* NOTE: an empty block goes back to the driver, so memory freed by a
         * model is really freed; a failed free-list insert leaks the range
         * until the block empties, which is harmless. */
        if (b->n_live == 0)
            block_release(be, buf->block);
    }
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* submission and copies                                                     */

slm_status slm_vk_submit(slm_vk_backend *be, VkCommandBuffer cmd)
{
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &cmd};
    return slm_vk_check(be, vkQueueSubmit(be->queue, 1, &si, VK_NULL_HANDLE), "vkQueueSubmit");
}

slm_status slm_vk_chunk_begin(slm_vk_backend *be, int i)
{
    VkCommandBuffer cmd = be->cmds[i];
    slm_status st = slm_vk_check(be, vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (!st)
        st = slm_vk_check(be, vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer");
    if (st)
        return st;
    vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, be->layout, 0, 1, &be->dset, 0,
                            NULL);
    be->cmd = cmd;
    be->chunk = i;
    be->n_dispatch = 0;
    be->recording = true;
    return SLM_OK;
}

slm_status slm_vk_submit_wait(slm_vk_backend *be, VkCommandBuffer cmd)
{
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &cmd};
    slm_status st = slm_vk_check(be, vkQueueSubmit(be->queue, 1, &si, be->fence), "vkQueueSubmit");
    if (st)
        return st;
    st = slm_vk_check(be, vkWaitForFences(be->dev, 1, &be->fence, VK_TRUE, UINT64_MAX),
                      "vkWaitForFences");
    VkResult r = vkResetFences(be->dev, 1, &be->fence);
    return st ? st : slm_vk_check(be, r, "vkResetFences");
}

slm_status slm_vk_copy(slm_vk_backend *be, slm_ref dev, void *host, size_t bytes, bool to_device)
{
    const char *what = to_device ? "upload" : "download";
    if (be->lost)
        return slm_error(SLM_STATUS_DEVICE, "vulkan: %s: the device was lost", what);
    if (be->in_step || be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "vulkan: %s inside a step (between begin_step and wait)", what);
    if (!dev.buf || (!host && bytes))
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "vulkan: %s: %s is NULL", what,
                         dev.buf ? "the host pointer" : "the buffer");
    if (dev.off > dev.buf->bytes || bytes > dev.buf->bytes - dev.off)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "vulkan: %s of %zu bytes at offset %zu overruns a %zu-byte buffer", what,
                         bytes, dev.off, dev.buf->bytes);
    VkBuffer dbuf = be->blocks[dev.buf->block].buf;
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < VK_STAGE_BYTES ? bytes - done : VK_STAGE_BYTES;
        VkBufferCopy region = {.size = n};
        VkDeviceSize at = dev.buf->off + dev.off + done;
        if (to_device) {
            memcpy(be->stage_map, (const char *)host + done, n);
            region.dstOffset = at;
        } else {
            region.srcOffset = at;
        }
        VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                       .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
        slm_status st = slm_vk_check(be, vkBeginCommandBuffer(be->cmd, &bi), "vkBeginCommandBuffer");
        if (st)
            return st;
        if (to_device)
            vkCmdCopyBuffer(be->cmd, be->stage_buf, dbuf, 1, &region);
        else
            vkCmdCopyBuffer(be->cmd, dbuf, be->stage_buf, 1, &region);
        if ((st = slm_vk_check(be, vkEndCommandBuffer(be->cmd), "vkEndCommandBuffer")) ||
            (st = slm_vk_submit_wait(be, be->cmd)))
            return st;
        if (!to_device)
            memcpy((char *)host + done, be->stage_map, n);
        done += n;
    }
    return SLM_OK;
}

slm_status slm_vk_step_reserve(slm_vk_backend *be, size_t slots)
{
    if (slots <= be->step_cap)
        return SLM_OK;
    size_t cap = be->step_cap ? be->step_cap : 4096;
    while (cap < slots)
        cap *= 2;
    int32_t *host = realloc(be->step_host, cap * sizeof *host);
    if (!host)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory");
    be->step_host = host;
    drop_buffer(be, &be->step_buf, &be->step_mem);
    be->step_cap = 0;
    slm_status st = make_buffer(be, cap * sizeof(int32_t), &be->step_buf, &be->step_mem,
                                &be->step_map);
    if (st)
        return st;
    be->step_cap = cap;
    write_step_binding(be);
    return SLM_OK;
}

slm_status slm_vk_readback_reserve(slm_vk_backend *be, size_t bytes)
{
    if (bytes <= be->rb_bytes)
        return SLM_OK;
    drop_buffer(be, &be->rb_buf, &be->rb_mem);
    be->rb_bytes = 0;
    slm_status st = make_buffer(be, bytes, &be->rb_buf, &be->rb_mem, &be->rb_map);
    if (!st)
        be->rb_bytes = bytes;
    return st;
}

/* Bytes of device memory this backend holds in blocks. */
static uint64_t held_bytes(const slm_vk_backend *be)
{
    uint64_t n = 0;
    for (int i = 0; i < VK_MAX_BLOCKS; i++)
        if (be->blocks[i].buf)
            n += be->blocks[i].size;
    return n;
}

static bool has_extension(VkPhysicalDevice pd, const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *e = malloc(n * sizeof *e);
    bool found = false;
    if (e && vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = !strcmp(e[i].extensionName, name);
    free(e);
    return found;
}

slm_status slm_vk_memory(slm_vk_backend *be, slm_mem_info *out)
{
    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    bool has_budget = has_extension(be->phys, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    VkPhysicalDeviceMemoryProperties2 mp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
        .pNext = has_budget ? &budget : NULL};
    vkGetPhysicalDeviceMemoryProperties2(be->phys, &mp);
    uint32_t heap = 0;
    for (uint32_t i = 0; i < be->memprops.memoryTypeCount; i++)
        if (be->memprops.memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) {
            heap = be->memprops.memoryTypes[i].heapIndex;
            break;
        }
    *out = (slm_mem_info){0};
    out->total_bytes = mp.memoryProperties.memoryHeaps[heap].size;
    if (has_budget && budget.heapBudget[heap] > 0) {
        uint64_t b = budget.heapBudget[heap], u = budget.heapUsage[heap];
        out->free_bytes = b > u ? b - u : 0;
    } else {
        uint64_t held = held_bytes(be);
        out->free_bytes = out->total_bytes > held ? out->total_bytes - held : 0;
    }
    /* CPU implementations and integrated GPUs share the host's RAM. */
    out->host = be->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ||
                be->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
    return SLM_OK;
}

/* ------------------------------------------------------------------------ */
/* open / close                                                              */

static slm_status create_instance(slm_vk_backend *be)
{
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "slm",
                             .pEngineName = "slm",
                             .apiVersion = VK_API_VERSION_1_2};
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                               .pApplicationInfo = &app};
    VkResult r = vkCreateInstance(&ci, NULL, &be->inst);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED) {
        be->inst = VK_NULL_HANDLE;
        return slm_error(SLM_STATUS_DEVICE, "vulkan: no Vulkan device found (no driver: %s)",
                         vk_result_name(r));
    }
    if (r != VK_SUCCESS)
        be->inst = VK_NULL_HANDLE;
    return slm_vk_check(be, r, "vkCreateInstance");
}

static slm_status pick_device(slm_vk_backend *be, int device_index)
{
    uint32_t n = 0;
    slm_status st = slm_vk_check(be, vkEnumeratePhysicalDevices(be->inst, &n, NULL),
                                 "vkEnumeratePhysicalDevices");
    if (st)
        return st;
    if (n == 0)
        return slm_error(SLM_STATUS_DEVICE, "vulkan: no Vulkan device found");
    VkPhysicalDevice pds[16];
    if (n > 16)
        n = 16;
    if ((st = slm_vk_check(be, vkEnumeratePhysicalDevices(be->inst, &n, pds),
                           "vkEnumeratePhysicalDevices")) != SLM_OK &&
        n == 0)
        return st;
    int idx = -1;
    if ((st = choose(be, pds, n, device_index >= 0 ? device_index : -1, &idx)))
        return st;
    be->phys = pds[idx];
    vkGetPhysicalDeviceProperties(be->phys, &be->props);
    vkGetPhysicalDeviceMemoryProperties(be->phys, &be->memprops);
    /* A CPU implementation that vulkan.device names was chosen by the user. */
    if (device_index == SLM_DEVICE_GPU_ONLY && be->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU &&
        !be->want_device[0])
        return slm_error(SLM_STATUS_DEVICE,
                         "vulkan: only a CPU implementation (%s) was found, and a GPU was asked for",
                         be->props.deviceName);
    be->qfam = compute_family(be->phys);
    return SLM_OK;
}

static slm_status create_device(slm_vk_backend *be)
{
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = be->qfam,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio};
    VkPhysicalDeviceFeatures feat = {.shaderStorageBufferArrayDynamicIndexing = VK_TRUE};
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                             .queueCreateInfoCount = 1,
                             .pQueueCreateInfos = &qi,
                             .pEnabledFeatures = &feat};
    slm_status st = slm_vk_check(be, vkCreateDevice(be->phys, &di, NULL, &be->dev), "vkCreateDevice");
    if (st) {
        be->dev = VK_NULL_HANDLE;
        return st;
    }
    vkGetDeviceQueue(be->dev, be->qfam, 0, &be->queue);
    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                  .queueFamilyIndex = be->qfam};
    if ((st = slm_vk_check(be, vkCreateCommandPool(be->dev, &pi, NULL, &be->cpool),
                           "vkCreateCommandPool")))
        return st;
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = be->cpool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = VK_CHUNKS};
    if ((st = slm_vk_check(be, vkAllocateCommandBuffers(be->dev, &ai, be->cmds),
                           "vkAllocateCommandBuffers")))
        return st;
    be->cmd = be->cmds[0];
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    return slm_vk_check(be, vkCreateFence(be->dev, &fi, NULL, &be->fence), "vkCreateFence");
}

static slm_status create_descriptors(slm_vk_backend *be)
{
    VkDescriptorSetLayoutBinding b[2] = {
        {.binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
         .descriptorCount = VK_MAX_BLOCKS, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT},
        {.binding = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
         .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT},
    };
    VkDescriptorSetLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                          .bindingCount = 2,
                                          .pBindings = b};
    slm_status st = slm_vk_check(be, vkCreateDescriptorSetLayout(be->dev, &li, NULL, &be->dsl),
                                 "vkCreateDescriptorSetLayout");
    if (st)
        return st;
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                               .descriptorCount = VK_MAX_BLOCKS + 1};
    VkDescriptorPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                     .maxSets = 1,
                                     .poolSizeCount = 1,
                                     .pPoolSizes = &ps};
    if ((st = slm_vk_check(be, vkCreateDescriptorPool(be->dev, &pi, NULL, &be->dpool),
                           "vkCreateDescriptorPool")))
        return st;
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = be->dpool,
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &be->dsl};
    if ((st = slm_vk_check(be, vkAllocateDescriptorSets(be->dev, &ai, &be->dset),
                           "vkAllocateDescriptorSets")))
        return st;
    VkPushConstantRange pr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
                              .size = VK_PUSH_MAX * 4};
    VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &be->dsl,
                                      .pushConstantRangeCount = 1,
                                      .pPushConstantRanges = &pr};
    if ((st = slm_vk_check(be, vkCreatePipelineLayout(be->dev, &pli, NULL, &be->layout),
                           "vkCreatePipelineLayout")))
        return st;
    for (int i = 0; i < VK_MAX_BLOCKS; i++)
        write_slot(be, i);
    return SLM_OK;
}

slm_status slm_vk_device_open(slm_vk_backend *be, int device_index)
{
    slm_status st;
    if ((st = create_instance(be)) || (st = pick_device(be, device_index)))
        return st;
    query_subgroup(be);
    size_limits(be);
    describe(be);
    if ((st = create_device(be)))
        return st;
    if ((st = make_buffer(be, 256, &be->dummy_buf, &be->dummy_mem, NULL)) ||
        (st = make_buffer(be, VK_STAGE_BYTES, &be->stage_buf, &be->stage_mem, &be->stage_map)) ||
        (st = create_descriptors(be)))
        return st;
    return slm_vk_step_reserve(be, VK_ST_HEADER + 4 * 256 + VK_ARENA_FLOATS);
}

void slm_vk_device_close(slm_vk_backend *be)
{
    if (be->dev) {
        vkDeviceWaitIdle(be->dev);
        for (int i = 0; i < VK_MAX_BLOCKS; i++)
            if (be->blocks[i].buf)
                block_release(be, i);
        drop_buffer(be, &be->step_buf, &be->step_mem);
        drop_buffer(be, &be->rb_buf, &be->rb_mem);
        drop_buffer(be, &be->stage_buf, &be->stage_mem);
        drop_buffer(be, &be->dummy_buf, &be->dummy_mem);
        vkDestroyPipelineLayout(be->dev, be->layout, NULL);
        vkDestroyDescriptorPool(be->dev, be->dpool, NULL);
        vkDestroyDescriptorSetLayout(be->dev, be->dsl, NULL);
        vkDestroyFence(be->dev, be->fence, NULL);
        vkDestroyCommandPool(be->dev, be->cpool, NULL);
        vkDestroyDevice(be->dev, NULL);
    }
    if (be->inst)
        vkDestroyInstance(be->inst, NULL);
    free(be->step_host);
}
