/* qcow2 internal snapshots: the snapshot table, create/apply/delete/list/load_tmp. */
#include "block/qcow2.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNAP_MAX_TABLE (64 * 1024 * 1024)
#define SNAP_MAX_EXTRA 1024

void qcow2_snapshots_free(struct qcow2 *s)
{
    for (uint32_t i = 0; s->snaps && i < s->nb_snapshots; i++) {
        free(s->snaps[i].id);
        free(s->snaps[i].name);
        free(s->snaps[i].extra);
    }
    free(s->snaps);
    s->snaps = NULL;
}

int qcow2_snapshots_load(struct qcow2 *s)
{
    const char *fn = s->b->filename;
    uint64_t fsize = qcow2_file_end(s), cs = s->cluster_size;
    if (s->nb_snapshots == 0)
        return 0;
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS || s->snapshots_offset % cs ||
        s->snapshots_offset >= fsize) {
        log_error("%s: qcow2 snapshot table (%u entries at 0x%llx) is invalid", fn,
                  s->nb_snapshots, (unsigned long long)s->snapshots_offset);
        return -EINVAL;
    }
    s->snaps = xzalloc(sizeof(*s->snaps) * s->nb_snapshots);
    uint64_t p = s->snapshots_offset;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snap *sn = &s->snaps[i];
        uint8_t h[40];
        if (p - s->snapshots_offset + 40 > SNAP_MAX_TABLE || p + 40 > fsize)
            goto bad;
        int r = blk_file_pread(&s->f, p, h, 40);
        if (r < 0)
            return r;
        sn->l1_offset = be64_get(h);
        sn->l1_size = be32_get(h + 8);
        uint16_t id_len = be16_get(h + 12), name_len = be16_get(h + 14);
        sn->date_sec = be32_get(h + 16);
        sn->date_nsec = be32_get(h + 20);
        sn->vm_clock_nsec = be64_get(h + 24);
        sn->vm_state_size = be32_get(h + 32);
        sn->extra_size = be32_get(h + 36);
        if (sn->extra_size > SNAP_MAX_EXTRA)
            goto bad;
        uint64_t rest = (uint64_t)sn->extra_size + id_len + name_len;
        if (p + 40 + rest > fsize)
            goto bad;
        uint8_t *buf = xzalloc(rest + 1);
        r = blk_file_pread(&s->f, p + 40, buf, rest);
        if (r < 0) {
            free(buf);
            return r;
        }
        sn->extra = xmalloc(sn->extra_size + 1);
        memcpy(sn->extra, buf, sn->extra_size);
        if (sn->extra_size >= 8)
            sn->vm_state_size = be64_get(buf);
        sn->disk_size = s->b->size;
        if (sn->extra_size >= 16)
            sn->disk_size = be64_get(buf + 8);
        if (sn->extra_size >= 24) {
            sn->icount = be64_get(buf + 16);
            sn->has_icount = true;
        }
        sn->id = xzalloc((size_t)id_len + 1);
        memcpy(sn->id, buf + sn->extra_size, id_len);
        sn->name = xzalloc((size_t)name_len + 1);
        memcpy(sn->name, buf + sn->extra_size + id_len, name_len);
        free(buf);
        p = ALIGN_UP(p + 40 + rest, 8);
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES || sn->l1_offset % cs ||
            (sn->l1_size && (sn->l1_offset >= fsize ||
                             (uint64_t)sn->l1_size * 8 > fsize - sn->l1_offset))) {
            log_error("%s: qcow2 snapshot '%s' has an invalid L1 table", fn, sn->name);
            return -EINVAL;
        }
    }
    s->snap_table_len = p - s->snapshots_offset;
    return 0;
bad:
    log_error("%s: qcow2 snapshot table is truncated or too large", fn);
    return -EINVAL;
}

