/*
 * cli.h — what the subcommands of the `slm` command share: the dispatch
 * table entry, the default model path and small option helpers.
 */
#ifndef SLM_CLI_H
#define SLM_CLI_H

#include <stdbool.h>

#include "chat.h"
#include "model.h"
#include "sampler.h"

/* Relative to the working directory, as scripts/fetch-model puts it. */
#define SLM_DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct slm_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} slm_cli_command;

int slm_cmd_info(int argc, char **argv);
int slm_cmd_run(int argc, char **argv);
int slm_cmd_chat(int argc, char **argv);
int slm_cmd_bench(int argc, char **argv);
int slm_cmd_synth(int argc, char **argv);
int slm_cmd_serve(int argc, char **argv);

/* Options every model-running subcommand takes (see slm_cli_common_help). */
typedef struct slm_cli_common {
    const char *model;
    const char *backend; /* NULL: $SLM_BACKEND or auto */
    int threads;         /* 0: one per core */
    bool verbose;
} slm_cli_common;

extern const char *slm_cli_common_help;
void slm_cli_common_init(slm_cli_common *o);
/* If argv[*i] is a common option, consumes it (and its value) and returns 1;
 * returns 0 when it is not one, -1 on a bad value (message printed). */
int slm_cli_common_opt(const char *cmd, slm_cli_common *o, int argc, char **argv, int *i);

typedef struct slm_cli_model {
    slm_backend *be;
    slm_model *m;
} slm_cli_model;

/* Opens the backend and loads the model (progress on a terminal). Returns 0,
 * or 1 after printing one clear error line. */
int slm_cli_load(const char *cmd, const slm_cli_common *o, slm_cli_model *out);
void slm_cli_unload(slm_cli_model *cm);

/* Prints "slm <cmd>: <message>" on stderr; returns 1 (the exit status). */
int slm_cli_fail(const char *cmd, const char *fmt, ...);

/* Parses a non-negative integer option value; false (and a message) when
 * the text is not one. */
bool slm_cli_int(const char *cmd, const char *opt, const char *text, long lo, long hi,
                 long *out);

/* Parses a number option value (strtod syntax); false (and a message) when
 * the text is not one. */
bool slm_cli_float(const char *cmd, const char *opt, const char *text, float *out);

/* The sampling options `slm run` and `slm chat` share (--seed, --temp,
 * --top-k, --top-p, --min-p, --repeat-penalty): 1 when opt is one and its
 * value text was stored in sp, -1 on a bad value (message printed), 0 when
 * opt is not one of them. slm_cli_sampling_help describes them but --seed,
 * whose meaning differs. */
int slm_cli_sampling_opt(const char *cmd, slm_sampler_params *sp, const char *opt,
                         const char *text);
extern const char *slm_cli_sampling_help;

/* The chat template to render with: the one named (NULL: the model's own,
 * with a warning on stderr when it is not recognised and ChatML is used).
 * Returns 0, or 1 after printing why the name is unknown. */
int slm_cli_chat_template(const char *cmd, const char *name, const slm_model *m,
                          slm_chat_template *t);

/* Seconds on the monotonic clock, for the timings every subcommand prints. */
double slm_cli_now(void);

#endif
