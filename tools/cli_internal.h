/*
 * cli_internal.h — the one door from the `slm` command into the runtime's
 * internal headers, and the list of who may use it.
 *
 * `run`, `chat` and `serve` are front-ends of the public API (cli.h includes
 * slm.h alone): they generate through the engine like any embedding
 * program, so they test that API and cannot drift from it. Three commands
 * are different in kind and may look inside:
 *   - `info` prints what is in a GGUF file (every metadata key, the tensor
 *     table, quant types) and the devices each backend opens — facts the
 *     public API deliberately does not model;
 *   - `synth` writes GGUF files with the runtime's writer and quantizers;
 *   - `bench` times the forward pass itself (llama-bench's ppN/tgN, no
 *     sampling, no scheduler) and reports weight bytes per token. (Its
 *     --batch mode is a front-end like `run`: bench_batch.c drives the
 *     public engine and includes cli.h alone.)
 * Nothing else in tools/ includes this header.
 */
#ifndef SLM_CLI_INTERNAL_H
#define SLM_CLI_INTERNAL_H

#include "cli.h"

#include "backend_registry.h" /* info: every backend's devices */
#include "gguf.h"             /* info, bench: file facts and tensors */
#include "gguf_write.h"       /* synth */
#include "model.h"            /* bench: the loaded weights and backend of an slm_model */
#include "quant.h"            /* info, synth: type names and quantizers */
#include "session.h"          /* bench: the forward pass without the engine */
#include "status.h"           /* synth: slm_error */

#endif