/* Writes the table to new clusters and switches the header to it. */
static int snapshots_write(struct qcow2 *s)
{
    uint64_t cs = s->cluster_size;
    size_t cap = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        cap += 40 + MAX(s->snaps[i].extra_size, 24u) + strlen(s->snaps[i].id) +
               strlen(s->snaps[i].name) + 8;
    uint8_t *t = xzalloc(cap + 8);
    size_t p = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snap *sn = &s->snaps[i];
        uint32_t extra = MAX(sn->extra_size, 24u);
        size_t il = strlen(sn->id), nl = strlen(sn->name);
        be64_put(t + p, sn->l1_offset);
        be32_put(t + p + 8, sn->l1_size);
        be16_put(t + p + 12, (uint16_t)il);
        be16_put(t + p + 14, (uint16_t)nl);
        be32_put(t + p + 16, sn->date_sec);
        be32_put(t + p + 20, sn->date_nsec);
        be64_put(t + p + 24, sn->vm_clock_nsec);
        be32_put(t + p + 32, (uint32_t)MIN(sn->vm_state_size, 0xffffffffull));
        be32_put(t + p + 36, extra);
        p += 40;
        if (sn->extra_size > 24)
            memcpy(t + p, sn->extra, sn->extra_size);
        be64_put(t + p, sn->vm_state_size);
        be64_put(t + p + 8, sn->disk_size);
        be64_put(t + p + 16, sn->icount);
        p += extra;
        memcpy(t + p, sn->id, il);
        p += il;
        memcpy(t + p, sn->name, nl);
        p += nl;
        p = ALIGN_UP(p, 8);
    }
    uint64_t new_off = 0;
    int r = 0;
    if (p) {
        int64_t a = qcow2_alloc_clusters(s, DIV_ROUND_UP(p, cs));
        if (a < 0) {
            free(t);
            return (int)a;
        }
        new_off = (uint64_t)a;
        r = qcow2_cache_flush(s, &s->rbc);
        if (r == 0)
            r = blk_file_pwrite(&s->f, new_off, t, p);
        if (r == 0)
            r = qcow2_sync(s);
    }
    free(t);
    if (r < 0)
        return r;
    uint64_t old_off = s->snapshots_offset;
    uint64_t old_len = s->snap_table_len;
    s->snapshots_offset = new_off;
    r = qcow2_write_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0)
        return r;
    s->snap_table_len = p;
    if (old_off && old_len)
        r = qcow2_update_refcount(s, old_off, old_len, -1);
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t qcow2_distinct_l2(const uint64_t *l1, uint32_t n, uint64_t **out)
{
    uint64_t *offs = xmalloc((size_t)MAX(n, 1u) * 8);
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (l1[i] & L1E_OFFSET_MASK)
            offs[k++] = l1[i] & L1E_OFFSET_MASK;
    qsort(offs, k, 8, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || offs[u - 1] != offs[i])
            offs[u++] = offs[i];
    *out = offs;
    return u;
}

int qcow2_l1_refcounts(struct qcow2 *s, const uint64_t *l1, uint32_t l1_size, int64_t delta)
{
    uint64_t cs = s->cluster_size;
    /* Each distinct L2 table is walked once with its number of references, so an image whose
     * L1 entries all point at one table costs one walk, not thousands. */
    uint64_t *offs = xmalloc((size_t)MAX(l1_size, 1u) * 8);
    size_t n = 0;
    for (uint32_t i = 0; i < l1_size; i++)
        if (l1[i] & L1E_OFFSET_MASK)
            offs[n++] = l1[i] & L1E_OFFSET_MASK;
    qsort(offs, n, 8, cmp_u64);
    uint8_t *l2copy = xmalloc(cs);
    int r = 0;
    for (size_t i = 0; i < n && r == 0;) {
        uint64_t l2off = offs[i];
        int64_t mult = 0;
        while (i < n && offs[i] == l2off)
            i++, mult++;
        int64_t d = delta * mult;
        uint8_t *l2;
        r = qcow2_cache_get(s, &s->l2c, l2off, true, &l2, NULL);
        if (r < 0)
            break;
        memcpy(l2copy, l2, cs);
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t e = qcow2_l2_get(s, l2copy, j, NULL);
            uint64_t off = 0, len = 0;
            if (e & QCOW_OFLAG_COMPRESSED)
                qcow2_compressed_range(s, e, &off, &len);
            else if (e & L2E_OFFSET_MASK) {
                off = e & L2E_OFFSET_MASK;
                len = cs;
            }
            if (len)
                r = qcow2_update_refcount(s, off, len, d);
        }
        if (r == 0)
            r = qcow2_update_refcount(s, l2off, cs, d);
    }
    free(l2copy);
    free(offs);
    return r;
}

