/* The modern (virtio 1.x) PCI transport: capabilities, the common/ISR/device/notify regions in
 * BAR 4, MSI-X (with irqfds) or INTx, and ioeventfd kicks. */
#include "hw/virtio/virtq.h"
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "hw/pci.h"
#include "machine/machine.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_SUBSYS_ID 0x1100 /* PCI_SUBDEVICE_ID_QEMU, as QEMU's modern devices */

/* virtio_pci_cap cfg_type */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

/* BAR 4 layout, as QEMU's. */
#define VPCI_BAR 4
#define VPCI_BAR_SIZE 0x4000
#define VPCI_COMMON_OFF 0x0000
#define VPCI_COMMON_LEN 0x38
#define VPCI_ISR_OFF 0x1000
#define VPCI_DEVICE_OFF 0x2000
#define VPCI_NOTIFY_OFF 0x3000
#define VPCI_NOTIFY_MULT 4
#define VPCI_REGION_SIZE 0x1000
#define VPCI_MSIX_BAR 1

/* Common configuration register offsets. */
#define CC_DFSELECT 0
#define CC_DF 4
#define CC_GFSELECT 8
#define CC_GF 12
#define CC_MSIX 16
#define CC_NUMQ 18
#define CC_STATUS 20
#define CC_CFGGEN 21
#define CC_Q_SELECT 22
#define CC_Q_SIZE 24
#define CC_Q_MSIX 26
#define CC_Q_ENABLE 28
#define CC_Q_NOFF 30
#define CC_Q_DESCLO 32
#define CC_Q_DESCHI 36
#define CC_Q_AVAILLO 40
#define CC_Q_AVAILHI 44
#define CC_Q_USEDLO 48
#define CC_Q_USEDHI 52

struct vpci_vector {
    int fd;          /* eventfd for the irqfd, -1 until first needed */
    bool assigned;   /* registered with the accelerator */
    uint64_t addr;
    uint32_t data;
};

struct vpci_queue_fd {
    struct virtio_pci *p;
    unsigned q;
    int fd;          /* ioeventfd, -1 when not registered */
    uint64_t addr;
};

struct virtio_pci {
    struct pci_device pci;
    struct virtio_dev *vd;
    struct machine *m;
    uint32_t dfselect, gfselect;
    uint16_t queue_sel;
    unsigned nvectors;
    struct vpci_vector *vec;
    bool no_irqfd, no_ioeventfd;
    struct vpci_queue_fd qfd[VIRTIO_MAX_QUEUES];
    unsigned cfg_cap; /* VIRTIO_PCI_CAP_PCI_CFG offset */
};

/* ---- interrupts ---- */

static void vpci_irqfd_update(struct virtio_pci *p, unsigned v)
{
    struct vpci_vector *x = &p->vec[v];
    bool want = !p->no_irqfd && pci_msix_enabled(&p->pci) && !pci_msix_vector_masked(&p->pci, v);
    uint64_t addr = 0;
    uint32_t data = 0;
    if (want && pci_msix_message(&p->pci, v, &addr, &data) < 0)
        want = false;
    if (x->assigned && (!want || addr != x->addr || data != x->data)) {
        machine_irqfd(p->m, x->fd, x->addr, x->data, false);
        x->assigned = false;
    }
    if (!want || x->assigned)
        return;
    if (x->fd < 0) {
        x->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (x->fd < 0) {
            p->no_irqfd = true;
            return;
        }
    }
    int r = machine_irqfd(p->m, x->fd, addr, data, true);
    if (r == -ENOTSUP) {
        p->no_irqfd = true;
    } else if (r == 0) {
        x->assigned = true;
        x->addr = addr;
        x->data = data;
    }
}

static void vpci_irqfd_drop_all(struct virtio_pci *p)
{
    for (unsigned v = 0; v < p->nvectors; v++) {
        if (p->vec[v].assigned)
            machine_irqfd(p->m, p->vec[v].fd, p->vec[v].addr, p->vec[v].data, false);
        p->vec[v].assigned = false;
    }
}

static void vpci_notify(void *opaque, uint16_t vector, uint8_t isr)
{
    struct virtio_pci *p = opaque;
    if (pci_msix_enabled(&p->pci)) {
        if (vector == VIRTIO_MSI_NO_VECTOR || vector >= p->nvectors ||
            !pci_bus_master_enabled(&p->pci))
            return;
        struct vpci_vector *x = &p->vec[vector];
        if (x->assigned && !pci_msix_vector_masked(&p->pci, vector)) {
            uint64_t one = 1;
            if (write(x->fd, &one, sizeof(one)) == sizeof(one))
                return;
        }
        pci_msix_notify(&p->pci, vector);
        return;
    }
    p->vd->isr |= isr;
    pci_set_irq(&p->pci, true);
}

