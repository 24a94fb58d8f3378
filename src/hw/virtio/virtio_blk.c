/* virtio-blk-pci: a disk on the asynchronous block layer, several requests in flight per queue. */
#include "hw/virtio/virtio_blk.h"
#include "base/log.h"
#include "base/util.h"
#include "block/block.h"
#include "config/drive_opts.h"
#include "hw/virtio/virtio.h"
#include "machine/machine.h"
#include "vm/device_models.h"
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Feature bits (virtio 1.2, 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values. */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u
#define VIRTIO_BLK_ID_BYTES 20

/* Device config layout (little endian). */
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12
#define CFG_BLK_SIZE 20
#define CFG_PHYS_EXP 24
#define CFG_ALIGN_OFF 25
#define CFG_MIN_IO 26
#define CFG_OPT_IO 28
#define CFG_WRITEBACK 32
#define CFG_NUM_QUEUES 34
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGN 44
#define CFG_MAX_WZ_SECTORS 48
#define CFG_MAX_WZ_SEG 52
#define CFG_WZ_MAY_UNMAP 56
#define CFG_LEN 60

#define SECTOR 512u
/* Largest single data segment: a limit the guest is told (size_max) and that is enforced. */
#define VBLK_SIZE_MAX (4u << 20)
/* Per-request limits for discard / write-zeroes, advertised in config space. */
#define VBLK_MAX_DISCARD_SECTORS (1u << 21) /* 1 GiB */
#define VBLK_MAX_DISCARD_SEGS 16u

struct vblk_hdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};
struct vblk_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

struct vblk;

/* One request taken off a queue, alive until every block-layer call it made has completed. */
struct vblk_req {
    struct vblk *dev;
    unsigned q;
    uint64_t gen;         /* dev->gen at submission: a reset since makes this request stale */
    struct virtq_elem *elem;
    uint8_t *status;      /* the last byte of the device-writable buffers */
    uint32_t in_written;  /* data bytes written to the guest (reads, GET_ID) */
    unsigned pending;     /* block-layer calls not yet completed */
    int err;              /* first error of those calls */
    bool flush_after;     /* write done with the guest's write cache off: flush before status */
    struct vblk_req *next, *prev; /* in dev->inflight */
    unsigned niov;
    struct iovec iov[];   /* the data buffers (header and status byte cut off) */
};

struct vblk {
    struct virtio_dev vdev;
    struct blk *blk;
    struct blk_aio *aio;
    struct vm_blk_device_opts opts;
    char *name;           /* "virtio-blk-pci (drive d0)" for messages */
    uint64_t capacity;    /* in 512-byte sectors */
    unsigned lbs;         /* logical block size */
    bool read_only;
    bool drive_writeback; /* the cache mode has a host write cache that needs flushes */
    bool wce;             /* the guest's view of the write cache (config writeback byte) */
    bool guard_sector0;   /* format was probed as raw: refuse writes that change the probe */
    bool discard_unmap;
    char serial[VIRTIO_BLK_ID_BYTES];
    uint64_t gen;
    unsigned ninflight;
    struct vblk_req *inflight;
    int lock_fd;
};

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_le32(uint8_t *p, uint32_t v)
{
    put_le16(p, (uint16_t)v);
    put_le16(p + 2, (uint16_t)(v >> 16));
}
static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ---- completion ---- */

static void req_free(struct vblk_req *r)
{
    struct vblk *d = r->dev;
    machine_io_end(d->vdev.m);
    if (r->prev)
        r->prev->next = r->next;
    else
        d->inflight = r->next;
    if (r->next)
        r->next->prev = r->prev;
    d->ninflight--;
    free(r);
}

/* Write the status byte and hand the chain back. A request that outlived a device reset is only
 * freed: its buffers belong to a ring the guest has since re-initialised. */
static void req_complete(struct vblk_req *r, uint8_t status)
{
    struct vblk *d = r->dev;
    struct virtq *vq = virtio_queue(&d->vdev, r->q);
    if (r->gen == d->gen && vq) {
        *r->status = status;
        virtq_push(vq, r->elem, r->in_written + 1);
        virtq_notify(vq);
    } else if (vq) {
        virtq_push(vq, r->elem, 0); /* stale: the core only frees it */
    } else {
        virtq_elem_free(r->elem);
    }
    req_free(r);
}

