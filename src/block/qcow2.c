/* qcow2 driver: header parsing and writing, open/close, and the driver entry points. */
#include "block/qcow2.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int qcow2_probe(const uint8_t *buf, size_t len)
{
    if (len >= 8 && be32_get(buf) == QCOW2_MAGIC && (be32_get(buf + 4) == 2 || be32_get(buf + 4) == 3))
        return 100;
    if (len >= 4 && be32_get(buf) == QCOW2_MAGIC)
        return 50; /* unsupported version: open reports it */
    return 0;
}

uint64_t qcow2_file_end(struct qcow2 *s)
{
    uint64_t n = 0;
    blk_file_size(&s->f, &n);
    return n;
}

int qcow2_write_header(struct qcow2 *s)
{
    uint64_t cs = s->cluster_size;
    uint8_t *h = xzalloc(cs);
    uint32_t hlen = s->version >= 3 ? 112 : 72;
    be32_put(h, QCOW2_MAGIC);
    be32_put(h + 4, s->version);
    be32_put(h + 20, s->cluster_bits);
    be64_put(h + 24, s->b->size);
    be32_put(h + 32, 0);
    be32_put(h + 36, s->l1_size);
    be64_put(h + 40, s->l1_offset);
    be64_put(h + 48, s->rt_offset);
    be32_put(h + 56, s->rt_clusters);
    be32_put(h + 60, s->nb_snapshots);
    be64_put(h + 64, s->snapshots_offset);
    if (s->version >= 3) {
        be64_put(h + 72, s->incompat);
        be64_put(h + 80, s->compat);
        be64_put(h + 88, s->autoclear);
        be32_put(h + 96, s->refcount_order);
        be32_put(h + 100, hlen);
        h[104] = s->compression_type;
    }
    size_t p = hlen;
    if (s->backing_fmt && s->backing_file) {
        size_t n = strlen(s->backing_fmt);
        if (p + 8 + ALIGN_UP(n, 8) + 8 > cs)
            goto toolong;
        be32_put(h + p, QCOW2_EXT_BACKING_FORMAT);
        be32_put(h + p + 4, (uint32_t)n);
        memcpy(h + p + 8, s->backing_fmt, n);
        p += 8 + ALIGN_UP(n, 8);
    }
    if (s->other_ext_len) {
        if (p + s->other_ext_len + 8 > cs)
            goto toolong;
        memcpy(h + p, s->other_ext, s->other_ext_len);
        p += s->other_ext_len;
    }
    p += 8; /* end-of-extensions marker (zeros) */
    if (s->backing_file) {
        size_t n = strlen(s->backing_file);
        if (p + n > cs)
            goto toolong;
        memcpy(h + p, s->backing_file, n);
        be64_put(h + 8, p);
        be32_put(h + 16, (uint32_t)n);
        p += n;
    }
    int r = blk_file_pwrite(&s->f, 0, h, p);
    free(h);
    if (r < 0)
        log_error("%s: cannot write the qcow2 header: %s", s->b->filename, strerror(-r));
    return r;
toolong:
    free(h);
    log_error("%s: the qcow2 header, its extensions and the backing file name do not fit in "
              "one cluster (%llu bytes); use a shorter backing file name",
              s->b->filename, (unsigned long long)cs);
    return -ENOSPC;
}

int qcow2_set_incompat(struct qcow2 *s, uint64_t bits, bool on)
{
    if (s->version < 3)
        return 0;
    uint64_t v = on ? s->incompat | bits : s->incompat & ~bits;
    if (v == s->incompat)
        return 0;
    if (on) {
        /* Whatever the bit announces must not be on disk before the bit. */
        int r = qcow2_sync(s);
        if (r < 0)
            return r;
    }
    uint64_t be;
    be64_put(&be, v);
    int r = blk_file_pwrite(&s->f, 72, &be, 8);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        s->incompat = v;
    return r;
}

static const char *feature_name(const uint8_t *tbl, size_t len, int type, int bit, char *buf)
{
    for (size_t i = 0; tbl && i + 48 <= len; i += 48)
        if (tbl[i] == type && tbl[i + 1] == bit) {
            memcpy(buf, tbl + i + 2, 46);
            buf[46] = 0;
            return buf;
        }
    snprintf(buf, 47, "bit %d", bit);
    return buf;
}

