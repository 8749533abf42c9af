// deq.glsl — dequantizing one element of a weight stored as raw GGUF rows
// (layouts: ../shared/gguf-facts.md §3, runtime/quant_blocks.h). The weight
// type is specialization constant 0, so each pipeline compiles one branch.
// Blocks are only 2-byte aligned, so every field is read from the uint view
// by byte address: 16-bit fields never straddle a uint (they sit at even
// addresses), 32-bit ones (Q5_0/Q5_1 qh) are read as two halves.

layout(constant_id = 0) const uint TYPE = 0;

#define T_F32 0u
#define T_F16 1u
#define T_Q4_0 2u
#define T_Q4_1 3u
#define T_Q5_0 6u
#define T_Q5_1 7u
#define T_Q8_0 8u
#define T_Q2_K 10u
#define T_Q3_K 11u
#define T_Q4_K 12u
#define T_Q5_K 13u
#define T_Q6_K 14u
#define T_IQ4_NL 20u
#define T_IQ4_XS 23u
#define T_BF16 30u

const int IQ4NL[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
                              89, 113);

// Elements and bytes per block of TYPE (folded at pipeline creation).
uint type_qk()
{
    if (TYPE == T_F32 || TYPE == T_F16 || TYPE == T_BF16) return 1u;
    if (TYPE == T_Q2_K || TYPE == T_Q3_K || TYPE == T_Q4_K || TYPE == T_Q5_K ||
        TYPE == T_Q6_K || TYPE == T_IQ4_XS) return 256u;
    return 32u;
}

uint type_bytes()
{
    switch (TYPE) {
    case T_F32: return 4u;
    case T_F16: return 2u;
    case T_BF16: return 2u;
    case T_Q4_0: return 18u;
    case T_Q4_1: return 20u;
    case T_Q5_0: return 22u;
    case T_Q5_1: return 24u;
    case T_Q8_0: return 34u;
    case T_IQ4_NL: return 18u;
    case T_Q2_K: return 84u;
    case T_Q3_K: return 110u;
    case T_Q4_K: return 144u;
    case T_Q5_K: return 176u;
    case T_Q6_K: return 210u;
    default: return 136u; // IQ4_XS
    }
}

uint rd8(uint b, uint a) { return (bu[b].u[a >> 2] >> ((a & 3u) * 8u)) & 0xffu; }
uint rd16(uint b, uint a) { return (bu[b].u[a >> 2] >> ((a & 2u) * 8u)) & 0xffffu; }
uint rd32(uint b, uint a) { return rd16(b, a) | (rd16(b, a + 2u) << 16); }
float h2f(uint h) { return unpackHalf2x16(h).x; }
int sext8(uint v) { return int(v << 24) >> 24; }

// Nibble of element e (0..31) of a legacy 32-block whose qs start at q:
// low nibbles are elements 0..15, high nibbles 16..31.
uint nib32(uint b, uint q, uint e)
{
    uint v = rd8(b, q + (e & 15u));
    return e < 16u ? (v & 15u) : (v >> 4);
}

// Q4_K/Q5_K packed 6-bit scale (x) and min (y) of sub-block j at s.
uvec2 k_scale_min(uint b, uint s, uint j)
{
    if (j < 4u)
        return uvec2(rd8(b, s + j) & 63u, rd8(b, s + j + 4u) & 63u);
    uint hi = rd8(b, s + j + 4u);
    return uvec2((hi & 15u) | ((rd8(b, s + j - 4u) >> 6) << 4),
                 (hi >> 4) | ((rd8(b, s + j) >> 6) << 4));
}

// Q4_K/Q5_K low nibble of element e (0..255) with qs at q.
uint k_nib(uint b, uint q, uint e)
{
    uint c = e >> 6, r = e & 63u;
    uint v = rd8(b, q + 32u * c + (r & 31u));
    return r < 32u ? (v & 15u) : (v >> 4);
}

