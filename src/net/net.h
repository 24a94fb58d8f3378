/* Network backends: the host side of a guest NIC (tap, bridge, user/libslirp, socket). */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * How it fits together
 * --------------------
 * 1. config/net_opts.c turns -netdev/-net/-nic into struct net_backend_opts (below), checked
 *    with net_backend_opts_check() so mistakes fail at parse time, stored in vm_config.
 * 2. VM setup, before devices are created, calls net_backend_new() once per configured
 *    netdev. Backends register themselves by id.
 * 3. A NIC model (virtio-net) finds its backend with net_backend_lookup(netdev_id), reads
 *    net_backend_queues()/net_backend_offload_caps(), and calls net_backend_attach() with its
 *    callbacks. Nothing is read from the host before attach.
 * 4. Guest -> host: net_backend_send(). Host -> guest: the client's receive() callback, with
 *    flow control: a device without rx buffers returns 0 and later calls
 *    net_backend_rx_ready(); the backend keeps that frame and stops reading until then.
 * 5. net_backend_free() undoes host changes: runs the tap downscript, closes fds (a TAP vmkit
 *    created goes away with them). Call it before evloop_free(). For backends still alive
 *    at exit(), an atexit hook runs the downscripts (and nothing that needs the loop).
 *
 * Re-entrancy: receive() is never called from inside net_backend_send() or
 * net_backend_rx_ready(): backends whose host side answers synchronously (slirp) queue the
 * frames and deliver them from the event loop.
 *
 * Threading: every callback below runs on the evloop thread, under the lock given to
 * evloop_set_lock() (the machine lock). The net_backend_* calls must be made with that lock
 * held too (vCPU threads hold it while emulating device registers), except net_backend_new/free
 * which run at setup/teardown.
 *
 * Frames: an Ethernet frame without FCS. When the device enabled a virtio-net header with
 * net_backend_set_vnet_hdr_len() (only allowed when net_backend_offload_caps() has
 * NET_OFFLOAD_VNET_HDR), every frame both ways starts with that header (struct virtio_net_hdr,
 * 10 bytes, or 12 with num_buffers, little-endian as in virtio 1.0); otherwise frames are bare.
 */

struct evloop;
struct net_backend;

enum net_backend_type {
    NET_BACKEND_TAP,    /* -netdev tap */
    NET_BACKEND_BRIDGE, /* -netdev bridge: a TAP vmkit creates and enslaves to br= */
    NET_BACKEND_USER,   /* -netdev user: libslirp NAT, no root */
    NET_BACKEND_SOCKET, /* -netdev socket: listen=/connect= (TCP) or mcast= (UDP) */
};

#define NET_MAX_QUEUES 16
#define NET_MAX_HOSTFWD 32

/* -netdev user,hostfwd=[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport */
struct net_hostfwd {
    bool udp;
    struct in_addr host_addr;  /* INADDR_ANY when empty */
    uint16_t host_port;
    struct in_addr guest_addr; /* INADDR_ANY when empty: the first DHCP address */
    uint16_t guest_port;
};

enum net_socket_mode { NET_SOCKET_LISTEN, NET_SOCKET_CONNECT, NET_SOCKET_MCAST };

/* Everything a backend needs, already parsed. Strings are borrowed: they must outlive the
 * backend (vm_config owns them). Zero-initialise, then call net_backend_opts_init(). */
struct net_backend_opts {
    enum net_backend_type type;
    const char *id; /* -netdev id=; required, unique */

    /* tap, bridge */
    const char *ifname;     /* tap: interface to open or create; NULL = kernel picks tapN */
    const char *script;     /* tap: NULL = default (/etc/vmkit-ifup if it exists), "" = none */
    const char *downscript; /* tap: NULL = default (/etc/vmkit-ifdown if it exists), "" = none */
    int fd;                 /* tap: an already-open TAP fd (fd=N), -1 when none */
    int vnet_hdr;           /* tap/bridge: -1 use when the kernel has it, 0 off, 1 required */
    unsigned queues;        /* tap/bridge: queue pairs, 1..NET_MAX_QUEUES; >1 = IFF_MULTI_QUEUE */
    const char *br;         /* bridge: bridge to enslave the new TAP to; default "br0" */

    /* user: addresses in network byte order */
    struct in_addr net, netmask; /* default 10.0.2.0/24 */
    struct in_addr host;         /* gateway, default net+2 (10.0.2.2) */
    struct in_addr dns;          /* default net+3 (10.0.2.3) */
    struct in_addr dhcpstart;    /* default net+15 (10.0.2.15) */
    bool restrict_net;           /* restrict=on: the guest cannot reach outside */
    const char *hostname;        /* DHCP option 12 given to the guest; NULL none */
    const char *domainname;      /* DHCP option 15; NULL none */
    const char *tftp, *bootfile; /* accepted for QEMU compatibility; NULL none */
    struct net_hostfwd hostfwd[NET_MAX_HOSTFWD];
    unsigned nhostfwd;

    /* socket */
    enum net_socket_mode socket_mode;
    struct sockaddr_in socket_addr; /* listen/connect/mcast address (listen: host may be 0) */
    struct in_addr socket_localaddr; /* mcast: interface address, INADDR_ANY when not given */
};

/* Defaults for everything but type and id: fd -1, vnet_hdr -1, queues 1, br "br0", the user
 * network's 10.0.2.0/24 addresses. */
