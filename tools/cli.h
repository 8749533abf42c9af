/*
 * cli.h — what the subcommands of the `slm` command share: the dispatch
 * table entry, the default model path, option helpers, the mapping of the
 * SLM_* environment onto the library's parameters, progress lines, model
 * loading, one generation through the engine and a batch of them timed.
 *
 * NOTE: this header includes slm.h alone. `run`, `chat` and `serve` are
 * front-ends of the public API like any program that embeds slm; only
 * `info`, `synth` and `bench` look inside the runtime, through
 * cli_internal.h.
 */
#ifndef SLM_CLI_H
#define SLM_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "slm.h"

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
int slm_cmd_cost(int argc, char **argv);
int slm_cmd_embed(int argc, char **argv);

/* ---- options ------------------------------------------------------------ */

/* Options every model-running subcommand takes (see slm_cli_common_help). */
typedef struct slm_cli_common {
    const char *model;
    const char *backend; /* $SLM_BACKEND, else "auto", unless --backend */
    int threads;         /* 0: one per core */
    bool verbose;
} slm_cli_common;

extern const char *slm_cli_common_help;
void slm_cli_common_init(slm_cli_common *o);
/* If argv[*i] is a common option, consumes it (and its value) and returns 1;
 * returns 0 when it is not one, -1 on a bad value (message printed). */
int slm_cli_common_opt(const char *cmd, slm_cli_common *o, int argc, char **argv, int *i);

/* Prints "slm <cmd>: <message>" on stderr; returns 1 (the exit status). */
int slm_cli_fail(const char *cmd, const char *fmt, ...);

/* Parses a non-negative integer option value; false (and a message) when
 * the text is not one. */
bool slm_cli_int(const char *cmd, const char *opt, const char *text, long lo, long hi,
                 long *out);

/* Parses a comma-separated list of integers in lo..hi ("1,8,32") into
 * out[max], its length into *n; false (and a message) on a bad item or
 * more than max of them. */
bool slm_cli_int_list(const char *cmd, const char *opt, const char *text, long lo, long hi,
                      int *out, int max, int *n);

/* Keeps an slm_result past its on_done call: copies *src into *dst and its
 * error message (valid only during the call) into error[cap]. */
void slm_cli_keep_result(slm_result *dst, char *error, size_t cap, const slm_result *src);

/* Parses a number option value (strtod syntax, finite); false (and a
 * message) when the text is not one. */
bool slm_cli_float(const char *cmd, const char *opt, const char *text, float *out);

/* The sampling options `slm run` and `slm chat` share (--seed, --temp,
 * --top-k, --top-p, --min-p, --repeat-penalty): 1 when opt is one and its
 * value was stored in s, -1 on a bad or out-of-range value (message
 * printed; so a bad option fails at once, not at the first answer), 0 when
 * opt is not one of them. slm_cli_sampling_help describes them but --seed,
 * whose meaning differs. */
int slm_cli_sampling_opt(const char *cmd, slm_sampling *s, const char *opt, const char *text);
extern const char *slm_cli_sampling_help;

/* Seconds on the monotonic clock, for the timings every subcommand prints. */
double slm_cli_now(void);

/* Waits (a few seconds at most) until the engine's counters show it idle
 * (no request running or waiting) and leaves them in *es: the engine
 * publishes its counters after a step's callbacks, so the last on_done can
 * come before them. Returns 0, or 1 after an error line. */
int slm_cli_wait_idle(const char *cmd, slm_engine *e, slm_engine_stats *es);

/* The CPU's model name from /proc/cpuinfo ("unknown" when not there). */
void slm_cli_cpu_name(char *buf, size_t cap);

/* One line saying how the engine sized its KV pool and from which numbers
 * (the measured memory, the workspace, the cap), for startup lines. */
void slm_cli_describe_kv(const slm_engine_stats *s, char *buf, size_t n);

/* ---- the environment (cli_env.c: libc only, so tests compile it) ------- */

/* The backend --backend defaults to: $SLM_BACKEND when set and not empty,
 * else "auto". */
const char *slm_cli_env_backend(void);

/* Writes into buf[cap] the slm_model_params.options string the SLM_*
 * environment asks for ("" when none): SLM_CPU_SIMD → cpu.simd, SLM_CPU_ACT
 * → cpu.act, SLM_CPU_PACK → cpu.pack, SLM_VK_DEVICE → vulkan.device, SLM_VK_NO_SUBGROUP (set, not
 * "0") → vulkan.subgroup=0, SLM_VK_MAX_BUFFER → vulkan.max_buffer,
 * SLM_VK_MATVEC_ROWS → vulkan.matvec_rows, SLM_VK_SPLIT_MIN →
 * vulkan.split_min, SLM_VK_CHUNK → vulkan.chunk, SLM_VK_MATMUL →
 * vulkan.matmul, and vulkan.cache_dir = $XDG_CACHE_HOME/slm, else
 * $HOME/.cache/slm. Empty variables count as unset. Returns 0; -1 with a
 * message in why[why_cap] when a variable's value holds a comma, a space
 * or '=' (the options string cannot carry those) or buf is too small. */
