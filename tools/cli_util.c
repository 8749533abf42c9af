/*
 * cli_util.c — helpers every subcommand of `slm` uses: error lines and
 * strict option parsing (a typo in a number is an error, not a zero),
 * waiting for an engine to go idle, the CPU's name.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

bool slm_cli_int_list(const char *cmd, const char *opt, const char *text, long lo, long hi,
                      int *out, int max, int *n)
{
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf) {
        slm_cli_fail(cmd, "%s: list too long", opt);
        return false;
    }
    *n = 0;
    for (char *item = buf, *next; item; item = next) {
        next = strchr(item, ',');
        if (next)
            *next++ = '\0';
        long v;
        if (*n == max) {
            slm_cli_fail(cmd, "%s: at most %d values", opt, max);
            return false;
        }
        if (!slm_cli_int(cmd, opt, item, lo, hi, &v))
            return false;
        out[(*n)++] = (int)v;
    }
    return true;
}

void slm_cli_keep_result(slm_result *dst, char *error, size_t cap, const slm_result *src)
{
    *dst = *src;
    snprintf(error, cap, "%s", src->error ? src->error : "");
    dst->error = error;
}

bool slm_cli_float(const char *cmd, const char *opt, const char *text, float *out)
{
    char *end;
    double d = text ? strtod(text, &end) : 0;
    if (!text || end == text || *end || !isfinite(d)) {
        slm_cli_fail(cmd, "%s expects a number, got '%s'", opt, text ? text : "(nothing)");
        return false;
    }
    *out = (float)d;
    return true;
}

const char *slm_cli_sampling_help =
    "  --temp T               temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K, --top-p P, --min-p P, --repeat-penalty R\n"
    "                         sampling filters (defaults 40, 0.95, 0.05, 1.0)\n";

/* A number option in [lo, hi] (lo itself excluded when lo_open). */
static bool number_in(const char *cmd, const char *opt, const char *text, double lo, bool lo_open,
                      double hi, float *out)
{
    float v;
    if (!slm_cli_float(cmd, opt, text, &v))
        return false;
    if (v < lo || (lo_open && v == lo) || v > hi) {
        slm_cli_fail(cmd, "%s expects a number in %s%g, %g], got '%s'", opt, lo_open ? "(" : "[",
                     lo, hi, text);
        return false;
    }
    *out = v;
    return true;
}

int slm_cli_sampling_opt(const char *cmd, slm_sampling *s, const char *opt, const char *text)
{
    long l = 0;
    bool ok;
    /* The ranges are the sampler's: checked here so that a bad option
     * fails before the model loads, not at the first answer. */
    if (!strcmp(opt, "--seed")) {
        ok = slm_cli_int(cmd, opt, text, 0, 0x7fffffffL, &l);
        s->seed = (uint64_t)l;
    } else if (!strcmp(opt, "--top-k")) {
        ok = slm_cli_int(cmd, opt, text, 0, 1 << 20, &l);
        s->top_k = (int)l;
    } else if (!strcmp(opt, "--temp")) {
        ok = slm_cli_float(cmd, opt, text, &s->temperature);
    } else if (!strcmp(opt, "--top-p")) {
        ok = number_in(cmd, opt, text, 0, true, INFINITY, &s->top_p);
    } else if (!strcmp(opt, "--min-p")) {
        ok = number_in(cmd, opt, text, 0, false, 1, &s->min_p);
    } else if (!strcmp(opt, "--repeat-penalty")) {
        ok = number_in(cmd, opt, text, 0, true, INFINITY, &s->repeat_penalty);
    } else {
        return 0;
    }
    return ok ? 1 : -1;
}

double slm_cli_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int slm_cli_wait_idle(const char *cmd, slm_engine *e, slm_engine_stats *es)
{
    double end = slm_cli_now() + 5;
    for (;;) {
        *es = (slm_engine_stats){.size = sizeof *es};
        if (slm_engine_get_stats(e, es))
            return slm_cli_fail(cmd, "%s", slm_last_error());
        if (es->running == 0 && es->waiting == 0)
            return 0;
        if (slm_cli_now() > end)
            return slm_cli_fail(cmd, "the engine did not go idle after its requests finished");
        struct timespec d = {0, 200 * 1000};
        nanosleep(&d, NULL);
    }
}

void slm_cli_cpu_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && !strncmp(line, "model name", 10)) {
            snprintf(buf, cap, "%s", colon + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
}

/* Bytes as a short human figure ("368.0 MiB"). */
static const char *human(uint64_t b, char *buf, size_t n)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

void slm_cli_describe_kv(const slm_engine_stats *s, char *buf, size_t n)
{
    static const char *why[] = {"the measured free memory", "--parallel full contexts",
                                "the KV byte cap", "--kv-blocks"};
    char pool[32], fr[32], tot[32], ws[32];
    int by = s->kv_sized_by >= 0 && s->kv_sized_by < 4 ? s->kv_sized_by : 1;
    int k = snprintf(buf, n, "KV pool %d blocks (%s), sized by %s", s->kv_blocks_total,
                     human(s->kv_pool_bytes, pool, sizeof pool), why[by]);
    if (k > 0 && (size_t)k < n && s->mem_total_bytes)
        snprintf(buf + k, n - (size_t)k, "; memory %s free of %s after weights and %s of workspace",
                 human(s->mem_free_bytes, fr, sizeof fr), human(s->mem_total_bytes, tot, sizeof tot),
                 human(s->workspace_bytes, ws, sizeof ws));
}
