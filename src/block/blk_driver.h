/* Internal contract between the generic block layer, the I/O engine and the format drivers. */
#pragma once
#include "block/block.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* A host file (regular file or block device) with O_DIRECT alignment handled by bounce
 * buffers. Every format reads and writes its host file through these, from any thread. */
struct blk_file {
    int fd;
    bool direct;          /* opened O_DIRECT: buffers, offsets and lengths must be aligned */
    bool sync_writes;     /* writethrough/directsync: fdatasync after every write */
    bool no_flush;        /* cache=unsafe */
    bool is_blockdev;
    unsigned align;       /* alignment required for direct I/O (512 or 4096) */
    pthread_mutex_t rmw_lock; /* unaligned direct writes do read-modify-write */
};
int blk_file_open(struct blk_file *f, const char *filename, bool read_only,
                  enum blk_cache_mode cache);
void blk_file_close(struct blk_file *f);
int blk_file_preadv(struct blk_file *f, uint64_t off, const struct iovec *iov, int iovcnt);
int blk_file_pwritev(struct blk_file *f, uint64_t off, const struct iovec *iov, int iovcnt);
int blk_file_pread(struct blk_file *f, uint64_t off, void *buf, size_t len);
int blk_file_pwrite(struct blk_file *f, uint64_t off, const void *buf, size_t len);
int blk_file_flush(struct blk_file *f);
int blk_file_discard(struct blk_file *f, uint64_t off, uint64_t len);
int blk_file_write_zeroes(struct blk_file *f, uint64_t off, uint64_t len, bool may_unmap);
int blk_file_truncate(struct blk_file *f, uint64_t size);
int blk_file_size(struct blk_file *f, uint64_t *size);
uint64_t blk_file_allocated(struct blk_file *f);
/* Preallocate [off, off+len): "falloc" (fallocate) or "full" (write zeroes). */
int blk_file_preallocate(struct blk_file *f, uint64_t off, uint64_t len, const char *mode);

/* --- Engine ----------------------------------------------------------------------------- */
enum blk_op { BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_DISCARD, BLK_OP_ZEROES };

/* One asynchronous request. The engine owns it from submit to completion. */
struct blk_req {
    struct blk *b;
    enum blk_op op;
    uint64_t offset, len;
    unsigned flags;
    struct iovec *iov;
    int iovcnt;
    struct iovec iov_inline[4];
    blk_completion_fn cb;
    void *opaque;
    int ret;
    int fd;           /* io_uring requests: the host file */
    bool sync_write;  /* io_uring writes: RWF_DSYNC (writethrough) */
    /* Work to run on a pool thread (returns 0 or -errno); NULL for io_uring requests. */
    int (*work)(struct blk_req *r);
    /* Driver hook run when the request has finished, before its callback and before the
     * image stops counting it in flight (qcow2 releases the clusters it used). */
    void (*done)(struct blk_req *r);
    void *done_opaque;
    struct blk_req *next;
};
struct blk_req *blk_req_new(struct blk *b, enum blk_op op, uint64_t offset, uint64_t len,
                            const struct iovec *iov, int iovcnt, blk_completion_fn cb,
                            void *opaque);
void blk_req_free(struct blk_req *r);
/* Run r->work on a pool thread; the callback runs later in blk_aio_process(). */
void blk_aio_submit_work(struct blk_aio *e, struct blk_req *r);
/* Submit a raw read/write/flush on fd through io_uring; returns -ENOTSUP when the engine
 * has no ring (the caller then uses the pool). */
int blk_aio_submit_uring(struct blk_aio *e, struct blk_req *r, int fd);
bool blk_aio_has_uring(const struct blk_aio *e);
/* From any thread: reap finished io_uring requests and run their `done` hooks now; their
 * callbacks still run in blk_aio_process. A thread that waits (holding a driver lock) for
 * data I/O to finish uses it, so it never depends on the processing thread, which may
 * itself be waiting for that lock. */
void blk_aio_reap_hooks(struct blk_aio *e);
/* Completes r from inside blk_aio_process (used for immediate errors, too). */
void blk_aio_complete_later(struct blk_aio *e, struct blk_req *r);

/* io_uring half of the engine (aio_uring.c). */
struct blk_uring;
int blk_uring_new(int efd, struct blk_uring **out);
void blk_uring_free(struct blk_uring *u);
int blk_uring_submit(struct blk_uring *u, struct blk_req *r, int fd);
/* Reap completed requests, appending them to *list; returns how many. */
int blk_uring_reap(struct blk_uring *u, struct blk_req **list);
unsigned blk_uring_inflight(struct blk_uring *u);