int qcow2_fix_copied(struct qcow2 *s)
{
    uint64_t cs = s->cluster_size;
    int r = 0;
    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t l2off = s->l1[i] & L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        uint64_t rc;
        r = qcow2_get_refcount(s, l2off / cs, &rc);
        if (r < 0)
            break;
        uint64_t want = rc == 1 ? s->l1[i] | QCOW_OFLAG_COPIED : s->l1[i] & ~QCOW_OFLAG_COPIED;
        if (want != s->l1[i]) {
            s->l1[i] = want;
            r = qcow2_write_l1_entry(s, i);
        }
    }
    uint64_t *offs;
    size_t n = qcow2_distinct_l2(s->l1, s->l1_size, &offs);
    uint8_t *copy = xmalloc(cs);
    for (size_t t = 0; t < n && r == 0; t++) {
        uint8_t *l2;
        unsigned slot;
        r = qcow2_cache_get(s, &s->l2c, offs[t], true, &l2, &slot);
        if (r < 0)
            break;
        memcpy(copy, l2, cs);
        bool changed = false;
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t bm, e = qcow2_l2_get(s, copy, j, &bm), rc;
            uint64_t ne = e;
            if (e & QCOW_OFLAG_COMPRESSED) {
                ne = e & ~QCOW_OFLAG_COPIED;
            } else if (e & L2E_OFFSET_MASK) {
                r = qcow2_get_refcount(s, (e & L2E_OFFSET_MASK) / cs, &rc);
                ne = rc == 1 ? e | QCOW_OFLAG_COPIED : e & ~QCOW_OFLAG_COPIED;
            }
            if (ne != e) {
                qcow2_l2_set(s, copy, j, ne, bm);
                changed = true;
            }
        }
        if (r == 0 && changed) {
            r = qcow2_cache_get(s, &s->l2c, offs[t], true, &l2, &slot);
            if (r == 0) {
                memcpy(l2, copy, cs);
                qcow2_cache_dirty(&s->l2c, slot);
            }
        }
    }
    free(copy);
    free(offs);
    return r;
}

static int clear_copied(struct qcow2 *s)
{
    int r = 0;
    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t l2off = s->l1[i] & L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        if (s->l1[i] & QCOW_OFLAG_COPIED) {
            s->l1[i] &= ~QCOW_OFLAG_COPIED;
            r = qcow2_write_l1_entry(s, i);
        }
        uint8_t *l2;
        unsigned slot;
        if (r == 0)
            r = qcow2_cache_get(s, &s->l2c, l2off, true, &l2, &slot);
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t bm, e = qcow2_l2_get(s, l2, j, &bm);
            if (e & QCOW_OFLAG_COPIED) {
                qcow2_l2_set(s, l2, j, e & ~QCOW_OFLAG_COPIED, bm);
                qcow2_cache_dirty(&s->l2c, slot);
            }
        }
    }
    return r;
}

static int find_snap(struct qcow2 *s, const char *name_or_id)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snaps[i].id, name_or_id))
            return (int)i;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snaps[i].name, name_or_id))
            return (int)i;
    return -1;
}

int qcow2_snapshot_list(struct blk *b, struct blk_snapshot **out, unsigned *count)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    struct blk_snapshot *l = xzalloc(sizeof(*l) * MAX(s->nb_snapshots, 1u));
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snap *sn = &s->snaps[i];
        snprintf(l[i].id, sizeof(l[i].id), "%s", sn->id);
        l[i].name = xstrdup(sn->name);
        l[i].vm_state_size = sn->vm_state_size;
        l[i].date_sec = sn->date_sec;
        l[i].date_nsec = sn->date_nsec;
        l[i].vm_clock_nsec = sn->vm_clock_nsec;
        l[i].icount = (uint32_t)sn->icount;
    }
    *out = l;
    *count = s->nb_snapshots;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int write_l1_table(struct qcow2 *s)
{
    uint64_t *disk = xzalloc((size_t)MAX(s->l1_size, 1u) * 8);
    for (uint32_t i = 0; i < s->l1_size; i++)
        be64_put(&disk[i], s->l1[i]);
    int r = s->l1_size ? blk_file_pwrite(&s->f, s->l1_offset, disk, (size_t)s->l1_size * 8) : 0;
    free(disk);
    return r;
}

