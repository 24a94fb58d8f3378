/* `vmkit net`: bridges, TAPs, ifup/ifdown scripts and virtual networks, over rtnetlink. */
#include <net/if.h> /* before the linux/ headers netif.h pulls in */
#include "cli/net_cmd.h"
#include "base/log.h"
#include "base/util.h"
#include "net/netif.h"
#include "net/vnet.h"
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void net_usage(FILE *out)
{
    fprintf(out,
            "usage: vmkit net COMMAND ...\n"
            "\n"
            "host interfaces (need root or CAP_NET_ADMIN):\n"
            "  bridge add|del NAME          create or delete a bridge\n"
            "  bridge addif|delif BR IF     attach or detach a port\n"
            "  bridge show [BR]             bridges, their ports and STP state\n"
            "  bridge stp BR on|off         kernel STP on or off\n"
            "  bridge addr BR CIDR          add an IPv4 address (192.168.100.1/24)\n"
            "  tap add NAME [--user U] [--group G]  persistent TAP a user can open\n"
            "  tap del NAME                 delete a persistent TAP\n"
            "  ifup IF / ifdown IF          attach IF to $VMKIT_BRIDGE (else the 'default'\n"
            "                               network's bridge) and bring it up / take it down;\n"
            "                               usable as -netdev tap,script=,downscript=\n"
            "\n"
            "virtual networks (libvirt <network> XML in $VMKIT_NET_DIR, default\n"
            "/etc/vmkit/networks; state in $VMKIT_RUN_DIR, default /run/vmkit):\n"
            "  define FILE | undefine NAME | start NAME | stop NAME | list\n"
            "  leases NAME                  DHCP leases a running network handed out\n");
}

static int fail(int r, const char *what, const char *name)
{
    log_error("%s %s: %s%s", what, name, strerror(-r),
              r == -EPERM || r == -EACCES ? " (needs root or CAP_NET_ADMIN)" : "");
    return 1;
}

static int need_ifname(const char *s, const char *what)
{
    if (!*s || strlen(s) >= IFNAMSIZ || strchr(s, '/') || strchr(s, ' ')) {
        log_error("'%s' is not a valid %s name (1-15 characters, no '/' or spaces)", s, what);
        return -1;
    }
    return 0;
}

static int need_bridge(const char *br)
{
    if (need_ifname(br, "bridge"))
        return -1;
    if (!netif_exists(br)) {
        log_error("bridge %s does not exist (vmkit net bridge add %s)", br, br);
        return -1;
    }
    if (!netif_is_bridge(br)) {
        log_error("%s is not a bridge", br);
        return -1;
    }
    return 0;
}

static int bridge_show(const char *only)
{
    struct netif_link *v;
    unsigned n;
    int r = netif_list(&v, &n);
    if (r < 0)
        return fail(r, "cannot list interfaces:", "");
    bool found = false;
    printf("%-16s %-4s %-5s %s\n", "bridge", "stp", "state", "ports");
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(v[i].kind, "bridge") || (only && strcmp(v[i].name, only)))
            continue;
        found = true;
        printf("%-16s %-4s %-5s", v[i].name, v[i].stp_state > 0 ? "on" : "off",
               v[i].up ? "up" : "down");
        unsigned ports = 0;
        for (unsigned j = 0; j < n; j++) {
            if (v[j].master != v[i].index)
                continue;
            printf("%s%s (%s)", ports++ ? ", " : " ", v[j].name,
                   netif_port_state_name(v[j].port_state));
        }
        printf("\n");
    }
    free(v);
    if (only && !found) {
        log_error("bridge %s does not exist", only);
        return 1;
    }
    return 0;
}