static const struct virtio_transport_ops vpci_tops = {
    .notify = vpci_notify,
};

/* ---- ioeventfd ---- */

static void vpci_ioeventfd_cb(void *opaque, uint32_t events)
{
    struct vpci_queue_fd *f = opaque;
    uint64_t cnt;
    (void)events;
    if (f->fd < 0 || read(f->fd, &cnt, sizeof(cnt)) != sizeof(cnt))
        return;
    virtio_queue_kick(f->p->vd, f->q);
}

static void vpci_ioeventfd_del(struct virtio_pci *p, unsigned q)
{
    struct vpci_queue_fd *f = &p->qfd[q];
    if (f->fd < 0)
        return;
    machine_ioeventfd(p->m, f->addr, 2, false, f->fd, false);
    if (p->m->ev)
        evloop_del_fd(p->m->ev, f->fd);
    close(f->fd);
    f->fd = -1;
}

static void vpci_ioeventfd_add(struct virtio_pci *p, unsigned q)
{
    struct vpci_queue_fd *f = &p->qfd[q];
    struct pci_bar *bar = &p->pci.bars[VPCI_BAR];
    if (f->fd >= 0 || p->no_ioeventfd || !bar->mapped || !p->m->ev)
        return;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return;
    uint64_t addr = bar->addr + VPCI_NOTIFY_OFF + (uint64_t)q * VPCI_NOTIFY_MULT;
    int r = machine_ioeventfd(p->m, addr, 2, false, fd, true);
    if (r < 0) {
        if (r == -ENOTSUP)
            p->no_ioeventfd = true;
        close(fd);
        return;
    }
    if (evloop_add_fd(p->m->ev, fd, EPOLLIN, vpci_ioeventfd_cb, f) < 0) {
        machine_ioeventfd(p->m, addr, 2, false, fd, false);
        close(fd);
        return;
    }
    f->fd = fd;
    f->addr = addr;
}

static void vpci_ioeventfd_sync(struct virtio_pci *p)
{
    struct virtio_dev *vd = p->vd;
    for (unsigned q = 0; q < vd->nvqs; q++) {
        if ((vd->status & VIRTIO_STATUS_DRIVER_OK) && vd->vqs[q].enabled &&
            p->pci.bars[VPCI_BAR].mapped)
            vpci_ioeventfd_add(p, q);
        else
            vpci_ioeventfd_del(p, q);
    }
}

/* ---- BAR 4 registers ---- */

static uint64_t common_read(struct virtio_pci *p, uint64_t off, unsigned size)
{
    struct virtio_dev *vd = p->vd;
    struct virtq *vq = p->queue_sel < vd->nvqs ? &vd->vqs[p->queue_sel] : NULL;
    switch (off) {
    case CC_DFSELECT: return p->dfselect;
    case CC_DF: return virtio_get_host_features(vd, p->dfselect);
    case CC_GFSELECT: return p->gfselect;
    case CC_GF:
        return p->gfselect == 0   ? (uint32_t)vd->guest_features
               : p->gfselect == 1 ? (uint32_t)(vd->guest_features >> 32)
                                  : 0;
    case CC_MSIX: return vd->config_vector;
    case CC_NUMQ: return vd->nvqs;
    case CC_STATUS: return vd->status;
    case CC_CFGGEN: return vd->config_generation;
    case CC_Q_SELECT: return p->queue_sel;
    case CC_Q_SIZE: return vq ? vq->size : 0;
    case CC_Q_MSIX: return vq ? vq->msix_vector : VIRTIO_MSI_NO_VECTOR;
    case CC_Q_ENABLE: return vq ? vq->enabled : 0;
    case CC_Q_NOFF: return vq ? p->queue_sel : 0;
    case CC_Q_DESCLO: return vq ? (size == 8 ? vq->desc_gpa : (uint32_t)vq->desc_gpa) : 0;
    case CC_Q_DESCHI: return vq ? vq->desc_gpa >> 32 : 0;
    case CC_Q_AVAILLO: return vq ? (size == 8 ? vq->avail_gpa : (uint32_t)vq->avail_gpa) : 0;
    case CC_Q_AVAILHI: return vq ? vq->avail_gpa >> 32 : 0;
    case CC_Q_USEDLO: return vq ? (size == 8 ? vq->used_gpa : (uint32_t)vq->used_gpa) : 0;
    case CC_Q_USEDHI: return vq ? vq->used_gpa >> 32 : 0;
    }
    return 0;
}