static int parse_extensions(struct qcow2 *s, const uint8_t *h, uint64_t start, uint64_t end,
                            const uint8_t **ftable, size_t *ftable_len)
{
    uint64_t p = start;
    const char *fn = s->b->filename;
    while (p + 8 <= end) {
        uint32_t type = be32_get(h + p), len = be32_get(h + p + 4);
        if (type == QCOW2_EXT_END)
            return 0;
        if (len > end - p - 8) {
            log_error("%s: qcow2 header extension 0x%x is longer than the header cluster", fn,
                      type);
            return -EINVAL;
        }
        uint64_t total = 8 + ALIGN_UP((uint64_t)len, 8);
        total = MIN(total, end - p);
        switch (type) {
        case QCOW2_EXT_BACKING_FORMAT:
            if (len > 63) {
                log_error("%s: qcow2 backing format name too long", fn);
                return -EINVAL;
            }
            free(s->backing_fmt);
            s->backing_fmt = xzalloc(len + 1);
            memcpy(s->backing_fmt, h + p + 8, len);
            break;
        case QCOW2_EXT_CRYPTO:
            log_error("%s: encrypted qcow2 images are not supported by vmkit; decrypt it with "
                      "'qemu-img convert' first", fn);
            return -ENOTSUP;
        case QCOW2_EXT_DATA_FILE:
            log_error("%s: qcow2 images with an external data file are not supported by vmkit",
                      fn);
            return -ENOTSUP;
        case QCOW2_EXT_FEATURE_TABLE:
            *ftable = h + p + 8;
            *ftable_len = len;
            __attribute__((fallthrough)); /* kept verbatim, too */
        default:
            s->other_ext = xrealloc(s->other_ext, s->other_ext_len + total);
            memcpy(s->other_ext + s->other_ext_len, h + p, total);
            s->other_ext_len += total;
            break;
        }
        p += total;
    }
    return 0;
}

