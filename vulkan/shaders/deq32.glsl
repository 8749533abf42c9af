// deq32.glsl — dequantizing 32 consecutive weights at once (included after
// deq.glsl): sub-block j of a row is elements 32j..32j+31, returned as eight
// vec4 (v[i] = elements 4i..4i+3). Each block's scales are read once and its
// quants as whole 32-bit words (four nibbles or bytes per load), where the
// per-element deq() reads one byte and the scales again for every element;
// the matrix kernels use this, embed and get_rows keep deq().
//
// Alignment: weights start 64-byte aligned (VK_ALLOC_ALIGN), so blocks whose
// size is a multiple of 4 (Q4_1, Q5_1, the K types but Q3_K/Q6_K, IQ4_XS)
// have every 32-bit field aligned; the others are 2-byte aligned and read
// words through ld32u/ld128u, which splice two aligned loads.

uint ld32(uint b, uint a) { return bu[b].u[a >> 2]; }

// 32 bits at the even byte address a.
uint ld32u(uint b, uint a)
{
    uint i = a >> 2, lo = bu[b].u[i];
    return (a & 2u) == 0u ? lo : (lo >> 16) | (bu[b].u[i + 1u] << 16);
}

// 16 bytes at address a (aligned: 4 loads) or at an even address (5 loads).
uvec4 ld128(uint b, uint a)
{
    uint i = a >> 2;
    return uvec4(bu[b].u[i], bu[b].u[i + 1u], bu[b].u[i + 2u], bu[b].u[i + 3u]);
}

uvec4 ld128u(uint b, uint a)
{
    uvec4 w = ld128(b, a);
    if ((a & 2u) == 0u)
        return w;
    uint w4 = bu[b].u[(a >> 2) + 4u];
    return uvec4((w.x >> 16) | (w.y << 16), (w.y >> 16) | (w.z << 16),
                 (w.z >> 16) | (w.w << 16), (w.w >> 16) | (w4 << 16));
}

// The four bytes of w, each shifted right by s and masked.
uvec4 bytes_of(uint w) { return uvec4(w, w >> 8, w >> 16, w >> 24) & 255u; }
vec4 field4(uint w, uint s, uint mask) { return vec4((bytes_of(w) >> s) & mask); }
vec4 nib_lo(uint w) { return field4(w, 0u, 15u); }
vec4 nib_hi(uint w) { return field4(w, 4u, 15u); }
// Bits s..s+3 of qh, one per element.
vec4 bits4(uint qh, uint s) { return vec4((uvec4(qh) >> (uvec4(0u, 1u, 2u, 3u) + s)) & 1u); }
vec4 sbytes(uint w) { return vec4(ivec4(uvec4(w << 24, w << 16, w << 8, w)) >> 24); }
vec4 iq4(uvec4 n) { return vec4(IQ4NL[n.x], IQ4NL[n.y], IQ4NL[n.z], IQ4NL[n.w]); }
vec4 iq4_lo(uint w) { return iq4(bytes_of(w) & 15u); }
vec4 iq4_hi(uint w) { return iq4(bytes_of(w) >> 4); }

// Elements of a 1-element-block type (F32, F16, BF16): c0.. of the row,
// zero past cols.
void deq32_plain(uint b, uint row, uint c0, uint cols, out vec4 v[8])
{
    for (uint i = 0u; i < 8u; i++) {
        vec4 r = vec4(0.0);
        for (uint k = 0u; k < 4u; k++) {
            uint c = c0 + 4u * i + k;
            if (c < cols)
                r[k] = deq(b, row + c * type_bytes(), 0u);
        }
        v[i] = r;
    }
}

