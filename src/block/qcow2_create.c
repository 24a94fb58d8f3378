/* qcow2 image-level operations: create (with preallocation), resize, amend. */
#include "block/qcow2.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_v2(const char *compat)
{
    return compat && (!strcmp(compat, "0.10") || !strcmp(compat, "v2"));
}

static int backing_size(const char *filename, const struct blk_create_opts *o, uint64_t *size)
{
    /* Resolve relative to the new image, as the backing file will be opened later. */
    struct blk tmp = {.filename = (char *)filename, .cache = BLK_CACHE_WRITEBACK,
                      .aio_kind = BLK_AIO_THREADS};
    struct blk *bk;
    tmp.aio = blk_aio_default();
    int r = blk_open_backing(&tmp, o->backing_file, o->backing_format, 0, &bk);
    if (r < 0)
        return r;
    *size = bk->size;
    blk_close(bk);
    return 0;
}

int qcow2_create(const char *filename, const struct blk_create_opts *o)
{
    uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
    bool v2 = is_v2(o->compat);
    unsigned rbits = o->refcount_bits ? o->refcount_bits : 16;
    const char *pre = o->preallocation ? o->preallocation : "off";
    bool zstd = o->compression_type && !strcmp(o->compression_type, "zstd");
    if (cs < 512 || cs > 2 * MiB || (cs & (cs - 1))) {
        log_error("%s: cluster_size must be a power of two between 512 and 2M", filename);
        return -EINVAL;
    }
    if (rbits == 0 || rbits > 64 || (rbits & (rbits - 1))) {
        log_error("%s: refcount_bits must be 1, 2, 4, 8, 16, 32 or 64", filename);
        return -EINVAL;
    }
    if (v2 && (o->lazy_refcounts || o->extended_l2 || zstd || rbits != 16)) {
        log_error("%s: compat=0.10 does not support lazy_refcounts, extended_l2, "
                  "compression_type=zstd or refcount_bits other than 16; use compat=1.1",
                  filename);
        return -EINVAL;
    }
    if (o->extended_l2 && cs < 16384) {
        log_error("%s: extended_l2 needs cluster_size of at least 16k", filename);
        return -EINVAL;
    }
    if (strcmp(pre, "off") && strcmp(pre, "metadata") && strcmp(pre, "falloc") &&
        strcmp(pre, "full")) {
        log_error("%s: invalid preallocation '%s' (off, metadata, falloc, full)", filename, pre);
        return -EINVAL;
    }
    if (o->backing_file && strcmp(pre, "off")) {
        log_error("%s: preallocation with a backing file is not supported", filename);
        return -EINVAL;
    }
    if (o->backing_file && strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME) {
        log_error("%s: backing file name too long", filename);
        return -EINVAL;
    }
    if (o->backing_format && !blk_driver_find(o->backing_format)) {
        log_error("%s: unknown backing format '%s' (raw, qcow2)", filename, o->backing_format);
        return -EINVAL;
    }
    uint64_t size = o->size;
    if (size == 0 && o->backing_file) {
        int r = backing_size(filename, o, &size);
        if (r < 0)
            return r;
        size = ALIGN_UP(size, 512ull); /* a raw backing file may end mid-sector */
    }
    unsigned cbits = (unsigned)__builtin_ctzll(cs);
    uint64_t l2e = cs / (o->extended_l2 ? 16 : 8);
    uint64_t l1_size = DIV_ROUND_UP(size, cs * l2e);
    if (l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        log_error("%s: size too large for cluster_size %llu", filename, (unsigned long long)cs);
        return -EFBIG;
    }
    bool prealloc = strcmp(pre, "off") != 0;
    uint64_t L = MAX(DIV_ROUND_UP(l1_size * 8, cs), 1);
    uint64_t nl2 = prealloc ? l1_size : 0, ndata = prealloc ? DIV_ROUND_UP(size, cs) : 0;
    uint64_t R = cs * 8 / rbits;
    uint64_t T = 1, B = 1;
    for (int i = 0; i < 64; i++) {
        uint64_t total = 1 + T + B + L + nl2 + ndata;
        uint64_t B2 = DIV_ROUND_UP(total, R);
        uint64_t T2 = MAX(DIV_ROUND_UP(B2 * 8, cs), 1);
        if (B2 == B && T2 == T)
            break;
        B = B2;
        T = T2;
    }
    if (T * cs > QCOW2_MAX_RT_BYTES) {
        log_error("%s: too large for cluster_size %llu and refcount_bits %u", filename,
                  (unsigned long long)cs, rbits);
        return -EFBIG;
    }
    uint64_t rt_off = cs, rb_off = (1 + T) * cs, l1_off = (1 + T + B) * cs;
    uint64_t l2_off = l1_off + L * cs, data_off = l2_off + nl2 * cs;
    uint64_t total = 1 + T + B + L + nl2 + ndata;

    int fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = -errno;
        log_error("%s: cannot create: %s", filename, strerror(errno));
        return e;
    }
    struct blk fake = {.filename = (char *)filename, .size = size};
    struct qcow2 s = {.b = &fake};
    s.f.fd = fd;
    s.f.align = 1;
    s.version = v2 ? 2 : 3;
    s.cluster_bits = cbits;
    s.cluster_size = cs;
    s.l1_size = (uint32_t)l1_size;
    s.l1_offset = l1_off;
    s.rt_offset = rt_off;
    s.rt_clusters = (uint32_t)T;
    s.refcount_order = (uint32_t)__builtin_ctz(rbits);
    s.compat = o->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0;
    s.incompat = (zstd ? QCOW2_INCOMPAT_COMPRESSION : 0) | (o->extended_l2 ? QCOW2_INCOMPAT_EXTL2 : 0);
    s.compression_type = zstd ? 1 : 0;
    s.backing_file = o->backing_file ? (char *)o->backing_file : NULL;
    s.backing_fmt = o->backing_format ? (char *)o->backing_format : NULL;
    int r = ftruncate(fd, (off_t)(total * cs)) < 0 ? -errno : 0;
    if (r == 0)
        r = qcow2_write_header(&s);
    uint8_t *buf = xzalloc(cs);
    /* Refcount table and blocks: every cluster we lay out has refcount 1. */
    for (uint64_t t = 0; t < T && r == 0; t++) {
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < cs / 8; i++) {
            uint64_t k = t * (cs / 8) + i;
            if (k < B)
                be64_put(buf + i * 8, rb_off + k * cs);
        }
        r = blk_file_pwrite(&s.f, rt_off + t * cs, buf, cs);
    }
    for (uint64_t k = 0; k < B && r == 0; k++) {
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < R && k * R + i < total; i++)
            qcow2_rc_set_entry(buf, i, s.refcount_order, 1);
        r = blk_file_pwrite(&s.f, rb_off + k * cs, buf, cs);
    }
    if (prealloc) {
        for (uint64_t t = 0; t < L && r == 0; t++) {
            memset(buf, 0, cs);
            for (uint64_t i = 0; i < cs / 8; i++) {
                uint64_t k = t * (cs / 8) + i;
                if (k < nl2)
                    be64_put(buf + i * 8, (l2_off + k * cs) | QCOW_OFLAG_COPIED);
            }
            r = blk_file_pwrite(&s.f, l1_off + t * cs, buf, cs);
        }
        s.extended_l2 = o->extended_l2;
        for (uint64_t t = 0; t < nl2 && r == 0; t++) {
            memset(buf, 0, cs);
            for (uint64_t i = 0; i < l2e; i++) {
                uint64_t k = t * l2e + i;
                if (k < ndata)
                    qcow2_l2_set(&s, buf, i, (data_off + k * cs) | QCOW_OFLAG_COPIED,
                                 0xffffffffull);
            }
            r = blk_file_pwrite(&s.f, l2_off + t * cs, buf, cs);
        }
        if (r == 0)
            r = blk_file_preallocate(&s.f, data_off, ndata * cs, pre);
    }
    free(buf);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r < 0)
        log_error("%s: creating the qcow2 image failed: %s", filename, strerror(-r));
    return r;
}