static void req_flush_done(void *opaque, int ret);

static void req_io_done(void *opaque, int ret)
{
    struct vblk_req *r = opaque;
    if (ret < 0 && !r->err)
        r->err = ret;
    if (--r->pending)
        return;
    if (r->err) {
        log_once(LOG_WARN, "%s: I/O error: %s", r->dev->name, strerror(-r->err));
        r->in_written = 0; /* the data may be partial: claim none */
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (r->flush_after && r->gen == r->dev->gen) {
        r->flush_after = false;
        r->pending = 1;
        if (blk_flush(r->dev->blk, req_flush_done, r) < 0)
            req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    req_complete(r, VIRTIO_BLK_S_OK);
}

static void req_flush_done(void *opaque, int ret)
{
    req_io_done(opaque, ret);
}

/* ---- request parsing ---- */

/* Copies iov[] from byte skip, dropping the last drop bytes, into r->iov. */
static void req_take_iov(struct vblk_req *r, const struct iovec *iov, unsigned n, size_t skip,
                         size_t total, size_t drop)
{
    size_t want = total - skip - drop, off = 0;
    for (unsigned i = 0; i < n && want; i++) {
        size_t len = iov[i].iov_len;
        if (off + len <= skip) {
            off += len;
            continue;
        }
        size_t start = skip > off ? skip - off : 0;
        size_t take = MIN(len - start, want);
        r->iov[r->niov++] = (struct iovec){(uint8_t *)iov[i].iov_base + start, take};
        want -= take;
        off += len;
    }
}

/* Sector range check shared by reads, writes, discards: aligned to the logical block size and
 * inside the disk. */
static bool range_ok(const struct vblk *d, uint64_t sector, uint64_t bytes)
{
    uint64_t lbs_sectors = d->lbs / SECTOR;
    if (bytes % d->lbs || sector % lbs_sectors)
        return false;
    if (sector > d->capacity)
        return false;
    return bytes / SECTOR <= d->capacity - sector;
}

/* Magic numbers of formats QEMU probes for: a guest writing one into sector 0 of a disk whose
 * format was guessed would turn it into that format at the next probe (CVE-2008-2004). */
static bool probes_as_image(const uint8_t *b, size_t len)
{
    static const struct {
        unsigned off;
        const char *magic;
        unsigned len;
    } magics[] = {
#define MAGIC(off, str) {off, str, sizeof(str) - 1}
        MAGIC(0, "QFI\xfb"),          /* qcow, qcow2 */
        MAGIC(0, "QED\0"),            /* qed */
        MAGIC(0, "KDMV"),             /* vmdk */
        MAGIC(0, "COWD"),             /* vmdk3 */
        MAGIC(0, "# Disk DescriptorFile"),
        MAGIC(0, "conectix"),         /* vpc */
        MAGIC(0, "vhdxfile"),         /* vhdx */
        MAGIC(0, "LUKS\xba\xbe"),     /* luks */
        MAGIC(0, "WithoutFreeSpace"), /* parallels */
        MAGIC(0, "WithouFreSpacExt"),
        MAGIC(0, "XenVMImage"),       /* bochs */
        MAGIC(64, "\x7f\x10\xda\xbe"),/* vdi */
        MAGIC(0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$1\n"),
#undef MAGIC
    };
    for (unsigned i = 0; i < ARRAY_SIZE(magics); i++)
        if (magics[i].off + magics[i].len <= len &&
            !memcmp(b + magics[i].off, magics[i].magic, magics[i].len))
            return true;
    return false;
}

static uint8_t submit_rw(struct vblk *d, struct vblk_req *r, const struct vblk_hdr *h, bool write,
                         size_t bytes)
{
    if (bytes >= UINT32_MAX || !range_ok(d, h->sector, bytes)) /* used.len is 32 bits */
        return VIRTIO_BLK_S_IOERR;
    for (unsigned i = 0; i < r->niov; i++)
        if (r->iov[i].iov_len > VBLK_SIZE_MAX)
            return VIRTIO_BLK_S_IOERR;
    if (!bytes) /* nothing to move: QEMU answers OK too */
        return VIRTIO_BLK_S_OK;
    if (write && d->read_only)
        return VIRTIO_BLK_S_IOERR;
    uint64_t off = h->sector * SECTOR;
    if (write && d->guard_sector0 && off == 0) {
        uint8_t first[SECTOR];
        size_t n = iov_to_buf(r->iov, r->niov, 0, first, sizeof(first));
        if (probes_as_image(first, n)) {
            log_once(LOG_WARN, "%s: refused a guest write to sector 0 that would make the raw "
                               "image look like another format; give format=raw to allow it",
                     d->name);
            return VIRTIO_BLK_S_IOERR;
        }
    }
    if (write) {
        r->flush_after = !d->wce && d->drive_writeback;
    } else {
        r->in_written = (uint32_t)bytes;
    }
    r->pending = 1;
    int ret = write ? blk_pwritev(d->blk, off, r->iov, (int)r->niov, req_io_done, r)
                    : blk_preadv(d->blk, off, r->iov, (int)r->niov, req_io_done, r);
    if (ret < 0) {
        r->in_written = 0;
        return VIRTIO_BLK_S_IOERR;
    }
    return 0xff; /* submitted: completes later */
}

static uint8_t submit_discard_wz(struct vblk *d, struct vblk_req *r, bool wz, const uint8_t *segs,
                                 size_t bytes)
{
    if (!virtio_has_feature(&d->vdev, wz ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD))
        return VIRTIO_BLK_S_UNSUPP;
    if (!bytes || bytes % sizeof(struct vblk_range) ||
        bytes / sizeof(struct vblk_range) > VBLK_MAX_DISCARD_SEGS)
        return VIRTIO_BLK_S_UNSUPP;
    unsigned n = (unsigned)(bytes / sizeof(struct vblk_range));
    struct vblk_range rg[VBLK_MAX_DISCARD_SEGS];
    memcpy(rg, segs, bytes);
    for (unsigned i = 0; i < n; i++) {
        uint32_t allowed = wz ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
        if (rg[i].flags & ~allowed)
            return VIRTIO_BLK_S_UNSUPP;
        if (rg[i].num_sectors > VBLK_MAX_DISCARD_SECTORS ||
            !range_ok(d, rg[i].sector, (uint64_t)rg[i].num_sectors * SECTOR))
            return VIRTIO_BLK_S_IOERR;
    }
    if (d->read_only)
        return VIRTIO_BLK_S_IOERR;
    /* The guard only matters for data that lands in sector 0; zeroes never probe as a format. */
    r->pending = 1; /* held until every segment is submitted */
    for (unsigned i = 0; i < n; i++) {
        uint64_t off = rg[i].sector * SECTOR, len = (uint64_t)rg[i].num_sectors * SECTOR;
        if (!len)
            continue;
        r->pending++;
        int ret;
        if (wz) {
            unsigned fl = (rg[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) && d->discard_unmap
                              ? BLK_ZERO_MAY_UNMAP
                              : 0;
            ret = blk_write_zeroes(d->blk, off, len, fl, req_io_done, r);
        } else {
            ret = blk_discard(d->blk, off, len, req_io_done, r);
        }
        if (ret < 0) {
            r->pending--;
            if (!r->err)
                r->err = ret;
            break;
        }
    }
    if (wz)
        r->flush_after = !d->wce && d->drive_writeback;
    req_io_done(r, 0); /* drop the hold: completes now if nothing is pending */
    return 0xff;
}

/* Handles one chain; returns after submitting it or completing it. */
static void handle_elem(struct vblk *d, unsigned q, struct virtq_elem *e)
{
    struct vblk_hdr h;
    /* The header must be device-readable and the status byte device-writable: a driver that
     * gets either wrong is broken, and the spec's answer is NEEDS_RESET. */
    if (e->out_len < sizeof(h) || e->in_len < 1) {
        size_t out_len = e->out_len, in_len = e->in_len;
        virtq_elem_free(e);
        virtio_error(&d->vdev, "request without a %s (%zu readable, %zu writable bytes)",
                     out_len < sizeof(h) ? "16-byte header" : "status byte", out_len, in_len);
        return;
    }
    iov_to_buf(e->out, e->nout, 0, &h, sizeof(h));
    h.type = le32toh(h.type);
    h.sector = le64toh(h.sector);

    struct vblk_req *r = xzalloc(sizeof(*r) + (e->nout + e->nin) * sizeof(struct iovec));
    r->dev = d;
    r->q = q;
    r->gen = d->gen;
    r->elem = e;
    /* The status byte: the last byte of the last non-empty writable buffer. */
    for (unsigned i = e->nin; i-- > 0;) {
        if (e->in[i].iov_len) {
            r->status = (uint8_t *)e->in[i].iov_base + e->in[i].iov_len - 1;
            break;
        }
    }
    r->next = d->inflight;
    if (d->inflight)
        d->inflight->prev = r;
    d->inflight = r;
    d->ninflight++;
    machine_io_begin(d->vdev.m); /* a deterministic accelerator waits for its completion */

    uint8_t st;
    size_t out_data = e->out_len - sizeof(h), in_data = e->in_len - 1;
    switch (h.type) {
    case VIRTIO_BLK_T_IN:
        req_take_iov(r, e->in, e->nin, 0, e->in_len, 1);
        st = submit_rw(d, r, &h, false, in_data);
        break;
    case VIRTIO_BLK_T_OUT:
        req_take_iov(r, e->out, e->nout, sizeof(h), e->out_len, 0);
        st = submit_rw(d, r, &h, true, out_data);
        break;
    case VIRTIO_BLK_T_FLUSH:
        /* Done even when FLUSH was not negotiated, as QEMU does: a flush is never wrong. */
        r->pending = 1;
        st = blk_flush(d->blk, req_io_done, r) < 0 ? VIRTIO_BLK_S_IOERR : 0xff;
        break;
    case VIRTIO_BLK_T_GET_ID: {
        req_take_iov(r, e->in, e->nin, 0, e->in_len, 1);
        size_t n = MIN(in_data, (size_t)VIRTIO_BLK_ID_BYTES);
        r->in_written = (uint32_t)iov_from_buf(r->iov, r->niov, 0, d->serial, n);
        st = VIRTIO_BLK_S_OK;
        break;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        uint8_t segs[VBLK_MAX_DISCARD_SEGS * sizeof(struct vblk_range)];
        size_t n = MIN(out_data, sizeof(segs));
        iov_to_buf(e->out, e->nout, sizeof(h), segs, n);
        st = submit_discard_wz(d, r, h.type == VIRTIO_BLK_T_WRITE_ZEROES, segs,
                               out_data > sizeof(segs) ? sizeof(segs) + 1 : out_data);
        break;
    }
    default:
        st = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    if (st != 0xff)
        req_complete(r, st);
}

static void vblk_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct vblk *d = vd->opaque;
    struct virtq *vq = virtio_queue(vd, q);
    struct virtq_elem *e;
    /* Bounded by the ring size: each pop consumes one avail entry. */
    unsigned n;
    for (n = 0; n < VIRTQ_MAX_SIZE && (e = virtq_pop(vq)); n++)
        handle_elem(d, q, e);
    /* Reads the host page cache already holds complete inside io_uring_submit: reap them now
     * rather than after another trip through the event loop (it never blocks). */
    if (n)
        blk_aio_process(d->aio);
}

static void vblk_reset(struct virtio_dev *vd)
{
    struct vblk *d = vd->opaque;
    /* In-flight requests finish in the block layer (their buffers are guest RAM, mapped for the
     * VM's lifetime); the generation bump keeps their completions out of the new rings. */
    d->gen++;
    d->wce = d->drive_writeback;
    vd->config[CFG_WRITEBACK] = d->wce;
}

/* A driver that cannot flush gets a write-through disk (virtio 1.2 5.2.5.2; QEMU does the
 * same): otherwise its completed writes could sit in the host cache with no way to commit them. */
static int vblk_features_ok(struct virtio_dev *vd, uint64_t features)
{
    struct vblk *d = vd->opaque;
    d->wce = d->drive_writeback && (features & VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH));
    vd->config[CFG_WRITEBACK] = d->wce;
    return 0;
}

static void vblk_config_write(struct virtio_dev *vd, unsigned off, unsigned len)
{
    struct vblk *d = vd->opaque;
    /* Only the writeback byte is writable, and only with CONFIG_WCE. */
    if (off <= CFG_WRITEBACK && off + len > CFG_WRITEBACK &&
        virtio_has_feature(vd, VIRTIO_BLK_F_CONFIG_WCE) &&
        virtio_has_feature(vd, VIRTIO_BLK_F_FLUSH))
        d->wce = vd->config[CFG_WRITEBACK] != 0;
    vd->config[CFG_WRITEBACK] = d->wce;
}

static void vblk_release(struct virtio_dev *vd)
{
    struct vblk *d = vd->opaque;
    /* Requests still in flight hold pointers to d: keep it (the process is exiting). */
    if (d->ninflight)
        return;
    blk_close(d->blk);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    vm_blk_device_opts_free(&d->opts);
    free(d->name);
    virtio_dev_destroy(vd);
    free(d);
}

static const struct virtio_dev_ops vblk_ops = {
    .queue_notify = vblk_queue_notify,
    .reset = vblk_reset,
    .features_ok = vblk_features_ok,
    .config_write = vblk_config_write,
    .release = vblk_release,
};

/* ---- image locks, as QEMU's file-posix takes them ---- */

enum { PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE, PERM_COUNT };
static const char *const perm_names[] = {"consistent read", "write", "write unchanged", "resize"};

static int ofd_lock(int fd, short type, int cmd, off_t byte, short *out_type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, cmd, &fl) < 0)
        return -errno;
    if (out_type)
        *out_type = fl.l_type;
    return 0;
}

int virtio_blk_lock_image(const char *filename, bool writable)
{
    int fd = open(filename, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        log_error("-drive file=%s: Could not open '%s': %s", filename, filename, strerror(e));
        return -e;
    }
    unsigned perm = 1u << PERM_CONSISTENT_READ;
    if (writable)
        perm |= 1u << PERM_WRITE | 1u << PERM_WRITE_UNCHANGED;
    /* A guest disk shares reads and unchanged writes, never writes or resizes (QEMU's default
     * without share-rw=on), read-only or not. */
    unsigned shared = 1u << PERM_CONSISTENT_READ | 1u << PERM_WRITE_UNCHANGED;
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        int r = 0;
        if (perm & (1u << i))
            r = ofd_lock(fd, F_RDLCK, F_OFD_SETLK, 100 + i, NULL);
        if (!r && !(shared & (1u << i)))
            r = ofd_lock(fd, F_RDLCK, F_OFD_SETLK, 200 + i, NULL);
        if (r == -EAGAIN || r == -EACCES) {
            log_error("%s: Failed to lock byte %u: the image is in use; Is another process "
                      "using the image [%s]?",
                      filename, (perm & (1u << i)) ? 100 + i : 200 + i, filename);
            close(fd);
            return -EBUSY;
        }
        if (r == -EINVAL || r == -ENOLCK || r == -EOPNOTSUPP)
            break; /* no OFD locks on this filesystem: QEMU's locking=auto goes on too */
    }
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        short t = F_UNLCK;
        /* Someone does not share a permission we hold ... */
        if ((perm & (1u << i)) && !ofd_lock(fd, F_WRLCK, F_OFD_GETLK, 200 + i, &t) &&
            t != F_UNLCK) {
            log_error("%s: Failed to get \"%s\" lock; Is another process using the image [%s]?",
                      filename, perm_names[i], filename);
            close(fd);
            return -EBUSY;
        }
        /* ... or holds a permission we do not share. */
        if (!(shared & (1u << i)) && !ofd_lock(fd, F_WRLCK, F_OFD_GETLK, 100 + i, &t) &&
            t != F_UNLCK) {
            log_error("%s: Failed to get shared \"%s\" lock; Is another process using the image "
                      "[%s]?",
                      filename, perm_names[i], filename);
            close(fd);
            return -EBUSY;
        }
    }
    return fd;
}

