// matvec_body.glsl — y(t, o) = x(t, :) · W(o, :) (+ add(t, o)) with one
// workgroup per output element: 64 threads stride over the row in 32-element
// units, dequantizing in registers, then reduce (reduce64 is defined by the
// including shader: subgroup or shared memory). The decode path (few rows).
#include "common.glsl"
#include "deq.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    uint w_b, w_o, row_bytes, cols, n_out;
    uint x_b, x_o, y_b, y_o, a_b, a_o, has_add;
} pc;

float reduce64(float v);

void main()
{
    uint o = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint t = gl_WorkGroupID.z;
    if (o >= pc.n_out)
        return; // uniform across the workgroup: no barrier is skipped by some threads only
    uint row = pc.w_o + o * pc.row_bytes;
    uint xr = pc.x_o + t * pc.cols;
    uint qk = type_qk(), bytes = type_bytes();
    float s = 0.0;
    for (uint c0 = gl_LocalInvocationID.x * 32u; c0 < pc.cols; c0 += 64u * 32u) {
        uint end = min(c0 + 32u, pc.cols);
        for (uint c = c0; c < end; c++)
            s += deq(pc.w_b, row + (c / qk) * bytes, c % qk) * bf[pc.x_b].f[xr + c];
    }
    s = reduce64(s);
    if (gl_LocalInvocationID.x == 0u) {
        uint yi = pc.y_o + t * pc.n_out + o;
        if (pc.has_add != 0u)
            s += bf[pc.a_b].f[pc.a_o + t * pc.n_out + o];
        bf[pc.y_b].f[yi] = s;
    }
}