/* Allocates data clusters for every unallocated cluster fully inside [from, to) (guest
 * offsets, from cluster aligned), then prepares their contents as `mode` asks. */
static int preallocate_range(struct qcow2 *s, uint64_t from, uint64_t to, const char *mode)
{
    uint64_t cs = s->cluster_size;
    uint64_t span = cs << s->l2_bits;
    int r = 0;
    for (uint64_t g = from; g < to && r == 0;) {
        uint64_t end = MIN(to, (g & ~(span - 1)) + span);
        uint64_t n = DIV_ROUND_UP(end - g, cs);
        uint64_t old_end = qcow2_file_end(s);
        int64_t a = qcow2_alloc_clusters(s, n);
        if (a < 0)
            return (int)a;
        uint8_t *l2;
        unsigned slot;
        r = qcow2_get_l2_write(s, g, &l2, &slot);
        if (r < 0)
            return r;
        uint64_t idx0 = (g >> s->cluster_bits) & (s->l2_entries - 1);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t bm, e = qcow2_l2_get(s, l2, idx0 + i, &bm);
            uint64_t host = (uint64_t)a + i * cs;
            if (e) {
                /* Already mapped (or a zero cluster): the reserved one was never used. */
                r = qcow2_update_refcount(s, host, cs, -1);
                if (r < 0)
                    return r;
                continue;
            }
            qcow2_l2_set(s, l2, idx0 + i, host | QCOW_OFLAG_COPIED,
                         s->extended_l2 ? 0xffffffffull : 0);
        }
        qcow2_cache_dirty(&s->l2c, slot);
        /* The contents must read as zeros: clusters reused below the old end of the file may
         * hold old data; past it the file reads as zeros once it is long enough. */
        uint64_t start = (uint64_t)a, stop = (uint64_t)a + n * cs;
        if (start < old_end)
            r = blk_file_write_zeroes(&s->f, start, MIN(stop, old_end) - start, false);
        if (r == 0 && stop > old_end) {
            uint64_t tail = MAX(start, old_end);
            if (!strcmp(mode, "metadata")) {
                if (qcow2_file_end(s) < stop) /* never cut what was written after us */
                    r = blk_file_truncate(&s->f, stop);
            } else
                r = blk_file_preallocate(&s->f, tail, stop - tail, mode);
        }
        g = end;
    }
    return r;
}

