/* PCI for the pc machine: host bridge (CF8/CFC and ECAM), the device framework, INTx, MSI, MSI-X.
 *
 * Topology: one root bus (bus 0), one function per slot (devfn = slot << 3), the host bridge at
 * 00:00.0. A device model embeds struct pci_device, fills it with the pci_device_init/pci_bar_init/
 * pci_*_init helpers, then calls pci_device_register(); after all devices are registered the VMM
 * calls pci_assign_resources() (there is no firmware on direct kernel boot to do it).
 *
 * Locking: none here. Every entry point runs with the machine's big lock held. */
#pragma once
#include "machine/bus.h"
#include <stdbool.h>
#include <stdint.h>

struct machine;
struct pci_host;
struct pci_device;

/* Standard configuration header (type 0). */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CLASS_DEVICE 0x0a
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_LATENCY_TIMER 0x0d
#define PCI_HEADER_TYPE 0x0e
#define PCI_BASE_ADDRESS_0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_ROM_ADDRESS 0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d

#define PCI_COMMAND_IO 0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_SERR 0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT 0x0008
#define PCI_STATUS_CAP_LIST 0x0010

#define PCI_BASE_ADDRESS_SPACE_IO 0x01
#define PCI_BASE_ADDRESS_MEM_TYPE_64 0x04
#define PCI_BASE_ADDRESS_MEM_PREFETCH 0x08

#define PCI_CAP_ID_MSI 0x05
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_EXP 0x10
#define PCI_CAP_ID_MSIX 0x11

/* MSI capability registers, relative to the capability. */
#define PCI_MSI_FLAGS 0x02
#define PCI_MSI_FLAGS_ENABLE 0x0001
#define PCI_MSI_FLAGS_QMASK 0x000e /* log2 of vectors the device supports */
#define PCI_MSI_FLAGS_QSIZE 0x0070 /* log2 of vectors the guest enabled */
#define PCI_MSI_FLAGS_64BIT 0x0080
#define PCI_MSI_FLAGS_MASKBIT 0x0100
#define PCI_MSI_ADDRESS_LO 0x04

/* MSI-X capability registers, relative to the capability, and table layout. */
#define PCI_MSIX_FLAGS 0x02
#define PCI_MSIX_FLAGS_QSIZE 0x07ff
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_TABLE 0x04
#define PCI_MSIX_PBA 0x08
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_ENTRY_VECTOR_CTRL 12
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1
#define PCI_MSIX_MAX_VECTORS 2048

#define PCI_CONFIG_SPACE_SIZE 256
#define PCIE_CONFIG_SPACE_SIZE 4096
#define PCI_NUM_BARS 6
#define PCI_NUM_SLOTS 32
#define PCI_DEVFN(slot, fn) ((unsigned)(((slot) << 3) | (fn)))

/* QEMU's IDs, so guests' drivers and lspci name our devices. */
#define PCI_VENDOR_ID_REDHAT 0x1b36
#define PCI_DEVICE_ID_REDHAT_TEST 0x0005
#define PCI_DEVICE_ID_REDHAT_PCIE_HOST 0x0008

/* BAR kinds for pci_bar_init. PCI_BAR_PREFETCH may be or'ed with the memory kinds. */
#define PCI_BAR_IO 0x1u
#define PCI_BAR_MEM32 0x2u
#define PCI_BAR_MEM64 0x4u
#define PCI_BAR_PREFETCH 0x8u

