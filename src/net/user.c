/* -netdev user: libslirp NAT (DHCP, DNS, hostfwd, no root), its fds and timers on the evloop. */
#include "base/dynlib.h"
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "net/net_internal.h"
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <slirp/libslirp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Frames slirp produced that the device has not taken yet; beyond this they are dropped
 * (slirp speaks TCP to the guest, which retransmits). */
#define USER_QUEUE_MAX 512

struct user_frame {
    struct user_frame *next;
    size_t len;
    uint8_t data[];
};

struct user_timer {
    struct user_be *u;
    struct evtimer *t;
    SlirpTimerCb cb;
    void *cb_opaque;
    struct user_timer *next;
};

struct user_fd {
    int fd;
    uint32_t events; /* epoll events */
};

struct user_be {
    struct net_backend nb;
    Slirp *slirp;
    int epfd;          /* inner epoll over slirp's sockets, itself watched by the evloop */
    bool epfd_registered;
    struct pollfd *pfd; /* what slirp asked for in the last fill */
    unsigned npfd, cappfd;
    struct user_fd *watched; /* what epfd holds */
    unsigned nwatched;
    struct evtimer *poll_timer; /* slirp's fill timeout: its TCP timers need a poll pass */
    struct user_timer *timers;
    struct user_frame *qhead, **qtail;
    unsigned qlen;
    bool in_poll;
};

static ssize_t user_send_packet(const void *buf, size_t len, void *opaque)
{
    struct user_be *u = opaque;
    if (u->qlen >= USER_QUEUE_MAX || len > NET_MAX_FRAME)
        return (ssize_t)len;
    struct user_frame *f = xmalloc(sizeof(*f) + len);
    f->next = NULL;
    f->len = len;
    memcpy(f->data, buf, len);
    *u->qtail = f;
    u->qtail = &f->next;
    u->qlen++;
    net_backend_kick(&u->nb, 0); /* delivered from the loop, never inside send */
    return (ssize_t)len;
}

static void user_resume(struct net_backend *nb, unsigned q)
{
    struct user_be *u = container_of(nb, struct user_be, nb);
    while (u->qhead && nb->client && !nb->blocked[0]) {
        struct user_frame *f = u->qhead;
        struct iovec iov = {f->data, f->len};
        if (net_backend_deliver(nb, 0, &iov, 1) == 0)
            break;
        u->qhead = f->next;
        if (!u->qhead)
            u->qtail = &u->qhead;
        u->qlen--;
        free(f);
    }
}

static void user_guest_error(const char *msg, void *opaque)
{
    struct user_be *u = opaque;
    log_once(LOG_WARN, "-netdev user,id=%s: guest error: %s", u->nb.id, msg);
}

static int64_t user_clock_ns(void *opaque)
{
    return (int64_t)clock_monotonic_ns();
}

static void user_sync(struct user_be *u);

static void user_timer_fire(void *opaque)
{
    struct user_timer *t = opaque;
    t->cb(t->cb_opaque);
    user_sync(t->u);
}

static void *user_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
    struct user_be *u = opaque;
    struct user_timer *t = xzalloc(sizeof(*t));
    t->u = u;
    t->cb = cb;
    t->cb_opaque = cb_opaque;
    t->t = evtimer_new(u->nb.ev, user_timer_fire, t);
    t->next = u->timers;
    u->timers = t;
    return t;
}

static void user_timer_free(void *timer, void *opaque)
{
    struct user_be *u = opaque;
    for (struct user_timer **pp = &u->timers; *pp; pp = &(*pp)->next) {
        if (*pp == timer) {
            struct user_timer *t = *pp;
            *pp = t->next;
            evtimer_free(t->t);
            free(t);
            return;
        }
    }
}

static void user_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    struct user_timer *t = timer;
    int64_t now = (int64_t)clock_monotonic_ns();
    int64_t delta = expire_ms * 1000000 - now;
    evtimer_arm(t->t, delta > 0 ? (uint64_t)delta : 1, 0);
}

static void user_register_fd(int fd, void *opaque) {}
static void user_unregister_fd(int fd, void *opaque) {}
static void user_notify(void *opaque) {}

static const SlirpCb user_cb = {
    .send_packet = user_send_packet,
    .guest_error = user_guest_error,
    .clock_get_ns = user_clock_ns,
    .timer_new = user_timer_new,
    .timer_free = user_timer_free,
    .timer_mod = user_timer_mod,
    .register_poll_fd = user_register_fd,
    .unregister_poll_fd = user_unregister_fd,
    .notify = user_notify,
};

/* libslirp, loaded by the first -netdev user (base/dynlib.h says why). */
static struct {
    Slirp *(*new_)(const SlirpConfig *cfg, const SlirpCb *callbacks, void *opaque);
    void (*cleanup)(Slirp *slirp);
    void (*input)(Slirp *slirp, const uint8_t *pkt, int pkt_len);
    void (*pollfds_fill)(Slirp *slirp, uint32_t *timeout, SlirpAddPollCb add_poll, void *opaque);
    void (*pollfds_poll)(Slirp *slirp, int select_error, SlirpGetREventsCb get_revents,
                         void *opaque);
    int (*add_hostfwd)(Slirp *slirp, int is_udp, struct in_addr host_addr, int host_port,
                       struct in_addr guest_addr, int guest_port);
} slirp_api;

