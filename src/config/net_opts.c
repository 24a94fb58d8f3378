/* -netdev, -net and -nic: QEMU's network options into vm_config's netdevs and nics. */
#include "base/log.h"
#include "base/util.h"
#include "config/qemu_opts.h"
#include "config/vm_config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct net_owned {
    char **v;
    unsigned n;
    /* -net hub numbers (QEMU's vlan=), parallel to netdevs/nics; -1 = not on a hub. */
    int *netdev_hub, *nic_hub;
    unsigned next_auto_id;
};

static struct net_owned *owned(struct vm_config *c)
{
    if (!c->net_owned_)
        c->net_owned_ = xzalloc(sizeof(struct net_owned));
    return c->net_owned_;
}

static const char *keep(struct vm_config *c, char *s)
{
    struct net_owned *o = owned(c);
    o->v = xrealloc(o->v, (o->n + 1) * sizeof(*o->v));
    o->v[o->n++] = s;
    return s;
}

static const char *keep_dup(struct vm_config *c, const char *s)
{
    return s ? keep(c, xstrdup(s)) : NULL;
}

void vm_config_net_free(struct vm_config *c)
{
    struct net_owned *o = c->net_owned_;
    if (o) {
        for (unsigned i = 0; i < o->n; i++)
            free(o->v[i]);
        free(o->v);
        free(o->netdev_hub);
        free(o->nic_hub);
        free(o);
    }
    free(c->netdevs);
    free(c->nics);
    free(c->macs_used);
    c->net_owned_ = NULL;
    c->netdevs = NULL;
    c->nics = NULL;
    c->macs_used = NULL;
    c->nnetdevs = c->nnics = c->nmacs_used = 0;
}

struct vm_config_netdev *vm_config_find_netdev(struct vm_config *c, const char *id)
{
    for (unsigned i = 0; i < c->nnetdevs; i++)
        if (!strcmp(c->netdevs[i].id, id))
            return &c->netdevs[i];
    return NULL;
}

/* ---- MACs ---- */

static bool mac_used(const struct vm_config *c, const uint8_t mac[6])
{
    for (unsigned i = 0; i < c->nmacs_used; i++)
        if (!memcmp(c->macs_used[i], mac, 6))
            return true;
    return false;
}

void vm_config_net_use_mac(struct vm_config *c, const uint8_t mac[6])
{
    if (mac_used(c, mac))
        return;
    c->macs_used = xrealloc(c->macs_used, (c->nmacs_used + 1) * sizeof(*c->macs_used));
    memcpy(c->macs_used[c->nmacs_used++], mac, 6);
}

void vm_config_net_alloc_mac(struct vm_config *c, uint8_t mac[6])
{
    for (unsigned n = 0;; n++) {
        net_default_mac(n, mac);
        if (!mac_used(c, mac))
            break;
    }
    vm_config_net_use_mac(c, mac);
}

/* ---- backends ---- */

static const struct {
    const char *name;
    const char *why;
} refused_types[] = {
    {"vde", "VDE switches are not supported; use -netdev socket or a TAP on a bridge"},
    {"l2tpv3", "L2TPv3 is not supported; use -netdev socket"},
    {"vhost-user", "vhost-user is not supported; use -netdev tap"},
    {"vhost-vdpa", "vDPA is not supported; use -netdev tap"},
    {"hubport", "vmkit has no hubs; connect a NIC directly to a -netdev"},
    {"stream", "use -netdev socket,listen=|connect= instead"},
    {"dgram", "use -netdev socket,mcast= instead"},
    {"netmap", "netmap is not supported; use -netdev tap"},
    {"af-xdp", "AF_XDP is not supported; use -netdev tap"},
    {"vmnet-host", "vmnet is macOS only"},
    {"vmnet-shared", "vmnet is macOS only"},
    {"vmnet-bridged", "vmnet is macOS only"},
};

