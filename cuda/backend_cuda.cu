/*
 * backend_cuda.cu — the CUDA backend's ops table (runtime/backend.h v3):
 * opening a device by index, capabilities, buffers, weights (raw GGUF rows
 * uploaded once: the kernels read 2-byte aligned blocks as 16-bit halves,
 * so no repacking yet), the paged KV pool, RoPE tables, memory facts,
 * the workspace (reserve), and the step bracket.
 *
 * A step: begin_step checks the step's arrays, plans the KV reads and the
 * attention splits, and sends the arrays to the device once (pinned image,
 * async copy on the op stream); the ops enqueue kernels on the one op
 * stream in call order; the logits op has the copy stream copy its rows
 * into pinned memory once the ops before it are done; submit returns at
 * once; wait synchronizes both streams, turns any asynchronous failure into
 * the step's status naming the call, and copies the logits out.
 *
 * Kernels live by topic in matvec.cu, matmul.cu, attention.cu, ops.cu and
 * elementwise.cu; their per-thread arithmetic in cuda_logic.cuh.
 *
 * Status: compiled, host-tested logic only. No kernel of this backend has
 * run on a GPU yet (see README, CUDA).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

/* Rows up to which matmul uses the int8 matrix-vector kernel by default. */
#define MATVEC_ROWS_DEFAULT 8
#define BLAS_WS_BYTES ((size_t)32 << 20)

/* ------------------------------------------------------------------------ */
/* errors                                                                    */

void slm_cu_fail(slm_cu_backend *be, slm_status st, const char *fmt, ...)
{
    char msg[sizeof be->err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    slm_error(st, "cuda: %s", msg);
    if (be->err == SLM_OK) {
        be->err = st;
        snprintf(be->err_msg, sizeof be->err_msg, "%s", msg);
    }
}

/* "cudaMemcpyAsync(dst, src, ...)" → "cudaMemcpyAsync". */
static void call_name(const char *call, char *out, size_t n)
{
    size_t len = strcspn(call, "(");
    snprintf(out, n, "%.*s", (int)len, call);
}

static slm_status status_of(cudaError_t e)
{
    return e == cudaErrorMemoryAllocation ? SLM_STATUS_OUT_OF_MEMORY : SLM_STATUS_DEVICE;
}

bool slm_cu_ok(slm_cu_backend *be, cudaError_t e, const char *call)
{
    if (e == cudaSuccess)
        return true;
    char name[96];
    call_name(call, name, sizeof name);
    slm_cu_fail(be, status_of(e), "%s: %s", name, cudaGetErrorString(e));
    return false;
}

bool slm_cu_blas_ok(slm_cu_backend *be, cublasStatus_t s, const char *call)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return true;
    char name[96];
    call_name(call, name, sizeof name);
    slm_cu_fail(be, s == CUBLAS_STATUS_ALLOC_FAILED ? SLM_STATUS_OUT_OF_MEMORY : SLM_STATUS_DEVICE,
                "%s: %s", name, cublasGetStatusString(s));
    return false;
}

bool slm_cu_launched(slm_cu_backend *be, const char *kernel)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        return true;
    slm_cu_fail(be, status_of(e), "launching %s: %s", kernel, cudaGetErrorString(e));
    return false;
}

/* Outside a step: the failure is returned, not kept. */
static slm_status cu_status(cudaError_t e, const char *call)
{
    if (e == cudaSuccess)
        return SLM_OK;
    char name[96];
    call_name(call, name, sizeof name);
    return slm_error(status_of(e), "cuda: %s: %s", name, cudaGetErrorString(e));
}
#define CU_STATUS(call) cu_status((call), #call)

static slm_status blas_status(cublasStatus_t s, const char *call)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return SLM_OK;
    char name[96];
    call_name(call, name, sizeof name);
    return slm_error(SLM_STATUS_DEVICE, "cuda: %s: %s", name, cublasGetStatusString(s));
}
#define BLAS_STATUS(call) blas_status((call), #call)

/* cudaMalloc of `bytes` for `what` on the current device; a failure names
 * what, the bytes asked and the device's free and total memory then (so a
 * model that does not fit says by how much). */
