/*
 * unicode.c — UTF-8 decoding/sanitizing and the GPT-2 byte-level mapping
 * (see unicode.h for the contracts). The decoder follows the table of
 * well-formed byte sequences in the Unicode standard (§3.9, table 3-7): the
 * second byte's range depends on the lead byte, which is what rules out
 * overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points
 * above U+10FFFF (F4 90..BF) without decoding first and checking later.
 */
#include "unicode.h"

#include <string.h>

/* For a lead byte: the sequence length and the allowed range of the second
 * byte; 0 length for bytes that cannot start a sequence. */
static void lead_info(uint8_t b, size_t *len, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80)
        *len = 1;
    else if (b >= 0xC2 && b <= 0xDF)
        *len = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        *len = 3;
        if (b == 0xE0)
            *lo = 0xA0;
        else if (b == 0xED)
            *hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        *len = 4;
        if (b == 0xF0)
            *lo = 0x90;
        else if (b == 0xF4)
            *hi = 0x8F;
    } else
        *len = 0; /* 80..C1 (continuation, overlong 2-byte lead), F5..FF */
}

size_t slm_utf8_decode(const uint8_t *s, size_t n, int32_t *cp, int *incomplete)
{
    size_t len;
    uint8_t lo, hi;
    if (incomplete)
        *incomplete = 0;
    lead_info(s[0], &len, &lo, &hi);
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    *cp = -1;
    if (len == 0)
        return 1;
    /* Walk the continuation bytes; stop at the first one out of range. */
    size_t i = 1;
    for (; i < len; i++) {
        if (i >= n) {
            if (incomplete)
                *incomplete = 1;
            return i;
        }
        uint8_t c = s[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (c < l || c > h)
            return i;
    }
    uint32_t v = s[0] & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (i = 1; i < len; i++)
        v = (v << 6) | (s[i] & 0x3F);
    *cp = (int32_t)v;
    return len;
}

size_t slm_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

int slm_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        size_t k = slm_utf8_decode(s + i, n - i, &cp, NULL);
        if (cp < 0)
            return 0;
        i += k;
    }
    return 1;
}

size_t slm_utf8_sanitize(const uint8_t *s, size_t n, char *out, int keep_tail, size_t *tail)
{
    size_t i = 0, o = 0;
    if (tail)
        *tail = 0;
    while (i < n) {
        int32_t cp;
        int inc;
        size_t k = slm_utf8_decode(s + i, n - i, &cp, &inc);
        if (cp >= 0) {
            memcpy(out + o, s + i, k);
            o += k;
        } else if (inc && keep_tail) {
            /* Only the end of the input can be incomplete: keep it back. */
            *tail = k;
            return o;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += k;
    }
    return o;
}

uint32_t slm_byte_to_unicode(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0)
        return 0x100u + 33u + (uint32_t)(b - 0x7F);
    return 0x143; /* 0xAD, the last unprintable byte */
}

int slm_unicode_to_byte(uint32_t cp)
{
    if (cp < 0x100) {
        uint8_t b = (uint8_t)cp;
        return slm_byte_to_unicode(b) == cp ? (int)cp : -1;
    }
    if (cp <= 0x120)
        return (int)(cp - 0x100);
    if (cp <= 0x142)
        return (int)(0x7F + (cp - 0x121));
    if (cp == 0x143)
        return 0xAD;
    return -1;
}
