/*
 * cost_chart.c — the two SVG charts of `slm cost --svg PREFIX`, drawn by
 * hand (no plotting library): PREFIX-throughput.svg, output tok/s (all
 * users, and per user) against the concurrency level; PREFIX-cost.svg, $
 * per million output tokens against p99 time per output token, one point
 * per level, with the hosted-model price points ($0.5, $5, $7 per Mtok) as
 * dashed reference lines. Both x axes and the cost axis are logarithmic
 * (levels double; costs span decades); every axis has its unit and ticks,
 * every series a legend entry, and each series is one <g class="series">
 * so tests can count them.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cost.h"

/* The plot area inside a 720 x 440 picture. */
enum { W = 720, H = 440, L = 80, R = 180, T = 40, B = 60 };

typedef struct {
    double lo, hi; /* data range shown */
    bool log;
} axis;

static double pos(const axis *a, double v, double from, double to)
{
    double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo))
                      : (v - a->lo) / (a->hi - a->lo);
    return from + t * (to - from);
}

static double px(const axis *a, double v) { return pos(a, v, L, W - R); }
static double py(const axis *a, double v) { return pos(a, v, H - B, T); }

/* A round step for about n linear ticks over [lo, hi]. */
static double nice_step(double span, int n)
{
    double raw = span / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* Widens a log axis to whole decades, a linear one to round steps from 0. */
static void fit_axis(axis *a)
{
    if (a->log) {
        a->lo = pow(10, floor(log10(a->lo)));
        a->hi = pow(10, ceil(log10(a->hi)));
        if (a->hi <= a->lo)
            a->hi = a->lo * 10;
    } else {
        a->lo = 0;
        double s = nice_step(a->hi > 0 ? a->hi : 1, 5);
        a->hi = ceil((a->hi > 0 ? a->hi : 1) / s) * s;
    }
}

/* Text for XML: profile names are the user's. */
static void text(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
}

static void header(FILE *f, const char *title)
{
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n"
               "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">",
            W, H, W, H, W, H, L);
    text(f, title);
    fprintf(f, "</text>\n");
}

static void tick_x(FILE *f, const axis *x, double v, const char *label)
{
    double X = px(x, v);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n"
               "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
            X, T, X, H - B, X, H - B + 18, label);
}

static void tick_y(FILE *f, const axis *y, double v, const char *label)
{
    double Y = py(y, v);
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
               "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
            L, Y, W - R, Y, L - 6, Y + 4, label);
}

/* The axes' frame, their ticks and titles. Log axes tick each decade (and
 * the 2 and 5 between on the x axis, which spans few decades), unless
 * xticks[n_xticks] gives the x ticks (the levels themselves). */
static void frame(FILE *f, const axis *x, const axis *y, const char *xt, const char *yt,
                  const double *xticks, int n_xticks)
{
    char buf[32];
    const axis *ax[2] = {x, y};
    for (int i = 0; i < n_xticks; i++) {
        snprintf(buf, sizeof buf, "%g", xticks[i]);
        tick_x(f, x, xticks[i], buf);
    }
    for (int k = n_xticks ? 1 : 0; k < 2; k++) {
        const axis *a = ax[k];
        if (a->log) {
            for (double d = a->lo; d <= a->hi * 1.0001; d *= 10)
                for (int m = 1; m <= (k ? 1 : 5); m += (m == 1 ? 1 : 3)) {
                    if (d * m > a->hi * 1.0001)
                        break;
                    snprintf(buf, sizeof buf, "%g", d * m);
                    (k ? tick_y : tick_x)(f, a, d * m, buf);
                }
        } else {
            double s = nice_step(a->hi - a->lo, 5);
            for (double v = a->lo; v <= a->hi + s / 1e6; v += s) {
                snprintf(buf, sizeof buf, "%g", v);
                (k ? tick_y : tick_x)(f, a, v, buf);
            }
        }
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
               "stroke=\"black\"/>\n"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n"
               "<text transform=\"translate(20 %d) rotate(-90)\" text-anchor=\"middle\">%s"
               "</text>\n",
            L, T, W - R - L, H - B - T, (L + W - R) / 2, H - 18, xt, (T + H - B) / 2, yt);
}

static void legend(FILE *f, int i, const char *color, bool dashed, const char *label)
{
    int y = T + 10 + 20 * i;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>"
               "<text x=\"%d\" y=\"%d\">%s</text>\n",
            W - R + 12, y, W - R + 36, y, color, dashed ? " stroke-dasharray=\"6 4\"" : "",
            W - R + 42, y + 4, label);
}

