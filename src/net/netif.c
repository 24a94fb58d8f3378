/* Host interface administration over rtnetlink (no `ip` or `brctl` is run). */
#include <net/if.h> /* before the linux/ headers, which then skip their copies */
#include "net/netif.h"
#include "base/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void link_start(struct nl_msg *m, void *buf, size_t cap, uint16_t type, uint16_t flags,
                       int ifindex)
{
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
    nl_msg_init(m, buf, cap, type, flags, 0, &ifi, sizeof(ifi));
}

int netif_build_newlink_bridge(void *buf, size_t cap, const char *name)
{
    struct nl_msg m;
    link_start(&m, buf, cap, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
    nl_put_str(&m, IFLA_IFNAME, name);
    nl_nest_start(&m, IFLA_LINKINFO);
    nl_put_str(&m, IFLA_INFO_KIND, "bridge");
    nl_nest_end(&m);
    return nl_msg_end(&m);
}

int netif_build_dellink(void *buf, size_t cap, int ifindex)
{
    struct nl_msg m;
    link_start(&m, buf, cap, RTM_DELLINK, 0, ifindex);
    return nl_msg_end(&m);
}

int netif_build_setlink_master(void *buf, size_t cap, int ifindex, int master_ifindex)
{
    struct nl_msg m;
    link_start(&m, buf, cap, RTM_NEWLINK, 0, ifindex);
    nl_put_u32(&m, IFLA_MASTER, (uint32_t)master_ifindex);
    return nl_msg_end(&m);
}

int netif_build_setlink_up(void *buf, size_t cap, int ifindex, bool up)
{
    struct nl_msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC,
                            .ifi_index = ifindex,
                            .ifi_flags = up ? IFF_UP : 0,
                            .ifi_change = IFF_UP};
    nl_msg_init(&m, buf, cap, RTM_NEWLINK, 0, 0, &ifi, sizeof(ifi));
    return nl_msg_end(&m);
}

int netif_build_bridge_stp(void *buf, size_t cap, int ifindex, bool on)
{
    struct nl_msg m;
    link_start(&m, buf, cap, RTM_NEWLINK, 0, ifindex);
    nl_nest_start(&m, IFLA_LINKINFO);
    nl_put_str(&m, IFLA_INFO_KIND, "bridge");
    nl_nest_start(&m, IFLA_INFO_DATA);
    nl_put_u32(&m, IFLA_BR_STP_STATE, on ? 1 : 0);
    nl_nest_end(&m);
    nl_nest_end(&m);
    return nl_msg_end(&m);
}

int netif_build_bridge_forward_delay(void *buf, size_t cap, int ifindex, uint32_t centisecs)
{
    struct nl_msg m;
    link_start(&m, buf, cap, RTM_NEWLINK, 0, ifindex);
    nl_nest_start(&m, IFLA_LINKINFO);
    nl_put_str(&m, IFLA_INFO_KIND, "bridge");
    nl_nest_start(&m, IFLA_INFO_DATA);
    nl_put_u32(&m, IFLA_BR_FORWARD_DELAY, centisecs);
    nl_nest_end(&m);
    nl_nest_end(&m);
    return nl_msg_end(&m);
}

int netif_build_newaddr(void *buf, size_t cap, int ifindex, struct in_addr addr, unsigned prefix)
{
    struct nl_msg m;
    struct ifaddrmsg ifa = {.ifa_family = AF_INET,
                            .ifa_prefixlen = (uint8_t)prefix,
                            .ifa_scope = RT_SCOPE_UNIVERSE,
                            .ifa_index = (uint32_t)ifindex};
    nl_msg_init(&m, buf, cap, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, 0, &ifa, sizeof(ifa));
    nl_put(&m, IFA_LOCAL, &addr, 4);
    nl_put(&m, IFA_ADDRESS, &addr, 4);
    if (prefix < 31) {
        struct in_addr bcast = {addr.s_addr | htonl(prefix ? ~0u >> prefix : ~0u)};
        nl_put(&m, IFA_BROADCAST, &bcast, 4);
    }
    return nl_msg_end(&m);
}

int netif_build_getlink_dump(void *buf, size_t cap)
{
    struct nl_msg m;
    link_start(&m, buf, cap, RTM_GETLINK, NLM_F_DUMP, 0);
    return nl_msg_end(&m);
}

/* ---- operations ---- */

