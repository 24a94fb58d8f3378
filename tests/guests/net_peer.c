/* Two VMs exchange Ethernet frames both ways (bridge/TAP or socket backends), byte-exact, with
 * the control queue's receive filter on: frames to a MAC nobody has must not arrive. */
#include "rt/rt.h"
#include "rt/virtio_net.h"

const char guest_name[] = "net_peer";

#define ETH_P_VMKIT 0x88b5 /* IEEE local experimental */
#define NEED 3             /* frames each way */
static const uint8_t bogus_mac[6] = {0x02, 0, 0, 0, 0, 0x99};
static uint8_t frame[VNET_BUF_SIZE], rx[VNET_BUF_SIZE];

/* Payload: "VMKITNET" seq got len, then a pattern the receiver checks byte by byte. */
static unsigned build(const uint8_t *mac, const uint8_t *dst, uint32_t seq, uint32_t got)
{
    unsigned len = 60 + (seq * 397) % 1400;
    memcpy(frame, dst, 6);
    memcpy(frame + 6, mac, 6);
    net_put16(frame + 12, ETH_P_VMKIT);
    memcpy(frame + 14, "VMKITNET", 8);
    net_put32(frame + 22, seq);
    net_put32(frame + 26, got);
    net_put32(frame + 30, len);
    for (unsigned i = 34; i < len; i++)
        frame[i] = (uint8_t)(seq * 7 + i);
    return len;
}

void guest_main(void)
{
    bool filter = cmdline_has("filter");
    uint64_t want = 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_CTRL_VQ | 1ULL << VIRTIO_NET_F_CTRL_RX;
    struct vnet *n = vnet_open(0, want);
    CHECK(n, "no virtio-net device");
    CHECK(vnet_features(n) & (1ULL << VIRTIO_NET_F_MAC), "MAC feature not offered");
    CHECK(vnet_status(n) & VIRTIO_NET_S_LINK_UP, "link is down (status %x)", vnet_status(n));
    const uint8_t *mac = vnet_mac(n);
    char want_mac[32];
    if (cmdline_get("mac", want_mac, sizeof(want_mac)) > 0) {
        char have[32];
        rt_snprintf(have, sizeof(have), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                    mac[4], mac[5]);
        CHECK(!strcmp(have, want_mac), "config space MAC %s, expected %s", have, want_mac);
    }
    if (filter) {
        uint8_t off = 0;
        CHECK(vnet_ctrl(n, 0, 0, &off, 1) == 0, "CTRL_RX PROMISC off refused");
        uint8_t table[8] = {0}; /* no extra unicast, no multicast entries */
        CHECK(vnet_ctrl(n, 1, 0, table, 8) == 0, "CTRL_MAC TABLE_SET refused");
        uint8_t bad[3] = {1, 2, 3};
        CHECK(vnet_ctrl(n, 1, 0, bad, 3) == 1, "a malformed MAC table was accepted");
        /* Frames that arrived while the device was still promiscuous (its reset state) are
         * already in the ring: drop them, everything after this point went through the filter. */
        while (vnet_recv(n, rx, sizeof(rx), NULL, 0) >= 0)
            ;
    }

    uint8_t peer[6];
    bool have_peer = false;
    uint32_t seq = 0, got = 0, peer_got = 0, next_seq_seen = 0;
    unsigned after = 0;
    uint64_t end = net_now_ms() + 25000, next_send = 0;
    while (net_now_ms() < end) {
        if (net_now_ms() >= next_send) {
            unsigned len = build(mac, have_peer ? peer : net_bcast, seq++, got);
            CHECK(vnet_send(n, frame, len) == 0, "tx frame %u not consumed", seq);
            if (filter) {
                len = build(mac, bogus_mac, 1000 + seq, got);
                CHECK(vnet_send(n, frame, len) == 0, "tx frame not consumed");
            }
            next_send = net_now_ms() + 150;
            if (got >= NEED && peer_got >= NEED && ++after >= 4) {
                rt_printf("net_peer: %u frames in, peer saw %u of ours\n", got, peer_got);
                return;
            }
        }
        int l = vnet_recv(n, rx, sizeof(rx), NULL, 20);
        if (l < 34 || net_be16(rx + 12) != ETH_P_VMKIT || memcmp(rx + 14, "VMKITNET", 8))
            continue;
        if (!memcmp(rx + 6, mac, 6))
            continue;
        uint32_t s = net_be32(rx + 22), plen = net_be32(rx + 30);
        CHECK(memcmp(rx, bogus_mac, 6), "received a frame for %02x:..:%02x although promisc is off", bogus_mac[0],
              bogus_mac[5]);
        CHECK((unsigned)l == plen, "frame %u is %d bytes, sender built %u", s, l, plen);
        for (unsigned i = 34; i < plen; i++)
            CHECK(rx[i] == (uint8_t)(s * 7 + i), "frame %u byte %u is %x, expected %x", s, i, rx[i],
                  (uint8_t)(s * 7 + i));
        memcpy(peer, rx + 6, 6);
        have_peer = true;
        if (s >= next_seq_seen) {
            got++;
            next_seq_seen = s + 1;
        }
        peer_got = net_be32(rx + 26);
    }
    test_fail("timed out: %u frames from the peer, it saw %u of ours", got, peer_got);
}
