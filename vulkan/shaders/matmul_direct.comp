#version 450
// matmul_direct.comp — y(t, o) = x(t, :) · W(o, :) (+ add) with no shared
// memory and no barriers: each invocation computes a register tile of TM
// outputs × TN tokens, dequantizing 32 weights at a time (deq32) and reusing
// each for TN tokens and each x slice for TM outputs. The matrix kernel for
// CPU implementations of Vulkan (lavapipe), where shared memory costs as
// much as any other load and a barrier is a coroutine switch, so the tiled
// kernel's staging only adds work there; GPUs run matvec and matmul_tiled.
// Grid: x = output groups of TM (64 per workgroup), y = token groups of TN.
#include "common.glsl"
#include "deq.glsl"
#include "deq32.glsl"
#include "xload.glsl"

#define TM 32u
// Tokens per invocation: specialization constant 1 (1 for decode steps).
layout(constant_id = 1) const uint TN = 4u;

layout(local_size_x = 16) in;

#include "matmul_pc.glsl"

void main()
{
    uint o0 = gl_GlobalInvocationID.x * TM;
    uint t0 = gl_WorkGroupID.y * TN;
    if (o0 >= pc.n_out)
        return;
    uint nt = min(TN, pc.rows - t0), nm = min(TM, pc.n_out - o0);
    float acc[TM][TN];
    for (uint m = 0u; m < TM; m++)
        for (uint t = 0u; t < TN; t++)
            acc[m][t] = 0.0;
    uint nsub = (pc.cols + 31u) / 32u;
    for (uint j = 0u; j < nsub; j++) {
        vec4 xv[TN][8];
        for (uint t = 0u; t < TN; t++)
            if (t < nt)
                load_x32(pc.x_b, pc.x_o + (t0 + t) * pc.cols + 32u * j, pc.cols - 32u * j, xv[t]);
        for (uint m = 0u; m < TM; m++) {
            if (m >= nm)
                break;
            vec4 wv[8];
            deq32(pc.w_b, pc.w_o + (o0 + m) * pc.row_bytes, j, pc.cols, wv);
            for (uint t = 0u; t < TN; t++)
                if (t < nt)
                    acc[m][t] += dot32(wv, xv[t]);
        }
    }
    for (uint m = 0u; m < nm; m++) {
        for (uint t = 0u; t < nt; t++) {
            uint yi = (t0 + t) * pc.y_stride + o0 + m;
            float r = acc[m][t];
            if (pc.has_add != 0u)
                r += bf[pc.a_b].f[pc.a_o + yi];
            bf[pc.y_b].f[pc.y_o + yi] = r;
        }
    }
}
