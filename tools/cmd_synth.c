/*
 * cmd_synth.c — `slm synth`: writes a random-weight GGUF with the exact
 * tensor shapes of a real model and a chosen quantization mix, so benchmarks
 * and GPU tests run on any machine without downloading that model (speed
 * depends on shapes and types, not on the values).
 *
 * Weights: a pool of rows is quantized with the reference quantizers for each
 * (type, row length) and tensors are filled with rows drawn from that pool —
 * quantizing billions of values one by one would take hours and buys nothing.
 * Tokenizer: the default model's (copied) when the shape's vocabulary size
 * matches it and the file is there, else a byte-level vocabulary (256 byte
 * tokens, no merges) padded with unused tokens.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_internal.h"

typedef struct {
    const char *name;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_base;
    bool tied;
} shape;

static const shape shapes[] = {
    {"smollm2-135m", 576, 30, 9, 3, 1536, 49152, 8192, 100000.f, true},
    {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.f, true},
    {"llama-2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, 10000.f, false},
    {"llama-3-8b", 4096, 32, 32, 8, 14336, 128256, 8192, 500000.f, false},
};

static const char *const mixes[] = {"q4_0", "q4_k_m", "q8_0", "f16"};

#define POOL_ROWS 16

typedef struct {
    const shape *s;
    const char *mix;
    uint64_t seed;
    /* pools of pre-quantized rows, one per (type, row length) in use */
    struct {
        int type;
        int64_t cols;
        uint8_t *rows;
        size_t row_bytes;
    } pool[16];
    int n_pool;
} synth;

static void help(void)
{
    printf("usage: slm synth -o FILE --shape NAME --type MIX [--seed N] [--layers N]\n\n"
           "Writes a random-weight GGUF with the tensor shapes of a real model.\n\n"
           "  -o, --output FILE  where to write it\n"
           "  --shape NAME       ");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        printf("%s%s", i ? ", " : "", shapes[i].name);
    printf("\n  --type MIX         q4_0, q4_k_m (Q4_K with Q6_K for attn_v/ffn_down in some\n"
           "                     layers and the output), q8_0 or f16\n"
           "  --seed N           random seed (default 1)\n"
           "  --layers N         fewer layers than the real model (quick tests)\n"
           "  -h, --help         this text\n");
}

