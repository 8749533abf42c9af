/*
 * cost_compare.c — `slm cost --compare A.json B.json`: two cost reports
 * (two machines, two commits, two backends) side by side, as a Markdown
 * table on stdout: for each concurrency level both have, output tok/s,
 * p99 TTFT, p99 TPOT and $/M output tokens of A and of B and the ratio B/A.
 * Reads only what cost_report.c writes; a missing figure (an unpriced
 * report) shows as "-".
 */
#include <math.h>
#include <stdio.h>

#include <jansson.h>

#include "cli.h"
#include "cost.h"

static json_t *load(const char *cmd, const char *path)
{
    json_error_t e;
    json_t *r = json_load_file(path, 0, &e);
    if (!r) {
        slm_cli_fail(cmd, "%s:%d: %s", path, e.line, e.text);
        return NULL;
    }
    if (!json_is_array(json_object_get(r, "levels"))) {
        slm_cli_fail(cmd, "%s: not an slm cost report (no \"levels\" array)", path);
        json_decref(r);
        return NULL;
    }
    return r;
}

/* obj[k1][k2] (k2 may be NULL) as a number; NAN when absent or null. */
static double get(const json_t *obj, const char *k1, const char *k2)
{
    const json_t *v = json_object_get(obj, k1);
    if (k2)
        v = json_object_get(v, k2);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const json_t *level_of(const json_t *report, json_int_t level)
{
    size_t i;
    json_t *lv;
    json_array_foreach(json_object_get(report, "levels"), i, lv)
        if (json_integer_value(json_object_get(lv, "level")) == level)
            return lv;
    return NULL;
}

static const char *str(const json_t *o, const char *k1, const char *k2)
{
    const json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    return json_is_string(v) ? json_string_value(v) : "-";
}

/* "a | b | ratio" for one figure. */
static void triple(double a, double b, const char *fmt)
{
    char x[32] = "-", y[32] = "-", z[32] = "-";
    if (isfinite(a))
        snprintf(x, sizeof x, fmt, a);
    if (isfinite(b))
        snprintf(y, sizeof y, fmt, b);
    if (isfinite(a) && isfinite(b) && a != 0)
        snprintf(z, sizeof z, "%.2fx", b / a);
    printf(" %s | %s | %s |", x, y, z);
}

int slm_cost_compare(const char *cmd, const char *a_path, const char *b_path)
{
    json_t *a = load(cmd, a_path), *b = a ? load(cmd, b_path) : NULL;
    if (!a || !b) {
        json_decref(a);
        return 1;
    }
    const char *who[2] = {a_path, b_path};
    json_t *rep[2] = {a, b};
    for (int k = 0; k < 2; k++)
        printf("- %s: %s: %s on %s (%s), commit %s, hardware %s\n", k ? "B" : "A", who[k],
               str(rep[k], "model", NULL), str(rep[k], "backend", NULL),
               str(rep[k], "machine", "cpu"), str(rep[k], "commit", NULL),
               str(rep[k], "hardware", "name"));
    printf("\n| users | out tok/s A | B | B/A | p99 TTFT ms A | B | B/A | p99 TPOT ms A | B | B/A "
           "| $/M out A | B | B/A |\n| ---: |%s\n",
           " ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    size_t i;
    json_t *la;
    int shown = 0;
    json_array_foreach(json_object_get(a, "levels"), i, la) {
        json_int_t level = json_integer_value(json_object_get(la, "level"));
        const json_t *lb = level_of(b, level);
        if (!lb)
            continue;
        printf("| %lld |", (long long)level);
        triple(get(la, "output_tok_s", NULL), get(lb, "output_tok_s", NULL), "%.1f");
        triple(get(la, "ttft_ms", "p99"), get(lb, "ttft_ms", "p99"), "%.0f");
        triple(get(la, "tpot_ms", "p99"), get(lb, "tpot_ms", "p99"), "%.1f");
        triple(get(la, "cost", "usd_per_mtok_output"), get(lb, "cost", "usd_per_mtok_output"),
               "%.3f");
        putchar('\n');
        shown++;
    }
    if (!shown)
        printf("\n(no concurrency level is in both reports)\n");
    json_decref(a);
    json_decref(b);
    return 0;
}
