/* Split virtqueues: validating descriptor chains from an untrusted guest, used ring, EVENT_IDX. */
#include "hw/virtio/virtq.h"
#include "base/util.h"
#include "machine/machine.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Guest RAM is shared with running vCPUs: every ring access is a single atomic load or store. */
static inline uint16_t ld16(const void *p)
{
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}
static inline void st16(void *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}
static inline void st32(void *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELAXED);
}

#define AVAIL_FLAGS(vq) ((uint8_t *)(vq)->avail)
#define AVAIL_IDX(vq) ((uint8_t *)(vq)->avail + 2)
#define AVAIL_RING(vq, i) ((uint8_t *)(vq)->avail + 4 + 2 * (i))
#define USED_EVENT(vq) ((uint8_t *)(vq)->avail + 4 + 2 * (vq)->size)
#define USED_FLAGS(vq) ((uint8_t *)(vq)->used)
#define USED_IDX(vq) ((uint8_t *)(vq)->used + 2)
#define USED_RING(vq, i) ((uint8_t *)(vq)->used + 4 + 8 * (i))
#define AVAIL_EVENT(vq) ((uint8_t *)(vq)->used + 4 + 8 * (vq)->size)

void virtq_reset(struct virtq *vq)
{
    vq->size = vq->max_size;
    vq->enabled = false;
    vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
    vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
    vq->desc = vq->avail = vq->used = NULL;
    vq->last_avail_idx = vq->used_idx = vq->signalled_used = 0;
    vq->signalled_used_valid = false;
    vq->notify_enabled = true;
    vq->gen++;
    vq->inflight = 0;
    vq->packed = false;
    vq->avail_wrap = vq->used_wrap = true;
    vq->used_pending = false;
}

static struct guest_mem *vq_mem(const struct virtq *vq)
{
    return &vq->vdev->m->mem;
}

static int virtq_enable_packed(struct virtq *vq)
{
    struct virtio_dev *vd = vq->vdev;
    unsigned n = vq->size;
    /* Packed rings need no power-of-two size. */
    if (n == 0 || n > vq->max_size) {
        virtio_error(vd, "queue %u: size %u is not in 1..%u", vq->index, n, vq->max_size);
        return -EINVAL;
    }
    if ((vq->desc_gpa & 15) || (vq->avail_gpa & 3) || (vq->used_gpa & 3)) {
        virtio_error(vd, "queue %u: misaligned packed ring", vq->index);
        return -EINVAL;
    }
    struct guest_mem *mem = vq_mem(vq);
    void *d = guest_mem_ptr(mem, vq->desc_gpa, virtq_desc_bytes(n));
    void *a = guest_mem_ptr(mem, vq->avail_gpa, 4);
    void *u = guest_mem_ptr(mem, vq->used_gpa, 4);
    if (!d || !a || !u) {
        virtio_error(vd, "queue %u: packed ring outside guest RAM", vq->index);
        return -EINVAL;
    }
    vq->desc = d;
    vq->avail = a;
    vq->used = u;
    vq->packed = true;
    vq->enabled = true;
    vq->last_avail_idx = vq->used_idx = 0;
    vq->avail_wrap = vq->used_wrap = true;
    vq->signalled_used_valid = false;
    return 0;
}

int virtq_enable(struct virtq *vq)
{
    struct virtio_dev *vd = vq->vdev;
    unsigned n = vq->size;
    if (virtio_has_feature(vd, VIRTIO_F_RING_PACKED))
        return virtq_enable_packed(vq);
    if (n == 0 || n > vq->max_size || (n & (n - 1))) {
        virtio_error(vd, "queue %u: size %u is not a power of two <= %u", vq->index, n,
                     vq->max_size);
        return -EINVAL;
    }
    if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3)) {
        virtio_error(vd, "queue %u: misaligned rings (desc %#llx avail %#llx used %#llx)",
                     vq->index, (unsigned long long)vq->desc_gpa,
                     (unsigned long long)vq->avail_gpa, (unsigned long long)vq->used_gpa);
        return -EINVAL;
    }
    struct guest_mem *mem = vq_mem(vq);
    void *d = guest_mem_ptr(mem, vq->desc_gpa, virtq_desc_bytes(n));
    void *a = guest_mem_ptr(mem, vq->avail_gpa, virtq_avail_bytes(n));
    void *u = guest_mem_ptr(mem, vq->used_gpa, virtq_used_bytes(n));
    if (!d || !a || !u) {
        virtio_error(vd, "queue %u: ring outside guest RAM (desc %#llx avail %#llx used %#llx)",
                     vq->index, (unsigned long long)vq->desc_gpa,
                     (unsigned long long)vq->avail_gpa, (unsigned long long)vq->used_gpa);
        return -EINVAL;
    }
    vq->desc = d;
    vq->avail = a;
    vq->used = u;
    vq->enabled = true;
    vq->last_avail_idx = 0;
    vq->used_idx = 0;
    vq->signalled_used_valid = false;
    return 0;
}

