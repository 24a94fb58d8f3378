/* Thread-pool half of the I/O engine: runs blocking work and queues its completions. */
#include "block/blk_driver.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

struct blk_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct blk_req *head, *tail; /* waiting for a thread */
    struct blk_req *done;        /* finished, waiting for blk_aio_process */
    bool stop;
    int efd;
    unsigned nthreads;
    pthread_t threads[16];
};

static void pool_signal(struct blk_pool *p)
{
    uint64_t one = 1;
    while (write(p->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void blk_pool_complete(struct blk_pool *p, struct blk_req *r)
{
    pthread_mutex_lock(&p->lock);
    r->next = p->done;
    p->done = r;
    pthread_mutex_unlock(&p->lock);
    pool_signal(p);
}

static void *pool_thread(void *arg)
{
    struct blk_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cond, &p->lock);
        if (!p->head)
            break;
        struct blk_req *r = p->head;
        p->head = r->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        r->ret = r->work(r);
        pthread_mutex_lock(&p->lock);
        r->next = p->done;
        p->done = r;
        pthread_mutex_unlock(&p->lock);
        pool_signal(p);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct blk_pool *blk_pool_new(int efd, unsigned nthreads)
{
    struct blk_pool *p = xzalloc(sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->efd = efd;
    nthreads = MIN(MAX(nthreads, 1u), (unsigned)ARRAY_SIZE(p->threads));
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_thread, p) != 0)
            break;
        p->nthreads++;
    }
    if (!p->nthreads)
        die("block layer: cannot create I/O worker threads");
    return p;
}

void blk_pool_free(struct blk_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* Requests nobody processed: complete them so their owners are not left waiting. */
    while (p->done) {
        struct blk_req *r = p->done;
        p->done = r->next;
        if (r->cb)
            r->cb(r->opaque, r->ret);
        blk_req_free(r);
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void blk_pool_submit(struct blk_pool *p, struct blk_req *r)
{
    r->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int blk_pool_reap(struct blk_pool *p, struct blk_req **list)
{
    pthread_mutex_lock(&p->lock);
    struct blk_req *d = p->done;
    p->done = NULL;
    pthread_mutex_unlock(&p->lock);
    /* Reverse into submission-ish order and append. */
    int n = 0;
    struct blk_req *rev = NULL;
    while (d) {
        struct blk_req *nx = d->next;
        d->next = rev;
        rev = d;
        d = nx;
        n++;
    }
    while (*list)
        list = &(*list)->next;
    *list = rev;
    return n;
}