static int qcow2_read_header(struct qcow2 *s, struct blk *b)
{
    const char *fn = b->filename;
    uint8_t h0[112] = {0};
    uint64_t fsize = qcow2_file_end(s);
    int r = blk_file_pread(&s->f, 0, h0, sizeof(h0));
    if (r < 0) {
        log_error("%s: cannot read the qcow2 header: %s", fn, strerror(-r));
        return r;
    }
    if (be32_get(h0) != QCOW2_MAGIC) {
        log_error("%s: not a qcow2 image (bad magic)", fn);
        return -EINVAL;
    }
    s->version = be32_get(h0 + 4);
    if (s->version != 2 && s->version != 3) {
        log_error("%s: qcow2 version %u is not supported (2 and 3 are)", fn, s->version);
        return -ENOTSUP;
    }
    s->cluster_bits = be32_get(h0 + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        log_error("%s: qcow2 cluster size 2^%u is invalid (512 B to 2 MiB)", fn, s->cluster_bits);
        return -EINVAL;
    }
    s->cluster_size = 1ull << s->cluster_bits;
    uint64_t cs = s->cluster_size;
    if (fsize < 72) {
        log_error("%s: truncated qcow2 image (%llu bytes)", fn, (unsigned long long)fsize);
        return -EINVAL;
    }
    b->size = be64_get(h0 + 24);
    if (be32_get(h0 + 32)) {
        log_error("%s: encrypted qcow2 images are not supported by vmkit; decrypt it with "
                  "'qemu-img convert' first", fn);
        return -ENOTSUP;
    }
    s->l1_size = be32_get(h0 + 36);
    s->l1_offset = be64_get(h0 + 40);
    s->rt_offset = be64_get(h0 + 48);
    s->rt_clusters = be32_get(h0 + 56);
    s->nb_snapshots = be32_get(h0 + 60);
    s->snapshots_offset = be64_get(h0 + 64);
    s->refcount_order = 4;
    s->header_length = 72;
    if (s->version >= 3) {
        s->incompat = be64_get(h0 + 72);
        s->compat = be64_get(h0 + 80);
        s->autoclear = be64_get(h0 + 88);
        s->refcount_order = be32_get(h0 + 96);
        s->header_length = be32_get(h0 + 100);
        if (s->header_length < 104 || s->header_length > cs || s->header_length % 8) {
            log_error("%s: qcow2 header length %u is invalid", fn, s->header_length);
            return -EINVAL;
        }
        if (s->header_length > 104)
            s->compression_type = h0[104];
    }
    if (s->refcount_order > 6) {
        log_error("%s: qcow2 refcount_order %u is invalid (at most 6, 64-bit refcounts)", fn,
                  s->refcount_order);
        return -EINVAL;
    }
    /* Extensions and the backing name live in the first cluster. */
    uint64_t hbytes = MIN(cs, fsize);
    uint8_t *h = xzalloc(cs);
    r = blk_file_pread(&s->f, 0, h, hbytes);
    const uint8_t *ftable = NULL;
    size_t ftable_len = 0;
    if (r == 0) {
        uint64_t ext_end = cs;
        uint64_t bfo = be64_get(h0 + 8);
        uint32_t bfs = be32_get(h0 + 16);
        if (bfo) {
            if (bfs > QCOW2_MAX_BACKING_NAME || bfo >= cs || bfs > cs - bfo) {
                log_error("%s: qcow2 backing file name (offset %llu, %u bytes) is invalid", fn,
                          (unsigned long long)bfo, bfs);
                r = -EINVAL;
            } else {
                s->backing_file = xzalloc(bfs + 1);
                memcpy(s->backing_file, h + bfo, bfs);
                if (bfo > s->header_length)
                    ext_end = bfo;
            }
        }
        if (r == 0)
            r = parse_extensions(s, h, s->header_length, ext_end, &ftable, &ftable_len);
    }
    if (r == 0 && (s->incompat & ~QCOW2_INCOMPAT_KNOWN)) {
        char names[512] = "", nb[48];
        for (int i = 0; i < 64; i++)
            if (((s->incompat & ~QCOW2_INCOMPAT_KNOWN) >> i) & 1) {
                size_t l = strlen(names);
                snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "",
                         feature_name(ftable, ftable_len, 0, i, nb));
            }
        log_error("%s: qcow2 image uses incompatible features vmkit does not support: %s", fn,
                  names);
        r = -ENOTSUP;
    }
    free(h);
    if (r < 0)
        return r;
    if (s->incompat & QCOW2_INCOMPAT_DATA_FILE) {
        log_error("%s: qcow2 images with an external data file are not supported by vmkit", fn);
        return -ENOTSUP;
    }
    if (s->compression_type > 1) {
        log_error("%s: unknown qcow2 compression type %u", fn, s->compression_type);
        return -ENOTSUP;
    }
    s->extended_l2 = s->incompat & QCOW2_INCOMPAT_EXTL2;
    if (s->extended_l2 && s->cluster_bits < 14) {
        log_error("%s: qcow2 extended L2 entries need clusters of at least 16 KiB", fn);
        return -EINVAL;
    }
    s->l2_entry_size = s->extended_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->extended_l2 ? 4 : 3);
    s->l2_entries = 1ull << s->l2_bits;
    s->subcluster_size = s->extended_l2 ? cs / 32 : cs;
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_order == 6 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_entries = cs * 8 >> s->refcount_order;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;

    /* Sizes: the L1 table must cover the disk and stay within QEMU's limits. */
    if (b->size > (1ull << 62)) {
        log_error("%s: qcow2 virtual size %llu is absurd", fn, (unsigned long long)b->size);
        return -EFBIG;
    }
    uint64_t need_l1 = DIV_ROUND_UP(b->size, cs << s->l2_bits);
    if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES || need_l1 * 8 > QCOW2_MAX_L1_BYTES) {
        log_error("%s: qcow2 L1 table of %u entries is too large (max %u bytes)", fn, s->l1_size,
                  QCOW2_MAX_L1_BYTES);
        return -EFBIG;
    }
    if (s->l1_size < need_l1) {
        log_error("%s: qcow2 L1 table (%u entries) is too small for the virtual size", fn,
                  s->l1_size);
        return -EINVAL;
    }
    if (s->l1_size && (s->l1_offset % cs || s->l1_offset >= fsize ||
                       (uint64_t)s->l1_size * 8 > fsize - s->l1_offset)) {
        log_error("%s: qcow2 L1 table at 0x%llx is misaligned or past the end of the file", fn,
                  (unsigned long long)s->l1_offset);
        return -EINVAL;
    }
    return 0;
}