int qcow2_truncate(struct blk *b, uint64_t size, bool shrink, const char *prealloc)
{
    struct qcow2 *s = b->opaque;
    if (prealloc && strcmp(prealloc, "off") && strcmp(prealloc, "metadata") &&
        strcmp(prealloc, "falloc") && strcmp(prealloc, "full")) {
        log_error("%s: invalid preallocation mode '%s' (off, metadata, falloc, full)",
                  b->filename, prealloc);
        return -EINVAL;
    }
    if (prealloc && strcmp(prealloc, "off") && size < b->size) {
        log_error("%s: preallocation is only possible when growing the image", b->filename);
        return -EINVAL;
    }
    if (size > (1ull << 62))
        return -EFBIG;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    uint64_t cs = s->cluster_size, old = b->size;
    if (s->snapshot_view) {
        r = -EROFS;
        goto out;
    }
    if (size < old) {
        if (!shrink) {
            log_error("%s: shrinking the image needs --shrink (data past the new end is lost)",
                      b->filename);
            r = -EINVAL;
            goto out;
        }
        if (s->nb_snapshots) {
            log_error("%s: cannot shrink a qcow2 image that has internal snapshots",
                      b->filename);
            r = -ENOTSUP;
            goto out;
        }
        uint64_t tail_end = MIN(ALIGN_UP(size, cs), old);
        if (size % cs)
            r = qcow2_zero_or_discard(s, size, tail_end - size, QZ_ZERO);
        if (r == 0 && tail_end < old)
            r = qcow2_zero_or_discard(s, tail_end, old - tail_end, QZ_UNALLOC);
        if (r == 0)
            r = qcow2_flush_all(s);
        if (r == 0) {
            b->size = size;
            r = qcow2_write_header(s);
        }
    } else if (size > old) {
        r = qcow2_grow_l1(s, DIV_ROUND_UP(size, cs << s->l2_bits));
        if (r == 0)
            r = qcow2_flush_all(s);
        if (r == 0) {
            b->size = size;
            r = qcow2_write_header(s);
        }
        /* The grown area must read as zeros, not as old tail bytes or the backing file. */
        uint64_t zend = MIN(ALIGN_UP(old, cs), size);
        if (r == 0 && old % cs)
            r = qcow2_zero_or_discard(s, old, zend - old, QZ_ZERO);
        if (r == 0 && b->backing && b->backing->size > zend)
            r = qcow2_zero_or_discard(s, zend, MIN(size, b->backing->size) - zend,
                                      QZ_ZERO_UNMAP);
        if (r == 0 && prealloc && strcmp(prealloc, "off") && zend < size)
            r = preallocate_range(s, zend, size, prealloc);
    }
    if (r == 0)
        r = qcow2_flush_all(s);
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

static bool has_key(const char *optstr, const char *key)
{
    size_t kl = strlen(key);
    const char *p = optstr;
    while (p && *p) {
        if (!strncmp(p, key, kl) && (p[kl] == '=' || p[kl] == ',' || !p[kl]))
            return true;
        /* next option: skip to a single comma (",," is an escaped comma) */
        while (*p && !(*p == ',' && p[1] != ',')) {
            if (*p == ',' && p[1] == ',')
                p++;
            p++;
        }
        if (*p)
            p++;
    }
    return false;
}

static int image_has_zero_clusters(struct qcow2 *s, bool *found)
{
    *found = false;
    uint64_t *offs;
    size_t n = qcow2_distinct_l2(s->l1, s->l1_size, &offs);
    int r = 0;
    for (size_t t = 0; t < n && !*found; t++) {
        uint8_t *l2;
        r = qcow2_cache_get(s, &s->l2c, offs[t], true, &l2, NULL);
        if (r < 0)
            break;
        for (uint64_t j = 0; j < s->l2_entries; j++)
            if (qcow2_entry_type(s, qcow2_l2_get(s, l2, j, NULL)) == QC_ZERO) {
                *found = true;
                break;
            }
    }
    free(offs);
    return r;
}

int qcow2_amend(struct blk *b, const struct blk_create_opts *o, const char *optstr)
{
    struct qcow2 *s = b->opaque;
    const char *fn = b->filename;
    if (has_key(optstr, "cluster_size") && o->cluster_size != s->cluster_size) {
        log_error("%s: cluster_size cannot be changed; use 'vmkit img convert'", fn);
        return -ENOTSUP;
    }
    if (has_key(optstr, "extended_l2") && o->extended_l2 != s->extended_l2) {
        log_error("%s: extended_l2 cannot be changed; use 'vmkit img convert'", fn);
        return -ENOTSUP;
    }
    if (has_key(optstr, "compression_type") && o->compression_type &&
        !!strcmp(o->compression_type, "zstd") == (s->compression_type == 1)) {
        log_error("%s: compression_type cannot be changed; use 'vmkit img convert'", fn);
        return -ENOTSUP;
    }
    if (has_key(optstr, "preallocation")) {
        log_error("%s: preallocation cannot be amended", fn);
        return -ENOTSUP;
    }
    int r = 0;
    pthread_mutex_lock(&s->lock);
    if (s->snapshot_view) {
        r = -EROFS;
        goto out;
    }
    r = qcow2_flush_all(s);
    bool to_v2 = has_key(optstr, "compat") && is_v2(o->compat);
    bool to_v3 = has_key(optstr, "compat") && !is_v2(o->compat);
    if (r == 0 && to_v3 && s->version == 2) {
        s->version = 3;
        s->header_length = 112;
        r = qcow2_write_header(s);
    }
    if (r == 0 && has_key(optstr, "lazy_refcounts")) {
        if (s->version < 3 && o->lazy_refcounts) {
            log_error("%s: lazy_refcounts needs compat=1.1", fn);
            r = -EINVAL;
        } else if (s->version >= 3) {
            s->compat = o->lazy_refcounts ? s->compat | QCOW2_COMPAT_LAZY_REFCOUNTS
                                          : s->compat & ~QCOW2_COMPAT_LAZY_REFCOUNTS;
            if (!o->lazy_refcounts && s->dirty_marked) {
                r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, false);
                s->dirty_marked = false;
            }
            if (r == 0)
                r = qcow2_write_header(s);
        }
    }
    if (r == 0 && has_key(optstr, "refcount_bits") && o->refcount_bits &&
        o->refcount_bits != s->refcount_bits) {
        if (s->version < 3 && !to_v3) {
            log_error("%s: refcount_bits other than 16 needs compat=1.1", fn);
            r = -EINVAL;
        } else {
            uint32_t *counts;
            uint64_t nb;
            struct blk_check_result res = {0};
            r = qcow2_count_refs(s, &counts, &nb, &res, 0);
            if (r == 0) {
                r = qcow2_rebuild_refcounts(s, counts, nb,
                                            (unsigned)__builtin_ctz(o->refcount_bits));
                free(counts);
            }
        }
    }
    if (r == 0 && to_v2 && s->version >= 3) {
        bool zeros = false;
        r = image_has_zero_clusters(s, &zeros);
        if (r == 0 && (zeros || s->extended_l2 || s->compression_type || s->refcount_order != 4 ||
                       (s->incompat & ~QCOW2_INCOMPAT_DIRTY) || (s->compat & ~QCOW2_COMPAT_LAZY_REFCOUNTS))) {
            log_error("%s: cannot downgrade to compat=0.10: the image uses zero clusters, "
                      "extended L2, zstd, or refcount_bits other than 16", fn);
            r = -ENOTSUP;
        } else if (r == 0) {
            if (s->dirty_marked)
                r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, false);
            s->dirty_marked = false;
            s->compat = 0;
            s->version = 2;
            s->header_length = 72;
            if (r == 0)
                r = qcow2_write_header(s);
        }
    }
    if (r == 0)
        r = qcow2_flush_all(s);
out:
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && has_key(optstr, "size") && o->size != b->size)
        r = qcow2_truncate(b, o->size, false, NULL);
    if (r == 0 && (has_key(optstr, "backing_file") || has_key(optstr, "backing_fmt")))
        r = blk_change_backing(b, has_key(optstr, "backing_file") ? o->backing_file
                                                                  : s->backing_file,
                               has_key(optstr, "backing_fmt") ? o->backing_format : s->backing_fmt);
    return r;
}