static slm_status dev_alloc(void **p, size_t bytes, const char *what)
{
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e == cudaSuccess)
        return SLM_OK;
    cudaGetLastError(); /* clear it: an allocation failure is not sticky */
    size_t free_b = 0, total = 0;
    cudaMemGetInfo(&free_b, &total);
    *p = NULL;
    return slm_error(status_of(e),
                     "cuda: cudaMalloc of %zu bytes for %s: %s (%.1f of %.1f MiB free)", bytes,
                     what, cudaGetErrorString(e), (double)free_b / (1 << 20),
                     (double)total / (1 << 20));
}

bool slm_cu_op_ok(slm_cu_backend *be, const char *op)
{
    if (!be->opened) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s called outside begin_step/submit/wait",
                    op);
        return false;
    }
    return be->err == SLM_OK;
}

float *slm_cu_f32(slm_cu_backend *be, slm_ref ref, size_t count, const char *op, const char *what)
{
    if (!ref.buf) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %s has no buffer", op, what);
        return NULL;
    }
    if (ref.off % sizeof(float) || ref.off > ref.buf->size ||
        count > (ref.buf->size - ref.off) / sizeof(float)) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "%s: %s needs %zu floats at byte %zu of a %zu-byte buffer", op, what, count,
                    ref.off, ref.buf->size);
        return NULL;
    }
    return (float *)(ref.buf->dev + ref.off);
}

float *slm_cu_rows(slm_cu_backend *be, slm_ref ref, int64_t rows, int64_t width, int64_t stride,
                   const char *op, const char *what)
{
    if (rows < 0 || width < 0 || stride < width) {
        slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT,
                    "%s: %s has %lld rows of %lld floats with a stride of %lld", op, what,
                    (long long)rows, (long long)width, (long long)stride);
        return NULL;
    }
    int64_t count = rows == 0 ? 0 : (rows - 1) * stride + width;
    return slm_cu_f32(be, ref, (size_t)count, op, what);
}

bool slm_cu_kv_planned(slm_cu_backend *be, const slm_kv *kv, const char *op)
{
    if (kv && kv == be->plan_kv)
        return true;
    slm_cu_fail(be, SLM_STATUS_INVALID_ARGUMENT, "%s: %s", op,
                kv ? "not the KV pool the step was begun with (slm_step.kv)" : "no KV pool");
    return false;
}

/* ------------------------------------------------------------------------ */
/* device                                                                    */

static void cu_close(slm_backend *b)
{
    if (!b)
        return;
    slm_cu_backend *be = slm_cu_be(b);
    cudaSetDevice(be->device);
    if (be->stream)
        cudaStreamSynchronize(be->stream);
    if (be->copy)
        cudaStreamSynchronize(be->copy);
    if (be->blas)
        cublasDestroy(be->blas);
    cudaFree(be->blas_ws);
    cudaFree(be->ws);
    cudaFree(be->d_step);
    cudaFreeHost(be->h_step);
    cudaFreeHost(be->pinned);
    if (be->ops_done)
        cudaEventDestroy(be->ops_done);
    if (be->stream)
        cudaStreamDestroy(be->stream);
    if (be->copy)
        cudaStreamDestroy(be->copy);
    free(be);
}

/* The device index params ask for: cuda_device (1 + index) first, then
 * device_index; ANY and GPU_ONLY take device 0 (every CUDA device is a GPU). */
static slm_status pick_device(const slm_backend_params *p, int *out)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return slm_error(SLM_STATUS_DEVICE, "cuda: no CUDA device (cudaGetDeviceCount: %s)",
                         e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    int want = 0;
    if (p && p->cuda_device > 0)
        want = p->cuda_device - 1;
    else if (p && p->device_index >= 0)
        want = p->device_index;
    if (want >= count)
        return slm_error(SLM_STATUS_NOT_FOUND, "cuda: device %d of %d", want, count);
    *out = want;
    return SLM_OK;
}

