/* Unit tests for the virtio-blk device model without KVM: the test plays the driver, writing
 * descriptors into a buffer that stands in for guest RAM, and checks the image file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "block/block.h"
#include "config/drive_opts.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio_blk.h"
#include "hw/virtio/virtq.h"
#include "machine/machine.h"
#include "vm/device_models.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAM_SIZE (4u << 20)
#define QSIZE 16
#define DESC_GPA 0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA 0x3000
#define HDR_GPA 0x10000
#define STATUS_GPA 0x11000
#define DATA_GPA 0x20000
#define IMG_SECTORS 2048

#define F_RO 5
#define F_FLUSH 9
#define F_CONFIG_WCE 11
#define F_DISCARD 13
#define F_WRITE_ZEROES 14

static uint8_t *ram;
static struct machine m;
static struct blk_aio *aio;
static struct vm_config cfg;
static char img[64];
static struct virtio_dev *vd;
static uint16_t avail_idx, used_seen;

static bool reset_on_notify;
/* The interrupt: a test may have the "guest" reset the device right when it arrives. */
static void fake_notify(void *t, uint16_t vector, uint8_t isr)
{
    if (reset_on_notify) {
        reset_on_notify = false;
        virtio_dev_reset(vd);
    }
}
static const struct virtio_transport_ops tops = {fake_notify};

static struct blk_aio *get_aio(struct vm_device_ctx *ctx)
{
    return aio;
}

struct hdr {
    uint32_t type, ioprio;
    uint64_t sector;
};

static void make_image(void)
{
    strcpy(img, "/tmp/vmkit-test-vblk.XXXXXX");
    int fd = mkstemp(img);
    assert_true(fd >= 0);
    uint8_t sec[512];
    for (unsigned s = 0; s < IMG_SECTORS; s++) {
        memset(sec, (int)(s & 0xff), sizeof(sec));
        assert_int_equal(pwrite(fd, sec, sizeof(sec), (off_t)s * 512), 512);
    }
    close(fd);
}

/* Opens the drive and brings the device to DRIVER_OK with queue 0 set up. */
static void start(const char *drive_extra, const char *dev_opts, uint64_t features)
{
    make_image();
    char arg[256];
    snprintf(arg, sizeof(arg), "file=%s,if=none,id=d0,format=raw%s", img, drive_extra);
    vm_config_init(&cfg);
    assert_int_equal(vm_config_drive_add(&cfg, "-drive", arg), 0);
    assert_int_equal(blk_aio_new(BLK_AIO_DEFAULT, &aio), 0);
    ram = calloc(1, RAM_SIZE);
    memset(&m, 0, sizeof(m));
    guest_mem_init_buffer(&m.mem, ram, RAM_SIZE);
    struct vm_device_ctx ctx = {.m = &m, .cfg = &cfg, .blk_aio = get_aio};
    assert_int_equal(virtio_blk_new(&ctx, dev_opts, &vd), 0);
    vd->m = &m;
    vd->tops = &tops;
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    features |= VIRTIO_F_BIT(VIRTIO_F_VERSION_1);
    virtio_set_guest_features(vd, 0, (uint32_t)features);
    virtio_set_guest_features(vd, 1, (uint32_t)(features >> 32));
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                              VIRTIO_STATUS_FEATURES_OK);
    assert_true(vd->status & VIRTIO_STATUS_FEATURES_OK);
    struct virtq *vq = &vd->vqs[0];
    vq->size = QSIZE;
    vq->desc_gpa = DESC_GPA;
    vq->avail_gpa = AVAIL_GPA;
    vq->used_gpa = USED_GPA;
    assert_int_equal(virtq_enable(vq), 0);
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                              VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    assert_true(virtio_dev_ready(vd));
    avail_idx = used_seen = 0;
}

static void stop(void)
{
    virtio_blk_free(vd);
    blk_aio_free(aio);
    vm_config_free(&cfg);
    free(ram);
    unlink(img);
}

static uint16_t used_idx(void)
{
    return *(volatile uint16_t *)(ram + USED_GPA + 2);
}

