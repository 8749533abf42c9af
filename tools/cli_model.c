/*
 * cli_model.c — what every model-running subcommand does first: open the
 * chosen backend and load the model onto it, showing progress on a terminal.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api_model.h"
#include "backend_registry.h"
#include "cli.h"

static void progress(float f, void *user)
{
    const char *path = user;
    fprintf(stderr, "\rslm: loading %s %3d%%", path, (int)(f * 100 + 0.5f));
    fflush(stderr);
}

int slm_cli_load(const char *cmd, const slm_cli_common *o, slm_cli_model *out)
{
    memset(out, 0, sizeof *out);
    slm_backend_params bp;
    slm_backend_params_default(&bp);
    bp.n_threads = o->threads;
    bool tty = isatty(2);
    double t0 = slm_cli_now();
    char why[512];
    slm_status st = slm_model_load_on(o->model, o->backend, &bp, tty ? progress : NULL,
                                      (void *)o->model, &out->be, &out->m, why, sizeof why);
    if (tty)
        fputc('\n', stderr);
    if (st) {
        slm_cli_unload(out);
        return slm_cli_fail(cmd, "%s", slm_last_error());
    }
    if (why[0])
        fprintf(stderr, "slm %s: the model did not load on the GPU (%s); running on the CPU\n",
                cmd, why);
    if (o->verbose)
        fprintf(stderr, "slm: loaded %s in %.2f s on %s\n", o->model, slm_cli_now() - t0,
                out->be->ops->describe(out->be));
    return 0;
}

void slm_cli_unload(slm_cli_model *cm)
{
    slm_model_free(cm->m);
    if (cm->be)
        cm->be->ops->close(cm->be);
    memset(cm, 0, sizeof *cm);
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
}

const char *slm_cli_common_help =
    "  -m, --model PATH     GGUF model (default: " SLM_DEFAULT_MODEL ")\n"
    "  -t, --threads N      CPU threads (default: one per core)\n"
    "  --backend NAME       cpu, vulkan or auto (default: $SLM_BACKEND, else auto)\n"
    "  -v, --verbose        say what was loaded where\n"
    "  -h, --help           this text\n";
