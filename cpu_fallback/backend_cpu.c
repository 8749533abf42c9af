/*
 * backend_cpu.c — the CPU backend's entry point: the one slm_backend_ops
 * table (slm_backend_cpu), opening and closing, host buffers, zero-copy
 * weights, and the step bracket (begin_step / submit / wait) that copies the
 * step's arrays, checks them, and grows the scratch the ops need.
 *
 * The ops themselves live by family in ops.c (elementwise, norm, rope,
 * embed, matmul binding), kv.c (the paged pool and kv_store) and
 * attention.c; cpu_backend.h is the private header they share.
 *
 * Memory: buffers are 64-byte aligned malloc'd host memory; weights are the
 * caller's pointers (usually into the mmapped GGUF file), never copied.
 * Scratch is allocated in begin_step, never in an op.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_backend.h"
#include "cpu_matmul.h"

#define ALIGN 64

/* Elements an op must touch before it is worth waking the workers. */
#define PARALLEL_MIN_WORK 16384

/* ------------------------------------------------------------------------ */
/* helpers shared with the op files                                          */

void slm_cpu_fail(slm_cpu_backend *be, slm_status st, const char *fmt, ...)
{
    char msg[sizeof be->err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    slm_error(st, "cpu backend: %s", msg);
    if (be->err == SLM_OK) {
        be->err = st;
        snprintf(be->err_msg, sizeof be->err_msg, "%s", msg);
    }
}

bool slm_cpu_op_ok(slm_cpu_backend *be, const char *op)
{
    if (!be->in_step) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s called outside begin_step/submit/wait",
                     op);
        return false;
    }
    return be->err == SLM_OK;
}

float *slm_cpu_ref_f32(slm_cpu_backend *be, slm_ref ref, size_t count, const char *op,
                       const char *what)
{
    if (ref.buf == NULL) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %s has no buffer", op, what);
        return NULL;
    }
    if (ref.off % sizeof(float) != 0) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "%s: %s offset %zu is not a multiple of 4 bytes", op, what, ref.off);
        return NULL;
    }
    size_t size = ref.buf->size;
    if (ref.off > size || count > (size - ref.off) / sizeof(float)) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "%s: %s needs %zu floats at byte %zu of a %zu-byte buffer", op, what, count,
                     ref.off, size);
        return NULL;
    }
    return (float *)(ref.buf->data + ref.off);
}

float *slm_cpu_ref_rows(slm_cpu_backend *be, slm_ref ref, int64_t rows, int64_t width,
                        int64_t stride, const char *op, const char *what)
{
    if (rows < 0 || width < 0 || stride < width) {
        slm_cpu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                     "%s: %s has %lld rows of %lld floats with a stride of %lld", op, what,
                     (long long)rows, (long long)width, (long long)stride);
        return NULL;
    }
    /* the last row ends at (rows-1)·stride + width; bounded well below
     * 2^63 by the int arguments the ops take */
    int64_t count = rows == 0 ? 0 : (rows - 1) * stride + width;
    return slm_cpu_ref_f32(be, ref, (size_t)count, op, what);
}

void slm_cpu_run(slm_cpu_backend *be, size_t work, slm_pool_fn fn, void *ctx)
{
    slm_pool_run(work >= PARALLEL_MIN_WORK ? be->pool : NULL, fn, ctx);
}

static void *alloc_aligned(size_t bytes)
{
    size_t n = bytes == 0 ? ALIGN : (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (n < bytes)
        return NULL; /* the rounding overflowed */
    return aligned_alloc(ALIGN, n);
}

/* ------------------------------------------------------------------------ */
/* device                                                                    */

/* The CPU's marketing name from /proc/cpuinfo, else the architecture. */
static void cpu_name(char *dst, size_t n)
{
#if defined(__x86_64__)
    snprintf(dst, n, "x86-64");
#elif defined(__aarch64__)
    snprintf(dst, n, "aarch64");
#else
    snprintf(dst, n, "unknown CPU");
#endif
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        char *v = strchr(line, ':');
        if (v == NULL)
            break;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = strcspn(v, "\r\n");
        if (len > 0)
            snprintf(dst, n, "%.*s", (int)len, v);
        break;
    }
    fclose(f);
}

static void cpu_close(slm_backend *b)
{
    if (b == NULL)
        return;
    slm_cpu_backend *be = slm_cpu_be(b);
    slm_pool_free(be->pool);
    free(be->mm_scratch);
    free(be->attn_scratch);
    free(be->step_mem);
    free(be);
}

