/* -netdev socket: VM-to-VM links over TCP (QEMU's 4-byte big-endian length framing) or UDP
 * multicast (one frame per datagram). */
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "net/net_internal.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct sock_be {
    struct net_backend nb;
    enum net_socket_mode mode;
    int listen_fd; /* listen=: waits for the peer; -1 otherwise */
    int fd;        /* the peer connection, or the multicast socket; -1 when none */
    bool registered;
    struct sockaddr_in mcast;
    /* Receive side: TCP reassembly of [len][frame]. */
    uint8_t *rbuf;
    size_t rlen;     /* bytes in rbuf */
    size_t held_len; /* a complete frame the client had no room for (at rbuf + 4 / rbuf) */
    /* Send side: what the kernel has not taken yet (TCP). */
    uint8_t *wbuf;
    size_t wlen, woff;
};

#define SOCK_RBUF (4 + NET_MAX_FRAME)
#define SOCK_WBUF (2 * (4 + NET_MAX_FRAME))

static void sock_update_events(struct sock_be *s)
{
    if (s->fd < 0 || !s->registered)
        return;
    uint32_t ev = 0;
    if (s->nb.client && !s->held_len && !s->nb.blocked[0])
        ev |= EPOLLIN;
    if (s->wlen > s->woff)
        ev |= EPOLLOUT;
    evloop_mod_fd(s->nb.ev, s->fd, ev);
}

static void sock_fd_cb(void *opaque, uint32_t events);

static void sock_drop_peer(struct sock_be *s, const char *why)
{
    if (s->fd < 0)
        return;
    if (why)
        log_warn("-netdev socket,id=%s: peer connection closed (%s)%s", s->nb.id, why,
                 s->mode == NET_SOCKET_LISTEN ? "; waiting for a new one" : "");
    if (s->registered)
        evloop_del_fd(s->nb.ev, s->fd);
    s->registered = false;
    close(s->fd);
    s->fd = -1;
    s->rlen = s->held_len = 0;
    s->wlen = s->woff = 0;
    if (s->listen_fd >= 0 && s->nb.ev)
        evloop_mod_fd(s->nb.ev, s->listen_fd, EPOLLIN);
}

static int sock_set_peer(struct sock_be *s, int fd)
{
    int one = 1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (s->mode != NET_SOCKET_MCAST)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->fd = fd;
    if (s->nb.ev) {
        int r = evloop_add_fd(s->nb.ev, fd, 0, sock_fd_cb, s);
        if (r < 0)
            return r;
        s->registered = true;
    }
    sock_update_events(s);
    return 0;
}

static void sock_accept_cb(void *opaque, uint32_t events)
{
    struct sock_be *s = opaque;
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (s->fd >= 0) {
        close(fd); /* one peer at a time, as QEMU */
        return;
    }
    if (sock_set_peer(s, fd) < 0) {
        close(fd);
        s->fd = -1;
        return;
    }
    evloop_mod_fd(s->nb.ev, s->listen_fd, 0);
}

/* The frame in rbuf that is complete, if any: its offset and length. TCP only. */
static bool sock_frame_ready(struct sock_be *s, size_t *len)
{
    if (s->rlen < 4)
        return false;
    uint32_t be;
    memcpy(&be, s->rbuf, 4);
    *len = ntohl(be);
    return s->rlen >= 4 + *len;
}

static ssize_t sock_deliver(struct sock_be *s, uint8_t *p, size_t len)
{
    struct iovec iov = {p, len};
    return net_backend_deliver(&s->nb, 0, &iov, 1);
}

static void sock_consume_frame(struct sock_be *s, size_t len)
{
    memmove(s->rbuf, s->rbuf + 4 + len, s->rlen - 4 - len);
    s->rlen -= 4 + len;
}

