/* Offloads on and off give the same bytes: role=send builds UDP datagrams and one TCP segment,
 * either finished in software (csum=full) or left to the host (csum=partial: NEEDS_CSUM, and the
 * TCP segment as one TSO super-frame); role=recv (another VM on the bridge) completes partial
 * checksums if it negotiated GUEST_CSUM, checks every checksum, and prints a hash of the frames. */
#include "rt/rt.h"
#include "rt/virtio_net.h"

const char guest_name[] = "net_offload";

#define ETH_P_VMKIT 0x88b5
#define NUDP 6
#define NTCP 3     /* MSS-sized segments of the TCP super-frame */
#define MSS 1000
#define SRC IP4(10, 77, 0, 1)
#define DST IP4(10, 77, 0, 2)
static const uint8_t dst_mac[6] = {0x52, 0x54, 0x00, 0x77, 0x00, 0x02};
static uint8_t f[8192], rx[VNET_BUF_SIZE];
static uint8_t data[NTCP * MSS];

static void set_ip_id(uint8_t *frame, uint16_t id)
{
    uint8_t *ip = frame + ETH_HLEN;
    net_put16(ip + 4, id);
    net_put16(ip + 10, 0);
    net_put16(ip + 10, net_csum(ip, 20, 0));
}

/* A TCP segment with payload [off, off+len) of data, flags, IP id. */
static unsigned tcp_seg(const uint8_t *mac, unsigned off, unsigned len, uint8_t flags, uint16_t id, bool partial)
{
    uint8_t *t = f + ETH_HLEN + 20;
    memset(t, 0, 20);
    net_put16(t, 5555);
    net_put16(t + 2, 6666);
    net_put32(t + 4, 1000 + off);
    net_put32(t + 8, 1);
    t[12] = 5 << 4;
    t[13] = flags;
    net_put16(t + 14, 8192);
    memcpy(t + 20, data + off, len);
    uint32_t ps = net_pseudo_sum(SRC, DST, IP_PROTO_TCP, 20 + len);
    if (partial) {
        /* The pseudo-header sum of the whole super-frame, as Linux's stack leaves it. */
        uint32_t s = ps;
        while (s >> 16)
            s = (s & 0xffff) + (s >> 16);
        net_put16(t + 16, (uint16_t)s);
    } else {
        net_put16(t + 16, net_csum(t, 20 + len, ps));
    }
    unsigned l = net_build_ip(f, mac, dst_mac, SRC, DST, IP_PROTO_TCP, t, 20 + len);
    set_ip_id(f, id);
    return l;
}

static void sender(struct vnet *n, bool partial)
{
    const uint8_t *mac = vnet_mac(n);
    if (partial) {
        CHECK(vnet_features(n) & (1ULL << VIRTIO_NET_F_CSUM), "CSUM not offered (needs a TAP with vnet_hdr)");
        CHECK(vnet_features(n) & (1ULL << VIRTIO_NET_F_HOST_TSO4), "HOST_TSO4 not offered");
    }
    uint64_t end = net_now_ms() + 25000;
    while (net_now_ms() < end) {
        for (unsigned s = 0; s < NUDP; s++) {
            uint8_t payload[1200];
            unsigned plen = 20 + s * 211;
            for (unsigned i = 0; i < plen; i++)
                payload[i] = (uint8_t)(s + i * 3);
            unsigned l = net_build_udp(f, mac, dst_mac, SRC, DST, (uint16_t)(7000 + s), 9000, payload, plen, partial);
            set_ip_id(f, (uint16_t)(100 + s));
            struct virtio_net_hdr h = {0};
            if (partial)
                h = (struct virtio_net_hdr){.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 6};
            CHECK(vnet_send_hdr(n, &h, f, l) == 0, "tx not consumed");
        }
        if (partial) {
            /* One 3000-byte segment; the host cuts it like the full-mode loop below. */
            unsigned l = tcp_seg(mac, 0, NTCP * MSS, TCP_ACK | 0x08, 200, true);
            struct virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
                                       .hdr_len = 54, .gso_size = MSS, .csum_start = 34, .csum_offset = 16};
            CHECK(vnet_send_hdr(n, &h, f, l) == 0, "TSO frame not consumed");
        } else {
            for (unsigned k = 0; k < NTCP; k++) {
                unsigned l = tcp_seg(mac, k * MSS, MSS, TCP_ACK | (k == NTCP - 1 ? 0x08 : 0), (uint16_t)(200 + k), false);
                CHECK(vnet_send(n, f, l) == 0, "tx not consumed");
            }
        }
        uint64_t wait = net_now_ms() + 400;
        while (net_now_ms() < wait) {
            int l = vnet_recv(n, rx, sizeof(rx), NULL, 50);
            if (l >= 23 && net_be16(rx + 12) == ETH_P_VMKIT && !memcmp(rx + 14, "VMKITDONE", 9))
                return;
        }
    }
    test_fail("the receiver never confirmed");
}