static void set_lo(uint64_t *r, uint64_t v, unsigned size)
{
    *r = size == 8 ? v : (*r & 0xffffffff00000000ULL) | (uint32_t)v;
}
static void set_hi(uint64_t *r, uint64_t v)
{
    *r = (*r & 0xffffffffULL) | (uint64_t)(uint32_t)v << 32;
}

static void common_write(struct virtio_pci *p, uint64_t off, uint64_t val, unsigned size)
{
    struct virtio_dev *vd = p->vd;
    struct virtq *vq = p->queue_sel < vd->nvqs ? &vd->vqs[p->queue_sel] : NULL;
    /* Queue layout is frozen while the queue is enabled (the spec forbids changing it). */
    bool qw = vq && !vq->enabled;
    switch (off) {
    case CC_DFSELECT: p->dfselect = (uint32_t)val; break;
    case CC_GFSELECT: p->gfselect = (uint32_t)val; break;
    case CC_GF: virtio_set_guest_features(vd, p->gfselect, (uint32_t)val); break;
    case CC_MSIX:
        vd->config_vector = val < p->nvectors ? (uint16_t)val : VIRTIO_MSI_NO_VECTOR;
        break;
    case CC_STATUS: {
        uint8_t old = vd->status;
        virtio_set_status(vd, (uint8_t)val);
        if ((uint8_t)val == 0) {
            p->vd->isr = 0;
            pci_set_irq(&p->pci, false);
        }
        if (old != vd->status)
            vpci_ioeventfd_sync(p);
        break;
    }
    case CC_Q_SELECT: p->queue_sel = (uint16_t)val; break;
    case CC_Q_SIZE:
        if (qw)
            vq->size = (uint16_t)val;
        break;
    case CC_Q_MSIX:
        if (vq)
            vq->msix_vector = val < p->nvectors ? (uint16_t)val : VIRTIO_MSI_NO_VECTOR;
        break;
    case CC_Q_ENABLE:
        if (qw && (val & 1) && !vd->broken) {
            virtq_enable(vq);
            vpci_ioeventfd_sync(p);
        }
        break;
    case CC_Q_DESCLO: if (qw) set_lo(&vq->desc_gpa, val, size); break;
    case CC_Q_DESCHI: if (qw) set_hi(&vq->desc_gpa, val); break;
    case CC_Q_AVAILLO: if (qw) set_lo(&vq->avail_gpa, val, size); break;
    case CC_Q_AVAILHI: if (qw) set_hi(&vq->avail_gpa, val); break;
    case CC_Q_USEDLO: if (qw) set_lo(&vq->used_gpa, val, size); break;
    case CC_Q_USEDHI: if (qw) set_hi(&vq->used_gpa, val); break;
    }
}

/* Natural-size accesses only, as the spec requires of drivers; others read 0 / are dropped. */
static bool common_access_ok(uint64_t off, unsigned size)
{
    if (off >= VPCI_COMMON_LEN || off % size)
        return false;
    if (off < CC_MSIX)
        return size == 4;
    if (off == CC_STATUS || off == CC_CFGGEN)
        return size == 1;
    if (off < CC_Q_DESCLO)
        return size == 2;
    return size == 4 || size == 8;
}

static uint64_t vpci_bar_read(void *opaque, uint64_t off, unsigned size)
{
    struct virtio_pci *p = opaque;
    struct virtio_dev *vd = p->vd;
    if (off < VPCI_COMMON_OFF + VPCI_REGION_SIZE) {
        return common_access_ok(off, size) ? common_read(p, off, size) : 0;
    }
    if (off >= VPCI_ISR_OFF && off < VPCI_ISR_OFF + VPCI_REGION_SIZE) {
        if (off != VPCI_ISR_OFF)
            return 0;
        uint8_t v = vd->isr;
        vd->isr = 0; /* read-to-clear, and the INTx line follows */
        pci_set_irq(&p->pci, false);
        return v;
    }
    if (off >= VPCI_DEVICE_OFF && off < VPCI_DEVICE_OFF + VPCI_REGION_SIZE) {
        unsigned o = (unsigned)(off - VPCI_DEVICE_OFF);
        if (o + size > vd->config_len)
            return 0;
        if (vd->ops && vd->ops->config_read)
            vd->ops->config_read(vd, o, size);
        uint64_t v = 0;
        for (unsigned i = 0; i < size; i++)
            v |= (uint64_t)vd->config[o + i] << (8 * i);
        return v;
    }
    return 0;
}