/* The SIMD level and activation precision params ask for (NULL / 0: the
 * best level, one 8-bit term as llama.cpp does; cpu_act_terms 2 also
 * quantizes the rounding error: closer to f32, twice the integer work). */
static slm_status knobs(const slm_backend_params *params, slm_simd *simd, int *terms, bool *pack)
{
    *simd = slm_simd_best();
    *terms = 1;
    *pack = true;
    if (params == NULL || params->size < sizeof *params)
        return SLM_OK;
    *pack = params->cpu_pack >= 0;
    if (params->cpu_simd && *params->cpu_simd) {
        slm_status st = slm_simd_parse(params->cpu_simd, simd);
        if (st)
            return st;
    }
    if (params->cpu_act_terms < 0 || params->cpu_act_terms > 2)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "cpu backend: activation terms %d (1: q8, 2: q8x2)",
                         params->cpu_act_terms);
    if (params->cpu_act_terms)
        *terms = params->cpu_act_terms;
    return SLM_OK;
}

/* Opens the CPU backend with params->n_threads threads (0 = one per online
 * core) at the SIMD level and activation precision params name. params may
 * be NULL for the defaults. */
static slm_status cpu_open(const slm_backend_params *params, slm_backend **out)
{
    if (out == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: open: no output pointer");
    *out = NULL;
    int n_threads = 0;
    if (params != NULL) {
        if (params->size < offsetof(slm_backend_params, n_threads) + sizeof(int))
            return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                             "cpu backend: slm_backend_params.size %zu is too small",
                             params->size);
        n_threads = params->n_threads;
    }
    if (n_threads < 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: n_threads %d is negative",
                         n_threads);
    if (n_threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = online > 0 ? (int)(online < 256 ? online : 256) : 1;
    }
    slm_simd simd;
    int act_terms;
    bool pack;
    slm_status st = knobs(params, &simd, &act_terms, &pack);
    if (st != SLM_OK)
        return st;
    slm_cpu_backend *be = calloc(1, sizeof(*be));
    if (be == NULL)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cpu backend: out of memory");
    be->base.ops = slm_backend_cpu();
    be->simd = simd;
    be->act_terms = act_terms;
    be->pack = pack;
    be->n_threads = n_threads;
    be->pool = slm_pool_create(n_threads);
    if (be->pool == NULL) {
        free(be);
        /* slm_pool_create has set the message */
        return SLM_STATUS_OUT_OF_MEMORY;
    }
    char name[160];
    cpu_name(name, sizeof name);
    snprintf(be->desc, sizeof be->desc, "cpu: %s, %d thread%s, simd %s%s%s", name, n_threads,
             n_threads == 1 ? "" : "s", slm_simd_name(simd),
             act_terms == 2 ? ", activations q8x2" : "", pack ? "" : ", no repacking");
    *out = &be->base;
    return SLM_OK;
}

static const char *cpu_describe(slm_backend *b)
{
    return b ? slm_cpu_be(b)->desc : "cpu: (not open)";
}

static slm_status cpu_supports(slm_backend *b, const slm_support_query *q)
{
    (void)b;
    bool ok;
    switch (q->op) {
    case SLM_OP_MATMUL: ok = slm_cpu_matmul_supported(q->type); break;
    case SLM_OP_EMBED: ok = slm_type_supported((int)q->type); break;
    case SLM_OP_RMSNORM:
    case SLM_OP_LAYERNORM:
    case SLM_OP_BIAS: ok = q->type == SLM_TYPE_F32; break;
    case SLM_OP_KV_STORE:
    case SLM_OP_ATTENTION:
    case SLM_OP_KV_COPY:
        ok = q->type == SLM_TYPE_F32 || q->type == SLM_TYPE_F16 || q->type == SLM_TYPE_Q8_0;
        break;
    case SLM_OP_ROPE:
    case SLM_OP_SWIGLU:
    case SLM_OP_GEGLU:
    case SLM_OP_GELU:
    case SLM_OP_SOFTCAP:
    case SLM_OP_ADD:
    case SLM_OP_SCALE:
    case SLM_OP_GET_ROWS:
    case SLM_OP_LOGITS: ok = true; break;
    default: ok = false;
    }
    /* Any head size: attention keeps one row per thread in scratch. */
    if (ok && q->head_dim < 0)
        ok = false;
    if (!ok)
        return slm_error(SLM_STATUS_UNSUPPORTED, "cpu backend: op %d with type %s, head size %d",
                         (int)q->op, slm_type_name((int)q->type), q->head_dim);
    return SLM_OK;
}

