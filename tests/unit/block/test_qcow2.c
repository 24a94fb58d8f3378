/* qcow2 driver: read/write against a model for every cluster size, refcount width and
 * option; backing chains, zero/discard, compression, snapshots, subclusters, resize. */
#include "blk_test.h"

static int have_qemu;

struct model {
    uint8_t *data;
    uint64_t size;
};

static void model_check(struct blk *b, struct model *m)
{
    uint8_t *buf = malloc(m->size);
    assert_int_equal(blk_pread(b, 0, buf, m->size), 0);
    for (uint64_t i = 0; i < m->size; i++)
        if (buf[i] != m->data[i]) {
            fprintf(stderr, "mismatch at %llu: got %02x want %02x\n", (unsigned long long)i,
                    buf[i], m->data[i]);
            fail();
        }
    free(buf);
}

static void write_raw_model(const char *path, struct model *m)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(m->data, 1, m->size, f), m->size);
    fclose(f);
}

static void assert_clean(struct blk *b)
{
    struct blk_check_result res;
    assert_int_equal(blk_check(b, 0, &res), 0);
    if (res.corruptions || res.leaks)
        fprintf(stderr, "check: %llu corruptions, %llu leaks\n",
                (unsigned long long)res.corruptions, (unsigned long long)res.leaks);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 0);
}

/* Random writes/zeroes (unaligned too) checked against a model, then reopen, check, and
 * compare with qemu-img. */
static void workload(const char *opts, uint64_t size, unsigned seed, int nops, uint64_t maxlen)
{
    const char *path = bt_path("w.qcow2");
    bt_create_qcow2(path, size, opts);
    struct model m = {.data = calloc(1, size), .size = size};
    struct blk *b = bt_open(path, "qcow2", false);
    srand(seed);
    uint8_t *buf = malloc(maxlen);
    for (int i = 0; i < nops; i++) {
        uint64_t len = 1 + (uint64_t)rand() % maxlen;
        uint64_t off = ((uint64_t)rand() * 7919u) % size;
        if (rand() % 3 == 0)
            off &= ~4095ull;
        if (off + len > size)
            len = size - off;
        int op = rand() % 10;
        if (op < 8) {
            bt_pattern(buf, len, off, seed + (unsigned)i);
            assert_int_equal(blk_pwrite(b, off, buf, len), 0);
            memcpy(m.data + off, buf, len);
        } else {
            assert_int_equal(blk_write_zeroes_sync(b, off, len, op == 9 ? BLK_ZERO_MAY_UNMAP : 0), 0);
            memset(m.data + off, 0, len);
        }
    }
    free(buf);
    model_check(b, &m);
    assert_int_equal(blk_flush_sync(b), 0);
    assert_clean(b);
    blk_close(b);
    b = bt_open(path, "qcow2", true);
    model_check(b, &m);
    blk_close(b);
    if (have_qemu) {
        assert_int_equal(bt_qemu_check(path), 0);
        const char *raw = bt_path("w.raw");
        write_raw_model(raw, &m);
        assert_int_equal(bt_sh("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", path, raw), 0);
    }
    free(m.data);
}

static void test_default(void **st) { workload("", 8 * MiB_, 1, 300, 200000); }
static void test_cluster_512(void **st) { workload("cluster_size=512", 1 * MiB_, 2, 300, 5000); }
static void test_cluster_4k(void **st) { workload("cluster_size=4k", 4 * MiB_, 3, 300, 20000); }
static void test_cluster_2m(void **st) { workload("cluster_size=2M", 12 * MiB_, 4, 60, 3000000); }
static void test_v2(void **st) { workload("compat=0.10", 4 * MiB_, 5, 200, 100000); }
static void test_refcount_widths(void **st)
{
    static const char *w[] = {"refcount_bits=1", "refcount_bits=2", "refcount_bits=4",
                              "refcount_bits=8", "refcount_bits=32", "refcount_bits=64"};
    for (unsigned i = 0; i < 6; i++)
        workload(w[i], 2 * MiB_, 10 + i, 80, 50000);
}
/* 512-byte clusters with 64-bit refcounts cover little per block: forces refcount table
 * growth. */
