/* User-mode networking: DHCP lease, a UDP exchange with a host service through the gateway, and
 * answers to what the host sends through hostfwd (UDP datagrams and a TCP SYN). */
#include "rt/rt.h"
#include "rt/virtio_net.h"

const char guest_name[] = "net_user";

static uint8_t buf[VNET_BUF_SIZE], out[VNET_BUF_SIZE];

static uint32_t parse_ip(const char *key, uint32_t def)
{
    char s[32];
    if (cmdline_get(key, s, sizeof(s)) <= 0)
        return def;
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

void guest_main(void)
{
    uint64_t want = 1ULL << VIRTIO_NET_F_MRG_RXBUF;
    uint64_t nic = 0, host_port = 0, listen_port = 7777, replies = 1, tcp_port = 0;
    cmdline_get_u64("nic", &nic);
    cmdline_get_u64("host_port", &host_port);
    cmdline_get_u64("listen_port", &listen_port);
    cmdline_get_u64("replies", &replies);
    cmdline_get_u64("tcp_port", &tcp_port);
    struct vnet *n = vnet_open((unsigned)nic, want);
    CHECK(n, "no virtio-net device %lu", nic);
    struct net_if ifc;
    net_if_init(&ifc, n, 0);
    uint32_t static_ip = parse_ip("ip", 0);
    if (static_ip) {
        ifc.ip = static_ip;
        ifc.router = parse_ip("gw", 0);
    } else {
        CHECK(net_dhcp(&ifc, 10000) == 0, "no DHCP lease");
        uint32_t expect = parse_ip("expect_ip", IP4(10, 0, 2, 15));
        CHECK(ifc.ip == expect, "DHCP gave %x, expected %x", ifc.ip, expect);
        rt_printf("net_user: lease %u.%u.%u.%u router %x\n", ifc.ip >> 24, (ifc.ip >> 16) & 255,
                  (ifc.ip >> 8) & 255, ifc.ip & 255, ifc.router);
    }
    uint32_t server = parse_ip("server", ifc.router);
    uint8_t gw_mac[6];
    if (host_port) {
        uint32_t hop = ((server ^ ifc.ip) & ifc.netmask) ? ifc.router : server;
        CHECK(net_arp_resolve(&ifc, hop, gw_mac, 5000) == 0, "no ARP reply from %x", hop);
        static const char msg[] = "hello-from-vmkit-guest";
        bool echoed = false;
        for (int attempt = 0; attempt < 10 && !echoed; attempt++) {
            unsigned l = net_build_udp(out, ifc.mac, gw_mac, ifc.ip, server, 40000, (uint16_t)host_port, msg,
                                       sizeof(msg) - 1, false);
            CHECK(vnet_send(n, out, l) == 0, "tx not consumed");
            struct net_pkt p;
            uint64_t end = net_now_ms() + 1000;
            while (!echoed && net_now_ms() < end) {
                if (net_recv_ip(&ifc, buf, sizeof(buf), &p, 200) < 0)
                    continue;
                if (p.proto == IP_PROTO_UDP && p.dport == 40000 && p.sport == host_port &&
                    p.datalen == sizeof(msg) - 1 + 5 && !memcmp(p.data, "echo:", 5) &&
                    !memcmp(p.data + 5, msg, sizeof(msg) - 1))
                    echoed = true;
            }
        }
        CHECK(echoed, "no echo from the host service at %x:%lu", server, host_port);
        rt_printf("net_user: host service answered\n");
    }
    if (!replies)
        return;
    /* Serve: answer UDP datagrams to listen_port with "pong:" + data, TCP SYNs to tcp_port with
     * SYN-ACK (and data with "pong"), until `replies` UDP answers and (with tcp_port) one TCP
     * exchange are done. */
    rt_printf("VMNET-READY\n");
    uint64_t done = 0;
    bool tcp_done = tcp_port == 0;
    uint64_t end = net_now_ms() + 20000;
    struct net_pkt p;
    while ((done < replies || !tcp_done) && net_now_ms() < end) {
        if (net_recv_ip(&ifc, buf, sizeof(buf), &p, 200) < 0 || p.dst != ifc.ip)
            continue;
        if (p.proto == IP_PROTO_UDP && p.dport == listen_port && p.datalen < 1000) {
            memcpy(out + 1000, "pong:", 5);
            memcpy(out + 1005, p.data, p.datalen);
            unsigned l = net_build_udp(out, ifc.mac, buf + 6, ifc.ip, p.src, p.dport, p.sport, out + 1000,
                                       p.datalen + 5, false);
            CHECK(vnet_send(n, out, l) == 0, "tx not consumed");
            done++;
        } else if (p.proto == IP_PROTO_TCP && tcp_port && p.dport == tcp_port) {
            uint32_t myseq = 0x1000;
            if (p.tcp_flags & TCP_SYN) {
                unsigned l = net_build_tcp(out, ifc.mac, buf + 6, ifc.ip, p.src, p.dport, p.sport, myseq,
                                           p.tcp_seq + 1, TCP_SYN | TCP_ACK);
                CHECK(vnet_send(n, out, l) == 0, "tx not consumed");
            } else if (p.datalen) {
                /* Acknowledge the data and send "pong", then FIN. */
                uint8_t *t = out + ETH_HLEN + 20;
                unsigned l = net_build_tcp(out, ifc.mac, buf + 6, ifc.ip, p.src, p.dport, p.sport, myseq + 1,
                                           p.tcp_seq + p.datalen, TCP_ACK | TCP_FIN);
                (void)l;
                /* Rebuild with 4 bytes of data: header from net_build_tcp, payload appended. */
                memcpy(t + 20, "pong", 4);
                net_put16(t + 16, 0);
                net_put16(t + 16, net_csum(t, 24, net_pseudo_sum(ifc.ip, p.src, IP_PROTO_TCP, 24)));
                l = net_build_ip(out, ifc.mac, buf + 6, ifc.ip, p.src, IP_PROTO_TCP, t, 24);
                CHECK(vnet_send(n, out, l) == 0, "tx not consumed");
                tcp_done = true;
            } else if (p.tcp_flags & TCP_FIN) {
                unsigned l = net_build_tcp(out, ifc.mac, buf + 6, ifc.ip, p.src, p.dport, p.sport, myseq + 6,
                                           p.tcp_seq + 1, TCP_ACK);
                vnet_send(n, out, l);
            }
        }
    }
    CHECK(done >= replies, "answered %lu of %lu UDP datagrams from the host", done, replies);
    CHECK(tcp_done, "no TCP exchange through hostfwd");
    /* Let the host read the last answers before the VM goes away. */
    uint64_t linger = net_now_ms() + 300;
    while (net_now_ms() < linger)
        if (net_recv_ip(&ifc, buf, sizeof(buf), &p, 50) >= 0 && p.proto == IP_PROTO_TCP && (p.tcp_flags & TCP_FIN)) {
            unsigned l = net_build_tcp(out, ifc.mac, buf + 6, ifc.ip, p.src, p.dport, p.sport, 0x1006,
                                       p.tcp_seq + 1, TCP_ACK);
            vnet_send(n, out, l);
        }
}
