/* -netdev tap and -netdev bridge: TAP queues on /dev/net/tun, vnet headers, offloads, scripts. */
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "net/net_internal.h"
#include "net/netif.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

#define TAP_DEFAULT_IFUP "/etc/vmkit-ifup"
#define TAP_DEFAULT_IFDOWN "/etc/vmkit-ifdown"

struct tap_queue {
    struct tap *tap;
    unsigned idx;
    int fd;
    bool registered;
    bool tx_waiting;     /* a write hit EAGAIN: tell the client when writable */
    size_t held_len;     /* a read frame the client had no room for; 0 = none */
    uint8_t *buf;
};

struct tap {
    struct net_backend nb;
    struct tap_queue q[NET_MAX_QUEUES];
    unsigned kernel_hdr_len; /* the TAP's vnet header size; 0 without IFF_VNET_HDR */
    char *downscript;        /* to run at free, NULL none */
};

static int tap_run_script(const char *script, const char *ifname, const char *what)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execl(script, script, ifname, (char *)NULL);
        fprintf(stderr, "vmkit: cannot run %s: %s\n", script, strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        log_error("network %s '%s %s' failed (%s %d)", what, script, ifname,
                  WIFEXITED(st) ? "exit status" : "signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -EIO;
    }
    return 0;
}

/* script= value to use: NULL means the default when it exists, "" none. */
static const char *tap_script_path(const char *given, const char *def)
{
    if (given)
        return *given ? given : NULL;
    return access(def, X_OK) == 0 ? def : NULL;
}

static void tap_update_events(struct tap_queue *tq)
{
    struct tap *t = tq->tap;
    if (!t->nb.ev || tq->fd < 0)
        return;
    uint32_t ev = 0;
    if (t->nb.client && !tq->held_len && !t->nb.blocked[tq->idx])
        ev |= EPOLLIN;
    if (tq->tx_waiting)
        ev |= EPOLLOUT;
    evloop_mod_fd(t->nb.ev, tq->fd, ev);
}

/* Delivers buf[0..len) (with the kernel's header) to the client, fixing the header up for it. */
static ssize_t tap_deliver(struct tap_queue *tq, size_t len)
{
    struct tap *t = tq->tap;
    size_t skip = 0;
    if (t->kernel_hdr_len && !t->nb.vnet_hdr_len)
        skip = t->kernel_hdr_len;
    if (len <= skip)
        return -EINVAL;
    struct iovec iov = {tq->buf + skip, len - skip};
    return net_backend_deliver(&t->nb, tq->idx, &iov, 1);
}

static void tap_read_some(struct tap_queue *tq)
{
    struct tap *t = tq->tap;
    for (int n = 0; n < 64 && t->nb.client && !t->nb.blocked[tq->idx]; n++) {
        if (tq->held_len) {
            if (tap_deliver(tq, tq->held_len) == 0)
                break; /* still no room */
            tq->held_len = 0;
            continue;
        }
        ssize_t r = read(tq->fd, tq->buf, NET_MAX_FRAME);
        if (r < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_once(LOG_WARN, "-netdev tap,id=%s: read failed: %s", t->nb.id,
                         strerror(errno));
            break;
        }
        if (r == 0)
            break;
        if (tap_deliver(tq, (size_t)r) == 0) {
            tq->held_len = (size_t)r;
            break;
        }
    }
    tap_update_events(tq);
}

static void tap_fd_cb(void *opaque, uint32_t events)
{
    struct tap_queue *tq = opaque;
    if (events & EPOLLOUT) {
        tq->tx_waiting = false;
        tap_update_events(tq);
        if (tq->tap->nb.client && tq->tap->nb.client->tx_ready)
            tq->tap->nb.client->tx_ready(tq->tap->nb.client_opaque, tq->idx);
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        tap_read_some(tq);
}

static void tap_resume(struct net_backend *nb, unsigned q)
{
    struct tap *t = container_of(nb, struct tap, nb);
    tap_read_some(&t->q[q]);
}

static ssize_t tap_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
    struct tap *t = container_of(nb, struct tap, nb);
    struct tap_queue *tq = &t->q[q];
    if (tq->tx_waiting)
        return -EAGAIN;
    struct iovec v[iovcnt + 1];
    static const uint8_t zero_hdr[12];
    int n = 0;
    if (t->kernel_hdr_len && !nb->vnet_hdr_len)
        v[n++] = (struct iovec){(void *)zero_hdr, t->kernel_hdr_len};
    for (int i = 0; i < iovcnt; i++)
        v[n++] = iov[i];
    ssize_t r = writev(tq->fd, v, n);
    if (r < 0) {
        if (errno == EAGAIN) {
            tq->tx_waiting = true;
            tap_update_events(tq);
            return -EAGAIN;
        }
        return -errno;
    }
    return (ssize_t)net_iov_size(iov, iovcnt);
}

