/*
 * server_http.h — the HTTP side of `slm serve`: the routes, API-key checks,
 * limits, and the in-flight request list that graceful shutdown drains.
 * The sockets belong to server_loop.c (one epoll thread); route handlers
 * that may take long (parse, tokenise, submit) run on its worker pool and
 * answer through an slm_srv_exchange, never touching a socket.
 *
 * States: LOADING (the loop answers /health with 503 while cmd_serve loads
 * the model) → READY (slm_srv_set_ready) → DRAINING (slm_srv_quiesce: no new
 * connections, new requests get 503) → stopped (slm_srv_stop).
 * The server holds the engine and model pointers but does not own them.
 */
#ifndef SLM_SERVER_HTTP_H
#define SLM_SERVER_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "server_job.h"
#include "server_metrics.h"
#include "server_openai.h"
#include "slm.h"

enum { SLM_SRV_LOADING = 0, SLM_SRV_READY, SLM_SRV_DRAINING, SLM_SRV_FAILED };

typedef struct slm_srv_config {
    const char *host;     /* numeric address or name to bind (default 127.0.0.1) */
    int port;             /* 0: any free port (slm_srv_port tells which) */
    const char *api_key;  /* NULL: no authentication */
    size_t max_body;      /* request bodies above this get 413 */
    const char *model_path;
    bool auth_metrics;    /* /metrics needs the API key too */
    int max_conns;        /* open connections overall; beyond: 503 and close */
    int max_conns_per_client; /* open connections per client address */
    double header_timeout;    /* seconds for a whole request header */
    double body_timeout;      /* seconds for a whole request body */
    double idle_timeout;      /* seconds a keep-alive connection may idle */
    size_t max_header;        /* bytes of a request header (431 beyond) */
    size_t max_uri;           /* bytes of a request target (414 beyond) */
    int workers;              /* threads that run request handlers */
} slm_srv_config;

/* Fills the defaults every field above has when `slm serve` is given no
 * option for it. */
void slm_srv_config_default(slm_srv_config *c);

typedef struct slm_srv {
    slm_srv_config cfg;
    struct slm_srv_loop *loop;
    atomic_int state;
    slm_model *model;     /* set by slm_srv_set_ready; not owned */
    slm_engine *engine;   /* set by slm_srv_set_ready; not owned */
    int n_ctx;            /* the context one request may fill */
    slm_sampling sampling_defaults;
    char model_id[256], model_file[256], model_name[256];
    slm_srv_model_names names;
    long long started;    /* Unix seconds, for /v1/models */
    slm_srv_metrics metrics;
    pthread_mutex_t jobs_mu;
    slm_srv_job *jobs;    /* in-flight generation requests */
    atomic_int in_flight;
    atomic_ullong seq;    /* for response ids and default seeds */
} slm_srv;

/* Listens and starts the loop in the LOADING state. Returns 0, or -1 after
 * printing why (address in use, bad host). */
int slm_srv_start(slm_srv *s, const slm_srv_config *cfg);
/* The port actually bound. */
int slm_srv_port(const slm_srv *s);
/* Publishes the loaded model and engine and switches to READY. */
void slm_srv_set_ready(slm_srv *s, slm_model *m, slm_engine *e, int n_ctx,
                       const slm_sampling *defaults);
void slm_srv_set_failed(slm_srv *s);
/* Stops accepting connections; requests arriving on open connections get
 * 503. In-flight requests go on. */
void slm_srv_quiesce(slm_srv *s);
int slm_srv_in_flight(slm_srv *s);
/* Cancels every in-flight request through the engine. */
void slm_srv_cancel_all(slm_srv *s);
/* Stops the loop and its workers and closes every connection (cancelling
 * what still runs). Call after the in-flight count reached 0 or
 * slm_srv_cancel_all; the engine may then be destroyed. */
void slm_srv_stop(slm_srv *s);

/* --- shared by server_http.c, server_gen.c and server_loop.c ------------- */

