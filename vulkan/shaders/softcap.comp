#version 450
// softcap.comp — x[i] = cap·tanh(x[i]/cap) in place for i < count (final
// logit soft-capping).
#include "common.glsl"
#include "act.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform PC { uint x_b, x_o, count; float cap; } pc;

void main()
{
    uint i = flat_id(256u);
    if (i < pc.count)
        bf[pc.x_b].f[pc.x_o + i] = pc.cap * slm_tanh(bf[pc.x_b].f[pc.x_o + i] / pc.cap);
}