static int tap_set_vnet_hdr_len(struct net_backend *nb, unsigned len)
{
    struct tap *t = container_of(nb, struct tap, nb);
    int sz = len ? (int)len : 10;
    for (unsigned i = 0; i < nb->queues; i++)
        if (ioctl(t->q[i].fd, TUNSETVNETHDRSZ, &sz) < 0)
            return -errno;
    t->kernel_hdr_len = (unsigned)sz;
    return 0;
}

static unsigned long tap_offload_flags(uint32_t o)
{
    unsigned long f = 0;
    if (o & NET_OFFLOAD_CSUM)
        f |= TUN_F_CSUM;
    if (o & NET_OFFLOAD_TSO4)
        f |= TUN_F_TSO4;
    if (o & NET_OFFLOAD_TSO6)
        f |= TUN_F_TSO6;
    if (o & NET_OFFLOAD_TSO_ECN)
        f |= TUN_F_TSO_ECN;
    if (o & NET_OFFLOAD_UFO)
        f |= TUN_F_UFO;
    if (o & NET_OFFLOAD_USO4)
        f |= TUN_F_USO4;
    if (o & NET_OFFLOAD_USO6)
        f |= TUN_F_USO6;
    return f;
}

static int tap_set_offload(struct net_backend *nb, uint32_t offloads)
{
    struct tap *t = container_of(nb, struct tap, nb);
    /* The kernel refuses TSO/UFO without checksum offload, as the virtio spec requires. */
    if ((offloads & ~(uint32_t)NET_OFFLOAD_CSUM) && !(offloads & NET_OFFLOAD_CSUM))
        return -EINVAL;
    unsigned long f = tap_offload_flags(offloads);
    for (unsigned i = 0; i < nb->queues; i++)
        if (ioctl(t->q[i].fd, TUNSETOFFLOAD, f) < 0)
            return -errno;
    return 0;
}

/* Which offloads this kernel's TAP takes: try each, then turn them all off again. */
static uint32_t tap_probe_offloads(int fd)
{
    uint32_t caps = 0;
    if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) == 0)
        caps |= NET_OFFLOAD_CSUM;
    else
        return 0;
    static const uint32_t bits[] = {NET_OFFLOAD_TSO4, NET_OFFLOAD_TSO6, NET_OFFLOAD_TSO_ECN,
                                    NET_OFFLOAD_UFO, NET_OFFLOAD_USO4, NET_OFFLOAD_USO6};
    for (unsigned i = 0; i < ARRAY_SIZE(bits); i++) {
        uint32_t want = NET_OFFLOAD_CSUM | bits[i];
        if (bits[i] == NET_OFFLOAD_TSO_ECN)
            want |= NET_OFFLOAD_TSO4;
        if (ioctl(fd, TUNSETOFFLOAD, tap_offload_flags(want)) == 0)
            caps |= bits[i];
    }
    ioctl(fd, TUNSETOFFLOAD, 0UL);
    return caps;
}

static void tap_free(struct net_backend *nb)
{
    struct tap *t = container_of(nb, struct tap, nb);
    if (t->downscript && nb->ifname[0])
        tap_run_script(t->downscript, nb->ifname, "downscript");
    for (unsigned i = 0; i < NET_MAX_QUEUES; i++) {
        struct tap_queue *tq = &t->q[i];
        if (tq->registered)
            evloop_del_fd(nb->ev, tq->fd);
        if (tq->fd >= 0)
            close(tq->fd); /* a non-persistent TAP vmkit created disappears with its last fd */
        free(tq->buf);
    }
    free(t->downscript);
    free(t);
}

