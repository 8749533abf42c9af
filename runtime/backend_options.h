/*
 * backend_options.h — the public slm_model_params.options string ("key=value"
 * pairs) turned into the knobs of slm_backend_params. The library reads no
 * environment variables; the slm command builds this string from its SLM_*
 * ones (tools/cli_env.c).
 */
#ifndef SLM_BACKEND_OPTIONS_H
#define SLM_BACKEND_OPTIONS_H

#include "backend.h"

/* Parses options (NULL or "" = none) into p. The strings p points at live
 * in `store` (n bytes, at least strlen(options) + 1). An unknown key or a bad
 * value fails with INVALID_ARGUMENT naming it. */
slm_status slm_backend_options_parse(const char *options, slm_backend_params *p, char *store,
                                     size_t n);

#endif