static int slirp_api_load(const char *id)
{
    static const char *const names[] = {"slirp_new", "slirp_cleanup", "slirp_input",
                                        "slirp_pollfds_fill", "slirp_pollfds_poll",
                                        "slirp_add_hostfwd"};
    char why[256];
    if (dynlib_load("libslirp.so.0", "libslirp0", names, (void **)&slirp_api,
                    sizeof(slirp_api) / sizeof(void *), why, sizeof(why)) < 0) {
        log_error("-netdev user,id=%s: %s", id, why);
        return -ENOENT;
    }
    return 0;
}

static int user_add_poll(int fd, int events, void *opaque)
{
    struct user_be *u = opaque;
    if (u->npfd == u->cappfd) {
        u->cappfd = u->cappfd ? u->cappfd * 2 : 16;
        u->pfd = xrealloc(u->pfd, u->cappfd * sizeof(*u->pfd));
    }
    short ev = 0;
    if (events & SLIRP_POLL_IN)
        ev |= POLLIN;
    if (events & SLIRP_POLL_OUT)
        ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI)
        ev |= POLLPRI;
    u->pfd[u->npfd] = (struct pollfd){.fd = fd, .events = ev};
    return (int)u->npfd++;
}

static int user_get_revents(int idx, void *opaque)
{
    struct user_be *u = opaque;
    if (idx < 0 || (unsigned)idx >= u->npfd)
        return 0;
    short r = u->pfd[idx].revents;
    int ev = 0;
    if (r & POLLIN)
        ev |= SLIRP_POLL_IN;
    if (r & POLLOUT)
        ev |= SLIRP_POLL_OUT;
    if (r & POLLPRI)
        ev |= SLIRP_POLL_PRI;
    if (r & POLLERR)
        ev |= SLIRP_POLL_ERR;
    if (r & POLLHUP)
        ev |= SLIRP_POLL_HUP;
    return ev;
}

/* Asks slirp which sockets it wants polled and mirrors that into the inner epoll set. */
static void user_sync(struct user_be *u)
{
    if (u->in_poll)
        return;
    uint32_t timeout = UINT32_MAX;
    u->npfd = 0;
    slirp_api.pollfds_fill(u->slirp, &timeout, user_add_poll, u);

    struct user_fd *now = xmalloc((u->npfd + 1) * sizeof(*now));
    unsigned nnow = 0;
    for (unsigned i = 0; i < u->npfd; i++) {
        uint32_t ev = 0;
        if (u->pfd[i].events & POLLIN)
            ev |= EPOLLIN;
        if (u->pfd[i].events & POLLOUT)
            ev |= EPOLLOUT;
        if (u->pfd[i].events & POLLPRI)
            ev |= EPOLLPRI;
        /* slirp may list one fd twice; merge. */
        unsigned j;
        for (j = 0; j < nnow && now[j].fd != u->pfd[i].fd; j++)
            ;
        if (j < nnow)
            now[j].events |= ev;
        else
            now[nnow++] = (struct user_fd){u->pfd[i].fd, ev};
    }
    for (unsigned i = 0; i < u->nwatched; i++) {
        unsigned j;
        for (j = 0; j < nnow && now[j].fd != u->watched[i].fd; j++)
            ;
        if (j == nnow)
            epoll_ctl(u->epfd, EPOLL_CTL_DEL, u->watched[i].fd, NULL);
    }
    for (unsigned j = 0; j < nnow; j++) {
        unsigned i;
        for (i = 0; i < u->nwatched && u->watched[i].fd != now[j].fd; i++)
            ;
        struct epoll_event e = {.events = now[j].events, .data.fd = now[j].fd};
        if (i == u->nwatched) {
            if (epoll_ctl(u->epfd, EPOLL_CTL_ADD, now[j].fd, &e) < 0 && errno == EEXIST)
                epoll_ctl(u->epfd, EPOLL_CTL_MOD, now[j].fd, &e);
        } else if (u->watched[i].events != now[j].events) {
            epoll_ctl(u->epfd, EPOLL_CTL_MOD, now[j].fd, &e);
        }
    }
    free(u->watched);
    u->watched = now;
    u->nwatched = nnow;
    if (timeout != UINT32_MAX)
        evtimer_arm(u->poll_timer, (uint64_t)(timeout ? timeout : 1) * 1000000ULL, 0);
}

static void user_poll_pass(struct user_be *u)
{
    struct epoll_event evs[64];
    while (epoll_wait(u->epfd, evs, ARRAY_SIZE(evs), 0) == (int)ARRAY_SIZE(evs))
        ; /* drain; the revents come from poll() below */
    int n = u->npfd ? poll(u->pfd, u->npfd, 0) : 0;
    u->in_poll = true;
    slirp_api.pollfds_poll(u->slirp, n < 0, user_get_revents, u);
    u->in_poll = false;
    user_sync(u);
}

