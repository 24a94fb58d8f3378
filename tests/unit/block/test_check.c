/* qcow2 check/repair on injected corruption, and hostile images: clear errors, never a
 * crash, a huge allocation or a hang. */
#include "blk_test.h"
#include <fcntl.h>

static int have_qemu;

static uint64_t rd64(int fd, uint64_t off)
{
    uint8_t b[8];
    assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static uint32_t rd32(int fd, uint64_t off)
{
    return (uint32_t)(rd64(fd, off) >> 32);
}

static void wr64(int fd, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
    assert_int_equal(pwrite(fd, b, 8, (off_t)off), 8);
}

static void wr32(int fd, uint64_t off, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    assert_int_equal(pwrite(fd, b, 4, (off_t)off), 4);
}

/* A 1 MiB image with 64 KiB clusters: data written at guest 0 and 64 KiB. */
static const char *make_image(const char *name)
{
    const char *path = bt_path(name);
    bt_create_qcow2(path, 1 * MiB_, NULL);
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t buf[131072];
    memset(buf, 0x5c, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 0, buf, sizeof(buf)), 0);
    blk_close(b);
    return path;
}

struct layout {
    uint64_t l1, rt, rb, l2, data0;
};

static struct layout get_layout(int fd)
{
    struct layout l;
    l.l1 = rd64(fd, 40);
    l.rt = rd64(fd, 48);
    l.rb = rd64(fd, l.rt);
    l.l2 = rd64(fd, l.l1) & 0x00fffffffffffe00ull;
    l.data0 = rd64(fd, l.l2) & 0x00fffffffffffe00ull;
    return l;
}

static void check_counts(const char *path, unsigned fix, uint64_t *corr, uint64_t *leaks,
                         struct blk_check_result *out)
{
    struct blk_open_opts o = {.format = "qcow2", .read_only = !fix, .no_repair = true};
    struct blk *b;
    assert_int_equal(blk_open(path, &o, NULL, &b), 0);
    struct blk_check_result res;
    assert_int_equal(blk_check(b, fix, &res), 0);
    *corr = res.corruptions;
    *leaks = res.leaks;
    if (out)
        *out = res;
    blk_close(b);
}

static void test_leak(void **st)
{
    const char *path = make_image("leak.qcow2");
    int fd = open(path, O_RDWR);
    struct layout l = get_layout(fd);
    off_t end = lseek(fd, 0, SEEK_END);
    assert_int_equal(ftruncate(fd, end + 65536), 0);
    /* refcount of the new, unreferenced cluster = 1 (16-bit entries) */
    uint8_t one[2] = {0, 1};
    assert_int_equal(pwrite(fd, one, 2, (off_t)(l.rb + (uint64_t)(end / 65536) * 2)), 2);
    close(fd);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 3);
    uint64_t c, k;
    check_counts(path, 0, &c, &k, NULL);
    assert_int_equal(c, 0);
    assert_int_equal(k, 1);
    struct blk_check_result res;
    check_counts(path, BLK_FIX_LEAKS, &c, &k, &res);
    assert_int_equal(res.leaks_fixed, 1);
    assert_int_equal(k, 0);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 0);
}

static void test_refcount_too_low(void **st)
{
    const char *path = make_image("low.qcow2");
    int fd = open(path, O_RDWR);
    struct layout l = get_layout(fd);
    uint8_t zero[2] = {0, 0};
    assert_int_equal(pwrite(fd, zero, 2, (off_t)(l.rb + l.data0 / 65536 * 2)), 2);
    close(fd);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 2);
    uint64_t c, k;
    check_counts(path, 0, &c, &k, NULL);
    assert_true(c >= 1);
    struct blk_check_result res;
    check_counts(path, BLK_FIX_ERRORS | BLK_FIX_LEAKS, &c, &k, &res);
    assert_int_equal(c, 0);
    assert_true(res.corruptions_fixed >= 1);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 0);
    struct blk *b = bt_open(path, "qcow2", true);
    uint8_t buf[16];
    assert_int_equal(blk_pread(b, 0, buf, 16), 0);
    assert_int_equal(buf[0], 0x5c);
    blk_close(b);
}

