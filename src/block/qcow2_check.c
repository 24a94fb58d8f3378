/* qcow2 consistency check and repair: count every reference, compare with the refcounts. */
#include "block/qcow2.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_CLUSTERS (1ull << 26)
#define CHECK_MAX_MESSAGES 100

struct counter {
    struct qcow2 *s;
    uint32_t mult;        /* references to the L2 table being walked */
    uint8_t *seen;        /* clusters used as L2 tables: bit 0 any L1, bit 1 the active L1 */
    uint32_t *counts;
    uint64_t nb;
    struct blk_check_result *res;
    unsigned fix;
    unsigned messages;
    uint64_t refcount_corruptions; /* fixable by rebuilding refcounts */
    uint64_t copied_errors;
    uint64_t last_host;
};

#define REPORT(c, ...)                                                                             \
    do {                                                                                           \
        if ((c)->messages++ < CHECK_MAX_MESSAGES)                                                  \
            log_msg((c)->s->quiet_check ? LOG_DEBUG : LOG_WARN, __VA_ARGS__);                      \
    } while (0)

static bool inc_n(struct counter *c, uint64_t off, uint64_t len, uint32_t amount,
                  const char *what);

static bool inc(struct counter *c, uint64_t off, uint64_t len, const char *what)
{
    return inc_n(c, off, len, 1, what);
}

static bool inc_n(struct counter *c, uint64_t off, uint64_t len, uint32_t amount,
                  const char *what)
{
    uint64_t cs = c->s->cluster_size;
    if (!len)
        return true;
    for (uint64_t k = off / cs; k <= (off + len - 1) / cs; k++) {
        if (k >= c->nb) {
            REPORT(c, "ERROR %s at 0x%llx is outside the image file", what,
                   (unsigned long long)(k * cs));
            c->res->corruptions++;
            return false;
        }
        c->counts[k] = c->counts[k] > UINT32_MAX - amount ? UINT32_MAX : c->counts[k] + amount;
    }
    return true;
}

/* An entry pointing somewhere impossible; with BLK_FIX_ERRORS the entry is dropped. */
static bool bad_offset(struct counter *c, uint64_t off, uint64_t align)
{
    return (off % align) || off / c->s->cluster_size >= c->nb;
}

static int walk_l2(struct counter *c, uint64_t l2off, bool active, bool *modified, uint8_t *l2)
{
    struct qcow2 *s = c->s;
    uint64_t cs = s->cluster_size;
    c->last_host = 0; /* contiguity is judged within one L2 table, as qemu-img does */
    for (uint64_t j = 0; j < s->l2_entries; j++) {
        uint64_t bm, e = qcow2_l2_get(s, l2, j, &bm);
        if (e & QCOW_OFLAG_COMPRESSED) {
            uint64_t off, len;
            qcow2_compressed_range(s, e, &off, &len);
            if (s->extended_l2 && bm) {
                REPORT(c, "ERROR compressed cluster with a subcluster bitmap (L2 0x%llx)",
                       (unsigned long long)l2off);
                c->res->corruptions++;
            }
            if (off / cs >= c->nb || (off + len - 1) / cs >= c->nb) {
                REPORT(c, "ERROR compressed cluster at 0x%llx is outside the image file",
                       (unsigned long long)off);
                c->res->corruptions++;
                if (c->fix & BLK_FIX_ERRORS) {
                    qcow2_l2_set(s, l2, j, 0, 0);
                    *modified = true;
                    c->res->corruptions_fixed++;
                }
                continue;
            }
            inc_n(c, off, len, c->mult, "compressed data");
            if (active) {
                /* Compressed clusters share host sectors: fragmented by nature (qemu-img). */
                c->res->compressed_clusters++;
                c->res->allocated_clusters++;
                c->res->fragmented_clusters++;
            }
            continue;
        }
        if (s->extended_l2 && (bm & (bm >> 32) & 0xffffffffull)) {
            REPORT(c, "ERROR subclusters both allocated and zero (L2 0x%llx index %llu)",
                   (unsigned long long)l2off, (unsigned long long)j);
            c->res->corruptions++;
        }
        uint64_t host = e & L2E_OFFSET_MASK;
        if (!host)
            continue;
        if (bad_offset(c, host, cs)) {
            REPORT(c, "ERROR data cluster offset 0x%llx is %s", (unsigned long long)host,
                   host % cs ? "not cluster aligned" : "outside the image file");
            c->res->corruptions++;
            if (c->fix & BLK_FIX_ERRORS) {
                qcow2_l2_set(s, l2, j, s->version >= 3 && !s->extended_l2 ? QCOW_OFLAG_ZERO : 0,
                             s->extended_l2 ? 0xffffffffull << 32 : 0);
                *modified = true;
                c->res->corruptions_fixed++;
            }
            continue;
        }
        inc_n(c, host, cs, c->mult, "data cluster");
        if (active) {
            c->res->allocated_clusters++;
            if (c->last_host && host != c->last_host + cs)
                c->res->fragmented_clusters++;
            c->last_host = host;
        }
    }
    return 0;
}