bool virtq_ready(const struct virtq *vq)
{
    return vq && vq->enabled && vq->desc && virtio_dev_ready(vq->vdev);
}

static bool has_feature(const struct virtq *vq, unsigned bit)
{
    return virtio_has_feature(vq->vdev, bit);
}

#define PACKED_F_AVAIL (1u << 7)
#define PACKED_F_USED (1u << 15)
#define PACKED_EVENT_ENABLE 0
#define PACKED_EVENT_DISABLE 1
#define PACKED_EVENT_DESC 2

static bool packed_desc_avail(const struct virtq *vq, uint16_t flags)
{
    return !!(flags & PACKED_F_AVAIL) == vq->avail_wrap && !!(flags & PACKED_F_USED) != vq->avail_wrap;
}

static uint16_t packed_flags(const struct virtq *vq, unsigned pos)
{
    return __atomic_load_n((uint16_t *)((uint8_t *)vq->desc + 16 * pos + 14), __ATOMIC_ACQUIRE);
}

bool virtq_empty(struct virtq *vq)
{
    if (!virtq_ready(vq))
        return true;
    if (vq->packed)
        return !packed_desc_avail(vq, packed_flags(vq, vq->last_avail_idx));
    return __atomic_load_n((uint16_t *)AVAIL_IDX(vq), __ATOMIC_ACQUIRE) == vq->last_avail_idx;
}

struct seg {
    uint64_t gpa;
    void *host;
    uint32_t len;
    bool write;
};

/* Walk one chain starting at head. Fills segs (at most VIRTQ_MAX_SIZE) and returns the count,
 * or -1 after virtio_error. Every step is bounded by the table size, so loops end. */
static int walk_chain(struct virtq *vq, uint16_t head, struct seg *segs)
{
    struct virtio_dev *vd = vq->vdev;
    struct guest_mem *mem = vq_mem(vq);
    const uint8_t *table = vq->desc;
    unsigned max = vq->size; /* entries in the current table */
    bool indirect = false;
    unsigned nsegs = 0, steps = 0, nin = 0;
    unsigned i = head;

    for (;;) {
        if (i >= max) {
            virtio_error(vd, "queue %u: descriptor index %u out of range (%u)", vq->index, i, max);
            return -1;
        }
        if (++steps > max) {
            virtio_error(vd, "queue %u: descriptor chain loops or is longer than %u", vq->index,
                         max);
            return -1;
        }
        struct virtq_desc d;
        memcpy(&d, table + 16 * i, sizeof(d)); /* one snapshot: the guest may change it */
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (indirect) {
                virtio_error(vd, "queue %u: nested indirect descriptor", vq->index);
                return -1;
            }
            if (!has_feature(vq, VIRTIO_F_RING_INDIRECT_DESC)) {
                virtio_error(vd, "queue %u: indirect descriptor without the feature", vq->index);
                return -1;
            }
            if (d.flags & VIRTQ_DESC_F_NEXT) {
                virtio_error(vd, "queue %u: indirect descriptor with NEXT", vq->index);
                return -1;
            }
            if (nsegs) {
                /* Linux never mixes; QEMU refuses it too (the table would reset the walk). */
                virtio_error(vd, "queue %u: indirect descriptor inside a chain", vq->index);
                return -1;
            }
            if (d.len == 0 || d.len % 16 || d.len / 16 > VIRTQ_MAX_SIZE) {
                virtio_error(vd, "queue %u: indirect table of %u bytes", vq->index, d.len);
                return -1;
            }
            const uint8_t *t = guest_mem_ptr(mem, d.addr, d.len);
            if (!t) {
                virtio_error(vd, "queue %u: indirect table %#llx+%u outside guest RAM", vq->index,
                             (unsigned long long)d.addr, d.len);
                return -1;
            }
            table = t;
            max = d.len / 16;
            indirect = true;
            steps = 0;
            i = 0;
            continue;
        }
        if (d.len) {
            void *p = guest_mem_ptr(mem, d.addr, d.len);
            if (!p) {
                virtio_error(vd, "queue %u: buffer %#llx+%u outside guest RAM", vq->index,
                             (unsigned long long)d.addr, d.len);
                return -1;
            }
            bool w = d.flags & VIRTQ_DESC_F_WRITE;
            if (!w && nin) {
                virtio_error(vd, "queue %u: device-readable buffer after a writable one",
                             vq->index);
                return -1;
            }
            if (nsegs >= VIRTQ_MAX_SIZE) {
                virtio_error(vd, "queue %u: chain longer than %u", vq->index, VIRTQ_MAX_SIZE);
                return -1;
            }
            segs[nsegs++] = (struct seg){d.addr, p, d.len, w};
            nin += w;
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return (int)nsegs;
        i = d.next;
    }
}

