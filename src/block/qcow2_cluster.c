/* qcow2 guest I/O: L1/L2 lookup, reads through the chain, allocating writes, zero/discard. */
#include "block/qcow2.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t qcow2_l2_get(struct qcow2 *s, const uint8_t *l2, uint64_t idx, uint64_t *bitmap)
{
    if (s->extended_l2) {
        if (bitmap)
            *bitmap = be64_get(l2 + idx * 16 + 8);
        return be64_get(l2 + idx * 16);
    }
    if (bitmap)
        *bitmap = 0;
    return be64_get(l2 + idx * 8);
}

void qcow2_l2_set(struct qcow2 *s, uint8_t *l2, uint64_t idx, uint64_t e, uint64_t bitmap)
{
    if (s->extended_l2) {
        be64_put(l2 + idx * 16, e);
        be64_put(l2 + idx * 16 + 8, bitmap);
    } else {
        be64_put(l2 + idx * 8, e);
    }
}

enum qcow2_ctype qcow2_entry_type(struct qcow2 *s, uint64_t e)
{
    if (e & QCOW_OFLAG_COMPRESSED)
        return QC_COMPRESSED;
    if (!s->extended_l2 && (e & QCOW_OFLAG_ZERO) && s->version >= 3)
        return QC_ZERO;
    return (e & L2E_OFFSET_MASK) ? QC_NORMAL : QC_UNALLOC;
}

void qcow2_compressed_range(struct qcow2 *s, uint64_t e, uint64_t *off, uint64_t *len)
{
    uint64_t coff = e & s->coffset_mask;
    uint64_t nb = ((e >> s->csize_shift) & s->csize_mask) + 1;
    *off = coff & ~511ull;
    *len = nb * 512;
}

/* Host clusters an entry holds a reference to (for freeing it). */
static void entry_host_range(struct qcow2 *s, uint64_t e, uint64_t *off, uint64_t *len)
{
    *off = *len = 0;
    if (e & QCOW_OFLAG_COMPRESSED) {
        qcow2_compressed_range(s, e, off, len);
    } else if (e & L2E_OFFSET_MASK) {
        *off = e & L2E_OFFSET_MASK;
        *len = s->cluster_size;
    }
}

/* Deferred frees: references dropped by table updates are released together, after the
 * tables are stable. */
struct free_list {
    uint64_t *off, *len;
    size_t n, cap;
};

static void free_list_add(struct free_list *fl, uint64_t off, uint64_t len)
{
    if (!len)
        return;
    if (fl->n == fl->cap) {
        fl->cap = fl->cap ? fl->cap * 2 : 16;
        fl->off = xrealloc(fl->off, fl->cap * sizeof(uint64_t));
        fl->len = xrealloc(fl->len, fl->cap * sizeof(uint64_t));
    }
    fl->off[fl->n] = off;
    fl->len[fl->n++] = len;
}

static int free_list_run(struct qcow2 *s, struct free_list *fl)
{
    int r = 0;
    if (fl->n) {
        r = qcow2_cache_flush(s, &s->l2c);
        if (r == 0)
            r = qcow2_sync(s);
        for (size_t i = 0; i < fl->n && r == 0; i++) {
            r = qcow2_update_refcount(s, fl->off[i], fl->len[i], -1);
            if (r == 0 && s->b->discard_unmap) {
                uint64_t cs = s->cluster_size, rc;
                for (uint64_t c = fl->off[i] / cs; c <= (fl->off[i] + fl->len[i] - 1) / cs; c++)
                    if (qcow2_get_refcount(s, c, &rc) == 0 && rc == 0)
                        (void)blk_file_discard(&s->f, c * cs, cs);
            }
        }
    }
    free(fl->off);
    free(fl->len);
    memset(fl, 0, sizeof(*fl));
    return r;
}

/* Looks up the L2 table for reading; *l2 NULL when the L1 entry is empty. */
static int l2_lookup(struct qcow2 *s, uint64_t guest, uint8_t **l2, uint64_t *idx)
{
    uint64_t l1_idx = guest >> (s->cluster_bits + s->l2_bits);
    *idx = (guest >> s->cluster_bits) & (s->l2_entries - 1);
    *l2 = NULL;
    if (l1_idx >= s->l1_size)
        return 0;
    uint64_t l2off = s->l1[l1_idx] & L1E_OFFSET_MASK;
    if (!l2off)
        return 0;
    return qcow2_cache_get(s, &s->l2c, l2off, true, l2, NULL);
}