static void vpci_bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct virtio_pci *p = opaque;
    struct virtio_dev *vd = p->vd;
    if (off < VPCI_COMMON_OFF + VPCI_REGION_SIZE) {
        if (common_access_ok(off, size))
            common_write(p, off, val, size);
        return;
    }
    if (off >= VPCI_DEVICE_OFF && off < VPCI_DEVICE_OFF + VPCI_REGION_SIZE) {
        unsigned o = (unsigned)(off - VPCI_DEVICE_OFF);
        if (o + size > vd->config_len || !vd->ops || !vd->ops->config_write)
            return;
        for (unsigned i = 0; i < size; i++)
            vd->config[o + i] = (uint8_t)(val >> (8 * i));
        vd->ops->config_write(vd, o, size);
        return;
    }
    if (off >= VPCI_NOTIFY_OFF && off < VPCI_NOTIFY_OFF + VPCI_REGION_SIZE) {
        uint64_t o = off - VPCI_NOTIFY_OFF;
        if (o % VPCI_NOTIFY_MULT == 0)
            virtio_queue_kick(vd, (unsigned)(o / VPCI_NOTIFY_MULT));
    }
}

static const struct bus_ops vpci_bar_ops = {
    .read = vpci_bar_read,
    .write = vpci_bar_write,
};

/* ---- PCI hooks ---- */

/* VIRTIO_PCI_CAP_PCI_CFG: a window into BAR 4 through config space (bar, offset, length fields
 * written by the driver, data at +16). */
static bool cfg_window(struct virtio_pci *p, unsigned off, unsigned size, uint64_t *bar_off,
                       unsigned *len)
{
    unsigned c = p->cfg_cap;
    if (!c || off != c + 16 || size != 4)
        return false;
    uint32_t o = pci_get_long(&p->pci, c + 8), l = pci_get_long(&p->pci, c + 12);
    if (pci_get_byte(&p->pci, c + 4) != VPCI_BAR || (l != 1 && l != 2 && l != 4) || o % l ||
        o >= VPCI_BAR_SIZE)
        return false;
    *bar_off = o;
    *len = l;
    return true;
}

static void vpci_config_read(struct pci_device *d, unsigned off, unsigned size, uint32_t *val)
{
    struct virtio_pci *p = d->opaque;
    uint64_t o;
    unsigned l;
    if (cfg_window(p, off, size, &o, &l))
        *val = (uint32_t)vpci_bar_read(p, o, l);
}

static void vpci_config_write(struct pci_device *d, unsigned off, unsigned size, uint32_t val)
{
    struct virtio_pci *p = d->opaque;
    uint64_t o;
    unsigned l;
    if (cfg_window(p, off, size, &o, &l))
        vpci_bar_write(p, o, l == 4 ? val : val & ((1u << (8 * l)) - 1), l);
}

static void vpci_reset(struct pci_device *d)
{
    struct virtio_pci *p = d->opaque;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        vpci_ioeventfd_del(p, q);
    vpci_irqfd_drop_all(p);
    p->dfselect = p->gfselect = 0;
    p->queue_sel = 0;
    virtio_dev_reset(p->vd);
}

static void vpci_bar_map(struct pci_device *d, unsigned bar, uint64_t addr, bool mapped)
{
    struct virtio_pci *p = d->opaque;
    (void)addr;
    if (bar != VPCI_BAR)
        return;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        vpci_ioeventfd_del(p, q);
    if (mapped)
        vpci_ioeventfd_sync(p);
}

static void vpci_msix_changed(struct pci_device *d, unsigned first, unsigned last)
{
    struct virtio_pci *p = d->opaque;
    for (unsigned v = first; v <= last && v < p->nvectors; v++)
        vpci_irqfd_update(p, v);
}

static void vpci_release(struct pci_device *d)
{
    struct virtio_pci *p = d->opaque;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        vpci_ioeventfd_del(p, q);
    vpci_irqfd_drop_all(p);
    for (unsigned v = 0; v < p->nvectors; v++)
        if (p->vec[v].fd >= 0)
            close(p->vec[v].fd);
    free(p->vec);
    struct virtio_dev *vd = p->vd;
    free(p);
    if (vd->ops && vd->ops->release)
        vd->ops->release(vd);
}

