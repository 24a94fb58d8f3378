/* qcow2 driver internals shared by its files (format constants, state, cache, refcounts). */
#pragma once
#include "block/blk_driver.h"
#include <pthread.h>

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32 * 1024 * 1024)  /* as QEMU: refuse absurd L1 sizes */
#define QCOW2_MAX_RT_BYTES (8 * 1024 * 1024)   /* refcount table */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_BACKING_NAME 1023

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN 0x1full
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW_OFLAG_COPIED (1ull << 63)
#define QCOW_OFLAG_COMPRESSED (1ull << 62)
#define QCOW_OFLAG_ZERO (1ull << 0)
#define L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define REFT_OFFSET_MASK 0xfffffffffffffe00ull

/* A small LRU cache of cluster-sized metadata tables (L2 tables or refcount blocks). */
struct qcow2_cache {
    unsigned n;
    size_t esize;
    bool is_l2;  /* dirty L2 tables may only be written after the refcount blocks */
    uint64_t *off;
    uint8_t **data;
    bool *dirty;
    uint64_t *lru;
    uint64_t tick;
};

struct qcow2_snap {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;
    bool has_icount;
    uint32_t extra_size;
    uint8_t *extra; /* extra data beyond what we understand is kept as read */
};

struct qcow2 {
    struct blk_file f;
    pthread_mutex_t lock;
    struct blk *b;

    /* header */
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t rt_offset;
    uint32_t rt_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompat, compat, autoclear;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type; /* 0 zlib, 1 zstd */
    char *backing_file, *backing_fmt;
    uint8_t *other_ext;       /* header extensions we do not interpret, kept verbatim */
    size_t other_ext_len;

    /* derived */
    bool extended_l2;
    unsigned l2_entry_size;   /* 8, or 16 with extended L2 */
    unsigned l2_bits;         /* log2(entries per L2 table) */
    uint64_t l2_entries;
    uint64_t subcluster_size;
    unsigned refcount_bits;
    uint64_t refcount_max;
    uint64_t rb_entries;      /* refcounts per refcount block */
    unsigned csize_shift;
    uint64_t csize_mask, coffset_mask;

    uint64_t *l1;             /* host byte order */
    uint64_t *rt;             /* refcount table, host order */
    uint64_t rt_size;         /* entries */
    struct qcow2_cache l2c, rbc;
    uint64_t free_hint;       /* first cluster that may be free */
    uint64_t compress_pos;    /* next byte for compressed data, 0 = start a new cluster */

    struct qcow2_snap *snaps;
    uint64_t snap_table_len;  /* bytes of the table on disk (for freeing it) */
    bool snapshot_view;       /* load_tmp: the active tables are a snapshot's, read-only */
    bool dirty_marked;        /* lazy refcounts: the dirty bit is on disk */
    uint8_t *zbuf, *cbuf;     /* scratch for compression, one cluster each (+slack) */
    unsigned readers;         /* reads/in-place writes doing data I/O without the lock (atomic) */
    bool quiet_check;         /* repair on open: per-cluster findings are debug output */
};

/* L2 entry types */
enum qcow2_ctype { QC_UNALLOC, QC_ZERO, QC_NORMAL, QC_COMPRESSED };

/* qcow2.c */
int qcow2_write_header(struct qcow2 *s);
int qcow2_set_incompat(struct qcow2 *s, uint64_t bits, bool on);
int qcow2_read_guest(struct qcow2 *s, uint64_t off, void *buf, size_t len);
uint64_t qcow2_file_end(struct qcow2 *s);

/* qcow2_cache.c */
void qcow2_cache_init(struct qcow2_cache *c, unsigned n, size_t esize, bool is_l2);
void qcow2_cache_destroy(struct qcow2_cache *c);
int qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t off, bool read,
                    uint8_t **data, unsigned *slot);
void qcow2_cache_dirty(struct qcow2_cache *c, unsigned slot);
/* The cached table at off, or NULL when it is not cached (never does I/O). */
uint8_t *qcow2_cache_peek(struct qcow2_cache *c, uint64_t off);
int qcow2_cache_flush(struct qcow2 *s, struct qcow2_cache *c);
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off);
void qcow2_cache_drop_all(struct qcow2_cache *c);
int qcow2_flush_all(struct qcow2 *s);   /* refblocks, sync, L2 tables, sync */
int qcow2_sync(struct qcow2 *s);        /* fdatasync unless cache=unsafe */