int netif_index(const char *name)
{
    unsigned idx = if_nametoindex(name);
    return idx ? (int)idx : -ENODEV;
}

bool netif_exists(const char *name)
{
    return if_nametoindex(name) != 0;
}

bool netif_is_bridge(const char *name)
{
    char path[80];
    snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", name);
    return strlen(name) < IFNAMSIZ && access(path, F_OK) == 0;
}

bool netif_is_tap(const char *name)
{
    char path[80];
    snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", name);
    return strlen(name) < IFNAMSIZ && access(path, F_OK) == 0;
}

/* Sends one request built by build into a fresh socket and waits for the ACK. */
static int netif_request(uint8_t *buf, int len)
{
    if (len < 0)
        return len;
    struct nl_sock s;
    int r = nl_open(&s);
    if (r < 0)
        return r;
    struct nl_msg m = {.buf = buf, .cap = (size_t)len, .len = (size_t)len};
    r = nl_talk(&s, &m, NULL, NULL);
    nl_close(&s);
    return r;
}

int netif_bridge_add(const char *name)
{
    uint8_t buf[256];
    if (strlen(name) >= IFNAMSIZ || !*name)
        return -EINVAL;
    return netif_request(buf, netif_build_newlink_bridge(buf, sizeof(buf), name));
}

int netif_link_del(const char *name)
{
    uint8_t buf[128];
    int idx = netif_index(name);
    if (idx < 0)
        return idx;
    return netif_request(buf, netif_build_dellink(buf, sizeof(buf), idx));
}

int netif_set_master(const char *ifname, const char *bridge)
{
    uint8_t buf[128];
    int idx = netif_index(ifname);
    if (idx < 0)
        return idx;
    int br = 0;
    if (bridge) {
        br = netif_index(bridge);
        if (br < 0)
            return br;
    }
    return netif_request(buf, netif_build_setlink_master(buf, sizeof(buf), idx, br));
}

int netif_set_up(const char *ifname, bool up)
{
    uint8_t buf[128];
    int idx = netif_index(ifname);
    if (idx < 0)
        return idx;
    return netif_request(buf, netif_build_setlink_up(buf, sizeof(buf), idx, up));
}

int netif_bridge_set_stp(const char *bridge, bool on)
{
    uint8_t buf[128];
    int idx = netif_index(bridge);
    if (idx < 0)
        return idx;
    return netif_request(buf, netif_build_bridge_stp(buf, sizeof(buf), idx, on));
}

int netif_bridge_set_forward_delay(const char *bridge, uint32_t centisecs)
{
    uint8_t buf[128];
    int idx = netif_index(bridge);
    if (idx < 0)
        return idx;
    return netif_request(buf, netif_build_bridge_forward_delay(buf, sizeof(buf), idx, centisecs));
}

int netif_addr_add(const char *ifname, struct in_addr addr, unsigned prefix)
{
    uint8_t buf[128];
    int idx = netif_index(ifname);
    if (idx < 0)
        return idx;
    if (prefix > 32)
        return -EINVAL;
    return netif_request(buf, netif_build_newaddr(buf, sizeof(buf), idx, addr, prefix));
}

static int tap_open_named(const char *name, int *fd_out)
{
    if (strlen(name) >= IFNAMSIZ || !*name)
        return -EINVAL;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *fd_out = fd;
    return 0;
}

int netif_tap_add(const char *name, long uid, long gid)
{
    if (netif_exists(name))
        return -EEXIST;
    int fd = -1;
    int r = tap_open_named(name, &fd);
    if (r < 0)
        return r;
    if ((uid >= 0 && ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0) ||
        (gid >= 0 && ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0) ||
        ioctl(fd, TUNSETPERSIST, 1UL) < 0) {
        r = -errno;
        close(fd); /* not persistent yet: the TAP goes away with the fd */
        return r;
    }
    close(fd);
    return 0;
}

int netif_tap_del(const char *name)
{
    if (!netif_exists(name))
        return -ENODEV;
    if (!netif_is_tap(name))
        return -EINVAL;
    /* Attach with the flags it was made with; IFF_VNET_HDR must match what TUNSETIFF asks. */
    char path[80];
    snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", name);
    FILE *f = fopen(path, "r");
    unsigned long flags = IFF_TAP | IFF_NO_PI;
    if (f) {
        if (fscanf(f, "%lx", &flags) != 1)
            flags = IFF_TAP | IFF_NO_PI;
        fclose(f);
    }
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct ifreq ifr = {0};
    ifr.ifr_flags = (short)(flags & (IFF_TAP | IFF_TUN | IFF_NO_PI | IFF_VNET_HDR |
                                     IFF_MULTI_QUEUE));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    int r = 0;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 0UL) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* ---- dumps ---- */