static int type_from_name(const char *opt, const char *name, enum net_backend_type *t)
{
    static const struct {
        const char *name;
        enum net_backend_type t;
    } types[] = {{"tap", NET_BACKEND_TAP},
                 {"bridge", NET_BACKEND_BRIDGE},
                 {"user", NET_BACKEND_USER},
                 {"socket", NET_BACKEND_SOCKET}};
    for (unsigned i = 0; i < ARRAY_SIZE(types); i++) {
        if (!strcmp(types[i].name, name)) {
            *t = types[i].t;
            return 0;
        }
    }
    for (unsigned i = 0; i < ARRAY_SIZE(refused_types); i++) {
        if (!strcmp(refused_types[i].name, name)) {
            log_error("%s %s: not supported: %s", opt, name, refused_types[i].why);
            return -EINVAL;
        }
    }
    log_error("%s: '%s' is not a network backend; vmkit has tap, bridge, user and socket", opt,
              name);
    return -EINVAL;
}

/* Reads the keys of backend type t from o into b. Keys the caller handles (id, name, vlan,
 * model, mac) must already be marked used. */
static int fill_backend(struct vm_config *c, const char *opt, struct qemu_opts *o,
                        enum net_backend_type t, const char *id, struct net_backend_opts *b)
{
    const char *tname = net_backend_type_name(t);
    net_backend_opts_init(b, t, id);
    const char *v;
    bool flag;
    unsigned u;
    int r;
    char err[256];
    const char *known = "";

    /* QEMU keys vmkit accepts and ignores, for scripts written for QEMU. */
    qemu_opts_get(o, "sndbuf");
    qemu_opts_get(o, "ipv4");
    qemu_opts_get(o, "ipv6");