/* llama.cpp's "use more bits" layers of a Q4_K_M mix. */
static bool more_bits(int layer, int n_layer)
{
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

/* K-quants need rows that are multiples of 256; llama.cpp substitutes these. */
static int fit(int type, int64_t cols)
{
    if (cols % 256 == 0)
        return type;
    if (type == SLM_TYPE_Q4_K)
        return SLM_TYPE_Q5_0;
    if (type == SLM_TYPE_Q6_K)
        return SLM_TYPE_Q8_0;
    return type;
}

static int tensor_type(const synth *sy, const char *name, int64_t cols)
{
    const char *m = sy->mix;
    if (!strcmp(m, "f16"))
        return SLM_TYPE_F16;
    if (!strcmp(m, "q8_0"))
        return SLM_TYPE_Q8_0;
    bool output = !strcmp(name, "output.weight") ||
                  (sy->s->tied && !strcmp(name, "token_embd.weight"));
    if (output)
        return fit(SLM_TYPE_Q6_K, cols);
    if (!strcmp(m, "q4_0"))
        return SLM_TYPE_Q4_0;
    int layer = -1;
    sscanf(name, "blk.%d.", &layer);
    if ((strstr(name, "attn_v") || strstr(name, "ffn_down")) && more_bits(layer, sy->s->n_layer))
        return fit(SLM_TYPE_Q6_K, cols);
    return fit(SLM_TYPE_Q4_K, cols);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static float gauss(uint64_t *state)
{
    double u1 = ((double)(mix64(++*state) >> 11) + 1) / 9007199254740993.0;
    double u2 = (double)(mix64(++*state) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static slm_status get_pool(synth *sy, int type, int64_t cols, uint8_t **rows, size_t *rb)
{
    for (int i = 0; i < sy->n_pool; i++)
        if (sy->pool[i].type == type && sy->pool[i].cols == cols) {
            *rows = sy->pool[i].rows, *rb = sy->pool[i].row_bytes;
            return SLM_OK;
        }
    size_t row_bytes = slm_type_row_bytes(type, cols);
    uint8_t *buf = malloc(row_bytes * POOL_ROWS);
    float *x = malloc((size_t)cols * sizeof(float));
    if (!buf || !x || sy->n_pool == 16) {
        free(buf), free(x);
        return slm_error(SLM_STATUS_OUT_OF_MEMORY, "synth: out of memory");
    }
    uint64_t st = sy->seed * 1000003u + (uint64_t)type * 7919u + (uint64_t)cols;
    float scale = 1.0f / sqrtf((float)cols); /* keeps activations O(1) layer to layer */
    for (int r = 0; r < POOL_ROWS; r++) {
        for (int64_t c = 0; c < cols; c++)
            x[c] = scale * gauss(&st);
        slm_quantize_row_ref(type, x, buf + (size_t)r * row_bytes, cols);
    }
    free(x);
    sy->pool[sy->n_pool].type = type, sy->pool[sy->n_pool].cols = cols;
    sy->pool[sy->n_pool].rows = buf, sy->pool[sy->n_pool].row_bytes = row_bytes;
    sy->n_pool++;
    *rows = buf, *rb = row_bytes;
    return SLM_OK;
}

static slm_status fill(void *user, int64_t i, const char *name, int type, const int64_t *ne,
                       void *out, size_t nbytes)
{
    synth *sy = user;
    (void)nbytes;
    if (type == SLM_TYPE_F32) { /* norm gains: near 1 */
        float *f = out;
        uint64_t st = sy->seed + (uint64_t)i * 31u;
        for (int64_t j = 0; j < ne[0]; j++)
            f[j] = 1.0f + 0.1f * gauss(&st);
        return SLM_OK;
    }
    uint8_t *pool = NULL;
    size_t rb = 0;
    slm_status s = get_pool(sy, type, ne[0], &pool, &rb);
    if (s)
        return s;
    for (int64_t r = 0; r < ne[1]; r++) {
        uint64_t pick = mix64(sy->seed ^ ((uint64_t)i << 32) ^ (uint64_t)r) % POOL_ROWS;
        memcpy((uint8_t *)out + (size_t)r * rb, pool + pick * rb, rb);
    }
    (void)name;
    return SLM_OK;
}

static slm_status add_2d(slm_gguf_writer *w, synth *sy, const char *name, int64_t cols,
                         int64_t rows)
{
    int64_t ne[2] = {cols, rows};
    return slm_gguf_add_tensor(w, name, tensor_type(sy, name, cols), 2, ne);
}

static slm_status add_tensors(slm_gguf_writer *w, synth *sy)
{
    const shape *s = sy->s;
    int64_t d = s->n_embd, hd = s->n_embd / s->n_head, nkv = hd * s->n_head_kv;
    int64_t one[1] = {d};
    slm_status st = add_2d(w, sy, "token_embd.weight", d, s->n_vocab);
    if (!st)
        st = slm_gguf_add_tensor(w, "output_norm.weight", SLM_TYPE_F32, 1, one);
    if (!st && !s->tied)
        st = add_2d(w, sy, "output.weight", d, s->n_vocab);
    char n[64];
    for (int l = 0; !st && l < s->n_layer; l++) {
        struct {
            const char *what;
            int64_t cols, rows;
        } t[] = {{"attn_q", d, d},          {"attn_k", d, nkv},         {"attn_v", d, nkv},
                 {"attn_output", d, d},     {"ffn_gate", d, s->n_ff},   {"ffn_up", d, s->n_ff},
                 {"ffn_down", s->n_ff, d}};
        snprintf(n, sizeof n, "blk.%d.attn_norm.weight", l);
        st = slm_gguf_add_tensor(w, n, SLM_TYPE_F32, 1, one);
        snprintf(n, sizeof n, "blk.%d.ffn_norm.weight", l);
        if (!st)
            st = slm_gguf_add_tensor(w, n, SLM_TYPE_F32, 1, one);
        for (size_t k = 0; !st && k < sizeof t / sizeof t[0]; k++) {
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, t[k].what);
            st = add_2d(w, sy, n, t[k].cols, t[k].rows);
        }
    }
    return st;
}

static slm_status byte_vocab(slm_gguf_writer *w, int n_vocab)
{
    char **tok = calloc((size_t)n_vocab, sizeof *tok);
    int32_t *types = malloc((size_t)n_vocab * sizeof *types);
    slm_status st = tok && types ? SLM_OK : slm_error(SLM_STATUS_OUT_OF_MEMORY, "synth: out of memory");
    /* GPT-2 byte-to-unicode: printable bytes map to themselves, the others
     * to U+0100.. in order. */
    int extra = 0;
    for (int b = 0; !st && b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        unsigned cp = keep ? (unsigned)b : 0x100u + (unsigned)extra++;
        char *s = malloc(3);
        if (!s) {
            st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "synth: out of memory");
            break;
        }
        if (cp < 0x80) {
            s[0] = (char)cp, s[1] = 0;
        } else {
            s[0] = (char)(0xc0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3f)), s[2] = 0;
        }
        tok[b] = s;
        types[b] = 1;
    }
    for (int i = 256; !st && i < n_vocab; i++) {
        tok[i] = malloc(24);
        if (!tok[i]) {
            st = slm_error(SLM_STATUS_OUT_OF_MEMORY, "synth: out of memory");
            break;
        }
        snprintf(tok[i], 24, i == n_vocab - 1 ? "<|end|>" : "<|unused_%d|>", i);
        types[i] = i == n_vocab - 1 ? 3 : 5;
    }
    if (!st)
        st = slm_gguf_put_str(w, "tokenizer.ggml.model", "gpt2", 4);
    if (!st)
        st = slm_gguf_put_str(w, "tokenizer.ggml.pre", "gpt-2", 5);
    if (!st)
        st = slm_gguf_put_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, NULL,
                                  (uint64_t)n_vocab);
    if (!st)
        st = slm_gguf_put_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n_vocab);
    if (!st)
        st = slm_gguf_put_arr_str(w, "tokenizer.ggml.merges", NULL, NULL, 0);
    if (!st)
        st = slm_gguf_put_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)n_vocab - 1);
    if (!st)
        st = slm_gguf_put_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)n_vocab - 1);
    for (int i = 0; tok && i < n_vocab; i++)
        free(tok[i]);
    free(tok), free(types);
    return st;
}

