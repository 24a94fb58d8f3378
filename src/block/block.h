/* The block layer: open disk images of any supported format and do asynchronous I/O on them.
 * Used by the VMM's disk devices and by `vmkit img`; includes nothing above base/. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct blk;        /* one open image (a node); its backing file is another struct blk */
struct blk_driver; /* a format: raw, qcow2 */
struct blk_aio;    /* an I/O engine: io_uring, or a thread pool */

/* QEMU's cache= modes. */
enum blk_cache_mode {
    BLK_CACHE_WRITEBACK,   /* host page cache, flush on request (default) */
    BLK_CACHE_WRITETHROUGH,/* host page cache, every write is followed by a flush */
    BLK_CACHE_NONE,        /* O_DIRECT, flush on request */
    BLK_CACHE_DIRECTSYNC,  /* O_DIRECT and every write flushed */
    BLK_CACHE_UNSAFE,      /* flushes are ignored */
};
int blk_cache_mode_parse(const char *s, enum blk_cache_mode *out); /* 0 or -EINVAL */

enum blk_aio_kind { BLK_AIO_DEFAULT, BLK_AIO_IO_URING, BLK_AIO_THREADS };

struct blk_open_opts {
    const char *format;     /* "raw", "qcow2", or NULL to probe (a raw guess warns) */
    bool read_only;
    enum blk_cache_mode cache;
    enum blk_aio_kind aio;
    bool no_backing;        /* open without the backing chain (qemu-img info/rebase -u) */
    const char *backing_override;        /* use this backing file instead of the header's */
    const char *backing_format_override;
    bool discard_unmap;     /* pass discards down to the file (discard=unmap) */
    bool snapshot_temp;     /* snapshot=on: writes go to a temporary overlay deleted on close */
    bool no_repair;         /* don't repair a dirty lazy-refcount image on open (check -r) */
};

/* Completion of an asynchronous request: ret is 0 (also for reads/writes) or -errno. */
typedef void (*blk_completion_fn)(void *opaque, int ret);

/* --- Engine: where completions are delivered ------------------------------------------- */
/* One engine serves many images. Completion callbacks run only inside blk_aio_process(), on
 * the caller's thread; the VMM calls it when blk_aio_eventfd() becomes readable. */
int blk_aio_new(enum blk_aio_kind kind, struct blk_aio **out);
void blk_aio_free(struct blk_aio *e);
int blk_aio_eventfd(struct blk_aio *e);
void blk_aio_process(struct blk_aio *e);
/* Block until at least one completion has been processed (synchronous wrappers use it). */
void blk_aio_wait(struct blk_aio *e);
/* The process-wide default engine, created on first use (for `vmkit img`). */
struct blk_aio *blk_aio_default(void);
/* What the engine really uses: BLK_AIO_IO_URING, or BLK_AIO_THREADS after a fallback. */
enum blk_aio_kind blk_aio_kind_of(const struct blk_aio *e);

/* --- Opening ---------------------------------------------------------------------------- */
/* Opens filename with its whole backing chain. On failure returns -errno and logs an error
 * naming the file and what is wrong (never crashes on a hostile image). aio NULL = default. */
int blk_open(const char *filename, const struct blk_open_opts *opts, struct blk_aio *aio,
             struct blk **out);
/* Waits for the image's requests still in flight (their callbacks run), then closes. */
void blk_close(struct blk *b);

/* --- Asynchronous I/O -------------------------------------------------------------------- */
/* Offsets and lengths are bytes; requests need no alignment (drivers handle read-modify-write
 * where they must). Several requests may be in flight; each completes exactly once.
 * These return 0 when the request was queued (cb will run exactly once), or -errno for a
 * request refused up front (out of range: -EINVAL, read-only image: -EROFS); cb then never
 * runs. The iovec array is copied; the buffers must stay valid until cb runs. */
int blk_preadv(struct blk *b, uint64_t offset, const struct iovec *iov, int iovcnt,
               blk_completion_fn cb, void *opaque);
int blk_pwritev(struct blk *b, uint64_t offset, const struct iovec *iov, int iovcnt,
                blk_completion_fn cb, void *opaque);
int blk_flush(struct blk *b, blk_completion_fn cb, void *opaque);
int blk_discard(struct blk *b, uint64_t offset, uint64_t len, blk_completion_fn cb, void *opaque);
#define BLK_ZERO_MAY_UNMAP 1u
int blk_write_zeroes(struct blk *b, uint64_t offset, uint64_t len, unsigned flags,
                     blk_completion_fn cb, void *opaque);

/* Synchronous wrappers (they run the engine until the request completes). 0 or -errno. */
int blk_pread(struct blk *b, uint64_t offset, void *buf, size_t len);
int blk_pwrite(struct blk *b, uint64_t offset, const void *buf, size_t len);
int blk_flush_sync(struct blk *b);
int blk_discard_sync(struct blk *b, uint64_t offset, uint64_t len);
int blk_write_zeroes_sync(struct blk *b, uint64_t offset, uint64_t len, unsigned flags);
/* Note: the synchronous wrappers drive the image's engine; use them from one thread per
 * engine (the `vmkit img` case), not while another thread runs blk_aio_process on it. */

