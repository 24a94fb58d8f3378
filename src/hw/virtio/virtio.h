/* The virtio device API: what virtio-rng/console/blk/net code against (queues, features, config,
 * interrupts); the virtio-pci transport and the split-virtqueue engine sit behind it.
 *
 * How a device is built (see virtio_rng.c for the smallest example):
 *
 *     struct my_dev { struct virtio_dev vdev; ... };
 *     virtio_dev_init(&d->vdev, VIRTIO_ID_RNG, &my_ops, d, config_len);
 *     d->vdev.host_features = <device feature bits>;   // VERSION_1 etc. are added by the core
 *     virtio_add_queue(&d->vdev, 256);                  // queue 0, 1, ... in order
 *     virtio_pci_create(ctx->m, ctx->pci, &d->vdev, "virtio-rng-pci", -1);
 *
 * Queue processing (callbacks run with the machine lock held, on a vCPU thread or the event
 * loop; device code needs no locks):
 *
 *     void my_queue_notify(struct virtio_dev *vd, unsigned q) {
 *         struct virtq *vq = virtio_queue(vd, q);
 *         struct virtq_elem *e;
 *         while ((e = virtq_pop(vq))) {
 *             ... read e->out[], fill e->in[] ...
 *             virtq_push(vq, e, bytes_written_to_in);   // frees e
 *         }
 *         virtq_notify(vq);                              // interrupt, if the guest wants one
 *     }
 *
 * Elements may be kept across callbacks (asynchronous I/O) and pushed later from the event loop.
 * If the device was reset meanwhile, virtq_push just frees the stale element (it carries the
 * queue generation), so a late completion never writes into a re-initialised ring. The iovec
 * pointers of a stale element must not be used after a reset: the ops->reset callback should
 * cancel or wait for in-flight I/O it still holds (guest RAM itself stays mapped for the life of
 * the VM, so a late write cannot fault the host, only corrupt the guest).
 *
 * The guest is untrusted: virtq_pop validates every descriptor (addresses against guest RAM,
 * lengths, chain length, loops, indirect tables, readable-before-writable order, avail index
 * jumps). A violation puts the device into DEVICE_NEEDS_RESET (status bit 0x40) with one log
 * line and a config interrupt; afterwards virtq_pop returns NULL on every queue until the guest
 * resets the device. Devices detecting a malformed request of their own (e.g. a header too short)
 * may call virtio_error() for the same effect. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct machine;
struct pci_host;
struct virtio_dev;
struct virtq;

/* Device types (virtio 1.x section 5); the PCI device id is 0x1040 + type. */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Transport/ring feature bits (the core offers these itself; devices set only their own). */
#define VIRTIO_F_NOTIFY_ON_EMPTY 24
#define VIRTIO_F_ANY_LAYOUT 27
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED 34
#define VIRTIO_F_BIT(n) (1ULL << (n))

#define VIRTIO_MAX_QUEUES 16

/* Largest queue a device may ask for, and the most segments one chain may have (the rings'
 * limit is 32768; nobody needs more). */
#define VIRTQ_MAX_SIZE 1024
/* "No MSI-X vector" as the guest writes it into msix_config / queue_msix_vector. */
#define VIRTIO_MSI_NO_VECTOR 0xffff

/* One request taken off a queue: the descriptor chain mapped to host memory. out[] are the
 * device-readable buffers (driver -> device), in[] the device-writable ones, each in chain
 * order. Every iovec lies inside guest RAM, checked. Allocated by virtq_pop, freed by
 * virtq_push (or virtq_elem_free / virtq_unpop). */
struct virtq_elem {
    uint16_t head;       /* chain head index (split) or buffer id (packed): what the used entry gets */
    uint32_t gen;        /* queue generation when popped (private) */
    unsigned nout, nin;  /* number of out[] / in[] entries */
    size_t out_len;      /* total bytes in out[] */
    size_t in_len;       /* total bytes in in[] */
    struct iovec *out;   /* points into iov[] */
    struct iovec *in;    /* points into iov[] after out[] */
    uint64_t *out_gpa;   /* guest-physical address of each out[] segment (logging; virtq_push
                          * reports the in[] ones as written: guest_mem_written) */
    uint64_t *in_gpa;
    uint16_t ndescs;     /* ring descriptors the chain took (packed rings; private) */
    struct iovec iov[];  /* nout + nin entries, then the gpa arrays */
};