/* MemAvailable and MemTotal from /proc/meminfo: what the pool may take. */
static slm_status cpu_memory(slm_backend *b, slm_mem_info *out)
{
    (void)b;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return slm_error(SLM_STATUS_UNSUPPORTED, "cpu backend: /proc/meminfo cannot be read");
    char line[256];
    unsigned long long kb;
    *out = (slm_mem_info){0};
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            out->total_bytes = kb * 1024;
        else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            out->free_bytes = kb * 1024;
    }
    fclose(f);
    out->host = true;
    if (!out->total_bytes)
        return slm_error(SLM_STATUS_UNSUPPORTED, "cpu backend: no MemTotal in /proc/meminfo");
    return SLM_OK;
}

/* ------------------------------------------------------------------------ */
/* memory                                                                    */

static slm_status cpu_buf_alloc(slm_backend *b, size_t bytes, slm_buf **out)
{
    if (b == NULL || out == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: buf_alloc: missing argument");
    *out = NULL;
    slm_buf *buf = malloc(sizeof(*buf));
    void *data = alloc_aligned(bytes);
    if (buf == NULL || data == NULL) {
        free(buf);
        free(data);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cpu backend: cannot allocate a %zu-byte buffer",
                         bytes);
    }
    buf->data = data;
    buf->size = bytes;
    *out = buf;
    return SLM_OK;
}

static void cpu_buf_free(slm_backend *b, slm_buf *buf)
{
    (void)b;
    if (buf == NULL)
        return;
    free(buf->data);
    free(buf);
}

/* Checks that [off, off + bytes) lies inside buf. */
static slm_status check_range(slm_ref r, size_t bytes, const char *what)
{
    if (r.buf == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: %s: no buffer", what);
    if (r.off > r.buf->size || bytes > r.buf->size - r.off)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "cpu backend: %s of %zu bytes at offset %zu runs past the %zu-byte buffer",
                         what, bytes, r.off, r.buf->size);
    return SLM_OK;
}

static slm_status cpu_upload(slm_backend *b, slm_ref dst, const void *src, size_t bytes)
{
    (void)b;
    slm_status st = check_range(dst, bytes, "upload");
    if (st != SLM_OK)
        return st;
    if (bytes > 0 && src == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: upload: no source");
    if (bytes > 0)
        memcpy(dst.buf->data + dst.off, src, bytes);
    return SLM_OK;
}

static slm_status cpu_download(slm_backend *b, void *dst, slm_ref src, size_t bytes)
{
    (void)b;
    slm_status st = check_range(src, bytes, "download");
    if (st != SLM_OK)
        return st;
    if (bytes > 0 && dst == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: download: no destination");
    if (bytes > 0)
        memcpy(dst, src.buf->data + src.off, bytes);
    return SLM_OK;
}

/* Wraps the caller's tensor (`data` must outlive the weight) and, where the
 * SIMD level has packed kernels for its type, keeps a repacked copy for the
 * matmul (embed still reads `data`). Remembers the widest weight of each
 * type for matmul scratch. */
static slm_status cpu_load_weight(slm_backend *b, slm_type type, int64_t rows, int64_t cols,
                                  const void *data, slm_weight **out)
{
    if (b == NULL || out == NULL || data == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: load_weight: missing argument");
    *out = NULL;
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!slm_type_supported((int)type) || !slm_cpu_matmul_supported(type))
        return slm_error(SLM_STATUS_UNSUPPORTED, "cpu backend: weight type %s is not supported",
                         slm_type_name((int)type));
    const slm_type_info *ti = slm_type_get((int)type);
    if (rows < 1 || cols < 1 || cols % ti->block_elems != 0)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "cpu backend: weight of %lld x %lld %s (columns must be a positive "
                         "multiple of %d)",
                         (long long)rows, (long long)cols, ti->name, (int)ti->block_elems);
    size_t row_bytes = slm_type_row_bytes((int)type, cols);
    if (row_bytes == 0 || (uint64_t)rows > SIZE_MAX / row_bytes)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "cpu backend: weight of %lld x %lld %s is too large", (long long)rows,
                         (long long)cols, ti->name);
    slm_weight *w = malloc(sizeof(*w));
    if (w == NULL)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cpu backend: out of memory");
    *w = (slm_weight){.type = type, .rows = rows, .cols = cols, .row_bytes = row_bytes,
                      .data = data};
    if (be->pack && slm_cpu_pack_available(be->simd, type) &&
        (w->packed = slm_cpu_pack(be->simd, type, data, rows, cols)) == NULL) {
        free(w);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY,
                         "cpu backend: out of memory repacking a %lld x %lld %s weight",
                         (long long)rows, (long long)cols, ti->name);
    }
    if (cols > be->max_cols[type])
        be->max_cols[type] = cols;
    *out = w;
    return SLM_OK;
}