// Value of element e (0 <= e < type_qk()) of the block at byte address bb of
// memory block b.
float deq(uint b, uint bb, uint e)
{
    switch (TYPE) {
    case T_F32:
        return uintBitsToFloat(bu[b].u[bb >> 2]);
    case T_F16:
        return h2f(rd16(b, bb));
    case T_BF16:
        return uintBitsToFloat(rd16(b, bb) << 16);
    case T_Q4_0:
        return h2f(rd16(b, bb)) * (float(nib32(b, bb + 2u, e)) - 8.0);
    case T_Q4_1:
        return h2f(rd16(b, bb)) * float(nib32(b, bb + 4u, e)) + h2f(rd16(b, bb + 2u));
    case T_Q5_0: {
        uint q = nib32(b, bb + 6u, e) | (((rd32(b, bb + 2u) >> e) & 1u) << 4);
        return h2f(rd16(b, bb)) * (float(q) - 16.0);
    }
    case T_Q5_1: {
        uint q = nib32(b, bb + 8u, e) | (((rd32(b, bb + 4u) >> e) & 1u) << 4);
        return h2f(rd16(b, bb)) * float(q) + h2f(rd16(b, bb + 2u));
    }
    case T_Q8_0:
        return h2f(rd16(b, bb)) * float(sext8(rd8(b, bb + 2u + e)));
    case T_IQ4_NL:
        return h2f(rd16(b, bb)) * float(IQ4NL[nib32(b, bb + 2u, e)]);
    case T_Q2_K: {
        uint sc = rd8(b, bb + e / 16u);
        uint q = (rd8(b, bb + 16u + 32u * (e >> 7) + (e & 31u)) >> (2u * ((e & 127u) >> 5))) & 3u;
        return h2f(rd16(b, bb + 80u)) * float(sc & 15u) * float(q) -
               h2f(rd16(b, bb + 82u)) * float(sc >> 4);
    }
    case T_Q3_K: {
        uint q2 = (rd8(b, bb + 32u + 32u * (e >> 7) + (e & 31u)) >> (2u * ((e & 127u) >> 5))) & 3u;
        uint hbit = (rd8(b, bb + (e & 31u)) >> (e >> 5)) & 1u;
        uint j = e / 16u;
        uint s = bb + 96u;
        uint lo = j < 8u ? (rd8(b, s + j) & 15u) : (rd8(b, s + j - 8u) >> 4);
        uint hi = (rd8(b, s + 8u + (j & 3u)) >> (2u * (j >> 2))) & 3u;
        int sc = int(lo | (hi << 4)) - 32;
        int q3 = int(q2) + 4 * int(hbit) - 4;
        return h2f(rd16(b, bb + 108u)) * float(sc) * float(q3);
    }
    case T_Q4_K: {
        uvec2 sm = k_scale_min(b, bb + 4u, e >> 5);
        return h2f(rd16(b, bb)) * float(sm.x) * float(k_nib(b, bb + 16u, e)) -
               h2f(rd16(b, bb + 2u)) * float(sm.y);
    }
    case T_Q5_K: {
        uvec2 sm = k_scale_min(b, bb + 4u, e >> 5);
        uint q = k_nib(b, bb + 48u, e) | (((rd8(b, bb + 16u + (e & 31u)) >> (e >> 5)) & 1u) << 4);
        return h2f(rd16(b, bb)) * float(sm.x) * float(q) - h2f(rd16(b, bb + 2u)) * float(sm.y);
    }
    case T_Q6_K: {
        uint h = e >> 7, r = e & 127u, k = r >> 5, l = r & 31u;
        uint ql = rd8(b, bb + 64u * h + 32u * (k & 1u) + l);
        uint lo = k < 2u ? (ql & 15u) : (ql >> 4);
        uint hi = (rd8(b, bb + 128u + 32u * h + l) >> (2u * k)) & 3u;
        int q = int(lo | (hi << 4)) - 32;
        return h2f(rd16(b, bb + 208u)) * float(sext8(rd8(b, bb + 192u + e / 16u))) * float(q);
    }
    default: { // IQ4_XS
        uint ib = e >> 5;
        uint ls = ((rd8(b, bb + 4u + ib / 2u) >> (4u * (ib & 1u))) & 15u) |
                  (((rd16(b, bb + 2u) >> (2u * ib)) & 3u) << 4);
        uint r = e & 31u;
        uint v = rd8(b, bb + 8u + 16u * ib + (r & 15u));
        uint n = r < 16u ? (v & 15u) : (v >> 4);
        return h2f(rd16(b, bb)) * float(int(ls) - 32) * float(IQ4NL[n]);
    }
    }
}

// Element c of the weight row that starts at byte address row.
float deq_at(uint b, uint row, uint c)
{
    uint qk = type_qk();
    return deq(b, row + (c / qk) * type_bytes(), c % qk);
}
