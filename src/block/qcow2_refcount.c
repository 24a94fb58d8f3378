/* qcow2 refcounts: reading and updating entries of any width, allocation, table growth. */
#include "block/qcow2.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>

uint64_t qcow2_rc_get_entry(const uint8_t *rb, uint64_t i, unsigned order)
{
    switch (order) {
    case 0: case 1: case 2: {
        unsigned bits = 1u << order;
        uint64_t bit = i * bits;
        return (rb[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    case 3: return rb[i];
    case 4: return be16_get(rb + 2 * i);
    case 5: return be32_get(rb + 4 * i);
    default: return be64_get(rb + 8 * i);
    }
}

void qcow2_rc_set_entry(uint8_t *rb, uint64_t i, unsigned order, uint64_t v)
{
    switch (order) {
    case 0: case 1: case 2: {
        unsigned bits = 1u << order;
        uint64_t bit = i * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
        rb[bit / 8] = (uint8_t)((rb[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        break;
    }
    case 3: rb[i] = (uint8_t)v; break;
    case 4: be16_put(rb + 2 * i, (uint16_t)v); break;
    case 5: be32_put(rb + 4 * i, (uint32_t)v); break;
    default: be64_put(rb + 8 * i, v); break;
    }
}

int qcow2_load_refcount_table(struct qcow2 *s)
{
    uint64_t bytes = (uint64_t)s->rt_clusters * s->cluster_size;
    if (bytes == 0 || bytes > QCOW2_MAX_RT_BYTES) {
        log_error("%s: qcow2 refcount table size %llu bytes is invalid (max %u)",
                  s->b->filename, (unsigned long long)bytes, QCOW2_MAX_RT_BYTES);
        return -EINVAL;
    }
    if (s->rt_offset % s->cluster_size || s->rt_offset + bytes > qcow2_file_end(s)) {
        log_error("%s: qcow2 refcount table at 0x%llx is misaligned or past the end of the file",
                  s->b->filename, (unsigned long long)s->rt_offset);
        return -EINVAL;
    }
    uint64_t *rt = xmalloc(bytes);
    int r = blk_file_pread(&s->f, s->rt_offset, rt, bytes);
    if (r < 0) {
        free(rt);
        log_error("%s: cannot read the qcow2 refcount table: %s", s->b->filename, strerror(-r));
        return r;
    }
    s->rt_size = bytes / 8;
    for (uint64_t i = 0; i < s->rt_size; i++)
        rt[i] = be64_get(&rt[i]);
    free(s->rt);
    s->rt = rt;
    return 0;
}

static int rb_lookup(struct qcow2 *s, uint64_t rt_idx, uint8_t **rb, unsigned *slot)
{
    uint64_t off = s->rt[rt_idx] & REFT_OFFSET_MASK;
    if (off % s->cluster_size) {
        log_once(LOG_ERROR, "%s: corrupt qcow2 image: refcount block at unaligned offset 0x%llx",
                 s->b->filename, (unsigned long long)off);
        return -EIO;
    }
    return qcow2_cache_get(s, &s->rbc, off, true, rb, slot);
}

int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc)
{
    uint64_t idx = cluster / s->rb_entries;
    *rc = 0;
    if (idx >= s->rt_size || !(s->rt[idx] & REFT_OFFSET_MASK))
        return 0;
    uint8_t *rb;
    int r = rb_lookup(s, idx, &rb, NULL);
    if (r < 0)
        return r;
    *rc = qcow2_rc_get_entry(rb, cluster % s->rb_entries, s->refcount_order);
    return 0;
}

static int write_rt_entry(struct qcow2 *s, uint64_t idx)
{
    uint64_t v;
    be64_put(&v, s->rt[idx]);
    return blk_file_pwrite(&s->f, s->rt_offset + idx * 8, &v, 8);
}

/* Moves the refcount table to the end of the file, big enough for index need_idx; the new
 * table and the refcount blocks that count it live in clusters no old block covers. */
static int grow_table(struct qcow2 *s, uint64_t need_idx)
{
    uint64_t cs = s->cluster_size, R = s->rb_entries;
    uint64_t old = s->rt_size;
    uint64_t P = MAX(DIV_ROUND_UP(qcow2_file_end(s), cs), old * R);
    uint64_t T = 1, B = 0, entries = 0;
    for (int it = 0; it < 64; it++) {
        uint64_t end = P + T + B;
        entries = MAX(MAX(need_idx + 1, DIV_ROUND_UP(end, R)), old + old / 2 + 1);
        uint64_t T2 = DIV_ROUND_UP(entries * 8, cs);
        uint64_t B2 = DIV_ROUND_UP(P + T2 + B, R) - P / R;
        if (T2 == T && B2 == B)
            break;
        T = T2;
        B = B2;
    }
    if (T * cs > QCOW2_MAX_RT_BYTES) {
        log_error("%s: the qcow2 refcount table would exceed %u bytes; the image is too large "
                  "for its cluster size", s->b->filename, QCOW2_MAX_RT_BYTES);
        return -EFBIG;
    }
    entries = T * cs / 8;
    uint64_t *nrt = xzalloc(entries * 8);
    memcpy(nrt, s->rt, old * 8);
    uint64_t first_blk = P / R;
    for (uint64_t k = 0; k < B; k++)
        nrt[first_blk + k] = (P + T + k) * cs;
    uint8_t *blk = xmalloc(cs);
    int r = 0;
    for (uint64_t k = 0; k < B && r == 0; k++) {
        memset(blk, 0, cs);
        for (uint64_t c = P; c < P + T + B; c++)
            if (c / R == first_blk + k)
                qcow2_rc_set_entry(blk, c % R, s->refcount_order, 1);
        r = blk_file_pwrite(&s->f, (P + T + k) * cs, blk, cs);
    }
    free(blk);
    uint64_t *disk = xmalloc(entries * 8);
    for (uint64_t i = 0; i < entries; i++)
        be64_put(&disk[i], nrt[i]);
    if (r == 0)
        r = blk_file_pwrite(&s->f, P * cs, disk, entries * 8);
    free(disk);
    if (r == 0)
        r = qcow2_sync(s);
    uint64_t old_off = s->rt_offset, old_clusters = s->rt_clusters;
    if (r == 0) {
        s->rt_offset = P * cs;
        s->rt_clusters = (uint32_t)T;
        r = qcow2_write_header(s);
        if (r < 0) {
            s->rt_offset = old_off;
            s->rt_clusters = (uint32_t)old_clusters;
        }
    }
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        free(nrt);
        log_error("%s: cannot grow the qcow2 refcount table: %s", s->b->filename, strerror(-r));
        return r;
    }
    free(s->rt);
    s->rt = nrt;
    s->rt_size = entries;
    /* The old table is garbage now; if freeing it fails we only leak it. */
    (void)qcow2_update_refcount(s, old_off, old_clusters * cs, -1);
    return 0;
}

/* Returns the refcount block covering table index idx, creating it (in the first cluster of
 * the range it covers, which is free because nothing counts it) when missing. */
static int ensure_rb(struct qcow2 *s, uint64_t idx, uint8_t **rb, unsigned *slot)
{
    int r;
    if (idx >= s->rt_size) {
        r = grow_table(s, idx);
        if (r < 0)
            return r;
    }
    if (s->rt[idx] & REFT_OFFSET_MASK)
        return rb_lookup(s, idx, rb, slot);
    uint64_t c0 = idx * s->rb_entries;
    if (c0 == 0) {
        log_error("%s: corrupt qcow2 image: no refcount block for the header", s->b->filename);
        return -EIO;
    }
    r = qcow2_cache_get(s, &s->rbc, c0 * s->cluster_size, false, rb, slot);
    if (r < 0)
        return r;
    qcow2_rc_set_entry(*rb, 0, s->refcount_order, 1);
    qcow2_cache_dirty(&s->rbc, *slot);
    r = qcow2_cache_flush(s, &s->rbc); /* writes and syncs the new block */
    if (r < 0)
        return r;
    s->rt[idx] = c0 * s->cluster_size;
    r = write_rt_entry(s, idx);
    if (r < 0)
        return r;
    /* Flushing may have evicted it; look it up again. */
    return rb_lookup(s, idx, rb, slot);
}

void qcow2_wait_data_io(struct qcow2 *s)
{
    while (__atomic_load_n(&s->readers, __ATOMIC_ACQUIRE)) {
        blk_aio_reap_hooks(s->b->aio); /* io_uring data I/O is released when reaped */
        sched_yield();
    }
}

int qcow2_update_refcount(struct qcow2 *s, uint64_t off, uint64_t len, int64_t delta)
{
    if (len == 0 || delta == 0)
        return 0;
    uint64_t cs = s->cluster_size;
    uint64_t first = off / cs, last = (off + len - 1) / cs;
    /* A read or in-place write planned earlier may still use a cluster we are about to free
     * (and that could then be reused): wait for it. No new ones start: we hold the lock. */
    if (delta < 0)
        qcow2_wait_data_io(s);
    for (uint64_t c = first; c <= last; c++) {
        uint64_t idx = c / s->rb_entries;
        uint8_t *rb;
        unsigned slot;
        int r;
        if (delta < 0 && (idx >= s->rt_size || !(s->rt[idx] & REFT_OFFSET_MASK))) {
            log_once(LOG_ERROR, "%s: corrupt qcow2 image: freeing cluster 0x%llx that has no "
                     "refcount; run 'vmkit img check -r all'", s->b->filename,
                     (unsigned long long)(c * cs));
            return -EIO;
        }
        r = ensure_rb(s, idx, &rb, &slot);
        if (r < 0)
            return r;
        uint64_t i = c % s->rb_entries;
        uint64_t v = qcow2_rc_get_entry(rb, i, s->refcount_order);
        if ((delta < 0 && v < (uint64_t)-delta) ||
            (delta > 0 && s->refcount_max - v < (uint64_t)delta)) {
            log_error("%s: qcow2 refcount of cluster 0x%llx would %s (refcount_bits=%u)",
                      s->b->filename, (unsigned long long)(c * cs),
                      delta < 0 ? "drop below zero" : "overflow", s->refcount_bits);
            return delta < 0 ? -EIO : -ERANGE;
        }
        v += (uint64_t)delta;
        qcow2_rc_set_entry(rb, i, s->refcount_order, v);
        qcow2_cache_dirty(&s->rbc, slot);
        if (v == 0) {
            if (c < s->free_hint)
                s->free_hint = c;
            qcow2_cache_drop(&s->l2c, c * cs);
            if (s->compress_pos && s->compress_pos / cs == c)
                s->compress_pos = 0;
        }
    }
    return 0;
}

int64_t qcow2_alloc_clusters(struct qcow2 *s, uint64_t n)
{
    uint64_t cs = s->cluster_size;
    uint64_t limit = (1ull << 56) / cs;
    uint64_t start = MAX(s->free_hint, 1), c = start, run = 0;
    /* A sane image has free clusters right after its end (a crash may leak a few past it);
     * refcounts claiming far more than that are hostile: do not scan forever. */
    uint64_t give_up = MAX(DIV_ROUND_UP(qcow2_file_end(s), cs), start) + n + 65536;
    bool from_hint = true;
    while (run < n) {
        if (c >= limit || c >= give_up) {
            log_once(LOG_ERROR, "%s: corrupt qcow2 image: refcounts claim clusters far past "
                     "the end of the file; run 'vmkit img check -r all'", s->b->filename);
            return c >= limit ? -ENOSPC : -EIO;
        }
        uint64_t idx = c / s->rb_entries;
        if (idx >= s->rt_size || !(s->rt[idx] & REFT_OFFSET_MASK)) {
            uint8_t *rb;
            unsigned slot;
            int r = ensure_rb(s, idx, &rb, &slot);
            if (r < 0)
                return r;
        }
        uint64_t rc;
        int r = qcow2_get_refcount(s, c, &rc);
        if (r < 0)
            return r;
        if (rc == 0) {
            run++;
        } else {
            if (from_hint && run == 0)
                s->free_hint = c + 1;
            else
                from_hint = false;
            run = 0;
            start = c + 1;
        }
        c++;
    }
    int r = qcow2_update_refcount(s, start * cs, n * cs, 1);
    if (r < 0)
        return r;
    if (s->free_hint == start)
        s->free_hint = start + n;
    return (int64_t)(start * cs);
}

int qcow2_free_clusters(struct qcow2 *s, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    /* The tables that dropped these references must be stable first, or a crash could
     * leave a live reference to a cluster counted as free (and later reused). */
    int r = qcow2_cache_flush(s, &s->l2c);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        r = qcow2_update_refcount(s, off, len, -1);
    if (r == 0 && s->b->discard_unmap) {
        uint64_t cs = s->cluster_size;
        for (uint64_t c = off / cs; c <= (off + len - 1) / cs; c++) {
            uint64_t rc;
            if (qcow2_get_refcount(s, c, &rc) == 0 && rc == 0)
                (void)blk_file_discard(&s->f, c * cs, cs);
        }
    }
    return r;
}

int qcow2_rebuild_refcounts(struct qcow2 *s, uint32_t *counts, uint64_t nb, unsigned order)
{
    uint64_t cs = s->cluster_size;
    uint64_t R = cs * 8 >> order;
    uint64_t maxv = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
    for (uint64_t i = 0; i < nb; i++)
        if (counts[i] > maxv) {
            log_error("%s: cluster 0x%llx has %u references, more than refcount_bits=%u holds",
                      s->b->filename, (unsigned long long)(i * cs), counts[i], 1u << order);
            return -ERANGE;
        }
    /* The old refcount structures are replaced: they must not stay counted. */
    for (uint64_t c = s->rt_offset / cs; c < s->rt_offset / cs + s->rt_clusters && c < nb; c++)
        if (counts[c])
            counts[c]--;
    for (uint64_t i = 0; i < s->rt_size; i++) {
        uint64_t off = s->rt[i] & REFT_OFFSET_MASK;
        if (off && off % cs == 0 && off / cs < nb && counts[off / cs])
            counts[off / cs]--;
    }
    /* Layout at the end of the file: the table, then one block per range that has any
     * reference (ranges without references need no block: sparse images stay cheap). */
    uint64_t P = MAX(nb, DIV_ROUND_UP(qcow2_file_end(s), cs));
    uint64_t K = DIV_ROUND_UP(nb, R);
    bool *need = xzalloc(MAX(K, 1));
    for (uint64_t c = 0; c < nb; c++)
        if (counts[c])
            need[c / R] = true;
    uint64_t T = 1, B = 1, lo = 0, hi = 0;
    for (int it = 0; it < 64; it++) {
        lo = P / R;
        hi = (P + T + B - 1) / R;
        uint64_t B2 = hi - lo + 1;
        for (uint64_t k = 0; k < K; k++)
            if (need[k] && (k < lo || k > hi))
                B2++;
        uint64_t T2 = DIV_ROUND_UP(MAX(hi + 1, K) * 8, cs);
        if (B2 == B && T2 == T)
            break;
        B = B2;
        T = T2;
    }
    if (T * cs > QCOW2_MAX_RT_BYTES) {
        free(need);
        return -EFBIG;
    }
    uint64_t entries = T * cs / 8;
    uint64_t *nrt = xzalloc(entries * 8);
    uint8_t *blk = xmalloc(cs);
    int r = 0;
    uint64_t j = 0;
    for (uint64_t k = 0; k <= MAX(hi, K) && r == 0; k++) {
        if (!((k < K && need[k]) || (k >= lo && k <= hi)))
            continue;
        memset(blk, 0, cs);
        for (uint64_t i = 0; i < R; i++) {
            uint64_t c = k * R + i;
            uint64_t v = c < nb ? counts[c] : 0;
            if (c >= P && c < P + T + B)
                v = 1;
            if (v)
                qcow2_rc_set_entry(blk, i, order, v);
        }
        nrt[k] = (P + T + j++) * cs;
        r = blk_file_pwrite(&s->f, nrt[k], blk, cs);
    }
    free(need);
    if (r == 0 && j != B)
        r = -EIO; /* the layout above is inconsistent: never switch to it */
    free(blk);
    uint64_t *disk = xmalloc(entries * 8);
    for (uint64_t i = 0; i < entries; i++)
        be64_put(&disk[i], nrt[i]);
    if (r == 0)
        r = blk_file_pwrite(&s->f, P * cs, disk, entries * 8);
    free(disk);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        free(nrt);
        return r;
    }
    uint64_t o_off = s->rt_offset;
    uint32_t o_cl = s->rt_clusters, o_order = s->refcount_order;
    s->rt_offset = P * cs;
    s->rt_clusters = (uint32_t)T;
    s->refcount_order = order;
    r = qcow2_write_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        s->rt_offset = o_off;
        s->rt_clusters = o_cl;
        s->refcount_order = o_order;
        free(nrt);
        return r;
    }
    free(s->rt);
    s->rt = nrt;
    s->rt_size = entries;
    s->refcount_bits = 1u << order;
    s->refcount_max = maxv;
    s->rb_entries = R;
    qcow2_cache_drop_all(&s->rbc);
    s->free_hint = 1;
    s->compress_pos = 0;
    return 0;
}
