/* Backend option values: defaults, parsing of addresses/hostfwd/MACs, and consistency checks. */
#include "net/net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *net_backend_type_name(enum net_backend_type t)
{
    switch (t) {
    case NET_BACKEND_TAP: return "tap";
    case NET_BACKEND_BRIDGE: return "bridge";
    case NET_BACKEND_USER: return "user";
    case NET_BACKEND_SOCKET: return "socket";
    }
    return "?";
}

static struct in_addr addr_plus(struct in_addr net, uint32_t n)
{
    return (struct in_addr){htonl(ntohl(net.s_addr) + n)};
}

void net_backend_opts_init(struct net_backend_opts *o, enum net_backend_type type, const char *id)
{
    memset(o, 0, sizeof(*o));
    o->type = type;
    o->id = id;
    o->fd = -1;
    o->vnet_hdr = -1;
    o->queues = 1;
    o->br = "br0";
    inet_pton(AF_INET, "10.0.2.0", &o->net);
    inet_pton(AF_INET, "255.255.255.0", &o->netmask);
    o->host = addr_plus(o->net, 2);
    o->dns = addr_plus(o->net, 3);
    o->dhcpstart = addr_plus(o->net, 15);
    o->socket_mode = NET_SOCKET_LISTEN;
    o->socket_addr.sin_family = AF_INET;
}

/* A decimal number in [lo, hi] and nothing else. */
static int parse_num(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    if (!*s || *s == '-' || *s == '+')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

int net_parse_cidr(const char *s, struct in_addr *addr, struct in_addr *mask)
{
    char buf[64];
    if (strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    unsigned long bits = 24;
    if (slash) {
        *slash++ = 0;
        if (strchr(slash, '.')) {
            if (inet_pton(AF_INET, slash, mask) != 1)
                return -EINVAL;
            uint32_t m = ntohl(mask->s_addr);
            if (m & (~m >> 1)) /* not contiguous ones then zeros */
                return -EINVAL;
            if (inet_pton(AF_INET, buf, addr) != 1)
                return -EINVAL;
            return 0;
        }
        if (parse_num(slash, 0, 32, &bits))
            return -EINVAL;
    }
    if (inet_pton(AF_INET, buf, addr) != 1)
        return -EINVAL;
    mask->s_addr = bits ? htonl(~0u << (32 - bits)) : 0;
    return 0;
}

/* "host:port" with host possibly empty or a name that resolves without DNS ("localhost"). */
int net_parse_inet(const char *s, struct sockaddr_in *out)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        return -EINVAL;
    char host[256];
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;
    unsigned long port;
    if (parse_num(colon + 1, 0, 65535, &port))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (!hl)
        out->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (!strcmp(host, "localhost"))
        out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return -EINVAL;
    return 0;
}

/* "addr:port" for hostfwd halves: addr may be empty, port required. */
static int parse_fwd_half(const char *s, size_t len, struct in_addr *addr, uint16_t *port)
{
    char buf[64];
    if (len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *colon = strchr(buf, ':');
    if (!colon)
        return -EINVAL;
    *colon = 0;
    addr->s_addr = htonl(INADDR_ANY);
    if (*buf && inet_pton(AF_INET, buf, addr) != 1)
        return -EINVAL;
    unsigned long p;
    if (parse_num(colon + 1, 0, 65535, &p))
        return -EINVAL;
    *port = (uint16_t)p;
    return 0;
}

int net_parse_hostfwd(const char *s, struct net_hostfwd *out)
{
    memset(out, 0, sizeof(*out));
    /* Protocol: "tcp:", "udp:" or nothing (tcp), followed by ":" before the host address, as
     * QEMU: "tcp::2222-:22" and "::2222-:22" and ":127.0.0.1:2222-:22". */
    if (!strncmp(s, "tcp:", 4)) {
        s += 4;
    } else if (!strncmp(s, "udp:", 4)) {
        out->udp = true;
        s += 4;
    } else if (*s == ':') {
        s += 1;
    } else {
        return -EINVAL;
    }
    const char *dash = strchr(s, '-');
    if (!dash)
        return -EINVAL;
    if (parse_fwd_half(s, (size_t)(dash - s), &out->host_addr, &out->host_port) ||
        parse_fwd_half(dash + 1, strlen(dash + 1), &out->guest_addr, &out->guest_port))
        return -EINVAL;
    if (!out->guest_port)
        return -EINVAL;
    return 0;
}

int net_parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
                                  &v[4], &v[5], &tail) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        if (s[i * 3] == ' ' || s[i * 3] == '+' || s[i * 3 + 1] == ' ')
            return -EINVAL;
        mac[i] = (uint8_t)v[i];
    }
    return 0;
}

