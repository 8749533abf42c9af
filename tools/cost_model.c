/*
 * cost_model.c — the money side of `slm cost`: hardware profiles
 * (bench/hardware/NAME.conf, one per device) read and checked field by field,
 * the profile that fits the detected device, what a busy hour costs and so
 * what a million tokens cost, and the percentiles the latency columns use.
 * libc only, so tests/test_cost.c compiles it alone and checks the
 * arithmetic on hand-worked cases. The sweep that produces the token rates
 * is cost_sweep.c's.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cost.h"

/* ---- profiles ------------------------------------------------------------- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A non-negative finite number, or -1 with a message. */
static int number(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int copy_text(char *dst, size_t cap, const char *v)
{
    if (!*v || strlen(v) >= cap)
        return -1;
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* Stores one `key = value`; -1 when the value is not valid for the key, -2
 * when the key is unknown. */
static int set_field(slm_cost_profile *p, const char *k, const char *v)
{
    struct { const char *key; double *dst; } nums[] = {
        {"purchase_usd", &p->purchase_usd}, {"amortization_years", &p->amortization_years},
        {"cloud_usd_per_hour", &p->cloud_usd_per_hour}, {"power_load_w", &p->power_load_w},
        {"power_idle_w", &p->power_idle_w},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (!strcmp(k, nums[i].key))
            return number(v, nums[i].dst);
    if (!strcmp(k, "name"))
        return copy_text(p->name, sizeof p->name, v);
    if (!strcmp(k, "price_source"))
        return copy_text(p->price_source, sizeof p->price_source, v);
    if (!strcmp(k, "price_date"))
        return copy_text(p->price_date, sizeof p->price_date, v);
    if (!strcmp(k, "match")) {
        if (p->n_match == SLM_COST_MAX_MATCH)
            return -1;
        return copy_text(p->match[p->n_match++], sizeof p->match[0], v);
    }
    if (!strcmp(k, "exclude")) {
        if (p->n_exclude == SLM_COST_MAX_MATCH)
            return -1;
        return copy_text(p->exclude[p->n_exclude++], sizeof p->exclude[0], v);
    }
    if (!strcmp(k, "cores")) {
        double c;
        if (number(v, &c) || c < 1 || c > 65536 || c != floor(c))
            return -1;
        p->cores = (int)c;
        return 0;
    }
    return -2;
}

/* The fields every profile needs and the pairs that go together; "" when
 * complete, else the first missing field's name. */
static const char *missing(const slm_cost_profile *p)
{
    if (!p->name[0])
        return "name";
    if (!p->n_match)
        return "match";
    if (!p->price_source[0])
        return "price_source";
    if (!p->price_date[0])
        return "price_date";
    if (p->cloud_usd_per_hour > 0)
        return "";
    if (!(p->purchase_usd > 0))
        return "purchase_usd (or cloud_usd_per_hour)";
    if (!(p->amortization_years > 0))
        return "amortization_years";
    if (!(p->power_load_w > 0))
        return "power_load_w";
    if (!(p->power_idle_w > 0))
        return "power_idle_w";
    return "";
}

int slm_cost_profile_load(const char *path, slm_cost_profile *p, char *err, size_t cap)
{
    memset(p, 0, sizeof *p);
    snprintf(p->path, sizeof p->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, cap, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int rc = 0;
    for (int no = 1; !rc && fgets(line, sizeof line, f); no++) {
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, cap, "%s:%d: expected 'key = value', got '%.80s'", path, no, s);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        int r = set_field(p, k, v);
        if (r == -2)
            snprintf(err, cap, "%s:%d: unknown field '%s'", path, no, k);
        else if (r)
            snprintf(err, cap, "%s:%d: field '%s': bad value '%.80s'", path, no, k, v);
        rc = r ? -1 : 0;
    }
    fclose(f);
    if (rc)
        return -1;
    if (p->cloud_usd_per_hour > 0 && p->purchase_usd > 0) {
        snprintf(err, cap, "%s: field 'cloud_usd_per_hour': give it or purchase_usd, not both",
                 path);
        return -1;
    }
    const char *miss = missing(p);
    if (*miss) {
        snprintf(err, cap, "%s: missing field '%s'", path, miss);
        return -1;
    }
    return 0;
}

/* Whether needle occurs in hay, any case, not followed by a letter or
 * digit ("A10" is not in "NVIDIA A100"). */
static bool contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n) && !isalnum((unsigned char)hay[n]))
            return true;
    return false;
}