void deq32(uint b, uint row, uint j, uint cols, out vec4 v[8])
{
    if (type_qk() == 1u) {
        deq32_plain(b, row, 32u * j, cols, v);
        return;
    }
    uint qk = type_qk();
    uint bb = row + (32u * j / qk) * type_bytes(); // the block
    uint s = (32u * j % qk) / 32u;                 // sub-block in it (K types)
    switch (TYPE) {
    case T_Q4_0:
    case T_IQ4_NL: {
        float d = h2f(rd16(b, bb));
        uvec4 q = ld128u(b, bb + 2u);
        for (uint k = 0u; k < 4u; k++) {
            if (TYPE == T_Q4_0) {
                v[k] = d * (nib_lo(q[k]) - 8.0);
                v[k + 4u] = d * (nib_hi(q[k]) - 8.0);
            } else {
                v[k] = d * iq4_lo(q[k]);
                v[k + 4u] = d * iq4_hi(q[k]);
            }
        }
        return;
    }
    case T_Q4_1: {
        vec2 dm = unpackHalf2x16(ld32(b, bb));
        uvec4 q = ld128(b, bb + 4u);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = dm.x * nib_lo(q[k]) + dm.y;
            v[k + 4u] = dm.x * nib_hi(q[k]) + dm.y;
        }
        return;
    }
    case T_Q5_0: {
        float d = h2f(rd16(b, bb));
        uint qh = ld32u(b, bb + 2u);
        uvec4 q = ld128u(b, bb + 6u);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = d * (nib_lo(q[k]) + 16.0 * bits4(qh, 4u * k) - 16.0);
            v[k + 4u] = d * (nib_hi(q[k]) + 16.0 * bits4(qh, 16u + 4u * k) - 16.0);
        }
        return;
    }
    case T_Q5_1: {
        vec2 dm = unpackHalf2x16(ld32(b, bb));
        uint qh = ld32(b, bb + 4u);
        uvec4 q = ld128(b, bb + 8u);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = dm.x * (nib_lo(q[k]) + 16.0 * bits4(qh, 4u * k)) + dm.y;
            v[k + 4u] = dm.x * (nib_hi(q[k]) + 16.0 * bits4(qh, 16u + 4u * k)) + dm.y;
        }
        return;
    }
    case T_Q8_0: {
        float d = h2f(rd16(b, bb));
        uvec4 q0 = ld128u(b, bb + 2u), q1 = ld128u(b, bb + 18u);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = d * sbytes(q0[k]);
            v[k + 4u] = d * sbytes(q1[k]);
        }
        return;
    }
    case T_Q2_K: {
        vec2 dm = unpackHalf2x16(ld32(b, bb + 80u));
        uint sc = rd16(b, bb + 2u * s); // scales of elements 0..15 and 16..31
        float a0 = dm.x * float(sc & 15u), m0 = dm.y * float((sc >> 4) & 15u);
        float a1 = dm.x * float((sc >> 8) & 15u), m1 = dm.y * float(sc >> 12);
        uint q = bb + 16u + 32u * (s >> 2), sh = 2u * (s & 3u);
        uvec4 q0 = ld128(b, q), q1 = ld128(b, q + 16u);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = a0 * field4(q0[k], sh, 3u) - m0;
            v[k + 4u] = a1 * field4(q1[k], sh, 3u) - m1;
        }
        return;
    }
    case T_Q3_K: {
        float d = h2f(rd16(b, bb + 108u));
        uint sb = bb + 96u;
        float a[2];
        for (uint h = 0u; h < 2u; h++) {
            uint jj = 2u * s + h;
            uint lo = jj < 8u ? (rd8(b, sb + jj) & 15u) : (rd8(b, sb + jj - 8u) >> 4);
            uint hi = (rd8(b, sb + 8u + (jj & 3u)) >> (2u * (jj >> 2))) & 3u;
            a[h] = d * float(int(lo | (hi << 4)) - 32);
        }
        uint q = bb + 32u + 32u * (s >> 2), sh = 2u * (s & 3u);
        uvec4 q0 = ld128u(b, q), q1 = ld128u(b, q + 16u);
        uvec4 m0 = ld128u(b, bb), m1 = ld128u(b, bb + 16u);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = a[0] * (field4(q0[k], sh, 3u) + 4.0 * field4(m0[k], s, 1u) - 4.0);
            v[k + 4u] = a[1] * (field4(q1[k], sh, 3u) + 4.0 * field4(m1[k], s, 1u) - 4.0);
        }
        return;
    }
    case T_Q4_K:
    case T_Q5_K: {
        vec2 dm = unpackHalf2x16(ld32(b, bb));
        uvec2 sm = k_scale_min(b, bb + 4u, s);
        float a = dm.x * float(sm.x), m = dm.y * float(sm.y);
        uint q = bb + (TYPE == T_Q4_K ? 16u : 48u) + 32u * (s >> 1), sh = 4u * (s & 1u);
        uvec4 q0 = ld128(b, q), q1 = ld128(b, q + 16u);
        if (TYPE == T_Q4_K) {
            for (uint k = 0u; k < 4u; k++) {
                v[k] = a * field4(q0[k], sh, 15u) - m;
                v[k + 4u] = a * field4(q1[k], sh, 15u) - m;
            }
        } else {
            uvec4 h0 = ld128(b, bb + 16u), h1 = ld128(b, bb + 32u);
            for (uint k = 0u; k < 4u; k++) {
                v[k] = a * (field4(q0[k], sh, 15u) + 16.0 * field4(h0[k], s, 1u)) - m;
                v[k + 4u] = a * (field4(q1[k], sh, 15u) + 16.0 * field4(h1[k], s, 1u)) - m;
            }
        }
        return;
    }
    case T_Q6_K: {
        float d = h2f(rd16(b, bb + 208u));
        uint sc = rd16(b, bb + 192u + 2u * s);
        float a0 = d * float(sext8(sc & 255u)), a1 = d * float(sext8(sc >> 8));
        uint h = s >> 2, kk = s & 3u;
        uint ql = bb + 64u * h + 32u * (kk & 1u), lsh = kk < 2u ? 0u : 4u;
        uint qh = bb + 128u + 32u * h, hsh = 2u * kk;
        uvec4 l0 = ld128u(b, ql), l1 = ld128u(b, ql + 16u);
        uvec4 g0 = ld128u(b, qh), g1 = ld128u(b, qh + 16u);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = a0 * (field4(l0[k], lsh, 15u) + 16.0 * field4(g0[k], hsh, 3u) - 32.0);
            v[k + 4u] = a1 * (field4(l1[k], lsh, 15u) + 16.0 * field4(g1[k], hsh, 3u) - 32.0);
        }
        return;
    }
    default: { // IQ4_XS
        float d = h2f(rd16(b, bb));
        uint ls = ((rd8(b, bb + 4u + s / 2u) >> (4u * (s & 1u))) & 15u) |
                  (((rd16(b, bb + 2u) >> (2u * s)) & 3u) << 4);
        float a = d * float(int(ls) - 32);
        uvec4 q = ld128(b, bb + 8u + 16u * s);
        for (uint k = 0u; k < 4u; k++) {
            v[k] = a * iq4_lo(q[k]);
            v[k + 4u] = a * iq4_hi(q[k]);
        }
        return;
    }
    }
}
