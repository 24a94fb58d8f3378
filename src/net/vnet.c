/* Virtual networks: libvirt <network> XML, and start/stop (bridge, address, dnsmasq, nftables)
 * with state under the run dir so stop undoes exactly what start did. */
#include <net/if.h> /* before the linux/ headers netif.h pulls in */
#include "net/vnet.h"
#include "base/dynlib.h"
#include "base/log.h"
#include "base/util.h"
#include "net/net.h"
#include "net/netif.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *vnet_config_dir(void)
{
    const char *d = getenv("VMKIT_NET_DIR");
    return d && *d ? d : "/etc/vmkit/networks";
}

const char *vnet_run_dir(void)
{
    const char *d = getenv("VMKIT_RUN_DIR");
    return d && *d ? d : "/run/vmkit";
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 50 || *s == '.' || *s == '-')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

static bool valid_ifname(const char *s)
{
    if (!*s || strlen(s) >= IFNAMSIZ)
        return false;
    for (; *s; s++)
        if (*s == '/' || *s == ' ' || *s == ':' || *s <= 32 || *s >= 127)
            return false;
    return true;
}

void vnet_default_def(struct vnet_def *d)
{
    memset(d, 0, sizeof(*d));
    strcpy(d->name, "default");
    d->forward = VNET_NAT;
    strcpy(d->bridge, "virbr0");
    d->stp = true;
    d->has_ip = true;
    inet_pton(AF_INET, "192.168.122.1", &d->addr);
    d->prefix = 24;
    d->has_dhcp = true;
    inet_pton(AF_INET, "192.168.122.2", &d->dhcp_start);
    inet_pton(AF_INET, "192.168.122.254", &d->dhcp_end);
}

static const char *forward_name(enum vnet_forward f)
{
    switch (f) {
    case VNET_ISOLATED: return "isolated";
    case VNET_NAT: return "nat";
    case VNET_ROUTED: return "route";
    case VNET_OPEN: return "open";
    case VNET_BRIDGE: return "bridge";
    }
    return "?";
}

/* ---- XML ---- */

/* libxml2, loaded when a network definition is first read (base/dynlib.h says why). xmlFree is
 * a variable in libxml2: its symbol is the address of the function pointer. */
static struct {
    xmlDocPtr (*read_memory)(const char *buf, int size, const char *url, const char *encoding,
                             int options);
    xmlNodePtr (*doc_root)(const xmlDoc *doc);
    xmlChar *(*get_prop)(const xmlNode *node, const xmlChar *name);
    xmlChar *(*node_content)(const xmlNode *node);
    void (*free_doc)(xmlDocPtr doc);
    xmlFreeFunc *free_fn;
} xml_api;

static int xml_api_load(char *err, size_t errlen)
{
    static const char *const names[] = {"xmlReadMemory", "xmlDocGetRootElement", "xmlGetProp",
                                        "xmlNodeGetContent", "xmlFreeDoc", "xmlFree"};
    return dynlib_load("libxml2.so.2", "libxml2", names, (void **)&xml_api,
                       sizeof(xml_api) / sizeof(void *), err, errlen);
}

static void xml_free(void *p)
{
    (*xml_api.free_fn)(p);
}

static char *attr(xmlNode *n, const char *name)
{
    return (char *)xml_api.get_prop(n, (const xmlChar *)name);
}

static bool is(xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

static uint32_t mask_of(unsigned prefix)
{
    return prefix ? ~0u << (32 - prefix) : 0;
}

static bool same_net(struct in_addr a, struct in_addr b, unsigned prefix)
{
    return ((ntohl(a.s_addr) ^ ntohl(b.s_addr)) & mask_of(prefix)) == 0;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); ret = -EINVAL; goto out; } while (0)

static bool valid_hostname(const char *s)
{
    if (!*s || strlen(s) >= 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '_'))
            return false;
    return true;
}

static int parse_dhcp_host(xmlNode *h, struct vnet_def *d, char *err, size_t errlen)
{
    int ret = 0;
    char *mac = attr(h, "mac"), *ipa = attr(h, "ip"), *name = attr(h, "name");
    if (d->nhosts >= VNET_MAX_HOSTS)
        FAIL("at most %d <dhcp><host> entries", VNET_MAX_HOSTS);
    struct vnet_dhcp_host *e = &d->hosts[d->nhosts];
    memset(e, 0, sizeof(*e));
    if (!mac || net_parse_mac(mac, e->mac) < 0)
        FAIL("<dhcp><host mac='%s'> is not a MAC address", mac ? mac : "");
    if (!ipa || inet_pton(AF_INET, ipa, &e->ip) != 1)
        FAIL("<dhcp><host ip='%s'> is not an IPv4 address", ipa ? ipa : "");
    if (!same_net(e->ip, d->addr, d->prefix) || e->ip.s_addr == d->addr.s_addr)
        FAIL("<dhcp><host ip='%s'> must be a guest address inside the <ip> network", ipa);
    if (name) {
        if (!valid_hostname(name))
            FAIL("<dhcp><host name='%s'> is not a host name", name);
        snprintf(e->name, sizeof(e->name), "%s", name);
    }
    d->nhosts++;
out:
    xml_free(mac);
    xml_free(ipa);
    xml_free(name);
    return ret;
}