static void test_refcount_growth(void **st)
{
    workload("cluster_size=512,refcount_bits=64", 6 * MiB_, 20, 400, 40000);
}
static void test_subclusters(void **st)
{
    workload("extended_l2=on,cluster_size=64k", 8 * MiB_, 21, 300, 100000);
    workload("extended_l2=on,cluster_size=16k", 2 * MiB_, 22, 300, 10000);
}
static void test_lazy(void **st) { workload("lazy_refcounts=on", 4 * MiB_, 23, 100, 100000); }
static void test_prealloc(void **st)
{
    static const char *p[] = {"preallocation=metadata", "preallocation=falloc",
                              "preallocation=full"};
    for (unsigned i = 0; i < 3; i++) {
        workload(p[i], 3 * MiB_ + 512, 30 + i, 50, 100000);
        if (have_qemu)
            assert_int_equal(bt_qemu_check(bt_path("w.qcow2")), 0);
    }
}
static void test_zstd_opt(void **st) { workload("compression_type=zstd", 1 * MiB_, 40, 50, 9000); }

static void fill_file(const char *path, uint64_t size, unsigned seed)
{
    uint8_t *buf = malloc(size);
    bt_pattern(buf, size, 0, seed);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    fclose(f);
    free(buf);
}

/* raw base <- qcow2 mid <- qcow2 top, partial-cluster writes copy from below. */
static void test_backing_chain(void **st)
{
    const char *base = bt_path("base.raw"), *mid = bt_path("mid.qcow2"), *top = bt_path("top.qcow2");
    uint64_t size = 2 * MiB_;
    fill_file(base, size, 7);
    bt_create_qcow2(mid, 0, "backing_file=base.raw,backing_fmt=raw");
    bt_create_qcow2(top, 0, "backing_file=mid.qcow2,backing_fmt=qcow2,cluster_size=4k");
    struct model m = {.data = malloc(size), .size = size};
    bt_pattern(m.data, size, 0, 7);
    struct blk *b = bt_open(mid, NULL, false);
    assert_int_equal(blk_size(b), size);
    uint8_t buf[3000];
    bt_pattern(buf, sizeof(buf), 100, 8);
    assert_int_equal(blk_pwrite(b, 70000, buf, sizeof(buf)), 0);
    memcpy(m.data + 70000, buf, sizeof(buf));
    assert_int_equal(blk_write_zeroes_sync(b, 65536 * 3, 65536, BLK_ZERO_MAY_UNMAP), 0);
    memset(m.data + 65536 * 3, 0, 65536);
    model_check(b, &m);
    assert_clean(b);
    blk_close(b);
    b = bt_open(top, NULL, false);
    struct blk_info info;
    assert_int_equal(blk_get_info(b, &info), 0);
    assert_string_equal(info.backing_file, "mid.qcow2");
    assert_string_equal(info.backing_format, "qcow2");
    assert_non_null(blk_backing(b));
    assert_non_null(blk_backing(blk_backing(b)));
    bt_pattern(buf, sizeof(buf), 5, 9);
    assert_int_equal(blk_pwrite(b, 1000000, buf, 1), 0);
    m.data[1000000] = buf[0];
    model_check(b, &m);
    /* Block status: unallocated in top but data below. */
    uint64_t pnum;
    unsigned status;
    assert_int_equal(blk_block_status(b, 0, size, &pnum, &status, NULL, NULL), 0);
    assert_true(status & BLK_STATUS_DATA);
    assert_false(status & BLK_STATUS_ALLOCATED);
    assert_int_equal(blk_block_status(b, 1000000, 4096, &pnum, &status, NULL, NULL), 0);
    assert_true(status & BLK_STATUS_ALLOCATED);
    blk_close(b);
    /* The base file was never written. */
    uint8_t *orig = malloc(size), *now = malloc(size);
    bt_pattern(orig, size, 0, 7);
    FILE *f = fopen(base, "rb");
    assert_int_equal(fread(now, 1, size, f), size);
    fclose(f);
    assert_memory_equal(orig, now, size);
    free(orig);
    free(now);
    if (have_qemu) {
        assert_int_equal(bt_qemu_check(top), 0);
        assert_int_equal(bt_qemu_check(mid), 0);
        const char *raw = bt_path("chain.raw");
        write_raw_model(raw, &m);
        assert_int_equal(bt_sh("qemu-img compare -q '%s' '%s'", top, raw), 0);
    }
    free(m.data);
}

