/*
 * cmd_info.c — `slm info`: what is inside a GGUF file. Prints the file facts,
 * every metadata key with its value (long arrays abbreviated), the tensor
 * table (name, type, shape, size, offset) and a summary of parameters and
 * bytes per tensor type, and whether slm can run it (and if not, the key,
 * tensor or type that stops it). Reads only through the validating GGUF
 * reader, so it is safe on any file and reports what is wrong with a
 * malformed one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"

#define ARRAY_PREVIEW 8

static void print_str(const char *s, size_t len, size_t max)
{
    putchar('"');
    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (len > max)
        printf("... (%zu bytes)", len);
}

static void print_scalar(const slm_gguf *g, int64_t i, const slm_gguf_kv *kv)
{
    int64_t iv;
    double fv;
    bool bv;
    const char *s;
    size_t len;
    if (kv->type == SLM_GGUF_STRING && slm_gguf_kv_str(g, i, &s, &len) == SLM_OK)
        print_str(s, len, 200);
    else if (kv->type == SLM_GGUF_BOOL && slm_gguf_kv_bool(g, i, &bv) == SLM_OK)
        fputs(bv ? "true" : "false", stdout);
    else if ((kv->type == SLM_GGUF_FLOAT32 || kv->type == SLM_GGUF_FLOAT64) &&
             slm_gguf_kv_float(g, i, &fv) == SLM_OK)
        printf("%.9g", fv);
    else if (kv->type == SLM_GGUF_UINT64) {
        uint64_t u;
        memcpy(&u, kv->data, 8);
        printf("%" PRIu64, u);
    } else if (slm_gguf_kv_int(g, i, &iv) == SLM_OK)
        printf("%" PRId64, iv);
    else
        fputs("?", stdout);
}

static void print_array(const slm_gguf *g, int64_t i, const slm_gguf_kv *kv)
{
    printf("[%s × %" PRIu64 "] [", slm_gguf_type_name(kv->elem_type), kv->count);
    for (uint64_t j = 0; j < kv->count && j < ARRAY_PREVIEW; j++) {
        int64_t iv;
        double fv;
        bool bv;
        const char *s;
        size_t len;
        if (j)
            fputs(", ", stdout);
        if (slm_gguf_arr_str(g, i, j, &s, &len) == SLM_OK)
            print_str(s, len, 40);
        else if (slm_gguf_arr_float(g, i, j, &fv) == SLM_OK)
            printf("%.6g", fv);
        else if (slm_gguf_arr_bool(g, i, j, &bv) == SLM_OK)
            fputs(bv ? "true" : "false", stdout);
        else if (slm_gguf_arr_int(g, i, j, &iv) == SLM_OK)
            printf("%" PRId64, iv);
        else
            fputs("?", stdout);
    }
    printf("%s]", kv->count > ARRAY_PREVIEW ? ", ..." : "");
}

static void print_metadata(const slm_gguf *g)
{
    int64_t n = slm_gguf_kv_count(g);
    printf("\nmetadata (%" PRId64 " keys):\n", n);
    for (int64_t i = 0; i < n; i++) {
        const slm_gguf_kv *kv = slm_gguf_kv_at(g, i);
        printf("  %-45s %-8s ", kv->key, slm_gguf_type_name(kv->type));
        if (kv->type == SLM_GGUF_ARRAY)
            print_array(g, i, kv);
        else
            print_scalar(g, i, kv);
        putchar('\n');
    }
}

static void print_tensors(const slm_gguf *g)
{
    uint64_t bytes_by_type[SLM_TYPE_COUNT] = {0};
    int64_t count_by_type[SLM_TYPE_COUNT] = {0};
    int64_t n = slm_gguf_tensor_count(g), params = 0;
    printf("\ntensors (%" PRId64 "):\n  %-4s %-32s %-7s %-24s %12s %12s\n", n, "#", "name",
           "type", "shape [ne0, ne1, ...]", "bytes", "offset");
    for (int64_t i = 0; i < n; i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        char shape[96];
        int off = snprintf(shape, sizeof shape, "[%" PRId64, t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && off < (int)sizeof shape; d++)
            off += snprintf(shape + off, sizeof shape - (size_t)off, ", %" PRId64, t->ne[d]);
        snprintf(shape + off, sizeof shape - (size_t)off, "]");
        printf("  %-4" PRId64 " %-32s %-7s %-24s %12" PRIu64 " %12" PRIu64 "\n", i, t->name,
               slm_type_name(t->type), shape, t->nbytes, t->offset);
        params += t->n_elements;
        bytes_by_type[t->type] += t->nbytes;
        count_by_type[t->type]++;
    }
    printf("\nsummary: %" PRId64 " parameters (%.1f M)\n", params, (double)params / 1e6);
    for (int ty = 0; ty < SLM_TYPE_COUNT; ty++)
        if (count_by_type[ty])
            printf("  %-7s %4" PRId64 " tensors %12" PRIu64 " bytes%s\n", slm_type_name(ty),
                   count_by_type[ty], bytes_by_type[ty],
                   slm_type_supported(ty) ? "" : "  (not supported by slm's kernels)");
}

/* Whether slm runs the file: its architecture, keys, tensors and types,
 * checked as loading would check them (no weights read). */
