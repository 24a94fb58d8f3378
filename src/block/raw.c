/* The raw format: the image is the host file (regular file or block device). */
#include "block/blk_driver.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct raw_state {
    struct blk_file f;
};

static struct blk_file *raw_file(struct blk *b)
{
    return &((struct raw_state *)b->opaque)->f;
}

static int raw_probe(const uint8_t *buf, size_t len)
{
    return 1; /* anything can be raw; the lowest score */
}

static int raw_open(struct blk *b, const char *filename, const struct blk_open_opts *opts)
{
    struct raw_state *s = xzalloc(sizeof(*s));
    int r = blk_file_open(&s->f, filename, b->read_only, b->cache);
    if (r < 0) {
        free(s);
        return r;
    }
    r = blk_file_size(&s->f, &b->size);
    if (r < 0) {
        log_error("%s: cannot get the size: %s", filename, strerror(-r));
        blk_file_close(&s->f);
        free(s);
        return r;
    }
    b->opaque = s;
    return 0;
}

static void raw_close(struct blk *b)
{
    struct raw_state *s = b->opaque;
    if (!s)
        return;
    blk_file_close(&s->f);
    free(s);
    b->opaque = NULL;
}

static int raw_preadv(struct blk *b, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return blk_file_preadv(raw_file(b), off, iov, iovcnt);
}

static int raw_pwritev(struct blk *b, uint64_t off, const struct iovec *iov, int iovcnt)
{
    return blk_file_pwritev(raw_file(b), off, iov, iovcnt);
}

static int raw_flush(struct blk *b)
{
    return blk_file_flush(raw_file(b));
}

static int raw_discard(struct blk *b, uint64_t off, uint64_t len)
{
    if (!b->discard_unmap)
        return 0; /* discard=ignore: a hint the guest may not rely on */
    int r = blk_file_discard(raw_file(b), off, len);
    return r == -EOPNOTSUPP || r == -ENOTTY ? 0 : r;
}

static int raw_write_zeroes(struct blk *b, uint64_t off, uint64_t len, unsigned flags)
{
    return blk_file_write_zeroes(raw_file(b), off, len,
                                 (flags & BLK_ZERO_MAY_UNMAP) && b->discard_unmap);
}

/* Reads and writes whose buffers suit the file go to io_uring; the rest use the pool. */
static int raw_aio_rw(struct blk *b, struct blk_req *r)
{
    struct blk_file *f = raw_file(b);
    if (r->op == BLK_OP_FLUSH && f->no_flush)
        return -ENOTSUP;
    if (f->direct && (r->op == BLK_OP_READ || r->op == BLK_OP_WRITE)) {
        if (r->offset % f->align)
            return -ENOTSUP;
        for (int i = 0; i < r->iovcnt; i++)
            if ((uintptr_t)r->iov[i].iov_base % f->align || r->iov[i].iov_len % f->align)
                return -ENOTSUP;
    }
    if (r->iovcnt > 1024)
        return -ENOTSUP;
    r->sync_write = f->sync_writes;
    return blk_aio_submit_uring(b->aio, r, f->fd);
}

static int raw_info(struct blk *b, struct blk_info *info)
{
    info->format = "raw";
    info->actual_size = blk_file_allocated(raw_file(b));
    return 0;
}

static int raw_block_status(struct blk *b, uint64_t off, uint64_t len, uint64_t *pnum,
                            unsigned *status, uint64_t *map, struct blk **file)
{
    struct blk_file *f = raw_file(b);
    *map = off;
    *file = b;
    if (f->is_blockdev) {
        *pnum = len;
        *status = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET_VALID;
        return 0;
    }
    off_t data = lseek(f->fd, (off_t)off, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        /* Past the last data: a hole to the end. */
        *pnum = len;
        *status = BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET_VALID;
        return 0;
    }
    if (data < 0) {
        *pnum = len;
        *status = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET_VALID;
        return 0;
    }
    if ((uint64_t)data > off) {
        *pnum = MIN(len, (uint64_t)data - off);
        *status = BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET_VALID;
        return 0;
    }
    off_t hole = lseek(f->fd, (off_t)off, SEEK_HOLE);
    if (hole < 0 || (uint64_t)hole <= off)
        hole = (off_t)(off + len);
    *pnum = MIN(len, (uint64_t)hole - off);
    *status = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED | BLK_STATUS_OFFSET_VALID;
    return 0;
}

static int raw_create(const char *filename, const struct blk_create_opts *opts)
{
    const char *pre = opts->preallocation ? opts->preallocation : "off";
    if (strcmp(pre, "off") && strcmp(pre, "falloc") && strcmp(pre, "full") &&
        strcmp(pre, "metadata")) {
        log_error("%s: invalid preallocation mode '%s' (off, falloc, full)", filename, pre);
        return -EINVAL;
    }
    if (opts->backing_file) {
        log_error("%s: the raw format does not support backing files", filename);
        return -EINVAL;
    }
    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = -errno;
        log_error("%s: cannot create: %s", filename, strerror(errno));
        return e;
    }
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)opts->size) < 0)
            r = -errno;
        struct blk_file f = {.fd = fd, .align = 1};
        if (r == 0 && strcmp(pre, "metadata"))
            r = blk_file_preallocate(&f, 0, opts->size, pre);
    }
    if (r < 0)
        log_error("%s: cannot set the size to %llu bytes: %s", filename,
                  (unsigned long long)opts->size, strerror(-r));
    close(fd);
    return r;
}

static int raw_truncate(struct blk *b, uint64_t size, bool shrink, const char *prealloc)
{
    struct blk_file *f = raw_file(b);
    if (size < b->size && !shrink) {
        log_error("%s: shrinking the image needs --shrink (data past the new end is lost)",
                  b->filename);
        return -EINVAL;
    }
    uint64_t old = b->size;
    int r = blk_file_truncate(f, size);
    if (r < 0) {
        log_error("%s: cannot resize: %s", b->filename, strerror(-r));
        return r;
    }
    if (size > old && prealloc) {
        r = blk_file_preallocate(f, old, size - old, prealloc);
        if (r < 0) {
            log_error("%s: preallocation=%s failed: %s", b->filename, prealloc, strerror(-r));
            return r;
        }
    }
    return blk_file_size(f, &b->size);
}

static int raw_make_empty(struct blk *b)
{
    int r = blk_file_write_zeroes(raw_file(b), 0, b->size, true);
    return r;
}

const struct blk_driver blk_driver_raw = {
    .name = "raw",
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .preadv = raw_preadv,
    .pwritev = raw_pwritev,
    .flush = raw_flush,
    .discard = raw_discard,
    .write_zeroes = raw_write_zeroes,
    .aio_rw = raw_aio_rw,
    .info = raw_info,
    .block_status = raw_block_status,
    .create = raw_create,
    .truncate = raw_truncate,
    .make_empty = raw_make_empty,
};
