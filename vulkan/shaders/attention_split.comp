#version 450
// attention_split.comp — the first half of split-K ("flash decoding")
// attention for steps with few tokens and long contexts: workgroup
// (h, t, s) attends to positions [b + s·chunk, min(b + (s+1)·chunk, pos+1))
// where b = first_pos(t), the start of its sliding window (0 without one):
// the chunks tile the window only, so no workgroup reads the blocks wholly
// before it. Each writes its partial (m, l, Σ p·v) to the workspace at
// o_b/o_o, laid out [token][head][split][head_dim + 2]. An empty chunk
// writes m = -inf, l = 0. attention_merge.comp combines the splits.
#include "attention_body.glsl"

void main()
{
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, s = gl_WorkGroupID.z, hd = pc.head_dim;
    uint hi = uint(step_at(ST_POS, int(t))) + 1u;
    uint lo = min(first_pos(t) + s * pc.chunk, hi);
    hi = min(lo + pc.chunk, hi);
    attend(h, t, lo, hi); // an empty range leaves m = -inf, l = 0, acc = 0
    uint w = pc.o_o + ((t * pc.n_heads + h) * pc.n_split + s) * (hd + 2u);
    if (gl_LocalInvocationID.x == 0u) {
        bf[pc.o_b].f[w] = g_m;
        bf[pc.o_b].f[w + 1u] = g_l;
    }
    for (uint k = 0u; k < MAXD / 64u; k++) {
        uint d = gl_LocalInvocationID.x + 64u * k;
        if (d < hd)
            bf[pc.o_b].f[w + 2u + d] = g_acc[k];
    }
}
