#version 450
// gelu.comp — y[i] = 0.5·x[i]·(1 + erf(x[i]/√2)) for i < count, the exact
// GELU (y may equal x: each thread reads its element before writing it).
#include "common.glsl"
#include "act.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC { uint x_b, x_o, y_b, y_o, count; } pc;

void main()
{
    uint i = flat_id(256u);
    if (i < pc.count)
        bf[pc.y_b].f[pc.y_o + i] = slm_gelu_erf(bf[pc.x_b].f[pc.x_o + i]);
}
