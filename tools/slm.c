/*
 * slm.c — the `slm` command: one binary, one subcommand per job. Each
 * subcommand lives in its own tools/cmd_*.c file and is listed in the table
 * below; this file only dispatches and prints the overall help.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "slm.h"

static const slm_cli_command commands[] = {
    {"bench", "measure prompt processing and decode speed (llama-bench style)", slm_cmd_bench},
    {"chat", "an interactive chat that keeps the conversation's history", slm_cmd_chat},
    {"cost", "dollars per million tokens, measured over a sweep of concurrency levels",
     slm_cmd_cost},
    {"embed", "print the pooled embedding of each input text (JSON lines or numbers)",
     slm_cmd_embed},
    {"info", "print a model's metadata and tensor table", slm_cmd_info},
    {"run", "generate text for a prompt, streamed to stdout", slm_cmd_run},
    {"serve", "serve the model over HTTP with OpenAI's API (continuous batching)", slm_cmd_serve},
    {"synth", "write a random-weight GGUF with a real model's shapes", slm_cmd_synth},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: slm <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'slm <command> --help' describes a command's options.\n"
               "'slm --version' prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("slm %s\n", slm_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "slm: unknown command '%s' (try 'slm --help')\n", argv[1]);
    return 2;
}