static void print_support(const char *path, const slm_gguf *g)
{
    char arch[64] = "?";
    slm_gguf_get_str_copy(g, "general.architecture", arch, sizeof arch);
    if (slm_model_check(path) == SLM_OK)
        printf("\nsupported: yes (architecture %s)\n", arch);
    else
        printf("\nsupported: no (architecture %s): %s\n", arch, slm_last_error());
}

/* Each backend's devices, found by opening device 0, 1, ... until one is
 * not there (the backends have no separate listing call; opening is what
 * proves a device usable). The CPU backend is one device. */
static void print_devices(void)
{
    printf("\ndevices:\n");
    for (int b = 0; b < slm_backend_count(); b++) {
        const slm_backend_ops *ops = slm_backend_at(b);
        for (int d = 0; d < 16; d++) {
            slm_backend_params bp;
            slm_backend_params_default(&bp);
            bp.device_index = strcmp(ops->name, "cpu") ? d : SLM_DEVICE_ANY;
            slm_backend *be = NULL;
            slm_status st = ops->open(&bp, &be);
            if (st) {
                if (st != SLM_STATUS_NOT_FOUND || d == 0)
                    printf("  %-7s %s%s\n", ops->name, d ? "" : "no usable device: ",
                           slm_last_error());
                break;
            }
            printf("  %-7s [%d] %s\n", ops->name, d, ops->describe(be));
            ops->close(be);
            if (!strcmp(ops->name, "cpu"))
                break;
        }
    }
}

static void help(void)
{
    printf("usage: slm info [-m MODEL] [--no-tensors] [--devices]\n\n"
           "Prints a GGUF file's metadata and tensor table, whether slm runs it (if not,\n"
           "the architecture, key, tensor or type that stops it), then the devices each backend\n"
           "of this build sees (the index is what --backend's device choice and\n"
           "SLM_VK_DEVICE take).\n\n"
           "  -m, --model PATH   GGUF file (default: %s)\n"
           "  --no-tensors       metadata only\n"
           "  --devices          only the devices, no model\n"
           "  -h, --help         this text\n",
           SLM_DEFAULT_MODEL);
}

int slm_cmd_info(int argc, char **argv)
{
    const char *path = SLM_DEFAULT_MODEL;
    bool tensors = true, devices_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            help();
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--no-tensors")) {
            tensors = false;
        } else if (!strcmp(argv[i], "--devices")) {
            devices_only = true;
        } else {
            return slm_cli_fail("info", "unknown or incomplete option '%s' (see slm info --help)",
                                argv[i]);
        }
    }
    if (devices_only) {
        print_devices();
        return 0;
    }
    slm_gguf *g;
    if (slm_gguf_open(path, &g) != SLM_OK)
        return slm_cli_fail("info", "%s", slm_last_error());
    printf("file: %s\nGGUF version %u, alignment %u, %" PRIu64 " bytes, data at %" PRIu64 "\n",
           path, slm_gguf_version(g), slm_gguf_alignment(g), slm_gguf_file_size(g),
           slm_gguf_data_start(g));
    print_metadata(g);
    if (tensors)
        print_tensors(g);
    print_support(path, g);
    slm_gguf_close(g);
    print_devices();
    return 0;
}