int qcow2_read_l1(struct qcow2 *s, uint64_t off, uint32_t n, uint64_t **out)
{
    uint64_t *l1 = xzalloc((size_t)MAX(n, 1u) * 8);
    int r = n ? blk_file_pread(&s->f, off, l1, (size_t)n * 8) : 0;
    if (r < 0) {
        free(l1);
        return r;
    }
    for (uint32_t i = 0; i < n; i++)
        l1[i] = be64_get(&l1[i]);
    *out = l1;
    return 0;
}

static void qcow2_free_state(struct qcow2 *s)
{
    qcow2_snapshots_free(s);
    qcow2_cache_destroy(&s->l2c);
    qcow2_cache_destroy(&s->rbc);
    free(s->l1);
    free(s->rt);
    free(s->backing_file);
    free(s->backing_fmt);
    free(s->other_ext);
    free(s->zbuf);
    free(s->cbuf);
    blk_file_close(&s->f);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int qcow2_open(struct blk *b, const char *filename, const struct blk_open_opts *opts)
{
    struct qcow2 *s = xzalloc(sizeof(*s));
    s->b = b;
    pthread_mutex_init(&s->lock, NULL);
    int r = blk_file_open(&s->f, filename, b->read_only, b->cache);
    if (r < 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return r;
    }
    b->opaque = s;
    r = qcow2_read_header(s, b);
    if (r == 0 && (s->incompat & QCOW2_INCOMPAT_CORRUPT) && !b->read_only && !opts->no_repair) {
        log_error("%s: the qcow2 image is marked corrupt; open it read-only, or repair it with "
                  "'vmkit img check -r all'", filename);
        r = -EIO;
    }
    if (r == 0)
        r = qcow2_load_refcount_table(s);
    if (r == 0)
        r = qcow2_read_l1(s, s->l1_offset, s->l1_size, &s->l1);
    if (r < 0) {
        b->opaque = NULL;
        qcow2_free_state(s);
        return r;
    }
    uint64_t cs = s->cluster_size;
    unsigned nl2 = (unsigned)MIN(MAX(4 * MiB / cs, 4), 1024);
    unsigned nrb = (unsigned)MIN(MAX(1 * MiB / cs, 4), 256);
    qcow2_cache_init(&s->l2c, nl2, cs, true);
    qcow2_cache_init(&s->rbc, nrb, cs, false);
    s->zbuf = xmalloc(cs);
    s->cbuf = xmalloc(2 * cs); /* the size field allows compressed data up to 2 clusters */
    s->free_hint = 1;
    r = qcow2_snapshots_load(s);
    if (r == 0 && !b->read_only && s->autoclear) {
        /* We do not maintain what autoclear features describe (bitmaps...): clearing the
         * bits tells other programs that data is stale, as the spec requires. */
        uint64_t be = 0;
        s->autoclear = 0;
        r = blk_file_pwrite(&s->f, 88, &be, 8);
    }
    if (r == 0 && !b->read_only && (s->incompat & QCOW2_INCOMPAT_DIRTY) && !opts->no_repair) {
        struct blk_check_result res;
        log_info("%s: repairing refcounts of a dirty qcow2 image (lazy refcounts)", filename);
        s->quiet_check = true;
        r = qcow2_check_locked(s, BLK_FIX_ERRORS | BLK_FIX_LEAKS, &res);
        s->quiet_check = false;
        if (r == 0 && (res.corruptions_fixed || res.leaks_fixed))
            log_info("%s: repaired %llu leaked clusters and %llu errors", filename,
                     (unsigned long long)res.leaks_fixed,
                     (unsigned long long)res.corruptions_fixed);
        if (r == 0)
            r = qcow2_flush_all(s);
        if (r == 0)
            r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, false);
        if (r < 0)
            log_error("%s: cannot repair the dirty qcow2 image: %s", filename, strerror(-r));
    }
    if (r == 0 && (s->backing_file || opts->backing_override) && !opts->no_backing) {
        const char *name = opts->backing_override ? opts->backing_override : s->backing_file;
        const char *fmt = opts->backing_override ? opts->backing_format_override : s->backing_fmt;
        if (opts->backing_format_override)
            fmt = opts->backing_format_override;
        r = blk_open_backing(b, name, fmt, 0, &b->backing);
    }
    if (r < 0) {
        b->opaque = NULL;
        qcow2_free_state(s);
        return r;
    }
    return 0;
}

