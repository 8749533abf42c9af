/*
 * server_loop.c — the connections of `slm serve`: one thread runs an epoll
 * loop that owns every socket (non-blocking, level-triggered, no
 * FD_SETSIZE cap), reads and frames requests with the strict parser of
 * server_parse.c, and writes every answer. Work that may take long (a
 * generation request's parse, tokenisation and submit) runs on a small
 * worker pool (server_pool.c) and comes back through a locked list and an
 * eventfd; engine callbacks wake the loop the same way (server_job.c), and
 * the loop then frames the new output. No thread is held per connection or
 * per streamed response, so idle and slow connections cost a few hundred
 * bytes each.
 *
 * One connection is a state machine: HEAD (reading a request head: an idle
 * deadline while empty, then a header deadline from its first byte that
 * later bytes do not extend) → BODY (a body deadline from the end of the
 * head) → BUSY (a worker has the request) → GEN (a job streams or
 * computes) → WRITE (the last bytes of the answer) → HEAD again for the
 * next, possibly pipelined, request, or LINGER (our side shut, the rest of
 * what the client sends read and dropped for a moment, so that our error
 * answer is not destroyed by a reset) before closing. A request is judged
 * (route, API key, declared size) as soon as its head is complete; the
 * body is read only after that, and "100 Continue" sent only then.
 *
 * Hang-ups. A client that closes while its request runs must have it
 * cancelled at once, at any token rate; a client that only half-closes
 * (shutdown of its write side after a complete request) must still get its
 * answer. Both look alike on the wire — a FIN — until the server writes:
 * a closed socket answers a write with a reset, a half-closed one takes it.
 * So on a FIN while a request runs the loop probes by writing: a stream
 * gets an SSE comment (": \n\n"); a whole answer gets its status line and
 * headers early (200, Connection: close, the body delimited by the close)
 * and then a JSON-legal space every PROBE_S seconds until the body is
 * ready. The reset comes back as EPOLLERR/EPOLLHUP (or EPIPE on the next
 * write), and the request is cancelled. NOTE: the other designs considered
 * do not tell the two apart: the TCP state after a FIN is CLOSE_WAIT
 * either way (TCP_INFO), and an interim 1xx answer as a probe breaks
 * clients that take any 1xx other than 100 for the final answer. The cost
 * is that a half-closed client whose generation then fails gets the error
 * JSON under a 200 status line, and that requests it pipelined behind the
 * running one go unanswered (the early head promised Connection: close).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server_clients.h"
#include "server_http.h"
#include "server_parse.h"
#include "server_pool.h"

#define PROBE_S 0.025       /* between two probes of a half-closed client */
#define LINGER_S 2.0        /* reading what a client still sends after our close */
#define PIPELINE_CAP 65536  /* bytes read ahead while a request runs */
#define LINGER_SLACK 256    /* rejected connections lingering beyond max_conns */
#define LOG_INTERVAL_S 10.0 /* between two log lines about one client */

enum { C_HEAD, C_BODY, C_BUSY, C_GEN, C_WRITE, C_LINGER };

typedef struct conn {
    int fd, st;
    struct conn *prev, *next;
    slm_srv_client *client; /* NULL for a rejected connection */
    uint32_t ev;            /* the epoll interest set now */
    slm_srv_buf in;         /* received, not yet consumed */
    slm_srv_buf out;        /* to send, from out_off on */
    size_t out_off;
    double deadline;        /* of the current state; 0: none */
    bool head_started;      /* the current head's first byte arrived */
    bool keep_alive, close_after;
    bool rdhup;             /* the peer sent its FIN (data may still be unread) */
    bool eof;               /* recv said no more data will come */
    bool dead;              /* closed while a worker had its request */
    bool head_sent, chunked_out; /* a generation's answer head is out */
    double next_probe;
    double stalled_since;   /* output waiting on a full socket since; 0: not */
    int minor;
    const slm_srv_route *route;
    uint64_t body_left;
    bool chunked;
    slm_http_chunked ck;
    slm_srv_buf body;
    slm_srv_exchange *x;
    bool x_counted;         /* x counts in s->in_flight */
} conn;

