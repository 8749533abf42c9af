/*
 * cmd_cost.c — `slm cost`: dollars per million tokens, measured. A sweep
 * over concurrency levels (cost_sweep.c: a closed loop through the public
 * engine, the model in-process), each level's throughput and latency
 * percentiles, priced with a hardware profile (cost_model.c:
 * bench/hardware/NAME.conf, picked from the backend's device name unless
 * --hardware says), and reported as a Markdown table on stdout and, when
 * asked, JSON and Markdown files (cost_report.c) and SVG charts
 * (cost_chart.c); --compare puts two JSON reports side by side
 * (cost_compare.c). With --url the same sweep runs against an
 * OpenAI-compatible server over HTTP (cost_http.c) instead of the engine
 * in-process, so slm serve, llama-server and vLLM are measured alike.
 * "Goodput" is the level
 * with the highest output throughput — and so the lowest cost — whose p99
 * TTFT and p99 time per output token meet the targets.
 *
 * This file: options, the workload, the loop over levels (stopping cleanly
 * at the first level the engine cannot take), the pricing of each level.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cost.h"

#include "slm_commit.h" /* SLM_GIT_COMMIT, generated at build time */

#define MAX_LEVELS 32

typedef struct {
    slm_cli_common c;
    int levels[MAX_LEVELS], n_levels;
    long n_in, n_out, requests, seed, kv_bytes_max;
    bool chat;
    const char *hardware, *hardware_dir, *json, *md, *svg;
    const char *url, *api_key; /* --url: a server instead of the engine */
    const char *compare[2]; /* --compare A B: no sweep */
    double usd_per_kwh, utilization, ttft_ms, tpot_ms;
} cost_opts;