static void user_epfd_cb(void *opaque, uint32_t events)
{
    user_poll_pass(opaque);
}

static void user_poll_timer_cb(void *opaque)
{
    user_poll_pass(opaque);
}

static ssize_t user_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
    struct user_be *u = container_of(nb, struct user_be, nb);
    static uint8_t buf[NET_MAX_FRAME];
    ssize_t len = net_iov_to_buf(iov, iovcnt, buf, sizeof(buf));
    if (len < 0)
        return len;
    if (len < 14)
        return -EINVAL; /* not even an Ethernet header */
    slirp_api.input(u->slirp, buf, (int)len);
    user_sync(u);
    return len;
}

static void user_free(struct net_backend *nb)
{
    struct user_be *u = container_of(nb, struct user_be, nb);
    if (u->slirp)
        slirp_api.cleanup(u->slirp);
    while (u->timers)
        user_timer_free(u->timers, u);
    if (u->poll_timer)
        evtimer_free(u->poll_timer);
    if (u->epfd_registered)
        evloop_del_fd(nb->ev, u->epfd);
    if (u->epfd >= 0)
        close(u->epfd);
    while (u->qhead) {
        struct user_frame *f = u->qhead;
        u->qhead = f->next;
        free(f);
    }
    free(u->pfd);
    free(u->watched);
    free(u);
}

static const struct net_backend_ops user_ops = {
    .send = user_send,
    .resume = user_resume,
    .free = user_free,
};

int net_user_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out)
{
    if (!ev) {
        log_error("-netdev user,id=%s: needs an event loop", o->id);
        return -EINVAL;
    }
    if (slirp_api_load(o->id) < 0)
        return -ENOENT;
    struct user_be *u = xzalloc(sizeof(*u));
    u->epfd = -1;
    u->qtail = &u->qhead;
    int r = net_backend_init(&u->nb, &user_ops, o, ev);
    if (r < 0) {
        free(u);
        return r;
    }
    u->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (u->epfd < 0 || evloop_add_fd(ev, u->epfd, EPOLLIN, user_epfd_cb, u) < 0) {
        r = -errno;
        log_error("-netdev user,id=%s: cannot set up polling: %s", o->id, strerror(errno));
        net_backend_free(&u->nb);
        return r;
    }
    u->epfd_registered = true;
    u->poll_timer = evtimer_new(ev, user_poll_timer_cb, u);

    SlirpConfig cfg = {
        .version = 3,
        .restricted = o->restrict_net,
        .in_enabled = true,
        .vnetwork = o->net,
        .vnetmask = o->netmask,
        .vhost = o->host,
        .in6_enabled = false,
        .vhostname = o->hostname,
        .tftp_path = o->tftp,
        .bootfile = o->bootfile,
        .vdhcp_start = o->dhcpstart,
        .vnameserver = o->dns,
        .vdomainname = o->domainname,
    };
    u->slirp = slirp_api.new_(&cfg, &user_cb, u);
    if (!u->slirp) {
        log_error("-netdev user,id=%s: libslirp refused the configuration", o->id);
        net_backend_free(&u->nb);
        return -EINVAL;
    }
    char hostfwd_info[256] = "";
    size_t hl = 0;
    for (unsigned i = 0; i < o->nhostfwd; i++) {
        const struct net_hostfwd *f = &o->hostfwd[i];
        char ha[INET_ADDRSTRLEN], ga[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &f->host_addr, ha, sizeof(ha));
        inet_ntop(AF_INET, &f->guest_addr, ga, sizeof(ga));
        if (slirp_api.add_hostfwd(u->slirp, f->udp, f->host_addr, f->host_port, f->guest_addr,
                              f->guest_port) < 0) {
            log_error("-netdev user,id=%s: cannot forward host %s port %s:%u to the guest "
                      "(is the port in use?)",
                      o->id, f->udp ? "UDP" : "TCP", ha, f->host_port);
            net_backend_free(&u->nb);
            return -EADDRINUSE;
        }
        if (hl < sizeof(hostfwd_info))
            hl += (size_t)snprintf(hostfwd_info + hl, sizeof(hostfwd_info) - hl,
                                   ",hostfwd=%s:%s:%u-%s:%u", f->udp ? "udp" : "tcp", ha,
                                   f->host_port, ga, f->guest_port);
    }
    char net[INET_ADDRSTRLEN], host[INET_ADDRSTRLEN], dns[INET_ADDRSTRLEN],
        dhcp[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &o->net, net, sizeof(net));
    inet_ntop(AF_INET, &o->host, host, sizeof(host));
    inet_ntop(AF_INET, &o->dns, dns, sizeof(dns));
    inet_ntop(AF_INET, &o->dhcpstart, dhcp, sizeof(dhcp));
    snprintf(u->nb.info, sizeof(u->nb.info),
             "user: net=%s/%d,host=%s,dns=%s,dhcpstart=%s,restrict=%s%s", net,
             __builtin_popcount(o->netmask.s_addr), host, dns, dhcp,
             o->restrict_net ? "on" : "off", hostfwd_info);
    u->nb.link_up = true;
    user_sync(u);
    *out = &u->nb;
    return 0;
}
