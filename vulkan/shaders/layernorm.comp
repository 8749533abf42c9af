#version 450
// layernorm.comp — per row: optionally x += add (the residual stream, in
// place), then y = (x − mean) / sqrt(var + eps) · w (+ b). One workgroup per
// row; the mean, then the variance as the mean of (x − mean)² (two passes:
// no cancellation when the mean is large against the spread), each reduced
// in shared memory in a fixed order. y may equal x: each thread rereads and
// writes only the elements it wrote itself.
#include "common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC {
    uint x_b, x_o, a_b, a_o, has_add, w_b, w_o, b_b, b_o, has_b, y_b, y_o, d;
    float eps;
} pc;

shared float red[256];

// The workgroup's sum of v, in a fixed order (every thread gets it).
float reduce_sum(float v)
{
    uint i0 = gl_LocalInvocationID.x;
    red[i0] = v;
    barrier();
    for (uint h = 128u; h > 0u; h >>= 1) {
        if (i0 < h)
            red[i0] += red[i0 + h];
        barrier();
    }
    float r = red[0];
    barrier(); // red is reused by the next reduction
    return r;
}

void main()
{
    uint r = gl_WorkGroupID.x, i0 = gl_LocalInvocationID.x;
    uint xr = pc.x_o + r * pc.d;
    float s = 0.0;
    for (uint i = i0; i < pc.d; i += 256u) {
        float v = bf[pc.x_b].f[xr + i];
        if (pc.has_add != 0u) {
            v += bf[pc.a_b].f[pc.a_o + r * pc.d + i];
            bf[pc.x_b].f[xr + i] = v;
        }
        s += v;
    }
    float mean = reduce_sum(s) / float(pc.d);
    float ss = 0.0;
    for (uint i = i0; i < pc.d; i += 256u) {
        float v = bf[pc.x_b].f[xr + i] - mean;
        ss += v * v;
    }
    float inv = inversesqrt(reduce_sum(ss) / float(pc.d) + pc.eps);
    for (uint i = i0; i < pc.d; i += 256u) {
        float v = (bf[pc.x_b].f[xr + i] - mean) * inv * bf[pc.w_b].f[pc.w_o + i];
        if (pc.has_b != 0u)
            v += bf[pc.b_b].f[pc.b_o + i];
        bf[pc.y_b].f[pc.y_o + r * pc.d + i] = v;
    }
}
