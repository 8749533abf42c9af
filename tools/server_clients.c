/*
 * server_clients.c — per-address bookkeeping of `slm serve` (see
 * server_clients.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_clients.h"

static unsigned hash(const unsigned char a[16])
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 16777619u;
    return h % SLM_SRV_CLIENT_BUCKETS;
}

static void key_of(const struct sockaddr_storage *sa, unsigned char a[16], char *text,
                   size_t n)
{
    memset(a, 0, 16);
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(a, &s6->sin6_addr, 16);
        inet_ntop(AF_INET6, &s6->sin6_addr, text, (socklen_t)n);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &s4->sin_addr, 4);
        inet_ntop(AF_INET, &s4->sin_addr, text, (socklen_t)n);
    }
}

slm_srv_client *slm_srv_clients_get(slm_srv_clients *t, const struct sockaddr_storage *sa)
{
    unsigned char a[16];
    char text[48] = "?";
    key_of(sa, a, text, sizeof text);
    unsigned h = hash(a);
    for (slm_srv_client *c = t->bucket[h]; c; c = c->next)
        if (!memcmp(c->addr, a, 16))
            return c;
    slm_srv_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    memcpy(c->addr, a, 16);
    memcpy(c->text, text, sizeof c->text);
    c->next = t->bucket[h];
    t->bucket[h] = c;
    return c;
}

void slm_srv_clients_sweep(slm_srv_clients *t, double now)
{
    for (int b = 0; b < SLM_SRV_CLIENT_BUCKETS; b++)
        for (slm_srv_client **p = &t->bucket[b]; *p;) {
            slm_srv_client *c = *p;
            if (c->conns == 0 && (c->last_log == 0 || now - c->last_log >= t->interval)) {
                if (c->suppressed)
                    fprintf(stderr, "slm serve: client %s: %u more like the last\n", c->text,
                            c->suppressed);
                *p = c->next;
                free(c);
            } else {
                p = &c->next;
            }
        }
}

void slm_srv_clients_log(slm_srv_clients *t, slm_srv_client *c, double now, const char *what)
{
    if (c->last_log != 0 && now - c->last_log < t->interval) {
        c->suppressed++;
        return;
    }
    if (c->suppressed)
        fprintf(stderr, "slm serve: client %s: %s (and %u more since the last line)\n", c->text,
                what, c->suppressed);
    else
        fprintf(stderr, "slm serve: client %s: %s\n", c->text, what);
    c->last_log = now;
    c->suppressed = 0;
}

void slm_srv_clients_free(slm_srv_clients *t)
{
    for (int b = 0; b < SLM_SRV_CLIENT_BUCKETS; b++)
        while (t->bucket[b]) {
            slm_srv_client *c = t->bucket[b];
            t->bucket[b] = c->next;
            free(c);
        }
}