int slm_cli_env_options(char *buf, size_t cap, char *why, size_t why_cap);

/* ---- progress (progress.c) ---------------------------------------------- */

/* One piece of long work shown on stderr: on a terminal one live line
 * redrawn with "\r" as the percentage changes; otherwise, when `plain` was
 * asked for, a few whole lines (0, 25, 50, 75 and 100%), else nothing —
 * a redirected stderr gets no carriage-return litter. */
typedef struct slm_cli_progress {
    char label[512]; /* "slm synth: writing FILE" */
    bool tty, plain;
    int shown;       /* terminal: the percentage drawn; plain: quarters printed */
} slm_cli_progress;

void slm_cli_progress_start(slm_cli_progress *p, bool plain, const char *fmt, ...);
/* An slm_progress_cb: user is the slm_cli_progress. One thread at a time. */
void slm_cli_progress_update(float fraction, void *user);
/* ok: the work finished (100% shown); else the line is only ended, so an
 * error line that follows starts on its own line. */
void slm_cli_progress_end(slm_cli_progress *p, bool ok);

/* ---- models and generation ---------------------------------------------- */

/* Opens the model with the common options (backend, threads, the
 * environment's backend options, progress on a terminal) and fills info
 * (may be NULL). Says on stderr when the automatic choice had to leave the
 * GPU. Returns 0, or 1 after printing one clear error line. */
int slm_cli_load(const char *cmd, const slm_cli_common *o, slm_model **m, slm_model_info *info);

/* The chat template check `run` and `chat` share before generating: a
 * named template must be one slm knows (rendering a probe message proves
 * it); without one, a warning on stderr when the model's own template is
 * not recognised. Returns 0, or 1 after printing why the name is unknown. */
int slm_cli_check_template(const char *cmd, const slm_model *m, const slm_model_info *info,
                           const char *name);

/* What one generation gave: the result (its error copied into error), and
 * the text streamed when it was asked to be kept (malloc'd, NUL-terminated,
 * "" for an empty answer; the caller frees it, whatever was returned). */
typedef struct slm_cli_answer {
    slm_result result;
    char error[512];
    char *text;
    size_t len;
} slm_cli_answer;

/* Submits p (its on_token, on_done and user are replaced), streams the
 * answer to stdout as it comes, ends it with a newline and waits for it to
 * finish; keep_text collects it in a->text too. Returns 0, or 1 after one
 * error line: the engine refused the request (a prompt longer than the
 * context, an unknown chat template, ...), generation failed, or memory
 * ran out. */
int slm_cli_generate(const char *cmd, slm_engine *e, const slm_request_params *p,
                     bool keep_text, slm_cli_answer *a);

/* The timings line on stderr after an answer: prompt tokens and their time
 * (time to first token less the queue), with how many came from the prefix
 * cache when show_cached; generated tokens, their time and rate; the
 * backend. */
void slm_cli_timings(const char *cmd, const slm_result *r, const char *backend, bool show_cached);

/* ---- batched decode, timed (bench_batch.c) ------------------------------ */

/* An engine that runs n_seq sequences of n_prompt random tokens and n_gen
 * generated ones together, in lockstep (see bench_batch.c for how and for
 * the exact definitions of the times). */
typedef struct slm_cli_batch slm_cli_batch;

/* One run's times, seconds on the engine's clock. */
typedef struct slm_cli_batch_times {
    double prefill_s; /* the step that took every prompt → the last first token */
    double decode_s;  /* the last first token → the last sequence done */
    int generated;    /* tokens generated over all sequences (n_seq × n_gen) */
} slm_cli_batch_times;

/* Opens the engine (max_running n_seq, one step for all prompts, a context
 * of n_prompt + n_gen). Returns 0, or 1 after one error line: the engine
 * could not open, or its KV pool cannot hold every sequence whole. */
int slm_cli_batch_open(const char *cmd, slm_model *m, int n_seq, int n_prompt, int n_gen,
                       slm_cli_batch **b);
/* One run with fresh random prompts. Returns 0, or 1 after one error line
 * (a request failed, stopped short, or the run was not in lockstep). */
int slm_cli_batch_run(slm_cli_batch *b, slm_cli_batch_times *t);
/* Closes the engine. Accepts NULL. */
void slm_cli_batch_free(slm_cli_batch *b);

#endif
