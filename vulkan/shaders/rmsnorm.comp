#version 450
// rmsnorm.comp — per row: optionally x += add (the residual stream, in
// place), then y = x / sqrt(mean(x²) + eps) · w. One workgroup per row; the
// sum of squares is reduced in shared memory in a fixed order.
#include "common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    uint x_b, x_o, a_b, a_o, has_add, w_b, w_o, y_b, y_o, d;
    float eps;
} pc;

shared float red[256];

void main()
{
    uint r = gl_WorkGroupID.x, i0 = gl_LocalInvocationID.x;
    uint xr = pc.x_o + r * pc.d;
    float ss = 0.0;
    for (uint i = i0; i < pc.d; i += 256u) {
        float v = bf[pc.x_b].f[xr + i];
        if (pc.has_add != 0u) {
            v += bf[pc.a_b].f[pc.a_o + r * pc.d + i];
            bf[pc.x_b].f[xr + i] = v;
        }
        ss += v * v;
    }
    red[i0] = ss;
    barrier();
    for (uint h = 128u; h > 0u; h >>= 1) {
        if (i0 < h)
            red[i0] += red[i0 + h];
        barrier();
    }
    float inv = inversesqrt(red[0] / float(pc.d) + pc.eps);
    // Each thread rereads only the elements it wrote itself, so no barrier is needed.
    for (uint i = i0; i < pc.d; i += 256u)
        bf[pc.y_b].f[pc.y_o + r * pc.d + i] = bf[pc.x_b].f[xr + i] * inv * bf[pc.w_b].f[pc.w_o + i];
}
