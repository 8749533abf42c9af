/*
 * unicode.h — the small amount of Unicode the tokenizers need, without a
 * Unicode database (character classes come from PCRE2 in the BPE
 * pre-tokenizer):
 *   - strict UTF-8 decoding that never reads past the end of its input and
 *     reports malformed input instead of guessing (overlongs, surrogates,
 *     code points above U+10FFFF, truncated and lone continuation bytes);
 *   - the "complete prefix" and lossy sanitizing used by streaming
 *     detokenization, with the same replacement rule as Python's
 *     bytes.decode("utf-8", "replace") and the WHATWG encoding standard:
 *     each maximal invalid subpart becomes one U+FFFD;
 *   - the GPT-2 byte-to-Unicode mapping of byte-level BPE (gguf-facts §5.5).
 * All functions are pure and thread-safe.
 */
#ifndef SLM_UNICODE_H
#define SLM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the UTF-8 sequence starting at s[0] (n >= 1 bytes available).
 * Valid sequence: returns its length (1..4) and sets *cp to the code point.
 * Malformed: sets *cp = -1 and returns the length of the maximal invalid
 * subpart (1..3): a lead byte plus the continuation bytes that were still
 * acceptable, or 1 for a byte that cannot start a sequence. *incomplete is
 * set to 1 when the malformed subpart ran into the end of the input (more
 * bytes could still complete it), else 0. incomplete may be NULL. */
size_t slm_utf8_decode(const uint8_t *s, size_t n, int32_t *cp, int *incomplete);

/* Writes the UTF-8 encoding of cp (<= 0x10FFFF, not a surrogate) into
 * out[0..3] and returns its length; returns 0 for an invalid cp. */
size_t slm_utf8_encode(uint32_t cp, char out[4]);

/* 1 when s[0..n) is entirely valid UTF-8, else 0. */
int slm_utf8_valid(const uint8_t *s, size_t n);

/* Copies s[0..n) to out, replacing each maximal invalid subpart by U+FFFD
 * (EF BF BD). With keep_tail != 0, a malformed subpart that ends the input
 * and could still be completed by more bytes is not written; its length is
 * returned in *tail (so the caller keeps those bytes for later). out must
 * have room for 3 * n bytes. Returns the bytes written. tail may be NULL
 * when keep_tail is 0. */
size_t slm_utf8_sanitize(const uint8_t *s, size_t n, char *out, int keep_tail, size_t *tail);

/* GPT-2 byte-level mapping: the code point standing for byte b. */
uint32_t slm_byte_to_unicode(uint8_t b);

/* Inverse mapping: the byte a code point stands for, or -1 when cp is not
 * one of the 256 mapped code points. */
int slm_unicode_to_byte(uint32_t cp);

#endif
