/*
 * cost_report.c — the reports of `slm cost`: JSON for machines (one object:
 * the run's facts — machine, model and its sha256 prefix, backend, commit,
 * workload, targets, hardware profile — and "levels", one object per
 * concurrency level), and Markdown for people (the same facts in a header
 * and one table row per level). Figures that do not exist (a cost without a
 * profile, the device memory of a backend that cannot tell) are JSON null
 * and "-" in the table, never a made-up zero.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "cost.h"

/* A number, or null when it is not finite (JSON has no NaN or Infinity). */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *pcts_json(const slm_cost_pcts *p)
{
    return json_pack("{s:o, s:o, s:o}", "p50", num(p->p50), "p90", num(p->p90), "p99",
                     num(p->p99));
}

static json_t *level_json(const slm_cost_level *l)
{
    json_t *o = json_pack(
        "{s:i, s:i, s:o, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:i, s:I, "
        "s:I, s:o, s:o}",
        "level", l->level, "requests", l->n_requests, "wall_s", num(l->wall_s), "input_tokens",
        (json_int_t)l->in_tokens, "output_tokens", (json_int_t)l->out_tokens, "cached_tokens",
        (json_int_t)l->cached_tokens, "preemptions", (json_int_t)l->preemptions,
        "output_tok_s", num(l->out_tps), "input_tok_s", num(l->in_tps),
        "per_user_output_tok_s", num(l->user_out_tps), "requests_s", num(l->rps), "ttft_ms",
        pcts_json(&l->ttft_ms), "tpot_ms", pcts_json(&l->tpot_ms), "e2e_ms",
        pcts_json(&l->e2e_ms), "kv_blocks_peak", l->kv_blocks_peak, "kv_blocks_total",
        l->kv_blocks_total, "kv_pool_bytes", (json_int_t)l->kv_pool_bytes, "host_peak_bytes",
        (json_int_t)l->host_peak_bytes, "device_used_bytes",
        l->device_used_bytes ? json_integer((json_int_t)l->device_used_bytes) : json_null(),
        "measured_power_w", l->power_w >= 0 ? json_real(l->power_w) : json_null());
    if (l->remote) /* the server's own figures: not seen from here */
        for (const char **k = (const char *[]){"cached_tokens", "preemptions", "kv_blocks_peak",
                                               "kv_blocks_total", "kv_pool_bytes",
                                               "host_peak_bytes", NULL};
             *k; k++)
            json_object_set_new(o, *k, json_null());
    json_object_set_new(o, "meets_targets", json_boolean(l->meets_targets));
    if (l->priced)
        json_object_set_new(o, "cost",
                            json_pack("{s:s, s:o, s:o, s:o, s:o}", "power_source",
                                      l->power_source, "usd_per_hour", num(l->usd_per_hour),
                                      "usd_per_mtok_output", num(l->usd_mtok_out),
                                      "usd_per_mtok_input", num(l->usd_mtok_in),
                                      "usd_per_mtok_blended", num(l->usd_mtok_blended)));
    else
        json_object_set_new(o, "cost", json_null());
    return o;
}

static json_t *hardware_json(const slm_cost_run *r)
{
    const slm_cost_profile *p = r->hw;
    if (!p)
        return json_pack("{s:s}", "note", r->hw_note);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "name", p->name, "file", p->path,
                          "price_source", p->price_source, "price_date", p->price_date,
                          "electricity_usd_per_kwh", json_real(r->usd_per_kwh), "utilization",
                          json_real(r->utilization));
    if (p->cloud_usd_per_hour > 0) {
        json_object_set_new(o, "cloud_usd_per_hour", json_real(p->cloud_usd_per_hour));
    } else {
        json_object_set_new(o, "purchase_usd", json_real(p->purchase_usd));
        json_object_set_new(o, "amortization_years", json_real(p->amortization_years));
        json_object_set_new(o, "power_load_w", json_real(p->power_load_w));
        json_object_set_new(o, "power_idle_w", json_real(p->power_idle_w));
    }
    return o;
}