static const struct pci_device_ops vpci_ops = {
    .config_read = vpci_config_read,
    .config_write = vpci_config_write,
    .reset = vpci_reset,
    .bar_map = vpci_bar_map,
    .msix_changed = vpci_msix_changed,
    .release = vpci_release,
};

static int add_vcap(struct virtio_pci *p, uint8_t type, unsigned len, uint32_t offset,
                    uint32_t length)
{
    int c = pci_add_capability(&p->pci, PCI_CAP_ID_VNDR, len);
    if (c < 0)
        return c;
    uint8_t *cfg = p->pci.config;
    cfg[c + 2] = (uint8_t)len;
    cfg[c + 3] = type;
    cfg[c + 4] = VPCI_BAR;
    cfg[c + 5] = 0;
    pci_set_long(cfg, (unsigned)c + 8, offset);
    pci_set_long(cfg, (unsigned)c + 12, length);
    return c;
}

static uint32_t class_for(uint16_t type)
{
    switch (type) {
    case VIRTIO_ID_NET: return 0x020000;
    case VIRTIO_ID_BLOCK: return 0x010000;
    case VIRTIO_ID_CONSOLE: return 0x078000;
    default: return 0x00ff00;
    }
}

int virtio_pci_create(struct machine *m, struct pci_host *h, struct virtio_dev *vd,
                      const char *name, int slot)
{
    struct virtio_pci *p = xzalloc(sizeof(*p));
    p->vd = vd;
    p->m = m;
    vd->name = name;
    vd->m = m;
    vd->tops = &vpci_tops;
    vd->transport = p;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        p->qfd[q] = (struct vpci_queue_fd){p, q, -1, 0};
    p->nvectors = vd->nvqs + 1;
    p->vec = xzalloc(sizeof(*p->vec) * p->nvectors);
    for (unsigned v = 0; v < p->nvectors; v++)
        p->vec[v].fd = -1;

    struct pci_device *d = &p->pci;
    pci_device_init(d, name, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + vd->device_id),
                    class_for(vd->device_id), &vpci_ops);
    d->opaque = p;
    pci_device_set_subsystem(d, VIRTIO_PCI_VENDOR, VIRTIO_PCI_SUBSYS_ID);
    pci_device_set_revision(d, 1);
    pci_device_set_irq_pin(d, 1);
    int r = pci_bar_init(d, VPCI_BAR, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, VPCI_BAR_SIZE,
                         &vpci_bar_ops, p);
    if (r >= 0)
        r = pci_msix_init(d, p->nvectors, VPCI_MSIX_BAR, 0, 0x800);
    if (r >= 0)
        r = add_vcap(p, VIRTIO_PCI_CAP_COMMON_CFG, 16, VPCI_COMMON_OFF, VPCI_REGION_SIZE);
    if (r >= 0)
        r = add_vcap(p, VIRTIO_PCI_CAP_ISR_CFG, 16, VPCI_ISR_OFF, VPCI_REGION_SIZE);
    if (r >= 0)
        r = add_vcap(p, VIRTIO_PCI_CAP_DEVICE_CFG, 16, VPCI_DEVICE_OFF, VPCI_REGION_SIZE);
    if (r >= 0) {
        r = add_vcap(p, VIRTIO_PCI_CAP_NOTIFY_CFG, 20, VPCI_NOTIFY_OFF, VPCI_REGION_SIZE);
        if (r >= 0)
            pci_set_long(d->config, (unsigned)r + 16, VPCI_NOTIFY_MULT);
    }
    if (r >= 0) {
        r = add_vcap(p, VIRTIO_PCI_CAP_PCI_CFG, 20, 0, 0);
        if (r >= 0) {
            unsigned c = (unsigned)r;
            p->cfg_cap = c;
            d->config[c + 4] = 0;
            d->wmask[c + 4] = 0xff;
            pci_set_long(d->wmask, c + 8, 0xffffffff);
            pci_set_long(d->wmask, c + 12, 0xffffffff);
            pci_set_long(d->wmask, c + 16, 0xffffffff);
        }
    }
    if (r < 0) {
        log_error("%s: cannot set up the PCI function: %s", name, strerror(-r));
        free(p->vec);
        free(p);
        return r;
    }
    r = pci_device_register(h, d, slot);
    if (r < 0) {
        log_error("%s: cannot plug into the PCI bus: %s", name,
                  r == -ENOSPC ? "no free slot" : strerror(-r));
        free(p->vec);
        free(p);
        return r;
    }
    return 0;
}
