// attention_body.glsl — the attention core shared by attention.comp (one
// workgroup over all positions of a token) and attention_split.comp (one
// workgroup per chunk of positions, merged by attention_merge.comp). One
// workgroup of 64 threads per (query head, token[, chunk]). Positions are
// visited in tiles of 64 (one position per thread for the score q·k, read
// through the block table); an online softmax keeps the running max m and
// sum l, and each thread owns head_dim/64 output dimensions, accumulating
// Σ p·v with a rescale when the max grows. Query head h reads KV head
// h / (n_heads / n_kv_heads). head_dim <= 256. Scores are soft-capped
// (softcap·tanh(s/softcap)) when softcap > 0; with a sliding window > 0 a
// token at position p sees only p − window < j <= p (first_pos), and the
// callers never visit the positions before it.
#include "common.glsl"
#include "kv.glsl"
#include "act.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    uint q_b, q_o, q_stride, o_b, o_o;
    uint kv_b, kv_k, kv_v, n_heads, n_kv_heads, head_dim, block_size;
    float scale;
    uint chunk, n_split; // split variant: positions per split, splits per (token, head)
    float softcap;       // > 0: scores become softcap·tanh(s / softcap)
    uint window;         // > 0: positions p − window < j <= p only
} pc;

#define MAXD 256u

shared float sq[MAXD];
shared float sp[64];
shared uint sslot[64];
shared float red[64];

float reduce_max(float v)
{
    uint i = gl_LocalInvocationID.x;
    red[i] = v;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (i < h)
            red[i] = max(red[i], red[i + h]);
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

float reduce_sum(float v)
{
    uint i = gl_LocalInvocationID.x;
    red[i] = v;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (i < h)
            red[i] += red[i + h];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

// The first position token t attends to (0 without a window).
uint first_pos(uint t)
{
    uint hi = uint(step_at(ST_POS, int(t))) + 1u;
    return pc.window > 0u && hi > pc.window ? hi - pc.window : 0u;
}

float g_m, g_l;
float g_acc[MAXD / 64u];

// Attends query head h of token t to positions [lo, hi) of its sequence
// (hi <= pos + 1): leaves m, l and the unnormalized Σ p·v in g_m, g_l, g_acc.
void attend(uint h, uint t, uint lo, uint hi)
{
    uint tid = gl_LocalInvocationID.x;
    uint hd = pc.head_dim;
    uint kvh = h / (pc.n_heads / pc.n_kv_heads);
    uint width = pc.n_kv_heads * hd;
    int seq = step_at(ST_SEQ, int(t));
    int bt_base = st.s[ST_BT] + step_at(ST_BT_START, seq);

    uint qi = pc.q_o + t * pc.q_stride + h * hd;
    for (uint d = tid; d < hd; d += 64u)
        sq[d] = bf[pc.q_b].f[qi + d];
    barrier();

    float m = -1.0 / 0.0, l = 0.0;
    for (uint k = 0u; k < MAXD / 64u; k++)
        g_acc[k] = 0.0;

    for (uint j0 = lo; j0 < hi; j0 += 64u) {
        uint j = j0 + tid;
        float s = -1.0 / 0.0;
        if (j < hi) {
            uint blk = uint(st.s[bt_base + int(j / pc.block_size)]);
            uint slot = blk * pc.block_size + j % pc.block_size;
            sslot[tid] = slot;
            uint kb = pc.kv_k + slot * width + kvh * hd;
            float dot_qk = 0.0;
            for (uint d = 0u; d < hd; d++)
                dot_qk += sq[d] * kv_load(pc.kv_b, kb + d);
            s = dot_qk * pc.scale;
            if (pc.softcap > 0.0)
                s = pc.softcap * slm_tanh(s / pc.softcap);
        }
        float m_new = max(m, reduce_max(s));
        float p = j < hi ? exp(s - m_new) : 0.0;
        sp[tid] = p;
        float corr = exp(m - m_new); // exp(-inf) = 0 on the first tile
        l = l * corr + reduce_sum(p); // reduce_sum's barriers also publish sp and sslot
        uint n = min(64u, hi - j0);
        for (uint k = 0u; k < MAXD / 64u; k++) {
            uint d = tid + 64u * k;
            if (d >= hd)
                break;
            float a = g_acc[k] * corr;
            for (uint c = 0u; c < n; c++)
                a += sp[c] * kv_load(pc.kv_b, pc.kv_v + sslot[c] * width + kvh * hd + d);
            g_acc[k] = a;
        }
        m = m_new;
        barrier(); // sp and sslot are rewritten by the next tile
    }
    g_m = m;
    g_l = l;
}
