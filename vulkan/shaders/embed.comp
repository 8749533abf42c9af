#version 450
// embed.comp — y(t, c) = row token_ids[t] of the embedding table, dequantized.
// One thread per element; x: columns, y: tokens.
#include "common.glsl"
#include "deq.glsl"

layout(local_size_x = 64) in;

// The table may be split into parts of whole rows (one dispatch each): this
// one holds rows row0 .. row0+n_rows-1, and tokens outside it are left to
// the dispatch of their part.
layout(push_constant) uniform PC { uint w_b, w_o, row_bytes, cols, y_b, y_o, row0, n_rows; } pc;

void main()
{
    uint c = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    uint tok = uint(step_at(ST_TOKENS, int(t))) - pc.row0; // wraps below row0
    if (c >= pc.cols || tok >= pc.n_rows)
        return;
    bf[pc.y_b].f[pc.y_o + t * pc.cols + c] = deq_at(pc.w_b, pc.w_o + tok * pc.row_bytes, c);
}