static int read_compressed(struct qcow2 *s, uint64_t e, uint8_t *out)
{
    uint64_t coff = e & s->coffset_mask;
    uint64_t nb = ((e >> s->csize_shift) & s->csize_mask) + 1;
    uint64_t csize = nb * 512 - (coff & 511);
    int r = blk_file_pread(&s->f, coff, s->cbuf, csize);
    if (r < 0)
        return r;
    r = qcow2_decompress(s, s->cbuf, csize, out, s->cluster_size);
    if (r < 0)
        log_once(LOG_ERROR, "%s: corrupt compressed cluster at host offset 0x%llx",
                 s->b->filename, (unsigned long long)coff);
    return r;
}

/* Slices [skip, skip+len) of an iovec into out (at most iovcnt entries). */
static int iov_slice(const struct iovec *iov, int iovcnt, size_t skip, size_t len,
                     struct iovec *out)
{
    int n = 0;
    for (int i = 0; i < iovcnt && len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t k = MIN(iov[i].iov_len - skip, len);
        out[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
        out[n++].iov_len = k;
        len -= k;
        skip = 0;
    }
    return n;
}

static void seg_add(struct qcow2_rdseg **segs, size_t *n, size_t *cap, bool backing,
                    uint64_t addr, size_t pos, uint64_t len)
{
    if (*n) {
        struct qcow2_rdseg *l = &(*segs)[*n - 1];
        if (l->backing == backing && l->addr + l->len == addr && l->pos + l->len == pos) {
            l->len += len;
            return;
        }
    }
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *segs = xrealloc(*segs, *cap * sizeof(**segs));
    }
    (*segs)[(*n)++] = (struct qcow2_rdseg){.backing = backing, .addr = addr, .pos = pos, .len = len};
}

int qcow2_preadv_locked(struct qcow2 *s, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return qcow2_preadv_plan(s, off, iov, iovcnt, NULL, NULL);
}

int qcow2_rdseg_run(struct qcow2 *s, const struct qcow2_rdseg *segs, size_t n,
                    const struct iovec *iov, int iovcnt)
{
    struct iovec stack[32], *sub = iovcnt <= 32 ? stack : xmalloc(sizeof(*sub) * iovcnt);
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        int cnt = iov_slice(iov, iovcnt, segs[i].pos, segs[i].len, sub);
        r = segs[i].backing ? blk_backing_preadv(s->b->backing, segs[i].addr, sub, cnt)
                            : blk_file_preadv(&s->f, segs[i].addr, sub, cnt);
    }
    if (sub != stack)
        free(sub);
    return r;
}

int qcow2_pwrite_plan(struct qcow2 *s, uint64_t off, uint64_t len, struct qcow2_rdseg **segs,
                      size_t *nsegs)
{
    size_t cap = 0;
    *segs = NULL;
    *nsegs = 0;
    if (s->snapshot_view || s->extended_l2 || s->b->read_only)
        return -EAGAIN;
    uint64_t cs = s->cluster_size;
    for (uint64_t pos = 0; pos < len;) {
        uint64_t guest = off + pos;
        uint64_t inc = guest & (cs - 1);
        uint64_t n = MIN(len - pos, cs - inc);
        uint8_t *l2;
        uint64_t idx;
        int r = l2_lookup(s, guest, &l2, &idx);
        if (r < 0 || !l2)
            goto slow;
        uint64_t e = qcow2_l2_get(s, l2, idx, NULL);
        uint64_t host = e & L2E_OFFSET_MASK;
        /* Only clusters this image alone owns are overwritten in place: anything else
         * (unallocated, zero, compressed, shared with a snapshot) changes metadata. */
        if (qcow2_entry_type(s, e) != QC_NORMAL || !(e & QCOW_OFLAG_COPIED) || !host ||
            (host & (cs - 1)))
            goto slow;
        seg_add(segs, nsegs, &cap, false, host + inc, (size_t)pos, n);
        pos += n;
    }
    return 0;
slow:
    free(*segs);
    *segs = NULL;
    *nsegs = 0;
    return -EAGAIN;
}