/* A request handed to a worker, and back. */
typedef struct work {
    struct slm_srv_loop *L;
    conn *c;
    struct work *next;
} work;

typedef struct slm_srv_loop {
    slm_srv *s;
    int lfd, epfd, evfd, spare_fd, port;
    pthread_t th;
    bool started;
    atomic_bool stop, quiesce;
    slm_srv_pool *pool;
    conn *conns;
    int n_conns;
    slm_srv_clients clients;
    double last_emfile_log, next_sweep;
    pthread_mutex_t mu; /* guards done and woken */
    work *done;
    slm_srv_job *woken;
} slm_srv_loop;

/* ---- small helpers ------------------------------------------------------ */

static void consume(slm_srv_buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static const char *reason(int status)
{
    static const struct {
        int status;
        const char *text;
    } t[] = {{200, "OK"}, {400, "Bad Request"}, {401, "Unauthorized"}, {404, "Not Found"},
             {405, "Method Not Allowed"}, {408, "Request Timeout"},
             {413, "Content Too Large"}, {414, "URI Too Long"}, {417, "Expectation Failed"},
             {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
             {500, "Internal Server Error"}, {501, "Not Implemented"},
             {503, "Service Unavailable"}, {505, "HTTP Version Not Supported"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].status == status)
            return t[i].text;
    return "Status";
}

static void wake_loop(slm_srv_loop *L)
{
    uint64_t one = 1;
    ssize_t n = write(L->evfd, &one, sizeof one);
    (void)n; /* a full counter already means "wake" */
}

static void want(slm_srv_loop *L, conn *c)
{
    if (c->fd < 0)
        return;
    bool reading = c->st == C_HEAD || c->st == C_BODY || c->st == C_LINGER ||
                   c->in.len < PIPELINE_CAP;
    uint32_t ev = 0;
    if (!c->rdhup)
        ev |= EPOLLRDHUP;
    if (!c->eof && reading)
        ev |= EPOLLIN;
    if (c->out_off < c->out.len)
        ev |= EPOLLOUT;
    if (ev == c->ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(L->epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->ev = ev;
}

/* ---- answers ------------------------------------------------------------ */

static void put(conn *c, const char *p, size_t n)
{
    /* NOTE: out of memory drops output; the connection then ends short,
     * and the process carries on. */
    (void)slm_srv_buf_append(&c->out, p, n);
}

static void putf(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(conn *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(c, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Queues a whole answer and moves to WRITE. */
static void respond(conn *c, int status, const char *ctype, const char *body, size_t len,
                    const char *hname, const char *hvalue)
{
    if (!c->keep_alive)
        c->close_after = true;
    putf(c, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", status,
         reason(status), ctype, len);
    if (hname && hname[0])
        putf(c, "%s: %s\r\n", hname, hvalue);
    putf(c, "Connection: %s\r\n\r\n", c->close_after ? "close" : "keep-alive");
    put(c, body, len);
    c->st = C_WRITE;
    c->deadline = 0;
}

static const char *code_of(int status)
{
    switch (status) {
    case 408: return "request_timeout";
    case 413: return "body_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 431: return "header_too_large";
    case 501: return "not_implemented";
    case 503: return "too_many_connections";
    case 505: return "http_version_not_supported";
    default: return "bad_request";
    }
}

/* Answers an error the loop itself found, in OpenAI's shape, counted in
 * /metrics, and closes the connection after it. */
static void respond_error(slm_srv_loop *L, conn *c, int status, const char *msg,
                          const char *hname, const char *hvalue)
{
    slm_srv_error e;
    slm_srv_error_set(&e, status, status >= 500 ? "server_error" : "invalid_request_error",
                      NULL, code_of(status), "%s", msg);
    char *json = slm_srv_error_json(&e);
    slm_srv_metrics_http(&L->s->metrics, status);
    c->close_after = true;
    respond(c, status, "application/json", json ? json : "{}", json ? strlen(json) : 2, hname,
            hvalue);
    free(json);
}

static void offender(slm_srv_loop *L, conn *c, const char *what)
{
    if (c->client)
        slm_srv_clients_log(&L->clients, c->client, slm_srv_now(), what);
}

/* ---- connection life ---------------------------------------------------- */

static void exchange_end(slm_srv_loop *L, conn *c)
{
    slm_srv_exchange *x = c->x;
    if (!x)
        return;
    slm_srv_gen_end(L->s, x);
    free(x->resp);
    free(x);
    c->x = NULL;
    if (c->x_counted)
        atomic_fetch_sub(&L->s->in_flight, 1);
    c->x_counted = false;
    c->body.len = 0;
    c->head_sent = c->chunked_out = false;
}

static void conn_free(slm_srv_loop *L, conn *c)
{
    exchange_end(L, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        L->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    slm_srv_buf_free(&c->in);
    slm_srv_buf_free(&c->out);
    slm_srv_buf_free(&c->body);
    free(c);
}

/* Closes the socket; a running request is cancelled (slm_srv_gen_end). A
 * connection whose request is at a worker is freed when it comes back. */
static void conn_close(slm_srv_loop *L, conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(L->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        L->n_conns--;
        atomic_store(&L->s->metrics.connections, L->n_conns);
    }
    if (c->client)
        c->client->conns--;
    c->client = NULL;
    if (c->st == C_BUSY) {
        c->dead = true;
        return;
    }
    conn_free(L, c);
}

static conn *conn_new(slm_srv_loop *L, int fd, slm_srv_client *client)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->client = client;
    c->keep_alive = true;
    c->ev = EPOLLIN | EPOLLRDHUP;
    struct epoll_event e = {.events = c->ev, .data.ptr = c};
    if (epoll_ctl(L->epfd, EPOLL_CTL_ADD, fd, &e)) {
        free(c);
        return NULL;
    }
    c->next = L->conns;
    if (L->conns)
        L->conns->prev = c;
    L->conns = c;
    L->n_conns++;
    atomic_store(&L->s->metrics.connections, L->n_conns);
    if (client)
        client->conns++;
    c->deadline = slm_srv_now() + L->s->cfg.idle_timeout;
    return c;
}

/* Sends what is queued. Returns -1 when the peer is gone. */
static int flush(conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->stalled_since = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->stalled_since)
                c->stalled_since = slm_srv_now();
            return 0;
        }
        return -1;
    }
    c->out.len = c->out_off = 0;
    c->stalled_since = 0;
    return 0;
}

/* Our side is done: shut our half and drop what the client still sends
 * for a moment, so the answer reaches it instead of a reset. */
static void linger(conn *c)
{
    if (c->eof) {
        c->st = C_LINGER;
        c->deadline = slm_srv_now(); /* closed at the next sweep, or below */
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->st = C_LINGER;
    c->deadline = slm_srv_now() + LINGER_S;
}

/* ---- requests ------------------------------------------------------------ */

static void work_run(void *arg)
{
    work *w = arg;
    w->c->route->fn(w->L->s, w->c->x);
    pthread_mutex_lock(&w->L->mu);
    w->next = w->L->done;
    w->L->done = w;
    pthread_mutex_unlock(&w->L->mu);
    wake_loop(w->L);
}

/* Queues x's plain answer (set by slm_srv_respond). */
static void respond_plain(conn *c)
{
    slm_srv_exchange *x = c->x;
    respond(c, x->status, x->ctype ? x->ctype : "application/json", x->resp ? x->resp : "{}",
            x->resp ? strlen(x->resp) : 2, x->hname, x->hvalue);
}

static void probe(conn *c);
static void pump(slm_srv_loop *L, conn *c);

/* A worker finished c's request: an answer, or a job to follow. */
static void attach(slm_srv_loop *L, conn *c)
{
    slm_srv_exchange *x = c->x;
    if (!x->job) {
        respond_plain(c);
        return;
    }
    x->job->owner = x;
    c->st = C_GEN;
    pump(L, c);
    if (c->st == C_GEN && (c->rdhup || c->eof))
        probe(c);
}

/* The whole body is in: run the route's handler, here or on a worker. */
static void dispatch(slm_srv_loop *L, conn *c)
{
    slm_srv_exchange *x = calloc(1, sizeof *x);
    work *w = calloc(1, sizeof *w);
    if (!x || !w) {
        free(x);
        free(w);
        respond_error(L, c, 500, "out of memory", NULL, NULL);
        return;
    }
    x->body = c->body.data ? c->body.data : "";
    x->body_len = c->body.len;
    x->conn = c;
    c->x = x;
    if (!(c->route->flags & SLM_SRV_ROUTE_WORKER)) {
        free(w);
        c->route->fn(L->s, x);
        respond_plain(c);
        return;
    }
    *w = (work){L, c, NULL};
    c->st = C_BUSY;
    c->deadline = 0;
    c->x_counted = true;
    atomic_fetch_add(&L->s->in_flight, 1);
    if (slm_srv_pool_run(L->pool, work_run, w)) {
        free(w);
        c->st = C_HEAD;
        exchange_end(L, c);
        respond_error(L, c, 500, "out of memory", NULL, NULL);
    }
}

/* A complete head: judge it before reading any of the body. */
static void start_request(slm_srv_loop *L, conn *c, const slm_http_head *h)
{
    slm_srv_error e;
    const char *hn, *hv;
    c->route = slm_srv_admit(L->s, h->method, h->target, h->path_len, h->auth, h->auth_len,
                             h->content_length, &e, &hn, &hv);
    /* While draining, answers say Connection: close, so clients move on. */
    c->keep_alive = h->keep_alive && atomic_load(&L->s->state) != SLM_SRV_DRAINING;
    c->minor = h->minor;
    bool has_body = h->chunked || h->content_length > 0;
    c->body_left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
    c->chunked = h->chunked;
    memset(&c->ck, 0, sizeof c->ck);
    c->body.len = 0;
    bool expect = h->expect_continue && h->minor == 1;
    consume(&c->in, h->len);
    c->head_started = false;
    if (!c->route) {
        if (e.status == 401 || e.status == 413)
            offender(L, c, e.status == 401 ? "request without a valid API key"
                                          : "declared body over --max-body");
        /* NOTE: a refused request's body is never read, so the connection
         * cannot go on to another request after it. */
        if (has_body)
            c->close_after = true;
        char *json = slm_srv_error_json(&e);
        slm_srv_metrics_http(&L->s->metrics, e.status);
        respond(c, e.status, "application/json", json ? json : "{}", json ? strlen(json) : 2,
                hn, hv);
        free(json);
        return;
    }
    if (expect && has_body)
        put(c, "HTTP/1.1 100 Continue\r\n\r\n", sizeof "HTTP/1.1 100 Continue\r\n\r\n" - 1);
    c->st = C_BODY;
    c->deadline = slm_srv_now() + L->s->cfg.body_timeout;
}

/* Moves body bytes from c->in into c->body; dispatches once complete. */
static void read_body(slm_srv_loop *L, conn *c)
{
    if (c->chunked) {
        char tmp[16384]; /* decoded bytes: never more than their encoding */
        size_t off = 0;
        bool done = false;
        while (off < c->in.len && !done) {
            size_t k = c->in.len - off < sizeof tmp ? c->in.len - off : sizeof tmp, got = 0;
            slm_http_error err;
            long used = slm_http_chunked_feed(&c->ck, c->in.data + off, k, tmp, &got,
                                              L->s->cfg.max_body, &done, &err);
            if (used < 0) {
                offender(L, c, err.message);
                respond_error(L, c, err.status, err.message, NULL, NULL);
                return;
            }
            if (got && slm_srv_buf_append(&c->body, tmp, got)) {
                respond_error(L, c, 500, "out of memory", NULL, NULL);
                return;
            }
            off += (size_t)used;
        }
        consume(&c->in, off);
        if (done)
            dispatch(L, c);
        return;
    }
    size_t take = c->in.len < c->body_left ? c->in.len : (size_t)c->body_left;
    if (take && slm_srv_buf_append(&c->body, c->in.data, take)) {
        respond_error(L, c, 500, "out of memory", NULL, NULL);
        return;
    }
    consume(&c->in, take);
    c->body_left -= take;
    if (c->body_left == 0)
        dispatch(L, c);
}

/* Reading states: parse what is buffered. Returns false when c was closed. */
static bool advance(slm_srv_loop *L, conn *c)
{
    if (c->st == C_BODY) {
        read_body(L, c);
        if (c->st == C_BODY && c->eof) {
            conn_close(L, c); /* the body will never be complete */
            return false;
        }
        return true;
    }
    if (c->st != C_HEAD)
        return true;
    if (c->in.len == 0) {
        if (c->eof) { /* nothing more will come (after rdhup, reading says when) */
            conn_close(L, c);
            return false;
        }
        return true;
    }
    if (!c->head_started) {
        c->head_started = true;
        c->deadline = slm_srv_now() + L->s->cfg.header_timeout;
    }
    slm_http_limits lim = {L->s->cfg.max_header, L->s->cfg.max_uri};
    slm_http_head h;
    slm_http_error err;
    slm_http_result r = slm_http_parse_head(c->in.data, c->in.len, &lim, &h, &err);
    if (r == SLM_HTTP_MORE) {
        if (c->eof) {
            conn_close(L, c);
            return false;
        }
        return true;
    }
    if (r == SLM_HTTP_BAD) {
        offender(L, c, err.message);
        c->keep_alive = false;
        respond_error(L, c, err.status, err.message, NULL, NULL);
        return true;
    }
    start_request(L, c, &h);
    if (c->st == C_BODY)
        read_body(L, c);
    return true;
}

/* After anything happened to c: send, finish answers, go on with the next
 * request in the buffer. Returns false when c was closed. */
static bool settle(slm_srv_loop *L, conn *c)
{
    for (;;) {
        if (c->fd < 0)
            return false;
        if (flush(c)) {
            conn_close(L, c);
            return false;
        }
        if (c->st == C_WRITE) {
            if (c->out.len)
                break; /* the rest when the socket takes it (EPOLLOUT) */
            exchange_end(L, c);
            if (c->close_after) {
                linger(c);
                if (c->eof) {
                    conn_close(L, c);
                    return false;
                }
                break;
            }
            c->st = C_HEAD;
            c->head_started = false;
            c->deadline = slm_srv_now() + L->s->cfg.idle_timeout;
        }
        int st = c->st;
        if (!advance(L, c))
            return false;
        if (c->st == st)
            break;
    }
    want(L, c);
    return true;
}

/* ---- generation output and probes --------------------------------------- */

static void stream_head(conn *c)
{
    c->chunked_out = c->minor == 1;
    if (!c->keep_alive || !c->chunked_out)
        c->close_after = true;
    putf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "%sConnection: %s\r\n\r\n",
         c->chunked_out ? "Transfer-Encoding: chunked\r\n" : "",
         c->close_after ? "close" : "keep-alive");
    c->head_sent = true;
}

static void put_chunk(conn *c, const char *p, size_t n)
{
    if (!n)
        return;
    if (c->chunked_out)
        putf(c, "%zx\r\n", n);
    put(c, p, n);
    if (c->chunked_out)
        put(c, "\r\n", 2);
}

/* Takes c's job's new output and frames it. */
static void pump(slm_srv_loop *L, conn *c)
{
    slm_srv_exchange *x = c->x;
    slm_srv_buf payload = {0};
    bool done = slm_srv_gen_pump(L->s, x, &payload);
    if (x->stream) {
        if (!c->head_sent)
            stream_head(c);
        put_chunk(c, payload.data, payload.len);
        if (done) {
            if (c->chunked_out)
                put(c, "0\r\n\r\n", 5);
            c->st = C_WRITE;
        }
    } else if (done) {
        if (c->head_sent) { /* probed: the head is out, the close ends the body */
            put(c, payload.data, payload.len);
            c->st = C_WRITE;
        } else {
            respond(c, x->status, "application/json", payload.data ? payload.data : "{}",
                    payload.data ? payload.len : 2, NULL, NULL);
        }
    }
    slm_srv_buf_free(&payload);
}

/* Writes to a client that sent its FIN while its request runs (see the top
 * of this file): a closed one answers with a reset. */
static void probe(conn *c)
{
    slm_srv_exchange *x = c->x;
    if (x->stream) {
        if (!c->head_sent)
            stream_head(c);
        put_chunk(c, ": \n\n", 4);
    } else if (!c->head_sent) {
        c->close_after = true;
        c->head_sent = true;
        static const char head[] =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        put(c, head, sizeof head - 1);
    } else {
        put(c, " ", 1);
    }
    c->next_probe = slm_srv_now() + PROBE_S;
}

/* ---- events -------------------------------------------------------------- */

static void reject(slm_srv_loop *L, int fd, slm_srv_client *client, const char *why)
{
    if (client)
        slm_srv_clients_log(&L->clients, client, slm_srv_now(), why);
    if (L->n_conns >= L->s->cfg.max_conns + LINGER_SLACK) {
        close(fd);
        return;
    }
    conn *c = conn_new(L, fd, NULL);
    if (!c) {
        close(fd);
        return;
    }
    c->keep_alive = false;
    respond_error(L, c, 503, why, "Retry-After", "1");
    settle(L, c);
}

/* Accepts what waits, a bounded number per loop turn so that a flood of
 * new connections does not starve the open ones (the listener stays
 * readable and comes back next turn). */
static void accept_some(slm_srv_loop *L)
{
    for (int n = 0; n < 256; n++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(L->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && L->spare_fd >= 0) {
                /* Out of descriptors: take the one in reserve to shed the
                 * waiting connection, so the listener does not spin. */
                close(L->spare_fd);
                int f = accept(L->lfd, NULL, NULL);
                if (f >= 0)
                    close(f);
                L->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                double now = slm_srv_now();
                if (now - L->last_emfile_log > LOG_INTERVAL_S) {
                    fprintf(stderr, "slm serve: out of file descriptors: connections shed "
                                    "(raise ulimit -n, or lower --max-conns)\n");
                    L->last_emfile_log = now;
                }
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        slm_srv_client *client = slm_srv_clients_get(&L->clients, &sa);
        if (!client) {
            close(fd);
            continue;
        }
        if (L->n_conns >= L->s->cfg.max_conns)
            reject(L, fd, client, "too many connections to this server (--max-conns)");
        else if (client->conns >= L->s->cfg.max_conns_per_client)
            reject(L, fd, client, "too many connections from this address "
                                  "(--max-conns-per-client)");
        else if (!conn_new(L, fd, client))
            close(fd);
    }
}

static void on_event(slm_srv_loop *L, conn *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    if (ev & (EPOLLERR | EPOLLHUP)) {
        conn_close(L, c); /* reset or both sides closed: nobody to answer */
        return;
    }
    bool fin_before = c->rdhup;
    if (ev & EPOLLRDHUP)
        c->rdhup = true;
    if (ev & EPOLLIN) {
        for (;;) {
            if (c->st == C_LINGER) {
                char sink[4096];
                ssize_t n = recv(c->fd, sink, sizeof sink, 0);
                if (n > 0)
                    continue;
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    break;
                conn_close(L, c);
                return;
            }
            size_t cap = c->st == C_HEAD ? L->s->cfg.max_header + 1
                                         : (c->st == C_BODY ? 65536 : PIPELINE_CAP);
            if (c->in.len >= cap)
                break;
            char tmp[16384];
            size_t room = cap - c->in.len < sizeof tmp ? cap - c->in.len : sizeof tmp;
            ssize_t n = recv(c->fd, tmp, room, 0);
            if (n > 0) {
                if (slm_srv_buf_append(&c->in, tmp, (size_t)n)) {
                    conn_close(L, c);
                    return;
                }
                if (c->st == C_BODY && c->in.len >= cap)
                    read_body(L, c); /* make room: move it into the body */
                if (c->st != C_HEAD && c->st != C_BODY)
                    break;
                continue;
            }
            if (n == 0) {
                c->eof = c->rdhup = true;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(L, c);
            return;
        }
    }
    /* A FIN just arrived: probe at once (a stream too), not at the next
     * sweep, so a client that is gone is found within one round trip. */
    if (c->rdhup && c->st == C_GEN && (!fin_before || !c->head_sent))
        probe(c);
    settle(L, c);
}

/* Requests back from the workers. */
static void drain_done(slm_srv_loop *L)
{
    pthread_mutex_lock(&L->mu);
    work *w = L->done;
    L->done = NULL;
    pthread_mutex_unlock(&L->mu);
    while (w) {
        work *next = w->next;
        conn *c = w->c;
        free(w);
        if (c->dead) {
            c->st = C_HEAD;
            conn_free(L, c); /* cancels the job if one was started */
        } else {
            attach(L, c);
            settle(L, c);
        }
        w = next;
    }
}

/* Jobs with new output. */
static void drain_woken(slm_srv_loop *L)
{
    pthread_mutex_lock(&L->mu);
    slm_srv_job *j = L->woken;
    L->woken = NULL;
    pthread_mutex_unlock(&L->mu);
    while (j) {
        slm_srv_job *next = j->wake_next;
        slm_srv_exchange *x = j->owner;
        conn *c = x ? x->conn : NULL;
        slm_srv_job_woken(j); /* before the take, so output after it wakes again */
        if (c && c->st == C_GEN) {
            pump(L, c);
            settle(L, c);
        }
        j = next;
    }
}

void slm_srv_loop_wake_job(void *loop, slm_srv_job *j)
{
    slm_srv_loop *L = loop;
    pthread_mutex_lock(&L->mu);
    /* A non-empty list already has a wake-up on its way (the loop takes the
     * list after reading the eventfd), so 64 streams cost one write. */
    bool first = !L->woken;
    j->wake_next = L->woken;
    L->woken = j;
    pthread_mutex_unlock(&L->mu);
    if (first)
        wake_loop(L);
}

/* Deadlines and probes; every connection, a few times a second. */
static void sweep(slm_srv_loop *L, double now)
{
    bool probing = false;
    for (conn *c = L->conns, *next; c; c = next) {
        next = c->next;
        if (c->fd < 0)
            continue;
        if (c->stalled_since && now - c->stalled_since > L->s->cfg.body_timeout) {
            /* NOTE: a client that stops reading its answer would make the
             * server buffer a stream without end; it gets as long as a
             * body may take, then its request is cancelled. */
            offender(L, c, "not reading its answer within --body-timeout");
            conn_close(L, c);
            continue;
        }
        if (c->st == C_GEN && (c->rdhup || c->eof)) {
            probing = true;
            if (now >= c->next_probe) {
                probe(c);
                settle(L, c);
            }
            continue;
        }
        if (!c->deadline || now < c->deadline)
            continue;
        if (c->st == C_LINGER || (c->st == C_HEAD && c->in.len == 0)) {
            conn_close(L, c); /* done lingering, or idle too long */
        } else if (c->st == C_HEAD || c->st == C_BODY) {
            bool head = c->st == C_HEAD;
            offender(L, c, head ? "request header not complete within --header-timeout"
                                : "request body not complete within --body-timeout");
            c->keep_alive = false;
            respond_error(L, c, 408,
                          head ? "the request header did not arrive within the time limit"
                               : "the request body did not arrive within the time limit",
                          NULL, NULL);
            settle(L, c);
        }
    }
    slm_srv_clients_sweep(&L->clients, now);
    L->next_sweep = now + (probing ? PROBE_S : 0.1);
}

static void *loop_main(void *arg)
{
    slm_srv_loop *L = arg;
    struct epoll_event evs[256];
    while (!atomic_load(&L->stop)) {
        double now = slm_srv_now();
        int ms = L->next_sweep > now ? (int)((L->next_sweep - now) * 1000) + 1 : 0;
        int n = epoll_wait(L->epfd, evs, 256, ms);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &L->lfd) {
                accept_some(L);
            } else if (p == &L->evfd) {
                uint64_t v;
                ssize_t k = read(L->evfd, &v, sizeof v);
                (void)k;
            } else {
                on_event(L, p, evs[i].events);
            }
        }
        drain_done(L);
        drain_woken(L);
        if (atomic_load(&L->quiesce) && L->lfd >= 0) {
            epoll_ctl(L->epfd, EPOLL_CTL_DEL, L->lfd, NULL);
            close(L->lfd);
            L->lfd = -1;
        }
        now = slm_srv_now();
        if (now >= L->next_sweep)
            sweep(L, now);
    }
    return NULL;
}

/* ---- life cycle ------------------------------------------------------------ */

static int listen_on(slm_srv_loop *L, const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res) {
        fprintf(stderr, "slm serve: cannot resolve --host '%s': %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 4096)) {
        fprintf(stderr, "slm serve: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    L->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                             : ((struct sockaddr_in *)&sa)->sin_port);
    L->lfd = fd;
    return 0;
}

/* Each connection is a descriptor: take all the process may have, and
 * keep --max-conns within it (with room for the lingering rejections, the
 * model file and the engine's own descriptors), so that the limit answers
 * 503 before accept() would fail. */
static void fit_fd_limit(slm_srv_config *cfg)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r))
        return;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    if (r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= (rlim_t)cfg->max_conns + LINGER_SLACK + 64)
        return;
    long fit = (long)r.rlim_cur - LINGER_SLACK - 64;
    cfg->max_conns = fit > 16 ? (int)fit : 16;
    fprintf(stderr, "slm serve: the descriptor limit (%llu) holds %d connections: --max-conns "
                    "lowered to that (raise ulimit -n for more)\n",
            (unsigned long long)r.rlim_cur, cfg->max_conns);
}

int slm_srv_loop_start(slm_srv *s)
{
    slm_srv_loop *L = calloc(1, sizeof *L);
    if (!L) {
        fprintf(stderr, "slm serve: out of memory\n");
        return -1;
    }
    L->s = s;
    s->loop = L;
    L->lfd = L->epfd = L->evfd = L->spare_fd = -1;
    L->clients.interval = LOG_INTERVAL_S;
    pthread_mutex_init(&L->mu, NULL);
    fit_fd_limit(&s->cfg);
    if (listen_on(L, s->cfg.host, s->cfg.port))
        return -1;
    L->epfd = epoll_create1(EPOLL_CLOEXEC);
    L->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    L->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    L->pool = slm_srv_pool_create(s->cfg.workers);
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &L->lfd};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &L->evfd};
    if (L->epfd < 0 || L->evfd < 0 || !L->pool ||
        epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->lfd, &el) ||
        epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->evfd, &ee) ||
        pthread_create(&L->th, NULL, loop_main, L)) {
        fprintf(stderr, "slm serve: cannot start the event loop: %s\n", strerror(errno));
        return -1;
    }
    L->started = true;
    return 0;
}

