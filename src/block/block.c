/* The generic block layer: probing, opening backing chains, request dispatch, wrappers. */
#include "block/blk_driver.h"
#include "base/log.h"
#include "base/size.h"
#include "base/util.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct blk_driver *const drivers[] = {&blk_driver_qcow2, &blk_driver_raw};

int blk_cache_mode_parse(const char *s, enum blk_cache_mode *out)
{
    static const struct {
        const char *name;
        enum blk_cache_mode mode;
    } modes[] = {
        {"writeback", BLK_CACHE_WRITEBACK}, {"writethrough", BLK_CACHE_WRITETHROUGH},
        {"none", BLK_CACHE_NONE},           {"off", BLK_CACHE_NONE},
        {"directsync", BLK_CACHE_DIRECTSYNC}, {"unsafe", BLK_CACHE_UNSAFE},
    };
    for (size_t i = 0; s && i < ARRAY_SIZE(modes); i++)
        if (!strcmp(s, modes[i].name)) {
            *out = modes[i].mode;
            return 0;
        }
    return -EINVAL;
}

const struct blk_driver *blk_driver_find(const char *format)
{
    for (size_t i = 0; format && i < ARRAY_SIZE(drivers); i++)
        if (!strcmp(drivers[i]->name, format))
            return drivers[i];
    return NULL;
}

int blk_probe_format(const char *filename, const char **format, bool *guessed_raw)
{
    int fd = open(filename, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        log_error("%s: cannot open: %s", filename, strerror(errno));
        return e;
    }
    uint8_t buf[512];
    ssize_t n = pread(fd, buf, sizeof(buf), 0);
    int e = errno;
    close(fd);
    if (n < 0) {
        log_error("%s: cannot read: %s", filename, strerror(e));
        return -e;
    }
    int best = 0;
    const struct blk_driver *drv = &blk_driver_raw;
    for (size_t i = 0; i < ARRAY_SIZE(drivers); i++) {
        int score = drivers[i]->probe ? drivers[i]->probe(buf, (size_t)n) : 0;
        if (score > best) {
            best = score;
            drv = drivers[i];
        }
    }
    *format = drv->name;
    if (guessed_raw)
        *guessed_raw = drv == &blk_driver_raw;
    return 0;
}

static int open_node(const char *filename, const struct blk_open_opts *opts, struct blk_aio *aio,
                     struct blk *opened_by, struct blk **out);

static int open_temp_overlay(struct blk *base, const struct blk_open_opts *opts,
                             struct blk **out)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
    char *path = xasprintf("%s/vmkit-snapshot-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        int e = -errno;
        log_error("snapshot=on: cannot create a temporary overlay in %s: %s", dir,
                  strerror(errno));
        free(path);
        return e;
    }
    close(fd);
    struct blk_create_opts co = {.format = "qcow2", .size = base->size};
    int r = blk_create(path, &co);
    struct blk *ov = NULL;
    if (r == 0) {
        struct blk_open_opts oo = {.format = "qcow2", .cache = BLK_CACHE_UNSAFE,
                                   .aio = opts->aio, .no_backing = true,
                                   .discard_unmap = opts->discard_unmap};
        r = open_node(path, &oo, base->aio, NULL, &ov);
    }
    if (r < 0) {
        unlink(path);
        free(path);
        return r;
    }
    /* Nobody else needs the name: unlinking now means even a killed process leaves no file. */
    unlink(path);
    free(path);
    ov->backing = base;
    ov->temp_base = base;
    *out = ov;
    return 0;
}