static int cmd_bridge(int argc, char **argv)
{
    if (argc < 1) {
        net_usage(stderr);
        return 1;
    }
    const char *sub = argv[0];
    int r;
    if (!strcmp(sub, "show"))
        return bridge_show(argc > 1 ? argv[1] : NULL);
    if ((!strcmp(sub, "add") || !strcmp(sub, "del")) && argc == 2) {
        if (need_ifname(argv[1], "bridge"))
            return 1;
        if (!strcmp(sub, "add")) {
            if (netif_exists(argv[1])) {
                log_error("interface %s already exists", argv[1]);
                return 1;
            }
            r = netif_bridge_add(argv[1]);
        } else {
            if (need_bridge(argv[1]))
                return 1;
            r = netif_link_del(argv[1]);
        }
        return r < 0 ? fail(r, sub[0] == 'a' ? "cannot create bridge" : "cannot delete bridge",
                            argv[1])
                     : 0;
    }
    if ((!strcmp(sub, "addif") || !strcmp(sub, "delif")) && argc == 3) {
        if (need_bridge(argv[1]) || need_ifname(argv[2], "interface"))
            return 1;
        if (!netif_exists(argv[2])) {
            log_error("interface %s does not exist", argv[2]);
            return 1;
        }
        r = netif_set_master(argv[2], !strcmp(sub, "addif") ? argv[1] : NULL);
        return r < 0 ? fail(r, "cannot change the bridge of", argv[2]) : 0;
    }
    if (!strcmp(sub, "stp") && argc == 3) {
        if (need_bridge(argv[1]))
            return 1;
        bool on;
        if (!strcmp(argv[2], "on") || !strcmp(argv[2], "yes"))
            on = true;
        else if (!strcmp(argv[2], "off") || !strcmp(argv[2], "no"))
            on = false;
        else {
            log_error("bridge stp: '%s' must be on or off", argv[2]);
            return 1;
        }
        r = netif_bridge_set_stp(argv[1], on);
        return r < 0 ? fail(r, "cannot set STP on", argv[1]) : 0;
    }
    if (!strcmp(sub, "addr") && argc == 3) {
        if (need_bridge(argv[1]))
            return 1;
        struct in_addr a;
        unsigned prefix = 0;
        char ip[32];
        const char *slash = strchr(argv[2], '/');
        char *end = NULL;
        if (slash)
            prefix = (unsigned)strtoul(slash + 1, &end, 10);
        if (!slash || (size_t)(slash - argv[2]) >= sizeof(ip) || !end || *end || slash[1] == 0 ||
            prefix > 32) {
            log_error("bridge addr: '%s' is not ADDRESS/PREFIX (e.g. 192.168.100.1/24)", argv[2]);
            return 1;
        }
        snprintf(ip, sizeof(ip), "%.*s", (int)(slash - argv[2]), argv[2]);
        if (inet_pton(AF_INET, ip, &a) != 1) {
            log_error("bridge addr: '%s' is not an IPv4 address", ip);
            return 1;
        }
        r = netif_addr_add(argv[1], a, prefix);
        if (r == -EEXIST) {
            log_error("bridge addr: %s already has %s", argv[1], argv[2]);
            return 1;
        }
        return r < 0 ? fail(r, "cannot add the address to", argv[1]) : 0;
    }
    net_usage(stderr);
    return 1;
}

static int lookup_id(const char *s, bool group, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end && v >= 0) {
        *out = v;
        return 0;
    }
    if (group) {
        struct group *g = getgrnam(s);
        if (!g)
            return -1;
        *out = (long)g->gr_gid;
    } else {
        struct passwd *p = getpwnam(s);
        if (!p)
            return -1;
        *out = (long)p->pw_uid;
    }
    return 0;
}

static int cmd_tap(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[0], "add")) {
        const char *name = argv[1];
        long uid = -1, gid = -1;
        for (int i = 2; i < argc; i += 2) {
            bool is_user = !strcmp(argv[i], "--user") || !strcmp(argv[i], "user");
            bool is_group = !strcmp(argv[i], "--group") || !strcmp(argv[i], "group");
            if ((!is_user && !is_group) || i + 1 >= argc) {
                log_error("tap add: unexpected '%s'; use tap add NAME [--user U] [--group G]",
                          argv[i]);
                return 1;
            }
            if (lookup_id(argv[i + 1], is_group, is_user ? &uid : &gid) < 0) {
                log_error("tap add: no such %s '%s'", is_user ? "user" : "group", argv[i + 1]);
                return 1;
            }
        }
        if (need_ifname(name, "TAP"))
            return 1;
        int r = netif_tap_add(name, uid, gid);
        if (r == -EEXIST) {
            log_error("interface %s already exists", name);
            return 1;
        }
        return r < 0 ? fail(r, "cannot create TAP", name) : 0;
    }
    if (argc == 2 && !strcmp(argv[0], "del")) {
        if (need_ifname(argv[1], "TAP"))
            return 1;
        int r = netif_tap_del(argv[1]);
        if (r == -ENODEV) {
            log_error("TAP %s does not exist", argv[1]);
            return 1;
        }
        if (r == -EINVAL) {
            log_error("%s is not a TAP; vmkit net tap del only deletes TAPs", argv[1]);
            return 1;
        }
        return r < 0 ? fail(r, "cannot delete TAP", argv[1]) : 0;
    }
    net_usage(stderr);
    return 1;
}