/* ---- packed rings (virtio 1.x 2.8) ---- */

/* Walk the chain at vq->last_avail_idx: consecutive ring entries, the last one carrying the
 * buffer id; an indirect entry must be alone. Returns the segment count or -1 (virtio_error). */
static int walk_packed(struct virtq *vq, struct seg *segs, uint16_t *id, uint16_t *ndescs)
{
    struct virtio_dev *vd = vq->vdev;
    struct guest_mem *mem = vq_mem(vq);
    unsigned pos = vq->last_avail_idx, nsegs = 0, nin = 0;
    for (unsigned steps = 0;; steps++) {
        if (steps >= vq->size) {
            virtio_error(vd, "queue %u: packed chain longer than %u", vq->index, vq->size);
            return -1;
        }
        struct {
            uint64_t addr;
            uint32_t len;
            uint16_t id, flags;
        } d;
        memcpy(&d, (uint8_t *)vq->desc + 16 * pos, sizeof(d));
        *id = d.id;
        *ndescs = (uint16_t)(steps + 1);
        if (++pos == vq->size)
            pos = 0;
        const uint8_t *table = NULL;
        unsigned count = 1;
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!has_feature(vq, VIRTIO_F_RING_INDIRECT_DESC) || steps ||
                (d.flags & VIRTQ_DESC_F_NEXT)) {
                virtio_error(vd, "queue %u: misplaced packed indirect descriptor", vq->index);
                return -1;
            }
            if (d.len == 0 || d.len % 16 || d.len / 16 > VIRTQ_MAX_SIZE ||
                !(table = guest_mem_ptr(mem, d.addr, d.len))) {
                virtio_error(vd, "queue %u: bad packed indirect table %#llx+%u", vq->index,
                             (unsigned long long)d.addr, d.len);
                return -1;
            }
            count = d.len / 16;
        }
        for (unsigned k = 0; k < count; k++) {
            uint64_t addr = d.addr;
            uint32_t len = d.len;
            uint16_t flags = d.flags;
            if (table) {
                memcpy(&addr, table + 16 * k, 8);
                memcpy(&len, table + 16 * k + 8, 4);
                memcpy(&flags, table + 16 * k + 14, 2);
                if (flags & VIRTQ_DESC_F_INDIRECT) {
                    virtio_error(vd, "queue %u: nested indirect descriptor", vq->index);
                    return -1;
                }
            }
            if (!len)
                continue;
            void *p = guest_mem_ptr(mem, addr, len);
            if (!p) {
                virtio_error(vd, "queue %u: buffer %#llx+%u outside guest RAM", vq->index,
                             (unsigned long long)addr, len);
                return -1;
            }
            bool w = flags & VIRTQ_DESC_F_WRITE;
            if (!w && nin) {
                virtio_error(vd, "queue %u: device-readable buffer after a writable one",
                             vq->index);
                return -1;
            }
            if (nsegs >= VIRTQ_MAX_SIZE) {
                virtio_error(vd, "queue %u: chain longer than %u", vq->index, VIRTQ_MAX_SIZE);
                return -1;
            }
            segs[nsegs++] = (struct seg){addr, p, len, w};
            nin += w;
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return (int)nsegs;
    }
}

static struct virtq_elem *make_elem(struct virtq *vq, const struct seg *segs, int n, uint16_t head)
{
    unsigned nout = 0;
    while (nout < (unsigned)n && !segs[nout].write)
        nout++;
    struct virtq_elem *e =
        xmalloc(sizeof(*e) + (size_t)n * (sizeof(struct iovec) + sizeof(uint64_t)));
    e->head = head;
    e->gen = vq->gen;
    e->ndescs = 1;
    e->nout = nout;
    e->nin = (unsigned)n - nout;
    e->out = e->iov;
    e->in = e->iov + nout;
    e->out_gpa = (uint64_t *)(e->iov + n);
    e->in_gpa = e->out_gpa + nout;
    e->out_len = e->in_len = 0;
    for (int k = 0; k < n; k++) {
        e->iov[k] = (struct iovec){segs[k].host, segs[k].len};
        e->out_gpa[k] = segs[k].gpa;
        if (segs[k].write)
            e->in_len += segs[k].len;
        else
            e->out_len += segs[k].len;
    }
    return e;
}