/* One series: a polyline with a dot (and its level as a label) per point. */
static void series(FILE *f, const axis *x, const axis *y, const double *xs, const double *ys,
                   const int *levels, int n, const char *color, const char *name)
{
    fprintf(f, "<g class=\"series\" data-name=\"%s\">\n<polyline fill=\"none\" stroke=\"%s\" "
               "stroke-width=\"2\" points=\"", name, color);
    for (int i = 0; i < n; i++)
        fprintf(f, "%.1f,%.1f ", px(x, xs[i]), py(y, ys[i]));
    fprintf(f, "\"/>\n");
    for (int i = 0; i < n; i++) {
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", px(x, xs[i]),
                py(y, ys[i]), color);
        if (levels)
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">%d</text>", px(x, xs[i]) + 5,
                    py(y, ys[i]) - 6, levels[i]);
        fputc('\n', f);
    }
    fprintf(f, "</g>\n");
}

static int finish(const char *cmd, FILE *f, const char *path)
{
    fprintf(f, "</svg>\n");
    if (fclose(f))
        return slm_cli_fail(cmd, "cannot write %s", path);
    return 0;
}

static int throughput_chart(const char *cmd, const char *path, const slm_cost_run *r,
                            const slm_cost_level *lv, int n)
{
    double xs[64], agg[64], user[64];
    axis x = {lv[0].level, lv[0].level, true}, y = {0, 0, false};
    for (int i = 0; i < n; i++) {
        xs[i] = lv[i].level, agg[i] = lv[i].out_tps;
        user[i] = isfinite(lv[i].user_out_tps) ? lv[i].user_out_tps : 0;
        x.lo = fmin(x.lo, xs[i]), x.hi = fmax(x.hi, xs[i]);
        y.hi = fmax(y.hi, fmax(agg[i], user[i]));
    }
    /* The levels double: ticks at each, a little room at both ends. */
    x.lo /= 1.25, x.hi *= 1.25;
    fit_axis(&y);
    FILE *f = fopen(path, "w");
    if (!f)
        return slm_cli_fail(cmd, "cannot write %s", path);
    char title[256];
    snprintf(title, sizeof title, "Output throughput vs concurrency (%s workload)", r->workload);
    header(f, title);
    frame(f, &x, &y, "concurrent users (requests in flight)", "output tokens per second", xs, n);
    series(f, &x, &y, xs, agg, NULL, n, "#1f77b4", "all users");
    series(f, &x, &y, xs, user, NULL, n, "#ff7f0e", "per user");
    legend(f, 0, "#1f77b4", false, "all users (tok/s)");
    legend(f, 1, "#ff7f0e", false, "per user, decoding");
    return finish(cmd, f, path);
}

static int cost_chart(const char *cmd, const char *path, const slm_cost_run *r,
                      const slm_cost_level *lv, int n)
{
    static const double refs[] = {0.5, 5, 7};
    static const char *ref_names[] = {"$0.5/M (hosted small)", "$5/M (hosted large)",
                                      "$7/M (hosted large)"};
    double xs[64], ys[64];
    int levels[64], m = 0;
    axis x = {INFINITY, 0, true}, y = {0.5, 7, true};
    for (int i = 0; i < n; i++) {
        if (!lv[i].priced || !isfinite(lv[i].usd_mtok_out) || !(lv[i].tpot_ms.p99 > 0))
            continue;
        xs[m] = lv[i].tpot_ms.p99, ys[m] = lv[i].usd_mtok_out, levels[m++] = lv[i].level;
        x.lo = fmin(x.lo, xs[m - 1]), x.hi = fmax(x.hi, xs[m - 1]);
        y.lo = fmin(y.lo, ys[m - 1]), y.hi = fmax(y.hi, ys[m - 1]);
    }
    if (!m)
        return 0; /* nothing priced: no cost chart (the report says why) */
    fit_axis(&x);
    fit_axis(&y);
    FILE *f = fopen(path, "w");
    if (!f)
        return slm_cli_fail(cmd, "cannot write %s", path);
    char title[256];
    snprintf(title, sizeof title, "Cost vs latency on %s (labels: users)", r->hw->name);
    header(f, title);
    frame(f, &x, &y, "p99 time per output token (ms)", "$ per million output tokens", NULL, 0);
    static const char *ref_color[] = {"#2ca02c", "#d62728", "#9467bd"};
    for (int k = 0; k < 3; k++) {
        fprintf(f, "<g class=\"reference\"><line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                   "stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/></g>\n",
                L, py(&y, refs[k]), W - R, py(&y, refs[k]), ref_color[k]);
        legend(f, k + 1, ref_color[k], true, ref_names[k]);
    }
    series(f, &x, &y, xs, ys, levels, m, "#1f77b4", "slm");
    legend(f, 0, "#1f77b4", false, "measured, per level");
    return finish(cmd, f, path);
}

int slm_cost_write_svg(const char *cmd, const char *prefix, const slm_cost_run *r,
                       const slm_cost_level *lv, int n)
{
    char path[1024];
    if (n <= 0 || n > 64)
        return 0;
    snprintf(path, sizeof path, "%s-throughput.svg", prefix);
    if (throughput_chart(cmd, path, r, lv, n))
        return 1;
    snprintf(path, sizeof path, "%s-cost.svg", prefix);
    return cost_chart(cmd, path, r, lv, n);
}
