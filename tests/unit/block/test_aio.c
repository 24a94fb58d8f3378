/* I/O engine and raw driver: io_uring and thread pool, eventfd completions, cache modes
 * (O_DIRECT with unaligned requests), many requests in flight, errors up front. */
#include "blk_test.h"
#include <limits.h>
#include <poll.h>

struct done {
    int count, errors;
};

static void cb(void *opaque, int ret)
{
    struct done *d = opaque;
    d->count++;
    if (ret)
        d->errors++;
}

static void raw_file(const char *path, uint64_t size)
{
    struct blk_create_opts co = {.format = "raw", .size = size};
    assert_int_equal(blk_create(path, &co), 0);
}

/* 64 writes in flight at odd offsets/lengths, driven by polling the eventfd, then reads. */
static void engine_run(enum blk_aio_kind kind, enum blk_cache_mode cache, const char *fmt)
{
    struct blk_aio *e;
    assert_int_equal(blk_aio_new(kind, &e), 0);
    if (kind == BLK_AIO_THREADS)
        assert_int_equal(blk_aio_kind_of(e), BLK_AIO_THREADS);
    if (kind == BLK_AIO_IO_URING && blk_aio_kind_of(e) != BLK_AIO_IO_URING)
        fprintf(stderr, "note: io_uring unavailable here; this ran on the thread pool\n");
    const char *path = bt_path("e.img");
    uint64_t size = 4 * MiB_;
    if (!strcmp(fmt, "raw"))
        raw_file(path, size);
    else
        bt_create_qcow2(path, size, NULL);
    struct blk_open_opts o = {.format = fmt, .cache = cache, .aio = kind};
    struct blk *b;
    assert_int_equal(blk_open(path, &o, e, &b), 0);
    enum { N = 64 };
    uint8_t *bufs[N];
    uint8_t *model = calloc(1, size);
    struct done d = {0};
    for (int i = 0; i < N; i++) {
        uint64_t off = (uint64_t)i * 65536 + (i % 3 ? 0 : 511 * (uint64_t)(i % 7));
        size_t len = 4096 * (1 + i % 4) + (i % 5 ? 0 : 333);
        bufs[i] = malloc(len);
        bt_pattern(bufs[i], len, off, 1);
        memcpy(model + off, bufs[i], len);
        struct iovec iov[2] = {{bufs[i], len / 2}, {bufs[i] + len / 2, len - len / 2}};
        assert_int_equal(blk_pwritev(b, off, iov, 2, cb, &d), 0);
    }
    int fd = blk_aio_eventfd(e);
    while (d.count < N) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, 10000) > 0);
        blk_aio_process(e);
    }
    assert_int_equal(d.errors, 0);
    struct done f = {0};
    assert_int_equal(blk_flush(b, cb, &f), 0);
    while (!f.count)
        blk_aio_wait(e);
    assert_int_equal(f.errors, 0);
    uint8_t *rd = malloc(size);
    struct done r = {0};
    for (int i = 0; i < 16; i++) {
        struct iovec iov = {rd + i * (size / 16), size / 16};
        assert_int_equal(blk_preadv(b, i * (size / 16), &iov, 1, cb, &r), 0);
    }
    while (r.count < 16)
        blk_aio_wait(e);
    assert_int_equal(r.errors, 0);
    assert_memory_equal(rd, model, size);
    /* Refused up front: out of range. */
    struct iovec iov = {rd, 4096};
    assert_int_equal(blk_preadv(b, size - 100, &iov, 1, cb, &r), -EINVAL);
    blk_close(b);
    /* Read-only images refuse writes. */
    o.read_only = true;
    assert_int_equal(blk_open(path, &o, e, &b), 0);
    assert_int_equal(blk_pwrite(b, 0, rd, 512), -EROFS);
    assert_int_equal(blk_pread(b, 12345, rd, 777), 0);
    assert_memory_equal(rd, model + 12345, 777);
    blk_close(b);
    for (int i = 0; i < N; i++)
        free(bufs[i]);
    free(rd);
    free(model);
    blk_aio_free(e);
}