    switch (t) {
    case NET_BACKEND_TAP:
    case NET_BACKEND_BRIDGE:
        if (t == NET_BACKEND_TAP) {
            known = "id, ifname, fd, script, downscript, vnet_hdr, queues, sndbuf, vhost=off";
            b->ifname = keep_dup(c, qemu_opts_get(o, "ifname"));
            if ((v = qemu_opts_get(o, "script")))
                b->script = !strcmp(v, "no") || !*v ? "" : keep_dup(c, v);
            if ((v = qemu_opts_get(o, "downscript")))
                b->downscript = !strcmp(v, "no") || !*v ? "" : keep_dup(c, v);
            r = qemu_opts_get_uint(o, "fd", &u);
            if (r == 0)
                b->fd = (int)u;
            if (r == -EINVAL || r == -ERANGE || (r == 0 && u > 1000000)) {
                log_error("%s %s: fd= takes an open file descriptor number", opt, tname);
                return -EINVAL;
            }
            if (qemu_opts_has(o, "fds") || qemu_opts_has(o, "vhostfds") ||
                qemu_opts_has(o, "helper") || qemu_opts_has(o, "br")) {
                log_error("%s tap: fds=, vhostfds=, helper= and br= are not supported; use "
                          "fd=N, or -netdev bridge,br=BRIDGE",
                          opt);
                return -EINVAL;
            }
            if (qemu_opts_get_bool(o, "vhost", false, &flag) < 0 || flag ||
                qemu_opts_get_bool(o, "vhostforce", false, &flag) < 0 || flag) {
                log_error("%s tap: vhost-net is not supported; leave vhost= off (vmkit moves "
                          "frames in the VMM)",
                          opt);
                return -EINVAL;
            }
        } else {
            known = "id, br, vnet_hdr, queues";
            if ((v = qemu_opts_get(o, "br")))
                b->br = keep_dup(c, v);
            if (qemu_opts_has(o, "helper")) {
                log_error("%s bridge: helper= is not supported: vmkit attaches the TAP itself "
                          "(needs root or CAP_NET_ADMIN)",
                          opt);
                return -EINVAL;
            }
        }
        if (qemu_opts_has(o, "vnet_hdr")) {
            if (qemu_opts_get_bool(o, "vnet_hdr", false, &flag) < 0) {
                log_error("%s %s: vnet_hdr takes on or off", opt, tname);
                return -EINVAL;
            }
            b->vnet_hdr = flag;
        }
        r = qemu_opts_get_uint(o, "queues", &u);
        if (r == 0)
            b->queues = u;
        else if (r != -ENOENT) {
            log_error("%s %s: queues= takes a number from 1 to %d", opt, tname, NET_MAX_QUEUES);
            return -EINVAL;
        }
        break;
    case NET_BACKEND_USER:
        known = "id, net, host, dns, dhcpstart, hostfwd, restrict, hostname, domainname, tftp, "
                "bootfile";
        if ((v = qemu_opts_get(o, "net"))) {
            if (net_parse_cidr(v, &b->net, &b->netmask)) {
                log_error("%s user: net=%s is not an IPv4 network; use net=ADDR/PREFIX (e.g. "
                          "net=10.0.2.0/24)",
                          opt, v);
                return -EINVAL;
            }
            b->net.s_addr &= b->netmask.s_addr;
            b->host.s_addr = htonl(ntohl(b->net.s_addr) + 2);
            b->dns.s_addr = htonl(ntohl(b->net.s_addr) + 3);
            b->dhcpstart.s_addr = htonl(ntohl(b->net.s_addr) + 15);
        }
        static const char *const addr_keys[] = {"host", "dns", "dhcpstart"};
        struct in_addr *addr_dst[] = {&b->host, &b->dns, &b->dhcpstart};
        for (unsigned i = 0; i < 3; i++) {
            if ((v = qemu_opts_get(o, addr_keys[i])) && inet_pton(AF_INET, v, addr_dst[i]) != 1) {
                log_error("%s user: %s=%s is not an IPv4 address", opt, addr_keys[i], v);
                return -EINVAL;
            }
        }
        if (qemu_opts_get_bool(o, "restrict", false, &b->restrict_net) < 0) {
            log_error("%s user: restrict takes on or off", opt);
            return -EINVAL;
        }
        b->hostname = keep_dup(c, qemu_opts_get(o, "hostname"));
        b->domainname = keep_dup(c, qemu_opts_get(o, "domainname"));
        b->tftp = keep_dup(c, qemu_opts_get(o, "tftp"));
        b->bootfile = keep_dup(c, qemu_opts_get(o, "bootfile"));
        for (unsigned i = 0; i < o->n; i++) {
            if (strcmp(o->v[i].key, "hostfwd"))
                continue;
            o->v[i].used = true;
            if (b->nhostfwd >= NET_MAX_HOSTFWD) {
                log_error("%s user: at most %d hostfwd= rules", opt, NET_MAX_HOSTFWD);
                return -EINVAL;
            }
            if (net_parse_hostfwd(o->v[i].value, &b->hostfwd[b->nhostfwd])) {
                log_error("%s user: hostfwd=%s is not valid; use "
                          "hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (e.g. "
                          "hostfwd=tcp::2222-:22)",
                          opt, o->v[i].value);
                return -EINVAL;
            }
            b->nhostfwd++;
        }
        if (qemu_opts_has(o, "smb") || qemu_opts_has(o, "guestfwd")) {
            log_error("%s user: smb= and guestfwd= are not supported", opt);
            return -EINVAL;
        }
        break;
    case NET_BACKEND_SOCKET: {
        known = "id, listen, connect, mcast, localaddr";
        const char *l = qemu_opts_get(o, "listen"), *cn = qemu_opts_get(o, "connect"),
                   *m = qemu_opts_get(o, "mcast");
        if (qemu_opts_has(o, "fd") || qemu_opts_has(o, "udp")) {
            log_error("%s socket: fd= and udp= are not supported; use listen=, connect= or mcast=",
                      opt);
            return -EINVAL;
        }
        if (!!l + !!cn + !!m != 1) {
            log_error("%s socket: give exactly one of listen=, connect= or mcast=", opt);
            return -EINVAL;
        }
        v = l ? l : cn ? cn : m;
        b->socket_mode = l ? NET_SOCKET_LISTEN : cn ? NET_SOCKET_CONNECT : NET_SOCKET_MCAST;
        if (net_parse_inet(v, &b->socket_addr)) {
            log_error("%s socket: '%s' is not HOST:PORT (an IPv4 address or localhost)", opt, v);
            return -EINVAL;
        }
        if ((v = qemu_opts_get(o, "localaddr"))) {
            if (!m || inet_pton(AF_INET, v, &b->socket_localaddr) != 1) {
                log_error("%s socket: localaddr= takes an IPv4 address and only goes with mcast=",
                          opt);
                return -EINVAL;
            }
        }
        break;
    }
    }
    const char *unused = qemu_opts_first_unused(o);
    if (unused) {
        log_error("%s %s: unknown parameter '%s'; vmkit accepts %s", opt, tname, unused, known);
        return -EINVAL;
    }
    if (net_backend_opts_check(b, err, sizeof(err))) {
        log_error("%s %s,id=%s: %s", opt, tname, id, err);
        return -EINVAL;
    }
    return 0;
}