int netif_parse_link(const struct nlmsghdr *h, struct netif_link *l)
{
    memset(l, 0, sizeof(*l));
    l->stp_state = -1;
    l->port_state = -1;
    if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
        return -EINVAL;
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    l->index = ifi->ifi_index;
    l->up = ifi->ifi_flags & IFF_UP;
    const struct nlattr *tb[IFLA_MAX + 1];
    const uint8_t *attrs = (const uint8_t *)ifi + NLMSG_ALIGN(sizeof(*ifi));
    size_t alen = h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi));
    if (nl_parse_attrs(attrs, alen, tb, IFLA_MAX + 1) < 0)
        return -EINVAL;
    nl_attr_str(tb[IFLA_IFNAME], l->name, sizeof(l->name));
    if (tb[IFLA_MASTER])
        l->master = (int)nl_attr_u32(tb[IFLA_MASTER]);
    if (tb[IFLA_LINKINFO]) {
        const struct nlattr *li[IFLA_INFO_MAX + 1];
        if (nl_parse_attrs(nl_attr_data(tb[IFLA_LINKINFO]), nl_attr_len(tb[IFLA_LINKINFO]), li,
                           IFLA_INFO_MAX + 1) == 0) {
            nl_attr_str(li[IFLA_INFO_KIND], l->kind, sizeof(l->kind));
            nl_attr_str(li[IFLA_INFO_SLAVE_KIND], l->slave_kind, sizeof(l->slave_kind));
            if (!strcmp(l->kind, "bridge") && li[IFLA_INFO_DATA]) {
                const struct nlattr *br[IFLA_BR_MAX + 1];
                if (nl_parse_attrs(nl_attr_data(li[IFLA_INFO_DATA]),
                                   nl_attr_len(li[IFLA_INFO_DATA]), br, IFLA_BR_MAX + 1) == 0 &&
                    br[IFLA_BR_STP_STATE])
                    l->stp_state = (int)nl_attr_u32(br[IFLA_BR_STP_STATE]);
            }
            if (!strcmp(l->slave_kind, "bridge") && li[IFLA_INFO_SLAVE_DATA]) {
                const struct nlattr *bp[IFLA_BRPORT_MAX + 1];
                if (nl_parse_attrs(nl_attr_data(li[IFLA_INFO_SLAVE_DATA]),
                                   nl_attr_len(li[IFLA_INFO_SLAVE_DATA]), bp,
                                   IFLA_BRPORT_MAX + 1) == 0 &&
                    bp[IFLA_BRPORT_STATE])
                    l->port_state = nl_attr_u8(bp[IFLA_BRPORT_STATE]);
            }
        }
    }
    return 0;
}

struct list_ctx {
    struct netif_link *v;
    unsigned n;
};

static int list_cb(const struct nlmsghdr *h, void *opaque)
{
    struct list_ctx *x = opaque;
    struct netif_link l;
    if (netif_parse_link(h, &l) < 0)
        return 0;
    x->v = xrealloc(x->v, (x->n + 1) * sizeof(*x->v));
    x->v[x->n++] = l;
    return 0;
}

int netif_list(struct netif_link **out, unsigned *n)
{
    uint8_t buf[128];
    struct list_ctx x = {0};
    struct nl_sock s;
    int r = nl_open(&s);
    if (r < 0)
        return r;
    int len = netif_build_getlink_dump(buf, sizeof(buf));
    struct nl_msg m = {.buf = buf, .cap = sizeof(buf), .len = (size_t)len};
    r = nl_talk(&s, &m, list_cb, &x);
    nl_close(&s);
    if (r < 0) {
        free(x.v);
        return r;
    }
    *out = x.v;
    *n = x.n;
    return 0;
}

const char *netif_port_state_name(int state)
{
    static const char *const names[] = {"disabled", "listening", "learning", "forwarding",
                                        "blocking"};
    return state >= 0 && state < 5 ? names[state] : "unknown";
}

/* ---- address/route clash ---- */

struct clash_ctx {
    uint32_t net, mask;
    char *what;
    size_t whatlen;
    int found;
};

