/* Interoperability with the real qemu-img/qemu-io: images QEMU writes read back identically
 * through vmkit, and images vmkit modifies stay clean for qemu-img check. */
#include "blk_test.h"

/* Reads the whole image through vmkit and through `qemu-img convert -O raw`; they must match. */
static void same_as_qemu(const char *path)
{
    const char *raw = bt_path("qemu_view.raw");
    assert_int_equal(bt_sh("qemu-img convert -O raw '%s' '%s'", path, raw), 0);
    struct blk *b = bt_open(path, NULL, true);
    uint64_t size = blk_size(b);
    uint8_t *mine = malloc(size), *theirs = malloc(size);
    assert_int_equal(blk_pread(b, 0, mine, size), 0);
    blk_close(b);
    FILE *f = fopen(raw, "rb");
    assert_non_null(f);
    assert_int_equal(fread(theirs, 1, size, f), size);
    fclose(f);
    for (uint64_t i = 0; i < size; i++)
        if (mine[i] != theirs[i]) {
            fprintf(stderr, "%s: differs at %llu (vmkit %02x, qemu %02x)\n", path,
                    (unsigned long long)i, mine[i], theirs[i]);
            fail();
        }
    free(mine);
    free(theirs);
}

static void qemu_io(const char *path, const char *cmds)
{
    assert_int_equal(bt_sh("qemu-io -f qcow2 %s '%s' >/dev/null", cmds, path), 0);
}

/* Writes through vmkit, then qemu-img must find the image clean and equal to our view. */
static void vmkit_scribble(const char *path, unsigned seed)
{
    struct blk *b = bt_open(path, "qcow2", false);
    uint64_t size = blk_size(b);
    uint8_t buf[70000];
    srand(seed);
    for (int i = 0; i < 20; i++) {
        uint64_t len = 1 + (uint64_t)rand() % sizeof(buf);
        uint64_t off = (uint64_t)rand() % size;
        if (off + len > size)
            len = size - off;
        bt_pattern(buf, len, off, seed + (unsigned)i);
        assert_int_equal(blk_pwrite(b, off, buf, len), 0);
    }
    assert_int_equal(blk_write_zeroes_sync(b, 0, 4096, BLK_ZERO_MAY_UNMAP), 0);
    blk_close(b);
    assert_int_equal(bt_qemu_check(path), 0);
    same_as_qemu(path);
}

static const char *write_cmds =
    "-c 'write -P 0xab 0 64k' -c 'write -P 0x12 100000 3000' -c 'write -z 300k 128k' "
    "-c 'write -P 0x34 1M 512' -c 'discard 64k 64k'";

static void qemu_image(const char *opts, unsigned seed)
{
    const char *path = bt_path("q.qcow2");
    assert_int_equal(bt_sh("qemu-img create -q -f qcow2 %s%s '%s' 2M", opts[0] ? "-o " : "",
                           opts, path), 0);
    qemu_io(path, write_cmds);
    same_as_qemu(path);
    vmkit_scribble(path, seed);
}

static void test_qemu_default(void **st) { qemu_image("", 1); }
static void test_qemu_v2(void **st) { qemu_image("compat=0.10", 2); }
static void test_qemu_small_clusters(void **st) { qemu_image("cluster_size=512,refcount_bits=1", 3); }
static void test_qemu_refcount64(void **st) { qemu_image("cluster_size=4k,refcount_bits=64", 4); }
static void test_qemu_extl2(void **st) { qemu_image("extended_l2=on,cluster_size=32k", 5); }
static void test_qemu_lazy(void **st) { qemu_image("lazy_refcounts=on", 6); }
static void test_qemu_big_clusters(void **st) { qemu_image("cluster_size=2M", 7); }
static void test_qemu_prealloc(void **st) { qemu_image("preallocation=metadata", 8); }

