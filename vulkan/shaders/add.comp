#version 450
// add.comp — y[i] = a[i] + b[i] for i < count (y may alias a or b: each
// thread reads its element before writing it).
#include "common.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC { uint a_b, a_o, b_b, b_o, y_b, y_o, count; } pc;

void main()
{
    uint i = flat_id(256u);
    if (i < pc.count)
        bf[pc.y_b].f[pc.y_o + i] = bf[pc.a_b].f[pc.a_o + i] + bf[pc.b_b].f[pc.b_o + i];
}