static bool overlaps(uint32_t a, unsigned pa, uint32_t b, unsigned pb)
{
    unsigned p = pa < pb ? pa : pb;
    uint32_t m = p ? ~0u << (32 - p) : 0;
    return (a & m) == (b & m);
}

static int addr_cb(const struct nlmsghdr *h, void *opaque)
{
    struct clash_ctx *x = opaque;
    if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
        return 0;
    const struct ifaddrmsg *ifa = NLMSG_DATA(h);
    if (ifa->ifa_family != AF_INET || x->found)
        return 0;
    const struct nlattr *tb[IFA_MAX + 1];
    if (nl_parse_attrs((const uint8_t *)ifa + NLMSG_ALIGN(sizeof(*ifa)),
                       h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifa)), tb, IFA_MAX + 1) < 0)
        return 0;
    const struct nlattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
    if (!a || nl_attr_len(a) < 4)
        return 0;
    uint32_t addr;
    memcpy(&addr, nl_attr_data(a), 4);
    unsigned x_prefix = (unsigned)__builtin_popcount(x->mask);
    if (overlaps(ntohl(addr), ifa->ifa_prefixlen, x->net, x_prefix)) {
        char ifname[IF_NAMESIZE] = "?", s[INET_ADDRSTRLEN];
        if_indextoname(ifa->ifa_index, ifname);
        inet_ntop(AF_INET, &addr, s, sizeof(s));
        snprintf(x->what, x->whatlen, "address %s/%u on %s", s, ifa->ifa_prefixlen, ifname);
        x->found = 1;
    }
    return 0;
}

static int route_cb(const struct nlmsghdr *h, void *opaque)
{
    struct clash_ctx *x = opaque;
    if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
        return 0;
    const struct rtmsg *rt = NLMSG_DATA(h);
    if (rt->rtm_family != AF_INET || rt->rtm_table != RT_TABLE_MAIN || rt->rtm_dst_len == 0 ||
        x->found)
        return 0; /* the default route overlaps everything and is no clash */
    const struct nlattr *tb[RTA_MAX + 1];
    if (nl_parse_attrs((const uint8_t *)rt + NLMSG_ALIGN(sizeof(*rt)),
                       h->nlmsg_len - NLMSG_LENGTH(sizeof(*rt)), tb, RTA_MAX + 1) < 0 ||
        !tb[RTA_DST] || nl_attr_len(tb[RTA_DST]) < 4)
        return 0;
    uint32_t dst;
    memcpy(&dst, nl_attr_data(tb[RTA_DST]), 4);
    unsigned x_prefix = (unsigned)__builtin_popcount(x->mask);
    if (overlaps(ntohl(dst), rt->rtm_dst_len, x->net, x_prefix)) {
        char s[INET_ADDRSTRLEN], ifname[IF_NAMESIZE] = "?";
        inet_ntop(AF_INET, &dst, s, sizeof(s));
        if (tb[RTA_OIF])
            if_indextoname(nl_attr_u32(tb[RTA_OIF]), ifname);
        snprintf(x->what, x->whatlen, "route %s/%u via %s", s, rt->rtm_dst_len, ifname);
        x->found = 1;
    }
    return 0;
}

int netif_ipv4_clash(struct in_addr addr, unsigned prefix, char *what, size_t whatlen)
{
    struct clash_ctx x = {.net = ntohl(addr.s_addr), .mask = prefix ? ~0u << (32 - prefix) : 0,
                          .what = what, .whatlen = whatlen};
    struct nl_sock s;
    int r = nl_open(&s);
    if (r < 0)
        return r;
    uint8_t buf[128];
    struct nl_msg m;
    struct ifaddrmsg ifa = {.ifa_family = AF_INET};
    nl_msg_init(&m, buf, sizeof(buf), RTM_GETADDR, NLM_F_DUMP, 0, &ifa, sizeof(ifa));
    r = nl_talk(&s, &m, addr_cb, &x);
    if (r == 0 && !x.found) {
        struct rtmsg rt = {.rtm_family = AF_INET};
        nl_msg_init(&m, buf, sizeof(buf), RTM_GETROUTE, NLM_F_DUMP, 0, &rt, sizeof(rt));
        r = nl_talk(&s, &m, route_cb, &x);
    }
    nl_close(&s);
    return r < 0 ? r : x.found;
}
