/*
 * cli_util.c — helpers every subcommand of `slm` uses: error lines and
 * strict option parsing (a typo in a number is an error, not a zero).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int slm_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "slm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

bool slm_cli_int(const char *cmd, const char *opt, const char *text, long lo, long hi,
                 long *out)
{
    char *end;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno || end == text || *end || v < lo || v > hi) {
        slm_cli_fail(cmd, "%s expects an integer in %ld..%ld, got '%s'", opt, lo, hi,
                     text ? text : "(nothing)");
        return false;
    }
    *out = v;
    return true;
}

bool slm_cli_float(const char *cmd, const char *opt, const char *text, float *out)
{
    char *end;
    double d = text ? strtod(text, &end) : 0;
    if (!text || end == text || *end) {
        slm_cli_fail(cmd, "%s expects a number, got '%s'", opt, text ? text : "(nothing)");
        return false;
    }
    *out = (float)d;
    return true;
}
