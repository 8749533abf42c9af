#version 450
// attention.comp — fused causal attention over the paged KV cache: one
// workgroup per (query head, token) covers positions first_pos..pos (0..pos
// without a sliding window) and writes the normalized output (the core is
// attention_body.glsl).
#include "attention_body.glsl"

void main()
{
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, hd = pc.head_dim;
    attend(h, t, first_pos(t), uint(step_at(ST_POS, int(t))) + 1u);
    uint oi = pc.o_o + t * pc.n_heads * hd + h * hd;
    for (uint k = 0u; k < MAXD / 64u; k++) {
        uint d = gl_LocalInvocationID.x + 64u * k;
        if (d < hd)
            bf[pc.o_b].f[oi + d] = g_acc[k] / g_l;
    }
}
