/* What backends share behind net.h: the common struct, their ops and delivery helpers. */
#pragma once
#include "net/net.h"

struct net_backend_ops {
    ssize_t (*send)(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt);
    /* Start or resume reading queue q (after attach, or after the client had no room). */
    void (*resume)(struct net_backend *nb, unsigned q);
    int (*set_vnet_hdr_len)(struct net_backend *nb, unsigned len); /* NULL: -ENOTSUP */
    int (*set_offload)(struct net_backend *nb, uint32_t offloads); /* NULL: only 0 is ok */
    void (*free)(struct net_backend *nb);                         /* undo host changes */
    /* Optional: the process is exiting with the backend still alive. Undo host changes that
     * outlive the process (tap downscript) without touching the event loop, which may be
     * gone already; fds and memory go with the process. */
    void (*at_exit)(struct net_backend *nb);
};

struct net_backend {
    const struct net_backend_ops *ops;
    enum net_backend_type type;
    char *id;
    char info[512];
    char ifname[16];
    struct evloop *ev;
    const struct net_client_ops *client;
    void *client_opaque;
    unsigned queues;
    uint32_t caps;
    unsigned vnet_hdr_len;
    uint32_t offloads;
    bool link_up;
    int kickfd;                       /* eventfd: deferred resume on the loop */
    bool blocked[NET_MAX_QUEUES];     /* the client said "no room" on this queue */
    struct net_backend *next;         /* registry */
};

/* Sets up the common part and the kick fd; 0 or -errno. */
int net_backend_init(struct net_backend *nb, const struct net_backend_ops *ops,
                     const struct net_backend_opts *o, struct evloop *ev);
/* Hands a frame to the client. Returns > 0 taken, 0 no room (queue now blocked: stop reading
 * until ops->resume), < 0 dropped. No client: dropped (returns -ENOTCONN). */
ssize_t net_backend_deliver(struct net_backend *nb, unsigned q, const struct iovec *iov,
                            int iovcnt);
/* Asks for ops->resume(q) on the loop soon (never synchronously). */
void net_backend_kick(struct net_backend *nb, unsigned q);
void net_backend_set_link(struct net_backend *nb, bool up);
/* Flattens iov into buf (cap bytes); returns the length or -EMSGSIZE. */
ssize_t net_iov_to_buf(const struct iovec *iov, int iovcnt, void *buf, size_t cap);
size_t net_iov_size(const struct iovec *iov, int iovcnt);

int net_tap_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out);
int net_user_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out);
int net_socket_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out);

/* The largest frame a backend reads: 64 KiB GSO frames plus a virtio-net header. */
#define NET_MAX_FRAME (65536 + 14 + 12)