/* An L2 entry pointing at the L1 table: overlapping metadata. */
static void test_overlap(void **st)
{
    const char *path = make_image("overlap.qcow2");
    int fd = open(path, O_RDWR);
    struct layout l = get_layout(fd);
    wr64(fd, l.l2 + 8 * 5, l.l1 | (1ull << 63));
    close(fd);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 2);
    uint64_t c, k;
    check_counts(path, 0, &c, &k, NULL);
    assert_true(c >= 1);
}

static void test_past_eof(void **st)
{
    const char *path = make_image("eof.qcow2");
    int fd = open(path, O_RDWR);
    struct layout l = get_layout(fd);
    wr64(fd, l.l2 + 8 * 7, (1ull << 40) | (1ull << 63));
    close(fd);
    uint64_t c, k;
    check_counts(path, 0, &c, &k, NULL);
    assert_true(c >= 1);
    struct blk *b = bt_open(path, "qcow2", true);
    uint8_t buf[512];
    (void)blk_pread(b, 7 * 65536, buf, sizeof(buf)); /* must not crash */
    blk_close(b);
    check_counts(path, BLK_FIX_ERRORS | BLK_FIX_LEAKS, &c, &k, NULL);
    assert_int_equal(c, 0);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 0);
}

/* Opening must fail cleanly with the given errno after poking the header. */
static void expect_open_fails(const char *name, void (*poke)(int fd), int err)
{
    const char *path = make_image(name);
    int fd = open(path, O_RDWR);
    poke(fd);
    close(fd);
    struct blk_open_opts o = {.format = "qcow2"};
    struct blk *b = NULL;
    int r = blk_open(path, &o, NULL, &b);
    if (r == 0)
        blk_close(b);
    assert_int_equal(r, err);
}

static void p_trunc(int fd) { assert_int_equal(ftruncate(fd, 50), 0); }
static void p_l1_absurd(int fd) { wr32(fd, 36, 0xffffffffu); }
static void p_l1_eof(int fd) { wr64(fd, 40, 1ull << 50); }
static void p_size_huge(int fd) { wr64(fd, 24, 1ull << 63); }
static void p_cluster_bits(int fd) { wr32(fd, 20, 31); }
static void p_incompat(int fd) { wr64(fd, 72, 1ull << 40); }
static void p_crypt(int fd) { wr32(fd, 32, 1); }
static void p_data_file(int fd) { wr64(fd, 72, 1ull << 2); }
static void p_rt_huge(int fd) { wr32(fd, 56, 0x7fffffffu); }
static void p_rt_eof(int fd) { wr64(fd, 48, 1ull << 45); }
static void p_snap_count(int fd) { wr32(fd, 60, 0x7fffffffu); wr64(fd, 64, 65536); }
static void p_version(int fd) { wr32(fd, 4, 4); }
static void p_ext_len(int fd) { wr32(fd, 112, 0x12345678u); wr32(fd, 116, 0x7ffffff0u); }
static void p_backing_name(int fd) { wr64(fd, 8, 65530); wr32(fd, 16, 1000); }
static void p_refcount_order(int fd) { wr32(fd, 96, 7); }

static void test_hostile_headers(void **st)
{
    expect_open_fails("h1.qcow2", p_trunc, -EINVAL);
    expect_open_fails("h2.qcow2", p_l1_absurd, -EFBIG);
    expect_open_fails("h3.qcow2", p_l1_eof, -EINVAL);
    expect_open_fails("h4.qcow2", p_size_huge, -EFBIG);
    expect_open_fails("h5.qcow2", p_cluster_bits, -EINVAL);
    expect_open_fails("h6.qcow2", p_incompat, -ENOTSUP);
    expect_open_fails("h7.qcow2", p_crypt, -ENOTSUP);
    expect_open_fails("h8.qcow2", p_data_file, -ENOTSUP);
    expect_open_fails("h9.qcow2", p_rt_huge, -EINVAL);
    expect_open_fails("h10.qcow2", p_rt_eof, -EINVAL);
    expect_open_fails("h11.qcow2", p_snap_count, -EINVAL);
    expect_open_fails("h12.qcow2", p_version, -ENOTSUP);
    expect_open_fails("h13.qcow2", p_ext_len, -EINVAL);
    expect_open_fails("h14.qcow2", p_backing_name, -EINVAL);
    expect_open_fails("h15.qcow2", p_refcount_order, -EINVAL);
}

/* Unknown autoclear bits are cleared by a read-write open; unknown extensions survive a
 * header rewrite. */
