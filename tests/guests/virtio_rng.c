/* virtio-rng over modern virtio-pci: negotiation, a split queue, MSI-X completion interrupts,
 * direct and indirect chains; the bytes that arrive are not all equal. */
#include "rt/irq.h"
#include "rt/rt.h"
#include "rt/virtio.h"

const char guest_name[] = "virtio_rng";

#define QVEC 0x40
#define CVEC 0x41

static uint8_t buf[256] __attribute__((aligned(64)));

static bool varied(const uint8_t *p, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        if (p[i] != p[0])
            return true;
    return false;
}

static struct vio_dev d;
static volatile uint8_t isr_seen;
static volatile unsigned isr_zero;

/* INTx is level-triggered: reading the ISR (read-to-clear) drops the line before the EOI. */
static void intx_handler(uint8_t v, void *o)
{
    (void)v, (void)o;
    uint8_t v2 = vio_isr(&d);
    isr_seen |= v2;
    if (!v2)
        isr_zero++;
}

static void run_test(void)
{
    CHECK(vio_find(&d, VIRTIO_ID_RNG, 0) == 0, "no virtio-rng-pci device");
    CHECK(d.msix_cap && d.msix_size >= 2, "no MSI-X with 2 vectors (%u)", d.msix_size);
    CHECK(pci_cf8_read8(d.bus, d.dev, d.fn, 0x08) == 1, "revision is not 1");
    bool packed = cmdline_has("packed");
    CHECK(vio_negotiate(&d, (1ULL << VIRTIO_F_RING_INDIRECT_DESC) | (1ULL << VIRTIO_F_RING_EVENT_IDX) |
                                (packed ? 1ULL << VIRTIO_F_RING_PACKED : 0)) == 0,
          "feature negotiation failed");
    CHECK(!packed || (d.features & (1ULL << VIRTIO_F_RING_PACKED)), "RING_PACKED not offered");
    CHECK(d.features & (1ULL << VIRTIO_F_RING_INDIRECT_DESC), "no INDIRECT_DESC offered");
    CHECK(d.common->num_queues == 1, "num_queues %u", d.common->num_queues);
    CHECK(vio_queue_setup(&d, 0, 8) == 0, "queue setup failed");
    bool intx = cmdline_has("intx");
    if (intx) {
        /* No MSI-X: the interrupt line register holds the GSI (IRQ) the pin is routed to. */
        uint8_t line = pci_cf8_read8(d.bus, d.dev, d.fn, 0x3c);
        CHECK(pci_cf8_read8(d.bus, d.dev, d.fn, 0x3d) == 1, "interrupt pin is not INTA");
        CHECK(line && line < 24, "interrupt line %u", line);
        irq_set_handler(QVEC, intx_handler, NULL);
        ioapic_route(line, QVEC, true, false);
    } else {
        CHECK(vio_setup_msix(&d, 0, 0, QVEC) == 0, "queue MSI-X vector refused");
        CHECK(vio_setup_msix(&d, -1, 1, CVEC) == 0, "config MSI-X vector refused");
    }
    vio_driver_ok(&d);
    CHECK(vio_status(&d) == 0xf, "status %x after DRIVER_OK", vio_status(&d));

    memset(buf, 0, sizeof(buf));
    struct vio_buf b1[1] = {{buf, 64, true}};
    int head = vio_submit(&d, 0, b1, 1);
    uint32_t id, len;
    CHECK(vio_wait_used(&d, 0, &id, &len, 2000) == 0, "no used entry for the direct request");
    CHECK(id == (uint32_t)head && len == 64, "used entry id %u len %u (head %d)", id, len, head);
    CHECK(irq_wait(QVEC, 1, 1000), "no %s interrupt for the queue", intx ? "INTx" : "MSI-X");
    CHECK(!intx || (isr_seen & 1), "ISR queue bit not set (%x)", isr_seen);
    CHECK(varied(buf, 64), "64 random bytes are all equal");

    memset(buf, 0, sizeof(buf));
    struct vio_buf b2[2] = {{buf, 16, true}, {buf + 128, 48, true}};
    uint32_t before = irq_count(QVEC);
    head = vio_submit_indirect(&d, 0, b2, 2);
    CHECK(vio_wait_used(&d, 0, &id, &len, 2000) == 0, "no used entry for the indirect request");
    CHECK(id == (uint32_t)head && len == 64, "indirect: used id %u len %u", id, len);
    CHECK(irq_wait(QVEC, before + 1, 1000), "no interrupt for the indirect request");
    CHECK(varied(buf, 16) && varied(buf + 128, 48), "indirect buffers not filled");
    /* More requests than the ring has entries: the indices (or wrap counters) go round. */
    for (unsigned i = 0; i < 20; i++) {
        struct vio_buf b3[2] = {{buf, 8, true}, {buf + 8, 8, true}};
        head = vio_submit(&d, 0, b3, 2);
        CHECK(vio_wait_used(&d, 0, &id, &len, 2000) == 0, "request %u not completed", i);
        CHECK(id == (uint32_t)head && len == 16, "request %u: used id %u len %u", i, id, len);
    }
    CHECK(irq_count(CVEC) == 0, "unexpected config interrupt");
    CHECK(!(vio_status(&d) & VIRTIO_STATUS_NEEDS_RESET), "device needs reset");
    rt_printf("virtio-rng: %u queue interrupts%s\n", irq_count(QVEC), packed ? " (packed ring)" : "");
    if (intx)
        rt_printf("virtio-rng: %u INTx interrupts found the ISR clear\n", isr_zero);
}

#define MARK_REG 0x48 /* CMOS NVRAM survives the machine reset; RAM does not */

void guest_main(void)
{
    irq_init();
    if (cmos_read(MARK_REG) == 'V' && cmos_read(MARK_REG + 1) == 'R') {
        /* Second boot after a machine reset: the device must be back at power-on state, with
         * no queue enabled and no vectors, and work again (ioeventfds/irqfds set up anew). */
        cmos_write(MARK_REG, 0);
        CHECK(vio_find(&d, VIRTIO_ID_RNG, 0) == 0, "no virtio-rng-pci device after reset");
        CHECK(vio_status(&d) == 0, "status %x after a machine reset", vio_status(&d));
        d.common->queue_select = 0;
        CHECK(d.common->queue_enable == 0, "queue still enabled after a machine reset");
        CHECK(d.common->queue_msix_vector == 0xffff && d.common->msix_config == 0xffff,
              "MSI-X vectors not reset");
        CHECK(!(pci_cf8_read16(d.bus, d.dev, d.fn, d.msix_cap + 2) & 0x8000),
              "MSI-X still enabled after a machine reset");
        run_test();
        rt_printf("virtio-rng: works after a machine reset\n");
        test_pass();
    }
    run_test();
    if (cmdline_has("reboot")) {
        cmos_write(MARK_REG, 'V');
        cmos_write(MARK_REG + 1, 'R');
        rt_printf("virtio-rng: resetting the machine\n");
        rt_reset(RESET_CF9);
        test_fail("reset via 0xCF9 had no effect");
    }
    test_pass();
}