/* A backing file declared raw must be read as raw even when it looks like qcow2. */
static void test_backing_declared_raw(void **st)
{
    const char *inner = bt_path("looks.qcow2"), *ov = bt_path("ov.qcow2");
    bt_create_qcow2(inner, 1 * MiB_, NULL);
    bt_create_qcow2(ov, 1 * MiB_, "backing_file=looks.qcow2,backing_fmt=raw");
    struct blk *b = bt_open(ov, "qcow2", true);
    uint8_t hdr[4];
    assert_int_equal(blk_pread(b, 0, hdr, 4), 0);
    assert_memory_equal(hdr, "QFI\xfb", 4); /* raw view shows the qcow2 header bytes */
    struct blk_info info;
    blk_get_info(blk_backing(b), &info);
    assert_string_equal(info.format, "raw");
    blk_close(b);
}

static void test_backing_loop(void **st)
{
    const char *a = bt_path("loop_a.qcow2"), *b2 = bt_path("loop_b.qcow2");
    bt_create_qcow2(a, 1 * MiB_, NULL);
    bt_create_qcow2(b2, 1 * MiB_, "backing_file=loop_a.qcow2,backing_fmt=qcow2");
    struct blk *b = bt_open(a, "qcow2", false);
    assert_int_equal(blk_change_backing(b, "loop_b.qcow2", "qcow2"), 0);
    blk_close(b);
    struct blk_open_opts o = {.format = "qcow2"};
    assert_int_equal(blk_open(a, &o, NULL, &b), -ELOOP);
    o.no_backing = true;
    assert_int_equal(blk_open(a, &o, NULL, &b), 0);
    blk_close(b);
    /* Self-reference */
    o.no_backing = true;
    assert_int_equal(blk_open(b2, &o, NULL, &b), 0);
    assert_int_equal(blk_change_backing(b, "loop_b.qcow2", "qcow2"), 0);
    blk_close(b);
    o.no_backing = false;
    assert_int_equal(blk_open(b2, &o, NULL, &b), -ELOOP);
}

static void test_discard(void **st)
{
    const char *path = bt_path("d.qcow2");
    bt_create_qcow2(path, 4 * MiB_, NULL);
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t *buf = malloc(1 * MiB_);
    bt_pattern(buf, 1 * MiB_, 0, 3);
    assert_int_equal(blk_pwrite(b, 0, buf, 1 * MiB_), 0);
    assert_int_equal(blk_discard_sync(b, 65536, 2 * 65536), 0);
    uint8_t *rd = malloc(2 * 65536);
    assert_int_equal(blk_pread(b, 65536, rd, 2 * 65536), 0);
    uint8_t *z = calloc(1, 2 * 65536);
    assert_memory_equal(rd, z, 2 * 65536); /* no backing: discarded reads as zero */
    uint64_t pnum;
    unsigned status;
    assert_int_equal(blk_block_status(b, 65536, 65536, &pnum, &status, NULL, NULL), 0);
    assert_false(status & BLK_STATUS_DATA);
    assert_int_equal(blk_flush_sync(b), 0);
    assert_clean(b);
    /* The discarded clusters are free again: the next write reuses them. */
    struct blk_info i1, i2;
    blk_get_info(b, &i1);
    assert_int_equal(blk_pwrite(b, 3 * MiB_, buf, 2 * 65536), 0);
    assert_int_equal(blk_flush_sync(b), 0);
    struct blk_check_result res;
    assert_int_equal(blk_check(b, 0, &res), 0);
    assert_int_equal(res.image_end_offset <= 327680 + 17 * 65536, 1);
    blk_get_info(b, &i2);
    blk_close(b);
    free(buf);
    free(rd);
    free(z);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 0);
}

