/*
 * cli_model.c — what every model-running subcommand does first: take the
 * common options, open the model through slm.h (with the backend options
 * the environment asks for, progress on a terminal) and, for the commands
 * that render chats, check the chat template.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int slm_cli_load(const char *cmd, const slm_cli_common *o, slm_model **m, slm_model_info *info)
{
    *m = NULL;
    char options[8192], why[512];
    if (slm_cli_env_options(options, sizeof options, why, sizeof why))
        return slm_cli_fail(cmd, "%s", why);
    if (o->verbose && options[0])
        fprintf(stderr, "slm %s: backend options from the environment: %s\n", cmd, options);
    slm_model_params mp;
    slm_model_params_default(&mp);
    mp.backend = o->backend;
    mp.n_threads = o->threads;
    mp.options = options;
    /* Loading takes a second or two: a plain log gets lines only with -v. */
    slm_cli_progress pr;
    slm_cli_progress_start(&pr, o->verbose, "slm %s: loading %s", cmd, o->model);
    mp.progress = slm_cli_progress_update;
    mp.progress_user = &pr;
    double t0 = slm_cli_now();
    slm_status st = slm_model_open(o->model, &mp, m);
    slm_cli_progress_end(&pr, st == SLM_OK);
    if (st)
        return slm_cli_fail(cmd, "%s", slm_last_error());
    slm_model_info mine = {.size = sizeof mine};
    if (!info)
        info = &mine;
    info->size = sizeof *info;
    if (slm_model_get_info(*m, info)) {
        int rc = slm_cli_fail(cmd, "%s", slm_last_error());
        slm_model_close(*m);
        *m = NULL;
        return rc;
    }
    if (info->fallback[0])
        fprintf(stderr, "slm %s: the model did not load on the GPU (%s); running on the CPU\n",
                cmd, info->fallback);
    if (info->tokenizer_warning[0])
        fprintf(stderr, "slm %s: warning: %s\n", cmd, info->tokenizer_warning);
    if (o->verbose)
        fprintf(stderr, "slm %s: loaded %s in %.2f s on %s\n", cmd, o->model, slm_cli_now() - t0,
                info->backend);
    return 0;
}

int slm_cli_check_template(const char *cmd, const slm_model *m, const slm_model_info *info,
                           const char *name)
{
    if (!name) {
        if (info->chat_template_note[0])
            fprintf(stderr, "slm %s: %s; using %s (choose with --chat-template)\n", cmd,
                    info->chat_template_note, info->chat_template);
        return 0;
    }
    slm_message probe = {"user", "hi"};
    int n;
    if (slm_model_count_message_tokens(m, &probe, 1, name, &n))
        return slm_cli_fail(cmd, "%s", slm_last_error());
    return 0;
}

int slm_cli_common_opt(const char *cmd, slm_cli_common *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    bool has_value = *i + 1 < argc;
    long v;
    if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_value) {
        o->model = argv[++*i];
    } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has_value) {
        if (!slm_cli_int(cmd, a, argv[++*i], 1, 1024, &v))
            return -1;
        o->threads = (int)v;
    } else if (!strcmp(a, "--backend") && has_value) {
        o->backend = argv[++*i];
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        o->verbose = true;
    } else {
        return 0;
    }
    return 1;
}

void slm_cli_common_init(slm_cli_common *o)
{
    memset(o, 0, sizeof *o);
    o->model = SLM_DEFAULT_MODEL;
    o->backend = slm_cli_env_backend();
}

const char *slm_cli_common_help =
    "  -m, --model PATH     GGUF model (default: " SLM_DEFAULT_MODEL ")\n"
    "  -t, --threads N      CPU threads (default: one per core)\n"
    "  --backend NAME       cpu, vulkan, cuda or auto (default: $SLM_BACKEND, else auto)\n"
    "  -v, --verbose        say what was loaded where, with progress lines\n"
    "  -h, --help           this text\n"
    "\n"
    "Environment (passed to the backends as options; empty means unset):\n"
    "  SLM_BACKEND          the backend when --backend is not given\n"
    "  SLM_CPU_SIMD         scalar, avx2, avx512, avx512vnni or neon: the CPU kernels'\n"
    "                       instructions\n"
    "  SLM_CPU_ACT          q8 or q8x2: the CPU's activation precision\n"
    "  SLM_CPU_PACK         off: keep the CPU's weights as stored (no 16-row repacking)\n"
    "  SLM_VK_DEVICE        the Vulkan device: its index or a substring of its name\n"
    "  SLM_VK_NO_SUBGROUP   any value but 0: Vulkan reductions without subgroups\n"
    "  SLM_VK_MAX_BUFFER    bytes: a lower limit on one Vulkan buffer\n"
    "  SLM_VK_MATVEC_ROWS, SLM_VK_SPLIT_MIN, SLM_VK_CHUNK\n"
    "                       Vulkan kernel thresholds (tests reach every path with them)\n"
    "  SLM_VK_MATMUL        direct or gpu: the Vulkan matmul kernel family\n"
    "  SLM_CUDA_DEVICE      the CUDA device's index\n"
    "  SLM_CUDA_MATVEC_ROWS, SLM_CUDA_SPLIT_MIN\n"
    "                       CUDA kernel thresholds (-1 rows: every matmul on cuBLAS)\n"
    "  XDG_CACHE_HOME, HOME the Vulkan pipeline cache goes to $XDG_CACHE_HOME/slm,\n"
    "                       else $HOME/.cache/slm\n";