static bool valid_id(const char *id)
{
    /* QEMU: a letter, then letters, digits, '-', '.', '_'. */
    if (!id || !((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z')))
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.' || *p == '_'))
            return false;
    return true;
}

static int add_netdev(struct vm_config *c, const char *opt, struct qemu_opts *o, const char *type,
                      const char *id, const char *raw, int hub)
{
    enum net_backend_type t;
    if (type_from_name(opt, type, &t))
        return -EINVAL;
    if (vm_config_find_netdev(c, id)) {
        log_error("%s %s: duplicate ID '%s' for netdev", opt, raw, id);
        return -EINVAL;
    }
    struct vm_config_netdev nd = {.id = id, .type = keep_dup(c, type), .opts = keep_dup(c, raw)};
    if (fill_backend(c, opt, o, t, id, &nd.backend))
        return -EINVAL;
    struct net_owned *own = owned(c);
    c->netdevs = xrealloc(c->netdevs, (c->nnetdevs + 1) * sizeof(*c->netdevs));
    own->netdev_hub = xrealloc(own->netdev_hub, (c->nnetdevs + 1) * sizeof(int));
    own->netdev_hub[c->nnetdevs] = hub;
    c->netdevs[c->nnetdevs++] = nd;
    return 0;
}

int vm_config_add_netdev(struct vm_config *c, const char *arg)
{
    struct qemu_opts o = {0};
    char err[256];
    int ret = -EINVAL;
    if (qemu_opts_parse(&o, arg, "type", err, sizeof(err)) < 0) {
        log_error("-netdev %s: %s", arg, err);
        return -EINVAL;
    }
    const char *type = qemu_opts_get(&o, "type");
    const char *id = qemu_opts_get(&o, "id");
    if (type && (!strcmp(type, "help") || !strcmp(type, "?"))) {
        printf("Available netdev backend types:\nsocket\nuser\ntap\nbridge\n");
        ret = 1;
        goto out;
    }
    if (!type || !*type) {
        log_error("-netdev %s: the backend type is missing; use -netdev TYPE,id=ID,... (TYPE is "
                  "tap, bridge, user or socket)",
                  arg);
        goto out;
    }
    if (!id || !*id) {
        log_error("-netdev %s: id= is required (the NIC refers to it: -device "
                  "virtio-net-pci,netdev=ID)",
                  arg);
        goto out;
    }
    if (!valid_id(id)) {
        log_error("-netdev %s: id '%s' must start with a letter and contain only letters, "
                  "digits, '-', '.' and '_'",
                  arg, id);
        goto out;
    }
    ret = add_netdev(c, "-netdev", &o, type, keep_dup(c, id), arg, -1);
out:
    qemu_opts_free(&o);
    return ret;
}

/* model= of -net nic / -nic: only virtio-net exists. 1 when help was printed. */
static int check_model(const char *opt, const char *model)
{
    if (!model || !strcmp(model, "virtio") || !strcmp(model, "virtio-net-pci") ||
        !strcmp(model, "virtio-net"))
        return 0;
    if (!strcmp(model, "help") || !strcmp(model, "?")) {
        printf("Available NIC models:\nvirtio-net-pci\n");
        return 1;
    }
    log_error("%s: model=%s is not supported: vmkit only has virtio-net; use model=virtio (or "
              "-device virtio-net-pci)",
              opt, model);
    return -EINVAL;
}

static int add_nic(struct vm_config *c, const char *opt, const char *netdev, const char *name,
                   const char *mac_str, int hub)
{
    struct vm_config_nic nic = {.netdev = netdev, .model = "virtio-net-pci", .name = name};
    if (mac_str) {
        if (net_parse_mac(mac_str, nic.mac)) {
            log_error("%s: '%s' is not a MAC address; use 52:54:00:XX:XX:XX", opt, mac_str);
            return -EINVAL;
        }
        if (nic.mac[0] & 1) {
            log_error("%s: %s is a multicast MAC; a NIC needs a unicast one (first byte even)",
                      opt, mac_str);
            return -EINVAL;
        }
        static const uint8_t zero[6];
        if (!memcmp(nic.mac, zero, 6)) {
            log_error("%s: %s is not a usable MAC address", opt, mac_str);
            return -EINVAL;
        }
        vm_config_net_use_mac(c, nic.mac);
    }
    /* else: mac stays zero and is assigned in vm_config_net_finish, once every explicit MAC is
     * known */
    struct net_owned *own = owned(c);
    c->nics = xrealloc(c->nics, (c->nnics + 1) * sizeof(*c->nics));
    own->nic_hub = xrealloc(own->nic_hub, (c->nnics + 1) * sizeof(int));
    own->nic_hub[c->nnics] = hub;
    c->nics[c->nnics++] = nic;
    return 0;
}

static const char *auto_id(struct vm_config *c, const char *prefix)
{
    return keep(c, xasprintf("_%s%u", prefix, owned(c)->next_auto_id++));
}

int vm_config_add_net(struct vm_config *c, const char *arg)
{
    struct qemu_opts o = {0};
    char err[256];
    int ret = -EINVAL;
    if (qemu_opts_parse(&o, arg, "type", err, sizeof(err)) < 0) {
        log_error("-net %s: %s", arg, err);
        return -EINVAL;
    }
    const char *type = qemu_opts_get(&o, "type");
    if (!type || !*type) {
        log_error("-net %s: the type is missing; use -net nic,model=virtio and -net "
                  "user|tap|socket|bridge",
                  arg);
        goto out;
    }
    unsigned hub = 0;
    int r = qemu_opts_get_uint(&o, "vlan", &hub);
    if (r != 0 && r != -ENOENT) {
        log_error("-net %s: vlan= takes a hub number", arg);
        goto out;
    }
    const char *name = qemu_opts_get(&o, "name");
    if (!strcmp(type, "none")) {
        ret = 0;
        goto out;
    }
    if (!strcmp(type, "nic")) {
        const char *model = qemu_opts_get(&o, "model");
        const char *mac = qemu_opts_get(&o, "macaddr");
        const char *netdev = qemu_opts_get(&o, "netdev");
        qemu_opts_get(&o, "addr");    /* PCI slot: vmkit places NICs itself */
        qemu_opts_get(&o, "vectors"); /* MSI-X vector count: the device decides */
        const char *unused = qemu_opts_first_unused(&o);
        if (unused) {
            log_error("-net nic: unknown parameter '%s'; vmkit accepts model, macaddr, netdev, "
                      "name, vlan",
                      unused);
            goto out;
        }
        if ((ret = check_model("-net nic", model)) != 0) {
            ret = ret > 0 ? 1 : -EINVAL;
            goto out;
        }
        ret = -EINVAL;
        ret = add_nic(c, "-net nic", keep_dup(c, netdev), name ? keep_dup(c, name)
                      : auto_id(c, "nic"), mac, netdev ? -1 : (int)hub);
        goto out;
    }
    const char *id = name ? keep_dup(c, name) : auto_id(c, "net");
    qemu_opts_get(&o, "id");
    ret = add_netdev(c, "-net", &o, type, id, arg, (int)hub);
out:
    qemu_opts_free(&o);
    return ret;
}

int vm_config_add_nic(struct vm_config *c, const char *arg)
{
    struct qemu_opts o = {0};
    char err[256];
    int ret = -EINVAL;
    if (qemu_opts_parse(&o, arg, "type", err, sizeof(err)) < 0) {
        log_error("-nic %s: %s", arg, err);
        return -EINVAL;
    }
    const char *type = qemu_opts_get(&o, "type");
    if (!type || !*type) {
        log_error("-nic %s: the backend type is missing; use -nic user|tap|socket|bridge[,...]"
                  "[,model=virtio][,mac=MAC]",
                  arg);
        goto out;
    }
    if (!strcmp(type, "none")) {
        ret = 0;
        goto out;
    }
    const char *model = qemu_opts_get(&o, "model");
    if ((ret = check_model("-nic", model)) != 0) {
        ret = ret > 0 ? 1 : -EINVAL;
        goto out;
    }
    ret = -EINVAL;
    const char *mac = keep_dup(c, qemu_opts_get(&o, "mac"));
    const char *id = qemu_opts_get(&o, "id");
    if (id && !valid_id(id)) {
        log_error("-nic %s: id '%s' must start with a letter and contain only letters, digits, "
                  "'-', '.' and '_'",
                  arg, id);
        goto out;
    }
    id = id ? keep_dup(c, id) : auto_id(c, "nic");
    if (add_netdev(c, "-nic", &o, type, id, arg, -1))
        goto out;
    ret = add_nic(c, "-nic", id, id, mac, -1);
out:
    qemu_opts_free(&o);
    return ret;
}

int vm_config_net_finish(struct vm_config *c)
{
    struct net_owned *own = c->net_owned_;
    if (!own)
        return 0;
    /* -net hubs: vmkit has no hub, so each hub must be exactly one NIC and one backend. */
    for (unsigned i = 0; i < c->nnics; i++) {
        int hub = own->nic_hub[i];
        if (hub < 0)
            continue;
        int nic_count = 0, be = -1, be_count = 0;
        for (unsigned j = 0; j < c->nnics; j++)
            nic_count += own->nic_hub[j] == hub;
        for (unsigned j = 0; j < c->nnetdevs; j++) {
            if (own->netdev_hub[j] == hub) {
                be = (int)j;
                be_count++;
            }
        }
        if (nic_count > 1 || be_count > 1) {
            log_error("-net: vlan %d has %d NICs and %d backends; vmkit has no hubs, so pair "
                      "one -net nic with one -net backend per vlan, or use -nic / -netdev",
                      hub, nic_count, be_count);
            return -EINVAL;
        }
        if (be_count == 0) {
            log_warn("-net nic: NIC '%s' has no backend (no -net user|tap|socket on vlan %d); "
                     "its link stays down",
                     c->nics[i].name, hub);
            continue;
        }
        c->nics[i].netdev = c->netdevs[be].id;
    }
    for (unsigned j = 0; j < c->nnetdevs; j++) {
        int hub = own->netdev_hub[j];
        if (hub < 0)
            continue;
        bool paired = false;
        for (unsigned i = 0; i < c->nnics; i++)
            paired |= own->nic_hub[i] == hub;
        if (!paired)
            log_warn("-net %s: not connected to any NIC (add -net nic,model=virtio)",
                     c->netdevs[j].type);
    }
    /* A NIC's netdev= must exist, and a backend serves one NIC (no hubs). */
    for (unsigned i = 0; i < c->nnics; i++) {
        const char *nd = c->nics[i].netdev;
        if (!nd)
            continue;
        if (!vm_config_find_netdev(c, nd)) {
            log_error("-net nic,netdev=%s: there is no -netdev with id '%s'", nd, nd);
            return -EINVAL;
        }
        for (unsigned j = 0; j < i; j++) {
            if (c->nics[j].netdev && !strcmp(c->nics[j].netdev, nd)) {
                log_error("netdev '%s' is used by two NICs; give each NIC its own -netdev", nd);
                return -EINVAL;
            }
        }
    }
    static const uint8_t zero[6];
    for (unsigned i = 0; i < c->nnics; i++)
        if (!memcmp(c->nics[i].mac, zero, 6))
            vm_config_net_alloc_mac(c, c->nics[i].mac);
    return 0;
}
