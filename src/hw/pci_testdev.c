/* pci-testdev (1b36:0005): BARs whose registers read back what was written, for guest tests. */
#include "hw/pci.h"
#include "base/util.h"
#include <stdlib.h>
#include <string.h>

#define TESTDEV_MEM_SIZE (4 * KiB)
#define TESTDEV_IO_SIZE 256

struct pci_testdev {
    struct pci_device pci;
    struct testdev_region {
        uint8_t *bytes;
        uint64_t size;
    } mem, io;
    uint8_t mem_bytes[TESTDEV_MEM_SIZE];
    uint8_t io_bytes[TESTDEV_IO_SIZE];
};

static uint64_t testdev_read(void *opaque, uint64_t off, unsigned size)
{
    struct testdev_region *r = opaque;
    uint64_t v = 0;
    if (size > 8 || off >= r->size || size > r->size - off)
        return ~0ULL;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)r->bytes[off + i] << (8 * i);
    return v;
}

static void testdev_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct testdev_region *r = opaque;
    if (size > 8 || off >= r->size || size > r->size - off)
        return;
    for (unsigned i = 0; i < size; i++)
        r->bytes[off + i] = (uint8_t)(val >> (8 * i));
}

static const struct bus_ops testdev_ops = {.read = testdev_read, .write = testdev_write};

static void testdev_reset(struct pci_device *d)
{
    struct pci_testdev *t = container_of(d, struct pci_testdev, pci);
    memset(t->mem_bytes, 0, sizeof(t->mem_bytes));
    memset(t->io_bytes, 0, sizeof(t->io_bytes));
}

static void testdev_release(struct pci_device *d)
{
    free(container_of(d, struct pci_testdev, pci));
}

static const struct pci_device_ops testdev_pci_ops = {
    .reset = testdev_reset,
    .release = testdev_release,
};

struct pci_device *pci_testdev_create(struct pci_host *h)
{
    struct pci_testdev *t = xzalloc(sizeof(*t));
    t->mem = (struct testdev_region){t->mem_bytes, sizeof(t->mem_bytes)};
    t->io = (struct testdev_region){t->io_bytes, sizeof(t->io_bytes)};
    pci_device_init(&t->pci, "pci-testdev", PCI_VENDOR_ID_REDHAT, PCI_DEVICE_ID_REDHAT_TEST,
                    0x00ff00, &testdev_pci_ops);
    pci_device_set_subsystem(&t->pci, 0x1af4, 0x1100);
    pci_device_set_irq_pin(&t->pci, 1);
    if (pci_bar_init(&t->pci, 0, PCI_BAR_MEM32, TESTDEV_MEM_SIZE, &testdev_ops, &t->mem) < 0 ||
        pci_bar_init(&t->pci, 1, PCI_BAR_IO, TESTDEV_IO_SIZE, &testdev_ops, &t->io) < 0 ||
        pci_device_register(h, &t->pci, -1) < 0) {
        free(t);
        return NULL;
    }
    return &t->pci;
}