static void help(void)
{
    printf(
        "usage: slm cost [options]\n\n"
        "Measures dollars per million tokens: runs a workload through the engine at each\n"
        "concurrency level (a closed loop: LEVEL requests always in flight), records\n"
        "throughput and latency, and prices them with a hardware profile.\n\n"
        "  --levels LIST        concurrency levels (default 1,2,4,8,16,32,64); the sweep\n"
        "                       stops, saying why, at the first the engine cannot take\n"
        "  --in N, --out N      fixed workload: N prompt tokens (random, so the prefix\n"
        "                       cache reuses nothing) and N output tokens, end-of-sequence\n"
        "                       ignored (default 512 and 128)\n"
        "  --mix chat           instead, a chat-like mix: prompt lengths lognormal with\n"
        "                       median %.0f and sigma %.2f clipped to [%d, %d], output\n"
        "                       lengths lognormal median %.0f sigma %.2f clipped to\n"
        "                       [%d, %d]. The lognormal shape (positive, right-skewed, a\n"
        "                       long tail) is chosen for chat traffic; the parameters are\n"
        "                       this project's choice, not fitted to a published trace\n"
        "  --requests N         requests per level (default 4 x level, at least 8)\n"
        "  --seed N             the workload's seed: same seed, same requests (default 1)\n"
        "  --kv-bytes-max N     cap the KV pool at N bytes (default: sized from memory);\n"
        "                       a level whose users do not fit stops the sweep\n"
        "  --hardware NAME      a profile in the profiles folder by file name or name, or a\n"
        "                       profile file (default: the one whose match strings fit the\n"
        "                       backend's device name; none fits: no prices)\n"
        "  --hardware-dir DIR   the profiles folder (default bench/hardware)\n"
        "  --electricity USD    electricity price per kWh (default 0.15, an assumption)\n"
        "  --utilization U      fraction of the time the machine serves this load, (0, 1]:\n"
        "                       idle time is paid by the busy time (default 1)\n"
        "  --ttft-target MS     p99 time-to-first-token target (default 1000)\n"
        "  --tpot-target MS     p99 time-per-output-token target (default 100)\n"
        "  --json FILE          write the JSON report (the run's facts, one object per level)\n"
        "  --md FILE            write the Markdown report (also printed on stdout)\n"
        "  --svg PREFIX         write PREFIX-throughput.svg (output tok/s vs users) and,\n"
        "                       when priced, PREFIX-cost.svg ($/M output tokens vs p99\n"
        "                       TPOT, with lines at the hosted prices $0.5, $5, $7 /Mtok)\n"
        "  --compare A B        instead of a sweep: two --json reports side by side, with\n"
        "                       B/A ratios, for each level both have\n"
        "  --url URL            instead of the engine in-process, an OpenAI-compatible\n"
        "                       server (slm serve, llama-server, vLLM) at URL, e.g.\n"
        "                       http://127.0.0.1:8080: each request is a streamed POST\n"
        "                       URL/v1/completions whose prompt is a list of token ids\n"
        "                       (uniform in [%d, %d), so the input length is exact\n"
        "                       whatever the server's tokenizer) with max_tokens, ignore_eos\n"
        "                       and stream_options.include_usage; -m is not used. TTFT is\n"
        "                       the POST to the first event with text; output tokens are\n"
        "                       the stream's usage.completion_tokens, else one per event\n"
        "                       with text; TPOT is (last - first text event) / (tokens -\n"
        "                       1); end-to-end runs to data: [DONE]. The server's KV\n"
        "                       blocks and memory are not seen: reported as null / \"-\".\n"
        "                       Prices need --hardware (the server's device is not\n"
        "                       detected) and use the profile's power. The report's\n"
        "                       machine is where slm cost ran\n"
        "  --api-key KEY        --url: send 'Authorization: Bearer KEY' (default: the\n"
        "                       SLM_API_KEY environment variable, if set)\n\n"
        "Per level: output tok/s (all users), per-user tok/s (1000 / median TPOT), input\n"
        "tok/s, requests/s; TTFT (submit to first token), TPOT ((end - first token) /\n"
        "(tokens - 1)) and end-to-end latency at p50/p90/p99; peak KV blocks in use;\n"
        "the process's peak resident memory; device memory when the backend measures it.\n"
        "Cost: a rented profile costs its hourly price / utilization; a bought one its\n"
        "price over the amortization years' busy hours plus electricity at load power\n"
        "(measured through RAPL on the CPU backend when /sys/class/powercap is readable,\n"
        "else the profile's) and idle power for the idle share. $/M out and $/M in charge\n"
        "the whole cost to that kind of token alone; blended divides it by both.\n\n%s",
        SLM_COST_CHAT_IN_MEDIAN, SLM_COST_CHAT_IN_SIGMA, SLM_COST_CHAT_IN_MIN,
        SLM_COST_CHAT_IN_MAX, SLM_COST_CHAT_OUT_MEDIAN, SLM_COST_CHAT_OUT_SIGMA,
        SLM_COST_CHAT_OUT_MIN, SLM_COST_CHAT_OUT_MAX, SLM_COST_URL_TOKEN_LO,
        SLM_COST_URL_TOKEN_HI, slm_cli_common_help);
}

/* A number option in (lo, hi]. */
static bool number(const char *opt, const char *text, double lo, double hi, double *out)
{
    float checked;
    if (!slm_cli_float("cost", opt, text, &checked))
        return false;
    *out = strtod(text, NULL); /* in full: a float would print 0.15 as 0.150000006 */
    if (*out <= lo || *out > hi) {
        slm_cli_fail("cost", "%s expects a number in (%g, %g], got '%s'", opt, lo, hi, text);
        return false;
    }
    return true;
}