/* ---- creation ---- */

static unsigned log2u(unsigned v)
{
    unsigned n = 0;
    while (v > 1) {
        v >>= 1;
        n++;
    }
    return n;
}

static void vblk_fill_config(struct vblk *d)
{
    uint8_t *c = d->vdev.config;
    const struct vm_blk_device_opts *o = &d->opts;
    put_le64(c + CFG_CAPACITY, d->capacity);
    put_le32(c + CFG_SIZE_MAX, VBLK_SIZE_MAX);
    put_le32(c + CFG_SEG_MAX, o->queue_size - 2); /* header and status take two descriptors */
    put_le32(c + CFG_BLK_SIZE, d->lbs);
    c[CFG_PHYS_EXP] = (uint8_t)log2u(o->physical_block_size / d->lbs);
    c[CFG_ALIGN_OFF] = 0;
    put_le16(c + CFG_MIN_IO, (uint16_t)(o->min_io_size / d->lbs));
    put_le32(c + CFG_OPT_IO, o->opt_io_size / d->lbs);
    c[CFG_WRITEBACK] = d->wce;
    put_le16(c + CFG_NUM_QUEUES, (uint16_t)d->vdev.nvqs);
    put_le32(c + CFG_MAX_DISCARD_SECTORS, VBLK_MAX_DISCARD_SECTORS);
    put_le32(c + CFG_MAX_DISCARD_SEG, VBLK_MAX_DISCARD_SEGS);
    put_le32(c + CFG_DISCARD_ALIGN, d->lbs / SECTOR);
    put_le32(c + CFG_MAX_WZ_SECTORS, VBLK_MAX_DISCARD_SECTORS);
    put_le32(c + CFG_MAX_WZ_SEG, VBLK_MAX_DISCARD_SEGS);
    c[CFG_WZ_MAY_UNMAP] = d->discard_unmap;
}