static void test_qemu_compressed(void **st)
{
    static const char *opts[] = {"", "-o compression_type=zstd"};
    for (int i = 0; i < 2; i++) {
        const char *src = bt_path("src.raw"), *dst = bt_path("comp.qcow2");
        FILE *f = fopen(src, "wb");
        uint8_t buf[4096];
        for (int k = 0; k < 512; k++) {
            for (int j = 0; j < 4096; j++)
                buf[j] = (uint8_t)(k % 7 == 0 ? rand() : (j / 64) ^ k);
            assert_int_equal(fwrite(buf, 1, 4096, f), 4096);
        }
        fclose(f);
        assert_int_equal(bt_sh("qemu-img convert -c -O qcow2 %s '%s' '%s'", opts[i], src, dst), 0);
        same_as_qemu(dst);
        assert_int_equal(bt_sh("qemu-img compare -q -F raw '%s' '%s'", dst, src), 0);
        struct blk *b = bt_open(dst, "qcow2", true);
        struct blk_info info;
        blk_get_info(b, &info);
        assert_string_equal(info.compression_type, i ? "zstd" : "zlib");
        struct blk_check_result res;
        assert_int_equal(blk_check(b, 0, &res), 0);
        assert_int_equal(res.corruptions, 0);
        assert_int_equal(res.leaks, 0);
        assert_true(res.compressed_clusters > 0);
        blk_close(b);
        /* Overwriting parts of compressed clusters, then qemu must still be happy. */
        vmkit_scribble(dst, 10 + (unsigned)i);
    }
}

/* vmkit-compressed clusters read back through qemu. */
static void test_vmkit_compressed(void **st)
{
    static const char *opts[] = {"", "compression_type=zstd"};
    for (int i = 0; i < 2; i++) {
        const char *path = bt_path("vc.qcow2"), *raw = bt_path("vc.raw");
        bt_create_qcow2(path, 1 * MiB_, opts[i]);
        struct blk *b = bt_open(path, "qcow2", false);
        uint8_t *all = calloc(1, 1 * MiB_);
        for (int c = 0; c < 16; c++) {
            for (int j = 0; j < 65536; j++)
                all[c * 65536 + j] = (uint8_t)(j / 300 + c);
            assert_int_equal(blk_pwrite_compressed(b, (uint64_t)c * 65536, all + c * 65536, 65536), 0);
        }
        blk_close(b);
        FILE *f = fopen(raw, "wb");
        assert_int_equal(fwrite(all, 1, 1 * MiB_, f), 1 * MiB_);
        fclose(f);
        assert_int_equal(bt_qemu_check(path), 0);
        assert_int_equal(bt_sh("qemu-img compare -q -F raw '%s' '%s'", path, raw), 0);
        assert_int_equal(bt_sh("qemu-img check '%s' 2>&1 | grep -q 'compressed'", path), 0);
        free(all);
    }
}