static json_t *workload_json(const slm_cost_run *r)
{
    /* requests_per_level null: 4 x level, at least 8 (each level says its count). */
    json_t *o = json_pack("{s:s, s:o, s:I}", "kind", r->workload, "requests_per_level",
                          r->requests_per_level ? json_integer(r->requests_per_level)
                                                : json_null(),
                          "seed", (json_int_t)r->seed);
    if (!strcmp(r->workload, "fixed")) {
        json_object_set_new(o, "in", json_integer(r->fixed_in));
        json_object_set_new(o, "out", json_integer(r->fixed_out));
    } else {
        json_object_set_new(o, "in", json_pack("{s:s, s:f, s:f, s:i, s:i}", "distribution",
                                               "lognormal", "median", SLM_COST_CHAT_IN_MEDIAN,
                                               "sigma", SLM_COST_CHAT_IN_SIGMA, "min",
                                               SLM_COST_CHAT_IN_MIN, "max", SLM_COST_CHAT_IN_MAX));
        json_object_set_new(o, "out", json_pack("{s:s, s:f, s:f, s:i, s:i}", "distribution",
                                                "lognormal", "median", SLM_COST_CHAT_OUT_MEDIAN,
                                                "sigma", SLM_COST_CHAT_OUT_SIGMA, "min",
                                                SLM_COST_CHAT_OUT_MIN, "max",
                                                SLM_COST_CHAT_OUT_MAX));
    }
    return o;
}

int slm_cost_write_json(const char *cmd, const char *path, const slm_cost_run *r,
                        const slm_cost_level *lv, int n)
{
    json_t *levels = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(levels, level_json(&lv[i]));
    json_t *root = json_pack(
        "{s:s, s:s, s:{s:s, s:s, s:i}, s:s, s:o, s:o, s:s, s:o, s:{s:f, s:f}, s:o, s:o, s:o}",
        "tool", "slm cost", "commit", r->commit, "machine", "host", r->host, "cpu", r->cpu,
        "cores", r->cores, "model", r->model, "model_sha256",
        r->model_sha256 ? json_string(r->model_sha256) : json_null(), "model_bytes",
        r->model_sha256 ? json_integer((json_int_t)r->model_bytes) : json_null(), "backend", r->backend, "workload", workload_json(r),
        "targets", "ttft_p99_ms", r->ttft_target_ms, "tpot_p99_ms", r->tpot_target_ms,
        "hardware", hardware_json(r), "stopped", r->stopped[0] ? json_string(r->stopped)
                                                               : json_null(),
        "levels", levels);
    json_object_set_new(root, "goodput_level",
                        r->goodput >= 0 ? json_integer(lv[r->goodput].level) : json_null());
    int rc = root && json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) == 0 ? 0 : -1;
    json_decref(root);
    if (rc)
        return slm_cli_fail(cmd, "cannot write %s", path);
    return 0;
}

/* "12.34" or "-" for a figure that does not exist. */
static const char *fig(char *buf, size_t cap, const char *fmt, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, fmt, v);
    else
        snprintf(buf, cap, "-");
    return buf;
}

static void md_header(FILE *f, const slm_cost_run *r)
{
    fprintf(f, "# slm cost: %s\n\n", r->model);
    fprintf(f, "- machine: %s, %s, %d cores\n- backend: %s\n", r->host, r->cpu, r->cores,
            r->backend);
    if (r->model_sha256)
        fprintf(f, "- model sha256: %s (%.1f MiB)\n", r->model_sha256,
                (double)r->model_bytes / 1048576.0);
    else
        fprintf(f, "- model: the server's (no file here to hash)\n");
    fprintf(f, "- commit: %s\n", r->commit);
    if (!strcmp(r->workload, "fixed"))
        fprintf(f, "- workload: fixed, %d prompt + %d output tokens", r->fixed_in, r->fixed_out);
    else
        fprintf(f, "- workload: chat mix (lognormal prompt median %.0f, output median %.0f; "
                   "see slm cost --help)", SLM_COST_CHAT_IN_MEDIAN, SLM_COST_CHAT_OUT_MEDIAN);
    if (r->requests_per_level)
        fprintf(f, ", %d requests per level", r->requests_per_level);
    else
        fprintf(f, ", 4 x level requests per level (at least 8)");
    fprintf(f, ", seed %llu, closed loop\n", (unsigned long long)r->seed);
    fprintf(f, "- targets: p99 TTFT <= %.0f ms, p99 time per output token <= %.0f ms\n",
            r->ttft_target_ms, r->tpot_target_ms);
    if (r->hw) {
        const slm_cost_profile *p = r->hw;
        if (p->cloud_usd_per_hour > 0)
            fprintf(f, "- hardware: %s, $%.3f/hour rented", p->name, p->cloud_usd_per_hour);
        else
            fprintf(f, "- hardware: %s, $%.0f over %.1f years, %.0f W load / %.0f W idle at "
                       "$%.3f/kWh", p->name, p->purchase_usd, p->amortization_years,
                    p->power_load_w, p->power_idle_w, r->usd_per_kwh);
        fprintf(f, ", utilization %.2f; price: %s (%s)\n", r->utilization, p->price_source,
                p->price_date);
    } else {
        fprintf(f, "- hardware: not priced (%s)\n", r->hw_note);
    }
    if (r->stopped[0])
        fprintf(f, "- sweep stopped: %s\n", r->stopped);
}

