/* A hostile virtio driver: descriptors outside RAM or in MMIO, loops, huge lengths, bad indirect
 * tables, readable-after-writable, an avail index jump and rings in MMIO space each put the
 * device into NEEDS_RESET; a reset makes it work again, a second virtio-rng is unaffected, and the
 * VMM survives (the runner checks the exit status). Run with two virtio-rng-pci devices. */
#include "rt/irq.h"
#include "rt/rt.h"
#include "rt/virtio.h"

const char guest_name[] = "virtio_hostile";

#define CVEC 0x45
#define QSZ 8

static struct vio_dev d0, d1;
static uint8_t buf[512] __attribute__((aligned(64)));
static struct virtq_desc itab[8] __attribute__((aligned(16)));
static struct virtq_desc itab2[2] __attribute__((aligned(16)));

static void fresh(struct vio_dev *d)
{
    CHECK(vio_negotiate(d, 1ULL << VIRTIO_F_RING_INDIRECT_DESC) == 0, "negotiation failed");
    CHECK(vio_queue_setup(d, 0, QSZ) == 0, "queue setup failed");
    vio_setup_msix(d, -1, 1, CVEC);
    vio_driver_ok(d);
    CHECK(vio_status(d) == 0xf, "status %x after setup", vio_status(d));
}

static void works(struct vio_dev *d, const char *what)
{
    memset(buf, 0, 64);
    struct vio_buf b[1] = {{buf, 64, true}};
    vio_submit(d, 0, b, 1);
    uint32_t id, len;
    CHECK(vio_wait_used(d, 0, &id, &len, 2000) == 0, "%s: no used entry", what);
    CHECK(len == 64, "%s: used len %u", what, len);
    bool varied = false;
    for (unsigned i = 1; i < 64; i++)
        varied |= buf[i] != buf[0];
    CHECK(varied, "%s: no random bytes", what);
}

static bool wait_needs_reset(struct vio_dev *d)
{
    uint32_t start = acpi_pm_timer_read();
    for (unsigned i = 0; i < 2000; i++) {
        if (vio_status(d) & VIRTIO_STATUS_NEEDS_RESET)
            return true;
        if (acpi.pm_tmr && ((acpi_pm_timer_read() - start) & 0xffffff) > 3580u * 1000)
            break;
    }
    return false;
}

static void set_desc(volatile struct virtq_desc *t, unsigned i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    t[i].addr = addr;
    t[i].len = len;
    t[i].flags = flags;
    t[i].next = next;
}

enum hcase { H_OUTSIDE, H_MMIO, H_HUGE, H_LOOP, H_IND_SIZE, H_IND_NESTED, H_WRITE_READ,
             H_AVAIL_JUMP, H_HEAD_RANGE, H_RING_MMIO, H_COUNT };
static const char *const hnames[H_COUNT] = {
    "buffer outside RAM", "buffer in MMIO space", "huge length", "descriptor loop",
    "indirect table of 24 bytes", "nested indirect", "readable after writable",
    "avail index jump", "head index out of range", "ring in MMIO space",
};

static void run_case(enum hcase c)
{
    vio_reset(&d0);
    uint32_t cfg_irqs = irq_count(CVEC);
    if (c == H_RING_MMIO) {
        CHECK(vio_negotiate(&d0, 0) == 0, "negotiation failed");
        d0.common->queue_select = 0;
        d0.common->queue_size = QSZ;
        d0.common->queue_desc = 0xfec00000; /* the IOAPIC */
        d0.common->queue_driver = (uint64_t)(uintptr_t)buf;
        d0.common->queue_device = (uint64_t)(uintptr_t)(buf + 256);
        d0.common->queue_enable = 1;
        CHECK(wait_needs_reset(&d0), "%s: no NEEDS_RESET", hnames[c]);
        return;
    }
    fresh(&d0);
    volatile struct virtq_desc *t = d0.q[0].desc;
    uint64_t b = (uint64_t)(uintptr_t)buf;
    switch (c) {
    case H_OUTSIDE: set_desc(t, 0, 0x3f00000000ULL, 64, VIRTQ_DESC_F_WRITE, 0); break;
    case H_MMIO: set_desc(t, 0, 0xfee00000, 64, VIRTQ_DESC_F_WRITE, 0); break;
    case H_HUGE: set_desc(t, 0, b, 0xfffffff0u, VIRTQ_DESC_F_WRITE, 0); break;
    case H_LOOP:
        set_desc(t, 0, b, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
        set_desc(t, 1, b, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
        break;
    case H_IND_SIZE:
        set_desc(itab, 0, b, 8, VIRTQ_DESC_F_WRITE, 0);
        set_desc(t, 0, (uint64_t)(uintptr_t)itab, 24, VIRTQ_DESC_F_INDIRECT, 0);
        break;
    case H_IND_NESTED:
        set_desc(itab2, 0, b, 8, VIRTQ_DESC_F_WRITE, 0);
        set_desc(itab, 0, (uint64_t)(uintptr_t)itab2, 16, VIRTQ_DESC_F_INDIRECT, 0);
        set_desc(t, 0, (uint64_t)(uintptr_t)itab, 16, VIRTQ_DESC_F_INDIRECT, 0);
        break;
    case H_WRITE_READ:
        set_desc(t, 0, b, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
        set_desc(t, 1, b + 8, 8, 0, 0);
        break;
    default:
        set_desc(t, 0, b, 8, VIRTQ_DESC_F_WRITE, 0);
        break;
    }
    if (c == H_AVAIL_JUMP) {
        d0.q[0].avail[1] = QSZ + 3;
        vio_kick(&d0, 0);
    } else {
        vio_publish(&d0, 0, c == H_HEAD_RANGE ? 0x7777 : 0);
    }
    CHECK(wait_needs_reset(&d0), "%s: device did not report NEEDS_RESET", hnames[c]);
    /* The config-change interrupt tells the driver (MSI-X config vector). */
    CHECK(irq_wait(CVEC, cfg_irqs + 1, 500), "%s: no config interrupt", hnames[c]);
    /* Nothing was completed, and the buffer around RAM's edge was not written. */
    CHECK(*(volatile uint16_t *)(d0.q[0].used + 2) == 0, "%s: a used entry appeared", hnames[c]);
    /* The driver cannot clear NEEDS_RESET without a reset. */
    vio_set_status(&d0, 0xf);
    CHECK(vio_status(&d0) & VIRTIO_STATUS_NEEDS_RESET, "%s: NEEDS_RESET cleared by the driver", hnames[c]);
}

void guest_main(void)
{
    irq_init();
    CHECK(vio_find(&d0, VIRTIO_ID_RNG, 0) == 0, "no first virtio-rng-pci");
    CHECK(vio_find(&d1, VIRTIO_ID_RNG, 1) == 0, "no second virtio-rng-pci (run with two)");
    fresh(&d1);
    works(&d1, "second device before");
    for (unsigned c = 0; c < H_COUNT; c++) {
        run_case((enum hcase)c);
        rt_printf("hostile: %s -> NEEDS_RESET\n", hnames[c]);
        works(&d1, hnames[c]);
    }
    vio_reset(&d0);
    CHECK(vio_status(&d0) == 0, "status %x after reset", vio_status(&d0));
    fresh(&d0);
    works(&d0, "first device after reset");
    works(&d1, "second device after");
    test_pass();
}