static void qcow2_close(struct blk *b)
{
    struct qcow2 *s = b->opaque;
    if (!s)
        return;
    if (!b->read_only && !s->snapshot_view) {
        int r = qcow2_flush_all(s);
        if (r == 0 && s->dirty_marked)
            qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, false);
        if (r < 0)
            log_error("%s: flushing qcow2 metadata on close failed: %s", b->filename,
                      strerror(-r));
    }
    qcow2_free_state(s);
    b->opaque = NULL;
}

static int q_preadv(struct blk *b, uint64_t off, const struct iovec *iov, int iovcnt)
{
    struct qcow2 *s = b->opaque;
    struct qcow2_rdseg *segs = NULL;
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_preadv_plan(s, off, iov, iovcnt, &segs, &n);
    if (r == 0 && n)
        __atomic_add_fetch(&s->readers, 1, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && n) {
        r = qcow2_rdseg_run(s, segs, n, iov, iovcnt);
        __atomic_sub_fetch(&s->readers, 1, __ATOMIC_RELEASE);
    }
    free(segs);
    return r;
}

static int q_pwritev(struct blk *b, uint64_t off, const struct iovec *iov, int iovcnt)
{
    struct qcow2 *s = b->opaque;
    size_t len = blk_iov_size(iov, iovcnt);
    /* Overwrites of owned clusters run concurrently, outside the lock; allocating writes
     * (and anything touching metadata) stay serialized below. */
    struct qcow2_rdseg *segs = NULL;
    size_t nsegs = 0;
    pthread_mutex_lock(&s->lock);
    int fr = qcow2_pwrite_plan(s, off, len, &segs, &nsegs);
    if (fr == 0)
        __atomic_add_fetch(&s->readers, 1, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&s->lock);
    if (fr == 0) {
        fr = qcow2_wrseg_run(s, segs, nsegs, iov, iovcnt);
        __atomic_sub_fetch(&s->readers, 1, __ATOMIC_RELEASE);
        free(segs);
        return fr;
    }
    uint8_t *buf = iovcnt == 1 ? iov[0].iov_base : xmalloc(len);
    if (iovcnt != 1)
        blk_iov_to_buf(iov, iovcnt, 0, buf, len);
    pthread_mutex_lock(&s->lock);
    int r = qcow2_pwrite_locked(s, off, buf, len);
    pthread_mutex_unlock(&s->lock);
    if (iovcnt != 1)
        free(buf);
    return r;
}

/* io_uring fast path: reads, and overwrites of owned clusters, whose clusters are mapped by
 * cached L2 tables and contiguous on the host go straight to the ring (no pool thread).
 * The clusters are counted in s->readers until the request is reaped, like the pool's
 * lock-free data I/O. Only trylock here: the submitting thread also reaps, so it must
 * never wait for the lock while a holder waits for s->readers. */
static void q_aio_done(struct blk_req *r)
{
    struct qcow2 *s = r->done_opaque;
    __atomic_sub_fetch(&s->readers, 1, __ATOMIC_RELEASE);
}

/* A short transfer is redone blocking by the reaper: at the host offset, without the lock
 * (the clusters are still held). */
static int q_aio_redo(struct blk_req *r)
{
    struct qcow2 *s = r->done_opaque;
    return r->op == BLK_OP_READ ? blk_file_preadv(&s->f, r->offset, r->iov, r->iovcnt)
                                : blk_file_pwritev(&s->f, r->offset, r->iov, r->iovcnt);
}