static void sock_read_some(struct sock_be *s)
{
    for (int n = 0; n < 64 && s->fd >= 0 && s->nb.client && !s->nb.blocked[0]; n++) {
        if (s->held_len) {
            uint8_t *p = s->mode == NET_SOCKET_MCAST ? s->rbuf : s->rbuf + 4;
            if (sock_deliver(s, p, s->held_len) == 0)
                break;
            if (s->mode != NET_SOCKET_MCAST)
                sock_consume_frame(s, s->held_len);
            s->held_len = 0;
            continue;
        }
        if (s->mode == NET_SOCKET_MCAST) {
            ssize_t r = recv(s->fd, s->rbuf, NET_MAX_FRAME, 0);
            if (r <= 0)
                break;
            if (sock_deliver(s, s->rbuf, (size_t)r) == 0)
                s->held_len = (size_t)r;
            continue;
        }
        size_t flen = 0;
        if (sock_frame_ready(s, &flen)) {
            if (flen == 0) {
                sock_consume_frame(s, 0);
                continue;
            }
            if (sock_deliver(s, s->rbuf + 4, flen) == 0)
                s->held_len = flen;
            else
                sock_consume_frame(s, flen);
            continue;
        }
        if (s->rlen >= 4 && flen > NET_MAX_FRAME) {
            /* The peer is untrusted too: a length we cannot hold means the stream is bad. */
            sock_drop_peer(s, "frame length too large; the peer does not speak QEMU's framing");
            return;
        }
        ssize_t r = recv(s->fd, s->rbuf + s->rlen, SOCK_RBUF - s->rlen, 0);
        if (r == 0) {
            sock_drop_peer(s, "end of stream");
            return;
        }
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                sock_drop_peer(s, strerror(errno));
            break;
        }
        s->rlen += (size_t)r;
    }
    sock_update_events(s);
}

static void sock_flush(struct sock_be *s)
{
    while (s->woff < s->wlen) {
        ssize_t r = send(s->fd, s->wbuf + s->woff, s->wlen - s->woff, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            sock_drop_peer(s, strerror(errno));
            return;
        }
        s->woff += (size_t)r;
    }
    if (s->woff == s->wlen)
        s->woff = s->wlen = 0;
}