/* qcow2_refcount.c */
uint64_t qcow2_rc_get_entry(const uint8_t *rb, uint64_t i, unsigned order);
void qcow2_rc_set_entry(uint8_t *rb, uint64_t i, unsigned order, uint64_t v);
int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc);
int qcow2_update_refcount(struct qcow2 *s, uint64_t off, uint64_t len, int64_t delta);
int64_t qcow2_alloc_clusters(struct qcow2 *s, uint64_t n);
/* Drops references after the tables that held them are on disk. */
int qcow2_free_clusters(struct qcow2 *s, uint64_t off, uint64_t len);
int qcow2_load_refcount_table(struct qcow2 *s);
/* Writes new refcount structures for `counts` (one per cluster, nb entries) at the end of
 * the file, with refcount_order `order`, and switches the header to them. */
int qcow2_rebuild_refcounts(struct qcow2 *s, uint32_t *counts, uint64_t nb, unsigned order);

/* qcow2_cluster.c */
uint64_t qcow2_l2_get(struct qcow2 *s, const uint8_t *l2, uint64_t idx, uint64_t *bitmap);
void qcow2_l2_set(struct qcow2 *s, uint8_t *l2, uint64_t idx, uint64_t e, uint64_t bitmap);
enum qcow2_ctype qcow2_entry_type(struct qcow2 *s, uint64_t e);
void qcow2_compressed_range(struct qcow2 *s, uint64_t e, uint64_t *off, uint64_t *len);
int qcow2_preadv_locked(struct qcow2 *s, uint64_t off, const struct iovec *iov, int iovcnt);
/* Reads in two steps so data I/O runs without the image lock: plan (under the lock) fills
 * what it can and lists host/backing ranges; run reads those after the lock is dropped.
 * Clusters in a plan cannot be freed meanwhile: refcount decrements wait for s->readers. */
struct qcow2_rdseg {
    bool backing;
    uint64_t addr;   /* host offset, or guest offset in the backing file */
    size_t pos;      /* byte position in the request */
    uint64_t len;
};
int qcow2_preadv_plan(struct qcow2 *s, uint64_t off, const struct iovec *iov, int iovcnt,
                      struct qcow2_rdseg **segs, size_t *nsegs);
int qcow2_rdseg_run(struct qcow2 *s, const struct qcow2_rdseg *segs, size_t n,
                    const struct iovec *iov, int iovcnt);
int qcow2_pwrite_locked(struct qcow2 *s, uint64_t off, const uint8_t *buf, uint64_t len);
/* Writes that only overwrite clusters the image owns (allocated, COPIED) need no metadata
 * change: plan (under the lock) lists their host ranges, or returns -EAGAIN when any cluster
 * needs qcow2_pwrite_locked; run writes them after the lock is dropped, counted in
 * s->readers so no cluster of the plan is freed (and reused) meanwhile. */
int qcow2_pwrite_plan(struct qcow2 *s, uint64_t off, uint64_t len, struct qcow2_rdseg **segs,
                      size_t *nsegs);
int qcow2_wrseg_run(struct qcow2 *s, const struct qcow2_rdseg *segs, size_t n,
                    const struct iovec *iov, int iovcnt);
/* Maps [off, off+len) to one contiguous host range using only cached tables (no I/O, for
 * the thread that submits to io_uring): every cluster normal and, for writes, owned
 * (COPIED). -EAGAIN when anything else is needed. Under the lock. */
int qcow2_map_cached(struct qcow2 *s, uint64_t off, uint64_t len, bool write, uint64_t *host);
/* Waits for data I/O running without the lock (s->readers); call with the lock held. */
void qcow2_wait_data_io(struct qcow2 *s);