static int open_node(const char *filename, const struct blk_open_opts *opts, struct blk_aio *aio,
                     struct blk *opened_by, struct blk **out)
{
    struct stat st;
    if (stat(filename, &st) < 0) {
        int e = -errno;
        log_error("%s: cannot open: %s", filename, strerror(errno));
        return e;
    }
    unsigned depth = 0;
    for (struct blk *p = opened_by; p; p = p->opened_by, depth++) {
        if (p->dev == (uint64_t)st.st_dev && p->ino == (uint64_t)st.st_ino) {
            log_error("%s: backing file loop: the image is its own backing file through the "
                      "chain; fix it with 'vmkit img rebase -u'", filename);
            return -ELOOP;
        }
    }
    if (depth >= BLK_MAX_BACKING_DEPTH) {
        log_error("%s: backing chain deeper than %d images; refusing", filename,
                  BLK_MAX_BACKING_DEPTH);
        return -ELOOP;
    }
    const char *format = opts->format;
    if (!format) {
        bool guessed = false;
        int r = blk_probe_format(filename, &format, &guessed);
        if (r < 0)
            return r;
        if (guessed && !opened_by)
            log_warn("%s: image format was not specified and probing guessed raw; specify "
                     "the format explicitly (e.g. -f raw) to remove this warning", filename);
    }
    const struct blk_driver *drv = blk_driver_find(format);
    if (!drv) {
        log_error("%s: unknown image format '%s' (supported: raw, qcow2)", filename, format);
        return -EINVAL;
    }
    struct blk *b = xzalloc(sizeof(*b));
    b->drv = drv;
    b->filename = xstrdup(filename);
    b->aio = aio;
    b->read_only = opts->read_only || opts->snapshot_temp;
    b->cache = opts->cache;
    b->aio_kind = opts->aio;
    b->discard_unmap = opts->discard_unmap;
    b->no_repair = opts->no_repair;
    b->dev = (uint64_t)st.st_dev;
    b->ino = (uint64_t)st.st_ino;
    b->opened_by = opened_by;
    int r = drv->open(b, filename, opts);
    b->opened_by = NULL;
    if (r < 0) {
        free(b->filename);
        free(b);
        return r;
    }
    *out = b;
    return 0;
}

int blk_open(const char *filename, const struct blk_open_opts *opts_in, struct blk_aio *aio,
             struct blk **out)
{
    struct blk_open_opts def = {0};
    const struct blk_open_opts *opts = opts_in ? opts_in : &def;
    if (!aio)
        aio = blk_aio_default();
    struct blk *b = NULL;
    int r = open_node(filename, opts, aio, NULL, &b);
    if (r < 0)
        return r;
    if (opts->snapshot_temp) {
        struct blk *ov = NULL;
        r = open_temp_overlay(b, opts, &ov);
        if (r < 0) {
            blk_close(b);
            return r;
        }
        b = ov;
    }
    *out = b;
    return 0;
}

int blk_open_backing(struct blk *b, const char *backing, const char *backing_fmt,
                     unsigned depth, struct blk **out)
{
    (void)depth;
    if (!strncmp(backing, "json:", 5) || strstr(backing, "://")) {
        log_error("%s: backing file '%s' uses a protocol vmkit does not support", b->filename,
                  backing);
        return -ENOTSUP;
    }
    char *path;
    if (backing[0] == '/') {
        path = xstrdup(backing);
    } else {
        char *tmp = xstrdup(b->filename);
        path = xasprintf("%s/%s", dirname(tmp), backing);
        free(tmp);
    }
    if (backing_fmt && !blk_driver_find(backing_fmt)) {
        log_error("%s: backing format '%s' of '%s' is not supported (raw, qcow2)", b->filename,
                  backing_fmt, backing);
        free(path);
        return -ENOTSUP;
    }
    struct blk_open_opts o = {
        .format = backing_fmt, .read_only = true, .cache = b->cache, .aio = b->aio_kind,
        .no_repair = true,
    };
    int r = open_node(path, &o, b->aio, b, out);
    if (r < 0)
        log_error("%s: cannot open its backing file '%s'", b->filename, path);
    free(path);
    return r;
}

void blk_close(struct blk *b)
{
    if (!b)
        return;
    /* Requests still in flight own buffers and this image: let them finish first. */
    while (__atomic_load_n(&b->inflight, __ATOMIC_ACQUIRE))
        blk_aio_wait(b->aio);
    if (b->temp_base) {
        /* The temporary overlay's backing is the user's image: close both, delete ours. */
        b->backing = NULL;
    }
    if (b->drv && b->drv->close)
        b->drv->close(b);
    if (b->backing)
        blk_close(b->backing);
    if (b->temp_path) {
        unlink(b->temp_path);
        free(b->temp_path);
    }
    if (b->temp_base)
        blk_close(b->temp_base);
    free(b->filename);
    free(b);
}

