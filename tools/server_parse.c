/*
 * server_parse.c — the strict HTTP/1.1 request parser (see server_parse.h).
 * The request line is judged byte by byte as it arrives; the header fields
 * are parsed once the empty line is in, in one pass that also enforces the
 * framing rules (one Content-Length, never with Transfer-Encoding, only
 * "chunked"), because a server and a proxy in front of it that disagree
 * about where a request ends is how requests get smuggled.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server_parse.h"

bool slm_http_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static slm_http_result bad(slm_http_error *err, int status, const char *msg)
{
    err->status = status;
    snprintf(err->message, sizeof err->message, "%s", msg);
    return SLM_HTTP_BAD;
}

/* The version: "HTTP/1.1" or "HTTP/1.0" (505 for another well-formed
 * HTTP/x.y, 400 for anything else). n < 8 judges a prefix. */
static slm_http_result version(const char *v, size_t n, int *minor, slm_http_error *err)
{
    static const char pat[] = "HTTP/d.d";
    for (size_t i = 0; i < n && i < 8; i++) {
        unsigned char c = (unsigned char)v[i];
        bool ok = pat[i] == 'd' ? (c >= '0' && c <= '9') : c == (unsigned char)pat[i];
        if (!ok)
            return bad(err, 400, "malformed HTTP version in the request line");
    }
    if (n < 8)
        return SLM_HTTP_MORE;
    if (n > 8)
        return bad(err, 400, "malformed HTTP version in the request line");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return bad(err, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    *minor = v[7] - '0';
    return SLM_HTTP_DONE;
}

/* Judges the request line, complete or not. On DONE *line_end is the
 * index of its "\r\n". */
static slm_http_result request_line(const char *buf, size_t n, size_t start,
                                    const slm_http_limits *lim, slm_http_head *h,
                                    size_t *line_end, slm_http_error *err)
{
    size_t i = start;
    while (i < n && slm_http_tchar((unsigned char)buf[i]))
        i++;
    if (i - start >= sizeof h->method)
        return bad(err, 400, "the request method is too long");
    if (i == n)
        return SLM_HTTP_MORE;
    if (buf[i] != ' ' || i == start)
        return bad(err, 400, "not an HTTP request (bad request line)");
    memcpy(h->method, buf + start, i - start);
    h->method[i - start] = 0;
    size_t t = ++i;
    while (i < n && (unsigned char)buf[i] > 0x20 && (unsigned char)buf[i] < 0x7f)
        i++;
    if (i - t > lim->max_uri)
        return bad(err, 414, "the request target is too long");
    if (i > t && buf[t] != '/')
        return bad(err, 400, "the request target must be a path starting with '/'");
    if (i == n)
        return SLM_HTTP_MORE;
    if (buf[i] != ' ' || i == t)
        return bad(err, 400, "bad request target (spaces or control bytes)");
    h->target = buf + t;
    h->target_len = i - t;
    const char *q = memchr(h->target, '?', h->target_len);
    h->path_len = q ? (size_t)(q - h->target) : h->target_len;
    size_t v = ++i;
    while (i < n && buf[i] != '\r' && buf[i] != '\n' && i - v <= 8)
        i++;
    slm_http_result r = version(buf + v, i - v, &h->minor, err);
    if (r != SLM_HTTP_DONE && !(r == SLM_HTTP_MORE && i == n))
        return r == SLM_HTTP_MORE ? bad(err, 400, "malformed HTTP version") : r;
    if (r == SLM_HTTP_MORE || i + 1 >= n)
        return i < n && buf[i] == '\n' ? bad(err, 400, "bare LF: lines must end in CRLF")
                                       : SLM_HTTP_MORE;
    if (buf[i] != '\r' || buf[i + 1] != '\n')
        return bad(err, 400, "bare CR or LF: lines must end in CRLF");
    *line_end = i;
    return SLM_HTTP_DONE;
}

static bool ieq(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && !strncasecmp(a, lit, n);
}

/* Does the comma-separated list v hold the token `tok` (any case)? */
static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i > s && ieq(v + s, i - s, tok))
            return true;
        while (i < n && v[i] != ',')
            i++;
    }
    return false;
}

typedef struct seen {
    bool cl, te, conn_close, conn_keep;
} seen;

