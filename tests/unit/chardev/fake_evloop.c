/* A minimal poll()-based stand-in for base/evloop.c, driven step by step by the chardev tests. */
#include "fake_evloop.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>

struct watch {
    int fd;
    uint32_t events;
    evloop_fd_cb cb;
    void *opaque;
};

static struct watch watches[32];
static unsigned nwatches;

struct evloop *fake_evloop(void)
{
    static int token;
    nwatches = 0;
    return (struct evloop *)&token;
}

int evloop_add_fd(struct evloop *ev, int fd, uint32_t events, evloop_fd_cb cb, void *opaque)
{
    struct stat st;
    /* As epoll: regular files cannot be watched. */
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode))
        return -EPERM;
    for (unsigned i = 0; i < nwatches; i++)
        if (watches[i].fd == fd)
            return -EEXIST;
    if (nwatches == 32)
        return -ENOSPC;
    watches[nwatches++] = (struct watch){fd, events, cb, opaque};
    return 0;
}

int evloop_mod_fd(struct evloop *ev, int fd, uint32_t events)
{
    for (unsigned i = 0; i < nwatches; i++) {
        if (watches[i].fd == fd) {
            watches[i].events = events;
            return 0;
        }
    }
    return -ENOENT;
}

void evloop_del_fd(struct evloop *ev, int fd)
{
    for (unsigned i = 0; i < nwatches; i++) {
        if (watches[i].fd == fd) {
            watches[i] = watches[--nwatches];
            return;
        }
    }
}

uint64_t clock_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

bool fake_evloop_watching(int fd)
{
    for (unsigned i = 0; i < nwatches; i++)
        if (watches[i].fd == fd)
            return true;
    return false;
}

int fake_evloop_step(int timeout_ms)
{
    struct pollfd pfd[32];
    struct watch snap[32];
    unsigned n = nwatches;
    for (unsigned i = 0; i < n; i++) {
        snap[i] = watches[i];
        pfd[i].fd = watches[i].fd;
        pfd[i].events = ((watches[i].events & EPOLLIN) ? POLLIN : 0) |
                        ((watches[i].events & EPOLLOUT) ? POLLOUT : 0);
        pfd[i].revents = 0;
    }
    int r = poll(pfd, n, timeout_ms);
    if (r <= 0)
        return 0;
    int fired = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!pfd[i].revents)
            continue;
        /* Skip watches a previous callback in this round removed. */
        if (!fake_evloop_watching(snap[i].fd))
            continue;
        uint32_t ev = ((pfd[i].revents & POLLIN) ? EPOLLIN : 0) |
                      ((pfd[i].revents & POLLOUT) ? EPOLLOUT : 0) |
                      ((pfd[i].revents & POLLHUP) ? EPOLLHUP : 0) |
                      ((pfd[i].revents & POLLERR) ? EPOLLERR : 0);
        snap[i].cb(snap[i].opaque, ev);
        fired++;
    }
    return fired;
}