static void test_uring_raw(void **st) { engine_run(BLK_AIO_IO_URING, BLK_CACHE_WRITEBACK, "raw"); }
static void test_threads_raw(void **st) { engine_run(BLK_AIO_THREADS, BLK_CACHE_WRITEBACK, "raw"); }
static void test_uring_direct(void **st) { engine_run(BLK_AIO_IO_URING, BLK_CACHE_NONE, "raw"); }
static void test_threads_direct(void **st) { engine_run(BLK_AIO_THREADS, BLK_CACHE_DIRECTSYNC, "raw"); }
static void test_writethrough(void **st) { engine_run(BLK_AIO_DEFAULT, BLK_CACHE_WRITETHROUGH, "raw"); }
static void test_unsafe(void **st) { engine_run(BLK_AIO_DEFAULT, BLK_CACHE_UNSAFE, "raw"); }
static void test_qcow2_direct(void **st) { engine_run(BLK_AIO_IO_URING, BLK_CACHE_NONE, "qcow2"); }
static void test_qcow2_threads(void **st) { engine_run(BLK_AIO_THREADS, BLK_CACHE_WRITETHROUGH, "qcow2"); }

static void test_cache_parse(void **st)
{
    enum blk_cache_mode m;
    assert_int_equal(blk_cache_mode_parse("none", &m), 0);
    assert_int_equal(m, BLK_CACHE_NONE);
    assert_int_equal(blk_cache_mode_parse("directsync", &m), 0);
    assert_int_equal(m, BLK_CACHE_DIRECTSYNC);
    assert_int_equal(blk_cache_mode_parse("unsafe", &m), 0);
    assert_int_equal(blk_cache_mode_parse("writeback", &m), 0);
    assert_int_equal(blk_cache_mode_parse("writethrough", &m), 0);
    assert_int_equal(blk_cache_mode_parse("bogus", &m), -EINVAL);
}

static void test_probe(void **st)
{
    const char *r = bt_path("p.raw"), *q = bt_path("p.qcow2");
    raw_file(r, 65536);
    bt_create_qcow2(q, 65536, NULL);
    const char *fmt;
    bool guessed;
    assert_int_equal(blk_probe_format(r, &fmt, &guessed), 0);
    assert_string_equal(fmt, "raw");
    assert_true(guessed);
    assert_int_equal(blk_probe_format(q, &fmt, &guessed), 0);
    assert_string_equal(fmt, "qcow2");
    assert_false(guessed);
    struct blk *b = bt_open(q, NULL, true);
    struct blk_info info;
    assert_int_equal(blk_get_info(b, &info), 0);
    assert_string_equal(info.format, "qcow2");
    assert_int_equal(info.virtual_size, 65536);
    blk_close(b);
    struct blk_open_opts o = {.format = "vmdk"};
    assert_int_equal(blk_open(q, &o, NULL, &b), -EINVAL);
    assert_true(blk_open(bt_path("missing"), NULL, NULL, &b) < 0);
}

static void test_raw_ops(void **st)
{
    const char *path = bt_path("ops.raw");
    raw_file(path, 1 * MiB_);
    struct blk_open_opts o = {.format = "raw", .discard_unmap = true};
    struct blk *b;
    assert_int_equal(blk_open(path, &o, NULL, &b), 0);
    uint8_t buf[8192];
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 65536, buf, sizeof(buf)), 0);
    uint64_t pnum;
    unsigned status;
    assert_int_equal(blk_block_status(b, 0, 1 * MiB_, &pnum, &status, NULL, NULL), 0);
    assert_true(status & BLK_STATUS_ZERO);
    assert_int_equal(pnum, 65536);
    assert_int_equal(blk_block_status(b, 65536, 1 * MiB_ - 65536, &pnum, &status, NULL, NULL), 0);
    assert_true(status & BLK_STATUS_DATA);
    assert_int_equal(blk_write_zeroes_sync(b, 65536, 4096, BLK_ZERO_MAY_UNMAP), 0);
    assert_int_equal(blk_discard_sync(b, 65536 + 4096, 4096), 0);
    assert_int_equal(blk_pread(b, 65536, buf, 4096), 0);
    assert_int_equal(buf[0] | buf[4095], 0);
    assert_int_equal(blk_truncate(b, 2 * MiB_, false, "falloc"), 0);
    assert_int_equal(blk_size(b), 2 * MiB_);
    assert_int_equal(blk_truncate(b, 1 * MiB_, false, NULL), -EINVAL);
    assert_int_equal(blk_truncate(b, 1 * MiB_, true, NULL), 0);
    assert_int_equal(blk_snapshot_create(b, "x"), -ENOTSUP);
    assert_int_equal(blk_pwrite_compressed(b, 0, buf, 4096), -ENOTSUP);
    blk_close(b);
}

struct rd {
    uint8_t *buf, *want;
    size_t len;
    int *bad, *done;
};

