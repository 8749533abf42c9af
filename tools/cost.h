/*
 * cost.h — `slm cost`'s pieces: the hardware profiles and the cost
 * arithmetic (cost_model.c, libc only, so the unit test compiles it alone),
 * the closed-loop sweep of one concurrency level through the public engine
 * (cost_sweep.c) or, with --url, through an OpenAI-compatible server's
 * streaming API (cost_http.c), and the reports (cost_report.c). cmd_cost.c
 * ties them up.
 *
 * NOTE: like cli.h this header reaches slm.h alone: `slm cost` is a
 * front-end of the public API (tests/cli/public_only.sh checks it).
 */
#ifndef SLM_COST_H
#define SLM_COST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

/* ---- hardware profiles (cost_model.c) ----------------------------------- */

#define SLM_COST_MAX_MATCH 8

/* One bench/hardware/NAME.conf file: `key = value` lines, '#' comments.
 * Either a purchase (purchase_usd, amortization_years, power_load_w,
 * power_idle_w) or a rental (cloud_usd_per_hour; power optional, being in
 * the price); always name, one or more match lines, price_source and
 * price_date. A match string fits a device name that contains it (any
 * case) not followed by a letter or digit, so "A10" does not fit "A100"
 * nor "L4" "L40S"; exclude lines (optional) rule a device out ("RTX 3060
 * Ti" for the 3060's profile). cores (optional) restricts auto-detection to
 * machines with that many online CPUs (a 2-core VM and a 64-core server
 * share a model name). */
typedef struct slm_cost_profile {
    char path[512];
    char name[96];
    char match[SLM_COST_MAX_MATCH][96]; /* substrings of the device name, any case */
    int n_match;
    char exclude[SLM_COST_MAX_MATCH][96];
    int n_exclude;
    int cores;                          /* 0: any */
    double purchase_usd, amortization_years; /* 0 when rented */
    double cloud_usd_per_hour;               /* 0 when bought */
    double power_load_w, power_idle_w;       /* 0 when not given (rented) */
    char price_source[512], price_date[64];
} slm_cost_profile;

/* Reads one profile. Returns 0, or -1 with "FILE:LINE: field 'KEY': why"
 * (or "FILE: missing field 'KEY'") in err[cap]. */
int slm_cost_profile_load(const char *path, slm_cost_profile *p, char *err, size_t cap);

/* The profile to price a run with: `want` given, the profile in dir whose
 * file stem or name equals it (any case), or the file `want` when it holds
 * a '/'; else the profile in dir with the longest match string found in
 * `device` (and whose cores, if set, equal `cores`). Returns 0 (found), 1
 * (nothing matches the device: err says so), -1 (an error: a malformed
 * profile, an unknown --hardware name; err says which). */
int slm_cost_profile_find(const char *dir, const char *want, const char *device, int cores,
                          slm_cost_profile *p, char *err, size_t cap);

/* ---- cost arithmetic (cost_model.c) ------------------------------------- */

/* What one busy hour costs, in dollars. utilization is the fraction of
 * wall-clock time the machine does this work (0 < u <= 1); idle hours are
 * paid for by the busy ones. Rented: cloud_usd_per_hour / u (the rent runs
 * whether busy or not; electricity is in it). Bought: purchase over the
 * amortization period's busy hours, plus electricity for load_w while busy
 * and power_idle_w for the (1 − u) / u idle hours behind each busy one.
 * load_w < 0 takes power_load_w from the profile; else it is a measured
 * figure. */
double slm_cost_usd_per_hour(const slm_cost_profile *p, double utilization, double usd_per_kwh,
                             double load_w);

/* Dollars per million tokens at tokens_per_s while costing usd_per_hour;
 * 0 tokens/s gives INFINITY. */
double slm_cost_usd_per_mtok(double usd_per_hour, double tokens_per_s);

/* The q-quantile (0..1) of v[n], linearly interpolated between the sorted
 * values (numpy's default); sorts v in place. n == 0 gives NAN. */
