/* Guest-side modern virtio-pci driver for test guests (see virtio.h). */
#include "virtio.h"
#include "irq.h"
#include "rt.h"

#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIO_NO_VECTOR 0xffff

/* ---- mapping BARs above 4 GiB (the boot page tables identity-map only the first 4 GiB) ---- */

static uint64_t high_pd[4][512] __attribute__((aligned(4096)));
static unsigned nhigh_pd;

static int map_gib(uint64_t addr)
{
    uint64_t g = addr >> 30;
    if (g < 4)
        return 0;
    if (g >= 512)
        return -1;
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t *pml4 = (uint64_t *)(uintptr_t)(cr3 & 0x000ffffffffff000ULL);
    uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4[0] & 0x000ffffffffff000ULL);
    if (pdpt[g] & 1)
        return 0;
    if (nhigh_pd >= RT_ARRAY_SIZE(high_pd))
        return -1;
    uint64_t *pd = high_pd[nhigh_pd++];
    for (unsigned i = 0; i < 512; i++)
        pd[i] = ((g << 30) + ((uint64_t)i << 21)) | 0x9B; /* P RW PWT PCD PS: uncached 2 MiB */
    pdpt[g] = (uint64_t)(uintptr_t)pd | 0x3;
    __asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
    return 0;
}

/* ---- finding the device ---- */

struct find_ctx {
    uint16_t want;
    unsigned nth, seen;
    bool found;
    struct pci_dev_info info;
};

static void find_cb(const struct pci_dev_info *i, void *opaque)
{
    struct find_ctx *c = opaque;
    if (c->found || i->vendor != 0x1af4 || i->device != c->want)
        return;
    if (c->seen++ == c->nth) {
        c->found = true;
        c->info = *i;
    }
}

static uint32_t cfg32(struct vio_dev *d, unsigned off)
{
    return pci_cf8_read32(d->bus, d->dev, d->fn, off);
}

int vio_find(struct vio_dev *d, unsigned type, unsigned nth)
{
    memset(d, 0, sizeof(*d));
    struct find_ctx c = {.want = (uint16_t)(0x1040 + type), .nth = nth};
    pci_scan_bus(0, find_cb, &c);
    if (!c.found) {
        rt_printf("virtio: no device of type %u (#%u)\n", type, nth);
        return -1;
    }
    d->bus = c.info.bus;
    d->dev = c.info.dev;
    d->fn = c.info.fn;
    d->device_id = c.info.device;
    for (unsigned b = 0; b < 6; b++) {
        uint32_t lo = cfg32(d, 0x10 + 4 * b);
        if (lo & 1) {
            d->bar[b] = lo & ~3u;
            continue;
        }
        d->bar[b] = lo & ~0xfu;
        if (((lo >> 1) & 3) == 2 && b < 5) {
            d->bar[b] |= (uint64_t)cfg32(d, 0x10 + 4 * (b + 1)) << 32;
            b++;
        }
    }
    /* Memory decoding and bus mastering (DMA and MSI-X need it). */
    pci_cf8_write16(d->bus, d->dev, d->fn, 0x04,
                    pci_cf8_read16(d->bus, d->dev, d->fn, 0x04) | 0x6);
    if (!(pci_cf8_read16(d->bus, d->dev, d->fn, 0x06) & 0x10)) {
        rt_printf("virtio: %02x.%u has no capability list\n", d->dev, d->fn);
        return -1;
    }
    unsigned ptr = pci_cf8_read8(d->bus, d->dev, d->fn, 0x34) & 0xfc;
    for (unsigned n = 0; ptr && n < 48; n++) {
        uint8_t id = pci_cf8_read8(d->bus, d->dev, d->fn, ptr);
        if (id == 0x11) {
            d->msix_cap = (uint8_t)ptr;
            d->msix_size = (uint16_t)((pci_cf8_read16(d->bus, d->dev, d->fn, ptr + 2) & 0x7ff) + 1);
            uint32_t t = cfg32(d, ptr + 4);
            d->msix_table = d->bar[t & 7] + (t & ~7u);
        } else if (id == 0x09) {
            uint8_t type = pci_cf8_read8(d->bus, d->dev, d->fn, ptr + 3);
            uint8_t bar = pci_cf8_read8(d->bus, d->dev, d->fn, ptr + 4);
            uint32_t off = cfg32(d, ptr + 8), len = cfg32(d, ptr + 12);
            if (bar < 6 && type >= 1 && type <= 4) {
                uint64_t a = d->bar[bar] + off;
                if (!d->bar[bar] || map_gib(a) < 0) {
                    rt_printf("virtio: BAR%u at %lx is unusable\n", bar, d->bar[bar]);
                    return -1;
                }
                if (type == VIRTIO_PCI_CAP_COMMON_CFG && !d->common)
                    d->common = (volatile struct virtio_pci_common_cfg *)(uintptr_t)a;
                else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG && !d->notify_base) {
                    d->notify_base = a;
                    d->notify_mult = cfg32(d, ptr + 16);
                } else if (type == VIRTIO_PCI_CAP_ISR_CFG && !d->isr)
                    d->isr = (volatile uint8_t *)(uintptr_t)a;
                else if (type == VIRTIO_PCI_CAP_DEVICE_CFG && !d->devcfg) {
                    d->devcfg = (volatile uint8_t *)(uintptr_t)a;
                    d->devcfg_len = len;
                }
            }
        }
        ptr = pci_cf8_read8(d->bus, d->dev, d->fn, ptr + 1) & 0xfc;
    }
    if (!d->common || !d->notify_base || !d->isr) {
        rt_printf("virtio: %02x.%u lacks common/notify/ISR capabilities\n", d->dev, d->fn);
        return -1;
    }
    for (unsigned q = 0; q < VIO_MAX_QUEUES; q++)
        d->q[q].msix_vector = -1;
    return 0;
}