static slm_status cu_setup(slm_cu_backend *be)
{
    slm_status st = CU_STATUS(cudaSetDevice(be->device));
    if (!st)
        st = CU_STATUS(cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking));
    if (!st)
        st = CU_STATUS(cudaStreamCreateWithFlags(&be->copy, cudaStreamNonBlocking));
    if (!st)
        st = CU_STATUS(cudaEventCreateWithFlags(&be->ops_done, cudaEventDisableTiming));
    if (st)
        return st;
    /* cuBLAS would allocate its workspace at the first GEMM; given one here
     * (32 MiB, NVIDIA's advice for Hopper, more than others need) it does
     * not, and a step can be captured as a graph later. */
    if ((st = dev_alloc(&be->blas_ws, BLAS_WS_BYTES, "cuBLAS's workspace")))
        return st;
    if ((st = BLAS_STATUS(cublasCreate(&be->blas))) ||
        (st = BLAS_STATUS(cublasSetStream(be->blas, be->stream))) ||
        (st = BLAS_STATUS(cublasSetWorkspace(be->blas, be->blas_ws, BLAS_WS_BYTES))))
        return st;
    cudaDeviceProp prop;
    if ((st = CU_STATUS(cudaGetDeviceProperties(&prop, be->device))))
        return st;
    int rt = 0;
    cudaRuntimeGetVersion(&rt);
    snprintf(be->desc, sizeof be->desc, "cuda: %s (sm_%d%d, %.1f GiB), device %d, runtime %d.%d",
             prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30),
             be->device, rt / 1000, rt % 1000 / 10);
    return SLM_OK;
}

/* Opens device params chooses; "no CUDA device" (SLM_STATUS_DEVICE) when
 * the runtime finds none, so the automatic choice moves on. */
static slm_status cu_open(const slm_backend_params *params, slm_backend **out)
{
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: open: out is NULL");
    *out = NULL;
    if (params && params->size < sizeof *params)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "cuda: slm_backend_params.size %zu is too small", params->size);
    int device = 0;
    slm_status st = pick_device(params, &device);
    if (st)
        return st;
    slm_cu_backend *be = (slm_cu_backend *)calloc(1, sizeof *be);
    if (!be)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cuda: out of host memory");
    be->base.ops = slm_backend_cuda();
    be->device = device;
    int mv = params ? params->cuda_matvec_rows : 0;
    be->matvec_rows = mv == 0 ? MATVEC_ROWS_DEFAULT : mv < 0 ? 0 : mv;
    be->split_min = params && params->cuda_split_min > 0 ? params->cuda_split_min
                                                         : ATTN_SPLIT_MIN;
    if ((st = cu_setup(be))) {
        cu_close(&be->base);
        return st;
    }
    *out = &be->base;
    return SLM_OK;
}

static const char *cu_describe(slm_backend *b)
{
    return b ? slm_cu_be(b)->desc : "cuda: (not open)";
}

static bool weight_type_ok(slm_type t)
{
    switch (t) {
    case SLM_TYPE_F32: case SLM_TYPE_F16: case SLM_TYPE_BF16: case SLM_TYPE_Q4_0:
    case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_0: case SLM_TYPE_Q5_1: case SLM_TYPE_Q8_0:
    case SLM_TYPE_Q2_K: case SLM_TYPE_Q3_K: case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K:
    case SLM_TYPE_Q6_K: case SLM_TYPE_IQ4_NL: case SLM_TYPE_IQ4_XS: return true;
    default: return false;
    }
}

