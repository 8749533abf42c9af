/*
 * server_pool.c — the worker threads of `slm serve` (see server_pool.h).
 * Tasks run in the order queued; slm_srv_pool_free lets the queue empty
 * before the threads leave, so no queued task is dropped unrun.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "server_pool.h"

typedef struct task {
    void (*fn)(void *);
    void *arg;
    struct task *next;
} task;

struct slm_srv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    task *head, *tail;
    bool stopping;
    int n;
    pthread_t th[];
};

static void *worker(void *arg)
{
    slm_srv_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        task *t = p->head;
        if (!t)
            break;
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        t->fn(t->arg);
        free(t);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

slm_srv_pool *slm_srv_pool_create(int n)
{
    if (n < 1)
        n = 1;
    slm_srv_pool *p = calloc(1, sizeof *p + (size_t)n * sizeof(pthread_t));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (; p->n < n; p->n++)
        if (pthread_create(&p->th[p->n], NULL, worker, p)) {
            slm_srv_pool_free(p);
            return NULL;
        }
    return p;
}

int slm_srv_pool_run(slm_srv_pool *p, void (*fn)(void *), void *arg)
{
    task *t = malloc(sizeof *t);
    if (!t)
        return -1;
    *t = (task){fn, arg, NULL};
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void slm_srv_pool_free(slm_srv_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
