/* Receive flow control: while the receiver posts no rx buffers the backend must hold frames back,
 * not drop them. The receiver stalls with its 16 buffers full while the sender sends 48 frames,
 * then must get all 48, in order. */
#include "rt/rt.h"
#include "rt/virtio_net.h"

const char guest_name[] = "net_flow";

#define ETH_P_VMKIT 0x88b5
#define NFRAMES 48
static uint8_t f[VNET_BUF_SIZE];

static unsigned build(const uint8_t *mac, const char *tag, uint32_t seq)
{
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    net_put16(f + 12, ETH_P_VMKIT);
    memcpy(f + 14, tag, 8);
    net_put32(f + 22, seq);
    for (unsigned i = 26; i < 600; i++)
        f[i] = (uint8_t)(seq + i);
    return 600;
}

void guest_main(void)
{
    char role[8];
    CHECK(cmdline_get("role", role, sizeof(role)) > 0, "role=send|recv missing");
    struct vnet *n = vnet_open(0, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
    CHECK(n, "no virtio-net device");
    const uint8_t *mac = vnet_mac(n);
    uint64_t end = net_now_ms() + 25000;
    if (!strcmp(role, "send")) {
        while (net_now_ms() < end) {
            int l = vnet_recv(n, f, sizeof(f), NULL, 100);
            if (l >= 22 && net_be16(f + 12) == ETH_P_VMKIT && !memcmp(f + 14, "FLOWRDY!", 8))
                break;
        }
        CHECK(net_now_ms() < end, "the receiver never said it was ready");
        for (uint32_t s = 0; s < NFRAMES; s++)
            CHECK(vnet_send(n, f, build(mac, "FLOWDATA", s)) == 0, "tx %u not consumed", s);
        return;
    }
    uint64_t next = 0;
    int l;
    /* Announce until the first data frame is queued, then stop reading. */
    for (;;) {
        CHECK(net_now_ms() < end, "no data from the sender");
        if (net_now_ms() >= next) {
            vnet_send(n, f, build(mac, "FLOWRDY!", 0));
            next = net_now_ms() + 200;
        }
        l = vnet_recv(n, f, sizeof(f), NULL, 20);
        if (l >= 26 && net_be16(f + 12) == ETH_P_VMKIT && !memcmp(f + 14, "FLOWDATA", 8))
            break;
    }
    CHECK(net_be32(f + 22) == 0, "first data frame is %u, not 0", net_be32(f + 22));
    rt_delay_ms(1500); /* rx ring full: the device must make the backend wait */
    uint32_t expect = 1;
    while (expect < NFRAMES) {
        l = vnet_recv(n, f, sizeof(f), NULL, 1000);
        CHECK(l >= 0, "frame %u never arrived (frames were dropped while the ring was full)", expect);
        if (l < 26 || net_be16(f + 12) != ETH_P_VMKIT || memcmp(f + 14, "FLOWDATA", 8))
            continue;
        uint32_t s = net_be32(f + 22);
        CHECK(s == expect, "got frame %u, expected %u", s, expect);
        for (unsigned i = 26; i < 600; i++)
            CHECK(f[i] == (uint8_t)(s + i), "frame %u byte %u corrupted", s, i);
        expect++;
    }
}