void net_backend_opts_init(struct net_backend_opts *o, enum net_backend_type type, const char *id);
/* Checks values and their combinations without touching the host (fd= with ifname=, dhcpstart
 * outside net=, queues range, ...). 0, or -EINVAL with a message naming the key in err. */
int net_backend_opts_check(const struct net_backend_opts *o, char *err, size_t errlen);
/* Helpers config uses to fill the struct: 0 or -EINVAL. */
int net_parse_hostfwd(const char *s, struct net_hostfwd *out);       /* "tcp::2222-:22" */
int net_parse_cidr(const char *s, struct in_addr *addr, struct in_addr *mask); /* "10.0.2.0/24" or "10.0.2.0/255.255.255.0" or "10.0.2.0" (/24) */
int net_parse_inet(const char *s, struct sockaddr_in *out);          /* "host:port", host may be empty */
int net_parse_mac(const char *s, uint8_t mac[6]);                    /* "52:54:00:12:34:56" */
const char *net_backend_type_name(enum net_backend_type t);          /* "tap", "user", ... */

/* Offload bits: what the backend can carry (caps) and what the device turned on (set). */
enum {
    NET_OFFLOAD_VNET_HDR = 1u << 0, /* frames can carry a virtio-net header */
    NET_OFFLOAD_CSUM = 1u << 1,     /* partial checksums (VIRTIO_NET_F_GUEST_CSUM) */
    NET_OFFLOAD_TSO4 = 1u << 2,
    NET_OFFLOAD_TSO6 = 1u << 3,
    NET_OFFLOAD_TSO_ECN = 1u << 4,
    NET_OFFLOAD_UFO = 1u << 5,
    NET_OFFLOAD_USO4 = 1u << 6,
    NET_OFFLOAD_USO6 = 1u << 7,
};

/* The device's side: how a backend reaches it. */
struct net_client_ops {
    /* A frame from the host for queue q. Return the number of bytes taken (> 0), 0 when the
     * device has no room now (the backend keeps the frame and stops reading that queue until
     * net_backend_rx_ready(nb, q)), or a negative errno to drop it (malformed, too big). */
    ssize_t (*receive)(void *opaque, unsigned q, const struct iovec *iov, int iovcnt);
    /* Optional: a queue that returned -EAGAIN from net_backend_send can take frames again. */
    void (*tx_ready)(void *opaque, unsigned q);
    /* Optional: the backend's link went up or down. (Today's backends keep their link up for
     * their whole life, as QEMU's do; a socket with no peer is an unplugged far end.) */
    void (*link_changed)(void *opaque, bool up);
};

/* Creates the backend described by o on ev: opens/creates TAPs and runs scripts, starts
 * slirp, listens/connects sockets. Registers it under o->id. On failure logs a message naming
 * "-netdev <type>,id=<id>" and what to do, undoes partial work and returns -errno. */
int net_backend_new(const struct net_backend_opts *o, struct evloop *ev, struct net_backend **out);
/* Undoes host changes (downscript, TAPs vmkit created), closes fds, unregisters. NULL is ok. */
void net_backend_free(struct net_backend *nb);
/* The backend registered under id, or NULL. */
struct net_backend *net_backend_lookup(const char *id);

const char *net_backend_id(const struct net_backend *nb);
enum net_backend_type net_backend_type(const struct net_backend *nb);
/* One line for "info network": "tap: ifname=tap0,script=/etc/vmkit-ifup,vnet_hdr=on". */
const char *net_backend_info(const struct net_backend *nb);
/* The TAP's interface name (tap/bridge), else NULL. */
const char *net_backend_ifname(const struct net_backend *nb);
unsigned net_backend_queues(const struct net_backend *nb);
bool net_backend_link_up(const struct net_backend *nb);

/* Connects the device. A backend has at most one client: -EBUSY if it already has one (two
 * NICs on one netdev). Reading starts on every queue. */
int net_backend_attach(struct net_backend *nb, const struct net_client_ops *ops, void *opaque);
void net_backend_detach(struct net_backend *nb);

uint32_t net_backend_offload_caps(const struct net_backend *nb);
/* len 0 (no header), 10 or 12. -ENOTSUP when the backend has no vnet header support. */
int net_backend_set_vnet_hdr_len(struct net_backend *nb, unsigned len);
/* Turns on the offloads the guest accepts (the NET_OFFLOAD_CSUM, _TSO4, _TSO6, _TSO_ECN, _UFO,
 * _USO4, _USO6 bits, a subset of caps); for a TAP this is TUNSETOFFLOAD, i.e. which offloaded frames the host may hand us. */
int net_backend_set_offload(struct net_backend *nb, uint32_t offloads);

/* Sends one frame (header first when enabled) on queue q. Returns the bytes sent, -EAGAIN
 * when the host side is full (ops->tx_ready follows when it drains), or another -errno
 * (frame dropped; the device need not report it to the guest). Never blocks. */
ssize_t net_backend_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt);
/* The device has rx buffers again on queue q: redeliver the held frame, resume reading. */
void net_backend_rx_ready(struct net_backend *nb, unsigned q);

/* The default MAC of the n-th NIC, as QEMU: 52:54:00:12:34:56 + n. */
void net_default_mac(unsigned n, uint8_t mac[6]);