/* One header field, name and (trimmed) value. */
static slm_http_result field(slm_http_head *h, seen *s, const char *name, size_t nn,
                             const char *v, size_t vn, slm_http_error *err)
{
    if (ieq(name, nn, "content-length")) {
        if (s->cl)
            return bad(err, 400, "more than one Content-Length header");
        s->cl = true;
        if (vn == 0 || vn > 18)
            return bad(err, 400, "bad Content-Length value");
        int64_t x = 0;
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9')
                return bad(err, 400, "bad Content-Length value");
            x = x * 10 + (v[i] - '0');
        }
        h->content_length = x;
    } else if (ieq(name, nn, "transfer-encoding")) {
        if (s->te)
            return bad(err, 400, "more than one Transfer-Encoding header");
        s->te = true;
        if (!ieq(v, vn, "chunked"))
            return bad(err, 501, "only 'Transfer-Encoding: chunked' is supported");
        h->chunked = true;
    } else if (ieq(name, nn, "connection")) {
        s->conn_close |= has_token(v, vn, "close");
        s->conn_keep |= has_token(v, vn, "keep-alive");
    } else if (ieq(name, nn, "expect")) {
        if (!ieq(v, vn, "100-continue"))
            return bad(err, 417, "only 'Expect: 100-continue' is supported");
        h->expect_continue = true;
    } else if (ieq(name, nn, "authorization")) {
        h->auth = v;
        h->auth_len = vn;
    }
    return SLM_HTTP_DONE;
}

/* Parses the header lines in buf[p..end) (end: the start of the final
 * empty line's CRLF). */
static slm_http_result fields(const char *buf, size_t p, size_t end, slm_http_head *h,
                              slm_http_error *err)
{
    seen s = {0};
    while (p < end) {
        const char *line = buf + p;
        const char *cr = memchr(line, '\r', end - p);
        size_t len = (size_t)(cr - line);
        if (memchr(line, '\n', len))
            return bad(err, 400, "bare LF: lines must end in CRLF");
        if (cr[1] != '\n')
            return bad(err, 400, "bare CR in a header");
        if (line[0] == ' ' || line[0] == '\t')
            return bad(err, 400, "folded header lines (obs-fold) are not accepted");
        size_t nn = 0;
        while (nn < len && slm_http_tchar((unsigned char)line[nn]))
            nn++;
        if (nn == 0 || nn == len || line[nn] != ':')
            return bad(err, 400, "bad header line (a name, then ':' with no space before it)");
        size_t vs = nn + 1, ve = len;
        for (size_t i = vs; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return bad(err, 400, "control byte in a header value");
        }
        while (vs < ve && (line[vs] == ' ' || line[vs] == '\t'))
            vs++;
        while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
            ve--;
        slm_http_result r = field(h, &s, line, nn, line + vs, ve - vs, err);
        if (r != SLM_HTTP_DONE)
            return r;
        p += len + 2;
    }
    if (s.cl && s.te)
        return bad(err, 400, "Content-Length together with Transfer-Encoding");
    if (h->chunked && h->minor == 0)
        return bad(err, 400, "Transfer-Encoding in an HTTP/1.0 request");
    h->keep_alive = h->minor == 1 ? !s.conn_close : s.conn_keep && !s.conn_close;
    return SLM_HTTP_DONE;
}

/* Finds "\r\n\r\n" at or after `from` in buf[0..n): the index of its
 * first byte, or n when absent. */
static size_t head_end(const char *buf, size_t n, size_t from)
{
    for (size_t i = from; i + 3 < n; i++) {
        const char *p = memchr(buf + i, '\r', n - 3 - i);
        if (!p)
            return n;
        i = (size_t)(p - buf);
        if (!memcmp(p, "\r\n\r\n", 4))
            return i;
    }
    return n;
}

