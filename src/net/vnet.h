/* Virtual networks (libvirt's <network> XML): definitions on disk, start/stop with rollback. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vnet_forward {
    VNET_ISOLATED, /* no <forward>: guests and host only */
    VNET_NAT,      /* <forward mode='nat'/> (also <forward/>): masquerade out of the host */
    VNET_ROUTED,   /* <forward mode='route'/>: routed, no NAT */
    VNET_OPEN,     /* <forward mode='open'/>: routed, vmkit adds no firewall rules */
    VNET_BRIDGE,   /* <forward mode='bridge'/>: an existing host bridge, vmkit changes nothing */
};

#define VNET_MAX_HOSTS 64

/* <dhcp><host mac='..' ip='..' name='..'/>: a fixed address for one guest. */
struct vnet_dhcp_host {
    uint8_t mac[6];
    struct in_addr ip;
    char name[64]; /* "" none */
};

struct vnet_def {
    char name[64];
    enum vnet_forward forward;
    char forward_dev[16];       /* <forward dev='eth0'>: NAT/route only out of this device */
    char bridge[16];
    bool stp;                   /* <bridge stp='on|off'>, default on */
    unsigned delay;             /* <bridge delay='S'>: forward delay in seconds, default 0 (the
                                 * kernel's minimum, 2 s, while STP is on) */
    bool has_ip;
    struct in_addr addr;        /* the host's address on the bridge (the guests' gateway) */
    unsigned prefix;
    bool has_dhcp;
    struct in_addr dhcp_start, dhcp_end;
    char domain[64];            /* <domain name=>: DNS domain dnsmasq serves; "" none */
    struct vnet_dhcp_host hosts[VNET_MAX_HOSTS];
    unsigned nhosts;
};

/* Where definitions and run state live: $VMKIT_NET_DIR or /etc/vmkit/networks, and
 * $VMKIT_RUN_DIR or /run/vmkit (state in <run>/networks). */
const char *vnet_config_dir(void);
const char *vnet_run_dir(void);

/* Parses libvirt network XML; unknown elements are ignored, wrong values refused.
 * 0 or -EINVAL with a message in err. */
int vnet_parse_xml(const char *xml, size_t len, struct vnet_def *d, char *err, size_t errlen);
/* The built-in 'default' network: NAT, virbr0, 192.168.122.1/24, DHCP .2-.254. */
void vnet_default_def(struct vnet_def *d);
/* Writes d as libvirt XML (what define stores). */
int vnet_write_xml(const struct vnet_def *d, const char *path);
/* Loads NAME from the config dir (or the built-in default). 0, -ENOENT, -EINVAL. */
int vnet_load(const char *name, struct vnet_def *d);

/* The commands; each logs its own errors and returns 0 or -errno. start undoes everything it
 * did when a later step fails. */
int vnet_define(const char *file);
int vnet_undefine(const char *name);
int vnet_start(const char *name);
int vnet_stop(const char *name);
int vnet_list(void);
bool vnet_is_active(const char *name);
/* Prints the DHCP leases of a running network (expiry, MAC, IP, hostname); 0 or -errno. */
int vnet_leases(const char *name);
/* The bridge of a running (or else defined) network, for `vmkit net ifup`; 0 or -ENOENT. */
int vnet_bridge_of(const char *name, char *out, size_t outlen);

/* Generated text (pure; unit-tested): the nftables script that creates the network's table
 * (table ip vmkit-NAME), and dnsmasq's configuration. Return the length or -ENOSPC. */
int vnet_nft_script(const struct vnet_def *d, char *buf, size_t cap);
int vnet_dnsmasq_conf(const struct vnet_def *d, const char *statedir, char *buf, size_t cap);
