/*
 * server_parse.h — the strict HTTP/1.1 request parser of `slm serve`, as
 * pure functions over bytes (no sockets, no allocation), so that
 * tests/test_server_parse.c can feed it any framing, whole or byte by byte.
 *
 * slm_http_parse_head looks at everything received so far and says: more
 * bytes needed, a complete head (request line + headers) parsed, or a
 * refusal with its HTTP status. It refuses as early as the bytes allow
 * (garbage on the first byte, an over-long target while the request line is
 * still arriving), because a server that waits for "\r\n\r\n" before
 * judging lets garbage and slow clients hold a connection.
 * The chunked decoder (slm_http_chunked_feed) is a state machine, so the
 * body may arrive in any pieces.
 *
 * What it refuses (RFC 9110/9112, the smuggling-relevant parts strictly):
 * non-token methods, targets that are not origin-form, control bytes,
 * obs-fold, whitespace before a colon, bare LF, duplicate Content-Length,
 * Content-Length with Transfer-Encoding (400); Transfer-Encoding other
 * than exactly "chunked" (501); an Expect other than 100-continue (417);
 * versions other than HTTP/1.0 and 1.1 (505); a target over max_uri (414);
 * a head over max_header (431).
 */
#ifndef SLM_SERVER_PARSE_H
#define SLM_SERVER_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct slm_http_limits {
    size_t max_header; /* bytes of request line + headers + the empty line */
    size_t max_uri;    /* bytes of the request target */
} slm_http_limits;

/* A refusal: the status to answer and why, for the error body. */
typedef struct slm_http_error {
    int status;
    char message[160];
} slm_http_error;

/* A parsed head. Pointers point into the buffer given to the parser and
 * live as long as those bytes do. */
typedef struct slm_http_head {
    char method[16];
    const char *target;      /* origin-form, e.g. "/v1/models?x=1" */
    size_t target_len;
    size_t path_len;         /* the target up to '?' */
    int minor;               /* HTTP/1.<minor>: 0 or 1 */
    int64_t content_length;  /* -1: none */
    bool chunked;            /* Transfer-Encoding: chunked */
    bool keep_alive;         /* the version's default, changed by Connection */
    bool expect_continue;    /* Expect: 100-continue */
    const char *auth;        /* the Authorization value (trimmed), or NULL */
    size_t auth_len;
    size_t len;              /* bytes of the head, "\r\n\r\n" included */
} slm_http_head;

typedef enum {
    SLM_HTTP_BAD = -1,  /* *err says why; the connection cannot continue */
    SLM_HTTP_MORE = 0,  /* a valid prefix: wait for more bytes */
    SLM_HTTP_DONE = 1   /* *h holds the head */
} slm_http_result;

/* Parses the head at the start of buf[0..n). Empty lines before a request
 * line are skipped, as RFC 9112 allows (they count in h->len). Feeding the
 * same bytes in any number of pieces gives the same answer at the end. */
slm_http_result slm_http_parse_head(const char *buf, size_t n, const slm_http_limits *lim,
                                    slm_http_head *h, slm_http_error *err);

/* The chunked body decoder; zero it before the first feed. */
typedef struct slm_http_chunked {
    int state;
    uint64_t left;    /* data bytes left in the current chunk */
    size_t line;      /* bytes of the current size/extension/trailer line */
    int digits;
    uint64_t total;   /* body bytes decoded so far */
} slm_http_chunked;

/* Decodes in[0..n): body bytes are written to out (which has room for n
 * bytes; the body is never longer than its encoding) and *out_len says
 * how many. Returns the bytes of `in` consumed (all of them, unless the
 * body ended earlier: what follows belongs to the next request), or -1
 * with *err filled (400 for bad framing, 413 once the body passes
 * max_body). *done is set when the last chunk and trailers are in. */
long slm_http_chunked_feed(slm_http_chunked *c, const char *in, size_t n, char *out,
                           size_t *out_len, uint64_t max_body, bool *done,
                           slm_http_error *err);

/* True when c is a token character (RFC 9110 tchar). */
bool slm_http_tchar(unsigned char c);

#endif