int qcow2_snapshot_create(struct blk *b, const char *name)
{
    struct qcow2 *s = b->opaque;
    uint64_t cs = s->cluster_size;
    if (!name || !*name || strlen(name) > 65535) {
        log_error("%s: invalid snapshot name", b->filename);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    /* An in-place write still in flight would otherwise land in a cluster the snapshot
     * is about to share. */
    qcow2_wait_data_io(s);
    int r;
    if (s->snapshot_view) {
        r = -EROFS;
        goto out;
    }
    if (find_snap(s, name) >= 0) {
        log_error("%s: a snapshot named '%s' already exists", b->filename, name);
        r = -EEXIST;
        goto out;
    }
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        r = -ENOSPC;
        goto out;
    }
    r = qcow2_flush_all(s);
    if (r < 0)
        goto out;
    /* COPIED off on disk first: a cluster marked COPIED with refcount 2 would be written in
     * place after a crash (the reverse only costs a refcount lookup). Then the references
     * (a crash leaves leaks), then the L1 copy, then the table. */
    r = clear_copied(s);
    if (r == 0)
        r = qcow2_flush_all(s);
    if (r == 0)
        r = qcow2_l1_refcounts(s, s->l1, s->l1_size, 1);
    if (r < 0)
        goto out;
    uint64_t l1_off = 0;
    if (s->l1_size) {
        int64_t a = qcow2_alloc_clusters(s, DIV_ROUND_UP((uint64_t)s->l1_size * 8, cs));
        if (a < 0) {
            r = (int)a;
            goto out;
        }
        l1_off = (uint64_t)a;
        uint64_t *disk = xzalloc((size_t)s->l1_size * 8);
        for (uint32_t i = 0; i < s->l1_size; i++)
            be64_put(&disk[i], s->l1[i]);
        r = blk_file_pwrite(&s->f, l1_off, disk, (size_t)s->l1_size * 8);
        free(disk);
        if (r < 0)
            goto out;
    }
    r = qcow2_flush_all(s);
    if (r < 0)
        goto out;
    unsigned long maxid = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        maxid = MAX(maxid, strtoul(s->snaps[i].id, NULL, 10));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->snaps = xrealloc(s->snaps, sizeof(*s->snaps) * (s->nb_snapshots + 1));
    struct qcow2_snap *sn = &s->snaps[s->nb_snapshots];
    memset(sn, 0, sizeof(*sn));
    sn->l1_offset = l1_off;
    sn->l1_size = s->l1_size;
    sn->id = xasprintf("%lu", maxid + 1);
    sn->name = xstrdup(name);
    sn->date_sec = (uint32_t)ts.tv_sec;
    sn->date_nsec = (uint32_t)ts.tv_nsec;
    sn->disk_size = b->size;
    sn->extra_size = 24;
    sn->extra = xzalloc(24);
    s->nb_snapshots++;
    r = snapshots_write(s);
    if (r < 0) {
        s->nb_snapshots--;
        free(sn->id);
        free(sn->name);
        free(sn->extra);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_snapshot_apply(struct blk *b, const char *name_or_id)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    int r, i = find_snap(s, name_or_id);
    uint64_t *snap_l1 = NULL, *old_l1 = NULL;
    uint32_t old_size = s->l1_size;
    if (i < 0) {
        log_error("%s: no snapshot '%s'", b->filename, name_or_id);
        r = -ENOENT;
        goto out;
    }
    if (s->snapshot_view) {
        r = -EROFS;
        goto out;
    }
    struct qcow2_snap *sn = &s->snaps[i];
    r = qcow2_flush_all(s);
    if (r == 0)
        r = qcow2_read_l1(s, sn->l1_offset, sn->l1_size, &snap_l1);
    if (r == 0)
        r = qcow2_l1_refcounts(s, snap_l1, sn->l1_size, 1);
    if (r == 0 && sn->l1_size > s->l1_size)
        r = qcow2_grow_l1(s, sn->l1_size);
    if (r == 0)
        r = qcow2_flush_all(s);
    if (r < 0)
        goto out;
    old_size = s->l1_size;
    old_l1 = xmalloc((size_t)MAX(old_size, 1u) * 8);
    memcpy(old_l1, s->l1, (size_t)old_size * 8);
    for (uint32_t k = 0; k < s->l1_size; k++)
        s->l1[k] = k < sn->l1_size ? snap_l1[k] & ~QCOW_OFLAG_COPIED : 0;
    r = write_l1_table(s);
    if (r == 0 && b->size != sn->disk_size) {
        b->size = sn->disk_size;
        r = qcow2_write_header(s);
    }
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        memcpy(s->l1, old_l1, (size_t)old_size * 8);
        goto out;
    }
    qcow2_cache_drop_all(&s->l2c);
    r = qcow2_l1_refcounts(s, old_l1, old_size, -1);
    if (r == 0)
        r = qcow2_fix_copied(s);
    if (r == 0)
        r = qcow2_flush_all(s);
out:
    free(snap_l1);
    free(old_l1);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_snapshot_delete(struct blk *b, const char *name_or_id)
{
    struct qcow2 *s = b->opaque;
    uint64_t cs = s->cluster_size;
    pthread_mutex_lock(&s->lock);
    int r, i = find_snap(s, name_or_id);
    uint64_t *l1 = NULL;
    if (i < 0) {
        log_error("%s: no snapshot '%s'", b->filename, name_or_id);
        r = -ENOENT;
        goto out;
    }
    if (s->snapshot_view) {
        r = -EROFS;
        goto out;
    }
    struct qcow2_snap sn = s->snaps[i];
    r = qcow2_flush_all(s);
    if (r == 0)
        r = qcow2_read_l1(s, sn.l1_offset, sn.l1_size, &l1);
    if (r < 0)
        goto out;
    memmove(&s->snaps[i], &s->snaps[i + 1], sizeof(sn) * (s->nb_snapshots - (uint32_t)i - 1));
    s->nb_snapshots--;
    r = snapshots_write(s);
    if (r < 0) {
        memmove(&s->snaps[i + 1], &s->snaps[i], sizeof(sn) * (s->nb_snapshots - (uint32_t)i));
        s->snaps[i] = sn;
        s->nb_snapshots++;
        goto out;
    }
    /* The snapshot is gone from disk: now its references can go. */
    r = qcow2_l1_refcounts(s, l1, sn.l1_size, -1);
    if (r == 0 && sn.l1_size)
        r = qcow2_update_refcount(s, sn.l1_offset, ALIGN_UP((uint64_t)sn.l1_size * 8, cs), -1);
    if (r == 0)
        r = qcow2_fix_copied(s);
    if (r == 0)
        r = qcow2_flush_all(s);
    free(sn.id);
    free(sn.name);
    free(sn.extra);
out:
    free(l1);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_snapshot_load_tmp(struct blk *b, const char *name_or_id)
{
    struct qcow2 *s = b->opaque;
    if (!b->read_only) {
        log_error("%s: loading a snapshot for reading needs the image opened read-only",
                  b->filename);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    int r, i = find_snap(s, name_or_id);
    uint64_t *l1 = NULL;
    if (i < 0) {
        log_error("%s: no snapshot '%s'", b->filename, name_or_id);
        r = -ENOENT;
        goto out;
    }
    struct qcow2_snap *sn = &s->snaps[i];
    uint64_t need = DIV_ROUND_UP(sn->disk_size, s->cluster_size << s->l2_bits);
    if (need > sn->l1_size) {
        log_error("%s: snapshot '%s' has an L1 table too small for its size", b->filename,
                  sn->name);
        r = -EINVAL;
        goto out;
    }
    r = qcow2_read_l1(s, sn->l1_offset, sn->l1_size, &l1);
    if (r < 0)
        goto out;
    free(s->l1);
    s->l1 = l1;
    l1 = NULL;
    s->l1_size = sn->l1_size;
    b->size = sn->disk_size;
    s->snapshot_view = true;
    qcow2_cache_drop_all(&s->l2c);
out:
    free(l1);
    pthread_mutex_unlock(&s->lock);
    return r;
}