int slm_srv_loop_port(const slm_srv *s) { return s->loop ? s->loop->port : s->cfg.port; }

void slm_srv_loop_quiesce(slm_srv *s)
{
    if (!s->loop)
        return;
    atomic_store(&s->loop->quiesce, true);
    wake_loop(s->loop);
}

void slm_srv_loop_stop(slm_srv *s)
{
    slm_srv_loop *L = s->loop;
    if (!L)
        return;
    if (L->started) {
        atomic_store(&L->stop, true);
        wake_loop(L);
        pthread_join(L->th, NULL);
    }
    slm_srv_pool_free(L->pool); /* runs what is queued: its answers land in done */
    L->pool = NULL;
    pthread_mutex_lock(&L->mu);
    work *w = L->done;
    L->done = NULL;
    pthread_mutex_unlock(&L->mu);
    while (w) {
        work *next = w->next;
        w->c->st = C_HEAD;
        free(w);
        w = next;
    }
    while (L->conns) {
        L->conns->st = C_HEAD;
        conn_close(L, L->conns); /* cancels what still runs */
    }
    /* Every job's wake hook is cleared now (slm_srv_gen_end): the list
     * below can no longer grow. */
    for (slm_srv_job *j = L->woken, *next; j; j = next) {
        next = j->wake_next;
        slm_srv_job_woken(j);
    }
    L->woken = NULL;
    if (L->lfd >= 0)
        close(L->lfd);
    if (L->epfd >= 0)
        close(L->epfd);
    if (L->evfd >= 0)
        close(L->evfd);
    if (L->spare_fd >= 0)
        close(L->spare_fd);
    slm_srv_clients_free(&L->clients);
    pthread_mutex_destroy(&L->mu);
    free(L);
    s->loop = NULL;
}
