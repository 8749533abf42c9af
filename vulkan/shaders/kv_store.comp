#version 450
// kv_store.comp — writes the step's K and V rows (n_kv_heads·head_dim
// floats each, k_stride / v_stride apart) into their token slots of one
// layer of the paged pool. One thread per (token, element pair).
#include "common.glsl"
#include "kv.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    uint k_b, k_o, k_stride, v_b, v_o, v_stride;
    uint kv_b, kv_k, kv_v, width;
} pc;

void main()
{
    uint p = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (2u * p >= pc.width)
        return;
    uint slot = uint(step_at(ST_SLOT, int(t)));
    uint e = 2u * p;
    uint dst = slot * pc.width + e;
    uint ks = pc.k_o + t * pc.k_stride + e, vs = pc.v_o + t * pc.v_stride + e;
    kv_store_pair(pc.kv_b, pc.kv_k + dst, vec2(bf[pc.k_b].f[ks], bf[pc.k_b].f[ks + 1u]));
    kv_store_pair(pc.kv_b, pc.kv_v + dst, vec2(bf[pc.v_b].f[vs], bf[pc.v_b].f[vs + 1u]));
}