static struct virtq_elem *virtq_pop_packed(struct virtq *vq)
{
    if (!packed_desc_avail(vq, packed_flags(vq, vq->last_avail_idx)))
        return NULL;
    static __thread struct seg segs[VIRTQ_MAX_SIZE];
    uint16_t id, ndescs;
    int n = walk_packed(vq, segs, &id, &ndescs);
    if (n < 0)
        return NULL;
    struct virtq_elem *e = make_elem(vq, segs, n, id);
    e->ndescs = ndescs;
    unsigned pos = vq->last_avail_idx + ndescs;
    if (pos >= vq->size) {
        pos -= vq->size;
        vq->avail_wrap = !vq->avail_wrap;
    }
    vq->last_avail_idx = (uint16_t)pos;
    vq->inflight++;
    return e;
}

static void virtq_push_packed(struct virtq *vq, struct virtq_elem *e, uint32_t len)
{
    uint8_t *d = (uint8_t *)vq->desc + 16 * vq->used_idx;
    st16(d + 12, e->head);
    st32(d + 8, len);
    uint16_t flags = (uint16_t)((vq->used_wrap ? PACKED_F_AVAIL | PACKED_F_USED : 0) |
                                (len ? VIRTQ_DESC_F_WRITE : 0));
    /* The flags publish the entry: they go last. */
    __atomic_store_n((uint16_t *)(d + 14), flags, __ATOMIC_RELEASE);
    unsigned pos = vq->used_idx + MAX(e->ndescs, 1);
    if (pos >= vq->size) {
        pos -= vq->size;
        vq->used_wrap = !vq->used_wrap;
    }
    vq->used_idx = (uint16_t)pos;
    vq->used_pending = true;
}

static bool virtq_should_notify_packed(struct virtq *vq)
{
    uint16_t off_wrap = ld16((uint8_t *)vq->avail), flags = ld16((uint8_t *)vq->avail + 2);
    uint16_t old = vq->signalled_used, new_idx = vq->used_idx;
    bool valid = vq->signalled_used_valid;
    vq->signalled_used = new_idx;
    vq->signalled_used_valid = true;
    if (flags == PACKED_EVENT_DISABLE)
        return false;
    if (flags != PACKED_EVENT_DESC || !has_feature(vq, VIRTIO_F_RING_EVENT_IDX))
        return true;
    /* As QEMU: an event position from the previous lap is moved back by the ring size. */
    int off = off_wrap & 0x7fff;
    if ((bool)(off_wrap >> 15) != vq->used_wrap)
        off -= vq->size;
    return !valid || virtq_need_event((uint16_t)off, new_idx, old);
}

struct virtq_elem *virtq_pop(struct virtq *vq)
{
    if (!virtq_ready(vq))
        return NULL;
    if (vq->packed)
        return virtq_pop_packed(vq);
    struct virtio_dev *vd = vq->vdev;
    uint16_t avail_idx = __atomic_load_n((uint16_t *)AVAIL_IDX(vq), __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - vq->last_avail_idx);
    if (pending == 0)
        return NULL;
    if (pending > vq->size) {
        virtio_error(vd, "queue %u: avail index jumped from %u to %u (size %u)", vq->index,
                     vq->last_avail_idx, avail_idx, vq->size);
        return NULL;
    }
    uint16_t head = ld16(AVAIL_RING(vq, vq->last_avail_idx & (vq->size - 1)));
    if (head >= vq->size) {
        virtio_error(vd, "queue %u: avail entry %u out of range", vq->index, head);
        return NULL;
    }
    /* Scratch for the walk: device code runs under the machine lock, but keep it per thread
     * anyway so nothing depends on that. */
    static __thread struct seg segs[VIRTQ_MAX_SIZE];
    int n = walk_chain(vq, head, segs);
    if (n < 0)
        return NULL;
    struct virtq_elem *e = make_elem(vq, segs, n, head);
    vq->last_avail_idx++;
    vq->inflight++;
    if (has_feature(vq, VIRTIO_F_RING_EVENT_IDX) && vq->notify_enabled)
        st16(AVAIL_EVENT(vq), vq->last_avail_idx);
    return e;
}