void net_default_mac(unsigned n, uint8_t mac[6])
{
    /* QEMU counts up from 52:54:00:12:34:56 with carry into the upper bytes. */
    uint32_t low = 0x123456 + n;
    mac[0] = 0x52;
    mac[1] = 0x54;
    mac[2] = 0x00;
    mac[3] = (uint8_t)(low >> 16);
    mac[4] = (uint8_t)(low >> 8);
    mac[5] = (uint8_t)low;
}

static bool in_net(struct in_addr a, struct in_addr net, struct in_addr mask)
{
    return (a.s_addr & mask.s_addr) == (net.s_addr & mask.s_addr);
}

int net_backend_opts_check(const struct net_backend_opts *o, char *err, size_t errlen)
{
#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)
    if (!o->id || !*o->id)
        FAIL("id= is required");
    switch (o->type) {
    case NET_BACKEND_TAP:
    case NET_BACKEND_BRIDGE:
        if (o->queues < 1 || o->queues > NET_MAX_QUEUES)
            FAIL("queues must be 1 to %d", NET_MAX_QUEUES);
        if (o->ifname && (strlen(o->ifname) >= 16 || !*o->ifname || strchr(o->ifname, '/') ||
                          strchr(o->ifname, ' ')))
            FAIL("ifname '%s' is not a valid interface name (1-15 characters, no '/' or spaces)",
                 o->ifname);
        if (o->fd >= 0 && (o->ifname || o->queues > 1))
            FAIL("fd= cannot be combined with ifname= or queues=");
        if (o->fd >= 0 && ((o->script && *o->script) || (o->downscript && *o->downscript)))
            FAIL("fd= cannot be combined with script= or downscript=");
        if (o->type == NET_BACKEND_BRIDGE &&
            (!o->br || !*o->br || strlen(o->br) >= 16 || strchr(o->br, '/')))
            FAIL("br= must name a bridge (1-15 characters)");
        break;
    case NET_BACKEND_USER: {
        uint32_t m = ntohl(o->netmask.s_addr);
        if (m == 0 || (~m) < 3)
            FAIL("net= prefix must leave room for the guest, gateway and DNS (at most /29)");
        if (!in_net(o->host, o->net, o->netmask))
            FAIL("host= must be inside net=");
        if (!in_net(o->dns, o->net, o->netmask))
            FAIL("dns= must be inside net=");
        if (!in_net(o->dhcpstart, o->net, o->netmask))
            FAIL("dhcpstart= must be inside net=");
        if (o->host.s_addr == o->dns.s_addr || o->host.s_addr == o->dhcpstart.s_addr ||
            o->dns.s_addr == o->dhcpstart.s_addr)
            FAIL("host=, dns= and dhcpstart= must be different addresses");
        if (o->nhostfwd > NET_MAX_HOSTFWD)
            FAIL("at most %d hostfwd= rules", NET_MAX_HOSTFWD);
        for (unsigned i = 0; i < o->nhostfwd; i++) {
            const struct net_hostfwd *f = &o->hostfwd[i];
            if (f->guest_addr.s_addr != htonl(INADDR_ANY) &&
                !in_net(f->guest_addr, o->net, o->netmask))
                FAIL("hostfwd guest address must be inside net=");
        }
        if (o->hostname && strlen(o->hostname) > 255)
            FAIL("hostname= is too long");
        if (o->domainname && strlen(o->domainname) > 255)
            FAIL("domainname= is too long");
        break;
    }
    case NET_BACKEND_SOCKET:
        if (o->socket_mode == NET_SOCKET_CONNECT && !o->socket_addr.sin_port)
            FAIL("connect= needs a port");
        if (o->socket_mode == NET_SOCKET_CONNECT && o->socket_addr.sin_addr.s_addr == 0)
            FAIL("connect= needs a host (connect=127.0.0.1:PORT)");
        if (o->socket_mode == NET_SOCKET_MCAST &&
            !IN_MULTICAST(ntohl(o->socket_addr.sin_addr.s_addr)))
            FAIL("mcast= address must be a multicast address (224.0.0.0/4), e.g. "
                 "mcast=230.0.0.1:1234");
        if (o->socket_mode == NET_SOCKET_MCAST && !o->socket_addr.sin_port)
            FAIL("mcast= needs a port");
        break;
    default:
        FAIL("unknown backend type");
    }
    return 0;
#undef FAIL
}
