// matmul_pc.glsl — the push constants every matrix kernel takes (after
// common.glsl; vk_ops.c fills them in this order). The weight is one part of
// n_out rows (a weight too large for one buffer is dispatched part by part),
// so y and add rows are y_stride apart, and y_o/a_o already point at the
// part's first output column.
layout(push_constant) uniform PC {
    uint w_b, w_o, row_bytes, cols, n_out;
    uint x_b, x_o, y_b, y_o, a_b, a_o, has_add, rows, y_stride;
} pc;