static void test_compressed(void **st)
{
    static const char *types[] = {"", "compression_type=zstd"};
    for (int t = 0; t < 2; t++) {
        const char *path = bt_path("c.qcow2");
        bt_create_qcow2(path, 1 * MiB_ + 4096, types[t]);
        struct blk *b = bt_open(path, "qcow2", false);
        uint8_t *buf = malloc(65536);
        struct model m = {.data = calloc(1, 1 * MiB_ + 4096), .size = 1 * MiB_ + 4096};
        for (int c = 0; c < 16; c++) {
            for (int i = 0; i < 65536; i++)
                buf[i] = (uint8_t)((i / 100) * c); /* compressible */
            if (c == 5)
                bt_pattern(buf, 65536, 0, 1); /* incompressible: stored plainly */
            assert_int_equal(blk_pwrite_compressed(b, (uint64_t)c * 65536, buf, 65536), 0);
            memcpy(m.data + c * 65536, buf, 65536);
        }
        /* Last, partial cluster. */
        memset(buf, 0x5a, 4096);
        assert_int_equal(blk_pwrite_compressed(b, 16 * 65536, buf, 4096), 0);
        memcpy(m.data + 16 * 65536, buf, 4096);
        assert_int_equal(blk_pwrite_compressed(b, 100, buf, 4096), -EINVAL);
        model_check(b, &m);
        /* Overwrite part of a compressed cluster: it becomes a normal one. */
        bt_pattern(buf, 1000, 0, 2);
        assert_int_equal(blk_pwrite(b, 3 * 65536 + 10, buf, 1000), 0);
        memcpy(m.data + 3 * 65536 + 10, buf, 1000);
        model_check(b, &m);
        assert_int_equal(blk_flush_sync(b), 0);
        assert_clean(b);
        struct blk_check_result res;
        blk_check(b, 0, &res);
        assert_true(res.compressed_clusters >= 10);
        blk_close(b);
        if (have_qemu) {
            assert_int_equal(bt_qemu_check(path), 0);
            const char *raw = bt_path("c.raw");
            write_raw_model(raw, &m);
            assert_int_equal(bt_sh("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", path, raw), 0);
        }
        free(m.data);
        free(buf);
    }
}

/* One compressed write of many clusters (compressed in parallel, stored in order), ending
 * with the image's partial last cluster, over clusters that already hold data. */
static void test_compressed_multi(void **st)
{
    static const char *types[] = {"cluster_size=4k", "compression_type=zstd"};
    for (int t = 0; t < 2; t++) {
        const char *path = bt_path("cm.qcow2");
        uint64_t cs = t ? 65536 : 4096, size = 300 * cs + 1536;
        bt_create_qcow2(path, size, types[t]);
        struct blk *b = bt_open(path, "qcow2", false);
        struct model m = {.data = calloc(1, size), .size = size};
        /* Plain data first, so the compressed write must free what it replaces. */
        bt_pattern(m.data, 20 * cs, 0, 3);
        assert_int_equal(blk_pwrite(b, 0, m.data, 20 * cs), 0);
        for (uint64_t c = 0; c < 300 + 1; c++) {
            uint64_t n = size - c * cs < cs ? size - c * cs : cs;
            if (c % 7 == 3)
                bt_pattern(m.data + c * cs, n, c * cs, 4); /* incompressible */
            else
                for (uint64_t i = 0; i < n; i++)
                    m.data[c * cs + i] = (uint8_t)((i / 50) * (c + 1));
        }
        /* Not cluster aligned, or a partial cluster before the end: refused. */
        assert_int_equal(blk_pwrite_compressed(b, 512, m.data, 4 * cs), -EINVAL);
        assert_int_equal(blk_pwrite_compressed(b, 0, m.data, 4 * cs + 512), -EINVAL);
        assert_int_equal(blk_pwrite_compressed(b, cs, m.data + cs, 10 * cs), 0);
        assert_int_equal(blk_pwrite_compressed(b, 0, m.data, cs), 0);
        assert_int_equal(blk_pwrite_compressed(b, 11 * cs, m.data + 11 * cs, size - 11 * cs), 0);
        model_check(b, &m);
        assert_int_equal(blk_flush_sync(b), 0);
        assert_clean(b);
        struct blk_check_result res;
        assert_int_equal(blk_check(b, 0, &res), 0);
        assert_true(res.compressed_clusters >= 250);
        blk_close(b);
        b = bt_open(path, "qcow2", true);
        model_check(b, &m);
        blk_close(b);
        if (have_qemu) {
            assert_int_equal(bt_qemu_check(path), 0);
            const char *raw = bt_path("cm.raw");
            write_raw_model(raw, &m);
            assert_int_equal(bt_sh("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", path, raw), 0);
        }
        free(m.data);
    }
}

