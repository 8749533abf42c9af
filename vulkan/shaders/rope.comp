#version 450
// rope.comp — rotary position embedding in place on x (n rows, `stride`
// floats apart, n_heads·head_dim used). One thread per (token, head, pair).
// The per-pair inverse frequencies (freq_scale · base^(-2i/n_rot) / factor_i)
// are computed on the host in double once, at load (rope_create), and read
// from a device buffer (block f_b, float offset f_o); the angle is range-reduced to [-π, π] before cos/sin, whose precision the
// Vulkan spec bounds only there.
#include "common.glsl"

layout(local_size_x = 64) in;

layout(push_constant) uniform PC {
    uint x_b, x_o, stride, n_heads, head_dim, half_rot, neox, f_b, f_o;
} pc;

void main()
{
    uint g = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (g >= pc.n_heads * pc.half_rot)
        return;
    uint h = g / pc.half_rot, i = g % pc.half_rot;
    float theta = float(step_at(ST_POS, int(t))) * bf[pc.f_b].f[pc.f_o + i];
    // 2π = C1 + C2 with C1 exact in 8 bits, so k·C1 is exact for k < 2^16.
    float k = round(theta * 0.15915494309189535);
    float r = (theta - k * 6.28125) - k * 0.0019353071795864769;
    float c = cos(r), s = sin(r);
    uint base = pc.x_o + t * pc.stride + h * pc.head_dim;
    uint a = pc.neox != 0u ? base + i : base + 2u * i;
    uint b = pc.neox != 0u ? a + pc.half_rot : a + 1u;
    float x0 = bf[pc.x_b].f[a], x1 = bf[pc.x_b].f[b];
    bf[pc.x_b].f[a] = x0 * c - x1 * s;
    bf[pc.x_b].f[b] = x0 * s + x1 * c;
}