/* First pass: count references to L2 tables. A table referenced from many L1 entries (or
 * snapshots) is walked once, its references counted that many times: a hostile image with
 * every entry pointing at one table cannot make the check quadratic. */
static int mark_l1(struct counter *c, uint64_t *l1, uint32_t n, bool active)
{
    struct qcow2 *s = c->s;
    uint64_t cs = s->cluster_size;
    int r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        uint64_t l2off = l1[i] & L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        if (bad_offset(c, l2off, cs)) {
            REPORT(c, "ERROR L2 table offset 0x%llx is %s", (unsigned long long)l2off,
                   l2off % cs ? "not cluster aligned" : "outside the image file");
            c->res->corruptions++;
            if (active && (c->fix & BLK_FIX_ERRORS)) {
                l1[i] = 0;
                r = qcow2_write_l1_entry(s, i);
                c->res->corruptions_fixed++;
            }
            continue;
        }
        inc(c, l2off, cs, "L2 table");
        c->seen[l2off / cs] |= active ? 3 : 1;
    }
    return r;
}

static int walk_tables(struct counter *c)
{
    struct qcow2 *s = c->s;
    uint64_t cs = s->cluster_size;
    uint8_t *l2 = xmalloc(cs);
    int r = 0;
    unsigned fix = c->fix;
    for (uint64_t k = 0; k < c->nb && r == 0; k++) {
        if (!c->seen[k])
            continue;
        uint64_t l2off = k * cs;
        c->mult = c->counts[k]; /* only L1 references are counted so far */
        r = blk_file_pread(&s->f, l2off, l2, cs);
        if (r < 0) {
            c->res->check_errors++;
            break;
        }
        bool modified = false, active = c->seen[k] & 2;
        /* Repairs only touch tables the active L1 uses. */
        c->fix = active ? fix : 0;
        walk_l2(c, l2off, active, &modified, l2);
        c->fix = fix;
        if (modified) {
            qcow2_cache_drop(&s->l2c, l2off);
            r = blk_file_pwrite(&s->f, l2off, l2, cs);
        }
    }
    free(l2);
    return r;
}

static int count_refs(struct counter *c)
{
    struct qcow2 *s = c->s;
    uint64_t cs = s->cluster_size;
    int r = mark_l1(c, s->l1, s->l1_size, !s->snapshot_view);
    for (uint32_t i = 0; i < s->nb_snapshots && r == 0; i++) {
        struct qcow2_snap *sn = &s->snaps[i];
        uint64_t *l1;
        r = qcow2_read_l1(s, sn->l1_offset, sn->l1_size, &l1);
        if (r < 0) {
            c->res->check_errors++;
            break;
        }
        r = mark_l1(c, l1, sn->l1_size, false);
        free(l1);
    }
    if (r == 0)
        r = walk_tables(c);
    inc(c, 0, cs, "header");
    if (s->l1_size)
        inc(c, s->l1_offset, (uint64_t)s->l1_size * 8, "L1 table");
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (s->snaps[i].l1_size)
            inc(c, s->snaps[i].l1_offset, (uint64_t)s->snaps[i].l1_size * 8,
                "snapshot L1 table");
    if (s->nb_snapshots)
        inc(c, s->snapshots_offset, s->snap_table_len, "snapshot table");
    inc(c, s->rt_offset, (uint64_t)s->rt_clusters * cs, "refcount table");
    for (uint64_t i = 0; i < s->rt_size; i++) {
        uint64_t off = s->rt[i] & REFT_OFFSET_MASK;
        if (!off)
            continue;
        if (bad_offset(c, off, cs)) {
            REPORT(c, "ERROR refcount block %llu offset 0x%llx is invalid",
                   (unsigned long long)i, (unsigned long long)off);
            c->res->corruptions++;
            continue;
        }
        inc(c, off, cs, "refcount block");
    }
    return r;
}