static void rd_cb(void *opaque, int ret)
{
    struct rd *r = opaque;
    if (ret || memcmp(r->buf, r->want, r->len))
        (*r->bad)++;
    (*r->done)++;
}

/* Reads of one region run without the image lock while writes to another region free and
 * reuse clusters: the reads must always see their own region's data. */
static void test_qcow2_read_while_freeing(void **st)
{
    struct blk_aio *e;
    assert_int_equal(blk_aio_new(BLK_AIO_DEFAULT, &e), 0);
    const char *path = bt_path("rf.qcow2");
    bt_create_qcow2(path, 8 * MiB_, "cluster_size=4k");
    struct blk_open_opts o = {.format = "qcow2", .aio = BLK_AIO_DEFAULT};
    struct blk *b;
    assert_int_equal(blk_open(path, &o, e, &b), 0);
    uint8_t *a = malloc(1 * MiB_);
    bt_pattern(a, 1 * MiB_, 0, 5);
    assert_int_equal(blk_pwrite(b, 0, a, 1 * MiB_), 0);
    uint8_t *wbufs = malloc((size_t)400 * 4096);
    int bad = 0, done = 0;
    struct done wd = {0};
    enum { R = 400 };
    struct rd *rds = calloc(R, sizeof(*rds));
    for (int i = 0; i < R; i++) {
        size_t off = (size_t)(i * 7919 % 200) * 4096;
        rds[i] = (struct rd){malloc(8192), a + off, 8192, &bad, &done};
        struct iovec iov = {rds[i].buf, 8192};
        assert_int_equal(blk_preadv(b, off, &iov, 1, rd_cb, &rds[i]), 0);
        /* Region B: compressed writes and overwrites free clusters; discards too. */
        uint64_t boff = 4 * MiB_ + (uint64_t)(i % 64) * 4096;
        uint8_t *w = wbufs + (size_t)i * 4096; /* owned by the request until it completes */
        memset(w, i, 4096);
        if (i % 3 == 0)
            assert_int_equal(blk_pwrite_compressed(b, boff, w, 4096), 0);
        else if (i % 3 == 1) {
            struct iovec wi = {w, 4096};
            assert_int_equal(blk_pwritev(b, boff, &wi, 1, cb, &wd), 0);
        } else {
            assert_int_equal(blk_discard(b, boff, 4096, cb, &wd), 0);
        }
        if (i % 16 == 0)
            blk_aio_process(e);
    }
    while (done < R)
        blk_aio_wait(e);
    assert_int_equal(bad, 0);
    blk_close(b); /* drains the writes */
    assert_int_equal(wd.errors, 0);
    for (int i = 0; i < R; i++)
        free(rds[i].buf);
    free(rds);
    free(a);
    free(wbufs);
    blk_aio_free(e);
    if (bt_have_qemu_img())
        assert_int_equal(bt_sh("qemu-img check -q '%s'", path), 0);
}