static slm_status cu_supports(slm_backend *b, const slm_support_query *q)
{
    (void)b;
    switch (q->op) {
    case SLM_OP_EMBED:
    case SLM_OP_MATMUL:
        if (weight_type_ok(q->type))
            return SLM_OK;
        return slm_error(SLM_STATUS_UNSUPPORTED, "cuda: weight type %s is not supported",
                         slm_type_name(q->type));
    case SLM_OP_RMSNORM:
    case SLM_OP_LAYERNORM:
    case SLM_OP_BIAS:
        if (q->type == SLM_TYPE_F32)
            return SLM_OK;
        return slm_error(SLM_STATUS_UNSUPPORTED, "cuda: %s weight type %s (f32 only)",
                         q->op == SLM_OP_RMSNORM     ? "rmsnorm"
                         : q->op == SLM_OP_LAYERNORM ? "layernorm"
                                                     : "bias",
                         slm_type_name(q->type));
    case SLM_OP_KV_STORE:
    case SLM_OP_ATTENTION:
    case SLM_OP_KV_COPY:
        if (q->type != SLM_TYPE_F32 && q->type != SLM_TYPE_F16 && q->type != SLM_TYPE_Q8_0)
            return slm_error(SLM_STATUS_UNSUPPORTED,
                             "cuda: KV cache type %s is not supported (f32, f16, q8_0)",
                             slm_type_name(q->type));
        /* attention keeps a head's row in the registers of one warp */
        if (q->head_dim < 0 || q->head_dim > ATTN_MAX_HEAD)
            return slm_error(SLM_STATUS_UNSUPPORTED,
                             "cuda: heads of %d with KV type %s (up to %d are supported)",
                             q->head_dim, slm_type_name(q->type), ATTN_MAX_HEAD);
        return SLM_OK;
    case SLM_OP_ROPE:
        /* any head size and any even n_rot <= head_dim (partial rotary) */
    case SLM_OP_SWIGLU:
    case SLM_OP_GEGLU:
    case SLM_OP_GELU:
    case SLM_OP_SOFTCAP:
    case SLM_OP_ADD:
    case SLM_OP_SCALE:
    case SLM_OP_GET_ROWS:
    case SLM_OP_LOGITS: return SLM_OK;
    default:
        return slm_error(SLM_STATUS_UNSUPPORTED, "cuda: op %d with type %s", (int)q->op,
                         slm_type_name(q->type));
    }
}

static slm_status cu_memory(slm_backend *b, slm_mem_info *out)
{
    slm_cu_backend *be = slm_cu_be(b);
    size_t free_b = 0, total = 0;
    slm_status st = CU_STATUS(cudaSetDevice(be->device));
    if (!st)
        st = CU_STATUS(cudaMemGetInfo(&free_b, &total));
    if (st)
        return st;
    out->free_bytes = free_b;
    out->total_bytes = total;
    out->host = false;
    return SLM_OK;
}

/* ------------------------------------------------------------------------ */
/* memory                                                                    */

static slm_status cu_buf_alloc(slm_backend *b, size_t bytes, slm_buf **out)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: buf_alloc: out is NULL");
    *out = NULL;
    slm_buf *buf = (slm_buf *)calloc(1, sizeof *buf);
    if (!buf)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cuda: out of host memory");
    slm_status st = CU_STATUS(cudaSetDevice(be->device));
    if (!st)
        st = dev_alloc((void **)&buf->dev, bytes, "a buffer");
    if (st) {
        free(buf);
        return st;
    }
    buf->size = bytes;
    *out = buf;
    return SLM_OK;
}

static void cu_buf_free(slm_backend *b, slm_buf *buf)
{
    if (!buf)
        return;
    cudaSetDevice(slm_cu_be(b)->device);
    /* NOTE: cudaFree waits for the device to finish with the memory. */
    cudaFree(buf->dev);
    free(buf);
}

/* A synchronous copy, ordered after every op enqueued so far (as the CPU
 * backend's would be): the copy stream waits for the op stream first. */
static slm_status copy_sync(slm_cu_backend *be, void *dst, const void *src, size_t bytes,
                            cudaMemcpyKind kind)
{
    if (!bytes)
        return SLM_OK;
    slm_status st = CU_STATUS(cudaSetDevice(be->device));
    if (!st)
        st = CU_STATUS(cudaEventRecord(be->ops_done, be->stream));
    if (!st)
        st = CU_STATUS(cudaStreamWaitEvent(be->copy, be->ops_done, 0));
    if (!st)
        st = CU_STATUS(cudaMemcpyAsync(dst, src, bytes, kind, be->copy));
    if (!st)
        st = CU_STATUS(cudaStreamSynchronize(be->copy));
    return st;
}

static slm_status check_range(slm_ref r, size_t bytes, const char *what)
{
    if (!r.buf)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: %s: no buffer", what);
    if (r.off > r.buf->size || bytes > r.buf->size - r.off)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT,
                         "cuda: %s of %zu bytes at offset %zu runs past the %zu-byte buffer",
                         what, bytes, r.off, r.buf->size);
    return SLM_OK;
}