int qcow2_count_refs(struct qcow2 *s, uint32_t **counts, uint64_t *nb,
                     struct blk_check_result *res, unsigned fix)
{
    uint64_t fsize = qcow2_file_end(s);
    uint64_t n = DIV_ROUND_UP(fsize, s->cluster_size);
    if (n > CHECK_MAX_CLUSTERS) {
        log_error("%s: the image file has %llu clusters; checking more than %llu is not "
                  "supported", s->b->filename, (unsigned long long)n,
                  (unsigned long long)CHECK_MAX_CLUSTERS);
        return -EFBIG;
    }
    struct counter c = {.s = s, .counts = xzalloc(MAX(n, 1) * sizeof(uint32_t)), .nb = n,
                        .res = res, .fix = fix, .seen = xzalloc(MAX(n, 1))};
    int r = count_refs(&c);
    free(c.seen);
    if (r < 0) {
        free(c.counts);
        return r;
    }
    *counts = c.counts;
    *nb = n;
    return 0;
}

/* Compares; returns the number of refcount mismatches that are corruptions. */
static int compare(struct qcow2 *s, const uint32_t *counts, uint64_t nb,
                   struct blk_check_result *res, uint64_t *ref_corrupt, unsigned *messages)
{
    uint64_t cs = s->cluster_size;
    uint64_t end = 0;
    for (uint64_t k = 0; k < nb; k++) {
        uint64_t rc;
        int r = qcow2_get_refcount(s, k, &rc);
        if (r < 0) {
            res->check_errors++;
            continue;
        }
        /* Leaked clusters still occupy the file: qemu-img counts them in the end offset. */
        if (counts[k] || rc)
            end = k + 1;
        if (rc == counts[k])
            continue;
        if (rc < counts[k]) {
            if ((*messages)++ < CHECK_MAX_MESSAGES)
                log_msg(s->quiet_check ? LOG_DEBUG : LOG_WARN, "ERROR cluster %llu refcount=%llu reference=%u",
                         (unsigned long long)k, (unsigned long long)rc, counts[k]);
            res->corruptions++;
            (*ref_corrupt)++;
        } else {
            if ((*messages)++ < CHECK_MAX_MESSAGES)
                log_msg(s->quiet_check ? LOG_DEBUG : LOG_WARN, "Leaked cluster %llu refcount=%llu reference=%u",
                         (unsigned long long)k, (unsigned long long)rc, counts[k]);
            res->leaks++;
        }
    }
    res->image_end_offset = end * cs;
    /* COPIED must mean refcount == 1 in the active tables. */
    for (uint32_t i = 0; i < s->l1_size && !s->snapshot_view; i++) {
        uint64_t l2off = s->l1[i] & L1E_OFFSET_MASK;
        if (!l2off || l2off % cs || l2off / cs >= nb)
            continue;
        uint64_t rc = 0;
        qcow2_get_refcount(s, l2off / cs, &rc);
        if (!!(s->l1[i] & QCOW_OFLAG_COPIED) != (rc == 1)) {
            if ((*messages)++ < CHECK_MAX_MESSAGES)
                log_msg(s->quiet_check ? LOG_DEBUG : LOG_WARN,
                        "ERROR OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx refcount=%llu",
                        i, (unsigned long long)s->l1[i], (unsigned long long)rc);
            res->corruptions++;
            (*ref_corrupt)++;
        }
    }
    uint64_t *offs = NULL;
    size_t n = s->snapshot_view ? 0 : qcow2_distinct_l2(s->l1, s->l1_size, &offs);
    uint8_t *l2 = xmalloc(cs);
    for (size_t t = 0; t < n; t++) {
        uint64_t l2off = offs[t];
        if (l2off % cs || l2off / cs >= nb || blk_file_pread(&s->f, l2off, l2, cs) < 0)
            continue;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2_get(s, l2, j, NULL), rc = 0;
            uint64_t host = e & L2E_OFFSET_MASK;
            if ((e & QCOW_OFLAG_COMPRESSED) || !host || host % cs || host / cs >= nb)
                continue;
            qcow2_get_refcount(s, host / cs, &rc);
            if (!!(e & QCOW_OFLAG_COPIED) != (rc == 1)) {
                if ((*messages)++ < CHECK_MAX_MESSAGES)
                    log_msg(s->quiet_check ? LOG_DEBUG : LOG_WARN,
                            "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu",
                            (unsigned long long)e, (unsigned long long)rc);
                res->corruptions++;
                (*ref_corrupt)++;
            }
        }
    }
    free(l2);
    free(offs);
    return 0;
}