static uint32_t fnv(const uint8_t *p, unsigned len, uint32_t h)
{
    for (unsigned i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void receiver(struct vnet *n)
{
    uint32_t hashes[NUDP + NTCP];
    bool seen[NUDP + NTCP] = {0};
    unsigned nseen = 0, partial_seen = 0;
    uint64_t end = net_now_ms() + 25000;
    while (nseen < NUDP + NTCP && net_now_ms() < end) {
        struct virtio_net_hdr h;
        int l = vnet_recv(n, rx, sizeof(rx), &h, 50);
        if (l < ETH_HLEN + 28 || net_be16(rx + 12) != ETH_P_IP)
            continue;
        if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
            CHECK(vnet_features(n) & (1ULL << VIRTIO_NET_F_GUEST_CSUM), "NEEDS_CSUM without GUEST_CSUM");
            CHECK(h.csum_start + h.csum_offset + 2u <= (unsigned)l, "csum offsets outside the frame");
            net_put16(rx + h.csum_start + h.csum_offset, 0);
            /* The field held the pseudo-header sum; recompute it from the IP header. */
            unsigned tot = net_be16(rx + ETH_HLEN + 2);
            uint32_t ps = net_pseudo_sum(net_be32(rx + ETH_HLEN + 12), net_be32(rx + ETH_HLEN + 16), rx[ETH_HLEN + 9],
                                tot - 20);
            uint16_t c = net_csum(rx + h.csum_start, (unsigned)l - h.csum_start, ps);
            if (rx[ETH_HLEN + 9] == IP_PROTO_UDP && c == 0)
                c = 0xffff;
            net_put16(rx + h.csum_start + h.csum_offset, c);
            partial_seen++;
        }
        struct net_pkt p;
        CHECK(net_parse_ip(rx, (unsigned)l, 0, &p), "a frame with a bad checksum arrived (%d bytes)", l);
        unsigned idx;
        if (p.proto == IP_PROTO_UDP && p.dport == 9000 && p.sport >= 7000 && p.sport < 7000 + NUDP)
            idx = p.sport - 7000u;
        else if (p.proto == IP_PROTO_TCP && p.dport == 6666 && net_be32(p.l4 + 4) >= 1000)
            idx = NUDP + (net_be32(p.l4 + 4) - 1000) / MSS;
        else
            continue;
        if (idx >= NUDP + NTCP)
            continue;
        uint32_t hv = fnv(rx, (unsigned)l, 2166136261u);
        if (seen[idx]) {
            CHECK(hashes[idx] == hv, "frame %u arrived twice with different bytes", idx);
            continue;
        }
        seen[idx] = true;
        hashes[idx] = hv;
        nseen++;
    }
    CHECK(nseen == NUDP + NTCP, "received %u of %u frames", nseen, NUDP + NTCP);
    uint32_t all = 2166136261u;
    for (unsigned i = 0; i < NUDP + NTCP; i++)
        all = fnv((const uint8_t *)&hashes[i], 4, all);
    rt_printf("VMNET-HASH=%x partial=%u\n", all, partial_seen);
    uint8_t done[64] = {0};
    memset(done, 0xff, 6);
    memcpy(done + 6, vnet_mac(n), 6);
    net_put16(done + 12, ETH_P_VMKIT);
    memcpy(done + 14, "VMKITDONE", 9);
    for (int i = 0; i < 5; i++) {
        vnet_send(n, done, sizeof(done));
        rt_delay_ms(100);
    }
}

void guest_main(void)
{
    char role[8], csum[12];
    CHECK(cmdline_get("role", role, sizeof(role)) > 0, "role=send|recv missing");
    bool partial = cmdline_get("csum", csum, sizeof(csum)) > 0 && !strcmp(csum, "partial");
    for (unsigned i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13 + 5);
    uint64_t want = 1ULL << VIRTIO_NET_F_MRG_RXBUF;
    if (partial)
        want |= 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_HOST_TSO4;
    if (cmdline_has("guest_csum"))
        want |= 1ULL << VIRTIO_NET_F_GUEST_CSUM;
    struct vnet *n = vnet_open(0, want);
    CHECK(n, "no virtio-net device");
    if (!strcmp(role, "send"))
        sender(n, partial);
    else
        receiver(n);
}