static void test_autoclear_and_extensions(void **st)
{
    const char *path = make_image("ext.qcow2");
    int fd = open(path, O_RDWR);
    wr64(fd, 88, 1ull << 33);
    /* unknown extension right after the 112-byte header */
    wr32(fd, 112, 0xdeadbeefu);
    wr32(fd, 116, 5);
    assert_int_equal(pwrite(fd, "hello\0\0\0", 8, 120), 8);
    close(fd);
    struct blk *b = bt_open(path, "qcow2", true);
    blk_close(b);
    fd = open(path, O_RDONLY);
    assert_int_equal(rd64(fd, 88), 1ull << 33); /* read-only: untouched */
    close(fd);
    b = bt_open(path, "qcow2", false);
    assert_int_equal(blk_change_backing(b, NULL, NULL), 0);
    blk_close(b);
    fd = open(path, O_RDONLY);
    assert_int_equal(rd64(fd, 88), 0);
    assert_int_equal(rd32(fd, 112), 0xdeadbeefu);
    char hello[6] = {0};
    assert_int_equal(pread(fd, hello, 5, 120), 5);
    assert_string_equal(hello, "hello");
    close(fd);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path), 0);
}

static void test_corrupt_bit(void **st)
{
    const char *path = make_image("corrupt.qcow2");
    int fd = open(path, O_RDWR);
    wr64(fd, 72, 1ull << 1);
    close(fd);
    struct blk_open_opts o = {.format = "qcow2"};
    struct blk *b;
    assert_int_equal(blk_open(path, &o, NULL, &b), -EIO);
    o.read_only = true;
    assert_int_equal(blk_open(path, &o, NULL, &b), 0); /* read-only is allowed */
    blk_close(b);
    o.read_only = false;
    o.no_repair = true; /* check -r mode */
    assert_int_equal(blk_open(path, &o, NULL, &b), 0);
    struct blk_check_result res;
    assert_int_equal(blk_check(b, BLK_FIX_ERRORS | BLK_FIX_LEAKS, &res), 0);
    blk_close(b);
    o.no_repair = false;
    assert_int_equal(blk_open(path, &o, NULL, &b), 0);
    blk_close(b);
}

/* Every L1 entry points at the same L2 table: check must stay linear and report it. */
static void test_shared_l2_everywhere(void **st)
{
    const char *path = bt_path("shared.qcow2");
    bt_create_qcow2(path, 2 * TiB_, NULL);
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t buf[4096];
    memset(buf, 0x3c, sizeof(buf));
    assert_int_equal(blk_pwrite(b, 0, buf, sizeof(buf)), 0);
    blk_close(b);
    int fd = open(path, O_RDWR);
    struct layout l = get_layout(fd);
    uint32_t l1n = rd32(fd, 36);
    assert_true(l1n >= 4096);
    for (uint32_t i = 1; i < l1n; i++)
        wr64(fd, l.l1 + 8ull * i, l.l2 | (1ull << 63));
    close(fd);
    uint64_t c, k;
    check_counts(path, 0, &c, &k, NULL);
    assert_true(c >= 1);
    b = bt_open(path, "qcow2", true);
    assert_int_equal(blk_pread(b, 1ull << 40, buf, sizeof(buf)), 0);
    assert_int_equal(buf[0], 0x3c); /* the alias reads the shared table */
    blk_close(b);
    struct blk_check_result res;
    check_counts(path, BLK_FIX_ERRORS | BLK_FIX_LEAKS, &c, &k, &res);
    if (have_qemu)
        assert_int_equal(bt_qemu_check(path) == 2, 0);
}

static void test_garbage_compressed(void **st)
{
    const char *path = bt_path("gc.qcow2");
    bt_create_qcow2(path, 1 * MiB_, NULL);
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t buf[65536];
    memset(buf, 1, sizeof(buf));
    assert_int_equal(blk_pwrite_compressed(b, 0, buf, sizeof(buf)), 0);
    blk_close(b);
    int fd = open(path, O_RDWR);
    struct layout l = get_layout(fd);
    uint64_t coff = (rd64(fd, l.l2) & ((1ull << 54) - 1));
    assert_int_equal(pwrite(fd, "garbage garbage garbage", 23, (off_t)coff), 23);
    close(fd);
    b = bt_open(path, "qcow2", true);
    assert_int_equal(blk_pread(b, 0, buf, 4096), -EIO);
    blk_close(b);
}

