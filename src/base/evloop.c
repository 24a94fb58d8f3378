/* epoll event loop with timerfd timers and a cross-thread call queue. */
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct evloop_watch {
    int fd;
    evloop_fd_cb cb;
    void *opaque;
    struct evloop_watch *next;
    bool dead; /* deleted while the loop may still hold it in a batch */
};

struct evloop_call {
    void (*fn)(void *);
    void *opaque;
    struct evloop_call *next;
};

struct evloop {
    int epfd;
    int wakefd; /* eventfd: stop requests and queued calls */
    pthread_mutex_t *lock;
    void (*gate)(void *opaque, bool enter); /* around each batch, outside the lock; or NULL */
    void *gate_opaque;
    struct evloop_watch *watches;
    pthread_mutex_t calls_lock;
    struct evloop_call *calls, **calls_tail;
    bool stop; /* atomic: set by evloop_stop from any thread, cleared when evloop_run returns */
};

struct evtimer {
    struct evloop *ev;
    int fd;
    evtimer_cb cb;
    void *opaque;
};

uint64_t clock_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void evloop_wake_cb(void *opaque, uint32_t events)
{
    struct evloop *ev = opaque;
    uint64_t v;
    if (read(ev->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn("event loop: wake read failed: %s", strerror(errno));
    pthread_mutex_lock(&ev->calls_lock);
    struct evloop_call *c = ev->calls;
    ev->calls = NULL;
    ev->calls_tail = &ev->calls;
    pthread_mutex_unlock(&ev->calls_lock);
    while (c) {
        struct evloop_call *next = c->next;
        c->fn(c->opaque);
        free(c);
        c = next;
    }
}

struct evloop *evloop_new(void)
{
    struct evloop *ev = xzalloc(sizeof(*ev));
    ev->epfd = epoll_create1(EPOLL_CLOEXEC);
    ev->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ev->epfd < 0 || ev->wakefd < 0)
        die("cannot create the event loop: %s", strerror(errno));
    pthread_mutex_init(&ev->calls_lock, NULL);
    ev->calls_tail = &ev->calls;
    evloop_add_fd(ev, ev->wakefd, EPOLLIN, evloop_wake_cb, ev);
    return ev;
}

void evloop_free(struct evloop *ev)
{
    if (!ev)
        return;
    struct evloop_watch *w = ev->watches;
    while (w) {
        struct evloop_watch *next = w->next;
        free(w);
        w = next;
    }
    struct evloop_call *c = ev->calls;
    while (c) {
        struct evloop_call *next = c->next;
        free(c);
        c = next;
    }
    close(ev->epfd);
    close(ev->wakefd);
    pthread_mutex_destroy(&ev->calls_lock);
    free(ev);
}

void evloop_set_lock(struct evloop *ev, pthread_mutex_t *lock)
{
    ev->lock = lock;
}

void evloop_set_gate(struct evloop *ev, void (*gate)(void *opaque, bool enter), void *opaque)
{
    ev->gate = gate;
    ev->gate_opaque = opaque;
}

static struct evloop_watch *evloop_find(struct evloop *ev, int fd)
{
    for (struct evloop_watch *w = ev->watches; w; w = w->next)
        if (w->fd == fd && !w->dead)
            return w;
    return NULL;
}

int evloop_add_fd(struct evloop *ev, int fd, uint32_t epoll_events, evloop_fd_cb cb, void *opaque)
{
    struct evloop_watch *w = xzalloc(sizeof(*w));
    w->fd = fd;
    w->cb = cb;
    w->opaque = opaque;
    struct epoll_event e = {.events = epoll_events, .data.ptr = w};
    if (epoll_ctl(ev->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        int err = -errno;
        free(w);
        return err;
    }
    w->next = ev->watches;
    ev->watches = w;
    return 0;
}

int evloop_mod_fd(struct evloop *ev, int fd, uint32_t epoll_events)
{
    struct evloop_watch *w = evloop_find(ev, fd);
    if (!w)
        return -ENOENT;
    struct epoll_event e = {.events = epoll_events, .data.ptr = w};
    return epoll_ctl(ev->epfd, EPOLL_CTL_MOD, fd, &e) < 0 ? -errno : 0;
}

void evloop_del_fd(struct evloop *ev, int fd)
{
    struct evloop_watch *w = evloop_find(ev, fd);
    if (!w)
        return;
    epoll_ctl(ev->epfd, EPOLL_CTL_DEL, fd, NULL);
    /* Freed after the current batch: a pending event in it may still point here. */
    w->dead = true;
}

static void evloop_reap(struct evloop *ev)
{
    struct evloop_watch **pp = &ev->watches;
    while (*pp) {
        struct evloop_watch *w = *pp;
        if (w->dead) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

int evloop_run(struct evloop *ev)
{
    struct epoll_event events[32];
    /* A stop that came before this call (a vCPU powering off before the loop started) counts:
     * the flag is cleared on the way out, not on the way in. */
    while (!__atomic_load_n(&ev->stop, __ATOMIC_ACQUIRE)) {
        int n = epoll_wait(ev->epfd, events, ARRAY_SIZE(events), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (ev->gate)
            ev->gate(ev->gate_opaque, true);
        if (ev->lock)
            pthread_mutex_lock(ev->lock);
        for (int i = 0; i < n && !__atomic_load_n(&ev->stop, __ATOMIC_ACQUIRE); i++) {
            struct evloop_watch *w = events[i].data.ptr;
            if (!w->dead)
                w->cb(w->opaque, events[i].events);
        }
        evloop_reap(ev);
        if (ev->lock)
            pthread_mutex_unlock(ev->lock);
        if (ev->gate)
            ev->gate(ev->gate_opaque, false);
    }
    __atomic_store_n(&ev->stop, false, __ATOMIC_RELEASE);
    return 0;
}

void evloop_stop(struct evloop *ev)
{
    __atomic_store_n(&ev->stop, true, __ATOMIC_RELEASE);
    uint64_t one = 1;
    if (write(ev->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("event loop: wake write failed: %s", strerror(errno));
}

void evloop_call(struct evloop *ev, void (*fn)(void *), void *opaque)
{
    struct evloop_call *c = xzalloc(sizeof(*c));
    c->fn = fn;
    c->opaque = opaque;
    pthread_mutex_lock(&ev->calls_lock);
    *ev->calls_tail = c;
    ev->calls_tail = &c->next;
    pthread_mutex_unlock(&ev->calls_lock);
    uint64_t one = 1;
    if (write(ev->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("event loop: wake write failed: %s", strerror(errno));
}

static void evtimer_fire(void *opaque, uint32_t events)
{
    struct evtimer *t = opaque;
    uint64_t expirations;
    if (read(t->fd, &expirations, sizeof(expirations)) != sizeof(expirations))
        return; /* disarmed or re-armed since the event: nothing to do */
    t->cb(t->opaque);
}

struct evtimer *evtimer_new(struct evloop *ev, evtimer_cb cb, void *opaque)
{
    struct evtimer *t = xzalloc(sizeof(*t));
    t->ev = ev;
    t->cb = cb;
    t->opaque = opaque;
    t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (t->fd < 0 || evloop_add_fd(ev, t->fd, EPOLLIN, evtimer_fire, t) < 0)
        die("cannot create a timer: %s", strerror(errno));
    return t;
}

void evtimer_arm(struct evtimer *t, uint64_t ns_from_now, uint64_t period_ns)
{
    struct itimerspec its = {
        .it_value = {(time_t)(ns_from_now / 1000000000ULL), (long)(ns_from_now % 1000000000ULL)},
        .it_interval = {(time_t)(period_ns / 1000000000ULL), (long)(period_ns % 1000000000ULL)},
    };
    timerfd_settime(t->fd, 0, &its, NULL);
}

void evtimer_free(struct evtimer *t)
{
    if (!t)
        return;
    evloop_del_fd(t->ev, t->fd);
    close(t->fd);
    free(t);
}
