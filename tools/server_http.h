/*
 * server_http.h — the HTTP side of `slm serve`: a libmicrohttpd daemon with
 * one thread per connection (a connection thread may block waiting for its
 * request's tokens), the routes, API-key checks, body limits, and the
 * in-flight request list that graceful shutdown drains.
 *
 * States: LOADING (the daemon answers /health with 503 while cmd_serve loads
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
} slm_srv_config;

typedef struct slm_srv {
    slm_srv_config cfg;
    struct MHD_Daemon *daemon;
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

/* Starts the daemon in the LOADING state. Returns 0, or -1 after printing
 * why (address in use, bad host). */
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
/* Stops the daemon (joining connection threads). Call after the in-flight
 * count reached 0 or slm_srv_cancel_all; the engine may then be destroyed. */
void slm_srv_stop(slm_srv *s);

/* --- shared by server_http.c and server_gen.c ----------------------------- */
struct MHD_Connection;

/* Queues a response with body (malloc'd, freed here; NULL sends "{}") and
 * one optional extra header, and counts its status. Returns MHD's result. */
int slm_srv_respond(slm_srv *s, struct MHD_Connection *c, int status, const char *ctype,
                    char *body, const char *hname, const char *hvalue);
int slm_srv_respond_error(slm_srv *s, struct MHD_Connection *c, const slm_srv_error *e,
                          const char *hname, const char *hvalue);

/* POST /v1/chat/completions (chat) or /v1/completions with its whole body:
 * parses, submits to the engine, and answers at once or as a stream. */
int slm_srv_generate(slm_srv *s, struct MHD_Connection *c, bool chat, const char *body,
                     size_t len);

#endif