int qcow2_map_cached(struct qcow2 *s, uint64_t off, uint64_t len, bool write, uint64_t *host)
{
    if (s->extended_l2 || len == 0 || (write && (s->snapshot_view || s->b->read_only)))
        return -EAGAIN;
    uint64_t cs = s->cluster_size, first = 0;
    for (uint64_t pos = 0; pos < len;) {
        uint64_t guest = off + pos;
        uint64_t inc = guest & (cs - 1);
        uint64_t n = MIN(len - pos, cs - inc);
        uint64_t l1_idx = guest >> (s->cluster_bits + s->l2_bits);
        if (l1_idx >= s->l1_size)
            return -EAGAIN;
        uint64_t l2off = s->l1[l1_idx] & L1E_OFFSET_MASK;
        if (!l2off || (l2off & (cs - 1)))
            return -EAGAIN;
        uint8_t *l2 = qcow2_cache_peek(&s->l2c, l2off);
        if (!l2)
            return -EAGAIN;
        uint64_t e = qcow2_l2_get(s, l2, (guest >> s->cluster_bits) & (s->l2_entries - 1), NULL);
        uint64_t h = e & L2E_OFFSET_MASK;
        if (qcow2_entry_type(s, e) != QC_NORMAL || !h || (h & (cs - 1)) ||
            (write && !(e & QCOW_OFLAG_COPIED)))
            return -EAGAIN;
        if (pos == 0)
            first = h + inc;
        else if (h + inc != first + pos)
            return -EAGAIN; /* not contiguous on the host: the pool splits it */
        pos += n;
    }
    *host = first;
    return 0;
}

int qcow2_wrseg_run(struct qcow2 *s, const struct qcow2_rdseg *segs, size_t n,
                    const struct iovec *iov, int iovcnt)
{
    struct iovec stack[32], *sub = iovcnt <= 32 ? stack : xmalloc(sizeof(*sub) * iovcnt);
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        int cnt = iov_slice(iov, iovcnt, segs[i].pos, segs[i].len, sub);
        r = blk_file_pwritev(&s->f, segs[i].addr, sub, cnt);
    }
    if (sub != stack)
        free(sub);
    return r;
}

int qcow2_preadv_plan(struct qcow2 *s, uint64_t off, const struct iovec *iov, int iovcnt,
                      struct qcow2_rdseg **segs, size_t *nsegs)
{
    size_t cap = 0;
    if (nsegs)
        *nsegs = 0;
    size_t total = blk_iov_size(iov, iovcnt);
    struct iovec stack[32], *sub = iovcnt <= 32 ? stack : xmalloc(sizeof(*sub) * iovcnt);
    uint64_t cs = s->cluster_size;
    int r = 0;
    for (size_t pos = 0; pos < total && r == 0;) {
        uint64_t guest = off + pos;
        uint64_t inc = guest & (cs - 1);
        uint64_t n = MIN(total - pos, cs - inc);
        uint8_t *l2;
        uint64_t idx, e = 0, bitmap = 0;
        r = l2_lookup(s, guest, &l2, &idx);
        if (r < 0)
            break;
        if (l2)
            e = qcow2_l2_get(s, l2, idx, &bitmap);
        enum qcow2_ctype t = qcow2_entry_type(s, e);
        if (s->extended_l2 && t != QC_COMPRESSED) {
            uint64_t sc = inc / s->subcluster_size;
            n = MIN(n, (sc + 1) * s->subcluster_size - inc);
            bool a = (bitmap >> sc) & 1, z = (bitmap >> (32 + sc)) & 1;
            if (a && z) {
                log_once(LOG_ERROR, "%s: corrupt qcow2 image: subcluster both allocated and "
                         "zero at guest offset 0x%llx", s->b->filename,
                         (unsigned long long)guest);
                r = -EIO;
                break;
            }
            if (a && !(e & L2E_OFFSET_MASK)) {
                log_once(LOG_ERROR, "%s: corrupt qcow2 image: allocated subcluster without a "
                         "host cluster", s->b->filename);
                r = -EIO;
                break;
            }
            t = a ? QC_NORMAL : z ? QC_ZERO : QC_UNALLOC;
        }
        int cnt = iov_slice(iov, iovcnt, pos, n, sub);
        switch (t) {
        case QC_UNALLOC:
            if (s->b->backing && segs)
                seg_add(segs, nsegs, &cap, true, guest, pos, n);
            else if (s->b->backing)
                r = blk_backing_preadv(s->b->backing, guest, sub, cnt);
            else
                blk_iov_memset(sub, cnt, 0, 0, n);
            break;
        case QC_ZERO:
            blk_iov_memset(sub, cnt, 0, 0, n);
            break;
        case QC_NORMAL: {
            uint64_t host = e & L2E_OFFSET_MASK;
            if (host & (cs - 1)) {
                log_once(LOG_ERROR, "%s: corrupt qcow2 image: data cluster at unaligned offset "
                         "0x%llx", s->b->filename, (unsigned long long)host);
                r = -EIO;
                break;
            }
            if (segs)
                seg_add(segs, nsegs, &cap, false, host + inc, pos, n);
            else
                r = blk_file_preadv(&s->f, host + inc, sub, cnt);
            break;
        }
        case QC_COMPRESSED:
            r = read_compressed(s, e, s->zbuf);
            if (r == 0)
                blk_buf_to_iov(sub, cnt, 0, s->zbuf + inc, n);
            break;
        }
        pos += n;
    }
    if (sub != stack)
        free(sub);
    return r;
}