/* Hooks a device model may provide; every one is optional. */
struct pci_device_ops {
    /* After the framework produced *val for a config read of size bytes at off: may change it
     * (e.g. virtio-pci's VIRTIO_PCI_CAP_PCI_CFG window). */
    void (*config_read)(struct pci_device *d, unsigned off, unsigned size, uint32_t *val);
    /* After the framework applied a config write (masks, BAR moves, command, MSI/MSI-X). */
    void (*config_write)(struct pci_device *d, unsigned off, unsigned size, uint32_t val);
    /* Machine reset, after config space went back to its power-on contents and BARs were
     * unmapped: put the device's own state back to power-on. */
    void (*reset)(struct pci_device *d);
    /* A BAR appeared at addr, or disappeared (mapped false): e.g. to move ioeventfds. */
    void (*bar_map)(struct pci_device *d, unsigned bar, uint64_t addr, bool mapped);
    /* The guest changed MSI-X vectors first..last (table entry, vector mask) or the MSI-X
     * enable/function mask (0..n-1): e.g. to re-route irqfds. Query with pci_msix_message and
     * pci_msix_vector_masked. */
    void (*msix_changed)(struct pci_device *d, unsigned first, unsigned last);
    /* pci_host_destroy unplugged the device: free the model. */
    void (*release)(struct pci_device *d);
};

struct pci_bar {
    unsigned kind; /* PCI_BAR_* flags; 0 = BAR not implemented */
    uint64_t size; /* power of two */
    const struct bus_ops *ops; /* the device's handlers, offset relative to the BAR; may be NULL */
    void *opaque;
    bool mapped;
    uint64_t addr; /* where it is registered on the bus while mapped */
    struct pci_device *dev;
    unsigned index;
};

struct pci_msix {
    unsigned nvectors; /* 0 = no MSI-X */
    unsigned bar;
    uint64_t table_off, pba_off;
    uint8_t *table; /* nvectors * 16 bytes, little endian as the guest sees it */
    uint64_t *pba;  /* pending bits */
};

struct pci_device {
    const char *name; /* for messages and bus range names */
    const struct pci_device_ops *ops;
    void *opaque; /* for the device model; the framework never touches it */
    struct pci_host *host;
    unsigned devfn;
    unsigned config_size; /* 256, or 4096 once pci_express_init() ran */

    uint8_t config[PCIE_CONFIG_SPACE_SIZE];
    uint8_t wmask[PCIE_CONFIG_SPACE_SIZE];   /* bits the guest may write */
    uint8_t w1cmask[PCIE_CONFIG_SPACE_SIZE]; /* bits a guest write of 1 clears */
    uint8_t power_on[PCIE_CONFIG_SPACE_SIZE]; /* config as registered, restored on reset */
    unsigned cap_next; /* next free offset for a standard capability */

    struct pci_bar bars[PCI_NUM_BARS];

    bool intx_level;    /* what the device asks for */
    bool intx_asserted; /* what the host currently drives on the GSI for this device */

    uint8_t msi_cap; /* 0 = no MSI */
    uint8_t msix_cap;
    struct pci_msix msix;
};

/* ---- Host bridge ---- */

/* Address windows handed out by pci_assign_resources; the same numbers go into ACPI _CRS. */
struct pci_windows {
    uint64_t io_base, io_size;         /* PORT_PCI_IO_WINDOW .. PORT_PCI_IO_WINDOW_END */
    uint64_t mmio32_base, mmio32_size; /* LAYOUT_PCI_MMIO, LAYOUT_PCI_MMIO_SIZE */
    uint64_t mmio64_base, mmio64_size; /* as passed to pci_host_create; size 0 = none */
    uint64_t ecam_base, ecam_size;     /* LAYOUT_ECAM: for MCFG and the E820 reservation */
};

/* Create the host bridge: registers CONFIG_ADDRESS [0xCF8,0xCFC), CONFIG_DATA [0xCFC,0xD00),
 * ECAM at LAYOUT_ECAM, the bridge device at 00:00.0 and a machine reset handler.
 * mmio64_base/size: the window for 64-bit BARs, above RAM (size 0: 64-bit BARs go below 4 GiB).
 * Returns NULL (after logging) if a range is already taken. */
struct pci_host *pci_host_create(struct machine *m, uint64_t mmio64_base, uint64_t mmio64_size);
/* Unregister everything and release the devices (ops->release). Only while tearing the machine
 * down: the machine has no way to drop the reset handler. */