/* One option that takes a value; false after a message. */
static bool value_opt(cost_opts *o, const char *a, const char *v, bool *known)
{
    *known = true;
    if (!strcmp(a, "--levels")) /* 4096: the engine's max_running */
        return slm_cli_int_list("cost", a, v, 1, 4096, o->levels, MAX_LEVELS, &o->n_levels);
    if (!strcmp(a, "--in"))
        return slm_cli_int("cost", a, v, 1, 1 << 20, &o->n_in);
    if (!strcmp(a, "--out")) /* 2: time per output token needs a second one */
        return slm_cli_int("cost", a, v, 2, 1 << 20, &o->n_out);
    if (!strcmp(a, "--requests"))
        return slm_cli_int("cost", a, v, 1, 1 << 20, &o->requests);
    if (!strcmp(a, "--kv-bytes-max"))
        return slm_cli_int("cost", a, v, 1, 0x7fffffffffffffffL, &o->kv_bytes_max);
    if (!strcmp(a, "--seed"))
        return slm_cli_int("cost", a, v, 0, 0x7fffffffL, &o->seed);
    if (!strcmp(a, "--mix")) {
        o->chat = !strcmp(v, "chat");
        return o->chat || !slm_cli_fail("cost", "--mix: the only mix is 'chat', got '%s'", v);
    }
    if (!strcmp(a, "--electricity"))
        return number(a, v, -1e-30, 100, &o->usd_per_kwh);
    if (!strcmp(a, "--utilization"))
        return number(a, v, 0, 1, &o->utilization);
    if (!strcmp(a, "--ttft-target"))
        return number(a, v, 0, 1e9, &o->ttft_ms);
    if (!strcmp(a, "--tpot-target"))
        return number(a, v, 0, 1e9, &o->tpot_ms);
    const char **dst = !strcmp(a, "--hardware")       ? &o->hardware
                       : !strcmp(a, "--hardware-dir") ? &o->hardware_dir
                       : !strcmp(a, "--json")         ? &o->json
                       : !strcmp(a, "--md")           ? &o->md
                       : !strcmp(a, "--svg")          ? &o->svg
                       : !strcmp(a, "--url")          ? &o->url
                       : !strcmp(a, "--api-key")      ? &o->api_key
                                                      : NULL;
    *known = dst != NULL;
    if (dst)
        *dst = v;
    return true;
}

/* Returns 0 to go on, -1 after --help, >0 on error. */
static int parse(int argc, char **argv, cost_opts *o)
{
    memset(o, 0, sizeof *o);
    slm_cli_common_init(&o->c);
    static const int defaults[] = {1, 2, 4, 8, 16, 32, 64};
    o->n_levels = 7;
    memcpy(o->levels, defaults, sizeof defaults);
    o->n_in = 512, o->n_out = 128, o->seed = 1;
    o->hardware_dir = "bench/hardware";
    o->usd_per_kwh = 0.15, o->utilization = 1, o->ttft_ms = 1000, o->tpot_ms = 100;
    o->api_key = getenv("SLM_API_KEY");
    bool fixed_given = false;
    for (int i = 1; i < argc; i++) {
        int c = slm_cli_common_opt("cost", &o->c, argc, argv, &i);
        if (c < 0)
            return 1;
        if (c)
            continue;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return -1;
        }
        if (!strcmp(a, "--compare")) {
            if (i + 2 >= argc)
                return slm_cli_fail("cost", "--compare takes two report files");
            o->compare[0] = argv[++i], o->compare[1] = argv[++i];
            continue;
        }
        if (i + 1 >= argc)
            return slm_cli_fail("cost", "unknown or incomplete option '%s' (see slm cost --help)",
                                a);
        bool known;
        if (!value_opt(o, a, argv[i + 1], &known))
            return 1;
        if (!known)
            return slm_cli_fail("cost", "unknown option '%s' (see slm cost --help)", a);
        fixed_given |= !strcmp(a, "--in") || !strcmp(a, "--out");
        i++;
    }
    if (o->chat && fixed_given)
        return slm_cli_fail("cost", "--mix chat draws the lengths: drop --in and --out");
    if (o->url && o->kv_bytes_max)
        return slm_cli_fail("cost", "--kv-bytes-max caps slm's own engine; with --url the "
                            "server sizes its KV pool");
    if (o->url && strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8))
        return slm_cli_fail("cost", "--url expects http://HOST:PORT, got '%s'", o->url);
    return 0;
}

static int requests_at(const cost_opts *o, int level)
{
    if (o->requests)
        return (int)o->requests;
    return level * 4 < 8 ? 8 : level * 4;
}

/* The workload: as many requests as the largest level needs; each level
 * runs the first ones, so every level sees the same requests. */
static slm_cost_request *workload(const cost_opts *o, int *n)
{
    *n = 0;
    for (int i = 0; i < o->n_levels; i++)
        if (requests_at(o, o->levels[i]) > *n)
            *n = requests_at(o, o->levels[i]);
    slm_cost_request *r = malloc((size_t)*n * sizeof *r);
    if (!r)
        return NULL;
    if (o->chat)
        slm_cost_workload_chat((uint64_t)o->seed, *n, r);
    for (int i = 0; !o->chat && i < *n; i++)
        r[i] = (slm_cost_request){(int)o->n_in, (int)o->n_out};
    return r;
}

