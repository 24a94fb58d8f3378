/* Guest-side virtio-pci (modern, 1.x) driver for test guests: find the device, walk its
 * capabilities, negotiate features, set up split queues, submit descriptor chains, and wait for
 * them by polling or by MSI-X interrupt. Deliberately allows malformed requests (raw descriptor
 * access) so tests can play a hostile driver.
 *
 * Typical use:
 *     struct vio_dev d;
 *     CHECK(vio_find(&d, VIRTIO_ID_RNG, 0) == 0, "no virtio-rng");
 *     CHECK(vio_negotiate(&d, 0) == 0, "...");           // device feature bits wanted (low 32 = 0..31, VERSION_1 added)
 *     CHECK(vio_queue_setup(&d, 0, 8) == 0, "...");       // queue 0, 8 entries
 *     vio_driver_ok(&d);
 *     struct vio_buf b[1] = {{ buf, 64, true }};
 *     int head = vio_submit(&d, 0, b, 1);
 *     uint32_t id, len; vio_wait_used(&d, 0, &id, &len, 100);  // polls, or halts for the MSI-X irq
 *
 * Memory: queues and buffers must be identity-mapped guest-physical memory (the runtime's
 * static data is). BARs above 4 GiB are mapped by vio_find (2 MiB pages). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_RING_PACKED 34

/* Split ring layout (virtio 1.x 2.7). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1
struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
struct virtq_used_elem {
    uint32_t id, len;
};

/* The modern common configuration structure (virtio 1.x 4.1.4.3). */
struct virtio_pci_common_cfg {
    uint32_t device_feature_select, device_feature;
    uint32_t driver_feature_select, driver_feature;
    uint16_t msix_config, num_queues;
    uint8_t device_status, config_generation;
    uint16_t queue_select, queue_size, queue_msix_vector, queue_enable, queue_notify_off;
    uint64_t queue_desc, queue_driver, queue_device;
} __attribute__((packed));

#define VIO_MAX_QUEUES 4
#define VIO_QSIZE_MAX 64

struct vio_queue {
    uint16_t size;          /* 0 = not set up */
    uint16_t next_free;     /* descriptors are used round-robin, not recycled by chain */
    uint16_t avail_idx;     /* shadow of avail->idx */
    uint16_t last_used;     /* next used entry to consume */
    volatile struct virtq_desc *desc;
    volatile uint16_t *avail; /* flags, idx, ring[size], used_event */
    volatile uint8_t *used;   /* flags, idx, ring[size] of {id,len}, avail_event */
    uint64_t notify_addr;
    int msix_vector;        /* -1: polling */
    volatile uint32_t irq_count; /* incremented by the interrupt handler */
    /* Packed ring (VIRTIO_F_RING_PACKED negotiated): desc is the ring of 16-byte packed
     * descriptors, next_free/last_used are positions, buffer id = head position. */
    bool packed;
    bool avail_wrap, used_wrap;
    uint16_t chainlen[VIO_QSIZE_MAX];
};

struct vio_dev {
    uint8_t bus, dev, fn;
    uint16_t device_id;     /* PCI device id */
    uint64_t bar[6];        /* decoded BAR addresses (64-bit BARs at their low index) */
    volatile struct virtio_pci_common_cfg *common;
    uint64_t notify_base;
    uint32_t notify_mult;
    volatile uint8_t *isr;
    volatile uint8_t *devcfg;
    uint32_t devcfg_len;
    uint8_t msix_cap;       /* 0 = none */
    uint16_t msix_size;
    uint64_t msix_table;    /* address of the MSI-X table */
    uint64_t features;      /* negotiated */
    struct vio_queue q[VIO_MAX_QUEUES];
};

/* A buffer of a chain: device-writable when write. */
struct vio_buf {
    void *addr;
    uint32_t len;
    bool write;
};

/* Find the nth (0-based) modern virtio-pci device of type (VIRTIO_ID_*), map its BARs, parse
 * the capabilities. 0, or -1 when absent or malformed (a message is printed). */
int vio_find(struct vio_dev *d, unsigned type, unsigned nth);
/* Reset, ACKNOWLEDGE|DRIVER, accept (offered & (want | VERSION_1)), FEATURES_OK and check it
 * stuck. want: bit numbers as 1ULL << n. 0 or -1. */
int vio_negotiate(struct vio_dev *d, uint64_t want);
/* Set up queue q with size entries (<= VIO_QSIZE_MAX and <= the device's maximum), rings from a
 * static pool; enable it. 0 or -1. */
int vio_queue_setup(struct vio_dev *d, unsigned q, uint16_t size);
/* Route queue q (or the config interrupt when q < 0) to MSI-X table entry entry, delivered to
 * the BSP's IDT vector idt_vector (install a handler with irq_set_handler first, or use
 * vio_msix_handler). Enables MSI-X. 0 or -1 when the device refused the vector. */
int vio_setup_msix(struct vio_dev *d, int q, unsigned entry, uint8_t idt_vector);
void vio_driver_ok(struct vio_dev *d);
uint8_t vio_status(struct vio_dev *d);
void vio_set_status(struct vio_dev *d, uint8_t status);
/* Write 0 to status and wait for it to read back 0; the queues are forgotten (set up again). */
void vio_reset(struct vio_dev *d);
/* Put a chain of n buffers on queue q (direct descriptors) and kick. Returns the head index. */
int vio_submit(struct vio_dev *d, unsigned q, const struct vio_buf *bufs, unsigned n);
/* The same through one indirect descriptor pointing to a table built from bufs. */
int vio_submit_indirect(struct vio_dev *d, unsigned q, const struct vio_buf *bufs, unsigned n);
/* Hostile/raw: publish head (descriptors already written by the caller in d->q[q].desc) and kick. */
void vio_publish(struct vio_dev *d, unsigned q, uint16_t head);
void vio_kick(struct vio_dev *d, unsigned q);
/* Take one used entry: 0 with id and len filled, or -1 when none arrived within about ms milliseconds
 * (each wait is bounded). With an MSI-X vector the wait halts until an interrupt arrives. */
int vio_wait_used(struct vio_dev *d, unsigned q, uint32_t *id, uint32_t *len, unsigned ms);
/* Device config access (little endian). */
uint8_t vio_cfg_read8(struct vio_dev *d, unsigned off);
uint16_t vio_cfg_read16(struct vio_dev *d, unsigned off);
uint32_t vio_cfg_read32(struct vio_dev *d, unsigned off);
/* Read the ISR register (clears it). */
uint8_t vio_isr(struct vio_dev *d);
