/* Unit tests for the virtio-pci transport: IDs and capabilities, feature windows, queue select,
 * status/reset, ISR read-to-clear with INTx, MSI-X vectors, notify region, PCI_CFG window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/util.h"
#include "hw/pci.h"
#include "hw/virtio/virtq.h"
#include "machine/layout.h"
#include "machine/machine.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MMIO64_BASE (64 * GiB)
#define RAM_SIZE (1 * MiB)

struct fake_irq {
    bool level[IOAPIC_NUM_PINS];
    unsigned nmsi;
    uint64_t msi_addr;
    uint32_t msi_data;
};

static void fake_set_level(void *opaque, unsigned gsi, bool level)
{
    struct fake_irq *f = opaque;
    assert_true(gsi < IOAPIC_NUM_PINS);
    f->level[gsi] = level;
}

static void fake_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
    struct fake_irq *f = opaque;
    f->nmsi++;
    f->msi_addr = addr;
    f->msi_data = data;
}

static const struct irq_ops fake_irq_ops = {.set_level = fake_set_level,
                                            .send_msi = fake_send_msi};

struct fx {
    struct machine m;
    struct fake_irq irq;
    struct pci_host *h;
    uint8_t *ram;
    struct virtio_dev vd;
    unsigned kicks[4];
    unsigned resets;
    unsigned devfn;
    uint64_t bar4, bar1;
};

static void dev_notify(struct virtio_dev *vd, unsigned q)
{
    struct fx *f = vd->opaque;
    if (q < 4)
        f->kicks[q]++;
}
static void dev_reset(struct virtio_dev *vd)
{
    ((struct fx *)vd->opaque)->resets++;
}
static const struct virtio_dev_ops dev_ops = {.queue_notify = dev_notify, .reset = dev_reset};

static uint32_t cfg_read(struct fx *f, unsigned off, unsigned size)
{
    return pci_config_read(f->h, 0, f->devfn, off, size);
}
static void cfg_write(struct fx *f, unsigned off, unsigned size, uint32_t v)
{
    pci_config_write(f->h, 0, f->devfn, off, size, v);
}
static uint64_t rd(struct fx *f, uint64_t off, unsigned size)
{
    uint64_t v = 0;
    assert_true(bus_read(&f->m.mmio, f->bar4 + off, size, &v));
    return v;
}
static void wr(struct fx *f, uint64_t off, unsigned size, uint64_t v)
{
    assert_true(bus_write(&f->m.mmio, f->bar4 + off, size, v));
}

static int setup(void **state)
{
    struct fx *f = xzalloc(sizeof(*f));
    machine_init(&f->m);
    f->ram = xzalloc(RAM_SIZE);
    guest_mem_init_buffer(&f->m.mem, f->ram, RAM_SIZE);
    f->m.irq = (struct irq_chip){&fake_irq_ops, &f->irq};
    f->h = pci_host_create(&f->m, MMIO64_BASE, LAYOUT_PCI_MMIO64_SIZE);
    assert_non_null(f->h);
    virtio_dev_init(&f->vd, VIRTIO_ID_RNG, &dev_ops, f, 8);
    f->vd.config[0] = 0x11;
    f->vd.config[1] = 0x22;
    f->vd.host_features |= VIRTIO_F_BIT(5);
    virtio_add_queue(&f->vd, 64);
    virtio_add_queue(&f->vd, 16);
    assert_int_equal(virtio_pci_create(&f->m, f->h, &f->vd, "test-virtio", 3), 0);
    f->devfn = PCI_DEVFN(3, 0);
    assert_int_equal(pci_assign_resources(f->h), 0);
    f->bar4 = (uint64_t)cfg_read(f, PCI_BASE_ADDRESS_0 + 16, 4) & ~0xfULL;
    f->bar4 |= (uint64_t)cfg_read(f, PCI_BASE_ADDRESS_0 + 20, 4) << 32;
    f->bar1 = cfg_read(f, PCI_BASE_ADDRESS_0 + 4, 4) & ~0xfULL;
    assert_true(f->bar4 >= MMIO64_BASE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    pci_host_destroy(f->h);
    virtio_dev_destroy(&f->vd);
    machine_destroy(&f->m);
    free(f->ram);
    free(f);
    return 0;
}

static void test_ids_and_caps(void **state)
{
    struct fx *f = *state;
    assert_int_equal(cfg_read(f, PCI_VENDOR_ID, 2), 0x1af4);
    assert_int_equal(cfg_read(f, PCI_DEVICE_ID, 2), 0x1044);
    assert_int_equal(cfg_read(f, PCI_REVISION_ID, 1), 1);
    assert_int_equal(cfg_read(f, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    assert_int_equal(cfg_read(f, PCI_SUBSYSTEM_ID, 2), 0x1100);
    assert_int_equal(cfg_read(f, PCI_INTERRUPT_PIN, 1), 1);
    /* BAR 4: 64-bit prefetchable memory, 16 KiB. */
    assert_int_equal(cfg_read(f, PCI_BASE_ADDRESS_0 + 16, 4) & 0xf, 0xc);
    unsigned seen = 0, msix = 0;
    unsigned ptr = cfg_read(f, PCI_CAPABILITY_LIST, 1);
    for (unsigned n = 0; ptr && n < 48; n++) {
        unsigned id = cfg_read(f, ptr, 1);
        if (id == PCI_CAP_ID_MSIX) {
            msix = ptr;
        } else if (id == PCI_CAP_ID_VNDR) {
            unsigned type = cfg_read(f, ptr + 3, 1), bar = cfg_read(f, ptr + 4, 1);
            uint32_t off = cfg_read(f, ptr + 8, 4), len = cfg_read(f, ptr + 12, 4);
            seen |= 1u << type;
            if (type != 5) {
                assert_int_equal(bar, 4);
                assert_true(len >= 4 && off + len <= 0x4000);
            }
            if (type == 1)
                assert_int_equal(off, 0);
            if (type == 2) {
                assert_int_equal(cfg_read(f, ptr + 2, 1), 20);
                assert_int_equal(cfg_read(f, ptr + 16, 4), 4);
            }
        }
        ptr = cfg_read(f, ptr + 1, 1);
    }
    assert_int_equal(seen, 0x3e); /* common, notify, ISR, device, PCI_CFG */
    assert_true(msix);
    assert_int_equal((cfg_read(f, msix + 2, 2) & 0x7ff) + 1, 3); /* 2 queues + config */
}