static void test_qemu_snapshots(void **st)
{
    const char *path = bt_path("snap.qcow2");
    assert_int_equal(bt_sh("qemu-img create -q -f qcow2 '%s' 1M", path), 0);
    qemu_io(path, "-c 'write -P 0x11 0 128k'");
    assert_int_equal(bt_sh("qemu-img snapshot -c first '%s'", path), 0);
    qemu_io(path, "-c 'write -P 0x22 64k 128k'");
    struct blk *b = bt_open(path, "qcow2", true);
    struct blk_snapshot *list;
    unsigned n;
    assert_int_equal(blk_snapshot_list(b, &list, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "first");
    blk_snapshot_list_free(list, n);
    uint8_t buf[4096];
    assert_int_equal(blk_pread(b, 65536, buf, 4096), 0);
    assert_int_equal(buf[0], 0x22);
    assert_int_equal(blk_snapshot_load_tmp(b, "first"), 0);
    assert_int_equal(blk_pread(b, 65536, buf, 4096), 0);
    assert_int_equal(buf[0], 0x11);
    blk_close(b);
    /* vmkit creates a snapshot, qemu lists and applies it. */
    b = bt_open(path, "qcow2", false);
    assert_int_equal(blk_snapshot_create(b, "second"), 0);
    memset(buf, 0x33, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 0, buf, 4096), 0);
    assert_int_equal(blk_snapshot_apply(b, "first"), 0);
    blk_close(b);
    assert_int_equal(bt_qemu_check(path), 0);
    assert_int_equal(bt_sh("qemu-img snapshot -l '%s' | grep -q second", path), 0);
    same_as_qemu(path); /* now at 'first' */
    assert_int_equal(bt_sh("qemu-img snapshot -a second '%s'", path), 0);
    b = bt_open(path, "qcow2", true);
    assert_int_equal(blk_pread(b, 65536, buf, 4096), 0);
    assert_int_equal(buf[0], 0x22);
    blk_close(b);
    b = bt_open(path, "qcow2", false);
    assert_int_equal(blk_snapshot_delete(b, "first"), 0);
    blk_close(b);
    assert_int_equal(bt_qemu_check(path), 0);
    vmkit_scribble(path, 20);
}

static void test_qemu_backing(void **st)
{
    const char *base = bt_path("qb.raw"), *mid = bt_path("qb_mid.qcow2"), *top = bt_path("qb_top.qcow2");
    assert_int_equal(bt_sh("qemu-img create -q -f raw '%s' 1M && qemu-io -f raw -c 'write -P 0x55 0 1M' '%s' >/dev/null", base, base), 0);
    assert_int_equal(bt_sh("qemu-img create -q -f qcow2 -b qb.raw -F raw '%s'", mid), 0);
    qemu_io(mid, "-c 'write -P 0x66 4k 4k'");
    assert_int_equal(bt_sh("qemu-img create -q -f qcow2 -o extended_l2=on -b qb_mid.qcow2 -F qcow2 '%s'", top), 0);
    qemu_io(top, "-c 'write -P 0x77 10k 1k'");
    same_as_qemu(top);
    vmkit_scribble(top, 30);
    same_as_qemu(mid);
}

/* Images vmkit creates are accepted by qemu-img with every option. */
static void test_vmkit_created(void **st)
{
    static const char *opts[] = {"", "compat=0.10", "cluster_size=512", "cluster_size=2M",
                                 "refcount_bits=1", "refcount_bits=64", "extended_l2=on",
                                 "lazy_refcounts=on", "preallocation=metadata",
                                 "preallocation=full", "compression_type=zstd"};
    for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        const char *path = bt_path("vk.qcow2");
        bt_create_qcow2(path, 3 * MiB_, opts[i]);
        if (bt_qemu_check(path) != 0)
            fprintf(stderr, "qemu-img check failed for a fresh image with '%s'\n", opts[i]);
        assert_int_equal(bt_qemu_check(path), 0);
        qemu_io(path, write_cmds);
        same_as_qemu(path);
        vmkit_scribble(path, 40 + i);
    }
}

int main(void)
{
    if (!bt_have_qemu_img()) {
        printf("SKIP: qemu-img/qemu-io are not installed\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qemu_default),
        cmocka_unit_test(test_qemu_v2),
        cmocka_unit_test(test_qemu_small_clusters),
        cmocka_unit_test(test_qemu_refcount64),
        cmocka_unit_test(test_qemu_extl2),
        cmocka_unit_test(test_qemu_lazy),
        cmocka_unit_test(test_qemu_big_clusters),
        cmocka_unit_test(test_qemu_prealloc),
        cmocka_unit_test(test_qemu_compressed),
        cmocka_unit_test(test_vmkit_compressed),
        cmocka_unit_test(test_qemu_snapshots),
        cmocka_unit_test(test_qemu_backing),
        cmocka_unit_test(test_vmkit_created),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    bt_cleanup_dir();
    return r;
}