static slm_status cu_upload(slm_backend *b, slm_ref dst, const void *src, size_t bytes)
{
    slm_status st = check_range(dst, bytes, "upload");
    if (!st && bytes && !src)
        st = slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: upload: no source");
    return st ? st : copy_sync(slm_cu_be(b), dst.buf->dev + dst.off, src, bytes,
                               cudaMemcpyHostToDevice);
}

static slm_status cu_download(slm_backend *b, void *dst, slm_ref src, size_t bytes)
{
    slm_status st = check_range(src, bytes, "download");
    if (!st && bytes && !dst)
        st = slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: download: no destination");
    return st ? st : copy_sync(slm_cu_be(b), dst, src.buf->dev + src.off, bytes,
                               cudaMemcpyDeviceToHost);
}

static void cu_weight_free(slm_backend *b, slm_weight *w)
{
    if (!w)
        return;
    cudaSetDevice(slm_cu_be(b)->device);
    cudaFree(w->dev);
    free(w);
}

/* Uploads the rows as they are in the file, once. */
static slm_status cu_load_weight(slm_backend *b, slm_type type, int64_t rows, int64_t cols,
                                 const void *data, slm_weight **out)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: load_weight: out is NULL");
    *out = NULL;
    if (!weight_type_ok(type))
        return slm_error(SLM_STATUS_UNSUPPORTED, "cuda: weight type %s is not supported",
                         slm_type_name(type));
    const slm_type_info *ti = slm_type_get(type);
    size_t row_bytes = slm_type_row_bytes(type, cols);
    if (rows < 1 || cols < 1 || cols % ti->block_elems || !data || !row_bytes ||
        (uint64_t)rows > SIZE_MAX / row_bytes)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: load_weight: %lld x %lld of %s%s",
                         (long long)rows, (long long)cols, slm_type_name(type),
                         data ? "" : " without data");
    slm_weight *w = (slm_weight *)calloc(1, sizeof *w);
    if (!w)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cuda: out of host memory");
    w->type = type;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = row_bytes;
    size_t bytes = row_bytes * (size_t)rows;
    slm_status st = CU_STATUS(cudaSetDevice(be->device));
    if (!st)
        st = dev_alloc((void **)&w->dev, bytes, "the weight");
    if (!st)
        st = copy_sync(be, w->dev, data, bytes, cudaMemcpyHostToDevice);
    if (st) {
        cu_weight_free(b, w);
        return slm_error(st, "cuda: a %lld x %lld %s weight (%zu bytes): %s", (long long)rows,
                         (long long)cols, slm_type_name(type), bytes, slm_last_error());
    }
    if (cols > be->max_cols)
        be->max_cols = cols;
    *out = w;
    return SLM_OK;
}

static void cu_kv_free(slm_backend *b, slm_kv *kv)
{
    if (!kv)
        return;
    cudaSetDevice(slm_cu_be(b)->device);
    cudaFree(kv->k);
    cudaFree(kv->v);
    free(kv);
}

/* A zeroed pool of the CPU's layout (slm_kv_layout_of): F32, F16 or Q8_0;
 * heads up to ATTN_MAX_HEAD (attention keeps a head in one warp). */
static slm_status cu_kv_create(slm_backend *b, const slm_kv_desc *d, slm_kv **out)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!d || !out)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: kv_create: missing argument");
    *out = NULL;
    slm_kv_layout lay;
    slm_status st = slm_kv_layout_of(d, &lay);
    if (st)
        return slm_error(st, "cuda: %s", slm_last_error());
    if (d->head_dim > ATTN_MAX_HEAD)
        return slm_error(SLM_STATUS_UNSUPPORTED, "cuda: KV heads of %d (up to %d)",
                         d->head_dim, ATTN_MAX_HEAD);
    slm_kv *kv = (slm_kv *)calloc(1, sizeof *kv);
    if (!kv)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cuda: out of host memory");
    kv->d = *d;
    kv->lay = lay;
    size_t total = lay.total_bytes;
    st = CU_STATUS(cudaSetDevice(be->device));
    if (!st)
        st = dev_alloc((void **)&kv->k, total, "the KV pool's K");
    if (!st)
        st = dev_alloc((void **)&kv->v, total, "the KV pool's V");
    if (!st)
        st = CU_STATUS(cudaMemset(kv->k, 0, total));
    if (!st)
        st = CU_STATUS(cudaMemset(kv->v, 0, total));
    if (st) {
        cu_kv_free(b, kv);
        return st;
    }
    *out = kv;
    return SLM_OK;
}

