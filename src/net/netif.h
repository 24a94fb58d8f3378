/* Host interface administration over rtnetlink: bridges, TAPs, ports, addresses, link state. */
#pragma once
#include "net/netlink.h"
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Message builders (pure: they only write buf; unit-tested byte by byte). Each returns the
 * message length or -EMSGSIZE. ifindex 0 with a name addresses the link by IFLA_IFNAME. */
int netif_build_newlink_bridge(void *buf, size_t cap, const char *name);
int netif_build_dellink(void *buf, size_t cap, int ifindex);
int netif_build_setlink_master(void *buf, size_t cap, int ifindex, int master_ifindex);
int netif_build_setlink_up(void *buf, size_t cap, int ifindex, bool up);
int netif_build_bridge_stp(void *buf, size_t cap, int ifindex, bool on);
/* Forward delay in centiseconds (USER_HZ ticks), as IFLA_BR_FORWARD_DELAY takes it. */
int netif_build_bridge_forward_delay(void *buf, size_t cap, int ifindex, uint32_t centisecs);
int netif_build_newaddr(void *buf, size_t cap, int ifindex, struct in_addr addr, unsigned prefix);
int netif_build_getlink_dump(void *buf, size_t cap);

/* Operations (need CAP_NET_ADMIN): 0 or -errno (-ENODEV when a name does not exist). */
int netif_index(const char *name); /* > 0, or -ENODEV */
bool netif_exists(const char *name);
bool netif_is_bridge(const char *name);
bool netif_is_tap(const char *name);
int netif_bridge_add(const char *name);
int netif_link_del(const char *name);
int netif_set_master(const char *ifname, const char *bridge); /* bridge NULL: detach */
int netif_set_up(const char *ifname, bool up);
int netif_bridge_set_stp(const char *bridge, bool on);
int netif_bridge_set_forward_delay(const char *bridge, uint32_t centisecs);
int netif_addr_add(const char *ifname, struct in_addr addr, unsigned prefix);
/* Persistent TAP owned by uid/gid (-1: unchanged), as `ip tuntap add mode tap user U`. */
int netif_tap_add(const char *name, long uid, long gid);
int netif_tap_del(const char *name);

/* One link from a dump. */
struct netif_link {
    int index;
    char name[16];
    char kind[16];       /* IFLA_INFO_KIND: "bridge", "tun", ... or "" */
    char slave_kind[16]; /* "bridge" for bridge ports */
    int master;          /* ifindex of the master, 0 none */
    bool up;
    int stp_state;       /* bridges: IFLA_BR_STP_STATE (0 off, 1 kernel STP), -1 unknown */
    int port_state;      /* bridge ports: BR_STATE_* (0 disabled .. 4 blocking), -1 unknown */
};
/* Parses one RTM_NEWLINK message into l; 0 or -EINVAL. (Exposed for the unit tests.) */
int netif_parse_link(const struct nlmsghdr *h, struct netif_link *l);
/* All links; *out malloc'd. 0 or -errno. */
int netif_list(struct netif_link **out, unsigned *n);
const char *netif_port_state_name(int state);

/* IPv4 networks already on the host (addresses' subnets and main-table routes), to refuse
 * starting a virtual network that would clash. Returns 1 and describes the clash in what when
 * addr/prefix overlaps one, 0 when free, -errno when the kernel cannot be asked. */
int netif_ipv4_clash(struct in_addr addr, unsigned prefix, char *what, size_t whatlen);