void pci_host_destroy(struct pci_host *h);
void pci_host_get_windows(const struct pci_host *h, struct pci_windows *w);
/* Byte accesses to port 0xCF9 (inside CONFIG_ADDRESS's 4 bytes) go to ops/opaque with offset 0:
 * the reset control register lives there. Without a handler they read 0xff and are dropped. */
void pci_host_set_cf9_handler(struct pci_host *h, const struct bus_ops *ops, void *opaque);
/* Power-on state for every device (run by the machine's reset handlers; exposed for tests). */
void pci_host_reset(struct pci_host *h);

/* Configuration access as a guest would do it (bus 0..255, devfn 0..255, reg 0..4095,
 * size 1/2/4). Absent functions and out-of-range accesses read all ones; writes are dropped. */
uint32_t pci_config_read(struct pci_host *h, unsigned bus, unsigned devfn, unsigned reg,
                         unsigned size);
void pci_config_write(struct pci_host *h, unsigned bus, unsigned devfn, unsigned reg,
                      unsigned size, uint32_t val);
struct pci_device *pci_host_find(struct pci_host *h, unsigned devfn);

/* Give every BAR an address (I/O from PORT_PCI_IO_WINDOW, 32-bit memory from LAYOUT_PCI_MMIO,
 * 64-bit memory from the 64-bit window), naturally aligned, largest first; then enable I/O,
 * memory decoding and bus mastering, and set the interrupt line to the routed GSI.
 * 0, or -ENOSPC (logged, naming the device) when a window is full: that BAR stays unassigned. */
int pci_assign_resources(struct pci_host *h);

/* ---- Devices ---- */

/* Blank type 0 header with the IDs and class (0xCCSSPP: class, subclass, prog-if). */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
                     uint32_t class_code, const struct pci_device_ops *ops);
void pci_device_set_subsystem(struct pci_device *d, uint16_t vendor, uint16_t id);
void pci_device_set_revision(struct pci_device *d, uint8_t rev);
/* Declare a BAR. kind: PCI_BAR_IO, PCI_BAR_MEM32 or PCI_BAR_MEM64 (uses bar and bar + 1), the
 * memory kinds optionally | PCI_BAR_PREFETCH. size: power of two, >= 4 (I/O, <= 256) or >= 16.
 * ops may be NULL when the BAR only holds the MSI-X table. 0 or -EINVAL. */
int pci_bar_init(struct pci_device *d, unsigned bar, unsigned kind, uint64_t size,
                 const struct bus_ops *ops, void *opaque);
/* INTx pin: 1 = INTA .. 4 = INTD, 0 = none. */
void pci_device_set_irq_pin(struct pci_device *d, unsigned pin);
/* Add a standard capability of size bytes (id and next pointer included) to the list.
 * Returns its config offset, or -ENOSPC. The caller fills the body and sets wmask bits. */
int pci_add_capability(struct pci_device *d, uint8_t id, unsigned size);
/* Offset of the first capability with this id, or 0. */
unsigned pci_find_capability(const struct pci_device *d, uint8_t id);
/* Make config space 4 KiB and add a PCI Express capability (root complex integrated endpoint,
 * the device sits on the root bus). Cap offset or -errno. */
int pci_express_init(struct pci_device *d);

/* Plug the device into slot (1..31), or the first free one when slot is -1.
 * All the init helpers above must have run: this is the power-on state reset returns to.
 * 0, -EBUSY (slot taken), -ENOSPC (bus full) or -EINVAL. */
int pci_device_register(struct pci_host *h, struct pci_device *d, int slot);

static inline unsigned pci_device_slot(const struct pci_device *d)
{
    return d->devfn >> 3;
}
/* GSI the device's pin is routed to (IRQ_PCI_INTX_BASE + ((slot + pin - 1) & 3)), or -1. */
int pci_device_gsi(const struct pci_device *d);
/* Bus mastering enabled: a device must not DMA or send MSIs without it. */
bool pci_bus_master_enabled(const struct pci_device *d);