/* Prices one level with the profile (if any) and checks the targets. */
static void price(const cost_opts *o, const slm_cost_run *run, bool cpu_backend,
                  slm_cost_level *l)
{
    l->meets_targets = l->ttft_ms.p99 <= o->ttft_ms && l->tpot_ms.p99 <= o->tpot_ms;
    const slm_cost_profile *p = run->hw;
    if (!p)
        return;
    /* RAPL measures the CPU package: it stands for the device's power only
     * when the CPU is the device. */
    bool measured = cpu_backend && l->power_w >= 0;
    l->priced = true;
    l->power_source = p->cloud_usd_per_hour > 0 ? "cloud price" : measured ? "rapl" : "profile";
    l->usd_per_hour = slm_cost_usd_per_hour(p, o->utilization, o->usd_per_kwh,
                                            measured ? l->power_w : -1);
    l->usd_mtok_out = slm_cost_usd_per_mtok(l->usd_per_hour, l->out_tps);
    l->usd_mtok_in = slm_cost_usd_per_mtok(l->usd_per_hour, l->in_tps);
    l->usd_mtok_blended = slm_cost_usd_per_mtok(l->usd_per_hour, l->in_tps + l->out_tps);
}

/* The level with the highest output throughput among those meeting the
 * targets; -1 when none does. */
static int goodput(const slm_cost_level *lv, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (lv[i].meets_targets && (best < 0 || lv[i].out_tps > lv[best].out_tps))
            best = i;
    return best;
}

/* The hardware profile: an error with --hardware or a broken profile is
 * fatal; no match for the device only leaves the run unpriced. */
static int pick_profile(const cost_opts *o, slm_cost_run *run, slm_cost_profile *p, char *note,
                        size_t cap)
{
    if (o->url && !o->hardware) {
        /* Said in the report's header; stderr keeps to progress and errors. */
        snprintf(note, cap, "--url: the server's device is not detected; --hardware NAME "
                 "prices it");
        run->hw_note = note;
        return 0;
    }
    int rc = slm_cost_profile_find(o->hardware_dir, o->hardware, run->backend, run->cores, p,
                                   note, cap);
    if (rc < 0)
        return slm_cli_fail("cost", "%s", note);
    if (rc == 0) {
        run->hw = p;
        note[0] = '\0';
    } else {
        fprintf(stderr, "slm cost: %s; the report will have no prices\n", note);
    }
    run->hw_note = note;
    return 0;
}

/* One line per level on stderr, for logs (a terminal also saw the live line). */
static void level_line(const slm_cost_level *l)
{
    fprintf(stderr, "slm cost: level %d: %d requests in %.1f s, %.1f output tok/s, p99 TTFT "
            "%.0f ms, p99 TPOT %.1f ms\n", l->level, l->n_requests, l->wall_s, l->out_tps,
            l->ttft_ms.p99, l->tpot_ms.p99);
}

/* Runs the levels in order into lv; stops at the first the engine cannot
 * take (stopped says why). Returns the count done, -1 on an error. */
static int sweep(const cost_opts *o, slm_model *m, const slm_cost_request *reqs,
                 slm_cost_level *lv, char *stopped, size_t cap, char *served, size_t served_cap)
{
    int n = 0;
    for (int k = 0; k < o->n_levels; k++) {
        int n_reqs = requests_at(o, o->levels[k]);
        /* A server's failure stops the sweep as an error (rc 1): unlike the
         * engine's own out-of-memory, its cause is not known to be the level. */
        int rc = o->url ? slm_cost_run_level_url("cost", o->url, o->api_key, reqs, n_reqs,
                                                 o->levels[k], (uint64_t)o->seed, &lv[n], served,
                                                 served_cap)
                        : slm_cost_run_level("cost", m, reqs, n_reqs, o->levels[k],
                                             (uint64_t)o->seed, (uint64_t)o->kv_bytes_max, &lv[n],
                                             stopped, cap);
        if (rc == 2) {
            fprintf(stderr, "slm cost: stopping the sweep: %s\n", stopped);
            break;
        }
        if (rc)
            return -1;
        level_line(&lv[n++]);
    }
    return n;
}