double slm_cost_percentile(double *v, int n, double q);

/* ---- workloads (cost_model.c) -------------------------------------------- */

/* One request of the workload: prompt and output lengths in tokens. */
typedef struct slm_cost_request {
    int n_in, n_out;
} slm_cost_request;

/* The built-in chat-like mix: prompt and output lengths each drawn from a
 * lognormal (median m, log-space standard deviation sigma), rounded and
 * clipped to [min, max]. Where the shape comes from: chat prompt and answer
 * lengths are positive and right-skewed with a long tail, which a lognormal
 * has; the parameters below are this project's choice for a small model's
 * chat traffic (prompts longer than answers, a tail of long prompts as
 * with pasted documents), NOT a fit to any published trace. The clips keep
 * every request inside a 4k context and a sweep's time bounded. */
#define SLM_COST_CHAT_IN_MEDIAN 256.0
#define SLM_COST_CHAT_IN_SIGMA 1.0
#define SLM_COST_CHAT_IN_MIN 16
#define SLM_COST_CHAT_IN_MAX 2048
#define SLM_COST_CHAT_OUT_MEDIAN 128.0
#define SLM_COST_CHAT_OUT_SIGMA 0.75
#define SLM_COST_CHAT_OUT_MIN 8
#define SLM_COST_CHAT_OUT_MAX 1024

/* Fills out[n] with the chat mix drawn from seed: the same seed gives the
 * same requests on every machine. */
void slm_cost_workload_chat(uint64_t seed, int n, slm_cost_request *out);

/* ---- one concurrency level (cost_sweep.c) -------------------------------- */

typedef struct slm_cost_pcts {
    double p50, p90, p99;
} slm_cost_pcts;

/* What one level measured; the cost fields are filled by cmd_cost.c. */
typedef struct slm_cost_level {
    int level, n_requests;
    double wall_s; /* first submission → last request done */
    uint64_t in_tokens, out_tokens, cached_tokens, preemptions;
    double out_tps, in_tps, user_out_tps, rps;
    slm_cost_pcts ttft_ms, tpot_ms, e2e_ms;
    int kv_blocks_peak, kv_blocks_total;
    uint64_t kv_pool_bytes;
    uint64_t host_peak_bytes;   /* VmHWM: the process's peak so far */
    uint64_t device_used_bytes; /* 0: the backend does not tell */
    double power_w;             /* RAPL, < 0 when not measured */
    /* Measured through a server's HTTP API (--url): the KV blocks, cached
     * tokens, preemptions and memory are the server's own, which this
     * process cannot see; the reports give them as absent (null, "-"). */
    bool remote;
    /* cost (cmd_cost.c) */
    bool priced;
    const char *power_source;   /* "rapl", "profile", "cloud price" */
    double usd_per_hour, usd_mtok_out, usd_mtok_in, usd_mtok_blended;
    bool meets_targets;
} slm_cost_level;

/* Runs reqs[0..n) through a fresh engine on m (its KV pool capped at
 * kv_bytes_max bytes, 0: sized from memory), keeping `level` of them in
 * flight (closed loop: each one done lets the next in), prompts of random
 * tokens drawn from seed and the request's index, greedy, end-of-sequence
 * ignored. Fills out. Returns 0; 2 when the engine cannot take the level
 * (it could not open, its KV pool cannot hold `level` of the longest
 * request, or a request ran out of memory): why[cap] says so, for the
 * sweep to stop on; 1 after an error line on any other failure. A progress
 * line is redrawn on a terminal's stderr. */
int slm_cost_run_level(const char *cmd, slm_model *m, const slm_cost_request *reqs, int n,
                       int level, uint64_t seed, uint64_t kv_bytes_max, slm_cost_level *out,
                       char *why, size_t cap);

/* Request i of a level's n_in prompt tokens, uniform in [lo, hi), from
 * (seed, level, i) alone: every run sees the same prompts, and no level
 * repeats another's — a server kept across levels (--url) would otherwise
 * answer the repeats from its prompt cache (llama-server did: 1 of 128
 * prompt tokens evaluated). */
