/* virtio-console (virtio-serial-pci + virtconsole): a line written to the transmit queue reaches
 * the host-side chardev (the runner checks the -chardev file); the receive queue is set up and
 * the device stays healthy. */
#include "rt/irq.h"
#include "rt/rt.h"
#include "rt/virtio.h"

const char guest_name[] = "virtio_console";

static char line[] = "hello from virtio-console VMKIT-VIRTCON-MARKER\n";
static uint8_t rxbuf[4][64];
static uint8_t ctlbuf[8][8];

struct ctl {
    uint32_t id;
    uint16_t event, value;
} __attribute__((packed));

static void ctl_send(struct vio_dev *d, uint32_t id, uint16_t event, uint16_t value)
{
    static struct ctl m;
    m = (struct ctl){id, event, value};
    struct vio_buf b[1] = {{&m, sizeof(m), false}};
    vio_submit(d, 3, b, 1);
    uint32_t uid, len;
    CHECK(vio_wait_used(d, 3, &uid, &len, 2000) == 0, "control message %u not consumed", event);
}

/* Next host->guest control message; the buffer goes back on the queue. */
static struct ctl ctl_recv(struct vio_dev *d, int *bufof)
{
    uint32_t id, len;
    CHECK(vio_wait_used(d, 2, &id, &len, 2000) == 0, "no control message from the device");
    CHECK(id < 8 && len == 8, "control used id %u len %u", id, len);
    int b = bufof[id];
    struct ctl m;
    memcpy(&m, ctlbuf[b], sizeof(m));
    struct vio_buf rb[1] = {{ctlbuf[b], 8, true}};
    bufof[vio_submit(d, 2, rb, 1)] = b;
    return m;
}

/* The MULTIPORT handshake Linux does: DEVICE_READY -> DEVICE_ADD(0); PORT_READY(0) ->
 * CONSOLE_PORT(0) and PORT_OPEN(0); then the guest opens the port. */
static void multiport_handshake(struct vio_dev *d)
{
    int bufof[8];
    for (unsigned i = 0; i < 4; i++) {
        struct vio_buf rb[1] = {{ctlbuf[i], 8, true}};
        bufof[vio_submit(d, 2, rb, 1)] = (int)i;
    }
    ctl_send(d, 0xffffffff, 0 /* DEVICE_READY */, 1);
    struct ctl m = ctl_recv(d, bufof);
    CHECK(m.event == 1 && m.id == 0 && m.value == 1, "expected DEVICE_ADD(0), got event %u id %u",
          m.event, m.id);
    ctl_send(d, 0, 3 /* PORT_READY */, 1);
    bool console = false, open = false;
    for (unsigned i = 0; i < 2; i++) {
        m = ctl_recv(d, bufof);
        CHECK(m.id == 0, "control message for port %u", m.id);
        console |= m.event == 4;
        open |= m.event == 6 && m.value == 1;
    }
    CHECK(console && open, "port 0 not announced as an open console");
    ctl_send(d, 0, 6 /* PORT_OPEN */, 1);
}

void guest_main(void)
{
    struct vio_dev d;
    irq_init();
    CHECK(vio_find(&d, VIRTIO_ID_CONSOLE, 0) == 0, "no virtio-serial-pci device");
    CHECK(pci_cf8_read16(d.bus, d.dev, d.fn, 0x0a) == 0x0780, "class %x, expected 0780",
          pci_cf8_read16(d.bus, d.dev, d.fn, 0x0a));
    bool mp = cmdline_has("multiport");
    bool packed = cmdline_has("packed");
    CHECK(vio_negotiate(&d, (1ULL << VIRTIO_F_RING_EVENT_IDX) | (mp ? 1ULL << 1 : 0) |
                                (packed ? 1ULL << VIRTIO_F_RING_PACKED : 0)) == 0,
          "feature negotiation failed");
    CHECK(!packed || (d.features & (1ULL << VIRTIO_F_RING_PACKED)), "RING_PACKED not offered");
    CHECK(!mp || (d.features & 2), "MULTIPORT not offered");
    CHECK(d.common->num_queues >= (mp ? 4 : 2), "num_queues %u", d.common->num_queues);
    CHECK(vio_queue_setup(&d, 0, 8) == 0, "rx queue setup failed");
    CHECK(vio_queue_setup(&d, 1, 8) == 0, "tx queue setup failed");
    if (mp) {
        CHECK(vio_cfg_read32(&d, 4) >= 1, "max_nr_ports %u", vio_cfg_read32(&d, 4));
        CHECK(vio_queue_setup(&d, 2, 8) == 0, "control rx queue setup failed");
        CHECK(vio_queue_setup(&d, 3, 8) == 0, "control tx queue setup failed");
    }
    CHECK(vio_setup_msix(&d, 1, 1, 0x42) == 0, "tx MSI-X vector refused");
    vio_driver_ok(&d);
    if (mp)
        multiport_handshake(&d);
    for (unsigned i = 0; i < 4; i++) {
        struct vio_buf rb[1] = {{rxbuf[i], sizeof(rxbuf[i]), true}};
        vio_submit(&d, 0, rb, 1);
    }
    /* Two writes: the line split across a chain and a second descriptor, as hvc may. */
    unsigned n = (unsigned)strlen(line);
    struct vio_buf tb[2] = {{line, 10, false}, {line + 10, n - 10, false}};
    int head = vio_submit(&d, 1, tb, 2);
    uint32_t id, len;
    CHECK(vio_wait_used(&d, 1, &id, &len, 2000) == 0, "transmit buffer not returned");
    CHECK(id == (uint32_t)head, "used id %u, expected %d", id, head);
    CHECK(irq_wait(0x42, 1, 1000), "no MSI-X interrupt for the transmit queue");
    /* Input, when the runner sends some over a socket backend: expect_input=N bytes of
     * "0123456789" repeated. More than the device buffers (4 KiB) tests flow control: the host
     * must hold back input until we give buffers back, and lose nothing. */
    uint64_t want;
    if (cmdline_get_u64("expect_input", &want)) {
        int bufof[8];
        for (unsigned i = 0; i < 4; i++)
            bufof[i] = (int)i;
        uint64_t total = 0;
        for (unsigned rounds = 0; total < want && rounds < 1000; rounds++) {
            CHECK(vio_wait_used(&d, 0, &id, &len, 3000) == 0, "input stopped after %lu of %lu bytes",
                  total, want);
            CHECK(id < 8 && len > 0 && len <= 64, "rx used id %u len %u", id, len);
            int b = bufof[id];
            for (unsigned k = 0; k < len; k++)
                CHECK(rxbuf[b][k] == '0' + (total + k) % 10, "input byte %lu is %x", total + k,
                      rxbuf[b][k]);
            total += len;
            struct vio_buf rb[1] = {{rxbuf[b], sizeof(rxbuf[b]), true}};
            int h = vio_submit(&d, 0, rb, 1);
            bufof[h] = b;
        }
        CHECK(total == want, "got %lu input bytes, expected %lu", total, want);
        rt_printf("virtio-console: got %lu input bytes\n", total);
    }
    CHECK(!(vio_status(&d) & VIRTIO_STATUS_NEEDS_RESET), "device needs reset");
    test_pass();
}
