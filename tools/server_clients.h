/*
 * server_clients.h — what `slm serve` keeps per client address: how many
 * connections it holds (for the per-client limit) and when it was last
 * logged as misbehaving, so that a client opening thousands of slow or
 * broken connections costs one log line per interval, not one per
 * connection. A chained hash table owned by the event loop (no locks).
 * An entry lives while the address holds connections or its log interval
 * is still running.
 */
#ifndef SLM_SERVER_CLIENTS_H
#define SLM_SERVER_CLIENTS_H

#include <stdbool.h>
#include <sys/socket.h>

#define SLM_SRV_CLIENT_BUCKETS 1024

typedef struct slm_srv_client {
    unsigned char addr[16]; /* IPv4 mapped into IPv6 form */
    char text[48];          /* printable address */
    int conns;
    double last_log;        /* seconds (slm_srv_now); 0: never logged */
    unsigned suppressed;    /* log lines skipped since last_log */
    struct slm_srv_client *next;
} slm_srv_client;

typedef struct slm_srv_clients {
    slm_srv_client *bucket[SLM_SRV_CLIENT_BUCKETS];
    double interval;        /* seconds between two log lines of one client */
} slm_srv_clients;

/* The entry of sa's address, created with conns 0 when new; NULL when out
 * of memory. */
slm_srv_client *slm_srv_clients_get(slm_srv_clients *t, const struct sockaddr_storage *sa);
/* Frees the entries that hold no connection and whose interval is over. */
void slm_srv_clients_sweep(slm_srv_clients *t, double now);
/* Logs "slm serve: client ADDR: <what>" to stderr unless this client was
 * logged less than an interval ago (then it is only counted, and the next
 * line says how many were skipped). */
void slm_srv_clients_log(slm_srv_clients *t, slm_srv_client *c, double now, const char *what);
void slm_srv_clients_free(slm_srv_clients *t);

#endif