/* The file stem of a path ("rtx4090" for ".../rtx4090.conf"). */
static bool stem_is(const char *file, const char *want)
{
    size_t n = strlen(file);
    if (n < 5 || strcmp(file + n - 5, ".conf"))
        return false;
    return strlen(want) == n - 5 && !strncasecmp(file, want, n - 5);
}

/* How well p fits the device: the length of its longest match string found
 * in it, 0 when none is. */
static size_t fit(const slm_cost_profile *p, const char *device, int cores)
{
    if (p->cores && p->cores != cores)
        return 0;
    for (int i = 0; i < p->n_exclude; i++)
        if (contains(device, p->exclude[i]))
            return 0;
    size_t best = 0;
    for (int i = 0; i < p->n_match; i++)
        if (contains(device, p->match[i]) && strlen(p->match[i]) > best)
            best = strlen(p->match[i]);
    return best;
}

int slm_cost_profile_find(const char *dir, const char *want, const char *device, int cores,
                          slm_cost_profile *p, char *err, size_t cap)
{
    if (want && strchr(want, '/'))
        return slm_cost_profile_load(want, p, err, cap);
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, cap, "%s: cannot open the hardware profiles folder: %s", dir,
                 strerror(errno));
        return -1;
    }
    size_t best = 0;
    int rc = 1;
    slm_cost_profile cand;
    char path[1024];
    for (struct dirent *de; (de = readdir(d));) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 5, ".conf"))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        /* Every profile is read, so a broken one is found whatever is asked. */
        if (slm_cost_profile_load(path, &cand, err, cap)) {
            rc = -1;
            break;
        }
        size_t f = want ? (stem_is(de->d_name, want) || !strcasecmp(cand.name, want))
                        : fit(&cand, device, cores);
        if (f > best) {
            best = f;
            *p = cand;
            rc = 0;
        }
    }
    closedir(d);
    if (rc == 1 && want) {
        snprintf(err, cap, "--hardware %s: no profile in %s has that file name or name", want,
                 dir);
        return -1;
    }
    if (rc == 1)
        snprintf(err, cap, "no profile in %s matches the device '%s' (%d cores); choose one "
                 "with --hardware", dir, device, cores);
    return rc;
}

/* ---- arithmetic ---------------------------------------------------------- */

double slm_cost_usd_per_hour(const slm_cost_profile *p, double utilization, double usd_per_kwh,
                             double load_w)
{
    double u = utilization;
    if (p->cloud_usd_per_hour > 0)
        return p->cloud_usd_per_hour / u;
    double capital = p->purchase_usd / (p->amortization_years * 365.0 * 24.0 * u);
    double watts = (load_w < 0 ? p->power_load_w : load_w) + p->power_idle_w * (1 - u) / u;
    return capital + usd_per_kwh * watts / 1000.0;
}

double slm_cost_usd_per_mtok(double usd_per_hour, double tokens_per_s)
{
    if (!(tokens_per_s > 0))
        return INFINITY;
    return usd_per_hour / (tokens_per_s * 3600.0) * 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double slm_cost_percentile(double *v, int n, double q)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    if (lo >= n - 1)
        return v[n - 1];
    return v[lo] + (pos - lo) * (v[lo + 1] - v[lo]);
}

/* ---- the chat-like workload ---------------------------------------------- */

/* splitmix64 step: a small seeded generator, the same on every platform
 * (rand() is not), so a seed names one workload everywhere. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A uniform number in (0, 1). */
static double uniform(uint64_t *s)
{
    return ((double)(next_u64(s) >> 11) + 0.5) / 9007199254740992.0;
}

/* A lognormal draw (Box–Muller for the normal), rounded and clipped. */
static int lognormal(uint64_t *s, double median, double sigma, int lo, int hi)
{
    double z = sqrt(-2 * log(uniform(s))) * cos(2 * 3.14159265358979323846 * uniform(s));
    double v = round(median * exp(sigma * z));
    return v < lo ? lo : v > hi ? hi : (int)v;
}

void slm_cost_workload_chat(uint64_t seed, int n, slm_cost_request *out)
{
    uint64_t s = seed ^ 0x636861746d6978ULL; /* "chatmix": apart from the prompt tokens' stream */
    for (int i = 0; i < n; i++) {
        out[i].n_in = lognormal(&s, SLM_COST_CHAT_IN_MEDIAN, SLM_COST_CHAT_IN_SIGMA,
                                SLM_COST_CHAT_IN_MIN, SLM_COST_CHAT_IN_MAX);
        out[i].n_out = lognormal(&s, SLM_COST_CHAT_OUT_MEDIAN, SLM_COST_CHAT_OUT_SIGMA,
                                 SLM_COST_CHAT_OUT_MIN, SLM_COST_CHAT_OUT_MAX);
    }
}