/* The bridge ifup attaches to: $VMKIT_BRIDGE, else the 'default' network's. */
static int ifup_bridge(char *out, size_t outlen)
{
    const char *env = getenv("VMKIT_BRIDGE");
    if (env && *env) {
        snprintf(out, outlen, "%s", env);
        return 0;
    }
    if (vnet_bridge_of("default", out, outlen) < 0) {
        log_error("ifup: no bridge: set VMKIT_BRIDGE or define the 'default' network");
        return -1;
    }
    return 0;
}

static int cmd_ifupdown(bool up, int argc, char **argv)
{
    if (argc != 1) {
        log_error("usage: vmkit net %s IF", up ? "ifup" : "ifdown");
        return 1;
    }
    const char *ifn = argv[0];
    if (need_ifname(ifn, "interface"))
        return 1;
    if (!netif_exists(ifn)) {
        log_error("%s: interface %s does not exist", up ? "ifup" : "ifdown", ifn);
        return 1;
    }
    int r;
    if (up) {
        char br[IFNAMSIZ];
        if (ifup_bridge(br, sizeof(br)) < 0)
            return 1;
        if (!netif_is_bridge(br)) {
            log_error("ifup %s: bridge %s does not exist (start its network, e.g. vmkit net "
                      "start default, or set VMKIT_BRIDGE)",
                      ifn, br);
            return 1;
        }
        if ((r = netif_set_master(ifn, br)) < 0)
            return fail(r, "cannot attach to the bridge:", ifn);
        if ((r = netif_set_up(ifn, true)) < 0)
            return fail(r, "cannot bring up", ifn);
        return 0;
    }
    if ((r = netif_set_up(ifn, false)) < 0)
        return fail(r, "cannot take down", ifn);
    char path[80];
    snprintf(path, sizeof(path), "/sys/class/net/%s/master", ifn);
    if (access(path, F_OK) == 0 && (r = netif_set_master(ifn, NULL)) < 0)
        return fail(r, "cannot detach from its bridge:", ifn);
    return 0;
}

int net_main(int argc, char **argv)
{
    log_set_prefix("vmkit net");
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") ||
        !strcmp(argv[0], "help")) {
        net_usage(argc < 1 ? stderr : stdout);
        return argc < 1;
    }
    const char *cmd = argv[0];
    if (!strcmp(cmd, "bridge"))
        return cmd_bridge(argc - 1, argv + 1);
    if (!strcmp(cmd, "tap"))
        return cmd_tap(argc - 1, argv + 1);
    if (!strcmp(cmd, "ifup") || !strcmp(cmd, "ifdown"))
        return cmd_ifupdown(!strcmp(cmd, "ifup"), argc - 1, argv + 1);
    if (!strcmp(cmd, "list") && argc == 1)
        return vnet_list() < 0;
    if (argc == 2) {
        if (!strcmp(cmd, "define"))
            return vnet_define(argv[1]) < 0;
        if (!strcmp(cmd, "undefine"))
            return vnet_undefine(argv[1]) < 0;
        if (!strcmp(cmd, "leases"))
            return vnet_leases(argv[1]) < 0;
        if (!strcmp(cmd, "start")) {
            if (vnet_start(argv[1]) < 0)
                return 1;
            printf("Network %s started\n", argv[1]);
            return 0;
        }
        if (!strcmp(cmd, "stop")) {
            if (vnet_stop(argv[1]) < 0)
                return 1;
            printf("Network %s stopped\n", argv[1]);
            return 0;
        }
    }
    log_error("'%s' is not a vmkit net command (or has the wrong arguments); see vmkit net --help",
              cmd);
    return 1;
}