static void cu_rope_free(slm_backend *b, slm_rope *r)
{
    if (!r)
        return;
    cudaSetDevice(slm_cu_be(b)->device);
    cudaFree(r->inv_freq);
    free(r);
}

/* The inverse frequencies in double, as the CPU keeps them: rope.cu forms
 * each angle in double, so long positions keep their digits. */
static slm_status cu_rope_create(slm_backend *b, const slm_rope_params *p, slm_rope **out)
{
    slm_cu_backend *be = slm_cu_be(b);
    *out = NULL;
    slm_status st = slm_rope_params_check(p, 4096, "cuda");
    if (st)
        return st;
    int half = p->n_rot / 2;
    double tab[2048];
    for (int i = 0; i < half; i++)
        tab[i] = slm_rope_inv_freq(p, i);
    slm_rope *r = (slm_rope *)calloc(1, sizeof *r);
    if (!r)
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "cuda: out of host memory");
    r->mode = p->mode;
    r->n_rot = p->n_rot;
    st = CU_STATUS(cudaSetDevice(be->device));
    if (!st)
        st = dev_alloc((void **)&r->inv_freq, (size_t)half * sizeof(double), "a RoPE table");
    if (!st)
        st = copy_sync(be, r->inv_freq, tab, (size_t)half * sizeof(double), cudaMemcpyHostToDevice);
    if (st) {
        cu_rope_free(b, r);
        return st;
    }
    *out = r;
    return SLM_OK;
}

/* ------------------------------------------------------------------------ */
/* workspace                                                                 */

/* Grows the device workspace to at least `need` bytes (contents dropped). */
static slm_status grow_ws(slm_cu_backend *be, size_t need)
{
    if (need <= be->ws_bytes)
        return SLM_OK;
    cudaFree(be->ws);
    be->ws = NULL;
    be->ws_bytes = 0;
    slm_status st = dev_alloc((void **)&be->ws, need, "the workspace");
    if (st)
        return st;
    be->ws_bytes = need;
    return SLM_OK;
}

/* Grows the step image (pinned and device) to `ints` ints. */
static slm_status grow_step(slm_cu_backend *be, size_t ints)
{
    if (ints <= be->step_cap)
        return SLM_OK;
    cudaFreeHost(be->h_step);
    cudaFree(be->d_step);
    be->h_step = NULL;
    be->d_step = NULL;
    be->step_cap = 0;
    slm_status st = CU_STATUS(cudaMallocHost((void **)&be->h_step, ints * sizeof(int32_t)));
    if (!st)
        st = dev_alloc((void **)&be->d_step, ints * sizeof(int32_t), "the step's arrays");
    if (!st)
        be->step_cap = ints;
    return st;
}

static slm_status grow_pinned(slm_cu_backend *be, size_t bytes)
{
    if (bytes <= be->pinned_bytes)
        return SLM_OK;
    cudaFreeHost(be->pinned);
    be->pinned = NULL;
    be->pinned_bytes = 0;
    slm_status st = CU_STATUS(cudaMallocHost((void **)&be->pinned, bytes));
    if (!st)
        be->pinned_bytes = bytes;
    return st;
}

/* The workspace a step of `rows` matmul rows and n_tokens × n_heads
 * attention needs, with the widest weight loaded so far. */
static size_t ws_need(const slm_cu_backend *be, int64_t rows, int n_tokens, int n_heads, int hd)
{
    size_t mm = be->max_cols ? slm_cu_matmul_ws(rows, be->max_cols) : 0;
    int split = slm_cu_attention_splits(n_tokens, INT32_MAX, be->split_min);
    size_t at = n_heads > 0 && hd > 0 ? slm_cu_attention_ws(n_tokens, n_heads, hd, split) : 0;
    return mm > at ? mm : at;
}