int qcow2_check_locked(struct qcow2 *s, unsigned fix, struct blk_check_result *res)
{
    memset(res, 0, sizeof(*res));
    int r = 0;
    if (!s->b->read_only)
        r = qcow2_flush_all(s);
    if (r < 0)
        return r;
    uint32_t *counts;
    uint64_t nb, ref_corrupt = 0;
    unsigned messages = 0;
    r = qcow2_count_refs(s, &counts, &nb, res, fix);
    if (r < 0)
        return r;
    compare(s, counts, nb, res, &ref_corrupt, &messages);
    res->total_clusters = DIV_ROUND_UP(s->b->size, s->cluster_size);
    bool rebuild = ((fix & BLK_FIX_ERRORS) && ref_corrupt) ||
                   ((fix & BLK_FIX_LEAKS) && res->leaks && (!ref_corrupt || (fix & BLK_FIX_ERRORS)));
    if (rebuild && !s->snapshot_view) {
        r = qcow2_rebuild_refcounts(s, counts, nb, s->refcount_order);
        if (r == 0 && (fix & BLK_FIX_ERRORS))
            r = qcow2_fix_copied(s);
        if (r == 0)
            r = qcow2_flush_all(s);
        free(counts);
        if (r < 0) {
            log_error("%s: repairing the refcounts failed: %s", s->b->filename, strerror(-r));
            return r;
        }
        /* Report what is left, and what the repair fixed. */
        struct blk_check_result after = {0};
        uint64_t fixed_before = res->corruptions_fixed;
        r = qcow2_count_refs(s, &counts, &nb, &after, 0);
        if (r < 0)
            return r;
        ref_corrupt = 0;
        compare(s, counts, nb, &after, &ref_corrupt, &messages);
        after.total_clusters = res->total_clusters;
        (void)fixed_before;
        after.corruptions_fixed =
            res->corruptions > after.corruptions ? res->corruptions - after.corruptions : 0;
        after.leaks_fixed = res->leaks > after.leaks ? res->leaks - after.leaks : 0;
        *res = after;
    } else {
        /* Entries dropped during the walk are no longer corruptions. */
        res->corruptions -= MIN(res->corruptions, res->corruptions_fixed);
    }
    free(counts);
    if ((fix & BLK_FIX_ERRORS) && res->corruptions == 0 &&
        (s->incompat & QCOW2_INCOMPAT_CORRUPT) && !s->b->read_only)
        r = qcow2_set_incompat(s, QCOW2_INCOMPAT_CORRUPT, false);
    return r;
}

int qcow2_check(struct blk *b, unsigned fix, struct blk_check_result *res)
{
    struct qcow2 *s = b->opaque;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_check_locked(s, fix, res);
    pthread_mutex_unlock(&s->lock);
    return r;
}