/* --- Request dispatch ------------------------------------------------------------------ */
static int req_work(struct blk_req *r)
{
    struct blk *b = r->b;
    const struct blk_driver *d = b->drv;
    int ret;
    switch (r->op) {
    case BLK_OP_READ:
        return d->preadv(b, r->offset, r->iov, r->iovcnt);
    case BLK_OP_WRITE:
        ret = d->pwritev(b, r->offset, r->iov, r->iovcnt);
        break;
    case BLK_OP_FLUSH:
        return b->cache == BLK_CACHE_UNSAFE ? 0 : d->flush(b);
    case BLK_OP_DISCARD:
        ret = d->discard ? d->discard(b, r->offset, r->len) : 0;
        break;
    case BLK_OP_ZEROES:
        if (d->write_zeroes) {
            ret = d->write_zeroes(b, r->offset, r->len, r->flags);
        } else {
            ret = -ENOTSUP;
        }
        break;
    default:
        return -EINVAL;
    }
    /* writethrough for formats: their metadata must be stable too, not just the data. */
    if (ret == 0 && d != &blk_driver_raw &&
        (b->cache == BLK_CACHE_WRITETHROUGH || b->cache == BLK_CACHE_DIRECTSYNC))
        ret = d->flush(b);
    return ret;
}

static int blk_submit(struct blk *b, enum blk_op op, uint64_t offset, uint64_t len,
                      const struct iovec *iov, int iovcnt, unsigned flags,
                      blk_completion_fn cb, void *opaque)
{
    if (!b || iovcnt < 0 || (iovcnt > 0 && !iov))
        return -EINVAL;
    if (op != BLK_OP_READ && op != BLK_OP_FLUSH && b->read_only)
        return -EROFS;
    if (op != BLK_OP_FLUSH && (offset > b->size || len > b->size - offset))
        return -EINVAL;
    struct blk_req *r = blk_req_new(b, op, offset, len, iov, iovcnt, cb, opaque);
    __atomic_add_fetch(&b->inflight, 1, __ATOMIC_ACQUIRE);
    r->flags = flags;
    r->work = req_work;
    if (b->drv->aio_rw && (op == BLK_OP_READ || op == BLK_OP_WRITE || op == BLK_OP_FLUSH) &&
        blk_aio_has_uring(b->aio) && b->drv->aio_rw(b, r) == 0)
        return 0;
    if (op == BLK_OP_FLUSH && b->cache == BLK_CACHE_UNSAFE) {
        r->ret = 0;
        blk_aio_complete_later(b->aio, r);
        return 0;
    }
    blk_aio_submit_work(b->aio, r);
    return 0;
}

int blk_preadv(struct blk *b, uint64_t offset, const struct iovec *iov, int iovcnt,
               blk_completion_fn cb, void *opaque)
{
    return blk_submit(b, BLK_OP_READ, offset, blk_iov_size(iov, iovcnt), iov, iovcnt, 0, cb,
                      opaque);
}

int blk_pwritev(struct blk *b, uint64_t offset, const struct iovec *iov, int iovcnt,
                blk_completion_fn cb, void *opaque)
{
    return blk_submit(b, BLK_OP_WRITE, offset, blk_iov_size(iov, iovcnt), iov, iovcnt, 0, cb,
                      opaque);
}

int blk_flush(struct blk *b, blk_completion_fn cb, void *opaque)
{
    return blk_submit(b, BLK_OP_FLUSH, 0, 0, NULL, 0, 0, cb, opaque);
}

int blk_discard(struct blk *b, uint64_t offset, uint64_t len, blk_completion_fn cb, void *opaque)
{
    return blk_submit(b, BLK_OP_DISCARD, offset, len, NULL, 0, 0, cb, opaque);
}

int blk_write_zeroes(struct blk *b, uint64_t offset, uint64_t len, unsigned flags,
                     blk_completion_fn cb, void *opaque)
{
    return blk_submit(b, BLK_OP_ZEROES, offset, len, NULL, 0, flags, cb, opaque);
}

struct sync_wait {
    bool done;
    int ret;
};

static void sync_cb(void *opaque, int ret)
{
    struct sync_wait *w = opaque;
    w->ret = ret;
    w->done = true;
}

static int sync_finish(struct blk *b, int r, struct sync_wait *w)
{
    if (r < 0)
        return r;
    while (!w->done)
        blk_aio_wait(b->aio);
    return w->ret;
}