static void test_snapshots(void **st)
{
    const char *path = bt_path("s.qcow2");
    uint64_t size = 2 * MiB_;
    bt_create_qcow2(path, size, "cluster_size=4k");
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t *a = malloc(size), *x = malloc(size), *rd = malloc(size);
    bt_pattern(a, size, 0, 1);
    assert_int_equal(blk_pwrite(b, 0, a, size), 0);
    assert_int_equal(blk_snapshot_create(b, "one"), 0);
    assert_int_equal(blk_snapshot_create(b, "one"), -EEXIST);
    bt_pattern(x, size / 2, 0, 2);
    assert_int_equal(blk_pwrite(b, 12345, x, size / 2), 0);
    assert_int_equal(blk_snapshot_create(b, "two"), 0);
    assert_int_equal(blk_write_zeroes_sync(b, 0, size, BLK_ZERO_MAY_UNMAP), 0);
    assert_int_equal(blk_flush_sync(b), 0);
    assert_clean(b);
    struct blk_snapshot *list;
    unsigned n;
    assert_int_equal(blk_snapshot_list(b, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "one");
    assert_string_equal(list[1].id, "2");
    blk_snapshot_list_free(list, n);
    assert_int_equal(blk_snapshot_apply(b, "one"), 0);
    assert_int_equal(blk_pread(b, 0, rd, size), 0);
    assert_memory_equal(rd, a, size);
    assert_clean(b);
    assert_int_equal(blk_snapshot_apply(b, "2"), 0);
    assert_int_equal(blk_pread(b, 0, rd, size), 0);
    memcpy(a + 12345, x, size / 2);
    assert_memory_equal(rd, a, size);
    assert_int_equal(blk_snapshot_delete(b, "one"), 0);
    assert_int_equal(blk_snapshot_delete(b, "one"), -ENOENT);
    assert_clean(b);
    /* Writes after delete land in exclusively owned clusters again. */
    assert_int_equal(blk_pwrite(b, 0, x, 8192), 0);
    memcpy(a, x, 8192);
    assert_int_equal(blk_flush_sync(b), 0);
    assert_clean(b);
    blk_close(b);
    if (have_qemu) {
        assert_int_equal(bt_qemu_check(path), 0);
        assert_int_equal(bt_sh("qemu-img snapshot -l '%s' | grep -q two", path), 0);
    }
    /* load_tmp gives a read-only view of a snapshot. */
    b = bt_open(path, "qcow2", true);
    assert_int_equal(blk_snapshot_load_tmp(b, "two"), 0);
    assert_int_equal(blk_pread(b, 0, rd, size), 0);
    bt_pattern(x, 8192, 0, 1);
    assert_memory_equal(rd, x, 8192); /* snapshot 'two' predates the last write */
    blk_close(b);
    free(a);
    free(x);
    free(rd);
}

static void test_truncate(void **st)
{
    const char *path = bt_path("t.qcow2");
    bt_create_qcow2(path, 1 * MiB_, "cluster_size=4k");
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t buf[8192];
    memset(buf, 0xcc, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 1 * MiB_ - 8192, buf, 8192), 0);
    assert_int_equal(blk_truncate(b, 1 * MiB_ - 5000, false, NULL), -EINVAL);
    assert_int_equal(blk_truncate(b, 1 * MiB_ - 5000, true, NULL), 0);
    /* Sizes are whole sectors, rounded up like qemu-img: 1 MiB - 5000 -> 1 MiB - 4608. */
    assert_int_equal(blk_size(b), 1 * MiB_ - 4608);
    /* 1 GiB with 4 KiB clusters needs a larger L1 table. */
    assert_int_equal(blk_truncate(b, 1 * GiB_, false, NULL), 0);
    assert_int_equal(blk_pread(b, 1 * MiB_ - 8192, buf, 8192), 0);
    for (int i = 0; i < 8192; i++)
        assert_int_equal(buf[i], i < 8192 - 4608 ? 0xcc : 0);
    memset(buf, 0xdd, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 1 * GiB_ - 8192, buf, 8192), 0);
    assert_int_equal(blk_flush_sync(b), 0);
    assert_clean(b);
    blk_close(b);
    if (have_qemu) {
        assert_int_equal(bt_qemu_check(path), 0);
        assert_int_equal(bt_sh("qemu-img info '%s' | grep -q 'virtual size: 1 GiB'", path), 0);
    }
}

