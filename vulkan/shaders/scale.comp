#version 450
// scale.comp — x[i] *= s for i < count.
#include "common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC { uint x_b, x_o, count; float s; } pc;

void main()
{
    uint i = flat_id(256u);
    if (i < pc.count)
        bf[pc.x_b].f[pc.x_o + i] *= pc.s;
}