static int q_aio_rw(struct blk *b, struct blk_req *r)
{
    struct qcow2 *s = b->opaque;
    bool write = r->op == BLK_OP_WRITE;
    if ((r->op != BLK_OP_READ && !write) || r->len == 0 || r->iovcnt > 1024)
        return -ENOTSUP;
    /* writethrough also flushes metadata after each write: that is the pool's job. */
    if (write && (s->f.sync_writes || b->cache == BLK_CACHE_WRITETHROUGH ||
                  b->cache == BLK_CACHE_DIRECTSYNC))
        return -ENOTSUP;
    if (s->f.direct)
        for (int i = 0; i < r->iovcnt; i++)
            if ((uintptr_t)r->iov[i].iov_base % s->f.align || r->iov[i].iov_len % s->f.align)
                return -ENOTSUP;
    if (pthread_mutex_trylock(&s->lock) != 0)
        return -ENOTSUP;
    uint64_t host = 0;
    int m = qcow2_map_cached(s, r->offset, r->len, write, &host);
    if (m == 0 && (!s->f.direct || host % s->f.align == 0))
        __atomic_add_fetch(&s->readers, 1, __ATOMIC_ACQUIRE);
    else
        m = -EAGAIN;
    pthread_mutex_unlock(&s->lock);
    if (m < 0)
        return -ENOTSUP;
    uint64_t guest = r->offset;
    int (*work)(struct blk_req *) = r->work;
    r->offset = host;
    r->sync_write = false;
    r->done = q_aio_done;
    r->done_opaque = s;
    r->work = q_aio_redo;
    int ret = blk_aio_submit_uring(b->aio, r, s->f.fd);
    if (ret < 0) {
        r->offset = guest;
        r->done = NULL;
        r->done_opaque = NULL;
        r->work = work;
        __atomic_sub_fetch(&s->readers, 1, __ATOMIC_RELEASE);
    }
    return ret;
}

static int q_flush(struct blk *b)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    int r = b->read_only ? 0 : qcow2_flush_all(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int q_discard(struct blk *b, uint64_t off, uint64_t len)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_zero_or_discard(s, off, len, QZ_DISCARD);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int q_write_zeroes(struct blk *b, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_zero_or_discard(s, off, len,
                                  (flags & BLK_ZERO_MAY_UNMAP) ? QZ_ZERO_UNMAP : QZ_ZERO);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int q_info(struct blk *b, struct blk_info *info)
{
    struct qcow2 *s = b->opaque;
    info->format = "qcow2";
    info->actual_size = blk_file_allocated(&s->f);
    info->cluster_size = s->cluster_size;
    info->backing_file = s->backing_file;
    info->backing_format = s->backing_fmt;
    info->dirty = s->incompat & QCOW2_INCOMPAT_DIRTY;
    info->qcow2_version = (int)s->version;
    info->lazy_refcounts = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    info->corrupt = s->incompat & QCOW2_INCOMPAT_CORRUPT;
    info->extended_l2 = s->extended_l2;
    info->refcount_bits = s->refcount_bits;
    info->compression_type = s->compression_type == 1 ? "zstd" : "zlib";
    return 0;
}

static int q_block_status(struct blk *b, uint64_t off, uint64_t len, uint64_t *pnum,
                          unsigned *status, uint64_t *map, struct blk **file)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_block_status_locked(s, off, len, pnum, status, map);
    pthread_mutex_unlock(&s->lock);
    *file = b;
    if (r == 0 && *status == 0 && b->backing) {
        /* Unallocated here: what the backing chain says, minus "allocated". */
        uint64_t n = *pnum;
        if (off >= b->backing->size) {
            *status = BLK_STATUS_ZERO;
            return 0;
        }
        n = MIN(n, b->backing->size - off);
        r = blk_block_status(b->backing, off, n, pnum, status, map, file);
        *status &= ~BLK_STATUS_ALLOCATED;
    }
    return r;
}

/* Several clusters of one compressed write, compressed by a few threads. */
struct compress_job {
    struct qcow2 *s;
    const uint8_t *buf;
    size_t len;      /* bytes at buf; only the last cluster may be partial */
    size_t n;        /* clusters */
    uint8_t *out;    /* n clusters */
    long *clen;
    size_t next;     /* next cluster to take (atomic) */
};

static void *compress_worker(void *arg)
{
    struct compress_job *j = arg;
    uint64_t cs = j->s->cluster_size;
    for (;;) {
        size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->n)
            break;
        size_t l = (size_t)MIN(cs, j->len - i * cs);
        j->clen[i] = qcow2_compress_cluster(j->s, j->buf + i * cs, l, j->out + i * cs);
    }
    return NULL;
}

#define COMPRESS_MAX_THREADS 8
#define COMPRESS_BATCH_BYTES (8 * MiB)