/* The open file flags (octal, from /proc/self/fdinfo) of this process's fd for path. */
static long fd_flags_of(const char *path)
{
    char want[PATH_MAX], link[PATH_MAX], name[64];
    assert_non_null(realpath(path, want));
    long flags = -1;
    for (int fd = 3; fd < 1024; fd++) {
        snprintf(name, sizeof(name), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(name, link, sizeof(link) - 1);
        if (n <= 0)
            continue;
        link[n] = 0;
        if (strcmp(link, want))
            continue;
        snprintf(name, sizeof(name), "/proc/self/fdinfo/%d", fd);
        FILE *f = fopen(name, "r");
        assert_non_null(f);
        char line[128];
        while (fgets(line, sizeof(line), f))
            if (!strncmp(line, "flags:", 6))
                flags = strtol(line + 6, NULL, 8);
        fclose(f);
        break;
    }
    return flags;
}

/* cache=none and directsync must really bypass the page cache (O_DIRECT, 040000 octal);
 * writeback must not. */
static void test_cache_none_is_o_direct(void **st)
{
    const char *fmts[] = {"raw", "qcow2"};
    for (int i = 0; i < 2; i++) {
        const char *path = bt_path(i ? "od.qcow2" : "od.raw");
        if (i)
            bt_create_qcow2(path, 1 * MiB_, NULL);
        else
            raw_file(path, 1 * MiB_);
        enum blk_cache_mode modes[] = {BLK_CACHE_NONE, BLK_CACHE_DIRECTSYNC, BLK_CACHE_WRITEBACK};
        for (int m = 0; m < 3; m++) {
            struct blk_open_opts o = {.format = fmts[i], .cache = modes[m]};
            struct blk *b;
            int r = blk_open(path, &o, NULL, &b);
            if (r == -EINVAL && modes[m] != BLK_CACHE_WRITEBACK) {
                fprintf(stderr, "note: no O_DIRECT on this file system; skipped\n");
                continue;
            }
            assert_int_equal(r, 0);
            long flags = fd_flags_of(path);
            assert_true(flags >= 0);
            if (modes[m] == BLK_CACHE_WRITEBACK)
                assert_int_equal(flags & 040000, 0);
            else
                assert_int_equal(flags & 040000, 040000);
            blk_close(b);
        }
    }
}

/* Overwrites of allocated qcow2 clusters run without the image lock, concurrently with
 * discards of the same clusters and allocating writes that may reuse what was freed: the
 * allocating writes' data must read back exactly and the image must stay clean. (The race a
 * missing wait would open is narrow; this catches gross breakage, not every interleaving.) */
static void test_qcow2_overwrite_while_freeing(void **st)
{
    struct blk_aio *e;
    assert_int_equal(blk_aio_new(BLK_AIO_DEFAULT, &e), 0);
    const char *path = bt_path("wf.qcow2");
    bt_create_qcow2(path, 8 * MiB_, "cluster_size=4k");
    struct blk_open_opts o = {.format = "qcow2", .aio = BLK_AIO_DEFAULT};
    struct blk *b;
    assert_int_equal(blk_open(path, &o, e, &b), 0);
    enum { N = 600 };
    uint8_t *fill = malloc(256 * KiB_);
    memset(fill, 0x11, 256 * KiB_);
    assert_int_equal(blk_pwrite(b, 0, fill, 256 * KiB_), 0);
    uint8_t *wb = malloc((size_t)N * 4096), *cb_ = malloc((size_t)N * 4096);
    struct done d = {0};
    int submitted = 0;
    for (int i = 0; i < N; i++) {
        uint64_t boff = (uint64_t)(i % 64) * 4096;
        memset(wb + (size_t)i * 4096, 0x80 | (i & 0x7f), 4096);
        if (i % 2 == 0) {
            struct iovec wi = {wb + (size_t)i * 4096, 4096};
            assert_int_equal(blk_pwritev(b, boff, &wi, 1, cb, &d), 0);
        } else {
            assert_int_equal(blk_discard(b, boff, 4096, cb, &d), 0);
        }
        bt_pattern(cb_ + (size_t)i * 4096, 4096, (uint64_t)i * 4096, 9);
        struct iovec ci = {cb_ + (size_t)i * 4096, 4096};
        assert_int_equal(blk_pwritev(b, 4 * MiB_ + (uint64_t)i * 4096, &ci, 1, cb, &d), 0);
        submitted += 2;
        if (i % 8 == 0)
            blk_aio_process(e);
    }
    while (d.count < submitted)
        blk_aio_wait(e);
    assert_int_equal(d.errors, 0);
    uint8_t *rd = malloc((size_t)N * 4096);
    assert_int_equal(blk_pread(b, 4 * MiB_, rd, (size_t)N * 4096), 0);
    assert_memory_equal(rd, cb_, (size_t)N * 4096);
    struct blk_check_result res;
    assert_int_equal(blk_flush_sync(b), 0);
    assert_int_equal(blk_check(b, 0, &res), 0);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 0);
    blk_close(b);
    blk_aio_free(e);
    if (bt_have_qemu_img())
        assert_int_equal(bt_sh("qemu-img check -q '%s' >/dev/null 2>&1", path), 0);
    free(rd);
    free(wb);
    free(cb_);
    free(fill);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_parse),
        cmocka_unit_test(test_cache_none_is_o_direct),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_uring_raw),
        cmocka_unit_test(test_threads_raw),
        cmocka_unit_test(test_uring_direct),
        cmocka_unit_test(test_threads_direct),
        cmocka_unit_test(test_writethrough),
        cmocka_unit_test(test_unsafe),
        cmocka_unit_test(test_qcow2_direct),
        cmocka_unit_test(test_qcow2_threads),
        cmocka_unit_test(test_raw_ops),
        cmocka_unit_test(test_qcow2_read_while_freeing),
        cmocka_unit_test(test_qcow2_overwrite_while_freeing),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    bt_cleanup_dir();
    return r;
}
