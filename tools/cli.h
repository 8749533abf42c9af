/*
 * cli.h — what the subcommands of the `slm` command share: the dispatch
 * table entry, the default model path and small option helpers.
 */
#ifndef SLM_CLI_H
#define SLM_CLI_H

#include <stdbool.h>

/* Relative to the working directory, as scripts/fetch-model puts it. */
#define SLM_DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct slm_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} slm_cli_command;

int slm_cmd_info(int argc, char **argv);

/* Prints "slm <cmd>: <message>" on stderr; returns 1 (the exit status). */
int slm_cli_fail(const char *cmd, const char *fmt, ...);

/* Parses a non-negative integer option value; false (and a message) when
 * the text is not one. */
bool slm_cli_int(const char *cmd, const char *opt, const char *text, long lo, long hi,
                 long *out);

#endif