int qcow2_zero_or_discard(struct qcow2 *s, uint64_t off, uint64_t len, int mode);
#define QZ_ZERO 0        /* write zeroes, keep allocation */
#define QZ_ZERO_UNMAP 1  /* write zeroes, may deallocate */
#define QZ_DISCARD 2     /* guest discard: contents undefined afterwards */
#define QZ_UNALLOC 3     /* make_empty: make clusters unallocated (backing shows through) */
int qcow2_get_l2_write(struct qcow2 *s, uint64_t guest_off, uint8_t **l2, unsigned *slot);
int qcow2_write_l1_entry(struct qcow2 *s, uint64_t idx);
int qcow2_grow_l1(struct qcow2 *s, uint64_t min_size);
int qcow2_block_status_locked(struct qcow2 *s, uint64_t off, uint64_t len, uint64_t *pnum,
                              unsigned *status, uint64_t *map);
int qcow2_write_compressed_locked(struct qcow2 *s, uint64_t off, const uint8_t *buf,
                                  size_t len);
/* The two halves of a compressed write, so clusters can be compressed in parallel without
 * the lock: compress one cluster (len < cluster only for the image's last cluster; returns
 * the length, or -ENOSPC when incompressible), then store it (under the lock; clen -ENOSPC
 * stores buf plainly). out holds at least one cluster. */
long qcow2_compress_cluster(struct qcow2 *s, const uint8_t *buf, size_t len, uint8_t *out);
int qcow2_store_compressed_locked(struct qcow2 *s, uint64_t off, const uint8_t *buf, size_t len,
                                  const uint8_t *out, long clen);

/* qcow2_compress.c */
int qcow2_decompress(struct qcow2 *s, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t outlen);
/* Returns the compressed length, or -ENOSPC when it would not be smaller than outlen. */
long qcow2_compress(struct qcow2 *s, const uint8_t *in, size_t inlen, uint8_t *out,
                    size_t outlen);

/* qcow2_snapshot.c */
int qcow2_snapshots_load(struct qcow2 *s);
void qcow2_snapshots_free(struct qcow2 *s);
/* Adds delta to the refcount of every L2 table and data cluster reachable from l1. */
int qcow2_l1_refcounts(struct qcow2 *s, const uint64_t *l1, uint32_t l1_size, int64_t delta);
/* Sets or clears COPIED in the active L1/L2 tables so it means refcount == 1. */
int qcow2_fix_copied(struct qcow2 *s);
/* Sorted distinct L2 table offsets of an L1 table (malloc'd); returns how many. */
size_t qcow2_distinct_l2(const uint64_t *l1, uint32_t n, uint64_t **out);
int qcow2_snapshot_list(struct blk *b, struct blk_snapshot **out, unsigned *count);
int qcow2_snapshot_create(struct blk *b, const char *name);
int qcow2_snapshot_apply(struct blk *b, const char *name_or_id);
int qcow2_snapshot_delete(struct blk *b, const char *name_or_id);
int qcow2_snapshot_load_tmp(struct blk *b, const char *name_or_id);
int qcow2_read_l1(struct qcow2 *s, uint64_t off, uint32_t n, uint64_t **out);

/* qcow2_check.c */
int qcow2_check_locked(struct qcow2 *s, unsigned fix, struct blk_check_result *res);
int qcow2_check(struct blk *b, unsigned fix, struct blk_check_result *res);
/* Counts references to every cluster (for check and refcount_bits amend). */
int qcow2_count_refs(struct qcow2 *s, uint32_t **counts, uint64_t *nb,
                     struct blk_check_result *res, unsigned fix);

/* qcow2_create.c */
int qcow2_create(const char *filename, const struct blk_create_opts *opts);
int qcow2_amend(struct blk *b, const struct blk_create_opts *opts, const char *optstr);
int qcow2_truncate(struct blk *b, uint64_t size, bool shrink, const char *prealloc);

static inline uint64_t be64_get(const void *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
static inline uint32_t be32_get(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
static inline uint16_t be16_get(const void *p)
{
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return __builtin_bswap16(v);
}
static inline void be64_put(void *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    __builtin_memcpy(p, &v, 8);
}
static inline void be32_put(void *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    __builtin_memcpy(p, &v, 4);
}
static inline void be16_put(void *p, uint16_t v)
{
    v = __builtin_bswap16(v);
    __builtin_memcpy(p, &v, 2);
}