static void sock_fd_cb(void *opaque, uint32_t events)
{
    struct sock_be *s = opaque;
    if (events & EPOLLOUT) {
        bool was_full = s->wlen > 0;
        sock_flush(s);
        if (s->fd < 0)
            return;
        sock_update_events(s);
        if (was_full && !s->wlen && s->nb.client && s->nb.client->tx_ready)
            s->nb.client->tx_ready(s->nb.client_opaque, 0);
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        sock_read_some(s);
}

static void sock_resume(struct net_backend *nb, unsigned q)
{
    sock_read_some(container_of(nb, struct sock_be, nb));
}

static ssize_t sock_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
    struct sock_be *s = container_of(nb, struct sock_be, nb);
    size_t len = net_iov_size(iov, iovcnt);
    if (s->fd < 0)
        return (ssize_t)len; /* no peer: the wire is unplugged, the frame is lost */
    if (s->mode == NET_SOCKET_MCAST) {
        struct msghdr mh = {.msg_name = &s->mcast, .msg_namelen = sizeof(s->mcast),
                            .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t r = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
        return r < 0 ? -errno : (ssize_t)len;
    }
    if (s->wlen) {
        sock_flush(s);
        if (s->fd < 0)
            return (ssize_t)len;
        if (s->wlen)
            return -EAGAIN;
    }
    uint32_t be = htonl((uint32_t)len);
    memcpy(s->wbuf, &be, 4);
    if (net_iov_to_buf(iov, iovcnt, s->wbuf + 4, SOCK_WBUF - 4) < 0)
        return -EMSGSIZE;
    s->wlen = 4 + len;
    s->woff = 0;
    sock_flush(s);
    if (s->fd >= 0)
        sock_update_events(s);
    return (ssize_t)len;
}

static void sock_free(struct net_backend *nb)
{
    struct sock_be *s = container_of(nb, struct sock_be, nb);
    if (s->fd >= 0) {
        if (s->registered)
            evloop_del_fd(nb->ev, s->fd);
        close(s->fd);
    }
    if (s->listen_fd >= 0) {
        if (nb->ev)
            evloop_del_fd(nb->ev, s->listen_fd);
        close(s->listen_fd);
    }
    free(s->rbuf);
    free(s->wbuf);
    free(s);
}

static const struct net_backend_ops sock_ops = {
    .send = sock_send,
    .resume = sock_resume,
    .free = sock_free,
};

int net_socket_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out)
{
    struct sock_be *s = xzalloc(sizeof(*s));
    s->fd = s->listen_fd = -1;
    int r = net_backend_init(&s->nb, &sock_ops, o, ev);
    if (r < 0) {
        free(s);
        return r;
    }
    s->mode = o->socket_mode;
    s->rbuf = xmalloc(SOCK_RBUF);
    s->wbuf = xmalloc(SOCK_WBUF);
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &o->socket_addr.sin_addr, addr, sizeof(addr));
    unsigned port = ntohs(o->socket_addr.sin_port);
    int one = 1;
    const char *how = "";
    switch (o->socket_mode) {
    case NET_SOCKET_LISTEN:
        how = "listen";
        s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->listen_fd < 0)
            goto syserr;
        setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(s->listen_fd, (const struct sockaddr *)&o->socket_addr,
                 sizeof(o->socket_addr)) < 0 ||
            listen(s->listen_fd, 1) < 0)
            goto syserr;
        if (ev && (r = evloop_add_fd(ev, s->listen_fd, EPOLLIN, sock_accept_cb, s)) < 0) {
            errno = -r;
            goto syserr;
        }
        break;
    case NET_SOCKET_CONNECT: {
        how = "connect";
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            goto syserr;
        if (connect(fd, (const struct sockaddr *)&o->socket_addr, sizeof(o->socket_addr)) < 0) {
            r = -errno;
            close(fd);
            log_error("-netdev socket,id=%s: cannot connect to %s:%u: %s (start the VM with "
                      "listen= first)",
                      o->id, addr, port, strerror(-r));
            net_backend_free(&s->nb);
            return r;
        }
        if ((r = sock_set_peer(s, fd)) < 0) {
            close(fd);
            s->fd = -1;
            errno = -r;
            goto syserr;
        }
        break;
    }
    case NET_SOCKET_MCAST: {
        how = "mcast";
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            goto syserr;
        s->fd = fd;
        s->mcast = o->socket_addr;
        struct sockaddr_in bind_addr = o->socket_addr;
        struct ip_mreq mreq = {.imr_multiaddr = o->socket_addr.sin_addr,
                               .imr_interface = o->socket_localaddr};
        unsigned char loop = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&bind_addr, sizeof(bind_addr)) < 0 ||
            setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0 ||
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop)) < 0)
            goto syserr;
        if (o->socket_localaddr.s_addr &&
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &o->socket_localaddr,
                       sizeof(o->socket_localaddr)) < 0)
            goto syserr;
        s->fd = -1;
        if ((r = sock_set_peer(s, fd)) < 0) {
            s->fd = fd;
            errno = -r;
            goto syserr;
        }
        break;
    }
    }
    snprintf(s->nb.info, sizeof(s->nb.info), "socket: %s=%s:%u", how, addr, port);
    /* As QEMU's -netdev socket: the link is up whether or not a peer is connected (a cable
     * into an empty switch port); frames sent meanwhile are lost. */
    s->nb.link_up = true;
    *out = &s->nb;
    return 0;
syserr:
    r = -errno;
    log_error("-netdev socket,id=%s: cannot %s on %s:%u: %s%s", o->id, how, addr, port,
              strerror(-r), r == -EADDRINUSE ? " (the port is taken; pick another)" : "");
    net_backend_free(&s->nb);
    return r;
}
