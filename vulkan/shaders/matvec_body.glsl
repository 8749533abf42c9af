// matvec_body.glsl — y(t, o) = x(t, :) · W(o, :) (+ add(t, o)) with one
// workgroup per output element: 64 threads stride over the row in 32-element
// sub-blocks, each dequantized at once in registers (deq32), then reduce
// (reduce64 is defined by the including shader: subgroup or shared memory).
// The GPU decode path (few rows).
#include "common.glsl"
#include "deq.glsl"
#include "deq32.glsl"
#include "xload.glsl"

layout(local_size_x = 64) in;

#include "matmul_pc.glsl"

float reduce64(float v);

void main()
{
    uint o = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint t = gl_WorkGroupID.z;
    if (o >= pc.n_out)
        return; // uniform across the workgroup: no barrier is skipped by some threads only
    uint row = pc.w_o + o * pc.row_bytes;
    uint xr = pc.x_o + t * pc.cols;
    float s = 0.0;
    for (uint j = gl_LocalInvocationID.x; j < (pc.cols + 31u) / 32u; j += 64u) {
        vec4 wv[8], xv[8];
        deq32(pc.w_b, row, j, pc.cols, wv);
        load_x32(pc.x_b, xr + 32u * j, pc.cols - 32u * j, xv);
        s += dot32(wv, xv);
    }
    s = reduce64(s);
    if (gl_LocalInvocationID.x == 0u) {
        uint yi = t * pc.y_stride + o;
        if (pc.has_add != 0u)
            s += bf[pc.a_b].f[pc.a_o + yi];
        bf[pc.y_b].f[pc.y_o + yi] = s;
    }
}