static void test_feature_windows(void **state)
{
    struct fx *f = *state;
    wr(f, 0, 4, 0);
    assert_int_equal(rd(f, 4, 4), (uint32_t)f->vd.host_features);
    assert_true(rd(f, 4, 4) & (1u << 5));
    assert_true(rd(f, 4, 4) & (1u << VIRTIO_F_RING_INDIRECT_DESC));
    wr(f, 0, 4, 1);
    assert_int_equal(rd(f, 4, 4), 1); /* VERSION_1, no ACCESS_PLATFORM */
    wr(f, 0, 4, 2);
    assert_int_equal(rd(f, 4, 4), 0);
    assert_int_equal(rd(f, 0, 4), 2);
    wr(f, 20, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    wr(f, 8, 4, 0);
    wr(f, 12, 4, 1u << 5);
    wr(f, 8, 4, 1);
    wr(f, 12, 4, 1);
    wr(f, 8, 4, 0);
    assert_int_equal(rd(f, 12, 4), 1u << 5);
    wr(f, 20, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    assert_int_equal(rd(f, 20, 1), 0xb);
    assert_int_equal(f->vd.guest_features, VIRTIO_F_BIT(5) | VIRTIO_F_BIT(VIRTIO_F_VERSION_1));
    /* Misaligned or wrongly sized accesses are ignored. */
    wr(f, 8, 2, 1);
    assert_int_equal(rd(f, 8, 4), 0);
    assert_int_equal(rd(f, 18, 2), 2); /* num_queues */
}

static void test_queue_select_and_reset(void **state)
{
    struct fx *f = *state;
    assert_int_equal(rd(f, 24, 2), 64);
    wr(f, 22, 2, 1);
    assert_int_equal(rd(f, 24, 2), 16);
    assert_int_equal(rd(f, 30, 2), 1); /* queue_notify_off */
    wr(f, 22, 2, 7);                    /* no such queue */
    assert_int_equal(rd(f, 24, 2), 0);
    assert_int_equal(rd(f, 26, 2), VIRTIO_MSI_NO_VECTOR);
    wr(f, 22, 2, 0);
    wr(f, 20, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    wr(f, 12, 4, 0);
    wr(f, 8, 4, 1);
    wr(f, 12, 4, 1);
    wr(f, 20, 1, 0xb);
    wr(f, 24, 2, 8);
    wr(f, 32, 8, 0x1000);            /* 64-bit access */
    wr(f, 40, 4, 0x2000);            /* two 32-bit halves */
    wr(f, 44, 4, 0);
    wr(f, 48, 4, 0x3000);
    wr(f, 26, 2, 1);
    assert_int_equal(rd(f, 26, 2), 1);
    wr(f, 26, 2, 9); /* beyond the table: refused */
    assert_int_equal(rd(f, 26, 2), VIRTIO_MSI_NO_VECTOR);
    wr(f, 16, 2, 2);
    assert_int_equal(rd(f, 16, 2), 2);
    wr(f, 28, 2, 1);
    assert_int_equal(rd(f, 28, 2), 1);
    assert_int_equal(rd(f, 32, 8), 0x1000);
    assert_int_equal(rd(f, 40, 4), 0x2000);
    /* Layout is frozen while enabled. */
    wr(f, 24, 2, 4);
    assert_int_equal(rd(f, 24, 2), 8);
    wr(f, 20, 1, 0xf);
    assert_true(virtio_dev_ready(&f->vd));
    /* Notify region: queue q at 4 * q. */
    wr(f, 0x3000, 2, 0);
    assert_int_equal(f->kicks[0], 1);
    wr(f, 0x3004, 2, 1); /* queue 1 is not enabled: dropped */
    assert_int_equal(f->kicks[1], 0);
    /* Reset: everything back to power-on. */
    wr(f, 20, 1, 0);
    assert_int_equal(rd(f, 20, 1), 0);
    assert_int_equal(f->resets, 1);
    assert_int_equal(rd(f, 28, 2), 0);
    assert_int_equal(rd(f, 24, 2), 64);
    assert_int_equal(rd(f, 32, 8), 0);
    assert_int_equal(rd(f, 26, 2), VIRTIO_MSI_NO_VECTOR);
    assert_int_equal(rd(f, 16, 2), VIRTIO_MSI_NO_VECTOR);
    assert_int_equal(f->vd.guest_features, 0);
    wr(f, 0x3000, 2, 0);
    assert_int_equal(f->kicks[0], 1);
}

static void test_device_config_and_generation(void **state)
{
    struct fx *f = *state;
    assert_int_equal(rd(f, 0x2000, 2), 0x2211);
    assert_int_equal(rd(f, 0x2000, 1), 0x11);
    assert_int_equal(rd(f, 0x2008, 4), 0); /* past config_len */
    wr(f, 0x2000, 1, 0x99);                /* read-only without a config_write hook */
    assert_int_equal(rd(f, 0x2000, 1), 0x11);
    uint8_t g = (uint8_t)rd(f, 21, 1);
    virtio_notify_config(&f->vd);
    assert_int_equal(rd(f, 21, 1), (uint8_t)(g + 1));
}

static void test_isr_intx(void **state)
{
    struct fx *f = *state;
    int gsi = pci_device_gsi(pci_host_find(f->h, f->devfn));
    assert_true(gsi >= 16);
    wr(f, 20, 1, 0xb);
    wr(f, 20, 1, 0); /* clean start */
    wr(f, 20, 1, 3);
    wr(f, 8, 4, 1);
    wr(f, 12, 4, 1);
    wr(f, 20, 1, 0xb);
    wr(f, 20, 1, 0xf);
    virtio_notify_config(&f->vd); /* MSI-X off: INTx with ISR bit 1 */
    assert_true(f->irq.level[gsi]);
    assert_int_equal(f->irq.nmsi, 0);
    assert_int_equal(rd(f, 0x1000, 1), 2);
    assert_false(f->irq.level[gsi]);
    assert_int_equal(rd(f, 0x1000, 1), 0);
}

static void test_msix(void **state)
{
    struct fx *f = *state;
    struct pci_device *d = pci_host_find(f->h, f->devfn);
    unsigned cap = pci_find_capability(d, PCI_CAP_ID_MSIX);
    /* Program vector 2 and enable MSI-X. */
    assert_true(bus_write(&f->m.mmio, f->bar1 + 2 * 16, 4, 0xfee00000));
    assert_true(bus_write(&f->m.mmio, f->bar1 + 2 * 16 + 4, 4, 0));
    assert_true(bus_write(&f->m.mmio, f->bar1 + 2 * 16 + 8, 4, 0x4041));
    assert_true(bus_write(&f->m.mmio, f->bar1 + 2 * 16 + 12, 4, 0));
    cfg_write(f, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    wr(f, 20, 1, 3);
    wr(f, 8, 4, 1);
    wr(f, 12, 4, 1);
    wr(f, 20, 1, 0xb);
    wr(f, 16, 2, 2);
    wr(f, 20, 1, 0xf);
    virtio_notify_config(&f->vd);
    assert_int_equal(f->irq.nmsi, 1);
    assert_int_equal(f->irq.msi_addr, 0xfee00000);
    assert_int_equal(f->irq.msi_data, 0x4041);
    assert_int_equal(f->vd.isr, 0); /* no ISR/INTx with MSI-X */
    /* No vector: no interrupt at all. */
    wr(f, 16, 2, VIRTIO_MSI_NO_VECTOR);
    virtio_notify_config(&f->vd);
    assert_int_equal(f->irq.nmsi, 1);
}

static void test_pci_cfg_window(void **state)
{
    struct fx *f = *state;
    unsigned ptr = cfg_read(f, PCI_CAPABILITY_LIST, 1), c = 0;
    for (unsigned n = 0; ptr && n < 48; n++) {
        if (cfg_read(f, ptr, 1) == PCI_CAP_ID_VNDR && cfg_read(f, ptr + 3, 1) == 5)
            c = ptr;
        ptr = cfg_read(f, ptr + 1, 1);
    }
    assert_true(c);
    cfg_write(f, c + 4, 1, 4);
    cfg_write(f, c + 8, 4, 0x2000);
    cfg_write(f, c + 12, 4, 2);
    assert_int_equal(cfg_read(f, c + 16, 4) & 0xffff, 0x2211);
    cfg_write(f, c + 8, 4, 22); /* queue_select through the window */
    cfg_write(f, c + 16, 4, 1);
    assert_int_equal(rd(f, 22, 2), 1);
}

/* ---- accelerator fast paths, faked ---- */

static struct {
    int assigned;                 /* irqfds currently registered */
    int last_fd;
    uint64_t last_addr;
    uint32_t last_data;
    int ioevents;                 /* ioeventfds currently registered */
    uint64_t ioevent_addr;
    unsigned ioevent_len;
} fast;

static int fake_irqfd(struct machine *m, int fd, uint64_t addr, uint32_t data, bool assign)
{
    (void)m;
    fast.assigned += assign ? 1 : -1;
    if (assign) {
        fast.last_fd = fd;
        fast.last_addr = addr;
        fast.last_data = data;
    }
    return 0;
}

static int fake_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd,
                          bool assign)
{
    (void)m, (void)pio, (void)fd;
    fast.ioevents += assign ? 1 : -1;
    if (assign) {
        fast.ioevent_addr = addr;
        fast.ioevent_len = len;
    }
    return 0;
}

static void msix_program(struct fx *f, unsigned v, uint32_t addr, uint32_t data, bool masked)
{
    assert_true(bus_write(&f->m.mmio, f->bar1 + 16 * v, 4, addr));
    assert_true(bus_write(&f->m.mmio, f->bar1 + 16 * v + 4, 4, 0));
    assert_true(bus_write(&f->m.mmio, f->bar1 + 16 * v + 8, 4, data));
    assert_true(bus_write(&f->m.mmio, f->bar1 + 16 * v + 12, 4, masked));
}

static void test_irqfd_and_ioeventfd(void **state)
{
    struct fx *f = *state;
    memset(&fast, 0, sizeof(fast));
    f->m.irqfd = fake_irqfd;
    f->m.ioeventfd = fake_ioeventfd;
    f->m.ev = evloop_new();
    struct pci_device *d = pci_host_find(f->h, f->devfn);
    unsigned cap = pci_find_capability(d, PCI_CAP_ID_MSIX);
    msix_program(f, 0, 0xfee00000, 0x31, false);
    assert_int_equal(fast.assigned, 0); /* MSI-X still off */
    cfg_write(f, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    assert_true(fast.assigned >= 1);
    assert_int_equal(fast.last_addr, 0xfee00000);
    assert_int_equal(fast.last_data, 0x31);
    int before = fast.assigned;
    /* New message: re-registered with it. */
    msix_program(f, 0, 0xfee01000, 0x32, false);
    assert_int_equal(fast.assigned, before);
    assert_int_equal(fast.last_addr, 0xfee01000);
    assert_int_equal(fast.last_data, 0x32);
    /* Queue 0 on vector 0, device running: a completion signals the eventfd, not irq_send_msi. */
    wr(f, 20, 1, 3);
    wr(f, 8, 4, 1);
    wr(f, 12, 4, 1);
    wr(f, 20, 1, 0xb);
    wr(f, 24, 2, 8);
    wr(f, 32, 8, 0x1000);
    wr(f, 40, 8, 0x2000);
    wr(f, 48, 8, 0x3000);
    wr(f, 26, 2, 0);
    wr(f, 28, 2, 1);
    assert_int_equal(fast.ioevents, 0); /* not before DRIVER_OK */
    wr(f, 20, 1, 0xf);
    assert_int_equal(fast.ioevents, 1);
    assert_int_equal(fast.ioevent_addr, f->bar4 + 0x3000);
    assert_int_equal(fast.ioevent_len, 2);
    unsigned nmsi = f->irq.nmsi;
    virtio_queue_raise(&f->vd.vqs[0]);
    uint64_t cnt = 0;
    assert_int_equal(read(fast.last_fd, &cnt, 8), 8);
    assert_int_equal(cnt, 1);
    assert_int_equal(f->irq.nmsi, nmsi);
    /* Masked: the irqfd goes away and the framework keeps the message pending. */
    msix_program(f, 0, 0xfee01000, 0x32, true);
    assert_int_equal(fast.assigned, before - 1);
    virtio_queue_raise(&f->vd.vqs[0]);
    assert_true(pci_msix_pending(d, 0));
    assert_int_equal(f->irq.nmsi, nmsi);
    msix_program(f, 0, 0xfee01000, 0x32, false); /* unmask: delivered, irqfd back */
    assert_int_equal(f->irq.nmsi, nmsi + 1);
    assert_int_equal(fast.assigned, before);
    /* Device reset drops the ioeventfd; a machine reset drops the irqfds too. */
    wr(f, 20, 1, 0);
    assert_int_equal(fast.ioevents, 0);
    pci_host_reset(f->h);
    assert_int_equal(fast.assigned, 0);
    evloop_free(f->m.ev);
    f->m.ev = NULL;
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ids_and_caps),
        T(test_feature_windows),
        T(test_queue_select_and_reset),
        T(test_device_config_and_generation),
        T(test_isr_intx),
        T(test_msix),
        T(test_pci_cfg_window),
        T(test_irqfd_and_ioeventfd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
