/* The I/O engine: io_uring when the kernel allows it, a thread pool otherwise, one eventfd. */
#include "block/blk_driver.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct blk_aio {
    enum blk_aio_kind kind;
    int efd;
    struct blk_pool *pool;   /* always present: formats do their work here */
    struct blk_uring *uring; /* NULL when io_uring is unavailable or aio=threads */
    pthread_mutex_t reaped_lock;
    struct blk_req *reaped;  /* reaped by blk_aio_reap_hooks, callbacks not run yet */
};

struct blk_req *blk_req_new(struct blk *b, enum blk_op op, uint64_t offset, uint64_t len,
                            const struct iovec *iov, int iovcnt, blk_completion_fn cb,
                            void *opaque)
{
    struct blk_req *r = xzalloc(sizeof(*r));
    r->b = b;
    r->op = op;
    r->offset = offset;
    r->len = len;
    r->cb = cb;
    r->opaque = opaque;
    r->fd = -1;
    if (iovcnt > 0) {
        r->iov = iovcnt <= (int)ARRAY_SIZE(r->iov_inline) ? r->iov_inline
                                                          : xmalloc(sizeof(*iov) * iovcnt);
        memcpy(r->iov, iov, sizeof(*iov) * iovcnt);
        r->iovcnt = iovcnt;
    }
    return r;
}

void blk_req_free(struct blk_req *r)
{
    if (r->iov && r->iov != r->iov_inline)
        free(r->iov);
    free(r);
}

int blk_aio_new(enum blk_aio_kind kind, struct blk_aio **out)
{
    struct blk_aio *e = xzalloc(sizeof(*e));
    e->kind = kind;
    pthread_mutex_init(&e->reaped_lock, NULL);
    e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->efd < 0) {
        int r = -errno;
        free(e);
        log_error("block: cannot create an eventfd: %s", strerror(-r));
        return r;
    }
    if (kind != BLK_AIO_THREADS) {
        int r = blk_uring_new(e->efd, &e->uring);
        if (r < 0) {
            if (kind == BLK_AIO_IO_URING)
                log_warn("block: io_uring is unavailable (%s); using the thread pool",
                         strerror(-r));
            e->uring = NULL;
        }
    }
    e->kind = e->uring ? BLK_AIO_IO_URING : BLK_AIO_THREADS;
    e->pool = blk_pool_new(e->efd, 16); /* enough to keep O_DIRECT queues busy */
    *out = e;
    return 0;
}

void blk_aio_free(struct blk_aio *e)
{
    if (!e)
        return;
    blk_pool_free(e->pool);
    blk_uring_free(e->uring);
    while (e->reaped) { /* nobody processed them: complete them so no owner waits forever */
        struct blk_req *r = e->reaped;
        e->reaped = r->next;
        if (r->cb)
            r->cb(r->opaque, r->ret);
        blk_req_free(r);
    }
    pthread_mutex_destroy(&e->reaped_lock);
    close(e->efd);
    free(e);
}

int blk_aio_eventfd(struct blk_aio *e)
{
    return e->efd;
}

bool blk_aio_has_uring(const struct blk_aio *e)
{
    return e->uring != NULL;
}

static int aio_process(struct blk_aio *e)
{
    uint64_t v;
    (void)!read(e->efd, &v, sizeof(v)); /* clear before reaping: no lost wakeups */
    struct blk_req *list = NULL;
    int n = 0;
    pthread_mutex_lock(&e->reaped_lock);
    list = e->reaped;
    e->reaped = NULL;
    pthread_mutex_unlock(&e->reaped_lock);
    for (struct blk_req *r = list; r; r = r->next)
        n++;
    n += blk_pool_reap(e->pool, &list);
    if (e->uring)
        n += blk_uring_reap(e->uring, &list);
    while (list) {
        struct blk_req *r = list;
        list = r->next;
        if (r->done)
            r->done(r);
        if (r->b)
            __atomic_sub_fetch(&r->b->inflight, 1, __ATOMIC_RELEASE);
        if (r->cb)
            r->cb(r->opaque, r->ret);
        blk_req_free(r);
    }
    return n;
}

void blk_aio_reap_hooks(struct blk_aio *e)
{
    if (!e || !e->uring)
        return;
    struct blk_req *list = NULL;
    if (blk_uring_reap(e->uring, &list) == 0)
        return;
    for (struct blk_req *r = list; r; r = r->next)
        if (r->done) {
            r->done(r);
            r->done = NULL;
        }
    pthread_mutex_lock(&e->reaped_lock);
    struct blk_req **tail = &e->reaped;
    while (*tail)
        tail = &(*tail)->next;
    *tail = list;
    pthread_mutex_unlock(&e->reaped_lock);
    /* The processing thread may have read the eventfd already: wake it for these. */
    uint64_t one = 1;
    while (write(e->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void blk_aio_process(struct blk_aio *e)
{
    aio_process(e);
}

void blk_aio_wait(struct blk_aio *e)
{
    for (;;) {
        if (aio_process(e) > 0)
            return;
        struct pollfd pfd = {.fd = e->efd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            return;
    }
}

void blk_aio_submit_work(struct blk_aio *e, struct blk_req *r)
{
    blk_pool_submit(e->pool, r);
}

int blk_aio_submit_uring(struct blk_aio *e, struct blk_req *r, int fd)
{
    if (!e->uring)
        return -ENOTSUP;
    return blk_uring_submit(e->uring, r, fd);
}

void blk_aio_complete_later(struct blk_aio *e, struct blk_req *r)
{
    blk_pool_complete(e->pool, r);
}

static struct blk_aio *default_engine;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_free(void)
{
    blk_aio_free(default_engine);
    default_engine = NULL;
}

static void default_init(void)
{
    if (blk_aio_new(BLK_AIO_DEFAULT, &default_engine) < 0)
        die("block: cannot create the I/O engine");
    atexit(default_free);
}

struct blk_aio *blk_aio_default(void)
{
    pthread_once(&default_once, default_init);
    return default_engine;
}

enum blk_aio_kind blk_aio_kind_of(const struct blk_aio *e)
{
    return e->kind;
}