/* The facts every run reports: the workload, targets, prices and the
 * machine `slm cost` ran on. */
static void describe_common(const cost_opts *o, const char *model, const char *backend,
                            slm_cost_run *run)
{
    *run = (slm_cost_run){.model = model, .backend = backend, .commit = SLM_GIT_COMMIT,
                          .workload = o->chat ? "chat" : "fixed", .fixed_in = (int)o->n_in,
                          .fixed_out = (int)o->n_out, .requests_per_level = (int)o->requests,
                          .seed = (uint64_t)o->seed, .ttft_target_ms = o->ttft_ms,
                          .tpot_target_ms = o->tpot_ms, .usd_per_kwh = o->usd_per_kwh,
                          .utilization = o->utilization, .stopped = "", .goodput = -1};
    snprintf(run->host, sizeof run->host, "unknown");
    gethostname(run->host, sizeof run->host);
    slm_cli_cpu_name(run->cpu, sizeof run->cpu);
    run->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static int describe_run(const cost_opts *o, slm_model *m, slm_cost_run *run, char sha[65])
{
    slm_model_info info = {.size = sizeof info};
    if (slm_model_get_info(m, &info))
        return slm_cli_fail("cost", "%s", slm_last_error());
    if (slm_cli_sha256_file(o->c.model, sha))
        return slm_cli_fail("cost", "cannot read %s to hash it", o->c.model);
    sha[16] = '\0'; /* a prefix names the file well enough */
    describe_common(o, o->c.model, info.backend, run);
    run->model_sha256 = sha;
    run->model_bytes = info.file_bytes;
    return 0;
}

/* --url: the facts of a run against a server (no model file here). */
static void describe_url_run(const cost_opts *o, slm_cost_run *run)
{
    describe_common(o, o->url, o->url, run);
}

static int report(const cost_opts *o, slm_cost_run *run, slm_cost_level *lv, int n)
{
    /* RAPL is this machine's: a server's power is the profile's. */
    bool cpu = !o->url && !strncmp(run->backend, "cpu", 3);
    for (int i = 0; i < n; i++)
        price(o, run, cpu, &lv[i]);
    run->goodput = goodput(lv, n);
    if (slm_cost_write_md("cost", "-", run, lv, n))
        return 1;
    if (o->md && slm_cost_write_md("cost", o->md, run, lv, n))
        return 1;
    if (o->json && slm_cost_write_json("cost", o->json, run, lv, n))
        return 1;
    if (o->svg && slm_cost_write_svg("cost", o->svg, run, lv, n))
        return 1;
    return 0;
}

int slm_cmd_cost(int argc, char **argv)
{
    cost_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (o.compare[0])
        return slm_cost_compare("cost", o.compare[0], o.compare[1]);
    slm_model *m = NULL;
    if (!o.url && slm_cli_load("cost", &o.c, &m, NULL))
        return 1;
    int n_reqs = 0, n = 0;
    slm_cost_request *reqs = workload(&o, &n_reqs);
    slm_cost_level *lv = calloc(MAX_LEVELS, sizeof *lv);
    slm_cost_run run;
    slm_cost_profile hw;
    char sha[65], note[1024], stopped[1024] = "", served[128] = "";
    if (o.url && reqs && lv)
        describe_url_run(&o, &run);
    rc = !reqs || !lv ? slm_cli_fail("cost", "out of memory")
         : o.url      ? 0
                      : describe_run(&o, m, &run, sha);
    if (!rc)
        rc = pick_profile(&o, &run, &hw, note, sizeof note);
    if (!rc && (n = sweep(&o, m, reqs, lv, stopped, sizeof stopped, served, sizeof served)) < 0)
        rc = 1;
    if (served[0]) /* the model the server named in its stream */
        run.model = served;
    run.stopped = stopped;
    if (!rc && n == 0)
        rc = slm_cli_fail("cost", "no level ran: %s", stopped);
    if (!rc)
        rc = report(&o, &run, lv, n);
    free(reqs);
    free(lv);
    if (m)
        slm_model_close(m);
    return rc;
}