static void tap_at_exit(struct net_backend *nb)
{
    struct tap *t = container_of(nb, struct tap, nb);
    if (t->downscript && nb->ifname[0])
        tap_run_script(t->downscript, nb->ifname, "downscript");
    free(t->downscript);
    t->downscript = NULL; /* once */
}

static const struct net_backend_ops tap_ops = {
    .send = tap_send,
    .resume = tap_resume,
    .set_vnet_hdr_len = tap_set_vnet_hdr_len,
    .set_offload = tap_set_offload,
    .free = tap_free,
    .at_exit = tap_at_exit,
};

/* Opens one queue of ifname (or a new tapN when *ifname is empty), filling ifname in. */
static int tap_open_queue(char ifname[IFNAMSIZ], bool vnet_hdr, bool multi, int *fd_out)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (vnet_hdr)
        ifr.ifr_flags |= IFF_VNET_HDR;
    if (multi)
        ifr.ifr_flags |= IFF_MULTI_QUEUE;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", *ifname ? ifname : "tap%d");
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    snprintf(ifname, IFNAMSIZ, "%s", ifr.ifr_name);
    *fd_out = fd;
    return 0;
}

int net_tap_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out)
{
    const char *what = o->type == NET_BACKEND_BRIDGE ? "bridge" : "tap";
    struct tap *t = xzalloc(sizeof(*t));
    for (unsigned i = 0; i < NET_MAX_QUEUES; i++)
        t->q[i].fd = -1;
    int r = net_backend_init(&t->nb, &tap_ops, o, ev);
    if (r < 0) {
        free(t);
        return r;
    }
    struct net_backend *nb = &t->nb;
    nb->queues = o->queues;
    bool vnet = false;
    char name[IFNAMSIZ] = "";

    if (o->type == NET_BACKEND_BRIDGE) {
        char path[64];
        snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", o->br);
        if (access(path, F_OK) != 0) {
            log_error("-netdev bridge,id=%s: '%s' is not an existing bridge; create it with "
                      "'vmkit net bridge add %s' (or start a virtual network)",
                      o->id, o->br, o->br);
            r = -ENODEV;
            goto fail;
        }
    }

    if (o->fd >= 0) {
        /* fd=N: a TAP someone else opened (libvirt style); ask it what it is. */
        struct ifreq ifr = {0};
        if (ioctl(o->fd, TUNGETIFF, &ifr) < 0) {
            log_error("-netdev tap,id=%s: fd=%d is not an open TAP device (%s)", o->id, o->fd,
                      strerror(errno));
            r = -EINVAL;
            goto fail;
        }
        if (!(ifr.ifr_flags & IFF_TAP) || !(ifr.ifr_flags & IFF_NO_PI)) {
            log_error("-netdev tap,id=%s: fd=%d must be a TAP opened with IFF_TAP|IFF_NO_PI", o->id,
                      o->fd);
            r = -EINVAL;
            goto fail;
        }
        vnet = ifr.ifr_flags & IFF_VNET_HDR;
        if (o->vnet_hdr == 1 && !vnet) {
            log_error("-netdev tap,id=%s: vnet_hdr=on but fd=%d was opened without IFF_VNET_HDR",
                      o->id, o->fd);
            r = -EINVAL;
            goto fail;
        }
        snprintf(name, sizeof(name), "%s", ifr.ifr_name);
        fcntl(o->fd, F_SETFL, fcntl(o->fd, F_GETFL) | O_NONBLOCK);
        t->q[0].fd = o->fd;
    } else {
        unsigned features = 0;
        int probe = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (probe < 0) {
            log_error("-netdev %s,id=%s: cannot open /dev/net/tun: %s%s", what, o->id,
                      strerror(errno),
                      errno == ENOENT ? " (load the tun module: modprobe tun)" : "");
            r = -errno;
            goto fail;
        }
        if (ioctl(probe, TUNGETFEATURES, &features) < 0)
            features = IFF_TAP | IFF_NO_PI;
        close(probe);
        vnet = o->vnet_hdr != 0 && (features & IFF_VNET_HDR);
        if (o->vnet_hdr == 1 && !vnet) {
            log_error("-netdev %s,id=%s: vnet_hdr=on but this kernel's TAP has no IFF_VNET_HDR",
                      what, o->id);
            r = -ENOTSUP;
            goto fail;
        }
        if (o->queues > 1 && !(features & IFF_MULTI_QUEUE)) {
            log_error("-netdev %s,id=%s: queues=%u but this kernel's TAP has no multiqueue "
                      "support; use queues=1",
                      what, o->id, o->queues);
            r = -ENOTSUP;
            goto fail;
        }
        if (o->ifname)
            snprintf(name, sizeof(name), "%s", o->ifname);
        for (unsigned i = 0; i < o->queues; i++) {
            r = tap_open_queue(name, vnet, o->queues > 1, &t->q[i].fd);
            if (r < 0) {
                log_error("-netdev %s,id=%s: cannot %s TAP '%s': %s%s", what, o->id,
                          o->ifname ? "open" : "create", *name ? name : "tapN", strerror(-r),
                          r == -EPERM ? " (needs root or CAP_NET_ADMIN, or a TAP made for "
                                        "your user with 'vmkit net tap add NAME --user USER')"
                          : r == -EBUSY || r == -EINVAL
                              ? " (is it in use, or was it created with other flags, e.g. "
                                "without multi_queue?)"
                              : "");
                goto fail;
            }
        }
    }
    snprintf(nb->ifname, sizeof(nb->ifname), "%s", name);
    for (unsigned i = 0; i < nb->queues; i++) {
        t->q[i].tap = t;
        t->q[i].idx = i;
        t->q[i].buf = xmalloc(NET_MAX_FRAME);
    }
    if (vnet) {
        t->kernel_hdr_len = 10;
        int sz = 10;
        for (unsigned i = 0; i < nb->queues; i++)
            ioctl(t->q[i].fd, TUNSETVNETHDRSZ, &sz);
        nb->caps = NET_OFFLOAD_VNET_HDR | tap_probe_offloads(t->q[0].fd);
    }

    const char *script = NULL, *down = NULL;
    if (o->type == NET_BACKEND_TAP && o->fd < 0) {
        script = tap_script_path(o->script, TAP_DEFAULT_IFUP);
        down = tap_script_path(o->downscript, TAP_DEFAULT_IFDOWN);
    }
    if (script) {
        r = tap_run_script(script, name, "script");
        if (r < 0) {
            log_error("-netdev tap,id=%s: the up script failed; fix it or use script=no", o->id);
            goto fail;
        }
    }
    if (down)
        t->downscript = xstrdup(down);

    if (o->type == NET_BACKEND_BRIDGE) {
        r = netif_set_master(name, o->br);
        if (r == 0)
            r = netif_set_up(name, true);
        if (r < 0) {
            log_error("-netdev bridge,id=%s: cannot attach %s to bridge %s: %s%s", o->id, name,
                      o->br, strerror(-r),
                      r == -EPERM ? " (needs root or CAP_NET_ADMIN; without them use a TAP made "
                                    "by 'vmkit net tap add' with script=)"
                                  : "");
            goto fail;
        }
    }

    if (ev) {
        for (unsigned i = 0; i < nb->queues; i++) {
            r = evloop_add_fd(ev, t->q[i].fd, 0, tap_fd_cb, &t->q[i]);
            if (r < 0) {
                log_error("-netdev %s,id=%s: cannot watch the TAP: %s", what, o->id,
                          strerror(-r));
                goto fail;
            }
            t->q[i].registered = true;
        }
    }
    if (o->type == NET_BACKEND_BRIDGE)
        snprintf(nb->info, sizeof(nb->info), "bridge: br=%s,ifname=%s,vnet_hdr=%s,queues=%u",
                 o->br, name, vnet ? "on" : "off", nb->queues);
    else
        snprintf(nb->info, sizeof(nb->info),
                 "tap: ifname=%s,script=%s,downscript=%s,vnet_hdr=%s,queues=%u", name,
                 script ? script : "no", down ? down : "no", vnet ? "on" : "off", nb->queues);
    nb->link_up = true;
    *out = nb;
    return 0;
fail:
    free(t->downscript);
    t->downscript = NULL; /* the up script did not complete: do not run the down one */
    net_backend_free(nb); /* not registered yet: only undoes what was set up */
    return r;
}
