/* io_uring half of the I/O engine: raw reads, writes and flushes go straight to the kernel. */
#include "block/blk_driver.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define URING_ENTRIES 256

struct blk_uring {
    struct io_uring ring;
    pthread_mutex_t lock; /* submissions may come from several threads (vCPUs) */
    unsigned inflight;
};

int blk_uring_new(int efd, struct blk_uring **out)
{
    struct blk_uring *u = xzalloc(sizeof(*u));
    int r = io_uring_queue_init(URING_ENTRIES, &u->ring, 0);
    if (r < 0) {
        free(u);
        return r;
    }
    r = io_uring_register_eventfd(&u->ring, efd);
    if (r < 0) {
        io_uring_queue_exit(&u->ring);
        free(u);
        return r;
    }
    pthread_mutex_init(&u->lock, NULL);
    *out = u;
    return 0;
}

void blk_uring_free(struct blk_uring *u)
{
    if (!u)
        return;
    /* Wait for what the kernel still owns: its buffers belong to callers. */
    pthread_mutex_lock(&u->lock);
    while (u->inflight) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&u->ring, &cqe) < 0)
            break;
        struct blk_req *r = io_uring_cqe_get_data(cqe);
        io_uring_cqe_seen(&u->ring, cqe);
        u->inflight--;
        if (r) {
            if (r->cb)
                r->cb(r->opaque, -ECANCELED);
            blk_req_free(r);
        }
    }
    pthread_mutex_unlock(&u->lock);
    io_uring_queue_exit(&u->ring);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

int blk_uring_submit(struct blk_uring *u, struct blk_req *r, int fd)
{
    pthread_mutex_lock(&u->lock);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    /* The completion queue is as deep as the submission queue; beyond that, use the pool. */
    if (!sqe || u->inflight >= URING_ENTRIES) {
        pthread_mutex_unlock(&u->lock);
        return -EBUSY;
    }
    r->fd = fd;
    switch (r->op) {
    case BLK_OP_READ:
        io_uring_prep_readv(sqe, fd, r->iov, (unsigned)r->iovcnt, r->offset);
        break;
    case BLK_OP_WRITE:
        io_uring_prep_writev2(sqe, fd, r->iov, (unsigned)r->iovcnt, r->offset,
                              r->sync_write ? RWF_DSYNC : 0);
        break;
    case BLK_OP_FLUSH:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    default:
        pthread_mutex_unlock(&u->lock);
        return -ENOTSUP;
    }
    io_uring_sqe_set_data(sqe, r);
    /* Once prepared, the entry belongs to the ring: it must not also go to the pool, so
     * retry a busy kernel rather than fail (the next submit would send it anyway). */
    int ret;
    for (int tries = 0; (ret = io_uring_submit(&u->ring)) < 0 && tries < 1000; tries++)
        usleep(100);
    if (ret < 0)
        log_once(LOG_ERROR, "block: io_uring_submit keeps failing: %s", strerror(-ret));
    u->inflight++;
    pthread_mutex_unlock(&u->lock);
    return 0;
}

int blk_uring_reap(struct blk_uring *u, struct blk_req **list)
{
    int n = 0;
    struct blk_req *got = NULL, **tail = &got;
    pthread_mutex_lock(&u->lock);
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        struct blk_req *r = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        u->inflight--;
        if (!r)
            continue;
        r->ret = res < 0 ? res : 0;
        /* A short transfer (end of file, signal) or EAGAIN: redo it the blocking way. */
        if ((r->op == BLK_OP_READ || r->op == BLK_OP_WRITE) &&
            ((res >= 0 && (uint64_t)res != r->len) || res == -EAGAIN) && r->work)
            r->ret = 1; /* marker: run r->work below, outside the lock */
        r->next = NULL;
        *tail = r;
        tail = &r->next;
        n++;
    }
    pthread_mutex_unlock(&u->lock);
    for (struct blk_req *r = got; r; r = r->next)
        if (r->ret == 1)
            r->ret = r->work(r);
    while (*list)
        list = &(*list)->next;
    *list = got;
    return n;
}

unsigned blk_uring_inflight(struct blk_uring *u)
{
    return u ? u->inflight : 0;
}
