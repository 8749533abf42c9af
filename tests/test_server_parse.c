/*
 * test_server_parse.c — the strict HTTP/1.1 request parser of `slm serve`
 * (tools/server_parse.c) on its own: well-formed heads and every framing
 * refusal with its status, each request fed whole, byte by byte and in
 * random pieces (the answer must not depend on how the bytes arrived), and
 * chunked bodies decoded across every split.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/server_parse.h"
#include "testutil.h"

static const slm_http_limits lim = {1024, 128};

/* Feeds req as the server does: the buffer grows by pieces, and the parser
 * sees everything so far each time; returns the first non-MORE answer (or
 * MORE at the end). step 0: random piece sizes. */
static slm_http_result feed(const char *req, size_t n, size_t step, slm_http_head *h,
                            slm_http_error *e)
{
    slm_http_result r = SLM_HTTP_MORE;
    for (size_t have = 0; have < n && r == SLM_HTTP_MORE;) {
        size_t k = step ? step : (size_t)tu_int(1, 17);
        have = have + k > n ? n : have + k;
        r = slm_http_parse_head(req, have, &lim, h, e);
    }
    return r;
}

/* The same answer for whole, byte-by-byte and random feeds. */
static slm_http_result parse_all_ways(const char *req, slm_http_head *h, slm_http_error *e)
{
    size_t n = strlen(req);
    slm_http_head h1, h2;
    slm_http_error e1 = {0}, e2 = {0};
    memset(e, 0, sizeof *e);
    slm_http_result r = feed(req, n, n, h, e);
    slm_http_result r1 = feed(req, n, 1, &h1, &e1);
    slm_http_result r2 = feed(req, n, 0, &h2, &e2);
    assert_int_equal(r1, r);
    assert_int_equal(r2, r);
    if (r == SLM_HTTP_BAD) {
        assert_int_equal(e1.status, e->status);
        assert_int_equal(e2.status, e->status);
    }
    if (r == SLM_HTTP_DONE) {
        assert_int_equal(h1.len, h->len);
        assert_int_equal(h1.content_length, h->content_length);
        assert_int_equal(h1.keep_alive, h->keep_alive);
        assert_int_equal(h2.len, h->len);
    }
    return r;
}

static void expect_status(const char *req, int status)
{
    slm_http_head h;
    slm_http_error e;
    slm_http_result r = parse_all_ways(req, &h, &e);
    if (r != SLM_HTTP_BAD || e.status != status)
        fail_msg("%s: got result %d status %d (%s), want %d", req, r, e.status, e.message,
                 status);
    assert_true(e.message[0] != 0);
}