static int parse_ip(xmlNode *ip, struct vnet_def *d, char *err, size_t errlen)
{
    int ret = 0;
    char *a = attr(ip, "address"), *nm = attr(ip, "netmask"), *pf = attr(ip, "prefix");
    if (!a || inet_pton(AF_INET, a, &d->addr) != 1)
        FAIL("<ip address='%s'> is not an IPv4 address", a ? a : "");
    if (nm && pf)
        FAIL("<ip> takes netmask= or prefix=, not both");
    d->prefix = 24;
    if (nm) {
        struct in_addr m;
        if (inet_pton(AF_INET, nm, &m) != 1)
            FAIL("<ip netmask='%s'> is not a netmask", nm);
        uint32_t v = ntohl(m.s_addr);
        if (v & (~v >> 1))
            FAIL("<ip netmask='%s'> is not a netmask", nm);
        d->prefix = (unsigned)__builtin_popcount(v);
    } else if (pf) {
        char *end;
        long p = strtol(pf, &end, 10);
        if (*end || p < 1 || p > 32)
            FAIL("<ip prefix='%s'> must be 1 to 32", pf);
        d->prefix = (unsigned)p;
    }
    if (d->prefix > 30)
        FAIL("<ip> prefix /%u leaves no room for guests; use /30 or shorter", d->prefix);
    uint32_t host = ntohl(d->addr.s_addr) & ~mask_of(d->prefix);
    if (host == 0 || host == ~mask_of(d->prefix))
        FAIL("<ip address='%s'> is the network or broadcast address; use a host address "
             "such as the first one",
             a);
    d->has_ip = true;
    for (xmlNode *c = ip->children; c; c = c->next) {
        if (!is(c, "dhcp"))
            continue;
        bool have_range = false;
        for (xmlNode *r = c->children; r; r = r->next) {
            if (is(r, "host")) {
                if ((ret = parse_dhcp_host(r, d, err, errlen)) < 0)
                    goto out;
                continue;
            }
            if (!is(r, "range") || have_range)
                continue; /* libvirt allows several ranges; vmkit serves the first */
            have_range = true;
            char *s = attr(r, "start"), *e = attr(r, "end");
            bool ok = s && e && inet_pton(AF_INET, s, &d->dhcp_start) == 1 &&
                      inet_pton(AF_INET, e, &d->dhcp_end) == 1;
            xml_free(s);
            xml_free(e);
            if (!ok)
                FAIL("<dhcp><range> needs start= and end= IPv4 addresses");
            if (!same_net(d->dhcp_start, d->addr, d->prefix) ||
                !same_net(d->dhcp_end, d->addr, d->prefix))
                FAIL("<dhcp><range> must be inside the <ip> network");
            if (ntohl(d->dhcp_start.s_addr) > ntohl(d->dhcp_end.s_addr))
                FAIL("<dhcp><range> start is after end");
            if (ntohl(d->addr.s_addr) >= ntohl(d->dhcp_start.s_addr) &&
                ntohl(d->addr.s_addr) <= ntohl(d->dhcp_end.s_addr))
                FAIL("<dhcp><range> contains the host's address %s", a);
            d->has_dhcp = true;
        }
    }
out:
    xml_free(a);
    xml_free(nm);
    xml_free(pf);
    return ret;
}

