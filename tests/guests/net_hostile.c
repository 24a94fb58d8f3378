/* A hostile driver on NIC 0 (bad headers, runt and oversized frames, a descriptor outside RAM)
 * must leave the VMM running, NIC 0 usable again after a reset, and NIC 1 working throughout. */
#include "rt/rt.h"
#include "rt/virtio_net.h"
#include "rt/virtio.h"

const char guest_name[] = "net_hostile";

static uint8_t big[16384] __attribute__((aligned(4096)));
static uint8_t frame[256];

static void expect_alive(struct vnet *n, const char *what)
{
    CHECK(!(vnet_device_status(n) & VIRTIO_STATUS_NEEDS_RESET), "%s put the device into NEEDS_RESET", what);
}

static void lease(struct vnet *n, const char *which)
{
    struct net_if ifc;
    net_if_init(&ifc, n, 0);
    CHECK(net_dhcp(&ifc, 10000) == 0, "%s: no DHCP lease", which);
    CHECK(ifc.ip == IP4(10, 0, 2, 15), "%s: lease %x", which, ifc.ip);
}

void guest_main(void)
{
    struct vnet *bad = vnet_open(0, 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_CSUM |
                                        1ULL << VIRTIO_NET_F_HOST_TSO4);
    struct vnet *good = vnet_open(1, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
    CHECK(bad && good, "need two virtio-net devices");
    memset(frame, 0xff, 12);
    net_put16(frame + 12, 0x88b5);

    struct virtio_net_hdr h = {0};
    /* Runt frame: dropped, the chain still comes back. */
    CHECK(vnet_send(bad, frame, 4) == 0, "a 4-byte frame was not returned");
    expect_alive(bad, "a runt frame");
    /* Unknown GSO type. */
    h.gso_type = 0x55;
    CHECK(vnet_send_hdr(bad, &h, frame, 100) == 0, "bad gso_type frame not returned");
    expect_alive(bad, "a bad gso_type");
    /* Checksum offsets beyond the frame. */
    h = (struct virtio_net_hdr){.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 2000, .csum_offset = 6};
    CHECK(vnet_send_hdr(bad, &h, frame, 100) == 0, "bad csum_start frame not returned");
    expect_alive(bad, "csum_start past the frame");
    /* TSO with gso_size 0, and unknown flag bits. */
    h = (struct virtio_net_hdr){.flags = 1, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .hdr_len = 54, .csum_start = 34,
                                .csum_offset = 16};
    CHECK(vnet_send_hdr(bad, &h, frame, 200) == 0, "gso_size 0 frame not returned");
    h = (struct virtio_net_hdr){.flags = 0x80};
    CHECK(vnet_send_hdr(bad, &h, frame, 100) == 0, "unknown flags frame not returned");
    expect_alive(bad, "bad TSO headers");
    /* 128 KiB frame (8 descriptors over one buffer): more than 65550 + header. */
    uint64_t addrs[8];
    uint32_t lens[8];
    for (int i = 0; i < 8; i++) {
        addrs[i] = (uint64_t)big;
        lens[i] = sizeof(big);
    }
    CHECK(vnet_send_raw_chain(bad, addrs, lens, 8) == 0, "oversized frame not returned");
    expect_alive(bad, "an oversized frame");
    /* A chain shorter than the header. */
    addrs[0] = (uint64_t)big;
    lens[0] = 6;
    CHECK(vnet_send_raw_chain(bad, addrs, lens, 1) == 0, "6-byte chain not returned");
    expect_alive(bad, "a 6-byte chain");
    /* The other NIC still works. */
    lease(good, "NIC 1 after malformed frames");

    /* A descriptor outside guest RAM: the device must stop (NEEDS_RESET), not touch host memory. */
    addrs[0] = 0x7ff000000000ULL;
    lens[0] = 128;
    vnet_send_raw_chain(bad, addrs, lens, 1);
    uint64_t end = net_now_ms() + 1000;
    while (!(vnet_device_status(bad) & VIRTIO_STATUS_NEEDS_RESET) && net_now_ms() < end)
        rt_delay_ms(10);
    CHECK(vnet_device_status(bad) & VIRTIO_STATUS_NEEDS_RESET,
          "a descriptor outside RAM did not set NEEDS_RESET (status %x)", vnet_device_status(bad));
    lease(good, "NIC 1 after NIC 0 broke");

    /* Reset and set up NIC 0 again: it works. */
    struct vnet *again = vnet_open(0, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
    CHECK(again, "NIC 0 did not come back after a reset");
    expect_alive(again, "the reset");
    if (cmdline_has("nodhcp0")) {
        /* A TAP with nothing behind it: sending is all we can check. */
        memcpy(frame + 6, vnet_mac(again), 6);
        CHECK(vnet_send(again, frame, 60) == 0, "NIC 0 does not send after reset");
    } else {
        lease(again, "NIC 0 after reset");
    }
}