/* --- Information ------------------------------------------------------------------------- */
struct blk_info {
    const char *format;           /* "raw", "qcow2" */
    const char *filename;
    uint64_t virtual_size;
    uint64_t actual_size;         /* bytes allocated on the host */
    uint64_t cluster_size;        /* 0 for raw */
    const char *backing_file;     /* as recorded in the image, or NULL */
    const char *backing_format;   /* as recorded, or NULL */
    bool dirty;                   /* qcow2: dirty bit set (lazy refcounts) */
    bool encrypted;
    /* qcow2 specifics for `info`: */
    int qcow2_version;            /* 2 or 3 */
    bool lazy_refcounts, corrupt, extended_l2;
    unsigned refcount_bits;
    const char *compression_type; /* "zlib" or "zstd" */
    const char *data_file;
};
int blk_get_info(struct blk *b, struct blk_info *info);
uint64_t blk_size(const struct blk *b);
bool blk_is_read_only(const struct blk *b);
struct blk *blk_backing(const struct blk *b); /* NULL at the end of the chain */

/* Allocation status of [offset, offset+len): sets *pnum to the length of the run that shares
 * one status starting at offset. Status bits: */
#define BLK_STATUS_DATA 1u     /* reads come from this layer or below as data */
#define BLK_STATUS_ZERO 2u     /* reads as zeros */
#define BLK_STATUS_ALLOCATED 4u/* this layer (not a backing file) decides the contents */
#define BLK_STATUS_OFFSET_VALID 8u /* *map holds the host offset in *file */
int blk_block_status(struct blk *b, uint64_t offset, uint64_t len, uint64_t *pnum,
                     unsigned *status, uint64_t *map, struct blk **file);

/* --- Image-level operations (qemu-img) ----------------------------------------------------- */
struct blk_create_opts {
    const char *format;            /* "raw" or "qcow2" */
    uint64_t size;                 /* virtual size; may be 0 with a backing file (inherit) */
    const char *backing_file, *backing_format;
    uint64_t cluster_size;         /* 0 = default (64 KiB) */
    const char *compat;            /* "0.10"/"v2" or "1.1"/"v3" (default) */
    bool lazy_refcounts, extended_l2;
    unsigned refcount_bits;        /* 0 = default 16 */
    const char *preallocation;     /* "off", "metadata", "falloc", "full" */
    const char *compression_type;  /* "zlib" (default) or "zstd" */
};
/* Parses one qemu-img -o key=value list into opts (unknown keys: -EINVAL and a message).
 * String values are allocated by the parser and stay valid until the process exits. */
int blk_create_opts_parse(struct blk_create_opts *opts, const char *optstr);
int blk_create(const char *filename, const struct blk_create_opts *opts);
int blk_truncate(struct blk *b, uint64_t size, bool shrink, const char *preallocation);

struct blk_check_result {
    uint64_t corruptions, leaks, check_errors;
    uint64_t corruptions_fixed, leaks_fixed;
    uint64_t allocated_clusters, total_clusters, fragmented_clusters, compressed_clusters;
    uint64_t image_end_offset;
};
#define BLK_FIX_LEAKS 1u
#define BLK_FIX_ERRORS 2u
int blk_check(struct blk *b, unsigned fix, struct blk_check_result *res);

struct blk_snapshot {
    char id[32];
    char *name;
    uint64_t vm_state_size;
    uint64_t date_sec, date_nsec, vm_clock_nsec;
    uint32_t icount;
};
/* List: *out is malloc'd, free with blk_snapshot_list_free. */
int blk_snapshot_list(struct blk *b, struct blk_snapshot **out, unsigned *count);
void blk_snapshot_list_free(struct blk_snapshot *list, unsigned count);
int blk_snapshot_create(struct blk *b, const char *name);
int blk_snapshot_apply(struct blk *b, const char *name_or_id);
int blk_snapshot_delete(struct blk *b, const char *name_or_id);
/* Read-only view of a snapshot's contents (convert -l): reads come from the snapshot. */
int blk_snapshot_load_tmp(struct blk *b, const char *name_or_id);

/* Write a compressed cluster-aligned cluster (convert -c); -ENOTSUP for formats without it.
 * len may also span several whole clusters (the last may end at the image's end): they are
 * compressed in parallel on a few threads and stored in order, so callers should pass runs
 * of clusters rather than one at a time. */
int blk_pwrite_compressed(struct blk *b, uint64_t offset, const void *buf, size_t len);
/* Change the backing file recorded in the header (rebase -u, commit). */
int blk_change_backing(struct blk *b, const char *backing_file, const char *backing_format);
/* Amend qcow2 options (-o compat=, lazy_refcounts=, refcount_bits=...). */
int blk_amend(struct blk *b, const struct blk_create_opts *opts, const char *optstr);
/* Mark all clusters of the image empty (commit -d is the opposite; commit uses it with -b). */
int blk_make_empty(struct blk *b);

/* --- Drivers ------------------------------------------------------------------------------ */
const struct blk_driver *blk_driver_find(const char *format);
/* Probe a file's format from its first bytes: "qcow2", or "raw" (sets *guessed_raw). */
int blk_probe_format(const char *filename, const char **format, bool *guessed_raw);