/* ---- status and features ---- */

uint8_t vio_status(struct vio_dev *d)
{
    return d->common->device_status;
}

void vio_set_status(struct vio_dev *d, uint8_t status)
{
    d->common->device_status = status;
}

void vio_reset(struct vio_dev *d)
{
    d->common->device_status = 0;
    for (unsigned i = 0; i < 1000 && d->common->device_status; i++)
        cpu_relax();
    for (unsigned q = 0; q < VIO_MAX_QUEUES; q++) {
        d->q[q].size = 0;
        d->q[q].msix_vector = -1;
    }
}

int vio_negotiate(struct vio_dev *d, uint64_t want)
{
    vio_reset(d);
    vio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    vio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    d->common->device_feature_select = 0;
    uint64_t offered = d->common->device_feature;
    d->common->device_feature_select = 1;
    offered |= (uint64_t)d->common->device_feature << 32;
    if (!(offered & (1ULL << VIRTIO_F_VERSION_1))) {
        rt_printf("virtio: device does not offer VERSION_1 (%lx)\n", offered);
        return -1;
    }
    uint64_t f = offered & (want | (1ULL << VIRTIO_F_VERSION_1));
    d->common->driver_feature_select = 0;
    d->common->driver_feature = (uint32_t)f;
    d->common->driver_feature_select = 1;
    d->common->driver_feature = (uint32_t)(f >> 32);
    vio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    if (!(vio_status(d) & VIRTIO_STATUS_FEATURES_OK)) {
        rt_printf("virtio: FEATURES_OK refused for %lx\n", f);
        return -1;
    }
    d->features = f;
    return 0;
}

void vio_driver_ok(struct vio_dev *d)
{
    vio_set_status(d, vio_status(d) | VIRTIO_STATUS_DRIVER_OK);
}

/* ---- queues ---- */

/* One page per (device, queue): desc at 0, avail at 1 KiB, used at 2 KiB, an indirect table at
 * 3 KiB. Reused across resets. */