/* What a device model implements. Every callback runs with the machine lock held. */
struct virtio_dev_ops {
    /* The guest kicked queue q (MMIO write or ioeventfd). Required. Called only while the
     * device is DRIVER_OK and not NEEDS_RESET, for a queue the guest enabled. */
    void (*queue_notify)(struct virtio_dev *vd, unsigned q);
    /* The guest wrote FEATURES_OK having chosen vd->guest_features: return 0 to accept, or
     * -EINVAL to refuse (FEATURES_OK then stays clear). Optional. */
    int (*features_ok)(struct virtio_dev *vd, uint64_t features);
    /* Status changed (old -> new), after the core applied it; e.g. start work on DRIVER_OK.
     * Not called for a reset (see reset). Optional. */
    void (*status_changed)(struct virtio_dev *vd, uint8_t old_status, uint8_t new_status);
    /* The guest reset the device (status 0) or the machine reset: drop in-flight work, return
     * device state to power-on. Queues are already reset. Optional. */
    void (*reset)(struct virtio_dev *vd);
    /* Before the guest reads device config [off, off+len): refresh vd->config if needed.
     * Optional: without it the guest reads vd->config as it is. */
    void (*config_read)(struct virtio_dev *vd, unsigned off, unsigned len);
    /* After the guest wrote [off, off+len) of vd->config (already stored there). Optional: without
     * it device config is read-only and writes are dropped. */
    void (*config_write)(struct virtio_dev *vd, unsigned off, unsigned len);
    /* Free the device model (the transport is being destroyed). Optional. */
    void (*release)(struct virtio_dev *vd);
};

/* How the core reaches the transport (virtio-pci); private to virtio_pci.c and unit tests. */
struct virtio_transport_ops {
    /* Raise MSI-X vector (VIRTIO_MSI_NO_VECTOR: the INTx/ISR path); isr is the ISR bit(s) to set
     * on the INTx path: 1 for a queue, 2 for a config change. */
    void (*notify)(void *transport, uint16_t vector, uint8_t isr);
};

/* The split virtqueue state. Fields are private to the core; devices use the functions below. */
struct virtq {
    struct virtio_dev *vdev;
    unsigned index;
    uint16_t max_size;   /* what the device offers */
    uint16_t size;       /* what the guest chose (power of two <= max_size) */
    bool enabled;        /* queue_enable written 1 */
    uint16_t msix_vector;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* Host pointers to the rings, resolved and checked when the queue is enabled. */
    void *desc, *avail, *used;
    uint16_t last_avail_idx;   /* next avail entry to consume */
    uint16_t used_idx;         /* next used entry to fill (shadow of used->idx) */
    uint16_t signalled_used;   /* used idx at the last interrupt (EVENT_IDX) */
    bool signalled_used_valid;
    bool notify_enabled;       /* device wants kicks (virtq_set_notification) */
    uint32_t gen;              /* bumped on every reset; elements from older generations are stale */
    unsigned inflight;         /* elements popped and not yet pushed/freed */
    void *transport_priv;      /* per-queue transport state (ioeventfd) */
    /* Packed ring (VIRTIO_F_RING_PACKED negotiated): desc is the descriptor ring, avail the
     * driver event suppression area, used the device's; indices are ring positions. */
    bool packed;
    bool avail_wrap, used_wrap; /* wrap counters */
    bool used_pending;          /* packed: entries pushed since the last virtq_notify */
};

/* Everything the core and transport know about a device. Embed it in the device model. */
struct virtio_dev {
    const char *name;           /* for messages, e.g. "virtio-rng-pci" (set by virtio_pci_create) */
    uint16_t device_id;         /* VIRTIO_ID_* */
    const struct virtio_dev_ops *ops;
    void *opaque;               /* for the device model */

    uint64_t host_features;     /* device-specific bits; the core ORs in its own on init */
    uint64_t guest_features;    /* what the guest accepted (valid once FEATURES_OK) */
    uint8_t status;
    uint8_t config_generation;  /* bumped by virtio_notify_config */
    uint8_t isr;                /* INTx interrupt status (read-to-clear) */
    uint16_t config_vector;     /* MSI-X vector for config changes */
    bool broken;                /* NEEDS_RESET set: queues are dead until reset */

    uint8_t *config;            /* device-specific config space (little endian), config_len bytes */
    unsigned config_len;

    struct virtq vqs[VIRTIO_MAX_QUEUES];
    unsigned nvqs;

    struct machine *m;          /* set by the transport */
    const struct virtio_transport_ops *tops;
    void *transport;
};

/* ---- device setup ---- */

