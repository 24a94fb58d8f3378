/* The virtio device core: feature negotiation, the status state machine, reset, errors. */
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtq.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define VIRTIO_CORE_FEATURES                                                                       \
    (VIRTIO_F_BIT(VIRTIO_F_VERSION_1) | VIRTIO_F_BIT(VIRTIO_F_RING_INDIRECT_DESC) |                \
     VIRTIO_F_BIT(VIRTIO_F_RING_EVENT_IDX))

void virtio_dev_init(struct virtio_dev *vd, uint16_t device_id, const struct virtio_dev_ops *ops,
                     void *opaque, unsigned config_len)
{
    memset(vd, 0, sizeof(*vd));
    vd->name = "virtio";
    vd->device_id = device_id;
    vd->ops = ops;
    vd->opaque = opaque;
    vd->host_features = VIRTIO_CORE_FEATURES;
    if (config_len > 4096)
        config_len = 4096;
    vd->config_len = config_len;
    vd->config = xzalloc(config_len ? config_len : 1);
    vd->config_vector = VIRTIO_MSI_NO_VECTOR;
}

void virtio_dev_destroy(struct virtio_dev *vd)
{
    for (unsigned i = 0; i < vd->nvqs; i++)
        vd->vqs[i].gen++;
    free(vd->config);
    vd->config = NULL;
}

int virtio_add_queue(struct virtio_dev *vd, unsigned max_size)
{
    if (vd->nvqs >= VIRTIO_MAX_QUEUES)
        return -ENOSPC;
    if (max_size < 2 || max_size > VIRTQ_MAX_SIZE || (max_size & (max_size - 1)))
        return -EINVAL;
    unsigned q = vd->nvqs++;
    struct virtq *vq = &vd->vqs[q];
    memset(vq, 0, sizeof(*vq));
    vq->vdev = vd;
    vq->index = q;
    vq->max_size = (uint16_t)max_size;
    virtq_reset(vq);
    return (int)q;
}

bool virtio_dev_ready(const struct virtio_dev *vd)
{
    return (vd->status & VIRTIO_STATUS_DRIVER_OK) && !vd->broken;
}

static void virtio_raise(struct virtio_dev *vd, uint16_t vector, uint8_t isr)
{
    if (vd->tops)
        vd->tops->notify(vd->transport, vector, isr);
}

void virtio_notify_config(struct virtio_dev *vd)
{
    vd->config_generation++;
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        virtio_raise(vd, vd->config_vector, 2);
}

void virtio_error(struct virtio_dev *vd, const char *fmt, ...)
{
    if (vd->broken)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One line per VMM process: a hostile guest can trigger this in a loop. */
    log_once(LOG_WARN, "%s: guest driver error, device needs reset: %s (further errors not logged)",
             vd->name, msg);
    vd->broken = true;
    vd->status |= VIRTIO_STATUS_NEEDS_RESET;
    if (vd->status & VIRTIO_STATUS_DRIVER_OK) {
        vd->config_generation++;
        virtio_raise(vd, vd->config_vector, 2);
    }
}

void virtio_dev_reset(struct virtio_dev *vd)
{
    for (unsigned i = 0; i < vd->nvqs; i++)
        virtq_reset(&vd->vqs[i]);
    vd->status = 0;
    vd->guest_features = 0;
    vd->isr = 0;
    vd->config_vector = VIRTIO_MSI_NO_VECTOR;
    vd->broken = false;
    if (vd->ops && vd->ops->reset)
        vd->ops->reset(vd);
}

void virtio_set_status(struct virtio_dev *vd, uint8_t val)
{
    if (val == 0) {
        virtio_dev_reset(vd);
        return;
    }
    uint8_t old = vd->status;
    /* NEEDS_RESET is the device's bit: the driver can neither set nor clear it. */
    val = (uint8_t)((val & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET));
    if ((val & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        uint64_t f = vd->guest_features;
        bool ok = (f & VIRTIO_F_BIT(VIRTIO_F_VERSION_1)) && !(f & ~vd->host_features);
        if (ok && vd->ops && vd->ops->features_ok && vd->ops->features_ok(vd, f) < 0)
            ok = false;
        if (!ok)
            val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    }
    /* DRIVER_OK without FEATURES_OK is a legacy driver, which this modern-only device rejects. */
    if ((val & VIRTIO_STATUS_DRIVER_OK) && !(val & VIRTIO_STATUS_FEATURES_OK))
        val &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
    vd->status = val;
    if (val != old && vd->ops && vd->ops->status_changed)
        vd->ops->status_changed(vd, old, val);
}

void virtio_set_guest_features(struct virtio_dev *vd, unsigned sel, uint32_t val)
{
    /* Features are fixed once FEATURES_OK is set. */
    if (vd->status & VIRTIO_STATUS_FEATURES_OK)
        return;
    if (sel == 0)
        vd->guest_features = (vd->guest_features & 0xffffffff00000000ULL) | val;
    else if (sel == 1)
        vd->guest_features = (vd->guest_features & 0xffffffffULL) | (uint64_t)val << 32;
}

uint32_t virtio_get_host_features(const struct virtio_dev *vd, unsigned sel)
{
    if (sel == 0)
        return (uint32_t)vd->host_features;
    if (sel == 1)
        return (uint32_t)(vd->host_features >> 32);
    return 0;
}

void virtio_queue_kick(struct virtio_dev *vd, unsigned q)
{
    if (q >= vd->nvqs || !virtq_ready(&vd->vqs[q]))
        return;
    if (vd->ops && vd->ops->queue_notify)
        vd->ops->queue_notify(vd, q);
}

void virtio_queue_raise(struct virtq *vq)
{
    virtio_raise(vq->vdev, vq->msix_vector, 1);
}

int virtio_parse_common_opt(struct virtio_dev *vd, const char *device, const char *key,
                            const char *value)
{
    if (strcmp(key, "packed"))
        return 0;
    static const char *const on[] = {"on", "yes", "true"}, *const off[] = {"off", "no", "false"};
    for (unsigned i = 0; i < ARRAY_SIZE(on); i++) {
        if (!strcasecmp(value, on[i])) {
            vd->host_features |= VIRTIO_F_BIT(VIRTIO_F_RING_PACKED);
            return 1;
        }
        if (!strcasecmp(value, off[i])) {
            vd->host_features &= ~VIRTIO_F_BIT(VIRTIO_F_RING_PACKED);
            return 1;
        }
    }
    log_error("-device %s: packed takes on or off, not '%s'", device ? device : vd->name, value);
    return -EINVAL;
}