/* Puts a chain on the ring and kicks; each buffer is {gpa, len, device-writable}. */
struct buf {
    uint64_t gpa;
    uint32_t len;
    bool write;
};
static void post(const struct buf *b, unsigned n)
{
    struct virtq_desc *d = (struct virtq_desc *)(ram + DESC_GPA);
    for (unsigned i = 0; i < n; i++)
        d[i] = (struct virtq_desc){b[i].gpa, b[i].len,
                                   (uint16_t)((b[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                                              (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                                   (uint16_t)(i + 1)};
    uint16_t *avail = (uint16_t *)(ram + AVAIL_GPA);
    avail[2 + avail_idx % QSIZE] = 0;
    avail[1] = ++avail_idx;
    virtio_queue_kick(vd, 0);
}

/* Runs the engine until the used ring moves (or 2 s pass); returns the used length or -1. */
static int wait_used(void)
{
    for (int i = 0; i < 200 && used_idx() == used_seen; i++) {
        struct pollfd p = {blk_aio_eventfd(aio), POLLIN, 0};
        poll(&p, 1, 10);
        blk_aio_process(aio);
    }
    if (used_idx() == used_seen)
        return -1;
    uint32_t *e = (uint32_t *)(ram + USED_GPA + 4 + 8 * (used_seen % QSIZE));
    used_seen++;
    return (int)e[1];
}

/* One request: header, optional data buffer, status; returns the status byte. */
static int req(uint32_t type, uint64_t sector, uint32_t len, bool data_write, int *used)
{
    struct hdr h = {type, 0, sector};
    memcpy(ram + HDR_GPA, &h, sizeof(h));
    ram[STATUS_GPA] = 0xee;
    struct buf b[3];
    unsigned n = 0;
    b[n++] = (struct buf){HDR_GPA, 16, false};
    if (len)
        b[n++] = (struct buf){DATA_GPA, len, data_write};
    b[n++] = (struct buf){STATUS_GPA, 1, true};
    post(b, n);
    int u = wait_used();
    if (used)
        *used = u;
    return u < 0 ? -1 : ram[STATUS_GPA];
}

static void file_read(uint64_t off, void *buf, size_t len)
{
    int fd = open(img, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void test_read_write(void **state)
{
    start("", "drive=d0", VIRTIO_F_BIT(F_FLUSH));
    assert_int_equal(*(uint64_t *)vd->config, IMG_SECTORS); /* capacity */
    int used;
    assert_int_equal(req(0, 3, 1024, true, &used), 0);
    assert_int_equal(used, 1025);
    assert_int_equal(ram[DATA_GPA], 3);
    assert_int_equal(ram[DATA_GPA + 1023], 4);
    memset(ram + DATA_GPA, 0xab, 4096);
    assert_int_equal(req(1, 8, 4096, false, &used), 0);
    assert_int_equal(used, 1);
    assert_int_equal(req(4, 0, 0, false, NULL), 0); /* flush */
    uint8_t back[4096];
    file_read(8 * 512, back, sizeof(back));
    for (unsigned i = 0; i < sizeof(back); i++)
        assert_int_equal(back[i], 0xab);
    file_read(16 * 512, back, 1);
    assert_int_equal(back[0], 16); /* the next sector untouched */
    stop();
}

static void test_bad_requests(void **state)
{
    start("", "drive=d0,serial=SERIAL-1", VIRTIO_F_BIT(F_FLUSH));
    assert_int_equal(req(0, IMG_SECTORS, 512, true, NULL), 1);     /* past the end */
    assert_int_equal(req(0, IMG_SECTORS - 1, 1024, true, NULL), 1);/* across the end */
    assert_int_equal(req(0, UINT64_MAX, 512, true, NULL), 1);      /* wrapping */
    assert_int_equal(req(1, 0, 100, false, NULL), 1);              /* not whole sectors */
    assert_int_equal(req(99, 0, 512, true, NULL), 2);              /* unknown type */
    assert_int_equal(req(11, 0, 16, false, NULL), 2);              /* DISCARD not negotiated */
    int used;
    memset(ram + DATA_GPA, 0x55, 32);
    assert_int_equal(req(8, 0, 20, true, &used), 0);               /* GET_ID */
    assert_int_equal(used, 21);
    assert_memory_equal(ram + DATA_GPA, "SERIAL-1\0\0\0\0\0\0\0\0\0\0\0\0", 20);
    assert_false(vd->status & VIRTIO_STATUS_NEEDS_RESET);
    /* no device-writable status byte: the chain is malformed, the device needs a reset */
    struct buf b[2] = {{HDR_GPA, 16, false}, {STATUS_GPA, 1, false}};
    memcpy(ram + HDR_GPA, &(struct hdr){0, 0, 0}, 16);
    post(b, 2);
    assert_true(vd->status & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(used_idx(), used_seen); /* never returned */
    stop();
}

static void test_read_only(void **state)
{
    start(",readonly=on", "drive=d0", VIRTIO_F_BIT(F_RO) | VIRTIO_F_BIT(F_FLUSH) |
                                          VIRTIO_F_BIT(F_WRITE_ZEROES));
    assert_true(vd->host_features & VIRTIO_F_BIT(F_RO));
    memset(ram + DATA_GPA, 0xab, 512);
    assert_int_equal(req(1, 0, 512, false, NULL), 1);
    memcpy(ram + DATA_GPA, &(uint64_t[2]){0, 8}, 16);
    assert_int_equal(req(13, 0, 16, false, NULL), 1); /* write zeroes */
    assert_int_equal(req(0, 0, 512, true, NULL), 0);
    uint8_t back[1];
    file_read(0, back, 1);
    assert_int_equal(back[0], 0);
    file_read(512, back, 1);
    assert_int_equal(back[0], 1);
    stop();
}

static void test_discard_write_zeroes(void **state)
{
    start(",discard=unmap", "drive=d0", VIRTIO_F_BIT(F_DISCARD) | VIRTIO_F_BIT(F_WRITE_ZEROES) |
                                            VIRTIO_F_BIT(F_FLUSH));
    assert_int_equal(vd->config[56], 1); /* write_zeroes_may_unmap */
    uint64_t seg[2] = {100, 8 | (1ull << 32)}; /* sector 100, 8 sectors, UNMAP */
    memcpy(ram + DATA_GPA, seg, 16);
    assert_int_equal(req(13, 0, 16, false, NULL), 0);
    seg[1] = 8;
    seg[0] = 200;
    memcpy(ram + DATA_GPA, seg, 16);
    assert_int_equal(req(11, 0, 16, false, NULL), 0);
    seg[1] = 8 | (1ull << 32); /* UNMAP flag on a discard: unsupported */
    memcpy(ram + DATA_GPA, seg, 16);
    assert_int_equal(req(11, 0, 16, false, NULL), 2);
    seg[0] = IMG_SECTORS - 4;
    seg[1] = 8;
    memcpy(ram + DATA_GPA, seg, 16);
    assert_int_equal(req(13, 0, 16, false, NULL), 1); /* past the end */
    uint8_t back[8 * 512];
    file_read(100 * 512, back, sizeof(back));
    for (unsigned i = 0; i < sizeof(back); i++)
        assert_int_equal(back[i], 0);
    file_read(200 * 512, back, sizeof(back));
    for (unsigned i = 0; i < sizeof(back); i++)
        assert_int_equal(back[i], 0); /* a punched hole in a raw file reads as zeroes */
    file_read(108 * 512, back, 1);
    assert_int_equal(back[0], 108);
    stop();
}

static void test_write_cache(void **state)
{
    /* with FLUSH: write cache on, the guest may turn it off */
    start("", "drive=d0", VIRTIO_F_BIT(F_FLUSH) | VIRTIO_F_BIT(F_CONFIG_WCE));
    assert_int_equal(vd->config[32], 1);
    vd->config[32] = 0;
    vd->ops->config_write(vd, 32, 1);
    assert_int_equal(vd->config[32], 0);
    memset(ram + DATA_GPA, 0xcd, 512);
    assert_int_equal(req(1, 5, 512, false, NULL), 0); /* written through: flushed */
    stop();
    /* without FLUSH: write-through, and it stays so */
    start("", "drive=d0", VIRTIO_F_BIT(F_CONFIG_WCE));
    assert_int_equal(vd->config[32], 0);
    vd->config[32] = 1;
    vd->ops->config_write(vd, 32, 1);
    assert_int_equal(vd->config[32], 0);
    stop();
    /* cache=writethrough: the guest sees no write cache */
    start(",cache=writethrough", "drive=d0", VIRTIO_F_BIT(F_FLUSH) | VIRTIO_F_BIT(F_CONFIG_WCE));
    assert_int_equal(vd->config[32], 0);
    stop();
}

/* A reset with a request in flight: two reads in one kick, and the device is reset when the
 * first completion's interrupt arrives; the second completion must not reach the ring. */
static void test_reset_in_flight(void **state)
{
    start("", "drive=d0", VIRTIO_F_BIT(F_FLUSH));
    struct virtq_desc *d = (struct virtq_desc *)(ram + DESC_GPA);
    for (unsigned k = 0; k < 2; k++) {
        memcpy(ram + HDR_GPA + 16 * k, &(struct hdr){0, 0, 10 + k}, 16);
        ram[STATUS_GPA + k] = 0xee;
        d[3 * k] = (struct virtq_desc){HDR_GPA + 16 * k, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(3 * k + 1)};
        d[3 * k + 1] = (struct virtq_desc){DATA_GPA + 4096 * k, 512,
                                           VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
                                           (uint16_t)(3 * k + 2)};
        d[3 * k + 2] = (struct virtq_desc){STATUS_GPA + k, 1, VIRTQ_DESC_F_WRITE, 0};
    }
    uint16_t *avail = (uint16_t *)(ram + AVAIL_GPA);
    avail[2] = 0;
    avail[3] = 3;
    avail[1] = 2;
    reset_on_notify = true;
    virtio_queue_kick(vd, 0);
    for (int i = 0; i < 20; i++) {
        struct pollfd p = {blk_aio_eventfd(aio), POLLIN, 0};
        poll(&p, 1, 10);
        blk_aio_process(aio);
    }
    assert_false(reset_on_notify);
    assert_int_equal(used_idx(), 1); /* only the completion before the reset */
    uint8_t s0 = ram[STATUS_GPA], s1 = ram[STATUS_GPA + 1];
    assert_true((s0 == 0 && s1 == 0xee) || (s0 == 0xee && s1 == 0));

    /* the driver sets the queue up again, in the same memory, and the device works */
    memset(ram + DESC_GPA, 0, 0x3000);
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_set_guest_features(vd, 0, VIRTIO_F_BIT(F_FLUSH));
    virtio_set_guest_features(vd, 1, 1);
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                              VIRTIO_STATUS_FEATURES_OK);
    struct virtq *vq = &vd->vqs[0];
    vq->size = QSIZE;
    vq->desc_gpa = DESC_GPA;
    vq->avail_gpa = AVAIL_GPA;
    vq->used_gpa = USED_GPA;
    assert_int_equal(virtq_enable(vq), 0);
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                              VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    avail_idx = used_seen = 0;
    assert_int_equal(req(0, 7, 512, true, NULL), 0);
    assert_int_equal(ram[DATA_GPA], 7);
    assert_int_equal(used_idx(), 1);
    stop();
}

static void test_lock(void **state)
{
    make_image();
    int a = virtio_blk_lock_image(img, true);
    assert_true(a >= 0);
    /* a second writer and a reader are refused while a writer holds it */
    assert_int_equal(virtio_blk_lock_image(img, true), -EBUSY);
    assert_int_equal(virtio_blk_lock_image(img, false), -EBUSY);
    close(a);
    int r1 = virtio_blk_lock_image(img, false), r2 = virtio_blk_lock_image(img, false);
    assert_true(r1 >= 0 && r2 >= 0); /* readers share */
    assert_int_equal(virtio_blk_lock_image(img, true), -EBUSY);
    close(r1);
    close(r2);
    assert_int_equal(virtio_blk_lock_image("/nonexistent/x.img", false), -ENOENT);
    unlink(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_write),      cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_read_only),       cmocka_unit_test(test_discard_write_zeroes),
        cmocka_unit_test(test_write_cache),     cmocka_unit_test(test_reset_in_flight),
        cmocka_unit_test(test_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