void slm_cost_prompt(uint64_t seed, int level, int i, int n_in, int32_t lo, int32_t hi,
                     int32_t *out);

/* The level's rates and percentiles from its wall time and per-request
 * latencies (ttft and e2e of n requests, tpot of the n_tpot with two or
 * more tokens); out's token counts must be set. Sorts the arrays. */
void slm_cost_level_rates(slm_cost_level *out, double wall_s, double *ttft, double *e2e, int n,
                          double *tpot, int n_tpot);

/* ---- one concurrency level against a server (cost_http.c) --------------- */

/* Token ids of --url prompts: [LO, HI) is inside the vocabulary of every
 * model family one would serve (Llama 2 has 32000 entries, the rest more)
 * and clear of the low ids where some vocabularies keep control tokens. */
#define SLM_COST_URL_TOKEN_LO 1000
#define SLM_COST_URL_TOKEN_HI 32000

/* Runs reqs[0..n) against the OpenAI-compatible server at url (e.g.
 * "http://127.0.0.1:8080"): POST url/v1/completions, streamed, with `level`
 * requests in flight (closed loop, one thread, curl's multi interface).
 * api_key (NULL: none) goes in an Authorization: Bearer header. Fills out
 * (remote set) and model[cap] with the model name the server's events gave
 * ("" when none). Returns 0, or 1 after an error line naming the URL and
 * what went wrong (connection, HTTP status, a malformed stream). */
int slm_cost_run_level_url(const char *cmd, const char *url, const char *api_key,
                           const slm_cost_request *reqs, int n, int level, uint64_t seed,
                           slm_cost_level *out, char *model, size_t cap);

/* ---- reports (cost_report.c) -------------------------------------------- */

/* Everything a report needs besides the levels. */
typedef struct slm_cost_run {
    const char *model, *model_sha256, *backend, *commit;
    uint64_t model_bytes;
    char host[256], cpu[256];
    int cores;
    const char *workload;        /* "fixed" or "chat" */
    int fixed_in, fixed_out;     /* fixed workload */
    int requests_per_level;
    uint64_t seed;
    double ttft_target_ms, tpot_target_ms;
    const slm_cost_profile *hw;  /* NULL: not priced */
    const char *hw_note;         /* why not priced ("" when priced) */
    double usd_per_kwh, utilization;
    const char *stopped;         /* why the sweep stopped early, "" when it did not */
    int goodput;                 /* index into levels, -1: none meets the targets */
} slm_cost_run;

/* Writes the JSON report (one object: the run's facts and "levels", one
 * object per level) or the Markdown one to path. Returns 0, or 1 after an
 * error line. */
int slm_cost_write_json(const char *cmd, const char *path, const slm_cost_run *r,
                        const slm_cost_level *lv, int n);
int slm_cost_write_md(const char *cmd, const char *path, const slm_cost_run *r,
                      const slm_cost_level *lv, int n);

/* Writes PREFIX-throughput.svg (output tok/s, all users and per user, vs
 * the level) and, when the levels are priced, PREFIX-cost.svg ($/M output
 * tokens vs p99 TPOT, reference lines at $0.5, $5 and $7 per Mtok)
 * (cost_chart.c). Returns 0, or 1 after an error line. */
int slm_cost_write_svg(const char *cmd, const char *prefix, const slm_cost_run *r,
                       const slm_cost_level *lv, int n);

/* `slm cost --compare A.json B.json`: the levels both reports have, side
 * by side with B/A ratios, on stdout (cost_compare.c). Returns 0, or 1
 * after an error line (a file that is not a cost report). */
int slm_cost_compare(const char *cmd, const char *a, const char *b);

/* ---- sha256 (sha256.c) --------------------------------------------------- */

/* The SHA-256 of a file's bytes as 64 hex digits in hex[65]. Returns 0, or
 * -1 when the file cannot be read. */
int slm_cli_sha256_file(const char *path, char hex[65]);

#endif
