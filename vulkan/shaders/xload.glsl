// xload.glsl — reading 32 consecutive activations x[base .. base+31] of a
// row as eight vec4 for the matrix kernels (after common.glsl). One vec4 load
// where base is 4-aligned and the slice is whole, else element by element
// with zeros past the row's end `left` (elements left from base).

layout(set = 0, binding = 0) readonly buffer BufV4 { vec4 v[]; } bv[MAX_BLOCKS];

void load_x32(uint xb, uint base, uint left, out vec4 xv[8])
{
    if (left >= 32u && (base & 3u) == 0u) {
        for (uint i = 0u; i < 8u; i++)
            xv[i] = bv[xb].v[(base >> 2) + i];
        return;
    }
    for (uint i = 0u; i < 8u; i++) {
        vec4 r = vec4(0.0);
        for (uint k = 0u; k < 4u; k++)
            if (4u * i + k < left)
                r[k] = bf[xb].f[base + 4u * i + k];
        xv[i] = r;
    }
}

// Σ w·x over the 32 elements.
float dot32(vec4 w[8], vec4 x[8])
{
    vec4 s = w[0] * x[0];
    for (uint i = 1u; i < 8u; i++)
        s += w[i] * x[i];
    return (s.x + s.y) + (s.z + s.w);
}