static void test_good_heads(void **state)
{
    (void)state;
    slm_http_head h;
    slm_http_error e;
    const char *req = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\n"
                      "content-length:  12 \r\nAuthorization: bearer k\r\n"
                      "Expect: 100-Continue\r\n\r\n{\"a\":1}";
    assert_int_equal(parse_all_ways(req, &h, &e), SLM_HTTP_DONE);
    assert_string_equal(h.method, "POST");
    assert_int_equal(h.path_len, strlen("/v1/chat/completions"));
    assert_memory_equal(h.target, "/v1/chat/completions?x=1", h.target_len);
    assert_int_equal(h.minor, 1);
    assert_int_equal(h.content_length, 12);
    assert_true(h.keep_alive && h.expect_continue && !h.chunked);
    assert_int_equal(h.auth_len, 8);
    assert_memory_equal(h.auth, "bearer k", 8);
    assert_int_equal(h.len, strstr(req, "{") - req);

    /* HTTP/1.0 closes unless asked; 1.1 keeps alive unless asked. */
    assert_int_equal(parse_all_ways("GET /health HTTP/1.0\r\n\r\n", &h, &e), SLM_HTTP_DONE);
    assert_false(h.keep_alive);
    assert_int_equal(h.content_length, -1);
    assert_int_equal(
        parse_all_ways("GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h, &e),
        SLM_HTTP_DONE);
    assert_true(h.keep_alive);
    assert_int_equal(
        parse_all_ways("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &h, &e),
        SLM_HTTP_DONE);
    assert_false(h.keep_alive);
    /* Empty lines before a request are skipped; chunked is case-blind. */
    assert_int_equal(parse_all_ways("\r\n\r\nPOST /x HTTP/1.1\r\nTransfer-Encoding: Chunked"
                                    "\r\n\r\n", &h, &e),
                     SLM_HTTP_DONE);
    assert_true(h.chunked);
    /* A pipelined second request is not part of the first head. */
    const char *two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    assert_int_equal(slm_http_parse_head(two, strlen(two), &lim, &h, &e), SLM_HTTP_DONE);
    assert_int_equal(h.len, strlen(two) / 2);
    /* A prefix is MORE, never a verdict. */
    assert_int_equal(slm_http_parse_head("GET /health HTTP/1.", 19, &lim, &h, &e),
                     SLM_HTTP_MORE);
}

static void test_refusals(void **state)
{
    (void)state;
    /* smuggling-relevant framing */
    expect_status("POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                  400);
    expect_status("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                  400);
    expect_status("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    expect_status("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    expect_status("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    /* header syntax */
    expect_status("GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\r\nX: a\nY: b\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\nHost: a\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\r\nX: a\rb\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\r\nExpect: something\r\n\r\n", 417);
    /* the request line */
    expect_status("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400); /* TLS hello */
    expect_status("GARBAGE\x01\x02", 400);
    expect_status("GET\x01 /x HTTP/1.1\r\n\r\n", 400);
    expect_status("GET x HTTP/1.1\r\n\r\n", 400);
    expect_status("GET /x\x7f HTTP/1.1\r\n\r\n", 400);
    expect_status("GET  /x HTTP/1.1\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1 \r\n\r\n", 400);
    expect_status("GET /x http/1.1\r\n\r\n", 400);
    expect_status("GET /x HTTP/2.0\r\n\r\n", 505);
    expect_status("GET /x HTTP/1.2\r\n\r\n", 505);
    expect_status("GET /x HTTP/0.9\r\n\r\n", 505);
    expect_status("VERYVERYLONGMETHODNAME /x HTTP/1.1\r\n\r\n", 400);
    /* sizes */
    char uri[400];
    memset(uri, 'a', sizeof uri);
    uri[0] = '/';
    char req[2048];
    snprintf(req, sizeof req, "GET %.*s HTTP/1.1\r\n\r\n", 200, uri);
    expect_status(req, 414);
    char big[2048];
    int n = snprintf(big, sizeof big, "GET /x HTTP/1.1\r\n");
    while (n < 1100)
        n += snprintf(big + n, sizeof big - (size_t)n, "X-Pad: aaaaaaaaaaaaaaaaaaaaaa\r\n");
    snprintf(big + n, sizeof big - (size_t)n, "\r\n");
    expect_status(big, 431);
    /* An endless header without its empty line is refused at the limit,
     * not waited for. */
    big[n] = 0;
    expect_status(big, 431);
}

/* Random bytes never crash the parser and never parse as more than given. */
static void test_random_bytes(void **state)
{
    (void)state;
    char buf[256];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)tu_int(1, (int)sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)tu_int(0, 255);
        if (round % 3 == 0)
            memcpy(buf, "GET / HTTP/1.1\r\n", n < 16 ? n : 16);
        slm_http_head h;
        slm_http_error e;
        slm_http_result r = slm_http_parse_head(buf, n, &lim, &h, &e);
        if (r == SLM_HTTP_DONE)
            assert_true(h.len <= n);
        if (r == SLM_HTTP_BAD)
            assert_true(e.status >= 400 && e.status < 600);
    }
}

/* Decodes enc in pieces of `step` bytes (0: random); returns the status of
 * a refusal, or 0 with the body in out and the bytes used in *used. */
static int dechunk(const char *enc, size_t step, char *out, size_t *out_len, size_t *used,
                   uint64_t max_body)
{
    slm_http_chunked c = {0};
    size_t n = strlen(enc), at = 0;
    *out_len = 0;
    bool done = false;
    while (at < n && !done) {
        size_t k = step ? step : (size_t)tu_int(1, 9);
        if (k > n - at)
            k = n - at;
        char tmp[512];
        size_t got = 0;
        slm_http_error e;
        long used_now = slm_http_chunked_feed(&c, enc + at, k, tmp, &got, max_body, &done, &e);
        if (used_now < 0)
            return e.status;
        memcpy(out + *out_len, tmp, got);
        *out_len += got;
        at += (size_t)used_now;
        if (!done)
            assert_int_equal(used_now, (long)k);
    }
    *used = at;
    return done ? 0 : -1;
}

static void test_chunked(void **state)
{
    (void)state;
    const char *enc = "7\r\n{\"a\":1 \r\n3;ext=1\r\n, 2\r\n1a\r\nbcdefghijklmnopqrstuvwxyz}\r\n"
                      "0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1";
    const char *want = "{\"a\":1 , 2bcdefghijklmnopqrstuvwxyz}";
    for (size_t step = 0; step < 12; step++) {
        char out[256];
        size_t len, used;
        assert_int_equal(dechunk(enc, step, out, &len, &used, 1000), 0);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(out, want, len);
        /* the next request is left alone */
        assert_string_equal(enc + used, "GET / HTTP/1.1");
    }
    char out[256];
    size_t len, used;
    assert_int_equal(dechunk("5\r\nabc\r\n", 1, out, &len, &used, 100), -1); /* unfinished */
    assert_int_equal(dechunk("5\r\nabcdefg\r\n0\r\n\r\n", 0, out, &len, &used, 100), 400);
    assert_int_equal(dechunk("x\r\n", 0, out, &len, &used, 100), 400);
    assert_int_equal(dechunk("5\nabcde\r\n0\r\n\r\n", 0, out, &len, &used, 100), 400);
    assert_int_equal(dechunk("\r\n", 0, out, &len, &used, 100), 400);
    assert_int_equal(dechunk("65\r\n", 0, out, &len, &used, 100), 413); /* 101 > 100 */
    assert_int_equal(dechunk("ffffffffffffffffff\r\n", 0, out, &len, &used, 100), 413);
    assert_int_equal(dechunk("32\r\n", 1, out, &len, &used, 100), -1); /* 50: fine so far */
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_heads),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_chunked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
