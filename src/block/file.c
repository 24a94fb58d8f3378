/* Host file access for all formats: full-length I/O, O_DIRECT bounce buffers, flush, discard. */
#include "block/blk_driver.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

int blk_file_open(struct blk_file *f, const char *filename, bool read_only,
                  enum blk_cache_mode cache)
{
    memset(f, 0, sizeof(*f));
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    f->direct = cache == BLK_CACHE_NONE || cache == BLK_CACHE_DIRECTSYNC;
    if (f->direct)
        flags |= O_DIRECT;
    /* writethrough: the device's write cache is "off", so each write must be stable. */
    f->sync_writes = cache == BLK_CACHE_WRITETHROUGH || cache == BLK_CACHE_DIRECTSYNC;
    f->no_flush = cache == BLK_CACHE_UNSAFE;
    int fd = open(filename, flags);
    if (fd < 0 && errno == EINVAL && f->direct) {
        log_error("%s: the file system does not support O_DIRECT (cache=none/directsync); "
                  "use cache=writeback or writethrough", filename);
        return -EINVAL;
    }
    if (fd < 0 && errno == EROFS && !read_only) {
        int e = -errno;
        log_error("%s: read-only file system; open the image read-only", filename);
        return e;
    }
    if (fd < 0) {
        int e = -errno;
        log_error("%s: cannot open: %s", filename, strerror(errno));
        return e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        log_error("%s: is a directory, not a disk image", filename);
        return -EISDIR;
    }
    f->is_blockdev = S_ISBLK(st.st_mode);
    f->align = 1;
    if (f->direct) {
        int ss = 0;
        struct statx stx;
        f->align = 4096; /* safe everywhere when the kernel cannot tell us */
        if (f->is_blockdev && ioctl(fd, BLKSSZGET, &ss) == 0 && ss >= 512 && ss <= 65536)
            f->align = (unsigned)ss;
        else if (!f->is_blockdev && statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
                 (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align >= 512 &&
                 stx.stx_dio_offset_align <= 65536 &&
                 stx.stx_dio_mem_align <= stx.stx_dio_offset_align)
            f->align = stx.stx_dio_offset_align;
    }
    pthread_mutex_init(&f->rmw_lock, NULL);
    f->fd = fd;
    return 0;
}

void blk_file_close(struct blk_file *f)
{
    if (f->fd > 0) {
        close(f->fd);
        pthread_mutex_destroy(&f->rmw_lock);
    }
    f->fd = -1;
}

static bool iov_aligned(const struct iovec *iov, int iovcnt, uint64_t off, unsigned align)
{
    if (off % align)
        return false;
    for (int i = 0; i < iovcnt; i++)
        if ((uintptr_t)iov[i].iov_base % align || iov[i].iov_len % align)
            return false;
    return true;
}

/* Full-length positioned vector I/O; reads past end of file return zeros. */
static int do_iov(int fd, bool write, uint64_t off, const struct iovec *iov_in, int iovcnt)
{
    struct iovec stack[16], *iov = iovcnt <= 16 ? stack : xmalloc(sizeof(*iov) * iovcnt);
    memcpy(iov, iov_in, sizeof(*iov) * iovcnt);
    struct iovec *cur = iov;
    int n = iovcnt, ret = 0;
    while (n > 0) {
        if (cur->iov_len == 0) {
            cur++, n--;
            continue;
        }
        ssize_t r = write ? pwritev(fd, cur, MIN(n, IOV_MAX), (off_t)off)
                          : preadv(fd, cur, MIN(n, IOV_MAX), (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = -errno;
            break;
        }
        if (r == 0) {
            if (write) {
                ret = -EIO;
                break;
            }
            for (int i = 0; i < n; i++)
                memset(cur[i].iov_base, 0, cur[i].iov_len);
            break;
        }
        off += (uint64_t)r;
        size_t left = (size_t)r;
        while (left && n) {
            if (left >= cur->iov_len) {
                left -= cur->iov_len;
                cur++, n--;
            } else {
                cur->iov_base = (char *)cur->iov_base + left;
                cur->iov_len -= left;
                left = 0;
            }
        }
    }
    if (iov != stack)
        free(iov);
    return ret;
}

static void *bounce_alloc(size_t len, unsigned align)
{
    void *p = NULL;
    if (posix_memalign(&p, MAX(align, sizeof(void *)), len ? len : align))
        die("out of memory allocating a %zu byte bounce buffer", len);
    return p;
}

int blk_file_preadv(struct blk_file *f, uint64_t off, const struct iovec *iov, int iovcnt)
{
    if (!f->direct || iov_aligned(iov, iovcnt, off, f->align))
        return do_iov(f->fd, false, off, iov, iovcnt);
    size_t len = blk_iov_size(iov, iovcnt);
    uint64_t start = ALIGN_DOWN(off, (uint64_t)f->align);
    uint64_t end = ALIGN_UP(off + len, (uint64_t)f->align);
    uint8_t *buf = bounce_alloc(end - start, f->align);
    struct iovec biov = {buf, end - start};
    int ret = do_iov(f->fd, false, start, &biov, 1);
    if (ret == 0)
        blk_buf_to_iov(iov, iovcnt, 0, buf + (off - start), len);
    free(buf);
    return ret;
}

int blk_file_pwritev(struct blk_file *f, uint64_t off, const struct iovec *iov, int iovcnt)
{
    int ret;
    if (!f->direct || iov_aligned(iov, iovcnt, off, f->align)) {
        ret = do_iov(f->fd, true, off, iov, iovcnt);
    } else {
        /* Read-modify-write of the partial blocks at each end, under a lock so two
         * unaligned writes into one block do not undo each other. */
        size_t len = blk_iov_size(iov, iovcnt);
        uint64_t start = ALIGN_DOWN(off, (uint64_t)f->align);
        uint64_t end = ALIGN_UP(off + len, (uint64_t)f->align);
        uint8_t *buf = bounce_alloc(end - start, f->align);
        pthread_mutex_lock(&f->rmw_lock);
        struct iovec head = {buf, f->align};
        ret = 0;
        if (start != off || (end - start) == f->align)
            ret = do_iov(f->fd, false, start, &head, 1);
        if (ret == 0 && end != off + len && end - f->align > start) {
            struct iovec tail = {buf + (end - start) - f->align, f->align};
            ret = do_iov(f->fd, false, end - f->align, &tail, 1);
        }
        if (ret == 0) {
            blk_iov_to_buf(iov, iovcnt, 0, buf + (off - start), len);
            struct iovec biov = {buf, end - start};
            ret = do_iov(f->fd, true, start, &biov, 1);
        }
        pthread_mutex_unlock(&f->rmw_lock);
        free(buf);
    }
    if (ret == 0 && f->sync_writes)
        ret = fdatasync(f->fd) < 0 ? -errno : 0;
    return ret;
}

int blk_file_pread(struct blk_file *f, uint64_t off, void *buf, size_t len)
{
    struct iovec iov = {buf, len};
    return blk_file_preadv(f, off, &iov, 1);
}

int blk_file_pwrite(struct blk_file *f, uint64_t off, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return blk_file_pwritev(f, off, &iov, 1);
}

int blk_file_flush(struct blk_file *f)
{
    if (f->no_flush)
        return 0;
    return fdatasync(f->fd) < 0 ? -errno : 0;
}

int blk_file_discard(struct blk_file *f, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    if (f->is_blockdev) {
        uint64_t range[2] = {off, len};
        return ioctl(f->fd, BLKDISCARD, range) < 0 ? -errno : 0;
    }
    if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
        return -errno;
    return 0;
}

int blk_file_write_zeroes(struct blk_file *f, uint64_t off, uint64_t len, bool may_unmap)
{
    if (len == 0)
        return 0;
    if (!f->is_blockdev) {
        if (may_unmap && fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                                   (off_t)len) == 0)
            goto done;
        if (fallocate(f->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
            goto done;
    } else {
        uint64_t range[2] = {off, len};
        if (ioctl(f->fd, BLKZEROOUT, range) == 0)
            goto done;
    }
    /* No fast path: write zeroes in bounded chunks. */
    size_t chunk = (size_t)MIN(len, 1 * MiB);
    uint8_t *z = bounce_alloc(ALIGN_UP(chunk, (size_t)f->align), f->align);
    memset(z, 0, ALIGN_UP(chunk, (size_t)f->align));
    int ret = 0;
    while (len && ret == 0) {
        size_t n = (size_t)MIN(len, chunk);
        ret = blk_file_pwrite(f, off, z, n);
        off += n;
        len -= n;
    }
    free(z);
    return ret;
done:
    if (f->sync_writes)
        return fdatasync(f->fd) < 0 ? -errno : 0;
    return 0;
}

int blk_file_truncate(struct blk_file *f, uint64_t size)
{
    if (f->is_blockdev) {
        uint64_t cur;
        int r = blk_file_size(f, &cur);
        if (r)
            return r;
        return size <= cur ? 0 : -ENOSPC;
    }
    return ftruncate(f->fd, (off_t)size) < 0 ? -errno : 0;
}

int blk_file_size(struct blk_file *f, uint64_t *size)
{
    if (f->is_blockdev) {
        uint64_t s;
        if (ioctl(f->fd, BLKGETSIZE64, &s) < 0)
            return -errno;
        *size = s;
        return 0;
    }
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

uint64_t blk_file_allocated(struct blk_file *f)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return 0;
    if (f->is_blockdev) {
        uint64_t s = 0;
        blk_file_size(f, &s);
        return s;
    }
    return (uint64_t)st.st_blocks * 512;
}

int blk_file_preallocate(struct blk_file *f, uint64_t off, uint64_t len, const char *mode)
{
    if (!mode || !strcmp(mode, "off") || !strcmp(mode, "metadata") || len == 0)
        return 0;
    if (!strcmp(mode, "falloc")) {
        if (fallocate(f->fd, 0, (off_t)off, (off_t)len) < 0)
            return -errno;
        return 0;
    }
    if (!strcmp(mode, "full")) {
        size_t chunk = (size_t)MIN(len, 1 * MiB);
        uint8_t *z = bounce_alloc(ALIGN_UP(chunk, 4096), 4096);
        memset(z, 0, ALIGN_UP(chunk, 4096));
        int ret = 0;
        while (len && ret == 0) {
            size_t n = (size_t)MIN(len, chunk);
            struct iovec iov = {z, n};
            ret = do_iov(f->fd, true, off, &iov, 1);
            off += n;
            len -= n;
        }
        free(z);
        return ret;
    }
    return -EINVAL;
}

size_t blk_iov_size(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* Walks iov from byte `skip`, calling fn on each piece of up to len bytes. */
#define IOV_WALK(iov, iovcnt, skip, len, BODY)                                                    \
    do {                                                                                           \
        size_t skip_ = (skip), len_ = (len), done_ = 0;                                            \
        for (int i_ = 0; i_ < (iovcnt) && len_; i_++) {                                            \
            if (skip_ >= (iov)[i_].iov_len) {                                                      \
                skip_ -= (iov)[i_].iov_len;                                                        \
                continue;                                                                          \
            }                                                                                      \
            size_t n_ = MIN((iov)[i_].iov_len - skip_, len_);                                      \
            uint8_t *p_ = (uint8_t *)(iov)[i_].iov_base + skip_;                                   \
            BODY;                                                                                  \
            done_ += n_;                                                                           \
            len_ -= n_;                                                                            \
            skip_ = 0;                                                                             \
        }                                                                                          \
    } while (0)

void blk_iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len)
{
    IOV_WALK(iov, iovcnt, skip, len, memcpy((uint8_t *)buf + done_, p_, n_));
}

void blk_buf_to_iov(const struct iovec *iov, int iovcnt, size_t skip, const void *buf,
                    size_t len)
{
    IOV_WALK(iov, iovcnt, skip, len, memcpy(p_, (const uint8_t *)buf + done_, n_));
}

void blk_iov_memset(const struct iovec *iov, int iovcnt, size_t skip, int c, size_t len)
{
    IOV_WALK(iov, iovcnt, skip, len, (memset(p_, c, n_), (void)done_));
}

bool blk_buf_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len && ((uintptr_t)p & 7)) {
        if (*p)
            return false;
        p++, len--;
    }
    const uint64_t *q = (const uint64_t *)p;
    for (; len >= 8; len -= 8)
        if (*q++)
            return false;
    p = (const uint8_t *)q;
    while (len--)
        if (*p++)
            return false;
    return true;
}