int blk_pread(struct blk *b, uint64_t offset, void *buf, size_t len)
{
    struct sync_wait w = {0};
    struct iovec iov = {buf, len};
    return sync_finish(b, blk_preadv(b, offset, &iov, 1, sync_cb, &w), &w);
}

int blk_pwrite(struct blk *b, uint64_t offset, const void *buf, size_t len)
{
    struct sync_wait w = {0};
    struct iovec iov = {(void *)buf, len};
    return sync_finish(b, blk_pwritev(b, offset, &iov, 1, sync_cb, &w), &w);
}

int blk_flush_sync(struct blk *b)
{
    struct sync_wait w = {0};
    return sync_finish(b, blk_flush(b, sync_cb, &w), &w);
}

int blk_discard_sync(struct blk *b, uint64_t offset, uint64_t len)
{
    struct sync_wait w = {0};
    return sync_finish(b, blk_discard(b, offset, len, sync_cb, &w), &w);
}

int blk_write_zeroes_sync(struct blk *b, uint64_t offset, uint64_t len, unsigned flags)
{
    struct sync_wait w = {0};
    return sync_finish(b, blk_write_zeroes(b, offset, len, flags, sync_cb, &w), &w);
}

int blk_backing_preadv(struct blk *bk, uint64_t off, const struct iovec *iov, int iovcnt)
{
    size_t len = blk_iov_size(iov, iovcnt);
    if (off >= bk->size) {
        blk_iov_memset(iov, iovcnt, 0, 0, len);
        return 0;
    }
    if (len <= bk->size - off)
        return bk->drv->preadv(bk, off, iov, iovcnt);
    /* Straddles the backing file's end: read what it has, zeros after. */
    size_t have = (size_t)(bk->size - off);
    uint8_t *tmp = xmalloc(have);
    int r = bk->drv->preadv(bk, off, &(struct iovec){tmp, have}, 1);
    if (r == 0) {
        blk_buf_to_iov(iov, iovcnt, 0, tmp, have);
        blk_iov_memset(iov, iovcnt, have, 0, len - have);
    }
    free(tmp);
    return r;
}

/* --- Information ---------------------------------------------------------------------- */
int blk_get_info(struct blk *b, struct blk_info *info)
{
    memset(info, 0, sizeof(*info));
    info->format = b->drv->name;
    info->filename = b->filename;
    info->virtual_size = b->size;
    return b->drv->info ? b->drv->info(b, info) : 0;
}

uint64_t blk_size(const struct blk *b)
{
    return b->size;
}

bool blk_is_read_only(const struct blk *b)
{
    return b->read_only;
}

struct blk *blk_backing(const struct blk *b)
{
    return b->backing;
}


int blk_block_status(struct blk *b, uint64_t offset, uint64_t len, uint64_t *pnum,
                     unsigned *status, uint64_t *map, struct blk **file)
{
    uint64_t m = 0;
    struct blk *f = NULL;
    if (offset >= b->size || len == 0) {
        *pnum = 0;
        *status = 0;
        return offset > b->size ? -EINVAL : 0;
    }
    len = MIN(len, b->size - offset);
    if (!b->drv->block_status) {
        *pnum = len;
        *status = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED;
        return 0;
    }
    int r = b->drv->block_status(b, offset, len, pnum, status, &m, &f);
    if (r == 0 && *pnum == 0)
        *pnum = MIN(len, 512); /* never report no progress */
    if (map)
        *map = m;
    if (file)
        *file = f;
    return r;
}

/* --- Image operations ----------------------------------------------------------------- */
static bool parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
        *out = true;
    else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
        *out = false;
    else
        return false;
    return true;
}

/* Splits "a=b,c=d" honoring QEMU's ",," escape for a literal comma. */
static char *next_opt(const char **p)
{
    const char *s = *p;
    size_t cap = strlen(s) + 1, n = 0;
    char *out = xmalloc(cap);
    while (*s) {
        if (*s == ',') {
            if (s[1] == ',') {
                out[n++] = ',';
                s += 2;
                continue;
            }
            s++;
            break;
        }
        out[n++] = *s++;
    }
    out[n] = 0;
    *p = s;
    return out;
}

/* Parsed option strings live until exit (the opts struct has no destructor); they stay
 * reachable from here. */
