/* The backend registry and the generic half of net.h: attach, flow control, offload calls. */
#include "net/net_internal.h"
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static struct net_backend *registry;
static bool atexit_installed;

/* A VMM that exits without freeing its backends still runs downscripts and deletes TAPs. */
static void net_backend_atexit(void)
{
    for (struct net_backend *nb = registry; nb; nb = nb->next)
        if (nb->ops->at_exit)
            nb->ops->at_exit(nb);
}

static void kick_cb(void *opaque, uint32_t events)
{
    struct net_backend *nb = opaque;
    uint64_t v;
    if (read(nb->kickfd, &v, sizeof(v)) < 0)
        return;
    for (unsigned q = 0; q < nb->queues; q++) {
        if (nb->blocked[q] || !nb->client)
            continue;
        if (nb->ops->resume)
            nb->ops->resume(nb, q);
    }
}

int net_backend_init(struct net_backend *nb, const struct net_backend_ops *ops,
                     const struct net_backend_opts *o, struct evloop *ev)
{
    nb->ops = ops;
    nb->type = o->type;
    nb->id = xstrdup(o->id);
    nb->ev = ev;
    nb->queues = 1;
    nb->kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (nb->kickfd < 0)
        return -errno;
    if (ev) {
        int r = evloop_add_fd(ev, nb->kickfd, EPOLLIN, kick_cb, nb);
        if (r < 0) {
            close(nb->kickfd);
            nb->kickfd = -1;
            return r;
        }
    }
    return 0;
}

void net_backend_kick(struct net_backend *nb, unsigned q)
{
    uint64_t one = 1;
    if (write(nb->kickfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("-netdev %s: cannot wake the event loop: %s", nb->id, strerror(errno));
}

int net_backend_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out)
{
    char err[256];
    *out = NULL;
    if (net_backend_opts_check(o, err, sizeof(err))) {
        log_error("-netdev %s,id=%s: %s", net_backend_type_name(o->type), o->id ? o->id : "",
                  err);
        return -EINVAL;
    }
    if (net_backend_lookup(o->id)) {
        log_error("-netdev %s,id=%s: a backend with this id already exists",
                  net_backend_type_name(o->type), o->id);
        return -EEXIST;
    }
    int r;
    switch (o->type) {
    case NET_BACKEND_TAP:
    case NET_BACKEND_BRIDGE:
        r = net_tap_new(o, ev, out);
        break;
    case NET_BACKEND_USER:
        r = net_user_new(o, ev, out);
        break;
    case NET_BACKEND_SOCKET:
        r = net_socket_new(o, ev, out);
        break;
    default:
        r = -EINVAL;
    }
    if (r < 0)
        return r;
    (*out)->next = registry;
    registry = *out;
    if (!atexit_installed) {
        atexit_installed = true;
        atexit(net_backend_atexit);
    }
    return 0;
}

void net_backend_free(struct net_backend *nb)
{
    if (!nb)
        return;
    for (struct net_backend **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == nb) {
            *pp = nb->next;
            break;
        }
    }
    if (nb->kickfd >= 0) {
        if (nb->ev)
            evloop_del_fd(nb->ev, nb->kickfd);
        close(nb->kickfd);
    }
    char *id = nb->id;
    nb->ops->free(nb); /* frees nb */
    free(id);
}

struct net_backend *net_backend_lookup(const char *id)
{
    for (struct net_backend *nb = registry; nb; nb = nb->next)
        if (!strcmp(nb->id, id))
            return nb;
    return NULL;
}

const char *net_backend_id(const struct net_backend *nb) { return nb->id; }
enum net_backend_type net_backend_type(const struct net_backend *nb) { return nb->type; }
const char *net_backend_info(const struct net_backend *nb) { return nb->info; }
const char *net_backend_ifname(const struct net_backend *nb)
{
    return nb->ifname[0] ? nb->ifname : NULL;
}
unsigned net_backend_queues(const struct net_backend *nb) { return nb->queues; }
bool net_backend_link_up(const struct net_backend *nb) { return nb->link_up; }
uint32_t net_backend_offload_caps(const struct net_backend *nb) { return nb->caps; }

void net_backend_set_link(struct net_backend *nb, bool up)
{
    if (nb->link_up == up)
        return;
    nb->link_up = up;
    if (nb->client && nb->client->link_changed)
        nb->client->link_changed(nb->client_opaque, up);
}

int net_backend_attach(struct net_backend *nb, const struct net_client_ops *ops, void *opaque)
{
    if (nb->client)
        return -EBUSY;
    nb->client = ops;
    nb->client_opaque = opaque;
    for (unsigned q = 0; q < nb->queues; q++)
        nb->blocked[q] = false;
    net_backend_kick(nb, 0);
    return 0;
}

void net_backend_detach(struct net_backend *nb)
{
    nb->client = NULL;
    nb->client_opaque = NULL;
}

int net_backend_set_vnet_hdr_len(struct net_backend *nb, unsigned len)
{
    if (len != 0 && len != 10 && len != 12)
        return -EINVAL;
    if (len == nb->vnet_hdr_len)
        return 0;
    if (!(nb->caps & NET_OFFLOAD_VNET_HDR) || !nb->ops->set_vnet_hdr_len)
        return len ? -ENOTSUP : 0;
    int r = nb->ops->set_vnet_hdr_len(nb, len);
    if (r == 0)
        nb->vnet_hdr_len = len;
    return r;
}

int net_backend_set_offload(struct net_backend *nb, uint32_t offloads)
{
    offloads &= ~(uint32_t)NET_OFFLOAD_VNET_HDR;
    if (offloads & ~nb->caps)
        return -ENOTSUP;
    if (offloads && !nb->vnet_hdr_len)
        return -EINVAL; /* offloaded frames need the header to describe them */
    if (!nb->ops->set_offload)
        return offloads ? -ENOTSUP : 0;
    int r = nb->ops->set_offload(nb, offloads);
    if (r == 0)
        nb->offloads = offloads;
    return r;
}

ssize_t net_backend_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
    if (q >= nb->queues || iovcnt < 0 || iovcnt > 1024)
        return -EINVAL;
    size_t len = net_iov_size(iov, iovcnt);
    if (len < nb->vnet_hdr_len || len - nb->vnet_hdr_len > NET_MAX_FRAME - 12)
        return -EMSGSIZE;
    return nb->ops->send(nb, q, iov, iovcnt);
}

void net_backend_rx_ready(struct net_backend *nb, unsigned q)
{
    if (q >= nb->queues || !nb->blocked[q])
        return;
    nb->blocked[q] = false;
    net_backend_kick(nb, q);
}

ssize_t net_backend_deliver(struct net_backend *nb, unsigned q, const struct iovec *iov,
                            int iovcnt)
{
    if (!nb->client)
        return -ENOTCONN;
    ssize_t r = nb->client->receive(nb->client_opaque, q, iov, iovcnt);
    if (r == 0)
        nb->blocked[q] = true;
    return r;
}

size_t net_iov_size(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

ssize_t net_iov_to_buf(const struct iovec *iov, int iovcnt, void *buf, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > cap - n)
            return -EMSGSIZE;
        memcpy((char *)buf + n, iov[i].iov_base, iov[i].iov_len);
        n += iov[i].iov_len;
    }
    return (ssize_t)n;
}