#define VIO_POOL_PAGES 64
static uint8_t vio_pool[VIO_POOL_PAGES][4096] __attribute__((aligned(4096)));
static unsigned vio_pool_used;

static inline void wmb(void) { __asm__ volatile("sfence" ::: "memory"); }
static inline void mb(void) { __asm__ volatile("mfence" ::: "memory"); }

int vio_queue_setup(struct vio_dev *d, unsigned q, uint16_t size)
{
    struct vio_queue *vq = &d->q[q];
    if (q >= VIO_MAX_QUEUES || size > VIO_QSIZE_MAX || !size || (size & (size - 1)))
        return -1;
    d->common->queue_select = (uint16_t)q;
    uint16_t max = d->common->queue_size;
    if (max == 0 || size > max) {
        rt_printf("virtio: queue %u has %u entries, wanted %u\n", q, max, size);
        return -1;
    }
    if (!vq->desc) {
        if (vio_pool_used >= VIO_POOL_PAGES) {
            rt_printf("virtio: out of ring pages (%u queues set up since boot)\n", VIO_POOL_PAGES);
            return -1;
        }
        uint8_t *page = vio_pool[vio_pool_used++];
        vq->desc = (volatile struct virtq_desc *)page;
        vq->avail = (volatile uint16_t *)(page + 1024);
        vq->used = page + 2048;
    }
    memset((void *)vq->desc, 0, 4096);
    vq->packed = d->features & (1ULL << VIRTIO_F_RING_PACKED);
    vq->avail_wrap = vq->used_wrap = true;
    vq->size = size;
    vq->next_free = 0;
    vq->avail_idx = 0;
    vq->last_used = 0;
    d->common->queue_size = size;
    d->common->queue_desc = (uint64_t)(uintptr_t)vq->desc;
    d->common->queue_driver = (uint64_t)(uintptr_t)vq->avail;
    d->common->queue_device = (uint64_t)(uintptr_t)vq->used;
    vq->notify_addr = d->notify_base + (uint64_t)d->common->queue_notify_off * d->notify_mult;
    d->common->queue_enable = 1;
    return d->common->queue_enable == 1 ? 0 : -1;
}

int vio_setup_msix(struct vio_dev *d, int q, unsigned entry, uint8_t idt_vector)
{
    if (!d->msix_cap || entry >= d->msix_size)
        return -1;
    irq_init();
    uint64_t e = d->msix_table + 16ULL * entry;
    mmio_write32(e, (uint32_t)msi_addr_bsp());
    mmio_write32(e + 4, (uint32_t)(msi_addr_bsp() >> 32));
    mmio_write32(e + 8, msi_data(idt_vector));
    mmio_write32(e + 12, 0);
    uint16_t ctl = pci_cf8_read16(d->bus, d->dev, d->fn, d->msix_cap + 2);
    pci_cf8_write16(d->bus, d->dev, d->fn, d->msix_cap + 2, (uint16_t)((ctl | 0x8000) & ~0x4000));
    if (q < 0) {
        d->common->msix_config = (uint16_t)entry;
        return d->common->msix_config == entry ? 0 : -1;
    }
    d->common->queue_select = (uint16_t)q;
    d->common->queue_msix_vector = (uint16_t)entry;
    if (d->common->queue_msix_vector != entry)
        return -1;
    d->q[q].msix_vector = idt_vector;
    return 0;
}

void vio_kick(struct vio_dev *d, unsigned q)
{
    mb();
    mmio_write16(d->q[q].notify_addr, (uint16_t)q);
}

void vio_publish(struct vio_dev *d, unsigned q, uint16_t head)
{
    struct vio_queue *vq = &d->q[q];
    vq->avail[2 + (vq->avail_idx % vq->size)] = head;
    /* used_event (EVENT_IDX): interrupt as soon as anything past what we consumed is used. */
    vq->avail[2 + vq->size] = vq->last_used;
    wmb();
    vq->avail_idx++;
    vq->avail[1] = vq->avail_idx;
    vio_kick(d, q);
}

/* ---- packed rings ---- */

