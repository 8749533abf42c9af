#version 450
// get_rows.comp — y(r, :) = x(logit_rows[r], :), rows d floats wide.
#include "common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC { uint x_b, x_o, d, y_b, y_o; } pc;

void main()
{
    uint i = gl_GlobalInvocationID.x, r = gl_GlobalInvocationID.y;
    if (i >= pc.d)
        return;
    uint src = uint(step_at(ST_LOGIT, int(r)));
    bf[pc.y_b].f[pc.y_o + r * pc.d + i] = bf[pc.x_b].f[pc.x_o + src * pc.d + i];
}