static void test_truncate_prealloc(void **st)
{
    static const char *modes[] = {"metadata", "falloc", "full"};
    for (int m = 0; m < 3; m++) {
        const char *path = bt_path("tp.qcow2");
        bt_create_qcow2(path, 1 * MiB_ + 1000, m == 1 ? "extended_l2=on" : NULL);
        struct blk *b = bt_open(path, "qcow2", false);
        uint8_t buf[200000];
        memset(buf, 0x61, sizeof(buf));
        assert_int_equal(blk_pwrite(b, 0, buf, sizeof(buf)), 0);
        assert_int_equal(blk_flush_sync(b), 0);
        /* Free two clusters so preallocating two reuses them: they must read as zeros. */
        assert_int_equal(blk_discard_sync(b, 0, 131072), 0);
        struct blk_check_result before;
        assert_int_equal(blk_check(b, 0, &before), 0);
        assert_int_equal(blk_truncate(b, 1 * MiB_ + 65536 + 131072, false, modes[m]), 0);
        struct blk_check_result after;
        assert_int_equal(blk_check(b, 0, &after), 0);
        assert_int_equal(after.image_end_offset, before.image_end_offset); /* reused */
        assert_int_equal(blk_truncate(b, 3 * MiB_, false, modes[m]), 0);
        uint64_t pnum;
        unsigned status;
        assert_int_equal(blk_block_status(b, 2 * MiB_, 65536, &pnum, &status, NULL, NULL), 0);
        assert_true(status & BLK_STATUS_ALLOCATED);
        assert_true(status & BLK_STATUS_DATA);
        uint8_t *rd = malloc(2 * MiB_);
        assert_int_equal(blk_pread(b, 1 * MiB_, rd, 2 * MiB_), 0);
        for (uint64_t i = 0; i < 2 * MiB_; i++)
            if (rd[i]) {
                fprintf(stderr, "%s: byte %llu not zero\n", modes[m], (unsigned long long)i);
                fail();
            }
        free(rd);
        assert_int_equal(blk_flush_sync(b), 0);
        assert_clean(b);
        blk_close(b);
        if (have_qemu)
            assert_int_equal(bt_qemu_check(path), 0);
    }
}

static void test_amend(void **st)
{
    const char *path = bt_path("a.qcow2");
    bt_create_qcow2(path, 2 * MiB_, NULL);
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t *buf = malloc(2 * MiB_), *rd = malloc(2 * MiB_);
    bt_pattern(buf, 2 * MiB_, 0, 4);
    assert_int_equal(blk_pwrite(b, 0, buf, 2 * MiB_), 0);
    struct blk_create_opts o = {0};
    assert_int_equal(blk_create_opts_parse(&o, "refcount_bits=4,lazy_refcounts=on"), 0);
    assert_int_equal(blk_amend(b, &o, "refcount_bits=4,lazy_refcounts=on"), 0);
    struct blk_info info;
    blk_get_info(b, &info);
    assert_int_equal(info.refcount_bits, 4);
    assert_true(info.lazy_refcounts);
    assert_clean(b);
    memset(&o, 0, sizeof(o));
    assert_int_equal(blk_create_opts_parse(&o, "compat=0.10,lazy_refcounts=off,refcount_bits=16"), 0);
    assert_int_equal(blk_amend(b, &o, "lazy_refcounts=off,refcount_bits=16,compat=0.10"), 0);
    blk_get_info(b, &info);
    assert_int_equal(info.qcow2_version, 2);
    assert_int_equal(blk_pread(b, 0, rd, 2 * MiB_), 0);
    assert_memory_equal(rd, buf, 2 * MiB_);
    memset(&o, 0, sizeof(o));
    assert_int_equal(blk_create_opts_parse(&o, "cluster_size=4k"), 0);
    assert_int_equal(blk_amend(b, &o, "cluster_size=4k"), -ENOTSUP);
    blk_close(b);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 0);
    free(buf);
    free(rd);
}