#define PACKED_F_AVAIL (1u << 7)
#define PACKED_F_USED (1u << 15)

static void packed_write(struct vio_queue *vq, unsigned pos, uint64_t addr, uint32_t len,
                         uint16_t id, uint16_t flags, bool wrap, bool publish)
{
    volatile uint8_t *e = (volatile uint8_t *)vq->desc + 16 * pos;
    *(volatile uint64_t *)e = addr;
    *(volatile uint32_t *)(e + 8) = len;
    *(volatile uint16_t *)(e + 12) = id;
    flags |= wrap ? PACKED_F_AVAIL : PACKED_F_USED;
    if (publish)
        wmb();
    *(volatile uint16_t *)(e + 14) = flags;
}

/* Chain of n ring entries (or one indirect entry when table != NULL); the head's flags go last. */
static int packed_submit(struct vio_dev *d, unsigned q, const struct vio_buf *bufs, unsigned n,
                         volatile uint8_t *table)
{
    struct vio_queue *vq = &d->q[q];
    uint16_t id = vq->next_free;
    unsigned ring_n = table ? 1 : n;
    uint16_t head_flags = 0;
    bool head_wrap = vq->avail_wrap;
    for (unsigned i = 0; i < ring_n; i++) {
        uint64_t addr = table ? (uint64_t)(uintptr_t)table : (uint64_t)(uintptr_t)bufs[i].addr;
        uint32_t len = table ? 16 * n : bufs[i].len;
        uint16_t flags = table ? VIRTQ_DESC_F_INDIRECT
                               : (uint16_t)((bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                                            (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        if (i == 0) {
            head_flags = flags;
            volatile uint8_t *e = (volatile uint8_t *)vq->desc + 16 * vq->next_free;
            *(volatile uint64_t *)e = addr;
            *(volatile uint32_t *)(e + 8) = len;
            *(volatile uint16_t *)(e + 12) = id;
        } else {
            packed_write(vq, vq->next_free, addr, len, id, flags, vq->avail_wrap, false);
        }
        if (++vq->next_free == vq->size) {
            vq->next_free = 0;
            vq->avail_wrap = !vq->avail_wrap;
        }
    }
    vq->chainlen[id] = (uint16_t)ring_n;
    volatile uint8_t *h = (volatile uint8_t *)vq->desc + 16 * id;
    wmb();
    *(volatile uint16_t *)(h + 14) =
        (uint16_t)(head_flags | (head_wrap ? PACKED_F_AVAIL : PACKED_F_USED));
    vio_kick(d, q);
    return id;
}

int vio_submit(struct vio_dev *d, unsigned q, const struct vio_buf *bufs, unsigned n)
{
    struct vio_queue *vq = &d->q[q];
    if (!vq->size || !n || n > vq->size)
        return -1;
    if (vq->packed)
        return packed_submit(d, q, bufs, n, NULL);
    uint16_t head = vq->next_free;
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % vq->size);
        vq->desc[idx].addr = (uint64_t)(uintptr_t)bufs[i].addr;
        vq->desc[idx].len = bufs[i].len;
        vq->desc[idx].flags = (uint16_t)((bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                                         (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        vq->desc[idx].next = (uint16_t)((idx + 1) % vq->size);
    }
    vq->next_free = (uint16_t)((head + n) % vq->size);
    vio_publish(d, q, head);
    return head;
}

int vio_submit_indirect(struct vio_dev *d, unsigned q, const struct vio_buf *bufs, unsigned n)
{
    struct vio_queue *vq = &d->q[q];
    if (!vq->size || !n || n > 64)
        return -1;
    volatile struct virtq_desc *t = (volatile struct virtq_desc *)((uint8_t *)vq->desc + 3072);
    if (vq->packed) {
        volatile uint8_t *pt = (volatile uint8_t *)t;
        for (unsigned i = 0; i < n; i++) {
            *(volatile uint64_t *)(pt + 16 * i) = (uint64_t)(uintptr_t)bufs[i].addr;
            *(volatile uint32_t *)(pt + 16 * i + 8) = bufs[i].len;
            *(volatile uint16_t *)(pt + 16 * i + 12) = 0;
            *(volatile uint16_t *)(pt + 16 * i + 14) = bufs[i].write ? VIRTQ_DESC_F_WRITE : 0;
        }
        return packed_submit(d, q, bufs, n, pt);
    }
    for (unsigned i = 0; i < n; i++) {
        t[i].addr = (uint64_t)(uintptr_t)bufs[i].addr;
        t[i].len = bufs[i].len;
        t[i].flags = (uint16_t)((bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                                (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        t[i].next = (uint16_t)(i + 1);
    }
    uint16_t head = vq->next_free;
    vq->desc[head].addr = (uint64_t)(uintptr_t)t;
    vq->desc[head].len = 16 * n;
    vq->desc[head].flags = VIRTQ_DESC_F_INDIRECT;
    vq->desc[head].next = 0;
    vq->next_free = (uint16_t)((head + 1) % vq->size);
    vio_publish(d, q, head);
    return head;
}

int vio_wait_used(struct vio_dev *d, unsigned q, uint32_t *id, uint32_t *len, unsigned ms)
{
    struct vio_queue *vq = &d->q[q];
    volatile uint16_t *used_idx = (volatile uint16_t *)(vq->used + 2);
    uint32_t start = acpi_pm_timer_read();
    /* The PM timer bounds the wait; the spin count is only a backstop (and the clock when there
     * is no PM timer), generous because a software CPU spins far faster than KVM here. */
    unsigned max_spins = acpi.pm_tmr ? 100000000u : 100000u;
    for (unsigned spins = 0; spins < max_spins; spins++) {
        uint32_t seen = vq->msix_vector >= 0 ? irq_count((uint8_t)vq->msix_vector) : 0;
        if (vq->packed) {
            volatile uint8_t *e = (volatile uint8_t *)vq->desc + 16 * vq->last_used;
            uint16_t fl = *(volatile uint16_t *)(e + 14);
            if (!!(fl & PACKED_F_AVAIL) == vq->used_wrap && !!(fl & PACKED_F_USED) == vq->used_wrap) {
                mb();
                uint16_t bid = *(volatile uint16_t *)(e + 12);
                if (id)
                    *id = bid;
                if (len)
                    *len = *(volatile uint32_t *)(e + 8);
                unsigned adv = bid < VIO_QSIZE_MAX && vq->chainlen[bid] ? vq->chainlen[bid] : 1;
                vq->last_used = (uint16_t)(vq->last_used + adv);
                if (vq->last_used >= vq->size) {
                    vq->last_used = (uint16_t)(vq->last_used - vq->size);
                    vq->used_wrap = !vq->used_wrap;
                }
                return 0;
            }
        } else if (*used_idx != vq->last_used) {
            mb();
            volatile uint32_t *e = (volatile uint32_t *)(vq->used + 4 + 8 * (vq->last_used % vq->size));
            if (id)
                *id = e[0];
            if (len)
                *len = e[1];
            vq->last_used++;
            return 0;
        }
        uint32_t elapsed = acpi.pm_tmr ? ((acpi_pm_timer_read() - start) & 0xffffff) / 3580 : spins / 100;
        if (elapsed >= ms)
            return -1;
        if (vq->msix_vector >= 0)
            irq_wait((uint8_t)vq->msix_vector, seen + 1, ms - elapsed);
        else
            cpu_relax();
    }
    return -1;
}

uint8_t vio_cfg_read8(struct vio_dev *d, unsigned off) { return d->devcfg[off]; }
uint16_t vio_cfg_read16(struct vio_dev *d, unsigned off) { return *(volatile uint16_t *)(d->devcfg + off); }
uint32_t vio_cfg_read32(struct vio_dev *d, unsigned off) { return *(volatile uint32_t *)(d->devcfg + off); }
uint8_t vio_isr(struct vio_dev *d) { return *d->isr; }