int virtio_blk_new(struct vm_device_ctx *ctx, const char *opts, struct virtio_dev **out)
{
    struct vblk *d = xzalloc(sizeof(*d));
    d->lock_fd = -1;
    if (vm_blk_device_opts_parse("virtio-blk-pci", opts, &d->opts) < 0) {
        free(d);
        return -EINVAL;
    }
    int ret = -EINVAL;
    const struct vm_config_drive *drv = vm_config_drive_find(ctx->cfg, d->opts.drive);
    if (!drv) {
        log_error("-device virtio-blk-pci,%s: Property 'virtio-blk-pci.drive' can't find value "
                  "'%s'",
                  opts, d->opts.drive);
        goto fail;
    }
    d->name = xasprintf("virtio-blk-pci (drive %s)", drv->id);

    struct blk_open_opts bo = {
        .format = drv->format,
        .read_only = drv->read_only,
        .cache = (enum blk_cache_mode)drv->cache,
        .aio = drv->aio == VM_DRIVE_AIO_IO_URING  ? BLK_AIO_IO_URING
               : drv->aio == VM_DRIVE_AIO_THREADS ? BLK_AIO_THREADS
                                                  : BLK_AIO_DEFAULT,
        .discard_unmap = drv->discard_unmap,
        .snapshot_temp = drv->snapshot,
    };
    /* snapshot=on writes only to a temporary overlay: the image itself is only read. */
    bool writes_image = !drv->read_only && !drv->snapshot;
    d->lock_fd = virtio_blk_lock_image(drv->file, writes_image);
    if (d->lock_fd < 0) {
        ret = d->lock_fd;
        goto fail;
    }
    if (!bo.format) {
        bool guessed = false;
        const char *fmt = NULL;
        int r = blk_probe_format(drv->file, &fmt, &guessed);
        if (r < 0) { /* the block layer has said which file and why */
            ret = r;
            goto fail;
        }
        if (guessed) {
            log_warn("Image format was not specified for '%s' and probing guessed raw. "
                     "Automatically detecting the format is dangerous for raw images, write "
                     "operations on block 0 will be restricted. Specify the 'raw' format "
                     "explicitly to remove the restrictions.",
                     drv->file);
            d->guard_sector0 = !drv->snapshot && !drv->read_only;
        }
        bo.format = fmt;
    }
    struct blk_aio *aio = d->aio = ctx->blk_aio(ctx);
    if (!aio) {
        log_error("%s: cannot create the block I/O engine", d->name);
        goto fail;
    }
    ret = blk_open(drv->file, &bo, aio, &d->blk);
    if (ret < 0) {
        log_error("-drive file=%s: cannot open the image (%s)", drv->file, strerror(-ret));
        goto fail;
    }
    d->lbs = d->opts.logical_block_size;
    d->capacity = blk_size(d->blk) / SECTOR;
    if (d->capacity % (d->lbs / SECTOR))
        d->capacity -= d->capacity % (d->lbs / SECTOR);
    d->read_only = drv->read_only;
    d->discard_unmap = drv->discard_unmap;
    /* unsafe counts as a write cache too: the guest should see one, and its flushes are free */
    d->drive_writeback = drv->cache != VM_DRIVE_CACHE_WRITETHROUGH &&
                         drv->cache != VM_DRIVE_CACHE_DIRECTSYNC;
    d->wce = d->drive_writeback;
    const char *serial = d->opts.serial ? d->opts.serial : drv->serial;
    if (serial)
        /* 20 bytes, NUL-padded only when shorter (the spec's GET_ID format) */
        memcpy(d->serial, serial, MIN(strlen(serial), sizeof(d->serial)));

    unsigned nq = d->opts.num_queues;
    if (!nq) /* QEMU's auto: one queue per vCPU */
        nq = MIN(ctx->cfg->ncpus ? ctx->cfg->ncpus : 1, (unsigned)VM_BLK_MAX_QUEUES);

    virtio_dev_init(&d->vdev, VIRTIO_ID_BLOCK, &vblk_ops, d, CFG_LEN);
    uint64_t f = VIRTIO_F_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_F_BIT(VIRTIO_BLK_F_SEG_MAX) |
                 VIRTIO_F_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH) |
                 VIRTIO_F_BIT(VIRTIO_BLK_F_TOPOLOGY) | VIRTIO_F_BIT(VIRTIO_BLK_F_MQ);
    if (d->opts.config_wce)
        f |= VIRTIO_F_BIT(VIRTIO_BLK_F_CONFIG_WCE);
    if (d->read_only)
        f |= VIRTIO_F_BIT(VIRTIO_BLK_F_RO);
    if (d->opts.discard)
        f |= VIRTIO_F_BIT(VIRTIO_BLK_F_DISCARD);
    if (d->opts.write_zeroes)
        f |= VIRTIO_F_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
    d->vdev.host_features |= f;
    for (unsigned i = 0; i < nq; i++)
        virtio_add_queue(&d->vdev, d->opts.queue_size);
    vblk_fill_config(d);
    d->vdev.name = d->name;
    *out = &d->vdev;
    return 0;
fail:
    if (d->blk)
        blk_close(d->blk);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    vm_blk_device_opts_free(&d->opts);
    free(d->name);
    free(d);
    return ret;
}

void virtio_blk_free(struct virtio_dev *vd)
{
    vblk_release(vd);
}

int virtio_blk_pci_create(struct vm_device_ctx *ctx, const char *opts)
{
    struct virtio_dev *vd;
    int ret = virtio_blk_new(ctx, opts, &vd);
    if (ret < 0)
        return ret;
    struct vblk *d = vd->opaque;
    ret = virtio_pci_create(ctx->m, ctx->pci, vd, "virtio-blk-pci", d->opts.slot);
    if (ret < 0) {
        virtio_blk_free(vd);
        return ret;
    }
    vd->name = d->name; /* messages name the drive too */
    return 0;
}