static slm_status cu_reserve(slm_backend *b, const slm_step_limits *lim, size_t *bytes)
{
    slm_cu_backend *be = slm_cu_be(b);
    slm_status st = CU_STATUS(cudaSetDevice(be->device));
    int64_t rows = lim->max_tokens > lim->max_logit_rows ? lim->max_tokens : lim->max_logit_rows;
    int hd = lim->kv ? lim->kv->lay.padded_dim : 0;
    if (!st)
        st = grow_ws(be, ws_need(be, rows, lim->max_tokens, lim->max_heads, hd));
    size_t bt = lim->kv ? (size_t)lim->kv->d.n_blocks : 0;
    if (!st)
        st = grow_step(be, 4 * (size_t)lim->max_tokens + 2 * (size_t)lim->max_seqs + bt +
                               (size_t)lim->max_logit_rows);
    if (!st && lim->logit_cols > 0)
        st = grow_pinned(be, (size_t)lim->max_logit_rows * (size_t)lim->logit_cols * sizeof(float));
    if (!st)
        *bytes += be->ws_bytes + be->step_cap * sizeof(int32_t);
    return st;
}

/* ------------------------------------------------------------------------ */
/* steps                                                                     */

static void put(int32_t *dst, const int32_t *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = src ? src[i] : -1;
}

/* Every index attention and kv_store follow lies in the pool, checked on
 * the step's image (slm_step_kv_check). */
static slm_status plan_kv(slm_cu_backend *be, const slm_kv *kv)
{
    slm_step view = {};
    view.n_tokens = be->n_tokens;
    view.positions = slm_cu_host(be, ST_POS);
    view.seq_of_token = slm_cu_host(be, ST_SEQ);
    view.kv_slot = slm_cu_host(be, ST_SLOT);
    view.n_seqs = be->n_seqs;
    view.block_table_start = slm_cu_host(be, ST_BT_START);
    view.block_table_len = slm_cu_host(be, ST_BT_LEN);
    view.block_tables = slm_cu_host(be, ST_BT);
    return slm_step_kv_check(&view, kv->d.n_blocks, kv->d.block_size);
}

static slm_status begin(slm_cu_backend *be, const slm_step *s)
{
    int n_bt = 0;
    slm_status st = slm_step_check(s, &n_bt);
    if (st)
        return st;
    size_t n = (size_t)s->n_tokens, ns = (size_t)s->n_seqs;
    size_t len[ST_COUNT] = {n, n, n, n, ns, ns, (size_t)n_bt, (size_t)s->n_logit_rows};
    size_t ints = 0;
    for (int i = 0; i < ST_COUNT; i++) {
        be->at[i] = ints;
        ints += len[i];
    }
    if ((st = CU_STATUS(cudaSetDevice(be->device))) || (st = grow_step(be, ints ? ints : 1)))
        return st;
    const int32_t *src[ST_COUNT] = {s->token_ids, s->positions, s->seq_of_token, s->kv_slot,
                                    s->block_table_start, s->block_table_len, s->block_tables,
                                    s->logit_rows};
    for (int i = 0; i < ST_COUNT; i++)
        put(be->h_step + be->at[i], src[i], (int)len[i]);
    be->n_tokens = s->n_tokens;
    be->n_seqs = s->n_seqs;
    be->n_bt = n_bt;
    be->n_logit = s->n_logit_rows;
    be->n_heads = s->n_heads;
    be->logits_out = s->logits;
    be->max_pos = -1;
    for (int t = 0; t < s->n_tokens; t++)
        if (slm_cu_host(be, ST_POS)[t] > be->max_pos)
            be->max_pos = slm_cu_host(be, ST_POS)[t];
    if (s->kv && (st = plan_kv(be, s->kv)))
        return st;
    be->plan_kv = s->kv;
    be->attn_split = slm_cu_attention_splits(s->n_tokens, be->max_pos + 1, be->split_min);
    int64_t rows = s->n_tokens > s->n_logit_rows ? s->n_tokens : s->n_logit_rows;
    int hd = s->kv ? s->kv->lay.padded_dim : 0;
    if ((st = grow_ws(be, ws_need(be, rows, s->n_tokens, s->n_heads, hd))))
        return st;
    /* NOTE: the pinned image is rewritten only at the next begin_step, after
     * this step's wait: the async copy has finished by then. */
    return CU_STATUS(cudaMemcpyAsync(be->d_step, be->h_step, ints * sizeof(int32_t),
                                     cudaMemcpyHostToDevice, be->stream));
}

