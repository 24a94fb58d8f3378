/* Internals shared by the virtio core, the split-ring engine, the PCI transport and unit tests. */
#pragma once
#include "hw/virtio/virtio.h"

/* Split ring layout (virtio 1.x 2.7). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* Bytes of each ring part for a queue of size entries (with the EVENT_IDX trailer). */
static inline uint64_t virtq_desc_bytes(unsigned size) { return 16ULL * size; }
static inline uint64_t virtq_avail_bytes(unsigned size) { return 6ULL + 2ULL * size; }
static inline uint64_t virtq_used_bytes(unsigned size) { return 6ULL + 8ULL * size; }

/* The EVENT_IDX test: did the index move past event going from old to new? */
static inline bool virtq_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* Back to power-on: disabled, size = max_size, no vector, indices 0, generation bumped. */
void virtq_reset(struct virtq *vq);
/* The guest wrote queue_enable = 1: check size and ring addresses (alignment, inside RAM) and map
 * them. 0, or -EINVAL after virtio_error (the device is NEEDS_RESET). */
int virtq_enable(struct virtq *vq);

/* Transport -> core. */
void virtio_set_status(struct virtio_dev *vd, uint8_t val);
void virtio_set_guest_features(struct virtio_dev *vd, unsigned sel, uint32_t val);
uint32_t virtio_get_host_features(const struct virtio_dev *vd, unsigned sel);
/* The guest notified queue q: dispatch to the device if the queue is usable. */
void virtio_queue_kick(struct virtio_dev *vd, unsigned q);
/* Core -> transport: interrupt for vq (its MSI-X vector, or ISR bit 0 + INTx). */
void virtio_queue_raise(struct virtq *vq);