static void cpu_weight_free(slm_backend *b, slm_weight *w)
{
    (void)b;
    if (w != NULL)
        slm_cpu_packed_free(w->packed);
    free(w);
}

/* ------------------------------------------------------------------------ */
/* steps                                                                     */

static bool grow_scratch(void **p, size_t *have, size_t need)
{
    if (need <= *have)
        return true;
    void *q = alloc_aligned(need);
    if (q == NULL)
        return false;
    free(*p);
    *p = q;
    *have = need;
    return true;
}

/* Copies src[0..n) into dst, or fills it with -1 when the step omits it. */
static void copy_i32(int32_t *dst, const int32_t *src, int n)
{
    if (src != NULL)
        memcpy(dst, src, (size_t)n * sizeof(int32_t));
    else
        for (int i = 0; i < n; i++)
            dst[i] = -1;
}

/* Copies the step's arrays into step_mem (grown when too small). */
static slm_status copy_step(slm_cpu_backend *be, const slm_step *s, int n_bt)
{
    size_t nt = (size_t)s->n_tokens, ns = (size_t)s->n_seqs, nl = (size_t)s->n_logit_rows;
    size_t need = 4 * nt + 2 * ns + (size_t)n_bt + nl;
    if (need > be->step_mem_cap) {
        int32_t *m = malloc(need * sizeof(int32_t));
        if (m == NULL)
            return slm_error(SLM_STATUS_OUT_OF_MEMORY, "out of memory for the step's arrays");
        free(be->step_mem);
        be->step_mem = m;
        be->step_mem_cap = need;
    }
    int32_t *m = be->step_mem;
    be->token_ids = m, m += nt;
    be->positions = m, m += nt;
    be->seq_of_token = m, m += nt;
    be->kv_slot = m, m += nt;
    be->bt_start = m, m += ns;
    be->bt_len = m, m += ns;
    be->block_tables = m, m += n_bt;
    be->logit_rows = m;
    copy_i32(be->token_ids, s->token_ids, s->n_tokens);
    copy_i32(be->positions, s->positions, s->n_tokens);
    copy_i32(be->seq_of_token, s->seq_of_token, s->n_tokens);
    copy_i32(be->kv_slot, s->kv_slot, s->n_tokens);
    copy_i32(be->bt_start, s->block_table_start, s->n_seqs);
    copy_i32(be->bt_len, s->block_table_len, s->n_seqs);
    copy_i32(be->block_tables, s->block_tables, n_bt);
    copy_i32(be->logit_rows, s->logit_rows, s->n_logit_rows);
    be->n_tokens = s->n_tokens;
    be->n_seqs = s->n_seqs;
    be->n_bt = n_bt;
    be->n_logit = s->n_logit_rows;
    return SLM_OK;
}

/* Scratch for steps of `rows` rows: matmul activations for the widest
 * weight of each type, attention for the largest KV pool. */
static slm_status grow_scratch_for(slm_cpu_backend *be, int64_t rows)
{
    size_t mm = 0;
    for (int t = 0; t < SLM_TYPE_COUNT && rows > 0; t++) {
        if (be->max_cols[t] == 0)
            continue;
        size_t b = slm_cpu_matmul_scratch_bytes((slm_type)t, be->max_cols[t], rows);
        if (b > mm)
            mm = b;
    }
    if (!grow_scratch(&be->mm_scratch, &be->mm_scratch_bytes, mm))
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of matmul scratch",
                         mm);
    if (be->max_head_dim > 0) {
        size_t per = slm_cpu_attention_thread_bytes(be->max_head_dim, be->max_block_size);
        size_t all = per * (size_t)be->n_threads;
        if (!grow_scratch(&be->attn_scratch, &be->attn_scratch_bytes, all))
            return slm_error(SLM_STATUS_OUT_OF_MEMORY,
                             "cannot allocate %zu bytes of attention scratch", all);
        be->attn_thread_bytes = per;
    }
    return SLM_OK;
}

static slm_status grow_step_scratch(slm_cpu_backend *be)
{
    return grow_scratch_for(be, be->n_tokens > be->n_logit ? be->n_tokens : be->n_logit);
}

