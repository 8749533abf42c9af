#version 450
// attention_merge.comp — the second half of split-K attention: for each
// (head, token), out = Σ_s e^(m_s − M)·acc_s / Σ_s e^(m_s − M)·l_s with
// M = max_s m_s, over the partials attention_split.comp wrote. Splits are
// combined in index order, so the result does not depend on scheduling.
#include "common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    uint w_b, w_o, o_b, o_o, n_heads, head_dim, n_split;
} pc;

void main()
{
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, hd = pc.head_dim;
    uint base = pc.w_o + (t * pc.n_heads + h) * pc.n_split * (hd + 2u);
    float mx = -1.0 / 0.0;
    for (uint s = 0u; s < pc.n_split; s++)
        mx = max(mx, bf[pc.w_b].f[base + s * (hd + 2u)]);
    float l = 0.0;
    for (uint s = 0u; s < pc.n_split; s++) {
        uint w = base + s * (hd + 2u);
        float ms = bf[pc.w_b].f[w];
        if (ms > -1.0 / 0.0)
            l += exp(ms - mx) * bf[pc.w_b].f[w + 1u];
    }
    uint oi = pc.o_o + t * pc.n_heads * hd + h * hd;
    for (uint d = gl_LocalInvocationID.x; d < hd; d += 64u) {
        float a = 0.0;
        for (uint s = 0u; s < pc.n_split; s++) {
            uint w = base + s * (hd + 2u);
            float ms = bf[pc.w_b].f[w];
            if (ms > -1.0 / 0.0)
                a += exp(ms - mx) * bf[pc.w_b].f[w + 2u + d];
        }
        bf[pc.o_b].f[oi + d] = a / l;
    }
}