/* The default model's tokenizer, when the vocabulary sizes agree. */
static slm_status vocab(slm_gguf_writer *w, const shape *s, bool *copied)
{
    *copied = false;
    slm_gguf *g;
    if (access(SLM_DEFAULT_MODEL, R_OK) == 0 && slm_gguf_open(SLM_DEFAULT_MODEL, &g) == SLM_OK) {
        uint64_t n = 0;
        if (slm_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, NULL, &n) == SLM_OK &&
            n == (uint64_t)s->n_vocab) {
            slm_status st = SLM_OK;
            for (int64_t i = 0; !st && i < slm_gguf_kv_count(g); i++)
                if (!strncmp(slm_gguf_kv_at(g, i)->key, "tokenizer.", 10))
                    st = slm_gguf_put_copy(w, g, i);
            slm_gguf_close(g);
            *copied = true;
            return st;
        }
        slm_gguf_close(g);
    }
    return byte_vocab(w, s->n_vocab);
}

static slm_status metadata(slm_gguf_writer *w, const shape *s, const char *mix)
{
    char name[96];
    snprintf(name, sizeof name, "synthetic %s %s", s->name, mix);
    slm_status st = slm_gguf_put_str(w, "general.architecture", "llama", 5);
    struct {
        const char *k;
        uint32_t v;
    } u[] = {{"llama.context_length", (uint32_t)s->n_ctx},
             {"llama.embedding_length", (uint32_t)s->n_embd},
             {"llama.block_count", (uint32_t)s->n_layer},
             {"llama.feed_forward_length", (uint32_t)s->n_ff},
             {"llama.attention.head_count", (uint32_t)s->n_head},
             {"llama.attention.head_count_kv", (uint32_t)s->n_head_kv},
             {"llama.rope.dimension_count", (uint32_t)(s->n_embd / s->n_head)},
             {"llama.vocab_size", (uint32_t)s->n_vocab}};
    if (!st)
        st = slm_gguf_put_str(w, "general.name", name, strlen(name));
    for (size_t i = 0; !st && i < sizeof u / sizeof u[0]; i++)
        st = slm_gguf_put_u32(w, u[i].k, u[i].v);
    if (!st)
        st = slm_gguf_put_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (!st)
        st = slm_gguf_put_f32(w, "llama.rope.freq_base", s->rope_base);
    return st;
}