static char *opt_strdup(const char *v)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char **pool;
    static size_t n;
    char *c = xstrdup(v);
    pthread_mutex_lock(&lock);
    pool = xrealloc(pool, (n + 1) * sizeof(*pool));
    pool[n++] = c;
    pthread_mutex_unlock(&lock);
    return c;
}

int blk_create_opts_parse(struct blk_create_opts *opts, const char *optstr)
{
    const char *p = optstr ? optstr : "";
    while (*p) {
        char *kv = next_opt(&p);
        if (!*kv) {
            free(kv);
            continue;
        }
        char *val = strchr(kv, '=');
        if (val)
            *val++ = 0;
        const char *k = kv;
        bool bv;
        uint64_t n;
        int err = 0;
        if (!val && strcmp(k, "lazy_refcounts") && strcmp(k, "extended_l2")) {
            log_error("option '%s' needs a value (%s=...)", k, k);
            free(kv);
            return -EINVAL;
        }
        if (!strcmp(k, "size")) {
            if (size_parse(val, 1, &n) < 0)
                err = 1;
            else
                opts->size = n;
        } else if (!strcmp(k, "backing_file")) {
            opts->backing_file = opt_strdup(val);
        } else if (!strcmp(k, "backing_fmt")) {
            opts->backing_format = opt_strdup(val);
        } else if (!strcmp(k, "cluster_size")) {
            if (size_parse(val, 1, &n) < 0)
                err = 1;
            else
                opts->cluster_size = n;
        } else if (!strcmp(k, "compat")) {
            if (strcmp(val, "0.10") && strcmp(val, "v2") && strcmp(val, "1.1") &&
                strcmp(val, "v3")) {
                log_error("invalid compat=%s: use 0.10 (v2) or 1.1 (v3)", val);
                free(kv);
                return -EINVAL;
            }
            opts->compat = opt_strdup(val);
        } else if (!strcmp(k, "lazy_refcounts")) {
            if (val && !parse_bool(val, &bv))
                err = 1;
            else
                opts->lazy_refcounts = val ? bv : true;
        } else if (!strcmp(k, "extended_l2")) {
            if (val && !parse_bool(val, &bv))
                err = 1;
            else
                opts->extended_l2 = val ? bv : true;
        } else if (!strcmp(k, "refcount_bits")) {
            if (size_parse(val, 1, &n) < 0 || n == 0 || n > 64 || (n & (n - 1)))
                err = 1;
            else
                opts->refcount_bits = (unsigned)n;
        } else if (!strcmp(k, "preallocation")) {
            if (strcmp(val, "off") && strcmp(val, "metadata") && strcmp(val, "falloc") &&
                strcmp(val, "full"))
                err = 1;
            else
                opts->preallocation = opt_strdup(val);
        } else if (!strcmp(k, "compression_type")) {
            if (strcmp(val, "zlib") && strcmp(val, "zstd"))
                err = 1;
            else
                opts->compression_type = opt_strdup(val);
        } else if (!strcmp(k, "encryption") || !strncmp(k, "encrypt.", 8)) {
            log_error("option '%s': encrypted images are not supported by vmkit", k);
            free(kv);
            return -ENOTSUP;
        } else if (!strcmp(k, "data_file") || !strcmp(k, "data_file_raw")) {
            log_error("option '%s': external data files are not supported by vmkit", k);
            free(kv);
            return -ENOTSUP;
        } else {
            log_error("unknown option '%s' (known: size, backing_file, backing_fmt, "
                      "cluster_size, compat, lazy_refcounts, extended_l2, refcount_bits, "
                      "preallocation, compression_type)", k);
            free(kv);
            return -EINVAL;
        }
        if (err) {
            log_error("invalid value '%s' for option '%s'", val ? val : "", k);
            free(kv);
            return -EINVAL;
        }
        free(kv);
    }
    return 0;
}

int blk_create(const char *filename, const struct blk_create_opts *opts)
{
    const char *fmt = opts->format ? opts->format : "raw";
    const struct blk_driver *drv = blk_driver_find(fmt);
    if (!drv || !drv->create) {
        log_error("%s: cannot create images of format '%s' (supported: raw, qcow2)", filename,
                  fmt);
        return -EINVAL;
    }
    /* Like qemu-img, sizes are whole 512-byte sectors, rounded up (never losing a byte). */
    if (opts->size > UINT64_MAX - 511) {
        log_error("%s: size %llu is too large", filename, (unsigned long long)opts->size);
        return -EFBIG;
    }
    struct blk_create_opts o = *opts;
    o.size = ALIGN_UP(o.size, 512ull);
    return drv->create(filename, &o);
}