int vnet_parse_xml(const char *xml, size_t len, struct vnet_def *d, char *err, size_t errlen)
{
    int ret = 0;
    memset(d, 0, sizeof(*d));
    d->stp = true;
    d->forward = VNET_ISOLATED;
    if (len > 1 << 20) {
        snprintf(err, errlen, "the file is too large for a network definition");
        return -EINVAL;
    }
    if (xml_api_load(err, errlen) < 0)
        return -ENOENT;
    xmlDoc *doc = xml_api.read_memory(xml, (int)len, "network.xml", NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    char *v = NULL;
    if (!doc)
        FAIL("not well-formed XML");
    xmlNode *root = xml_api.doc_root(doc);
    if (!root || !is(root, "network"))
        FAIL("the root element must be <network>");
    bool have_name = false, have_ip = false;
    for (xmlNode *n = root->children; n; n = n->next) {
        if (is(n, "name")) {
            v = (char *)xml_api.node_content(n);
            if (!v || !valid_name(v))
                FAIL("<name>%s</name>: use 1-50 letters, digits, '-', '_' or '.'", v ? v : "");
            snprintf(d->name, sizeof(d->name), "%s", v);
            have_name = true;
        } else if (is(n, "forward")) {
            v = attr(n, "mode");
            if (!v || !strcmp(v, "nat"))
                d->forward = VNET_NAT;
            else if (!strcmp(v, "route"))
                d->forward = VNET_ROUTED;
            else if (!strcmp(v, "open"))
                d->forward = VNET_OPEN;
            else if (!strcmp(v, "bridge"))
                d->forward = VNET_BRIDGE;
            else
                FAIL("<forward mode='%s'> is not supported; vmkit has nat, route, open and "
                     "bridge (no <forward> = isolated)",
                     v);
            xml_free(v);
            v = attr(n, "dev");
            if (v) {
                if (!valid_ifname(v))
                    FAIL("<forward dev='%s'> is not a valid interface name", v);
                snprintf(d->forward_dev, sizeof(d->forward_dev), "%s", v);
            }
        } else if (is(n, "bridge")) {
            v = attr(n, "name");
            if (v) {
                if (!valid_ifname(v))
                    FAIL("<bridge name='%s'> is not a valid interface name (1-15 characters)", v);
                snprintf(d->bridge, sizeof(d->bridge), "%s", v);
            }
            xml_free(v);
            v = attr(n, "stp");
            if (v && strcmp(v, "on") && strcmp(v, "off"))
                FAIL("<bridge stp='%s'> takes on or off", v);
            if (v)
                d->stp = !strcmp(v, "on");
            xml_free(v);
            v = attr(n, "delay");
            if (v) {
                char *end;
                long dl = strtol(v, &end, 10);
                if (*end || !*v || dl < 0 || dl > 30)
                    FAIL("<bridge delay='%s'> takes 0 to 30 seconds", v);
                d->delay = (unsigned)dl;
            }
        } else if (is(n, "domain")) {
            v = attr(n, "name");
            if (v) {
                if (strlen(v) >= sizeof(d->domain) || strpbrk(v, " \t\n/,="))
                    FAIL("<domain name='%s'> is not a DNS domain", v);
                snprintf(d->domain, sizeof(d->domain), "%s", v);
            }
        } else if (is(n, "ip")) {
            v = attr(n, "family");
            if ((v && strcmp(v, "ipv4")) || have_ip) {
                xml_free(v);
                v = NULL;
                continue; /* IPv6 and extra networks: not supported, ignored */
            }
            if ((ret = parse_ip(n, d, err, errlen)) < 0)
                goto out;
            have_ip = true;
        }
        xml_free(v);
        v = NULL;
    }
    if (!have_name)
        FAIL("<name> is missing");
    if (d->forward == VNET_BRIDGE) {
        if (!d->bridge[0])
            FAIL("<forward mode='bridge'> needs <bridge name='BRIDGE'/> naming an existing bridge");
        if (d->has_ip)
            FAIL("<forward mode='bridge'> cannot have <ip>: the host bridge is configured "
                 "outside vmkit");
    } else {
        if (!d->bridge[0])
            snprintf(d->bridge, sizeof(d->bridge), "vbr-%.11s", d->name);
        if ((d->forward == VNET_NAT || d->forward == VNET_ROUTED || d->forward == VNET_OPEN) &&
            !d->has_ip)
            FAIL("<forward mode='%s'> needs an <ip address=... prefix=...> for the host side",
                 forward_name(d->forward));
    }
out:
    xml_free(v);
    if (doc)
        xml_api.free_doc(doc);
    return ret;
}
#undef FAIL

int vnet_write_xml(const struct vnet_def *d, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    char a[INET_ADDRSTRLEN], s[INET_ADDRSTRLEN], e[INET_ADDRSTRLEN];
    fprintf(f, "<network>\n  <name>%s</name>\n", d->name);
    if (d->forward != VNET_ISOLATED && d->forward_dev[0])
        fprintf(f, "  <forward mode='%s' dev='%s'/>\n", forward_name(d->forward), d->forward_dev);
    else if (d->forward != VNET_ISOLATED)
        fprintf(f, "  <forward mode='%s'/>\n", forward_name(d->forward));
    fprintf(f, "  <bridge name='%s' stp='%s' delay='%u'/>\n", d->bridge, d->stp ? "on" : "off",
            d->delay);
    if (d->domain[0])
        fprintf(f, "  <domain name='%s'/>\n", d->domain);
    if (d->has_ip) {
        inet_ntop(AF_INET, &d->addr, a, sizeof(a));
        fprintf(f, "  <ip address='%s' prefix='%u'>\n", a, d->prefix);
        if (d->has_dhcp || d->nhosts) {
            fprintf(f, "    <dhcp>\n");
            if (d->has_dhcp) {
                inet_ntop(AF_INET, &d->dhcp_start, s, sizeof(s));
                inet_ntop(AF_INET, &d->dhcp_end, e, sizeof(e));
                fprintf(f, "      <range start='%s' end='%s'/>\n", s, e);
            }
            for (unsigned i = 0; i < d->nhosts; i++) {
                const struct vnet_dhcp_host *h = &d->hosts[i];
                inet_ntop(AF_INET, &h->ip, s, sizeof(s));
                fprintf(f, "      <host mac='%02x:%02x:%02x:%02x:%02x:%02x' ip='%s'", h->mac[0],
                        h->mac[1], h->mac[2], h->mac[3], h->mac[4], h->mac[5], s);
                if (h->name[0])
                    fprintf(f, " name='%s'", h->name);
                fprintf(f, "/>\n");
            }
            fprintf(f, "    </dhcp>\n");
        }
        fprintf(f, "  </ip>\n");
    }
    fprintf(f, "</network>\n");
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        int r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

static char *def_path(const char *name)
{
    return xasprintf("%s/%s.xml", vnet_config_dir(), name);
}

int vnet_load(const char *name, struct vnet_def *d)
{
    if (!valid_name(name))
        return -EINVAL;
    char *path = def_path(name);
    uint8_t *data;
    size_t len;
    int r = file_read_all(path, &data, &len);
    if (r == -ENOENT && !strcmp(name, "default")) {
        free(path);
        vnet_default_def(d);
        return 0;
    }
    if (r < 0) {
        free(path);
        return r;
    }
    char err[256];
    r = vnet_parse_xml((const char *)data, len, d, err, sizeof(err));
    if (r < 0)
        log_error("%s: %s", path, err);
    free(data);
    free(path);
    return r;
}

/* ---- generated configuration ---- */

#define APPEND(...)                                                                                \
    do {                                                                                           \
        int n_ = snprintf(buf + len, cap - len, __VA_ARGS__);                                      \
        if (n_ < 0 || (size_t)n_ >= cap - len)                                                     \
            return -ENOSPC;                                                                        \
        len += (size_t)n_;                                                                         \
    } while (0)

int vnet_nft_script(const struct vnet_def *d, char *buf, size_t cap)
{
    size_t len = 0;
    char net[INET_ADDRSTRLEN];
    struct in_addr n = {htonl(ntohl(d->addr.s_addr) & mask_of(d->prefix))};
    inet_ntop(AF_INET, &n, net, sizeof(net));
    if (!cap)
        return -ENOSPC;
    buf[0] = 0;
    if (d->forward == VNET_OPEN || d->forward == VNET_BRIDGE)
        return 0; /* no rules */
    char out[40] = ""; /* "oifname "eth0" " when <forward dev=> restricts the way out */
    char in[40] = "";
    if (d->forward_dev[0]) {
        snprintf(out, sizeof(out), "oifname \"%s\" ", d->forward_dev);
        snprintf(in, sizeof(in), "iifname \"%s\" ", d->forward_dev);
    }
    APPEND("table ip vmkit-%s {\n", d->name);
    APPEND("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    switch (d->forward) {
    case VNET_NAT:
        APPEND("    iifname \"%s\" %sip saddr %s/%u accept\n", d->bridge, out, net, d->prefix);
        APPEND("    %soifname \"%s\" ip daddr %s/%u ct state established,related accept\n", in,
               d->bridge, net, d->prefix);
        APPEND("    iifname \"%s\" reject\n    oifname \"%s\" reject\n", d->bridge, d->bridge);
        break;
    case VNET_ROUTED:
        APPEND("    iifname \"%s\" %sip saddr %s/%u accept\n", d->bridge, out, net, d->prefix);
        APPEND("    %soifname \"%s\" ip daddr %s/%u accept\n", in, d->bridge, net, d->prefix);
        APPEND("    iifname \"%s\" reject\n    oifname \"%s\" reject\n", d->bridge, d->bridge);
        break;
    default: /* isolated: guests talk to each other and the host, never through it */
        APPEND("    iifname \"%s\" reject\n    oifname \"%s\" reject\n", d->bridge, d->bridge);
        break;
    }
    APPEND("  }\n");
    if (d->forward == VNET_NAT) {
        APPEND("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy "
               "accept;\n");
        /* As libvirt: broadcast and multicast are never masqueraded. */
        APPEND("    ip saddr %s/%u ip daddr 224.0.0.0/24 return\n", net, d->prefix);
        APPEND("    ip saddr %s/%u ip daddr 255.255.255.255 return\n", net, d->prefix);
        APPEND("    %sip saddr %s/%u ip daddr != %s/%u masquerade\n", out, net, d->prefix, net,
               d->prefix);
        APPEND("  }\n");
    }
    APPEND("}\n");
    return (int)len;
}

int vnet_dnsmasq_conf(const struct vnet_def *d, const char *statedir, char *buf, size_t cap)
{
    size_t len = 0;
    char a[INET_ADDRSTRLEN], s[INET_ADDRSTRLEN], e[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &d->addr, a, sizeof(a));
    APPEND("# generated by vmkit for network %s; rewritten at every start\n", d->name);
    APPEND("strict-order\nbind-interfaces\nexcept-interface=lo\ninterface=%s\n", d->bridge);
    APPEND("listen-address=%s\n", a);
    APPEND("pid-file=%s/%s.pid\n", statedir, d->name);
    APPEND("user=root\n"); /* keeps the pid and lease files in the run dir writable */
    if (d->domain[0])
        APPEND("domain=%s\nexpand-hosts\nlocal=/%s/\n", d->domain, d->domain);
    if (d->has_dhcp) {
        inet_ntop(AF_INET, &d->dhcp_start, s, sizeof(s));
        inet_ntop(AF_INET, &d->dhcp_end, e, sizeof(e));
        struct in_addr m = {htonl(mask_of(d->prefix))};
        char mask[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &m, mask, sizeof(mask));
        APPEND("dhcp-range=%s,%s,%s\n", s, e, mask);
        APPEND("dhcp-no-override\ndhcp-authoritative\n");
        APPEND("dhcp-lease-max=%u\n",
               ntohl(d->dhcp_end.s_addr) - ntohl(d->dhcp_start.s_addr) + 1 + d->nhosts);
        APPEND("dhcp-leasefile=%s/%s.leases\n", statedir, d->name);
    } else if (d->nhosts) {
        /* Fixed addresses only: dnsmasq still needs the subnet declared. */
        struct in_addr n = {htonl(ntohl(d->addr.s_addr) & mask_of(d->prefix))};
        struct in_addr m = {htonl(mask_of(d->prefix))};
        inet_ntop(AF_INET, &n, s, sizeof(s));
        inet_ntop(AF_INET, &m, e, sizeof(e));
        APPEND("dhcp-range=%s,static,%s\n", s, e);
        APPEND("dhcp-leasefile=%s/%s.leases\n", statedir, d->name);
    }
    for (unsigned i = 0; i < d->nhosts; i++) {
        const struct vnet_dhcp_host *h = &d->hosts[i];
        inet_ntop(AF_INET, &h->ip, s, sizeof(s));
        APPEND("dhcp-host=%02x:%02x:%02x:%02x:%02x:%02x,%s%s%s\n", h->mac[0], h->mac[1],
               h->mac[2], h->mac[3], h->mac[4], h->mac[5], s, h->name[0] ? "," : "", h->name);
    }
    if ((d->has_dhcp || d->nhosts) && d->forward == VNET_ISOLATED)
        APPEND("dhcp-option=3\n"); /* no default route: nothing is reachable through us */
    return (int)len;
}
#undef APPEND

/* ---- start / stop ---- */

static char *state_dir(void)
{
    return xasprintf("%s/networks", vnet_run_dir());
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* What start did, as recorded in <run>/networks/NAME.state (key=value lines). */
struct vnet_state {
    char bridge[16];
    bool bridge_created;
    long dnsmasq_pid;
    bool nft_table;
};

static char *state_path(const char *name)
{
    char *d = state_dir();
    char *p = xasprintf("%s/%s.state", d, name);
    free(d);
    return p;
}

static int state_read(const char *name, struct vnet_state *st)
{
    memset(st, 0, sizeof(*st));
    char *p = state_path(name);
    FILE *f = fopen(p, "r");
    free(p);
    if (!f)
        return -errno;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq++ = 0;
        if (!strcmp(line, "bridge"))
            snprintf(st->bridge, sizeof(st->bridge), "%s", eq);
        else if (!strcmp(line, "bridge_created"))
            st->bridge_created = atoi(eq) != 0;
        else if (!strcmp(line, "dnsmasq_pid"))
            st->dnsmasq_pid = atol(eq);
        else if (!strcmp(line, "nft_table"))
            st->nft_table = atoi(eq) != 0;
    }
    fclose(f);
    return 0;
}

static int state_write(const char *name, const struct vnet_state *st)
{
    char *p = state_path(name);
    char *tmp = xasprintf("%s.tmp", p);
    FILE *f = fopen(tmp, "w");
    int r = 0;
    if (!f) {
        r = -errno;
    } else {
        fprintf(f, "bridge=%s\nbridge_created=%d\ndnsmasq_pid=%ld\nnft_table=%d\n", st->bridge,
                st->bridge_created, st->dnsmasq_pid, st->nft_table);
        if (fclose(f) != 0 || rename(tmp, p) < 0)
            r = -errno;
    }
    free(tmp);
    free(p);
    return r;
}

bool vnet_is_active(const char *name)
{
    struct vnet_state st;
    return valid_name(name) && state_read(name, &st) == 0;
}

/* A program in PATH (or the override for tests, e.g. VMKIT_DNSMASQ). */
static char *find_program(const char *name, const char *env)
{
    const char *o = getenv(env);
    if (o && *o)
        return access(o, X_OK) == 0 ? xstrdup(o) : NULL;
    const char *path = getenv("PATH");
    char *copy = xstrdup(path && *path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
    char *save = NULL, *found = NULL;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *p = xasprintf("%s/%s", d, name);
        if (access(p, X_OK) == 0) {
            found = p;
            break;
        }
        free(p);
    }
    if (!found) {
        /* sbin is often not in a user's PATH. */
        static const char *const extra[] = {"/usr/sbin", "/sbin"};
        for (unsigned i = 0; i < 2 && !found; i++) {
            char *p = xasprintf("%s/%s", extra[i], name);
            if (access(p, X_OK) == 0)
                found = p;
            else
                free(p);
        }
    }
    free(copy);
    return found;
}

/* Runs argv, feeding input (may be NULL) on stdin; returns the exit status or -errno. */
static int run_prog(char *const argv[], const char *input)
{
    int pfd[2] = {-1, -1};
    if (input && pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (input)
            dup2(pfd[0], 0);
        execv(argv[0], argv);
        _exit(127);
    }
    if (input) {
        close(pfd[0]);
        write_full(pfd[1], input, strlen(input));
        close(pfd[1]);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int nft_delete_table(const char *nft, const char *name)
{
    char *script = xasprintf("delete table ip vmkit-%s\n", name);
    char *argv[] = {(char *)nft, "-f", "-", NULL};
    int r = run_prog(argv, script);
    free(script);
    return r;
}

static int write_full_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int r = write_full(fd, text, strlen(text));
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

static bool pid_alive(long pid)
{
    return pid > 0 && kill((pid_t)pid, 0) == 0;
}

/* The recorded pid is still our dnsmasq, not a process that reused the number. */
static bool is_dnsmasq(long pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    char comm[32] = "";
    FILE *f = fopen(path, "r"); /* /proc sizes read as 0: no file_read_all here */
    if (!f)
        return false;
    bool yes = fgets(comm, sizeof(comm), f) && !strncmp(comm, "dnsmasq", 7);
    fclose(f);
    return yes;
}

static void stop_dnsmasq(long pid)
{
    if (!pid_alive(pid))
        return;
    kill((pid_t)pid, SIGTERM);
    for (int i = 0; i < 100 && pid_alive(pid); i++) {
        waitpid((pid_t)pid, NULL, WNOHANG); /* in case it is our child */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (pid_alive(pid))
        kill((pid_t)pid, SIGKILL);
}

static int set_ip_forward(void)
{
    int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write_full(fd, "1\n", 2);
    close(fd);
    return r;
}

static void undo(const char *name, const struct vnet_state *st, const char *nft)
{
    if (st->dnsmasq_pid && is_dnsmasq(st->dnsmasq_pid))
        stop_dnsmasq(st->dnsmasq_pid);
    if (st->nft_table && nft)
        nft_delete_table(nft, name);
    if (st->bridge_created)
        netif_link_del(st->bridge);
}

/* Serialises start/stop of networks on this host (two `vmkit net start` at once). Returns an
 * fd to close, or -1 when the lock cannot be had (then we go on unserialised). */
static int vnet_lock(void)
{
    char *d = state_dir();
    int fd = -1;
    if (mkdir_p(d) == 0) {
        char *p = xasprintf("%s/.lock", d);
        fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        free(p);
        if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
            close(fd);
            fd = -1;
        }
    }
    free(d);
    return fd;
}

static int vnet_start_locked(const char *name);

int vnet_start(const char *name)
{
    int lk = vnet_lock();
    int r = vnet_start_locked(name);
    if (lk >= 0)
        close(lk);
    return r;
}

static int vnet_start_locked(const char *name)
{
    struct vnet_def d;
    int r = vnet_load(name, &d);
    if (r == -ENOENT) {
        log_error("network '%s' is not defined (vmkit net list shows them; vmkit net define "
                  "FILE adds one)",
                  name);
        return r;
    }
    if (r < 0) {
        if (r != -EINVAL)
            log_error("network '%s': cannot read its definition: %s", name, strerror(-r));
        return r;
    }
    if (vnet_is_active(name)) {
        log_error("network '%s' is already active (vmkit net stop %s first)", name, name);
        return -EEXIST;
    }
    char *sdir = state_dir();
    char *nft = NULL, *dnsmasq = NULL, *conf = NULL, *pidfile = NULL;
    struct vnet_state st = {0};
    snprintf(st.bridge, sizeof(st.bridge), "%s", d.bridge);
    char buf[8192];

    /* Everything that can be checked is checked before the host is touched. */
    bool need_nft = d.forward == VNET_NAT || d.forward == VNET_ROUTED ||
                    d.forward == VNET_ISOLATED;
    bool need_dnsmasq = d.forward != VNET_BRIDGE && d.has_ip;
    if (need_dnsmasq && !(dnsmasq = find_program("dnsmasq", "VMKIT_DNSMASQ"))) {
        log_error("network '%s': dnsmasq is not installed; it serves DHCP and DNS to guests "
                  "(Debian: apt-get install dnsmasq-base)",
                  name);
        r = -ENOENT;
        goto out;
    }
    if (need_nft && !(nft = find_program("nft", "VMKIT_NFT"))) {
        log_error("network '%s': nft is not installed; it sets up the %s firewall rules "
                  "(Debian: apt-get install nftables)",
                  name, forward_name(d.forward));
        r = -ENOENT;
        goto out;
    }
    if (d.forward == VNET_BRIDGE) {
        if (!netif_is_bridge(d.bridge)) {
            log_error("network '%s': host bridge '%s' does not exist; create it first (vmkit net "
                      "bridge add %s)",
                      name, d.bridge, d.bridge);
            r = -ENODEV;
            goto out;
        }
    } else {
        if (netif_exists(d.bridge)) {
            log_error("network '%s': interface '%s' already exists; pick another <bridge "
                      "name=...> or remove it",
                      name, d.bridge);
            r = -EEXIST;
            goto out;
        }
        if (d.has_ip) {
            char what[128];
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &d.addr, a, sizeof(a));
            r = netif_ipv4_clash(d.addr, d.prefix, what, sizeof(what));
            if (r < 0) {
                log_error("network '%s': cannot read the host's addresses: %s", name,
                          strerror(-r));
                goto out;
            }
            if (r > 0) {
                log_error("network '%s': %s/%u clashes with %s already on this host; change "
                          "<ip> in the definition",
                          name, a, d.prefix, what);
                r = -EADDRINUSE;
                goto out;
            }
        }
    }
    if ((r = mkdir_p(sdir)) < 0) {
        log_error("network '%s': cannot create the state directory %s: %s", name, sdir,
                  strerror(-r));
        goto out;
    }
    if (d.forward == VNET_BRIDGE)
        goto record;

    /* The changes, each recorded in st so a failure undoes exactly what was done. */
    if ((r = netif_bridge_add(d.bridge)) < 0) {
        log_error("network '%s': cannot create bridge %s: %s%s", name, d.bridge, strerror(-r),
                  r == -EPERM ? " (needs root or CAP_NET_ADMIN)" : "");
        goto fail;
    }
    st.bridge_created = true;
    state_write(name, &st); /* from here on, a killed start leaves what `stop` needs */
    if ((r = netif_bridge_set_stp(d.bridge, d.stp)) < 0 && d.stp) {
        log_error("network '%s': cannot turn on STP on %s: %s", name, d.bridge, strerror(-r));
        goto fail;
    }
    /* Before STP goes on, a delay of 0 is accepted; with STP the kernel wants 2-30 s. */
    unsigned delay = d.stp && d.delay < 2 ? 2 : d.delay;
    if ((r = netif_bridge_set_forward_delay(d.bridge, delay * 100)) < 0)
        log_warn("network '%s': cannot set the forward delay of %s: %s", name, d.bridge,
                 strerror(-r));
    if (d.has_ip && (r = netif_addr_add(d.bridge, d.addr, d.prefix)) < 0) {
        log_error("network '%s': cannot add the address to %s: %s", name, d.bridge,
                  strerror(-r));
        goto fail;
    }
    if ((r = netif_set_up(d.bridge, true)) < 0) {
        log_error("network '%s': cannot bring %s up: %s", name, d.bridge, strerror(-r));
        goto fail;
    }
    if (d.forward == VNET_NAT || d.forward == VNET_ROUTED || d.forward == VNET_OPEN) {
        if ((r = set_ip_forward()) < 0) {
            log_error("network '%s': cannot turn on IPv4 forwarding: %s", name, strerror(-r));
            goto fail;
        }
    }
    if (need_nft) {
        r = vnet_nft_script(&d, buf, sizeof(buf));
        char *argv[] = {nft, "-f", "-", NULL};
        if (r < 0 || (r = run_prog(argv, buf)) != 0) {
            log_error("network '%s': nft could not load the firewall rules (exit %d); is "
                      "nf_tables available?",
                      name, r);
            r = -EIO;
            goto fail;
        }
        st.nft_table = true;
        state_write(name, &st);
    }
    if (need_dnsmasq) {
        r = vnet_dnsmasq_conf(&d, sdir, buf, sizeof(buf));
        conf = xasprintf("%s/%s.conf", sdir, name);
        pidfile = xasprintf("%s/%s.pid", sdir, name);
        unlink(pidfile);
        if (r < 0 || (r = write_full_file(conf, buf)) < 0) {
            log_error("network '%s': cannot write %s: %s", name, conf, strerror(-r));
            goto fail;
        }
        char *cf = xasprintf("--conf-file=%s", conf);
        char *argv[] = {dnsmasq, cf, NULL};
        r = run_prog(argv, NULL);
        free(cf);
        if (r != 0) {
            log_error("network '%s': dnsmasq failed to start (exit %d; its message is above)",
                      name, r);
            r = -EIO;
            goto fail;
        }
        uint8_t *pid_data;
        size_t pid_len;
        if (file_read_all(pidfile, &pid_data, &pid_len) == 0) {
            char tmp[32];
            snprintf(tmp, sizeof(tmp), "%.*s", (int)MIN(pid_len, 31), (char *)pid_data);
            st.dnsmasq_pid = atol(tmp);
            free(pid_data);
        }
        if (!pid_alive(st.dnsmasq_pid)) {
            log_error("network '%s': dnsmasq exited right after starting", name);
            r = -EIO;
            goto fail;
        }
    }
record:
    if ((r = state_write(name, &st)) < 0) {
        log_error("network '%s': cannot record its state in %s: %s", name, sdir, strerror(-r));
        goto fail;
    }
    r = 0;
    goto out;
fail:
    undo(name, &st, nft);
    {
        char *p = state_path(name);
        unlink(p);
        free(p);
    }
out:
    free(sdir);
    free(nft);
    free(dnsmasq);
    free(conf);
    free(pidfile);
    return r;
}

static int vnet_stop_locked(const char *name);

int vnet_stop(const char *name)
{
    int lk = vnet_lock();
    int r = vnet_stop_locked(name);
    if (lk >= 0)
        close(lk);
    return r;
}

static int vnet_stop_locked(const char *name)
{
    struct vnet_state st;
    if (!valid_name(name) || state_read(name, &st) < 0) {
        log_error("network '%s' is not active", name);
        return -ENOENT;
    }
    char *nft = st.nft_table ? find_program("nft", "VMKIT_NFT") : NULL;
    undo(name, &st, nft);
    free(nft);
    char *sdir = state_dir();
    static const char *const ext[] = {"conf", "pid", "leases"};
    for (unsigned i = 0; i < ARRAY_SIZE(ext); i++) {
        char *p = xasprintf("%s/%s.%s", sdir, name, ext[i]);
        unlink(p);
        free(p);
    }
    free(sdir);
    char *p = state_path(name);
    unlink(p);
    free(p);
    return 0;
}

int vnet_define(const char *file)
{
    uint8_t *data;
    size_t len;
    int r = file_read_all(file, &data, &len);
    if (r < 0) {
        log_error("%s: %s", file, strerror(-r));
        return r;
    }
    struct vnet_def d;
    char err[256];
    r = vnet_parse_xml((const char *)data, len, &d, err, sizeof(err));
    free(data);
    if (r < 0) {
        log_error("%s: %s", file, err);
        return r;
    }
    if ((r = mkdir_p(vnet_config_dir())) < 0) {
        log_error("cannot create %s: %s", vnet_config_dir(), strerror(-r));
        return r;
    }
    char *path = def_path(d.name);
    r = vnet_write_xml(&d, path);
    if (r < 0)
        log_error("cannot write %s: %s", path, strerror(-r));
    else
        printf("Network %s defined from %s\n", d.name, file);
    free(path);
    return r;
}

int vnet_undefine(const char *name)
{
    if (!valid_name(name)) {
        log_error("'%s' is not a network name", name);
        return -EINVAL;
    }
    if (vnet_is_active(name)) {
        log_error("network '%s' is active; stop it first (vmkit net stop %s)", name, name);
        return -EBUSY;
    }
    char *path = def_path(name);
    int r = unlink(path) < 0 ? -errno : 0;
    if (r == -ENOENT)
        log_error("network '%s' is not defined%s", name,
                  !strcmp(name, "default") ? " (the built-in default cannot be removed)" : "");
    else if (r < 0)
        log_error("cannot remove %s: %s", path, strerror(-r));
    else
        printf("Network %s has been undefined\n", name);
    free(path);
    return r;
}

static void list_one(const struct vnet_def *d)
{
    char a[INET_ADDRSTRLEN] = "-";
    if (d->has_ip)
        inet_ntop(AF_INET, &d->addr, a, sizeof(a));
    char addr[40];
    snprintf(addr, sizeof(addr), d->has_ip ? "%s/%u" : "%s", a, d->prefix);
    printf("%-20s %-9s %-9s %-16s %s\n", d->name, vnet_is_active(d->name) ? "active" : "inactive",
           forward_name(d->forward), d->bridge, addr);
}

int vnet_list(void)
{
    printf("%-20s %-9s %-9s %-16s %s\n", "Name", "State", "Forward", "Bridge", "Address");
    bool have_default = false;
    DIR *dir = opendir(vnet_config_dir());
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t n = strlen(e->d_name);
            if (n < 5 || strcmp(e->d_name + n - 4, ".xml"))
                continue;
            char name[64];
            if (n - 4 >= sizeof(name))
                continue;
            snprintf(name, sizeof(name), "%.*s", (int)(n - 4), e->d_name);
            struct vnet_def d;
            if (vnet_load(name, &d) < 0)
                continue;
            have_default |= !strcmp(name, "default");
            list_one(&d);
        }
        closedir(dir);
    }
    if (!have_default) {
        struct vnet_def d;
        vnet_default_def(&d);
        list_one(&d);
    }
    return 0;
}

int vnet_leases(const char *name)
{
    if (!vnet_is_active(name)) {
        log_error("network '%s' is not active", name);
        return -ENOENT;
    }
    char *sdir = state_dir();
    char *p = xasprintf("%s/%s.leases", sdir, name);
    free(sdir);
    FILE *f = fopen(p, "r");
    free(p);
    printf("%-20s %-18s %-16s %s\n", "Expiry", "MAC", "IP", "Hostname");
    if (!f)
        return 0; /* no lease handed out yet (or a network without DHCP) */
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        /* dnsmasq: EXPIRY MAC IP HOSTNAME CLIENTID */
        char mac[64], ip[64], host[256];
        long long exp;
        if (sscanf(line, "%lld %63s %63s %255s", &exp, mac, ip, host) != 4)
            continue;
        char when[32] = "never";
        if (exp > 0) {
            time_t t = (time_t)exp;
            struct tm tm;
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
        }
        printf("%-20s %-18s %-16s %s\n", when, mac, ip, strcmp(host, "*") ? host : "-");
    }
    fclose(f);
    return 0;
}

int vnet_bridge_of(const char *name, char *out, size_t outlen)
{
    struct vnet_state st;
    if (valid_name(name) && state_read(name, &st) == 0 && st.bridge[0]) {
        snprintf(out, outlen, "%s", st.bridge);
        return 0;
    }
    struct vnet_def d;
    if (vnet_load(name, &d) < 0)
        return -ENOENT;
    snprintf(out, outlen, "%s", d.bridge);
    return 0;
}