int slm_cmd_synth(int argc, char **argv)
{
    const char *out = NULL, *shape_name = NULL, *mix = NULL;
    long seed = 1, layers = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return 0;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && val) {
            out = argv[++i];
        } else if (!strcmp(a, "--shape") && val) {
            shape_name = argv[++i];
        } else if (!strcmp(a, "--type") && val) {
            mix = argv[++i];
        } else if (!strcmp(a, "--seed") && val) {
            if (!slm_cli_int("synth", a, argv[++i], 0, 1L << 30, &seed))
                return 1;
        } else if (!strcmp(a, "--layers") && val) {
            if (!slm_cli_int("synth", a, argv[++i], 1, 1024, &layers))
                return 1;
        } else {
            return slm_cli_fail("synth", "unknown or incomplete option '%s' (see slm synth --help)", a);
        }
    }
    if (!out || !shape_name || !mix)
        return slm_cli_fail("synth", "-o, --shape and --type are required (see slm synth --help)");
    shape s = {0};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, shape_name))
            s = shapes[i];
    if (!s.name)
        return slm_cli_fail("synth", "unknown shape '%s' (see slm synth --help)", shape_name);
    bool mix_ok = false;
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++)
        mix_ok |= !strcmp(mixes[i], mix);
    if (!mix_ok)
        return slm_cli_fail("synth", "unknown type '%s' (q4_0, q4_k_m, q8_0 or f16)", mix);
    if (layers)
        s.n_layer = (int)layers;
    synth sy = {.s = &s, .mix = mix, .seed = (uint64_t)seed};
    slm_gguf_writer *w;
    bool copied = false;
    slm_status st = slm_gguf_writer_create(&w);
    if (!st)
        st = metadata(w, &s, mix);
    if (!st)
        st = vocab(w, &s, &copied);
    if (!st)
        st = add_tensors(w, &sy);
    if (!st) {
        /* Writing takes minutes at 8B shapes: worth a few lines in a log too. */
        slm_cli_progress pr;
        slm_cli_progress_start(&pr, true, "slm synth: writing %s", out);
        st = slm_gguf_writer_write(w, out, fill, &sy, slm_cli_progress_update, &pr);
        slm_cli_progress_end(&pr, st == SLM_OK);
    }
    slm_gguf_writer_free(w);
    for (int i = 0; i < sy.n_pool; i++)
        free(sy.pool[i].rows);
    if (st)
        return slm_cli_fail("synth", "%s", slm_last_error());
    fprintf(stderr, "slm synth: wrote %s (%s, %s, %d layers, %s tokenizer)\n", out, s.name, mix,
            s.n_layer, copied ? "default model's" : "byte-level");
    return 0;
}