static void md_row(FILE *f, const slm_cost_level *l, bool goodput)
{
    char b[16][32], kv[64] = "-", host[32] = "-";
    if (!l->remote) { /* --url: the server's KV pool and memory are not seen */
        snprintf(kv, sizeof kv, "%d / %d", l->kv_blocks_peak, l->kv_blocks_total);
        snprintf(host, sizeof host, "%.0f", (double)l->host_peak_bytes / 1048576.0);
    }
    fprintf(f, "| %d%s | %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %s / %s / %s | %s "
               "| %s |",
            l->level, goodput ? " *" : "", fig(b[0], 32, "%.1f", l->out_tps),
            fig(b[1], 32, "%.1f", l->user_out_tps), fig(b[2], 32, "%.1f", l->in_tps),
            fig(b[3], 32, "%.2f", l->rps), fig(b[4], 32, "%.0f", l->ttft_ms.p50),
            fig(b[5], 32, "%.0f", l->ttft_ms.p90), fig(b[6], 32, "%.0f", l->ttft_ms.p99),
            fig(b[7], 32, "%.1f", l->tpot_ms.p50), fig(b[8], 32, "%.1f", l->tpot_ms.p90),
            fig(b[9], 32, "%.1f", l->tpot_ms.p99), fig(b[10], 32, "%.0f", l->e2e_ms.p50),
            fig(b[11], 32, "%.0f", l->e2e_ms.p90), fig(b[12], 32, "%.0f", l->e2e_ms.p99),
            kv, host);
    if (l->priced)
        fprintf(f, " %s | %s | %s | %s |\n", fig(b[13], 32, "%.3f", l->usd_mtok_out),
                fig(b[14], 32, "%.3f", l->usd_mtok_in), fig(b[15], 32, "%.3f", l->usd_mtok_blended),
                l->power_source);
    else
        fprintf(f, " - | - | - | - |\n");
}

int slm_cost_write_md(const char *cmd, const char *path, const slm_cost_run *r,
                      const slm_cost_level *lv, int n)
{
    bool out = !strcmp(path, "-");
    FILE *f = out ? stdout : fopen(path, "w");
    if (!f)
        return slm_cli_fail(cmd, "cannot write %s", path);
    md_header(f, r);
    fprintf(f, "\n| users | out tok/s | per-user tok/s | in tok/s | req/s | TTFT ms p50/p90/p99 "
               "| TPOT ms p50/p90/p99 | end-to-end ms p50/p90/p99 | KV blocks peak/total "
               "| host peak MiB | $/M out | $/M in | $/M blended | power |\n"
               "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
               "| ---: | ---: | --- |\n");
    for (int i = 0; i < n; i++)
        md_row(f, &lv[i], i == r->goodput);
    if (r->goodput >= 0)
        fprintf(f, "\n\\* goodput: the highest output throughput whose p99 TTFT and p99 time "
                   "per output token meet the targets.\n");
    else
        fprintf(f, "\nNo level met both latency targets (no goodput).\n");
    fprintf(f, "\n$/M out and $/M in charge the machine's whole cost to that kind of token "
               "alone; blended divides it by both together.\n");
    if (out ? fflush(f) : fclose(f))
        return slm_cli_fail(cmd, "cannot write %s", out ? "stdout" : path);
    return 0;
}
