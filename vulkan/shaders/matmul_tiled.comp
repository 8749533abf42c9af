#version 450
// matmul_tiled.comp — y(t, o) = x(t, :) · W(o, :) (+ add) for prefill: each
// 16×16 workgroup computes a 16-output × 16-token tile, staging 32-column
// slices of W (dequantized once per tile) and of x in shared memory, so each
// weight element is dequantized once per 16 tokens instead of once per token.
#include "common.glsl"
#include "deq.glsl"

layout(local_size_x = 16, local_size_y = 16) in;

#include "matmul_pc.glsl"

shared float sw[16][33]; // [output][k], padded against bank conflicts
shared float sx[16][33]; // [token][k]

void main()
{
    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    uint tid = ly * 16u + lx;
    uint o0 = gl_WorkGroupID.x * 16u, t0 = gl_WorkGroupID.y * 16u;
    float acc = 0.0;
    for (uint k0 = 0u; k0 < pc.cols; k0 += 32u) {
        for (uint i = tid; i < 512u; i += 256u) {
            uint r = i / 32u, k = i % 32u;
            uint o = o0 + r, t = t0 + r, c = k0 + k;
            sw[r][k] = (o < pc.n_out && c < pc.cols)
                           ? deq_at(pc.w_b, pc.w_o + o * pc.row_bytes, c) : 0.0;
            sx[r][k] = (t < pc.rows && c < pc.cols) ? bf[pc.x_b].f[pc.x_o + t * pc.cols + c] : 0.0;
        }
        barrier();
        for (uint k = 0u; k < 32u; k++)
            acc += sw[lx][k] * sx[ly][k];
        barrier();
    }
    uint o = o0 + lx, t = t0 + ly;
    if (o < pc.n_out && t < pc.rows) {
        if (pc.has_add != 0u)
            acc += bf[pc.a_b].f[pc.a_o + t * pc.y_stride + o];
        bf[pc.y_b].f[pc.y_o + t * pc.y_stride + o] = acc;
    }
}
