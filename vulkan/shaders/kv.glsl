// kv.glsl — reading and writing the paged KV pool. The pool stores K or V
// element e of layer-local token slot s, head h at index
// (s · n_kv_heads + h) · head_dim + d from the region's start; KV_F16
// (specialization constant 1) selects f16 pairs packed in uints, else f32.
// head_dim is even and regions start at even indices, so a pair never
// straddles two uints.

layout(constant_id = 1) const uint KV_F16 = 0;

float kv_load(uint b, uint idx)
{
    if (KV_F16 != 0u) {
        vec2 p = unpackHalf2x16(bu[b].u[idx >> 1]);
        return (idx & 1u) != 0u ? p.y : p.x;
    }
    return bf[b].f[idx];
}

// Stores the pair (idx, idx + 1); idx is even.
void kv_store_pair(uint b, uint idx, vec2 v)
{
    if (KV_F16 != 0u) {
        bu[b].u[idx >> 1] = packHalf2x16(v);
    } else {
        bf[b].f[idx] = v.x;
        bf[b].f[idx + 1u] = v.y;
    }
}