/* A number from qemu-img check --output=json (0 when qemu leaves the key out). */
static uint64_t json_num(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(json, k);
    return p ? strtoull(p + strlen(k), NULL, 10) : 0;
}

/* Our check's figures must equal qemu-img's on the same image. */
static void compare_with_qemu(const char *path)
{
    char cmd[512], json[8192];
    snprintf(cmd, sizeof(cmd), "qemu-img check -f qcow2 --output=json '%s' 2>/dev/null", path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(json, 1, sizeof(json) - 1, f);
    json[n] = 0;
    pclose(f);
    assert_non_null(strstr(json, "image-end-offset"));
    struct blk_check_result res;
    uint64_t c, k;
    check_counts(path, 0, &c, &k, &res);
    fprintf(stderr, "%s: qemu %s\n", path, json);
    assert_int_equal(res.image_end_offset, json_num(json, "image-end-offset"));
    assert_int_equal(res.fragmented_clusters, json_num(json, "fragmented-clusters"));
    assert_int_equal(res.compressed_clusters, json_num(json, "compressed-clusters"));
    assert_int_equal(res.allocated_clusters, json_num(json, "allocated-clusters"));
    assert_int_equal(res.total_clusters, json_num(json, "total-clusters"));
    assert_int_equal(res.leaks, json_num(json, "leaks"));
    assert_int_equal(res.corruptions, json_num(json, "corruptions"));
}

static void test_check_figures_like_qemu(void **st)
{
    if (!have_qemu) {
        fprintf(stderr, "note: qemu-img not found, comparison skipped\n");
        return;
    }
    /* A compressed cluster, plain data after it, and a leaked cluster past the last used. */
    const char *path = bt_path("figures.qcow2");
    bt_create_qcow2(path, 1 * MiB_, NULL);
    struct blk *b = bt_open(path, "qcow2", false);
    uint8_t buf[131072];
    memset(buf, 0x5c, sizeof(buf));
    assert_int_equal(blk_pwrite_compressed(b, 0, buf, 65536), 0);
    assert_int_equal(blk_pwrite(b, 128 * KiB_, buf, sizeof(buf)), 0);
    blk_close(b);
    compare_with_qemu(path);
    struct blk_check_result res;
    uint64_t c, k;
    check_counts(path, 0, &c, &k, &res);
    assert_int_equal(res.fragmented_clusters, 1); /* the compressed one */
    int fd = open(path, O_RDWR);
    struct layout l = get_layout(fd);
    off_t end = lseek(fd, 0, SEEK_END);
    assert_int_equal(ftruncate(fd, end + 2 * 65536), 0);
    uint8_t one[2] = {0, 1};
    uint64_t leaked = (uint64_t)end / 65536 + 1; /* leaves a free cluster before it */
    assert_int_equal(pwrite(fd, one, 2, (off_t)(l.rb + leaked * 2)), 2);
    close(fd);
    compare_with_qemu(path);
    check_counts(path, 0, &c, &k, &res);
    assert_int_equal(res.image_end_offset, (leaked + 1) * 65536);

    /* Data in two L2 tables, written out of guest order: fragmentation as qemu counts it. */
    path = bt_path("frag.qcow2");
    bt_create_qcow2(path, 1 * GiB_, NULL);
    b = bt_open(path, "qcow2", false);
    assert_int_equal(blk_pwrite(b, 600 * MiB_, buf, sizeof(buf)), 0);
    assert_int_equal(blk_pwrite(b, 0, buf, 65536), 0);
    assert_int_equal(blk_pwrite(b, 600 * MiB_ + 256 * KiB_, buf, 65536), 0);
    assert_int_equal(blk_pwrite(b, 64 * KiB_, buf, 65536), 0);
    assert_int_equal(blk_pwrite_compressed(b, 601 * MiB_, buf, 65536), 0);
    blk_close(b);
    compare_with_qemu(path);
}

int main(void)
{
    have_qemu = bt_have_qemu_img();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leak),
        cmocka_unit_test(test_check_figures_like_qemu),
        cmocka_unit_test(test_refcount_too_low),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_past_eof),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_autoclear_and_extensions),
        cmocka_unit_test(test_corrupt_bit),
        cmocka_unit_test(test_garbage_compressed),
        cmocka_unit_test(test_shared_l2_everywhere),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    bt_cleanup_dir();
    return r;
}