static void test_opts_parse(void **st)
{
    struct blk_create_opts o = {0};
    assert_int_equal(blk_create_opts_parse(&o, "size=1G,cluster_size=2M,compat=v2,backing_file=a,,b"), 0);
    assert_int_equal(o.size, 1 * GiB_);
    assert_int_equal(o.cluster_size, 2 * MiB_);
    assert_string_equal(o.compat, "v2");
    assert_string_equal(o.backing_file, "a,b");
    assert_int_equal(blk_create_opts_parse(&o, "bogus=1"), -EINVAL);
    assert_int_equal(blk_create_opts_parse(&o, "refcount_bits=3"), -EINVAL);
    assert_int_equal(blk_create_opts_parse(&o, "encrypt.format=luks"), -ENOTSUP);
    assert_int_equal(blk_create_opts_parse(&o, "preallocation=sometimes"), -EINVAL);
}

/* Lazy refcounts: a write sets the dirty bit; an unclean exit leaves it; open repairs. */
static void test_lazy_dirty_repair(void **st)
{
    const char *path = bt_path("lazy.qcow2");
    bt_create_qcow2(path, 1 * MiB_, "lazy_refcounts=on");
    pid_t pid = fork();
    if (pid == 0) {
        /* A fresh engine: the parent's worker threads do not exist after fork. */
        struct blk_open_opts o = {.format = "qcow2"};
        struct blk *b;
        struct blk_aio *e;
        if (blk_aio_new(BLK_AIO_THREADS, &e) < 0 || blk_open(path, &o, e, &b) < 0)
            _exit(1);
        uint8_t buf[4096];
        memset(buf, 0x11, sizeof(buf));
        for (int i = 0; i < 10; i++)
            if (blk_pwrite(b, (uint64_t)i * 65536, buf, sizeof(buf)) < 0)
                _exit(1);
        blk_flush_sync(b);
        _exit(0); /* no close: the dirty bit stays */
    }
    int stt;
    waitpid(pid, &stt, 0);
    assert_int_equal(WEXITSTATUS(stt), 0);
    struct blk *b = bt_open(path, "qcow2", true);
    struct blk_info info;
    blk_get_info(b, &info);
    assert_true(info.dirty);
    blk_close(b);
    b = bt_open(path, "qcow2", false); /* repairs */
    blk_get_info(b, &info);
    assert_false(info.dirty);
    assert_clean(b);
    uint8_t rd[4096];
    assert_int_equal(blk_pread(b, 9 * 65536, rd, sizeof(rd)), 0);
    assert_int_equal(rd[0], 0x11);
    blk_close(b);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 0);
}

static void test_make_empty(void **st)
{
    const char *base = bt_path("me_base.raw"), *ov = bt_path("me.qcow2");
    fill_file(base, 1 * MiB_, 3);
    bt_create_qcow2(ov, 0, "backing_file=me_base.raw,backing_fmt=raw");
    struct blk *b = bt_open(ov, "qcow2", false);
    uint8_t buf[5000], rd[5000], want[5000];
    memset(buf, 0x77, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 3000, buf, sizeof(buf)), 0);
    assert_int_equal(blk_snapshot_create(b, "keep"), 0);
    assert_int_equal(blk_make_empty(b), 0);
    assert_int_equal(blk_pread(b, 3000, rd, sizeof(rd)), 0);
    bt_pattern(want, sizeof(want), 3000, 3);
    assert_memory_equal(rd, want, sizeof(rd));
    assert_int_equal(blk_flush_sync(b), 0);
    assert_clean(b);
    /* The snapshot still has the write. */
    assert_int_equal(blk_snapshot_apply(b, "keep"), 0);
    assert_int_equal(blk_pread(b, 3000, rd, sizeof(rd)), 0);
    assert_memory_equal(rd, buf, sizeof(rd));
    assert_clean(b);
    blk_close(b);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(ov), 0);
}