slm_http_result slm_http_parse_head(const char *buf, size_t n, const slm_http_limits *lim,
                                    slm_http_head *h, slm_http_error *err)
{
    memset(h, 0, sizeof *h);
    h->content_length = -1;
    size_t start = 0;
    while (start + 1 < n && buf[start] == '\r' && buf[start + 1] == '\n')
        start += 2;
    if (start < n && buf[start] == '\n')
        return bad(err, 400, "bare LF: lines must end in CRLF");
    if (start == n || (start + 1 == n && buf[start] == '\r'))
        return n > lim->max_header ? bad(err, 431, "too many empty lines") : SLM_HTTP_MORE;
    size_t line_end = 0;
    slm_http_result r = request_line(buf, n, start, lim, h, &line_end, err);
    if (r == SLM_HTTP_MORE && n > lim->max_header)
        return bad(err, 431, "the request line is too long");
    if (r != SLM_HTTP_DONE)
        return r;
    /* From the request line's own CRLF: the empty line may follow it. */
    size_t end = head_end(buf, n, line_end);
    if (end == n)
        return n > lim->max_header ? bad(err, 431, "the request header is too large")
                                   : SLM_HTTP_MORE;
    h->len = end + 4;
    if (h->len > lim->max_header)
        return bad(err, 431, "the request header is too large");
    return fields(buf, line_end + 2, end + 2, h, err);
}

/* ---- chunked bodies ------------------------------------------------------ */

enum { CK_SIZE, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF, CK_TRAILER,
       CK_TRAILER_LINE, CK_TRAILER_LF, CK_END_LF, CK_DONE };

#define CK_MAX_LINE 4096 /* bytes of a size line with extensions, or a trailer */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long ck_bad(slm_http_error *err, int status, const char *msg)
{
    bad(err, status, msg);
    return -1;
}

long slm_http_chunked_feed(slm_http_chunked *c, const char *in, size_t n, char *out,
                           size_t *out_len, uint64_t max_body, bool *done,
                           slm_http_error *err)
{
    size_t i = 0, o = 0;
    while (i < n && c->state != CK_DONE) {
        char ch = in[i];
        switch (c->state) {
        case CK_SIZE:
            if (hexval(ch) >= 0) {
                if (++c->digits > 15)
                    return ck_bad(err, 413, "chunk size too large");
                c->left = c->left * 16 + (uint64_t)hexval(ch);
            } else if (c->digits && (ch == ';' || ch == ' ' || ch == '\t')) {
                c->state = CK_EXT;
            } else if (c->digits && ch == '\r') {
                c->state = CK_SIZE_LF;
            } else {
                return ck_bad(err, 400, "bad chunk size line");
            }
            i++;
            break;
        case CK_EXT:
            if (++c->line > CK_MAX_LINE)
                return ck_bad(err, 400, "chunk extension too long");
            if (ch == '\n' || ((unsigned char)ch < 0x20 && ch != '\t' && ch != '\r'))
                return ck_bad(err, 400, "bad chunk extension");
            if (ch == '\r')
                c->state = CK_SIZE_LF;
            i++;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return ck_bad(err, 400, "bad chunk size line (no CRLF)");
            i++;
            c->line = 0;
            c->digits = 0;
            if (c->left > max_body || c->total + c->left > max_body)
                return ck_bad(err, 413, "the request body is larger than the limit");
            c->state = c->left ? CK_DATA : CK_TRAILER;
            break;
        case CK_DATA: {
            size_t k = n - i < c->left ? n - i : (size_t)c->left;
            memmove(out + o, in + i, k);
            o += k, i += k;
            c->left -= k;
            c->total += k;
            if (!c->left)
                c->state = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
        case CK_DATA_LF:
            if (ch != (c->state == CK_DATA_CR ? '\r' : '\n'))
                return ck_bad(err, 400, "chunk data not followed by CRLF");
            c->state = c->state == CK_DATA_CR ? CK_DATA_LF : CK_SIZE;
            i++;
            break;
        case CK_TRAILER: /* the start of a trailer line, or the final CRLF */
            c->state = ch == '\r' ? CK_END_LF : CK_TRAILER_LINE;
            if (ch == '\r')
                i++;
            break;
        case CK_TRAILER_LINE:
            if (++c->line > CK_MAX_LINE)
                return ck_bad(err, 400, "trailer too long");
            if (ch == '\n')
                return ck_bad(err, 400, "bare LF in a trailer");
            if (ch == '\r')
                c->state = CK_TRAILER_LF;
            i++;
            break;
        case CK_TRAILER_LF:
        case CK_END_LF:
            if (ch != '\n')
                return ck_bad(err, 400, "bare CR in the chunked body's end");
            c->line = 0;
            c->state = c->state == CK_END_LF ? CK_DONE : CK_TRAILER;
            i++;
            break;
        }
    }
    *out_len = o;
    *done = c->state == CK_DONE;
    return (long)i;
}
