#version 450
// matvec.comp — matrix-vector product for devices without subgroup
// arithmetic: the 64 partial sums are reduced by a shared-memory tree.
#include "matvec_body.glsl"

shared float red[64];

float reduce64(float v)
{
    uint i = gl_LocalInvocationID.x;
    red[i] = v;
    barrier();
    for (uint h = 32u; h > 0u; h >>= 1) {
        if (i < h)
            red[i] += red[i + h];
        barrier();
    }
    return red[0];
}