static slm_status cpu_reserve(slm_backend *b, const slm_step_limits *lim, size_t *bytes)
{
    slm_cpu_backend *be = slm_cpu_be(b);
    if (lim->kv) {
        if (lim->kv->lay.padded_dim > be->max_head_dim)
            be->max_head_dim = lim->kv->lay.padded_dim;
        if (lim->kv->d.block_size > be->max_block_size)
            be->max_block_size = lim->kv->d.block_size;
    }
    int64_t rows = lim->max_tokens > lim->max_logit_rows ? lim->max_tokens : lim->max_logit_rows;
    slm_status st = grow_scratch_for(be, rows);
    if (!st)
        *bytes += be->mm_scratch_bytes + be->attn_scratch_bytes;
    return st;
}

/* Starts a step: checks and copies its arrays, grows scratch. A failure is
 * returned here AND remembered for wait; the step's ops then do
 * nothing. A begin_step without wait abandons the open step. */
static slm_status cpu_begin_step(slm_backend *b, const slm_step *s)
{
    if (b == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: begin_step: no backend");
    slm_cpu_backend *be = slm_cpu_be(b);
    be->in_step = true;
    be->err = SLM_OK;
    be->err_msg[0] = '\0';
    be->n_tokens = be->n_seqs = be->n_bt = be->n_logit = 0;
    int n_bt = 0;
    slm_status st = slm_step_check(s, &n_bt);
    if (st == SLM_OK)
        st = copy_step(be, s, n_bt);
    if (st == SLM_OK)
        st = grow_step_scratch(be);
    be->plan_kv = s ? s->kv : NULL;
    be->logits_out = s ? s->logits : NULL;
    be->attn_pos = 0;
    if (st == SLM_OK && be->plan_kv)
        st = slm_cpu_kv_plan(be, be->plan_kv);
    if (st != SLM_OK) {
        char why[sizeof be->err_msg];
        snprintf(why, sizeof why, "%s", slm_last_error());
        slm_cpu_fail(be, st, "begin_step: %s", why);
    }
    return st;
}

/* The ops ran as they were called: nothing is left to submit. */
static slm_status cpu_submit(slm_backend *b)
{
    if (b == NULL || !slm_cpu_be(b)->in_step)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: submit without begin_step");
    return SLM_OK;
}

static slm_status cpu_wait(slm_backend *b)
{
    if (b == NULL)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: wait: no backend");
    slm_cpu_backend *be = slm_cpu_be(b);
    if (!be->in_step)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cpu backend: wait without begin_step");
    be->in_step = false;
    be->plan_kv = NULL;
    if (be->err != SLM_OK)
        return slm_error(be->err, "cpu backend: %s", be->err_msg);
    return SLM_OK;
}

/* ------------------------------------------------------------------------ */
/* the table                                                                 */

static const slm_backend_ops cpu_ops = {
    .api_version = SLM_BACKEND_API_VERSION,
    .name = "cpu",
    .open = cpu_open,
    .close = cpu_close,
    .describe = cpu_describe,
    .supports = cpu_supports,
    .memory = cpu_memory,
    .buf_alloc = cpu_buf_alloc,
    .buf_free = cpu_buf_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .load_weight = cpu_load_weight,
    .weight_free = cpu_weight_free,
    .kv_create = slm_cpu_kv_create,
    .kv_free = slm_cpu_kv_free,
    .rope_create = slm_cpu_rope_create,
    .rope_free = slm_cpu_rope_free,
    .reserve = cpu_reserve,
    .begin_step = cpu_begin_step,
    .submit = cpu_submit,
    .wait = cpu_wait,
    .embed = slm_cpu_embed,
    .rmsnorm = slm_cpu_rmsnorm,
    .matmul = slm_cpu_matmul_op,
    .rope = slm_cpu_rope,
    .kv_store = slm_cpu_kv_store,
    .attention = slm_cpu_attention,
    .swiglu = slm_cpu_swiglu,
    .geglu = slm_cpu_geglu,
    .gelu = slm_cpu_gelu,
    .layernorm = slm_cpu_layernorm,
    .bias = slm_cpu_bias,
    .softcap = slm_cpu_softcap,
    .add = slm_cpu_add,
    .scale = slm_cpu_scale,
    .get_rows = slm_cpu_get_rows,
    .logits = slm_cpu_logits,
    .kv_copy = slm_cpu_kv_copy,
};

const slm_backend_ops *slm_backend_cpu(void) { return &cpu_ops; }