#define NOT_SUPPORTED(b, what)                                                                     \
    do {                                                                                           \
        log_error("%s: %s is not supported for %s images", (b)->filename, what,                    \
                  (b)->drv->name);                                                                 \
        return -ENOTSUP;                                                                           \
    } while (0)

int blk_truncate(struct blk *b, uint64_t size, bool shrink, const char *preallocation)
{
    if (b->read_only)
        return -EROFS;
    if (!b->drv->truncate)
        NOT_SUPPORTED(b, "resizing");
    /* Formats keep sector-granular sizes (QEMU reads a qcow2 size rounded down to 512), so
     * round up as blk_create does; a raw file keeps its exact size, as with qemu-img. */
    if (b->drv != &blk_driver_raw) {
        if (size > UINT64_MAX - 511)
            return -EFBIG;
        size = ALIGN_UP(size, 512ull);
    }
    return b->drv->truncate(b, size, shrink, preallocation);
}

int blk_check(struct blk *b, unsigned fix, struct blk_check_result *res)
{
    memset(res, 0, sizeof(*res));
    if (fix && b->read_only) {
        log_error("%s: repairing needs the image opened read-write", b->filename);
        return -EROFS;
    }
    if (!b->drv->check)
        NOT_SUPPORTED(b, "checking");
    return b->drv->check(b, fix, res);
}

int blk_snapshot_list(struct blk *b, struct blk_snapshot **out, unsigned *count)
{
    *out = NULL;
    *count = 0;
    if (!b->drv->snapshot_list)
        return 0;
    return b->drv->snapshot_list(b, out, count);
}

void blk_snapshot_list_free(struct blk_snapshot *list, unsigned count)
{
    for (unsigned i = 0; list && i < count; i++)
        free(list[i].name);
    free(list);
}

int blk_snapshot_create(struct blk *b, const char *name)
{
    if (!b->drv->snapshot_create)
        NOT_SUPPORTED(b, "internal snapshots");
    if (b->read_only)
        return -EROFS;
    return b->drv->snapshot_create(b, name);
}

int blk_snapshot_apply(struct blk *b, const char *name_or_id)
{
    if (!b->drv->snapshot_apply)
        NOT_SUPPORTED(b, "internal snapshots");
    if (b->read_only)
        return -EROFS;
    return b->drv->snapshot_apply(b, name_or_id);
}

int blk_snapshot_delete(struct blk *b, const char *name_or_id)
{
    if (!b->drv->snapshot_delete)
        NOT_SUPPORTED(b, "internal snapshots");
    if (b->read_only)
        return -EROFS;
    return b->drv->snapshot_delete(b, name_or_id);
}

int blk_snapshot_load_tmp(struct blk *b, const char *name_or_id)
{
    if (!b->drv->snapshot_load_tmp)
        NOT_SUPPORTED(b, "internal snapshots");
    return b->drv->snapshot_load_tmp(b, name_or_id);
}

int blk_pwrite_compressed(struct blk *b, uint64_t offset, const void *buf, size_t len)
{
    if (!b->drv->pwrite_compressed)
        return -ENOTSUP;
    if (b->read_only)
        return -EROFS;
    if (offset > b->size || len > b->size - offset)
        return -EINVAL;
    return b->drv->pwrite_compressed(b, offset, buf, len);
}

int blk_change_backing(struct blk *b, const char *backing_file, const char *backing_format)
{
    if (!b->drv->change_backing)
        NOT_SUPPORTED(b, "backing files");
    if (b->read_only)
        return -EROFS;
    return b->drv->change_backing(b, backing_file, backing_format);
}

int blk_amend(struct blk *b, const struct blk_create_opts *opts, const char *optstr)
{
    if (!b->drv->amend)
        NOT_SUPPORTED(b, "amending options");
    if (b->read_only)
        return -EROFS;
    return b->drv->amend(b, opts, optstr);
}

int blk_make_empty(struct blk *b)
{
    if (!b->drv->make_empty)
        NOT_SUPPORTED(b, "emptying");
    if (b->read_only)
        return -EROFS;
    return b->drv->make_empty(b);
}