/* One request on its way through a handler: the loop fills the request
 * side, the handler (on a worker, or on the loop for quick routes) the
 * answer, through slm_srv_respond* or slm_srv_generate. */
typedef struct slm_srv_exchange {
    const char *body;      /* the whole request body (not terminated) */
    size_t body_len;
    /* a plain answer */
    int status;
    const char *ctype;
    char *resp;            /* malloc'd body */
    char hname[32], hvalue[64]; /* one extra header, or hname[0] == 0 */
    /* a generation: the job and what formatting its output needs */
    slm_srv_job *job;
    bool stream, started, finished;
    slm_srv_reply reply;
    char id[64];
    slm_srv_choices got;   /* per-choice output taken from the job, not yet formatted */
    slm_srv_vocab vocab;   /* reply.vocab points here (token bytes for logprobs) */
    void *conn;            /* the loop's connection; loop thread only */
} slm_srv_exchange;

/* A route handler; returns 0 (the value is not used). It reads x->body and
 * answers with slm_srv_respond / slm_srv_respond_error (or, for a
 * generation, slm_srv_generate); it never sees a socket. A new endpoint is
 * one line in server_http.c's route table plus its handler. */
typedef int (*slm_srv_handler)(slm_srv *s, slm_srv_exchange *x);

enum { SLM_SRV_ROUTE_KEY = 1,    /* needs the API key (when one is set) */
       SLM_SRV_ROUTE_READY = 2,  /* 503 unless READY */
       SLM_SRV_ROUTE_WORKER = 4, /* runs on the worker pool, not the loop */
       SLM_SRV_ROUTE_METRICS = 8 /* needs the key only with auth_metrics */ };

typedef struct slm_srv_route {
    const char *path, *method;
    slm_srv_handler fn;
    int flags;
} slm_srv_route;

/* Judges a request head as soon as it is complete, before any body byte:
 * the route (404/405), the API key (401), the declared body size (413) and
 * readiness (503). Returns the route, or NULL with *e filled (and *hname /
 * *hvalue the extra header to send, or NULL). */
const slm_srv_route *slm_srv_admit(slm_srv *s, const char *method, const char *path,
                                   size_t path_len, const char *auth, size_t auth_len,
                                   int64_t content_length, slm_srv_error *e,
                                   const char **hname, const char **hvalue);

/* Sets x's answer: body (malloc'd, owned by x from here; NULL sends "{}")
 * and one optional extra header, and counts its status. Returns 0. */
int slm_srv_respond(slm_srv *s, slm_srv_exchange *x, int status, const char *ctype,
                    char *body, const char *hname, const char *hvalue);
int slm_srv_respond_error(slm_srv *s, slm_srv_exchange *x, const slm_srv_error *e,
                          const char *hname, const char *hvalue);

/* POST /v1/chat/completions (chat) or /v1/completions with its whole body:
 * parses and submits to the engine (x->job), or answers an error. */
int slm_srv_generate(slm_srv *s, slm_srv_exchange *x, bool chat, const char *body,
                     size_t len);

/* Loop thread: moves a generation's new output into `out`: server-sent
 * events for a stream (the role chunk first; the final events once done),
 * or, for a whole answer, nothing until the job is done and then the JSON
 * body (x->status 200, or 500 when generation failed). Returns true once
 * the answer is complete. */
bool slm_srv_gen_pump(slm_srv *s, slm_srv_exchange *x, slm_srv_buf *out);
/* Loop thread: the connection is done with x's job (cancelled if it still
 * runs). */
void slm_srv_gen_end(slm_srv *s, slm_srv_exchange *x);

/* server_loop.c: wakes the loop because job j has new output (called on
 * the engine thread by the job's callbacks). */
void slm_srv_loop_wake_job(void *loop, slm_srv_job *j);

/* server_loop.c: the loop's life cycle. */
int slm_srv_loop_start(slm_srv *s);
int slm_srv_loop_port(const slm_srv *s);
void slm_srv_loop_quiesce(slm_srv *s);
void slm_srv_loop_stop(slm_srv *s);

#endif
