#version 450
// bias.comp — x[r·stride + c] += b[c] in place, for rows r and the d
// columns of b: a projection's bias, whose output may be a column range of a
// fused matmul (stride >= d). One thread per element.
#include "common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC { uint x_b, x_o, stride, b_b, b_o, d; } pc;

void main()
{
    uint c = gl_GlobalInvocationID.x, r = gl_GlobalInvocationID.y;
    if (c < pc.d)
        bf[pc.x_b].f[pc.x_o + r * pc.stride + c] += bf[pc.b_b].f[pc.b_o + c];
}
