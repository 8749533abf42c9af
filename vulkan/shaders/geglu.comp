#version 450
// geglu.comp — y(r, i) = gelu_tanh(g(r, i)) · u(r, i) (Gemma's GeGLU), g and
// u rows `stride` floats apart, y dense (rows, ff). One thread per element;
// the push constants are swiglu.comp's.
#include "common.glsl"
#include "act.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC { uint g_b, g_o, u_b, u_o, stride, ff, y_b, y_o; } pc;

void main()
{
    uint i = gl_GlobalInvocationID.x, r = gl_GlobalInvocationID.y;
    if (i >= pc.ff)
        return;
    float g = bf[pc.g_b].f[pc.g_o + r * pc.stride + i];
    float u = bf[pc.u_b].f[pc.u_o + r * pc.stride + i];
    bf[pc.y_b].f[pc.y_o + r * pc.ff + i] = slm_gelu_tanh(g) * u;
}