/* Level-triggered INTx. The line follows level unless the command register's INTx-disable bit
 * is set; the status register's interrupt bit always follows level. Lines shared by devices
 * are or'ed. */
void pci_set_irq(struct pci_device *d, bool level);

/* Little-endian config accessors for device models (no masks, no side effects). */
static inline uint8_t pci_get_byte(const struct pci_device *d, unsigned off)
{
    return d->config[off];
}
static inline uint16_t pci_get_word(const struct pci_device *d, unsigned off)
{
    return (uint16_t)(d->config[off] | d->config[off + 1] << 8);
}
static inline uint32_t pci_get_long(const struct pci_device *d, unsigned off)
{
    return (uint32_t)pci_get_word(d, off) | (uint32_t)pci_get_word(d, off + 2) << 16;
}
static inline void pci_set_byte(uint8_t *space, unsigned off, uint8_t v)
{
    space[off] = v;
}
static inline void pci_set_word(uint8_t *space, unsigned off, uint16_t v)
{
    space[off] = (uint8_t)v;
    space[off + 1] = (uint8_t)(v >> 8);
}
static inline void pci_set_long(uint8_t *space, unsigned off, uint32_t v)
{
    pci_set_word(space, off, (uint16_t)v);
    pci_set_word(space, off + 2, (uint16_t)(v >> 16));
}

/* Config access as the guest sees it, for one device (offset relative to its config space). */
uint32_t pci_device_config_read(struct pci_device *d, unsigned off, unsigned size);
void pci_device_config_write(struct pci_device *d, unsigned off, unsigned size, uint32_t val);

/* ---- MSI ---- */

/* 64-bit MSI with nvectors (1, 2, 4, 8, 16 or 32) and optional per-vector masking.
 * Capability offset or -errno. */
int pci_msi_init(struct pci_device *d, unsigned nvectors, bool maskable);
bool pci_msi_enabled(const struct pci_device *d);
/* Send vector (or mark it pending while masked). Dropped when MSI is off or bus mastering is. */
void pci_msi_notify(struct pci_device *d, unsigned vector);

/* ---- MSI-X ---- */

/* MSI-X with nvectors (1..2048). The table (16 bytes per vector) and the PBA live in BAR bar at
 * table_off and pba_off (8-byte aligned, not overlapping); the framework serves those ranges
 * and passes the rest of the BAR to the device's ops. If the BAR is not declared yet it is
 * created as a 32-bit memory BAR just big enough (at least 4 KiB). Capability offset or -errno.
 * Must run before pci_device_register. */
int pci_msix_init(struct pci_device *d, unsigned nvectors, unsigned bar, uint64_t table_off,
                  uint64_t pba_off);
bool pci_msix_enabled(const struct pci_device *d);
/* Send vector, or set its pending bit while it or the function is masked; the pending message
 * is sent when unmasked. Dropped when MSI-X is off or bus mastering is. */
void pci_msix_notify(struct pci_device *d, unsigned vector);
bool pci_msix_vector_masked(const struct pci_device *d, unsigned vector);
bool pci_msix_pending(const struct pci_device *d, unsigned vector);
/* The message programmed for vector. 0, or -EINVAL for a vector the device does not have. */
int pci_msix_message(const struct pci_device *d, unsigned vector, uint64_t *addr, uint32_t *data);

/* ---- pci-testdev (pci_testdev.c) ---- */

/* QEMU-compatible test device 1b36:0005, class 0x00ff00: BAR0 4 KiB memory and BAR1 256 bytes
 * of I/O whose registers read back what was written (zero after reset), INTA. Plugged into the
 * first free slot; NULL (logged) when the bus is full. Freed by pci_host_destroy. */
struct pci_device *pci_testdev_create(struct pci_host *h);