/* Compression is the slow part of convert -c: clusters are compressed in parallel, then
 * stored one by one in guest order under the lock (so the file layout is as sequential as
 * with one thread, and the metadata ordering is the single-cluster path's). */
static int q_pwrite_compressed_multi(struct qcow2 *s, uint64_t off, const uint8_t *buf,
                                     size_t len)
{
    uint64_t cs = s->cluster_size;
    size_t batch = (size_t)MAX(COMPRESS_BATCH_BYTES / cs, 1);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nthreads = (unsigned)MIN(MAX(ncpu, 1), COMPRESS_MAX_THREADS);
    uint8_t *out = xmalloc(batch * cs);
    long *clen = xmalloc(batch * sizeof(*clen));
    int r = 0;
    for (size_t pos = 0; pos < len && r == 0;) {
        size_t blen = (size_t)MIN((uint64_t)batch * cs, len - pos);
        struct compress_job j = {.s = s, .buf = buf + pos, .len = blen,
                                 .n = DIV_ROUND_UP(blen, cs), .out = out, .clen = clen};
        pthread_t th[COMPRESS_MAX_THREADS];
        unsigned started = 0;
        for (unsigned t = 1; t < nthreads && t < j.n; t++)
            if (pthread_create(&th[started], NULL, compress_worker, &j) == 0)
                started++;
        compress_worker(&j);
        for (unsigned t = 0; t < started; t++)
            pthread_join(th[t], NULL);
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < j.n && r == 0; i++) {
            size_t l = (size_t)MIN(cs, blen - i * cs);
            r = qcow2_store_compressed_locked(s, off + pos + i * cs, buf + pos + i * cs, l,
                                              out + i * cs, clen[i]);
        }
        pthread_mutex_unlock(&s->lock);
        pos += blen;
    }
    free(clen);
    free(out);
    return r;
}

static int q_pwrite_compressed(struct blk *b, uint64_t off, const void *buf, size_t len)
{
    struct qcow2 *s = b->opaque;
    uint64_t cs = s->cluster_size;
    if (len > cs) {
        if (off % cs || (len % cs && off + len != b->size)) {
            log_error("%s: compressed writes must cover whole clusters (%llu bytes)",
                      b->filename, (unsigned long long)cs);
            return -EINVAL;
        }
        return q_pwrite_compressed_multi(s, off, buf, len);
    }
    pthread_mutex_lock(&s->lock);
    int r = qcow2_write_compressed_locked(s, off, buf, len);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int q_change_backing(struct blk *b, const char *file, const char *fmt)
{
    struct qcow2 *s = b->opaque;
    if (file && strlen(file) > QCOW2_MAX_BACKING_NAME) {
        log_error("%s: backing file name too long (max %d bytes)", b->filename,
                  QCOW2_MAX_BACKING_NAME);
        return -EINVAL;
    }
    if (fmt && !blk_driver_find(fmt)) {
        log_error("%s: unknown backing format '%s' (raw, qcow2)", b->filename, fmt);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    char *of = s->backing_file, *ofmt = s->backing_fmt;
    s->backing_file = file && *file ? xstrdup(file) : NULL;
    s->backing_fmt = s->backing_file && fmt ? xstrdup(fmt) : NULL;
    int r = qcow2_flush_all(s);
    if (r == 0)
        r = qcow2_write_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        free(s->backing_file);
        free(s->backing_fmt);
        s->backing_file = of;
        s->backing_fmt = ofmt;
    } else {
        free(of);
        free(ofmt);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int q_make_empty(struct blk *b)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    /* Tables shared with internal snapshots are copied first, so snapshots keep their data. */
    int r = qcow2_zero_or_discard(s, 0, b->size, QZ_UNALLOC);
    if (r == 0)
        r = qcow2_flush_all(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

const struct blk_driver blk_driver_qcow2 = {
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .preadv = q_preadv,
    .pwritev = q_pwritev,
    .aio_rw = q_aio_rw,
    .flush = q_flush,
    .discard = q_discard,
    .write_zeroes = q_write_zeroes,
    .info = q_info,
    .block_status = q_block_status,
    .check = qcow2_check,
    .create = qcow2_create,
    .truncate = qcow2_truncate,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .pwrite_compressed = q_pwrite_compressed,
    .change_backing = q_change_backing,
    .amend = qcow2_amend,
    .make_empty = q_make_empty,
};