static void test_snapshot_temp(void **st)
{
    const char *path = bt_path("tmpov.qcow2");
    bt_create_qcow2(path, 1 * MiB_, NULL);
    struct blk_open_opts o = {.format = "qcow2", .snapshot_temp = true};
    struct blk *b;
    assert_int_equal(blk_open(path, &o, NULL, &b), 0);
    uint8_t buf[512];
    memset(buf, 0x42, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 0, buf, sizeof(buf)), 0);
    assert_int_equal(blk_pread(b, 0, buf, sizeof(buf)), 0);
    assert_int_equal(buf[0], 0x42);
    blk_close(b);
    b = bt_open(path, "qcow2", true);
    assert_int_equal(blk_pread(b, 0, buf, sizeof(buf)), 0);
    assert_int_equal(buf[0], 0); /* the real image never saw the write */
    blk_close(b);
}

/* Sizes are whole 512-byte sectors rounded UP, as qemu-img does: rounding down would lose
 * the last bytes, and QEMU reads a qcow2 size rounded down, so vmkit must store it aligned. */
static void test_size_rounding(void **st)
{
    const char *path = bt_path("round.qcow2");
    bt_create_qcow2(path, 1234567, NULL);
    struct blk *b = bt_open(path, "qcow2", false);
    assert_int_equal(blk_size(b), 1234944);
    assert_int_equal(blk_truncate(b, 2345679, false, NULL), 0);
    assert_int_equal(blk_size(b), 2345984);
    assert_int_equal(blk_truncate(b, 1234567, true, NULL), 0);
    assert_int_equal(blk_size(b), 1234944);
    blk_close(b);
    if (have_qemu)
        assert_int_equal(bt_sh("qemu-img info --output=json '%s' | grep -q '\"virtual-size\": 1234944'",
                               path), 0);
    const char *raw = bt_path("round.raw");
    struct blk_create_opts co = {.format = "raw", .size = 1234567};
    assert_int_equal(blk_create(raw, &co), 0);
    b = bt_open(raw, "raw", false);
    assert_int_equal(blk_size(b), 1234944);
    /* A raw file keeps the exact size it is resized to (qemu-img resize does the same). */
    assert_int_equal(blk_truncate(b, 2345679, false, NULL), 0);
    assert_int_equal(blk_size(b), 2345679);
    blk_close(b);
}

int main(void)
{
    have_qemu = bt_have_qemu_img();
    if (!have_qemu)
        fprintf(stderr, "note: qemu-img not found, interop assertions skipped\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts_parse),
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_cluster_512),
        cmocka_unit_test(test_cluster_4k),
        cmocka_unit_test(test_cluster_2m),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_refcount_widths),
        cmocka_unit_test(test_refcount_growth),
        cmocka_unit_test(test_subclusters),
        cmocka_unit_test(test_lazy),
        cmocka_unit_test(test_prealloc),
        cmocka_unit_test(test_zstd_opt),
        cmocka_unit_test(test_backing_chain),
        cmocka_unit_test(test_backing_declared_raw),
        cmocka_unit_test(test_backing_loop),
        cmocka_unit_test(test_discard),
        cmocka_unit_test(test_compressed),
        cmocka_unit_test(test_compressed_multi),
        cmocka_unit_test(test_snapshots),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_size_rounding),
        cmocka_unit_test(test_truncate_prealloc),
        cmocka_unit_test(test_amend),
        cmocka_unit_test(test_lazy_dirty_repair),
        cmocka_unit_test(test_make_empty),
        cmocka_unit_test(test_snapshot_temp),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    bt_cleanup_dir();
    return r;
}
