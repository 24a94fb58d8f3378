/* Benchmark guest for bench/net: sets up the NIC, its address and the host's MAC in ring 0, then
 * drops to ring 3 (user-accessible identity map, interrupts off), where the hot loops run
 * natively even on hosts whose KVM emulates guest kernel code (PVM): UDP round trips to a host
 * echo server, then a burst of UDP datagrams to a host sink. Ring 3 has no port I/O and (under
 * vmkit on PVM) no way back to ring 0, so it reports through the network: one "RESULT ..."
 * datagram to the sink, then it spins until the host stops the VM. */
#include "rt/rt.h"
#include "rt/virtio_net.h"

const char guest_name[] = "net_bench";

static uint8_t buf[VNET_BUF_SIZE], echo_frame[VNET_BUF_SIZE], burst_frame[VNET_BUF_SIZE],
    result_frame[VNET_BUF_SIZE], payload[1500];
static unsigned echo_len, burst_len;
static uint64_t rtts = 50, count = 500, size = 1400;
static struct net_if ifc;
static uint8_t server_mac[6];
static uint32_t server;
static uint16_t port = 5555;

static uint32_t parse_ip(const char *key)
{
    char s[32];
    if (cmdline_get(key, s, sizeof(s)) <= 0)
        return 0;
    uint32_t ip = 0, part = 0;
    for (const char *p = s;; p++) {
        if (*p == '.' || !*p) {
            ip = ip << 8 | (part & 0xff);
            part = 0;
            if (!*p)
                break;
        } else {
            part = part * 10 + (uint32_t)(*p - '0');
        }
    }
    return ip;
}

/* ---- ring 3 ---- */

static void user_main(void)
{
    struct vnet *n = ifc.nic;
    uint8_t *echo_seq = echo_frame + ETH_HLEN + 20 + 8;
    uint64_t total = 0;
    unsigned ok = 0;
    struct net_pkt p;
    for (uint32_t i = 0; i < rtts; i++) {
        /* UDP checksum 0 (none, allowed for IPv4): the payload may change without recomputing. */
        net_put32(echo_seq, i);
        uint64_t t0 = net_now_ns();
        if (vnet_send(n, echo_frame, echo_len) < 0)
            break;
        for (;;) {
            if (net_recv_ip(&ifc, buf, sizeof(buf), &p, 500) < 0)
                break;
            if (p.proto == IP_PROTO_UDP && p.dport == 40000 && p.datalen >= 9 && net_be32(p.data + 5) == i) {
                total += net_now_ns() - t0;
                ok++;
                break;
            }
        }
    }
    uint64_t t0 = net_now_ns();
    unsigned sent = 0;
    for (unsigned i = 0; i < count; i++)
        if (vnet_send(n, burst_frame, burst_len) == 0)
            sent++;
    uint64_t tx_ns = net_now_ns() - t0;
    char msg[96];
    int len = rt_snprintf(msg, sizeof(msg), "RESULT rtt_ns=%lu ok=%u tx_ns=%lu sent=%u",
                          (unsigned long)(ok ? total / ok : 0), ok, (unsigned long)tx_ns, sent);
    for (int k = 0; k < 5; k++) {
        unsigned l = net_build_udp(result_frame, ifc.mac, server_mac, ifc.ip, server, 40001, (uint16_t)(port + 1),
                                   msg, (unsigned)len, false);
        vnet_send(n, result_frame, l);
    }
    for (;;)
        cpu_relax();
}


void guest_main(void)
{
    uint64_t v;
    if (cmdline_get_u64("port", &v))
        port = (uint16_t)v;
    cmdline_get_u64("rtts", &rtts);
    cmdline_get_u64("count", &count);
    cmdline_get_u64("size", &size);
    if (size > sizeof(payload))
        size = sizeof(payload);
    struct vnet *n = vnet_open(0, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
    CHECK(n, "no virtio-net device");
    net_if_init(&ifc, n, parse_ip("ip"));
    if (!ifc.ip)
        CHECK(net_dhcp(&ifc, 10000) == 0, "no DHCP lease");
    server = parse_ip("server");
    if (!server)
        server = ifc.router;
    CHECK(net_arp_resolve(&ifc, server, server_mac, 5000) == 0, "no ARP answer from the server");
    for (unsigned i = 0; i < size; i++)
        payload[i] = (uint8_t)i;
    echo_len = net_build_udp(echo_frame, ifc.mac, server_mac, ifc.ip, server, 40000, port, payload, 32, false);
    net_put16(echo_frame + ETH_HLEN + 20 + 6, 0);
    burst_len = net_build_udp(burst_frame, ifc.mac, server_mac, ifc.ip, server, 40001, (uint16_t)(port + 1),
                              payload, (unsigned)size, false);
    rt_printf("net_bench: ready, entering ring 3\n");
    rt_enter_ring3(user_main);
}