/* Initialise vd: type, ops, opaque, a zeroed config of config_len bytes (<= 4096; freed by
 * virtio_dev_destroy), host_features = VERSION_1 | RING_INDIRECT_DESC | RING_EVENT_IDX.
 * Packed rings are off by default, as in QEMU: a device with a "packed=on" property sets
 * host_features |= VIRTIO_F_BIT(VIRTIO_F_RING_PACKED) (see virtio_parse_common_opt). */
void virtio_dev_init(struct virtio_dev *vd, uint16_t device_id, const struct virtio_dev_ops *ops,
                     void *opaque, unsigned config_len);
void virtio_dev_destroy(struct virtio_dev *vd);
/* Add the next queue (index vd->nvqs) with at most max_size entries (power of two, 2..1024).
 * Returns the queue index, or -ENOSPC after VIRTIO_MAX_QUEUES queues. */
int virtio_add_queue(struct virtio_dev *vd, unsigned max_size);
static inline struct virtq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
    return q < vd->nvqs ? &vd->vqs[q] : NULL;
}
/* Plug vd into the PCI bus as a modern virtio-pci device (1af4:1040+type, revision 1, MSI-X
 * with one vector per queue plus one for config, capabilities in BAR 4 as QEMU lays them
 * out). slot -1 = first free. name is used in messages. 0 or -errno (logged). */
int virtio_pci_create(struct machine *m, struct pci_host *h, struct virtio_dev *vd,
                      const char *name, int slot);

/* ---- queue processing ---- */

/* Next available chain, validated and mapped; NULL when the queue is empty, not set up, or the
 * device is broken (in which case it is now NEEDS_RESET). */
struct virtq_elem *virtq_pop(struct virtq *vq);
/* Return elem to the used ring with len bytes written into its in[] buffers, and free it.
 * Call it once the data is in guest RAM: it first reports all of in[] as written
 * (guest_mem_written). Stale elements (popped before a reset) are only reported and freed.
 * Does not interrupt: call virtq_notify after a batch. */
void virtq_push(struct virtq *vq, struct virtq_elem *elem, uint32_t len);
/* Put back the most recently popped element (e.g. it was too small for an rx packet), and free
 * it; the next virtq_pop returns the same chain. */
void virtq_unpop(struct virtq *vq, struct virtq_elem *elem);
/* Free without returning it to the guest (only for teardown; the guest will not see it back). */
void virtq_elem_free(struct virtq_elem *elem);
/* Interrupt the guest for this queue if used entries were added and the guest's suppression
 * (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX) allows it. */
void virtq_notify(struct virtq *vq);
/* Ask the guest to kick (true) or not (false) on new buffers: VIRTQ_USED_F_NO_NOTIFY, or
 * avail_event with EVENT_IDX. A device polling a queue disables, then re-enables and re-checks
 * virtq_empty to close the race. */
void virtq_set_notification(struct virtq *vq, bool enable);
/* True when no chain is available (or the queue is not usable). */
bool virtq_empty(struct virtq *vq);
/* The queue is enabled and the device DRIVER_OK and not broken. */
bool virtq_ready(const struct virtq *vq);

/* Copy between a flat buffer and an iovec array, starting at byte off of the iovecs.
 * Return the bytes copied (short when the iovecs end first). */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len);

/* ---- device state ---- */

/* DRIVER_OK set and not broken. */
bool virtio_dev_ready(const struct virtio_dev *vd);
static inline bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
    return (vd->guest_features >> bit) & 1;
}
/* The device config changed: bump config_generation and send a config interrupt. */
void virtio_notify_config(struct virtio_dev *vd);
/* The guest broke the protocol: set NEEDS_RESET, stop all queues, config interrupt, and log
 * "NAME: fmt" once per device type (log_once style: the guest cannot flood the log). */
void virtio_error(struct virtio_dev *vd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Full device reset as if the guest wrote status 0 (the transport calls this; also for tests). */
void virtio_dev_reset(struct virtio_dev *vd);

/* ---- -device models (registered in src/vm/device_models.c) ---- */
struct vm_device_ctx;
int virtio_rng_pci_create(struct vm_device_ctx *ctx, const char *opts);
int virtio_serial_pci_create(struct vm_device_ctx *ctx, const char *opts);
int virtconsole_create(struct vm_device_ctx *ctx, const char *opts);

/* Transport properties every virtio device accepts, QEMU's spelling: "packed=on|off" (offer
 * VIRTIO_F_RING_PACKED; default off). Returns 1 when key is one of them and was applied, 0 when
 * it is not, -EINVAL for a bad value (logged, naming vd->name or the given device name). */
int virtio_parse_common_opt(struct virtio_dev *vd, const char *device, const char *key,
                            const char *value);