/* Thread-pool half (aio_threads.c). */
struct blk_pool;
struct blk_pool *blk_pool_new(int efd, unsigned nthreads);
void blk_pool_free(struct blk_pool *p);
void blk_pool_submit(struct blk_pool *p, struct blk_req *r);
int blk_pool_reap(struct blk_pool *p, struct blk_req **list);
void blk_pool_complete(struct blk_pool *p, struct blk_req *r);

/* --- Images ----------------------------------------------------------------------------- */
struct blk {
    const struct blk_driver *drv;
    char *filename;
    struct blk_aio *aio;
    bool read_only;
    enum blk_cache_mode cache;
    enum blk_aio_kind aio_kind;
    bool discard_unmap;
    bool no_repair;
    uint64_t size;
    struct blk *backing;
    char *temp_path;  /* snapshot=on: overlay to delete on close */
    struct blk *temp_base; /* snapshot=on: the real image under the temporary overlay */
    void *opaque;     /* driver state */
    /* Identity of the host file, and the overlay that is opening this one as its backing
     * file (only during open): together they find backing loops. */
    uint64_t dev, ino;
    struct blk *opened_by;
    unsigned inflight; /* requests queued and not yet completed (atomic) */
};

/* Formats. Synchronous operations may be called from any thread (pool workers, and a
 * format reading its backing file); the driver serializes what it must. The async ones are
 * optional: NULL means the generic layer runs the synchronous one on the pool. */
struct blk_driver {
    const char *name;
    /* Score how likely buf (first bytes of a file) is this format; 0 = not it. */
    int (*probe)(const uint8_t *buf, size_t len);
    int (*open)(struct blk *b, const char *filename, const struct blk_open_opts *opts);
    void (*close)(struct blk *b);

    int (*preadv)(struct blk *b, uint64_t off, const struct iovec *iov, int iovcnt);
    int (*pwritev)(struct blk *b, uint64_t off, const struct iovec *iov, int iovcnt);
    int (*flush)(struct blk *b);
    int (*discard)(struct blk *b, uint64_t off, uint64_t len);
    int (*write_zeroes)(struct blk *b, uint64_t off, uint64_t len, unsigned flags);

    int (*aio_rw)(struct blk *b, struct blk_req *r); /* read, write and flush via io_uring */

    int (*info)(struct blk *b, struct blk_info *info);
    int (*block_status)(struct blk *b, uint64_t off, uint64_t len, uint64_t *pnum,
                        unsigned *status, uint64_t *map, struct blk **file);
    int (*check)(struct blk *b, unsigned fix, struct blk_check_result *res);
    int (*create)(const char *filename, const struct blk_create_opts *opts);
    int (*truncate)(struct blk *b, uint64_t size, bool shrink, const char *prealloc);
    int (*snapshot_list)(struct blk *b, struct blk_snapshot **out, unsigned *count);
    int (*snapshot_create)(struct blk *b, const char *name);
    int (*snapshot_apply)(struct blk *b, const char *name_or_id);
    int (*snapshot_delete)(struct blk *b, const char *name_or_id);
    int (*snapshot_load_tmp)(struct blk *b, const char *name_or_id);
    int (*pwrite_compressed)(struct blk *b, uint64_t off, const void *buf, size_t len);
    int (*change_backing)(struct blk *b, const char *file, const char *fmt);
    int (*amend)(struct blk *b, const struct blk_create_opts *opts, const char *optstr);
    int (*make_empty)(struct blk *b);
};

extern const struct blk_driver blk_driver_raw;
extern const struct blk_driver blk_driver_qcow2;

/* Read through a backing image from any thread: zeros past its end. */
int blk_backing_preadv(struct blk *backing, uint64_t off, const struct iovec *iov, int iovcnt);
/* Opens a backing file for image b (resolving a relative name against b's directory). */
int blk_open_backing(struct blk *b, const char *backing, const char *backing_fmt,
                     unsigned depth, struct blk **out);
/* Nesting depth of backing opens, to stop loops; blk_open_backing passes it through. */
#define BLK_MAX_BACKING_DEPTH 64

/* iovec helpers */
size_t blk_iov_size(const struct iovec *iov, int iovcnt);
void blk_iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len);
void blk_buf_to_iov(const struct iovec *iov, int iovcnt, size_t skip, const void *buf,
                    size_t len);
void blk_iov_memset(const struct iovec *iov, int iovcnt, size_t skip, int c, size_t len);
bool blk_buf_is_zero(const void *buf, size_t len);