/* Begins a step; a failure is returned and kept for wait. */
static slm_status cu_begin_step(slm_backend *b, const slm_step *s)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: begin_step inside a step");
    be->err = SLM_OK;
    be->err_msg[0] = '\0';
    be->n_tokens = be->n_seqs = be->n_bt = be->n_logit = 0;
    be->plan_kv = NULL;
    be->logits_bytes = 0;
    be->logits_staged = false;
    be->logits_src = NULL;
    be->opened = true;
    slm_status st = begin(be, s);
    if (st) {
        char why[sizeof be->err_msg];
        snprintf(why, sizeof why, "%s", slm_last_error());
        slm_cu_fail(be, st, "begin_step: %s", why);
        return slm_error(st, "%s", why);
    }
    return SLM_OK;
}

/* The ops are on the stream already: nothing to hand over. */
static slm_status cu_submit(slm_backend *b)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: submit without begin_step");
    return be->err ? slm_error(be->err, "cuda: %s", be->err_msg) : SLM_OK;
}

/* Waits for both streams; an asynchronous fault surfaces here, named by
 * the synchronize call. Then copies the logits rows out. */
static slm_status cu_wait(slm_backend *b)
{
    slm_cu_backend *be = slm_cu_be(b);
    if (!be->opened)
        return slm_error(SLM_STATUS_INVALID_ARGUMENT, "cuda: wait without begin_step");
    cudaSetDevice(be->device);
    CU_CHECK(be, cudaStreamSynchronize(be->stream));
    CU_CHECK(be, cudaStreamSynchronize(be->copy));
    be->opened = false;
    be->plan_kv = NULL;
    if (be->err)
        return slm_error(be->err, "cuda: %s", be->err_msg);
    if (be->logits_bytes && be->logits_staged)
        memcpy(be->logits_out, be->pinned, be->logits_bytes);
    else if (be->logits_bytes)
        return CU_STATUS(cudaMemcpy(be->logits_out, be->logits_src, be->logits_bytes,
                                    cudaMemcpyDeviceToHost));
    return SLM_OK;
}

/* ------------------------------------------------------------------------ */
/* the table                                                                 */

static const slm_backend_ops cu_ops = {
    .api_version = SLM_BACKEND_API_VERSION,
    .name = "cuda",
    .open = cu_open,
    .close = cu_close,
    .describe = cu_describe,
    .supports = cu_supports,
    .memory = cu_memory,
    .buf_alloc = cu_buf_alloc,
    .buf_free = cu_buf_free,
    .upload = cu_upload,
    .download = cu_download,
    .load_weight = cu_load_weight,
    .weight_free = cu_weight_free,
    .kv_create = cu_kv_create,
    .kv_free = cu_kv_free,
    .rope_create = cu_rope_create,
    .rope_free = cu_rope_free,
    .reserve = cu_reserve,
    .begin_step = cu_begin_step,
    .submit = cu_submit,
    .wait = cu_wait,
    .embed = slm_cu_embed,
    .rmsnorm = slm_cu_rmsnorm,
    .matmul = slm_cu_matmul,
    .rope = slm_cu_rope,
    .kv_store = slm_cu_kv_store,
    .attention = slm_cu_attention,
    .swiglu = slm_cu_swiglu,
    .geglu = slm_cu_geglu,
    .gelu = slm_cu_gelu,
    .layernorm = slm_cu_layernorm,
    .bias = slm_cu_bias,
    .softcap = slm_cu_softcap,
    .get_rows = slm_cu_get_rows,
    .logits = slm_cu_logits,
    .add = slm_cu_add,
    .scale = slm_cu_scale,
    .kv_copy = slm_cu_kv_copy,
};

extern "C" const slm_backend_ops *slm_backend_cuda(void) { return &cu_ops; }