int qcow2_read_guest(struct qcow2 *s, uint64_t off, void *buf, size_t len)
{
    struct iovec iov = {buf, len};
    return qcow2_preadv_locked(s, off, &iov, 1);
}

int qcow2_write_l1_entry(struct qcow2 *s, uint64_t idx)
{
    uint64_t v;
    be64_put(&v, s->l1[idx]);
    return blk_file_pwrite(&s->f, s->l1_offset + idx * 8, &v, 8);
}

/* Returns a writable (refcount 1) L2 table for guest offset, allocating or copying it. */
int qcow2_get_l2_write(struct qcow2 *s, uint64_t guest, uint8_t **l2, unsigned *slot)
{
    uint64_t cs = s->cluster_size;
    uint64_t l1_idx = guest >> (s->cluster_bits + s->l2_bits);
    if (l1_idx >= s->l1_size) {
        log_once(LOG_ERROR, "%s: guest offset 0x%llx is beyond the qcow2 L1 table",
                 s->b->filename, (unsigned long long)guest);
        return -EIO;
    }
    uint64_t l1e = s->l1[l1_idx];
    uint64_t old = l1e & L1E_OFFSET_MASK;
    int r;
    if (old && (l1e & QCOW_OFLAG_COPIED))
        return qcow2_cache_get(s, &s->l2c, old, true, l2, slot);
    if (old) {
        uint64_t rc;
        r = qcow2_get_refcount(s, old / cs, &rc);
        if (r < 0)
            return r;
        if (rc == 1) {
            s->l1[l1_idx] |= QCOW_OFLAG_COPIED;
            r = qcow2_write_l1_entry(s, l1_idx);
            if (r < 0)
                return r;
            return qcow2_cache_get(s, &s->l2c, old, true, l2, slot);
        }
        if (rc == 0) {
            log_once(LOG_ERROR, "%s: corrupt qcow2 image: L2 table 0x%llx has refcount 0; run "
                     "'vmkit img check -r all'", s->b->filename, (unsigned long long)old);
            return -EIO;
        }
    }
    int64_t nl2 = qcow2_alloc_clusters(s, 1);
    if (nl2 < 0)
        return (int)nl2;
    uint8_t *tmp = NULL;
    if (old) {
        uint8_t *src;
        r = qcow2_cache_get(s, &s->l2c, old, true, &src, NULL);
        if (r < 0)
            return r;
        tmp = xmalloc(cs);
        memcpy(tmp, src, cs);
    }
    /* New table: refcount stable, then the table, then the L1 entry that publishes it. */
    r = qcow2_cache_flush(s, &s->rbc);
    uint8_t *dst;
    unsigned sl;
    if (r == 0)
        r = qcow2_cache_get(s, &s->l2c, (uint64_t)nl2, false, &dst, &sl);
    if (r == 0) {
        if (tmp)
            memcpy(dst, tmp, cs);
        r = blk_file_pwrite(&s->f, (uint64_t)nl2, dst, cs);
    }
    free(tmp);
    if (r == 0 && old)
        r = qcow2_sync(s);
    if (r == 0) {
        s->l1[l1_idx] = (uint64_t)nl2 | QCOW_OFLAG_COPIED;
        r = qcow2_write_l1_entry(s, l1_idx);
    }
    if (r == 0 && old)
        r = qcow2_free_clusters(s, old, cs);
    if (r < 0)
        return r;
    return qcow2_cache_get(s, &s->l2c, (uint64_t)nl2, true, l2, slot);
}

static int mark_dirty_bit(struct qcow2 *s)
{
    if (!(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) || s->dirty_marked)
        return 0;
    int r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, true);
    if (r == 0)
        s->dirty_marked = true;
    return r;
}

static uint64_t sc_mask(unsigned first, unsigned last)
{
    uint64_t m = 0;
    for (unsigned i = first; i <= last; i++)
        m |= 1ull << i;
    return m;
}