void virtq_elem_free(struct virtq_elem *elem)
{
    free(elem);
}

static bool elem_current(const struct virtq *vq, const struct virtq_elem *e)
{
    return e->gen == vq->gen && virtq_ready(vq);
}

void virtq_push(struct virtq *vq, struct virtq_elem *e, uint32_t len)
{
    if (!e)
        return;
    /* The device has written what it will into the chain's writable buffers: tell the
     * accelerator (a software CPU may hold decoded code from those pages) before the used entry
     * lets the guest see them. All of each buffer, not len: devices may write past what they
     * report. Also for stale chains, whose buffers were written all the same. */
    const struct guest_mem *mem = vq_mem(vq);
    if (mem->written)
        for (unsigned k = 0; k < e->nin; k++)
            guest_mem_written(mem, e->in_gpa[k], e->in[k].iov_len);
    if (elem_current(vq, e)) {
        if (len > e->in_len)
            len = (uint32_t)e->in_len;
        if (vq->packed) {
            virtq_push_packed(vq, e, len);
            if (vq->inflight)
                vq->inflight--;
            free(e);
            return;
        }
        uint8_t *u = USED_RING(vq, vq->used_idx & (vq->size - 1));
        st32(u, e->head);
        st32(u + 4, len);
        vq->used_idx++;
        /* The entry must be visible before the index that publishes it. */
        __atomic_store_n((uint16_t *)USED_IDX(vq), vq->used_idx, __ATOMIC_RELEASE);
        if (vq->inflight)
            vq->inflight--;
    }
    free(e);
}

void virtq_unpop(struct virtq *vq, struct virtq_elem *e)
{
    if (!e)
        return;
    if (elem_current(vq, e) && vq->packed) {
        int pos = (int)vq->last_avail_idx - MAX(e->ndescs, 1);
        if (pos < 0) {
            pos += vq->size;
            vq->avail_wrap = !vq->avail_wrap;
        }
        vq->last_avail_idx = (uint16_t)pos;
        if (vq->inflight)
            vq->inflight--;
    } else if (elem_current(vq, e)) {
        vq->last_avail_idx--;
        if (vq->inflight)
            vq->inflight--;
    }
    free(e);
}

void virtq_notify(struct virtq *vq)
{
    if (!virtq_ready(vq))
        return;
    /* Our used idx store must be visible before we read the guest's suppression fields. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bool need;
    if (vq->packed) {
        if (!vq->used_pending)
            return;
        vq->used_pending = false;
        need = virtq_should_notify_packed(vq);
    } else if (has_feature(vq, VIRTIO_F_RING_EVENT_IDX)) {
        uint16_t old = vq->signalled_used, new_idx = vq->used_idx;
        bool valid = vq->signalled_used_valid;
        vq->signalled_used = new_idx;
        vq->signalled_used_valid = true;
        if (valid && old == new_idx)
            return;
        need = !valid || virtq_need_event(ld16(USED_EVENT(vq)), new_idx, old);
    } else {
        if (vq->signalled_used_valid && vq->signalled_used == vq->used_idx)
            return; /* nothing new since the last interrupt */
        vq->signalled_used = vq->used_idx;
        vq->signalled_used_valid = true;
        need = !(ld16(AVAIL_FLAGS(vq)) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
    if (need)
        virtio_queue_raise(vq);
}

void virtq_set_notification(struct virtq *vq, bool enable)
{
    vq->notify_enabled = enable;
    if (!virtq_ready(vq))
        return;
    if (vq->packed) {
        st16((uint8_t *)vq->used + 2, enable ? PACKED_EVENT_ENABLE : PACKED_EVENT_DISABLE);
    } else if (has_feature(vq, VIRTIO_F_RING_EVENT_IDX)) {
        if (enable)
            st16(AVAIL_EVENT(vq), ld16(AVAIL_IDX(vq)));
    } else {
        st16(USED_FLAGS(vq), enable ? 0 : VIRTQ_USED_F_NO_NOTIFY);
    }
    /* Publish before the caller re-checks the avail ring. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        size_t c = MIN(iov[i].iov_len - off, len - done);
        memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off, c);
        done += c;
        off = 0;
    }
    return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        size_t c = MIN(iov[i].iov_len - off, len - done);
        memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, c);
        done += c;
        off = 0;
    }
    return done;
}