/* One write inside a single cluster. */
static int write_in_cluster(struct qcow2 *s, uint64_t guest, const uint8_t *data, uint64_t n,
                            struct free_list *fl)
{
    uint64_t cs = s->cluster_size;
    uint64_t cstart = guest & ~(cs - 1), inc = guest - cstart;
    uint8_t *l2;
    unsigned slot;
    int r = qcow2_get_l2_write(s, guest, &l2, &slot);
    if (r < 0)
        return r;
    uint64_t idx = (guest >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t bitmap, e = qcow2_l2_get(s, l2, idx, &bitmap);
    enum qcow2_ctype t = qcow2_entry_type(s, e);
    uint64_t host = (t == QC_COMPRESSED) ? 0 : e & L2E_OFFSET_MASK;
    if (host & (cs - 1)) {
        log_once(LOG_ERROR, "%s: corrupt qcow2 image: unaligned cluster offset 0x%llx",
                 s->b->filename, (unsigned long long)host);
        return -EIO;
    }
    bool owned = false;
    if (host) {
        owned = e & QCOW_OFLAG_COPIED;
        if (!owned) {
            uint64_t rc;
            r = qcow2_get_refcount(s, host / cs, &rc);
            if (r < 0)
                return r;
            owned = rc == 1;
        }
    }

    if (!s->extended_l2) {
        if (t == QC_NORMAL && owned) {
            r = blk_file_pwrite(&s->f, host + inc, data, n);
            if (r == 0 && !(e & QCOW_OFLAG_COPIED)) {
                r = qcow2_get_l2_write(s, guest, &l2, &slot);
                if (r == 0) {
                    qcow2_l2_set(s, l2, idx, e | QCOW_OFLAG_COPIED, 0);
                    qcow2_cache_dirty(&s->l2c, slot);
                }
            }
            return r;
        }
        /* New contents of the whole cluster: what reads return now, with the write on top. */
        uint8_t *buf = xmalloc(cs);
        r = 0;
        if (n < cs) {
            if (t == QC_ZERO || (t == QC_UNALLOC && !s->b->backing))
                memset(buf, 0, cs);
            else
                r = qcow2_read_guest(s, cstart, buf, cs);
        }
        memcpy(buf + inc, data, n);
        uint64_t target = host;
        bool reuse = t == QC_ZERO && host && owned; /* preallocated zero cluster */
        if (!reuse) {
            int64_t a = r == 0 ? qcow2_alloc_clusters(s, 1) : r;
            if (a < 0) {
                free(buf);
                return (int)a;
            }
            target = (uint64_t)a;
        }
        r = blk_file_pwrite(&s->f, target, buf, cs);
        free(buf);
        if (r == 0)
            r = qcow2_get_l2_write(s, guest, &l2, &slot);
        if (r < 0)
            return r;
        qcow2_l2_set(s, l2, idx, target | QCOW_OFLAG_COPIED, 0);
        qcow2_cache_dirty(&s->l2c, slot);
        if (!reuse) {
            uint64_t fo, fl_len;
            entry_host_range(s, e, &fo, &fl_len);
            free_list_add(fl, fo, fl_len);
        }
        return 0;
    }

    /* Extended L2: write whole subclusters, keep the others' state. */
    uint64_t scs = s->subcluster_size;
    unsigned sf = (unsigned)(inc / scs), sl = (unsigned)((inc + n - 1) / scs);
    uint64_t a0 = (uint64_t)sf * scs, a1 = (uint64_t)(sl + 1) * scs;
    uint64_t range = sc_mask(sf, sl);
    if (t == QC_COMPRESSED) {
        a0 = 0;
        a1 = cs;
        range = 0xffffffffull;
    }
    if (host && owned && (bitmap & range) == range) {
        return blk_file_pwrite(&s->f, host + inc, data, n); /* all allocated already */
    }
    uint8_t *buf = xmalloc(cs);
    r = qcow2_read_guest(s, cstart + a0, buf + a0, a1 - a0);
    if (r < 0) {
        free(buf);
        return r;
    }
    memcpy(buf + inc, data, n);
    uint64_t target = host;
    uint64_t nbitmap = (bitmap | range) & ~(range << 32);
    if (t == QC_COMPRESSED)
        nbitmap = 0xffffffffull;
    if (!(host && owned)) {
        int64_t a = qcow2_alloc_clusters(s, 1);
        if (a < 0) {
            free(buf);
            return (int)a;
        }
        target = (uint64_t)a;
        if (host) {
            /* Shared cluster: carry over its allocated subclusters. */
            uint64_t keep = bitmap & 0xffffffffull & ~range;
            for (unsigned i = 0; i < 32 && r == 0; i++)
                if ((keep >> i) & 1)
                    r = blk_file_pread(&s->f, host + i * scs, buf + i * scs, scs);
            for (unsigned i = 0; i < 32 && r == 0; i++)
                if ((keep >> i) & 1)
                    r = blk_file_pwrite(&s->f, target + i * scs, buf + i * scs, scs);
        }
    }
    if (r == 0)
        r = blk_file_pwrite(&s->f, target + a0, buf + a0, a1 - a0);
    free(buf);
    if (r == 0)
        r = qcow2_get_l2_write(s, guest, &l2, &slot);
    if (r < 0)
        return r;
    qcow2_l2_set(s, l2, idx, target | QCOW_OFLAG_COPIED, nbitmap);
    qcow2_cache_dirty(&s->l2c, slot);
    if (target != host) {
        uint64_t fo, fl_len;
        entry_host_range(s, e, &fo, &fl_len);
        free_list_add(fl, fo, fl_len);
    }
    return 0;
}

int qcow2_pwrite_locked(struct qcow2 *s, uint64_t off, const uint8_t *buf, uint64_t len)
{
    if (s->snapshot_view)
        return -EROFS;
    int r = mark_dirty_bit(s);
    struct free_list fl = {0};
    uint64_t cs = s->cluster_size;
    for (uint64_t pos = 0; pos < len && r == 0;) {
        uint64_t guest = off + pos;
        uint64_t n = MIN(len - pos, cs - (guest & (cs - 1)));
        r = write_in_cluster(s, guest, buf + pos, n, &fl);
        pos += n;
    }
    int r2 = free_list_run(s, &fl);
    return r ? r : r2;
}

int qcow2_zero_or_discard(struct qcow2 *s, uint64_t off, uint64_t len, int mode)
{
    if (s->snapshot_view)
        return -EROFS;
    uint64_t cs = s->cluster_size, size = s->b->size;
    int r = mark_dirty_bit(s);
    struct free_list fl = {0};
    bool zero_mode = mode == QZ_ZERO || mode == QZ_ZERO_UNMAP;
    uint8_t *zeros = NULL;
    for (uint64_t pos = 0; pos < len && r == 0;) {
        uint64_t guest = off + pos;
        uint64_t inc = guest & (cs - 1);
        uint64_t n = MIN(len - pos, cs - inc);
        bool full = inc == 0 && (n == cs || guest + n >= size);
        uint64_t l1_idx = guest >> (s->cluster_bits + s->l2_bits);
        /* Whole empty L2 ranges need nothing when no backing file can show through. */
        if (l1_idx < s->l1_size && !(s->l1[l1_idx] & L1E_OFFSET_MASK) &&
            (mode == QZ_UNALLOC || !s->b->backing) && (full || !zero_mode)) {
            uint64_t span = 1ull << (s->cluster_bits + s->l2_bits);
            uint64_t next = (guest & ~(span - 1)) + span;
            pos = MIN(len, next - off);
            continue;
        }
        if (!full) {
            uint8_t *l2;
            uint64_t idx, e = 0, bm = 0;
            r = l2_lookup(s, guest, &l2, &idx);
            if (r < 0)
                break;
            if (l2)
                e = qcow2_l2_get(s, l2, idx, &bm);
            enum qcow2_ctype t = qcow2_entry_type(s, e);
            /* Already reads as zeros: nothing to write (and nothing to allocate). */
            bool reads_zero = s->extended_l2 ? (!e && !bm && !s->b->backing)
                                             : (t == QC_ZERO || (t == QC_UNALLOC && !s->b->backing));
            if (zero_mode && !reads_zero) {
                if (!zeros)
                    zeros = xzalloc(cs);
                r = write_in_cluster(s, guest, zeros, n, &fl);
            }
            pos += n;
            continue;
        }
        bool v2 = s->version < 3;
        if (v2 && zero_mode) {
            /* No zero flag in v2: unallocated reads as zero only without a backing file. */
            uint8_t *l2;
            uint64_t idx, e = 0;
            r = l2_lookup(s, guest, &l2, &idx);
            if (r == 0 && l2)
                e = qcow2_l2_get(s, l2, idx, NULL);
            if (r == 0 && (e || s->b->backing)) {
                if (!s->b->backing && mode == QZ_ZERO_UNMAP) {
                    mode = QZ_UNALLOC; /* handled below as deallocation */
                } else {
                    if (!zeros)
                        zeros = xzalloc(cs);
                    r = write_in_cluster(s, guest, zeros, n, &fl);
                    pos += n;
                    continue;
                }
            } else {
                pos += n;
                continue;
            }
        }
        uint8_t *l2;
        unsigned slot;
        r = qcow2_get_l2_write(s, guest, &l2, &slot);
        if (r < 0)
            break;
        uint64_t idx = (guest >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t bitmap, e = qcow2_l2_get(s, l2, idx, &bitmap);
        enum qcow2_ctype t = qcow2_entry_type(s, e);
        uint64_t ne = 0, nb = 0;
        bool drop = true;
        if (mode == QZ_UNALLOC || (mode == QZ_DISCARD && (!s->b->backing || v2))) {
            ne = 0;
        } else if (s->extended_l2) {
            nb = 0xffffffffull << 32;
            ne = 0;
            if (mode == QZ_ZERO && t == QC_NORMAL && (e & QCOW_OFLAG_COPIED)) {
                ne = e;
                drop = false;
            }
        } else {
            ne = QCOW_OFLAG_ZERO;
            if (mode == QZ_ZERO && t == QC_NORMAL && (e & QCOW_OFLAG_COPIED)) {
                ne = e | QCOW_OFLAG_ZERO;
                drop = false;
            }
        }
        if (ne != e || nb != bitmap) {
            qcow2_l2_set(s, l2, idx, ne, nb);
            qcow2_cache_dirty(&s->l2c, slot);
            if (drop) {
                uint64_t fo, fln;
                entry_host_range(s, e, &fo, &fln);
                free_list_add(&fl, fo, fln);
            }
        }
        pos += n;
    }
    free(zeros);
    int r2 = free_list_run(s, &fl);
    return r ? r : r2;
}

int qcow2_block_status_locked(struct qcow2 *s, uint64_t off, uint64_t len, uint64_t *pnum,
                              unsigned *status, uint64_t *map)
{
    uint64_t cs = s->cluster_size;
    uint64_t done = 0;
    unsigned st0 = 0;
    uint64_t map0 = 0, expect_host = 0;
    while (done < len) {
        uint64_t guest = off + done;
        uint64_t inc = guest & (cs - 1);
        uint64_t n = MIN(len - done, cs - inc);
        uint8_t *l2;
        uint64_t idx, e = 0, bitmap = 0;
        int r = l2_lookup(s, guest, &l2, &idx);
        if (r < 0)
            return r;
        if (l2)
            e = qcow2_l2_get(s, l2, idx, &bitmap);
        enum qcow2_ctype t = qcow2_entry_type(s, e);
        if (s->extended_l2 && t != QC_COMPRESSED) {
            uint64_t sc = inc / s->subcluster_size;
            n = MIN(n, (sc + 1) * s->subcluster_size - inc);
            bool a = (bitmap >> sc) & 1, z = (bitmap >> (32 + sc)) & 1;
            t = a ? QC_NORMAL : z ? QC_ZERO : QC_UNALLOC;
        }
        unsigned st;
        uint64_t host = 0;
        switch (t) {
        case QC_NORMAL:
            st = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET_VALID;
            host = (e & L2E_OFFSET_MASK) + inc;
            break;
        case QC_COMPRESSED:
            st = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED;
            break;
        case QC_ZERO:
            st = BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED;
            break;
        default:
            st = s->b->backing ? 0 : BLK_STATUS_ZERO;
            break;
        }
        if (done == 0) {
            st0 = st;
            map0 = host;
        } else if (st != st0 || (t == QC_NORMAL && host != expect_host)) {
            break;
        }
        expect_host = host + n;
        done += n;
    }
    *pnum = done;
    *status = st0;
    *map = map0;
    return 0;
}

int qcow2_write_compressed_locked(struct qcow2 *s, uint64_t off, const uint8_t *buf,
                                  size_t len)
{
    uint64_t cs = s->cluster_size;
    if (off % cs || len > cs || (len < cs && off + len != s->b->size)) {
        log_error("%s: compressed writes must cover whole clusters (%llu bytes)",
                  s->b->filename, (unsigned long long)cs);
        return -EINVAL;
    }
    if (s->snapshot_view)
        return -EROFS;
    uint8_t *out = xmalloc(cs);
    long clen = qcow2_compress_cluster(s, buf, len, out);
    int r = qcow2_store_compressed_locked(s, off, buf, len, out, clen);
    free(out);
    return r;
}

long qcow2_compress_cluster(struct qcow2 *s, const uint8_t *buf, size_t len, uint8_t *out)
{
    uint64_t cs = s->cluster_size;
    if (len == cs)
        return qcow2_compress(s, buf, cs, out, cs - 512);
    uint8_t *in = xzalloc(cs); /* the image's last, partial cluster: zero-padded */
    memcpy(in, buf, len);
    long clen = qcow2_compress(s, in, cs, out, cs - 512);
    free(in);
    return clen;
}

int qcow2_store_compressed_locked(struct qcow2 *s, uint64_t off, const uint8_t *buf, size_t len,
                                  const uint8_t *out, long clen)
{
    uint64_t cs = s->cluster_size;
    if (s->snapshot_view)
        return -EROFS;
    int r = mark_dirty_bit(s);
    if (r < 0)
        return r;
    if (clen < 0) {
        if (clen != -ENOSPC)
            return (int)clen;
        return qcow2_pwrite_locked(s, off, buf, len); /* incompressible: store it plainly */
    }
    uint64_t coff;
    uint64_t pos = s->compress_pos;
    if (pos && (pos % cs) + (uint64_t)clen <= cs) {
        r = qcow2_update_refcount(s, pos & ~(cs - 1), cs, 1);
        coff = pos;
    } else {
        int64_t a = qcow2_alloc_clusters(s, DIV_ROUND_UP((uint64_t)clen, cs));
        r = a < 0 ? (int)a : 0;
        coff = (uint64_t)a;
    }
    if (r == 0 && coff >= (1ull << s->csize_shift))
        r = -EFBIG;
    if (r == 0)
        r = blk_file_pwrite(&s->f, coff, out, (size_t)clen);
    if (r < 0)
        return r;
    s->compress_pos = ALIGN_UP(coff + (uint64_t)clen, 512);
    if (s->compress_pos % cs == 0)
        s->compress_pos = 0;
    uint64_t nbs = ((coff + (uint64_t)clen - 1) >> 9) - (coff >> 9);
    uint64_t ne = coff | QCOW_OFLAG_COMPRESSED | (nbs << s->csize_shift);
    uint8_t *l2;
    unsigned slot;
    r = qcow2_get_l2_write(s, off, &l2, &slot);
    if (r < 0)
        return r;
    uint64_t idx = (off >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t e = qcow2_l2_get(s, l2, idx, NULL);
    qcow2_l2_set(s, l2, idx, ne, 0);
    qcow2_cache_dirty(&s->l2c, slot);
    struct free_list fl = {0};
    uint64_t fo, fln;
    entry_host_range(s, e, &fo, &fln);
    free_list_add(&fl, fo, fln);
    return free_list_run(s, &fl);
}

int qcow2_grow_l1(struct qcow2 *s, uint64_t min_size)
{
    if (min_size <= s->l1_size)
        return 0;
    if (min_size * 8 > QCOW2_MAX_L1_BYTES) {
        log_error("%s: the image would need an L1 table larger than %u bytes", s->b->filename,
                  QCOW2_MAX_L1_BYTES);
        return -EFBIG;
    }
    uint64_t cs = s->cluster_size;
    uint64_t bytes = ALIGN_UP(min_size * 8, cs);
    int64_t a = qcow2_alloc_clusters(s, bytes / cs);
    if (a < 0)
        return (int)a;
    uint64_t *nl1 = xzalloc(bytes);
    memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
    uint64_t *disk = xzalloc(bytes);
    for (uint64_t i = 0; i < min_size; i++)
        be64_put(&disk[i], nl1[i]);
    int r = qcow2_cache_flush(s, &s->rbc);
    if (r == 0)
        r = blk_file_pwrite(&s->f, (uint64_t)a, disk, bytes);
    free(disk);
    if (r == 0)
        r = qcow2_sync(s);
    uint64_t old_off = s->l1_offset, old_size = s->l1_size;
    if (r == 0) {
        s->l1_offset = (uint64_t)a;
        s->l1_size = (uint32_t)min_size;
        r = qcow2_write_header(s);
        if (r < 0) {
            s->l1_offset = old_off;
            s->l1_size = (uint32_t)old_size;
        }
    }
    if (r < 0) {
        free(nl1);
        return r;
    }
    free(s->l1);
    s->l1 = nl1;
    if (old_size)
        (void)qcow2_free_clusters(s, old_off, ALIGN_UP(old_size * 8, cs));
    return 0;
}
